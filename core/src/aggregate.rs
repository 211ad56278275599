//! The KPL aggregated-record format: many user records packed into one Kinesis record.
//!
//! ```text
//! F3 89 9A C2 | protobuf AggregatedRecord (proto2) | MD5 of the protobuf bytes (16 bytes)
//!
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;   // written by nobody, skipped on read
//! }
//! ```
//!
//! [`AggregateBuilder`] writes exactly what the AWS KPL and the `aws-kinesis-agg` libraries
//! write: key tables deduplicated in first-seen order, fields in field-number order, the
//! explicit-hash-key table holding only keys the user supplied. It knows the exact encoded size
//! before encoding, so a producer can fill aggregates up to a byte limit.
//! [`AggregateLayout`] is the same without the data: a producer plans aggregates with it while
//! each record's data stays in the record, and copies the data once, when it encodes.
//!
//! [`Aggregate::parse`] reads one, the way the KCL does: anything without the magic, too short,
//! with a wrong MD5, malformed protobuf or a key index out of its table is *not* an aggregate
//! and is handed to the application as it is. The sub-sequence number of a user record is its
//! index in `records`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use md5::{Digest, Md5};

use crate::HashKey;

/// The four bytes every aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// Bytes an aggregate adds around its records: the magic and the MD5 trailer.
pub const FIXED_OVERHEAD: usize = MAGIC.len() + DIGEST_LEN;

/// The partition key the KPL gives every aggregate it sends (one byte, to save quota); the
/// aggregate is routed by its explicit hash key instead.
pub const AGGREGATE_PARTITION_KEY: &str = "a";

const DIGEST_LEN: usize = 16;

// Protobuf tags: (field number << 3) | wire type.
const TAG_PK_TABLE: u8 = (1 << 3) | 2;
const TAG_EHK_TABLE: u8 = (2 << 3) | 2;
const TAG_RECORD: u8 = (3 << 3) | 2;
const TAG_PK_INDEX: u8 = 1 << 3;
const TAG_EHK_INDEX: u8 = 2 << 3;
const TAG_DATA: u8 = (3 << 3) | 2;

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Size of a length-delimited field (tag, length, bytes) holding `len` bytes.
fn delimited_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Size of one `Record` message's body.
fn record_body_len(pk_index: u32, ehk_index: Option<u32>, data_len: usize) -> usize {
    1 + varint_len(u64::from(pk_index))
        + ehk_index.map_or(0, |i| 1 + varint_len(u64::from(i)))
        + delimited_len(data_len)
}

/// The already well-mixed 64-bit key hashes of [`KeyTable`] need no second hash.
#[derive(Debug, Default, Clone, Copy)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A fast 64-bit hash of a key (FxHash-style: 8 bytes at a time, rotate, xor, multiply).
/// The keys are the producer's own, so collision resistance against an adversary does not
/// matter; a collision only costs deduplication (see [`KeyTable`]).
fn key_hash(key: &str) -> u64 {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    let mut h: u64 = key.len() as u64;
    let mut chunks = key.as_bytes().chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(K);
    }
    // Spread the high bits down: the table indexes by the low ones.
    h ^ (h >> 29)
}

/// A deduplicated key table in first-seen order, its keys in one arena (no allocation per
/// key). Lookup is by a 64-bit hash of the key, verified against the stored key; on the
/// (astronomically rare) collision of two different keys the second is simply stored again
/// without being indexed — deduplication is optional in the format, so the aggregate stays
/// valid and every reader decodes it the same.
#[derive(Debug, Clone, Default)]
struct KeyTable {
    arena: String,
    spans: Vec<(u32, u32)>,
    lookup: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
}

impl KeyTable {
    fn with_capacity(keys: usize, bytes: usize) -> KeyTable {
        KeyTable {
            arena: String::with_capacity(bytes),
            spans: Vec::with_capacity(keys),
            lookup: HashMap::with_capacity_and_hasher(keys, Default::default()),
        }
    }

    fn get(&self, i: u32) -> &str {
        let (start, len) = self.spans[i as usize];
        &self.arena[start as usize..(start + len) as usize]
    }

