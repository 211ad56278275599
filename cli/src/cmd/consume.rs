//! `riffle consume`: a stream's records on standard output.
//!
//! Three ways to read, one printer:
//! - direct (default): one task per shard (GetRecords, or SubscribeToShard with
//!   `--fan-out`), started in resharding order — a shard starts once every parent it has in
//!   the stream has been read to its end — and each stopping at its end, or when caught up
//!   unless `--follow`;
//! - `--group`: a riffle-kcl worker; its processor prints each batch, then checkpoints it.
//!
//! Records are de-aggregated with riffle-kcl's own function, which also drops an aggregate
//! read from a shard that does not own all its keys (the producer re-sent those records to
//! the right shard after a split), so what is printed is what the KCL would deliver.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::{ShardIteratorType, StartingPosition, SubscribeToShardEventStream};
use aws_smithy_types::DateTime;
use riffle_core::HashKeyRange;
use riffle_kcl::{
    Checkpointer, DeaggregateStats, DynamoDbLeaseStore, InitialPosition, LeaseStore,
    ProcessRecordsInput, ProcessorError, Record, RecordProcessor, RetrievalMode, Scheduler,
    SqliteLeaseStore,
};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::args::{ConsumeArgs, RecordFormat};
use crate::context::Context;
use crate::error::{from_sdk, CliError, USAGE};

type Result<T> = std::result::Result<T, CliError>;

/// Where reading starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    TrimHorizon,
    Latest,
    At(SystemTime),
    /// At this sequence number (the record carrying it first), in its shard.
    AtSequence(String),
}

impl Position {
    fn parse(s: &str) -> Result<Position> {
        let lower = s.to_ascii_lowercase().replace('_', "-");
        match lower.as_str() {
            "trim-horizon" | "beginning" | "oldest" => return Ok(Position::TrimHorizon),
            "latest" | "end" | "now" => return Ok(Position::Latest),
            _ => {}
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            // Seconds since the epoch have at most 12 digits for ten thousand years;
            // sequence numbers have 20 or more.
            if s.len() <= 12 {
                let secs: u64 = s.parse().map_err(|_| bad_position(s))?;
                return Ok(Position::At(
                    SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
                ));
            }
            return Ok(Position::AtSequence(s.to_owned()));
        }
        humantime::parse_rfc3339_weak(s)
            .map(Position::At)
            .map_err(|_| bad_position(s))
    }
}

fn bad_position(s: &str) -> CliError {
    CliError::new(
        USAGE,
        format!(
            "--from {s:?}: expected trim-horizon, latest, a time (2026-12-01T17:00:00Z or \
             seconds since the epoch) or a sequence number"
        ),
    )
}

/// The one printer every reader writes through; it counts and enforces `--count`.
struct Output {
    state: Mutex<OutState>,
    format: RecordFormat,
    limit: Option<u64>,
    /// Cancelled when the limit is reached or standard output is closed.
    done: CancellationToken,
}

struct OutState {
    out: std::io::BufWriter<std::io::Stdout>,
    printed: u64,
}

impl Output {
    fn new(format: RecordFormat, limit: Option<u64>, done: CancellationToken) -> Output {
        Output {
            state: Mutex::new(OutState {
                out: std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout()),
                printed: 0,
            }),
            format,
            limit,
            done,
        }
    }

    /// Prints `records` of `shard` (as many as `--count` still allows) and flushes; how
    /// many were printed. A closed standard output (`| head`) ends the run quietly.
    fn write(&self, shard: &str, records: &[Record]) -> usize {
        if records.is_empty() || self.done.is_cancelled() {
            return 0;
        }
        let mut st = self.state.lock().expect("the printer does not panic");
        let room = self
            .limit
            .map_or(records.len() as u64, |l| l.saturating_sub(st.printed));
        let n = records.len().min(room as usize);
        let mut res = Ok(());
        for r in &records[..n] {
            res = match self.format {
                RecordFormat::Text => st
                    .out
                    .write_all(&r.data)
                    .and_then(|()| st.out.write_all(b"\n")),
                RecordFormat::Json => writeln!(st.out, "{}", record_json(shard, r)),
            };
            if res.is_err() {
                break;
            }
        }
        let res = res.and_then(|()| st.out.flush());
        st.printed += n as u64;
        let reached = self.limit.is_some_and(|l| st.printed >= l);
        drop(st);
        if res.is_err() || reached {
            self.done.cancel();
        }
        if res.is_err() {
            0
        } else {
            n
        }
    }
}

