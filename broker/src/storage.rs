//! Durable storage: one append-only, segmented log per shard, and the metadata file.
//!
//! Storage knows positions, byte offsets and timestamps, not shards or sequence numbers;
//! the shard layer maps sequence numbers to positions ([`riffle_core::SequenceNumber`]).
//!
//! - [`segment`]: the on-disk batch format and its codec (the only decoder of log bytes).
//! - [`log`]: a directory of segments: append with group commit, read by position or time,
//!   recovery of a torn tail, retention by whole segments.
//! - [`meta`]: the crash-safe metadata file (write-temp, fsync, rename, fsync directory).

pub mod log;
pub mod meta;
pub mod segment;

pub use log::{Log, LogWriter, ReadResult, StoredRecord};

use std::sync::Arc;

use aes_gcm::Aes256Gcm;

/// Where a log gets the keys of its sealed (encrypted) batches: a stream's encryption at
/// rest. Implemented by [`crate::encryption::StreamKeys`].
pub trait Keys: Send + Sync + std::fmt::Debug {
    /// The key id and cipher new batches are sealed with; `None` writes them in the clear.
    fn sealing(&self) -> Result<Option<(String, Arc<Aes256Gcm>)>, SealError>;
    /// The cipher of batches sealed under `key_id`.
    fn opening(&self, key_id: &str) -> Result<Arc<Aes256Gcm>, SealError>;
}

/// A sealed batch cannot be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The key ring has no key of this id.
    #[error("the broker's key ring has no key {key_id}")]
    MissingKey {
        /// The key id, as the stream or the batch names it.
        key_id: String,
    },
    /// The key of this id does not open the batch: it is not the key the batch was
    /// sealed with (or the bytes were altered).
    #[error("records sealed under key {key_id} do not decrypt with the key the broker has under that id")]
    WrongKey {
        /// The key id.
        key_id: String,
    },
}
