//! Resharding during production: a split and then a merge lose nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use riffle_kpl::{Config, RateLimit};

use crate::support::*;

async fn wait_active(broker: &TestBroker, stream: &str) {
    broker.wait_active(stream).await;
}

async fn split(client: &Client, stream: &str, shard: &str, at: u128) {
    client
        .split_shard()
        .stream_name(stream)
        .shard_to_split(shard)
        .new_starting_hash_key(at.to_string())
        .send()
        .await
        .expect("SplitShard");
}

async fn merge(client: &Client, stream: &str, a: &str, b: &str) {
    client
        .merge_shards()
        .stream_name(stream)
        .shard_to_merge(a)
        .adjacent_shard_to_merge(b)
        .send()
        .await
        .expect("MergeShards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_and_then_a_merge_during_production_lose_nothing() {
    const N: u64 = 150_000;
    let broker = TestBroker::start().await;
    broker.create_stream("r", 2).await;
    let config = Config {
        rate_limit: RateLimit::Off,
        record_max_buffered_time: Duration::from_millis(20),
        ..Config::default()
    };
    let producer = producer(&broker, config).await;
    let accepted = Arc::new(AtomicU64::new(0));
    let (tx, results) = resolver();
    let feeder = {
        let producer = producer.clone();
        let accepted = accepted.clone();
        tokio::spawn(async move {
            for id in 0..N {
                let h = producer
                    .put("r", format!("key-{}", id % 5000), data(id, 60))
                    .await
                    .unwrap();
                tx.send((id, h)).await.unwrap();
                accepted.store(id + 1, Ordering::Relaxed);
                if id % 1000 == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        })
    };
    let until = |n: u64| {
        let accepted = accepted.clone();
        async move {
            within(Duration::from_secs(120), "production to progress", async {
                while accepted.load(Ordering::Relaxed) < n {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
            .await
        }
    };
    let client = broker.client();
    // Shard 0 ([0, 2^127)) splits into 2 and 3 at 2^126; then 3 and 1 merge into 4.
    until(N / 3).await;
    split(&client, "r", "shardId-000000000000", 1u128 << 126).await;
    wait_active(&broker, "r").await;
    until(2 * N / 3).await;
    merge(&client, "r", "shardId-000000000003", "shardId-000000000001").await;
    wait_active(&broker, "r").await;
    within(Duration::from_secs(300), "feeding", feeder)
        .await
        .unwrap();
    let results = within(Duration::from_secs(120), "every future", results)
        .await
        .unwrap();
    let mut receipts = HashMap::new();
    let mut may_repeat = 0;
    for (id, r) in results {
        let r = r.unwrap_or_else(|e| panic!("record {id} failed: {e} {:?}", e.attempts));
        // Only a record whose request timed out or broke may have been written twice.
        if r.failed_attempts().iter().any(|a| {
            matches!(
                a.error_code(),
                "Timeout" | "ConnectionError" | "ResponseError"
            )
        }) {
            may_repeat += 1;
        }
        receipts.insert(
            id,
            (
                r.shard_id().to_string(),
                r.sequence_number().to_string(),
                r.sub_sequence_number(),
            ),
        );
    }
    let read = read_stream(&client, "r").await;
    let mut seen: HashMap<u64, Vec<(String, String, Option<u64>)>> = HashMap::new();
    for s in &read.records {
        seen.entry(id_of(&s.data)).or_default().push((
            s.shard_id.clone(),
            s.sequence_number.clone(),
            s.sub_sequence_number,
        ));
    }
    let mut repeated = 0;
    for (id, receipt) in &receipts {
        let copies = seen
            .get(id)
            .unwrap_or_else(|| panic!("record {id} was lost"));
        assert!(
            copies.contains(receipt),
            "record {id}: its receipt {receipt:?} is not among {copies:?}"
        );
        repeated += usize::from(copies.len() > 1);
    }
    assert_eq!(seen.len() as u64, N);
    assert!(
        repeated <= may_repeat,
        "{repeated} records arrived twice, {may_repeat} could"
    );
    let shards: Vec<&str> = read.records.iter().map(|s| s.shard_id.as_str()).collect();
    for s in ["shardId-000000000002", "shardId-000000000004"] {
        assert!(shards.contains(&s), "records reached the new shard {s}");
    }
    println!(
        "{} aggregates were written to a shard not owning all their records and re-sent",
        read.dropped_aggregates
    );
}
