//! Production from a part counter: the difference between two readings of a
//! monotonic counter, with wrap and reset detected, times `parts_per_stroke`,
//! gathered into periods so Odoo is written once per period, not per poll.
//!
//! A period opens with the first parts counted after the previous one was
//! reported and is reported (one event per work center) when it has run
//! `report_every` or holds `report_parts` parts, whichever comes first, or
//! when the gateway stops. Its count is part of the rule state, committed
//! with the counter reading that produced it: after a `kill -9` the period
//! resumes where the last commit left it, nothing lost and nothing counted
//! twice.
//!
//! A rule with a `scrap_tag` reads a second counter, of scrapped parts,
//! counted the same way (wrap, reset, `max_step`; no `parts_per_stroke`)
//! into the same period. The period is reported as its good parts (a
//! production event) and its scrap (a scrap event, id `<period>-scrap`),
//! together. When the rule's tag counts every part (`tag_counts =
//! "total"`), good parts are the total less the scrap; scrap counted before
//! the parts it was taken from (the two tags are read apart) waits for them
//! in the next period, so good parts are never negative and every part is
//! reported once, as good or as scrap.

use super::clock::{event_id, At, Held, RuleClock};
use crate::config::{ProductionRule, TagCounts};
use crate::model::{Event, EventBody, Millis, Production, Quality, Sample, Scrap};
use serde::{Deserialize, Serialize};

/// What survives a restart: the last counter reading (parts made while the
/// gateway was down are counted once it is back), the period not yet
/// reported, and the rule's dates and ids.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterState {
    pub last: Option<u64>,
    pub period: Option<Period>,
    pub clock: RuleClock,
    /// The scrap counter's last reading.
    pub scrap_last: Option<u64>,
    /// Scrap beyond the parts of the periods reported so far
    /// (`tag_counts = "total"`): reported with the next parts.
    pub scrap_owed: u64,
}

/// Parts counted and not yet reported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Period {
    /// Date of the first parts: with `seq`, the event's id.
    pub start: Millis,
    pub seq: u32,
    /// Parts of the rule's own tag (every part, or good parts only).
    pub quantity: u64,
    /// Counter readings the quantity was derived from, for audit.
    pub counter_from: u64,
    pub counter_to: u64,
    /// Parts of the scrap counter, and its readings.
    pub scrap: u64,
    pub scrap_from: u64,
    pub scrap_to: u64,
}

impl Period {
    /// Every part of the period, good and scrap.
    fn parts(&self, counts: Option<TagCounts>) -> u64 {
        match counts {
            Some(TagCounts::Good) => self.quantity.saturating_add(self.scrap),
            _ => self.quantity,
        }
    }
}

/// Which counter a reading is of.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Parts,
    Scrap,
}

pub struct Counter {
    pub rule: std::sync::Arc<ProductionRule>,
    pub state: CounterState,
    /// How long the open period has run, on the monotonic clock; rebuilt
    /// from `period.start` after a restart.
    held: Option<Held>,
}

impl Counter {
    pub fn new(rule: impl Into<std::sync::Arc<ProductionRule>>, state: CounterState) -> Self {
        let rule = rule.into();
        Counter {
            rule,
            state,
            held: None,
        }
    }

    /// Feed one reading of the part counter; pushes any event and says
    /// whether the state changed.
    pub fn on_sample(
        &mut self,
        gateway: &str,
        sample: &Sample,
        at: At,
        events: &mut Vec<Event>,
    ) -> bool {
        self.on_reading(Which::Parts, gateway, sample, at, events)
    }

    /// Feed one reading of the `scrap_tag` counter, likewise.
    pub fn on_scrap(
        &mut self,
        gateway: &str,
        sample: &Sample,
        at: At,
        events: &mut Vec<Event>,
    ) -> bool {
        self.on_reading(Which::Scrap, gateway, sample, at, events)
    }

