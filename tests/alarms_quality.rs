//! Alarms and measurements end to end: a simulated PLC (Modbus TCP) holds
//! an oven temperature and a measured bore, the gateway applies alarm and
//! measurement rules, and the fake Odoo must show what a maintenance
//! technician and a quality inspector would see: one corrective request
//! per over-temperature, raised while still hot and noted when it cools;
//! one failing quality check per out-of-spec part and one alert for the
//! run, or notes on the work order's MO when the Quality app is absent.

mod support;

use std::time::Duration;
use support::eventually;
use support::fake_odoo::Fault;
use support::press::{self, PressRig};

const TEMP: u16 = 110;
const BORE: u16 = 111;

fn rules(equipment: &str) -> String {
    format!(
        r#"
[[tags]]
name = "oven_temp"
source = "press1"
register = {TEMP}

[[tags]]
name = "bore"
source = "press1"
register = {BORE}
scale = 0.01
min = 5.0                       # 0 (no part measured yet) is no reading
max = 15.0
on_change = true

[[events]]
kind = "alarm"
name = "oven_hot"
tag = "oven_temp"
equipment = "{equipment}"
above = 260.0
clear_at = 255.0
for = "1s"
description = "Oven 1 over temperature"

[[events]]
kind = "measurement"
name = "bore"
tag = "bore"
workcenter = "PRESS1"
low = 9.95
high = 10.05
target = 10.0
alert_after = 3
description = "Bore diameter"
"#
    )
}

