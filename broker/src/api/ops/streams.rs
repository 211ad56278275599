//! Stream lifecycle and settings: create, delete, describe, list, retention, monitoring,
//! encryption, mode, record size, warm throughput.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use riffle_core::{HashKeyRange, ShardId};
use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;
use crate::api::ops::records::parse_shard_id;
use crate::api::validate::{self, Validator};
use crate::api::wire::{epoch_seconds, List, TagMap};
use crate::api::{check_stream_ref, stream_ref};
use crate::broker::{Broker, Stream, StreamMode, StreamSettings, StreamStatus};
use crate::error::Error;
use crate::shard::Shard;

/// The seven shard-level metrics `ALL` stands for.
pub const SHARD_LEVEL_METRICS: &[&str] = &[
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
];

/// `{"StreamMode": ...}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamModeDetails {
    /// PROVISIONED or ON_DEMAND.
    pub stream_mode: Option<String>,
}

/// A hash-key range on the wire.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HashKeyRangeOut {
    starting_hash_key: String,
    ending_hash_key: String,
}

impl From<HashKeyRange> for HashKeyRangeOut {
    fn from(r: HashKeyRange) -> Self {
        HashKeyRangeOut {
            starting_hash_key: r.start.to_string(),
            ending_hash_key: r.end.to_string(),
        }
    }
}

/// A sequence-number range on the wire.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SequenceNumberRangeOut {
    starting_sequence_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ending_sequence_number: Option<String>,
}

/// A shard on the wire.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ShardOut {
    shard_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_shard_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    adjacent_parent_shard_id: Option<String>,
    hash_key_range: HashKeyRangeOut,
    sequence_number_range: SequenceNumberRangeOut,
}

impl From<&Shard> for ShardOut {
    fn from(s: &Shard) -> Self {
        ShardOut {
            shard_id: s.id.to_string(),
            parent_shard_id: s.parent.map(|p| p.to_string()),
            adjacent_parent_shard_id: s.adjacent_parent.map(|p| p.to_string()),
            hash_key_range: s.range.into(),
            sequence_number_range: SequenceNumberRangeOut {
                starting_sequence_number: s.starting_sequence_number().to_string(),
                ending_sequence_number: s.ending_sequence_number().map(|e| e.to_string()),
            },
        }
    }
}

/// `{"ShardLevelMetrics": [...]}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnhancedMetrics {
    shard_level_metrics: Vec<String>,
}

/// Warm throughput on the wire.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WarmThroughputOut {
    #[serde(rename = "TargetMiBps")]
    target_mibps: u32,
    #[serde(rename = "CurrentMiBps")]
    current_mibps: u32,
}

fn require_active(stream: &Stream) -> Result<(), ApiError> {
    match stream.status() {
        StreamStatus::Active => Ok(()),
        s => Err(Error::StreamNotActive {
            stream: stream.name.clone(),
            status: s.as_str(),
        }
        .into()),
    }
}

/// The account shard-limit message.
pub fn shard_limit_message(broker: &Broker, current: u32, additional: u32) -> String {
    format!(
        "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {current}. \
         Limit: {}. Number of additional shards that would have resulted from this request: {additional}. \
         Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits.",
        broker.config.account_id, broker.config.region, broker.config.streams.shard_limit
    )
}

/// Checks the tag map of a create or add request.
pub fn validate_tags(v: &mut Validator, tags: Option<&TagMap>, required: bool, max: usize) {
    v.size(
        "tags",
        tags.map(TagMap::total),
        || {
            validate::shown(
                '{',
                tags.into_iter()
                    .flat_map(|t| t.iter())
                    .map(|(k, v)| format!("{k}={v}")),
                tags.is_some_and(TagMap::truncated),
                '}',
            )
        },
        required,
        1,
        max,
    );
    // The model's constraints on the map's keys (TagKey, 1..128) and values (TagValue,
    // 0..256), before any resource is looked up.
    let Some(tags) = tags else { return };
    let shown = || {
        format!(
            "'{}'",
            validate::shown(
                '{',
                tags.iter().map(|(k, v)| format!("{k}={v}")),
                tags.truncated(),
                '}',
            )
        )
    };
    if tags
        .iter()
        .any(|(k, _)| k.is_empty() || validate::java_len(k) > 128)
    {
        v.fail(
            &shown(),
            "tags",
            "Map keys must satisfy constraint: [Member must have length less than or equal to \
             128, Member must have length greater than or equal to 1]",
        );
    }
    if tags.iter().any(|(_, val)| validate::java_len(val) > 256) {
        v.fail(
            &shown(),
            "tags",
            "Map value must satisfy constraint: [Member must have length less than or equal to \
             256, Member must have length greater than or equal to 0]",
        );
    }
}