fn record_json(shard: &str, r: &Record) -> serde_json::Value {
    let mut v = json!({
        "shard": shard,
        "sequence_number": r.sequence_number.to_string(),
        "sub_sequence_number": r.sub_sequence_number,
        "partition_key": r.partition_key,
        "arrival": r.approximate_arrival_timestamp
            .map(|t| humantime::format_rfc3339_millis(t).to_string()),
    });
    if let Some(k) = &r.explicit_hash_key {
        v["explicit_hash_key"] = json!(k);
    }
    match std::str::from_utf8(&r.data) {
        Ok(s) => v["data"] = json!(s),
        Err(_) => {
            use base64::Engine;
            v["data_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(&r.data));
        }
    }
    v
}

/// Runs `riffle consume`.
pub(crate) async fn run(ctx: &Context, a: ConsumeArgs) -> Result<()> {
    let position = Position::parse(&a.from)?;
    if a.count == Some(0) {
        return Ok(());
    }
    let summary = ctx
        .kinesis
        .describe_stream_summary()
        .stream_name(&a.stream)
        .send()
        .await
        .map_err(|e| from_sdk(&format!("stream {}", a.stream), &ctx.endpoint, e))?;
    let stream_arn = summary
        .stream_description_summary()
        .map(|s| s.stream_arn().to_owned())
        .unwrap_or_default();
    let done = CancellationToken::new();
    let out = Arc::new(Output::new(a.format, a.count, done.clone()));
    spawn_signal_handler(done.clone());
    match &a.group {
        Some(group) => run_group(ctx, &a, group, position, out, done).await,
        None => {
            let consumer_arn = match &a.fan_out {
                Some(name) => Some(
                    riffle_kcl::ensure_consumer(&ctx.kinesis, &stream_arn, name)
                        .await
                        .map_err(|e| CliError::failed(format!("fan-out consumer {name}: {e}")))?,
                ),
                None => None,
            };
            run_direct(ctx, &a, position, consumer_arn, out, done).await
        }
    }
}

/// SIGINT or SIGTERM ends the run cleanly (what was printed stays printed; a group worker
/// hands its shards over).
fn spawn_signal_handler(done: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        done.cancel();
    });
}

/// A shard as the direct readers need it.
#[derive(Debug, Clone)]
struct ShardInfo {
    id: String,
    parents: Vec<String>,
    range: Option<HashKeyRange>,
    open: bool,
}

/// Every shard of the stream (`riffle stream describe`'s listing), by id.
async fn list_shards(ctx: &Context, stream: &str) -> Result<HashMap<String, ShardInfo>> {
    let all = crate::cmd::stream::shards(ctx, stream).await?;
    Ok(all
        .iter()
        .map(|s| {
            let info = ShardInfo {
                id: s.shard_id().to_owned(),
                parents: [s.parent_shard_id(), s.adjacent_parent_shard_id()]
                    .into_iter()
                    .flatten()
                    .map(str::to_owned)
                    .collect(),
                range: crate::cmd::stream::range_of(s),
                open: s
                    .sequence_number_range()
                    .is_none_or(|r| r.ending_sequence_number().is_none()),
            };
            (info.id.clone(), info)
        })
        .collect())
}

/// How a shard reader ended.
#[derive(Debug)]
enum Ended {
    /// The shard is closed and was read to its end: its children may start.
    ShardEnd,
    /// Caught up with an open shard (without `--follow`), or stopped.
    Stopped,
}

