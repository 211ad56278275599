//! The data plane: PutRecord, PutRecords, GetShardIterator, GetRecords.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use riffle_core::{HashKey, SequenceNumber, ShardId};
use serde::{Deserialize, Serialize};

use crate::api::error::{throttle_message, ApiError};
use crate::api::validate::{self, Validator};
use crate::api::wire::{epoch_seconds, Blob, List};
use crate::api::{check_stream_ref, stream_ref};
use crate::broker::{Broker, Owner, ShardMap, Stream, StreamStatus};
use crate::config::{ceilings, ShardLimits};
use crate::error::Error;
use crate::iterator::{ShardIterator, ITERATOR_TTL_MS};
use crate::shard::Shard;
use crate::storage::{ReadResult, StoredRecord};

/// The outcome of a queued append.
type Pending = tokio::sync::oneshot::Receiver<std::io::Result<crate::shard::Appended>>;

/// One shard's share of a PutRecords: the shard, the request indexes, the records.
type ShardGroup = (Arc<Shard>, Vec<usize>, Vec<(Bytes, Bytes)>);

/// Largest record data the model allows (the per-stream limit is checked after lookup).
const MAX_DATA_MODEL: usize = 10 * 1024 * 1024;

/// PutRecord input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    data: Option<Blob>,
    partition_key: Option<String>,
    explicit_hash_key: Option<String>,
    sequence_number_for_ordering: Option<String>,
}

/// PutRecord output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordOutput {
    shard_id: String,
    sequence_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_type: Option<&'static str>,
}

/// The limits of the stream a request names (by name, or by the name inside its ARN);
/// known before the stream is looked up, so validation can use them as AWS validates first.
fn request_limits(broker: &Broker, name: Option<&str>, arn: Option<&str>) -> ShardLimits {
    let stream = name
        .map(str::to_owned)
        .or_else(|| {
            arn.and_then(riffle_core::StreamArn::parse)
                .map(|a| a.stream)
        })
        .unwrap_or_default();
    broker.config.limits.for_stream(&stream)
}

/// A stream that accepts writes (ACTIVE or UPDATING).
fn writable(
    broker: &Broker,
    name: Option<&str>,
    arn: Option<&str>,
) -> Result<Arc<Stream>, ApiError> {
    let stream = stream_ref(broker, name, arn)?;
    match stream.status() {
        StreamStatus::Active | StreamStatus::Updating => Ok(stream),
        _ => Err(Error::StreamNotFound {
            stream: stream.name.clone(),
        }
        .into()),
    }
}

fn hash_key(explicit: Option<&str>, partition_key: &str) -> Result<HashKey, ApiError> {
    match explicit {
        Some(ehk) => ehk.parse().map_err(|_| {
            ApiError::invalid_argument(format!(
                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {ehk}"
            ))
        }),
        None => Ok(HashKey::from_partition_key(partition_key)),
    }
}

pub(crate) fn encryption(stream: &Stream) -> Option<&'static str> {
    stream.settings.lock().kms_key_id.as_ref().map(|_| "KMS")
}

fn check_record_size(stream: &Stream, path: &str, data: &[u8]) -> Result<(), ApiError> {
    let max = stream.settings.lock().max_record_kib as usize * 1024;
    let mut v = Validator::new();
    v.blob(path, Some(data), true, max);
    v.finish()
}

