//! The config file as written: serde structs that keep each value's place in
//! the file, so validation can point at it. Nothing here checks meaning;
//! the `Validator` in `config` turns these into the typed `Config`. Each
//! source kind's own keys are in its module (`modbus`, `opcua`).

use serde::de::{DeserializeOwned, Deserializer, IgnoredAny, Visitor};
use serde::Deserialize;
use toml::de::{DeValue, ValueDeserializer};
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub gateway: Option<S<RawGateway>>,
    pub status: Option<S<super::status::RawStatus>>,
    /// Only checked to be arrays here: their entries are read from the
    /// parsed document by kind, as [`Entry`]s.
    #[serde(default, rename = "sources")]
    _sources: Vec<IgnoredAny>,
    #[serde(default, rename = "tags")]
    _tags: Vec<IgnoredAny>,
    #[serde(default)]
    pub derived: Vec<S<super::derived::RawDerived>>,
    #[serde(default)]
    pub events: Vec<S<RawEvent>>,
    pub odoo: Option<S<RawOdoo>>,
    #[cfg(feature = "mqtt")]
    pub mqtt_sink: Option<S<super::mqtt_sink::RawMqttSink>>,
    /// Read only to be refused: this build has no MQTT.
    #[cfg(not(feature = "mqtt"))]
    pub mqtt_sink: Option<S<serde::de::IgnoredAny>>,
    pub store: Option<S<super::store::RawStore>>,
    pub log: Option<S<RawLog>>,
    pub update: Option<S<super::update::RawUpdate>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    pub id: Option<S<String>>,
    pub data_dir: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<S<String>>,
}

/// The keys every `[[sources]]` entry has. The rest of the entry is read
/// by its kind, into that kind's structs (`config::modbus`,
/// `config::opcua`), after [`Validator::sort_keys`](super::Validator) has
/// checked its keys; so no `deny_unknown_fields` here.
#[derive(Debug, Deserialize)]
pub struct RawSource {
    pub name: Option<S<String>>,
    pub kind: Option<S<String>>,
}

/// The keys every `[[tags]]` entry has; the rest is read by the kind of
/// the source the tag names.
#[derive(Debug, Deserialize)]
pub struct RawTag {
    pub name: Option<S<String>>,
    pub source: Option<S<String>>,
    /// value × scale + offset, for every kind.
    pub scale: Option<S<f64>>,
    pub offset: Option<S<f64>>,
    pub engineering_unit: Option<S<String>>,
    /// Signal conditioning, for every kind (see `sources::filter`).
    pub min: Option<S<f64>>,
    pub max: Option<S<f64>>,
    pub clamp: Option<S<bool>>,
    pub min_change: Option<S<f64>>,
    pub min_change_percent: Option<S<f64>>,
    pub on_change: Option<S<bool>>,
    pub heartbeat: Option<S<String>>,
    /// Rate limit, for every kind (applied by the edge, see `edge::limit`).
    pub min_interval: Option<S<String>>,
}

/// One `[[sources]]` or `[[tags]]` entry as parsed, with the position of
/// every key and value. Its keys depend on a kind, and serde's tagged
/// enums buffer the entry and drop the positions, so it is read in parts
/// (see [`read`]) once the kind is known.
pub type Entry<'i> = Spanned<DeValue<'i>>;

/// Read one part of an entry into `T`. `T` skips keys it does not name:
/// the entry's keys were checked against all the kind's parts before.
pub fn read<T: DeserializeOwned>(entry: &Entry<'_>) -> Result<T, toml::de::Error> {
    T::deserialize(ValueDeserializer::from(entry.clone()))
}

/// The keys serde's derive reads into struct `T` (after renames), asked of
/// the derive itself, so no kind keeps a list of keys by hand.
pub fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut keys: &'static [&'static str] = &[];
    // The probe always fails: it only records what the derive asked for.
    let _ = T::deserialize(KeyProbe(&mut keys));
    keys
}

/// A deserializer that records the field names of the struct asked for.
struct KeyProbe<'k>(&'k mut &'static [&'static str]);

