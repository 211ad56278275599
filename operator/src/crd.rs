//! The custom resources: [`Stream`], [`Consumer`] and [`RiffleBroker`] (group
//! [`GROUP`], version `v1alpha1`).
//!
//! The CRD YAML under `crds/` (and its copy in `charts/riffle/crds/`) is generated from
//! these types by `riffle-operator crdgen`; a test fails when the checked-in files drift.
//! Field semantics are documented on each field; they become the `description`s users see
//! in `kubectl explain`.

// `#[kube(printcolumn(..), printcolumn(..))]` repeats an attribute key on purpose; clippy's
// duplicated_attributes lint reads the macro's arguments as duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every Riffle resource.
pub const GROUP: &str = "riffle.dev";
/// Finalizer put on a Stream or Consumer whose deletion must delete the Kinesis object.
pub const FINALIZER: &str = "riffle.dev/cleanup";
/// Annotation that pauses reconciliation of an object while its value is `"true"`.
pub const PAUSE_ANNOTATION: &str = "riffle.dev/paused";
/// Annotation that approves a pending reshard proposal; its value is the proposal id.
pub const APPROVE_ANNOTATION: &str = "riffle.dev/approve-reshard";
/// Label put on everything the operator renders, naming the owning object.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Label naming the Stream an object belongs to (and the `/scale` selector).
pub const STREAM_LABEL: &str = "riffle.dev/stream";
/// Kinesis's hard ceiling on UpdateShardCount calls in a rolling 24 hours.
pub const KINESIS_RESHARDS_PER_24H: u32 = 10;

/// Condition type: the object matches its spec and the Kinesis side is usable.
pub const COND_READY: &str = "Ready";
/// Condition type: a reshard is in progress or more steps toward the target remain.
pub const COND_RESHARDING: &str = "Resharding";
/// Condition type: no reshard is allowed until `status.nextReshardAllowedAt`.
pub const COND_BUDGET_EXHAUSTED: &str = "ReshardBudgetExhausted";
/// Condition type: something needs attention (API errors, missing metrics, clamps).
pub const COND_DEGRADED: &str = "Degraded";
/// Condition type: the pause annotation is set, nothing is reconciled.
pub const COND_PAUSED: &str = "ReconciliationPaused";

// ---------------------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------------------

/// A Kinesis data stream, on a Riffle broker of this cluster or on any Kinesis endpoint.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "riffle.dev",
    version = "v1alpha1",
    kind = "Stream",
    namespaced,
    status = "StreamStatus",
    derive = "PartialEq",
    shortname = "rstream",
    category = "riffle",
    doc = "A Kinesis data stream managed by the Riffle operator.",
    printcolumn(name = "Shards", type_ = "integer", json_path = ".status.openShards"),
    printcolumn(name = "Target", type_ = "integer", json_path = ".status.targetShards"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.streamStatus"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    scale(
        spec_replicas_path = ".spec.shardCount",
        status_replicas_path = ".status.openShards",
        label_selector_path = ".status.selector"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.endpoint) || !has(self.brokerRef)",
     "message": "name either endpoint or brokerRef, not both"},
    {"rule": "!has(oldSelf.streamName) || (has(self.streamName) && self.streamName == oldSelf.streamName)",
     "message": "streamName is immutable"}
]))]
pub struct StreamSpec {
    /// Name of the Kinesis stream; defaults to `metadata.name`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-zA-Z0-9_.-]+$"))]
    pub stream_name: Option<String>,
    /// Desired number of open shards (PROVISIONED mode). The operator moves toward it in
    /// steps Kinesis allows (at most double, at least half of the open shards per step)
    /// within the reshard budget. With `autoscaling.enabled`, this is the initial count and
    /// the autoscaler chooses the target afterwards.
    #[schemars(range(min = 1, max = 10000))]
    pub shard_count: i32,
    /// PROVISIONED (shards declared here) or ON_DEMAND (the endpoint sizes the stream).
    #[serde(default)]
    pub capacity_mode: CapacityMode,
    /// How long records stay readable, in hours (24 to 8760).
    #[serde(default = "default_retention_hours")]
    #[schemars(range(min = 24, max = 8760))]
    pub retention_hours: i32,
    /// Per-shard capacity. The autoscaler measures load against it, and a Riffle broker of
    /// this cluster (`brokerRef`) is configured with it.
    #[serde(default)]
    pub shard_limits: ShardLimits,
    /// Shard-level metrics to enable (EnableEnhancedMonitoring).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shard_level_metrics: Vec<ShardLevelMetric>,
    /// Tags of the stream (at most 50).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// What deleting this object does to the Kinesis stream: `Retain` (default) leaves it,
    /// `Delete` deletes it (and its consumers) before the object goes.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// A RiffleBroker in this namespace that serves the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_ref: Option<String>,
    /// An existing Kinesis endpoint (another Riffle, or Amazon Kinesis) instead of a
    /// RiffleBroker. Without `brokerRef` and `endpoint`, the operator's default endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointSpec>,
    /// Shard autoscaling from the endpoint's per-shard metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
}

