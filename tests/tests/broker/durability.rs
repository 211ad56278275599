//! Crash and restart: acknowledged records survive SIGKILL with fsync
//! "always"; SIGTERM shuts down cleanly with exit code 0.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use crate::common::*;

#[derive(Debug, Clone)]
struct Acked {
    pk: String,
    data: Vec<u8>,
    shard: String,
    seq: String,
}

/// A payload unique to (task, i) whose length varies, so a torn write can
/// never look like a complete payload of some other attempt.
fn payload(task: u32, i: u32) -> Vec<u8> {
    let mut p = format!("t{task}-i{i:05}|").into_bytes();
    let len = 20 + ((task * 7919 + i * 104_729) % 380) as usize;
    let mut x = (task << 20) ^ i ^ 0x9e37_79b9;
    while p.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p.push((x & 0xff) as u8);
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_storm_keeps_every_acknowledged_record() {
    let mut broker = TestBroker::builder()
        .config_toml(config(
            "status_delay = \"50ms\"",
            "fsync = \"always\"",
            LIMITS_OFF,
        ))
        .start()
        .await;
    broker.create_stream("dur", 2).await;
    let client = broker.client();

    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let attempted: Arc<Mutex<HashSet<Vec<u8>>>> = Arc::default();
    let pre_kill_errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let killed = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for task in 0..4u32 {
        let client = client.clone();
        let (acked, attempted, errs, killed) = (
            acked.clone(),
            attempted.clone(),
            pre_kill_errors.clone(),
            killed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            for i in 0..3000u32 {
                if Instant::now() > deadline {
                    break;
                }
                let pk = format!("t{task}-k{}", i % 8);
                let data = payload(task, i);
                attempted.lock().unwrap().insert(data.clone());
                match client
                    .put_record()
                    .stream_name("dur")
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
                    Err(e) => {
                        if !killed.load(Ordering::SeqCst) {
                            errs.lock().unwrap().push(format!("{e:?}"));
                        }
                        break;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    killed.store(true, Ordering::SeqCst);
    broker.kill9().await;
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("producer stops after the kill")
            .expect("producer task");
    }
    let errs = pre_kill_errors.lock().unwrap().clone();
    assert!(errs.is_empty(), "puts failed before the kill: {errs:?}");
    let acked = acked.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();
    assert!(
        acked.len() >= 20,
        "storm too small to be meaningful: {}",
        acked.len()
    );
    eprintln!(
        "acknowledged {} of {} attempted before SIGKILL",
        acked.len(),
        attempted.len()
    );

    broker.restart().await;
    let client = broker.client();
    broker.wait_active("dur").await;
    let mut found: HashMap<Vec<u8>, (String, String)> = HashMap::new();
    let mut max_seq: HashMap<String, String> = HashMap::new();
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let read = read_shard(&client, "dur", shard).await;
        assert!(!read.closed);
        assert_strictly_increasing(&read.records);
        for r in &read.records {
            let data = r.data().as_ref().to_vec();
            assert!(
                attempted.contains(&data),
                "{shard}: record {} is not a complete payload that was sent ({} bytes)",
                r.sequence_number(),
                data.len()
            );
            let prev = found.insert(data, (shard.to_string(), r.sequence_number().to_string()));
            assert!(prev.is_none(), "{shard}: a payload was stored twice");
        }
        if let Some(last) = read.records.last() {
            max_seq.insert(shard.to_string(), last.sequence_number().to_string());
        }
    }
    let mut missing = 0;
    for a in &acked {
        match found.get(&a.data) {
            None => missing += 1,
            Some((shard, seq)) => {
                assert_eq!(
                    shard, &a.shard,
                    "pk {} lands in the acknowledged shard",
                    a.pk
                );
                assert_eq!(seq, &a.seq, "pk {} keeps its acknowledged seq", a.pk);
            }
        }
    }
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged records lost after kill -9",
        acked.len()
    );

    // Writing continues after recovery with higher sequence numbers.
    let max_key = u128::MAX.to_string();
    for (shard, key) in [
        ("shardId-000000000000", "0"),
        ("shardId-000000000001", max_key.as_str()),
    ] {
        let out = client
            .put_record()
            .stream_name("dur")
            .partition_key("after")
            .explicit_hash_key(key)
            .data(blob(b"after-restart".to_vec()))
            .send()
            .await
            .expect("put after restart");
        assert_eq!(out.shard_id(), shard);
        if let Some(prev) = max_seq.get(shard) {
            assert_eq!(
                cmp_seq(prev, out.sequence_number()),
                std::cmp::Ordering::Less,
                "{shard}: new seq must exceed recovered ones"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_and_data_survives_restart() {
    let mut broker = TestBroker::start().await;
    broker.create_stream("grace", 2).await;
    let client = broker.client();
    client
        .increase_stream_retention_period()
        .stream_name("grace")
        .retention_period_hours(48)
        .send()
        .await
        .unwrap();
    broker.wait_active("grace").await;
    let entries: Vec<PutRecordsRequestEntry> = (0..50)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("k{i}"))
                .data(blob(format!("graceful-{i:02}")))
                .build()
                .unwrap()
        })
        .collect();
    let out = client
        .put_records()
        .stream_name("grace")
        .set_records(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_record_count(), Some(0));
    let acked: HashMap<String, (String, String)> = out
        .records()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                format!("graceful-{i:02}"),
                (
                    r.shard_id().unwrap().to_string(),
                    r.sequence_number().unwrap().to_string(),
                ),
            )
        })
        .collect();

    let status = broker.terminate().await;
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM must exit 0, got {status:?}"
    );

    broker.restart().await;
    let client = broker.client();
    broker.wait_active("grace").await;
    let s = client
        .describe_stream_summary()
        .stream_name("grace")
        .send()
        .await
        .unwrap();
    let s = s.stream_description_summary().unwrap();
    assert_eq!(s.open_shard_count(), 2);
    assert_eq!(s.retention_period_hours(), 48, "metadata survives restart");
    let mut got = HashMap::new();
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let read = read_shard(&client, "grace", shard).await;
        assert_strictly_increasing(&read.records);
        for r in read.records {
            let data = String::from_utf8(r.data().as_ref().to_vec()).unwrap();
            assert!(got
                .insert(data, (shard.to_string(), r.sequence_number().to_string()))
                .is_none());
        }
    }
    assert_eq!(got, acked);
    // A second graceful stop is clean too.
    let status = broker.terminate().await;
    assert_eq!(status.code(), Some(0));
}
