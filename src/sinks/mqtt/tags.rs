//! Selected tag values, published as each tag's latest value (retained):
//! a pure core ([`Latest`]) decides what is due, the sink publishes it.
//!
//! - **On change, at most every `tag_every`.** A value is published when
//!   it (or its quality) differs from the last one published for the tag,
//!   and no sooner than `tag_every` after that one; values arriving
//!   meanwhile replace each other, and the newest is published when the
//!   interval is up. So a subscriber always ends up with the latest value.
//! - **After every connect** each tag's last value is published again (the
//!   broker may have restarted without its retained messages, or missed a
//!   QoS 0 publish when the link broke).
//! - At most [`MAX_TAGS`] tags are followed; values of further tags are
//!   counted as dropped.
//!
//! The JSON, versioned by `schema` like the events':
//!
//! ```json
//! {"schema":1,"gateway":"gw1","tag":"oven_temp","value":182.5,
//!  "quality":"good","time":"2026-12-01T14:00:00.000Z"}
//! ```
//!
//! `quality` is `good`, `uncertain` or `bad`, with `reason` beside the
//! last two; `value` is a number, a boolean or a string.

use crate::model::{Quality, Value};
use crate::sinks::tap::TagValue;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The `schema` of a tag value message.
pub const SCHEMA: u32 = 1;

/// Tags followed at most.
pub const MAX_TAGS: usize = 10_000;

#[derive(Default)]
struct TagState {
    /// The last value given to the broker.
    published: Option<TagValue>,
    /// When it was.
    at: Option<Instant>,
    /// The newest value not yet published.
    pending: Option<TagValue>,
}

pub struct Latest {
    every: Duration,
    tags: HashMap<String, TagState>,
}

impl Latest {
    pub fn new(every: Duration) -> Latest {
        Latest {
            every,
            tags: HashMap::new(),
        }
    }

    /// Take a new reading; false when it was dropped (too many tags).
    pub fn offer(&mut self, v: TagValue) -> bool {
        if !self.tags.contains_key(&v.tag) && self.tags.len() >= MAX_TAGS {
            return false;
        }
        let st = self.tags.entry(v.tag.clone()).or_default();
        let same = st
            .published
            .as_ref()
            .is_some_and(|p| p.value == v.value && p.quality == v.quality);
        if same {
            // Back to what the broker holds: nothing to send.
            st.pending = None;
        } else {
            st.pending = Some(v);
        }
        true
    }

    /// At most `max` of the values due at `now`, marked published; the
    /// others stay due.
    pub fn due(&mut self, now: Instant, max: usize) -> Vec<TagValue> {
        let mut out = Vec::new();
        for st in self.tags.values_mut() {
            if out.len() >= max {
                break;
            }
            let ready = st.at.is_none_or(|at| now.duration_since(at) >= self.every);
            if ready {
                if let Some(v) = st.pending.take() {
                    st.published = Some(v.clone());
                    st.at = Some(now);
                    out.push(v);
                }
            }
        }
        out.sort_by(|a, b| a.tag.cmp(&b.tag));
        out
    }

    /// When the next held-back value is due, if one is.
    pub fn next_due(&self) -> Option<Instant> {
        self.tags
            .values()
            .filter(|st| st.pending.is_some())
            .map(|st| st.at.map_or_else(Instant::now, |at| at + self.every))
            .min()
    }

    /// A new connection: every tag's latest value is due again, at once.
    pub fn reconnected(&mut self) {
        for st in self.tags.values_mut() {
            if st.pending.is_none() {
                st.pending = st.published.take();
            }
            st.published = None;
            st.at = None;
        }
    }
}