fn default_retention_hours() -> i32 {
    24
}

impl StreamSpec {
    /// The autoscaling settings when autoscaling is enabled.
    pub fn autoscaling_enabled(&self) -> Option<&AutoscalingSpec> {
        self.autoscaling.as_ref().filter(|a| a.enabled)
    }

    /// The most reshards allowed in a rolling 24 hours for this stream.
    pub fn reshard_limit(&self) -> u32 {
        self.autoscaling
            .as_ref()
            .map(|a| a.max_reshards_per24h.clamp(1, KINESIS_RESHARDS_PER_24H))
            .unwrap_or(KINESIS_RESHARDS_PER_24H)
    }
}

impl Stream {
    /// The Kinesis stream name: `spec.streamName`, or the object's name.
    pub fn stream_name(&self) -> String {
        self.spec
            .stream_name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}

/// Capacity mode of a stream.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CapacityMode {
    /// Shards are declared (`shardCount`) and resharded by the operator.
    #[default]
    Provisioned,
    /// The endpoint manages shards; `shardCount` and autoscaling are ignored.
    OnDemand,
}

/// What happens to the Kinesis stream when its object is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave the stream (and its data) in place.
    #[default]
    Retain,
    /// Delete the stream and its consumers.
    Delete,
}

/// Per-shard limits, Kinesis's defaults unless set.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardLimits {
    /// Bytes (data + partition key) written per shard per second.
    #[serde(default = "default_write_bytes")]
    #[schemars(range(min = 1))]
    pub write_bytes_per_second: u64,
    /// Records written per shard per second.
    #[serde(default = "default_write_records")]
    #[schemars(range(min = 1))]
    pub write_records_per_second: u64,
    /// Bytes read per shard per second (GetRecords).
    #[serde(default = "default_read_bytes")]
    #[schemars(range(min = 1))]
    pub read_bytes_per_second: u64,
}

fn default_write_bytes() -> u64 {
    1 << 20
}
fn default_write_records() -> u64 {
    1000
}
fn default_read_bytes() -> u64 {
    2 << 20
}

impl Default for ShardLimits {
    fn default() -> Self {
        Self {
            write_bytes_per_second: default_write_bytes(),
            write_records_per_second: default_write_records(),
            read_bytes_per_second: default_read_bytes(),
        }
    }
}

/// A shard-level metric of EnableEnhancedMonitoring.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[allow(missing_docs)]
pub enum ShardLevelMetric {
    IncomingBytes,
    IncomingRecords,
    OutgoingBytes,
    OutgoingRecords,
    WriteProvisionedThroughputExceeded,
    ReadProvisionedThroughputExceeded,
    IteratorAgeMilliseconds,
}

impl ShardLevelMetric {
    /// Every metric, in Kinesis's order.
    pub const ALL: [ShardLevelMetric; 7] = [
        Self::IncomingBytes,
        Self::IncomingRecords,
        Self::OutgoingBytes,
        Self::OutgoingRecords,
        Self::WriteProvisionedThroughputExceeded,
        Self::ReadProvisionedThroughputExceeded,
        Self::IteratorAgeMilliseconds,
    ];

    /// The Kinesis API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IncomingBytes => "IncomingBytes",
            Self::IncomingRecords => "IncomingRecords",
            Self::OutgoingBytes => "OutgoingBytes",
            Self::OutgoingRecords => "OutgoingRecords",
            Self::WriteProvisionedThroughputExceeded => "WriteProvisionedThroughputExceeded",
            Self::ReadProvisionedThroughputExceeded => "ReadProvisionedThroughputExceeded",
            Self::IteratorAgeMilliseconds => "IteratorAgeMilliseconds",
        }
    }

    /// Parses a Kinesis API name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// An existing Kinesis endpoint.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSpec {
    /// Kinesis API URL, e.g. `http://riffle.streams.svc:4567`. For Amazon Kinesis,
    /// `https://kinesis.<region>.amazonaws.com`.
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// Signing region (default `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Prometheus text endpoint with the `riffle_*` per-shard series, needed by the
    /// autoscaler (a Riffle broker's admin `/metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_url: Option<String>,
    /// Secret (same namespace) with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`;
    /// without it the operator's own AWS credentials chain is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

