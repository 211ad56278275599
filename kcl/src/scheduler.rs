//! [`Scheduler`]: the async shell that runs the lease coordinator and the shard consumers.
//!
//! One loop per worker:
//! - every `lease_taker_interval`: list the lease table, update the expiry tracker, run the
//!   pure [`balance`] and execute its actions (take → start a holder
//!   and a shard consumer; release → ask that consumer to shut down);
//! - every `shard_sync_interval` (and at start): list the shards and create missing leases
//!   with the pure [`leases_to_create`];
//! - on [`ShutdownHandle::shutdown`]: stop taking, ask every consumer to shut down (the
//!   processor's `shutdown_requested`, then the lease is **released**, so other workers take
//!   it on their next taker run instead of waiting for it to expire), wait for them.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use aws_sdk_kinesis::Client;
use prometheus_client::registry::Registry;
use riffle_core::{HashKey, HashKeyRange};
use tokio::time::{Duration, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::balance::{balance, Action, BalanceConfig, ExpiryTracker};
use crate::config::{Config, RetrievalMode};
use crate::consumer::{ShardConsumer, Shared};
use crate::dead_letter::{DeadLetterHook, LogDeadLetter};
use crate::error::{ConfigError, SchedulerError};
use crate::holder::Holder;
use crate::lease::instrumented::Instrumented;
use crate::lease::{Lease, LeaseStore};
use crate::metrics::{Metrics, TakeKind, TakeLabel};
use crate::processor::RecordProcessor;
use crate::retrieval::{fanout, SourceCtx};
use crate::shard_sync::{leases_to_create, ShardInfo};

type Factory<P> = Arc<dyn Fn(&str) -> P + Send + Sync>;

/// Builds a [`Scheduler`]; see [`Scheduler::builder`].
pub struct SchedulerBuilder<P> {
    config: Config,
    kinesis: Client,
    store: Arc<dyn LeaseStore>,
    factory: Factory<P>,
    dead_letter: Arc<dyn DeadLetterHook>,
    metrics: Metrics,
}

impl<P> fmt::Debug for SchedulerBuilder<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulerBuilder")
            .field("config", &self.config)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl<P: RecordProcessor> SchedulerBuilder<P> {
    /// Where records go after the retry policy is spent. Default [`LogDeadLetter`].
    pub fn dead_letter(mut self, hook: Arc<dyn DeadLetterHook>) -> Self {
        self.dead_letter = hook;
        self
    }

    /// Registers the scheduler's metrics (prefix `kcl_`) into `registry`.
    pub fn metrics(mut self, registry: &mut Registry) -> Self {
        self.metrics = Metrics::register(registry);
        self
    }

    /// Validates the config and builds the scheduler.
    pub fn build(self) -> Result<Scheduler<P>, ConfigError> {
        self.config.validate()?;
        let worker_id = self
            .config
            .worker_id
            .clone()
            .unwrap_or_else(default_worker_id);
        let store: Arc<dyn LeaseStore> =
            Arc::new(Instrumented::new(self.store, self.metrics.clone()));
        Ok(Scheduler {
            worker_id,
            shared: Arc::new(Shared {
                source: SourceCtx {
                    client: self.kinesis.clone(),
                    stream_name: self.config.stream_name.clone(),
                    config: self.config.retrieval.clone(),
                    consumer_arn: None,
                },
                config: self.config,
                store,
                metrics: self.metrics,
                dead_letter: self.dead_letter,
            }),
            kinesis: self.kinesis,
            factory: self.factory,
            shutdown: CancellationToken::new(),
        })
    }
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", Uuid::new_v4())
}

/// Asks a running [`Scheduler`] to shut down gracefully. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    /// Starts the graceful shutdown; [`Scheduler::run`] returns when it is done.
    pub fn shutdown(&self) {
        self.0.cancel();
    }
}

/// Runs a [`RecordProcessor`] over every shard of a stream, sharing the shards with the other
/// workers of the same application through the lease store.
pub struct Scheduler<P> {
    worker_id: String,
    shared: Arc<Shared>,
    kinesis: Client,
    factory: Factory<P>,
    shutdown: CancellationToken,
}

impl<P> fmt::Debug for Scheduler<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("worker_id", &self.worker_id)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// A lease this worker holds, as the coordinator tracks it.
#[derive(Debug)]
struct Held {
    token: Uuid,
    /// Cancelled to shut this shard's consumer down (graceful shutdown or a Release action).
    shutdown: CancellationToken,
}

