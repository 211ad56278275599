//! [`Checkpointer`]: records how far a shard is processed.

use crate::checkpoint::{Checkpoint, ExtendedSequenceNumber, SequenceNumber};
use crate::error::CheckpointError;
use crate::holder::LeaseHandle;
use crate::record::Record;

/// Writes checkpoints for one shard lease, through the task that holds the lease.
///
/// A checkpoint means "everything up to and including this user record is processed". It must
/// not go backwards and must not pass the last record delivered; `SHARD_END` is permitted only
/// once [`RecordProcessor::shard_ended`](crate::RecordProcessor::shard_ended) is called. A
/// checkpoint is refused with [`CheckpointError::LeaseLost`] once the lease is lost, or if this
/// checkpointer belongs to an earlier acquisition of the lease (concurrency token).
#[derive(Debug)]
pub struct Checkpointer {
    shard_id: String,
    handle: LeaseHandle,
    last: Checkpoint,
    largest_delivered: Option<ExtendedSequenceNumber>,
    shard_end_permitted: bool,
}

impl Checkpointer {
    pub(crate) fn new(shard_id: String, handle: LeaseHandle, last: Checkpoint) -> Checkpointer {
        Checkpointer {
            shard_id,
            handle,
            last,
            largest_delivered: None,
            shard_end_permitted: false,
        }
    }

    /// The shard.
    pub fn shard_id(&self) -> &str {
        &self.shard_id
    }

    /// The last checkpoint written (or read at start).
    pub fn last_checkpoint(&self) -> &Checkpoint {
        &self.last
    }

    /// The last user record delivered to the processor, if any.
    pub fn largest_delivered(&self) -> Option<&ExtendedSequenceNumber> {
        self.largest_delivered.as_ref()
    }

    pub(crate) fn delivered(&mut self, upto: ExtendedSequenceNumber) {
        self.largest_delivered = Some(upto);
    }

    pub(crate) fn permit_shard_end(&mut self) {
        self.shard_end_permitted = true;
    }

    /// Checkpoints as far as permitted: `SHARD_END` in `shard_ended`, else the last delivered
    /// record. Does nothing if that is already the checkpoint.
    pub async fn checkpoint(&mut self) -> Result<(), CheckpointError> {
        let target = if self.shard_end_permitted {
            Checkpoint::ShardEnd
        } else {
            match &self.largest_delivered {
                Some(e) => Checkpoint::At(e.clone()),
                None => return Ok(()),
            }
        };
        if target == self.last {
            return Ok(());
        }
        self.write(target).await
    }

    /// Checkpoints at this user record.
    pub async fn checkpoint_record(&mut self, record: &Record) -> Result<(), CheckpointError> {
        self.checkpoint_at(&record.sequence_number, record.sub_sequence_number)
            .await
    }

    /// Checkpoints at (`sequence`, `sub_sequence`), which must lie between the last checkpoint
    /// and the last delivered record.
    pub async fn checkpoint_at(
        &mut self,
        sequence: &SequenceNumber,
        sub_sequence: u64,
    ) -> Result<(), CheckpointError> {
        let requested = ExtendedSequenceNumber {
            sequence: sequence.clone(),
            sub_sequence,
        };
        let out_of_range = || CheckpointError::OutOfRange {
            requested: requested.to_string(),
            lowest: self.last.to_string(),
            highest: self
                .largest_delivered
                .as_ref()
                .map_or_else(|| "nothing delivered".to_owned(), ToString::to_string),
        };
        let above_last = match &self.last {
            Checkpoint::At(last) => requested >= *last,
            Checkpoint::ShardEnd => false,
            _ => true,
        };
        let below_delivered = self
            .largest_delivered
            .as_ref()
            .is_some_and(|d| requested <= *d);
        if !above_last || !below_delivered {
            return Err(out_of_range());
        }
        self.write(Checkpoint::At(requested)).await
    }

    async fn write(&mut self, checkpoint: Checkpoint) -> Result<(), CheckpointError> {
        self.handle
            .checkpoint(self.handle.token, checkpoint.clone(), &self.shard_id)
            .await?;
        self.last = checkpoint;
        Ok(())
    }
}
