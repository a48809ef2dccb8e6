//! The fake Odoo keeps the promises of shared/odoo-api.md that the sink's
//! semantics rest on, checked over raw JSON-RPC (each test names its
//! section): if the fake drifts from Odoo, the sink tests prove nothing.

mod support;

use serde_json::{json, Value};
use support::fake_odoo::{FakeOdoo, API_KEY, DB, UID};

async fn execute_kw(odoo: &FakeOdoo, model: &str, method: &str, args: Value, kw: Value) -> Value {
    plantgate::sinks::odoo::http::install_crypto_provider();
    let body = json!({"jsonrpc": "2.0", "method": "call", "id": 7, "params": {
        "service": "object", "method": "execute_kw",
        "args": [DB, UID, API_KEY, model, method, args, kw]}});
    let resp = reqwest::Client::new()
        .post(format!("{}/jsonrpc", odoo.url()))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200, "1.4: errors are HTTP 200 too");
    resp.json().await.expect("json")
}

fn error_message(reply: &Value) -> (&str, &str) {
    let data = &reply["error"]["data"];
    (
        data["name"].as_str().unwrap_or(""),
        data["message"].as_str().unwrap_or(""),
    )
}

/// 4.3: "Writing `qty_produced` also sets the MO's `qty_producing`"; the
/// work order's `qty_producing` is the MO's (related).
#[tokio::test]
async fn writing_a_work_orders_qty_produced_sets_its_mos_qty_producing() {
    let odoo = FakeOdoo::start().await;
    let wc = odoo.add_workcenter("PRESS1", "Press 1");
    let mo = odoo.add_production("MO/1", 500.0);
    let wo = odoo.add_workorder_for(mo, wc, "WO/1", "progress");
    odoo.set_production_qty(mo, 120.0);
    let read = execute_kw(
        &odoo,
        "mrp.workorder",
        "read",
        json!([[wo], ["qty_producing", "production_state"]]),
        json!({}),
    )
    .await;
    assert_eq!(read["result"][0]["qty_producing"], 120.0, "{read}");
    assert_eq!(read["result"][0]["production_state"], "progress", "{read}");
    let w = execute_kw(
        &odoo,
        "mrp.workorder",
        "write",
        json!([[wo], {"qty_produced": 3.0}]),
        json!({}),
    )
    .await;
    assert_eq!(w["result"], true, "{w}");
    assert_eq!(odoo.production(mo).map(|m| m.qty_producing), Some(3.0));
    // The inverse of the related field writes the MO as well.
    execute_kw(
        &odoo,
        "mrp.workorder",
        "write",
        json!([[wo], {"qty_producing": 9.0}]),
        json!({}),
    )
    .await;
    assert_eq!(odoo.production(mo).map(|m| m.qty_producing), Some(9.0));
    assert_eq!(odoo.workorder(wo).map(|w| w.qty_produced), Some(3.0));
}

/// 4.3: `qty_produced` on a done work order gives UserError "This
/// production order has been closed." unless the context has
/// `allow_qty_change`; below zero, "The quantity produced must be positive."
#[tokio::test]
async fn a_done_work_order_takes_quantities_only_with_allow_qty_change() {
    let odoo = FakeOdoo::start().await;
    let wc = odoo.add_workcenter("PRESS1", "Press 1");
    let wo = odoo.add_workorder(wc, "WO/1", "done");
    let refused = execute_kw(
        &odoo,
        "mrp.workorder",
        "write",
        json!([[wo], {"qty_produced": 4.0}]),
        json!({}),
    )
    .await;
    assert_eq!(
        error_message(&refused),
        (
            "odoo.exceptions.UserError",
            "This production order has been closed."
        )
    );
    assert_eq!(
        odoo.workorder(wo).map(|w| w.qty_produced),
        Some(0.0),
        "rolled back"
    );
    let allowed = execute_kw(
        &odoo,
        "mrp.workorder",
        "write",
        json!([[wo], {"qty_produced": 4.0}]),
        json!({"context": {"allow_qty_change": true}}),
    )
    .await;
    assert_eq!(allowed["result"], true, "{allowed}");
    assert_eq!(odoo.workorder(wo).map(|w| w.qty_produced), Some(4.0));
    let negative = execute_kw(
        &odoo,
        "mrp.workorder",
        "write",
        json!([[wo], {"qty_produced": -1.0}]),
        json!({"context": {"allow_qty_change": true}}),
    )
    .await;
    assert_eq!(
        error_message(&negative).1,
        "The quantity produced must be positive."
    );
}

