//! The polling source: GetShardIterator + GetRecords (see the parent module).

use std::time::Duration;

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use tokio::sync::mpsc;

use super::{Backoff, Batch, SourceCtx, Start};

/// Reads until the shard's end has been sent, or the receiver is gone.
pub(crate) async fn run(ctx: &SourceCtx, shard_id: &str, start: Start, tx: &mpsc::Sender<Batch>) {
    let cfg = &ctx.config;
    let mut position = start;
    let mut iterator: Option<String> = None;
    let mut backoff = Backoff::new(cfg.max_backoff);
    let idle_floor = cfg.min_poll_interval.max(Duration::from_millis(50));
    let mut idle = cfg.min_poll_interval;
    loop {
        let it = match iterator.take() {
            Some(it) => it,
            None => {
                match ctx
                    .client
                    .get_shard_iterator()
                    .stream_name(&ctx.stream_name)
                    .shard_id(shard_id)
                    .shard_iterator_type(position.kind())
                    .set_starting_sequence_number(position.sequence().map(str::to_owned))
                    .set_timestamp(position.timestamp())
                    .send()
                    .await
                {
                    Ok(out) => match out.shard_iterator {
                        Some(it) => {
                            backoff.reset();
                            it
                        }
                        None => {
                            tracing::warn!(shard = %shard_id, "GetShardIterator returned no iterator");
                            backoff.wait().await;
                            continue;
                        }
                    },
                    Err(e) => {
                        tracing::warn!(shard = %shard_id, code = ?e.code(), error = %e, "GetShardIterator failed");
                        backoff.wait().await;
                        continue;
                    }
                }
            }
        };
        match ctx
            .client
            .get_records()
            .shard_iterator(&it)
            .limit(cfg.max_records)
            .send()
            .await
        {
            Ok(out) => {
                backoff.reset();
                if let Some(last) = out.records.last() {
                    position = Start::AfterSequence(last.sequence_number.clone());
                }
                let empty = out.records.is_empty();
                let end = out.next_shard_iterator.is_none();
                let batch = Batch {
                    records: out.records,
                    millis_behind_latest: out.millis_behind_latest,
                    child_shards: end.then(|| out.child_shards.unwrap_or_default()),
                };
                if tx.send(batch).await.is_err() || end {
                    return;
                }
                iterator = out.next_shard_iterator;
                idle = if empty {
                    (idle * 2).clamp(idle_floor, cfg.idle_time)
                } else {
                    cfg.min_poll_interval
                };
                if !idle.is_zero() {
                    tokio::time::sleep(idle).await;
                }
            }
            Err(e) => match e.code() {
                Some("ExpiredIteratorException") => {
                    tracing::debug!(shard = %shard_id, "iterator expired; getting a new one");
                }
                Some("ProvisionedThroughputExceededException" | "LimitExceededException") => {
                    tracing::debug!(shard = %shard_id, "GetRecords throttled; backing off");
                    iterator = Some(it);
                    backoff.wait().await;
                }
                code => {
                    tracing::warn!(shard = %shard_id, ?code, error = %e, "GetRecords failed");
                    backoff.wait().await;
                }
            },
        }
    }
}
