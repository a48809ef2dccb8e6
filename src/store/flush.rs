//! Group commit: writers take a ticket after their write, a flusher thread
//! fsyncs at most once per `flush_interval` and publishes the highest ticket
//! that is on disk. Many commits share one fsync; none is acknowledged before
//! the fsync that covers it returned.
//!
//! A ticket is taken after the write, and the flusher reads the ticket count
//! before it flushes, so every ticket it publishes covers a completed write.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Longest an unwaited write stays in memory only.
pub const LAZY_FLUSH: Duration = Duration::from_millis(200);

/// Called with each fsync's duration in seconds (a histogram in `/metrics`).
pub type FlushObserver = Box<dyn Fn(f64) + Send + Sync>;

struct Shared {
    written: AtomicU64,
    stop: AtomicBool,
    wake: Mutex<()>,
    cond: Condvar,
    /// The last flush error, cleared by a good flush; writers report it.
    failed: Mutex<Option<String>>,
}

pub struct Flusher {
    shared: Arc<Shared>,
    durable: watch::Receiver<u64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    pub fn start(db: sled::Db, interval: Duration, observe: FlushObserver) -> Flusher {
        let shared = Arc::new(Shared {
            written: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            wake: Mutex::new(()),
            cond: Condvar::new(),
            failed: Mutex::new(None),
        });
        let (tx, durable) = watch::channel(0u64);
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("plantgate-flush".into())
            .spawn(move || run(db, interval, &s, &tx, &observe))
            .ok();
        Flusher {
            shared,
            durable,
            thread,
        }
    }

    /// Call after a write: the ticket to wait for.
    pub fn ticket(&self) -> u64 {
        let t = self.shared.written.fetch_add(1, Ordering::AcqRel) + 1;
        // Under the lock, so the wake-up cannot fall between the flusher's
        // check and its wait.
        let _guard = self.shared.wake.lock().unwrap_or_else(|p| p.into_inner());
        self.shared.cond.notify_one();
        t
    }

    /// A write nobody waits for (an acknowledgement): it reaches disk with
    /// the next fsync, at the latest [`LAZY_FLUSH`] later. Flushing each one
    /// would make writers contend with the flusher for nothing.
    pub fn lazy(&self) {
        self.shared.written.fetch_add(1, Ordering::AcqRel);
    }

    /// Wait until the write behind `ticket` is on disk.
    pub async fn durable(&self, ticket: u64) -> Result<(), String> {
        let mut rx = self.durable.clone();
        loop {
            if *rx.borrow_and_update() >= ticket {
                return Ok(());
            }
            if let Some(e) = self.failure() {
                return Err(e);
            }
            if rx.changed().await.is_err() {
                return Err("the store's flusher stopped".into());
            }
        }
    }

    fn failure(&self) -> Option<String> {
        self.shared
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.cond.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    db: sled::Db,
    interval: Duration,
    s: &Shared,
    durable: &watch::Sender<u64>,
    observe: &FlushObserver,
) {
    let mut flushed = 0u64;
    let mut last = Instant::now() - interval;
    loop {
        {
            let mut guard = s.wake.lock().unwrap_or_else(|p| p.into_inner());
            while s.written.load(Ordering::Acquire) == flushed && !s.stop.load(Ordering::Acquire) {
                guard = s
                    .cond
                    .wait_timeout(guard, LAZY_FLUSH)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
        }
        let stopping = s.stop.load(Ordering::Acquire);
        // Let more writers join this flush, up to the interval.
        let since = last.elapsed();
        if !stopping && since < interval {
            std::thread::sleep(interval - since);
        }
        let upto = s.written.load(Ordering::Acquire);
        let started = Instant::now();
        match db.flush() {
            Ok(_) => {
                *s.failed.lock().unwrap_or_else(|p| p.into_inner()) = None;
                flushed = upto;
                durable.send_replace(upto);
                observe(started.elapsed().as_secs_f64());
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot flush the event store to disk");
                *s.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                // Wake waiters so they see the failure; try again shortly.
                durable.send_modify(|_| {});
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        last = started;
        if stopping && s.written.load(Ordering::Acquire) == flushed {
            return;
        }
    }
}