/// 4.1: `working_state` is normal with no open log, "done" (In Progress)
/// when the open log is productive or performance, blocked otherwise; 4.2:
/// a log needs workcenter_id, loss_id and date_start.
#[tokio::test]
async fn working_state_follows_the_open_time_log() {
    let odoo = FakeOdoo::start().await;
    let wc = odoo.add_workcenter("PRESS1", "Press 1");
    let wo = odoo.add_workorder(wc, "WO/1", "progress");
    assert_eq!(odoo.working_state(wc), "normal");
    let timer = odoo.add_timer(wo, "2026-01-01 08:00:00", None);
    assert_eq!(odoo.working_state(wc), "done");
    execute_kw(
        &odoo,
        "mrp.workcenter.productivity",
        "write",
        json!([[timer], {"date_end": "2026-01-01 09:00:00"}]),
        json!({}),
    )
    .await;
    assert_eq!(odoo.working_state(wc), "normal");
    let fields = [
        "id",
        "workcenter_id/.id",
        "loss_id/id",
        "date_start",
        "workorder_id/.id",
    ];
    let row = [
        "plantgate.s1",
        &wc.to_string(),
        "mrp.block_reason1",
        "2026-01-01 09:00:00",
        &wo.to_string(),
    ];
    let loaded = execute_kw(
        &odoo,
        "mrp.workcenter.productivity",
        "load",
        json!([fields, [row]]),
        json!({}),
    )
    .await;
    assert_eq!(loaded["result"]["messages"], json!([]), "{loaded}");
    assert_eq!(odoo.working_state(wc), "blocked");
    // 3.1: the same rows again update the same record.
    let again = execute_kw(
        &odoo,
        "mrp.workcenter.productivity",
        "load",
        json!([fields, [row]]),
        json!({}),
    )
    .await;
    assert_eq!(again["result"]["ids"], loaded["result"]["ids"]);
    let missing = execute_kw(
        &odoo,
        "mrp.workcenter.productivity",
        "create",
        json!([{"workcenter_id": wc}]),
        json!({}),
    )
    .await;
    assert_eq!(
        error_message(&missing).0,
        "odoo.exceptions.ValidationError",
        "{missing}"
    );
}

