//! A shard at run time: its log, its writer task, its limits and its metrics.
//!
//! Every append goes through the shard's one writer task over a bounded channel. The task
//! drains whatever is queued into one batch (group commit), writes and fsyncs it once, then
//! answers every waiting request. A full queue makes producers wait: that is the broker's
//! back-pressure.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use riffle_core::{HashKeyRange, SequenceNumber, ShardId};
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::config::{FsyncPolicy, ShardLimits};
use crate::limits::{take_both, CallWindow, TokenBucket};
use crate::metrics::ShardMetrics;
use crate::storage::{Log, LogWriter};

/// One append: `(partition key, data)` records that must land contiguously.
type Records = Vec<(Bytes, Bytes)>;

/// Where an appended group of records landed.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    /// Position of the first record.
    pub base: u64,
    /// Arrival time given to the records.
    pub timestamp_ms: i64,
}

enum WriterMsg {
    Append {
        records: Records,
        reply: oneshot::Sender<io::Result<Appended>>,
    },
    /// Fsync, stop the writer, and answer with the end position.
    Seal { reply: oneshot::Sender<u64> },
}

/// A shard's static facts and run-time state.
#[derive(Debug)]
pub struct Shard {
    /// The shard's id.
    pub id: ShardId,
    /// The hash keys it owns.
    pub range: HashKeyRange,
    /// The shard it was split from, or the first of the two it was merged from.
    pub parent: Option<ShardId>,
    /// The second shard of a merge.
    pub adjacent_parent: Option<ShardId>,
    /// When the shard was created, ms since the epoch.
    pub created_ms: i64,
    /// The stream incarnation its sequence numbers carry (the stream's creation time, ms).
    pub epoch: u64,
    /// Set when the shard is closed: (end position, closing time ms).
    closed: Mutex<Option<(u64, i64)>>,
    /// The shard's log.
    pub log: Arc<Log>,
    writer: mpsc::Sender<WriterMsg>,
    write_limit: Mutex<(TokenBucket, TokenBucket)>,
    read_limit: Mutex<(CallWindow, TokenBucket)>,
    /// GetShardIterator calls.
    iterator_limit: Mutex<CallWindow>,
    /// The shard's metric series.
    pub metrics: ShardMetrics,
}

/// How a shard's writer and limits run.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Per-shard throughput limits.
    pub limits: ShardLimits,
    /// When appends are fsynced.
    pub fsync: FsyncPolicy,
    /// Appends queued before producers wait.
    pub queue: usize,
    /// Largest group-commit batch.
    pub max_batch_bytes: usize,
    /// The wall clock for arrival times.
    pub clock: Clock,
}

/// How a shard is set up.
#[derive(Debug, Clone)]
pub struct ShardSpec {
    /// Its id.
    pub id: ShardId,
    /// Its hash-key range.
    pub range: HashKeyRange,
    /// Its parent.
    pub parent: Option<ShardId>,
    /// Its adjacent parent.
    pub adjacent_parent: Option<ShardId>,
    /// Creation time.
    pub created_ms: i64,
    /// Closing (end position, time), if already closed.
    pub closed: Option<(u64, i64)>,
}

impl Shard {
    /// Starts a shard over an opened log. A closed shard gets no writer task.
    pub fn start(
        spec: ShardSpec,
        epoch: u64,
        log: Arc<Log>,
        writer: LogWriter,
        opts: WriterOptions,
        metrics: ShardMetrics,
    ) -> Arc<Shard> {
        let WriterOptions {
            limits,
            fsync,
            queue,
            max_batch_bytes,
            clock,
        } = opts;
        let (tx, rx) = mpsc::channel(queue);
        if spec.closed.is_none() {
            tokio::spawn(run_writer(writer, rx, fsync, max_batch_bytes, clock));
        }
        metrics.storage_bytes.set(log.disk_bytes() as i64);
        Arc::new(Shard {
            id: spec.id,
            range: spec.range,
            parent: spec.parent,
            adjacent_parent: spec.adjacent_parent,
            created_ms: spec.created_ms,
            epoch,
            closed: Mutex::new(spec.closed),
            log,
            writer: tx,
            write_limit: Mutex::new((
                TokenBucket::new(limits.write_bytes_per_second),
                TokenBucket::new(limits.write_records_per_second),
            )),
            read_limit: Mutex::new((
                CallWindow::new(limits.get_records_per_second),
                TokenBucket::new(limits.read_bytes_per_second),
            )),
            iterator_limit: Mutex::new(CallWindow::new(limits.get_shard_iterator_per_second)),
            metrics,
        })
    }

    /// `(end position, closing time)` if the shard is closed.
    pub fn closed(&self) -> Option<(u64, i64)> {
        *self.closed.lock()
    }

    /// Whether the shard is open for writes.
    pub fn is_open(&self) -> bool {
        self.closed.lock().is_none()
    }

    /// The first sequence number the shard can hold.
    pub fn starting_sequence_number(&self) -> SequenceNumber {
        SequenceNumber::shard_start(self.epoch, self.id)
    }

    /// The sequence number of the shard's last record once closed (its starting sequence
    /// number if it closed empty).
    pub fn ending_sequence_number(&self) -> Option<SequenceNumber> {
        self.closed().map(|(end, _)| self.sequence_before(end))
    }

    /// The sequence number of the record at `position`.
    pub fn sequence_number(&self, position: u64) -> SequenceNumber {
        SequenceNumber::new(self.epoch, self.id, position)
    }

