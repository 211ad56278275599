//! Call rates of the control-plane operations, counted as Kinesis counts them: per account
//! (CreateStream, DescribeStream, ...) or per stream (ListShards, the consumer operations),
//! at most the configured number of calls in any one second ([`CallWindow`]).
//!
//! The check sits in the dispatch seam, after the request is decoded and authorized and
//! before its handler runs: a throttled call changes nothing, and a caller without
//! permission cannot spend another principal's budget.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::Operation;
use crate::config::{ControlPlaneLimits, Limit};
use crate::limits::CallWindow;

/// What one operation's rate is counted over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// All calls of the account.
    Account,
    /// The calls naming one stream.
    Stream,
}

/// Per-stream windows are dropped once idle for this long; above [`PRUNE_ABOVE`] entries
/// the map is pruned, so a caller naming ever new streams cannot grow it beyond what it
/// names within a second.
const IDLE: Duration = Duration::from_secs(1);
const PRUNE_ABOVE: usize = 1024;

/// The control-plane rate limiter of one broker.
#[derive(Debug)]
pub struct ControlPlaneRates {
    config: ControlPlaneLimits,
    account: Mutex<HashMap<Operation, CallWindow>>,
    streams: Mutex<HashMap<(Operation, String), (CallWindow, Instant)>>,
}

impl ControlPlaneRates {
    /// A limiter for `config`, with every window empty.
    pub fn new(config: ControlPlaneLimits) -> ControlPlaneRates {
        ControlPlaneRates {
            config,
            account: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
        }
    }

    /// The limit of `op` and what it is counted over; `None` for operations without one
    /// (or with every rate switched off).
    pub fn limit(&self, op: Operation) -> Option<(Limit, Scope)> {
        use Operation as O;
        use Scope::{Account, Stream};
        let c = &self.config;
        if !c.enabled {
            return None;
        }
        let (limit, scope) = match op {
            O::CreateStream => (c.create_stream, Account),
            O::DeleteStream => (c.delete_stream, Account),
            O::DescribeStream => (c.describe_stream, Account),
            O::DescribeStreamSummary => (c.describe_stream_summary, Account),
            O::ListStreams => (c.list_streams, Account),
            O::ListShards => (c.list_shards, Stream),
            O::SplitShard => (c.split_shard, Account),
            O::MergeShards => (c.merge_shards, Account),
            O::UpdateShardCount => (c.update_shard_count, Account),
            O::AddTagsToStream => (c.add_tags_to_stream, Account),
            O::RemoveTagsFromStream => (c.remove_tags_from_stream, Account),
            O::ListTagsForStream => (c.list_tags_for_stream, Account),
            O::RegisterStreamConsumer => (c.register_stream_consumer, Account),
            O::DescribeStreamConsumer => (c.describe_stream_consumer, Stream),
            O::DeregisterStreamConsumer => (c.deregister_stream_consumer, Stream),
            O::ListStreamConsumers => (c.list_stream_consumers, Stream),
            O::DescribeLimits => (c.describe_limits, Account),
            _ => return None,
        };
        limit.rate().is_some().then_some((limit, scope))
    }

    /// Counts one call of `op` naming `stream` and says whether it is admitted. A
    /// per-stream operation whose input names no stream is admitted (its handler refuses
    /// it); a refused call is not counted.
    pub fn admit(&self, op: Operation, stream: Option<&str>) -> bool {
        let Some((limit, scope)) = self.limit(op) else {
            return true;
        };
        match scope {
            Scope::Account => {
                let mut windows = self.account.lock();
                let w = windows.entry(op).or_insert_with(|| CallWindow::new(limit));
                take(w)
            }
            Scope::Stream => {
                let Some(stream) = stream else { return true };
                let now = Instant::now();
                let mut windows = self.streams.lock();
                if windows.len() > PRUNE_ABOVE {
                    windows.retain(|_, (_, used)| now.saturating_duration_since(*used) < IDLE);
                }
                let (w, used) = windows
                    .entry((op, stream.to_owned()))
                    .or_insert_with(|| (CallWindow::new(limit), now));
                *used = now;
                take(w)
            }
        }
    }
}

fn take(w: &mut CallWindow) -> bool {
    let admitted = w.has();
    if admitted {
        w.take();
    }
    admitted
}

/// The message Kinesis sends with a control-plane `LimitExceededException`.
pub fn message(stream: Option<&str>, account: &str) -> String {
    match stream {
        Some(s) => format!("Rate exceeded for stream {s} under account {account}."),
        None => format!("Rate exceeded for account {account}."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(f: impl FnOnce(&mut ControlPlaneLimits)) -> ControlPlaneRates {
        let mut c = ControlPlaneLimits::default();
        f(&mut c);
        ControlPlaneRates::new(c)
    }

    #[tokio::test(start_paused = true)]
    async fn account_rate_admits_n_per_second_across_streams() {
        let r = rates(|_| {});
        for i in 0..10 {
            assert!(r.admit(Operation::DescribeStream, Some(&format!("s{i}"))));
        }
        assert!(!r.admit(Operation::DescribeStream, Some("other")));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(r.admit(Operation::DescribeStream, Some("s0")));
    }

    #[tokio::test(start_paused = true)]
    async fn stream_rate_is_counted_per_stream() {
        let r = rates(|c| c.list_stream_consumers = Limit::PerSecond(2));
        assert!(r.admit(Operation::ListStreamConsumers, Some("a")));
        assert!(r.admit(Operation::ListStreamConsumers, Some("a")));
        assert!(!r.admit(Operation::ListStreamConsumers, Some("a")));
        assert!(r.admit(Operation::ListStreamConsumers, Some("b")));
        // No stream named: the handler refuses the request, the limiter does not.
        assert!(r.admit(Operation::ListStreamConsumers, None));
    }

    #[tokio::test(start_paused = true)]
    async fn off_and_disabled_admit_everything() {
        let off = rates(|c| c.describe_limits = Limit::Off);
        let disabled = rates(|c| c.enabled = false);
        for _ in 0..100 {
            assert!(off.admit(Operation::DescribeLimits, None));
            assert!(disabled.admit(Operation::CreateStream, Some("s")));
        }
        // Switching one rate off leaves the others.
        for _ in 0..5 {
            assert!(off.admit(Operation::ListStreams, None));
        }
        assert!(!off.admit(Operation::ListStreams, None));
        assert_eq!(rates(|_| {}).limit(Operation::PutRecord), None);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_stream_windows_are_pruned() {
        let r = rates(|_| {});
        for i in 0..=PRUNE_ABOVE {
            r.admit(Operation::ListShards, Some(&format!("s{i}")));
        }
        tokio::time::advance(IDLE).await;
        r.admit(Operation::ListShards, Some("fresh"));
        assert_eq!(r.streams.lock().len(), 1);
    }

    #[test]
    fn messages_are_aws_texts() {
        assert_eq!(
            message(Some("orders"), "123456789012"),
            "Rate exceeded for stream orders under account 123456789012."
        );
        assert_eq!(
            message(None, "123456789012"),
            "Rate exceeded for account 123456789012."
        );
    }
}
