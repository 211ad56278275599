//! `subscribe`: how long after a put is acknowledged a SubscribeToShard consumer holds the
//! record (enhanced fan-out), from the put's acknowledgement to the event in hand.
//!
//! Registers a consumer on a one-shard stream, subscribes from LATEST (resubscribing from
//! the continuation sequence number when a subscription ends), and runs a paced PutRecord
//! producer whose records carry their id and send time. The event stream is read frame by
//! frame as it arrives (`application/vnd.amazon.eventstream`), so the delay includes no
//! client-side buffering.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};
use clap::Args;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{read_stamp, secs, stamped, unix_us};
use crate::kinesis::{create_stream, delete_stream, register_consumer, shard_ids};
use crate::report::{new_histogram, percentiles, CpuClock, Recorder, Report, Status};
use crate::Ctx;

/// Options of `subscribe`.
#[derive(Debug, Clone, Args)]
pub struct SubscribeArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: crate::Common,
    /// Records per second from the producer.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Bytes of data per record (at least 16: id and send time).
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// How long the consumer keeps reading after the producer stops, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub drain_secs: f64,
}

impl SubscribeArgs {
    /// Producer phase bound, seconds.
    pub fn duration(&self) -> f64 {
        self.common.duration_secs.unwrap_or(20.0)
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
            "max_records": self.records(),
            "duration_secs": self.duration(),
        })
    }
}

struct Shared {
    acks: Mutex<HashMap<u64, Instant>>,
    from_ack: Mutex<Histogram<u64>>,
    from_send: Mutex<Histogram<u64>>,
    seen: Mutex<HashSet<u64>>,
    received: AtomicU64,
    before_ack: AtomicU64,
    subscriptions: AtomicU64,
    stop: AtomicBool,
}

/// One decoded event-stream frame: its `:event-type` (or `:exception-type`) and payload.
pub(crate) struct Frame {
    pub(crate) kind: String,
    pub(crate) exception: bool,
    pub(crate) payload: Bytes,
}

/// Takes one complete frame off the front of `buf`, if there is one.
pub(crate) fn next_frame(buf: &mut BytesMut) -> anyhow::Result<Option<Frame>> {
    if buf.len() < 12 {
        return Ok(None);
    }
    let total = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    anyhow::ensure!(
        (16..=32 * 1024 * 1024).contains(&total),
        "bad event-stream frame length {total}"
    );
    if buf.len() < total {
        return Ok(None);
    }
    let mut frame = buf.split_to(total).freeze();
    let headers_len = u32::from_be_bytes(frame[4..8].try_into().expect("4 bytes")) as usize;
    anyhow::ensure!(
        12 + headers_len + 4 <= total,
        "bad event-stream header length"
    );
    frame.advance(12);
    let mut headers = frame.split_to(headers_len);
    let payload = frame.split_to(total - 16 - headers_len);
    let (mut kind, mut exception) = (String::new(), false);
    while headers.has_remaining() {
        let name_len = headers.get_u8() as usize;
        anyhow::ensure!(headers.remaining() > name_len, "truncated header");
        let name = String::from_utf8_lossy(&headers.split_to(name_len)).into_owned();
        let value = match headers.get_u8() {
            0 | 1 => String::new(),
            2 => {
                headers.advance(1);
                String::new()
            }
            3 => {
                headers.advance(2);
                String::new()
            }
            4 => {
                headers.advance(4);
                String::new()
            }
            5 | 8 => {
                headers.advance(8);
                String::new()
            }
            9 => {
                headers.advance(16);
                String::new()
            }
            6 | 7 => {
                let len = headers.get_u16() as usize;
                anyhow::ensure!(headers.remaining() >= len, "truncated header value");
                String::from_utf8_lossy(&headers.split_to(len)).into_owned()
            }
            t => anyhow::bail!("unknown header type {t}"),
        };
        match name.as_str() {
            ":event-type" => kind = value,
            ":exception-type" | ":error-code" => {
                kind = value;
                exception = true;
            }
            _ => {}
        }
    }
    Ok(Some(Frame {
        kind,
        exception,
        payload,
    }))
}

