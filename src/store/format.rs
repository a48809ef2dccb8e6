//! The store's on-disk format, version [`FORMAT`].
//!
//! Everything lives in one sled tree, [`TREE`], so that each change (events
//! with the rule states that made them, an ack with its ledger entry, a move
//! to the dead letters) is one atomic batch. Keys (integers big-endian, so
//! sled iterates in order; sink names hold no NUL):
//! - `m/format` → u64, the layout version; `m/next_seq`, `m/next_dlq` → u64;
//!   `m/count/<sink> 0x00 <lane>` → depth u64 + bytes u64 of that queue,
//!   written with every change to it, so opening does not count the queue.
//! - `q/<sink> 0x00 <lane u8> <seq u64>` → envelope([`QueueEntry`]): each
//!   sink's own position in every lane. An entry leaves only when that sink
//!   acknowledged the event or moved it to the dead letters.
//! - `r/<rule>` → opaque bytes (the edge's own versioned state).
//! - `l/<sink> 0x00 <event id>` → opaque bytes (a sink's versioned delivery
//!   intent).
//! - `d/<id u64>` → envelope([`DeadLetter`]).
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

/// [`QueueEntry`]'s encoding, written from a [`Record`] without copying it
/// (same fields in the same order, so it decodes as a `QueueEntry`).
#[derive(Serialize)]
struct QueueEntryRef<'a> {
    id: &'a str,
    kind: &'a str,
    key: &'a str,
    time: Millis,
    accepted: Millis,
    payload: &'a [u8],
}

pub fn encode_entry(r: &Record, accepted: Millis) -> Result<Vec<u8>, postcard::Error> {
    encode(&QueueEntryRef {
        id: &r.id,
        kind: &r.kind,
        key: &r.key,
        time: r.time,
        accepted,
        payload: &r.payload,
    })
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

/// The one tree of format 1.
pub const TREE: &str = "store";

pub const META_FORMAT: &[u8] = b"m/format";
pub const META_NEXT_SEQ: &[u8] = b"m/next_seq";
pub const META_NEXT_DLQ: &[u8] = b"m/next_dlq";
pub const RULE_PREFIX: &[u8] = b"r/";
pub const DLQ_PREFIX: &[u8] = b"d/";
pub const QUEUE_PREFIX: &[u8] = b"q/";

fn join(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

pub fn count_key(sink: &str, lane: Lane) -> Vec<u8> {
    join(&[b"m/count/", sink.as_bytes(), &[0, lane.byte()]])
}

/// Depth and bytes as stored under [`count_key`].
pub fn count_value(depth: u64, bytes: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&depth.to_be_bytes());
    v[8..].copy_from_slice(&bytes.to_be_bytes());
    v
}

pub fn parse_count(v: &[u8]) -> (u64, u64) {
    (
        u64_of(v.get(..8).unwrap_or(&[])),
        u64_of(v.get(8..16).unwrap_or(&[])),
    )
}

pub fn queue_key(sink: &str, lane: Lane, seq: u64) -> Vec<u8> {
    join(&[
        QUEUE_PREFIX,
        sink.as_bytes(),
        &[0, lane.byte()],
        &seq.to_be_bytes(),
    ])
}

/// Lane and sequence from the last 9 bytes of a queue key.
pub fn parse_queue_key(k: &[u8]) -> Option<(Lane, u64)> {
    let tail = k.len().checked_sub(9).map(|i| &k[i..])?;
    Lane::from_byte(tail[0]).map(|l| (l, u64_of(&tail[1..])))
}

/// The keys of one sink's lane, from sequence `from` on.
pub fn lane_range(sink: &str, lane: Lane, from: u64) -> std::ops::RangeInclusive<Vec<u8>> {
    queue_key(sink, lane, from)..=queue_key(sink, lane, u64::MAX)
}

pub fn rule_key(name: &str) -> Vec<u8> {
    join(&[RULE_PREFIX, name.as_bytes()])
}

pub fn dlq_key(id: u64) -> Vec<u8> {
    join(&[DLQ_PREFIX, &id.to_be_bytes()])
}

pub fn ledger_key(sink: &str, event_id: &str) -> Vec<u8> {
    join(&[b"l/", sink.as_bytes(), &[0], event_id.as_bytes()])
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
        let r = Record {
            id: e.id.clone(),
            kind: e.kind.clone(),
            key: e.key.clone(),
            lane: Lane::Normal,
            time: e.time,
            payload: e.payload.clone(),
        };
        let by_ref = encode_entry(&r, e.accepted).expect("encode");
        assert_eq!(by_ref, bytes, "the borrowed form encodes the same bytes");
    }

    #[test]
    fn queue_keys_sort_by_lane_then_sequence() {
        let mut keys = [
            queue_key("odoo", Lane::Bulk, 1),
            queue_key("odoo", Lane::Critical, 300),
            queue_key("odoo", Lane::Normal, 2),
            queue_key("odoo", Lane::Critical, 7),
        ];
        assert!(lane_range("odoo", Lane::Normal, 0).contains(&keys[2]));
        assert!(!lane_range("odo", Lane::Normal, 0).contains(&keys[2]));
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
