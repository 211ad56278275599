//! Sequence numbers.
//!
//! Kinesis sequence numbers are decimal strings that clients compare as big integers; the ones
//! Amazon Kinesis issues have 56 digits. Riffle's have 56 digits too, and are laid out as one
//! 186-bit number (most significant field first):
//!
//! ```text
//! bit 185          version: always 1, so every number has exactly 56 digits (4.9·10^55 ..)
//! bits 140..185    zero (reserved)
//! bits  96..140    the stream's incarnation: its creation time, ms since the epoch
//! bits  64..96     the shard index
//! bits   0..64     offset: the record's log position plus one
//! ```
//!
//! Offset 0 is the shard's starting sequence number, which stands *before* its first record,
//! so "read after X" works for every X a client can hold, including a shard's starting
//! sequence number and a `ContinuationSequenceNumber` handed out before any record arrived.
//!
//! That gives:
//! - strictly increasing within a shard (positions are), unique within a stream (shard
//!   indexes are), and children (which take higher shard indexes) sort after their parents;
//! - the shard and position can be read back from the number, which is how
//!   `AT_SEQUENCE_NUMBER` finds its place in the log without an index;
//! - the number names the stream incarnation it came from: a checkpoint taken on a stream
//!   that was deleted and created again under the same name is recognised as foreign and
//!   refused, never mapped to a position of the new stream;
//! - equal-length strings, so even a careless string comparison orders them correctly.

use std::fmt;
use std::str::FromStr;

use crate::shard_id::{ShardId, MAX_SHARD_INDEX};

/// Bits of the incarnation field: creation times up to the year 2527.
pub const EPOCH_BITS: u32 = 44;

/// The largest incarnation (creation time, ms) a sequence number can carry.
pub const MAX_EPOCH: u64 = (1 << EPOCH_BITS) - 1;

/// Digits of every sequence number.
pub const DIGITS: usize = 56;

/// The version bit's place in the top 64-bit limb (bit 185 overall).
const VERSION_BIT: u64 = 1 << (185 - 128);

/// A record's sequence number (or a shard's starting one).
///
/// Ordered as the numbers are: by incarnation, then shard, then position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequenceNumber {
    epoch: u64,
    shard: u32,
    offset: u64,
}

/// Why a string is not one of this broker's sequence numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceNumberError {
    /// Not of the form Kinesis allows: `0|[1-9][0-9]{0,128}`.
    #[error("not a decimal sequence number")]
    Malformed,
    /// A well-formed number that this broker's layout cannot have produced.
    #[error("not a sequence number issued by this broker")]
    Foreign,
}

impl SequenceNumber {
    /// The sequence number of the record at `position` in the log of shard `shard` of the
    /// stream incarnation `epoch` (its creation time, ms).
    ///
    /// # Panics
    /// If `position` is `u64::MAX` (no log gets there) or `epoch` exceeds [`MAX_EPOCH`].
    pub fn new(epoch: u64, shard: ShardId, position: u64) -> SequenceNumber {
        SequenceNumber::before(
            epoch,
            shard,
            position.checked_add(1).expect("position below u64::MAX"),
        )
    }

    /// The sequence number that stands just before the record at `position`: the previous
    /// record's, or the shard's starting sequence number when `position` is 0. Reading
    /// `AFTER_SEQUENCE_NUMBER` it resumes exactly at `position`.
    ///
    /// # Panics
    /// If `epoch` exceeds [`MAX_EPOCH`].
    pub fn before(epoch: u64, shard: ShardId, position: u64) -> SequenceNumber {
        assert!(epoch <= MAX_EPOCH, "stream creation time beyond the layout");
        SequenceNumber {
            epoch,
            shard: shard.index(),
            offset: position,
        }
    }

    /// The shard's starting sequence number (before its first record).
    pub fn shard_start(epoch: u64, shard: ShardId) -> SequenceNumber {
        SequenceNumber::before(epoch, shard, 0)
    }

    /// The stream incarnation (creation time, ms) the number was issued by.
    pub fn epoch(self) -> u64 {
        self.epoch
    }

    /// The shard this sequence number belongs to.
    pub fn shard(self) -> ShardId {
        ShardId(self.shard)
    }