async fn consume(
    ctx: &Ctx,
    consumer_arn: &str,
    shard: &str,
    shared: &Shared,
    errors: &Recorder,
    hard_stop: Instant,
) {
    let mut position = json!({ "Type": "LATEST" });
    while !shared.stop.load(Ordering::Acquire) && Instant::now() < hard_stop {
        let body =
            json!({ "ConsumerARN": consumer_arn, "ShardId": shard, "StartingPosition": position });
        let mut resp = match ctx.k.call_stream("SubscribeToShard", &body).await {
            Ok(b) => b,
            Err(e) => {
                errors.call_error(&e);
                if e.is_unsupported() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        shared.subscriptions.fetch_add(1, Ordering::Relaxed);
        let mut buf = BytesMut::new();
        loop {
            if shared.stop.load(Ordering::Acquire) || Instant::now() >= hard_stop {
                return;
            }
            let chunk = tokio::select! {
                c = resp.frame() => c,
                _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
            };
            let Some(Ok(chunk)) = chunk else { break };
            let Ok(data) = chunk.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            let now = Instant::now();
            let now_us = unix_us();
            while let Ok(Some(frame)) = next_frame(&mut buf) {
                if frame.exception {
                    errors.error(&format!("exception:{}", frame.kind), 1);
                    continue;
                }
                if frame.kind != "SubscribeToShardEvent" {
                    continue;
                }
                let Ok(event) = serde_json::from_slice::<Value>(&frame.payload) else {
                    continue;
                };
                for r in event["Records"].as_array().into_iter().flatten() {
                    let Some(d) = r["Data"].as_str().and_then(|s| STANDARD.decode(s).ok()) else {
                        continue;
                    };
                    let Some((id, sent_us)) = read_stamp(&d) else {
                        continue;
                    };
                    if !shared.seen.lock().insert(id) {
                        continue;
                    }
                    let from_ack = match shared.acks.lock().get(&id).copied() {
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
                if let Some(c) = event["ContinuationSequenceNumber"]
                    .as_str()
                    .filter(|c| !c.is_empty())
                {
                    position = json!({ "Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": c });
                }
            }
        }
    }
}

/// Runs `subscribe`.
pub async fn run(ctx: &Ctx, a: &SubscribeArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(a.rate > 0.0, "--rate must be positive");
    let stream = ctx.stream_name("sub");
    create_stream(&ctx.k, &stream, 1, ctx.create_wait()).await?;
    let shard = shard_ids(&ctx.k, &stream)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no shard"))?;
    let consumer_arn = register_consumer(&ctx.k, &stream, "bench", ctx.create_wait()).await?;
    let shared = Arc::new(Shared {
        acks: Mutex::new(HashMap::new()),
        from_ack: Mutex::new(new_histogram()),
        from_send: Mutex::new(new_histogram()),
        seen: Mutex::new(HashSet::new()),
        received: AtomicU64::new(0),
        before_ack: AtomicU64::new(0),
        subscriptions: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let rec = Recorder::default();
    let consumer_rec = Recorder::default();
    let cpu = CpuClock::start();
    let started = Instant::now();
    let produce_until = started + secs(a.duration());
    let hard_stop = produce_until + secs(a.drain_secs);
    let consumer = {
        let (ctx, shared, crec, arn, shard) = (
            ctx.clone(),
            shared.clone(),
            consumer_rec.clone(),
            consumer_arn.clone(),
            shard.clone(),
        );
        tokio::spawn(async move { consume(&ctx, &arn, &shard, &shared, &crec, hard_stop).await })
    };
    // Let the subscription open before the first record is due.
    let open_by = Instant::now() + Duration::from_secs(5);
    while shared.subscriptions.load(Ordering::Acquire) == 0 && Instant::now() < open_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pad = a.record_size.max(16);
    let mut produced = 0u64;
    let start_produce = Instant::now();
    for i in 0..a.records() {
        let due = start_produce + secs(i as f64 / a.rate);
        if due >= produce_until {
            break;
        }
        tokio::time::sleep_until(due).await;
        let data = stamped(i, pad);
        let body = serde_json::to_vec(
            &json!({ "StreamName": stream, "Data": STANDARD.encode(&data), "PartitionKey": "p" }),
        )?;
        let t = Instant::now();
        match ctx.k.call_raw("PutRecord", Bytes::from(body)).await {
            Ok(_) => {
                let now = Instant::now();
                rec.latency(now - t);
                shared.acks.lock().insert(i, now);
                produced += 1;
            }
            Err(e) => rec.call_error(&e),
        }
    }
    let drain_until = Instant::now() + secs(a.drain_secs);
    while shared.received.load(Ordering::Acquire) < produced && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shared.stop.store(true, Ordering::Release);
    let _ = consumer.await;
    let received = shared.received.load(Ordering::Acquire);
    let mut r = Report::new(
        "subscribe",
        &a.common.target_name,
        a.common.http2,
        a.params(),
    );
    r.loadgen_cpu = cpu.json();
    r.set_volume(received, received * pad as u64, started.elapsed());
    r.take(&consumer_rec);
    for (k, v) in rec.errors() {
        *r.errors.entry(format!("put:{k}")).or_default() += v;
    }
    r.latency_ms = percentiles(&shared.from_ack.lock());
    r.extra(
        "delay_basis",
        "put acknowledgement -> SubscribeToShard event in hand",
    );
    r.extra("send_to_hand_ms", percentiles(&shared.from_send.lock()));
    r.extra("put_latency_ms", rec.latency_json());
    r.extra("produced", produced);
    r.extra("received", received);
    r.extra("before_ack", shared.before_ack.load(Ordering::Relaxed));
    r.extra(
        "subscriptions",
        shared.subscriptions.load(Ordering::Relaxed),
    );
    let _ = ctx
        .k
        .call::<Value>(
            "DeregisterStreamConsumer",
            &json!({ "ConsumerARN": consumer_arn }),
        )
        .await;
    delete_stream(&ctx.k, &stream).await;
    if received == 0 {
        r.status = Status::Failed;
        r.reason = Some(format!(
            "consumer received nothing: {}",
            consumer_rec.last_error().unwrap_or_default()
        ));
    } else if received < produced {
        r.extra("lost", produced - received);
    }
    Ok(r)
}