    fn on_reading(
        &mut self,
        which: Which,
        gateway: &str,
        sample: &Sample,
        at: At,
        events: &mut Vec<Event>,
    ) -> bool {
        let tag = match (which, &self.rule.scrap) {
            (Which::Scrap, Some(s)) => s.tag.as_str(),
            _ => self.rule.tag.as_str(),
        };
        if sample.quality != Quality::Good {
            return self.on_tick(gateway, at, events);
        }
        let Some(now) = sample.value.as_u64() else {
            tracing::warn!(rule = %self.rule.name, tag = %tag, value = %sample.value,
                "counter tag gave a value that is not a non-negative integer; ignored");
            return self.on_tick(gateway, at, events);
        };
        let last = match which {
            Which::Parts => &mut self.state.last,
            Which::Scrap => &mut self.state.scrap_last,
        };
        let Some(before) = *last else {
            *last = Some(now);
            tracing::info!(rule = %self.rule.name, tag = %tag, counter = now, "counter baseline taken");
            return true;
        };
        if now == before {
            return self.on_tick(gateway, at, events);
        }
        *last = Some(now);
        let wraps_at = match which {
            Which::Parts => self.rule.wraps_at,
            Which::Scrap => self.rule.scrap.as_ref().and_then(|s| s.wraps_at),
        };
        let strokes = self.delta(wraps_at, before, now);
        if let Some(max) = self.rule.max_step {
            if strokes > max {
                tracing::warn!(rule = %self.rule.name, tag = %tag, from = before, to = now, quantity = strokes, max_step = max,
                    "counter jump larger than max_step: re-based, nothing posted");
                self.on_tick(gateway, at, events);
                return true;
            }
        }
        // A period that has run its time ends before these parts: they
        // belong to the next one.
        self.on_tick(gateway, at, events);
        let quantity = match which {
            Which::Parts => strokes.saturating_mul(self.rule.parts_per_stroke),
            Which::Scrap => strokes,
        };
        if quantity > 0 {
            self.add(which, sample.time, at, quantity, before, now);
        }
        let counts = self.rule.scrap.as_ref().map(|s| s.counts);
        let full = self
            .rule
            .report_parts
            .zip(self.state.period.as_ref())
            .is_some_and(|(n, p)| p.parts(counts) >= n);
        if full {
            self.close(gateway, at, events);
        }
        true
    }

    /// Report the open period if it has run `report_every`.
    pub fn on_tick(&mut self, gateway: &str, at: At, events: &mut Vec<Event>) -> bool {
        let Some(period) = &self.state.period else {
            return false;
        };
        let Some(every) = self.rule.report_every else {
            return false;
        };
        let held = *self
            .held
            .get_or_insert_with(|| Held::resume(period.start, at));
        if u128::from(held.ms(at)) < every.as_millis() {
            return false;
        }
        self.close(gateway, at, events);
        true
    }

    /// Report the open period now (graceful stop).
    pub fn flush(&mut self, gateway: &str, at: At, events: &mut Vec<Event>) -> bool {
        if self.state.period.is_none() {
            return false;
        }
        self.close(gateway, at, events);
        true
    }

    fn add(&mut self, which: Which, time: Millis, at: At, quantity: u64, from: u64, to: u64) {
        let (parts, scrap) = match which {
            Which::Parts => (quantity, 0),
            Which::Scrap => (0, quantity),
        };
        match &mut self.state.period {
            Some(p) => {
                // Keep the rule's dates moving with its parts.
                self.state.clock.date(time, at);
                p.quantity = p.quantity.saturating_add(parts);
                p.scrap = p.scrap.saturating_add(scrap);
                match which {
                    Which::Parts => p.counter_to = to,
                    Which::Scrap => p.scrap_to = to,
                }
            }
            None => {
                let start = self.state.clock.date(time, at);
                let seq = self.state.clock.sequence(start);
                self.held = Some(Held::start(at));
                // The other counter's reading, for the audit trail.
                let (c, s) = (
                    self.state.last.unwrap_or(0),
                    self.state.scrap_last.unwrap_or(0),
                );
                let (counter_from, scrap_from) = match which {
                    Which::Parts => (from, s),
                    Which::Scrap => (c, from),
                };
                self.state.period = Some(Period {
                    start,
                    seq,
                    quantity: parts,
                    counter_from,
                    counter_to: if which == Which::Parts { to } else { c },
                    scrap,
                    scrap_from,
                    scrap_to: if which == Which::Scrap { to } else { s },
                });
            }
        }
    }

