//! The config file as written: serde structs that keep each value's place in
//! the file, so validation can point at it. Nothing here checks meaning;
//! `config::validate` turns these into the typed `Config`.

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub gateway: Option<S<RawGateway>>,
    pub status: Option<S<super::status::RawStatus>>,
    #[serde(default)]
    pub sources: Vec<S<RawSource>>,
    #[serde(default)]
    pub tags: Vec<S<RawTag>>,
    #[serde(default)]
    pub events: Vec<S<RawEvent>>,
    pub odoo: Option<S<RawOdoo>>,
    pub store: Option<S<super::store::RawStore>>,
    pub log: Option<S<RawLog>>,
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

/// One flat struct for every source kind: the validator says which keys a
/// kind takes, with a better message than an untagged enum could give.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub name: Option<S<String>>,
    pub kind: Option<S<String>>,
    // Modbus TCP
    pub address: Option<S<String>>,
    // Modbus RTU
    pub device: Option<S<String>>,
    pub baud: Option<S<i64>>,
    pub parity: Option<S<String>>,
    pub data_bits: Option<S<i64>>,
    pub stop_bits: Option<S<i64>>,
    // Modbus, both transports
    pub unit: Option<S<i64>>,
    pub max_gap: Option<S<i64>>,
    pub poll_groups: Option<S<std::collections::BTreeMap<String, S<String>>>>,
    pub reprobe_interval: Option<S<String>>,
    // OPC UA
    pub endpoint: Option<S<String>>,
    pub security_policy: Option<S<String>>,
    pub security_mode: Option<S<String>>,
    pub user: Option<S<String>>,
    pub password_file: Option<S<String>>,
    pub user_certificate: Option<S<String>>,
    pub user_private_key: Option<S<String>>,
    pub trust_dir: Option<S<String>>,
    pub certificate: Option<S<String>>,
    pub private_key: Option<S<String>>,
    pub publishing_interval: Option<S<String>>,
    // Every kind
    pub poll_interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub backoff_max: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTag {
    pub name: Option<S<String>>,
    pub source: Option<S<String>>,
    // Modbus
    pub table: Option<S<String>>,
    pub register: Option<S<i64>>,
    pub address: Option<S<String>>,
    #[serde(rename = "type")]
    pub data_type: Option<S<String>>,
    pub order: Option<S<String>>,
    pub bit: Option<S<i64>>,
    pub length: Option<S<i64>>,
    pub unit_id: Option<S<i64>>,
    pub poll_group: Option<S<String>>,
    // OPC UA
    pub node: Option<S<String>>,
    pub mode: Option<S<String>>,
    pub sampling_interval: Option<S<String>>,
    pub queue_size: Option<S<i64>>,
    pub discard_oldest: Option<S<bool>>,
    pub deadband: Option<S<RawDeadband>>,
    // Every kind
    pub scale: Option<S<f64>>,
    pub offset: Option<S<f64>>,
    pub engineering_unit: Option<S<String>>,
}

/// `deadband = { kind = "absolute", value = 0.5 }` on an OPC UA tag.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeadband {
    pub kind: Option<S<String>>,
    pub value: Option<S<f64>>,
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
    pub min_duration: Option<S<String>>,
    pub running: Option<S<Vec<i64>>>,
    pub default_loss: Option<S<String>>,
    pub default_description: Option<S<String>>,
    pub lane: Option<S<String>>,
    #[serde(default)]
    pub reason: Vec<S<RawReason>>,
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
    pub allow_plaintext: Option<S<bool>>,
    pub dry_run: Option<S<bool>>,
    pub timeout: Option<S<String>>,
    pub retry_min: Option<S<String>>,
    pub retry_max: Option<S<String>>,
    pub api: Option<S<String>>,
    pub production_target: Option<S<String>>,
    pub quantity_max_age: Option<S<String>>,
}
