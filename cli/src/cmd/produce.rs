//! `riffle produce`: lines into a stream through riffle-kpl.
//!
//! One task reads the inputs and puts each line (back-pressure from the producer's buffer
//! budget paces it); a second awaits the outcomes, counts them and writes failures; a third
//! keeps the progress line. The producer's retries, rate limits and aggregation are the
//! library's own: this module only turns lines into records and outcomes into numbers.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use riffle_kpl::{Config, Producer, PutError, PutHandle};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

use crate::args::ProduceArgs;
use crate::context::Context;
use crate::error::{from_sdk, CliError, PARTIAL, USAGE};

type Result<T> = std::result::Result<T, CliError>;

/// How a line becomes a partition key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeySource {
    /// A template of literal text, `{line}` and `{random}`.
    Template(Vec<Piece>),
    /// A field of the line read as a JSON object (path of object keys).
    Field(Vec<String>),
}

/// A part of a key template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Line,
    Random,
}

impl KeySource {
    fn template(t: &str) -> Result<KeySource> {
        let mut pieces = Vec::new();
        let mut rest = t;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let after = &rest[open..];
            let (piece, len) = if after.starts_with("{line}") {
                (Piece::Line, "{line}".len())
            } else if after.starts_with("{random}") {
                (Piece::Random, "{random}".len())
            } else {
                return Err(CliError::new(
                    USAGE,
                    format!(
                        "--key {t:?}: unknown placeholder at {after:?} (use {{line}} or {{random}})"
                    ),
                ));
            };
            pieces.push(piece);
            rest = &after[len..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        if pieces.is_empty() {
            return Err(CliError::new(USAGE, "--key must not be empty"));
        }
        Ok(KeySource::Template(pieces))
    }

    fn field(path: &str) -> Result<KeySource> {
        let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
        if parts.iter().any(String::is_empty) {
            return Err(CliError::new(
                USAGE,
                format!("--key-field {path:?} is not a field name or dotted path"),
            ));
        }
        Ok(KeySource::Field(parts))
    }

    /// The key of line number `line` (from 1) holding `data`, or why there is none.
    fn key(&self, line: u64, data: &[u8]) -> std::result::Result<String, String> {
        match self {
            KeySource::Template(pieces) => {
                let mut k = String::new();
                for p in pieces {
                    match p {
                        Piece::Text(t) => k.push_str(t),
                        Piece::Line => k.push_str(&line.to_string()),
                        Piece::Random => k.push_str(&format!("{:016x}", rand::random::<u64>())),
                    }
                }
                Ok(k)
            }
            KeySource::Field(path) => {
                let v: Value = serde_json::from_slice(data)
                    .map_err(|e| format!("line {line} is not JSON ({e})"))?;
                let mut cur = &v;
                for p in path {
                    cur = cur
                        .get(p)
                        .ok_or_else(|| format!("line {line} has no field {:?}", path.join(".")))?;
                }
                match cur {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(_) | Value::Bool(_) => Ok(cur.to_string()),
                    _ => Err(format!(
                        "line {line}: field {:?} is not a string, number or boolean",
                        path.join(".")
                    )),
                }
            }
        }
    }
}

/// Counters shared by the tasks.
#[derive(Debug, Default)]
struct Tally {
    read: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
}

/// A record that was not put, as written to `--failed`.
fn failure_json(line: u64, key: Option<&str>, data: &[u8], error: &str, codes: &[&str]) -> Value {
    let mut v = json!({
        "line": line,
        "partition_key": key,
        "error": error,
        "attempts": codes,
    });
    match std::str::from_utf8(data) {
        Ok(s) => v["data"] = json!(s),
        Err(_) => {
            use base64::Engine;
            v["data_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(data));
        }
    }
    v
}

/// Where failures go.
struct Failures {
    out: Option<std::io::BufWriter<std::fs::File>>,
    path: Option<PathBuf>,
    first: Option<String>,
}

impl Failures {
    fn open(path: Option<&Path>) -> Result<Failures> {
        let out = match path {
            None => None,
            Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p).map_err(
                |e| CliError::failed(format!("cannot write {}: {e}", p.display())),
            )?)),
        };
        Ok(Failures {
            out,
            path: path.map(Path::to_owned),
            first: None,
        })
    }

    fn record(&mut self, v: &Value) {
        if self.first.is_none() {
            self.first = v["error"].as_str().map(str::to_owned);
        }
        if let Some(out) = &mut self.out {
            // A failure to write the failures file must not go unnoticed either.
            if let Err(e) = writeln!(out, "{v}") {
                eprintln!("riffle: writing failed records: {e}");
                self.out = None;
            }
        }
    }

    fn finish(&mut self) {
        if let Some(out) = &mut self.out {
            let _ = out.flush();
        }
    }
}

