//! Positions in a shard: sequence numbers, sub-sequence numbers and the checkpoint sentinels.
//!
//! Sequence numbers are opaque decimal strings. They are compared as unbounded integers — by
//! length once leading zeros are stripped, then lexicographically — so AWS's 56-digit numbers
//! and Riffle's own both order correctly; nothing here parses their inner layout.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use crate::error::CheckpointError;

/// A Kinesis sequence number: a decimal string, ordered numerically. Cloning is cheap (the
/// string is shared): every user record of an aggregate carries its Kinesis record's number.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SequenceNumber(Arc<str>);

impl SequenceNumber {
    /// Wraps a decimal string; `None` if it is empty or holds anything but ASCII digits.
    pub fn new(s: impl Into<String>) -> Option<SequenceNumber> {
        let s = s.into();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| SequenceNumber(Arc::from(s)))
    }

    /// The decimal string as Kinesis gave it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn significant(&self) -> &str {
        self.0.trim_start_matches('0')
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.significant(), other.significant());
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user record's position: the Kinesis record's sequence number and the user record's index
/// inside it (its sub-sequence number; 0 for a record that is not an aggregate).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtendedSequenceNumber {
    /// Sequence number of the Kinesis record.
    pub sequence: SequenceNumber,
    /// Index of the user record inside the Kinesis record.
    pub sub_sequence: u64,
}

impl fmt::Display for ExtendedSequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.sequence, self.sub_sequence)
    }
}

/// What a lease's `checkpoint` attribute holds: a sentinel or a position.
///
/// A position means "every user record up to and including this one is processed": a restart
/// reads the shard from `AT_SEQUENCE_NUMBER` of it and skips what is not after it, which is how a
/// checkpoint in the middle of an aggregate resumes at the right user record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Checkpoint {
    /// Not started; read from the oldest record (`TRIM_HORIZON`).
    TrimHorizon,
    /// Not started; read from the tip (`LATEST`).
    Latest,
    /// Not started; read from the configured timestamp (`AT_TIMESTAMP`).
    AtTimestamp,
    /// Processed up to and including this user record.
    At(ExtendedSequenceNumber),
    /// The shard is closed and every record in it is processed (`SHARD_END`).
    ShardEnd,
}

impl Checkpoint {
    /// The sentinel strings the Java KCL writes into the `checkpoint` attribute.
    pub const TRIM_HORIZON: &'static str = "TRIM_HORIZON";
    /// See [`Checkpoint::TRIM_HORIZON`].
    pub const LATEST: &'static str = "LATEST";
    /// See [`Checkpoint::TRIM_HORIZON`].
    pub const AT_TIMESTAMP: &'static str = "AT_TIMESTAMP";
    /// See [`Checkpoint::TRIM_HORIZON`].
    pub const SHARD_END: &'static str = "SHARD_END";

    /// A position checkpoint.
    pub fn at(sequence: SequenceNumber, sub_sequence: u64) -> Checkpoint {
        Checkpoint::At(ExtendedSequenceNumber {
            sequence,
            sub_sequence,
        })
    }

    /// Reads the (`checkpoint`, `checkpointSubSequenceNumber`) pair of a lease item.
    pub fn from_parts(checkpoint: &str, sub_sequence: u64) -> Result<Checkpoint, CheckpointError> {
        Ok(match checkpoint {
            Self::TRIM_HORIZON => Checkpoint::TrimHorizon,
            Self::LATEST => Checkpoint::Latest,
            Self::AT_TIMESTAMP => Checkpoint::AtTimestamp,
            Self::SHARD_END => Checkpoint::ShardEnd,
            other => Checkpoint::at(
                SequenceNumber::new(other).ok_or_else(|| CheckpointError::Invalid {
                    value: other.to_owned(),
                })?,
                sub_sequence,
            ),
        })
    }

    /// The (`checkpoint`, `checkpointSubSequenceNumber`) pair to store.
    pub fn to_parts(&self) -> (&str, u64) {
        match self {
            Checkpoint::TrimHorizon => (Self::TRIM_HORIZON, 0),
            Checkpoint::Latest => (Self::LATEST, 0),
            Checkpoint::AtTimestamp => (Self::AT_TIMESTAMP, 0),
            Checkpoint::ShardEnd => (Self::SHARD_END, 0),
            Checkpoint::At(e) => (e.sequence.as_str(), e.sub_sequence),
        }
    }

    /// The position, if this is not a sentinel.
    pub fn position(&self) -> Option<&ExtendedSequenceNumber> {
        match self {
            Checkpoint::At(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the shard is finished.
    pub fn is_shard_end(&self) -> bool {
        matches!(self, Checkpoint::ShardEnd)
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Checkpoint::At(e) => e.fmt(f),
            other => f.write_str(other.to_parts().0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber::new(s).unwrap()
    }

    #[test]
    fn sequence_numbers_compare_as_integers() {
        assert!(seq("9") < seq("10"));
        assert!(seq("100") > seq("99"));
        assert_eq!(seq("0042").cmp(&seq("42")), Ordering::Equal);
        assert!(
            seq("49590338271490256608559692538361571095921575989136588898")
                < seq("49590338271490256608559692538361571095921575989136588899")
        );
        assert!(
            seq("200000000000000000000000000000000000001")
                < seq("49590338271490256608559692538361571095921575989136588898")
        );
        assert!(SequenceNumber::new("").is_none());
        assert!(SequenceNumber::new("12a").is_none());
        assert!(SequenceNumber::new("-1").is_none());
    }

    #[test]
    fn extended_order_is_sequence_then_sub_sequence() {
        let a = ExtendedSequenceNumber {
            sequence: seq("10"),
            sub_sequence: 5,
        };
        let b = ExtendedSequenceNumber {
            sequence: seq("10"),
            sub_sequence: 6,
        };
        let c = ExtendedSequenceNumber {
            sequence: seq("11"),
            sub_sequence: 0,
        };
        assert!(a < b && b < c);
    }

    #[test]
    fn parts_round_trip() {
        for (s, sub) in [
            ("TRIM_HORIZON", 0),
            ("LATEST", 0),
            ("AT_TIMESTAMP", 0),
            ("SHARD_END", 0),
            (
                "49590338271490256608559692538361571095921575989136588898",
                7,
            ),
        ] {
            let cp = Checkpoint::from_parts(s, sub).unwrap();
            assert_eq!(cp.to_parts(), (s, sub));
        }
        assert!(matches!(
            Checkpoint::from_parts("garbage", 0),
            Err(CheckpointError::Invalid { .. })
        ));
        assert_eq!(
            Checkpoint::from_parts("123", 4).unwrap().to_string(),
            "123/4"
        );
    }
}
