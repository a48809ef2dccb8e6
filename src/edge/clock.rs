//! Time as the edge sees it. Two clocks, each for what it is good at:
//!
//! - **Durations** (a stop held for `min_duration`, an aggregation period of
//!   `report_every`) are measured on a monotonic clock ([`Mono`]): a wall
//!   clock step (NTP, a board booting at 1970 without an RTC) neither
//!   shortens nor stretches them. Monotonic time starts anew with each
//!   process, so it is kept in memory only; a rule restored from the store
//!   estimates what was held before the restart from event times, never
//!   below zero.
//! - **Event dates** come from the wall clock (a sample's device time, or the
//!   gateway's clock at a tick) through the edge's timeline, which never goes
//!   backwards: it is the latest wall-clock reading seen (or stored). Each
//!   rule then keeps the date of its last event ([`RuleClock`]) and dates the
//!   next one within `[that date, the timeline]`. So after a step back an
//!   interval never ends before it started, no event is dated past a clock
//!   reading the gateway had, and a rule's events never go back in time;
//!   while the wall clock catches up, dates stand still at the step's moment
//!   (durations keep running on the monotonic clock meanwhile).
//! - **Ids** are made from content: gateway, rule and the interval's or
//!   period's start. Starts of one rule never decrease, so only an equal
//!   start (two stops dated in the same millisecond, as while dates stand
//!   still after a step back) could repeat an id; then a per-rule sequence
//!   is appended (`-1`, `-2`, ...). The same samples give the same ids.

use crate::model::Millis;
use serde::{Deserialize, Serialize};

/// Milliseconds on a monotonic clock with an arbitrary origin (the
/// process's start, in the pipeline). Only differences mean anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mono(pub u64);

impl Mono {
    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Mono) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// One moment, read from both clocks: what the pipeline hands the edge
/// with each batch of samples and each tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub wall: Millis,
    pub mono: Mono,
}

/// A moment on the edge's timeline: `time` never goes backwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    pub time: Millis,
    pub mono: Mono,
}

/// The edge's timeline: the latest wall-clock reading seen, so a step back
/// makes it stand still until the wall clock has caught up.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timeline {
    high: Option<Millis>,
}

impl Timeline {
    /// Include a date that was used before (a restored rule's last event).
    pub fn seen(&mut self, t: Millis) {
        self.high = Some(self.high.map_or(t, |h| h.max(t)));
    }

    pub fn at(&mut self, now: Now) -> At {
        self.seen(now.wall);
        At {
            time: self.high.unwrap_or(now.wall),
            mono: now.mono,
        }
    }
}

/// A rule's dates and ids; stored with the rule's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleClock {
    /// Date of the rule's latest event: later ones are never dated before it.
    pub last: Option<Millis>,
    /// Start of the latest id handed out, and how many ids shared it before.
    pub id_start: Option<Millis>,
    pub seq: u32,
}

impl RuleClock {
    /// The date for something that happened at `t` (a device time, which
    /// may be ahead of ours or behind the rule's last event), seen at `at`.
    pub fn date(&mut self, t: Millis, at: At) -> Millis {
        let mut d = t.min(at.time);
        if let Some(last) = self.last {
            d = d.max(last);
        }
        self.last = Some(d);
        d
    }

    /// The sequence for an id starting at `start`: 0 (no suffix) unless an
    /// earlier id of this rule had the same start.
    pub fn sequence(&mut self, start: Millis) -> u32 {
        if self.id_start == Some(start) {
            self.seq = self.seq.saturating_add(1);
        } else {
            self.id_start = Some(start);
            self.seq = 0;
        }
        self.seq
    }
}

/// `gateway-rule-start`, with `-seq` when the sequence is not 0.
pub fn event_id(gateway: &str, rule: &str, start: Millis, seq: u32) -> String {
    if seq == 0 {
        format!("{gateway}-{rule}-{}", start.0)
    } else {
        format!("{gateway}-{rule}-{}-{seq}", start.0)
    }
}

/// A duration held in memory on the monotonic clock, with what was held
/// before a restart (estimated from event times) as a base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    base: u64,
    from: Mono,
}

impl Held {
    pub fn start(at: At) -> Held {
        Held {
            base: 0,
            from: at.mono,
        }
    }

    /// Resume something that started at the stored date `since`: what the
    /// timeline says has passed, never less than zero.
    pub fn resume(since: Millis, at: At) -> Held {
        Held {
            base: u64::try_from(at.time.saturating_sub(since)).unwrap_or(0),
            from: at.mono,
        }
    }

    /// Milliseconds held at `at`.
    pub fn ms(&self, at: At) -> u64 {
        self.base.saturating_add(at.mono.since(self.from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(wall: i64, mono: u64) -> Now {
        Now {
            wall: Millis(wall),
            mono: Mono(mono),
        }
    }

    #[test]
    fn the_timeline_stands_still_after_a_step_back() {
        let mut t = Timeline::default();
        assert_eq!(t.at(now(10_000, 0)).time, Millis(10_000));
        assert_eq!(t.at(now(4_000, 1_000)).time, Millis(10_000));
        assert_eq!(t.at(now(12_000, 9_000)).time, Millis(12_000));
    }

    #[test]
    fn dates_stay_within_the_last_event_and_the_timeline() {
        let mut c = RuleClock::default();
        let at = At {
            time: Millis(100),
            mono: Mono(0),
        };
        assert_eq!(c.date(Millis(500), at), Millis(100), "device ahead of us");
        assert_eq!(c.date(Millis(50), at), Millis(100), "before the last event");
    }

    #[test]
    fn equal_starts_get_a_sequence() {
        let mut c = RuleClock::default();
        assert_eq!(c.sequence(Millis(5)), 0);
        assert_eq!(c.sequence(Millis(5)), 1);
        assert_eq!(c.sequence(Millis(5)), 2);
        assert_eq!(c.sequence(Millis(6)), 0);
        assert_eq!(event_id("gw", "r", Millis(5), 2), "gw-r-5-2");
        assert_eq!(event_id("gw", "r", Millis(6), 0), "gw-r-6");
    }

    #[test]
    fn held_is_never_negative() {
        let at = At {
            time: Millis(1_000),
            mono: Mono(50),
        };
        assert_eq!(Held::resume(Millis(9_000), at).ms(at), 0);
        assert_eq!(Held::resume(Millis(400), at).ms(at), 600);
        let h = Held::start(at);
        assert_eq!(
            h.ms(At {
                time: Millis(0),
                mono: Mono(20)
            }),
            0
        );
    }
}
