//! The two values that flow through the gateway: a [`Sample`] read from a
//! device, and an [`Event`] the edge derived from samples for the business.

use serde::{Deserialize, Serialize};
use std::fmt;

pub use crate::tags::{TagId, TagTable};

/// Milliseconds since the Unix epoch, UTC. Plain integer so it is cheap to
/// store and compare; formatting happens only at the edges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Millis(pub i64);

impl Millis {
    pub fn now() -> Self {
        Millis(chrono::Utc::now().timestamp_millis())
    }

    /// Odoo's datetime form: naive UTC `YYYY-MM-DD HH:MM:SS`.
    pub fn odoo_datetime(self) -> String {
        match chrono::DateTime::from_timestamp_millis(self.0) {
            Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
            None => "1970-01-01 00:00:00".to_string(),
        }
    }

    /// RFC 3339 for logs and the status page.
    pub fn rfc3339(self) -> String {
        match chrono::DateTime::from_timestamp_millis(self.0) {
            Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            None => String::new(),
        }
    }

    pub fn saturating_sub(self, other: Millis) -> i64 {
        self.0.saturating_sub(other.0)
    }
}

/// A number as a person reads it: a scaled register's float noise
/// (10.200000000000001) rounded away at the ninth decimal.
pub fn tidy(v: f64) -> f64 {
    if v.abs() < 1e12 {
        (v * 1e9).round() / 1e9
    } else {
        v
    }
}

/// A value as read from a device, before any business meaning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Text(String),
}

impl Value {
    /// The value as an unsigned integer, when it is one without loss.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::UInt(v) => Some(v),
            Value::Int(v) => u64::try_from(v).ok(),
            Value::Bool(b) => Some(u64::from(b)),
            Value::Float(f) if f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64 => {
                Some(f as u64)
            }
            _ => None,
        }
    }

    /// The value as a number (a boolean as 0 or 1); text is none.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float(f) if f.is_finite() => Some(f),
            Value::Float(_) | Value::Text(_) => None,
            Value::Int(v) => Some(v as f64),
            Value::UInt(v) => Some(v as f64),
            Value::Bool(b) => Some(f64::from(u8::from(b))),
        }
    }

    /// The value as a signed integer, when it is one without loss.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(v) => Some(v),
            Value::UInt(v) => i64::try_from(v).ok(),
            Value::Bool(b) => Some(i64::from(b)),
            Value::Float(f) if f.fract() == 0.0 && f.abs() <= i64::MAX as f64 => Some(f as i64),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(v) => write!(f, "{v}"),
            Value::Int(v) => write!(f, "{v}"),
            Value::UInt(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Text(v) => write!(f, "{v:?}"),
        }
    }
}

/// How far a sample can be trusted. Bad samples still flow (so the edge and
/// the status page see the gap) but rules never turn them into events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Quality {
    Good,
    Uncertain(String),
    Bad(String),
}

/// One reading of one tag.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The tag read, by its id in the config's [`TagTable`].
    pub tag: TagId,
    /// The name, only when no configured tag has it (`tag` is then
    /// [`TagId::UNCONFIGURED`]): an MQTT tag named from topic levels.
    pub unconfigured: Option<Box<str>>,
    pub value: Value,
    pub quality: Quality,
    /// When the value was valid at the device: its source timestamp when the
    /// protocol gives one, else when it was read.
    pub time: Millis,
    /// When the server saw it (OPC UA's server timestamp), if given.
    pub server_time: Option<Millis>,
    /// Handed back by the edge once the sample's effects are committed to
    /// the store, for a source that acknowledges its device only then.
    pub receipt: Option<Receipt>,
}

impl Sample {
    /// The tag's name, from the table (or the sample, for a name no
    /// configured tag has).
    pub fn name<'a>(&'a self, tags: &'a TagTable) -> &'a str {
        match &self.unconfigured {
            Some(n) => n,
            None => tags.name(self.tag).unwrap_or(""),
        }
    }
}

/// Where one source hears how far the edge has committed its samples:
/// receipts are numbered in the order the source sends them, and the
/// edge reports the highest committed.
#[derive(Debug, Default)]
pub struct Commits {
    committed: std::sync::atomic::AtomicU64,
    /// One waiter (the source); a permit is kept if it is not waiting.
    notify: tokio::sync::Notify,
}

