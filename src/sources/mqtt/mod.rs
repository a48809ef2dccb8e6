//! MQTT source (3.1.1 or 5, see `link`): one task per broker connection. Each tag subscribes to a
//! topic filter; every message on a matching topic is decoded (plain text
//! or JSON, see `payload`) into a sample of the tag, named from the
//! topic's levels when the tag's name has `{N}` (see `topic`).
//!
//! Faults, and what each does:
//! - cannot connect, or refused (bad credentials, not authorized): the
//!   source is down with the broker's reason in plain words, its tags bad,
//!   and it retries with exponential backoff (rumqttc has none of its own);
//! - connection lost: the same; on reconnect every filter is subscribed
//!   again (rumqttc does not), and the broker sends the retained messages;
//! - a payload that gives no value: counted
//!   (`plantgate_mqtt_payload_errors_total`), logged with its topic and why
//!   (at most [`LOG_BURST`] lines a minute, then a count of the rest), and a
//!   bad sample with the reason for the tag; the next good message makes
//!   it good again. With `dead_letter = true` the message is kept in the
//!   store's dead letters with its topic and the reason (`plantgate dlq`);
//! - a message over `max_message_size` (default 256 KiB): refused the same
//!   way, and counted in `plantgate_mqtt_oversize_messages_total`.
//!
//! Sparkplug B (`payload = "sparkplug"` on the source): the source follows
//! one edge node (see `sparkplug`); its deaths make its tags bad, and a
//! sequence gap, data before a birth or an unknown alias publishes a
//! rebirth request (`plantgate_mqtt_rebirth_requests_total`).
//!
//! Messages of QoS 1 and 2 are acknowledged to the broker only once the
//! samples they gave are committed by the edge (rumqttc's manual acks, in
//! the order they came): with a fixed `client_id` and `clean_session =
//! false`, the broker sends again what the gateway had not committed when
//! it stopped or lost the connection.

pub(crate) mod link;
mod metrics;
pub mod payload;
pub mod sparkplug;
pub mod tls;
pub mod topic;

pub use metrics::MqttMetrics;

use super::filter::{Filter, Verdict};
use super::{condition, split_points};
use crate::backoff::Backoff;
use crate::config::mqtt::SparkplugNode;
use crate::config::mqtt::{MqttSource, MqttTag};
use crate::config::{TagConfig, TagPoint};
use crate::model::{Commits, Millis, Quality, Receipt, Sample, TagTable, Value};
use crate::status::Telemetry;
use crate::store::Store;
use link::{Ack, Link, LinkEvent};
use payload::{Payload, PayloadError};
use rumqttc::{ConnectReturnCode, ConnectionError, StateError};
use std::collections::BTreeMap;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Payload errors logged per minute and source before the rest are only
/// counted, so a flood of garbage cannot fill the journal.
pub const LOG_BURST: u32 = 10;

/// Tag names tracked per source (see `MqttReader::track`).
const MAX_NAMES: usize = 10_000;

/// First reconnect wait; it doubles up to the source's `backoff_max`.
const BACKOFF_MIN: Duration = Duration::from_millis(100);

pub struct MqttReader {
    pub name: String,
    pub config: MqttSource,
    /// The source's tags; their MQTT points are at the same index.
    tags: Vec<TagConfig>,
    points: Vec<MqttTag>,
    /// Every configured tag's id: a name built from topic levels may be
    /// any tag's.
    tag_table: Arc<TagTable>,
    tx: mpsc::Sender<Sample>,
    telemetry: Arc<Telemetry>,
    metrics: Arc<MqttMetrics>,
    /// Every tag name a message named (fixed ones from the start), with
    /// its bad reason while bad (so a lost broker marks them bad, and a
    /// reason is reported once per change) and its conditioning state.
    names: BTreeMap<String, Named>,
    log: LogLimit,
    /// Where refused messages go when `dead_letter = true`.
    dead_letters: Option<Arc<Store>>,
    /// The edge node followed, for a Sparkplug source.
    sparkplug: Option<SparkplugState>,
    /// How far the edge committed this source's samples.
    commits: Arc<Commits>,
    /// Receipts handed out (the last one's number).
    sent: u64,
    /// Messages read but not acknowledged yet, oldest first, each with the
    /// receipt that must be committed first.
    unacked: VecDeque<(u64, Box<Ack>)>,
    /// A rebirth request to publish (command topic, why) after a message.
    rebirth: Option<(String, String)>,
}

