//! Downtime from a machine-state value: a stop state held for at least
//! `min_duration` becomes an interval with a start, an end and a reason.
//!
//! Odoo hears of a stop twice, with the same `downtime_id`: once when it has
//! lasted `min_duration` (an open time log, so the work center shows blocked
//! while it is down) and once when it ends (the same log gets its end).

use crate::config::DowntimeRule;
use crate::model::{Downtime as Interval, Event, EventBody, Millis, Quality, Sample};
use serde::{Deserialize, Serialize};

/// What survives a restart: the stop in progress, if any.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DowntimeState {
    pub open: Option<OpenStop>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenStop {
    pub state: i64,
    pub since: Millis,
    /// The start event was emitted (the stop reached `min_duration`).
    pub announced: bool,
}

pub struct Downtime {
    pub rule: DowntimeRule,
    pub state: DowntimeState,
}

impl Downtime {
    /// Feed one reading; pushes any events and says whether the state changed.
    pub fn on_sample(&mut self, gateway: &str, sample: &Sample, events: &mut Vec<Event>) -> bool {
        if sample.quality != Quality::Good {
            return false;
        }
        let Some(value) = sample.value.as_i64() else {
            tracing::warn!(rule = %self.rule.name, tag = %sample.tag, value = %sample.value,
                "machine-state tag gave a value that is not an integer; ignored");
            return false;
        };
        let now = sample.time;
        let running = self.rule.running.contains(&value);
        let mut changed = false;
        if let Some(open) = &self.state.open {
            if running || open.state != value {
                let open = open.clone();
                self.close(gateway, &open, now, events);
                self.state.open = None;
                changed = true;
            }
        }
        if !running && self.state.open.is_none() {
            self.state.open = Some(OpenStop {
                state: value,
                since: now,
                announced: false,
            });
            changed = true;
        }
        if let Some(open) = &mut self.state.open {
            let held = now.saturating_sub(open.since);
            if !open.announced && held >= self.rule.min_duration.as_millis() as i64 {
                open.announced = true;
                let open = open.clone();
                events.push(self.event(gateway, &open, None));
                changed = true;
            }
        }
        changed
    }

    fn close(&self, gateway: &str, open: &OpenStop, end: Millis, events: &mut Vec<Event>) {
        let held = end.saturating_sub(open.since);
        if open.announced || held >= self.rule.min_duration.as_millis() as i64 {
            events.push(self.event(gateway, open, Some(end)));
        }
    }

    fn event(&self, gateway: &str, open: &OpenStop, end: Option<Millis>) -> Event {
        let (loss, description) = self.rule.reason_for(open.state);
        let downtime_id = format!("{gateway}-{}-{}", self.rule.name, open.since.0);
        let interval = Interval {
            workcenter: self.rule.workcenter.clone(),
            downtime_id: downtime_id.clone(),
            state: open.state,
            loss: loss.to_string(),
            description,
            start: open.since,
            end,
        };
        match end {
            None => Event {
                id: format!("{downtime_id}-start"),
                rule: self.rule.name.clone(),
                time: open.since,
                body: EventBody::DowntimeStarted(interval),
            },
            Some(end) => Event {
                id: format!("{downtime_id}-end"),
                rule: self.rule.name.clone(),
                time: end,
                body: EventBody::DowntimeEnded(interval),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Reason;
    use crate::model::Value;
    use std::time::Duration;

    fn rule() -> Downtime {
        Downtime {
            rule: DowntimeRule {
                name: "stops".into(),
                tag: "s".into(),
                workcenter: "WC".into(),
                min_duration: Duration::from_secs(10),
                running: vec![1],
                reasons: vec![Reason {
                    state: 2,
                    loss: "mrp.block_reason1".into(),
                    description: "Hydraulic fault".into(),
                }],
                default_loss: "mrp.block_reason0".into(),
                default_description: "Stopped".into(),
                lane: None,
            },
            state: DowntimeState::default(),
        }
    }

    fn feed(d: &mut Downtime, value: i64, secs: i64) -> Vec<Event> {
        let mut ev = Vec::new();
        let s = Sample {
            tag: "s".into(),
            value: Value::Int(value),
            quality: Quality::Good,
            time: Millis(secs * 1000),
            server_time: None,
        };
        d.on_sample("gw", &s, &mut ev);
        ev
    }

    #[test]
    fn short_stop_is_ignored() {
        let mut d = rule();
        feed(&mut d, 1, 0);
        assert!(feed(&mut d, 2, 1).is_empty());
        assert!(feed(&mut d, 1, 5).is_empty());
        assert_eq!(d.state.open, None);
    }

    #[test]
    fn long_stop_starts_then_ends_with_the_same_id() {
        let mut d = rule();
        feed(&mut d, 1, 0);
        feed(&mut d, 2, 100);
        assert!(feed(&mut d, 2, 105).is_empty());
        let start = feed(&mut d, 2, 110);
        assert_eq!(start.len(), 1);
        assert!(feed(&mut d, 2, 120).is_empty(), "announced once");
        let end = feed(&mut d, 1, 130);
        let (EventBody::DowntimeStarted(a), EventBody::DowntimeEnded(b)) =
            (&start[0].body, &end[0].body)
        else {
            panic!("{start:?} {end:?}")
        };
        assert_eq!(a.downtime_id, b.downtime_id);
        assert_eq!((b.start, b.end), (Millis(100_000), Some(Millis(130_000))));
        assert_eq!(
            (b.loss.as_str(), b.description.as_str()),
            ("mrp.block_reason1", "Hydraulic fault")
        );
    }

    #[test]
    fn change_of_stop_reason_splits_the_interval() {
        let mut d = rule();
        feed(&mut d, 2, 0);
        feed(&mut d, 2, 20);
        let ev = feed(&mut d, 5, 30);
        assert_eq!(ev.len(), 1);
        let EventBody::DowntimeEnded(i) = &ev[0].body else {
            panic!()
        };
        assert_eq!(i.state, 2);
        assert_eq!(d.state.open.as_ref().map(|o| o.state), Some(5));
        let ev = feed(&mut d, 1, 35);
        assert!(ev.is_empty(), "5 s of state 5 is under min_duration");
    }
}