impl Commits {
    /// The highest receipt number committed (0: none yet).
    pub fn committed(&self) -> u64 {
        self.committed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Resolves after a commit since the last call returned.
    pub async fn changed(&self) {
        self.notify.notified().await
    }
}

/// A sample's claim on its source's [`Commits`].
#[derive(Clone, Debug)]
pub struct Receipt {
    commits: std::sync::Arc<Commits>,
    number: u64,
}

impl Receipt {
    /// Receipt `number` (from 1, rising) of `commits`.
    pub fn new(commits: std::sync::Arc<Commits>, number: u64) -> Receipt {
        Receipt { commits, number }
    }

    /// The sample is committed (and so is every earlier one of its source).
    pub fn committed(&self) {
        self.commits
            .committed
            .fetch_max(self.number, std::sync::atomic::Ordering::AcqRel);
        self.commits.notify.notify_one();
    }
}

impl PartialEq for Receipt {
    fn eq(&self, other: &Receipt) -> bool {
        std::sync::Arc::ptr_eq(&self.commits, &other.commits) && self.number == other.number
    }
}

/// A business event. Its `id` is deterministic (derived from the rule and
/// the event's own time), so a replay carries the same id and Odoo can
/// recognise it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    /// The `[[events]]` rule that produced it.
    pub rule: String,
    /// Event time: when it happened at the machine.
    pub time: Millis,
    pub body: EventBody,
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self.body {
            EventBody::Production(_) => "production",
            EventBody::DowntimeStarted(_) => "downtime_started",
            EventBody::DowntimeEnded(_) => "downtime_ended",
            EventBody::AlarmRaised(_) => "alarm_raised",
            EventBody::AlarmCleared(_) => "alarm_cleared",
            EventBody::QualityMeasure(_) => "quality_measure",
            EventBody::QualityAlert(_) => "quality_alert",
            EventBody::Summary(_) => "summary",
            EventBody::StockLevel(_) => "stock_level",
            EventBody::Scrap(_) => "scrap",
            EventBody::StateInterval(_) => "state_interval",
        }
    }

    /// What the event is about (a work center): events of one key are
    /// delivered in order.
    pub fn key(&self) -> &str {
        match &self.body {
            EventBody::Production(p) => &p.workcenter,
            EventBody::DowntimeStarted(d) | EventBody::DowntimeEnded(d) => &d.workcenter,
            EventBody::AlarmRaised(a) | EventBody::AlarmCleared(a) => &a.equipment,
            EventBody::QualityMeasure(m) => &m.workcenter,
            EventBody::QualityAlert(a) => &a.workcenter,
            EventBody::Summary(s) => &s.workcenter,
            EventBody::StockLevel(s) => &s.product,
            EventBody::Scrap(s) => &s.workcenter,
            EventBody::StateInterval(i) => &i.workcenter,
        }
    }

    /// The stored form: a version byte, then postcard. When `Event` changes,
    /// the previous shape is frozen as a copy and decoded under its version.
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        let mut out = vec![EVENT_V1];
        out.extend(postcard::to_stdvec(self)?);
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Event, PayloadError> {
        match bytes.split_first() {
            Some((&EVENT_V1, rest)) => Ok(postcard::from_bytes(rest)?),
            Some((&v, _)) => Err(PayloadError::Version(v)),
            None => Err(PayloadError::Empty),
        }
    }
}

/// Version byte of [`Event::encode`].
const EVENT_V1: u8 = 1;

/// Why stored bytes are not a value of this release.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("empty payload")]
    Empty,
    #[error("payload version {0} is not one this release reads")]
    Version(u8),
    #[error("damaged payload: {0}")]
    Postcard(#[from] postcard::Error),
}

/// New variants go at the end only: postcard stores a variant by its
/// index, so events stored by an earlier release keep decoding as they
/// were (tests/store_upgrade.rs opens such stores).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EventBody {
    Production(Production),
    /// A stop held for the minimum duration: Odoo gets an open time log now.
    DowntimeStarted(Downtime),
    /// The stop ended: the same time log (same `downtime_id`) gets its end.
    DowntimeEnded(Downtime),
    /// An alarm's condition held for its on-delay: Odoo gets a corrective
    /// maintenance request (once per occurrence, keyed by `alarm_id`).
    AlarmRaised(Alarm),
    /// The alarm cleared: the same request notes it.
    AlarmCleared(Alarm),
    /// One measured value against its limits.
    QualityMeasure(Measure),
    /// `alert_after` failed measures in a row.
    QualityAlert(QualityAlert),
    /// A tag summarised over one window (a note on the work center).
    Summary(Summary),
    /// A stock level read at the machine: the counted quantity in Odoo.
    StockLevel(StockLevel),
    /// Parts scrapped in one production period (a rule with `scrap_tag`):
    /// a `stock.scrap` on the work order's MO.
    Scrap(Scrap),
    /// One closed interval of a machine's state (running, idle or down),
    /// for availability downstream; not written to Odoo.
    StateInterval(StateInterval),
}

