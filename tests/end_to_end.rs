//! The walking skeleton end to end: a tokio-modbus server plays the press,
//! the fake Odoo plays the ERP, and the gateway in between must deliver
//! exactly the parts counted and exactly one downtime record per stop.

mod support;

use plantgate::config;
use plantgate::demo::plc::{Registers, SimulatedPlc};
use plantgate::pipeline::Gateway;
use std::time::Duration;
use support::fake_odoo::{FakeOdoo, Fault};
use support::{eventually, get, metric, press_config, COUNTER, STATE};

struct Rig {
    plc: SimulatedPlc,
    odoo: FakeOdoo,
    gateway: Gateway,
    workorder: i64,
    _dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    rig_with(|text| text).await
}

/// A rig whose press config is first passed through `edit`.
async fn rig_with(edit: impl FnOnce(String) -> String) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = support::press::Peers::start(1000).await;
    let text = edit(peers.config(dir.path(), "127.0.0.1:0"));
    let cfg = config::parse(&text, &dir.path().join("gw.toml")).expect("config");
    let gateway = Gateway::start(cfg).await.expect("start");
    support::press::baseline_read(&gateway).await;
    let support::press::Peers {
        odoo,
        workorder,
        plc,
        ..
    } = peers;
    Rig {
        plc,
        odoo,
        gateway,
        workorder,
        _dir: dir,
    }
}

