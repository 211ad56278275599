//! Token buckets for per-shard throughput limits.
//!
//! A bucket holds at most one second of its rate and refills continuously. Reads may take
//! more than is available (a 10 MiB GetRecords against a 2 MiB/s budget): the bucket goes
//! into debt and the next calls are throttled until it is repaid, which is how Kinesis
//! behaves after a large read.

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

    /// Whether `n` tokens are available now (without taking them).
    pub fn has(&mut self, n: f64) -> bool {
        self.refill(Instant::now());
        self.rate.is_none() || self.tokens >= n
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
        assert!(b.has(1000.0) && !b.has(1001.0));
    }

    #[tokio::test(start_paused = true)]
    async fn debt_throttles_until_repaid() {
        let mut b = TokenBucket::new(Limit::PerSecond(2));
        b.take(10.0);
        assert!(!b.positive());
        tokio::time::advance(Duration::from_millis(4100)).await;
        assert!(b.positive());
    }

    #[test]
    fn off_never_throttles() {
        let mut b = TokenBucket::new(Limit::Off);
        b.take(1e12);
        assert!(b.has(1e12) && b.positive());
    }
}
