//! The upstream cap: one token bucket in front of every byte sent to a target.
//!
//! A debt-based bucket: taking `n` bytes subtracts them at once and returns how long the caller
//! must wait before sending them, so concurrent senders queue in order and the long-run rate is
//! exactly the configured one. Its capacity (the largest burst) is small: a quarter second of
//! the rate, at least one 16 KiB piece, never more than one part. Bodies are handed to the
//! network in pieces of at most [`PIECE`] bytes, each paid for before it is sent.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bodies are paced in pieces of this many bytes.
pub const PIECE: usize = 16 << 10;

/// The bucket's arithmetic, without a clock (unit-tested with made-up instants).
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket of `capacity` bytes refilled at `rate` bytes per second.
    pub fn new(rate: f64, capacity: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    /// Takes `n` bytes at `now`: how long to wait before sending them.
    pub fn take(&mut self, n: u64, now: Instant) -> Duration {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// The shared limiter: a [`Bucket`] behind a mutex, and a tokio sleep.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_sec: u64,
    bucket: Mutex<Bucket>,
}

impl RateLimit {
    /// A limiter of `bytes_per_sec`, bursts at most `max_burst` bytes (one part).
    pub fn new(bytes_per_sec: u64, max_burst: u64) -> RateLimit {
        let rate = bytes_per_sec.max(1) as f64;
        let capacity = (rate / 4.0)
            .max(PIECE as f64)
            .min(max_burst.max(PIECE as u64) as f64);
        RateLimit {
            bytes_per_sec,
            bucket: Mutex::new(Bucket::new(rate, capacity, Instant::now())),
        }
    }

    /// The rate in bytes per second.
    pub fn bytes_per_sec(&self) -> u64 {
        self.bytes_per_sec
    }

    /// Waits until `n` bytes may be sent.
    pub async fn acquire(&self, n: u64) {
        let wait = self
            .bucket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(n, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Blocks the thread until `n` bytes may be sent (the directory target's writes).
    pub fn acquire_blocking(&self, n: u64) {
        let wait = self
            .bucket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(n, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_pays_debts_at_the_rate_and_bursts_at_most_its_capacity() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000.0, 500.0, t0);
        // The first 500 bytes go at once (the burst); the next 1000 must wait a second.
        assert_eq!(b.take(500, t0), Duration::ZERO);
        assert_eq!(b.take(1000, t0), Duration::from_secs(1));
        // A long idle time refills only up to the capacity.
        let later = t0 + Duration::from_secs(100);
        assert_eq!(b.take(500, later), Duration::ZERO);
        assert!(b.take(1, later) > Duration::ZERO);
        // Sending 100 pieces of 100 bytes, each when allowed, takes 10 s of bucket time
        // (minus the burst): the long-run rate is the configured one.
        let mut b = Bucket::new(1000.0, 100.0, t0);
        let mut now = t0;
        for _ in 0..100 {
            now += b.take(100, now);
        }
        let secs = now.duration_since(t0).as_secs_f64();
        assert!((secs - 9.9).abs() < 1e-6, "{secs}");
    }
}
