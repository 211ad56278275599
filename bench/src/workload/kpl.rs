//! `kpl`: user records per second through the riffle-kpl producer library from this one
//! process (aggregation on or off), with the process's CPU time per million records and
//! its peak resident memory.
//!
//! `--producers` tasks call `put` as fast as the producer takes records (back-pressure
//! paces them) until the record or time bound; every handle is awaited (by a drainer task
//! per producer, in chunks), so a record counts once its future resolved successfully.
//! The measured phase ends when the last future resolved.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_credential_types::Credentials;
use aws_sdk_kinesis::config::{BehaviorVersion, Region};
use bytes::Bytes;
use clap::Args;
use rand::RngCore;
use riffle_kpl::{Config, Producer, PutHandle, RateLimit};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::secs;
use crate::kinesis::{create_stream, delete_stream};
use crate::report::{round3, CpuClock, Report, Status};
use crate::{Common, Ctx};

/// Options of `kpl`.
#[derive(Debug, Clone, Args)]
pub struct KplArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Bytes of data per user record.
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Shards of the stream the run creates.
    #[arg(long, default_value_t = 8)]
    pub shards: u32,
    /// Distinct partition keys.
    #[arg(long, default_value_t = 100_000)]
    pub keys: usize,
    /// Send every user record as its own Kinesis record.
    #[arg(long)]
    pub no_aggregation: bool,
    /// Per-shard rate limit of the producer, in percent of 1,000 records/s and 1 MiB/s,
    /// or `off` (the broker's limits are off in the benchmark).
    #[arg(long, default_value = "off")]
    pub rate_limit: String,
    /// Tasks calling `put`.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// PutRecords requests in flight (the producer's `max_concurrent_requests`).
    #[arg(long, default_value_t = 24)]
    pub max_concurrent_requests: usize,
    /// Ordered mode.
    #[arg(long)]
    pub ordered: bool,
    /// Keep the stream afterwards instead of deleting it.
    #[arg(long)]
    pub keep_stream: bool,
}

impl KplArgs {
    /// Measured phase bound, seconds.
    pub fn duration(&self) -> f64 {
        self.common.duration_secs.unwrap_or(20.0)
    }

    fn records(&self) -> u64 {
        self.common.records.unwrap_or(50_000_000)
    }

    /// The parameters as reported.
    pub fn params(&self) -> Value {
        json!({
            "record_size": self.record_size,
            "shards": self.shards,
            "keys": self.keys,
            "aggregation": !self.no_aggregation,
            "rate_limit": self.rate_limit,
            "producers": self.producers,
            "max_concurrent_requests": self.max_concurrent_requests,
            "ordered": self.ordered,
            "max_records": self.records(),
            "duration_secs": self.duration(),
        })
    }

    fn config(&self) -> anyhow::Result<Config> {
        let rate_limit = match self.rate_limit.as_str() {
            "off" => RateLimit::Off,
            p => RateLimit::Percent(p.parse()?),
        };
        let c = Config {
            aggregation_enabled: !self.no_aggregation,
            rate_limit,
            max_concurrent_requests: self.max_concurrent_requests,
            ordered: self.ordered,
            request_timeout: secs(self.common.request_timeout_secs),
            ..Config::default()
        };
        c.validate()?;
        Ok(c)
    }
}

/// The process's peak resident set size (VmHWM), bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `pk-` and the number in eight digits, formatted without `fmt` machinery.
fn partition_key(n: u64) -> String {
    let mut digits = [b'0'; 8];
    let mut v = n;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let mut s = String::with_capacity(11);
    s.push_str("pk-");
    s.push_str(std::str::from_utf8(&digits).expect("ascii digits"));
    s
}

