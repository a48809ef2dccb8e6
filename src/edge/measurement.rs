//! Measurements: each good reading of the tag is one measure, passing when
//! `low <= value <= high`; `alert_after` failures in a row give one quality
//! alert (the next alert needs a pass first). On a polled tag set
//! `on_change = true`, so a value read again is not measured again.
//!
//! With a `product_tag` (the recipe number or product code the machine
//! runs), the limits are those of the product it names
//! (`[[events.limits]]`), or the rule's own for a product not listed; a
//! change of product starts a new run of failures.

use super::clock::{event_id, At, RuleClock};
use crate::config::MeasurementRule;
use crate::model::{Event, EventBody, Measure, Quality, QualityAlert, Sample, Value};
use serde::{Deserialize, Serialize};

/// What survives a restart: the run of failures so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeasurementState {
    pub clock: RuleClock,
    /// Failed measures in a row.
    pub failures: u32,
    /// The current run was alerted.
    pub alerted: bool,
    /// The product the `product_tag` last named.
    pub product: Option<String>,
}

pub struct Measurement {
    pub rule: std::sync::Arc<MeasurementRule>,
    pub state: MeasurementState,
}

/// A product tag's value as the text `[[events.limits]]` names it by.
fn product_name(v: &Value) -> Option<String> {
    match v {
        Value::Text(t) => Some(t.trim().to_string()),
        Value::Float(_) => v.as_i64().map(|i| i.to_string()),
        Value::Bool(_) => None,
        _ => v.as_i64().map(|i| i.to_string()),
    }
}

impl Measurement {
    pub fn new(rule: impl Into<std::sync::Arc<MeasurementRule>>, state: MeasurementState) -> Self {
        let rule = rule.into();
        Measurement { rule, state }
    }

    /// A reading of the `product_tag`: which product the next measures are of.
    pub fn on_product(&mut self, sample: &Sample) -> bool {
        if sample.quality != Quality::Good {
            return false;
        }
        let Some(product) = product_name(&sample.value) else {
            tracing::warn!(rule = %self.rule.name, tag = ?self.rule.product_tag, value = %sample.value,
                "product tag gave a value that names no product; ignored");
            return false;
        };
        if self.state.product.as_ref() == Some(&product) {
            return false;
        }
        self.state.product = Some(product);
        self.state.failures = 0;
        self.state.alerted = false;
        true
    }

