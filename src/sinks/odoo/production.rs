//! Production semantics without I/O: which work order gets parts made at a
//! given time, which absolute quantity to write so that nothing recorded in
//! Odoo is lowered, and whether a recorded write is already in Odoo.
//!
//! Facts from Odoo this rests on (shared/odoo-api.md 4.3, 4.4):
//! - an MO has one `qty_producing`; its work orders show it as their
//!   related `qty_producing`, and writing a work order's `qty_produced`
//!   sets the MO's `qty_producing` to that value;
//! - `qty_produced` of a done work order can be written only with the
//!   context key `allow_qty_change`.
//!
//! So the value written is `max(wo.qty_produced, mo.qty_producing) + parts`:
//! never below either, whichever of them an operator typed into.

use crate::config::ProductionTarget;
use serde::{Deserialize, Serialize};

/// A work order as read from Odoo (one `search_read` row).
#[derive(Clone, Debug, PartialEq)]
pub struct WorkOrderView {
    pub id: i64,
    pub name: String,
    pub production: i64,
    pub production_name: String,
    /// progress or done (the only states read).
    pub state: String,
    /// The MO's state (`production_state`).
    pub production_state: String,
    /// Naive UTC `YYYY-MM-DD HH:MM:SS`, as Odoo sends them; compared as text.
    pub date_start: Option<String>,
    pub date_finished: Option<String>,
    pub qty_produced: f64,
    /// The MO's `qty_producing`.
    pub qty_producing: f64,
}

impl WorkOrderView {
    /// Was it running at `at`? A work order in progress runs until now (its
    /// `date_finished` is then only the planned end); a done one until it
    /// finished.
    fn ran_at(&self, at: &str) -> bool {
        let started = self.date_start.as_deref().is_some_and(|s| s <= at);
        started
            && match self.state.as_str() {
                "progress" => true,
                _ => self.date_finished.as_deref().is_some_and(|f| at < f),
            }
    }
}

/// Why a work order gets the parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// It was running at the work center when they were made.
    Running,
    /// None was running then; this is the first started after (the operator
    /// pressed Start late, or the parts fell between two work orders).
    NextStarted,
}

/// The work order that gets parts made at `at` at one work center.
pub fn attribute<'a>(wos: &'a [WorkOrderView], at: &str) -> Option<(&'a WorkOrderView, Why)> {
    let key = |w: &&WorkOrderView| (w.date_start.clone(), w.id);
    if let Some(w) = wos.iter().filter(|w| w.ran_at(at)).max_by_key(key) {
        return Some((w, Why::Running));
    }
    wos.iter()
        .filter(|w| w.date_start.as_deref().is_some_and(|s| s > at))
        .min_by_key(key)
        .map(|w| (w, Why::NextStarted))
}

/// The work order running at `at`, for linking a loss log (no fallback).
pub fn running_at<'a>(wos: &'a [WorkOrderView], at: &str) -> Option<&'a WorkOrderView> {
    match attribute(wos, at) {
        Some((w, Why::Running)) => Some(w),
        _ => None,
    }
}

/// The write decided for a production event, fixed in the ledger before it
/// is sent. Field order and the target's variant order are persisted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub workorder: i64,
    /// None only for entries of releases that wrote the work order alone.
    pub production: Option<i64>,
    pub target: ProductionTarget,
    /// What Odoo held when the value was decided (None: not recorded).
    pub base: Option<f64>,
    pub value: f64,
    /// The work order was done: write with `allow_qty_change`.
    pub closed: bool,
}

/// Decide the write for `parts` made at `at`, or say why they cannot go in.
pub fn decide(
    wo: &WorkOrderView,
    why: Why,
    mo_qty: f64,
    parts: u64,
    at: &str,
    target: ProductionTarget,
) -> Result<Intent, String> {
    let closed = wo.state == "done";
    if closed && matches!(wo.production_state.as_str(), "done" | "cancel") {
        let finished = wo.date_finished.as_deref().unwrap_or("?");
        let how = match why {
            Why::Running => "made while it ran",
            Why::NextStarted => "made before it started",
        };
        return Err(format!(
            "{parts} parts {how} (at {at} UTC) belong to work order {} of {}, but that work order finished at {finished} and its manufacturing order is {}: Odoo can no longer take them there. Record them by hand (on a backorder or a new MO), then `plantgate dlq drop ID`; or reopen the MO and `plantgate dlq replay ID`",
            wo.name, wo.production_name, wo.production_state
        ));
    }
    let base = wo.qty_produced.max(mo_qty);
    Ok(Intent {
        workorder: wo.id,
        production: Some(wo.production),
        target,
        base: Some(base),
        value: base + parts as f64,
        closed,
    })
}

/// Does Odoo already hold the intent's write (or more)? `qty_produced` and
/// `qty_producing` are the work order's as read now.
pub fn applied(intent: &Intent, qty_produced: f64, qty_producing: f64) -> bool {
    match intent.target {
        ProductionTarget::Workorder => qty_produced >= intent.value,
        ProductionTarget::Production => qty_producing >= intent.value,
        ProductionTarget::Both => qty_produced >= intent.value && qty_producing >= intent.value,
    }
}