/// PutRecord.
pub async fn put_record(
    broker: Arc<Broker>,
    input: PutRecordInput,
) -> Result<PutRecordOutput, ApiError> {
    let limits = request_limits(
        &broker,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    );
    let pk_max = limits
        .partition_key_max_chars
        .or_ceiling(ceilings::PARTITION_KEY_CHARS) as usize;
    let mut v = Validator::new();
    v.string(
        "sequenceNumberForOrdering",
        input.sequence_number_for_ordering.as_deref(),
        false,
        Some((validate::SEQUENCE_PATTERN, SequenceNumber::is_well_formed)),
        0,
        usize::MAX,
    );
    v.string(
        "partitionKey",
        input.partition_key.as_deref(),
        true,
        None,
        1,
        pk_max,
    );
    v.string(
        "explicitHashKey",
        input.explicit_hash_key.as_deref(),
        false,
        Some((validate::HASH_KEY_PATTERN, validate::is_hash_key)),
        0,
        usize::MAX,
    );
    v.blob(
        "data",
        input.data.as_ref().map(|b| &b.0[..]),
        true,
        MAX_DATA_MODEL,
    );
    check_stream_ref(
        &mut v,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    );
    v.finish()?;
    let stream = writable(
        &broker,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    )?;
    let data = input.data.unwrap_or_default().0;
    check_record_size(&stream, "data", &data)?;
    stream.keys.check_sealing().map_err(Error::from)?;
    let pk = input.partition_key.unwrap_or_default();
    let key = hash_key(input.explicit_hash_key.as_deref(), &pk)?;
    // SequenceNumberForOrdering: any well-formed number is accepted, as on AWS. Positions
    // only grow within a shard and children take higher shard indexes, so every new record
    // already sorts after any sequence number issued before it.
    let bytes = data.len() + pk.len();
    let (shard, pending) = {
        let map = stream.shards.read().await;
        let shard = map.route(key).clone();
        if !shard.admit_write(bytes) {
            return Err(Error::Throttled {
                stream: stream.name.clone(),
                shard: shard.id.to_string(),
            }
            .into());
        }
        let pending = shard.append(vec![(Bytes::from(pk), data)]).await;
        (shard, pending)
    };
    let appended = pending
        .await
        .map_err(|_| Error::Storage(std::io::Error::other("writer stopped")))?
        .map_err(Error::Storage)?;
    shard.metrics.incoming_records.inc();
    shard.metrics.incoming_bytes.inc_by(bytes as u64);
    Ok(PutRecordOutput {
        shard_id: shard.id.to_string(),
        sequence_number: shard.sequence_number(appended.base).to_string(),
        encryption_type: encryption(&stream),
    })
}

/// One PutRecords entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsEntry {
    data: Option<Blob>,
    explicit_hash_key: Option<String>,
    partition_key: Option<String>,
}

/// PutRecords input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsInput {
    records: Option<List<PutRecordsEntry>>,
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
}

/// One PutRecords result.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsResultEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
}

/// PutRecords output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsOutput {
    failed_record_count: u32,
    records: Vec<PutRecordsResultEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_type: Option<&'static str>,
}

