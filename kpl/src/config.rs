//! The producer's configuration: every setting, its default (the AWS KPL's where the KPL has
//! one) and its valid range.
//!
//! `Config` deserializes from any serde format with unknown keys refused and every key
//! optional; durations are written the humantime way (`"100ms"`, `"30s"`). In TOML:
//!
//! ```toml
//! record_max_buffered_time = "50ms"
//! rate_limit = "off"          # or a percentage of the shard limits, e.g. 150
//! max_buffered_bytes = 67108864
//! ordered = true
//! ```
//!
//! The table of every setting, its default, its KPL name and range is in the
//! [crate docs](crate#configuration).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// 1 MiB.
const MIB: usize = 1024 * 1024;

/// The most bytes a partition key can take: 256 characters of up to 4 UTF-8 bytes each.
pub(crate) const MAX_PARTITION_KEY_BYTES: usize = 1024;

/// The most characters a partition key may have (Kinesis's limit).
pub(crate) const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Producer settings; the [crate docs](crate#configuration) list them with their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Pack user records bound for the same shard into KPL aggregated records. Off: every
    /// user record is its own Kinesis record.
    pub aggregation_enabled: bool,
    /// Most user records in one aggregated record (at least 1).
    pub aggregation_max_count: u64,
    /// Most bytes of one aggregated record, magic and digest included (64 B – 10 MiB). A
    /// user record that does not fit into an aggregate of this size on its own is sent
    /// unaggregated.
    pub aggregation_max_size: usize,
    /// Most Kinesis records in one PutRecords request (1 – 500).
    pub collection_max_count: usize,
    /// Most bytes (partition keys plus data) in one PutRecords request; at least
    /// `max_user_record_size` + 1 KiB and at least `aggregation_max_size` + 1.
    pub collection_max_size: usize,
    /// How long a user record may wait to be aggregated and collected before its request is
    /// sent (its *deadline*). Under load, requests fill and leave sooner.
    #[serde(with = "humantime_serde")]
    pub record_max_buffered_time: Duration,
    /// How long after `put` a record may still be retried; past it, the record fails as
    /// expired (at least 100 ms, and at least `record_max_buffered_time`).
    #[serde(with = "humantime_serde")]
    pub record_ttl: Duration,
    /// Per-shard rate limit, as a percentage of the shard limits below, or off.
    pub rate_limit: RateLimit,
    /// The stream's per-shard write limit in records per second (Kinesis: 1,000).
    pub shard_records_per_second: u32,
    /// The stream's per-shard write limit in bytes per second (Kinesis: 1 MiB).
    pub shard_bytes_per_second: u64,
    /// Fail a record at once when Kinesis throttles it, instead of retrying.
    pub fail_if_throttled: bool,
    /// Largest data a user record may carry (64 B – 10 MiB; Kinesis accepts 1 MiB unless
    /// the stream's maximum record size was raised).
    pub max_user_record_size: usize,
    /// Most PutRecords requests in flight at once (1 – 256).
    pub max_concurrent_requests: usize,
    /// Time limit of one PutRecords or ListShards call. A request that times out may still
    /// have been written; its records are retried, so they may arrive twice.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Time limit for opening a connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Retry records that failed for a retryable reason (throttling, internal failures,
    /// timeouts, connection errors, landing on a shard that was split). Off: the first
    /// failed attempt fails the record.
    pub retries: bool,
    /// Upper bound of the first retry's delay; each further attempt doubles it, up to
    /// `retry_max_backoff`. The actual delay is drawn uniformly below the bound ("full
    /// jitter").
    #[serde(with = "humantime_serde")]
    pub retry_initial_backoff: Duration,
    /// Cap of the retry delay bound.
    #[serde(with = "humantime_serde")]
    pub retry_max_backoff: Duration,
    /// Most user records buffered (accepted by `put` and not yet resolved). When reached,
    /// `put` waits and `try_put` fails.
    pub max_buffered_records: usize,
    /// Most bytes (data plus partition and explicit hash keys) of user records buffered.
    /// At least `max_user_record_size` + 2 KiB, so that any valid record fits.
    pub max_buffered_bytes: usize,
    /// Ordered mode: at most one Kinesis record per shard per request and at most one
    /// request per shard in flight, so records with the same partition key are written in
    /// the order they were put, retries included. See the crate docs, "Ordering".
    pub ordered: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            aggregation_enabled: true,
            aggregation_max_count: u64::from(u32::MAX),
            aggregation_max_size: 51_200,
            collection_max_count: 500,
            collection_max_size: 5 * MIB,
            record_max_buffered_time: Duration::from_millis(100),
            record_ttl: Duration::from_secs(30),
            rate_limit: RateLimit::Percent(150),
            shard_records_per_second: 1000,
            shard_bytes_per_second: MIB as u64,
            fail_if_throttled: false,
            max_user_record_size: MIB,
            max_concurrent_requests: 24,
            request_timeout: Duration::from_secs(6),
            connect_timeout: Duration::from_secs(6),
            retries: true,
            retry_initial_backoff: Duration::from_millis(100),
            retry_max_backoff: Duration::from_secs(5),
            max_buffered_records: 500_000,
            max_buffered_bytes: 128 * MIB,
            ordered: false,
        }
    }
}

