//! Helpers shared by the end-to-end test modules.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::{ChildShard, Record, Shard, ShardIteratorType};
use aws_sdk_kinesis::Client;
use aws_smithy_types::Blob;
use md5::{Digest, Md5};

pub(crate) use riffle_tests::{cmp_seq, stream_arn, TestBroker};

/// 2^128 - 1, the largest hash key.
pub(crate) const MAX_HASH: u128 = u128::MAX;

/// A config like the harness default (control-plane call rates off) but with extra
/// TOML lines appended to the `[streams]` table and an explicit `[limits]` table body.
pub(crate) fn config(streams_extra: &str, storage: &str, limits: &str) -> String {
    format!(
        "region = \"us-east-1\"\naccount_id = \"000000000000\"\n\n\
         [streams]\n{streams_extra}\n\n[storage]\n{storage}\n\n\
         [encryption.keys]\n{TEST_KEY}\n\n[control_plane]\nenabled = false\n\n[limits]\n{limits}\n"
    )
}

/// The `[encryption.keys]` line of [`config`]: a test key under the id of AWS's managed key.
pub(crate) const TEST_KEY: &str =
    "\"alias/aws/kinesis\" = \"6b696e657369732d746573742d6b65792d6e6f742d612d7265616c2d6b657921\"";

/// `config` (made by [`config`]) with the control-plane call rates on, at their defaults
/// changed by `body` (lines of the `[control_plane]` table).
pub(crate) fn with_control_plane(config: String, body: &str) -> String {
    let off = "[control_plane]\nenabled = false\n";
    assert!(config.contains(off), "not a config made by config()");
    config.replacen(off, &format!("[control_plane]\n{body}\n"), 1)
}

/// All four per-shard limits switched off (a `[limits]` table body).
pub(crate) const LIMITS_OFF: &str = "write_bytes_per_second = \"off\"\n\
write_records_per_second = \"off\"\n\
read_bytes_per_second = \"off\"\n\
get_records_per_second = \"off\"\n\
get_shard_iterator_per_second = \"off\"\n";

/// The Kinesis hash key of a partition key: MD5 as a big-endian u128.
pub(crate) fn hash_key(partition_key: &str) -> u128 {
    let digest = Md5::digest(partition_key.as_bytes());
    u128::from_be_bytes(digest.into())
}

/// A blob from bytes.
pub(crate) fn blob(data: impl Into<Vec<u8>>) -> Blob {
    Blob::new(data.into())
}

/// Unwraps an error result into (code, message), panicking if the call
/// succeeded or failed without a service error (e.g. connection failure).
pub(crate) fn service_err<T: Debug, E, R>(res: Result<T, SdkError<E, R>>) -> (String, String)
where
    E: ProvideErrorMetadata + Debug + std::error::Error + 'static,
    R: Debug,
{
    match res {
        Ok(v) => panic!("expected a service error, got success: {v:?}"),
        Err(SdkError::ServiceError(se)) => {
            let e = se.err();
            (
                e.code().unwrap_or("<no code>").to_string(),
                e.message().unwrap_or("").to_string(),
            )
        }
        Err(other) => panic!("expected a service error, got {other:?}"),
    }
}

/// Asserts a call failed with the given error code; returns the message.
#[track_caller]
pub(crate) fn assert_code<T: Debug, E, R>(res: Result<T, SdkError<E, R>>, code: &str) -> String
where
    E: ProvideErrorMetadata + Debug + std::error::Error + 'static,
    R: Debug,
{
    let (got, msg) = service_err(res);
    assert_eq!(got, code, "wrong error code (message: {msg:?})");
    msg
}

/// Every shard of a stream, via ListShards pagination.
pub(crate) async fn list_all_shards(client: &Client, stream: &str) -> Vec<Shard> {
    let mut out = Vec::new();
    let mut resp = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards");
    for _ in 0..1000 {
        out.extend(resp.shards().iter().cloned());
        match resp.next_token() {
            Some(tok) => {
                resp = client
                    .list_shards()
                    .next_token(tok)
                    .send()
                    .await
                    .expect("ListShards next page");
            }
            None => return out,
        }
    }
    panic!("ListShards pagination did not end");
}