/// A Sparkplug source's edge node and which tags read its metrics.
struct SparkplugState {
    node: SparkplugNode,
    session: sparkplug::Session,
    /// (device, metric) → the tags (indexes) that read it.
    tags: HashMap<(Option<String>, String), Vec<usize>>,
}

impl MqttReader {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        config: MqttSource,
        tags: Vec<TagConfig>,
        tag_table: Arc<TagTable>,
        tx: mpsc::Sender<Sample>,
        telemetry: Arc<Telemetry>,
        metrics: Arc<MqttMetrics>,
        dead_letters: Option<Arc<Store>>,
    ) -> Self {
        let (tags, points) = split_points(tags, |p| match p {
            TagPoint::Mqtt(x) => Some(x),
            _ => None,
        });
        let names = points
            .iter()
            .zip(&tags)
            .filter_map(|(p, t)| Some((p.name.fixed()?.to_string(), Named::new(t))))
            .collect();
        let sparkplug = config.sparkplug.clone().map(|node| {
            let mut tags: HashMap<_, Vec<usize>> = HashMap::new();
            for (i, p) in points.iter().enumerate() {
                if let Payload::Sparkplug { device, metric } = &p.payload {
                    tags.entry((device.clone(), metric.clone()))
                        .or_default()
                        .push(i);
                }
            }
            SparkplugState {
                node,
                session: sparkplug::Session::default(),
                tags,
            }
        });
        MqttReader {
            name,
            tags,
            points,
            tag_table,
            tx,
            telemetry,
            metrics,
            names,
            log: LogLimit::default(),
            dead_letters: dead_letters.filter(|_| config.dead_letter),
            sparkplug,
            commits: Arc::default(),
            sent: 0,
            unacked: VecDeque::new(),
            rebirth: None,
            config,
        }
    }

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        self.metrics.added(&self.name);
        let broker = self.address();
        let mut backoff = Backoff::new(BACKOFF_MIN, self.config.backoff_max);
        let mut link = loop {
            match Link::new(&self.config) {
                Ok(l) => break l,
                Err(why) => {
                    self.down(&why).await;
                    if wait(&mut shutdown, backoff.next_delay()).await {
                        return;
                    }
                }
            }
        };
        let mut connected = false;
        loop {
            if !connected {
                // The password is read at each connect: a rotated file is
                // picked up without a restart.
                if let Err(why) = self.credentials(&mut link) {
                    self.down(&why).await;
                    if wait(&mut shutdown, backoff.next_delay()).await {
                        return;
                    }
                    continue;
                }
            }
            let event = tokio::select! {
                _ = shutdown.changed() => {
                    link.disconnect();
                    return;
                }
                _ = self.commits.changed(), if !self.unacked.is_empty() => {
                    self.acknowledge(&link);
                    continue;
                }
                e = link.poll(&broker) => e,
            };
            match event {
                Ok(LinkEvent::Connected { session_present }) => {
                    connected = true;
                    backoff.reset();
                    tracing::info!(source = %self.name, broker = %broker,
                        session_present, "connected to the MQTT broker");
                    self.telemetry.source_up(&self.name);
                    // Subscribed on every connect: rumqttc does not, and a
                    // clean session starts with none.
                    if let Err(e) = link.subscribe(&self.filters()) {
                        tracing::error!(source = %self.name, error = %e, "cannot subscribe");
                    }
                    // The node's current values at once, even from one that
                    // reports only changes (its tags went bad with the
                    // broker). After the subscribe: the broker keeps order.
                    if let Some(sp) = &self.sparkplug {
                        let command = sparkplug::command_topic(&sp.node.group, &sp.node.node);
                        self.ask_rebirth(&link, &command, None);
                    }
                }
                Ok(LinkEvent::Message {
                    topic,
                    payload,
                    ack,
                }) => {
                    self.message(&topic, &payload).await;
                    if let Some((command, why)) = self.rebirth.take() {
                        self.ask_rebirth(&link, &command, Some(&why));
                    }
                    if let Some(ack) = ack {
                        self.unacked.push_back((self.sent, ack));
                    }
                    self.acknowledge(&link);
                }
                Ok(LinkEvent::Refused(refused)) if refused > 0 => {
                    let why = format!(
                        "the broker refused {refused} of the subscriptions (check its ACL for this user)"
                    );
                    tracing::error!(source = %self.name, "{why}");
                    self.telemetry.source_error(&self.name, &why);
                }
                Ok(_) => {}
                Err(why) => {
                    connected = false;
                    // The broker sends again what was not acknowledged (a
                    // persistent session) or forgets it (a clean one).
                    self.unacked.clear();
                    self.down(&why).await;
                    if wait(&mut shutdown, backoff.next_delay()).await {
                        return;
                    }
                }
            }
        }
    }

    fn address(&self) -> String {
        format!("{}:{}", self.config.host, self.config.port)
    }

    /// One subscription per distinct filter, at the highest QoS asked.
    fn filters(&self) -> Vec<(String, u8)> {
        let mut by_filter: BTreeMap<&str, u8> = BTreeMap::new();
        for p in &self.points {
            let q = by_filter.entry(p.topic.as_str()).or_default();
            *q = (*q).max(p.qos);
        }
        by_filter
            .into_iter()
            .map(|(f, q)| (f.to_string(), q))
            .collect()
    }

    fn credentials(&self, link: &mut Link) -> Result<(), String> {
        let (Some(user), Some(file)) = (&self.config.username, &self.config.password_file) else {
            return Ok(());
        };
        let password = crate::config::SecretSource::File(file.clone())
            .read()
            .map_err(|e| format!("password_file: {e}"))?;
        link.set_credentials(user, password.expose());
        Ok(())
    }

    /// The broker is unreachable: the source is down and every tag known
    /// so far bad, with the reason.
    async fn down(&mut self, why: &str) {
        tracing::warn!(source = %self.name, broker = %self.address(), error = %why,
            "MQTT broker unavailable; retrying");
        self.telemetry.source_down(&self.name, why);
        let names: Vec<String> = self.names.keys().cloned().collect();
        let now = Millis::now();
        for name in names {
            self.bad(&name, why, now).await;
        }
    }

    /// Acknowledge, in order, the messages whose samples are committed.
    fn acknowledge(&mut self, link: &Link) {
        let committed = self.commits.committed();
        while self.unacked.front().is_some_and(|(r, _)| *r <= committed) {
            if let Some((_, ack)) = self.unacked.pop_front() {
                if let Err(e) = link.ack(&ack) {
                    tracing::debug!(source = %self.name, error = %e, "cannot acknowledge a message; the broker sends it again");
                }
            }
        }
    }

    /// One message: a sample for each tag whose filter matches its topic.
    async fn message(&mut self, topic: &str, bytes: &[u8]) {
        self.metrics.message(&self.name);
        let now = Millis::now();
        let max = self.config.max_message_size;
        let too_large = (bytes.len() > max).then_some(PayloadError::TooLarge {
            size: bytes.len(),
            max,
        });
        if too_large.is_some() {
            self.metrics.oversize(&self.name);
        }
        if self.sparkplug.is_some() {
            match too_large {
                Some(e) => self.refuse(topic, bytes, &e.to_string()).await,
                None => self.sparkplug_message(topic, bytes).await,
            }
            return;
        }
        let mut good = 0;
        let mut decoded_any = false;
        let mut first_error = None;
        for i in 0..self.points.len() {
            let Some(levels) = self.points[i].topic.matches(topic) else {
                continue;
            };
            let name = self.points[i].name.render(&levels);
            if self.points[i].name.fixed().is_none() && !plain(&name) {
                self.payload_error(topic, &format!("topic gives tag name {name:?}, which is not a plain name (letters, digits, `_`, `-`)"));
                continue;
            }
            let point = &self.points[i];
            let decoded = match &too_large {
                Some(e) => Err(e.clone()),
                None => payload::decode(&point.payload, point.value_type, bytes),
            };
            self.track(&name, i);
            match decoded {
                Ok((value, time)) => {
                    decoded_any = true;
                    if self.reading(i, &name, value, time.unwrap_or(now)).await {
                        good += 1;
                    }
                }
                Err(e) => {
                    let why = format!("bad payload on {topic}: {e}");
                    self.payload_error(topic, &e.to_string());
                    self.bad(&name, &why, now).await;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        if good > 0 {
            self.telemetry.samples(&self.name, good, now);
        }
        // A message no tag could read is kept; one that some tag read is not
        // malformed (another tag's pointer may just not be in it).
        if let (false, Some(why)) = (decoded_any, first_error) {
            self.keep(topic, bytes, &why).await;
        }
    }

    /// A value decoded for tag `i` under `name`: conditioned and sent.
    /// True when a good sample went out.
    async fn reading(&mut self, i: usize, name: &str, value: Value, time: Millis) -> bool {
        let value = condition(&self.tags[i], value);
        // An untracked name (past MAX_NAMES) is conditioned afresh: its
        // range still holds, its deadband cannot.
        let verdict = match self.names.get_mut(name) {
            Some(n) => n.filter.apply(value, time),
            None => Filter::new(self.tags[i].conditioning.clone()).apply(value, time),
        };
        match verdict {
            Verdict::Hold => false,
            Verdict::Bad(why) => {
                self.bad(name, &why, time).await;
                false
            }
            Verdict::Send(value) => {
                self.good(name, value, time).await;
                true
            }
        }
    }

    /// A Sparkplug message of the followed edge node.
    async fn sparkplug_message(&mut self, topic: &str, bytes: &[u8]) {
        let Some(sp) = self.sparkplug.as_mut() else {
            return;
        };
        let Some((kind, device)) = sparkplug::parse_topic(topic, &sp.node.group, &sp.node.node)
        else {
            // Under the node's filter but not a Sparkplug topic shape.
            tracing::debug!(source = %self.name, topic, "not a Sparkplug B topic; ignored");
            return;
        };
        let outcome = match sp.session.handle(kind, device, bytes, Instant::now()) {
            Ok(o) => o,
            Err(e) => {
                self.refuse(topic, bytes, &e.to_string()).await;
                return;
            }
        };
        let node = format!("{}/{}", sp.node.group, sp.node.node);
        if let Some(why) = outcome.rebirth {
            let command = sparkplug::command_topic(&sp.node.group, &sp.node.node);
            self.rebirth = Some((command, why));
        }
        let now = Millis::now();
        let mut good = 0;
        for u in outcome.updates {
            let key = (u.device, u.metric);
            let Some(tags) = self.sparkplug.as_ref().and_then(|sp| sp.tags.get(&key)) else {
                continue;
            };
            let time = u.time.unwrap_or(now);
            for i in tags.clone() {
                let name = self.tags[i].name.clone();
                let read = u.reading.clone().and_then(|v| {
                    payload::convert(v, self.points[i].value_type).map_err(|e| e.to_string())
                });
                match read {
                    Ok(v) => {
                        if self.reading(i, &name, v, time).await {
                            good += 1;
                        }
                    }
                    Err(e) => {
                        let why = format!("Sparkplug metric {:?} on {topic}: {e}", key.1);
                        self.payload_error(topic, &why);
                        self.bad(&name, &why, time).await;
                    }
                }
            }
        }
        if good > 0 {
            self.telemetry.samples(&self.name, good, now);
        }
        if let Some(dead) = outcome.dead {
            let (why, device) = match dead {
                sparkplug::Death::Node => (
                    format!("Sparkplug edge node {node} is offline (NDEATH)"),
                    None,
                ),
                sparkplug::Death::Device(d) => (
                    format!("Sparkplug device {d} of edge node {node} is offline (DDEATH)"),
                    Some(d),
                ),
            };
            tracing::warn!(source = %self.name, "{why}");
            let mut dead_tags = Vec::new();
            for p in &self.points {
                if let Payload::Sparkplug { device: d, .. } = &p.payload {
                    if device.is_none() || *d == device {
                        if let Some(n) = p.name.fixed() {
                            dead_tags.push(n.to_string());
                        }
                    }
                }
            }
            for name in dead_tags {
                self.bad(&name, &why, now).await;
            }
        }
    }

    /// Publish a rebirth request: on connect, or when values were missed
    /// (`why`; the session already rate-limited it).
    fn ask_rebirth(&self, link: &Link, command: &str, why: Option<&str>) {
        match link.publish(command, sparkplug::rebirth_request(Millis::now())) {
            Ok(()) => {
                self.metrics.rebirth(&self.name);
                match why {
                    Some(why) => tracing::warn!(source = %self.name, topic = command, reason = why,
                        "Sparkplug values were missed; asked the edge node for a rebirth"),
                    None => tracing::info!(source = %self.name, topic = command,
                        "asked the Sparkplug edge node for a rebirth (its current values)"),
                }
            }
            Err(e) => {
                tracing::warn!(source = %self.name, topic = command, error = %e,
                    "cannot publish a Sparkplug rebirth request");
            }
        }
    }

    /// A message no tag can read: counted, logged, kept when asked.
    async fn refuse(&mut self, topic: &str, bytes: &[u8], why: &str) {
        self.payload_error(topic, why);
        self.keep(topic, bytes, why).await;
    }

    /// Into the store's dead letters, when `dead_letter = true`: at most
    /// `max_message_size` bytes of it.
    async fn keep(&mut self, topic: &str, bytes: &[u8], why: &str) {
        let Some(store) = &self.dead_letters else {
            return;
        };
        let kept = &bytes[..bytes.len().min(self.config.max_message_size)];
        match store.source_dead_letter(&self.name, topic, why, kept).await {
            Ok(id) => {
                self.metrics.dead_letter(&self.name);
                tracing::debug!(source = %self.name, topic, id, "refused message kept as a dead letter");
            }
            Err(e) => {
                tracing::error!(source = %self.name, topic, error = %e, "cannot keep a refused message as a dead letter");
            }
        }
    }

    fn payload_error(&mut self, topic: &str, why: &str) {
        self.metrics.payload_error(&self.name);
        if let Some(suppressed) = self.log.allow(Instant::now()) {
            if suppressed > 0 {
                tracing::warn!(source = %self.name, suppressed,
                    "more MQTT payload errors were not logged (counted in plantgate_mqtt_payload_errors_total)");
            }
            tracing::warn!(source = %self.name, topic, error = why, "MQTT payload gives no value");
        }
    }

    /// Track a name of tag `i` from its first message on; past
    /// [`MAX_NAMES`] new names are not tracked (topics full of garbage
    /// levels must not grow the map without end).
    fn track(&mut self, name: &str, i: usize) {
        if !self.names.contains_key(name) && self.names.len() < MAX_NAMES {
            self.names
                .insert(name.to_string(), Named::new(&self.tags[i]));
        }
    }

    async fn good(&mut self, name: &str, value: Value, time: Millis) {
        if let Some(n) = self.names.get_mut(name) {
            if n.bad.take().is_some() {
                self.telemetry.tag_quality(&self.name, name, None);
            }
        }
        self.send(name, value, Quality::Good, time).await;
    }

    /// A bad sample; the status page hears of it once per change of reason.
    async fn bad(&mut self, name: &str, why: &str, time: Millis) {
        if let Some(n) = self.names.get_mut(name) {
            if n.bad.as_deref() == Some(why) {
                return;
            }
            n.bad = Some(why.to_string());
        }
        self.telemetry.tag_quality(&self.name, name, Some(why));
        self.send(name, Value::Int(0), Quality::Bad(why.to_string()), time)
            .await;
    }

    async fn send(&mut self, name: &str, value: Value, quality: Quality, time: Millis) {
        self.sent += 1;
        // Once per message and tag: the name may come from the topic. One
        // no tag has reaches the edge all the same (for its receipt), and
        // no rule reads it.
        let (tag, unconfigured) = match self.tag_table.id(name) {
            Some(id) => (id, None),
            None => (crate::model::TagId::UNCONFIGURED, Some(name.into())),
        };
        let sample = Sample {
            tag,
            unconfigured,
            value,
            quality,
            time,
            server_time: None,
            receipt: Some(Receipt::new(self.commits.clone(), self.sent)),
        };
        // A closed channel means the gateway is stopping; the shutdown
        // signal ends the source right after.
        let _ = self.tx.send(sample).await;
    }
}

/// What the source keeps per tag name.
struct Named {
    /// The reason while bad.
    bad: Option<String>,
    /// The tag's range and deadband, per name: each press of a `+` entry
    /// has its own last value.
    filter: Filter,
}

impl Named {
    fn new(tag: &TagConfig) -> Named {
        Named {
            bad: None,
            filter: Filter::new(tag.conditioning.clone()),
        }
    }
}

/// Sleep `d` unless the gateway stops first (then true).
async fn wait(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = shutdown.changed() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A connection error (MQTT 3.1.1) in plain words, for the status page
/// and the log.
pub fn describe(e: &ConnectionError, broker: &str) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            let why = match code {
                ConnectReturnCode::BadUserNamePassword => {
                    "bad user name or password (check username and password_file)"
                }
                ConnectReturnCode::NotAuthorized => {
                    "not authorized (check username and password_file, and the broker's ACL)"
                }
                ConnectReturnCode::BadClientId => "client id rejected (set another client_id)",
                ConnectReturnCode::ServiceUnavailable => "server unavailable",
                ConnectReturnCode::RefusedProtocolVersion => "protocol version not accepted",
                ConnectReturnCode::Success => "no reason given",
            };
            format!("connection refused by the broker: {why}")
        }
        ConnectionError::Io(io) => format!("cannot reach the broker at {broker}: {io}"),
        ConnectionError::Tls(t) => format!("TLS with the broker at {broker} failed: {t}"),
        ConnectionError::NetworkTimeout => {
            format!("no answer from the broker at {broker} (timed out)")
        }
        ConnectionError::MqttState(StateError::Io(io)) => {
            format!("connection to the broker at {broker} lost: {io}")
        }
        ConnectionError::MqttState(StateError::AwaitPingResp) => {
            format!("the broker at {broker} stopped answering pings")
        }
        other => format!("connection to the broker at {broker} failed: {other}"),
    }
}

