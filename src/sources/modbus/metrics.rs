//! The Modbus sources' own metrics: requests by result, response times and
//! poll-group cycle times, per source.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(&'static str, String)>;

pub struct ModbusMetrics {
    requests: Family<Labels, Counter>,
    response_seconds: Family<Labels, Histogram>,
    cycle_seconds: Family<Labels, Gauge<f64, AtomicU64>>,
}

impl Default for ModbusMetrics {
    fn default() -> Self {
        ModbusMetrics {
            requests: Family::default(),
            response_seconds: Family::new_with_constructor(|| {
                Histogram::new([
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
            }),
            cycle_seconds: Family::default(),
        }
    }
}

impl ModbusMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "plantgate_modbus_requests",
            "Modbus read requests, per source and result (ok, exception, timeout, garbled, error)",
            self.requests.clone(),
        );
        registry.register(
            "plantgate_modbus_cycle_seconds",
            "Duration of the last full read of a poll group, per source and group",
            self.cycle_seconds.clone(),
        );
        registry.register(
            "plantgate_modbus_response_seconds",
            "Modbus response time, per source",
            self.response_seconds.clone(),
        );
    }

    pub fn cycle(&self, source: &str, group: &str, seconds: f64) {
        self.cycle_seconds
            .get_or_create(&vec![
                ("source", source.to_string()),
                ("group", group.to_string()),
            ])
            .set(seconds);
    }

    pub fn request(&self, source: &str, result: &str, seconds: f64) {
        self.requests
            .get_or_create(&vec![
                ("source", source.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
        self.response_seconds
            .get_or_create(&vec![("source", source.to_string())])
            .observe(seconds);
    }
}
