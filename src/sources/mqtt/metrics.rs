//! The MQTT sources' own metrics: messages taken in and payloads that did
//! not decode, per source.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
pub struct MqttMetrics {
    messages: Family<Labels, Counter>,
    payload_errors: Family<Labels, Counter>,
}

impl MqttMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "plantgate_mqtt_messages",
            "MQTT messages received on a tag's topic, per source",
            self.messages.clone(),
        );
        registry.register(
            "plantgate_mqtt_payload_errors",
            "MQTT messages whose payload gave no value (bad sample sent instead), per source",
            self.payload_errors.clone(),
        );
    }

    /// Make the source's series show (at 0) before its first message.
    pub fn added(&self, source: &str) {
        let _ = self.messages.get_or_create(&labels(source));
        let _ = self.payload_errors.get_or_create(&labels(source));
    }

    pub fn message(&self, source: &str) {
        self.messages.get_or_create(&labels(source)).inc();
    }

    pub fn payload_error(&self, source: &str) {
        self.payload_errors.get_or_create(&labels(source)).inc();
    }
}

fn labels(source: &str) -> Labels {
    vec![("source", source.to_string())]
}
