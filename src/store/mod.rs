//! The durable event queue, in a sled database under the data directory.
//!
//! Invariants:
//! - **Accepted means durable.** [`Store::commit`] returns only after the
//!   fsync that covers its write ([`flush`]: group commit, at most one fsync
//!   per `flush_interval`). Events and the rule states that produced them are
//!   written in one transaction, so a crash loses the sample, never half an
//!   event, and a rule never emits an event twice.
//! - **Sequences** are assigned inside the commit, under the writer lock, gap
//!   free and in commit order. One process writes a data directory ([`lock`]).
//! - **Lanes.** Every event goes to one lane (critical, normal, bulk) of every
//!   sink's queue. Each sink reads each lane from its own position; an event
//!   leaves a sink's lane only when that sink acknowledged it ([`Store::ack`])
//!   or moved it to the dead letters ([`Store::dead_letter`]).
//! - **Nothing leaves silently.** An event leaves otherwise only by quota
//!   eviction (bulk, then normal; critical never) or a lane's TTL, each
//!   counted and logged. A record that cannot be decoded is dead-lettered as
//!   raw bytes.
//! - **Opaque payloads.** The store orders and accounts events by
//!   [`Record`]'s metadata; events, rule states and ledger entries are bytes
//!   versioned by their owners. The store's own records are versioned
//!   envelopes ([`format`]), and the layout has a version: a newer one is
//!   refused, never written; an older one is migrated ([`migrate`]).
//! - **Damage** is contained: a store sled cannot open is moved aside and a
//!   fresh one started ([`Store::open_or_quarantine`]).
//! - **Counters in memory** mirror the queue (depth, bytes, oldest event per
//!   sink and lane), so metrics never scan it.

pub mod flush;
pub mod format;
pub mod lock;
pub mod metrics;
pub mod migrate;

pub use format::{DeadLetter, Lane, QueueEntry, Record};

/// The `kind` of a dead letter that is a message a source refused.
pub const SOURCE_MESSAGE: &str = "source message";
pub use migrate::Upgrade;

use crate::model::Millis;
use flush::Flusher;
use format::{
    count_key, count_value, decode, dlq_key, encode, lane_range, ledger_key, parse_count,
    parse_queue_key, queue_key, rule_key, u64_key, u64_of, META_FORMAT, META_NEXT_DLQ,
    META_NEXT_SEQ,
};
use metrics::StoreMetrics;
use sled::{Batch, Tree};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// sled's page cache. Small: the queue is read at its front and written at
/// its end, so a big cache only costs a gateway memory.
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// sled's log segment size: smaller segments are rewritten (space
/// reclaimed) sooner in a queue workload.
const SEGMENT_BYTES: usize = 256 * 1024;

/// A plain file beside sled's, so a newer store is refused before sled
/// touches it.
const FORMAT_FILE: &str = "plantgate-format";

