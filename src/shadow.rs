//! `plantgate config try NEW`: a shadow run. The candidate config's rules
//! run beside the current config's on the same live samples, and the
//! report says, per rule, which events each would have sent and where they
//! differ, so a change is reviewed on live data before it reaches the ERP.
//!
//! What it promises:
//! - Nothing leaves the process: no Odoo call, no MQTT publish, no store.
//!   Both edges' events are kept in memory for the report (a dry run), and
//!   the running gateway's store is neither opened nor read.
//! - Both edges see the same samples at the same clock readings, and both
//!   start fresh (no rule state), so every difference in the report comes
//!   from the rules, never from what each had seen before. (The running
//!   gateway's rule states are not copied: its store has one writer, which
//!   holds it, and sled has no read-only open.)
//! - The devices are read once per poll, over the try's own connections
//!   (a running gateway does not share its samples). What is read is the
//!   current config's sources and tags, plus the sources and tags only the
//!   candidate has; a tag or source both have but the candidate defines
//!   differently is read as the current config says, and the report notes
//!   that its change is not tried. A serial line (Modbus RTU) has one
//!   master, the running gateway, so its source is not read (noted too).
//!   An MQTT source subscribes with its own client id and a clean session,
//!   so it neither takes over the gateway's session nor its queued messages.
//!
//! The core ([`Shadow`]) is synchronous and pure, like the edge; [`run`]
//! is its thin async shell over the real sources.

use crate::config::{Config, SourceConfig, SourceKind, TagConfig};
use crate::edge::{Edge, Now, Output};
use crate::model::{Event, Millis, Sample};
use crate::pipeline::{self, EdgeClock, EDGE_TICK};
use crate::sources;
use crate::status::Telemetry;
use crate::supervise::Stages;
use crate::tags::{TagId, TagTable};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Samples in flight between the sources and the two edges.
const SAMPLE_CHANNEL: usize = 4096;

/// How long the sources get to stop at the end.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Events listed per rule and side; the counts stay exact past it.
const LISTED: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    #[error("{0}: it ended before the try did, so the comparison would be incomplete")]
    StageEnded(String),
    #[error(
        "the candidate config has no rules and the current one none either: nothing to compare"
    )]
    NoRules,
}

/// What is read for both edges: the current config's sources and tags plus
/// the candidate's new ones (see the module doc), and what the report must
/// say about the rest.
pub fn reading_config(current: &Config, candidate: &Config) -> (Config, Vec<String>) {
    let mut read = current.clone();
    let mut notes = Vec::new();
    for s in &candidate.sources {
        match current.sources.iter().find(|c| c.name == s.name) {
            None => read.sources.push(s.clone()),
            Some(c) if format!("{:?}", c.kind) != format!("{:?}", s.kind) => notes.push(format!(
                "source {}: read as the current config sets it up; the candidate's change to it is not tried",
                s.name
            )),
            Some(_) => {}
        }
    }
    for t in &candidate.tags {
        match current.tags.iter().find(|c| c.name == t.name) {
            None => read.tags.push(t.clone()),
            Some(c) if !same_reading(c, t) => notes.push(format!(
                "tag {}: read as the current config defines it; the candidate's change to it is not tried",
                t.name
            )),
            Some(_) => {}
        }
    }
    read.sources.retain_mut(|s| keep_source(s, &mut notes));
    let kept: Vec<&str> = read.sources.iter().map(|s| s.name.as_str()).collect();
    let before = read.tags.len();
    read.tags.retain(|t| kept.contains(&t.source.as_str()));
    if read.tags.len() < before {
        notes.push(format!(
            "{} tags of the sources not read give no samples to either config",
            before - read.tags.len()
        ));
    }
    // The tags read get ids of their own; each edge sees them under its
    // config's ids (see [`Shadow::apply`]).
    read.tag_table = Arc::new(crate::config::intern(&mut read.tags, &mut read.derived));
    (read, notes)
}