/// Parts a production rule's scrap counter counted in one period, reported
/// with (and after) the period's good parts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scrap {
    pub workcenter: String,
    pub quantity: u64,
    /// Id of the production event of the same period (absent when the
    /// period had no good parts).
    pub production_id: Option<String>,
    /// Scrap counter readings the quantity was derived from, for audit.
    pub counter_from: u64,
    pub counter_to: u64,
}

/// What a machine-state interval was, for availability (OEE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineState {
    Running,
    /// Not running and not stopped (a state listed in the rule's `idle`).
    Idle,
    Down,
}

impl MachineState {
    pub fn as_str(self) -> &'static str {
        match self {
            MachineState::Running => "running",
            MachineState::Idle => "idle",
            MachineState::Down => "down",
        }
    }
}

/// One closed interval of running, idle or down: a rule's intervals follow
/// each other without gap or overlap from its first reading on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateInterval {
    pub workcenter: String,
    pub state: MachineState,
    /// The state value the interval began with.
    pub value: i64,
    pub start: Millis,
    pub end: Millis,
}

/// The quantity of a product at a location, as the machine measures it
/// (absolute: a repeat sets the same count again).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StockLevel {
    /// `product.product` internal reference or name.
    pub product: String,
    /// Where the config names it (`FILE:LINE:COL`).
    pub product_at: String,
    /// `stock.location` full name or barcode.
    pub location: String,
    pub location_at: String,
    pub quantity: f64,
}

/// A tag's figures over one tumbling window. The figures over readings
/// (`min` … `last`) are absent when no reading fell in the window; the
/// time-weighted mean is there whenever a value was held in it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub workcenter: String,
    pub title: String,
    pub tag: String,
    pub start: Millis,
    pub end: Millis,
    /// Good readings in the window.
    pub count: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    pub first: Option<f64>,
    pub last: Option<f64>,
    pub time_weighted_mean: Option<f64>,
}

/// One occurrence of an alarm on a piece of equipment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    /// `maintenance.equipment` name or serial number.
    pub equipment: String,
    /// Where the config names the equipment (`FILE:LINE:COL`), for the
    /// message when Odoo has no such equipment.
    pub equipment_at: String,
    /// Shared by the raise and the clear of one occurrence.
    pub alarm_id: String,
    /// The request's subject (the rule's `description`).
    pub title: String,
    /// What was seen, e.g. "oven_temp 265 above 260 for 60s".
    pub detail: String,
    /// When the condition began (the on-delay counts from here).
    pub start: Millis,
    /// When the alarm was raised (the on-delay had passed).
    pub raised: Millis,
    /// When it cleared, and the value then.
    pub cleared: Option<Millis>,
    pub clear_value: Option<f64>,
}

/// A measured value checked against its limits at a work center.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    pub workcenter: String,
    pub title: String,
    pub value: f64,
    pub low: f64,
    pub high: f64,
    pub target: Option<f64>,
    pub pass: bool,
}

/// A run of failed measures at a work center.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QualityAlert {
    pub workcenter: String,
    pub title: String,
    /// Failures in a row when the alert was given.
    pub failures: u32,
    /// Event id of the measure that completed the run (its check in Odoo).
    pub measure_id: String,
    pub detail: String,
}

/// Parts counted by a machine counter between two readings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Production {
    pub workcenter: String,
    pub quantity: u64,
    /// Counter readings the quantity was derived from, for audit.
    pub counter_from: u64,
    pub counter_to: u64,
}

/// One downtime interval of a work center.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Downtime {
    pub workcenter: String,
    /// Shared by the start and end events of one interval.
    pub downtime_id: String,
    /// The machine-state value that caused it.
    pub state: i64,
    /// External id of the Odoo loss reason (`mrp.workcenter.productivity.loss`).
    pub loss: String,
    pub description: String,
    pub start: Millis,
    pub end: Option<Millis>,
}