/// Shard autoscaling settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.minShards <= self.maxShards", "message": "minShards must not exceed maxShards"},
    {"rule": "self.reserveForScaleUp < self.maxReshardsPer24h",
     "message": "reserveForScaleUp must be below maxReshardsPer24h"}
]))]
pub struct AutoscalingSpec {
    /// Turns the autoscaler on.
    #[serde(default)]
    pub enabled: bool,
    /// Fewest open shards the autoscaler goes to.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10000))]
    pub min_shards: i32,
    /// Most open shards the autoscaler goes to.
    #[serde(default = "default_max_shards")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_shards: i32,
    /// Utilization of the busiest shard (percent of its write or read limit) to keep
    /// below; scale-up above it, scale-down only when the result stays below 75% of it.
    #[serde(default = "default_target")]
    #[schemars(range(min = 10, max = 95))]
    pub target_utilization_percent: u32,
    /// Load is averaged over this window; a decision needs a full window of samples.
    #[serde(default = "default_window")]
    pub window: HumanDuration,
    /// Least time after any reshard before the next scale-up.
    #[serde(default = "default_up_cooldown")]
    pub scale_up_cooldown: HumanDuration,
    /// Least time after any reshard before a scale-down.
    #[serde(default = "default_down_cooldown")]
    pub scale_down_cooldown: HumanDuration,
    /// Reshards allowed in any rolling 24 hours (1 to 10, Kinesis's ceiling). Every
    /// UpdateShardCount, SplitShard and MergeShards the operator makes counts as one.
    #[serde(default = "default_max_reshards")]
    #[schemars(range(min = 1, max = 10))]
    pub max_reshards_per24h: u32,
    /// Reshards kept in reserve for scaling up: a scale-down is made only if at least
    /// this many remain after it.
    #[serde(default = "default_reserve")]
    #[schemars(range(min = 0, max = 9))]
    pub reserve_for_scale_up: u32,
    /// `Auto` executes decisions; `Manual` records each as `status.pendingProposal` and
    /// waits for the annotation `riffle.dev/approve-reshard: <proposal id>`.
    #[serde(default)]
    pub approval: Approval,
}

fn one() -> i32 {
    1
}
fn default_max_shards() -> i32 {
    64
}
fn default_target() -> u32 {
    70
}
fn default_window() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
fn default_up_cooldown() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
fn default_down_cooldown() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}
fn default_max_reshards() -> u32 {
    KINESIS_RESHARDS_PER_24H
}
fn default_reserve() -> u32 {
    2
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            min_shards: one(),
            max_shards: default_max_shards(),
            target_utilization_percent: default_target(),
            window: default_window(),
            scale_up_cooldown: default_up_cooldown(),
            scale_down_cooldown: default_down_cooldown(),
            max_reshards_per24h: default_max_reshards(),
            reserve_for_scale_up: default_reserve(),
            approval: Approval::Auto,
        }
    }
}

/// How autoscaler decisions are carried out.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Approval {
    /// Execute each decision at once.
    #[default]
    Auto,
    /// Record the proposal and wait for the approval annotation.
    Manual,
}

/// A duration written like `30s`, `5m`, `1h30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = humantime::format_duration(self.0).to_string();
        f.write_str(&s.replace(' ', ""))
    }
}

impl FromStr for HumanDuration {
    type Err = humantime::DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s).map(HumanDuration)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HumanDuration".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d))+$",
            "description": "A duration such as 30s, 5m or 1h30m."
        })
    }
}

