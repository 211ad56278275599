//! Per-shard rate limiting: two token buckets (Kinesis records and bytes) per shard, whose
//! refill rate backs off when the broker throttles the shard and recovers when it stops.
//!
//! Pure state machines over an injected clock: every method takes `now`.
//!
//! * Buckets hold one second of the shard's limit (the KPL: 1,000 records and 1 MiB), never
//!   less than the largest Kinesis record, and start full. They refill at `rate_limit` % of
//!   the limit (default 150 %, as the KPL).
//! * A throttle (`ProvisionedThroughputExceededException` on the shard) empties both
//!   buckets and halves the refill rate, at most once per [`THROTTLE_WINDOW`] (one response
//!   usually carries many throttled records of the same shard), down to
//!   [`MIN_FACTOR`] of the configured rate. From one window after the last throttle on,
//!   the rate grows back by [`RECOVERY_PER_SECOND`] of the configured rate per second. The KPL has no such
//!   feedback (its `add_error` is a TODO), so N producers on one shard each keep pushing at
//!   150 %; here they settle near what the shard accepts.

use std::time::Duration;

use tokio::time::Instant;

/// Throttles closer together than this count as one.
pub(crate) const THROTTLE_WINDOW: Duration = Duration::from_millis(200);

/// The lowest fraction of the configured rate a throttled shard falls to.
pub(crate) const MIN_FACTOR: f64 = 1.0 / 32.0;

/// Fraction of the configured rate regained per second without throttles.
pub(crate) const RECOVERY_PER_SECOND: f64 = 0.1;

/// A token bucket: up to `capacity` tokens, refilled at `rate` per second.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(capacity: f64, rate: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            capacity,
            rate,
            tokens: capacity,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.updated = self.updated.max(now);
    }

    /// Tokens available at `now`.
    #[cfg(test)]
    pub(crate) fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// How long from `now` until `n` tokens are available (zero if they are).
    pub(crate) fn wait_for(&mut self, n: f64, now: Instant) -> Duration {
        self.refill(now);
        let missing = n.min(self.capacity) - self.tokens;
        if missing <= 0.0 {
            Duration::ZERO
        } else {
            // Round up to whole microseconds so that waking at the returned instant finds
            // the tokens there.
            Duration::from_micros((missing / self.rate * 1e6).ceil() as u64 + 1)
        }
    }

    /// Takes `n` tokens (the caller checked they are there).
    pub(crate) fn take(&mut self, n: f64, now: Instant) {
        self.refill(now);
        self.tokens -= n.min(self.capacity);
    }

    /// Changes the refill rate from `now` on.
    pub(crate) fn set_rate(&mut self, rate: f64, now: Instant) {
        self.refill(now);
        self.rate = rate;
    }

    /// Empties the bucket.
    pub(crate) fn empty(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = 0.0;
    }
}

/// The configured limits every shard limiter starts from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rates {
    /// Kinesis records per second the buckets refill at (limit × rate_limit %).
    pub(crate) records_per_second: f64,
    /// Bytes per second likewise.
    pub(crate) bytes_per_second: f64,
    /// Bucket sizes: one second of the shard's limit.
    pub(crate) records_capacity: f64,
    pub(crate) bytes_capacity: f64,
}

/// One shard's limiter.
#[derive(Debug, Clone)]
pub(crate) struct ShardLimiter {
    rates: Rates,
    records: TokenBucket,
    bytes: TokenBucket,
    /// Fraction of the configured rates in force.
    factor: f64,
    last_throttle: Option<Instant>,
    recovered_at: Instant,
}

impl ShardLimiter {
    pub(crate) fn new(rates: Rates, now: Instant) -> ShardLimiter {
        ShardLimiter {
            rates,
            records: TokenBucket::new(rates.records_capacity, rates.records_per_second, now),
            bytes: TokenBucket::new(rates.bytes_capacity, rates.bytes_per_second, now),
            factor: 1.0,
            last_throttle: None,
            recovered_at: now,
        }
    }

    /// The fraction of the configured rate in force.
    #[cfg(test)]
    pub(crate) fn factor(&self) -> f64 {
        self.factor
    }

    fn set_factor(&mut self, factor: f64, now: Instant) {
        self.factor = factor;
        self.records
            .set_rate(self.rates.records_per_second * factor, now);
        self.bytes
            .set_rate(self.rates.bytes_per_second * factor, now);
    }

