//! Golden cases for the edge. Each folder of `tests/cases/edge/` holds a
//! `config.toml` (its tags and rules), `input.jsonl` (readings, ticks,
//! restarts and clock steps, at explicit times) and
//! `expected-events.jsonl`. The harness runs each reading through its
//! tag's scaling and conditioning and then the edge, as a source and the
//! pipeline do, and compares the events it gives, line by line, with the
//! expected ones (each event with `at`, the case time it came out at, so
//! a case shows *when* the edge spoke, not only what it said).
//! `PLANTGATE_BLESS=1 cargo test --test edge_cases` writes
//! the expected files from what the edge gives now: review that diff.
//!
//! Input lines (times `t` in milliseconds since the case's start, on the
//! monotonic clock; the wall clock is the case's start + `t`, shifted by
//! any `wall_step` so far):
//! - `{"t": 1000, "tag": "state", "value": 3}`: a good reading, dated
//!   at the wall clock (or at `"device_time"`, ms from the start);
//! - `{"t": 1000, "tag": "state", "bad": "timeout"}`: a bad reading;
//! - `{"t": 9000, "ticks_to": 20000}`: the pipeline's 250 ms ticks from
//!   `t` to `ticks_to`, with no reading;
//! - `{"t": 5000, "wall_step": -3600000}`: the wall clock steps (NTP);
//! - `{"t": 5000, "restart": true}`: the gateway is killed and restarted:
//!   the edge is rebuilt from the rule states committed so far, and the
//!   monotonic clock starts again;
//! - `{"t": 5000, "flush": true}`: a graceful stop's flush.

use plantgate::config::{self, Config};
use plantgate::edge::{self, Edge, Mono, Now, Output};
use plantgate::model::{Millis, Quality, Sample, Value};
use plantgate::sources::condition;
use plantgate::sources::filter::{Filter, Verdict};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::Path;

/// The cases' start: 2026-06-01T00:00:00Z.
const START: i64 = 1_780_272_000_000;
const TICK: i64 = 250;

struct Run {
    cfg: Config,
    edge: Edge,
    filters: Vec<Filter>,
    /// The latest committed state of each rule, as the store keeps it.
    states: BTreeMap<String, Vec<u8>>,
    events: Vec<String>,
    wall_offset: i64,
    /// `t` of the last restart: the monotonic clock's origin.
    mono_origin: i64,
}

impl Run {
    fn new(cfg: Config) -> Run {
        let edge = Edge::new(
            &cfg.gateway.id,
            &cfg.tag_table,
            &cfg.events,
            Default::default(),
        )
        .with_derived(&cfg.derived)
        .with_tags(&cfg.tags);
        let filters = cfg
            .tags
            .iter()
            .map(|t| Filter::new(t.conditioning.clone()))
            .collect();
        Run {
            cfg,
            edge,
            filters,
            states: BTreeMap::new(),
            events: Vec::new(),
            wall_offset: 0,
            mono_origin: 0,
        }
    }

    fn now(&self, t: i64) -> Now {
        Now {
            wall: Millis(START + t + self.wall_offset),
            mono: Mono(u64::try_from(t - self.mono_origin).expect("time goes forward")),
        }
    }

    /// What the pipeline does with an output: commit events and states.
    /// Each event is written with `at`, the case time it was given at.
    fn commit(&mut self, t: i64, out: Output) {
        for e in &out.events {
            let mut line = serde_json::json!({ "at": t });
            if let (Some(obj), Json::Object(fields)) = (
                line.as_object_mut(),
                serde_json::to_value(e).expect("event as JSON"),
            ) {
                obj.extend(fields);
            }
            self.events.push(line.to_string());
        }
        for (name, bytes) in out.encoded_states().expect("states encode") {
            self.states.insert(name, bytes);
        }
    }

