//! The public handle: [`Producer`], built by a [`ProducerBuilder`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::BehaviorVersion;
use aws_sdk_kinesis::Client;
use bytes::Bytes;
use prometheus_client::registry::Registry;
use riffle_core::HashKey;
use tokio::sync::{mpsc, oneshot, TryAcquireError};
use tokio::time::Instant;

use crate::config::{Config, MAX_PARTITION_KEY_BYTES, MAX_PARTITION_KEY_CHARS};
use crate::driver::{Command, Engine, Shared};
use crate::error::{BuildError, FlushError, InvalidRecord, PutError, PutErrorKind, TryPutError};
use crate::metrics::Metrics;
use crate::record::{Pending, PutHandle, Record};
use crate::sink::ProducerSink;

/// A Kinesis producer. Cheap to clone: every clone feeds the same pipeline, budget and
/// background task.
///
/// When the last clone is dropped without [`shutdown`](Producer::shutdown), the background
/// task still delivers (or fails) everything accepted, then ends.
#[derive(Debug, Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

/// Builds a [`Producer`]: [`Producer::builder`], then optionally a client, an endpoint and
/// a metrics registry, then [`build`](ProducerBuilder::build).
#[derive(Debug)]
pub struct ProducerBuilder<'r> {
    config: Config,
    client: Option<Client>,
    endpoint_url: Option<String>,
    registry: Option<&'r mut Registry>,
}

impl<'r> ProducerBuilder<'r> {
    /// Uses this Kinesis client's configuration (region, credentials, endpoint, HTTP
    /// client). The producer rebuilds it with the SDK's own retries off — the producer
    /// retries per record itself — and with the configured request and connect timeouts.
    pub fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Without [`client`](Self::client): the endpoint to use instead of the region's
    /// Kinesis endpoint, e.g. `http://127.0.0.1:4567` for a local Riffle broker. (The
    /// standard `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL` variables work too.)
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Registers the producer's metrics (see [`crate::metrics`]) into `registry`.
    pub fn metrics(mut self, registry: &'r mut Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Validates the configuration, prepares the client (from the standard AWS
    /// configuration chain if none was given: environment, profile, instance metadata),
    /// and starts the producer's task on the current Tokio runtime.
    pub async fn build(self) -> Result<Producer, BuildError> {
        self.config.validate()?;
        let handle = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let c = &self.config;
        let base = match self.client {
            Some(client) => client.config().to_builder(),
            None => {
                let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
                let mut b = aws_sdk_kinesis::config::Builder::from(&sdk);
                if let Some(url) = &self.endpoint_url {
                    b = b.endpoint_url(url);
                }
                b
            }
        };
        let client = Client::from_conf(
            base.retry_config(RetryConfig::disabled())
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(c.connect_timeout)
                        .operation_attempt_timeout(c.request_timeout)
                        .operation_timeout(c.request_timeout)
                        .build(),
                )
                .build(),
        );
        let metrics = Metrics::new();
        if let Some(registry) = self.registry {
            metrics.register(registry);
        }
        let shared = Arc::new(Shared::new(self.config));
        let (tx, rx) = mpsc::unbounded_channel();
        handle.spawn(Engine::new(shared.clone(), client, rx, metrics).run());
        Ok(Producer {
            inner: Arc::new(Inner {
                shared,
                commands: tx,
            }),
        })
    }
}

impl Producer {
    /// A builder with this configuration.
    pub fn builder<'r>(config: Config) -> ProducerBuilder<'r> {
        ProducerBuilder {
            config,
            client: None,
            endpoint_url: None,
            registry: None,
        }
    }

    /// Puts a record routed by its partition key. Waits while the buffer is full
    /// (back-pressure), then returns a handle that resolves once the record is written or
    /// has failed. Fails at once, handing the record back, if it is invalid or the producer
    /// is shut down.
    pub async fn put(
        &self,
        stream: &str,
        partition_key: impl Into<String>,
        data: impl Into<Bytes>,
    ) -> Result<PutHandle, PutError> {
        self.put_record(stream, Record::new(partition_key, data))
            .await
    }

    /// Like [`put`](Self::put), with an explicit hash key (a decimal number in
    /// `0 ..= 2^128-1`) that decides the shard instead of the partition key.
    pub async fn put_with_hash_key(
        &self,
        stream: &str,
        partition_key: impl Into<String>,
        explicit_hash_key: impl Into<String>,
        data: impl Into<Bytes>,
    ) -> Result<PutHandle, PutError> {
        let record = Record::new(partition_key, data).with_explicit_hash_key(explicit_hash_key);
        self.put_record(stream, record).await
    }

