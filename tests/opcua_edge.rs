//! The edge's clock against a source that reports only changes: an OPC UA
//! server (async-opcua, in-process on loopback) whose subscription is
//! silent while a value stays put. A state node that goes to fault and
//! stays there must open its downtime record in the (fake) Odoo while it is
//! still at fault, and the return to running must close that same record;
//! parts counted before the counter goes quiet must reach the work order
//! when their period ends, without another sample.
#![cfg(feature = "opcua")]

#[path = "support/opcua_peer.rs"]
mod opcua_peer;
mod support;

use opcua::types::Variant;
use opcua_peer::{TestServer, NS_URI};
use plantgate::config;
use plantgate::pipeline::Gateway;
use std::path::Path;
use std::time::Duration;
use support::eventually;
use support::fake_odoo::FakeOdoo;

struct Rig {
    server: TestServer,
    odoo: FakeOdoo,
    gateway: Gateway,
    workorder: i64,
    _dir: tempfile::TempDir,
}

fn config(dir: &Path, endpoint: &str, odoo_url: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw1"
data_dir = "{data}"

[status]
listen = "127.0.0.1:0"

[[sources]]
name = "oven"
kind = "opcua"
endpoint = "{endpoint}"
publishing_interval = "50ms"
timeout = "2s"
backoff_max = "300ms"

[[tags]]
name = "state"
source = "oven"
node = "nsu={NS_URI};s=Press.State"

[[tags]]
name = "batches"
source = "oven"
node = "nsu={NS_URI};s=Press.Counter"

[[events]]
kind = "downtime"
name = "stops"
tag = "state"
workcenter = "OVEN1"
min_duration = "1s"
running = [1]
[[events.reason]]
state = 3
loss = "mrp.block_reason1"
description = "Burner fault"

[[events]]
kind = "production"
name = "batches"
tag = "batches"
workcenter = "OVEN1"
report_every = "1s"

{odoo}"#,
        data = dir.join("data").display(),
        odoo = support::odoo_section(dir, odoo_url),
    )
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(0, &dir.path().join("server"), false).await;
    let odoo = FakeOdoo::start().await;
    let wc = odoo.add_workcenter("OVEN1", "Oven 1");
    let workorder = odoo.add_workorder(wc, "WO/00011", "progress");
    let text = config(dir.path(), &server.url(), &odoo.url());
    let cfg = config::parse(&text, &dir.path().join("gw.toml")).expect("config");
    let gateway = Gateway::start(cfg).await.expect("start");
    // Both items' initial values arrived: the counter has its baseline.
    let t = gateway.telemetry.clone();
    eventually(Duration::from_secs(30), "initial values", || {
        let t = t.clone();
        async move {
            t.snapshot()
                .sources
                .get("oven")
                .filter(|s| s.samples >= 2)
                .map(|_| ())
        }
    })
    .await;
    Rig {
        server,
        odoo,
        gateway,
        workorder,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_that_stays_opens_its_record_while_down_and_the_run_closes_it() {
    let r = rig().await;
    let state = r.server.node("Press.State");
    let samples_before = r.gateway.telemetry.snapshot().sources["oven"].samples;
    r.server.set(&state, Variant::Int32(3));

    // The node stays at 3: no further data change is sent, yet the stop
    // reaches Odoo once it has lasted min_duration.
    let open = eventually(Duration::from_secs(30), "the open downtime record", || {
        let logs = r.odoo.productivity();
        async move { logs.first().cloned() }
    })
    .await;
    assert_eq!(open.date_end, None, "announced while still down: {open:?}");
    assert_eq!(open.loss_xmlid.as_deref(), Some("mrp.block_reason1"));
    assert_eq!(open.description, "Burner fault");
    let xmlid = open.xmlid.clone().expect("an external id");
    assert!(xmlid.starts_with("plantgate.gw1-stops-"), "{xmlid}");
    // The subscription reported one change (the fault) and nothing else:
    // the announcement came from the edge's clock, not from a sample.
    assert_eq!(
        r.gateway.telemetry.snapshot().sources["oven"].samples,
        samples_before + 1
    );

    r.server.set(&state, Variant::Int32(1));
    let closed = eventually(Duration::from_secs(30), "the record closed", || {
        let logs = r.odoo.productivity();
        async move { logs.iter().find(|p| p.date_end.is_some()).cloned() }
    })
    .await;
    let logs = r.odoo.productivity();
    assert_eq!(logs.len(), 1, "one stop, one record: {logs:?}");
    assert_eq!(closed.xmlid.as_deref(), Some(xmlid.as_str()));
    assert_eq!(closed.id, open.id);
    assert!(
        closed.date_end.as_deref() >= Some(closed.date_start.as_str()),
        "{closed:?}"
    );
    r.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_counted_before_the_counter_goes_quiet_reach_odoo_when_their_period_ends() {
    let r = rig().await;
    let counter = r.server.node("Press.Counter");
    // Each change spaced past the publishing interval, so none is merged.
    for n in 1..=4u32 {
        r.server.set(&counter, Variant::UInt32(n * 3));
        let t = r.gateway.telemetry.clone();
        let want = 2 + u64::from(n);
        eventually(Duration::from_secs(30), "the change sampled", || {
            let got = t.snapshot().sources["oven"].samples;
            async move { (got >= want).then_some(()) }
        })
        .await;
    }
    // The counter stays at 12 from here: the period ends by the clock.
    eventually(
        Duration::from_secs(30),
        "12 batches in the work order",
        || {
            let q = r.odoo.workorder(r.workorder).map(|w| w.qty_produced);
            async move { (q == Some(12.0)).then_some(()) }
        },
    )
    .await;
    // Nothing was sampled after the last change: the clock ended the period.
    assert_eq!(r.gateway.telemetry.snapshot().sources["oven"].samples, 6);
    r.gateway.stop().await;
}
