//! The workloads, one module per subcommand.

pub mod burst;
pub mod kpl;
pub mod latency;
pub mod propagation;
pub mod put;
pub mod read;
pub mod scale;
pub mod soak;
pub mod startup;
pub mod subscribe;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds as a [`Duration`], never negative.
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Microseconds since the Unix epoch.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A record's data for the delay workloads: its id and send time (µs), padded to `size`
/// bytes (at least 16).
pub fn stamped(id: u64, size: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(size.max(16));
    data.extend_from_slice(&id.to_le_bytes());
    data.extend_from_slice(&unix_us().to_le_bytes());
    data.resize(size.max(16), b'.');
    data
}

/// The id and send time of data made by [`stamped`], if it is one.
pub fn read_stamp(data: &[u8]) -> Option<(u64, u64)> {
    let id = u64::from_le_bytes(data.get(..8)?.try_into().ok()?);
    let sent_us = u64::from_le_bytes(data.get(8..16)?.try_into().ok()?);
    Some((id, sent_us))
}