/// The per-shard rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// Each shard's token buckets refill at this percentage of `shard_records_per_second`
    /// and `shard_bytes_per_second` (the KPL's `RateLimit`, default 150).
    Percent(u32),
    /// No client-side limit (`"off"` in serde): only the broker's throttling slows the
    /// producer down.
    Off,
}

impl Serialize for RateLimit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RateLimit::Percent(p) => s.serialize_u32(*p),
            RateLimit::Off => s.serialize_str("off"),
        }
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Percent(u32),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Percent(p) => Ok(RateLimit::Percent(p)),
            Raw::Word(w) if w == "off" => Ok(RateLimit::Off),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "rate_limit must be a percentage or \"off\", not {w:?}"
            ))),
        }
    }
}

/// A setting out of its range, or two settings that contradict each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("invalid producer setting `{setting}`: {reason}")]
pub struct ConfigError {
    /// The setting at fault.
    pub setting: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn check(
    ok: bool,
    setting: &'static str,
    reason: impl FnOnce() -> String,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            setting,
            reason: reason(),
        })
    }
}

impl Config {
    /// Checks every setting's range and the relations between settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.aggregation_max_count >= 1,
            "aggregation_max_count",
            || "must be at least 1".into(),
        )?;
        check(
            (64..=10 * MIB).contains(&self.aggregation_max_size),
            "aggregation_max_size",
            || {
                format!(
                    "{} is not within 64 B ..= 10 MiB",
                    self.aggregation_max_size
                )
            },
        )?;
        check(
            (1..=500).contains(&self.collection_max_count),
            "collection_max_count",
            || format!("{} is not within 1 ..= 500", self.collection_max_count),
        )?;
        check(
            (64..=10 * MIB).contains(&self.max_user_record_size),
            "max_user_record_size",
            || {
                format!(
                    "{} is not within 64 B ..= 10 MiB",
                    self.max_user_record_size
                )
            },
        )?;
        check(
            self.collection_max_size >= self.max_user_record_size + MAX_PARTITION_KEY_BYTES
                && self.collection_max_size > self.aggregation_max_size,
            "collection_max_size",
            || {
                format!(
                    "{} cannot hold one record of max_user_record_size ({}) plus its \
                     partition key (up to {MAX_PARTITION_KEY_BYTES} B), or one aggregate \
                     of aggregation_max_size ({})",
                    self.collection_max_size, self.max_user_record_size, self.aggregation_max_size
                )
            },
        )?;
        check(
            self.record_ttl >= Duration::from_millis(100),
            "record_ttl",
            || format!("{:?} is shorter than 100 ms", self.record_ttl),
        )?;
        check(
            self.record_max_buffered_time <= self.record_ttl,
            "record_max_buffered_time",
            || {
                format!(
                    "{:?} is longer than record_ttl ({:?})",
                    self.record_max_buffered_time, self.record_ttl
                )
            },
        )?;
        if let RateLimit::Percent(p) = self.rate_limit {
            check(p >= 1, "rate_limit", || {
                "must be at least 1 (%), or \"off\"".into()
            })?;
        }
        check(
            self.shard_records_per_second >= 1,
            "shard_records_per_second",
            || "must be at least 1".into(),
        )?;
        check(
            self.shard_bytes_per_second >= 1,
            "shard_bytes_per_second",
            || "must be at least 1".into(),
        )?;
        check(
            (1..=256).contains(&self.max_concurrent_requests),
            "max_concurrent_requests",
            || format!("{} is not within 1 ..= 256", self.max_concurrent_requests),
        )?;
        check(!self.request_timeout.is_zero(), "request_timeout", || {
            "must be longer than zero".into()
        })?;
        check(!self.connect_timeout.is_zero(), "connect_timeout", || {
            "must be longer than zero".into()
        })?;
        check(
            !self.retry_initial_backoff.is_zero(),
            "retry_initial_backoff",
            || "must be longer than zero".into(),
        )?;
        check(
            self.retry_max_backoff >= self.retry_initial_backoff,
            "retry_max_backoff",
            || {
                format!(
                    "{:?} is shorter than retry_initial_backoff ({:?})",
                    self.retry_max_backoff, self.retry_initial_backoff
                )
            },
        )?;
        check(
            self.max_buffered_records >= 1,
            "max_buffered_records",
            || "must be at least 1".into(),
        )?;
        check(
            self.max_buffered_bytes >= self.max_user_record_size + 2 * MAX_PARTITION_KEY_BYTES,
            "max_buffered_bytes",
            || {
                format!(
                    "{} cannot hold one record of max_user_record_size ({}) with its keys",
                    self.max_buffered_bytes, self.max_user_record_size
                )
            },
        )?;
        // The budget is handed out in u32 permits per record and usize in total.
        check(
            self.max_buffered_bytes <= (usize::MAX >> 4),
            "max_buffered_bytes",
            || "is too large".into(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_kpls_and_valid() {
        let c = Config::default();
        c.validate().unwrap();
        assert!(c.aggregation_enabled);
        assert_eq!(c.aggregation_max_count, 4_294_967_295);
        assert_eq!(c.aggregation_max_size, 51_200);
        assert_eq!(c.collection_max_count, 500);
        assert_eq!(c.collection_max_size, 5_242_880);
        assert_eq!(c.record_max_buffered_time, Duration::from_millis(100));
        assert_eq!(c.record_ttl, Duration::from_millis(30_000));
        assert_eq!(c.rate_limit, RateLimit::Percent(150));
        assert_eq!(c.max_user_record_size, 1_048_576);
        assert_eq!(c.max_concurrent_requests, 24);
        assert_eq!(c.request_timeout, Duration::from_millis(6000));
        assert!(!c.fail_if_throttled);
    }

    #[test]
    fn toml_round_trip_with_humantime_and_off() {
        let c: Config = toml::from_str(
            "record_max_buffered_time = \"50ms\"\nrecord_ttl = \"2m\"\nrate_limit = \"off\"\nordered = true\n",
        )
        .unwrap();
        assert_eq!(c.record_max_buffered_time, Duration::from_millis(50));
        assert_eq!(c.record_ttl, Duration::from_secs(120));
        assert_eq!(c.rate_limit, RateLimit::Off);
        assert!(c.ordered);
        assert_eq!(
            c.collection_max_count, 500,
            "unset keys keep their defaults"
        );
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), c);
        let pct: Config = serde_json::from_str(r#"{"rate_limit": 80}"#).unwrap();
        assert_eq!(pct.rate_limit, RateLimit::Percent(80));
    }

    #[test]
    fn unknown_keys_and_bad_words_are_refused() {
        let e = toml::from_str::<Config>("agregation_enabled = false\n").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = toml::from_str::<Config>("rate_limit = \"fast\"\n").unwrap_err();
        assert!(e.to_string().contains("percentage or \"off\""), "{e}");
    }

    #[test]
    fn validate_names_the_setting() {
        let cases: Vec<(Config, &str)> = vec![
            (
                Config {
                    collection_max_count: 501,
                    ..Config::default()
                },
                "collection_max_count",
            ),
            (
                Config {
                    collection_max_count: 0,
                    ..Config::default()
                },
                "collection_max_count",
            ),
            (
                Config {
                    aggregation_max_size: 63,
                    ..Config::default()
                },
                "aggregation_max_size",
            ),
            (
                Config {
                    aggregation_max_count: 0,
                    ..Config::default()
                },
                "aggregation_max_count",
            ),
            (
                Config {
                    max_user_record_size: 11 * MIB,
                    ..Config::default()
                },
                "max_user_record_size",
            ),
            (
                Config {
                    collection_max_size: MIB,
                    ..Config::default()
                },
                "collection_max_size",
            ),
            (
                Config {
                    record_ttl: Duration::from_millis(99),
                    ..Config::default()
                },
                "record_ttl",
            ),
            (
                Config {
                    record_max_buffered_time: Duration::from_secs(31),
                    ..Config::default()
                },
                "record_max_buffered_time",
            ),
            (
                Config {
                    rate_limit: RateLimit::Percent(0),
                    ..Config::default()
                },
                "rate_limit",
            ),
            (
                Config {
                    max_concurrent_requests: 0,
                    ..Config::default()
                },
                "max_concurrent_requests",
            ),
            (
                Config {
                    request_timeout: Duration::ZERO,
                    ..Config::default()
                },
                "request_timeout",
            ),
            (
                Config {
                    retry_max_backoff: Duration::from_millis(10),
                    ..Config::default()
                },
                "retry_max_backoff",
            ),
            (
                Config {
                    max_buffered_bytes: MIB,
                    ..Config::default()
                },
                "max_buffered_bytes",
            ),
            (
                Config {
                    max_buffered_records: 0,
                    ..Config::default()
                },
                "max_buffered_records",
            ),
        ];
        for (c, setting) in cases {
            let e = c.validate().unwrap_err();
            assert_eq!(e.setting, setting, "{e}");
            assert!(e
                .to_string()
                .starts_with(&format!("invalid producer setting `{setting}`")));
        }
    }
}
