//! Helpers for the kcl tests: producing plain records and KPL aggregates, a recording
//! processor, lease stores.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;
use aws_smithy_types::Blob;
use riffle_core::{AggregateBuilder, HashKey, HashKeyRange};
use riffle_kcl::{
    Checkpointer, InitializeInput, LeaseStore, ProcessRecordsInput, ProcessorError,
    RecordProcessor, SqliteLeaseStore,
};

pub(crate) use riffle_tests::{MotoServer, TestBroker};

/// Puts `n` plain records `"{prefix}-{i}"` (partition key = data); their data strings.
pub(crate) async fn put_plain(
    client: &Client,
    stream: &str,
    prefix: &str,
    n: usize,
) -> Vec<String> {
    let data: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    for chunk in data.chunks(500) {
        let entries = chunk
            .iter()
            .map(|d| {
                PutRecordsRequestEntry::builder()
                    .partition_key(d)
                    .data(Blob::new(d.as_bytes().to_vec()))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(out.failed_record_count(), Some(0));
    }
    data
}

/// Open shards of a stream with their hash ranges.
pub(crate) async fn open_shards(client: &Client, stream: &str) -> Vec<(String, HashKeyRange)> {
    let out = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards");
    out.shards()
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_none()
        })
        .map(|s| {
            let r = s.hash_key_range().unwrap();
            let range = HashKeyRange::new(
                r.starting_hash_key().parse().unwrap(),
                r.ending_hash_key().parse().unwrap(),
            )
            .unwrap();
            (s.shard_id().to_owned(), range)
        })
        .collect()
}

/// Puts `aggregates` KPL aggregates of `per` user records `"{prefix}-{i}"` each, every
/// aggregate holding only records of one shard and routed there by the explicit hash key of
/// its first record (as the KPL does); the user records' data strings in put order, and the
/// sequence number of each aggregate.
pub(crate) async fn put_aggregates(
    client: &Client,
    stream: &str,
    prefix: &str,
    aggregates: usize,
    per: usize,
) -> (Vec<String>, Vec<String>) {
    let shards = open_shards(client, stream).await;
    let mut by_shard: BTreeMap<usize, Vec<(String, HashKey)>> = BTreeMap::new();
    let mut i = 0usize;
    let mut data = Vec::new();
    let mut seqs = Vec::new();
    let mut made = 0;
    while made < aggregates {
        let d = format!("{prefix}-{i}");
        i += 1;
        let k = HashKey::from_partition_key(&d);
        let s = shards.iter().position(|(_, r)| r.contains(k)).unwrap();
        let group = by_shard.entry(s).or_default();
        group.push((d, k));
        if group.len() == per {
            let group = std::mem::take(group);
            let mut b = AggregateBuilder::new();
            for (d, _) in &group {
                b.add(d, None, d.as_bytes());
            }
            let out = client
                .put_record()
                .stream_name(stream)
                .partition_key(riffle_core::aggregate::AGGREGATE_PARTITION_KEY)
                .explicit_hash_key(group[0].1.to_string())
                .data(Blob::new(b.encode()))
                .send()
                .await
                .expect("PutRecord aggregate");
            assert_eq!(out.shard_id(), shards[s].0);
            seqs.push(out.sequence_number().to_owned());
            data.extend(group.into_iter().map(|(d, _)| d));
            made += 1;
        }
    }
    (data, seqs)
}

/// A SQLite lease store in `dir`.
pub(crate) fn sqlite_store(dir: &tempfile::TempDir, app: &str) -> Arc<dyn LeaseStore> {
    Arc::new(SqliteLeaseStore::open(dir.path().join("leases.db"), app).unwrap())
}

/// What a [`Recorder`] saw, with a global order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    Init {
        shard: String,
        checkpoint: String,
    },
    Rec {
        shard: String,
        seq: String,
        sub: u64,
        data: String,
    },
    End {
        shard: String,
    },
    Lost {
        shard: String,
    },
    Shutdown {
        shard: String,
    },
}

/// Shared log of a test's processors.
#[derive(Clone, Debug, Default)]
pub(crate) struct Log {
    pub(crate) events: Arc<Mutex<Vec<(u64, Seen)>>>,
    counter: Arc<AtomicU64>,
}

