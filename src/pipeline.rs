//! Wires the stages together and owns their tasks:
//! sources → (bounded channel) → edge → store → sinks, plus the status
//! listener. Shutdown is a broadcast (`watch`) that every task selects on;
//! the edge drains what the sources already sent before it stops. Every
//! stage runs until shutdown: one that ends sooner is a failure that
//! [`Gateway::failed`] reports.

use crate::config::Config;
use crate::edge::{self, Edge, Mono, Now, Output, RuleState};
use crate::model::{Millis, Sample};
use crate::records::{FormatZero, Lanes};
use crate::sinks::{
    self, dry_run::DryRunSink, latency::DeliveryLatency, odoo::OdooSink, tap::TagTap, Sink,
};
use crate::sources;
use crate::status::{self, sla::SlaWatch, Health, StatusContext, Telemetry};
use crate::store::{Store, StoreError};
use crate::supervise::{StageFailure, Stages};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// The sink name the Odoo (or dry-run) sink reads the store under.
pub const ODOO_SINK: &str = "odoo";

/// The sink name the northbound MQTT sink reads the store under.
pub const MQTT_SINK: &str = "mqtt";

/// Samples in flight between sources and the edge; a full channel slows the
/// pollers rather than dropping readings.
const SAMPLE_CHANNEL: usize = 4096;

/// Samples the edge applies before one commit.
const EDGE_BATCH: usize = 512;

/// How often lanes with a TTL are swept.
const EXPIRE_EVERY: Duration = Duration::from_secs(5);

