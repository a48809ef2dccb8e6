#![cfg(feature = "mqtt")]
//! The MQTT source's Sparkplug B, size limit, dead letters and acks
//! against a real mosquitto (each test its own, on a free loopback port),
//! with an edge node built from the gateway's own prost schema on a real
//! MQTT client: births name metrics and aliases and give values, data by
//! alias reaches the tags, DDEATH and the node's will (its NDEATH, sent
//! by the broker when the node vanishes) make the tags bad, and a sequence
//! gap makes the gateway publish a rebirth request that the node receives.
//! Random bytes, deeply nested JSON and a message over `max_message_size`
//! are refused, counted and kept in the dead letters (`plantgate dlq list`
//! shows them) while good messages go on flowing; a QoS 1 message is
//! acknowledged to the broker only once its sample is committed.

#[path = "support/mosquitto.rs"]
mod mosquitto;
#[path = "support/opcua_rig.rs"]
mod opcua_rig;
mod support;

use mosquitto::{mqtt_source, Broker};
use opcua_rig::{gateway_config, good, start_sources};
use plantgate::model::{Quality, Sample, Value};
use plantgate::sources::mqtt::sparkplug::proto::{datatype as dt, Metric, MetricValue, Payload};
use prost::Message;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use std::time::Duration;
use support::{cli, eventually, get, metric};
use tokio::sync::mpsc;

const NODE_TOPIC: &str = "spBv1.0/plant1/+/press-gw";

/// Wait until the broker has answered `n` subscribe requests of clients
/// whose id starts with `client`.
async fn subscribed(broker: &Broker, client: &str, n: usize) {
    let what = format!("{n} subscriptions of {client}… at the broker");
    eventually(Duration::from_secs(30), &what, || {
        let log = broker.log();
        let acks = log.matches(&format!("Sending SUBACK to {client}")).count();
        async move { (acks >= n).then_some(()) }
    })
    .await;
}

fn topic(kind: &str, device: Option<&str>) -> String {
    let t = NODE_TOPIC.replace('+', kind);
    match device {
        Some(d) => format!("{t}/{d}"),
        None => t,
    }
}

fn m(name: Option<&str>, alias: Option<u64>, t: Option<u32>, v: MetricValue) -> Metric {
    Metric {
        name: name.map(str::to_string),
        alias,
        datatype: t,
        value: Some(v),
        ..Default::default()
    }
}

fn body(seq: Option<u64>, metrics: Vec<Metric>) -> Vec<u8> {
    Payload {
        timestamp: Some(plantgate::model::Millis::now().0 as u64),
        seq,
        metrics,
        ..Default::default()
    }
    .encode_to_vec()
}

fn bd_seq(n: u64) -> Metric {
    m(
        Some("bdSeq"),
        None,
        Some(dt::INT64),
        MetricValue::LongValue(n),
    )
}

/// A Sparkplug B edge node `plant1/press-gw` on its own connection, with
/// its NDEATH as will, subscribed to its commands.
struct EdgeNode {
    client: AsyncClient,
    commands: mpsc::UnboundedReceiver<Payload>,
    task: tokio::task::JoinHandle<()>,
}