/// CreateStream input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateStreamInput {
    stream_name: Option<String>,
    #[serde(default, deserialize_with = "crate::api::wire::java_integer")]
    shard_count: Option<i64>,
    stream_mode_details: Option<StreamModeDetails>,
    tags: Option<TagMap>,
    #[serde(rename = "WarmThroughputMiBps")]
    #[serde(default, deserialize_with = "crate::api::wire::java_integer")]
    warm_throughput_mibps: Option<i64>,
    #[serde(rename = "MaxRecordSizeInKiB")]
    #[serde(default, deserialize_with = "crate::api::wire::java_integer")]
    max_record_size_in_kib: Option<i64>,
}

/// CreateStream.
pub async fn create_stream(broker: Arc<Broker>, input: CreateStreamInput) -> Result<(), ApiError> {
    let mode = match input
        .stream_mode_details
        .as_ref()
        .and_then(|m| m.stream_mode.as_deref())
    {
        Some("ON_DEMAND") => StreamMode::OnDemand,
        _ => StreamMode::Provisioned,
    };
    let mut v = Validator::new();
    v.int(
        "shardCount",
        input.shard_count,
        mode == StreamMode::Provisioned,
        1,
        100_000,
    );
    v.name("streamName", input.stream_name.as_deref(), true);
    if let Some(m) = &input.stream_mode_details {
        v.one_of(
            "streamModeDetails.streamMode",
            m.stream_mode.as_deref(),
            true,
            &["PROVISIONED", "ON_DEMAND"],
        );
    }
    validate_tags(&mut v, input.tags.as_ref(), false, 50);
    v.int(
        "maxRecordSizeInKiB",
        input.max_record_size_in_kib,
        false,
        1024,
        10_240,
    );
    v.int(
        "warmThroughputMiBps",
        input.warm_throughput_mibps,
        false,
        0,
        100_000_000,
    );
    v.finish()?;
    let name = input.stream_name.unwrap_or_default();
    let shards = match mode {
        StreamMode::Provisioned => input.shard_count.unwrap_or(1) as u32,
        StreamMode::OnDemand => input
            .shard_count
            .map_or(broker.config.streams.on_demand_shards, |n| n as u32),
    };
    let _control = broker.control().await;
    if broker.stream(&name).is_ok() {
        return Err(Error::StreamExists { stream: name }.into());
    }
    let current = broker.open_shard_count().await;
    if current + shards > broker.config.streams.shard_limit {
        return Err(Error::LimitExceeded(shard_limit_message(&broker, current, shards)).into());
    }
    if shards > broker.config.streams.max_shards_per_stream {
        return Err(Error::LimitExceeded(format!(
            "Target shard count or number of open shards cannot be greater than {}. Current open shard count: 0, Target shard count: {shards}",
            broker.config.streams.max_shards_per_stream
        ))
        .into());
    }
    if mode == StreamMode::OnDemand {
        let on_demand = broker
            .streams()
            .iter()
            .filter(|s| s.settings.lock().mode == StreamMode::OnDemand)
            .count() as u32;
        if on_demand >= broker.config.streams.on_demand_stream_limit {
            return Err(Error::LimitExceeded(format!(
                "This request would exceed the on-demand stream count limit for the account {}. Limit: {}.",
                broker.config.account_id, broker.config.streams.on_demand_stream_limit
            ))
            .into());
        }
    }
    let settings = StreamSettings {
        status: StreamStatus::Creating,
        mode,
        retention_hours: 24,
        tags: input.tags.unwrap_or_default().into_map(),
        kms_key_id: None,
        shard_level_metrics: Vec::new(),
        max_record_kib: input.max_record_size_in_kib.map_or_else(
            || {
                let limits = broker.config.limits.for_stream(&name);
                (limits
                    .record_max_bytes
                    .or_ceiling(crate::config::ceilings::RECORD_BYTES)
                    / 1024)
                    .max(1) as u32
            },
            |k| k as u32,
        ),
        warm_throughput_mibps: input.warm_throughput_mibps.map(|w| w as u32),
        reshard_times: Vec::new(),
        consumers: Vec::new(),
        expired_before_ms: 0,
        resource_policy: None,
    };
    broker.create_stream(&name, shards, settings).await?;
    tracing::info!(stream = %name, shards, mode = mode.as_str(), "created");
    Ok(())
}

/// A request that names a stream and nothing else.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamRefInput {
    pub(crate) stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    pub(crate) stream_arn: Option<String>,
}

impl StreamRefInput {
    fn resolve(&self, broker: &Broker) -> Result<Arc<Stream>, ApiError> {
        resolve_stream(
            broker,
            self.stream_name.as_deref(),
            self.stream_arn.as_deref(),
        )
    }
}

