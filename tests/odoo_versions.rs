//! What differs between the Odoo versions the gateway supports (16 to 19,
//! shared/odoo-api.md section 0), as the sink meets it against the fake
//! Odoo of each version: `api = "auto"` speaks JSON-RPC to 16–18 (they have
//! no `/web/version`) and JSON-2 to 19; an API key that expires (18 on)
//! pauses the sink as a refused key, and delivery resumes once the key is
//! valid again, without a restart.

mod support;

use plantgate::model::{Event, Millis};
use plantgate::sinks::odoo::OdooSink;
use plantgate::sinks::DeliveryError;
use plantgate::store::Store;
use support::fake_odoo::FakeOdoo;
use support::odoo_sink::{odoo_config, parts_at, sink_store, SINK};

fn parts(id: &str, secs: i64, quantity: u64) -> Event {
    // From 2026-01-01 09:00:00 UTC.
    let time = Millis(1_767_258_000_000 + secs * 1000);
    parts_at("PRESS1", id, time, quantity)
}

async fn setup(version: u8) -> (FakeOdoo, OdooSink, Store, i64, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let odoo = FakeOdoo::start_version(version).await;
    let wc = odoo.add_workcenter("PRESS1", "Press 1");
    let wo = odoo.add_workorder(wc, "WO/1", "progress");
    odoo.set_workorder_dates(wo, Some("2026-01-01 08:00:00"), None);
    let cfg = odoo_config(dir.path(), &odoo.url(), "");
    let sink = OdooSink::new(&cfg).expect("sink");
    let store = sink_store(dir.path());
    (odoo, sink, store, wo, dir)
}

async fn each_version_is_spoken_to_in_its_own_api_on(version: u8) {
    let (odoo, mut sink, store, wo, _dir) = setup(version).await;
    sink.deliver(&store, SINK, &parts("e1", 0, 4))
        .await
        .expect("delivered");
    let want = if version >= 19 {
        "json2 (Odoo 19.0)"
    } else {
        "jsonrpc"
    };
    assert_eq!(sink.api().as_deref(), Some(want));
    assert_eq!(odoo.workorder(wo).map(|w| w.qty_produced), Some(4.0));
}

async fn an_expired_key_pauses_the_sink_until_it_is_valid_again_on(version: u8) {
    let (odoo, mut sink, store, wo, _dir) = setup(version).await;
    sink.deliver(&store, SINK, &parts("e1", 0, 1))
        .await
        .expect("delivered");
    odoo.expire_api_key(true);
    match sink.deliver(&store, SINK, &parts("e2", 1, 2)).await {
        Err(DeliveryError::Unreachable(m)) => assert!(m.contains("refused"), "{m}"),
        other => panic!("an expired key must pause the sink: {other:?}"),
    }
    assert!(sink.auth_failed());
    // The administrator extends the key (or writes a new one to the file).
    odoo.expire_api_key(false);
    sink.deliver(&store, SINK, &parts("e2", 1, 2))
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", odoo.calls()));
    assert!(!sink.auth_failed());
    assert_eq!(odoo.workorder(wo).map(|w| w.qty_produced), Some(3.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odoo_16_is_spoken_to_over_jsonrpc() {
    each_version_is_spoken_to_in_its_own_api_on(16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odoo_18_is_spoken_to_over_jsonrpc() {
    each_version_is_spoken_to_in_its_own_api_on(18).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odoo_19_is_spoken_to_over_json2() {
    each_version_is_spoken_to_in_its_own_api_on(19).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_pauses_odoo_18_over_jsonrpc() {
    an_expired_key_pauses_the_sink_until_it_is_valid_again_on(18).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_pauses_odoo_19_over_json2() {
    an_expired_key_pauses_the_sink_until_it_is_valid_again_on(19).await;
}
