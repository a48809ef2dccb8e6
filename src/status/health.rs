//! Whether the gateway is doing its job, for `/healthz` and the systemd
//! watchdog. The stages report progress here; [`Health::check`] turns that
//! into "ok" or a one-line reason.
//!
//! Two kinds of problem: *local* ones (the edge holds samples it cannot
//! commit, the store cannot be written) that a restart may cure, and those
//! that are usually the destination's fault — a sink stuck on one event past
//! its lane's target, a halted sink, the edge held back because the store is
//! full of undelivered critical events. Those make `/healthz` fail but do
//! not stop the watchdog: the events are safe in the store, and a restart
//! loop during an Odoo outage would help nobody.

use crate::store::Lane;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub struct Health {
    stall_after: Duration,
    /// Per lane, from the store's options.
    targets: [Duration; 3],
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Since when the edge holds a batch of samples it has not committed.
    edge_busy_since: Option<Instant>,
    /// The last commit's error, until a commit succeeds.
    commit_error: Option<String>,
    /// The edge waits because the store is full (backpressure by design).
    store_full: bool,
    /// Sinks that stopped delivering until restarted, with why.
    halted: BTreeMap<String, String>,
    /// Per sink and lane, by sequence: events whose delivery keeps
    /// failing; the first is the lane's oldest held-back event.
    stuck: BTreeMap<String, [BTreeMap<u64, Stuck>; 3]>,
}

struct Stuck {
    event: String,
    since: Instant,
    error: String,
}

/// What is wrong, if anything.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// One line per problem, local ones first.
    pub problems: Vec<String>,
    /// Whether any problem is local (stops the watchdog).
    pub local: bool,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Health {
    pub fn new(stall_after: Duration, targets: [Duration; 3]) -> Health {
        Health {
            stall_after,
            targets,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update of plain data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The edge took a batch of samples; it is busy until [`Self::edge_done`].
    pub fn edge_busy(&self) {
        self.state()
            .edge_busy_since
            .get_or_insert_with(Instant::now);
    }

    /// The edge committed (or had nothing to commit) and waits for samples.
    pub fn edge_done(&self) {
        let mut s = self.state();
        s.edge_busy_since = None;
        s.commit_error = None;
        s.store_full = false;
    }

    /// The store refused the edge's commit for lack of room.
    pub fn store_full(&self) {
        self.state().store_full = true;
    }

    pub fn sink_halted(&self, sink: &str, why: &str) {
        self.state()
            .halted
            .insert(sink.to_string(), why.to_string());
    }

    pub fn commit_failed(&self, error: &str) {
        self.state().commit_error = Some(error.to_string());
    }

    /// A delivery attempt of the event at `seq` failed and will be retried.
    pub fn attempt_failed(&self, sink: &str, lane: Lane, seq: u64, event: &str, error: &str) {
        let mut s = self.state();
        let lane = &mut s.stuck.entry(sink.to_string()).or_default()[lane.index()];
        lane.entry(seq)
            .and_modify(|st| st.error = error.to_string())
            .or_insert_with(|| Stuck {
                event: event.to_string(),
                since: Instant::now(),
                error: error.to_string(),
            });
    }

    /// The event at `seq` left the lane (delivered or dead-lettered).
    pub fn attempt_done(&self, sink: &str, lane: Lane, seq: u64) {
        let mut s = self.state();
        if let Some(lanes) = s.stuck.get_mut(sink) {
            lanes[lane.index()].remove(&seq);
        }
    }

    pub fn check(&self, now: Instant) -> Verdict {
        let s = self.state();
        let mut problems = Vec::new();
        if let Some(e) = &s.commit_error {
            problems.push(format!("store cannot be written: {e}"));
        }
        let mut held_back = None;
        if let Some(since) = s.edge_busy_since {
            let held = now.saturating_duration_since(since);
            if held > self.stall_after && s.store_full {
                held_back = Some(format!(
                    "edge held back {}s: the store is full of undelivered critical events",
                    held.as_secs()
                ));
            } else if held > self.stall_after {
                problems.push(format!(
                    "edge stalled: samples held {}s without a commit (stall_after {}s)",
                    held.as_secs(),
                    self.stall_after.as_secs_f64()
                ));
            }
        }
        let local = !problems.is_empty();
        problems.extend(held_back);
        for (sink, why) in &s.halted {
            problems.push(format!("sink {sink} halted: {why}"));
        }
        for (sink, lanes) in &s.stuck {
            for lane in Lane::ALL {
                let Some(st) = lanes[lane.index()].values().next() else {
                    continue;
                };
                let stuck = now.saturating_duration_since(st.since);
                let target = self.targets[lane.index()];
                if stuck > target {
                    problems.push(format!(
                        "sink {sink} stuck on event {} in lane {lane} for {}s (target {}s): {}",
                        st.event,
                        stuck.as_secs(),
                        target.as_secs_f64(),
                        st.error
                    ));
                }
            }
        }
        Verdict { problems, local }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        Health::new(Duration::from_secs(60), [Duration::from_secs(10); 3])
    }

    #[test]
    fn edge_stall_is_reported_after_stall_after_only() {
        let h = health();
        let t0 = Instant::now();
        assert!(h.check(t0).ok());
        h.edge_busy();
        assert!(h.check(Instant::now() + Duration::from_secs(59)).ok());
        let v = h.check(Instant::now() + Duration::from_secs(61));
        assert!(v.local && v.problems[0].contains("edge stalled"), "{v:?}");
        h.edge_done();
        assert!(h.check(Instant::now() + Duration::from_secs(61)).ok());
    }

    #[test]
    fn a_full_store_or_a_halted_sink_fails_healthz_but_not_the_watchdog() {
        let h = health();
        h.edge_busy();
        h.store_full();
        let v = h.check(Instant::now() + Duration::from_secs(61));
        assert!(!v.local && v.problems[0].contains("store is full"), "{v:?}");
        h.edge_done();
        h.sink_halted("odoo", "ledger unreadable");
        let v = h.check(Instant::now());
        assert_eq!(v.problems, vec!["sink odoo halted: ledger unreadable"]);
        assert!(!v.local);
    }

    #[test]
    fn commit_errors_fail_until_a_commit_succeeds() {
        let h = health();
        h.commit_failed("disk full");
        let v = h.check(Instant::now());
        assert_eq!(v.problems, vec!["store cannot be written: disk full"]);
        assert!(v.local);
        h.edge_done();
        assert!(h.check(Instant::now()).ok());
    }

    #[test]
    fn a_sink_stuck_past_the_lane_target_is_reported_but_not_local() {
        let h = health();
        h.attempt_failed("odoo", Lane::Critical, 7, "ev7", "HTTP 503");
        let later = Instant::now() + Duration::from_secs(11);
        let v = h.check(later);
        assert!(!v.local, "{v:?}");
        assert!(
            v.problems[0].contains("sink odoo stuck on event ev7"),
            "{v:?}"
        );
        // Once it leaves the lane, a younger failing event is judged by its own age.
        h.attempt_failed("odoo", Lane::Critical, 8, "ev8", "HTTP 503");
        h.attempt_done("odoo", Lane::Critical, 7);
        assert!(h.check(Instant::now() + Duration::from_secs(9)).ok());
        h.attempt_done("odoo", Lane::Critical, 8);
        assert!(h.check(later + Duration::from_secs(60)).ok());
    }
}
