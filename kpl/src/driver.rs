//! The async shell around the [`Pipeline`]: one engine task owns it and executes what it
//! decides — it takes accepted records from the intake, sends the requests the pipeline
//! builds (each on its own task, at most `max_concurrent_requests` at once), fetches shard
//! maps, resolves every finished record's `put`, and gives the buffer budget back.
//!
//! ```text
//! put/try_put ──(budget: records + bytes semaphores)──▶ Intake (mutex'd Vec, batch handoff)
//!                                                          │ Notify
//!                                                          ▼
//!                                          engine task: Pipeline + timers
//!                         ┌── PutRecords task ×N ◀──────────┤──────────▶ ListShards task
//!                         └────────── Event (Response) ───▶ │ ◀── Event (Shards) ──┘
//!                                                          ▼
//!                                  resolve puts, release budget, answer flush/shutdown
//! ```
//!
//! The handoff is by batch: `put` pushes onto a vector under a short lock and wakes the
//! engine only when the vector was empty; the engine swaps the whole vector out. No
//! per-record channel send, no per-record task.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardFilter, ShardFilterType};
use aws_sdk_kinesis::Client;
use parking_lot::Mutex;
use riffle_core::{HashKey, HashKeyRange};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio::time::Instant;

use crate::config::Config;
use crate::error::PutErrorKind;
use crate::metrics::{Metrics, StreamMetrics};
use crate::pipeline::{
    CallError, EntryResult, Finished, Pipeline, Request, Response, Settings, StreamIx,
};
use crate::record::{Pending, Verdict};
use crate::retry::{classify, ErrorClass};
use crate::shard_map::ShardInfo;

/// Most ListShards pages read for one map (1,000 shards each).
const MAX_LIST_SHARDS_PAGES: usize = 100;

/// How long the engine lets records gather in the intake after the first one arrives
/// before it takes them. Waking it for every record would cost a thread wake-up each;
/// nothing is sent sooner than this anyway unless a request fills.
const INTAKE_LINGER: Duration = Duration::from_millis(1);

/// A batch this large is taken at once.
const INTAKE_HIGH_WATER: usize = 4096;

/// Records accepted by `put` on their way to the engine.
#[derive(Debug, Default)]
pub(crate) struct Intake {
    batch: Vec<(StreamIx, Pending)>,
    streams: std::collections::HashMap<Arc<str>, StreamIx>,
    /// Every stream name by index; the engine learns new ones with each batch.
    names: Vec<Arc<str>>,
    last: Option<(Arc<str>, StreamIx)>,
    /// The flush epoch new records belong to.
    pub(crate) epoch: u32,
    /// Set by `shutdown`; no record is accepted after it.
    pub(crate) closed: bool,
}

impl Intake {
    fn stream_ix(&mut self, stream: &str) -> StreamIx {
        if let Some((name, ix)) = &self.last {
            if &**name == stream {
                return *ix;
            }
        }
        let ix = match self.streams.get(stream) {
            Some(&ix) => ix,
            None => {
                let name: Arc<str> = stream.into();
                let ix = self.names.len() as StreamIx;
                self.names.push(name.clone());
                self.streams.insert(name, ix);
                ix
            }
        };
        self.last = Some((self.names[ix as usize].clone(), ix));
        ix
    }
}

