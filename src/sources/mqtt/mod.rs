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
//!   it good again.
//!
//! Messages are acknowledged to the broker as they are read (rumqttc's
//! automatic acks): a sample not yet committed by the edge when the
//! gateway stops is not asked for again.

mod link;
mod metrics;
pub mod payload;
pub mod tls;
pub mod topic;

pub use metrics::MqttMetrics;

use super::filter::{Filter, Verdict};
use super::{condition, split_points};
use crate::backoff::Backoff;
use crate::config::mqtt::{MqttSource, MqttTag};
use crate::config::{TagConfig, TagPoint};
use crate::model::{Millis, Quality, Sample, Value};
use crate::status::Telemetry;
use link::{Link, LinkEvent};
use rumqttc::{ConnectReturnCode, ConnectionError, StateError};
use std::collections::BTreeMap;
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
    tx: mpsc::Sender<Sample>,
    telemetry: Arc<Telemetry>,
    metrics: Arc<MqttMetrics>,
    /// Every tag name a message named (fixed ones from the start), with
    /// its bad reason while bad (so a lost broker marks them bad, and a
    /// reason is reported once per change) and its conditioning state.
    names: BTreeMap<String, Named>,
    log: LogLimit,
}

impl MqttReader {
    pub fn new(
        name: String,
        config: MqttSource,
        tags: Vec<TagConfig>,
        tx: mpsc::Sender<Sample>,
        telemetry: Arc<Telemetry>,
        metrics: Arc<MqttMetrics>,
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
        MqttReader {
            name,
            config,
            tags,
            points,
            tx,
            telemetry,
            metrics,
            names,
            log: LogLimit::default(),
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
                }
                Ok(LinkEvent::Message { topic, payload }) => {
                    self.message(&topic, &payload).await;
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

    /// One message: a sample for each tag whose filter matches its topic.
    async fn message(&mut self, topic: &str, bytes: &[u8]) {
        self.metrics.message(&self.name);
        let now = Millis::now();
        let mut good = 0;
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
            let decoded = payload::decode(&point.payload, point.value_type, bytes);
            self.track(&name, i);
            match decoded {
                Ok((value, time)) => {
                    let value = condition(&self.tags[i], value);
                    let time = time.unwrap_or(now);
                    // An untracked name (past MAX_NAMES) is conditioned
                    // afresh: its range still holds, its deadband cannot.
                    let verdict = match self.names.get_mut(&name) {
                        Some(n) => n.filter.apply(value, time),
                        None => Filter::new(self.tags[i].conditioning.clone()).apply(value, time),
                    };
                    match verdict {
                        Verdict::Hold => {}
                        Verdict::Bad(why) => self.bad(&name, &why, time).await,
                        Verdict::Send(value) => {
                            self.good(&name, value, time).await;
                            good += 1;
                        }
                    }
                }
                Err(e) => {
                    let why = format!("bad payload on {topic}: {e}");
                    self.payload_error(topic, &e.to_string());
                    self.bad(&name, &why, now).await;
                }
            }
        }
        if good > 0 {
            self.telemetry.samples(&self.name, good, now);
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

    async fn send(&self, name: &str, value: Value, quality: Quality, time: Millis) {
        let sample = Sample {
            tag: name.to_string(),
            value,
            quality,
            time,
            server_time: None,
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
