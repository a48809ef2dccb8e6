//! Sinks take events from the store and deliver them, each from its own read
//! position. A sink acknowledges an event only after its destination
//! confirmed it; a refusal for good sets the event aside; anything else is
//! retried with backoff, in order.

pub mod dry_run;
pub mod odoo;

use crate::backoff::Backoff;
use crate::status::Telemetry;
use crate::store::{Queued, Store, StoredEvent};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How a delivery attempt failed, which decides what happens next.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The link, the destination or its configuration is not ready (network,
    /// HTTP 5xx, login refused): keep the event and retry later.
    #[error("{0}")]
    Retry(String),
    /// The destination refused this event for good (validation): set it
    /// aside so the events behind it can flow.
    #[error("{0}")]
    Reject(String),
}

/// The closed set of destinations.
pub enum Sink {
    Odoo(Box<odoo::OdooSink>),
    DryRun(dry_run::DryRunSink),
}

impl Sink {
    async fn deliver(
        &mut self,
        store: &Store,
        name: &str,
        ev: &StoredEvent,
    ) -> Result<(), DeliveryError> {
        match self {
            Sink::Odoo(s) => s.deliver(store, name, ev).await,
            Sink::DryRun(s) => s.deliver(ev),
        }
    }
}

/// Delivery loop of one sink; returns on shutdown.
pub struct Runner {
    pub name: String,
    pub sink: Sink,
    pub store: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Runner {
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut committed = self.store.subscribe();
        let mut backoff = Backoff::new(self.retry_min, self.retry_max);
        self.telemetry.sink_added(&self.name);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let next = match self.store.next(&self.name) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(sink = %self.name, error = %e, "cannot read the event store");
                    if sleep_or_stop(backoff.next_delay(), &mut shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            let Some(queued) = next else {
                // Idle until something is committed (or shutdown).
                committed.borrow_and_update();
                if self.store.next(&self.name).ok().flatten().is_some() {
                    continue;
                }
                tokio::select! {
                    _ = committed.changed() => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            };
            let outcome = match &queued.record {
                Ok(ev) => {
                    tokio::select! {
                        r = self.sink.deliver(&self.store, &self.name, ev) => r,
                        _ = shutdown.changed() => return,
                    }
                }
                Err((_, why)) => Err(DeliveryError::Reject(format!("undecodable record: {why}"))),
            };
            let wait = match self.finish(&queued, outcome, &mut backoff).await {
                Ok(retry) => retry,
                Err(e) => {
                    tracing::error!(sink = %self.name, error = %e, "cannot record the delivery in the event store");
                    true
                }
            };
            if wait && sleep_or_stop(backoff.next_delay(), &mut shutdown).await {
                return;
            }
        }
    }

    async fn finish(
        &self,
        queued: &Queued,
        outcome: Result<(), DeliveryError>,
        backoff: &mut Backoff,
    ) -> Result<bool, crate::store::StoreError> {
        let event_id = queued.record.as_ref().ok().map(|e| e.event.id.as_str());
        match outcome {
            Ok(()) => {
                self.store.ack(&self.name, queued.seq, event_id).await?;
                self.telemetry.delivered(&self.name);
                backoff.reset();
            }
            Err(DeliveryError::Reject(why)) => {
                tracing::error!(sink = %self.name, seq = queued.seq, event = event_id.unwrap_or("?"), reason = %why,
                    "destination refused the event; kept aside");
                self.store
                    .set_aside(&self.name, queued, &why, event_id)
                    .await?;
                self.telemetry.rejected(&self.name, &why);
            }
            Err(DeliveryError::Retry(why)) => {
                tracing::warn!(sink = %self.name, seq = queued.seq, event = event_id.unwrap_or("?"), error = %why,
                    "delivery failed; will retry");
                self.telemetry.delivery_error(&self.name, &why);
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Sleep, or return true when shutdown came first.
async fn sleep_or_stop(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.changed() => true,
    }
}
