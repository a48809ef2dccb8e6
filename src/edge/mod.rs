//! The edge: turns samples into business events. Not every signal goes to
//! Odoo; each `[[events]]` rule reads one tag and decides what matters.
//!
//! This is a synchronous core with no I/O: the pipeline feeds it samples
//! ([`Edge::apply`]), ticks it ([`Edge::tick`], so time-based rules fire
//! while a source that reports only changes is silent) and flushes it at a
//! graceful stop ([`Edge::flush`]); it commits what each returns (events
//! plus the rule states that produced them) in one store transaction, so a
//! crash can neither lose nor repeat an event. How event dates, durations
//! and ids relate to the wall and monotonic clocks is in [`clock`].

mod alarm;
pub mod clock;
mod counter;
mod derive;
mod downtime;
mod limit;
mod measurement;
mod stock;
#[cfg(test)]
mod testing;
mod window;

pub use alarm::AlarmState;
pub use clock::{Mono, Now};
pub use counter::{CounterState, Period};
pub use downtime::{DowntimeState, OpenStop};
pub use measurement::MeasurementState;
pub use stock::StockState;
pub use window::WindowState;

use crate::config::EventRule;
use crate::model::{Event, PayloadError, Sample, TagId, TagTable};
use alarm::Alarm;
use clock::{At, Timeline};
use counter::Counter;
use downtime::Downtime;
use measurement::Measurement;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use stock::Stock;
use window::Window;

/// A rule's persisted state, stored under its name. New variants go at
/// the end only (postcard stores the variant's index), so version 2
/// states written before them decode unchanged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RuleState {
    Counter(CounterState),
    Downtime(DowntimeState),
    Alarm(AlarmState),
    Measurement(MeasurementState),
    Window(WindowState),
    Stock(StockState),
}

/// Each rule on the heap at its own size: inline, every rule took the
/// largest kind's room.
enum Rule {
    Counter(Box<Counter>),
    Downtime(Box<Downtime>),
    Alarm(Box<Alarm>),
    Measurement(Box<Measurement>),
    Window(Box<Window>),
    Stock(Box<Stock>),
}

impl Rule {
    fn name(&self) -> &str {
        match self {
            Rule::Counter(c) => &c.rule.name,
            Rule::Downtime(d) => &d.rule.name,
            Rule::Alarm(a) => &a.rule.name,
            Rule::Measurement(m) => &m.rule.name,
            Rule::Window(w) => &w.rule.name,
            Rule::Stock(s) => &s.rule.name,
        }
    }

    fn state(&self) -> RuleState {
        match self {
            Rule::Counter(c) => RuleState::Counter(c.state.clone()),
            Rule::Downtime(d) => RuleState::Downtime(d.state.clone()),
            Rule::Alarm(a) => RuleState::Alarm(a.state.clone()),
            Rule::Measurement(m) => RuleState::Measurement(m.state.clone()),
            Rule::Window(w) => RuleState::Window(w.state.clone()),
            Rule::Stock(s) => RuleState::Stock(s.state.clone()),
        }
    }