    /// Credits the recovery earned since the last call. Recovery starts one
    /// [`THROTTLE_WINDOW`] after the last throttle.
    fn recover(&mut self, now: Instant) {
        if self.factor >= 1.0 {
            self.recovered_at = now;
            return;
        }
        let start = match self.last_throttle {
            Some(t) => self.recovered_at.max(t + THROTTLE_WINDOW),
            None => self.recovered_at,
        };
        if now > start {
            let dt = (now - start).as_secs_f64();
            self.recovered_at = now;
            self.set_factor((self.factor + dt * RECOVERY_PER_SECOND).min(1.0), now);
        }
    }

    /// Takes the tokens for one Kinesis record of `bytes` bytes, or says how long until
    /// they are there.
    pub(crate) fn try_take(&mut self, bytes: usize, now: Instant) -> Result<(), Duration> {
        self.recover(now);
        let b = bytes as f64;
        let wait = self
            .records
            .wait_for(1.0, now)
            .max(self.bytes.wait_for(b, now));
        if wait.is_zero() {
            self.records.take(1.0, now);
            self.bytes.take(b, now);
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// The broker throttled this shard.
    pub(crate) fn on_throttle(&mut self, now: Instant) {
        self.recover(now);
        if self
            .last_throttle
            .is_some_and(|t| now.saturating_duration_since(t) < THROTTLE_WINDOW)
        {
            return;
        }
        self.last_throttle = Some(now);
        self.recovered_at = now;
        self.records.empty(now);
        self.bytes.empty(now);
        self.set_factor((self.factor / 2.0).max(MIN_FACTOR), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn rates() -> Rates {
        // The KPL defaults: 150 % of 1,000 records/s and 1 MiB/s, one second of the limit.
        Rates {
            records_per_second: 1500.0,
            bytes_per_second: 1.5 * 1048576.0,
            records_capacity: 1000.0,
            bytes_capacity: 1048576.0,
        }
    }

    #[test]
    fn bucket_refills_at_its_rate_up_to_capacity() {
        let t = Instant::now();
        let mut b = TokenBucket::new(10.0, 100.0, t);
        b.take(10.0, t);
        assert_eq!(b.available(t), 0.0);
        assert_eq!(b.wait_for(5.0, t), Duration::from_micros(50_001));
        assert!((b.available(t + ms(50)) - 5.0).abs() < 1e-9);
        assert_eq!(b.available(t + ms(1000)), 10.0);
    }

    #[test]
    fn records_bucket_limits_a_burst_to_its_capacity_then_the_rate() {
        let t = Instant::now();
        let mut l = ShardLimiter::new(rates(), t);
        for _ in 0..1000 {
            l.try_take(10, t).unwrap();
        }
        // The 1,001st record waits for one token at 1,500/s.
        let wait = l.try_take(10, t).unwrap_err();
        assert_eq!(wait, Duration::from_micros(667 + 1));
        l.try_take(10, t + wait).unwrap();
    }

    #[test]
    fn bytes_bucket_limits_large_records() {
        let t = Instant::now();
        let mut l = ShardLimiter::new(rates(), t);
        l.try_take(1_048_576, t).unwrap();
        let wait = l.try_take(524_288, t).unwrap_err();
        // Half a MiB at 1.5 MiB/s: a third of a second.
        assert_eq!(wait.as_millis(), 333);
    }

    #[test]
    fn throttling_halves_the_rate_once_per_window_and_recovers() {
        let t = Instant::now();
        let mut l = ShardLimiter::new(rates(), t);
        l.on_throttle(t);
        assert_eq!(l.factor(), 0.5);
        // More throttled records from the same response or burst: no further cut.
        l.on_throttle(t + ms(50));
        l.on_throttle(t + ms(199));
        assert_eq!(l.factor(), 0.5);
        // Both buckets were emptied at t: one token at 750/s takes 1.33 ms.
        assert_eq!(
            l.try_take(1, t).unwrap_err(),
            Duration::from_micros(1334 + 1)
        );
        l.on_throttle(t + ms(200));
        assert_eq!(l.factor(), 0.25);
        // Recovery starts a window after the throttle: 1.8 s later, +0.18.
        l.try_take(1, t + ms(2200)).unwrap();
        assert!((l.factor() - 0.43).abs() < 1e-9, "{}", l.factor());
        // Ten more: back to the configured rate, and no further.
        l.try_take(1, t + ms(12_200)).unwrap();
        assert_eq!(l.factor(), 1.0);
    }

    #[test]
    fn the_rate_never_falls_below_the_floor() {
        let t = Instant::now();
        let mut l = ShardLimiter::new(rates(), t);
        for i in 0..20 {
            l.on_throttle(t + THROTTLE_WINDOW * i);
        }
        assert_eq!(l.factor(), MIN_FACTOR);
    }
}