/// Reads shards in resharding order until every reader has ended.
async fn run_direct(
    ctx: &Context,
    a: &ConsumeArgs,
    position: Position,
    consumer_arn: Option<String>,
    out: Arc<Output>,
    done: CancellationToken,
) -> Result<()> {
    let mut shards = list_shards(ctx, &a.stream).await?;
    let only = match (&a.shard, &position) {
        (Some(s), _) => Some(s.clone()),
        (None, Position::AtSequence(seq)) => Some(
            riffle_core::SequenceNumber::from_str(seq)
                .map(|n| n.shard().to_string())
                .map_err(|_| {
                    CliError::new(
                        USAGE,
                        "--from <sequence number> needs --shard (the number does not say which \
                         shard it belongs to)",
                    )
                })?,
        ),
        _ => None,
    };
    let mut started: HashSet<String> = HashSet::new();
    let mut ended: HashSet<String> = HashSet::new();
    let mut first: Vec<(ShardInfo, Position)> = Vec::new();
    if let Some(id) = &only {
        let info = shards.get(id).cloned().ok_or_else(|| {
            CliError::new(
                crate::error::NOT_FOUND,
                format!(
                    "stream {} has no shard {id} (see `riffle stream describe`)",
                    a.stream
                ),
            )
        })?;
        first.push((info, position.clone()));
    } else {
        for s in shards.values() {
            let eligible = match position {
                Position::Latest => s.open,
                _ => s.parents.iter().all(|p| !shards.contains_key(p)),
            };
            if eligible {
                first.push((s.clone(), position.clone()));
            }
        }
    }
    let follow_children = a.shard.is_none();
    let reader = Reader {
        ctx: ctx.clone(),
        stream: a.stream.clone(),
        follow: a.follow,
        consumer_arn,
        out,
        done: done.clone(),
    };
    let mut tasks: JoinSet<(String, Result<Ended>)> = JoinSet::new();
    for (s, p) in first {
        started.insert(s.id.clone());
        let r = reader.clone();
        tasks.spawn(async move { (s.id.clone(), r.read(s, p).await) });
    }
    while let Some(joined) = tasks.join_next().await {
        let (id, res) =
            joined.map_err(|e| CliError::failed(format!("a shard reader failed: {e}")))?;
        match res {
            Err(e) => {
                done.cancel();
                tasks.shutdown().await;
                return Err(e);
            }
            Ok(Ended::Stopped) => {}
            Ok(Ended::ShardEnd) => {
                ended.insert(id.clone());
                if !follow_children || done.is_cancelled() {
                    continue;
                }
                // Its children (and those of a merge, once both parents are done).
                shards = list_shards(ctx, &a.stream).await?;
                let ready: Vec<ShardInfo> = shards
                    .values()
                    .filter(|s| !started.contains(&s.id) && s.parents.contains(&id))
                    .filter(|s| {
                        s.parents
                            .iter()
                            .all(|p| ended.contains(p) || !shards.contains_key(p))
                    })
                    .cloned()
                    .collect();
                for s in ready {
                    started.insert(s.id.clone());
                    let r = reader.clone();
                    tasks.spawn(
                        async move { (s.id.clone(), r.read(s, Position::TrimHorizon).await) },
                    );
                }
            }
        }
    }
    Ok(())
}

/// What every shard reader shares.
#[derive(Clone)]
struct Reader {
    ctx: Context,
    stream: String,
    follow: bool,
    consumer_arn: Option<String>,
    out: Arc<Output>,
    done: CancellationToken,
}

impl Reader {
    async fn read(&self, shard: ShardInfo, from: Position) -> Result<Ended> {
        match &self.consumer_arn {
            Some(arn) => self.subscribe(arn, &shard, from).await,
            None => self.poll(&shard, from).await,
        }
    }

    fn emit(&self, shard: &ShardInfo, records: Vec<aws_sdk_kinesis::types::Record>) {
        let mut stats = DeaggregateStats::default();
        let users = riffle_kcl::deaggregate(records, shard.range.as_ref(), None, &mut stats);
        self.out.write(&shard.id, &users);
    }

