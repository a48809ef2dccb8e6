//! Alarms as corrective maintenance requests (odoo-api.md 4.5).
//!
//! The equipment is found by name or serial number (`serial_no`), cached
//! for the process; an unknown one is a refusal naming the config line.
//! The raise creates the request with `load` under the external id
//! `plantgate.<alarm id>` only when that id is not in Odoo yet, so a repeat
//! or replay never re-creates it nor overwrites what the clear wrote. The
//! clear loads the same external id with the description that adds "Cleared
//! at ...". The stage is left to maintenance: an alarm gone is not a
//! machine repaired.

use super::{classify, load_outcome, OdooSink};
use crate::sinks::DeliveryError;
use serde_json::json;

/// One maintenance request as the plan gives it.
pub(super) struct Request {
    pub xmlid: String,
    pub equipment: String,
    pub equipment_at: String,
    pub name: String,
    pub description: String,
    pub request_date: String,
    pub cleared: bool,
}

impl OdooSink {
    async fn equipment_id(&mut self, name: &str, at: &str) -> Result<i64, DeliveryError> {
        if let Some(id) = self.equipment.get(name) {
            return Ok(*id);
        }
        let id = self
            .first_id(
                "maintenance.equipment",
                json!(["|", ["name", "=", name], ["serial_no", "=", name]]),
                || format!("{at}: Odoo has no maintenance.equipment named or with serial number {name:?}: fix `equipment` there or create the equipment in Odoo's Maintenance app, then `plantgate dlq replay ID`"),
            )
            .await?;
        self.equipment.insert(name.to_string(), id);
        Ok(id)
    }

    pub(super) async fn maintenance_request(&mut self, r: Request) -> Result<(), DeliveryError> {
        let equipment = self.equipment_id(&r.equipment, &r.equipment_at).await?;
        if !r.cleared && self.xmlid_res_id(&r.xmlid).await?.is_some() {
            // Created before (a retry after a lost reply, a replay): the
            // raise has nothing more to say.
            return Ok(());
        }
        let row = [
            r.xmlid,
            r.name,
            equipment.to_string(),
            "corrective".to_string(),
            r.request_date,
            r.description,
        ];
        let result = self
            .rpc
            .call(
                "maintenance.request",
                "load",
                None,
                json!({"fields": super::plan::MAINTENANCE_FIELDS, "data": [row]}),
                Some(json!({"tz": "UTC"})),
            )
            .await
            .map_err(classify)?;
        load_outcome(&result, "maintenance request")
    }
}
