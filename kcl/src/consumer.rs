//! The shard consumer: one task per held lease, driving its record processor.
//!
//! ```text
//! wait for parents ─► initialize ─► [read batch ─► de-aggregate ─► process (retry, dead-letter)]*
//!                                      │
//!                                      ├─ shard end: child leases, childShardIds, shard_ended, SHARD_END
//!                                      ├─ shutdown requested: shutdown_requested, release
//!                                      └─ lease lost: lease_lost
//! ```
//!
//! The lease itself (renewals, checkpoints, release) belongs to its [holder](crate::holder);
//! this task only asks it.

use std::sync::Arc;
use std::time::SystemTime;

use aws_sdk_kinesis::types::ChildShard;
use riffle_core::{HashKey, HashKeyRange};
use tokio::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Checkpoint;
use crate::checkpointer::Checkpointer;
use crate::config::Config;
use crate::dead_letter::DeadLetterHook;
use crate::error::ProcessorError;
use crate::holder::LeaseHandle;
use crate::lease::{Lease, LeaseStore};
use crate::metrics::Metrics;
use crate::processor::{InitializeInput, ProcessRecordsInput, RecordProcessor};
use crate::record::{deaggregate, DeaggregateStats, Record};
use crate::retrieval::{Batch, Retrieval, SourceCtx, Start};
use crate::shard_sync::may_start;

/// What every shard consumer of a scheduler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) store: Arc<dyn LeaseStore>,
    pub(crate) source: SourceCtx,
    pub(crate) metrics: Metrics,
    pub(crate) dead_letter: Arc<dyn DeadLetterHook>,
}

/// How a shard consumer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    ShardEnd,
    Shutdown,
    LeaseLost,
}

/// Whether a step finished or the lease went away meanwhile.
enum Step<T> {
    Done(T),
    Lost,
}

pub(crate) struct ShardConsumer<P> {
    shared: Arc<Shared>,
    lease: Lease,
    handle: LeaseHandle,
    shutdown: CancellationToken,
    processor: P,
}

