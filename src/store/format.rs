//! The store's on-disk format, version [`FORMAT`].
//!
//! Trees and keys (all integers big-endian, so sled iterates in order):
//! - `meta`: `format` → u32, the layout version; `next_seq` → u64, the next
//!   event sequence; `next_dlq` → u64, the next dead-letter id.
//! - `queue/<sink>`: `[lane u8][seq u64]` → envelope([`QueueEntry`]). One
//!   tree per sink is that sink's read position in every lane: an entry
//!   leaves it only when the sink acknowledged the event, or moved it to the
//!   dead letters.
//! - `rules`: rule name → opaque bytes (the edge's own versioned state).
//! - `ledger`: `<sink> 0x00 <event id>` → opaque bytes (a sink's versioned
//!   delivery intent).
//! - `dlq`: `id u64` → envelope([`DeadLetter`]).
//!
//! Every record is an envelope: one version byte, then postcard. postcard is
//! not self-describing, so a later release that adds a field adds a record
//! version and keeps decoding this one with its old struct; it never
//! reinterprets old bytes. Opaque payloads (events, rule states, ledger
//! entries) follow the same rule under their owners.
//!
//! Format history: 0 (no `format` key) was one FIFO `events` tree with one
//! cursor per sink; [`super::migrate`] converts it to 1.

use crate::model::Millis;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The layout this release writes. A store with a larger one is refused.
pub const FORMAT: u32 = 1;

/// Version byte of the records this release writes.
const RECORD_V1: u8 = 1;

/// How fast an event must reach its destination; each sink reads each lane
/// from its own position, critical first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Lane {
    /// Seconds: a stopped machine, an alarm.
    Critical,
    /// Minutes: produced quantities, quality, consumption.
    Normal,
    /// Hours: periodic summaries.
    Bulk,
}

impl Lane {
    pub const ALL: [Lane; 3] = [Lane::Critical, Lane::Normal, Lane::Bulk];

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Critical => "critical",
            Lane::Normal => "normal",
            Lane::Bulk => "bulk",
        }
    }

    pub fn parse(s: &str) -> Option<Lane> {
        Lane::ALL.into_iter().find(|l| l.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    fn byte(self) -> u8 {
        self as u8
    }

    fn from_byte(b: u8) -> Option<Lane> {
        Lane::ALL.get(usize::from(b)).copied()
    }
}

impl std::fmt::Display for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event as the store sees it: what it needs to order, account and show
/// it, and the event itself as opaque bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The event's stable id (destinations de-duplicate by it).
    pub id: String,
    /// Event kind, for people (`production`, `downtime_started`, …).
    pub kind: String,
    /// Order key (a work center, an equipment): a retried event holds back
    /// only later events of the same key in the same lane.
    pub key: String,
    pub lane: Lane,
    /// Event time: when it happened at the machine.
    pub time: Millis,
    /// The encoded event, versioned by its owner.
    pub payload: Vec<u8>,
}

/// One queued event of one sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub id: String,
    pub kind: String,
    pub key: String,
    pub time: Millis,
    /// When the gateway accepted it (commit time).
    pub accepted: Millis,
    pub payload: Vec<u8>,
}

/// An event a sink refused for good, kept with why until replayed or dropped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: u64,
    pub sink: String,
    pub lane: Lane,
    /// Its sequence while it was queued.
    pub seq: u64,
    pub event_id: String,
    pub kind: String,
    pub key: String,
    pub time: Millis,
    pub accepted: Millis,
    /// The destination's words (or why the record could not be read).
    pub reason: String,
    pub attempts: u32,
    pub first_attempt: Option<Millis>,
    pub last_attempt: Option<Millis>,
    pub dead_at: Millis,
    /// The event as queued; for a record that could not be decoded, its raw bytes.
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty record")]
    Empty,
    #[error("record version {0} is newer than this release reads")]
    Version(u8),
    #[error("damaged record: {0}")]
    Postcard(#[from] postcard::Error),
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    let mut out = vec![RECORD_V1];
    out.extend(postcard::to_stdvec(value)?);
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    match bytes.split_first() {
        None => Err(DecodeError::Empty),
        Some((&RECORD_V1, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&v, _)) => Err(DecodeError::Version(v)),
    }
}

pub fn u64_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

pub fn u64_of(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(b)
}

pub fn queue_tree(sink: &str) -> String {
    format!("queue/{sink}")
}

pub fn queue_key(lane: Lane, seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = lane.byte();
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub fn parse_queue_key(k: &[u8]) -> Option<(Lane, u64)> {
    let (&lane, seq) = k.split_first()?;
    (seq.len() == 8).then(|| Lane::from_byte(lane).map(|l| (l, u64_of(seq))))?
}

/// The key range of one lane, from `from` on.
pub fn lane_range(lane: Lane, from: u64) -> std::ops::RangeInclusive<[u8; 9]> {
    queue_key(lane, from)..=queue_key(lane, u64::MAX)
}

pub fn ledger_key(sink: &str, event_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(sink.len() + 1 + event_id.len());
    k.extend_from_slice(sink.as_bytes());
    k.push(0);
    k.extend_from_slice(event_id.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_refuse_newer_versions() {
        let e = QueueEntry {
            id: "a".into(),
            kind: "production".into(),
            key: "WC".into(),
            time: Millis(5),
            accepted: Millis(6),
            payload: vec![1, 2, 3],
        };
        let bytes = encode(&e).expect("encode");
        assert_eq!(bytes[0], RECORD_V1);
        assert_eq!(decode::<QueueEntry>(&bytes).expect("decode"), e);
        let mut newer = bytes.clone();
        newer[0] = 9;
        assert!(matches!(
            decode::<QueueEntry>(&newer),
            Err(DecodeError::Version(9))
        ));
        assert!(matches!(decode::<QueueEntry>(&[]), Err(DecodeError::Empty)));
    }

    #[test]
    fn queue_keys_sort_by_lane_then_sequence() {
        let mut keys = [
            queue_key(Lane::Bulk, 1),
            queue_key(Lane::Critical, 300),
            queue_key(Lane::Normal, 2),
            queue_key(Lane::Critical, 7),
        ];
        keys.sort();
        let parsed: Vec<_> = keys.iter().filter_map(|k| parse_queue_key(k)).collect();
        assert_eq!(
            parsed,
            vec![
                (Lane::Critical, 7),
                (Lane::Critical, 300),
                (Lane::Normal, 2),
                (Lane::Bulk, 1)
            ]
        );
    }
}
