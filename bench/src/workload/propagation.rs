//! `propagation`: how long after a put is acknowledged a polling consumer holds the record.
//!
//! The producer sends PutRecord at a steady rate; each record's data carries its id and send
//! time. The consumer polls GetRecords on every shard, either sleeping `--poll-interval-ms`
//! after each answer (`interval`, as the KCL does) or on a fixed grid of
//! `--max-calls-per-sec` calls per second per shard (`max-rate`: as fast as Kinesis's
//! 5 calls/s/shard limit allows). The delay counted is from the put's acknowledgement to the
//! record in the consumer's hand; a record that arrives before its acknowledgement counts 0.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{read_stamp, secs, stamped, unix_us};
use crate::kinesis::{
    create_stream, delete_stream, get_records, shard_ids, shard_iterator, RecordWithData,
};
use crate::report::{new_histogram, percentiles, round3, CpuClock, Recorder, Report, Status};
use crate::{Common, Ctx};

/// How the consumer paces its GetRecords calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PollMode {
    /// Sleep the interval after each answer.
    Interval,
    /// Calls on a fixed grid at the per-shard call limit.
    MaxRate,
}

/// Options of `propagation`.
#[derive(Debug, Clone, Args)]
pub struct PropagationArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Records per second from the producer.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Consumer pacing.
    #[arg(long, value_enum, default_value_t = PollMode::Interval)]
    pub poll_mode: PollMode,
    /// Sleep after each GetRecords answer (`interval` mode), ms.
    #[arg(long, default_value_t = 200)]
    pub poll_interval_ms: u64,
    /// GetRecords calls per second per shard (`max-rate` mode).
    #[arg(long, default_value_t = 5.0)]
    pub max_calls_per_sec: f64,
    /// Shards of the stream.
    #[arg(long, default_value_t = 1)]
    pub shards: u32,
    /// Bytes of data per record (at least 16: id and send time).
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// How long the consumer keeps reading after the producer stops, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub drain_secs: f64,
}

impl PropagationArgs {
    /// Producer phase bound, seconds.
    pub fn duration(&self) -> f64 {
        self.common.duration_secs.unwrap_or(20.0)
    }

    fn records(&self) -> u64 {
        self.common
            .records
            .unwrap_or((self.rate * self.duration()) as u64)
    }

    /// The poll interval the consumer keeps, ms.
    fn interval_ms(&self) -> f64 {
        match self.poll_mode {
            PollMode::Interval => self.poll_interval_ms as f64,
            PollMode::MaxRate => 1000.0 / self.max_calls_per_sec,
        }
    }

    /// The parameters as reported.
    pub fn params(&self) -> Value {
        json!({
            "rate": self.rate,
            "poll_mode": match self.poll_mode { PollMode::Interval => "interval", PollMode::MaxRate => "max-rate" },
            "poll_interval_ms": self.interval_ms(),
            "shards": self.shards,
            "record_size": self.record_size,
            "max_records": self.records(),
            "duration_secs": self.duration(),
        })
    }
}

struct Shared {
    acks: Mutex<HashMap<u64, Instant>>,
    from_ack: Mutex<Histogram<u64>>,
    from_send: Mutex<Histogram<u64>>,
    received: AtomicU64,
    before_ack: AtomicU64,
    produced: AtomicU64,
    producer_done: AtomicBool,
    seen: Mutex<std::collections::HashSet<u64>>,
}

