//! `soak`: everything at once for a few minutes, against one broker.
//!
//! - producers write stamped records at a fixed total rate with PutRecords, remembering
//!   every acknowledged record;
//! - a polling consumer reads every shard (children too, as resharding creates them) from
//!   TRIM_HORIZON to its end;
//! - an enhanced fan-out consumer does the same with SubscribeToShard, resubscribing from
//!   the continuation sequence number;
//! - the stream is resharded every `--reshard-every-secs` (doubling, then halving back);
//! - hostile clients hold `--hostile` connections open the whole time: HTTP/1.1 requests
//!   that send their headers and then nothing, bodies trickled a byte a second, idle
//!   connections, and an HTTP/2 connection of stalled streams; each is reopened as soon
//!   as the server closes it.
//!
//! The run passes when both consumers saw every acknowledged record. It reports the
//! well-behaved producers' PutRecords latency, the broker's resident memory over time
//! (`--broker-pid`), and what the hostile clients were answered.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::BytesMut;
use clap::Args;
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::subscribe::next_frame;
use super::{read_stamp, secs, stamped};
use crate::kinesis::{
    create_stream, delete_stream, get_records, register_consumer, shard_ids, shard_iterator,
    GetRecordsOut, PutRecordsOut, RecordWithData,
};
use crate::report::{CpuClock, Recorder, Report, Status};
use crate::{Common, Ctx};

/// Options of `soak`.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Shards the stream starts with (resharding doubles and halves it).
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    /// Producer tasks.
    #[arg(long, default_value_t = 4)]
    pub producers: usize,
    /// Records per PutRecords call.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Records per second, all producers together.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Bytes of data per record (at least 16).
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Seconds between reshards.
    #[arg(long, default_value_t = 60.0)]
    pub reshard_every_secs: f64,
    /// Hostile connections held open.
    #[arg(long, default_value_t = 200)]
    pub hostile: usize,
    /// The broker's PID, to sample its resident memory.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Longest the consumers may take to catch up after production stops, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub drain_secs: f64,
}

impl SoakArgs {
    /// How long production runs, seconds.
    pub fn duration(&self) -> f64 {
        self.common.duration_secs.unwrap_or(180.0)
    }

    /// The parameters as reported.
    pub fn params(&self) -> Value {
        json!({
            "shards": self.shards,
            "producers": self.producers,
            "batch": self.batch,
            "rate": self.rate,
            "record_size": self.record_size,
            "reshard_every_secs": self.reshard_every_secs,
            "hostile": self.hostile,
            "duration_secs": self.duration(),
            "drain_secs": self.drain_secs,
        })
    }
}

/// What the run tracks across its tasks.
#[derive(Default)]
struct Shared {
    acked: Mutex<HashSet<u64>>,
    polled: Mutex<HashSet<u64>>,
    pushed: Mutex<HashSet<u64>>,
    /// Producers are done.
    produced: AtomicBool,
    /// Everything stops.
    stop: AtomicBool,
    reshards: AtomicU64,
    subscriptions: AtomicU64,
    hostile_opened: AtomicU64,
    hostile_closed: AtomicU64,
    hostile_408: AtomicU64,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Whether a consumer has seen every acknowledged record (once production ended).
    fn caught_up(&self, seen: &Mutex<HashSet<u64>>) -> bool {
        self.produced.load(Ordering::Acquire) && {
            let acked = self.acked.lock();
            let seen = seen.lock();
            acked.iter().all(|id| seen.contains(id))
        }
    }
}

/// Ids of stamped records in a batch of base64 data.
fn ids<'a>(data: impl Iterator<Item = &'a str>) -> Vec<u64> {
    data.filter_map(|d| STANDARD.decode(d).ok())
        .filter_map(|d| read_stamp(&d).map(|(id, _)| id))
        .collect()
}