impl EdgeNode {
    async fn connect(broker: &Broker) -> EdgeNode {
        let (host, port) = broker
            .address()
            .rsplit_once(':')
            .map(|(h, p)| (h.to_string(), p.parse().expect("port")))
            .expect("address");
        let mut o = MqttOptions::new("press-gw-edge", host, port);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_last_will(LastWill::new(
            topic("NDEATH", None),
            body(None, vec![bd_seq(0)]),
            QoS::AtLeastOnce,
            false,
        ));
        let (client, mut events) = AsyncClient::new(o, 64);
        let (tx, commands) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Ok(payload) = Payload::decode(p.payload.as_ref()) {
                            let _ = tx.send(payload);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        client
            .subscribe(topic("NCMD", None), QoS::AtLeastOnce)
            .await
            .expect("subscribe to NCMD");
        subscribed(broker, "press-gw-edge", 1).await;
        EdgeNode {
            client,
            commands,
            task,
        }
    }

    async fn send(&self, kind: &str, device: Option<&str>, bytes: Vec<u8>) {
        self.client
            .publish(topic(kind, device), QoS::AtLeastOnce, false, bytes)
            .await
            .expect("publish");
    }

    /// The node vanishes without a DISCONNECT: the broker sends its will.
    fn vanish(self) {
        self.task.abort();
    }
}

fn bad_with(why: &'static str) -> impl Fn(&Sample) -> bool {
    move |s| matches!(&s.quality, Quality::Bad(r) if r.contains(why))
}

const TAGS: &str = r#"
[[tags]]
name = "good_parts"
source = "broker"
device = "press1"
metric = "Counts/Good"
type = "u32"

[[tags]]
name = "temperature"
source = "broker"
device = "press1"
metric = "Temp"

[[tags]]
name = "mode"
source = "broker"
metric = "Node/Mode"
"#;

const SPARKPLUG: &str = r#"payload = "sparkplug"
group = "plant1"
node = "press-gw""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn births_data_by_alias_and_deaths_reach_the_tags_and_a_gap_asks_for_a_rebirth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start();
    let text = gateway_config(dir.path(), &mqtt_source(&broker.address(), SPARKPLUG), TAGS);
    let mut src = start_sources(dir.path(), &text);
    subscribed(&broker, "plantgate-gw1-broker", 1).await;
    assert!(
        broker
            .log()
            .contains("plantgate-gw1-broker 1 spBv1.0/plant1/+/press-gw/#"),
        "the source subscribes to its node's topics: {}",
        broker.log()
    );
    // On connect the gateway asks for the node's current values.
    eventually(Duration::from_secs(30), "a rebirth request on connect", || {
        let log = broker.log();
        async move {
            log.contains("Received PUBLISH from plantgate-gw1-broker (d0, q0, r0, m0, 'spBv1.0/plant1/NCMD/press-gw'")
                .then_some(())
        }
    })
    .await;
    let mut node = EdgeNode::connect(&broker).await;

    node.send(
        "NBIRTH",
        None,
        body(
            Some(0),
            vec![
                bd_seq(0),
                m(
                    Some("Node Control/Rebirth"),
                    Some(1),
                    Some(dt::BOOLEAN),
                    MetricValue::BooleanValue(false),
                ),
                m(
                    Some("Node/Mode"),
                    Some(2),
                    Some(dt::STRING),
                    MetricValue::StringValue("auto".into()),
                ),
            ],
        ),
    )
    .await;
    node.send(
        "DBIRTH",
        Some("press1"),
        body(
            Some(1),
            vec![
                m(
                    Some("Counts/Good"),
                    Some(10),
                    Some(dt::UINT32),
                    MetricValue::IntValue(100),
                ),
                m(
                    Some("Temp"),
                    Some(11),
                    Some(dt::FLOAT),
                    MetricValue::FloatValue(20.5),
                ),
            ],
        ),
    )
    .await;
    assert_eq!(
        src.next("mode", good).await.value,
        Value::Text("auto".into())
    );
    assert_eq!(src.next("good_parts", good).await.value, Value::UInt(100));
    assert_eq!(
        src.next("temperature", good).await.value,
        Value::Float(20.5)
    );

    // Data by alias only: the birth gave the names and types.
    node.send(
        "DDATA",
        Some("press1"),
        body(
            Some(2),
            vec![
                m(None, Some(10), None, MetricValue::IntValue(105)),
                m(None, Some(11), None, MetricValue::FloatValue(21.25)),
            ],
        ),
    )
    .await;
    assert_eq!(src.next("good_parts", good).await.value, Value::UInt(105));
    assert_eq!(
        src.next("temperature", good).await.value,
        Value::Float(21.25)
    );

    // The device dies: its tags are bad, the node's are not.
    node.send("DDEATH", Some("press1"), body(Some(3), vec![]))
        .await;
    src.next(
        "good_parts",
        bad_with("press1 of edge node plant1/press-gw is offline (DDEATH)"),
    )
    .await;
    src.next("temperature", bad_with("DDEATH")).await;
    let board = src.telemetry.snapshot();
    assert!(
        !board
            .bad_tags
            .contains_key(&("broker".into(), "mode".into())),
        "{:?}",
        board.bad_tags
    );
    assert!(
        node.commands.try_recv().is_err(),
        "no rebirth asked while the sequence holds"
    );

