//! Resharding: SplitShard, MergeShards, UpdateShardCount.
//!
//! A reshard runs under the stream's shard-map write lock: parents are sealed (every write
//! queued before the lock was taken lands first), closed at their last position, and the
//! children take over their hash ranges at once. The stream is UPDATING for the configured
//! status delay afterwards.
//!
//! UpdateShardCount is planned by the pure [`plan_uniform`]: split open shards at every
//! boundary of the even target split, then merge the pieces inside each target range, so
//! every child has at most two parents, as Kinesis's shard model requires.

use std::sync::Arc;

use riffle_core::{HashKey, HashKeyRange, ShardId};
use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;
use crate::api::ops::records::parse_shard_id;
use crate::api::ops::streams::shard_limit_message;
use crate::api::validate::{self, Validator};
use crate::api::{check_stream_ref, stream_ref};
use crate::broker::{Broker, ShardMap, Stream, StreamMode, StreamStatus, DAY_MS};
use crate::error::Error;
use crate::shard::{Shard, ShardSpec};

/// One step of a reshard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Split `shard` so the second child starts at `at`.
    Split {
        /// The shard index to split.
        shard: u32,
        /// The second child's first hash key.
        at: HashKey,
    },
    /// Merge `shard` with the shard right after it.
    Merge {
        /// The lower shard.
        shard: u32,
        /// The adjacent, higher shard.
        adjacent: u32,
    },
}

/// The steps that turn `open` (sorted by range) into `target` evenly split shards, given
/// that new shards take indexes from `next_index` on.
pub fn plan_uniform(open: &[(u32, HashKeyRange)], mut next_index: u32, target: u32) -> Vec<Step> {
    let mut open: Vec<(u32, HashKeyRange)> = open.to_vec();
    let goal = HashKeyRange::even_split(target);
    let mut steps = Vec::new();
    for g in goal.iter().skip(1) {
        let at = g.start;
        let i = open.partition_point(|(_, r)| r.start <= at) - 1;
        let (id, r) = open[i];
        if r.start == at {
            continue;
        }
        let (a, b) = r.split_at(at).expect("boundary inside the range");
        steps.push(Step::Split { shard: id, at });
        open.splice(i..=i, [(next_index, a), (next_index + 1, b)]);
        next_index += 2;
    }
    for g in &goal {
        loop {
            let inside: Vec<usize> = (0..open.len())
                .filter(|&i| open[i].1.start >= g.start && open[i].1.end <= g.end)
                .collect();
            if inside.len() < 2 {
                break;
            }
            let (i, j) = (inside[0], inside[1]);
            let merged = open[i]
                .1
                .merge(&open[j].1)
                .expect("neighbours are adjacent");
            steps.push(Step::Merge {
                shard: open[i].0,
                adjacent: open[j].0,
            });
            open.splice(i..=j, [(next_index, merged)]);
            next_index += 1;
        }
    }
    steps
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

/// Resharding by hand is for provisioned streams; Kinesis scales an on-demand stream itself
/// and refuses SplitShard, MergeShards and UpdateShardCount on it with a ValidationException.
fn require_provisioned(broker: &Broker, stream: &Stream, operation: &str) -> Result<(), ApiError> {
    if stream.settings.lock().mode == StreamMode::OnDemand {
        return Err(ApiError::validation(format!(
            "{operation} is not supported for stream {} under account {} because it is in \
             ON_DEMAND mode. Switch the stream to PROVISIONED mode with UpdateStreamMode first.",
            stream.name, broker.config.account_id
        )));
    }
    Ok(())
}

fn already_resharded(broker: &Broker, stream: &Stream, id: ShardId) -> ApiError {
    ApiError::invalid_argument(format!(
        "Shard {id} in stream {} under account {} has already been merged or split, and thus is not eligible for merging or splitting.",
        stream.name, broker.config.account_id
    ))
}

async fn new_child(
    broker: &Broker,
    stream: &Stream,
    map: &mut ShardMap,
    range: HashKeyRange,
    parent: ShardId,
    adjacent: Option<ShardId>,
    now: i64,
) -> Result<(), ApiError> {
    let id = ShardId(map.next_index);
    map.next_index += 1;
    let spec = ShardSpec {
        id,
        range,
        parent: Some(parent),
        adjacent_parent: adjacent,
        created_ms: now,
        closed: None,
    };
    let shard = broker.start_shard(stream, spec).await?;
    map.all.insert(id.index(), shard);
    Ok(())
}

async fn open_shard(map: &ShardMap, id: u32) -> Option<Arc<Shard>> {
    map.all.get(&id).filter(|s| s.is_open()).cloned()
}

/// Applies one step to the map. The caller holds the map's write lock.
async fn apply(
    broker: &Broker,
    stream: &Stream,
    map: &mut ShardMap,
    step: Step,
    now: i64,
) -> Result<(), ApiError> {
    match step {
        Step::Split { shard, at } => {
            let parent = open_shard(map, shard)
                .await
                .expect("planned on open shards");
            let (a, b) = parent.range.split_at(at).expect("validated split point");
            parent.seal(Some(now)).await;
            new_child(broker, stream, map, a, parent.id, None, now).await?;
            new_child(broker, stream, map, b, parent.id, None, now).await?;
        }
        Step::Merge { shard, adjacent } => {
            let p = open_shard(map, shard)
                .await
                .expect("planned on open shards");
            let q = open_shard(map, adjacent)
                .await
                .expect("planned on open shards");
            let range = p.range.merge(&q.range).expect("validated adjacency");
            p.seal(Some(now)).await;
            q.seal(Some(now)).await;
            new_child(broker, stream, map, range, p.id, Some(q.id), now).await?;
        }
    }
    map.reindex();
    Ok(())
}

/// Records the new shard map durably — while its write lock is still held, so no write can
/// be acknowledged on a child the metadata does not know yet — then marks the stream
/// UPDATING until the status delay passes.
async fn finish(
    broker: &Arc<Broker>,
    stream: &Arc<Stream>,
    map: tokio::sync::RwLockWriteGuard<'_, ShardMap>,
) -> Result<(), ApiError> {
    stream.settings.lock().status = StreamStatus::Updating;
    broker.persist_holding(Some((stream, &map))).await?;
    drop(map);
    broker.finish_transition(stream, StreamStatus::Active);
    Ok(())
}

/// SplitShard input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SplitShardInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_to_split: Option<String>,
    new_starting_hash_key: Option<String>,
}

