//! Downtime from a machine-state value: a stop state held for at least
//! `min_duration` becomes an interval with a start, an end and a reason.
//!
//! Odoo hears of a stop twice, with the same `downtime_id`: once when it has
//! lasted `min_duration` (an open time log, so the work center shows blocked
//! while it is down) and once when it ends (the same log gets its end).
//!
//! States listed in `idle` are neither running nor a stop: they end a stop
//! and open none. With `debounce`, a new state value is taken only once it
//! has held that long, dated from its first reading: a flicker shorter than
//! the debounce changes nothing (it neither ends nor splits a stop).
//!
//! With `intervals = true` the rule also reports the machine's time as
//! consecutive intervals of running, idle and down (one event per closed
//! interval, id `<rule>-<start>-<state>`): from the first reading on they
//! follow each other without gap or overlap, each ending where the next
//! begins, for availability (OEE) downstream. A down interval includes the
//! stops shorter than `min_duration` that Odoo never hears of.

use super::clock::{event_id, At, Held, RuleClock};
use crate::config::DowntimeRule;
use crate::model::{
    Downtime as Interval, Event, EventBody, MachineState, Millis, Quality, Sample, StateInterval,
};
use serde::{Deserialize, Serialize};

/// What survives a restart: the stop in progress, if any, and the rule's
/// dates and ids. A tick needs no more: how long the stop has been held is
/// rebuilt from `since`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DowntimeState {
    pub open: Option<OpenStop>,
    pub clock: RuleClock,
    /// The last good value of the rule's `reason_tag` (the fault code).
    pub code: Option<i64>,
    /// The state value taken last (after the debounce).
    pub taken: Option<i64>,
    /// A new value waiting out the debounce: the value and its first
    /// reading's date.
    pub pending: Option<(i64, Millis)>,
    /// The running, idle or down interval in progress (`intervals`).
    pub interval: Option<OpenInterval>,
    /// Start of the latest interval id, and how many shared it before.
    pub interval_id_start: Option<Millis>,
    pub interval_seq: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenStop {
    pub state: i64,
    pub since: Millis,
    /// The start event was emitted (the stop reached `min_duration`).
    pub announced: bool,
    /// With `since`, the interval's id (see [`super::clock`]).
    pub seq: u32,
    /// The fault code the stop is reported with, fixed when it is first
    /// sent, so its start and end give Odoo the same loss.
    pub code: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenInterval {
    pub state: MachineState,
    pub value: i64,
    pub since: Millis,
    pub seq: u32,
}

pub struct Downtime {
    pub rule: std::sync::Arc<DowntimeRule>,
    pub state: DowntimeState,
    /// How long the open stop has been held, on the monotonic clock;
    /// rebuilt from `since` after a restart.
    held: Option<Held>,
    /// How long the pending value has been held (debounce); rebuilt from
    /// its date after a restart.
    pending_held: Option<Held>,
}

impl Downtime {
    pub fn new(rule: impl Into<std::sync::Arc<DowntimeRule>>, state: DowntimeState) -> Self {
        let rule = rule.into();
        Downtime {
            rule,
            state,
            held: None,
            pending_held: None,
        }
    }

    /// Feed one reading; pushes any events and says whether the state changed.
    pub fn on_sample(
        &mut self,
        gateway: &str,
        sample: &Sample,
        at: At,
        events: &mut Vec<Event>,
    ) -> bool {
        if sample.quality != Quality::Good {
            return self.on_tick(gateway, at, events);
        }
        let Some(value) = sample.value.as_i64() else {
            tracing::warn!(rule = %self.rule.name, tag = %self.rule.tag, value = %sample.value,
                "machine-state tag gave a value that is not an integer; ignored");
            return self.on_tick(gateway, at, events);
        };
        if self.rule.debounce.is_zero() || self.state.taken.is_none() {
            // The first reading has nothing to flicker from.
            let changed = self.take(gateway, value, sample.time, Held::start(at), at, events);
            return self.on_tick(gateway, at, events) || changed;
        }
        let mut changed = false;
        if self.state.taken == Some(value) {
            // Back before the debounce passed: the flicker is ignored.
            changed = self.state.pending.take().is_some();
            self.pending_held = None;
        } else if self.state.pending.map(|(v, _)| v) != Some(value) {
            self.state.pending = Some((value, sample.time));
            self.pending_held = Some(Held::start(at));
            changed = true;
        }
        self.on_tick(gateway, at, events) || changed
    }

    /// Take a new state value (read at `time`, held for `held` so far):
    /// end the stop it ends, open the stop it opens, close the interval.
    fn take(
        &mut self,
        gateway: &str,
        value: i64,
        time: Millis,
        held: Held,
        at: At,
        events: &mut Vec<Event>,
    ) -> bool {
        let class = self.rule.class_of(value);
        let mut changed = self.state.taken != Some(value);
        self.state.taken = Some(value);
        if let Some(open) = &self.state.open {
            if class != MachineState::Down || open.state != value {
                let open = open.clone();
                let end = self.state.clock.date(time, at);
                self.close(gateway, &open, end, at, events);
                self.state.open = None;
                self.held = None;
                changed = true;
            }
        }
        if class == MachineState::Down && self.state.open.is_none() {
            let since = self.state.clock.date(time, at);
            let seq = self.state.clock.sequence(since);
            self.state.open = Some(OpenStop {
                state: value,
                since,
                announced: false,
                seq,
                code: None,
            });
            self.held = Some(held);
            changed = true;
        }
        if self.rule.intervals {
            changed |= self.interval(gateway, class, value, time, at, events);
        }
        changed
    }

    /// Close the interval in progress when the machine's class changes,
    /// and open the next.
    fn interval(
        &mut self,
        gateway: &str,
        class: MachineState,
        value: i64,
        time: Millis,
        at: At,
        events: &mut Vec<Event>,
    ) -> bool {
        if self
            .state
            .interval
            .as_ref()
            .is_some_and(|i| i.state == class)
        {
            return false;
        }
        let change = self.state.clock.date(time, at);
        if let Some(i) = self.state.interval.take() {
            let id = event_id(gateway, &self.rule.name, i.since, i.seq);
            events.push(Event {
                id: format!("{id}-{}", i.state.as_str()),
                rule: self.rule.name.clone(),
                time: change,
                body: EventBody::StateInterval(StateInterval {
                    workcenter: self.rule.workcenter.clone(),
                    state: i.state,
                    value: i.value,
                    start: i.since,
                    end: change,
                }),
            });
        }
        let seq = if self.state.interval_id_start == Some(change) {
            self.state.interval_seq = self.state.interval_seq.saturating_add(1);
            self.state.interval_seq
        } else {
            self.state.interval_id_start = Some(change);
            self.state.interval_seq = 0;
            0
        };
        self.state.interval = Some(OpenInterval {
            state: class,
            value,
            since: change,
            seq,
        });
        true
    }

    /// A reading of the rule's `reason_tag`: the fault code a stop that is
    /// announced from now on is reported with. Says whether it changed.
    pub fn on_code(&mut self, sample: &Sample) -> bool {
        if sample.quality != Quality::Good {
            return false;
        }
        let Some(code) = sample.value.as_i64() else {
            tracing::warn!(rule = %self.rule.name, tag = self.rule.reason_tag.as_deref().unwrap_or_default(), value = %sample.value,
                "fault-code tag gave a value that is not an integer; ignored");
            return false;
        };
        let changed = self.state.code != Some(code);
        self.state.code = Some(code);
        changed
    }

    /// Announce the open stop once it has been held for `min_duration`,
    /// whether or not a sample came (a source that reports only changes is
    /// silent while the machine stays down).
    pub fn on_tick(&mut self, gateway: &str, at: At, events: &mut Vec<Event>) -> bool {
        let mut taken = false;
        if let Some((value, since)) = self.state.pending {
            let held = *self
                .pending_held
                .get_or_insert_with(|| Held::resume(since, at));
            if u128::from(held.ms(at)) >= self.rule.debounce.as_millis() {
                self.state.pending = None;
                self.pending_held = None;
                taken = self.take(gateway, value, since, held, at, events);
            }
        }
        self.announce(gateway, at, events) || taken
    }

    fn announce(&mut self, gateway: &str, at: At, events: &mut Vec<Event>) -> bool {
        let Some(open) = &self.state.open else {
            return false;
        };
        if open.announced {
            return false;
        }
        let held = *self
            .held
            .get_or_insert_with(|| Held::resume(open.since, at));
        if u128::from(held.ms(at)) < self.rule.min_duration.as_millis() {
            return false;
        }
        let mut open = open.clone();
        open.announced = true;
        open.code = self.state.code;
        events.push(self.event(gateway, &open, None));
        self.state.open = Some(open);
        true
    }

    fn close(&self, gateway: &str, open: &OpenStop, end: Millis, at: At, events: &mut Vec<Event>) {
        let held = self
            .held
            .unwrap_or_else(|| Held::resume(open.since, at))
            .ms(at);
        if open.announced {
            events.push(self.event(gateway, open, Some(end)));
        } else if u128::from(held) >= self.rule.min_duration.as_millis() {
            let mut open = open.clone();
            open.code = self.state.code;
            events.push(self.event(gateway, &open, Some(end)));
        }
    }

    fn event(&self, gateway: &str, open: &OpenStop, end: Option<Millis>) -> Event {
        let (loss, description) = self.rule.reason_for(open.state, open.code);
        let downtime_id = event_id(gateway, &self.rule.name, open.since, open.seq);
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
    use crate::edge::clock::Mono;
    use crate::edge::testing::{at as at_ms, reading};
    use crate::edge::RuleState;
    use crate::model::Value;
    use std::time::Duration;

    fn rule() -> Downtime {
        Downtime::new(
            DowntimeRule {
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
                reason_tag: Some("code".into()),
                codes: vec![crate::config::CodeReason {
                    code: 310,
                    loss: "mrp.block_reason1".into(),
                    description: "Motor overload".into(),
                }],
                idle: vec![],
                debounce: Duration::ZERO,
                intervals: false,
                lane: None,
            },
            DowntimeState::default(),
        )
    }

    fn code(d: &mut Downtime, value: i64) -> bool {
        d.on_code(&reading(Value::Int(value), 0))
    }

    fn reason(e: &Event) -> (String, String) {
        match &e.body {
            EventBody::DowntimeStarted(i) | EventBody::DowntimeEnded(i) => {
                (i.loss.clone(), i.description.clone())
            }
            other => panic!("not a stop: {other:?}"),
        }
    }

    #[test]
    fn a_mapped_fault_code_gives_the_stop_its_loss_at_start_and_end() {
        let mut d = rule();
        assert!(code(&mut d, 0), "a new code value is state to keep");
        assert!(feed_at(&mut d, 2, 1000, at_ms(1000)).is_empty());
        // The code comes with (or just after) the state, before the stop is announced.
        assert!(code(&mut d, 310));
        let start = feed_at(&mut d, 2, 11_000, at_ms(11_000));
        assert_eq!(start.len(), 1);
        let motor = (
            "mrp.block_reason1".to_string(),
            "Motor overload".to_string(),
        );
        assert_eq!(reason(&start[0]), motor);
        // The code is cleared while the machine is still down: the record keeps its loss.
        code(&mut d, 0);
        let end = feed_at(&mut d, 1, 20_000, at_ms(20_000));
        assert_eq!(end.len(), 1);
        assert_eq!(reason(&end[0]), motor, "start and end report the same loss");
    }

    #[test]
    fn an_unmapped_code_keeps_the_state_loss_and_names_the_code() {
        let mut d = rule();
        code(&mut d, 999);
        feed_at(&mut d, 2, 1000, at_ms(1000));
        let start = feed_at(&mut d, 2, 11_000, at_ms(11_000));
        assert_eq!(
            reason(&start[0]),
            (
                "mrp.block_reason1".to_string(),
                "Hydraulic fault (code 999)".to_string()
            )
        );
        let mut d = rule();
        code(&mut d, 0);
        feed_at(&mut d, 5, 1000, at_ms(1000));
        let start = feed_at(&mut d, 5, 11_000, at_ms(11_000));
        assert_eq!(
            reason(&start[0]),
            (
                "mrp.block_reason0".to_string(),
                "Stopped (state 5)".to_string()
            ),
            "code 0 is no fault code"
        );
    }

    #[test]
    fn the_fault_code_of_an_open_stop_survives_a_restart() {
        let mut d = rule();
        feed_at(&mut d, 2, 1000, at_ms(1000));
        code(&mut d, 310);
        feed_at(&mut d, 2, 11_000, at_ms(11_000));
        let bytes = RuleState::Downtime(d.state.clone())
            .encode()
            .expect("encode");
        let RuleState::Downtime(state) = RuleState::decode(&bytes).expect("decode") else {
            panic!("a downtime state")
        };
        let mut after = Downtime::new(rule().rule, state);
        let end = feed_at(&mut after, 1, 30_000, at_ms(30_000));
        assert_eq!(reason(&end[0]).1, "Motor overload");
    }

    fn feed_at(d: &mut Downtime, value: i64, device_ms: i64, at: At) -> Vec<Event> {
        let mut ev = Vec::new();
        let s = reading(Value::Int(value), device_ms);
        d.on_sample("gw", &s, at, &mut ev);
        ev
    }

    fn tick(d: &mut Downtime, at: At) -> Vec<Event> {
        let mut ev = Vec::new();
        d.on_tick("gw", at, &mut ev);
        ev
    }

    fn feed(d: &mut Downtime, value: i64, secs: i64) -> Vec<Event> {
        feed_at(d, value, secs * 1000, at_ms(secs * 1000))
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

    #[test]
    fn a_stop_is_announced_by_the_clock_while_no_sample_comes() {
        let mut d = rule();
        feed(&mut d, 1, 0);
        // The source reports the change to fault once, then stays silent.
        assert!(feed(&mut d, 2, 100).is_empty());
        assert!(tick(&mut d, at_ms(109_999)).is_empty());
        let start = tick(&mut d, at_ms(110_000));
        assert_eq!(start.len(), 1, "announced after min_duration, still down");
        assert_eq!(start[0].id, "gw-stops-100000-start");
        let EventBody::DowntimeStarted(i) = &start[0].body else {
            panic!("{start:?}")
        };
        assert_eq!((i.start, i.end), (Millis(100_000), None));
        assert!(tick(&mut d, at_ms(150_000)).is_empty(), "announced once");
        let end = feed(&mut d, 1, 160);
        let EventBody::DowntimeEnded(e) = &end[0].body else {
            panic!("{end:?}")
        };
        assert_eq!(e.downtime_id, i.downtime_id);
        assert_eq!(e.end, Some(Millis(160_000)));
    }

    #[test]
    fn a_stop_open_at_a_restart_is_announced_and_closed_after_it() {
        let mut d = rule();
        feed(&mut d, 2, 100);
        let bytes = RuleState::Downtime(d.state.clone())
            .encode()
            .expect("encode");
        let RuleState::Downtime(state) = RuleState::decode(&bytes).expect("decode") else {
            panic!()
        };
        let mut d = Downtime::new(d.rule.clone(), state);
        // The new process's monotonic clock starts at 0, 4 s after the stop began.
        let at = |wall: i64, mono: u64| At {
            time: Millis(wall),
            mono: Mono(mono),
        };
        assert!(tick(&mut d, at(104_000, 0)).is_empty());
        assert!(tick(&mut d, at(109_999, 5_999)).is_empty());
        let start = tick(&mut d, at(110_000, 6_000));
        assert_eq!(start[0].id, "gw-stops-100000-start");
        let end = feed_at(&mut d, 1, 120_000, at(120_000, 16_000));
        assert_eq!(end[0].id, "gw-stops-100000-end");
    }

    #[test]
    fn a_clock_step_back_gives_no_negative_stop_no_future_date_and_no_repeated_id() {
        let mut d = rule();
        let at = |wall: i64, mono: u64| At {
            time: Millis(wall),
            mono: Mono(mono),
        };
        let mut events = feed_at(&mut d, 1, 1_000_000, at(1_000_000, 0));
        events.extend(feed_at(&mut d, 2, 1_000_000, at(1_000_000, 0)));
        // NTP steps the clock back an hour 2 s into the stop: device times
        // are an hour back, the edge's timeline stands still at 1_002_000.
        let back = |mono: u64| 1_000_000 - 3_600_000 + mono as i64;
        let still = |mono: u64| at(1_002_000, mono);
        events.extend(tick(&mut d, still(10_000)));
        assert_eq!(events.len(), 1, "announced on the monotonic clock, on time");
        events.extend(feed_at(&mut d, 1, back(12_000), still(12_000)));
        // Two more stops before the wall clock has caught up.
        for mono in [20_000u64, 40_000] {
            events.extend(feed_at(&mut d, 2, back(mono), still(mono)));
            events.extend(tick(&mut d, still(mono + 10_000)));
            events.extend(feed_at(
                &mut d,
                1,
                back(mono + 11_000),
                still(mono + 11_000),
            ));
        }
        let intervals: Vec<_> = events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::DowntimeEnded(i) => Some(i.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(intervals.len(), 3, "{events:?}");
        for i in &intervals {
            let end = i.end.expect("ended");
            assert!(end >= i.start, "negative stop: {i:?}");
            assert!(end <= Millis(1_002_000), "dated in the future: {i:?}");
        }
        let ids: std::collections::HashSet<_> =
            intervals.iter().map(|i| i.downtime_id.clone()).collect();
        assert_eq!(ids.len(), 3, "{intervals:?}");
        assert!(ids.contains("gw-stops-1000000-1"), "{ids:?}");
        let all: std::collections::HashSet<_> = events.iter().map(|e| e.id.clone()).collect();
        assert_eq!(all.len(), events.len(), "{events:?}");
    }

    fn with(f: impl FnOnce(&mut DowntimeRule)) -> Downtime {
        let mut r = (*rule().rule).clone();
        f(&mut r);
        Downtime::new(r, DowntimeState::default())
    }

    fn intervals_of(events: &[Event]) -> Vec<(MachineState, i64, i64)> {
        events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::StateInterval(i) => Some((i.state, i.start.0 / 1000, i.end.0 / 1000)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_flicker_shorter_than_the_debounce_neither_ends_nor_splits_a_stop() {
        let mut d = with(|r| r.debounce = Duration::from_secs(2));
        let mut ev = feed(&mut d, 1, 0);
        ev.extend(feed(&mut d, 2, 100));
        ev.extend(tick(&mut d, at_ms(101_999)));
        assert!(d.state.open.is_none(), "not taken before the debounce");
        ev.extend(tick(&mut d, at_ms(102_000)));
        assert_eq!(
            d.state.open.as_ref().map(|o| o.since),
            Some(Millis(100_000)),
            "dated from its first reading"
        );
        ev.extend(tick(&mut d, at_ms(110_000)));
        assert_eq!(
            ev.len(),
            1,
            "announced after min_duration from its start: {ev:?}"
        );
        // A flicker to another stop state and back, and one to running.
        ev.extend(feed(&mut d, 5, 120));
        ev.extend(feed_at(&mut d, 2, 121_500, at_ms(121_500)));
        ev.extend(feed(&mut d, 1, 125));
        ev.extend(feed_at(&mut d, 2, 125_900, at_ms(125_900)));
        ev.extend(tick(&mut d, at_ms(129_000)));
        assert_eq!(ev.len(), 1, "{ev:?}");
        ev.extend(feed(&mut d, 1, 130));
        ev.extend(tick(&mut d, at_ms(131_999)));
        assert_eq!(ev.len(), 1);
        ev.extend(tick(&mut d, at_ms(132_000)));
        let EventBody::DowntimeEnded(i) = &ev[1].body else {
            panic!("{ev:?}")
        };
        assert_eq!((i.start, i.end), (Millis(100_000), Some(Millis(130_000))));
        assert_eq!(i.state, 2);
    }

    #[test]
    fn without_a_debounce_a_flicker_splits_a_stop() {
        let mut d = rule();
        feed(&mut d, 2, 0);
        feed(&mut d, 2, 10);
        let ev = feed(&mut d, 5, 20);
        assert_eq!(ev.len(), 1, "the stop of state 2 ends at the flicker");
    }

    #[test]
    fn an_idle_state_ends_a_stop_and_opens_none() {
        let mut d = with(|r| r.idle = vec![0]);
        feed(&mut d, 2, 0);
        let ev = feed(&mut d, 0, 20);
        let EventBody::DowntimeEnded(i) = &ev[0].body else {
            panic!("{ev:?}")
        };
        assert_eq!(i.end, Some(Millis(20_000)));
        assert!(tick(&mut d, at_ms(200_000)).is_empty(), "idle is no stop");
        assert_eq!(d.state.open, None);
    }

    #[test]
    fn intervals_of_running_idle_and_down_follow_each_other() {
        let mut d = with(|r| {
            r.idle = vec![0];
            r.intervals = true;
        });
        let mut ev = feed(&mut d, 1, 0);
        ev.extend(feed(&mut d, 1, 5));
        ev.extend(feed(&mut d, 2, 10));
        // Another stop reason: the same down interval.
        ev.extend(feed(&mut d, 3, 15));
        ev.extend(feed(&mut d, 0, 30));
        ev.extend(feed(&mut d, 1, 40));
        ev.extend(feed(&mut d, 1, 50));
        use MachineState::*;
        assert_eq!(
            intervals_of(&ev),
            [(Running, 0, 10), (Down, 10, 30), (Idle, 30, 40)]
        );
        let ids: Vec<_> = ev
            .iter()
            .filter(|e| matches!(e.body, EventBody::StateInterval(_)))
            .map(|e| e.id.as_str())
            .collect();
        assert_eq!(
            ids,
            [
                "gw-stops-0-running",
                "gw-stops-10000-down",
                "gw-stops-30000-idle"
            ]
        );
        assert_eq!(
            d.state.interval.as_ref().map(|i| (i.state, i.since)),
            Some((Running, Millis(40_000))),
            "the interval in progress"
        );
        // The stops are unchanged by the intervals: 2 then 3, each its own record.
        let ended = ev
            .iter()
            .filter(|e| matches!(e.body, EventBody::DowntimeEnded(_)))
            .count();
        assert_eq!(
            ended, 1,
            "state 2 lasted 5 s, under min_duration; state 3 15 s"
        );
    }

    #[test]
    fn a_version_2_downtime_state_resumes_its_open_stop() {
        #[derive(Serialize)]
        enum Old {
            _Counter(()),
            Downtime(OldState),
        }
        #[derive(Serialize)]
        struct OldState {
            open: Option<OpenStop>,
            clock: RuleClock,
            code: Option<i64>,
        }
        let open = OpenStop {
            state: 2,
            since: Millis(100_000),
            announced: true,
            seq: 0,
            code: Some(310),
        };
        let mut bytes = vec![2u8];
        bytes.extend(
            postcard::to_stdvec(&Old::Downtime(OldState {
                open: Some(open.clone()),
                clock: RuleClock::default(),
                code: Some(310),
            }))
            .expect("encode"),
        );
        let RuleState::Downtime(s) = RuleState::decode(&bytes).expect("v2 decodes") else {
            panic!("a downtime state")
        };
        assert_eq!((s.open, s.code, s.taken), (Some(open), Some(310), Some(2)));
    }

    mod intervals {
        use super::*;
        use crate::edge::clock::{Now, Timeline};
        use proptest::prelude::*;
        use std::collections::HashMap;

        #[derive(Clone, Debug)]
        enum Op {
            State(i64),
            /// This many 250 ms ticks with no reading.
            Wait(u32),
            Kill,
            Step(i32),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => prop_oneof![Just(1i64), Just(2), Just(3), Just(4)].prop_map(Op::State),
                4 => (1u32..60).prop_map(Op::Wait),
                1 => Just(Op::Kill),
                1 => (-3600i32..3600).prop_map(Op::Step),
            ]
        }

        proptest! {
            #[test]
            fn stops_never_overlap_and_each_gets_one_end(
                ops in prop::collection::vec(op(), 1..150),
            ) {
                let r = rule().rule;
                let mut d = Downtime::new(r.clone(), DowntimeState::default());
                let mut timeline = Timeline::default();
                let (mut wall, mut mono) = (1_780_000_000_000i64, 0u64);
                let mut highest = wall;
                let mut events = Vec::new();
                let mut now = |timeline: &mut Timeline, wall: i64, mono: u64| {
                    highest = highest.max(wall);
                    timeline.at(Now { wall: Millis(wall), mono: Mono(mono) })
                };
                let at = now(&mut timeline, wall, mono);
                events.extend(feed_at(&mut d, 1, wall, at));
                for op in ops.iter().cloned().chain([Op::Wait(1), Op::State(1)]) {
                    match op {
                        Op::State(v) => {
                            (wall, mono) = (wall + 250, mono + 250);
                            let at = now(&mut timeline, wall, mono);
                            events.extend(feed_at(&mut d, v, wall, at));
                        }
                        Op::Wait(n) => {
                            for _ in 0..n {
                                (wall, mono) = (wall + 250, mono + 250);
                                let at = now(&mut timeline, wall, mono);
                                events.extend(tick(&mut d, at));
                            }
                        }
                        Op::Kill => {
                            let bytes = RuleState::Downtime(d.state.clone()).encode().expect("encode");
                            let RuleState::Downtime(s) = RuleState::decode(&bytes).expect("decode") else {
                                panic!("kind changed")
                            };
                            timeline = Timeline::default();
                            if let Some(last) = s.clock.last {
                                timeline.seen(last);
                            }
                            d = Downtime::new(r.clone(), s);
                            mono = 0;
                        }
                        Op::Step(s) => wall += i64::from(s) * 1000,
                    }
                }
                let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id.clone()).collect();
                prop_assert_eq!(ids.len(), events.len(), "an id repeated: {:?}", events);
                // Per interval: one start, then one end, with end >= start.
                let mut seen: HashMap<String, (bool, bool)> = HashMap::new();
                let mut intervals = Vec::new();
                for e in &events {
                    prop_assert!(e.time.0 <= highest, "dated in the future: {:?}", e);
                    match &e.body {
                        EventBody::DowntimeStarted(i) => {
                            let s = seen.entry(i.downtime_id.clone()).or_default();
                            prop_assert!(!s.0 && !s.1, "a second start: {:?}", e);
                            s.0 = true;
                        }
                        EventBody::DowntimeEnded(i) => {
                            let s = seen.entry(i.downtime_id.clone()).or_default();
                            // (A stop that reached min_duration between two
                            // ticks is sent once, whole, at its end.)
                            prop_assert!(!s.1, "a second end: {:?}", e);
                            s.1 = true;
                            let end = i.end.expect("an end has its date");
                            prop_assert!(end >= i.start, "negative stop: {:?}", e);
                            intervals.push((i.start, end));
                        }
                        other => prop_assert!(false, "not a stop: {:?}", other),
                    }
                }
                prop_assert!(seen.values().all(|s| s.1), "a stop left open once running: {:?}", events);
                for w in intervals.windows(2) {
                    prop_assert!(w[1].0 >= w[0].1, "stops overlap: {:?}", intervals);
                }
            }

            #[test]
            fn state_intervals_cover_the_time_without_gap_or_overlap(
                ops in prop::collection::vec(op(), 1..150),
                debounce in prop_oneof![Just(0u64), Just(500), Just(2_000)],
            ) {
                let mut r = (*rule().rule).clone();
                r.idle = vec![3];
                r.intervals = true;
                r.debounce = Duration::from_millis(debounce);
                let mut d = Downtime::new(r.clone(), DowntimeState::default());
                let mut timeline = Timeline::default();
                let (mut wall, mut mono) = (1_780_000_000_000i64, 0u64);
                let first = wall;
                let mut highest = wall;
                let mut events = Vec::new();
                let mut now = |timeline: &mut Timeline, wall: i64, mono: u64| {
                    highest = highest.max(wall);
                    timeline.at(Now { wall: Millis(wall), mono: Mono(mono) })
                };
                let at = now(&mut timeline, wall, mono);
                events.extend(feed_at(&mut d, 1, wall, at));
                for op in ops.iter().cloned().chain([Op::State(1), Op::Wait(10)]) {
                    match op {
                        Op::State(v) => {
                            (wall, mono) = (wall + 250, mono + 250);
                            let at = now(&mut timeline, wall, mono);
                            events.extend(feed_at(&mut d, v, wall, at));
                        }
                        Op::Wait(n) => {
                            for _ in 0..n {
                                (wall, mono) = (wall + 250, mono + 250);
                                let at = now(&mut timeline, wall, mono);
                                events.extend(tick(&mut d, at));
                            }
                        }
                        Op::Kill => {
                            let bytes = RuleState::Downtime(d.state.clone()).encode().expect("encode");
                            let RuleState::Downtime(s) = RuleState::decode(&bytes).expect("decode") else {
                                panic!("kind changed")
                            };
                            prop_assert_eq!(&s, &d.state);
                            timeline = Timeline::default();
                            if let Some(last) = s.clock.last {
                                timeline.seen(last);
                            }
                            d = Downtime::new(r.clone(), s);
                            mono = 0;
                        }
                        Op::Step(s) => wall += i64::from(s) * 1000,
                    }
                }
                let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id.clone()).collect();
                prop_assert_eq!(ids.len(), events.len(), "an id repeated: {:?}", events);
                let mut spans: Vec<(Millis, Millis, MachineState)> = events
                    .iter()
                    .filter_map(|e| match &e.body {
                        EventBody::StateInterval(i) => Some((i.start, i.end, i.state)),
                        _ => None,
                    })
                    .collect();
                // The interval in progress, up to the end of the run.
                if let Some(open) = &d.state.interval {
                    spans.push((open.since, Millis(highest), open.state));
                }
                prop_assert_eq!(spans.first().map(|s| s.0), Some(Millis(first)), "from the first reading");
                for s in &spans {
                    prop_assert!(s.1 >= s.0, "negative interval: {:?}", s);
                    prop_assert!(s.1.0 <= highest, "dated in the future: {:?}", s);
                }
                for w in spans.windows(2) {
                    prop_assert_eq!(w[1].0, w[0].1, "a gap or an overlap: {:?}", spans);
                    prop_assert!(w[1].2 != w[0].2, "two intervals of one state in a row: {:?}", spans);
                }
                // Each stop sent to Odoo lies within down time.
                for e in &events {
                    if let EventBody::DowntimeEnded(i) = &e.body {
                        let end = i.end.expect("an end");
                        prop_assert!(
                            spans.iter().any(|s| s.2 == MachineState::Down && s.0 <= i.start && end <= s.1),
                            "stop {:?} outside down time: {:?}", i, spans
                        );
                    }
                }
            }
        }
    }
}
