//! The northbound MQTT sink: every business event is published as JSON
//! ([`message`]) with QoS 1 to a topic from the config's template, read
//! from the store under this sink's own name, so the broker being down
//! never holds back Odoo, nor Odoo the broker.
//!
//! Invariants:
//! - **Acknowledged only after PUBACK.** An event leaves this sink's lanes
//!   ([`Store::ack_many`], in batches) only once the broker acknowledged
//!   its publish. Until then it stays in the store, whatever the link or
//!   the process does.
//! - **A refusal is not a delivery** (MQTT 5). A PUBACK with a failure
//!   reason code moves a permanently refused event (not authorized, topic
//!   or payload invalid) to the dead letters with the broker's reason; a
//!   passing one (quota exceeded, the broker's own error) leaves it in the
//!   store and reconnects after the backoff, publishing it again in order
//!   ([`link::refusal`]). Both are counted in
//!   `plantgate_mqtt_sink_refused_total{sink,reason}`.
//! - **The store owns delivery.** rumqttc keeps in-flight QoS 1 state in
//!   memory only (and drops it on a clean session), so each connection is a
//!   fresh [`link::Link`]; after every connect the sink reads its lanes
//!   from the start again and re-publishes everything not yet acknowledged.
//!   Duplicates are possible, loss is not: every message carries the
//!   event's stable `id` for consumers to de-duplicate.
//! - **Order per key.** A lane is published in store order over one
//!   connection, and re-published from its start after a reconnect; so a
//!   consumer sees each key's events of a lane in order (repeats aside).
//! - **Pipelined.** Up to `max_in_flight` publishes are outstanding; lanes
//!   are served critical first with the fair floor of
//!   [`Schedule::choose`](super::schedule::Schedule::choose).
//! - **Reconnects back off** (with jitter, `backoff_min` doubling up to
//!   `backoff_max`); rumqttc itself would retry at once, for ever.
//! - **Birth and will.** After each connect the status topic gets
//!   "online" (retained); the broker publishes the will "offline"
//!   (retained) when the gateway vanishes, and a stop publishes it too.
//! - **Alerts survive the broker's absence.** Lane alerts are taken from
//!   [`SlaWatch`]'s numbered log of changes, and one counts as sent only
//!   once the broker acknowledged it; after a reconnect the changes not yet
//!   acknowledged (also a breach that began and ended meanwhile) are
//!   published in order. Each also goes, retained, to the lane's own
//!   last-state topic.
//! - **Tag values are the latest state, not events** ([`tags`]): taken
//!   from the edge's tap without ever blocking it, never stored, published
//!   retained on change, at most every `tag_every`.
//! - Kinds not configured are acknowledged unsent; a record that cannot be
//!   read goes to the dead letters, never silently away.

pub mod config;
pub mod link;
pub mod message;
pub mod metrics;
pub mod tags;

use crate::backoff::Backoff;
use crate::config::mqtt::Protocol;
use crate::model::{Event, Millis};
use crate::sinks::latency::DeliveryLatency;
use crate::sinks::schedule::Schedule;
use crate::sinks::tap::TagTap;
use crate::status::sla::SlaWatch;
use crate::status::Telemetry;
use crate::store::{Attempts, Lane, Queued, Store};
use bytes::Bytes;
use config::MqttSinkConfig;
use link::{Link, LinkEvent, Qos, Refusal};
use metrics::MqttSinkMetrics;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tags::Latest;
use tokio::sync::watch;

/// Entries read from a lane at a time.
const READ_CHUNK: usize = 512;

/// Link events handled before the acknowledgements are written.
const ACK_BATCH: usize = 1024;

/// How long a stop waits for the broker to take the "offline" message.
const GOODBYE_WAIT: Duration = Duration::from_secs(2);

/// How often lanes are compared with their targets for alerts.
const SLA_EVERY: Duration = Duration::from_secs(1);

/// Alert messages outstanding at most (two per change).
const ALERT_SLOTS: usize = 8;

pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";

