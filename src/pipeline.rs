//! Wires the stages together and owns their tasks:
//! sources → (bounded channel) → edge → store → sinks, plus the status
//! listener. Shutdown is a broadcast (`watch`) that every task selects on;
//! the edge drains what the sources already sent before it stops.

use crate::config::Config;
use crate::edge::{Edge, Output};
use crate::model::Sample;
use crate::sinks::{self, dry_run::DryRunSink, odoo::OdooSink, Sink};
use crate::sources;
use crate::status::{self, StatusContext, Telemetry};
use crate::store::{Store, StoreError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// The sink name the Odoo (or dry-run) sink reads the store under.
pub const ODOO_SINK: &str = "odoo";

/// Samples in flight between sources and the edge; a full channel slows the
/// pollers rather than dropping readings.
const SAMPLE_CHANNEL: usize = 4096;

/// Samples the edge applies before one commit (one fsync).
const EDGE_BATCH: usize = 512;

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
}

/// A started gateway.
pub struct Gateway {
    pub status_addr: SocketAddr,
    pub store: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    edge: tokio::task::JoinHandle<()>,
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
        let store = Arc::new(Store::open(
            &config.gateway.data_dir.join("store"),
            &[ODOO_SINK],
        )?);
        let telemetry = Arc::new(Telemetry::new());
        let sink = if config.odoo.dry_run {
            Sink::DryRun(DryRunSink)
        } else {
            Sink::Odoo(Box::new(OdooSink::new(&config.odoo)?))
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
        let mut tasks = JoinSet::new();

        let ctx = Arc::new(StatusContext {
            gateway_id: config.gateway.id.clone(),
            telemetry: telemetry.clone(),
            store: store.clone(),
            primary_sink: ODOO_SINK.to_string(),
        });
        tasks.spawn(status::serve(listener, ctx, shutdown_rx.clone()));

        let runner = sinks::Runner {
            name: ODOO_SINK.to_string(),
            sink,
            store: store.clone(),
            telemetry: telemetry.clone(),
            retry_min: config.odoo.retry_min,
            retry_max: config.odoo.retry_max,
        };
        tasks.spawn(runner.run(shutdown_rx.clone()));

        let edge = Edge::new(&config.gateway.id, &config.events, store.rule_states()?);
        let (tx, rx) = mpsc::channel(SAMPLE_CHANNEL);
        sources::spawn_all(&config, &tx, &telemetry, &shutdown_rx, &mut tasks);
        drop(tx);
        let edge = tokio::spawn(run_edge(edge, rx, store.clone(), telemetry.clone()));
        tracing::info!(gateway = %config.gateway.id, status = %status_addr, "gateway started");
        Ok(Gateway {
            status_addr,
            store,
            telemetry,
            shutdown,
            tasks,
            edge,
        })
    }

    /// Stop every stage; committed events stay in the store.
    pub async fn stop(mut self) {
        self.shutdown.send_replace(true);
        // Sources stop and drop their senders; the edge then drains and ends.
        while self.tasks.join_next().await.is_some() {}
        let _ = self.edge.await;
        tracing::info!("gateway stopped");
    }
}

/// The edge task: apply samples in batches and commit each batch's events
/// and rule states in one transaction. A failed commit is retried with the
/// same output; the sources wait meanwhile (bounded channel).
async fn run_edge(
    mut edge: Edge,
    mut rx: mpsc::Receiver<Sample>,
    store: Arc<Store>,
    telemetry: Arc<Telemetry>,
) {
    let mut batch = Vec::with_capacity(EDGE_BATCH);
    while rx.recv_many(&mut batch, EDGE_BATCH).await > 0 {
        let mut out = Output::default();
        for sample in batch.drain(..) {
            edge.apply(&sample, &mut out);
        }
        if out.is_empty() {
            continue;
        }
        let mut wait = Duration::from_millis(200);
        loop {
            match store.commit(&out.events, &out.states).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(error = %e, events = out.events.len(), "cannot commit events; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
        for e in &out.events {
            tracing::debug!(event = %e.id, kind = e.kind(), "event committed");
            telemetry.event(e.kind());
        }
    }
}
