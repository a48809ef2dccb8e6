//! Load program for the Odoo sink (`cargo bench --bench odoo_drain`),
//! against the fake Odoo answering every request 20 ms after it arrives:
//!
//! 1. **Drain.** A backlog of 10,000 production and downtime events over 20
//!    work centers (half parts, half stops as start + end) is queued in the
//!    store; the sink's delivery loop drains it with the default `[odoo]`
//!    settings (`max_batch` 100, `max_in_flight` 2). Reports events/s, the
//!    requests sent and their ratio to one request per event, and checks
//!    that Odoo holds exactly the parts and stops queued.
//! 2. **Steady state.** The release gateway polls a simulated PLC (20
//!    counters, `poll_interval` 100 ms, production `report_every` 1 s);
//!    each counter is bumped every 2 s at its own offset. Reports the p50,
//!    p99 and max from the counter change to Odoo's answer, against the
//!    bound poll interval + aggregation period + 250 ms.

#[path = "../tests/support/fake_odoo/mod.rs"]
mod fake_odoo;
mod support;

use plantgate::demo::plc::{Registers, SimulatedPlc};
use plantgate::model::{Downtime, Event, EventBody, Millis, Production};
use plantgate::records::Lanes;
use plantgate::sinks::odoo::OdooSink;
use plantgate::sinks::{schedule::BreakerConfig, Runner, Sink};
use plantgate::status::{Health, Telemetry};
use plantgate::store::{migrate::NoUpgrade, Store, StoreOptions};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{free_port, metrics, spawn_gateway, value};

const WORKCENTERS: usize = 20;
const EVENTS: usize = 10_000;
const ODOO_DELAY: Duration = Duration::from_millis(20);

fn odoo_section(odoo: &fake_odoo::FakeOdoo, key: &std::path::Path) -> String {
    format!(
        "[odoo]\nurl = \"{}\"\nallow_plaintext = true\ndatabase = \"{}\"\nlogin = \"{}\"\napi_key_file = \"{}\"\nretry_min = \"50ms\"\nretry_max = \"500ms\"\n",
        odoo.url(),
        fake_odoo::DB,
        fake_odoo::LOGIN,
        key.display()
    )
}

