//! Rate limits (`min_interval` on a tag): the rules see at most one
//! reading of the tag per interval, on the monotonic clock. A reading that
//! comes sooner is held, replacing any held before (the latest wins), and
//! the edge's tick releases it once the interval has passed — so the last
//! value of a burst always arrives, even from a source that then goes
//! silent. Held readings are in memory only: a restart reads the device
//! again.

use super::clock::Mono;
use crate::model::{Sample, TagId};
use std::time::Duration;

struct Limit {
    interval_ms: u64,
    /// When the rules last saw a reading of the tag.
    sent: Option<Mono>,
    held: Option<Sample>,
}

#[derive(Default)]
pub struct Limits {
    /// Tag id → its limit in `limits` (up to the last tag with one).
    by_tag: Vec<Option<u32>>,
    limits: Vec<Limit>,
}

impl Limits {
    pub fn new(tags: impl Iterator<Item = (TagId, Duration)>) -> Self {
        let mut out = Limits::default();
        for (id, d) in tags.filter(|(id, _)| *id != TagId::UNCONFIGURED) {
            let Ok(slot) = u32::try_from(out.limits.len()) else {
                break;
            };
            if out.by_tag.len() <= id.index() {
                out.by_tag.resize(id.index() + 1, None);
            }
            out.by_tag[id.index()] = Some(slot);
            out.limits.push(Limit {
                interval_ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                sent: None,
                held: None,
            });
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// Whether the rules see this reading now; if not, it is held.
    pub fn pass(&mut self, sample: &Sample, now: Mono) -> bool {
        let Some(&Some(slot)) = self.by_tag.get(sample.tag.index()) else {
            return true;
        };
        let l = &mut self.limits[slot as usize];
        if l.sent.is_some_and(|s| now.since(s) < l.interval_ms) {
            l.held = Some(sample.clone());
            return false;
        }
        l.sent = Some(now);
        l.held = None;
        true
    }

    /// The held readings whose interval has passed at `now`.
    pub fn release(&mut self, now: Mono) -> Vec<Sample> {
        let mut out = Vec::new();
        for l in &mut self.limits {
            let due = l.sent.is_none_or(|s| now.since(s) >= l.interval_ms);
            if due {
                if let Some(s) = l.held.take() {
                    l.sent = Some(now);
                    out.push(s);
                }
            }
        }
        // Released in time order, as they would have come.
        out.sort_by_key(|s| s.time);
        out
    }
}
