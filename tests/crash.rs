//! kill -9 at random moments while events flow, 20 times: the restarted
//! gateway must leave Odoo with exactly the parts produced (gathered into
//! periods, so kills land mid-period) and exactly one record for a stop
//! that spans several kills, nothing lost and nothing doubled.

mod support;

use std::time::Duration;
use support::{eventually, free_port, get, metric, press_config, spawn_gateway, COUNTER, STATE};

/// SIGKILLs per run.
const KILLS: usize = 20;

async fn samples(status: &str) -> Option<f64> {
    let m = get(&format!("http://{status}/metrics")).await?;
    metric(&m, "plantgate_samples_total{source=\"press1\"}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_and_doubles_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let start = 5000u32;
    let support::press::Peers {
        regs,
        odoo,
        workorder: wo,
        plc,
    } = support::press::Peers::start(start).await;
    let status = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("gw.toml");
    // Parts are gathered into periods, so most kills land mid-period: the
    // open count must survive them (it is committed with the counter).
    std::fs::write(
        &cfg,
        press_config(dir.path(), &plc.addr.to_string(), &odoo.url(), &status)
            .replace("report_parts = 1", "report_every = \"400ms\""),
    )
    .expect("cfg");

    let mut child = spawn_gateway(&cfg);
    eventually(Duration::from_secs(20), "gateway polling", || {
        let s = status.clone();
        async move { samples(&s).await.filter(|n| *n >= 4.0) }
    })
    .await;

    // The press runs in the background while the gateway is killed again
    // and again at random moments; a stop spans several of the kills.
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let producer = {
        let regs = regs.clone();
        let running = running.clone();
        tokio::spawn(async move {
            let mut i = 0u32;
            while running.load(std::sync::atomic::Ordering::Acquire) {
                regs.set_u32(COUNTER, regs.get_u32(COUNTER) + 1 + i % 3);
                i += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9);
    for round in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.u64(150..900))).await;
        if round == 3 {
            regs.set_u16(STATE, 2);
        }
        child.kill().expect("kill -9"); // SIGKILL on Unix
        child.wait().expect("reap");
        child = spawn_gateway(&cfg);
        eventually(Duration::from_secs(30), "gateway back", || {
            let s = status.clone();
            async move { samples(&s).await.filter(|n| *n >= 1.0) }
        })
        .await;
        if round == 12 {
            regs.set_u16(STATE, 1);
        }
    }
    running.store(false, std::sync::atomic::Ordering::Release);
    producer.await.expect("producer");
    let expected = f64::from(regs.get_u32(COUNTER) - start);

    eventually(Duration::from_secs(60), "all parts delivered", || {
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
    // Nothing arrives twice: once every lane is empty no delivery is left
    // to repeat, and Odoo still holds exactly the parts made.
    eventually(Duration::from_secs(30), "every lane empty", || {
        let s = status.clone();
        async move {
            let m = get(&format!("http://{s}/metrics")).await?;
            let depth = |lane: &str| {
                metric(
                    &m,
                    &format!("plantgate_queue_depth{{sink=\"odoo\",lane=\"{lane}\"}}"),
                )
            };
            (depth("critical")? == 0.0 && depth("normal")? == 0.0).then_some(())
        }
    })
    .await;
    assert_eq!(odoo.workorder(wo).map(|w| w.qty_produced), Some(expected));
    let logs = odoo.productivity();
    assert_eq!(
        logs.len(),
        1,
        "one stop across nine restarts, one record: {logs:?}"
    );
    assert_eq!(logs[0].loss_xmlid.as_deref(), Some("mrp.block_reason1"));
    let m = get(&format!("http://{status}/metrics"))
        .await
        .expect("metrics");
    assert_eq!(
        metric(&m, r#"plantgate_queue_depth{sink="odoo",lane="normal"}"#),
        Some(0.0)
    );
    child.kill().expect("kill");
    child.wait().expect("reap");
}