/// 4.3: the 16–18 states; `date_start`/`date_finished` set as the buttons
/// set them; domains on them and on `state` select what the sink reads.
#[tokio::test]
async fn work_orders_are_found_by_state_and_dates() {
    let odoo = FakeOdoo::start().await;
    let wc = odoo.add_workcenter("PRESS1", "Press 1");
    let a = odoo.add_workorder(wc, "WO/1", "done");
    let b = odoo.add_workorder(wc, "WO/2", "progress");
    let _c = odoo.add_workorder(wc, "WO/3", "ready");
    odoo.set_workorder_dates(a, Some("2026-01-01 08:00:00"), Some("2026-01-01 10:00:00"));
    let domain = json!([
        ["workcenter_id", "=", wc],
        ["state", "in", ["progress", "done"]],
        "|",
        ["state", "=", "progress"],
        ["date_finished", ">=", "2026-01-01 11:00:00"]
    ]);
    let found = execute_kw(
        &odoo,
        "mrp.workorder",
        "search_read",
        json!([domain]),
        json!({"fields": ["id", "date_start"]}),
    )
    .await;
    let ids: Vec<i64> = found["result"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .collect();
    assert_eq!(ids, vec![b], "{found}");
    assert!(
        odoo.workorder(b).and_then(|w| w.date_start).is_some(),
        "started when put in progress"
    );
    let bad = execute_kw(
        &odoo,
        "mrp.workorder",
        "write",
        json!([[b], {"state": "blocked"}]),
        json!({}),
    )
    .await;
    assert_eq!(
        error_message(&bad).0,
        "builtins.ValueError",
        "blocked is a 19 state: {bad}"
    );
}

/// POST /json/2/<model>/<method> with a bearer key; (status, JSON body).
async fn json2(odoo: &FakeOdoo, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
    plantgate::sinks::odoo::http::install_crypto_provider();
    let mut req = reqwest::Client::new()
        .post(format!("{}/json/2/{path}", odoo.url()))
        .json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// 2.1–2.2: bearer API key (401 "Invalid apikey"), named arguments, bare
/// results, `create` always a list, ids refused on model methods (422),
/// Odoo exceptions as their HTTP status with `{name, message, ...}`;
/// `GET /web/version` without auth.
#[tokio::test]
async fn json2_on_19_answers_bare_results_and_errors_as_statuses() {
    let odoo = FakeOdoo::start_version(19).await;
    let wc = odoo.add_workcenter("PRESS1", "Press 1");
    let version: Value = reqwest::get(format!("{}/web/version", odoo.url()))
        .await
        .expect("version")
        .json()
        .await
        .expect("json");
    assert_eq!(version["version_info"][0], 19, "{version}");

    let body = json!({"domain": [["code", "=", "PRESS1"]], "fields": ["id"]});
    let (status, found) = json2(
        &odoo,
        "mrp.workcenter/search_read",
        Some(API_KEY),
        body.clone(),
    )
    .await;
    assert_eq!((status, found), (200, json!([{"id": wc}])));
    let (status, no_key) = json2(&odoo, "mrp.workcenter/search_read", None, body.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(
        no_key["message"],
        "User not authenticated, use an API Key with a Bearer Authorization header."
    );
    let wrong = "ffffffffffffffffffffffffffffffffffffffff";
    let (status, bad) = json2(&odoo, "mrp.workcenter/search_read", Some(wrong), body).await;
    assert_eq!(
        (status, bad["message"].as_str()),
        (401, Some("Invalid apikey"))
    );

    let (status, created) = json2(
        &odoo,
        "mrp.workcenter/create",
        Some(API_KEY),
        json!({"vals_list": {"name": "Press 2"}}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        created.as_array().is_some_and(|a| a.len() == 1),
        "{created}"
    );
    let (status, with_ids) = json2(
        &odoo,
        "mrp.workcenter/create",
        Some(API_KEY),
        json!({"ids": [wc], "vals_list": {"name": "X"}}),
    )
    .await;
    assert_eq!(
        (status, with_ids["message"].as_str()),
        (422, Some("cannot call mrp.workcenter.create with ids"))
    );

    let wo = odoo.add_workorder(wc, "WO/1", "done");
    let (status, closed) = json2(
        &odoo,
        "mrp.workorder/write",
        Some(API_KEY),
        json!({"ids": [wo], "vals": {"qty_produced": 1.0}}),
    )
    .await;
    assert_eq!(status, 422, "{closed}");
    assert_eq!(closed["name"], "odoo.exceptions.UserError");
    assert_eq!(closed["message"], "This production order has been closed.");
    let (status, _) = json2(
        &odoo,
        "mrp.nothing/search",
        Some(API_KEY),
        json!({"domain": []}),
    )
    .await;
    assert_eq!(status, 404);
}

/// 0: JSON-2 and `/web/version` do not exist before 18.4.
#[tokio::test]
async fn json2_is_not_served_as_17() {
    let odoo = FakeOdoo::start().await;
    let (status, _) = json2(
        &odoo,
        "mrp.workcenter/search_read",
        Some(API_KEY),
        json!({"domain": []}),
    )
    .await;
    assert_eq!(status, 404);
    let v = reqwest::get(format!("{}/web/version", odoo.url()))
        .await
        .expect("get");
    assert_eq!(v.status(), 404);
}

/// 0 and 4.3: work order states are pending/waiting/ready/progress/done/
/// cancel in 16–18 and blocked/ready/progress/done/cancel in 19.
#[tokio::test]
async fn work_order_states_are_those_of_the_version() {
    for (version, old, new) in [(17, "pending", "blocked"), (19, "blocked", "pending")] {
        let odoo = FakeOdoo::start_version(version).await;
        let wc = odoo.add_workcenter("PRESS1", "Press 1");
        let wo = odoo.add_workorder(wc, "WO/1", "ready");
        let ok = execute_kw(
            &odoo,
            "mrp.workorder",
            "write",
            json!([[wo], {"state": old}]),
            json!({}),
        )
        .await;
        assert_eq!(ok["result"], true, "{version}: {ok}");
        let bad = execute_kw(
            &odoo,
            "mrp.workorder",
            "write",
            json!([[wo], {"state": new}]),
            json!({}),
        )
        .await;
        assert_eq!(
            error_message(&bad).0,
            "builtins.ValueError",
            "{version}: {bad}"
        );
        // JSON-RPC error code: 200 up to 18.0, 0 from 18.1.
        assert_eq!(bad["error"]["code"], if version >= 19 { 0 } else { 200 });
    }
}

/// 4.5: a maintenance request needs `name`; it defaults to the first stage
/// (`maintenance.stage_0`, New Request), the first team and `corrective`;
/// 3.1: `load` by external id creates it once and updates it after.
#[tokio::test]
async fn maintenance_requests_default_their_stage_and_team_and_load_upserts_them() {
    let odoo = FakeOdoo::start().await;
    let eq = odoo.add_equipment("Oven 1", Some("OVEN-1"));
    let found = execute_kw(
        &odoo,
        "maintenance.equipment",
        "search_read",
        json!([["|", ["name", "=", "OVEN-1"], ["serial_no", "=", "OVEN-1"]]]),
        json!({"fields": ["id"]}),
    )
    .await;
    assert_eq!(found["result"][0]["id"], eq, "by serial number: {found}");
    let missing = execute_kw(
        &odoo,
        "maintenance.request",
        "create",
        json!([{"equipment_id": eq}]),
        json!({}),
    )
    .await;
    assert_eq!(
        error_message(&missing).0,
        "odoo.exceptions.ValidationError",
        "4.9: name is required: {missing}"
    );
    let fields = json!(["id", "name", "equipment_id/.id", "description"]);
    for text in ["raised", "raised and cleared"] {
        let r = execute_kw(
            &odoo,
            "maintenance.request",
            "load",
            json!([fields, [["plantgate.a1", "Hot", eq.to_string(), text]]]),
            json!({}),
        )
        .await;
        assert_eq!(r["result"]["messages"], json!([]), "{r}");
    }
    let reqs = odoo.maintenance_requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].description, "raised and cleared");
    assert_eq!(reqs[0].stage.as_deref(), Some("stage_0"));
    assert_eq!(reqs[0].maintenance_type, "corrective");
}

/// 4.7: the Quality models exist only with the app; a check needs a test
/// type and gets the first team; `quality_state` is none / pass / fail.
#[tokio::test]
async fn quality_models_exist_only_with_the_app() {
    let odoo = FakeOdoo::start().await;
    let installed = |odoo: &FakeOdoo| {
        let odoo = odoo.clone();
        async move {
            execute_kw(
                &odoo,
                "ir.module.module",
                "search_read",
                json!([[
                    ["name", "=", "quality_control"],
                    ["state", "=", "installed"]
                ]]),
                json!({"fields": ["name"]}),
            )
            .await["result"]
                .as_array()
                .map_or(0, Vec::len)
        }
    };
    assert_eq!(installed(&odoo).await, 0);
    let absent = execute_kw(
        &odoo,
        "quality.check",
        "search_read",
        json!([[]]),
        json!({}),
    )
    .await;
    assert!(absent.get("error").is_some(), "{absent}");
    odoo.install_quality();
    assert_eq!(installed(&odoo).await, 1);
    let types = execute_kw(
        &odoo,
        "quality.point.test_type",
        "search_read",
        json!([[["technical_name", "=", "measure"]]]),
        json!({"fields": ["id"]}),
    )
    .await;
    let measure = types["result"][0]["id"].clone();
    let r = execute_kw(
        &odoo,
        "quality.check",
        "load",
        json!([
            ["id", "test_type_id/.id", "measure", "quality_state"],
            [["plantgate.m1", measure.to_string(), "10.2", "fail"]]
        ]),
        json!({}),
    )
    .await;
    assert_eq!(r["result"]["messages"], json!([]), "{r}");
    let bad = execute_kw(
        &odoo,
        "quality.check",
        "load",
        json!([
            ["id", "test_type_id/.id", "quality_state"],
            [["plantgate.m2", measure.to_string(), "broken"]]
        ]),
        json!({}),
    )
    .await;
    assert_eq!(
        bad["result"]["ids"], false,
        "3.1: an error rolls back: {bad}"
    );
    let checks = odoo.quality_checks();
    assert_eq!(checks.len(), 1);
    assert_eq!(
        (checks[0].quality_state.as_str(), checks[0].measure),
        ("fail", 10.2)
    );
}

/// 5: a serialization failure that outlasts Odoo's own retries is
/// `psycopg2.errors.SerializationFailure` "could not serialize access due
/// to concurrent update" over JSON-RPC and HTTP 500 over JSON-2; nothing is
/// written.
#[tokio::test]
async fn a_serialization_failure_is_named_over_jsonrpc_and_500_over_json2() {
    use support::fake_odoo::Fault;
    for version in [17u8, 19] {
        let odoo = FakeOdoo::start_version(version).await;
        let wc = odoo.add_workcenter("PRESS1", "Press 1");
        let wo = odoo.add_workorder(wc, "WO/1", "progress");
        odoo.set_fault(Fault::SerializationFailure {
            model: "mrp.workorder".into(),
            method: "write".into(),
            count: 1,
        });
        if version == 17 {
            let w = execute_kw(
                &odoo,
                "mrp.workorder",
                "write",
                json!([[wo], {"qty_produced": 3.0}]),
                json!({}),
            )
            .await;
            assert_eq!(
                error_message(&w),
                (
                    "psycopg2.errors.SerializationFailure",
                    "could not serialize access due to concurrent update"
                ),
                "{w}"
            );
        } else {
            let (status, body) = json2(
                &odoo,
                "mrp.workorder/write",
                Some(API_KEY),
                json!({"ids": [wo], "vals": {"qty_produced": 3.0}}),
            )
            .await;
            assert_eq!(status, 500, "{body}");
            assert_eq!(
                body["name"], "psycopg2.errors.SerializationFailure",
                "{body}"
            );
        }
        assert_eq!(odoo.workorder(wo).expect("wo").qty_produced, 0.0);
    }
}

/// 4.6: `stock.quant.create` only in inventory mode and only with the
/// inventory fields ("Quant's creation is restricted, you can't do this
/// operation."); a quant of the same product and location is reused, not
/// duplicated; `action_apply_inventory` returns None (no `result` key over
/// JSON-RPC) and makes the counted quantity the quantity.
#[tokio::test]
async fn inventory_counts_reuse_the_quant_and_apply_returns_none() {
    let odoo = FakeOdoo::start().await;
    let product = odoo.add_product("PP resin", "RESIN-PP");
    let loc = odoo.add_location("WH/Stock/Silo 1");
    let vals = json!({"product_id": product, "location_id": loc, "inventory_quantity": 250.0});
    let restricted = "Quant's creation is restricted, you can't do this operation.";
    let plain = execute_kw(&odoo, "stock.quant", "create", json!([[vals]]), json!({})).await;
    assert_eq!(
        error_message(&plain),
        ("odoo.exceptions.UserError", restricted),
        "{plain}"
    );
    let inventory = json!({"context": {"inventory_mode": true}});
    let extra = json!({"product_id": product, "location_id": loc, "quantity": 5.0});
    let wrong = execute_kw(
        &odoo,
        "stock.quant",
        "create",
        json!([[extra]]),
        inventory.clone(),
    )
    .await;
    assert_eq!(error_message(&wrong).1, restricted, "{wrong}");
    let first = execute_kw(
        &odoo,
        "stock.quant",
        "create",
        json!([[vals]]),
        inventory.clone(),
    )
    .await;
    let id = first["result"][0]
        .as_i64()
        .expect("a list of ids for a list");
    let applied = execute_kw(
        &odoo,
        "stock.quant",
        "action_apply_inventory",
        json!([[id]]),
        inventory.clone(),
    )
    .await;
    assert!(
        applied.get("result").is_none() && applied.get("error").is_none(),
        "{applied}"
    );
    assert_eq!(odoo.on_hand(product, loc), (250.0, 1));
    let vals = json!({"product_id": product, "location_id": loc, "inventory_quantity": 240.0});
    let again = execute_kw(
        &odoo,
        "stock.quant",
        "create",
        json!([vals]),
        inventory.clone(),
    )
    .await;
    assert_eq!(
        again["result"], id,
        "a dict gives an int, and the same quant: {again}"
    );
    execute_kw(
        &odoo,
        "stock.quant",
        "action_apply_inventory",
        json!([[id]]),
        inventory,
    )
    .await;
    assert_eq!(odoo.on_hand(product, loc), (240.0, 1));
    assert_eq!(odoo.inventory_moves(), 2);
}

/// stock.scrap (Odoo's `addons/stock/models/stock_scrap.py`, with mrp's
/// links): product, unit and quantity are required; `action_validate` is
/// for one scrap, refuses a quantity that is not positive, answers True
/// once it moved the parts, or the "Insufficient Quantity" wizard when the
/// source holds fewer; it does not check that the scrap is done already,
/// so a second call moves the parts again (the sink must not send it).
#[tokio::test]
async fn a_scrap_is_validated_once_it_is_covered_and_each_validation_moves_again() {
    let odoo = FakeOdoo::start().await;
    let product = odoo.add_product("Bracket", "BRACKET");
    let stock = odoo.add_location("WH/Stock");
    odoo.add_scrap_location("Virtual Locations/Scrap");
    let mo = odoo.add_production("MO/1", 10.0);
    odoo.set_production_product(mo, product, stock);
    let missing = execute_kw(
        &odoo,
        "stock.scrap",
        "create",
        json!([{"scrap_qty": 2.0, "production_id": mo}]),
        json!({}),
    )
    .await;
    assert_eq!(
        error_message(&missing).0,
        "odoo.exceptions.ValidationError",
        "product and unit are required: {missing}"
    );
    let scrap = |qty: f64| json!([{"product_id": product, "product_uom_id": 1, "scrap_qty": qty, "production_id": mo}]);
    let id = |reply: &Value| reply["result"].as_i64().expect("an id");
    let zero = id(&execute_kw(&odoo, "stock.scrap", "create", scrap(0.0), json!({})).await);
    let refused = execute_kw(
        &odoo,
        "stock.scrap",
        "action_validate",
        json!([[zero]]),
        json!({}),
    )
    .await;
    assert_eq!(
        error_message(&refused),
        (
            "odoo.exceptions.UserError",
            "You can only enter positive quantities."
        )
    );
    let s = id(&execute_kw(&odoo, "stock.scrap", "create", scrap(3.0), json!({})).await);
    assert_eq!(
        odoo.scraps()[1].location_id,
        stock,
        "the MO's location by default"
    );
    let both = execute_kw(
        &odoo,
        "stock.scrap",
        "action_validate",
        json!([[zero, s]]),
        json!({}),
    )
    .await;
    assert_eq!(
        error_message(&both).0,
        "builtins.ValueError",
        "one scrap at a time: {both}"
    );
    let short = execute_kw(
        &odoo,
        "stock.scrap",
        "action_validate",
        json!([[s]]),
        json!({}),
    )
    .await;
    assert_eq!(
        short["result"]["res_model"], "stock.warn.insufficient.qty.scrap",
        "{short}"
    );
    assert_eq!(odoo.scraps()[1].state, "draft");
    odoo.set_on_hand(product, stock, 10.0);
    let done = execute_kw(
        &odoo,
        "stock.scrap",
        "action_validate",
        json!([[s]]),
        json!({}),
    )
    .await;
    assert_eq!(done["result"], true, "{done}");
    assert_eq!(odoo.scraps()[1].state, "done");
    assert_eq!(odoo.on_hand(product, stock).0, 7.0);
    execute_kw(
        &odoo,
        "stock.scrap",
        "action_validate",
        json!([[s]]),
        json!({}),
    )
    .await;
    assert_eq!(odoo.scrap_moves(), 2, "validated again, moved again");
    assert_eq!(odoo.on_hand(product, stock).0, 4.0);
}
