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
