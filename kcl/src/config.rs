//! Scheduler configuration: serde (`deny_unknown_fields`), defaults, [`Config::validate`].
//!
//! Defaults follow the Java KCL where it has one, except the failover timers (see
//! [`Config::failover_time`] and [`Config::lease_taker_interval`] for why they are shorter).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Where a shard with no checkpoint starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InitialPosition {
    /// The oldest record still retained.
    TrimHorizon,
    /// Records written after the consumer starts (the KCL's default).
    #[default]
    Latest,
    /// Records written at or after [`Config::initial_timestamp`].
    AtTimestamp,
}

/// How records are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RetrievalMode {
    /// GetRecords, with a prefetch queue and adaptive idle time.
    #[default]
    Polling,
    /// Enhanced fan-out: SubscribeToShard pushes records (a registered stream consumer).
    FanOut,
}

/// Record retrieval settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrievalConfig {
    /// Polling or enhanced fan-out. Default polling.
    pub mode: RetrievalMode,
    /// Polling: `Limit` of each GetRecords (1..=10,000). Default 10,000, as the KCL.
    pub max_records: i32,
    /// Polling: the longest wait between GetRecords calls when the shard is idle. The wait
    /// starts at `min_poll_interval` after an empty answer and doubles up to this. Default
    /// 1 s (the KCL waits a fixed 1.5 s).
    #[serde(with = "humantime_serde")]
    pub idle_time: Duration,
    /// Polling: the shortest time between two GetRecords calls on a shard. Default 200 ms,
    /// which keeps one consumer at Kinesis's 5 calls per second per shard.
    #[serde(with = "humantime_serde")]
    pub min_poll_interval: Duration,
    /// Batches fetched ahead of the processor, per shard. Default 4, as the KCL
    /// (`maxPendingProcessRecordsInput`).
    pub prefetch_batches: usize,
    /// Fan-out: the stream consumer's name. Default: the application name, as the KCL.
    pub consumer_name: Option<String>,
    /// Longest backoff after throttling or errors. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        RetrievalConfig {
            mode: RetrievalMode::Polling,
            max_records: 10_000,
            idle_time: Duration::from_secs(1),
            min_poll_interval: Duration::from_millis(200),
            prefetch_batches: 4,
            consumer_name: None,
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What happens when [`RecordProcessor::process_records`](crate::RecordProcessor::process_records)
/// fails: the batch is retried with exponential backoff, then (optionally) each record is
/// tried alone once, then what still fails goes to the dead-letter hook and the shard moves on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts per batch, the first included (≥ 1). Default 3.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles after each. Default 100 ms.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Cap on the backoff. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// After the batch's last attempt, hand each record to the processor alone once, so only
    /// the records that fail by themselves are dead-lettered. Default true.
    pub isolate_records: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            isolate_records: true,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt` (2, 3, …).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(2).min(20);
        self.initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

/// The scheduler's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The application: the DynamoDB lease table's name and the default fan-out consumer
    /// name. Required.
    pub application_name: String,
    /// The stream to consume. Required.
    pub stream_name: String,
    /// This worker's id in the lease table. Default: `<hostname>-<random uuid>`, new on every
    /// start (a stable id lets a restarted worker take back its own leases at once).
    pub worker_id: Option<String>,
    /// Where shards without a checkpoint start. Default `LATEST`, as the KCL.
    pub initial_position: InitialPosition,
    /// The timestamp for [`InitialPosition::AtTimestamp`] (RFC 3339).
    #[serde(with = "humantime_serde")]
    pub initial_timestamp: Option<SystemTime>,
    /// A lease whose counter has not moved for this long is expired and may be taken; a holder
    /// that could not renew for this long stops processing. Held leases are renewed every
    /// third of it. Default **5 s** (the KCL's is 10 s): a Rust worker has no GC pauses to
    /// ride out, a renewal is one small conditional write, and halving it halves the time a
    /// crashed worker's shards stand still.
    #[serde(with = "humantime_serde")]
    pub failover_time: Duration,
    /// How often the lease table is listed to take expired and released leases and to
    /// balance. Default **1 s** (KCL 2.x: 2 × failover ≈ 20 s), so released leases move at
    /// once and a crashed worker's leases move within failover time + 1 s. Each run is one
    /// `Scan` of the table (about 1 RCU per 4 KiB of leases); raise it for very large tables.
    #[serde(with = "humantime_serde")]
    pub lease_taker_interval: Duration,
    /// At most this many leases per worker. Default unbounded.
    pub max_leases_for_worker: Option<usize>,
    /// At most this many leases stolen per taker run (0 disables stealing). Default 1, as the
    /// KCL.
    pub max_leases_to_steal: usize,
    /// How often shards are listed to create leases for new shards. Default 60 s, as the KCL.
    /// (At a shard's end its children's leases are created at once, without waiting.)
    #[serde(with = "humantime_serde")]
    pub shard_sync_interval: Duration,
    /// How often a child waiting for its parents re-reads their leases. Default 1 s (KCL 10 s).
    #[serde(with = "humantime_serde")]
    pub parent_poll_interval: Duration,
    /// On graceful shutdown, how long processors get to finish and checkpoint before their
    /// leases are released anyway. Default 20 s.
    #[serde(with = "humantime_serde")]
    pub graceful_shutdown_timeout: Duration,
    /// If the processor returns from `shard_ended` without checkpointing `SHARD_END`,
    /// checkpoint it anyway so the children can start (the KCL fails the shard instead, and its
    /// children never start). Default true.
    pub auto_checkpoint_shard_end: bool,
    /// Call `process_records` for empty batches too. Default false, as the KCL.
    pub call_process_records_even_for_empty_list: bool,
    /// Record retrieval.
    pub retrieval: RetrievalConfig,
    /// Retries of a failing batch before the dead-letter hook.
    pub retry: RetryPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            application_name: String::new(),
            stream_name: String::new(),
            worker_id: None,
            initial_position: InitialPosition::Latest,
            initial_timestamp: None,
            failover_time: Duration::from_secs(5),
            lease_taker_interval: Duration::from_secs(1),
            max_leases_for_worker: None,
            max_leases_to_steal: 1,
            shard_sync_interval: Duration::from_secs(60),
            parent_poll_interval: Duration::from_secs(1),
            graceful_shutdown_timeout: Duration::from_secs(20),
            auto_checkpoint_shard_end: true,
            call_process_records_even_for_empty_list: false,
            retrieval: RetrievalConfig::default(),
            retry: RetryPolicy::default(),
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

impl Config {
    /// A default config for an application consuming a stream.
    pub fn new(application_name: impl Into<String>, stream_name: impl Into<String>) -> Config {
        Config {
            application_name: application_name.into(),
            stream_name: stream_name.into(),
            ..Config::default()
        }
    }

    /// How often held leases are renewed: a third of the failover time, less 25 ms, as the
    /// KCL.
    pub fn renew_interval(&self) -> Duration {
        (self.failover_time / 3).saturating_sub(Duration::from_millis(25))
    }

    /// The fan-out consumer name.
    pub fn consumer_name(&self) -> &str {
        self.retrieval
            .consumer_name
            .as_deref()
            .unwrap_or(&self.application_name)
    }

    /// Checks every field; the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name_ok = |s: &str| {
            (3..=255).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        };
        if !name_ok(&self.application_name) {
            return Err(invalid(
                "application_name",
                "3 to 255 characters of a-z A-Z 0-9 _ . - (it names the lease table)",
            ));
        }
        if self.stream_name.is_empty() || self.stream_name.len() > 128 {
            return Err(invalid("stream_name", "1 to 128 characters"));
        }
        if self.worker_id.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("worker_id", "must not be empty"));
        }
        if self.initial_position == InitialPosition::AtTimestamp && self.initial_timestamp.is_none()
        {
            return Err(invalid(
                "initial_timestamp",
                "required with initial_position = AT_TIMESTAMP",
            ));
        }
        if self.failover_time < Duration::from_millis(300) {
            return Err(invalid("failover_time", "at least 300ms"));
        }
        if self.lease_taker_interval.is_zero() || self.lease_taker_interval > self.failover_time {
            return Err(invalid(
                "lease_taker_interval",
                "more than 0 and at most failover_time (else failover takes longer than 2 × failover_time)",
            ));
        }
        if self.max_leases_for_worker == Some(0) {
            return Err(invalid("max_leases_for_worker", "at least 1"));
        }
        if self.shard_sync_interval < Duration::from_secs(1) {
            return Err(invalid("shard_sync_interval", "at least 1s"));
        }
        if self.parent_poll_interval.is_zero() {
            return Err(invalid("parent_poll_interval", "more than 0"));
        }
        let r = &self.retrieval;
        if !(1..=10_000).contains(&r.max_records) {
            return Err(invalid("retrieval.max_records", "1 to 10000"));
        }
        if r.min_poll_interval > r.idle_time {
            return Err(invalid(
                "retrieval.min_poll_interval",
                "at most retrieval.idle_time",
            ));
        }
        if r.prefetch_batches == 0 {
            return Err(invalid("retrieval.prefetch_batches", "at least 1"));
        }
        if r.max_backoff.is_zero() {
            return Err(invalid("retrieval.max_backoff", "more than 0"));
        }
        if r.consumer_name.as_deref().is_some_and(|n| !name_ok(n)) {
            return Err(invalid(
                "retrieval.consumer_name",
                "3 to 255 characters of a-z A-Z 0-9 _ . -",
            ));
        }
        if self.retry.max_attempts == 0 {
            return Err(invalid("retry.max_attempts", "at least 1"));
        }
        if self.retry.initial_backoff > self.retry.max_backoff {
            return Err(invalid(
                "retry.initial_backoff",
                "at most retry.max_backoff",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_once_named() {
        assert!(Config::default().validate().is_err());
        let c = Config::new("orders-app", "orders");
        c.validate().unwrap();
        assert_eq!(c.renew_interval(), Duration::from_nanos(1_641_666_666));
        assert_eq!(c.consumer_name(), "orders-app");
    }

    #[test]
    fn toml_with_durations_and_unknown_fields() {
        let c: Config = toml::from_str(
            r#"
            application_name = "app"
            stream_name = "s"
            failover_time = "3s"
            initial_position = "TRIM_HORIZON"
            [retrieval]
            mode = "fan_out"
            idle_time = "500ms"
            [retry]
            max_attempts = 5
            "#,
        )
        .unwrap();
        assert_eq!(c.failover_time, Duration::from_secs(3));
        assert_eq!(c.retrieval.mode, RetrievalMode::FanOut);
        assert_eq!(c.retrieval.idle_time, Duration::from_millis(500));
        assert_eq!(c.retry.max_attempts, 5);
        assert_eq!(c.initial_position, InitialPosition::TrimHorizon);
        c.validate().unwrap();
        let err = toml::from_str::<Config>("application_name = \"app\"\nfailover = \"1s\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let field = |c: Config| match c.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            Ok(()) => "ok",
        };
        let base = Config::new("app", "s");
        assert_eq!(
            field(Config {
                lease_taker_interval: Duration::from_secs(10),
                ..base.clone()
            }),
            "lease_taker_interval"
        );
        assert_eq!(
            field(Config {
                initial_position: InitialPosition::AtTimestamp,
                ..base.clone()
            }),
            "initial_timestamp"
        );
        let mut r = base.clone();
        r.retrieval.max_records = 0;
        assert_eq!(field(r), "retrieval.max_records");
        let mut r = base.clone();
        r.retry.max_attempts = 0;
        assert_eq!(field(r), "retry.max_attempts");
        assert_eq!(
            field(Config {
                application_name: "a b".into(),
                ..base
            }),
            "application_name"
        );
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(2), Duration::from_millis(100));
        assert_eq!(p.backoff(3), Duration::from_millis(200));
        assert_eq!(p.backoff(4), Duration::from_millis(400));
        assert_eq!(p.backoff(40), Duration::from_secs(5));
    }
}
