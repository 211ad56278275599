//! Prometheus metrics, served on the admin listener at `/metrics`.
//!
//! Families are registered once, here, with bounded label sets: `stream` and `shard` (one
//! series per shard that exists), `operation` and `result` (fixed sets). Each shard keeps
//! clones of its own counters so the hot path never hashes labels. The CloudWatch metric
//! each one corresponds to is listed in `docs/metrics.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Labels of a per-shard series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    /// Stream name.
    pub stream: String,
    /// Shard id.
    pub shard: String,
}

/// Labels of a per-consumer, per-shard series (enhanced fan-out).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    /// Stream name.
    pub stream: String,
    /// Registered consumer name.
    pub consumer: String,
    /// Shard id.
    pub shard: String,
}

/// Labels of a per-operation request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The API operation, e.g. `PutRecords`.
    pub operation: &'static str,
    /// `success`, `throttled`, `client_error` or `server_error`.
    pub result: &'static str,
}

/// Labels of a request abandoned by the server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AbandonLabels {
    /// `body_idle` (the body stopped arriving), `body_deadline` (it did not finish in
    /// time) or `busy` (the memory budget stayed spent until the deadline).
    pub reason: &'static str,
}

/// Labels of a per-operation latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The API operation.
    pub operation: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~13 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 19))
}

/// The window of [`WindowMax`].
pub const WINDOW: Duration = Duration::from_secs(60);

/// A gauge that reports the largest value observed over a trailing window, as CloudWatch's
/// `Maximum` statistic of a period does, so that a spike between two scrapes is not lost to
/// the last value. Two fixed windows of [`WINDOW`]: a scrape reports the maximum of the
/// current and the previous one (covering the last 60 to 120 s); with no observation in
/// either, the last value observed. Independent of who scrapes and how often.
#[derive(Debug, Clone, Default)]
pub struct WindowMax(Arc<Mutex<WindowState>>);

#[derive(Debug, Default)]
struct WindowState {
    started: Option<Instant>,
    current: Option<i64>,
    previous: Option<i64>,
    last: i64,
}

impl WindowState {
    fn roll(&mut self, now: Instant) {
        let Some(started) = self.started else {
            self.started = Some(now);
            return;
        };
        let age = now.saturating_duration_since(started);
        if age >= WINDOW * 2 {
            self.previous = None;
            self.current = None;
            self.started = Some(now);
        } else if age >= WINDOW {
            self.previous = self.current.take();
            self.started = Some(started + WINDOW);
        }
    }
}

impl WindowMax {
    /// Records one value.
    pub fn observe(&self, v: i64) {
        self.observe_at(v, Instant::now());
    }

    /// What a scrape reports now.
    pub fn get(&self) -> i64 {
        self.get_at(Instant::now())
    }

    fn observe_at(&self, v: i64, now: Instant) {
        let mut st = self.0.lock();
        st.roll(now);
        st.current = Some(st.current.map_or(v, |c| c.max(v)));
        st.last = v;
    }

    fn get_at(&self, now: Instant) -> i64 {
        let mut st = self.0.lock();
        st.roll(now);
        match (st.current, st.previous) {
            (None, None) => st.last,
            (a, b) => a.unwrap_or(i64::MIN).max(b.unwrap_or(i64::MIN)),
        }
    }
}

