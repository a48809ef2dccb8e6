//! Load program for the northbound MQTT sink (`cargo bench --bench mqtt_sink`).
//!
//! A store holding 100,000 queued production events (20 work centers) is
//! drained by the sink to a local mosquitto (its own, on a free loopback
//! port) with QoS 1: every event acknowledged in the store only after the
//! broker's PUBACK. Reports events/s from the sink's start until the
//! store holds none for it, for a few `max_in_flight` values. A subscriber
//! on `#` (QoS 1, so mosquitto forwards every message too) runs in a
//! second case; the same in MQTT 5 (PUBACK reason codes checked). Needs
//! /usr/sbin/mosquitto.

mod support;

use plantgate::config::mqtt::Protocol;
use plantgate::config::mqtt_sink::MqttSinkConfig;
use plantgate::sinks::latency::DeliveryLatency;
use plantgate::sinks::mqtt::config::{TopicTemplate, DEFAULT_TOPIC, KINDS};
use plantgate::sinks::mqtt::{metrics::MqttSinkMetrics, MqttSink};
use plantgate::status::sla::SlaWatch;
use plantgate::status::Telemetry;
use plantgate::store::migrate::NoUpgrade;
use plantgate::store::{Record, Store, StoreOptions};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const EVENTS: u64 = 100_000;

fn record(n: u64) -> Record {
    support::production_record("gw1-bench", n)
}

struct Mosquitto(Child);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mosquitto(dir: &std::path::Path, port: u16) -> Mosquitto {
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nuser root\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 0\n"),
    )
    .expect("conf");
    let child = Command::new("/usr/sbin/mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto not listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    Mosquitto(child)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// A subscriber on everything, counting what it receives.
fn subscriber(port: u16) -> Child {
    Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            "#",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("mosquitto_sub")
}

async fn run(protocol: Protocol, max_in_flight: u16, with_subscriber: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _broker = mosquitto(dir.path(), port);
    let mut sub = with_subscriber.then(|| subscriber(port));
    if with_subscriber {
        // Its subscription is in before the first publish.
        std::thread::sleep(Duration::from_millis(300));
    }
    let store = Arc::new(
        Store::open(
            &dir.path().join("store"),
            &["mqtt"],
            &StoreOptions::default(),
            &NoUpgrade,
        )
        .expect("store"),
    );
    for batch in (0..EVENTS).step_by(1000) {
        let records: Vec<Record> = (batch..batch + 1000).map(record).collect();
        store.commit(&records, &[]).await.expect("commit");
    }
    assert_eq!(store.depth("mqtt"), EVENTS);
    let config = MqttSinkConfig {
        protocol,
        host: "127.0.0.1".into(),
        port,
        tls: None,
        client_id: "plantgate-bench".into(),
        username: None,
        password_file: None,
        topic: TopicTemplate::parse(DEFAULT_TOPIC).expect("topic"),
        kinds: KINDS.iter().map(|k| k.to_string()).collect(),
        retain_last_state: false,
        status_topic: "plantgate/gw1/status".into(),
        sla_alert_topic: None,
        max_in_flight,
        keep_alive: Duration::from_secs(30),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        tag_values: None,
    };
    let sink = MqttSink {
        name: "mqtt".into(),
        config,
        gateway_id: "gw1".into(),
        store: store.clone(),
        telemetry: Arc::new(Telemetry::default()),
        metrics: Arc::new(MqttSinkMetrics::default()),
        latency: Arc::new(DeliveryLatency::default()),
        sla: Arc::new(SlaWatch::default()),
        tags: None,
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    let task = tokio::spawn(sink.run(stop_rx));
    while store.depth("mqtt") > 0 {
        assert!(start.elapsed() < Duration::from_secs(300), "sink stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    stop.send_replace(true);
    let _ = task.await;
    if let Some(s) = sub.as_mut() {
        let _ = s.kill();
        let _ = s.wait();
    }
    println!(
        "MQTT {:<5} max_in_flight {max_in_flight:>5}{}: {EVENTS} events published (QoS 1) and acknowledged in {secs:.2} s = {:.0} events/s",
        match protocol {
            Protocol::V311 => "3.1.1",
            Protocol::V5 => "5",
        },
        if with_subscriber { ", 1 subscriber" } else { "" },
        EVENTS as f64 / secs
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    for protocol in [Protocol::V311, Protocol::V5] {
        for (in_flight, sub) in [(64, false), (256, false), (1024, false), (256, true)] {
            run(protocol, in_flight, sub).await;
        }
    }
}
