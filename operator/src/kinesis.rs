//! The operator's side of the Kinesis API: observe a stream ([`Kinesis::observe`]) and
//! execute planned actions ([`Kinesis::execute`]) with `aws-sdk-kinesis`, so the same code
//! manages a stream on a Riffle broker or on Amazon Kinesis.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::{
    ConsumerStatus, MetricsName, ScalingType, ShardFilter, ShardFilterType, StreamMode,
    StreamModeDetails, StreamStatus,
};
use riffle_core::{HashKey, HashKeyRange};

use crate::crd::{CapacityMode, ShardLevelMetric};
use crate::plan::{Action, Observed, OpenShard, Phase};

/// A failed Kinesis call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation}: {code}: {message}")]
pub struct KinesisError {
    /// The operation.
    pub operation: &'static str,
    /// The AWS error code (`__type`), or `Transport`.
    pub code: String,
    /// The message.
    pub message: String,
}

impl KinesisError {
    fn from_sdk<E, R>(operation: &'static str, e: aws_sdk_kinesis::error::SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let code = e.code().unwrap_or("Transport").to_string();
        let message = match e.message() {
            Some(m) => m.to_string(),
            None => format!("{}", aws_sdk_kinesis::error::DisplayErrorContext(&e)),
        };
        KinesisError {
            operation,
            code,
            message,
        }
    }

    /// Whether the stream (or consumer) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code == "ResourceNotFoundException"
    }

    /// Whether a quota refused the call (LimitExceededException).
    pub fn is_limit(&self) -> bool {
        self.code == "LimitExceededException"
    }

    /// Whether the resource is busy (ResourceInUseException): retry soon.
    pub fn is_in_use(&self) -> bool {
        self.code == "ResourceInUseException"
    }
}

/// Where and as whom to call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointConfig {
    /// Kinesis API URL.
    pub url: String,
    /// Signing region.
    pub region: String,
    /// Static credentials; `None` uses the default AWS credentials chain.
    pub credentials: Option<(String, String)>,
}

/// A Kinesis client for one endpoint.
#[derive(Debug, Clone)]
pub struct Kinesis {
    client: aws_sdk_kinesis::Client,
}

