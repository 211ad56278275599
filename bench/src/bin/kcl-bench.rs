//! `kcl-bench`: measures the consumer library against a running broker (start it in release
//! mode with every limit off) and prints one JSON line per measurement.
//!
//! ```text
//! kcl-bench --endpoint http://127.0.0.1:4567 throughput --records 2000000
//! kcl-bench --endpoint http://127.0.0.1:4567 latency --records 200
//! kcl-bench lease-ops [--dynamodb http://127.0.0.1:5000]
//! ```
//!
//! - `throughput`: fills a 4-shard stream with 100-byte user records through `riffle-kpl`
//!   (KPL aggregates of ≤ 50 KiB, one predicted shard each), then
//!   one worker reads everything from TRIM_HORIZON, by polling and by fan-out: user records/s.
//! - `latency`: one record every 50 ms; delay from just before PutRecord to the processor,
//!   with the default retrieval settings.
//! - `lease-ops`: renewals per second of one lease, and of 16 leases concurrently, per store.
//!
//! Every run is bounded in records and in time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::Client;
use aws_smithy_types::Blob;
use clap::{Parser, Subcommand};
use riffle_kcl::{
    Checkpoint, Checkpointer, Config, DynamoDbLeaseStore, InitialPosition, Lease, LeaseStore,
    ProcessRecordsInput, ProcessorError, RecordProcessor, RetrievalMode, Scheduler,
    SqliteLeaseStore,
};
use serde_json::json;

#[derive(Debug, Parser)]
struct Cli {
    /// Kinesis endpoint of a broker with limits off.
    #[arg(long, default_value = "http://127.0.0.1:4567")]
    endpoint: String,
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// User records/s of one worker over 4 pre-filled shards, polling and fan-out.
    Throughput {
        #[arg(long, default_value_t = 2_000_000)]
        records: usize,
        #[arg(long, default_value_t = 120)]
        max_secs: u64,
    },
    /// Put → processor delay at 20 records/s.
    Latency {
        #[arg(long, default_value_t = 200)]
        records: usize,
    },
    /// Lease renewals per second.
    LeaseOps {
        /// A DynamoDB-compatible endpoint (e.g. moto_server) to measure too.
        #[arg(long)]
        dynamodb: Option<String>,
        #[arg(long, default_value_t = 3)]
        secs: u64,
    },
}

fn client(endpoint: &str) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("bench", "bench", None, None, "kcl-bench"))
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(config)
}