impl prometheus_client::metrics::TypedMetric for WindowMax {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for WindowMax {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// Every metric family of the broker.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Records written, per shard (CloudWatch IncomingRecords).
    pub incoming_records: Family<ShardLabels, Counter>,
    /// Bytes written, data plus partition key, per shard (IncomingBytes).
    pub incoming_bytes: Family<ShardLabels, Counter>,
    /// Records returned by GetRecords, per shard (OutgoingRecords).
    pub outgoing_records: Family<ShardLabels, Counter>,
    /// Bytes returned by GetRecords, per shard (OutgoingBytes).
    pub outgoing_bytes: Family<ShardLabels, Counter>,
    /// Records rejected by the write limit (WriteProvisionedThroughputExceeded).
    pub write_throttled: Family<ShardLabels, Counter>,
    /// GetRecords calls rejected by the read limit (ReadProvisionedThroughputExceeded).
    pub read_throttled: Family<ShardLabels, Counter>,
    /// The largest milliseconds behind the tip of the GetRecords answers in the last minute
    /// or so (IteratorAgeMilliseconds, Maximum); see [`WindowMax`].
    pub iterator_age: Family<ShardLabels, WindowMax>,
    /// Bytes of the shard's log on disk.
    pub storage_bytes: Family<ShardLabels, Gauge>,
    /// Requests by operation and result (`<Operation>.Success`).
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by operation (`<Operation>.Latency`).
    pub latency: Family<OperationLabels, Histogram, fn() -> Histogram>,
    /// SubscribeToShard events sent (`SubscribeToShardEvent.Success`).
    pub sub_events: Family<ConsumerLabels, Counter>,
    /// Records pushed to a consumer (`SubscribeToShardEvent.Records`).
    pub sub_records: Family<ConsumerLabels, Counter>,
    /// Bytes pushed to a consumer (`SubscribeToShardEvent.Bytes`).
    pub sub_bytes: Family<ConsumerLabels, Counter>,
    /// Subscriptions started (`SubscribeToShard.Success`).
    pub subscriptions: Family<ConsumerLabels, Counter>,
    /// Subscriptions refused within 5 s of another (`SubscribeToShard.RateExceeded`).
    pub sub_rate_exceeded: Family<ConsumerLabels, Counter>,
    /// Seconds from a record's arrival to its push (no CloudWatch equivalent).
    pub sub_propagation: Family<ConsumerLabels, Histogram, fn() -> Histogram>,
    /// API connections open now, all listeners.
    pub connections_open: Gauge,
    /// Connections closed at accept because `http.max_connections` were open.
    pub connections_rejected: Counter,
    /// Requests the server abandoned, by reason.
    pub requests_abandoned: Family<AbandonLabels, Counter>,
    /// Bytes of the in-flight memory budget held by requests (set when scraped).
    pub inflight_bytes: Gauge,
    /// Requests holding or expecting part of the memory budget (set when scraped).
    pub inflight_requests: Gauge,
}

/// One consumer's handles on one shard.
#[derive(Debug, Clone)]
pub struct ConsumerMetrics {
    /// See [`Metrics::sub_events`].
    pub events: Counter,
    /// See [`Metrics::sub_records`].
    pub records: Counter,
    /// See [`Metrics::sub_bytes`].
    pub bytes: Counter,
    /// See [`Metrics::subscriptions`].
    pub subscriptions: Counter,
    /// See [`Metrics::sub_rate_exceeded`].
    pub rate_exceeded: Counter,
    /// See [`Metrics::sub_propagation`].
    pub propagation: Histogram,
}

/// A shard's own handles to its series.
#[derive(Debug, Clone)]
pub struct ShardMetrics {
    /// See [`Metrics::incoming_records`].
    pub incoming_records: Counter,
    /// See [`Metrics::incoming_bytes`].
    pub incoming_bytes: Counter,
    /// See [`Metrics::outgoing_records`].
    pub outgoing_records: Counter,
    /// See [`Metrics::outgoing_bytes`].
    pub outgoing_bytes: Counter,
    /// See [`Metrics::write_throttled`].
    pub write_throttled: Counter,
    /// See [`Metrics::read_throttled`].
    pub read_throttled: Counter,
    /// See [`Metrics::iterator_age`].
    pub iterator_age: WindowMax,
    /// See [`Metrics::storage_bytes`].
    pub storage_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("riffle");
        let m = Metrics {
            registry: Registry::default(),
            incoming_records: Family::default(),
            incoming_bytes: Family::default(),
            outgoing_records: Family::default(),
            outgoing_bytes: Family::default(),
            write_throttled: Family::default(),
            read_throttled: Family::default(),
            iterator_age: Family::default(),
            storage_bytes: Family::default(),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            sub_events: Family::default(),
            sub_records: Family::default(),
            sub_bytes: Family::default(),
            subscriptions: Family::default(),
            sub_rate_exceeded: Family::default(),
            sub_propagation: Family::new_with_constructor(latency_histogram),
            connections_open: Gauge::default(),
            connections_rejected: Counter::default(),
            requests_abandoned: Family::default(),
            inflight_bytes: Gauge::default(),
            inflight_requests: Gauge::default(),
        };
        registry.register(
            "incoming_records",
            "Records written to the shard",
            m.incoming_records.clone(),
        );
        registry.register(
            "incoming_bytes",
            "Bytes (data and partition key) written to the shard",
            m.incoming_bytes.clone(),
        );
        registry.register(
            "outgoing_records",
            "Records returned by GetRecords",
            m.outgoing_records.clone(),
        );
        registry.register(
            "outgoing_bytes",
            "Bytes returned by GetRecords",
            m.outgoing_bytes.clone(),
        );
        registry.register(
            "write_throttled_records",
            "Records rejected by the shard write limit",
            m.write_throttled.clone(),
        );
        registry.register(
            "read_throttled_requests",
            "GetRecords calls rejected by the shard read limit",
            m.read_throttled.clone(),
        );
        registry.register(
            "iterator_age_milliseconds",
            "Largest milliseconds behind the tip of the shard's GetRecords answers over the last 60 to 120 s",
            m.iterator_age.clone(),
        );
        registry.register(
            "storage_bytes",
            "Bytes of the shard's log on disk",
            m.storage_bytes.clone(),
        );
        registry.register(
            "requests",
            "API requests by operation and result",
            m.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "API request latency by operation",
            m.latency.clone(),
        );
        registry.register(
            "subscribe_events",
            "SubscribeToShard events sent",
            m.sub_events.clone(),
        );
        registry.register(
            "subscribe_records",
            "Records pushed by SubscribeToShard",
            m.sub_records.clone(),
        );
        registry.register(
            "subscribe_bytes",
            "Bytes pushed by SubscribeToShard",
            m.sub_bytes.clone(),
        );
        registry.register(
            "subscriptions",
            "SubscribeToShard subscriptions started",
            m.subscriptions.clone(),
        );
        registry.register(
            "subscribe_rate_exceeded",
            "SubscribeToShard calls refused within 5 s of another",
            m.sub_rate_exceeded.clone(),
        );
        registry.register(
            "subscribe_propagation_seconds",
            "Seconds from a record's arrival to its push to a consumer",
            m.sub_propagation.clone(),
        );
        registry.register(
            "connections_open",
            "API connections open now",
            m.connections_open.clone(),
        );
        registry.register(
            "connections_rejected",
            "Connections closed at accept because the connection limit was reached",
            m.connections_rejected.clone(),
        );
        registry.register(
            "requests_abandoned",
            "Requests the server abandoned (stalled or slow body, or memory budget spent)",
            m.requests_abandoned.clone(),
        );
        registry.register(
            "inflight_bytes",
            "Bytes of the in-flight request memory budget held now",
            m.inflight_bytes.clone(),
        );
        registry.register(
            "inflight_requests",
            "Requests holding or expecting part of the memory budget now",
            m.inflight_requests.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The handles for one consumer on one shard.
    pub fn consumer(&self, stream: &str, consumer: &str, shard: &str) -> ConsumerMetrics {
        let l = ConsumerLabels {
            stream: stream.to_owned(),
            consumer: consumer.to_owned(),
            shard: shard.to_owned(),
        };
        ConsumerMetrics {
            events: self.sub_events.get_or_create(&l).clone(),
            records: self.sub_records.get_or_create(&l).clone(),
            bytes: self.sub_bytes.get_or_create(&l).clone(),
            subscriptions: self.subscriptions.get_or_create(&l).clone(),
            rate_exceeded: self.sub_rate_exceeded.get_or_create(&l).clone(),
            propagation: self.sub_propagation.get_or_create(&l).clone(),
        }
    }

    /// The handles for one shard's series.
    pub fn shard(&self, stream: &str, shard: &str) -> ShardMetrics {
        let l = ShardLabels {
            stream: stream.to_owned(),
            shard: shard.to_owned(),
        };
        ShardMetrics {
            incoming_records: self.incoming_records.get_or_create(&l).clone(),
            incoming_bytes: self.incoming_bytes.get_or_create(&l).clone(),
            outgoing_records: self.outgoing_records.get_or_create(&l).clone(),
            outgoing_bytes: self.outgoing_bytes.get_or_create(&l).clone(),
            write_throttled: self.write_throttled.get_or_create(&l).clone(),
            read_throttled: self.read_throttled.get_or_create(&l).clone(),
            iterator_age: self.iterator_age.get_or_create(&l).clone(),
            storage_bytes: self.storage_bytes.get_or_create(&l).clone(),
        }
    }

    /// Drops one shard's series (its stream was deleted or retention removed it).
    pub fn remove_shard(&self, stream: &str, shard: &str) {
        let l = ShardLabels {
            stream: stream.to_owned(),
            shard: shard.to_owned(),
        };
        self.incoming_records.remove(&l);
        self.incoming_bytes.remove(&l);
        self.outgoing_records.remove(&l);
        self.outgoing_bytes.remove(&l);
        self.write_throttled.remove(&l);
        self.read_throttled.remove(&l);
        self.iterator_age.remove(&l);
        self.storage_bytes.remove(&l);
    }

    /// Records one finished request.
    pub fn observe_request(&self, operation: &'static str, result: &'static str, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { operation, result })
            .inc();
        self.latency
            .get_or_create(&OperationLabels { operation })
            .observe(seconds);
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    #[test]
    fn a_spike_is_reported_for_a_window_then_forgotten() {
        let m = WindowMax::default();
        let t0 = Instant::now();
        assert_eq!(m.get_at(t0), 0, "nothing observed yet");
        m.observe_at(50_000, t0);
        m.observe_at(0, t0 + Duration::from_secs(1));
        assert_eq!(
            m.get_at(t0 + Duration::from_secs(2)),
            50_000,
            "not the last value"
        );
        // The next window still covers the spike ...
        m.observe_at(10, t0 + Duration::from_secs(70));
        assert_eq!(m.get_at(t0 + Duration::from_secs(90)), 50_000);
        // ... the one after does not.
        m.observe_at(20, t0 + Duration::from_secs(125));
        assert_eq!(m.get_at(t0 + Duration::from_secs(130)), 20);
        // Idle for longer than two windows: the last value.
        assert_eq!(m.get_at(t0 + Duration::from_secs(600)), 20);
    }
}
