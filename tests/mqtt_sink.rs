#![cfg(feature = "mqtt")]
//! The northbound MQTT sink against a real mosquitto (each test its own, on
//! a free loopback port) and an independent subscriber: every event is
//! published as schema-1 JSON with its id, kind, key and lane, in order per
//! key; a broker stopped and restarted mid-stream loses nothing (every
//! event at least once, order per key kept; in MQTT 3.1.1 and 5); a gateway killed with SIGKILL
//! mid-stream and restarted loses nothing (also a 10,000-event backlog
//! killed mid-publish), and its status topic says
//! "online", then "offline" (the will) after the kill, then "online"
//! again; Odoo down does not hold back MQTT, nor the broker down Odoo;
//! retained last state leaves each kind-and-key topic its last event; a
//! lane past its target is published as an alert, and one that came and
//! went while the broker was down is published after the reconnect (its
//! lane topic retained); mutual TLS works and an untrusted broker is
//! refused; a wrong password is refused in plain words and the fixed file
//! is read at the next connect. MQTT 5: events delivered with their id as
//! a user property, acknowledged on PUBACK, and a topic the broker's ACL
//! refuses (PUBACK 0x87) goes to the dead letters, counted, never
//! acknowledged as delivered. Selected tag values are published retained,
//! on change only, to a later subscriber and again after a broker restart,
//! while the broker's absence never holds back the edge.

#[path = "support/mosquitto.rs"]
mod mosquitto;
mod support;

use mosquitto::Broker;
use plantgate::model::{Downtime, Event, EventBody, Millis, Production};
use plantgate::records::Lanes;
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::press::{self, wait_metric, PressRig};
use support::{eventually, get, metric};

/// One message as the subscriber got it; the properties are an MQTT 5
/// subscriber's only.
#[derive(Clone, Debug)]
struct Got {
    topic: String,
    payload: String,
    retain: bool,
    content_type: Option<String>,
    user_properties: Vec<(String, String)>,
}

impl Got {
    fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.payload).ok()
    }
}