/// SplitShard.
pub async fn split_shard(broker: Arc<Broker>, input: SplitShardInput) -> Result<(), ApiError> {
    let mut v = Validator::new();
    v.string(
        "newStartingHashKey",
        input.new_starting_hash_key.as_deref(),
        true,
        Some((validate::HASH_KEY_PATTERN, validate::is_hash_key)),
        0,
        usize::MAX,
    );
    v.name("shardToSplit", input.shard_to_split.as_deref(), true);
    check_stream_ref(
        &mut v,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    );
    v.finish()?;
    let raw = input.shard_to_split.unwrap_or_default();
    let label = input
        .stream_name
        .clone()
        .or(input.stream_arn.clone())
        .unwrap_or_default();
    let id = parse_shard_id(&raw).ok_or(Error::ShardNotFound {
        stream: label,
        shard: raw,
    })?;
    let stream = stream_ref(
        &broker,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    )?;
    let _control = broker.control().await;
    require_active(&stream)?;
    require_provisioned(&broker, &stream, "SplitShard")?;
    let map = stream.shards.write().await;
    let shard = map
        .all
        .get(&id.index())
        .cloned()
        .ok_or_else(|| Error::ShardNotFound {
            stream: stream.name.clone(),
            shard: id.to_string(),
        })?;
    if !shard.is_open() {
        return Err(already_resharded(&broker, &stream, id));
    }
    drop(map);
    let current = broker.open_shard_count().await;
    if current + 1 > broker.config.streams.shard_limit {
        return Err(Error::LimitExceeded(shard_limit_message(&broker, current, 1)).into());
    }
    let mut map = stream.shards.write().await;
    let key_str = input.new_starting_hash_key.unwrap_or_default();
    let at: Option<HashKey> = key_str.parse().ok();
    let r = shard.range;
    let valid = at.is_some_and(|k| k.0 > r.start.0.saturating_add(1) && k < r.end);
    let Some(at) = at.filter(|_| valid) else {
        return Err(ApiError::invalid_argument(format!(
            "NewStartingHashKey {key_str} used in SplitShard() on shard {id} in stream {} under account {} is not both greater than one plus the shard's StartingHashKey {} and less than the shard's EndingHashKey {}.",
            stream.name, broker.config.account_id, r.start, r.end
        )));
    };
    let now = broker.clock.now_ms();
    apply(
        &broker,
        &stream,
        &mut map,
        Step::Split {
            shard: id.index(),
            at,
        },
        now,
    )
    .await?;
    tracing::info!(stream = %stream.name, shard = %id, "split");
    finish(&broker, &stream, map).await
}

