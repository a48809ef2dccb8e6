//! The Odoo sink: delivers events to Odoo over JSON-2 or JSON-RPC
//! ([`rpc`]), idempotently.
//!
//! - Production ([`production`]): the parts go to the work order that was
//!   running at the work center when they were made, as an absolute
//!   quantity `max(wo.qty_produced, mo.qty_producing) + parts` written to
//!   the work order, the MO or both (`production_target`). The decided
//!   write is fixed in the store's ledger before it is sent; a repeat reads
//!   Odoo first and writes nothing if the value (or more) is already there.
//! - Downtime: the productive timers open at the work center are closed at
//!   the stop's start (as Odoo's Block does), then
//!   `mrp.workcenter.productivity.load` upserts the loss log by an external
//!   id derived from the downtime id, linked to the work order running then.
//!   At the stop's end the timers it closed start again ([`timers`]).
//!
//! - Alarms ([`maintenance`]): a corrective `maintenance.request` per
//!   occurrence, created once by external id, updated when it clears.
//! - Measures ([`quality`]): `quality.check` / `quality.alert` when the
//!   Quality app is installed, else notes on the work order's MO.
//! - Stock levels ([`stock`]): the counted quantity of a product at a
//!   location, absolute, as an applied inventory adjustment.
//! - Scrap ([`scrap`]): a `stock.scrap` of the MO's product, linked to the
//!   MO and work order, created once by external id, then validated.
//! - State intervals (running, idle, down): nothing; Odoo's timers and
//!   loss logs hold that time.
//!
//! Failures ([`classify`]): a refused key pauses the sink and its source is
//! read again before each retry ([`rpc`]); 429 pauses it for Retry-After;
//! transport errors, 5xx and serialization failures are retried; Odoo's
//! refusals of one record (ValidationError, UserError, MissingError, a
//! `load` with error messages) are dead letters. The runner's circuit
//! breaker ([`super::schedule`]) stops requests to an Odoo that keeps
//! failing. Health: [`metrics`], and `connected`/`last_success` on
//! `/status`.
//!
//! What is read when: work center ids once per code; a work center's work
//! orders (with their quantities) when none is cached, when the cached read
//! is older than `quantity_max_age`, for parts older than what was read,
//! and after any failed write; the recorded work order on every repeat.

mod batch;
pub mod http;
mod maintenance;
pub mod metrics;
mod notes;
pub mod plan;
pub mod production;
mod quality;
pub mod rpc;
mod scrap;
mod stock;
mod timers;

use super::DeliveryError;
use crate::config::{OdooConfig, ProductionTarget, SecretError};
use crate::model::{Event, Millis};
use crate::store::Store;
use plan::Plan;
use production::{Intent, WorkOrderView};
use rpc::{Rpc, RpcError};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Odoo exceptions that say "this event is wrong", not "try later".
const REFUSALS: [&str; 6] = [
    "odoo.exceptions.ValidationError",
    "odoo.exceptions.UserError",
    "odoo.exceptions.MissingError",
    "builtins.ValueError",
    "builtins.TypeError",
    "builtins.KeyError",
];

/// Work order fields read for attribution and quantities.
const WO_FIELDS: [&str; 9] = [
    "id",
    "name",
    "production_id",
    "state",
    "production_state",
    "date_start",
    "date_finished",
    "qty_produced",
    "qty_producing",
];

/// Events taken from the store per round by a sink that sends `max_batch`
/// rows per request, `max_in_flight` requests at once: enough for every
/// request of a round to be full, bounded so one round stays short.
pub fn round_limit(max_batch: usize, max_in_flight: usize) -> usize {
    (max_batch * max_in_flight * 10).clamp(1, 10_000)
}