/// Validates a request's `StreamName` / `StreamARN` and finds the stream they name.
/// (Inputs carry the two members themselves rather than a flattened [`StreamRefInput`]:
/// serde buffers every unknown member of a flattened struct in memory.)
pub(crate) fn resolve_stream(
    broker: &Broker,
    name: Option<&str>,
    arn: Option<&str>,
) -> Result<Arc<Stream>, ApiError> {
    let mut v = Validator::new();
    check_stream_ref(&mut v, name, arn);
    v.finish()?;
    stream_ref(broker, name, arn)
}

/// DeleteStream input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteStreamInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    enforce_consumer_deletion: Option<bool>,
}

/// DeleteStream.
pub async fn delete_stream(broker: Arc<Broker>, input: DeleteStreamInput) -> Result<(), ApiError> {
    let stream = resolve_stream(
        &broker,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    )?;
    let _control = broker.control().await;
    if stream.status() == StreamStatus::Deleting {
        return Ok(());
    }
    if !stream.settings.lock().consumers.is_empty()
        && !input.enforce_consumer_deletion.unwrap_or(false)
    {
        return Err(Error::ResourceInUse(format!(
            "Stream {} under account {} has registered consumers. Deregister them or set EnforceConsumerDeletion.",
            stream.name, broker.config.account_id
        ))
        .into());
    }
    broker.delete_stream(&stream).await?;
    tracing::info!(stream = %stream.name, "deleting");
    Ok(())
}

/// DescribeStream input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeStreamInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    #[serde(default, deserialize_with = "crate::api::wire::java_integer")]
    limit: Option<i64>,
    exclusive_start_shard_id: Option<String>,
}

/// DescribeStream output body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamDescription {
    stream_name: String,
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_status: &'static str,
    stream_mode_details: StreamModeDetails,
    shards: Vec<ShardOut>,
    has_more_shards: bool,
    retention_period_hours: u32,
    stream_creation_timestamp: f64,
    enhanced_monitoring: Vec<EnhancedMetrics>,
    encryption_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
}

/// DescribeStream output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeStreamOutput {
    stream_description: StreamDescription,
}

/// DescribeStream.
pub async fn describe_stream(
    broker: Arc<Broker>,
    input: DescribeStreamInput,
) -> Result<DescribeStreamOutput, ApiError> {
    let mut v = Validator::new();
    v.int("limit", input.limit, false, 1, 10_000);
    v.name(
        "exclusiveStartShardId",
        input.exclusive_start_shard_id.as_deref(),
        false,
    );
    v.finish()?;
    let stream = resolve_stream(
        &broker,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    )?;
    let limit = input.limit.unwrap_or(100).min(100) as usize;
    let after = input
        .exclusive_start_shard_id
        .as_deref()
        .and_then(parse_shard_id);
    let settings = stream.settings.lock().clone();
    let (shards, has_more) = if settings.status == StreamStatus::Creating {
        (Vec::new(), false)
    } else {
        let map = stream.shards.read().await;
        let mut it = map.all.values().filter(|s| after.is_none_or(|a| s.id > a));
        let shards: Vec<ShardOut> = it
            .by_ref()
            .take(limit)
            .map(|s| ShardOut::from(&**s))
            .collect();
        (shards, it.next().is_some())
    };
    Ok(DescribeStreamOutput {
        stream_description: StreamDescription {
            stream_name: stream.name.clone(),
            stream_arn: stream.arn.clone(),
            stream_status: settings.status.as_str(),
            stream_mode_details: StreamModeDetails {
                stream_mode: Some(settings.mode.as_str().into()),
            },
            shards,
            has_more_shards: has_more,
            retention_period_hours: settings.retention_hours,
            stream_creation_timestamp: epoch_seconds(stream.created_ms),
            enhanced_monitoring: vec![EnhancedMetrics {
                shard_level_metrics: settings.shard_level_metrics.clone(),
            }],
            encryption_type: if settings.kms_key_id.is_some() {
                "KMS"
            } else {
                "NONE"
            },
            key_id: settings.kms_key_id,
        },
    })
}

/// DescribeStreamSummary output body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamDescriptionSummary {
    stream_name: String,
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_status: &'static str,
    stream_mode_details: StreamModeDetails,
    retention_period_hours: u32,
    stream_creation_timestamp: f64,
    enhanced_monitoring: Vec<EnhancedMetrics>,
    encryption_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    open_shard_count: u32,
    consumer_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    warm_throughput: Option<WarmThroughputOut>,
    #[serde(rename = "MaxRecordSizeInKiB")]
    max_record_size_in_kib: u32,
}

/// DescribeStreamSummary output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeStreamSummaryOutput {
    stream_description_summary: StreamDescriptionSummary,
}

