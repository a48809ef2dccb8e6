//! Configuration: the TOML file → a validated [`Config`].
//!
//! `raw` mirrors the file with positions; [`parse`] checks the whole file at
//! once and reports every problem as `FILE:LINE:COL: what and how to fix`.

pub mod derived;
mod diagnostic;
pub mod diff;
mod files;
pub mod import;
pub mod modbus;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "mqtt")]
pub mod mqtt_sink;
#[cfg(feature = "opcua")]
pub mod opcua;
mod raw;
mod secret;
pub mod status;
pub mod store;
pub mod update;

pub use diagnostic::{ConfigError, Diagnostic};
pub use secret::{Secret, SecretError, SecretSource};
pub use status::{ListenerTls, StatusConfig, DEFAULT_STALL_AFTER, DEFAULT_STATUS_LISTEN};

use modbus::{ModbusSource, RawModbus, RawModbusRtu, RawModbusTag, RawModbusTcp, RawTransport};
#[cfg(feature = "mqtt")]
use mqtt::{MqttSource, RawMqtt, RawMqttTag};
#[cfg(feature = "opcua")]
use opcua::{OpcUaSource, RawOpcUa, RawOpcUaTag};
use raw::{keys_of, Entry, RawConfig, RawEvent, RawOdoo, RawSource, RawTag, S};
use serde::Deserialize as _;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::de::DeTable;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/plantgate";

/// A validated configuration. Every reference in it resolves.
#[derive(Clone, Debug)]
pub struct Config {
    pub gateway: GatewayConfig,
    pub status: StatusConfig,
    pub sources: Vec<SourceConfig>,
    pub tags: Vec<TagConfig>,
    /// Tags computed from other tags, in an order where each follows its inputs.
    pub derived: Vec<derived::DerivedTag>,
    /// Every tag's name and id (`tags`, then `derived`).
    pub tag_table: std::sync::Arc<crate::tags::TagTable>,
    pub events: Vec<EventRule>,
    pub odoo: OdooConfig,
    /// `[mqtt_sink]`: the northbound broker, when events go there too.
    #[cfg(feature = "mqtt")]
    pub mqtt_sink: Option<mqtt_sink::MqttSinkConfig>,
    pub store: crate::store::StoreOptions,
    pub log: LogConfig,
    /// `[update]`: install layout, signing keys, channel, health gate.
    pub update: update::UpdateConfig,
    /// SHA-256 of the config text, hex: which config a gateway runs.
    pub hash: String,
}

/// The `[log]` section: how `run` writes its log lines to stderr.
#[derive(Clone, Debug, Default)]
pub struct LogConfig {
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (coloured only on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// A production rule with neither `report_every` nor `report_parts`
/// reports this often.
pub const DEFAULT_REPORT_EVERY: Duration = Duration::from_secs(30);

/// `/healthz` fails when the edge holds samples this long without a commit.

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Part of every event id and Odoo external id: unique per gateway.
    pub id: String,
    pub data_dir: PathBuf,
}

#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub name: String,
    pub kind: SourceKind,
}

/// Closed set of source kinds: adding one is visible here and in `sources`.
#[derive(Clone, Debug)]
pub enum SourceKind {
    /// Modbus TCP or RTU.
    Modbus(ModbusSource),
    /// An OPC UA server.
    #[cfg(feature = "opcua")]
    OpcUa(OpcUaSource),
    /// Topics of an MQTT broker.
    #[cfg(feature = "mqtt")]
    Mqtt(MqttSource),
}

#[derive(Clone, Debug)]
pub struct TagConfig {
    pub name: String,
    /// The name's id in [`Config::tag_table`]: what its samples carry.
    pub id: crate::tags::TagId,
    pub source: String,
    pub point: TagPoint,
    /// value × scale + offset, applied to numbers before the edge sees them.
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    pub engineering_unit: Option<String>,
    /// Valid range, clamping, deadband, report-on-change, heartbeat.
    pub conditioning: crate::sources::filter::Conditioning,
    /// Rate limit: the rules see at most one reading per interval, the
    /// latest (applied by the edge, whose clock releases a held one).
    pub min_interval: Option<Duration>,
}

/// Where a tag is read, per source kind.
#[derive(Clone, Debug, PartialEq)]
pub enum TagPoint {
    Modbus(modbus::ModbusTag),
    #[cfg(feature = "opcua")]
    OpcUa(opcua::OpcUaTag),
    #[cfg(feature = "mqtt")]
    Mqtt(mqtt::MqttTag),
}

impl SourceKind {
    /// The Modbus settings, for the Modbus source.
    pub fn as_modbus(&self) -> Option<&ModbusSource> {
        match self {
            SourceKind::Modbus(m) => Some(m),
            // Unreachable in a Modbus-only build.
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

impl TagPoint {
    /// The Modbus point, for the Modbus source.
    pub fn as_modbus(&self) -> Option<&modbus::ModbusTag> {
        match self {
            TagPoint::Modbus(m) => Some(m),
            // Unreachable in a Modbus-only build.
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

impl TagConfig {
    /// Wrap point of the raw value, for counter rules (unscaled unsigned tags).
    pub fn wraps_at(&self) -> Option<u64> {
        if self.scale.is_some() || self.offset.is_some() {
            return None;
        }
        match &self.point {
            TagPoint::Modbus(m) => m.data_type.wraps_at(),
            // The server reports the type with each value, not up front.
            #[cfg(feature = "opcua")]
            TagPoint::OpcUa(_) => None,
            #[cfg(feature = "mqtt")]
            TagPoint::Mqtt(m) => m.value_type.and_then(|t| t.wraps_at()),
        }
    }
}

/// Each rule shared (the edge's rules hold the config's, not a copy each).
#[derive(Clone, Debug)]
pub enum EventRule {
    Production(std::sync::Arc<ProductionRule>),
    Downtime(std::sync::Arc<DowntimeRule>),
    Alarm(std::sync::Arc<AlarmRule>),
    Measurement(std::sync::Arc<MeasurementRule>),
    Window(std::sync::Arc<WindowRule>),
    Stock(std::sync::Arc<StockRule>),
}

impl EventRule {
    pub fn name(&self) -> &str {
        match self {
            EventRule::Production(r) => &r.name,
            EventRule::Downtime(r) => &r.name,
            EventRule::Alarm(r) => &r.name,
            EventRule::Measurement(r) => &r.name,
            EventRule::Window(r) => &r.name,
            EventRule::Stock(r) => &r.name,
        }
    }

    /// The rule's `kind` as the config writes it.
    pub fn kind(&self) -> &'static str {
        match self {
            EventRule::Production(_) => "production",
            EventRule::Downtime(_) => "downtime",
            EventRule::Alarm(_) => "alarm",
            EventRule::Measurement(_) => "measurement",
            EventRule::Window(_) => "window",
            EventRule::Stock(_) => "stock",
        }
    }

    pub fn tag(&self) -> &str {
        match self {
            EventRule::Production(r) => &r.tag,
            EventRule::Downtime(r) => &r.tag,
            EventRule::Alarm(r) => &r.tag,
            EventRule::Measurement(r) => &r.tag,
            EventRule::Window(r) => &r.tag,
            EventRule::Stock(r) => &r.tag,
        }
    }

    /// The configured lane, when the rule overrides its kind's default.
    pub fn lane(&self) -> Option<crate::store::Lane> {
        match self {
            EventRule::Production(r) => r.lane,
            EventRule::Downtime(r) => r.lane,
            EventRule::Alarm(r) => r.lane,
            EventRule::Measurement(r) => r.lane,
            EventRule::Window(r) => r.lane,
            EventRule::Stock(r) => r.lane,
        }
    }
}

/// An alarm on one tag, for one piece of equipment: raised when its
/// condition has held for `on_delay`, cleared when its clear condition has
/// held for `clear_for`. Between the two (the hysteresis band) it keeps its
/// state, so a signal chattering around the limit raises it once.
#[derive(Clone, Debug)]
pub struct AlarmRule {
    pub name: String,
    pub tag: String,
    /// `maintenance.equipment` name or serial number.
    pub equipment: String,
    /// `FILE:LINE:COL` of `equipment`, for the message when Odoo has none.
    pub equipment_at: String,
    pub condition: AlarmCondition,
    /// The condition is on the rate of change per minute (over the
    /// readings of the last minute), not on the value.
    pub rate: bool,
    pub on_delay: Duration,
    pub clear_for: Duration,
    /// The maintenance request's subject.
    pub description: String,
    /// Overrides the kind's lane (`critical`).
    pub lane: Option<crate::store::Lane>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AlarmCondition {
    /// Raised above `limit`, cleared at or below `clear_at`.
    Above { limit: f64, clear_at: f64 },
    /// Raised below `limit`, cleared at or above `clear_at`.
    Below { limit: f64, clear_at: f64 },
    /// Raised while a boolean tag has this value.
    When(bool),
}

impl AlarmCondition {
    /// Whether `v` raises the alarm (once held for the on-delay).
    pub fn raises(&self, v: f64) -> bool {
        match *self {
            AlarmCondition::Above { limit, .. } => v > limit,
            AlarmCondition::Below { limit, .. } => v < limit,
            AlarmCondition::When(b) => (v != 0.0) == b,
        }
    }

    /// Whether `v` clears a raised alarm (once held for `clear_for`).
    pub fn clears(&self, v: f64) -> bool {
        match *self {
            AlarmCondition::Above { clear_at, .. } => v <= clear_at,
            AlarmCondition::Below { clear_at, .. } => v >= clear_at,
            AlarmCondition::When(b) => (v != 0.0) != b,
        }
    }
}

/// A measured value with limits at a work center: each reading is one
/// measure, passing when `low <= value <= high`.
#[derive(Clone, Debug)]
pub struct MeasurementRule {
    pub name: String,
    pub tag: String,
    pub workcenter: String,
    pub low: f64,
    pub high: f64,
    pub target: Option<f64>,
    /// This many failures in a row give one quality alert.
    pub alert_after: Option<u32>,
    /// The tag naming the product being made, and the limits of the
    /// products listed; `low`, `high` and `target` are those of any other.
    pub product_tag: Option<String>,
    pub limits: Vec<ProductLimits>,
    /// The quality check's title.
    pub description: String,
    /// Overrides the kind's lane (`normal`).
    pub lane: Option<crate::store::Lane>,
}

/// A measurement's limits for one product (`[[events.limits]]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ProductLimits {
    /// The product tag's value, as text (a recipe number as its digits).
    pub product: String,
    pub low: f64,
    pub high: f64,
    pub target: Option<f64>,
}

/// A tag summarised per tumbling window of `every` (aligned to the wall
/// clock), noted on a work center.
#[derive(Clone, Debug)]
pub struct WindowRule {
    pub name: String,
    pub tag: String,
    pub workcenter: String,
    pub every: Duration,
    /// The note's title.
    pub description: String,
    /// Overrides the kind's lane (`bulk`).
    pub lane: Option<crate::store::Lane>,
}

/// A stock level read at the machine (a silo's weight, a bin's count): each
/// new value is the counted quantity of `product` at `location` in Odoo,
/// absolute, applied as an inventory adjustment.
#[derive(Clone, Debug)]
pub struct StockRule {
    pub name: String,
    pub tag: String,
    /// `product.product` internal reference (`default_code`) or name.
    pub product: String,
    /// `FILE:LINE:COL` of `product`, for the message when Odoo has none.
    pub product_at: String,
    /// `stock.location` full name (`WH/Stock`) or barcode.
    pub location: String,
    pub location_at: String,
    /// Overrides the kind's lane (`normal`).
    pub lane: Option<crate::store::Lane>,
}

/// Parts produced from a monotonic counter.
#[derive(Clone, Debug)]
pub struct ProductionRule {
    pub name: String,
    pub tag: String,
    pub workcenter: String,
    /// Counter wrap point (from the tag's type), if it is unsigned.
    pub wraps_at: Option<u64>,
    /// A jump larger than this is not production (a PLC swap, a preset):
    /// the counter is re-based and the jump is logged instead of posted.
    pub max_step: Option<u64>,
    /// Report the parts counted once a period has run this long...
    pub report_every: Option<Duration>,
    /// ...or holds this many parts, whichever comes first. Neither given:
    /// every [`DEFAULT_REPORT_EVERY`], so Odoo is not written every poll.
    pub report_parts: Option<u64>,
    /// Parts made per counted stroke (a multi-cavity tool).
    pub parts_per_stroke: u64,
    /// A second counter of scrapped parts (`scrap_tag`).
    pub scrap: Option<ScrapCounter>,
    /// Overrides the kind's lane (`normal`).
    pub lane: Option<crate::store::Lane>,
}

/// A production rule's scrap counter: counted like the part counter (wrap,
/// reset, `max_step`), in parts (`parts_per_stroke` is not applied), and
/// reported in the same periods.
#[derive(Clone, Debug)]
pub struct ScrapCounter {
    pub tag: String,
    /// Wrap point of the scrap tag's type.
    pub wraps_at: Option<u64>,
    /// What the rule's own tag counts.
    pub counts: TagCounts,
}

/// What a production rule's part counter counts when it has a scrap counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagCounts {
    /// Every part, scrap included (a press's stroke counter): good parts
    /// are the difference.
    Total,
    /// Good parts only (a counter behind the reject gate).
    Good,
}

/// Downtime intervals from a machine-state value.
#[derive(Clone, Debug)]
pub struct DowntimeRule {
    pub name: String,
    pub tag: String,
    pub workcenter: String,
    pub min_duration: Duration,
    /// State values that mean the machine is producing.
    pub running: Vec<i64>,
    pub reasons: Vec<Reason>,
    pub default_loss: String,
    pub default_description: String,
    /// A tag holding the machine's fault code, read with the state.
    pub reason_tag: Option<String>,
    /// Fault code → loss; a code found here wins over the state's reason.
    pub codes: Vec<CodeReason>,
    /// State values that mean idle: neither running nor a stop (no loss
    /// log in Odoo; an idle interval when `intervals` is on).
    pub idle: Vec<i64>,
    /// A state value is taken only once it has held this long: a flicker
    /// shorter than this is ignored (zero: every reading counts).
    pub debounce: Duration,
    /// Report each closed running, idle and down interval.
    pub intervals: bool,
    /// Overrides the kind's lane (`critical`).
    pub lane: Option<crate::store::Lane>,
}

/// A fault code and the loss it means.
#[derive(Clone, Debug, PartialEq)]
pub struct CodeReason {
    pub code: i64,
    pub loss: String,
    pub description: String,
}

impl DowntimeRule {
    /// The loss and text for a stop state and the fault code read with it
    /// (0 or none: no fault code). A mapped code gives its own loss and
    /// text; an unmapped one keeps the state's loss and is named in the text.
    pub fn reason_for(&self, state: i64, code: Option<i64>) -> (&str, String) {
        let code = code.filter(|c| *c != 0);
        if let Some(r) = code.and_then(|c| self.codes.iter().find(|r| r.code == c)) {
            return (&r.loss, r.description.clone());
        }
        let (loss, text) = match self.reasons.iter().find(|r| r.state == state) {
            Some(r) => (r.loss.as_str(), r.description.clone()),
            None => (
                self.default_loss.as_str(),
                format!("{} (state {state})", self.default_description),
            ),
        };
        match code {
            Some(c) => (loss, format!("{text} (code {c})")),
            None => (loss, text),
        }
    }

    /// Every tag the rule reads.
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.tag.as_str()).chain(self.reason_tag.as_deref())
    }

    /// Running, idle or down, for a state value.
    pub fn class_of(&self, value: i64) -> crate::model::MachineState {
        use crate::model::MachineState;
        if self.running.contains(&value) {
            MachineState::Running
        } else if self.idle.contains(&value) {
            MachineState::Idle
        } else {
            MachineState::Down
        }
    }
}

#[derive(Clone, Debug)]
pub struct Reason {
    pub state: i64,
    /// External id of an `mrp.workcenter.productivity.loss`, e.g. `mrp.block_reason1`.
    pub loss: String,
    pub description: String,
}

#[derive(Clone, Debug)]
pub struct OdooConfig {
    /// Print the calls instead of sending them (commissioning).
    pub dry_run: bool,
    pub url: String,
    pub database: String,
    pub login: String,
    pub api_key: Option<SecretSource>,
    /// A plant CA that replaces the system roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, for Odoo behind mutual TLS.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Base64 SHA-256 of the server's SubjectPublicKeyInfo; empty: no pinning.
    pub pin_sha256: Vec<String>,
    pub allow_plaintext: bool,
    pub timeout: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Consecutive failed attempts that open the circuit breaker.
    pub circuit_failures: u32,
    /// The breaker's first cool-down; it doubles up to `retry_max`.
    pub circuit_cooldown: Duration,
    /// Which external API to speak.
    pub api: OdooApi,
    /// Which Odoo record holds the parts counted.
    pub production_target: ProductionTarget,
    /// How long a work order's quantity read from Odoo is trusted before it
    /// is read again; zero reads before every write.
    pub quantity_max_age: Duration,
    /// Rows at most in one `load` (or ids in one write) of a batch.
    pub max_batch: usize,
    /// Requests at most in flight at once: Odoo has few workers.
    pub max_in_flight: usize,
    /// How often names (work center codes, equipment) are looked up again
    /// even without a miss, so a renamed record is seen.
    pub name_refresh: Duration,
    /// Where the config first names each work center code (`FILE:LINE:COL`
    /// of a rule's `workcenter`), for the message when Odoo has none.
    pub workcenter_at: HashMap<String, String>,
}

/// Odoo's external API (`[odoo] api`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OdooApi {
    /// `GET /web/version`: JSON-2 from Odoo 19 on, JSON-RPC before.
    Auto,
    /// `/json/2/<model>/<method>` with a bearer API key (Odoo 19 and later).
    Json2,
    /// `/jsonrpc` with login and API key (Odoo 16–18; deprecated in 19).
    JsonRpc,
}

/// Where produced parts are written in Odoo (`[odoo] production_target`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ProductionTarget {
    /// `mrp.workorder.qty_produced`; Odoo carries it to the MO's `qty_producing`.
    Workorder,
    /// `mrp.production.qty_producing` only; the work order is left alone.
    Production,
    /// Both, to the same value: the work order first, then the MO.
    Both,
}

