//! The hand-over from the OPC UA stack's data-change callback to the source
//! task. The callback cannot wait, so sending never blocks; instead the
//! buffer is bounded. Up to `capacity` changes are kept in arrival order
//! (every change of a tag with a server-side queue arrives). Beyond that,
//! while the consumer is held back (a store that cannot commit slows the
//! whole pipeline), only the newest value of each monitored item is kept:
//! an older one waiting there is replaced, and counted. Memory stays within
//! `capacity` changes plus one per monitored item, however long that lasts.
//!
//! Per item, values still come out oldest first: while any item has a
//! coalesced value, new changes join the coalesced ones (not the queue),
//! and the queue is emptied before them.

use opcua::types::DataValue;
use prometheus_client::metrics::counter::Counter;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// A data change: the monitored item's client handle and its value.
pub type Change = (u32, DataValue);

struct Shared {
    state: Mutex<State>,
    notify: Notify,
    capacity: usize,
    replaced: Counter,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Change>,
    /// Under pressure: item → its newest value not taken yet.
    latest: HashMap<u32, DataValue>,
    /// The items in `latest`, in the order they first overflowed.
    order: VecDeque<u32>,
    closed: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update of plain
        // data; the changes in it are still whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The callback's end. Dropping it (the subscription is gone) ends the
/// receiver once it has taken what is left.
pub struct ChangeSender {
    shared: Arc<Shared>,
}

/// The source task's end.
pub struct ChangeReceiver {
    shared: Arc<Shared>,
}

/// A buffer of `capacity` changes in order (at least 1), counting each value
/// replaced under pressure in `replaced`.
pub fn change_buffer(capacity: usize, replaced: Counter) -> (ChangeSender, ChangeReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        notify: Notify::new(),
        capacity: capacity.max(1),
        replaced,
    });
    (
        ChangeSender {
            shared: shared.clone(),
        },
        ChangeReceiver { shared },
    )
}

impl ChangeSender {
    /// Hand over a change without waiting.
    pub fn send(&self, item: u32, value: DataValue) {
        {
            let mut guard = self.shared.state();
            let s = &mut *guard;
            if s.latest.is_empty() && s.queue.len() < self.shared.capacity {
                s.queue.push_back((item, value));
            } else {
                match s.latest.entry(item) {
                    Entry::Occupied(mut e) => {
                        e.insert(value);
                        self.shared.replaced.inc();
                    }
                    Entry::Vacant(e) => {
                        e.insert(value);
                        s.order.push_back(item);
                    }
                }
            }
        }
        self.shared.notify.notify_one();
    }
}

impl Drop for ChangeSender {
    fn drop(&mut self) {
        self.shared.state().closed = true;
        self.shared.notify.notify_one();
    }
}

impl State {
    fn take(&mut self, out: &mut Vec<Change>, limit: usize) -> usize {
        let mut n = 0;
        while n < limit {
            let Some(c) = self.queue.pop_front() else {
                break;
            };
            out.push(c);
            n += 1;
        }
        while n < limit {
            let Some(item) = self.order.pop_front() else {
                break;
            };
            if let Some(v) = self.latest.remove(&item) {
                out.push((item, v));
                n += 1;
            }
        }
        n
    }
}