impl<P: RecordProcessor> ShardConsumer<P> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        lease: Lease,
        handle: LeaseHandle,
        shutdown: CancellationToken,
        processor: P,
    ) -> Self {
        ShardConsumer {
            shared,
            lease,
            handle,
            shutdown,
            processor,
        }
    }

    pub(crate) async fn run(mut self) -> Ending {
        let ending = self.run_inner().await;
        // Releases the lease unless it is lost; ends the holder either way.
        self.handle.release().await;
        tracing::debug!(shard = %self.lease.key, ?ending, "shard consumer ended");
        ending
    }

    async fn run_inner(&mut self) -> Ending {
        let shard = self.lease.key.clone();
        if self.lease.checkpoint.is_shard_end() {
            return Ending::ShardEnd;
        }
        // 1. Parents first.
        match self.wait_for_parents().await {
            Some(e) => return e,
            None => tracing::debug!(shard = %shard, "parents done"),
        }
        // 2. Initialize, retried while the lease is held.
        let mut attempt = 1;
        loop {
            let input = InitializeInput {
                shard_id: shard.clone(),
                checkpoint: self.lease.checkpoint.clone(),
            };
            match self.processor.initialize(input).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(shard = %shard, error = %e, attempt, "initialize failed");
                    attempt += 1;
                    let wait = self.shared.config.retry.backoff(attempt);
                    if let Some(e) = self.pause(wait).await {
                        if e == Ending::LeaseLost {
                            self.processor.lease_lost().await;
                        }
                        return e;
                    }
                }
            }
        }
        // 3. Read and process.
        let start = match &self.lease.checkpoint {
            Checkpoint::TrimHorizon => Start::TrimHorizon,
            Checkpoint::Latest => Start::Latest,
            Checkpoint::AtTimestamp => Start::AtTimestamp(
                self.shared
                    .config
                    .initial_timestamp
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            ),
            Checkpoint::At(e) => Start::AtSequence(e.sequence.to_string()),
            Checkpoint::ShardEnd => return Ending::ShardEnd,
        };
        let mut source = Retrieval::start(&self.shared.source, &shard, start);
        let mut checkpointer = Checkpointer::new(
            shard.clone(),
            self.handle.clone(),
            self.lease.checkpoint.clone(),
        );
        let mut after = self.lease.checkpoint.position().cloned();
        loop {
            let batch = tokio::select! {
                biased;
                _ = self.handle.lost.cancelled() => {
                    self.processor.lease_lost().await;
                    return Ending::LeaseLost;
                }
                _ = self.shutdown.cancelled() => {
                    self.shutdown_requested(&mut checkpointer).await;
                    return Ending::Shutdown;
                }
                b = source.next() => b,
            };
            let Some(batch) = batch else {
                // The source stopped without a shard end (it cannot, but be safe): restart it.
                let start = after
                    .as_ref()
                    .map(|e| Start::AtSequence(e.sequence.to_string()))
                    .unwrap_or(Start::TrimHorizon);
                source = Retrieval::start(&self.shared.source, &shard, start);
                continue;
            };
            let Batch {
                records,
                millis_behind_latest,
                child_shards,
            } = batch;
            let mut stats = DeaggregateStats::default();
            let records = deaggregate(
                records,
                self.lease.hash_range.as_ref(),
                after.as_ref(),
                &mut stats,
            );
            let label = Metrics::shard(&shard);
            if stats.dropped_aggregates > 0 {
                self.shared
                    .metrics
                    .aggregates_dropped
                    .get_or_create(&label)
                    .inc_by(stats.dropped_aggregates);
            }
            if let Some(m) = millis_behind_latest {
                self.shared
                    .metrics
                    .millis_behind_latest
                    .get_or_create(&label)
                    .set(m);
            }
            if let Some(last) = records.last() {
                after = Some(last.extended_sequence_number());
            }
            if !records.is_empty() || self.shared.config.call_process_records_even_for_empty_list {
                let input = ProcessRecordsInput {
                    shard_id: shard.clone(),
                    records,
                    millis_behind_latest,
                };
                if let Step::Lost = self.deliver(input, &mut checkpointer).await {
                    self.processor.lease_lost().await;
                    return Ending::LeaseLost;
                }
            }
            if let Some(children) = child_shards {
                return self.shard_end(children, &mut checkpointer).await;
            }
        }
    }

    /// Sleeps, unless the lease is lost or shutdown is requested first. (`&mut self` here and
    /// below: a `&self` held across an await would need the processor to be `Sync`.)
    async fn pause(&mut self, d: Duration) -> Option<Ending> {
        tokio::select! {
            _ = self.handle.lost.cancelled() => Some(Ending::LeaseLost),
            _ = self.shutdown.cancelled() => Some(Ending::Shutdown),
            _ = tokio::time::sleep(d) => None,
        }
    }

    async fn wait_for_parents(&mut self) -> Option<Ending> {
        if self.lease.parent_shard_ids.is_empty() {
            return None;
        }
        loop {
            let mut parents = Vec::new();
            let mut ok = true;
            for p in &self.lease.parent_shard_ids {
                match self.shared.store.get(p).await {
                    Ok(Some(l)) => parents.push(l),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(shard = %self.lease.key, parent = %p, error = %e, "reading parent lease");
                        ok = false;
                    }
                }
            }
            if ok && may_start(&self.lease, |k| parents.iter().find(|l| l.key == k)) {
                return None;
            }
            if let Some(e) = self.pause(self.shared.config.parent_poll_interval).await {
                return Some(e);
            }
        }
    }

    /// Hands a batch to the processor, per the retry policy, then to the dead-letter hook.
    async fn deliver(
        &mut self,
        input: ProcessRecordsInput,
        checkpointer: &mut Checkpointer,
    ) -> Step<()> {
        let label = Metrics::shard(&input.shard_id);
        let policy = self.shared.config.retry.clone();
        if let Some(last) = input.records.last() {
            checkpointer.delivered(last.extended_sequence_number());
        }
        let mut error: Option<ProcessorError> = None;
        for attempt in 1..=policy.max_attempts {
            if attempt > 1 {
                self.shared
                    .metrics
                    .process_retries
                    .get_or_create(&label)
                    .inc();
                if self.pause_unless_lost(policy.backoff(attempt)).await {
                    return Step::Lost;
                }
            }
            let started = std::time::Instant::now();
            let r = self.processor.process_records(&input, checkpointer).await;
            self.shared
                .metrics
                .process_records_seconds
                .observe(started.elapsed().as_secs_f64());
            match r {
                Ok(()) => {
                    self.count(&label, &input.records);
                    return Step::Done(());
                }
                Err(e) => {
                    tracing::warn!(shard = %input.shard_id, attempt, error = %e, "process_records failed");
                    error = Some(e);
                }
            }
            if self.handle.lost.is_cancelled() {
                return Step::Lost;
            }
        }
        let mut error = error.unwrap_or_else(|| "process_records failed".into());
        // Find the records that fail on their own.
        let failed: Vec<Record> = if policy.isolate_records && input.records.len() > 1 {
            let mut failed = Vec::new();
            for r in &input.records {
                if self.handle.lost.is_cancelled() {
                    return Step::Lost;
                }
                checkpointer.delivered(r.extended_sequence_number());
                let single = ProcessRecordsInput {
                    shard_id: input.shard_id.clone(),
                    records: vec![r.clone()],
                    millis_behind_latest: input.millis_behind_latest,
                };
                match self.processor.process_records(&single, checkpointer).await {
                    Ok(()) => self.count(&label, &single.records),
                    Err(e) => {
                        error = e;
                        failed.push(r.clone());
                    }
                }
            }
            failed
        } else {
            input.records.clone()
        };
        if !failed.is_empty() {
            let mut backoff = crate::retrieval::Backoff::new(policy.max_backoff);
            loop {
                match self
                    .shared
                    .dead_letter
                    .dead_letter(&input.shard_id, &failed, &error)
                    .await
                {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(shard = %input.shard_id, error = %e, "dead-letter hook failed; retrying");
                        if self.handle.lost.is_cancelled() {
                            return Step::Lost;
                        }
                        backoff.wait().await;
                    }
                }
            }
            self.shared
                .metrics
                .dead_lettered_records
                .get_or_create(&label)
                .inc_by(failed.len() as u64);
            tracing::warn!(shard = %input.shard_id, records = failed.len(), "records dead-lettered");
        }
        // Checkpoint past the batch, so a restart does not replay the poison.
        if let Some(last) = input.records.last() {
            checkpointer.delivered(last.extended_sequence_number());
        }
        if let Err(e) = checkpointer.checkpoint().await {
            tracing::warn!(shard = %input.shard_id, error = %e, "checkpoint after dead-letter failed");
            if self.handle.lost.is_cancelled() {
                return Step::Lost;
            }
        }
        Step::Done(())
    }

    /// Sleeps `d`; true if the lease was lost first.
    async fn pause_unless_lost(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = self.handle.lost.cancelled() => true,
            _ = tokio::time::sleep(d) => false,
        }
    }

    fn count(&mut self, label: &crate::metrics::ShardLabel, records: &[Record]) {
        let m = &self.shared.metrics;
        m.records_processed
            .get_or_create(label)
            .inc_by(records.len() as u64);
        m.bytes_processed
            .get_or_create(label)
            .inc_by(records.iter().map(|r| r.data.len() as u64).sum());
    }

    async fn shutdown_requested(&mut self, checkpointer: &mut Checkpointer) {
        let timeout = self.shared.config.graceful_shutdown_timeout;
        match tokio::time::timeout(timeout, self.processor.shutdown_requested(checkpointer)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(shard = %self.lease.key, error = %e, "shutdown_requested failed")
            }
            Err(_) => {
                tracing::warn!(shard = %self.lease.key, ?timeout, "shutdown_requested timed out")
            }
        }
    }

    /// The shard is closed and fully read: child leases, childShardIds, shard_ended, SHARD_END.
    async fn shard_end(
        &mut self,
        children: Vec<ChildShard>,
        checkpointer: &mut Checkpointer,
    ) -> Ending {
        let shard = self.lease.key.clone();
        let ids: Vec<String> = children.iter().map(|c| c.shard_id().to_owned()).collect();
        tracing::info!(shard = %shard, children = ?ids, "shard ended");
        let mut backoff = crate::retrieval::Backoff::new(self.shared.config.retrieval.max_backoff);
        for child in &children {
            let range = child.hash_key_range().and_then(|r| {
                let s: HashKey = r.starting_hash_key().parse().ok()?;
                let e: HashKey = r.ending_hash_key().parse().ok()?;
                HashKeyRange::new(s, e)
            });
            let lease = Lease::new(
                child.shard_id(),
                child.parent_shards().to_vec(),
                range,
                Checkpoint::TrimHorizon,
            );
            loop {
                match self.shared.store.create_if_not_exists(&lease).await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(shard = %shard, child = %lease.key, error = %e, "creating child lease");
                        if self.handle.lost.is_cancelled() {
                            self.processor.lease_lost().await;
                            return Ending::LeaseLost;
                        }
                        backoff.wait().await;
                    }
                }
            }
        }
        if let Err(e) = self.shared.store.set_child_shards(&shard, &ids).await {
            tracing::warn!(shard = %shard, error = %e, "writing childShardIds");
        }
        checkpointer.permit_shard_end();
        if let Err(e) = self.processor.shard_ended(checkpointer).await {
            tracing::warn!(shard = %shard, error = %e, "shard_ended failed");
        }
        if !checkpointer.last_checkpoint().is_shard_end() {
            if self.shared.config.auto_checkpoint_shard_end {
                loop {
                    match checkpointer.checkpoint().await {
                        Ok(()) => break,
                        Err(crate::CheckpointError::LeaseLost { .. }) => {
                            self.processor.lease_lost().await;
                            return Ending::LeaseLost;
                        }
                        Err(e) => {
                            tracing::warn!(shard = %shard, error = %e, "SHARD_END checkpoint failed; retrying");
                            backoff.wait().await;
                        }
                    }
                }
            } else {
                tracing::error!(
                    shard = %shard,
                    "shard_ended returned without checkpointing SHARD_END; its children wait"
                );
            }
        }
        Ending::ShardEnd
    }
}