async fn rig(equipment: &str) -> PressRig {
    let extra = rules(equipment);
    let r = press::start_edited(
        |text, _| {
            // The rule sections go before [odoo], with the other tags and events.
            text.replacen("[odoo]", &format!("{extra}\n[odoo]"), 1)
        },
        "127.0.0.1:0",
    )
    .await;
    r.regs.set_u16(TEMP, 250);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_temperature_opens_one_maintenance_request_and_its_clear_updates_it() {
    let r = rig("OVEN-1").await;
    let oven = r.odoo.add_equipment("Oven 1", Some("OVEN-1"));
    // The first request is created but its answer lost: the raise is
    // delivered again, and must not make a second request.
    r.odoo.set_fault(Fault::ReplyLost {
        model: "maintenance.request".into(),
        method: "load".into(),
        count: 1,
    });
    // Hot, with the temperature wandering above the limit and into the
    // hysteresis band: one occurrence.
    for t in [265, 270, 262, 258, 266] {
        r.regs.set_u16(TEMP, t);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let req = eventually(Duration::from_secs(20), "a maintenance request", || {
        let reqs = r.odoo.maintenance_requests();
        async move { reqs.first().cloned() }
    })
    .await;
    assert_eq!(req.name, "Oven 1 over temperature");
    assert_eq!(req.equipment_id, Some(oven), "found by its serial number");
    assert_eq!(req.maintenance_type, "corrective");
    assert_eq!(req.stage.as_deref(), Some("stage_0"), "a new request");
    assert!(req.description.contains("Raised at"), "{}", req.description);
    assert!(!req.description.contains("Cleared"), "still hot: {req:?}");
    assert!(
        req.xmlid
            .as_deref()
            .is_some_and(|x| x.starts_with("plantgate.gw1-oven_hot-")),
        "{req:?}"
    );

    r.regs.set_u16(TEMP, 240);
    let cleared = eventually(Duration::from_secs(20), "the request noted cleared", || {
        let reqs = r.odoo.maintenance_requests();
        async move {
            reqs.into_iter()
                .find(|q| q.description.contains("Cleared at"))
        }
    })
    .await;
    assert_eq!(cleared.id, req.id, "the same request");
    let calls = r.odoo.calls();
    let count = |model: &str| {
        calls
            .iter()
            .filter(|c| c.model.as_deref() == Some(model))
            .count()
    };
    assert_eq!(
        count("ir.model.data"),
        2,
        "the raise was delivered again after its answer was lost"
    );
    assert_eq!(
        count("maintenance.request"),
        2,
        "the repeat found the request and loaded nothing; the clear loaded it"
    );
    assert!(cleared.description.contains("Raised at"), "{cleared:?}");
    assert_eq!(r.odoo.maintenance_requests().len(), 1);

    // A second over-temperature is a second occurrence: a second request.
    r.regs.set_u16(TEMP, 280);
    eventually(Duration::from_secs(20), "a second request", || {
        let n = r.odoo.maintenance_requests().len();
        async move { (n == 2).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_on_unknown_equipment_is_a_dead_letter_naming_the_config_line() {
    let r = rig("OVEN-9").await;
    r.regs.set_u16(TEMP, 270);
    let dlq = eventually(Duration::from_secs(20), "a dead letter", || {
        let url = format!("{}/dlq", r.base);
        async move { support::get(&url).await.filter(|t| t.contains("OVEN-9")) }
    })
    .await;
    let line = r.config_path().display().to_string();
    assert!(dlq.contains(&line), "names the config file: {dlq}");
    assert!(dlq.contains("maintenance.equipment"), "{dlq}");
    assert!(r.odoo.maintenance_requests().is_empty());
}

/// Ten out-of-spec parts, each waited for so every one is read.
async fn ten_bad_parts(r: &PressRig, count: impl Fn() -> usize) {
    for i in 0..10u16 {
        let before = count();
        r.regs.set_u16(BORE, 1020 + i);
        eventually(Duration::from_secs(20), "the part measured", || {
            let n = count();
            async move { (n > before).then_some(()) }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_spec_parts_give_failing_quality_checks_and_one_alert() {
    let r = rig("OVEN-1").await;
    r.odoo.install_quality();
    ten_bad_parts(&r, || r.odoo.quality_checks().len()).await;
    let checks = r.odoo.quality_checks();
    assert_eq!(checks.len(), 10, "{checks:?}");
    assert!(
        checks.iter().all(|c| c.quality_state == "fail"),
        "{checks:?}"
    );
    assert!((checks[0].measure - 10.2).abs() < 1e-9, "{:?}", checks[0]);
    assert!(checks[0].text.contains("WO/1"), "{:?}", checks[0]);
    assert!(checks[0].text.contains("10.2 (fail)"), "{:?}", checks[0]);
    let alerts = eventually(Duration::from_secs(20), "a quality alert", || {
        let a = r.odoo.quality_alerts();
        async move { (!a.is_empty()).then_some(a) }
    })
    .await;
    assert_eq!(alerts.len(), 1, "one alert for the run: {alerts:?}");
    assert_eq!(
        alerts[0].check_id,
        Some(checks[2].id),
        "about the third failure in a row"
    );
    // An in-spec part passes.
    r.regs.set_u16(BORE, 1000);
    eventually(Duration::from_secs(20), "a passing check", || {
        let c = r.odoo.quality_checks();
        async move { c.iter().any(|c| c.quality_state == "pass").then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_quality_app_measures_are_notes_on_the_work_order() {
    let r = rig("OVEN-1").await;
    let mo = r
        .odoo
        .workorder(r.workorder)
        .map(|w| w.production_id)
        .expect("work order");
    let measures = || {
        r.odoo
            .production_notes(mo)
            .iter()
            .filter(|n| n.contains("Bore diameter:"))
            .count()
    };
    ten_bad_parts(&r, measures).await;
    let notes = eventually(Duration::from_secs(20), "the alert noted", || {
        let n = r.odoo.production_notes(mo);
        async move { (n.len() >= 11).then_some(n) }
    })
    .await;
    assert_eq!(notes.len(), 11, "10 measures and one alert: {notes:?}");
    let fails = notes.iter().filter(|n| n.contains("(fail)")).count();
    assert_eq!(fails, 10, "{notes:?}");
    assert_eq!(
        notes.iter().filter(|n| n.contains("Quality alert")).count(),
        1
    );
    assert!(notes.iter().all(|n| n.contains("WO/1")), "{notes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oven_temperature_is_summarised_once_per_window_on_its_work_center() {
    let extra = format!(
        r#"
[[tags]]
name = "oven_temp"
source = "press1"
register = {TEMP}

[[events]]
kind = "window"
name = "oven_2s"
tag = "oven_temp"
workcenter = "PRESS1"
every = "2s"
description = "Oven 1 temperature"
"#
    );
    let r = press::start_edited(
        |text, _| text.replacen("[odoo]", &format!("{extra}\n[odoo]"), 1),
        "127.0.0.1:0",
    )
    .await;
    r.regs.set_u16(TEMP, 250);
    let wc = r
        .odoo
        .workorder(r.workorder)
        .map(|w| w.workcenter_id)
        .expect("work order");
    // The first note is posted but its answer lost: the repeat must find
    // it and post nothing.
    r.odoo.set_fault(Fault::ReplyLost {
        model: "mrp.workcenter".into(),
        method: "message_post".into(),
        count: 1,
    });
    let summaries = || {
        r.odoo
            .workcenter_notes(wc)
            .into_iter()
            .filter(|n| n.contains("Oven 1 temperature (oven_temp)"))
            .collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(30), "a whole window at 250", || {
        let n = summaries();
        async move {
            n.iter()
                .any(|n| n.contains("min 250, max 250, mean 250, time-weighted mean 250"))
                .then_some(())
        }
    })
    .await;
    r.regs.set_u16(TEMP, 270);
    let notes = eventually(Duration::from_secs(30), "a whole window at 270", || {
        let n = summaries();
        async move {
            n.iter()
                .any(|n| n.contains("min 270, max 270"))
                .then_some(n)
        }
    })
    .await;
    // One note per window: each names its own window's event id, and the
    // windows follow each other every 2 s with none missing.
    let starts: Vec<i64> = notes
        .iter()
        .map(|n| {
            let id = n.rsplit("plantgate ").next().expect("id");
            let ms = id
                .trim_end_matches(")</p>")
                .rsplit('-')
                .next()
                .expect("start");
            ms.parse().unwrap_or_else(|e| panic!("{n}: {e}"))
        })
        .collect();
    assert!(starts.len() >= 2, "{notes:?}");
    for pair in starts.windows(2) {
        assert_eq!(pair[1] - pair[0], 2_000, "{notes:?}");
    }
    assert!(starts.iter().all(|s| s % 2_000 == 0), "aligned: {starts:?}");
    // The window of the change holds both values and weighs them.
    let change = notes.iter().find(|n| n.contains("min 250, max 270"));
    if let Some(n) = change {
        assert!(n.contains("first 250, last 270"), "{n}");
    }
}