/// The sinks that read the store, by name; every command that opens the
/// store names the same ones.
pub fn sink_names(config: &Config) -> Vec<&'static str> {
    #[cfg_attr(not(feature = "mqtt"), allow(unused_mut))]
    let mut names = vec![ODOO_SINK];
    #[cfg(feature = "mqtt")]
    if config.mqtt_sink.is_some() {
        names.push(MQTT_SINK);
    }
    #[cfg(not(feature = "mqtt"))]
    let _ = config;
    names
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "cannot listen for status on {addr}: {source} (set [status] listen to a free address)"
    )]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Odoo(#[from] sinks::odoo::OdooSetupError),
    #[error(transparent)]
    Access(#[from] status::access::AccessError),
}

/// A started gateway.
pub struct Gateway {
    pub status_addr: SocketAddr,
    pub store: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    pub health: Arc<Health>,
    shutdown: watch::Sender<bool>,
    stages: Stages,
    /// Kept so the edge's input stays open until stop even with no source
    /// (or when every source ends): the edge ending is then always a failure.
    samples: Option<mpsc::Sender<Sample>>,
}

impl Gateway {
    /// Open the store, bind the status listener and start every stage.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        std::fs::create_dir_all(&config.gateway.data_dir).map_err(|source| {
            StartError::DataDir {
                path: config.gateway.data_dir.display().to_string(),
                source,
            }
        })?;
        let lanes = Lanes::new(&config.events);
        let store = Arc::new(Store::open_or_quarantine(
            &config.gateway.data_dir.join("store"),
            &sink_names(&config),
            &config.store,
            &FormatZero(&lanes),
        )?);
        let latency = Arc::new(DeliveryLatency::default());
        let sla = Arc::new(SlaWatch::default());
        let process = Arc::new(status::process::ProcessMetrics::default());
        let source_metrics = sources::SourceMetrics::default();
        let odoo_metrics = Arc::new(crate::sinks::odoo::metrics::OdooMetrics::default());
        #[cfg(feature = "mqtt")]
        let mqtt_metrics = Arc::new(sinks::mqtt::metrics::MqttSinkMetrics::default());
        // Selected tag values for the MQTT sink, taken from the edge's input.
        #[cfg(feature = "mqtt")]
        let tap = config
            .mqtt_sink
            .as_ref()
            .and_then(|m| m.tag_values.as_ref())
            .map(|t| Arc::new(TagTap::new(t.patterns.clone(), config.tag_table.clone())));
        #[cfg(not(feature = "mqtt"))]
        let tap: Option<Arc<TagTap>> = None;
        let telemetry = Arc::new(Telemetry::new(|r| {
            odoo_metrics.register(r);
            #[cfg(feature = "mqtt")]
            if config.mqtt_sink.is_some() {
                mqtt_metrics.register(r);
            }
            if let Some(t) = &tap {
                t.register(r);
            }
            store.metrics.register(r);
            latency.register(r);
            sla.register(r);
            process.register(r);
            source_metrics.register(r);
        }));
        let sink = if config.odoo.dry_run {
            Sink::DryRun(DryRunSink::new(
                config.odoo.max_batch,
                config.odoo.max_in_flight,
            ))
        } else {
            Sink::Odoo(Box::new(OdooSink::with_metrics(
                &config.odoo,
                odoo_metrics,
            )?))
        };
        let listener = TcpListener::bind(config.status.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.status.listen,
                source,
            })?;
        let status_addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.status.listen,
            source,
        })?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Stages::default();
        let health = Arc::new(Health::new(
            config.status.stall_after,
            config.store.lanes.each_ref().map(|l| l.target),
        ));

        let ctx = Arc::new(StatusContext {
            gateway_id: config.gateway.id.clone(),
            config_hash: config.hash.clone(),
            telemetry: telemetry.clone(),
            store: store.clone(),
            primary_sink: ODOO_SINK.to_string(),
            health: health.clone(),
            access: status::access::Access::from_config(&config.status)?,
            latency: latency.clone(),
            sla: sla.clone(),
            process,
        });
        tasks.spawn(
            "status listener",
            status::serve(listener, ctx, shutdown_rx.clone()),
        );

        let runner = sinks::Runner {
            name: ODOO_SINK.to_string(),
            sink,
            store: store.clone(),
            telemetry: telemetry.clone(),
            health: health.clone(),
            latency: latency.clone(),
            retry_min: config.odoo.retry_min,
            retry_max: config.odoo.retry_max,
            breaker: sinks::schedule::BreakerConfig {
                threshold: config.odoo.circuit_failures,
                cooldown: config.odoo.circuit_cooldown,
                cooldown_max: config.odoo.retry_max.max(config.odoo.circuit_cooldown),
            },
        };
        tasks.spawn(format!("sink {ODOO_SINK}"), runner.run(shutdown_rx.clone()));
        #[cfg(feature = "mqtt")]
        if let Some(mqtt) = &config.mqtt_sink {
            // Its own task and read positions: neither destination being
            // down slows the other.
            let sink = sinks::mqtt::MqttSink {
                name: MQTT_SINK.to_string(),
                config: mqtt.clone(),
                gateway_id: config.gateway.id.clone(),
                store: store.clone(),
                telemetry: telemetry.clone(),
                metrics: mqtt_metrics,
                latency,
                sla: sla.clone(),
                tags: tap.clone(),
            };
            tasks.spawn(format!("sink {MQTT_SINK}"), sink.run(shutdown_rx.clone()));
        }

        tasks.spawn("expiry", expire(store.clone(), shutdown_rx.clone()));
        tasks.spawn(
            "lane watch",
            watch_lanes(sla, store.clone(), shutdown_rx.clone()),
        );
        let edge = edge_for(&config, edge::restore(store.rule_states()?));
        let (tx, rx) = mpsc::channel(SAMPLE_CHANNEL);
        sources::spawn_all(
            &config,
            &tx,
            &telemetry,
            &source_metrics,
            &shutdown_rx,
            &mut tasks,
            Some(&store),
        );
        tasks.spawn(
            "edge",
            run_edge(
                edge,
                lanes,
                rx,
                store.clone(),
                telemetry.clone(),
                health.clone(),
                tap,
            ),
        );
        tracing::info!(gateway = %config.gateway.id, status = %status_addr, "gateway started");
        Ok(Gateway {
            status_addr,
            store,
            telemetry,
            health,
            shutdown,
            stages: tasks,
            samples: Some(tx),
        })
    }

    /// Resolves when a stage ends or panics before [`Gateway::stop`]: the
    /// gateway is then not doing its job and should be restarted. Cancel
    /// safe, so it can be raced against the stop signal.
    pub async fn failed(&mut self) -> StageFailure {
        self.stages.next_end().await
    }

    /// Stop every stage; committed events stay in the store.
    pub async fn stop(mut self) {
        self.shutdown.send_replace(true);
        // Sources stop and drop their senders, and so do we; the edge then
        // drains and ends.
        self.samples.take();
        self.stages.join_all().await;
        if let Err(e) = self.store.sync().await {
            tracing::error!(error = %e, "cannot flush the event store at stop");
        }
        tracing::info!("gateway stopped");
    }
}