/// The delivery task of one MQTT sink.
pub struct MqttSink {
    /// The name its lanes have in the store.
    pub name: String,
    pub config: MqttSinkConfig,
    /// `{gateway}` in topics, and `gateway` in every message.
    pub gateway_id: String,
    pub store: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    pub metrics: Arc<MqttSinkMetrics>,
    pub latency: Arc<DeliveryLatency>,
    /// Read for alerts when `sla_alert_topic` is set.
    pub sla: Arc<SlaWatch>,
    /// The edge's selected tag values, when `tags` is set.
    pub tags: Option<Arc<TagTap>>,
}

/// A publish made and not yet acknowledged.
enum Sent {
    Event(Box<Queued>),
    /// Birth or goodbye: nothing to acknowledge in the store.
    Control,
    /// A lane alert: change `seq`, and whether it is the change's last
    /// message (the retained one).
    Alert {
        seq: u64,
        last: bool,
    },
    /// A tag value; at QoS 0 nothing follows its sending.
    Tag {
        at_least_once: bool,
    },
}

/// How a connection ended.
enum End {
    Shutdown,
    Lost(String),
    /// The broker refused an event for now: reconnect, keeping the backoff
    /// growing (a connect that succeeds does not make it pass).
    Refused(String),
}

/// What outlives a connection.
struct Carry {
    last_success: Option<Millis>,
    /// The last alert change the broker acknowledged.
    alert_acked: u64,
    /// Tag values: what was published, what waits.
    latest: Latest,
}

/// One connection's delivery state; dropped with the connection, as the
/// store holds everything that matters.
struct Session {
    link: Link,
    /// Publishes queued, in order, waiting for their packet id.
    unsent: VecDeque<Sent>,
    /// By packet id, waiting for the broker's PUBACK.
    awaiting: HashMap<u16, Sent>,
    /// Events among `unsent` and `awaiting`.
    events_out: usize,
    /// Alert messages among them.
    alerts_out: usize,
    /// The last alert change published over this connection.
    alerts_upto: u64,
    /// Tag values among them.
    tags_out: usize,
    /// Per lane: entries read and not yet published.
    read: [VecDeque<Queued>; 3],
    /// Per lane: the next sequence to read.
    next: [u64; 3],
    /// Per lane: the last read found nothing (until the store has news).
    drained: [bool; 3],
    /// Events the broker acknowledged, to remove from the store.
    acks: Vec<Queued>,
    /// Events the broker refused for good, to move to the dead letters.
    refused: Vec<(Queued, String)>,
    schedule: Schedule,
}

