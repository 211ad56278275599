//! The segment codec round trip: `encode_batch` then `decode_frame` gives back the same batch,
//! wherever the batch starts in the output buffer and whatever follows it; every truncation is
//! `Incomplete`; the sparse index file round-trips too.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use riffle_broker::storage::segment::{
    decode_frame, decode_index, encode_batch, encode_index, Frame, IndexEntry, SealedIndex,
};

#[derive(Debug)]
struct Input {
    prefix: Vec<u8>,
    base: u64,
    timestamp_ms: i64,
    records: Vec<(Vec<u8>, Vec<u8>)>,
    trailer: Vec<u8>,
    index: Vec<(u64, u64, i64)>,
    end_position: u64,
    len: u64,
}

/// Partition keys are stored with a u16 length: keep them within it.
fn key(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    let mut k = Vec::<u8>::arbitrary(u)?;
    k.truncate(usize::from(u16::MAX));
    Ok(k)
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let n = u.int_in_range(0..=64usize)?;
        let mut records = Vec::with_capacity(n);
        for _ in 0..n {
            records.push((key(u)?, Vec::<u8>::arbitrary(u)?));
        }
        Ok(Input {
            prefix: Vec::arbitrary(u)?,
            base: u.arbitrary()?,
            timestamp_ms: u.arbitrary()?,
            records,
            trailer: Vec::arbitrary(u)?,
            index: Vec::arbitrary(u)?,
            end_position: u.arbitrary()?,
            len: u.arbitrary()?,
        })
    }
}

fuzz_target!(|input: Input| {
    let mut out = input.prefix.clone();
    let n = encode_batch(
        input.base,
        input.timestamp_ms,
        input.records.iter().map(|(k, d)| (&k[..], &d[..])),
        &mut out,
    );
    assert_eq!(
        out[..input.prefix.len()],
        input.prefix[..],
        "prefix overwritten"
    );
    assert_eq!(n, out.len() - input.prefix.len());
    let frame = Bytes::from(out).slice(input.prefix.len()..);

    let mut with_trailer = frame.to_vec();
    with_trailer.extend_from_slice(&input.trailer);
    for buf in [frame.clone(), Bytes::from(with_trailer)] {
        let Frame::Batch { batch, len } = decode_frame(&buf) else {
            panic!("encoded batch did not decode: {:?}", decode_frame(&buf));
        };
        assert_eq!(len, n);
        assert_eq!(batch.base, input.base);
        assert_eq!(batch.timestamp_ms, input.timestamp_ms);
        assert_eq!(batch.records.len(), input.records.len());
        for (got, (k, d)) in batch.records.iter().zip(&input.records) {
            assert_eq!(&got.partition_key[..], &k[..]);
            assert_eq!(&got.data[..], &d[..]);
        }
    }
    // A torn tail is never mistaken for a batch or for corruption.
    for cut in [0, 1, n / 2, n - 1] {
        let torn = decode_frame(&frame.slice(..cut));
        assert!(
            matches!(torn, Frame::Incomplete { .. }),
            "cut {cut}: {torn:?}"
        );
    }

    let index = SealedIndex {
        entries: input
            .index
            .iter()
            .map(|&(position, offset, timestamp_ms)| IndexEntry {
                position,
                offset,
                timestamp_ms,
            })
            .collect(),
        end_position: input.end_position,
        len: input.len,
    };
    assert_eq!(decode_index(&encode_index(&index)), Some(index));
});
