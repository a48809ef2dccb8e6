//! Stock levels in Odoo, per version (16–18 over JSON-RPC, 19 over JSON-2),
//! against the fake Odoo: the level read at the machine becomes the
//! product's on-hand quantity at the location through an applied inventory
//! count (`stock.quant` in inventory mode, then `action_apply_inventory`),
//! absolute and never relative, so a repeat changes nothing and makes no
//! move; a product Odoo does not know is a dead letter naming the config
//! line.

mod support;

use plantgate::model::{Event, EventBody, Millis, StockLevel};
use plantgate::sinks::odoo::OdooSink;
use plantgate::sinks::DeliveryError;
use support::fake_odoo::FakeOdoo;
use support::odoo_sink::{odoo_config, sink_store, SINK};

fn level(id: &str, product: &str, quantity: f64) -> Event {
    Event {
        id: id.into(),
        rule: "silo1".into(),
        time: Millis(1_767_258_000_000),
        body: EventBody::StockLevel(StockLevel {
            product: product.into(),
            product_at: "gw.toml:61:11".into(),
            location: "WH/Stock/Silo 1".into(),
            location_at: "gw.toml:62:12".into(),
            quantity,
        }),
    }
}

async fn a_level_is_the_absolute_on_hand_quantity_on(version: u8) {
    let dir = tempfile::tempdir().expect("tempdir");
    let odoo = FakeOdoo::start_version(version).await;
    let product = odoo.add_product("PP resin", "RESIN-PP");
    let silo = odoo.add_location("WH/Stock/Silo 1");
    let cfg = odoo_config(dir.path(), &odoo.url(), "");
    let mut sink = OdooSink::new(&cfg).expect("sink");
    let store = sink_store(dir.path());
    let ok = |r: Result<(), DeliveryError>| r.unwrap_or_else(|e| panic!("{e}"));
    ok(sink
        .deliver(&store, SINK, &level("e1", "RESIN-PP", 250.0))
        .await);
    assert_eq!(odoo.on_hand(product, silo), (250.0, 1));
    assert_eq!(odoo.inventory_moves(), 1);
    // A repeat (retry, replay) sets the same count: nothing moves.
    ok(sink
        .deliver(&store, SINK, &level("e1", "RESIN-PP", 250.0))
        .await);
    assert_eq!(odoo.on_hand(product, silo), (250.0, 1));
    assert_eq!(odoo.inventory_moves(), 1);
    // The silo is drawn down: the count follows, on the same quant.
    ok(sink
        .deliver(&store, SINK, &level("e2", "RESIN-PP", 240.5))
        .await);
    assert_eq!(odoo.on_hand(product, silo), (240.5, 1));
    assert_eq!(odoo.inventory_moves(), 2);
    // By name as well as by internal reference.
    ok(sink
        .deliver(&store, SINK, &level("e3", "PP resin", 230.0))
        .await);
    assert_eq!(odoo.on_hand(product, silo), (230.0, 1));
    match sink
        .deliver(&store, SINK, &level("e4", "RESIN-PE", 10.0))
        .await
    {
        Err(DeliveryError::Reject(m)) => {
            assert!(m.starts_with("gw.toml:61:11: "), "{m}");
            assert!(m.contains("RESIN-PE") && m.contains("dlq replay"), "{m}");
        }
        other => panic!("an unknown product must be a dead letter: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_is_the_absolute_on_hand_quantity_odoo_16() {
    a_level_is_the_absolute_on_hand_quantity_on(16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_is_the_absolute_on_hand_quantity_odoo_17() {
    a_level_is_the_absolute_on_hand_quantity_on(17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_is_the_absolute_on_hand_quantity_odoo_18() {
    a_level_is_the_absolute_on_hand_quantity_on(18).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_is_the_absolute_on_hand_quantity_odoo_19() {
    a_level_is_the_absolute_on_hand_quantity_on(19).await;
}
