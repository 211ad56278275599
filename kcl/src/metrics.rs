//! Prometheus metrics, registered into the application's registry.
//!
//! Each metric names the KCL (CloudWatch) metric it corresponds to. Label sets are bounded:
//! `shard` by the stream's shards, `operation` and `outcome` by the fixed lists below.
//!
//! | metric | type | labels | KCL metric |
//! |---|---|---|---|
//! | `kcl_records_processed` | counter | shard | ProcessTask RecordsProcessed |
//! | `kcl_bytes_processed` | counter | shard | ProcessTask DataBytesProcessed |
//! | `kcl_millis_behind_latest` | gauge | shard | ProcessTask MillisBehindLatest |
//! | `kcl_process_records_seconds` | histogram | | RecordProcessor.processRecords.Time |
//! | `kcl_process_retries` | counter | shard | (none: KCL has no retry policy) |
//! | `kcl_dead_lettered_records` | counter | shard | (none) |
//! | `kcl_aggregates_dropped` | counter | shard | (none: KCL drops them silently) |
//! | `kcl_leases_held` | gauge | | RenewAllLeases CurrentLeases |
//! | `kcl_leases_taken` | counter | kind = expired · stolen | TakeLeases TakenLeases |
//! | `kcl_leases_lost` | counter | | RenewAllLeases LostLeases |
//! | `kcl_leases_released` | counter | | (none: KCL does not release on shutdown) |
//! | `kcl_lease_operations` | counter | operation, outcome | RenewLease/TakeLease/UpdateLease Success |
//! | `kcl_lease_operation_seconds` | histogram | operation | RenewLease/TakeLease/UpdateLease Time |
//! | `kcl_checkpoint_seconds` | histogram | | UpdateLease Time (checkpoint) |
//! | `kcl_checkpoint_failures` | counter | | UpdateLease Success = 0 |

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// `shard` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ShardLabel {
    pub(crate) shard: String,
}

/// How a lease was taken.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum TakeKind {
    /// Unowned or expired.
    expired,
    /// From a live worker, to balance.
    stolen,
}

/// `kind` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TakeLabel {
    pub(crate) kind: TakeKind,
}

/// A lease store operation.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum LeaseOp {
    list,
    get,
    create,
    renew,
    take,
    release,
    checkpoint,
    set_child_shards,
    delete,
}

/// Result of a lease store operation.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum Outcome {
    success,
    conflict,
    error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OpLabel {
    pub(crate) operation: LeaseOp,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OpOutcomeLabel {
    pub(crate) operation: LeaseOp,
    pub(crate) outcome: Outcome,
}

fn latency() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The scheduler's metrics. Cheap to clone (handles to shared atomics).
#[derive(Clone, Debug)]
pub struct Metrics {
    pub(crate) records_processed: Family<ShardLabel, Counter>,
    pub(crate) bytes_processed: Family<ShardLabel, Counter>,
    pub(crate) millis_behind_latest: Family<ShardLabel, Gauge>,
    pub(crate) process_records_seconds: Histogram,
    pub(crate) process_retries: Family<ShardLabel, Counter>,
    pub(crate) dead_lettered_records: Family<ShardLabel, Counter>,
    pub(crate) aggregates_dropped: Family<ShardLabel, Counter>,
    pub(crate) leases_held: Gauge,
    pub(crate) leases_taken: Family<TakeLabel, Counter>,
    pub(crate) leases_lost: Counter,
    pub(crate) leases_released: Counter,
    pub(crate) lease_operations: Family<OpOutcomeLabel, Counter>,
    pub(crate) lease_operation_seconds: Family<OpLabel, Histogram>,
    pub(crate) checkpoint_seconds: Histogram,
    pub(crate) checkpoint_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            records_processed: Family::default(),
            bytes_processed: Family::default(),
            millis_behind_latest: Family::default(),
            process_records_seconds: latency(),
            process_retries: Family::default(),
            dead_lettered_records: Family::default(),
            aggregates_dropped: Family::default(),
            leases_held: Gauge::default(),
            leases_taken: Family::default(),
            leases_lost: Counter::default(),
            leases_released: Counter::default(),
            lease_operations: Family::default(),
            lease_operation_seconds: Family::new_with_constructor(latency),
            checkpoint_seconds: latency(),
            checkpoint_failures: Counter::default(),
        }
    }
}

impl Metrics {
    /// Metrics registered into `registry` (under the prefix `kcl`).
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics::default();
        let r = registry.sub_registry_with_prefix("kcl");
        r.register(
            "records_processed",
            "User records delivered to the processor (KCL RecordsProcessed)",
            m.records_processed.clone(),
        );
        r.register(
            "bytes_processed",
            "Bytes of user record data delivered (KCL DataBytesProcessed)",
            m.bytes_processed.clone(),
        );
        r.register(
            "millis_behind_latest",
            "How far the last batch was behind the tip of the shard (KCL MillisBehindLatest)",
            m.millis_behind_latest.clone(),
        );
        r.register(
            "process_records_seconds",
            "Time in RecordProcessor::process_records (KCL RecordProcessor.processRecords.Time)",
            m.process_records_seconds.clone(),
        );
        r.register(
            "process_retries",
            "Batches handed to the processor again after it failed",
            m.process_retries.clone(),
        );
        r.register(
            "dead_lettered_records",
            "User records handed to the dead-letter hook",
            m.dead_lettered_records.clone(),
        );
        r.register(
            "aggregates_dropped",
            "KPL aggregates dropped for holding a user record outside the shard's hash range",
            m.aggregates_dropped.clone(),
        );
        r.register(
            "leases_held",
            "Leases this worker holds (KCL CurrentLeases)",
            m.leases_held.clone(),
        );
        r.register(
            "leases_taken",
            "Leases taken, expired/unowned or stolen to balance (KCL TakenLeases)",
            m.leases_taken.clone(),
        );
        r.register(
            "leases_lost",
            "Held leases lost to another worker or to expiry (KCL LostLeases)",
            m.leases_lost.clone(),
        );
        r.register(
            "leases_released",
            "Leases released on shutdown or at shard end",
            m.leases_released.clone(),
        );
        r.register(
            "lease_operations",
            "Lease store operations by outcome (KCL RenewLease/TakeLease/UpdateLease Success)",
            m.lease_operations.clone(),
        );
        r.register(
            "lease_operation_seconds",
            "Lease store operation latency (KCL RenewLease/TakeLease/UpdateLease Time)",
            m.lease_operation_seconds.clone(),
        );
        r.register(
            "checkpoint_seconds",
            "Checkpoint latency, request to durable (KCL UpdateLease Time)",
            m.checkpoint_seconds.clone(),
        );
        r.register(
            "checkpoint_failures",
            "Checkpoints that failed (KCL UpdateLease Success = 0)",
            m.checkpoint_failures.clone(),
        );
        m
    }

    pub(crate) fn shard(shard: &str) -> ShardLabel {
        ShardLabel {
            shard: shard.to_owned(),
        }
    }
}
