//! What the Odoo sink leaves in Odoo, driven with explicit event times
//! against the fake Odoo over real HTTP: quantities somebody else recorded
//! are never lowered, parts go to the work order that ran when they were
//! made, repeats change nothing, and a stop closes the productive timers
//! and never overlaps them; its end starts again the timers it closed,
//! unless the operator has already.

mod support;

use plantgate::config::{self};
use plantgate::model::Event;
use plantgate::sinks::odoo::OdooSink;
use plantgate::sinks::DeliveryError;
use plantgate::store::Store;
use support::fake_odoo::{FakeOdoo, Fault, Productivity, OPERATOR_UID};
use support::odoo_sink::{ms, odoo_config, parts_at, sink_store, stop_event, SINK};

struct Rig {
    odoo: FakeOdoo,
    sink: OdooSink,
    store: Store,
    wc: i64,
    _dir: tempfile::TempDir,
}

/// Odoo 17 (JSON-RPC) or 19 (JSON-2, found by `api = "auto"`).
async fn rig(version: u8, extra: &str) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let odoo = FakeOdoo::start_version(version).await;
    let wc = odoo.add_workcenter("PRESS1", "Press 1");
    let sink = OdooSink::new(&odoo_config(dir.path(), &odoo.url(), extra)).expect("sink");
    let store = sink_store(dir.path());
    Rig {
        odoo,
        sink,
        store,
        wc,
        _dir: dir,
    }
}

fn parts(id: &str, at: &str, quantity: u64) -> Event {
    parts_at("PRESS1", id, ms(at), quantity)
}

fn stop(id: &str, start: &str, end: Option<&str>) -> Event {
    stop_event(id, "PRESS1", "gw1-stops-1", "mrp.block_reason1", start, end)
}

impl Rig {
    async fn deliver(&mut self, ev: &Event) -> Result<(), DeliveryError> {
        self.sink.deliver(&self.store, SINK, ev).await
    }
    async fn ok(&mut self, ev: &Event) {
        if let Err(e) = self.deliver(ev).await {
            panic!("{} not delivered: {e}", ev.id);
        }
    }
    fn writes(&self) -> usize {
        self.odoo
            .calls()
            .iter()
            .filter(|c| c.model_method.as_deref() == Some("write") && c.outcome == "ok")
            .count()
    }
}

const T0: &str = "2026-01-01 08:00:00";

async fn an_operators_quantity_is_kept_and_the_parts_added_for_each_target_on(version: u8) {
    for target in ["workorder", "production", "both"] {
        let mut r = rig(
            version,
            &format!("production_target = \"{target}\"\nquantity_max_age = \"1h\"\n"),
        )
        .await;
        let mo = r.odoo.add_production("MO/1", 500.0);
        let wo = r.odoo.add_workorder_for(mo, r.wc, "WO/1", "progress");
        r.odoo.set_workorder_dates(wo, Some(T0), None);
        // The operator recorded 120 on the MO before the gateway's first part.
        r.odoo.set_production_qty(mo, 120.0);
        r.ok(&parts("e1", "2026-01-01 09:00:00", 1)).await;
        let after_first = r.odoo.calls().len();
        r.ok(&parts("e2", "2026-01-01 09:00:01", 2)).await;
        r.ok(&parts("e3", "2026-01-01 09:00:02", 4)).await;

        let m = r.odoo.production(mo).expect("mo");
        let w = r.odoo.workorder(wo).expect("wo");
        assert_eq!(m.qty_producing, 127.0, "{target}: 120 + 7 on the MO");
        assert_eq!(w.qty_producing, 127.0, "{target}: the WO shows its MO's");
        let wo_expected = if target == "production" { 0.0 } else { 127.0 };
        assert_eq!(w.qty_produced, wo_expected, "{target}: {w:?}");
        // Steady state: the work order is cached, each part is its write(s).
        let per_event = if target == "both" { 2 } else { 1 };
        assert_eq!(
            r.odoo.calls().len() - after_first,
            2 * per_event,
            "{target}: {:?}",
            &r.odoo.calls()[after_first..]
        );
        // `api = "auto"` speaks JSON-2 to 19 and JSON-RPC to 17, and says so.
        let api = if version >= 19 {
            "json2 (Odoo 19.0)"
        } else {
            "jsonrpc"
        };
        assert_eq!(r.sink.api().as_deref(), Some(api));
        let want: &[&str] = if version >= 19 {
            &["json2"]
        } else {
            &["common", "object"]
        };
        assert!(
            r.odoo
                .calls()
                .iter()
                .all(|c| want.contains(&c.service.as_str())),
            "{version}: {:?}",
            r.odoo.calls()
        );
    }
}

