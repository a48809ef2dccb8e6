//! The dry-run sink: prints the Odoo calls an event would make instead of
//! sending them. For commissioning a tag map without touching the ERP.

use super::odoo::plan::{self, Plan};
use super::DeliveryError;
use crate::model::Event;
use serde_json::json;
use std::io::Write;

#[derive(Default)]
pub struct DryRunSink;

impl DryRunSink {
    pub fn deliver(&mut self, e: &Event) -> Result<(), DeliveryError> {
        let line = match plan::plan(e) {
            Plan::AddProduced {
                workcenter,
                quantity,
                at,
            } => format!(
                "odoo dry-run: write max(qty_produced, MO qty_producing) + {quantity} on the work order running at work center {workcenter:?} at {} UTC (event {})",
                at.odoo_datetime(),
                e.id
            ),
            Plan::UpsertTimeLog {
                xmlid,
                workcenter,
                loss,
                date_start,
                date_end,
                description,
            } => {
                let values = json!({
                    "workcenter_id": workcenter,
                    "loss_id/id": loss,
                    "date_start": date_start,
                    "date_end": date_end,
                    "description": description,
                });
                format!(
                    "odoo dry-run: close productive timers open at {workcenter:?} at {date_start}; mrp.workcenter.productivity load {values} external id {xmlid}, linked to the work order running then (event {})",
                    e.id
                )
            }
            Plan::MaintenanceRequest {
                xmlid,
                equipment,
                name,
                description,
                request_date,
                cleared,
                ..
            } => {
                let values = json!({
                    "name": name,
                    "equipment_id": equipment,
                    "maintenance_type": "corrective",
                    "request_date": request_date,
                    "description": description,
                });
                let when = if cleared {
                    "update"
                } else {
                    "create (unless it exists)"
                };
                format!(
                    "odoo dry-run: maintenance.request {when} load {values} external id {xmlid} (event {})",
                    e.id
                )
            }
            Plan::QualityCheck {
                xmlid,
                workcenter,
                measure,
                pass,
                note,
                ..
            } => format!(
                "odoo dry-run: quality.check load measure {measure} {} at {workcenter:?} external id {xmlid} (or, without the Quality app, a note on the work order: {note}) (event {})",
                if pass { "pass" } else { "fail" },
                e.id
            ),
            Plan::QualityAlert {
                xmlid,
                check_xmlid,
                workcenter,
                description,
                ..
            } => format!(
                "odoo dry-run: quality.alert load at {workcenter:?} external id {xmlid}, check {check_xmlid} (or a note on the work order): {description} (event {})",
                e.id
            ),
            Plan::WorkcenterNote {
                workcenter, text, ..
            } => format!(
                "odoo dry-run: note on work center {workcenter:?} (unless posted before): {text} (event {})",
                e.id
            ),
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").map_err(|err| DeliveryError::Retry(format!("stdout: {err}")))?;
        out.flush()
            .map_err(|err| DeliveryError::Retry(format!("stdout: {err}")))
    }
}
