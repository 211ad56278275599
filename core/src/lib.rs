//! Domain facts shared by the Riffle broker and its clients.
//!
//! Everything here must agree byte for byte between the broker, the producer library and the
//! consumer library, so it lives in one place with no I/O and no async runtime.
//!
//! Layout — start with [`hash_key`]:
//! - [`hash_key`]: the 128-bit hash-key space, partition key → MD5 → [`HashKey`], ranges and
//!   the even split used when a stream is created or uniformly rescaled.
//! - [`shard_id`]: `shardId-000000000000` ids and the lenient forms Kinesis accepts.
//! - [`sequence`]: sequence numbers, derived from a shard index and a log position.
//! - [`names`]: stream and consumer names, ARNs.
//! - [`aggregate`]: the KPL aggregated-record format (many user records in one Kinesis record).

pub mod aggregate;
pub mod hash_key;
pub mod names;
pub mod sequence;
pub mod shard_id;

pub use aggregate::{Aggregate, AggregateBuilder, AggregateLayout};
pub use hash_key::{HashKey, HashKeyRange};
pub use names::{ConsumerArn, StreamArn, StreamName};
pub use sequence::SequenceNumber;
pub use shard_id::ShardId;
