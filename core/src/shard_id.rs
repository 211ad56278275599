//! Shard ids: `shardId-` followed by a 12-digit, zero-padded index.

use std::fmt;
use std::str::FromStr;

/// The index-based id of a shard within a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub u32);

/// The largest shard index a shard id can name.
pub const MAX_SHARD_INDEX: u32 = i32::MAX as u32;

/// A shard id that names no shard index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a shard id")]
pub struct ShardIdError;

impl ShardId {
    /// The shard's index.
    pub fn index(self) -> u32 {
        self.0
    }

    /// Parses a shard id in any of the forms Kinesis accepts: `shardId-000000000001`,
    /// `shardId-1`, `1`, or any prefix ending in `-` followed by the index.
    pub fn parse_lenient(s: &str) -> Result<ShardId, ShardIdError> {
        let digits = s.rsplit('-').next().unwrap_or(s);
        if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ShardIdError);
        }
        match digits.parse::<u64>() {
            Ok(n) if n <= u64::from(MAX_SHARD_INDEX) => Ok(ShardId(n as u32)),
            _ => Err(ShardIdError),
        }
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shardId-{:012}", self.0)
    }
}

impl FromStr for ShardId {
    type Err = ShardIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ShardId::parse_lenient(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_twelve_digits() {
        assert_eq!(ShardId(7).to_string(), "shardId-000000000007");
    }

    #[test]
    fn accepts_lenient_forms() {
        for s in [
            "shardId-000000000001",
            "shardId-1",
            "1",
            "foo-1",
            "shardId-00001",
        ] {
            assert_eq!(ShardId::parse_lenient(s), Ok(ShardId(1)), "{s}");
        }
        for s in ["", "shardId-", "shardId-x", "shardId-2147483648", "-", "1a"] {
            assert_eq!(ShardId::parse_lenient(s), Err(ShardIdError), "{s}");
        }
    }
}
