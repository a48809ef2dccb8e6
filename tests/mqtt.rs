//! The MQTT source against a real mosquitto (each test its own, on a free
//! loopback port): plain and JSON payloads become samples with their values
//! and times, wildcard topics name tags from their levels, a payload that
//! gives no value is a counted bad sample and the next good one flows, a
//! killed broker is reconnected to, retained values are read on subscribe,
//! a wrong password is refused in plain words and retried (each of these
//! in MQTT 3.1.1 and 5), mutual TLS with a plant CA works, and an MQTT
//! counter and state drive production and downtime into (fake) Odoo;
//! conditioning (range, deadband) holds per name of a wildcard tag.
#![cfg(feature = "mqtt")]

#[path = "support/mosquitto.rs"]
mod mosquitto;
#[path = "support/opcua_rig.rs"]
mod opcua_rig;
mod support;

use mosquitto::{mqtt_source, Broker, Pki};
use opcua_rig::{gateway_config, good, start_sources, Sources};
use plantgate::model::{Millis, Quality, Value};
use std::time::Duration;
use support::{eventually, fake_odoo, metric};

const CLIENT: &str = "plantgate-gw1-broker";

/// Wait until the broker has answered `n` subscribe requests of the
/// gateway's client: messages published before that would not reach it.
async fn subscribed(broker: &Broker, n: usize) {
    let what = format!("{n} subscriptions of {CLIENT} at the broker");
    eventually(Duration::from_secs(30), &what, || {
        let log = broker.log();
        let acks = log.matches(&format!("Sending SUBACK to {CLIENT}")).count();
        async move { (acks >= n).then_some(()) }
    })
    .await;
}

fn start(dir: &std::path::Path, broker: &Broker, extra: &str, tags: &str) -> Sources {
    let text = gateway_config(dir, &mqtt_source(&broker.address(), extra), tags);
    start_sources(dir, &text)
}

const TAGS: &str = r#"
[[tags]]
name = "count"
source = "broker"
topic = "plant1/press1/count"
type = "u32"

[[tags]]
name = "temperature"
source = "broker"
topic = "plant1/press1/env"
payload = "json"
pointer = "/temp"
time_pointer = "/ts"