/// PutRecords.
pub async fn put_records(
    broker: Arc<Broker>,
    input: PutRecordsInput,
) -> Result<PutRecordsOutput, ApiError> {
    let limits = request_limits(
        &broker,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    );
    let pk_max = limits
        .partition_key_max_chars
        .or_ceiling(ceilings::PARTITION_KEY_CHARS) as usize;
    let max_records = limits
        .put_records_max_records
        .or_ceiling(ceilings::PUT_RECORDS_RECORDS) as usize;
    let max_request_bytes = limits
        .put_records_max_bytes
        .or_ceiling(ceilings::PUT_RECORDS_BYTES) as usize;
    let mut v = Validator::new();
    let list = input.records.as_ref();
    let recs = input.records.as_deref();
    v.size(
        "records",
        list.map(List::total),
        || {
            validate::shown(
                '[',
                (0..recs.map_or(0, <[_]>::len)).map(|i| {
                    format!("com.amazonaws.kinesis.v20131202.PutRecordsRequestEntry@{i:x}")
                }),
                list.is_some_and(List::truncated),
                ']',
            )
        },
        true,
        1,
        max_records,
    );
    for (i, r) in recs.unwrap_or_default().iter().enumerate() {
        let p = |f: &str| format!("records.{}.member.{f}", i + 1);
        v.string(
            &p("partitionKey"),
            r.partition_key.as_deref(),
            true,
            None,
            1,
            pk_max,
        );
        v.string(
            &p("explicitHashKey"),
            r.explicit_hash_key.as_deref(),
            false,
            Some((validate::HASH_KEY_PATTERN, validate::is_hash_key)),
            0,
            usize::MAX,
        );
        v.blob(
            &p("data"),
            r.data.as_ref().map(|b| &b.0[..]),
            true,
            MAX_DATA_MODEL,
        );
    }
    check_stream_ref(
        &mut v,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    );
    v.finish()?;
    let stream = writable(
        &broker,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    )?;
    stream.keys.check_sealing().map_err(Error::from)?;
    let records = input.records.unwrap_or_default().into_vec();
    let max_record = stream.settings.lock().max_record_kib as usize * 1024;
    let mut total = 0usize;
    let mut prepared = Vec::with_capacity(records.len());
    for (i, r) in records.into_iter().enumerate() {
        let data = r.data.unwrap_or_default().0;
        if data.len() > max_record {
            check_record_size(&stream, &format!("records.{}.member.data", i + 1), &data)?;
        }
        let pk = r.partition_key.unwrap_or_default();
        let key = hash_key(r.explicit_hash_key.as_deref(), &pk)?;
        total += data.len() + pk.len();
        prepared.push((key, Bytes::from(pk), data));
    }
    if total > max_request_bytes.max(max_record) {
        return Err(ApiError::invalid_argument(format!(
            "Records size exceeds {} MB limit",
            max_request_bytes.max(max_record) / (1024 * 1024)
        )));
    }
    let n = prepared.len();
    let mut results: Vec<PutRecordsResultEntry> = Vec::with_capacity(n);
    // Route, admit and queue under the shard-map read lock, then wait for durability.
    let mut groups: Vec<(Arc<Shard>, Vec<usize>, usize, Pending)> = Vec::new();
    {
        let map = stream.shards.read().await;
        let mut by_shard: HashMap<u32, ShardGroup> = HashMap::new();
        for (i, (key, pk, data)) in prepared.into_iter().enumerate() {
            let shard = map.route(key);
            if shard.admit_write(pk.len() + data.len()) {
                by_shard
                    .entry(shard.id.index())
                    .or_insert_with(|| (shard.clone(), Vec::new(), Vec::new()))
                    .1
                    .push(i);
                let e = by_shard.get_mut(&shard.id.index()).expect("just inserted");
                e.2.push((pk, data));
                results.push(PutRecordsResultEntry {
                    sequence_number: None,
                    shard_id: None,
                    error_code: None,
                    error_message: None,
                });
            } else {
                results.push(PutRecordsResultEntry {
                    sequence_number: None,
                    shard_id: None,
                    error_code: Some("ProvisionedThroughputExceededException"),
                    error_message: Some(throttle_message(
                        &stream.name,
                        &shard.id.to_string(),
                        &broker.config.account_id,
                    )),
                });
            }
        }
        for (_, (shard, idx, recs)) in by_shard {
            let bytes: usize = recs.iter().map(|(k, d)| k.len() + d.len()).sum();
            let pending = shard.append(recs).await;
            groups.push((shard, idx, bytes, pending));
        }
    }
    for (shard, idx, bytes, pending) in groups {
        match pending.await {
            Ok(Ok(appended)) => {
                shard.metrics.incoming_records.inc_by(idx.len() as u64);
                shard.metrics.incoming_bytes.inc_by(bytes as u64);
                for (k, i) in idx.into_iter().enumerate() {
                    results[i].shard_id = Some(shard.id.to_string());
                    results[i].sequence_number =
                        Some(shard.sequence_number(appended.base + k as u64).to_string());
                }
            }
            _ => {
                for i in idx {
                    results[i].error_code = Some("InternalFailure");
                    results[i].error_message = Some("Internal service failure.".into());
                }
            }
        }
    }
    let failed = results.iter().filter(|r| r.error_code.is_some()).count() as u32;
    Ok(PutRecordsOutput {
        failed_record_count: failed,
        records: results,
        encryption_type: encryption(&stream),
    })
}

/// GetShardIterator input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetShardIteratorInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_id: Option<String>,
    shard_iterator_type: Option<String>,
    starting_sequence_number: Option<String>,
    timestamp: Option<f64>,
}

/// GetShardIterator output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetShardIteratorOutput {
    shard_iterator: String,
}

/// The shard index a lenient shard id names: the digits after the first `-`, or the whole
/// string when there is none.
pub fn parse_shard_id(raw: &str) -> Option<ShardId> {
    let digits = match raw.split('-').nth(1) {
        Some(d) if !d.is_empty() => d,
        _ => raw,
    };
    ShardId::parse_lenient(digits).ok()
}

