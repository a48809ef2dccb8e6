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
            Plan::AddProduced { workcenter, quantity } => format!(
                "odoo dry-run: mrp.workorder write {{\"qty_produced\": <current> + {quantity}}} on the work order in progress at work center {workcenter:?} (event {})",
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
                    "odoo dry-run: mrp.workcenter.productivity load {values} external id {xmlid} (event {})",
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
