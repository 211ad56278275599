//! Criterion benchmarks of the broker's hot inner functions, each with its throughput:
//! segment encode/decode, log append and read (fsync "never": the pure CPU cost), MD5
//! routing of partition keys, and decoding a 500-record PutRecords body.
//!
//! `cargo bench -p riffle-broker --bench hot` (CI only builds them). The end-to-end numbers
//! are `bench/run.sh`'s; these locate where the broker's CPU goes per record.

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use riffle_broker::api::ops::records::PutRecordsInput;
use riffle_broker::api::wire::decode_json;
use riffle_broker::config::FsyncPolicy;
use riffle_broker::storage::log::LogOptions;
use riffle_broker::storage::segment::{decode_frame, encode_batch, Frame};
use riffle_broker::storage::Log;
use riffle_core::HashKey;

/// Records per batch, as in a full PutRecords.
const BATCH: usize = 500;
/// Bytes of data per record.
const RECORD: usize = 100;

fn records(n: usize, size: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let key = format!("partition-key-{i}").into_bytes();
            let data = (0..size).map(|j| (i * 31 + j) as u8).collect();
            (key, data)
        })
        .collect()
}

fn as_slices(recs: &[(Vec<u8>, Vec<u8>)]) -> impl Iterator<Item = (&[u8], &[u8])> {
    recs.iter().map(|(k, d)| (&k[..], &d[..]))
}

fn log_options() -> LogOptions {
    LogOptions {
        fsync: FsyncPolicy::Never,
        segment_bytes: 128 * 1024 * 1024,
        index_interval_bytes: 32 * 1024,
    }
}

fn segment(c: &mut Criterion) {
    let recs = records(BATCH, RECORD);
    let mut g = c.benchmark_group("segment");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut out = Vec::with_capacity(BATCH * (RECORD + 40));
    g.bench_function("encode_batch 500x100B", |b| {
        b.iter(|| {
            out.clear();
            black_box(encode_batch(
                7,
                1_700_000_000_000,
                as_slices(&recs),
                &mut out,
            ))
        })
    });
    let mut buf = Vec::new();
    encode_batch(7, 1_700_000_000_000, as_slices(&recs), &mut buf);
    let buf = Bytes::from(buf);
    g.bench_function("decode_frame 500x100B", |b| {
        b.iter(|| match decode_frame(black_box(&buf)) {
            Frame::Batch { batch, .. } => black_box(batch.records.len()),
            _ => unreachable!("a valid frame"),
        })
    });
    g.finish();
}

fn storage(c: &mut Criterion) {
    let recs = records(BATCH, RECORD);
    let mut g = c.benchmark_group("storage");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("append 500x100B fsync=never", |b| {
        // A fresh log per sample keeps the disk use bounded by one sample's appends.
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().expect("temp dir");
            let (_log, mut writer) = Log::open(dir.path(), log_options()).expect("open log");
            let start = Instant::now();
            for i in 0..iters {
                black_box(
                    writer
                        .append(1_700_000_000_000 + i as i64, as_slices(&recs))
                        .expect("append"),
                );
            }
            start.elapsed()
        })
    });

    // Reads: 200 batches (100,000 records) appended once, read back 10,000 at a time.
    let dir = tempfile::tempdir().expect("temp dir");
    let (log, mut writer) = Log::open(dir.path(), log_options()).expect("open log");
    for i in 0..200 {
        writer
            .append(1_700_000_000_000 + i, as_slices(&recs))
            .expect("append");
    }
    let end = log.end_position();
    g.throughput(Throughput::Elements(10_000));
    let mut pos = 0u64;
    g.bench_function("read 10000x100B", |b| {
        b.iter(|| {
            let r = log
                .read(pos, 10_000, 10 * 1024 * 1024, i64::MIN)
                .expect("read");
            pos = if r.next_position + 10_000 > end {
                0
            } else {
                r.next_position
            };
            black_box(r.records.len())
        })
    });
    g.finish();
}

fn routing(c: &mut Criterion) {
    let keys: Vec<String> = (0..BATCH).map(|i| format!("user-{i:08}")).collect();
    let mut g = c.benchmark_group("routing");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("md5 hash key x500", |b| {
        b.iter(|| {
            let mut acc = 0u128;
            for k in &keys {
                acc ^= HashKey::from_partition_key(black_box(k)).0;
            }
            black_box(acc)
        })
    });
    g.finish();
}

fn json(c: &mut Criterion) {
    let data = STANDARD.encode(vec![0xabu8; RECORD]);
    let entries: Vec<String> = (0..BATCH)
        .map(|i| format!(r#"{{"Data":"{data}","PartitionKey":"pk-{i}"}}"#))
        .collect();
    let body = format!(
        r#"{{"StreamName":"bench","Records":[{}]}}"#,
        entries.join(",")
    )
    .into_bytes();
    let mut g = c.benchmark_group("json");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("decode PutRecords 500x100B", |b| {
        b.iter(|| {
            let input: PutRecordsInput = decode_json(black_box(&body)).expect("valid body");
            black_box(input)
        })
    });
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("decode PutRecords 500x100B (bytes)", |b| {
        b.iter(|| {
            let input: PutRecordsInput = decode_json(black_box(&body)).expect("valid body");
            black_box(input)
        })
    });
    g.finish();
}

criterion_group!(hot, segment, storage, routing, json);
criterion_main!(hot);
