//! The store under faults a gateway meets in the field: files damaged on
//! disk, and a disk quota reached while Odoo is down.

mod support;

use plantgate::config;
use plantgate::pipeline::Gateway;
use std::fmt::Write as _;
use std::time::Duration;
use support::fake_odoo::FakeOdoo;
use support::{eventually, free_port, get, metric, press_config, spawn_gateway, COUNTER, STATE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_quarantined_and_the_gateway_runs_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("data/store");
    std::fs::create_dir_all(&store).expect("mkdir");
    let garbage: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(store.join("db"), &garbage).expect("garbage");
    std::fs::write(store.join("conf"), &garbage[..64]).expect("garbage");
    let peers = support::press::Peers::start(10).await;
    let status = format!("127.0.0.1:{}", free_port());
    let cfg = peers.write_config(dir.path(), &status);
    let support::press::Peers {
        regs,
        odoo,
        workorder: wo,
        plc: _plc,
    } = peers;
    let mut child = spawn_gateway(&cfg);
    let st: serde_json::Value = eventually(Duration::from_secs(30), "status page", || {
        let s = status.clone();
        async move { serde_json::from_str(&get(&format!("http://{s}/status")).await?).ok() }
    })
    .await;
    let q = &st["queue"]["quarantine"];
    let moved = q["moved_to"]
        .as_str()
        .expect("quarantine reported")
        .to_string();
    assert!(moved.contains("store.damaged-"), "{st}");
    assert!(!q["reason"].as_str().unwrap_or("").is_empty(), "{st}");
    assert_eq!(
        std::fs::read(std::path::Path::new(&moved).join("db")).expect("kept for inspection"),
        garbage
    );
    let m = get(&format!("http://{status}/metrics"))
        .await
        .expect("metrics");
    assert_eq!(metric(&m, "plantgate_store_quarantined"), Some(1.0));
    // The fresh store works: parts reach Odoo.
    eventually(Duration::from_secs(20), "baseline", || {
        let s = status.clone();
        async move {
            let m = get(&format!("http://{s}/metrics")).await?;
            metric(&m, r#"plantgate_samples_total{source="press1"}"#).filter(|n| *n >= 2.0)
        }
    })
    .await;
    regs.set_u32(COUNTER, 13);
    eventually(Duration::from_secs(20), "parts delivered", || {
        let q = odoo.workorder(wo).map(|w| w.qty_produced);
        async move { (q == Some(3.0)).then_some(()) }
    })
    .await;
    child.kill().expect("kill");
    child.wait().expect("reap");
}

/// Rules that multiply events per sample so a small quota fills quickly:
/// ten bulk production rules on the press counter, twenty downtime rules on
/// its state.
fn crowd(odoo: &FakeOdoo) -> String {
    let mut extra = String::new();
    for i in 0..10 {
        odoo.add_workcenter(&format!("B{i}"), &format!("Bulk {i}"));
        let _ = write!(
            extra,
            "\n[[events]]\nkind = \"production\"\nname = \"bulk{i}\"\ntag = \"parts\"\nworkcenter = \"B{i}\"\nlane = \"bulk\"\n"
        );
    }
    for i in 0..20 {
        odoo.add_workcenter(&format!("S{i}"), &format!("Station {i}"));
        let _ = write!(
            extra,
            "\n[[events]]\nkind = \"downtime\"\nname = \"stop{i}\"\ntag = \"state\"\nworkcenter = \"S{i}\"\nmin_duration = \"100ms\"\nrunning = [1]\n"
        );
    }
    extra
}

async fn metrics(base: &str) -> String {
    get(&format!("{base}/metrics")).await.unwrap_or_default()
}

fn m(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_evicts_bulk_first_and_holds_critical_with_back_pressure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let support::press::Peers {
        regs,
        odoo,
        workorder: wo,
        plc,
    } = support::press::Peers::start(0).await;
    let mut text = press_config(
        dir.path(),
        &plc.addr.to_string(),
        &odoo.url(),
        "127.0.0.1:0",
    );
    text.push_str(&crowd(&odoo));
    text.push_str("\n[store]\nmax_disk = \"64KiB\"\n");
    let cfg = config::parse(&text, &dir.path().join("gw.toml")).expect("config");
    let gateway = Gateway::start(cfg).await.expect("start");
    let base = format!("http://{}", gateway.status_addr);
    odoo.stop().await;

    // Production until bulk is being evicted.
    eventually(Duration::from_secs(60), "bulk evicted", || {
        regs.set_u32(COUNTER, regs.get_u32(COUNTER) + 1);
        let base = base.clone();
        async move {
            let t = metrics(&base).await;
            (m(
                &t,
                r#"plantgate_queue_evicted_total{lane="bulk",reason="quota"}"#,
            ) > 0.0)
                .then_some(())
        }
    })
    .await;
    let t = metrics(&base).await;
    assert_eq!(
        m(
            &t,
            r#"plantgate_queue_evicted_total{lane="normal",reason="quota"}"#
        ),
        0.0,
        "normal goes only once bulk is gone: {t}"
    );

    // Stops until the store is full of critical events: the sources are held.
    let mut stops = 0;
    eventually(Duration::from_secs(120), "back-pressure", || {
        let flip = if regs.get_u16(STATE) == 1 { 2 } else { 1 };
        if flip == 1 {
            stops += 1;
        }
        regs.set_u16(STATE, flip);
        let base = base.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(150)).await; // paces the press, not the check
            let t = metrics(&base).await;
            (m(&t, "plantgate_store_backpressure") == 1.0).then_some(())
        }
    })
    .await;
    regs.set_u16(STATE, 1);
    let t = metrics(&base).await;
    let critical_committed = m(&t, r#"plantgate_events_total{kind="downtime_started"}"#)
        + m(&t, r#"plantgate_events_total{kind="downtime_ended"}"#);
    assert!(critical_committed > 0.0);
    assert_eq!(
        m(&t, r#"plantgate_queue_depth{sink="odoo",lane="critical"}"#),
        critical_committed,
        "every committed critical event is still queued: {t}"
    );
    assert_eq!(
        m(
            &t,
            r#"plantgate_queue_evicted_total{lane="critical",reason="quota"}"#
        ),
        0.0
    );
    // Counts add up: every production event is queued or counted evicted.
    let production = m(&t, r#"plantgate_events_total{kind="production"}"#);
    let accounted = m(&t, r#"plantgate_queue_depth{sink="odoo",lane="normal"}"#)
        + m(&t, r#"plantgate_queue_depth{sink="odoo",lane="bulk"}"#)
        + m(
            &t,
            r#"plantgate_queue_evicted_total{lane="normal",reason="quota"}"#,
        )
        + m(
            &t,
            r#"plantgate_queue_evicted_total{lane="bulk",reason="quota"}"#,
        );
    assert_eq!(accounted, production, "{t}");
    assert_eq!(
        m(&t, r#"plantgate_queue_depth{sink="odoo",lane="bulk"}"#),
        0.0,
        "{t}"
    );

    // Odoo back: the critical backlog drains, the sources resume.
    odoo.resume().await;
    eventually(
        Duration::from_secs(120),
        "critical drained, sources resumed",
        || {
            let base = base.clone();
            async move {
                let t = metrics(&base).await;
                (m(&t, r#"plantgate_queue_depth{sink="odoo",lane="critical"}"#) == 0.0
                    && m(&t, "plantgate_store_backpressure") == 0.0)
                    .then_some(())
            }
        },
    )
    .await;
    let closed = odoo
        .productivity()
        .iter()
        .filter(|p| p.date_end.is_some())
        .count();
    assert!(
        closed >= 21,
        "each stop of 21 rules gives closed records: {closed}"
    );
    assert!(stops >= 1);
    let _ = wo;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_delivery_record_stops_the_sink_instead_of_writing_again() {
    use plantgate::model::{Event, EventBody, Millis, Production};
    use plantgate::records::{FormatZero, Lanes};
    use plantgate::store::Store;
    let dir = tempfile::tempdir().expect("tempdir");
    let support::press::Peers {
        regs: _,
        odoo,
        workorder: wo,
        plc,
    } = support::press::Peers::start(10).await;
    let text = press_config(
        dir.path(),
        &plc.addr.to_string(),
        &odoo.url(),
        "127.0.0.1:0",
    );
    let cfg = config::parse(&text, &dir.path().join("gw.toml")).expect("config");
    // A production event whose planned write was recorded, but the record
    // is no longer readable (written by something this release cannot read).
    {
        let lanes = Lanes::new(&cfg.events);
        let store = Store::open(
            &cfg.gateway.data_dir.join("store"),
            &["odoo"],
            &cfg.store,
            &FormatZero(&lanes),
        )
        .expect("store");
        let ev = Event {
            id: "gw1-parts-1780000000000".into(),
            rule: "parts".into(),
            time: Millis(1_780_000_000_000),
            body: EventBody::Production(Production {
                workcenter: "PRESS1".into(),
                quantity: 6,
                counter_from: 4,
                counter_to: 10,
            }),
        };
        store
            .commit(&[lanes.record(&ev).expect("record")], &[])
            .await
            .expect("commit");
        store
            .ledger_put("odoo", &ev.id, &[9, 1, 2, 3])
            .await
            .expect("ledger");
    }
    let gateway = Gateway::start(cfg).await.expect("start");
    let base = format!("http://{}", gateway.status_addr);
    let why = eventually(Duration::from_secs(30), "the sink halted", || {
        let base = base.clone();
        async move {
            let st: serde_json::Value =
                serde_json::from_str(&get(&format!("{base}/status")).await?).ok()?;
            st["sinks"]["odoo"]["halted"].as_str().map(str::to_string)
        }
    })
    .await;
    assert!(
        why.contains("cannot be read") && why.contains("gw1-parts-1780000000000"),
        "{why}"
    );
    assert!(
        !odoo
            .calls()
            .iter()
            .any(|c| c.model_method.as_deref() == Some("write")),
        "no write was planned again"
    );
    assert_eq!(odoo.workorder(wo).map(|w| w.qty_produced), Some(0.0));
    assert_eq!(gateway.store.depth("odoo"), 1, "the event stays queued");
    gateway.stop().await;
}
