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
        let read = |domain: Value, fields: &[&str]| json!({"domain": domain, "fields": fields});
        let cut = self
            .rpc
            .call(
                "mrp.workcenter.productivity",
                "search_read",
                None,
                read(
                    json!([
                        ["workcenter_id", "=", wc],
                        ["date_end", "=", start],
                        ["loss_type", "in", ["productive", "performance"]],
                        ["workorder_id", "!=", false]
                    ]),
                    &["id", "workorder_id", "user_id", "loss_id"],
                ),
                None,
            )
            .await
            .map_err(classify)?;
        let cut: Vec<(i64, i64, i64, i64)> = cut
            .as_array()
            .into_iter()
            .flatten()
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
            .rpc
            .call(
                "mrp.workcenter.productivity",
                "search_read",
                None,
                read(
                    json!([
                        ["workcenter_id", "=", wc],
                        ["date_end", "=", false],
                        ["loss_type", "in", ["availability", "quality"]]
                    ]),
                    &["id"],
                ),
                None,
            )
            .await
            .map_err(classify)?;
        if down_again.as_array().is_some_and(|a| !a.is_empty()) {
            return Ok(());
        }
        let mut wos: Vec<i64> = cut.iter().map(|c| c.1).collect();
        wos.sort_unstable();
        wos.dedup();
        let running = self
            .rpc
            .call(
                "mrp.workorder",
                "search_read",
                None,
                read(
                    json!([["id", "in", wos], ["state", "=", "progress"]]),
                    &["id"],
                ),
                None,
            )
            .await
            .map_err(classify)?;
        let running: Vec<i64> = running
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.get("id").and_then(Value::as_i64))
            .collect();
        let open = self
            .rpc
            .call(
                "mrp.workcenter.productivity",
                "search_read",
                None,
                read(
                    json!([["workorder_id", "in", running], ["date_end", "=", false]]),
                    &["workorder_id"],
                ),
                None,
            )
            .await
            .map_err(classify)?;
        let timed: Vec<i64> = open
            .as_array()
            .into_iter()
            .flatten()
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
                "mrp.workcenter.productivity",
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