    /// The record position this sequence number names, `None` for a shard's start.
    pub fn position(self) -> Option<u64> {
        self.offset.checked_sub(1)
    }

    /// Where `AT_SEQUENCE_NUMBER` starts reading.
    pub fn at_position(self) -> u64 {
        self.offset.saturating_sub(1)
    }

    /// Where `AFTER_SEQUENCE_NUMBER` starts reading.
    pub fn after_position(self) -> u64 {
        self.offset
    }

    /// Whether `s` has the shape of a Kinesis sequence number at all.
    pub fn is_well_formed(s: &str) -> bool {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= 129
            && b.iter().all(u8::is_ascii_digit)
            && (b[0] != b'0' || b.len() == 1)
    }

    /// The number as three 64-bit limbs, least significant first.
    fn limbs(self) -> [u64; 3] {
        [
            self.offset,
            u64::from(self.shard) | (self.epoch << 32),
            (self.epoch >> 32) | VERSION_BIT,
        ]
    }

    fn from_limbs(l: [u64; 3]) -> Option<SequenceNumber> {
        if l[2] & !(VERSION_BIT | 0xfff) != 0 || l[2] & VERSION_BIT == 0 {
            return None;
        }
        let shard = l[1] as u32;
        if shard > MAX_SHARD_INDEX {
            return None;
        }
        Some(SequenceNumber {
            epoch: (l[1] >> 32) | ((l[2] & 0xfff) << 32),
            shard,
            offset: l[0],
        })
    }
}

const CHUNK: u64 = 10_000_000_000_000_000_000; // 10^19, the largest power of ten in a u64

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Divide by 10^19 until nothing is left; the remainders are the 19-digit groups.
        let mut l = self.limbs();
        let mut groups = [0u64; 4];
        for g in groups.iter_mut() {
            let mut rem: u128 = 0;
            for limb in l.iter_mut().rev() {
                let cur = (rem << 64) | u128::from(*limb);
                *limb = (cur / u128::from(CHUNK)) as u64;
                rem = cur % u128::from(CHUNK);
            }
            *g = rem as u64;
        }
        let mut out = String::with_capacity(DIGITS);
        let mut started = false;
        for g in groups.iter().rev() {
            if started {
                out.push_str(&format!("{g:019}"));
            } else if *g != 0 {
                out.push_str(&g.to_string());
                started = true;
            }
        }
        f.write_str(&out)
    }
}

impl FromStr for SequenceNumber {
    type Err = SequenceNumberError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !SequenceNumber::is_well_formed(s) {
            return Err(SequenceNumberError::Malformed);
        }
        if s.len() != DIGITS {
            return Err(SequenceNumberError::Foreign);
        }
        let mut l = [0u64; 3];
        for chunk in s.as_bytes().chunks(19) {
            let mut v = 0u64;
            for d in chunk {
                v = v * 10 + u64::from(d - b'0');
            }
            let mul = 10u128.pow(chunk.len() as u32);
            let mut carry = u128::from(v);
            for limb in l.iter_mut() {
                let cur = u128::from(*limb) * mul + carry;
                *limb = cur as u64;
                carry = cur >> 64;
            }
            if carry != 0 {
                return Err(SequenceNumberError::Foreign);
            }
        }
        SequenceNumber::from_limbs(l).ok_or(SequenceNumberError::Foreign)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EPOCH: u64 = 1_764_633_600_000; // 2025-12-02

    #[test]
    fn start_stands_before_the_first_record() {
        let start = SequenceNumber::shard_start(EPOCH, ShardId(3));
        let first = SequenceNumber::new(EPOCH, ShardId(3), 0);
        assert!(start < first);
        assert_eq!(start.position(), None);
        assert_eq!(start.after_position(), 0);
        assert_eq!(start.at_position(), 0);
        assert_eq!(first.position(), Some(0));
        assert_eq!(first.after_position(), 1);
        assert_eq!(first.at_position(), 0);
        assert_eq!(SequenceNumber::before(EPOCH, ShardId(3), 1), first);
    }