impl ProductionTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            ProductionTarget::Workorder => "workorder",
            ProductionTarget::Production => "production",
            ProductionTarget::Both => "both",
        }
    }
}

/// A config file's text.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Read and validate a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read(path)?;
    parse(&text, path)
}

/// Validate config text; `path` names the file in messages and anchors
/// relative paths. Looks at no file the config names: see [`check`].
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    parse_with_needs(text, path).map(|(c, _)| c)
}

/// Read a config and check it as `plantgate check` does: [`parse`], then
/// every file and directory it names must be usable by this user (API key,
/// CA and OPC UA files readable, trust dirs listable, the data dir
/// writable or creatable, the listen address this host's).
pub fn load_checked(path: &Path) -> Result<Config, ConfigError> {
    let text = read(path)?;
    check(&text, path)
}

/// [`load_checked`] on text.
pub fn check(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let (config, needs) = parse_with_needs(text, path)?;
    let mut diagnostics = files::check(text, &needs);
    if diagnostics.is_empty() {
        return Ok(config);
    }
    diagnostics.sort_by_key(|d| (d.line, d.col));
    Err(ConfigError::Invalid {
        path: path.to_path_buf(),
        diagnostics,
    })
}

/// SHA-256 of config text, in hex.
fn text_hash(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Intern the tag names (`[[tags]]`, then `[[derived]]`) and give each
/// tag, and each derived tag's inputs, their ids.
pub(crate) fn intern(
    tags: &mut [TagConfig],
    derived: &mut [derived::DerivedTag],
) -> crate::tags::TagTable {
    let table = crate::tags::TagTable::new(
        tags.iter()
            .map(|t| t.name.as_str())
            .chain(derived.iter().map(|d| d.name.as_str())),
    );
    let id = |name: &str| table.id(name).unwrap_or(crate::tags::TagId::UNCONFIGURED);
    for t in tags.iter_mut() {
        t.id = id(&t.name);
    }
    for d in derived.iter_mut() {
        d.id = id(&d.name);
        d.input_ids = d.inputs.iter().map(|i| id(i)).collect();
    }
    table
}

fn parse_with_needs(text: &str, path: &Path) -> Result<(Config, Vec<files::Need>), ConfigError> {
    let invalid = |diagnostics| ConfigError::Invalid {
        path: path.to_path_buf(),
        diagnostics,
    };
    // One parse: the sections are read from it by serde, the kind-shaped
    // entries ([[sources]], [[tags]]) by kind, all with their positions.
    let mut doc = DeTable::parse(text).map_err(|e| invalid(vec![toml_error(text, &e)]))?;
    // Those entries are taken out of the document, not copied: the tree of
    // a large tag map is held once while it is read. (One that is not an
    // array stays, for serde to refuse.)
    let mut entries = |key: &str| -> Vec<Entry<'_>> {
        let table = doc.get_mut();
        if table
            .get(key)
            .is_none_or(|v| v.get_ref().as_array().is_none())
        {
            return Vec::new();
        }
        match table.remove(key).map(|v| v.into_inner()) {
            Some(toml::de::DeValue::Array(a)) => a.into_iter().collect(),
            _ => Vec::new(),
        }
    };
    let (sources, tags) = (entries("sources"), entries("tags"));
    let raw = RawConfig::deserialize(toml::de::Deserializer::from(doc))
        .map_err(|e| invalid(vec![toml_error(text, &e)]))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut v = Validator {
        text,
        path,
        base,
        errors: Vec::new(),
        data_dir: PathBuf::from(DEFAULT_DATA_DIR),
        gateway_id: String::new(),
        declared_sources: HashSet::new(),
        declared_tags: HashSet::new(),
        workcenter_at: HashMap::new(),
        not_built_sources: HashSet::new(),
        needs: Vec::new(),
    };
    let config = v.config(raw, &sources, &tags);
    if v.errors.is_empty() {
        if let Some(config) = config {
            return Ok((config, v.needs));
        }
    }
    v.errors.sort_by_key(|d| (d.line, d.col));
    Err(invalid(v.errors))
}

/// A TOML or serde error, at its place in the file.
fn toml_error(text: &str, e: &toml::de::Error) -> Diagnostic {
    let span = e.span().unwrap_or(0..0);
    let message = e.message().trim().replace('\n', " ");
    let hint = if message.starts_with("unknown field") {
        UNKNOWN_KEY_HINT
    } else {
        ""
    };
    Diagnostic::at(text, span, format!("{message}{hint}"))
}

/// The event kinds, as messages list them.
const KIND_CHOICE: &str =
    "\"production\", \"downtime\", \"alarm\", \"measurement\", \"window\" or \"stock\"";

const UNKNOWN_KEY_HINT: &str =
    " (check the spelling; firmware-config/gateway.toml lists every key)";

