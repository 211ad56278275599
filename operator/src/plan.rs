//! The converge planner: a Stream's spec and the stream the endpoint describes → the
//! Kinesis calls that bring one to the other. Pure; [`crate::kinesis`] executes the plan.
//!
//! Resharding is planned apart ([`crate::autoscale`]), because it is budgeted.

use std::collections::{BTreeMap, BTreeSet};

use riffle_core::{HashKey, HashKeyRange};

use crate::crd::{CapacityMode, ShardLevelMetric, StreamSpec};

/// The endpoint's StreamStatus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// CREATING.
    Creating,
    /// ACTIVE.
    Active,
    /// UPDATING.
    Updating,
    /// DELETING.
    Deleting,
}

impl Phase {
    /// The Kinesis spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Creating => "CREATING",
            Phase::Active => "ACTIVE",
            Phase::Updating => "UPDATING",
            Phase::Deleting => "DELETING",
        }
    }
}

/// An open shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenShard {
    /// Shard id.
    pub id: String,
    /// Its hash-key range.
    pub range: HashKeyRange,
}

/// What the endpoint says about a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// StreamStatus.
    pub phase: Phase,
    /// StreamARN.
    pub arn: String,
    /// Capacity mode.
    pub mode: CapacityMode,
    /// RetentionPeriodHours.
    pub retention_hours: i32,
    /// Open shards, sorted by hash range.
    pub open_shards: Vec<OpenShard>,
    /// Enabled shard-level metrics.
    pub shard_level_metrics: BTreeSet<ShardLevelMetric>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Observed {
    /// Number of open shards.
    pub fn open_count(&self) -> i32 {
        i32::try_from(self.open_shards.len()).unwrap_or(i32::MAX)
    }
}

/// One Kinesis call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// CreateStream.
    CreateStream {
        /// ShardCount (PROVISIONED).
        shards: Option<i32>,
        /// StreamModeDetails.
        mode: CapacityMode,
        /// Tags given at creation.
        tags: BTreeMap<String, String>,
    },
    /// UpdateStreamMode.
    UpdateStreamMode(CapacityMode),
    /// IncreaseStreamRetentionPeriod.
    IncreaseRetention(i32),
    /// DecreaseStreamRetentionPeriod.
    DecreaseRetention(i32),
    /// EnableEnhancedMonitoring.
    EnableMonitoring(Vec<ShardLevelMetric>),
    /// DisableEnhancedMonitoring.
    DisableMonitoring(Vec<ShardLevelMetric>),
    /// AddTagsToStream.
    AddTags(BTreeMap<String, String>),
    /// RemoveTagsFromStream.
    RemoveTags(Vec<String>),
    /// UpdateShardCount (UNIFORM_SCALING).
    UpdateShardCount(i32),
    /// SplitShard.
    SplitShard {
        /// ShardToSplit.
        shard: String,
        /// NewStartingHashKey.
        at: HashKey,
    },
    /// DeleteStream (EnforceConsumerDeletion).
    DeleteStream,
}

impl Action {
    /// Whether the call moves the stream out of ACTIVE (the executor stops after it).
    pub fn changes_status(&self) -> bool {
        matches!(
            self,
            Action::CreateStream { .. }
                | Action::UpdateStreamMode(_)
                | Action::UpdateShardCount(_)
                | Action::SplitShard { .. }
                | Action::DeleteStream
        )
    }

    /// The Kinesis operation name.
    pub fn name(&self) -> &'static str {
        match self {
            Action::CreateStream { .. } => "CreateStream",
            Action::UpdateStreamMode(_) => "UpdateStreamMode",
            Action::IncreaseRetention(_) => "IncreaseStreamRetentionPeriod",
            Action::DecreaseRetention(_) => "DecreaseStreamRetentionPeriod",
            Action::EnableMonitoring(_) => "EnableEnhancedMonitoring",
            Action::DisableMonitoring(_) => "DisableEnhancedMonitoring",
            Action::AddTags(_) => "AddTagsToStream",
            Action::RemoveTags(_) => "RemoveTagsFromStream",
            Action::UpdateShardCount(_) => "UpdateShardCount",
            Action::SplitShard { .. } => "SplitShard",
            Action::DeleteStream => "DeleteStream",
        }
    }
}

