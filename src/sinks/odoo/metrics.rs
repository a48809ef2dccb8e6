//! The Odoo sink's own metrics, per sink; registered with the others
//! through the pipeline's `Telemetry::new` closure.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

pub struct OdooMetrics {
    /// 1 while Odoo refuses the API key (the sink is paused), else 0.
    auth_failed: Family<Labels, Gauge>,
    /// 1 while the sink's circuit breaker is open, else 0.
    circuit_open: Family<Labels, Gauge>,
    /// Request latency per model and method, answered or not.
    request_seconds: Family<Labels, Histogram>,
    /// Records written per model.
    records: Family<Labels, Counter>,
    /// Delivery attempts that failed and will be retried.
    retries: Family<Labels, Counter>,
    /// Events Odoo refused for good, moved to the dead letters.
    dead_letters: Family<Labels, Counter>,
}

impl Default for OdooMetrics {
    fn default() -> Self {
        OdooMetrics {
            auth_failed: Family::default(),
            circuit_open: Family::default(),
            request_seconds: Family::new_with_constructor(|| {
                Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
            }),
            records: Family::default(),
            retries: Family::default(),
            dead_letters: Family::default(),
        }
    }
}

impl OdooMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "plantgate_odoo_auth_failed",
            "1 while Odoo refuses the sink's API key (delivery paused; the key source is read again before each retry), else 0",
            self.auth_failed.clone(),
        );
        registry.register(
            "plantgate_odoo_circuit_open",
            "1 while the sink's circuit breaker is open (Odoo kept failing: no requests during a cool-down, then one probe), else 0",
            self.circuit_open.clone(),
        );
        registry.register(
            "plantgate_odoo_request_seconds",
            "Odoo request latency, per sink, model and method (failed requests too)",
            self.request_seconds.clone(),
        );
        registry.register(
            "plantgate_odoo_records",
            "Records written to Odoo (write, create, load), per sink and model",
            self.records.clone(),
        );
        registry.register(
            "plantgate_odoo_retries",
            "Odoo deliveries that failed and are retried, per sink",
            self.retries.clone(),
        );
        registry.register(
            "plantgate_odoo_dead_letters",
            "Events Odoo refused for good (moved to the dead letters), per sink",
            self.dead_letters.clone(),
        );
    }

    /// One finished call.
    pub fn request(&self, sink: &str, o: &super::rpc::Observed) {
        self.request_seconds
            .get_or_create(&vec![
                ("sink", sink.to_string()),
                ("model", o.model.clone()),
                ("method", o.method.clone()),
            ])
            .observe(o.seconds);
        if o.records > 0 {
            self.records
                .get_or_create(&vec![
                    ("sink", sink.to_string()),
                    ("model", o.model.clone()),
                ])
                .inc_by(o.records);
        }
    }

    pub fn retry(&self, sink: &str) {
        self.retries
            .get_or_create(&vec![("sink", sink.to_string())])
            .inc();
    }

    pub fn dead_letter(&self, sink: &str) {
        self.dead_letters
            .get_or_create(&vec![("sink", sink.to_string())])
            .inc();
    }

    pub fn circuit_open(&self, sink: &str, open: bool) {
        self.circuit_open
            .get_or_create(&vec![("sink", sink.to_string())])
            .set(i64::from(open));
    }

    pub fn auth_failed(&self, sink: &str, failed: bool) {
        self.auth_failed
            .get_or_create(&vec![("sink", sink.to_string())])
            .set(i64::from(failed));
    }
}
