//! Riffle broker: a Kinesis Data Streams compatible server.
//!
//! The module map, in the order a request flows (start reading at [`server`]):
//! - [`server`]: listeners (HTTP/1.1 + h2c on one port), the request pipeline, shutdown.
//! - [`storage`]: per-shard segmented logs and the metadata file.
//! - [`config`], [`clock`]: settings and the injected wall clock.

pub mod clock;
pub mod config;
pub mod storage;