impl<'de> Deserializer<'de> for KeyProbe<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(serde::de::Error::custom("keys recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvent {
    pub kind: Option<S<String>>,
    pub name: Option<S<String>>,
    pub tag: Option<S<String>>,
    pub workcenter: Option<S<String>>,
    pub max_step: Option<S<i64>>,
    pub report_every: Option<S<String>>,
    pub report_parts: Option<S<i64>>,
    pub parts_per_stroke: Option<S<i64>>,
    /// production: a counter of scrapped parts, and what `tag` counts.
    pub scrap_tag: Option<S<String>>,
    pub tag_counts: Option<S<String>>,
    pub min_duration: Option<S<String>>,
    pub running: Option<S<Vec<i64>>>,
    /// downtime: idle states, the debounce, and interval reporting.
    pub idle: Option<S<Vec<i64>>>,
    pub debounce: Option<S<String>>,
    pub intervals: Option<S<bool>>,
    pub default_loss: Option<S<String>>,
    pub default_description: Option<S<String>>,
    pub lane: Option<S<String>>,
    #[serde(default)]
    pub reason: Vec<S<RawReason>>,
    pub reason_tag: Option<S<String>>,
    #[serde(default)]
    pub code: Vec<S<RawCode>>,
    // kind = "alarm"
    pub equipment: Option<S<String>>,
    pub above: Option<S<f64>>,
    pub below: Option<S<f64>>,
    pub clear_at: Option<S<f64>>,
    #[serde(rename = "for")]
    pub on_delay: Option<S<String>>,
    pub clear_for: Option<S<String>>,
    pub when: Option<S<bool>>,
    /// Rate-of-change alarms, per minute.
    pub rises_faster_than: Option<S<f64>>,
    pub falls_faster_than: Option<S<f64>>,
    /// Alarms and measurements: the text Odoo's record gets.
    pub description: Option<S<String>>,
    // kind = "measurement"
    pub low: Option<S<f64>>,
    pub high: Option<S<f64>>,
    pub target: Option<S<f64>>,
    pub alert_after: Option<S<i64>>,
    /// The tag naming the product made (a recipe number or a code), and
    /// limits per product.
    pub product_tag: Option<S<String>>,
    #[serde(default)]
    pub limits: Vec<S<RawLimits>>,
    // kind = "window"
    pub every: Option<S<String>>,
    // kind = "stock"
    pub product: Option<S<String>>,
    pub location: Option<S<String>>,
}

/// `[[events.limits]]`: a measurement's limits while `product_tag` names
/// this product.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub product: Option<S<String>>,
    pub low: Option<S<f64>>,
    pub high: Option<S<f64>>,
    pub target: Option<S<f64>>,
}

/// `[[events.code]]`: a fault code read from `reason_tag`, and its loss.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCode {
    pub code: Option<S<i64>>,
    pub loss: Option<S<String>>,
    pub description: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReason {
    pub state: Option<S<i64>>,
    pub loss: Option<S<String>>,
    pub description: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOdoo {
    pub url: Option<S<String>>,
    pub database: Option<S<String>>,
    pub login: Option<S<String>>,
    pub api_key_file: Option<S<String>>,
    pub api_key_credential: Option<S<String>>,
    pub ca_file: Option<S<String>>,
    pub client_cert_file: Option<S<String>>,
    pub client_key_file: Option<S<String>>,
    pub pin_sha256: Option<S<Vec<S<String>>>>,
    pub allow_plaintext: Option<S<bool>>,
    pub dry_run: Option<S<bool>>,
    pub timeout: Option<S<String>>,
    pub retry_min: Option<S<String>>,
    pub retry_max: Option<S<String>>,
    pub circuit_failures: Option<S<i64>>,
    pub circuit_cooldown: Option<S<String>>,
    pub api: Option<S<String>>,
    pub production_target: Option<S<String>>,
    pub quantity_max_age: Option<S<String>>,
    pub max_batch: Option<S<i64>>,
    pub max_in_flight: Option<S<i64>>,
    pub name_refresh: Option<S<String>>,
}
