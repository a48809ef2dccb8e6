//! Alarms: a threshold with hysteresis (`above`/`below` with `clear_at`)
//! or a boolean tag (`when`), raised once its condition has held for the
//! on-delay (`for`) and cleared once the clear condition has held for
//! `clear_for`. Between the limit and `clear_at` nothing changes, and a
//! condition that lapses before its delay restarts it, so a signal
//! chattering around the limit gives one raise and one clear, never a
//! flood. Delays run on the monotonic clock and fire on the edge's tick,
//! so a report-by-exception tag that stays hot is raised on time.
//!
//! A rate alarm (`rises_faster_than`, `falls_faster_than`) applies the
//! same logic to the change per minute, taken from the oldest reading of
//! the last minute to the newest (in memory: after a restart the rate
//! needs a second reading again).
//!
//! Odoo hears of an occurrence twice, with the same `alarm_id`: when it is
//! raised (a maintenance request) and when it clears (the same request).

use super::clock::{event_id, At, Held, RuleClock};
use crate::config::{AlarmCondition, AlarmRule};
use crate::model::{Alarm as Occurrence, Event, EventBody, Millis, Quality, Sample};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

/// The span a rate of change is taken over, and the least span that gives one.
const RATE_WINDOW_MS: i64 = 60_000;
const RATE_MIN_SPAN_MS: i64 = 1_000;

/// What survives a restart: the condition being timed, and the raised
/// occurrence with its clear being timed. How long either has held is
/// rebuilt from its `since` after a restart.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlarmState {
    pub clock: RuleClock,
    /// The raise condition has held since then (the on-delay runs).
    pub pending: Option<Since>,
    /// The alarm is raised.
    pub active: Option<Active>,
}

/// A condition that began at `since`, with the value that began it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Since {
    pub since: Millis,
    pub value: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Active {
    /// When the condition began: with `seq`, the occurrence's id.
    pub since: Millis,
    pub seq: u32,
    pub raised: Millis,
    pub value: f64,
    /// The clear condition has held since then (`clear_for` runs).
    pub clearing: Option<Since>,
}

