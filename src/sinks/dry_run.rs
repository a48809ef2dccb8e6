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
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").map_err(|err| DeliveryError::Retry(format!("stdout: {err}")))?;
        out.flush()
            .map_err(|err| DeliveryError::Retry(format!("stdout: {err}")))
    }
}
