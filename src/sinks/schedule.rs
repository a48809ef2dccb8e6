//! Which lane a sink serves next, and which keys are held back.
//!
//! - **Priority with a floor.** Deliveries go in rounds of [`FAIR_EVERY`]
//!   slots: eight for critical, then one for normal, then one for bulk. A
//!   slot whose lane has nothing ready goes to the first lane with work, in
//!   the order critical, normal, bulk. So critical always goes first and
//!   takes at least 8 of every 10 deliveries when it has a backlog, while
//!   normal and bulk each get at least 1 in 10 and never starve.
//! - **Hold-back by key.** A failed event blocks only its own (lane, key)
//!   until its retry time (exponential backoff with jitter per key); other
//!   keys and lanes keep flowing, and per key the order is kept because a
//!   key's later events wait behind its blocked head.
//! - **A destination that cannot be reached at all** (connection refused, a
//!   proxy saying the server is gone) pauses the whole sink with its own
//!   backoff: trying other keys would only hammer it. The probe after the
//!   pause is the most urgent ready event, so after an outage critical
//!   drains first. A destination that rate-limits (HTTP 429) pauses the sink
//!   for its `Retry-After`, capped at `retry_max`.
//! - **Full jitter.** Every wait is drawn uniformly from zero to the
//!   doubling, capped delay, so gateways that failed together do not
//!   retry together.
//! - **A circuit breaker.** After [`Breaker::threshold`] consecutive
//!   failed attempts on the destination (any key, any kind of transient
//!   failure) the circuit opens: nothing is sent for a cool-down that
//!   doubles per failed probe up to its cap; then a single attempt probes.
//!   Any answer that is not a transient failure (a delivery, a refusal of
//!   one event) closes it.
//!
//! Pure bookkeeping, no I/O: the runner asks and reports, so it is tested
//! with explicit instants.

use crate::backoff::Backoff;
use crate::model::Millis;
use crate::store::{Attempts, Lane};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Slots per round: all critical but the last two (normal, then bulk).
pub const FAIR_EVERY: u32 = 10;

/// The circuit breaker's settings.
#[derive(Clone, Copy, Debug)]
pub struct BreakerConfig {
    /// Consecutive failed attempts that open the circuit.
    pub threshold: u32,
    /// The first cool-down; it doubles per failed probe up to `cooldown_max`.
    pub cooldown: Duration,
    pub cooldown_max: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            threshold: 5,
            cooldown: Duration::from_secs(30),
            cooldown_max: Duration::from_secs(600),
        }
    }
}

#[derive(Debug)]
struct Breaker {
    threshold: u32,
    /// Failed attempts since the last answer that was not a transient failure.
    failures: u32,
    cooldown: Backoff,
    /// Open since the threshold was reached and until an attempt succeeds;
    /// while open, each attempt after the cool-down is a single probe.
    open: bool,
    /// No attempt before this while open.
    until: Option<Instant>,
}

/// What a failed attempt did to the circuit.
#[derive(Debug, PartialEq, Eq)]
pub enum Trip {
    /// Still closed, or this was not the attempt that changed anything.
    Closed,
    /// Opened (or opened again after a failed probe) for this long.
    Opened(Duration),
}

/// A key waiting for its retry.
#[derive(Debug)]
pub struct Block {
    pub until: Instant,
    backoff: Backoff,
    pub attempts: Attempts,
    pub last_error: String,
}

#[derive(Debug)]
pub struct Schedule {
    retry_min: Duration,
    retry_max: Duration,
    blocked: HashMap<(Lane, String), Block>,
    /// Position in the round of [`FAIR_EVERY`] slots.
    slot: u32,
    /// While the destination is unreachable: no delivery before this.
    paused_until: Option<Instant>,
    link: Backoff,
    breaker: Breaker,
}

impl Schedule {
    pub fn new(retry_min: Duration, retry_max: Duration) -> Self {
        Self::with_breaker(retry_min, retry_max, BreakerConfig::default())
    }

    pub fn with_breaker(retry_min: Duration, retry_max: Duration, b: BreakerConfig) -> Self {
        Schedule {
            retry_min,
            retry_max,
            blocked: HashMap::new(),
            slot: 0,
            paused_until: None,
            link: Backoff::new(retry_min, retry_max),
            breaker: Breaker {
                threshold: b.threshold.max(1),
                failures: 0,
                cooldown: Backoff::new(b.cooldown, b.cooldown_max),
                open: false,
                until: None,
            },
        }
    }

    /// A transient failure of the destination: count it, and open the
    /// circuit at the threshold (or again, when this was the probe).
    pub fn trip(&mut self, now: Instant) -> Trip {
        let b = &mut self.breaker;
        b.failures = b.failures.saturating_add(1);
        if !b.open && b.failures < b.threshold {
            return Trip::Closed;
        }
        b.open = true;
        // A cool-down must not shrink to nothing: [d/2, d].
        let wait = b.cooldown.next_delay();
        b.until = Some(now + wait);
        Trip::Opened(wait)
    }