/// DescribeStreamSummary.
pub async fn describe_stream_summary(
    broker: Arc<Broker>,
    input: StreamRefInput,
) -> Result<DescribeStreamSummaryOutput, ApiError> {
    let stream = input.resolve(&broker)?;
    let open = stream.shards.read().await.open.len() as u32;
    let s = stream.settings.lock().clone();
    Ok(DescribeStreamSummaryOutput {
        stream_description_summary: StreamDescriptionSummary {
            stream_name: stream.name.clone(),
            stream_arn: stream.arn.clone(),
            stream_status: s.status.as_str(),
            stream_mode_details: StreamModeDetails {
                stream_mode: Some(s.mode.as_str().into()),
            },
            retention_period_hours: s.retention_hours,
            stream_creation_timestamp: epoch_seconds(stream.created_ms),
            enhanced_monitoring: vec![EnhancedMetrics {
                shard_level_metrics: s.shard_level_metrics.clone(),
            }],
            encryption_type: if s.kms_key_id.is_some() {
                "KMS"
            } else {
                "NONE"
            },
            key_id: s.kms_key_id,
            open_shard_count: open,
            consumer_count: s.consumers.len() as u32,
            warm_throughput: s.warm_throughput_mibps.map(|w| WarmThroughputOut {
                target_mibps: w,
                current_mibps: w,
            }),
            max_record_size_in_kib: s.max_record_kib,
        },
    })
}

/// ListStreams input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListStreamsInput {
    #[serde(default, deserialize_with = "crate::api::wire::java_integer")]
    limit: Option<i64>,
    exclusive_start_stream_name: Option<String>,
    next_token: Option<String>,
}

/// A ListStreams summary entry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamSummary {
    stream_name: String,
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_status: &'static str,
    stream_mode_details: StreamModeDetails,
    stream_creation_timestamp: f64,
}

/// ListStreams output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListStreamsOutput {
    stream_names: Vec<String>,
    has_more_streams: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
    stream_summaries: Vec<StreamSummary>,
}

/// ListStreams.
pub async fn list_streams(
    broker: Arc<Broker>,
    input: ListStreamsInput,
) -> Result<ListStreamsOutput, ApiError> {
    let mut v = Validator::new();
    v.int("limit", input.limit, false, 1, 10_000);
    v.name(
        "exclusiveStartStreamName",
        input.exclusive_start_stream_name.as_deref(),
        false,
    );
    v.string(
        "nextToken",
        input.next_token.as_deref(),
        false,
        None,
        1,
        1_048_576,
    );
    v.finish()?;
    let after = match &input.next_token {
        Some(t) => Some(
            URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::invalid_argument("The NextToken is invalid."))?,
        ),
        None => input.exclusive_start_stream_name,
    };
    let limit = input.limit.unwrap_or(100) as usize;
    let all = broker.streams();
    let mut it = all
        .iter()
        .filter(|s| after.as_deref().is_none_or(|a| s.name.as_str() > a));
    let page: Vec<&Arc<Stream>> = it.by_ref().take(limit).collect();
    let more = it.next().is_some();
    Ok(ListStreamsOutput {
        stream_names: page.iter().map(|s| s.name.clone()).collect(),
        has_more_streams: more,
        next_token: more
            .then(|| URL_SAFE_NO_PAD.encode(page.last().map_or("", |s| s.name.as_str()))),
        stream_summaries: page
            .iter()
            .map(|s| {
                let st = s.settings.lock();
                StreamSummary {
                    stream_name: s.name.clone(),
                    stream_arn: s.arn.clone(),
                    stream_status: st.status.as_str(),
                    stream_mode_details: StreamModeDetails {
                        stream_mode: Some(st.mode.as_str().into()),
                    },
                    stream_creation_timestamp: epoch_seconds(s.created_ms),
                }
            })
            .collect(),
    })
}

/// ListShards shard filter.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ShardFilter {
    #[serde(rename = "Type")]
    kind: Option<String>,
    shard_id: Option<String>,
    timestamp: Option<f64>,
}

/// ListShards input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListShardsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    next_token: Option<String>,
    exclusive_start_shard_id: Option<String>,
    #[serde(default, deserialize_with = "crate::api::wire::java_integer")]
    max_results: Option<i64>,
    stream_creation_timestamp: Option<f64>,
    shard_filter: Option<ShardFilter>,
}

/// ListShards output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListShardsOutput {
    shards: Vec<ShardOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ListShardsToken {
    stream: String,
    after: Option<u32>,
    issued_ms: i64,
    filter: Option<(String, Option<u32>, Option<i64>)>,
}

