//! One connection to the northbound broker (MQTT 3.1.1). rumqttc's event
//! loop runs in its own task, so the sink's loop never cancels a poll
//! half-way; it hands over only what the sink acts on ([`LinkEvent`]).
//!
//! A link is used for one connection only: when it is lost, the sink drops
//! it and makes a new one after its backoff. rumqttc keeps unacknowledged
//! QoS 1 publishes in memory and would replay (or, on a clean session,
//! discard) them itself; starting fresh leaves that to the store, which
//! re-publishes everything not yet acknowledged.

use super::config::MqttSinkConfig;
use bytes::Bytes;
use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration,
    Transport,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Control messages (birth, goodbye, alerts) that may be in flight beside
/// the events.
pub const CONTROL_SLOTS: usize = 8;

/// What the sink acts on.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// The broker accepted the connection.
    Connected,
    /// The next publish (in the order they were made) left with this packet
    /// id; the broker's PUBACK names it.
    Sent(u16),
    /// The broker has the publish with this packet id.
    Acked(u16),
    /// The connection failed or ended, in plain words.
    Lost(String),
}

pub struct Link {
    client: AsyncClient,
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
        let mut o = MqttOptions::new(c.client_id.clone(), c.host.clone(), c.port);
        let in_flight = usize::from(c.max_in_flight) + CONTROL_SLOTS;
        o.set_keep_alive(c.keep_alive)
            // The store, not the broker's session, holds what is not yet
            // acknowledged.
            .set_clean_session(true)
            .set_inflight(u16::try_from(in_flight).unwrap_or(u16::MAX))
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_last_will(LastWill::new(
                c.status_topic.clone(),
                will,
                QoS::AtLeastOnce,
                true,
            ));
        if let (Some(user), Some(pw)) = (&c.username, password) {
            o.set_credentials(user.clone(), pw);
        }
        if let Some(t) = &c.tls {
            let tls = crate::sources::mqtt::tls::client_config(t).map_err(|e| e.to_string())?;
            o.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)));
        }
        // Room for every publish the sink may have outstanding, so
        // `try_publish` never finds the request channel full.
        let (client, eventloop) = AsyncClient::new(o, in_flight + CONTROL_SLOTS);
        let (tx, events) = mpsc::channel(in_flight * 2 + 64);
        let task = tokio::spawn(drive(eventloop, tx, c.broker()));
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

    /// Queue a QoS 1 publish; its [`LinkEvent::Sent`] follows in order.
    pub fn publish(&self, topic: String, retain: bool, payload: Vec<u8>) -> Result<(), String> {
        self.client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
            .map_err(|e| format!("cannot queue a publish: {e}"))
    }

    /// Say goodbye (no will is published after a clean disconnect).
    pub fn disconnect(&self) {
        let _ = self.client.try_disconnect();
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Poll the event loop until the connection fails or the sink is gone.
async fn drive(mut eventloop: EventLoop, tx: mpsc::Sender<LinkEvent>, broker: String) {
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
