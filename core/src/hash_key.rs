//! The 128-bit hash-key space that shards partition.
//!
//! A record's partition key is hashed with MD5; the 16-byte digest read as an unsigned
//! big-endian integer is its [`HashKey`]. Each open shard owns a contiguous, inclusive
//! [`HashKeyRange`], and the open shards of a stream cover `0..=2^128-1` exactly.

use std::fmt;
use std::str::FromStr;

use md5::{Digest, Md5};

/// A point in the 128-bit hash-key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HashKey(pub u128);

/// Why a decimal hash key could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashKeyError {
    /// Not a plain decimal number.
    #[error("not a decimal number")]
    NotDecimal,
    /// Larger than `2^128 - 1`.
    #[error("out of the range [0, 2^128-1]")]
    OutOfRange,
}

impl HashKey {
    /// The smallest hash key.
    pub const MIN: HashKey = HashKey(0);
    /// The largest hash key, `2^128 - 1`.
    pub const MAX: HashKey = HashKey(u128::MAX);

    /// The hash key of a partition key: MD5 of its UTF-8 bytes, big-endian.
    pub fn from_partition_key(partition_key: &str) -> HashKey {
        let digest = Md5::digest(partition_key.as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest);
        HashKey(u128::from_be_bytes(bytes))
    }
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for HashKey {
    type Err = HashKeyError;

    /// Parses a decimal hash key as Kinesis writes them (no sign, no leading `+`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HashKeyError::NotDecimal);
        }
        s.parse::<u128>()
            .map(HashKey)
            .map_err(|_| HashKeyError::OutOfRange)
    }
}

/// An inclusive range of hash keys owned by one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashKeyRange {
    /// First hash key of the range.
    pub start: HashKey,
    /// Last hash key of the range (inclusive).
    pub end: HashKey,
}

impl HashKeyRange {
    /// The whole space.
    pub const FULL: HashKeyRange = HashKeyRange {
        start: HashKey::MIN,
        end: HashKey::MAX,
    };

    /// A range from `start` to `end`, both inclusive. `None` if `start > end`.
    pub fn new(start: HashKey, end: HashKey) -> Option<HashKeyRange> {
        (start <= end).then_some(HashKeyRange { start, end })
    }

    /// Whether `key` falls in this range.
    pub fn contains(&self, key: HashKey) -> bool {
        self.start <= key && key <= self.end
    }

    /// Whether `next` begins right after this range ends.
    pub fn is_followed_by(&self, next: &HashKeyRange) -> bool {
        self.end.0.checked_add(1) == Some(next.start.0)
    }

    /// Splits the range so that the second part starts at `at`. Both parts are non-empty,
    /// so `at` must lie in `(start, end]`.
    pub fn split_at(&self, at: HashKey) -> Option<(HashKeyRange, HashKeyRange)> {
        if at <= self.start || at > self.end {
            return None;
        }
        Some((
            HashKeyRange {
                start: self.start,
                end: HashKey(at.0 - 1),
            },
            HashKeyRange {
                start: at,
                end: self.end,
            },
        ))
    }

    /// The union of two adjacent ranges, in either order. `None` if they are not adjacent.
    pub fn merge(&self, other: &HashKeyRange) -> Option<HashKeyRange> {
        if self.is_followed_by(other) {
            Some(HashKeyRange {
                start: self.start,
                end: other.end,
            })
        } else if other.is_followed_by(self) {
            Some(HashKeyRange {
                start: other.start,
                end: self.end,
            })
        } else {
            None
        }
    }

    /// The hash key in the middle of the range (rounded down).
    pub fn midpoint(&self) -> HashKey {
        HashKey(self.start.0 + (self.end.0 - self.start.0) / 2)
    }

