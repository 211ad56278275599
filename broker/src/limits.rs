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