async fn with_quantity_max_age_0_an_entry_made_mid_run_is_kept_on(version: u8) {
    let mut r = rig(version, "quantity_max_age = \"0s\"\n").await;
    let wo = r.odoo.add_workorder(r.wc, "WO/1", "progress");
    r.odoo.set_workorder_dates(wo, Some(T0), None);
    r.ok(&parts("e1", "2026-01-01 09:00:00", 3)).await;
    // The operator corrects the count upwards in Odoo between two parts.
    r.odoo.set_workorder_qty(wo, 50.0);
    r.ok(&parts("e2", "2026-01-01 09:00:01", 2)).await;
    let w = r.odoo.workorder(wo).expect("wo");
    assert_eq!((w.qty_produced, w.qty_producing), (52.0, 52.0));
}

async fn a_work_order_closing_mid_run_keeps_the_parts_it_made_and_the_next_gets_the_rest_on(
    version: u8,
) {
    let mut r = rig(version, "quantity_max_age = \"1h\"\n").await;
    let wo1 = r.odoo.add_workorder(r.wc, "WO/1", "progress");
    r.odoo.set_workorder_dates(wo1, Some(T0), None);
    r.ok(&parts("e1", "2026-01-01 08:30:00", 5)).await;

    // In Odoo the operator finishes WO/1 at 10:00 and starts WO/2 at 10:10,
    // while parts made before 10:00 are still on their way.
    r.odoo.set_workorder_state(wo1, "done");
    r.odoo
        .set_workorder_dates(wo1, Some(T0), Some("2026-01-01 10:00:00"));
    let wo2 = r.odoo.add_workorder(r.wc, "WO/2", "progress");
    r.odoo
        .set_workorder_dates(wo2, Some("2026-01-01 10:10:00"), None);

    let late = parts("e2", "2026-01-01 09:59:00", 3);
    // The gateway still believed WO/1 running: Odoo refuses, it reads again.
    let first = r.deliver(&late).await;
    assert!(
        matches!(&first, Err(DeliveryError::Retry(m)) if m.contains("has been closed")),
        "{first:?}"
    );
    r.ok(&late).await;
    r.ok(&parts("e3", "2026-01-01 10:05:00", 2)).await; // between the two: the next one
    r.ok(&parts("e4", "2026-01-01 10:20:00", 4)).await;

    let w1 = r.odoo.workorder(wo1).expect("wo1");
    let w2 = r.odoo.workorder(wo2).expect("wo2");
    assert_eq!((w1.state.as_str(), w1.qty_produced), ("done", 8.0));
    assert_eq!(w2.qty_produced, 6.0);
    assert_eq!(
        r.odoo.production(w1.production_id).map(|m| m.qty_producing),
        Some(8.0)
    );

    // Once WO/1's MO is done, late parts of WO/1 cannot go in: a dead
    // letter that says what to do, and nothing written.
    r.odoo.set_production_state(w1.production_id, "done");
    let writes = r.writes();
    let refused = r.deliver(&parts("e5", "2026-01-01 09:59:30", 1)).await;
    match refused {
        Err(DeliveryError::Reject(m)) => {
            assert!(m.contains("WO/1") && m.contains("is done"), "{m}");
            assert!(m.contains("plantgate dlq"), "{m}");
        }
        other => panic!("expected a dead letter, got {other:?}"),
    }
    assert_eq!(r.writes(), writes);
    // Parts made when no work order had run yet, nor started since.
    let r2 = &mut rig(version, "").await;
    let wo = r2.odoo.add_workorder(r2.wc, "WO/9", "ready");
    let none = r2.deliver(&parts("e1", T0, 1)).await;
    assert!(
        matches!(&none, Err(DeliveryError::Reject(m)) if m.contains("dlq replay")),
        "{none:?}"
    );
    assert_eq!(r2.odoo.workorder(wo).map(|w| w.qty_produced), Some(0.0));
}

