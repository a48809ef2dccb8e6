//! Scrap as `stock.scrap` records: Odoo's scrap order (module `stock`),
//! with the links module `mrp` adds (`production_id`, `workorder_id`), as
//! the MO's Scrap button makes them.
//!
//! The parts go to the work order that was running at the work center when
//! they were made, as production does ([`super::production::attribute`]);
//! the scrap is of the MO's product, in the MO's unit, and Odoo picks the
//! locations (its defaults for a scrap of that MO).
//!
//! Once only, by the external id `plantgate.<event id>`:
//! - none yet: `load` creates the scrap (a draft), then `action_validate`;
//! - a draft one (the reply to the validation was lost): validated again;
//! - a done one: nothing. (`action_validate` is never sent to a done
//!   scrap: Odoo would move the parts to scrap a second time.)
//!
//! `action_validate` answers True once the parts are moved to scrap, or,
//! when the source location holds fewer than that, the "Insufficient
//! Quantity" wizard. The gateway does not confirm that wizard for a person
//! (it would push the stock negative): the scrap stays a draft on the MO,
//! with its quantity, for someone to validate in Odoo, and a warning says
//! so. The event is delivered either way.

use super::production::{attribute, Why};
use super::{classify, load_outcome, DeliveryError, OdooSink};
use crate::model::Millis;
use serde_json::{json, Value};

impl OdooSink {
    pub(super) async fn scrap(
        &mut self,
        event_id: &str,
        xmlid: &str,
        workcenter: &str,
        quantity: u64,
        made: Millis,
    ) -> Result<(), DeliveryError> {
        if let Some(id) = self.xmlid_res_id(xmlid).await? {
            let rows = self
                .rpc
                .call(
                    "stock.scrap",
                    "search_read",
                    None,
                    json!({"domain": [["id", "=", id]], "fields": ["state"]}),
                    None,
                )
                .await
                .map_err(classify)?;
            match rows
                .get(0)
                .and_then(|r| r.get("state"))
                .and_then(Value::as_str)
            {
                Some("done") => return Ok(()),
                Some(_) => return self.validate_scrap(id, quantity, event_id).await,
                // Deleted in Odoo: `load` creates it again.
                None => {}
            }
        }
        let wc = self.workcenter_id(workcenter).await?;
        let at = made.odoo_datetime();
        let mut force = false;
        let (wo, why) = loop {
            let wos = self.workorders(wc, &at, force).await?;
            match attribute(wos, &at) {
                // A finished work order only as just read: its MO may have
                // been closed since.
                Some((w, why)) if force || w.state != "done" => break (w.clone(), why),
                None if force => {
                    return Err(DeliveryError::Reject(format!(
                        "{quantity} parts scrapped at {at} UTC at work center {workcenter:?}: no work order was in progress there then, nor started since. Start the work order in Odoo, then `plantgate dlq replay ID`"
                    )))
                }
                _ => force = true,
            }
        };
        if wo.state == "done" && matches!(wo.production_state.as_str(), "done" | "cancel") {
            let how = match why {
                Why::Running => "while it ran",
                Why::NextStarted => "before it started",
            };
            return Err(DeliveryError::Reject(format!(
                "{quantity} parts scrapped {how} (at {at} UTC) belong to work order {} of {}, whose manufacturing order is {}: Odoo takes no scrap on it any more. Record the scrap by hand, then `plantgate dlq drop ID`",
                wo.name, wo.production_name, wo.production_state
            )));
        }
        let mo = self
            .rpc
            .call(
                "mrp.production",
                "search_read",
                None,
                json!({"domain": [["id", "=", wo.production]], "fields": ["product_id", "product_uom_id"]}),
                None,
            )
            .await
            .map_err(classify)?;
        let id_of = |field: &str| {
            mo.get(0)
                .and_then(|r| r.get(field))
                .and_then(|v| v.get(0))
                .and_then(Value::as_i64)
        };
        let (Some(product), Some(uom)) = (id_of("product_id"), id_of("product_uom_id")) else {
            return Err(DeliveryError::Retry(format!(
                "manufacturing order {} read without its product and unit: {mo}",
                wo.production_name
            )));
        };
        let row = [
            xmlid.to_string(),
            product.to_string(),
            uom.to_string(),
            quantity.to_string(),
            wo.production.to_string(),
            wo.id.to_string(),
            event_id.to_string(),
        ];
        let result = self
            .rpc
            .call(
                "stock.scrap",
                "load",
                None,
                json!({"fields": super::plan::SCRAP_FIELDS, "data": [row]}),
                None,
            )
            .await
            .map_err(classify)?;
        load_outcome(&result, "scrap")?;
        let id = result
            .get("ids")
            .and_then(|ids| ids.get(0))
            .and_then(Value::as_i64)
            .ok_or_else(|| DeliveryError::Retry(format!("load returned no id: {result}")))?;
        self.validate_scrap(id, quantity, event_id).await
    }

    async fn validate_scrap(
        &mut self,
        id: i64,
        quantity: u64,
        event_id: &str,
    ) -> Result<(), DeliveryError> {
        let result = self
            .rpc
            .call(
                "stock.scrap",
                "action_validate",
                Some(&[id]),
                json!({}),
                None,
            )
            .await
            .map_err(classify)?;
        if result.is_object() {
            tracing::warn!(scrap = id, event = %event_id, quantity,
                "Odoo holds fewer parts at the scrap's source location than were scrapped: the scrap stays a draft on the manufacturing order for someone to validate in Odoo");
        }
        Ok(())
    }
}