/// Ledger entry versions: 0 and 1 are `{workorder, qty_produced}` (0 is
/// format 0's unversioned entry, carried over by the store's migration);
/// 2 is [`Intent`].
const INTENT_V2: u8 = 2;
const INTENT_V1: u8 = 1;
const INTENT_V0: u8 = crate::store::migrate::LEGACY_PAYLOAD;

/// The shape of versions 0 and 1, frozen.
#[derive(Deserialize)]
struct IntentV1 {
    workorder: i64,
    qty_produced: f64,
}

impl Intent {
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        let mut out = vec![INTENT_V2];
        out.extend(postcard::to_stdvec(self)?);
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Intent, String> {
        match bytes.split_first() {
            Some((&INTENT_V2, rest)) => postcard::from_bytes(rest).map_err(|e| e.to_string()),
            Some((&INTENT_V1 | &INTENT_V0, rest)) => {
                let old: IntentV1 = postcard::from_bytes(rest).map_err(|e| e.to_string())?;
                Ok(Intent {
                    workorder: old.workorder,
                    production: None,
                    target: ProductionTarget::Workorder,
                    base: None,
                    value: old.qty_produced,
                    closed: false,
                })
            }
            Some((v, _)) => Err(format!("version {v} is not one this release reads")),
            None => Err("empty entry".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wo(id: i64, state: &str, start: Option<&str>, end: Option<&str>) -> WorkOrderView {
        WorkOrderView {
            id,
            name: format!("WO/{id}"),
            production: 100 + id,
            production_name: format!("MO/{id}"),
            state: state.into(),
            production_state: "progress".into(),
            date_start: start.map(str::to_string),
            date_finished: end.map(str::to_string),
            qty_produced: 0.0,
            qty_producing: 0.0,
        }
    }

    const T: &str = "2026-01-01 10:00:00";

    #[test]
    fn parts_go_to_the_work_order_running_when_they_were_made() {
        let wos = [
            wo(
                1,
                "done",
                Some("2026-01-01 08:00:00"),
                Some("2026-01-01 10:30:00"),
            ),
            wo(2, "progress", Some("2026-01-01 10:30:00"), None),
        ];
        assert_eq!(
            attribute(&wos, T).map(|(w, y)| (w.id, y)),
            Some((1, Why::Running))
        );
        let later = "2026-01-01 10:31:00";
        assert_eq!(
            attribute(&wos, later).map(|(w, y)| (w.id, y)),
            Some((2, Why::Running))
        );
    }

    #[test]
    fn a_planned_end_in_the_past_does_not_stop_a_running_work_order() {
        let wos = [wo(
            1,
            "progress",
            Some("2026-01-01 08:00:00"),
            Some("2026-01-01 09:00:00"),
        )];
        assert_eq!(attribute(&wos, T).map(|(w, _)| w.id), Some(1));
    }

    #[test]
    fn parts_between_two_work_orders_go_to_the_next_started() {
        let wos = [
            wo(
                1,
                "done",
                Some("2026-01-01 08:00:00"),
                Some("2026-01-01 09:00:00"),
            ),
            wo(2, "progress", Some("2026-01-01 11:00:00"), None),
        ];
        assert_eq!(
            attribute(&wos, T).map(|(w, y)| (w.id, y)),
            Some((2, Why::NextStarted))
        );
        assert_eq!(running_at(&wos, T), None);
        assert_eq!(attribute(&wos[..1], T), None);
    }

    #[test]
    fn the_value_is_never_below_what_an_operator_recorded() {
        let w = wo(1, "progress", Some(T), None);
        let i = decide(&w, Why::Running, 120.0, 3, T, ProductionTarget::Workorder).expect("ok");
        assert_eq!((i.base, i.value, i.closed), (Some(120.0), 123.0, false));
        let mut w2 = w.clone();
        w2.qty_produced = 130.0;
        let i = decide(&w2, Why::Running, 120.0, 3, T, ProductionTarget::Production).expect("ok");
        assert_eq!(i.value, 133.0);
        assert!(applied(&i, 0.0, 133.0));
        assert!(!applied(&i, 133.0, 132.0));
    }

    #[test]
    fn a_closed_work_order_of_a_done_mo_refuses_with_what_to_do() {
        let mut w = wo(
            1,
            "done",
            Some("2026-01-01 08:00:00"),
            Some("2026-01-01 10:30:00"),
        );
        let i = decide(&w, Why::Running, 0.0, 2, T, ProductionTarget::Workorder).expect("open MO");
        assert!(i.closed);
        w.production_state = "done".into();
        let e = decide(&w, Why::Running, 0.0, 2, T, ProductionTarget::Workorder).unwrap_err();
        assert!(
            e.contains("WO/1 of MO/1") && e.contains("plantgate dlq"),
            "{e}"
        );
    }

    #[test]
    fn old_ledger_entries_still_read() {
        #[derive(Serialize)]
        struct Old {
            workorder: i64,
            qty_produced: f64,
        }
        let mut bytes = vec![INTENT_V1];
        bytes.extend(
            postcard::to_stdvec(&Old {
                workorder: 7,
                qty_produced: 12.0,
            })
            .expect("enc"),
        );
        let i = Intent::decode(&bytes).expect("v1 reads");
        assert_eq!(
            (i.workorder, i.value, i.target),
            (7, 12.0, ProductionTarget::Workorder)
        );
        let again = Intent::decode(&i.encode().expect("enc")).expect("v2 reads");
        assert_eq!(again, i);
    }
}
