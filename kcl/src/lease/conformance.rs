//! The conformance suite every [`LeaseStore`] must pass (feature `conformance`).
//!
//! [`run_all`] drives a store through the whole lease protocol and panics on the first
//! deviation. The store must be initialized and must not hold leases whose keys start with
//! `conformance-`.

use riffle_core::{HashKey, HashKeyRange};

use super::{Lease, LeaseStore};
use crate::checkpoint::{Checkpoint, SequenceNumber};

/// A 56-digit sequence number, as AWS writes them.
const AWS_SEQ: &str = "49590338271490256608559692538361571095921575989136588898";

fn lease(key: &str) -> Lease {
    Lease::new(
        key,
        vec![
            "conformance-parent-b".to_owned(),
            "conformance-parent-a".to_owned(),
        ],
        HashKeyRange::new(HashKey(0), HashKey(u128::MAX / 3)),
        Checkpoint::TrimHorizon,
    )
}

fn conflict<T: std::fmt::Debug>(r: Result<T, crate::LeaseStoreError>, what: &str) {
    match r {
        Err(e) if e.is_conflict() => {}
        other => panic!("{what}: expected a Conflict, got {other:?}"),
    }
}

/// Runs every check in order.
pub async fn run_all(store: &dyn LeaseStore) {
    create_get_list(store).await;
    take_renew_fence(store).await;
    checkpoint_round_trip(store).await;
    steal_fences_the_old_holder(store).await;
    release_lets_anyone_take(store).await;
    child_shards_and_delete(store).await;
    concurrent_takes_have_one_winner(store).await;
}

/// Create-if-not-exists, get, list.
pub async fn create_get_list(store: &dyn LeaseStore) {
    let l = lease("conformance-create");
    assert!(
        store.create_if_not_exists(&l).await.unwrap(),
        "first create"
    );
    let mut again = l.clone();
    again.checkpoint = Checkpoint::Latest;
    assert!(
        !store.create_if_not_exists(&again).await.unwrap(),
        "second create must not overwrite"
    );
    let got = store.get(&l.key).await.unwrap().expect("created lease");
    assert_eq!(got, l, "a lease reads back as written");
    assert_eq!(
        got.parent_shard_ids,
        vec!["conformance-parent-a", "conformance-parent-b"]
    );
    assert!(store.get("conformance-missing").await.unwrap().is_none());
    let listed = store.list().await.unwrap();
    assert!(listed.contains(&l), "list holds the lease: {listed:?}");
}

/// Take, renew, and the counter fence on both.
pub async fn take_renew_fence(store: &dyn LeaseStore) {
    let l = lease("conformance-take");
    store.create_if_not_exists(&l).await.unwrap();
    let seen = store.get(&l.key).await.unwrap().unwrap();
    let held = store.take(&seen, "worker-1").await.unwrap();
    assert_eq!(held.owner.as_deref(), Some("worker-1"));
    assert_eq!(held.counter, seen.counter + 1);
    assert_eq!(held.owner_switches_since_checkpoint, 1);
    assert_eq!(store.get(&l.key).await.unwrap().unwrap(), held);
    conflict(
        store.take(&seen, "worker-2").await,
        "take with a stale counter",
    );

    let renewed = store.renew(&held).await.unwrap();
    assert_eq!(renewed.counter, held.counter + 1);
    assert_eq!(store.get(&l.key).await.unwrap().unwrap(), renewed);
    conflict(store.renew(&held).await, "renew with a stale counter");
    let mut impostor = renewed.clone();
    impostor.owner = Some("worker-2".to_owned());
    conflict(store.renew(&impostor).await, "renew by a non-owner");
    // Re-taking one's own lease is not an owner switch.
    let retaken = store.take(&renewed, "worker-1").await.unwrap();
    assert_eq!(retaken.owner_switches_since_checkpoint, 1);
}

