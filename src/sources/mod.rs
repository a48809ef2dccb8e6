//! Sources read devices and emit [`Sample`](crate::model::Sample)s into the
//! edge's channel. One task per device connection, so a dead device cannot
//! stall the others.

pub mod modbus;

use crate::config::{Config, SourceKind};
use crate::model::Sample;
use crate::status::Telemetry;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// Start one task per configured source.
pub fn spawn_all(
    config: &Config,
    tx: &mpsc::Sender<Sample>,
    telemetry: &Arc<Telemetry>,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
) {
    for source in &config.sources {
        let tags: Vec<_> = config
            .tags
            .iter()
            .filter(|t| t.source == source.name)
            .cloned()
            .collect();
        telemetry.source_added(&source.name);
        match &source.kind {
            SourceKind::ModbusTcp(cfg) => {
                let poller = modbus::Poller {
                    name: source.name.clone(),
                    config: cfg.clone(),
                    tags,
                    tx: tx.clone(),
                    telemetry: telemetry.clone(),
                };
                tasks.spawn(poller.run(shutdown.clone()));
            }
        }
    }
}
