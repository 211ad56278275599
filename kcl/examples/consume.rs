//! A runnable consumer: prints every user record of a stream and checkpoints after each
//! batch. Several copies share the stream's shards; Ctrl-C or SIGTERM hands them over at once.
//!
//! ```text
//! cargo run --release -p riffle-broker -- --allow-anonymous &   # a local broker on :4567
//! aws kinesis --endpoint-url http://127.0.0.1:4567 create-stream --stream-name orders --shard-count 2
//! KCL_ENDPOINT=http://127.0.0.1:4567 cargo run -p riffle-kcl --example consume -- orders my-app
//! ```
//!
//! Arguments: `<stream> <application> [sqlite-file | dynamodb] [polling | fan_out]`.
//! Leases go to the SQLite file (default `kcl-leases.db`), or with `dynamodb` to the DynamoDB
//! table named after the application (endpoint from the usual AWS configuration, e.g.
//! `AWS_ENDPOINT_URL_DYNAMODB`). `KCL_ENDPOINT` points Kinesis elsewhere than AWS; without
//! credentials configured, dummy ones are used for a local endpoint.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use riffle_kcl::{
    Checkpointer, Config, DynamoDbLeaseStore, InitialPosition, InitializeInput, LeaseStore,
    ProcessRecordsInput, ProcessorError, RecordProcessor, RetrievalMode, Scheduler,
    SqliteLeaseStore,
};

struct Printer {
    shard: String,
}

impl RecordProcessor for Printer {
    async fn initialize(&mut self, input: InitializeInput) -> Result<(), ProcessorError> {
        eprintln!("{}: starting after {}", self.shard, input.checkpoint);
        Ok(())
    }

    async fn process_records(
        &mut self,
        input: &ProcessRecordsInput,
        checkpointer: &mut Checkpointer,
    ) -> Result<(), ProcessorError> {
        for r in &input.records {
            println!(
                "{} {}/{} {} {}",
                self.shard,
                r.sequence_number,
                r.sub_sequence_number,
                r.partition_key,
                String::from_utf8_lossy(&r.data)
            );
        }
        checkpointer.checkpoint().await?;
        Ok(())
    }

    async fn lease_lost(&mut self) {
        eprintln!("{}: lease lost", self.shard);
    }

    async fn shutdown_requested(
        &mut self,
        checkpointer: &mut Checkpointer,
    ) -> Result<(), ProcessorError> {
        checkpointer.checkpoint().await?;
        eprintln!("{}: handed over", self.shard);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [stream, app, rest @ ..] = args.as_slice() else {
        anyhow::bail!(
            "usage: consume <stream> <application> [sqlite-file | dynamodb] [polling | fan_out]"
        );
    };
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Ok(endpoint) = std::env::var("KCL_ENDPOINT") {
        loader = loader.endpoint_url(endpoint);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                    "local", "local", None, None, "example",
                ));
        }
    }
    let sdk = loader.load().await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let store: Arc<dyn LeaseStore> = match rest.first().map(String::as_str) {
        Some("dynamodb") => Arc::new(DynamoDbLeaseStore::new(
            aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await),
            app,
        )),
        file => Arc::new(SqliteLeaseStore::open(
            file.unwrap_or("kcl-leases.db"),
            app,
        )?),
    };
    let mut config = Config::new(app, stream);
    config.initial_position = InitialPosition::TrimHorizon;
    if rest.get(1).map(String::as_str) == Some("fan_out") {
        config.retrieval.mode = RetrievalMode::FanOut;
    }
    let mut registry = Registry::default();
    let scheduler = Scheduler::builder(config, kinesis, store, |shard| Printer {
        shard: shard.to_owned(),
    })
    .metrics(&mut registry)
    .build()?;
    eprintln!("worker {}", scheduler.worker_id());
    let stop = scheduler.shutdown_handle();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            stop.shutdown();
        }
    });
    scheduler.run().await?;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    eprintln!("{text}");
    Ok(())
}
