//! Which failures are worth retrying, and how long to wait before the next attempt.
//!
//! Pure functions; the random source of the jitter is passed in.

use std::time::Duration;

use rand::Rng;

/// What to do about a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// The shard (or account) is over its limit: slow that shard down, then retry (or fail
    /// at once under `fail_if_throttled`).
    Throttled,
    /// Transient: internal failures, 5xx, timeouts, broken connections. Retry with backoff.
    Retryable,
    /// Retrying cannot help: fail the record now.
    Fatal,
}

/// Throttling codes (per record or for a whole request).
const THROTTLED: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "KMSThrottlingException",
];

/// Codes that are transient whatever their HTTP status says.
const RETRYABLE: &[&str] = &[
    "InternalFailure",
    "InternalFailureException",
    "InternalServerError",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "ExpiredTokenException",
    "RequestExpired",
];

/// Classifies an error code from Kinesis (a per-record `ErrorCode`, or a whole request's
/// exception name with its HTTP status, if any). Unknown codes follow the status: 5xx is
/// transient, 4xx is not; an unknown code without a status is retried.
pub(crate) fn classify(code: &str, status: Option<u16>) -> ErrorClass {
    if THROTTLED.contains(&code) {
        ErrorClass::Throttled
    } else if RETRYABLE.contains(&code) {
        ErrorClass::Retryable
    } else {
        match status {
            Some(s) if (400..500).contains(&s) => ErrorClass::Fatal,
            _ => ErrorClass::Retryable,
        }
    }
}

/// Exponential backoff with full jitter: the delay before attempt `n + 1` (after `n` failed
/// attempts) is uniform in `[0, min(max, initial × 2^(n-1))]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// The bound of the delay after `failed` attempts (at least 1).
    pub(crate) fn bound(&self, failed: usize) -> Duration {
        let doublings = failed.saturating_sub(1).min(32) as u32;
        self.initial
            .checked_mul(1u32 << doublings.min(31))
            .map_or(self.max, |d| d.min(self.max))
    }

    /// A jittered delay after `failed` attempts.
    pub(crate) fn delay(&self, failed: usize, rng: &mut impl Rng) -> Duration {
        let bound = self.bound(failed);
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.gen_range(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn classification() {
        use ErrorClass::*;
        assert_eq!(
            classify("ProvisionedThroughputExceededException", None),
            Throttled
        );
        assert_eq!(
            classify("ProvisionedThroughputExceededException", Some(400)),
            Throttled
        );
        assert_eq!(classify("KMSThrottlingException", Some(400)), Throttled);
        assert_eq!(classify("InternalFailure", None), Retryable);
        assert_eq!(classify("InternalFailure", Some(500)), Retryable);
        assert_eq!(classify("ServiceUnavailable", Some(503)), Retryable);
        assert_eq!(classify("SomethingNew", Some(502)), Retryable);
        assert_eq!(classify("SomethingNew", None), Retryable);
        assert_eq!(classify("ResourceNotFoundException", Some(400)), Fatal);
        assert_eq!(classify("AccessDeniedException", Some(400)), Fatal);
        assert_eq!(classify("ValidationException", Some(400)), Fatal);
        assert_eq!(classify("InvalidArgumentException", Some(400)), Fatal);
        assert_eq!(classify("KMSAccessDeniedException", Some(400)), Fatal);
    }

    #[test]
    fn bounds_double_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let bounds: Vec<u128> = (1..=6).map(|n| b.bound(n).as_millis()).collect();
        assert_eq!(bounds, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.bound(0), Duration::from_millis(100));
        assert_eq!(b.bound(usize::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_below_the_bound_and_spreads() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        let mut rng = StdRng::seed_from_u64(7);
        let delays: Vec<Duration> = (0..1000).map(|_| b.delay(3, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(400)));
        let below_half = delays
            .iter()
            .filter(|d| **d < Duration::from_millis(200))
            .count();
        assert!(
            (400..600).contains(&below_half),
            "uniform: {below_half} of 1000 below half"
        );
    }
}
