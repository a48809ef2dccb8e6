//! Load program for the OPC UA source (`cargo bench --bench opcua`).
//!
//! 1. Connect to first value: in-process, the time from starting a source to
//!    its first good sample, on loopback, with security None and with
//!    Basic256Sha256 SignAndEncrypt (application certificate already made).
//! 2. 5,000 monitored items at 100 ms sampling on one subscription: the
//!    release binary subscribes to an in-process async-opcua server whose
//!    values change (all of them every 100 ms, then a tenth of them). Reports
//!    changes offered and samples read per second, offered − read over time,
//!    and the gateway's CPU (% of one core) and memory. A backlog inside the
//!    gateway would show as growing memory; with queue_size 1 a server that
//!    cannot publish every change in time merges them (the latest value per
//!    item wins), which shows as offered − read growing at flat memory.

use opcua::crypto::SecurityPolicy;
use opcua::server::diagnostics::NamespaceMetadata;
use opcua::server::node_manager::memory::{simple_node_manager, SimpleNodeManager};
use opcua::server::{ServerBuilder, ServerHandle, ANONYMOUS_USER_TOKEN_ID};
use opcua::types::{DataValue, MessageSecurityMode, NodeId, Variant};
use plantgate::model::Quality;
use plantgate::status::Telemetry;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

const ITEMS: usize = 5_000;
const URI: &str = "urn:plantgate:bench";
const MEASURE: Duration = Duration::from_secs(15);

struct Bench {
    handle: ServerHandle,
    nm: Arc<SimpleNodeManager>,
    ids: Vec<NodeId>,
    port: u16,
    pki: std::path::PathBuf,
}

async fn server(dir: &Path) -> Bench {
    let pki = dir.join("server");
    let users = [ANONYMOUS_USER_TOKEN_ID];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut builder = ServerBuilder::new()
        .application_name("bench server")
        .application_uri("urn:plantgate:bench-server")
        .create_sample_keypair(true)
        .pki_dir(&pki)
        .host("127.0.0.1")
        .port(port)
        .discovery_urls(vec![format!("opc.tcp://127.0.0.1:{port}/")])
        .trust_client_certs(true)
        .diagnostics_enabled(false)
        .add_endpoint(
            "none",
            (
                "/",
                SecurityPolicy::None,
                MessageSecurityMode::None,
                &users as &[&str],
            ),
        )
        .add_endpoint(
            "secure",
            (
                "/",
                SecurityPolicy::Basic256Sha256,
                MessageSecurityMode::SignAndEncrypt,
                &users as &[&str],
            ),
        )
        .with_node_manager(simple_node_manager(
            NamespaceMetadata {
                namespace_uri: URI.to_owned(),
                ..Default::default()
            },
            "bench",
        ));
    let limits = builder.limits_mut();
    limits.subscriptions.max_monitored_items_per_sub = 0;
    limits.subscriptions.max_queued_notifications = 10_000;
    limits.subscriptions.max_monitored_item_queue_size = 100;
    limits.max_message_size = 256 * 65_535;
    limits.max_chunk_count = 256;
    let (server, handle) = builder.build().expect("server");
    let nm = handle
        .node_managers()
        .get_of_type::<SimpleNodeManager>()
        .expect("node manager");
    let ns = handle.get_namespace_index(URI).expect("ns");
    let ids: Vec<NodeId> = (0..ITEMS)
        .map(|i| NodeId::new(ns, format!("v{i}")))
        .collect();
    {
        let mut space = nm.address_space().write();
        let folder = NodeId::new(ns, "Bench");
        space.add_folder(&folder, "Bench", "Bench", &NodeId::objects_folder_id());
        let vars = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                opcua::nodes::Variable::new(id, format!("v{i}"), format!("v{i}"), 0.0f64)
            })
            .collect();
        space.add_variables(vars, &folder);
    }
    tokio::spawn(async move {
        let _ = server.run_with(listener).await;
    });
    Bench {
        handle,
        nm,
        ids,
        port,
        pki,
    }
}

impl Bench {
    /// Set values stamped `at` at the source: steps of exactly the sampling
    /// interval, so the server's sampling passes each change on (stamped with
    /// the wall clock, scheduling jitter would make it merge some).
    fn set(&self, ids: &[NodeId], value: f64, at: chrono::DateTime<chrono::Utc>) {
        let mut dv = DataValue::new_now(Variant::Double(value));
        dv.source_timestamp = Some(at.into());
        let _ = self.nm.set_values(
            self.handle.subscriptions(),
            ids.iter().map(|id| (id, None, dv.clone())),
        );
    }
}

fn source_config(dir: &Path, port: u16, secure: bool, items: usize, status: Option<u16>) -> String {
    let mut text = format!(
        "[gateway]\nid = \"bench\"\ndata_dir = \"{}\"\n",
        dir.join("data").display()
    );
    if let Some(p) = status {
        text += &format!("[status]\nlisten = \"127.0.0.1:{p}\"\n");
    }
    text += &format!(
        "[[sources]]\nname = \"bench\"\nkind = \"opcua\"\nendpoint = \"opc.tcp://127.0.0.1:{port}/\"\npublishing_interval = \"100ms\"\ntimeout = \"10s\"\n"
    );
    if secure {
        text += "security_policy = \"Basic256Sha256\"\nsecurity_mode = \"SignAndEncrypt\"\n";
    }
    for i in 0..items {
        text += &format!(
            "[[tags]]\nname = \"v{i}\"\nsource = \"bench\"\nnode = \"nsu={URI};s=v{i}\"\nsampling_interval = \"100ms\"\n"
        );
    }
    text + "[odoo]\ndry_run = true\n"
}

