//! One connection to the northbound broker, in MQTT 3.1.1 or 5. rumqttc's
//! event loop runs in its own task, so the sink's loop never cancels a poll
//! half-way; it hands over only what the sink acts on ([`LinkEvent`]).
//!
//! A link is used for one connection only: when it is lost, the sink drops
//! it and makes a new one after its backoff. rumqttc keeps unacknowledged
//! QoS 1 publishes in memory and would replay (or, on a clean session,
//! discard) them itself; starting fresh leaves that to the store, which
//! re-publishes everything not yet acknowledged.
//!
//! MQTT 5 gives a PUBACK a reason code: only success (and "no matching
//! subscribers") is a delivery; any other code is handed over as
//! [`LinkEvent::Refused`] with what the sink does about it
//! ([`Refusal`]).

use super::config::MqttSinkConfig;
use crate::config::mqtt::Protocol;
use bytes::Bytes;
use rumqttc::v5;
use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::{Event, Outgoing, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Control messages (birth, goodbye, alerts) that may be in flight beside
/// the events.
pub const CONTROL_SLOTS: usize = 16;

/// Tag values that may wait in rumqttc's request queue beside the rest.
pub const TAG_SLOTS: usize = 64;

/// What the sink acts on.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// The broker accepted the connection.
    Connected,
    /// The next publish (in the order they were made) left with this packet
    /// id; the broker's PUBACK names it (0 at QoS 0: nothing follows).
    Sent(u16),
    /// The broker has the publish with this packet id.
    Acked(u16),
    /// The broker answered the publish with this packet id with a failure
    /// reason (MQTT 5 only).
    Refused(u16, Refusal),
    /// The connection failed or ended, in plain words.
    Lost(String),
}

/// What a refused publish means for its event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The broker will refuse it again, whatever the retries (not
    /// authorized by its ACL, a topic or payload it finds invalid): the
    /// event goes to the dead letters with the reason, for a replay once
    /// the broker's config is fixed.
    Permanent(&'static str),
    /// A passing condition (quota exceeded, an error on the broker's
    /// side): the event stays in the store and the sink reconnects after
    /// its backoff, publishing it again, in order.
    Transient(&'static str),
}

impl Refusal {
    /// The reason as the metric's label and the log's words.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Permanent(r) | Refusal::Transient(r) => r,
        }
    }
}

/// The meaning of an MQTT 5 PUBACK reason; `None` for a delivery.
pub fn refusal(reason: &p5::PubAckReason) -> Option<Refusal> {
    use p5::PubAckReason as R;
    Some(match reason {
        R::Success | R::NoMatchingSubscribers => return None,
        // 0x87, 0x90, 0x99: the same message to the same topic is refused
        // again until someone changes the broker.
        R::NotAuthorized => Refusal::Permanent("not_authorized"),
        R::TopicNameInvalid => Refusal::Permanent("topic_name_invalid"),
        R::PayloadFormatInvalid => Refusal::Permanent("payload_format_invalid"),
        // 0x97, 0x80, 0x83, 0x91: may pass; try again later.
        R::QuotaExceeded => Refusal::Transient("quota_exceeded"),
        R::UnspecifiedError => Refusal::Transient("unspecified_error"),
        R::ImplementationSpecificError => Refusal::Transient("implementation_specific_error"),
        R::PacketIdentifierInUse => Refusal::Transient("packet_identifier_in_use"),
    })
}

/// Delivery guarantee of one publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    AtMostOnce,
    AtLeastOnce,
}