struct Validator<'a> {
    text: &'a str,
    /// The file, for places a rule carries to its messages at run time.
    path: &'a Path,
    base: &'a Path,
    errors: Vec<Diagnostic>,
    /// The gateway's data dir, for defaults under it (OPC UA certificates).
    data_dir: PathBuf,
    /// The gateway's id, for defaults built from it (MQTT client ids).
    gateway_id: String,
    /// Every name declared, valid or not, so one bad entry does not also
    /// make each reference to it an error.
    declared_sources: HashSet<String>,
    declared_tags: HashSet<String>,
    /// The first place each work center code is named (see [`OdooConfig`]).
    workcenter_at: HashMap<String, String>,
    /// Sources of a kind this build lacks ([`NOT_BUILT`]): reported once
    /// at their `kind`; their tags are not checked.
    not_built_sources: HashSet<String>,
    /// Files and directories the config names, for [`check`].
    needs: Vec<files::Need>,
}

/// The keys of one raw struct, from its serde derive.
type KeysOf = fn() -> &'static [&'static str];

/// Every source kind: its `kind` value and the raw structs its keys go
/// into, besides [`RawSource`]'s. A key of another kind is reported as
/// belonging there from these lists; adding a kind is a line here, its
/// arm in `Validator::sources` and its own module. Its tags' shape is in
/// [`TagShape::of`]. A kind left out of this build is in [`NOT_BUILT`].
const SOURCE_KINDS: &[(&str, &[KeysOf])] = &[
    (
        "modbus_tcp",
        &[keys_of::<RawModbusTcp>, keys_of::<RawModbus>],
    ),
    (
        "modbus_rtu",
        &[keys_of::<RawModbusRtu>, keys_of::<RawModbus>],
    ),
    #[cfg(feature = "opcua")]
    ("opcua", &[keys_of::<RawOpcUa>]),
    #[cfg(feature = "mqtt")]
    ("mqtt", &[keys_of::<RawMqtt>]),
];

/// Source kinds this gateway was built without (cargo features), with the
/// protocol's name and the feature that brings it back.
const NOT_BUILT: &[(&str, &str, &str)] = &[
    #[cfg(not(feature = "opcua"))]
    ("opcua", "OPC UA", "opcua"),
    #[cfg(not(feature = "mqtt"))]
    ("mqtt", "MQTT", "mqtt"),
];

/// The keys a tag takes, by the kind of its source.
struct TagShape {
    /// What a message calls a tag of this shape.
    what: &'static str,
    /// Said after a key of another shape found on a tag of this one.
    hint: Option<&'static str>,
    /// The raw struct of its keys, besides [`RawTag`]'s.
    keys: KeysOf,
}

const MODBUS_TAG: TagShape = TagShape {
    what: "a Modbus tag",
    hint: None,
    keys: keys_of::<RawModbusTag>,
};
#[cfg(feature = "opcua")]
const OPCUA_TAG: TagShape = TagShape {
    what: "a tag of an OPC UA source",
    hint: Some("an OPC UA tag has `node` (the server reports the type)"),
    keys: keys_of::<RawOpcUaTag>,
};
#[cfg(feature = "mqtt")]
const MQTT_TAG: TagShape = TagShape {
    what: "a tag of an MQTT source",
    hint: Some("an MQTT tag has `topic`, `payload`, `pointer`, `time_pointer`, `type` and `qos` (`device` and `metric` on a Sparkplug source)"),
    keys: keys_of::<RawMqttTag>,
};
const TAG_SHAPES: &[&TagShape] = &[
    &MODBUS_TAG,
    #[cfg(feature = "opcua")]
    &OPCUA_TAG,
    #[cfg(feature = "mqtt")]
    &MQTT_TAG,
];

impl TagShape {
    fn of(kind: &SourceKind) -> &'static TagShape {
        match kind {
            SourceKind::Modbus(_) => &MODBUS_TAG,
            #[cfg(feature = "opcua")]
            SourceKind::OpcUa(_) => &OPCUA_TAG,
            #[cfg(feature = "mqtt")]
            SourceKind::Mqtt(_) => &MQTT_TAG,
        }
    }
}