async fn produce(regs: &Registers, steps: &[u32]) -> u32 {
    for s in steps {
        regs.set_u32(COUNTER, regs.get_u32(COUNTER) + s);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    steps.iter().sum()
}

async fn wait_qty(odoo: &FakeOdoo, wo: i64, qty: f64, what: &str) {
    eventually(Duration::from_secs(20), what, || {
        let got = odoo.workorder(wo).map(|w| w.qty_produced);
        async move { (got == Some(qty)).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counted_parts_and_a_stop_reach_odoo_exactly_once() {
    let r = rig().await;
    let regs = &r.plc.registers;
    let steps = [1, 3, 1, 1, 7, 2, 1, 1, 4, 1, 1, 2, 5, 1, 1, 1, 3, 1, 2, 1];
    let total = produce(regs, &steps).await;
    wait_qty(
        &r.odoo,
        r.workorder,
        f64::from(total),
        "all parts in the work order",
    )
    .await;

    // A hydraulic fault held until Odoo has the open record (it reached
    // min_duration, 300 ms), then the press runs again.
    regs.set_u16(STATE, 2);
    eventually(Duration::from_secs(10), "the stop announced", || {
        let logs = r.odoo.productivity();
        async move { logs.first().filter(|p| p.date_end.is_none()).map(|_| ()) }
    })
    .await;
    regs.set_u16(STATE, 1);
    let log = eventually(Duration::from_secs(10), "a closed downtime record", || {
        let logs = r.odoo.productivity();
        async move { logs.iter().find(|p| p.date_end.is_some()).cloned() }
    })
    .await;
    let logs = r.odoo.productivity();
    assert_eq!(logs.len(), 1, "one stop, one record: {logs:?}");
    assert_eq!(log.loss_xmlid.as_deref(), Some("mrp.block_reason1"));
    assert_eq!(log.description, "Hydraulic fault");
    let start =
        chrono::NaiveDateTime::parse_from_str(&log.date_start, "%Y-%m-%d %H:%M:%S").expect("start");
    let end = chrono::NaiveDateTime::parse_from_str(
        log.date_end.as_deref().unwrap_or(""),
        "%Y-%m-%d %H:%M:%S",
    )
    .expect("end");
    let secs = (end - start).num_seconds();
    assert!(secs >= 0, "the end is not before the start: {secs} s");
    let loads = r
        .odoo
        .calls()
        .iter()
        .filter(|c| c.model_method.as_deref() == Some("load"))
        .count();
    assert_eq!(
        loads, 2,
        "opened when it reached min_duration, closed when it ended"
    );

    assert_eq!(
        r.odoo.workorder(r.workorder).map(|w| w.qty_produced),
        Some(f64::from(total))
    );

    // What the operator sees on the status endpoint.
    let base = format!("http://{}", r.gateway.status_addr);
    assert_eq!(
        get(&format!("{base}/healthz")).await.as_deref(),
        Some("ok\n")
    );
    let m = get(&format!("{base}/metrics")).await.expect("metrics");
    assert!(
        metric(&m, "plantgate_samples_total{source=\"press1\"}").is_some_and(|v| v > 10.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "plantgate_source_connected{source=\"press1\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, r#"plantgate_queue_depth{sink="odoo",lane="normal"}"#),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"plantgate_queue_oldest_age_seconds{sink="odoo",lane="normal"}"#
        ),
        Some(0.0)
    );
    let delivered =
        metric(&m, "plantgate_events_delivered_total{sink=\"odoo\"}").expect("delivered");
    assert!(delivered >= 3.0, "{m}");
    assert_eq!(
        metric(&m, "plantgate_delivery_errors_total{sink=\"odoo\"}"),
        Some(0.0)
    );
    let status: serde_json::Value =
        serde_json::from_str(&get(&format!("{base}/status")).await.expect("status")).expect("json");
    assert_eq!(status["sources"]["press1"]["connected"], true);
    // The read plan: parts (u32 at 100) and state (102) in one block.
    let unit = &status["sources"]["press1"]["plan"]["1"];
    assert_eq!(unit["requests_per_poll"], 1, "{status}");
    assert_eq!(unit["blocks"][0]["start"], 100, "{status}");
    assert_eq!(unit["blocks"][0]["split"], serde_json::Value::Null);
    assert_eq!(status["queue"]["sinks"]["odoo"]["depth"], 0);
    // `api = "auto"`: the fake is Odoo 17, which has no /web/version.
    assert_eq!(status["sinks"]["odoo"]["api"], "jsonrpc", "{status}");
    r.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_reply_is_lost_is_not_counted_twice() {
    let r = rig().await;
    let regs = &r.plc.registers;
    // Odoo commits each of the next three writes, but the proxy in front
    // answers 504: the gateway cannot know they landed and must retry them.
    r.odoo.set_fault(Fault::ReplyLost {
        model: "mrp.workorder".into(),
        method: "write".into(),
        count: 3,
    });
    let total = produce(regs, &[4, 1, 2, 6, 1]).await;
    wait_qty(&r.odoo, r.workorder, f64::from(total), "all parts, once").await;
    let lost = r
        .odoo
        .calls()
        .iter()
        .filter(|c| c.outcome == "http:504")
        .count();
    assert_eq!(lost, 3, "the fault fired");
    // A late duplicate would still be queued: once the lane is empty,
    // nothing is left to arrive.
    let base = format!("http://{}", r.gateway.status_addr);
    eventually(Duration::from_secs(20), "the normal lane empty", || {
        let base = base.clone();
        async move {
            let m = get(&format!("{base}/metrics")).await?;
            (metric(&m, r#"plantgate_queue_depth{sink="odoo",lane="normal"}"#)? == 0.0)
                .then_some(())
        }
    })
    .await;
    assert_eq!(
        r.odoo.workorder(r.workorder).map(|w| w.qty_produced),
        Some(f64::from(total))
    );
    r.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_are_reported_per_period_and_the_open_one_at_a_graceful_stop() {
    let r = rig_with(|t| t.replace("report_parts = 1", "report_parts = 10")).await;
    let regs = &r.plc.registers;
    // 25 parts, one at a time: two periods of 10, and 5 still open.
    let total = produce(regs, &[1; 25]).await;
    assert_eq!(total, 25);
    wait_qty(&r.odoo, r.workorder, 20.0, "two periods of 10 parts").await;
    let writes = |odoo: &FakeOdoo| {
        odoo.calls()
            .iter()
            .filter(|c| {
                c.model.as_deref() == Some("mrp.workorder")
                    && c.model_method.as_deref() == Some("write")
            })
            .count()
    };
    assert_eq!(writes(&r.odoo), 2, "one write per period, not per part");
    // Two more reads of the press, so the last parts are counted.
    let t = r.gateway.telemetry.clone();
    let read = move || t.snapshot().sources.get("press1").map_or(0, |s| s.samples);
    let now = read();
    eventually(Duration::from_secs(10), "two more polls", || {
        let n = read();
        async move { (n >= now + 4).then_some(()) }
    })
    .await;
    // The last 5 parts are counted in the open period; a graceful stop
    // reports it, and the next start delivers it.
    let Rig {
        plc,
        odoo,
        gateway,
        workorder,
        _dir,
    } = r;
    gateway.stop().await;
    let text = press_config(
        _dir.path(),
        &plc.addr.to_string(),
        &odoo.url(),
        "127.0.0.1:0",
    )
    .replace("report_parts = 1", "report_parts = 10");
    let cfg = config::parse(&text, &_dir.path().join("gw.toml")).expect("config");
    let gateway = Gateway::start(cfg).await.expect("restart");
    wait_qty(&odoo, workorder, 25.0, "the open period, after the stop").await;
    assert_eq!(writes(&odoo), 3);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_shorter_than_min_duration_is_not_downtime() {
    // min_duration far above the stop, so a loaded machine that reads the
    // state late cannot make the short stop look long.
    let r = rig_with(|t| t.replace("min_duration = \"300ms\"", "min_duration = \"20s\"")).await;
    let regs = &r.plc.registers;
    let t = r.gateway.telemetry.clone();
    let seen = |n: u64| {
        let t = t.clone();
        async move {
            t.snapshot()
                .sources
                .get("press1")
                .filter(|s| s.samples >= n)
                .map(|_| ())
        }
    };
    let now = t.snapshot().sources.get("press1").map_or(0, |s| s.samples);
    regs.set_u16(STATE, 2);
    // Two more reads of the press (the stop seen), then it runs again.
    eventually(Duration::from_secs(10), "the stop read", || seen(now + 4)).await;
    regs.set_u16(STATE, 1);
    // Parts after the stop: once they are in Odoo, the stop's end was
    // processed before them (same source, in order) and made no record.
    let total = produce(regs, &[3]).await;
    wait_qty(
        &r.odoo,
        r.workorder,
        f64::from(total),
        "parts after the stop",
    )
    .await;
    assert_eq!(
        r.odoo.productivity(),
        vec![],
        "a short stop is not downtime"
    );
    r.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_is_retried_and_a_refused_event_is_dead_lettered() {
    let r = rig().await;
    let regs = &r.plc.registers;
    let base = format!("http://{}", r.gateway.status_addr);

    // 1. Odoo down: connection refused. Events queue up, nothing is lost.
    r.odoo.stop().await;
    let mut total = produce(regs, &[2, 1, 3]).await;
    let m = eventually(Duration::from_secs(10), "queued events and errors", || {
        let base = base.clone();
        async move {
            let m = get(&format!("{base}/metrics")).await?;
            let errors = metric(&m, "plantgate_delivery_errors_total{sink=\"odoo\"}")?;
            let depth = metric(&m, r#"plantgate_queue_depth{sink="odoo",lane="normal"}"#)?;
            (errors >= 2.0 && depth >= 1.0).then_some(m)
        }
    })
    .await;
    assert!(
        metric(
            &m,
            r#"plantgate_queue_oldest_age_seconds{sink="odoo",lane="normal"}"#
        )
        .is_some_and(|a| a > 0.0),
        "{m}"
    );
    let status = get(&format!("{base}/status")).await.expect("status");
    assert!(status.contains("cannot reach Odoo"), "{status}");

    // 2. A proxy answers 502 while Odoo is down behind it: still retried.
    r.odoo.set_fault(Fault::BadGateway);
    r.odoo.resume().await;
    total += produce(regs, &[1, 1]).await;
    eventually(Duration::from_secs(10), "502s seen", || {
        let calls = r.odoo.calls();
        async move { calls.iter().any(|c| c.outcome == "http:502").then_some(()) }
    })
    .await;
    assert_eq!(
        r.odoo.workorder(r.workorder).map(|w| w.qty_produced),
        Some(0.0)
    );

    // 3. Odoo is back: everything arrives, in order, exactly once.
    r.odoo.set_fault(Fault::None);
    wait_qty(
        &r.odoo,
        r.workorder,
        f64::from(total),
        "backlog delivered after the outage",
    )
    .await;

    // 4. Odoo refuses one write with a ValidationError: that event is set
    //    aside and counted, and the ones behind it still flow.
    r.odoo.set_fault(Fault::ValidationError {
        model: "mrp.workorder".into(),
        method: "write".into(),
        count: 1,
    });
    let refused = produce(regs, &[5]).await;
    eventually(
        Duration::from_secs(10),
        "the refused event kept aside",
        || {
            let n = r.gateway.store.dead_letters(None).map_or(0, |d| d.len());
            async move { (n == 1).then_some(()) }
        },
    )
    .await;
    let aside = r.gateway.store.dead_letters(None).expect("dead letters");
    assert!(
        aside[0].reason.contains("ValidationError"),
        "{:?}",
        aside[0].reason
    );
    let kept = plantgate::model::Event::decode(&aside[0].payload)
        .ok()
        .map(|e| e.body);
    assert!(
        matches!(kept, Some(plantgate::model::EventBody::Production(ref p)) if p.quantity == u64::from(refused)),
        "{kept:?}"
    );
    total += produce(regs, &[2, 2]).await;
    wait_qty(
        &r.odoo,
        r.workorder,
        f64::from(total),
        "events behind the refused one",
    )
    .await;
    let m = get(&format!("{base}/metrics")).await.expect("metrics");
    assert_eq!(
        metric(&m, "plantgate_events_rejected_total{sink=\"odoo\"}"),
        Some(1.0)
    );
    assert_eq!(metric(&m, r#"plantgate_dlq_depth{sink="odoo"}"#), Some(1.0));
    assert_eq!(
        metric(&m, r#"plantgate_queue_depth{sink="odoo",lane="normal"}"#),
        Some(0.0)
    );
    // The refused parts are not silently in Odoo either: they wait aside.
    assert_eq!(
        r.odoo.workorder(r.workorder).map(|w| w.qty_produced),
        Some(f64::from(total))
    );
    r.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_are_added_to_what_an_operator_recorded_on_the_mo() {
    let r = rig().await;
    let mo = r.odoo.workorder(r.workorder).expect("wo").production_id;
    // Before the first part: the operator typed 120 on the MO.
    r.odoo.set_production_qty(mo, 120.0);
    let total = produce(&r.plc.registers, &[1, 2, 3]).await;
    let expected = 120.0 + f64::from(total);
    wait_qty(&r.odoo, r.workorder, expected, "parts on top of the 120").await;
    assert_eq!(
        r.odoo.production(mo).map(|m| m.qty_producing),
        Some(expected)
    );
    r.gateway.stop().await;
}
