//! Scrap in Odoo, per version (16–18 over JSON-RPC, 19 over JSON-2),
//! against the fake Odoo: a scrap event becomes one `stock.scrap` of the
//! MO's product, linked to the MO and the work order running when the parts
//! were made, validated so the parts move to the scrap location. A repeat,
//! or a retry after a lost reply at either step, never makes a second scrap
//! nor moves the parts twice; when the source location holds too few parts
//! the scrap stays a draft for a person; a finished MO refuses it with what
//! to do.

mod support;

use plantgate::model::{Event, EventBody, Millis, Scrap};
use plantgate::sinks::DeliveryError;
use support::fake_odoo::{FakeOdoo, Fault};
use support::odoo_sink::{sink_rig, SinkRig, SINK};

fn scrap(id: &str, quantity: u64, time: Millis) -> Event {
    Event {
        id: id.into(),
        rule: "press".into(),
        time,
        body: EventBody::Scrap(Scrap {
            workcenter: "PRESS1".into(),
            quantity,
            production_id: None,
            counter_from: 0,
            counter_to: quantity,
        }),
    }
}

type Rig = SinkRig;

async fn rig(version: u8) -> Rig {
    sink_rig(version, "").await
}

/// A press with a work order in progress whose MO makes `BRACKET` at
/// WH/Stock, where `on_hand` brackets are; returns (product, stock, mo, wo).
fn press(odoo: &FakeOdoo, on_hand: f64) -> (i64, i64, i64, i64) {
    let wc = odoo.add_workcenter("PRESS1", "Press 1");
    let product = odoo.add_product("Bracket", "BRACKET");
    let stock = odoo.add_location("WH/Stock");
    odoo.add_scrap_location("Virtual Locations/Scrap");
    let mo = odoo.add_production("MO/1", 100.0);
    odoo.set_production_product(mo, product, stock);
    let wo = odoo.add_workorder_for(mo, wc, "WO/1", "progress");
    if on_hand > 0.0 {
        odoo.set_on_hand(product, stock, on_hand);
    }
    (product, stock, mo, wo)
}

async fn a_scrap_is_one_validated_stock_scrap_on(version: u8) {
    let mut r = rig(version).await;
    let (product, stock, mo, wo) = press(&r.odoo, 50.0);
    let ev = scrap("gw1-press-1-scrap", 3, Millis::now());
    let ok = |res: Result<(), DeliveryError>| res.unwrap_or_else(|e| panic!("{e}"));
    ok(r.sink.deliver(&r.store, SINK, &ev).await);
    let scraps = r.odoo.scraps();
    assert_eq!(scraps.len(), 1, "{scraps:?}");
    let s = &scraps[0];
    assert_eq!(
        (s.product_id, s.scrap_qty, s.state.as_str()),
        (product, 3.0, "done")
    );
    assert_eq!((s.production_id, s.workorder_id), (Some(mo), Some(wo)));
    assert_eq!(s.location_id, stock, "Odoo's default: the MO's location");
    assert_eq!(s.origin, "gw1-press-1-scrap");
    assert_eq!(r.odoo.on_hand(product, stock).0, 47.0);
    assert_eq!(r.odoo.scrap_moves(), 1);
    // A repeat (retry, replay): nothing more.
    ok(r.sink.deliver(&r.store, SINK, &ev).await);
    assert_eq!(r.odoo.scraps().len(), 1);
    assert_eq!(r.odoo.scrap_moves(), 1);
    assert_eq!(r.odoo.on_hand(product, stock).0, 47.0);
}

#[tokio::test]
async fn a_scrap_is_one_validated_stock_scrap_on_17() {
    a_scrap_is_one_validated_stock_scrap_on(17).await;
}

#[tokio::test]
async fn a_scrap_is_one_validated_stock_scrap_on_19() {
    a_scrap_is_one_validated_stock_scrap_on(19).await;
}

#[tokio::test]
async fn a_lost_reply_at_either_step_never_scraps_twice() {
    let mut r = rig(17).await;
    let (product, stock, _, _) = press(&r.odoo, 50.0);
    // The scrap is created, the reply lost: the retry finds the draft by
    // its external id and validates it.
    r.odoo.set_fault(Fault::ReplyLost {
        model: "stock.scrap".into(),
        method: "load".into(),
        count: 1,
    });
    let ev = scrap("gw1-press-1-scrap", 2, Millis::now());
    assert!(r.sink.deliver(&r.store, SINK, &ev).await.is_err());
    assert_eq!(r.odoo.scraps()[0].state, "draft");
    r.sink
        .deliver(&r.store, SINK, &ev)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.odoo.scraps().len(), 1);
    assert_eq!(r.odoo.scrap_moves(), 1);
    // The validation's reply is lost: the retry sees it done.
    r.odoo.set_fault(Fault::ReplyLost {
        model: "stock.scrap".into(),
        method: "action_validate".into(),
        count: 1,
    });
    let ev = scrap("gw1-press-2-scrap", 5, Millis::now());
    assert!(r.sink.deliver(&r.store, SINK, &ev).await.is_err());
    r.sink
        .deliver(&r.store, SINK, &ev)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.odoo.scraps().len(), 2);
    assert_eq!(r.odoo.scrap_moves(), 2, "each scrap moved once");
    assert_eq!(r.odoo.on_hand(product, stock).0, 43.0);
}

#[tokio::test]
async fn too_few_parts_at_the_source_leave_a_draft_for_a_person() {
    let mut r = rig(17).await;
    let (product, stock, mo, _) = press(&r.odoo, 1.0);
    let ev = scrap("gw1-press-1-scrap", 4, Millis::now());
    r.sink
        .deliver(&r.store, SINK, &ev)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let s = &r.odoo.scraps()[0];
    assert_eq!(
        (s.state.as_str(), s.scrap_qty, s.production_id),
        ("draft", 4.0, Some(mo))
    );
    assert_eq!(r.odoo.scrap_moves(), 0, "stock is not pushed negative");
    assert_eq!(r.odoo.on_hand(product, stock).0, 1.0);
}

#[tokio::test]
async fn scrap_for_a_finished_mo_is_refused_with_what_to_do() {
    let mut r = rig(17).await;
    let (_, _, mo, wo) = press(&r.odoo, 10.0);
    // Made at 10:00 by the work order that ran 08:00 to 12:00.
    let made = Millis(1_767_261_600_000);
    r.odoo.set_workorder_state(wo, "done");
    r.odoo
        .set_workorder_dates(wo, Some("2026-01-01 08:00:00"), Some("2026-01-01 12:00:00"));
    r.odoo.set_production_state(mo, "done");
    match r
        .sink
        .deliver(&r.store, SINK, &scrap("gw1-press-1-scrap", 2, made))
        .await
    {
        Err(DeliveryError::Reject(m)) => {
            assert!(
                m.contains("WO/1 of MO/1") && m.contains("plantgate dlq"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(r.odoo.scraps().is_empty());
}
