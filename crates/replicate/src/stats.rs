//! What a running replicator reports: [`Stats`], a snapshot of shared [`Counters`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::schedule::Priority;

/// Counters shared by the replicator and its target (atomics; cheap to update).
#[derive(Debug)]
pub struct Counters {
    started: Instant,
    sent: AtomicU64,
    throttled: AtomicU64,
    retries: AtomicU64,
    done: [AtomicU64; 3],
    done_bytes: [AtomicU64; 3],
    skipped: AtomicU64,
    lost: AtomicU64,
    failed: AtomicU64,
    resumed: AtomicU64,
    preempted: AtomicU64,
    idle: AtomicBool,
    /// Bytes sent when the P0 queue was first seen empty after having had work, and when.
    events_safe: Mutex<Option<(Duration, u64)>>,
    text: Mutex<Text>,
}

#[derive(Debug, Default)]
struct Text {
    completed: Vec<Completed>,
    pending: [(u64, u64); 3],
    current: Option<String>,
    last_error: Option<String>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            started: Instant::now(),
            sent: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            done: Default::default(),
            done_bytes: Default::default(),
            skipped: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            preempted: AtomicU64::new(0),
            idle: AtomicBool::new(false),
            events_safe: Mutex::new(None),
            text: Mutex::new(Text::default()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Counters {
    /// Bytes handed to the target (request bodies and headers; a re-sent part counts again).
    pub fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Relaxed);
    }

    /// A 429 or 503 answer.
    pub fn add_throttled(&self) {
        self.throttled.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_retry(&self, error: String) {
        self.retries.fetch_add(1, Relaxed);
        lock(&self.text).last_error = Some(error);
    }

    pub(crate) fn add_done(&self, p: Priority, key: String, bytes: u64) {
        self.done[p as usize].fetch_add(1, Relaxed);
        self.done_bytes[p as usize].fetch_add(bytes, Relaxed);
        let mut t = lock(&self.text);
        // Kept until taken, but bounded: a caller that never takes them loses the oldest.
        if t.completed.len() >= 10_000 {
            t.completed.remove(0);
        }
        t.completed.push(Completed {
            priority: p,
            key,
            bytes,
        });
    }

    /// The segments completed since the last call, in order.
    pub fn take_completed(&self) -> Vec<Completed> {
        std::mem::take(&mut lock(&self.text).completed)
    }

    pub(crate) fn add_skipped(&self, n: u64) {
        self.skipped.fetch_add(n, Relaxed);
    }

    pub(crate) fn add_lost(&self) {
        self.lost.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_failed(&self, error: String) {
        self.failed.fetch_add(1, Relaxed);
        lock(&self.text).last_error = Some(error);
    }

    pub(crate) fn add_resumed(&self) {
        self.resumed.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_preempted(&self) {
        self.preempted.fetch_add(1, Relaxed);
    }

    pub(crate) fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Relaxed);
    }

    pub(crate) fn set_pending(&self, pending: [(u64, u64); 3]) {
        lock(&self.text).pending = pending;
    }

    pub(crate) fn set_current(&self, current: Option<String>) {
        lock(&self.text).current = current;
    }

    pub(crate) fn events_safe_now(&self) {
        let mut e = lock(&self.events_safe);
        if e.is_none() {
            *e = Some((self.started.elapsed(), self.sent.load(Relaxed)));
        }
    }

    /// A snapshot.
    pub fn snapshot(&self) -> Stats {
        let t = lock(&self.text);
        let load =
            |a: &[AtomicU64; 3]| [a[0].load(Relaxed), a[1].load(Relaxed), a[2].load(Relaxed)];
        Stats {
            elapsed: self.started.elapsed(),
            bytes_sent: self.sent.load(Relaxed),
            done: load(&self.done),
            done_bytes: load(&self.done_bytes),
            pending: t.pending.map(|p| p.0),
            pending_bytes: t.pending.map(|p| p.1),
            skipped: self.skipped.load(Relaxed),
            lost: self.lost.load(Relaxed),
            failed: self.failed.load(Relaxed),
            retries: self.retries.load(Relaxed),
            throttled: self.throttled.load(Relaxed),
            resumed: self.resumed.load(Relaxed),
            preempted: self.preempted.load(Relaxed),
            idle: self.idle.load(Relaxed),
            current: t.current.clone(),
            last_error: t.last_error.clone(),
            events_safe: *lock(&self.events_safe),
        }
    }
}

/// A segment the target now holds (verified).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Completed {
    /// Its priority.
    pub priority: Priority,
    /// Its object key (under the target's prefix).
    pub key: String,
    /// Its bytes.
    pub bytes: u64,
}

/// A snapshot of a replicator's progress. Arrays are indexed by [`Priority`] (P0, P1, P2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Since the replicator started.
    pub elapsed: Duration,
    /// Bytes handed to the target: bodies and headers, re-sent bytes included.
    pub bytes_sent: u64,
    /// Segments replicated (verified) in this run.
    pub done: [u64; 3],
    /// Their bytes.
    pub done_bytes: [u64; 3],
    /// Segments waiting.
    pub pending: [u64; 3],
    /// Their bytes.
    pub pending_bytes: [u64; 3],
    /// Segments the policy skipped (continuous footage without motion).
    pub skipped: u64,
    /// Segments gone from the store before they were replicated.
    pub lost: u64,
    /// Segments that could not be replicated (the local file no longer matches its sidecar);
    /// left in the queue for the next run.
    pub failed: u64,
    /// Errors waited out with backoff.
    pub retries: u64,
    /// 429 / 503 (SlowDown) answers.
    pub throttled: u64,
    /// Multipart uploads continued from the queue's record rather than started anew.
    pub resumed: u64,
    /// Uploads paused at a part boundary for event footage.
    pub preempted: u64,
    /// Nothing to do (following the store for new segments).
    pub idle: bool,
    /// The object being sent.
    pub current: Option<String>,
    /// The last error (retried or not).
    pub last_error: Option<String>,
    /// When the event queue (P0) first became empty, and the bytes sent by then.
    pub events_safe: Option<(Duration, u64)>,
}

impl Stats {
    /// Bytes still to send.
    pub fn pending_total_bytes(&self) -> u64 {
        self.pending_bytes.iter().sum()
    }

    /// Segments replicated in this run.
    pub fn done_total(&self) -> u64 {
        self.done.iter().sum()
    }
}