/// Runs `kpl`.
pub async fn run(ctx: &Ctx, a: &KplArgs) -> anyhow::Result<Report> {
    let config = a.config()?;
    let stream = ctx.stream_name("kpl");
    create_stream(&ctx.k, &stream, a.shards, ctx.create_wait()).await?;
    let client = aws_sdk_kinesis::Client::from_conf(
        aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(a.common.region.clone()))
            .credentials_provider(Credentials::new("AKIDBENCH", "bench", None, None, "bench"))
            .endpoint_url(&a.common.endpoint)
            .build(),
    );
    let mut registry = prometheus_client::registry::Registry::default();
    let producer = Producer::builder(config)
        .client(client)
        .metrics(&mut registry)
        .build()
        .await?;
    // Payloads made up front; keys made per record (as an application would), from a
    // pseudo-random walk over `--keys` of them.
    let mut rng = rand::thread_rng();
    let payloads: Arc<Vec<Bytes>> = Arc::new(
        (0..1024)
            .map(|_| {
                let mut d = vec![0u8; a.record_size];
                rng.fill_bytes(&mut d);
                Bytes::from(d)
            })
            .collect(),
    );
    // The shard map is fetched before the clock starts.
    producer
        .put(&stream, "warm-up", payloads[0].clone())
        .await?
        .await?;

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let max = a.records();
    let deadline = Instant::now() + secs(a.duration());
    let cpu = CpuClock::start();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.producers.max(1) {
        let (tx, mut rx) = mpsc::channel::<Vec<PutHandle>>(64);
        let (ok, drained_failed) = (ok.clone(), failed.clone());
        let drainer = tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                for h in chunk {
                    match h.await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => drained_failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }
        });
        let failed = failed.clone();
        let (producer, stream, payloads, next) = (
            producer.clone(),
            stream.clone(),
            payloads.clone(),
            next.clone(),
        );
        let keys = a.keys.max(1) as u64;
        let feeder = tokio::spawn(async move {
            let mut chunk = Vec::with_capacity(1024);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= max || (i % 1024 == 0 && Instant::now() >= deadline) {
                    break;
                }
                let key = partition_key(i.wrapping_mul(7919) % keys);
                let data = payloads[i as usize % payloads.len()].clone();
                match producer.put(&stream, key, data).await {
                    Ok(h) => chunk.push(h),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if chunk.len() == 1024
                    && tx
                        .send(std::mem::replace(&mut chunk, Vec::with_capacity(1024)))
                        .await
                        .is_err()
                {
                    break;
                }
            }
            let _ = tx.send(chunk).await;
        });
        tasks.push((feeder, drainer));
    }
    for (feeder, drainer) in tasks {
        feeder.await?;
        drainer.await?;
    }
    let elapsed = started.elapsed();
    let cpu_json = cpu.json();
    producer.shutdown().await?;

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    let sample = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let kinesis = sample("kpl_kinesis_records_put_total");
    let requests = sample("kpl_request_time_seconds_count");
    let throttled = sample("kpl_errors_total");

    let records = ok.load(Ordering::Relaxed);
    let mut r = Report::new("kpl", &a.common.target_name, a.common.http2, a.params());
    r.set_volume(records, records * a.record_size as u64, elapsed);
    let cpu_s = cpu_json["cpu_s"].as_f64().unwrap_or(0.0);
    r.loadgen_cpu = cpu_json;
    r.extra("failed", failed.load(Ordering::Relaxed));
    r.extra("kinesis_records", kinesis);
    r.extra("put_records_requests", requests);
    r.extra("errors_by_code_total", throttled);
    if kinesis > 0.0 {
        r.extra(
            "user_records_per_kinesis_record",
            round3(records as f64 / kinesis),
        );
    }
    if records > 0 {
        r.extra(
            "cpu_s_per_million_records",
            round3(cpu_s / (records as f64 / 1e6)),
        );
    }
    if let Some(peak) = peak_rss() {
        r.extra("peak_rss_mb", round3(peak as f64 / (1024.0 * 1024.0)));
    }
    r.extra("stream", stream.clone());
    if !a.keep_stream {
        delete_stream(&ctx.k, &stream).await;
    }
    if records == 0 {
        r.status = Status::Failed;
        r.reason = Some("no record was acknowledged".into());
    }
    Ok(r)
}