const SHARD_FILTER_TYPES: &[&str] = &[
    "AFTER_SHARD_ID",
    "AT_TRIM_HORIZON",
    "FROM_TRIM_HORIZON",
    "AT_LATEST",
    "AT_TIMESTAMP",
    "FROM_TIMESTAMP",
];

/// ListShards.
pub async fn list_shards(
    broker: Arc<Broker>,
    input: ListShardsInput,
) -> Result<ListShardsOutput, ApiError> {
    let mut v = Validator::new();
    v.int("maxResults", input.max_results, false, 1, 10_000);
    v.name(
        "exclusiveStartShardId",
        input.exclusive_start_shard_id.as_deref(),
        false,
    );
    v.name("streamName", input.stream_name.as_deref(), false);
    v.string(
        "nextToken",
        input.next_token.as_deref(),
        false,
        None,
        1,
        1_048_576,
    );
    if let Some(f) = &input.shard_filter {
        v.one_of(
            "shardFilter.type",
            f.kind.as_deref(),
            true,
            SHARD_FILTER_TYPES,
        );
    }
    v.finish()?;
    let now = broker.clock.now_ms();
    let (stream, after, filter) = match (
        &input.next_token,
        input.stream_name.is_some() || input.stream_arn.is_some(),
    ) {
        (Some(_), true) => {
            return Err(ApiError::invalid_argument(
                "NextToken and StreamName cannot be provided together.",
            ))
        }
        (None, false) => {
            return Err(ApiError::invalid_argument(
                "Either NextToken or StreamName should be provided.",
            ))
        }
        (Some(token), false) => {
            let t: ListShardsToken = broker
                .iterators
                .verify_token(token)
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| ApiError::invalid_argument("NextToken is invalid."))?;
            if now.saturating_sub(t.issued_ms) > 300_000 {
                return Err(Error::ExpiredNextToken("The NextToken has expired.".into()).into());
            }
            (broker.stream(&t.stream)?, t.after, t.filter)
        }
        (None, true) => {
            let stream = stream_ref(
                &broker,
                input.stream_name.as_deref(),
                input.stream_arn.as_deref(),
            )?;
            if let Some(ts) = input.stream_creation_timestamp {
                if (ts * 1000.0).round() as i64 / 1000 != stream.created_ms / 1000 {
                    return Err(Error::StreamNotFound {
                        stream: stream.name.clone(),
                    }
                    .into());
                }
            }
            let filter = input.shard_filter.map(|f| {
                let shard = f
                    .shard_id
                    .as_deref()
                    .and_then(parse_shard_id)
                    .map(ShardId::index);
                (
                    f.kind.unwrap_or_default(),
                    shard,
                    f.timestamp.map(|t| (t * 1000.0).round() as i64),
                )
            });
            if let Some((kind, shard, ts)) = &filter {
                if kind == "AFTER_SHARD_ID" && shard.is_none() {
                    return Err(ApiError::invalid_argument(
                        "ShardId must be provided for the AFTER_SHARD_ID shard filter type.",
                    ));
                }
                if kind.ends_with("TIMESTAMP") && ts.is_none() {
                    return Err(ApiError::invalid_argument(format!(
                        "Timestamp must be provided for the {kind} shard filter type."
                    )));
                }
            }
            let after = input
                .exclusive_start_shard_id
                .as_deref()
                .and_then(parse_shard_id)
                .map(ShardId::index);
            (stream, after, filter)
        }
    };
    let retention_start = stream.expiry_cutoff_ms(now);
    let keep = |s: &Shard| -> bool {
        let closed_at = s.closed().map(|c| c.1);
        let open_at = |ts: i64| s.created_ms <= ts && closed_at.is_none_or(|c| c > ts);
        match &filter {
            None => true,
            Some((kind, shard, ts)) => match kind.as_str() {
                "AFTER_SHARD_ID" => shard.is_some_and(|a| s.id.index() > a),
                "AT_TRIM_HORIZON" => {
                    open_at(retention_start) || s.created_ms > retention_start && s.parent.is_none()
                }
                "AT_LATEST" => closed_at.is_none(),
                "AT_TIMESTAMP" => {
                    open_at(ts.unwrap_or(now))
                        || s.created_ms > ts.unwrap_or(now) && s.parent.is_none()
                }
                "FROM_TIMESTAMP" => closed_at.is_none_or(|c| c > ts.unwrap_or(now)),
                _ => true,
            },
        }
    };
    let max = input.max_results.unwrap_or(1000) as usize;
    let map = stream.shards.read().await;
    let mut it = map
        .all
        .values()
        .filter(|s| after.is_none_or(|a| s.id.index() > a))
        .filter(|s| keep(s));
    let page: Vec<&Arc<Shard>> = it.by_ref().take(max).collect();
    let more = it.next().is_some();
    let next_token = more.then(|| {
        let t = ListShardsToken {
            stream: stream.name.clone(),
            after: page.last().map(|s| s.id.index()),
            issued_ms: now,
            filter: filter.clone(),
        };
        broker
            .iterators
            .sign_token(&serde_json::to_vec(&t).expect("token serializes"))
    });
    Ok(ListShardsOutput {
        shards: page.into_iter().map(|s| ShardOut::from(&**s)).collect(),
        next_token,
    })
}

