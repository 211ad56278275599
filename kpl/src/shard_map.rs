//! Shard prediction: the open shards of a stream by hash range (from ListShards), and the
//! table of shard ids the producer knows, with the ranges of recently closed shards kept
//! for the wrong-shard check.
//!
//! A record's hash key (its explicit hash key, or MD5 of its partition key) lies in exactly
//! one open shard's range; that shard is the record's *predicted shard*. A map whose ranges
//! do not partition the hash-key space exactly is refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use riffle_core::HashKeyRange;
use tokio::time::Instant;

/// A dense per-stream index for a shard id.
pub(crate) type ShardIx = u32;

/// How long the range of a closed shard is remembered (the KPL's `kClosedShardTtl`).
pub(crate) const CLOSED_SHARD_TTL: Duration = Duration::from_secs(60);

/// One open shard as ListShards describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardInfo {
    pub(crate) id: String,
    pub(crate) range: HashKeyRange,
}

/// The ranges did not partition the hash-key space.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the open shards' hash-key ranges do not cover 0 ..= 2^128-1 exactly once")]
pub(crate) struct NotAPartition;

/// Open shards sorted by range; lookup by binary search on the ranges' ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardMap {
    ends: Vec<u128>,
    shards: Vec<ShardIx>,
    ranges: Vec<HashKeyRange>,
}

impl ShardMap {
    /// A map of these open shards, refused unless their ranges partition the space.
    pub(crate) fn new(mut open: Vec<(ShardIx, HashKeyRange)>) -> Result<ShardMap, NotAPartition> {
        open.sort_by_key(|(_, r)| r.start);
        let ranges: Vec<HashKeyRange> = open.iter().map(|(_, r)| *r).collect();
        if !riffle_core::hash_key::partitions_space(&ranges) {
            return Err(NotAPartition);
        }
        Ok(ShardMap {
            ends: ranges.iter().map(|r| r.end.0).collect(),
            shards: open.iter().map(|(s, _)| *s).collect(),
            ranges,
        })
    }

    /// The open shard owning `hash_key`.
    pub(crate) fn lookup(&self, hash_key: u128) -> ShardIx {
        // The last range ends at 2^128-1, so some end is >= every key.
        let i = self.ends.partition_point(|&end| end < hash_key);
        self.shards[i]
    }

    /// The open shards and their ranges, by range.
    pub(crate) fn shards(&self) -> impl Iterator<Item = (ShardIx, HashKeyRange)> + '_ {
        self.shards.iter().copied().zip(self.ranges.iter().copied())
    }

    /// Whether `shard` is open in this map.
    pub(crate) fn contains(&self, shard: ShardIx) -> bool {
        self.shards.contains(&shard)
    }
}

#[derive(Debug, Clone)]
struct Known {
    id: Arc<str>,
    range: Option<HashKeyRange>,
    closed_at: Option<Instant>,
}

/// The shard ids a stream's producer knows, interned to dense indexes that are reused once
/// a shard is forgotten (so the table stays as small as the recent shard maps).
#[derive(Debug, Clone, Default)]
pub(crate) struct ShardTable {
    slots: Vec<Option<Known>>,
    by_id: HashMap<Arc<str>, ShardIx>,
    free: Vec<ShardIx>,
}

impl ShardTable {
    /// The index of `id`, adding it if new.
    pub(crate) fn intern(&mut self, id: &str) -> ShardIx {
        if let Some(&ix) = self.by_id.get(id) {
            return ix;
        }
        let known = Known {
            id: id.into(),
            range: None,
            closed_at: None,
        };
        let ix = match self.free.pop() {
            Some(ix) => {
                self.slots[ix as usize] = Some(known.clone());
                ix
            }
            None => {
                self.slots.push(Some(known.clone()));
                (self.slots.len() - 1) as ShardIx
            }
        };
        self.by_id.insert(known.id, ix);
        ix
    }

    /// The index of `id`, if known.
    pub(crate) fn get(&self, id: &str) -> Option<ShardIx> {
        self.by_id.get(id).copied()
    }

    fn slot(&self, ix: ShardIx) -> &Known {
        self.slots[ix as usize]
            .as_ref()
            .expect("a live shard index")
    }

    /// The id of a known shard.
    pub(crate) fn id(&self, ix: ShardIx) -> &Arc<str> {
        &self.slot(ix).id
    }

