//! Lease balancing: a pure function from what a worker sees to what it should do.
//!
//! Each taker run lists the lease table and feeds it to [`ExpiryTracker::observe`], which
//! decides expiry the way the Java KCL does — a lease is expired when its counter has not
//! changed for longer than the failover time *on this worker's own clock* (so no clock is
//! compared across hosts); an unowned lease is expired at once. [`balance`] then decides:
//!
//! 1. **Release** leases above `max_leases_for_worker`.
//! 2. **Take** expired leases until this worker holds its target, `ceil(leases / workers)`
//!    (workers = owners of unexpired leases, plus itself), capped by `max_leases_for_worker`.
//!    Unowned leases come first, then leases expired longest; ties are broken by a hash of
//!    (worker, lease) so that workers starting together reach for different leases.
//! 3. **Steal**, only when nothing expired is left and this worker is below target: up to
//!    `max_leases_to_steal` leases from the most loaded worker, and only if that worker holds
//!    at least two more leases than this one. That hysteresis is what stops stealing storms:
//!    a steal always narrows the gap between two workers, so when every worker's count is
//!    within one of every other's no worker steals — the assignment is stable.
//!
//! Finished leases (checkpoint `SHARD_END`) are neither counted nor taken.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::lease::Lease;

/// One lease as the balancer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseView {
    /// The lease key.
    pub key: String,
    /// Its owner in the table.
    pub owner: Option<String>,
    /// How long its counter has been unchanged on this worker's clock, if it is expired
    /// (unowned leases have [`Duration::MAX`]).
    pub expired_for: Option<Duration>,
    /// Its checkpoint is `SHARD_END`.
    pub finished: bool,
}

/// What a worker should do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Take an unowned or expired lease.
    Take {
        /// The lease key.
        key: String,
    },
    /// Take a lease from a live worker.
    Steal {
        /// The lease key.
        key: String,
        /// Its current owner.
        from: String,
    },
    /// Give up a held lease (processor shut down, checkpoint, owner removed).
    Release {
        /// The lease key.
        key: String,
    },
}

/// The knobs of [`balance`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceConfig {
    /// At most this many leases per worker.
    pub max_leases_for_worker: usize,
    /// At most this many steals per run.
    pub max_leases_to_steal: usize,
}

/// Remembers when each lease's counter last changed, on this worker's clock.
#[derive(Debug)]
pub struct ExpiryTracker {
    failover: Duration,
    seen: HashMap<String, (u64, Option<String>, Instant)>,
}

impl ExpiryTracker {
    /// A tracker for leases that expire after `failover` without a counter change.
    pub fn new(failover: Duration) -> ExpiryTracker {
        ExpiryTracker {
            failover,
            seen: HashMap::new(),
        }
    }

    /// Records a listing made at `now`. A lease owned by `me` that this worker does not hold
    /// (`held`) — left over from an earlier run under the same worker id — is expired at once.
    pub fn observe(
        &mut self,
        leases: &[Lease],
        me: &str,
        held: &HashSet<String>,
        now: Instant,
    ) -> Vec<LeaseView> {
        let present: HashSet<&str> = leases.iter().map(|l| l.key.as_str()).collect();
        self.seen.retain(|k, _| present.contains(k.as_str()));
        leases
            .iter()
            .map(|l| {
                let entry =
                    self.seen
                        .entry(l.key.clone())
                        .or_insert((l.counter, l.owner.clone(), now));
                if entry.0 != l.counter || entry.1 != l.owner {
                    *entry = (l.counter, l.owner.clone(), now);
                }
                let unchanged = now.saturating_duration_since(entry.2);
                let expired_for = match &l.owner {
                    None => Some(Duration::MAX),
                    Some(o) if o == me && !held.contains(&l.key) => Some(Duration::MAX),
                    Some(_) if unchanged > self.failover => Some(unchanged),
                    Some(_) => None,
                };
                LeaseView {
                    key: l.key.clone(),
                    owner: l.owner.clone(),
                    expired_for,
                    finished: l.checkpoint.is_shard_end(),
                }
            })
            .collect()
    }
}

/// FNV-1a of (worker, key): a stable per-worker preference order.
fn preference(me: &str, key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in me.bytes().chain([0]).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Decides what worker `me` should do about `leases` (see the module docs).
pub fn balance(me: &str, leases: &[LeaseView], cfg: BalanceConfig) -> Vec<Action> {
    let active: Vec<&LeaseView> = leases.iter().filter(|l| !l.finished).collect();
    if active.is_empty() {
        return Vec::new();
    }
    // Live holdings per worker (BTreeMap: deterministic tie-breaks).
    let mut counts: BTreeMap<&str, Vec<&LeaseView>> = BTreeMap::new();
    for l in &active {
        if let (Some(owner), None) = (&l.owner, l.expired_for) {
            counts.entry(owner.as_str()).or_default().push(l);
        }
    }
    counts.entry(me).or_default();
    let workers = counts.len();
    let cap = cfg.max_leases_for_worker.max(1);
    let target = active.len().div_ceil(workers).min(cap);
    let mine = counts[me].len();
    let mut actions = Vec::new();

    if mine > cap {
        let mut held: Vec<&str> = counts[me].iter().map(|l| l.key.as_str()).collect();
        held.sort_by_key(|k| std::cmp::Reverse(preference(me, k)));
        actions.extend(
            held.into_iter()
                .take(mine - cap)
                .map(|k| Action::Release { key: k.to_owned() }),
        );
        return actions;
    }
    let needed = target.saturating_sub(mine);
    if needed == 0 {
        return actions;
    }

    let mut expired: Vec<&LeaseView> = active
        .iter()
        .copied()
        .filter(|l| l.expired_for.is_some())
        .collect();
    expired.sort_by(|a, b| {
        b.expired_for
            .cmp(&a.expired_for)
            .then_with(|| preference(me, &a.key).cmp(&preference(me, &b.key)))
    });
    if !expired.is_empty() {
        actions.extend(
            expired
                .into_iter()
                .take(needed)
                .map(|l| Action::Take { key: l.key.clone() }),
        );
        return actions;
    }

    // Steal from the most loaded worker, if the gap is at least two.
    let Some((victim, theirs)) = counts
        .iter()
        .filter(|(w, _)| **w != me)
        .max_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| b.0.cmp(a.0)))
    else {
        return actions;
    };
    if theirs.len() < mine + 2 {
        return actions;
    }
    let gap_half = (theirs.len() - mine) / 2;
    let n = needed.min(cfg.max_leases_to_steal).min(gap_half);
    let mut candidates: Vec<&str> = theirs.iter().map(|l| l.key.as_str()).collect();
    candidates.sort_by_key(|k| preference(me, k));
    actions.extend(candidates.into_iter().take(n).map(|k| Action::Steal {
        key: k.to_owned(),
        from: (*victim).to_owned(),
    }));
    actions
}

#[cfg(test)]
mod tests;
