//! Sinks take events from the store and deliver them, each from its own
//! position in every lane. A sink acknowledges an event only after its
//! destination confirmed it; a refusal for good moves it to the dead
//! letters; anything else is retried with backoff, holding back only the
//! events of the same lane and key ([`schedule`]).
//!
//! The loop takes a batch per round: the ready events of the lane the
//! schedule picks, up to the sink's [`Sink::batch_limit`], keys held back
//! left out. The sink answers one [`Outcome`] per event; the delivered are
//! acknowledged together (`Store::ack_many`), each failure is handled as
//! its kind says, and a round that failed counts once towards the circuit
//! breaker.
//!
//! [`tap`] is the other way in: selected tag values straight from the
//! edge's input, for a sink that publishes the latest values (never stored).

pub mod dry_run;
pub mod latency;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod odoo;
pub mod schedule;
pub mod tap;

use crate::model::Event;
use crate::status::{Health, Telemetry};
use crate::store::{Lane, Queued, Store, StoreError};
use schedule::{BreakerConfig, Schedule, Trip};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Entries looked at per lane for a ready event before giving up for this
/// round; bounds the work when many entries of blocked keys are in front.
const SCAN_BUDGET: usize = 10_000;

/// Entries read from the store at a time while scanning: the first read
/// takes one (usually the pick), later ones more, up to this.
const SCAN_CHUNK: usize = 256;

/// How a delivery attempt failed, which decides what happens next.
#[derive(Clone, Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The destination could not take this event now (HTTP 503, 500, a
    /// serialization failure): keep it and retry later, holding back only
    /// its own lane and key.
    #[error("{0}")]
    Retry(String),
    /// The destination rate-limits this client (HTTP 429): the whole sink
    /// pauses for `after` (its Retry-After, capped), or backs off.
    #[error("{why}")]
    Throttled {
        why: String,
        after: Option<Duration>,
    },
    /// The destination cannot be reached at all (connection refused, a
    /// proxy's 502/504, login refused): the whole sink pauses.
    #[error("{0}")]
    Unreachable(String),
    /// The destination refused this event for good (validation): move it to
    /// the dead letters so the events behind it can flow.
    #[error("{0}")]
    Reject(String),
    /// Going on could be wrong (a delivery record cannot be read, so a write
    /// might be repeated): the sink stops and reports until restarted.
    #[error("{0}")]
    Halt(String),
}

/// What became of one event of a batch: delivered, failed, or not tried
/// this round (`None`: an earlier event of its key failed, so it waits).
pub type Outcome = Option<Result<(), DeliveryError>>;

/// The closed set of destinations.
pub enum Sink {
    Odoo(Box<odoo::OdooSink>),
    DryRun(dry_run::DryRunSink),
}

impl Sink {
    /// The protocol in use, once known (for `/status`).
    fn api(&self) -> Option<String> {
        match self {
            Sink::Odoo(s) => s.api(),
            Sink::DryRun(_) => Some("dry run".into()),
        }
    }

    /// Whether the last request reached the destination, and when one last
    /// succeeded (for `/status`).
    fn link(&self) -> (Option<bool>, Option<crate::model::Millis>) {
        match self {
            Sink::Odoo(s) => (s.connected(), s.last_success()),
            Sink::DryRun(_) => (None, None),
        }
    }

    /// Tell the sink whether its circuit is open (for its metrics).
    fn circuit(&self, name: &str, open: bool) {
        if let Sink::Odoo(s) = self {
            s.circuit(name, open);
        }
    }

    /// Whether the destination refuses the sink's credentials now.
    fn auth_failed(&self) -> bool {
        match self {
            Sink::Odoo(s) => s.auth_failed(),
            Sink::DryRun(_) => false,
        }
    }

    /// Events taken from the store per round at most.
    fn batch_limit(&self) -> usize {
        match self {
            Sink::Odoo(s) => s.batch_limit(),
            Sink::DryRun(s) => s.batch_limit(),
        }
    }