/// The calls (other than resharding) that make `observed` match `spec`, in the order they
/// are to be made: creation, mode, retention, shard-level metrics, tags. Only an ACTIVE
/// stream is changed; a stream in any other phase gets no calls until it is ACTIVE.
pub fn converge(spec: &StreamSpec, observed: Option<&Observed>) -> Vec<Action> {
    let Some(obs) = observed else {
        return vec![Action::CreateStream {
            shards: (spec.capacity_mode == CapacityMode::Provisioned).then_some(spec.shard_count),
            mode: spec.capacity_mode,
            tags: spec.tags.clone(),
        }];
    };
    if obs.phase != Phase::Active {
        return Vec::new();
    }
    let mut out = Vec::new();
    if obs.mode != spec.capacity_mode {
        out.push(Action::UpdateStreamMode(spec.capacity_mode));
    }
    if obs.retention_hours < spec.retention_hours {
        out.push(Action::IncreaseRetention(spec.retention_hours));
    } else if obs.retention_hours > spec.retention_hours {
        out.push(Action::DecreaseRetention(spec.retention_hours));
    }
    let want: BTreeSet<ShardLevelMetric> = spec.shard_level_metrics.iter().copied().collect();
    let enable: Vec<_> = want.difference(&obs.shard_level_metrics).copied().collect();
    let disable: Vec<_> = obs.shard_level_metrics.difference(&want).copied().collect();
    if !enable.is_empty() {
        out.push(Action::EnableMonitoring(enable));
    }
    if !disable.is_empty() {
        out.push(Action::DisableMonitoring(disable));
    }
    let add: BTreeMap<_, _> = spec
        .tags
        .iter()
        .filter(|(k, v)| obs.tags.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove: Vec<_> = obs
        .tags
        .keys()
        .filter(|k| !spec.tags.contains_key(*k))
        .cloned()
        .collect();
    if !add.is_empty() {
        out.push(Action::AddTags(add));
    }
    if !remove.is_empty() {
        out.push(Action::RemoveTags(remove));
    }
    out
}

/// The calls to make now: the plan up to and including its first status-changing call.
pub fn next_batch(plan: Vec<Action>) -> Vec<Action> {
    let mut out = Vec::new();
    for a in plan {
        let stop = a.changes_status();
        out.push(a);
        if stop {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> StreamSpec {
        serde_json::from_value(serde_json::json!({"shardCount": 2})).unwrap()
    }

    fn observed() -> Observed {
        Observed {
            phase: Phase::Active,
            arn: "arn:aws:kinesis:us-east-1:000000000000:stream/s".into(),
            mode: CapacityMode::Provisioned,
            retention_hours: 24,
            open_shards: HashKeyRange::even_split(2)
                .into_iter()
                .enumerate()
                .map(|(i, range)| OpenShard {
                    id: format!("shardId-{i:012}"),
                    range,
                })
                .collect(),
            shard_level_metrics: BTreeSet::new(),
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn a_missing_stream_is_created_with_its_tags() {
        let mut s = spec();
        s.tags.insert("team".into(), "payments".into());
        assert_eq!(
            converge(&s, None),
            vec![Action::CreateStream {
                shards: Some(2),
                mode: CapacityMode::Provisioned,
                tags: s.tags.clone(),
            }]
        );
        s.capacity_mode = CapacityMode::OnDemand;
        assert!(matches!(
            &converge(&s, None)[..],
            [Action::CreateStream {
                shards: None,
                mode: CapacityMode::OnDemand,
                ..
            }]
        ));
    }

    #[test]
    fn a_matching_stream_needs_nothing_and_a_busy_one_waits() {
        assert_eq!(converge(&spec(), Some(&observed())), vec![]);
        let mut s = spec();
        s.retention_hours = 48;
        let mut o = observed();
        o.phase = Phase::Updating;
        assert_eq!(converge(&s, Some(&o)), vec![]);
    }

    #[test]
    fn differences_become_calls_in_order() {
        let mut s = spec();
        s.capacity_mode = CapacityMode::OnDemand;
        s.retention_hours = 48;
        s.shard_level_metrics = vec![ShardLevelMetric::IncomingBytes];
        s.tags = BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]);
        let mut o = observed();
        o.shard_level_metrics = BTreeSet::from([ShardLevelMetric::OutgoingBytes]);
        o.tags = BTreeMap::from([("a".into(), "0".into()), ("z".into(), "9".into())]);
        let plan = converge(&s, Some(&o));
        assert_eq!(
            plan,
            vec![
                Action::UpdateStreamMode(CapacityMode::OnDemand),
                Action::IncreaseRetention(48),
                Action::EnableMonitoring(vec![ShardLevelMetric::IncomingBytes]),
                Action::DisableMonitoring(vec![ShardLevelMetric::OutgoingBytes]),
                Action::AddTags(BTreeMap::from([
                    ("a".into(), "1".into()),
                    ("b".into(), "2".into())
                ])),
                Action::RemoveTags(vec!["z".into()]),
            ]
        );
        assert_eq!(
            next_batch(plan),
            vec![Action::UpdateStreamMode(CapacityMode::OnDemand)]
        );
        let mut s2 = spec();
        s2.retention_hours = 24;
        o.retention_hours = 72;
        let batch = next_batch(converge(&s2, Some(&o)));
        assert_eq!(batch[0], Action::DecreaseRetention(24));
        assert_eq!(
            batch.len(),
            3,
            "retention, monitoring and tags go together: {batch:?}"
        );
    }
}