impl MqttSink {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        self.metrics.added(&self.name);
        self.telemetry.sink_added(&self.name);
        let scheme = if self.config.tls.is_some() {
            "mqtts"
        } else {
            "mqtt"
        };
        let version = match self.config.protocol {
            Protocol::V311 => "3.1.1",
            Protocol::V5 => "5",
        };
        self.telemetry.sink_api(
            &self.name,
            &format!("MQTT {version}, {scheme}://{}", self.config.broker()),
        );
        let mut backoff = Backoff::new(self.config.backoff_min, self.config.backoff_max);
        let mut connections = 0u64;
        let mut carry = Carry {
            last_success: None,
            alert_acked: 0,
            latest: Latest::new(
                self.config
                    .tag_values
                    .as_ref()
                    .map_or(Duration::from_secs(1), |t| t.every),
            ),
        };
        let mut keep_backoff = false;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let why = match self.connect().await {
                Err(why) => why,
                Ok(mut link) => {
                    let up = loop {
                        tokio::select! {
                            ev = link.next() => break ev,
                            _ = wait_tags(self.tags.as_deref()) => self.absorb_tags(&mut carry.latest),
                            _ = shutdown.changed() => return,
                        }
                    };
                    match up {
                        LinkEvent::Connected => {
                            if !keep_backoff {
                                backoff.reset();
                            }
                            connections += 1;
                            if connections > 1 {
                                self.metrics.reconnected(&self.name);
                            }
                            self.metrics.connected(&self.name, true);
                            self.telemetry
                                .sink_link(&self.name, Some(true), carry.last_success);
                            tracing::info!(sink = %self.name, broker = %self.config.broker(), "connected to the broker; publishing what the store holds");
                            let end = self.session(link, &mut shutdown, &mut carry).await;
                            self.metrics.connected(&self.name, false);
                            self.metrics.in_flight(&self.name, 0);
                            keep_backoff = matches!(end, End::Refused(_));
                            match end {
                                End::Shutdown => return,
                                End::Lost(why) | End::Refused(why) => why,
                            }
                        }
                        LinkEvent::Lost(why) => why,
                        other => format!("unexpected {other:?} before the broker's CONNACK"),
                    }
                }
            };
            self.telemetry
                .sink_link(&self.name, Some(false), carry.last_success);
            self.telemetry.delivery_error(&self.name, &why);
            let wait = backoff.next_delay();
            tracing::warn!(sink = %self.name, error = %why, retry_in = ?wait,
                "broker unreachable; events stay in the store and are published after the reconnect");
            // Tag values go on being taken meanwhile: the latest of each
            // is published after the reconnect, none counted as dropped.
            let until = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    _ = wait_tags(self.tags.as_deref()) => self.absorb_tags(&mut carry.latest),
                    _ = shutdown.changed() => return,
                }
            }
        }
    }

    /// Move what the tap holds into `latest`.
    fn absorb_tags(&self, latest: &mut Latest) {
        let Some(tap) = &self.tags else { return };
        let mut over = 0;
        for v in tap.take() {
            if !latest.offer(v) {
                over += 1;
            }
        }
        if over > 0 {
            tap.count_dropped(over);
        }
    }

    /// A new link, with the password read now (it may have been rotated).
    async fn connect(&self) -> Result<Link, String> {
        let password = match &self.config.password_file {
            Some(p) => Some(
                crate::config::SecretSource::File(p.clone())
                    .read()
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        Link::connect(
            &self.config,
            password.as_ref().map(|p| p.expose()),
            Bytes::from_static(OFFLINE.as_bytes()),
        )
    }

    /// Deliver over one connection until it is lost or the gateway stops.
    async fn session(
        &self,
        link: Link,
        shutdown: &mut watch::Receiver<bool>,
        carry: &mut Carry,
    ) -> End {
        let mut s = Session {
            link,
            unsent: VecDeque::new(),
            awaiting: HashMap::new(),
            events_out: 0,
            alerts_out: 0,
            alerts_upto: carry.alert_acked,
            tags_out: 0,
            read: Default::default(),
            next: [0; 3],
            drained: [false; 3],
            acks: Vec::new(),
            refused: Vec::new(),
            schedule: Schedule::new(Duration::from_secs(1), Duration::from_secs(1)),
        };
        if let Err(why) = self.control(&mut s, &self.config.status_topic, true, ONLINE.into()) {
            return End::Lost(why);
        }
        carry.latest.reconnected();
        let mut work = self.store.subscribe();
        let mut sla_tick = tokio::time::interval(SLA_EVERY);
        sla_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // News while the window was full (nobody waited on it) counts
            // too: lanes found empty before are read again.
            if work.has_changed().unwrap_or(false) {
                s.drained = [false; 3];
            }
            work.borrow_and_update();
            if let Err(why) = self.fill(&mut s).await {
                return End::Lost(why);
            }
            if let Err(why) = self.alerts(&mut s) {
                return End::Lost(why);
            }
            if let Err(why) = self.tag_values(&mut s, &mut carry.latest) {
                return End::Lost(why);
            }
            self.metrics.in_flight(&self.name, s.events_out);
            let room = s.events_out < usize::from(self.config.max_in_flight);
            let tag_due = carry
                .latest
                .next_due()
                .filter(|_| s.tags_out < link::TAG_SLOTS)
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                ev = s.link.next() => {
                    let mut ev = Some(ev);
                    let mut handled = 0;
                    while let Some(e) = ev.take() {
                        if let Err(end) = self.on_link(&mut s, carry, e) {
                            self.write_acks(&mut s, carry);
                            self.write_refused(&mut s).await;
                            return end;
                        }
                        handled += 1;
                        if handled < ACK_BATCH {
                            ev = s.link.try_next();
                        }
                    }
                    self.write_acks(&mut s, carry);
                    self.write_refused(&mut s).await;
                }
                _ = work.changed(), if room => s.drained = [false; 3],
                _ = sla_tick.tick(), if self.config.sla_alert_topic.is_some() => {}
                _ = wait_tags(self.tags.as_deref()) => {}
                _ = sleep_until(tag_due) => {}
                _ = shutdown.changed() => {
                    self.goodbye(&mut s, carry).await;
                    return End::Shutdown;
                }
            }
        }
    }

    /// Publish from the lanes until `max_in_flight` are outstanding or the
    /// lanes have nothing more.
    async fn fill(&self, s: &mut Session) -> Result<(), String> {
        let mut published = 0u64;
        while s.events_out < usize::from(self.config.max_in_flight) {
            for lane in Lane::ALL {
                let i = lane.index();
                if s.read[i].is_empty() && !s.drained[i] {
                    let chunk = self
                        .store
                        .scan(&self.name, lane, s.next[i], READ_CHUNK)
                        .map_err(|e| format!("cannot read the event store: {e}"))?;
                    match chunk.last() {
                        Some(q) => s.next[i] = q.seq + 1,
                        None => s.drained[i] = true,
                    }
                    s.read[i].extend(chunk);
                }
            }
            let ready = [0, 1, 2].map(|i| !s.read[i].is_empty());
            let Some(lane) = s.schedule.choose(ready) else {
                break;
            };
            let Some(q) = s.read[lane.index()].pop_front() else {
                break;
            };
            if self.publish(s, q).await? {
                published += 1;
            }
        }
        if published > 0 {
            self.metrics.published(&self.name, published);
        }
        Ok(())
    }

    /// Publish one stored event; false when it is not one to publish.
    async fn publish(&self, s: &mut Session, q: Queued) -> Result<bool, String> {
        let entry = match &q.entry {
            Ok(e) => e,
            Err((_, why)) => {
                let why = format!("undecodable queue record: {why}");
                self.dead_letter(&q, &why).await;
                return Ok(false);
            }
        };
        if !self.config.kinds.contains(&entry.kind) {
            // Not for this sink: done with it.
            s.acks.push(q);
            return Ok(false);
        }
        let ev = match Event::decode(&entry.payload) {
            Ok(ev) => ev,
            Err(e) => {
                let why = format!("stored event {} cannot be read: {e}", entry.id);
                self.dead_letter(&q, &why).await;
                return Ok(false);
            }
        };
        let body = match message::encode(&self.gateway_id, &ev, q.lane, entry.accepted) {
            Ok(b) => b,
            Err(e) => {
                let why = format!("event {} cannot be written as JSON: {e}", entry.id);
                self.dead_letter(&q, &why).await;
                return Ok(false);
            }
        };
        let topic = self
            .config
            .topic
            .render(&self.gateway_id, ev.kind(), ev.key());
        s.link.publish(
            topic,
            Qos::AtLeastOnce,
            self.config.retain_last_state,
            body,
            Some(&ev.id),
        )?;
        s.unsent.push_back(Sent::Event(Box::new(q)));
        s.events_out += 1;
        Ok(true)
    }

    /// A QoS 1 message that is not an event (birth, goodbye).
    fn control(
        &self,
        s: &mut Session,
        topic: &str,
        retain: bool,
        body: Vec<u8>,
    ) -> Result<(), String> {
        s.link
            .publish(topic.to_string(), Qos::AtLeastOnce, retain, body, None)?;
        s.unsent.push_back(Sent::Control);
        Ok(())
    }

    /// Act on one link event; `Err` ends the connection.
    fn on_link(&self, s: &mut Session, carry: &mut Carry, ev: LinkEvent) -> Result<(), End> {
        match ev {
            LinkEvent::Sent(pkid) => match s.unsent.pop_front() {
                Some(Sent::Tag {
                    at_least_once: false,
                }) => s.tags_out -= 1,
                Some(sent) => {
                    s.awaiting.insert(pkid, sent);
                }
                None => tracing::warn!(sink = %self.name, pkid, "a publish left that was not made"),
            },
            LinkEvent::Acked(pkid) => match s.awaiting.remove(&pkid) {
                Some(Sent::Event(q)) => {
                    s.events_out -= 1;
                    s.acks.push(*q);
                }
                Some(Sent::Alert { seq, last }) => {
                    s.alerts_out -= 1;
                    if last {
                        carry.alert_acked = carry.alert_acked.max(seq);
                    }
                }
                Some(Sent::Tag { .. }) => s.tags_out -= 1,
                Some(Sent::Control) => {}
                None => {
                    tracing::debug!(sink = %self.name, pkid, "acknowledgement of no publish in flight")
                }
            },
            LinkEvent::Refused(pkid, refusal) => {
                let reason = refusal.reason();
                self.metrics.refused(&self.name, reason);
                match (s.awaiting.remove(&pkid), refusal) {
                    (Some(Sent::Event(q)), Refusal::Permanent(_)) => {
                        s.events_out -= 1;
                        let id = q.entry.as_ref().map_or("?", |e| e.id.as_str()).to_string();
                        s.refused.push((
                            *q,
                            format!("the broker refused event {id}: {reason} (MQTT 5 PUBACK)"),
                        ));
                    }
                    // Still in the store: published again after the
                    // reconnect, in order.
                    (Some(Sent::Event(q)), Refusal::Transient(_)) => {
                        let id = q.entry.as_ref().map_or("?", |e| e.id.as_str()).to_string();
                        return Err(End::Refused(format!(
                            "the broker refused event {id} for now: {reason}; publishing it again after the reconnect"
                        )));
                    }
                    (Some(Sent::Alert { seq, last }), _) => {
                        s.alerts_out -= 1;
                        tracing::warn!(sink = %self.name, reason, "the broker refused a lane alert (check its ACL for sla_alert_topic)");
                        if last {
                            carry.alert_acked = carry.alert_acked.max(seq);
                        }
                    }
                    (Some(Sent::Tag { .. }), _) => {
                        s.tags_out -= 1;
                        tracing::debug!(sink = %self.name, reason, "the broker refused a tag value");
                    }
                    (Some(Sent::Control), _) => tracing::warn!(sink = %self.name, reason,
                        "the broker refused the status message (check its ACL for status_topic)"),
                    (None, _) => {}
                }
            }
            LinkEvent::Connected => {}
            LinkEvent::Lost(why) => return Err(End::Lost(why)),
        }
        Ok(())
    }

    /// Remove what the broker acknowledged from the store, in one batch.
    fn write_acks(&self, s: &mut Session, carry: &mut Carry) {
        if s.acks.is_empty() {
            return;
        }
        match self.store.ack_many(&self.name, &s.acks) {
            Ok(()) => {
                let now = Millis::now();
                let mut delivered = 0u64;
                for q in &s.acks {
                    if let Ok(e) = &q.entry {
                        if self.config.kinds.contains(&e.kind) {
                            self.latency.delivered(&self.name, &e.kind, e.time, now);
                            delivered += 1;
                        }
                    }
                }
                if delivered > 0 {
                    self.metrics.acked(&self.name, delivered);
                    self.telemetry.delivered_many(&self.name, delivered);
                    carry.last_success = Some(now);
                    self.telemetry
                        .sink_link(&self.name, Some(true), carry.last_success);
                }
            }
            // Still in the store: published again after the next connect.
            Err(e) => tracing::error!(sink = %self.name, error = %e, events = s.acks.len(),
                "cannot record the broker's acknowledgements in the event store; they will be published again"),
        }
        s.acks.clear();
    }

    /// Move what the broker refused for good to the dead letters.
    async fn write_refused(&self, s: &mut Session) {
        for (q, why) in std::mem::take(&mut s.refused) {
            self.dead_letter(&q, &why).await;
        }
    }

    async fn dead_letter(&self, q: &Queued, why: &str) {
        let now = Millis::now();
        let attempts = Attempts {
            count: 1,
            first: Some(now),
            last: Some(now),
        };
        match self.store.dead_letter(&self.name, q, why, &attempts).await {
            Ok(id) => {
                tracing::error!(sink = %self.name, lane = %q.lane, dead_letter = id, reason = %why,
                    "event cannot be published; kept as dead letter #{id}");
                self.telemetry.rejected(&self.name, why);
            }
            Err(e) => tracing::error!(sink = %self.name, error = %e, reason = %why,
                "cannot move an event to the dead letters"),
        }
    }

    /// Publish the lane changes not yet published over this connection:
    /// each to the alert topic, then retained to the lane's own topic.
    fn alerts(&self, s: &mut Session) -> Result<(), String> {
        let Some(topic) = &self.config.sla_alert_topic else {
            return Ok(());
        };
        if s.alerts_out + 2 > ALERT_SLOTS {
            return Ok(());
        }
        for c in self.sla.changes_after(s.alerts_upto) {
            if s.alerts_out + 2 > ALERT_SLOTS {
                break;
            }
            let body = message::sla_alert(&self.gateway_id, &c);
            let lane_topic = format!("{topic}/{}/{}", c.sink, c.lane.as_str());
            s.link
                .publish(topic.clone(), Qos::AtLeastOnce, false, body.clone(), None)?;
            s.unsent.push_back(Sent::Alert {
                seq: c.seq,
                last: false,
            });
            s.link
                .publish(lane_topic, Qos::AtLeastOnce, true, body, None)?;
            s.unsent.push_back(Sent::Alert {
                seq: c.seq,
                last: true,
            });
            s.alerts_out += 2;
            s.alerts_upto = c.seq;
        }
        Ok(())
    }

    /// Take what the tap holds and publish the tag values that are due.
    fn tag_values(&self, s: &mut Session, latest: &mut Latest) -> Result<(), String> {
        let (Some(_), Some(cfg)) = (&self.tags, &self.config.tag_values) else {
            return Ok(());
        };
        self.absorb_tags(latest);
        let room = link::TAG_SLOTS.saturating_sub(s.tags_out);
        if room == 0 {
            return Ok(());
        }
        let qos = if cfg.at_least_once {
            Qos::AtLeastOnce
        } else {
            Qos::AtMostOnce
        };
        let due = latest.due(std::time::Instant::now(), room);
        let n = due.len() as u64;
        for v in due {
            let topic = cfg.topic.render_tag(&self.gateway_id, &v.tag);
            s.link
                .publish(topic, qos, true, tags::encode(&self.gateway_id, &v), None)?;
            s.unsent.push_back(Sent::Tag {
                at_least_once: cfg.at_least_once,
            });
            s.tags_out += 1;
        }
        if n > 0 {
            self.metrics.tag_values(&self.name, n);
        }
        Ok(())
    }

    /// At stop: write what was acknowledged, say "offline" and wait briefly
    /// for the broker to take it, then disconnect.
    async fn goodbye(&self, s: &mut Session, carry: &mut Carry) {
        self.write_acks(s, carry);
        if self
            .control(s, &self.config.status_topic, true, OFFLINE.into())
            .is_err()
        {
            return;
        }
        let _ = tokio::time::timeout(GOODBYE_WAIT, async {
            // Done when nothing is left but events (their acks are still
            // welcome): the goodbye is the last control message.
            while s.unsent.iter().any(|m| matches!(m, Sent::Control))
                || s.awaiting.values().any(|m| matches!(m, Sent::Control))
            {
                let ev = s.link.next().await;
                if self.on_link(s, carry, ev).is_err() {
                    break;
                }
            }
        })
        .await;
        self.write_acks(s, carry);
        self.write_refused(s).await;
        s.link.disconnect();
        // The broker closes the connection once it has the DISCONNECT.
        let _ = tokio::time::timeout(GOODBYE_WAIT, async {
            while !matches!(s.link.next().await, LinkEvent::Lost(_)) {}
        })
        .await;
    }
}

/// Resolves when the tap has values; never without a tap.
async fn wait_tags(tap: Option<&TagTap>) {
    match tap {
        Some(t) => t.arrived().await,
        None => std::future::pending().await,
    }
}

/// Resolves at `at`; never without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
