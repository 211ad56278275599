//! The broker's state: streams, their shard maps, and the control-plane transitions.
//!
//! Locking, outermost first: `control` (one control-plane change at a time, and the
//! metadata file write that records it) → a stream's `shards` (tokio `RwLock`: writers route
//! under a read lock and queue their appends before releasing it, so a reshard, which takes
//! the write lock and seals parents, can never lose or reorder a queued record) → short
//! `parking_lot` locks on plain data, never held across an `.await`.
//!
//! Shard ownership is looked up in one place, [`Broker::locate`]: today every shard is
//! local; a multi-broker placement replaces that function.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rand::RngCore;
use riffle_core::{HashKey, HashKeyRange, ShardId};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::{Config, ShardLimits};
use crate::error::{Error, Result};
use crate::iterator::IteratorCodec;
use crate::metrics::Metrics;
use crate::shard::{Shard, ShardSpec, WriterOptions};
use crate::storage::log::LogOptions;
use crate::storage::meta::MetaFile;
use crate::storage::Log;

/// Milliseconds in 24 hours.
pub const DAY_MS: i64 = 24 * 3_600_000;

/// A stream's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamStatus {
    /// Being created; not yet usable.
    Creating,
    /// Usable.
    Active,
    /// Resharding or changing mode; still usable.
    Updating,
    /// Being deleted.
    Deleting,
}

impl StreamStatus {
    /// The Kinesis name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Creating => "CREATING",
            StreamStatus::Active => "ACTIVE",
            StreamStatus::Updating => "UPDATING",
            StreamStatus::Deleting => "DELETING",
        }
    }
}

/// Capacity mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamMode {
    /// Shard count set by the user.
    Provisioned,
    /// Shard count managed by the broker.
    OnDemand,
}

impl StreamMode {
    /// The Kinesis name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamMode::Provisioned => "PROVISIONED",
            StreamMode::OnDemand => "ON_DEMAND",
        }
    }
}

/// A registered enhanced fan-out consumer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumerRecord {
    /// The consumer's name.
    pub name: String,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// CREATING, ACTIVE or DELETING.
    pub status: String,
    /// Tags on the consumer.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Its resource-based policy (PutResourcePolicy on the consumer ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_policy: Option<ResourcePolicy>,
}

/// A resource-based policy attached to a stream or a consumer: the document as it was put
/// (GetResourcePolicy returns it unchanged) and its compiled form, evaluated with the
/// caller's identity policies on every request (see [`crate::auth::authorize`]). Stored as
/// the document text.
#[derive(Debug, Clone)]
pub struct ResourcePolicy {
    /// The JSON document.
    pub text: String,
    /// The document compiled.
    pub compiled: Arc<crate::auth::policy::PolicySet>,
}

impl ResourcePolicy {
    /// Compiles `text`; the reason when it is not a policy document that can be attached
    /// to a resource (it must parse, and every statement must name a principal).
    pub fn compile(text: &str) -> Result<ResourcePolicy, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("the policy is not valid JSON: {e}"))?;
        let statements = match value.get("Statement") {
            Some(serde_json::Value::Array(a)) => a.iter().collect::<Vec<_>>(),
            Some(one @ serde_json::Value::Object(_)) => vec![one],
            _ => return Err("the policy has no Statement".into()),
        };
        if statements
            .iter()
            .any(|st| st.get("Principal").is_none() && st.get("NotPrincipal").is_none())
        {
            return Err("every statement of a resource-based policy must name a Principal".into());
        }
        let compiled = crate::auth::policy::PolicySet::from_document(text)?;
        Ok(ResourcePolicy {
            text: text.to_owned(),
            compiled: Arc::new(compiled),
        })
    }
}

impl Serialize for ResourcePolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for ResourcePolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        // It compiled when it was put; should a newer evaluator refuse it, keep the text
        // (GetResourcePolicy still shows it) and let it grant nothing.
        Ok(ResourcePolicy::compile(&text).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "a stored resource policy no longer compiles; it grants nothing");
            ResourcePolicy {
                text,
                compiled: Arc::default(),
            }
        }))
    }
}