type HeldMap = Arc<Mutex<HashMap<String, Held>>>;

impl<P: RecordProcessor> Scheduler<P> {
    /// A builder: `factory` makes one processor per shard lease (it is given the shard id).
    pub fn builder(
        config: Config,
        kinesis: Client,
        store: Arc<dyn LeaseStore>,
        factory: impl Fn(&str) -> P + Send + Sync + 'static,
    ) -> SchedulerBuilder<P> {
        SchedulerBuilder {
            config,
            kinesis,
            store,
            factory: Arc::new(factory),
            dead_letter: Arc::new(LogDeadLetter),
            metrics: Metrics::default(),
        }
    }

    /// This worker's id in the lease table.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// A handle that starts the graceful shutdown.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Runs until [`ShutdownHandle::shutdown`], then shuts down gracefully. Fails only while
    /// starting: lease table unavailable, stream not found, consumer not registrable.
    pub async fn run(self) -> Result<(), SchedulerError> {
        let cfg = &self.shared.config;
        self.shared
            .store
            .initialize()
            .await
            .map_err(SchedulerError::LeaseStore)?;
        let mut shared = Arc::clone(&self.shared);
        if cfg.retrieval.mode == RetrievalMode::FanOut {
            let arn = fanout::stream_arn(&self.kinesis, &cfg.stream_name).await?;
            let consumer =
                fanout::ensure_consumer(&self.kinesis, &arn, cfg.consumer_name()).await?;
            let mut s = Shared {
                config: cfg.clone(),
                store: Arc::clone(&self.shared.store),
                source: self.shared.source.clone(),
                metrics: self.shared.metrics.clone(),
                dead_letter: Arc::clone(&self.shared.dead_letter),
            };
            s.source.consumer_arn = Some(consumer);
            shared = Arc::new(s);
        }
        self.sync_shards().await?;
        tracing::info!(worker = %self.worker_id, stream = %cfg.stream_name, "scheduler started");

        let held: HeldMap = Arc::default();
        let tracker = TaskTracker::new();
        let mut expiry = ExpiryTracker::new(cfg.failover_time);
        let mut taker = tokio::time::interval(cfg.lease_taker_interval);
        taker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut sync = tokio::time::interval_at(
            Instant::now() + cfg.shard_sync_interval,
            cfg.shard_sync_interval,
        );
        sync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                _ = taker.tick() => {
                    self.take_round(&shared, &held, &tracker, &mut expiry).await;
                }
                _ = sync.tick() => {
                    if let Err(e) = self.sync_shards().await {
                        tracing::warn!(error = %e, "shard sync failed");
                    }
                }
            }
        }

        // Graceful shutdown: every consumer checkpoints (shutdown_requested) and releases.
        let started = Instant::now();
        let n = {
            let held = held.lock().unwrap_or_else(|p| p.into_inner());
            for h in held.values() {
                h.shutdown.cancel();
            }
            held.len()
        };
        tracker.close();
        let grace = cfg.graceful_shutdown_timeout + Duration::from_secs(2);
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(?grace, "shard consumers did not stop in time");
        }
        self.shared.metrics.leases_held.set(0);
        tracing::info!(worker = %self.worker_id, leases = n, elapsed = ?started.elapsed(), "scheduler stopped");
        Ok(())
    }

    /// One taker run: list, observe, balance, act.
    async fn take_round(
        &self,
        shared: &Arc<Shared>,
        held: &HeldMap,
        tracker: &TaskTracker,
        expiry: &mut ExpiryTracker,
    ) {
        let cfg = &self.shared.config;
        let leases = match self.shared.store.list().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "listing leases failed");
                return;
            }
        };
        let held_keys: HashSet<String> = held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let views = expiry.observe(&leases, &self.worker_id, &held_keys, Instant::now());
        let actions = balance(
            &self.worker_id,
            &views,
            BalanceConfig {
                max_leases_for_worker: cfg.max_leases_for_worker.unwrap_or(usize::MAX),
                max_leases_to_steal: cfg.max_leases_to_steal,
            },
        );
        for action in actions {
            let (key, kind) = match &action {
                Action::Take { key } => (key, TakeKind::expired),
                Action::Steal { key, .. } => (key, TakeKind::stolen),
                Action::Release { key } => {
                    if let Some(h) = held.lock().unwrap_or_else(|p| p.into_inner()).get(key) {
                        h.shutdown.cancel();
                    }
                    continue;
                }
            };
            if held_keys.contains(key) {
                // Still shutting down here; take it again once that is done.
                continue;
            }
            let Some(observed) = leases.iter().find(|l| &l.key == key) else {
                continue;
            };
            let sent = Instant::now();
            match self.shared.store.take(observed, &self.worker_id).await {
                Ok(lease) => {
                    if let Action::Steal { from, .. } = &action {
                        tracing::info!(shard = %key, %from, "lease stolen to balance");
                    } else {
                        tracing::info!(shard = %key, "lease taken");
                    }
                    self.shared
                        .metrics
                        .leases_taken
                        .get_or_create(&TakeLabel { kind })
                        .inc();
                    self.start_consumer(shared, held, tracker, lease, sent);
                }
                Err(e) if e.is_conflict() => {
                    tracing::debug!(shard = %key, "lease taken by another worker first");
                }
                Err(e) => tracing::warn!(shard = %key, error = %e, "taking lease failed"),
            }
        }
        let n = held.lock().unwrap_or_else(|p| p.into_inner()).len();
        self.shared.metrics.leases_held.set(n as i64);
    }

    fn start_consumer(
        &self,
        shared: &Arc<Shared>,
        held: &HeldMap,
        tracker: &TaskTracker,
        lease: Lease,
        taken_at: Instant,
    ) {
        let cfg = &self.shared.config;
        let key = lease.key.clone();
        let (handle, _holder) = Holder {
            store: Arc::clone(&self.shared.store),
            lease: lease.clone(),
            renew_interval: cfg.renew_interval(),
            failover: cfg.failover_time,
            metrics: self.shared.metrics.clone(),
        }
        .spawn(taken_at);
        let shutdown = CancellationToken::new();
        held.lock().unwrap_or_else(|p| p.into_inner()).insert(
            key.clone(),
            Held {
                token: handle.token,
                shutdown: shutdown.clone(),
            },
        );
        // A shutdown that started meanwhile applies to this consumer too.
        if self.shutdown.is_cancelled() {
            shutdown.cancel();
        }
        let processor = (self.factory)(&key);
        let token = handle.token;
        let consumer = ShardConsumer::new(Arc::clone(shared), lease, handle, shutdown, processor);
        let held = Arc::clone(held);
        let metrics = self.shared.metrics.clone();
        tracker.spawn(async move {
            consumer.run().await;
            let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
            if held.get(&key).is_some_and(|h| h.token == token) {
                held.remove(&key);
            }
            metrics.leases_held.set(held.len() as i64);
        });
    }

    /// Lists the stream's shards and creates leases for the new ones.
    async fn sync_shards(&self) -> Result<(), SchedulerError> {
        let shards = list_shards(&self.kinesis, &self.shared.config.stream_name).await?;
        let existing = self
            .shared
            .store
            .list()
            .await
            .map_err(SchedulerError::LeaseStore)?;
        for lease in leases_to_create(&shards, &existing, self.shared.config.initial_position) {
            match self.shared.store.create_if_not_exists(&lease).await {
                Ok(true) => {
                    tracing::info!(shard = %lease.key, checkpoint = %lease.checkpoint, "lease created")
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(shard = %lease.key, error = %e, "creating lease failed"),
            }
        }
        Ok(())
    }
}

/// Every shard of the stream (ListShards, paginated).
async fn list_shards(client: &Client, stream: &str) -> Result<Vec<ShardInfo>, SchedulerError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let req = client.list_shards();
        let req = match &token {
            Some(t) => req.next_token(t),
            None => req.stream_name(stream),
        };
        let page = req.send().await.map_err(|e| SchedulerError::Kinesis {
            operation: "ListShards",
            source: e.into(),
        })?;
        for s in page.shards() {
            let range = s.hash_key_range().and_then(|r| {
                let a: HashKey = r.starting_hash_key().parse().ok()?;
                let b: HashKey = r.ending_hash_key().parse().ok()?;
                HashKeyRange::new(a, b)
            });
            out.push(ShardInfo {
                shard_id: s.shard_id().to_owned(),
                parents: s
                    .parent_shard_id()
                    .into_iter()
                    .chain(s.adjacent_parent_shard_id())
                    .map(str::to_owned)
                    .collect(),
                hash_range: range,
                closed: s
                    .sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_some(),
            });
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(out),
        }
    }
}
