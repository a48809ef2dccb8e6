//! Stores written by earlier releases open, deliver their backlog and resume
//! their rule states. Fixtures (tests/fixtures/store-v*/store) were written
//! by the release named in their folder and are committed as they are:
//! - store-v0: the release before the layout was versioned (format 0);
//! - store-v1: format 1, rule states version 1;
//! - store-v1-rules-v2: format 1, rule states version 2 (the rule's clock,
//!   the open aggregation period, the fault code), written by
//!   `write_the_fixture_of_this_release` below through the real edge.
//!
//! Each holds: a dead letter (4 parts refused), production of 5 parts
//! delivered, an announced stop of PRESS1 and 3 parts not yet delivered, the
//! counter baseline at 108 and the stop still open.

mod support;

use plantgate::config;
use plantgate::demo::plc::{Registers, SimulatedPlc};
use plantgate::model::{Event, EventBody};
use plantgate::pipeline::Gateway;
use std::path::Path;
use std::time::Duration;
use support::fake_odoo::FakeOdoo;
use support::{eventually, press_config, COUNTER, STATE};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

async fn opens_delivers_and_resumes(fixture: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture)
        .join("store");
    copy_dir(&src, &dir.path().join("data/store"));
    let regs = Registers::default();
    // 2 parts made while the gateway was away, the press running again.
    regs.set_u32(COUNTER, 110);
    regs.set_u16(STATE, 1);
    let plc = SimulatedPlc::start(([127, 0, 0, 1], 0).into(), regs)
        .await
        .expect("plc");
    let odoo = FakeOdoo::start().await;
    let wc = odoo.add_workcenter("PRESS1", "Press 1");
    let wo = odoo.add_workorder(wc, "WO/1", "progress");
    let text = press_config(
        dir.path(),
        &plc.addr.to_string(),
        &odoo.url(),
        "127.0.0.1:0",
    );
    let cfg = config::parse(&text, &dir.path().join("gw.toml")).expect("config");
    let gateway = Gateway::start(cfg).await.expect("the old store opens");

    // 3 queued parts, plus 2 counted from the resumed baseline (108 → 110):
    // a lost baseline would give 3, a reset one 110 or 0.
    eventually(
        Duration::from_secs(30),
        "backlog and resumed counter delivered",
        || {
            let q = odoo.workorder(wo).map(|w| w.qty_produced);
            async move { (q == Some(5.0)).then_some(()) }
        },
    )
    .await;
    // The queued stop opened its record; the resumed state closed the same one.
    let log = eventually(Duration::from_secs(30), "the stop closed", || {
        let logs = odoo.productivity();
        async move { logs.iter().find(|p| p.date_end.is_some()).cloned() }
    })
    .await;
    assert_eq!(odoo.productivity().len(), 1, "{:?}", odoo.productivity());
    assert_eq!(
        log.xmlid.as_deref(),
        Some("plantgate.gw1-stops-1780000002000")
    );
    assert_eq!(log.date_start, "2026-05-28 20:26:42");
    assert_eq!(log.loss_xmlid.as_deref(), Some("mrp.block_reason1"));
    // The dead letter is still there, readable, with its reason.
    let dead = gateway.store.dead_letters(None).expect("dead letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].reason.contains("no mrp.workcenter"), "{dead:?}");
    let ev = Event::decode(&dead[0].payload).expect("dead letter readable");
    assert!(
        matches!(ev.body, EventBody::Production(ref p) if p.quantity == 4),
        "{ev:?}"
    );
    assert_eq!(gateway.store.depth("odoo"), 0);
    gateway.stop().await;
    assert_eq!(odoo.workorder(wo).map(|w| w.qty_produced), Some(5.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_0_store_is_converted_and_delivered() {
    opens_delivers_and_resumes("store-v0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_store_opens_and_delivers() {
    opens_delivers_and_resumes("store-v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_store_with_version_2_rule_states_opens_and_delivers() {
    opens_delivers_and_resumes("store-v1-rules-v2").await;
}

/// Writes the fixture content described at the top with this release's
/// encodings, by feeding the real edge samples at fixed times and the store
/// what the pipeline would commit. Run once per release that changes what
/// is stored, then commit the folder:
/// `PLANTGATE_WRITE_FIXTURE=store-vN cargo test --test store_upgrade -- --ignored`
#[tokio::test]
#[ignore]
async fn write_the_fixture_of_this_release() {
    use plantgate::edge::{Edge, Mono, Now, Output};
    use plantgate::model::{Millis, Quality, Sample, Value};
    use plantgate::records::Lanes;
    use plantgate::store::{migrate::NoUpgrade, Attempts, Lane, Store};
    use std::collections::HashMap;

    let name = std::env::var("PLANTGATE_WRITE_FIXTURE").expect("PLANTGATE_WRITE_FIXTURE=<folder>");
    let out = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .join("store");
    assert!(
        !out.exists(),
        "{} exists: fixtures are never rewritten",
        out.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let text = press_config(
        dir.path(),
        "127.0.0.1:1",
        "http://127.0.0.1:1",
        "127.0.0.1:0",
    );
    let cfg = config::parse(&text, &dir.path().join("gw.toml")).expect("config");
    let lanes = Lanes::new(&cfg.events);
    let store = Store::open(&out, &["odoo"], &cfg.store, &NoUpgrade).expect("store");
    let mut edge = Edge::new(&cfg.gateway.id, &cfg.tag_table, &cfg.events, HashMap::new());
    const T0: i64 = 1_780_000_000_000;
    let now = |ms: i64| Now {
        wall: Millis(T0 + ms),
        mono: Mono((10_000 + ms) as u64),
    };
    let sample = |tag: &str, v: i64, ms: i64| Sample {
        tag: cfg.tag_table.id(tag).expect("configured"),
        unconfigured: None,
        value: Value::Int(v),
        quality: Quality::Good,
        time: Millis(T0 + ms),
        server_time: None,
        receipt: None,
    };
    // Feed samples (and a tick) at `ms`, commit what comes out as the pipeline does.
    let mut step = |samples: Vec<Sample>, ms: i64| {
        let mut o = Output::default();
        for s in &samples {
            edge.apply(s, now(ms), &mut o);
        }
        edge.tick(now(ms), &mut o);
        let records: Vec<_> = o
            .events
            .iter()
            .map(|e| lanes.record(e).expect("record"))
            .collect();
        (records, o.encoded_states().expect("states"))
    };
    let (r, st) = step(
        vec![sample("parts", 96, -1000), sample("state", 1, -1000)],
        -1000,
    );
    store.commit(&r, &st).await.expect("baseline");
    // 4 parts that Odoo refuses for good: a dead letter.
    let (r, st) = step(vec![sample("parts", 100, 0)], 0);
    assert_eq!(r.len(), 1);
    store.commit(&r, &st).await.expect("commit");
    let q = store
        .scan("odoo", Lane::Normal, 0, 1)
        .expect("scan")
        .remove(0);
    let at = Millis(T0 + 100);
    let attempts = Attempts {
        count: 1,
        first: Some(at),
        last: Some(at),
    };
    store
        .dead_letter(
            "odoo",
            &q,
            "odoo.exceptions.ValidationError: no mrp.workcenter with code \"PRESS1\"",
            &attempts,
        )
        .await
        .expect("dead letter");
    // 5 parts delivered.
    let (r, st) = step(vec![sample("parts", 105, 1000)], 1000);
    store.commit(&r, &st).await.expect("commit");
    let q = store
        .scan("odoo", Lane::Normal, 0, 1)
        .expect("scan")
        .remove(0);
    store.ack("odoo", &q).expect("ack");
    // The press stops and the stop is announced; 3 more parts: both queued.
    let (r, st) = step(vec![sample("state", 2, 2000)], 2000);
    store.commit(&r, &st).await.expect("commit");
    let (r, st) = step(vec![], 2400);
    assert_eq!(r.len(), 1, "the stop is announced after min_duration");
    store.commit(&r, &st).await.expect("commit");
    let (r, st) = step(vec![sample("parts", 108, 3000)], 3000);
    assert_eq!(r.len(), 1);
    store.commit(&r, &st).await.expect("commit");
    assert_eq!(store.depth("odoo"), 2);
    store.sync().await.expect("sync");
}