/// Median time from starting a source to its first good sample.
async fn connect_to_first_value(b: &Bench, dir: &Path, secure: bool) -> Duration {
    let text = source_config(dir, b.port, secure, 1, None);
    let cfg = plantgate::config::parse(&text, &dir.join("gw.toml")).expect("config");
    if secure {
        // Trust the server, as `plantgate opcua trust` would.
        let trusted = dir.join("data/opcua/trusted");
        std::fs::create_dir_all(&trusted).expect("trust dir");
        std::fs::copy(b.pki.join("own/cert.der"), trusted.join("server.der")).expect("trust");
        // The application certificate is made once, on first start: not timed.
        if let plantgate::config::SourceKind::OpcUa(c) = &cfg.sources[0].kind {
            plantgate::sources::opcua::client::Link::new(c).expect("client");
        }
    }
    let mut times = Vec::new();
    for _ in 0..7 {
        let (tx, mut rx) = mpsc::channel(1000);
        let telemetry = Arc::new(Telemetry::default());
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = plantgate::supervise::Stages::default();
        let t = Instant::now();
        let metrics = plantgate::sources::SourceMetrics::default();
        plantgate::sources::spawn_all(&cfg, &tx, &telemetry, &metrics, &stop_rx, &mut tasks, None);
        loop {
            let s = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("first value within 10 s")
                .expect("sample");
            match s.quality {
                Quality::Good => break,
                Quality::Bad(why) => panic!("connect failed: {why}"),
                Quality::Uncertain(_) => {}
            }
        }
        times.push(t.elapsed());
        stop.send_replace(true);
        tasks.join_all().await;
    }
    times.sort();
    times[times.len() / 2]
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn samples(status: u16) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{status}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == "plantgate_samples_total{source=\"bench\"}")
            .then(|| value.parse().ok())
            .flatten()
    })
}

async fn load(b: Arc<Bench>, dir: &Path) {
    let status = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let config = dir.join("load.toml");
    std::fs::write(
        &config,
        source_config(dir, b.port, false, ITEMS, Some(status)),
    )
    .expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_plantgate"))
        .args(["run", "--config"])
        .arg(&config)
        .env("PLANTGATE_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .spawn()
        .expect("gateway");
    let child = Gateway(child);
    let pid = child.0.id();
    let t = Instant::now();
    loop {
        if samples(status).await.unwrap_or(0.0) >= ITEMS as f64 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "initial values");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "5,000 items subscribed, initial values read in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    for (label, share) in [
        ("every item changes every 100 ms", 1usize),
        ("a tenth of the items change every 100 ms", 10),
    ] {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let offered = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let feeder = {
            let (b, stop, offered) = (b.clone(), stop.clone(), offered.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                let start = chrono::Utc::now();
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tick.tick().await;
                    n += 1;
                    let part = (n as usize) % share;
                    let ids: Vec<NodeId> = b
                        .ids
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| i % share == part)
                        .map(|(_, id)| id.clone())
                        .collect();
                    let at = start + chrono::Duration::milliseconds(100 * n as i64);
                    b.set(&ids, n as f64, at);
                    offered.fetch_add(ids.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
            })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        let s0 = samples(status).await.unwrap_or(0.0);
        let o0 = offered.load(std::sync::atomic::Ordering::Relaxed);
        let c0 = cpu_ticks(pid).unwrap_or(0);
        let t0 = Instant::now();
        let mut lag = Vec::new();
        for _ in 0..3 {
            tokio::time::sleep(MEASURE / 3).await;
            let s = samples(status).await.unwrap_or(0.0) - s0;
            let o = (offered.load(std::sync::atomic::Ordering::Relaxed) - o0) as f64;
            lag.push(o - s);
        }
        let secs = t0.elapsed().as_secs_f64();
        let cpu = (cpu_ticks(pid).unwrap_or(0) - c0) as f64 / 100.0 / secs * 100.0;
        let s = samples(status).await.unwrap_or(0.0) - s0;
        let o = (offered.load(std::sync::atomic::Ordering::Relaxed) - o0) as f64;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = feeder.await;
        println!(
            "{label}: offered {:>7.0} changes/s, read {:>7.0} samples/s, offered − read after 5/10/15 s: {:.0}/{:.0}/{:.0}, gateway CPU {cpu:.1} % of one core, RSS {} MiB",
            o / secs,
            s / secs,
            lag[0],
            lag[1],
            lag[2],
            rss_kb(pid).unwrap_or(0) / 1024
        );
    }
    drop(child);
}

/// The gateway process, stopped when the load program ends or panics.
struct Gateway(std::process::Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        plantgate::sinks::odoo::http::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let b = Arc::new(server(dir.path()).await);
        let plain = connect_to_first_value(&b, &dir.path().join("plain"), false).await;
        println!(
            "connect to first value, loopback, security None: {:.0} ms (median of 7)",
            plain.as_secs_f64() * 1000.0
        );
        let secure = connect_to_first_value(&b, &dir.path().join("secure"), true).await;
        println!(
            "connect to first value, loopback, Basic256Sha256 SignAndEncrypt: {:.0} ms (median of 7)",
            secure.as_secs_f64() * 1000.0
        );
        load(b.clone(), dir.path()).await;
    });
}
