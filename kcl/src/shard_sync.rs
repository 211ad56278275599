//! Shard sync: which leases to create for a stream's shards, and which leases may start.
//!
//! Pure functions over a shard listing and the lease table.
//!
//! [`leases_to_create`] — for each shard without a lease, in shard order (Kinesis gives
//! children higher shard ids than their parents; the function iterates to a fixed point, so
//! the order only affects speed):
//! - a shard with a parent whose lease **already existed** starts at `TRIM_HORIZON` (a child
//!   of a shard being consumed must be read from its first record), and a shard whose parent
//!   gets a lease in this same pass starts where that parent does;
//! - on a **fresh** table (no lease for any listed shard) the initial position applies:
//!   with `TRIM_HORIZON` or `AT_TIMESTAMP` every listed shard gets a lease at that position
//!   (closed ancestors first read to their end, then their children), with `LATEST` only open
//!   shards do;
//! - otherwise an **open** shard with no leased parent (for example one whose lease an
//!   operator deleted) gets a lease at the initial position, and a closed one is left alone.
//!
//! [`may_start`] — a lease's consumer may start once every parent's lease is checkpointed at
//! `SHARD_END` or does not exist (a parent never leased, or already cleaned up).

use std::collections::{HashMap, HashSet};

use riffle_core::HashKeyRange;

use crate::checkpoint::Checkpoint;
use crate::config::InitialPosition;
use crate::lease::Lease;

/// One shard of a `ListShards` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    /// The shard id.
    pub shard_id: String,
    /// Its parent and adjacent parent, if any.
    pub parents: Vec<String>,
    /// Its hash-key range.
    pub hash_range: Option<HashKeyRange>,
    /// Whether it has an ending sequence number.
    pub closed: bool,
}

fn initial_checkpoint(initial: InitialPosition) -> Checkpoint {
    match initial {
        InitialPosition::TrimHorizon => Checkpoint::TrimHorizon,
        InitialPosition::Latest => Checkpoint::Latest,
        InitialPosition::AtTimestamp => Checkpoint::AtTimestamp,
    }
}

/// The leases to create (see the module docs).
pub fn leases_to_create(
    shards: &[ShardInfo],
    existing: &[Lease],
    initial: InitialPosition,
) -> Vec<Lease> {
    let existed: HashSet<&str> = existing.iter().map(|l| l.key.as_str()).collect();
    let fresh = !shards.iter().any(|s| existed.contains(s.shard_id.as_str()));
    let mut sorted: Vec<&ShardInfo> = shards.iter().collect();
    sorted.sort_by(|a, b| (a.shard_id.len(), &a.shard_id).cmp(&(b.shard_id.len(), &b.shard_id)));
    let mut created: HashMap<String, Lease> = HashMap::new();
    loop {
        let before = created.len();
        for s in &sorted {
            if existed.contains(s.shard_id.as_str()) || created.contains_key(&s.shard_id) {
                continue;
            }
            let from_existing = s.parents.iter().any(|p| existed.contains(p.as_str()));
            let from_created = s
                .parents
                .iter()
                .find_map(|p| created.get(p).map(|l| l.checkpoint.clone()));
            let checkpoint = if from_existing {
                Some(Checkpoint::TrimHorizon)
            } else if from_created.is_some() {
                from_created
            } else if fresh {
                match initial {
                    InitialPosition::Latest if s.closed => None,
                    _ => Some(initial_checkpoint(initial)),
                }
            } else if !s.closed {
                Some(initial_checkpoint(initial))
            } else {
                None
            };
            if let Some(checkpoint) = checkpoint {
                created.insert(
                    s.shard_id.clone(),
                    Lease::new(&s.shard_id, s.parents.clone(), s.hash_range, checkpoint),
                );
            }
        }
        if created.len() == before {
            break;
        }
    }
    let mut out: Vec<Lease> = created.into_values().collect();
    out.sort_by(|a, b| (a.key.len(), &a.key).cmp(&(b.key.len(), &b.key)));
    out
}

