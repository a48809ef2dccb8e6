//! One broker connection in either protocol version: rumqttc has a client
//! per version with the same shape but distinct types, so the source's
//! loop sees only what it acts on ([`LinkEvent`]) and errors already in
//! plain words.

use super::tls;
use crate::config::mqtt::{MqttSource, Protocol};
use bytes::Bytes;
use rumqttc::v5;
use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::{Packet, QoS, SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport};

/// The smallest packet limit given to rumqttc, whatever `max_message_size`.
const MIN_PACKET: usize = 1 << 20;

/// The packet limit given to rumqttc: well above `max_message_size`, so a
/// message somewhat over it is read and refused by the source (counted,
/// dead-lettered) instead of ending the connection, as rumqttc does with
/// a packet over its limit. MQTT 5 tells the broker this limit at connect,
/// and the broker drops larger messages for this client.
pub fn packet_limit(max_message_size: usize) -> usize {
    max_message_size.saturating_mul(4).max(MIN_PACKET)
}

/// A received QoS 1 or 2 message to acknowledge (its payload dropped).
pub enum Ack {
    V4(rumqttc::Publish),
    V5(p5::Publish),
}

pub enum Link {
    // Event loops are boxed: large, and of different sizes.
    V4(rumqttc::AsyncClient, Box<rumqttc::EventLoop>),
    V5(v5::AsyncClient, Box<v5::EventLoop>),
}

/// What the source acts on.
pub enum LinkEvent {
    Connected {
        session_present: bool,
    },
    Message {
        topic: String,
        payload: Bytes,
        /// What acknowledges it; `None` at QoS 0.
        ack: Option<Box<Ack>>,
    },
    /// How many filters of a subscribe request the broker refused.
    Refused(usize),
    Other,
}

impl Link {
    pub fn new(c: &MqttSource) -> Result<Link, String> {
        let transport = match &c.tls {
            Some(t) => Some(Transport::Tls(TlsConfiguration::Rustls(
                tls::client_config(t).map_err(|e| e.to_string())?,
            ))),
            None => None,
        };
        Ok(match c.protocol {
            Protocol::V311 => {
                let mut o = rumqttc::MqttOptions::new(c.client_id.clone(), c.host.clone(), c.port);
                let limit = packet_limit(c.max_message_size);
                // Acknowledged by the source once the sample is committed.
                o.set_keep_alive(c.keep_alive)
                    .set_clean_session(c.clean_session)
                    .set_manual_acks(true)
                    .set_max_packet_size(limit, limit);
                if let Some(t) = transport {
                    o.set_transport(t);
                }
                let (client, events) = rumqttc::AsyncClient::new(o, 64);
                Link::V4(client, Box::new(events))
            }
            Protocol::V5 => {
                let mut o = v5::MqttOptions::new(c.client_id.clone(), c.host.clone(), c.port);
                let limit = u32::try_from(packet_limit(c.max_message_size)).unwrap_or(u32::MAX);
                o.set_keep_alive(c.keep_alive)
                    .set_clean_start(c.clean_session)
                    .set_manual_acks(true)
                    .set_max_packet_size(Some(limit));
                if !c.clean_session {
                    // MQTT 5 ends a session at disconnect unless it has an
                    // expiry: keep it as long as the broker allows.
                    o.set_session_expiry_interval(Some(u32::MAX));
                }
                if let Some(t) = transport {
                    o.set_transport(t);
                }
                let (client, events) = v5::AsyncClient::new(o, 64);
                Link::V5(client, Box::new(events))
            }
        })
    }

    /// Credentials for the next connect.
    pub fn set_credentials(&mut self, user: &str, password: &str) {
        match self {
            Link::V4(_, e) => {
                e.mqtt_options.set_credentials(user, password);
            }
            Link::V5(_, e) => {
                e.options.set_credentials(user, password);
            }
        }
    }

    /// The next event; connects first when not connected. `broker` names
    /// it in errors.
    pub async fn poll(&mut self, broker: &str) -> Result<LinkEvent, String> {
        match self {
            Link::V4(_, e) => match e.poll().await {
                Ok(rumqttc::Event::Incoming(p)) => Ok(match p {
                    Packet::ConnAck(a) => LinkEvent::Connected {
                        session_present: a.session_present,
                    },
                    Packet::Publish(mut m) => {
                        let payload = std::mem::take(&mut m.payload);
                        let topic = std::mem::take(&mut m.topic);
                        LinkEvent::Message {
                            topic,
                            payload,
                            ack: (m.qos != QoS::AtMostOnce).then(|| Box::new(Ack::V4(m))),
                        }
                    }
                    Packet::SubAck(a) => LinkEvent::Refused(
                        a.return_codes
                            .iter()
                            .filter(|c| matches!(c, SubscribeReasonCode::Failure))
                            .count(),
                    ),
                    _ => LinkEvent::Other,
                }),
                Ok(_) => Ok(LinkEvent::Other),
                Err(e) => Err(super::describe(&e, broker)),
            },
            Link::V5(_, e) => match e.poll().await {
                Ok(v5::Event::Incoming(p)) => Ok(match p {
                    p5::Packet::ConnAck(a) => LinkEvent::Connected {
                        session_present: a.session_present,
                    },
                    // A topic is UTF-8 by the protocol.
                    p5::Packet::Publish(mut m) => {
                        let payload = std::mem::take(&mut m.payload);
                        LinkEvent::Message {
                            topic: String::from_utf8_lossy(&m.topic).into_owned(),
                            payload,
                            ack: (m.qos != v5::mqttbytes::QoS::AtMostOnce)
                                .then(|| Box::new(Ack::V5(m))),
                        }
                    }
                    p5::Packet::SubAck(a) => LinkEvent::Refused(
                        a.return_codes
                            .iter()
                            .filter(|c| !matches!(c, p5::SubscribeReasonCode::Success(_)))
                            .count(),
                    ),
                    _ => LinkEvent::Other,
                }),
                Ok(_) => Ok(LinkEvent::Other),
                Err(e) => Err(describe_v5(&e, broker)),
            },
        }
    }