impl Kinesis {
    /// A client for `endpoint`. Retries are the SDK's standard ones (3 attempts); every
    /// call is bounded by a 20 s operation timeout.
    pub async fn connect(endpoint: &EndpointConfig) -> Kinesis {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(endpoint.region.clone()))
            .endpoint_url(&endpoint.url)
            .retry_config(RetryConfig::standard())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(20))
                    .build(),
            );
        if let Some((id, secret)) = &endpoint.credentials {
            loader = loader.credentials_provider(Credentials::new(
                id.clone(),
                secret.clone(),
                None,
                None,
                "riffle-operator",
            ));
        }
        let conf = loader.load().await;
        Kinesis {
            client: aws_sdk_kinesis::Client::new(&conf),
        }
    }

    /// The SDK client.
    pub fn client(&self) -> &aws_sdk_kinesis::Client {
        &self.client
    }

    /// Describes `name`: summary, open shards and tags. `None` if it does not exist.
    pub async fn observe(&self, name: &str) -> Result<Option<Observed>, KinesisError> {
        let summary = match self
            .client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
        {
            Ok(s) => s,
            Err(e) => {
                let e = KinesisError::from_sdk("DescribeStreamSummary", e);
                return if e.is_not_found() { Ok(None) } else { Err(e) };
            }
        };
        let Some(d) = summary.stream_description_summary() else {
            return Err(KinesisError {
                operation: "DescribeStreamSummary",
                code: "InvalidResponse".into(),
                message: "no StreamDescriptionSummary".into(),
            });
        };
        let phase = match d.stream_status() {
            StreamStatus::Creating => Phase::Creating,
            StreamStatus::Active => Phase::Active,
            StreamStatus::Updating => Phase::Updating,
            StreamStatus::Deleting => Phase::Deleting,
            other => {
                return Err(KinesisError {
                    operation: "DescribeStreamSummary",
                    code: "InvalidResponse".into(),
                    message: format!("unknown StreamStatus {other:?}"),
                })
            }
        };
        let mode = match d.stream_mode_details().map(|m| m.stream_mode()) {
            Some(StreamMode::OnDemand) => CapacityMode::OnDemand,
            _ => CapacityMode::Provisioned,
        };
        let shard_level_metrics: BTreeSet<ShardLevelMetric> = d
            .enhanced_monitoring()
            .iter()
            .flat_map(|m| m.shard_level_metrics())
            .flat_map(|m| match m {
                MetricsName::All => ShardLevelMetric::ALL.to_vec(),
                other => ShardLevelMetric::parse(other.as_str())
                    .into_iter()
                    .collect(),
            })
            .collect();
        let arn = d.stream_arn().to_string();
        let retention_hours = d.retention_period_hours();
        let open_shards = if phase == Phase::Deleting {
            Vec::new()
        } else {
            self.open_shards(name).await?
        };
        let tags = self.tags(name).await?;
        Ok(Some(Observed {
            phase,
            arn,
            mode,
            retention_hours,
            open_shards,
            shard_level_metrics,
            tags,
        }))
    }

    async fn open_shards(&self, name: &str) -> Result<Vec<OpenShard>, KinesisError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let req = match &token {
                Some(t) => self.client.list_shards().next_token(t),
                None => self.client.list_shards().stream_name(name).shard_filter(
                    ShardFilter::builder()
                        .r#type(ShardFilterType::AtLatest)
                        .build()
                        .map_err(|e| KinesisError {
                            operation: "ListShards",
                            code: "InvalidRequest".into(),
                            message: e.to_string(),
                        })?,
                ),
            };
            let page = req
                .send()
                .await
                .map_err(|e| KinesisError::from_sdk("ListShards", e))?;
            for s in page.shards() {
                let Some(r) = s.hash_key_range() else {
                    continue;
                };
                let (Ok(start), Ok(end)) = (
                    r.starting_hash_key().parse::<HashKey>(),
                    r.ending_hash_key().parse::<HashKey>(),
                ) else {
                    continue;
                };
                if s.sequence_number_range()
                    .and_then(|q| q.ending_sequence_number())
                    .is_some()
                {
                    continue;
                }
                if let Some(range) = HashKeyRange::new(start, end) {
                    out.push(OpenShard {
                        id: s.shard_id().to_string(),
                        range,
                    });
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        out.sort_by_key(|s| s.range.start);
        Ok(out)
    }

    async fn tags(&self, name: &str) -> Result<BTreeMap<String, String>, KinesisError> {
        let mut out = BTreeMap::new();
        let mut start: Option<String> = None;
        loop {
            let page = self
                .client
                .list_tags_for_stream()
                .stream_name(name)
                .set_exclusive_start_tag_key(start.clone())
                .send()
                .await
                .map_err(|e| KinesisError::from_sdk("ListTagsForStream", e))?;
            for t in page.tags() {
                out.insert(
                    t.key().to_string(),
                    t.value().unwrap_or_default().to_string(),
                );
            }
            start = page.tags().last().map(|t| t.key().to_string());
            if !page.has_more_tags() || start.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Makes one call of a plan for stream `name` (`arn` where the API needs it).
    pub async fn execute(
        &self,
        name: &str,
        arn: &str,
        action: &Action,
    ) -> Result<(), KinesisError> {
        let c = &self.client;
        let op = action.name();
        match action {
            Action::CreateStream { shards, mode, tags } => {
                let mut req = c
                    .create_stream()
                    .stream_name(name)
                    .set_shard_count(*shards)
                    .stream_mode_details(mode_details(*mode));
                for (k, v) in tags {
                    req = req.tags(k, v);
                }
                req.send()
                    .await
                    .map(|_| ())
                    .map_err(|e| KinesisError::from_sdk(op, e))
            }
            Action::UpdateStreamMode(mode) => c
                .update_stream_mode()
                .stream_arn(arn)
                .stream_mode_details(mode_details(*mode))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| KinesisError::from_sdk(op, e)),
            Action::IncreaseRetention(h) => c
                .increase_stream_retention_period()
                .stream_name(name)
                .retention_period_hours(*h)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| KinesisError::from_sdk(op, e)),
            Action::DecreaseRetention(h) => c
                .decrease_stream_retention_period()
                .stream_name(name)
                .retention_period_hours(*h)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| KinesisError::from_sdk(op, e)),
            Action::EnableMonitoring(m) => c
                .enable_enhanced_monitoring()
                .stream_name(name)
                .set_shard_level_metrics(Some(metric_names(m)))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| KinesisError::from_sdk(op, e)),
            Action::DisableMonitoring(m) => c
                .disable_enhanced_monitoring()
                .stream_name(name)
                .set_shard_level_metrics(Some(metric_names(m)))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| KinesisError::from_sdk(op, e)),
            Action::AddTags(tags) => {
                let mut req = c.add_tags_to_stream().stream_name(name);
                for (k, v) in tags {
                    req = req.tags(k, v);
                }
                req.send()
                    .await
                    .map(|_| ())
                    .map_err(|e| KinesisError::from_sdk(op, e))
            }
            Action::RemoveTags(keys) => c
                .remove_tags_from_stream()
                .stream_name(name)
                .set_tag_keys(Some(keys.clone()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| KinesisError::from_sdk(op, e)),
            Action::UpdateShardCount(target) => c
                .update_shard_count()
                .stream_name(name)
                .target_shard_count(*target)
                .scaling_type(ScalingType::UniformScaling)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| KinesisError::from_sdk(op, e)),
            Action::SplitShard { shard, at } => c
                .split_shard()
                .stream_name(name)
                .shard_to_split(shard)
                .new_starting_hash_key(at.to_string())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| KinesisError::from_sdk(op, e)),
            Action::DeleteStream => match c
                .delete_stream()
                .stream_name(name)
                .enforce_consumer_deletion(true)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => {
                    let e = KinesisError::from_sdk(op, e);
                    if e.is_not_found() {
                        Ok(())
                    } else {
                        Err(e)
                    }
                }
            },
        }
    }

    /// Registers (or finds) the enhanced fan-out consumer `name` of `stream_arn`:
    /// (consumer ARN, status).
    pub async fn ensure_consumer(
        &self,
        stream_arn: &str,
        name: &str,
    ) -> Result<(String, String), KinesisError> {
        match self
            .client
            .describe_stream_consumer()
            .stream_arn(stream_arn)
            .consumer_name(name)
            .send()
            .await
        {
            Ok(out) => {
                let d = out.consumer_description().ok_or_else(|| KinesisError {
                    operation: "DescribeStreamConsumer",
                    code: "InvalidResponse".into(),
                    message: "no ConsumerDescription".into(),
                })?;
                return Ok((
                    d.consumer_arn().to_string(),
                    d.consumer_status().as_str().to_string(),
                ));
            }
            Err(e) => {
                let e = KinesisError::from_sdk("DescribeStreamConsumer", e);
                if !e.is_not_found() {
                    return Err(e);
                }
            }
        }
        let out = self
            .client
            .register_stream_consumer()
            .stream_arn(stream_arn)
            .consumer_name(name)
            .send()
            .await
            .map_err(|e| KinesisError::from_sdk("RegisterStreamConsumer", e))?;
        let c = out.consumer().ok_or_else(|| KinesisError {
            operation: "RegisterStreamConsumer",
            code: "InvalidResponse".into(),
            message: "no Consumer".into(),
        })?;
        Ok((
            c.consumer_arn().to_string(),
            c.consumer_status().as_str().to_string(),
        ))
    }

    /// Deregisters consumer `name` of `stream_arn`; a missing one is fine.
    pub async fn remove_consumer(&self, stream_arn: &str, name: &str) -> Result<(), KinesisError> {
        match self
            .client
            .deregister_stream_consumer()
            .stream_arn(stream_arn)
            .consumer_name(name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = KinesisError::from_sdk("DeregisterStreamConsumer", e);
                if e.is_not_found() {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// Whether a consumer status string is ACTIVE.
pub fn consumer_active(status: &str) -> bool {
    status == ConsumerStatus::Active.as_str()
}

fn mode_details(mode: CapacityMode) -> StreamModeDetails {
    let m = match mode {
        CapacityMode::Provisioned => StreamMode::Provisioned,
        CapacityMode::OnDemand => StreamMode::OnDemand,
    };
    StreamModeDetails::builder()
        .stream_mode(m)
        .build()
        .expect("stream_mode is set")
}

fn metric_names(m: &[ShardLevelMetric]) -> Vec<MetricsName> {
    m.iter().map(|m| MetricsName::from(m.as_str())).collect()
}
