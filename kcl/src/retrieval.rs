//! Record retrieval: where a shard consumer's batches come from.
//!
//! Two sources behind one interface, [`Retrieval`]: a task reads ahead into a bounded queue
//! (`prefetch_batches`), and the consumer takes batches from it. Polling and enhanced fan-out
//! differ only here; decoding, filtering and processing are the same code.
//!
//! - [`polling`]: GetShardIterator, then GetRecords in a loop. After a batch with records the
//!   next call follows after `min_poll_interval`; after an empty one the wait starts there and
//!   doubles up to `idle_time` (adaptive idle time). Throttling backs off exponentially; an
//!   expired iterator is replaced by one `AFTER_SEQUENCE_NUMBER` of the last record read.
//! - [`fanout`]: SubscribeToShard with the registered consumer. A subscription ends every
//!   5 minutes by design; the source resubscribes `AFTER_SEQUENCE_NUMBER` of the last
//!   continuation sequence number, logging only at debug level.
//!
//! A closed shard's end is a batch with `child_shards` set: GetRecords without a next
//! iterator, or an event with child shards and no continuation sequence number.

pub(crate) mod fanout;
pub(crate) mod polling;

use std::time::SystemTime;

use aws_sdk_kinesis::types::{ChildShard, Record as KinesisRecord, ShardIteratorType};
use aws_sdk_kinesis::Client;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::RetrievalConfig;

/// One read from the shard.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) records: Vec<KinesisRecord>,
    pub(crate) millis_behind_latest: Option<i64>,
    /// `Some` at the end of a closed shard.
    pub(crate) child_shards: Option<Vec<ChildShard>>,
}

/// Where to start reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    TrimHorizon,
    Latest,
    AtTimestamp(SystemTime),
    AtSequence(String),
    AfterSequence(String),
}

impl Start {
    pub(crate) fn kind(&self) -> ShardIteratorType {
        match self {
            Start::TrimHorizon => ShardIteratorType::TrimHorizon,
            Start::Latest => ShardIteratorType::Latest,
            Start::AtTimestamp(_) => ShardIteratorType::AtTimestamp,
            Start::AtSequence(_) => ShardIteratorType::AtSequenceNumber,
            Start::AfterSequence(_) => ShardIteratorType::AfterSequenceNumber,
        }
    }

    pub(crate) fn sequence(&self) -> Option<&str> {
        match self {
            Start::AtSequence(s) | Start::AfterSequence(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn timestamp(&self) -> Option<aws_smithy_types::DateTime> {
        match self {
            Start::AtTimestamp(t) => Some(aws_smithy_types::DateTime::from(*t)),
            _ => None,
        }
    }
}

/// What a source needs.
#[derive(Clone, Debug)]
pub(crate) struct SourceCtx {
    pub(crate) client: Client,
    pub(crate) stream_name: String,
    pub(crate) config: RetrievalConfig,
    /// The registered consumer, for fan-out.
    pub(crate) consumer_arn: Option<String>,
}

/// A running source; dropping it stops the read-ahead task.
#[derive(Debug)]
pub(crate) struct Retrieval {
    rx: mpsc::Receiver<Batch>,
    cancel: CancellationToken,
}

impl Retrieval {
    /// Starts reading `shard_id` from `start`.
    pub(crate) fn start(ctx: &SourceCtx, shard_id: &str, start: Start) -> Retrieval {
        let (tx, rx) = mpsc::channel(ctx.config.prefetch_batches);
        let cancel = CancellationToken::new();
        let task_cancel = cancel.clone();
        let ctx = ctx.clone();
        let shard_id = shard_id.to_owned();
        tokio::spawn(async move {
            let run = async {
                match &ctx.consumer_arn {
                    Some(arn) => fanout::run(&ctx, arn, &shard_id, start, &tx).await,
                    None => polling::run(&ctx, &shard_id, start, &tx).await,
                }
            };
            tokio::select! {
                _ = task_cancel.cancelled() => {}
                _ = run => {}
            }
        });
        Retrieval { rx, cancel }
    }

    /// The next batch; `None` once the source has delivered the shard's end.
    pub(crate) async fn next(&mut self) -> Option<Batch> {
        self.rx.recv().await
    }
}

impl Drop for Retrieval {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Exponential backoff state for throttling and errors.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: std::time::Duration,
    max: std::time::Duration,
}

impl Backoff {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(100);

    pub(crate) fn new(max: std::time::Duration) -> Backoff {
        Backoff {
            next: Self::FIRST.min(max),
            max,
        }
    }

    /// Waits the current backoff (with ±25 % jitter) and doubles it.
    pub(crate) async fn wait(&mut self) {
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        tokio::time::sleep(self.next.mul_f64(jitter)).await;
        self.next = (self.next * 2).min(self.max);
    }

    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST.min(self.max);
    }
}