/// Observed state of a Stream.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Resharding, ReshardBudgetExhausted, Degraded, ReconciliationPaused.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The endpoint's StreamStatus: CREATING, ACTIVE, UPDATING or DELETING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_status: Option<String>,
    /// The stream's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_arn: Option<String>,
    /// The Kinesis endpoint the stream lives on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Open shards now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_shards: Option<i32>,
    /// Shards the operator is moving toward (spec, `/scale` or autoscaler, after clamping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_shards: Option<i32>,
    /// Label selector for the `/scale` subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Why the requested shard count was clamped, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_clamp: Option<String>,
    /// Every reshard the operator made in the last 24 hours (the budget ledger).
    #[serde(default)]
    pub reshard_history: Vec<ReshardRecord>,
    /// Reshards still allowed in the rolling 24 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reshard_budget_remaining: Option<u32>,
    /// Earliest time the next reshard is allowed (budget and cooldowns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_reshard_allowed_at: Option<Time>,
    /// The autoscaler's last decision, its reason and the load it saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<AutoscalerDecision>,
    /// A decision waiting for approval (`approval: Manual`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_proposal: Option<ReshardProposal>,
}

/// One reshard in the ledger.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReshardRecord {
    /// When the operator made the call.
    pub time: Time,
    /// UpdateShardCount, SplitShard or MergeShards.
    pub operation: ReshardOperation,
    /// Open shards before.
    pub from_shards: i32,
    /// Open shards after.
    pub to_shards: i32,
    /// The shard split or merged (SplitShard, MergeShards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// What asked for it.
    pub trigger: ReshardTrigger,
}

/// The Kinesis operation of a reshard.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[allow(missing_docs)]
pub enum ReshardOperation {
    UpdateShardCount,
    SplitShard,
    MergeShards,
}

/// What asked for a reshard.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ReshardTrigger {
    /// `spec.shardCount` (edited, or set through `/scale`).
    Spec,
    /// The autoscaler.
    Autoscaler,
}

/// The autoscaler's decision at one evaluation.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerDecision {
    /// When it was made.
    pub time: Time,
    /// `ScaleUp`, `ScaleDown`, `SplitShard` or `None`.
    pub action: String,
    /// Open shards when decided.
    pub from_shards: i32,
    /// Shards it asks for (equal to `fromShards` for `None`).
    pub to_shards: i32,
    /// Why.
    pub reason: String,
    /// The load it saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadSummary>,
}

/// Load over the autoscaler's window, summarized.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadSummary {
    /// Seconds of samples the rates come from.
    pub window_seconds: u64,
    /// Busiest shard's utilization, percent of its limits.
    pub max_shard_utilization_percent: u32,
    /// The busiest shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busiest_shard: Option<String>,
    /// Stream-wide utilization, percent of all open shards' limits.
    pub stream_utilization_percent: u32,
    /// Incoming bytes per second, whole stream.
    pub incoming_bytes_per_second: u64,
    /// Incoming records per second, whole stream.
    pub incoming_records_per_second: u64,
    /// Records refused for throughput per second, whole stream.
    pub write_throttled_per_second: u64,
    /// GetRecords calls refused for throughput per second, whole stream.
    pub read_throttled_per_second: u64,
    /// Highest iterator age over the open shards, ms.
    pub max_iterator_age_ms: u64,
}

/// A reshard waiting for approval.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReshardProposal {
    /// Put this in the `riffle.dev/approve-reshard` annotation to approve.
    pub id: String,
    /// When it was proposed.
    pub time: Time,
    /// `ScaleUp`, `ScaleDown` or `SplitShard`.
    pub action: String,
    /// Open shards when proposed.
    pub from_shards: i32,
    /// Shards after the step.
    pub to_shards: i32,
    /// The shard to split (`SplitShard`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// Why.
    pub reason: String,
}

// ---------------------------------------------------------------------------------------
// Consumer
// ---------------------------------------------------------------------------------------

/// A consumer of a Stream: an enhanced fan-out consumer (RegisterStreamConsumer) or a
/// polling one, and the credentials it reads with.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "riffle.dev",
    version = "v1alpha1",
    kind = "Consumer",
    namespaced,
    status = "ConsumerStatus",
    derive = "PartialEq",
    shortname = "rconsumer",
    category = "riffle",
    doc = "A consumer of a Riffle Stream and the credentials it reads with.",
    printcolumn(name = "Stream", type_ = "string", json_path = ".spec.streamRef"),
    printcolumn(name = "Kind", type_ = "string", json_path = ".spec.kind"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.streamRef == oldSelf.streamRef", "message": "streamRef is immutable"},
    {"rule": "self.kind == oldSelf.kind", "message": "kind is immutable"}
]))]
pub struct ConsumerSpec {
    /// Name of the Stream object (same namespace) this consumer reads.
    #[schemars(length(min = 1))]
    pub stream_ref: String,
    /// `EnhancedFanOut` registers a stream consumer (SubscribeToShard); `Polling` reads
    /// with GetRecords and registers nothing.
    pub kind: ConsumerKind,
    /// Registered consumer name (EnhancedFanOut); defaults to `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-zA-Z0-9_.-]+$"))]
    pub consumer_name: Option<String>,
    /// Name of the credentials Secret to write; defaults to `<name>-riffle-credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// A ServiceAccount (same namespace) whose projected tokens may assume this consumer's
    /// role with AssumeRoleWithWebIdentity; the Secret then also carries `AWS_ROLE_ARN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account: Option<String>,
}

