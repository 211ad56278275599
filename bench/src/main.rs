//! `riffle-load`: drives a Kinesis-compatible endpoint over its real socket and prints one
//! JSON line per run.
//!
//! Every request is a SigV4-signed (dummy credentials) `POST /` with a JSON body, over
//! HTTP/1.1 or cleartext HTTP/2 with prior knowledge (`--http2`). Every workload is bounded
//! in records and in time, and stops by itself; a hard limit (`--max-run-secs`) ends a run
//! that hangs. See `bench/run.sh` for the whole comparison and `BENCHMARKS.md` for results.

use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;

use riffle_bench::client::{CallError, ClientOptions, Kinesis};
use riffle_bench::report::{Report, Status};
use riffle_bench::{kinesis, workload, Common, Ctx};

/// Load generator for Kinesis-compatible endpoints.
#[derive(Debug, Parser)]
#[command(name = "riffle-load", version)]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// PutRecords throughput: batches of `--batch` records from `--concurrency` callers.
    PutRecords(workload::put::PutRecordsArgs),
    /// User records/s through the riffle-kpl producer library (aggregation on or off).
    Kpl(workload::kpl::KplArgs),
    /// Sequential PutRecord at a fixed rate: latency percentiles.
    PutRecordLatency(workload::latency::LatencyArgs),
    /// Fill a stream, then read it all from TRIM_HORIZON across shards in parallel.
    Read(workload::read::ReadArgs),
    /// Delay from a put's acknowledgement to the record in a polling consumer's hand.
    Propagation(workload::propagation::PropagationArgs),
    /// Producer at a multiple of the consumer's capacity, then at a normal rate:
    /// MillisBehindLatest over time and recovery time.
    Burst(workload::burst::BurstArgs),
    /// Many shards and streams: the broker's resident memory idle and under load.
    Scale(workload::scale::ScaleArgs),
    /// Fill a data directory, restart the broker, time until it answers.
    Startup(workload::startup::StartupArgs),
    /// Delay from a put's acknowledgement to the record in a SubscribeToShard consumer's hand.
    Subscribe(workload::subscribe::SubscribeArgs),
    /// Producers, polling and fan-out consumers, resharding and hostile clients at once:
    /// no acknowledged record lost, the broker's memory over time.
    Soak(workload::soak::SoakArgs),
}

impl Workload {
    fn name(&self) -> &'static str {
        match self {
            Workload::PutRecords(_) => "put-records",
            Workload::Kpl(_) => "kpl",
            Workload::PutRecordLatency(_) => "put-record-latency",
            Workload::Read(_) => "read",
            Workload::Propagation(_) => "propagation",
            Workload::Burst(_) => "burst",
            Workload::Scale(_) => "scale",
            Workload::Startup(_) => "startup",
            Workload::Subscribe(_) => "subscribe",
            Workload::Soak(_) => "soak",
        }
    }

    fn common(&self) -> &Common {
        match self {
            Workload::PutRecords(a) => &a.common,
            Workload::Kpl(a) => &a.common,
            Workload::PutRecordLatency(a) => &a.common,
            Workload::Read(a) => &a.common,
            Workload::Propagation(a) => &a.common,
            Workload::Burst(a) => &a.common,
            Workload::Scale(a) => &a.common,
            Workload::Startup(a) => &a.common,
            Workload::Subscribe(a) => &a.common,
            Workload::Soak(a) => &a.common,
        }
    }

    fn params(&self) -> Value {
        match self {
            Workload::PutRecords(a) => a.params(),
            Workload::Kpl(a) => a.params(),
            Workload::PutRecordLatency(a) => a.params(),
            Workload::Read(a) => a.params(),
            Workload::Propagation(a) => a.params(),
            Workload::Burst(a) => a.params(),
            Workload::Scale(a) => a.params(),
            Workload::Startup(a) => a.params(),
            Workload::Subscribe(a) => a.params(),
            Workload::Soak(a) => a.params(),
        }
    }

    /// The longest this run may take before it is cut off.
    fn hard_limit(&self) -> Duration {
        let c = self.common();
        let bound = match self {
            Workload::PutRecords(a) => a.duration() + 60.0,
            Workload::Kpl(a) => a.duration() + 120.0,
            Workload::PutRecordLatency(a) => a.duration() * 2.0 + 60.0,
            Workload::Read(a) => a.fill_secs + a.duration() + 120.0,
            Workload::Propagation(a) => a.duration() + a.drain_secs + 60.0,
            Workload::Burst(a) => a.burst_secs + a.recovery_secs + 90.0,
            Workload::Scale(a) => a.duration() + a.create_secs + 120.0,
            Workload::Startup(a) => a.fill_secs + a.startup_timeout_secs + 120.0,
            Workload::Subscribe(a) => a.duration() + a.drain_secs + 60.0,
            Workload::Soak(a) => a.duration() + a.drain_secs + 120.0,
        };
        Duration::from_secs_f64(c.max_run_secs.unwrap_or(bound).max(1.0))
    }
}

fn failure_report(w: &Workload, err: &anyhow::Error) -> Report {
    let c = w.common();
    let mut r = Report::new(w.name(), &c.target_name, c.http2, w.params());
    let unsupported = err.chain().any(|e| {
        e.downcast_ref::<CallError>()
            .is_some_and(|c| c.is_unsupported())
    });
    r.status = if unsupported {
        Status::Unsupported
    } else {
        Status::Failed
    };
    r.reason = Some(kinesis::truncate(&format!("{err:#}")));
    r
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let w = cli.workload;
    let c = w.common().clone();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(c.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("riffle-load: cannot start the runtime: {e}");
            return std::process::ExitCode::from(70);
        }
    };
    let k = match Kinesis::new(ClientOptions {
        endpoint: c.endpoint.clone(),
        http2: c.http2,
        region: c.region.clone(),
        timeout: Duration::from_secs_f64(c.request_timeout_secs),
    }) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("riffle-load: {e:#}");
            return std::process::ExitCode::from(64);
        }
    };
    let ctx = Ctx { k, common: c };
    let limit = w.hard_limit();
    let report = runtime.block_on(async {
        let run = async {
            match &w {
                Workload::PutRecords(a) => workload::put::run(&ctx, a).await,
                Workload::Kpl(a) => workload::kpl::run(&ctx, a).await,
                Workload::PutRecordLatency(a) => workload::latency::run(&ctx, a).await,
                Workload::Read(a) => workload::read::run(&ctx, a).await,
                Workload::Propagation(a) => workload::propagation::run(&ctx, a).await,
                Workload::Burst(a) => workload::burst::run(&ctx, a).await,
                Workload::Scale(a) => workload::scale::run(&ctx, a).await,
                Workload::Startup(a) => workload::startup::run(&ctx, a).await,
                Workload::Subscribe(a) => workload::subscribe::run(&ctx, a).await,
                Workload::Soak(a) => workload::soak::run(&ctx, a).await,
            }
        };
        match tokio::time::timeout(limit, run).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => failure_report(&w, &e),
            Err(_) => failure_report(
                &w,
                &anyhow::anyhow!("hard time limit of {:.0} s reached", limit.as_secs_f64()),
            ),
        }
    });
    report.print();
    // Do not wait for stragglers (a hung connection must not outlive the limit).
    runtime.shutdown_timeout(Duration::from_secs(2));
    std::process::ExitCode::SUCCESS
}
