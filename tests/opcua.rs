//! The OPC UA source against an async-opcua server in-process on a loopback
//! port: value changes arrive through a subscription (and by polling), the
//! server applies deadbands, every node id notation resolves, the gateway
//! survives a server restart with its namespace indexes changed, and bad
//! tags or a server without the configured security are reported by name
//! while the rest keeps running. An edge that is held back gets, once it
//! takes samples again, the newest value of each item, not a backlog.
#![cfg(feature = "opcua")]

#[path = "support/opcua_peer.rs"]
mod opcua_peer;
#[path = "support/opcua_rig.rs"]
mod opcua_rig;
mod support;

use opcua::types::{DataValue, DateTime, Variant};
use opcua_peer::{free_port, TestServer, NS_URI};
use opcua_rig::{gateway_config, good, opcua_source, start_sources};
use plantgate::config::SourceKind;
use plantgate::model::{Quality, Value};
use plantgate::sources::opcua::OpcUaReader;
use plantgate::status::Telemetry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use support::{eventually, metric};
use tokio::sync::{mpsc, watch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_changes_arrive_by_subscription_and_by_polling_in_every_notation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(0, &dir.path().join("server"), false).await;
    let ns = server.ns;
    let tags = format!(
        r#"
[[tags]]
name = "counter"
source = "press"
node = "ns={ns};s=Press.Counter"
sampling_interval = "100ms"

[[tags]]
name = "oven"
source = "press"
node = "ns={ns};i=1001"

[[tags]]
name = "recipe"
source = "press"
node = "nsu={NS_URI};s=Press.Recipe"

[[tags]]
name = "state"
source = "press"
node = "nsu={NS_URI};s=Press.State"
mode = "poll"
"#
    );
    let text = gateway_config(dir.path(), &opcua_source(&server.url(), ""), &tags);
    let mut src = start_sources(dir.path(), &text);

    // Initial values, one per notation.
    let oven = src.next("oven", good).await;
    assert_eq!(oven.value, Value::Float(180.0));
    let recipe = src.next("recipe", good).await;
    assert_eq!(recipe.value, Value::Text("R-100".into()));
    let state = src.next("state", good).await;
    assert_eq!(state.value, Value::Int(1));
    src.next("counter", |s| good(s) && s.value == Value::UInt(0))
        .await;

    // Each change arrives, in order, with the source timestamp it carries.
    // (The PLC's clock runs an hour ahead: the sample keeps the PLC's time.
    // Each step is more than the sampling interval, else the server would
    // shift it to its next sample.)
    let counter = server.node("Press.Counter");
    let plc_clock = chrono::Utc::now().timestamp_millis() + 3_600_000;
    for n in 1..=5u32 {
        let mut dv = DataValue::new_now(Variant::UInt32(n));
        let at = plc_clock + i64::from(n) * 1000;
        dv.source_timestamp = Some(DateTime::from(
            chrono::DateTime::from_timestamp_millis(at).expect("time"),
        ));
        server.set_data_value(&counter, dv);
        let s = src.next("counter", good).await;
        assert_eq!(s.value, Value::UInt(u64::from(n)));
        assert_eq!(s.time.0, at);
    }

    // The polled tag follows within its poll interval.
    server.set(&server.node("Press.State"), 2i32);
    src.next("state", |s| good(s) && s.value == Value::Int(2))
        .await;

    let board = src.telemetry.snapshot();
    assert!(board.sources["press"].connected);
    assert!(board.bad_tags.is_empty(), "{:?}", board.bad_tags);
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_applies_an_absolute_deadband() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(0, &dir.path().join("server"), false).await;
    let tags = format!(
        r#"
[[tags]]
name = "temp"
source = "press"
node = "nsu={NS_URI};s=Press.Temperature"
sampling_interval = "100ms"
queue_size = 100
deadband = {{ kind = "absolute", value = 5.0 }}

[[tags]]
name = "temp_all"
source = "press"
node = "nsu={NS_URI};s=Press.Temperature"
sampling_interval = "100ms"
queue_size = 100
"#
    );
    let text = gateway_config(dir.path(), &opcua_source(&server.url(), ""), &tags);
    let mut src = start_sources(dir.path(), &text);
    src.next("temp", |s| good(s) && s.value == Value::Float(20.0))
        .await;
    src.next("temp_all", |s| good(s) && s.value == Value::Float(20.0))
        .await;
    let temp = server.node("Press.Temperature");
    let mut filtered = Vec::new();
    let mut all = Vec::new();
    for n in 21..=40 {
        server.set(&temp, f64::from(n));
        // The next change only once this one was sampled (the tag without a
        // deadband shows it), however slow the machine is.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let s = tokio::time::timeout_at(deadline, src.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("{n} not sampled within 20 s"))
                .expect("source running");
            match s.name(&src.tags) {
                "temp" => filtered.push(s.value),
                "temp_all" => {
                    let done = s.value == Value::Float(f64::from(n));
                    all.push(s.value);
                    if done {
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    // Only changes of more than 5 from the last reported value pass.
    assert_eq!(
        filtered,
        vec![Value::Float(26.0), Value::Float(32.0), Value::Float(38.0)]
    );
    assert_eq!(
        all,
        (21..=40)
            .map(|n| Value::Float(f64::from(n)))
            .collect::<Vec<_>>(),
        "without a deadband every change arrives"
    );
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_nodes_are_bad_and_named_while_the_rest_keeps_flowing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(0, &dir.path().join("server"), false).await;
    let ns = server.ns;
    let tags = format!(
        r#"
[[tags]]
name = "counter"
source = "press"
node = "ns={ns};s=Press.Counter"

[[tags]]
name = "ghost"
source = "press"
node = "ns={ns};s=Press.Ghost"

[[tags]]
name = "elsewhere"
source = "press"
node = "nsu=urn:not-on-this-server;s=Press.Counter"

[[tags]]
name = "ghost_polled"
source = "press"
node = "ns={ns};i=4242"
mode = "poll"
"#
    );
    let text = gateway_config(dir.path(), &opcua_source(&server.url(), ""), &tags);
    let mut src = start_sources(dir.path(), &text);
    let ghost = src.next("ghost", |s| s.quality != Quality::Good).await;
    assert!(
        matches!(&ghost.quality, Quality::Bad(why) if why.contains("BadNodeIdUnknown")),
        "{ghost:?}"
    );
    let elsewhere = src.next("elsewhere", |s| s.quality != Quality::Good).await;
    assert!(
        matches!(&elsewhere.quality, Quality::Bad(why) if why.contains("urn:not-on-this-server") && why.contains("namespace array")),
        "{elsewhere:?}"
    );
    let polled = src
        .next("ghost_polled", |s| s.quality != Quality::Good)
        .await;
    assert_eq!(polled.quality, Quality::Bad("BadNodeIdUnknown".into()));

    // The good tag is unaffected.
    server.set(&server.node("Press.Counter"), 7u32);
    src.next("counter", |s| good(s) && s.value == Value::UInt(7))
        .await;
    let board = src.telemetry.snapshot();
    assert!(board.sources["press"].connected);
    let last = board.sources["press"]
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(
        ["tag ghost:", "tag elsewhere:", "tag ghost_polled:"]
            .iter()
            .any(|t| last.starts_with(t)),
        "the source's last error names the tag: {last}"
    );
    let bad: Vec<&str> = board.bad_tags.keys().map(|(_, t)| t.as_str()).collect();
    assert_eq!(bad, vec!["elsewhere", "ghost", "ghost_polled"]);
    // A bad tag is reported once, not on every publish.
    let repeats = src.samples_for("ghost", Duration::from_millis(500)).await;
    assert!(repeats.is_empty(), "{repeats:?}");
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_restart_values_continue_and_the_gap_is_bad() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let pki = dir.path().join("server");
    let server = TestServer::start(port, &pki, false).await;
    let ns_before = server.ns;
    let tags = format!(
        r#"
[[tags]]
name = "counter"
source = "press"
node = "nsu={NS_URI};s=Press.Counter"
"#
    );
    let text = gateway_config(dir.path(), &opcua_source(&server.url(), ""), &tags);
    let mut src = start_sources(dir.path(), &text);
    let counter = server.node("Press.Counter");
    server.set(&counter, 1u32);
    src.next("counter", |s| good(s) && s.value == Value::UInt(1))
        .await;

    server.stop().await;
    let gap = src.next("counter", |s| s.quality != Quality::Good).await;
    assert!(matches!(gap.quality, Quality::Bad(_)), "{gap:?}");
    let t = src.telemetry.clone();
    eventually(Duration::from_secs(5), "source marked disconnected", || {
        let down = !t.snapshot().sources["press"].connected;
        async move { down.then_some(()) }
    })
    .await;
    // Nothing is invented while the server is away.
    let gap = src.samples_for("counter", Duration::from_millis(700)).await;
    assert!(
        gap.iter().all(|s| matches!(s.quality, Quality::Bad(_))),
        "{gap:?}"
    );

    // Back on the same port, with the namespace at another index.
    let server = TestServer::start(port, &pki, true).await;
    assert_ne!(server.ns, ns_before);
    let counter = server.node("Press.Counter");
    // New values until ten have arrived, however long the reconnect takes.
    let mut distinct = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut n = 100u32;
    while distinct.len() < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "values keep changing after the restart: {distinct:?}"
        );
        server.set(&counter, n);
        n += 1;
        let seen = src.values_for("counter", Duration::from_millis(300)).await;
        distinct.extend(seen.iter().filter_map(|v| v.as_u64()).filter(|v| *v >= 100));
    }
    let m = src.telemetry.encode();
    assert_eq!(
        metric(&m, "plantgate_opcua_reconnects_total{source=\"press\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "plantgate_source_connected{source=\"press\"}"),
        Some(1.0)
    );
    // A consumer that keeps up never has a value replaced.
    assert_eq!(
        metric(
            &m,
            "plantgate_opcua_samples_replaced_total{source=\"press\"}"
        ),
        Some(0.0),
        "{m}"
    );
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_configured_security_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(0, &dir.path().join("server"), false).await;
    let source = opcua_source(
        &server.url(),
        "security_policy = \"Basic256Sha256\"\nsecurity_mode = \"SignAndEncrypt\"",
    );
    let tags = format!(
        "[[tags]]\nname = \"counter\"\nsource = \"press\"\nnode = \"nsu={NS_URI};s=Press.Counter\"\n"
    );
    let text = gateway_config(dir.path(), &source, &tags);
    let mut src = start_sources(dir.path(), &text);
    let s = src.next("counter", |s| s.quality != Quality::Good).await;
    let Quality::Bad(why) = &s.quality else {
        panic!("{s:?}")
    };
    assert!(
        why.contains("offers no endpoint with security policy Basic256Sha256 and mode SignAndEncrypt; it offers: None/None"),
        "{why}"
    );
    let board = src.telemetry.snapshot();
    assert!(!board.sources["press"].connected);
    assert_eq!(
        board.sources["press"].last_error.as_deref(),
        Some(why.as_str())
    );
    // The gateway generated its application certificate for secure policies.
    assert!(dir.path().join("data/opcua/own/cert.der").exists());
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_security_policy_and_user_identity_reads_values_once_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let user_cert = dir.path().join("user/cert.der");
    let user_key = dir.path().join("user/key.pem");
    let mut x509 = opcua::crypto::X509Data::sample_cert();
    x509.common_name = "plantgate line user".into();
    opcua::crypto::CertificateStore::create_certificate_and_key(&x509, true, &user_cert, &user_key)
        .expect("user certificate");
    let pki = dir.path().join("server");
    let server = TestServer::start_secure(&pki, &user_cert).await;
    std::fs::write(dir.path().join("op.password"), "op-password\n").expect("password");
    let trusted = dir.path().join("trusted");
    std::fs::create_dir_all(&trusted).expect("trust dir");
    std::fs::copy(pki.join("own/cert.der"), trusted.join("server.der")).expect("trust server");
    let cases = [
        ("Basic256Sha256", "Sign", String::new()),
        (
            "Aes128_Sha256_RsaOaep",
            "SignAndEncrypt",
            "user = \"op\"\npassword_file = \"op.password\"".to_string(),
        ),
        (
            "Aes256_Sha256_RsaPss",
            "SignAndEncrypt",
            format!(
                "user_certificate = \"{}\"\nuser_private_key = \"{}\"",
                user_cert.display(),
                user_key.display()
            ),
        ),
    ];
    for (n, (policy, mode, identity)) in cases.iter().enumerate() {
        let extra = format!(
            "security_policy = \"{policy}\"\nsecurity_mode = \"{mode}\"\ntrust_dir = \"{}\"\n{identity}",
            trusted.display()
        );
        let tags = format!(
            "[[tags]]\nname = \"counter\"\nsource = \"press\"\nnode = \"nsu={NS_URI};s=Press.Counter\"\n"
        );
        let text = gateway_config(dir.path(), &opcua_source(&server.url(), &extra), &tags);
        let mut src = start_sources(dir.path(), &text);
        let value = 100 + n as u32;
        let feed = async {
            // Paces the server; the value only has to arrive within a minute.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while tokio::time::Instant::now() < deadline {
                server.set(&server.node("Press.Counter"), value);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let wait = src.next("counter", |s| s.value == Value::UInt(u64::from(value)));
        let got = tokio::select! {
            s = wait => s,
            _ = feed => panic!("no value over {policy}/{mode}"),
        };
        assert_eq!(got.quality, Quality::Good, "{policy}/{mode}");
        src.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_limits_monitored_items_refuses_those_tags_and_polled_ones_flow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_limited(&dir.path().join("server"), 2).await;
    let mut tags = String::new();
    for name in ["Counter", "State", "Temperature"] {
        tags += &format!(
            "[[tags]]\nname = \"{}\"\nsource = \"press\"\nnode = \"nsu={NS_URI};s=Press.{name}\"\n",
            name.to_lowercase()
        );
    }
    tags += &format!(
        "[[tags]]\nname = \"oven\"\nsource = \"press\"\nnode = \"nsu={NS_URI};i=1001\"\nmode = \"poll\"\n"
    );
    let text = gateway_config(dir.path(), &opcua_source(&server.url(), ""), &tags);
    let mut src = start_sources(dir.path(), &text);
    let refused = src.next("counter", |s| s.quality != Quality::Good).await;
    let Quality::Bad(why) = &refused.quality else {
        panic!("{refused:?}")
    };
    assert!(why.contains("BadTooManyMonitoredItems"), "{why}");
    assert!(why.contains("set mode = \"poll\""), "{why}");
    server.set(&server.node(1001u32), 200.5f64);
    src.next("oven", |s| good(s) && s.value == Value::Float(200.5))
        .await;
    assert!(src.telemetry.snapshot().sources["press"].connected);
    let m = src.telemetry.encode();
    assert_eq!(
        metric(&m, "plantgate_opcua_reconnects_total{source=\"press\"}"),
        Some(0.0),
        "a refusal is not a lost connection: {m}"
    );
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_items_on_one_subscription_all_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(0, &dir.path().join("server"), false).await;
    const N: usize = 2500;
    server.add_many(N);
    let mut tags = String::new();
    for i in 0..N {
        tags += &format!(
            "[[tags]]\nname = \"m{i}\"\nsource = \"press\"\nnode = \"nsu={NS_URI};s=Many.{i}\"\n"
        );
    }
    let text = gateway_config(dir.path(), &opcua_source(&server.url(), ""), &tags);
    let mut src = start_sources(dir.path(), &text);
    let mut seen = std::collections::BTreeSet::new();
    let all = async {
        while seen.len() < N {
            let s = src.rx.recv().await.expect("sample");
            assert_eq!(s.quality, Quality::Good, "{s:?}");
            seen.insert(s.name(&src.tags).to_string());
        }
    };
    tokio::time::timeout(Duration::from_secs(20), all)
        .await
        .expect("a first value of every item");
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_of_only_polled_tags_stays_connected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(0, &dir.path().join("server"), false).await;
    let tags = format!(
        "[[tags]]\nname = \"state\"\nsource = \"press\"\nnode = \"nsu={NS_URI};s=Press.State\"\nmode = \"poll\"\n"
    );
    let text = gateway_config(dir.path(), &opcua_source(&server.url(), ""), &tags);
    let mut src = start_sources(dir.path(), &text);
    for n in 2..=4i32 {
        server.set(&server.node("Press.State"), n);
        src.next("state", |s| good(s) && s.value == Value::Int(i64::from(n)))
            .await;
    }
    let later = src.samples_for("state", Duration::from_millis(500)).await;
    assert!(later.iter().all(good), "{later:?}");
    assert!(src.telemetry.snapshot().sources["press"].connected);
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_back_edge_gets_the_newest_value_of_each_item_not_a_backlog() {
    const BUFFER: usize = 4;
    const ITEMS: usize = 3;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(0, &dir.path().join("server"), false).await;
    server.add_many(ITEMS);
    let ns = server.ns;
    let tags: String = (0..ITEMS)
        .map(|i| {
            format!(
                "[[tags]]\nname = \"m{i}\"\nsource = \"press\"\nnode = \"ns={ns};s=Many.{i}\"\n"
            )
        })
        .collect();
    let text = gateway_config(dir.path(), &opcua_source(&server.url(), ""), &tags);
    let cfg = plantgate::config::parse(&text, &dir.path().join("gw.toml")).expect("config");
    let SourceKind::OpcUa(source) = &cfg.sources[0].kind else {
        panic!("an OPC UA source")
    };
    // The edge takes nothing until released: one sample fits in the channel.
    let (tx, mut rx) = mpsc::channel(1);
    let metrics = Arc::new(plantgate::sources::opcua::OpcUaMetrics::default());
    let telemetry = Arc::new(Telemetry::new(|r| metrics.register(r)));
    let reader = OpcUaReader::new(
        "press".into(),
        source.clone(),
        cfg.tags.clone(),
        cfg.tag_table.clone(),
        tx,
        telemetry.clone(),
        metrics,
    )
    .with_change_buffer(BUFFER);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(reader.run(stop_rx));

    // The server keeps changing every item while the edge is held back.
    let nodes: Vec<_> = (0..ITEMS)
        .map(|i| server.node(format!("Many.{i}")))
        .collect();
    let replaced = || {
        metric(
            &telemetry.encode(),
            "plantgate_opcua_samples_replaced_total{source=\"press\"}",
        )
        .unwrap_or(0.0)
    };
    let mut round = 0u32;
    eventually(
        Duration::from_secs(30),
        "50 values replaced while the edge is held back",
        || {
            round += 1;
            for (i, node) in nodes.iter().enumerate() {
                server.set(node, f64::from(round) * 10.0 + i as f64);
            }
            let done = replaced() >= 50.0;
            async move { done.then_some(()) }
        },
    )
    .await;
    let last: Vec<f64> = (0..ITEMS).map(|i| 1e6 + i as f64).collect();
    for (node, v) in nodes.iter().zip(&last) {
        server.set(node, *v);
    }

    // Released: each item's newest value arrives, after a bounded backlog
    // (the channel, the batch in hand, the buffer, and what the server
    // still had queued), in order per item.
    let mut seen: HashMap<String, Vec<f64>> = HashMap::new();
    let mut received = 0;
    let all_last = |seen: &HashMap<String, Vec<f64>>| {
        (0..ITEMS).all(|i| seen.get(&format!("m{i}")).and_then(|v| v.last()) == Some(&last[i]))
    };
    let drain = async {
        while !all_last(&seen) {
            let s = rx.recv().await.expect("the source runs");
            received += 1;
            if let Value::Float(v) = s.value {
                seen.entry(s.name(&cfg.tag_table).to_string())
                    .or_default()
                    .push(v);
            }
        }
    };
    let arrived = tokio::time::timeout(Duration::from_secs(30), drain).await;
    assert!(
        arrived.is_ok(),
        "the newest values did not arrive: {seen:?}"
    );
    let bound = 2 + 2 * (BUFFER + ITEMS) + 3 * ITEMS;
    assert!(
        received <= bound,
        "{received} samples after the release (at most {bound}), {} replaced: {seen:?}",
        replaced()
    );
    for (tag, values) in &seen {
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "{tag} out of order: {values:?}"
        );
    }
    drop(rx);
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the source stops")
        .expect("source task");
}