/// What the producer handles and the engine share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) intake: Mutex<Intake>,
    pub(crate) wake: Notify,
    /// Budget of buffered records and bytes; closed when the engine ends.
    pub(crate) records: Semaphore,
    pub(crate) bytes: Semaphore,
    /// `shutdown` was called (checked before waiting for budget).
    pub(crate) closed: AtomicBool,
    pub(crate) config: Config,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Shared {
        Shared {
            intake: Mutex::new(Intake::default()),
            wake: Notify::new(),
            records: Semaphore::new(config.max_buffered_records),
            bytes: Semaphore::new(config.max_buffered_bytes),
            closed: AtomicBool::new(false),
            config,
        }
    }

    /// Hands an accepted record to the engine; gives it back if the producer is shut down.
    // The error is the rare shut-down case; boxing it would not make the common one cheaper.
    #[allow(clippy::result_large_err)]
    pub(crate) fn push(&self, stream: &str, mut p: Pending) -> Result<(), Pending> {
        let wake = {
            let mut intake = self.intake.lock();
            if intake.closed {
                return Err(p);
            }
            p.epoch = intake.epoch;
            let ix = intake.stream_ix(stream);
            intake.batch.push((ix, p));
            // The first record of a batch tells the engine to come within INTAKE_LINGER;
            // a full batch, at once.
            intake.batch.len() == 1 || intake.batch.len() == INTAKE_HIGH_WATER
        };
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Records accepted and not yet resolved (those admitted and still on their way into
    /// the intake included).
    pub(crate) fn outstanding(&self) -> usize {
        self.config.max_buffered_records - self.records.available_permits()
    }

    /// Gives back the budget of records that will not be buffered after all.
    pub(crate) fn release(&self, records: usize, bytes: usize) {
        self.records.add_permits(records);
        self.bytes.add_permits(bytes);
    }
}

/// Requests from producer handles to the engine.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send everything now; answer once every record of epochs up to this one is resolved.
    Flush(u32, oneshot::Sender<()>),
    /// Like a flush of everything, then end the engine.
    Shutdown(oneshot::Sender<()>),
}

/// What tasks the engine started report back.
#[derive(Debug)]
enum Event {
    Response(Response),
    Shards(StreamIx, Result<Vec<ShardInfo>, CallError>),
}

/// The engine task's state.
#[derive(Debug)]
pub(crate) struct Engine {
    shared: Arc<Shared>,
    pipeline: Pipeline,
    client: Client,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_open: bool,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    in_flight: usize,
    max_in_flight: usize,
    /// Unresolved records per flush epoch.
    epochs: BTreeMap<u32, usize>,
    flushes: Vec<(u32, oneshot::Sender<()>)>,
    shutdowns: Vec<oneshot::Sender<()>>,
    shutting_down: bool,
    out: Vec<Finished>,
    spare: Vec<(StreamIx, Pending)>,
    metrics: Metrics,
    streams: Vec<StreamMetrics>,
    buffered_bytes: usize,
    /// When to take the intake (set by the first record's wake-up).
    intake_due: Option<Instant>,
}

impl Engine {
    pub(crate) fn new(
        shared: Arc<Shared>,
        client: Client,
        commands: mpsc::UnboundedReceiver<Command>,
        metrics: Metrics,
    ) -> Engine {
        let (events_tx, events) = mpsc::unbounded_channel();
        let settings = Settings::from_config(&shared.config);
        let max_in_flight = shared.config.max_concurrent_requests;
        Engine {
            pipeline: Pipeline::new(settings, Instant::now(), rand::random()),
            shared,
            client,
            commands,
            commands_open: true,
            events_tx,
            events,
            in_flight: 0,
            max_in_flight,
            epochs: BTreeMap::new(),
            flushes: Vec::new(),
            shutdowns: Vec::new(),
            shutting_down: false,
            out: Vec::new(),
            spare: Vec::new(),
            metrics,
            streams: Vec::new(),
            buffered_bytes: 0,
            intake_due: None,
        }
    }

    /// Runs until shut down (explicitly, or because every producer handle was dropped) and
    /// every record is resolved.
    pub(crate) async fn run(mut self) {
        loop {
            let now = Instant::now();
            self.pipeline.advance(now, &mut self.out);
            self.dispatch(now);
            self.complete();
            self.answer_flushes();
            if self.shutting_down
                && self.pipeline.held() == 0
                && self.shared.intake.lock().batch.is_empty()
            {
                break;
            }
            let mut wake = self
                .pipeline
                .next_wakeup(self.in_flight < self.max_in_flight);
            if let Some(due) = self.intake_due {
                wake = Some(wake.map_or(due, |w| w.min(due)));
            }
            tokio::select! {
                biased;
                Some(ev) = self.events.recv() => {
                    self.on_event(ev);
                    while let Ok(ev) = self.events.try_recv() {
                        self.on_event(ev);
                    }
                }
                cmd = self.commands.recv(), if self.commands_open => {
                    self.take_intake();
                    match cmd {
                        Some(Command::Flush(epoch, reply)) => self.flushes.push((epoch, reply)),
                        Some(Command::Shutdown(reply)) => {
                            self.shutdowns.push(reply);
                            self.shutting_down = true;
                        }
                        None => {
                            // Every producer handle is gone: deliver what is left, then end.
                            self.commands_open = false;
                            self.shutting_down = true;
                        }
                    }
                    self.update_flushing();
                }
                _ = self.shared.wake.notified() => {
                    if self.intake_due.is_some() || self.shutting_down {
                        // A full batch (or the last records): take it now.
                        self.take_intake();
                    } else {
                        self.intake_due = Some(Instant::now() + INTAKE_LINGER);
                    }
                }
                _ = sleep_until(wake), if wake.is_some() => {
                    if self.intake_due.is_some_and(|d| d <= Instant::now()) {
                        self.take_intake();
                    }
                }
            }
        }
        self.shared.records.close();
        self.shared.bytes.close();
        for reply in self.shutdowns.drain(..) {
            let _ = reply.send(());
        }
        for (_, reply) in self.flushes.drain(..) {
            let _ = reply.send(());
        }
        tracing::debug!("producer stopped");
    }

