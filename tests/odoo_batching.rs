//! Batches as the delivery loop hands them to the Odoo sink, against the
//! fake Odoo over real HTTP, per Odoo version (16–18 over JSON-RPC, 19 over
//! JSON-2): N parts of one work order are one write of the final value and
//! Odoo holds exactly the parts made, also when an operator recorded a
//! quantity first, a work order closes mid-batch, Odoo is away and the
//! batch is sent again, or the whole queue is replayed after a crash; the
//! stops of many work centers are one `load`, and a row Odoo refuses is a
//! dead letter with Odoo's message while the others go in; a stop's end
//! starts again the timer its start cut; a 503 with Retry-After pauses the
//! sink for that long.

mod support;

use plantgate::model::Event;
use plantgate::sinks::{DeliveryError, Outcome};
use support::fake_odoo::Fault;
use support::odoo_sink::{ms, parts_at, sink_rig, stop_event, SinkRig, SINK};

const T0: &str = "2026-01-01 08:00:00";

type Rig = SinkRig;

async fn rig(version: u8, extra: &str) -> Rig {
    sink_rig(version, extra).await
}

fn at(base: &str, secs: i64) -> String {
    let dt = chrono::NaiveDateTime::parse_from_str(base, "%Y-%m-%d %H:%M:%S").expect("time");
    (dt + chrono::Duration::seconds(secs))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn parts(wc: &str, id: &str, time: &str, quantity: u64) -> Event {
    parts_at(wc, id, ms(time), quantity)
}

fn stop(wc: &str, stop_id: &str, loss: &str, start: &str, end: Option<&str>) -> Event {
    let id = format!("{stop_id}-{}", if end.is_some() { "end" } else { "start" });
    stop_event(&id, wc, stop_id, loss, start, end)
}

impl Rig {
    async fn batch(&mut self, evs: &[Event]) -> Vec<Outcome> {
        self.sink.deliver_batch(&self.store, SINK, evs).await
    }
    fn count(&self, model: &str, method: &str) -> usize {
        self.odoo
            .calls()
            .iter()
            .filter(|c| {
                c.model.as_deref() == Some(model)
                    && c.model_method.as_deref() == Some(method)
                    && c.outcome == "ok"
            })
            .count()
    }
}

fn all_ok(outcomes: &[Outcome]) {
    for (i, o) in outcomes.iter().enumerate() {
        assert!(matches!(o, Some(Ok(()))), "event {i}: {o:?}");
    }
}

async fn parts_of_one_work_order_are_one_write_and_odoo_holds_exactly_the_parts_on(version: u8) {
    let mut r = rig(version, "").await;
    let wc = r.odoo.add_workcenter("PRESS1", "Press 1");
    let mo = r.odoo.add_production("MO/1", 500.0);
    let wo1 = r.odoo.add_workorder_for(mo, wc, "WO/1", "progress");
    r.odoo.set_workorder_dates(wo1, Some(T0), None);
    // The operator recorded 120 on the MO before the gateway's first part.
    r.odoo.set_production_qty(mo, 120.0);
    let first: Vec<Event> = (0..50)
        .map(|i| parts("PRESS1", &format!("a{i}"), &at("2026-01-01 09:00:00", i), 2))
        .collect();
    let writes = r.count("mrp.workorder", "write");
    all_ok(&r.batch(&first).await);
    assert_eq!(r.count("mrp.workorder", "write") - writes, 1, "one write");
    let w = r.odoo.workorder(wo1).expect("wo1");
    assert_eq!((w.qty_produced, w.qty_producing), (220.0, 220.0));

    // WO/1 finishes at 10:00 and WO/2 starts at 10:00 while a batch spanning
    // both is on its way: each gets the parts made while it ran.
    r.odoo.set_workorder_state(wo1, "done");
    r.odoo
        .set_workorder_dates(wo1, Some(T0), Some("2026-01-01 10:00:00"));
    let wo2 = r.odoo.add_workorder(wc, "WO/2", "progress");
    r.odoo
        .set_workorder_dates(wo2, Some("2026-01-01 10:00:00"), None);
    let second: Vec<Event> = (0..20)
        .map(|i| parts("PRESS1", &format!("b{i}"), &at("2026-01-01 09:59:50", i), 1))
        .collect();
    let writes = r.count("mrp.workorder", "write");
    all_ok(&r.batch(&second).await);
    assert_eq!(r.count("mrp.workorder", "write") - writes, 2, "one per WO");
    assert_eq!(r.odoo.workorder(wo1).map(|w| w.qty_produced), Some(230.0));
    assert_eq!(r.odoo.workorder(wo2).map(|w| w.qty_produced), Some(10.0));

    // Odoo goes away during the next batch; when it is back the batch is
    // sent again and lands once.
    let third: Vec<Event> = (0..10)
        .map(|i| parts("PRESS1", &format!("c{i}"), &at("2026-01-01 10:30:00", i), 3))
        .collect();
    r.odoo.stop().await;
    let down = r.batch(&third).await;
    assert!(
        down.iter()
            .all(|o| matches!(o, Some(Err(DeliveryError::Unreachable(_))))),
        "{down:?}"
    );
    r.odoo.resume().await;
    all_ok(&r.batch(&third).await);
    assert_eq!(r.odoo.workorder(wo2).map(|w| w.qty_produced), Some(40.0));

    // A crash before the acks: the whole queue comes again, as one batch.
    let writes = r.count("mrp.workorder", "write");
    let everything: Vec<Event> = second.iter().chain(&third).cloned().collect();
    all_ok(&r.batch(&everything).await);
    assert_eq!(
        r.count("mrp.workorder", "write"),
        writes,
        "a replay writes nothing"
    );
    assert_eq!(r.odoo.workorder(wo1).map(|w| w.qty_produced), Some(230.0));
    assert_eq!(r.odoo.workorder(wo2).map(|w| w.qty_produced), Some(40.0));
}

async fn stops_of_many_work_centers_are_one_load_and_a_refused_row_alone_is_a_dead_letter_on(
    version: u8,
) {
    let mut r = rig(version, "").await;
    let mut evs = Vec::new();
    for n in 0..5 {
        let code = format!("WC{n}");
        let wc = r.odoo.add_workcenter(&code, &format!("Line {n}"));
        let wo = r.odoo.add_workorder(wc, &format!("WO/{n}"), "progress");
        r.odoo.set_workorder_dates(wo, Some(T0), None);
        let loss = if n == 3 {
            "mrp.no_such_reason"
        } else {
            "mrp.block_reason1"
        };
        let id = format!("gw1-stops{n}-1");
        evs.push(stop(&code, &id, loss, "2026-01-01 09:00:00", None));
        evs.push(stop(
            &code,
            &id,
            loss,
            "2026-01-01 09:00:00",
            Some("2026-01-01 09:10:00"),
        ));
    }
    let loads = r.count("mrp.workcenter.productivity", "load");
    let out = r.batch(&evs).await;
    for (i, o) in out.iter().enumerate() {
        if evs[i].key() == "WC3" {
            match o {
                Some(Err(DeliveryError::Reject(m))) => {
                    assert!(m.contains("mrp.no_such_reason"), "{m}")
                }
                other => panic!("WC3's stop must be a dead letter: {other:?}"),
            }
        } else {
            assert!(matches!(o, Some(Ok(()))), "{}: {o:?}", evs[i].id);
        }
    }
    // The refused load, then the same rows without WC3's: two loads for ten
    // events, and Odoo holds four closed stops.
    assert_eq!(r.count("mrp.workcenter.productivity", "load") - loads, 2);
    let logs: Vec<_> = r
        .odoo
        .productivity()
        .into_iter()
        .filter(|p| p.loss_type != "productive")
        .collect();
    assert_eq!(logs.len(), 4, "{logs:?}");
    assert!(logs
        .iter()
        .all(|p| p.date_end.as_deref() == Some("2026-01-01 09:10:00")));
    // Sent again (a replay): the same four records, updated, not doubled.
    let again: Vec<Event> = evs.into_iter().filter(|e| e.key() != "WC3").collect();
    all_ok(&r.batch(&again).await);
    let now: Vec<_> = r
        .odoo
        .productivity()
        .into_iter()
        .filter(|p| p.loss_type != "productive")
        .collect();
    assert_eq!(now, logs);
}

async fn a_503_with_retry_after_pauses_for_it_on(version: u8) {
    let mut r = rig(version, "").await;
    let wc = r.odoo.add_workcenter("PRESS1", "Press 1");
    let wo = r.odoo.add_workorder(wc, "WO/1", "progress");
    r.odoo.set_workorder_dates(wo, Some(T0), None);
    r.odoo.set_fault(Fault::Overloaded {
        retry_after: "30".into(),
        count: 100,
    });
    let out = r
        .batch(&[parts("PRESS1", "e1", "2026-01-01 09:00:00", 1)])
        .await;
    match &out[0] {
        Some(Err(DeliveryError::Throttled { after, why })) => {
            assert_eq!(*after, Some(std::time::Duration::from_secs(30)), "{why}");
            assert!(why.contains("503"), "{why}");
        }
        other => panic!("expected a pause, got {other:?}"),
    }
}

/// A stop's start and end in one batch: the timer the start cut starts
/// again at the end, once, and a replay of the batch changes nothing.
async fn a_stop_within_one_batch_gives_the_cut_timer_back_at_its_end_on(version: u8) {
    let mut r = rig(version, "").await;
    let wc = r.odoo.add_workcenter("PRESS1", "Press 1");
    let wo = r.odoo.add_workorder(wc, "WO/1", "progress");
    r.odoo.set_workorder_dates(wo, Some(T0), None);
    let timer = r.odoo.add_timer(wo, "2026-01-01 08:05:00", None);
    let evs = [
        stop(
            "PRESS1",
            "gw1-stops-1",
            "mrp.block_reason1",
            "2026-01-01 09:00:00",
            None,
        ),
        stop(
            "PRESS1",
            "gw1-stops-1",
            "mrp.block_reason1",
            "2026-01-01 09:00:00",
            Some("2026-01-01 09:10:00"),
        ),
    ];
    all_ok(&r.batch(&evs).await);
    let productive = |r: &Rig| -> Vec<(i64, String, Option<String>)> {
        r.odoo
            .productivity()
            .into_iter()
            .filter(|p| p.loss_type == "productive")
            .map(|p| (p.workorder_id.unwrap_or(0), p.date_start, p.date_end))
            .collect()
    };
    let expected = vec![
        (
            wo,
            "2026-01-01 08:05:00".to_string(),
            Some("2026-01-01 09:00:00".to_string()),
        ),
        (wo, "2026-01-01 09:10:00".to_string(), None),
    ];
    assert_eq!(productive(&r), expected, "timer {timer}");
    all_ok(&r.batch(&evs).await);
    assert_eq!(productive(&r), expected, "a replay");
}

macro_rules! per_version {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn odoo_16() {
                super::$name(16).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn odoo_17() {
                super::$name(17).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn odoo_18() {
                super::$name(18).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn odoo_19() {
                super::$name(19).await;
            }
        }
    };
}

per_version!(parts_of_one_work_order_are_one_write_and_odoo_holds_exactly_the_parts_on);
per_version!(stops_of_many_work_centers_are_one_load_and_a_refused_row_alone_is_a_dead_letter_on);
per_version!(a_503_with_retry_after_pauses_for_it_on);
per_version!(a_stop_within_one_batch_gives_the_cut_timer_back_at_its_end_on);
