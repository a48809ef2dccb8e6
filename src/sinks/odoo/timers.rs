//! A stop's end gives back the productive timers its start cut.
//!
//! At a stop's start the sink closes the productive timers open at the
//! work center (as Odoo's Block does), so productive and loss time do not
//! overlap. The machine, not the operator, stopped them; so when the stop
//! has ended, each of those timers whose work order is still in progress is
//! started again from the stop's end: a new `mrp.workcenter.productivity`
//! log with the same work order, user and loss, as `button_start` would
//! make (odoo-api.md 4.2, 4.3), so the work order's productive time runs on.
//!
//! The timers a stop cut are those of the work center that ended at the
//! stop's start. Nothing is resumed for a work order that has an open log
//! again (its operator pressed Start, or this ran before), nor while the
//! work center is down again (its next stop is open: that stop's end will
//! not find these timers, and the operator restarts them). Each resumed
//! log is loaded under the external id `<stop>-resume-<cut log id>`, so a
//! repeat writes the same record and never reopens one an operator paused.

use super::{classify, load_outcome, DeliveryError, OdooSink};
use serde_json::{json, Value};

/// Column list of a resumed timer's `load`.
const RESUME_FIELDS: [&str; 7] = [
    "id",
    "workcenter_id/.id",
    "workorder_id/.id",
    "loss_id/.id",
    "user_id/.id",
    "date_start",
    "description",
];

/// The id of a many2one as `read` gives it (`[id, name]`).
fn m2o(row: &Value, field: &str) -> Option<i64> {
    let v = row.get(field)?;
    v.get(0).or(Some(v)).and_then(Value::as_i64)
}

impl OdooSink {
    /// Restart, from `end`, the productive timers the stop `xmlid` (from
    /// `start` to `end`, at work center `wc`) closed.
    pub(super) async fn resume_timers(
        &mut self,
        wc: i64,
        xmlid: &str,
        start: &str,
        end: &str,
    ) -> Result<(), DeliveryError> {
        const LOG: &str = "mrp.workcenter.productivity";
        let cut = self
            .search_read(
                LOG,
                json!([
                    ["workcenter_id", "=", wc],
                    ["date_end", "=", start],
                    ["loss_type", "in", ["productive", "performance"]],
                    ["workorder_id", "!=", false]
                ]),
                &["id", "workorder_id", "user_id", "loss_id"],
            )
            .await?;
        let cut: Vec<(i64, i64, i64, i64)> = cut
            .iter()
            .filter_map(|t| {
                Some((
                    t.get("id")?.as_i64()?,
                    m2o(t, "workorder_id")?,
                    m2o(t, "user_id")?,
                    m2o(t, "loss_id")?,
                ))
            })
            .collect();
        if cut.is_empty() {
            return Ok(());
        }
        let down_again = self
            .search_read(
                LOG,
                json!([
                    ["workcenter_id", "=", wc],
                    ["date_end", "=", false],
                    ["loss_type", "in", ["availability", "quality"]]
                ]),
                &["id"],
            )
            .await?;
        if !down_again.is_empty() {
            return Ok(());
        }
        let mut wos: Vec<i64> = cut.iter().map(|c| c.1).collect();
        wos.sort_unstable();
        wos.dedup();
        let running: Vec<i64> = self
            .search_read(
                "mrp.workorder",
                json!([["id", "in", wos], ["state", "=", "progress"]]),
                &["id"],
            )
            .await?
            .iter()
            .filter_map(|w| w.get("id").and_then(Value::as_i64))
            .collect();
        let timed: Vec<i64> = self
            .search_read(
                LOG,
                json!([["workorder_id", "in", running], ["date_end", "=", false]]),
                &["workorder_id"],
            )
            .await?
            .iter()
            .filter_map(|t| m2o(t, "workorder_id"))
            .collect();
        let mut rows = Vec::new();
        for (id, wo, user, loss) in cut {
            if !running.contains(&wo) || timed.contains(&wo) {
                continue;
            }
            // One timer per work order and user (Odoo's "cannot be started twice").
            if rows
                .iter()
                .any(|r: &[String; 7]| r[2] == wo.to_string() && r[4] == user.to_string())
            {
                continue;
            }
            rows.push([
                format!("{xmlid}-resume-{id}"),
                wc.to_string(),
                wo.to_string(),
                loss.to_string(),
                user.to_string(),
                end.to_string(),
                format!("Time Tracking: resumed after the stop of {start} UTC"),
            ]);
        }
        if rows.is_empty() {
            return Ok(());
        }
        let result = self
            .rpc
            .call(
                LOG,
                "load",
                None,
                json!({"fields": RESUME_FIELDS, "data": rows}),
                Some(json!({"tz": "UTC"})),
            )
            .await
            .map_err(classify)?;
        load_outcome(&result, "resumed timer")
    }
}
