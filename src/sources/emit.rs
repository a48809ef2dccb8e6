//! What every source does with a reading: condition it, send it to the edge
//! as a sample, and report a tag's bad quality once per change of reason
//! (so a dead device does not flood the edge or the status page).

use super::filter::{Filter, Verdict};
use super::Scaling;
use crate::config::TagConfig;
use crate::model::{Millis, Quality, Sample, Value};
use crate::status::Telemetry;
use crate::tags::{TagId, TagTable};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a source keeps of a tag to send its readings: a gateway may read
/// tens of thousands, so not the whole config entry (the name is in the
/// table, the conditioning in the filter).
struct Point {
    id: TagId,
    scaling: Scaling,
}

pub struct Emitter {
    source: String,
    /// By index, as the source's points.
    tags: Vec<Point>,
    /// The tags' names, for reports.
    names: Arc<TagTable>,
    /// Last bad reason sent per tag; `None` while good.
    last_bad: Vec<Option<String>>,
    /// Each tag's conditioning (range, deadband), by index.
    filters: Vec<Filter>,
    tx: mpsc::Sender<Sample>,
    telemetry: Arc<Telemetry>,
}

impl Emitter {
    pub fn new(
        source: &str,
        tags: Vec<TagConfig>,
        names: Arc<TagTable>,
        tx: mpsc::Sender<Sample>,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        let last_bad = vec![None; tags.len()];
        let filters = tags
            .iter()
            .map(|t| Filter::new(t.conditioning.clone()))
            .collect();
        let tags = tags
            .iter()
            .map(|t| Point {
                id: t.id,
                scaling: Scaling::of(t),
            })
            .collect();
        Emitter {
            source: source.to_string(),
            tags,
            names,
            last_bad,
            filters,
            tx,
            telemetry,
        }
    }

    pub fn tag_count(&self) -> usize {
        self.tags.len()
    }

    /// The name of the tag at index `i`.
    pub fn name(&self, i: usize) -> &str {
        self.names.name(self.tags[i].id).unwrap_or("?")
    }

    /// The tag is already reported bad for this reason.
    pub fn is_bad_for(&self, i: usize, why: &str) -> bool {
        self.last_bad[i].as_deref() == Some(why)
    }

    /// A reading the device vouches for (good or uncertain): scaled,
    /// conditioned and sent; a tag that was bad is reported good again. A
    /// value out of the tag's valid range makes the tag bad instead.
    pub async fn value(
        &mut self,
        i: usize,
        raw: Value,
        quality: Quality,
        time: Millis,
        server_time: Option<Millis>,
    ) {
        let value = self.tags[i].scaling.apply(raw);
        match self.filters[i].apply(value, time) {
            Verdict::Hold => {}
            Verdict::Bad(why) => self.mark_bad(i, &why, time).await,
            Verdict::Send(value) => {
                if self.last_bad[i].take().is_some() {
                    self.telemetry.tag_quality(&self.source, self.name(i), None);
                }
                self.send(i, value, quality, time, server_time).await;
            }
        }
    }

    /// Tags that could not be read: one bad sample each per change of reason.
    pub async fn bad(&mut self, tags: &[usize], why: &str) {
        let time = Millis::now();
        for &i in tags {
            self.mark_bad(i, why, time).await;
        }
    }

    async fn mark_bad(&mut self, i: usize, why: &str, time: Millis) {
        if self.is_bad_for(i, why) {
            return;
        }
        self.last_bad[i] = Some(why.to_string());
        self.telemetry
            .tag_quality(&self.source, self.name(i), Some(why));
        self.send(i, Value::Int(0), Quality::Bad(why.to_string()), time, None)
            .await;
    }

    async fn send(
        &self,
        i: usize,
        value: Value,
        quality: Quality,
        time: Millis,
        server_time: Option<Millis>,
    ) {
        let sample = Sample {
            tag: self.tags[i].id,
            unconfigured: None,
            value,
            quality,
            time,
            server_time,
            receipt: None,
        };
        // A closed channel means the gateway is stopping; the shutdown
        // signal ends the source right after.
        let _ = self.tx.send(sample).await;
    }
}