    /// The id of a shard index, if it is still known.
    pub(crate) fn name(&self, ix: ShardIx) -> Option<&Arc<str>> {
        self.slots.get(ix as usize)?.as_ref().map(|k| &k.id)
    }

    /// Its hash-key range, if a shard map described it.
    pub(crate) fn range(&self, ix: ShardIx) -> Option<HashKeyRange> {
        self.slots.get(ix as usize)?.as_ref()?.range
    }

    /// Records a shard as open with this range.
    pub(crate) fn set_open(&mut self, ix: ShardIx, range: HashKeyRange) {
        if let Some(k) = self.slots[ix as usize].as_mut() {
            k.range = Some(range);
            k.closed_at = None;
        }
    }

    /// Records that a shard left the map at `now`.
    pub(crate) fn set_closed(&mut self, ix: ShardIx, now: Instant) {
        if let Some(k) = self.slots[ix as usize].as_mut() {
            k.closed_at.get_or_insert(now);
        }
    }

    /// Forgets shards closed for longer than [`CLOSED_SHARD_TTL`] for which `in_use` says
    /// no; returns their indexes, which may be reused from now on.
    pub(crate) fn prune(&mut self, now: Instant, in_use: impl Fn(ShardIx) -> bool) -> Vec<ShardIx> {
        let mut freed = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let ix = i as ShardIx;
            let old = slot.as_ref().is_some_and(|k| {
                k.closed_at
                    .is_some_and(|c| now.saturating_duration_since(c) >= CLOSED_SHARD_TTL)
            });
            if old && !in_use(ix) {
                if let Some(k) = slot.take() {
                    self.by_id.remove(&k.id);
                }
                self.free.push(ix);
                freed.push(ix);
            }
        }
        freed
    }

    /// Shards currently remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riffle_core::HashKey;

    fn range(a: u128, b: u128) -> HashKeyRange {
        HashKeyRange::new(HashKey(a), HashKey(b)).unwrap()
    }

    #[test]
    fn lookup_finds_the_owning_shard() {
        let even = HashKeyRange::even_split(3);
        let map = ShardMap::new(vec![(7, even[2]), (5, even[0]), (6, even[1])]).unwrap();
        assert_eq!(map.lookup(0), 5);
        assert_eq!(map.lookup(even[0].end.0), 5);
        assert_eq!(map.lookup(even[1].start.0), 6);
        assert_eq!(map.lookup(even[1].end.0), 6);
        assert_eq!(map.lookup(u128::MAX), 7);
        assert!(map.contains(6) && !map.contains(8));
        assert_eq!(
            map.shards().map(|(s, _)| s).collect::<Vec<_>>(),
            vec![5, 6, 7]
        );
    }

    #[test]
    fn gaps_and_overlaps_are_refused() {
        assert_eq!(
            ShardMap::new(vec![(0, range(0, 10)), (1, range(12, u128::MAX))]),
            Err(NotAPartition)
        );
        assert_eq!(
            ShardMap::new(vec![(0, range(0, 10)), (1, range(10, u128::MAX))]),
            Err(NotAPartition)
        );
        assert_eq!(ShardMap::new(vec![]), Err(NotAPartition));
        assert!(ShardMap::new(vec![(0, HashKeyRange::FULL)]).is_ok());
    }

    #[test]
    fn table_interns_and_forgets_old_closed_shards() {
        let t0 = Instant::now();
        let mut t = ShardTable::default();
        let a = t.intern("shardId-000000000000");
        let b = t.intern("shardId-000000000001");
        assert_eq!(t.intern("shardId-000000000000"), a);
        assert_eq!(t.get("shardId-000000000001"), Some(b));
        t.set_open(a, HashKeyRange::FULL);
        assert_eq!(t.range(a), Some(HashKeyRange::FULL));
        assert_eq!(t.range(b), None);
        t.set_closed(a, t0);
        assert!(t.prune(t0 + Duration::from_secs(59), |_| false).is_empty());
        assert!(
            t.prune(t0 + CLOSED_SHARD_TTL, |_| true).is_empty(),
            "still in use"
        );
        assert_eq!(t.prune(t0 + CLOSED_SHARD_TTL, |_| false), vec![a]);
        assert_eq!(t.get("shardId-000000000000"), None);
        assert_eq!(t.len(), 1);
        // The freed index is reused.
        assert_eq!(t.intern("shardId-000000000002"), a);
        assert_eq!(&**t.id(a), "shardId-000000000002");
    }
}
