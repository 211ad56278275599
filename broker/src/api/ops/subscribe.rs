//! SubscribeToShard: push records to a registered consumer over an event stream.
//!
//! The response is `application/vnd.amazon.eventstream`: first an `initial-response` event
//! (boto3 and the Java SDK wait for it), then `SubscribeToShardEvent`s. Records are pushed as
//! soon as they are committed — the subscription waits on the shard log's commit watch, not
//! on a timer; an idle subscription sends an empty event every `subscription_heartbeat`.
//! A subscription lasts `subscription_lifetime` (5 minutes, as on AWS). A second
//! subscription of the same consumer to the same shard within 5 seconds is refused with
//! ResourceInUseException; after that it takes over and the old one ends. At the end of a
//! closed shard the last event carries `ChildShards` and no continuation sequence number.
//! Each subscription has its own read budget (`limits.subscriber_bytes_per_second`),
//! independent of polling consumers and of other registered consumers.

use std::sync::Arc;
use std::time::Duration;

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::error::ApiError;
use crate::api::ops::consumers::{consumer_arn, find_consumer};
use crate::api::ops::records::{
    child_shards, millis_behind, parse_shard_id, start_position, ChildShardOut, RecordOut,
};
use crate::api::validate::Validator;
use crate::broker::{Broker, Owner, Stream};
use crate::error::Error;
use crate::limits::TokenBucket;
use crate::metrics::ConsumerMetrics;
use crate::shard::Shard;

/// A subscription may not be replaced sooner than this after it started.
pub const TAKEOVER_AFTER: Duration = Duration::from_secs(5);

/// StartingPosition.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartingPosition {
    #[serde(rename = "Type")]
    kind: Option<String>,
    sequence_number: Option<String>,
    timestamp: Option<f64>,
}

/// SubscribeToShard input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubscribeInput {
    #[serde(rename = "ConsumerARN")]
    consumer_arn: Option<String>,
    shard_id: Option<String>,
    starting_position: Option<StartingPosition>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Event {
    records: Vec<RecordOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    continuation_sequence_number: Option<String>,
    millis_behind_latest: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    child_shards: Option<Vec<ChildShardOut>>,
}

fn string_header(name: &'static str, value: &'static str) -> Header {
    Header::new(name, HeaderValue::String(value.into()))
}

fn frame(msg: &Message) -> Bytes {
    let mut buf = Vec::new();
    write_message_to(msg, &mut buf).expect("event-stream frames of bounded size encode");
    Bytes::from(buf)
}

/// An `event` frame with a JSON payload.
pub fn event_frame(event_type: &'static str, payload: Vec<u8>) -> Bytes {
    frame(
        &Message::new(payload)
            .add_header(string_header(":message-type", "event"))
            .add_header(string_header(":event-type", event_type))
            .add_header(string_header(":content-type", "application/json")),
    )
}

/// An `exception` frame, as the SDKs surface modelled errors mid-stream.
pub fn exception_frame(exception_type: &'static str, message: &str) -> Bytes {
    let payload = serde_json::to_vec(&serde_json::json!({ "message": message })).expect("json");
    frame(
        &Message::new(payload)
            .add_header(string_header(":message-type", "exception"))
            .add_header(string_header(":exception-type", exception_type))
            .add_header(string_header(":content-type", "application/json")),
    )
}

const POSITION_TYPES: &[&str] = &[
    "AT_SEQUENCE_NUMBER",
    "AFTER_SEQUENCE_NUMBER",
    "TRIM_HORIZON",
    "LATEST",
    "AT_TIMESTAMP",
];

/// Starts a subscription; the receiver yields the response body's frames.
pub async fn subscribe(
    broker: Arc<Broker>,
    input: SubscribeInput,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let mut v = Validator::new();
    v.string(
        "consumerARN",
        input.consumer_arn.as_deref(),
        true,
        None,
        1,
        2048,
    );
    v.name("shardId", input.shard_id.as_deref(), true);
    v.required("startingPosition", input.starting_position.as_ref());
    if let Some(p) = &input.starting_position {
        v.one_of(
            "startingPosition.type",
            p.kind.as_deref(),
            true,
            POSITION_TYPES,
        );
    }
    v.finish()?;
    let arn = input.consumer_arn.unwrap_or_default();
    let (stream, consumer) = find_consumer(&broker, Some(&arn), None, None)?;
    if consumer.status != "ACTIVE" {
        return Err(Error::ResourceInUse(format!(
            "Consumer {arn} under account {} is not ACTIVE, instead in state {}.",
            broker.config.account_id, consumer.status
        ))
        .into());
    }
    let raw = input.shard_id.unwrap_or_default();
    let shard_id = parse_shard_id(&raw).ok_or_else(|| Error::ShardNotFound {
        stream: stream.name.clone(),
        shard: raw.clone(),
    })?;
    let shard = {
        let map = stream.shards.read().await;
        match broker.locate(&map, shard_id) {
            Some(Owner::Local(s)) => s,
            None => {
                return Err(Error::ShardDoesNotExist {
                    stream: stream.name.clone(),
                    shard: shard_id.to_string(),
                }
                .into())
            }
        }
    };
    let start = input.starting_position.expect("validated");
    let kind = start.kind.unwrap_or_default();
    let position = start_position(
        &broker,
        &stream,
        &shard,
        &kind,
        start.sequence_number,
        start.timestamp,
        "SubscribeToShard",
    )
    .await?;
    let metrics = broker
        .metrics
        .consumer(&stream.name, &consumer.name, &shard_id.to_string());
    let full_arn = consumer_arn(&stream, &consumer);
    let Some(sub) = broker.claim_subscription(&full_arn, shard_id, TAKEOVER_AFTER) else {
        metrics.rate_exceeded.inc();
        return Err(Error::ResourceInUse(format!(
            "Another active subscription exists for consumer {full_arn} on shard {shard_id}. Retry after {} seconds.",
            TAKEOVER_AFTER.as_secs()
        ))
        .into());
    };
    metrics.subscriptions.inc();
    let (tx, rx) = mpsc::channel(2);
    let task = Subscription {
        broker: broker.clone(),
        stream,
        shard,
        position,
        cancel: sub.stop,
        tx,
        metrics,
    };
    tokio::spawn(async move {
        task.run().await;
        broker.release_subscription(&full_arn, shard_id, sub.id);
    });
    Ok(rx)
}

