//! The operator's Prometheus metrics, served on `/metrics` of `--metrics-listen`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `riffle_operator_reconciliations_total` | counter | controller |
//! | `riffle_operator_reconcile_failures_total` | counter | controller, error |
//! | `riffle_operator_reconcile_duration_seconds` | histogram | controller |
//! | `riffle_operator_stream_open_shards` | gauge | namespace, stream |
//! | `riffle_operator_stream_target_shards` | gauge | namespace, stream |
//! | `riffle_operator_reshard_budget_remaining` | gauge | namespace, stream |
//! | `riffle_operator_reshards_total` | counter | namespace, stream, direction, result |
//! | `riffle_operator_autoscaler_decisions_total` | counter | namespace, stream, decision |
//! | `riffle_operator_leader` | gauge | — |
//!
//! `stream` is the Kinesis stream name, the same label the broker's series carry, so the
//! dashboard joins them. A stream's series are removed when its object is deleted.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of the reconcile metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `stream`, `consumer` or `broker`.
    pub controller: String,
}

/// Labels of a reconcile failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// `stream`, `consumer` or `broker`.
    pub controller: String,
    /// The error kind (a Kinesis error code, `KubeApi`, …).
    pub error: String,
}

/// Labels of per-stream series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// Namespace of the Stream object (`standalone` in standalone mode).
    pub namespace: String,
    /// Kinesis stream name.
    pub stream: String,
}

/// Labels of a reshard.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReshardLabels {
    /// Namespace of the Stream object.
    pub namespace: String,
    /// Kinesis stream name.
    pub stream: String,
    /// `up` or `down`.
    pub direction: String,
    /// `success` or `error`.
    pub result: String,
}

/// Labels of an autoscaler decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// Namespace of the Stream object.
    pub namespace: String,
    /// Kinesis stream name.
    pub stream: String,
    /// `ScaleUp`, `ScaleDown`, `SplitShard` or the hold reason (`WithinTarget`, …).
    pub decision: String,
}

/// Every metric family of the operator, registered at construction.
#[derive(Debug)]
pub struct Metrics {
    /// The registry to encode.
    pub registry: Registry,
    /// Reconciliations started.
    pub reconciliations: Family<ControllerLabels, Counter>,
    /// Reconciliations that failed.
    pub failures: Family<FailureLabels, Counter>,
    /// Reconcile duration.
    pub duration: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    /// Open shards per stream.
    pub open_shards: Family<StreamLabels, Gauge>,
    /// Target shards per stream.
    pub target_shards: Family<StreamLabels, Gauge>,
    /// Reshards left in the rolling 24 h.
    pub budget_remaining: Family<StreamLabels, Gauge>,
    /// Reshards made.
    pub reshards: Family<ReshardLabels, Counter>,
    /// Autoscaler decisions.
    pub decisions: Family<DecisionLabels, Counter>,
    /// 1 while this process is the leader.
    pub leader: Gauge<i64, AtomicI64>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("riffle_operator");
        let m = Metrics {
            reconciliations: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            open_shards: Family::default(),
            target_shards: Family::default(),
            budget_remaining: Family::default(),
            reshards: Family::default(),
            decisions: Family::default(),
            leader: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "reconciliations",
            "Reconciliations started",
            m.reconciliations.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciliations that failed",
            m.failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconciliation took",
            m.duration.clone(),
        );
        registry.register(
            "stream_open_shards",
            "Open shards of a stream",
            m.open_shards.clone(),
        );
        registry.register(
            "stream_target_shards",
            "Shards the operator is moving a stream toward",
            m.target_shards.clone(),
        );
        registry.register(
            "reshard_budget_remaining",
            "Reshards still allowed in the rolling 24 hours",
            m.budget_remaining.clone(),
        );
        registry.register(
            "reshards",
            "Reshards made, by direction and result",
            m.reshards.clone(),
        );
        registry.register(
            "autoscaler_decisions",
            "Autoscaler decisions, by action or hold reason",
            m.decisions.clone(),
        );
        registry.register(
            "leader",
            "1 while this process is the elected leader",
            m.leader.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Records one reconciliation of `controller` that took `took`; `error` names its
    /// failure, if it failed.
    pub fn reconciled(&self, controller: &str, took: Duration, error: Option<&str>) {
        let labels = ControllerLabels {
            controller: controller.to_string(),
        };
        self.reconciliations.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Some(error) = error {
            self.failures
                .get_or_create(&FailureLabels {
                    controller: controller.to_string(),
                    error: error.to_string(),
                })
                .inc();
        }
    }

    /// Sets a stream's shard gauges.
    pub fn stream_shards(&self, labels: &StreamLabels, open: i32, target: i32, budget: u32) {
        self.open_shards.get_or_create(labels).set(i64::from(open));
        self.target_shards
            .get_or_create(labels)
            .set(i64::from(target));
        self.budget_remaining
            .get_or_create(labels)
            .set(i64::from(budget));
    }

    /// Removes a deleted stream's gauges.
    pub fn forget_stream(&self, labels: &StreamLabels) {
        self.open_shards.remove(labels);
        self.target_shards.remove(labels);
        self.budget_remaining.remove(labels);
    }

    /// Counts a reshard.
    pub fn reshard(&self, labels: &StreamLabels, direction: &str, ok: bool) {
        self.reshards
            .get_or_create(&ReshardLabels {
                namespace: labels.namespace.clone(),
                stream: labels.stream.clone(),
                direction: direction.to_string(),
                result: if ok { "success" } else { "error" }.to_string(),
            })
            .inc();
    }

    /// Counts an autoscaler decision.
    pub fn decision(&self, labels: &StreamLabels, decision: &str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                namespace: labels.namespace.clone(),
                stream: labels.stream.clone(),
                decision: decision.to_string(),
            })
            .inc();
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_registered_with_the_prefix() {
        let m = Metrics::default();
        let l = StreamLabels {
            namespace: "ns".into(),
            stream: "orders".into(),
        };
        m.stream_shards(&l, 2, 4, 9);
        m.reshard(&l, "up", true);
        m.decision(&l, "ScaleUp");
        m.reconciled(
            "stream",
            Duration::from_millis(20),
            Some("LimitExceededException"),
        );
        let text = m.encode();
        for want in [
            r#"riffle_operator_stream_open_shards{namespace="ns",stream="orders"} 2"#,
            r#"riffle_operator_stream_target_shards{namespace="ns",stream="orders"} 4"#,
            r#"riffle_operator_reshard_budget_remaining{namespace="ns",stream="orders"} 9"#,
            r#"riffle_operator_reshards_total{namespace="ns",stream="orders",direction="up",result="success"} 1"#,
            r#"riffle_operator_autoscaler_decisions_total{namespace="ns",stream="orders",decision="ScaleUp"} 1"#,
            r#"riffle_operator_reconcile_failures_total{controller="stream",error="LimitExceededException"} 1"#,
            r#"riffle_operator_reconciliations_total{controller="stream"} 1"#,
            "riffle_operator_reconcile_duration_seconds_count{controller=\"stream\"} 1",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        m.forget_stream(&l);
        assert!(!m.encode().contains("stream_open_shards{"));
    }
}
