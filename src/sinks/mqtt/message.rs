//! The JSON every event is published as. Versioned by `schema`: a field is
//! only ever added within a version; a rename or removal is a new number,
//! so consumers can check what they parse.
//!
//! ```json
//! {"schema":1,"id":"gw1-parts-…","gateway":"gw1","kind":"production",
//!  "key":"PRESS1","lane":"normal","rule":"parts",
//!  "time":"2026-12-01T14:00:00.000Z","accepted":"2026-12-01T14:00:00.012Z",
//!  "payload":{"workcenter":"PRESS1","quantity":3,"counter_from":10,"counter_to":13}}
//! ```
//!
//! `id` is the event's stable id: the same event published twice (after a
//! reconnect or a restart) carries the same id, so consumers de-duplicate
//! by it. Times inside `payload` are milliseconds since the Unix epoch.

use crate::model::{Event, EventBody};
use crate::store::Lane;
use serde::Serialize;

/// The `schema` of [`Message`].
pub const SCHEMA: u32 = 1;

#[derive(Serialize)]
pub struct Message<'a> {
    pub schema: u32,
    pub id: &'a str,
    pub gateway: &'a str,
    pub kind: &'a str,
    pub key: &'a str,
    pub lane: &'a str,
    pub rule: &'a str,
    pub time: String,
    pub accepted: String,
    pub payload: Payload<'a>,
}

/// The event's own fields, by kind.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Payload<'a> {
    Production(&'a crate::model::Production),
    Downtime(&'a crate::model::Downtime),
    Alarm(&'a crate::model::Alarm),
    Measure(&'a crate::model::Measure),
    QualityAlert(&'a crate::model::QualityAlert),
    Summary(&'a crate::model::Summary),
    StockLevel(&'a crate::model::StockLevel),
    Scrap(&'a crate::model::Scrap),
    StateInterval(&'a crate::model::StateInterval),
}

impl<'a> Payload<'a> {
    fn of(body: &'a EventBody) -> Payload<'a> {
        match body {
            EventBody::Production(p) => Payload::Production(p),
            EventBody::DowntimeStarted(d) | EventBody::DowntimeEnded(d) => Payload::Downtime(d),
            EventBody::AlarmRaised(a) | EventBody::AlarmCleared(a) => Payload::Alarm(a),
            EventBody::QualityMeasure(m) => Payload::Measure(m),
            EventBody::QualityAlert(a) => Payload::QualityAlert(a),
            EventBody::Summary(w) => Payload::Summary(w),
            EventBody::StockLevel(s) => Payload::StockLevel(s),
            EventBody::Scrap(s) => Payload::Scrap(s),
            EventBody::StateInterval(i) => Payload::StateInterval(i),
        }
    }
}

/// The message of one stored event.
pub fn encode(
    gateway: &str,
    ev: &Event,
    lane: Lane,
    accepted: crate::model::Millis,
) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Message {
        schema: SCHEMA,
        id: &ev.id,
        gateway,
        kind: ev.kind(),
        key: ev.key(),
        lane: lane.as_str(),
        rule: &ev.rule,
        time: ev.time.rfc3339(),
        accepted: accepted.rfc3339(),
        payload: Payload::of(&ev.body),
    })
}

/// An alert that a lane of a sink is past its delivery target (`active`),
/// or back within it; `since` is when the breach began, `at` when this
/// change was seen.
pub fn sla_alert(gateway: &str, c: &crate::status::sla::Change) -> Vec<u8> {
    serde_json::json!({
        "schema": SCHEMA,
        "gateway": gateway,
        "alert": "lane_past_target",
        "active": c.late,
        "sink": c.sink,
        "lane": c.lane.as_str(),
        "since": c.since.rfc3339(),
        "at": c.at.rfc3339(),
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Millis, Production};

    #[test]
    fn a_production_event_as_json() {
        let ev = Event {
            id: "gw1-parts-7".into(),
            rule: "parts".into(),
            time: Millis(1_700_000_000_000),
            body: EventBody::Production(Production {
                workcenter: "PRESS1".into(),
                quantity: 3,
                counter_from: 10,
                counter_to: 13,
            }),
        };
        let bytes = encode("gw1", &ev, Lane::Normal, Millis(1_700_000_000_012)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "schema": 1, "id": "gw1-parts-7", "gateway": "gw1",
                "kind": "production", "key": "PRESS1", "lane": "normal", "rule": "parts",
                "time": "2023-11-14T22:13:20.000Z", "accepted": "2023-11-14T22:13:20.012Z",
                "payload": {"workcenter": "PRESS1", "quantity": 3, "counter_from": 10, "counter_to": 13},
            })
        );
    }

    #[test]
    fn a_state_interval_as_json() {
        let ev = Event {
            id: "gw1-stops-1700000000000-running".into(),
            rule: "stops".into(),
            time: Millis(1_700_000_090_000),
            body: EventBody::StateInterval(crate::model::StateInterval {
                workcenter: "PRESS1".into(),
                state: crate::model::MachineState::Running,
                value: 1,
                start: Millis(1_700_000_000_000),
                end: Millis(1_700_000_090_000),
            }),
        };
        let bytes = encode("gw1", &ev, Lane::Bulk, Millis(1_700_000_090_001)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["kind"], "state_interval");
        assert_eq!(
            v["payload"],
            serde_json::json!({"workcenter": "PRESS1", "state": "running", "value": 1,
                               "start": 1_700_000_000_000i64, "end": 1_700_000_090_000i64})
        );
    }
}
