//! Reading stores of older layouts.
//!
//! Format 0 (before the layout was versioned) kept one FIFO tree `events`
//! (`seq` → the event), one cursor per sink (`cursors`), set-aside events
//! (`aside`), and unversioned rule states and ledger entries. Its payloads
//! are the gateway's types, which the store does not know, so the caller
//! interprets them through [`Upgrade`]. Opaque values that move as they are
//! (rule states, ledger entries) get version byte [`LEGACY_PAYLOAD`] in
//! front, which their owners decode as their format-0 shape.
//!
//! The whole conversion is one batch into format 1's tree: a crash leaves
//! format 0, and the next open converts again.

use super::format::{
    self, count_key, count_value, dlq_key, encode, queue_key, rule_key, u64_key, u64_of,
    DeadLetter, Lane, QueueEntry, Record,
};
use super::StoreError;
use crate::model::Millis;
use sled::{Batch, Tree};

/// The oldest store format this release reads (and converts to
/// [`format::FORMAT`] when it opens it); a release bundle states both.
pub const OLDEST_FORMAT: u32 = 0;

/// Version byte put in front of opaque values carried over from format 0.
pub const LEGACY_PAYLOAD: u8 = 0;

/// Format 0's trees.
const LEGACY_TREES: [&str; 6] = ["events", "cursors", "aside", "rules", "ledger", "meta"];

/// How the gateway reads records of an older layout.
pub trait Upgrade {
    /// A format-0 queued event: the record it is now (with its payload in the
    /// owner's current encoding) and when it was accepted.
    fn event_v0(&self, bytes: &[u8]) -> Option<(Record, Millis)>;
    /// A format-0 set-aside entry.
    fn aside_v0(&self, bytes: &[u8]) -> Option<AsideV0>;
}

/// A format-0 set-aside entry, as the caller read it.
pub struct AsideV0 {
    pub sink: String,
    pub seq: u64,
    pub reason: String,
    pub at: Millis,
    /// The event and when it was accepted, or the raw bytes it could not read.
    pub record: Result<(Record, Millis), Vec<u8>>,
}

/// For stores with nothing to convert (tests, tools that never meet format 0).
pub struct NoUpgrade;

impl Upgrade for NoUpgrade {
    fn event_v0(&self, _: &[u8]) -> Option<(Record, Millis)> {
        None
    }
    fn aside_v0(&self, _: &[u8]) -> Option<AsideV0> {
        None
    }
}

/// A dead letter holding a record that could not be read, as raw bytes.
fn undecodable(id: u64, sink: &str, seq: u64, reason: &str, raw: &[u8], now: Millis) -> DeadLetter {
    DeadLetter {
        id,
        sink: sink.to_string(),
        lane: Lane::Normal,
        seq,
        event_id: String::new(),
        kind: "undecodable".into(),
        key: String::new(),
        time: Millis(0),
        accepted: Millis(0),
        reason: reason.to_string(),
        attempts: 0,
        first_attempt: None,
        last_attempt: None,
        dead_at: now,
        payload: raw.to_vec(),
    }
}

fn prefixed(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() + 1);
    out.push(LEGACY_PAYLOAD);
    out.extend_from_slice(v);
    out
}