/// The edge task: apply samples in batches, tick the edge between them
/// (so a stop is announced and a period ends while a source that reports
/// only changes is silent), and commit each output's events and rule states
/// in one transaction. A failed commit (disk, or a store full of critical
/// events) is retried with the same output; the sources wait meanwhile
/// (bounded channel), so nothing is dropped. When the sources are gone
/// (stop), open aggregation periods are reported and committed.
async fn run_edge(
    mut edge: Edge,
    lanes: Lanes,
    mut rx: mpsc::Receiver<Sample>,
    store: Arc<Store>,
    telemetry: Arc<Telemetry>,
    health: Arc<Health>,
    tap: Option<Arc<TagTap>>,
) {
    let clock = EdgeClock::new();
    let mut ticks = tokio::time::interval(EDGE_TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(EDGE_BATCH);
    let mut receipts = Vec::new();
    loop {
        let mut out = Output::default();
        tokio::select! {
            n = rx.recv_many(&mut batch, EDGE_BATCH) => {
                if n == 0 {
                    break;
                }
                health.edge_busy();
                if crate::fault::injected("wedge", "edge") {
                    // Test hook: hold the batch for ever, as a deadlock would.
                    std::future::pending::<()>().await;
                }
                if let Some(tap) = &tap {
                    // Never waits for the publisher (drops its oldest).
                    tap.offer(&batch);
                }
                let now = clock.now();
                for sample in batch.drain(..) {
                    edge.apply(&sample, now, &mut out);
                    if let Some(r) = sample.receipt {
                        receipts.push(r);
                    }
                }
            }
            _ = ticks.tick() => {
                edge.tick(clock.now(), &mut out);
                if out.is_empty() {
                    continue;
                }
                health.edge_busy();
            }
        }
        commit(&out, &lanes, &store, &telemetry, &health, None).await;
        // Committed (a commit is retried until it is in): the sources that
        // wait for it may acknowledge their devices now.
        for r in receipts.drain(..) {
            r.committed();
        }
    }
    let mut out = Output::default();
    edge.flush(clock.now(), &mut out);
    if !out.is_empty() {
        // Bounded: a stop must end. A period not committed here is still
        // in the committed rule state and is reported after the restart.
        commit(&out, &lanes, &store, &telemetry, &health, Some(3)).await;
    }
}

/// How often the edge is ticked: the lateness of a stop's announcement or
/// a period's end, at most.
pub(crate) const EDGE_TICK: Duration = Duration::from_millis(250);

/// The pipeline's clocks as the edge reads them: the wall clock, and
/// tokio's monotonic clock since the edge started (paused in tests).
pub(crate) struct EdgeClock {
    origin: tokio::time::Instant,
}

impl EdgeClock {
    pub(crate) fn new() -> Self {
        EdgeClock {
            origin: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> Now {
        Now {
            wall: Millis::now(),
            mono: Mono(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// The edge a config's rules make, resuming each rule from `states`; the
/// gateway and a shadow run (`config try`) build theirs the same way.
pub fn edge_for(config: &Config, states: HashMap<String, RuleState>) -> Edge {
    Edge::new(
        &config.gateway.id,
        &config.tag_table,
        &config.events,
        states,
    )
    .with_derived(&config.derived)
    .with_tags(&config.tags)
}

/// Commit one output, retrying until it is in (or `attempts` ran out).
async fn commit(
    out: &Output,
    lanes: &Lanes,
    store: &Store,
    telemetry: &Telemetry,
    health: &Health,
    attempts: Option<usize>,
) {
    if out.is_empty() {
        health.edge_done();
        return;
    }
    let encoded = out
        .events
        .iter()
        .map(|e| lanes.record(e))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|r| out.encoded_states().map(|s| (r, s)));
    let (records, states) = match encoded {
        Ok(x) => x,
        Err(e) => {
            // Encoding plain data cannot fail short of a bug; say so loudly.
            tracing::error!(error = %e, events = out.events.len(), "cannot encode events; they are lost");
            health.edge_done();
            return;
        }
    };
    let mut wait = Duration::from_millis(200);
    let mut tries = 0;
    loop {
        tries += 1;
        match store.commit(&records, &states).await {
            Ok(_) => {
                health.edge_done();
                break;
            }
            Err(e) if attempts.is_some_and(|n| tries >= n) => {
                tracing::error!(error = %e, events = out.events.len(), "cannot commit at stop; the open periods are reported after the restart");
                return;
            }
            Err(e @ StoreError::Full { .. }) => {
                // Backpressure, not a broken store: /healthz says so
                // once it lasts past stall_after.
                health.store_full();
                tracing::warn!(error = %e, "store full: holding the sources back");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                health.commit_failed(&e.to_string());
                tracing::error!(error = %e, events = out.events.len(), "cannot commit events; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
    for e in &out.events {
        tracing::debug!(event = %e.id, kind = e.kind(), "event committed");
        telemetry.event(e.kind());
        if let crate::model::EventBody::StateInterval(i) = &e.body {
            telemetry.state_interval(i);
        }
    }
}

/// Sweep lanes with a TTL until shutdown.
/// Compare each lane's oldest event with its target, every second.
async fn watch_lanes(sla: Arc<SlaWatch>, store: Arc<Store>, mut shutdown: watch::Receiver<bool>) {
    loop {
        sla.check(&store, Millis::now());
        tokio::select! {
            _ = tokio::time::sleep(status::sla::CHECK_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn expire(store: Arc<Store>, mut shutdown: watch::Receiver<bool>) {
    if store.options().lanes.iter().all(|l| l.ttl.is_none()) {
        // Nothing to sweep; still a stage that lives until shutdown.
        let _ = shutdown.changed().await;
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EXPIRE_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        let store = store.clone();
        let swept = tokio::task::spawn_blocking(move || store.expire(Millis::now())).await;
        if let Ok(Err(e)) = swept {
            tracing::error!(error = %e, "cannot expire old events");
        }
    }
}
