//! The records a processor receives: Kinesis records with KPL aggregates unpacked.
//!
//! A Kinesis record that parses as a KPL aggregate ([`riffle_core::Aggregate`]) becomes one
//! [`Record`] per user record, with sub-sequence numbers 0, 1, …; anything else is delivered
//! as it is, with sub-sequence number 0. As in the Java KCL, an aggregate holding a user
//! record whose hash key lies outside the shard's hash range is dropped whole: the KPL put it
//! on the wrong shard (its shard map was stale) and re-sent those records to the right one.

use std::time::SystemTime;

use bytes::Bytes;
use riffle_core::{Aggregate, HashKeyRange};

use crate::checkpoint::{ExtendedSequenceNumber, SequenceNumber};

/// One user record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Sequence number of the Kinesis record holding it.
    pub sequence_number: SequenceNumber,
    /// Its index in that Kinesis record (0 unless `aggregated`).
    pub sub_sequence_number: u64,
    /// Its partition key (for an aggregated user record, its own, not the aggregate's).
    pub partition_key: String,
    /// The explicit hash key its producer set, if it was aggregated with one.
    pub explicit_hash_key: Option<String>,
    /// Its data.
    pub data: Bytes,
    /// When Kinesis accepted the Kinesis record.
    pub approximate_arrival_timestamp: Option<SystemTime>,
    /// Whether it came out of a KPL aggregate.
    pub aggregated: bool,
}

impl Record {
    /// Its position (sequence and sub-sequence number).
    pub fn extended_sequence_number(&self) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber {
            sequence: self.sequence_number.clone(),
            sub_sequence: self.sub_sequence_number,
        }
    }

    fn is_after(&self, position: &ExtendedSequenceNumber) -> bool {
        (&self.sequence_number, self.sub_sequence_number)
            > (&position.sequence, position.sub_sequence)
    }
}

/// What [`deaggregate`] did besides producing records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeaggregateStats {
    /// Aggregates dropped for holding a record outside the shard's range.
    pub dropped_aggregates: u64,
}

