//! Shared pieces of the integration tests: the fake Odoo, gateway configs
//! pointing at real loopback peers, and polling helpers.
#![allow(dead_code)]

pub mod fake_odoo;
pub mod faulty_device;
pub mod odoo_sink;
pub mod press;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const COUNTER: u16 = 100;
pub const STATE: u16 = 102;

/// A gateway config for one simulated press and a (fake) Odoo over plain
/// HTTP on loopback, with short intervals so tests run fast. Production is
/// reported per change (`report_parts = 1`), as tests of delivery count it.
pub fn press_config(dir: &Path, plc: &str, odoo_url: &str, status: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw1"
data_dir = "{data}"

[status]
listen = "{status}"

{source}
[[tags]]
name = "state"
source = "press1"
register = {STATE}

{PRESS_EVENTS}
{odoo}"#,
        data = dir.join("data").display(),
        source = press_source(plc),
        odoo = odoo_section(dir, odoo_url),
    )
}

/// The press at `plc` as a Modbus TCP source `press1`, polled every 50 ms,
/// and its part counter as the tag `parts`.
pub fn press_source(plc: &str) -> String {
    format!(
        r#"[[sources]]
name = "press1"
kind = "modbus_tcp"
address = "{plc}"
poll_interval = "50ms"
timeout = "500ms"

[[tags]]
name = "parts"
source = "press1"
register = {COUNTER}
type = "u32"
"#
    )
}

/// The press's rules on the tags `parts` and `state` of work center
/// PRESS1: production reported per change, and stops held 300 ms.
pub const PRESS_EVENTS: &str = r#"[[events]]
kind = "production"
name = "parts"
tag = "parts"
workcenter = "PRESS1"
report_parts = 1

[[events]]
kind = "downtime"
name = "stops"
tag = "state"
workcenter = "PRESS1"
min_duration = "300ms"
running = [1]
[[events.reason]]
state = 2
loss = "mrp.block_reason1"
description = "Hydraulic fault"
"#;

/// An `[odoo]` section for the fake Odoo at `odoo_url` over plain HTTP on
/// loopback, with short timeouts and retries; its API key file is written
/// into `dir`.
pub fn odoo_section(dir: &Path, odoo_url: &str) -> String {
    let key = dir.join("odoo.key");
    std::fs::write(&key, format!("{}\n", fake_odoo::API_KEY)).expect("write key");
    format!(
        r#"[odoo]
url = "{odoo_url}"
allow_plaintext = true
database = "{db}"
login = "{login}"
api_key_file = "{key}"
timeout = "2s"
retry_min = "50ms"
retry_max = "400ms"
"#,
        key = key.display(),
        db = fake_odoo::DB,
        login = fake_odoo::LOGIN,
    )
}

/// Poll `check` until it returns Some, or panic with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// GET a status page over real HTTP.
pub async fn get(url: &str) -> Option<String> {
    plantgate::sinks::odoo::http::install_crypto_provider();
    let resp = reqwest::get(url).await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.text().await.ok()
}

/// The value of one Prometheus series (`name{labels}` as printed), if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_plantgate"))
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `plantgate run` on a config file, logging warnings to the test's stderr.
pub fn spawn_gateway(config: &Path) -> std::process::Child {
    std::process::Command::new(bin())
        .args(["run", "--config"])
        .arg(config)
        .env("PLANTGATE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn gateway")
}

/// `plantgate ARGS --config CFG`: exit code, stdout, stderr.
pub fn cli(cfg: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(bin())
        .args(args)
        .arg("--config")
        .arg(cfg)
        .env("PLANTGATE_LOG", "warn")
        .output()
        .expect("run plantgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}