    fn update_flushing(&mut self) {
        self.pipeline
            .set_flushing(self.shutting_down || !self.flushes.is_empty());
    }

    fn stream_metrics(&mut self, s: StreamIx) -> &StreamMetrics {
        while self.streams.len() <= s as usize {
            let name = self
                .pipeline
                .stream_name(self.streams.len() as StreamIx)
                .clone();
            self.streams.push(self.metrics.stream(&name));
        }
        &self.streams[s as usize]
    }

    /// Moves accepted records from the intake into the pipeline.
    fn take_intake(&mut self) {
        self.intake_due = None;
        let mut batch = std::mem::take(&mut self.spare);
        let names: Vec<Arc<str>> = {
            let mut intake = self.shared.intake.lock();
            std::mem::swap(&mut batch, &mut intake.batch);
            let known = self.pipeline.stream_count();
            intake.names[known..].to_vec()
        };
        let now = Instant::now();
        for name in names {
            self.pipeline.add_stream(name, now);
        }
        let mut run: Option<(StreamIx, u32, u64)> = None;
        for (s, p) in batch.drain(..) {
            self.buffered_bytes += p.cost();
            match &mut run {
                Some((rs, re, n)) if *rs == s && *re == p.epoch => *n += 1,
                _ => {
                    if let Some(r) = run.take() {
                        self.count_in(r);
                    }
                    run = Some((s, p.epoch, 1));
                }
            }
            self.pipeline.put(s, p, now);
        }
        if let Some(r) = run {
            self.count_in(r);
        }
        self.spare = batch;
        self.metrics.pending.set(self.pipeline.held() as i64);
        self.metrics.buffered_bytes.set(self.buffered_bytes as i64);
    }

    fn count_in(&mut self, (s, epoch, n): (StreamIx, u32, u64)) {
        *self.epochs.entry(epoch).or_insert(0) += n as usize;
        self.stream_metrics(s).received.inc_by(n);
    }