/// Checkpoints: positions with sub-sequence numbers, sentinels, and the fence.
pub async fn checkpoint_round_trip(store: &dyn LeaseStore) {
    let l = lease("conformance-checkpoint");
    store.create_if_not_exists(&l).await.unwrap();
    let seen = store.get(&l.key).await.unwrap().unwrap();
    let held = store.take(&seen, "worker-1").await.unwrap();
    let cp = Checkpoint::at(SequenceNumber::new(AWS_SEQ).unwrap(), 41);
    let after = store.checkpoint(&held, &cp).await.unwrap();
    assert_eq!(after.checkpoint, cp);
    assert_eq!(after.counter, held.counter + 1);
    assert_eq!(after.owner_switches_since_checkpoint, 0);
    assert_eq!(store.get(&l.key).await.unwrap().unwrap(), after);
    conflict(
        store.checkpoint(&held, &Checkpoint::ShardEnd).await,
        "checkpoint with a stale counter",
    );
    let end = store
        .checkpoint(&after, &Checkpoint::ShardEnd)
        .await
        .unwrap();
    assert_eq!(
        store.get(&l.key).await.unwrap().unwrap().checkpoint,
        Checkpoint::ShardEnd
    );
    assert_eq!(end.checkpoint, Checkpoint::ShardEnd);
}

/// A take by another worker fences out every later write of the old holder.
pub async fn steal_fences_the_old_holder(store: &dyn LeaseStore) {
    let l = lease("conformance-steal");
    store.create_if_not_exists(&l).await.unwrap();
    let seen = store.get(&l.key).await.unwrap().unwrap();
    let old = store.take(&seen, "worker-1").await.unwrap();
    let observed = store.get(&l.key).await.unwrap().unwrap();
    let new = store.take(&observed, "worker-2").await.unwrap();
    assert_eq!(new.owner.as_deref(), Some("worker-2"));
    assert_eq!(new.owner_switches_since_checkpoint, 2);
    conflict(store.renew(&old).await, "renew after a steal");
    conflict(
        store
            .checkpoint(&old, &Checkpoint::at(SequenceNumber::new("5").unwrap(), 0))
            .await,
        "checkpoint after a steal",
    );
    conflict(store.release(&old).await, "release after a steal");
    assert_eq!(store.get(&l.key).await.unwrap().unwrap(), new);
}

/// Release removes the owner; anyone may take the lease at once.
pub async fn release_lets_anyone_take(store: &dyn LeaseStore) {
    let l = lease("conformance-release");
    store.create_if_not_exists(&l).await.unwrap();
    let seen = store.get(&l.key).await.unwrap().unwrap();
    let held = store.take(&seen, "worker-1").await.unwrap();
    let released = store.release(&held).await.unwrap();
    assert_eq!(released.owner, None);
    assert_eq!(released.counter, held.counter + 1);
    let stored = store.get(&l.key).await.unwrap().unwrap();
    assert_eq!(stored, released);
    conflict(store.release(&stored).await, "release of an unowned lease");
    conflict(store.renew(&held).await, "renew after release");
    let taken = store.take(&stored, "worker-2").await.unwrap();
    assert_eq!(taken.owner.as_deref(), Some("worker-2"));
}

/// Child shard ids (not fenced, but the lease must exist) and delete.
pub async fn child_shards_and_delete(store: &dyn LeaseStore) {
    let l = lease("conformance-children");
    store.create_if_not_exists(&l).await.unwrap();
    let children = vec![
        "conformance-child-1".to_owned(),
        "conformance-child-2".to_owned(),
    ];
    store.set_child_shards(&l.key, &children).await.unwrap();
    let got = store.get(&l.key).await.unwrap().unwrap();
    assert_eq!(got.child_shard_ids, children);
    assert_eq!(got.counter, l.counter, "child ids do not move the counter");
    conflict(
        store.set_child_shards("conformance-nope", &children).await,
        "child ids on a missing lease",
    );
    store.delete(&l.key).await.unwrap();
    assert!(store.get(&l.key).await.unwrap().is_none());
    store.delete(&l.key).await.unwrap();
    conflict(store.renew(&got).await, "renew of a deleted lease");
}

/// Eight workers take one observed lease at once: exactly one wins.
pub async fn concurrent_takes_have_one_winner(store: &dyn LeaseStore) {
    let l = lease("conformance-race");
    store.create_if_not_exists(&l).await.unwrap();
    let seen = store.get(&l.key).await.unwrap().unwrap();
    let takes = (0..8).map(|i| {
        let seen = seen.clone();
        async move { store.take(&seen, &format!("worker-{i}")).await }
    });
    let results = futures::future::join_all(takes).await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one take wins: {results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(e.is_conflict(), "losers see a Conflict: {e:?}");
        }
    }
    assert_eq!(
        store.get(&l.key).await.unwrap().unwrap().owner,
        winners[0].owner
    );
}