    fn find(&self, key: &str, hash: u64) -> Option<u32> {
        self.lookup
            .get(&hash)
            .copied()
            .filter(|&i| self.get(i) == key)
    }

    fn next_index(&self) -> u32 {
        self.spans.len() as u32
    }

    fn insert(&mut self, key: &str, hash: u64) -> u32 {
        let i = self.next_index();
        self.spans.push((self.arena.len() as u32, key.len() as u32));
        self.arena.push_str(key);
        self.lookup.entry(hash).or_insert(i);
        i
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.next_index()).map(move |i| self.get(i))
    }

    fn clear(&mut self) {
        self.arena.clear();
        self.spans.clear();
        self.lookup.clear();
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    pk_index: u32,
    ehk_index: Option<u32>,
    data_len: usize,
}

/// Where a key would go in a layout: its index, and whether it is new to the table.
#[derive(Debug, Clone, Copy)]
struct Slot {
    index: u32,
    hash: u64,
    new: bool,
}

/// The key tables and record entries of an aggregate, without the records' data.
///
/// A producer decides with it which user records fit into one aggregate — exactly, to the
/// byte, with the key tables deduplicated as they will be encoded — while the data stays
/// where it is; [`AggregateLayout::encode`] copies the data once, when the aggregate is sent.
#[derive(Debug, Clone, Default)]
pub struct AggregateLayout {
    partition_keys: KeyTable,
    explicit_hash_keys: KeyTable,
    records: Vec<Entry>,
    /// Encoded protobuf size so far (without magic and digest).
    body_len: usize,
}

impl AggregateLayout {
    /// An empty layout.
    pub fn new() -> AggregateLayout {
        AggregateLayout::default()
    }

    /// An empty layout with room for `records` records and as many distinct partition keys
    /// of about `key_len` bytes each, so that filling it does not reallocate.
    pub fn with_capacity(records: usize, key_len: usize) -> AggregateLayout {
        AggregateLayout {
            partition_keys: KeyTable::with_capacity(records, records * key_len),
            explicit_hash_keys: KeyTable::default(),
            records: Vec::with_capacity(records),
            body_len: 0,
        }
    }

    /// User records added so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The exact size of the encoded aggregate now.
    pub fn encoded_len(&self) -> usize {
        FIXED_OVERHEAD + self.body_len
    }

    fn slot(table: &KeyTable, key: &str) -> Slot {
        let hash = key_hash(key);
        match table.find(key, hash) {
            Some(index) => Slot {
                index,
                hash,
                new: false,
            },
            None => Slot {
                index: table.next_index(),
                hash,
                new: true,
            },
        }
    }

    /// The encoded size after adding a record with these keys, and where its keys go.
    fn plan(
        &self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data_len: usize,
    ) -> (usize, Slot, Option<Slot>) {
        let pk = Self::slot(&self.partition_keys, partition_key);
        let ehk = explicit_hash_key.map(|k| Self::slot(&self.explicit_hash_keys, k));
        let mut len = self.encoded_len()
            + delimited_len(record_body_len(pk.index, ehk.map(|s| s.index), data_len));
        if pk.new {
            len += delimited_len(partition_key.len());
        }
        if let (Some(s), Some(k)) = (ehk, explicit_hash_key) {
            if s.new {
                len += delimited_len(k.len());
            }
        }
        (len, pk, ehk)
    }

    fn commit(
        &mut self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data_len: usize,
        new_len: usize,
        pk: Slot,
        ehk: Option<Slot>,
    ) {
        if pk.new {
            self.partition_keys.insert(partition_key, pk.hash);
        }
        if let (Some(s), Some(k)) = (ehk, explicit_hash_key) {
            if s.new {
                self.explicit_hash_keys.insert(k, s.hash);
            }
        }
        self.records.push(Entry {
            pk_index: pk.index,
            ehk_index: ehk.map(|s| s.index),
            data_len,
        });
        self.body_len = new_len - FIXED_OVERHEAD;
    }

    /// The exact encoded size if a record with these keys and `data_len` bytes were added.
    pub fn encoded_len_with(
        &self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data_len: usize,
    ) -> usize {
        self.plan(partition_key, explicit_hash_key, data_len).0
    }