const ITERATOR_TYPES: &[&str] = &[
    "AFTER_SEQUENCE_NUMBER",
    "LATEST",
    "AT_TIMESTAMP",
    "AT_SEQUENCE_NUMBER",
    "TRIM_HORIZON",
];

/// GetShardIterator.
pub async fn get_shard_iterator(
    broker: Arc<Broker>,
    input: GetShardIteratorInput,
) -> Result<GetShardIteratorOutput, ApiError> {
    let mut v = Validator::new();
    v.name("shardId", input.shard_id.as_deref(), true);
    v.one_of(
        "shardIteratorType",
        input.shard_iterator_type.as_deref(),
        true,
        ITERATOR_TYPES,
    );
    v.string(
        "startingSequenceNumber",
        input.starting_sequence_number.as_deref(),
        false,
        Some((validate::SEQUENCE_PATTERN, SequenceNumber::is_well_formed)),
        0,
        usize::MAX,
    );
    check_stream_ref(
        &mut v,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    );
    v.finish()?;
    let raw = input.shard_id.unwrap_or_default();
    let stream_label = input
        .stream_name
        .clone()
        .or(input.stream_arn.clone())
        .unwrap_or_default();
    let shard_id = parse_shard_id(&raw).ok_or_else(|| Error::ShardNotFound {
        stream: stream_label.clone(),
        shard: raw.clone(),
    })?;
    let does_not_exist = |stream: &str| Error::ShardDoesNotExist {
        stream: stream.to_owned(),
        shard: shard_id.to_string(),
    };
    let stream = stream_ref(
        &broker,
        input.stream_name.as_deref(),
        input.stream_arn.as_deref(),
    )
    .map_err(|_| does_not_exist(&stream_label))?;
    let shard = {
        let map = stream.shards.read().await;
        match broker.locate(&map, shard_id) {
            Some(Owner::Local(s)) => s,
            None => return Err(does_not_exist(&stream.name).into()),
        }
    };
    if !shard.admit_iterator() {
        return Err(Error::Throttled {
            stream: stream.name.clone(),
            shard: shard_id.to_string(),
        }
        .into());
    }
    let kind = input.shard_iterator_type.unwrap_or_default();
    let now = broker.clock.now_ms();
    let position = start_position(
        &broker,
        &stream,
        &shard,
        &kind,
        input.starting_sequence_number,
        input.timestamp,
        "GetShardIterator",
    )
    .await?;
    let it = ShardIterator {
        issued_ms: now,
        stream_created_ms: stream.created_ms,
        stream: stream.name.clone(),
        shard: shard_id.index(),
        position,
    };
    Ok(GetShardIteratorOutput {
        shard_iterator: broker.iterators.encode(&it),
    })
}