async fn produce(ctx: Ctx, stream: String, a: SoakArgs, shared: Arc<Shared>, rec: Recorder) {
    let next = Arc::new(AtomicU64::new(0));
    let interval = secs(a.batch as f64 * a.producers as f64 / a.rate);
    let until = Instant::now() + secs(a.duration());
    let mut tasks = Vec::new();
    for p in 0..a.producers {
        let (ctx, stream, shared, rec, next) = (
            ctx.clone(),
            stream.clone(),
            shared.clone(),
            rec.clone(),
            next.clone(),
        );
        let (batch, size) = (a.batch, a.record_size);
        tasks.push(tokio::spawn(async move {
            let mut due = Instant::now() + interval.mul_f64(p as f64 / a.producers as f64);
            while due < until && !shared.stopped() {
                tokio::time::sleep_until(due).await;
                due += interval;
                let first = next.fetch_add(batch as u64, Ordering::Relaxed);
                let records: Vec<Value> = (0..batch as u64)
                    .map(|i| {
                        json!({
                            "Data": STANDARD.encode(stamped(first + i, size)),
                            "PartitionKey": format!("k{}", (first + i) % 997),
                        })
                    })
                    .collect();
                let body = json!({ "StreamName": stream, "Records": records });
                let t = Instant::now();
                match ctx.k.call::<PutRecordsOut>("PutRecords", &body).await {
                    Ok(out) => {
                        rec.latency(t.elapsed());
                        let mut acked = shared.acked.lock();
                        for (i, r) in out.records.iter().enumerate() {
                            match &r.error_code {
                                None => {
                                    acked.insert(first + i as u64);
                                }
                                Some(code) => rec.error(code, 1),
                            }
                        }
                    }
                    Err(e) => rec.call_error(&e),
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    shared.produced.store(true, Ordering::Release);
}

async fn poll_shard(ctx: Ctx, stream: String, shard: String, shared: Arc<Shared>, rec: Recorder) {
    let mut it = loop {
        match shard_iterator(&ctx.k, &stream, &shard, "TRIM_HORIZON").await {
            Ok(i) => break i,
            Err(e) => {
                rec.call_error(&e);
                if shared.stopped() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    while !shared.stopped() {
        match get_records::<RecordWithData>(&ctx.k, &it, 10_000).await {
            Ok(GetRecordsOut {
                records,
                next_shard_iterator,
                ..
            }) => {
                let got = ids(records.iter().map(|r| r.data.as_str()));
                let empty = got.is_empty();
                shared.polled.lock().extend(got);
                match next_shard_iterator {
                    Some(n) => it = n,
                    None => return,
                }
                if empty {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Err(e) => {
                rec.call_error(&e);
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let crate::client::CallError::Api { kind, .. } = &e {
                    if kind == "ExpiredIteratorException" {
                        return;
                    }
                }
            }
        }
    }
}

async fn subscribe_shard(ctx: Ctx, arn: String, shard: String, shared: Arc<Shared>, rec: Recorder) {
    let mut position = json!({ "Type": "TRIM_HORIZON" });
    while !shared.stopped() {
        let body = json!({ "ConsumerARN": arn, "ShardId": shard, "StartingPosition": position });
        let mut resp = match ctx.k.call_stream("SubscribeToShard", &body).await {
            Ok(b) => b,
            Err(e) => {
                rec.call_error(&e);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        shared.subscriptions.fetch_add(1, Ordering::Relaxed);
        let mut buf = BytesMut::new();
        loop {
            if shared.stopped() {
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
            while let Ok(Some(frame)) = next_frame(&mut buf) {
                if frame.exception {
                    rec.error(&format!("exception:{}", frame.kind), 1);
                    continue;
                }
                if frame.kind != "SubscribeToShardEvent" {
                    continue;
                }
                let Ok(event) = serde_json::from_slice::<Value>(&frame.payload) else {
                    continue;
                };
                let got = ids(event["Records"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["Data"].as_str()));
                shared.pushed.lock().extend(got);
                match event["ContinuationSequenceNumber"]
                    .as_str()
                    .filter(|c| !c.is_empty())
                {
                    Some(c) => {
                        position = json!({ "Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": c })
                    }
                    // The end of a closed shard: its children are read by their own tasks.
                    None => return,
                }
            }
        }
    }
}

/// Starts readers for shards as they appear, until stopped.
async fn follow_shards(
    ctx: Ctx,
    stream: String,
    consumer_arn: String,
    shared: Arc<Shared>,
    rec: Recorder,
) {
    let mut known = HashSet::new();
    let mut tasks = Vec::new();
    while !shared.stopped() {
        match shard_ids(&ctx.k, &stream).await {
            Ok(all) => {
                for shard in all {
                    if known.insert(shard.clone()) {
                        let (c, s, sh, r) =
                            (ctx.clone(), stream.clone(), shared.clone(), rec.clone());
                        tasks.push(tokio::spawn(poll_shard(c, s, shard.clone(), sh, r)));
                        let (c, a, sh, r) = (
                            ctx.clone(),
                            consumer_arn.clone(),
                            shared.clone(),
                            rec.clone(),
                        );
                        tasks.push(tokio::spawn(subscribe_shard(c, a, shard, sh, r)));
                    }
                }
            }
            Err(e) => rec.call_error(&e),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn reshard(ctx: Ctx, stream: String, a: SoakArgs, shared: Arc<Shared>, rec: Recorder) {
    let mut target = a.shards * 2;
    let every = secs(a.reshard_every_secs);
    let mut next = Instant::now() + every;
    while !shared.produced.load(Ordering::Acquire) && !shared.stopped() {
        if Instant::now() < next {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        next += every;
        let body = json!({
            "StreamName": stream, "TargetShardCount": target, "ScalingType": "UNIFORM_SCALING"
        });
        match ctx.k.call::<Value>("UpdateShardCount", &body).await {
            Ok(_) => {
                shared.reshards.fetch_add(1, Ordering::Relaxed);
                target = if target == a.shards {
                    a.shards * 2
                } else {
                    a.shards
                };
            }
            Err(e) => rec.call_error(&e),
        }
    }
}

#[derive(Clone, Copy)]
enum Hostility {
    /// A PutRecords head promising 16 MiB, then nothing.
    StalledHead,
    /// A PutRecords head, then a body byte every second.
    Trickle,
    /// Connected, nothing sent.
    Idle,
}

/// One hostile HTTP/1.1 connection, reopened whenever the server closes it.
async fn hostile_h1(addr: SocketAddr, kind: Hostility, shared: Arc<Shared>) {
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.1\r\n\
         X-Amz-Target: Kinesis_20131202.PutRecords\r\nContent-Length: 16777216\r\n\r\n"
    );
    while !shared.stopped() {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        shared.hostile_opened.fetch_add(1, Ordering::Relaxed);
        if !matches!(kind, Hostility::Idle) && s.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            if shared.stopped() {
                return;
            }
            tokio::select! {
                n = s.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                },
                _ = tick.tick() => {
                    if matches!(kind, Hostility::Trickle) && s.write_all(b" ").await.is_err() {
                        break;
                    }
                }
            }
        }
        shared.hostile_closed.fetch_add(1, Ordering::Relaxed);
        if answer.starts_with(b"HTTP/1.1 408") {
            shared.hostile_408.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One HTTP/2 connection that keeps `streams` requests open without their bodies.
async fn hostile_h2(addr: SocketAddr, streams: usize, shared: Arc<Shared>) {
    while !shared.stopped() {
        let Ok(tcp) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        shared.hostile_opened.fetch_add(1, Ordering::Relaxed);
        let Ok((client, conn)) = h2::client::handshake(tcp).await else {
            continue;
        };
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut pending = Vec::new();
        let Ok(mut client) = client.ready().await else {
            continue;
        };
        for _ in 0..streams {
            let req = http::Request::post(format!("http://{addr}/"))
                .header("content-type", "application/x-amz-json-1.1")
                .header("x-amz-target", "Kinesis_20131202.PutRecords")
                .header("content-length", "16777216")
                .body(())
                .expect("request");
            match client.send_request(req, false) {
                Ok((resp, send)) => pending.push((resp, send)),
                Err(_) => break,
            }
            match client.ready().await {
                Ok(c) => client = c,
                Err(_) => break,
            }
        }
        for (resp, _send) in pending {
            tokio::select! {
                r = resp => {
                    if r.is_ok_and(|r| r.status() == 408) {
                        shared.hostile_408.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ = async { while !shared.stopped() { tokio::time::sleep(Duration::from_millis(200)).await } } => {}
            }
        }
        driver.abort();
        shared.hostile_closed.fetch_add(1, Ordering::Relaxed);
    }
}

fn endpoint_addr(endpoint: &str) -> anyhow::Result<SocketAddr> {
    let hostport = endpoint.trim_start_matches("http://").trim_end_matches('/');
    Ok(hostport.parse()?)
}

/// Resident memory of `pid`, MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}

/// Runs `soak`.
pub async fn run(ctx: &Ctx, a: &SoakArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        a.rate > 0.0 && a.producers > 0 && a.batch > 0,
        "rate, producers and batch must be positive"
    );
    let addr = endpoint_addr(&ctx.common.endpoint)?;
    let stream = ctx.stream_name("soak");
    create_stream(&ctx.k, &stream, a.shards, ctx.create_wait()).await?;
    let consumer_arn = register_consumer(&ctx.k, &stream, "soak", ctx.create_wait()).await?;
    let shared = Arc::new(Shared::default());
    let (put_rec, consumer_rec, control_rec) = (
        Recorder::default(),
        Recorder::default(),
        Recorder::default(),
    );
    let cpu = CpuClock::start();
    let started = Instant::now();

    let mut hostile = Vec::new();
    for i in 0..a.hostile {
        let sh = shared.clone();
        hostile.push(match i % 4 {
            0 => tokio::spawn(hostile_h1(addr, Hostility::StalledHead, sh)),
            1 => tokio::spawn(hostile_h1(addr, Hostility::Trickle, sh)),
            2 => tokio::spawn(hostile_h1(addr, Hostility::Idle, sh)),
            _ => tokio::spawn(hostile_h2(addr, 20, sh)),
        });
    }
    let readers = tokio::spawn(follow_shards(
        ctx.clone(),
        stream.clone(),
        consumer_arn.clone(),
        shared.clone(),
        consumer_rec.clone(),
    ));
    let resharder = tokio::spawn(reshard(
        ctx.clone(),
        stream.clone(),
        a.clone(),
        shared.clone(),
        control_rec.clone(),
    ));
    let producer = tokio::spawn(produce(
        ctx.clone(),
        stream.clone(),
        a.clone(),
        shared.clone(),
        put_rec.clone(),
    ));

    // Sample the broker's memory every 5 s until the consumers caught up or time is up.
    let mut rss = Vec::new();
    let drain_until = started + secs(a.duration() + a.drain_secs);
    loop {
        if let Some(pid) = a.broker_pid {
            if let Some(m) = rss_mib(pid) {
                rss.push(json!([started.elapsed().as_secs(), m]));
            }
        }
        let done = shared.caught_up(&shared.polled) && shared.caught_up(&shared.pushed);
        if done || Instant::now() >= drain_until {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let elapsed = started.elapsed();
    shared.stop.store(true, Ordering::Release);
    let _ = producer.await;
    let _ = resharder.await;
    let _ = readers.await;
    for h in hostile {
        h.abort();
    }

    let acked = shared.acked.lock().clone();
    let lost = |seen: &Mutex<HashSet<u64>>| {
        let seen = seen.lock();
        acked.iter().filter(|id| !seen.contains(id)).count() as u64
    };
    let (lost_polling, lost_fanout) = (lost(&shared.polled), lost(&shared.pushed));
    let mut r = Report::new("soak", &a.common.target_name, a.common.http2, a.params());
    r.loadgen_cpu = cpu.json();
    r.set_volume(
        acked.len() as u64,
        (acked.len() * a.record_size.max(16)) as u64,
        elapsed,
    );
    r.take(&put_rec);
    for (k, v) in consumer_rec.errors() {
        *r.errors.entry(format!("consumer:{k}")).or_default() += v;
    }
    for (k, v) in control_rec.errors() {
        *r.errors.entry(format!("reshard:{k}")).or_default() += v;
    }
    r.extra(
        "latency_basis",
        "well-behaved PutRecords calls, send -> answer",
    );
    r.extra("acked", acked.len() as u64);
    r.extra("lost_polling", lost_polling);
    r.extra("lost_fanout", lost_fanout);
    r.extra("reshards", shared.reshards.load(Ordering::Relaxed));
    r.extra(
        "subscriptions",
        shared.subscriptions.load(Ordering::Relaxed),
    );
    r.extra(
        "hostile",
        json!({
            "connections_opened": shared.hostile_opened.load(Ordering::Relaxed),
            "closed_by_server": shared.hostile_closed.load(Ordering::Relaxed),
            "answered_408": shared.hostile_408.load(Ordering::Relaxed),
        }),
    );
    if !rss.is_empty() {
        r.extra("broker_rss_mib", Value::Array(rss));
    }
    let _ = ctx
        .k
        .call::<Value>(
            "DeregisterStreamConsumer",
            &json!({ "ConsumerARN": consumer_arn }),
        )
        .await;
    delete_stream(&ctx.k, &stream).await;
    if acked.is_empty() {
        r.status = Status::Failed;
        r.reason = Some("nothing was acknowledged".into());
    } else if lost_polling > 0 || lost_fanout > 0 {
        r.status = Status::Failed;
        r.reason = Some(format!(
            "acknowledged records missing: {lost_polling} by polling, {lost_fanout} by fan-out"
        ));
    }
    Ok(r)
}
