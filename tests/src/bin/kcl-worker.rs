//! `kcl-worker`: a test helper that runs one `riffle_kcl::Scheduler` and logs, as JSON lines
//! appended to `--out`, everything the processor sees:
//!
//! ```text
//! {"ev":"init","w":..,"shard":..,"cp":"<seq>/<sub>|TRIM_HORIZON|…","t":<unix ms>}
//! {"ev":"rec","w":..,"shard":..,"seq":..,"sub":..,"data":"<utf-8>","t":..}
//! {"ev":"cp","w":..,"shard":..,"cp":..,"t":..}          a checkpoint that was written
//! {"ev":"end"|"lost"|"shutdown","w":..,"shard":..,"t":..}
//! ```
//!
//! It checkpoints after every batch. SIGTERM shuts it down gracefully. Used by the
//! multi-process kcl tests (kill -9, graceful handoff) and the benchmarks.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use riffle_kcl::{
    Checkpointer, Config, DynamoDbLeaseStore, InitialPosition, InitializeInput, LeaseStore,
    ProcessRecordsInput, ProcessorError, RecordProcessor, RetrievalMode, Scheduler,
    SqliteLeaseStore,
};
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    /// Kinesis endpoint URL.
    #[arg(long)]
    endpoint: String,
    #[arg(long)]
    stream: String,
    #[arg(long)]
    app: String,
    #[arg(long)]
    worker_id: String,
    /// `sqlite:<path>` or `dynamodb:<endpoint url>`.
    #[arg(long)]
    store: String,
    #[arg(long, default_value = "polling")]
    mode: String,
    /// JSON-lines output file (appended).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 3000)]
    failover_ms: u64,
    #[arg(long, default_value_t = 250)]
    taker_ms: u64,
    /// Do not log each record (benchmarks): only counts per batch.
    #[arg(long)]
    quiet_records: bool,
}

type Out = Arc<Mutex<std::io::BufWriter<std::fs::File>>>;

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn emit(out: &Out, v: serde_json::Value) {
    let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
    let _ = writeln!(w, "{v}");
    let _ = w.flush();
}

struct Logger {
    worker: String,
    shard: String,
    out: Out,
    quiet: bool,
}

impl Logger {
    fn ev(&self, ev: &str) {
        emit(
            &self.out,
            json!({"ev": ev, "w": self.worker, "shard": self.shard, "t": now_ms() as u64}),
        );
    }
}

impl RecordProcessor for Logger {
    async fn initialize(&mut self, input: InitializeInput) -> Result<(), ProcessorError> {
        emit(
            &self.out,
            json!({"ev": "init", "w": self.worker, "shard": self.shard,
                   "cp": input.checkpoint.to_string(), "t": now_ms() as u64}),
        );
        Ok(())
    }

    async fn process_records(
        &mut self,
        input: &ProcessRecordsInput,
        cp: &mut Checkpointer,
    ) -> Result<(), ProcessorError> {
        if self.quiet {
            emit(
                &self.out,
                json!({"ev": "batch", "w": self.worker, "shard": self.shard,
                       "n": input.records.len(), "t": now_ms() as u64}),
            );
        } else {
            let t = now_ms() as u64;
            let mut w = self.out.lock().unwrap_or_else(|p| p.into_inner());
            for r in &input.records {
                let line = json!({"ev": "rec", "w": self.worker, "shard": self.shard,
                    "seq": r.sequence_number.as_str(), "sub": r.sub_sequence_number,
                    "data": String::from_utf8_lossy(&r.data), "t": t});
                let _ = writeln!(w, "{line}");
            }
            let _ = w.flush();
        }
        if cp.checkpoint().await.is_ok() {
            emit(
                &self.out,
                json!({"ev": "cp", "w": self.worker, "shard": self.shard,
                       "cp": cp.last_checkpoint().to_string(), "t": now_ms() as u64}),
            );
        }
        Ok(())
    }

    async fn lease_lost(&mut self) {
        self.ev("lost");
    }

    async fn shard_ended(&mut self, cp: &mut Checkpointer) -> Result<(), ProcessorError> {
        cp.checkpoint().await?;
        self.ev("end");
        Ok(())
    }

    async fn shutdown_requested(&mut self, cp: &mut Checkpointer) -> Result<(), ProcessorError> {
        cp.checkpoint().await?;
        self.ev("shutdown");
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let store: Arc<dyn LeaseStore> = if let Some(path) = args.store.strip_prefix("sqlite:") {
        Arc::new(SqliteLeaseStore::open(path, &args.app)?)
    } else if let Some(url) = args.store.strip_prefix("dynamodb:") {
        Arc::new(DynamoDbLeaseStore::new(
            riffle_tests::moto::dynamodb_client(url),
            &args.app,
        ))
    } else {
        anyhow::bail!("--store must be sqlite:<path> or dynamodb:<url>");
    };
    let mut config = Config::new(&args.app, &args.stream);
    config.worker_id = Some(args.worker_id.clone());
    config.initial_position = InitialPosition::TrimHorizon;
    config.failover_time = Duration::from_millis(args.failover_ms);
    config.lease_taker_interval = Duration::from_millis(args.taker_ms);
    config.parent_poll_interval = Duration::from_millis(200);
    config.retrieval.idle_time = Duration::from_millis(200);
    config.retrieval.min_poll_interval = Duration::from_millis(20);
    config.retrieval.mode = match args.mode.as_str() {
        "polling" => RetrievalMode::Polling,
        "fan_out" => RetrievalMode::FanOut,
        other => anyhow::bail!("--mode {other}: polling or fan_out"),
    };
    let out: Out = Arc::new(Mutex::new(std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.out)?,
    )));
    let kinesis = riffle_tests::make_client(&args.endpoint);
    let worker = args.worker_id.clone();
    let quiet = args.quiet_records;
    let scheduler = Scheduler::builder(config, kinesis, store, move |shard| Logger {
        worker: worker.clone(),
        shard: shard.to_owned(),
        out: Arc::clone(&out),
        quiet,
    })
    .build()?;
    let stop = scheduler.shutdown_handle();
    tokio::spawn(async move {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
            stop.shutdown();
        }
    });
    println!("kcl-worker ready {}", args.worker_id);
    scheduler.run().await?;
    Ok(())
}
