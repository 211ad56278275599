//! riffle-kpl: a Kinesis producer library in the manner of the AWS KPL, without its daemon.
//!
//! # Layout
//!
//! Start with [`Producer`] (`producer.rs`), then the pipeline it drives:
//!
//! - [`config`]: [`Config`], every setting with its default (the KPL's where it has one).
//! - `producer.rs`: [`Producer`] and [`ProducerBuilder`] — validation, the buffer budget,
//!   `put` / `try_put` / `flush` / `shutdown`; `sink.rs`: [`ProducerSink`].
//! - `pipeline.rs`: **every decision**, as a pure state machine over an injected clock —
//!   aggregation per predicted shard, collection into requests, when to send, what each
//!   response means, shard-map changes, ordered mode. Its module docs draw the flow.
//! - `limiter.rs` (token buckets with throttle feedback), `retry.rs` (error classes,
//!   backoff), `shard_map.rs` (hash key → open shard): the pipeline's pure parts.
//! - `driver.rs`: the async shell — the engine task executing the pipeline's decisions,
//!   PutRecords and ListShards through `aws-sdk-kinesis`, resolving the futures.
//! - [`metrics`]: Prometheus metrics with the KPL's names. [`record`], [`error`]: what goes
//!   in and what comes out.
//!
//! The aggregated-record format itself is `riffle_core::aggregate`, shared with consumers.
//!
//! The rest of this page is the crate's README.
//!
#![doc = include_str!("../README.md")]

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