async fn create_stream(c: &Client, name: &str, shards: i32) -> anyhow::Result<()> {
    c.create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await?;
    for _ in 0..300 {
        let s = c.describe_stream_summary().stream_name(name).send().await?;
        if s.stream_description_summary()
            .map(|d| d.stream_status().as_str())
            == Some("ACTIVE")
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("stream {name} not ACTIVE")
}

/// Fills `stream` with `records` 100-byte user records through `riffle-kpl` with its default
/// aggregation (≤ 50 KiB aggregates, one predicted shard each), its own rate limit off; fails
/// if any record is not put.
async fn fill(c: &Client, stream: &str, records: usize) -> anyhow::Result<()> {
    let producer = riffle_kpl::Producer::builder(riffle_kpl::Config {
        rate_limit: riffle_kpl::RateLimit::Off,
        ..riffle_kpl::Config::default()
    })
    .client(c.clone())
    .build()
    .await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<riffle_kpl::PutHandle>(100_000);
    let outcomes = tokio::spawn(async move {
        let (mut ok, mut failed) = (0usize, 0usize);
        while let Some(h) = rx.recv().await {
            match h.await {
                Ok(_) => ok += 1,
                Err(_) => failed += 1,
            }
        }
        (ok, failed)
    });
    let payload = bytes::Bytes::from_static(&[b'x'; 100]);
    for i in 0..records {
        let h = producer
            .put(stream, format!("pk-{i}"), payload.clone())
            .await
            .map_err(|e| anyhow::anyhow!("put refused: {e}"))?;
        tx.send(h).await.context("outcome task ended")?;
    }
    drop(tx);
    producer.shutdown().await?;
    let (ok, failed) = outcomes.await?;
    anyhow::ensure!(
        failed == 0 && ok == records,
        "{failed} of {records} records failed"
    );
    Ok(())
}

struct Counter {
    n: Arc<AtomicU64>,
}

impl RecordProcessor for Counter {
    async fn process_records(
        &mut self,
        input: &ProcessRecordsInput,
        cp: &mut Checkpointer,
    ) -> Result<(), ProcessorError> {
        self.n
            .fetch_add(input.records.len() as u64, Ordering::Relaxed);
        cp.checkpoint().await?;
        Ok(())
    }
}

async fn throughput(endpoint: &str, records: usize, max: Duration) -> anyhow::Result<()> {
    let c = client(endpoint);
    let stream = format!("kcl-bench-{}", std::process::id());
    create_stream(&c, &stream, 4).await?;
    let t = Instant::now();
    fill(&c, &stream, records).await?;
    eprintln!("filled {records} records in {:?}", t.elapsed());
    for mode in [RetrievalMode::Polling, RetrievalMode::FanOut] {
        let dir = tempfile::tempdir()?;
        let app = format!("bench-{mode:?}").to_lowercase();
        let store = Arc::new(SqliteLeaseStore::open(dir.path().join("l.db"), &app)?);
        let mut cfg = Config::new(&app, &stream);
        cfg.initial_position = InitialPosition::TrimHorizon;
        cfg.retrieval.mode = mode;
        cfg.retrieval.min_poll_interval = Duration::ZERO;
        let n = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&n);
        let s = Scheduler::builder(cfg, c.clone(), store, move |_| Counter {
            n: Arc::clone(&counter),
        })
        .build()?;
        let stop = s.shutdown_handle();
        let run = tokio::spawn(s.run());
        let start = Instant::now();
        let mut first: Option<Instant> = None;
        while (n.load(Ordering::Relaxed) as usize) < records && start.elapsed() < max {
            if first.is_none() && n.load(Ordering::Relaxed) > 0 {
                first = Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let done = n.load(Ordering::Relaxed) as usize;
        let elapsed = first.map_or(start.elapsed(), |f| f.elapsed());
        stop.shutdown();
        let _ = run.await;
        println!(
            "{}",
            json!({"bench": "throughput", "mode": format!("{mode:?}"), "records": done,
                   "complete": done >= records, "secs": elapsed.as_secs_f64(),
                   "user_records_per_sec": done as f64 / elapsed.as_secs_f64(),
                   "startup_secs": first.map(|f| (f - start).as_secs_f64())})
        );
    }
    Ok(())
}

struct Stamp {
    sent: Arc<Mutex<HashMap<String, Instant>>>,
    delays: Arc<Mutex<Vec<Duration>>>,
}

impl RecordProcessor for Stamp {
    async fn process_records(
        &mut self,
        input: &ProcessRecordsInput,
        _cp: &mut Checkpointer,
    ) -> Result<(), ProcessorError> {
        let now = Instant::now();
        let sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let mut d = self.delays.lock().unwrap_or_else(|p| p.into_inner());
        for r in &input.records {
            if let Some(t) = sent.get(String::from_utf8_lossy(&r.data).as_ref()) {
                d.push(now - *t);
            }
        }
        Ok(())
    }
}

fn percentile(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

async fn latency(endpoint: &str, records: usize) -> anyhow::Result<()> {
    let c = client(endpoint);
    for mode in [RetrievalMode::Polling, RetrievalMode::FanOut] {
        let stream = format!("kcl-lat-{}-{mode:?}", std::process::id()).to_lowercase();
        create_stream(&c, &stream, 1).await?;
        let dir = tempfile::tempdir()?;
        let store = Arc::new(SqliteLeaseStore::open(dir.path().join("l.db"), "lat")?);
        let mut cfg = Config::new("lat", &stream);
        cfg.initial_position = InitialPosition::TrimHorizon;
        cfg.retrieval.mode = mode;
        let sent = Arc::new(Mutex::new(HashMap::new()));
        let delays = Arc::new(Mutex::new(Vec::new()));
        let (s2, d2) = (Arc::clone(&sent), Arc::clone(&delays));
        let s = Scheduler::builder(cfg, c.clone(), store, move |_| Stamp {
            sent: Arc::clone(&s2),
            delays: Arc::clone(&d2),
        })
        .build()?;
        let stop = s.shutdown_handle();
        let run = tokio::spawn(s.run());
        // Warm up: wait until the consumer has read one record.
        let deadline = Instant::now() + Duration::from_secs(30);
        sent.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert("warm".to_owned(), Instant::now());
        c.put_record()
            .stream_name(&stream)
            .partition_key("k")
            .data(Blob::new(b"warm".to_vec()))
            .send()
            .await?;
        while delays.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        delays.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        for i in 0..records {
            tick.tick().await;
            let d = format!("r{i}");
            sent.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(d.clone(), Instant::now());
            c.put_record()
                .stream_name(&stream)
                .partition_key("k")
                .data(Blob::new(d.into_bytes()))
                .send()
                .await?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while delays.lock().unwrap_or_else(|p| p.into_inner()).len() < records
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.shutdown();
        let _ = run.await;
        let mut d = delays.lock().unwrap_or_else(|p| p.into_inner()).clone();
        println!(
            "{}",
            json!({"bench": "latency", "mode": format!("{mode:?}"), "records": d.len(),
                   "p50_ms": percentile(&mut d, 0.5), "p90_ms": percentile(&mut d, 0.9),
                   "p99_ms": percentile(&mut d, 0.99), "max_ms": percentile(&mut d, 1.0)})
        );
    }
    Ok(())
}

async fn lease_ops(store: Arc<dyn LeaseStore>, name: &str, secs: u64) -> anyhow::Result<()> {
    store.initialize().await?;
    for parallel in [1usize, 16] {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let total = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for i in 0..parallel {
            let store = Arc::clone(&store);
            let total = Arc::clone(&total);
            let key = format!("bench-{parallel}-{i}");
            tasks.push(tokio::spawn(async move {
                let l = Lease::new(&key, vec![], None, Checkpoint::TrimHorizon);
                store.create_if_not_exists(&l).await?;
                let seen = store.get(&key).await?.context("lease")?;
                let mut held = store.take(&seen, "bench").await?;
                while Instant::now() < deadline {
                    held = store.renew(&held).await?;
                    total.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, anyhow::Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let n = total.load(Ordering::Relaxed);
        println!(
            "{}",
            json!({"bench": "lease-ops", "store": name, "leases_in_parallel": parallel,
                   "renewals_per_sec": n as f64 / secs as f64})
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.what {
        What::Throughput { records, max_secs } => {
            throughput(&cli.endpoint, records, Duration::from_secs(max_secs)).await
        }
        What::Latency { records } => latency(&cli.endpoint, records).await,
        What::LeaseOps { dynamodb, secs } => {
            let dir = tempfile::tempdir()?;
            let sqlite = SqliteLeaseStore::open(dir.path().join("l.db"), "ops")?;
            lease_ops(Arc::new(sqlite), "sqlite", secs).await?;
            if let Some(url) = dynamodb {
                let conf = aws_sdk_dynamodb::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .region(Region::new("us-east-1"))
                    .credentials_provider(Credentials::new("b", "b", None, None, "kcl-bench"))
                    .endpoint_url(url)
                    .build();
                let store =
                    DynamoDbLeaseStore::new(aws_sdk_dynamodb::Client::from_conf(conf), "ops");
                lease_ops(Arc::new(store), "dynamodb (moto_server)", secs).await?;
            }
            Ok(())
        }
    }
}
