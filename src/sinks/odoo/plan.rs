//! What an event means in Odoo: the call(s) to make, independent of how
//! they are sent. The live sink executes a plan; the dry-run sink prints it.

use crate::model::{tidy, Event, EventBody, Millis};

/// Odoo external ids the gateway creates live in this module namespace.
pub const XMLID_MODULE: &str = "plantgate";

#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Add parts to the work order that was running at a work center when
    /// they were made (`at`). Sent as an absolute quantity decided before the
    /// first attempt ([`super::production`]), so a repeat cannot add twice.
    AddProduced {
        workcenter: String,
        quantity: u64,
        at: Millis,
    },
    /// Create or update an `mrp.workcenter.productivity` loss log keyed by an
    /// external id (`load` upserts by it, so a replay updates, never doubles),
    /// linked to the work order running at the stop's start, after closing
    /// the productive timers open at the work center at that time.
    UpsertTimeLog {
        xmlid: String,
        workcenter: String,
        loss: String,
        date_start: String,
        date_end: Option<String>,
        description: String,
    },
    /// An alarm occurrence as a corrective `maintenance.request` on the
    /// equipment, keyed by an external id from the alarm's id. The raise
    /// creates it once (a repeat finds the external id and writes
    /// nothing); the clear updates its description.
    MaintenanceRequest {
        xmlid: String,
        equipment: String,
        /// `FILE:LINE:COL` of `equipment` in the config.
        equipment_at: String,
        name: String,
        /// HTML, as Odoo's `description` holds it.
        description: String,
        request_date: String,
        cleared: bool,
    },
    /// A measure: a `quality.check` (load by external id) when the Quality
    /// app is installed, else a note on the work order running then.
    QualityCheck {
        xmlid: String,
        workcenter: String,
        title: String,
        measure: f64,
        pass: bool,
        /// What the check or note says besides the measure.
        note: String,
        at: Millis,
    },
    /// A run of failed measures: a `quality.alert` linked to the check
    /// that completed the run, or a note.
    QualityAlert {
        xmlid: String,
        check_xmlid: String,
        workcenter: String,
        title: String,
        description: String,
        at: Millis,
    },
    /// A window's summary: a note in the work center's chatter
    /// (`message_post` on `mrp.workcenter`, a mail thread), which names the
    /// event id so a repeat finds it and posts nothing.
    WorkcenterNote {
        workcenter: String,
        event_id: String,
        /// Plain text; escaped when posted.
        text: String,
    },
    SetStock(SetStock),
    /// Parts scrapped at a work center: a `stock.scrap` of the MO's product,
    /// linked to the MO and the work order that was running when they were
    /// made (`at`), created once under an external id and validated.
    RecordScrap {
        xmlid: String,
        workcenter: String,
        quantity: u64,
        at: Millis,
    },
    /// Nothing to write: a running, idle or down interval. Odoo's own
    /// timers (productive time) and loss logs (stops) hold that time.
    Nothing,
}

/// The counted quantity of a product at a location: `stock.quant`
/// `create` in inventory mode with the absolute `inventory_quantity`
/// (Odoo reuses the product's quant there), then `action_apply_inventory`.
/// Never a relative move, so a repeat sets the same count again.
#[derive(Clone, Debug, PartialEq)]
pub struct SetStock {
    pub product: String,
    pub product_at: String,
    pub location: String,
    pub location_at: String,
    pub quantity: f64,
}

/// Text for an Odoo HTML field.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn alarm_description(a: &crate::model::Alarm) -> String {
    let mut d = format!(
        "<p>Raised at {} UTC: {}</p>",
        a.raised.odoo_datetime(),
        html_escape(&a.detail)
    );
    if let Some(c) = a.cleared {
        let value = a
            .clear_value
            .map(|v| format!(" (value {})", tidy(v)))
            .unwrap_or_default();
        d.push_str(&format!(
            "<p>Cleared at {} UTC{value}</p>",
            c.odoo_datetime()
        ));
    }
    d.push_str(&format!(
        "<p>plantgate alarm {}</p>",
        html_escape(&a.alarm_id)
    ));
    d
}

