//! Identifiers clients send as strings: sequence numbers, shard ids, hash keys, stream and
//! consumer ARNs (riffle-core), and the broker's own lenient shard-id reading
//! (`api::ops::records::parse_shard_id`, used by GetShardIterator and ListShards).
//!
//! The input, as lossy UTF-8, goes to every parser. None may panic; what parses must
//! round-trip through its `Display` form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use riffle_broker::api::ops::records::parse_shard_id;
use riffle_core::shard_id::MAX_SHARD_INDEX;
use riffle_core::{ConsumerArn, HashKey, SequenceNumber, ShardId, StreamArn};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let s = s.as_ref();

    let well_formed = SequenceNumber::is_well_formed(s);
    if let Ok(seq) = s.parse::<SequenceNumber>() {
        assert!(well_formed);
        assert_eq!(seq.to_string(), s, "sequence number does not round-trip");
        assert!(seq.shard().index() <= MAX_SHARD_INDEX);
        assert_eq!(
            SequenceNumber::before(seq.epoch(), seq.shard(), seq.after_position()),
            seq
        );
        match seq.position() {
            Some(p) => {
                assert_eq!(SequenceNumber::new(seq.epoch(), seq.shard(), p), seq);
                assert_eq!(seq.at_position(), p);
                assert_eq!(seq.after_position(), p + 1);
            }
            None => {
                assert_eq!(seq, SequenceNumber::shard_start(seq.epoch(), seq.shard()));
                assert_eq!(seq.at_position(), 0);
                assert_eq!(seq.after_position(), 0);
            }
        }
    }

    if let Ok(id) = ShardId::parse_lenient(s) {
        assert!(id.index() <= MAX_SHARD_INDEX);
        assert_eq!(ShardId::parse_lenient(&id.to_string()), Ok(id));
        assert_eq!(s.parse::<ShardId>(), Ok(id));
    }
    if let Some(id) = parse_shard_id(s) {
        assert!(id.index() <= MAX_SHARD_INDEX);
    }

    if let Ok(key) = s.parse::<HashKey>() {
        assert_eq!(key.to_string().parse::<HashKey>(), Ok(key));
        if !(s.len() > 1 && s.starts_with('0')) {
            assert_eq!(key.to_string(), s);
        }
    }

    if let Some(arn) = StreamArn::parse(s) {
        assert_eq!(StreamArn::parse(&arn.to_string()), Some(arn));
    }
    if let Some(arn) = ConsumerArn::parse(s) {
        assert_eq!(ConsumerArn::parse(&arn.to_string()), Some(arn));
    }
});
