//! The store's promises, on a real sled database in a temporary directory.

use super::migrate::NoUpgrade;
use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, VecDeque};

fn record(n: u64, lane: Lane, key: &str) -> Record {
    Record {
        id: format!("ev-{n:04}"),
        kind: "production".into(),
        key: key.into(),
        lane,
        time: Millis(1_700_000_000_000 + n as i64),
        payload: vec![b'x'; 80],
    }
}

fn open(dir: &Path, sinks: &[&str], opts: &StoreOptions) -> Store {
    Store::open(dir, sinks, opts, &NoUpgrade).expect("open")
}

fn ids(queued: &[Queued]) -> Vec<String> {
    queued
        .iter()
        .filter_map(|q| q.event_id().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn commits_survive_reopen_with_lanes_states_and_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = StoreOptions::default();
    {
        let s = open(dir.path(), &["a"], &opts);
        let seqs = s
            .commit(
                &[
                    record(1, Lane::Normal, "WC1"),
                    record(2, Lane::Critical, "WC1"),
                    record(3, Lane::Bulk, "WC2"),
                ],
                &[("parts".into(), vec![1, 9, 9])],
            )
            .await
            .expect("commit");
        assert_eq!(seqs, vec![1, 2, 3]);
    }
    let s = open(dir.path(), &["a"], &opts);
    assert_eq!(
        s.rule_states().expect("states"),
        vec![("parts".to_string(), vec![1, 9, 9])]
    );
    assert_eq!(
        ids(&s.scan("a", Lane::Critical, 0, 10).expect("scan")),
        ["ev-0002"]
    );
    assert_eq!(
        ids(&s.scan("a", Lane::Normal, 0, 10).expect("scan")),
        ["ev-0001"]
    );
    assert_eq!(
        ids(&s.scan("a", Lane::Bulk, 0, 10).expect("scan")),
        ["ev-0003"]
    );
    let st = s.stats();
    assert_eq!(st.sinks[0].depth(), 3);
    assert_eq!(
        st.sinks[0].lanes[Lane::Critical.index()].head.map(|h| h.0),
        Some(2)
    );
    let seqs = s
        .commit(&[record(4, Lane::Normal, "WC1")], &[])
        .await
        .expect("commit");
    assert_eq!(seqs, vec![4], "the sequence continues after reopen");
}

#[tokio::test]
async fn each_sink_reads_each_lane_from_its_own_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path(), &["odoo", "mqtt"], &StoreOptions::default());
    s.commit(
        &[record(1, Lane::Normal, "k"), record(2, Lane::Normal, "k")],
        &[],
    )
    .await
    .expect("commit");
    let q = s.scan("odoo", Lane::Normal, 0, 1).expect("scan").remove(0);
    s.ack("odoo", &q).expect("ack");
    assert_eq!(s.depth("odoo"), 1);
    assert_eq!(s.depth("mqtt"), 2);
    assert_eq!(
        ids(&s.scan("mqtt", Lane::Normal, 0, 10).expect("scan")),
        ["ev-0001", "ev-0002"]
    );
    let st = s.stats();
    assert_eq!(
        st.sinks[0].lanes[Lane::Normal.index()].head.map(|h| h.0),
        Some(2)
    );
    assert_eq!(
        st.sinks[1].lanes[Lane::Normal.index()].head.map(|h| h.0),
        Some(1)
    );
}

#[tokio::test]
async fn many_acks_in_one_batch_count_once_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = StoreOptions::default();
    {
        let s = open(dir.path(), &["odoo"], &opts);
        let recs: Vec<Record> = (1..=6)
            .map(|n| {
                record(
                    n,
                    if n % 2 == 0 {
                        Lane::Critical
                    } else {
                        Lane::Normal
                    },
                    "k",
                )
            })
            .collect();
        s.commit(&recs, &[]).await.expect("commit");
        let mut acked = s.scan("odoo", Lane::Normal, 0, 2).expect("scan");
        acked.extend(s.scan("odoo", Lane::Critical, 0, 1).expect("scan"));
        // Acking the same event twice in one call counts it once.
        acked.push(acked[0].clone());
        s.ack_many("odoo", &acked).expect("ack");
        s.ack_many("odoo", &acked)
            .expect("a repeated ack is harmless");
        assert_eq!(s.depth("odoo"), 3);
        s.sync().await.expect("sync");
    }
    let s = open(dir.path(), &["odoo"], &opts);
    assert_eq!(s.depth("odoo"), 3, "the counts on disk match the queue");
    assert_eq!(
        ids(&s.scan("odoo", Lane::Normal, 0, 10).expect("scan")),
        ["ev-0005"]
    );
    assert_eq!(
        ids(&s.scan("odoo", Lane::Critical, 0, 10).expect("scan")),
        ["ev-0004", "ev-0006"]
    );
    let st = s.stats();
    assert_eq!(
        st.sinks[0].lanes[Lane::Critical.index()].head.map(|h| h.0),
        Some(4)
    );
}

