//! The Kinesis operations the workloads use, on top of [`crate::client`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::client::{stream_body, CallError, Kinesis};
use crate::report::Recorder;

/// Creates a stream with `shards` shards (retrying while the endpoint says its limit is hit)
/// and waits until it is ACTIVE.
pub async fn create_stream(
    k: &Kinesis,
    name: &str,
    shards: u32,
    wait: Duration,
) -> Result<(), CallError> {
    let mut backoff = Duration::from_millis(100);
    let started = Instant::now();
    loop {
        match k
            .call::<IgnoredAny>(
                "CreateStream",
                &stream_body(name, json!({ "ShardCount": shards })),
            )
            .await
        {
            Ok(_) => break,
            Err(CallError::Api { kind, .. }) if kind == "ResourceInUseException" => break,
            Err(e) if e.is_throttle() && started.elapsed() < wait => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
    wait_active(k, name, wait).await
}

/// Polls until the stream is ACTIVE.
pub async fn wait_active(k: &Kinesis, name: &str, wait: Duration) -> Result<(), CallError> {
    let deadline = Instant::now() + wait;
    let mut use_summary = true;
    loop {
        let status = if use_summary {
            match k
                .call::<Value>("DescribeStreamSummary", &stream_body(name, json!({})))
                .await
            {
                Ok(v) => v["StreamDescriptionSummary"]["StreamStatus"]
                    .as_str()
                    .map(str::to_owned),
                Err(e) if e.is_unsupported() => {
                    use_summary = false;
                    continue;
                }
                Err(e) if e.is_throttle() => None,
                Err(CallError::Api { kind, .. }) if kind == "ResourceNotFoundException" => None,
                Err(e) => return Err(e),
            }
        } else {
            match k
                .call::<Value>("DescribeStream", &stream_body(name, json!({ "Limit": 1 })))
                .await
            {
                Ok(v) => v["StreamDescription"]["StreamStatus"]
                    .as_str()
                    .map(str::to_owned),
                Err(e) if e.is_throttle() => None,
                Err(CallError::Api { kind, .. }) if kind == "ResourceNotFoundException" => None,
                Err(e) => return Err(e),
            }
        };
        if status.as_deref() == Some("ACTIVE") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CallError::Api {
                status: 0,
                kind: "StreamNotActive".into(),
                message: format!("{name} still {status:?} after {wait:?}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Registers an enhanced fan-out consumer of `stream` and waits until it is ACTIVE; its ARN.
pub async fn register_consumer(
    k: &Kinesis,
    stream: &str,
    name: &str,
    wait: Duration,
) -> anyhow::Result<String> {
    let summary: Value = k
        .call("DescribeStreamSummary", &json!({ "StreamName": stream }))
        .await?;
    let stream_arn = summary["StreamDescriptionSummary"]["StreamARN"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let reg: Value = k
        .call(
            "RegisterStreamConsumer",
            &json!({ "StreamARN": stream_arn, "ConsumerName": name }),
        )
        .await?;
    let consumer_arn = reg["Consumer"]["ConsumerARN"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let deadline = Instant::now() + wait;
    loop {
        let d: Value = k
            .call(
                "DescribeStreamConsumer",
                &json!({ "ConsumerARN": consumer_arn }),
            )
            .await?;
        if d["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE" {
            return Ok(consumer_arn);
        }
        anyhow::ensure!(Instant::now() < deadline, "consumer did not become ACTIVE");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deletes a stream (best effort: errors are ignored, the run is over).
pub async fn delete_stream(k: &Kinesis, name: &str) {
    let _ = k
        .call::<IgnoredAny>(
            "DeleteStream",
            &stream_body(name, json!({ "EnforceConsumerDeletion": true })),
        )
        .await;
}

/// The ids of a stream's shards: ListShards, or DescribeStream where ListShards is missing.
pub async fn shard_ids(k: &Kinesis, name: &str) -> Result<Vec<String>, CallError> {
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let body = match &token {
            Some(t) => json!({ "NextToken": t }),
            None => stream_body(name, json!({})),
        };
        match k.call::<Value>("ListShards", &body).await {
            Ok(v) => {
                for s in v["Shards"].as_array().into_iter().flatten() {
                    if let Some(id) = s["ShardId"].as_str() {
                        ids.push(id.to_owned());
                    }
                }
                token = v["NextToken"].as_str().map(str::to_owned);
                if token.is_none() {
                    return Ok(ids);
                }
            }
            Err(e) if e.is_unsupported() => break,
            Err(e) => return Err(e),
        }
    }
    ids.clear();
    let mut start: Option<String> = None;
    loop {
        let mut extra = json!({});
        if let Some(s) = &start {
            extra = json!({ "ExclusiveStartShardId": s });
        }
        let v: Value = k.call("DescribeStream", &stream_body(name, extra)).await?;
        let d = &v["StreamDescription"];
        for s in d["Shards"].as_array().into_iter().flatten() {
            if let Some(id) = s["ShardId"].as_str() {
                ids.push(id.to_owned());
            }
        }
        if d["HasMoreShards"].as_bool() != Some(true) || ids.is_empty() {
            return Ok(ids);
        }
        start = ids.last().cloned();
    }
}

/// A shard iterator of `kind` (`TRIM_HORIZON`, `LATEST`, …).
pub async fn shard_iterator(
    k: &Kinesis,
    stream: &str,
    shard: &str,
    kind: &str,
) -> Result<String, CallError> {
    let v: Value = k
        .call(
            "GetShardIterator",
            &stream_body(
                stream,
                json!({ "ShardId": shard, "ShardIteratorType": kind }),
            ),
        )
        .await?;
    v["ShardIterator"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| CallError::Decode("GetShardIterator answered without ShardIterator".into()))
}

/// A GetRecords answer with records decoded as `R` (use [`IgnoredAny`] to only count them).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRecordsOut<R> {
    /// The records.
    pub records: Vec<R>,
    /// Where to read next; absent at the end of a closed shard.
    pub next_shard_iterator: Option<String>,
    /// How far behind the tip the read ended, ms.
    pub millis_behind_latest: Option<i64>,
}

/// A received record with its data.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecordWithData {
    /// Base64 of the record's data.
    pub data: String,
}

impl RecordWithData {
    /// The decoded data (empty if it is not base64).
    pub fn bytes(&self) -> Vec<u8> {
        STANDARD.decode(&self.data).unwrap_or_default()
    }
}

/// One GetRecords call.
pub async fn get_records<R: serde::de::DeserializeOwned>(
    k: &Kinesis,
    iterator: &str,
    limit: u32,
) -> Result<GetRecordsOut<R>, CallError> {
    let body = json!({ "ShardIterator": iterator, "Limit": limit });
    k.call("GetRecords", &body).await
}

#[derive(Serialize)]
struct PutEntry<'a> {
    #[serde(rename = "Data")]
    data: &'a str,
    #[serde(rename = "PartitionKey")]
    partition_key: String,
}

#[derive(Serialize)]
struct PutRecordsBody<'a> {
    #[serde(rename = "StreamName")]
    stream_name: &'a str,
    #[serde(rename = "Records")]
    records: Vec<PutEntry<'a>>,
}

/// A PutRecords answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsOut {
    /// Records that failed.
    pub failed_record_count: Option<u64>,
    /// One entry per record, in request order.
    pub records: Vec<PutRecordsOutEntry>,
}

/// One record's outcome in a PutRecords answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsOutEntry {
    /// The shard it landed on.
    pub shard_id: Option<String>,
    /// Why it failed.
    pub error_code: Option<String>,
}

/// Builds a PutRecords body of records whose data is `data_b64` (base64 text) under
/// partition keys `<prefix>-<n>` for `n` in `first..first + count`.
pub fn put_records_body(
    stream: &str,
    data_b64: &[&str],
    key_prefix: &str,
    first: u64,
    count: usize,
) -> Bytes {
    let records = (0..count)
        .map(|i| PutEntry {
            data: data_b64[i % data_b64.len()],
            partition_key: format!("{key_prefix}-{:x}", first + i as u64),
        })
        .collect();
    let body = PutRecordsBody {
        stream_name: stream,
        records,
    };
    Bytes::from(serde_json::to_vec(&body).expect("a PutRecords body serializes"))
}

/// Totals of a PutRecords load.
#[derive(Debug, Default)]
pub struct PutTotals {
    /// Records acknowledged.
    pub records: AtomicU64,
    /// Their data bytes.
    pub bytes: AtomicU64,
    /// Records the endpoint refused in a successful answer.
    pub failed_records: AtomicU64,
    /// Calls answered with an error or not answered.
    pub failed_calls: AtomicU64,
    /// Acknowledged records per shard id.
    pub per_shard: parking_lot::Mutex<HashMap<String, u64>>,
}

/// How to drive a PutRecords load.
#[derive(Debug, Clone)]
pub struct PutLoad {
    /// Stream to write to.
    pub stream: String,
    /// Bytes of data per record.
    pub record_size: usize,
    /// Records per PutRecords call.
    pub batch: usize,
    /// Calls in flight.
    pub concurrency: usize,
    /// Stop after this many records have been sent.
    pub max_records: u64,
    /// Stop at this instant.
    pub deadline: Instant,
    /// Count per-shard acknowledgements (needed to know what to read back).
    pub track_shards: bool,
}

/// Random bytes of `size`, base64-encoded, `n` different payloads.
pub fn random_payloads(size: usize, n: usize) -> Vec<String> {
    use rand::RngCore;
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| {
            let mut b = vec![0u8; size];
            rng.fill_bytes(&mut b);
            STANDARD.encode(&b)
        })
        .collect()
}

/// Sends PutRecords calls from `concurrency` tasks until the record budget or the deadline
/// is used up. Latency of every call and every error go to `rec`.
pub async fn drive_put_records(k: &Kinesis, load: &PutLoad, rec: &Recorder) -> Arc<PutTotals> {
    let totals = Arc::new(PutTotals::default());
    let sent = Arc::new(AtomicU64::new(0));
    let payloads = Arc::new(random_payloads(load.record_size, 8));
    let mut tasks = Vec::new();
    for worker in 0..load.concurrency {
        let k = k.clone();
        let load = load.clone();
        let rec = rec.clone();
        let totals = totals.clone();
        let sent = sent.clone();
        let payloads = payloads.clone();
        tasks.push(tokio::spawn(async move {
            let data: Vec<&str> = payloads.iter().map(String::as_str).collect();
            let prefix = format!("w{worker}-{}", std::process::id());
            let mut consecutive_errors = 0u32;
            loop {
                if Instant::now() >= load.deadline {
                    break;
                }
                let first = sent.fetch_add(load.batch as u64, Ordering::Relaxed);
                if first >= load.max_records {
                    break;
                }
                let count = (load.max_records - first).min(load.batch as u64) as usize;
                let body = put_records_body(&load.stream, &data, &prefix, first, count);
                let started = Instant::now();
                let result = k.call_raw("PutRecords", body).await;
                rec.latency(started.elapsed());
                let out = result.and_then(|b| crate::client::decode::<PutRecordsOut>(&b));
                match out {
                    Ok(out) => {
                        consecutive_errors = 0;
                        let failed = out.failed_record_count.unwrap_or(0);
                        let ok = out.records.len() as u64 - failed.min(out.records.len() as u64);
                        totals.records.fetch_add(ok, Ordering::Relaxed);
                        totals
                            .bytes
                            .fetch_add(ok * load.record_size as u64, Ordering::Relaxed);
                        if failed > 0 {
                            totals.failed_records.fetch_add(failed, Ordering::Relaxed);
                            let mut kinds: HashMap<&str, u64> = HashMap::new();
                            for r in &out.records {
                                if let Some(c) = r.error_code.as_deref() {
                                    *kinds.entry(c).or_default() += 1;
                                }
                            }
                            for (c, n) in kinds {
                                rec.error(&format!("record:{c}"), n);
                            }
                        }
                        if load.track_shards {
                            let mut per = totals.per_shard.lock();
                            for r in &out.records {
                                if let (Some(s), None) = (&r.shard_id, &r.error_code) {
                                    *per.entry(s.clone()).or_default() += 1;
                                }
                            }
                        }
                        if failed > 0 {
                            // Throttled records: back off a little as a real producer would.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    Err(e) => {
                        totals.failed_calls.fetch_add(1, Ordering::Relaxed);
                        rec.call_error(&e);
                        consecutive_errors += 1;
                        if consecutive_errors >= 50 || e.is_unsupported() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(if e.is_throttle() {
                            100
                        } else {
                            20
                        }))
                        .await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    totals
}

/// Shortens an error message for the report.
pub fn truncate(s: &str) -> String {
    let mut out: String = s.chars().take(160).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}