    /// Adds a record's entry. `explicit_hash_key` is the decimal key the user supplied, if any.
    pub fn push(&mut self, partition_key: &str, explicit_hash_key: Option<&str>, data_len: usize) {
        let (len, pk, ehk) = self.plan(partition_key, explicit_hash_key, data_len);
        self.commit(partition_key, explicit_hash_key, data_len, len, pk, ehk);
    }

    /// Adds a record's entry if the aggregate then encodes to at most `max_len` bytes, and
    /// says whether it did (one key lookup instead of the two of
    /// [`encoded_len_with`](Self::encoded_len_with) then [`push`](Self::push)).
    pub fn try_push(
        &mut self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data_len: usize,
        max_len: usize,
    ) -> bool {
        let (len, pk, ehk) = self.plan(partition_key, explicit_hash_key, data_len);
        if len > max_len {
            return false;
        }
        self.commit(partition_key, explicit_hash_key, data_len, len, pk, ehk);
        true
    }

    /// The aggregated record's bytes: magic, protobuf, MD5 of the protobuf. `data` yields
    /// each record's data in the order the records were pushed.
    ///
    /// # Panics
    ///
    /// If `data` does not yield exactly one slice per record, each of the length pushed.
    pub fn encode<'a>(&self, data: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&MAGIC);
        for k in self.partition_keys.iter() {
            out.push(TAG_PK_TABLE);
            put_varint(&mut out, k.len() as u64);
            out.extend_from_slice(k.as_bytes());
        }
        for k in self.explicit_hash_keys.iter() {
            out.push(TAG_EHK_TABLE);
            put_varint(&mut out, k.len() as u64);
            out.extend_from_slice(k.as_bytes());
        }
        let mut data = data.into_iter();
        for r in &self.records {
            let d = data.next().expect("one data slice per record");
            assert_eq!(
                d.len(),
                r.data_len,
                "data length differs from the pushed one"
            );
            out.push(TAG_RECORD);
            put_varint(
                &mut out,
                record_body_len(r.pk_index, r.ehk_index, r.data_len) as u64,
            );
            out.push(TAG_PK_INDEX);
            put_varint(&mut out, u64::from(r.pk_index));
            if let Some(i) = r.ehk_index {
                out.push(TAG_EHK_INDEX);
                put_varint(&mut out, u64::from(i));
            }
            out.push(TAG_DATA);
            put_varint(&mut out, d.len() as u64);
            out.extend_from_slice(d);
        }
        assert!(data.next().is_none(), "more data slices than records");
        let digest = Md5::digest(&out[MAGIC.len()..]);
        out.extend_from_slice(&digest);
        debug_assert_eq!(out.len(), self.encoded_len());
        out
    }

    /// Empties the layout for the next aggregate, keeping its allocations.
    pub fn clear(&mut self) {
        self.partition_keys.clear();
        self.explicit_hash_keys.clear();
        self.records.clear();
        self.body_len = 0;
    }
}

/// Collects user records, data included, into one aggregate.
#[derive(Debug, Clone, Default)]
pub struct AggregateBuilder {
    layout: AggregateLayout,
    /// Every record's data, concatenated in order.
    data: Vec<u8>,
}

impl AggregateBuilder {
    /// An empty aggregate.
    pub fn new() -> AggregateBuilder {
        AggregateBuilder::default()
    }

    /// User records added so far.
    pub fn len(&self) -> usize {
        self.layout.len()
    }

    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.layout.is_empty()
    }

    /// The exact size of [`AggregateBuilder::encode`]'s output now.
    pub fn encoded_len(&self) -> usize {
        self.layout.encoded_len()
    }

    /// The exact encoded size if a record with these keys and `data_len` bytes were added.
    pub fn encoded_len_with(
        &self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data_len: usize,
    ) -> usize {
        self.layout
            .encoded_len_with(partition_key, explicit_hash_key, data_len)
    }

    /// Adds a user record. `explicit_hash_key` is the decimal key the user supplied, if any.
    pub fn add(&mut self, partition_key: &str, explicit_hash_key: Option<&str>, data: &[u8]) {
        self.layout
            .push(partition_key, explicit_hash_key, data.len());
        self.data.extend_from_slice(data);
    }

    /// The aggregated record's bytes: magic, protobuf, MD5 of the protobuf.
    pub fn encode(&self) -> Vec<u8> {
        let mut at = 0;
        self.layout.encode(self.layout.records.iter().map(|r| {
            let d = &self.data[at..at + r.data_len];
            at += r.data_len;
            d
        }))
    }

    /// Empties the builder for the next aggregate, keeping its allocations.
    pub fn clear(&mut self) {
        self.layout.clear();
        self.data.clear();
    }
}