/// Unpacks Kinesis `records` read from one shard into user records (see the module docs),
/// keeping only those after `after`. With the shard's hash key `range`, an aggregate
/// holding a user record outside it is dropped whole and counted in `stats`, as the KCL
/// does: the producer re-sent those records to the right shard. Records whose sequence
/// number is not decimal are skipped.
pub fn deaggregate(
    records: Vec<aws_sdk_kinesis::types::Record>,
    range: Option<&HashKeyRange>,
    after: Option<&ExtendedSequenceNumber>,
    stats: &mut DeaggregateStats,
) -> Vec<Record> {
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let Some(sequence_number) = SequenceNumber::new(r.sequence_number) else {
            tracing::warn!("record without a decimal sequence number skipped");
            continue;
        };
        // Whole Kinesis records at or before the position are skipped without parsing.
        if let Some(p) = after {
            if sequence_number < p.sequence {
                continue;
            }
        }
        let arrival = r
            .approximate_arrival_timestamp
            .and_then(|t| SystemTime::try_from(t).ok());
        let data = Bytes::from(r.data.into_inner());
        let parsed = Aggregate::parse(&data);
        match parsed {
            Some(agg) => {
                if let Some(range) = range {
                    if !agg.within(range) {
                        stats.dropped_aggregates += 1;
                        continue;
                    }
                }
                for (i, u) in agg.records.iter().enumerate() {
                    let rec = Record {
                        sequence_number: sequence_number.clone(),
                        sub_sequence_number: i as u64,
                        partition_key: u.partition_key.to_owned(),
                        explicit_hash_key: u.explicit_hash_key.map(str::to_owned),
                        data: data.slice_ref(u.data),
                        approximate_arrival_timestamp: arrival,
                        aggregated: true,
                    };
                    if after.is_none_or(|p| rec.is_after(p)) {
                        out.push(rec);
                    }
                }
            }
            None => {
                let rec = Record {
                    sequence_number,
                    sub_sequence_number: 0,
                    partition_key: r.partition_key.unwrap_or_default(),
                    explicit_hash_key: None,
                    data,
                    approximate_arrival_timestamp: arrival,
                    aggregated: false,
                };
                if after.is_none_or(|p| rec.is_after(p)) {
                    out.push(rec);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use riffle_core::{AggregateBuilder, HashKey};

    fn kinesis(seq: &str, pk: &str, data: Vec<u8>) -> aws_sdk_kinesis::types::Record {
        aws_sdk_kinesis::types::Record::builder()
            .sequence_number(seq)
            .partition_key(pk)
            .data(aws_smithy_types::Blob::new(data))
            .build()
            .unwrap()
    }

    fn agg(records: &[(&str, &str)]) -> Vec<u8> {
        let mut b = AggregateBuilder::new();
        for (pk, data) in records {
            b.add(pk, None, data.as_bytes());
        }
        b.encode()
    }

    fn summary(rs: &[Record]) -> Vec<(String, u64, String, bool)> {
        rs.iter()
            .map(|r| {
                (
                    r.sequence_number.to_string(),
                    r.sub_sequence_number,
                    String::from_utf8(r.data.to_vec()).unwrap(),
                    r.aggregated,
                )
            })
            .collect()
    }

    fn pos(seq: &str, sub: u64) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber {
            sequence: SequenceNumber::new(seq).unwrap(),
            sub_sequence: sub,
        }
    }

    #[test]
    fn aggregates_unpack_with_sub_sequence_numbers_and_plain_records_pass() {
        let input = vec![
            kinesis("10", "a", agg(&[("k1", "x"), ("k2", "y"), ("k1", "z")])),
            kinesis("11", "plain", b"raw".to_vec()),
        ];
        let mut stats = DeaggregateStats::default();
        let out = deaggregate(input, Some(&HashKeyRange::FULL), None, &mut stats);
        assert_eq!(
            summary(&out),
            vec![
                ("10".into(), 0, "x".into(), true),
                ("10".into(), 1, "y".into(), true),
                ("10".into(), 2, "z".into(), true),
                ("11".into(), 0, "raw".into(), false),
            ]
        );
        assert_eq!(out[1].partition_key, "k2");
        assert_eq!(out[3].partition_key, "plain");
        assert_eq!(stats, DeaggregateStats::default());
    }

    #[test]
    fn an_aggregate_with_a_record_outside_the_shard_is_dropped_whole() {
        let k1 = HashKey::from_partition_key("k1");
        let range = HashKeyRange::new(k1, k1).unwrap();
        let input = vec![
            kinesis("10", "a", agg(&[("k1", "x"), ("k2", "y")])),
            kinesis("11", "a", agg(&[("k1", "kept")])),
            // A plain record is not checked (Kinesis routed it by its own key).
            kinesis("12", "k2", b"plain".to_vec()),
        ];
        let mut stats = DeaggregateStats::default();
        let out = deaggregate(input, Some(&range), None, &mut stats);
        assert_eq!(
            summary(&out),
            vec![
                ("11".into(), 0, "kept".into(), true),
                ("12".into(), 0, "plain".into(), false),
            ]
        );
        assert_eq!(stats.dropped_aggregates, 1);
    }

    #[test]
    fn resuming_in_the_middle_of_an_aggregate_skips_what_was_checkpointed() {
        let input = || {
            vec![
                kinesis("9", "p", b"old".to_vec()),
                kinesis("10", "a", agg(&[("k", "0"), ("k", "1"), ("k", "2")])),
                kinesis("11", "p", b"next".to_vec()),
            ]
        };
        let mut stats = DeaggregateStats::default();
        let out = deaggregate(input(), None, Some(&pos("10", 1)), &mut stats);
        assert_eq!(
            summary(&out),
            vec![
                ("10".into(), 2, "2".into(), true),
                ("11".into(), 0, "next".into(), false),
            ]
        );
        let out = deaggregate(input(), None, Some(&pos("11", 0)), &mut stats);
        assert!(out.is_empty());
        // Numeric, not lexicographic, comparison: "9" < "10".
        let out = deaggregate(input(), None, Some(&pos("9", 0)), &mut stats);
        assert_eq!(out.len(), 4);
    }
}
