//! Delivery: every successful future's record arrives exactly once where its receipt says,
//! shutdown and flush deliver what is buffered, failures hand records back.

use std::collections::HashMap;
use std::time::Duration;

use futures::SinkExt;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use riffle_core::HashKey;
use riffle_kpl::{Config, PutErrorKind, RateLimit, Record};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_records_from_many_keys_arrive_exactly_once() {
    const N: u64 = 1_000_000;
    const KEYS: u64 = 20_000;
    let broker = TestBroker::start().await;
    broker.create_stream("million", 8).await;
    let config = Config {
        // The broker's limits are off; let the producer go as fast as it can.
        rate_limit: RateLimit::Off,
        ..Config::default()
    };
    let mut registry = Registry::default();
    let producer = riffle_kpl::Producer::builder(config)
        .client(broker.client())
        .metrics(&mut registry)
        .build()
        .await
        .unwrap();
    let (tx, results) = resolver();
    within(
        Duration::from_secs(600),
        "producing a million records",
        async {
            for id in 0..N {
                let h = producer
                    .put("million", format!("key-{}", id % KEYS), data(id, 100))
                    .await
                    .expect("accepted");
                tx.send((id, h)).await.unwrap();
            }
            drop(tx);
        },
    )
    .await;
    let results = within(Duration::from_secs(120), "every future", results)
        .await
        .unwrap();
    assert_eq!(results.len() as u64, N);
    let mut receipts: HashMap<u64, (String, String, Option<u64>)> = HashMap::new();
    for (id, r) in results {
        let r = r.unwrap_or_else(|e| panic!("record {id} failed: {e} ({:?})", e.attempts));
        receipts.insert(
            id,
            (
                r.shard_id().to_string(),
                r.sequence_number().to_string(),
                r.sub_sequence_number(),
            ),
        );
    }

    let read = within(
        Duration::from_secs(300),
        "reading the stream",
        read_stream(&broker.client(), "million"),
    )
    .await;
    assert_eq!(read.dropped_aggregates, 0);
    assert_eq!(
        read.records.len() as u64,
        N,
        "exactly once: no loss, no duplicate"
    );
    let mut seen = vec![false; N as usize];
    let mut aggregated = 0;
    for s in &read.records {
        let id = id_of(&s.data);
        assert!(!seen[id as usize], "record {id} arrived twice");
        seen[id as usize] = true;
        assert_eq!(s.partition_key, format!("key-{}", id % KEYS));
        assert_eq!(s.data, data(id, 100));
        let (shard, seq, sub) = &receipts[&id];
        assert_eq!(
            (&s.shard_id, &s.sequence_number, s.sub_sequence_number),
            (shard, seq, *sub),
            "record {id} is where its receipt says"
        );
        // Its predicted shard is the one it is on.
        aggregated += usize::from(s.sub_sequence_number.is_some());
    }
    assert!(
        aggregated as u64 > N * 9 / 10,
        "aggregation was on: {aggregated}"
    );

    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    let l = "{stream=\"million\"}";
    assert_eq!(
        metric(&text, &format!("kpl_user_records_received_total{l}")),
        N as f64
    );
    assert_eq!(
        metric(&text, &format!("kpl_user_records_put_total{l}")),
        N as f64
    );
    assert_eq!(
        metric(&text, &format!("kpl_user_records_failed_total{l}")),
        0.0
    );
    let kinesis = metric(&text, &format!("kpl_kinesis_records_put_total{l}"));
    assert!(
        kinesis > 0.0 && kinesis < N as f64 / 100.0,
        "{kinesis} Kinesis records"
    );
    assert_eq!(metric(&text, "kpl_user_records_pending"), 0.0);
    producer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_everything_buffered_then_refuses() {
    let broker = TestBroker::start().await;
    broker.create_stream("s", 2).await;
    let config = Config {
        // Nothing would leave on its own for a minute.
        record_max_buffered_time: Duration::from_secs(60),
        record_ttl: Duration::from_secs(120),
        ..Config::default()
    };
    let producer = producer(&broker, config).await;
    let mut handles = Vec::new();
    for id in 0..1000 {
        handles.push(
            producer
                .put("s", format!("k{id}"), data(id, 50))
                .await
                .unwrap(),
        );
    }
    assert_eq!(producer.outstanding_records(), 1000);
    within(Duration::from_secs(30), "shutdown", producer.shutdown())
        .await
        .unwrap();
    // Shutdown returned after every outcome was sent.
    assert_eq!(producer.outstanding_records(), 0);
    for h in handles {
        // (Unconstrained: Tokio's cooperative budget would make a ready handle look
        // pending after a hundred polls in one task.)
        let r = tokio::task::unconstrained(async { futures::poll!(h) }).await;
        assert!(matches!(r, std::task::Poll::Ready(Ok(_))), "{r:?}");
    }
    let e = producer.put("s", "late", &b"x"[..]).await.unwrap_err();
    assert_eq!(e.kind, PutErrorKind::ShutDown);
    assert_eq!(e.record.partition_key, "late");
    let e = producer
        .try_put("s", Record::new("late", &b"y"[..]))
        .unwrap_err()
        .into_record();
    assert_eq!(&e.data[..], b"y");
    assert_eq!(read_stream(&broker.client(), "s").await.records.len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_sends_without_waiting_for_the_deadline() {
    let broker = TestBroker::start().await;
    broker.create_stream("s", 1).await;
    let config = Config {
        record_max_buffered_time: Duration::from_secs(60),
        record_ttl: Duration::from_secs(120),
        ..Config::default()
    };
    let producer = producer(&broker, config).await;
    let h = producer.put("s", "k", &b"now"[..]).await.unwrap();
    within(Duration::from_secs(30), "flush", producer.flush())
        .await
        .unwrap();
    let r = tokio::task::unconstrained(async { futures::poll!(h) }).await;
    let std::task::Poll::Ready(Ok(receipt)) = r else {
        panic!("flush returned before the record was written: {r:?}");
    };
    assert_eq!(receipt.shard_id(), "shardId-000000000000");
    assert_eq!(receipt.attempts(), 1);
    assert_eq!(
        receipt.sub_sequence_number(),
        None,
        "a lone record is not aggregated"
    );
    // A flush with nothing buffered returns too.
    within(Duration::from_secs(30), "empty flush", producer.flush())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_hash_keys_decide_the_shard_and_survive_aggregation() {
    let broker = TestBroker::start().await;
    broker.create_stream("s", 4).await;
    let producer = producer(&broker, Config::default()).await;
    let quarter = u128::MAX / 4 + 1;
    let mut handles = Vec::new();
    for i in 0..40u64 {
        let shard = (i % 4) as u128;
        let ehk = (shard * quarter + 12345).to_string();
        let h = producer
            .put_with_hash_key("s", "same-key", ehk, data(i, 20))
            .await
            .unwrap();
        handles.push((i, shard, h));
    }
    for (i, shard, h) in handles {
        let r = h.await.unwrap();
        assert_eq!(r.shard_id(), format!("shardId-{shard:012}"), "record {i}");
        assert!(
            r.sub_sequence_number().is_some(),
            "ten per shard were aggregated"
        );
    }
    let e = producer
        .put_with_hash_key("s", "k", "not-a-number", &b"x"[..])
        .await
        .unwrap_err();
    assert!(matches!(e.kind, PutErrorKind::Invalid(_)), "{e}");
    assert_eq!(e.record.explicit_hash_key.as_deref(), Some("not-a-number"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregation_off_writes_plain_records_under_their_own_keys() {
    let broker = TestBroker::start().await;
    broker.create_stream("s", 2).await;
    let config = Config {
        aggregation_enabled: false,
        ..Config::default()
    };
    let producer = producer(&broker, config).await;
    let mut handles = Vec::new();
    for id in 0..300 {
        handles.push(
            producer
                .put("s", format!("k{id}"), data(id, 30))
                .await
                .unwrap(),
        );
    }
    for h in handles {
        assert_eq!(h.await.unwrap().sub_sequence_number(), None);
    }
    let read = read_stream(&broker.client(), "s").await;
    assert_eq!(read.records.len(), 300);
    for s in read.records {
        assert_eq!(s.sub_sequence_number, None);
        let id = id_of(&s.data);
        assert_eq!(s.partition_key, format!("k{id}"));
        let key = HashKey::from_partition_key(&s.partition_key);
        let expected = if key.0 <= u128::MAX / 2 { 0 } else { 1 };
        assert_eq!(s.shard_id, format!("shardId-{expected:012}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_fails_at_once_with_the_record() {
    let broker = TestBroker::start().await;
    let producer = producer(&broker, Config::default()).await;
    let h = producer.put("nope", "k", &b"lost?"[..]).await.unwrap();
    let e = within(Duration::from_secs(10), "the failure", h)
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        PutErrorKind::Rejected {
            code: "ResourceNotFoundException".into()
        }
    );
    assert_eq!(&e.record.data[..], b"lost?");
    assert_eq!(e.attempts.len(), 1);
    assert_eq!(e.last_error_code(), Some("ResourceNotFoundException"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_delivers_and_flushes() {
    let broker = TestBroker::start().await;
    broker.create_stream("s", 2).await;
    let producer = producer(&broker, Config::default()).await;
    let mut sink = producer.sink("s");
    let records =
        futures::stream::iter((0..500).map(|id| Ok(Record::new(format!("k{id}"), data(id, 40)))));
    let mut records = Box::pin(records);
    within(
        Duration::from_secs(30),
        "send_all",
        sink.send_all(&mut records),
    )
    .await
    .unwrap();
    assert_eq!(sink.pending(), 0, "send_all flushes");
    within(Duration::from_secs(30), "close", sink.close())
        .await
        .unwrap();
    let c = counts(&read_stream(&broker.client(), "s").await);
    assert_eq!(c.len(), 500);
    assert!(c.values().all(|&n| n == 1));
}