    fn close(&mut self, gateway: &str, at: At, events: &mut Vec<Event>) {
        self.held = None;
        let Some(p) = self.state.period.take() else {
            return;
        };
        let time = self.state.clock.date(at.time, at);
        let id = event_id(gateway, &self.rule.name, p.start, p.seq);
        let (good, scrap) = match self.rule.scrap.as_ref().map(|s| s.counts) {
            None | Some(TagCounts::Good) => (p.quantity, p.scrap),
            Some(TagCounts::Total) => {
                let owed = p.scrap.saturating_add(self.state.scrap_owed);
                let scrap = owed.min(p.quantity);
                self.state.scrap_owed = owed - scrap;
                (p.quantity - scrap, scrap)
            }
        };
        if good > 0 || self.rule.scrap.is_none() {
            events.push(Event {
                id: id.clone(),
                rule: self.rule.name.clone(),
                time,
                body: EventBody::Production(Production {
                    workcenter: self.rule.workcenter.clone(),
                    quantity: good,
                    counter_from: p.counter_from,
                    counter_to: p.counter_to,
                }),
            });
        }
        if scrap > 0 {
            events.push(Event {
                id: format!("{id}-scrap"),
                rule: self.rule.name.clone(),
                time,
                body: EventBody::Scrap(Scrap {
                    workcenter: self.rule.workcenter.clone(),
                    quantity: scrap,
                    production_id: (good > 0).then_some(id),
                    counter_from: p.scrap_from,
                    counter_to: p.scrap_to,
                }),
            });
        }
    }