    fn on_event(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::Response(resp) => {
                self.in_flight -= 1;
                self.metrics.in_flight.set(self.in_flight as i64);
                self.observe_response(&resp);
                self.pipeline.on_response(resp, now, &mut self.out);
            }
            Event::Shards(s, result) => self.pipeline.on_shards(s, result, now, &mut self.out),
        }
    }

    fn observe_response(&mut self, resp: &Response) {
        let m = self.stream_metrics(resp.request.stream).clone();
        m.request_time
            .observe(resp.finished.duration_since(resp.started).as_secs_f64());
        match &resp.outcome {
            Err(e) => m.error(&e.code, resp.request.records.len() as u64),
            Ok(entries) => {
                let mut put = 0u64;
                let mut bytes = 0u64;
                for (kr, e) in resp.request.records.iter().zip(entries) {
                    match e {
                        EntryResult::Put { .. } => {
                            put += 1;
                            bytes += kr.data_len as u64;
                        }
                        EntryResult::Failed { code, .. } => m.error(code, 1),
                    }
                }
                m.kinesis_put.inc_by(put);
                m.kinesis_data_put.inc_by(bytes);
            }
        }
    }

    /// Sends what the pipeline has ready while there is room, and starts map fetches.
    fn dispatch(&mut self, now: Instant) {
        while self.in_flight < self.max_in_flight {
            let Some(req) = self.pipeline.next_request(now, &mut self.out) else {
                break;
            };
            self.in_flight += 1;
            self.observe_request(&req, now);
            let client = self.client.clone();
            let tx = self.events_tx.clone();
            tokio::spawn(async move {
                let resp = put_records(&client, req).await;
                let _ = tx.send(Event::Response(resp));
            });
        }
        self.metrics.in_flight.set(self.in_flight as i64);
        for (s, name) in self.pipeline.take_fetches(now) {
            let client = self.client.clone();
            let tx = self.events_tx.clone();
            let timeout = self.shared.config.request_timeout;
            tokio::spawn(async move {
                let result = list_shards(&client, &name, timeout).await;
                let _ = tx.send(Event::Shards(s, result));
            });
        }
    }

    fn observe_request(&mut self, req: &Request, now: Instant) {
        let m = self.stream_metrics(req.stream).clone();
        m.per_request.observe(req.records.len() as f64);
        for kr in &req.records {
            m.per_kinesis_record.observe(kr.users.len() as f64);
            for u in &kr.users {
                let since = u
                    .attempts
                    .last()
                    .map_or(u.arrived, |a| u.arrived + a.started_after() + a.duration());
                m.buffering
                    .observe(now.saturating_duration_since(since).as_secs_f64());
            }
        }
    }

    /// Resolves finished records, gives their budget back, answers flushes.
    fn complete(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let mut bytes = 0usize;
        let count = self.out.len();
        let mut run: Option<(u32, usize)> = None;
        // Drained, not taken: the vector keeps its capacity for the next batch.
        let mut finished = std::mem::take(&mut self.out);
        for f in finished.drain(..) {
            let Finished {
                stream,
                pending,
                verdict,
            } = f;
            let cost = pending.cost();
            bytes += cost;
            match &mut run {
                Some((e, n)) if *e == pending.epoch => *n += 1,
                _ => {
                    if let Some((e, n)) = run.take() {
                        self.count_out(e, n);
                    }
                    run = Some((pending.epoch, 1));
                }
            }
            let m = self.stream_metrics(stream);
            m.retries.observe(pending.attempts.len() as f64);
            match &verdict {
                Verdict::Put { .. } => {
                    m.put.inc();
                    m.data_put.inc_by(pending.record.data.len() as u64);
                }
                Verdict::Failed(kind) => {
                    m.failed.inc();
                    if *kind == PutErrorKind::Expired {
                        m.expired.inc();
                    }
                }
            }
            pending.resolve(verdict);
        }
        self.out = finished;
        if let Some((e, n)) = run {
            self.count_out(e, n);
        }
        self.buffered_bytes -= bytes;
        self.shared.release(count, bytes);
        self.metrics.pending.set(self.pipeline.held() as i64);
        self.metrics.buffered_bytes.set(self.buffered_bytes as i64);
        self.update_flushing();
    }

    /// Answers every flush whose epochs hold no unresolved record any more.
    fn answer_flushes(&mut self) {
        if self.flushes.is_empty() {
            return;
        }
        let oldest = self.epochs.keys().next().copied();
        let mut i = 0;
        while i < self.flushes.len() {
            if oldest.is_none_or(|o| o > self.flushes[i].0) {
                let (_, reply) = self.flushes.swap_remove(i);
                let _ = reply.send(());
            } else {
                i += 1;
            }
        }
        self.update_flushing();
    }

    fn count_out(&mut self, epoch: u32, n: usize) {
        if let Some(c) = self.epochs.get_mut(&epoch) {
            *c -= n;
            if *c == 0 {
                self.epochs.remove(&epoch);
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends one PutRecords request and turns whatever happens into a [`Response`].
async fn put_records(client: &Client, request: Request) -> Response {
    let started = Instant::now();
    let entries: Result<Vec<PutRecordsRequestEntry>, _> = request
        .records
        .iter()
        .map(|kr| {
            PutRecordsRequestEntry::builder()
                .data(Blob::new(kr.encode()))
                .partition_key(kr.partition_key())
                .explicit_hash_key(kr.explicit_hash_key().to_string())
                .build()
        })
        .collect();
    let outcome = match entries {
        Err(e) => Err(CallError {
            code: "ConstructionFailure".into(),
            message: e.to_string(),
            class: ErrorClass::Fatal,
        }),
        Ok(entries) => {
            let sent = client
                .put_records()
                .stream_name(&*request.stream_name)
                .set_records(Some(entries))
                .send()
                .await;
            match sent {
                Ok(out) => Ok(out
                    .records()
                    .iter()
                    .map(
                        |r| match (r.error_code(), r.sequence_number(), r.shard_id()) {
                            (None, Some(seq), Some(shard)) => EntryResult::Put {
                                shard_id: shard.to_string(),
                                sequence_number: seq.to_string(),
                            },
                            (code, _, _) => EntryResult::Failed {
                                code: code.unwrap_or("MalformedResponse").to_string(),
                                message: r
                                    .error_message()
                                    .unwrap_or("no sequence number in the result")
                                    .to_string(),
                            },
                        },
                    )
                    .collect()),
                Err(e) => Err(call_error(e)),
            }
        }
    };
    Response {
        request,
        started,
        finished: Instant::now(),
        outcome,
    }
}

/// Classifies an SDK error.
fn call_error<E, R>(e: SdkError<E, R>) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
    SdkError<E, R>: std::error::Error,
{
    let (code, class) = match &e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown").to_string();
            let status = service_status(se.raw());
            let class = classify(&code, status);
            (code, class)
        }
        SdkError::TimeoutError(_) => ("Timeout".to_string(), ErrorClass::Retryable),
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            ("Timeout".to_string(), ErrorClass::Retryable)
        }
        SdkError::DispatchFailure(_) => ("ConnectionError".to_string(), ErrorClass::Retryable),
        SdkError::ResponseError(_) => ("ResponseError".to_string(), ErrorClass::Retryable),
        SdkError::ConstructionFailure(_) => ("ConstructionFailure".to_string(), ErrorClass::Fatal),
        _ => ("Unknown".to_string(), ErrorClass::Retryable),
    };
    let message = match &e {
        SdkError::ServiceError(se) => se.err().message().unwrap_or("").to_string(),
        other => DisplayErrorContext(other).to_string(),
    };
    CallError {
        code,
        message,
        class,
    }
}

