//! `read`: fill a stream with PutRecords, then read it all back from TRIM_HORIZON with
//! GetRecords, every shard in parallel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde::de::IgnoredAny;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::secs;
use crate::client::CallError;
use crate::kinesis::{
    create_stream, delete_stream, drive_put_records, get_records, shard_ids, shard_iterator,
    PutLoad,
};
use crate::report::{round3, CpuClock, Recorder, Report, Status};
use crate::{Common, Ctx};

/// Options of `read`.
#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Shards of the stream.
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    /// Bytes of data per record.
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// PutRecords calls in flight while filling.
    #[arg(long, default_value_t = 4)]
    pub fill_concurrency: usize,
    /// Longest the fill may take, seconds; the read then covers what was filled.
    #[arg(long, default_value_t = 120.0)]
    pub fill_secs: f64,
    /// GetRecords Limit.
    #[arg(long, default_value_t = 10_000)]
    pub limit: u32,
}

impl ReadArgs {
    /// Read phase bound, seconds.
    pub fn duration(&self) -> f64 {
        self.common.duration_secs.unwrap_or(120.0)
    }

    fn records(&self) -> u64 {
        self.common.records.unwrap_or(1_000_000)
    }

    /// The parameters as reported.
    pub fn params(&self) -> Value {
        json!({
            "records": self.records(),
            "record_size": self.record_size,
            "shards": self.shards,
            "limit": self.limit,
            "fill_concurrency": self.fill_concurrency,
            "fill_secs": self.fill_secs,
            "duration_secs": self.duration(),
        })
    }
}

/// Runs `read`.
pub async fn run(ctx: &Ctx, a: &ReadArgs) -> anyhow::Result<Report> {
    let stream = ctx.stream_name("read");
    create_stream(&ctx.k, &stream, a.shards, ctx.create_wait()).await?;
    let fill_rec = Recorder::default();
    let fill_started = Instant::now();
    let load = PutLoad {
        stream: stream.clone(),
        record_size: a.record_size,
        batch: 500,
        concurrency: a.fill_concurrency.max(1),
        max_records: a.records(),
        deadline: fill_started + secs(a.fill_secs),
        track_shards: true,
    };
    let totals = drive_put_records(&ctx.k, &load, &fill_rec).await;
    let fill_elapsed = fill_started.elapsed();
    let filled = totals.records.load(Ordering::Relaxed);
    let per_shard: HashMap<String, u64> = totals.per_shard.lock().clone();
    let mut r = Report::new("read", &a.common.target_name, a.common.http2, a.params());
    r.extra("filled_records", filled);
    r.extra("fill_elapsed_s", round3(fill_elapsed.as_secs_f64()));
    r.extra(
        "fill_records_per_s",
        round3(filled as f64 / fill_elapsed.as_secs_f64().max(1e-9)),
    );
    if filled == 0 {
        delete_stream(&ctx.k, &stream).await;
        r.status = Status::Failed;
        r.reason = Some(format!(
            "fill acknowledged no record: {}",
            fill_rec.last_error().unwrap_or_default()
        ));
        return Ok(r);
    }
    let shards = shard_ids(&ctx.k, &stream).await?;
    let rec = Recorder::default();
    let read_total = Arc::new(AtomicU64::new(0));
    let cpu = CpuClock::start();
    let started = Instant::now();
    let deadline = started + secs(a.duration());
    let mut tasks = Vec::new();
    // Read each shard up to what was acknowledged on it; if the endpoint names shards
    // differently in PutRecords and ListShards, read each to its tip instead.
    let known = shards.iter().any(|s| per_shard.contains_key(s));
    for shard in shards {
        let expected = if known {
            per_shard.get(&shard).copied().unwrap_or(0)
        } else {
            u64::MAX
        };
        let (k, stream, rec, read_total, limit) = (
            ctx.k.clone(),
            stream.clone(),
            rec.clone(),
            read_total.clone(),
            a.limit,
        );
        tasks.push(tokio::spawn(async move {
            let id = shard.clone();
            read_shard(
                &k,
                &stream,
                &shard,
                expected,
                limit,
                deadline,
                &rec,
                &read_total,
            )
            .await
            .map(|got| (id, expected, got))
        }));
    }
    let mut first_error: Option<CallError> = None;
    let mut shortfalls = serde_json::Map::new();
    for t in tasks {
        match t.await {
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Ok(Ok((id, expected, got))) if got < expected && expected != u64::MAX => {
                shortfalls.insert(id, json!({ "acknowledged": expected, "read": got }));
            }
            _ => {}
        }
    }
    let elapsed = started.elapsed();
    let read = read_total.load(Ordering::Relaxed);
    r.loadgen_cpu = cpu.json();
    r.set_volume(read, read * a.record_size as u64, elapsed);
    r.take(&rec);
    for (k, v) in fill_rec.errors() {
        *r.errors.entry(format!("fill:{k}")).or_default() += v;
    }
    r.extra("complete", read >= filled);
    if !shortfalls.is_empty() {
        r.extra("short_shards", Value::Object(shortfalls));
    }
    delete_stream(&ctx.k, &stream).await;
    if let Some(e) = first_error {
        if read == 0 {
            return Err(e.into());
        }
        r.extra("read_error", e.to_string());
    }
    Ok(r)
}

/// Reads one shard from TRIM_HORIZON until `expected` records arrived, the shard is drained
/// (an empty answer at the tip), or the deadline.
#[allow(clippy::too_many_arguments)]
async fn read_shard(
    k: &crate::client::Kinesis,
    stream: &str,
    shard: &str,
    expected: u64,
    limit: u32,
    deadline: Instant,
    rec: &Recorder,
    total: &AtomicU64,
) -> Result<u64, CallError> {
    let mut it = shard_iterator(k, stream, shard, "TRIM_HORIZON").await?;
    let mut got = 0u64;
    let mut empty_at_tip = 0;
    while got < expected && Instant::now() < deadline {
        let t = Instant::now();
        match get_records::<IgnoredAny>(k, &it, limit).await {
            Ok(out) => {
                rec.latency(t.elapsed());
                let n = out.records.len() as u64;
                got += n;
                total.fetch_add(n, Ordering::Relaxed);
                if n == 0 && out.millis_behind_latest.unwrap_or(0) == 0 {
                    empty_at_tip += 1;
                    if empty_at_tip >= 3 {
                        break;
                    }
                } else {
                    empty_at_tip = 0;
                }
                match out.next_shard_iterator {
                    Some(next) => it = next,
                    None => break,
                }
            }
            Err(e) if e.is_throttle() => {
                rec.call_error(&e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                rec.call_error(&e);
                return Err(e);
            }
        }
    }
    Ok(got)
}
