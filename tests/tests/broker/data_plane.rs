//! Data-plane operations: PutRecord(s), GetShardIterator, GetRecords.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_kinesis::operation::get_records::GetRecordsError;
use aws_sdk_kinesis::operation::get_shard_iterator::GetShardIteratorError;
use aws_sdk_kinesis::operation::put_record::PutRecordError;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use aws_smithy_types::DateTime;

use crate::common::*;

fn entry(pk: &str, data: impl Into<Vec<u8>>) -> PutRecordsRequestEntry {
    PutRecordsRequestEntry::builder()
        .partition_key(pk)
        .data(blob(data))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_record_routes_by_md5_of_partition_key() {
    let broker = TestBroker::start().await;
    broker.create_stream("md5", 4).await;
    let client = broker.client();
    let shards = list_all_shards(&client, "md5").await;
    let mut last_seq: HashMap<String, String> = HashMap::new();
    let mut used = std::collections::BTreeSet::new();
    for i in 0..40 {
        let pk = format!("partition-{i}");
        let out = client
            .put_record()
            .stream_name("md5")
            .partition_key(&pk)
            .data(blob(format!("payload-{i}")))
            .send()
            .await
            .expect("PutRecord");
        let expected = shard_for(&shards, hash_key(&pk));
        assert_eq!(out.shard_id(), expected, "partition key {pk}");
        used.insert(expected.clone());
        assert!(out.sequence_number().chars().all(|c| c.is_ascii_digit()));
        if let Some(prev) = last_seq.get(&expected) {
            assert_eq!(
                cmp_seq(prev, out.sequence_number()),
                std::cmp::Ordering::Less,
                "sequence numbers must strictly increase within {expected}"
            );
        }
        last_seq.insert(expected, out.sequence_number().to_string());
    }
    assert_eq!(used.len(), 4, "40 keys should hit all 4 shards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_hash_key_routes_and_is_range_checked() {
    let broker = TestBroker::start().await;
    broker.create_stream("ehk", 2).await;
    let client = broker.client();
    // "a" hashes somewhere; the explicit key decides.
    for (key, shard) in [
        ("0".to_string(), "shardId-000000000000"),
        (((1u128 << 127) - 1).to_string(), "shardId-000000000000"),
        ((1u128 << 127).to_string(), "shardId-000000000001"),
        (u128::MAX.to_string(), "shardId-000000000001"),
    ] {
        let out = client
            .put_record()
            .stream_name("ehk")
            .partition_key("a")
            .explicit_hash_key(&key)
            .data(blob(b"x".to_vec()))
            .send()
            .await
            .unwrap();
        assert_eq!(out.shard_id(), shard, "ExplicitHashKey {key}");
    }
    // 2^128 is out of range.
    let err = client
        .put_record()
        .stream_name("ehk")
        .partition_key("a")
        .explicit_hash_key("340282366920938463463374607431768211456")
        .data(blob(b"x".to_vec()))
        .send()
        .await
        .expect_err("2^128 must be refused");
    assert!(
        matches!(
            err.as_service_error(),
            Some(PutRecordError::InvalidArgumentException(_))
        ),
        "got {err:?}"
    );
    assert_eq!(
        aws_sdk_kinesis::error::ProvideErrorMetadata::message(&err),
        Some(
            "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. \
             Specified value was 340282366920938463463374607431768211456"
        )
    );
    // Same for PutRecords (the whole request fails).
    let (code, _) = service_err(
        client
            .put_records()
            .stream_name("ehk")
            .records(
                PutRecordsRequestEntry::builder()
                    .partition_key("a")
                    .explicit_hash_key("340282366920938463463374607431768211456")
                    .data(blob(b"x".to_vec()))
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_records_500_preserves_per_shard_order() {
    let broker = TestBroker::start().await;
    broker.create_stream("batch", 2).await;
    let client = broker.client();
    let entries: Vec<PutRecordsRequestEntry> = (0..500)
        .map(|i| entry(&format!("key-{}", i % 37), format!("rec-{i:04}")))
        .collect();
    let out = client
        .put_records()
        .stream_name("batch")
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords 500");
    assert_eq!(out.failed_record_count(), Some(0));
    assert_eq!(out.records().len(), 500);
    let shards = list_all_shards(&client, "batch").await;
    let mut expected: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (i, r) in out.records().iter().enumerate() {
        assert_eq!(r.error_code(), None);
        let shard = r.shard_id().expect("ShardId").to_string();
        assert_eq!(
            shard,
            shard_for(&shards, hash_key(&format!("key-{}", i % 37)))
        );
        let seq = r.sequence_number().expect("SequenceNumber").to_string();
        expected
            .entry(shard)
            .or_default()
            .push((seq, format!("rec-{i:04}")));
    }
    for (shard, want) in &expected {
        // Response order within a shard is sequence order.
        for w in want.windows(2) {
            assert_eq!(
                cmp_seq(&w[0].0, &w[1].0),
                std::cmp::Ordering::Less,
                "per-shard sequence numbers follow request order"
            );
        }
        let read = read_shard(&client, "batch", shard).await;
        let got: Vec<(String, String)> = read
            .records
            .iter()
            .map(|r| {
                (
                    r.sequence_number().to_string(),
                    String::from_utf8(r.data().as_ref().to_vec()).unwrap(),
                )
            })
            .collect();
        assert_eq!(&got, want, "shard {shard} contents in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_validation_errors() {
    let broker = TestBroker::start().await;
    broker.create_stream("val", 1).await;
    let client = broker.client();
    // 501 records.
    let entries: Vec<PutRecordsRequestEntry> =
        (0..501).map(|i| entry("k", format!("{i}"))).collect();
    let (code, _) = service_err(
        client
            .put_records()
            .stream_name("val")
            .set_records(Some(entries))
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException", "501 records");
    // Record data > 1 MiB.
    let (code, _) = service_err(
        client
            .put_record()
            .stream_name("val")
            .partition_key("k")
            .data(blob(vec![1u8; 1024 * 1024 + 1]))
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException", "record > 1 MiB");
    // Exactly 1 MiB of data is fine.
    client
        .put_record()
        .stream_name("val")
        .partition_key("k")
        .data(blob(vec![1u8; 1024 * 1024]))
        .send()
        .await
        .expect("1 MiB record");
    // Partition key of length 0 and 257.
    for pk in [String::new(), "p".repeat(257)] {
        let (code, _) = service_err(
            client
                .put_record()
                .stream_name("val")
                .partition_key(&pk)
                .data(blob(b"x".to_vec()))
                .send()
                .await,
        );
        assert_eq!(
            code,
            "ValidationException",
            "partition key len {}",
            pk.len()
        );
        let (code, _) = service_err(
            client
                .put_records()
                .stream_name("val")
                .records(entry(&pk, b"x".to_vec()))
                .send()
                .await,
        );
        assert_eq!(
            code,
            "ValidationException",
            "PutRecords partition key len {}",
            pk.len()
        );
    }
    client
        .put_record()
        .stream_name("val")
        .partition_key("p".repeat(256))
        .data(blob(b"x".to_vec()))
        .send()
        .await
        .expect("256-char partition key");
    // Unknown stream.
    let err = client
        .put_record()
        .stream_name("missing")
        .partition_key("k")
        .data(blob(b"x".to_vec()))
        .send()
        .await
        .expect_err("unknown stream");
    assert!(
        matches!(
            err.as_service_error(),
            Some(PutRecordError::ResourceNotFoundException(_))
        ),
        "got {err:?}"
    );
    // Nothing from the failed calls was stored.
    let read = read_shard(&client, "val", "shardId-000000000000").await;
    assert_eq!(read.records.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_iterator_types_and_get_records_chaining() {
    let broker = TestBroker::start().await;
    broker.create_stream("it", 1).await;
    let client = broker.client();
    let shard = "shardId-000000000000";
    let latest = iterator(&client, "it", shard, ShardIteratorType::Latest, None).await;
    let mut seqs = Vec::new();
    for i in 0..10 {
        let out = client
            .put_record()
            .stream_name("it")
            .partition_key("k")
            .data(blob(format!("r{i}")))
            .send()
            .await
            .unwrap();
        seqs.push(out.sequence_number().to_string());
    }
    let data_of = |recs: &[aws_sdk_kinesis::types::Record]| -> Vec<String> {
        recs.iter()
            .map(|r| String::from_utf8(r.data().as_ref().to_vec()).unwrap())
            .collect()
    };
    // LATEST taken before the puts sees all of them.
    let read = read_from(&client, latest).await;
    assert_eq!(
        data_of(&read.records),
        (0..10).map(|i| format!("r{i}")).collect::<Vec<_>>()
    );
    // LATEST taken now sees nothing.
    let latest_now = iterator(&client, "it", shard, ShardIteratorType::Latest, None).await;
    let out = client
        .get_records()
        .shard_iterator(&latest_now)
        .send()
        .await
        .unwrap();
    assert!(out.records().is_empty());
    assert_eq!(out.millis_behind_latest(), Some(0));
    assert!(out.next_shard_iterator().is_some());

    // TRIM_HORIZON with Limit and NextShardIterator chaining.
    let mut it = iterator(&client, "it", shard, ShardIteratorType::TrimHorizon, None).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let out = client
            .get_records()
            .shard_iterator(&it)
            .limit(3)
            .send()
            .await
            .unwrap();
        assert!(out.records().len() <= 3, "Limit is respected");
        got.extend(data_of(out.records()));
        it = out.next_shard_iterator().expect("open shard").to_string();
    }
    assert_eq!(got, (0..10).map(|i| format!("r{i}")).collect::<Vec<_>>());
    let out = client
        .get_records()
        .shard_iterator(&it)
        .send()
        .await
        .unwrap();
    assert!(out.records().is_empty());
    assert_eq!(out.millis_behind_latest(), Some(0), "caught up");

    // AT_SEQUENCE_NUMBER / AFTER_SEQUENCE_NUMBER.
    let at = iterator(
        &client,
        "it",
        shard,
        ShardIteratorType::AtSequenceNumber,
        Some(&seqs[4]),
    )
    .await;
    let read = read_from(&client, at).await;
    assert_eq!(
        data_of(&read.records),
        (4..10).map(|i| format!("r{i}")).collect::<Vec<_>>()
    );
    assert_eq!(read.records[0].sequence_number(), seqs[4]);
    let after = iterator(
        &client,
        "it",
        shard,
        ShardIteratorType::AfterSequenceNumber,
        Some(&seqs[4]),
    )
    .await;
    let read = read_from(&client, after).await;
    assert_eq!(
        data_of(&read.records),
        (5..10).map(|i| format!("r{i}")).collect::<Vec<_>>()
    );
    let after_last = iterator(
        &client,
        "it",
        shard,
        ShardIteratorType::AfterSequenceNumber,
        Some(&seqs[9]),
    )
    .await;
    assert!(read_from(&client, after_last).await.records.is_empty());

    // AT_SEQUENCE_NUMBER without a sequence number is an argument error.
    let err = client
        .get_shard_iterator()
        .stream_name("it")
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .send()
        .await
        .expect_err("missing StartingSequenceNumber");
    assert!(
        matches!(
            err.as_service_error(),
            Some(GetShardIteratorError::InvalidArgumentException(_))
        ),
        "got {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_timestamp_returns_records_at_or_after() {
    let broker = TestBroker::builder().test_clock(true).start().await;
    broker.create_stream("ts", 1).await;
    let client = broker.client();
    let shard = "shardId-000000000000";
    for d in ["a", "b"] {
        client
            .put_record()
            .stream_name("ts")
            .partition_key("k")
            .data(blob(d))
            .send()
            .await
            .unwrap();
    }
    broker.advance_clock(Duration::from_secs(10)).await;
    for d in ["c", "d"] {
        client
            .put_record()
            .stream_name("ts")
            .partition_key("k")
            .data(blob(d))
            .send()
            .await
            .unwrap();
    }
    let all = read_shard(&client, "ts", shard).await.records;
    assert_eq!(all.len(), 4);
    let arrival: Vec<DateTime> = all
        .iter()
        .map(|r| {
            *r.approximate_arrival_timestamp()
                .expect("arrival timestamp")
        })
        .collect();
    let gap = arrival[2].as_secs_f64() - arrival[1].as_secs_f64();
    assert!(
        (9.0..60.0).contains(&gap),
        "advancing the clock 10 s must show in arrival timestamps (gap {gap})"
    );
    let at = |ts: DateTime| {
        let client = client.clone();
        async move {
            let it = client
                .get_shard_iterator()
                .stream_name("ts")
                .shard_id(shard)
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(ts)
                .send()
                .await
                .expect("AT_TIMESTAMP iterator")
                .shard_iterator()
                .unwrap()
                .to_string();
            read_from(&client, it)
                .await
                .records
                .iter()
                .map(|r| String::from_utf8(r.data().as_ref().to_vec()).unwrap())
                .collect::<Vec<_>>()
        }
    };
    let mid = DateTime::from_secs_f64(arrival[1].as_secs_f64() + 5.0);
    assert_eq!(at(mid).await, ["c", "d"]);
    assert_eq!(at(arrival[2]).await, ["c", "d"], "at the timestamp itself");
    assert_eq!(
        at(DateTime::from_secs_f64(arrival[0].as_secs_f64() - 60.0)).await,
        ["a", "b", "c", "d"]
    );
    // A timestamp in the broker's future is refused, as AWS does.
    let future = DateTime::from_secs_f64(arrival[3].as_secs_f64() + 30.0);
    let (code, msg) = service_err(
        client
            .get_shard_iterator()
            .stream_name("ts")
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::AtTimestamp)
            .timestamp(future)
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException");
    assert!(
        msg.starts_with(
            "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis."
        ),
        "message {msg:?}"
    );
    // Once the clock has passed it, it is valid and finds nothing.
    broker.advance_clock(Duration::from_secs(60)).await;
    assert!(at(future).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_data_round_trips_byte_exact() {
    let broker = TestBroker::start().await;
    broker.create_stream("bin", 1).await;
    let client = broker.client();
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let mut payloads = vec![
        all_bytes.clone(),
        all_bytes.iter().rev().copied().collect(),
        vec![0u8; 1],
        vec![0u8; 1000],
        b"\r\n\r\n{\"json\":\"inside\"}\0".to_vec(),
    ];
    let mut x: u32 = 0x1234_5678;
    payloads.push(
        (0..65_536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x & 0xff) as u8
            })
            .collect(),
    );
    for p in &payloads {
        client
            .put_record()
            .stream_name("bin")
            .partition_key("\u{00e9}t\u{00e9} \u{1f600}")
            .data(blob(p.clone()))
            .send()
            .await
            .unwrap();
    }
    client
        .put_records()
        .stream_name("bin")
        .records(entry("k", all_bytes.clone()))
        .send()
        .await
        .unwrap();
    payloads.push(all_bytes);
    let read = read_shard(&client, "bin", "shardId-000000000000").await;
    assert_eq!(read.records.len(), payloads.len());
    for (r, p) in read.records.iter().zip(&payloads) {
        assert!(r.data().as_ref() == p.as_slice(), "payload differs");
    }
    assert_eq!(
        read.records[0].partition_key(),
        Some("\u{00e9}t\u{00e9} \u{1f600}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_id_leniency_and_unknown_shard() {
    let broker = TestBroker::start().await;
    broker.create_stream("len", 2).await;
    let client = broker.client();
    client
        .put_record()
        .stream_name("len")
        .partition_key("k")
        .explicit_hash_key(u128::MAX.to_string())
        .data(blob(b"in-shard-1".to_vec()))
        .send()
        .await
        .unwrap();
    for id in ["shardId-000000000001", "shardId-1", "1"] {
        let read = read_shard(&client, "len", id).await;
        assert_eq!(read.records.len(), 1, "shard id {id:?}");
        assert_eq!(read.records[0].data().as_ref(), b"in-shard-1");
    }
    let err = client
        .get_shard_iterator()
        .stream_name("len")
        .shard_id("shardId-000000000099")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect_err("unknown shard");
    assert!(
        matches!(
            err.as_service_error(),
            Some(GetShardIteratorError::ResourceNotFoundException(_))
        ),
        "got {err:?}"
    );
    let err = client
        .get_shard_iterator()
        .stream_name("nostream")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect_err("unknown stream");
    assert!(
        matches!(
            err.as_service_error(),
            Some(GetShardIteratorError::ResourceNotFoundException(_))
        ),
        "got {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_iterator_is_invalid_argument() {
    let broker = TestBroker::start().await;
    broker.create_stream("forge", 1).await;
    let client = broker.client();
    let it = iterator(
        &client,
        "forge",
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
        None,
    )
    .await;
    client
        .get_records()
        .shard_iterator(&it)
        .send()
        .await
        .expect("genuine iterator works");
    let mut tried = 0;
    for pos in [it.len() / 2, it.len() / 3, 2 * it.len() / 3] {
        let mut chars: Vec<char> = it.chars().collect();
        let c = chars[pos];
        chars[pos] = match c {
            'A' => 'B',
            '0' => '1',
            _ if c.is_ascii_alphanumeric() => 'A',
            _ => '0',
        };
        let forged: String = chars.into_iter().collect();
        assert_ne!(forged, it);
        let err = client
            .get_records()
            .shard_iterator(&forged)
            .send()
            .await
            .expect_err("forged iterator must be refused");
        assert!(
            matches!(
                err.as_service_error(),
                Some(GetRecordsError::InvalidArgumentException(_))
            ),
            "flip at {pos}: got {err:?}"
        );
        assert_eq!(
            aws_sdk_kinesis::error::ProvideErrorMetadata::message(&err),
            Some("Invalid ShardIterator.")
        );
        tried += 1;
    }
    assert_eq!(tried, 3);
    let (code, _) = service_err(
        client
            .get_records()
            .shard_iterator("not-an-iterator")
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iterator_expires_after_five_minutes() {
    let broker = TestBroker::builder().test_clock(true).start().await;
    broker.create_stream("exp", 1).await;
    let client = broker.client();
    let it = iterator(
        &client,
        "exp",
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
        None,
    )
    .await;
    broker.advance_clock(Duration::from_secs(301)).await;
    let err = client
        .get_records()
        .shard_iterator(&it)
        .send()
        .await
        .expect_err("expired iterator");
    assert!(
        matches!(
            err.as_service_error(),
            Some(GetRecordsError::ExpiredIteratorException(_))
        ),
        "got {err:?}"
    );
    let msg = aws_sdk_kinesis::error::ProvideErrorMetadata::message(&err).unwrap_or_default();
    assert!(
        msg.starts_with("Iterator expired. The iterator was created at time ")
            && msg.ends_with("tolerated delay of 300000 milliseconds."),
        "message {msg:?}"
    );
    // A fresh iterator works.
    let it = iterator(
        &client,
        "exp",
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
        None,
    )
    .await;
    client
        .get_records()
        .shard_iterator(&it)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_past_retention_are_trimmed() {
    let broker = TestBroker::builder().test_clock(true).start().await;
    broker.create_stream("trim", 1).await;
    let client = broker.client();
    for i in 0..5 {
        client
            .put_record()
            .stream_name("trim")
            .partition_key("k")
            .data(blob(format!("old-{i}")))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        read_shard(&client, "trim", "shardId-000000000000")
            .await
            .records
            .len(),
        5
    );
    broker.advance_clock(Duration::from_secs(25 * 3600)).await;
    let read = read_shard(&client, "trim", "shardId-000000000000").await;
    assert!(
        read.records.is_empty(),
        "records older than 24 h must be gone, got {}",
        read.records.len()
    );
    // New records still flow.
    client
        .put_record()
        .stream_name("trim")
        .partition_key("k")
        .data(blob("new"))
        .send()
        .await
        .unwrap();
    let read = read_shard(&client, "trim", "shardId-000000000000").await;
    assert_eq!(read.records.len(), 1);
    assert_eq!(read.records[0].data().as_ref(), b"new");
}
