//! What an event means in Odoo: the call(s) to make, independent of how
//! they are sent. The live sink executes a plan; the dry-run sink prints it.

use crate::model::{Event, EventBody};

/// Odoo external ids the gateway creates live in this module namespace.
pub const XMLID_MODULE: &str = "plantgate";

#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Add parts to the work order in progress at a work center. Sent as an
    /// absolute `qty_produced` fixed before the first attempt, so a retry
    /// writes the same value instead of adding twice.
    AddProduced { workcenter: String, quantity: u64 },
    /// Create or update an `mrp.workcenter.productivity` time log keyed by an
    /// external id (`load` upserts by it, so a replay updates, never doubles).
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

/// Column list of the time-log `load` call.
pub const TIME_LOG_FIELDS: [&str; 6] = [
    "id",
    "workcenter_id/.id",
    "loss_id/id",
    "date_start",
    "date_end",
    "description",
];