impl Consumer {
    /// The registered consumer name.
    pub fn consumer_name(&self) -> String {
        self.spec
            .consumer_name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }

    /// The credentials Secret's name.
    pub fn secret_name(&self) -> String {
        self.spec.secret_name.clone().unwrap_or_else(|| {
            format!(
                "{}-riffle-credentials",
                self.metadata.name.as_deref().unwrap_or_default()
            )
        })
    }
}

/// How a consumer reads.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConsumerKind {
    /// RegisterStreamConsumer + SubscribeToShard.
    EnhancedFanOut,
    /// GetShardIterator + GetRecords.
    Polling,
}

/// Observed state of a Consumer.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Degraded.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// ARN of the stream read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_arn: Option<String>,
    /// ARN of the registered consumer (EnhancedFanOut).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_arn: Option<String>,
    /// CREATING, ACTIVE or DELETING (EnhancedFanOut).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_status: Option<String>,
    /// The credentials Secret written for this consumer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The role its service account assumes (with `serviceAccount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

// ---------------------------------------------------------------------------------------
// RiffleBroker
// ---------------------------------------------------------------------------------------

/// A Riffle broker workload: rendered as a StatefulSet (a volume per pod), a headless and a
/// client Service, a ConfigMap, a PodDisruptionBudget and, when the Prometheus operator's
/// CRD exists, a ServiceMonitor.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "riffle.dev",
    version = "v1alpha1",
    kind = "RiffleBroker",
    namespaced,
    status = "RiffleBrokerStatus",
    derive = "PartialEq",
    shortname = "rbroker",
    category = "riffle",
    doc = "A Riffle broker workload managed by the Riffle operator.",
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(
        name = "ReadyReplicas",
        type_ = "integer",
        json_path = ".status.readyReplicas"
    ),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RiffleBrokerSpec {
    /// Broker container image.
    pub image: String,
    /// Image pull policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Broker pods. 1 until multi-broker shard placement exists.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1))]
    pub replicas: i32,
    /// The data volume of each pod.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// A `kubernetes.io/tls` Secret; when set the broker also serves TLS on port 4568.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
    /// A Secret whose `keys.toml` is the broker's encryption key file (a `[keys]` table of
    /// key id = 256-bit key, docs/security.md): mounted, and reread when it changes, for
    /// StartStreamEncryption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_keys_secret: Option<String>,
    /// Broker settings (docs/configuration.md) as a map, written to its TOML config.
    /// `listen`, `admin_listen`, `data_dir` and `[tls]` are set by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
    pub config: Option<BTreeMap<String, serde_json::Value>>,
    /// Labels for the ServiceMonitor (to match a Prometheus' serviceMonitorSelector).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_monitor_labels: BTreeMap<String, String>,
}

/// The data volume of each broker pod.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Volume size, e.g. `10Gi`.
    #[serde(default = "default_storage_size")]
    pub size: String,
    /// StorageClass; the cluster's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn default_storage_size() -> String {
    "10Gi".to_string()
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// Observed state of a RiffleBroker.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RiffleBrokerStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Degraded.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Pods ready, from the StatefulSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Kinesis API URL of the client Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Metrics URL of the client Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_url: Option<String>,
    /// Whether a ServiceMonitor was rendered.
    #[serde(default)]
    pub service_monitor: bool,
}

// ---------------------------------------------------------------------------------------
// CRD generation
// ---------------------------------------------------------------------------------------

/// The CRDs as one multi-document YAML, as written to `crds/riffle.dev.yaml`.
pub fn crds_yaml() -> String {
    use kube::CustomResourceExt;
    let docs = [Stream::crd(), Consumer::crd(), RiffleBroker::crd()];
    let mut out = String::from("# Generated by `riffle-operator crdgen`: do not edit.\n");
    for crd in docs {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd).expect("a CRD serializes"));
    }
    out
}

#[cfg(test)]
mod tests;
