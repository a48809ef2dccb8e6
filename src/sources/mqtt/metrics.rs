//! The MQTT sources' own metrics, per source: messages taken in, payloads
//! that did not decode, oversize messages, dead letters kept, and Sparkplug
//! rebirth requests.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
pub struct MqttMetrics {
    messages: Family<Labels, Counter>,
    payload_errors: Family<Labels, Counter>,
    oversize: Family<Labels, Counter>,
    dead_letters: Family<Labels, Counter>,
    rebirths: Family<Labels, Counter>,
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
        registry.register(
            "plantgate_mqtt_oversize_messages",
            "MQTT messages refused for being over max_message_size, per source",
            self.oversize.clone(),
        );
        registry.register(
            "plantgate_mqtt_dead_letters",
            "Refused MQTT messages kept in the store's dead letters, per source",
            self.dead_letters.clone(),
        );
        registry.register(
            "plantgate_mqtt_rebirth_requests",
            "Sparkplug B rebirth requests published to the edge node, per source",
            self.rebirths.clone(),
        );
    }

    /// Make the source's series show (at 0) before its first message.
    pub fn added(&self, source: &str) {
        let _ = self.messages.get_or_create(&labels(source));
        let _ = self.payload_errors.get_or_create(&labels(source));
        let _ = self.oversize.get_or_create(&labels(source));
        let _ = self.dead_letters.get_or_create(&labels(source));
        let _ = self.rebirths.get_or_create(&labels(source));
    }

    pub fn oversize(&self, source: &str) {
        self.oversize.get_or_create(&labels(source)).inc();
    }

    pub fn dead_letter(&self, source: &str) {
        self.dead_letters.get_or_create(&labels(source)).inc();
    }

    pub fn rebirth(&self, source: &str) {
        self.rebirths.get_or_create(&labels(source)).inc();
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