    /// Subscribe to every `(filter, qos)` in one request.
    pub fn subscribe(&self, filters: &[(String, u8)]) -> Result<(), String> {
        match self {
            Link::V4(c, _) => c
                .try_subscribe_many(
                    filters
                        .iter()
                        .map(|(f, q)| SubscribeFilter::new(f.clone(), qos_v4(*q))),
                )
                .map_err(|e| e.to_string()),
            Link::V5(c, _) => c
                .try_subscribe_many(
                    filters
                        .iter()
                        .map(|(f, q)| p5::Filter::new(f.clone(), qos_v5(*q))),
                )
                .map_err(|e| e.to_string()),
        }
    }

    /// Acknowledge a message to the broker (it will not send it again).
    pub fn ack(&self, ack: &Ack) -> Result<(), String> {
        match (self, ack) {
            (Link::V4(c, _), Ack::V4(p)) => c.try_ack(p).map_err(|e| e.to_string()),
            (Link::V5(c, _), Ack::V5(p)) => c.try_ack(p).map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    }

    /// Publish at QoS 0, not retained (a command).
    pub fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), String> {
        match self {
            Link::V4(c, _) => c
                .try_publish(topic, QoS::AtMostOnce, false, payload)
                .map_err(|e| e.to_string()),
            Link::V5(c, _) => c
                .try_publish(topic, v5::mqttbytes::QoS::AtMostOnce, false, payload)
                .map_err(|e| e.to_string()),
        }
    }

    pub fn disconnect(&self) {
        let _ = match self {
            Link::V4(c, _) => c.try_disconnect().map_err(|e| e.to_string()),
            Link::V5(c, _) => c.try_disconnect().map_err(|e| e.to_string()),
        };
    }
}

fn qos_v4(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    }
}

fn qos_v5(q: u8) -> v5::mqttbytes::QoS {
    use v5::mqttbytes::QoS as Q;
    match q {
        0 => Q::AtMostOnce,
        2 => Q::ExactlyOnce,
        _ => Q::AtLeastOnce,
    }
}

/// [`super::describe`] for MQTT 5, whose refusals have more reasons.
pub(crate) fn describe_v5(e: &v5::ConnectionError, broker: &str) -> String {
    use p5::ConnectReturnCode as C;
    match e {
        v5::ConnectionError::ConnectionRefused(code) => {
            let why = match code {
                C::BadUserNamePassword => {
                    "bad user name or password (check username and password_file)".to_string()
                }
                C::NotAuthorized => {
                    "not authorized (check username and password_file, and the broker's ACL)"
                        .to_string()
                }
                C::BadClientId | C::ClientIdentifierNotValid => {
                    "client id rejected (set another client_id)".to_string()
                }
                C::Banned => "this client is banned".to_string(),
                C::UnsupportedProtocolVersion | C::RefusedProtocolVersion => {
                    "MQTT 5 not accepted (use protocol = \"3.1.1\")".to_string()
                }
                C::ServerUnavailable | C::ServiceUnavailable | C::ServerBusy => {
                    "server unavailable".to_string()
                }
                other => format!("{other:?}"),
            };
            format!("connection refused by the broker: {why}")
        }
        v5::ConnectionError::Io(io) => format!("cannot reach the broker at {broker}: {io}"),
        v5::ConnectionError::Tls(t) => format!("TLS with the broker at {broker} failed: {t}"),
        v5::ConnectionError::Timeout(_) => {
            format!("no answer from the broker at {broker} (timed out)")
        }
        v5::ConnectionError::MqttState(v5::StateError::Io(io)) => {
            format!("connection to the broker at {broker} lost: {io}")
        }
        v5::ConnectionError::MqttState(v5::StateError::AwaitPingResp) => {
            format!("the broker at {broker} stopped answering pings")
        }
        other => format!("connection to the broker at {broker} failed: {other}"),
    }
}
