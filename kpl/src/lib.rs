//! A Kinesis producer library: what the AWS Kinesis Producer Library (KPL) does —
//! aggregation in the KPL format per predicted shard, collection into PutRecords, per-shard
//! rate limiting, retries — in one Rust process, with bounded memory and back-pressure,
//! exponential backoff, records handed back on failure, and an ordered mode. It talks to
//! any Kinesis endpoint through `aws-sdk-kinesis`: a Riffle broker or Amazon Kinesis.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use riffle_kpl::{Config, Producer};
//!
//! let producer = Producer::builder(Config::default())
//!     .endpoint_url("http://127.0.0.1:4567")
//!     .build()
//!     .await?;
//! let handle = producer.put("orders", "customer-42", &b"{\"total\": 12}"[..]).await?;
//! let receipt = handle.await?;
//! println!("{} {}", receipt.shard_id(), receipt.sequence_number());
//! producer.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! Start with [`Producer`] (`producer.rs`), then the pipeline it drives:
//!
//! - [`config`]: [`Config`], every setting and its default (the KPL's where it has one).
//! - `producer.rs`: [`Producer`] and [`ProducerBuilder`]: validation, the buffer budget,
//!   `put`/`try_put`/`flush`/`shutdown`. [`ProducerSink`] (`sink.rs`) wraps it as a
//!   [`futures::Sink`].
//! - `pipeline.rs`: **every decision**, as a pure state machine over an injected clock:
//!   aggregation per predicted shard, collection into requests, when to send, what each
//!   response means, shard-map changes, ordered mode. Read its module docs for the flow.
//! - `limiter.rs` (token buckets with throttle feedback), `retry.rs` (error classes,
//!   backoff), `shard_map.rs` (hash key → open shard): the pipeline's pure parts.
//! - `driver.rs`: the async shell — the engine task that executes the pipeline's decisions,
//!   sends PutRecords and ListShards with the SDK, resolves the futures.
//! - [`metrics`]: Prometheus metrics with the KPL's names.
//! - [`record`] and [`error`]: what goes in and what comes out.
//!
//! The aggregated-record format itself is in `riffle_core::aggregate`, shared with the
//! consumer library.
//!
//! # Pipeline
//!
//! `put` validates the record (partition key 1–256 characters, data at most
//! `max_user_record_size`, explicit hash key a decimal in 0..2^128), takes its size from the
//! buffer budget — waiting while the budget is spent — and hands it to the producer's task.
//! There it is routed by its hash key (explicit, or MD5 of the partition key) to its
//! *predicted shard*, from the stream's shard map (ListShards, open shards). Records of one
//! predicted shard are aggregated in the KPL's format (magic, protobuf, MD5), never across
//! shards; an aggregate is sent with partition key `"a"` and the first record's hash key as
//! its explicit hash key; a lone record goes as itself. Kinesis records are collected into
//! PutRecords requests of at most 500 records and 5 MiB, sent when full or when the oldest
//! record's deadline (`record_max_buffered_time`, 100 ms) comes, at most
//! `max_concurrent_requests` at once.
//!
//! # Back-pressure and memory
//!
//! Every accepted record holds its data and key bytes and one record slot of the budget
//! (`max_buffered_bytes`, `max_buffered_records`) until its outcome is sent. When either is
//! spent, [`Producer::put`] waits (fairly, in order) and [`Producer::try_put`] returns
//! [`TryPutError::Full`] with the record. Nothing else grows with load: records wait in the
//! pipeline only inside that budget; requests in flight are bounded by
//! `max_concurrent_requests`; per-shard state is bounded by the open shards (closed shards
//! are forgotten after a minute). The process's memory is therefore bounded by roughly
//! `max_buffered_bytes` + `max_buffered_records` × ~250 B of bookkeeping +
//! `max_concurrent_requests` × ~2.5 × `collection_max_size` (a request's encoded records,
//! its JSON body with base64 data) — whatever the broker does, slow, throttling or down.
//!
//! # Retries
//!
//! A failed attempt of a Kinesis record (a per-record `ErrorCode`) or of a whole request
//! (error response, timeout, connection failure) is classified:
//!
//! - throttling (`ProvisionedThroughputExceededException`, …): the shard's token buckets
//!   are emptied and their rate halved (recovering by 10 % of the configured rate per
//!   second), then the records are retried — or failed at once with `fail_if_throttled`;
//! - transient (`InternalFailure`, 5xx, timeouts, connection errors): retried;
//! - permanent (validation, `ResourceNotFoundException`, `AccessDeniedException`, other
//!   4xx): failed at once.
//!
//! Retries wait an exponential backoff with full jitter (uniform below
//! `retry_initial_backoff` × 2^(attempt−1), capped at `retry_max_backoff`), then re-enter
//! aggregation, until `record_ttl` (30 s) after the `put`: then the record fails as
//! expired. With `retries = false` the first failed attempt fails the record. The SDK's own
//! retries are off: the producer owns retrying, per record. A request that times out may
//! have been written; its records are retried and may then arrive twice.
//!
//! A failed record comes back as a [`PutError`] with the record and every attempt (error
//! code, message, when it started, how long it took).
//!
//! # Resharding and the wrong shard
//!
//! When an aggregate lands on a shard other than the predicted one, the map is stale. If
//! the shard it landed on owns every one of its records' hash keys (say, the child holding
//! all of them after a split), it is done. Otherwise a consumer would drop the whole
//! aggregate (the KCL drops an aggregate holding a record outside the shard's range), so
//! *all* its user records are sent again after the map is refreshed (the KPL re-sends only
//! the out-of-range records, which loses the others). A shard unknown to the producer is
//! looked up in the refreshed map before deciding. A single record is routed by its own
//! hash key and is right wherever it lands; it still triggers a refresh.
//!
//! # Ordering
//!
//! Default mode: **no per-key order guarantee**, as with the KPL. Records are reordered by
//! concurrent requests, by partial failures of a request (a failed record is retried after
//! later ones succeeded), and by retries re-entering aggregation with newer records. Without
//! failures, records of one partition key are written in `put` order when they fall into
//! the same request, and in any case within about twice `record_max_buffered_time` plus
//! the request latency.
//!
//! Ordered mode (`ordered = true`): **records with the same partition key (or explicit hash
//! key) are written in the order their `put`s were accepted, retries included**, and no
//! later record of a key is written before an earlier one that is still being retried. It
//! sends at most one Kinesis record per shard per request and waits for its response before
//! sending the shard's next one; a failed record goes back to the front of its shard's
//! queue. When a shard is split or merged, records of the new shards wait until everything
//! queued for or in flight to the old shard has been sent, and go after it. Limits:
//! duplicates are possible (a timed-out request may have succeeded; its retry then repeats
//! it before the next record); a record that fails for good (expired, rejected) leaves a
//! gap while later records continue; across different shards there is no order. Throughput
//! per shard is one Kinesis record per round trip — with aggregation on, up to
//! `aggregation_max_size` bytes of user records per round trip; with it off, one user
//! record per round trip. Ordered mode needs the shard map: without ListShards permission
//! records wait for it until they expire.
//!
//! # Deviations from the KPL, and why
//!
//! - Bounded buffer with back-pressure instead of unbounded buffering (KPL issues #122,
//!   #624: memory growth, OOM).
//! - Exponential backoff with jitter and throttle feedback into the limiter, instead of
//!   retrying every 50 ms with only the token bucket as a brake (KPL issue #35).
//! - The wrong-shard retry re-sends the whole aggregate (see above).
//! - Token buckets start full: a shard may take a one-second burst, as Kinesis allows.
//! - Metrics are Prometheus, per stream (not per shard), not CloudWatch.
//! - Records are never re-sorted by deadline inside an aggregate (the KPL's reducer does),
//!   so a single failure-free request keeps `put` order.

pub mod config;
mod driver;
pub mod error;
mod limiter;
pub mod metrics;
mod pipeline;
mod producer;
pub mod record;
mod retry;
mod shard_map;
mod sink;

pub use config::{Config, ConfigError, RateLimit};
pub use error::{
    Attempt, BuildError, FlushError, InvalidRecord, PutError, PutErrorKind, TryPutError,
};
pub use producer::{Producer, ProducerBuilder};
pub use record::{PutHandle, PutResult, Receipt, Record};
pub use sink::ProducerSink;
