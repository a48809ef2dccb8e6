//! Operating under systemd: a stage that dies takes the process down with
//! exit 2; a wedged edge turns /healthz 503 and stops the watchdog; the
//! sd_notify sequence; logs fit for journald. Every test runs the real
//! binary (debug build: the PLANTGATE_TEST_FAULT hook is honoured).

mod support;

use plantgate::demo::plc::{Registers, SimulatedPlc};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;
use support::{bin, eventually, get, COUNTER, STATE};
use tokio::net::UnixDatagram;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A dry-run gateway reading one simulated press.
fn config(dir: &Path, plc: &str, status: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"
[gateway]
id = "gw1"
data_dir = "{data}"

[status]
listen = "{status}"
{extra}

{source}
[[events]]
kind = "production"
name = "parts"
tag = "parts"
workcenter = "PRESS1"

[odoo]
dry_run = true
"#,
        data = dir.join("data").display(),
        source = support::press_source(plc),
    );
    let path = dir.join("gw.toml");
    std::fs::write(&path, text).expect("config");
    path
}

/// Kills the gateway if a test fails half way.
struct Gateway(Option<Child>);

impl Gateway {
    fn spawn(config: &Path, env: &[(&str, &str)]) -> Gateway {
        let mut cmd = Command::new(bin());
        cmd.args(["run", "--config"])
            .arg(config)
            .env("PLANTGATE_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("PLANTGATE_TEST_FAULT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Gateway(Some(cmd.spawn().expect("spawn gateway")))
    }

    fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -TERM");
    }

