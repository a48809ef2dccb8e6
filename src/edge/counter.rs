//! Production from a part counter: the difference between two readings of a
//! monotonic counter, with wrap and reset detected.

use crate::config::ProductionRule;
use crate::model::{Event, EventBody, Production, Quality, Sample};
use serde::{Deserialize, Serialize};

/// What survives a restart: the last counter reading, so parts made while
/// the gateway was down are still counted once it is back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterState {
    pub last: Option<u64>,
}

pub struct Counter {
    pub rule: ProductionRule,
    pub state: CounterState,
}

/// What one reading did to the counter.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Nothing to post and nothing to save.
    None,
    /// The baseline moved without production (first reading, implausible jump).
    Rebased,
    Produced(Event),
}

impl Counter {
    pub fn on_sample(&mut self, gateway: &str, sample: &Sample) -> Step {
        if sample.quality != Quality::Good {
            return Step::None;
        }
        let Some(now) = sample.value.as_u64() else {
            tracing::warn!(rule = %self.rule.name, tag = %sample.tag, value = %sample.value,
                "counter tag gave a value that is not a non-negative integer; ignored");
            return Step::None;
        };
        let Some(last) = self.state.last else {
            self.state.last = Some(now);
            tracing::info!(rule = %self.rule.name, counter = now, "counter baseline taken");
            return Step::Rebased;
        };
        if now == last {
            return Step::None;
        }
        let quantity = self.delta(last, now);
        self.state.last = Some(now);
        if let Some(max) = self.rule.max_step {
            if quantity > max {
                tracing::warn!(rule = %self.rule.name, from = last, to = now, quantity, max_step = max,
                    "counter jump larger than max_step: re-based, nothing posted");
                return Step::Rebased;
            }
        }
        Step::Produced(Event {
            id: format!("{gateway}-{}-{}", self.rule.name, sample.time.0),
            rule: self.rule.name.clone(),
            time: sample.time,
            body: EventBody::Production(Production {
                workcenter: self.rule.workcenter.clone(),
                quantity,
                counter_from: last,
                counter_to: now,
            }),
        })
    }

    /// Parts between two readings. A drop is a wrap when the counter was in
    /// its top tenth and is now in its bottom tenth; any other drop is a reset
    /// to zero, after which `now` parts were made.
    fn delta(&self, last: u64, now: u64) -> u64 {
        if now > last {
            return now - last;
        }
        match self.rule.wraps_at {
            Some(max) if last > max / 10 * 9 && now < max / 10 => (max - last) + now + 1,
            _ => {
                tracing::info!(rule = %self.rule.name, from = last, to = now, "counter reset detected");
                now
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Millis;

    fn sample(tag: &str, value: u64, at: i64) -> Sample {
        Sample {
            tag: tag.to_string(),
            value: crate::model::Value::UInt(value),
            quality: Quality::Good,
            time: Millis(at),
            server_time: None,
        }
    }

    fn counter(wraps_at: Option<u64>, max_step: Option<u64>) -> Counter {
        Counter {
            rule: ProductionRule {
                name: "parts".into(),
                tag: "c".into(),
                workcenter: "WC".into(),
                wraps_at,
                max_step,
                lane: None,
            },
            state: CounterState::default(),
        }
    }

    fn qty(step: Step) -> Option<u64> {
        match step {
            Step::Produced(e) => match e.body {
                EventBody::Production(p) => Some(p.quantity),
                _ => None,
            },
            _ => None,
        }
    }

    #[test]
    fn first_reading_is_a_baseline_then_deltas() {
        let mut c = counter(Some(65535), None);
        assert_eq!(c.on_sample("gw", &sample("c", 100, 1)), Step::Rebased);
        assert_eq!(c.on_sample("gw", &sample("c", 100, 2)), Step::None);
        assert_eq!(qty(c.on_sample("gw", &sample("c", 105, 3))), Some(5));
    }

    #[test]
    fn wrap_and_reset() {
        let mut c = counter(Some(65535), None);
        c.on_sample("gw", &sample("c", 65530, 1));
        assert_eq!(qty(c.on_sample("gw", &sample("c", 4, 2))), Some(10));
        assert_eq!(
            qty(c.on_sample("gw", &sample("c", 2, 3))),
            Some(2),
            "reset counts from zero"
        );
    }

    #[test]
    fn implausible_jump_is_not_production() {
        let mut c = counter(None, Some(100));
        c.on_sample("gw", &sample("c", 10, 1));
        assert_eq!(c.on_sample("gw", &sample("c", 5000, 2)), Step::Rebased);
        assert_eq!(qty(c.on_sample("gw", &sample("c", 5003, 3))), Some(3));
    }

    #[test]
    fn event_id_is_deterministic() {
        let mut a = counter(None, None);
        let mut b = counter(None, None);
        for c in [&mut a, &mut b] {
            c.on_sample("gw", &sample("c", 1, 1));
        }
        let ea = a.on_sample("gw", &sample("c", 2, 7));
        let eb = b.on_sample("gw", &sample("c", 2, 7));
        assert_eq!(ea, eb);
        let Step::Produced(e) = ea else { panic!() };
        assert_eq!(e.id, "gw-parts-7");
    }
}
