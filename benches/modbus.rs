//! Load program for the Modbus source (`cargo bench --bench modbus`).
//!
//! The release gateway polls 10,000 holding registers (u16 tags, contiguous)
//! from a tokio-modbus server on loopback, once a second, for 20 s. Reports
//! requests per cycle, the cycle time (first request to last answer of the
//! poll group), the gateway's CPU use and its resident memory: in all, the
//! anonymous part (heap, stacks) and the part that is the binary's own
//! pages (file-backed, shared, dropped first under memory pressure).
//! `cargo bench --bench modbus -- 1000` polls 1,000 registers instead.

mod support;

use plantgate::demo::plc::{Registers, SimulatedPlc};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use support::{cpu_ticks, free_port, metrics, proc_kib, spawn_gateway, value};

const RUN_FOR: Duration = Duration::from_secs(20);

async fn run(tags: u16) {
    let regs = Registers::default();
    let words: Vec<u16> = (0..tags).collect();
    regs.set_holding(0, &words);
    let plc = SimulatedPlc::start(([127, 0, 0, 1], 0).into(), regs)
        .await
        .expect("plc");
    let dir = tempfile::tempdir().expect("tempdir");
    let status = format!("127.0.0.1:{}", free_port());
    let mut cfg = format!(
        "[gateway]\nid = \"bench\"\ndata_dir = \"{}\"\n[status]\nlisten = \"{status}\"\n[odoo]\ndry_run = true\n\
         [[sources]]\nname = \"plc\"\nkind = \"modbus_tcp\"\naddress = \"{}\"\npoll_interval = \"1s\"\n",
        dir.path().join("data").display(),
        plc.addr
    );
    for i in 0..tags {
        let _ = write!(
            cfg,
            "[[tags]]\nname = \"r{i}\"\nsource = \"plc\"\nregister = {i}\n"
        );
    }
    let path = dir.path().join("bench.toml");
    std::fs::write(&path, cfg).expect("cfg");
    let mut child = spawn_gateway(&path);
    let pid = child.id();
    let ok = "plantgate_modbus_requests_total{source=\"plc\",result=\"ok\"}";
    let samples = "plantgate_samples_total{source=\"plc\"}";
    // Let the first cycles and start-up pass before measuring.
    loop {
        if value(&metrics(&status).await, samples).unwrap_or(0.0) >= f64::from(tags) * 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m0 = metrics(&status).await;
    let (req0, s0, cpu0, t0) = (
        value(&m0, ok).unwrap_or(0.0),
        value(&m0, samples).unwrap_or(0.0),
        cpu_ticks(pid).unwrap_or(0),
        Instant::now(),
    );
    let mut worst: f64 = 0.0;
    let mut cycle_times = Vec::new();
    while t0.elapsed() < RUN_FOR {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let m = metrics(&status).await;
        if let Some(c) = value(
            &m,
            "plantgate_modbus_cycle_seconds{source=\"plc\",group=\"default\"}",
        ) {
            worst = worst.max(c);
            cycle_times.push(c);
        }
    }
    let m1 = metrics(&status).await;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_ticks(pid).unwrap_or(0).saturating_sub(cpu0) as f64 / 100.0;
    let (req, smp) = (
        value(&m1, ok).unwrap_or(0.0) - req0,
        value(&m1, samples).unwrap_or(0.0) - s0,
    );
    let cycles = smp / f64::from(tags);
    let rss = proc_kib(pid, "VmRSS:").unwrap_or(0);
    let anon = proc_kib(pid, "RssAnon:").unwrap_or(0);
    let file = proc_kib(pid, "RssFile:").unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    cycle_times.sort_by(f64::total_cmp);
    let median = cycle_times
        .get(cycle_times.len() / 2)
        .copied()
        .unwrap_or(0.0);
    println!(
        "modbus: {tags} holding registers, 1 s poll, tokio-modbus server on loopback, {secs:.0} s"
    );
    println!(
        "  requests per cycle : {:.1} (minimum {})",
        req / cycles,
        tags.div_ceil(125)
    );
    println!(
        "  cycle time         : median {:.1} ms, worst {:.1} ms",
        median * 1000.0,
        worst * 1000.0
    );
    println!(
        "  gateway CPU        : {:.2} % of one core",
        cpu / secs * 100.0
    );
    println!("  gateway RSS        : {rss} KiB ({anon} KiB anonymous, {file} KiB of the binary and libraries)");
}

fn main() {
    let rt = support::runtime();
    plantgate::sinks::odoo::http::install_crypto_provider();
    // The first argument that is a number: how many registers.
    let tags = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<u16>().ok())
        .unwrap_or(10_000);
    rt.block_on(run(tags));
}
