//! In-process scenarios: a `Scheduler` against the real broker, over polling and fan-out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use riffle_kcl::{
    Checkpoint, KinesisDeadLetter, LeaseStore, RecordProcessor, RetrievalMode, Scheduler,
    SequenceNumber,
};

use crate::common::*;

/// Runs a scheduler in the background; returns its shutdown handle and join handle.
fn spawn<P: RecordProcessor>(
    s: Scheduler<P>,
) -> (
    riffle_kcl::ShutdownHandle,
    tokio::task::JoinHandle<Result<(), riffle_kcl::SchedulerError>>,
) {
    let stop = s.shutdown_handle();
    (stop, tokio::spawn(s.run()))
}

async fn stop(
    h: (
        riffle_kcl::ShutdownHandle,
        tokio::task::JoinHandle<Result<(), riffle_kcl::SchedulerError>>,
    ),
) {
    h.0.shutdown();
    tokio::time::timeout(Duration::from_secs(30), h.1)
        .await
        .expect("scheduler stops within 30 s")
        .expect("scheduler task")
        .expect("scheduler ran");
}

/// Waits until the store shows a lease's checkpoint satisfying `pred`.
async fn wait_checkpoint(
    store: &Arc<dyn LeaseStore>,
    key: &str,
    pred: impl Fn(&Checkpoint) -> bool,
    limit: Duration,
) -> Checkpoint {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(Some(l)) = store.get(key).await {
            if pred(&l.checkpoint) {
                return l.checkpoint;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "checkpoint of {key} not reached within {limit:?}: {:?}",
            store.get(key).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A processor that checkpoints in the middle of the second aggregate and nothing else.
struct MidAggregate {
    log: Log,
    shard: String,
    at: (String, u64),
}

impl RecordProcessor for MidAggregate {
    async fn process_records(
        &mut self,
        input: &riffle_kcl::ProcessRecordsInput,
        cp: &mut riffle_kcl::Checkpointer,
    ) -> Result<(), riffle_kcl::ProcessorError> {
        for r in &input.records {
            self.log.push(Seen::Rec {
                shard: self.shard.clone(),
                seq: r.sequence_number.to_string(),
                sub: r.sub_sequence_number,
                data: String::from_utf8_lossy(&r.data).into_owned(),
            });
            if (r.sequence_number.as_str(), r.sub_sequence_number)
                == (self.at.0.as_str(), self.at.1)
            {
                cp.checkpoint_record(r).await?;
            }
        }
        Ok(())
    }
}

async fn mid_aggregate_restart(mode: RetrievalMode, store: Arc<dyn LeaseStore>) {
    let broker = TestBroker::start().await;
    broker.create_stream("agg", 1).await;
    let client = broker.client();
    let (data, seqs) = put_aggregates(&client, "agg", "u", 3, 10).await;
    let cfg = config("mid-agg", "agg", mode);

    // First run: checkpoint at sub-record 4 of the second aggregate, then stop without
    // checkpointing anything else.
    let log1 = Log::default();
    let at = (seqs[1].clone(), 4);
    let l = log1.clone();
    let a = at.clone();
    let s = Scheduler::builder(
        cfg.clone(),
        client.clone(),
        Arc::clone(&store),
        move |shard| MidAggregate {
            log: l.clone(),
            shard: shard.to_owned(),
            at: a.clone(),
        },
    )
    .build()
    .unwrap();
    let h = spawn(s);
    log1.wait_for_all(&data, Duration::from_secs(30)).await;
    let cp = wait_checkpoint(
        &store,
        "shardId-000000000000",
        |c| c.position().is_some(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        cp,
        Checkpoint::at(SequenceNumber::new(seqs[1].clone()).unwrap(), 4)
    );
    stop(h).await;

    // Second run resumes at sub-record 5 of the second aggregate.
    let log2 = Log::default();
    let s = Scheduler::builder(
        cfg,
        client.clone(),
        Arc::clone(&store),
        Recorder::factory(&log2),
    )
    .build()
    .unwrap();
    let h = spawn(s);
    log2.wait_for_all(&data[15..], Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(h).await;
    let recs: Vec<(String, u64, String)> = log2
        .snapshot()
        .into_iter()
        .filter_map(|(_, s)| match s {
            Seen::Rec { seq, sub, data, .. } => Some((seq, sub, data)),
            _ => None,
        })
        .collect();
    let expected: Vec<(String, u64, String)> = (5..10)
        .map(|i| (seqs[1].clone(), i, data[10 + i as usize].clone()))
        .chain((0..10).map(|i| (seqs[2].clone(), i, data[20 + i as usize].clone())))
        .collect();
    assert_eq!(
        recs, expected,
        "resumes exactly after (aggregate 2, sub-record 4)"
    );
    let init = log2.snapshot().into_iter().find_map(|(_, s)| match s {
        Seen::Init { checkpoint, .. } => Some(checkpoint),
        _ => None,
    });
    assert_eq!(init, Some(format!("{}/4", seqs[1])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_inside_an_aggregate_resumes_at_the_next_user_record_polling_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    mid_aggregate_restart(RetrievalMode::Polling, sqlite_store(&dir, "mid-agg")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_inside_an_aggregate_resumes_at_the_next_user_record_fan_out_dynamodb() {
    let moto = MotoServer::start().await;
    let store: Arc<dyn LeaseStore> = Arc::new(riffle_kcl::DynamoDbLeaseStore::new(
        moto.dynamodb_client(),
        "mid-agg",
    ));
    mid_aggregate_restart(RetrievalMode::FanOut, store).await;
}

async fn poison(mode: RetrievalMode) {
    let broker = TestBroker::start().await;
    broker.create_stream("in", 1).await;
    broker.create_stream("dlq", 1).await;
    let client = broker.client();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir, "poison");
    let mut cfg = config("poison", "in", mode);
    cfg.retry.max_attempts = 3;
    cfg.retry.initial_backoff = Duration::from_millis(50);
    let before = put_plain(&client, "in", "before", 5).await;
    let bad = put_plain(&client, "in", "poison", 1).await;
    let log = Log::default();
    let l = log.clone();
    let mut registry = prometheus_client::registry::Registry::default();
    let s = Scheduler::builder(cfg, client.clone(), Arc::clone(&store), move |shard| {
        Recorder {
            shard: shard.to_owned(),
            log: l.clone(),
            fail_on: Some(bad[0].clone()),
            checkpoint: true,
        }
    })
    .dead_letter(Arc::new(KinesisDeadLetter::new(client.clone(), "dlq")))
    .metrics(&mut registry)
    .build()
    .unwrap();
    let h = spawn(s);
    log.wait_for_all(&before, Duration::from_secs(30)).await;
    let after = put_plain(&client, "in", "after", 5).await;
    log.wait_for_all(&after, Duration::from_secs(30)).await;

    // The poison record is in the dead-letter stream, with its partition key.
    let it = client
        .get_shard_iterator()
        .stream_name("dlq")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let got = client
        .get_records()
        .shard_iterator(it)
        .send()
        .await
        .unwrap();
    let dead: Vec<(String, String)> = got
        .records()
        .iter()
        .map(|r| {
            (
                r.partition_key().unwrap_or_default().to_owned(),
                String::from_utf8(r.data().as_ref().to_vec()).unwrap(),
            )
        })
        .collect();
    assert_eq!(dead, vec![("poison-0".to_owned(), "poison-0".to_owned())]);
    // Every batch holding the poison failed: 3 attempts (the batch may hold neighbours), then
    // once alone when isolating; its neighbours were processed.
    let attempts = log
        .snapshot()
        .iter()
        .filter(|(_, s)| matches!(s, Seen::Rec { seq, .. } if seq == "attempt"))
        .count();
    assert_eq!(attempts, 4, "{:?}", log.snapshot());
    assert!(!log.data().contains(&"poison-0".to_owned()));
    // The shard checkpointed past it.
    let after_seq = log
        .snapshot()
        .into_iter()
        .find_map(|(_, s)| match s {
            Seen::Rec { seq, data, .. } if data == "after-4" => Some(seq),
            _ => None,
        })
        .unwrap();
    wait_checkpoint(
        &store,
        "shardId-000000000000",
        |c| c.position().map(|p| p.sequence.as_str()) == Some(after_seq.as_str()),
        Duration::from_secs(10),
    )
    .await;
    stop(h).await;

    // The metrics saw it too.
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let metric = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
    };
    let shard = "{shard=\"shardId-000000000000\"}";
    assert_eq!(
        metric(&format!("kcl_dead_lettered_records_total{shard}")),
        1.0
    );
    assert_eq!(metric(&format!("kcl_process_retries_total{shard}")), 2.0);
    assert_eq!(metric(&format!("kcl_records_processed_total{shard}")), 10.0);
    assert!(metric("kcl_leases_taken_total{kind=\"expired\"}") >= 1.0);
    assert!(metric("kcl_checkpoint_seconds_count") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_reaches_the_dead_letter_stream_and_the_shard_moves_on_polling() {
    poison(RetrievalMode::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_reaches_the_dead_letter_stream_and_the_shard_moves_on_fan_out() {
    poison(RetrievalMode::FanOut).await;
}

async fn resharding(mode: RetrievalMode) {
    let broker = TestBroker::start().await;
    broker.create_stream("rs", 2).await;
    let client = broker.client();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir, "reshard");
    let log = Log::default();
    let s = Scheduler::builder(
        config("reshard", "rs", mode),
        client.clone(),
        Arc::clone(&store),
        Recorder::factory(&log),
    )
    .build()
    .unwrap();
    let h = spawn(s);
    let mut all = put_plain(&client, "rs", "a", 200).await;
    log.wait_for_all(&all[..50], Duration::from_secs(30)).await;
    // Split shard 0 ([0, 2^127)) at 2^126 → shards 2, 3.
    client
        .split_shard()
        .stream_name("rs")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key((1u128 << 126).to_string())
        .send()
        .await
        .expect("SplitShard");
    broker.wait_active("rs").await;
    all.extend(put_plain(&client, "rs", "b", 200).await);
    // Merge shard 3 ([2^126, 2^127)) with shard 1 ([2^127, max]) → shard 4.
    client
        .merge_shards()
        .stream_name("rs")
        .shard_to_merge("shardId-000000000003")
        .adjacent_shard_to_merge("shardId-000000000001")
        .send()
        .await
        .expect("MergeShards");
    broker.wait_active("rs").await;
    all.extend(put_plain(&client, "rs", "c", 200).await);
    log.wait_for_all(&all, Duration::from_secs(60)).await;
    stop(h).await;

    // Parents before children: a child's first event comes after each parent's shard end.
    let events = log.snapshot();
    let first = |shard: &str| {
        events
            .iter()
            .find(|(_, s)| match s {
                Seen::Init { shard: x, .. } | Seen::Rec { shard: x, .. } => x == shard,
                _ => false,
            })
            .map(|(n, _)| *n)
    };
    let end = |shard: &str| {
        events
            .iter()
            .find(|(_, s)| matches!(s, Seen::End { shard: x } if x == shard))
            .map(|(n, _)| *n)
    };
    let lineage = [
        ("shardId-000000000002", vec!["shardId-000000000000"]),
        ("shardId-000000000003", vec!["shardId-000000000000"]),
        (
            "shardId-000000000004",
            vec!["shardId-000000000001", "shardId-000000000003"],
        ),
    ];
    for (child, parents) in &lineage {
        let c = first(child).unwrap_or_else(|| panic!("{child} never started"));
        for p in parents {
            let e = end(p).unwrap_or_else(|| panic!("{p} never ended"));
            assert!(e < c, "{child} started (#{c}) before {p} ended (#{e})");
        }
    }
    // Every parent is checkpointed at SHARD_END with its children recorded.
    for (p, children) in [
        (
            "shardId-000000000000",
            vec!["shardId-000000000002", "shardId-000000000003"],
        ),
        ("shardId-000000000001", vec!["shardId-000000000004"]),
        ("shardId-000000000003", vec!["shardId-000000000004"]),
    ] {
        let l = store.get(p).await.unwrap().unwrap();
        assert_eq!(l.checkpoint, Checkpoint::ShardEnd, "{p}");
        assert_eq!(l.child_shard_ids, children, "{p}");
        assert_eq!(l.owner, None, "a finished lease is released");
    }
    let l4 = store.get("shardId-000000000004").await.unwrap().unwrap();
    assert_eq!(
        l4.parent_shard_ids,
        vec!["shardId-000000000001", "shardId-000000000003"]
    );
    // Per shard, records in order and each exactly once (one worker, no failures).
    let mut per_shard: HashMap<String, Vec<(SequenceNumber, u64)>> = HashMap::new();
    let mut seen = HashSet::new();
    for (_, s) in &events {
        if let Seen::Rec {
            shard,
            seq,
            sub,
            data,
        } = s
        {
            assert!(seen.insert(data.clone()), "{data} processed twice");
            per_shard
                .entry(shard.clone())
                .or_default()
                .push((SequenceNumber::new(seq.clone()).unwrap(), *sub));
        }
    }
    for (shard, v) in per_shard {
        assert!(v.windows(2).all(|w| w[0] < w[1]), "{shard} out of order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splits_and_merges_during_consumption_parents_before_children_polling() {
    resharding(RetrievalMode::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splits_and_merges_during_consumption_parents_before_children_fan_out() {
    resharding(RetrievalMode::FanOut).await;
}

/// Subscriptions that end every second (as AWS's do every 5 minutes) are renewed from the
/// continuation sequence number: nothing lost, nothing delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_resubscribes_from_the_continuation_when_a_subscription_ends() {
    let cfg = "region = \"us-east-1\"\naccount_id = \"000000000000\"\n\
        [streams]\nstatus_delay = \"50ms\"\nsubscription_lifetime = \"1s\"\n\
        subscription_heartbeat = \"200ms\"\n[storage]\nfsync = \"never\"\n\
        [control_plane]\nenabled = false\n";
    let broker = TestBroker::builder().config_toml(cfg).start().await;
    broker.create_stream("short", 1).await;
    let client = broker.client();
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let s = Scheduler::builder(
        config("short-subs", "short", RetrievalMode::FanOut),
        client.clone(),
        sqlite_store(&dir, "short-subs"),
        Recorder::factory(&log),
    )
    .build()
    .unwrap();
    let h = spawn(s);
    let mut all = Vec::new();
    for round in 0..8 {
        all.extend(put_plain(&client, "short", &format!("r{round}"), 25).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    log.wait_for_all(&all, Duration::from_secs(30)).await;
    stop(h).await;
    // In order, each once, although it spanned several subscriptions.
    assert_eq!(log.data(), all);
}