enum Client {
    V4(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

pub struct Link {
    client: Client,
    events: mpsc::Receiver<LinkEvent>,
    task: JoinHandle<()>,
}

impl Link {
    /// Start connecting; [`LinkEvent::Connected`] or [`LinkEvent::Lost`]
    /// says how it went.
    pub fn connect(
        c: &MqttSinkConfig,
        password: Option<&str>,
        will: Bytes,
    ) -> Result<Link, String> {
        let in_flight = usize::from(c.max_in_flight) + CONTROL_SLOTS;
        let in_flight16 = u16::try_from(in_flight).unwrap_or(u16::MAX);
        // Room for every publish the sink may have outstanding, so
        // `try_publish` never finds the request channel full.
        let requests = in_flight + CONTROL_SLOTS + TAG_SLOTS;
        let (tx, events) = mpsc::channel(in_flight * 2 + TAG_SLOTS + 64);
        let transport = match &c.tls {
            Some(t) => Some(Transport::Tls(TlsConfiguration::Rustls(
                crate::sources::mqtt::tls::client_config(t).map_err(|e| e.to_string())?,
            ))),
            None => None,
        };
        let (client, task) = match c.protocol {
            Protocol::V311 => {
                let mut o = rumqttc::MqttOptions::new(c.client_id.clone(), c.host.clone(), c.port);
                o.set_keep_alive(c.keep_alive)
                    // The store, not the broker's session, holds what is not
                    // yet acknowledged.
                    .set_clean_session(true)
                    .set_inflight(in_flight16)
                    .set_max_packet_size(1 << 20, 1 << 20)
                    .set_last_will(rumqttc::LastWill::new(
                        c.status_topic.clone(),
                        will,
                        QoS::AtLeastOnce,
                        true,
                    ));
                if let (Some(user), Some(pw)) = (&c.username, password) {
                    o.set_credentials(user.clone(), pw);
                }
                if let Some(t) = transport {
                    o.set_transport(t);
                }
                let (client, eventloop) = rumqttc::AsyncClient::new(o, requests);
                (
                    Client::V4(client),
                    tokio::spawn(drive_v4(eventloop, tx, c.broker())),
                )
            }
            Protocol::V5 => {
                let mut o = v5::MqttOptions::new(c.client_id.clone(), c.host.clone(), c.port);
                // rumqttc's MQTT 5 client asserts at least 5 s (the config
                // check says so too).
                o.set_keep_alive(c.keep_alive.max(std::time::Duration::from_secs(5)))
                    .set_clean_start(true)
                    // The broker's receive maximum may lower it further.
                    .set_outgoing_inflight_upper_limit(in_flight16)
                    .set_max_packet_size(Some(1 << 20))
                    .set_last_will(p5::LastWill::new(
                        c.status_topic.clone(),
                        will,
                        v5::mqttbytes::QoS::AtLeastOnce,
                        true,
                        None,
                    ));
                if let (Some(user), Some(pw)) = (&c.username, password) {
                    o.set_credentials(user.clone(), pw);
                }
                if let Some(t) = transport {
                    o.set_transport(t);
                }
                let (client, eventloop) = v5::AsyncClient::new(o, requests);
                (
                    Client::V5(client),
                    tokio::spawn(drive_v5(eventloop, tx, c.broker())),
                )
            }
        };
        Ok(Link {
            client,
            events,
            task,
        })
    }

    /// The next event; a closed link is lost.
    pub async fn next(&mut self) -> LinkEvent {
        self.events
            .recv()
            .await
            .unwrap_or_else(|| LinkEvent::Lost("the connection task ended".into()))
    }

    /// An event already waiting, if any.
    pub fn try_next(&mut self) -> Option<LinkEvent> {
        self.events.try_recv().ok()
    }

    /// Queue a publish; its [`LinkEvent::Sent`] follows in order. With
    /// MQTT 5 a JSON message says so (content type, UTF-8), and an event's
    /// id goes with it as the user property `event_id`.
    pub fn publish(
        &self,
        topic: String,
        qos: Qos,
        retain: bool,
        payload: Vec<u8>,
        event_id: Option<&str>,
    ) -> Result<(), String> {
        match &self.client {
            Client::V4(c) => {
                let qos = match qos {
                    Qos::AtMostOnce => QoS::AtMostOnce,
                    Qos::AtLeastOnce => QoS::AtLeastOnce,
                };
                c.try_publish(topic, qos, retain, payload)
            }
            .map_err(|e| format!("cannot queue a publish: {e}")),
            Client::V5(c) => {
                let qos = match qos {
                    Qos::AtMostOnce => v5::mqttbytes::QoS::AtMostOnce,
                    Qos::AtLeastOnce => v5::mqttbytes::QoS::AtLeastOnce,
                };
                let json = payload.first() == Some(&b'{');
                let props = p5::PublishProperties {
                    payload_format_indicator: json.then_some(1),
                    content_type: json.then(|| "application/json".to_string()),
                    user_properties: event_id
                        .map(|id| vec![("event_id".to_string(), id.to_string())])
                        .unwrap_or_default(),
                    ..Default::default()
                };
                c.try_publish_with_properties(topic, qos, retain, payload, props)
                    .map_err(|e| format!("cannot queue a publish: {e}"))
            }
        }
    }

    /// Say goodbye (no will is published after a clean disconnect).
    pub fn disconnect(&self) {
        match &self.client {
            Client::V4(c) => {
                let _ = c.try_disconnect();
            }
            Client::V5(c) => {
                let _ = c.try_disconnect();
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Poll the event loop until the connection fails or the sink is gone.
async fn drive_v4(mut eventloop: rumqttc::EventLoop, tx: mpsc::Sender<LinkEvent>, broker: String) {
    loop {
        let ev = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => LinkEvent::Connected,
            Ok(Event::Incoming(Packet::PubAck(a))) => LinkEvent::Acked(a.pkid),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => LinkEvent::Sent(pkid),
            // After a disconnect the broker closes the connection: the next
            // poll ends the task.
            Ok(_) => continue,
            Err(e) => {
                let _ = tx
                    .send(LinkEvent::Lost(crate::sources::mqtt::describe(&e, &broker)))
                    .await;
                return;
            }
        };
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}

async fn drive_v5(mut eventloop: v5::EventLoop, tx: mpsc::Sender<LinkEvent>, broker: String) {
    loop {
        let ev = match eventloop.poll().await {
            Ok(v5::Event::Incoming(p5::Packet::ConnAck(_))) => LinkEvent::Connected,
            Ok(v5::Event::Incoming(p5::Packet::PubAck(a))) => match refusal(&a.reason) {
                None => LinkEvent::Acked(a.pkid),
                Some(r) => LinkEvent::Refused(a.pkid, r),
            },
            Ok(v5::Event::Outgoing(Outgoing::Publish(pkid))) => LinkEvent::Sent(pkid),
            Ok(v5::Event::Incoming(p5::Packet::Disconnect(d))) => LinkEvent::Lost(format!(
                "the broker at {broker} closed the connection: {:?}",
                d.reason_code
            )),
            Ok(_) => continue,
            Err(e) => {
                let _ = tx
                    .send(LinkEvent::Lost(crate::sources::mqtt::link::describe_v5(
                        &e, &broker,
                    )))
                    .await;
                return;
            }
        };
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p5::PubAckReason as R;

    #[test]
    fn only_success_is_a_delivery_and_each_failure_has_its_handling() {
        assert_eq!(refusal(&R::Success), None);
        assert_eq!(refusal(&R::NoMatchingSubscribers), None);
        assert_eq!(
            refusal(&R::NotAuthorized),
            Some(Refusal::Permanent("not_authorized"))
        );
        assert_eq!(
            refusal(&R::QuotaExceeded),
            Some(Refusal::Transient("quota_exceeded"))
        );
        for r in [R::TopicNameInvalid, R::PayloadFormatInvalid] {
            assert!(matches!(refusal(&r), Some(Refusal::Permanent(_))), "{r:?}");
        }
        for r in [
            R::UnspecifiedError,
            R::ImplementationSpecificError,
            R::PacketIdentifierInUse,
        ] {
            assert!(matches!(refusal(&r), Some(Refusal::Transient(_))), "{r:?}");
        }
    }
}