    /// Whether the circuit is open (cooling down, or waiting for its probe
    /// to succeed).
    pub fn circuit_open(&self) -> bool {
        self.breaker.open
    }

    /// The destination answered something other than a transient failure.
    fn answered(&mut self) {
        let b = &mut self.breaker;
        b.failures = 0;
        b.open = false;
        b.until = None;
        b.cooldown.reset();
    }

    /// The destination rate-limits: pause the sink for `after` (its
    /// Retry-After, capped at `retry_max`), or the link backoff when it
    /// gave none. Returns the wait.
    pub fn throttled(&mut self, now: Instant, after: Option<Duration>) -> Duration {
        let wait = match after {
            Some(a) => a.min(self.retry_max),
            None => self.link.next_full_jitter(),
        };
        self.paused_until = Some(now + wait);
        wait
    }

    /// The destination could not be reached: pause the sink. Returns the wait.
    pub fn unreachable(&mut self, now: Instant) -> Duration {
        let wait = self.link.next_full_jitter();
        self.paused_until = Some(now + wait);
        wait
    }

    /// Whether the sink is paused (or its circuit cooling down) at `now`.
    pub fn paused(&self, now: Instant) -> bool {
        self.paused_until
            .into_iter()
            .chain(self.breaker.until)
            .any(|t| t > now)
    }

    pub fn is_blocked(&self, lane: Lane, key: &str, now: Instant) -> bool {
        self.blocked
            .get(&(lane, key.to_string()))
            .is_some_and(|b| b.until > now)
    }

    /// Lanes whose blocks ran out since the last call (their skipped entries
    /// must be looked at again).
    pub fn expired(&mut self, now: Instant, last: Instant) -> Vec<Lane> {
        let mut lanes: Vec<Lane> = self
            .blocked
            .iter()
            .filter(|(_, b)| b.until > last && b.until <= now)
            .map(|((l, _), _)| *l)
            .collect();
        lanes.sort();
        lanes.dedup();
        lanes
    }

    /// The earliest time a blocked key may be tried again.
    pub fn next_retry(&self, now: Instant) -> Option<Instant> {
        self.blocked
            .values()
            .map(|b| b.until)
            .chain(self.paused_until)
            .chain(self.breaker.until)
            .filter(|u| *u > now)
            .min()
    }

    /// Pick the lane to serve among those with an event ready.
    pub fn choose(&mut self, ready: [bool; 3]) -> Option<Lane> {
        let owner = match self.slot {
            s if s == FAIR_EVERY - 2 => Lane::Normal,
            s if s == FAIR_EVERY - 1 => Lane::Bulk,
            _ => Lane::Critical,
        };
        let lane = if ready[owner.index()] {
            owner
        } else {
            Lane::ALL.into_iter().find(|l| ready[l.index()])?
        };
        self.slot = (self.slot + 1) % FAIR_EVERY;
        Some(lane)
    }

    /// An attempt on the key's head event failed: block the key until its
    /// retry time. Returns the wait.
    pub fn failed(&mut self, lane: Lane, key: &str, error: &str, now: Instant) -> Duration {
        let (min, max) = (self.retry_min, self.retry_max);
        let b = self
            .blocked
            .entry((lane, key.to_string()))
            .or_insert_with(|| Block {
                until: now,
                backoff: Backoff::new(min, max),
                attempts: Attempts::default(),
                last_error: String::new(),
            });
        let wait = b.backoff.next_full_jitter();
        b.until = now + wait;
        b.last_error = error.to_string();
        let at = Millis::now();
        b.attempts.count += 1;
        b.attempts.first.get_or_insert(at);
        b.attempts.last = Some(at);
        wait
    }

    /// The key's head event is done with (delivered or dead-lettered):
    /// returns its attempt history and unblocks the key.
    pub fn done(&mut self, lane: Lane, key: &str) -> Attempts {
        self.paused_until = None;
        self.link.reset();
        self.answered();
        self.blocked
            .remove(&(lane, key.to_string()))
            .map(|b| b.attempts)
            .unwrap_or_default()
    }

    /// Attempts so far on the key's head event, counting the one just made.
    pub fn attempts(&self, lane: Lane, key: &str) -> Attempts {
        self.blocked
            .get(&(lane, key.to_string()))
            .map(|b| b.attempts.clone())
            .unwrap_or_default()
    }

