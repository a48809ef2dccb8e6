//! kill -9 while events flow: the restarted gateway must leave Odoo with
//! exactly the parts produced and exactly one record per stop, nothing lost
//! and nothing doubled.

mod support;

use plantgate::demo::plc::{Registers, SimulatedPlc};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::fake_odoo::FakeOdoo;
use support::{bin, eventually, get, metric, press_config, COUNTER, STATE};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn spawn(config: &std::path::Path) -> Child {
    Command::new(bin())
        .args(["run", "--config"])
        .arg(config)
        .env("PLANTGATE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn gateway")
}

async fn samples(status: &str) -> Option<f64> {
    let m = get(&format!("http://{status}/metrics")).await?;
    metric(&m, "plantgate_samples_total{source=\"press1\"}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_and_doubles_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let regs = Registers::default();
    let start = 5000u32;
    regs.set_u32(COUNTER, start);
    regs.set_u16(STATE, 1);
    let plc = SimulatedPlc::start(([127, 0, 0, 1], 0).into(), regs.clone())
        .await
        .expect("plc");
    let odoo = FakeOdoo::start().await;
    let wc = odoo.add_workcenter("PRESS1", "Press 1");
    let wo = odoo.add_workorder(wc, "WO/00007", "progress");
    let status = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        press_config(dir.path(), &plc.addr.to_string(), &odoo.url(), &status),
    )
    .expect("cfg");

    let mut child = spawn(&cfg);
    eventually(Duration::from_secs(20), "gateway polling", || {
        let s = status.clone();
        async move { samples(&s).await.filter(|n| *n >= 4.0) }
    })
    .await;

    // The press runs in the background while the gateway is killed twice.
    let producer = {
        let regs = regs.clone();
        tokio::spawn(async move {
            for i in 0..120u32 {
                regs.set_u32(COUNTER, regs.get_u32(COUNTER) + 1 + i % 3);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    for round in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        if round == 0 {
            // A stop that begins before the kill and ends after the restart.
            regs.set_u16(STATE, 2);
        }
        child.kill().expect("kill -9"); // SIGKILL on Unix
        child.wait().expect("reap");
        tokio::time::sleep(Duration::from_millis(200)).await;
        child = spawn(&cfg);
        eventually(Duration::from_secs(20), "gateway back", || {
            let s = status.clone();
            async move { samples(&s).await.filter(|n| *n >= 1.0) }
        })
        .await;
        if round == 1 {
            regs.set_u16(STATE, 1);
        }
    }
    producer.await.expect("producer");
    let expected = f64::from(regs.get_u32(COUNTER) - start);

    eventually(Duration::from_secs(30), "all parts delivered", || {
        let q = odoo.workorder(wo).map(|w| w.qty_produced);
        async move { (q == Some(expected)).then_some(()) }
    })
    .await;
    eventually(Duration::from_secs(10), "the stop closed", || {
        let logs = odoo.productivity();
        async move {
            logs.iter()
                .all(|p| p.date_end.is_some())
                .then_some(())
                .filter(|_| !logs.is_empty())
        }
    })
    .await;
    // Nothing arrives twice, even after time for any duplicate to show.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(odoo.workorder(wo).map(|w| w.qty_produced), Some(expected));
    let logs = odoo.productivity();
    assert_eq!(
        logs.len(),
        1,
        "one stop across two restarts, one record: {logs:?}"
    );
    assert_eq!(logs[0].loss_xmlid.as_deref(), Some("mrp.block_reason1"));
    let m = get(&format!("http://{status}/metrics"))
        .await
        .expect("metrics");
    assert_eq!(metric(&m, r#"plantgate_queue_depth{sink="odoo",lane="normal"}"#), Some(0.0));
    child.kill().expect("kill");
    child.wait().expect("reap");
}
