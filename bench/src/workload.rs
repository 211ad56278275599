//! The workloads, one module per subcommand.

pub mod burst;
pub mod latency;
pub mod propagation;
pub mod put;
pub mod read;
pub mod scale;
pub mod startup;
pub mod subscribe;

use std::time::Duration;

/// Seconds as a [`Duration`], never negative.
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}