#[tokio::test]
async fn dead_letters_keep_why_and_replay_at_the_end_of_their_lane() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path(), &["odoo"], &StoreOptions::default());
    s.commit(
        &[
            record(1, Lane::Normal, "WC1"),
            record(2, Lane::Normal, "WC1"),
        ],
        &[],
    )
    .await
    .expect("commit");
    let q = s.scan("odoo", Lane::Normal, 0, 1).expect("scan").remove(0);
    let attempts = Attempts {
        count: 3,
        first: Some(Millis(10)),
        last: Some(Millis(20)),
    };
    let id = s
        .dead_letter("odoo", &q, "ValidationError: no work order", &attempts)
        .await
        .expect("dead letter");
    let d = s.dead_letter_get(id).expect("get");
    assert_eq!(
        (d.event_id.as_str(), d.attempts, d.key.as_str()),
        ("ev-0001", 3, "WC1")
    );
    assert!(d.reason.contains("no work order"));
    assert_eq!(s.stats().sinks[0].dead_letters, 1);
    assert_eq!(s.depth("odoo"), 1);
    let seq = s.replay(id).await.expect("replay");
    assert_eq!(seq, 3, "replayed under a new sequence");
    assert_eq!(
        ids(&s.scan("odoo", Lane::Normal, 0, 10).expect("scan")),
        ["ev-0002", "ev-0001"]
    );
    assert_eq!(s.stats().sinks[0].dead_letters, 0);
    assert!(matches!(
        s.replay(id).await,
        Err(StoreError::NoDeadLetter(_))
    ));
    // Dropping is for good.
    let q = s.scan("odoo", Lane::Normal, 0, 1).expect("scan").remove(0);
    let id = s
        .dead_letter("odoo", &q, "refused", &Attempts::default())
        .await
        .expect("dl");
    s.drop_dead_letter(id).await.expect("drop");
    assert!(s.dead_letters(None).expect("list").is_empty());
    drop(s);
    let s = open(dir.path(), &["odoo"], &StoreOptions::default());
    assert_eq!(
        ids(&s.scan("odoo", Lane::Normal, 0, 10).expect("scan")),
        ["ev-0001"]
    );
    let next = s
        .commit(&[record(9, Lane::Bulk, "x")], &[])
        .await
        .expect("commit");
    assert_eq!(next, vec![4]);
}

#[tokio::test]
async fn a_full_store_evicts_bulk_then_normal_and_never_critical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = StoreOptions {
        max_bytes: Some(30 * 150),
        ..StoreOptions::default()
    };
    let s = open(dir.path(), &["odoo"], &opts);
    let per = {
        let probe = tempfile::tempdir().expect("tempdir");
        let p = open(probe.path(), &["odoo"], &StoreOptions::default());
        p.commit(&[record(0, Lane::Bulk, "k")], &[])
            .await
            .expect("probe");
        p.stats().used_bytes
    };
    let fit = 30 * 150 / per;
    let mut n = 0;
    let mut batch = |lane, count| {
        let v: Vec<Record> = (0..count)
            .map(|_| {
                n += 1;
                record(n, lane, "k")
            })
            .collect();
        v
    };
    s.commit(&batch(Lane::Bulk, 10), &[]).await.expect("bulk");
    s.commit(&batch(Lane::Normal, 10), &[])
        .await
        .expect("normal");
    let critical = fit - 5;
    s.commit(&batch(Lane::Critical, critical), &[])
        .await
        .expect("critical");
    let st = s.stats();
    let depth = |l: Lane| st.sinks[0].lanes[l.index()].depth;
    assert_eq!(depth(Lane::Critical), critical);
    assert_eq!(depth(Lane::Bulk), 0, "bulk went first");
    assert_eq!(
        depth(Lane::Normal),
        fit - critical,
        "then the oldest normal"
    );
    assert!(st.used_bytes <= 30 * 150);
    // Only critical left: more critical is refused, nothing written.
    s.commit(&batch(Lane::Critical, 5), &[])
        .await
        .expect("normal goes");
    let refused = s.commit(&batch(Lane::Critical, 3), &[]).await;
    assert!(
        matches!(refused, Err(StoreError::Full { .. })),
        "{refused:?}"
    );
    assert!(s.stats().backpressure);
    assert_eq!(s.stats().sinks[0].lanes[Lane::Critical.index()].depth, fit);
    // An ack makes room again.
    for q in s.scan("odoo", Lane::Critical, 0, 3).expect("scan") {
        s.ack("odoo", &q).expect("ack");
    }
    s.commit(&batch(Lane::Critical, 3), &[])
        .await
        .expect("room again");
    assert!(!s.stats().backpressure);
}

