//! Typed errors, one enum per boundary. All are `#[non_exhaustive]`; `Display` never repeats
//! the source (walk `source()` for the chain).

use std::error::Error as StdError;

/// A boxed error from a backend (DynamoDB, SQLite, Kinesis) or from the application.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The error a [`RecordProcessor`](crate::RecordProcessor) callback returns.
pub type ProcessorError = BoxError;

/// A configuration value is out of range.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// One field is invalid.
    #[error("config `{field}`: {reason}")]
    Invalid {
        /// The field's name as written in the config file.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// A lease store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseStoreError {
    /// A conditional write was refused: the lease's counter or owner is not what the caller
    /// held (someone else took, renewed or released it), or the lease does not exist. For the
    /// holder this means the lease is lost.
    #[error("lease {key}: counter or owner changed, or the lease is gone")]
    Conflict {
        /// The lease key.
        key: String,
    },
    /// The backend throttled the request; retry later.
    #[error("lease store throttled {operation}")]
    Throttled {
        /// The operation, e.g. `renew`.
        operation: &'static str,
    },
    /// A stored lease could not be read.
    #[error("lease {key} is malformed: {reason}")]
    Corrupt {
        /// The lease key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Any other backend failure (network, I/O, table missing, …).
    #[error("lease store {operation} failed")]
    Backend {
        /// The operation, e.g. `renew`.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

impl LeaseStoreError {
    /// Wraps a backend error.
    pub fn backend(operation: &'static str, source: impl Into<BoxError>) -> LeaseStoreError {
        LeaseStoreError::Backend {
            operation,
            source: source.into(),
        }
    }

    /// Whether this is a refused conditional write.
    pub fn is_conflict(&self) -> bool {
        matches!(self, LeaseStoreError::Conflict { .. })
    }
}

/// A checkpoint was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// This worker no longer holds the lease (it was taken, expired or released), or the
    /// checkpointer belongs to an earlier acquisition of it (its concurrency token differs).
    /// Stop processing: another worker owns the shard now.
    #[error("lease on {shard_id} is lost")]
    LeaseLost {
        /// The shard.
        shard_id: String,
    },
    /// The position is before the last checkpoint or after the last delivered record.
    #[error("checkpoint {requested} is outside [{lowest}, {highest}]")]
    OutOfRange {
        /// The position asked for.
        requested: String,
        /// The last checkpoint.
        lowest: String,
        /// The largest permitted position (the last delivered record).
        highest: String,
    },
    /// A stored or given checkpoint value is not a sentinel nor a decimal sequence number.
    #[error("invalid checkpoint value {value:?}")]
    Invalid {
        /// The value.
        value: String,
    },
    /// The lease store failed (not a conflict); the checkpoint may be retried.
    #[error("checkpoint write failed")]
    Store {
        /// The store's error.
        #[source]
        source: LeaseStoreError,
    },
}

/// The dead-letter hook could not take the records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeadLetterError {
    /// Writing them to the dead-letter destination failed; the shard retries.
    #[error("dead-letter write failed")]
    Write {
        /// The destination's error.
        #[source]
        source: BoxError,
    },
}

/// The scheduler stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    /// The configuration is invalid.
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    /// The lease store could not be prepared (e.g. the table could not be created).
    #[error("lease store unavailable")]
    LeaseStore(#[source] LeaseStoreError),
    /// A Kinesis call needed to start failed (e.g. the stream does not exist).
    #[error("Kinesis {operation} failed")]
    Kinesis {
        /// The operation.
        operation: &'static str,
        /// The SDK's error.
        #[source]
        source: BoxError,
    },
}
