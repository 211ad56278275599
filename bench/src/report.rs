//! The one JSON line a run prints, and the pieces that fill it: latency histograms, error
//! counts, the load generator's own CPU use.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nix::sys::resource::{getrusage, UsageWho};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// A latency histogram in microseconds, 1 µs to 10 minutes, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Latency and errors shared by a run's tasks.
#[derive(Debug, Clone)]
pub struct Recorder {
    inner: Arc<Mutex<RecorderInner>>,
}

#[derive(Debug)]
struct RecorderInner {
    latency: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    last_error: Option<String>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            inner: Arc::new(Mutex::new(RecorderInner {
                latency: new_histogram(),
                errors: BTreeMap::new(),
                last_error: None,
            })),
        }
    }
}

impl Recorder {
    /// Records one request's latency.
    pub fn latency(&self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 600_000_000);
        self.inner.lock().latency.saturating_record(us);
    }

    /// Counts `n` errors of `kind`.
    pub fn error(&self, kind: &str, n: u64) {
        *self.inner.lock().errors.entry(kind.to_owned()).or_default() += n;
    }

    /// Counts a failed call under its kind and keeps its message as the last error seen.
    pub fn call_error(&self, e: &crate::client::CallError) {
        let mut inner = self.inner.lock();
        *inner.errors.entry(e.kind()).or_default() += 1;
        inner.last_error = Some(crate::kinesis::truncate(&e.to_string()));
    }

    /// The message of the last failed call.
    pub fn last_error(&self) -> Option<String> {
        self.inner.lock().last_error.clone()
    }

    /// Latency percentiles (ms) of everything recorded.
    pub fn latency_json(&self) -> Value {
        percentiles(&self.inner.lock().latency)
    }

    /// A copy of the error counts.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.inner.lock().errors.clone()
    }
}

/// p50/p90/p99/p99.9/max (ms) and the count of a microsecond histogram.
pub fn percentiles(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
    if h.is_empty() {
        return json!({ "count": 0 });
    }
    json!({
        "count": h.len(),
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p99_9": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
        "mean": ms(h.mean() as u64),
    })
}

/// The load generator's own CPU time (user + system), for "was it the bottleneck?".
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    start_cpu: f64,
    start: Instant,
}

fn rusage_seconds() -> (f64, f64) {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            (t(u.user_time()), t(u.system_time()))
        }
        Err(_) => (0.0, 0.0),
    }
}

impl CpuClock {
    /// Starts measuring now.
    pub fn start() -> CpuClock {
        let (u, s) = rusage_seconds();
        CpuClock {
            start_cpu: u + s,
            start: Instant::now(),
        }
    }

    /// `{cpu_s, elapsed_s, cores}`: CPU seconds used since the start and their ratio to
    /// wall time (1.0 = one core busy the whole time).
    pub fn json(&self) -> Value {
        let (u, s) = rusage_seconds();
        let cpu = u + s - self.start_cpu;
        let elapsed = self.start.elapsed().as_secs_f64();
        json!({
            "cpu_s": round3(cpu),
            "elapsed_s": round3(elapsed),
            "cores": round3(if elapsed > 0.0 { cpu / elapsed } else { 0.0 }),
        })
    }
}

/// Rounds to three decimals (keeps the JSON line readable).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// How a run ended.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Measured.
    Ok,
    /// The endpoint lacks an operation the workload needs.
    Unsupported,
    /// The run could not complete.
    Failed,
}

/// One run's result: printed as exactly one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Workload name (the subcommand).
    pub workload: String,
    /// Which endpoint (`--target-name`).
    pub target: String,
    /// `"1.1"` or `"2"`.
    pub http: String,
    /// `ok`, `unsupported` or `failed`.
    pub status: Status,
    /// Why it is not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The workload's parameters.
    pub params: Value,
    /// Records acknowledged (writes) or received (reads) in the measured phase.
    pub records: u64,
    /// Record data bytes in those records.
    pub bytes: u64,
    /// Wall time of the measured phase, seconds.
    pub elapsed_s: f64,
    /// `records / elapsed_s`.
    pub records_per_s: f64,
    /// `bytes / elapsed_s / 10^6`.
    pub mb_per_s: f64,
    /// Request (or end-to-end, per workload) latency percentiles, ms.
    pub latency_ms: Value,
    /// Errors by type (AWS `__type`, per-record `ErrorCode`, `transport`, `timeout`, …).
    pub errors: BTreeMap<String, u64>,
    /// The load generator's CPU use over the measured phase.
    pub loadgen_cpu: Value,
    /// Workload-specific figures.
    pub extra: Map<String, Value>,
    /// Unix time the run finished, seconds.
    pub finished_unix_s: u64,
}

impl Report {
    /// An empty report for a workload against a target.
    pub fn new(workload: &str, target: &str, http2: bool, params: Value) -> Report {
        Report {
            workload: workload.to_owned(),
            target: target.to_owned(),
            http: if http2 { "2" } else { "1.1" }.to_owned(),
            status: Status::Ok,
            reason: None,
            params,
            records: 0,
            bytes: 0,
            elapsed_s: 0.0,
            records_per_s: 0.0,
            mb_per_s: 0.0,
            latency_ms: json!({ "count": 0 }),
            errors: BTreeMap::new(),
            loadgen_cpu: Value::Null,
            extra: Map::new(),
            finished_unix_s: 0,
        }
    }

    /// Sets records, bytes and elapsed time and derives the rates.
    pub fn set_volume(&mut self, records: u64, bytes: u64, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        self.records = records;
        self.bytes = bytes;
        self.elapsed_s = round3(secs);
        if secs > 0.0 {
            self.records_per_s = round3(records as f64 / secs);
            self.mb_per_s = round3(bytes as f64 / secs / 1e6);
        }
    }

    /// Takes latency and errors from a recorder.
    pub fn take(&mut self, rec: &Recorder) {
        self.latency_ms = rec.latency_json();
        for (k, v) in rec.errors() {
            *self.errors.entry(k).or_default() += v;
        }
        if let Some(e) = rec.last_error() {
            self.extra("last_error", e);
        }
    }

    /// Adds a workload-specific figure.
    pub fn extra(&mut self, key: &str, value: impl Into<Value>) {
        self.extra.insert(key.to_owned(), value.into());
    }

    /// Prints the report as one JSON line on stdout.
    pub fn print(mut self) {
        self.finished_unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let line = serde_json::to_string(&self).expect("a report serializes");
        println!("{line}");
    }
}
