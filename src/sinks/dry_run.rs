//! The dry-run sink: prints the Odoo calls an event would make instead of
//! sending them. For commissioning a tag map without touching the ERP.

use super::odoo::plan::{self, Plan, Step};
use super::{DeliveryError, Outcome};
use crate::model::Event;
use serde_json::json;
use std::io::Write;

pub struct DryRunSink {
    /// `[odoo] max_batch`: rows per printed `load`, as the live sink sends.
    max_batch: usize,
    /// Events per round, as the live sink takes them.
    limit: usize,
}

impl Default for DryRunSink {
    fn default() -> Self {
        DryRunSink::new(100, 2)
    }
}

impl DryRunSink {
    pub fn new(max_batch: usize, max_in_flight: usize) -> Self {
        DryRunSink {
            max_batch,
            limit: super::odoo::round_limit(max_batch, max_in_flight),
        }
    }

    pub fn batch_limit(&self) -> usize {
        self.limit
    }

    /// Print a batch as the live sink sends it: the same stages and steps.
    pub fn deliver_batch(&mut self, events: &[Event]) -> Vec<Outcome> {
        let mut lines = Vec::new();
        for (k, stage) in plan::stages(events, self.max_batch).into_iter().enumerate() {
            for step in stage {
                lines.push(format!("[stage {}] {}", k + 1, step_line(events, &step)));
            }
        }
        let mut out = std::io::stdout().lock();
        let written = lines
            .iter()
            .try_for_each(|l| writeln!(out, "{l}"))
            .and_then(|()| out.flush())
            .map_err(|err| DeliveryError::Retry(format!("stdout: {err}")));
        events.iter().map(|_| Some(written.clone())).collect()
    }

    pub fn deliver(&mut self, e: &Event) -> Result<(), DeliveryError> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", event_line(e))
            .map_err(|err| DeliveryError::Retry(format!("stdout: {err}")))?;
        out.flush()
            .map_err(|err| DeliveryError::Retry(format!("stdout: {err}")))
    }
}

/// One step of a batch in words.
fn step_line(events: &[Event], step: &Step) -> String {
    match step {
        Step::Single(i) => event_line(&events[*i]),
        Step::Produced { events: idx, .. } if idx.len() == 1 => event_line(&events[idx[0]]),
        Step::Produced {
            workcenter,
            events: idx,
        } => {
            let evs: Vec<&Event> = idx.iter().map(|i| &events[*i]).collect();
            let parts: u64 = evs
                .iter()
                .map(|e| match &e.body {
                    crate::model::EventBody::Production(p) => p.quantity,
                    _ => 0,
                })
                .sum();
            let (first, last) = (evs[0], evs[evs.len() - 1]);
            format!(
                "odoo dry-run: {} production events at work center {workcenter:?} ({} to {} UTC, {parts} parts): each decided as max(qty_produced, MO qty_producing) + its parts on the work order running when it was made, then one write of the last value per work order (events {}..{})",
                evs.len(),
                first.time.odoo_datetime(),
                last.time.odoo_datetime(),
                first.id,
                last.id
            )
        }
        Step::TimeLogs { ended, rows } => {
            let data: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    json!({"id": r.xmlid, "workcenter_id": r.workcenter, "loss_id/id": r.loss,
                           "date_start": r.date_start, "date_end": r.date_end, "description": r.description})
                })
                .collect();
            let ids: Vec<&str> = rows
                .iter()
                .flat_map(|r| r.events.iter().map(|i| events[*i].id.as_str()))
                .collect();
            format!(
                "odoo dry-run: close productive timers open at each row's work center at its start; mrp.workcenter.productivity load {} rows{} {}{} (events {})",
                rows.len(),
                if *ended { " with date_end" } else { " without date_end" },
                serde_json::Value::Array(data),
                if *ended { "; then start again the timers each stop closed" } else { "" },
                ids.join(", ")
            )
        }
    }
}

/// What one event makes, in words.
fn event_line(e: &Event) -> String {
    {
        match plan::plan(e) {
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
                let resume = if date_end.is_some() {
                    "; then start again the timers the stop closed"
                } else {
                    ""
                };
                format!(
                    "odoo dry-run: close productive timers open at {workcenter:?} at {date_start}; mrp.workcenter.productivity load {values} external id {xmlid}, linked to the work order running then{resume} (event {})",
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
            Plan::SetStock(s) => format!(
                "odoo dry-run: stock.quant create (inventory_mode) inventory_quantity {} of product {:?} at location {:?}, then action_apply_inventory (event {})",
                crate::model::tidy(s.quantity),
                s.product,
                s.location,
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
            Plan::RecordScrap {
                xmlid,
                workcenter,
                quantity,
                at,
            } => format!(
                "odoo dry-run: stock.scrap load (unless it exists) {quantity} of the MO's product, linked to the MO and the work order running at work center {workcenter:?} at {} UTC, external id {xmlid}, then action_validate (event {})",
                at.odoo_datetime(),
                e.id
            ),
            Plan::Nothing => format!(
                "odoo dry-run: nothing (a {} interval; event {})",
                match &e.body {
                    crate::model::EventBody::StateInterval(i) => i.state.as_str(),
                    _ => "state",
                },
                e.id
            ),
            Plan::WorkcenterNote {
                workcenter, text, ..
            } => format!(
                "odoo dry-run: note on work center {workcenter:?} (unless posted before): {text} (event {})",
                e.id
            ),
        }
    }
}