struct Subscription {
    broker: Arc<Broker>,
    stream: Arc<Stream>,
    shard: Arc<Shard>,
    position: u64,
    cancel: CancellationToken,
    tx: mpsc::Sender<Bytes>,
    metrics: ConsumerMetrics,
}

impl Subscription {
    async fn send(&self, frame: Bytes) -> bool {
        tokio::select! {
            r = self.tx.send(frame) => r.is_ok(),
            _ = self.cancel.cancelled() => false,
        }
    }

    async fn run(mut self) {
        if !self
            .send(event_frame("initial-response", b"{}".to_vec()))
            .await
        {
            return;
        }
        let cfg = &self.broker.config.streams;
        let deadline = Instant::now() + cfg.subscription_lifetime;
        let heartbeat = cfg.subscription_heartbeat;
        let mut budget = TokenBucket::new(self.stream.limits.subscriber_bytes_per_second);
        let mut commits = self.shard.log.subscribe();
        let mut last_event = Instant::now();
        let shard_id = self.shard.id;
        loop {
            if self.cancel.is_cancelled()
                || Instant::now() >= deadline
                || self.broker.cancel.is_cancelled()
            {
                return;
            }
            if self
                .broker
                .stream(&self.stream.name)
                .map_or(true, |s| !Arc::ptr_eq(&s, &self.stream))
            {
                let msg = format!(
                    "Stream {} under account {} not found.",
                    self.stream.name, self.broker.config.account_id
                );
                self.send(exception_frame("ResourceNotFoundException", &msg))
                    .await;
                return;
            }
            while !budget.positive() {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = self.cancel.cancelled() => return,
                }
            }
            commits.borrow_and_update();
            let now = self.broker.clock.now_ms();
            let min_ts = self.stream.expiry_cutoff_ms(now);
            let log = self.shard.log.clone();
            let from = self.position;
            let read = match tokio::task::spawn_blocking(move || {
                log.read(from, 10_000, 2 * 1024 * 1024, min_ts)
            })
            .await
            {
                Ok(Ok(r)) => r,
                // A missing or wrong encryption key: the KMS exception GetRecords would get.
                Ok(Err(e))
                    if e.get_ref()
                        .is_some_and(|e| e.is::<crate::storage::SealError>()) =>
                {
                    let r =
                        ApiError::from(Error::Storage(e)).render(&self.broker.config.account_id);
                    self.send(exception_frame(r.kind, r.message.as_deref().unwrap_or("")))
                        .await;
                    return;
                }
                _ => {
                    self.send(exception_frame(
                        "InternalFailureException",
                        "Internal service failure.",
                    ))
                    .await;
                    return;
                }
            };
            let closed_end = self.shard.closed().map(|(end, _)| end);
            let at_end = closed_end.is_some_and(|end| read.next_position >= end);
            if !read.records.is_empty() || at_end || last_event.elapsed() >= heartbeat {
                let bytes: usize = read.records.iter().map(|r| r.data.len()).sum();
                budget.take(bytes as f64);
                let end = self.shard.log.end_position();
                let behind = millis_behind(&read, end, now);
                let pushed_at = self.broker.clock.now_ms();
                for r in &read.records {
                    self.metrics
                        .propagation
                        .observe((pushed_at - r.timestamp_ms).max(0) as f64 / 1000.0);
                }
                let count = read.records.len() as u64;
                let event = Event {
                    records: read
                        .records
                        .into_iter()
                        .map(|r| RecordOut::new(&self.shard, r))
                        .collect(),
                    continuation_sequence_number: (!at_end)
                        .then(|| self.shard.sequence_before(read.next_position).to_string()),
                    millis_behind_latest: behind,
                    child_shards: if at_end {
                        Some(child_shards(&*self.stream.shards.read().await, shard_id))
                    } else {
                        None
                    },
                };
                let payload = serde_json::to_vec(&event).expect("events serialize");
                if !self
                    .send(event_frame("SubscribeToShardEvent", payload))
                    .await
                {
                    return;
                }
                self.metrics.events.inc();
                self.metrics.records.inc_by(count);
                self.metrics.bytes.inc_by(bytes as u64);
                self.position = read.next_position;
                last_event = Instant::now();
                if at_end {
                    return;
                }
                if count > 0 {
                    continue;
                }
            }
            let wait = heartbeat.saturating_sub(last_event.elapsed());
            tokio::select! {
                _ = commits.changed() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = tokio::time::sleep_until(deadline) => return,
                _ = self.cancel.cancelled() => return,
                _ = self.tx.closed() => return,
            }
        }
    }
}

impl crate::api::Targeted for SubscribeInput {
    fn target(&self) -> crate::api::Target<'_> {
        crate::api::Target::Consumer {
            arn: self.consumer_arn.as_deref(),
            stream_arn: None,
            name: None,
        }
    }
}