    /// Deliver a batch of ready events (store order, several keys); one
    /// outcome per event, in the same order.
    async fn deliver_batch(&mut self, store: &Store, name: &str, evs: &[Event]) -> Vec<Outcome> {
        match self {
            Sink::Odoo(s) => s.deliver_batch(store, name, evs).await,
            Sink::DryRun(s) => s.deliver_batch(evs),
        }
    }
}

/// Delivery loop of one sink; returns on shutdown.
pub struct Runner {
    pub name: String,
    pub sink: Sink,
    pub store: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    /// Told which head-of-line event keeps failing, for `/healthz`.
    pub health: Arc<Health>,
    pub latency: Arc<latency::DeliveryLatency>,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub breaker: BreakerConfig,
}

/// Where scanning each lane resumes: every entry before it is of a key that
/// was blocked when it was looked at.
#[derive(Default)]
struct Positions {
    from: [u64; 3],
}

impl Runner {
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut work = self.store.subscribe();
        let mut schedule = Schedule::with_breaker(self.retry_min, self.retry_max, self.breaker);
        let mut pos = Positions::default();
        let mut last_check = Instant::now();
        self.telemetry.sink_added(&self.name);
        // The sink's gauges exist (at 0) before the first delivery.
        self.sink.circuit(&self.name, false);
        loop {
            if *shutdown.borrow() {
                return;
            }
            work.borrow_and_update();
            let now = Instant::now();
            for lane in schedule.expired(now, last_check) {
                pos.from[lane.index()] = 0;
            }
            last_check = now;
            let mut ready: [Option<Queued>; 3] = [None, None, None];
            let mut failed = false;
            for lane in Lane::ALL {
                match self.find_ready(lane, &schedule, &mut pos, now) {
                    Ok(q) => ready[lane.index()] = q,
                    Err(e) => {
                        tracing::error!(sink = %self.name, error = %e, "cannot read the event store");
                        failed = true;
                    }
                }
            }
            if failed {
                if sleep_or_stop(self.retry_max.min(Duration::from_secs(5)), &mut shutdown).await {
                    return;
                }
                continue;
            }
            let paused = schedule.paused(now);
            let picked = if paused {
                None
            } else {
                schedule.choose(ready.each_ref().map(Option::is_some))
            };
            let Some(lane) = picked else {
                // Nothing ready: wait for new work, a retry time, or shutdown.
                let retry = schedule.next_retry(now);
                tokio::select! {
                    _ = work.changed() => {}
                    _ = async {
                        match retry {
                            Some(t) => tokio::time::sleep_until(t).await,
                            None => std::future::pending().await,
                        }
                    } => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            };
            let Some(first) = ready[lane.index()].take() else {
                continue;
            };
            let limit = self.sink.batch_limit();
            let batch = match self.collect(lane, first, &schedule, now, limit) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(sink = %self.name, error = %e, "cannot read the event store");
                    if sleep_or_stop(self.retry_max.min(Duration::from_secs(5)), &mut shutdown)
                        .await
                    {
                        return;
                    }
                    continue;
                }
            };
            // Undecodable entries are refused here; the rest go to the sink.
            let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
            let mut events = Vec::with_capacity(batch.len());
            let mut at = Vec::with_capacity(batch.len());
            for (i, q) in batch.iter().enumerate() {
                let decoded = match &q.entry {
                    Ok(entry) => Event::decode(&entry.payload)
                        .map_err(|e| format!("stored event {} cannot be read: {e}", entry.id)),
                    Err((_, why)) => Err(format!("undecodable queue record: {why}")),
                };
                match decoded {
                    Ok(ev) => {
                        events.push(ev);
                        at.push(i);
                        outcomes.push(None);
                    }
                    Err(why) => outcomes.push(Some(Err(DeliveryError::Reject(why)))),
                }
            }
            if !events.is_empty() {
                let delivered = tokio::select! {
                    r = self.sink.deliver_batch(&self.store, &self.name, &events) => r,
                    _ = shutdown.changed() => return,
                };
                for (i, o) in at.into_iter().zip(delivered) {
                    outcomes[i] = o;
                }
            }
            if let Some(api) = self.sink.api() {
                self.telemetry.sink_api(&self.name, &api);
            }
            self.telemetry
                .sink_auth_failed(&self.name, self.sink.auth_failed());
            let (connected, last_success) = self.sink.link();
            self.telemetry
                .sink_link(&self.name, connected, last_success);
            if let Err(e) = self.finish_batch(&batch, outcomes, &mut schedule).await {
                tracing::error!(sink = %self.name, error = %e, "cannot record the delivery in the event store");
                if sleep_or_stop(Duration::from_secs(1), &mut shutdown).await {
                    return;
                }
            }
            let open = schedule.circuit_open();
            self.telemetry.sink_circuit(&self.name, open);
            self.sink.circuit(&self.name, open);
            if self.halted(&mut shutdown).await {
                return;
            }
        }
    }

    /// The first entry of a lane whose key is not held back.
    fn find_ready(
        &self,
        lane: Lane,
        schedule: &Schedule,
        pos: &mut Positions,
        now: Instant,
    ) -> Result<Option<Queued>, StoreError> {
        let mut looked = 0usize;
        let mut from = pos.from[lane.index()];
        let mut chunk_len = 1;
        while looked < SCAN_BUDGET {
            let chunk = self.store.scan(&self.name, lane, from, chunk_len)?;
            chunk_len = (chunk_len * 4).min(SCAN_CHUNK);
            if chunk.is_empty() {
                return Ok(None);
            }
            for q in chunk {
                looked += 1;
                from = q.seq + 1;
                let blocked = q.key().is_some_and(|k| schedule.is_blocked(lane, k, now));
                if !blocked {
                    pos.from[lane.index()] = q.seq;
                    return Ok(Some(q));
                }
            }
            pos.from[lane.index()] = from;
        }
        Ok(None)
    }

    /// `first` and the ready entries after it in its lane, up to `limit`:
    /// entries of keys held back are passed over, so per key the order stays.
    fn collect(
        &self,
        lane: Lane,
        first: Queued,
        schedule: &Schedule,
        now: Instant,
        limit: usize,
    ) -> Result<Vec<Queued>, StoreError> {
        let mut from = first.seq + 1;
        let mut out = vec![first];
        let mut looked = 0usize;
        while out.len() < limit && looked < SCAN_BUDGET {
            let chunk = self.store.scan(&self.name, lane, from, SCAN_CHUNK)?;
            if chunk.is_empty() {
                break;
            }
            for q in chunk {
                looked += 1;
                from = q.seq + 1;
                if q.key().is_some_and(|k| schedule.is_blocked(lane, k, now)) {
                    continue;
                }
                out.push(q);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Record a batch's outcomes: the delivered acknowledged together (one
    /// store batch), each failure as [`Runner::finish`] says; the circuit
    /// breaker counts a failed round once, not once per event.
    async fn finish_batch(
        &self,
        batch: &[Queued],
        outcomes: Vec<Outcome>,
        schedule: &mut Schedule,
    ) -> Result<(), StoreError> {
        let mut acked = Vec::new();
        let mut failed = Vec::new();
        for (q, o) in batch.iter().zip(outcomes) {
            match o {
                Some(Ok(())) => acked.push(q.clone()),
                Some(Err(e)) => failed.push((q, e)),
                None => {}
            }
        }
        self.store.ack_many(&self.name, &acked)?;
        let now = crate::model::Millis::now();
        for q in &acked {
            if let Ok(e) = &q.entry {
                self.latency.delivered(&self.name, &e.kind, e.time, now);
            }
            self.health.attempt_done(&self.name, q.lane, q.seq);
            schedule.done(q.lane, q.key().unwrap_or(""));
            self.telemetry.delivered(&self.name);
        }
        let mut tripped = false;
        for (q, e) in failed {
            let transient = !matches!(e, DeliveryError::Reject(_) | DeliveryError::Halt(_));
            self.finish(q, Err(e), schedule, transient && !tripped)
                .await?;
            tripped |= transient;
        }
        Ok(())
    }

    async fn finish(
        &self,
        q: &Queued,
        outcome: Result<(), DeliveryError>,
        schedule: &mut Schedule,
        trip: bool,
    ) -> Result<(), StoreError> {
        let key = q.key().unwrap_or("").to_string();
        let event_id = q.event_id().unwrap_or("?");
        let trip = |s: &mut Schedule| {
            if trip {
                self.trip(s);
            }
        };
        match outcome {
            Ok(()) => {
                self.store.ack(&self.name, q)?;
                if let Ok(e) = &q.entry {
                    let now = crate::model::Millis::now();
                    self.latency.delivered(&self.name, &e.kind, e.time, now);
                }
                self.health.attempt_done(&self.name, q.lane, q.seq);
                schedule.done(q.lane, &key);
                self.telemetry.delivered(&self.name);
            }
            Err(DeliveryError::Reject(why)) => {
                let mut attempts = schedule.done(q.lane, &key);
                let at = crate::model::Millis::now();
                attempts.count += 1;
                attempts.first.get_or_insert(at);
                attempts.last = Some(at);
                let id = self
                    .store
                    .dead_letter(&self.name, q, &why, &attempts)
                    .await?;
                self.health.attempt_done(&self.name, q.lane, q.seq);
                tracing::error!(sink = %self.name, lane = %q.lane, key = %key, event = event_id, dead_letter = id, reason = %why,
                    "destination refused the event; kept as dead letter #{id}: fix the cause, then `plantgate dlq replay {id}`");
                self.telemetry.rejected(&self.name, &why);
            }
            Err(DeliveryError::Retry(why)) => {
                trip(schedule);
                let wait = schedule.failed(q.lane, &key, &why, Instant::now());
                self.health
                    .attempt_failed(&self.name, q.lane, q.seq, event_id, &why);
                tracing::warn!(sink = %self.name, lane = %q.lane, key = %key, event = event_id, error = %why,
                    retry_in = ?wait, "delivery failed; will retry (other keys keep flowing)");
                self.telemetry.delivery_error(&self.name, &why);
            }
            Err(DeliveryError::Throttled { why, after }) => {
                trip(schedule);
                let wait = schedule.throttled(Instant::now(), after);
                self.health
                    .attempt_failed(&self.name, q.lane, q.seq, event_id, &why);
                tracing::warn!(sink = %self.name, error = %why, retry_after = ?after, pause = ?wait,
                    "destination rate-limits; delivery paused");
                self.telemetry.delivery_error(&self.name, &why);
            }
            Err(DeliveryError::Unreachable(why)) => {
                trip(schedule);
                let wait = schedule.unreachable(Instant::now());
                self.health
                    .attempt_failed(&self.name, q.lane, q.seq, event_id, &why);
                tracing::warn!(sink = %self.name, error = %why, retry_in = ?wait,
                    "destination unreachable; delivery paused");
                self.telemetry.delivery_error(&self.name, &why);
            }
            Err(DeliveryError::Halt(why)) => {
                tracing::error!(sink = %self.name, event = event_id, reason = %why,
                    "sink stopped: nothing more is delivered to it until the cause is fixed and the gateway restarted");
                self.telemetry.halted(&self.name, &why);
                self.health.sink_halted(&self.name, &why);
            }
        }
        Ok(())
    }

    /// Count a transient failure towards the circuit breaker.
    fn trip(&self, schedule: &mut Schedule) {
        if let Trip::Opened(wait) = schedule.trip(Instant::now()) {
            tracing::warn!(sink = %self.name, cool_down = ?wait, failures = self.breaker.threshold,
                "circuit open: the destination keeps failing; nothing is sent until the cool-down ends, then one attempt probes it");
        }
    }

    /// A halted sink waits for shutdown only.
    async fn halted(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        if !self.telemetry.is_halted(&self.name) {
            return false;
        }
        let _ = shutdown.changed().await;
        true
    }
}

/// Sleep, or return true when shutdown came first.
async fn sleep_or_stop(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.changed() => true,
    }
}
