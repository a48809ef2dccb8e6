//! Stores written by earlier releases open, deliver their backlog and resume
//! their rule states. Fixtures (tests/fixtures/store-v*/store) were written
//! by the release named in their folder and are committed as they are:
//! - store-v0: the release before the layout was versioned (format 0);
//! - store-v1: format 1, this layout.
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