fn service_status<R: std::fmt::Debug + 'static>(raw: &R) -> Option<u16> {
    (raw as &dyn std::any::Any)
        .downcast_ref::<aws_sdk_kinesis::config::http::HttpResponse>()
        .map(|r| r.status().as_u16())
}

/// Reads a stream's open shards (`ShardFilter AT_LATEST`, as the KPL does), every page.
async fn list_shards(
    client: &Client,
    stream: &str,
    timeout: Duration,
) -> Result<Vec<ShardInfo>, CallError> {
    let fetch = async {
        let filter = ShardFilter::builder()
            .r#type(ShardFilterType::AtLatest)
            .build()
            .map_err(|e| CallError {
                code: "ConstructionFailure".into(),
                message: e.to_string(),
                class: ErrorClass::Fatal,
            })?;
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_LIST_SHARDS_PAGES {
            let req = match &token {
                None => client
                    .list_shards()
                    .stream_name(stream)
                    .shard_filter(filter.clone()),
                Some(t) => client.list_shards().next_token(t),
            };
            let resp = req.max_results(1000).send().await.map_err(call_error)?;
            for sh in resp.shards() {
                let r = sh.hash_key_range();
                let range = r.and_then(|r| {
                    let start = r.starting_hash_key().parse::<HashKey>().ok()?;
                    let end = r.ending_hash_key().parse::<HashKey>().ok()?;
                    HashKeyRange::new(start, end)
                });
                let Some(range) = range else {
                    return Err(CallError {
                        code: "InvalidShardMap".into(),
                        message: format!("shard {} has no valid hash-key range", sh.shard_id()),
                        class: ErrorClass::Retryable,
                    });
                };
                shards.push(ShardInfo {
                    id: sh.shard_id().to_string(),
                    range,
                });
            }
            match resp.next_token() {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(shards),
            }
        }
        Err(CallError {
            code: "InvalidShardMap".into(),
            message: format!("ListShards did not end after {MAX_LIST_SHARDS_PAGES} pages"),
            class: ErrorClass::Retryable,
        })
    };
    // Each page has the client's own timeout; this bounds the whole walk.
    match tokio::time::timeout(timeout * 4, fetch).await {
        Ok(r) => r,
        Err(_) => Err(CallError {
            code: "Timeout".into(),
            message: "ListShards took too long".into(),
            class: ErrorClass::Retryable,
        }),
    }
}