    node.send(
        "DBIRTH",
        Some("press1"),
        body(
            Some(4),
            vec![m(
                Some("Counts/Good"),
                Some(10),
                Some(dt::UINT32),
                MetricValue::IntValue(106),
            )],
        ),
    )
    .await;
    assert_eq!(src.next("good_parts", good).await.value, Value::UInt(106));

    // seq 9 after 4: messages were missed. The value still counts, and the
    // node is asked to be born again.
    node.send(
        "DDATA",
        Some("press1"),
        body(
            Some(9),
            vec![m(None, Some(10), None, MetricValue::IntValue(109))],
        ),
    )
    .await;
    assert_eq!(src.next("good_parts", good).await.value, Value::UInt(109));
    let command = tokio::time::timeout(Duration::from_secs(30), node.commands.recv())
        .await
        .expect("a rebirth request within 30 s")
        .expect("the node's client runs");
    assert_eq!(command.metrics.len(), 1);
    assert_eq!(
        command.metrics[0].name.as_deref(),
        Some("Node Control/Rebirth")
    );
    assert_eq!(command.metrics[0].datatype, Some(dt::BOOLEAN));
    assert_eq!(
        command.metrics[0].value,
        Some(MetricValue::BooleanValue(true))
    );

    // The node vanishes: the broker delivers its will, an NDEATH with the
    // birth's bdSeq, and every tag of the node goes bad.
    node.vanish();
    for tag in ["mode", "good_parts", "temperature"] {
        src.next(
            tag,
            bad_with("edge node plant1/press-gw is offline (NDEATH)"),
        )
        .await;
    }
    src.stop().await;
}

/// `n` levels of JSON arrays around a number.
fn deep_json(n: usize) -> String {
    format!("{}1{}", "[".repeat(n), "]".repeat(n))
}

fn publish_bytes(broker: &Broker, topic: &str, bytes: &[u8]) {
    let file = broker.dir().join("message.bin");
    std::fs::write(&file, bytes).expect("write message");
    let out = std::process::Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            broker.address().rsplit(':').next().expect("port"),
        ])
        .args(["-q", "1", "-t", topic, "-f"])
        .arg(&file)
        .output()
        .expect("run mosquitto_pub");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_refused_counted_and_dead_lettered_and_good_messages_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start();
    let sources = format!(
        "{}\n{}",
        mqtt_source(
            &broker.address(),
            "dead_letter = true\nmax_message_size = 4096"
        ),
        mqtt_source(
            &broker.address(),
            &format!("dead_letter = true\n{SPARKPLUG}")
        )
        .replace("name = \"broker\"", "name = \"spb\""),
    );
    let tags = r#"
[status]
listen = "127.0.0.1:0"

[[tags]]
name = "count"
source = "broker"
topic = "plant1/press1/count"
payload = "json"
pointer = "/value"
type = "u32"

