//! User records: what goes in ([`Record`]), what comes out ([`Receipt`]), and the
//! producer's own bookkeeping for a record in flight (`Pending`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::{Attempt, PutError, PutErrorKind};

/// A user record: a partition key, an optional explicit hash key, and data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The partition key (1 to 256 characters). Unless an explicit hash key is given, its
    /// MD5 decides the shard.
    pub partition_key: String,
    /// A decimal hash key in `0 ..= 2^128 - 1` that decides the shard instead.
    pub explicit_hash_key: Option<String>,
    /// The data.
    pub data: Bytes,
}

impl Record {
    /// A record routed by its partition key.
    pub fn new(partition_key: impl Into<String>, data: impl Into<Bytes>) -> Record {
        Record {
            partition_key: partition_key.into(),
            explicit_hash_key: None,
            data: data.into(),
        }
    }

    /// The same record routed by an explicit hash key.
    pub fn with_explicit_hash_key(mut self, explicit_hash_key: impl Into<String>) -> Record {
        self.explicit_hash_key = Some(explicit_hash_key.into());
        self
    }

    /// The bytes this record takes from the producer's buffer budget.
    pub(crate) fn cost(&self) -> usize {
        self.data.len()
            + self.partition_key.len()
            + self.explicit_hash_key.as_ref().map_or(0, String::len)
    }
}

/// Where a user record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub(crate) shard_id: Arc<str>,
    pub(crate) sequence_number: Arc<str>,
    pub(crate) sub_sequence_number: Option<u64>,
    pub(crate) attempts: u32,
    pub(crate) failed_attempts: Vec<Attempt>,
}

impl Receipt {
    /// The shard the record was written to.
    pub fn shard_id(&self) -> &str {
        &self.shard_id
    }

    /// The sequence number of the Kinesis record holding it (an opaque decimal string; all
    /// user records of one aggregate share it).
    pub fn sequence_number(&self) -> &str {
        &self.sequence_number
    }

    /// The record's index inside its aggregate, if it was aggregated (the KCL's
    /// sub-sequence number); `None` if it was sent as a Kinesis record of its own.
    pub fn sub_sequence_number(&self) -> Option<u64> {
        self.sub_sequence_number
    }

    /// How many PutRecords attempts it took, the successful one included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The attempts that failed before the successful one, oldest first.
    pub fn failed_attempts(&self) -> &[Attempt] {
        &self.failed_attempts
    }
}

/// What `put` resolves to once the record is written or has failed.
pub type PutResult = Result<Receipt, PutError>;

/// The pending outcome of one `put`: a future resolving to the record's [`Receipt`] or to
/// a [`PutError`] holding the record. Dropping it does not cancel the record; it is still
/// sent (fire and forget).
#[derive(Debug)]
#[must_use = "a PutHandle resolves to the record's outcome; drop it to fire and forget"]
pub struct PutHandle {
    rx: oneshot::Receiver<PutResult>,
}

impl Future for PutHandle {
    type Output = PutResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<PutResult> {
        Pin::new(&mut self.rx).poll(cx).map(|r| {
            r.unwrap_or_else(|_| {
                // Unreachable in practice: a `Pending` answers when dropped. Only a leaked
                // one (mem::forget) gets here; its record is gone with it.
                Err(PutError {
                    kind: PutErrorKind::Stopped,
                    record: Box::default(),
                    attempts: Vec::new(),
                })
            })
        })
    }
}

/// How a user record ends, as the pipeline decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Written.
    Put {
        shard_id: Arc<str>,
        sequence_number: Arc<str>,
        sub_sequence_number: Option<u64>,
    },
    /// Failed for good.
    Failed(PutErrorKind),
}

/// A user record inside the producer, from `put` until its outcome is sent.
///
/// If one is dropped without an outcome (its task was cancelled, the runtime shut down),
/// it answers its `put` with [`PutErrorKind::Stopped`] and the record: no future ever
/// hangs and no record disappears silently.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) record: Record,
    /// The 128-bit hash key that routes it: its explicit hash key or MD5 of its partition key.
    pub(crate) hash_key: u128,
    pub(crate) arrived: Instant,
    /// Send it no later than this.
    pub(crate) deadline: Instant,
    /// Fail it as expired from this instant on.
    pub(crate) expires: Instant,
    pub(crate) attempts: Vec<Attempt>,
    /// The flush epoch it was accepted in.
    pub(crate) epoch: u32,
    done: Option<oneshot::Sender<PutResult>>,
}