/// Runs `riffle produce`.
pub(crate) async fn run(ctx: &Context, a: ProduceArgs) -> Result<()> {
    let keys = match &a.key_field {
        Some(f) => KeySource::field(f)?,
        None => KeySource::template(&a.key)?,
    };
    if let Some(r) = a.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(CliError::new(USAGE, "--rate must be a positive number"));
        }
    }
    // One clear line for a stream that is not there or a broker that is down, before any
    // record is read.
    ctx.kinesis
        .describe_stream_summary()
        .stream_name(&a.stream)
        .send()
        .await
        .map_err(|e| from_sdk(&format!("stream {}", a.stream), &ctx.endpoint, e))?;
    let config = Config {
        aggregation_enabled: !a.no_aggregate,
        record_ttl: a.record_ttl,
        ..Config::default()
    };
    config
        .validate()
        .map_err(|e| CliError::new(USAGE, e.to_string()))?;
    let producer = Producer::builder(config)
        .client(ctx.kinesis.clone())
        .build()
        .await
        .map_err(|e| CliError::failed(format!("starting the producer: {e}")))?;
    let mut failures = Failures::open(a.failed.as_deref())?;
    let tally = Arc::new(Tally::default());
    let started = Instant::now();

    let show_progress = (a.progress || std::io::stderr().is_terminal()) && !a.no_progress;
    let progress = show_progress.then(|| tokio::spawn(progress_line(tally.clone(), started)));

    // Outcomes: awaited as they come, failures written in the order they fail.
    let (tx, mut rx) = mpsc::channel::<(u64, PutHandle)>(65_536);
    let (fail_tx, mut fail_rx) = mpsc::unbounded_channel::<Value>();
    let drain_tally = tally.clone();
    let drain_fail = fail_tx.clone();
    let drainer = tokio::spawn(async move {
        let mut pending = FuturesUnordered::new();
        let mut open = true;
        while open || !pending.is_empty() {
            tokio::select! {
                next = rx.recv(), if open => match next {
                    Some((line, h)) => pending.push(async move { (line, h.await) }),
                    None => open = false,
                },
                Some((line, outcome)) = pending.next(), if !pending.is_empty() => {
                    match outcome {
                        Ok(_) => { drain_tally.ok.fetch_add(1, Ordering::Relaxed); }
                        Err(e) => {
                            drain_tally.failed.fetch_add(1, Ordering::Relaxed);
                            let _ = drain_fail.send(put_failure(line, &e));
                        }
                    }
                }
            }
        }
    });
    let writer = tokio::task::spawn_blocking(move || {
        while let Some(v) = fail_rx.blocking_recv() {
            failures.record(&v);
        }
        failures.finish();
        failures
    });

    let read = feed(&a, &producer, &keys, &tally, &tx, &fail_tx).await;
    drop(tx);
    drop(fail_tx);
    // Everything accepted is delivered or failed before the summary.
    let shutdown = producer.shutdown().await;
    let _ = drainer.await;
    let failures = writer
        .await
        .map_err(|e| CliError::failed(format!("writing failed records: {e}")))?;
    if let Some(p) = progress {
        p.abort();
        eprint!("\r\x1b[2K");
    }
    read?;
    shutdown.map_err(|e| CliError::failed(format!("shutting the producer down: {e}")))?;

    let elapsed = started.elapsed().as_secs_f64();
    let ok = tally.ok.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    let bytes = tally.bytes.load(Ordering::Relaxed);
    let rate = ok as f64 / elapsed.max(1e-9);
    ctx.out.event(
        &format!(
            "produced {ok} records ({}) to {} in {elapsed:.1} s ({rate:.0} records/s); {failed} failed",
            human_bytes(bytes),
            a.stream
        ),
        &json!({
            "stream": a.stream,
            "records": ok,
            "failed": failed,
            "bytes": bytes,
            "seconds": (elapsed * 1000.0).round() / 1000.0,
            "records_per_second": rate.round(),
        }),
    );
    if failed > 0 {
        let first = failures.first.unwrap_or_default();
        let r#where = match &failures.path {
            Some(p) => format!("written to {}", p.display()),
            None => "pass --failed FILE to keep them".to_owned(),
        };
        return Err(CliError::new(
            PARTIAL,
            format!("{failed} records were not put (first: {first}); {where}"),
        ));
    }
    Ok(())
}

