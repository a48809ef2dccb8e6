//! The store's own metrics, set as the queue changes (ages at scrape time
//! from in-memory heads), so a scrape never scans the queue.

use super::{Lane, StoreOptions};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(&'static str, String)>;

#[derive(Clone)]
pub struct StoreMetrics {
    depth: Family<Labels, Gauge>,
    /// Handles into `depth` by sink index and lane, set on every ack
    /// without building labels.
    depth_of: Vec<[Gauge; 3]>,
    bytes_of: [Gauge; 3],
    bytes: Family<Labels, Gauge>,
    oldest_age: Family<Labels, Gauge<f64, AtomicU64>>,
    target: Family<Labels, Gauge<f64, AtomicU64>>,
    evicted_total: Family<Labels, Counter>,
    dlq_depth: Family<Labels, Gauge>,
    pub(super) backpressure: Gauge,
    pub(super) quarantined: Gauge,
    pub(super) flush_seconds: Histogram,
}

fn lane(l: Lane) -> (&'static str, String) {
    ("lane", l.as_str().to_string())
}

fn sink(s: &str) -> (&'static str, String) {
    ("sink", s.to_string())
}

impl StoreMetrics {
    pub(super) fn new(sinks: &[&str], opts: &StoreOptions) -> Self {
        let depth = Family::<Labels, Gauge>::default();
        let bytes = Family::<Labels, Gauge>::default();
        let depth_of = sinks
            .iter()
            .map(|s| Lane::ALL.map(|l| depth.get_or_create(&vec![sink(s), lane(l)]).clone()))
            .collect();
        let bytes_of = Lane::ALL.map(|l| bytes.get_or_create(&vec![lane(l)]).clone());
        let m = StoreMetrics {
            depth,
            depth_of,
            bytes_of,
            bytes,
            oldest_age: Family::default(),
            target: Family::default(),
            evicted_total: Family::default(),
            dlq_depth: Family::default(),
            backpressure: Gauge::default(),
            quarantined: Gauge::default(),
            flush_seconds: Histogram::new([
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
            ]),
        };
        for l in Lane::ALL {
            m.target
                .get_or_create(&vec![lane(l)])
                .set(opts.lanes[l.index()].target.as_secs_f64());
            for reason in ["quota", "ttl"] {
                let _ = m
                    .evicted_total
                    .get_or_create(&vec![lane(l), ("reason", reason.to_string())]);
            }
            for s in sinks {
                let _ = m.oldest_age.get_or_create(&vec![sink(s), lane(l)]);
            }
        }
        for s in sinks {
            let _ = m.dlq_depth.get_or_create(&vec![sink(s)]);
        }
        m
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "plantgate_queue_depth",
            "Events not yet delivered, per sink and lane",
            self.depth.clone(),
        );
        r.register(
            "plantgate_queue_bytes",
            "Bytes of queued events, per lane (all sinks)",
            self.bytes.clone(),
        );
        r.register(
            "plantgate_queue_oldest_age_seconds",
            "Age (event time) of the oldest undelivered event, per sink and lane; 0 when none",
            self.oldest_age.clone(),
        );
        r.register(
            "plantgate_queue_age_target_seconds",
            "The lane's target for the oldest undelivered event's age",
            self.target.clone(),
        );
        r.register(
            "plantgate_queue_evicted",
            "Events removed without delivery, per lane and reason (quota, ttl)",
            self.evicted_total.clone(),
        );
        r.register(
            "plantgate_dlq_depth",
            "Dead letters kept, per sink",
            self.dlq_depth.clone(),
        );
        r.register(
            "plantgate_store_backpressure",
            "1 while the store is full of critical events and the sources are slowed",
            self.backpressure.clone(),
        );
        r.register(
            "plantgate_store_quarantined",
            "1 when this start found the store damaged, moved it aside and began a fresh one",
            self.quarantined.clone(),
        );
        r.register(
            "plantgate_store_flush_seconds",
            "Duration of each group-commit fsync",
            self.flush_seconds.clone(),
        );
    }

    pub(super) fn set_depth(&self, sink: usize, l: Lane, n: u64) {
        if let Some(g) = self.depth_of.get(sink) {
            g[l.index()].set(n as i64);
        }
    }

    pub(super) fn set_bytes(&self, l: Lane, n: u64) {
        self.bytes_of[l.index()].set(n as i64);
    }

    pub(super) fn set_age(&self, s: &str, l: Lane, seconds: f64) {
        self.oldest_age
            .get_or_create(&vec![sink(s), lane(l)])
            .set(seconds);
    }

    pub(super) fn set_dead(&self, s: &str, n: u64) {
        self.dlq_depth.get_or_create(&vec![sink(s)]).set(n as i64);
    }

    pub(super) fn evicted(&self, l: Lane, reason: &str, n: u64) {
        self.evicted_total
            .get_or_create(&vec![lane(l), ("reason", reason.to_string())])
            .inc_by(n);
    }
}