/// The message of one tag value.
pub fn encode(gateway: &str, v: &TagValue) -> Vec<u8> {
    let value = match &v.value {
        Value::Bool(b) => serde_json::Value::from(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::UInt(u) => serde_json::Value::from(*u),
        // NaN and infinities have no JSON: null.
        Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Text(t) => serde_json::Value::from(t.as_str()),
    };
    let mut m = serde_json::json!({
        "schema": SCHEMA,
        "gateway": gateway,
        "tag": v.tag,
        "value": value,
        "time": v.time.rfc3339(),
    });
    let (quality, reason) = match &v.quality {
        Quality::Good => ("good", None),
        Quality::Uncertain(r) => ("uncertain", Some(r)),
        Quality::Bad(r) => ("bad", Some(r)),
    };
    m["quality"] = quality.into();
    if let Some(r) = reason {
        m["reason"] = r.as_str().into();
    }
    m.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Millis;

    fn v(tag: &str, x: i64) -> TagValue {
        TagValue {
            tag: tag.into(),
            value: Value::Int(x),
            quality: Quality::Good,
            time: Millis(1_700_000_000_000),
        }
    }

    fn values(out: &[TagValue]) -> Vec<(String, Value)> {
        out.iter()
            .map(|t| (t.tag.clone(), t.value.clone()))
            .collect()
    }

    #[test]
    fn on_change_at_most_every_interval_and_the_newest_wins() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut l = Latest::new(s);
        l.offer(v("a", 1));
        assert_eq!(
            values(&l.due(t0, usize::MAX)),
            vec![("a".into(), Value::Int(1))]
        );
        // Same value: nothing.
        l.offer(v("a", 1));
        assert!(l.due(t0 + 2 * s, usize::MAX).is_empty());
        assert_eq!(l.next_due(), None);
        // Changes inside the interval are held; the newest goes out.
        l.offer(v("a", 2));
        l.offer(v("a", 3));
        assert!(l.due(t0 + 2 * s, usize::MAX).len() == 1);
        l.offer(v("a", 4));
        l.offer(v("a", 5));
        assert!(l.due(t0 + 2 * s + s / 2, usize::MAX).is_empty());
        assert_eq!(l.next_due(), Some(t0 + 3 * s));
        assert_eq!(
            values(&l.due(t0 + 3 * s, usize::MAX)),
            vec![("a".into(), Value::Int(5))]
        );
        // A change back to the published value cancels the pending one.
        l.offer(v("a", 6));
        l.offer(v("a", 5));
        assert!(l.due(t0 + 10 * s, usize::MAX).is_empty());
        // Quality counts as a change.
        let mut bad = v("a", 5);
        bad.quality = Quality::Bad("timeout".into());
        l.offer(bad);
        assert_eq!(l.due(t0 + 10 * s, usize::MAX).len(), 1);
    }

    #[test]
    fn a_reconnect_makes_every_latest_value_due_again() {
        let t0 = Instant::now();
        let mut l = Latest::new(Duration::from_secs(60));
        l.offer(v("a", 1));
        l.offer(v("b", 2));
        assert_eq!(l.due(t0, usize::MAX).len(), 2);
        l.offer(v("b", 3));
        l.reconnected();
        assert_eq!(
            values(&l.due(t0, usize::MAX)),
            vec![("a".into(), Value::Int(1)), ("b".into(), Value::Int(3))]
        );
    }

    #[test]
    fn the_message_says_value_quality_and_time() {
        let mut t = v("oven_temp", 0);
        t.value = Value::Float(182.5);
        let j: serde_json::Value = serde_json::from_slice(&encode("gw1", &t)).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"schema": 1, "gateway": "gw1", "tag": "oven_temp",
                "value": 182.5, "quality": "good", "time": "2023-11-14T22:13:20.000Z"})
        );
        t.quality = Quality::Bad("device timeout".into());
        t.value = Value::Float(f64::NAN);
        let j: serde_json::Value = serde_json::from_slice(&encode("gw1", &t)).unwrap();
        assert_eq!(j["quality"], "bad");
        assert_eq!(j["reason"], "device timeout");
        assert!(j["value"].is_null());
    }
}