async fn drain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let odoo = fake_odoo::FakeOdoo::start().await;
    let key = dir.path().join("key");
    std::fs::write(&key, fake_odoo::API_KEY).expect("key");
    let mut wos = Vec::new();
    for i in 0..WORKCENTERS {
        let wc = odoo.add_workcenter(&format!("WC{i}"), &format!("Line {i}"));
        let wo = odoo.add_workorder(wc, &format!("WO{i}"), "progress");
        odoo.set_workorder_dates(wo, Some("2026-01-01 00:00:00"), None);
        wos.push(wo);
    }
    let text = format!(
        "[gateway]\nid = \"bench\"\ndata_dir = \"{}\"\n{}",
        dir.path().join("data").display(),
        odoo_section(&odoo, &key)
    );
    let cfg = plantgate::config::parse(&text, &dir.path().join("gw.toml"))
        .expect("config")
        .odoo;
    let store = Arc::new(
        Store::open(
            &dir.path().join("store"),
            &["odoo"],
            &StoreOptions::default(),
            &NoUpgrade,
        )
        .expect("store"),
    );
    // The backlog: per work center, parts every 10 s and a stop every 80 s
    // (its start, then its end 30 s later), in time order.
    let t0 = 1_767_225_600_000i64; // 2026-01-01 00:00:00 UTC
    let mut events = Vec::with_capacity(EVENTS);
    let mut parts = 0u64;
    let mut stops = 0usize;
    let mut step = 0i64;
    while events.len() < EVENTS {
        for i in 0..WORKCENTERS {
            let wc = format!("WC{i}");
            let time = Millis(t0 + 60_000 + step * 10_000 + i as i64 * 100);
            if step % 8 == 0 || step % 8 == 3 {
                let n = step / 8;
                let start = Millis(t0 + 60_000 + n * 80_000 + i as i64 * 100 + 1);
                let end = (step % 8 == 3).then_some(Millis(start.0 + 30_000));
                let d = Downtime {
                    workcenter: wc.clone(),
                    downtime_id: format!("bench-stops{i}-{n}"),
                    state: 2,
                    loss: "mrp.block_reason1".into(),
                    description: "Hydraulic fault".into(),
                    start,
                    end,
                };
                if end.is_some() {
                    stops += 1;
                }
                events.push(Event {
                    id: format!("s{i}-{n}-{}", u8::from(end.is_some())),
                    rule: format!("stops{i}"),
                    time: end.unwrap_or(start),
                    body: if end.is_some() {
                        EventBody::DowntimeEnded(d)
                    } else {
                        EventBody::DowntimeStarted(d)
                    },
                });
            } else {
                let quantity = 1 + (step as u64 % 5);
                parts += quantity;
                events.push(Event {
                    id: format!("p{i}-{step}"),
                    rule: format!("parts{i}"),
                    time,
                    body: EventBody::Production(Production {
                        workcenter: wc,
                        quantity,
                        counter_from: 0,
                        counter_to: quantity,
                    }),
                });
            }
            if events.len() == EVENTS {
                break;
            }
        }
        step += 1;
    }
    let lanes = Lanes::default();
    let records: Vec<_> = events
        .iter()
        .map(|e| lanes.record(e).expect("record"))
        .collect();
    for chunk in records.chunks(1000) {
        store.commit(chunk, &[]).await.expect("commit");
    }
    assert_eq!(store.depth("odoo"), EVENTS as u64);
    let sink = OdooSink::new(&cfg).expect("sink");
    let runner = Runner {
        name: "odoo".into(),
        sink: Sink::Odoo(Box::new(sink)),
        store: store.clone(),
        telemetry: Arc::new(Telemetry::new(|_| {})),
        health: Arc::new(Health::new(
            Duration::from_secs(600),
            [Duration::from_secs(600); 3],
        )),
        latency: Arc::default(),
        retry_min: cfg.retry_min,
        retry_max: cfg.retry_max,
        breaker: BreakerConfig::default(),
    };
    odoo.set_fault(fake_odoo::Fault::Slow { delay: ODOO_DELAY });
    let before = odoo.calls().len();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let task = tokio::spawn(runner.run(stopped));
    while store.depth("odoo") > 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the backlog did not drain"
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let _ = task.await;
    let requests = odoo.calls().len() - before;
    let in_odoo: f64 = wos
        .iter()
        .map(|w| odoo.workorder(*w).map_or(0.0, |w| w.qty_produced))
        .sum();
    let closed = odoo
        .productivity()
        .iter()
        .filter(|p| p.loss_type != "productive" && p.date_end.is_some())
        .count();
    println!("odoo_drain: {EVENTS} events (production and downtime) over {WORKCENTERS} work centers, fake Odoo answering in {} ms, default max_batch 100, max_in_flight 2", ODOO_DELAY.as_millis());
    println!(
        "  drained in {secs:.2} s: {:.0} events/s; {requests} requests sent ({:.1} events per request, {:.4} of one request per event)",
        EVENTS as f64 / secs,
        EVENTS as f64 / requests as f64,
        requests as f64 / EVENTS as f64
    );
    println!(
        "  Odoo holds {in_odoo} parts (queued {parts}) and {closed} closed stops (queued {stops})"
    );
    assert_eq!(in_odoo, parts as f64, "parts in Odoo");
    assert_eq!(closed, stops, "stops in Odoo");
}

