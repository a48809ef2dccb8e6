//! Events as store records: the lane and key each event goes under, and how
//! the records of a format-0 store (written before the layout was
//! versioned) are read. The store itself sees only [`Record`]s and bytes.

use crate::config::EventRule;
use crate::model::{Event, EventBody, Millis};
use crate::store::migrate::{AsideV0, Upgrade};
use crate::store::{Lane, Record};
use serde::Deserialize;
use std::collections::HashMap;

/// The lane of an event kind unless its rule says otherwise.
pub fn default_lane(body: &EventBody) -> Lane {
    match body {
        EventBody::DowntimeStarted(_)
        | EventBody::DowntimeEnded(_)
        | EventBody::AlarmRaised(_)
        | EventBody::AlarmCleared(_) => Lane::Critical,
        EventBody::Production(_)
        | EventBody::QualityMeasure(_)
        | EventBody::QualityAlert(_)
        | EventBody::StockLevel(_)
        | EventBody::Scrap(_) => Lane::Normal,
        EventBody::Summary(_) | EventBody::StateInterval(_) => Lane::Bulk,
    }
}

/// Lane of each rule's events, from the config.
#[derive(Clone, Debug, Default)]
pub struct Lanes {
    by_rule: HashMap<String, Lane>,
}

impl Lanes {
    pub fn new(rules: &[EventRule]) -> Self {
        Lanes {
            by_rule: rules
                .iter()
                .filter_map(|r| r.lane().map(|l| (r.name().to_string(), l)))
                .collect(),
        }
    }

    pub fn of(&self, e: &Event) -> Lane {
        self.by_rule
            .get(&e.rule)
            .copied()
            .unwrap_or_else(|| default_lane(&e.body))
    }

    pub fn record(&self, e: &Event) -> Result<Record, postcard::Error> {
        Ok(Record {
            id: e.id.clone(),
            kind: e.kind().to_string(),
            key: e.key().to_string(),
            lane: self.of(e),
            time: e.time,
            payload: e.encode()?,
        })
    }
}

/// Format 0's shapes, as that release wrote them with postcard. Today's
/// [`Event`] still reads format 0's shape (variants were only added at the
/// end of `EventBody`); when a stored shape changes, freeze a copy of the
/// old one here (the fixture test in tests/store_upgrade.rs fails
/// otherwise).
mod v0 {
    use super::*;

    #[derive(Deserialize)]
    pub struct StoredEvent {
        pub event: Event,
        pub accepted: Millis,
    }

    #[derive(Deserialize)]
    pub struct AsideEntry {
        pub seq: u64,
        pub sink: String,
        pub reason: String,
        pub at: Millis,
        pub event: Option<StoredEvent>,
        pub raw: Vec<u8>,
    }
}

/// Reads format-0 records with the configured lanes.
pub struct FormatZero<'a>(pub &'a Lanes);

impl Upgrade for FormatZero<'_> {
    fn event_v0(&self, bytes: &[u8]) -> Option<(Record, Millis)> {
        let stored: v0::StoredEvent = postcard::from_bytes(bytes).ok()?;
        let record = self.0.record(&stored.event).ok()?;
        Some((record, stored.accepted))
    }

    fn aside_v0(&self, bytes: &[u8]) -> Option<AsideV0> {
        let a: v0::AsideEntry = postcard::from_bytes(bytes).ok()?;
        let record = match a.event {
            Some(s) => Ok((self.0.record(&s.event).ok()?, s.accepted)),
            None => Err(a.raw),
        };
        Some(AsideV0 {
            sink: a.sink,
            seq: a.seq,
            reason: a.reason,
            at: a.at,
            record,
        })
    }
}
