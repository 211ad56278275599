//! The producer's Prometheus metrics, registered under the `kpl_` prefix into the registry
//! the application passes to [`ProducerBuilder::metrics`](crate::ProducerBuilder::metrics).
//!
//! Every series carries a `stream` label; the [crate docs](crate#metrics) list each metric
//! with its type and its KPL name.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// The `stream` label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StreamLabel {
    stream: String,
}

/// The `stream` and `code` labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    stream: String,
    code: String,
}

/// Error codes counted under their own name; others become `other`, so a misbehaving
/// endpoint cannot grow the label set.
const KNOWN_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "InternalFailure",
    "ServiceUnavailable",
    "LimitExceededException",
    "ThrottlingException",
    "ResourceNotFoundException",
    "AccessDeniedException",
    "ValidationException",
    "InvalidArgumentException",
    "KMSThrottlingException",
    "KMSAccessDeniedException",
    "ExpiredTokenException",
    "Timeout",
    "ConnectionError",
    "ResponseError",
    "Wrong Shard",
    "Record Count Mismatch",
];

fn retries_histogram() -> Histogram {
    Histogram::new([0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0])
}

fn seconds_histogram() -> Histogram {
    // 0.5 ms .. ~33 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

fn per_record_histogram() -> Histogram {
    Histogram::new([
        1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0,
    ])
}

fn per_request_histogram() -> Histogram {
    Histogram::new([1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0])
}

/// Every metric family of a producer.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    received: Family<StreamLabel, Counter>,
    put: Family<StreamLabel, Counter>,
    data_put: Family<StreamLabel, Counter>,
    failed: Family<StreamLabel, Counter>,
    expired: Family<StreamLabel, Counter>,
    kinesis_put: Family<StreamLabel, Counter>,
    kinesis_data_put: Family<StreamLabel, Counter>,
    errors: Family<ErrorLabels, Counter>,
    retries: Family<StreamLabel, Histogram, fn() -> Histogram>,
    buffering: Family<StreamLabel, Histogram, fn() -> Histogram>,
    request_time: Family<StreamLabel, Histogram, fn() -> Histogram>,
    per_kinesis_record: Family<StreamLabel, Histogram, fn() -> Histogram>,
    per_request: Family<StreamLabel, Histogram, fn() -> Histogram>,
    pub(crate) pending: Gauge,
    pub(crate) buffered_bytes: Gauge,
    pub(crate) in_flight: Gauge,
}

/// One stream's series, looked up once.
#[derive(Debug, Clone)]
pub(crate) struct StreamMetrics {
    pub(crate) received: Counter,
    pub(crate) put: Counter,
    pub(crate) data_put: Counter,
    pub(crate) failed: Counter,
    pub(crate) expired: Counter,
    pub(crate) kinesis_put: Counter,
    pub(crate) kinesis_data_put: Counter,
    pub(crate) retries: Histogram,
    pub(crate) buffering: Histogram,
    pub(crate) request_time: Histogram,
    pub(crate) per_kinesis_record: Histogram,
    pub(crate) per_request: Histogram,
    errors: Family<ErrorLabels, Counter>,
    stream: String,
}

impl StreamMetrics {
    /// Counts a failed attempt (of a Kinesis record or a whole request).
    pub(crate) fn error(&self, code: &str, n: u64) {
        let code = if KNOWN_CODES.contains(&code) {
            code
        } else {
            "other"
        };
        self.errors
            .get_or_create(&ErrorLabels {
                stream: self.stream.clone(),
                code: code.to_string(),
            })
            .inc_by(n);
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        Metrics {
            received: Family::default(),
            put: Family::default(),
            data_put: Family::default(),
            failed: Family::default(),
            expired: Family::default(),
            kinesis_put: Family::default(),
            kinesis_data_put: Family::default(),
            errors: Family::default(),
            retries: Family::new_with_constructor(retries_histogram),
            buffering: Family::new_with_constructor(seconds_histogram),
            request_time: Family::new_with_constructor(seconds_histogram),
            per_kinesis_record: Family::new_with_constructor(per_record_histogram),
            per_request: Family::new_with_constructor(per_request_histogram),
            pending: Gauge::default(),
            buffered_bytes: Gauge::default(),
            in_flight: Gauge::default(),
        }
    }

