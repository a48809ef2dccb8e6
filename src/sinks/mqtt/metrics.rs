//! The MQTT sink's own metrics, per sink; registered with the others
//! through the pipeline's `Telemetry::new` closure.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
pub struct MqttSinkMetrics {
    /// QoS 1 publishes sent (re-sends after a reconnect too).
    published: Family<Labels, Counter>,
    /// Events the broker acknowledged (PUBACK), then acked in the store.
    acked: Family<Labels, Counter>,
    /// Publishes sent and not yet acknowledged.
    in_flight: Family<Labels, Gauge>,
    /// Connections made after the first.
    reconnects: Family<Labels, Counter>,
    /// 1 while connected to the broker.
    connected: Family<Labels, Gauge>,
    /// PUBACKs with a failure reason (MQTT 5), per reason.
    refused: Family<Labels, Counter>,
    /// Tag values published.
    tag_values: Family<Labels, Counter>,
}

impl MqttSinkMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "plantgate_mqtt_sink_published",
            "QoS 1 messages published to the broker, re-sends included, per sink",
            self.published.clone(),
        );
        registry.register(
            "plantgate_mqtt_sink_acked",
            "Events the broker acknowledged (PUBACK) and the store released, per sink",
            self.acked.clone(),
        );
        registry.register(
            "plantgate_mqtt_sink_in_flight",
            "Messages published and not yet acknowledged by the broker, per sink",
            self.in_flight.clone(),
        );
        registry.register(
            "plantgate_mqtt_sink_reconnects",
            "Connections to the broker after the first, per sink",
            self.reconnects.clone(),
        );
        registry.register(
            "plantgate_mqtt_sink_connected",
            "1 while the sink is connected to its broker, else 0",
            self.connected.clone(),
        );
        registry.register(
            "plantgate_mqtt_sink_refused",
            "Publishes the broker answered with a failure reason code (MQTT 5 PUBACK), per sink and reason",
            self.refused.clone(),
        );
        registry.register(
            "plantgate_mqtt_sink_tag_values",
            "Tag values published (latest value, retained), per sink",
            self.tag_values.clone(),
        );
    }

    fn l(sink: &str) -> Labels {
        vec![("sink", sink.to_string())]
    }

    /// Make every series exist (at 0) before the first connection.
    pub fn added(&self, sink: &str) {
        let l = Self::l(sink);
        let _ = self.published.get_or_create(&l);
        let _ = self.acked.get_or_create(&l);
        let _ = self.reconnects.get_or_create(&l);
        let _ = self.tag_values.get_or_create(&l);
        self.in_flight.get_or_create(&l).set(0);
        self.connected.get_or_create(&l).set(0);
    }

    pub fn published(&self, sink: &str, n: u64) {
        self.published.get_or_create(&Self::l(sink)).inc_by(n);
    }

    pub fn acked(&self, sink: &str, n: u64) {
        self.acked.get_or_create(&Self::l(sink)).inc_by(n);
    }

    pub fn in_flight(&self, sink: &str, n: usize) {
        self.in_flight
            .get_or_create(&Self::l(sink))
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn reconnected(&self, sink: &str) {
        self.reconnects.get_or_create(&Self::l(sink)).inc();
    }

    pub fn refused(&self, sink: &str, reason: &str) {
        self.refused
            .get_or_create(&vec![
                ("sink", sink.to_string()),
                ("reason", reason.to_string()),
            ])
            .inc();
    }

    pub fn tag_values(&self, sink: &str, n: u64) {
        self.tag_values.get_or_create(&Self::l(sink)).inc_by(n);
    }

    pub fn connected(&self, sink: &str, up: bool) {
        self.connected
            .get_or_create(&Self::l(sink))
            .set(i64::from(up));
    }
}
