//! What the load programs share: reading a child process's CPU and memory
//! from /proc, scraping the gateway's metrics, a free loopback port, the
//! runtime, the head of a config reading one simulated PLC, and queued
//! production events.
#![allow(dead_code)]

use plantgate::model::{Event, EventBody, Millis, Production};
use plantgate::records::Lanes;
use plantgate::store::Record;
use std::time::Duration;

/// The runtime a load program runs on: two workers, as a small gateway
/// has cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A gateway config's `[gateway]`, `[status]` and a Modbus TCP source
/// `plc` polled every `poll`; its data under `dir`.
pub fn plc_config(
    dir: &std::path::Path,
    status: &str,
    plc: std::net::SocketAddr,
    poll: Duration,
) -> String {
    format!(
        "[gateway]\nid = \"bench\"\ndata_dir = \"{}\"\n[status]\nlisten = \"{status}\"\n\
         [[sources]]\nname = \"plc\"\nkind = \"modbus_tcp\"\naddress = \"{plc}\"\npoll_interval = \"{}ms\"\n",
        dir.join("data").display(),
        poll.as_millis()
    )
}

/// A production event (one part at work center WC`n % 20`) as the gateway
/// queues it, ~100 bytes stored; its id is `<prefix>-<n>`.
pub fn production_record(prefix: &str, n: u64) -> Record {
    let event = Event {
        id: format!("{prefix}-{n:012}"),
        rule: "parts".into(),
        time: Millis(1_780_000_000_000 + n as i64),
        body: EventBody::Production(Production {
            workcenter: format!("WC{}", n % 20),
            quantity: 1,
            counter_from: n,
            counter_to: n + 1,
        }),
    };
    Lanes::default().record(&event).expect("record")
}

/// utime + stime in clock ticks (100 Hz on Linux).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// A `/proc/PID/status` field in KiB (`VmRSS:`, `VmHWM:`).
pub fn proc_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub async fn metrics(status: &str) -> String {
    match reqwest::get(format!("http://{status}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// One series' value from Prometheus text.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (name, v) = l.rsplit_once(' ')?;
        (name == series).then(|| v.parse().ok()).flatten()
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(19811)
}

/// Run the release gateway on a config file, quiet but for warnings.
pub fn spawn_gateway(config: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_plantgate"))
        .args(["run", "--config"])
        .arg(config)
        .env("PLANTGATE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn the gateway")
}
