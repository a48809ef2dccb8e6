//! Load program for the walking skeleton (`cargo bench --bench pipeline`).
//!
//! End to end (the store alone is measured by `cargo bench --bench store`): the release binary polls a simulated PLC with 20 part
//!    counters that all change every poll, and delivers to the fake Odoo on
//!    loopback. Reports offered, committed and delivered events/s, the time
//!    to drain the backlog, the gateway's CPU time and memory (RSS), and
//!    checks that Odoo holds exactly the parts produced.

#[path = "../tests/support/fake_odoo/mod.rs"]
mod fake_odoo;
mod support;

use plantgate::demo::plc::{Registers, SimulatedPlc};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use support::{cpu_ticks, free_port, metrics, proc_kib, spawn_gateway, value};

const COUNTERS: u16 = 20;
const PRODUCE_FOR: Duration = Duration::from_secs(15);

async fn end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let regs = Registers::default();
    let plc = SimulatedPlc::start(([127, 0, 0, 1], 0).into(), regs.clone())
        .await
        .expect("plc");
    let odoo = fake_odoo::FakeOdoo::start().await;
    let key = dir.path().join("key");
    std::fs::write(&key, fake_odoo::API_KEY).expect("key");
    let status = format!("127.0.0.1:{}", free_port());
    let mut cfg = support::plc_config(dir.path(), &status, plc.addr, Duration::from_millis(20));
    let mut workorders = Vec::new();
    for i in 0..COUNTERS {
        let wc = odoo.add_workcenter(&format!("WC{i}"), &format!("Line {i}"));
        workorders.push(odoo.add_workorder(wc, &format!("WO{i}"), "progress"));
        let _ = write!(
            cfg,
            "[[tags]]\nname = \"c{i}\"\nsource = \"plc\"\nregister = {}\ntype = \"u32\"\n\
             [[events]]\nkind = \"production\"\nname = \"p{i}\"\ntag = \"c{i}\"\nworkcenter = \"WC{i}\"\n",
            i * 2
        );
    }
    let _ = write!(
        cfg,
        "[odoo]\nurl = \"{}\"\nallow_plaintext = true\ndatabase = \"{}\"\nlogin = \"{}\"\napi_key_file = \"{}\"\nretry_min = \"50ms\"\nretry_max = \"200ms\"\n",
        odoo.url(),
        fake_odoo::DB,
        fake_odoo::LOGIN,
        key.display()
    );
    let cfg_path = dir.path().join("bench.toml");
    std::fs::write(&cfg_path, cfg).expect("cfg");
    let mut child = spawn_gateway(&cfg_path);
    let pid = child.id();
    let samples = "plantgate_samples_total{source=\"plc\"}";
    while value(&metrics(&status).await, samples).unwrap_or(0.0) < f64::from(COUNTERS) * 2.0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu0 = cpu_ticks(pid).unwrap_or(0);
    let t0 = Instant::now();
    let mut produced = 0u64;
    while t0.elapsed() < PRODUCE_FOR {
        for i in 0..COUNTERS {
            regs.set_u32(i * 2, regs.get_u32(i * 2) + 1);
        }
        produced += u64::from(COUNTERS);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let produce_secs = t0.elapsed().as_secs_f64();
    let committed = value(
        &metrics(&status).await,
        "plantgate_events_total{kind=\"production\"}",
    )
    .unwrap_or(0.0);
    let delivered_at_stop = value(
        &metrics(&status).await,
        "plantgate_events_delivered_total{sink=\"odoo\"}",
    )
    .unwrap_or(0.0);
    let rss = proc_kib(pid, "VmRSS:").unwrap_or(0);
    loop {
        let depth = value(
            &metrics(&status).await,
            "plantgate_queue_depth{sink=\"odoo\",lane=\"normal\"}",
        )
        .unwrap_or(1.0);
        if depth == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained_secs = t0.elapsed().as_secs_f64();
    let delivered = value(
        &metrics(&status).await,
        "plantgate_events_delivered_total{sink=\"odoo\"}",
    )
    .unwrap_or(0.0);
    let cpu = cpu_ticks(pid).unwrap_or(0).saturating_sub(cpu0) as f64 / 100.0;
    let hwm = proc_kib(pid, "VmHWM:").unwrap_or(0);
    let in_odoo: f64 = workorders
        .iter()
        .filter_map(|w| odoo.workorder(*w))
        .map(|w| w.qty_produced)
        .sum();
    let _ = child.kill();
    let _ = child.wait();
    println!("end to end, {COUNTERS} counters polled every 20 ms, Odoo on loopback:");
    println!("  parts produced            : {produced} in {produce_secs:.1} s");
    println!(
        "  events committed          : {committed:.0} ({:.0}/s)",
        committed / produce_secs
    );
    println!(
        "  events delivered          : {delivered:.0}, {:.0}/s while producing, {:.0}/s overall",
        delivered_at_stop / produce_secs,
        delivered / drained_secs
    );
    println!(
        "  backlog drained after     : {:.1} s",
        drained_secs - produce_secs
    );
    println!(
        "  gateway CPU               : {cpu:.2} s over {drained_secs:.1} s ({:.0}% of one core)",
        cpu / drained_secs * 100.0
    );
    println!(
        "  gateway RSS               : {} KiB while loaded, peak {} KiB",
        rss, hwm
    );
    println!("  parts in Odoo             : {in_odoo:.0} (expected {produced})");
    assert_eq!(
        in_odoo, produced as f64,
        "Odoo must hold exactly the parts produced"
    );
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not used here.
    let rt = support::runtime();
    plantgate::sinks::odoo::http::install_crypto_provider();
    rt.block_on(async {
        end_to_end().await;
    });
}