    pub fn blocked_keys(&self) -> usize {
        self.blocked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_first_with_a_floor_for_the_others() {
        let mut s = Schedule::new(Duration::from_secs(1), Duration::from_secs(8));
        let picks: Vec<Lane> = (0..30)
            .filter_map(|_| s.choose([true, true, true]))
            .collect();
        assert_eq!(picks[0], Lane::Critical);
        for window in picks.windows(10) {
            let count = |l| window.iter().filter(|p| **p == l).count();
            assert_eq!(count(Lane::Critical), 8, "{picks:?}");
            assert_eq!(count(Lane::Normal), 1, "{picks:?}");
            assert_eq!(count(Lane::Bulk), 1, "{picks:?}");
        }
        // A slot whose lane has nothing ready goes to the next lane by priority.
        let picks: Vec<Lane> = (0..10)
            .filter_map(|_| s.choose([true, false, true]))
            .collect();
        assert_eq!(
            picks.iter().filter(|p| **p == Lane::Bulk).count(),
            1,
            "{picks:?}"
        );
        // Alone, a lane takes everything.
        assert_eq!(s.choose([false, false, true]), Some(Lane::Bulk));
        assert_eq!(s.choose([false, false, false]), None);
    }

    #[test]
    fn a_failed_key_blocks_only_itself_until_its_retry() {
        let mut s = Schedule::new(Duration::from_secs(1), Duration::from_secs(8));
        let t0 = Instant::now();
        let wait = s.failed(Lane::Normal, "WC1", "503", t0);
        assert!(wait <= Duration::from_secs(1));
        assert!(s.is_blocked(Lane::Normal, "WC1", t0));
        assert!(!s.is_blocked(Lane::Normal, "WC2", t0));
        assert!(!s.is_blocked(Lane::Critical, "WC1", t0));
        let later = t0 + Duration::from_secs(2);
        assert!(!s.is_blocked(Lane::Normal, "WC1", later));
        assert_eq!(s.expired(later, t0), vec![Lane::Normal]);
        s.failed(Lane::Normal, "WC1", "503", later);
        // An unreachable destination pauses everything until its retry.
        let wait = s.unreachable(later);
        assert!(s.paused(later));
        assert!(!s.paused(later + wait));
        assert!(s.next_retry(later).is_some_and(|t| t <= later + wait));
        assert_eq!(s.attempts(Lane::Normal, "WC1").count, 2);
        let done = s.done(Lane::Normal, "WC1");
        assert_eq!(done.count, 2);
        assert_eq!(s.blocked_keys(), 0);
    }

    #[test]
    fn a_rate_limit_pauses_the_sink_for_its_retry_after_capped() {
        let mut s = Schedule::new(Duration::from_secs(1), Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(
            s.throttled(t0, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert!(s.paused(t0 + Duration::from_secs(29)));
        assert!(!s.paused(t0 + Duration::from_secs(30)));
        // An hour asked for: the cap.
        assert_eq!(
            s.throttled(t0, Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
        // None given: the link's backoff (full jitter, at most retry_min first).
        let mut s = Schedule::new(Duration::from_secs(1), Duration::from_secs(60));
        assert!(s.throttled(t0, None) <= Duration::from_secs(1));
    }

    #[test]
    fn the_circuit_opens_after_n_failures_probes_once_and_closes_on_success() {
        let cfg = BreakerConfig {
            threshold: 3,
            cooldown: Duration::from_secs(10),
            cooldown_max: Duration::from_secs(40),
        };
        let mut s = Schedule::with_breaker(Duration::from_secs(1), Duration::from_secs(8), cfg);
        let t0 = Instant::now();
        assert_eq!(s.trip(t0), Trip::Closed);
        assert_eq!(s.trip(t0), Trip::Closed);
        assert!(!s.circuit_open() && !s.paused(t0));
        let Trip::Opened(first) = s.trip(t0) else {
            panic!("open at the threshold")
        };
        assert!(first >= Duration::from_secs(5) && first <= Duration::from_secs(10));
        assert!(s.circuit_open() && s.paused(t0));
        assert_eq!(s.next_retry(t0), Some(t0 + first));
        // After the cool-down, one probe; it fails: open again, longer.
        let t1 = t0 + first;
        assert!(!s.paused(t1));
        let Trip::Opened(second) = s.trip(t1) else {
            panic!("a failed probe opens again")
        };
        assert!(second >= Duration::from_secs(10) && second <= Duration::from_secs(20));
        // The cool-down is capped.
        let mut t = t1 + second;
        for _ in 0..5 {
            let Trip::Opened(w) = s.trip(t) else {
                panic!("still open")
            };
            assert!(w <= Duration::from_secs(40));
            t += w;
        }
        // A probe that succeeds closes it, and counting starts over.
        s.done(Lane::Normal, "WC1");
        assert!(!s.circuit_open() && !s.paused(t));
        assert_eq!(s.trip(t), Trip::Closed);
    }
}