/// Where reading starts for an iterator type (GetShardIterator and SubscribeToShard agree).
pub async fn start_position(
    broker: &Broker,
    stream: &Stream,
    shard: &Shard,
    kind: &str,
    seq: Option<String>,
    timestamp: Option<f64>,
    operation: &str,
) -> Result<u64, ApiError> {
    let account = &broker.config.account_id;
    let shard_id = shard.id;
    let needs_seq = kind == "AT_SEQUENCE_NUMBER" || kind == "AFTER_SEQUENCE_NUMBER";
    if needs_seq != seq.is_some() && kind != "AT_TIMESTAMP" {
        let also = if needs_seq {
            "no StartingSequenceNumber"
        } else {
            "also a StartingSequenceNumber"
        };
        return Err(ApiError::invalid_argument(format!(
            "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified {kind} and {also}."
        )));
    }
    let now = broker.clock.now_ms();
    Ok(match kind {
        "TRIM_HORIZON" => shard.log.start_position(),
        "LATEST" => shard.log.end_position(),
        "AT_TIMESTAMP" => {
            let Some(ts) = timestamp else {
                return Err(ApiError::invalid_argument(
                    "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.",
                ));
            };
            let ts_ms = (ts * 1000.0).round() as i64;
            if ts_ms > now {
                return Err(ApiError::invalid_argument(format!(
                    "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: {ts_ms}, currentTimestampInMillis: {now}"
                )));
            }
            let log = shard.log.clone();
            tokio::task::spawn_blocking(move || log.position_at_time(ts_ms))
                .await
                .map_err(|e| Error::Storage(std::io::Error::other(e)))?
                .map_err(Error::Storage)?
        }
        _ => {
            let seq_str = seq.unwrap_or_default();
            let parsed: SequenceNumber = seq_str.parse().map_err(|_| {
                ApiError::invalid_argument(format!(
                    "StartingSequenceNumber {seq_str} used in {operation} on shard {shard_id} in stream {} under account {account} is invalid.",
                    stream.name
                ))
            })?;
            if parsed.shard() != shard_id {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid StartingSequenceNumber. It encodes {}, while it was used in a call to {shard_id}",
                    parsed.shard()
                )));
            }
            // A number of another incarnation of the stream (deleted and created again under
            // this name), or of a record not written yet, is refused: mapping it to a
            // position would silently skip records.
            let end = shard.log.end_position();
            let exists = match parsed.position() {
                _ if parsed.epoch() != shard.epoch => false,
                None => true,
                Some(p) if kind == "AFTER_SEQUENCE_NUMBER" => p < end,
                Some(p) => p < end,
            };
            if !exists {
                return Err(ApiError::invalid_argument(format!(
                    "StartingSequenceNumber {seq_str} used in {operation} on shard {shard_id} in stream {} under account {account} is invalid because it did not come from this stream.",
                    stream.name
                )));
            }
            if kind == "AFTER_SEQUENCE_NUMBER" {
                parsed.after_position()
            } else {
                parsed.at_position()
            }
        }
    })
}

/// GetRecords input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRecordsInput {
    shard_iterator: Option<String>,
    #[serde(default, deserialize_with = "crate::api::wire::java_integer")]
    limit: Option<i64>,
    #[serde(rename = "StreamARN")]
    #[allow(dead_code)]
    stream_arn: Option<String>,
}

/// A record as GetRecords (and SubscribeToShard) return it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecordOut {
    sequence_number: String,
    approximate_arrival_timestamp: f64,
    data: Blob,
    partition_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_type: Option<&'static str>,
}

impl RecordOut {
    /// A stored record of `shard` as the API returns it (`EncryptionType` KMS when it was
    /// stored encrypted).
    pub fn new(shard: &Shard, r: StoredRecord) -> RecordOut {
        let encryption_type = r.encrypted.then_some("KMS");
        RecordOut {
            sequence_number: shard.sequence_number(r.position).to_string(),
            approximate_arrival_timestamp: epoch_seconds(r.timestamp_ms),
            data: Blob(r.data),
            partition_key: String::from_utf8_lossy(&r.partition_key).into_owned(),
            encryption_type,
        }
    }
}

/// MillisBehindLatest of a read that ended at `next` in a log that ends at `end`: zero when
/// caught up, else the age of the last record read.
pub fn millis_behind(read: &ReadResult, end: u64, now: i64) -> i64 {
    if read.next_position >= end {
        0
    } else {
        read.records
            .last()
            .map_or(0, |r| (now - r.timestamp_ms).max(0))
    }
}

/// A child shard as GetRecords reports it at the end of a closed shard.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChildShardOut {
    shard_id: String,
    parent_shards: Vec<String>,
    hash_key_range: super::streams::HashKeyRangeOut,
}

/// GetRecords output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRecordsOutput {
    records: Vec<RecordOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_shard_iterator: Option<String>,
    millis_behind_latest: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    child_shards: Option<Vec<ChildShardOut>>,
}

/// The children of `parent`, as ChildShards lists them.
pub fn child_shards(map: &ShardMap, parent: ShardId) -> Vec<ChildShardOut> {
    map.all
        .values()
        .filter(|s| s.parent == Some(parent) || s.adjacent_parent == Some(parent))
        .map(|s| ChildShardOut {
            shard_id: s.id.to_string(),
            parent_shards: s
                .parent
                .into_iter()
                .chain(s.adjacent_parent)
                .map(|p| p.to_string())
                .collect(),
            hash_key_range: super::streams::HashKeyRangeOut::from(s.range),
        })
        .collect()
}

