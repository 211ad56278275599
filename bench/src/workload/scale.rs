//! `scale`: one stream of many shards plus many small streams; the broker's resident memory
//! (VmRSS of `--broker-pid`) before, idle after creating them, and under a PutRecords load
//! spread over every shard of the big stream.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::secs;
use crate::kinesis::{create_stream, delete_stream, drive_put_records, wait_active, PutLoad};
use crate::report::{round3, CpuClock, Recorder, Report};
use crate::{Common, Ctx};

/// Options of `scale`.
#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Process id of the broker whose memory is measured.
    #[arg(long)]
    pub broker_pid: u32,
    /// Shards of the big stream.
    #[arg(long, default_value_t = 1000)]
    pub big_shards: u32,
    /// Number of small streams.
    #[arg(long, default_value_t = 100)]
    pub streams: u32,
    /// Shards of each small stream.
    #[arg(long, default_value_t = 1)]
    pub stream_shards: u32,
    /// PutRecords calls in flight during the load phase.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Seconds to wait after creation before the idle measurement.
    #[arg(long, default_value_t = 5.0)]
    pub settle_secs: f64,
    /// Longest the creation of every stream may take, seconds.
    #[arg(long, default_value_t = 300.0)]
    pub create_secs: f64,
}

impl ScaleArgs {
    /// Load phase bound, seconds.
    pub fn duration(&self) -> f64 {
        self.common.duration_secs.unwrap_or(20.0)
    }

    fn records(&self) -> u64 {
        self.common.records.unwrap_or(50_000_000)
    }

    /// The parameters as reported.
    pub fn params(&self) -> Value {
        json!({
            "big_shards": self.big_shards,
            "streams": self.streams,
            "stream_shards": self.stream_shards,
            "concurrency": self.concurrency,
            "max_records": self.records(),
            "duration_secs": self.duration(),
        })
    }
}

/// A process's resident set size in bytes, from `/proc/<pid>/status`.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn mb(bytes: u64) -> f64 {
    round3(bytes as f64 / (1024.0 * 1024.0))
}

/// Runs `scale`.
pub async fn run(ctx: &Ctx, a: &ScaleArgs) -> anyhow::Result<Report> {
    let pid = a.broker_pid;
    let baseline = rss_bytes(pid).ok_or_else(|| anyhow::anyhow!("no process {pid}"))?;
    let create_wait = secs(a.create_secs);
    let started_create = Instant::now();
    let big = ctx.stream_name("scale-big");
    create_stream(&ctx.k, &big, a.big_shards, create_wait).await?;
    let prefix = ctx.stream_name("scale");
    let names: Vec<String> = (0..a.streams).map(|i| format!("{prefix}-{i}")).collect();
    // Create the small streams eight at a time.
    for chunk in names.chunks(8) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|n| {
                let (k, n, shards) = (ctx.k.clone(), n.clone(), a.stream_shards);
                tokio::spawn(async move { create_stream(&k, &n, shards, create_wait).await })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
    }
    for n in &names {
        wait_active(&ctx.k, n, create_wait).await?;
    }
    let create_s = started_create.elapsed().as_secs_f64();
    tokio::time::sleep(secs(a.settle_secs)).await;
    let mut idle = 0u64;
    for _ in 0..5 {
        idle = idle.max(rss_bytes(pid).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Load: PutRecords over every shard of the big stream, memory sampled every 250 ms.
    let samples = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (samples, stop) = (samples.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                if let Some(r) = rss_bytes(pid) {
                    samples.lock().push(r);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let rec = Recorder::default();
    let load = PutLoad {
        stream: big.clone(),
        record_size: 100,
        batch: 500,
        concurrency: a.concurrency.max(1),
        max_records: a.records(),
        deadline: Instant::now() + secs(a.duration()),
        track_shards: false,
    };
    let cpu = CpuClock::start();
    let started = Instant::now();
    let totals = drive_put_records(&ctx.k, &load, &rec).await;
    let elapsed = started.elapsed();
    let cpu = cpu.json();
    stop.store(true, Ordering::Release);
    let _ = sampler.await;
    let loaded: Vec<u64> = samples.lock().clone();
    let load_max = loaded.iter().copied().max().unwrap_or(0);
    let load_mean = if loaded.is_empty() {
        0
    } else {
        loaded.iter().sum::<u64>() / loaded.len() as u64
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_bytes(pid).unwrap_or(0);

    let mut r = Report::new("scale", &a.common.target_name, a.common.http2, a.params());
    r.loadgen_cpu = cpu;
    r.set_volume(
        totals.records.load(Ordering::Relaxed),
        totals.bytes.load(Ordering::Relaxed),
        elapsed,
    );
    r.take(&rec);
    r.extra("shards_total", a.big_shards + a.streams * a.stream_shards);
    r.extra("create_s", round3(create_s));
    r.extra("rss_baseline_mb", mb(baseline));
    r.extra("rss_idle_mb", mb(idle));
    r.extra("rss_load_max_mb", mb(load_max));
    r.extra("rss_load_mean_mb", mb(load_mean));
    r.extra("rss_after_load_mb", mb(after));
    delete_stream(&ctx.k, &big).await;
    for n in &names {
        delete_stream(&ctx.k, n).await;
    }
    Ok(r)
}