/// Open shards (no EndingSequenceNumber), sorted by starting hash key.
pub(crate) fn open_shards(shards: &[Shard]) -> Vec<Shard> {
    let mut open: Vec<Shard> = shards
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_none()
        })
        .cloned()
        .collect();
    open.sort_by_key(|s| range_of(s).0);
    open
}

/// The (start, end) hash key range of a shard.
pub(crate) fn range_of(shard: &Shard) -> (u128, u128) {
    let r = shard.hash_key_range().expect("HashKeyRange");
    (
        r.starting_hash_key().parse().expect("start hash key"),
        r.ending_hash_key().parse().expect("end hash key"),
    )
}

/// The id of the shard (among `shards`, open ones only) whose range holds `key`.
pub(crate) fn shard_for(shards: &[Shard], key: u128) -> String {
    open_shards(shards)
        .iter()
        .find(|s| {
            let (a, b) = range_of(s);
            a <= key && key <= b
        })
        .map(|s| s.shard_id().to_string())
        .expect("some open shard holds every hash key")
}

/// The open shards' ranges tile [0, 2^128) contiguously, each of (nearly)
/// equal size.
#[track_caller]
pub(crate) fn assert_partitions_evenly(open: &[Shard]) {
    let n = open.len() as u128;
    assert!(n > 0);
    let ideal = MAX_HASH / n;
    let mut next = 0u128;
    for (i, s) in open.iter().enumerate() {
        let (a, b) = range_of(s);
        assert_eq!(a, next, "shard {i} must start where the previous ended");
        let size = b - a;
        assert!(
            size.abs_diff(ideal) <= n,
            "shard {} size {} is not an even share {} of the hash space",
            s.shard_id(),
            size,
            ideal
        );
        if i + 1 == open.len() {
            assert_eq!(b, MAX_HASH, "last shard must end at 2^128-1");
        } else {
            next = b + 1;
        }
    }
}

/// The result of reading one shard to its current end.
#[derive(Debug, Default)]
pub(crate) struct ShardRead {
    pub(crate) records: Vec<Record>,
    /// NextShardIterator came back absent (shard closed and fully read).
    pub(crate) closed: bool,
    /// ChildShards of the last response that carried them.
    pub(crate) child_shards: Vec<ChildShard>,
    pub(crate) calls: usize,
}

/// Gets a shard iterator.
pub(crate) async fn iterator(
    client: &Client,
    stream: &str,
    shard: &str,
    kind: ShardIteratorType,
    seq: Option<&str>,
) -> String {
    let mut req = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(kind);
    if let Some(s) = seq {
        req = req.starting_sequence_number(s);
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("GetShardIterator {stream}/{shard}: {e:?}"))
        .shard_iterator()
        .expect("ShardIterator")
        .to_string()
}

/// Reads from `iter` until the shard is closed and drained, or the reader is
/// caught up (no records and MillisBehindLatest 0). Bounded to 2,000 calls
/// and 60 s.
pub(crate) async fn read_from(client: &Client, mut iter: String) -> ShardRead {
    let mut out = ShardRead::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.calls < 2000 && Instant::now() < deadline {
        out.calls += 1;
        let resp = client
            .get_records()
            .shard_iterator(&iter)
            .limit(10_000)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetRecords: {e:?}"));
        let n = resp.records().len();
        out.records.extend(resp.records().iter().cloned());
        if !resp.child_shards().is_empty() {
            out.child_shards = resp.child_shards().to_vec();
        }
        match resp.next_shard_iterator() {
            None => {
                out.closed = true;
                return out;
            }
            Some(next) => iter = next.to_string(),
        }
        if n == 0 && resp.millis_behind_latest() == Some(0) {
            return out;
        }
    }
    panic!("reading the shard did not finish after {} calls", out.calls);
}

/// Reads a whole shard from TRIM_HORIZON (see [`read_from`]).
pub(crate) async fn read_shard(client: &Client, stream: &str, shard: &str) -> ShardRead {
    let it = iterator(client, stream, shard, ShardIteratorType::TrimHorizon, None).await;
    read_from(client, it).await
}

