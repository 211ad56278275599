//! Ordered mode: per-key order survives throttling and a split.

use std::collections::HashMap;
use std::time::Duration;

use riffle_kpl::{Config, RateLimit};

use crate::support::*;

/// For each key, the record ids in the order a consumer reads them (shards in id order,
/// parents before children; records in sequence order) must be the `put` order.
fn assert_per_key_order(read: &StreamRead) {
    let mut last: HashMap<&str, u64> = HashMap::new();
    for s in &read.records {
        let id = id_of(&s.data);
        if let Some(prev) = last.insert(&s.partition_key, id) {
            assert!(
                prev < id,
                "key {}: record {id} after record {prev}",
                s.partition_key
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_mode_keeps_per_key_order_through_throttling() {
    const N: u64 = 8000;
    let broker = TestBroker::builder()
        .config_toml(config_with_limits(
            "write_records_per_second = \"off\"\nwrite_bytes_per_second = 150000\n\
             read_bytes_per_second = \"off\"\nget_records_per_second = \"off\"",
        ))
        .start()
        .await;
    broker.create_stream("o", 2).await;
    let config = Config {
        ordered: true,
        rate_limit: RateLimit::Off,
        aggregation_max_size: 8 * 1024,
        ..Config::default()
    };
    let producer = producer(&broker, config).await;
    let (tx, results) = resolver();
    for id in 0..N {
        let h = producer
            .put("o", format!("key-{}", id % 16), data(id, 200))
            .await
            .unwrap();
        tx.send((id, h)).await.unwrap();
    }
    drop(tx);
    let results = within(Duration::from_secs(180), "every future", results)
        .await
        .unwrap();
    let mut throttled = 0;
    for (id, r) in &results {
        let r = r
            .as_ref()
            .unwrap_or_else(|e| panic!("record {id} failed: {e}"));
        throttled += r.failed_attempts().len();
    }
    assert!(
        throttled > 0,
        "the broker throttled, so order had retries to survive"
    );
    let read = read_stream(&broker.client(), "o").await;
    assert_eq!(read.records.len() as u64, N);
    assert_per_key_order(&read);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_mode_keeps_per_key_order_across_a_split() {
    const N: u64 = 30_000;
    let broker = TestBroker::start().await;
    broker.create_stream("os", 1).await;
    let config = Config {
        ordered: true,
        rate_limit: RateLimit::Off,
        record_max_buffered_time: Duration::from_millis(10),
        ..Config::default()
    };
    let producer = producer(&broker, config).await;
    let (tx, results) = resolver();
    let client = broker.client();
    for id in 0..N {
        let h = producer
            .put("os", format!("key-{}", id % 64), data(id, 40))
            .await
            .unwrap();
        tx.send((id, h)).await.unwrap();
        if id == N / 2 {
            client
                .split_shard()
                .stream_name("os")
                .shard_to_split("shardId-000000000000")
                .new_starting_hash_key((1u128 << 127).to_string())
                .send()
                .await
                .expect("SplitShard");
        }
        if id % 1000 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    drop(tx);
    let results = within(Duration::from_secs(180), "every future", results)
        .await
        .unwrap();
    let mut on_children = 0;
    for (id, r) in &results {
        let r = r
            .as_ref()
            .unwrap_or_else(|e| panic!("record {id} failed: {e}"));
        on_children += usize::from(r.shard_id() != "shardId-000000000000");
    }
    assert!(on_children > 0, "records reached the children");
    let read = read_stream(&client, "os").await;
    let c = counts(&read);
    assert_eq!(c.len() as u64, N);
    assert_per_key_order(&read);
}
