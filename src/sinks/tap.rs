//! The tag-value tap: the edge hands the samples of selected tags to a
//! sink that publishes them (the MQTT sink's `tags`) without ever waiting
//! for it.
//!
//! Invariants:
//! - **Never blocks the edge.** [`TagTap::offer`] takes one short lock per
//!   batch and returns; a full buffer drops its *oldest* value and counts
//!   it in `plantgate_tag_values_dropped_total`, so a slow or absent
//!   broker costs the edge nothing and the newest values win.
//! - **Matched once.** Configured tags are matched against the patterns
//!   when the tap is built and selected by id; a name no tag has (an MQTT
//!   tag named from topic levels) is matched once and remembered.
//! - **Bounded.** At most [`CAPACITY`] values wait; the matches of names
//!   no tag has are remembered for at most [`MATCH_CACHE`] names.
//! - **Not durable.** Tag values are the latest state, not business
//!   events: they never enter the store.

use crate::model::{Millis, Quality, Sample, Value};
use crate::tags::{TagId, TagTable};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Values waiting for the sink, at most.
pub const CAPACITY: usize = 4096;

/// Tag names whose match is remembered; beyond, each is matched anew.
const MATCH_CACHE: usize = 10_000;

/// One reading handed to the sink.
#[derive(Clone, Debug, PartialEq)]
pub struct TagValue {
    pub tag: String,
    pub value: Value,
    pub quality: Quality,
    pub time: Millis,
}

#[derive(Default)]
struct Inner {
    waiting: VecDeque<TagValue>,
    matches: HashMap<String, bool>,
}

pub struct TagTap {
    /// Names or globs (`*` any run of characters, `?` one) of the tags
    /// to hand over.
    patterns: Vec<String>,
    tags: Arc<TagTable>,
    /// Whether each configured tag (by id) is selected.
    selected: Vec<bool>,
    inner: Mutex<Inner>,
    /// Wakes the sink when values arrive.
    notify: Notify,
    /// Values dropped because the buffer was full.
    dropped: Counter,
}

impl TagTap {
    pub fn new(patterns: Vec<String>, tags: Arc<TagTable>) -> TagTap {
        let selected = (0..tags.len())
            .map(|i| {
                tags.name(TagId::from_index(i))
                    .is_some_and(|n| patterns.iter().any(|p| glob(p, n)))
            })
            .collect();
        TagTap {
            patterns,
            tags,
            selected,
            inner: Mutex::default(),
            notify: Notify::new(),
            dropped: Counter::default(),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "plantgate_tag_values_dropped",
            "Tag values not published because the publisher fell behind (the oldest are dropped)",
            self.dropped.clone(),
        );
    }

    /// Take the selected samples of a batch, dropping the oldest waiting
    /// values when full.
    pub fn offer(&self, batch: &[Sample]) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut added = false;
        for s in batch {
            let (name, selected) = match s.unconfigured.as_deref() {
                None => match self.tags.name(s.tag) {
                    Some(n) => (n, self.selected[s.tag.index()]),
                    None => continue,
                },
                Some(name) => match inner.matches.get(name) {
                    Some(m) => (name, *m),
                    None => {
                        let m = self.patterns.iter().any(|p| glob(p, name));
                        if inner.matches.len() < MATCH_CACHE {
                            inner.matches.insert(name.to_string(), m);
                        }
                        (name, m)
                    }
                },
            };
            if !selected {
                continue;
            }
            if inner.waiting.len() >= CAPACITY {
                inner.waiting.pop_front();
                self.dropped.inc();
            }
            inner.waiting.push_back(TagValue {
                tag: name.to_string(),
                value: s.value.clone(),
                quality: s.quality.clone(),
                time: s.time,
            });
            added = true;
        }
        drop(inner);
        if added {
            self.notify.notify_one();
        }
    }

    /// Everything waiting, oldest first.
    pub fn take(&self) -> Vec<TagValue> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.waiting.drain(..).collect()
    }

    /// Resolves once values are waiting (at once if some arrived since the
    /// last wait).
    pub async fn arrived(&self) {
        self.notify.notified().await;
    }

    /// Values the publisher itself had to drop.
    pub fn count_dropped(&self, n: u64) {
        self.dropped.inc_by(n);
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

/// `*` matches any run of characters (also none), `?` exactly one.
pub fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Greedy with backtracking to the last `*`: linear for typical names.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(tags: &TagTable, tag: &str, v: i64) -> Sample {
        Sample {
            tag: tags.id(tag).unwrap_or(TagId::UNCONFIGURED),
            unconfigured: tags.id(tag).is_none().then(|| tag.into()),
            value: Value::Int(v),
            quality: Quality::Good,
            time: Millis(v),
            server_time: None,
            receipt: None,
        }
    }

    #[test]
    fn globs_match_names() {
        assert!(glob("press1_*", "press1_temp"));
        assert!(glob("press1_*", "press1_"));
        assert!(!glob("press1_*", "press2_temp"));
        assert!(glob("*temp", "oven_temp"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*_*_x", "a_b_c_x"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
        assert!(glob("*", ""));
    }

    #[test]
    fn only_selected_tags_pass_and_a_full_buffer_drops_the_oldest() {
        let tags = Arc::new(TagTable::new(["oven_t", "parts"]));
        let tap = TagTap::new(vec!["oven_*".into()], tags.clone());
        let batch: Vec<Sample> = (0..CAPACITY as i64 + 10)
            .map(|i| sample(&tags, if i % 2 == 0 { "oven_t" } else { "parts" }, i))
            .collect();
        tap.offer(&batch);
        tap.offer(&batch);
        let got = tap.take();
        assert_eq!(got.len(), CAPACITY);
        assert!(got.iter().all(|v| v.tag == "oven_t"));
        // Two batches of (CAPACITY + 10) / 2 selected values each.
        assert_eq!(tap.dropped(), (CAPACITY as u64 + 10) - CAPACITY as u64);
        // The newest is kept, the oldest went.
        assert_eq!(
            got.last().map(|v| v.time),
            Some(Millis(CAPACITY as i64 + 8))
        );
        assert!(tap.take().is_empty());
    }

    #[test]
    fn a_name_no_tag_has_is_matched_by_its_name() {
        let tags = Arc::new(TagTable::new(["parts"]));
        let tap = TagTap::new(vec!["line1/*".into()], tags.clone());
        tap.offer(&[
            sample(&tags, "line1/qc", 1),
            sample(&tags, "line2/qc", 2),
            sample(&tags, "parts", 3),
        ]);
        let got: Vec<String> = tap.take().into_iter().map(|v| v.tag).collect();
        assert_eq!(got, ["line1/qc"]);
    }
}