/// A stream's mutable settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamSettings {
    /// Lifecycle state.
    pub status: StreamStatus,
    /// Capacity mode.
    pub mode: StreamMode,
    /// Retention, hours.
    pub retention_hours: u32,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// The KMS key id when server-side encryption is on.
    pub kms_key_id: Option<String>,
    /// Enhanced (shard-level) metrics switched on.
    pub shard_level_metrics: Vec<String>,
    /// Largest record accepted, KiB.
    pub max_record_kib: u32,
    /// Warm throughput, MiB/s (on-demand streams).
    pub warm_throughput_mibps: Option<u32>,
    /// Times of UpdateShardCount calls in the last 24 hours, ms.
    pub reshard_times: Vec<i64>,
    /// Registered consumers.
    #[serde(default)]
    pub consumers: Vec<ConsumerRecord>,
    /// Records that arrived before this time (ms) have expired for good, whatever the
    /// retention is now: raising the retention does not bring expired records back.
    #[serde(default)]
    pub expired_before_ms: i64,
    /// The stream's resource-based policy (PutResourcePolicy on the stream ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_policy: Option<ResourcePolicy>,
}

/// The shards of a stream.
#[derive(Debug, Default)]
pub struct ShardMap {
    /// Every shard still retained, by index.
    pub all: BTreeMap<u32, Arc<Shard>>,
    /// Open shards sorted by hash range; they partition the hash-key space.
    pub open: Vec<Arc<Shard>>,
    /// The index the next new shard gets.
    pub next_index: u32,
}

impl ShardMap {
    /// The open shard owning `key`.
    pub fn route(&self, key: HashKey) -> &Arc<Shard> {
        let i = self.open.partition_point(|s| s.range.start <= key);
        &self.open[i.saturating_sub(1)]
    }

    /// Recomputes the open list from `all`.
    pub fn reindex(&mut self) {
        let mut open: Vec<_> = self.all.values().filter(|s| s.is_open()).cloned().collect();
        open.sort_by_key(|s| s.range.start);
        self.open = open;
    }
}

/// A stream.
#[derive(Debug)]
pub struct Stream {
    /// Its name.
    pub name: String,
    /// Unique id naming its directory (names can be reused after deletion).
    pub uid: u64,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// Its ARN.
    pub arn: String,
    /// Per-shard limits that apply to it.
    pub limits: ShardLimits,
    /// Mutable settings.
    pub settings: Mutex<StreamSettings>,
    /// The keys its shards seal and open batches with (encryption at rest).
    pub keys: Arc<crate::encryption::StreamKeys>,
    /// Its shards.
    pub shards: tokio::sync::RwLock<ShardMap>,
}

impl Stream {
    /// The current status.
    pub fn status(&self) -> StreamStatus {
        self.settings.lock().status
    }

    /// Records that arrived before the returned time (ms) are expired at `now`: older than
    /// the retention, or expired under an earlier, shorter retention. Every read path
    /// (GetRecords, SubscribeToShard, TRIM_HORIZON, AT_TIMESTAMP, ListShards' trim horizon,
    /// retention itself) uses this one cutoff.
    pub fn expiry_cutoff_ms(&self, now: i64) -> i64 {
        let s = self.settings.lock();
        (now - i64::from(s.retention_hours) * 3_600_000).max(s.expired_before_ms)
    }
}

/// Who serves a shard. Single-node today; the seam for multi-broker placement.
#[derive(Debug)]
pub enum Owner {
    /// This process.
    Local(Arc<Shard>),
}