/// One user record inside a parsed aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRecord<'a> {
    /// Its partition key.
    pub partition_key: &'a str,
    /// The explicit hash key its producer gave, if any.
    pub explicit_hash_key: Option<&'a str>,
    /// Its data.
    pub data: &'a [u8],
}

impl UserRecord<'_> {
    /// The hash key the record was routed by: its explicit hash key, else the MD5 of its
    /// partition key. `None` if the explicit hash key is not a valid hash key.
    pub fn hash_key(&self) -> Option<HashKey> {
        match self.explicit_hash_key {
            Some(k) => k.parse().ok(),
            None => Some(HashKey::from_partition_key(self.partition_key)),
        }
    }
}

/// A parsed aggregated record. Borrowed from the Kinesis record's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate<'a> {
    /// The user records, in order; a record's index is its sub-sequence number.
    pub records: Vec<UserRecord<'a>>,
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.at >= self.buf.len()
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.at)?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let end = self.at.checked_add(len)?;
        let b = self.buf.get(self.at..end)?;
        self.at = end;
        Some(b)
    }

    /// Skips a field of an unknown number with this wire type.
    fn skip(&mut self, wire_type: u64) -> Option<()> {
        match wire_type {
            0 => self.varint().map(drop),
            1 => self.advance(8),
            2 => self.bytes().map(drop),
            5 => self.advance(4),
            _ => None,
        }
    }

    fn advance(&mut self, n: usize) -> Option<()> {
        let end = self.at.checked_add(n)?;
        (end <= self.buf.len()).then(|| self.at = end)
    }
}

struct RawRecord<'a> {
    pk_index: u64,
    ehk_index: Option<u64>,
    data: &'a [u8],
}

fn parse_record(buf: &[u8]) -> Option<RawRecord<'_>> {
    let mut r = Reader { buf, at: 0 };
    let (mut pk_index, mut ehk_index, mut data) = (None, None, None);
    while !r.done() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 0) => pk_index = Some(r.varint()?),
            (2, 0) => ehk_index = Some(r.varint()?),
            (3, 2) => data = Some(r.bytes()?),
            (0, _) => return None,
            (_, wire) => r.skip(wire)?,
        }
    }
    Some(RawRecord {
        pk_index: pk_index?,
        ehk_index,
        data: data?,
    })
}

impl<'a> Aggregate<'a> {
    /// Whether `data` starts like an aggregated record (it may still fail to parse).
    pub fn has_magic(data: &[u8]) -> bool {
        data.starts_with(&MAGIC)
    }