    /// Puts a [`Record`] (see [`put`](Self::put)).
    pub async fn put_record(&self, stream: &str, record: Record) -> Result<PutHandle, PutError> {
        let shared = &self.inner.shared;
        let hash_key = match validate(&shared.config, &record) {
            Ok(k) => k,
            Err(reason) => return Err(refused(PutErrorKind::Invalid(reason), record)),
        };
        if shared.closed.load(Ordering::Acquire) {
            return Err(refused(PutErrorKind::ShutDown, record));
        }
        let cost = record.cost();
        // Fast path without the waiting machinery; then wait in line.
        let admitted = match (
            shared.records.try_acquire(),
            shared.bytes.try_acquire_many(cost as u32),
        ) {
            (Ok(r), Ok(b)) => {
                r.forget();
                b.forget();
                true
            }
            _ => false,
        };
        if !admitted {
            let Ok(r) = shared.records.acquire().await else {
                return Err(refused(self.closed_kind(), record));
            };
            let Ok(b) = shared.bytes.acquire_many(cost as u32).await else {
                return Err(refused(self.closed_kind(), record));
            };
            r.forget();
            b.forget();
        }
        self.enqueue(stream, record, hash_key, cost)
    }

    /// Puts a record without waiting: if the buffer is full, the record is handed back in
    /// [`TryPutError::Full`].
    pub fn try_put(&self, stream: &str, record: Record) -> Result<PutHandle, TryPutError> {
        let shared = &self.inner.shared;
        let hash_key = match validate(&shared.config, &record) {
            Ok(k) => k,
            Err(reason) => {
                return Err(TryPutError::Refused(refused(
                    PutErrorKind::Invalid(reason),
                    record,
                )))
            }
        };
        if shared.closed.load(Ordering::Acquire) {
            return Err(TryPutError::Refused(refused(
                PutErrorKind::ShutDown,
                record,
            )));
        }
        let cost = record.cost();
        let r = match shared.records.try_acquire() {
            Ok(r) => r,
            Err(TryAcquireError::NoPermits) => return Err(TryPutError::Full(record)),
            Err(TryAcquireError::Closed) => {
                return Err(TryPutError::Refused(refused(self.closed_kind(), record)))
            }
        };
        let b = match shared.bytes.try_acquire_many(cost as u32) {
            Ok(b) => b,
            Err(TryAcquireError::NoPermits) => return Err(TryPutError::Full(record)),
            Err(TryAcquireError::Closed) => {
                return Err(TryPutError::Refused(refused(self.closed_kind(), record)))
            }
        };
        r.forget();
        b.forget();
        self.enqueue(stream, record, hash_key, cost)
            .map_err(TryPutError::Refused)
    }

    fn closed_kind(&self) -> PutErrorKind {
        if self.inner.shared.closed.load(Ordering::Acquire) {
            PutErrorKind::ShutDown
        } else {
            PutErrorKind::Stopped
        }
    }

    fn enqueue(
        &self,
        stream: &str,
        record: Record,
        hash_key: u128,
        cost: usize,
    ) -> Result<PutHandle, PutError> {
        let shared = &self.inner.shared;
        let c = &shared.config;
        let (pending, handle) = Pending::new(
            record,
            hash_key,
            Instant::now(),
            c.record_max_buffered_time,
            c.record_ttl,
            0,
        );
        match shared.push(stream, pending) {
            Ok(()) => Ok(handle),
            Err(pending) => {
                shared.release(1, cost);
                Err(refused(PutErrorKind::ShutDown, pending.abandon()))
            }
        }
    }

    /// Sends everything buffered now, without waiting for deadlines, and waits until every
    /// record put before the call is resolved (written or failed). Records put meanwhile
    /// are sent promptly too but not waited for.
    pub async fn flush(&self) -> Result<(), FlushError> {
        let (tx, rx) = oneshot::channel();
        let epoch = {
            let mut intake = self.inner.shared.intake.lock();
            let e = intake.epoch;
            intake.epoch = intake.epoch.wrapping_add(1);
            e
        };
        self.inner
            .commands
            .send(Command::Flush(epoch, tx))
            .map_err(|_| FlushError::Stopped)?;
        rx.await.map_err(|_| FlushError::Stopped)
    }