async fn steady_state() {
    const POLL: Duration = Duration::from_millis(100);
    const PERIOD: Duration = Duration::from_secs(1);
    const ROUNDS: u32 = 15;
    const EVERY: Duration = Duration::from_secs(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let regs = Registers::default();
    let plc = SimulatedPlc::start(([127, 0, 0, 1], 0).into(), regs.clone())
        .await
        .expect("plc");
    let odoo = fake_odoo::FakeOdoo::start().await;
    let key = dir.path().join("key");
    std::fs::write(&key, fake_odoo::API_KEY).expect("key");
    let status = format!("127.0.0.1:{}", free_port());
    let mut cfg = support::plc_config(dir.path(), &status, plc.addr, POLL);
    let mut wos = Vec::new();
    for i in 0..WORKCENTERS {
        let wc = odoo.add_workcenter(&format!("WC{i}"), &format!("Line {i}"));
        wos.push(odoo.add_workorder(wc, &format!("WO{i}"), "progress"));
        let _ = write!(
            cfg,
            "[[tags]]\nname = \"c{i}\"\nsource = \"plc\"\nregister = {}\ntype = \"u32\"\n\
             [[events]]\nkind = \"production\"\nname = \"p{i}\"\ntag = \"c{i}\"\nworkcenter = \"WC{i}\"\nreport_every = \"{}s\"\n",
            i * 2,
            PERIOD.as_secs()
        );
    }
    cfg.push_str(&odoo_section(&odoo, &key));
    let cfg_path = dir.path().join("bench.toml");
    std::fs::write(&cfg_path, cfg).expect("cfg");
    odoo.set_fault(fake_odoo::Fault::Slow { delay: ODOO_DELAY });
    let mut child = spawn_gateway(&cfg_path);
    let samples = "plantgate_samples_total{source=\"plc\"}";
    while value(&metrics(&status).await, samples).unwrap_or(0.0) < WORKCENTERS as f64 * 2.0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Watch Odoo: when each work order's quantity reaches each value.
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let watcher = {
        let odoo = odoo.clone();
        let wos = wos.clone();
        tokio::spawn(async move {
            let mut seen: Vec<Vec<Instant>> = vec![Vec::new(); wos.len()];
            while !*done_rx.borrow() {
                for (i, wo) in wos.iter().enumerate() {
                    let q = odoo.workorder(*wo).map_or(0.0, |w| w.qty_produced) as usize;
                    while seen[i].len() < q {
                        seen[i].push(Instant::now());
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            seen
        })
    };
    let start = Instant::now();
    let mut changed: Vec<Vec<Instant>> = vec![Vec::new(); WORKCENTERS];
    for round in 0..ROUNDS {
        for (i, times) in changed.iter_mut().enumerate() {
            let due = start + EVERY * round + EVERY / WORKCENTERS as u32 * i as u32;
            tokio::time::sleep_until(due.into()).await;
            regs.set_u32(i as u16 * 2, regs.get_u32(i as u16 * 2) + 1);
            times.push(Instant::now());
        }
    }
    // Let the last periods be reported and delivered.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let all = wos
            .iter()
            .all(|w| odoo.workorder(*w).map_or(0.0, |w| w.qty_produced) >= ROUNDS as f64);
        if all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = done_tx.send(true);
    let seen = watcher.await.expect("watcher");
    let _ = child.kill();
    let _ = child.wait();
    // Odoo holds a value when its write is done; its answer leaves
    // ODOO_DELAY later.
    let mut lat: Vec<f64> = Vec::new();
    for (c, s) in changed.iter().zip(&seen) {
        for (t_change, t_seen) in c.iter().zip(s) {
            lat.push(
                (*t_seen + ODOO_DELAY)
                    .duration_since(*t_change)
                    .as_secs_f64()
                    * 1000.0,
            );
        }
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    let bound = (POLL + PERIOD + Duration::from_millis(250)).as_millis();
    println!(
        "odoo_drain steady state: {} counter changes over {WORKCENTERS} work centers (poll {} ms, report_every {} s, fake Odoo {} ms)",
        lat.len(),
        POLL.as_millis(),
        PERIOD.as_secs(),
        ODOO_DELAY.as_millis()
    );
    println!(
        "  counter change -> Odoo's answer: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (bound: poll + period + 250 ms = {bound} ms)",
        pct(0.50),
        pct(0.99),
        lat[lat.len() - 1]
    );
    assert_eq!(
        lat.len(),
        WORKCENTERS * ROUNDS as usize,
        "every change reached Odoo"
    );
}

fn main() {
    let rt = support::runtime();
    rt.block_on(drain());
    rt.block_on(steady_state());
}
