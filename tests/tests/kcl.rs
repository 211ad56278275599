//! End-to-end tests of the consumer library (`riffle-kcl`) against the real broker binary and
//! a real DynamoDB-compatible server (`moto_server`), and against the local SQLite store.
//!
//! Needs `cargo build -p riffle-broker` first (see the `riffle_tests` docs) and moto_server in
//! `.venv` (`./test.sh` installs it).

#[path = "kcl/auth.rs"]
mod auth;
#[path = "kcl/common.rs"]
mod common;
#[path = "kcl/scenarios.rs"]
mod scenarios;
#[path = "kcl/stores.rs"]
mod stores;
#[path = "kcl/workers.rs"]
mod workers;
