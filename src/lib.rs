//! plantgate: an edge gateway that reads machine signals and forwards the
//! business events they mean to Odoo, with store-and-forward.
//!
//! ```text
//!  sources/ ──Sample──▶ edge/ ──Event──▶ store/ ──▶ sinks/ ──▶ Odoo
//!  (Modbus,   bounded     (rules)  commit   (sled)  per-sink   (JSON-2 or
//!   OPC UA,   channel              + flush          cursor     JSON-RPC, or dry run)
//!   MQTT)
//!                          status/ ◀── every stage reports here
//! ```
//!
//! - [`config`]: the TOML tag map → a validated [`config::Config`].
//! - [`model`]: [`model::Sample`] and [`model::Event`].
//! - [`tags`]: tag names interned at config load; samples carry a [`tags::TagId`].
//! - [`sources`]: device readers, one task per connection.
//! - [`edge`]: rules that turn samples and clock ticks into events (pure, no I/O).
//! - [`records`]: events as store records (lane, key, payload), and reading older stores.
//! - [`store`]: the durable queue: lanes, group commit, dead letters, quotas; its module doc states the invariants.
//! - [`admin`]: dead-letter and queue commands, on a stopped or a running gateway.
//! - [`sinks`]: delivery in batches with acks, retries and set-aside: Odoo, and an MQTT broker (northbound; with selected tag values from the edge's tap, [`sinks::tap`]).
//! - [`pem`]: PEM certificates and keys read for TLS, the error naming the file.
//! - [`cert_check`]: a server-certificate check in place of the chain verifier's (pins, a broker's name).
//! - [`status`]: health, metrics and status over HTTP.
//! - [`pipeline`]: wires the stages and owns shutdown.
//! - [`shadow`]: `config try`, a candidate config's rules beside the current one's on live samples, dry run.
//! - [`systemd`]: sd_notify readiness, status and a watchdog that proves progress.
//! - [`supervise`]: the stages as named tasks; one that ends early is a failure.
//! - [`update`]: signed release and config bundles, the install layout, health-gated switches.
//! - [`demo`]: the embedded default (`plantgate demo`).
//! - [`heap`]: freed start-up memory returned to the system.

pub mod admin;
pub mod backoff;
pub mod cert_check;
pub mod config;
pub mod demo;
pub mod edge;
pub mod fault;
pub mod heap;
pub mod model;
pub mod pem;
pub mod pipeline;
pub mod records;
pub mod shadow;
pub mod sinks;
pub mod sources;
pub mod status;
pub mod store;
pub mod supervise;
pub mod systemd;
pub mod tags;
pub mod update;
