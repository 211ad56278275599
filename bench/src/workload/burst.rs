//! `burst`: a producer at a multiple of the consumer's capacity, then at a normal rate.
//!
//! The consumer processes at most `--consumer-rate` records/s: it polls every
//! `1/--calls-per-sec` seconds with `Limit = consumer-rate / calls-per-sec`. The producer
//! writes `--burst-factor ×` that rate for `--burst-secs`, then `--normal-factor ×` it. Every
//! second the run samples the consumer's last MillisBehindLatest and the backlog; recovery
//! is the time from the end of the burst until MillisBehindLatest is back to 0 (and,
//! independently of how an endpoint computes that field, until a poll returns fewer records
//! than its Limit, i.e. the consumer reached the tip).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use clap::Args;
use parking_lot::Mutex;
use serde::de::IgnoredAny;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::secs;
use crate::kinesis::{
    create_stream, delete_stream, get_records, put_records_body, random_payloads, shard_ids,
    shard_iterator, PutRecordsOut,
};
use crate::report::{round3, CpuClock, Recorder, Report, Status};
use crate::{Common, Ctx};

/// Options of `burst`.
#[derive(Debug, Clone, Args)]
pub struct BurstArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Records per second the consumer can process.
    #[arg(long, default_value_t = 1000.0)]
    pub consumer_rate: f64,
    /// GetRecords calls per second (Kinesis allows 5 per shard).
    #[arg(long, default_value_t = 5.0)]
    pub calls_per_sec: f64,
    /// Producer rate during the burst, as a multiple of the consumer rate.
    #[arg(long, default_value_t = 3.0)]
    pub burst_factor: f64,
    /// Producer rate after the burst, as a multiple of the consumer rate.
    #[arg(long, default_value_t = 0.5)]
    pub normal_factor: f64,
    /// Length of the burst, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub burst_secs: f64,
    /// Longest to wait for recovery after the burst, seconds.
    #[arg(long, default_value_t = 150.0)]
    pub recovery_secs: f64,
    /// Bytes of data per record.
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
}

impl BurstArgs {
    fn records(&self) -> u64 {
        self.common.records.unwrap_or(10_000_000)
    }

    /// The parameters as reported.
    pub fn params(&self) -> Value {
        json!({
            "consumer_rate": self.consumer_rate,
            "calls_per_sec": self.calls_per_sec,
            "burst_factor": self.burst_factor,
            "normal_factor": self.normal_factor,
            "burst_secs": self.burst_secs,
            "recovery_secs": self.recovery_secs,
            "record_size": self.record_size,
            "max_records": self.records(),
        })
    }
}

#[derive(Default)]
struct State {
    produced: AtomicU64,
    consumed: AtomicU64,
    last_behind: AtomicI64,
    peak_behind: AtomicI64,
    stop: AtomicBool,
    /// ms since start when the burst ended (0 = not yet).
    burst_end_ms: AtomicU64,
    /// ms since start when MillisBehindLatest was first 0 after the burst.
    behind_zero_ms: AtomicU64,
    /// ms since start when a poll first returned fewer records than its Limit after the burst.
    caught_up_ms: AtomicU64,
}