#[tokio::test]
async fn ttl_drops_old_events_of_its_lane_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = StoreOptions::default();
    opts.lanes[Lane::Bulk.index()].ttl = Some(Duration::from_secs(60));
    let s = open(dir.path(), &["odoo"], &opts);
    s.commit(
        &[record(1, Lane::Bulk, "k"), record(2, Lane::Normal, "k")],
        &[],
    )
    .await
    .expect("commit");
    assert_eq!(s.expire(Millis::now()).expect("expire"), [0, 0, 0]);
    let later = Millis(Millis::now().0 + 61_000);
    assert_eq!(s.expire(later).expect("expire"), [0, 0, 1]);
    assert_eq!(s.depth("odoo"), 1);
    assert_eq!(
        ids(&s.scan("odoo", Lane::Normal, 0, 10).expect("scan")),
        ["ev-0002"]
    );
}

#[tokio::test]
async fn a_newer_store_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    drop(open(&store, &["odoo"], &StoreOptions::default()));
    std::fs::write(store.join(FORMAT_FILE), "7\n").expect("write");
    let before: Vec<_> = std::fs::read_dir(&store)
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect();
    let err = Store::open_or_quarantine(&store, &["odoo"], &StoreOptions::default(), &NoUpgrade)
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("format 7") && msg.contains("newer"), "{msg}");
    let after: Vec<_> = std::fs::read_dir(&store)
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect();
    assert_eq!(before, after, "nothing written");
    assert_eq!(
        std::fs::read_to_string(store.join(FORMAT_FILE)).expect("read"),
        "7\n"
    );
}

#[tokio::test]
async fn a_damaged_store_is_moved_aside_and_a_fresh_one_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    {
        let s = open(&store, &["odoo"], &StoreOptions::default());
        s.commit(&[record(1, Lane::Normal, "k")], &[])
            .await
            .expect("commit");
    }
    let garbage: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(store.join("db"), &garbage).expect("garbage");
    std::fs::write(store.join("conf"), b"\xff\xfe not a config").expect("garbage");
    let s = Store::open_or_quarantine(&store, &["odoo"], &StoreOptions::default(), &NoUpgrade)
        .expect("opens fresh");
    let q = s.stats().quarantine.expect("reported");
    assert!(q.moved_to.exists(), "{q:?}");
    assert!(q.moved_to.join("db").exists(), "the damaged files are kept");
    assert_eq!(s.depth("odoo"), 0);
    s.commit(&[record(2, Lane::Normal, "k")], &[])
        .await
        .expect("usable");
}

#[derive(Clone, Debug)]
enum Op {
    Commit(Vec<(u8, u8)>),
    /// Deliver the head of (lane, key) if there is one.
    Ack(u8, u8),
    /// A refused head goes to the dead letters; replayed later.
    Dead(u8, u8),
    ReplayAll,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec((0u8..3, 0u8..3), 1..6).prop_map(Op::Commit),
        4 => (0u8..3, 0u8..3).prop_map(|(l, k)| Op::Ack(l, k)),
        1 => (0u8..3, 0u8..3).prop_map(|(l, k)| Op::Dead(l, k)),
        1 => Just(Op::ReplayAll),
        1 => Just(Op::Reopen),
    ]
}