fn summary_note(s: &crate::model::Summary) -> String {
    let fig = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| tidy(v).to_string());
    let span = format!(
        "{} to {} UTC",
        s.start.odoo_datetime(),
        s.end.odoo_datetime()
    );
    if s.count == 0 {
        return format!(
            "{} ({}), {span}: no new reading; the value held at {}",
            s.title,
            s.tag,
            fig(s.time_weighted_mean)
        );
    }
    format!(
        "{} ({}), {span}: {} readings, min {}, max {}, mean {}, time-weighted mean {}, first {}, last {}",
        s.title,
        s.tag,
        s.count,
        fig(s.min),
        fig(s.max),
        fig(s.mean),
        fig(s.time_weighted_mean),
        fig(s.first),
        fig(s.last)
    )
}

fn measure_note(m: &crate::model::Measure) -> String {
    let target = m
        .target
        .map(|t| format!(", target {}", tidy(t)))
        .unwrap_or_default();
    format!(
        "{}: {} ({}), limits {} to {}{target}",
        m.title,
        tidy(m.value),
        if m.pass { "pass" } else { "fail" },
        m.low,
        m.high
    )
}

/// `plantgate.<id>`: event ids hold only `[A-Za-z0-9_-]`, so no second dot.
pub fn xmlid(id: &str) -> String {
    format!("{XMLID_MODULE}.{id}")
}

pub fn plan(event: &Event) -> Plan {
    match &event.body {
        EventBody::Production(p) => Plan::AddProduced {
            workcenter: p.workcenter.clone(),
            quantity: p.quantity,
            at: event.time,
        },
        EventBody::DowntimeStarted(d) | EventBody::DowntimeEnded(d) => Plan::UpsertTimeLog {
            xmlid: xmlid(&d.downtime_id),
            workcenter: d.workcenter.clone(),
            loss: d.loss.clone(),
            date_start: d.start.odoo_datetime(),
            date_end: d.end.map(|e| e.odoo_datetime()),
            description: d.description.clone(),
        },
        EventBody::AlarmRaised(a) | EventBody::AlarmCleared(a) => Plan::MaintenanceRequest {
            xmlid: xmlid(&a.alarm_id),
            equipment: a.equipment.clone(),
            equipment_at: a.equipment_at.clone(),
            name: a.title.clone(),
            description: alarm_description(a),
            request_date: a.raised.odoo_datetime().chars().take(10).collect(),
            cleared: a.cleared.is_some(),
        },
        EventBody::QualityMeasure(m) => Plan::QualityCheck {
            xmlid: xmlid(&event.id),
            workcenter: m.workcenter.clone(),
            title: m.title.clone(),
            measure: tidy(m.value),
            pass: m.pass,
            note: measure_note(m),
            at: event.time,
        },
        EventBody::QualityAlert(a) => Plan::QualityAlert {
            xmlid: xmlid(&event.id),
            check_xmlid: xmlid(&a.measure_id),
            workcenter: a.workcenter.clone(),
            title: a.title.clone(),
            description: format!(
                "{} failed measures in a row at work center {}, the last {}",
                a.failures, a.workcenter, a.detail
            ),
            at: event.time,
        },
        EventBody::Summary(s) => Plan::WorkcenterNote {
            workcenter: s.workcenter.clone(),
            event_id: event.id.clone(),
            text: summary_note(s),
        },
        EventBody::StockLevel(s) => Plan::SetStock(SetStock {
            product: s.product.clone(),
            product_at: s.product_at.clone(),
            location: s.location.clone(),
            location_at: s.location_at.clone(),
            quantity: s.quantity,
        }),
        EventBody::Scrap(s) => Plan::RecordScrap {
            xmlid: xmlid(&event.id),
            workcenter: s.workcenter.clone(),
            quantity: s.quantity,
            at: event.time,
        },
        EventBody::StateInterval(_) => Plan::Nothing,
    }
}

/// Column list of the scrap's `load`.
pub const SCRAP_FIELDS: [&str; 7] = [
    "id",
    "product_id/.id",
    "product_uom_id/.id",
    "scrap_qty",
    "production_id/.id",
    "workorder_id/.id",
    "origin",
];

/// Column list of the maintenance request's `load`.
pub const MAINTENANCE_FIELDS: [&str; 6] = [
    "id",
    "name",
    "equipment_id/.id",
    "maintenance_type",
    "request_date",
    "description",
];

/// Column list of the quality check's `load`.
pub const CHECK_FIELDS: [&str; 7] = [
    "id",
    "title",
    "test_type_id/.id",
    "measure",
    "quality_state",
    "control_date",
    "note",
];