/// A put's failure as a `--failed` line.
fn put_failure(line: u64, e: &PutError) -> Value {
    let codes: Vec<&str> = e.attempts.iter().map(|a| a.error_code()).collect();
    let error = match e.attempts.last() {
        Some(last) if !last.error_message().is_empty() => {
            format!(
                "{}: {} ({})",
                e.kind,
                last.error_code(),
                last.error_message()
            )
        }
        _ => e.kind.to_string(),
    };
    failure_json(
        line,
        Some(&e.record.partition_key),
        &e.record.data,
        &error,
        &codes,
    )
}

/// Reads every input and puts its lines; returns once all are handed to the producer.
async fn feed(
    a: &ProduceArgs,
    producer: &Producer,
    keys: &KeySource,
    tally: &Tally,
    tx: &mpsc::Sender<(u64, PutHandle)>,
    fail_tx: &mpsc::UnboundedSender<Value>,
) -> Result<()> {
    let inputs: Vec<Option<PathBuf>> = if a.files.is_empty() {
        vec![None]
    } else {
        a.files
            .iter()
            .map(|f| (f.as_os_str() != "-").then(|| f.clone()))
            .collect()
    };
    let mut line_no = 0u64;
    let pace = a.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let paced_from = tokio::time::Instant::now();
    for input in inputs {
        let reader: Box<dyn AsyncRead + Unpin + Send> = match &input {
            None => Box::new(tokio::io::stdin()),
            Some(p) => Box::new(
                tokio::fs::File::open(p)
                    .await
                    .map_err(|e| CliError::failed(format!("cannot read {}: {e}", p.display())))?,
            ),
        };
        let name = input
            .as_ref()
            .map_or_else(|| "standard input".to_owned(), |p| p.display().to_string());
        let mut reader = BufReader::with_capacity(256 * 1024, reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .await
                .map_err(|e| CliError::failed(format!("reading {name}: {e}")))?;
            if n == 0 {
                break;
            }
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            line_no += 1;
            tally.read.fetch_add(1, Ordering::Relaxed);
            if let Some(step) = pace {
                tokio::time::sleep_until(paced_from + step.mul_f64(line_no as f64 - 1.0)).await;
            }
            let data = Bytes::copy_from_slice(&buf);
            let key = match keys.key(line_no, &data) {
                Ok(k) => k,
                Err(why) => {
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    let _ = fail_tx.send(failure_json(line_no, None, &data, &why, &[]));
                    continue;
                }
            };
            tally.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            match producer.put(&a.stream, key, data).await {
                Ok(h) => {
                    if tx.send((line_no, h)).await.is_err() {
                        return Err(CliError::failed("the outcome task stopped"));
                    }
                }
                Err(e) => {
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    let _ = fail_tx.send(put_failure(line_no, &e));
                }
            }
        }
    }
    Ok(())
}

/// Keeps `records, bytes, records/s, failures` on one line of standard error.
async fn progress_line(tally: Arc<Tally>, started: Instant) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let ok = tally.ok.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\r\x1b[2K{} read, {ok} put ({}), {:.0} records/s, {} failed",
            tally.read.load(Ordering::Relaxed),
            human_bytes(tally.bytes.load(Ordering::Relaxed)),
            ok as f64 / secs,
            tally.failed.load(Ordering::Relaxed),
        );
        let _ = std::io::stderr().flush();
    }
}

/// `12.3 MB` style sizes.
pub(crate) fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_line_numbers_and_random_keys() {
        let k = KeySource::template("user-{line}").unwrap();
        assert_eq!(k.key(7, b"x").unwrap(), "user-7");
        let k = KeySource::template("{random}").unwrap();
        let (a, b) = (k.key(1, b"").unwrap(), k.key(1, b"").unwrap());
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        assert_eq!(
            KeySource::template("const").unwrap().key(3, b"").unwrap(),
            "const"
        );
        assert!(KeySource::template("{nope}").is_err());
        assert!(KeySource::template("").is_err());
    }

    #[test]
    fn key_fields_come_from_json_lines() {
        let k = KeySource::field("user.id").unwrap();
        assert_eq!(k.key(1, br#"{"user":{"id":"u1"}}"#).unwrap(), "u1");
        assert_eq!(k.key(1, br#"{"user":{"id":42}}"#).unwrap(), "42");
        assert!(k
            .key(2, br#"{"user":{}}"#)
            .unwrap_err()
            .contains("line 2 has no field \"user.id\""));
        assert!(k.key(3, b"not json").unwrap_err().contains("not JSON"));
        assert!(KeySource::field("a..b").is_err());
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(19_500_000), "19.5 MB");
    }
}
