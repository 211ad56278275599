//! `riffle-kcl`: a Kinesis consumer library — what the AWS Kinesis Client Library does, in
//! Rust, against any Kinesis endpoint (Riffle's broker or Amazon Kinesis) through
//! `aws-sdk-kinesis`.
//!
//! Many workers share a stream's shards through **leases**; each worker runs one
//! [`RecordProcessor`] per shard it holds, which **checkpoints** its progress; shards move to
//! other workers when a worker dies (after the failover time), shuts down (at once: its leases
//! are released), or when the stream is **resharded** (children start after their parents are
//! checkpointed at `SHARD_END`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use riffle_kcl::{Checkpointer, Config, ProcessRecordsInput, ProcessorError, RecordProcessor,
//!                  Scheduler, SqliteLeaseStore};
//!
//! struct Print;
//! impl RecordProcessor for Print {
//!     async fn process_records(&mut self, input: &ProcessRecordsInput, cp: &mut Checkpointer)
//!         -> Result<(), ProcessorError> {
//!         for r in &input.records {
//!             println!("{} {}/{}: {:?}", input.shard_id, r.sequence_number, r.sub_sequence_number, r.data);
//!         }
//!         cp.checkpoint().await?;
//!         Ok(())
//!     }
//! }
//!
//! # async fn demo(kinesis: aws_sdk_kinesis::Client) -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(SqliteLeaseStore::open("leases.db", "my-app")?);
//! let scheduler = Scheduler::builder(Config::new("my-app", "orders"), kinesis, store, |_shard| Print)
//!     .build()?;
//! let stop = scheduler.shutdown_handle();   // stop.shutdown() on SIGTERM
//! scheduler.run().await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! Start with [`scheduler`], which wires everything; the parts that *decide* are pure:
//! - [`config`]: [`Config`] — defaults, validation, and why the failover timers are shorter
//!   than the KCL's.
//! - [`processor`], [`checkpointer`], [`record`]: the application's API — the
//!   [`RecordProcessor`] trait, [`Checkpointer`], de-aggregated [`Record`]s.
//! - [`balance`] (pure): leases + workers + time → take / steal / release, with hysteresis.
//! - [`shard_sync`] (pure): shards + leases → leases to create; which children may start.
//! - [`lease`]: [`Lease`], the [`LeaseStore`] trait, its stores ([`DynamoDbLeaseStore`] with
//!   the Java KCL's schema, [`SqliteLeaseStore`]) and their conformance suite.
//! - `holder`: one task per held lease owns every write to it (renew, checkpoint, release).
//! - `consumer`: one task per held lease drives its processor; `retrieval`: polling and
//!   enhanced fan-out behind one interface.
//! - [`dead_letter`]: where records go after the retry policy is spent.
//! - [`metrics`]: Prometheus metrics and the KCL metrics they correspond to.
//! - [`checkpoint`]: sequence numbers (opaque decimal strings, compared as integers) and
//!   checkpoint sentinels.
//!
//! # Delivery semantics
//!
//! At least once. A record is delivered again only if it comes after the shard's last
//! checkpoint when the shard changes hands (worker crash, lease stolen to balance, a
//! processor error retried) — so make processing idempotent, or checkpoint as often as your
//! duplicates budget requires. Within a shard, records are delivered in order, one batch at a
//! time. A checkpoint at (sequence, sub-sequence) resumes at the next user record, also in the
//! middle of a KPL aggregate. See `kcl/README.md` for the timing of failover and handoff and
//! the lease table schema.

pub mod balance;
pub mod checkpoint;
pub mod checkpointer;
pub mod config;
mod consumer;
pub mod dead_letter;
pub mod error;
mod holder;
pub mod lease;
pub mod metrics;
pub mod processor;
pub mod record;
mod retrieval;
pub mod scheduler;
pub mod shard_sync;

pub use checkpoint::{Checkpoint, ExtendedSequenceNumber, SequenceNumber};
pub use checkpointer::Checkpointer;
pub use config::{Config, InitialPosition, RetrievalConfig, RetrievalMode, RetryPolicy};
pub use dead_letter::{DeadLetterHook, KinesisDeadLetter, LogDeadLetter};
pub use error::{
    BoxError, CheckpointError, ConfigError, DeadLetterError, LeaseStoreError, ProcessorError,
    SchedulerError,
};
pub use lease::dynamodb::DynamoDbLeaseStore;
pub use lease::sqlite::SqliteLeaseStore;
pub use lease::{Lease, LeaseStore};
pub use metrics::Metrics;
pub use processor::{InitializeInput, ProcessRecordsInput, RecordProcessor};
pub use record::{deaggregate, DeaggregateStats, Record};
pub use retrieval::fanout::ensure_consumer;
pub use scheduler::{Scheduler, SchedulerBuilder, ShutdownHandle};
