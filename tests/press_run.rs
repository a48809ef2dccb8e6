//! A scripted press run end to end, through the whole gateway: a simulated
//! PLC (Modbus TCP) starts, makes 50 parts, stops with fault code 310,
//! resumes, makes 10 parts out of spec on the bore gauge, and its oven
//! runs over temperature. The fake Odoo must hold exactly what the plant
//! would expect: the parts on the work order in a few aggregated writes,
//! one loss log with the fault's reason linked to the work order (open
//! while the press is still down), ten failing measures and one alert,
//! and one maintenance request, noted when the oven cooled down. (The
//! same script at production timings — a 3-minute fault, 90 s over
//! temperature — is the golden case tests/cases/edge/scripted_press_run.)

mod support;

use std::time::Duration;
use support::eventually;
use support::press::{self, PressRig};
use support::{COUNTER, STATE};

const FAULT: u16 = 103;
const TEMP: u16 = 110;
const BORE: u16 = 111;

const LINE: &str = r#"
[[tags]]
name = "fault_code"
source = "press1"
register = 103

[[tags]]
name = "oven_temp"
source = "press1"
register = 110

[[tags]]
name = "bore"
source = "press1"
register = 111
scale = 0.01
min = 5.0
max = 15.0
on_change = true

[[events]]
kind = "measurement"
name = "bore"
tag = "bore"
workcenter = "PRESS1"
low = 9.95
high = 10.05
alert_after = 3
description = "Bore diameter"

[[events]]
kind = "alarm"
name = "oven_hot"
tag = "oven_temp"
equipment = "OVEN-1"
above = 260.0
clear_at = 255.0
for = "1s"
description = "Oven 1 over temperature"
"#;