/// Column list of the quality alert's `load`.
pub const ALERT_FIELDS: [&str; 5] = ["id", "title", "description", "check_id/id", "priority"];

/// Column list of the time-log `load` call. A stop's start leaves out
/// `date_end`, so a late repeat of it cannot reopen a closed record.
pub fn time_log_fields(with_end: bool) -> Vec<&'static str> {
    let mut f = vec![
        "id",
        "workcenter_id/.id",
        "loss_id/id",
        "date_start",
        "description",
        "workorder_id/.id",
    ];
    if with_end {
        f.push("date_end");
    }
    f
}

/// One unit of a batch: what goes to Odoo together. The live sink sends
/// these and the dry run prints them, so both show the same batches.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Consecutive production events of one work center (indices into the
    /// batch, in order). Each event's absolute value is decided as if the
    /// events were sent one by one; one write per work order they fall on
    /// sends the last of its values.
    Produced {
        workcenter: String,
        events: Vec<usize>,
    },
    /// Loss logs of several stops in one `load` of at most `max_batch`
    /// rows; a stop's start and end in one batch are one row. Rows with an
    /// end and rows without go in separate loads (their columns differ).
    TimeLogs { ended: bool, rows: Vec<TimeLogRow> },
    /// One event alone, as [`plan`] says.
    Single(usize),
}

/// One row of a time-log `load`: the last planned values of one stop.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeLogRow {
    pub xmlid: String,
    pub workcenter: String,
    pub loss: String,
    pub date_start: String,
    pub date_end: Option<String>,
    pub description: String,
    /// The events this row stands for.
    pub events: Vec<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Production,
    TimeLog,
    Other,
}

fn class(ev: &Event) -> Class {
    match ev.body {
        EventBody::Production(_) => Class::Production,
        EventBody::DowntimeStarted(_) | EventBody::DowntimeEnded(_) => Class::TimeLog,
        _ => Class::Other,
    }
}

/// A batch (in store order) as stages of steps. Per key, the events are cut
/// into runs of one class; stage `k` holds the `k`-th run of every key, so
/// a key's events go in order, one stage after the other, and a key whose
/// stage failed sits the later stages out. Within a stage the steps are
/// independent of each other.
pub fn stages(events: &[Event], max_batch: usize) -> Vec<Vec<Step>> {
    let max_batch = max_batch.max(1);
    // Runs per key, keys in order of first appearance.
    let mut keys: Vec<&str> = Vec::new();
    let mut runs: std::collections::HashMap<&str, Vec<(Class, Vec<usize>)>> =
        std::collections::HashMap::new();
    for (i, ev) in events.iter().enumerate() {
        let key = ev.key();
        let c = class(ev);
        let list = runs.entry(key).or_insert_with(|| {
            keys.push(key);
            Vec::new()
        });
        match list.last_mut() {
            Some((last, idx)) if *last == c && c != Class::Other => idx.push(i),
            _ => list.push((c, vec![i])),
        }
    }
    let depth = runs.values().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(depth);
    for k in 0..depth {
        let mut steps = Vec::new();
        let mut rows: [Vec<TimeLogRow>; 2] = [Vec::new(), Vec::new()];
        for key in &keys {
            let Some((c, idx)) = runs.get(key).and_then(|r| r.get(k)) else {
                continue;
            };
            match c {
                Class::Production => steps.push(Step::Produced {
                    workcenter: key.to_string(),
                    events: idx.clone(),
                }),
                Class::Other => steps.extend(idx.iter().map(|i| Step::Single(*i))),
                Class::TimeLog => {
                    for row in time_log_rows(events, idx) {
                        rows[usize::from(row.date_end.is_some())].push(row);
                    }
                }
            }
        }
        for (ended, rows) in [(false, &rows[0]), (true, &rows[1])] {
            for chunk in rows.chunks(max_batch) {
                steps.push(Step::TimeLogs {
                    ended,
                    rows: chunk.to_vec(),
                });
            }
        }
        out.push(steps);
    }
    out
}

