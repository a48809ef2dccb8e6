//! Talking to systemd (`Type=notify`): `READY=1` once started, `STATUS=`
//! one-line summaries, `WATCHDOG=1` only while the pipeline makes progress,
//! `STOPPING=1` at shutdown. Every call is a no-op outside systemd (no
//! `NOTIFY_SOCKET`), and a failed notification is logged, never fatal.

use crate::model::Millis;
use crate::pipeline::ODOO_SINK;
use crate::status::{Health, Telemetry};
use crate::store::Store;
use sd_notify::NotifyState;
use std::sync::Arc;
use std::time::Duration;

/// How often `STATUS=` is refreshed when systemd asked for no watchdog.
const STATUS_EVERY: Duration = Duration::from_secs(10);

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload begins; `ready` ends it.
pub fn reloading(status: &str) {
    let mut states = vec![NotifyState::Reloading, NotifyState::Status(status)];
    // systemd matches the reload to its request by this timestamp.
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// What the gateway reports about itself.
pub struct Reporter {
    pub health: Arc<Health>,
    pub telemetry: Arc<Telemetry>,
    pub store: Arc<Store>,
}

impl Reporter {
    /// e.g. "3/3 sources up, 12 queued, oldest 2 s", or the health problem.
    pub fn summary(&self, verdict: &crate::status::Verdict) -> String {
        let board = self.telemetry.snapshot();
        let up = board.sources.values().filter(|s| s.connected).count();
        let queued: u64 = self.store.stats().sinks.iter().map(|s| s.depth()).sum();
        let oldest = self
            .store
            .oldest_age(ODOO_SINK, Millis::now())
            .into_iter()
            .flatten()
            .max()
            .map_or(0, |d| d.as_secs());
        let line = format!(
            "{up}/{} sources up, {queued} queued, oldest {oldest} s",
            board.sources.len()
        );
        match verdict.problems.first() {
            None => line,
            Some(why) => format!("unhealthy: {why}; {line}"),
        }
    }

    /// Runs until dropped. Each tick checks health first: `WATCHDOG=1` goes
    /// out only when nothing local is wrong, so a wedged edge or an
    /// unwritable store lets the watchdog fire and systemd restart us.
    pub async fn run(self) {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return std::future::pending().await;
        }
        let watchdog = sd_notify::watchdog_enabled();
        // Twice per watchdog period, as sd_watchdog_enabled(3) advises.
        let every = watchdog.map_or(STATUS_EVERY, |d| (d / 2).max(Duration::from_millis(50)));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let verdict = self.health.check(tokio::time::Instant::now());
            let line = self.summary(&verdict);
            // One datagram per tick, so a reader sees each verdict whole.
            if watchdog.is_some() && !verdict.local {
                send(&[NotifyState::Watchdog, NotifyState::Status(&line)]);
            } else {
                send(&[NotifyState::Status(&line)]);
            }
        }
    }
}