[[tags]]
name = "{1}_qc"
source = "broker"
topic = "plant1/+/qc"
payload = "json"
pointer = "/result/ok"
time_pointer = "/at"
type = "bool"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_json_payloads_become_samples_and_wildcards_name_tags() {
    payloads_and_wildcards("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_plain_and_json_payloads_become_samples_and_wildcards_name_tags() {
    payloads_and_wildcards("protocol = \"5\"").await;
}

async fn payloads_and_wildcards(protocol: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start();
    let mut src = start(dir.path(), &broker, protocol, TAGS);
    subscribed(&broker, 1).await;
    // mosquitto logs the version a client speaks: p2 is 3.1.1, p5 is 5.
    let version = if protocol.is_empty() { "(p2," } else { "(p5," };
    assert!(
        broker.log().contains(&format!("as {CLIENT} {version}")),
        "{}",
        broker.log()
    );

    let before = Millis::now();
    broker.publish("plant1/press1/count", "42", false);
    let s = src.next("count", good).await;
    assert_eq!(s.value, Value::UInt(42));
    assert!(s.time >= before, "a plain payload is timed when it arrives");

    broker.publish(
        "plant1/press1/env",
        r#"{"temp": 21.5, "ts": "2026-03-04T05:06:07.250Z"}"#,
        false,
    );
    let s = src.next("temperature", good).await;
    assert_eq!(s.value, Value::Float(21.5));
    assert_eq!(s.time.rfc3339(), "2026-03-04T05:06:07.250Z");

    // One entry serves every press: the `+` level names the tag.
    broker.publish(
        "plant1/press1/qc",
        r#"{"result": {"ok": true}, "at": 1700000000123}"#,
        false,
    );
    broker.publish(
        "plant1/press2/qc",
        r#"{"result": {"ok": 0}, "at": 1700000000456}"#,
        false,
    );
    let s = src.next("press1_qc", good).await;
    assert_eq!(
        (s.value, s.time),
        (Value::Bool(true), Millis(1_700_000_000_123))
    );
    let s = src.next("press2_qc", good).await;
    assert_eq!(
        (s.value, s.time),
        (Value::Bool(false), Millis(1_700_000_000_456))
    );

    let board = src.telemetry.snapshot();
    assert!(board.sources["broker"].connected);
    assert!(board.bad_tags.is_empty(), "{:?}", board.bad_tags);
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_payload_is_a_counted_bad_sample_and_the_next_good_one_flows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start();
    let mut src = start(dir.path(), &broker, "", TAGS);
    subscribed(&broker, 1).await;

    broker.publish("plant1/press1/count", "not a number", false);
    let s = src.next("count", |s| s.quality != Quality::Good).await;
    let Quality::Bad(why) = &s.quality else {
        panic!("expected a bad sample: {s:?}")
    };
    assert!(
        why.contains("plant1/press1/count") && why.contains("not a u32"),
        "{why}"
    );
    let board = src.telemetry.snapshot();
    let shown = &board.bad_tags[&("broker".to_string(), "count".to_string())];
    assert!(shown.contains("bad payload"), "{shown}");

    broker.publish("plant1/press1/env", "{oops", false);
    let s = src
        .next("temperature", |s| s.quality != Quality::Good)
        .await;
    assert!(
        matches!(&s.quality, Quality::Bad(w) if w.contains("not JSON")),
        "{s:?}"
    );
    // Nested deeper than the JSON parser goes: refused, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    broker.publish("plant1/press1/env", &deep, false);
    let s = src
        .next(
            "temperature",
            |s| matches!(&s.quality, Quality::Bad(w) if w.contains("recursion limit")),
        )
        .await;
    assert_eq!(s.value, Value::Int(0));
    let m = src.telemetry.encode();
    assert_eq!(
        metric(&m, "plantgate_mqtt_payload_errors_total{source=\"broker\"}"),
        Some(3.0),
        "{m}"
    );

    broker.publish("plant1/press1/count", "7", false);
    let s = src.next("count", good).await;
    assert_eq!(s.value, Value::UInt(7));
    let board = src.telemetry.snapshot();
    let count = ("broker".to_string(), "count".to_string());
    assert!(
        !board.bad_tags.contains_key(&count),
        "good again: {:?}",
        board.bad_tags
    );
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_broker_is_reconnected_and_retained_values_are_read() {
    reconnect_and_retained("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_a_killed_broker_is_reconnected_and_retained_values_are_read() {
    reconnect_and_retained("protocol = \"5\"").await;
}

async fn reconnect_and_retained(protocol: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = Broker::start();
    // Published before the gateway subscribes: the broker keeps it.
    broker.publish("plant1/press1/count", "5", true);
    let mut src = start(dir.path(), &broker, protocol, TAGS);
    let s = src.next("count", good).await;
    assert_eq!(s.value, Value::UInt(5));

    broker.kill();
    let s = src.next("count", |s| s.quality != Quality::Good).await;
    assert!(
        matches!(&s.quality, Quality::Bad(w) if w.contains("broker")),
        "{s:?}"
    );
    let t = src.telemetry.clone();
    eventually(Duration::from_secs(10), "the source down", || {
        let b = t.snapshot();
        let down = !b.sources["broker"].connected && b.sources["broker"].last_error.is_some();
        async move { down.then_some(()) }
    })
    .await;

    // A new broker process on the same port: the source connects again
    // (backoff) and subscribes anew.
    broker.restart();
    subscribed(&broker, 1).await;
    broker.publish("plant1/press1/count", "6", true);
    let s = src.next("count", good).await;
    assert_eq!(s.value, Value::UInt(6));
    assert!(src.telemetry.snapshot().sources["broker"].connected);
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_plainly_and_retried() {
    wrong_password("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_a_wrong_password_is_refused_plainly_and_retried() {
    wrong_password("protocol = \"5\"").await;
}

async fn wrong_password(protocol: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::with_password("gw", "s3cret");
    let pw = dir.path().join("mqtt.pw");
    std::fs::write(&pw, "wrong\n").expect("password file");
    let extra = format!(
        "{protocol}\nusername = \"gw\"\npassword_file = \"{}\"",
        pw.display()
    );
    let mut src = start(dir.path(), &broker, &extra, TAGS);
    let t = src.telemetry.clone();
    let error = eventually(Duration::from_secs(30), "the login refused", || {
        let b = t.snapshot();
        let e = b.sources["broker"].last_error.clone();
        let connected = b.sources["broker"].connected;
        async move { e.filter(|_| !connected) }
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

    // Retried with the file read again: fixing it is enough.
    std::fs::write(&pw, "s3cret\n").expect("password file");
    subscribed(&broker, 1).await;
    assert!(broker.log().matches("New connection from").count() >= 2);
    broker.publish("plant1/press1/count", "11", false);
    let s = src.next("count", good).await;
    assert_eq!(s.value, Value::UInt(11));
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_counter_and_state_drive_production_and_downtime_in_odoo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start();
    let odoo = fake_odoo::FakeOdoo::start().await;
    let wc = odoo.add_workcenter("PRESS1", "Press 1");
    let wo = odoo.add_workorder(wc, "WO/1", "progress");
    let text = format!(
        r#"
[gateway]
id = "gw1"
data_dir = "{data}"

[status]
listen = "127.0.0.1:0"

{source}

[[tags]]
name = "parts"
source = "broker"
topic = "plant1/press1/count"
payload = "json"
pointer = "/value"
time_pointer = "/ts"
type = "u32"

[[tags]]
name = "state"
source = "broker"
topic = "plant1/press1/state"
payload = "json"
pointer = "/value"
time_pointer = "/ts"

{events}
{odoo}"#,
        data = dir.path().join("data").display(),
        source = mqtt_source(&broker.address(), ""),
        events = support::PRESS_EVENTS,
        odoo = support::odoo_section(dir.path(), &odoo.url()),
    );
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, &text).expect("config");
    let cfg = plantgate::config::parse(&text, &path).expect("config");
    let gateway = plantgate::pipeline::Gateway::start(cfg)
        .await
        .expect("start");
    subscribed(&broker, 1).await;

    // Explicit event times from the payloads: the records carry the
    // machine's times whatever the test's pace.
    let t0 = Millis::now().0 - 60_000;
    let at = |dt: i64| Millis(t0 + dt).rfc3339();
    let msg = |v: u32, dt: i64| format!(r#"{{"value": {v}, "ts": "{}"}}"#, at(dt));
    broker.publish("plant1/press1/state", &msg(1, 0), false);
    broker.publish("plant1/press1/count", &msg(1000, 0), false);
    broker.publish("plant1/press1/count", &msg(1003, 1_000), false);
    broker.publish("plant1/press1/count", &msg(1007, 2_000), false);
    broker.publish("plant1/press1/state", &msg(2, 3_000), false);
    // The edge announces a stop once it has been held min_duration on its
    // own clock: the press stays down until Odoo has the open record.
    eventually(Duration::from_secs(30), "the stop announced", || {
        let logs = odoo.productivity();
        async move { logs.first().filter(|p| p.date_end.is_none()).map(|_| ()) }
    })
    .await;
    broker.publish("plant1/press1/state", &msg(1, 8_000), false);
    broker.publish("plant1/press1/count", &msg(1008, 9_000), false);

    eventually(Duration::from_secs(30), "8 parts in the work order", || {
        let got = odoo.workorder(wo).map(|w| w.qty_produced);
        async move { (got == Some(8.0)).then_some(()) }
    })
    .await;
    let log = eventually(Duration::from_secs(30), "a closed downtime record", || {
        let logs = odoo.productivity();
        async move { logs.iter().find(|p| p.date_end.is_some()).cloned() }
    })
    .await;
    assert_eq!(log.loss_xmlid.as_deref(), Some("mrp.block_reason1"));
    assert_eq!(log.description, "Hydraulic fault");
    assert_eq!(log.date_start, Millis(t0 + 3_000).odoo_datetime());
    assert_eq!(log.date_end, Some(Millis(t0 + 8_000).odoo_datetime()));
    assert_eq!(odoo.productivity().len(), 1);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_plant_ca_and_a_server_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::make(dir.path());
    let broker = Broker::with_tls(&pki);
    let tls = format!(
        "tls = true\nca_file = \"{}\"\nclient_certificate = \"{}\"\nclient_key = \"{}\"",
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    // Reached by IP, the broker's certificate names broker.test.
    let extra = format!("{tls}\nserver_name = \"broker.test\"");
    let mut src = start(dir.path(), &broker, &extra, TAGS);
    subscribed(&broker, 1).await;
    broker.publish("plant1/press1/count", "3", false);
    let s = src.next("count", good).await;
    assert_eq!(s.value, Value::UInt(3));
    src.stop().await;

    // Without server_name the certificate does not fit the address: refused.
    let other = tempfile::tempdir().expect("tempdir");
    let src = start(other.path(), &broker, &tls, TAGS);
    let t = src.telemetry.clone();
    let error = eventually(Duration::from_secs(30), "the TLS handshake refused", || {
        let e = t.snapshot().sources["broker"].last_error.clone();
        async move { e }
    })
    .await;
    assert!(
        error.starts_with("TLS with the broker at 127.0.0.1:"),
        "{error}"
    );
    assert!(error.contains("certificate"), "{error}");
    assert!(!src.telemetry.snapshot().sources["broker"].connected);
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditioning_holds_per_name_of_a_wildcard_tag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start();
    let tags = r#"
[[tags]]
name = "{1}_load"
source = "broker"
topic = "plant1/+/load"
min = 0.0
max = 100.0
min_change = 5.0
"#;
    let mut src = start(dir.path(), &broker, "", tags);
    subscribed(&broker, 1).await;
    broker.publish("plant1/press1/load", "50", false);
    assert_eq!(src.next("press1_load", good).await.value, Value::UInt(50));
    // Each press has its own last value: 52 is news for press2 only.
    broker.publish("plant1/press2/load", "52", false);
    assert_eq!(src.next("press2_load", good).await.value, Value::UInt(52));
    broker.publish("plant1/press1/load", "52", false);
    broker.publish("plant1/press1/load", "60", false);
    let s = src.next("press1_load", |_| true).await;
    assert_eq!(s.value, Value::UInt(60), "52 is within press1's deadband");
    broker.publish("plant1/press1/load", "500", false);
    let s = src.next("press1_load", |_| true).await;
    assert!(matches!(s.quality, Quality::Bad(_)), "out of range: {s:?}");
    src.stop().await;
}
