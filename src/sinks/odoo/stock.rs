//! Stock levels as Odoo's inventory adjustment (shared/odoo-api.md 4.6):
//! `stock.quant.create` in inventory mode with the product, the location
//! and the absolute `inventory_quantity` (Odoo reuses the quant of that
//! product and location, so nothing is duplicated), then
//! `action_apply_inventory` on it, which moves the difference to the
//! inventory-loss location. A repeat sets the same count: no difference,
//! no move. The product (by internal reference or name) and the location
//! (by full name or barcode) are looked up once and kept as names are.

use super::*;
use plan::SetStock;

impl OdooSink {
    pub(super) async fn set_stock(&mut self, s: &SetStock) -> Result<(), DeliveryError> {
        let product = match self.products.get(&s.product) {
            Some(id) => *id,
            None => {
                let id = self
                    .first_id(
                        "product.product",
                        json!(["|", ["default_code", "=", s.product], ["name", "=", s.product]]),
                        || format!("{}: Odoo has no product.product with internal reference or name {:?}: fix `product` there or create the product in Odoo, then `plantgate dlq replay ID`", s.product_at, s.product),
                    )
                    .await?;
                self.products.insert(s.product.clone(), id);
                id
            }
        };
        let location = match self.locations.get(&s.location) {
            Some(id) => *id,
            None => {
                let id = self
                    .first_id(
                        "stock.location",
                        json!(["|", ["complete_name", "=", s.location], ["barcode", "=", s.location]]),
                        || format!("{}: Odoo has no stock.location with full name or barcode {:?}: fix `location` there (write the full name, like \"WH/Stock\"), then `plantgate dlq replay ID`", s.location_at, s.location),
                    )
                    .await?;
                self.locations.insert(s.location.clone(), id);
                id
            }
        };
        let created = self
            .rpc
            .call(
                "stock.quant",
                "create",
                None,
                json!({"vals_list": [{
                    "product_id": product,
                    "location_id": location,
                    "inventory_quantity": s.quantity,
                }]}),
                Some(json!({"inventory_mode": true})),
            )
            .await
            .map_err(classify)?;
        let ids: Vec<i64> = match &created {
            Value::Array(a) => a.iter().filter_map(Value::as_i64).collect(),
            v => v.as_i64().into_iter().collect(),
        };
        if ids.is_empty() {
            return Err(DeliveryError::Retry(format!(
                "stock.quant create returned no id: {created}"
            )));
        }
        let applied = self
            .rpc
            .call(
                "stock.quant",
                "action_apply_inventory",
                Some(&ids),
                json!({}),
                Some(json!({"inventory_mode": true})),
            )
            .await
            .map_err(classify)?;
        // None when applied; an action dict when Odoo wants a person to
        // decide (a count conflict, a tracked product without a lot).
        match applied {
            Value::Null | Value::Bool(true) => Ok(()),
            other => {
                let what = other
                    .get("res_model")
                    .and_then(Value::as_str)
                    .unwrap_or("a confirmation");
                Err(DeliveryError::Reject(format!(
                    "Odoo did not apply the count of {} at {} ({}): it asks for {what}; apply it in Inventory > Physical Inventory, then `plantgate dlq drop ID`",
                    s.product, s.location, crate::model::tidy(s.quantity)
                )))
            }
        }
    }
}
