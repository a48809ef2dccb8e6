//! Dead letters end to end: an event Odoo refuses lands in the dead-letter
//! queue with Odoo's message; `plantgate dlq replay` delivers it exactly once
//! after the cause is fixed, on a stopped gateway (the CLI opens the store)
//! and on a running one (the CLI goes through the status listener).

mod support;

use plantgate::demo::plc::{Registers, SimulatedPlc};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::fake_odoo::{FakeOdoo, Fault};
use support::{cli, eventually, free_port, get, metric, spawn_gateway, COUNTER};

struct Rig {
    regs: Registers,
    odoo: FakeOdoo,
    wo: i64,
    cfg: PathBuf,
    status: String,
    _plc: SimulatedPlc,
    _dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = support::press::Peers::start(500).await;
    let status = format!("127.0.0.1:{}", free_port());
    let cfg = peers.write_config(dir.path(), &status);
    let support::press::Peers {
        regs,
        odoo,
        workorder: wo,
        plc,
    } = peers;
    Rig {
        regs,
        odoo,
        wo,
        cfg,
        status,
        _plc: plc,
        _dir: dir,
    }
}

async fn metric_at_least(status: &str, series: &str, n: f64) {
    eventually(Duration::from_secs(30), series, || async move {
        let m = get(&format!("http://{status}/metrics")).await?;
        metric(&m, series).filter(|v| *v >= n).map(|_| ())
    })
    .await;
}

async fn wait_qty(r: &Rig, qty: u32, what: &str) {
    eventually(Duration::from_secs(30), what, || {
        let got = r.odoo.workorder(r.wo).map(|w| w.qty_produced);
        async move { (got == Some(f64::from(qty))).then_some(()) }
    })
    .await;
}

/// Refuse the next work-order write, make `parts` parts, wait until the
/// refusal is a dead letter.
async fn refused_parts(r: &Rig, parts: u32, dead_before: f64) {
    r.odoo.set_fault(Fault::ValidationError {
        model: "mrp.workorder".into(),
        method: "write".into(),
        count: 1,
    });
    r.regs.set_u32(COUNTER, r.regs.get_u32(COUNTER) + parts);
    metric_at_least(
        &r.status,
        r#"plantgate_dlq_depth{sink="odoo"}"#,
        dead_before + 1.0,
    )
    .await;
}

fn only_letter(cfg: &Path) -> serde_json::Value {
    let (code, out, err) = cli(cfg, &["dlq", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).expect("json");
    let list = list.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1, "{out}");
    list[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_on_a_stopped_gateway_delivers_exactly_once() {
    let r = rig().await;
    let mut child = spawn_gateway(&r.cfg);
    metric_at_least(
        &r.status,
        r#"plantgate_samples_total{source="press1"}"#,
        3.0,
    )
    .await;
    refused_parts(&r, 7, 0.0).await;
    // Parts after the refused ones still flow.
    r.regs.set_u32(COUNTER, r.regs.get_u32(COUNTER) + 2);
    wait_qty(&r, 2, "the parts behind the refused event").await;
    child.kill().expect("kill");
    child.wait().expect("reap");

    let (code, table, err) = cli(&r.cfg, &["dlq", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(table.contains("ValidationError"), "{table}");
    assert!(
        table.contains("PRESS1") && table.contains("production"),
        "{table}"
    );
    let letter = only_letter(&r.cfg);
    let id = letter["id"].as_u64().expect("id");
    assert!(letter["reason"]
        .as_str()
        .unwrap_or("")
        .contains("FakeOdoo injected a ValidationError"));
    assert!(letter["attempts"].as_u64().unwrap_or(0) >= 1);
    let (code, shown, err) = cli(&r.cfg, &["dlq", "show", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(
        shown["event"]["body"]["Production"]["quantity"], 7,
        "{shown}"
    );
    assert_eq!(shown["replay"], format!("plantgate dlq replay {id}"));

    let (code, out, err) = cli(&r.cfg, &["dlq", "replay", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id.to_string()), "{out}");
    let (_, out, _) = cli(&r.cfg, &["dlq", "list"]);
    assert_eq!(out, "no dead letters\n");

    let mut child = spawn_gateway(&r.cfg);
    wait_qty(&r, 9, "the replayed parts").await;
    metric_at_least(
        &r.status,
        r#"plantgate_events_delivered_total{sink="odoo"}"#,
        1.0,
    )
    .await;
    let m = get(&format!("http://{}/metrics", r.status))
        .await
        .expect("metrics");
    assert_eq!(
        metric(&m, r#"plantgate_queue_depth{sink="odoo",lane="normal"}"#),
        Some(0.0)
    );
    assert_eq!(metric(&m, r#"plantgate_dlq_depth{sink="odoo"}"#), Some(0.0));
    assert_eq!(r.odoo.workorder(r.wo).map(|w| w.qty_produced), Some(9.0));
    child.kill().expect("kill");
    child.wait().expect("reap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_and_drop_on_a_running_gateway() {
    let r = rig().await;
    let mut child = spawn_gateway(&r.cfg);
    metric_at_least(
        &r.status,
        r#"plantgate_samples_total{source="press1"}"#,
        3.0,
    )
    .await;
    refused_parts(&r, 4, 0.0).await;
    let letter = only_letter(&r.cfg);
    assert!(
        letter["reason"]
            .as_str()
            .unwrap_or("")
            .contains("ValidationError"),
        "{letter}"
    );

    let (code, stats, err) = cli(&r.cfg, &["queue", "stats"]);
    assert_eq!(code, 0, "{err}");
    assert!(stats.contains("odoo      dead letters: 1"), "{stats}");
    let (code, stats, _) = cli(&r.cfg, &["queue", "stats", "--json"]);
    assert_eq!(code, 0);
    let stats: serde_json::Value = serde_json::from_str(&stats).expect("json");
    assert_eq!(stats["sinks"]["odoo"]["dead_letters"], 1);
    assert_eq!(
        stats["sinks"]["odoo"]["lanes"]["critical"]["target_seconds"],
        10.0
    );

    let (code, out, err) = cli(&r.cfg, &["dlq", "replay", "--all"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("replayed"), "{out}");
    wait_qty(&r, 4, "the replayed parts on the running gateway").await;

    // A second refusal, dropped this time: it never reaches Odoo.
    refused_parts(&r, 3, 0.0).await;
    let id = only_letter(&r.cfg)["id"].as_u64().expect("id");
    let (code, out, err) = cli(&r.cfg, &["dlq", "drop", &id.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("dropped dead letter {id}\n"));
    let (code, _, err) = cli(&r.cfg, &["dlq", "show", &id.to_string()]);
    assert_eq!(code, 2);
    assert!(err.contains(&format!("no dead letter #{id}")), "{err}");
    // Later parts are delivered and the dropped ones are not.
    r.regs.set_u32(COUNTER, r.regs.get_u32(COUNTER) + 1);
    wait_qty(&r, 5, "parts after the dropped event").await;
    let (_, out, _) = cli(&r.cfg, &["dlq", "list"]);
    assert_eq!(out, "no dead letters\n");
    child.kill().expect("kill");
    child.wait().expect("reap");
}