    /// The sequence number standing just before `position` (AFTER it resumes there).
    pub fn sequence_before(&self, position: u64) -> SequenceNumber {
        SequenceNumber::before(self.epoch, self.id, position)
    }

    /// Takes write budget for one record of `bytes`; false if the shard is over its limit.
    pub fn admit_write(&self, bytes: usize) -> bool {
        let mut l = self.write_limit.lock();
        let (b, r) = &mut *l;
        let ok = take_both(b, bytes as f64, r, 1.0);
        if !ok {
            self.metrics.write_throttled.inc();
        }
        ok
    }

    /// Counts one GetShardIterator call; false if the shard is over its rate.
    pub fn admit_iterator(&self) -> bool {
        let mut w = self.iterator_limit.lock();
        let ok = w.has();
        if ok {
            w.take();
        }
        ok
    }

    /// Takes one GetRecords call from the read budget; false if throttled.
    pub fn admit_read(&self) -> bool {
        let mut l = self.read_limit.lock();
        let (calls, bytes) = &mut *l;
        let ok = bytes.positive() && calls.has();
        if ok {
            calls.take();
        } else {
            self.metrics.read_throttled.inc();
        }
        ok
    }

    /// Charges bytes read to the read budget (may go into debt).
    pub fn charge_read(&self, bytes: usize) {
        self.read_limit.lock().1.take(bytes as f64);
    }

    /// Queues records for appending. Returns a receiver for the outcome; the records land
    /// in the order appends were queued. Waits while the queue is full.
    pub async fn append(&self, records: Records) -> oneshot::Receiver<io::Result<Appended>> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(WriterMsg::Append { reply, .. })) =
            self.writer.send(WriterMsg::Append { records, reply }).await
        {
            let _ = reply.send(Err(io::Error::other("shard writer stopped")));
        }
        rx
    }

    /// Stops the writer after everything queued so far, fsyncs, and returns the end
    /// position. With `close_at`, marks the shard closed at that time.
    pub async fn seal(&self, close_at: Option<i64>) -> u64 {
        let (reply, rx) = oneshot::channel();
        let end = if self.writer.send(WriterMsg::Seal { reply }).await.is_ok() {
            rx.await.unwrap_or_else(|_| self.log.end_position())
        } else {
            self.log.end_position()
        };
        if let Some(at) = close_at {
            self.closed.lock().get_or_insert((end, at));
            self.log.wake();
        }
        end
    }
}

async fn run_writer(
    writer: LogWriter,
    mut rx: mpsc::Receiver<WriterMsg>,
    fsync: FsyncPolicy,
    max_batch_bytes: usize,
    clock: Clock,
) {
    let mut writer = Some(writer);
    let mut interval = match fsync {
        FsyncPolicy::Interval(d) => Some(tokio::time::interval(d)),
        _ => None,
    };
    loop {
        let first = match &mut interval {
            Some(tick) => tokio::select! {
                msg = rx.recv() => msg,
                _ = tick.tick() => {
                    let mut w = writer.take().expect("writer present");
                    let (w, r) = tokio::task::spawn_blocking(move || { let r = w.sync(); (w, r) })
                        .await.expect("sync task");
                    if let Err(e) = r {
                        tracing::error!(error = %e, "periodic fsync failed");
                    }
                    writer = Some(w);
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(first) = first else { break };
        let mut batch: Vec<(Records, oneshot::Sender<io::Result<Appended>>)> = Vec::new();
        let mut seal = None;
        let mut bytes = 0usize;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                WriterMsg::Append { records, reply } => {
                    bytes += records
                        .iter()
                        .map(|(k, d)| k.len() + d.len())
                        .sum::<usize>();
                    batch.push((records, reply));
                    if bytes < max_batch_bytes {
                        next = rx.try_recv().ok();
                    }
                }
                WriterMsg::Seal { reply } => seal = Some(reply),
            }
        }
        if !batch.is_empty() {
            let mut w = writer.take().expect("writer present");
            let ts = clock.now_ms();
            let (w, result, batch) = tokio::task::spawn_blocking(move || {
                let result = w.append(
                    ts,
                    batch
                        .iter()
                        .flat_map(|(recs, _)| recs.iter().map(|(k, d)| (&k[..], &d[..]))),
                );
                (w, result, batch)
            })
            .await
            .expect("append task");
            writer = Some(w);
            match result {
                Ok((base, ts)) => {
                    let mut at = base;
                    for (recs, reply) in batch {
                        let _ = reply.send(Ok(Appended {
                            base: at,
                            timestamp_ms: ts,
                        }));
                        at += recs.len() as u64;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "shard append failed");
                    for (_, reply) in batch {
                        let _ = reply.send(Err(io::Error::new(e.kind(), e.to_string())));
                    }
                }
            }
        }
        if let Some(reply) = seal {
            let mut w = writer.take().expect("writer present");
            let end = tokio::task::spawn_blocking(move || {
                if let Err(e) = w.sync() {
                    tracing::error!(error = %e, "fsync on seal failed");
                }
                w.next_position()
            })
            .await
            .expect("seal task");
            let _ = reply.send(end);
            // Anything still queued is refused.
            rx.close();
            while let Some(msg) = rx.recv().await {
                if let WriterMsg::Append { reply, .. } = msg {
                    let _ = reply.send(Err(io::Error::other("shard closed")));
                }
            }
            return;
        }
    }
    if let Some(mut w) = writer {
        let _ = tokio::task::spawn_blocking(move || w.sync()).await;
    }
}