/// Runs `propagation`.
pub async fn run(ctx: &Ctx, a: &PropagationArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(a.rate > 0.0, "--rate must be positive");
    anyhow::ensure!(
        a.max_calls_per_sec > 0.0,
        "--max-calls-per-sec must be positive"
    );
    let stream = ctx.stream_name("prop");
    create_stream(&ctx.k, &stream, a.shards, ctx.create_wait()).await?;
    let mut iterators = Vec::new();
    for shard in shard_ids(&ctx.k, &stream).await? {
        iterators.push(shard_iterator(&ctx.k, &stream, &shard, "LATEST").await?);
    }
    let shared = Arc::new(Shared {
        acks: Mutex::new(HashMap::new()),
        from_ack: Mutex::new(new_histogram()),
        from_send: Mutex::new(new_histogram()),
        received: AtomicU64::new(0),
        before_ack: AtomicU64::new(0),
        produced: AtomicU64::new(0),
        producer_done: AtomicBool::new(false),
        seen: Mutex::new(Default::default()),
    });
    let rec = Recorder::default();
    let consumer_rec = Recorder::default();
    let cpu = CpuClock::start();
    let started = Instant::now();
    let produce_until = started + secs(a.duration());
    let hard_stop = produce_until + secs(a.drain_secs);
    let interval = secs(a.interval_ms() / 1000.0);
    let mut consumers = Vec::new();
    for it in iterators {
        let (k, shared, crec, mode) = (
            ctx.k.clone(),
            shared.clone(),
            consumer_rec.clone(),
            a.poll_mode,
        );
        consumers.push(tokio::spawn(async move {
            let mut it = it;
            let mut next_call = Instant::now();
            loop {
                let done = shared.producer_done.load(Ordering::Acquire)
                    && shared.received.load(Ordering::Acquire)
                        >= shared.produced.load(Ordering::Acquire);
                if done || Instant::now() >= hard_stop {
                    break;
                }
                if mode == PollMode::MaxRate {
                    tokio::time::sleep_until(next_call).await;
                    next_call = (next_call + interval).max(Instant::now());
                }
                match get_records::<RecordWithData>(&k, &it, 10_000).await {
                    Ok(out) => {
                        let now = Instant::now();
                        let now_us = unix_us();
                        for r in &out.records {
                            let d = r.bytes();
                            let Some((id, sent_us)) = read_stamp(&d) else {
                                continue;
                            };
                            if !shared.seen.lock().insert(id) {
                                continue;
                            }
                            let ack = shared.acks.lock().get(&id).copied();
                            let from_ack = match ack {
                                Some(t) => now.saturating_duration_since(t),
                                None => {
                                    shared.before_ack.fetch_add(1, Ordering::Relaxed);
                                    Duration::ZERO
                                }
                            };
                            shared
                                .from_ack
                                .lock()
                                .saturating_record((from_ack.as_micros() as u64).max(1));
                            shared
                                .from_send
                                .lock()
                                .saturating_record(now_us.saturating_sub(sent_us).max(1));
                            shared.received.fetch_add(1, Ordering::AcqRel);
                        }
                        match out.next_shard_iterator {
                            Some(n) => it = n,
                            None => break,
                        }
                    }
                    Err(e) => {
                        crec.call_error(&e);
                        if !e.is_throttle() {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                if mode == PollMode::Interval {
                    tokio::time::sleep(interval).await;
                }
            }
        }));
    }
    // The producer: one PutRecord at a time on a fixed schedule.
    let pad = a.record_size.max(16);
    for i in 0..a.records() {
        let due = started + secs(i as f64 / a.rate);
        if due >= produce_until {
            break;
        }
        tokio::time::sleep_until(due).await;
        let data = stamped(i, pad);
        let body = serde_json::to_vec(&json!({
            "StreamName": stream,
            "Data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &data),
            "PartitionKey": format!("p{i}"),
        }))?;
        let t = Instant::now();
        match ctx.k.call_raw("PutRecord", Bytes::from(body)).await {
            Ok(_) => {
                let now = Instant::now();
                rec.latency(now - t);
                shared.acks.lock().insert(i, now);
                shared.produced.fetch_add(1, Ordering::AcqRel);
            }
            Err(e) => {
                rec.call_error(&e);
                if e.is_unsupported() {
                    break;
                }
            }
        }
    }
    shared.producer_done.store(true, Ordering::Release);
    for c in consumers {
        let _ = c.await;
    }
    let elapsed = started.elapsed();
    let received = shared.received.load(Ordering::Acquire);
    let produced = shared.produced.load(Ordering::Acquire);
    let mut r = Report::new(
        "propagation",
        &a.common.target_name,
        a.common.http2,
        a.params(),
    );
    r.loadgen_cpu = cpu.json();
    r.set_volume(received, received * pad as u64, elapsed);
    r.take(&consumer_rec);
    let put_latency = rec.latency_json();
    for (k, v) in rec.errors() {
        *r.errors.entry(format!("put:{k}")).or_default() += v;
    }
    let from_ack = shared.from_ack.lock().clone();
    r.latency_ms = percentiles(&from_ack);
    if !from_ack.is_empty() {
        let p99 = from_ack.value_at_quantile(0.99) as f64 / 1000.0;
        r.extra("added_p99_ms", round3(p99 - a.interval_ms()));
    }
    r.extra("delay_basis", "put acknowledgement -> record in hand");
    r.extra("send_to_hand_ms", percentiles(&shared.from_send.lock()));
    r.extra("put_latency_ms", put_latency);
    r.extra("produced", produced);
    r.extra("received", received);
    r.extra("before_ack", shared.before_ack.load(Ordering::Relaxed));
    delete_stream(&ctx.k, &stream).await;
    if produced == 0 {
        r.status = Status::Failed;
        r.reason = Some(format!(
            "no put acknowledged: {}",
            rec.last_error().unwrap_or_default()
        ));
    } else if received == 0 {
        r.status = Status::Failed;
        r.reason = Some(format!(
            "consumer received nothing: {}",
            consumer_rec.last_error().unwrap_or_default()
        ));
    }
    Ok(r)
}
