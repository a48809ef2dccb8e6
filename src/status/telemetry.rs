//! What the gateway knows about itself: Prometheus metrics plus the few
//! facts the status page needs in words (why a device is not read, why
//! delivery fails). Every stage reports here; only `status` reads it.

use crate::model::Millis;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

type Labels = Vec<(&'static str, String)>;

pub struct Telemetry {
    registry: Registry,
    samples: Family<Labels, Counter>,
    connected: Family<Labels, Gauge>,
    events: Family<Labels, Counter>,
    delivered: Family<Labels, Counter>,
    delivery_errors: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
    /// Seconds of closed running, idle and down intervals, per work center:
    /// availability is running / (running + down) over any range.
    state_seconds: Family<Labels, Counter<f64, AtomicU64>>,
    board: Mutex<Board>,
    pub started: Millis,
}

/// The words behind the numbers.
#[derive(Clone, Debug, Default)]
pub struct Board {
    pub sources: BTreeMap<String, SourceStatus>,
    /// Tags whose last reading failed, with why: (source, tag) → reason.
    pub bad_tags: BTreeMap<(String, String), String>,
    pub sinks: BTreeMap<String, SinkStatus>,
    /// The last `SIGHUP` reload, if any.
    pub reload: Option<Reload>,
}

/// How a config reload went.
#[derive(Clone, Debug, PartialEq)]
pub struct Reload {
    pub at: Millis,
    /// None: applied. Some: refused, and why (the running config stays).
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct SourceStatus {
    pub connected: bool,
    pub last_error: Option<String>,
    pub last_sample: Option<Millis>,
    pub samples: u64,
    /// How a Modbus source reads its tags now.
    pub plan: Option<ModbusPlan>,
}

/// A Modbus source's read plan per unit id: its blocks and, for a block the
/// device refused for its addresses, the reads that replace it, the tags it
/// refuses even alone, and when the block is tried whole again.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModbusPlan {
    pub units: BTreeMap<u8, Vec<PlanBlock>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlanBlock {
    pub group: String,
    pub table: &'static str,
    pub start: u16,
    pub count: u16,
    pub tags: usize,
    pub split: Option<PlanSplit>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlanSplit {
    /// The exception that refused the whole block.
    pub why: String,
    pub reads: Vec<PlanRead>,
    /// Tag → exception, for tags the device refuses alone.
    pub refused: BTreeMap<String, String>,
    pub reprobe_at: Millis,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlanRead {
    pub start: u16,
    pub count: u16,
    pub tags: Vec<String>,
}

impl PlanBlock {
    /// Requests one read of the block costs now.
    pub fn requests(&self) -> usize {
        self.split.as_ref().map_or(1, |s| s.reads.len())
    }
}

impl ModbusPlan {
    /// Requests one poll of every block of `unit` costs now.
    pub fn requests(&self, unit: u8) -> usize {
        self.units
            .get(&unit)
            .map_or(0, |b| b.iter().map(PlanBlock::requests).sum())
    }

    /// The plan as `/status` shows it, keyed by unit id.
    pub fn to_json(&self) -> serde_json::Value {
        let units: serde_json::Map<_, _> = self
            .units
            .iter()
            .map(|(unit, blocks)| {
                let list: Vec<serde_json::Value> = blocks
                    .iter()
                    .map(|b| {
                        let split = b.split.as_ref().map(|s| {
                            serde_json::json!({
                                "why": s.why,
                                "reads": s.reads.iter().map(|r| serde_json::json!({
                                    "start": r.start,
                                    "count": r.count,
                                    "tags": r.tags,
                                })).collect::<Vec<_>>(),
                                "refused": s.refused,
                                "reprobe_at": s.reprobe_at.rfc3339(),
                            })
                        });
                        serde_json::json!({
                            "group": b.group,
                            "table": b.table,
                            "start": b.start,
                            "count": b.count,
                            "tags": b.tags,
                            "split": split,
                        })
                    })
                    .collect();
                (
                    unit.to_string(),
                    serde_json::json!({
                        "requests_per_poll": self.requests(*unit),
                        "blocks": list,
                    }),
                )
            })
            .collect();
        serde_json::Value::Object(units)
    }
}

#[derive(Clone, Debug, Default)]
pub struct SinkStatus {
    pub delivered: u64,
    pub last_delivery: Option<Millis>,
    pub last_error: Option<String>,
    pub retrying: bool,
    /// Why the sink stopped delivering, if it did.
    pub halted: Option<String>,
    /// The protocol (and Odoo version) the sink speaks, once known.
    pub api: Option<String>,
    /// The destination refuses the sink's credentials (API key) now.
    pub auth_failed: bool,
    /// The circuit breaker is open: the destination kept failing.
    pub circuit_open: bool,
    /// Whether the last request reached the destination (None: no request yet).
    pub connected: Option<bool>,
    /// When a request to the destination last succeeded.
    pub last_success: Option<Millis>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new(|_| {})
    }
}

impl Telemetry {
    /// `components` registers the metric sets that components own (the store's).
    pub fn new(components: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::default();
        let samples = Family::<Labels, Counter>::default();
        let connected = Family::<Labels, Gauge>::default();
        let events = Family::<Labels, Counter>::default();
        let delivered = Family::<Labels, Counter>::default();
        let delivery_errors = Family::<Labels, Counter>::default();
        let rejected = Family::<Labels, Counter>::default();
        let state_seconds = Family::<Labels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "plantgate_samples",
            "Samples read, per source",
            samples.clone(),
        );
        registry.register(
            "plantgate_source_connected",
            "1 when the source's device answers, else 0",
            connected.clone(),
        );
        registry.register(
            "plantgate_events",
            "Business events committed to the store, per kind",
            events.clone(),
        );
        registry.register(
            "plantgate_events_delivered",
            "Events a destination confirmed, per sink",
            delivered.clone(),
        );
        registry.register(
            "plantgate_delivery_errors",
            "Failed delivery attempts (retried or dead-lettered), per sink",
            delivery_errors.clone(),
        );
        registry.register(
            "plantgate_events_rejected",
            "Events a destination refused for good, moved to the dead letters, per sink",
            rejected.clone(),
        );
        registry.register(
            "plantgate_machine_state_seconds",
            "Seconds of closed running, idle and down intervals, per work center and state",
            state_seconds.clone(),
        );
        components(&mut registry);
        Telemetry {
            registry,
            samples,
            connected,
            events,
            delivered,
            delivery_errors,
            rejected,
            state_seconds,
            board: Mutex::new(Board::default()),
            started: Millis::now(),
        }
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        // A poisoned lock only means a panic elsewhere mid-update of plain data.
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn reload(&self, error: Option<String>) {
        self.board().reload = Some(Reload {
            at: Millis::now(),
            error,
        });
    }

    pub fn snapshot(&self) -> Board {
        self.board().clone()
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub fn source_added(&self, source: &str) {
        self.connected
            .get_or_create(&vec![("source", source.to_string())])
            .set(0);
        let _ = self
            .samples
            .get_or_create(&vec![("source", source.to_string())]);
        self.board().sources.entry(source.to_string()).or_default();
    }

    /// `n` good samples read from a source.
    pub fn samples(&self, source: &str, n: u64, at: Millis) {
        self.samples
            .get_or_create(&vec![("source", source.to_string())])
            .inc_by(n);
        let mut b = self.board();
        let s = b.sources.entry(source.to_string()).or_default();
        s.samples += n;
        s.last_sample = Some(at);
    }

    /// A tag turned bad (`Some(reason)`) or good again (`None`).
    pub fn tag_quality(&self, source: &str, tag: &str, bad: Option<&str>) {
        let key = (source.to_string(), tag.to_string());
        let mut b = self.board();
        match bad {
            Some(why) => {
                b.bad_tags.insert(key, why.to_string());
            }
            None => {
                b.bad_tags.remove(&key);
            }
        }
    }

    pub fn source_up(&self, source: &str) {
        self.connected
            .get_or_create(&vec![("source", source.to_string())])
            .set(1);
        let mut b = self.board();
        let s = b.sources.entry(source.to_string()).or_default();
        s.connected = true;
        s.last_error = None;
    }

    pub fn source_down(&self, source: &str, error: &str) {
        self.connected
            .get_or_create(&vec![("source", source.to_string())])
            .set(0);
        let mut b = self.board();
        let s = b.sources.entry(source.to_string()).or_default();
        s.connected = false;
        s.last_error = Some(error.to_string());
    }

    /// A Modbus source's read plan changed (or was made).
    pub fn modbus_plan(&self, source: &str, plan: ModbusPlan) {
        self.board()
            .sources
            .entry(source.to_string())
            .or_default()
            .plan = Some(plan);
    }

    /// A tag-level problem on a source that stays connected.
    pub fn source_error(&self, source: &str, error: &str) {
        let mut b = self.board();
        b.sources.entry(source.to_string()).or_default().last_error = Some(error.to_string());
    }

    pub fn event(&self, kind: &str) {
        self.events
            .get_or_create(&vec![("kind", kind.to_string())])
            .inc();
    }

    /// A closed machine-state interval, committed.
    pub fn state_interval(&self, i: &crate::model::StateInterval) {
        let secs = i.end.saturating_sub(i.start).max(0) as f64 / 1000.0;
        self.state_seconds
            .get_or_create(&vec![
                ("workcenter", i.workcenter.clone()),
                ("state", i.state.as_str().to_string()),
            ])
            .inc_by(secs);
    }

    pub fn sink_added(&self, sink: &str) {
        let l = vec![("sink", sink.to_string())];
        let _ = self.delivered.get_or_create(&l);
        let _ = self.delivery_errors.get_or_create(&l);
        let _ = self.rejected.get_or_create(&l);
        self.board().sinks.entry(sink.to_string()).or_default();
    }

    /// Record the protocol a sink settled on (shown on `/status`).
    pub fn sink_api(&self, sink: &str, api: &str) {
        let mut b = self.board();
        let s = b.sinks.entry(sink.to_string()).or_default();
        if s.api.as_deref() != Some(api) {
            s.api = Some(api.to_string());
        }
    }

    /// Record whether the destination refuses the sink's credentials.
    pub fn sink_auth_failed(&self, sink: &str, failed: bool) {
        self.board()
            .sinks
            .entry(sink.to_string())
            .or_default()
            .auth_failed = failed;
    }

    /// Record whether the sink reaches its destination, and its last success.
    pub fn sink_link(&self, sink: &str, connected: Option<bool>, last_success: Option<Millis>) {
        let mut b = self.board();
        let s = b.sinks.entry(sink.to_string()).or_default();
        s.connected = connected;
        s.last_success = last_success;
    }

    /// Record whether the sink's circuit breaker is open.
    pub fn sink_circuit(&self, sink: &str, open: bool) {
        self.board()
            .sinks
            .entry(sink.to_string())
            .or_default()
            .circuit_open = open;
    }

    pub fn delivered(&self, sink: &str) {
        self.delivered
            .get_or_create(&vec![("sink", sink.to_string())])
            .inc();
        let mut b = self.board();
        let s = b.sinks.entry(sink.to_string()).or_default();
        s.delivered += 1;
        s.last_delivery = Some(Millis::now());
        s.retrying = false;
    }

    /// [`Telemetry::delivered`] for `n` events at once (a sink that
    /// acknowledges in batches).
    pub fn delivered_many(&self, sink: &str, n: u64) {
        self.delivered
            .get_or_create(&vec![("sink", sink.to_string())])
            .inc_by(n);
        let mut b = self.board();
        let s = b.sinks.entry(sink.to_string()).or_default();
        s.delivered += n;
        s.last_delivery = Some(Millis::now());
        s.retrying = false;
    }

    pub fn delivery_error(&self, sink: &str, error: &str) {
        self.delivery_errors
            .get_or_create(&vec![("sink", sink.to_string())])
            .inc();
        let mut b = self.board();
        let s = b.sinks.entry(sink.to_string()).or_default();
        s.last_error = Some(error.to_string());
        s.retrying = true;
    }

    pub fn rejected(&self, sink: &str, error: &str) {
        self.delivery_errors
            .get_or_create(&vec![("sink", sink.to_string())])
            .inc();
        self.rejected
            .get_or_create(&vec![("sink", sink.to_string())])
            .inc();
        let mut b = self.board();
        let s = b.sinks.entry(sink.to_string()).or_default();
        s.last_error = Some(error.to_string());
        s.retrying = false;
    }

    pub fn halted(&self, sink: &str, why: &str) {
        let mut b = self.board();
        let s = b.sinks.entry(sink.to_string()).or_default();
        s.last_error = Some(why.to_string());
        s.halted = Some(why.to_string());
        s.retrying = false;
    }

    pub fn is_halted(&self, sink: &str) -> bool {
        self.board()
            .sinks
            .get(sink)
            .is_some_and(|s| s.halted.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MachineState, StateInterval};

    #[test]
    fn closed_intervals_add_up_per_work_center_and_state() {
        let t = Telemetry::new(|_| {});
        let interval = |state, start, end| StateInterval {
            workcenter: "PRESS1".into(),
            state,
            value: 1,
            start: Millis(start),
            end: Millis(end),
        };
        t.state_interval(&interval(MachineState::Running, 0, 90_000));
        t.state_interval(&interval(MachineState::Down, 90_000, 100_000));
        t.state_interval(&interval(MachineState::Running, 100_000, 130_500));
        let text = t.encode();
        for line in [
            r#"plantgate_machine_state_seconds_total{workcenter="PRESS1",state="running"} 120.5"#,
            r#"plantgate_machine_state_seconds_total{workcenter="PRESS1",state="down"} 10.0"#,
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
    }
}
