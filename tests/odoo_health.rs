//! The Odoo sink's health, as `/status` and `/metrics` show it: request
//! latency per model and method, records written per model, retries and
//! dead letters, whether Odoo is reached and when a request last
//! succeeded, and Odoo's own message as the last error.

mod support;

use std::time::Duration;
use support::fake_odoo::Fault;
use support::press::{self, PressRig};
use support::{eventually, get, metric};

async fn metrics(rig: &PressRig) -> String {
    get(&format!("{}/metrics", rig.base))
        .await
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_show_the_odoo_sinks_health() {
    let rig = press::start("", "127.0.0.1:0").await;
    rig.produce(3).await;
    eventually(Duration::from_secs(20), "3 parts in Odoo", || async {
        (rig.odoo.workorder(rig.workorder)?.qty_produced == 3.0).then_some(())
    })
    .await;
    let writes = "plantgate_odoo_request_seconds_count{sink=\"odoo\",model=\"mrp.workorder\",method=\"write\"}";
    let records = "plantgate_odoo_records_total{sink=\"odoo\",model=\"mrp.workorder\"}";
    let m = eventually(Duration::from_secs(10), "write metrics", || async {
        let m = metrics(&rig).await;
        (metric(&m, records)? >= 1.0).then_some(m)
    })
    .await;
    let odoo_writes = rig
        .odoo
        .calls()
        .iter()
        .filter(|c| {
            c.model.as_deref() == Some("mrp.workorder")
                && c.model_method.as_deref() == Some("write")
        })
        .count() as f64;
    assert_eq!(
        metric(&m, writes),
        Some(odoo_writes),
        "one observation per request"
    );
    assert_eq!(
        metric(&m, records),
        Some(odoo_writes),
        "one work order per write"
    );
    let s = rig.sink_status().await.expect("status");
    assert_eq!(s["connected"], true, "{s}");
    assert!(s["last_success"].is_string(), "{s}");

    // A refused event: a dead letter, with Odoo's message as the last error.
    rig.odoo.set_fault(Fault::ValidationError {
        model: "mrp.workorder".into(),
        method: "write".into(),
        count: 1,
    });
    rig.produce(1).await;
    eventually(Duration::from_secs(20), "a dead letter", || async {
        let m = metrics(&rig).await;
        (metric(&m, "plantgate_odoo_dead_letters_total{sink=\"odoo\"}")? == 1.0).then_some(())
    })
    .await;
    let s = rig.sink_status().await.expect("status");
    assert!(
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("FakeOdoo injected a ValidationError")),
        "{s}"
    );

    // Odoo gone: retried, and not connected.
    rig.odoo.stop().await;
    rig.produce(1).await;
    eventually(
        Duration::from_secs(20),
        "retries and disconnected",
        || async {
            let m = metrics(&rig).await;
            let s = rig.sink_status().await?;
            (metric(&m, "plantgate_odoo_retries_total{sink=\"odoo\"}")? >= 1.0
                && s["connected"] == false)
                .then_some(())
        },
    )
    .await;
    rig.odoo.resume().await;
    eventually(Duration::from_secs(30), "connected again", || async {
        let s = rig.sink_status().await?;
        (s["connected"] == true && s["queue_depth"] == 0).then_some(())
    })
    .await;
}