    #[test]
    fn has_56_digits_from_the_first_to_the_last() {
        // The smallest is 2^185 (version bit only); the largest stays below 10^56.
        let first = SequenceNumber::shard_start(0, ShardId(0)).to_string();
        let last = SequenceNumber::new(MAX_EPOCH, ShardId(MAX_SHARD_INDEX), u64::MAX - 1);
        assert_eq!(
            first,
            "49039857307708443467467104868809893875799651909875269632"
        );
        assert_eq!(last.to_string().len(), 56);
    }

    #[test]
    fn consecutive_records_differ_by_one() {
        let a: u128 = SequenceNumber::new(EPOCH, ShardId(1), 41).to_string()[37..]
            .parse()
            .unwrap();
        let b: u128 = SequenceNumber::new(EPOCH, ShardId(1), 42).to_string()[37..]
            .parse()
            .unwrap();
        assert_eq!(b - a, 1);
    }

    #[test]
    fn rejects_malformed_and_foreign() {
        use SequenceNumberError::*;
        assert_eq!("".parse::<SequenceNumber>(), Err(Malformed));
        assert_eq!("01".parse::<SequenceNumber>(), Err(Malformed));
        assert_eq!("12a".parse::<SequenceNumber>(), Err(Malformed));
        assert_eq!("1".parse::<SequenceNumber>(), Err(Foreign));
        // The old 39-digit layout, and numbers of the right length outside the layout.
        assert_eq!(
            "200000000000000000000000000000000000001".parse::<SequenceNumber>(),
            Err(Foreign)
        );
        assert_eq!("9".repeat(56).parse::<SequenceNumber>(), Err(Foreign));
        assert_eq!("1".repeat(56).parse::<SequenceNumber>(), Err(Foreign));
        // An AWS-issued number: right length, but its reserved bits are not zero.
        assert_eq!(
            "49590338271490256608559692538361571095921575989136588898".parse::<SequenceNumber>(),
            Err(Foreign)
        );
        // A shard index beyond the largest one.
        let mut l = SequenceNumber::new(EPOCH, ShardId(0), 5).limbs();
        l[1] |= 0xffff_ffff;
        assert_eq!(SequenceNumber::from_limbs(l), None);
    }

    #[test]
    fn another_incarnation_is_another_number() {
        let old = SequenceNumber::new(EPOCH, ShardId(0), 7);
        let new = SequenceNumber::new(EPOCH + 1, ShardId(0), 7);
        assert_ne!(old.to_string(), new.to_string());
        assert_eq!(
            old.to_string().parse::<SequenceNumber>().unwrap().epoch(),
            EPOCH
        );
        assert!(old < new);
    }

    proptest! {
        #[test]
        fn round_trips(epoch in 0..=MAX_EPOCH, shard in 0..=MAX_SHARD_INDEX, pos in 0..u64::MAX) {
            let seq = SequenceNumber::new(epoch, ShardId(shard), pos);
            let text = seq.to_string();
            prop_assert_eq!(text.len(), DIGITS);
            let parsed: SequenceNumber = text.parse().unwrap();
            prop_assert_eq!(parsed, seq);
            prop_assert_eq!(parsed.epoch(), epoch);
            prop_assert_eq!(parsed.shard(), ShardId(shard));
            prop_assert_eq!(parsed.position(), Some(pos));
            prop_assert_eq!(parsed.at_position(), pos);
            prop_assert_eq!(parsed.after_position(), pos + 1);
        }

        /// Order by (incarnation, shard, position) equals order as big integers and as strings.
        #[test]
        fn ordering_matches_positions(
            a in (0..=MAX_EPOCH, 0..=MAX_SHARD_INDEX, 0..u64::MAX),
            b in (0..=MAX_EPOCH, 0..=MAX_SHARD_INDEX, 0..u64::MAX),
        ) {
            let sa = SequenceNumber::new(a.0, ShardId(a.1), a.2);
            let sb = SequenceNumber::new(b.0, ShardId(b.1), b.2);
            prop_assert_eq!(a.cmp(&b), sa.cmp(&sb));
            prop_assert_eq!(a.cmp(&b), sa.to_string().cmp(&sb.to_string()));
        }

        #[test]
        fn any_56_digit_string_parses_or_is_foreign_never_panics(s in "[1-9][0-9]{55}") {
            if let Ok(seq) = s.parse::<SequenceNumber>() {
                prop_assert_eq!(seq.to_string(), s);
            }
        }
    }
}
