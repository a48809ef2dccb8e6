//! Notes in a record's chatter (`message_post` on a mail thread:
//! `mrp.workcenter` and `mrp.production` are, odoo-api.md 4.1 and 4.4),
//! posted once: each note ends with `(plantgate <event id>)`, and a repeat
//! that finds a note naming its event posts nothing. Window summaries go on
//! the work center; quality events, without the Quality app, on the MO.

use super::{classify, OdooSink};
use crate::sinks::DeliveryError;
use serde_json::json;

impl OdooSink {
    /// A window's summary in the work center's chatter.
    pub(super) async fn workcenter_note(
        &mut self,
        workcenter: &str,
        event_id: &str,
        text: &str,
    ) -> Result<(), DeliveryError> {
        let wc = self.workcenter_id(workcenter).await?;
        self.note_once("mrp.workcenter", wc, event_id, text).await
    }

    /// Post `text` (plain, escaped here) on record `res_id` of `model`,
    /// unless a note naming `event_id` is there already.
    pub(super) async fn note_once(
        &mut self,
        model: &str,
        res_id: i64,
        event_id: &str,
        text: &str,
    ) -> Result<(), DeliveryError> {
        // Notes of earlier releases end with `; plantgate <id>)`: found too.
        let posted = self
            .rpc
            .call(
                "mail.message",
                "search_read",
                None,
                json!({
                    "domain": [
                        ["model", "=", model],
                        ["res_id", "=", res_id],
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
                model,
                "message_post",
                Some(&[res_id]),
                json!({"body": body, "message_type": "comment", "subtype_xmlid": "mail.mt_note"}),
                None,
            )
            .await
            .map_err(classify)?;
        Ok(())
    }
}