/// Increase/DecreaseStreamRetentionPeriod input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RetentionInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    #[serde(default, deserialize_with = "crate::api::wire::java_integer")]
    retention_period_hours: Option<i64>,
}

async fn change_retention(
    broker: Arc<Broker>,
    input: RetentionInput,
    increase: bool,
) -> Result<(), ApiError> {
    let mut v = Validator::new();
    check_stream_ref(
        &mut v,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    );
    v.int(
        "retentionPeriodHours",
        input.retention_period_hours,
        true,
        1,
        i64::from(i32::MAX),
    );
    v.finish()?;
    let stream = resolve_stream(
        &broker,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    )?;
    let h = input.retention_period_hours.unwrap_or_default();
    if h < 24 {
        return Err(ApiError::invalid_argument(format!(
            "Minimum allowed retention period is 24 hours. Requested retention period ({h} hours) is too short."
        )));
    }
    if h > 8760 {
        return Err(ApiError::invalid_argument(format!(
            "Maximum allowed retention period is 8760 hours. Requested retention period ({h} hours) is too long."
        )));
    }
    let _control = broker.control().await;
    {
        let mut s = stream.settings.lock();
        let cur = i64::from(s.retention_hours);
        if increase && h < cur {
            return Err(ApiError::invalid_argument(format!(
                "Requested retention period ({h} hours) for stream {} can not be shorter than existing retention period ({cur} hours). Use DecreaseRetentionPeriod API.",
                stream.name
            )));
        }
        if !increase && h > cur {
            return Err(ApiError::invalid_argument(format!(
                "Requested retention period ({h} hours) for stream {} can not be longer than existing retention period ({cur} hours). Use IncreaseRetentionPeriod API.",
                stream.name
            )));
        }
        // What has expired under the current retention stays expired under a longer one.
        let now = broker.clock.now_ms();
        s.expired_before_ms = s.expired_before_ms.max(now - cur * 3_600_000);
        s.retention_hours = h as u32;
    }
    broker.persist().await?;
    Ok(())
}

/// IncreaseStreamRetentionPeriod.
pub async fn increase_retention(
    broker: Arc<Broker>,
    input: RetentionInput,
) -> Result<(), ApiError> {
    change_retention(broker, input, true).await
}

/// DecreaseStreamRetentionPeriod.
pub async fn decrease_retention(
    broker: Arc<Broker>,
    input: RetentionInput,
) -> Result<(), ApiError> {
    change_retention(broker, input, false).await
}

/// Enable/DisableEnhancedMonitoring input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MonitoringInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_level_metrics: Option<List<String>>,
}

/// Enable/DisableEnhancedMonitoring output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MonitoringOutput {
    stream_name: String,
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    current_shard_level_metrics: Vec<String>,
    desired_shard_level_metrics: Vec<String>,
}

async fn monitoring(
    broker: Arc<Broker>,
    input: MonitoringInput,
    enable: bool,
) -> Result<MonitoringOutput, ApiError> {
    let mut v = Validator::new();
    let metrics = input.shard_level_metrics.as_deref();
    let list = input.shard_level_metrics.as_ref();
    v.size(
        "shardLevelMetrics",
        list.map(List::total),
        || {
            validate::shown(
                '[',
                metrics.unwrap_or_default().iter().cloned(),
                list.is_some_and(List::truncated),
                ']',
            )
        },
        true,
        1,
        7,
    );
    let mut allowed: Vec<&str> = SHARD_LEVEL_METRICS.to_vec();
    allowed.push("ALL");
    for (i, m) in metrics.unwrap_or_default().iter().enumerate() {
        v.one_of(
            &format!("shardLevelMetrics.{}.member", i + 1),
            Some(m),
            true,
            &allowed,
        );
    }
    v.finish()?;
    let stream = resolve_stream(
        &broker,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    )?;
    let requested: Vec<String> = if metrics.unwrap_or_default().iter().any(|m| m == "ALL") {
        SHARD_LEVEL_METRICS.iter().map(|s| s.to_string()).collect()
    } else {
        metrics.unwrap_or_default().to_vec()
    };
    let _control = broker.control().await;
    let (current, desired) = {
        let mut s = stream.settings.lock();
        let current = s.shard_level_metrics.clone();
        let mut desired: Vec<String> = if enable {
            current.iter().chain(&requested).cloned().collect()
        } else {
            current
                .iter()
                .filter(|m| !requested.contains(m))
                .cloned()
                .collect()
        };
        desired.sort_by_key(|m| SHARD_LEVEL_METRICS.iter().position(|x| x == m));
        desired.dedup();
        s.shard_level_metrics = desired.clone();
        (current, desired)
    };
    broker.persist().await?;
    Ok(MonitoringOutput {
        stream_name: stream.name.clone(),
        stream_arn: stream.arn.clone(),
        current_shard_level_metrics: current,
        desired_shard_level_metrics: desired,
    })
}

