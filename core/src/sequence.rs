//! Sequence numbers.
//!
//! Kinesis sequence numbers are decimal strings that clients compare as big integers. Riffle
//! derives each one from the shard's index and the record's position in the shard's log:
//!
//! ```text
//! sequence number = 2·10^38 + shard_index · 2^64 + offset
//! ```
//!
//! where `offset` is the record's log position plus one; offset 0 is the shard's starting
//! sequence number, which stands *before* its first record. So "read after X" works for
//! every X a client can hold, including a shard's starting sequence number and a
//! `ContinuationSequenceNumber` handed out before any record arrived.
//!
//! Every sequence number has exactly 39 digits and starts with `2`. That gives:
//! - strictly increasing within a shard (positions are), and unique within a stream
//!   (shard indexes are);
//! - children (which take higher shard indexes) sort after their parents;
//! - equal-length strings, so even a careless string comparison orders them correctly;
//! - the shard and position can be recovered from the number alone, which is how
//!   `AT_SEQUENCE_NUMBER` finds its place in the log.

use std::fmt;
use std::str::FromStr;

use crate::shard_id::{ShardId, MAX_SHARD_INDEX};

const BASE: u128 = 200_000_000_000_000_000_000_000_000_000_000_000_000;

/// A record's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequenceNumber(u128);

/// Why a string is not one of this broker's sequence numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceNumberError {
    /// Not of the form Kinesis allows: `0|[1-9][0-9]{0,128}`.
    #[error("not a decimal sequence number")]
    Malformed,
    /// A well-formed number that this broker never issued.
    #[error("not a sequence number issued by this broker")]
    Foreign,
}

impl SequenceNumber {
    /// The sequence number of the record at `position` in the log of shard `shard`.
    ///
    /// # Panics
    /// If `position` is `u64::MAX` (no log gets there).
    pub fn new(shard: ShardId, position: u64) -> SequenceNumber {
        SequenceNumber::before(
            shard,
            position.checked_add(1).expect("position below u64::MAX"),
        )
    }

    /// The sequence number that stands just before the record at `position`: the previous
    /// record's, or the shard's starting sequence number when `position` is 0. Reading
    /// `AFTER_SEQUENCE_NUMBER` it resumes exactly at `position`.
    pub fn before(shard: ShardId, position: u64) -> SequenceNumber {
        SequenceNumber(BASE + (u128::from(shard.index()) << 64) + u128::from(position))
    }

    /// The shard's starting sequence number (before its first record).
    pub fn shard_start(shard: ShardId) -> SequenceNumber {
        SequenceNumber::before(shard, 0)
    }

    /// The shard this sequence number belongs to.
    pub fn shard(self) -> ShardId {
        ShardId(((self.0 - BASE) >> 64) as u32)
    }

    fn offset(self) -> u64 {
        (self.0 - BASE) as u64
    }

    /// The record position this sequence number names, `None` for a shard's start.
    pub fn position(self) -> Option<u64> {
        self.offset().checked_sub(1)
    }

    /// Where `AT_SEQUENCE_NUMBER` starts reading.
    pub fn at_position(self) -> u64 {
        self.offset().saturating_sub(1)
    }

    /// Where `AFTER_SEQUENCE_NUMBER` starts reading.
    pub fn after_position(self) -> u64 {
        self.offset()
    }

    /// Whether `s` has the shape of a Kinesis sequence number at all.
    pub fn is_well_formed(s: &str) -> bool {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= 129
            && b.iter().all(u8::is_ascii_digit)
            && (b[0] != b'0' || b.len() == 1)
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for SequenceNumber {
    type Err = SequenceNumberError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !SequenceNumber::is_well_formed(s) {
            return Err(SequenceNumberError::Malformed);
        }
        let value: u128 = s.parse().map_err(|_| SequenceNumberError::Foreign)?;
        if value < BASE || ((value - BASE) >> 64) > u128::from(MAX_SHARD_INDEX) {
            return Err(SequenceNumberError::Foreign);
        }
        Ok(SequenceNumber(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn start_stands_before_the_first_record() {
        let start = SequenceNumber::shard_start(ShardId(3));
        let first = SequenceNumber::new(ShardId(3), 0);
        assert!(start < first);
        assert_eq!(start.position(), None);
        assert_eq!(start.after_position(), 0);
        assert_eq!(start.at_position(), 0);
        assert_eq!(first.position(), Some(0));
        assert_eq!(first.after_position(), 1);
        assert_eq!(first.at_position(), 0);
        assert_eq!(SequenceNumber::before(ShardId(3), 1), first);
    }

    #[test]
    fn has_39_digits() {
        let first = SequenceNumber::shard_start(ShardId(0)).to_string();
        let last = SequenceNumber::new(ShardId(MAX_SHARD_INDEX), u64::MAX - 1).to_string();
        assert_eq!(first.len(), 39);
        assert_eq!(last.len(), 39);
        assert!(first.starts_with('2') && last.starts_with('2'));
    }

    #[test]
    fn rejects_malformed_and_foreign() {
        assert_eq!(
            "".parse::<SequenceNumber>(),
            Err(SequenceNumberError::Malformed)
        );
        assert_eq!(
            "01".parse::<SequenceNumber>(),
            Err(SequenceNumberError::Malformed)
        );
        assert_eq!(
            "12a".parse::<SequenceNumber>(),
            Err(SequenceNumberError::Malformed)
        );
        assert_eq!(
            "1".parse::<SequenceNumber>(),
            Err(SequenceNumberError::Foreign)
        );
        let too_long = "9".repeat(56);
        assert_eq!(
            too_long.parse::<SequenceNumber>(),
            Err(SequenceNumberError::Foreign)
        );
    }

    proptest! {
        #[test]
        fn round_trips(shard in 0..=MAX_SHARD_INDEX, pos in 0..u64::MAX) {
            let seq = SequenceNumber::new(ShardId(shard), pos);
            let parsed: SequenceNumber = seq.to_string().parse().unwrap();
            prop_assert_eq!(parsed, seq);
            prop_assert_eq!(parsed.shard(), ShardId(shard));
            prop_assert_eq!(parsed.position(), Some(pos));
            prop_assert_eq!(parsed.at_position(), pos);
            prop_assert_eq!(parsed.after_position(), pos + 1);
        }

        /// Order by (shard, position) equals order as big integers and as strings.
        #[test]
        fn ordering_matches_positions(a in (0..=MAX_SHARD_INDEX, 0..u64::MAX), b in (0..=MAX_SHARD_INDEX, 0..u64::MAX)) {
            let sa = SequenceNumber::new(ShardId(a.0), a.1);
            let sb = SequenceNumber::new(ShardId(b.0), b.1);
            prop_assert_eq!(a.cmp(&b), sa.cmp(&sb));
            prop_assert_eq!(a.cmp(&b), sa.to_string().cmp(&sb.to_string()));
        }
    }
}
