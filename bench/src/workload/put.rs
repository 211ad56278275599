//! `put-records`: PutRecords throughput on a stream the run creates.

use std::sync::atomic::Ordering;

use clap::Args;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::secs;
use crate::kinesis::{create_stream, delete_stream, drive_put_records, PutLoad};
use crate::report::{CpuClock, Recorder, Report};
use crate::{Common, Ctx};

/// Options of `put-records`.
#[derive(Debug, Clone, Args)]
pub struct PutRecordsArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Bytes of data per record.
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// PutRecords calls in flight.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Shards of the stream the run creates.
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    /// Records per PutRecords call (at most 500).
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Keep the stream afterwards instead of deleting it.
    #[arg(long)]
    pub keep_stream: bool,
}

impl PutRecordsArgs {
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
            "concurrency": self.concurrency,
            "shards": self.shards,
            "batch": self.batch,
            "max_records": self.records(),
            "duration_secs": self.duration(),
        })
    }
}

/// Runs `put-records`.
pub async fn run(ctx: &Ctx, a: &PutRecordsArgs) -> anyhow::Result<Report> {
    anyhow::ensure!((1..=500).contains(&a.batch), "--batch must be 1..=500");
    let stream = ctx.stream_name("put");
    create_stream(&ctx.k, &stream, a.shards, ctx.create_wait()).await?;
    let rec = Recorder::default();
    let load = PutLoad {
        stream: stream.clone(),
        record_size: a.record_size,
        batch: a.batch,
        concurrency: a.concurrency.max(1),
        max_records: a.records(),
        deadline: Instant::now() + secs(a.duration()),
        track_shards: false,
    };
    let cpu = CpuClock::start();
    let started = Instant::now();
    let totals = drive_put_records(&ctx.k, &load, &rec).await;
    let elapsed = started.elapsed();
    let mut r = Report::new(
        "put-records",
        &a.common.target_name,
        a.common.http2,
        a.params(),
    );
    r.loadgen_cpu = cpu.json();
    r.set_volume(
        totals.records.load(Ordering::Relaxed),
        totals.bytes.load(Ordering::Relaxed),
        elapsed,
    );
    r.take(&rec);
    r.extra("stream", stream.clone());
    if !a.keep_stream {
        delete_stream(&ctx.k, &stream).await;
    }
    if r.records == 0 {
        r.status = crate::report::Status::Failed;
        r.reason = Some(format!(
            "no record acknowledged: {}",
            rec.last_error().unwrap_or_else(|| "no answer".into())
        ));
    }
    Ok(r)
}
