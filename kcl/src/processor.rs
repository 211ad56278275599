//! The application's side: [`RecordProcessor`], one instance per shard lease.
//!
//! Callbacks for one shard are called one at a time, in this order: `initialize`, then
//! `process_records` for each batch, then exactly one of `shard_ended` (the shard is closed
//! and fully read), `shutdown_requested` (the worker is shutting down gracefully; it still
//! holds the lease) or `lease_lost` (another worker holds the shard now; do not checkpoint).

use std::future::Future;

use crate::checkpoint::Checkpoint;
use crate::checkpointer::Checkpointer;
use crate::error::ProcessorError;
use crate::record::Record;

/// Given to [`RecordProcessor::initialize`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InitializeInput {
    /// The shard.
    pub shard_id: String,
    /// Where processing resumes: records after this are delivered.
    pub checkpoint: Checkpoint,
}

/// Given to [`RecordProcessor::process_records`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessRecordsInput {
    /// The shard.
    pub shard_id: String,
    /// User records in order (KPL aggregates unpacked).
    pub records: Vec<Record>,
    /// How far behind the tip of the shard this batch was read, if the source said.
    pub millis_behind_latest: Option<i64>,
}

/// A shard's record processor. Implement it with `async fn`s; the futures must be `Send`.
///
/// Returning an error from `process_records` makes the scheduler retry the batch per the
/// [`RetryPolicy`](crate::config::RetryPolicy) and then hand it to the dead-letter hook; an
/// error from `initialize` is retried with backoff for as long as the lease is held.
pub trait RecordProcessor: Send + 'static {
    /// Called once before the first batch.
    fn initialize(
        &mut self,
        input: InitializeInput,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send {
        let _ = input;
        async { Ok(()) }
    }

    /// Processes a batch. Checkpoint with `checkpointer` when the work is durable. The batch is
    /// borrowed: the scheduler keeps it to retry or dead-letter it if this fails.
    fn process_records(
        &mut self,
        input: &ProcessRecordsInput,
        checkpointer: &mut Checkpointer,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send;

    /// The lease is gone (taken by another worker, or not renewed in time). Checkpointing is
    /// no longer possible; release resources.
    fn lease_lost(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Every record of the shard was delivered; `checkpointer.checkpoint()` now writes
    /// `SHARD_END`, which lets the children start (the scheduler does it if this does not
    /// and [`auto_checkpoint_shard_end`](crate::Config::auto_checkpoint_shard_end) is set).
    fn shard_ended(
        &mut self,
        checkpointer: &mut Checkpointer,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send {
        async move { checkpointer.checkpoint().await.map_err(Into::into) }
    }

    /// The worker is shutting down and will release the lease when this returns:
    /// checkpoint what is done so the next owner resumes there.
    fn shutdown_requested(
        &mut self,
        checkpointer: &mut Checkpointer,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send {
        let _ = checkpointer;
        async { Ok(()) }
    }
}