    fn last_date(&self) -> Option<crate::model::Millis> {
        match self {
            Rule::Counter(c) => c.state.clock.last,
            Rule::Downtime(d) => d.state.clock.last,
            Rule::Alarm(a) => a.state.clock.last,
            Rule::Measurement(m) => m.state.clock.last,
            Rule::Window(w) => w.state.clock.last,
            Rule::Stock(s) => s.state.clock.last,
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

/// Version byte of [`RuleState::encode`]. Version 3 added a counter's
/// scrap counter, a downtime rule's debounce and intervals and a
/// measurement's product; version 2
/// (the open period of a counter and each rule's [`clock::RuleClock`]) has
/// the shape frozen in [`v2`]. Versions 1 and 0 (format 0's unversioned
/// state, carried over by the store's migration) have the shape frozen in
/// [`v1`]. When `RuleState` changes again, freeze a copy of this shape and
/// decode each version with its own.
const STATE_V3: u8 = 3;
const STATE_V2: u8 = 2;
const STATE_V1: u8 = 1;
const STATE_V0: u8 = crate::store::migrate::LEGACY_PAYLOAD;

impl RuleState {
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        let mut out = vec![STATE_V3];
        out.extend(postcard::to_stdvec(self)?);
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<RuleState, PayloadError> {
        match bytes.split_first() {
            Some((&STATE_V3, rest)) => Ok(postcard::from_bytes(rest)?),
            Some((&STATE_V2, rest)) => Ok(postcard::from_bytes::<v2::RuleState>(rest)?.into()),
            Some((&STATE_V1 | &STATE_V0, rest)) => {
                Ok(postcard::from_bytes::<v1::RuleState>(rest)?.into())
            }
            Some((&v, _)) => Err(PayloadError::Version(v)),
            None => Err(PayloadError::Empty),
        }
    }
}

/// Rule states as versions 0 and 1 wrote them.
mod v1 {
    use crate::model::Millis;
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub enum RuleState {
        Counter(CounterState),
        Downtime(DowntimeState),
    }

    #[derive(Deserialize)]
    pub struct CounterState {
        pub last: Option<u64>,
    }

    #[derive(Deserialize)]
    pub struct DowntimeState {
        pub open: Option<OpenStop>,
    }

    #[derive(Deserialize)]
    pub struct OpenStop {
        pub state: i64,
        pub since: Millis,
        pub announced: bool,
    }

    impl From<RuleState> for super::RuleState {
        fn from(s: RuleState) -> Self {
            match s {
                RuleState::Counter(c) => super::RuleState::Counter(super::CounterState {
                    last: c.last,
                    ..Default::default()
                }),
                RuleState::Downtime(d) => {
                    // The open stop's start is the rule's last date: ids
                    // and dates go on from there.
                    let clock = super::clock::RuleClock {
                        last: d.open.as_ref().map(|o| o.since),
                        id_start: d.open.as_ref().map(|o| o.since),
                        seq: 0,
                    };
                    super::RuleState::Downtime(super::DowntimeState {
                        open: d.open.map(|o| super::OpenStop {
                            state: o.state,
                            since: o.since,
                            announced: o.announced,
                            seq: 0,
                            code: None,
                        }),
                        clock,
                        code: None,
                        ..Default::default()
                    })
                }
            }
        }
    }
}

/// Rule states as version 2 wrote them: counters, downtime rules and
/// measurements had fewer fields; the other kinds are unchanged.
mod v2 {
    use super::clock::RuleClock;
    use crate::model::Millis;
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub enum RuleState {
        Counter(CounterState),
        Downtime(DowntimeState),
        Alarm(super::AlarmState),
        Measurement(MeasurementState),
        Window(super::WindowState),
        Stock(super::StockState),
    }

    #[derive(Deserialize)]
    pub struct CounterState {
        pub last: Option<u64>,
        pub period: Option<Period>,
        pub clock: RuleClock,
    }

    #[derive(Deserialize)]
    pub struct Period {
        pub start: Millis,
        pub seq: u32,
        pub quantity: u64,
        pub counter_from: u64,
        pub counter_to: u64,
    }

    #[derive(Deserialize)]
    pub struct MeasurementState {
        pub clock: RuleClock,
        pub failures: u32,
        pub alerted: bool,
    }

    #[derive(Deserialize)]
    pub struct DowntimeState {
        pub open: Option<super::OpenStop>,
        pub clock: RuleClock,
        pub code: Option<i64>,
    }

    impl From<RuleState> for super::RuleState {
        fn from(s: RuleState) -> Self {
            match s {
                RuleState::Counter(c) => super::RuleState::Counter(super::CounterState {
                    last: c.last,
                    period: c.period.map(|p| super::Period {
                        start: p.start,
                        seq: p.seq,
                        quantity: p.quantity,
                        counter_from: p.counter_from,
                        counter_to: p.counter_to,
                        scrap: 0,
                        scrap_from: 0,
                        scrap_to: 0,
                    }),
                    clock: c.clock,
                    ..Default::default()
                }),
                RuleState::Downtime(d) => super::RuleState::Downtime(super::DowntimeState {
                    // The state of an open stop was the value last taken.
                    taken: d.open.as_ref().map(|o| o.state),
                    open: d.open,
                    clock: d.clock,
                    code: d.code,
                    ..Default::default()
                }),
                RuleState::Alarm(a) => super::RuleState::Alarm(a),
                RuleState::Measurement(m) => {
                    super::RuleState::Measurement(super::MeasurementState {
                        clock: m.clock,
                        failures: m.failures,
                        alerted: m.alerted,
                        product: None,
                    })
                }
                RuleState::Window(w) => super::RuleState::Window(w),
                RuleState::Stock(k) => super::RuleState::Stock(k),
            }
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
    /// Tag id → the rules that read it.
    by_tag: ByTag,
    /// Event dates never go back, across restarts too (see [`clock`]).
    timeline: Timeline,
    /// `[[derived]]` tags, computed from the samples as they come.
    derived: derive::Derived,
    /// Tags with a `min_interval`.
    limits: limit::Limits,
}

impl Edge {
    /// Build the rules, resuming each from its stored state when the kind
    /// matches. `tags` gives the ids of the tags they read.
    pub fn new(
        gateway: &str,
        tags: &TagTable,
        rules: &[EventRule],
        mut restored: HashMap<String, RuleState>,
    ) -> Self {
        let mut built = Vec::with_capacity(rules.len());
        let mut reads = Vec::with_capacity(rules.len());
        let mut timeline = Timeline::default();
        for (i, rule) in rules.iter().enumerate() {
            let state = restored.remove(rule.name());
            let r = match rule {
                EventRule::Production(p) => Rule::Counter(Box::new(Counter::new(
                    p.clone(),
                    match state {
                        Some(RuleState::Counter(s)) => s,
                        _ => CounterState::default(),
                    },
                ))),
                EventRule::Downtime(d) => Rule::Downtime(Box::new(Downtime::new(
                    d.clone(),
                    match state {
                        Some(RuleState::Downtime(s)) => s,
                        _ => DowntimeState::default(),
                    },
                ))),
                EventRule::Alarm(a) => Rule::Alarm(Box::new(Alarm::new(
                    a.clone(),
                    match state {
                        Some(RuleState::Alarm(s)) => s,
                        _ => AlarmState::default(),
                    },
                ))),
                EventRule::Measurement(m) => Rule::Measurement(Box::new(Measurement::new(
                    m.clone(),
                    match state {
                        Some(RuleState::Measurement(s)) => s,
                        _ => MeasurementState::default(),
                    },
                ))),
                EventRule::Window(w) => Rule::Window(Box::new(Window::new(
                    w.clone(),
                    match state {
                        Some(RuleState::Window(s)) => s,
                        _ => WindowState::default(),
                    },
                ))),
                EventRule::Stock(k) => Rule::Stock(Box::new(Stock::new(
                    k.clone(),
                    match state {
                        Some(RuleState::Stock(s)) => s,
                        _ => StockState::default(),
                    },
                ))),
            };
            if let Some(t) = r.last_date() {
                timeline.seen(t);
            }
            // A valid config names only configured tags; a rule reading
            // another would never see a sample.
            let rule_index = u32::try_from(i).unwrap_or(u32::MAX);
            if let Some(t) = tags.id(rule.tag()) {
                reads.push((
                    t,
                    Read {
                        rule: rule_index,
                        second: false,
                    },
                ));
            }
            if let EventRule::Downtime(d) = rule {
                if let Some(t) = d.reason_tag.as_ref().filter(|t| **t != d.tag) {
                    if let Some(t) = tags.id(t) {
                        reads.push((
                            t,
                            Read {
                                rule: rule_index,
                                second: true,
                            },
                        ));
                    }
                }
            }
            let other = match rule {
                EventRule::Production(p) => p.scrap.as_ref().map(|s| &s.tag),
                EventRule::Measurement(m) => m.product_tag.as_ref(),
                _ => None,
            };
            if let Some(t) = other.and_then(|t| tags.id(t)) {
                reads.push((
                    t,
                    Read {
                        rule: rule_index,
                        second: true,
                    },
                ));
            }
            built.push(r);
        }
        Edge {
            gateway: gateway.to_string(),
            rules: built,
            by_tag: ByTag::new(tags.len(), reads),
            timeline,
            derived: derive::Derived::new(&[]),
            limits: limit::Limits::default(),
        }
    }

    /// Apply the tags' rate limits (`min_interval`).
    pub fn with_tags(mut self, tags: &[crate::config::TagConfig]) -> Self {
        self.limits = limit::Limits::new(
            tags.iter()
                .filter_map(|t| t.min_interval.map(|d| (t.id, d))),
        );
        self
    }

    /// Compute these derived tags from the samples, for the rules that
    /// read them.
    pub fn with_derived(mut self, tags: &[crate::config::derived::DerivedTag]) -> Self {
        self.derived = derive::Derived::new(tags);
        self
    }

    /// Apply one sample, received at `now`, to every rule reading its tag
    /// (and to the rules of the derived tags it changes).
    pub fn apply(&mut self, sample: &Sample, now: Now, out: &mut Output) {
        let at = self.timeline.at(now);
        if !self.limits.is_empty() && !self.limits.pass(sample, now.mono) {
            return;
        }
        self.reading(sample, at, out);
    }

    /// A reading the rules see: to its rules, then to its derived tags'.
    fn reading(&mut self, sample: &Sample, at: At, out: &mut Output) {
        self.dispatch(sample, at, out);
        if !self.derived.is_empty() {
            for d in self.derived.on_sample(sample) {
                self.dispatch(&d, at, out);
            }
        }
    }

    fn dispatch(&mut self, sample: &Sample, at: At, out: &mut Output) {
        for &Read { rule, second } in self.by_tag.get(sample.tag) {
            let rule = &mut self.rules[rule as usize];
            let changed = match rule {
                Rule::Counter(c) if second => {
                    c.on_scrap(&self.gateway, sample, at, &mut out.events)
                }
                Rule::Counter(c) => c.on_sample(&self.gateway, sample, at, &mut out.events),
                Rule::Downtime(d) if second => d.on_code(sample),
                Rule::Downtime(d) => d.on_sample(&self.gateway, sample, at, &mut out.events),
                Rule::Alarm(a) => a.on_sample(&self.gateway, sample, at, &mut out.events),
                Rule::Measurement(m) if second => m.on_product(sample),
                Rule::Measurement(m) => m.on_sample(&self.gateway, sample, at, &mut out.events),
                Rule::Window(w) => w.on_sample(&self.gateway, sample, at, &mut out.events),
                Rule::Stock(s) => s.on_sample(&self.gateway, sample, at, &mut out.events),
            };
            if changed {
                out.changed(rule);
            }
        }
    }

    /// Let time pass with no sample: stops held for `min_duration` are
    /// announced, aggregation periods that have run `report_every` end,
    /// alarms whose on-delay (or `clear_for`) has passed are raised
    /// (cleared), windows the timeline has passed close, and readings held
    /// by a rate limit whose interval has passed reach their rules.
    pub fn tick(&mut self, now: Now, out: &mut Output) {
        let at = self.timeline.at(now);
        if !self.limits.is_empty() {
            for s in self.limits.release(now.mono) {
                self.reading(&s, at, out);
            }
        }
        for rule in &mut self.rules {
            let changed = match rule {
                Rule::Counter(c) => c.on_tick(&self.gateway, at, &mut out.events),
                Rule::Downtime(d) => d.on_tick(&self.gateway, at, &mut out.events),
                Rule::Alarm(a) => a.on_tick(&self.gateway, at, &mut out.events),
                Rule::Window(w) => w.on_tick(&self.gateway, at, &mut out.events),
                Rule::Measurement(_) | Rule::Stock(_) => false,
            };
            if changed {
                out.changed(rule);
            }
        }
    }

    /// A graceful stop: report every open aggregation period now. (An open
    /// stop stays open: it is still in progress, and its state resumes it.)
    pub fn flush(&mut self, now: Now, out: &mut Output) {
        let at: At = self.timeline.at(now);
        for rule in &mut self.rules {
            let changed = match rule {
                Rule::Counter(c) => c.flush(&self.gateway, at, &mut out.events),
                Rule::Downtime(_)
                | Rule::Alarm(_)
                | Rule::Measurement(_)
                | Rule::Window(_)
                | Rule::Stock(_) => false,
            };
            if changed {
                out.changed(rule);
            }
        }
    }
}

/// Tag id → the rules that read it, in one flat list: the rules of tag
/// `t` are `reads[starts[t]..starts[t + 1]]` (a few bytes per tag, where
/// a map of names cost a key and a vector each).
struct ByTag {
    starts: Vec<u32>,
    reads: Vec<Read>,
}

/// A rule reading a tag.
#[derive(Clone, Copy)]
struct Read {
    /// Index into the edge's rules.
    rule: u32,
    /// The tag is the rule's second tag, not the one it is about: a
    /// downtime rule's `reason_tag`, a production rule's `scrap_tag`, a
    /// measurement's `product_tag`.
    second: bool,
}

impl ByTag {
    fn new(tags: usize, mut reads: Vec<(TagId, Read)>) -> ByTag {
        // Stable: a tag's rules keep the config's order.
        reads.sort_by_key(|(t, _)| *t);
        let mut starts = Vec::with_capacity(tags + 1);
        let mut next = 0;
        for t in 0..tags {
            starts.push(u32::try_from(next).unwrap_or(u32::MAX));
            while reads.get(next).is_some_and(|(id, _)| id.index() == t) {
                next += 1;
            }
        }
        starts.push(u32::try_from(next).unwrap_or(u32::MAX));
        reads.truncate(next);
        ByTag {
            starts,
            reads: reads.into_iter().map(|(_, r)| r).collect(),
        }
    }

    /// The rules reading `tag` (none for an unconfigured one).
    fn get(&self, tag: TagId) -> &[Read] {
        let i = tag.index();
        match (self.starts.get(i), self.starts.get(i.wrapping_add(1))) {
            (Some(&a), Some(&b)) => &self.reads[a as usize..b as usize],
            _ => &[],
        }
    }
}

impl Output {
    /// Keep only the latest state per rule within a batch.
    fn changed(&mut self, rule: &Rule) {
        let name = rule.name();
        let state = rule.state();
        self.states.retain(|(n, _)| n != name);
        self.states.push((name.to_string(), state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DowntimeRule, ProductionRule};
    use crate::model::{EventBody, Millis, Quality, Value};
    use std::time::Duration;

    fn edge() -> Edge {
        let rules = [
            EventRule::Production(std::sync::Arc::new(ProductionRule {
                name: "parts".into(),
                tag: "c".into(),
                workcenter: "WC".into(),
                wraps_at: None,
                max_step: None,
                report_every: Some(Duration::from_secs(1)),
                report_parts: None,
                parts_per_stroke: 1,
                scrap: None,
                lane: None,
            })),
            EventRule::Downtime(std::sync::Arc::new(DowntimeRule {
                name: "stops".into(),
                tag: "s".into(),
                workcenter: "WC".into(),
                min_duration: Duration::from_secs(3),
                running: vec![1],
                reasons: vec![],
                default_loss: "mrp.block_reason0".into(),
                default_description: "Stopped".into(),
                reason_tag: None,
                codes: vec![],
                idle: vec![],
                debounce: Duration::ZERO,
                intervals: false,
                lane: None,
            })),
        ];
        Edge::new("gw", &tags(), &rules, HashMap::new())
    }

    fn tags() -> TagTable {
        TagTable::new(["c", "s"])
    }

    fn now(wall: i64, mono: u64) -> Now {
        Now {
            wall: Millis(wall),
            mono: Mono(mono),
        }
    }

    fn sample(tag: &str, value: i64, wall: i64) -> Sample {
        Sample {
            tag: tags().id(tag).expect("configured"),
            unconfigured: None,
            value: Value::Int(value),
            quality: Quality::Good,
            time: Millis(wall),
            server_time: None,
            receipt: None,
        }
    }

    #[test]
    fn derived_tags_reach_their_own_rules_by_id() {
        let cfg = crate::config::parse(
            r#"
[gateway]
id = "gw"
[[sources]]
name = "plc"
kind = "modbus_tcp"
address = "127.0.0.1:502"
[[tags]]
name = "cavity_a"
source = "plc"
register = 100
type = "u32"
[[tags]]
name = "cavity_b"
source = "plc"
register = 104
type = "u32"
[[derived]]
name = "parts"
expr = "cavity_a + cavity_b"
[[events]]
kind = "production"
name = "both"
tag = "parts"
workcenter = "WC"
report_every = "1s"
[[events]]
kind = "production"
name = "a_only"
tag = "cavity_a"
workcenter = "WC"
report_every = "1s"
[odoo]
dry_run = true
"#,
            std::path::Path::new("gw.toml"),
        )
        .expect("config");
        let ids = &cfg.tag_table;
        let parts = ids.id("parts").expect("a derived tag has an id");
        assert_eq!(cfg.derived[0].id, parts);
        assert_eq!(
            (parts.index(), ids.name(parts)),
            (2, Some("parts")),
            "derived tags come after [[tags]]"
        );
        let mut e = Edge::new("gw", ids, &cfg.events, HashMap::new()).with_derived(&cfg.derived);
        let mut out = Output::default();
        let mut read = |tag: &str, v: u64, ms: i64| {
            let s = Sample {
                tag: ids.id(tag).expect("configured"),
                unconfigured: None,
                value: crate::model::Value::UInt(v),
                quality: Quality::Good,
                time: Millis(ms),
                server_time: None,
                receipt: None,
            };
            e.apply(&s, now(ms, ms as u64), &mut out);
        };
        read("cavity_a", 0, 0);
        read("cavity_b", 0, 0);
        read("cavity_a", 5, 100);
        read("cavity_b", 3, 200);
        e.tick(now(1_500, 1_500), &mut out);
        let mut made: Vec<_> = out
            .events
            .iter()
            .map(|ev| match &ev.body {
                EventBody::Production(p) => (ev.rule.as_str(), p.quantity),
                other => panic!("{other:?}"),
            })
            .collect();
        made.sort();
        assert_eq!(
            made,
            [("a_only", 5), ("both", 8)],
            "the sum reaches the rule on `parts`, the input its own rule"
        );
    }

    #[test]
    fn a_tag_no_config_names_reaches_no_rule() {
        let mut e = edge();
        let mut out = Output::default();
        e.apply(&sample("c", 0, 1_000), now(1_000, 0), &mut out);
        // An MQTT name built from topic levels, configured nowhere.
        let stray = Sample {
            tag: TagId::UNCONFIGURED,
            unconfigured: Some("press9_count".into()),
            ..sample("c", 50, 1_100)
        };
        e.apply(&stray, now(1_100, 100), &mut out);
        e.tick(now(2_500, 1_500), &mut out);
        assert!(
            out.events.is_empty(),
            "the counter saw only its baseline: {:?}",
            out.events
        );
        assert_eq!(stray.name(&tags()), "press9_count");
    }

    #[test]
    fn ticks_fire_rules_across_a_wall_clock_step_back() {
        const W: i64 = 1_780_000_000_000;
        const BACK: i64 = W - 3_600_000;
        let mut e = edge();
        let mut out = Output::default();
        e.apply(&sample("c", 0, W), now(W, 0), &mut out);
        e.apply(&sample("s", 1, W), now(W, 0), &mut out);
        e.apply(&sample("c", 4, W + 500), now(W + 500, 500), &mut out);
        e.apply(&sample("s", 3, W + 1_000), now(W + 1_000, 1_000), &mut out);
        // NTP steps the clock back an hour; the sources are silent.
        for mono in (1_250..=6_000).step_by(250) {
            e.tick(now(BACK + mono as i64, mono), &mut out);
        }
        let kinds: Vec<_> = out.events.iter().map(|ev| ev.kind()).collect();
        assert_eq!(
            kinds,
            ["production", "downtime_started"],
            "the period ends and the stop is announced on the monotonic clock"
        );
        assert_eq!(out.events[1].id, "gw-stops-1780000001000-start");
        e.apply(
            &sample("s", 1, BACK + 7_000),
            now(BACK + 7_000, 7_000),
            &mut out,
        );
        let EventBody::DowntimeEnded(i) = &out.events[2].body else {
            panic!("{:?}", out.events)
        };
        assert!(i.end >= Some(i.start), "{i:?}");
        assert!(
            out.events.iter().all(|ev| ev.time <= Millis(W + 1_000)),
            "nothing dated past a clock reading the gateway had: {:?}",
            out.events
        );
        // Each rule's latest state is there to be committed with the events.
        let names: Vec<_> = out.states.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // The stored state carries the rule's last date: a restart resumes
        // its timeline from there.
        let restored = restore(out.encoded_states().expect("encode"));
        let RuleState::Downtime(d) = &restored["stops"] else {
            panic!()
        };
        assert_eq!(d.clock.last, Some(Millis(W + 1_000)));
    }
}