/// First queued entry of (lane, key), as a runner would pick it.
fn head(s: &Store, lane: Lane, key: &str) -> Option<Queued> {
    s.scan("odoo", lane, 0, 10_000)
        .expect("scan")
        .into_iter()
        .find(|q| q.key() == Some(key))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random interleavings of commit, ack, dead-letter, replay and reopen:
    /// no accepted event is lost, and each (lane, key) is delivered in
    /// commit order (a replayed event goes behind what is queued).
    #[test]
    fn order_per_key_holds_and_nothing_accepted_is_lost(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let opts = StoreOptions::default();
            let mut s = open(dir.path(), &["odoo"], &opts);
            let mut model: BTreeMap<(usize, u8), VecDeque<String>> = BTreeMap::new();
            let mut dead: Vec<((usize, u8), String)> = Vec::new();
            let mut delivered: Vec<String> = Vec::new();
            let mut n = 0u64;
            for op in ops {
                match op {
                    Op::Commit(items) => {
                        let recs: Vec<Record> = items.iter().map(|(l, k)| {
                            n += 1;
                            record(n, Lane::ALL[*l as usize], &format!("k{k}"))
                        }).collect();
                        s.commit(&recs, &[]).await.expect("commit");
                        for (r, (l, k)) in recs.iter().zip(&items) {
                            model.entry((*l as usize, *k)).or_default().push_back(r.id.clone());
                        }
                    }
                    Op::Ack(l, k) => {
                        let lane = Lane::ALL[l as usize];
                        let got = head(&s, lane, &format!("k{k}"));
                        let want = model.get_mut(&(l as usize, k)).and_then(|q| q.pop_front());
                        prop_assert_eq!(got.as_ref().and_then(|q| q.event_id().map(str::to_string)), want.clone());
                        if let Some(q) = got {
                            s.ack("odoo", &q).expect("ack");
                            delivered.push(want.unwrap_or_default());
                        }
                    }
                    Op::Dead(l, k) => {
                        let lane = Lane::ALL[l as usize];
                        if let Some(q) = head(&s, lane, &format!("k{k}")) {
                            let id = model.get_mut(&(l as usize, k)).and_then(|q| q.pop_front()).unwrap_or_default();
                            s.dead_letter("odoo", &q, "refused", &Attempts::default()).await.expect("dead");
                            dead.push(((l as usize, k), id));
                        }
                    }
                    Op::ReplayAll => {
                        for d in s.dead_letters(None).expect("list") {
                            s.replay(d.id).await.expect("replay");
                        }
                        for (slot, id) in dead.drain(..) {
                            model.entry(slot).or_default().push_back(id);
                        }
                    }
                    Op::Reopen => {
                        drop(s);
                        s = open(dir.path(), &["odoo"], &opts);
                    }
                }
            }
            // Whatever was not delivered is still queued or a dead letter.
            let mut queued: Vec<String> = Lane::ALL.iter()
                .flat_map(|l| ids(&s.scan("odoo", *l, 0, 100_000).expect("scan")))
                .collect();
            queued.extend(s.dead_letters(None).expect("list").into_iter().map(|d| d.event_id));
            queued.sort();
            let mut expected: Vec<String> = model.values().flatten().cloned().collect();
            expected.extend(dead.iter().map(|(_, id)| id.clone()));
            expected.sort();
            prop_assert_eq!(queued, expected);
            prop_assert_eq!(delivered.len() + s.depth("odoo") as usize + s.stats().sinks[0].dead_letters as usize, n as usize);
            Ok(())
        })?;
    }
}

#[test]
fn lane_last_finds_the_highest_sequence_of_its_lane_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::Config::new()
        .path(dir.path())
        .open()
        .expect("open sled");
    let tree = db.open_tree("t").expect("tree");
    assert_eq!(lane_last(&tree, "odoo", Lane::Normal).expect("scan"), None);
    // Neighbours on either side: another lane, and another sink whose
    // name extends this one's.
    for (sink, lane, seq) in [
        ("odoo", Lane::Critical, 9_000),
        ("odoo", Lane::Bulk, 1),
        ("odoo2", Lane::Normal, u64::MAX),
        ("odoo", Lane::Normal, 3),
        ("odoo", Lane::Normal, 70),
        ("odoo", Lane::Normal, 1 << 40),
    ] {
        tree.insert(queue_key(sink, lane, seq), &b"x"[..])
            .expect("insert");
    }
    assert_eq!(
        lane_last(&tree, "odoo", Lane::Normal).expect("scan"),
        Some(1 << 40)
    );
    assert_eq!(
        lane_last(&tree, "odoo", Lane::Critical).expect("scan"),
        Some(9_000)
    );
    assert_eq!(lane_last(&tree, "odoo", Lane::Bulk).expect("scan"), Some(1));
    assert_eq!(
        lane_last(&tree, "odoo2", Lane::Normal).expect("scan"),
        Some(u64::MAX)
    );
}
