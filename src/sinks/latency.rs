//! How late events reach their destination: from the event's time (when
//! the machine did it) to the destination's acknowledgement, per sink and
//! event kind. A Prometheus histogram for dashboards, and a window of the
//! last hour for the p50/p99 that `/status` shows.

use crate::model::Millis;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

type Labels = Vec<(&'static str, String)>;

/// The window `/status` summarises.
pub const WINDOW_MS: i64 = 3_600_000;
/// Deliveries kept per (sink, kind) in the window: enough for stable
/// percentiles, bounded so a busy hour cannot grow memory.
const WINDOW_CAP: usize = 4096;

/// (sink, kind) → (acknowledged at, seconds late), oldest first.
type Window = BTreeMap<(String, String), VecDeque<(Millis, f64)>>;

pub struct DeliveryLatency {
    seconds: Family<Labels, Histogram>,
    window: Mutex<Window>,
}

/// p50/p99 of one (sink, kind) over the window.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencySummary {
    pub sink: String,
    pub kind: String,
    pub count: usize,
    pub p50_seconds: f64,
    pub p99_seconds: f64,
}

impl Default for DeliveryLatency {
    fn default() -> Self {
        DeliveryLatency {
            seconds: Family::new_with_constructor(|| {
                Histogram::new([
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                ])
            }),
            window: Mutex::default(),
        }
    }
}

impl DeliveryLatency {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "plantgate_delivery_latency_seconds",
            "From an event's time to its destination's acknowledgement, per sink and event kind",
            self.seconds.clone(),
        );
    }

    /// The destination acknowledged an event of `kind` that happened at `time`.
    pub fn delivered(&self, sink: &str, kind: &str, time: Millis, now: Millis) {
        // A clock step can put the event after now: count it as on time.
        let secs = now.0.saturating_sub(time.0).max(0) as f64 / 1000.0;
        self.seconds
            .get_or_create(&vec![
                ("sink", sink.to_string()),
                ("kind", kind.to_string()),
            ])
            .observe(secs);
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let q = w.entry((sink.to_string(), kind.to_string())).or_default();
        if q.len() == WINDOW_CAP {
            q.pop_front();
        }
        q.push_back((now, secs));
    }

    /// Per (sink, kind) delivered in the last hour: count, p50, p99.
    pub fn summary(&self, now: Millis) -> Vec<LatencySummary> {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        w.retain(|(sink, kind), q| {
            while q.front().is_some_and(|(at, _)| now.0 - at.0 > WINDOW_MS) {
                q.pop_front();
            }
            if q.is_empty() {
                return false;
            }
            let mut v: Vec<f64> = q.iter().map(|(_, s)| *s).collect();
            v.sort_by(f64::total_cmp);
            out.push(LatencySummary {
                sink: sink.clone(),
                kind: kind.clone(),
                count: v.len(),
                p50_seconds: nearest_rank(&v, 0.50),
                p99_seconds: nearest_rank(&v, 0.99),
            });
            true
        });
        out
    }
}

/// The nearest-rank percentile of sorted values.
fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_cover_the_last_hour_per_kind() {
        let l = DeliveryLatency::default();
        let t0 = Millis(1_000_000_000);
        // An old slow delivery that leaves the window.
        l.delivered("odoo", "production", Millis(t0.0 - 600_000), t0);
        let now = Millis(t0.0 + WINDOW_MS);
        for i in 1..=100 {
            l.delivered("odoo", "production", Millis(now.0 - i * 10), now);
        }
        l.delivered("odoo", "downtime_started", Millis(now.0 - 2000), now);
        let s = l.summary(Millis(now.0 + 1));
        assert_eq!(s.len(), 2);
        let p = s
            .iter()
            .find(|s| s.kind == "production")
            .expect("production");
        assert_eq!(p.count, 100, "the delivery older than an hour is gone");
        assert!((p.p50_seconds - 0.5).abs() < 1e-9, "{p:?}");
        assert!((p.p99_seconds - 0.99).abs() < 1e-9, "{p:?}");
        let d = s
            .iter()
            .find(|s| s.kind == "downtime_started")
            .expect("downtime");
        assert_eq!((d.count, d.p50_seconds), (1, 2.0));
    }

    #[test]
    fn an_event_from_the_future_counts_as_on_time() {
        let l = DeliveryLatency::default();
        l.delivered("odoo", "production", Millis(2000), Millis(1000));
        assert_eq!(l.summary(Millis(1000))[0].p99_seconds, 0.0);
    }
}
