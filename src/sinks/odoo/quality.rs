//! Measures and quality alerts (odoo-api.md 4.7).
//!
//! Which way is decided once per process, at the first quality event
//! after start, and logged: when `ir.module.module` says `quality_control`
//! is installed, a measure is a `quality.check` (test type `measure`,
//! `quality_state` pass or fail) and a run of failures a `quality.alert`
//! linked to the check that completed it, each loaded under the external
//! id `plantgate.<event id>` (a repeat updates, never doubles). Without
//! the app, each becomes a note in the chatter of the manufacturing order
//! of the work order running at the work center then (`message_post` on
//! `mrp.production`, which is a mail thread in every version), naming the
//! work order and the event id; a repeat finds its note (by the event id)
//! and posts nothing. A measure with no work order running is refused.

use super::{classify, load_outcome, production, OdooSink};
use crate::model::Millis;
use crate::sinks::DeliveryError;
use serde_json::{json, Value};

/// Where quality events go in this Odoo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum QualityMode {
    /// `quality.check` / `quality.alert`, with the id of the `measure`
    /// test type.
    App { measure_type: i64 },
    /// Notes on the work order's manufacturing order.
    Notes,
}

/// One quality event as the plan gives it.
pub(super) struct QualityRow {
    pub xmlid: String,
    pub workcenter: String,
    pub title: String,
    pub at: Millis,
    pub what: QualityWhat,
}

pub(super) enum QualityWhat {
    Check {
        measure: f64,
        pass: bool,
        note: String,
    },
    Alert {
        check_xmlid: String,
        description: String,
    },
}

impl OdooSink {
    async fn quality_mode(&mut self) -> Result<QualityMode, DeliveryError> {
        if let Some(m) = self.quality {
            return Ok(m);
        }
        let rows = self
            .rpc
            .call(
                "ir.module.module",
                "search_read",
                None,
                json!({
                    "domain": [["name", "=", "quality_control"], ["state", "=", "installed"]],
                    "fields": ["name"],
                    "limit": 1,
                }),
                None,
            )
            .await
            .map_err(classify)?;
        let installed = rows.as_array().is_some_and(|r| !r.is_empty());
        let mode = if installed {
            let types = self
                .rpc
                .call(
                    "quality.point.test_type",
                    "search_read",
                    None,
                    json!({"domain": [["technical_name", "=", "measure"]], "fields": ["id"], "limit": 1}),
                    None,
                )
                .await
                .map_err(classify)?;
            let id = types
                .get(0)
                .and_then(|r| r.get("id"))
                .and_then(Value::as_i64)
                .ok_or_else(|| {
                    DeliveryError::Retry(
                        "the Quality app is installed but has no test type `measure`".into(),
                    )
                })?;
            tracing::info!("Odoo has the Quality app (quality_control installed): measures go to quality.check, runs of failures to quality.alert");
            QualityMode::App { measure_type: id }
        } else {
            tracing::info!("Odoo has no Quality app (quality_control not installed): measures and quality alerts go as notes on the work order's manufacturing order");
            QualityMode::Notes
        };
        self.quality = Some(mode);
        Ok(mode)
    }

    pub(super) async fn quality(&mut self, q: QualityRow) -> Result<(), DeliveryError> {
        match self.quality_mode().await? {
            QualityMode::App { measure_type } => self.quality_app(q, measure_type).await,
            QualityMode::Notes => self.quality_note(q).await,
        }
    }

    async fn quality_app(&mut self, q: QualityRow, measure_type: i64) -> Result<(), DeliveryError> {
        let wc = self.workcenter_id(&q.workcenter).await?;
        let at = q.at.odoo_datetime();
        let wo = production::running_at(self.workorders(wc, &at, false).await?, &at)
            .map(|w| w.name.clone());
        let place = match &wo {
            Some(w) => format!("work center {}, work order {w}", q.workcenter),
            None => format!("work center {}", q.workcenter),
        };
        let (model, fields, row) = match q.what {
            QualityWhat::Check {
                measure,
                pass,
                note,
            } => (
                "quality.check",
                super::plan::CHECK_FIELDS.to_vec(),
                vec![
                    q.xmlid,
                    q.title,
                    measure_type.to_string(),
                    measure.to_string(),
                    if pass { "pass" } else { "fail" }.to_string(),
                    at,
                    format!(
                        "<p>{} at {}</p>",
                        super::plan::html_escape(&note),
                        super::plan::html_escape(&place)
                    ),
                ],
            ),
            QualityWhat::Alert {
                check_xmlid,
                description,
            } => (
                "quality.alert",
                super::plan::ALERT_FIELDS.to_vec(),
                vec![
                    q.xmlid,
                    q.title,
                    format!(
                        "<p>{} ({})</p>",
                        super::plan::html_escape(&description),
                        super::plan::html_escape(&place)
                    ),
                    check_xmlid,
                    "2".to_string(),
                ],
            ),
        };
        let result = self
            .rpc
            .call(
                model,
                "load",
                None,
                json!({"fields": fields, "data": [row]}),
                Some(json!({"tz": "UTC"})),
            )
            .await
            .map_err(classify)?;
        load_outcome(&result, model)
    }

    async fn quality_note(&mut self, q: QualityRow) -> Result<(), DeliveryError> {
        let wc = self.workcenter_id(&q.workcenter).await?;
        let at = q.at.odoo_datetime();
        let Some(wo) = production::running_at(self.workorders(wc, &at, false).await?, &at).cloned()
        else {
            return Err(DeliveryError::Reject(format!(
                "{} at {at} UTC at work center {:?}: no work order was in progress there then to note it on (Odoo has no Quality app). Start the work order, then `plantgate dlq replay ID`",
                q.title, q.workcenter
            )));
        };
        let id = q.xmlid.rsplit('.').next().unwrap_or(&q.xmlid).to_string();
        let text = match q.what {
            QualityWhat::Check { note, .. } => note,
            QualityWhat::Alert { description, .. } => format!("Quality alert: {description}"),
        };
        let text = format!("{text} (work order {}, {at} UTC)", wo.name);
        self.note_once("mrp.production", wo.production, &id, &text)
            .await
    }
}
