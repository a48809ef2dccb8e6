//! Sources read devices and emit [`Sample`]s into the edge's channel. One
//! task per device connection, so a dead device cannot stall the others.

mod emit;
pub mod filter;
pub mod modbus;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "opcua")]
pub mod opcua;

use crate::config::{Config, SourceKind, TagConfig, TagPoint};
use crate::model::{Sample, Value};
use crate::status::Telemetry;
use crate::supervise::Stages;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Each protocol's own metric set, shared by its sources.
#[derive(Clone, Default)]
pub struct SourceMetrics {
    pub modbus: Arc<modbus::ModbusMetrics>,
    #[cfg(feature = "opcua")]
    pub opcua: Arc<opcua::OpcUaMetrics>,
    #[cfg(feature = "mqtt")]
    pub mqtt: Arc<mqtt::MqttMetrics>,
}

impl SourceMetrics {
    pub fn register(&self, registry: &mut Registry) {
        self.modbus.register(registry);
        #[cfg(feature = "opcua")]
        self.opcua.register(registry);
        #[cfg(feature = "mqtt")]
        self.mqtt.register(registry);
    }
}

/// Start one task per configured source.
pub fn spawn_all(
    config: &Config,
    tx: &mpsc::Sender<Sample>,
    telemetry: &Arc<Telemetry>,
    metrics: &SourceMetrics,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut Stages,
    #[cfg_attr(not(feature = "mqtt"), allow(unused_variables))] dead_letters: Option<
        &Arc<crate::store::Store>,
    >,
) {
    for source in &config.sources {
        let tags: Vec<TagConfig> = config
            .tags
            .iter()
            .filter(|t| t.source == source.name)
            .cloned()
            .collect();
        telemetry.source_added(&source.name);
        match &source.kind {
            SourceKind::Modbus(cfg) => {
                let poller = modbus::Poller::new(
                    source.name.clone(),
                    cfg.clone(),
                    tags,
                    config.tag_table.clone(),
                    tx.clone(),
                    telemetry.clone(),
                    metrics.modbus.clone(),
                );
                tasks.spawn(
                    format!("source {}", source.name),
                    poller.run(shutdown.clone()),
                );
            }
            #[cfg(feature = "opcua")]
            SourceKind::OpcUa(cfg) => {
                let reader = opcua::OpcUaReader::new(
                    source.name.clone(),
                    cfg.clone(),
                    tags,
                    config.tag_table.clone(),
                    tx.clone(),
                    telemetry.clone(),
                    metrics.opcua.clone(),
                );
                tasks.spawn(
                    format!("source {}", source.name),
                    reader.run(shutdown.clone()),
                );
            }
            #[cfg(feature = "mqtt")]
            SourceKind::Mqtt(cfg) => {
                let reader = mqtt::MqttReader::new(
                    source.name.clone(),
                    cfg.clone(),
                    tags,
                    config.tag_table.clone(),
                    tx.clone(),
                    telemetry.clone(),
                    metrics.mqtt.clone(),
                    dead_letters.cloned(),
                );
                tasks.spawn(
                    format!("source {}", source.name),
                    reader.run(shutdown.clone()),
                );
            }
        }
    }
}

/// A source's tags with their kind-specific points at the same index; tags
/// of another kind are left out. Both are held for the source's life: no
/// spare capacity (a large tag map would otherwise keep up to half again).
pub(crate) fn split_points<P: Clone>(
    tags: Vec<TagConfig>,
    pick: impl Fn(&TagPoint) -> Option<&P>,
) -> (Vec<TagConfig>, Vec<P>) {
    let (mut tags, mut points): (Vec<TagConfig>, Vec<P>) = tags
        .into_iter()
        .filter_map(|t| {
            let p = pick(&t.point)?.clone();
            Some((t, p))
        })
        .unzip();
    tags.shrink_to_fit();
    points.shrink_to_fit();
    (tags, points)
}

/// Apply a tag's linear scaling (`value × scale + offset`) to a number.
/// Unscaled tags keep their exact integer value.
pub fn condition(tag: &TagConfig, value: Value) -> Value {
    Scaling::of(tag).apply(value)
}

/// A tag's linear scaling, as a source keeps it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scaling {
    scale: Option<f64>,
    offset: Option<f64>,
}

impl Scaling {
    pub fn of(tag: &TagConfig) -> Scaling {
        Scaling {
            scale: tag.scale,
            offset: tag.offset,
        }
    }

    /// `value × scale + offset` for a number; unscaled, the exact value.
    pub fn apply(self, value: Value) -> Value {
        if self.scale.is_none() && self.offset.is_none() {
            return value;
        }
        let x = match value {
            Value::Int(v) => v as f64,
            Value::UInt(v) => v as f64,
            Value::Float(v) => v,
            other => return other,
        };
        Value::Float(x * self.scale.unwrap_or(1.0) + self.offset.unwrap_or(0.0))
    }
}
