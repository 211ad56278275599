//! What can go wrong: building a producer, putting a record, flushing, shutting down.
//!
//! A record that cannot be put is always handed back ([`PutError::record`]) with every
//! attempt made for it ([`PutError::attempts`]).

use std::sync::Arc;
use std::time::Duration;

use crate::config::ConfigError;
use crate::record::Record;

/// One failed attempt to write a user record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub(crate) error_code: Arc<str>,
    pub(crate) error_message: Arc<str>,
    pub(crate) started_after: Duration,
    pub(crate) duration: Duration,
}

impl Attempt {
    /// The error code: Kinesis's `ErrorCode` or exception name
    /// (`ProvisionedThroughputExceededException`, `InternalFailure`, …), or one of the
    /// producer's own: `Timeout`, `ConnectionError`, `ResponseError`, `Wrong Shard` (the
    /// record's aggregate landed on a shard that does not own all its hash keys — the map
    /// was stale; the KPL's code).
    pub fn error_code(&self) -> &str {
        &self.error_code
    }

    /// The error message that came with it.
    pub fn error_message(&self) -> &str {
        &self.error_message
    }

    /// Time from the `put` to the start of this attempt's request.
    pub fn started_after(&self) -> Duration {
        self.started_after
    }

    /// How long the request took.
    pub fn duration(&self) -> Duration {
        self.duration
    }
}

/// A user record that was not put, handed back with every attempt made for it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[error("{kind}")]
pub struct PutError {
    /// Why it failed.
    pub kind: PutErrorKind,
    /// The record, as it was given to `put` (boxed, so that a result stays small).
    pub record: Box<Record>,
    /// Every attempt that failed, oldest first (empty if it never reached Kinesis).
    pub attempts: Vec<Attempt>,
}

impl PutError {
    /// The record, to put again or elsewhere.
    pub fn into_record(self) -> Record {
        *self.record
    }

    /// The error code of the last attempt, if there was one.
    pub fn last_error_code(&self) -> Option<&str> {
        self.attempts.last().map(Attempt::error_code)
    }
}

/// Why a user record was not put.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PutErrorKind {
    /// The record can never be put as it is; nothing was sent.
    #[error("invalid record: {0}")]
    Invalid(InvalidRecord),
    /// Retried until `record_ttl` ran out (see the attempts for why each failed).
    #[error("record_ttl reached before the record could be put")]
    Expired,
    /// Kinesis answered with an error that retrying cannot fix (for example
    /// `ResourceNotFoundException`, `AccessDeniedException`, `ValidationException`).
    #[error("Kinesis rejected the record: {code}")]
    Rejected {
        /// The error code.
        code: String,
    },
    /// Kinesis throttled the record and `fail_if_throttled` is set.
    #[error("throttled, and fail_if_throttled is set")]
    Throttled,
    /// The attempt failed with a retryable error, but retries are switched off.
    #[error("attempt failed ({code}) and retries are off")]
    NotRetried {
        /// The error code.
        code: String,
    },
    /// `put` was called after `shutdown`.
    #[error("the producer is shut down")]
    ShutDown,
    /// The producer's background task ended before the record could be put (its runtime
    /// was shut down).
    #[error("the producer stopped before the record could be put")]
    Stopped,
}

/// Why a record is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRecord {
    /// Kinesis requires a partition key of 1 to 256 characters.
    #[error("partition key has {chars} characters, not 1 to 256")]
    PartitionKeyLength {
        /// Its length in characters.
        chars: usize,
    },
    /// The data is larger than `max_user_record_size`.
    #[error("data of {len} bytes is larger than max_user_record_size ({max})")]
    TooLarge {
        /// The data's length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The explicit hash key is not a decimal number in `0 ..= 2^128 - 1`.
    #[error("explicit hash key {0:?} is not a decimal number in 0 ..= 2^128-1")]
    ExplicitHashKey(String),
}

/// Why `try_put` did not take a record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TryPutError {
    /// The buffer is full (`max_buffered_records` or `max_buffered_bytes`); the record is
    /// handed back. `put` would have waited.
    #[error("the producer's buffer is full")]
    Full(Record),
    /// The record was refused for good (invalid, or the producer is shut down).
    #[error(transparent)]
    Refused(PutError),
}

impl TryPutError {
    /// The record, to put again or elsewhere.
    pub fn into_record(self) -> Record {
        match self {
            TryPutError::Full(r) => r,
            TryPutError::Refused(e) => *e.record,
        }
    }
}

/// Why a producer could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `build` was called outside a Tokio runtime (the producer spawns its task on it).
    #[error("a producer must be built inside a Tokio runtime")]
    NoRuntime,
}

/// `flush` or `shutdown` could not wait for the producer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlushError {
    /// The producer's background task has ended (its runtime was shut down); every record
    /// it held was failed with [`PutErrorKind::Stopped`].
    #[error("the producer stopped")]
    Stopped,
}
