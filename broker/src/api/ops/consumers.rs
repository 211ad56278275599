//! Registered (enhanced fan-out) consumers: Register, Describe, List, Deregister.
//!
//! A consumer is registered on a stream, has an ARN of the form
//! `<stream ARN>/consumer/<name>:<creation epoch seconds>`, and moves CREATING → ACTIVE, and
//! DELETING → gone, after the stream status delay.

use std::sync::Arc;

use riffle_core::ConsumerArn;
use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;
use crate::api::ops::streams::validate_tags;
use crate::api::stream_ref;
use crate::api::validate::Validator;
use crate::api::wire::epoch_seconds;
use crate::broker::{Broker, ConsumerRecord, Stream};
use crate::error::Error;

/// The ARN of consumer `c` of `stream`.
pub fn consumer_arn(stream: &Stream, c: &ConsumerRecord) -> String {
    format!("{}/consumer/{}:{}", stream.arn, c.name, c.created_ms / 1000)
}

fn check_consumer_arn(v: &mut Validator, arn: Option<&str>) {
    v.string(
        "consumerARN",
        arn,
        false,
        Some((
            "^(arn):aws.*:kinesis:.*:\\d{12}:.*stream\\/[a-zA-Z0-9_.-]+\\/consumer\\/[a-zA-Z0-9_.-]+:[0-9]+",
            |s| ConsumerArn::parse(s).is_some(),
        )),
        1,
        2048,
    );
}

/// The consumer a request names, by ARN or by stream ARN and name.
pub fn find_consumer(
    broker: &Broker,
    consumer_arn_in: Option<&str>,
    stream_arn: Option<&str>,
    name: Option<&str>,
) -> Result<(Arc<Stream>, ConsumerRecord), ApiError> {
    let (stream, name, created) = match consumer_arn_in {
        Some(arn) => {
            let parsed = ConsumerArn::parse(arn).ok_or_else(|| Error::ConsumerNotFound {
                consumer: arn.to_owned(),
            })?;
            let stream =
                stream_ref(broker, None, Some(&parsed.stream.to_string())).map_err(|_| {
                    Error::ConsumerNotFound {
                        consumer: arn.to_owned(),
                    }
                })?;
            (stream, parsed.consumer, Some(parsed.created))
        }
        None => {
            let (Some(s), Some(n)) = (stream_arn, name) else {
                return Err(ApiError::invalid_argument(
                    "Either ConsumerARN or both StreamARN and ConsumerName must be provided.",
                ));
            };
            (stream_ref(broker, None, Some(s))?, n.to_owned(), None)
        }
    };
    let found = stream
        .settings
        .lock()
        .consumers
        .iter()
        .find(|c| c.name == name && created.is_none_or(|t| (c.created_ms / 1000) as u64 == t))
        .cloned();
    match found {
        Some(c) => Ok((stream, c)),
        None => Err(Error::ConsumerNotFound {
            consumer: consumer_arn_in
                .map_or_else(|| format!("{name} of stream {}", stream.arn), str::to_owned),
        }
        .into()),
    }
}

/// A consumer on the wire.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConsumerOut {
    consumer_name: String,
    #[serde(rename = "ConsumerARN")]
    consumer_arn: String,
    consumer_status: String,
    consumer_creation_timestamp: f64,
    #[serde(rename = "StreamARN", skip_serializing_if = "Option::is_none")]
    stream_arn: Option<String>,
}

fn out(stream: &Stream, c: &ConsumerRecord, with_stream: bool) -> ConsumerOut {
    ConsumerOut {
        consumer_name: c.name.clone(),
        consumer_arn: consumer_arn(stream, c),
        consumer_status: c.status.clone(),
        consumer_creation_timestamp: epoch_seconds(c.created_ms),
        stream_arn: with_stream.then(|| stream.arn.clone()),
    }
}

/// RegisterStreamConsumer input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterInput {
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    consumer_name: Option<String>,
    tags: Option<crate::api::wire::TagMap>,
}

/// RegisterStreamConsumer output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterOutput {
    consumer: ConsumerOut,
}

/// RegisterStreamConsumer.
pub async fn register(
    broker: Arc<Broker>,
    input: RegisterInput,
) -> Result<RegisterOutput, ApiError> {
    let mut v = Validator::new();
    v.stream_arn("streamARN", input.stream_arn.as_deref(), true);
    v.name("consumerName", input.consumer_name.as_deref(), true);
    validate_tags(&mut v, input.tags.as_ref(), false, 50);
    v.finish()?;
    let stream = stream_ref(&broker, None, input.stream_arn.as_deref())?;
    let name = input.consumer_name.unwrap_or_default();
    let _control = broker.control().await;
    let record = {
        let mut s = stream.settings.lock();
        if s.consumers.iter().any(|c| c.name == name) {
            return Err(Error::ResourceInUse(format!(
                "Consumer {name} under stream {} already exists for account {}.",
                stream.name, broker.config.account_id
            ))
            .into());
        }
        if s.consumers.len() as u32 >= broker.config.streams.max_consumers_per_stream {
            return Err(Error::LimitExceeded(format!(
                "Stream {} under account {} already has {} registered consumers, the maximum allowed.",
                stream.name,
                broker.config.account_id,
                s.consumers.len()
            ))
            .into());
        }
        // Creation times are whole seconds in the ARN; keep them unique per name.
        let created_ms = broker.clock.now_ms() / 1000 * 1000;
        let record = ConsumerRecord {
            name: name.clone(),
            created_ms,
            status: "CREATING".into(),
            tags: input.tags.unwrap_or_default().into_map(),
            resource_policy: None,
        };
        s.consumers.push(record.clone());
        record
    };
    broker.persist().await?;
    broker.finish_consumer(&stream, &name, false);
    tracing::info!(stream = %stream.name, consumer = %name, "consumer registered");
    Ok(RegisterOutput {
        consumer: out(&stream, &record, false),
    })
}

