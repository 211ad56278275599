//! The enhanced fan-out source: SubscribeToShard (see the parent module), and consumer
//! registration.

use std::time::Duration;

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::{ConsumerStatus, StartingPosition, SubscribeToShardEventStream};
use aws_sdk_kinesis::Client;
use tokio::sync::mpsc;

use super::{Backoff, Batch, SourceCtx, Start};
use crate::error::{BoxError, SchedulerError};

fn starting_position(start: &Start) -> Result<StartingPosition, BoxError> {
    Ok(StartingPosition::builder()
        .r#type(start.kind())
        .set_sequence_number(start.sequence().map(str::to_owned))
        .set_timestamp(start.timestamp())
        .build()?)
}

/// Subscribes and resubscribes until the shard's end has been sent, or the receiver is gone.
pub(crate) async fn run(
    ctx: &SourceCtx,
    consumer_arn: &str,
    shard_id: &str,
    start: Start,
    tx: &mpsc::Sender<Batch>,
) {
    let mut position = start;
    let mut backoff = Backoff::new(ctx.config.max_backoff);
    loop {
        let pos = match starting_position(&position) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(shard = %shard_id, error = %e, "bad starting position");
                return;
            }
        };
        let mut events = match ctx
            .client
            .subscribe_to_shard()
            .consumer_arn(consumer_arn)
            .shard_id(shard_id)
            .starting_position(pos)
            .send()
            .await
        {
            Ok(out) => out.event_stream,
            Err(e) => {
                // ResourceInUse: the previous subscription is still live (Kinesis refuses a new
                // one for 5 s) or the consumer is not ACTIVE yet; routine, retry after backoff.
                match e.code() {
                    Some("ResourceInUseException" | "LimitExceededException") => {
                        tracing::debug!(shard = %shard_id, code = ?e.code(), "SubscribeToShard refused; retrying")
                    }
                    code => {
                        tracing::warn!(shard = %shard_id, ?code, error = %e, "SubscribeToShard failed")
                    }
                }
                backoff.wait().await;
                continue;
            }
        };
        loop {
            match events.recv().await {
                Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(ev))) => {
                    backoff.reset();
                    let continuation = ev.continuation_sequence_number;
                    let children = ev.child_shards.unwrap_or_default();
                    let end = continuation.is_empty() && !children.is_empty();
                    if !continuation.is_empty() {
                        position = Start::AfterSequence(continuation);
                    } else if let Some(last) = ev.records.last() {
                        position = Start::AfterSequence(last.sequence_number.clone());
                    }
                    let batch = Batch {
                        records: ev.records,
                        millis_behind_latest: Some(ev.millis_behind_latest),
                        child_shards: end.then_some(children),
                    };
                    if tx.send(batch).await.is_err() || end {
                        return;
                    }
                }
                Ok(Some(other)) => {
                    tracing::debug!(shard = %shard_id, event = ?other, "ignoring unknown event");
                }
                Ok(None) => {
                    // The routine end of a subscription (every 5 minutes).
                    tracing::debug!(shard = %shard_id, "subscription ended; resubscribing");
                    break;
                }
                Err(e) => {
                    tracing::debug!(shard = %shard_id, error = %e, "subscription failed; resubscribing");
                    backoff.wait().await;
                    break;
                }
            }
        }
    }
}

/// The stream's ARN (DescribeStreamSummary).
pub(crate) async fn stream_arn(client: &Client, stream: &str) -> Result<String, SchedulerError> {
    let out = client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .map_err(|e| SchedulerError::Kinesis {
            operation: "DescribeStreamSummary",
            source: e.into(),
        })?;
    out.stream_description_summary()
        .map(|s| s.stream_arn().to_owned())
        .ok_or_else(|| SchedulerError::Kinesis {
            operation: "DescribeStreamSummary",
            source: "no StreamDescriptionSummary".into(),
        })
}

/// Registers the enhanced fan-out consumer `name` of the stream `stream_arn` unless it
/// exists, and waits (at most 2 minutes) until it is ACTIVE; returns its ARN.
///
/// # Errors
/// A Kinesis call that failed for another reason than the consumer not existing yet, or
/// the consumer not becoming ACTIVE in time.
pub async fn ensure_consumer(
    client: &Client,
    stream_arn: &str,
    name: &str,
) -> Result<String, SchedulerError> {
    let err = |operation, e: BoxError| SchedulerError::Kinesis {
        operation,
        source: e,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut registered = false;
    loop {
        match client
            .describe_stream_consumer()
            .stream_arn(stream_arn)
            .consumer_name(name)
            .send()
            .await
        {
            Ok(out) => {
                let d = out.consumer_description().ok_or_else(|| {
                    err("DescribeStreamConsumer", "no ConsumerDescription".into())
                })?;
                match d.consumer_status() {
                    ConsumerStatus::Active => return Ok(d.consumer_arn().to_owned()),
                    ConsumerStatus::Deleting => {
                        tracing::info!(consumer = %name, "consumer is being deleted; waiting");
                        registered = false;
                    }
                    _ => {}
                }
            }
            Err(e) if e.code() == Some("ResourceNotFoundException") && !registered => {
                tracing::info!(consumer = %name, "registering stream consumer");
                match client
                    .register_stream_consumer()
                    .stream_arn(stream_arn)
                    .consumer_name(name)
                    .send()
                    .await
                {
                    Ok(_) => registered = true,
                    Err(e) if e.code() == Some("ResourceInUseException") => registered = true,
                    Err(e) => return Err(err("RegisterStreamConsumer", e.into())),
                }
            }
            Err(e) if e.code() == Some("ResourceNotFoundException") => {}
            Err(e) if e.code() == Some("LimitExceededException") => {}
            Err(e) => return Err(err("DescribeStreamConsumer", e.into())),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(err(
                "DescribeStreamConsumer",
                format!("consumer {name} not ACTIVE within 2 minutes").into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
