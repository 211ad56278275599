//! The Riffle benchmark harness as a library: a lean SigV4-signing Kinesis client
//! ([`client`]), the operations the workloads use ([`kinesis`]), the one-line JSON report
//! ([`report`]) and the workloads ([`workload`]). The `riffle-load` binary is a thin CLI over
//! it; `bench/run.sh` runs every workload against Riffle and its peers.

#![warn(missing_docs)]

pub mod client;
pub mod kinesis;
pub mod report;
pub mod workload;

use std::time::Duration;

use clap::Args;

use client::Kinesis;

/// Options every workload takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The endpoint, e.g. http://127.0.0.1:4567.
    #[arg(long, default_value = "http://127.0.0.1:4567")]
    pub endpoint: String,
    /// Name of the target in the report (riffle, kinesalite, …).
    #[arg(long, default_value = "riffle")]
    pub target_name: String,
    /// Cleartext HTTP/2 with prior knowledge instead of HTTP/1.1.
    #[arg(long)]
    pub http2: bool,
    /// Region for the signature's credential scope.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Most records the measured phase sends or reads (workload default if absent).
    #[arg(long)]
    pub records: Option<u64>,
    /// Longest the measured phase runs, seconds (workload default if absent).
    #[arg(long)]
    pub duration_secs: Option<f64>,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub request_timeout_secs: f64,
    /// Longest to wait for a new stream to become ACTIVE, seconds.
    #[arg(long, default_value_t = 120.0)]
    pub create_timeout_secs: f64,
    /// Hard limit on the whole run, seconds (default: computed from the workload's bounds).
    #[arg(long)]
    pub max_run_secs: Option<f64>,
    /// Prefix of the streams the run creates.
    #[arg(long, default_value = "bench")]
    pub stream_prefix: String,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// What every workload gets: the client, the shared options, and the run's name.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The client.
    pub k: Kinesis,
    /// The shared options.
    pub common: Common,
}

impl Ctx {
    /// A fresh stream name for this run.
    pub fn stream_name(&self, what: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!(
            "{}-{what}-{}-{:06}",
            self.common.stream_prefix,
            std::process::id(),
            nanos % 1_000_000
        )
    }

    /// How long to wait for a stream to become ACTIVE.
    pub fn create_wait(&self) -> Duration {
        Duration::from_secs_f64(self.common.create_timeout_secs)
    }
}