/// MergeShards input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MergeShardsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_to_merge: Option<String>,
    adjacent_shard_to_merge: Option<String>,
}

/// MergeShards.
pub async fn merge_shards(broker: Arc<Broker>, input: MergeShardsInput) -> Result<(), ApiError> {
    let mut v = Validator::new();
    v.name("shardToMerge", input.shard_to_merge.as_deref(), true);
    v.name(
        "adjacentShardToMerge",
        input.adjacent_shard_to_merge.as_deref(),
        true,
    );
    check_stream_ref(
        &mut v,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    );
    v.finish()?;
    let label = input
        .stream_name
        .clone()
        .or(input.stream_arn.clone())
        .unwrap_or_default();
    let parse = |raw: Option<String>| {
        let raw = raw.unwrap_or_default();
        parse_shard_id(&raw).ok_or(Error::ShardNotFound {
            stream: label.clone(),
            shard: raw,
        })
    };
    let a = parse(input.shard_to_merge)?;
    let b = parse(input.adjacent_shard_to_merge)?;
    let stream = stream_ref(
        &broker,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    )?;
    let _control = broker.control().await;
    require_active(&stream)?;
    require_provisioned(&broker, &stream, "MergeShards")?;
    let map = stream.shards.write().await;
    let get = |id: ShardId| {
        map.all
            .get(&id.index())
            .cloned()
            .ok_or_else(|| Error::ShardNotFound {
                stream: stream.name.clone(),
                shard: id.to_string(),
            })
    };
    let (sa, sb) = (get(a)?, get(b)?);
    let mut map = map;
    for s in [&sa, &sb] {
        if !s.is_open() {
            return Err(already_resharded(&broker, &stream, s.id));
        }
    }
    if !sa.range.is_followed_by(&sb.range) {
        return Err(ApiError::invalid_argument(format!(
            "Shards {a} and {b} in stream {} under account {} are not an adjacent pair of shards eligible for merging",
            stream.name, broker.config.account_id
        )));
    }
    let now = broker.clock.now_ms();
    apply(
        &broker,
        &stream,
        &mut map,
        Step::Merge {
            shard: a.index(),
            adjacent: b.index(),
        },
        now,
    )
    .await?;
    tracing::info!(stream = %stream.name, %a, %b, "merged");
    finish(&broker, &stream, map).await
}

/// UpdateShardCount input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateShardCountInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    #[serde(default, deserialize_with = "crate::api::wire::java_integer")]
    target_shard_count: Option<i64>,
    scaling_type: Option<String>,
}

/// UpdateShardCount output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateShardCountOutput {
    stream_name: String,
    current_shard_count: u32,
    target_shard_count: u32,
    #[serde(rename = "StreamARN")]
    stream_arn: String,
}

