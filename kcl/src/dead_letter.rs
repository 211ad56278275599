//! Dead-letter hooks: where records go that the processor keeps failing on.
//!
//! After the [`RetryPolicy`](crate::config::RetryPolicy) is spent, the failing records are
//! handed to the scheduler's [`DeadLetterHook`]; once it returns `Ok` the shard checkpoints
//! past them and moves on, so one bad record cannot block its shard. If the hook itself fails
//! the shard retries it with backoff (nothing is dropped silently).

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;

use crate::error::{DeadLetterError, ProcessorError};
use crate::record::Record;

/// Receives records the processor could not handle.
#[async_trait]
pub trait DeadLetterHook: Debug + Send + Sync + 'static {
    /// Takes `records` of `shard_id` that failed with `error`.
    async fn dead_letter(
        &self,
        shard_id: &str,
        records: &[Record],
        error: &ProcessorError,
    ) -> Result<(), DeadLetterError>;
}

/// The default hook: logs each record's position at ERROR level and drops it.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogDeadLetter;

#[async_trait]
impl DeadLetterHook for LogDeadLetter {
    async fn dead_letter(
        &self,
        shard_id: &str,
        records: &[Record],
        error: &ProcessorError,
    ) -> Result<(), DeadLetterError> {
        for r in records {
            tracing::error!(
                shard = %shard_id,
                sequence = %r.sequence_number,
                sub_sequence = r.sub_sequence_number,
                error = %error,
                "record dropped after retries"
            );
        }
        Ok(())
    }
}

/// Writes failed records to another Kinesis stream, with their partition keys and data.
#[derive(Debug, Clone)]
pub struct KinesisDeadLetter {
    client: Client,
    stream_name: String,
}

impl KinesisDeadLetter {
    /// Dead-letters into `stream_name` through `client`.
    pub fn new(client: Client, stream_name: impl Into<String>) -> KinesisDeadLetter {
        KinesisDeadLetter {
            client,
            stream_name: stream_name.into(),
        }
    }
}

/// PutRecords limits: 500 entries, 5 MiB (data + partition keys).
const MAX_ENTRIES: usize = 500;
const MAX_BYTES: usize = 5 * 1024 * 1024;

#[async_trait]
impl DeadLetterHook for KinesisDeadLetter {
    async fn dead_letter(
        &self,
        _shard_id: &str,
        records: &[Record],
        _error: &ProcessorError,
    ) -> Result<(), DeadLetterError> {
        let mut start = 0;
        while start < records.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < records.len() && end - start < MAX_ENTRIES {
                let size = records[end].data.len() + records[end].partition_key.len();
                if end > start && bytes + size > MAX_BYTES {
                    break;
                }
                bytes += size;
                end += 1;
            }
            self.put(&records[start..end]).await?;
            start = end;
        }
        Ok(())
    }
}

impl KinesisDeadLetter {
    /// Puts one PutRecords-sized chunk, retrying the entries that fail (5 attempts).
    async fn put(&self, chunk: &[Record]) -> Result<(), DeadLetterError> {
        let mut pending: Vec<PutRecordsRequestEntry> = chunk
            .iter()
            .map(|r| {
                let pk = if r.partition_key.is_empty() {
                    "dead-letter".to_owned()
                } else {
                    r.partition_key.clone()
                };
                PutRecordsRequestEntry::builder()
                    .partition_key(pk)
                    .data(aws_smithy_types::Blob::new(r.data.to_vec()))
                    .build()
                    .map_err(|e| DeadLetterError::Write { source: e.into() })
            })
            .collect::<Result<_, _>>()?;
        let mut last_error: Option<crate::BoxError> = None;
        for attempt in 0..5u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            match self
                .client
                .put_records()
                .stream_name(&self.stream_name)
                .set_records(Some(pending.clone()))
                .send()
                .await
            {
                Ok(out) => {
                    let failed: Vec<PutRecordsRequestEntry> = out
                        .records()
                        .iter()
                        .zip(pending)
                        .filter(|(r, _)| r.error_code().is_some())
                        .map(|(_, e)| e)
                        .collect();
                    if failed.is_empty() {
                        return Ok(());
                    }
                    last_error = Some(format!("{} entries failed", failed.len()).into());
                    pending = failed;
                }
                Err(e) => last_error = Some(e.into()),
            }
        }
        Err(DeadLetterError::Write {
            source: last_error.unwrap_or_else(|| "PutRecords failed".into()),
        })
    }
}