    /// Stops accepting records (`put` fails with [`PutErrorKind::ShutDown`] from now on),
    /// sends everything buffered, and waits until every record is resolved — delivered, or
    /// failed and handed back through its handle. Nothing is dropped silently. This takes
    /// at most about `record_ttl` plus `request_timeout` when Kinesis is unreachable.
    /// Calling it again, or from another clone, waits for the same end.
    pub async fn shutdown(&self) -> Result<(), FlushError> {
        let shared = &self.inner.shared;
        {
            let mut intake = shared.intake.lock();
            intake.closed = true;
            shared.closed.store(true, Ordering::Release);
        }
        let (tx, rx) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Shutdown(tx))
            .map_err(|_| FlushError::Stopped)?;
        rx.await.map_err(|_| FlushError::Stopped)
    }

    /// User records accepted and not yet resolved.
    pub fn outstanding_records(&self) -> usize {
        self.inner.shared.outstanding()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.inner.shared.config
    }

    /// A [`futures::Sink`] of [`Record`]s into `stream`.
    pub fn sink(&self, stream: impl Into<String>) -> ProducerSink {
        ProducerSink::new(self.clone(), stream.into())
    }
}

fn refused(kind: PutErrorKind, record: Record) -> PutError {
    PutError {
        kind,
        record: Box::new(record),
        attempts: Vec::new(),
    }
}

/// Checks a record against Kinesis's and the configuration's limits; returns its hash key.
fn validate(config: &Config, record: &Record) -> Result<u128, InvalidRecord> {
    let pk = &record.partition_key;
    let chars = if pk.len() <= MAX_PARTITION_KEY_CHARS {
        pk.chars().count()
    } else if pk.len() > MAX_PARTITION_KEY_BYTES {
        MAX_PARTITION_KEY_CHARS + 1
    } else {
        pk.chars().count()
    };
    if chars == 0 || chars > MAX_PARTITION_KEY_CHARS {
        return Err(InvalidRecord::PartitionKeyLength { chars });
    }
    if record.data.len() > config.max_user_record_size {
        return Err(InvalidRecord::TooLarge {
            len: record.data.len(),
            max: config.max_user_record_size,
        });
    }
    match &record.explicit_hash_key {
        Some(ehk) => ehk
            .parse::<HashKey>()
            .map(|k| k.0)
            .map_err(|_| InvalidRecord::ExplicitHashKey(ehk.clone())),
        None => Ok(HashKey::from_partition_key(pk).0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let c = Config::default();
        assert_eq!(
            validate(&c, &Record::new("", Bytes::new())),
            Err(InvalidRecord::PartitionKeyLength { chars: 0 })
        );
        assert!(validate(&c, &Record::new("é".repeat(256), Bytes::new())).is_ok());
        assert_eq!(
            validate(&c, &Record::new("é".repeat(257), Bytes::new())),
            Err(InvalidRecord::PartitionKeyLength { chars: 257 })
        );
        assert_eq!(
            validate(&c, &Record::new("k".repeat(2000), Bytes::new())),
            Err(InvalidRecord::PartitionKeyLength { chars: 257 })
        );
        assert_eq!(
            validate(&c, &Record::new("k", vec![0; 1_048_577])),
            Err(InvalidRecord::TooLarge {
                len: 1_048_577,
                max: 1_048_576
            })
        );
        assert_eq!(
            validate(&c, &Record::new("a", Bytes::new())),
            Ok(0x0cc175b9c0f1b6a831c399e269772661)
        );
        let ehk = Record::new("a", Bytes::new()).with_explicit_hash_key("42");
        assert_eq!(validate(&c, &ehk), Ok(42));
        let bad =
            Record::new("a", Bytes::new()).with_explicit_hash_key(u128::MAX.to_string() + "0");
        assert!(matches!(
            validate(&c, &bad),
            Err(InvalidRecord::ExplicitHashKey(_))
        ));
    }

    #[tokio::test]
    async fn build_refuses_an_invalid_config() {
        let c = Config {
            collection_max_count: 0,
            ..Config::default()
        };
        let e = Producer::builder(c)
            .endpoint_url("http://127.0.0.1:1")
            .build()
            .await
            .unwrap_err();
        assert!(
            matches!(e, BuildError::Config(ref c) if c.setting == "collection_max_count"),
            "{e}"
        );
    }
}