async fn repeats_after_lost_replies_an_outage_and_a_crash_change_nothing_on(version: u8) {
    for target in ["workorder", "production", "both"] {
        let mut r = rig(version, &format!("production_target = \"{target}\"\n")).await;
        let wo = r.odoo.add_workorder(r.wc, "WO/1", "progress");
        r.odoo.set_workorder_dates(wo, Some(T0), None);
        let mo = r.odoo.workorder(wo).expect("wo").production_id;
        r.odoo.set_production_qty(mo, 10.0);
        let events: Vec<Event> = (0..6)
            .map(|i| parts(&format!("e{i}"), &format!("2026-01-01 09:00:0{i}"), i + 1))
            .collect();
        // The first write of each lands, but its reply is lost.
        let (model, method) = if target == "production" {
            ("mrp.production", "write")
        } else {
            ("mrp.workorder", "write")
        };
        r.odoo.set_fault(Fault::ReplyLost {
            model: model.into(),
            method: method.into(),
            count: 2,
        });
        for ev in &events[..3] {
            let mut tries = 0;
            while let Err(e) = r.deliver(ev).await {
                tries += 1;
                assert!(tries < 5, "{target}: {} keeps failing: {e}", ev.id);
            }
        }
        let lost = r
            .odoo
            .calls()
            .iter()
            .filter(|c| c.outcome == "http:504")
            .count();
        assert_eq!(lost, 2, "{target}: the fault fired");
        // Odoo goes away and comes back: the event in flight is repeated.
        r.odoo.stop().await;
        let down = r.deliver(&events[3]).await;
        assert!(
            matches!(down, Err(DeliveryError::Unreachable(_))),
            "{down:?}"
        );
        r.odoo.resume().await;
        for ev in &events[3..] {
            r.ok(ev).await;
        }
        let expected = 10.0 + 21.0;
        let qty = |r: &Rig| {
            let w = r.odoo.workorder(wo).expect("wo");
            (w.qty_produced, w.qty_producing)
        };
        let wo_expected = if target == "production" {
            0.0
        } else {
            expected
        };
        assert_eq!(qty(&r), (wo_expected, expected), "{target}");
        // A crash before the acks: the whole queue is delivered again.
        let writes = r.writes();
        for ev in &events {
            r.ok(ev).await;
        }
        assert_eq!(qty(&r), (wo_expected, expected), "{target}: replay");
        assert_eq!(r.writes(), writes, "{target}: a repeat writes nothing");
    }
}

/// Productive and loss intervals of one work center that overlap.
fn overlaps(logs: &[Productivity]) -> Vec<(i64, i64)> {
    let end = |p: &Productivity| p.date_end.clone().unwrap_or_else(|| "9999".into());
    let mut out = Vec::new();
    for a in logs.iter().filter(|p| p.loss_type == "productive") {
        for b in logs.iter().filter(|p| p.loss_type != "productive") {
            if a.workcenter_id == b.workcenter_id && a.date_start < end(b) && b.date_start < end(a)
            {
                out.push((a.id, b.id));
            }
        }
    }
    out
}

async fn a_stop_closes_the_running_timer_links_the_work_order_and_never_overlaps_on(version: u8) {
    let mut r = rig(version, "").await;
    let wo = r.odoo.add_workorder(r.wc, "WO/1", "progress");
    r.odoo.set_workorder_dates(wo, Some(T0), None);
    let timer = r.odoo.add_timer(wo, "2026-01-01 08:05:00", None);
    assert_eq!(r.odoo.working_state(r.wc), "done", "in progress");

    let started = stop("s1", "2026-01-01 09:00:00", None);
    r.ok(&started).await;
    let logs = r.odoo.productivity();
    let t = logs.iter().find(|p| p.id == timer).expect("timer");
    assert_eq!(t.date_end.as_deref(), Some("2026-01-01 09:00:00"));
    let loss = logs.iter().find(|p| p.id != timer).expect("loss log");
    assert_eq!(loss.workorder_id, Some(wo));
    assert_eq!(loss.date_end, None);
    assert_eq!(loss.loss_xmlid.as_deref(), Some("mrp.block_reason1"));
    assert_eq!(r.odoo.working_state(r.wc), "blocked");
    assert_eq!(overlaps(&logs), vec![]);

    r.ok(&started).await; // a retry of the start
    assert_eq!(r.odoo.productivity(), logs);

    let ended = stop("s2", "2026-01-01 09:00:00", Some("2026-01-01 09:20:00"));
    r.ok(&ended).await;
    // The machine runs again: the timer the stop cut starts again at the
    // stop's end, still the operator's.
    let logs = r.odoo.productivity();
    assert_eq!(logs.len(), 3, "{logs:?}");
    let back = logs
        .iter()
        .find(|p| p.loss_type == "productive" && p.id != timer)
        .expect("resumed timer");
    assert_eq!(
        (
            back.date_start.as_str(),
            back.date_end.as_deref(),
            back.workorder_id,
            back.user_id
        ),
        ("2026-01-01 09:20:00", None, Some(wo), OPERATOR_UID)
    );
    assert_eq!(r.odoo.working_state(r.wc), "done", "in progress again");
    assert_eq!(overlaps(&logs), vec![]);
    // The start and the end come again (a dead-letter replay, or the queue
    // again after a crash): nothing changes.
    r.ok(&started).await;
    r.ok(&ended).await;
    assert_eq!(r.odoo.productivity(), logs);
}