/// Whether two tag definitions read the same values. The rate limit
/// (`min_interval`) is the edge's, applied by each config's own edge, so a
/// change to it is tried. The config types hold no positions, so their
/// debug forms compare their settings.
fn same_reading(a: &TagConfig, b: &TagConfig) -> bool {
    let plain = |t: &TagConfig| {
        let mut t = t.clone();
        t.min_interval = None;
        format!("{t:?}")
    };
    plain(a) == plain(b)
}

/// Adapt a source so reading it disturbs the running gateway as little as
/// possible; false when it must not be read at all.
fn keep_source(s: &mut SourceConfig, notes: &mut Vec<String>) -> bool {
    match &mut s.kind {
        SourceKind::Modbus(m) => {
            if let crate::config::modbus::Transport::Rtu(line) = &m.transport {
                notes.push(format!(
                    "source {} (Modbus RTU on {}) is not read: a serial line has one master, the running gateway",
                    s.name, line.device
                ));
                return false;
            }
            true
        }
        #[cfg(feature = "opcua")]
        SourceKind::OpcUa(_) => true,
        #[cfg(feature = "mqtt")]
        SourceKind::Mqtt(m) => {
            // A broker drops a client whose id connects again, and a
            // persistent session would hand the gateway's queued messages
            // to the try.
            m.client_id = format!("{}-try", m.client_id);
            m.clean_session = true;
            m.dead_letter = false;
            true
        }
    }
}