/// The format of the store in `dir`, without opening it (a running
/// gateway holds it): `None` when there is no store, 0 for one from before
/// the format was recorded. Used to refuse a release that cannot read it.
pub fn format_on_disk(dir: &Path) -> Result<Option<u32>, StoreError> {
    let file = dir.join(FORMAT_FILE);
    match std::fs::read_to_string(&file) {
        Ok(s) => s
            .trim()
            .parse::<u32>()
            .map(Some)
            .map_err(|_| StoreError::Damaged {
                path: dir.display().to_string(),
                why: format!(
                    "{} holds {:?}, not a format number",
                    file.display(),
                    s.trim()
                ),
            }),
        // sled's own files without ours: a format-0 store.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(dir.join("conf").exists().then_some(0))
        }
        Err(source) => Err(StoreError::File {
            path: file.display().to_string(),
            source,
        }),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the event store in {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("the event store in {path} has format {found}, newer than this release reads ({supported}); it was written by a newer plantgate and is left untouched: run that release, or point data_dir elsewhere")]
    NewerFormat {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error("the event store in {path} is damaged: {why}")]
    Damaged { path: String, why: String },
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error("event store I/O: {0}")]
    Io(#[from] sled::Error),
    #[error("event store file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot encode a record: {0}")]
    Encode(#[from] postcard::Error),
    #[error("cannot flush the event store to disk: {0}")]
    Flush(String),
    #[error("unknown sink {0:?}")]
    UnknownSink(String),
    #[error("no dead letter #{0}")]
    NoDeadLetter(u64),
    #[error("dead letter #{0} is a message a source refused, not an event: it cannot be replayed (fix the sender, then drop it)")]
    NotReplayable(u64),
    #[error("event store full: {used} bytes kept, {max} allowed, and only critical events and dead letters are left; sources are slowed until the destination takes events again (or raise [store] max_disk)")]
    Full { used: u64, max: u64 },
}

/// One lane's delivery target and retention.
#[derive(Clone, Debug, PartialEq)]
pub struct LaneOptions {
    /// The oldest undelivered event should be younger than this.
    pub target: Duration,
    /// Events older than this (since accepted) are dropped, counted.
    pub ttl: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoreOptions {
    /// Longest a commit waits for others to share its fsync.
    pub flush_interval: Duration,
    /// Bytes of queued events and dead letters kept at most.
    pub max_bytes: Option<u64>,
    /// Indexed by [`Lane::index`].
    pub lanes: [LaneOptions; 3],
}

impl Default for StoreOptions {
    fn default() -> Self {
        let lane = |secs| LaneOptions {
            target: Duration::from_secs(secs),
            ttl: None,
        };
        StoreOptions {
            flush_interval: Duration::from_millis(5),
            max_bytes: None,
            lanes: [lane(10), lane(300), lane(3600)],
        }
    }
}

/// One queued record as a sink reads it.
#[derive(Clone, Debug)]
pub struct Queued {
    pub seq: u64,
    pub lane: Lane,
    /// Stored size, for accounting.
    pub bytes: usize,
    /// The entry, or its raw bytes and why they could not be decoded.
    pub entry: Result<QueueEntry, (Vec<u8>, String)>,
}

impl Queued {
    pub fn key(&self) -> Option<&str> {
        self.entry.as_ref().ok().map(|e| e.key.as_str())
    }
    pub fn event_id(&self) -> Option<&str> {
        self.entry.as_ref().ok().map(|e| e.id.as_str())
    }
}

/// What a delivery attempt history was when a sink gave up on an event.
#[derive(Clone, Debug, Default)]
pub struct Attempts {
    pub count: u32,
    pub first: Option<Millis>,
    pub last: Option<Millis>,
}

/// A store moved aside at open because it could not be read.
#[derive(Clone, Debug)]
pub struct Quarantine {
    pub moved_to: PathBuf,
    pub reason: String,
}

/// Per sink and lane, kept as the queue changes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LaneStats {
    pub depth: u64,
    pub bytes: u64,
    /// Sequence and event time of the lane's first entry (in [`Stats`]).
    pub head: Option<(u64, Millis)>,
}

/// A snapshot for `queue stats`, `/status` and the metrics.
#[derive(Clone, Debug)]
pub struct Stats {
    pub sinks: Vec<SinkStats>,
    pub targets: [Duration; 3],
    pub max_bytes: Option<u64>,
    pub used_bytes: u64,
    pub backpressure: bool,
    pub quarantine: Option<Quarantine>,
}

#[derive(Clone, Debug)]
pub struct SinkStats {
    pub sink: String,
    pub lanes: [LaneStats; 3],
    pub dead_letters: u64,
}

impl SinkStats {
    pub fn depth(&self) -> u64 {
        self.lanes.iter().map(|l| l.depth).sum()
    }
}

/// Where a lane's first entry is, as far as known without reading.
#[derive(Clone, Copy, Debug)]
enum Head {
    Known(Option<(u64, Millis)>),
    /// The head was removed: the new one is the first entry after this
    /// sequence. Looked up only when asked (stats, ages), so an ack does
    /// not pay for a read.
    After(u64),
}

impl Head {
    /// A sequence no entry of the lane is below.
    fn lower_bound(self) -> u64 {
        match self {
            Head::Known(Some((seq, _))) => seq,
            Head::Known(None) => 0,
            Head::After(seq) => seq + 1,
        }
    }
}

struct State {
    next_seq: u64,
    next_dlq: u64,
    /// Per sink (same order as `Store::sinks`), per lane; `head` unused here.
    lanes: Vec<[LaneStats; 3]>,
    heads: Vec<[Head; 3]>,
    /// Ledger keys that exist, so an ack removes one only when it is there.
    ledgered: std::collections::HashSet<Vec<u8>>,
    /// Dead letters per sink, and their bytes.
    dead: Vec<u64>,
    dead_bytes: u64,
    backpressure: bool,
}

impl State {
    fn used(&self) -> u64 {
        self.lanes
            .iter()
            .flat_map(|l| l.iter())
            .map(|l| l.bytes)
            .sum::<u64>()
            + self.dead_bytes
    }
}

/// Per-lane changes of one write, applied to the counters (in memory and in
/// the same batch on disk) together.
#[derive(Default)]
struct Changes {
    /// (sink index, lane) → (depth delta, bytes delta)
    deltas: Vec<((usize, Lane), (i64, i64))>,
}

impl Changes {
    fn add(&mut self, sink: usize, lane: Lane, depth: i64, bytes: i64) {
        match self.deltas.iter_mut().find(|(k, _)| *k == (sink, lane)) {
            Some((_, d)) => {
                d.0 += depth;
                d.1 += bytes;
            }
            None => self.deltas.push(((sink, lane), (depth, bytes))),
        }
    }
}

pub struct Store {
    db: sled::Db,
    dir: PathBuf,
    tree: Tree,
    sinks: Vec<String>,
    state: Mutex<State>,
    opts: StoreOptions,
    flusher: Flusher,
    /// Bumped when a sink may have new work (commit, replay).
    work: watch::Sender<u64>,
    pub metrics: StoreMetrics,
    quarantine: Option<Quarantine>,
    // Last: released after everything above is closed.
    _lock: lock::StoreLock,
}

impl Store {
    /// Open (or create) the store for the named sinks. A store that cannot
    /// be read is an error; see [`Store::open_or_quarantine`].
    pub fn open(
        dir: &Path,
        sinks: &[&str],
        opts: &StoreOptions,
        upgrade: &dyn Upgrade,
    ) -> Result<Store, StoreError> {
        let lock = lock::acquire(dir)?;
        Self::open_locked(dir, sinks, opts, upgrade, lock, None).map_err(|(_, e)| e)
    }

    /// Open the store; if its files are damaged, move them aside into
    /// `<dir>.damaged-<time>` and start a fresh store, so the gateway keeps
    /// running and the damage is reported (not a restart loop).
    pub fn open_or_quarantine(
        dir: &Path,
        sinks: &[&str],
        opts: &StoreOptions,
        upgrade: &dyn Upgrade,
    ) -> Result<Store, StoreError> {
        let lock = lock::acquire(dir)?;
        let (lock, why) = match Self::open_locked(dir, sinks, opts, upgrade, lock, None) {
            Ok(store) => return Ok(store),
            Err((lock, e)) if is_damage(&e) => (lock, e),
            Err((_, e)) => return Err(e),
        };
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let mut moved = dir.as_os_str().to_owned();
        moved.push(format!(".damaged-{stamp}"));
        let mut moved = PathBuf::from(moved);
        let base = moved.clone();
        let mut n = 1;
        while moved.exists() {
            n += 1;
            moved = PathBuf::from(format!("{}-{n}", base.display()));
        }
        std::fs::rename(dir, &moved).map_err(|source| StoreError::File {
            path: dir.display().to_string(),
            source,
        })?;
        tracing::error!(store = %dir.display(), moved_to = %moved.display(), reason = %why,
            "event store damaged: moved aside for inspection, started a fresh one");
        let q = Quarantine {
            moved_to: moved,
            reason: why.to_string(),
        };
        Self::open_locked(dir, sinks, opts, upgrade, lock, Some(q)).map_err(|(_, e)| e)
    }

    fn open_locked(
        dir: &Path,
        sinks: &[&str],
        opts: &StoreOptions,
        upgrade: &dyn Upgrade,
        lock: lock::StoreLock,
        quarantine: Option<Quarantine>,
    ) -> Result<Store, (lock::StoreLock, StoreError)> {
        // sled panics on some damaged files instead of returning an error.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Self::open_parts(dir, sinks, upgrade)
        }));
        let (db, tree, state) = match opened {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Err((lock, e)),
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "the storage engine failed while reading it".into());
                return Err((
                    lock,
                    StoreError::Damaged {
                        path: dir.display().to_string(),
                        why,
                    },
                ));
            }
        };
        let metrics = StoreMetrics::new(sinks, opts);
        let hist = metrics.flush_seconds.clone();
        let flusher = Flusher::start(
            db.clone(),
            opts.flush_interval,
            Box::new(move |s| hist.observe(s)),
        );
        let (work, _) = watch::channel(0);
        if quarantine.is_some() {
            metrics.quarantined.set(1);
        }
        let store = Store {
            db,
            dir: dir.to_path_buf(),
            tree,
            sinks: sinks.iter().map(|s| s.to_string()).collect(),
            state: Mutex::new(state),
            opts: opts.clone(),
            flusher,
            work,
            metrics,
            quarantine,
            _lock: lock,
        };
        {
            let st = store.state();
            for i in 0..store.sinks.len() {
                for lane in Lane::ALL {
                    store.publish(&st, i, lane);
                }
                store.metrics.set_dead(&store.sinks[i], st.dead[i]);
            }
        }
        Ok(store)
    }

    fn open_parts(
        dir: &Path,
        sinks: &[&str],
        upgrade: &dyn Upgrade,
    ) -> Result<(sled::Db, Tree, State), StoreError> {
        let path = dir.display().to_string();
        let format_file = dir.join(FORMAT_FILE);
        let file_format = match std::fs::read_to_string(&format_file) {
            Ok(s) => Some(s.trim().parse::<u32>().map_err(|_| StoreError::Damaged {
                path: path.clone(),
                why: format!(
                    "{} holds {:?}, not a format number",
                    format_file.display(),
                    s.trim()
                ),
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(StoreError::File {
                    path: format_file.display().to_string(),
                    source,
                })
            }
        };
        if let Some(found) = file_format.filter(|f| *f > format::FORMAT) {
            return Err(StoreError::NewerFormat {
                path,
                found,
                supported: format::FORMAT,
            });
        }
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .segment_size(existing_segment_size(dir).unwrap_or(SEGMENT_BYTES))
            .flush_every_ms(None)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        let tree = db.open_tree(format::TREE)?;
        match tree.get(META_FORMAT)?.map(|v| u64_of(&v)) {
            Some(f) if f > u64::from(format::FORMAT) => {
                return Err(StoreError::NewerFormat {
                    path,
                    found: u32::try_from(f).unwrap_or(u32::MAX),
                    supported: format::FORMAT,
                })
            }
            Some(_) => migrate::drop_legacy(&db)?,
            None => {
                migrate::from_unversioned(&db, &tree, sinks, upgrade)?;
                db.flush()?;
                migrate::drop_legacy(&db)?;
            }
        }
        std::fs::write(&format_file, format!("{}\n", format::FORMAT)).map_err(|source| {
            StoreError::File {
                path: format_file.display().to_string(),
                source,
            }
        })?;
        let mut lanes = Vec::new();
        let mut heads = Vec::new();
        let mut last_queued = 0u64;
        for sink in sinks {
            let mut stats = [LaneStats::default(); 3];
            let mut head = [Head::Known(None); 3];
            for lane in Lane::ALL {
                let l = &mut stats[lane.index()];
                if let Some(v) = tree.get(count_key(sink, lane))? {
                    (l.depth, l.bytes) = parse_count(&v);
                }
                head[lane.index()] = Head::Known(lane_head(&tree, sink, lane, 0)?);
                if let Some(seq) = lane_last(&tree, sink, lane)? {
                    last_queued = last_queued.max(seq);
                }
            }
            lanes.push(stats);
            heads.push(head);
        }
        let mut ledgered = std::collections::HashSet::new();
        for item in tree.scan_prefix(b"l/") {
            let (k, _) = item?;
            ledgered.insert(k.to_vec());
        }
        let mut dead = vec![0u64; sinks.len()];
        let mut dead_bytes = 0;
        let mut last_dead = 0u64;
        for item in tree.scan_prefix(format::DLQ_PREFIX) {
            let (k, v) = item?;
            dead_bytes += v.len() as u64;
            last_dead = last_dead.max(u64_of(&k[format::DLQ_PREFIX.len()..]));
            if let Ok(d) = decode::<DeadLetter>(&v) {
                if let Some(i) = sinks.iter().position(|s| *s == d.sink) {
                    dead[i] += 1;
                }
            }
        }
        let next_seq = tree
            .get(META_NEXT_SEQ)?
            .map_or(1, |v| u64_of(&v))
            .max(last_queued + 1);
        let next_dlq = tree
            .get(META_NEXT_DLQ)?
            .map_or(1, |v| u64_of(&v))
            .max(last_dead + 1);
        Ok((
            db,
            tree,
            State {
                next_seq,
                next_dlq,
                lanes,
                heads,
                ledgered,
                dead,
                dead_bytes,
                backpressure: false,
            },
        ))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked between plain
        // counter updates; the store on disk is the truth and is consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sink_index(&self, sink: &str) -> Result<usize, StoreError> {
        self.sinks
            .iter()
            .position(|s| s == sink)
            .ok_or_else(|| StoreError::UnknownSink(sink.to_string()))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    pub fn sink_names(&self) -> Vec<String> {
        self.sinks.clone()
    }

    /// Rule states saved by earlier commits (opaque bytes, by rule name).
    pub fn rule_states(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(format::RULE_PREFIX) {
            let (k, v) = item?;
            let name = &k[format::RULE_PREFIX.len()..];
            out.push((String::from_utf8_lossy(name).to_string(), v.to_vec()));
        }
        Ok(out)
    }

    /// Apply a batch together with the counter changes it makes, then
    /// update the counters in memory and the gauges. Under the state lock.
    fn apply(&self, st: &mut State, mut batch: Batch, changes: &Changes) -> Result<(), StoreError> {
        let mut after = Vec::with_capacity(changes.deltas.len());
        for ((i, lane), (dd, db)) in &changes.deltas {
            let l = st.lanes[*i][lane.index()];
            let depth = l.depth.saturating_add_signed(*dd);
            let bytes = l.bytes.saturating_add_signed(*db);
            batch.insert(
                count_key(&self.sinks[*i], *lane),
                &count_value(depth, bytes),
            );
            after.push((*i, *lane, depth, bytes));
        }
        self.tree.apply_batch(batch)?;
        for (i, lane, depth, bytes) in after {
            let l = &mut st.lanes[i][lane.index()];
            l.depth = depth;
            l.bytes = bytes;
        }
        Ok(())
    }

    /// Append events to every sink's lane and save rule states atomically;
    /// returns once durable, with the sequences given to the events.
    ///
    /// With a quota, room is made first by evicting bulk, then normal events
    /// (oldest first; new ones of those lanes too if nothing older is left).
    /// If critical events alone do not fit, nothing is written and
    /// [`StoreError::Full`] is returned: the caller slows its sources.
    pub async fn commit(
        &self,
        records: &[Record],
        states: &[(String, Vec<u8>)],
    ) -> Result<Vec<u64>, StoreError> {
        if records.is_empty() && states.is_empty() {
            return Ok(Vec::new());
        }
        let accepted = Millis::now();
        let mut encoded = Vec::with_capacity(records.len());
        for r in records {
            encoded.push((r.lane, format::encode_entry(r, accepted)?));
        }
        let seqs = {
            let mut st = self.state();
            let keep = self.make_room(&mut st, &encoded)?;
            let first = st.next_seq;
            let mut batch = Batch::default();
            let mut changes = Changes::default();
            let mut seqs = Vec::with_capacity(records.len());
            let mut heads: Vec<(usize, Lane, u64, Millis)> = Vec::new();
            for (((lane, bytes), r), _) in
                encoded.iter().zip(records).zip(&keep).filter(|(_, k)| **k)
            {
                let seq = first + seqs.len() as u64;
                seqs.push(seq);
                for (i, sink) in self.sinks.iter().enumerate() {
                    batch.insert(queue_key(sink, *lane, seq), bytes.as_slice());
                    changes.add(i, *lane, 1, bytes.len() as i64);
                    if matches!(st.heads[i][lane.index()], Head::Known(None))
                        && !heads.iter().any(|h| h.0 == i && h.1 == *lane)
                    {
                        heads.push((i, *lane, seq, r.time));
                    }
                }
            }
            for (name, bytes) in states {
                batch.insert(rule_key(name), bytes.as_slice());
            }
            let next = first + seqs.len() as u64;
            batch.insert(META_NEXT_SEQ, &u64_key(next));
            self.apply(&mut st, batch, &changes)?;
            st.next_seq = next;
            for (i, lane, seq, time) in heads {
                st.heads[i][lane.index()] = Head::Known(Some((seq, time)));
            }
            for ((i, lane), _) in &changes.deltas {
                self.publish(&st, *i, *lane);
            }
            seqs
        };
        self.durable().await?;
        if !seqs.is_empty() {
            self.work.send_modify(|n| *n += 1);
        }
        Ok(seqs)
    }

    async fn durable(&self) -> Result<(), StoreError> {
        let ticket = self.flusher.ticket();
        self.flusher
            .durable(ticket)
            .await
            .map_err(StoreError::Flush)
    }

    /// Decide which of the new records are kept, evicting older bulk and
    /// normal events as needed. Called under the state lock.
    fn make_room(&self, st: &mut State, new: &[(Lane, Vec<u8>)]) -> Result<Vec<bool>, StoreError> {
        let mut keep = vec![true; new.len()];
        let Some(max) = self.opts.max_bytes else {
            return Ok(keep);
        };
        let copies = self.sinks.len().max(1) as u64;
        let incoming = |keep: &[bool]| -> u64 {
            new.iter()
                .zip(keep)
                .filter(|(_, k)| **k)
                .map(|((_, b), _)| b.len() as u64 * copies)
                .sum()
        };
        let mut dropped = [0u64; 3];
        for lane in [Lane::Bulk, Lane::Normal] {
            if st.used() + incoming(&keep) <= max {
                break;
            }
            let need = st.used() + incoming(&keep) - max;
            let freed = self.evict_oldest(st, lane, need)?;
            if freed < need {
                // Nothing older left in this lane: the new ones of it go.
                for (i, (l, _)) in new.iter().enumerate() {
                    if *l == lane && keep[i] && st.used() + incoming(&keep) > max {
                        keep[i] = false;
                        dropped[lane.index()] += 1;
                    }
                }
            }
        }
        let full = st.used() + incoming(&keep) > max;
        if full != st.backpressure {
            st.backpressure = full;
            self.metrics.backpressure.set(i64::from(full));
            if full {
                tracing::error!(
                    used = st.used(),
                    max_bytes = max,
                    "event store full of critical events and dead letters: slowing the sources"
                );
            } else {
                tracing::info!("event store has room again: sources resume");
            }
        }
        if full {
            // Nothing is written: the caller retries this batch, and what it
            // would drop is counted once, when it is committed.
            return Err(StoreError::Full {
                used: st.used(),
                max,
            });
        }
        for lane in Lane::ALL {
            let n = dropped[lane.index()];
            if n > 0 {
                self.metrics.evicted(lane, "quota", n);
                tracing::warn!(lane = %lane, events = n, max_bytes = max,
                    "event store full: new events of this lane dropped");
            }
        }
        Ok(keep)
    }

    /// Remove the oldest events of `lane` from every sink until `need` bytes
    /// are freed; returns the bytes freed.
    fn evict_oldest(&self, st: &mut State, lane: Lane, need: u64) -> Result<u64, StoreError> {
        let mut freed = 0u64;
        let mut count = 0u64;
        let mut batch = Batch::default();
        let mut changes = Changes::default();
        for (i, sink) in self.sinks.iter().enumerate() {
            for item in self.tree.range(lane_range(sink, lane, 0)) {
                if freed >= need {
                    break;
                }
                let (k, v) = item?;
                batch.remove(k);
                freed += v.len() as u64;
                count += 1;
                changes.add(i, lane, -1, -(v.len() as i64));
            }
        }
        if count == 0 {
            return Ok(0);
        }
        self.apply(st, batch, &changes)?;
        for (i, sink) in self.sinks.iter().enumerate() {
            st.heads[i][lane.index()] = Head::Known(lane_head(&self.tree, sink, lane, 0)?);
            self.publish(st, i, lane);
        }
        self.metrics.evicted(lane, "quota", count);
        tracing::warn!(lane = %lane, events = count, bytes = freed,
            "event store full: evicted the oldest events of this lane");
        Ok(freed)
    }

    /// Drop events older than their lane's TTL (since accepted); returns how
    /// many per lane. Call it periodically.
    pub fn expire(&self, now: Millis) -> Result<[u64; 3], StoreError> {
        let mut out = [0u64; 3];
        let mut st = self.state();
        for lane in Lane::ALL {
            let Some(ttl) = self.opts.lanes[lane.index()].ttl else {
                continue;
            };
            let cutoff = now.0 - ttl.as_millis() as i64;
            let mut batch = Batch::default();
            let mut changes = Changes::default();
            for (i, sink) in self.sinks.iter().enumerate() {
                for item in self.tree.range(lane_range(sink, lane, 0)) {
                    let (k, v) = item?;
                    let old = decode::<QueueEntry>(&v).map_or(true, |e| e.accepted.0 < cutoff);
                    if !old {
                        break;
                    }
                    batch.remove(k);
                    changes.add(i, lane, -1, -(v.len() as i64));
                }
            }
            if changes.deltas.is_empty() {
                continue;
            }
            self.apply(&mut st, batch, &changes)?;
            for ((i, _), (n, _)) in &changes.deltas {
                let sink = &self.sinks[*i];
                st.heads[*i][lane.index()] = Head::Known(lane_head(&self.tree, sink, lane, 0)?);
                self.publish(&st, *i, lane);
                let n = n.unsigned_abs();
                out[lane.index()] += n;
                tracing::warn!(sink = %sink, lane = %lane, events = n, ttl = %humantime::format_duration(ttl),
                    "events older than their lane's TTL dropped");
            }
            self.metrics.evicted(lane, "ttl", out[lane.index()]);
        }
        Ok(out)
    }

    /// Wait handle that changes when a sink may have new work.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.work.subscribe()
    }

    /// Up to `limit` entries of a sink's lane, from sequence `from` on.
    pub fn scan(
        &self,
        sink: &str,
        lane: Lane,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Queued>, StoreError> {
        let i = self.sink_index(sink)?;
        // Nothing is queued before the head; starting there skips the
        // emptied nodes sled keeps at the front of a queue for a while.
        let head = self.state().heads[i][lane.index()].lower_bound();
        let mut out = Vec::new();
        for item in self
            .tree
            .range(lane_range(sink, lane, from.max(head)))
            .take(limit)
        {
            let (k, v) = item?;
            let Some((lane, seq)) = parse_queue_key(&k) else {
                continue;
            };
            out.push(Queued {
                seq,
                lane,
                bytes: v.len(),
                entry: decode::<QueueEntry>(&v).map_err(|e| (v.to_vec(), e.to_string())),
            });
        }
        Ok(out)
    }

    /// The sink is done with an event (its destination confirmed it): remove
    /// it from the sink's lane and clear the sink's ledger entry for it, in
    /// one batch. Not awaited to disk (it goes with the next fsync, within
    /// [`flush::LAZY_FLUSH`]): a crash before that only re-delivers it,
    /// which sinks make harmless.
    pub fn ack(&self, sink: &str, q: &Queued) -> Result<(), StoreError> {
        self.ack_many(sink, std::slice::from_ref(q))
    }

    /// [`Store::ack`] for many events at once, in one batch: how a sink that
    /// delivers several events per request acknowledges them.
    pub fn ack_many(&self, sink: &str, acked: &[Queued]) -> Result<(), StoreError> {
        if acked.is_empty() {
            return Ok(());
        }
        let i = self.sink_index(sink)?;
        let mut st = self.state();
        let mut batch = Batch::default();
        let mut changes = Changes::default();
        let mut removed = Vec::with_capacity(acked.len());
        let mut seen = std::collections::HashSet::with_capacity(acked.len());
        for q in acked {
            let key = queue_key(sink, q.lane, q.seq);
            // Already gone (evicted meanwhile, or twice in this call):
            // nothing to count twice.
            if !seen.insert((q.lane, q.seq)) || !self.tree.contains_key(&key)? {
                continue;
            }
            batch.remove(key);
            if let Some(id) = q.event_id() {
                let lk = ledger_key(sink, id);
                if st.ledgered.remove(&lk) {
                    batch.remove(lk);
                }
            }
            changes.add(i, q.lane, -1, -(q.bytes as i64));
            removed.push(q);
        }
        if removed.is_empty() {
            return Ok(());
        }
        self.apply(&mut st, batch, &changes)?;
        let mut lanes = [false; 3];
        for q in removed {
            self.removed_head(&mut st, i, q);
            lanes[q.lane.index()] = true;
        }
        for lane in Lane::ALL {
            if lanes[lane.index()] {
                self.publish(&st, i, lane);
            }
        }
        drop(st);
        self.flusher.lazy();
        Ok(())
    }

    /// After removing `q`: if it was the lane's head, the new head is
    /// somewhere after it (looked up when asked).
    fn removed_head(&self, st: &mut State, i: usize, q: &Queued) {
        let h = &mut st.heads[i][q.lane.index()];
        if let Head::Known(Some((seq, _))) = *h {
            if seq == q.seq {
                *h = Head::After(seq);
            }
        }
    }

    /// The lane's head, read from the tree if it is not known.
    fn resolve_head(&self, st: &mut State, i: usize, lane: Lane) -> Option<(u64, Millis)> {
        let h = &mut st.heads[i][lane.index()];
        if let Head::After(seq) = *h {
            match lane_head(&self.tree, &self.sinks[i], lane, seq + 1) {
                Ok(found) => *h = Head::Known(found),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the event store's queue head");
                    return None;
                }
            }
        }
        match *h {
            Head::Known(found) => found,
            Head::After(_) => None,
        }
    }

    /// The destination refused the event for good: move it to the dead
    /// letters with the reason, in one batch. Returns its id there.
    pub async fn dead_letter(
        &self,
        sink: &str,
        q: &Queued,
        reason: &str,
        attempts: &Attempts,
    ) -> Result<u64, StoreError> {
        let i = self.sink_index(sink)?;
        let id = {
            let mut st = self.state();
            let id = st.next_dlq;
            let (entry, payload) = match &q.entry {
                Ok(e) => (Some(e), e.payload.clone()),
                Err((raw, _)) => (None, raw.clone()),
            };
            let letter = DeadLetter {
                id,
                sink: sink.to_string(),
                lane: q.lane,
                seq: q.seq,
                event_id: entry.map(|e| e.id.clone()).unwrap_or_default(),
                kind: entry
                    .map(|e| e.kind.clone())
                    .unwrap_or_else(|| "undecodable".into()),
                key: entry.map(|e| e.key.clone()).unwrap_or_default(),
                time: entry.map_or(Millis(0), |e| e.time),
                accepted: entry.map_or(Millis(0), |e| e.accepted),
                reason: reason.to_string(),
                attempts: attempts.count,
                first_attempt: attempts.first,
                last_attempt: attempts.last,
                dead_at: Millis::now(),
                payload,
            };
            let bytes = encode(&letter)?;
            let mut batch = Batch::default();
            batch.remove(queue_key(sink, q.lane, q.seq));
            batch.insert(dlq_key(id), bytes.as_slice());
            if let Some(eid) = q.event_id() {
                let lk = ledger_key(sink, eid);
                if st.ledgered.remove(&lk) {
                    batch.remove(lk);
                }
            }
            batch.insert(META_NEXT_DLQ, &u64_key(id + 1));
            let mut changes = Changes::default();
            changes.add(i, q.lane, -1, -(q.bytes as i64));
            self.apply(&mut st, batch, &changes)?;
            st.next_dlq = id + 1;
            self.removed_head(&mut st, i, q);
            st.dead[i] += 1;
            st.dead_bytes += bytes.len() as u64;
            self.publish(&st, i, q.lane);
            self.metrics.set_dead(sink, st.dead[i]);
            id
        };
        self.durable().await?;
        Ok(id)
    }

    /// A message a source refused (it gave no value: malformed, or over
    /// the size limit), kept for people to look at: `sink` names the
    /// source, `key` the topic, `kind` is [`SOURCE_MESSAGE`]. Same record
    /// (and version) as an event's dead letter; it is never replayed.
    pub async fn source_dead_letter(
        &self,
        source: &str,
        topic: &str,
        reason: &str,
        payload: &[u8],
    ) -> Result<u64, StoreError> {
        let id = {
            let mut st = self.state();
            let id = st.next_dlq;
            let now = Millis::now();
            let letter = DeadLetter {
                id,
                sink: source.to_string(),
                lane: Lane::Normal,
                seq: 0,
                event_id: String::new(),
                kind: SOURCE_MESSAGE.to_string(),
                key: topic.to_string(),
                time: now,
                accepted: now,
                reason: reason.to_string(),
                attempts: 0,
                first_attempt: None,
                last_attempt: None,
                dead_at: now,
                payload: payload.to_vec(),
            };
            let bytes = encode(&letter)?;
            let mut batch = Batch::default();
            batch.insert(dlq_key(id), bytes.as_slice());
            batch.insert(META_NEXT_DLQ, &u64_key(id + 1));
            self.apply(&mut st, batch, &Changes::default())?;
            st.next_dlq = id + 1;
            st.dead_bytes += bytes.len() as u64;
            id
        };
        self.durable().await?;
        Ok(id)
    }

    /// Dead letters, oldest first, optionally of one sink.
    pub fn dead_letters(&self, sink: Option<&str>) -> Result<Vec<DeadLetter>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(format::DLQ_PREFIX) {
            let (k, v) = item?;
            match decode::<DeadLetter>(&v) {
                Ok(d) if sink.is_none_or(|s| s == d.sink) => out.push(d),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(id = u64_of(&k[format::DLQ_PREFIX.len()..]), error = %e, "dead letter unreadable; skipped")
                }
            }
        }
        Ok(out)
    }

    pub fn dead_letter_get(&self, id: u64) -> Result<DeadLetter, StoreError> {
        let v = self
            .tree
            .get(dlq_key(id))?
            .ok_or(StoreError::NoDeadLetter(id))?;
        decode::<DeadLetter>(&v).map_err(|e| StoreError::Damaged {
            path: self.dir.display().to_string(),
            why: format!("dead letter #{id}: {e}"),
        })
    }

    /// Put a dead letter back at the end of its lane, to be delivered again
    /// (under a new sequence). Returns the sequence.
    pub async fn replay(&self, id: u64) -> Result<u64, StoreError> {
        let d = self.dead_letter_get(id)?;
        if d.kind == SOURCE_MESSAGE {
            return Err(StoreError::NotReplayable(id));
        }
        let i = self.sink_index(&d.sink)?;
        let seq = {
            let mut st = self.state();
            let seq = st.next_seq;
            let entry = QueueEntry {
                id: d.event_id.clone(),
                kind: d.kind.clone(),
                key: d.key.clone(),
                time: d.time,
                accepted: d.accepted,
                payload: d.payload.clone(),
            };
            let bytes = encode(&entry)?;
            let Some(old) = self.tree.get(dlq_key(id))? else {
                return Err(StoreError::NoDeadLetter(id));
            };
            let mut batch = Batch::default();
            batch.insert(queue_key(&d.sink, d.lane, seq), bytes.as_slice());
            batch.remove(dlq_key(id));
            batch.insert(META_NEXT_SEQ, &u64_key(seq + 1));
            let mut changes = Changes::default();
            changes.add(i, d.lane, 1, bytes.len() as i64);
            self.apply(&mut st, batch, &changes)?;
            st.next_seq = seq + 1;
            st.dead[i] = st.dead[i].saturating_sub(1);
            st.dead_bytes = st.dead_bytes.saturating_sub(old.len() as u64);
            let h = &mut st.heads[i][d.lane.index()];
            if matches!(*h, Head::Known(None)) {
                *h = Head::Known(Some((seq, d.time)));
            }
            self.publish(&st, i, d.lane);
            self.metrics.set_dead(&d.sink, st.dead[i]);
            seq
        };
        self.durable().await?;
        self.work.send_modify(|n| *n += 1);
        tracing::info!(id, sink = %d.sink, event = %d.event_id, "dead letter replayed into its lane");
        Ok(seq)
    }

    /// Delete a dead letter for good.
    pub async fn drop_dead_letter(&self, id: u64) -> Result<DeadLetter, StoreError> {
        let d = self.dead_letter_get(id)?;
        {
            let mut st = self.state();
            if let Some(old) = self.tree.remove(dlq_key(id))? {
                if let Ok(i) = self.sink_index(&d.sink) {
                    st.dead[i] = st.dead[i].saturating_sub(1);
                    self.metrics.set_dead(&d.sink, st.dead[i]);
                }
                st.dead_bytes = st.dead_bytes.saturating_sub(old.len() as u64);
            }
        }
        self.durable().await?;
        tracing::info!(id, sink = %d.sink, event = %d.event_id, "dead letter dropped");
        Ok(d)
    }

    /// A sink's recorded delivery intent for an event, if any.
    pub fn ledger_get(&self, sink: &str, event_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree
            .get(ledger_key(sink, event_id))?
            .map(|v| v.to_vec()))
    }

    /// Record a delivery intent durably before acting on it.
    pub async fn ledger_put(
        &self,
        sink: &str,
        event_id: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        let key = ledger_key(sink, event_id);
        {
            let mut st = self.state();
            self.tree.insert(&key, value)?;
            st.ledgered.insert(key);
        }
        self.durable().await
    }

    /// [`Store::ledger_put`] for many events, with one wait for the disk:
    /// how a sink that coalesces events into one write records them.
    pub async fn ledger_put_many(
        &self,
        sink: &str,
        entries: &[(&str, &[u8])],
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        {
            let mut st = self.state();
            let mut batch = Batch::default();
            let mut keys = Vec::with_capacity(entries.len());
            for (event_id, value) in entries {
                let key = ledger_key(sink, event_id);
                batch.insert(key.clone(), *value);
                keys.push(key);
            }
            self.tree.apply_batch(batch)?;
            st.ledgered.extend(keys);
        }
        self.durable().await
    }

    /// Flush everything written so far (shutdown, CLI).
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.durable().await
    }

    pub fn stats(&self) -> Stats {
        let mut st = self.state();
        let mut sinks = Vec::with_capacity(self.sinks.len());
        for (i, s) in self.sinks.iter().enumerate() {
            let mut lanes = st.lanes[i];
            for lane in Lane::ALL {
                lanes[lane.index()].head = self.resolve_head(&mut st, i, lane);
            }
            sinks.push(SinkStats {
                sink: s.clone(),
                lanes,
                dead_letters: st.dead[i],
            });
        }
        Stats {
            sinks,
            targets: [0, 1, 2].map(|i| self.opts.lanes[i].target),
            max_bytes: self.opts.max_bytes,
            used_bytes: st.used(),
            backpressure: st.backpressure,
            quarantine: self.quarantine.clone(),
        }
    }

    /// Undelivered events of a sink, all lanes.
    pub fn depth(&self, sink: &str) -> u64 {
        let st = self.state();
        self.sink_index(sink)
            .map_or(0, |i| st.lanes[i].iter().map(|l| l.depth).sum())
    }

    /// Age at `now` of the oldest undelivered event of each lane of a sink.
    pub fn oldest_age(&self, sink: &str, now: Millis) -> [Option<Duration>; 3] {
        let mut st = self.state();
        let Ok(i) = self.sink_index(sink) else {
            return [None; 3];
        };
        Lane::ALL.map(|l| self.resolve_head(&mut st, i, l).map(|(_, t)| age(now, t)))
    }

    /// Set the gauges that move with time (ages); the others move with the queue.
    pub fn refresh_age_metrics(&self, now: Millis) {
        let mut st = self.state();
        for (i, s) in self.sinks.iter().enumerate() {
            for lane in Lane::ALL {
                let a = self
                    .resolve_head(&mut st, i, lane)
                    .map_or(0.0, |(_, t)| age(now, t).as_secs_f64());
                self.metrics.set_age(s, lane, a);
            }
        }
    }

    /// Gauges of one sink's lane, and the lane's bytes over all sinks.
    fn publish(&self, st: &State, i: usize, lane: Lane) {
        self.metrics
            .set_depth(i, lane, st.lanes[i][lane.index()].depth);
        let bytes = st.lanes.iter().map(|l| l[lane.index()].bytes).sum();
        self.metrics.set_bytes(lane, bytes);
    }

    /// sled's files on disk, for the bounded-disk figures.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}

