//! Tumbling windows: a tag summarised per period (`every`), for signals
//! that matter as a trend rather than as each reading (an oven's
//! temperature per hour, a line's air pressure per shift).
//!
//! Windows are aligned to the wall clock on the edge's timeline (an
//! `every = "1h"` window runs 14:00 to 15:00 UTC), so the same samples give
//! the same windows and ids on any gateway. A window closes when a sample
//! dated past its end arrives or when a tick finds the timeline past it
//! (a report-by-exception source may be silent). A sample dated before the
//! open window (a device clock behind ours) counts in the open window: a
//! closed window is never reopened.
//!
//! Each reading holds until the next one or the window's end; the
//! time-weighted mean weighs each by how long it held. A bad-quality
//! reading ends the hold (time with no valid value is not weighed) and is
//! not counted. A value still held at a window's end carries into the
//! next window, so a window with no reading but a held value still has a
//! time-weighted mean (the value did not change). The carry is kept only
//! within one run of the gateway: what the value was while the gateway was
//! down is not known.

use super::clock::{event_id, At, RuleClock};
use crate::config::WindowRule;
use crate::model::{Event, EventBody, Millis, Quality, Sample, Summary};
use serde::{Deserialize, Serialize};

/// What survives a restart: the open window and what it has seen.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    pub clock: RuleClock,
    /// Start of the open window (a multiple of `every` since the epoch).
    pub open: Option<Millis>,
    pub acc: Acc,
    /// The last good value and the date since which it is weighed.
    pub held: Option<(f64, Millis)>,
}

/// A window's running figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Acc {
    pub count: u64,
    pub sum: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub first: Option<f64>,
    pub last: Option<f64>,
    /// Σ value × milliseconds held, and the milliseconds.
    pub weighted: f64,
    pub weighted_ms: u64,
}

pub struct Window {
    pub rule: std::sync::Arc<WindowRule>,
    pub state: WindowState,
    /// The held value may carry into the next window (see the module doc).
    live: bool,
}

impl Window {
    pub fn new(rule: impl Into<std::sync::Arc<WindowRule>>, state: WindowState) -> Self {
        let rule = rule.into();
        Window {
            rule,
            state,
            live: false,
        }
    }