impl Log {
    pub(crate) fn push(&self, s: Seen) {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        self.events.lock().unwrap().push((n, s));
    }

    pub(crate) fn snapshot(&self) -> Vec<(u64, Seen)> {
        self.events.lock().unwrap().clone()
    }

    /// Data of every processed record.
    pub(crate) fn data(&self) -> Vec<String> {
        self.snapshot()
            .into_iter()
            .filter_map(|(_, s)| match s {
                Seen::Rec { data, .. } => Some(data),
                _ => None,
            })
            .collect()
    }

    /// Waits (≤ `limit`) until every string in `want` was processed.
    pub(crate) async fn wait_for_all(&self, want: &[String], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let got: std::collections::HashSet<String> = self.data().into_iter().collect();
            let missing: Vec<&String> = want.iter().filter(|w| !got.contains(*w)).collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after {limit:?}, {} of {} records not processed, e.g. {:?}",
                missing.len(),
                want.len(),
                &missing[..missing.len().min(5)]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A processor that logs everything and checkpoints after every batch. With `fail_on`, any
/// batch holding that data fails.
#[derive(Debug)]
pub(crate) struct Recorder {
    pub(crate) shard: String,
    pub(crate) log: Log,
    pub(crate) fail_on: Option<String>,
    pub(crate) checkpoint: bool,
}

impl Recorder {
    pub(crate) fn factory(log: &Log) -> impl Fn(&str) -> Recorder + Send + Sync + 'static {
        let log = log.clone();
        move |shard| Recorder {
            shard: shard.to_owned(),
            log: log.clone(),
            fail_on: None,
            checkpoint: true,
        }
    }
}

impl RecordProcessor for Recorder {
    async fn initialize(&mut self, input: InitializeInput) -> Result<(), ProcessorError> {
        self.log.push(Seen::Init {
            shard: self.shard.clone(),
            checkpoint: input.checkpoint.to_string(),
        });
        Ok(())
    }

    async fn process_records(
        &mut self,
        input: &ProcessRecordsInput,
        cp: &mut Checkpointer,
    ) -> Result<(), ProcessorError> {
        if let Some(bad) = &self.fail_on {
            if input
                .records
                .iter()
                .any(|r| r.data.as_ref() == bad.as_bytes())
            {
                self.log.push(Seen::Rec {
                    shard: self.shard.clone(),
                    seq: "attempt".into(),
                    sub: input.records.len() as u64,
                    data: "<failed batch>".into(),
                });
                return Err(format!("cannot process {bad}").into());
            }
        }
        for r in &input.records {
            self.log.push(Seen::Rec {
                shard: self.shard.clone(),
                seq: r.sequence_number.to_string(),
                sub: r.sub_sequence_number,
                data: String::from_utf8_lossy(&r.data).into_owned(),
            });
        }
        if self.checkpoint {
            cp.checkpoint().await?;
        }
        Ok(())
    }

    async fn lease_lost(&mut self) {
        self.log.push(Seen::Lost {
            shard: self.shard.clone(),
        });
    }

    async fn shard_ended(&mut self, cp: &mut Checkpointer) -> Result<(), ProcessorError> {
        self.log.push(Seen::End {
            shard: self.shard.clone(),
        });
        cp.checkpoint().await?;
        Ok(())
    }

    async fn shutdown_requested(&mut self, _cp: &mut Checkpointer) -> Result<(), ProcessorError> {
        self.log.push(Seen::Shutdown {
            shard: self.shard.clone(),
        });
        Ok(())
    }
}

/// A fast-failover test config.
pub(crate) fn config(
    app: &str,
    stream: &str,
    mode: riffle_kcl::RetrievalMode,
) -> riffle_kcl::Config {
    let mut c = riffle_kcl::Config::new(app, stream);
    c.initial_position = riffle_kcl::InitialPosition::TrimHorizon;
    c.failover_time = Duration::from_secs(3);
    c.lease_taker_interval = Duration::from_millis(250);
    c.parent_poll_interval = Duration::from_millis(200);
    c.shard_sync_interval = Duration::from_secs(2);
    c.retrieval.mode = mode;
    c.retrieval.idle_time = Duration::from_millis(200);
    c.retrieval.min_poll_interval = Duration::from_millis(20);
    c
}
