//! Leases: who processes which shard, how far it got, and the store they live in.
//!
//! A [`Lease`] is one row of the lease table, keyed by shard id. Every write to a lease is
//! *fenced* by its `leaseCounter`: it succeeds only if the counter (and, for the holder's own
//! writes, the owner) is what the writer last saw, and it increments the counter. A refused
//! write surfaces as [`LeaseStoreError::Conflict`] — for a holder that means "lease lost".
//!
//! Stores implement [`LeaseStore`]; every store passes the same `conformance` suite (enable
//! the `conformance` feature to run it against a store of your own):
//! - [`dynamodb`]: the Java KCL's lease table, shareable with Java/Python KCL workers;
//! - [`sqlite`]: an embedded file shared by worker processes on one host.

use std::fmt::Debug;

use async_trait::async_trait;
use riffle_core::HashKeyRange;

use crate::checkpoint::Checkpoint;
use crate::error::LeaseStoreError;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod dynamodb;
pub(crate) mod instrumented;
pub mod sqlite;

/// One lease: a row of the lease table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The lease key: the shard id (`leaseKey`).
    pub key: String,
    /// The worker holding it, if any (`leaseOwner`).
    pub owner: Option<String>,
    /// The fencing counter (`leaseCounter`): +1 on every write.
    pub counter: u64,
    /// How far the shard is processed (`checkpoint`, `checkpointSubSequenceNumber`).
    pub checkpoint: Checkpoint,
    /// Owner changes since the last checkpoint (`ownerSwitchesSinceCheckpoint`).
    pub owner_switches_since_checkpoint: u64,
    /// The shard's parents: one after a split, two after a merge (`parentShardId`).
    pub parent_shard_ids: Vec<String>,
    /// The shard's children, written when it ends (`childShardIds`).
    pub child_shard_ids: Vec<String>,
    /// The shard's hash-key range (`startingHashKey`, `endingHashKey`), if known.
    pub hash_range: Option<HashKeyRange>,
}

impl Lease {
    /// A new, unowned lease for a shard.
    pub fn new(
        shard_id: impl Into<String>,
        parent_shard_ids: Vec<String>,
        hash_range: Option<HashKeyRange>,
        checkpoint: Checkpoint,
    ) -> Lease {
        let mut parent_shard_ids = parent_shard_ids;
        parent_shard_ids.sort();
        parent_shard_ids.dedup();
        Lease {
            key: shard_id.into(),
            owner: None,
            counter: 0,
            checkpoint,
            owner_switches_since_checkpoint: 0,
            parent_shard_ids,
            child_shard_ids: Vec::new(),
            hash_range,
        }
    }

    /// Whether `worker` owns this lease (as of this copy).
    pub fn is_owned_by(&self, worker: &str) -> bool {
        self.owner.as_deref() == Some(worker)
    }
}

/// A lease table. All writes but [`create_if_not_exists`](LeaseStore::create_if_not_exists),
/// [`set_child_shards`](LeaseStore::set_child_shards) and [`delete`](LeaseStore::delete) are
/// fenced by the lease's counter and return the lease as now stored.
///
/// Implementations must be safe to share between tasks, and — for the store to be of any use —
/// between worker processes: the fence is the only thing that keeps two workers from both
/// believing they hold a lease.
#[async_trait]
pub trait LeaseStore: Debug + Send + Sync + 'static {
    /// Creates the table if it is missing and waits until it can be used.
    async fn initialize(&self) -> Result<(), LeaseStoreError>;

    /// Every lease in the table.
    async fn list(&self) -> Result<Vec<Lease>, LeaseStoreError>;

    /// One lease, read consistently.
    async fn get(&self, key: &str) -> Result<Option<Lease>, LeaseStoreError>;

    /// Writes `lease` unless a lease with its key exists; whether it was written.
    async fn create_if_not_exists(&self, lease: &Lease) -> Result<bool, LeaseStoreError>;

    /// Renews a held lease: counter and owner must be `lease`'s; increments the counter.
    async fn renew(&self, lease: &Lease) -> Result<Lease, LeaseStoreError>;

    /// Takes a lease for `owner`: the counter must be the observed `lease.counter`; sets the
    /// owner, increments the counter, and counts an owner switch if the owner changes.
    async fn take(&self, lease: &Lease, owner: &str) -> Result<Lease, LeaseStoreError>;

    /// Releases a held lease (the owner is removed) so that any worker may take it at once:
    /// counter and owner must be `lease`'s; increments the counter.
    async fn release(&self, lease: &Lease) -> Result<Lease, LeaseStoreError>;

    /// Writes a checkpoint for a held lease: counter and owner must be `lease`'s; increments
    /// the counter and resets the owner-switch count.
    async fn checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
    ) -> Result<Lease, LeaseStoreError>;

    /// Records a shard's children (not fenced; the lease must exist).
    async fn set_child_shards(&self, key: &str, children: &[String])
        -> Result<(), LeaseStoreError>;

    /// Deletes a lease (no condition).
    async fn delete(&self, key: &str) -> Result<(), LeaseStoreError>;
}

/// What a fenced write leaves in the table, computed from what the writer held.
pub(crate) fn after_write(lease: &Lease) -> Lease {
    let mut next = lease.clone();
    next.counter += 1;
    next
}