/// `"a", "b" or "c"`.
fn quoted_choice(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// The keys of each part, in order, once each.
fn keys(parts: &[KeysOf]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for key in parts.iter().flat_map(|part| part().iter()) {
        if !out.contains(key) {
            out.push(key);
        }
    }
    out
}

/// serde's wording for the keys an unknown one could have been.
fn expected(keys: &[&str]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    match quoted.as_slice() {
        [] => "there are no fields".to_string(),
        [one] => format!("expected {one}"),
        [a, b] => format!("expected {a} or {b}"),
        all => format!("expected one of {}", all.join(", ")),
    }
}

/// Names that go into event ids and Odoo external ids: keep them plain.
fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl<'a> Validator<'a> {
    /// Record that `run` will need `what`, named by the key at `at`.
    fn need<T>(&mut self, at: &S<T>, key: &'static str, what: files::What) {
        self.needs.push(files::Need {
            span: at.span(),
            key,
            what,
        });
    }

    fn err<T>(&mut self, at: &S<T>, message: impl Into<String>) {
        self.errors
            .push(Diagnostic::at(self.text, at.span(), message.into()));
    }

    /// An error at the first whole-word `word` inside a string value (an
    /// expression's name), or at the value when it is not found as written.
    fn err_inside(&mut self, at: &S<String>, word: &str, message: impl Into<String>) {
        let span = at.span();
        let ident = |c: char| c.is_alphanumeric() || c == '_';
        let found = self.text.get(span.clone()).and_then(|s| {
            s.match_indices(word).map(|(i, _)| i).find(|&i| {
                !s[..i].chars().next_back().is_some_and(ident)
                    && !s[i + word.len()..].chars().next().is_some_and(ident)
            })
        });
        let span = found.map_or(span.clone(), |i| {
            span.start + i..span.start + i + word.len()
        });
        self.errors
            .push(Diagnostic::at(self.text, span, message.into()));
    }

    fn require<'v, T, U>(
        &mut self,
        section: &S<T>,
        value: &'v Option<S<U>>,
        key: &str,
        hint: &str,
    ) -> Option<&'v S<U>> {
        if value.is_none() {
            self.err(section, format!("missing key `{key}`: {hint}"));
        }
        value.as_ref()
    }

    /// Read one part of an entry, or report why it cannot be read.
    fn part<T: serde::de::DeserializeOwned>(&mut self, entry: &Entry<'_>) -> Option<T> {
        raw::read(entry)
            .map_err(|e| self.errors.push(toml_error(self.text, &e)))
            .ok()
    }

    /// Check an entry's keys against its shape's (`own`). A key that only
    /// other shapes take is reported at its value as belonging there
    /// (`belongs` names them from their names in `others`, then `hint`),
    /// any other key at itself as unknown. Both are left out of the entry
    /// returned, so the shape's parts read only their own keys and the
    /// rest of the entry is still validated.
    fn sort_keys<'e>(
        &mut self,
        entry: &Entry<'e>,
        own: &[&str],
        others: &[(&str, Vec<&'static str>)],
        belongs: impl Fn(&[&str]) -> String,
        hint: Option<&str>,
    ) -> Entry<'e> {
        let mut kept = entry.clone();
        let toml::de::DeValue::Table(table) = kept.get_mut() else {
            // Not a table: reading its parts says so.
            return kept;
        };
        let foreign: Vec<(String, std::ops::Range<usize>, std::ops::Range<usize>)> = table
            .iter()
            .filter(|(key, _)| !own.contains(&key.get_ref().as_ref()))
            .map(|(key, value)| (key.get_ref().to_string(), key.span(), value.span()))
            .collect();
        for (key, key_span, value_span) in foreign {
            table.remove(key.as_str());
            let owners: Vec<&str> = others
                .iter()
                .filter(|(_, keys)| keys.contains(&key.as_str()))
                .map(|(name, _)| *name)
                .collect();
            let (span, message) = if owners.is_empty() {
                (
                    key_span,
                    format!("unknown field `{key}`, {}{UNKNOWN_KEY_HINT}", expected(own)),
                )
            } else {
                let hint = hint.map(|h| format!("; {h}")).unwrap_or_default();
                (
                    value_span,
                    format!("`{key}` belongs to {}{hint}", belongs(&owners)),
                )
            };
            self.errors.push(Diagnostic::at(self.text, span, message));
        }
        kept
    }

    /// Report each key that is present where it does not belong.
    #[cfg_attr(not(any(feature = "opcua", feature = "mqtt")), allow(dead_code))]
    fn misplaced(
        &mut self,
        keys: &[(Option<std::ops::Range<usize>>, &str)],
        why: impl Fn(&str) -> String,
    ) {
        for (span, key) in keys {
            if let Some(span) = span {
                self.errors
                    .push(Diagnostic::at(self.text, span.clone(), why(key)));
            }
        }
    }

    fn duration(&mut self, value: &Option<S<String>>, default: Duration) -> Duration {
        let Some(v) = value else { return default };
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.err(
                    v,
                    "duration must be greater than zero, like \"500ms\" or \"30s\"",
                );
                default
            }
            Err(_) => {
                self.err(
                    v,
                    format!(
                        "bad duration {:?}: write a number and a unit, like \"500ms\", \"30s\", \"5m\"",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    }

    fn plain_name(&mut self, value: &S<String>, what: &str) -> String {
        if !is_plain_name(value.get_ref()) {
            self.err(
                value,
                format!(
                    "{what} {:?} may hold only letters, digits, `_` and `-` (1 to 64 characters)",
                    value.get_ref()
                ),
            );
        }
        value.get_ref().clone()
    }

    fn config(
        &mut self,
        raw: RawConfig,
        sources: &[Entry<'_>],
        tags: &[Entry<'_>],
    ) -> Option<Config> {
        let gateway = self.gateway(&raw);
        if let Some(g) = &gateway {
            self.data_dir = g.data_dir.clone();
            self.gateway_id = g.id.clone();
        }
        let status = self.status(raw.status.as_ref());
        let sources = self.sources(sources);
        let mut tags = self.tags(tags, &sources);
        let mut derived = self.derived(&raw.derived, &tags);
        let tag_table = std::sync::Arc::new(intern(&mut tags, &mut derived));
        let events = self.events(&raw.events, &tags);
        let odoo = self.odoo(raw.odoo.as_ref()).map(|mut o| {
            o.workcenter_at = std::mem::take(&mut self.workcenter_at);
            o
        });
        #[cfg(feature = "mqtt")]
        let mqtt_sink = self.mqtt_sink(raw.mqtt_sink.as_ref());
        #[cfg(not(feature = "mqtt"))]
        if let Some(s) = &raw.mqtt_sink {
            self.err(
                s,
                "this gateway was built without MQTT, which [mqtt_sink] needs; install a build with it (the standard package has it) or build with --features mqtt",
            );
        }
        let store = self.store(raw.store.as_ref());
        let log = self.log(raw.log.as_ref());
        let update = self.update(raw.update.as_ref());
        Some(Config {
            hash: text_hash(self.text),
            store,
            log,
            update,
            gateway: gateway?,
            status,
            sources,
            tags,
            derived,
            tag_table,
            events,
            odoo: odoo?,
            #[cfg(feature = "mqtt")]
            mqtt_sink,
        })
    }

    fn gateway(&mut self, raw: &RawConfig) -> Option<GatewayConfig> {
        let Some(g) = &raw.gateway else {
            self.errors.push(Diagnostic::at(
                self.text,
                0..0,
                "missing [gateway] section: add one with `id = \"line1_gw\"`",
            ));
            return None;
        };
        let id = self
            .require(
                g,
                &g.get_ref().id,
                "id",
                "name this gateway, e.g. id = \"line1_gw\"",
            )
            .cloned()
            .map(|id| self.plain_name(&id, "gateway id"))?;
        let data_dir = match &g.get_ref().data_dir {
            Some(d) if d.get_ref().is_empty() => {
                self.err(d, "data_dir is empty: give a directory for the event store");
                PathBuf::from(DEFAULT_DATA_DIR)
            }
            Some(d) => {
                let dir = self.base.join(d.get_ref());
                self.need(d, "data_dir", files::What::WritableDir(dir.clone()));
                dir
            }
            None => {
                let dir = PathBuf::from(DEFAULT_DATA_DIR);
                self.need(g, "data_dir", files::What::WritableDir(dir.clone()));
                dir
            }
        };
        Some(GatewayConfig { id, data_dir })
    }

    fn log(&mut self, raw: Option<&S<raw::RawLog>>) -> LogConfig {
        let Some(format) = raw.and_then(|l| l.get_ref().format.as_ref()) else {
            return LogConfig::default();
        };
        let format = match format.get_ref().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                self.err(
                    format,
                    format!("unknown log format {other:?}: use \"text\" or \"json\""),
                );
                LogFormat::Text
            }
        };
        LogConfig { format }
    }

    fn sources(&mut self, raw: &[Entry<'_>]) -> Vec<SourceConfig> {
        let kind_names: Vec<&str> = SOURCE_KINDS.iter().map(|(k, _)| *k).collect();
        let one_of_kinds = quoted_choice(&kind_names);
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for s in raw {
            let Some(r) = self.part::<RawSource>(s) else {
                continue;
            };
            let kind = r.kind.as_ref().map(|k| k.get_ref().as_str());
            if let (Some((_, protocol, feature)), Some(at)) =
                (NOT_BUILT.iter().find(|(k, ..)| Some(*k) == kind), &r.kind)
            {
                self.err(
                    at,
                    format!(
                        "this gateway was built without {protocol}; install a build with it \
                         (the standard package has it) or build with `--features {feature}`"
                    ),
                );
                if let Some(name) = &r.name {
                    self.declared_sources.insert(name.get_ref().clone());
                    self.not_built_sources.insert(name.get_ref().clone());
                }
                continue;
            }
            let shape = SOURCE_KINDS.iter().find(|(k, _)| Some(*k) == kind);
            // Without a known kind, only keys no kind takes are wrong.
            let own_parts: Vec<KeysOf> = match shape {
                Some((_, parts)) => parts.to_vec(),
                None => SOURCE_KINDS
                    .iter()
                    .flat_map(|(_, p)| p.iter().copied())
                    .collect(),
            };
            let own = keys(&[&[keys_of::<RawSource> as KeysOf][..], &own_parts].concat());
            let others: Vec<(&str, Vec<&'static str>)> = SOURCE_KINDS
                .iter()
                .filter(|(k, _)| shape.is_some() && Some(*k) != kind)
                .map(|(k, parts)| (*k, keys(parts)))
                .collect();
            let s = &self.sort_keys(
                s,
                &own,
                &others,
                |kinds| format!("kind = {}", quoted_choice(kinds)),
                None,
            );
            let Some(name) = self.require(s, &r.name, "name", "every source needs a name") else {
                continue;
            };
            let name_str = self.plain_name(name, "source name");
            if !seen.insert(name_str.clone()) {
                self.err(name, format!("source {name_str:?} is defined twice"));
            }
            self.declared_sources.insert(name_str.clone());
            let Some(kind) = self.require(s, &r.kind, "kind", &one_of_kinds) else {
                continue;
            };
            let kind = match kind.get_ref().as_str() {
                "modbus_tcp" => {
                    let tcp = self.part(s).map(RawTransport::Tcp);
                    self.modbus(s, tcp)
                }
                "modbus_rtu" => {
                    let rtu = self.part(s).map(RawTransport::Rtu);
                    self.modbus(s, rtu)
                }
                #[cfg(feature = "opcua")]
                "opcua" => self
                    .part::<RawOpcUa>(s)
                    .and_then(|r| self.opcua_source(s, &r))
                    .map(SourceKind::OpcUa),
                #[cfg(feature = "mqtt")]
                "mqtt" => self
                    .part::<RawMqtt>(s)
                    .and_then(|r| self.mqtt_source(s, &name_str, &r))
                    .map(SourceKind::Mqtt),
                other => {
                    self.err(
                        kind,
                        format!("unknown source kind {other:?}: use {one_of_kinds}"),
                    );
                    None
                }
            };
            if let Some(kind) = kind {
                out.push(SourceConfig {
                    name: name_str,
                    kind,
                });
            }
        }
        out
    }

    /// A Modbus source: its transport's part (read by the caller, by kind)
    /// and the part both transports share.
    fn modbus(&mut self, s: &Entry<'_>, transport: Option<RawTransport>) -> Option<SourceKind> {
        let shared = self.part::<RawModbus>(s);
        let source = self.modbus_source(s, transport?, &shared?)?;
        Some(SourceKind::Modbus(source))
    }

    fn tags(&mut self, raw: &[Entry<'_>], sources: &[SourceConfig]) -> Vec<TagConfig> {
        let mut out = Vec::new();
        for t in raw {
            let Some(r) = self.part::<RawTag>(t) else {
                continue;
            };
            if let Some(source) = &r.source {
                if self.not_built_sources.contains(source.get_ref()) {
                    if let Some(name) = &r.name {
                        self.declared_tags.insert(name.get_ref().clone());
                    }
                    continue;
                }
            }
            let src = r
                .source
                .as_ref()
                .and_then(|name| sources.iter().find(|s| s.name == *name.get_ref()));
            let shape = src.map(|s| TagShape::of(&s.kind));
            // Without the source's kind, only keys no tag takes are wrong.
            let mut parts: Vec<KeysOf> = vec![keys_of::<RawTag>];
            match shape {
                Some(shape) => parts.push(shape.keys),
                None => parts.extend(TAG_SHAPES.iter().map(|s| s.keys)),
            }
            let others: Vec<(&str, Vec<&'static str>)> = TAG_SHAPES
                .iter()
                .filter(|other| shape.is_some_and(|own| !std::ptr::eq(own, **other)))
                .map(|other| (other.what, keys(&[other.keys])))
                .collect();
            let t = &self.sort_keys(
                t,
                &keys(&parts),
                &others,
                |whats| whats.join(" or "),
                shape.and_then(|s| s.hint),
            );
            let Some(name) = self.require(t, &r.name, "name", "every tag needs a name") else {
                continue;
            };
            // An MQTT tag's name may take `{N}` levels of its topic: the
            // MQTT part checks it.
            #[cfg(feature = "mqtt")]
            let templated = name.get_ref().contains('{')
                && src.is_some_and(|s| matches!(s.kind, SourceKind::Mqtt(_)));
            #[cfg(not(feature = "mqtt"))]
            let templated = false;
            let name_str = if templated {
                name.get_ref().clone()
            } else {
                self.plain_name(name, "tag name")
            };
            if !self.declared_tags.insert(name_str.clone()) {
                self.err(name, format!("tag {name_str:?} is defined twice"));
            }
            let Some(source) = self.require(t, &r.source, "source", "name the [[sources]] entry")
            else {
                continue;
            };
            let Some(src) = src else {
                // A source that is declared but invalid was reported already.
                if !self.declared_sources.contains(source.get_ref()) {
                    let known: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
                    self.err(
                        source,
                        format!(
                            "tag {name_str:?} names source {:?}, which is not defined; defined sources: {}",
                            source.get_ref(),
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ),
                    );
                }
                continue;
            };
            let point = match &src.kind {
                SourceKind::Modbus(m) => self
                    .part::<RawModbusTag>(t)
                    .and_then(|p| self.modbus_tag(t, &p, m))
                    .map(TagPoint::Modbus),
                #[cfg(feature = "opcua")]
                SourceKind::OpcUa(_) => self
                    .part::<RawOpcUaTag>(t)
                    .and_then(|p| self.opcua_tag(t, &p))
                    .map(TagPoint::OpcUa),
                #[cfg(feature = "mqtt")]
                SourceKind::Mqtt(m) => self
                    .part::<RawMqttTag>(t)
                    .and_then(|p| self.mqtt_tag(t, name, &p, m))
                    .map(TagPoint::Mqtt),
            };
            let Some(point) = point else { continue };
            if let Some(s) = &r.scale {
                if *s.get_ref() == 0.0 || !s.get_ref().is_finite() {
                    self.err(s, "scale must be a finite number other than 0");
                }
            }
            out.push(TagConfig {
                name: name_str,
                id: crate::tags::TagId::UNCONFIGURED,
                source: src.name.clone(),
                point,
                scale: r.scale.as_ref().map(|v| *v.get_ref()),
                offset: r.offset.as_ref().map(|v| *v.get_ref()),
                engineering_unit: r.engineering_unit.as_ref().map(|v| v.get_ref().clone()),
                conditioning: self.conditioning(&r),
                min_interval: r
                    .min_interval
                    .as_ref()
                    .map(|_| self.duration(&r.min_interval, Duration::from_secs(1))),
            });
        }
        out
    }

    /// A tag's signal conditioning keys, checked together.
    fn conditioning(&mut self, r: &RawTag) -> crate::sources::filter::Conditioning {
        use crate::sources::filter::{Conditioning, Deadband};
        for (v, key) in [
            (&r.min, "min"),
            (&r.max, "max"),
            (&r.min_change, "min_change"),
            (&r.min_change_percent, "min_change_percent"),
        ] {
            if let Some(bad) = v.as_ref().filter(|x| !x.get_ref().is_finite()) {
                self.err(bad, format!("{key} must be a finite number"));
            }
        }
        let min = r.min.as_ref().map(|v| *v.get_ref());
        let max = r.max.as_ref().map(|v| *v.get_ref());
        if let (Some(lo), Some(hi), Some(at)) = (min, max, &r.max) {
            if lo >= hi {
                self.err(at, format!("max ({hi}) must be greater than min ({lo})"));
            }
        }
        let clamp = r.clamp.as_ref().is_some_and(|c| *c.get_ref());
        if let Some(c) = &r.clamp {
            if *c.get_ref() && min.is_none() && max.is_none() {
                self.err(c, "clamp needs a range: give min, max or both");
            }
        }
        let deadband = match (&r.min_change, &r.min_change_percent) {
            (Some(a), Some(_)) => {
                self.err(a, "give either min_change (in the tag's units) or min_change_percent (of max - min), not both");
                None
            }
            (Some(a), None) => {
                if *a.get_ref() < 0.0 {
                    self.err(a, "min_change must be 0 or more, in the tag's units");
                }
                Some(Deadband::Absolute(*a.get_ref()))
            }
            (None, Some(p)) => {
                if !(*p.get_ref() > 0.0 && *p.get_ref() <= 100.0) {
                    self.err(p, "min_change_percent must be more than 0 and at most 100");
                }
                if min.is_none() || max.is_none() {
                    self.err(
                        p,
                        "min_change_percent is a percent of max - min: give both min and max",
                    );
                }
                Some(Deadband::Percent(*p.get_ref()))
            }
            (None, None) => None,
        };
        let on_change = r.on_change.as_ref().is_some_and(|c| *c.get_ref());
        let heartbeat = r.heartbeat.as_ref().map(|h| {
            if deadband.is_none() && !on_change {
                self.err(h, "heartbeat only matters with min_change, min_change_percent or on_change = true");
            }
            self.duration(&r.heartbeat, Duration::from_secs(60))
        });
        Conditioning {
            min,
            max,
            clamp,
            deadband,
            on_change,
            heartbeat,
        }
    }

    fn events(&mut self, raw: &[S<RawEvent>], tags: &[TagConfig]) -> Vec<EventRule> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let by_name: HashMap<&str, &TagConfig> =
            tags.iter().map(|t| (t.name.as_str(), t)).collect();
        for e in raw {
            let r = e.get_ref();
            let Some(name) = self.require(e, &r.name, "name", "every event rule needs a name")
            else {
                continue;
            };
            let name_str = self.plain_name(name, "event name");
            if !seen.insert(name_str.clone()) {
                self.err(name, format!("event rule {name_str:?} is defined twice"));
            }
            let Some(kind) = self.require(e, &r.kind, "kind", KIND_CHOICE) else {
                continue;
            };
            let tag = self
                .require(e, &r.tag, "tag", "name the [[tags]] entry it reads")
                .cloned();
            let tag_cfg = tag.as_ref().and_then(|t| {
                let found = by_name.get(t.get_ref().as_str()).copied();
                if found.is_none() && !self.declared_tags.contains(t.get_ref()) {
                    self.err(
                        t,
                        format!(
                            "event {name_str:?} reads tag {:?}, which is not defined in [[tags]]",
                            t.get_ref()
                        ),
                    );
                }
                found
            });
            let kind_name = kind.get_ref().as_str();
            let workcenter = if kind_name == "alarm" {
                if let Some(w) = &r.workcenter {
                    self.err(w, "an alarm concerns a piece of equipment: write equipment = \"…\" (its maintenance.equipment name or serial), not workcenter");
                }
                None
            } else if kind_name == "stock" {
                if let Some(w) = &r.workcenter {
                    self.err(w, "a stock level concerns a product at a location: write product = \"…\" and location = \"…\", not workcenter");
                }
                None
            } else {
                self.require(
                    e,
                    &r.workcenter,
                    "workcenter",
                    "the Odoo work center code, e.g. workcenter = \"PRESS1\"",
                )
                .cloned()
                .map(|w| {
                    let d = Diagnostic::at(self.text, w.span(), "");
                    let at = format!("{}:{}:{}", self.path.display(), d.line, d.col);
                    self.workcenter_at.entry(w.get_ref().clone()).or_insert(at);
                    w.get_ref().clone()
                })
            };
            self.forbid_other_kinds(r, kind_name);
            // Validate the rest even when the tag is bad, so every problem
            // shows at once; the rule is kept only when all of it is valid.
            let tag_name = tag
                .as_ref()
                .map(|t| t.get_ref().clone())
                .unwrap_or_default();
            let wraps_at = tag_cfg.and_then(|t| t.wraps_at());
            // A derived tag's name is declared too; its rule is complete.
            let complete = tag_cfg.is_some()
                || tag
                    .as_ref()
                    .is_some_and(|t| self.declared_tags.contains(t.get_ref()));
            let workcenter_set = workcenter.clone();
            let workcenter = workcenter.unwrap_or_default();
            let lane = self.lane(&r.lane);
            match kind.get_ref().as_str() {
                "production" => {
                    self.forbid(e, &r.min_duration, "min_duration", "downtime");
                    self.forbid(e, &r.running, "running", "downtime");
                    self.forbid(e, &r.default_loss, "default_loss", "downtime");
                    if let Some(first) = r.reason.first() {
                        self.err(first, "[[events.reason]] belongs to kind = \"downtime\"");
                    }
                    if let Some(first) = r.code.first() {
                        self.err(first, "[[events.code]] belongs to kind = \"downtime\"");
                    }
                    self.forbid(e, &r.reason_tag, "reason_tag", "downtime");
                    self.forbid(e, &r.idle, "idle", "downtime");
                    self.forbid(e, &r.debounce, "debounce", "downtime");
                    self.forbid(e, &r.intervals, "intervals", "downtime");
                    let scrap = self.scrap_counter(r, &tag_name, &by_name);
                    let max_step =
                        self.positive(&r.max_step, "max_step must be a positive count of parts");
                    let report_parts = self.positive(
                        &r.report_parts,
                        "report_parts must be a positive count of parts, like report_parts = 100",
                    );
                    let parts_per_stroke = self
                        .positive(
                            &r.parts_per_stroke,
                            "parts_per_stroke must be a positive count, like parts_per_stroke = 4",
                        )
                        .unwrap_or(1);
                    let report_every = match (&r.report_every, report_parts) {
                        (Some(_), _) => Some(self.duration(&r.report_every, DEFAULT_REPORT_EVERY)),
                        (None, Some(_)) => None,
                        (None, None) => Some(DEFAULT_REPORT_EVERY),
                    };
                    out.push(EventRule::Production(std::sync::Arc::new(ProductionRule {
                        name: name_str,
                        tag: tag_name,
                        workcenter,
                        wraps_at,
                        max_step,
                        report_every,
                        report_parts,
                        parts_per_stroke,
                        scrap,
                        lane,
                    })));
                }
                "downtime" => {
                    self.forbid(e, &r.max_step, "max_step", "production");
                    self.forbid(e, &r.report_every, "report_every", "production");
                    self.forbid(e, &r.report_parts, "report_parts", "production");
                    self.forbid(e, &r.parts_per_stroke, "parts_per_stroke", "production");
                    self.forbid(e, &r.scrap_tag, "scrap_tag", "production");
                    self.forbid(e, &r.tag_counts, "tag_counts", "production");
                    if let Some(mut rule) =
                        self.downtime(e, name_str, tag_name, workcenter, &by_name)
                    {
                        rule.lane = lane;
                        out.push(EventRule::Downtime(rule.into()));
                    }
                }
                "alarm" => {
                    if let Some(mut rule) = self.alarm(e, name_str, tag_name) {
                        rule.lane = lane;
                        out.push(EventRule::Alarm(rule.into()));
                    }
                }
                "stock" => {
                    for (v, key) in [
                        (r.report_every.as_ref().map(S::span), "report_every"),
                        (r.min_duration.as_ref().map(S::span), "min_duration"),
                        (r.default_loss.as_ref().map(S::span), "default_loss"),
                        (r.scrap_tag.as_ref().map(S::span), "scrap_tag"),
                        (r.tag_counts.as_ref().map(S::span), "tag_counts"),
                        (r.idle.as_ref().map(S::span), "idle"),
                        (r.debounce.as_ref().map(S::span), "debounce"),
                        (r.intervals.as_ref().map(S::span), "intervals"),
                    ] {
                        if let Some(span) = v {
                            self.errors.push(Diagnostic::at(
                                self.text,
                                span,
                                format!("`{key}` does not belong to kind = \"stock\""),
                            ));
                        }
                    }
                    if let Some(mut rule) = self.stock(e, name_str, tag_name) {
                        rule.lane = lane;
                        out.push(EventRule::Stock(rule.into()));
                    }
                }
                "measurement" => {
                    if let Some(mut rule) = self.measurement(e, name_str, tag_name, workcenter_set)
                    {
                        rule.lane = lane;
                        out.push(EventRule::Measurement(rule.into()));
                    }
                }
                "window" => {
                    if let Some(mut rule) = self.window(e, name_str, tag_name, workcenter_set) {
                        rule.lane = lane;
                        out.push(EventRule::Window(rule.into()));
                    }
                }
                other => self.err(
                    kind,
                    format!("unknown event kind {other:?}: use {KIND_CHOICE}"),
                ),
            }
            if !complete && out.last().is_some_and(|r| r.name() == name.get_ref()) {
                out.pop();
            }
        }
        out
    }

    /// Report each key on a rule of a kind it does not belong to. The
    /// production and downtime arms check the keys of production and
    /// downtime rules (with their own hints), so those keys are reported
    /// here only on alarm, measurement and window rules.
    fn forbid_other_kinds(&mut self, r: &RawEvent, kind: &str) {
        fn at<T>(v: &Option<S<T>>) -> Option<std::ops::Range<usize>> {
            v.as_ref().map(S::span)
        }
        let keys = [
            (at(&r.equipment), "equipment", "alarm"),
            (at(&r.above), "above", "alarm"),
            (at(&r.below), "below", "alarm"),
            (at(&r.clear_at), "clear_at", "alarm"),
            (at(&r.on_delay), "for", "alarm"),
            (at(&r.clear_for), "clear_for", "alarm"),
            (at(&r.when), "when", "alarm"),
            (at(&r.rises_faster_than), "rises_faster_than", "alarm"),
            (at(&r.falls_faster_than), "falls_faster_than", "alarm"),
            (at(&r.product), "product", "stock"),
            (at(&r.location), "location", "stock"),
            (at(&r.low), "low", "measurement"),
            (at(&r.high), "high", "measurement"),
            (at(&r.target), "target", "measurement"),
            (at(&r.alert_after), "alert_after", "measurement"),
            (at(&r.every), "every", "window"),
            (at(&r.product_tag), "product_tag", "measurement"),
            (
                r.limits.first().map(S::span),
                "[[events.limits]]",
                "measurement",
            ),
            (at(&r.max_step), "max_step", "production"),
            (at(&r.report_every), "report_every", "production"),
            (at(&r.report_parts), "report_parts", "production"),
            (at(&r.parts_per_stroke), "parts_per_stroke", "production"),
            (at(&r.min_duration), "min_duration", "downtime"),
            (at(&r.running), "running", "downtime"),
            (at(&r.default_loss), "default_loss", "downtime"),
            (
                at(&r.default_description),
                "default_description",
                "downtime",
            ),
            (at(&r.reason_tag), "reason_tag", "downtime"),
            (at(&r.idle), "idle", "downtime"),
            (at(&r.debounce), "debounce", "downtime"),
            (at(&r.intervals), "intervals", "downtime"),
            (at(&r.scrap_tag), "scrap_tag", "production"),
            (at(&r.tag_counts), "tag_counts", "production"),
            (
                r.reason.first().map(S::span),
                "[[events.reason]]",
                "downtime",
            ),
            (r.code.first().map(S::span), "[[events.code]]", "downtime"),
        ];
        let checked_in_arm = |owner: &str| {
            matches!(owner, "production" | "downtime")
                && !matches!(kind, "alarm" | "measurement" | "window")
        };
        for (span, key, owner) in keys {
            if let Some(span) = span.filter(|_| owner != kind && !checked_in_arm(owner)) {
                self.errors.push(Diagnostic::at(
                    self.text,
                    span,
                    format!("`{key}` belongs to kind = \"{owner}\""),
                ));
            }
        }
        if let Some(d) = &r.description {
            if !matches!(kind, "alarm" | "measurement" | "window") {
                self.err(
                    d,
                    "`description` belongs to kind = \"alarm\", \"measurement\" or \"window\" (a downtime rule has default_description)",
                );
            }
        }
    }

    /// A duration that may be zero (an on-delay), default zero.
    fn delay(&mut self, value: &Option<S<String>>, key: &str) -> Duration {
        let Some(v) = value else {
            return Duration::ZERO;
        };
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) => d,
            Err(_) => {
                self.err(
                    v,
                    format!(
                        "bad duration {:?} for `{key}`: write a number and a unit, like \"60s\" or \"0s\"",
                        v.get_ref()
                    ),
                );
                Duration::ZERO
            }
        }
    }

    fn alarm(&mut self, e: &S<RawEvent>, name: String, tag: String) -> Option<AlarmRule> {
        let r = e.get_ref();
        let equipment = self.require(
            e,
            &r.equipment,
            "equipment",
            "the Odoo maintenance.equipment name or serial number, e.g. equipment = \"OVEN-1\"",
        );
        let equipment_at = equipment.map(|q| {
            let d = Diagnostic::at(self.text, q.span(), "");
            format!("{}:{}:{}", self.path.display(), d.line, d.col)
        });
        let equipment = equipment.map(|q| q.get_ref().clone());
        if equipment.as_deref().is_some_and(|q| q.trim().is_empty()) {
            if let Some(q) = &r.equipment {
                self.err(
                    q,
                    "equipment must name a maintenance.equipment (its name or serial number)",
                );
            }
        }
        let given: Vec<(&str, std::ops::Range<usize>)> = [
            ("above", r.above.as_ref().map(S::span)),
            ("below", r.below.as_ref().map(S::span)),
            ("when", r.when.as_ref().map(S::span)),
            (
                "rises_faster_than",
                r.rises_faster_than.as_ref().map(S::span),
            ),
            (
                "falls_faster_than",
                r.falls_faster_than.as_ref().map(S::span),
            ),
        ]
        .into_iter()
        .filter_map(|(k, s)| s.map(|s| (k, s)))
        .collect();
        let rate = r.rises_faster_than.is_some() || r.falls_faster_than.is_some();
        let clear_at = r.clear_at.as_ref().map(|c| *c.get_ref());
        let condition = match given.as_slice() {
            [] => {
                self.err(e, "missing the alarm's condition: `above = 260.0` or `below = …` (a threshold), `when = true` (a boolean tag), or `rises_faster_than = 5.0` / `falls_faster_than` (per minute)");
                None
            }
            [(first, _), (second, span), ..] => {
                self.errors.push(Diagnostic::at(
                    self.text,
                    span.clone(),
                    format!("give one condition per alarm, not both `{first}` and `{second}`: make one alarm rule for each"),
                ));
                None
            }
            [_] => {
                let wrong = |v: f64, limit: f64, bad: bool, rel: &str, key: &str, why: &str| {
                    bad.then(|| format!("clear_at ({v}) must be {rel} `{key}` ({limit}): {why}"))
                };
                let decided = if let Some(w) = &r.when {
                    let problem = clear_at.map(|_| "clear_at is for thresholds and rates: a boolean alarm clears when the tag changes back".to_string());
                    Some((AlarmCondition::When(*w.get_ref()), problem))
                } else if let Some(a) = &r.above {
                    let limit = *a.get_ref();
                    let c = clear_at.unwrap_or(limit);
                    Some((
                        AlarmCondition::Above { limit, clear_at: c },
                        wrong(
                            c,
                            limit,
                            c > limit,
                            "at or below",
                            "above",
                            "the alarm clears when the value has come back down",
                        ),
                    ))
                } else if let Some(b) = &r.below {
                    let limit = *b.get_ref();
                    let c = clear_at.unwrap_or(limit);
                    Some((
                        AlarmCondition::Below { limit, clear_at: c },
                        wrong(
                            c,
                            limit,
                            c < limit,
                            "at or above",
                            "below",
                            "the alarm clears when the value has come back up",
                        ),
                    ))
                } else if let Some(x) = &r.rises_faster_than {
                    let limit = *x.get_ref();
                    let c = clear_at.unwrap_or(limit);
                    Some((
                        AlarmCondition::Above { limit, clear_at: c },
                        wrong(
                            c,
                            limit,
                            c > limit,
                            "at or below",
                            "rises_faster_than",
                            "the alarm clears when the rise has slowed to it",
                        ),
                    ))
                } else if let Some(x) = &r.falls_faster_than {
                    // A fall is a negative rate: below -limit, cleared at or above -clear_at.
                    let limit = *x.get_ref();
                    let c = clear_at.unwrap_or(limit);
                    Some((
                        AlarmCondition::Below {
                            limit: -limit,
                            clear_at: -c,
                        },
                        wrong(
                            c,
                            limit,
                            c > limit,
                            "at or below",
                            "falls_faster_than",
                            "the alarm clears when the fall has slowed to it",
                        ),
                    ))
                } else {
                    None
                };
                if let Some((_, Some(problem))) = &decided {
                    if let Some(c) = &r.clear_at {
                        self.err(c, problem.clone());
                    }
                }
                let rate_limit = r
                    .rises_faster_than
                    .as_ref()
                    .or(r.falls_faster_than.as_ref());
                if let Some(x) = rate_limit.filter(|x| *x.get_ref() <= 0.0) {
                    self.err(x, "a rate limit is a positive change per minute, like rises_faster_than = 5.0");
                }
                decided.map(|(c, _)| c)
            }
        };
        let on_delay = self.delay(&r.on_delay, "for");
        let clear_for = self.delay(&r.clear_for, "clear_for");
        let description = r.description.as_ref().map_or_else(
            || match condition {
                Some(AlarmCondition::Above { limit, .. }) if rate => {
                    format!("{tag} rising faster than {limit} per minute")
                }
                Some(AlarmCondition::Below { limit, .. }) if rate => {
                    format!("{tag} falling faster than {} per minute", -limit)
                }
                Some(AlarmCondition::Above { limit, .. }) => format!("{tag} above {limit}"),
                Some(AlarmCondition::Below { limit, .. }) => format!("{tag} below {limit}"),
                _ => format!("{name} alarm"),
            },
            |d| d.get_ref().clone(),
        );
        Some(AlarmRule {
            name,
            tag,
            equipment: equipment?,
            equipment_at: equipment_at?,
            condition: condition?,
            rate,
            on_delay,
            clear_for,
            description,
            lane: None,
        })
    }

    fn stock(&mut self, e: &S<RawEvent>, name: String, tag: String) -> Option<StockRule> {
        let r = e.get_ref();
        let mut named = |value: &Option<S<String>>, key: &str, hint: &str| {
            let v = self.require(e, value, key, hint)?.clone();
            if v.get_ref().trim().is_empty() {
                self.err(&v, format!("{key} must not be empty: {hint}"));
                return None;
            }
            let d = Diagnostic::at(self.text, v.span(), "");
            Some((
                v.get_ref().clone(),
                format!("{}:{}:{}", self.path.display(), d.line, d.col),
            ))
        };
        let product = named(
            &r.product,
            "product",
            "the Odoo product's internal reference or name, e.g. product = \"RESIN-PP\"",
        );
        let location = named(
            &r.location,
            "location",
            "the Odoo stock location's full name or barcode, e.g. location = \"WH/Stock/Silo 1\"",
        );
        let ((product, product_at), (location, location_at)) = (product?, location?);
        Some(StockRule {
            name,
            tag,
            product,
            product_at,
            location,
            location_at,
            lane: None,
        })
    }

    fn measurement(
        &mut self,
        e: &S<RawEvent>,
        name: String,
        tag: String,
        workcenter: Option<String>,
    ) -> Option<MeasurementRule> {
        let r = e.get_ref();
        let low = self.require(
            e,
            &r.low,
            "low",
            "the lowest value that passes, e.g. low = 9.95",
        );
        let high = self.require(
            e,
            &r.high,
            "high",
            "the highest value that passes, e.g. high = 10.05",
        );
        let (low, high) = (low.map(|v| *v.get_ref()), high.map(|v| *v.get_ref()));
        if let (Some(lo), Some(hi), Some(h)) = (low, high, &r.high) {
            if lo > hi {
                self.err(h, format!("high ({hi}) must be at or above low ({lo})"));
            }
        }
        let target = r.target.as_ref().map(|t| {
            let v = *t.get_ref();
            if let (Some(lo), Some(hi)) = (low, high) {
                if v < lo || v > hi {
                    self.err(
                        t,
                        format!("target ({v}) must lie within low ({lo}) and high ({hi})"),
                    );
                }
            }
            v
        });
        let alert_after = self
            .positive(
                &r.alert_after,
                "alert_after must be a positive count of failures in a row, like alert_after = 3",
            )
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        let description = r
            .description
            .as_ref()
            .map_or_else(|| format!("{name} ({tag})"), |d| d.get_ref().clone());
        let product_tag = r.product_tag.as_ref().map(|t| {
            let name = t.get_ref();
            if name == &tag {
                self.err(t, "product_tag is the measured tag: name the tag that says which product is made (a recipe number or code)");
            } else if !self.declared_tags.contains(name) {
                self.err(
                    t,
                    format!("product_tag {name:?} is not defined in [[tags]]: name the tag that says which product is made"),
                );
            }
            name.clone()
        });
        let mut limits: Vec<ProductLimits> = Vec::new();
        for l in &r.limits {
            let rl = l.get_ref();
            let product = self.require(
                l,
                &rl.product,
                "product",
                "the product tag's value these limits are for, e.g. product = \"BRACKET-A\" or product = \"12\"",
            );
            let lo = self.require(
                l,
                &rl.low,
                "low",
                "the lowest value that passes for this product",
            );
            let hi = self.require(
                l,
                &rl.high,
                "high",
                "the highest value that passes for this product",
            );
            let (Some(product), Some(lo), Some(hi)) = (product, lo, hi) else {
                continue;
            };
            let (lo, hi_v) = (*lo.get_ref(), *hi.get_ref());
            if lo > hi_v {
                self.err(hi, format!("high ({hi_v}) must be at or above low ({lo})"));
            }
            if let Some(t) = &rl.target {
                let v = *t.get_ref();
                if v < lo || v > hi_v {
                    self.err(
                        t,
                        format!("target ({v}) must lie within low ({lo}) and high ({hi_v})"),
                    );
                }
            }
            if limits.iter().any(|x| &x.product == product.get_ref()) {
                self.err(
                    product,
                    format!("product {:?} has two [[events.limits]]", product.get_ref()),
                );
            }
            limits.push(ProductLimits {
                product: product.get_ref().clone(),
                low: lo,
                high: hi_v,
                target: rl.target.as_ref().map(|t| *t.get_ref()),
            });
        }
        if product_tag.is_none() {
            if let Some(first) = r.limits.first() {
                self.err(first, "[[events.limits]] needs product_tag = \"...\" (the tag that says which product is made) in its rule");
            }
        }
        Some(MeasurementRule {
            name,
            tag,
            workcenter: workcenter?,
            low: low?,
            high: high?,
            target,
            alert_after,
            product_tag,
            limits,
            description,
            lane: None,
        })
    }

    fn window(
        &mut self,
        e: &S<RawEvent>,
        name: String,
        tag: String,
        workcenter: Option<String>,
    ) -> Option<WindowRule> {
        let r = e.get_ref();
        let every = self.require(
            e,
            &r.every,
            "every",
            "the window's length, e.g. every = \"1h\" (windows follow UTC clock times: 14:00 to 15:00)",
        )?;
        let length = self.duration(&r.every, Duration::from_secs(3600));
        if length < Duration::from_secs(1) || length > Duration::from_secs(7 * 86_400) {
            self.err(
                every,
                "a window must last from 1s to 7 days, like every = \"1h\"",
            );
        } else if !86_400_000u128.is_multiple_of(length.as_millis())
            && length < Duration::from_secs(86_400)
        {
            self.err(
                every,
                "a window shorter than a day must divide the day evenly (like \"15m\", \"1h\" or \"8h\"), so windows start at the same clock times every day",
            );
        } else if !length.as_millis().is_multiple_of(86_400_000)
            && length > Duration::from_secs(86_400)
        {
            self.err(
                every,
                "a window longer than a day must be whole days, like every = \"7days\"",
            );
        }
        let description = r
            .description
            .as_ref()
            .map_or_else(|| format!("{tag} summary"), |d| d.get_ref().clone());
        Some(WindowRule {
            name,
            tag,
            workcenter: workcenter?,
            every: length,
            description,
            lane: None,
        })
    }

    fn positive(&mut self, value: &Option<S<i64>>, message: &str) -> Option<u64> {
        let v = value.as_ref()?;
        match u64::try_from(*v.get_ref()) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                self.err(v, message);
                None
            }
        }
    }

    fn forbid<T, U>(&mut self, _section: &S<T>, value: &Option<S<U>>, key: &str, kind: &str) {
        if let Some(v) = value {
            self.err(v, format!("`{key}` belongs to kind = \"{kind}\""));
        }
    }

    fn loss(&mut self, value: &S<String>) -> String {
        let v = value.get_ref();
        let ok = v
            .split_once('.')
            .is_some_and(|(m, n)| is_plain_name(m) && is_plain_name(n));
        if !ok {
            self.err(
                value,
                format!(
                    "loss {v:?} is not an external id: write MODULE.NAME of an mrp.workcenter.productivity.loss, like \"mrp.block_reason1\""
                ),
            );
        }
        v.clone()
    }

    /// A production rule's `scrap_tag` and `tag_counts`.
    fn scrap_counter(
        &mut self,
        r: &RawEvent,
        tag: &str,
        tags: &HashMap<&str, &TagConfig>,
    ) -> Option<ScrapCounter> {
        let Some(t) = &r.scrap_tag else {
            if let Some(c) = &r.tag_counts {
                self.err(
                    c,
                    "tag_counts only matters with scrap_tag = \"...\" (the counter of scrapped parts)",
                );
            }
            return None;
        };
        let name = t.get_ref();
        let found = tags.get(name.as_str()).copied();
        let mut ok = true;
        if name == tag {
            self.err(
                t,
                "scrap_tag is the rule's own tag: name the counter of scrapped parts, another tag",
            );
            ok = false;
        } else if found.is_none() && !self.declared_tags.contains(name) {
            self.err(
                t,
                format!("scrap_tag {name:?} is not defined in [[tags]]: name the counter of scrapped parts"),
            );
            ok = false;
        }
        let counts = match r.tag_counts.as_ref().map(|c| (c, c.get_ref().as_str())) {
            Some((_, "total")) => TagCounts::Total,
            Some((_, "good")) => TagCounts::Good,
            Some((c, other)) => {
                self.err(
                    c,
                    format!("tag_counts must be \"total\" (`tag` counts every part, scrap included) or \"good\" (good parts only), not {other:?}"),
                );
                return None;
            }
            None => {
                self.err(
                    t,
                    "scrap_tag needs tag_counts = \"total\" (`tag` counts every part, scrap included, as a stroke counter does) or tag_counts = \"good\" (`tag` counts good parts only)",
                );
                return None;
            }
        };
        ok.then(|| ScrapCounter {
            tag: name.clone(),
            wraps_at: found.and_then(|t| t.wraps_at()),
            counts,
        })
    }

    fn downtime(
        &mut self,
        e: &S<RawEvent>,
        name: String,
        tag: String,
        workcenter: String,
        tags: &HashMap<&str, &TagConfig>,
    ) -> Option<DowntimeRule> {
        let r = e.get_ref();
        let reason_tag = r.reason_tag.as_ref().and_then(|t| {
            let name = t.get_ref();
            if tags.contains_key(name.as_str()) {
                Some(name.clone())
            } else {
                if !self.declared_tags.contains(name) {
                    self.err(
                        t,
                        format!("reason_tag {name:?} is not defined in [[tags]]: name the tag holding the fault code"),
                    );
                }
                None
            }
        });
        if r.reason_tag.is_none() {
            if let Some(first) = r.code.first() {
                self.err(first, "[[events.code]] needs reason_tag = \"...\" (the tag holding the fault code) in its rule");
            }
        }
        let mut codes: Vec<CodeReason> = Vec::new();
        for c in &r.code {
            let rc = c.get_ref();
            let code = self.require(c, &rc.code, "code", "the fault code, e.g. code = 310");
            let loss = self.require(
                c,
                &rc.loss,
                "loss",
                "an Odoo loss external id, e.g. loss = \"mrp.block_reason1\"",
            );
            let (Some(code), Some(loss)) = (code, loss) else {
                continue;
            };
            if *code.get_ref() == 0 {
                self.err(code, "code 0 means no fault: give the codes of faults");
            }
            if codes.iter().any(|x| x.code == *code.get_ref()) {
                self.err(code, format!("code {} has two reasons", code.get_ref()));
            }
            let loss = self.loss(loss);
            codes.push(CodeReason {
                code: *code.get_ref(),
                loss,
                description: rc.description.as_ref().map_or_else(
                    || format!("fault code {}", code.get_ref()),
                    |d| d.get_ref().clone(),
                ),
            });
        }
        let running = self
            .require(
                e,
                &r.running,
                "running",
                "the state values that mean producing, e.g. running = [1]",
            )?
            .get_ref()
            .clone();
        let idle = r
            .idle
            .as_ref()
            .map(|i| i.get_ref().clone())
            .unwrap_or_default();
        if let Some(i) = &r.idle {
            for v in i.get_ref() {
                if running.contains(v) {
                    self.err(
                        i,
                        format!("state {v} is listed in `running` too: a state is running, idle or a stop"),
                    );
                }
            }
        }
        let default_loss = match &r.default_loss {
            Some(l) => self.loss(l),
            None => "mrp.block_reason1".to_string(),
        };
        let mut reasons = Vec::new();
        for reason in &r.reason {
            let rr = reason.get_ref();
            let state = self.require(
                reason,
                &rr.state,
                "state",
                "the state value, e.g. state = 2",
            );
            let loss = self.require(
                reason,
                &rr.loss,
                "loss",
                "an Odoo loss external id, e.g. loss = \"mrp.block_reason1\"",
            );
            let (Some(state), Some(loss)) = (state, loss) else {
                continue;
            };
            if running.contains(state.get_ref()) {
                self.err(
                    state,
                    format!(
                        "state {} is listed in `running` too: a state is either running or a stop",
                        state.get_ref()
                    ),
                );
            }
            if idle.contains(state.get_ref()) {
                self.err(
                    state,
                    format!(
                        "state {} is listed in `idle`: an idle state is no stop and has no loss in Odoo; to count it as downtime, take it out of `idle`",
                        state.get_ref()
                    ),
                );
            }
            if reasons.iter().any(|x: &Reason| x.state == *state.get_ref()) {
                self.err(state, format!("state {} has two reasons", state.get_ref()));
            }
            let loss = self.loss(loss);
            reasons.push(Reason {
                state: *state.get_ref(),
                loss,
                description: rr.description.as_ref().map_or_else(
                    || format!("state {}", state.get_ref()),
                    |d| d.get_ref().clone(),
                ),
            });
        }
        Some(DowntimeRule {
            name,
            tag,
            workcenter,
            min_duration: self.duration(&r.min_duration, Duration::from_secs(30)),
            running,
            reasons,
            default_loss,
            default_description: r
                .default_description
                .as_ref()
                .map_or_else(|| "Stopped".to_string(), |d| d.get_ref().clone()),
            reason_tag,
            codes,
            idle,
            debounce: self.delay(&r.debounce, "debounce"),
            intervals: r.intervals.as_ref().is_some_and(|i| *i.get_ref()),
            lane: None,
        })
    }

    fn odoo(&mut self, raw: Option<&S<RawOdoo>>) -> Option<OdooConfig> {
        let Some(o) = raw else {
            self.errors.push(Diagnostic::at(
                self.text,
                0..0,
                "missing [odoo] section: add url, database, login and api_key_file, or dry_run = true to only print the calls",
            ));
            return None;
        };
        let r = o.get_ref();
        let dry_run = r.dry_run.as_ref().is_some_and(|d| *d.get_ref());
        let allow_plaintext = r.allow_plaintext.as_ref().is_some_and(|d| *d.get_ref());
        let timeout = self.duration(&r.timeout, Duration::from_secs(10));
        let retry_min = self.duration(&r.retry_min, Duration::from_secs(1));
        let retry_max = self.duration(&r.retry_max, Duration::from_secs(300));
        if retry_max < retry_min {
            if let Some(m) = &r.retry_max {
                self.err(m, "retry_max is shorter than retry_min");
            }
        }
        let circuit_failures = match &r.circuit_failures {
            None => 5,
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(n) if n >= 1 => n,
                _ => {
                    self.err(n, "circuit_failures must be 1 or more: the consecutive failed requests after which the gateway stops sending to Odoo for a cool-down");
                    5
                }
            },
        };
        // Default 30 s, or retry_max when that is shorter.
        let circuit_cooldown =
            self.duration(&r.circuit_cooldown, Duration::from_secs(30).min(retry_max));
        let ca_file = r.ca_file.as_ref().map(|c| {
            let p = self.base.join(c.get_ref());
            if !dry_run {
                self.need(c, "ca_file", files::What::PemCerts(p.clone()));
            }
            p
        });
        let client_cert_file = r.client_cert_file.as_ref().map(|c| {
            let p = self.base.join(c.get_ref());
            if !dry_run {
                self.need(c, "client_cert_file", files::What::PemCerts(p.clone()));
            }
            p
        });
        let client_key_file = r.client_key_file.as_ref().map(|c| {
            let p = self.base.join(c.get_ref());
            if !dry_run {
                self.need(c, "client_key_file", files::What::PemKey(p.clone()));
            }
            p
        });
        match (&r.client_cert_file, &r.client_key_file) {
            (Some(c), None) => self.err(
                c,
                "client_cert_file needs client_key_file (the certificate's private key, PEM)",
            ),
            (None, Some(k)) => self.err(
                k,
                "client_key_file needs client_cert_file (the client certificate, PEM)",
            ),
            _ => {}
        }
        let mut pin_sha256 = Vec::new();
        for pin in r.pin_sha256.iter().flat_map(|p| p.get_ref()) {
            // curl writes pins as sha256//BASE64; take either form.
            let text = pin.get_ref().trim();
            let b64 = text.strip_prefix("sha256//").unwrap_or(text);
            use base64::Engine;
            match base64::engine::general_purpose::STANDARD.decode(b64) {
                Ok(bytes) if bytes.len() == 32 => pin_sha256.push(b64.to_string()),
                _ => self.err(pin, format!("bad pin {text:?}: write the base64 SHA-256 of the server's public key (44 characters, as `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64` prints it)")),
            }
        }
        if !dry_run {
            if let Some(f) = &r.api_key_file {
                let p = self.base.join(f.get_ref());
                self.need(f, "api_key_file", files::What::File(p));
            }
            if let Some(c) = &r.api_key_credential {
                let name = c.get_ref().clone();
                self.need(c, "api_key_credential", files::What::Credential(name));
            }
        }
        let api_key = match (&r.api_key_file, &r.api_key_credential) {
            (Some(f), Some(_)) => {
                self.err(
                    f,
                    "give either api_key_file or api_key_credential, not both",
                );
                None
            }
            (Some(f), None) => Some(SecretSource::File(self.base.join(f.get_ref()))),
            (None, Some(c)) => Some(SecretSource::Credential(c.get_ref().clone())),
            (None, None) => None,
        };
        let text =
            |v: &Option<S<String>>| v.as_ref().map(|v| v.get_ref().clone()).unwrap_or_default();
        if !dry_run {
            let url = self.require(
                o,
                &r.url,
                "url",
                "Odoo's base URL, e.g. url = \"https://erp.example.com\"",
            );
            if let Some(url) = url {
                let u = url.get_ref();
                if u.starts_with("http://") && !allow_plaintext {
                    self.err(url, "plain http to Odoo is refused: use https://, or set allow_plaintext = true if this link is protected otherwise");
                } else if !u.starts_with("https://") && !u.starts_with("http://") {
                    self.err(url, format!("bad url {u:?}: write https://HOST[:PORT]"));
                }
            }
            self.require(o, &r.database, "database", "the Odoo database name");
            self.require(o, &r.login, "login", "the Odoo user the gateway posts as");
            if api_key.is_none() {
                self.err(o, "missing key `api_key_file` (a file holding the user's API key) or `api_key_credential` (a systemd credential name)");
            }
        }
        let api = match &r.api {
            None => OdooApi::Auto,
            Some(a) => match a.get_ref().as_str() {
                "auto" => OdooApi::Auto,
                "json2" => OdooApi::Json2,
                "jsonrpc" => OdooApi::JsonRpc,
                other => {
                    self.err(a, format!("unknown api {other:?}: write \"auto\" (the default: JSON-2 from Odoo 19 on), \"json2\" or \"jsonrpc\""));
                    OdooApi::Auto
                }
            },
        };
        let production_target = match &r.production_target {
            None => ProductionTarget::Workorder,
            Some(t) => match t.get_ref().as_str() {
                "workorder" => ProductionTarget::Workorder,
                "production" => ProductionTarget::Production,
                "both" => ProductionTarget::Both,
                other => {
                    self.err(t, format!("unknown production_target {other:?}: write \"workorder\" (the default), \"production\" or \"both\""));
                    ProductionTarget::Workorder
                }
            },
        };
        // Zero is meaningful here (read before every write), so not `duration`.
        // Default 0: read before every write, so an entry an operator just
        // typed into Odoo is never overtaken (correctness over requests).
        let quantity_max_age = match &r.quantity_max_age {
            None => Duration::ZERO,
            Some(v) => match humantime::parse_duration(v.get_ref()) {
                Ok(d) => d,
                Err(_) => {
                    self.err(v, format!("bad duration {:?}: write it like \"5s\", or \"0s\" to read before every write", v.get_ref()));
                    Duration::from_secs(5)
                }
            },
        };
        let mut count = |v: &Option<S<i64>>, default: usize, max: usize, what: &str| match v {
            None => default,
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(n) if (1..=max).contains(&n) => n,
                _ => {
                    self.err(n, format!("{what} must be 1 to {max}"));
                    default
                }
            },
        };
        let max_batch = count(
            &r.max_batch,
            100,
            10_000,
            "max_batch (the rows sent in one Odoo request)",
        );
        let max_in_flight = count(
            &r.max_in_flight,
            2,
            64,
            "max_in_flight (the requests sent to Odoo at once; keep it below Odoo's worker count)",
        );
        let name_refresh = self.duration(&r.name_refresh, Duration::from_secs(600));
        Some(OdooConfig {
            workcenter_at: HashMap::new(),
            dry_run,
            url: text(&r.url).trim_end_matches('/').to_string(),
            database: text(&r.database),
            login: text(&r.login),
            api_key,
            ca_file,
            client_cert_file,
            client_key_file,
            pin_sha256,
            allow_plaintext,
            timeout,
            retry_min,
            retry_max,
            circuit_failures,
            circuit_cooldown,
            api,
            production_target,
            quantity_max_age,
            max_batch,
            max_in_flight,
            name_refresh,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[gateway]
id = "gw1"
data_dir = "data"

[[sources]]
name = "press1"
kind = "modbus_tcp"
address = "127.0.0.1:502"

[[tags]]
name = "parts"
source = "press1"
register = 100
type = "u32"

[[tags]]
name = "state"
source = "press1"
register = 102

[[events]]
kind = "production"
name = "parts_made"
tag = "parts"
workcenter = "PRESS1"

[[events]]
kind = "downtime"
name = "stops"
tag = "state"
workcenter = "PRESS1"
min_duration = "2s"
running = [1]
[[events.reason]]
state = 2
loss = "mrp.block_reason1"
description = "Hydraulic fault"

[odoo]
dry_run = true
"#;

    fn errors(text: &str) -> Vec<Diagnostic> {
        match parse(text, Path::new("t.toml")) {
            Err(ConfigError::Invalid { diagnostics, .. }) => diagnostics,
            other => panic!("expected errors, got {other:?}"),
        }
    }

    #[test]
    fn good_config_validates() {
        let c = parse(GOOD, Path::new("/etc/plantgate/t.toml")).expect("valid");
        assert_eq!(c.gateway.data_dir, PathBuf::from("/etc/plantgate/data"));
        let Some(m) = c.tags[0].point.as_modbus() else {
            panic!("modbus tag")
        };
        assert_eq!(m.data_type, modbus::DataType::U32);
        assert_eq!(c.events.len(), 2);
        let EventRule::Downtime(d) = &c.events[1] else {
            panic!("downtime")
        };
        assert_eq!(d.min_duration, Duration::from_secs(2));
        assert_eq!(d.reason_for(2, None).0, "mrp.block_reason1");
        assert_eq!(d.reason_for(7, None).1, "Stopped (state 7)");
    }

    #[test]
    fn reports_all_errors_with_positions() {
        let bad = GOOD
            .replace("register = 100", "register = 65535")
            .replace("min_duration = \"2s\"", "min_duration = \"2 fortnights\"")
            .replace(
                "source = \"press1\"\nregister = 102",
                "source = \"press9\"\nregister = 102",
            );
        let errs = errors(&bad);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].message.contains("register 65535 is out of range"));
        assert_eq!((errs[0].line, errs[0].col), (14, 12));
        assert!(errs[1].message.contains("press9"));
        assert!(errs[2].message.contains("bad duration"));
    }

    #[test]
    fn plaintext_odoo_needs_explicit_consent() {
        let text = GOOD.replace(
            "dry_run = true",
            "url = \"http://erp\"\ndatabase = \"d\"\nlogin = \"l\"\napi_key_file = \"k\"",
        );
        let errs = errors(&text);
        assert!(
            errs[0].message.contains("plain http to Odoo is refused"),
            "{errs:?}"
        );
        let ok = text.replace("api_key_file", "allow_plaintext = true\napi_key_file");
        assert!(parse(&ok, Path::new("t.toml")).is_ok());
    }

    #[test]
    fn keys_come_from_each_kinds_derive() {
        assert_eq!(keys_of::<RawModbusTcp>(), ["address"]);
        let tag = keys_of::<RawModbusTag>();
        assert!(
            tag.contains(&"type") && !tag.contains(&"data_type"),
            "{tag:?}"
        );
        #[cfg(feature = "opcua")]
        assert!(keys_of::<RawOpcUa>().contains(&"endpoint"));
    }

    /// Two parts of one shape must not share a key: the key check would
    /// pass it and both parts would read it.
    #[test]
    fn the_parts_of_a_shape_share_no_key() {
        let disjoint = |parts: &[KeysOf]| {
            let all: Vec<&str> = parts.iter().flat_map(|p| p().iter().copied()).collect();
            all.len() == keys(parts).len()
        };
        for (kind, parts) in SOURCE_KINDS {
            let shape = [&[keys_of::<RawSource> as KeysOf][..], parts].concat();
            assert!(disjoint(&shape), "{kind}");
        }
        for shape in TAG_SHAPES {
            assert!(disjoint(&[keys_of::<RawTag>, shape.keys]), "{}", shape.what);
        }
    }

    #[test]
    #[cfg(feature = "opcua")]
    fn keys_of_another_kind_are_reported_where_they_are_and_the_rest_still_checked() {
        let text = GOOD
            .replace(
                "address = \"127.0.0.1:502\"",
                "address = \"127.0.0.1:502\"\nstop_bits = 2\ntimeout = \"soon\"",
            )
            .replace(
                "register = 102",
                "register = 102\nnode = \"ns=2;s=X\"\nbt = 3",
            );
        let errs = errors(&text);
        let got: Vec<(usize, usize, &str)> = errs
            .iter()
            .map(|d| (d.line, d.col, d.message.as_str()))
            .collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(
            got[0],
            (10, 13, "`stop_bits` belongs to kind = \"modbus_rtu\"")
        );
        assert_eq!((got[1].0, got[1].1), (11, 11), "{got:?}");
        assert!(got[1].2.starts_with("bad duration \"soon\""), "{got:?}");
        assert_eq!(
            got[2],
            (23, 8, "`node` belongs to a tag of an OPC UA source")
        );
        assert_eq!((got[3].0, got[3].1), (24, 1), "{got:?}");
        assert!(
            got[3].2.starts_with("unknown field `bt`, expected one of `name`, `source`, `scale`, `offset`, `engineering_unit`, `min`, `max`, `clamp`, `min_change`, `min_change_percent`, `on_change`, `heartbeat`, `min_interval`, `table`, `register`"),
            "{got:?}"
        );
        assert!(
            !got[3].2.contains("`node`"),
            "only a Modbus tag's keys: {got:?}"
        );
    }

    #[test]
    #[cfg(all(feature = "opcua", feature = "mqtt"))]
    fn a_missing_or_unknown_kind_is_reported_at_the_entry() {
        let missing = GOOD.replace("kind = \"modbus_tcp\"\n", "");
        let errs = errors(&missing);
        assert_eq!(
            (errs[0].line, errs[0].col, errs[0].message.as_str()),
            (
                6,
                1,
                "missing key `kind`: \"modbus_tcp\", \"modbus_rtu\", \"opcua\" or \"mqtt\""
            )
        );
        let unknown = GOOD.replace("kind = \"modbus_tcp\"", "kind = \"modbus\"");
        let errs = errors(&unknown);
        assert_eq!(
            (errs[0].line, errs[0].col, errs[0].message.as_str()),
            (
                8,
                8,
                "unknown source kind \"modbus\": use \"modbus_tcp\", \"modbus_rtu\", \"opcua\" or \"mqtt\""
            )
        );
    }

    /// A build without OPC UA (or MQTT) says so at the source's `kind`,
    /// once: not its keys, nor its tags, nor the rules on them.
    #[cfg(not(all(feature = "opcua", feature = "mqtt")))]
    #[test]
    fn a_kind_left_out_of_this_build_is_one_error_at_its_kind() {
        let extra = r#"
[[sources]]
name = "oven"
kind = "opcua"
endpoint = "opc.tcp://10.0.0.9:4840"

[[sources]]
name = "line"
kind = "mqtt"
address = "10.0.0.8:1883"

[[tags]]
name = "oven_state"
source = "oven"
node = "ns=2;s=State"

[[tags]]
name = "line_count"
source = "line"
topic = "line/count"

[[events]]
kind = "production"
name = "line_parts"
tag = "line_count"
workcenter = "LINE"
"#;
        let text = GOOD.replace("\n[odoo]", &format!("{extra}\n[odoo]"));
        let line_of = |needle: &str| 1 + text.lines().position(|l| l == needle).expect(needle);
        let errs = errors(&text);
        let got: Vec<(usize, usize, &str)> = errs
            .iter()
            .map(|d| (d.line, d.col, d.message.as_str()))
            .collect();
        let want = vec![
            #[cfg(not(feature = "opcua"))]
            (
                line_of("kind = \"opcua\""),
                8,
                "this gateway was built without OPC UA; install a build with it \
                 (the standard package has it) or build with `--features opcua`",
            ),
            #[cfg(not(feature = "mqtt"))]
            (
                line_of("kind = \"mqtt\""),
                8,
                "this gateway was built without MQTT; install a build with it \
                 (the standard package has it) or build with `--features mqtt`",
            ),
        ];
        assert_eq!(got, want);
        let shown = parse(&text, Path::new("t.toml"))
            .expect_err("invalid")
            .to_string();
        assert!(
            shown.contains(&format!(
                "t.toml:{}:8: this gateway was built without",
                want[0].0
            )),
            "FILE:LINE:COL: {shown}"
        );
    }
}
