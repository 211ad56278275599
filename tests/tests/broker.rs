//! End-to-end tests: the real `riffle-broker` binary driven by the real AWS
//! SDK for Rust (and, for wire edge cases, hand-written HTTP/1.1).
//!
//! Every test starts its own broker through [`riffle_tests::TestBroker`].
//! The broker binary must be built first (`cargo build -p riffle-broker`, or
//! `cargo build` at the workspace root); `cargo test` alone does not build
//! `target/debug/riffle-broker`. See the `riffle_tests` crate docs.

#[path = "broker/auth.rs"]
mod auth;
#[path = "broker/common.rs"]
mod common;
#[path = "broker/control_plane.rs"]
mod control_plane;
#[path = "broker/data_plane.rs"]
mod data_plane;
#[path = "broker/durability.rs"]
mod durability;
#[path = "broker/encryption.rs"]
mod encryption;
#[path = "broker/fanout.rs"]
mod fanout;
#[path = "broker/hardening.rs"]
mod hardening;
#[path = "broker/limits.rs"]
mod limits;
#[path = "broker/metrics.rs"]
mod metrics;
#[path = "broker/resharding.rs"]
mod resharding;
#[path = "broker/resource_policy.rs"]
mod resource_policy;
#[path = "broker/sts.rs"]
mod sts;
#[path = "broker/tls.rs"]
mod tls;
#[path = "broker/wire.rs"]
mod wire;
