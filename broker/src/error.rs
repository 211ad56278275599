//! Domain errors raised by the broker's inner layers.
//!
//! These name what went wrong in Kinesis terms, with the facts a message needs. Which
//! `__type`, HTTP status and exact message text a client sees is decided in one place,
//! [`crate::api::error`].

use std::io;

/// A request the broker cannot carry out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No stream of that name (or it is still being created or already deleted, for data ops).
    #[error("stream {stream} not found")]
    StreamNotFound {
        /// The stream name as requested.
        stream: String,
    },
    /// GetShardIterator / GetRecords: the shard does not exist.
    #[error("shard {shard} of stream {stream} does not exist")]
    ShardDoesNotExist {
        /// The stream name.
        stream: String,
        /// The normalised shard id.
        shard: String,
    },
    /// Split/Merge (and unparsable ids anywhere): the shard cannot be found.
    #[error("could not find shard {shard} in stream {stream}")]
    ShardNotFound {
        /// The stream name.
        stream: String,
        /// The shard id as given or normalised.
        shard: String,
    },
    /// A registered consumer does not exist.
    #[error("consumer {consumer} not found")]
    ConsumerNotFound {
        /// The consumer ARN or name.
        consumer: String,
    },
    /// DeleteResourcePolicy: the stream or consumer has no resource policy.
    #[error("no resource policy on {arn}")]
    ResourcePolicyNotFound {
        /// The resource's ARN.
        arn: String,
    },
    /// Creating a stream whose name is taken.
    #[error("stream {stream} already exists")]
    StreamExists {
        /// The stream name.
        stream: String,
    },
    /// The stream must be ACTIVE for this operation.
    #[error("stream {stream} is {status}, not ACTIVE")]
    StreamNotActive {
        /// The stream name.
        stream: String,
        /// Its current status.
        status: &'static str,
    },
    /// Another resource-in-use condition, with its message.
    #[error("{0}")]
    ResourceInUse(String),
    /// An account or stream limit, with its message.
    #[error("{0}")]
    LimitExceeded(String),
    /// A well-formed request that breaks a business rule, with its message.
    #[error("{0}")]
    InvalidArgument(String),
    /// A constraint violation reported as ValidationException, with its full message.
    #[error("{0}")]
    Validation(String),
    /// A shard's throughput limit was exceeded.
    #[error("rate exceeded for shard {shard} in stream {stream}")]
    Throttled {
        /// The stream name.
        stream: String,
        /// The shard id.
        shard: String,
    },
    /// A shard iterator older than five minutes.
    #[error("iterator expired")]
    ExpiredIterator {
        /// When the iterator was issued, ms since the epoch.
        issued_ms: i64,
        /// Now, ms since the epoch.
        now_ms: i64,
    },
    /// A pagination token that has expired or was not issued by this broker.
    #[error("{0}")]
    ExpiredNextToken(String),
    /// Encryption at rest: a key is missing, or does not open what was sealed with it.
    #[error(transparent)]
    Seal(#[from] crate::storage::SealError),
    /// The log could not be read or written. The request fails with InternalFailure and
    /// the condition is logged for an operator.
    #[error("storage failure")]
    Storage(#[from] io::Error),
}

/// The result type of broker operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
