//! Riffle broker: a Kinesis Data Streams compatible server.
//!
//! The module map, in the order a request flows (start reading at [`server`]):
//! - [`server`]: listeners (HTTP/1.1 + h2c on one port), the request pipeline, the
//!   authentication seam, the admin listener, shutdown.
//! - [`api`]: operation names, decoding, validation, error mapping ([`api::error`] is the only
//!   place `__type` and status codes are decided) and the handlers ([`api::ops`]).
//! - [`broker`]: streams, shard maps, control-plane transitions, metadata persistence, and
//!   [`broker::Broker::locate`], the one place shard ownership is looked up.
//! - [`shard`]: a shard's writer task (group commit), limits and metrics.
//! - [`iterator`]: signed, expiring shard iterators.
//! - [`storage`]: per-shard segmented logs and the metadata file.
//! - [`tls`]: the optional TLS listener (ALPN h2 and http/1.1).
//! - [`encryption`]: encryption at rest: the key ring and each stream's keys.
//! - [`budget`]: the in-flight memory budget requests draw on as their bytes arrive.
//! - [`limits`], [`metrics`], [`config`], [`clock`], [`error`]: supporting pieces.

pub mod api;
pub mod auth;
pub mod broker;
pub mod budget;
pub mod clock;
pub mod config;
pub mod encryption;
pub mod error;
pub mod iterator;
pub mod limits;
pub mod metrics;
pub mod server;
pub mod shard;
pub mod storage;
pub mod tls;
