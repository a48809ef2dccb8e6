//! The durable event queue, in a sled database under the data directory.
//!
//! Invariants:
//! - An event is *accepted* only once [`Store::commit`] returned: the event
//!   and the edge-rule state that produced it are written in one transaction
//!   and flushed to disk. A crash before that loses the sample, never half an
//!   event; a crash after keeps both, so the rule does not emit it again.
//! - Events are numbered by a gap-free sequence (`meta/next_seq`), in commit
//!   order. Keys are big-endian so sled iterates them in that order.
//! - Each sink has its own read position (`cursors/<sink>`): the highest
//!   sequence it has finished with, delivered or set aside. Sinks acknowledge
//!   independently; an event is deleted only when every sink is past it.
//! - A sink moves its cursor only after the destination confirmed. Between
//!   the destination's confirmation and the cursor flush a crash makes the
//!   sink deliver the event again, so sinks must deliver idempotently; the
//!   `ledger` tree lets a sink record its delivery intent (e.g. the absolute
//!   value it is about to write) before it acts, and is cleared on ack.
//! - An event a destination refuses for good is copied to `aside` with the
//!   reason, and the sink moves on. Nothing leaves the store silently.
//! - A record that cannot be decoded is set aside too, as raw bytes.

use crate::edge::RuleState;
use crate::model::{Event, LatencyClass, Millis};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use tokio::sync::watch;

/// Queued records `oldest_age` reads at most per call.
const AGE_SCAN: usize = 10_000;

/// sled's page cache; the default (1 GiB) is far more than a gateway has.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the event store in {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("event store I/O: {0}")]
    Io(#[from] sled::Error),
    #[error("cannot encode a record: {0}")]
    Encode(#[from] postcard::Error),
    #[error("unknown sink {0:?}")]
    UnknownSink(String),
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Io(e),
        }
    }
}

/// An event as kept in the queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub event: Event,
    /// When the gateway accepted it.
    pub accepted: Millis,
}

/// An event (or undecodable record) a sink set aside, with why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AsideEntry {
    pub seq: u64,
    pub sink: String,
    pub reason: String,
    pub at: Millis,
    /// `None` when the record could not be decoded; `raw` then holds it.
    pub event: Option<StoredEvent>,
    pub raw: Vec<u8>,
}

/// One queued record as a sink reads it.
pub struct Queued {
    pub seq: u64,
    pub record: Result<StoredEvent, (Vec<u8>, String)>,
}

pub struct Store {
    db: sled::Db,
    events: sled::Tree,
    cursors: sled::Tree,
    rules: sled::Tree,
    aside: sled::Tree,
    ledger: sled::Tree,
    meta: sled::Tree,
    /// In-memory mirror of the durable counters, for cheap metrics.
    state: Mutex<Counters>,
    /// Highest committed sequence; sinks wait on it for new work.
    committed: watch::Sender<u64>,
}

struct Counters {
    next_seq: u64,
    cursors: HashMap<String, u64>,
    aside: u64,
}

fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn seq_of(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(b)
}