pub struct Alarm {
    pub rule: std::sync::Arc<AlarmRule>,
    pub state: AlarmState,
    /// How long the pending raise or clear has held, monotonic.
    held: Option<Held>,
    /// A rate alarm's readings of the last minute (device time, value).
    window: VecDeque<(Millis, f64)>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn after(t: Millis, d: Duration) -> Millis {
    Millis(t.0.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

impl Alarm {
    pub fn new(rule: impl Into<std::sync::Arc<AlarmRule>>, state: AlarmState) -> Self {
        let rule = rule.into();
        Alarm {
            rule,
            state,
            held: None,
            window: VecDeque::new(),
        }
    }

    /// Feed one reading; pushes any events and says whether the state changed.
    /// A bad or non-numeric reading neither raises nor clears.
    pub fn on_sample(
        &mut self,
        gateway: &str,
        sample: &Sample,
        at: At,
        events: &mut Vec<Event>,
    ) -> bool {
        let value = match (&sample.quality, sample.value.as_f64()) {
            (Quality::Good, Some(v)) => v,
            (Quality::Good, None) => {
                tracing::warn!(rule = %self.rule.name, tag = %self.rule.tag, value = %sample.value,
                    "alarm tag gave a value that is not a number; ignored");
                return self.on_tick(gateway, at, events);
            }
            _ => return self.on_tick(gateway, at, events),
        };
        let value = if self.rule.rate {
            match self.rate(sample.time, value) {
                Some(r) => r,
                None => return self.on_tick(gateway, at, events),
            }
        } else {
            value
        };
        let cond = self.rule.condition;
        // Dated within the rule's last event and the timeline, as events are.
        let t = sample.time.min(at.time);
        let t = self.state.clock.last.map_or(t, |l| t.max(l));
        let mut changed = false;
        match &mut self.state.active {
            None if cond.raises(value) => {
                if self.state.pending.is_none() {
                    self.state.pending = Some(Since { since: t, value });
                    self.held = Some(Held::start(at));
                    changed = true;
                }
            }
            None => {
                if self.state.pending.take().is_some() {
                    self.held = None;
                    changed = true;
                }
            }
            Some(active) if cond.clears(value) => {
                if active.clearing.is_none() {
                    active.clearing = Some(Since { since: t, value });
                    self.held = Some(Held::start(at));
                    changed = true;
                }
            }
            Some(active) => {
                if active.clearing.take().is_some() {
                    self.held = None;
                    changed = true;
                }
            }
        }
        self.on_tick(gateway, at, events) || changed
    }

    /// Raise or clear once the delay has passed, sample or not.
    pub fn on_tick(&mut self, gateway: &str, at: At, events: &mut Vec<Event>) -> bool {
        if let Some(p) = self.state.pending {
            let held = *self.held.get_or_insert_with(|| Held::resume(p.since, at));
            if held.ms(at) < ms(self.rule.on_delay) {
                return false;
            }
            let raised = self
                .state
                .clock
                .date(after(p.since, self.rule.on_delay), at);
            let seq = self.state.clock.sequence(p.since);
            let active = Active {
                since: p.since,
                seq,
                raised,
                value: p.value,
                clearing: None,
            };
            events.push(self.event(gateway, &active, None));
            self.state.active = Some(active);
            self.state.pending = None;
            self.held = None;
            return true;
        }
        let Some(active) = &self.state.active else {
            return false;
        };
        let Some(c) = active.clearing else {
            return false;
        };
        let held = *self.held.get_or_insert_with(|| Held::resume(c.since, at));
        if held.ms(at) < ms(self.rule.clear_for) {
            return false;
        }
        let active = active.clone();
        let cleared = self
            .state
            .clock
            .date(after(c.since, self.rule.clear_for), at);
        events.push(self.event(gateway, &active, Some((cleared, c.value))));
        self.state.active = None;
        self.held = None;
        true
    }

    /// Change per minute over the window ending at this reading, once the
    /// window spans at least a second.
    fn rate(&mut self, t: Millis, value: f64) -> Option<f64> {
        if self.window.back().is_some_and(|(last, _)| *last > t) {
            // The device's clock went back: start the window anew.
            self.window.clear();
        }
        self.window.push_back((t, value));
        while self
            .window
            .front()
            .is_some_and(|(first, _)| t.saturating_sub(*first) > RATE_WINDOW_MS)
        {
            self.window.pop_front();
        }
        let (first, v0) = *self.window.front()?;
        let span = t.saturating_sub(first);
        (span >= RATE_MIN_SPAN_MS).then(|| (value - v0) * 60_000.0 / span as f64)
    }

    fn detail(&self, value: f64) -> String {
        let tag = &self.rule.tag;
        let value = crate::model::tidy(value);
        let held = if self.rule.on_delay.is_zero() {
            String::new()
        } else {
            format!(" for {}", humantime::format_duration(self.rule.on_delay))
        };
        match self.rule.condition {
            AlarmCondition::Above { limit, .. } if self.rule.rate => {
                format!("{tag} rising {value} per minute: faster than {limit}{held}")
            }
            AlarmCondition::Below { limit, .. } if self.rule.rate => format!(
                "{tag} falling {} per minute: faster than {}{held}",
                -value, -limit
            ),
            AlarmCondition::Above { limit, .. } => format!("{tag} = {value}: above {limit}{held}"),
            AlarmCondition::Below { limit, .. } => format!("{tag} = {value}: below {limit}{held}"),
            AlarmCondition::When(b) => format!("{tag} = {b}{held}"),
        }
    }

    fn event(&self, gateway: &str, active: &Active, cleared: Option<(Millis, f64)>) -> Event {
        let alarm_id = event_id(gateway, &self.rule.name, active.since, active.seq);
        let body = Occurrence {
            equipment: self.rule.equipment.clone(),
            equipment_at: self.rule.equipment_at.clone(),
            alarm_id: alarm_id.clone(),
            title: self.rule.description.clone(),
            detail: self.detail(active.value),
            start: active.since,
            raised: active.raised,
            cleared: cleared.map(|c| c.0),
            clear_value: cleared.map(|c| c.1),
        };
        match cleared {
            None => Event {
                id: format!("{alarm_id}-raised"),
                rule: self.rule.name.clone(),
                time: active.raised,
                body: EventBody::AlarmRaised(body),
            },
            Some((t, _)) => Event {
                id: format!("{alarm_id}-cleared"),
                rule: self.rule.name.clone(),
                time: t,
                body: EventBody::AlarmCleared(body),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::clock::Mono;
    use crate::edge::{testing, RuleState};
    use crate::model::Value;

    fn rule(condition: AlarmCondition, on_delay: u64, clear_for: u64) -> Alarm {
        Alarm::new(
            AlarmRule {
                name: "oven_hot".into(),
                tag: "oven_temp".into(),
                equipment: "OVEN-1".into(),
                equipment_at: "gw.toml:40:13".into(),
                condition,
                rate: false,
                on_delay: Duration::from_secs(on_delay),
                clear_for: Duration::from_secs(clear_for),
                description: "Oven over temperature".into(),
                lane: None,
            },
            AlarmState::default(),
        )
    }

    const HOT: AlarmCondition = AlarmCondition::Above {
        limit: 260.0,
        clear_at: 255.0,
    };

    /// Wall and monotonic time agree (no clock step), in seconds.
    fn at(secs: f64) -> At {
        testing::at((secs * 1000.0) as i64)
    }

    fn feed(a: &mut Alarm, value: Value, secs: f64) -> Vec<Event> {
        let mut ev = Vec::new();
        let s = testing::reading(value, at(secs).time.0);
        a.on_sample("gw", &s, at(secs), &mut ev);
        ev
    }

    fn temp(a: &mut Alarm, t: f64, secs: f64) -> Vec<Event> {
        feed(a, Value::Float(t), secs)
    }

    fn tick(a: &mut Alarm, secs: f64) -> Vec<Event> {
        let mut ev = Vec::new();
        a.on_tick("gw", at(secs), &mut ev);
        ev
    }

    fn kinds(ev: &[Event]) -> Vec<&'static str> {
        ev.iter().map(|e| e.kind()).collect()
    }

    #[test]
    fn raised_by_the_clock_after_the_on_delay_while_the_tag_is_silent() {
        let mut a = rule(HOT, 60, 0);
        assert!(temp(&mut a, 250.0, 0.0).is_empty());
        // Report by exception: one change to hot, then silence.
        assert!(temp(&mut a, 265.0, 10.0).is_empty());
        assert!(tick(&mut a, 69.75).is_empty(), "59.75 s is under the delay");
        let raised = tick(&mut a, 70.0);
        assert_eq!(kinds(&raised), ["alarm_raised"]);
        assert_eq!(raised[0].id, "gw-oven_hot-10000-raised");
        let EventBody::AlarmRaised(o) = &raised[0].body else {
            panic!("{raised:?}")
        };
        assert_eq!((o.start, o.raised), (Millis(10_000), Millis(70_000)));
        assert_eq!(o.equipment, "OVEN-1");
        assert_eq!(o.detail, "oven_temp = 265: above 260 for 1m");
        assert!(tick(&mut a, 200.0).is_empty(), "raised once");
        let cleared = temp(&mut a, 250.0, 210.0);
        assert_eq!(kinds(&cleared), ["alarm_cleared"]);
        let EventBody::AlarmCleared(c) = &cleared[0].body else {
            panic!()
        };
        assert_eq!(c.alarm_id, o.alarm_id, "the same occurrence");
        assert_eq!(
            (c.cleared, c.clear_value),
            (Some(Millis(210_000)), Some(250.0))
        );
    }

    #[test]
    fn a_dip_below_the_limit_restarts_the_on_delay() {
        let mut a = rule(HOT, 60, 0);
        temp(&mut a, 265.0, 0.0);
        assert!(temp(&mut a, 259.0, 50.0).is_empty());
        assert!(temp(&mut a, 266.0, 55.0).is_empty());
        assert!(tick(&mut a, 114.0).is_empty(), "timed from 55 s, not 0 s");
        assert_eq!(kinds(&tick(&mut a, 115.0)), ["alarm_raised"]);
    }

    #[test]
    fn hysteresis_keeps_it_raised_between_the_limit_and_clear_at() {
        let mut a = rule(HOT, 0, 0);
        assert_eq!(kinds(&temp(&mut a, 261.0, 0.0)), ["alarm_raised"]);
        assert!(
            temp(&mut a, 257.0, 1.0).is_empty(),
            "257 is inside the band"
        );
        assert!(temp(&mut a, 259.9, 2.0).is_empty());
        assert_eq!(kinds(&temp(&mut a, 255.0, 3.0)), ["alarm_cleared"]);
        assert!(
            temp(&mut a, 258.0, 4.0).is_empty(),
            "not raised again below the limit"
        );
    }

    #[test]
    fn a_chattering_signal_gives_one_raise_and_one_clear() {
        let mut a = rule(HOT, 5, 2);
        let mut ev = Vec::new();
        // Around the limit, then hot for good, then chattering around
        // clear_at, then cool for good; sampled every 100 ms and ticked.
        for i in 0..2_000 {
            let secs = f64::from(i) * 0.1;
            let v = match i {
                0..=299 => 258.0 + f64::from((i + 1) % 2) * 4.0,
                300..=999 => 262.0 + f64::from(i % 3),
                1_000..=1_499 => 253.0 + f64::from(i % 2) * 4.0,
                _ => 250.0,
            };
            ev.extend(temp(&mut a, v, secs));
            ev.extend(tick(&mut a, secs + 0.05));
        }
        assert_eq!(kinds(&ev), ["alarm_raised", "alarm_cleared"], "{ev:?}");
        let (EventBody::AlarmRaised(r), EventBody::AlarmCleared(c)) = (&ev[0].body, &ev[1].body)
        else {
            panic!("{ev:?}")
        };
        assert_eq!(r.start, Millis(30_000), "hot for good from 30 s");
        assert_eq!(r.raised, Millis(35_000));
        assert_eq!(c.cleared, Some(Millis(152_000)), "cool for good from 150 s");
    }

    #[test]
    fn a_boolean_alarm_and_a_low_limit() {
        let mut a = rule(AlarmCondition::When(true), 0, 0);
        assert!(feed(&mut a, Value::Bool(false), 0.0).is_empty());
        assert_eq!(
            kinds(&feed(&mut a, Value::Bool(true), 1.0)),
            ["alarm_raised"]
        );
        assert!(feed(&mut a, Value::Bool(true), 2.0).is_empty());
        assert_eq!(
            kinds(&feed(&mut a, Value::Bool(false), 3.0)),
            ["alarm_cleared"]
        );
        let mut low = rule(
            AlarmCondition::Below {
                limit: 2.0,
                clear_at: 2.5,
            },
            0,
            0,
        );
        assert_eq!(kinds(&temp(&mut low, 1.5, 0.0)), ["alarm_raised"]);
        assert!(temp(&mut low, 2.2, 1.0).is_empty());
        assert_eq!(kinds(&temp(&mut low, 2.5, 2.0)), ["alarm_cleared"]);
    }

    #[test]
    fn bad_readings_neither_raise_nor_clear() {
        let mut a = rule(HOT, 0, 0);
        let mut ev = Vec::new();
        let s = Sample {
            quality: Quality::Bad("timeout".into()),
            ..testing::reading(Value::Float(300.0), 0)
        };
        a.on_sample("gw", &s, at(0.0), &mut ev);
        assert!(ev.is_empty());
    }

    #[test]
    fn a_rate_alarm_on_the_change_per_minute() {
        // Rising faster than 5 °C per minute, for 10 s; cleared at 2 per minute.
        let mut a = rule(
            AlarmCondition::Above {
                limit: 5.0,
                clear_at: 2.0,
            },
            10,
            0,
        );
        std::sync::Arc::make_mut(&mut a.rule).rate = true;
        let mut ev = Vec::new();
        // Flat for a minute, then +0.2 °C a second (12 per minute) for a
        // minute, then +0.02 a second (1.2 per minute), sampled each second.
        let mut v = 200.0;
        for s in 0..300 {
            v += match s {
                0..=59 => 0.0,
                60..=119 => 0.2,
                _ => 0.02,
            };
            ev.extend(temp(&mut a, v, f64::from(s)));
        }
        assert_eq!(kinds(&ev), ["alarm_raised", "alarm_cleared"], "{ev:?}");
        let EventBody::AlarmRaised(r) = &ev[0].body else {
            panic!()
        };
        assert!(r.detail.starts_with("oven_temp rising "), "{r:?}");
        // Over the last minute the rate passes 5 per minute 25 s into the
        // rise and 10 s later the on-delay has passed.
        assert_eq!((r.start, r.raised), (Millis(85_000), Millis(95_000)));
        let EventBody::AlarmCleared(c) = &ev[1].body else {
            panic!()
        };
        assert!(c.cleared > Some(Millis(120_000)), "{c:?}");
    }

    fn restart(a: &Alarm) -> Alarm {
        let bytes = RuleState::Alarm(a.state.clone()).encode().expect("encode");
        let RuleState::Alarm(state) = RuleState::decode(&bytes).expect("decode") else {
            panic!("an alarm state")
        };
        Alarm::new(a.rule.clone(), state)
    }

    #[test]
    fn a_restart_mid_delay_and_mid_alarm_resumes() {
        let mut a = rule(HOT, 60, 10);
        temp(&mut a, 265.0, 100.0);
        // Restart 20 s into the on-delay: the new process's monotonic
        // clock starts at 0, and 40 s remain.
        let mut a = restart(&a);
        let after = |wall: f64, mono: f64| At {
            time: Millis((wall * 1000.0) as i64),
            mono: Mono((mono * 1000.0) as u64),
        };
        let mut ev = Vec::new();
        a.on_tick("gw", after(120.0, 0.0), &mut ev);
        a.on_tick("gw", after(159.9, 39.9), &mut ev);
        assert!(ev.is_empty(), "{ev:?}");
        a.on_tick("gw", after(160.0, 40.0), &mut ev);
        assert_eq!(kinds(&ev), ["alarm_raised"]);
        // Restart while raised and clearing: it clears once, same id.
        let s = testing::reading(Value::Float(250.0), 170_000);
        a.on_sample("gw", &s, after(170.0, 50.0), &mut ev);
        let mut a = restart(&a);
        a.on_tick("gw", after(175.0, 0.0), &mut ev);
        assert_eq!(ev.len(), 1);
        a.on_tick("gw", after(180.0, 5.0), &mut ev);
        assert_eq!(kinds(&ev), ["alarm_raised", "alarm_cleared"]);
        assert_eq!(ev[1].id, "gw-oven_hot-100000-cleared");
        assert!(a.state.active.is_none());
    }
}