/// Asserts sequence numbers of `records` strictly increase.
#[track_caller]
pub(crate) fn assert_strictly_increasing(records: &[Record]) {
    for w in records.windows(2) {
        assert_eq!(
            cmp_seq(w[0].sequence_number(), w[1].sequence_number()),
            std::cmp::Ordering::Less,
            "sequence numbers must strictly increase: {} then {}",
            w[0].sequence_number(),
            w[1].sequence_number()
        );
    }
}

/// Polls `f` every 20 ms until it returns true, for at most `limit`.
pub(crate) async fn eventually<F, Fut>(limit: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {limit:?} waiting for: {what}");
}

/// One sample of a Prometheus text exposition.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// Parses Prometheus / OpenMetrics text into samples (comments skipped).
pub(crate) fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').expect("closing brace");
                (
                    &line[..open],
                    parse_labels(&line[open + 1..close]),
                    &line[close + 1..],
                )
            }
            None => {
                let sp = line.find(' ').expect("sample value");
                (&line[..sp], BTreeMap::new(), &line[sp..])
            }
        };
        let value = rest
            .split_whitespace()
            .next()
            .expect("value")
            .parse::<f64>()
            .unwrap_or(f64::NAN);
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(',') | Some(' ')) {
            chars.next();
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if key.is_empty() {
            return map;
        }
        assert_eq!(chars.next(), Some('"'), "label value must be quoted");
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        val.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => break,
                c => val.push(c),
            }
        }
        map.insert(key.trim().to_string(), val);
    }
}

/// Sum of the samples named `name` whose labels include all of `want`.
pub(crate) fn metric_sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let mut found = false;
    let mut sum = 0.0;
    for s in samples.iter().filter(|s| s.name == name) {
        if want
            .iter()
            .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        {
            found = true;
            sum += s.value;
        }
    }
    found.then_some(sum)
}

/// Minimal AWS SigV4 signing for hand-written requests.
pub(crate) mod sigv4 {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    pub(crate) const ACCESS_KEY: &str = "AKIDRIFFLETEST";
    pub(crate) const SECRET_KEY: &str = "riffle-test-secret";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }

    /// `(X-Amz-Date, Authorization)` for a POST to `/` with the given
    /// host, target and body (signed headers: content-type, host,
    /// x-amz-date, x-amz-target).
    pub(crate) fn sign(
        host: &str,
        content_type: &str,
        target: &str,
        body: &[u8],
    ) -> (String, String) {
        let now = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
        let iso = now
            .fmt(aws_smithy_types::date_time::Format::DateTime)
            .expect("format date");
        // 2024-01-02T03:04:05Z (possibly with fractional seconds) -> 20240102T030405Z
        let basic: String = iso
            .split('.')
            .next()
            .unwrap()
            .trim_end_matches('Z')
            .chars()
            .filter(|c| *c != '-' && *c != ':')
            .collect::<String>()
            + "Z";
        let date = &basic[..8];
        let region = "us-east-1";
        let service = "kinesis";
        let payload_hash = hex(&Sha256::digest(body));
        let canonical_headers = format!(
            "content-type:{content_type}\nhost:{host}\nx-amz-date:{basic}\nx-amz-target:{target}\n"
        );
        let signed_headers = "content-type;host;x-amz-date;x-amz-target";
        let canonical_request =
            format!("POST\n/\n\n{canonical_headers}\n{signed_headers}\n{payload_hash}");
        let scope = format!("{date}/{region}/{service}/aws4_request");
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{basic}\n{scope}\n{}",
            hex(&Sha256::digest(canonical_request.as_bytes()))
        );
        let k_date = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), date.as_bytes());
        let k_region = hmac(&k_date, region.as_bytes());
        let k_service = hmac(&k_region, service.as_bytes());
        let k_signing = hmac(&k_service, b"aws4_request");
        let signature = hex(&hmac(&k_signing, string_to_sign.as_bytes()));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
        );
        (basic, auth)
    }
}