fn age(now: Millis, t: Millis) -> Duration {
    Duration::from_millis(now.saturating_sub(t).max(0) as u64)
}

/// The highest sequence queued in a lane, found by forward seeks only (a
/// binary search: at most 64 seeks). A reverse scan would do it in one, but
/// sled's reverse iterator carries a 1 MiB constant key into the binary.
fn lane_last(tree: &Tree, sink: &str, lane: Lane) -> Result<Option<u64>, StoreError> {
    let first_from = |from: u64| -> Result<Option<u64>, StoreError> {
        let found = tree
            .range(lane_range(sink, lane, from))
            .next()
            .transpose()?;
        Ok(found
            .and_then(|(k, _)| parse_queue_key(&k))
            .map(|(_, seq)| seq))
    };
    // Invariant: `lo` is queued, and nothing above `hi` is.
    let Some(mut lo) = first_from(0)? else {
        return Ok(None);
    };
    let mut hi = u64::MAX;
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match first_from(mid)? {
            Some(seq) => lo = seq,
            None => hi = mid - 1,
        }
    }
    Ok(Some(lo))
}

/// The first entry of a sink's lane at or after `from`.
fn lane_head(
    tree: &Tree,
    sink: &str,
    lane: Lane,
    from: u64,
) -> Result<Option<(u64, Millis)>, StoreError> {
    if let Some((k, v)) = tree
        .range(lane_range(sink, lane, from))
        .next()
        .transpose()?
    {
        if let Some((_, seq)) = parse_queue_key(&k) {
            let time = decode::<QueueEntry>(&v).map_or(Millis(0), |e| e.time);
            return Ok(Some((seq, time)));
        }
    }
    Ok(None)
}

/// sled fixes the segment size when it creates a store and refuses another
/// one later, so an existing store keeps the size it was made with.
fn existing_segment_size(dir: &Path) -> Option<usize> {
    // The file ends in a binary checksum, so it is not valid UTF-8 as a whole.
    let conf = std::fs::read(dir.join("conf")).ok()?;
    String::from_utf8_lossy(&conf)
        .lines()
        .find_map(|l| l.strip_prefix("segment_size: "))
        .and_then(|v| v.trim().parse().ok())
}

/// Errors that mean the files are unreadable (move them aside), as opposed
/// to a refusal (newer format, held lock) or the system (permissions, disk).
fn is_damage(e: &StoreError) -> bool {
    match e {
        StoreError::Damaged { .. } => true,
        StoreError::Open { source, .. } | StoreError::Io(source) => match source {
            sled::Error::Corruption { .. } | sled::Error::ReportableBug(_) => true,
            // sled says "unsupported" when its files do not parse, and also
            // when settings differ from the store's ("cannot change …"),
            // which is not damage (and is avoided by reading them first).
            sled::Error::Unsupported(why) => !why.starts_with("cannot change"),
            sled::Error::Io(io) => matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            ),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests;