/// EnableEnhancedMonitoring.
pub async fn enable_monitoring(
    broker: Arc<Broker>,
    input: MonitoringInput,
) -> Result<MonitoringOutput, ApiError> {
    monitoring(broker, input, true).await
}

/// DisableEnhancedMonitoring.
pub async fn disable_monitoring(
    broker: Arc<Broker>,
    input: MonitoringInput,
) -> Result<MonitoringOutput, ApiError> {
    monitoring(broker, input, false).await
}

/// Start/StopStreamEncryption input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptionInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    encryption_type: Option<String>,
    key_id: Option<String>,
}

async fn encryption(
    broker: Arc<Broker>,
    input: EncryptionInput,
    start: bool,
) -> Result<(), ApiError> {
    let mut v = Validator::new();
    v.one_of(
        "encryptionType",
        input.encryption_type.as_deref(),
        true,
        &["NONE", "KMS"],
    );
    v.string("keyId", input.key_id.as_deref(), true, None, 1, 2048);
    v.finish()?;
    let stream = resolve_stream(
        &broker,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    )?;
    if input.encryption_type.as_deref() != Some("KMS") {
        return Err(ApiError::invalid_argument("EncryptionType must be KMS."));
    }
    let key_id = input.key_id.unwrap_or_default();
    if start && !broker.keys.contains(&key_id) {
        return Err(Error::from(crate::storage::SealError::MissingKey { key_id }).into());
    }
    let _control = broker.control().await;
    require_active(&stream)?;
    {
        let mut settings = stream.settings.lock();
        settings.kms_key_id = start.then(|| key_id.clone());
        stream.keys.set_current(start.then_some(key_id.as_str()));
    }
    broker.persist().await?;
    Ok(())
}

/// StartStreamEncryption: records written from now on are sealed under the stream's key
/// derived from `KeyId`, which must be in the broker's key ring.
pub async fn start_encryption(broker: Arc<Broker>, input: EncryptionInput) -> Result<(), ApiError> {
    encryption(broker, input, true).await
}

/// StopStreamEncryption.
pub async fn stop_encryption(broker: Arc<Broker>, input: EncryptionInput) -> Result<(), ApiError> {
    encryption(broker, input, false).await
}

/// UpdateStreamMode input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateStreamModeInput {
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    stream_mode_details: Option<StreamModeDetails>,
    #[serde(rename = "WarmThroughputMiBps")]
    #[serde(default, deserialize_with = "crate::api::wire::java_integer")]
    warm_throughput_mibps: Option<i64>,
}

/// UpdateStreamMode.
pub async fn update_stream_mode(
    broker: Arc<Broker>,
    input: UpdateStreamModeInput,
) -> Result<(), ApiError> {
    let mut v = Validator::new();
    v.stream_arn("streamARN", input.stream_arn.as_deref(), true);
    v.required("streamModeDetails", input.stream_mode_details.as_ref());
    if let Some(m) = &input.stream_mode_details {
        v.one_of(
            "streamModeDetails.streamMode",
            m.stream_mode.as_deref(),
            true,
            &["PROVISIONED", "ON_DEMAND"],
        );
    }
    v.finish()?;
    let stream = stream_ref(&broker, None, input.stream_arn.as_deref())?;
    let mode = match input
        .stream_mode_details
        .and_then(|m| m.stream_mode)
        .as_deref()
    {
        Some("ON_DEMAND") => StreamMode::OnDemand,
        _ => StreamMode::Provisioned,
    };
    let _control = broker.control().await;
    require_active(&stream)?;
    {
        let mut s = stream.settings.lock();
        if s.mode == mode {
            return Err(ApiError::invalid_argument(format!(
                "Stream {} under account {} is already in {} mode.",
                stream.name,
                broker.config.account_id,
                mode.as_str()
            )));
        }
        s.mode = mode;
        s.status = StreamStatus::Updating;
        if let Some(w) = input.warm_throughput_mibps {
            s.warm_throughput_mibps = Some(w.max(0) as u32);
        }
    }
    broker.persist().await?;
    broker.finish_transition(&stream, StreamStatus::Active);
    Ok(())
}