    /// Parses `data` as an aggregated record; `None` if it is not a valid one (the KCL then
    /// delivers it unchanged, as a plain record).
    pub fn parse(data: &'a [u8]) -> Option<Aggregate<'a>> {
        if !Self::has_magic(data) || data.len() <= FIXED_OVERHEAD {
            return None;
        }
        let (body, digest) = data[MAGIC.len()..].split_at(data.len() - FIXED_OVERHEAD);
        if Md5::digest(body)[..] != digest[..] {
            return None;
        }
        let mut r = Reader { buf: body, at: 0 };
        let mut pks: Vec<&str> = Vec::new();
        let mut ehks: Vec<&str> = Vec::new();
        let mut raw: Vec<RawRecord<'_>> = Vec::new();
        while !r.done() {
            let tag = r.varint()?;
            match (tag >> 3, tag & 7) {
                (1, 2) => pks.push(std::str::from_utf8(r.bytes()?).ok()?),
                (2, 2) => ehks.push(std::str::from_utf8(r.bytes()?).ok()?),
                (3, 2) => raw.push(parse_record(r.bytes()?)?),
                (0, _) => return None,
                (_, wire) => r.skip(wire)?,
            }
        }
        let records = raw
            .into_iter()
            .map(|rr| {
                Some(UserRecord {
                    partition_key: pks.get(usize::try_from(rr.pk_index).ok()?).copied()?,
                    explicit_hash_key: match rr.ehk_index {
                        None => None,
                        Some(i) => Some(*ehks.get(usize::try_from(i).ok()?)?),
                    },
                    data: rr.data,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        // An aggregate of no user records is not one: delivering it raw loses nothing.
        if records.is_empty() {
            return None;
        }
        Some(Aggregate { records })
    }

    /// Whether every user record's hash key lies in `range` (the KCL drops an aggregate that
    /// holds a record outside the shard it was read from: the producer re-sent that one).
    pub fn within(&self, range: &crate::HashKeyRange) -> bool {
        self.records
            .iter()
            .all(|r| r.hash_key().is_some_and(|k| range.contains(k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The golden vector checked byte for byte against `aws-kinesis-agg` 1.2.3.
    const GOLDEN: &str = "f3899ac20a06757365722d310a06757365722d320a06757365722d331227313730313431313833343630343639323331
        3733313638373330333731353838343130353732381a0908001a0568656c6c6f1a0908011a05776f726c641a0908001a
        05616761696e1a0f080210001a09000102 62696e617279 9b68d8944ff68c1c2dd547ff14e68d09";

    fn golden_builder() -> AggregateBuilder {
        let mut b = AggregateBuilder::new();
        b.add("user-1", None, b"hello");
        b.add("user-2", None, b"world");
        b.add("user-1", None, b"again");
        b.add(
            "user-3",
            Some("170141183460469231731687303715884105728"),
            b"\x00\x01\x02binary",
        );
        b
    }

    #[test]
    fn golden_vector_byte_for_byte() {
        let b = golden_builder();
        let bytes = b.encode();
        assert_eq!(bytes, hex(GOLDEN));
        assert_eq!(bytes.len(), 135);
        assert_eq!(b.encoded_len(), 135);
    }

    #[test]
    fn golden_vector_parses() {
        let bytes = hex(GOLDEN);
        let agg = Aggregate::parse(&bytes).unwrap();
        let got: Vec<_> = agg
            .records
            .iter()
            .map(|r| (r.partition_key, r.explicit_hash_key, r.data))
            .collect();
        assert_eq!(
            got,
            vec![
                ("user-1", None, &b"hello"[..]),
                ("user-2", None, &b"world"[..]),
                ("user-1", None, &b"again"[..]),
                (
                    "user-3",
                    Some("170141183460469231731687303715884105728"),
                    &b"\x00\x01\x02binary"[..]
                ),
            ]
        );
        assert_eq!(
            agg.records[0].hash_key(),
            Some(HashKey(285573413173782752570879317399258818820))
        );
        assert_eq!(agg.records[3].hash_key(), Some(HashKey(1 << 127)));
    }

    #[test]
    fn layout_encodes_what_the_builder_encodes() {
        let records: [(&str, Option<&str>, &[u8]); 4] = [
            ("user-1", None, b"hello"),
            ("user-2", None, b"world"),
            ("user-1", None, b"again"),
            (
                "user-3",
                Some("170141183460469231731687303715884105728"),
                b"\x00\x01\x02binary",
            ),
        ];
        let mut layout = AggregateLayout::new();
        for (pk, ehk, data) in records {
            assert!(layout.try_push(pk, ehk, data.len(), usize::MAX));
        }
        assert_eq!(layout.len(), 4);
        assert_eq!(layout.encoded_len(), 135);
        assert_eq!(layout.encode(records.iter().map(|r| r.2)), hex(GOLDEN));
    }

    #[test]
    fn try_push_stops_exactly_at_the_limit() {
        let mut layout = AggregateLayout::new();
        assert!(layout.try_push("k", None, 10, 100));
        let next = layout.encoded_len_with("k", None, 10);
        // One byte short: refused, and nothing changes.
        assert!(!layout.try_push("k", None, 10, next - 1));
        assert_eq!(layout.len(), 1);
        assert_eq!(layout.encoded_len_with("k", None, 10), next);
        // Exactly the limit: accepted.
        assert!(layout.try_push("k", None, 10, next));
        assert_eq!(layout.encoded_len(), next);
        layout.clear();
        assert!(layout.is_empty());
        assert_eq!(layout.encoded_len(), FIXED_OVERHEAD);
    }

    #[test]
    #[should_panic(expected = "data length differs")]
    fn layout_refuses_data_of_another_length() {
        let mut layout = AggregateLayout::new();
        layout.push("k", None, 3);
        let _ = layout.encode([&b"four"[..]]);
    }

    #[test]
    fn anything_else_is_not_an_aggregate() {
        let good = hex(GOLDEN);
        assert!(Aggregate::parse(b"plain data").is_none());
        assert!(Aggregate::parse(&MAGIC).is_none());
        assert!(Aggregate::parse(&good[..FIXED_OVERHEAD]).is_none());
        let mut bad_digest = good;
        *bad_digest.last_mut().unwrap() ^= 1;
        assert!(Aggregate::parse(&bad_digest).is_none());
        // A record pointing past the key table, with a valid digest.
        let mut body = vec![TAG_RECORD, 4, TAG_PK_INDEX, 7, TAG_DATA, 0];
        let mut data = MAGIC.to_vec();
        data.append(&mut body);
        let digest = Md5::digest(&data[4..]);
        data.extend_from_slice(&digest);
        assert!(Aggregate::parse(&data).is_none());
        // Only key tables, no records.
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(&[TAG_PK_TABLE, 1, b'k']);
        let digest = Md5::digest(&data[4..]);
        data.extend_from_slice(&digest);
        assert!(Aggregate::parse(&data).is_none());
    }

    #[test]
    fn hash_range_filter() {
        let bytes = hex(GOLDEN);
        let agg = Aggregate::parse(&bytes).unwrap();
        assert!(agg.within(&crate::HashKeyRange::FULL));
        let lower = crate::HashKeyRange::new(HashKey(0), HashKey((1 << 127) - 1)).unwrap();
        assert!(!agg.within(&lower));
    }

    proptest! {
        #[test]
        fn round_trips_and_sizes_are_exact(
            records in proptest::collection::vec(
                ("[a-z]{1,3}|\\PC{1,20}", proptest::option::of(any::<u128>()), proptest::collection::vec(any::<u8>(), 0..300)),
                1..40,
            )
        ) {
            let mut b = AggregateBuilder::new();
            let ehks: Vec<Option<String>> = records.iter().map(|r| r.1.map(|k| k.to_string())).collect();
            for ((pk, _, data), ehk) in records.iter().zip(&ehks) {
                let predicted = b.encoded_len_with(pk, ehk.as_deref(), data.len());
                b.add(pk, ehk.as_deref(), data);
                prop_assert_eq!(b.encoded_len(), predicted);
            }
            let bytes = b.encode();
            prop_assert_eq!(bytes.len(), b.encoded_len());
            let mut layout = AggregateLayout::new();
            for ((pk, _, data), ehk) in records.iter().zip(&ehks) {
                layout.push(pk, ehk.as_deref(), data.len());
            }
            prop_assert_eq!(&layout.encode(records.iter().map(|r| &r.2[..])), &bytes);
            let agg = Aggregate::parse(&bytes).unwrap();
            prop_assert_eq!(agg.records.len(), records.len());
            for (got, ((pk, _, data), ehk)) in agg.records.iter().zip(records.iter().zip(&ehks)) {
                prop_assert_eq!(got.partition_key, pk.as_str());
                prop_assert_eq!(got.explicit_hash_key, ehk.as_deref());
                prop_assert_eq!(got.data, &data[..]);
            }
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&data);
            let _ = Aggregate::parse(&data);
            let _ = Aggregate::parse(&with_magic);
        }
    }
}
