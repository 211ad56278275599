//! `put-record-latency`: sequential PutRecord calls paced at a fixed rate.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use clap::Args;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::secs;
use crate::kinesis::{create_stream, delete_stream, random_payloads};
use crate::report::{CpuClock, Recorder, Report, Status};
use crate::{Common, Ctx};

/// Options of `put-record-latency`.
#[derive(Debug, Clone, Args)]
pub struct LatencyArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Calls per second (one at a time; a late call is sent at once, not skipped).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Bytes of data per record.
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Shards of the stream.
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
}

impl LatencyArgs {
    /// Measured phase bound, seconds.
    pub fn duration(&self) -> f64 {
        self.common.duration_secs.unwrap_or(15.0)
    }

    fn records(&self) -> u64 {
        self.common
            .records
            .unwrap_or((self.rate * self.duration()) as u64)
    }

    /// The parameters as reported.
    pub fn params(&self) -> Value {
        json!({
            "rate": self.rate,
            "record_size": self.record_size,
            "shards": self.shards,
            "max_records": self.records(),
            "duration_secs": self.duration(),
        })
    }
}

/// Runs `put-record-latency`.
pub async fn run(ctx: &Ctx, a: &LatencyArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(a.rate > 0.0, "--rate must be positive");
    let stream = ctx.stream_name("lat");
    create_stream(&ctx.k, &stream, a.shards, ctx.create_wait()).await?;
    let data = random_payloads(a.record_size, 1).remove(0);
    debug_assert!(STANDARD.decode(&data).is_ok());
    let rec = Recorder::default();
    let cpu = CpuClock::start();
    let started = Instant::now();
    let deadline = started + secs(a.duration());
    let period = secs(1.0 / a.rate);
    let (mut ok, mut late) = (0u64, 0u64);
    for i in 0..a.records() {
        let due = started + secs(i as f64 / a.rate);
        if due >= deadline {
            break;
        }
        if Instant::now() > due + period {
            late += 1;
        }
        tokio::time::sleep_until(due).await;
        let body = serde_json::to_vec(&json!({
            "StreamName": stream,
            "Data": data,
            "PartitionKey": format!("k{i}"),
        }))?;
        let t = Instant::now();
        match ctx.k.call_raw("PutRecord", Bytes::from(body)).await {
            Ok(_) => {
                rec.latency(t.elapsed());
                ok += 1;
            }
            Err(e) => {
                rec.call_error(&e);
                if e.is_unsupported() {
                    return Err(e.into());
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let mut r = Report::new(
        "put-record-latency",
        &a.common.target_name,
        a.common.http2,
        a.params(),
    );
    r.loadgen_cpu = cpu.json();
    r.set_volume(ok, ok * a.record_size as u64, elapsed);
    r.take(&rec);
    r.extra("late_sends", late);
    delete_stream(&ctx.k, &stream).await;
    if ok == 0 {
        r.status = Status::Failed;
        r.reason = Some(rec.last_error().unwrap_or_else(|| "no answer".into()));
    }
    Ok(r)
}
