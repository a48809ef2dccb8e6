//! The Odoo API key, with a real gateway process against the fake Odoo:
//! a refused key pauses the sink and says so (an error line, the metric
//! `plantgate_odoo_auth_failed`, `/status`), the key file is read again
//! before each retry, so writing the right key into it delivers the backlog
//! without a restart; and no key, wrong or right, ever appears in the log,
//! even at debug level.

mod support;

use plantgate::demo::plc::{Registers, SimulatedPlc};
use std::time::Duration;
use support::fake_odoo::{FakeOdoo, API_KEY};
use support::{eventually, free_port, get, metric, press_config, COUNTER, STATE};

const WRONG_KEY: &str = "ffffeeeeddddccccbbbbaaaa9999888877776666";

async fn rotating_the_key_file_needs_no_restart_on(version: u8) {
    let dir = tempfile::tempdir().expect("tempdir");
    let regs = Registers::default();
    regs.set_u32(COUNTER, 1000);
    regs.set_u16(STATE, 1);
    let plc = SimulatedPlc::start(([127, 0, 0, 1], 0).into(), regs.clone())
        .await
        .expect("plc");
    let odoo = FakeOdoo::start_version(version).await;
    let wc = odoo.add_workcenter("PRESS1", "Press 1");
    let wo = odoo.add_workorder(wc, "WO/1", "progress");
    let status = format!("127.0.0.1:{}", free_port());
    let text = press_config(dir.path(), &plc.addr.to_string(), &odoo.url(), &status);
    let config = dir.path().join("gw.toml");
    std::fs::write(&config, text).expect("config");
    let key_file = dir.path().join("odoo.key");
    std::fs::write(&key_file, format!("{WRONG_KEY}\n")).expect("key");

    let log_path = dir.path().join("gateway.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut gateway = std::process::Command::new(support::bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("PLANTGATE_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn gateway");
    let base = format!("http://{status}");

    // Parts made while the key is refused wait in the store.
    let status_json = || async {
        let s = get(&format!("{base}/status")).await?;
        serde_json::from_str::<serde_json::Value>(&s).ok()
    };
    let sink_json = || async { Some(status_json().await?["sinks"]["odoo"].clone()) };
    // The first readings are the counter's baseline; parts count from there.
    eventually(
        Duration::from_secs(20),
        "gateway up, counter read",
        || async {
            let v = status_json().await?;
            (v["sources"]["press1"]["samples"].as_u64()? >= 4).then_some(())
        },
    )
    .await;
    for _ in 0..7 {
        regs.set_u32(COUNTER, regs.get_u32(COUNTER) + 1);
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    eventually(Duration::from_secs(20), "auth_failed = 1", || async {
        let m = get(&format!("{base}/metrics")).await?;
        (metric(&m, "plantgate_odoo_auth_failed{sink=\"odoo\"}")? == 1.0).then_some(())
    })
    .await;
    let sink = sink_json().await.expect("status");
    assert_eq!(sink["auth_failed"], true, "{sink}");
    assert!(
        sink["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "{sink}"
    );
    assert_eq!(odoo.workorder(wo).expect("wo").qty_produced, 0.0);

    // Rotate: the right key into the same file, no restart.
    std::fs::write(&key_file, format!("{API_KEY}\n")).expect("key");
    eventually(Duration::from_secs(30), "backlog delivered", || async {
        (odoo.workorder(wo)?.qty_produced == 7.0).then_some(())
    })
    .await;
    eventually(Duration::from_secs(20), "auth_failed = 0", || async {
        let m = get(&format!("{base}/metrics")).await?;
        (metric(&m, "plantgate_odoo_auth_failed{sink=\"odoo\"}")? == 0.0).then_some(())
    })
    .await;
    let sink = sink_json().await.expect("status");
    assert_eq!(sink["auth_failed"], false, "{sink}");
    assert!(
        gateway.try_wait().expect("wait").is_none(),
        "never restarted"
    );
    let _ = gateway.kill();
    let _ = gateway.wait();

    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("refused the API key")),
        "the refusal is logged at error:\n{log}"
    );
    assert!(log.contains("DEBUG"), "the log was at debug level");
    assert!(!log.contains(WRONG_KEY), "the refused key is never logged");
    assert!(!log.contains(API_KEY), "the key is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_key_file_needs_no_restart_jsonrpc() {
    rotating_the_key_file_needs_no_restart_on(17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_key_file_needs_no_restart_json2() {
    rotating_the_key_file_needs_no_restart_on(19).await;
}