    /// GetRecords from `from` to the shard's end (or until caught up, without `--follow`).
    async fn poll(&self, shard: &ShardInfo, from: Position) -> Result<Ended> {
        let k = &self.ctx.kinesis;
        let what = format!("reading {} of {}", shard.id, self.stream);
        let mut last_seq: Option<String> = None;
        let mut iterator: Option<String> = None;
        let mut idle = Duration::from_millis(200);
        loop {
            if self.done.is_cancelled() {
                return Ok(Ended::Stopped);
            }
            let it = match iterator.take() {
                Some(it) => it,
                None => {
                    let (kind, seq, ts) = match (&last_seq, &from) {
                        (Some(s), _) => (
                            ShardIteratorType::AfterSequenceNumber,
                            Some(s.clone()),
                            None,
                        ),
                        (None, p) => iterator_start(p),
                    };
                    let res = k
                        .get_shard_iterator()
                        .stream_name(&self.stream)
                        .shard_id(&shard.id)
                        .shard_iterator_type(kind)
                        .set_starting_sequence_number(seq)
                        .set_timestamp(ts)
                        .send()
                        .await;
                    match res {
                        Ok(o) => match o.shard_iterator {
                            Some(it) => it,
                            None => return Ok(Ended::ShardEnd),
                        },
                        Err(e) if throttled(e.code()) => {
                            self.pause(Duration::from_millis(500)).await;
                            continue;
                        }
                        Err(e) => return Err(from_sdk(&what, &self.ctx.endpoint, e)),
                    }
                }
            };
            let res = k.get_records().shard_iterator(&it).send().await;
            let page = match res {
                Ok(p) => p,
                Err(e) if e.code() == Some("ExpiredIteratorException") => continue,
                Err(e) if throttled(e.code()) => {
                    iterator = Some(it);
                    self.pause(Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => return Err(from_sdk(&what, &self.ctx.endpoint, e)),
            };
            let behind = page.millis_behind_latest.unwrap_or(0);
            let next = page.next_shard_iterator;
            let empty = page.records.is_empty();
            if let Some(r) = page.records.last() {
                last_seq = Some(r.sequence_number.clone());
            }
            self.emit(shard, page.records);
            match next {
                None => return Ok(Ended::ShardEnd),
                Some(n) => iterator = Some(n),
            }
            if empty && behind == 0 {
                if !self.follow {
                    return Ok(Ended::Stopped);
                }
                self.pause(idle).await;
                idle = (idle * 2).min(Duration::from_secs(1));
            } else {
                idle = Duration::from_millis(200);
                if empty {
                    // Behind but empty: the next page is further on; Kinesis allows five
                    // calls per second per shard.
                    self.pause(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// SubscribeToShard from `from`, resubscribing from each subscription's continuation,
    /// to the shard's end (or until caught up, without `--follow`).
    async fn subscribe(&self, arn: &str, shard: &ShardInfo, from: Position) -> Result<Ended> {
        let what = format!("subscribing to {} of {}", shard.id, self.stream);
        let mut continuation: Option<String> = None;
        let mut failures = 0u32;
        loop {
            if self.done.is_cancelled() {
                return Ok(Ended::Stopped);
            }
            let (kind, seq, ts) = match (&continuation, &from) {
                (Some(s), _) => (
                    ShardIteratorType::AfterSequenceNumber,
                    Some(s.clone()),
                    None,
                ),
                (None, p) => iterator_start(p),
            };
            let pos = StartingPosition::builder()
                .r#type(kind)
                .set_sequence_number(seq)
                .set_timestamp(ts)
                .build()
                .map_err(|e| CliError::failed(format!("{what}: {e}")))?;
            let sub = self
                .ctx
                .kinesis
                .subscribe_to_shard()
                .consumer_arn(arn)
                .shard_id(&shard.id)
                .starting_position(pos)
                .send()
                .await;
            let mut events = match sub {
                Ok(s) => s.event_stream,
                // Another subscription of this consumer to the shard is still open (it
                // closes within seconds of its reader going away), or throttled.
                Err(e)
                    if matches!(e.code(), Some("ResourceInUseException"))
                        || throttled(e.code()) =>
                {
                    failures += 1;
                    if failures > 60 {
                        return Err(from_sdk(&what, &self.ctx.endpoint, e));
                    }
                    self.pause(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => return Err(from_sdk(&what, &self.ctx.endpoint, e)),
            };
            failures = 0;
            loop {
                let ev = tokio::select! {
                    _ = self.done.cancelled() => return Ok(Ended::Stopped),
                    ev = events.recv() => ev,
                };
                match ev {
                    Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(ev))) => {
                        let empty = ev.records.is_empty();
                        let caught_up = ev.millis_behind_latest == 0;
                        continuation =
                            Some(ev.continuation_sequence_number.clone()).filter(|c| !c.is_empty());
                        let children = ev.child_shards.as_ref().is_some_and(|c| !c.is_empty());
                        self.emit(shard, ev.records);
                        if continuation.is_none() && children {
                            return Ok(Ended::ShardEnd);
                        }
                        if empty && caught_up && !self.follow {
                            return Ok(Ended::Stopped);
                        }
                    }
                    Ok(Some(_)) => {}
                    // The subscription ended (after five minutes, or the broker closed
                    // it): again from the continuation.
                    Ok(None) => break,
                    Err(e) => {
                        failures += 1;
                        if failures > 10 {
                            return Err(CliError::failed(format!("{what}: {e}")));
                        }
                        self.pause(Duration::from_secs(1)).await;
                        break;
                    }
                }
            }
        }
    }

    async fn pause(&self, d: Duration) {
        tokio::select! {
            _ = self.done.cancelled() => {}
            _ = tokio::time::sleep(d) => {}
        }
    }
}

fn throttled(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("ProvisionedThroughputExceededException" | "LimitExceededException")
    )
}

/// The iterator type, sequence number and timestamp a position starts at.
fn iterator_start(p: &Position) -> (ShardIteratorType, Option<String>, Option<DateTime>) {
    match p {
        Position::TrimHorizon => (ShardIteratorType::TrimHorizon, None, None),
        Position::Latest => (ShardIteratorType::Latest, None, None),
        Position::At(t) => (
            ShardIteratorType::AtTimestamp,
            None,
            Some(DateTime::from(*t)),
        ),
        Position::AtSequence(s) => (ShardIteratorType::AtSequenceNumber, Some(s.clone()), None),
    }
}

/// The SQLite lease store `--lease-store` names (DynamoDB is set up by the caller).
fn lease_store(spec: Option<&str>, group: &str) -> Result<Arc<dyn LeaseStore>> {
    let path = match spec {
        Some(s) => match s.strip_prefix("sqlite:") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => {
                return Err(CliError::new(
                    USAGE,
                    format!("--lease-store {s:?}: expected sqlite:PATH or dynamodb"),
                ))
            }
        },
        None => default_lease_file(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::failed(format!("cannot create {}: {e}", dir.display())))?;
    }
    let store = SqliteLeaseStore::open(&path, group)
        .map_err(|e| CliError::failed(format!("lease store {}: {e}", path.display())))?;
    Ok(Arc::new(store))
}

/// `$XDG_STATE_HOME/riffle/leases.db`, else `~/.local/state/riffle/leases.db`.
fn default_lease_file() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("riffle").join("leases.db")
}

/// Prints each batch, then checkpoints what it printed.
struct GroupPrinter {
    shard: String,
    out: Arc<Output>,
}

impl RecordProcessor for GroupPrinter {
    async fn process_records(
        &mut self,
        input: &ProcessRecordsInput,
        checkpointer: &mut Checkpointer,
    ) -> std::result::Result<(), ProcessorError> {
        let n = self.out.write(&self.shard, &input.records);
        if n == input.records.len() {
            checkpointer.checkpoint().await?;
        } else if n > 0 {
            checkpointer
                .checkpoint_record(&input.records[n - 1])
                .await?;
        }
        Ok(())
    }
}

/// A riffle-kcl worker of the group, until interrupted or `--count`.
async fn run_group(
    ctx: &Context,
    a: &ConsumeArgs,
    group: &str,
    position: Position,
    out: Arc<Output>,
    done: CancellationToken,
) -> Result<()> {
    let mut config = riffle_kcl::Config::new(group, &a.stream);
    match position {
        Position::TrimHorizon => config.initial_position = InitialPosition::TrimHorizon,
        Position::Latest => config.initial_position = InitialPosition::Latest,
        Position::At(t) => {
            config.initial_position = InitialPosition::AtTimestamp;
            config.initial_timestamp = Some(t);
        }
        Position::AtSequence(_) => {
            return Err(CliError::new(
                USAGE,
                "--group starts shards without a checkpoint at trim-horizon, latest or a time, \
                 not at a sequence number",
            ))
        }
    }
    if let Some(name) = &a.fan_out {
        config.retrieval.mode = RetrievalMode::FanOut;
        config.retrieval.consumer_name = Some(name.clone());
    }
    let store = match a.lease_store.as_deref() {
        Some("dynamodb") => {
            let store: Arc<dyn LeaseStore> =
                Arc::new(DynamoDbLeaseStore::new(ctx.dynamodb(), group));
            store
        }
        other => lease_store(other, group)?,
    };
    let scheduler = Scheduler::builder(config, ctx.kinesis.clone(), store, move |shard: &str| {
        GroupPrinter {
            shard: shard.to_owned(),
            out: out.clone(),
        }
    })
    .build()
    .map_err(|e| CliError::new(USAGE, format!("--group {group}: {e}")))?;
    let stop = scheduler.shutdown_handle();
    tokio::spawn(async move {
        done.cancelled().await;
        stop.shutdown();
    });
    scheduler
        .run()
        .await
        .map_err(|e| CliError::failed(format!("consumer group {group}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse() {
        assert_eq!(
            Position::parse("trim-horizon").unwrap(),
            Position::TrimHorizon
        );
        assert_eq!(
            Position::parse("TRIM_HORIZON").unwrap(),
            Position::TrimHorizon
        );
        assert_eq!(Position::parse("latest").unwrap(), Position::Latest);
        assert_eq!(
            Position::parse("1700000000").unwrap(),
            Position::At(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(
            Position::parse("2023-11-14T22:13:20Z").unwrap(),
            Position::At(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        let seq = "49546986683135544286507457936321625675700192471156785154";
        assert_eq!(
            Position::parse(seq).unwrap(),
            Position::AtSequence(seq.to_owned())
        );
        assert_eq!(Position::parse("yesterday").unwrap_err().code, USAGE);
    }
}