/// GetRecords.
pub async fn get_records(
    broker: Arc<Broker>,
    input: GetRecordsInput,
) -> Result<GetRecordsOutput, ApiError> {
    let mut v = Validator::new();
    // GetRecords names no stream until its iterator is decoded: the broker-wide largest
    // Limit is validated here and the stream's own limits applied below.
    let max_limit = broker.config.limits.largest_get_records_records();
    v.int("limit", input.limit, false, 1, max_limit as i64);
    v.string(
        "shardIterator",
        input.shard_iterator.as_deref(),
        true,
        None,
        1,
        512,
    );
    v.finish()?;
    let now = broker.clock.now_ms();
    let it = broker
        .iterators
        .decode(input.shard_iterator.as_deref().unwrap_or_default())
        .filter(|it| it.issued_ms <= now + 60_000)
        .ok_or_else(|| ApiError::invalid_argument("Invalid ShardIterator."))?;
    if now - it.issued_ms > ITERATOR_TTL_MS {
        return Err(Error::ExpiredIterator {
            issued_ms: it.issued_ms,
            now_ms: now,
        }
        .into());
    }
    let shard_id = ShardId(it.shard);
    let gone = || Error::ShardDoesNotExist {
        stream: it.stream.clone(),
        shard: shard_id.to_string(),
    };
    let stream = broker.stream(&it.stream).map_err(|_| gone())?;
    if stream.created_ms != it.stream_created_ms {
        return Err(gone().into());
    }
    let shard = {
        let map = stream.shards.read().await;
        match broker.locate(&map, shard_id) {
            Some(Owner::Local(s)) => s,
            None => return Err(gone().into()),
        }
    };
    if !shard.admit_read() {
        return Err(Error::Throttled {
            stream: stream.name.clone(),
            shard: shard_id.to_string(),
        }
        .into());
    }
    let stream_limits = stream.limits;
    let most = stream_limits
        .get_records_max_records
        .or_ceiling(ceilings::GET_RECORDS_RECORDS) as usize;
    let limit = (input.limit.map_or(most, |l| l as usize)).min(most);
    let max_bytes = stream_limits
        .get_records_max_bytes
        .or_ceiling(ceilings::GET_RECORDS_BYTES) as usize;
    let min_ts = stream.expiry_cutoff_ms(now);
    let log = shard.log.clone();
    let read = tokio::task::spawn_blocking(move || log.read(it.position, limit, max_bytes, min_ts))
        .await
        .map_err(|e| Error::Storage(std::io::Error::other(e)))?
        .map_err(Error::Storage)?;
    let bytes: usize = read.records.iter().map(|r| r.data.len()).sum();
    shard.charge_read(bytes);
    shard
        .metrics
        .outgoing_records
        .inc_by(read.records.len() as u64);
    shard.metrics.outgoing_bytes.inc_by(bytes as u64);
    let end = shard.log.end_position();
    let millis_behind = millis_behind(&read, end, now);
    shard.metrics.iterator_age.observe(millis_behind);
    let records = read
        .records
        .into_iter()
        .map(|r| RecordOut::new(&shard, r))
        .collect();
    let at_end = shard
        .closed()
        .is_some_and(|(closed_end, _)| read.next_position >= closed_end);
    let (next_shard_iterator, child) = if at_end {
        (
            None,
            Some(child_shards(&*stream.shards.read().await, shard_id)),
        )
    } else {
        let next = ShardIterator {
            issued_ms: now,
            position: read.next_position,
            ..it
        };
        (Some(broker.iterators.encode(&next)), None)
    };
    Ok(GetRecordsOutput {
        records,
        next_shard_iterator,
        millis_behind_latest: millis_behind,
        child_shards: child,
    })
}

crate::api::stream_target!(PutRecordInput, PutRecordsInput, GetShardIteratorInput);

impl crate::api::Targeted for GetRecordsInput {
    fn target(&self) -> crate::api::Target<'_> {
        crate::api::Target::Token {
            stream: self.stream_arn.as_deref(),
            token: self.shard_iterator.as_deref(),
            iterator: true,
        }
    }
}
