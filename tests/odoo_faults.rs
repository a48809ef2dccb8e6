//! When Odoo fails for a while, against the fake Odoo with faults injected
//! (a gateway in-process on a simulated press): a rate limit (429 with
//! Retry-After), a run of 503s that opens the circuit breaker until a probe
//! succeeds, serialization failures, and answers slower than the timeout.
//! In every case the parts end up in Odoo exactly once and `/status` says
//! what happened.

mod support;

use plantgate::config;
use plantgate::model::{Event, EventBody, Millis, Production};
use plantgate::sinks::odoo::OdooSink;
use plantgate::sinks::DeliveryError;
use plantgate::store::{migrate::NoUpgrade, Store, StoreOptions};
use std::time::Duration;
use support::fake_odoo::{FakeOdoo, Fault};
use support::press::{self, PressRig};
use support::{eventually, get, metric};

/// Every event delivered and the work order at `qty`.
async fn delivered(rig: &PressRig, qty: f64) {
    eventually(Duration::from_secs(30), "all parts in Odoo", || async {
        let s = rig.sink_status().await?;
        let wo = rig.odoo.workorder(rig.workorder)?;
        (s["queue_depth"] == 0 && wo.qty_produced == qty).then_some(())
    })
    .await;
}

fn outcomes(odoo: &FakeOdoo, outcome: &str) -> usize {
    odoo.calls().iter().filter(|c| c.outcome == outcome).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_waited_out_for_its_retry_after() {
    let rig = press::start("", "127.0.0.1:0").await;
    rig.odoo.set_fault(Fault::TooManyRequests {
        retry_after: Some("1".into()),
        count: 2,
    });
    rig.produce(4).await;
    delivered(&rig, 4.0).await;
    assert_eq!(outcomes(&rig.odoo, "http:429"), 2);
    let s = rig.sink_status().await.expect("status");
    assert!(
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 429, Retry-After 1s")),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_503s_opens_the_circuit_until_a_probe_succeeds() {
    let rig = press::start(
        "circuit_failures = 3\ncircuit_cooldown = \"200ms\"\n",
        "127.0.0.1:0",
    )
    .await;
    rig.odoo.set_fault(Fault::Unavailable {
        model: "mrp.workorder".into(),
        method: "write".into(),
    });
    rig.produce(3).await;
    let open = "plantgate_odoo_circuit_open{sink=\"odoo\"}";
    eventually(Duration::from_secs(20), "circuit open", || async {
        let m = get(&format!("{}/metrics", rig.base)).await?;
        let s = rig.sink_status().await?;
        (metric(&m, open)? == 1.0 && s["circuit_open"] == true).then_some(())
    })
    .await;
    assert!(outcomes(&rig.odoo, "http:503") >= 3);
    assert_eq!(
        rig.odoo.workorder(rig.workorder).expect("wo").qty_produced,
        0.0
    );

    rig.odoo.set_fault(Fault::None);
    delivered(&rig, 3.0).await;
    let m = get(&format!("{}/metrics", rig.base))
        .await
        .expect("metrics");
    assert_eq!(metric(&m, open), Some(0.0), "closed by the probe");
    assert_eq!(
        rig.sink_status().await.expect("status")["circuit_open"],
        false
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serialization_failures_are_retried_and_count_once() {
    let rig = press::start("", "127.0.0.1:0").await;
    rig.odoo.set_fault(Fault::SerializationFailure {
        model: "mrp.workorder".into(),
        method: "write".into(),
        count: 3,
    });
    rig.produce(5).await;
    delivered(&rig, 5.0).await;
    assert_eq!(
        outcomes(&rig.odoo, "error:psycopg2.errors.SerializationFailure"),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_slower_than_the_timeout_are_retried_and_count_once() {
    let rig = press::start_edited(
        |t, _| t.replace("timeout = \"2s\"", "timeout = \"300ms\""),
        "127.0.0.1:0",
    )
    .await;
    // Odoo does the work but answers after the gateway gave up.
    rig.odoo.set_fault(Fault::Slow {
        delay: Duration::from_secs(1),
    });
    rig.produce(3).await;
    eventually(Duration::from_secs(20), "a timeout reported", || async {
        let s = rig.sink_status().await?;
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out"))
            .then_some(())
    })
    .await;
    rig.odoo.set_fault(Fault::None);
    delivered(&rig, 3.0).await;
}

/// JSON-2 answers a serialization failure with HTTP 500: retried, not
/// dead-lettered, and the retry writes once.
#[tokio::test]
async fn json2_500_for_a_serialization_failure_is_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let odoo = FakeOdoo::start_version(19).await;
    let wc = odoo.add_workcenter("PRESS1", "Press 1");
    let wo = odoo.add_workorder(wc, "WO/1", "progress");
    let text = support::press_config(dir.path(), "127.0.0.1:1", &odoo.url(), "127.0.0.1:0");
    let cfg = config::parse(&text, &dir.path().join("gw.toml"))
        .expect("config")
        .odoo;
    let mut sink = OdooSink::new(&cfg).expect("sink");
    let store = Store::open(
        &dir.path().join("store"),
        &["odoo"],
        &StoreOptions::default(),
        &NoUpgrade,
    )
    .expect("store");
    let ev = Event {
        id: "e1".into(),
        rule: "parts".into(),
        time: Millis::now(),
        body: EventBody::Production(Production {
            workcenter: "PRESS1".into(),
            quantity: 6,
            counter_from: 0,
            counter_to: 6,
        }),
    };
    odoo.set_fault(Fault::SerializationFailure {
        model: "mrp.workorder".into(),
        method: "write".into(),
        count: 1,
    });
    match sink.deliver(&store, "odoo", &ev).await {
        Err(DeliveryError::Retry(why)) => {
            assert!(why.contains("could not serialize access"), "{why}")
        }
        other => panic!("expected a retry, got {other:?}"),
    }
    sink.deliver(&store, "odoo", &ev).await.expect("retried");
    assert_eq!(odoo.workorder(wo).expect("wo").qty_produced, 6.0);
}