async fn rig() -> PressRig {
    let r = press::start_edited(
        |text, _| {
            text.replacen("report_parts = 1", "report_every = \"2s\"", 1)
                .replacen(
                    "running = [1]\n",
                    "running = [1]\nreason_tag = \"fault_code\"\n[[events.code]]\ncode = 310\nloss = \"mrp.block_reason2\"\ndescription = \"Motor overload (310)\"\n",
                    1,
                )
                .replacen("[odoo]", &format!("{LINE}\n[odoo]"), 1)
        },
        "127.0.0.1:0",
    )
    .await;
    r.regs.set_u16(FAULT, 0);
    r.regs.set_u16(TEMP, 240);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_run_leaves_exactly_the_expected_records_in_odoo() {
    let r = rig().await;
    r.odoo.add_equipment("Oven 1", Some("OVEN-1"));
    let wo = r.workorder;
    let mo = r.odoo.workorder(wo).map(|w| w.production_id).expect("MO");

    // Start: 50 parts.
    r.produce(50).await;

    // Fault 310: the loss log is open in Odoo while the press is down.
    r.regs.set_u16(FAULT, 310);
    r.regs.set_u16(STATE, 3);
    let open = eventually(Duration::from_secs(30), "the stop open in Odoo", || {
        let p = r.odoo.productivity();
        async move {
            p.into_iter()
                .find(|p| p.loss_xmlid.as_deref() == Some("mrp.block_reason2"))
        }
    })
    .await;
    assert_eq!(open.date_end, None, "announced while still down: {open:?}");
    assert_eq!(open.workorder_id, Some(wo), "linked to the work order");
    assert_eq!(open.description, "Motor overload (310)");

    // Resume; the same log gets its end.
    r.regs.set_u16(STATE, 1);
    r.regs.set_u16(FAULT, 0);
    eventually(Duration::from_secs(30), "the stop closed", || {
        let p = r.odoo.productivity();
        let id = open.id;
        async move {
            p.into_iter()
                .find(|p| p.id == id && p.date_end.is_some())
                .map(|_| ())
        }
    })
    .await;

    // 10 parts, every one out of spec, each waited for until it is noted
    // (so a slow poll cannot merge two readings of the gauge).
    let fails = || {
        r.odoo
            .production_notes(mo)
            .iter()
            .filter(|n| n.contains("(fail)"))
            .count()
    };
    for n in 0..10u16 {
        let before = fails();
        r.regs.set_u16(BORE, 1010 + n % 2);
        r.regs.set_u32(COUNTER, r.regs.get_u32(COUNTER) + 1);
        eventually(Duration::from_secs(30), "the part measured", || {
            let now = fails();
            async move { (now > before).then_some(()) }
        })
        .await;
    }

    // The oven over temperature, then cooled.
    r.regs.set_u16(TEMP, 265);
    eventually(Duration::from_secs(30), "a maintenance request", || {
        let m = r.odoo.maintenance_requests();
        async move { (!m.is_empty()).then_some(()) }
    })
    .await;
    r.regs.set_u16(TEMP, 250);
    eventually(Duration::from_secs(30), "the request noted cleared", || {
        let m = r.odoo.maintenance_requests();
        async move {
            m.iter()
                .any(|m| m.description.contains("Cleared"))
                .then_some(())
        }
    })
    .await;

    // All 60 parts on the work order, and the run's records, each once.
    eventually(Duration::from_secs(30), "60 parts in Odoo", || {
        let w = r.odoo.workorder(wo);
        async move { w.filter(|w| w.qty_produced == 60.0).map(|_| ()) }
    })
    .await;
    let notes = eventually(Duration::from_secs(30), "10 failing measures noted", || {
        let n = r.odoo.production_notes(mo);
        async move { (n.iter().filter(|n| n.contains("(fail)")).count() >= 10).then_some(n) }
    })
    .await;
    assert_eq!(
        notes.iter().filter(|n| n.contains("(fail)")).count(),
        10,
        "{notes:?}"
    );
    assert_eq!(
        notes.iter().filter(|n| n.contains("Quality alert")).count(),
        1,
        "one alert for the run: {notes:?}"
    );
    let losses: Vec<_> = r
        .odoo
        .productivity()
        .into_iter()
        .filter(|p| p.loss_type != "productive")
        .collect();
    assert_eq!(losses.len(), 1, "one stop: {losses:?}");
    let requests = r.odoo.maintenance_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].maintenance_type, "corrective");
    let w = r.odoo.workorder(wo).expect("work order");
    assert_eq!((w.qty_produced, w.qty_producing), (60.0, 60.0));
    // Aggregated: parts were written per 2 s period, not per part.
    let writes = r
        .odoo
        .calls()
        .iter()
        .filter(|c| {
            c.model.as_deref() == Some("mrp.workorder")
                && matches!(c.model_method.as_deref(), Some("write"))
        })
        .count();
    assert!(
        (1..=15).contains(&writes),
        "{writes} work-order writes for 60 parts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_for_a_work_center_odoo_does_not_know_are_a_dead_letter_naming_the_config_line() {
    let r = press::start_edited(
        |text, _| text.replacen("workcenter = \"PRESS1\"", "workcenter = \"PRESS9\"", 1),
        "127.0.0.1:0",
    )
    .await;
    r.produce(3).await;
    let dlq = eventually(Duration::from_secs(30), "a dead letter", || {
        let url = format!("{}/dlq", r.base);
        async move { support::get(&url).await.filter(|t| t.contains("PRESS9")) }
    })
    .await;
    let text = std::fs::read_to_string(r.config_path()).expect("config");
    let line = text
        .lines()
        .position(|l| l.contains("\"PRESS9\""))
        .expect("the edited line")
        + 1;
    let place = format!("{}:{line}:14", r.config_path().display());
    assert!(dlq.contains(&place), "names {place}: {dlq}");
    assert!(
        dlq.contains("Odoo has no mrp.workcenter with code"),
        "{dlq}"
    );
    let w = r.odoo.workorder(r.workorder).expect("work order");
    assert_eq!(w.qty_produced, 0.0, "nothing written elsewhere");
}
