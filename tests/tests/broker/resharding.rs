//! Resharding end to end: SplitShard, MergeShards and UpdateShardCount.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::operation::merge_shards::MergeShardsError;
use aws_sdk_kinesis::operation::split_shard::SplitShardError;
use aws_sdk_kinesis::operation::update_shard_count::UpdateShardCountError;
use aws_sdk_kinesis::types::{ScalingType, StreamStatus};

use crate::common::*;

const Q: u128 = 1u128 << 126;

#[derive(Debug, Clone)]
struct Acked {
    pk: String,
    data: String,
    shard: String,
    seq: String,
}

fn sid(i: u32) -> String {
    format!("shardId-{i:012}")
}

async fn status(client: &aws_sdk_kinesis::Client, name: &str) -> StreamStatus {
    client
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
        .unwrap()
        .stream_description_summary()
        .unwrap()
        .stream_status()
        .clone()
}

async fn wait_acked(acked: &Mutex<Vec<Acked>>, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < at_least {
        assert!(
            Instant::now() < deadline,
            "producer did not reach {at_least} records"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_merge_under_load_deliver_every_record_once_in_order() {
    let broker = TestBroker::builder()
        .config_toml(config("status_delay = \"500ms\"", "", LIMITS_OFF))
        .start()
        .await;
    broker.create_stream("rs", 2).await;
    let client = broker.client();

    // Background producer: at most 2,000 records with unique, counted
    // payloads over 16 partition keys.
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (client, acked, errors, stop) =
            (client.clone(), acked.clone(), errors.clone(), stop.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            for i in 0..2000u32 {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                let pk = format!("pk-{}", i % 16);
                let data = format!("rec-{i:05}");
                match client
                    .put_record()
                    .stream_name("rs")
                    .partition_key(&pk)
                    .data(blob(data.clone()))
                    .send()
                    .await
                {
                    Ok(out) => acked.lock().unwrap().push(Acked {
                        pk,
                        data,
                        shard: out.shard_id().to_string(),
                        seq: out.sequence_number().to_string(),
                    }),
                    Err(e) => errors.lock().unwrap().push(format!("{data}: {e:?}")),
                }
            }
        })
    };

    wait_acked(&acked, 100).await;
    client
        .split_shard()
        .stream_name("rs")
        .shard_to_split(sid(0))
        .new_starting_hash_key(Q.to_string())
        .send()
        .await
        .expect("SplitShard");
    assert_eq!(status(&client, "rs").await, StreamStatus::Updating);
    broker.wait_active("rs").await;

    let n = acked.lock().unwrap().len();
    wait_acked(&acked, n + 100).await;
    client
        .merge_shards()
        .stream_name("rs")
        .shard_to_merge(sid(2))
        .adjacent_shard_to_merge(sid(3))
        .send()
        .await
        .expect("MergeShards");
    assert_eq!(status(&client, "rs").await, StreamStatus::Updating);
    broker.wait_active("rs").await;

    let n = acked.lock().unwrap().len();
    wait_acked(&acked, (n + 100).min(2000)).await;
    stop.store(true, Ordering::Relaxed);
    producer.await.expect("producer task");
    let errors = errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "puts must keep working while resharding: {errors:?}"
    );
    let acked = acked.lock().unwrap().clone();

    // Shard lineage.
    let shards = list_all_shards(&client, "rs").await;
    let ids: Vec<&str> = shards.iter().map(|s| s.shard_id()).collect();
    assert_eq!(ids, [sid(0), sid(1), sid(2), sid(3), sid(4)]);
    let by_id: HashMap<&str, &aws_sdk_kinesis::types::Shard> =
        shards.iter().map(|s| (s.shard_id(), s)).collect();
    let ending = |id: &str| {
        by_id[id]
            .sequence_number_range()
            .unwrap()
            .ending_sequence_number()
            .map(str::to_string)
    };
    for closed in [sid(0), sid(2), sid(3)] {
        assert!(ending(&closed).is_some(), "{closed} is closed");
    }
    for open in [sid(1), sid(4)] {
        assert!(ending(&open).is_none(), "{open} is open");
    }
    assert_eq!(
        by_id[sid(2).as_str()].parent_shard_id(),
        Some(sid(0).as_str())
    );
    assert_eq!(
        by_id[sid(3).as_str()].parent_shard_id(),
        Some(sid(0).as_str())
    );
    assert_eq!(by_id[sid(2).as_str()].adjacent_parent_shard_id(), None);
    assert_eq!(
        by_id[sid(4).as_str()].parent_shard_id(),
        Some(sid(2).as_str())
    );
    assert_eq!(
        by_id[sid(4).as_str()].adjacent_parent_shard_id(),
        Some(sid(3).as_str())
    );
    assert_eq!(range_of(by_id[sid(2).as_str()]), (0, Q - 1));
    assert_eq!(range_of(by_id[sid(3).as_str()]), (Q, 2 * Q - 1));
    assert_eq!(range_of(by_id[sid(4).as_str()]), (0, 2 * Q - 1));
    assert_partitions_evenly(&open_shards(&shards));

    // Read everything in lineage order.
    let mut read_all = Vec::new();
    for i in 0..5 {
        let id = sid(i);
        let read = read_shard(&client, "rs", &id).await;
        assert_strictly_increasing(&read.records);
        let is_closed = i == 0 || i == 2 || i == 3;
        assert_eq!(
            read.closed, is_closed,
            "{id}: NextShardIterator absent iff closed"
        );
        if let (Some(last), Some(end)) = (read.records.last(), ending(&id)) {
            assert_ne!(
                cmp_seq(last.sequence_number(), &end),
                std::cmp::Ordering::Greater,
                "{id}: records end at or before EndingSequenceNumber"
            );
        }
        let children: BTreeSet<String> = read
            .child_shards
            .iter()
            .map(|c| c.shard_id().to_string())
            .collect();
        match i {
            0 => {
                assert_eq!(children, BTreeSet::from([sid(2), sid(3)]));
                for c in &read.child_shards {
                    assert_eq!(c.parent_shards(), [sid(0)]);
                }
            }
            2 | 3 => {
                assert_eq!(children, BTreeSet::from([sid(4)]), "children of {id}");
                let parents: BTreeSet<String> = read.child_shards[0]
                    .parent_shards()
                    .iter()
                    .cloned()
                    .collect();
                assert_eq!(parents, BTreeSet::from([sid(2), sid(3)]));
                assert_eq!(
                    read.child_shards[0]
                        .hash_key_range()
                        .map(|r| r.starting_hash_key().to_string()),
                    Some("0".to_string())
                );
            }
            _ => assert!(children.is_empty(), "open {id} has no ChildShards"),
        }
        for r in read.records {
            read_all.push((id.clone(), r));
        }
    }

    // Every acknowledged record exactly once, where and as acknowledged.
    let mut seen: HashMap<String, (String, String)> = HashMap::new();
    for (shard, r) in &read_all {
        let data = String::from_utf8(r.data().as_ref().to_vec()).unwrap();
        let prev = seen.insert(
            data.clone(),
            (shard.clone(), r.sequence_number().to_string()),
        );
        assert!(prev.is_none(), "{data} read twice");
    }
    let acked_set: HashSet<&str> = acked.iter().map(|a| a.data.as_str()).collect();
    for a in &acked {
        let (shard, seq) = seen
            .get(&a.data)
            .unwrap_or_else(|| panic!("acknowledged {} (pk {}) never read", a.data, a.pk));
        assert_eq!(shard, &a.shard, "{} shard", a.data);
        assert_eq!(seq, &a.seq, "{} sequence number", a.data);
    }
    for data in seen.keys() {
        assert!(
            acked_set.contains(data.as_str()),
            "{data} read but never acknowledged"
        );
    }

    // Per partition key order, reading parents before children.
    let mut last: HashMap<String, u32> = HashMap::new();
    for (_, r) in &read_all {
        let pk = r.partition_key().unwrap_or_default().to_string();
        let data = String::from_utf8(r.data().as_ref().to_vec()).unwrap();
        let n: u32 = data.trim_start_matches("rec-").parse().unwrap();
        if let Some(prev) = last.insert(pk.clone(), n) {
            assert!(prev < n, "partition key {pk}: {n} read after {prev}");
        }
    }
    assert!(acked.len() >= 300, "enough load: {}", acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_shard_count_uniform_scaling_and_rate_limit() {
    let broker = TestBroker::builder()
        .config_toml(config(
            "status_delay = \"50ms\"\nreshards_per_24h = 2",
            "",
            LIMITS_OFF,
        ))
        .test_clock(true)
        .start()
        .await;
    broker.create_stream("usc", 2).await;
    let client = broker.client();
    let update = |n: i32| {
        client
            .update_shard_count()
            .stream_name("usc")
            .target_shard_count(n)
            .scaling_type(ScalingType::UniformScaling)
            .send()
    };
    // AWS answers the double/half rules with LimitExceededException (as the
    // AWS docs and every emulator quoting them do), message included.
    let rule_error =
        |res: Result<_, aws_sdk_kinesis::error::SdkError<UpdateShardCountError, _>>,
         expected: &str| {
            let err = res.expect_err("UpdateShardCount must be refused");
            assert!(
                matches!(
                    err.as_service_error(),
                    Some(UpdateShardCountError::LimitExceededException(_))
                ),
                "expected LimitExceededException, got {err:?}"
            );
            use aws_sdk_kinesis::error::ProvideErrorMetadata;
            assert_eq!(err.message(), Some(expected));
        };

    rule_error(
        update(5).await,
        "UpdateShardCount cannot scale up over double your current open shard count. \
         Current open shard count: 2, Target shard count: 5",
    );
    let out = update(4).await.expect("2 -> 4");
    assert_eq!(out.stream_name(), Some("usc"));
    assert_eq!(out.current_shard_count(), Some(2));
    assert_eq!(out.target_shard_count(), Some(4));
    broker.wait_active("usc").await;
    let open = open_shards(&list_all_shards(&client, "usc").await);
    assert_eq!(open.len(), 4);
    assert_partitions_evenly(&open);

    rule_error(
        update(1).await,
        "UpdateShardCount cannot scale down below half your current open shard count. \
         Current open shard count: 4, Target shard count: 1",
    );
    update(2).await.expect("4 -> 2");
    broker.wait_active("usc").await;
    let open = open_shards(&list_all_shards(&client, "usc").await);
    assert_eq!(open.len(), 2);
    assert_partitions_evenly(&open);
    let s = client
        .describe_stream_summary()
        .stream_name("usc")
        .send()
        .await
        .unwrap();
    assert_eq!(
        s.stream_description_summary().unwrap().open_shard_count(),
        2
    );

    // Third reshard within 24 h is over reshards_per_24h = 2.
    let err = update(4).await.expect_err("rate limited");
    assert!(
        matches!(
            err.as_service_error(),
            Some(UpdateShardCountError::LimitExceededException(_))
        ),
        "got {err:?}"
    );
    broker
        .advance_clock(Duration::from_secs(24 * 3600 + 60))
        .await;
    update(4).await.expect("allowed again after 24 h");
    broker.wait_active("usc").await;
    let open = open_shards(&list_all_shards(&client, "usc").await);
    assert_eq!(open.len(), 4);
    assert_partitions_evenly(&open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_split_and_merge_requests() {
    let broker = TestBroker::builder()
        .config_toml(config("status_delay = \"1s\"", "", LIMITS_OFF))
        .start()
        .await;
    broker.create_stream("bad", 3).await;
    let client = broker.client();
    let shards = list_all_shards(&client, "bad").await;
    let (s1_start, _) = range_of(&shards[1]);

    let err = client
        .merge_shards()
        .stream_name("bad")
        .shard_to_merge(sid(0))
        .adjacent_shard_to_merge(sid(2))
        .send()
        .await
        .expect_err("non-adjacent merge");
    assert!(
        matches!(
            err.as_service_error(),
            Some(MergeShardsError::InvalidArgumentException(_))
        ),
        "got {err:?}"
    );
    assert_eq!(
        aws_sdk_kinesis::error::ProvideErrorMetadata::message(&err),
        Some(
            "Shards shardId-000000000000 and shardId-000000000002 in stream bad under \
             account 000000000000 are not an adjacent pair of shards eligible for merging"
        )
    );
    let (_, s0_end) = range_of(&shards[0]);
    for key in [s1_start + 5, 0] {
        let err = client
            .split_shard()
            .stream_name("bad")
            .shard_to_split(sid(0))
            .new_starting_hash_key(key.to_string())
            .send()
            .await
            .expect_err("split outside (start, end]");
        assert!(
            matches!(
                err.as_service_error(),
                Some(SplitShardError::InvalidArgumentException(_))
            ),
            "hash key {key}: got {err:?}"
        );
        assert_eq!(
            aws_sdk_kinesis::error::ProvideErrorMetadata::message(&err).unwrap_or_default(),
            format!(
                "NewStartingHashKey {key} used in SplitShard() on shard shardId-000000000000 \
                 in stream bad under account 000000000000 is not both greater than one plus \
                 the shard's StartingHashKey 0 and less than the shard's EndingHashKey \
                 {s0_end}."
            )
        );
    }
    let err = client
        .merge_shards()
        .stream_name("bad")
        .shard_to_merge(sid(0))
        .adjacent_shard_to_merge(sid(42))
        .send()
        .await
        .expect_err("unknown shard");
    assert!(
        matches!(
            err.as_service_error(),
            Some(MergeShardsError::ResourceNotFoundException(_))
        ),
        "got {err:?}"
    );
    assert_eq!(status(&client, "bad").await, StreamStatus::Active);

    // While UPDATING, a second reshard is ResourceInUse.
    client
        .split_shard()
        .stream_name("bad")
        .shard_to_split(sid(0))
        .new_starting_hash_key("1000")
        .send()
        .await
        .expect("valid split");
    let err = client
        .merge_shards()
        .stream_name("bad")
        .shard_to_merge(sid(1))
        .adjacent_shard_to_merge(sid(2))
        .send()
        .await
        .expect_err("stream is UPDATING");
    assert!(
        matches!(
            err.as_service_error(),
            Some(MergeShardsError::ResourceInUseException(_))
        ),
        "got {err:?}"
    );
    assert_eq!(
        aws_sdk_kinesis::error::ProvideErrorMetadata::message(&err),
        Some("Stream bad under account 000000000000 not ACTIVE, instead in state UPDATING")
    );
    broker.wait_active("bad").await;
    // A closed shard cannot be split again.
    let (code, _) = service_err(
        client
            .split_shard()
            .stream_name("bad")
            .shard_to_split(sid(0))
            .new_starting_hash_key("2000")
            .send()
            .await,
    );
    assert!(
        [
            "InvalidArgumentException",
            "ResourceNotFoundException",
            "ResourceInUseException"
        ]
        .contains(&code.as_str()),
        "splitting a closed shard: {code}"
    );
}
