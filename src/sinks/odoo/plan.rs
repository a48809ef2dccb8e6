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
    }
}

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