impl Store {
    /// Open (or create) the store with the names of the sinks that read it.
    pub fn open(dir: &Path, sinks: &[&str]) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|source| StoreError::Open {
                path: dir.display().to_string(),
                source,
            })?;
        let events = db.open_tree("events")?;
        let cursors = db.open_tree("cursors")?;
        let rules = db.open_tree("rules")?;
        let aside = db.open_tree("aside")?;
        let ledger = db.open_tree("ledger")?;
        let meta = db.open_tree("meta")?;
        let last_event = events.last()?.map(|(k, _)| seq_of(&k));
        let stored_next = meta.get("next_seq")?.map(|v| seq_of(&v));
        let next_seq = stored_next
            .unwrap_or(1)
            .max(last_event.map_or(1, |s| s + 1));
        let mut cursor_map = HashMap::new();
        for sink in sinks {
            let cursor = match cursors.get(sink.as_bytes())? {
                Some(v) => seq_of(&v),
                // A new sink starts at the oldest event still kept.
                None => events
                    .first()?
                    .map_or(next_seq - 1, |(k, _)| seq_of(&k) - 1),
            };
            cursor_map.insert(sink.to_string(), cursor);
        }
        let aside_count = aside.len() as u64;
        let (committed, _) = watch::channel(next_seq - 1);
        let store = Store {
            db,
            events,
            cursors,
            rules,
            aside,
            ledger,
            meta,
            state: Mutex::new(Counters {
                next_seq,
                cursors: cursor_map,
                aside: aside_count,
            }),
            committed,
        };
        store.collect_garbage()?;
        Ok(store)
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        // A poisoned lock only means another thread panicked mid-update of
        // plain integers; the values are still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rule states saved by earlier commits, to resume the edge.
    pub fn rule_states(&self) -> Result<HashMap<String, RuleState>, StoreError> {
        let mut out = HashMap::new();
        for item in self.rules.iter() {
            let (k, v) = item?;
            let name = String::from_utf8_lossy(&k).to_string();
            match postcard::from_bytes::<RuleState>(&v) {
                Ok(state) => {
                    out.insert(name, state);
                }
                Err(e) => {
                    tracing::warn!(rule = %name, error = %e, "stored rule state unreadable; the rule starts fresh");
                }
            }
        }
        Ok(out)
    }

    /// Append events and save rule states atomically, then flush to disk.
    /// Returns the sequences given to the events.
    pub async fn commit(
        &self,
        events: &[Event],
        states: &[(String, RuleState)],
    ) -> Result<Vec<u64>, StoreError> {
        if events.is_empty() && states.is_empty() {
            return Ok(Vec::new());
        }
        let accepted = Millis::now();
        let encoded_events = events
            .iter()
            .map(|e| {
                postcard::to_stdvec(&StoredEvent {
                    event: e.clone(),
                    accepted,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let encoded_states = states
            .iter()
            .map(|(n, s)| Ok((n.as_bytes().to_vec(), postcard::to_stdvec(s)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let first = self.counters().next_seq;
        (&self.events, &self.rules, &self.meta).transaction(|(ev, ru, me)| {
            for (i, bytes) in encoded_events.iter().enumerate() {
                ev.insert(&key(first + i as u64), bytes.as_slice())?;
            }
            for (name, bytes) in &encoded_states {
                ru.insert(name.as_slice(), bytes.as_slice())?;
            }
            me.insert("next_seq", &key(first + encoded_events.len() as u64))?;
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        })?;
        self.db.flush_async().await?;
        let last = first + events.len() as u64;
        self.counters().next_seq = last;
        if !events.is_empty() {
            self.committed.send_replace(last - 1);
        }
        Ok((first..last).collect())
    }

    /// Wait handle that changes when new events are committed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    fn cursor(&self, sink: &str) -> Result<u64, StoreError> {
        self.counters()
            .cursors
            .get(sink)
            .copied()
            .ok_or_else(|| StoreError::UnknownSink(sink.to_string()))
    }

    /// The oldest record the sink has not finished with.
    pub fn next(&self, sink: &str) -> Result<Option<Queued>, StoreError> {
        let cursor = self.cursor(sink)?;
        let Some((k, v)) = self.events.range(key(cursor + 1)..).next().transpose()? else {
            return Ok(None);
        };
        let record =
            postcard::from_bytes::<StoredEvent>(&v).map_err(|e| (v.to_vec(), e.to_string()));
        Ok(Some(Queued {
            seq: seq_of(&k),
            record,
        }))
    }

    /// The sink is done with `seq` (delivered and confirmed): move its cursor,
    /// clear its ledger entry for the event, flush, and drop events every
    /// sink is past.
    pub async fn ack(
        &self,
        sink: &str,
        seq: u64,
        ledger_key: Option<&str>,
    ) -> Result<(), StoreError> {
        self.cursor(sink)?;
        let lkey = ledger_key.map(|k| ledger_key_bytes(sink, k));
        (&self.cursors, &self.ledger).transaction(|(cu, le)| {
            cu.insert(sink.as_bytes(), &key(seq))?;
            if let Some(k) = &lkey {
                le.remove(k.as_slice())?;
            }
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        })?;
        self.db.flush_async().await?;
        self.counters().cursors.insert(sink.to_string(), seq);
        self.collect_garbage()
    }

    /// The destination refused the record for good: keep it aside with the
    /// reason and move the sink past it, in one transaction.
    pub async fn set_aside(
        &self,
        sink: &str,
        queued: &Queued,
        reason: &str,
        ledger_key: Option<&str>,
    ) -> Result<(), StoreError> {
        self.cursor(sink)?;
        let (event, raw) = match &queued.record {
            Ok(ev) => (Some(ev.clone()), Vec::new()),
            Err((raw, _)) => (None, raw.clone()),
        };
        let entry = AsideEntry {
            seq: queued.seq,
            sink: sink.to_string(),
            reason: reason.to_string(),
            at: Millis::now(),
            event,
            raw,
        };
        let bytes = postcard::to_stdvec(&entry)?;
        let lkey = ledger_key.map(|k| ledger_key_bytes(sink, k));
        let mut aside_key = key(queued.seq).to_vec();
        aside_key.extend_from_slice(sink.as_bytes());
        (&self.cursors, &self.aside, &self.ledger).transaction(|(cu, asd, le)| {
            asd.insert(aside_key.as_slice(), bytes.as_slice())?;
            cu.insert(sink.as_bytes(), &key(queued.seq))?;
            if let Some(k) = &lkey {
                le.remove(k.as_slice())?;
            }
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        })?;
        self.db.flush_async().await?;
        {
            let mut c = self.counters();
            c.cursors.insert(sink.to_string(), queued.seq);
            c.aside += 1;
        }
        self.collect_garbage()
    }

    /// Events set aside so far (oldest first).
    pub fn aside_entries(&self) -> Result<Vec<AsideEntry>, StoreError> {
        let mut out = Vec::new();
        for item in self.aside.iter() {
            let (_, v) = item?;
            if let Ok(e) = postcard::from_bytes::<AsideEntry>(&v) {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// A sink's recorded delivery intent for an event, if any.
    pub fn ledger_get(&self, sink: &str, event_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .ledger
            .get(ledger_key_bytes(sink, event_id))?
            .map(|v| v.to_vec()))
    }

    /// Record a delivery intent durably before acting on it.
    pub async fn ledger_put(
        &self,
        sink: &str,
        event_id: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        self.ledger
            .insert(ledger_key_bytes(sink, event_id), value)?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// Delete events that every sink is past. Idempotent; a crash in the
    /// middle leaves events that the next call deletes.
    fn collect_garbage(&self) -> Result<(), StoreError> {
        let Some(min) = self.counters().cursors.values().copied().min() else {
            return Ok(());
        };
        for item in self.events.range(..=key(min)) {
            let (k, _) = item?;
            self.events.remove(k)?;
        }
        Ok(())
    }

    /// Undelivered records for a sink.
    pub fn depth(&self, sink: &str) -> u64 {
        let c = self.counters();
        let cursor = c.cursors.get(sink).copied().unwrap_or(0);
        (c.next_seq - 1).saturating_sub(cursor)
    }

    pub fn aside_count(&self) -> u64 {
        self.counters().aside
    }

    /// Age, at `now`, of the oldest undelivered event of each latency class
    /// for a sink (event time, so it says how late the business hears of it).
    /// Looks at the first `AGE_SCAN` queued records only, so a scrape stays
    /// cheap with a deep backlog; a class first seen further back is absent.
    pub fn oldest_age(&self, sink: &str, now: Millis) -> HashMap<LatencyClass, f64> {
        let mut out = HashMap::new();
        let Ok(cursor) = self.cursor(sink) else {
            return out;
        };
        for item in self.events.range(key(cursor + 1)..).take(AGE_SCAN) {
            let Ok((_, v)) = item else { break };
            if let Ok(ev) = postcard::from_bytes::<StoredEvent>(&v) {
                out.entry(ev.event.class())
                    .or_insert_with(|| now.saturating_sub(ev.event.time).max(0) as f64 / 1000.0);
            }
            if out.len() == LatencyClass::ALL.len() {
                break;
            }
        }
        out
    }
}

fn ledger_key_bytes(sink: &str, event_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(sink.len() + 1 + event_id.len());
    k.extend_from_slice(sink.as_bytes());
    k.push(0);
    k.extend_from_slice(event_id.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::CounterState;
    use crate::model::{EventBody, Production};

    fn event(n: i64) -> Event {
        Event {
            id: format!("gw-r-{n}"),
            rule: "r".into(),
            time: Millis(n),
            body: EventBody::Production(Production {
                workcenter: "WC".into(),
                quantity: 1,
                counter_from: 0,
                counter_to: 1,
            }),
        }
    }

    #[tokio::test]
    async fn survives_reopen_and_sinks_ack_independently() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path(), &["a", "b"]).expect("open");
            let state = vec![(
                "r".to_string(),
                RuleState::Counter(CounterState { last: Some(9) }),
            )];
            let seqs = store
                .commit(&[event(1), event(2)], &state)
                .await
                .expect("commit");
            assert_eq!(seqs, vec![1, 2]);
            let q = store.next("a").expect("next").expect("some");
            store.ack("a", q.seq, None).await.expect("ack");
            assert_eq!(store.depth("a"), 1);
            assert_eq!(store.depth("b"), 2);
        }
        let store = Store::open(dir.path(), &["a", "b"]).expect("reopen");
        assert_eq!(
            store.rule_states().expect("states").get("r"),
            Some(&RuleState::Counter(CounterState { last: Some(9) }))
        );
        assert_eq!(store.next("a").expect("n").map(|q| q.seq), Some(2));
        assert_eq!(store.next("b").expect("n").map(|q| q.seq), Some(1));
        let seqs = store.commit(&[event(3)], &[]).await.expect("commit");
        assert_eq!(seqs, vec![3], "sequence continues after reopen");
    }

    #[tokio::test]
    async fn set_aside_keeps_the_event_and_moves_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &["a"]).expect("open");
        store
            .commit(&[event(1), event(2)], &[])
            .await
            .expect("commit");
        let q = store.next("a").expect("n").expect("some");
        store
            .set_aside("a", &q, "refused", None)
            .await
            .expect("aside");
        assert_eq!(store.aside_count(), 1);
        assert_eq!(store.next("a").expect("n").map(|q| q.seq), Some(2));
        let entries = store.aside_entries().expect("entries");
        assert_eq!(entries[0].reason, "refused");
        assert_eq!(
            entries[0].event.as_ref().map(|e| e.event.id.as_str()),
            Some("gw-r-1")
        );
    }
}