/// Work orders read per work center at most; a backlog spanning more
/// finished work orders than this is read again for its older parts.
const WO_READ_LIMIT: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum OdooSetupError {
    #[error("[odoo] has no API key source")]
    NoKey,
    #[error("Odoo API key: {0}")]
    Key(#[from] SecretError),
    #[error(transparent)]
    Http(#[from] http::HttpSetupError),
}

/// The values of one loss log.
struct TimeLog {
    xmlid: String,
    loss: String,
    start: String,
    end: Option<String>,
    description: String,
}

/// A work center's work orders as last read (and since then written).
struct Snapshot {
    read_at: Instant,
    /// Parts made before this were not asked for (finished work orders
    /// before it are missing).
    since: String,
    wos: Vec<WorkOrderView>,
}

pub struct OdooSink {
    rpc: Rpc,
    /// The sink's metrics, shared with `/metrics`.
    metrics: Arc<metrics::OdooMetrics>,
    /// Health for `/status`: whether the last request reached Odoo, and
    /// when one last succeeded.
    connected: Option<bool>,
    last_success: Option<Millis>,
    target: ProductionTarget,
    max_age: Duration,
    /// Work center code → id; codes are stable, so cached for the process.
    workcenters: HashMap<String, i64>,
    /// `FILE:LINE:COL` of each work center code in the config.
    workcenter_at: HashMap<String, String>,
    /// Work center id → its work orders.
    snapshots: HashMap<i64, Snapshot>,
    /// MO id → `qty_producing` as last read or written: one MO's work
    /// orders can sit at several work centers, and all must see one value.
    mo_qty: HashMap<i64, f64>,
    /// Equipment name or serial → `maintenance.equipment` id, for the process.
    equipment: HashMap<String, i64>,
    /// Whether Odoo has the Quality app, once asked.
    quality: Option<quality::QualityMode>,
    /// Product reference and location name → ids, refreshed as names are.
    products: HashMap<String, i64>,
    locations: HashMap<String, i64>,
    /// `[odoo] max_batch`, `max_in_flight`.
    max_batch: usize,
    max_in_flight: usize,
    /// Names (work center codes, equipment) are looked up again after this
    /// even without a miss, so a record renamed or recreated in Odoo is seen.
    name_refresh: Duration,
    names_read_at: Instant,
}

/// What one round has read from Odoo already, so that planning many events
/// reads each thing once.
#[derive(Default)]
struct Round {
    /// Work centers whose work orders were read in this round.
    read_wcs: std::collections::HashSet<i64>,
    /// Work orders read one by one in this round (repeats).
    wos: HashMap<i64, Option<WorkOrderView>>,
    /// Writes decided in this round and not sent yet: a read of Odoo does
    /// not show them, so they are applied to what is read.
    pending: Vec<Intent>,
}

fn classify(e: RpcError) -> DeliveryError {
    if e.is_key_refusal() {
        // Every call would be refused alike: pause the sink.
        return DeliveryError::Unreachable(e.to_string());
    }
    if let RpcError::Throttled { retry_after, .. } = &e {
        return DeliveryError::Throttled {
            after: *retry_after,
            why: e.to_string(),
        };
    }
    // Everything else that is not a refusal is retried: 5xx (JSON-2's 500
    // for a serialization failure), psycopg2's SerializationFailure (Odoo
    // gave up after its own 5 tries), timeouts.
    match &e {
        RpcError::KeySource(_)
        | RpcError::Unreachable { .. }
        | RpcError::LoginRefused { .. }
        | RpcError::KeyRefused { .. }
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

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// One `search_read`/`read` row of mrp.workorder.
fn workorder_view(row: &Value) -> Result<WorkOrderView, DeliveryError> {
    let bad = || DeliveryError::Retry(format!("unexpected work order from Odoo: {row}"));
    let id = row.get("id").and_then(Value::as_i64).ok_or_else(bad)?;
    let mo = row.get("production_id").ok_or_else(bad)?;
    Ok(WorkOrderView {
        id,
        name: row.get("name").and_then(text).unwrap_or_default(),
        production: mo.get(0).and_then(Value::as_i64).ok_or_else(bad)?,
        production_name: mo.get(1).and_then(text).unwrap_or_default(),
        state: row.get("state").and_then(text).unwrap_or_default(),
        production_state: row
            .get("production_state")
            .and_then(text)
            .unwrap_or_default(),
        date_start: row.get("date_start").and_then(text),
        date_finished: row.get("date_finished").and_then(text),
        qty_produced: row
            .get("qty_produced")
            .and_then(Value::as_f64)
            .unwrap_or(0.0),
        qty_producing: row
            .get("qty_producing")
            .and_then(Value::as_f64)
            .unwrap_or(0.0),
    })
}

impl OdooSink {
    pub fn new(cfg: &OdooConfig) -> Result<Self, OdooSetupError> {
        Self::with_metrics(cfg, Arc::default())
    }

    /// As [`OdooSink::new`], counting into `metrics` (registered by the pipeline).
    pub fn with_metrics(
        cfg: &OdooConfig,
        metrics: Arc<metrics::OdooMetrics>,
    ) -> Result<Self, OdooSetupError> {
        let source = cfg.api_key.as_ref().ok_or(OdooSetupError::NoKey)?;
        let key = source.read()?;
        let http = http::client(cfg)?;
        if cfg.url.starts_with("http://") {
            // Said at every start: the switch must not be forgotten in place.
            tracing::warn!(url = %cfg.url,
                "Odoo is reached over plain http (allow_plaintext = true): the API key and all data cross the network unencrypted; use https:// unless the link is protected otherwise");
        }
        Ok(OdooSink {
            rpc: Rpc::new(http, &cfg.url, &cfg.database, &cfg.login, key, cfg.api)
                .with_key_source(source.clone()),
            metrics,
            connected: None,
            last_success: None,
            target: cfg.production_target,
            max_age: cfg.quantity_max_age,
            workcenters: HashMap::new(),
            workcenter_at: cfg.workcenter_at.clone(),
            snapshots: HashMap::new(),
            mo_qty: HashMap::new(),
            equipment: HashMap::new(),
            quality: None,
            products: HashMap::new(),
            locations: HashMap::new(),
            max_batch: cfg.max_batch,
            max_in_flight: cfg.max_in_flight,
            name_refresh: cfg.name_refresh,
            names_read_at: Instant::now(),
        })
    }

    /// "json2 (Odoo 19.0)", "jsonrpc", ...: once the first call decided it.
    pub fn api(&self) -> Option<String> {
        self.rpc.describe()
    }

    /// Whether the last request reached Odoo (None before the first).
    pub fn connected(&self) -> Option<bool> {
        self.connected
    }

    /// When a request last succeeded.
    pub fn last_success(&self) -> Option<Millis> {
        self.last_success
    }

    /// The runner's circuit breaker state, for the metrics (with the key's
    /// state, so both gauges exist from the start).
    pub fn circuit(&self, sink: &str, open: bool) {
        self.metrics.circuit_open(sink, open);
        self.metrics.auth_failed(sink, self.rpc.key_refused());
    }

    /// Whether Odoo refuses the API key now (the sink is paused).
    pub fn auth_failed(&self) -> bool {
        self.rpc.key_refused()
    }

    pub async fn deliver(
        &mut self,
        store: &Store,
        sink: &str,
        ev: &Event,
    ) -> Result<(), DeliveryError> {
        self.expire_names();
        let result = self.deliver_one(store, sink, ev).await;
        self.account(sink, std::iter::once(&result));
        result
    }

    /// Events per round ([`round_limit`]).
    pub fn batch_limit(&self) -> usize {
        round_limit(self.max_batch, self.max_in_flight)
    }

    /// Count the requests made and the events' fates into the metrics.
    fn account<'a>(
        &mut self,
        sink: &str,
        results: impl Iterator<Item = &'a Result<(), DeliveryError>>,
    ) {
        self.metrics.auth_failed(sink, self.rpc.key_refused());
        for o in self.rpc.take_observed() {
            self.metrics.request(sink, &o);
            self.connected = Some(o.reached);
            if o.ok {
                self.last_success = Some(Millis::now());
            }
        }
        for r in results {
            match r {
                Ok(()) => {}
                Err(DeliveryError::Reject(_)) => self.metrics.dead_letter(sink),
                Err(_) => self.metrics.retry(sink),
            }
        }
    }

    /// Forget the names looked up when `name_refresh` has passed.
    fn expire_names(&mut self) {
        if self.names_read_at.elapsed() >= self.name_refresh {
            self.workcenters.clear();
            self.equipment.clear();
            self.products.clear();
            self.locations.clear();
            self.names_read_at = Instant::now();
        }
    }

    async fn deliver_one(
        &mut self,
        store: &Store,
        sink: &str,
        ev: &Event,
    ) -> Result<(), DeliveryError> {
        match plan::plan(ev) {
            Plan::AddProduced {
                workcenter,
                quantity,
                at,
            } => {
                self.add_produced(store, sink, &ev.id, &workcenter, quantity, at)
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
                let row = TimeLog {
                    xmlid,
                    loss,
                    start: date_start,
                    end: date_end,
                    description,
                };
                self.time_log(&workcenter, row).await
            }
            Plan::MaintenanceRequest {
                xmlid,
                equipment,
                equipment_at,
                name,
                description,
                request_date,
                cleared,
            } => {
                self.maintenance_request(maintenance::Request {
                    xmlid,
                    equipment,
                    equipment_at,
                    name,
                    description,
                    request_date,
                    cleared,
                })
                .await
            }
            Plan::QualityCheck {
                xmlid,
                workcenter,
                title,
                measure,
                pass,
                note,
                at,
            } => {
                self.quality(quality::QualityRow {
                    xmlid,
                    workcenter,
                    title,
                    at,
                    what: quality::QualityWhat::Check {
                        measure,
                        pass,
                        note,
                    },
                })
                .await
            }
            Plan::SetStock(s) => self.set_stock(&s).await,
            Plan::QualityAlert {
                xmlid,
                check_xmlid,
                workcenter,
                title,
                description,
                at,
            } => {
                self.quality(quality::QualityRow {
                    xmlid,
                    workcenter,
                    title,
                    at,
                    what: quality::QualityWhat::Alert {
                        check_xmlid,
                        description,
                    },
                })
                .await
            }
            Plan::WorkcenterNote {
                workcenter,
                event_id,
                text,
            } => self.workcenter_note(&workcenter, &event_id, &text).await,
            Plan::RecordScrap {
                xmlid,
                workcenter,
                quantity,
                at,
            } => self.scrap(&ev.id, &xmlid, &workcenter, quantity, at).await,
            Plan::Nothing => Ok(()),
        }
    }

    /// The rows of `model` matching `domain`, with `fields`.
    pub(super) async fn search_read(
        &mut self,
        model: &str,
        domain: Value,
        fields: &[&str],
    ) -> Result<Vec<Value>, DeliveryError> {
        self.search_read_with(model, json!({"domain": domain, "fields": fields}))
            .await
    }

    /// The rows of a `search_read` of `model` with these named arguments
    /// (a domain and fields, and an order or a limit).
    pub(super) async fn search_read_with(
        &mut self,
        model: &str,
        args: Value,
    ) -> Result<Vec<Value>, DeliveryError> {
        let rows = self
            .rpc
            .call(model, "search_read", None, args, None)
            .await
            .map_err(classify)?;
        Ok(match rows {
            Value::Array(rows) => rows,
            _ => Vec::new(),
        })
    }

    /// The record id under external id `plantgate.<name>`, if there is one:
    /// whether a record the sink creates under it is in Odoo already.
    pub(super) async fn xmlid_res_id(&mut self, xmlid: &str) -> Result<Option<i64>, DeliveryError> {
        let name = xmlid
            .strip_prefix(plan::XMLID_MODULE)
            .and_then(|n| n.strip_prefix('.'))
            .unwrap_or(xmlid);
        let rows = self
            .search_read_with(
                "ir.model.data",
                json!({
                    "domain": [["module", "=", plan::XMLID_MODULE], ["name", "=", name]],
                    "fields": ["res_id"],
                    "limit": 1,
                }),
            )
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.get("res_id"))
            .and_then(Value::as_i64))
    }

    async fn workcenter_id(&mut self, code: &str) -> Result<i64, DeliveryError> {
        if let Some(id) = self.workcenters.get(code) {
            return Ok(*id);
        }
        let missing = unknown_workcenter(&self.workcenter_at, code);
        let id = self
            .first_id("mrp.workcenter", json!([["code", "=", code]]), || missing)
            .await?;
        self.workcenters.insert(code.to_string(), id);
        Ok(id)
    }

    /// The id of the first record of `model` matching `domain`; none is a
    /// refusal of the event, in the words `missing` gives.
    async fn first_id(
        &mut self,
        model: &str,
        domain: Value,
        missing: impl FnOnce() -> String,
    ) -> Result<i64, DeliveryError> {
        let found = self
            .search_read_with(
                model,
                json!({"domain": domain, "fields": ["id"], "limit": 1}),
            )
            .await?;
        found
            .first()
            .and_then(|r| r.get("id"))
            .and_then(Value::as_i64)
            .ok_or_else(|| DeliveryError::Reject(missing()))
    }

    /// The work center's work orders that may have run at `at` or later,
    /// from the cache when it is fresh enough, else read from Odoo.
    async fn workorders(
        &mut self,
        wc: i64,
        at: &str,
        force: bool,
    ) -> Result<&[WorkOrderView], DeliveryError> {
        self.workorders_in(wc, at, force, &mut Round::default())
            .await
    }

    /// [`OdooSink::workorders`] within a round: what was read in it is
    /// fresh, and a read keeps the round's writes decided but not yet sent.
    async fn workorders_in(
        &mut self,
        wc: i64,
        at: &str,
        force: bool,
        round: &mut Round,
    ) -> Result<&[WorkOrderView], DeliveryError> {
        let fresh = self.snapshots.get(&wc).is_some_and(|s| {
            s.since.as_str() <= at
                && (round.read_wcs.contains(&wc) || s.read_at.elapsed() <= self.max_age)
        });
        if force || !fresh {
            let rows = self
                .read_workorders(
                    json!(["workcenter_id", "=", wc]),
                    at,
                    &WO_FIELDS,
                    WO_READ_LIMIT,
                )
                .await?;
            let wos = rows
                .iter()
                .map(workorder_view)
                .collect::<Result<Vec<_>, _>>()?;
            self.store_snapshot(wc, at, wos, round);
        }
        Ok(self
            .snapshots
            .get(&wc)
            .map(|s| s.wos.as_slice())
            .unwrap_or_default())
    }

    /// The work orders of the work centers `workcenters` (a domain term:
    /// one work center, or several) that may have run at `since` or later:
    /// those in progress, and those finished since. Oldest first.
    pub(super) async fn read_workorders(
        &mut self,
        workcenters: Value,
        since: &str,
        fields: &[&str],
        limit: usize,
    ) -> Result<Vec<Value>, DeliveryError> {
        self.search_read_with(
            "mrp.workorder",
            json!({
                "domain": [
                    workcenters,
                    ["state", "in", ["progress", "done"]],
                    "|",
                    ["state", "=", "progress"],
                    ["date_finished", ">=", since]
                ],
                "fields": fields,
                "order": "date_start asc, id asc",
                "limit": limit,
            }),
        )
        .await
    }

    /// Keep work orders just read, with the round's pending writes on top.
    fn store_snapshot(&mut self, wc: i64, since: &str, wos: Vec<WorkOrderView>, round: &mut Round) {
        for w in &wos {
            self.mo_qty.insert(w.production, w.qty_producing);
        }
        self.snapshots.insert(
            wc,
            Snapshot {
                read_at: Instant::now(),
                since: since.to_string(),
                wos,
            },
        );
        round.read_wcs.insert(wc);
        for intent in round.pending.clone() {
            self.wrote(&intent);
        }
    }

    /// One work order, read now.
    async fn read_workorder(&mut self, id: i64) -> Result<Option<WorkOrderView>, DeliveryError> {
        let rows = self
            .search_read("mrp.workorder", json!([["id", "=", id]]), &WO_FIELDS)
            .await?;
        rows.first().map(workorder_view).transpose()
    }

    async fn add_produced(
        &mut self,
        store: &Store,
        sink: &str,
        event_id: &str,
        workcenter: &str,
        quantity: u64,
        made: Millis,
    ) -> Result<(), DeliveryError> {
        let wc = self.workcenter_id(workcenter).await?;
        let at = made.odoo_datetime();
        let mut round = Round::default();
        let Some(intent) = self
            .plan_part(
                store, sink, wc, workcenter, event_id, quantity, &at, &mut round,
            )
            .await?
        else {
            return Ok(());
        };
        let bytes = intent
            .encode()
            .map_err(|e| DeliveryError::Retry(format!("encode intent: {e}")))?;
        store
            .ledger_put(sink, event_id, &bytes)
            .await
            .map_err(store_err)?;
        if let Err(e) = write_intent(&mut self.rpc, &intent).await {
            self.forget(wc, intent.production);
            return Err(e);
        }
        Ok(())
    }

    /// Decide the write for one production event as if every event before
    /// it had been written: `None` when it is a repeat Odoo already holds.
    /// The caches are updated as if the write succeeded ([`OdooSink::wrote`]);
    /// the caller [`OdooSink::forget`]s them when it does not.
    #[allow(clippy::too_many_arguments)]
    async fn plan_part(
        &mut self,
        store: &Store,
        sink: &str,
        wc: i64,
        workcenter: &str,
        event_id: &str,
        quantity: u64,
        at: &str,
        round: &mut Round,
    ) -> Result<Option<Intent>, DeliveryError> {
        // An entry that cannot be read must stop the sink: planning the
        // write again could add these parts a second time.
        let recorded = match store.ledger_get(sink, event_id).map_err(store_err)? {
            Some(b) => Some(Intent::decode(&b).map_err(|e| {
                DeliveryError::Halt(format!(
                    "the delivery record of production event {event_id} cannot be read ({e}); its write may already be in Odoo, so it is not planned again: check the work order's quantity in Odoo"
                ))
            })?),
            None => None,
        };
        if let Some(intent) = &recorded {
            // A repeat (retry, crash, replay): Odoo may hold the write
            // already. Read, never guess (once per work order and round:
            // nothing is written while a round is planned).
            let now = match round.wos.get(&intent.workorder) {
                Some(w) => w.clone(),
                None => {
                    let w = self.read_workorder(intent.workorder).await?;
                    round.wos.insert(intent.workorder, w.clone());
                    w
                }
            };
            if let Some(now) = now {
                if production::applied(intent, now.qty_produced, now.qty_producing) {
                    if round.pending.is_empty() {
                        self.mo_qty.insert(now.production, now.qty_producing);
                    }
                    return Ok(None);
                }
            }
        }
        // Plan from what Odoo holds now: fresh after a repeat, else cached.
        let mut force = recorded.is_some() && !round.read_wcs.contains(&wc);
        let (wo, why) = loop {
            let wos = self.workorders_in(wc, at, force, round).await?;
            let fresh = round.read_wcs.contains(&wc);
            match production::attribute(wos, at) {
                // A finished work order is written only as read in this
                // round: its MO may have been closed since an older read.
                Some((w, why)) if fresh || w.state != "done" => break (w.clone(), why),
                None if fresh => {
                    return Err(DeliveryError::Reject(format!(
                        "{quantity} parts made at {at} UTC at work center {workcenter:?}: no work order was in progress there then, nor started since. Start the work order in Odoo, then `plantgate dlq replay ID`"
                    )))
                }
                _ => force = true,
            }
        };
        let mo_qty = self
            .mo_qty
            .get(&wo.production)
            .copied()
            .unwrap_or(wo.qty_producing);
        let intent = production::decide(&wo, why, mo_qty, quantity, at, self.target)
            .map_err(DeliveryError::Reject)?;
        self.wrote(&intent);
        round.pending.push(intent.clone());
        Ok(Some(intent))
    }

    /// A write failed (or was not sent): what is cached about its work
    /// center and MO may be wrong now, so it is read again.
    fn forget(&mut self, wc: i64, mo: Option<i64>) {
        self.snapshots.remove(&wc);
        if let Some(mo) = mo {
            self.mo_qty.remove(&mo);
            self.snapshots
                .retain(|_, s| !s.wos.iter().any(|w| w.production == mo));
        }
    }

    /// Keep the cache equal to what Odoo holds after our write.
    fn wrote(&mut self, intent: &Intent) {
        let Some(mo) = intent.production else { return };
        // Every target sets the MO's quantity (the work order's write
        // through Odoo's link).
        self.mo_qty.insert(mo, intent.value);
        for snap in self.snapshots.values_mut() {
            for w in snap.wos.iter_mut().filter(|w| w.production == mo) {
                w.qty_producing = intent.value;
                if w.id == intent.workorder && intent.target != ProductionTarget::Production {
                    w.qty_produced = intent.value;
                }
            }
        }
    }

    async fn time_log(&mut self, workcenter: &str, log: TimeLog) -> Result<(), DeliveryError> {
        let wc = self.workcenter_id(workcenter).await?;
        let TimeLog {
            xmlid,
            loss,
            start,
            end: date_end,
            description,
        } = log;
        let wo =
            production::running_at(self.workorders(wc, &start, false).await?, &start).map(|w| w.id);
        // Close the productive timers running into the stop, at its start,
        // as Odoo's Block does: productive and loss time must not overlap.
        // Only timers started before the stop: a later one is the
        // operator's after the stop, which a late repeat must not end.
        let ids: Vec<i64> = self
            .search_read(
                "mrp.workcenter.productivity",
                json!([
                    ["workcenter_id", "=", wc],
                    ["date_end", "=", false],
                    ["loss_type", "in", ["productive", "performance"]],
                    ["date_start", "<", start]
                ]),
                &["id"],
            )
            .await?
            .iter()
            .filter_map(|r| r.get("id").and_then(Value::as_i64))
            .collect();
        if !ids.is_empty() {
            self.rpc
                .call(
                    "mrp.workcenter.productivity",
                    "write",
                    Some(&ids),
                    json!({"vals": {"date_end": start}}),
                    None,
                )
                .await
                .map_err(classify)?;
        }
        let resume = date_end
            .clone()
            .map(|end| (xmlid.clone(), start.clone(), end));
        let mut row = vec![
            xmlid,
            wc.to_string(),
            loss,
            start,
            description,
            wo.map(|w| w.to_string()).unwrap_or_default(),
        ];
        let ended = date_end.is_some();
        row.extend(date_end);
        let result = self
            .rpc
            .call(
                "mrp.workcenter.productivity",
                "load",
                None,
                json!({"fields": plan::time_log_fields(ended), "data": [row]}),
                Some(json!({"tz": "UTC"})),
            )
            .await
            .map_err(classify)?;
        load_outcome(&result, "time log")?;
        match resume {
            Some((xmlid, start, end)) => self.resume_timers(wc, &xmlid, &start, &end).await,
            None => Ok(()),
        }
    }
}

/// Send a decided production write (work order, MO or both).
async fn write_intent(rpc: &mut Rpc, intent: &Intent) -> Result<(), DeliveryError> {
    // Odoo's own escape for correcting a finished work order (4.3).
    let context = intent.closed.then(|| json!({"allow_qty_change": true}));
    let closed_meanwhile = |e: RpcError| match &e {
        // Closed after it was read: plan again from a fresh read.
        RpcError::Odoo { message, .. } if message.contains("has been closed") => {
            DeliveryError::Retry(format!(
                "{e} (the work order was closed after it was read; it is read again)"
            ))
        }
        _ => classify(e),
    };
    if intent.target != ProductionTarget::Production {
        rpc.call(
            "mrp.workorder",
            "write",
            Some(&[intent.workorder]),
            json!({"vals": {"qty_produced": intent.value}}),
            context,
        )
        .await
        .map_err(closed_meanwhile)?;
    }
    if intent.target != ProductionTarget::Workorder {
        let mo = intent.production.ok_or_else(|| {
            DeliveryError::Reject("the delivery record names no manufacturing order".into())
        })?;
        rpc.call(
            "mrp.production",
            "write",
            Some(&[mo]),
            json!({"vals": {"qty_producing": intent.value}}),
            None,
        )
        .await
        .map_err(classify)?;
    }
    Ok(())
}

/// `load` reports data errors in its result, not as an exception.
fn load_outcome(result: &Value, what: &str) -> Result<(), DeliveryError> {
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
        "Odoo refused the {what}: {}",
        messages.join("; ")
    )))
}

