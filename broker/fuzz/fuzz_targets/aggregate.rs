//! KPL aggregated records (riffle-core `aggregate`), as a consumer reads them from any
//! producer: parsing arbitrary bytes never panics, and whatever parses re-encodes to an
//! aggregate that parses to the same user records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use riffle_core::aggregate::{Aggregate, AggregateBuilder, MAGIC};

fn check(data: &[u8]) {
    let Some(agg) = Aggregate::parse(data) else {
        return;
    };
    let mut b = AggregateBuilder::new();
    for r in &agg.records {
        b.add(r.partition_key, r.explicit_hash_key, r.data);
        let _ = r.hash_key();
    }
    let again = b.encode();
    assert_eq!(again.len(), b.encoded_len());
    let reparsed = Aggregate::parse(&again).expect("re-encoded aggregate parses");
    assert_eq!(reparsed.records, agg.records);
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // Most random inputs lack the magic and the digest; build both so the protobuf body is
    // what gets exercised.
    let mut framed = MAGIC.to_vec();
    framed.extend_from_slice(data);
    framed.extend_from_slice(&md5_of(data));
    check(&framed);
});

fn md5_of(data: &[u8]) -> [u8; 16] {
    use md5::{Digest, Md5};
    Md5::digest(data).into()
}
