//! Lanes govern delivery: a stop reaches Odoo while production writes keep
//! failing, and after an outage critical events drain first within the
//! documented fair share (8 of every 10 delivery rounds, 1 for normal, 1 for
//! bulk), each round one batch of its lane.

mod support;

use plantgate::config;
use plantgate::demo::plc::{Registers, SimulatedPlc};
use plantgate::pipeline::Gateway;
use std::time::Duration;
use support::fake_odoo::{FakeOdoo, Fault};
use support::{eventually, get, metric, press_config, COUNTER, STATE};

/// A second production rule on the same counter, for another work center,
/// in the bulk lane: the backlog then holds all three lanes.
const BULK_RULE: &str = r#"
[[events]]
kind = "production"
name = "parts_bulk"
tag = "parts"
workcenter = "PRESS2"
lane = "bulk"
report_parts = 1
"#;

struct Rig {
    regs: Registers,
    odoo: FakeOdoo,
    gateway: Gateway,
    wo1: i64,
    wo2: i64,
    base: String,
    _plc: SimulatedPlc,
    _dir: tempfile::TempDir,
}

async fn rig(extra: &str) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let regs = Registers::default();
    regs.set_u32(COUNTER, 1000);
    regs.set_u16(STATE, 1);
    let plc = SimulatedPlc::start(([127, 0, 0, 1], 0).into(), regs.clone())
        .await
        .expect("plc");
    let odoo = FakeOdoo::start().await;
    let wc1 = odoo.add_workcenter("PRESS1", "Press 1");
    let wo1 = odoo.add_workorder(wc1, "WO/1", "progress");
    let wc2 = odoo.add_workcenter("PRESS2", "Press 2");
    let wo2 = odoo.add_workorder(wc2, "WO/2", "progress");
    let mut text = press_config(
        dir.path(),
        &plc.addr.to_string(),
        &odoo.url(),
        "127.0.0.1:0",
    );
    text.push_str(extra);
    let cfg = config::parse(&text, &dir.path().join("gw.toml")).expect("config");
    let gateway = Gateway::start(cfg).await.expect("start");
    let base = format!("http://{}", gateway.status_addr);
    wait_metric(&base, r#"plantgate_samples_total{source="press1"}"#, 4.0).await;
    Rig {
        regs,
        odoo,
        gateway,
        wo1,
        wo2,
        base,
        _plc: plc,
        _dir: dir,
    }
}

async fn wait_metric(base: &str, series: &str, at_least: f64) -> f64 {
    eventually(Duration::from_secs(30), series, || async move {
        let m = get(&format!("{base}/metrics")).await?;
        metric(&m, series).filter(|v| *v >= at_least)
    })
    .await
}

async fn committed(base: &str, kind: &str) -> f64 {
    let m = get(&format!("{base}/metrics")).await.unwrap_or_default();
    metric(&m, &format!("plantgate_events_total{{kind=\"{kind}\"}}")).unwrap_or(0.0)
}

/// One counter step, waited for until its events are committed.
async fn part(r: &Rig, n: u32) {
    let before = committed(&r.base, "production").await;
    r.regs.set_u32(COUNTER, r.regs.get_u32(COUNTER) + n);
    wait_metric(
        &r.base,
        r#"plantgate_events_total{kind="production"}"#,
        before + 1.0,
    )
    .await;
}

