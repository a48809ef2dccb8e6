//! Stock levels: each good reading of the tag that differs from the last
//! one reported is one event with the new level (a value read again on
//! the next poll is not reported again). The level is absolute, so Odoo
//! is set to it, never moved by a difference.

use super::clock::{event_id, At, RuleClock};
use crate::config::StockRule;
use crate::model::{Event, EventBody, Quality, Sample, StockLevel};
use serde::{Deserialize, Serialize};

/// What survives a restart: the level last reported.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StockState {
    pub clock: RuleClock,
    pub last: Option<f64>,
}

pub struct Stock {
    pub rule: std::sync::Arc<StockRule>,
    pub state: StockState,
}

impl Stock {
    pub fn new(rule: impl Into<std::sync::Arc<StockRule>>, state: StockState) -> Self {
        let rule = rule.into();
        Stock { rule, state }
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
                "stock tag gave a value that is not a number; ignored");
            return false;
        };
        let quantity = crate::model::tidy(value);
        if self.state.last == Some(quantity) {
            return false;
        }
        let r = &self.rule;
        let time = self.state.clock.date(sample.time, at);
        let seq = self.state.clock.sequence(time);
        events.push(Event {
            id: event_id(gateway, &r.name, time, seq),
            rule: r.name.clone(),
            time,
            body: EventBody::StockLevel(StockLevel {
                product: r.product.clone(),
                product_at: r.product_at.clone(),
                location: r.location.clone(),
                location_at: r.location_at.clone(),
                quantity,
            }),
        });
        self.state.last = Some(quantity);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::testing::{at, reading};
    use crate::edge::RuleState;
    use crate::model::Value;

    fn rule(state: StockState) -> Stock {
        Stock::new(
            StockRule {
                name: "silo1".into(),
                tag: "silo1_kg".into(),
                product: "RESIN-PP".into(),
                product_at: "gw.toml:3:11".into(),
                location: "WH/Stock/Silo 1".into(),
                location_at: "gw.toml:4:12".into(),
                lane: None,
            },
            state,
        )
    }

    fn read(s: &mut Stock, v: f64, secs: i64) -> Vec<f64> {
        let mut ev = Vec::new();
        let sample = reading(Value::Float(v), secs * 1000);
        s.on_sample("gw", &sample, at(secs * 1000), &mut ev);
        ev.iter()
            .filter_map(|e| match &e.body {
                EventBody::StockLevel(l) => Some(l.quantity),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn each_new_level_is_one_event_and_a_level_read_again_none() {
        let mut s = rule(StockState::default());
        assert_eq!(read(&mut s, 250.0, 0), [250.0]);
        assert_eq!(read(&mut s, 250.0, 1), Vec::<f64>::new());
        assert_eq!(read(&mut s, 240.5, 2), [240.5]);
        // After a restart the last level reported is known: not again.
        let bytes = RuleState::Stock(s.state.clone()).encode().expect("encode");
        let RuleState::Stock(state) = RuleState::decode(&bytes).expect("decode") else {
            panic!("a stock state")
        };
        let mut s = rule(state);
        assert_eq!(read(&mut s, 240.5, 3), Vec::<f64>::new());
        assert_eq!(read(&mut s, 230.0, 4), [230.0]);
    }
}