/// UpdateShardCount (UNIFORM_SCALING).
pub async fn update_shard_count(
    broker: Arc<Broker>,
    input: UpdateShardCountInput,
) -> Result<UpdateShardCountOutput, ApiError> {
    let mut v = Validator::new();
    v.one_of(
        "scalingType",
        input.scaling_type.as_deref(),
        true,
        &["UNIFORM_SCALING"],
    );
    check_stream_ref(
        &mut v,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    );
    v.int(
        "targetShardCount",
        input.target_shard_count,
        true,
        1,
        100_000,
    );
    v.finish()?;
    let stream = stream_ref(
        &broker,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    )?;
    let target = input.target_shard_count.unwrap_or_default() as u32;
    let _control = broker.control().await;
    require_active(&stream)?;
    require_provisioned(&broker, &stream, "UpdateShardCount")?;
    let open = stream.shards.read().await.open.len() as u32;
    let limits = &broker.config.streams;
    let account_open = broker.open_shard_count().await;
    let max = limits.max_shards_per_stream;
    if target > max {
        return Err(Error::LimitExceeded(format!(
            "Target shard count or number of open shards cannot be greater than {max}. Current open shard count: {open}, Target shard count: {target}"
        ))
        .into());
    }
    if account_open - open + target > limits.shard_limit {
        return Err(Error::LimitExceeded(shard_limit_message(
            &broker,
            account_open,
            target.saturating_sub(open),
        ))
        .into());
    }
    if target > open * 2 {
        return Err(Error::LimitExceeded(format!(
            "UpdateShardCount cannot scale up over double your current open shard count. Current open shard count: {open}, Target shard count: {target}"
        ))
        .into());
    }
    if target * 2 < open {
        return Err(Error::LimitExceeded(format!(
            "UpdateShardCount cannot scale down below half your current open shard count. Current open shard count: {open}, Target shard count: {target}"
        ))
        .into());
    }
    let now = broker.clock.now_ms();
    {
        let mut s = stream.settings.lock();
        s.reshard_times.retain(|t| now - t < DAY_MS);
        if s.reshard_times.len() as u32 >= limits.reshards_per_24h {
            return Err(Error::LimitExceeded(format!(
                "Cannot run UpdateShardCount more than {} times in a rolling 24 hour period for stream {} under account {}.",
                limits.reshards_per_24h, stream.name, broker.config.account_id
            ))
            .into());
        }
        s.reshard_times.push(now);
    }
    let mut map = stream.shards.write().await;
    let open_ranges: Vec<(u32, HashKeyRange)> =
        map.open.iter().map(|s| (s.id.index(), s.range)).collect();
    for step in plan_uniform(&open_ranges, map.next_index, target) {
        apply(&broker, &stream, &mut map, step, now).await?;
    }
    tracing::info!(stream = %stream.name, from = open, to = target, "updated shard count");
    finish(&broker, &stream, map).await?;
    Ok(UpdateShardCountOutput {
        stream_name: stream.name.clone(),
        current_shard_count: open,
        target_shard_count: target,
        stream_arn: stream.arn.clone(),
    })
}

crate::api::stream_target!(SplitShardInput, MergeShardsInput, UpdateShardCountInput);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn simulate(open: &[(u32, HashKeyRange)], next: u32, steps: &[Step]) -> Vec<HashKeyRange> {
        let mut open = open.to_vec();
        let mut next = next;
        for s in steps {
            match *s {
                Step::Split { shard, at } => {
                    let i = open.iter().position(|(id, _)| *id == shard).unwrap();
                    let (a, b) = open[i].1.split_at(at).unwrap();
                    open.splice(i..=i, [(next, a), (next + 1, b)]);
                    next += 2;
                }
                Step::Merge { shard, adjacent } => {
                    let i = open.iter().position(|(id, _)| *id == shard).unwrap();
                    assert_eq!(open[i + 1].0, adjacent, "merge partners must be neighbours");
                    let m = open[i].1.merge(&open[i + 1].1).unwrap();
                    open.splice(i..=i + 1, [(next, m)]);
                    next += 1;
                }
            }
        }
        open.into_iter().map(|(_, r)| r).collect()
    }

    #[test]
    fn doubling_splits_each_shard_once() {
        let open: Vec<_> = HashKeyRange::even_split(2)
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i as u32, r))
            .collect();
        let steps = plan_uniform(&open, 2, 4);
        let q = HashKeyRange::even_split(4);
        assert_eq!(
            steps,
            vec![
                Step::Split {
                    shard: 0,
                    at: q[1].start
                },
                Step::Split {
                    shard: 1,
                    at: q[3].start
                }
            ]
        );
    }

    #[test]
    fn halving_merges_pairs() {
        let open: Vec<_> = HashKeyRange::even_split(4)
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i as u32, r))
            .collect();
        let steps = plan_uniform(&open, 4, 2);
        assert_eq!(
            steps,
            vec![
                Step::Merge {
                    shard: 0,
                    adjacent: 1
                },
                Step::Merge {
                    shard: 2,
                    adjacent: 3
                }
            ]
        );
    }

    proptest! {
        #[test]
        fn any_uniform_scaling_reaches_the_even_split(from in 1u32..40, to_factor in 0.5f64..2.0) {
            let to = ((from as f64 * to_factor).round() as u32).clamp(1, from * 2);
            let open: Vec<_> = HashKeyRange::even_split(from).into_iter().enumerate().map(|(i, r)| (i as u32, r)).collect();
            let steps = plan_uniform(&open, from, to);
            prop_assert_eq!(simulate(&open, from, &steps), HashKeyRange::even_split(to));
        }
    }
}
