//! The edge: turns samples into business events. Not every signal goes to
//! Odoo; each `[[events]]` rule reads one tag and decides what matters.
//!
//! This is a synchronous core with no I/O: the pipeline feeds it samples and
//! commits what it returns (events plus the rule states that produced them)
//! in one store transaction, so a crash can neither lose nor repeat an event.

mod counter;
mod downtime;

pub use counter::CounterState;
pub use downtime::DowntimeState;

use crate::config::EventRule;
use crate::model::{Event, PayloadError, Sample};
use counter::{Counter, Step};
use downtime::Downtime;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A rule's persisted state, stored under its name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RuleState {
    Counter(CounterState),
    Downtime(DowntimeState),
}

enum Rule {
    Counter(Counter),
    Downtime(Downtime),
}

impl Rule {
    fn name(&self) -> &str {
        match self {
            Rule::Counter(c) => &c.rule.name,
            Rule::Downtime(d) => &d.rule.name,
        }
    }

    fn state(&self) -> RuleState {
        match self {
            Rule::Counter(c) => RuleState::Counter(c.state.clone()),
            Rule::Downtime(d) => RuleState::Downtime(d.state.clone()),
        }
    }
}

/// What a batch of samples produced: events to append, and the new state of
/// each rule that changed, to be committed together.
#[derive(Debug, Default)]
pub struct Output {
    pub events: Vec<Event>,
    pub states: Vec<(String, RuleState)>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.states.is_empty()
    }

    /// The states as the store keeps them.
    pub fn encoded_states(&self) -> Result<Vec<(String, Vec<u8>)>, postcard::Error> {
        self.states
            .iter()
            .map(|(n, s)| Ok((n.clone(), s.encode()?)))
            .collect()
    }
}

/// Version byte of [`RuleState::encode`]. Version 0 is format 0's
/// unversioned state (carried over by the store's migration), which still
/// has today's shape; when `RuleState` changes, freeze a copy of the old
/// shape and decode each version with its own.
const STATE_V1: u8 = 1;
const STATE_V0: u8 = crate::store::migrate::LEGACY_PAYLOAD;

impl RuleState {
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        let mut out = vec![STATE_V1];
        out.extend(postcard::to_stdvec(self)?);
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<RuleState, PayloadError> {
        match bytes.split_first() {
            Some((&STATE_V1 | &STATE_V0, rest)) => Ok(postcard::from_bytes(rest)?),
            Some((&v, _)) => Err(PayloadError::Version(v)),
            None => Err(PayloadError::Empty),
        }
    }
}

/// Decode stored rule states; an unreadable one is logged and its rule
/// starts fresh (a counter then takes a new baseline: no parts invented).
pub fn restore(stored: Vec<(String, Vec<u8>)>) -> HashMap<String, RuleState> {
    let mut out = HashMap::new();
    for (name, bytes) in stored {
        match RuleState::decode(&bytes) {
            Ok(s) => {
                out.insert(name, s);
            }
            Err(e) => {
                tracing::warn!(rule = %name, error = %e, "stored rule state unreadable; the rule starts fresh")
            }
        }
    }
    out
}

pub struct Edge {
    gateway: String,
    rules: Vec<Rule>,
    /// Tag name → indexes into `rules`.
    by_tag: HashMap<String, Vec<usize>>,
}

impl Edge {
    /// Build the rules, resuming each from its stored state when the kind matches.
    pub fn new(
        gateway: &str,
        rules: &[EventRule],
        mut restored: HashMap<String, RuleState>,
    ) -> Self {
        let mut built = Vec::new();
        let mut by_tag: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            let state = restored.remove(rule.name());
            let r = match rule {
                EventRule::Production(p) => Rule::Counter(Counter {
                    rule: p.clone(),
                    state: match state {
                        Some(RuleState::Counter(s)) => s,
                        _ => CounterState::default(),
                    },
                }),
                EventRule::Downtime(d) => Rule::Downtime(Downtime {
                    rule: d.clone(),
                    state: match state {
                        Some(RuleState::Downtime(s)) => s,
                        _ => DowntimeState::default(),
                    },
                }),
            };
            by_tag.entry(rule.tag().to_string()).or_default().push(i);
            built.push(r);
        }
        Edge {
            gateway: gateway.to_string(),
            rules: built,
            by_tag,
        }
    }

    /// Apply one sample to every rule reading its tag.
    pub fn apply(&mut self, sample: &Sample, out: &mut Output) {
        let Some(indexes) = self.by_tag.get(&sample.tag) else {
            return;
        };
        for &i in indexes {
            let rule = &mut self.rules[i];
            let changed = match rule {
                Rule::Counter(c) => match c.on_sample(&self.gateway, sample) {
                    Step::None => false,
                    Step::Rebased => true,
                    Step::Produced(e) => {
                        out.events.push(e);
                        true
                    }
                },
                Rule::Downtime(d) => d.on_sample(&self.gateway, sample, &mut out.events),
            };
            if changed {
                let name = rule.name().to_string();
                let state = rule.state();
                // Keep only the latest state per rule within a batch.
                out.states.retain(|(n, _)| n != &name);
                out.states.push((name, state));
            }
        }
    }
}