    /// Registers every family under `kpl_`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("kpl");
        r.register(
            "user_records_received",
            "User records accepted by put (KPL UserRecordsReceived)",
            self.received.clone(),
        );
        r.register(
            "user_records_pending",
            "User records accepted and not yet resolved (KPL UserRecordsPending)",
            self.pending.clone(),
        );
        r.register_with_unit(
            "buffered",
            "Bytes of data and keys of the pending user records",
            Unit::Bytes,
            self.buffered_bytes.clone(),
        );
        r.register(
            "user_records_put",
            "User records written (KPL UserRecordsPut, successes)",
            self.put.clone(),
        );
        r.register_with_unit(
            "user_records_data_put",
            "Data bytes of the user records written (KPL UserRecordsDataPut)",
            Unit::Bytes,
            self.data_put.clone(),
        );
        r.register(
            "user_records_failed",
            "User records failed for good (KPL UserRecordsPut, failures)",
            self.failed.clone(),
        );
        r.register(
            "user_records_expired",
            "User records failed because record_ttl ran out (KPL UserRecordExpired)",
            self.expired.clone(),
        );
        r.register(
            "kinesis_records_put",
            "Kinesis records written, aggregated or single (KPL KinesisRecordsPut)",
            self.kinesis_put.clone(),
        );
        r.register_with_unit(
            "kinesis_records_data_put",
            "Data bytes of the Kinesis records written (KPL KinesisRecordsDataPut)",
            Unit::Bytes,
            self.kinesis_data_put.clone(),
        );
        r.register(
            "errors",
            "Failed attempts of Kinesis records and requests by error code (KPL ErrorsByCode)",
            self.errors.clone(),
        );
        r.register(
            "retries_per_record",
            "Attempts minus one of each resolved user record (KPL RetriesPerRecord)",
            self.retries.clone(),
        );
        r.register_with_unit(
            "buffering_time",
            "Time from put, or from the last failed attempt, to the request (KPL BufferingTime)",
            Unit::Seconds,
            self.buffering.clone(),
        );
        r.register_with_unit(
            "request_time",
            "PutRecords latency (KPL RequestTime)",
            Unit::Seconds,
            self.request_time.clone(),
        );
        r.register(
            "user_records_per_kinesis_record",
            "User records per Kinesis record sent (KPL UserRecordsPerKinesisRecord)",
            self.per_kinesis_record.clone(),
        );
        r.register(
            "kinesis_records_per_request",
            "Kinesis records per PutRecords request (KPL KinesisRecordsPerPutRecordsRequest)",
            self.per_request.clone(),
        );
        r.register(
            "requests_in_flight",
            "PutRecords requests in flight",
            self.in_flight.clone(),
        );
    }

    /// The series of one stream.
    pub(crate) fn stream(&self, name: &str) -> StreamMetrics {
        let l = StreamLabel {
            stream: name.to_string(),
        };
        StreamMetrics {
            received: self.received.get_or_create(&l).clone(),
            put: self.put.get_or_create(&l).clone(),
            data_put: self.data_put.get_or_create(&l).clone(),
            failed: self.failed.get_or_create(&l).clone(),
            expired: self.expired.get_or_create(&l).clone(),
            kinesis_put: self.kinesis_put.get_or_create(&l).clone(),
            kinesis_data_put: self.kinesis_data_put.get_or_create(&l).clone(),
            retries: self.retries.get_or_create(&l).clone(),
            buffering: self.buffering.get_or_create(&l).clone(),
            request_time: self.request_time.get_or_create(&l).clone(),
            per_kinesis_record: self.per_kinesis_record.get_or_create(&l).clone(),
            per_request: self.per_request.get_or_create(&l).clone(),
            errors: self.errors.clone(),
            stream: name.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn families_are_registered_with_the_kpl_prefix_and_stream_label() {
        let m = Metrics::new();
        let mut registry = Registry::default();
        m.register(&mut registry);
        let s = m.stream("orders");
        s.received.inc_by(3);
        s.error("ProvisionedThroughputExceededException", 2);
        s.error("SomethingOdd", 1);
        s.retries.observe(0.0);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("kpl_user_records_received_total{stream=\"orders\"} 3"),
            "{text}"
        );
        assert!(text.contains(
            "kpl_errors_total{stream=\"orders\",code=\"ProvisionedThroughputExceededException\"} 2"
        ));
        assert!(text.contains("kpl_errors_total{stream=\"orders\",code=\"other\"} 1"));
        assert!(text.contains("kpl_retries_per_record_count{stream=\"orders\"} 1"));
        assert!(text.contains("kpl_buffered_bytes "));
        assert!(text.contains("kpl_requests_in_flight "));
    }
}