/// The words of the refusal for a work center code Odoo does not know,
/// at the config line that names it.
pub(super) fn unknown_workcenter(places: &HashMap<String, String>, code: &str) -> String {
    let at = places
        .get(code)
        .map(|a| format!("{a}: "))
        .unwrap_or_default();
    format!(
        "{at}Odoo has no mrp.workcenter with code {code:?}: set the code on the work center in Odoo or fix `workcenter` in the tag map, then `plantgate dlq replay ID`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_is_done_only_with_ids_and_no_error_messages() {
        assert!(load_outcome(&json!({"ids": [7], "messages": []}), "time log").is_ok());
        // Odoo's data errors: the record is refused, with Odoo's words.
        let refused = json!({"ids": false, "messages": [
            {"type": "error", "message": "Missing required value for the field 'Work Center'", "record": 0}
        ]});
        match load_outcome(&refused, "time log") {
            Err(DeliveryError::Reject(m)) => assert!(m.contains("Missing required value"), "{m}"),
            other => panic!("{other:?}"),
        }
        // No ids and no message says nothing was written: try again.
        assert!(matches!(
            load_outcome(&json!({"ids": false, "messages": []}), "time log"),
            Err(DeliveryError::Retry(_))
        ));
        // A warning alone does not refuse the row.
        let warned = json!({"ids": [7], "messages": [{"type": "warning", "message": "w"}]});
        assert!(load_outcome(&warned, "time log").is_ok());
    }
}
