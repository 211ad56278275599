//! The lease holder: one task per held lease that owns every write to it.
//!
//! Renewals, checkpoints and the final release of a lease all go through this one task, in
//! order, each with the counter the previous write produced — so a renewal and a checkpoint
//! can never race each other on the counter (the Java KCL's renewer and checkpointer are
//! separate threads and do; see its issues #537, #108, #563).
//!
//! The holder gives up the lease locally ("lost") when a fenced write is refused, or when it
//! has not renewed for the failover time, measured from the *start* of its last successful
//! write: another worker can take the lease only after seeing the counter unchanged for the
//! failover time after that write landed, so the holder always stops first.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::checkpoint::Checkpoint;
use crate::error::{CheckpointError, LeaseStoreError};
use crate::lease::{Lease, LeaseStore};
use crate::metrics::Metrics;

pub(crate) enum Command {
    Checkpoint {
        token: Uuid,
        checkpoint: Checkpoint,
        reply: oneshot::Sender<Result<(), CheckpointError>>,
    },
    Release {
        reply: oneshot::Sender<()>,
    },
}

/// The consumer's handle on its holder.
#[derive(Clone, Debug)]
pub(crate) struct LeaseHandle {
    tx: mpsc::Sender<Command>,
    /// The concurrency token of this acquisition.
    pub(crate) token: Uuid,
    /// Cancelled when the lease is lost.
    pub(crate) lost: CancellationToken,
}

impl LeaseHandle {
    pub(crate) async fn checkpoint(
        &self,
        token: Uuid,
        checkpoint: Checkpoint,
        shard_id: &str,
    ) -> Result<(), CheckpointError> {
        let (reply, rx) = oneshot::channel();
        let lost = || CheckpointError::LeaseLost {
            shard_id: shard_id.to_owned(),
        };
        self.tx
            .send(Command::Checkpoint {
                token,
                checkpoint,
                reply,
            })
            .await
            .map_err(|_| lost())?;
        rx.await.map_err(|_| lost())?
    }

    /// Releases the lease (if still held) and ends the holder.
    pub(crate) async fn release(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Release { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }
}

pub(crate) struct Holder {
    pub(crate) store: Arc<dyn LeaseStore>,
    pub(crate) lease: Lease,
    pub(crate) renew_interval: Duration,
    pub(crate) failover: Duration,
    pub(crate) metrics: Metrics,
}

impl Holder {
    /// Starts the holder task for a lease just taken (`taken_at` = when the take was sent).
    pub(crate) fn spawn(self, taken_at: Instant) -> (LeaseHandle, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(8);
        let handle = LeaseHandle {
            tx,
            token: Uuid::new_v4(),
            lost: CancellationToken::new(),
        };
        let task = tokio::spawn(self.run(rx, handle.token, handle.lost.clone(), taken_at));
        (handle, task)
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        token: Uuid,
        lost_token: CancellationToken,
        taken_at: Instant,
    ) {
        let key = self.lease.key.clone();
        let mut last_write = taken_at;
        let mut lost = false;
        let mut tick =
            tokio::time::interval_at(taken_at + self.renew_interval, self.renew_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let lose = |lost: &mut bool, why: &str| {
            if !*lost {
                *lost = true;
                lost_token.cancel();
                self.metrics.leases_lost.inc();
                tracing::info!(shard = %key, why, "lease lost");
            }
        };
        loop {
            let deadline = last_write + self.failover;
            tokio::select! {
                biased;
                cmd = rx.recv() => match cmd {
                    None | Some(Command::Release { .. }) => {
                        if !lost {
                            self.release().await;
                        }
                        if let Some(Command::Release { reply }) = cmd {
                            let _ = reply.send(());
                        }
                        return;
                    }
                    Some(Command::Checkpoint { token: t, checkpoint, reply }) => {
                        if lost || t != token || Instant::now() >= deadline {
                            lose(&mut lost, "not renewed within the failover time");
                            let _ = reply.send(Err(CheckpointError::LeaseLost { shard_id: key.clone() }));
                            continue;
                        }
                        let started = Instant::now();
                        let r = self.store.checkpoint(&self.lease, &checkpoint).await;
                        self.metrics.checkpoint_seconds.observe(started.elapsed().as_secs_f64());
                        let answer = match r {
                            Ok(l) => {
                                self.lease = l;
                                last_write = started;
                                Ok(())
                            }
                            Err(LeaseStoreError::Conflict { .. }) => {
                                self.metrics.checkpoint_failures.inc();
                                lose(&mut lost, "checkpoint refused");
                                Err(CheckpointError::LeaseLost { shard_id: key.clone() })
                            }
                            Err(source) => {
                                self.metrics.checkpoint_failures.inc();
                                Err(CheckpointError::Store { source })
                            }
                        };
                        let _ = reply.send(answer);
                    }
                },
                _ = tick.tick(), if !lost => {
                    let started = Instant::now();
                    match self.store.renew(&self.lease).await {
                        Ok(l) => {
                            self.lease = l;
                            last_write = started;
                        }
                        Err(LeaseStoreError::Conflict { .. }) => lose(&mut lost, "renewal refused"),
                        Err(e) => tracing::warn!(shard = %key, error = %e, "renewal failed; retrying"),
                    }
                }
                _ = tokio::time::sleep_until(deadline), if !lost => {
                    lose(&mut lost, "not renewed within the failover time");
                }
            }
        }
    }

    /// Releases the lease, retrying transient failures a few times (a lease that cannot be
    /// released simply expires).
    async fn release(&mut self) {
        for attempt in 0..3u32 {
            match self.store.release(&self.lease).await {
                Ok(_) => {
                    self.metrics.leases_released.inc();
                    tracing::debug!(shard = %self.lease.key, "lease released");
                    return;
                }
                Err(LeaseStoreError::Conflict { .. }) => return,
                Err(e) => {
                    tracing::warn!(shard = %self.lease.key, error = %e, attempt, "release failed");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
    }
}