/// UpdateMaxRecordSize input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateMaxRecordSizeInput {
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    #[serde(rename = "MaxRecordSizeInKiB")]
    #[serde(default, deserialize_with = "crate::api::wire::java_integer")]
    max_record_size_in_kib: Option<i64>,
}

/// UpdateMaxRecordSize: records up to 10 MiB once raised.
pub async fn update_max_record_size(
    broker: Arc<Broker>,
    input: UpdateMaxRecordSizeInput,
) -> Result<(), ApiError> {
    let mut v = Validator::new();
    v.stream_arn("streamARN", input.stream_arn.as_deref(), true);
    v.int(
        "maxRecordSizeInKiB",
        input.max_record_size_in_kib,
        true,
        1024,
        10_240,
    );
    v.finish()?;
    let stream = stream_ref(&broker, None, input.stream_arn.as_deref())?;
    let _control = broker.control().await;
    require_active(&stream)?;
    stream.settings.lock().max_record_kib = input.max_record_size_in_kib.unwrap_or(1024) as u32;
    broker.persist().await?;
    Ok(())
}

/// UpdateStreamWarmThroughput input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateWarmThroughputInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    #[serde(rename = "WarmThroughputMiBps")]
    #[serde(default, deserialize_with = "crate::api::wire::java_integer")]
    warm_throughput_mibps: Option<i64>,
}

/// UpdateStreamWarmThroughput output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateWarmThroughputOutput {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_name: String,
    warm_throughput: WarmThroughputOut,
}

/// UpdateStreamWarmThroughput (on-demand streams).
pub async fn update_warm_throughput(
    broker: Arc<Broker>,
    input: UpdateWarmThroughputInput,
) -> Result<UpdateWarmThroughputOutput, ApiError> {
    let mut v = Validator::new();
    v.int(
        "warmThroughputMiBps",
        input.warm_throughput_mibps,
        true,
        0,
        100_000_000,
    );
    v.finish()?;
    let stream = resolve_stream(
        &broker,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    )?;
    let _control = broker.control().await;
    require_active(&stream)?;
    let target = input.warm_throughput_mibps.unwrap_or_default() as u32;
    {
        let mut s = stream.settings.lock();
        if s.mode != StreamMode::OnDemand {
            return Err(ApiError::invalid_argument(format!(
                "Warm throughput can only be set on streams in ON_DEMAND mode. Stream {} under account {} is in PROVISIONED mode.",
                stream.name, broker.config.account_id
            )));
        }
        s.warm_throughput_mibps = Some(target);
    }
    broker.persist().await?;
    Ok(UpdateWarmThroughputOutput {
        stream_arn: stream.arn.clone(),
        stream_name: stream.name.clone(),
        warm_throughput: WarmThroughputOut {
            target_mibps: target,
            current_mibps: target,
        },
    })
}

crate::api::stream_target!(
    DeleteStreamInput,
    DescribeStreamInput,
    StreamRefInput,
    RetentionInput,
    MonitoringInput,
    EncryptionInput,
    UpdateWarmThroughputInput,
);

impl crate::api::Targeted for CreateStreamInput {
    fn target(&self) -> crate::api::Target<'_> {
        crate::api::Target::Stream {
            name: self.stream_name.as_deref(),
            arn: None,
        }
    }
}

impl crate::api::Targeted for ListStreamsInput {
    fn target(&self) -> crate::api::Target<'_> {
        crate::api::Target::Account
    }
}

impl crate::api::Targeted for ListShardsInput {
    fn target(&self) -> crate::api::Target<'_> {
        match (&self.stream_name, &self.stream_arn) {
            (None, None) => crate::api::Target::Token {
                stream: None,
                token: self.next_token.as_deref(),
                iterator: false,
            },
            _ => crate::api::Target::Stream {
                name: self.stream_name.as_deref(),
                arn: self.stream_arn.as_deref(),
            },
        }
    }
}

impl crate::api::Targeted for UpdateStreamModeInput {
    fn target(&self) -> crate::api::Target<'_> {
        crate::api::Target::Stream {
            name: None,
            arn: self.stream_arn.as_deref(),
        }
    }
}

impl crate::api::Targeted for UpdateMaxRecordSizeInput {
    fn target(&self) -> crate::api::Target<'_> {
        crate::api::Target::Stream {
            name: None,
            arn: self.stream_arn.as_deref(),
        }
    }
}

/// The stream a ListShards pagination token names, if it verifies.
pub(crate) fn token_stream(broker: &Broker, token: &str) -> Option<String> {
    let payload = broker.iterators.verify_token(token)?;
    serde_json::from_slice::<ListShardsToken>(&payload)
        .ok()
        .map(|t| t.stream)
}