    /// Strokes between two readings. A drop is a wrap when the counter was
    /// in its top tenth and is now in its bottom tenth; any other drop is a
    /// reset to zero, after which `now` strokes were made.
    fn delta(&self, wraps_at: Option<u64>, last: u64, now: u64) -> u64 {
        if now > last {
            return now - last;
        }
        match wraps_at {
            Some(max) if last > max / 10 * 9 && now < max / 10 => (max - last) + now + 1,
            _ => {
                tracing::info!(rule = %self.rule.name, from = last, to = now, "counter reset detected");
                now
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::clock::{Mono, Now, Timeline};
    use crate::edge::testing::{at, reading};
    use crate::edge::RuleState;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::time::Duration;

    fn sample(value: u64, at: i64) -> Sample {
        reading(crate::model::Value::UInt(value), at)
    }

    fn rule(
        wraps_at: Option<u64>,
        max_step: Option<u64>,
        every: Option<u64>,
        parts: Option<u64>,
    ) -> ProductionRule {
        ProductionRule {
            name: "parts".into(),
            tag: "c".into(),
            workcenter: "WC".into(),
            wraps_at,
            max_step,
            report_every: every.map(Duration::from_millis),
            report_parts: parts,
            parts_per_stroke: 1,
            scrap: None,
            lane: None,
        }
    }

    fn counter(wraps_at: Option<u64>, max_step: Option<u64>) -> Counter {
        // One event per change, as before aggregation.
        Counter::new(
            rule(wraps_at, max_step, None, Some(1)),
            CounterState::default(),
        )
    }

    fn feed(c: &mut Counter, value: u64, ms: i64) -> Vec<Event> {
        let mut ev = Vec::new();
        c.on_sample("gw", &sample(value, ms), at(ms), &mut ev);
        ev
    }

    fn tick(c: &mut Counter, ms: i64) -> Vec<Event> {
        let mut ev = Vec::new();
        c.on_tick("gw", at(ms), &mut ev);
        ev
    }

    fn qty(events: &[Event]) -> Vec<u64> {
        events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::Production(p) => Some(p.quantity),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn first_reading_is_a_baseline_then_deltas() {
        let mut c = counter(Some(65535), None);
        assert!(feed(&mut c, 100, 1).is_empty());
        assert_eq!(c.state.last, Some(100));
        assert!(feed(&mut c, 100, 2).is_empty());
        assert_eq!(qty(&feed(&mut c, 105, 3)), [5]);
    }

    #[test]
    fn wrap_and_reset() {
        let mut c = counter(Some(65535), None);
        feed(&mut c, 65530, 1);
        assert_eq!(qty(&feed(&mut c, 4, 2)), [10]);
        assert_eq!(qty(&feed(&mut c, 2, 3)), [2], "reset counts from zero");
    }

    #[test]
    fn implausible_jump_is_not_production() {
        let mut c = counter(None, Some(100));
        feed(&mut c, 10, 1);
        assert!(feed(&mut c, 5000, 2).is_empty());
        assert_eq!(c.state.last, Some(5000));
        assert_eq!(qty(&feed(&mut c, 5003, 3)), [3]);
    }

    #[test]
    fn parts_per_stroke_scales_the_count() {
        let mut r = rule(Some(65535), None, None, Some(1));
        r.parts_per_stroke = 4;
        let mut c = Counter::new(r, CounterState::default());
        feed(&mut c, 65534, 1);
        let ev = feed(&mut c, 1, 2);
        assert_eq!(qty(&ev), [12], "3 strokes across the wrap, 4 parts each");
        let EventBody::Production(p) = &ev[0].body else {
            panic!()
        };
        assert_eq!((p.counter_from, p.counter_to), (65534, 1));
    }

    #[test]
    fn event_id_is_deterministic() {
        let mut a = counter(None, None);
        let mut b = counter(None, None);
        for c in [&mut a, &mut b] {
            feed(c, 1, 1);
        }
        let ea = feed(&mut a, 2, 7);
        let eb = feed(&mut b, 2, 7);
        assert_eq!(ea, eb);
        assert_eq!(ea[0].id, "gw-parts-7");
    }

    #[test]
    fn a_period_is_reported_by_the_clock_when_no_sample_comes() {
        let mut c = Counter::new(
            rule(None, None, Some(30_000), None),
            CounterState::default(),
        );
        feed(&mut c, 0, 0);
        for s in 1..=10u64 {
            assert!(feed(&mut c, s, 1_000 * s as i64).is_empty());
        }
        assert_eq!(
            c.state.period.as_ref().map(|p| p.quantity),
            Some(10),
            "the open count is in the state"
        );
        // The press stopped; the source sends nothing more.
        assert!(
            tick(&mut c, 30_999).is_empty(),
            "29.999 s after the period opened"
        );
        let ev = tick(&mut c, 31_000);
        assert_eq!(qty(&ev), [10]);
        assert_eq!(ev[0].id, "gw-parts-1000", "named after the period's start");
        assert_eq!(ev[0].time, Millis(31_000));
        assert_eq!(c.state.period, None);
        assert!(tick(&mut c, 90_000).is_empty(), "no empty periods");
    }

    #[test]
    fn one_event_per_period_while_parts_flow() {
        let mut c = Counter::new(
            rule(None, None, Some(30_000), None),
            CounterState::default(),
        );
        feed(&mut c, 0, 0);
        let mut events = Vec::new();
        // One part a second for 95 s.
        for s in 1..=95u64 {
            events.extend(feed(&mut c, s, 1_000 * s as i64));
            events.extend(tick(&mut c, 1_000 * s as i64 + 500));
        }
        assert_eq!(qty(&events), [30, 30, 30], "{events:?}");
        assert_eq!(c.state.period.as_ref().map(|p| p.quantity), Some(5));
        let ids: HashSet<_> = events.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn a_period_is_reported_by_parts() {
        let mut c = Counter::new(rule(None, None, None, Some(100)), CounterState::default());
        feed(&mut c, 0, 0);
        let mut events = Vec::new();
        for s in 1..=250u64 {
            events.extend(feed(&mut c, s, s as i64 * 10));
            events.extend(tick(&mut c, s as i64 * 10 + 1_000_000));
        }
        assert_eq!(qty(&events), [100, 100], "time alone reports nothing");
        let ev = feed(&mut c, 400, 5_000);
        assert_eq!(qty(&ev), [200], "the open 50 and a step of 150, whole");
    }

    #[test]
    fn parts_or_time_whichever_first() {
        let mut c = Counter::new(
            rule(None, None, Some(10_000), Some(50)),
            CounterState::default(),
        );
        feed(&mut c, 0, 0);
        assert_eq!(qty(&feed(&mut c, 60, 1_000)), [60]);
        feed(&mut c, 61, 2_000);
        assert_eq!(qty(&tick(&mut c, 12_000)), [1]);
    }

    #[test]
    fn a_graceful_stop_reports_the_open_period() {
        let mut c = Counter::new(
            rule(None, None, Some(30_000), None),
            CounterState::default(),
        );
        feed(&mut c, 0, 0);
        feed(&mut c, 7, 1_000);
        let mut ev = Vec::new();
        assert!(c.flush("gw", at(2_000), &mut ev));
        assert_eq!(qty(&ev), [7]);
        assert!(!c.flush("gw", at(3_000), &mut ev), "nothing left");
    }

    #[test]
    fn a_restart_mid_period_resumes_its_count() {
        let r = rule(None, None, Some(30_000), None);
        let mut c = Counter::new(r.clone(), CounterState::default());
        feed(&mut c, 0, 0);
        feed(&mut c, 4, 1_000);
        // kill -9: only the committed state survives.
        let bytes = RuleState::Counter(c.state.clone())
            .encode()
            .expect("encode");
        let RuleState::Counter(state) = RuleState::decode(&bytes).expect("decode") else {
            panic!()
        };
        let mut c = Counter::new(r, state);
        // The new process's monotonic clock starts again at 0.
        let mut ev = Vec::new();
        let later = |ms: i64, mono: u64| At {
            time: Millis(ms),
            mono: Mono(mono),
        };
        c.on_sample("gw", &sample(6, 20_000), later(20_000, 0), &mut ev);
        assert!(ev.is_empty());
        c.on_tick("gw", later(30_999, 10_999), &mut ev);
        assert!(ev.is_empty(), "29.999 s since the period opened");
        c.on_tick("gw", later(31_000, 11_000), &mut ev);
        assert_eq!(qty(&ev), [6], "4 before the kill and 2 after, once");
        assert_eq!(ev[0].id, "gw-parts-1000");
    }

    #[test]
    fn a_clock_step_back_neither_backdates_nor_repeats_ids() {
        let mut c = Counter::new(rule(None, None, Some(1_000), None), CounterState::default());
        let mut ev = Vec::new();
        let step = |wall: i64, mono: u64| At {
            time: Millis(wall),
            mono: Mono(mono),
        };
        c.on_sample("gw", &sample(0, 100_000), step(100_000, 0), &mut ev);
        c.on_sample("gw", &sample(1, 100_500), step(100_500, 500), &mut ev);
        c.on_tick("gw", step(101_500, 1_500), &mut ev);
        // NTP steps the clock back an hour. The timeline stands still at
        // 101_500 (the edge's own `Timeline`); device times are an hour back.
        for (i, mono) in [2_000u64, 3_600, 5_200].into_iter().enumerate() {
            let wall = 101_500 - 3_600_000 + mono as i64;
            let at = step(101_500, mono);
            c.on_sample("gw", &sample(2 + i as u64, wall), at, &mut ev);
            c.on_tick("gw", step(101_500, mono + 1_000), &mut ev);
        }
        assert_eq!(qty(&ev), [1, 1, 1, 1], "periods still end on time");
        let ids: HashSet<_> = ev.iter().map(|e| &e.id).collect();
        assert_eq!(ids.len(), ev.len(), "{ev:?}");
        assert!(ev.windows(2).all(|w| w[0].time <= w[1].time), "{ev:?}");
        assert!(ev.iter().all(|e| e.time <= Millis(101_500)), "{ev:?}");
        assert_eq!(ev[2].id, "gw-parts-101500-1");
    }

    fn scrap_rule(counts: TagCounts, every: Option<u64>, parts: Option<u64>) -> ProductionRule {
        ProductionRule {
            scrap: Some(crate::config::ScrapCounter {
                tag: "s".into(),
                wraps_at: Some(65535),
                counts,
            }),
            ..rule(Some(65535), Some(1000), every, parts)
        }
    }

    fn scrap_sample(value: u64, at: i64) -> Sample {
        Sample {
            tag: crate::model::TagId::of(1),
            ..sample(value, at)
        }
    }

    fn feed_scrap(c: &mut Counter, value: u64, ms: i64) -> Vec<Event> {
        let mut ev = Vec::new();
        c.on_scrap("gw", &scrap_sample(value, ms), at(ms), &mut ev);
        ev
    }

    fn scrapped(events: &[Event]) -> Vec<u64> {
        events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::Scrap(s) => Some(s.quantity),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn total_and_scrap_counters_give_good_parts_and_scrap_in_one_period() {
        let mut c = Counter::new(
            scrap_rule(TagCounts::Total, Some(10_000), None),
            CounterState::default(),
        );
        feed(&mut c, 100, 0);
        feed_scrap(&mut c, 7, 0);
        feed(&mut c, 110, 1_000);
        feed_scrap(&mut c, 9, 1_500);
        feed(&mut c, 120, 2_000);
        let ev = tick(&mut c, 11_000);
        assert_eq!(qty(&ev), [18], "20 parts, 2 of them scrap");
        assert_eq!(scrapped(&ev), [2]);
        assert_eq!(ev[0].id, "gw-parts-1000");
        assert_eq!(ev[1].id, "gw-parts-1000-scrap");
        let EventBody::Scrap(s) = &ev[1].body else {
            panic!("{ev:?}")
        };
        assert_eq!(s.production_id.as_deref(), Some("gw-parts-1000"));
        assert_eq!((s.counter_from, s.counter_to), (7, 9));
        assert_eq!(ev[0].time, ev[1].time, "reported together");
    }

    #[test]
    fn good_and_scrap_counters_report_each_as_counted() {
        let mut c = Counter::new(
            scrap_rule(TagCounts::Good, None, Some(10)),
            CounterState::default(),
        );
        feed(&mut c, 0, 0);
        feed_scrap(&mut c, 65534, 0);
        feed(&mut c, 6, 1_000);
        // The scrap counter wraps: 3 parts.
        let ev = feed_scrap(&mut c, 1, 2_000);
        assert!(ev.is_empty(), "9 parts, under report_parts: {ev:?}");
        let ev = feed(&mut c, 7, 3_000);
        assert_eq!((qty(&ev), scrapped(&ev)), (vec![7], vec![3]));
    }

    #[test]
    fn a_period_of_scrap_only_sends_no_empty_production() {
        let mut c = Counter::new(
            scrap_rule(TagCounts::Good, Some(5_000), None),
            CounterState::default(),
        );
        feed(&mut c, 0, 0);
        feed_scrap(&mut c, 0, 0);
        feed_scrap(&mut c, 4, 1_000);
        let ev = tick(&mut c, 6_000);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(scrapped(&ev), [4]);
        let EventBody::Scrap(s) = &ev[0].body else {
            panic!()
        };
        assert_eq!(s.production_id, None);
    }

    #[test]
    fn scrap_read_before_its_parts_waits_for_them() {
        let mut c = Counter::new(
            scrap_rule(TagCounts::Total, Some(5_000), None),
            CounterState::default(),
        );
        feed(&mut c, 0, 0);
        feed_scrap(&mut c, 0, 0);
        feed(&mut c, 2, 1_000);
        // 3 scrapped, but the total was read before the last of them.
        feed_scrap(&mut c, 3, 1_100);
        let ev = tick(&mut c, 6_000);
        assert_eq!((qty(&ev), scrapped(&ev)), (vec![], vec![2]));
        assert_eq!(c.state.scrap_owed, 1);
        feed(&mut c, 10, 7_000);
        let ev = tick(&mut c, 12_000);
        assert_eq!(
            (qty(&ev), scrapped(&ev)),
            (vec![7], vec![1]),
            "10 parts in all, 3 scrap"
        );
        assert_eq!(c.state.scrap_owed, 0);
    }

    #[test]
    fn the_scrap_counter_has_its_own_baseline_reset_and_max_step() {
        let mut c = Counter::new(
            scrap_rule(TagCounts::Good, None, Some(1)),
            CounterState::default(),
        );
        feed(&mut c, 50, 0);
        assert!(feed_scrap(&mut c, 40, 0).is_empty(), "a baseline");
        assert_eq!(c.state.scrap_last, Some(40));
        assert_eq!(
            scrapped(&feed_scrap(&mut c, 2, 1_000)),
            [2],
            "a reset counts from zero"
        );
        assert!(feed_scrap(&mut c, 5_000, 2_000).is_empty(), "over max_step");
        assert_eq!(scrapped(&feed_scrap(&mut c, 5_001, 3_000)), [1]);
        assert_eq!(c.state.last, Some(50), "the part counter is untouched");
    }

    #[test]
    fn a_restart_mid_period_keeps_both_counts() {
        let r = scrap_rule(TagCounts::Total, Some(30_000), None);
        let mut c = Counter::new(r.clone(), CounterState::default());
        feed(&mut c, 0, 0);
        feed_scrap(&mut c, 0, 0);
        feed(&mut c, 10, 1_000);
        feed_scrap(&mut c, 1, 1_000);
        let bytes = RuleState::Counter(c.state.clone())
            .encode()
            .expect("encode");
        let RuleState::Counter(state) = RuleState::decode(&bytes).expect("decode") else {
            panic!()
        };
        let mut c = Counter::new(r, state);
        feed(&mut c, 12, 2_000);
        feed_scrap(&mut c, 2, 2_000);
        let mut ev = Vec::new();
        c.flush("gw", at(3_000), &mut ev);
        assert_eq!((qty(&ev), scrapped(&ev)), (vec![10], vec![2]));
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// The press makes this many strokes (the counter wraps at u16).
        Make(u16),
        /// The PLC's counter is reset and then makes this many strokes.
        Reset(u8),
        /// The gateway reads the counter.
        Read,
        Tick,
        /// kill -9: the rule restarts from its committed state.
        Kill,
        /// Graceful stop: the open period is reported, then a restart.
        Stop,
        /// The wall clock steps by this many seconds.
        Step(i32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u16..3000).prop_map(Op::Make),
            1 => (0u8..50).prop_map(Op::Reset),
            4 => Just(Op::Read),
            3 => Just(Op::Tick),
            1 => Just(Op::Kill),
            1 => Just(Op::Stop),
            1 => (-7200i32..7200).prop_map(Op::Step),
        ]
    }

    fn now(t: &mut Timeline, wall: i64, mono: u64) -> At {
        t.at(Now {
            wall: Millis(wall),
            mono: Mono(mono),
        })
    }

    #[derive(Clone, Debug)]
    enum ScrapOp {
        /// The press makes this many parts, this many of them scrap.
        Make(u16, u16),
        ReadParts,
        ReadScrap,
        Tick,
        Kill,
    }

    fn scrap_op() -> impl Strategy<Value = ScrapOp> {
        prop_oneof![
            4 => (0u16..2000, 0u16..100).prop_map(|(n, s)| ScrapOp::Make(n, s.min(n))),
            3 => Just(ScrapOp::ReadParts),
            3 => Just(ScrapOp::ReadScrap),
            3 => Just(ScrapOp::Tick),
            1 => Just(ScrapOp::Kill),
        ]
    }

    proptest! {
        #[test]
        fn every_part_is_reported_once_as_good_or_as_scrap(
            start in 0u16..=u16::MAX,
            scrap_start in 0u16..=u16::MAX,
            total in any::<bool>(),
            every in 1u64..20_000,
            ops in prop::collection::vec(scrap_op(), 1..200),
        ) {
            let counts = if total { TagCounts::Total } else { TagCounts::Good };
            let mut r = scrap_rule(counts, Some(every), None);
            r.max_step = None;
            let mut c = Counter::new(r.clone(), CounterState::default());
            let (mut parts_reg, mut scrap_reg) = (start, scrap_start);
            let (mut made, mut scrap_made) = (0u64, 0u64);
            let mut ms = 0i64;
            let (mut parts_unread, mut scrap_unread) = (0u64, 0u64);
            let mut events = Vec::new();
            c.on_sample("gw", &sample(u64::from(parts_reg), ms), at(ms), &mut events);
            c.on_scrap("gw", &scrap_sample(u64::from(scrap_reg), ms), at(ms), &mut events);
            for op in ops {
                ms += 250;
                match op {
                    ScrapOp::Make(n, k) => {
                        // Read before a counter has moved a tenth of its
                        // width unread (more would read as a reset).
                        if parts_unread + u64::from(n) > 5000 {
                            c.on_sample("gw", &sample(u64::from(parts_reg), ms), at(ms), &mut events);
                            parts_unread = 0;
                        }
                        if scrap_unread + u64::from(k) > 5000 {
                            c.on_scrap("gw", &scrap_sample(u64::from(scrap_reg), ms), at(ms), &mut events);
                            scrap_unread = 0;
                        }
                        parts_unread += u64::from(n);
                        scrap_unread += u64::from(k);
                        // The part counter counts every part, or the good ones.
                        let counted = if total { n } else { n - k };
                        parts_reg = parts_reg.wrapping_add(counted);
                        scrap_reg = scrap_reg.wrapping_add(k);
                        made += u64::from(n);
                        scrap_made += u64::from(k);
                    }
                    ScrapOp::ReadParts => {
                        c.on_sample("gw", &sample(u64::from(parts_reg), ms), at(ms), &mut events);
                        parts_unread = 0;
                    }
                    ScrapOp::ReadScrap => {
                        c.on_scrap("gw", &scrap_sample(u64::from(scrap_reg), ms), at(ms), &mut events);
                        scrap_unread = 0;
                    }
                    ScrapOp::Tick => {
                        c.on_tick("gw", at(ms), &mut events);
                    }
                    ScrapOp::Kill => {
                        let bytes = RuleState::Counter(c.state.clone()).encode().expect("encode");
                        let RuleState::Counter(s) = RuleState::decode(&bytes).expect("decode") else {
                            panic!("kind changed")
                        };
                        prop_assert_eq!(&s, &c.state);
                        c = Counter::new(r.clone(), s);
                    }
                }
            }
            // Read both, then a graceful stop: every part is counted.
            ms += 250;
            c.on_sample("gw", &sample(u64::from(parts_reg), ms), at(ms), &mut events);
            c.on_scrap("gw", &scrap_sample(u64::from(scrap_reg), ms), at(ms), &mut events);
            c.flush("gw", at(ms + 1), &mut events);
            let good: u64 = qty(&events).iter().sum();
            let scrap: u64 = scrapped(&events).iter().sum();
            prop_assert!(qty(&events).iter().chain(scrapped(&events).iter()).all(|&q| q > 0), "{:?}", events);
            prop_assert_eq!(good + scrap, made, "parts lost or doubled: {:?}", events);
            prop_assert_eq!(scrap + c.state.scrap_owed, scrap_made, "scrap lost or doubled");
            // (Scrap read after its part was reported waits for the next
            // parts: `scrap_owed`, counted above.)
            let ids: HashSet<_> = events.iter().map(|e| e.id.clone()).collect();
            prop_assert_eq!(ids.len(), events.len(), "an id repeated");
        }
    }

    proptest! {
        #[test]
        fn counted_parts_are_never_lost_doubled_or_negative(
            start in 0u16..=u16::MAX,
            every in prop::option::of(1u64..20_000),
            parts in prop::option::of(1u64..500),
            ops in prop::collection::vec(op(), 1..200),
        ) {
            let r = rule(Some(u64::from(u16::MAX)), None, every.or(Some(30_000)), parts);
            let mut c = Counter::new(r.clone(), CounterState::default());
            let mut timeline = Timeline::default();
            let (mut wall, mut mono) = (1_780_000_000_000i64, 0u64);
            let mut highest = wall;
            let mut device = start;
            let mut made = 0u64;
            let mut events = Vec::new();
            // The baseline; parts count from here.
            let at = now(&mut timeline, wall, mono);
            c.on_sample("gw", &sample(u64::from(device), wall), at, &mut events);
            for op in ops {
                mono += 250;
                wall += 250;
                highest = highest.max(wall);
                let at = now(&mut timeline, wall, mono);
                match op {
                    Op::Make(n) => {
                        // Under a tenth of the width: a wrap is seen as one.
                        device = device.wrapping_add(n);
                        made += u64::from(n);
                        c.on_sample("gw", &sample(u64::from(device), wall), at, &mut events);
                    }
                    Op::Reset(n) => {
                        // Only a drop from below the top tenth reads as a reset.
                        if device > u16::from(n) && u64::from(device) <= u64::from(u16::MAX) / 10 * 9 {
                            device = u16::from(n);
                            made += u64::from(n);
                            c.on_sample("gw", &sample(u64::from(device), wall), at, &mut events);
                        }
                    }
                    Op::Read => {
                        c.on_sample("gw", &sample(u64::from(device), wall), at, &mut events);
                    }
                    Op::Tick => {
                        c.on_tick("gw", at, &mut events);
                    }
                    Op::Kill | Op::Stop => {
                        if matches!(op, Op::Stop) {
                            c.flush("gw", at, &mut events);
                        }
                        let bytes = RuleState::Counter(c.state.clone()).encode().expect("encode");
                        let RuleState::Counter(s) = RuleState::decode(&bytes).expect("decode") else {
                            panic!("kind changed")
                        };
                        prop_assert_eq!(&s, &c.state);
                        // A new process: its timeline starts from the stored
                        // dates, its monotonic clock from 0.
                        timeline = Timeline::default();
                        if let Some(last) = s.clock.last {
                            timeline.seen(last);
                        }
                        c = Counter::new(r.clone(), s);
                        mono = 0;
                    }
                    Op::Step(s) => wall += i64::from(s) * 1000,
                }
            }
            let reported: u64 = qty(&events).iter().sum();
            let open = c.state.period.as_ref().map_or(0, |p| p.quantity);
            prop_assert_eq!(reported + open, made);
            prop_assert!(qty(&events).iter().all(|&q| q > 0));
            let ids: HashSet<_> = events.iter().map(|e| e.id.clone()).collect();
            prop_assert_eq!(ids.len(), events.len(), "an id repeated");
            prop_assert!(events.windows(2).all(|w| w[0].time <= w[1].time), "dated backwards");
            prop_assert!(events.iter().all(|e| e.time.0 <= highest), "dated in the future");
        }
    }
}
