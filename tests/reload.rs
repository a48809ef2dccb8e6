//! `systemctl reload` (SIGHUP) re-reads the config: an invalid one is
//! refused while the running config goes on; a valid one is applied with
//! its queue and counter baselines intact; one that cannot start leaves the
//! previous config running again. Runs the real binary.

mod support;

use plantgate::demo::plc::Registers;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{eventually, free_port, get, metric, spawn_gateway, COUNTER};

const NORMAL_DEPTH: &str = r#"plantgate_queue_depth{sink="odoo",lane="normal"}"#;

fn hangup(pid: u32) {
    let ok = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -HUP");
}

async fn status(base: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&get(&format!("{base}/status")).await?).ok()
}

async fn series(base: &str, name: &str) -> Option<f64> {
    metric(&get(&format!("{base}/metrics")).await?, name)
}

/// Turn the counter by `n`, one part at a time, each seen by the gateway.
async fn make_parts(regs: &Registers, base: &str, n: u32) {
    for _ in 0..n {
        let before = series(base, r#"plantgate_events_total{kind="production"}"#)
            .await
            .unwrap_or(0.0);
        regs.set_u32(COUNTER, regs.get_u32(COUNTER) + 1);
        eventually(
            Duration::from_secs(30),
            "a production event",
            || async move {
                series(base, r#"plantgate_events_total{kind="production"}"#)
                    .await
                    .filter(|v| *v > before)
            },
        )
        .await;
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("config");
}

/// The press gateway, running on its config file, polled at least twice.
struct Running {
    dir: tempfile::TempDir,
    peers: support::press::Peers,
    listen: String,
    base: String,
    text: String,
    path: std::path::PathBuf,
    gw: std::process::Child,
    /// The running config's hash, as /status gives it.
    first: String,
}

impl Running {
    async fn start() -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        let peers = support::press::Peers::start(500).await;
        let listen = format!("127.0.0.1:{}", free_port());
        let base = format!("http://{listen}");
        let text = peers.config(dir.path(), &listen);
        let path = dir.path().join("gw.toml");
        write(&path, &text);
        let gw = spawn_gateway(&path);
        let first = eventually(Duration::from_secs(60), "the gateway up", || async {
            let s = status(&base).await?;
            let n = s["sources"]["press1"]["samples"].as_u64()?;
            (n >= 2).then(|| s["config_hash"].as_str().map(str::to_string))?
        })
        .await;
        Running {
            dir,
            peers,
            listen,
            base,
            text,
            path,
            gw,
            first,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_valid_config_and_refuses_an_invalid_one() {
    let Running {
        dir: _dir,
        peers,
        listen: _,
        base,
        text,
        path,
        mut gw,
        first,
    } = Running::start().await;
    let (regs, odoo, wo) = (&peers.regs, &peers.odoo, peers.workorder);

    // Odoo away: parts wait in the queue.
    odoo.stop().await;
    make_parts(regs, &base, 3).await;
    let queued = series(&base, NORMAL_DEPTH).await.expect("depth");
    assert!(queued >= 3.0, "{queued}");

    // An invalid config is refused; the running one goes on.
    write(
        &path,
        &format!("{text}\n[[sources]]\nname = \"x\"\nkind = \"modbus_tcp\"\n"),
    );
    hangup(gw.id());
    let refused = eventually(Duration::from_secs(30), "the reload refused", || async {
        let s = status(&base).await?;
        (s["reload"]["applied"] == false).then_some(s)
    })
    .await;
    let why = refused["reload"]["error"].as_str().expect("error");
    assert!(why.contains("gw.toml:"), "the refusal says where: {why}");
    assert_eq!(refused["config_hash"].as_str(), Some(first.as_str()));
    make_parts(regs, &base, 1).await;

    // A valid change is applied: same queue, same counter baseline.
    let changed = text.replace("poll_interval = \"50ms\"", "poll_interval = \"60ms\"");
    assert_ne!(changed, text);
    write(&path, &changed);
    hangup(gw.id());
    eventually(
        Duration::from_secs(60),
        "the new config running",
        || async {
            let s = status(&base).await?;
            let applied = s["reload"]["applied"] == true;
            let new = s["config_hash"].as_str().is_some_and(|h| h != first);
            let polling = s["sources"]["press1"]["samples"].as_u64()? >= 2;
            (applied && new && polling).then_some(())
        },
    )
    .await;
    let after = series(&base, NORMAL_DEPTH).await.expect("depth");
    assert!(
        after >= 4.0,
        "the queue kept its events over the reload: {after}"
    );
    make_parts(regs, &base, 2).await;

    // Odoo back: exactly the parts made, none lost or doubled by the reload.
    odoo.resume().await;
    eventually(Duration::from_secs(60), "all parts in Odoo", || async {
        let q = odoo.workorder(wo).map(|w| w.qty_produced)?;
        (q >= 6.0).then_some(())
    })
    .await;
    // Give a duplicate the chance to show: the queue drains to empty first.
    eventually(Duration::from_secs(30), "the queue empty", || async {
        (series(&base, NORMAL_DEPTH).await? == 0.0).then_some(())
    })
    .await;
    assert_eq!(odoo.workorder(wo).map(|w| w.qty_produced), Some(6.0));
    let _ = gw.kill();
    let _ = gw.wait();
}

/// A valid config that cannot start (its status address is taken) leaves
/// the previous config running again, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_cannot_start_runs_the_previous_config_again() {
    let Running {
        dir: _dir,
        peers: _peers,
        listen,
        base,
        text,
        path,
        mut gw,
        first,
    } = Running::start().await;

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = taken.local_addr().expect("addr").to_string();
    write(&path, &text.replace(&listen, &busy));
    hangup(gw.id());
    let back = eventually(
        Duration::from_secs(60),
        "the previous config back",
        || async {
            let s = status(&base).await?;
            (s["reload"]["applied"] == false).then_some(s)
        },
    )
    .await;
    let why = back["reload"]["error"].as_str().expect("error");
    assert!(
        why.contains("did not start") && why.contains(&busy),
        "{why}"
    );
    assert_eq!(back["config_hash"].as_str(), Some(first.as_str()));
    // And it reads the press again.
    let before = back["sources"]["press1"]["samples"].as_u64().unwrap_or(0);
    eventually(
        Duration::from_secs(60),
        "samples after the fallback",
        || async {
            let n = status(&base).await?["sources"]["press1"]["samples"].as_u64()?;
            (n > before).then_some(())
        },
    )
    .await;
    drop(taken);
    let _ = gw.kill();
    let _ = gw.wait();
}
