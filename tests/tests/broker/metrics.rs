//! The admin listener: /metrics, /healthz, /readyz.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::ShardIteratorType;

use crate::common::*;

const THROTTLED_STREAM: &str = "write_bytes_per_second = \"off\"\n\
write_records_per_second = \"off\"\n\
read_bytes_per_second = \"off\"\n\
get_records_per_second = \"off\"\n\
\n\
[limits.streams.thr]\n\
write_records_per_second = 2\n\
get_records_per_second = 2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let broker = TestBroker::start().await;
    for path in ["/healthz", "/readyz"] {
        let resp = broker.admin_get(path).await;
        assert_eq!(resp.status, 200, "{path}: {}", resp.body_text());
    }
    let resp = broker.admin_get("/metrics").await;
    assert_eq!(resp.status, 200);
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/plain") || ct.starts_with("application/openmetrics-text"),
        "content-type {ct:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_traffic_per_stream_and_shard() {
    let broker = TestBroker::builder()
        .config_toml(config("status_delay = \"50ms\"", "", THROTTLED_STREAM))
        .start()
        .await;
    broker.create_stream("m", 1).await;
    broker.create_stream("thr", 1).await;
    let client = broker.client();
    let shard = "shardId-000000000000";

    let mut put_calls = 0;
    let mut data_bytes = 0usize;
    let mut key_bytes = 0usize;
    for i in 1..=5usize {
        let data = vec![b'x'; i * 10];
        data_bytes += data.len();
        key_bytes += 2;
        put_calls += 1;
        client
            .put_record()
            .stream_name("m")
            .partition_key("pk")
            .data(blob(data))
            .send()
            .await
            .unwrap();
    }
    let it = iterator(&client, "m", shard, ShardIteratorType::TrimHorizon, None).await;
    let read = read_from(&client, it).await;
    assert_eq!(read.records.len(), 5);
    let mut get_calls = read.calls;

    // Throttle the limited stream: writes at 2 records/s, reads at 2/s.
    let mut put_throttled = 0;
    for i in 0..50 {
        put_calls += 1;
        match client
            .put_record()
            .stream_name("thr")
            .partition_key("k")
            .data(blob(format!("{i}")))
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(
                    e.code(),
                    Some("ProvisionedThroughputExceededException"),
                    "{e:?}"
                );
                put_throttled += 1;
                if put_throttled == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(put_throttled, 3, "2 records/s must throttle within 50 puts");
    let mut it = iterator(&client, "thr", shard, ShardIteratorType::TrimHorizon, None).await;
    let mut get_throttled = 0;
    let started = Instant::now();
    for _ in 0..20 {
        get_calls += 1;
        match client.get_records().shard_iterator(&it).send().await {
            Ok(out) => it = out.next_shard_iterator().unwrap().to_string(),
            Err(e) => {
                assert_eq!(
                    e.code(),
                    Some("ProvisionedThroughputExceededException"),
                    "{e:?}"
                );
                get_throttled += 1;
                if get_throttled == 2 {
                    break;
                }
            }
        }
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        get_throttled, 2,
        "2 GetRecords/s must throttle within 20 calls"
    );

    let text = broker.metrics_text().await;
    let samples = parse_metrics(&text);
    let ms = [("stream", "m"), ("shard", shard)];
    let get = |name: &str, labels: &[(&str, &str)]| {
        metric_sum(&samples, name, labels)
            .unwrap_or_else(|| panic!("metric {name}{labels:?} missing from:\n{text}"))
    };
    assert_eq!(get("riffle_incoming_records_total", &ms), 5.0);
    // Bytes may be counted as data only or as data + partition key (the
    // size that counts against the shard's write limit).
    let incoming_bytes = get("riffle_incoming_bytes_total", &ms);
    assert!(
        incoming_bytes == data_bytes as f64 || incoming_bytes == (data_bytes + key_bytes) as f64,
        "incoming bytes {incoming_bytes}, data {data_bytes}, keys {key_bytes}"
    );
    assert_eq!(
        get("riffle_outgoing_records_total", &[("stream", "m")]),
        5.0
    );
    let outgoing_bytes = get("riffle_outgoing_bytes_total", &[("stream", "m")]);
    assert!(
        outgoing_bytes == data_bytes as f64 || outgoing_bytes == (data_bytes + key_bytes) as f64,
        "outgoing bytes {outgoing_bytes}"
    );
    assert_eq!(
        get("riffle_write_throttled_records_total", &[]),
        put_throttled as f64
    );
    assert_eq!(
        get("riffle_read_throttled_requests_total", &[]),
        get_throttled as f64
    );
    assert_eq!(
        get("riffle_requests_total", &[("operation", "PutRecord")]),
        put_calls as f64
    );
    assert_eq!(
        get("riffle_requests_total", &[("operation", "GetRecords")]),
        get_calls as f64
    );
    // Throttled requests are counted under a result other than the
    // successful one.
    let put_results: std::collections::BTreeSet<String> = samples
        .iter()
        .filter(|s| {
            s.name == "riffle_requests_total"
                && s.labels.get("operation").map(String::as_str) == Some("PutRecord")
                && s.value > 0.0
        })
        .filter_map(|s| s.labels.get("result").cloned())
        .collect();
    assert!(
        put_results.len() >= 2,
        "results for PutRecord: {put_results:?}"
    );
    let count = get("riffle_request_duration_seconds_count", &[]);
    assert!(
        count >= (put_calls + get_calls) as f64,
        "histogram count {count}"
    );
    assert!(metric_sum(&samples, "riffle_request_duration_seconds_bucket", &[]).is_some());
    assert!(metric_sum(&samples, "riffle_request_duration_seconds_sum", &[]).is_some());
    let age = get("riffle_iterator_age_milliseconds", &ms);
    assert!(age >= 0.0);
    let storage = get("riffle_storage_bytes", &ms);
    assert!(
        storage >= data_bytes as f64,
        "storage bytes {storage} < {data_bytes}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iterator_age_is_the_maximum_of_the_window_not_the_last_answer() {
    let broker = TestBroker::start().await;
    broker.create_stream("age", 1).await;
    let client = broker.client();
    let put = |data: &'static [u8]| {
        client
            .put_record()
            .stream_name("age")
            .partition_key("k")
            .data(aws_smithy_types::Blob::new(data))
            .send()
    };
    let shard = put(b"old").await.unwrap().shard_id().to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    put(b"new").await.unwrap();
    let mut it = client
        .get_shard_iterator()
        .stream_name("age")
        .shard_id(&shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    // One record at a time: the first answer is far behind, the last one at the tip.
    let mut behind = Vec::new();
    for _ in 0..3 {
        let out = client
            .get_records()
            .shard_iterator(&it)
            .limit(1)
            .send()
            .await
            .unwrap();
        behind.push(out.millis_behind_latest().unwrap());
        it = out.next_shard_iterator().unwrap().to_owned();
    }
    assert!(behind[0] >= 1000, "the first read was behind: {behind:?}");
    assert_eq!(
        *behind.last().unwrap(),
        0,
        "the last at the tip: {behind:?}"
    );
    let samples = parse_metrics(&broker.metrics_text().await);
    let age = metric_sum(
        &samples,
        "riffle_iterator_age_milliseconds",
        &[("stream", "age"), ("shard", &shard)],
    )
    .unwrap();
    assert!(
        age >= behind[0] as f64,
        "the window's maximum ({}), not the last answer: {age}",
        behind[0]
    );
}
