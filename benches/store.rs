//! Load program for the event store (`cargo bench --bench store`).
//!
//! 1. Group-committed enqueue of ~100-byte events (flush interval 5 ms):
//!    events/s with 4 concurrent committers, and the latency of each commit
//!    (write to durable) and of each fsync.
//! 2. Dequeue + ack: events/s reading a lane front to back, 256 events a
//!    scan, each scan acknowledged in one batch (as a batching sink does).
//! 3. Reopen: time to open a store holding 1,000,000 queued events.
//! 4. RSS of the release gateway over that store (Odoo unreachable).
//! 5. Bounded disk: enqueue + ack cycles at a steady depth of 100,000;
//!    sled's files against the live data (`STORE_BENCH_CYCLES`, default
//!    10,000,000).

mod support;

use plantgate::store::migrate::NoUpgrade;
use plantgate::store::{Lane, Record, Store, StoreOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{free_port, proc_kib};

/// A production event as the gateway queues it (~100 bytes stored).
fn record(n: u64) -> Record {
    support::production_record("bench", n)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn open(dir: &Path) -> Store {
    open_with(dir, Duration::from_millis(5))
}

fn open_with(dir: &Path, flush: Duration) -> Store {
    let opts = StoreOptions {
        flush_interval: flush,
        ..StoreOptions::default()
    };
    Store::open(dir, &["odoo"], &opts, &NoUpgrade).expect("open")
}

async fn enqueue(dir: &Path, total: u64, writers: u64, batch: u64, flush: Duration) -> Arc<Store> {
    let store = Arc::new(open_with(dir, flush));
    // Records are made before the clock starts: this measures the store.
    let batches: Vec<Vec<Vec<Record>>> = (0..writers)
        .map(|w| {
            let start = w * (total / writers);
            let end = start + total / writers;
            (start..end)
                .step_by(batch as usize)
                .map(|n| (n..(n + batch).min(end)).map(record).collect())
                .collect()
        })
        .collect();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for mine in batches {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for recs in mine {
                let c = Instant::now();
                store.commit(&recs, &[]).await.expect("commit");
                lat.push(c.elapsed().as_secs_f64() * 1000.0);
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
        "enqueue {total} events, {writers} committers x {batch}/commit, flush_interval {flush:?}: {:.0} events/s; commit latency ms p50 {:.2} p99 {:.2} max {:.2}",
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
        store.ack_many("odoo", &chunk).expect("ack");
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
    let ms = Duration::from_millis;
    let store = enqueue(dir.path(), 400_000, 4, 100, ms(5)).await;
    flush_histogram(&store);
    let rate = drain(&store, 400_000);
    println!("dequeue + ack: {rate:.0} events/s");
    drop(store);
    for (writers, batch, flush) in [
        (1, 512, ms(5)),
        (1, 512, ms(2)),
        (16, 100, ms(5)),
        (4, 100, ms(10)),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let _ = enqueue(dir.path(), 200_000, writers, batch, flush).await;
    }
}

async fn reopen_and_rss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let store_dir = data.join("store");
    let store = enqueue(&store_dir, 1_000_000, 4, 500, Duration::from_millis(5)).await;
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
    let batches: Vec<Vec<Record>> = (0..16)
        .map(|b| (b * BATCH..(b + 1) * BATCH).map(record).collect())
        .collect();
    let mut next_report = cycles / 10;
    while cycle < cycles {
        // Reused records (same ids): the store keys by sequence, not id.
        let recs = &batches[(cycle / BATCH % 16) as usize];
        store.commit(recs, &[]).await.expect("commit");
        let mut acked = 0;
        while acked < BATCH {
            let chunk = store
                .scan("odoo", Lane::Normal, 0, (BATCH - acked) as usize)
                .expect("scan");
            store.ack_many("odoo", &chunk).expect("ack");
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
    plantgate::sinks::odoo::http::install_crypto_provider();
    let rt = support::runtime();
    rt.block_on(async {
        throughput().await;
        reopen_and_rss().await;
        bounded_disk().await;
    });
}
