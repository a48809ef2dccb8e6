//! Load program for the event store (`cargo bench --bench store`).
//!
//! 1. Group-committed enqueue of ~100-byte events (flush interval 5 ms):
//!    events/s with 4 concurrent committers, and the latency of each commit
//!    (write to durable) and of each fsync.
//! 2. Dequeue + ack: events/s reading a lane front to back and acking each.
//! 3. Reopen: time to open a store holding 1,000,000 queued events.
//! 4. RSS of the release gateway over that store (Odoo unreachable).
//! 5. Bounded disk: enqueue + ack cycles at a steady depth of 100,000;
//!    sled's files against the live data (`STORE_BENCH_CYCLES`, default
//!    10,000,000).

mod support;

use plantgate::model::Millis;
use plantgate::store::migrate::NoUpgrade;
use plantgate::store::{Lane, Record, Store, StoreOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{free_port, proc_kib};

fn record(n: u64) -> Record {
    Record {
        id: format!("bench-{n:012}"),
        kind: "production".into(),
        key: format!("WC{}", n % 20),
        lane: Lane::Normal,
        time: Millis(1_780_000_000_000 + n as i64),
        payload: vec![0x5a; 64],
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn open(dir: &Path) -> Store {
    Store::open(dir, &["odoo"], &StoreOptions::default(), &NoUpgrade).expect("open")
}

async fn enqueue(dir: &Path, total: u64, writers: u64, batch: u64) -> Arc<Store> {
    let store = Arc::new(open(dir));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = w * (total / writers);
            let end = n + total / writers;
            while n < end {
                let recs: Vec<Record> = (n..(n + batch).min(end)).map(record).collect();
                let c = Instant::now();
                store.commit(&recs, &[]).await.expect("commit");
                lat.push(c.elapsed().as_secs_f64() * 1000.0);
                n += batch;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("writer"));
    }
    let secs = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    println!(
        "enqueue {total} events, {writers} committers x {batch}/commit: {:.0} events/s; commit latency ms p50 {:.2} p99 {:.2} max {:.2}",
        total as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    store
}

fn drain(store: &Store, count: u64) -> f64 {
    let t = Instant::now();
    let mut done = 0u64;
    while done < count {
        let chunk = store.scan("odoo", Lane::Normal, 0, 256).expect("scan");
        if chunk.is_empty() {
            break;
        }
        for q in &chunk {
            store.ack("odoo", q).expect("ack");
        }
        done += chunk.len() as u64;
    }
    done as f64 / t.elapsed().as_secs_f64()
}

fn flush_histogram(store: &Store) {
    let mut reg = prometheus_client::registry::Registry::default();
    store.metrics.register(&mut reg);
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, &reg);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("plantgate_store_flush_seconds"))
        .collect();
    println!("fsync durations (histogram):");
    for l in lines {
        println!("  {l}");
    }
}

async fn throughput() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = enqueue(dir.path(), 400_000, 4, 100).await;
    flush_histogram(&store);
    let rate = drain(&store, 400_000);
    println!("dequeue + ack: {rate:.0} events/s");
    drop(store);
    let dir = tempfile::tempdir().expect("tempdir");
    let _ = enqueue(dir.path(), 200_000, 1, 512).await;
}

async fn reopen_and_rss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let store_dir = data.join("store");
    let store = enqueue(&store_dir, 1_000_000, 4, 500).await;
    store.sync().await.expect("sync");
    let disk = store.size_on_disk().expect("size");
    let live = store.stats().used_bytes;
    drop(store);
    let t = Instant::now();
    let store = open(&store_dir);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "reopen with {} queued events: {secs:.2} s (files {:.1} MiB, live {:.1} MiB)",
        store.depth("odoo"),
        disk as f64 / 1048576.0,
        live as f64 / 1048576.0
    );
    drop(store);

    // The release gateway over the same store, its Odoo unreachable.
    let key = dir.path().join("key");
    std::fs::write(&key, "k").expect("key");
    let status = format!("127.0.0.1:{}", free_port());
    let cfg = format!(
        "[gateway]\nid = \"bench\"\ndata_dir = \"{}\"\n[status]\nlisten = \"{status}\"\n\
         [[sources]]\nname = \"plc\"\nkind = \"modbus_tcp\"\naddress = \"127.0.0.1:1\"\n\
         [[tags]]\nname = \"c\"\nsource = \"plc\"\nregister = 0\n\
         [odoo]\nurl = \"http://127.0.0.1:1\"\nallow_plaintext = true\ndatabase = \"db\"\nlogin = \"gw\"\napi_key_file = \"{}\"\n",
        data.display(),
        key.display()
    );
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, cfg).expect("cfg");
    let mut child = support::spawn_gateway(&path);
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while support::metrics(&status).await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss = proc_kib(pid, "VmRSS:").unwrap_or(0);
    let hwm = proc_kib(pid, "VmHWM:").unwrap_or(0);
    println!(
        "gateway with 1,000,000 queued events, Odoo down: RSS {:.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
}

async fn bounded_disk() {
    let cycles: u64 = std::env::var("STORE_BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    const DEPTH: u64 = 100_000;
    const BATCH: u64 = 1_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut n = 0u64;
    while n < DEPTH {
        let recs: Vec<Record> = (n..n + BATCH).map(record).collect();
        store.commit(&recs, &[]).await.expect("commit");
        n += BATCH;
    }
    let t = Instant::now();
    let mut worst = 0f64;
    let mut cycle = 0u64;
    let mut next_report = cycles / 10;
    while cycle < cycles {
        let recs: Vec<Record> = (n..n + BATCH).map(record).collect();
        store.commit(&recs, &[]).await.expect("commit");
        n += BATCH;
        let mut acked = 0;
        while acked < BATCH {
            let chunk = store
                .scan("odoo", Lane::Normal, 0, (BATCH - acked) as usize)
                .expect("scan");
            for q in &chunk {
                store.ack("odoo", q).expect("ack");
            }
            acked += chunk.len() as u64;
        }
        cycle += BATCH;
        if cycle >= next_report || cycle >= cycles {
            store.sync().await.expect("sync");
            let disk = store.size_on_disk().expect("size") as f64;
            let live = store.stats().used_bytes as f64;
            worst = worst.max(disk / live);
            println!(
                "  {cycle:>9} cycles: files {:.1} MiB, live {:.1} MiB, ratio {:.2}, {:.0} cycles/s",
                disk / 1048576.0,
                live / 1048576.0,
                disk / live,
                cycle as f64 / t.elapsed().as_secs_f64()
            );
            next_report += cycles / 10;
        }
    }
    println!(
        "bounded disk: {cycles} enqueue+ack cycles at depth {DEPTH}: worst files/live ratio {worst:.2}"
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        throughput().await;
        reopen_and_rss().await;
        bounded_disk().await;
    });
}