/// Convert a store without a `format` key: a new one just gets the key.
pub(super) fn from_unversioned(
    db: &sled::Db,
    tree: &Tree,
    sinks: &[&str],
    upgrade: &dyn Upgrade,
) -> Result<(), StoreError> {
    let names: Vec<String> = db
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).to_string())
        .collect();
    let legacy = LEGACY_TREES.iter().any(|t| names.iter().any(|n| n == t));
    if !legacy {
        tree.insert(format::META_FORMAT, &u64_key(u64::from(format::FORMAT)))?;
        return Ok(());
    }
    let meta = db.open_tree("meta")?;
    let events = db.open_tree("events")?;
    let cursors = db.open_tree("cursors")?;
    let aside = db.open_tree("aside")?;
    let rules = db.open_tree("rules")?;
    let ledger = db.open_tree("ledger")?;
    let oldest = events.first()?.map(|(k, _)| u64_of(&k));
    let cursor_of = |sink: &str| -> Result<u64, StoreError> {
        Ok(match cursors.get(sink.as_bytes())? {
            Some(v) => u64_of(&v),
            None => oldest.map_or(u64::MAX, |o| o - 1),
        })
    };
    let cursor: Vec<u64> = sinks
        .iter()
        .map(|s| cursor_of(s))
        .collect::<Result<_, _>>()?;
    let mut next_dlq = 1u64;
    let now = Millis::now();
    let mut queued: Vec<(usize, Lane, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut dead: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut moved = 0u64;
    for item in events.iter() {
        let (k, v) = item?;
        let seq = u64_of(&k);
        match upgrade.event_v0(&v) {
            Some((r, accepted)) => {
                let entry = encode(&QueueEntry {
                    id: r.id.clone(),
                    kind: r.kind.clone(),
                    key: r.key.clone(),
                    time: r.time,
                    accepted,
                    payload: r.payload.clone(),
                })?;
                for (i, c) in cursor.iter().enumerate() {
                    if seq > *c {
                        queued.push((i, r.lane, queue_key(sinks[i], r.lane, seq), entry.clone()));
                        moved += 1;
                    }
                }
            }
            None => {
                for (i, c) in cursor.iter().enumerate() {
                    if seq > *c {
                        let d = undecodable(
                            next_dlq,
                            sinks[i],
                            seq,
                            "a queued record of the previous release could not be read",
                            &v,
                            now,
                        );
                        dead.push((next_dlq, encode(&d)?));
                        next_dlq += 1;
                    }
                }
            }
        }
    }
    for item in aside.iter() {
        let (_, v) = item?;
        let Some(a) = upgrade.aside_v0(&v) else {
            tracing::warn!("a set-aside record of the previous release could not be read; kept raw as a dead letter");
            let d = undecodable(
                next_dlq,
                sinks.first().copied().unwrap_or_default(),
                0,
                "a set-aside record of the previous release could not be read",
                &v,
                now,
            );
            dead.push((next_dlq, encode(&d)?));
            next_dlq += 1;
            continue;
        };
        let (lane, event_id, kind, key, time, accepted, payload) = match a.record {
            Ok((r, acc)) => (r.lane, r.id, r.kind, r.key, r.time, acc, r.payload),
            Err(raw) => (
                format::Lane::Normal,
                String::new(),
                "undecodable".to_string(),
                String::new(),
                Millis(0),
                Millis(0),
                raw,
            ),
        };
        let d = DeadLetter {
            id: next_dlq,
            sink: a.sink,
            lane,
            seq: a.seq,
            event_id,
            kind,
            key,
            time,
            accepted,
            reason: a.reason,
            attempts: 1,
            first_attempt: Some(a.at),
            last_attempt: Some(a.at),
            dead_at: a.at,
            payload,
        };
        dead.push((next_dlq, encode(&d)?));
        next_dlq += 1;
    }
    let mut rule_values = Vec::new();
    for item in rules.iter() {
        let (k, v) = item?;
        rule_values.push((k.to_vec(), prefixed(&v)));
    }
    let mut ledger_values = Vec::new();
    for item in ledger.iter() {
        let (k, v) = item?;
        ledger_values.push((k.to_vec(), prefixed(&v)));
    }
    let mut batch = Batch::default();
    for (k, v) in &rule_values {
        batch.insert(rule_key(&String::from_utf8_lossy(k)), v.as_slice());
    }
    for (k, v) in &ledger_values {
        // Format 0's ledger key (`<sink> 0x00 <event id>`) behind format 1's prefix.
        let mut key = b"l/".to_vec();
        key.extend_from_slice(k);
        batch.insert(key, v.as_slice());
    }
    for (id, v) in &dead {
        batch.insert(dlq_key(*id), v.as_slice());
    }
    let mut counts = vec![[(0u64, 0u64); 3]; sinks.len()];
    for (i, lane, k, v) in &queued {
        batch.insert(k.as_slice(), v.as_slice());
        let c = &mut counts[*i][lane.index()];
        c.0 += 1;
        c.1 += v.len() as u64;
    }
    for (i, sink) in sinks.iter().enumerate() {
        for lane in Lane::ALL {
            let (d, b) = counts[i][lane.index()];
            batch.insert(count_key(sink, lane), &count_value(d, b));
        }
    }
    if let Some(next) = meta.get("next_seq")? {
        batch.insert(format::META_NEXT_SEQ, &u64_key(u64_of(&next)));
    }
    batch.insert(format::META_NEXT_DLQ, &u64_key(next_dlq));
    batch.insert(format::META_FORMAT, &u64_key(u64::from(format::FORMAT)));
    tree.apply_batch(batch)?;
    tracing::info!(
        queued = moved,
        dead_letters = dead.len(),
        rule_states = rule_values.len(),
        "event store converted from format 0 to format {}",
        format::FORMAT
    );
    Ok(())
}

/// Remove format 0's trees once the conversion is on disk.
pub(super) fn drop_legacy(db: &sled::Db) -> Result<(), StoreError> {
    let names = db.tree_names();
    for t in LEGACY_TREES {
        if names.iter().any(|n| n.as_ref() == t.as_bytes()) {
            db.drop_tree(t)?;
        }
    }
    Ok(())
}