async fn an_operator_who_restarted_before_the_stop_end_arrived_is_left_alone_on(version: u8) {
    let mut r = rig(version, "").await;
    let wo = r.odoo.add_workorder(r.wc, "WO/1", "progress");
    r.odoo.set_workorder_dates(wo, Some(T0), None);
    r.odoo.add_timer(wo, "2026-01-01 08:05:00", None);
    r.ok(&stop("s1", "2026-01-01 09:00:00", None)).await;
    // The end reaches Odoo late: the operator has pressed Start already.
    let resumed = r.odoo.add_timer(wo, "2026-01-01 09:25:00", None);
    r.ok(&stop(
        "s2",
        "2026-01-01 09:00:00",
        Some("2026-01-01 09:20:00"),
    ))
    .await;
    let logs = r.odoo.productivity();
    assert_eq!(logs.len(), 3, "no second timer: {logs:?}");
    let loss = logs
        .iter()
        .find(|p| p.loss_type != "productive")
        .expect("loss");
    assert_eq!(
        (loss.date_start.as_str(), loss.date_end.as_deref()),
        ("2026-01-01 09:00:00", Some("2026-01-01 09:20:00"))
    );
    let again = logs.iter().find(|p| p.id == resumed).expect("resumed");
    assert_eq!(again.date_end, None, "the operator's new timer runs on");
    assert_eq!(again.user_id, OPERATOR_UID);
    assert_eq!(overlaps(&logs), vec![]);
    assert_eq!(r.odoo.working_state(r.wc), "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_who_restarted_before_the_stop_end_arrived_is_left_alone_jsonrpc_17() {
    an_operator_who_restarted_before_the_stop_end_arrived_is_left_alone_on(17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_who_restarted_before_the_stop_end_arrived_is_left_alone_json2_19() {
    an_operator_who_restarted_before_the_stop_end_arrived_is_left_alone_on(19).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_quantity_is_kept_and_the_parts_added_for_each_target_jsonrpc_17() {
    an_operators_quantity_is_kept_and_the_parts_added_for_each_target_on(17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_quantity_is_kept_and_the_parts_added_for_each_target_json2_19() {
    an_operators_quantity_is_kept_and_the_parts_added_for_each_target_on(19).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_quantity_max_age_0_an_entry_made_mid_run_is_kept_jsonrpc_17() {
    with_quantity_max_age_0_an_entry_made_mid_run_is_kept_on(17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_quantity_max_age_0_an_entry_made_mid_run_is_kept_json2_19() {
    with_quantity_max_age_0_an_entry_made_mid_run_is_kept_on(19).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_order_closing_mid_run_keeps_the_parts_it_made_and_the_next_gets_the_rest_jsonrpc_17(
) {
    a_work_order_closing_mid_run_keeps_the_parts_it_made_and_the_next_gets_the_rest_on(17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_order_closing_mid_run_keeps_the_parts_it_made_and_the_next_gets_the_rest_json2_19()
{
    a_work_order_closing_mid_run_keeps_the_parts_it_made_and_the_next_gets_the_rest_on(19).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_after_lost_replies_an_outage_and_a_crash_change_nothing_jsonrpc_17() {
    repeats_after_lost_replies_an_outage_and_a_crash_change_nothing_on(17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_after_lost_replies_an_outage_and_a_crash_change_nothing_json2_19() {
    repeats_after_lost_replies_an_outage_and_a_crash_change_nothing_on(19).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_closes_the_running_timer_links_the_work_order_and_never_overlaps_jsonrpc_17() {
    a_stop_closes_the_running_timer_links_the_work_order_and_never_overlaps_on(17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_closes_the_running_timer_links_the_work_order_and_never_overlaps_json2_19() {
    a_stop_closes_the_running_timer_links_the_work_order_and_never_overlaps_on(19).await;
}

/// A refused key pauses the sink (the whole destination), naming what to
/// check and never the key itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_api_key_over_json2_pauses_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let odoo = FakeOdoo::start_version(19).await;
    odoo.add_workcenter("PRESS1", "Press 1");
    let mut cfg = odoo_config(dir.path(), &odoo.url(), "api = \"json2\"\n");
    let wrong = "ffffffffffffffffffffffffffffffffffffffff";
    let key = dir.path().join("wrong.key");
    std::fs::write(&key, wrong).expect("key");
    cfg.api_key = Some(config::SecretSource::File(key));
    let mut sink = OdooSink::new(&cfg).expect("sink");
    let store = sink_store(dir.path());
    match sink.deliver(&store, SINK, &parts("e1", T0, 1)).await {
        Err(DeliveryError::Unreachable(m)) => {
            assert!(m.contains("refused the API key"), "{m}");
            assert!(!m.contains(wrong), "{m}");
        }
        other => panic!("expected a pause, got {other:?}"),
    }
}
