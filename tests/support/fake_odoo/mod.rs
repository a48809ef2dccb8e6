//! A fake Odoo 16, 17, 18 or 19 ([`FakeOdoo::start_version`]) server for
//! plantgate's integration tests.
//!
//! It speaks Odoo's external JSON-RPC API (`POST /jsonrpc`) and, as 19,
//! JSON-2 (`POST /json/2/<model>/<method>`, `GET /web/version`), as
//! documented in shared/odoo-api.md: the same envelopes, exception names and
//! messages, HTTP statuses, `load`
//! upserts by external id, and the MRP checks a gateway can run into. Data lives
//! in memory and every RPC is recorded, so tests can assert on traffic and data.
//!
//! One module per concern, in the order a request meets them:
//! - [`server`]: HTTP (hyper), stop/resume; [`tls`]: HTTPS with a test
//!   PKI (rcgen), optionally requiring a client certificate; [`rpc`]: `/jsonrpc` envelopes
//!   and the `common`/`object` services; [`json2`]: `/json/2` (as 19);
//! - [`orm`]: what a model method does (search, read, create, write and
//!   the MRP write checks), [`load`]: `BaseModel.load`, [`domain`]:
//!   domains and ordering;
//! - [`db`]: the tables, defaults and computed fields (the WO/MO quantity
//!   link, `working_state`); [`schema`]: models and fields; [`errors`]:
//!   Odoo's exceptions; [`values`]: value and argument helpers;
//! - [`api`]: what tests call (seed records, faults, read back).
//!
//! Contract tests against shared/odoo-api.md: tests/fake_odoo_contract.rs.
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
pub struct ScrapRecord {
    pub id: i64,
    pub product_id: i64,
    pub scrap_qty: f64,
    /// draft or done.
    pub state: String,
    pub production_id: Option<i64>,
    pub workorder_id: Option<i64>,
    pub location_id: i64,
    pub origin: String,
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

/// A `maintenance.request` as a maintenance technician sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct MaintenanceRequest {
    pub id: i64,
    pub name: String,
    pub equipment_id: Option<i64>,
    pub maintenance_type: String,
    /// `maintenance.stage` xmlid name, e.g. `stage_0` (New Request).
    pub stage: Option<String>,
    pub description: String,
    pub xmlid: Option<String>,
}

/// A `quality.check` or `quality.alert`, or a chatter note.
#[derive(Clone, Debug, PartialEq)]
pub struct QualityRecord {
    pub id: i64,
    pub title: String,
    /// Checks: pass / fail / none; alerts: empty.
    pub quality_state: String,
    pub measure: f64,
    /// Alerts: the check they are about.
    pub check_id: Option<i64>,
    pub text: String,
    pub xmlid: Option<String>,
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
    /// The next `count` requests answer HTTP 429 (nothing is done), with
    /// `Retry-After: <retry_after>` when given, as a rate-limiting proxy
    /// in front of Odoo does (Odoo itself has no rate limit).
    TooManyRequests {
        retry_after: Option<String>,
        count: usize,
    },
    /// The next `count` requests answer HTTP 503 with `Retry-After:
    /// <retry_after>` (nothing is done), as a proxy in front of an Odoo
    /// whose workers are all busy does when it says when to come back.
    Overloaded {
        retry_after: String,
        count: usize,
    },
    /// The next `count` calls of `model`.`method` fail as Odoo does when a
    /// serialization failure outlasts its own 5 tries (nothing is written):
    /// `psycopg2.errors.SerializationFailure` "could not serialize access
    /// due to concurrent update" over JSON-RPC, HTTP 500 over JSON-2.
    SerializationFailure {
        model: String,
        method: String,
        count: usize,
    },
    /// Every request is handled at once (committed) but answered only after
    /// `delay`, as an overloaded Odoo whose reply comes too late.
    Slow {
        delay: Duration,
    },
}

mod api;
mod db;
mod domain;
mod errors;
mod json2;
mod load;
mod orm;
mod rpc;
mod schema;
mod server;
mod tls;
mod values;

use db::*;
use domain::*;
use errors::*;
use orm::*;
use schema::*;
use values::*;

use json2::*;
use rpc::*;
pub use server::FakeOdoo;
use server::*;
#[allow(unused_imports)] // only the TLS tests use it
pub use tls::TestPki;