/// Runs `burst`.
pub async fn run(ctx: &Ctx, a: &BurstArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        a.consumer_rate > 0.0 && a.calls_per_sec > 0.0,
        "rates must be positive"
    );
    let stream = ctx.stream_name("burst");
    create_stream(&ctx.k, &stream, 1, ctx.create_wait()).await?;
    let shard = shard_ids(&ctx.k, &stream)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("stream has no shard"))?;
    let iterator = shard_iterator(&ctx.k, &stream, &shard, "TRIM_HORIZON").await?;
    let st = Arc::new(State::default());
    let series = Arc::new(Mutex::new(Vec::<Value>::new()));
    let rec = Recorder::default();
    let put_rec = Recorder::default();
    let cpu = CpuClock::start();
    let started = Instant::now();
    let ms_since = move || started.elapsed().as_millis() as u64;
    let hard_stop = started + secs(a.burst_secs + a.recovery_secs);
    let limit = (a.consumer_rate / a.calls_per_sec).ceil().max(1.0) as u32;
    let period = secs(1.0 / a.calls_per_sec);

    let consumer = {
        let (k, st, rec) = (ctx.k.clone(), st.clone(), rec.clone());
        tokio::spawn(async move {
            let mut it = iterator;
            let mut next = Instant::now();
            while !st.stop.load(Ordering::Acquire) && Instant::now() < hard_stop {
                tokio::time::sleep_until(next).await;
                next = (next + period).max(Instant::now());
                let t = Instant::now();
                match get_records::<IgnoredAny>(&k, &it, limit).await {
                    Ok(out) => {
                        rec.latency(t.elapsed());
                        let n = out.records.len() as u64;
                        st.consumed.fetch_add(n, Ordering::AcqRel);
                        let behind = out.millis_behind_latest.unwrap_or(-1);
                        st.last_behind.store(behind, Ordering::Release);
                        st.peak_behind.fetch_max(behind, Ordering::AcqRel);
                        if st.burst_end_ms.load(Ordering::Acquire) > 0 {
                            let now = ms_since();
                            if behind == 0 {
                                let _ = st.behind_zero_ms.compare_exchange(
                                    0,
                                    now,
                                    Ordering::AcqRel,
                                    Ordering::Acquire,
                                );
                            }
                            if n < u64::from(limit) {
                                let _ = st.caught_up_ms.compare_exchange(
                                    0,
                                    now,
                                    Ordering::AcqRel,
                                    Ordering::Acquire,
                                );
                            }
                        }
                        match out.next_shard_iterator {
                            Some(n) => it = n,
                            None => break,
                        }
                    }
                    Err(e) => rec.call_error(&e),
                }
            }
        })
    };

    let sampler = {
        let (st, series) = (st.clone(), series.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            while !st.stop.load(Ordering::Acquire) && Instant::now() < hard_stop {
                tick.tick().await;
                let produced = st.produced.load(Ordering::Acquire);
                let consumed = st.consumed.load(Ordering::Acquire);
                series.lock().push(json!([
                    round3(started.elapsed().as_secs_f64()),
                    st.last_behind.load(Ordering::Acquire),
                    produced.saturating_sub(consumed),
                ]));
            }
        })
    };

    // The producer: a PutRecords every 100 ms carrying a tenth of the current rate.
    let payloads = random_payloads(a.record_size, 4);
    let data: Vec<&str> = payloads.iter().map(String::as_str).collect();
    let tick = secs(0.1);
    let burst_end = started + secs(a.burst_secs);
    let mut next = started;
    let mut owed = 0.0f64;
    let mut key = 0u64;
    let mut backlog_at_burst_end = None;
    while Instant::now() < hard_stop && st.produced.load(Ordering::Acquire) < a.records() {
        tokio::time::sleep_until(next).await;
        next += tick;
        let now = Instant::now();
        let in_burst = now < burst_end;
        if !in_burst && st.burst_end_ms.load(Ordering::Acquire) == 0 {
            st.burst_end_ms.store(ms_since().max(1), Ordering::Release);
            backlog_at_burst_end = Some(
                st.produced
                    .load(Ordering::Acquire)
                    .saturating_sub(st.consumed.load(Ordering::Acquire)),
            );
        }
        if !in_burst
            && st.behind_zero_ms.load(Ordering::Acquire) > 0
            && st.caught_up_ms.load(Ordering::Acquire) > 0
            && ms_since()
                > st.behind_zero_ms
                    .load(Ordering::Acquire)
                    .max(st.caught_up_ms.load(Ordering::Acquire))
                    + 3000
        {
            break;
        }
        let factor = if in_burst {
            a.burst_factor
        } else {
            a.normal_factor
        };
        owed += factor * a.consumer_rate * 0.1;
        while owed >= 1.0 {
            let n = (owed.floor() as usize).min(500);
            owed -= n as f64;
            let body = put_records_body(&stream, &data, "b", key, n);
            key += n as u64;
            let t = Instant::now();
            match ctx.k.call_raw("PutRecords", body).await {
                Ok(b) => {
                    put_rec.latency(t.elapsed());
                    match crate::client::decode::<PutRecordsOut>(&b) {
                        Ok(out) => {
                            let failed = out.failed_record_count.unwrap_or(0);
                            st.produced.fetch_add(
                                (out.records.len() as u64).saturating_sub(failed),
                                Ordering::AcqRel,
                            );
                            if failed > 0 {
                                put_rec.error("record:failed", failed);
                            }
                        }
                        Err(e) => put_rec.call_error(&e),
                    }
                }
                Err(e) => put_rec.call_error(&e),
            }
        }
    }
    st.stop.store(true, Ordering::Release);
    let _ = consumer.await;
    let _ = sampler.await;
    let elapsed = started.elapsed();
    let consumed = st.consumed.load(Ordering::Acquire);
    let mut r = Report::new("burst", &a.common.target_name, a.common.http2, a.params());
    r.loadgen_cpu = cpu.json();
    r.set_volume(consumed, consumed * a.record_size as u64, elapsed);
    r.take(&rec);
    for (k, v) in put_rec.errors() {
        *r.errors.entry(format!("put:{k}")).or_default() += v;
    }
    let end = st.burst_end_ms.load(Ordering::Acquire);
    let since_end = |ms: u64| {
        if ms == 0 || end == 0 {
            Value::Null
        } else {
            json!(round3(ms.saturating_sub(end) as f64 / 1000.0))
        }
    };
    r.extra(
        "recovery_s",
        since_end(st.behind_zero_ms.load(Ordering::Acquire)),
    );
    r.extra(
        "caught_up_s",
        since_end(st.caught_up_ms.load(Ordering::Acquire)),
    );
    r.extra("peak_millis_behind", st.peak_behind.load(Ordering::Acquire));
    r.extra("backlog_at_burst_end", json!(backlog_at_burst_end));
    r.extra("produced", st.produced.load(Ordering::Acquire));
    r.extra("consumer_limit", limit);
    r.extra(
        "series_columns",
        json!(["t_s", "millis_behind_latest", "backlog_records"]),
    );
    r.extra("series", Value::Array(series.lock().clone()));
    delete_stream(&ctx.k, &stream).await;
    if st.produced.load(Ordering::Acquire) == 0 {
        r.status = Status::Failed;
        r.reason = Some(format!(
            "no put acknowledged: {}",
            put_rec.last_error().unwrap_or_default()
        ));
    } else if st.behind_zero_ms.load(Ordering::Acquire) == 0 {
        r.extra(
            "note",
            "MillisBehindLatest never returned to 0 within the bound",
        );
    }
    Ok(r)
}