    /// Wait for the exit (generous deadline), returning status and stderr.
    async fn exit(mut self) -> (ExitStatus, String) {
        let mut child = self.0.take().expect("child");
        let status = eventually(Duration::from_secs(60), "the gateway to exit", || {
            let r = child.try_wait().expect("try_wait");
            async move { r }
        })
        .await;
        let mut err = String::new();
        if let Some(mut s) = child.stderr.take() {
            use std::io::Read as _;
            s.read_to_string(&mut err).expect("stderr");
        }
        (status, err)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn press() -> SimulatedPlc {
    let regs = Registers::default();
    regs.set_u32(COUNTER, 10);
    regs.set_u16(STATE, 1);
    SimulatedPlc::start(([127, 0, 0, 1], 0).into(), regs)
        .await
        .expect("plc")
}

async fn healthz(status: &str) -> Option<(u16, String)> {
    plantgate::sinks::odoo::http::install_crypto_provider();
    let resp = reqwest::get(format!("http://{status}/healthz"))
        .await
        .ok()?;
    let code = resp.status().as_u16();
    Some((code, resp.text().await.ok()?))
}

/// Reads sd_notify datagrams as systemd would.
struct NotifySocket {
    sock: UnixDatagram,
    path: String,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        NotifySocket {
            sock,
            path: path.display().to_string(),
        }
    }

    async fn next(&self) -> String {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(30), self.sock.recv(&mut buf))
            .await
            .expect("a notification within 30 s")
            .expect("recv");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Read until a datagram has `line` as one of its lines.
    async fn until(&self, line: &str, seen: &mut Vec<String>) {
        loop {
            let msg = self.next().await;
            let hit = msg.lines().any(|l| l == line);
            seen.push(msg);
            if hit {
                return;
            }
        }
    }

    /// Drop what is queued already.
    fn drain(&self) {
        let mut buf = vec![0u8; 4096];
        while self.sock.try_recv(&mut buf).is_ok() {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_that_panics_exits_2_naming_the_stage() {
    for stage in ["edge", "sink odoo", "status listener", "source press1"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let plc = press().await;
        let status = format!("127.0.0.1:{}", free_port());
        let cfg = config(dir.path(), &plc.addr.to_string(), &status, "");
        let fault = format!("panic:{stage}");
        let gw = Gateway::spawn(&cfg, &[("PLANTGATE_TEST_FAULT", &fault)]);
        let (code, stderr) = gw.exit().await;
        assert_eq!(code.code(), Some(2), "{stage}: {stderr}");
        assert!(
            stderr.contains(&format!("stage `{stage}` panicked")),
            "{stage}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_ready_status_watchdog_then_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plc = press().await;
    let status = format!("127.0.0.1:{}", free_port());
    let cfg = config(dir.path(), &plc.addr.to_string(), &status, "");
    let notify = NotifySocket::bind(dir.path());
    let gw = Gateway::spawn(
        &cfg,
        &[("NOTIFY_SOCKET", &notify.path), ("WATCHDOG_USEC", "400000")],
    );
    let mut seen = Vec::new();
    notify.until("READY=1", &mut seen).await;
    assert_eq!(seen.len(), 1, "READY=1 comes first: {seen:?}");
    notify.until("WATCHDOG=1", &mut seen).await;
    let last = seen.last().expect("a watchdog datagram");
    let line = last
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .expect("STATUS= with the watchdog");
    assert!(
        line.contains("sources up") && line.contains("queued") && line.contains("oldest"),
        "{line}"
    );
    gw.sigterm();
    notify.until("STOPPING=1", &mut seen).await;
    let (code, stderr) = gw.exit().await;
    assert_eq!(code.code(), Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedged_edge_fails_healthz_and_stops_the_watchdog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plc = press().await;
    let status = format!("127.0.0.1:{}", free_port());
    let cfg = config(
        dir.path(),
        &plc.addr.to_string(),
        &status,
        "stall_after = \"1s\"",
    );
    let notify = NotifySocket::bind(dir.path());
    let _gw = Gateway::spawn(
        &cfg,
        &[
            ("NOTIFY_SOCKET", &notify.path),
            ("WATCHDOG_USEC", "400000"),
            ("PLANTGATE_TEST_FAULT", "wedge:edge"),
        ],
    );
    let mut seen = Vec::new();
    notify.until("READY=1", &mut seen).await;
    let (code, body) = eventually(Duration::from_secs(30), "/healthz 503", || {
        let s = status.clone();
        async move { healthz(&s).await.filter(|(c, _)| *c == 503) }
    })
    .await;
    assert_eq!(code, 503);
    assert!(body.starts_with("edge stalled"), "{body}");
    assert_eq!(body.lines().count(), 1, "{body}");
    // A tick that began before the 503 may still be on its way: drop what
    // is queued and the next datagram, then judge the ticks after.
    notify.drain();
    let _in_flight = notify.next().await;
    for _ in 0..3 {
        let msg = notify.next().await;
        assert!(
            !msg.lines().any(|l| l == "WATCHDOG=1"),
            "watchdog kept going while wedged: {msg}"
        );
        assert!(msg.contains("STATUS=unhealthy: edge stalled"), "{msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_have_no_colour_codes_when_piped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plc = press().await;
    let status = format!("127.0.0.1:{}", free_port());
    let cfg = config(dir.path(), &plc.addr.to_string(), &status, "");
    let gw = Gateway::spawn(&cfg, &[]);
    eventually(Duration::from_secs(30), "the gateway up", || {
        let s = status.clone();
        async move { get(&format!("http://{s}/healthz")).await }
    })
    .await;
    gw.sigterm();
    let (code, stderr) = gw.exit().await;
    assert_eq!(code.code(), Some(0), "{stderr}");
    assert!(stderr.contains("gateway started"), "{stderr}");
    assert!(
        !stderr.contains("\x1b["),
        "colour codes in piped logs: {stderr:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plc = press().await;
    let status = format!("127.0.0.1:{}", free_port());
    let cfg = config(dir.path(), &plc.addr.to_string(), &status, "");
    let text = std::fs::read_to_string(&cfg).expect("cfg") + "\n[log]\nformat = \"json\"\n";
    std::fs::write(&cfg, text).expect("cfg");
    let gw = Gateway::spawn(&cfg, &[]);
    eventually(Duration::from_secs(30), "the gateway up", || {
        let s = status.clone();
        async move { get(&format!("http://{s}/healthz")).await }
    })
    .await;
    gw.sigterm();
    let (code, stderr) = gw.exit().await;
    assert_eq!(code.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 2, "{stderr}");
    for l in lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
        assert!(v.get("level").is_some(), "{l}");
    }
    assert!(stderr.contains("gateway started"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_stuck_past_its_lane_target_fails_healthz_until_delivered() {
    use support::fake_odoo::Fault;
    let dir = tempfile::tempdir().expect("tempdir");
    let support::press::Peers {
        regs,
        odoo,
        workorder: wo,
        plc,
    } = support::press::Peers::start(10).await;
    odoo.set_fault(Fault::BadGateway);
    let status = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("gw.toml");
    let text = support::press_config(dir.path(), &plc.addr.to_string(), &odoo.url(), &status)
        + "\n[store.lanes.normal]\ntarget = \"1s\"\n";
    std::fs::write(&cfg, text).expect("cfg");
    let _gw = Gateway::spawn(&cfg, &[]);
    eventually(Duration::from_secs(120), "the gateway up", || {
        let s = status.clone();
        async move { healthz(&s).await }
    })
    .await;
    regs.set_u32(COUNTER, 15);
    let (_, body) = eventually(Duration::from_secs(120), "/healthz 503", || {
        let s = status.clone();
        async move { healthz(&s).await.filter(|(c, _)| *c == 503) }
    })
    .await;
    assert!(
        body.starts_with("sink odoo stuck on event") && body.contains("lane normal"),
        "{body}"
    );
    odoo.set_fault(Fault::None);
    eventually(
        Duration::from_secs(120),
        "delivered and /healthz ok",
        || {
            let s = status.clone();
            let qty = odoo.workorder(wo).map(|w| w.qty_produced);
            async move {
                let (code, body) = healthz(&s).await?;
                (code == 200 && body == "ok\n" && qty == Some(5.0)).then_some(())
            }
        },
    )
    .await;
}