/// The two edges on the same samples, and the events each sent.
pub struct Shadow {
    current: Side,
    candidate: Side,
    /// Rule names and kinds of each config, in config order.
    rules: [Vec<(String, &'static str)>; 2],
    samples: u64,
}

struct Side {
    edge: Edge,
    events: Vec<Event>,
    /// The id of each tag read (by its id in the reading table) in this
    /// side's config; unconfigured for a tag only the other side has.
    ids: Vec<TagId>,
}

impl Side {
    fn take(&mut self, out: Output) {
        // Nothing is committed: the rule states stay in the edge only.
        self.events.extend(out.events);
    }
}

impl Shadow {
    /// Both edges fresh, built as the gateway builds its own, for samples
    /// carrying the ids of `read` (the tags [`reading_config`] reads).
    pub fn new(read: &TagTable, current: &Config, candidate: &Config) -> Shadow {
        let side = |c: &Config| Side {
            edge: pipeline::edge_for(c, HashMap::new()),
            events: Vec::new(),
            ids: (0..read.len())
                .map(|i| {
                    read.name(TagId::from_index(i))
                        .and_then(|n| c.tag_table.id(n))
                        .unwrap_or(TagId::UNCONFIGURED)
                })
                .collect(),
        };
        let rules = |c: &Config| {
            c.events
                .iter()
                .map(|r| (r.name().to_string(), r.kind()))
                .collect()
        };
        Shadow {
            current: side(current),
            candidate: side(candidate),
            rules: [rules(current), rules(candidate)],
            samples: 0,
        }
    }

    pub fn apply(&mut self, sample: &Sample, now: Now) {
        self.samples += 1;
        for side in [&mut self.current, &mut self.candidate] {
            let mut out = Output::default();
            let seen = Sample {
                tag: side
                    .ids
                    .get(sample.tag.index())
                    .copied()
                    .unwrap_or(TagId::UNCONFIGURED),
                unconfigured: sample.unconfigured.clone(),
                value: sample.value.clone(),
                quality: sample.quality.clone(),
                time: sample.time,
                server_time: sample.server_time,
                receipt: None,
            };
            side.edge.apply(&seen, now, &mut out);
            side.take(out);
        }
    }

    pub fn tick(&mut self, now: Now) {
        for side in [&mut self.current, &mut self.candidate] {
            let mut out = Output::default();
            side.edge.tick(now, &mut out);
            side.take(out);
        }
    }

    /// End the try as a graceful stop ends the gateway (open periods
    /// reported) and compare.
    pub fn finish(mut self, now: Now) -> Comparison {
        for side in [&mut self.current, &mut self.candidate] {
            let mut out = Output::default();
            side.edge.flush(now, &mut out);
            side.take(out);
        }
        let [current_rules, candidate_rules] = self.rules;
        let mut names: Vec<(String, &'static str)> = current_rules.clone();
        for r in &candidate_rules {
            if !names.iter().any(|(n, _)| *n == r.0) {
                names.push(r.clone());
            }
        }
        let rules = names
            .into_iter()
            .map(|(name, kind)| {
                let of = |events: &[Event]| -> Vec<Event> {
                    events.iter().filter(|e| e.rule == name).cloned().collect()
                };
                RuleComparison::new(
                    name.clone(),
                    kind,
                    (
                        current_rules.iter().any(|(n, _)| *n == name),
                        candidate_rules.iter().any(|(n, _)| *n == name),
                    ),
                    of(&self.current.events),
                    of(&self.candidate.events),
                )
            })
            .collect();
        Comparison {
            samples: self.samples,
            rules,
        }
    }
}

/// The events of both configs, rule by rule.
#[derive(Debug)]
pub struct Comparison {
    pub samples: u64,
    pub rules: Vec<RuleComparison>,
}

impl Comparison {
    pub fn differs(&self) -> bool {
        self.rules.iter().any(|r| !r.differences.is_empty())
    }
}

/// One rule: how many events each config sent, and every event that is
/// not the same in both (matched by event id).
#[derive(Debug)]
pub struct RuleComparison {
    pub name: String,
    pub kind: &'static str,
    /// Whether the current and the candidate config have the rule.
    pub in_configs: (bool, bool),
    pub sent: (usize, usize),
    pub differences: Vec<Difference>,
}

#[derive(Debug, PartialEq)]
pub enum Difference {
    /// Only the current config sends it.
    Dropped(Event),
    /// Only the candidate sends it.
    Added(Event),
    /// Both send an event of this id, with these fields changed (in
    /// `config diff`'s words: `field old → new`).
    Changed { event: Event, fields: Vec<String> },
}

impl RuleComparison {
    fn new(
        name: String,
        kind: &'static str,
        in_configs: (bool, bool),
        current: Vec<Event>,
        candidate: Vec<Event>,
    ) -> RuleComparison {
        let sent = (current.len(), candidate.len());
        let mut differences = Vec::new();
        // Ids are unique per rule (rule, time and sequence make them).
        let by_id: HashMap<String, usize> = candidate
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        let mut theirs: Vec<Option<Event>> = candidate.into_iter().map(Some).collect();
        for e in current {
            let twin = by_id.get(&e.id).and_then(|&i| theirs[i].take());
            match twin {
                None => differences.push(Difference::Dropped(e)),
                Some(c) if c == e => {}
                Some(c) => {
                    let fields = crate::config::diff::changes(&fields(&e), &fields(&c));
                    differences.push(Difference::Changed { event: c, fields });
                }
            }
        }
        differences.extend(theirs.into_iter().flatten().map(Difference::Added));
        RuleComparison {
            name,
            kind,
            in_configs,
            sent,
            differences,
        }
    }
}

/// An event's fields as `name → value` (JSON, strings quoted; dates as
/// RFC 3339), for comparing two events field by field.
fn fields(e: &Event) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("kind".to_string(), format!("{:?}", e.kind()));
    out.insert("time".to_string(), format!("{:?}", e.time.rfc3339()));
    if let Ok(serde_json::Value::Object(body)) = serde_json::to_value(&e.body) {
        // Externally tagged: the one entry is the kind.
        for (_, v) in body {
            flatten("", &v, &mut out);
        }
    }
    out
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    const DATES: [&str; 4] = ["start", "end", "raised", "cleared"];
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::Number(n) if DATES.contains(&prefix) => {
            let t = n
                .as_i64()
                .map(|ms| Millis(ms).rfc3339())
                .unwrap_or_default();
            out.insert(prefix.to_string(), format!("{t:?}"));
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// What an event is, briefly: kind, id, what it is about, when.
fn event_line(e: &Event) -> String {
    format!(
        "{} {} at {} ({} UTC)",
        e.kind(),
        e.id,
        e.key(),
        e.time.odoo_datetime()
    )
}

fn events(n: usize) -> String {
    if n == 1 {
        "1 event".to_string()
    } else {
        format!("{n} events")
    }
}

/// How the run went, for the report's head.
pub struct RunInfo {
    pub elapsed: Duration,
    /// Per source read: its name and how many samples it gave.
    pub sources: Vec<(String, u64)>,
    pub notes: Vec<String>,
}

/// The report a controls engineer reads: per rule, the events each config
/// would have sent and every event where they differ.
pub fn render(info: &RunInfo, c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tried for {}: {} samples ({}), read over this command's own connections",
        humantime::format_duration(Duration::from_secs(info.elapsed.as_secs())),
        c.samples,
        if info.sources.is_empty() {
            "no source read".to_string()
        } else {
            info.sources
                .iter()
                .map(|(n, k)| format!("{n}: {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let _ = writeln!(
        out,
        "both configs' rules started fresh on the same samples; nothing was sent to Odoo or stored"
    );
    for n in &info.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let _ = writeln!(out, "rules:");
    for r in &c.rules {
        let head = match r.in_configs {
            (true, false) => format!(
                "  - rule {} ({}, current only): sends {}",
                r.name,
                r.kind,
                events(r.sent.0)
            ),
            (false, true) => format!(
                "  + rule {} ({}, candidate only): would send {}",
                r.name,
                r.kind,
                events(r.sent.1)
            ),
            _ if r.differences.is_empty() => format!(
                "  = rule {} ({}): {}, the same",
                r.name,
                r.kind,
                events(r.sent.0)
            ),
            _ => format!(
                "  ~ rule {} ({}): current sends {}, candidate {}; {} differ",
                r.name,
                r.kind,
                events(r.sent.0),
                r.sent.1,
                r.differences.len()
            ),
        };
        let _ = writeln!(out, "{head}");
        for d in r.differences.iter().take(LISTED) {
            let line = match d {
                Difference::Dropped(e) => format!("      - only current sends {}", event_line(e)),
                Difference::Added(e) => format!("      + only candidate sends {}", event_line(e)),
                Difference::Changed { event, fields } => {
                    format!("      ~ {}: {}", event_line(event), fields.join("; "))
                }
            };
            let _ = writeln!(out, "{line}");
        }
        if r.differences.len() > LISTED {
            let _ = writeln!(out, "      … and {} more", r.differences.len() - LISTED);
        }
    }
    let differing: Vec<&str> = c
        .rules
        .iter()
        .filter(|r| !r.differences.is_empty())
        .map(|r| r.name.as_str())
        .collect();
    if differing.is_empty() {
        let _ = writeln!(out, "no difference");
    } else {
        let _ = writeln!(out, "differences in rules: {}", differing.join(", "));
    }
    out
}

/// Run both configs on live samples until `limit` has passed or `stop`
/// resolves (Ctrl-C ends a try early, with its report).
pub async fn run(
    current: &Config,
    candidate: &Config,
    limit: Duration,
    stop: impl Future<Output = ()>,
) -> Result<Tried, ShadowError> {
    if current.events.is_empty() && candidate.events.is_empty() {
        return Err(ShadowError::NoRules);
    }
    let (read, notes) = reading_config(current, candidate);
    let metrics = sources::SourceMetrics::default();
    let telemetry = Arc::new(Telemetry::new(|r| metrics.register(r)));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut stages = Stages::default();
    let (tx, mut rx) = mpsc::channel(SAMPLE_CHANNEL);
    // No store: an MQTT source's refused messages are not kept.
    sources::spawn_all(
        &read,
        &tx,
        &telemetry,
        &metrics,
        &shutdown_rx,
        &mut stages,
        None,
    );
    drop(tx);
    let mut shadow = Shadow::new(&read.tag_table, current, candidate);
    let clock = EdgeClock::new();
    let started = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(EDGE_TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline, stop);
    let mut batch = Vec::with_capacity(512);
    let ended = loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, 512), if !read.sources.is_empty() => {
                if n == 0 {
                    break None;
                }
                apply(&mut shadow, &mut batch, clock.now());
            }
            _ = ticks.tick() => shadow.tick(clock.now()),
            f = stages.next_end(), if !read.sources.is_empty() => break Some(f),
            _ = &mut deadline => break None,
            _ = &mut stop => break None,
        }
    };
    let elapsed = started.elapsed();
    shutdown.send_replace(true);
    if let Some(f) = ended {
        let _ = tokio::time::timeout(STOP_GRACE, stages.join_all()).await;
        return Err(ShadowError::StageEnded(f.to_string()));
    }
    // What the sources had read when the try ended counts too.
    let drain = async {
        while rx.recv_many(&mut batch, 512).await > 0 {
            apply(&mut shadow, &mut batch, clock.now());
        }
    };
    let _ = tokio::time::timeout(STOP_GRACE, drain).await;
    let _ = tokio::time::timeout(STOP_GRACE, stages.join_all()).await;
    let board = telemetry.snapshot();
    let info = RunInfo {
        elapsed,
        sources: read
            .sources
            .iter()
            .map(|s| {
                let n = board.sources.get(&s.name).map(|x| x.samples).unwrap_or(0);
                (s.name.clone(), n)
            })
            .collect(),
        notes,
    };
    let comparison = shadow.finish(clock.now());
    Ok(Tried {
        report: render(&info, &comparison),
        differs: comparison.differs(),
    })
}

/// A finished try: the report, and whether the configs' events differ.
pub struct Tried {
    pub report: String,
    pub differs: bool,
}

fn apply(shadow: &mut Shadow, batch: &mut Vec<Sample>, now: Now) {
    for sample in batch.drain(..) {
        shadow.apply(&sample, now);
        // Nothing is committed: a source waiting on its receipts (to
        // acknowledge its device) may go on once both edges have the sample.
        if let Some(r) = sample.receipt {
            r.committed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::Mono;
    use crate::model::{Quality, Value};
    use std::path::Path;

    const EXAMPLE: &str = include_str!("../firmware-config/examples/press-line.toml");

    fn config(text: &str) -> Config {
        crate::config::parse(text, Path::new("gateway.toml")).expect("valid config")
    }

    fn at(ms: u64) -> Now {
        Now {
            wall: Millis(1_796_000_000_000 + ms as i64),
            mono: Mono(ms),
        }
    }

    fn sample(tags: &TagTable, tag: &str, v: i64, now: Now) -> Sample {
        Sample {
            tag: tags.id(tag).expect("a configured tag"),
            unconfigured: None,
            value: Value::Int(v),
            quality: Quality::Good,
            time: now.wall,
            server_time: None,
            receipt: None,
        }
    }

    /// A new tag is read for the candidate; a changed one is read as the
    /// current config says, and the report says its change is not tried.
    #[test]
    fn the_candidates_new_tags_are_read_and_changed_ones_noted() {
        let current = config(EXAMPLE);
        let candidate = config(
            &EXAMPLE.replacen("register = 210", "register = 212", 1).replacen(
                "[[events]]",
                "[[tags]]\nname = \"press1_door\"\nsource = \"press1\"\nregister = 12\n\n[[events]]",
                1,
            ),
        );
        let (read, notes) = reading_config(&current, &candidate);
        assert_eq!(read.tags.len(), current.tags.len() + 1);
        assert!(read.tags.iter().any(|t| t.name == "press1_door"));
        let oil = read.tags.iter().find(|t| t.name == "transfer_oil_temp");
        assert_eq!(
            oil.and_then(|t| t.point.as_modbus()).map(|p| p.address),
            Some(210),
            "read as the current config defines it"
        );
        assert_eq!(
            notes,
            ["tag transfer_oil_temp: read as the current config defines it; the candidate's change to it is not tried"]
        );
    }

    /// The candidate lists its tags in another order, so its ids differ
    /// from the ids the samples are read under: each edge still gets each
    /// sample as its own tag, and the same rules send the same events.
    #[test]
    fn tags_listed_in_another_order_are_each_edges_own() {
        let current = config(EXAMPLE);
        let first = EXAMPLE.find("[[tags]]").expect("tags");
        let second = first + 8 + EXAMPLE[first + 8..].find("[[tags]]").expect("two tags");
        let events = EXAMPLE.find("[[events]]").expect("events");
        let moved = format!(
            "{}{}{}{}",
            &EXAMPLE[..first],
            &EXAMPLE[second..events],
            &EXAMPLE[first..second],
            &EXAMPLE[events..]
        );
        let candidate = config(&moved);
        assert_ne!(
            current.tag_table.id("press1_strokes"),
            candidate.tag_table.id("press1_strokes"),
            "the test needs ids that differ"
        );
        let (read, _) = reading_config(&current, &candidate);
        let mut shadow = Shadow::new(&read.tag_table, &current, &candidate);
        for (i, strokes) in [100, 103, 110].into_iter().enumerate() {
            let now = at(i as u64 * 40_000);
            shadow.apply(
                &sample(&read.tag_table, "press1_strokes", strokes, now),
                now,
            );
            shadow.tick(now);
        }
        let c = shadow.finish(at(130_000));
        let parts = c
            .rules
            .iter()
            .find(|r| r.name == "press1_parts")
            .expect("rule");
        assert!(parts.sent.0 > 0, "the counter reported its parts");
        assert_eq!(parts.sent.0, parts.sent.1);
        assert!(!c.differs(), "{:?}", c.rules);
    }

    /// A rule only one config has: its events are listed as only sent by
    /// that config; a rule of both with the same events is the same.
    #[test]
    fn events_of_one_side_only_are_added_or_dropped() {
        let current = config(EXAMPLE);
        let candidate =
            config(&EXAMPLE.replacen("name = \"press2_parts\"", "name = \"press2_count\"", 1));
        let mut shadow = Shadow::new(&current.tag_table, &current, &candidate);
        for (i, strokes) in [100, 103, 110].into_iter().enumerate() {
            let now = at(i as u64 * 40_000);
            shadow.apply(
                &sample(&current.tag_table, "press1_strokes", strokes, now),
                now,
            );
            shadow.apply(
                &sample(&current.tag_table, "press2_strokes", strokes, now),
                now,
            );
            shadow.tick(now);
        }
        let c = shadow.finish(at(130_000));
        assert!(c.differs());
        let rule = |n: &str| c.rules.iter().find(|r| r.name == n).expect(n);
        let same = rule("press1_parts");
        assert!(same.sent.0 > 0 && same.sent == (same.sent.0, same.sent.0));
        assert!(same.differences.is_empty(), "{:?}", same.differences);
        let old = rule("press2_parts");
        assert_eq!(old.in_configs, (true, false));
        assert!(old.sent.0 > 0 && old.sent.1 == 0);
        assert!(old
            .differences
            .iter()
            .all(|d| matches!(d, Difference::Dropped(_))));
        let new = rule("press2_count");
        assert_eq!(new.in_configs, (false, true));
        assert_eq!(new.sent.1, old.sent.0);
        assert!(new
            .differences
            .iter()
            .all(|d| matches!(d, Difference::Added(_))));
        let text = render(
            &RunInfo {
                elapsed: Duration::from_secs(130),
                sources: vec![("press1".into(), 3), ("press2".into(), 3)],
                notes: vec![],
            },
            &c,
        );
        assert!(
            text.contains("  - rule press2_parts (production, current only): sends "),
            "{text}"
        );
        assert!(
            text.contains("      + only candidate sends production pressline_gw-press2_count-"),
            "{text}"
        );
        assert!(
            text.ends_with("differences in rules: press2_parts, press2_count\n"),
            "{text}"
        );
    }
}
