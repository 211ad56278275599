//! Token buckets for per-shard throughput limits.
//!
//! A bucket holds at most one second of its rate and refills continuously. A take may be
//! larger than the bucket itself: a 1 MiB record with its partition key against a 1 MiB/s
//! write budget, a 10 MiB record after UpdateMaxRecordSize, a 10 MiB GetRecords against a
//! 2 MiB/s read budget. Such a take is admitted once the bucket is full and leaves it in
//! debt, so the shard bursts beyond its rate for that one unit and borrows from the
//! following seconds, as Kinesis does: every unit up to the largest allowed is eventually
//! admitted on an idle shard, and the sustained rate still holds because the debt is repaid
//! before anything else is admitted.

use tokio::time::Instant;

use crate::config::Limit;

/// One token bucket. `None` rate means unlimited.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Option<f64>,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket for `limit`.
    pub fn new(limit: Limit) -> TokenBucket {
        let rate = limit.rate().map(|r| r as f64);
        TokenBucket {
            rate,
            tokens: rate.unwrap_or(0.0),
            last: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(rate) = self.rate {
            let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * rate).min(rate);
        }
        self.last = now;
    }

    /// Whether a take of `n` tokens is admitted now (without taking them): `n` tokens are
    /// there, or, for a take larger than the whole bucket, the bucket is full.
    pub fn has(&mut self, n: f64) -> bool {
        self.refill(Instant::now());
        match self.rate {
            None => true,
            Some(rate) => self.tokens >= n || (rate > 0.0 && self.tokens >= rate),
        }
    }

    /// Whether the bucket is not in debt.
    pub fn positive(&mut self) -> bool {
        self.refill(Instant::now());
        self.rate.is_none() || self.tokens > 0.0
    }

    /// Takes `n` tokens, allowing debt.
    pub fn take(&mut self, n: f64) {
        if self.rate.is_some() {
            self.refill(Instant::now());
            self.tokens -= n;
        }
    }
}

/// Calls per second counted as Kinesis counts them: at most `n` calls in any one second
/// (a rolling window over the times of the last `n` admitted calls). Unlike a token bucket,
/// which would allow a burst of `n` on top of `n` per second (15 calls in 2 s for 5/s), this
/// never admits more than `n` calls within a second. Above [`CallWindow::MAX_EXACT`] calls
/// per second it is a token bucket (the log would cost memory for no practical difference).
#[derive(Debug, Clone)]
pub enum CallWindow {
    /// The times of the last admitted calls, oldest first, at most `n` of them.
    Exact {
        /// Calls per second.
        n: usize,
        /// Admission times.
        times: std::collections::VecDeque<Instant>,
    },
    /// A token bucket, for large or no limits.
    Bucket(TokenBucket),
}

impl CallWindow {
    /// The largest rate kept exactly.
    pub const MAX_EXACT: u64 = 10_000;

    /// A window for `limit` calls per second.
    pub fn new(limit: Limit) -> CallWindow {
        match limit.rate() {
            Some(n) if n <= Self::MAX_EXACT => CallWindow::Exact {
                n: n as usize,
                times: std::collections::VecDeque::with_capacity(n.min(16) as usize),
            },
            _ => CallWindow::Bucket(TokenBucket::new(limit)),
        }
    }

    /// Whether one more call is admitted now (without counting it).
    pub fn has(&mut self) -> bool {
        match self {
            CallWindow::Exact { n, times } => {
                let now = Instant::now();
                while times.front().is_some_and(|t| {
                    now.saturating_duration_since(*t) >= std::time::Duration::from_secs(1)
                }) {
                    times.pop_front();
                }
                times.len() < *n
            }
            CallWindow::Bucket(b) => b.has(1.0),
        }
    }

    /// Counts one call.
    pub fn take(&mut self) {
        match self {
            CallWindow::Exact { n, times } => {
                if times.len() >= *n {
                    times.pop_front();
                }
                times.push_back(Instant::now());
            }
            CallWindow::Bucket(b) => b.take(1.0),
        }
    }
}

/// Takes `a` from the first and `b` from the second bucket only if both have enough.
pub fn take_both(first: &mut TokenBucket, a: f64, second: &mut TokenBucket, b: f64) -> bool {
    if first.has(a) && second.has(b) {
        first.take(a);
        second.take(b);
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn refills_at_the_rate_and_caps_at_one_second() {
        let mut b = TokenBucket::new(Limit::PerSecond(1000));
        assert!(b.has(1000.0));
        b.take(1000.0);
        assert!(!b.has(1.0));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(b.has(99.0) && !b.has(101.0));
        tokio::time::advance(Duration::from_secs(60)).await;
        b.take(1000.0);
        assert!(
            !b.has(1.0),
            "a minute idle still holds only one second of rate"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn debt_throttles_until_repaid() {
        let mut b = TokenBucket::new(Limit::PerSecond(2));
        b.take(10.0);
        assert!(!b.positive());
        tokio::time::advance(Duration::from_millis(4100)).await;
        assert!(b.positive());
    }

    #[tokio::test(start_paused = true)]
    async fn a_take_larger_than_the_bucket_waits_for_a_full_bucket_then_borrows() {
        let mib = 1024.0 * 1024.0;
        let mut b = TokenBucket::new(Limit::PerSecond(1024 * 1024));
        // A maximal record with a 256-byte key: more than one second of rate.
        let big = mib + 256.0;
        assert!(b.has(big));
        b.take(big);
        assert!(
            !b.has(1.0),
            "the debt is repaid before anything else is admitted"
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(b.has(1000.0), "a small record fits once the debt is repaid");
        assert!(!b.has(big), "a large one waits for a full bucket");
        tokio::time::advance(Duration::from_millis(600)).await;
        assert!(b.has(big));
        // A 2 MiB record (UpdateMaxRecordSize) borrows a whole second from the next ones.
        assert!(b.has(2.0 * mib));
        b.take(2.0 * mib);
        tokio::time::advance(Duration::from_millis(900)).await;
        assert!(!b.has(1.0));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(b.has(1.0) && !b.has(2.0 * mib));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.has(2.0 * mib));
    }

    #[tokio::test(start_paused = true)]
    async fn five_calls_per_second_means_five_in_any_second() {
        let mut w = CallWindow::new(Limit::PerSecond(5));
        let mut admitted = 0;
        // 15 calls spread over 2 s (one every 133 ms): a token bucket would take all 15.
        for _ in 0..15 {
            if w.has() {
                w.take();
                admitted += 1;
            }
            tokio::time::advance(Duration::from_millis(133)).await;
        }
        assert_eq!(admitted, 10, "at most five in any one second");
        // After a quiet second, five at once again, and not a sixth.
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..5 {
            assert!(w.has());
            w.take();
        }
        assert!(!w.has());
        let mut zero = CallWindow::new(Limit::PerSecond(0));
        assert!(!zero.has());
        let mut off = CallWindow::new(Limit::Off);
        assert!(off.has());
    }

    #[test]
    fn a_zero_rate_admits_nothing() {
        let mut b = TokenBucket::new(Limit::PerSecond(0));
        assert!(!b.has(1.0));
    }

    #[test]
    fn off_never_throttles() {
        let mut b = TokenBucket::new(Limit::Off);
        b.take(1e12);
        assert!(b.has(1e12) && b.positive());
    }
}
