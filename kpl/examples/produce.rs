//! Puts records read from standard input into a Kinesis stream with riffle-kpl, then prints
//! where each one was written.
//!
//! ```text
//! cargo run --release -p riffle-broker -- --allow-anonymous &   # a local broker on :4567
//! export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1
//! printf 'user-1\thello\nuser-2\tworld\n' |
//!   cargo run -p riffle-kpl --example produce -- --endpoint http://127.0.0.1:4567 \
//!     --stream orders --create 2
//! ```
//!
//! Each input line is one record, `partition_key<TAB>data[<TAB>explicit hash key]`; with
//! `--hex` the data column is hexadecimal (for binary data); `--ordered` uses the
//! producer's ordered mode (each shard gets its records in input order). Each output line is a JSON
//! object for one input line, in input order: `line`, and `shard_id`, `sequence_number`,
//! `sub_sequence_number` (null if the record was sent unaggregated), `attempts` — or
//! `error` with the reason and the last attempt's error code. `--create N` creates the
//! stream with N shards first unless it exists. Credentials and region come from the
//! standard AWS configuration chain; `--endpoint` overrides the Kinesis endpoint.
//! The exit status is 1 if any record failed.

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use riffle_kpl::{Config, Producer, Record};

struct Args {
    endpoint: Option<String>,
    stream: String,
    create: Option<i32>,
    hex: bool,
    ordered: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut endpoint, mut stream, mut create, mut hex, mut ordered) =
        (None, None, None, false, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--endpoint" => endpoint = Some(args.next().ok_or("--endpoint needs a URL")?),
            "--stream" => stream = Some(args.next().ok_or("--stream needs a name")?),
            "--create" => {
                let n = args.next().ok_or("--create needs a shard count")?;
                create = Some(n.parse().map_err(|_| format!("bad shard count {n:?}"))?);
            }
            "--hex" => hex = true,
            "--ordered" => ordered = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        endpoint,
        stream: stream.ok_or("--stream is required")?,
        create,
        hex,
        ordered,
    })
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

fn parse_line(line: &str, hex: bool) -> Result<Record, String> {
    let mut cols = line.split('\t');
    let pk = cols.next().unwrap_or_default();
    let data = cols.next().ok_or("expected partition_key<TAB>data")?;
    let data = if hex {
        unhex(data)?
    } else {
        data.as_bytes().to_vec()
    };
    let record = Record::new(pk, data);
    Ok(match cols.next().filter(|e| !e.is_empty()) {
        Some(ehk) => record.with_explicit_hash_key(ehk),
        None => record,
    })
}

async fn create_stream(endpoint: Option<&str>, stream: &str, shards: i32) -> Result<(), String> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let mut conf = aws_sdk_kinesis::config::Builder::from(&sdk);
    if let Some(url) = endpoint {
        conf = conf.endpoint_url(url);
    }
    let client = aws_sdk_kinesis::Client::from_conf(conf.build());
    if let Err(e) = client
        .create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await
    {
        let exists = e
            .as_service_error()
            .is_some_and(|se| se.is_resource_in_use_exception());
        if !exists {
            return Err(format!(
                "CreateStream: {}",
                aws_sdk_kinesis::error::DisplayErrorContext(e)
            ));
        }
    }
    for _ in 0..300 {
        let s = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .map_err(|e| format!("DescribeStreamSummary: {e}"))?;
        let active = s
            .stream_description_summary()
            .is_some_and(|d| d.stream_status() == &aws_sdk_kinesis::types::StreamStatus::Active);
        if active {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("stream {stream} did not become ACTIVE"))
}

async fn run(args: Args) -> Result<bool, String> {
    if let Some(shards) = args.create {
        create_stream(args.endpoint.as_deref(), &args.stream, shards).await?;
    }
    let config = Config {
        ordered: args.ordered,
        ..Config::default()
    };
    let mut builder = Producer::builder(config);
    if let Some(url) = &args.endpoint {
        builder = builder.endpoint_url(url);
    }
    let producer = builder.build().await.map_err(|e| e.to_string())?;

    // Put every line (waiting when the buffer is full), keeping the handles in order.
    let mut handles = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let record = parse_line(&line, args.hex)?;
        handles.push(producer.put_record(&args.stream, record).await);
    }
    let mut all_ok = true;
    for (i, h) in handles.into_iter().enumerate() {
        let outcome = match h {
            Ok(handle) => handle.await,
            Err(e) => Err(e),
        };
        let line = match outcome {
            Ok(r) => serde_json::json!({
                "line": i,
                "shard_id": r.shard_id(),
                "sequence_number": r.sequence_number(),
                "sub_sequence_number": r.sub_sequence_number(),
                "attempts": r.attempts(),
            }),
            Err(e) => {
                all_ok = false;
                serde_json::json!({
                    "line": i,
                    "error": e.to_string(),
                    "error_code": e.last_error_code(),
                })
            }
        };
        println!("{line}");
    }
    producer.shutdown().await.map_err(|e| e.to_string())?;
    Ok(all_ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("produce: {e}");
            return ExitCode::from(64);
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("produce: {e}");
            ExitCode::from(70)
        }
    }
}
