//! riffle-kpl (work in progress)

pub mod config;
pub mod error;
mod limiter;
mod pipeline;
pub mod record;
mod retry;
mod shard_map;
