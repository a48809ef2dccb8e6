//! Latency governance: each lane's oldest undelivered event, per sink,
//! against the lane's target age. A breach is logged once with the lane,
//! age and target and held in `plantgate_lane_sla_breached{sink,lane}`
//! until the lane is back within target, which is logged too. Each change
//! is also kept, numbered, in a short in-memory log ([`SlaWatch::changes_after`]),
//! so a publisher that was disconnected when it happened can still send it.

use crate::model::Millis;
use crate::store::{Lane, Store};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

type Labels = Vec<(&'static str, String)>;

/// How often lanes are compared with their targets.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct SlaWatch {
    breached: Family<Labels, Gauge>,
    /// (sink, lane) in breach → since when.
    state: Mutex<BTreeMap<(String, Lane), Millis>>,
    /// The last changes, oldest first, at most [`CHANGES_KEPT`].
    changes: Mutex<VecDeque<Change>>,
}

/// Changes kept for publishers that are behind.
pub const CHANGES_KEPT: usize = 256;

/// A lane going past its target (`late`) or back within it.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Numbered from 1, in order.
    pub seq: u64,
    pub sink: String,
    pub lane: Lane,
    pub late: bool,
    /// When the breach began.
    pub since: Millis,
    /// When this change was seen.
    pub at: Millis,
}

/// A lane past its target.
#[derive(Clone, Debug, PartialEq)]
pub struct Breach {
    pub sink: String,
    pub lane: Lane,
    pub since: Millis,
}

impl SlaWatch {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "plantgate_lane_sla_breached",
            "1 while the oldest undelivered event of a sink's lane is older than the lane's target",
            self.breached.clone(),
        );
    }

    /// Compare every lane of every sink with its target at `now`.
    pub fn check(&self, store: &Store, now: Millis) {
        let targets = store.options().lanes.each_ref().map(|l| l.target);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let mut record = |sink: &str, lane: Lane, late: bool, since: Millis| {
            let seq = changes.back().map_or(1, |c| c.seq + 1);
            if changes.len() >= CHANGES_KEPT {
                changes.pop_front();
            }
            changes.push_back(Change {
                seq,
                sink: sink.to_string(),
                lane,
                late,
                since,
                at: now,
            });
        };
        for sink in store.sink_names() {
            let ages = store.oldest_age(&sink, now);
            for lane in Lane::ALL {
                let target = targets[lane.index()];
                let age = ages[lane.index()];
                let late = age.is_some_and(|a| a > target);
                let key = (sink.clone(), lane);
                let gauge = self.breached.get_or_create(&vec![
                    ("sink", sink.clone()),
                    ("lane", lane.as_str().to_string()),
                ]);
                match (late, state.contains_key(&key)) {
                    (true, false) => {
                        tracing::warn!(sink = %sink, lane = %lane, age = ?age.unwrap_or_default(),
                            target = ?target, "lane past its target: its oldest undelivered event is late");
                        state.insert(key, now);
                        gauge.set(1);
                        record(&sink, lane, true, now);
                    }
                    (false, true) => {
                        tracing::info!(sink = %sink, lane = %lane, target = ?target,
                            "lane back within its target");
                        let since = state.remove(&key).unwrap_or(now);
                        gauge.set(0);
                        record(&sink, lane, false, since);
                    }
                    _ => {}
                }
            }
        }
    }

    /// The changes numbered above `seq`, oldest first.
    pub fn changes_after(&self, seq: u64) -> Vec<Change> {
        let changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        changes.iter().filter(|c| c.seq > seq).cloned().collect()
    }

    pub fn breaches(&self) -> Vec<Breach> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .iter()
            .map(|((sink, lane), since)| Breach {
                sink: sink.clone(),
                lane: *lane,
                since: *since,
            })
            .collect()
    }
}