/// Whether `lease`'s consumer may start: every parent lease is at `SHARD_END` or absent.
/// `parent` looks a parent's lease up.
pub fn may_start<'a>(lease: &Lease, parent: impl Fn(&str) -> Option<&'a Lease>) -> bool {
    lease
        .parent_shard_ids
        .iter()
        .all(|p| parent(p).is_none_or(|l| l.checkpoint.is_shard_end()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use riffle_core::HashKey;

    fn shard(id: u32, parents: &[u32], closed: bool) -> ShardInfo {
        ShardInfo {
            shard_id: format!("shardId-{id:012}"),
            parents: parents.iter().map(|p| format!("shardId-{p:012}")).collect(),
            hash_range: HashKeyRange::new(HashKey(u128::from(id)), HashKey(u128::MAX)),
            closed,
        }
    }

    fn lease(s: &ShardInfo, cp: Checkpoint) -> Lease {
        Lease::new(&s.shard_id, s.parents.clone(), s.hash_range, cp)
    }

    /// 0 split into 1 and 2; 1 and 3 (a root) merged into 4.
    fn lineage() -> Vec<ShardInfo> {
        vec![
            shard(0, &[], true),
            shard(1, &[0], true),
            shard(2, &[0], false),
            shard(3, &[], true),
            shard(4, &[1, 3], false),
        ]
    }

    #[test]
    fn fresh_trim_horizon_leases_every_shard() {
        let s = lineage();
        let expected: Vec<Lease> = s
            .iter()
            .map(|x| lease(x, Checkpoint::TrimHorizon))
            .collect();
        assert_eq!(
            leases_to_create(&s, &[], InitialPosition::TrimHorizon),
            expected
        );
        let at: Vec<Lease> = s
            .iter()
            .map(|x| lease(x, Checkpoint::AtTimestamp))
            .collect();
        assert_eq!(leases_to_create(&s, &[], InitialPosition::AtTimestamp), at);
    }

    #[test]
    fn fresh_latest_leases_only_open_shards() {
        let s = lineage();
        assert_eq!(
            leases_to_create(&s, &[], InitialPosition::Latest),
            vec![
                lease(&s[2], Checkpoint::Latest),
                lease(&s[4], Checkpoint::Latest)
            ]
        );
    }

    #[test]
    fn children_of_consumed_shards_start_at_trim_horizon() {
        // Started at LATEST on shard 0 alone; then 0 split into 1 and 2, 1 split into 5, 6.
        let s = vec![
            shard(0, &[], true),
            shard(1, &[0], true),
            shard(2, &[0], false),
            shard(5, &[1], false),
            shard(6, &[1], false),
        ];
        let existing = vec![lease(&s[0], Checkpoint::Latest)];
        assert_eq!(
            leases_to_create(&s, &existing, InitialPosition::Latest),
            vec![
                lease(&s[1], Checkpoint::TrimHorizon),
                lease(&s[2], Checkpoint::TrimHorizon),
                lease(&s[3], Checkpoint::TrimHorizon),
                lease(&s[4], Checkpoint::TrimHorizon),
            ]
        );
    }

    #[test]
    fn nothing_to_do_when_every_shard_has_a_lease() {
        let s = lineage();
        let existing: Vec<Lease> = s.iter().map(|x| lease(x, Checkpoint::ShardEnd)).collect();
        assert_eq!(
            leases_to_create(&s, &existing, InitialPosition::TrimHorizon),
            vec![]
        );
    }

    #[test]
    fn a_deleted_open_lease_is_recreated_but_a_closed_one_is_not() {
        let s = vec![
            shard(0, &[], false),
            shard(1, &[], false),
            shard(2, &[], true),
        ];
        let existing = vec![lease(&s[0], Checkpoint::TrimHorizon)];
        assert_eq!(
            leases_to_create(&s, &existing, InitialPosition::Latest),
            vec![lease(&s[1], Checkpoint::Latest)]
        );
    }

    #[test]
    fn a_child_waits_for_every_parent_to_reach_shard_end() {
        let s = lineage();
        let l1 = lease(&s[1], Checkpoint::ShardEnd);
        let mut l3 = lease(&s[3], Checkpoint::TrimHorizon);
        let child = lease(&s[4], Checkpoint::TrimHorizon);
        let table = |l3: &Lease| -> Vec<Lease> { vec![l1.clone(), l3.clone()] };
        let t = table(&l3);
        assert!(!may_start(&child, |k| t.iter().find(|l| l.key == k)));
        l3.checkpoint = Checkpoint::ShardEnd;
        let t = table(&l3);
        assert!(may_start(&child, |k| t.iter().find(|l| l.key == k)));
        // A parent without a lease does not block.
        let only_l1 = [l1.clone()];
        assert!(may_start(&child, |k| only_l1.iter().find(|l| l.key == k)));
        // A root always may start.
        assert!(may_start(&lease(&s[0], Checkpoint::TrimHorizon), |_| None));
    }
}