/// One row per stop among one key's consecutive downtime events, with the
/// values of its last event (an end supersedes its start).
fn time_log_rows(events: &[Event], idx: &[usize]) -> Vec<TimeLogRow> {
    let mut rows: Vec<TimeLogRow> = Vec::new();
    for &i in idx {
        let Plan::UpsertTimeLog {
            xmlid,
            workcenter,
            loss,
            date_start,
            date_end,
            description,
        } = plan(&events[i])
        else {
            continue;
        };
        let row = TimeLogRow {
            xmlid,
            workcenter,
            loss,
            date_start,
            date_end,
            description,
            events: vec![i],
        };
        match rows.iter_mut().find(|r| r.xmlid == row.xmlid) {
            Some(r) => {
                let mut events = std::mem::take(&mut r.events);
                events.push(i);
                // A start after its end (a late repeat) keeps the end.
                let date_end = row.date_end.clone().or(r.date_end.take());
                *r = TimeLogRow {
                    date_end,
                    events,
                    ..row
                };
            }
            None => rows.push(row),
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Downtime, Measure, Production};

    fn parts(wc: &str, n: i64) -> Event {
        Event {
            id: format!("p-{wc}-{n}"),
            rule: "parts".into(),
            time: Millis(n * 1000),
            body: EventBody::Production(Production {
                workcenter: wc.into(),
                quantity: 1,
                counter_from: 0,
                counter_to: 1,
            }),
        }
    }

    fn stop(wc: &str, n: i64, ended: bool) -> Event {
        let d = Downtime {
            workcenter: wc.into(),
            downtime_id: format!("s-{wc}-{n}"),
            state: 2,
            loss: "mrp.block_reason1".into(),
            description: String::new(),
            start: Millis(n * 1000),
            end: ended.then_some(Millis(n * 1000 + 500)),
        };
        Event {
            id: format!("s-{wc}-{n}-{ended}"),
            rule: "stops".into(),
            time: Millis(n * 1000),
            body: if ended {
                EventBody::DowntimeEnded(d)
            } else {
                EventBody::DowntimeStarted(d)
            },
        }
    }

    fn measure(wc: &str, n: i64) -> Event {
        Event {
            id: format!("m-{wc}-{n}"),
            rule: "bore".into(),
            time: Millis(n * 1000),
            body: EventBody::QualityMeasure(Measure {
                workcenter: wc.into(),
                title: "Bore".into(),
                value: 10.0,
                low: 9.0,
                high: 11.0,
                target: None,
                pass: true,
            }),
        }
    }

    #[test]
    fn consecutive_parts_of_a_work_center_are_one_step_and_a_measure_cuts_them() {
        let evs = [
            parts("A", 1),
            parts("B", 1),
            parts("A", 2),
            measure("A", 3),
            parts("A", 4),
            parts("B", 2),
        ];
        let st = stages(&evs, 100);
        assert_eq!(st.len(), 3, "{st:?}");
        assert_eq!(
            st[0],
            vec![
                Step::Produced {
                    workcenter: "A".into(),
                    events: vec![0, 2]
                },
                Step::Produced {
                    workcenter: "B".into(),
                    events: vec![1, 5]
                },
            ]
        );
        // A's measure waits for A's first parts, and A's later parts for it.
        assert_eq!(st[1], vec![Step::Single(3)]);
        assert_eq!(
            st[2],
            vec![Step::Produced {
                workcenter: "A".into(),
                events: vec![4]
            }]
        );
    }

    #[test]
    fn a_stops_start_and_end_are_one_row_and_rows_go_in_loads_of_max_batch() {
        let mut evs = Vec::new();
        for n in 0..5 {
            evs.push(stop(&format!("W{n}"), n, false));
            evs.push(stop(&format!("W{n}"), n, true));
        }
        evs.push(stop("W9", 9, false));
        let st = stages(&evs, 2);
        assert_eq!(st.len(), 1);
        let loads: Vec<(bool, Vec<Vec<usize>>)> = st[0]
            .iter()
            .map(|s| match s {
                Step::TimeLogs { ended, rows } => {
                    (*ended, rows.iter().map(|r| r.events.clone()).collect())
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            loads,
            vec![
                (false, vec![vec![10]]),
                (true, vec![vec![0, 1], vec![2, 3]]),
                (true, vec![vec![4, 5], vec![6, 7]]),
                (true, vec![vec![8, 9]]),
            ]
        );
        let Step::TimeLogs { rows, .. } = &st[0][1] else {
            panic!()
        };
        assert_eq!(rows[0].date_end.as_deref(), Some("1970-01-01 00:00:00"));
    }
}