[[tags]]
name = "good_parts"
source = "spb"
device = "press1"
metric = "Counts/Good"
"#;
    let text = gateway_config(dir.path(), &sources, tags);
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, &text).expect("config");
    let cfg = plantgate::config::parse(&text, &path).expect("config");
    let gateway = plantgate::pipeline::Gateway::start(cfg)
        .await
        .expect("start");
    subscribed(&broker, "plantgate-gw1-", 2).await;

    let noise: Vec<u8> = (0..512)
        .map(|_| fastrand::u8(..))
        .chain([0xff; 8])
        .collect();
    publish_bytes(&broker, "spBv1.0/plant1/NDATA/press-gw", &noise);
    broker.publish("plant1/press1/count", &deep_json(2_000), false);
    let oversize = format!(r#"{{"value": 1, "pad": "{}"}}"#, "x".repeat(10_000));
    broker.publish("plant1/press1/count", &oversize, false);
    broker.publish("plant1/press1/count", r#"{"value": 42}"#, false);

    let status = format!("http://{}/metrics", gateway.status_addr);
    let series =
        |name: &str, source: &str| format!("plantgate_mqtt_{name}_total{{source=\"{source}\"}}");
    eventually(Duration::from_secs(30), "three refusals counted", || {
        let status = status.clone();
        let want = [
            (series("payload_errors", "broker"), 2.0),
            (series("oversize_messages", "broker"), 1.0),
            (series("payload_errors", "spb"), 1.0),
            (series("dead_letters", "broker"), 2.0),
            (series("dead_letters", "spb"), 1.0),
        ];
        async move {
            let text = get(&status).await?;
            want.iter()
                .all(|(s, n)| metric(&text, s) == Some(*n))
                .then_some(())
        }
    })
    .await;
    // The gateway went on: the good message after the garbage is a sample
    // and the tag is good again.
    eventually(Duration::from_secs(30), "the good message read", || {
        let board = gateway.telemetry.snapshot();
        async move {
            (board.sources["broker"].samples >= 1
                && board.sources["broker"].connected
                && !board
                    .bad_tags
                    .contains_key(&("broker".into(), "count".into())))
            .then_some(())
        }
    })
    .await;

    let letters = gateway.store.dead_letters(None).expect("dead letters");
    assert_eq!(letters.len(), 3, "{letters:?}");
    let find = |topic: &str, why: &str| {
        letters
            .iter()
            .find(|d| d.key == topic && d.reason.contains(why))
            .unwrap_or_else(|| panic!("a dead letter of {topic} for {why:?} in {letters:?}"))
    };
    let spb = find("spBv1.0/plant1/NDATA/press-gw", "not Sparkplug B protobuf");
    assert_eq!(
        (spb.sink.as_str(), spb.payload.as_slice()),
        ("spb", noise.as_slice())
    );
    find("plant1/press1/count", "recursion limit");
    let big = find("plant1/press1/count", "over max_message_size (4096 bytes)");
    assert_eq!(
        big.payload.len(),
        4096,
        "at most max_message_size bytes are kept"
    );
    gateway.stop().await;

    let (code, out, err) = cli(&path, &["dlq", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("spBv1.0/plant1/NDATA/press-gw") && out.contains("over max_message_size"),
        "{out}"
    );
    let id = spb.id.to_string();
    let (code, _, err) = cli(&path, &["dlq", "replay", &id]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot be replayed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_acknowledged_only_once_its_sample_is_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start();
    let tags = r#"
[[tags]]
name = "count"
source = "broker"
topic = "plant1/press1/count"
"#;
    let text = gateway_config(dir.path(), &mqtt_source(&broker.address(), ""), tags);
    let mut src = start_sources(dir.path(), &text);
    subscribed(&broker, "plantgate-gw1-broker", 1).await;
    broker.publish("plant1/press1/count", "7", false);
    // Taken from the channel as the edge would, but not committed yet.
    let sample = tokio::time::timeout(Duration::from_secs(30), src.rx.recv())
        .await
        .expect("a sample within 30 s")
        .expect("the source runs");
    assert_eq!(sample.value, Value::UInt(7));
    let acked = |log: &str| log.contains("Received PUBACK from plantgate-gw1-broker");
    eventually(
        Duration::from_secs(30),
        "the broker's PUBLISH in its log",
        || {
            let log = broker.log();
            async move {
                log.contains("Sending PUBLISH to plantgate-gw1-broker")
                    .then_some(())
            }
        },
    )
    .await;
    // Nothing committed the sample yet, so no PUBACK may have gone out (a
    // wrong early one would be in the log by now).
    assert!(
        !acked(&broker.log()),
        "acknowledged before the commit: {}",
        broker.log()
    );
    sample.receipt.as_ref().expect("a receipt").committed();
    eventually(
        Duration::from_secs(30),
        "the PUBACK after the commit",
        || {
            let log = broker.log();
            async move { acked(&log).then_some(()) }
        },
    )
    .await;
    src.stop().await;
}
