//! A fake Odoo 17 (or 19, [`FakeOdoo::start_version`]) server for
//! plantgate's integration tests.
//!
//! It speaks Odoo's external JSON-RPC API (`POST /jsonrpc`) and, as 19,
//! JSON-2 (`POST /json/2/<model>/<method>`, `GET /web/version`), as
//! documented in shared/odoo-api.md: the same envelopes, exception names and
//! messages, HTTP statuses, `load`
//! upserts by external id, and the MRP checks a gateway can run into. Data lives
//! in memory and every RPC is recorded, so tests can assert on traffic and data.
//!
//! Use it from a test binary with `#[path = "support/fake_odoo.rs"] mod fake_odoo;`.
#![allow(dead_code)]

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveDateTime, Utc};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Map, Value};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

pub const DB: &str = "plantdb";
pub const LOGIN: &str = "gateway";
pub const API_KEY: &str = "0123456789abcdef0123456789abcdef01234567"; // used as the password
pub const UID: i64 = 2;
/// A shop-floor user whose timers the gateway must respect.
pub const OPERATOR_UID: i64 = 3;

#[derive(Clone, Debug, PartialEq)]
pub struct WorkOrder {
    pub id: i64,
    pub name: String,
    pub workcenter_id: i64,
    pub production_id: i64,
    pub state: String,
    pub qty_produced: f64,
    /// The MO's `qty_producing` (a related field in Odoo).
    pub qty_producing: f64,
    pub date_start: Option<String>,
    pub date_finished: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Production {
    pub id: i64,
    pub name: String,
    pub state: String,
    pub product_qty: f64,
    pub qty_producing: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Productivity {
    pub id: i64,
    pub workcenter_id: i64,
    pub loss_id: i64,
    pub loss_xmlid: Option<String>,
    pub date_start: String,
    pub date_end: Option<String>,
    pub description: String,
    pub xmlid: Option<String>,
    pub workorder_id: Option<i64>,
    pub user_id: i64,
    /// availability / performance / quality / productive, from the loss.
    pub loss_type: String,
}

#[derive(Clone, Debug)]
pub struct Call {
    pub service: String,
    pub method: String,
    pub model: Option<String>,
    pub model_method: Option<String>,
    /// "ok", "error:<data.name>" or "http:<status>"
    pub outcome: String,
    /// The model method's positional arguments (object.execute_kw only).
    pub args: Value,
}

#[derive(Clone, Debug)]
pub enum Fault {
    None,
    /// Every request answers HTTP 502 with a small HTML body, as a reverse proxy in front of a dead Odoo does.
    BadGateway,
    /// Every object.execute_kw call of `model`.`method` answers HTTP 503
    /// (nothing is written), as Odoo behind a proxy does when its workers
    /// are saturated; other calls are served.
    Unavailable {
        model: String,
        method: String,
    },
    /// The next `count` object.execute_kw calls of `model`.`method` fail with an
    /// odoo.exceptions.ValidationError error envelope (nothing is written).
    ValidationError {
        model: String,
        method: String,
        count: usize,
    },
    /// The next `count` successful object.execute_kw calls of `model`.`method`
    /// are committed, but the caller gets HTTP 504 instead of the result, as
    /// when a reverse proxy gives up on a slow Odoo that then finishes.
    ReplyLost {
        model: String,
        method: String,
        count: usize,
    },
}

// ---------------------------------------------------------------------------
// Exceptions: what Odoo raises, independent of how it is put on the wire.
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct OdooError {
    name: &'static str,
    message: String,
    arguments: Vec<Value>,
    /// Set where Odoo would hit a SQL NOT NULL violation: `load` reports those as
    /// "Missing required value" messages instead of the ValidationError text.
    not_null: Option<&'static F>,
}

impl OdooError {
    fn new(name: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        OdooError {
            name,
            arguments: vec![json!(message)],
            message,
            not_null: None,
        }
    }
    fn user(m: impl Into<String>) -> Self {
        Self::new("odoo.exceptions.UserError", m)
    }
    fn validation(m: impl Into<String>) -> Self {
        Self::new("odoo.exceptions.ValidationError", m)
    }
    fn type_error(m: impl Into<String>) -> Self {
        Self::new("builtins.TypeError", m)
    }
    fn value_error(m: impl Into<String>) -> Self {
        Self::new("builtins.ValueError", m)
    }
    fn key_error(key: &str) -> Self {
        OdooError {
            arguments: vec![json!(key)],
            ..Self::new("builtins.KeyError", format!("'{key}'"))
        }
    }
    fn missing(model: &str, ids: &[i64]) -> Self {
        let msg = format!(
            "Record does not exist or has been deleted.\n(Record: {model}({}), User: {UID})",
            py_tuple(ids)
        );
        Self::new("odoo.exceptions.MissingError", msg)
    }
    fn invalid_field(model: &str, field: &str) -> Self {
        Self::value_error(format!("Invalid field '{field}' on model '{model}'"))
    }
    /// 16/17 `_as_validation_error` text for a NOT NULL violation.
    fn not_null(def: &ModelDef, f: &'static F) -> Self {
        let msg = format!(
            "The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n\
             - Delete: another model requires the record being deleted. If possible, archive it instead.\n\n\
             Model: {} ({})\nField: {} ({})\n",
            def.desc, def.name, f.label, f.name
        );
        OdooError {
            not_null: Some(f),
            ..Self::validation(msg)
        }
    }
    /// 16/17 `_as_validation_error` text for a foreign key violation.
    fn foreign_key(def: &ModelDef, f: &F) -> Self {
        Self::validation(format!(
            "The operation cannot be completed: another model requires the record being deleted. \
             If possible, archive it instead.\n\nModel: {} ({})\nConstraint: {}_{}_fkey\n",
            def.desc,
            def.name,
            def.name.replace('.', "_"),
            f.name
        ))
    }
    fn traceback(&self) -> String {
        format!(
            "Traceback (most recent call last):\n  File \"/usr/lib/python3/dist-packages/odoo/http.py\", \
             line 1807, in dispatch_rpc\n    return dispatch(method, params)\n  File \
             \"/usr/lib/python3/dist-packages/odoo/service/model.py\", line 156, in retrying\n    \
             result = func()\n{}: {}\n",
            self.name, self.message
        )
    }
}

/// Python's repr of the ids tuple inside a recordset repr: `(7,)`, `(7, 8)`.
fn py_tuple(ids: &[i64]) -> String {
    match ids {
        [one] => format!("{one},"),
        _ => ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn py_repr(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Schema: the models and fields the gateway touches, with Odoo 17's labels
// (they appear in error messages).
// ---------------------------------------------------------------------------

const USERS: &str = "res.users";
const IMD: &str = "ir.model.data";
const LOSS_TYPE: &str = "mrp.workcenter.productivity.loss.type";
const LOSS: &str = "mrp.workcenter.productivity.loss";
const WC: &str = "mrp.workcenter";
const WO: &str = "mrp.workorder";
const PROD: &str = "mrp.workcenter.productivity";
const MO: &str = "mrp.production";

type Sel = &'static [(&'static str, &'static str)];
const WO_STATES: Sel = &[
    ("pending", "Waiting for another WO"),
    ("waiting", "Waiting for components"),
    ("ready", "Ready"),
    ("progress", "In Progress"),
    ("done", "Finished"),
    ("cancel", "Cancelled"),
];
const MO_STATES: Sel = &[
    ("draft", "Draft"),
    ("confirmed", "Confirmed"),
    ("progress", "In Progress"),
    ("to_close", "To Close"),
    ("done", "Done"),
    ("cancel", "Cancelled"),
];
/// 19.0's work order states (PR #194841, saas-18.3).
const WO_STATES_19: Sel = &[
    ("blocked", "Blocked"),
    ("ready", "To Do"),
    ("progress", "In Progress"),
    ("done", "Finished"),
    ("cancel", "Cancelled"),
];
const LOSS_TYPES: Sel = &[
    ("availability", "Availability"),
    ("performance", "Performance"),
    ("quality", "Quality"),
    ("productive", "Productive"),
];
const WORKING_STATES: Sel = &[
    ("normal", "Normal"),
    ("blocked", "Blocked"),
    ("done", "In Progress"),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ty {
    Char,
    Text,
    Int,
    Float,
    Bool,
    Datetime,
    Sel(Sel),
    M2o(&'static str),
}

#[derive(Debug)]
struct F {
    name: &'static str,
    label: &'static str,
    ty: Ty,
    required: bool,
    computed: bool,
}

const fn f(name: &'static str, label: &'static str, ty: Ty) -> F {
    F {
        name,
        label,
        ty,
        required: false,
        computed: false,
    }
}
const fn req(name: &'static str, label: &'static str, ty: Ty) -> F {
    F {
        required: true,
        ..f(name, label, ty)
    }
}
const fn comp(name: &'static str, label: &'static str, ty: Ty) -> F {
    F {
        computed: true,
        ..f(name, label, ty)
    }
}

struct ModelDef {
    name: &'static str,
    desc: &'static str,
    rec_name: Option<&'static str>,
    order: &'static str,
    fields: &'static [F],
}

static ID_FIELD: F = comp("id", "ID", Ty::Int);
static F_QTY: F = f("qty_producing", "Currently Produced Quantity", Ty::Float);
static DISPLAY_NAME: F = comp("display_name", "Display Name", Ty::Char);

static MODELS: &[ModelDef] = &[
    ModelDef {
        name: USERS,
        desc: "User",
        rec_name: Some("name"),
        order: "name, login",
        fields: &[
            req("name", "Name", Ty::Char),
            req("login", "Login", Ty::Char),
            f("active", "Active", Ty::Bool),
        ],
    },
    ModelDef {
        name: IMD,
        desc: "Model Data",
        rec_name: Some("name"),
        order: "module, model, name",
        fields: &[
            req("name", "External Identifier", Ty::Char),
            req("module", "Module", Ty::Char),
            req("model", "Model Name", Ty::Char),
            f("res_id", "Record ID", Ty::Int),
            f("noupdate", "Non Updatable", Ty::Bool),
            comp("complete_name", "Complete ID", Ty::Char),
        ],
    },
    ModelDef {
        name: LOSS_TYPE,
        desc: "MRP Workorder productivity losses",
        rec_name: Some("loss_type"),
        order: "id",
        fields: &[req("loss_type", "Category", Ty::Sel(LOSS_TYPES))],
    },
    ModelDef {
        name: LOSS,
        desc: "Workcenter Productivity Losses",
        rec_name: Some("name"),
        order: "sequence, id",
        fields: &[
            req("name", "Blocking Reason", Ty::Char),
            f("sequence", "Sequence", Ty::Int),
            f("manual", "Is a Blocking Reason", Ty::Bool),
            f("loss_id", "Category", Ty::M2o(LOSS_TYPE)),
            comp("loss_type", "Effectiveness Category", Ty::Sel(LOSS_TYPES)),
        ],
    },
    ModelDef {
        name: WC,
        desc: "Work Center",
        rec_name: Some("name"),
        order: "sequence, id",
        fields: &[
            req("name", "Work Center", Ty::Char),
            f("code", "Code", Ty::Char),
            f("active", "Active", Ty::Bool),
            f("sequence", "Sequence", Ty::Int),
            comp(
                "working_state",
                "Workcenter Status",
                Ty::Sel(WORKING_STATES),
            ),
        ],
    },
    ModelDef {
        name: WO,
        desc: "Work Order",
        rec_name: Some("name"),
        order: "id",
        fields: &[
            req("name", "Work Order", Ty::Char),
            req("workcenter_id", "Work Center", Ty::M2o(WC)),
            req("production_id", "Manufacturing Order", Ty::M2o(MO)),
            f("state", "Status", Ty::Sel(WO_STATES)),
            f("qty_produced", "Quantity", Ty::Float),
            // Related to the MO's, with an inverse that writes it back (4.3).
            comp("qty_producing", "Currently Produced Quantity", Ty::Float),
            comp("production_state", "Production State", Ty::Sel(MO_STATES)),
            f("date_start", "Start", Ty::Datetime),
            f("date_finished", "End", Ty::Datetime),
        ],
    },
    ModelDef {
        name: MO,
        desc: "Manufacturing Order",
        rec_name: Some("name"),
        order: "id desc",
        fields: &[
            req("name", "Reference", Ty::Char),
            req("product_qty", "Quantity To Produce", Ty::Float),
            f("qty_producing", "Quantity Producing", Ty::Float),
            f("state", "State", Ty::Sel(MO_STATES)),
        ],
    },
    ModelDef {
        name: PROD,
        desc: "Workcenter Productivity Log",
        rec_name: None,
        order: "id desc",
        fields: &[
            req("workcenter_id", "Work Center", Ty::M2o(WC)),
            req("loss_id", "Loss Reason", Ty::M2o(LOSS)),
            comp("loss_type", "Effectiveness", Ty::Sel(LOSS_TYPES)),
            f("description", "Description", Ty::Text),
            req("date_start", "Start Date", Ty::Datetime),
            f("date_end", "End Date", Ty::Datetime),
            comp("duration", "Duration", Ty::Float),
            f("workorder_id", "Work Order", Ty::M2o(WO)),
            f("user_id", "User", Ty::M2o(USERS)),
        ],
    },
];

fn model_def(name: &str) -> Option<&'static ModelDef> {
    MODELS.iter().find(|m| m.name == name)
}

impl ModelDef {
    fn field(&'static self, name: &str) -> Option<&'static F> {
        match name {
            "id" => Some(&ID_FIELD),
            "display_name" => Some(&DISPLAY_NAME),
            _ => self.fields.iter().find(|f| f.name == name),
        }
    }
    fn stored(&'static self) -> impl Iterator<Item = &'static F> {
        self.fields.iter().filter(|f| !f.computed)
    }
}

// ---------------------------------------------------------------------------
// Small value helpers (Odoo's notion of empty is False, SQL's is NULL).
// ---------------------------------------------------------------------------

const DT_FMT: &str = "%Y-%m-%d %H:%M:%S";
const FALSE: Value = Value::Bool(false);

fn is_false(v: &Value) -> bool {
    matches!(v, Value::Null | Value::Bool(false))
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Odoo's `Datetime.to_datetime`: "YYYY-MM-DD HH:MM:SS" or a bare date.
fn parse_dt(s: &str) -> Option<NaiveDateTime> {
    match s.len() {
        10 => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()?
            .and_hms_opt(0, 0, 0),
        19 => NaiveDateTime::parse_from_str(s, DT_FMT).ok(),
        _ => None,
    }
}

fn now() -> String {
    Utc::now().naive_utc().format(DT_FMT).to_string()
}

/// Offset east of UTC, in seconds, of the context `tz` used by `load`. Only
/// fixed-offset zones can be honoured without a tz database.
fn input_tz(context: &Map<String, Value>) -> Result<i64, String> {
    let name = match context.get("tz") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Ok(0), // no tz: the user's tz, and our user has none, so UTC
    };
    const UTC: &[&str] = &[
        "",
        "UTC",
        "Etc/UTC",
        "GMT",
        "Etc/GMT",
        "UCT",
        "Etc/UCT",
        "Universal",
        "Zulu",
        "GMT0",
    ];
    if UTC.contains(&name) {
        return Ok(0);
    }
    // POSIX-style Etc/GMT+5 is five hours *behind* UTC.
    match name
        .strip_prefix("Etc/GMT")
        .and_then(|n| n.parse::<i64>().ok())
    {
        Some(n) if (-14..=12).contains(&n) => Ok(-n * 3600),
        _ => Err(format!(
            "FakeOdoo limitation: timezone '{name}' is not supported (use UTC or Etc/GMT±N)"
        )),
    }
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Ascending order with SQL NULLs last (booleans are never NULL here).
fn cmp_asc(a: &Value, b: &Value, ty: Ty) -> Ordering {
    let null = |v: &Value| ty != Ty::Bool && is_false(v);
    match (null(a), null(b)) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => match (a, b) {
            (Value::Number(x), Value::Number(y)) => x
                .as_f64()
                .partial_cmp(&y.as_f64())
                .unwrap_or(Ordering::Equal),
            (Value::String(x), Value::String(y)) => x.cmp(y),
            (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
            _ => Ordering::Equal,
        },
    }
}

/// Python-style binding of positional and keyword arguments to parameter names.
fn bind(
    fname: &str,
    params: &[&str],
    required: usize,
    args: &[Value],
    kwargs: &Map<String, Value>,
) -> Result<Vec<Option<Value>>, OdooError> {
    if args.len() > params.len() {
        let takes = if required == params.len() {
            format!("{}", required + 1)
        } else {
            format!("from {} to {}", required + 1, params.len() + 1)
        };
        return Err(OdooError::type_error(format!(
            "{fname}() takes {takes} positional arguments but {} were given",
            args.len() + 1
        )));
    }
    let mut out: Vec<Option<Value>> = args.iter().cloned().map(Some).collect();
    out.resize(params.len(), None);
    for (k, v) in kwargs {
        let i = params.iter().position(|p| p == k).ok_or_else(|| {
            OdooError::type_error(format!(
                "{fname}() got an unexpected keyword argument '{k}'"
            ))
        })?;
        if i < args.len() {
            return Err(OdooError::type_error(format!(
                "{fname}() got multiple values for argument '{k}'"
            )));
        }
        out[i] = Some(v.clone());
    }
    let missing: Vec<String> = (0..required)
        .filter(|&i| out[i].is_none())
        .map(|i| format!("'{}'", params[i]))
        .collect();
    if !missing.is_empty() {
        let names = match missing.as_slice() {
            [one] => one.clone(),
            [a, b] => format!("{a} and {b}"),
            [init @ .., last] => format!("{}, and {last}", init.join(", ")),
            [] => String::new(),
        };
        let s = if missing.len() == 1 { "" } else { "s" };
        return Err(OdooError::type_error(format!(
            "{fname}() missing {} required positional argument{s}: {names}",
            missing.len()
        )));
    }
    Ok(out)
}

/// An optional argument, with JSON null meaning "not given".
fn opt(v: &Option<Value>) -> Option<&Value> {
    v.as_ref().filter(|v| !v.is_null())
}

fn ids_of(v: &Value) -> Result<Vec<i64>, OdooError> {
    let bad = || {
        OdooError::type_error(format!(
            "record ids must be an integer or a list of integers, not {v}"
        ))
    };
    match v {
        Value::Number(n) => Ok(vec![n.as_i64().ok_or_else(bad)?]),
        Value::Array(a) => a.iter().map(|x| x.as_i64().ok_or_else(bad)).collect(),
        Value::Null | Value::Bool(false) => Ok(vec![]),
        _ => Err(bad()),
    }
}

fn usize_arg(name: &str, v: Option<&Value>) -> Result<Option<usize>, OdooError> {
    match v {
        None | Some(Value::Bool(false)) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
            OdooError::value_error(format!("{name} must be a non-negative integer, got {n}"))
        }),
        Some(other) => Err(OdooError::type_error(format!(
            "{name} must be an integer, got {other}"
        ))),
    }
}

// ---------------------------------------------------------------------------
// Storage: one table of JSON records per model. Stored values are the "cache"
// form: many2one as id or false, datetimes as naive UTC strings.
// ---------------------------------------------------------------------------

type Rec = Map<String, Value>;

/// The ORM-level context of one call.
struct Ctx<'a> {
    uid: i64,
    context: &'a Map<String, Value>,
}

impl Ctx<'_> {
    fn flag(&self, key: &str) -> bool {
        self.context.get(key).is_some_and(truthy)
    }
}

#[derive(Default)]
struct Db {
    /// Major version whose selections apply (0 or 17: 16–18).
    version: u8,
    tables: BTreeMap<String, BTreeMap<i64, Rec>>,
    /// Like PostgreSQL sequences, not rolled back with the data.
    seq: BTreeMap<String, i64>,
    /// Undo log of the current RPC: (model, id, previous record), so a failing
    /// call can be rolled back without copying the tables.
    journal: Vec<(String, i64, Option<Rec>)>,
}

fn rec(v: Value) -> Rec {
    match v {
        Value::Object(m) => m,
        _ => Rec::new(),
    }
}

impl Db {
    /// The data a fresh Odoo 17 database with mrp installed has (addons/mrp/data/mrp_data.xml).
    fn seeded(version: u8) -> Db {
        let mut db = Db {
            version,
            ..Db::default()
        };
        db.insert_raw(
            USERS,
            json!({"name": "OdooBot", "login": "__system__", "active": false}),
        );
        db.insert_raw(
            USERS,
            json!({"name": "Gateway", "login": LOGIN, "active": true}),
        );
        db.insert_raw(
            USERS,
            json!({"name": "Operator", "login": "operator", "active": true}),
        );
        let mut types = BTreeMap::new();
        for lt in ["availability", "performance", "quality", "productive"] {
            let id = db.insert_raw(LOSS_TYPE, json!({ "loss_type": lt }));
            db.add_xmlid("mrp", &format!("category_{lt}"), LOSS_TYPE, id);
            types.insert(lt, id);
        }
        let reasons = [
            (0, "Material Availability", "availability", true),
            (1, "Equipment Failure", "availability", true),
            (2, "Setup and Adjustments", "availability", true),
            (4, "Reduced Speed", "performance", false),
            (5, "Process Defect", "quality", true),
            (6, "Reduced Yield", "quality", true),
            (7, "Fully Productive Time", "productive", false),
        ];
        for (n, name, lt, manual) in reasons {
            let r = json!({"name": name, "sequence": n, "manual": manual, "loss_id": types[lt]});
            let id = db.insert_raw(LOSS, r);
            db.add_xmlid("mrp", &format!("block_reason{n}"), LOSS, id);
        }
        db
    }

    /// A selection as this version has it.
    fn selection(&self, opts: Sel) -> Sel {
        if self.version >= 19 && std::ptr::eq(opts, WO_STATES) {
            WO_STATES_19
        } else {
            opts
        }
    }

    fn rows(&self, model: &str) -> impl Iterator<Item = (i64, &Rec)> {
        self.tables
            .get(model)
            .into_iter()
            .flat_map(|t| t.iter().map(|(id, r)| (*id, r)))
    }
    fn rec(&self, model: &str, id: i64) -> Option<&Rec> {
        self.tables.get(model).and_then(|t| t.get(&id))
    }
    fn exists(&self, model: &str, id: i64) -> bool {
        self.rec(model, id).is_some()
    }
    /// Store (or with None, delete) a record; every change to the data goes here.
    fn put(&mut self, model: &str, id: i64, r: Option<Rec>) {
        let table = self.tables.entry(model.to_string()).or_default();
        let old = match r {
            Some(r) => table.insert(id, r),
            None => table.remove(&id),
        };
        self.journal.push((model.to_string(), id, old));
    }
    /// Undo every change made since the journal had `mark` entries.
    fn rollback(&mut self, mark: usize) {
        while self.journal.len() > mark {
            let Some((model, id, old)) = self.journal.pop() else {
                break;
            };
            let table = self.tables.entry(model).or_default();
            match old {
                Some(r) => table.insert(id, r),
                None => table.remove(&id),
            };
        }
    }
    fn next_id(&mut self, model: &str) -> i64 {
        let n = self.seq.entry(model.to_string()).or_insert(0);
        *n += 1;
        *n
    }
    /// Insert without any check, filling unset fields with defaults.
    fn insert_raw(&mut self, model: &str, vals: Value) -> i64 {
        let def = model_def(model).expect("known model");
        let mut r = self.defaults(def, UID);
        r.extend(rec(vals));
        let id = self.next_id(model);
        self.put(model, id, Some(r));
        id
    }
    fn add_xmlid(&mut self, module: &str, name: &str, model: &str, res_id: i64) {
        let r = json!({"module": module, "name": name, "model": model, "res_id": res_id});
        self.insert_raw(IMD, r);
    }
    /// (imd id, model, res_id) of `module.name`.
    fn find_xmlid(&self, module: &str, name: &str) -> Option<(i64, String, i64)> {
        self.rows(IMD)
            .find(|(_, r)| {
                r.get("module").and_then(Value::as_str) == Some(module)
                    && r.get("name").and_then(Value::as_str) == Some(name)
            })
            .map(|(id, r)| {
                (
                    id,
                    str_of(r.get("model").unwrap_or(&FALSE)),
                    r.get("res_id").and_then(Value::as_i64).unwrap_or(0),
                )
            })
    }
    fn xmlid_of(&self, model: &str, res_id: i64) -> Option<String> {
        self.rows(IMD)
            .find(|(_, r)| {
                r.get("model").and_then(Value::as_str) == Some(model)
                    && r.get("res_id").and_then(Value::as_i64) == Some(res_id)
            })
            .map(|(_, r)| {
                format!(
                    "{}.{}",
                    str_of(r.get("module").unwrap_or(&FALSE)),
                    str_of(r.get("name").unwrap_or(&FALSE))
                )
            })
    }

    fn defaults(&self, def: &'static ModelDef, uid: i64) -> Rec {
        let mut r: Rec = def
            .stored()
            .map(|f| {
                let v = match f.ty {
                    Ty::Int => json!(0),
                    Ty::Float => json!(0.0),
                    _ => FALSE,
                };
                (f.name.to_string(), v)
            })
            .collect();
        r.extend(rec(match def.name {
            USERS => json!({"active": true}),
            LOSS_TYPE => json!({"loss_type": "availability"}),
            LOSS => json!({"manual": true, "sequence": 1}),
            WC => json!({"active": true, "sequence": 1}),
            WO => json!({"state": if self.version >= 19 { "ready" } else { "pending" }}),
            MO => json!({"state": "confirmed", "product_qty": 1.0}),
            PROD => json!({"date_start": now(), "user_id": uid}),
            _ => json!({}),
        }));
        r
    }

    /// A field's value in cache form, computing the computed fields.
    fn get(&self, def: &'static ModelDef, id: i64, f: &F) -> Value {
        let via = |m2o: Value, model: &str, field: &str| match m2o.as_i64() {
            Some(target) => self.val(model, target, field),
            None => FALSE,
        };
        match (def.name, f.name) {
            (_, "id") => json!(id),
            (_, "display_name") => json!(self.display_name(def, id)),
            (IMD, "complete_name") => {
                json!(format!(
                    "{}.{}",
                    str_of(&self.val(IMD, id, "module")),
                    str_of(&self.val(IMD, id, "name"))
                ))
            }
            (WC, "working_state") => json!(self.working_state(id)),
            (LOSS, "loss_type") => via(self.val(LOSS, id, "loss_id"), LOSS_TYPE, "loss_type"),
            (PROD, "loss_type") => via(self.val(PROD, id, "loss_id"), LOSS, "loss_type"),
            (PROD, "duration") => json!(self.duration(id)),
            (WO, "qty_producing") => via(self.val(WO, id, "production_id"), MO, "qty_producing"),
            (WO, "production_state") => via(self.val(WO, id, "production_id"), MO, "state"),
            _ => self
                .rec(def.name, id)
                .and_then(|r| r.get(f.name))
                .cloned()
                .unwrap_or(FALSE),
        }
    }
    fn val(&self, model: &str, id: i64, field: &str) -> Value {
        match model_def(model).and_then(|d| d.field(field).map(|f| (d, f))) {
            Some((d, f)) => self.get(d, id, f),
            None => FALSE,
        }
    }
    fn display_name(&self, def: &'static ModelDef, id: i64) -> String {
        match def.rec_name.and_then(|n| def.field(n)) {
            Some(f) => match self.get(def, id, f) {
                Value::String(s) => s,
                v if is_false(&v) => String::new(),
                v => v.to_string(),
            },
            None => format!("{},{id}", def.name),
        }
    }
    /// The value `read` returns: many2one as `[id, "display name"]`.
    fn read_value(&self, def: &'static ModelDef, id: i64, f: &F, m2o_pairs: bool) -> Value {
        let v = self.get(def, id, f);
        if let (Ty::M2o(c), Some(target), true) = (f.ty, v.as_i64(), m2o_pairs) {
            if let Some(co) = model_def(c) {
                return json!([target, self.display_name(co, target)]);
            }
        }
        v
    }

    fn open_logs(&self, pred: impl Fn(&Rec) -> bool) -> Vec<i64> {
        self.rows(PROD)
            .filter(|(_, r)| is_false(r.get("date_end").unwrap_or(&FALSE)) && pred(r))
            .map(|(id, _)| id)
            .collect()
    }
    /// mrp.workcenter._compute_working_state: the newest open log decides.
    fn working_state(&self, wc: i64) -> &'static str {
        let open = self
            .open_logs(|r| r.get("workcenter_id").and_then(Value::as_i64) == Some(wc))
            .into_iter()
            .max();
        match open.map(|p| self.val(PROD, p, "loss_type")) {
            None => "normal",
            Some(lt) if matches!(lt.as_str(), Some("productive" | "performance")) => "done",
            Some(_) => "blocked",
        }
    }
    fn duration(&self, id: i64) -> f64 {
        let dt = |field| self.val(PROD, id, field).as_str().and_then(parse_dt);
        match (dt("date_start"), dt("date_end")) {
            (Some(s), Some(e)) => ((e - s).num_seconds() as f64 / 60.0 * 100.0).round() / 100.0,
            _ => 0.0,
        }
    }
    fn check_exist(&self, model: &str, ids: &[i64]) -> Result<(), OdooError> {
        let mut missing: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|&id| !self.exists(model, id))
            .collect();
        missing.dedup();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(OdooError::missing(model, &missing))
        }
    }
}

// ---------------------------------------------------------------------------
// Domains and ordering.
// ---------------------------------------------------------------------------

enum Dom {
    Const(bool),
    Leaf {
        field: &'static F,
        op: String,
        value: Value,
    },
    Not(Box<Dom>),
    And(Box<Dom>, Box<Dom>),
    Or(Box<Dom>, Box<Dom>),
}

const OPS: &[&str] = &["=", "!=", "in", "not in", "<", ">", "<=", ">="];

/// Prefix-notation domain, read from the end like `expression.normalize_domain`.
fn parse_domain(def: &'static ModelDef, domain: &Value) -> Result<Dom, OdooError> {
    let bad = || OdooError::value_error(format!("Invalid domain: {domain}"));
    let items = domain.as_array().ok_or_else(bad)?;
    // Evaluation recurses over the tree: keep hostile domains from blowing the stack.
    if items.len() > 1000 {
        return Err(OdooError::value_error(
            "FakeOdoo limitation: domains are limited to 1000 items",
        ));
    }
    let mut stack: Vec<Dom> = Vec::new();
    for item in items.iter().rev() {
        match item.as_str() {
            Some("!") => {
                let a = stack.pop().ok_or_else(bad)?;
                stack.push(Dom::Not(Box::new(a)));
            }
            Some(op @ ("&" | "|")) => {
                let a = Box::new(stack.pop().ok_or_else(bad)?);
                let b = Box::new(stack.pop().ok_or_else(bad)?);
                stack.push(if op == "&" {
                    Dom::And(a, b)
                } else {
                    Dom::Or(a, b)
                });
            }
            _ => stack.push(parse_leaf(def, item)?),
        }
    }
    Ok(stack
        .into_iter()
        .reduce(|a, b| Dom::And(Box::new(a), Box::new(b)))
        .unwrap_or(Dom::Const(true)))
}

fn parse_leaf(def: &'static ModelDef, leaf: &Value) -> Result<Dom, OdooError> {
    let bad = || OdooError::value_error(format!("Invalid leaf {leaf}"));
    let [left, op, right] = leaf.as_array().map(Vec::as_slice).ok_or_else(bad)? else {
        return Err(bad());
    };
    let mut op = op.as_str().ok_or_else(bad)?.to_lowercase();
    if let (Some(n @ (0 | 1)), "=", Some(1)) = (left.as_i64(), op.as_str(), right.as_i64()) {
        return Ok(Dom::Const(n == 1)); // TRUE_LEAF / FALSE_LEAF
    }
    if op == "<>" {
        op = "!=".into();
    }
    if !OPS.contains(&op.as_str()) {
        return Err(OdooError::value_error(format!(
            "Invalid operator '{op}' in leaf {leaf}"
        )));
    }
    // Like normalize_leaf: `=` with a list means `in`.
    if right.is_array() && (op == "=" || op == "!=") {
        op = if op == "=" {
            "in".into()
        } else {
            "not in".into()
        };
    }
    let name = left.as_str().ok_or_else(bad)?;
    let field = def.field(name).ok_or_else(|| {
        OdooError::value_error(format!("Invalid field {}.{name} in leaf {leaf}", def.name))
    })?;
    Ok(Dom::Leaf {
        field,
        op,
        value: right.clone(),
    })
}

impl Dom {
    fn mentions(&self, field: &str) -> bool {
        match self {
            Dom::Const(_) => false,
            Dom::Leaf { field: f, .. } => f.name == field,
            Dom::Not(a) => a.mentions(field),
            Dom::And(a, b) | Dom::Or(a, b) => a.mentions(field) || b.mentions(field),
        }
    }
}

fn compare(left: &Value, op: &str, right: &Value) -> bool {
    let eq = |r: &Value| {
        if is_false(r) {
            is_false(left)
        } else {
            json_eq(left, r)
        }
    };
    let list = || match right {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    match op {
        "=" => eq(right),
        "!=" => !eq(right), // Odoo includes NULLs in `!=` and `not in`
        "in" => list().iter().any(eq),
        "not in" => !list().iter().any(eq),
        _ => {
            if is_false(left) || is_false(right) {
                return false;
            }
            let o = match (left, right) {
                (Value::Number(_), Value::Number(_)) | (Value::String(_), Value::String(_)) => {
                    cmp_asc(left, right, Ty::Char)
                }
                _ => return false,
            };
            match op {
                "<" => o == Ordering::Less,
                ">" => o == Ordering::Greater,
                "<=" => o != Ordering::Greater,
                _ => o != Ordering::Less,
            }
        }
    }
}

type Order = Vec<(&'static F, bool)>;

fn parse_order(def: &'static ModelDef, order: &str) -> Result<Order, OdooError> {
    order
        .split(',')
        .map(|part| {
            let words: Vec<&str> = part.split_whitespace().collect();
            let (name, desc) = match words.as_slice() {
                [n] => (*n, false),
                [n, d] if d.eq_ignore_ascii_case("asc") => (*n, false),
                [n, d] if d.eq_ignore_ascii_case("desc") => (*n, true),
                _ => {
                    return Err(OdooError::user(format!(
                        "Invalid \"order\" specified ({}). A valid \"order\" specification is a comma-separated \
                         list of valid field names (optionally followed by asc/desc for the direction)",
                        part.trim()
                    )))
                }
            };
            def.field(name).map(|f| (f, desc)).ok_or_else(|| OdooError::invalid_field(def.name, name))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The model layer: `call` is what `execute_kw` runs, with no knowledge of the
// wire format, so a JSON-2 endpoint could share it.
// ---------------------------------------------------------------------------

/// One column of a `load` call.
enum Col {
    Xmlid,
    DbId,
    Field(&'static F),
    RefXmlid(&'static F),
    RefDbId(&'static F),
}

impl Db {
    fn call(
        &mut self,
        ctx: &Ctx,
        model: &str,
        method: &str,
        args: &[Value],
        kwargs: &Map<String, Value>,
    ) -> Result<Option<Value>, OdooError> {
        let def = model_def(model)
            .ok_or_else(|| OdooError::user(format!("Object {model} doesn't exist")))?;
        // Record methods take the ids as first positional argument (api.call_kw).
        let split = |fname: &str| -> Result<(Vec<i64>, &[Value]), OdooError> {
            match args.split_first() {
                Some((ids, rest)) => Ok((ids_of(ids)?, rest)),
                None => Err(OdooError::type_error(format!(
                    "{fname}() missing 1 required positional argument: 'ids'"
                ))),
            }
        };
        let done = |v: Value| -> Result<Option<Value>, OdooError> { Ok(Some(v)) };
        match (model, method) {
            (_, "search") => {
                let a = bind(
                    "search",
                    &["domain", "offset", "limit", "order"],
                    1,
                    args,
                    kwargs,
                )?;
                done(json!(self.search(
                    ctx,
                    def,
                    opt(&a[0]),
                    opt(&a[1]),
                    opt(&a[2]),
                    opt(&a[3])
                )?))
            }
            (_, "search_count") => {
                let a = bind("search_count", &["domain", "limit"], 1, args, kwargs)?;
                done(json!(self
                    .search(ctx, def, opt(&a[0]), None, opt(&a[1]), None)?
                    .len()))
            }
            (_, "search_read") => {
                let mut kw = kwargs.clone();
                let load = kw.remove("load");
                let a = bind(
                    "search_read",
                    &["domain", "fields", "offset", "limit", "order"],
                    0,
                    args,
                    &kw,
                )?;
                let ids = self.search(ctx, def, opt(&a[0]), opt(&a[2]), opt(&a[3]), opt(&a[4]))?;
                done(json!(self.read(def, &ids, opt(&a[1]), load.as_ref())?))
            }
            (_, "read") => {
                let (ids, rest) = split("read")?;
                let a = bind("read", &["fields", "load"], 0, rest, kwargs)?;
                done(json!(self.read(def, &ids, opt(&a[0]), a[1].as_ref())?))
            }
            (_, "create") => {
                let a = bind("create", &["vals_list"], 1, args, kwargs)?;
                done(self.create(ctx, def, a[0].as_ref().unwrap_or(&FALSE))?)
            }
            (_, "write") => {
                let (ids, rest) = split("write")?;
                let a = bind("write", &["vals"], 1, rest, kwargs)?;
                self.write(ctx, def, &ids, a[0].as_ref().unwrap_or(&FALSE))?;
                done(json!(true))
            }
            (_, "load") => {
                let a = bind("load", &["fields", "data"], 2, args, kwargs)?;
                done(self.load(
                    ctx,
                    def,
                    a[0].as_ref().unwrap_or(&FALSE),
                    a[1].as_ref().unwrap_or(&FALSE),
                )?)
            }
            _ => Err(OdooError::new(
                "builtins.AttributeError",
                format!("The method '{method}' does not exist on the model '{model}'"),
            )),
        }
    }

    fn search(
        &self,
        ctx: &Ctx,
        def: &'static ModelDef,
        domain: Option<&Value>,
        offset: Option<&Value>,
        limit: Option<&Value>,
        order: Option<&Value>,
    ) -> Result<Vec<i64>, OdooError> {
        let dom = match domain {
            Some(d) => parse_domain(def, d)?,
            None => Dom::Const(true),
        };
        let order = match order {
            None | Some(Value::Bool(false)) => def.order,
            Some(Value::String(s)) if s.trim().is_empty() => def.order,
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(OdooError::type_error(format!(
                    "order must be a string, got {other}"
                )))
            }
        };
        let order = parse_order(def, order)?;
        let offset = usize_arg("offset", offset)?.unwrap_or(0);
        // Odoo treats limit=0 like no limit.
        let limit = usize_arg("limit", limit)?.filter(|&l| l > 0);
        let limit = limit.unwrap_or(usize::MAX);
        // Archived records are hidden unless the domain asks about `active`.
        let active = def
            .field("active")
            .filter(|_| !dom.mentions("active") && ctx.context.get("active_test") != Some(&FALSE));
        let mut keyed: Vec<(Vec<Value>, i64)> = self
            .rows(def.name)
            .map(|(id, _)| id)
            .filter(|&id| {
                active.is_none_or(|a| truthy(&self.get(def, id, a))) && self.eval(def, id, &dom)
            })
            .map(|id| {
                (
                    order.iter().map(|(f, _)| self.get(def, id, f)).collect(),
                    id,
                )
            })
            .collect();
        keyed.sort_by(|(ka, ia), (kb, ib)| {
            order
                .iter()
                .zip(ka.iter().zip(kb))
                .map(|((f, desc), (a, b))| {
                    if *desc {
                        cmp_asc(a, b, f.ty).reverse()
                    } else {
                        cmp_asc(a, b, f.ty)
                    }
                })
                .find(|o| *o != Ordering::Equal)
                .unwrap_or_else(|| ia.cmp(ib))
        });
        Ok(keyed
            .into_iter()
            .map(|(_, id)| id)
            .skip(offset)
            .take(limit)
            .collect())
    }

    fn eval(&self, def: &'static ModelDef, id: i64, dom: &Dom) -> bool {
        match dom {
            Dom::Const(b) => *b,
            Dom::Not(a) => !self.eval(def, id, a),
            Dom::And(a, b) => self.eval(def, id, a) && self.eval(def, id, b),
            Dom::Or(a, b) => self.eval(def, id, a) || self.eval(def, id, b),
            Dom::Leaf { field, op, value } => compare(&self.get(def, id, field), op, value),
        }
    }

    fn read(
        &self,
        def: &'static ModelDef,
        ids: &[i64],
        fields: Option<&Value>,
        load: Option<&Value>,
    ) -> Result<Vec<Value>, OdooError> {
        let fields: Vec<&'static F> = match fields {
            None | Some(Value::Bool(false)) => vec![],
            Some(Value::Array(names)) => names
                .iter()
                .map(|n| {
                    let name = n.as_str().ok_or_else(|| {
                        OdooError::type_error(format!("field names must be strings, got {n}"))
                    })?;
                    def.field(name)
                        .ok_or_else(|| OdooError::invalid_field(def.name, name))
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(OdooError::type_error(format!(
                    "fields must be a list of field names, got {other}"
                )))
            }
        };
        let fields = if fields.is_empty() {
            def.fields.iter().chain([&DISPLAY_NAME]).collect()
        } else {
            fields
        };
        let pairs = load.is_none_or(|l| !is_false(l));
        self.check_exist(def.name, ids)?;
        Ok(ids
            .iter()
            .map(|&id| {
                let mut out = Map::new();
                out.insert("id".into(), json!(id));
                for f in &fields {
                    out.insert(f.name.into(), self.read_value(def, id, f, pairs));
                }
                Value::Object(out)
            })
            .collect())
    }

    /// Convert an RPC value to cache form (Field.convert_to_cache).
    fn coerce(&self, def: &ModelDef, f: &F, v: &Value) -> Result<Value, OdooError> {
        let wrong = || {
            OdooError::value_error(format!(
                "Wrong value for {}.{}: {}",
                def.name,
                f.name,
                py_repr(v)
            ))
        };
        if is_false(v) {
            return Ok(match f.ty {
                Ty::Int => json!(0),
                Ty::Float => json!(0.0),
                _ => FALSE,
            });
        }
        Ok(match f.ty {
            Ty::Char | Ty::Text => match v {
                Value::String(s) if s.is_empty() => FALSE,
                Value::String(s) => json!(s),
                Value::Number(n) => json!(n.to_string()),
                _ => return Err(wrong()),
            },
            Ty::Bool => json!(truthy(v)),
            Ty::Int => {
                match v {
                    Value::Number(n) => json!(n
                        .as_i64()
                        .or(n.as_f64().map(|x| x.trunc() as i64))
                        .ok_or_else(wrong)?),
                    Value::String(s) => {
                        json!(s.trim().parse::<i64>().map_err(|_| OdooError::value_error(
                            format!("invalid literal for int() with base 10: '{s}'")
                        ))?)
                    }
                    Value::Bool(true) => json!(1),
                    _ => return Err(wrong()),
                }
            }
            Ty::Float => {
                match v {
                    Value::Number(n) => json!(n.as_f64().ok_or_else(wrong)?),
                    Value::String(s) => {
                        json!(s.trim().parse::<f64>().map_err(|_| OdooError::value_error(
                            format!("could not convert string to float: '{s}'")
                        ))?)
                    }
                    Value::Bool(true) => json!(1.0),
                    _ => return Err(wrong()),
                }
            }
            Ty::Sel(opts) => match v.as_str() {
                Some(s) if self.selection(opts).iter().any(|(k, _)| *k == s) => json!(s),
                _ => return Err(wrong()),
            },
            Ty::Datetime => match v {
                Value::String(s) => match parse_dt(s) {
                    Some(dt) => json!(dt.format(DT_FMT).to_string()),
                    None => {
                        return Err(OdooError::value_error(format!(
                            "time data '{s}' does not match format '{DT_FMT}'"
                        )))
                    }
                },
                _ => return Err(wrong()),
            },
            Ty::M2o(_) => match v.as_i64() {
                Some(0) => FALSE,
                Some(id) => json!(id),
                None => return Err(wrong()),
            },
        })
    }

    /// Turn a `vals` dict into typed changes; computed fields are silently ignored.
    fn changes(
        &self,
        def: &'static ModelDef,
        vals: &Value,
    ) -> Result<Vec<(&'static F, Value)>, OdooError> {
        let vals = vals
            .as_object()
            .ok_or_else(|| OdooError::type_error(format!("vals must be a dict, got {vals}")))?;
        let mut out = Vec::new();
        for (k, v) in vals {
            let f = def
                .field(k)
                .ok_or_else(|| OdooError::invalid_field(def.name, k))?;
            if !f.computed {
                out.push((f, self.coerce(def, f, v)?));
            }
        }
        Ok(out)
    }

    /// What PostgreSQL enforces: NOT NULL and foreign keys.
    fn check_sql(&self, def: &'static ModelDef, r: &Rec) -> Result<(), OdooError> {
        for f in def.stored() {
            let v = r.get(f.name).unwrap_or(&FALSE);
            if f.required && f.ty != Ty::Bool && is_false(v) {
                return Err(OdooError::not_null(def, f));
            }
            if let (Ty::M2o(co), Some(target)) = (f.ty, v.as_i64()) {
                if !self.exists(co, target) {
                    return Err(OdooError::foreign_key(def, f));
                }
            }
        }
        Ok(())
    }

    fn create(
        &mut self,
        ctx: &Ctx,
        def: &'static ModelDef,
        vals: &Value,
    ) -> Result<Value, OdooError> {
        match vals {
            Value::Array(list) => Ok(json!(list
                .iter()
                .map(|v| self.create_one(ctx, def, v))
                .collect::<Result<Vec<_>, _>>()?)),
            _ => Ok(json!(self.create_one(ctx, def, vals)?)),
        }
    }

    fn create_one(
        &mut self,
        ctx: &Ctx,
        def: &'static ModelDef,
        vals: &Value,
    ) -> Result<i64, OdooError> {
        let changes = self.changes(def, vals)?;
        let mut r = self.defaults(def, ctx.uid);
        for (f, v) in &changes {
            r.insert(f.name.into(), v.clone());
        }
        self.check_sql(def, &r)?;
        let id = self.next_id(def.name);
        self.put(def.name, id, Some(r));
        self.check_constraints(def, id, &changes)?;
        Ok(id)
    }

    fn write(
        &mut self,
        ctx: &Ctx,
        def: &'static ModelDef,
        ids: &[i64],
        vals: &Value,
    ) -> Result<(), OdooError> {
        let changes = self.changes(def, vals)?;
        self.check_exist(def.name, ids)?;
        // The inverse of the WO's related qty_producing (`_set_qty_producing`).
        let producing = match (def.name, vals.get("qty_producing")) {
            (WO, Some(v)) => Some(self.coerce(def, &F_QTY, v)?),
            _ => None,
        };
        for &id in ids {
            if def.name == WO {
                self.check_wo_write(ctx, id, &changes)?;
            }
            let mut r = self.rec(def.name, id).cloned().unwrap_or_default();
            for (f, v) in &changes {
                r.insert(f.name.into(), v.clone());
            }
            self.check_sql(def, &r)?;
            self.put(def.name, id, Some(r));
            self.check_constraints(def, id, &changes)?;
            if def.name == WO {
                // mrp.workorder.write: qty_produced also sets the MO's qty_producing.
                let produced = changes
                    .iter()
                    .find(|(f, _)| f.name == "qty_produced")
                    .map(|(_, v)| v.clone());
                let to_mo = produced.or(producing.clone().filter(|v| v.as_f64() != Some(0.0)));
                if let (Some(q), Some(mo)) = (to_mo, self.val(WO, id, "production_id").as_i64()) {
                    let mut m = self.rec(MO, mo).cloned().unwrap_or_default();
                    m.insert("qty_producing".into(), q);
                    self.put(MO, mo, Some(m));
                }
            }
        }
        Ok(())
    }

    /// mrp.workorder.write's own checks (Odoo 17 wording).
    fn check_wo_write(
        &self,
        ctx: &Ctx,
        id: i64,
        changes: &[(&'static F, Value)],
    ) -> Result<(), OdooError> {
        let old = |field| self.val(WO, id, field);
        let state = str_of(&old("state"));
        let closed = matches!(state.as_str(), "progress" | "done" | "cancel");
        for (f, v) in changes {
            let msg = match f.name {
                "production_id" if !json_eq(v, &old("production_id")) => {
                    "You cannot link this work order to another manufacturing order."
                }
                "workcenter_id" if closed && !json_eq(v, &old("workcenter_id")) => {
                    "You cannot change the workcenter of a work order that is in progress or done."
                }
                "qty_produced" if v.as_f64().unwrap_or(0.0) < 0.0 => {
                    "The quantity produced must be positive."
                }
                "qty_produced" if state == "done" && !ctx.flag("allow_qty_change") => {
                    "This production order has been closed."
                }
                _ => continue,
            };
            return Err(OdooError::user(msg));
        }
        Ok(())
    }

    /// mrp.workcenter.productivity `_check_open_time_ids`, run after the values are stored.
    fn check_constraints(
        &self,
        def: &ModelDef,
        id: i64,
        changes: &[(&'static F, Value)],
    ) -> Result<(), OdooError> {
        if def.name == PROD && changes.iter().any(|(f, _)| f.name == "workorder_id") {
            if let Some(wo) = self.val(PROD, id, "workorder_id").as_i64() {
                let user = self.val(PROD, id, "user_id");
                if self
                    .open_logs(|r| is_wo(r, wo) && r.get("user_id") == Some(&user))
                    .len()
                    > 1
                {
                    let name = self.display_name(model_def(WO).expect("known model"), wo);
                    return Err(OdooError::validation(format!(
                        "The Workorder ({name}) cannot be started twice!"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn is_wo(r: &Rec, wo: i64) -> bool {
    r.get("workorder_id").and_then(Value::as_i64) == Some(wo)
}

// ---------------------------------------------------------------------------
// `load` (BaseModel.load + ir.fields.converter): data errors become messages,
// any error message rolls the whole call back, and the RPC still succeeds.
// ---------------------------------------------------------------------------

impl Db {
    fn load(
        &mut self,
        ctx: &Ctx,
        def: &'static ModelDef,
        fields: &Value,
        data: &Value,
    ) -> Result<Value, OdooError> {
        let names = fields
            .as_array()
            .and_then(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
            .ok_or_else(|| {
                OdooError::type_error(format!(
                    "load() fields must be a list of strings, got {fields}"
                ))
            })?;
        let cols = names
            .iter()
            .map(|n| parse_col(def, n))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = data.as_array().ok_or_else(|| {
            OdooError::type_error(format!("load() data must be a list of rows, got {data}"))
        })?;
        let module = ctx
            .context
            .get("module")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .unwrap_or("__import__");
        let tz = input_tz(ctx.context);
        let mark = self.journal.len();
        let (mut ids, mut messages) = (Vec::new(), Vec::new());
        for (i, row) in rows.iter().enumerate() {
            let cells = cells_of(row, cols.len(), i)?;
            let (mut vals, mut xmlid, mut dbid, mut ok) = (Map::new(), None, None, true);
            for (col, cell) in cols.iter().zip(&cells) {
                let cell = cell.as_str();
                let converted = match col {
                    Col::Xmlid => {
                        xmlid = Some(cell)
                            .filter(|c| !c.is_empty())
                            .map(|c| qualify(c, module));
                        continue;
                    }
                    Col::DbId if cell.is_empty() => continue,
                    Col::DbId => match cell.trim().parse::<i64>() {
                        Ok(n) => {
                            dbid = Some(n);
                            continue;
                        }
                        Err(_) => Err((
                            format!("Invalid database id '{cell}' for the field '.id'"),
                            None,
                        )),
                    },
                    Col::Field(f) => self
                        .parse_cell(f, cell, &tz)
                        .map(|v| (f, v))
                        .map_err(|m| (m, Some(*f))),
                    Col::RefXmlid(f) => self
                        .ref_xmlid(f, cell, module)
                        .map(|v| (f, v))
                        .map_err(|m| (m, Some(*f))),
                    Col::RefDbId(f) => self
                        .ref_dbid(f, cell)
                        .map(|v| (f, v))
                        .map_err(|m| (m, Some(*f))),
                };
                match converted {
                    Ok((f, v)) if !f.computed => {
                        vals.insert(f.name.to_string(), v);
                    }
                    Ok(_) => {}
                    Err((msg, f)) => {
                        messages.push(load_message(i, msg, f));
                        ok = false;
                    }
                }
            }
            if !ok {
                continue;
            }
            match self.upsert(ctx, def, xmlid, dbid, Value::Object(vals)) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    let (msg, f) = match e.not_null {
                        Some(f) => (
                            format!(
                                "Missing required value for the field '{}' ({})",
                                f.label, f.name
                            ),
                            Some(f),
                        ),
                        None if e.name.starts_with("odoo.exceptions.") => (e.message, None),
                        None => {
                            let class = e.name.trim_start_matches("builtins.");
                            (
                                format!(
                                    "Unknown error during import: <class '{class}'>: {}",
                                    e.message
                                ),
                                None,
                            )
                        }
                    };
                    messages.push(load_message(i, msg, f));
                }
            }
        }
        if !messages.is_empty() {
            self.rollback(mark);
            return Ok(json!({"ids": false, "messages": messages, "nextrow": 0}));
        }
        Ok(json!({"ids": ids, "messages": [], "nextrow": 0}))
    }

    /// `_load_records`: create or update by external id.
    fn upsert(
        &mut self,
        ctx: &Ctx,
        def: &'static ModelDef,
        xmlid: Option<String>,
        dbid: Option<i64>,
        vals: Value,
    ) -> Result<i64, OdooError> {
        let Some(xmlid) = xmlid else {
            return match dbid {
                Some(id) => self.write(ctx, def, &[id], &vals).map(|_| id),
                None => self.create_one(ctx, def, &vals),
            };
        };
        let (module, name) = xmlid.split_once('.').unwrap_or(("", &xmlid));
        if let Some((imd, model, res_id)) = self.find_xmlid(module, name) {
            if model != def.name {
                return Err(OdooError::validation(format!(
                    "For external id {xmlid} when trying to create/update a record of model {} \
                     found record of different model {model} ({res_id})",
                    def.name
                )));
            }
            if self.exists(def.name, res_id) {
                self.write(ctx, def, &[res_id], &vals)?;
                return Ok(res_id);
            }
            self.put(IMD, imd, None); // stale external id: drop it and create anew
        }
        let id = self.create_one(ctx, def, &vals)?;
        self.add_xmlid(module, name, def.name, id);
        Ok(id)
    }

    /// ir.fields.converter `_str_to_<type>`; errors are already-formatted messages.
    fn parse_cell(&self, f: &F, s: &str, tz: &Result<i64, String>) -> Result<Value, String> {
        let label = f.label;
        if s.is_empty() {
            return Ok(FALSE);
        }
        match f.ty {
            Ty::Char | Ty::Text => Ok(json!(s)),
            Ty::Bool => Ok(json!(!matches!(
                s.to_lowercase().as_str(),
                "0" | "false" | "no"
            ))),
            Ty::Int => {
                s.trim().parse::<i64>().map(Value::from).map_err(|_| {
                    format!("'{s}' does not seem to be an integer for field '{label}'")
                })
            }
            Ty::Float => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .map(Value::from)
                .ok_or_else(|| format!("'{s}' does not seem to be a number for field '{label}'")),
            Ty::Sel(opts) => opts
                .iter()
                .find(|(k, l)| k.eq_ignore_ascii_case(s) || l.eq_ignore_ascii_case(s))
                .map(|(k, _)| json!(k))
                .ok_or_else(|| format!("Value '{s}' not found in selection field '{label}'")),
            Ty::Datetime => {
                let local = parse_dt(s).ok_or_else(|| {
                    format!("'{s}' does not seem to be a valid datetime for field '{label}'")
                })?;
                let offset = tz.clone()?;
                Ok(json!((local - chrono::TimeDelta::seconds(offset))
                    .format(DT_FMT)
                    .to_string()))
            }
            Ty::M2o(co) => {
                // name_search(name=s, operator='='); work centers also match on code.
                let def = model_def(co).ok_or_else(|| {
                    format!("No matching record found for name '{s}' in field '{label}'")
                })?;
                let active = def.field("active");
                self.rows(co)
                    .map(|(id, _)| id)
                    .filter(|&id| active.is_none_or(|a| truthy(&self.get(def, id, a))))
                    .find(|&id| {
                        self.display_name(def, id) == s
                            || (co == WC && self.val(WC, id, "code") == json!(s))
                    })
                    .map(Value::from)
                    .ok_or_else(|| {
                        format!("No matching record found for name '{s}' in field '{label}'")
                    })
            }
        }
    }

    fn ref_xmlid(&self, f: &F, s: &str, module: &str) -> Result<Value, String> {
        let Ty::M2o(co) = f.ty else {
            return Err(format!("Field '{}' is not relational", f.label));
        };
        if s.is_empty() {
            return Ok(FALSE);
        }
        let full = qualify(s, module);
        let (m, n) = full.split_once('.').unwrap_or(("", &full));
        match self.find_xmlid(m, n) {
            Some((_, model, id)) if model == co && self.exists(co, id) => Ok(json!(id)),
            _ => Err(format!(
                "No matching record found for external id '{s}' in field '{}'",
                f.label
            )),
        }
    }

    fn ref_dbid(&self, f: &F, s: &str) -> Result<Value, String> {
        let Ty::M2o(co) = f.ty else {
            return Err(format!("Field '{}' is not relational", f.label));
        };
        if s.is_empty() {
            return Ok(FALSE);
        }
        let id: i64 = s
            .trim()
            .parse()
            .map_err(|_| format!("Invalid database id '{s}' for the field '{}'", f.label))?;
        if self.exists(co, id) {
            Ok(json!(id))
        } else {
            Err(format!(
                "No matching record found for database id '{s}' in field '{}'",
                f.label
            ))
        }
    }
}

fn parse_col(def: &'static ModelDef, name: &str) -> Result<Col, OdooError> {
    let (fname, sub) = match name.split_once('/') {
        Some((f, s)) => (f, Some(s)),
        None => (name, None),
    };
    match (fname, sub) {
        ("id", None) => return Ok(Col::Xmlid),
        (".id", None) => return Ok(Col::DbId),
        _ => {}
    }
    let f = def
        .field(fname)
        .ok_or_else(|| OdooError::key_error(fname))?;
    match (sub, f.ty) {
        (None, _) => Ok(Col::Field(f)),
        (Some("id"), Ty::M2o(_)) => Ok(Col::RefXmlid(f)),
        (Some(".id"), Ty::M2o(_)) => Ok(Col::RefDbId(f)),
        _ => Err(OdooError::key_error(name)),
    }
}

/// Bare external ids live in the import module (`__import__` unless context `module`).
fn qualify(xmlid: &str, module: &str) -> String {
    if xmlid.contains('.') {
        xmlid.to_string()
    } else {
        format!("{module}.{xmlid}")
    }
}

fn cells_of(row: &Value, n: usize, index: usize) -> Result<Vec<String>, OdooError> {
    let cells = row
        .as_array()
        .ok_or_else(|| OdooError::type_error(format!("load() row {index} is not a list: {row}")))?;
    if cells.len() != n {
        return Err(OdooError::value_error(format!(
            "load() row {index} has {} values for {n} fields",
            cells.len()
        )));
    }
    cells
        .iter()
        .map(|c| match c {
            Value::String(s) => Ok(s.clone()),
            Value::Null | Value::Bool(false) => Ok(String::new()),
            Value::Number(x) => Ok(x.to_string()),
            other => Err(OdooError::type_error(format!(
                "load() values must be strings, got {other}"
            ))),
        })
        .collect()
}

fn load_message(row: usize, message: String, field: Option<&F>) -> Value {
    let mut m = json!({"type": "error", "message": message, "record": row, "rows": {"from": row, "to": row}});
    if let Some(f) = field {
        m["field"] = json!(f.name);
        m["field_name"] = json!(f.label);
    }
    m
}

// ---------------------------------------------------------------------------
// Services: common and object, as `dispatch_rpc` routes them.
// ---------------------------------------------------------------------------

struct State {
    db: Db,
    fault: Fault,
    calls: Vec<Call>,
    /// Major version served: 17 (JSON-RPC only) or 19 (JSON-2 as well).
    version: u8,
}

/// An HTTP request as the handlers need it.
struct HttpReq<'a> {
    method: &'a str,
    path: &'a str,
    content_type: Option<&'a str>,
    authorization: Option<&'a str>,
    database: Option<&'a str>,
    body: &'a [u8],
}

/// Model methods (`@api.model`) that JSON-2 refuses ids for.
const MODEL_METHODS: &[&str] = &[
    "search",
    "search_read",
    "search_count",
    "create",
    "load",
    "fields_get",
    "name_search",
];

impl State {
    fn dispatch(
        &mut self,
        service: &str,
        method: &str,
        args: &[Value],
    ) -> Result<Option<Value>, OdooError> {
        let none = Map::new();
        match service {
            "common" => match method {
                "version" => Ok(Some(json!({
                    "server_version": format!("{}.0", self.version),
                    "server_version_info": [self.version, 0, 0, "final", 0, ""],
                    "server_serie": format!("{}.0", self.version),
                    "protocol_version": 1,
                }))),
                "login" | "authenticate" => {
                    let params: &[&str] = if method == "login" {
                        &["db", "login", "password"]
                    } else {
                        &["db", "login", "password", "user_agent_env"]
                    };
                    let a = bind(&format!("exp_{method}"), params, params.len(), args, &none)?;
                    let good = [DB, LOGIN, API_KEY]
                        .iter()
                        .zip(&a)
                        .all(|(want, got)| got.as_ref().and_then(Value::as_str) == Some(*want));
                    Ok(Some(if good { json!(UID) } else { FALSE }))
                }
                _ => Err(OdooError::new(
                    "builtins.Exception",
                    format!("Method not found: {method}"),
                )),
            },
            "object" => self.object(method, args),
            other => Err(OdooError::key_error(other)),
        }
    }

    /// odoo.service.model.dispatch: authenticate, then execute_kw.
    fn object(&mut self, method: &str, args: &[Value]) -> Result<Option<Value>, OdooError> {
        let none = Map::new();
        let head = bind(
            "dispatch",
            &["db", "uid", "password"],
            3,
            args.get(..3).unwrap_or(args),
            &none,
        )?;
        let uid = match &head[1] {
            Some(Value::Number(n)) => n.as_i64().or(n.as_f64().map(|x| x as i64)),
            Some(Value::String(s)) => Some(s.trim().parse::<i64>().map_err(|_| {
                OdooError::value_error(format!("invalid literal for int() with base 10: '{s}'"))
            })?),
            Some(Value::Bool(b)) => Some(*b as i64),
            other => {
                let got = other.as_ref().map(py_repr).unwrap_or_default();
                return Err(OdooError::type_error(format!(
                    "int() argument must be a string or a real number, not {got}"
                )));
            }
        };
        let authenticated = head[0].as_ref().and_then(Value::as_str) == Some(DB)
            && uid == Some(UID)
            && head[2].as_ref().and_then(Value::as_str) == Some(API_KEY);
        if !authenticated {
            return Err(OdooError::new(
                "odoo.exceptions.AccessDenied",
                "Access Denied",
            ));
        }
        let (obj, meth, margs, kw) = match method {
            "execute_kw" => {
                let p = ["db", "uid", "password", "obj", "method", "args", "kw"];
                let a = bind("execute_kw", &p, 6, args, &none)?;
                let margs = match opt(&a[5]) {
                    Some(Value::Array(v)) => v.clone(),
                    other => {
                        return Err(OdooError::type_error(format!(
                            "execute_kw() args must be a list, got {}",
                            other.unwrap_or(&Value::Null)
                        )))
                    }
                };
                let kw = match opt(&a[6]) {
                    None => Map::new(),
                    Some(Value::Object(m)) => m.clone(),
                    Some(other) => {
                        return Err(OdooError::type_error(format!(
                            "argument after ** must be a mapping, not {other}"
                        )))
                    }
                };
                (
                    a[3].clone().unwrap_or(FALSE),
                    a[4].clone().unwrap_or(FALSE),
                    margs,
                    kw,
                )
            }
            _ => {
                return Err(OdooError::new(
                    "builtins.NameError",
                    format!("Method not available {method}"),
                ))
            }
        };
        self.execute(&obj, &meth, &margs, kw)
    }

    fn execute(
        &mut self,
        obj: &Value,
        meth: &Value,
        args: &[Value],
        mut kw: Map<String, Value>,
    ) -> Result<Option<Value>, OdooError> {
        let meth = meth
            .as_str()
            .ok_or_else(|| OdooError::type_error("expected string or bytes-like object"))?;
        if meth.starts_with('_') || meth == "init" {
            return Err(OdooError::new(
                "odoo.exceptions.AccessError",
                format!("Private methods (such as {meth}) cannot be called remotely."),
            ));
        }
        let model = match obj {
            Value::String(s) if model_def(s).is_some() => s.as_str(),
            other => {
                return Err(OdooError::user(format!(
                    "Object {} doesn't exist",
                    other.as_str().map_or(other.to_string(), str::to_string)
                )))
            }
        };
        let context = match kw.remove("context") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(c)) => c,
            Some(other) => {
                return Err(OdooError::type_error(format!(
                    "context must be a dictionary, got {other}"
                )))
            }
        };
        if let Fault::ValidationError {
            model: m,
            method: mm,
            count,
        } = &mut self.fault
        {
            if *count > 0 && m.as_str() == model && mm.as_str() == meth {
                *count -= 1;
                return Err(OdooError::validation(format!(
                    "The operation cannot be completed: FakeOdoo injected a ValidationError on {model}.{meth}"
                )));
            }
        }
        // One transaction per RPC: roll the data back when the method fails.
        self.db.journal.clear();
        let ctx = Ctx {
            uid: UID,
            context: &context,
        };
        let result = self.db.call(&ctx, model, meth, args, &kw);
        if result.is_err() {
            self.db.rollback(0);
        }
        result
    }

    // -----------------------------------------------------------------------
    // The JSON-RPC envelope at /jsonrpc (JsonRPCDispatcher in odoo/http.py).
    // -----------------------------------------------------------------------

    fn handle_http(&mut self, req: &HttpReq) -> (u16, &'static str, String) {
        let (path, content_type, body) = (req.path, req.content_type, req.body);
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let json2 = self.version >= 19 && path.starts_with("/json/2");
        let mut call = if json2 {
            describe_json2(path, parsed.as_ref())
        } else {
            describe(parsed.as_ref())
        };
        let target = (call.model.clone(), call.model_method.clone());
        let mut finish = |state: &mut State, outcome: String| {
            call.outcome = outcome;
            state.calls.push(call.clone());
        };
        if let Fault::BadGateway = self.fault {
            finish(self, "http:502".into());
            return (502, HTML, BAD_GATEWAY_HTML.into());
        }
        let unavailable = matches!(&self.fault, Fault::Unavailable { model, method }
            if target.0.as_deref() == Some(model.as_str()) && target.1.as_deref() == Some(method.as_str()));
        if unavailable {
            finish(self, "http:503".into());
            let text = "The server is temporarily unable to service your request due to maintenance downtime or capacity problems. Please try again later.";
            return (503, HTML, werkzeug_page(503, "Service Unavailable", text));
        }
        if self.version >= 19 && path == "/web/version" && req.method == "GET" {
            let v = json!({"version_info": [self.version, 0, 0, "final", 0, ""], "version": format!("{}.0", self.version)});
            return (200, JSON, v.to_string());
        }
        if json2 {
            let (status, reply) = self.json2(req, parsed);
            let lost = matches!(&self.fault, Fault::ReplyLost { model, method, count }
                if *count > 0 && status == 200
                    && target.0.as_deref() == Some(model.as_str())
                    && target.1.as_deref() == Some(method.as_str()));
            if lost {
                if let Fault::ReplyLost { count, .. } = &mut self.fault {
                    *count -= 1;
                }
                finish(self, "http:504".into());
                return (504, HTML, GATEWAY_TIMEOUT_HTML.into());
            }
            let outcome = match (status, &reply) {
                (200, _) => "ok".to_string(),
                (_, Ok(v)) => format!("error:{}", v["name"].as_str().unwrap_or("?")),
                (s, Err(_)) => format!("http:{s}"),
            };
            finish(self, outcome);
            return match reply {
                Ok(v) => (status, JSON, v.to_string()),
                Err(html) => (status, HTML, html),
            };
        }
        if path != "/jsonrpc" {
            return (404, HTML, werkzeug_page(404, "Not Found", NOT_FOUND_TEXT));
        }
        let mime = content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json" && mime != "application/json-rpc" {
            finish(self, "http:400".into());
            let text =
                "Request inferred type is compatible with ['http'] but '/jsonrpc' is type='json'.";
            return (400, HTML, werkzeug_page(400, "Bad Request", text));
        }
        let Some(request) = parsed else {
            finish(self, "http:400".into());
            return (400, HTML, "Invalid JSON data".into());
        };
        let Some(request) = request.as_object() else {
            finish(self, "http:400".into());
            return (400, HTML, "Invalid JSON-RPC data".into());
        };
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let result = self.rpc(request.get("params"));
        if let Fault::ReplyLost {
            model,
            method,
            count,
        } = &mut self.fault
        {
            if *count > 0
                && result.is_ok()
                && target.0.as_deref() == Some(model.as_str())
                && target.1.as_deref() == Some(method.as_str())
            {
                *count -= 1;
                finish(self, "http:504".into());
                return (504, HTML, GATEWAY_TIMEOUT_HTML.into());
            }
        }
        let (outcome, reply) = match result {
            Ok(Some(v)) => (
                "ok".to_string(),
                json!({"jsonrpc": "2.0", "id": id, "result": v}),
            ),
            Ok(None) => ("ok".to_string(), json!({"jsonrpc": "2.0", "id": id})),
            Err(e) => (
                format!("error:{}", e.name),
                json!({"jsonrpc": "2.0", "id": id, "error": {
                    // 0 from 18.1 on (PR #183902).
                    "code": if self.version >= 19 { 0 } else { 200 },
                    "message": "Odoo Server Error",
                    "data": {
                        "name": e.name,
                        "debug": e.traceback(),
                        "message": e.message,
                        "arguments": e.arguments,
                        "context": {},
                    },
                }}),
            ),
        };
        finish(self, outcome);
        (200, JSON, reply.to_string())
    }

    /// `Json2Dispatcher` + `web_json_2_rpc` (section 2): the status and
    /// either a JSON body or an HTML page.
    fn json2(&mut self, req: &HttpReq, parsed: Option<Value>) -> (u16, Result<Value, String>) {
        let werk = |code: u16, name: &str, message: &str| {
            (
                code,
                Ok(
                    json!({"name": format!("werkzeug.exceptions.{name}"), "message": message,
                          "arguments": [message, code], "context": {}, "debug": ""}),
                ),
            )
        };
        let parts: Vec<&str> = req.path.trim_start_matches("/json/2").split('/').collect();
        let (model, method) = match (req.method, parts.as_slice()) {
            ("POST", ["", m, f]) if !m.is_empty() && !f.is_empty() => (*m, *f),
            _ => {
                return werk(
                    404,
                    "NotFound",
                    "Did you mean POST /json/2/<model>/<method>?",
                )
            }
        };
        let key = req.authorization.and_then(|a| {
            let (scheme, key) = a.split_once(char::is_whitespace)?;
            scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
        });
        match key {
            None => {
                return werk(
                    401,
                    "Unauthorized",
                    "User not authenticated, use an API Key with a Bearer Authorization header.",
                )
            }
            Some(k) if k != API_KEY => return werk(401, "Unauthorized", "Invalid apikey"),
            Some(_) => {}
        }
        if req.database.is_some_and(|d| d != DB) {
            return (404, Err(werkzeug_page(404, "Not Found", NOT_FOUND_TEXT)));
        }
        let mime = req
            .content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !req.body.is_empty() && mime != "application/json" {
            let text = "Request inferred type is compatible with ['http'] but '/json/2/<path:subpath>' is type='json2'.";
            return (415, Err(werkzeug_page(415, "Unsupported Media Type", text)));
        }
        let mut body = match (req.body.is_empty(), parsed) {
            (true, _) => Map::new(),
            (false, Some(Value::Object(m))) => m,
            (false, _) => {
                return werk(
                    400,
                    "BadRequest",
                    "could not parse the body as json: not an object",
                )
            }
        };
        if model_def(model).is_none() {
            return werk(
                404,
                "NotFound",
                &format!("the model '{model}' does not exist"),
            );
        }
        let ids = body.remove("ids").unwrap_or(json!([]));
        let has_ids = ids.as_array().is_some_and(|a| !a.is_empty());
        if MODEL_METHODS.contains(&method) && has_ids {
            return werk(
                422,
                "UnprocessableEntity",
                &format!("cannot call {model}.{method} with ids"),
            );
        }
        let args = if MODEL_METHODS.contains(&method) {
            vec![]
        } else {
            vec![ids]
        };
        match self.execute(&json!(model), &json!(method), &args, body) {
            Ok(v) => {
                let v = v.unwrap_or(Value::Null);
                // JSON-2 create always answers a list of ids.
                let v = if method == "create" && v.is_number() {
                    json!([v])
                } else {
                    v
                };
                (200, Ok(v))
            }
            Err(e) => {
                let status = match e.name {
                    "odoo.exceptions.UserError" | "odoo.exceptions.ValidationError" => 422,
                    "odoo.exceptions.AccessError" | "odoo.exceptions.AccessDenied" => 403,
                    "odoo.exceptions.MissingError" | "builtins.AttributeError" => 404,
                    "builtins.TypeError" => 422,
                    _ => 500,
                };
                let message = if e.name == "builtins.AttributeError" {
                    format!("The method '{model}.{method}' does not exist")
                } else {
                    e.message.clone()
                };
                (
                    status,
                    Ok(
                        json!({"name": e.name, "message": message, "arguments": e.arguments,
                                   "context": {}, "debug": e.traceback()}),
                    ),
                )
            }
        }
    }

    /// The `/jsonrpc` controller: `jsonrpc(service, method, args)`.
    fn rpc(&mut self, params: Option<&Value>) -> Result<Option<Value>, OdooError> {
        let empty = Map::new();
        let params = match params {
            None => &empty,
            Some(Value::Object(p)) => p,
            Some(other) => {
                return Err(OdooError::type_error(format!(
                    "params must be an object, got {other}"
                )))
            }
        };
        let mut kw = params.clone();
        // Odoo's route wrapper drops parameters the endpoint does not take.
        kw.retain(|k, _| matches!(k.as_str(), "service" | "method" | "args"));
        let a = bind("jsonrpc", &["service", "method", "args"], 3, &[], &kw)?;
        let service = match &a[0] {
            Some(Value::String(s)) => s.clone(),
            other => {
                return Err(OdooError::key_error(
                    &other.as_ref().map(py_repr).unwrap_or_default(),
                ))
            }
        };
        let method = a[1]
            .as_ref()
            .and_then(Value::as_str)
            .ok_or_else(|| OdooError::type_error("method must be a string"))?;
        let args = match &a[2] {
            Some(Value::Array(v)) => v.clone(),
            _ => return Err(OdooError::type_error("args must be a list")),
        };
        self.dispatch(&service, method, &args)
    }
}

/// A JSON-2 request for `calls()`: service "json2", the ids (if any) as the
/// first argument like JSON-RPC's record methods, then the named arguments.
fn describe_json2(path: &str, body: Option<&Value>) -> Call {
    let mut parts = path.trim_start_matches("/json/2/").splitn(2, '/');
    let model = parts.next().map(str::to_string);
    let method = parts.next().map(str::to_string);
    let ids = body.and_then(|b| b.get("ids")).cloned();
    let named = body.cloned().unwrap_or(Value::Null);
    Call {
        service: "json2".into(),
        method: method.clone().unwrap_or_default(),
        model,
        model_method: method,
        outcome: String::new(),
        args: match ids {
            Some(ids) => json!([ids, named]),
            None => json!([named]),
        },
    }
}

/// Best-effort description of a request for `calls()`, even a malformed one.
fn describe(req: Option<&Value>) -> Call {
    let params = req.and_then(|r| r.get("params"));
    let s = |k: &str| {
        params
            .and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (service, method) = (s("service"), s("method"));
    let arg = |i: usize| {
        params
            .and_then(|p| p.get("args"))
            .and_then(|a| a.get(i))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (model, model_method) = if service == "object" {
        (arg(3), arg(4))
    } else {
        (None, None)
    };
    let args = if service == "object" {
        params
            .and_then(|p| p.get("args"))
            .and_then(|a| a.get(5))
            .cloned()
            .unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    Call {
        service,
        method,
        model,
        model_method,
        outcome: String::new(),
        args,
    }
}

const HTML: &str = "text/html; charset=utf-8";
const BUG_TEXT: &str =
    "The server encountered an internal error and was unable to complete your request.";
const JSON: &str = "application/json; charset=utf-8";
const NOT_FOUND_TEXT: &str =
    "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.";
const BAD_GATEWAY_HTML: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
    <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

const GATEWAY_TIMEOUT_HTML: &str = "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n\
    <center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// werkzeug's HTTPException page, description escaped like markupsafe does.
fn werkzeug_page(code: u16, name: &str, text: &str) -> String {
    let esc = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&#39;")
        .replace('"', "&#34;");
    format!("<!doctype html>\n<html lang=en>\n<title>{code} {name}</title>\n<h1>{name}</h1>\n<p>{esc}</p>\n")
}

// ---------------------------------------------------------------------------
// HTTP server: hyper http1 with keep-alive; stop() drops the listener and every
// connection so clients see resets and then "connection refused".
// ---------------------------------------------------------------------------

const MAX_BODY: usize = 64 << 20;

struct Running {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Handle on a running fake; clones share the same server and data. Dropping
/// the last clone stops the server.
#[derive(Clone)]
pub struct FakeOdoo {
    state: Arc<Mutex<State>>,
    port: u16,
    server: Arc<tokio::sync::Mutex<Option<Running>>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn listen_on(port: u16) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?; // rebinding after stop() must not wait for TIME_WAIT
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(1024)
}

fn serve(state: Arc<Mutex<State>>, listener: TcpListener) -> Running {
    let (shutdown, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let state = state.clone();
                        conns.spawn(async move {
                            let svc = service_fn(move |req| {
                                let state = state.clone();
                                async move { Ok::<_, Infallible>(respond(state, req).await) }
                            });
                            let _ = http1::Builder::new()
                                .timer(TokioTimer::new())
                                .keep_alive(true)
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(listener);
        conns.shutdown().await;
    });
    Running { shutdown, task }
}

async fn respond(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().as_str().to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header(CONTENT_TYPE.as_str());
    let authorization = header("authorization");
    let database = header("x-odoo-database");
    let (status, ctype, body) = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Err(_) => (
            413,
            HTML,
            werkzeug_page(
                413,
                "Request Entity Too Large",
                "The data value transmitted exceeds the capacity limit.",
            ),
        ),
        Ok(body) => {
            let body = body.to_bytes();
            // Never take the test down: a bug in here becomes a 500, as in Odoo.
            let handled = catch_unwind(AssertUnwindSafe(|| {
                lock(&state).handle_http(&HttpReq {
                    method: &method,
                    path: &path,
                    content_type: content_type.as_deref(),
                    authorization: authorization.as_deref(),
                    database: database.as_deref(),
                    body: &body,
                })
            }));
            handled.unwrap_or_else(|_| {
                (
                    500,
                    HTML,
                    werkzeug_page(500, "Internal Server Error", BUG_TEXT),
                )
            })
        }
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp
}

// ---------------------------------------------------------------------------
// Public API for the tests.
// ---------------------------------------------------------------------------

impl FakeOdoo {
    /// Bind 127.0.0.1 on a free port and serve plain HTTP in a tokio task,
    /// as Odoo 17.
    pub async fn start() -> FakeOdoo {
        Self::start_version(17).await
    }

    /// As [`FakeOdoo::start`], as Odoo `version` (17 or 19: 19 serves
    /// JSON-2 and `/web/version`, and JSON-RPC errors carry code 0).
    pub async fn start_version(version: u8) -> FakeOdoo {
        let listener = listen_on(0).expect("FakeOdoo: cannot bind 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("FakeOdoo: no local address")
            .port();
        let state = Arc::new(Mutex::new(State {
            db: Db::seeded(version),
            fault: Fault::None,
            calls: Vec::new(),
            version,
        }));
        let running = serve(state.clone(), listener);
        FakeOdoo {
            state,
            port,
            server: Arc::new(tokio::sync::Mutex::new(Some(running))),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Close the listener and all open connections. Data is kept.
    pub async fn stop(&self) {
        if let Some(running) = self.server.lock().await.take() {
            let _ = running.shutdown.send(());
            let _ = running.task.await;
        }
    }

    /// Listen on the same port again (retrying for ~5 s), with the same data.
    pub async fn resume(&self) {
        let mut server = self.server.lock().await;
        if server.is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match listen_on(self.port) {
                Ok(l) => break l,
                Err(e) if Instant::now() >= deadline => {
                    panic!("FakeOdoo: cannot bind 127.0.0.1:{} again: {e}", self.port)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        *server = Some(serve(self.state.clone(), listener));
    }

    pub fn set_fault(&self, fault: Fault) {
        lock(&self.state).fault = fault;
    }

    pub fn add_workcenter(&self, code: &str, name: &str) -> i64 {
        let code = if code.is_empty() { FALSE } else { json!(code) };
        lock(&self.state)
            .db
            .insert_raw(WC, json!({"name": name, "code": code}))
    }

    /// A manufacturing order (state confirmed) of `product_qty` units.
    pub fn add_production(&self, name: &str, product_qty: f64) -> i64 {
        lock(&self.state)
            .db
            .insert_raw(MO, json!({"name": name, "product_qty": product_qty}))
    }

    /// A work order with its own MO ("MO/" + name, 100 units).
    /// state: pending/waiting/ready/progress/done/cancel (17),
    /// blocked/ready/progress/done/cancel (19)
    pub fn add_workorder(&self, workcenter_id: i64, name: &str, state: &str) -> i64 {
        let mo = self.add_production(&format!("MO/{name}"), 100.0);
        self.add_workorder_for(mo, workcenter_id, name, state)
    }

    /// A work order of an existing MO. Started now when its state is
    /// progress or done (finished now when done), as button_start/finish do.
    pub fn add_workorder_for(&self, mo: i64, workcenter_id: i64, name: &str, state: &str) -> i64 {
        let mut st = lock(&self.state);
        assert!(
            st.db.selection(WO_STATES).iter().any(|(s, _)| *s == state),
            "FakeOdoo: bad work order state {state:?} for {}",
            st.version
        );
        assert!(
            st.db.exists(WC, workcenter_id),
            "FakeOdoo: no work center {workcenter_id}"
        );
        assert!(
            st.db.exists(MO, mo),
            "FakeOdoo: no manufacturing order {mo}"
        );
        let started = matches!(state, "progress" | "done");
        let id = st.db.insert_raw(
            WO,
            json!({"name": name, "workcenter_id": workcenter_id, "production_id": mo, "state": state,
                   "date_start": if started { json!(now()) } else { FALSE },
                   "date_finished": if state == "done" { json!(now()) } else { FALSE }}),
        );
        if started {
            Self::set_raw(&mut st.db, MO, mo, "state", json!("progress"));
        }
        id
    }

    fn set_raw(db: &mut Db, model: &str, id: i64, field: &str, v: Value) {
        if let Some(r) = db.tables.get_mut(model).and_then(|t| t.get_mut(&id)) {
            r.insert(field.into(), v);
        }
    }

    /// Set a work order's state as Odoo's buttons would: starting sets
    /// `date_start`, finishing sets `date_finished` (when not yet set).
    pub fn set_workorder_state(&self, id: i64, state: &str) {
        let mut st = lock(&self.state);
        assert!(
            st.db.selection(WO_STATES).iter().any(|(s, _)| *s == state),
            "FakeOdoo: bad work order state {state:?} for {}",
            st.version
        );
        assert!(st.db.exists(WO, id), "FakeOdoo: no work order {id}");
        Self::set_raw(&mut st.db, WO, id, "state", json!(state));
        for (field, when) in [
            ("date_start", ["progress", "done"]),
            ("date_finished", ["done", "done"]),
        ] {
            if when.contains(&state) && is_false(&st.db.val(WO, id, field)) {
                Self::set_raw(&mut st.db, WO, id, field, json!(now()));
            }
        }
    }

    /// Set a work order's start and end ("YYYY-MM-DD HH:MM:SS" UTC or None).
    pub fn set_workorder_dates(&self, id: i64, start: Option<&str>, finished: Option<&str>) {
        let mut st = lock(&self.state);
        assert!(st.db.exists(WO, id), "FakeOdoo: no work order {id}");
        let v = |d: Option<&str>| d.map_or(FALSE, |d| json!(d));
        Self::set_raw(&mut st.db, WO, id, "date_start", v(start));
        Self::set_raw(&mut st.db, WO, id, "date_finished", v(finished));
    }

    /// What an operator typing a quantity on the MO form does.
    pub fn set_production_qty(&self, mo: i64, qty_producing: f64) {
        let mut st = lock(&self.state);
        assert!(
            st.db.exists(MO, mo),
            "FakeOdoo: no manufacturing order {mo}"
        );
        Self::set_raw(&mut st.db, MO, mo, "qty_producing", json!(qty_producing));
    }

    /// What an operator recording a quantity on the work order does (the
    /// same link as the API: the MO follows).
    pub fn set_workorder_qty(&self, wo: i64, qty_produced: f64) {
        let mut st = lock(&self.state);
        assert!(st.db.exists(WO, wo), "FakeOdoo: no work order {wo}");
        Self::set_raw(&mut st.db, WO, wo, "qty_produced", json!(qty_produced));
        if let Some(mo) = st.db.val(WO, wo, "production_id").as_i64() {
            Self::set_raw(&mut st.db, MO, mo, "qty_producing", json!(qty_produced));
        }
    }

    pub fn set_production_state(&self, mo: i64, state: &str) {
        assert!(
            MO_STATES.iter().any(|(s, _)| *s == state),
            "FakeOdoo: bad MO state {state:?}"
        );
        let mut st = lock(&self.state);
        assert!(
            st.db.exists(MO, mo),
            "FakeOdoo: no manufacturing order {mo}"
        );
        Self::set_raw(&mut st.db, MO, mo, "state", json!(state));
    }

    pub fn production(&self, id: i64) -> Option<Production> {
        let st = lock(&self.state);
        let db = &st.db;
        db.rec(MO, id)?;
        Some(Production {
            id,
            name: str_of(&db.val(MO, id, "name")),
            state: str_of(&db.val(MO, id, "state")),
            product_qty: db.val(MO, id, "product_qty").as_f64().unwrap_or(0.0),
            qty_producing: db.val(MO, id, "qty_producing").as_f64().unwrap_or(0.0),
        })
    }

    /// An operator's productive timer on a work order (open when `end` is
    /// None), as button_start creates it: loss "Fully Productive Time".
    pub fn add_timer(&self, wo: i64, start: &str, end: Option<&str>) -> i64 {
        let mut st = lock(&self.state);
        let wc = st.db.val(WO, wo, "workcenter_id");
        let (_, _, productive) = st
            .db
            .find_xmlid("mrp", "block_reason7")
            .expect("seeded loss");
        st.db.insert_raw(
            PROD,
            json!({"workcenter_id": wc, "workorder_id": wo, "loss_id": productive,
                   "date_start": start, "date_end": end.map_or(FALSE, |e| json!(e)),
                   "user_id": OPERATOR_UID, "description": "Time Tracking: Operator"}),
        )
    }

    /// mrp.workcenter.working_state: normal, blocked or done ("In Progress").
    pub fn working_state(&self, wc: i64) -> String {
        lock(&self.state).db.working_state(wc).to_string()
    }

    pub fn workorder(&self, id: i64) -> Option<WorkOrder> {
        let st = lock(&self.state);
        let db = &st.db;
        db.rec(WO, id)?;
        let opt = |v: Value| v.as_str().map(str::to_string);
        Some(WorkOrder {
            id,
            name: str_of(&db.val(WO, id, "name")),
            workcenter_id: db.val(WO, id, "workcenter_id").as_i64().unwrap_or(0),
            production_id: db.val(WO, id, "production_id").as_i64().unwrap_or(0),
            state: str_of(&db.val(WO, id, "state")),
            qty_produced: db.val(WO, id, "qty_produced").as_f64().unwrap_or(0.0),
            qty_producing: db.val(WO, id, "qty_producing").as_f64().unwrap_or(0.0),
            date_start: opt(db.val(WO, id, "date_start")),
            date_finished: opt(db.val(WO, id, "date_finished")),
        })
    }

    /// All mrp.workcenter.productivity records, by ascending id.
    pub fn productivity(&self) -> Vec<Productivity> {
        let st = lock(&self.state);
        let db = &st.db;
        db.rows(PROD)
            .map(|(id, _)| {
                let loss_id = db.val(PROD, id, "loss_id").as_i64().unwrap_or(0);
                Productivity {
                    id,
                    workcenter_id: db.val(PROD, id, "workcenter_id").as_i64().unwrap_or(0),
                    loss_id,
                    loss_xmlid: db.xmlid_of(LOSS, loss_id),
                    date_start: str_of(&db.val(PROD, id, "date_start")),
                    date_end: db.val(PROD, id, "date_end").as_str().map(str::to_string),
                    description: str_of(&db.val(PROD, id, "description")),
                    xmlid: db.xmlid_of(PROD, id),
                    workorder_id: db.val(PROD, id, "workorder_id").as_i64(),
                    user_id: db.val(PROD, id, "user_id").as_i64().unwrap_or(0),
                    loss_type: str_of(&db.val(PROD, id, "loss_type")),
                }
            })
            .collect()
    }

    /// Every request received on /jsonrpc (and every 502 answered), in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.state).calls.clone()
    }
}
