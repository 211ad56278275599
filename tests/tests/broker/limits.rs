//! Per-shard throughput limits and the account shard limit.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::operation::create_stream::CreateStreamError;
use aws_sdk_kinesis::operation::get_records::GetRecordsError;
use aws_sdk_kinesis::operation::put_record::PutRecordError;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};

use crate::common::*;

const WRITE_LIMITED: &str = "write_bytes_per_second = \"off\"\n\
write_records_per_second = 1000\n\
read_bytes_per_second = \"off\"\n\
get_records_per_second = \"off\"\n\
\n\
[limits.streams.slow]\n\
write_records_per_second = 10\n\
\n\
[limits.streams.bytes]\n\
write_bytes_per_second = 1048576\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_records_over_write_limit_fail_per_record_and_lose_nothing() {
    let broker = TestBroker::builder()
        .config_toml(config(
            "status_delay = \"50ms\"",
            "fsync = \"never\"",
            WRITE_LIMITED,
        ))
        .start()
        .await;
    broker.create_stream("w", 1).await;
    let client = broker.client();
    let mut ok: HashSet<String> = HashSet::new();
    let mut failed: HashSet<String> = HashSet::new();
    let started = Instant::now();
    // Three batches of 500 sent at once: 1,500 records within well under a
    // second into a shard allowed 1,000 records/s.
    let mut sends = tokio::task::JoinSet::new();
    for batch in 0..3 {
        let entries: Vec<PutRecordsRequestEntry> = (0..500)
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("k{i}"))
                    .data(blob(format!("b{batch}-r{i:03}")))
                    .build()
                    .unwrap()
            })
            .collect();
        let client = client.clone();
        sends.spawn(async move {
            let res = client
                .put_records()
                .stream_name("w")
                .set_records(Some(entries))
                .send()
                .await;
            (batch, res)
        });
    }
    while let Some(joined) = sends.join_next().await {
        let (batch, res) = joined.expect("send task");
        let out = res.expect("PutRecords (partial failures are per record)");
        assert_eq!(out.records().len(), 500);
        let mut failed_here = 0;
        for (i, r) in out.records().iter().enumerate() {
            let data = format!("b{batch}-r{i:03}");
            match r.error_code() {
                None => {
                    assert!(r.sequence_number().is_some(), "success has a seq");
                    assert_eq!(r.shard_id(), Some("shardId-000000000000"));
                    ok.insert(data);
                }
                Some(code) => {
                    failed_here += 1;
                    assert_eq!(code, "ProvisionedThroughputExceededException");
                    let msg = r.error_message().unwrap_or_default();
                    assert!(
                        msg.starts_with("Rate exceeded for shard shardId-000000000000 in stream w"),
                        "error message: {msg:?}"
                    );
                    assert_eq!(r.sequence_number(), None);
                    failed.insert(data);
                }
            }
        }
        assert_eq!(
            out.failed_record_count(),
            Some(failed_here),
            "FailedRecordCount of batch {batch}"
        );
    }
    let elapsed = started.elapsed();
    assert!(
        !failed.is_empty(),
        "1500 records in {elapsed:?} into a 1000 records/s shard must throttle some"
    );
    assert!(!ok.is_empty(), "some records must succeed");

    let read = read_shard(&client, "w", "shardId-000000000000").await;
    let got: Vec<String> = read
        .records
        .iter()
        .map(|r| String::from_utf8(r.data().as_ref().to_vec()).unwrap())
        .collect();
    let got_set: HashSet<String> = got.iter().cloned().collect();
    assert_eq!(got.len(), got_set.len(), "no duplicates");
    assert_eq!(got_set, ok, "exactly the acknowledged records are stored");
    assert!(got_set.is_disjoint(&failed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_record_over_per_stream_override_is_throttled() {
    let broker = TestBroker::builder()
        .config_toml(config("status_delay = \"50ms\"", "", WRITE_LIMITED))
        .start()
        .await;
    broker.create_stream("slow", 1).await;
    broker.create_stream("fast", 1).await;
    let client = broker.client();
    let mut throttled = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0..100 {
        if Instant::now() > deadline {
            break;
        }
        let res = client
            .put_record()
            .stream_name("slow")
            .partition_key("k")
            .data(blob(format!("{i}")))
            .send()
            .await;
        if let Err(e) = res {
            throttled = Some((i, e));
            break;
        }
    }
    let (i, err) = throttled.expect("10 records/s override must throttle within 100 puts");
    assert!(i >= 1, "the first put fits the budget");
    assert!(
        matches!(
            err.as_service_error(),
            Some(PutRecordError::ProvisionedThroughputExceededException(_))
        ),
        "got {err:?}"
    );
    use aws_sdk_kinesis::error::ProvideErrorMetadata;
    let msg = err.message().unwrap_or_default();
    assert!(
        msg.starts_with("Rate exceeded for shard shardId-000000000000 in stream slow"),
        "message {msg:?}"
    );
    // A byte limit: two 700 KiB records in one request exceed 1 MiB/s. (One request, so
    // the outcome does not depend on how fast a loaded machine sends the second.)
    broker.create_stream("bytes", 1).await;
    let entry = |b: u8| {
        PutRecordsRequestEntry::builder()
            .partition_key("k")
            .data(blob(vec![b; 700 * 1024]))
            .build()
            .unwrap()
    };
    let out = client
        .put_records()
        .stream_name("bytes")
        .records(entry(7))
        .records(entry(8))
        .send()
        .await
        .expect("PutRecords of two 700 KiB records");
    let codes: Vec<Option<&str>> = out.records().iter().map(|r| r.error_code()).collect();
    assert_eq!(
        codes,
        vec![None, Some("ProvisionedThroughputExceededException")],
        "the first 700 KiB fits the byte budget, the second does not"
    );
    // The other stream is governed by the 1000/s default only.
    for i in 0..30 {
        client
            .put_record()
            .stream_name("fast")
            .partition_key("k")
            .data(blob(format!("{i}")))
            .send()
            .await
            .expect("stream without override is not throttled at 30 puts");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_records_over_five_per_second_is_throttled() {
    let limits = "write_bytes_per_second = \"off\"\n\
write_records_per_second = \"off\"\n\
read_bytes_per_second = \"off\"\n\
get_records_per_second = 5\n";
    let broker = TestBroker::builder()
        .config_toml(config("status_delay = \"50ms\"", "", limits))
        .start()
        .await;
    broker.create_stream("r", 1).await;
    let client = broker.client();
    let mut it = iterator(
        &client,
        "r",
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
        None,
    )
    .await;
    let started = Instant::now();
    let mut throttled_at = None;
    for call in 0..10 {
        match client.get_records().shard_iterator(&it).send().await {
            Ok(out) => it = out.next_shard_iterator().unwrap().to_string(),
            Err(e) => {
                assert!(
                    matches!(
                        e.as_service_error(),
                        Some(GetRecordsError::ProvisionedThroughputExceededException(_))
                    ),
                    "got {e:?}"
                );
                throttled_at = Some(call);
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    if elapsed < Duration::from_millis(900) {
        let at = throttled_at.unwrap_or_else(|| {
            panic!("10 GetRecords calls in {elapsed:?} with a 5/s limit: none throttled")
        });
        assert!(
            at >= 5,
            "the first 5 calls in a second are allowed (throttled at {at})"
        );
    }
    // After a pause the shard can be read again with the same iterator.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client
        .get_records()
        .shard_iterator(&it)
        .send()
        .await
        .expect("reads resume after a second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_get_records_calls_in_two_seconds_are_throttled() {
    // Kinesis counts 5 calls in any one second; a token bucket with a burst of five on top
    // of 5/s would let 15 calls through in 2 s.
    let limits = "write_bytes_per_second = \"off\"\n\
write_records_per_second = \"off\"\n\
read_bytes_per_second = \"off\"\n\
get_records_per_second = 5\n";
    let broker = TestBroker::builder()
        .config_toml(config("status_delay = \"50ms\"", "", limits))
        .start()
        .await;
    broker.create_stream("w", 1).await;
    let client = broker.client();
    let mut it = iterator(
        &client,
        "w",
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
        None,
    )
    .await;
    let start = tokio::time::Instant::now();
    let (mut ok, mut throttled) = (0, 0);
    for call in 0..15u32 {
        tokio::time::sleep_until(start + Duration::from_millis(133) * call).await;
        match client.get_records().shard_iterator(&it).send().await {
            Ok(out) => {
                ok += 1;
                it = out.next_shard_iterator().unwrap().to_string();
            }
            Err(e) => {
                assert!(
                    matches!(
                        e.as_service_error(),
                        Some(GetRecordsError::ProvisionedThroughputExceededException(_))
                    ),
                    "got {e:?}"
                );
                throttled += 1;
            }
        }
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_millis(2500),
        "the calls took {elapsed:?}; the check needs them within about 2 s"
    );
    assert!(
        ok <= 11,
        "{ok} calls admitted in {elapsed:?}, {throttled} throttled"
    );
    assert!(throttled >= 4, "{throttled} throttled of 15");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_shard_iterator_over_five_per_second_is_throttled() {
    let limits = "write_bytes_per_second = \"off\"\n\
get_shard_iterator_per_second = 5\n";
    let broker = TestBroker::builder()
        .config_toml(config("status_delay = \"50ms\"", "", limits))
        .start()
        .await;
    broker.create_stream("gi", 2).await;
    let client = broker.client();
    let get = |shard: &'static str| {
        client
            .get_shard_iterator()
            .stream_name("gi")
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::Latest)
            .send()
    };
    let start = Instant::now();
    for _ in 0..5 {
        get("shardId-000000000000").await.expect("five in a second");
    }
    let err = get("shardId-000000000000").await.unwrap_err();
    if start.elapsed() < Duration::from_millis(900) {
        assert_eq!(
            err.code(),
            Some("ProvisionedThroughputExceededException"),
            "{err:?}"
        );
        assert_eq!(
            err.message(),
            Some("Rate exceeded for shard shardId-000000000000 in stream gi under account 000000000000.")
        );
    }
    // Per shard: the other one is untouched; the first recovers after a second.
    get("shardId-000000000001").await.expect("another shard");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    get("shardId-000000000000").await.expect("after a second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_shard_limit_is_enforced() {
    let broker = TestBroker::builder()
        .config_toml(config(
            "status_delay = \"50ms\"\nshard_limit = 10",
            "",
            LIMITS_OFF,
        ))
        .start()
        .await;
    let client = broker.client();
    let err = client
        .create_stream()
        .stream_name("too-big")
        .shard_count(11)
        .send()
        .await
        .expect_err("11 shards over a limit of 10");
    assert!(
        matches!(
            err.as_service_error(),
            Some(CreateStreamError::LimitExceededException(_))
        ),
        "got {err:?}"
    );
    let msg = aws_sdk_kinesis::error::ProvideErrorMetadata::message(&err).unwrap_or_default();
    assert!(
        msg.starts_with(
            "This request would exceed the shard limit for the account 000000000000 in \
             us-east-1. Current shard count for the account: 0. Limit: 10. Number of \
             additional shards that would have resulted from this request: 11."
        ),
        "message {msg:?}"
    );
    broker.create_stream("fits", 10).await;
    let (code, _) = service_err(
        client
            .create_stream()
            .stream_name("one-more")
            .shard_count(1)
            .send()
            .await,
    );
    assert_eq!(code, "LimitExceededException");
    // Splitting would also exceed it.
    let (code, _) = service_err(
        client
            .split_shard()
            .stream_name("fits")
            .shard_to_split("shardId-000000000000")
            .new_starting_hash_key("1000")
            .send()
            .await,
    );
    assert_eq!(code, "LimitExceededException");
    let names = client.list_streams().send().await.unwrap();
    assert_eq!(names.stream_names(), ["fits"]);
}

/// Request-size limits (records per PutRecords, partition-key length, records per
/// GetRecords, record size) follow the broker's and the stream's configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_size_limits_are_configurable_per_stream() {
    let limits = format!(
        "{LIMITS_OFF}\n[limits.streams.small]\n{LIMITS_OFF}put_records_max_records = 2\n\
         partition_key_max_chars = 4\nget_records_max_records = 3\nrecord_max_bytes = 2048\n\
         \n[limits.streams.big]\n{LIMITS_OFF}put_records_max_records = 1000\n\
         partition_key_max_chars = \"off\"\n"
    );
    let broker = TestBroker::builder()
        .config_toml(config(
            "status_delay = \"50ms\"",
            "fsync = \"never\"",
            &limits,
        ))
        .start()
        .await;
    for name in ["small", "big", "plain"] {
        broker.create_stream(name, 1).await;
    }
    let client = broker.client();
    let entry = |pk: &str, data: &[u8]| {
        PutRecordsRequestEntry::builder()
            .partition_key(pk)
            .data(blob(data.to_vec()))
            .build()
            .unwrap()
    };
    let validation = |err: &dyn std::fmt::Debug, want: &str| {
        let text = format!("{err:?}");
        assert!(
            text.contains("ValidationException"),
            "expected ValidationException, got {text}"
        );
        assert!(text.contains(want), "expected {want:?} in {text}");
    };

    // small: at most 2 records per request, keys of at most 4 characters, 2 KiB records.
    let err = client
        .put_records()
        .stream_name("small")
        .set_records(Some(
            (0..3).map(|i| entry(&format!("k{i}"), b"x")).collect(),
        ))
        .send()
        .await
        .expect_err("3 records over a limit of 2");
    validation(&err, "Member must have length less than or equal to 2");
    let err = client
        .put_record()
        .stream_name("small")
        .partition_key("abcde")
        .data(blob(b"x".to_vec()))
        .send()
        .await
        .expect_err("a 5-character key over a limit of 4");
    validation(&err, "Member must have length less than or equal to 4");
    let err = client
        .put_record()
        .stream_name("small")
        .partition_key("k")
        .data(blob(vec![0u8; 2049]))
        .send()
        .await
        .expect_err("a 2049-byte record over a limit of 2048");
    validation(&err, "Member must have length less than or equal to 2048");
    for i in 0..3 {
        client
            .put_records()
            .stream_name("small")
            .set_records(Some(vec![
                entry("k", format!("r{i}a").as_bytes()),
                entry("k", format!("r{i}b").as_bytes()),
            ]))
            .send()
            .await
            .unwrap();
    }
    let it = client
        .get_shard_iterator()
        .stream_name("small")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let out = client
        .get_records()
        .shard_iterator(it)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.records().len(),
        3,
        "GetRecords returns at most get_records_max_records"
    );

    // big: 1000 records in one request and a long key; plain keeps Kinesis's 500.
    let long_key = "p".repeat(300);
    let ok = client
        .put_records()
        .stream_name("big")
        .set_records(Some((0..1000).map(|_| entry(&long_key, b"y")).collect()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.failed_record_count(), Some(0));
    assert_eq!(ok.records().len(), 1000);
    let err = client
        .put_records()
        .stream_name("plain")
        .set_records(Some(
            (0..501).map(|i| entry(&format!("k{i}"), b"x")).collect(),
        ))
        .send()
        .await
        .expect_err("501 records over Kinesis's 500");
    validation(&err, "Member must have length less than or equal to 500");
}

/// A broker with the control-plane call rates at Kinesis's defaults, changed by `body`.
async fn rated_broker(body: &str) -> TestBroker {
    TestBroker::builder()
        .config_toml(with_control_plane(
            config("status_delay = \"50ms\"", "fsync = \"never\"", LIMITS_OFF),
            body,
        ))
        .start()
        .await
}

/// The code, message and HTTP status of a failed call.
fn limit_error<T: std::fmt::Debug, E>(
    res: Result<
        T,
        aws_sdk_kinesis::error::SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>,
    >,
) -> (String, String, u16)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let err = res.expect_err("the call is refused");
    let status = err.raw_response().map_or(0, |r| r.status().as_u16());
    (
        err.code().unwrap_or_default().to_owned(),
        err.message().unwrap_or_default().to_owned(),
        status,
    )
}

const RATE_ACCOUNT: &str = "Rate exceeded for account 000000000000.";

fn rate_stream(stream: &str) -> String {
    format!("Rate exceeded for stream {stream} under account 000000000000.")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_stream_over_ten_per_second_per_account_is_limit_exceeded() {
    let broker = rated_broker("").await;
    broker.create_stream("a", 1).await;
    broker.create_stream("b", 1).await;
    let client = broker.client();
    // Let the window of the waits' own DescribeStreamSummary calls and the creations pass.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let start = Instant::now();
    let mut admitted = 0;
    let refused = loop {
        // Alternating streams: the rate is the account's, not each stream's.
        let name = if admitted % 2 == 0 { "a" } else { "b" };
        let res = client.describe_stream().stream_name(name).send().await;
        if res.is_err() {
            break (name, limit_error(res));
        }
        admitted += 1;
        assert!(
            admitted <= 40,
            "40 calls in {:?} and none refused",
            start.elapsed()
        );
    };
    let elapsed = start.elapsed();
    let (stream, (code, message, status)) = refused;
    assert_eq!((code.as_str(), status), ("LimitExceededException", 400));
    assert_eq!(message, rate_stream(stream));
    if elapsed < Duration::from_millis(900) {
        assert_eq!(admitted, 10, "{admitted} admitted within {elapsed:?}");
    } else {
        assert!(admitted >= 10, "{admitted} admitted within {elapsed:?}");
    }
    // Another operation has its own budget (DescribeStreamSummary: 20); a second later
    // DescribeStream is admitted again.
    client
        .describe_stream_summary()
        .stream_name("a")
        .send()
        .await
        .expect("another operation");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client
        .describe_stream()
        .stream_name("a")
        .send()
        .await
        .expect("after a second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_streams_and_describe_limits_are_counted_per_account() {
    let broker = rated_broker("").await;
    let client = broker.client();
    let start = Instant::now();
    for _ in 0..5 {
        client
            .list_streams()
            .send()
            .await
            .expect("five in a second");
    }
    let res = client.list_streams().send().await;
    if start.elapsed() < Duration::from_millis(900) {
        assert_eq!(
            limit_error(res),
            ("LimitExceededException".into(), RATE_ACCOUNT.into(), 400)
        );
    }
    // DescribeLimits: one per second.
    let start = Instant::now();
    client.describe_limits().send().await.expect("the first");
    let res = client.describe_limits().send().await;
    if start.elapsed() < Duration::from_millis(900) {
        assert_eq!(
            limit_error(res),
            ("LimitExceededException".into(), RATE_ACCOUNT.into(), 400)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_operations_are_counted_per_stream() {
    let broker = rated_broker("").await;
    broker.create_stream("a", 1).await;
    broker.create_stream("b", 1).await;
    let client = broker.client();
    let start = Instant::now();
    for _ in 0..5 {
        client
            .list_stream_consumers()
            .stream_arn(stream_arn("a"))
            .send()
            .await
            .expect("five in a second");
    }
    let res = client
        .list_stream_consumers()
        .stream_arn(stream_arn("a"))
        .send()
        .await;
    if start.elapsed() < Duration::from_millis(900) {
        assert_eq!(
            limit_error(res),
            ("LimitExceededException".into(), rate_stream("a"), 400)
        );
    }
    // Stream b has a budget of its own.
    for _ in 0..5 {
        client
            .list_stream_consumers()
            .stream_arn(stream_arn("b"))
            .send()
            .await
            .expect("another stream");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_create_stream_creates_nothing_and_rates_are_configurable() {
    // CreateStream lowered to one per second; DescribeStream switched off.
    let broker = rated_broker("create_stream = 1\ndescribe_stream = \"off\"").await;
    let client = broker.client();
    client
        .create_stream()
        .stream_name("first")
        .shard_count(1)
        .send()
        .await
        .expect("the first");
    let res = client
        .create_stream()
        .stream_name("second")
        .shard_count(1)
        .send()
        .await;
    assert_eq!(
        limit_error(res),
        ("LimitExceededException".into(), rate_stream("second"), 400)
    );
    for _ in 0..30 {
        let res = client.describe_stream().stream_name("second").send().await;
        assert_eq!(
            assert_code(res, "ResourceNotFoundException"),
            "Stream second under account 000000000000 not found."
        );
    }
}