    /// `n` ranges that split the whole space evenly, as Kinesis does when a stream is
    /// created: with `h = floor(2^128 / n)`, range `i` is `[i*h, (i+1)*h - 1]` and the last
    /// range ends at `2^128 - 1`.
    ///
    /// # Panics
    /// If `n` is zero.
    pub fn even_split(n: u32) -> Vec<HashKeyRange> {
        assert!(n > 0, "a stream has at least one shard");
        if n == 1 {
            return vec![HashKeyRange::FULL];
        }
        let n128 = u128::from(n);
        // floor(2^128 / n) computed without overflow: 2^128 = u128::MAX + 1.
        let width = u128::MAX / n128 + u128::from(u128::MAX % n128 == n128 - 1);
        (0..n128)
            .map(|i| HashKeyRange {
                start: HashKey(i * width),
                end: if i == n128 - 1 {
                    HashKey::MAX
                } else {
                    HashKey((i + 1) * width - 1)
                },
            })
            .collect()
    }
}

/// Whether `ranges`, sorted by start, cover the whole space with no gap and no overlap.
pub fn partitions_space(ranges: &[HashKeyRange]) -> bool {
    let (Some(first), Some(last)) = (ranges.first(), ranges.last()) else {
        return false;
    };
    first.start == HashKey::MIN
        && last.end == HashKey::MAX
        && ranges.windows(2).all(|w| w[0].is_followed_by(&w[1]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn partition_key_hash_is_md5_big_endian() {
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(
            HashKey::from_partition_key("a"),
            HashKey(0x0cc175b9c0f1b6a831c399e269772661)
        );
    }

    #[test]
    fn two_shards_split_like_kinesis() {
        let r = HashKeyRange::even_split(2);
        assert_eq!(
            r[0].end.to_string(),
            "170141183460469231731687303715884105727"
        );
        assert_eq!(
            r[1].start.to_string(),
            "170141183460469231731687303715884105728"
        );
        assert_eq!(r[1].end, HashKey::MAX);
    }

    #[test]
    fn three_shards_use_floor_width() {
        let r = HashKeyRange::even_split(3);
        let width = u128::MAX / 3; // 2^128 / 3 floors to the same value
        assert_eq!(r[1].start.0, width);
        assert_eq!(r[2].start.0, 2 * width);
        assert!(partitions_space(&r));
    }

    #[test]
    fn parse_rejects_out_of_range_and_garbage() {
        assert_eq!(
            "340282366920938463463374607431768211456".parse::<HashKey>(),
            Err(HashKeyError::OutOfRange)
        );
        assert_eq!("-1".parse::<HashKey>(), Err(HashKeyError::NotDecimal));
        assert_eq!("".parse::<HashKey>(), Err(HashKeyError::NotDecimal));
        assert_eq!("0".parse::<HashKey>(), Ok(HashKey(0)));
    }

    proptest! {
        #[test]
        fn even_split_partitions_the_space(n in 1u32..5000) {
            let r = HashKeyRange::even_split(n);
            prop_assert_eq!(r.len(), n as usize);
            prop_assert!(partitions_space(&r));
        }

        /// Any sequence of splits and merges keeps the open ranges a partition.
        #[test]
        fn splits_and_merges_keep_a_partition(
            n in 1u32..16,
            ops in proptest::collection::vec((any::<bool>(), any::<u64>(), any::<u128>()), 0..64)
        ) {
            let mut open = HashKeyRange::even_split(n);
            for (split, pick, at) in ops {
                let i = (pick as usize) % open.len();
                if split {
                    let r = open[i];
                    if let Some((a, b)) = r.split_at(HashKey(r.start.0.saturating_add(at % (r.end.0 - r.start.0).max(1)).max(r.start.0 + 1).min(r.end.0))) {
                        open.splice(i..=i, [a, b]);
                    }
                } else if i + 1 < open.len() {
                    let merged = open[i].merge(&open[i + 1]).expect("neighbours are adjacent");
                    open.splice(i..=i + 1, [merged]);
                }
                prop_assert!(partitions_space(&open));
                let key = HashKey(at);
                prop_assert_eq!(open.iter().filter(|r| r.contains(key)).count(), 1);
            }
        }
    }
}
