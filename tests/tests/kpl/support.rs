//! Helpers of the kpl end-to-end tests: a producer for a test broker, numbered records,
//! and reading a whole stream back the way the KCL de-aggregates it.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;
use riffle_core::{Aggregate, HashKey, HashKeyRange};
use riffle_kpl::{Config, Producer, PutHandle, PutResult};
use tokio::sync::mpsc;

pub(crate) use riffle_tests::TestBroker;

/// A producer for the broker's endpoint.
pub(crate) async fn producer(broker: &TestBroker, config: Config) -> Producer {
    Producer::builder(config)
        .client(broker.client())
        .build()
        .await
        .expect("build producer")
}

/// The harness's default broker config with these `[limits]` lines instead.
pub(crate) fn config_with_limits(limits: &str) -> String {
    format!(
        "region = \"us-east-1\"\naccount_id = \"000000000000\"\n\n[streams]\nstatus_delay = \"50ms\"\n\n\
         [storage]\nfsync = \"never\"\n\n\
         [control_plane]\nenabled = false\n\n[limits]\n{limits}\n"
    )
}

/// Data of record `id`: its number, then padding to `len` bytes (at least 8).
pub(crate) fn data(id: u64, len: usize) -> Vec<u8> {
    let mut d = id.to_le_bytes().to_vec();
    d.resize(len.max(8), b'.');
    d
}

/// The number in data made by [`data`].
pub(crate) fn id_of(data: &[u8]) -> u64 {
    u64::from_le_bytes(data[..8].try_into().expect("8 bytes"))
}

/// Runs `fut`, failing the test if it takes longer than `limit` (a hang guard).
pub(crate) async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {limit:?}"),
    }
}

/// Where a test sends each record's id and handle.
pub(crate) type Handles = mpsc::Sender<(u64, PutHandle)>;

/// The outcomes by record id, once every handle sent is resolved.
pub(crate) type Outcomes = tokio::task::JoinHandle<HashMap<u64, PutResult>>;

/// Awaits handles in the order they are sent; returns every outcome by record id.
pub(crate) fn resolver() -> (Handles, Outcomes) {
    let (tx, mut rx) = mpsc::channel::<(u64, PutHandle)>(100_000);
    let task = tokio::spawn(async move {
        let mut out = HashMap::new();
        while let Some((id, h)) = rx.recv().await {
            out.insert(id, h.await);
        }
        out
    });
    (tx, task)
}

/// One user record as a consumer sees it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) shard_id: String,
    pub(crate) sequence_number: String,
    pub(crate) sub_sequence_number: Option<u64>,
    pub(crate) partition_key: String,
    pub(crate) data: Vec<u8>,
}

/// What reading a stream found.
#[derive(Debug, Default)]
pub(crate) struct StreamRead {
    /// User records in shard order, and in sequence order inside each shard.
    pub(crate) records: Vec<Seen>,
    /// Aggregates dropped because a user record in them lies outside the shard's range
    /// (the KCL drops those; the producer re-sent their records).
    pub(crate) dropped_aggregates: usize,
}

/// Reads every shard of `stream` from TRIM_HORIZON to its end (closed) or its tip, and
/// de-aggregates as the KCL does. Bounded to 100,000 GetRecords calls and 120 s per shard.
pub(crate) async fn read_stream(client: &Client, stream: &str) -> StreamRead {
    let mut shards = Vec::new();
    let mut resp = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards");
    loop {
        shards.extend(resp.shards().iter().cloned());
        match resp.next_token() {
            Some(t) => {
                resp = client
                    .list_shards()
                    .next_token(t)
                    .send()
                    .await
                    .expect("ListShards page")
            }
            None => break,
        }
    }
    let mut out = StreamRead::default();
    for shard in shards {
        let r = shard.hash_key_range().expect("hash key range");
        let range = HashKeyRange::new(
            r.starting_hash_key().parse::<HashKey>().expect("start"),
            r.ending_hash_key().parse::<HashKey>().expect("end"),
        )
        .expect("range");
        let mut iter = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator()
            .expect("iterator")
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut calls = 0;
        loop {
            assert!(
                calls < 100_000 && Instant::now() < deadline,
                "reading {} did not end",
                shard.shard_id()
            );
            calls += 1;
            let page = client
                .get_records()
                .shard_iterator(&iter)
                .limit(10_000)
                .send()
                .await
                .expect("GetRecords");
            for rec in page.records() {
                let bytes = rec.data().as_ref();
                match Aggregate::parse(bytes) {
                    Some(agg) if !agg.within(&range) => out.dropped_aggregates += 1,
                    Some(agg) => {
                        for (i, u) in agg.records.iter().enumerate() {
                            out.records.push(Seen {
                                shard_id: shard.shard_id().to_string(),
                                sequence_number: rec.sequence_number().to_string(),
                                sub_sequence_number: Some(i as u64),
                                partition_key: u.partition_key.to_string(),
                                data: u.data.to_vec(),
                            });
                        }
                    }
                    None => out.records.push(Seen {
                        shard_id: shard.shard_id().to_string(),
                        sequence_number: rec.sequence_number().to_string(),
                        sub_sequence_number: None,
                        partition_key: rec.partition_key().unwrap_or_default().to_string(),
                        data: bytes.to_vec(),
                    }),
                }
            }
            match page.next_shard_iterator() {
                None => break,
                Some(next) => iter = next.to_string(),
            }
            if page.records().is_empty() && page.millis_behind_latest() == Some(0) {
                break;
            }
        }
    }
    out
}

/// Counts of each record id in what was read.
pub(crate) fn counts(read: &StreamRead) -> HashMap<u64, usize> {
    let mut c = HashMap::new();
    for s in &read.records {
        *c.entry(id_of(&s.data)).or_insert(0) += 1;
    }
    c
}

/// The value of a metric sample in a Prometheus text exposition (0 if absent).
pub(crate) fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}
