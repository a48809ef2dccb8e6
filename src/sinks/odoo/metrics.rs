//! The Odoo sink's own metrics, per sink; registered with the others
//! through the pipeline's `Telemetry::new` closure.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
pub struct OdooMetrics {
    /// 1 while Odoo refuses the API key (the sink is paused), else 0.
    auth_failed: Family<Labels, Gauge>,
}

impl OdooMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "plantgate_odoo_auth_failed",
            "1 while Odoo refuses the sink's API key (delivery paused; the key source is read again before each retry), else 0",
            self.auth_failed.clone(),
        );
    }

    pub fn auth_failed(&self, sink: &str, failed: bool) {
        self.auth_failed
            .get_or_create(&vec![("sink", sink.to_string())])
            .set(i64::from(failed));
    }
}
