//! The reshard budget: a rolling 24-hour window over the reshard ledger kept in
//! `Stream.status.reshardHistory`.
//!
//! Rule: every reshard call the operator makes (UpdateShardCount, SplitShard, MergeShards)
//! is one entry, and at most `limit` (10 at most, Kinesis's UpdateShardCount quota) may lie
//! in any 24 hours. Kinesis itself counts only UpdateShardCount against that quota; counting
//! SplitShard and MergeShards too keeps the operator's whole resharding rate inside the
//! quota's spirit and makes the ledger one number a person can read. The ledger lives in
//! the object's status, so it survives operator restarts and is shared by every replica
//! (only the elected leader writes it).

use jiff::{SignedDuration, Timestamp};

use crate::crd::ReshardRecord;

/// The length of the budget window.
pub const WINDOW: SignedDuration = SignedDuration::from_hours(24);

/// The budget at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Reshards allowed in any window.
    pub limit: u32,
    /// Reshards in the window ending now.
    pub used: u32,
    /// When the next reshard becomes allowed (`None`: now).
    pub next_free_at: Option<Timestamp>,
}

impl Budget {
    /// The budget of `history` at `now`.
    pub fn at(limit: u32, history: &[ReshardRecord], now: Timestamp) -> Budget {
        let mut times: Vec<Timestamp> = in_window(history, now).map(|r| r.time.0).collect();
        times.sort();
        let used = u32::try_from(times.len()).unwrap_or(u32::MAX);
        let next_free_at = if used < limit {
            None
        } else {
            // The window must drop (used - limit + 1) entries: the oldest of those ages out last.
            let k = (used - limit) as usize;
            Some(times[k] + WINDOW)
        };
        Budget {
            limit,
            used,
            next_free_at,
        }
    }

    /// Reshards still allowed now.
    pub fn remaining(&self) -> u32 {
        self.limit.saturating_sub(self.used)
    }
}

/// The entries of `history` inside the window ending at `now`.
pub fn in_window(
    history: &[ReshardRecord],
    now: Timestamp,
) -> impl Iterator<Item = &ReshardRecord> {
    history
        .iter()
        .filter(move |r| r.time.0 > now - WINDOW && r.time.0 <= now)
}

/// `history` without the entries that have left the window (what status keeps).
pub fn prune(history: &[ReshardRecord], now: Timestamp) -> Vec<ReshardRecord> {
    in_window(history, now).cloned().collect()
}

/// The time of the most recent reshard, if any.
pub fn last_reshard(history: &[ReshardRecord]) -> Option<Timestamp> {
    history.iter().map(|r| r.time.0).max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ReshardOperation, ReshardTrigger};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn rec(secs: i64) -> ReshardRecord {
        ReshardRecord {
            time: Time(at(secs)),
            operation: ReshardOperation::UpdateShardCount,
            from_shards: 1,
            to_shards: 2,
            shard: None,
            trigger: ReshardTrigger::Spec,
        }
    }

    #[test]
    fn the_window_is_rolling_24_hours() {
        let day = 86_400;
        let h: Vec<_> = [0, 10, 20].into_iter().map(rec).collect();
        let b = Budget::at(3, &h, at(30));
        assert_eq!(
            (b.used, b.remaining(), b.next_free_at),
            (3, 0, Some(at(day)))
        );
        // The first entry ages out exactly 24 h after it was made.
        let b = Budget::at(3, &h, at(day));
        assert_eq!((b.used, b.next_free_at), (2, None));
        let b = Budget::at(2, &h, at(30));
        assert_eq!(b.next_free_at, Some(at(10 + day)));
        assert_eq!(prune(&h, at(day + 15)), vec![rec(20)]);
        assert_eq!(last_reshard(&h), Some(at(20)));
    }
}
