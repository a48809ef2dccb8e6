//! What an event means in Odoo: the call(s) to make, independent of how
//! they are sent. The live sink executes a plan; the dry-run sink prints it.

use crate::model::{Event, EventBody, Millis};

/// Odoo external ids the gateway creates live in this module namespace.
pub const XMLID_MODULE: &str = "plantgate";

#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Add parts to the work order that was running at a work center when
    /// they were made (`at`). Sent as an absolute quantity decided before the
    /// first attempt ([`super::production`]), so a repeat cannot add twice.
    AddProduced {
        workcenter: String,
        quantity: u64,
        at: Millis,
    },
    /// Create or update an `mrp.workcenter.productivity` loss log keyed by an
    /// external id (`load` upserts by it, so a replay updates, never doubles),
    /// linked to the work order running at the stop's start, after closing
    /// the productive timers open at the work center at that time.
    UpsertTimeLog {
        xmlid: String,
        workcenter: String,
        loss: String,
        date_start: String,
        date_end: Option<String>,
        description: String,
    },
}

/// `plantgate.<id>`: event ids hold only `[A-Za-z0-9_-]`, so no second dot.
pub fn xmlid(id: &str) -> String {
    format!("{XMLID_MODULE}.{id}")
}

pub fn plan(event: &Event) -> Plan {
    match &event.body {
        EventBody::Production(p) => Plan::AddProduced {
            workcenter: p.workcenter.clone(),
            quantity: p.quantity,
            at: event.time,
        },
        EventBody::DowntimeStarted(d) | EventBody::DowntimeEnded(d) => Plan::UpsertTimeLog {
            xmlid: xmlid(&d.downtime_id),
            workcenter: d.workcenter.clone(),
            loss: d.loss.clone(),
            date_start: d.start.odoo_datetime(),
            date_end: d.end.map(|e| e.odoo_datetime()),
            description: d.description.clone(),
        },
    }
}

/// Column list of the time-log `load` call. A stop's start leaves out
/// `date_end`, so a late repeat of it cannot reopen a closed record.
pub fn time_log_fields(with_end: bool) -> Vec<&'static str> {
    let mut f = vec![
        "id",
        "workcenter_id/.id",
        "loss_id/id",
        "date_start",
        "description",
        "workorder_id/.id",
    ];
    if with_end {
        f.push("date_end");
    }
    f
}