    fn step(&mut self, line: &Json, at: &str) {
        let t = line["t"]
            .as_i64()
            .unwrap_or_else(|| panic!("{at}: `t` (ms) missing"));
        if let Some(step) = line.get("wall_step") {
            self.wall_offset += step.as_i64().expect("wall_step in ms");
        } else if let Some(to) = line.get("ticks_to") {
            let to = to.as_i64().expect("ticks_to in ms");
            let mut s = t;
            while s <= to {
                let mut out = Output::default();
                self.edge.tick(self.now(s), &mut out);
                self.commit(s, out);
                s += TICK;
            }
        } else if line.get("restart").is_some() {
            let stored = self
                .states
                .iter()
                .map(|(n, b)| (n.clone(), b.clone()))
                .collect();
            self.edge = Edge::new(
                &self.cfg.gateway.id,
                &self.cfg.tag_table,
                &self.cfg.events,
                edge::restore(stored),
            )
            .with_derived(&self.cfg.derived)
            .with_tags(&self.cfg.tags);
            self.filters = self
                .cfg
                .tags
                .iter()
                .map(|t| Filter::new(t.conditioning.clone()))
                .collect();
            self.mono_origin = t;
        } else if line.get("flush").is_some() {
            let mut out = Output::default();
            self.edge.flush(self.now(t), &mut out);
            self.commit(t, out);
        } else if let Some(tag) = line["tag"].as_str() {
            let i = self
                .cfg
                .tags
                .iter()
                .position(|c| c.name == tag)
                .unwrap_or_else(|| panic!("{at}: no tag {tag:?} in config.toml"));
            let now = self.now(t);
            let time = line["device_time"]
                .as_i64()
                .map_or(now.wall, |d| Millis(START + d));
            let (value, quality) = match (&line["value"], line["bad"].as_str()) {
                (_, Some(why)) => (Value::Int(0), Quality::Bad(why.to_string())),
                (v, None) => {
                    let raw = value_of(v, at);
                    match self.filters[i].apply(condition(&self.cfg.tags[i], raw), time) {
                        Verdict::Send(v) => (v, Quality::Good),
                        Verdict::Hold => return,
                        Verdict::Bad(why) => (Value::Int(0), Quality::Bad(why)),
                    }
                }
            };
            let sample = Sample {
                tag: self.cfg.tags[i].id,
                unconfigured: None,
                value,
                quality,
                time,
                server_time: None,
                receipt: None,
            };
            let mut out = Output::default();
            self.edge.apply(&sample, now, &mut out);
            self.commit(t, out);
        } else {
            panic!("{at}: a line needs `tag`, `ticks_to`, `wall_step`, `restart` or `flush`");
        }
    }
}

fn value_of(v: &Json, at: &str) -> Value {
    if let Some(i) = v.as_i64() {
        Value::Int(i)
    } else if let Some(u) = v.as_u64() {
        Value::UInt(u)
    } else if let Some(f) = v.as_f64() {
        Value::Float(f)
    } else if let Some(b) = v.as_bool() {
        Value::Bool(b)
    } else {
        panic!("{at}: `value` must be a number or a boolean")
    }
}

fn run_case(dir: &Path) -> (Vec<String>, String) {
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path).expect("config.toml");
    // Parsed as `config.toml`: the places a rule carries (an alarm's
    // `equipment_at`) are the same wherever the repository is.
    let cfg = config::parse(&text, Path::new("config.toml"))
        .unwrap_or_else(|e| panic!("{}: config.toml is invalid: {e}", dir.display()));
    let mut run = Run::new(cfg);
    let input = std::fs::read_to_string(dir.join("input.jsonl")).expect("input.jsonl");
    for (n, line) in input.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let at = format!("{}/input.jsonl:{}", dir.display(), n + 1);
        let json: Json = serde_json::from_str(line).unwrap_or_else(|e| panic!("{at}: {e}"));
        run.step(&json, &at);
    }
    let expected = std::fs::read_to_string(dir.join("expected-events.jsonl")).unwrap_or_default();
    (run.events, expected)
}

#[test]
fn every_edge_case_gives_exactly_its_expected_events() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/edge");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("tests/cases/edge")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "the cases are there: {dirs:?}");
    let bless = std::env::var_os("PLANTGATE_BLESS").is_some();
    let mut failed = Vec::new();
    for dir in &dirs {
        let (got, expected) = run_case(dir);
        let mut text = got.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        if bless {
            std::fs::write(dir.join("expected-events.jsonl"), &text).expect("bless");
            continue;
        }
        if text != expected {
            failed.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{text}",
                dir.display()
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
