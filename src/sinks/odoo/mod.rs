//! The Odoo sink: delivers events to Odoo over JSON-RPC, idempotently.
//!
//! - Downtime: `mrp.workcenter.productivity.load` keyed by an external id
//!   derived from the downtime id; start and end upsert the same record.
//! - Production: the work order in progress at the work center gets an
//!   absolute `qty_produced`. The work order and the value are fixed in the
//!   store's ledger before the first write, so a retried or replayed event
//!   writes the same value again rather than adding its parts twice.

pub mod http;
pub mod plan;
pub mod rpc;

use super::DeliveryError;
use crate::config::{OdooConfig, SecretError};
use crate::model::Event;
use crate::store::Store;
use plan::{Plan, TIME_LOG_FIELDS};
use rpc::{JsonRpc, RpcError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Odoo exceptions that say "this event is wrong", not "try later".
const REFUSALS: [&str; 6] = [
    "odoo.exceptions.ValidationError",
    "odoo.exceptions.UserError",
    "odoo.exceptions.MissingError",
    "builtins.ValueError",
    "builtins.TypeError",
    "builtins.KeyError",
];

#[derive(Debug, thiserror::Error)]
pub enum OdooSetupError {
    #[error("[odoo] has no API key source")]
    NoKey,
    #[error("Odoo API key: {0}")]
    Key(#[from] SecretError),
    #[error(transparent)]
    Http(#[from] http::HttpSetupError),
}

/// The write decided for a production event before it is sent.
#[derive(Debug, Serialize, Deserialize)]
struct ProductionIntent {
    workorder: i64,
    qty_produced: f64,
}

/// Ledger entries: a version byte, then postcard. Version 0 is format 0's
/// unversioned entry (same shape), carried over by the store's migration.
const INTENT_V1: u8 = 1;
const INTENT_V0: u8 = crate::store::migrate::LEGACY_PAYLOAD;

impl ProductionIntent {
    fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        let mut out = vec![INTENT_V1];
        out.extend(postcard::to_stdvec(self)?);
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        match bytes.split_first() {
            Some((&INTENT_V1 | &INTENT_V0, rest)) => {
                postcard::from_bytes(rest).map_err(|e| e.to_string())
            }
            Some((v, _)) => Err(format!("version {v} is not one this release reads")),
            None => Err("empty entry".into()),
        }
    }
}

pub struct OdooSink {
    rpc: JsonRpc,
    /// Work center code → id; codes are stable, so cached for the process.
    workcenters: HashMap<String, i64>,
}

fn classify(e: RpcError) -> DeliveryError {
    match &e {
        RpcError::Unreachable { .. }
        | RpcError::LoginRefused { .. }
        | RpcError::Http {
            status: 502 | 504, ..
        } => DeliveryError::Unreachable(e.to_string()),
        _ => match e.odoo_name() {
            Some(name) if REFUSALS.contains(&name) => DeliveryError::Reject(e.to_string()),
            _ => DeliveryError::Retry(e.to_string()),
        },
    }
}

fn store_err(e: crate::store::StoreError) -> DeliveryError {
    DeliveryError::Retry(format!("event store: {e}"))
}

impl OdooSink {
    pub fn new(cfg: &OdooConfig) -> Result<Self, OdooSetupError> {
        let key = cfg.api_key.as_ref().ok_or(OdooSetupError::NoKey)?.read()?;
        let http = http::client(cfg)?;
        Ok(OdooSink {
            rpc: JsonRpc::new(http, &cfg.url, &cfg.database, &cfg.login, key),
            workcenters: HashMap::new(),
        })
    }

    pub async fn deliver(
        &mut self,
        store: &Store,
        sink: &str,
        ev: &Event,
    ) -> Result<(), DeliveryError> {
        match plan::plan(ev) {
            Plan::AddProduced {
                workcenter,
                quantity,
            } => {
                self.add_produced(store, sink, &ev.id, &workcenter, quantity)
                    .await
            }
            Plan::UpsertTimeLog {
                xmlid,
                workcenter,
                loss,
                date_start,
                date_end,
                description,
            } => {
                let wc = self.workcenter_id(&workcenter).await?;
                let row = [
                    xmlid,
                    wc.to_string(),
                    loss,
                    date_start,
                    date_end.unwrap_or_default(),
                    description,
                ];
                let result = self
                    .rpc
                    .execute_kw(
                        "mrp.workcenter.productivity",
                        "load",
                        json!([TIME_LOG_FIELDS, [row]]),
                        json!({"context": {"tz": "UTC"}}),
                    )
                    .await
                    .map_err(classify)?;
                load_outcome(&result)
            }
        }
    }

    async fn workcenter_id(&mut self, code: &str) -> Result<i64, DeliveryError> {
        if let Some(id) = self.workcenters.get(code) {
            return Ok(*id);
        }
        let found = self
            .rpc
            .execute_kw(
                "mrp.workcenter",
                "search_read",
                json!([[["code", "=", code]]]),
                json!({"fields": ["id", "name"], "limit": 1}),
            )
            .await
            .map_err(classify)?;
        let id = found
            .get(0)
            .and_then(|r| r.get("id"))
            .and_then(Value::as_i64)
            .ok_or_else(|| {
                DeliveryError::Reject(format!(
                    "Odoo has no mrp.workcenter with code {code:?}: set the code on the work center or fix `workcenter` in the tag map"
                ))
            })?;
        self.workcenters.insert(code.to_string(), id);
        Ok(id)
    }

    async fn add_produced(
        &mut self,
        store: &Store,
        sink: &str,
        event_id: &str,
        workcenter: &str,
        quantity: u64,
    ) -> Result<(), DeliveryError> {
        // An entry that cannot be read must stop the sink: planning the
        // write again could add these parts a second time.
        let recorded = match store.ledger_get(sink, event_id).map_err(store_err)? {
            Some(b) => Some(ProductionIntent::decode(&b).map_err(|e| {
                DeliveryError::Halt(format!(
                    "the delivery record of production event {event_id} cannot be read ({e}); its write may already be in Odoo, so it is not planned again: check the work order's quantity in Odoo"
                ))
            })?),
            None => None,
        };
        let intent = match recorded {
            Some(i) => i,
            None => {
                let wc = self.workcenter_id(workcenter).await?;
                let found = self
                    .rpc
                    .execute_kw(
                        "mrp.workorder",
                        "search_read",
                        json!([[["workcenter_id", "=", wc], ["state", "=", "progress"]]]),
                        json!({"fields": ["id", "name", "qty_produced"], "order": "date_start desc, id desc", "limit": 1}),
                    )
                    .await
                    .map_err(classify)?;
                let Some(wo) = found.get(0) else {
                    return Err(DeliveryError::Reject(format!(
                        "no work order in progress at work center {workcenter:?} for {quantity} parts: start the work order in Odoo, then replay this dead letter"
                    )));
                };
                let workorder = wo
                    .get("id")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| DeliveryError::Retry(format!("work order without id: {wo}")))?;
                let current = wo
                    .get("qty_produced")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                let intent = ProductionIntent {
                    workorder,
                    qty_produced: current + quantity as f64,
                };
                let bytes = intent
                    .encode()
                    .map_err(|e| DeliveryError::Retry(format!("encode intent: {e}")))?;
                store
                    .ledger_put(sink, event_id, &bytes)
                    .await
                    .map_err(store_err)?;
                intent
            }
        };
        self.rpc
            .execute_kw(
                "mrp.workorder",
                "write",
                json!([[intent.workorder], {"qty_produced": intent.qty_produced}]),
                json!({}),
            )
            .await
            .map_err(classify)?;
        Ok(())
    }
}

/// `load` reports data errors in its result, not as an exception.
fn load_outcome(result: &Value) -> Result<(), DeliveryError> {
    let messages: Vec<String> = result
        .get("messages")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter(|x| x.get("type").and_then(Value::as_str) == Some("error"))
                .map(|x| {
                    x.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("error")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    let ids_ok = result
        .get("ids")
        .and_then(Value::as_array)
        .is_some_and(|ids| !ids.is_empty());
    if messages.is_empty() && ids_ok {
        return Ok(());
    }
    if messages.is_empty() {
        return Err(DeliveryError::Retry(format!(
            "load returned no ids: {result}"
        )));
    }
    Err(DeliveryError::Reject(format!(
        "Odoo refused the time log: {}",
        messages.join("; ")
    )))
}
