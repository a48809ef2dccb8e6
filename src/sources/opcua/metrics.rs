//! The OPC UA sources' own metrics: sessions re-established and data
//! changes replaced under pressure, per source.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
pub struct OpcUaMetrics {
    reconnects: Family<Labels, Counter>,
    replaced: Family<Labels, Counter>,
}

impl OpcUaMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "plantgate_opcua_reconnects",
            "OPC UA sessions re-established after a lost connection, per source",
            self.reconnects.clone(),
        );
        registry.register(
            "plantgate_opcua_samples_replaced",
            "OPC UA data changes replaced by a newer value of the same item before the source \
             took them (the edge was held back), per source",
            self.replaced.clone(),
        );
    }

    /// Show a source's counters from the start, at 0.
    pub fn added(&self, source: &str) {
        let labels = vec![("source", source.to_string())];
        let _ = self.reconnects.get_or_create(&labels);
        let _ = self.replaced.get_or_create(&labels);
    }

    /// The counter of a source's data changes replaced under pressure, to
    /// be counted where it happens (the subscription callback).
    pub fn replaced(&self, source: &str) -> Counter {
        self.replaced
            .get_or_create(&vec![("source", source.to_string())])
            .clone()
    }

    /// A session came back after its connection was lost.
    pub fn reconnect(&self, source: &str) {
        self.reconnects
            .get_or_create(&vec![("source", source.to_string())])
            .inc();
    }
}