/// At most [`LOG_BURST`] lines a minute.
#[derive(Default)]
struct LogLimit {
    window: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogLimit {
    /// `Some(n)` when a line may be logged now, with how many were held
    /// back since the last one.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .window
            .is_none_or(|w| now.duration_since(w) >= Duration::from_secs(60));
        if fresh {
            self.window = Some(now);
            self.logged = 0;
        }
        if self.logged < LOG_BURST {
            self.logged += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_topic_named_tag_is_sent_under_its_id_or_by_name_when_no_tag_has_it() {
        let cfg = crate::config::parse(
            r#"
[gateway]
id = "gw"
[[sources]]
name = "broker"
kind = "mqtt"
address = "127.0.0.1:1883"
[[tags]]
name = "{1}_count"
source = "broker"
topic = "plant1/+/count"
[[tags]]
name = "press1_count"
source = "broker"
topic = "plant1/press1/total"
[odoo]
dry_run = true
"#,
            std::path::Path::new("gw.toml"),
        )
        .expect("config");
        let crate::config::SourceKind::Mqtt(source) = &cfg.sources[0].kind else {
            panic!("an MQTT source")
        };
        let (tx, mut rx) = mpsc::channel(8);
        let mut reader = MqttReader::new(
            "broker".into(),
            source.clone(),
            cfg.tags.clone(),
            cfg.tag_table.clone(),
            tx,
            Arc::new(Telemetry::new(|_| {})),
            Arc::default(),
            None,
        );
        // A name the topic makes that a configured tag has: that tag's id,
        // so its rules read it as they did by name.
        reader.message("plant1/press1/count", b"7").await;
        let s = rx.recv().await.expect("a sample");
        assert_eq!(
            (s.tag, s.unconfigured.as_deref()),
            (cfg.tag_table.id("press1_count").expect("configured"), None)
        );
        // One no tag has: still sent (its receipt must be committed before
        // the broker hears the ack), by name, read by no rule.
        reader.message("plant1/press9/count", b"8").await;
        let s = rx.recv().await.expect("a sample");
        assert_eq!(s.tag, crate::model::TagId::UNCONFIGURED);
        assert_eq!(s.name(&cfg.tag_table), "press9_count");
        assert_eq!(s.value, Value::UInt(8));
        assert!(s.receipt.is_some());
    }

    #[test]
    fn log_limit_holds_a_flood_back_and_counts_it() {
        let mut l = LogLimit::default();
        let t0 = Instant::now();
        let allowed = (0..100).filter(|_| l.allow(t0).is_some()).count();
        assert_eq!(allowed, LOG_BURST as usize);
        assert_eq!(l.allow(t0 + Duration::from_secs(61)), Some(90));
    }

    #[test]
    fn refusals_are_said_plainly() {
        let e = ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized);
        assert!(describe(&e, "b:1").starts_with("connection refused by the broker: not authorized"));
    }
}