/// An MQTT client of its own (not the gateway's code path), collecting
/// what it gets on its subscription.
struct Subscriber {
    got: Arc<Mutex<Vec<Got>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// A persistent session (clean_session = false) subscribed with QoS 1
    /// to `filter`, so a broker that keeps sessions over a restart queues
    /// what it missed.
    async fn start(port: u16, id: &str, filter: &str) -> Subscriber {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = AsyncClient::new(o, 64);
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        Subscriber::collect("subscriber subscribed", |got, subscribed| async move {
            let _client = client;
            loop {
                match events.poll().await {
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => got.lock().unwrap().push(Got {
                        topic: p.topic.clone(),
                        payload: String::from_utf8_lossy(&p.payload).into_owned(),
                        retain: p.retain,
                        content_type: None,
                        user_properties: Vec::new(),
                    }),
                    Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                        subscribed.store(true, Ordering::Release)
                    }
                    Ok(_) => {}
                    // The broker is away: poll again (rumqttc
                    // reconnects), at a modest pace.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
        .await
    }

    /// An MQTT 5 subscriber on `filter` (a clean start, QoS 1), keeping
    /// each message's properties.
    async fn start5(port: u16, id: &str, filter: &str) -> Subscriber {
        use rumqttc::v5::mqttbytes::v5::Packet as P5;
        use rumqttc::v5::{AsyncClient as Client5, Event as Event5, MqttOptions as Options5};
        let mut o = Options5::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut events) = Client5::new(o, 64);
        client
            .subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        Subscriber::collect(
            "MQTT 5 subscriber subscribed",
            |got, subscribed| async move {
                let _client = client;
                loop {
                    match events.poll().await {
                        Ok(Event5::Incoming(P5::Publish(p))) => {
                            let props = p.properties.clone().unwrap_or_default();
                            got.lock().unwrap().push(Got {
                                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                                payload: String::from_utf8_lossy(&p.payload).into_owned(),
                                retain: p.retain,
                                content_type: props.content_type,
                                user_properties: props.user_properties,
                            })
                        }
                        Ok(Event5::Incoming(P5::SubAck(_))) => {
                            subscribed.store(true, Ordering::Release)
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            },
        )
        .await
    }

    /// Run a client's event loop (`poll`, which pushes each message into
    /// its first argument and sets the second on the SUBACK) as a task;
    /// back once the broker acknowledged the subscription.
    async fn collect<F, Fut>(what: &str, poll: F) -> Subscriber
    where
        F: FnOnce(Arc<Mutex<Vec<Got>>>, Arc<AtomicBool>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let got = Arc::new(Mutex::new(Vec::new()));
        let subscribed = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(poll(got.clone(), subscribed.clone()));
        eventually(Duration::from_secs(20), what, || {
            let s = subscribed.clone();
            async move { s.load(Ordering::Acquire).then_some(()) }
        })
        .await;
        Subscriber { got, task }
    }

    fn all(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Event messages (not the status topic), as JSON.
    fn events(&self) -> Vec<serde_json::Value> {
        self.all()
            .iter()
            .filter(|g| !g.topic.ends_with("/status"))
            .filter_map(Got::json)
            .collect()
    }

    /// Distinct event ids received.
    fn ids(&self) -> HashSet<String> {
        self.events()
            .iter()
            .filter_map(|v| v["id"].as_str().map(str::to_string))
            .collect()
    }

    /// Payloads seen on a topic, in order.
    fn on(&self, topic: &str) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|g| g.topic == topic)
            .map(|g| g.payload)
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A mosquitto that keeps sessions and queued messages over a restart:
/// persistence on, stopped with SIGTERM (it then saves its database); and
/// no limit on the messages it queues for a subscriber.
struct DurableBroker {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl DurableBroker {
    fn start() -> DurableBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = support::free_port();
        let text = format!(
            "listener {port} 127.0.0.1\nuser root\nallow_anonymous true\npersistence true\npersistence_location {dir}/\nautosave_interval 0\nmax_queued_messages 0\nlog_dest file {dir}/mosquitto.log\n",
            dir = dir.path().display()
        );
        std::fs::write(dir.path().join("mosquitto.conf"), text).expect("conf");
        let mut b = DurableBroker {
            port,
            dir,
            child: None,
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto not listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait: mosquitto writes its sessions to disk.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let ok = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .expect("kill -TERM");
            assert!(ok.success());
            c.wait().expect("reap mosquitto");
        }
    }
}

impl Drop for DurableBroker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `[mqtt_sink]` section for a broker on this host.
fn sink_section(port: u16, extra: &str) -> String {
    format!(
        r#"
[mqtt_sink]
url = "mqtt://127.0.0.1:{port}"
keep_alive = "5s"
backoff_min = "50ms"
backoff_max = "500ms"
{extra}
"#
    )
}

/// An in-process gateway on the press rig, publishing to `port`.
async fn rig(port: u16, extra: &str) -> PressRig {
    press::start(&sink_section(port, extra), "127.0.0.1:0").await
}

/// Events made directly (the sink's tests need many, fast): production
/// and downtime starts for work centers PRESS1..PRESS3, numbered from
/// `from`; the number is in the id and, per key, rises.
fn events(from: u64, n: u64) -> Vec<Event> {
    (from..from + n)
        .map(|i| {
            let key = format!("PRESS{}", 1 + i % 3);
            let body = if i % 10 == 0 {
                EventBody::DowntimeStarted(Downtime {
                    workcenter: key.clone(),
                    downtime_id: format!("dt-{i}"),
                    state: 2,
                    loss: "mrp.block_reason1".into(),
                    description: "Hydraulic fault".into(),
                    start: Millis(1_700_000_000_000 + i as i64),
                    end: None,
                })
            } else {
                EventBody::Production(Production {
                    workcenter: key.clone(),
                    quantity: 1,
                    counter_from: i,
                    counter_to: i + 1,
                })
            };
            let rule = if i % 10 == 0 { "stops" } else { "parts" };
            Event {
                id: format!("gw1-test-{i:08}"),
                rule: rule.into(),
                time: Millis(1_700_000_000_000 + i as i64),
                body,
            }
        })
        .collect()
}

/// Commit events to the rig's store as the edge would.
async fn commit(rig: &PressRig, evs: &[Event]) {
    let cfg = plantgate::config::load(&rig.config_path()).expect("config");
    let lanes = Lanes::new(&cfg.events);
    let records: Vec<_> = evs
        .iter()
        .map(|e| lanes.record(e).expect("record"))
        .collect();
    rig.gateway
        .store
        .commit(&records, &[])
        .await
        .expect("commit");
}

/// Every id's first arrival, per key and lane, comes in the order the
/// events were made (repeats after a reconnect aside).
fn assert_order_per_key(events: &[serde_json::Value]) {
    let mut seen = HashSet::new();
    let mut last: BTreeMap<(String, String), String> = BTreeMap::new();
    for v in events {
        let id = v["id"].as_str().expect("id").to_string();
        if !seen.insert(id.clone()) {
            continue;
        }
        let k = (
            v["key"].as_str().expect("key").to_string(),
            v["lane"].as_str().expect("lane").to_string(),
        );
        if let Some(prev) = last.get(&k) {
            assert!(*prev < id, "{k:?}: {id} arrived first after {prev}");
        }
        last.insert(k, id);
    }
}

async fn mqtt_depth(base: &str) -> Option<f64> {
    let m = get(&format!("{base}/metrics")).await?;
    let lane = |l: &str| {
        metric(
            &m,
            &format!("plantgate_queue_depth{{sink=\"mqtt\",lane=\"{l}\"}}"),
        )
    };
    Some(lane("critical")? + lane("normal")? + lane("bulk")?)
}

/// Wait until the gateway at `base` holds no event for the MQTT sink.
async fn lanes_empty(base: &str, limit: Duration) {
    eventually(limit, "mqtt lanes empty", || async {
        mqtt_depth(base).await.filter(|d| *d == 0.0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_published_as_versioned_json_with_its_id() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "sub-all", "plantgate/gw1/#").await;
    let rig = rig(broker.port, "").await;
    let evs = events(0, 300);
    commit(&rig, &evs).await;

    eventually(
        Duration::from_secs(30),
        "300 events at the subscriber",
        || {
            let n = sub.ids().len();
            async move { (n == 300).then_some(()) }
        },
    )
    .await;
    let got = sub.events();
    assert_order_per_key(&got);
    let first = got
        .iter()
        .find(|v| v["id"] == "gw1-test-00000001")
        .expect("event 1");
    assert_eq!(first["schema"], 1);
    assert_eq!(first["gateway"], "gw1");
    assert_eq!(first["kind"], "production");
    assert_eq!(first["key"], "PRESS2");
    assert_eq!(first["lane"], "normal");
    assert_eq!(first["rule"], "parts");
    assert_eq!(first["payload"]["quantity"], 1);
    assert_eq!(first["payload"]["counter_to"], 2);
    let stop = got
        .iter()
        .find(|v| v["id"] == "gw1-test-00000010")
        .expect("event 10");
    assert_eq!(stop["kind"], "downtime_started");
    assert_eq!(stop["lane"], "critical");
    assert_eq!(stop["payload"]["downtime_id"], "dt-10");
    // Each on its kind-and-key topic, not retained by default.
    let all = sub.all();
    let m1 = all
        .iter()
        .find(|g| g.payload.contains("gw1-test-00000001"))
        .expect("message 1");
    assert_eq!(m1.topic, "plantgate/gw1/production/PRESS2");
    assert!(!m1.retain);
    assert_eq!(sub.on("plantgate/gw1/status"), vec!["online".to_string()]);

    // Acknowledged in the store only after PUBACK: the lane empties, and
    // the counters and /status say so.
    lanes_empty(&rig.base, Duration::from_secs(20)).await;
    let m = get(&format!("{}/metrics", rig.base))
        .await
        .expect("metrics");
    assert_eq!(
        metric(&m, r#"plantgate_mqtt_sink_acked_total{sink="mqtt"}"#),
        Some(300.0)
    );
    assert_eq!(
        metric(&m, r#"plantgate_mqtt_sink_connected{sink="mqtt"}"#),
        Some(1.0)
    );
    assert!(metric(&m, r#"plantgate_mqtt_sink_published_total{sink="mqtt"}"#) >= Some(300.0));
    let status: serde_json::Value =
        serde_json::from_str(&get(&format!("{}/status", rig.base)).await.expect("status"))
            .expect("json");
    let s = &status["sinks"]["mqtt"];
    assert_eq!(s["connected"], true, "{s}");
    assert_eq!(s["delivered"], 300, "{s}");
    assert_eq!(s["queue_depth"], 0, "{s}");
    assert!(s["api"].as_str().unwrap_or("").contains("MQTT"), "{s}");
    rig.gateway.stop().await;
    // A clean stop says goodbye on the status topic.
    eventually(Duration::from_secs(10), "offline after stop", || {
        let s = sub.on("plantgate/gw1/status");
        async move { (s.last().map(String::as_str) == Some("offline")).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restarted_mid_stream_every_event_arrives_in_order_per_key() {
    broker_restart("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_broker_restarted_mid_stream_every_event_arrives_in_order_per_key() {
    broker_restart("protocol = \"5\"").await;
}

async fn broker_restart(protocol: &str) {
    let mut broker = DurableBroker::start();
    let sub = Subscriber::start(broker.port, "sub-restart", "plantgate/gw1/#").await;
    let rig = rig(broker.port, &format!("max_in_flight = 64\n{protocol}")).await;
    const TOTAL: u64 = 20_000;
    let cfg = plantgate::config::load(&rig.config_path()).expect("config");
    let lanes = Lanes::new(&cfg.events);
    let store = rig.gateway.store.clone();
    let produce = |from: u64, n: u64| {
        let (store, lanes) = (store.clone(), lanes.clone());
        async move {
            for batch in (from..from + n).step_by(50) {
                let records: Vec<_> = events(batch, 50)
                    .iter()
                    .map(|e| lanes.record(e).expect("record"))
                    .collect();
                store.commit(&records, &[]).await.expect("commit");
            }
        }
    };
    // The first half of the stream; the broker stops while it flows.
    let first = tokio::spawn(produce(0, TOTAL / 2));
    eventually(
        Duration::from_secs(30),
        "a part of the stream arrived",
        || {
            let n = sub.ids().len();
            async move { (n >= 500).then_some(()) }
        },
    )
    .await;
    broker.stop();
    first.await.expect("first half");
    eventually(
        Duration::from_secs(20),
        "the sink saw the broker go",
        || async {
            let s = get(&format!("{}/status", rig.base)).await?;
            let v: serde_json::Value = serde_json::from_str(&s).ok()?;
            (v["sinks"]["mqtt"]["connected"] == false).then_some(())
        },
    )
    .await;
    // Mid-stream indeed: events were left unacknowledged by the stop.
    let left = rig.gateway.store.depth("mqtt");
    assert!(left > 0, "the whole first half was through before the stop");
    // The second half is committed while the broker is away.
    produce(TOTAL / 2, TOTAL / 2).await;
    broker.spawn();
    eventually(Duration::from_secs(60), "every event at least once", || {
        let n = sub.ids().len();
        async move { (n as u64 == TOTAL).then_some(()) }
    })
    .await;
    let got = sub.events();
    assert_order_per_key(&got);
    let ids = sub.ids();
    for i in 0..TOTAL {
        assert!(ids.contains(&format!("gw1-test-{i:08}")), "event {i} lost");
    }
    let m = get(&format!("{}/metrics", rig.base))
        .await
        .expect("metrics");
    assert!(metric(&m, r#"plantgate_mqtt_sink_reconnects_total{sink="mqtt"}"#) >= Some(1.0));
    lanes_empty(&rig.base, Duration::from_secs(20)).await;
    rig.gateway.stop().await;
}

/// A gateway process, killed when the test ends (also by a panic).
struct Gw(Child);

impl Gw {
    fn spawn(cfg: &Path) -> Gw {
        Gw(support::spawn_gateway(cfg))
    }

    /// SIGKILL, and reap.
    fn kill(&mut self) {
        self.0.kill().expect("kill -9");
        self.0.wait().expect("reap");
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The press config with the sink, its production reported per part.
fn process_config(dir: &Path, peers: &press::Peers, port: u16, status: &str) -> PathBuf {
    let text = peers.config(dir, status) + &sink_section(port, "");
    let path = dir.join("gw.toml");
    std::fs::write(&path, text).expect("config");
    path
}

async fn parts_published(sub: &Subscriber) -> u64 {
    // By id: a repeat after the restart counts once.
    let mut by_id = BTreeMap::new();
    for v in sub.events() {
        if v["kind"] == "production" {
            if let (Some(id), Some(q)) = (v["id"].as_str(), v["payload"]["quantity"].as_u64()) {
                by_id.insert(id.to_string(), q);
            }
        }
    }
    by_id.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_mid_stream_loses_nothing_and_its_will_says_offline() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "sub-kill", "plantgate/gw1/#").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = press::Peers::start(1000).await;
    let status = format!("127.0.0.1:{}", support::free_port());
    let cfg = process_config(dir.path(), &peers, broker.port, &status);
    let mut child = Gw::spawn(&cfg);
    eventually(Duration::from_secs(30), "online", || {
        let s = sub.on("plantgate/gw1/status");
        async move { (s.last().map(String::as_str) == Some("online")).then_some(()) }
    })
    .await;
    let bump = |n: u32| {
        let regs = peers.regs.clone();
        async move {
            for _ in 0..n {
                regs.set_u32(support::COUNTER, regs.get_u32(support::COUNTER) + 1);
                tokio::time::sleep(Duration::from_millis(70)).await;
            }
        }
    };
    // Wait for the baseline reading, so the first parts count.
    eventually(Duration::from_secs(20), "gateway polling", || async {
        let m = get(&format!("http://{status}/metrics")).await?;
        metric(&m, r#"plantgate_samples_total{source="press1"}"#).filter(|n| *n >= 4.0)
    })
    .await;
    bump(10).await;
    eventually(Duration::from_secs(30), "parts published", || async {
        (parts_published(&sub).await >= 3).then_some(())
    })
    .await;
    // Parts keep coming while the gateway dies without a word.
    let during = tokio::spawn(bump(10));
    child.kill();
    eventually(Duration::from_secs(30), "the will: offline", || {
        let s = sub.on("plantgate/gw1/status");
        async move { (s.last().map(String::as_str) == Some("offline")).then_some(()) }
    })
    .await;
    during.await.expect("press");
    child = Gw::spawn(&cfg);
    eventually(Duration::from_secs(30), "online again", || {
        let s = sub.on("plantgate/gw1/status");
        async move { (s.last().map(String::as_str) == Some("online")).then_some(()) }
    })
    .await;
    bump(5).await;
    let made = u64::from(peers.regs.get_u32(support::COUNTER) - 1000);
    assert_eq!(made, 25);
    eventually(Duration::from_secs(60), "every part published", || async {
        (parts_published(&sub).await == made).then_some(())
    })
    .await;
    let status_msgs = sub.on("plantgate/gw1/status");
    assert_eq!(
        status_msgs,
        ["online", "offline", "online"].map(String::from).to_vec()
    );
    assert_order_per_key(&sub.events());
    child.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odoo_down_does_not_hold_back_mqtt() {
    // No per-subscriber queue limit: mosquitto's default (1000) would drop
    // messages for a subscriber slower than the gateway.
    let broker = DurableBroker::start();
    let sub = Subscriber::start(broker.port, "sub-odoo-down", "plantgate/gw1/#").await;
    let rig = rig(broker.port, "").await;
    rig.odoo.stop().await;
    const N: u64 = 5000;
    commit(&rig, &events(0, N)).await;
    eventually(Duration::from_secs(60), "all events over MQTT", || {
        let n = sub.ids().len() as u64;
        async move { (n == N).then_some(()) }
    })
    .await;
    // The broker's PUBACKs can reach the store after the subscriber has
    // the messages: wait for the last acknowledgements.
    eventually(
        Duration::from_secs(60),
        "every MQTT event acknowledged",
        || {
            let d = rig.gateway.store.depth("mqtt");
            async move { (d == 0).then_some(()) }
        },
    )
    .await;
    // Odoo still has every one of them to do.
    let depth = rig.gateway.store.depth("odoo");
    assert_eq!(depth, N, "Odoo's lanes while it is down");
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_does_not_hold_back_odoo() {
    let mut broker = DurableBroker::start();
    // Subscribed before the broker goes: its session (kept over the
    // restart) collects what the gateway publishes once it is back.
    let sub = Subscriber::start(broker.port, "sub-late", "plantgate/gw1/#").await;
    broker.stop();
    let rig = rig(broker.port, "").await;
    rig.produce(8).await;
    eventually(Duration::from_secs(30), "8 parts in Odoo", || {
        let q = rig.odoo.workorder(rig.workorder).map(|w| w.qty_produced);
        async move { (q == Some(8.0)).then_some(()) }
    })
    .await;
    // The MQTT sink holds them until its broker is back…
    let held = rig.gateway.store.depth("mqtt");
    assert!(held >= 1, "events waiting for the broker: {held}");
    let m = get(&format!("{}/metrics", rig.base))
        .await
        .expect("metrics");
    assert_eq!(
        metric(&m, r#"plantgate_mqtt_sink_connected{sink="mqtt"}"#),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, r#"plantgate_mqtt_sink_acked_total{sink="mqtt"}"#),
        Some(0.0)
    );
    // …then publishes them.
    broker.spawn();
    lanes_empty(&rig.base, Duration::from_secs(30)).await;
    eventually(Duration::from_secs(20), "8 parts over MQTT", || async {
        (parts_published(&sub).await == 8).then_some(())
    })
    .await;
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_last_state_leaves_each_topic_its_last_event() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "sub-retain", "plantgate/gw1/#").await;
    let rig = rig(broker.port, "retain_last_state = true").await;
    commit(&rig, &events(1, 29)).await;
    eventually(Duration::from_secs(30), "29 events", || {
        let n = sub.ids().len();
        async move { (n == 29).then_some(()) }
    })
    .await;
    lanes_empty(&rig.base, Duration::from_secs(20)).await;
    // A consumer that joins now gets one retained message per topic: the
    // last event of that kind and key.
    let late = Subscriber::start(broker.port, "sub-retain-late", "plantgate/gw1/+/+").await;
    eventually(Duration::from_secs(20), "retained messages", || {
        let n = late.all().len();
        async move { (n >= 5).then_some(()) }
    })
    .await;
    let got = late.all();
    assert!(got.iter().all(|g| g.retain), "{got:?}");
    let by_topic: BTreeMap<String, String> = got
        .iter()
        .map(|g| {
            let id = g.json().expect("json")["id"]
                .as_str()
                .expect("id")
                .to_string();
            (g.topic.clone(), id)
        })
        .collect();
    // Events 1..=29: i % 3 picks PRESS1..3, i % 10 == 0 a stop.
    let expected: BTreeMap<String, String> = [
        ("plantgate/gw1/production/PRESS1", 27),
        ("plantgate/gw1/production/PRESS2", 28),
        ("plantgate/gw1/production/PRESS3", 29),
        ("plantgate/gw1/downtime_started/PRESS2", 10),
        ("plantgate/gw1/downtime_started/PRESS3", 20),
    ]
    .into_iter()
    .map(|(t, i)| (t.to_string(), format!("gw1-test-{i:08}")))
    .collect();
    assert_eq!(by_topic, expected);
    rig.gateway.stop().await;
}

/// A gateway publishing SLA alerts to `plantgate/gw1/alerts` (the normal
/// lane's target 1 s), whose Odoo circuit retries after 300 ms.
async fn alert_rig(port: u16) -> PressRig {
    let extra = sink_section(
        port,
        "sla_alert_topic = \"plantgate/{gateway}/alerts\"\n\n[store.lanes.normal]\ntarget = \"1s\"\n",
    );
    press::start_edited(
        |t, _| {
            t.replace(
                "retry_max = \"400ms\"",
                "retry_max = \"400ms\"\ncircuit_cooldown = \"300ms\"",
            ) + &extra
        },
        "127.0.0.1:0",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_past_its_target_is_published_as_an_alert() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "sub-alerts", "plantgate/gw1/alerts").await;
    let rig = alert_rig(broker.port).await;
    rig.odoo.stop().await;
    // Production events only: Odoo's normal lane, PRESS1 (known to Odoo).
    let evs: Vec<Event> = events(0, 30)
        .into_iter()
        .filter(|e| e.key() == "PRESS1" && e.kind() == "production")
        .collect();
    commit(&rig, &evs).await;
    let alerts = |active: bool| {
        sub.all()
            .iter()
            .filter_map(Got::json)
            .filter(|v| v["active"] == active)
            .collect::<Vec<_>>()
    };
    eventually(
        Duration::from_secs(30),
        "an alert for Odoo's normal lane",
        || {
            let a = alerts(true);
            async move { (!a.is_empty()).then_some(a) }
        },
    )
    .await;
    let a = &alerts(true)[0];
    assert_eq!(a["schema"], 1);
    assert_eq!(a["alert"], "lane_past_target");
    assert_eq!(a["sink"], "odoo");
    assert_eq!(a["lane"], "normal");
    // The MQTT sink itself kept within its target.
    assert!(alerts(true).iter().all(|a| a["sink"] == "odoo"));
    rig.odoo.resume().await;
    eventually(Duration::from_secs(60), "the alert cleared", || {
        let a = alerts(false);
        async move { (!a.is_empty()).then_some(()) }
    })
    .await;
    let cleared = &alerts(false)[0];
    assert_eq!(cleared["sink"], "odoo");
    assert_eq!(cleared["lane"], "normal");
    rig.gateway.stop().await;
}

/// `[mqtt_sink]` over mutual TLS to a broker whose certificate names
/// broker.test, trusting `ca`.
fn tls_section(port: u16, ca: &Path, pki: &mosquitto::Pki) -> String {
    format!(
        r#"
[mqtt_sink]
url = "mqtts://127.0.0.1:{port}"
ca_file = "{ca}"
client_certificate = "{cert}"
client_key = "{key}"
server_name = "broker.test"
backoff_min = "50ms"
backoff_max = "300ms"
"#,
        ca = ca.display(),
        cert = pki.client_cert.display(),
        key = pki.client_key.display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_over_mutual_tls_and_refuses_a_broker_it_does_not_trust() {
    let certs = tempfile::tempdir().expect("tempdir");
    let pki = mosquitto::Pki::make(certs.path());
    let broker = Broker::with_tls(&pki);
    let rig = press::start(&tls_section(broker.port, &pki.ca, &pki), "127.0.0.1:0").await;
    commit(&rig, &events(0, 50)).await;
    // Acknowledged only on the TLS broker's PUBACK.
    eventually(
        Duration::from_secs(30),
        "50 acknowledged over TLS",
        || async {
            let m = get(&format!("{}/metrics", rig.base)).await?;
            metric(&m, r#"plantgate_mqtt_sink_acked_total{sink="mqtt"}"#).filter(|n| *n == 50.0)
        },
    )
    .await;
    rig.gateway.stop().await;

    // Another CA: the broker's certificate is not trusted, nothing is sent.
    let other = tempfile::tempdir().expect("tempdir");
    let stranger = mosquitto::Pki::make(other.path());
    let rig = press::start(&tls_section(broker.port, &stranger.ca, &pki), "127.0.0.1:0").await;
    commit(&rig, &events(0, 5)).await;
    let s = eventually(
        Duration::from_secs(30),
        "a TLS error on /status",
        || async {
            let s = get(&format!("{}/status", rig.base)).await?;
            let v: serde_json::Value = serde_json::from_str(&s).ok()?;
            let m = v["sinks"]["mqtt"].clone();
            m["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("TLS"))
                .then_some(m)
        },
    )
    .await;
    assert_eq!(s["connected"], false, "{s}");
    assert_eq!(rig.gateway.store.depth("mqtt"), 5);
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_survives_kill_9_mid_publish() {
    const N: u64 = 10_000;
    // No per-subscriber queue limit (see odoo_down_does_not_hold_back_mqtt).
    let broker = DurableBroker::start();
    let sub = Subscriber::start(broker.port, "sub-backlog", "plantgate/gw1/#").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = press::Peers::start(1000).await;
    // Odoo away: the gateway's work is the MQTT backlog only.
    peers.odoo.stop().await;
    let status = format!("127.0.0.1:{}", support::free_port());
    let cfg = process_config(dir.path(), &peers, broker.port, &status);
    {
        // The backlog, queued as a gateway that ran before left it.
        let parsed = plantgate::config::load(&cfg).expect("config");
        let lanes = Lanes::new(&parsed.events);
        let store = plantgate::store::Store::open(
            &dir.path().join("data/store"),
            &plantgate::pipeline::sink_names(&parsed),
            &parsed.store,
            &plantgate::store::migrate::NoUpgrade,
        )
        .expect("store");
        for batch in (0..N).step_by(500) {
            let records: Vec<_> = events(batch, 500)
                .iter()
                .map(|e| lanes.record(e).expect("record"))
                .collect();
            store.commit(&records, &[]).await.expect("commit");
        }
        store.sync().await.expect("sync");
    }
    let mut child = Gw::spawn(&cfg);
    eventually(Duration::from_secs(60), "publishing under way", || {
        let n = sub.ids().len();
        async move { (n >= 500).then_some(()) }
    })
    .await;
    child.kill();
    let at_kill = sub.ids().len() as u64;
    assert!(at_kill < N, "the backlog was through before the kill");
    child = Gw::spawn(&cfg);
    eventually(
        Duration::from_secs(90),
        "every event of the backlog",
        || {
            let n = sub.ids().len() as u64;
            async move { (n == N).then_some(()) }
        },
    )
    .await;
    assert_order_per_key(&sub.events());
    lanes_empty(&format!("http://{status}"), Duration::from_secs(30)).await;
    child.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_events_are_delivered_as_json_with_their_id_and_acknowledged_on_puback() {
    let broker = Broker::start();
    let sub = Subscriber::start5(broker.port, "sub5", "plantgate/gw1/#").await;
    let rig = rig(broker.port, "protocol = \"5\"").await;
    commit(&rig, &events(0, 300)).await;
    let ids = || {
        sub.all()
            .iter()
            .filter_map(|g| serde_json::from_str::<serde_json::Value>(&g.payload).ok())
            .filter_map(|v| v["id"].as_str().map(str::to_string))
            .collect::<HashSet<_>>()
    };
    eventually(Duration::from_secs(30), "300 events over MQTT 5", || {
        let n = ids().len();
        async move { (n == 300).then_some(()) }
    })
    .await;
    let all = sub.all();
    let events: Vec<serde_json::Value> = all
        .iter()
        .filter(|g| !g.topic.ends_with("/status"))
        .filter_map(|g| serde_json::from_str(&g.payload).ok())
        .collect();
    assert_order_per_key(&events);
    // Each says it is JSON and carries its event id as a user property.
    let m1 = all
        .iter()
        .find(|g| g.payload.contains("\"gw1-test-00000001\""))
        .expect("event 1");
    assert_eq!(m1.topic, "plantgate/gw1/production/PRESS2");
    assert_eq!(m1.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        m1.user_properties,
        vec![("event_id".to_string(), "gw1-test-00000001".to_string())]
    );
    // Acknowledged in the store on the broker's PUBACK.
    lanes_empty(&rig.base, Duration::from_secs(20)).await;
    let m = get(&format!("{}/metrics", rig.base))
        .await
        .expect("metrics");
    assert_eq!(
        metric(&m, r#"plantgate_mqtt_sink_acked_total{sink="mqtt"}"#),
        Some(300.0)
    );
    assert!(rig
        .gateway
        .store
        .dead_letters(Some("mqtt"))
        .expect("dlq")
        .is_empty());
    let status: serde_json::Value =
        serde_json::from_str(&get(&format!("{}/status", rig.base)).await.expect("status"))
            .expect("json");
    let s = &status["sinks"]["mqtt"];
    assert!(
        s["api"].as_str().unwrap_or("").starts_with("MQTT 5,"),
        "{s}"
    );
    rig.gateway.stop().await;
    drop(sub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_a_topic_the_broker_refuses_is_dead_lettered_not_acknowledged() {
    // The gateway may write production and its status, not downtime.
    let broker = Broker::with_acl(
        "topic read plantgate/gw1/#\ntopic write plantgate/gw1/production/#\ntopic write plantgate/gw1/status\n",
    );
    let sub = Subscriber::start(broker.port, "sub-acl", "plantgate/gw1/#").await;
    let rig = rig(broker.port, "protocol = \"5\"").await;
    // 270 production events, 30 downtime starts (every tenth).
    commit(&rig, &events(0, 300)).await;
    let dead = eventually(
        Duration::from_secs(30),
        "30 refused events in the dead letters",
        || {
            let d = rig.gateway.store.dead_letters(Some("mqtt")).expect("dlq");
            async move { (d.len() == 30).then_some(d) }
        },
    )
    .await;
    for d in &dead {
        assert_eq!(d.kind, "downtime_started", "{d:?}");
        assert!(d.reason.contains("not_authorized"), "{}", d.reason);
        assert!(d.reason.contains(&d.event_id), "{}", d.reason);
    }
    eventually(
        Duration::from_secs(30),
        "270 production events delivered",
        || {
            let n = sub.ids().len();
            async move { (n == 270).then_some(()) }
        },
    )
    .await;
    lanes_empty(&rig.base, Duration::from_secs(20)).await;
    let m = get(&format!("{}/metrics", rig.base))
        .await
        .expect("metrics");
    // Only PUBACKs with success count as delivered; the refusals are
    // counted with their reason.
    assert_eq!(
        metric(&m, r#"plantgate_mqtt_sink_acked_total{sink="mqtt"}"#),
        Some(270.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"plantgate_mqtt_sink_refused_total{sink="mqtt",reason="not_authorized"}"#
        ),
        Some(30.0)
    );
    assert!(sub.events().iter().all(|v| v["kind"] == "production"));
    // The operator sees it on /status too.
    let status: serde_json::Value =
        serde_json::from_str(&get(&format!("{}/status", rig.base)).await.expect("status"))
            .expect("json");
    let s = &status["sinks"]["mqtt"];
    assert!(
        s.to_string().contains("not_authorized"),
        "the refusal on /status: {s}"
    );
    rig.gateway.stop().await;
}

/// Tag value messages seen for `tag`, as JSON, in order.
fn tag_messages(sub: &Subscriber, tag: &str) -> Vec<serde_json::Value> {
    sub.on(&format!("plantgate/gw1/tag/{tag}"))
        .iter()
        .filter_map(|p| serde_json::from_str(p).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selected_tag_values_are_published_retained_on_change_and_never_hold_back_the_edge() {
    let mut broker = Broker::start();
    let sub = Subscriber::start(broker.port, "sub-tags", "plantgate/gw1/tag/#").await;
    let rig = rig(broker.port, "tags = [\"sta*\"]\ntag_every = \"200ms\"").await;
    let good = |tag: &str| {
        tag_messages(&sub, tag)
            .into_iter()
            .filter(|v| v["quality"] == "good")
            .collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(20), "the state tag's value", || {
        let g = good("state");
        async move { (!g.is_empty()).then_some(()) }
    })
    .await;
    let first = &good("state")[0];
    assert_eq!(first["schema"], 1);
    assert_eq!(first["gateway"], "gw1");
    assert_eq!(first["tag"], "state");
    assert_eq!(first["value"], 1);
    assert!(
        first["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{first}"
    );
    rig.regs.set_u16(support::STATE, 2);
    eventually(Duration::from_secs(20), "the state's new value", || {
        let g = good("state");
        async move { g.last().is_some_and(|v| v["value"] == 2).then_some(()) }
    })
    .await;
    // The press is polled every 50 ms: on change only, so two values for
    // two states, never a repeat.
    let msgs = tag_messages(&sub, "state");
    for w in msgs.windows(2) {
        assert!(
            (&w[0]["value"], &w[0]["quality"]) != (&w[1]["value"], &w[1]["quality"]),
            "a repeated value: {msgs:?}"
        );
    }
    assert_eq!(
        good("state")
            .iter()
            .map(|v| v["value"].clone())
            .collect::<Vec<_>>(),
        vec![serde_json::json!(1), serde_json::json!(2)]
    );
    // The part counter is read as often, but not selected.
    assert!(sub
        .all()
        .iter()
        .all(|g| g.topic == "plantgate/gw1/tag/state"));
    // Retained: a subscriber that comes later gets the latest value.
    let late = Subscriber::start(broker.port, "sub-tags-late", "plantgate/gw1/tag/#").await;
    let got = eventually(Duration::from_secs(20), "the retained value", || {
        let g = late.all();
        async move { g.into_iter().next() }
    })
    .await;
    assert!(got.retain);
    assert_eq!(got.json().expect("json")["value"], 2);
    // Not in the store: tag values add no events.
    let m = get(&format!("{}/metrics", rig.base))
        .await
        .expect("metrics");
    assert!(metric(&m, r#"plantgate_mqtt_sink_tag_values_total{sink="mqtt"}"#) >= Some(2.0));
    assert_eq!(metric(&m, "plantgate_tag_values_dropped_total"), Some(0.0));
    assert_eq!(rig.gateway.store.depth("mqtt"), 0);

    // The broker gone: the edge goes on (parts reach Odoo).
    broker.kill();
    rig.produce(3).await;
    eventually(Duration::from_secs(30), "3 parts in Odoo", || {
        let q = rig.odoo.workorder(rig.workorder).map(|w| w.qty_produced);
        async move { (q == Some(3.0)).then_some(()) }
    })
    .await;
    // A new broker (no retained messages kept) gets the latest value again
    // after the reconnect.
    broker.restart();
    let again = Subscriber::start(broker.port, "sub-tags-again", "plantgate/gw1/tag/#").await;
    eventually(
        Duration::from_secs(30),
        "the latest value after the reconnect",
        || {
            let g = again.all();
            async move {
                g.iter()
                    .filter_map(Got::json)
                    .any(|v| v["tag"] == "state" && v["value"] == 2)
                    .then_some(())
            }
        },
    )
    .await;
    // The parts made meanwhile are published too, beside the tag values.
    lanes_empty(&rig.base, Duration::from_secs(30)).await;
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_alert_that_came_and_went_while_the_broker_was_down_is_published_after() {
    let mut broker = DurableBroker::start();
    // Its session is kept over the broker's restart.
    let sub = Subscriber::start(broker.port, "sub-alerts-away", "plantgate/gw1/alerts/#").await;
    let rig = alert_rig(broker.port).await;
    wait_metric(
        &rig.base,
        r#"plantgate_mqtt_sink_connected{sink="mqtt"}"#,
        1.0,
    )
    .await;
    broker.stop();
    eventually(
        Duration::from_secs(30),
        "the sink sees the broker gone",
        || async {
            let m = get(&format!("{}/metrics", rig.base)).await?;
            metric(&m, r#"plantgate_mqtt_sink_connected{sink="mqtt"}"#).filter(|v| *v == 0.0)
        },
    )
    .await;
    // While the broker is away, Odoo's normal lane goes past its target
    // and comes back.
    rig.odoo.stop().await;
    let evs: Vec<Event> = events(0, 30)
        .into_iter()
        .filter(|e| e.key() == "PRESS1" && e.kind() == "production")
        .collect();
    commit(&rig, &evs).await;
    let breached = r#"plantgate_lane_sla_breached{sink="odoo",lane="normal"}"#;
    wait_metric(&rig.base, breached, 1.0).await;
    rig.odoo.resume().await;
    eventually(
        Duration::from_secs(60),
        "the lane back within target",
        || async {
            let m = get(&format!("{}/metrics", rig.base)).await?;
            metric(&m, breached).filter(|v| *v == 0.0)
        },
    )
    .await;
    assert!(sub.all().is_empty(), "nothing could be published yet");
    broker.spawn();
    let alerts = || {
        sub.on("plantgate/gw1/alerts")
            .iter()
            .filter_map(|p| serde_json::from_str::<serde_json::Value>(p).ok())
            .filter(|v| v["sink"] == "odoo" && v["lane"] == "normal")
            .collect::<Vec<_>>()
    };
    eventually(
        Duration::from_secs(30),
        "both changes published after the reconnect",
        || {
            let a = alerts();
            async move { (a.len() >= 2).then_some(()) }
        },
    )
    .await;
    let a = alerts();
    assert_eq!(
        (&a[0]["active"], &a[1]["active"]),
        (&serde_json::json!(true), &serde_json::json!(false)),
        "{a:?}"
    );
    assert_eq!(a[0]["since"], a[1]["since"]);
    // The lane's own topic keeps its last state for later subscribers.
    let late = Subscriber::start(
        broker.port,
        "sub-alerts-late",
        "plantgate/gw1/alerts/odoo/normal",
    )
    .await;
    let last = eventually(Duration::from_secs(20), "the retained lane state", || {
        let g = late.all();
        async move { g.into_iter().next() }
    })
    .await;
    assert!(last.retain);
    assert_eq!(last.json().expect("json")["active"], false);
    rig.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_plainly_and_the_fixed_file_is_read_at_the_next_connect() {
    wrong_password("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_a_wrong_password_is_refused_plainly_and_the_fixed_file_is_read_at_the_next_connect()
{
    wrong_password("protocol = \"5\"").await;
}

async fn wrong_password(protocol: &str) {
    let broker = Broker::with_password("gw", "s3cret");
    let pwdir = tempfile::tempdir().expect("tempdir");
    let pw = pwdir.path().join("mqtt.pw");
    std::fs::write(&pw, "wrong\n").expect("password file");
    let extra = format!(
        "{protocol}\nusername = \"gw\"\npassword_file = \"{}\"",
        pw.display()
    );
    let rig = rig(broker.port, &extra).await;
    commit(&rig, &events(0, 50)).await;
    let error = eventually(Duration::from_secs(30), "the login refused", || async {
        let status: serde_json::Value =
            serde_json::from_str(&get(&format!("{}/status", rig.base)).await?).ok()?;
        let s = &status["sinks"]["mqtt"];
        let e = s["last_error"].as_str()?.to_string();
        (s["connected"] != true).then_some(e)
    })
    .await;
    assert!(
        error.starts_with("connection refused by the broker: not authorized")
            || error.starts_with("connection refused by the broker: bad user name or password"),
        "{error}"
    );
    assert!(
        !error.contains("wrong"),
        "the password is never shown: {error}"
    );
    assert_eq!(rig.gateway.store.depth("mqtt"), 50, "nothing acknowledged");
    // Fixing the file is enough: it is read again at each connect.
    std::fs::write(&pw, "s3cret\n").expect("password file");
    lanes_empty(&rig.base, Duration::from_secs(30)).await;
    rig.gateway.stop().await;
}