impl ChangeReceiver {
    /// Move up to `limit` changes into `out`, oldest first, waiting until
    /// there is one. 0 once the sender is gone and nothing is left.
    /// Cancel-safe: a change is only taken when this returns.
    pub async fn recv_many(&mut self, out: &mut Vec<Change>, limit: usize) -> usize {
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            // Registered before looking, so a send after the look wakes us.
            notified.as_mut().enable();
            {
                let mut s = self.shared.state();
                let n = s.take(out, limit.max(1));
                if n > 0 {
                    return n;
                }
                if s.closed {
                    return 0;
                }
            }
            notified.await;
        }
    }

    /// Changes waiting: in order plus coalesced.
    pub fn len(&self) -> usize {
        let s = self.shared.state();
        s.queue.len() + s.latest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opcua::types::Variant;
    use std::time::Duration;

    fn change(v: u64) -> DataValue {
        DataValue::new_now(Variant::UInt64(v))
    }

    fn number(dv: &DataValue) -> u64 {
        match dv.value {
            Some(Variant::UInt64(v)) => v,
            ref other => panic!("not a test value: {other:?}"),
        }
    }

    /// Everything waiting, without blocking.
    async fn drain(rx: &mut ChangeReceiver) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        let mut batch = Vec::new();
        while !rx.is_empty() {
            let n = tokio::time::timeout(Duration::from_secs(10), rx.recv_many(&mut batch, 7))
                .await
                .expect("waiting changes are handed out");
            assert!(n > 0 && n <= 7, "{n}");
            out.extend(batch.drain(..).map(|(i, v)| (i, number(&v))));
        }
        out
    }

    #[tokio::test]
    async fn without_pressure_every_change_comes_out_in_order() {
        let replaced = Counter::default();
        let (tx, mut rx) = change_buffer(100, replaced.clone());
        let sent: Vec<(u32, u64)> = (0..60).map(|n| (n as u32 % 3 + 1, n)).collect();
        for &(i, v) in &sent {
            tx.send(i, change(v));
        }
        assert_eq!(drain(&mut rx).await, sent);
        assert_eq!(replaced.get(), 0);
    }

    #[tokio::test]
    async fn a_held_back_consumer_keeps_memory_bounded_and_gets_each_items_newest_value() {
        const CAPACITY: usize = 64;
        const ITEMS: u32 = 5;
        const SENT: u64 = 100_000;
        let replaced = Counter::default();
        let (tx, mut rx) = change_buffer(CAPACITY, replaced.clone());
        let mut newest: HashMap<u32, u64> = HashMap::new();
        let mut most = 0;
        for v in 0..SENT {
            let item = (v % u64::from(ITEMS)) as u32 + 1;
            tx.send(item, change(v));
            newest.insert(item, v);
            most = most.max(rx.len());
        }
        assert!(
            most <= CAPACITY + ITEMS as usize,
            "{most} changes held for {ITEMS} items"
        );
        let out = drain(&mut rx).await;
        // The first CAPACITY changes in order, then one (the newest) per item.
        assert_eq!(out.len(), CAPACITY + ITEMS as usize);
        assert_eq!(
            replaced.get(),
            SENT - out.len() as u64,
            "each change not handed out is counted as replaced"
        );
        let mut last: HashMap<u32, u64> = HashMap::new();
        for &(item, v) in &out {
            if let Some(before) = last.insert(item, v) {
                assert!(before < v, "item {item}: {v} came out after {before}");
            }
        }
        assert_eq!(last, newest, "the newest value of each item comes out last");

        // Pressure gone: every change arrives again.
        let before = replaced.get();
        for v in 0..10 {
            tx.send(1, change(SENT + v));
        }
        let again = drain(&mut rx).await;
        assert_eq!(again, (0..10).map(|v| (1, SENT + v)).collect::<Vec<_>>());
        assert_eq!(replaced.get(), before);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_receiver_wakes_for_a_change_and_ends_after_the_sender() {
        let (tx, mut rx) = change_buffer(8, Counter::default());
        let waiter = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut batch = Vec::new();
            loop {
                let n = rx.recv_many(&mut batch, 4).await;
                if n == 0 {
                    return got;
                }
                got.extend(batch.drain(..).map(|(i, v)| (i, number(&v))));
            }
        });
        // Sent from a plain thread, as the stack's callback is not async.
        let sender = std::thread::spawn(move || {
            for v in 0..3 {
                tx.send(9, change(v));
            }
        });
        sender.join().expect("sender thread");
        let got = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the receiver ends once the sender is dropped")
            .expect("receiver task");
        assert_eq!(got, vec![(9, 0), (9, 1), (9, 2)]);
    }
}