/// A stop held until announced, then ended, each waited for.
async fn stop(r: &Rig) {
    let started = committed(&r.base, "downtime_started").await;
    let ended = committed(&r.base, "downtime_ended").await;
    r.regs.set_u16(STATE, 2);
    wait_metric(
        &r.base,
        r#"plantgate_events_total{kind="downtime_started"}"#,
        started + 1.0,
    )
    .await;
    r.regs.set_u16(STATE, 1);
    wait_metric(
        &r.base,
        r#"plantgate_events_total{kind="downtime_ended"}"#,
        ended + 1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_overtakes_production_that_odoo_keeps_refusing() {
    let r = rig("").await;
    // Odoo's workers are saturated for work-order writes: HTTP 503.
    r.odoo.set_fault(Fault::Unavailable {
        model: "mrp.workorder".into(),
        method: "write".into(),
    });
    let mut total = 0;
    for n in [2, 1, 3] {
        part(&r, n).await;
        total += n;
    }
    eventually(Duration::from_secs(20), "503s answered", || {
        let calls = r.odoo.calls();
        async move { (calls.iter().filter(|c| c.outcome == "http:503").count() >= 2).then_some(()) }
    })
    .await;

    // The press stops while production keeps failing.
    r.regs.set_u16(STATE, 2);
    let open = eventually(
        Duration::from_secs(10), // the critical lane's target
        "the stop in Odoo while production still fails",
        || {
            let logs = r.odoo.productivity();
            async move { logs.first().cloned() }
        },
    )
    .await;
    assert_eq!(
        open.date_end, None,
        "announced while the press is still down"
    );
    r.regs.set_u16(STATE, 1);
    eventually(Duration::from_secs(10), "the stop closed", || {
        let logs = r.odoo.productivity();
        async move { logs.first().filter(|p| p.date_end.is_some()).map(|_| ()) }
    })
    .await;
    assert_eq!(
        r.odoo.workorder(r.wo1).map(|w| w.qty_produced),
        Some(0.0),
        "production was still refused meanwhile"
    );
    let m = get(&format!("{}/metrics", r.base)).await.expect("metrics");
    assert!(
        metric(&m, r#"plantgate_queue_depth{sink="odoo",lane="normal"}"#).is_some_and(|d| d >= 1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, r#"plantgate_queue_depth{sink="odoo",lane="critical"}"#),
        Some(0.0)
    );

    // The 503s end: the parts arrive, exactly.
    r.odoo.set_fault(Fault::None);
    eventually(Duration::from_secs(30), "all parts after the 503s", || {
        let q = r.odoo.workorder(r.wo1).map(|w| w.qty_produced);
        async move { (q == Some(f64::from(total))).then_some(()) }
    })
    .await;
    wait_metric(
        &r.base,
        r#"plantgate_events_delivered_total{sink="odoo"}"#,
        5.0,
    )
    .await;
    assert_eq!(
        r.odoo.workorder(r.wo1).map(|w| w.qty_produced),
        Some(f64::from(total))
    );
    assert_eq!(r.odoo.productivity().len(), 1);
    r.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_critical_drains_first_within_the_fair_share() {
    let r = rig(BULK_RULE).await;
    r.odoo.stop().await;
    let mut total = 0;
    for i in 0..12 {
        part(&r, 1).await;
        total += 1;
        if i % 2 == 0 {
            stop(&r).await;
        }
    }
    let m = get(&format!("{}/metrics", r.base)).await.expect("metrics");
    let depth = |lane: &str| {
        metric(
            &m,
            &format!("plantgate_queue_depth{{sink=\"odoo\",lane=\"{lane}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(
        (depth("critical"), depth("normal"), depth("bulk")),
        (12.0, 12.0, 12.0),
        "the backlog holds every lane: {m}"
    );
    let before = r.odoo.calls().len();
    r.odoo.resume().await;
    eventually(Duration::from_secs(60), "backlog drained", || {
        let (a, b) = (
            r.odoo.workorder(r.wo1).map(|w| w.qty_produced),
            r.odoo.workorder(r.wo2).map(|w| w.qty_produced),
        );
        let closed = r
            .odoo
            .productivity()
            .iter()
            .filter(|p| p.date_end.is_some())
            .count();
        async move {
            (a == Some(f64::from(total)) && b == Some(f64::from(total)) && closed == 6)
                .then_some(())
        }
    })
    .await;
    // The delivery order, from what Odoo received: C for a time log, N and
    // B for the two work orders' writes.
    let order: String = r.odoo.calls()[before..]
        .iter()
        .filter(|c| c.outcome == "ok")
        .filter_map(|c| match (c.model.as_deref(), c.model_method.as_deref()) {
            (Some("mrp.workcenter.productivity"), Some("load")) => Some('C'),
            (Some("mrp.workorder"), Some("write")) => {
                let wo = c
                    .args
                    .get(0)
                    .and_then(|a| a.get(0))
                    .and_then(|v| v.as_i64());
                Some(if wo == Some(r.wo1) { 'N' } else { 'B' })
            }
            _ => None,
        })
        .collect();
    // One round per lane: critical's 12 events (6 stops, start and end
    // each) are one load, each work order's 12 parts one write. Which lane
    // goes first depends on where the outage left the round of slots
    // (critical unless it was normal's or bulk's turn); none waits for
    // more than the other two rounds.
    let mut lanes: Vec<char> = order.chars().collect();
    lanes.sort_unstable();
    assert_eq!(
        lanes,
        ['B', 'C', 'N'],
        "one load for critical, one write per work order: {order}"
    );
    assert_eq!(r.odoo.productivity().len(), 6);
    r.gateway.stop().await;
}
