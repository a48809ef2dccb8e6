//! Notes in a work center's chatter (`mrp.workcenter` is a mail thread,
//! odoo-api.md 4.1): where window summaries go.

use super::{classify, OdooSink};
use crate::sinks::DeliveryError;
use serde_json::json;

impl OdooSink {
    /// A note in a work center's chatter, posted once: a repeat finds the
    /// note by the event id it names and posts nothing.
    pub(super) async fn workcenter_note(
        &mut self,
        workcenter: &str,
        event_id: &str,
        text: &str,
    ) -> Result<(), DeliveryError> {
        let wc = self.workcenter_id(workcenter).await?;
        let posted = self
            .rpc
            .call(
                "mail.message",
                "search_read",
                None,
                json!({
                    "domain": [
                        ["model", "=", "mrp.workcenter"],
                        ["res_id", "=", wc],
                        ["body", "ilike", format!("plantgate {event_id})")]
                    ],
                    "fields": ["id"],
                    "limit": 1,
                }),
                None,
            )
            .await
            .map_err(classify)?;
        if posted.as_array().is_some_and(|r| !r.is_empty()) {
            return Ok(());
        }
        let body = format!(
            "<p>{} (plantgate {})</p>",
            super::plan::html_escape(text),
            super::plan::html_escape(event_id)
        );
        self.rpc
            .call(
                "mrp.workcenter",
                "message_post",
                Some(&[wc]),
                json!({"body": body, "message_type": "comment", "subtype_xmlid": "mail.mt_note"}),
                None,
            )
            .await
            .map_err(classify)?;
        Ok(())
    }
}