    pub fn on_sample(
        &mut self,
        gateway: &str,
        sample: &Sample,
        at: At,
        events: &mut Vec<Event>,
    ) -> bool {
        if sample.quality != Quality::Good {
            return false;
        }
        let Some(value) = sample.value.as_f64() else {
            tracing::warn!(rule = %self.rule.name, tag = %self.rule.tag, value = %sample.value,
                "measurement tag gave a value that is not a number; ignored");
            return false;
        };
        let r = &self.rule;
        let listed = self
            .state
            .product
            .as_ref()
            .and_then(|p| r.limits.iter().find(|l| &l.product == p));
        let (low, high, target, title) = match listed {
            Some(l) => (
                l.low,
                l.high,
                l.target,
                format!("{} ({})", r.description, l.product),
            ),
            None => (r.low, r.high, r.target, r.description.clone()),
        };
        let time = self.state.clock.date(sample.time, at);
        let seq = self.state.clock.sequence(time);
        let id = event_id(gateway, &r.name, time, seq);
        let pass = value >= low && value <= high;
        events.push(Event {
            id: id.clone(),
            rule: r.name.clone(),
            time,
            body: EventBody::QualityMeasure(Measure {
                workcenter: r.workcenter.clone(),
                title: title.clone(),
                value,
                low,
                high,
                target,
                pass,
            }),
        });
        if pass {
            self.state.failures = 0;
            self.state.alerted = false;
            return true;
        }
        self.state.failures = self.state.failures.saturating_add(1);
        if let Some(n) = r.alert_after {
            if self.state.failures >= n && !self.state.alerted {
                self.state.alerted = true;
                events.push(Event {
                    id: format!("{id}-alert"),
                    rule: r.name.clone(),
                    time,
                    body: EventBody::QualityAlert(QualityAlert {
                        workcenter: r.workcenter.clone(),
                        title: format!("{title}: {n} failed measures in a row"),
                        failures: self.state.failures,
                        measure_id: id,
                        detail: format!(
                            "{} = {}, outside {} to {}",
                            r.tag,
                            crate::model::tidy(value),
                            low,
                            high
                        ),
                    }),
                });
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::testing::{at, reading};
    use crate::edge::RuleState;

    fn rule() -> Measurement {
        Measurement::new(
            MeasurementRule {
                name: "bore".into(),
                tag: "bore_mm".into(),
                workcenter: "PRESS1".into(),
                low: 9.95,
                high: 10.05,
                target: Some(10.0),
                alert_after: Some(3),
                product_tag: Some("recipe".into()),
                limits: vec![crate::config::ProductLimits {
                    product: "12".into(),
                    low: 11.95,
                    high: 12.05,
                    target: Some(12.0),
                }],
                description: "Bore diameter".into(),
                lane: None,
            },
            MeasurementState::default(),
        )
    }

    fn measure(m: &mut Measurement, v: f64, secs: i64) -> Vec<Event> {
        let mut ev = Vec::new();
        let s = reading(Value::Float(v), secs * 1000);
        m.on_sample("gw", &s, at(secs * 1000), &mut ev);
        ev
    }

    fn recipe(m: &mut Measurement, v: Value) -> bool {
        let s = Sample {
            tag: crate::model::TagId::of(1),
            ..reading(v, 0)
        };
        m.on_product(&s)
    }

    #[test]
    fn the_product_made_picks_its_limits_and_starts_a_new_run() {
        let mut m = rule();
        assert_eq!(
            passes(&measure(&mut m, 12.0, 1)),
            [false],
            "the rule's limits"
        );
        measure(&mut m, 12.0, 2);
        assert!(recipe(&mut m, Value::UInt(12)), "recipe 12 from now on");
        assert_eq!(m.state.failures, 0, "a new product, a new run");
        let ev = measure(&mut m, 12.01, 3);
        let EventBody::QualityMeasure(q) = &ev[0].body else {
            panic!("{ev:?}")
        };
        assert_eq!(
            (q.low, q.high, q.target, q.pass),
            (11.95, 12.05, Some(12.0), true)
        );
        assert_eq!(q.title, "Bore diameter (12)");
        assert!(!recipe(&mut m, Value::Float(12.0)), "the same product");
        // A product without limits of its own: the rule's.
        assert!(recipe(&mut m, Value::Text("7".into())));
        assert_eq!(passes(&measure(&mut m, 10.0, 4)), [true]);
    }

    fn passes(ev: &[Event]) -> Vec<bool> {
        ev.iter()
            .filter_map(|e| match &e.body {
                EventBody::QualityMeasure(m) => Some(m.pass),
                _ => None,
            })
            .collect()
    }

    fn alerts(ev: &[Event]) -> usize {
        ev.iter().filter(|e| e.kind() == "quality_alert").count()
    }

    #[test]
    fn limits_are_inclusive_and_three_failures_in_a_row_alert_once() {
        let mut m = rule();
        let mut ev = Vec::new();
        for (i, v) in [10.0, 9.95, 10.05, 10.2, 9.9].into_iter().enumerate() {
            ev.extend(measure(&mut m, v, i as i64));
        }
        assert_eq!(passes(&ev), [true, true, true, false, false]);
        assert_eq!(alerts(&ev), 0, "two failures in a row");
        ev.extend(measure(&mut m, 10.1, 5));
        assert_eq!(alerts(&ev), 1);
        let alert = ev.last().expect("alert");
        assert_eq!(alert.id, "gw-bore-5000-alert");
        let EventBody::QualityAlert(a) = &alert.body else {
            panic!("{alert:?}")
        };
        assert_eq!((a.failures, a.measure_id.as_str()), (3, "gw-bore-5000"));
        for s in 6..16 {
            ev.extend(measure(&mut m, 11.0, s));
        }
        assert_eq!(alerts(&ev), 1, "one alert per run");
        ev.extend(measure(&mut m, 10.0, 16));
        for s in 17..20 {
            ev.extend(measure(&mut m, 9.0, s));
        }
        assert_eq!(alerts(&ev), 2, "a pass ends the run");
    }

    #[test]
    fn a_run_of_failures_survives_a_restart() {
        let mut m = rule();
        measure(&mut m, 11.0, 0);
        measure(&mut m, 11.0, 1);
        let bytes = RuleState::Measurement(m.state.clone())
            .encode()
            .expect("encode");
        let RuleState::Measurement(state) = RuleState::decode(&bytes).expect("decode") else {
            panic!()
        };
        let mut m = Measurement::new(m.rule.clone(), state);
        assert_eq!(alerts(&measure(&mut m, 11.0, 2)), 1);
    }

    #[test]
    fn equal_times_get_distinct_ids() {
        let mut m = rule();
        let mut ev = measure(&mut m, 10.0, 1);
        ev.extend(measure(&mut m, 10.0, 1));
        assert_eq!(ev[0].id, "gw-bore-1000");
        assert_eq!(ev[1].id, "gw-bore-1000-1");
    }
}