impl Pending {
    /// A record accepted at `now`, and the handle its `put` returns.
    pub(crate) fn new(
        record: Record,
        hash_key: u128,
        now: Instant,
        max_buffered_time: Duration,
        ttl: Duration,
        epoch: u32,
    ) -> (Pending, PutHandle) {
        let (tx, rx) = oneshot::channel();
        let expires = now + ttl;
        (
            Pending {
                record,
                hash_key,
                arrived: now,
                deadline: (now + max_buffered_time).min(expires),
                expires,
                attempts: Vec::new(),
                epoch,
                done: Some(tx),
            },
            PutHandle { rx },
        )
    }

    /// The bytes it takes from the buffer budget.
    pub(crate) fn cost(&self) -> usize {
        self.record.cost()
    }

    /// Records a failed attempt.
    pub(crate) fn add_attempt(
        &mut self,
        code: &Arc<str>,
        message: &Arc<str>,
        started: Instant,
        finished: Instant,
    ) {
        self.attempts.push(Attempt {
            error_code: code.clone(),
            error_message: message.clone(),
            started_after: started.saturating_duration_since(self.arrived),
            duration: finished.saturating_duration_since(started),
        });
    }

    /// Takes the record back without answering the handle (the `put` returns an error
    /// itself).
    pub(crate) fn abandon(mut self) -> Record {
        self.done = None;
        std::mem::take(&mut self.record)
    }

    /// Sends the outcome to the `put`'s handle (a dropped handle is fine: fire and forget).
    pub(crate) fn resolve(mut self, verdict: Verdict) {
        let Some(tx) = self.done.take() else {
            return;
        };
        let attempts = std::mem::take(&mut self.attempts);
        let result = match verdict {
            Verdict::Put {
                shard_id,
                sequence_number,
                sub_sequence_number,
            } => Ok(Receipt {
                shard_id,
                sequence_number,
                sub_sequence_number,
                attempts: attempts.len() as u32 + 1,
                failed_attempts: attempts,
            }),
            Verdict::Failed(kind) => Err(PutError {
                kind,
                record: Box::new(std::mem::take(&mut self.record)),
                attempts,
            }),
        };
        let _ = tx.send(result);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(Err(PutError {
                kind: PutErrorKind::Stopped,
                record: Box::new(std::mem::take(&mut self.record)),
                attempts: std::mem::take(&mut self.attempts),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> (Pending, PutHandle) {
        Pending::new(
            Record::new("k", &b"data"[..]),
            7,
            Instant::now(),
            Duration::from_millis(100),
            Duration::from_secs(30),
            0,
        )
    }

    #[tokio::test]
    async fn a_dropped_pending_answers_with_its_record() {
        let (p, h) = pending();
        drop(p);
        let e = h.await.unwrap_err();
        assert_eq!(e.kind, PutErrorKind::Stopped);
        assert_eq!(*e.record, Record::new("k", &b"data"[..]));
    }

    #[tokio::test]
    async fn resolve_counts_attempts() {
        let (mut p, h) = pending();
        let code: Arc<str> = "InternalFailure".into();
        let msg: Arc<str> = "boom".into();
        let t = p.arrived;
        p.add_attempt(
            &code,
            &msg,
            t + Duration::from_millis(5),
            t + Duration::from_millis(7),
        );
        p.resolve(Verdict::Put {
            shard_id: "shardId-000000000001".into(),
            sequence_number: "42".into(),
            sub_sequence_number: Some(3),
        });
        let r = h.await.unwrap();
        assert_eq!(r.shard_id(), "shardId-000000000001");
        assert_eq!(r.sequence_number(), "42");
        assert_eq!(r.sub_sequence_number(), Some(3));
        assert_eq!(r.attempts(), 2);
        let a = &r.failed_attempts()[0];
        assert_eq!(a.error_code(), "InternalFailure");
        assert_eq!(a.started_after(), Duration::from_millis(5));
        assert_eq!(a.duration(), Duration::from_millis(2));
    }

    #[test]
    fn deadline_never_passes_expiry() {
        let now = Instant::now();
        let (p, _h) = Pending::new(
            Record::new("k", Bytes::new()),
            0,
            now,
            Duration::from_secs(5),
            Duration::from_secs(1),
            0,
        );
        assert_eq!(p.deadline, now + Duration::from_secs(1));
    }
}