    fn every_ms(&self) -> i64 {
        i64::try_from(self.rule.every.as_millis())
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// Start of the window holding `t`.
    fn start_of(&self, t: Millis) -> Millis {
        Millis(t.0.div_euclid(self.every_ms()) * self.every_ms())
    }

    pub fn on_sample(
        &mut self,
        gateway: &str,
        sample: &Sample,
        at: At,
        events: &mut Vec<Event>,
    ) -> bool {
        let value = match (&sample.quality, sample.value.as_f64()) {
            (Quality::Good, Some(v)) => Some(v),
            (Quality::Good, None) => {
                tracing::warn!(rule = %self.rule.name, tag = %self.rule.tag, value = %sample.value,
                    "window tag gave a value that is not a number; ignored");
                return false;
            }
            _ => None,
        };
        let t = self.state.clock.date(sample.time, at);
        self.close_before(gateway, t, events);
        let start = self.start_of(t);
        let open = *self.state.open.get_or_insert(start);
        // The previous value held until now.
        if let Some((v, since)) = self.state.held.take() {
            weigh(&mut self.state.acc, v, since.max(open), t);
        }
        if let Some(v) = value {
            let a = &mut self.state.acc;
            a.count += 1;
            a.sum += v;
            a.min = Some(a.min.map_or(v, |m| m.min(v)));
            a.max = Some(a.max.map_or(v, |m| m.max(v)));
            a.first.get_or_insert(v);
            a.last = Some(v);
            self.state.held = Some((v, t));
            self.live = true;
        }
        true
    }

    /// Close the open window once the timeline has passed its end.
    pub fn on_tick(&mut self, gateway: &str, at: At, events: &mut Vec<Event>) -> bool {
        let before = events.len();
        self.close_before(gateway, at.time, events);
        events.len() > before
    }

    /// Close every window that ends at or before `t`, opening the next
    /// with the carried value.
    fn close_before(&mut self, gateway: &str, t: Millis, events: &mut Vec<Event>) {
        let every = self.every_ms();
        while let Some(open) = self.state.open {
            let end = Millis(open.0.saturating_add(every));
            if t < end {
                return;
            }
            if let Some((v, since)) = self.state.held {
                weigh(&mut self.state.acc, v, since.max(open), end);
            }
            self.emit(gateway, open, end, events);
            self.state.acc = Acc::default();
            if self.live && self.state.held.is_some() {
                // The next window starts with the value held (a silent
                // stretch gives one window per period, as each would have).
                self.state.open = Some(end);
                self.state.held = self.state.held.map(|(v, _)| (v, end));
            } else {
                self.state.open = None;
                self.state.held = None;
                return;
            }
        }
    }

    fn emit(&mut self, gateway: &str, start: Millis, end: Millis, events: &mut Vec<Event>) {
        let a = &self.state.acc;
        if a.count == 0 && a.weighted_ms == 0 {
            return;
        }
        let r = &self.rule;
        let seq = self.state.clock.sequence(start);
        // The window's end is its date; dates of this rule stay ordered.
        self.state.clock.last = Some(self.state.clock.last.map_or(end, |l| l.max(end)));
        events.push(Event {
            id: event_id(gateway, &r.name, start, seq),
            rule: r.name.clone(),
            time: end,
            body: EventBody::Summary(Summary {
                workcenter: r.workcenter.clone(),
                title: r.description.clone(),
                tag: r.tag.clone(),
                start,
                end,
                count: a.count,
                min: a.min,
                max: a.max,
                mean: (a.count > 0).then(|| a.sum / a.count as f64),
                first: a.first,
                last: a.last,
                time_weighted_mean: (a.weighted_ms > 0).then(|| a.weighted / a.weighted_ms as f64),
            }),
        });
    }
}

/// Weigh `v` for the time from `from` to `to` (nothing if not after).
fn weigh(a: &mut Acc, v: f64, from: Millis, to: Millis) {
    let ms = u64::try_from(to.0.saturating_sub(from.0)).unwrap_or(0);
    if ms > 0 {
        a.weighted += v * ms as f64;
        a.weighted_ms += ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::clock::Mono;
    use crate::edge::testing::reading;
    use crate::edge::RuleState;
    use crate::model::Value;
    use std::time::Duration;

    const T0: i64 = 1_780_000_200_000; // a multiple of 60 s

    fn rule() -> Window {
        Window::new(
            WindowRule {
                name: "oven_1m".into(),
                tag: "oven_temp".into(),
                workcenter: "OVEN1".into(),
                every: Duration::from_secs(60),
                description: "Oven temperature".into(),
                lane: None,
            },
            WindowState::default(),
        )
    }

    fn at(ms: i64) -> At {
        At {
            time: Millis(T0 + ms),
            mono: Mono(ms as u64),
        }
    }

    fn read(w: &mut Window, v: Option<f64>, ms: i64) -> Vec<Event> {
        let s = Sample {
            quality: if v.is_some() {
                Quality::Good
            } else {
                Quality::Bad("sensor fault".into())
            },
            ..reading(v.map_or(Value::Int(0), Value::Float), T0 + ms)
        };
        let mut ev = Vec::new();
        w.on_sample("gw", &s, at(ms), &mut ev);
        ev
    }

    fn tick(w: &mut Window, ms: i64) -> Vec<Event> {
        let mut ev = Vec::new();
        w.on_tick("gw", at(ms), &mut ev);
        ev
    }

    fn summary(e: &Event) -> &Summary {
        match &e.body {
            EventBody::Summary(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_window_gives_its_figures_and_the_time_weighted_mean() {
        let mut w = rule();
        assert!(read(&mut w, Some(200.0), 0).is_empty());
        read(&mut w, Some(260.0), 15_000);
        read(&mut w, Some(240.0), 45_000);
        assert!(tick(&mut w, 59_999).is_empty(), "the window is still open");
        let ev = tick(&mut w, 60_000);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].id, format!("gw-oven_1m-{T0}"));
        assert_eq!(ev[0].time, Millis(T0 + 60_000));
        let s = summary(&ev[0]);
        assert_eq!((s.start, s.end), (Millis(T0), Millis(T0 + 60_000)));
        assert_eq!(s.count, 3);
        assert_eq!((s.min, s.max), (Some(200.0), Some(260.0)));
        assert_eq!((s.first, s.last), (Some(200.0), Some(240.0)));
        assert_eq!(s.mean, Some(700.0 / 3.0));
        // 200 for 15 s, 260 for 30 s, 240 for 15 s.
        let twa = (200.0 * 15.0 + 260.0 * 30.0 + 240.0 * 15.0) / 60.0;
        assert_eq!(s.time_weighted_mean, Some(twa));
    }

    #[test]
    fn a_silent_window_carries_the_held_value_and_bad_quality_ends_it() {
        let mut w = rule();
        read(&mut w, Some(250.0), 30_000);
        let ev = tick(&mut w, 60_000);
        assert_eq!(summary(&ev[0]).time_weighted_mean, Some(250.0));
        // No reading in the next window: the value held all of it.
        let ev = tick(&mut w, 120_000);
        let s = summary(&ev[0]);
        assert_eq!((s.count, s.mean), (0, None));
        assert_eq!(s.time_weighted_mean, Some(250.0));
        assert_eq!(s.start, Millis(T0 + 60_000));
        // A bad reading at 150 s: 250 held 30 s of the third window only.
        read(&mut w, None, 150_000);
        let ev = tick(&mut w, 180_000);
        let s = summary(&ev[0]);
        assert_eq!((s.count, s.time_weighted_mean), (0, Some(250.0)));
        // Nothing is held now: no more windows until a good reading.
        assert!(tick(&mut w, 600_000).is_empty());
        assert!(w.state.open.is_none());
    }

    #[test]
    fn a_late_sample_closes_the_windows_it_passes_one_event_each() {
        let mut w = rule();
        read(&mut w, Some(1.0), 0);
        let ev = read(&mut w, Some(2.0), 185_000);
        let starts: Vec<_> = ev.iter().map(|e| summary(e).start.0 - T0).collect();
        assert_eq!(starts, [0, 60_000, 120_000], "{ev:?}");
        assert_eq!(summary(&ev[1]).time_weighted_mean, Some(1.0));
        let s = summary(&tick(&mut w, 240_000)[0]).clone();
        assert_eq!(s.start, Millis(T0 + 180_000));
        assert_eq!(s.count, 1);
        assert_eq!(
            s.time_weighted_mean,
            Some((1.0 * 5.0 + 2.0 * 55.0) / 60.0),
            "1 until the reading at 185 s, then 2"
        );
    }

    #[test]
    fn the_open_window_survives_a_restart_without_inventing_a_carry() {
        let mut w = rule();
        read(&mut w, Some(10.0), 10_000);
        read(&mut w, Some(20.0), 20_000);
        let bytes = RuleState::Window(w.state.clone()).encode().expect("encode");
        let RuleState::Window(state) = RuleState::decode(&bytes).expect("decode") else {
            panic!()
        };
        let mut w = Window::new(w.rule.clone(), state);
        // Back an hour later: the window open at the stop is reported with
        // what it saw; nothing is carried over the hour the gateway was down.
        let ev = tick(&mut w, 3_600_000);
        assert_eq!(ev.len(), 1, "{ev:?}");
        let s = summary(&ev[0]);
        assert_eq!((s.start, s.count), (Millis(T0), 2));
        assert!(w.state.open.is_none());
    }

    #[test]
    fn equal_samples_give_equal_ids() {
        let run = || {
            let mut w = rule();
            read(&mut w, Some(3.0), 1_000);
            read(&mut w, Some(4.0), 61_000);
            let mut ids: Vec<_> = read(&mut w, Some(4.5), 62_000)
                .into_iter()
                .map(|e| e.id)
                .collect();
            ids.extend(tick(&mut w, 120_000).into_iter().map(|e| e.id));
            ids
        };
        assert_eq!(run(), run());
        assert_eq!(run(), [format!("gw-oven_1m-{}", T0 + 60_000)]);
        // (The first window was closed by the reading at 61 s.)
    }
}
