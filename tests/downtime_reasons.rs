//! A stop's reason from the machine's fault code: "motor overload 310"
//! reaches Odoo as such, start and end on one time log.

mod support;

use std::time::Duration;
use support::{eventually, press, STATE};

const CODE: u16 = 104;

/// The press config with a fault-code register read beside the state.
fn with_fault_codes(text: String, _: &std::path::Path) -> String {
    let text = text.replacen(
        "min_duration = \"300ms\"\n",
        "min_duration = \"300ms\"\nreason_tag = \"fault_code\"\n",
        1,
    );
    assert!(
        text.contains("reason_tag"),
        "the press config has a downtime rule"
    );
    format!(
        "{text}
[[events.code]]
code = 310
loss = \"mrp.block_reason1\"
description = \"Motor overload\"

[[tags]]
name = \"fault_code\"
source = \"press1\"
register = {CODE}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_code_gives_the_stop_its_loss_in_odoo() {
    let rig = press::start_edited(with_fault_codes, "127.0.0.1:0").await;
    press::wait_metric(
        &rig.base,
        r#"plantgate_samples_total{source="press1"}"#,
        4.0,
    )
    .await;
    // The machine faults with code 310 (state 3 has no reason of its own).
    rig.regs.set_u16(CODE, 310);
    rig.regs.set_u16(STATE, 3);
    let log = eventually(Duration::from_secs(30), "the stop in Odoo", || async {
        rig.odoo.productivity().into_iter().next()
    })
    .await;
    assert_eq!(log.loss_xmlid.as_deref(), Some("mrp.block_reason1"));
    assert_eq!(log.description, "Motor overload");
    assert_eq!(log.date_end, None, "announced while the machine is down");

    // The fault is reset, then the machine runs: the same log gets its end,
    // with the loss it was opened with.
    rig.regs.set_u16(CODE, 0);
    rig.regs.set_u16(STATE, 1);
    let closed = eventually(Duration::from_secs(30), "the stop closed", || async {
        let logs = rig.odoo.productivity();
        logs.iter().find(|l| l.date_end.is_some()).cloned()
    })
    .await;
    assert_eq!(rig.odoo.productivity().len(), 1, "one record per stop");
    assert_eq!(closed.id, log.id);
    assert_eq!(closed.loss_xmlid.as_deref(), Some("mrp.block_reason1"));
    assert_eq!(closed.description, "Motor overload");
}