/// Describe/DeregisterStreamConsumer input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConsumerRefInput {
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    consumer_name: Option<String>,
    #[serde(rename = "ConsumerARN")]
    consumer_arn: Option<String>,
}

impl ConsumerRefInput {
    fn resolve(&self, broker: &Broker) -> Result<(Arc<Stream>, ConsumerRecord), ApiError> {
        let mut v = Validator::new();
        v.stream_arn("streamARN", self.stream_arn.as_deref(), false);
        v.name("consumerName", self.consumer_name.as_deref(), false);
        check_consumer_arn(&mut v, self.consumer_arn.as_deref());
        v.finish()?;
        find_consumer(
            broker,
            self.consumer_arn.as_deref(),
            self.stream_arn.as_deref(),
            self.consumer_name.as_deref(),
        )
    }
}

/// DescribeStreamConsumer output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeOutput {
    consumer_description: ConsumerOut,
}

/// DescribeStreamConsumer.
pub async fn describe(
    broker: Arc<Broker>,
    input: ConsumerRefInput,
) -> Result<DescribeOutput, ApiError> {
    let (stream, c) = input.resolve(&broker)?;
    Ok(DescribeOutput {
        consumer_description: out(&stream, &c, true),
    })
}

/// DeregisterStreamConsumer.
pub async fn deregister(broker: Arc<Broker>, input: ConsumerRefInput) -> Result<(), ApiError> {
    let (stream, c) = input.resolve(&broker)?;
    let _control = broker.control().await;
    if let Some(rec) = stream
        .settings
        .lock()
        .consumers
        .iter_mut()
        .find(|x| x.name == c.name)
    {
        rec.status = "DELETING".into();
    }
    broker.persist().await?;
    broker.end_subscriptions(&consumer_arn(&stream, &c));
    broker.finish_consumer(&stream, &c.name, true);
    tracing::info!(stream = %stream.name, consumer = %c.name, "consumer deregistering");
    Ok(())
}

/// ListStreamConsumers input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListInput {
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    next_token: Option<String>,
    #[serde(default, deserialize_with = "crate::api::wire::java_integer")]
    max_results: Option<i64>,
    stream_creation_timestamp: Option<f64>,
}

/// ListStreamConsumers output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListOutput {
    consumers: Vec<ConsumerOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// ListStreamConsumers.
pub async fn list(broker: Arc<Broker>, input: ListInput) -> Result<ListOutput, ApiError> {
    let mut v = Validator::new();
    v.stream_arn("streamARN", input.stream_arn.as_deref(), true);
    v.string(
        "nextToken",
        input.next_token.as_deref(),
        false,
        None,
        1,
        1_048_576,
    );
    v.int("maxResults", input.max_results, false, 1, 10_000);
    v.finish()?;
    let stream = stream_ref(&broker, None, input.stream_arn.as_deref())?;
    if let Some(ts) = input.stream_creation_timestamp {
        if (ts * 1000.0).round() as i64 / 1000 != stream.created_ms / 1000 {
            return Err(Error::StreamNotFound {
                stream: stream.name.clone(),
            }
            .into());
        }
    }
    let skip = match &input.next_token {
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| ApiError::invalid_argument("The NextToken is invalid."))?,
        None => 0,
    };
    let max = input.max_results.unwrap_or(100) as usize;
    let mut all = stream.settings.lock().consumers.clone();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let page: Vec<ConsumerOut> = all
        .iter()
        .skip(skip)
        .take(max)
        .map(|c| out(&stream, c, false))
        .collect();
    let next = (skip + page.len() < all.len()).then(|| (skip + page.len()).to_string());
    Ok(ListOutput {
        consumers: page,
        next_token: next,
    })
}

impl crate::api::Targeted for RegisterInput {
    fn target(&self) -> crate::api::Target<'_> {
        crate::api::Target::Stream {
            name: None,
            arn: self.stream_arn.as_deref(),
        }
    }
}

impl crate::api::Targeted for ListInput {
    fn target(&self) -> crate::api::Target<'_> {
        crate::api::Target::Stream {
            name: None,
            arn: self.stream_arn.as_deref(),
        }
    }
}

impl crate::api::Targeted for ConsumerRefInput {
    fn target(&self) -> crate::api::Target<'_> {
        crate::api::Target::Consumer {
            arn: self.consumer_arn.as_deref(),
            stream_arn: self.stream_arn.as_deref(),
            name: self.consumer_name.as_deref(),
        }
    }
}