/// Account-level settings (DescribeAccountSettings / UpdateAccountSettings).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccountSettings {
    /// Whether a minimum throughput billing commitment is on.
    pub commitment_enabled: bool,
    /// When it was switched on, ms.
    pub commitment_started_ms: Option<i64>,
    /// When it was switched off, ms.
    pub commitment_ended_ms: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct MetaDoc {
    version: u32,
    next_uid: u64,
    iterator_key: String,
    account: AccountSettings,
    streams: Vec<StreamDoc>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StreamDoc {
    name: String,
    uid: u64,
    created_ms: i64,
    settings: StreamSettings,
    next_index: u32,
    shards: Vec<ShardDoc>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ShardDoc {
    index: u32,
    start: String,
    end: String,
    parent: Option<u32>,
    adjacent_parent: Option<u32>,
    created_ms: i64,
    closed_end: Option<u64>,
    closed_ms: Option<i64>,
}

/// The broker.
#[derive(Debug)]
pub struct Broker {
    /// Its configuration.
    pub config: Config,
    /// Its wall clock.
    pub clock: Clock,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    /// Signs shard iterators.
    pub iterators: IteratorCodec,
    /// Call rates of the control-plane operations.
    pub rates: crate::api::rates::ControlPlaneRates,
    /// Master keys for encryption at rest.
    pub keys: Arc<crate::encryption::KeyRing>,
    data_dir: PathBuf,
    meta: MetaFile,
    iterator_key: [u8; 32],
    streams: RwLock<BTreeMap<String, Arc<Stream>>>,
    control: tokio::sync::Mutex<()>,
    next_uid: AtomicU64,
    /// Account settings.
    pub account: Mutex<AccountSettings>,
    /// Cancelled on shutdown.
    pub cancel: CancellationToken,
    /// Cancelled when shutdown begins, before requests drain: ends every subscription.
    draining: CancellationToken,
    tasks: TaskTracker,
    /// Active SubscribeToShard calls by (consumer ARN, shard index): start and stop handle.
    subscriptions: Mutex<HashMap<(String, u32), Subscription>>,
    next_subscription: AtomicU64,
}

/// An active SubscribeToShard call, as the registry sees it.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Unique id of this subscription.
    pub id: u64,
    /// When it started.
    pub started: tokio::time::Instant,
    /// Cancelled to end it (take-over, deregistration, shutdown).
    pub stop: CancellationToken,
}

impl Broker {
    /// Opens the data directory, recovers every stream and shard log, and starts the
    /// background tasks (status transitions, retention).
    pub async fn open(config: Config, clock: Clock) -> anyhow::Result<Arc<Broker>> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(data_dir.join("streams"))?;
        let meta = MetaFile::new(&data_dir, "meta.json");
        let doc: Option<MetaDoc> = match meta.load()? {
            Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "metadata file {} is damaged: {e}",
                    data_dir.join("meta.json").display()
                )
            })?),
            None => None,
        };
        let mut key = [0u8; 32];
        match doc.as_ref().and_then(|d| decode_hex(&d.iterator_key)) {
            Some(k) => key = k,
            None => rand::thread_rng().fill_bytes(&mut key),
        }
        let keys = Arc::new(
            crate::encryption::KeyRing::open(&config.encryption).map_err(|e| anyhow::anyhow!(e))?,
        );
        let cancel = CancellationToken::new();
        let broker = Arc::new(Broker {
            metrics: Arc::new(Metrics::new()),
            iterators: IteratorCodec::new(key),
            rates: crate::api::rates::ControlPlaneRates::new(config.control_plane),
            keys: keys.clone(),
            iterator_key: key,
            meta,
            data_dir,
            streams: RwLock::new(BTreeMap::new()),
            control: tokio::sync::Mutex::new(()),
            next_uid: AtomicU64::new(doc.as_ref().map_or(1, |d| d.next_uid)),
            account: Mutex::new(doc.as_ref().map(|d| d.account.clone()).unwrap_or_default()),
            draining: cancel.child_token(),
            cancel,
            tasks: TaskTracker::new(),
            subscriptions: Mutex::new(HashMap::new()),
            next_subscription: AtomicU64::new(1),
            clock,
            config,
        });
        broker.tasks.spawn(keys.watch(
            broker.config.encryption.reload_interval,
            broker.cancel.clone(),
        ));
        if let Some(doc) = doc {
            for s in doc.streams {
                let stream = broker.restore_stream(s).await?;
                let status = stream.status();
                broker
                    .streams
                    .write()
                    .insert(stream.name.clone(), stream.clone());
                match status {
                    StreamStatus::Creating | StreamStatus::Updating => {
                        broker.finish_transition(&stream, StreamStatus::Active)
                    }
                    StreamStatus::Deleting => broker.finish_deletion(&stream),
                    StreamStatus::Active => {}
                }
            }
        }
        let _guard = broker.control.lock().await;
        broker.persist().await?;
        drop(_guard);
        broker.spawn_retention();
        Ok(broker)
    }

    async fn restore_stream(self: &Arc<Self>, doc: StreamDoc) -> anyhow::Result<Arc<Stream>> {
        let stream = self.new_stream(&doc.name, doc.uid, doc.created_ms, doc.settings);
        let mut map = ShardMap {
            next_index: doc.next_index,
            ..ShardMap::default()
        };
        for sd in doc.shards {
            let range = HashKeyRange::new(
                sd.start
                    .parse()
                    .map_err(|_| anyhow::anyhow!("bad hash key in metadata"))?,
                sd.end
                    .parse()
                    .map_err(|_| anyhow::anyhow!("bad hash key in metadata"))?,
            )
            .ok_or_else(|| anyhow::anyhow!("bad hash range in metadata"))?;
            let spec = ShardSpec {
                id: ShardId(sd.index),
                range,
                parent: sd.parent.map(ShardId),
                adjacent_parent: sd.adjacent_parent.map(ShardId),
                created_ms: sd.created_ms,
                closed: sd.closed_end.zip(sd.closed_ms),
            };
            let shard = self.start_shard(&stream, spec).await?;
            map.all.insert(sd.index, shard);
        }
        map.reindex();
        *stream.shards.write().await = map;
        Ok(stream)
    }

    fn new_stream(
        &self,
        name: &str,
        uid: u64,
        created_ms: i64,
        settings: StreamSettings,
    ) -> Arc<Stream> {
        Arc::new(Stream {
            name: name.to_owned(),
            uid,
            created_ms,
            arn: self.stream_arn(name),
            limits: self.config.limits.for_stream(name),
            keys: Arc::new(crate::encryption::StreamKeys::new(
                self.keys.clone(),
                uid,
                name,
                settings.kms_key_id.as_deref(),
            )),
            settings: Mutex::new(settings),
            shards: tokio::sync::RwLock::new(ShardMap::default()),
        })
    }

    /// The ARN of a stream of this name.
    pub fn stream_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:kinesis:{}:{}:stream/{name}",
            self.config.region, self.config.account_id
        )
    }

    /// The resource-based policy of the stream or consumer `resource` names (an ARN of this
    /// broker's region and account; a consumer ARN may end in `:*`), if it has one.
    pub fn resource_policy(&self, resource: &str) -> Option<Arc<crate::auth::policy::PolicySet>> {
        let prefix = format!(
            "arn:aws:kinesis:{}:{}:stream/",
            self.config.region, self.config.account_id
        );
        let rest = resource.strip_prefix(&prefix)?;
        let (stream, consumer) = match rest.split_once("/consumer/") {
            Some((s, c)) => (s, Some(c.rsplit_once(':').map_or(c, |(name, _)| name))),
            None => (rest, None),
        };
        let stream = self.streams.read().get(stream).cloned()?;
        let s = stream.settings.lock();
        let policy = match consumer {
            None => s.resource_policy.as_ref(),
            Some(c) => s
                .consumers
                .iter()
                .find(|x| x.name == c)?
                .resource_policy
                .as_ref(),
        };
        policy.map(|p| Arc::clone(&p.compiled))
    }

    fn shard_dir(&self, stream: &Stream, index: u32) -> PathBuf {
        self.data_dir
            .join("streams")
            .join(format!("{}-{}", stream.uid, stream.name))
            .join(format!("{index:012}"))
    }

    /// Opens a shard's log (recovering it) and starts its writer.
    pub async fn start_shard(&self, stream: &Stream, spec: ShardSpec) -> io::Result<Arc<Shard>> {
        let dir = self.shard_dir(stream, spec.id.index());
        let opts = LogOptions {
            fsync: self.config.storage.fsync,
            segment_bytes: self.config.storage.segment_bytes,
            index_interval_bytes: self.config.storage.index_interval_bytes,
        };
        let (log, writer) = tokio::task::spawn_blocking(move || Log::open(&dir, opts))
            .await
            .map_err(io::Error::other)??;
        log.set_keys(stream.keys.clone());
        let metrics = self.metrics.shard(&stream.name, &spec.id.to_string());
        let opts = WriterOptions {
            limits: stream.limits,
            fsync: self.config.storage.fsync,
            queue: self.config.storage.write_queue,
            max_batch_bytes: self.config.storage.max_batch_bytes,
            clock: self.clock.clone(),
        };
        let epoch = u64::try_from(stream.created_ms)
            .unwrap_or(0)
            .min(riffle_core::sequence::MAX_EPOCH);
        Ok(Shard::start(spec, epoch, log, writer, opts, metrics))
    }

    /// Where a shard is served. Every lookup of shard ownership goes through here.
    pub fn locate(&self, map: &ShardMap, shard: ShardId) -> Option<Owner> {
        map.all.get(&shard.index()).cloned().map(Owner::Local)
    }

    /// The stream called `name`, in any status.
    pub fn stream(&self, name: &str) -> Result<Arc<Stream>> {
        self.streams
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::StreamNotFound {
                stream: name.to_owned(),
            })
    }

    /// Every stream, sorted by name.
    pub fn streams(&self) -> Vec<Arc<Stream>> {
        self.streams.read().values().cloned().collect()
    }

    /// Open shards across all streams (the account shard limit counts these).
    pub async fn open_shard_count(&self) -> u32 {
        let mut n = 0;
        for s in self.streams() {
            n += s.shards.read().await.open.len() as u32;
        }
        n
    }

    /// Takes the control-plane lock.
    pub async fn control(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.control.lock().await
    }

    /// The next stream uid.
    pub fn next_uid(&self) -> u64 {
        self.next_uid.fetch_add(1, Ordering::Relaxed)
    }

    /// Creates a stream with `shards` evenly split shards, in CREATING, and schedules the
    /// move to ACTIVE. The caller holds the control lock and has checked limits.
    pub async fn create_stream(
        self: &Arc<Self>,
        name: &str,
        shards: u32,
        settings: StreamSettings,
    ) -> Result<Arc<Stream>> {
        let now = self.clock.now_ms();
        let stream = self.new_stream(name, self.next_uid(), now, settings);
        let mut map = ShardMap::default();
        for (i, range) in HashKeyRange::even_split(shards).into_iter().enumerate() {
            let spec = ShardSpec {
                id: ShardId(i as u32),
                range,
                parent: None,
                adjacent_parent: None,
                created_ms: now,
                closed: None,
            };
            map.all
                .insert(i as u32, self.start_shard(&stream, spec).await?);
        }
        map.next_index = shards;
        map.reindex();
        *stream.shards.write().await = map;
        self.streams.write().insert(name.to_owned(), stream.clone());
        self.persist().await?;
        self.finish_transition(&stream, StreamStatus::Active);
        Ok(stream)
    }

    /// Moves a stream to `to` after the configured status delay.
    pub fn finish_transition(self: &Arc<Self>, stream: &Arc<Stream>, to: StreamStatus) {
        let broker = self.clone();
        let stream = stream.clone();
        let delay = self.config.streams.status_delay;
        self.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = broker.cancel.cancelled() => return,
            }
            let _guard = broker.control.lock().await;
            {
                let mut s = stream.settings.lock();
                if s.status == StreamStatus::Deleting {
                    return;
                }
                s.status = to;
                for c in &mut s.consumers {
                    if c.status == "CREATING" {
                        c.status = "ACTIVE".into();
                    }
                }
            }
            if let Err(e) = broker.persist().await {
                tracing::error!(error = %e, stream = %stream.name, "persisting metadata failed");
            }
        });
    }

    /// Moves a consumer CREATING → ACTIVE, or removes a DELETING one, after the status delay.
    pub fn finish_consumer(self: &Arc<Self>, stream: &Arc<Stream>, name: &str, delete: bool) {
        let broker = self.clone();
        let stream = stream.clone();
        let name = name.to_owned();
        let delay = self.config.streams.status_delay;
        self.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = broker.cancel.cancelled() => return,
            }
            let _guard = broker.control.lock().await;
            {
                let mut s = stream.settings.lock();
                if delete {
                    s.consumers
                        .retain(|c| !(c.name == name && c.status == "DELETING"));
                } else if let Some(c) = s
                    .consumers
                    .iter_mut()
                    .find(|c| c.name == name && c.status == "CREATING")
                {
                    c.status = "ACTIVE".into();
                }
            }
            if let Err(e) = broker.persist().await {
                tracing::error!(error = %e, "persisting metadata failed");
            }
        });
    }

    /// Claims the (consumer, shard) subscription slot. Refused (`None`) if another
    /// subscription started less than `takeover_after` ago; an older one is ended.
    pub fn claim_subscription(
        &self,
        consumer_arn: &str,
        shard: ShardId,
        takeover_after: std::time::Duration,
    ) -> Option<Subscription> {
        let mut subs = self.subscriptions.lock();
        let key = (consumer_arn.to_owned(), shard.index());
        if let Some(old) = subs.get(&key) {
            if !old.stop.is_cancelled() && old.started.elapsed() < takeover_after {
                return None;
            }
            old.stop.cancel();
        }
        let sub = Subscription {
            id: self.next_subscription.fetch_add(1, Ordering::Relaxed),
            started: tokio::time::Instant::now(),
            stop: self.draining.child_token(),
        };
        subs.insert(key, sub.clone());
        Some(sub)
    }

    /// Frees the slot if subscription `id` still holds it.
    pub fn release_subscription(&self, consumer_arn: &str, shard: ShardId, id: u64) {
        let mut subs = self.subscriptions.lock();
        let key = (consumer_arn.to_owned(), shard.index());
        if subs.get(&key).is_some_and(|s| s.id == id) {
            subs.remove(&key);
        }
    }

    /// Ends every subscription of a consumer (it is being deregistered).
    pub fn end_subscriptions(&self, consumer_arn: &str) {
        let subs = self.subscriptions.lock();
        for ((arn, _), sub) in subs.iter() {
            if arn == consumer_arn {
                sub.stop.cancel();
            }
        }
    }

    /// The first step of shutdown: every subscription ends (its client sees the event
    /// stream end cleanly and resubscribes elsewhere), so the requests that remain can
    /// drain within the grace period. A subscription started after this ends at once.
    pub fn begin_shutdown(&self) {
        self.draining.cancel();
    }

    /// Marks a stream DELETING and removes it after the status delay.
    pub async fn delete_stream(self: &Arc<Self>, stream: &Arc<Stream>) -> Result<()> {
        stream.settings.lock().status = StreamStatus::Deleting;
        self.persist().await?;
        self.finish_deletion(stream);
        Ok(())
    }

    fn finish_deletion(self: &Arc<Self>, stream: &Arc<Stream>) {
        let broker = self.clone();
        let stream = stream.clone();
        let delay = self.config.streams.status_delay;
        self.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = broker.cancel.cancelled() => return,
            }
            let _guard = broker.control.lock().await;
            {
                let mut streams = broker.streams.write();
                if streams
                    .get(&stream.name)
                    .is_some_and(|s| Arc::ptr_eq(s, &stream))
                {
                    streams.remove(&stream.name);
                }
            }
            let map = std::mem::take(&mut *stream.shards.write().await);
            for shard in map.all.values() {
                shard.seal(None).await;
                broker
                    .metrics
                    .remove_shard(&stream.name, &shard.id.to_string());
            }
            let dir = broker
                .data_dir
                .join("streams")
                .join(format!("{}-{}", stream.uid, stream.name));
            if let Err(e) = broker.persist().await {
                tracing::error!(error = %e, "persisting metadata failed");
            }
            if let Err(e) = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await
            {
                tracing::warn!(error = %e, "removing stream directory failed");
            }
            tracing::info!(stream = %stream.name, "deleted");
        });
    }

    /// Writes the metadata file. Callers hold the control lock.
    pub async fn persist(&self) -> io::Result<()> {
        self.persist_holding(None).await
    }

    /// Writes the metadata file while the caller holds `held`'s shard map (write-locked):
    /// a reshard records its children before any write can reach them.
    pub async fn persist_holding(&self, held: Option<(&Stream, &ShardMap)>) -> io::Result<()> {
        let mut streams = Vec::new();
        for s in self.streams() {
            let guard;
            let map: &ShardMap = match held {
                Some((h, m)) if std::ptr::eq(h, &*s) => m,
                _ => {
                    guard = s.shards.read().await;
                    &guard
                }
            };
            streams.push(StreamDoc {
                name: s.name.clone(),
                uid: s.uid,
                created_ms: s.created_ms,
                settings: s.settings.lock().clone(),
                next_index: map.next_index,
                shards: map
                    .all
                    .values()
                    .map(|sh| {
                        let closed = sh.closed();
                        ShardDoc {
                            index: sh.id.index(),
                            start: sh.range.start.to_string(),
                            end: sh.range.end.to_string(),
                            parent: sh.parent.map(ShardId::index),
                            adjacent_parent: sh.adjacent_parent.map(ShardId::index),
                            created_ms: sh.created_ms,
                            closed_end: closed.map(|c| c.0),
                            closed_ms: closed.map(|c| c.1),
                        }
                    })
                    .collect(),
            });
        }
        let doc = MetaDoc {
            version: 1,
            next_uid: self.next_uid.load(Ordering::Relaxed),
            iterator_key: encode_hex(&self.iterator_key),
            account: self.account.lock().clone(),
            streams,
        };
        let bytes = serde_json::to_vec_pretty(&doc).map_err(io::Error::other)?;
        let meta = self.meta.clone();
        tokio::task::spawn_blocking(move || meta.store(&bytes))
            .await
            .map_err(io::Error::other)?
    }

    fn spawn_retention(self: &Arc<Self>) {
        let broker = self.clone();
        let every = self.config.storage.retention_check_interval;
        self.tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = broker.cancel.cancelled() => return,
                }
                if let Err(e) = broker.apply_retention().await {
                    tracing::error!(error = %e, "retention pass failed");
                }
            }
        });
    }

    /// Deletes expired segments, and closed shards whose records have all expired.
    pub async fn apply_retention(self: &Arc<Self>) -> io::Result<()> {
        let now = self.clock.now_ms();
        for stream in self.streams() {
            let cutoff = stream.expiry_cutoff_ms(now);
            let shards: Vec<Arc<Shard>> =
                stream.shards.read().await.all.values().cloned().collect();
            let mut expired = Vec::new();
            for shard in shards {
                let log = shard.log.clone();
                tokio::task::spawn_blocking(move || log.apply_retention(cutoff))
                    .await
                    .map_err(io::Error::other)??;
                shard
                    .metrics
                    .storage_bytes
                    .set(shard.log.disk_bytes() as i64);
                if shard.closed().is_some_and(|(_, at)| at < cutoff) {
                    expired.push(shard);
                }
            }
            if !expired.is_empty() {
                let _guard = self.control.lock().await;
                {
                    let mut map = stream.shards.write().await;
                    for shard in &expired {
                        map.all.remove(&shard.id.index());
                        self.metrics
                            .remove_shard(&stream.name, &shard.id.to_string());
                    }
                }
                self.persist().await?;
                for shard in expired {
                    let log = shard.log.clone();
                    tokio::task::spawn_blocking(move || log.destroy())
                        .await
                        .map_err(io::Error::other)??;
                    tracing::info!(stream = %stream.name, shard = %shard.id, "closed shard expired");
                }
            }
        }
        Ok(())
    }

    /// Stops background tasks and seals every shard: queued writes finish and are fsynced.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        for stream in self.streams() {
            let map = stream.shards.read().await;
            for shard in map.all.values() {
                shard.seal(None).await;
            }
        }
        let _guard = self.control.lock().await;
        if let Err(e) = self.persist().await {
            tracing::error!(error = %e, "persisting metadata at shutdown failed");
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

fn encode_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn decode_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
