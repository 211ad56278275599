//! The segment file format.
//!
//! A segment file is named `<base position, 20 digits>.seg` and holds:
//!
//! ```text
//! header:  magic "RIFFLSG1" (8 bytes) | base position u64 LE
//! batch*:  body length u32 LE | CRC-32 of body u32 LE | body
//! body:    base position u64 LE | arrival time ms i64 LE | record count u32 LE
//!          then per record: partition key length u16 LE | data length u32 LE | key | data
//! ```
//!
//! A *sealed* batch (written while its stream is encrypted) has the top bit of the record
//! count set, and instead of the records:
//!
//! ```text
//!          key id length u16 LE | key id (UTF-8) | nonce (12 bytes)
//!          | AES-256-GCM ciphertext of the records, as above, with its 16-byte tag
//! ```
//!
//! The associated data is everything in the body before the nonce, so a sealed batch moved
//! to another position or key id does not open. Base, time and count stay in the clear:
//! recovery and indexing need no key.
//!
//! Invariants: batches are contiguous; the first batch's base position equals the header's;
//! each batch's base is the previous batch's base plus its count; arrival times never
//! decrease. A batch is one group commit: it is written with one `write` and is either wholly
//! valid (length and CRC match) or is a torn tail that recovery truncates.
//!
//! Beside a sealed segment, `<base>.idx` caches its sparse index so start-up need not scan it:
//!
//! ```text
//! magic "RIFFLIX1" | entry count u32 | entries (position u64, offset u64, time i64)*
//! | end position u64 | byte length u64 | CRC-32 of everything before it, u32
//! ```

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use bytes::Bytes;

/// Segment file magic.
pub const SEGMENT_MAGIC: &[u8; 8] = b"RIFFLSG1";
/// Index file magic.
pub const INDEX_MAGIC: &[u8; 8] = b"RIFFLIX1";
/// Bytes before the first batch.
pub const SEGMENT_HEADER_LEN: u64 = 16;
/// Bytes of a batch frame before its body.
pub const FRAME_HEADER_LEN: usize = 8;
/// Bytes of a body before its records.
pub const BODY_HEADER_LEN: usize = 20;
/// Bytes of a record before its key and data.
pub const RECORD_HEADER_LEN: usize = 6;
/// Largest body accepted when decoding (guards allocations against corrupt lengths).
pub const MAX_BODY_LEN: usize = 64 * 1024 * 1024;
/// The record-count bit that marks a sealed batch.
pub const SEALED_FLAG: u32 = 1 << 31;
/// Bytes of a sealed batch's nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes of a sealed batch's authentication tag.
pub const TAG_LEN: usize = 16;

/// One record inside a decoded batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    /// The partition key, as stored.
    pub partition_key: Bytes,
    /// The record's data.
    pub data: Bytes,
}

/// A decoded batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Position of the first record.
    pub base: u64,
    /// Arrival time of every record in the batch, ms since the epoch.
    pub timestamp_ms: i64,
    /// Records in the batch.
    pub count: u32,
    /// The records, in position order (empty while the batch is sealed).
    pub records: Vec<DecodedRecord>,
    /// The encrypted records of a sealed batch, opened with [`Batch::open`].
    pub sealed: Option<Sealed>,
}

/// The encrypted part of a sealed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The key id the batch was sealed under (as the key ring names it).
    pub key_id: String,
    /// Its nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext and tag.
    pub ciphertext: Bytes,
}

/// A sealed batch did not open: the key is not the one it was sealed with, or the bytes
/// were altered (AES-GCM cannot tell the two apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFailed;

impl Batch {
    /// The records of a sealed batch, decrypted with `cipher` (the key its `key_id`
    /// names); a plain batch's records as they are.
    pub fn open(self, cipher: &Aes256Gcm) -> Result<Vec<DecodedRecord>, OpenFailed> {
        let Some(sealed) = &self.sealed else {
            return Ok(self.records);
        };
        let aad = sealed_aad(self.base, self.timestamp_ms, self.count, &sealed.key_id);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenFailed)?;
        let plain = Bytes::from(plain);
        // Authentic bytes that do not parse cannot come from this encoder; treat them as
        // a failure to open rather than panic or return garbage.
        parse_records(&plain, 0, plain.len(), self.count as usize).map_err(|_| OpenFailed)
    }
}

/// The body bytes a sealed batch authenticates: its header and key id.
fn sealed_aad(base: u64, timestamp_ms: i64, count: u32, key_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(BODY_HEADER_LEN + 2 + key_id.len());
    aad.extend_from_slice(&base.to_le_bytes());
    aad.extend_from_slice(&timestamp_ms.to_le_bytes());
    aad.extend_from_slice(&(count | SEALED_FLAG).to_le_bytes());
    aad.extend_from_slice(&(key_id.len() as u16).to_le_bytes());
    aad.extend_from_slice(key_id.as_bytes());
    aad
}

/// What [`decode_frame`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete, valid batch occupying `len` bytes.
    Batch {
        /// The batch.
        batch: Batch,
        /// Bytes the frame occupies.
        len: usize,
    },
    /// The buffer ends inside a frame that needs `needed` bytes in all.
    Incomplete {
        /// Total frame length, when the frame header was readable.
        needed: Option<usize>,
    },
    /// The bytes are not a valid frame.
    Corrupt(&'static str),
}

/// Appends the encoding of a batch to `out`. Returns the number of bytes written.
pub fn encode_batch<'a, I>(base: u64, timestamp_ms: i64, records: I, out: &mut Vec<u8>) -> usize
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    out.extend_from_slice(&base.to_le_bytes());
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    let count_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut count = 0u32;
    for (key, data) in records {
        debug_assert!(
            key.len() <= usize::from(u16::MAX),
            "partition keys are validated to 256 characters"
        );
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(data);
        count += 1;
    }
    debug_assert!(count < SEALED_FLAG, "batches are bounded by the body size");
    out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
    finish_frame(out, start)
}

/// Appends the encoding of a batch sealed under `key_id` with `cipher` and `nonce` (which
/// must never repeat under one key). Returns the number of bytes written.
pub fn encode_sealed_batch<'a, I>(
    base: u64,
    timestamp_ms: i64,
    records: I,
    key_id: &str,
    cipher: &Aes256Gcm,
    nonce: [u8; NONCE_LEN],
    out: &mut Vec<u8>,
) -> usize
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let mut plain = Vec::new();
    let mut count = 0u32;
    for (key, data) in records {
        plain.extend_from_slice(&(key.len() as u16).to_le_bytes());
        plain.extend_from_slice(&(data.len() as u32).to_le_bytes());
        plain.extend_from_slice(key);
        plain.extend_from_slice(data);
        count += 1;
    }
    let sealed = seal(base, timestamp_ms, count, key_id, cipher, nonce, &plain);
    encode_sealed_frame(base, timestamp_ms, count, &sealed, out)
}

/// Encrypts `plain`, the records section of a batch of `count` records, as the sealed
/// part of that batch.
pub fn seal(
    base: u64,
    timestamp_ms: i64,
    count: u32,
    key_id: &str,
    cipher: &Aes256Gcm,
    nonce: [u8; NONCE_LEN],
    plain: &[u8],
) -> Sealed {
    let aad = sealed_aad(base, timestamp_ms, count, key_id);
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &aad,
            },
        )
        .expect("AES-GCM encrypts any batch the log accepts");
    Sealed {
        key_id: key_id.to_owned(),
        nonce,
        ciphertext: Bytes::from(ciphertext),
    }
}

/// Appends the frame of an already sealed batch (what [`decode_frame`] returned).
pub fn encode_sealed_frame(
    base: u64,
    timestamp_ms: i64,
    count: u32,
    sealed: &Sealed,
    out: &mut Vec<u8>,
) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    out.extend_from_slice(&sealed_aad(base, timestamp_ms, count, &sealed.key_id));
    out.extend_from_slice(&sealed.nonce);
    out.extend_from_slice(&sealed.ciphertext);
    finish_frame(out, start)
}

/// Fills in the length and CRC of the frame that starts at `start` and ends `out`; its size.
fn finish_frame(out: &mut [u8], start: usize) -> usize {
    let body = &out[start + FRAME_HEADER_LEN..];
    let body_len = body.len() as u32;
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads the total length of the frame at the start of `buf`, if its header is there.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    (buf.len() >= FRAME_HEADER_LEN).then(|| FRAME_HEADER_LEN + u32_at(buf, 0) as usize)
}

/// Decodes the frame at the start of `buf`. Record bytes are sliced from `buf` without copying.
pub fn decode_frame(buf: &Bytes) -> Frame {
    let Some(total) = frame_len(buf) else {
        return Frame::Incomplete { needed: None };
    };
    let body_len = total - FRAME_HEADER_LEN;
    if !(BODY_HEADER_LEN..=MAX_BODY_LEN).contains(&body_len) {
        return Frame::Corrupt("body length out of range");
    }
    if buf.len() < total {
        return Frame::Incomplete {
            needed: Some(total),
        };
    }
    let body = &buf[FRAME_HEADER_LEN..total];
    if crc32fast::hash(body) != u32_at(buf, 4) {
        return Frame::Corrupt("checksum mismatch");
    }
    let base = u64_at(body, 0);
    let timestamp_ms = u64_at(body, 8) as i64;
    let raw_count = u32_at(body, 16);
    if raw_count & SEALED_FLAG != 0 {
        return decode_sealed(buf, base, timestamp_ms, raw_count & !SEALED_FLAG, total);
    }
    let count = raw_count as usize;
    // Every record takes at least its header, which bounds `count` by the body size.
    if count > (body_len - BODY_HEADER_LEN) / RECORD_HEADER_LEN {
        return Frame::Corrupt("record count exceeds body");
    }
    match parse_records(buf, FRAME_HEADER_LEN + BODY_HEADER_LEN, total, count) {
        Ok(records) => Frame::Batch {
            batch: Batch {
                base,
                timestamp_ms,
                count: raw_count,
                records,
                sealed: None,
            },
            len: total,
        },
        Err(why) => Frame::Corrupt(why),
    }
}

/// The sealed part of the batch body in `buf[FRAME_HEADER_LEN..total]` (checksum already
/// verified). The ciphertext is sliced from `buf`, not copied: recovery scans every batch.
fn decode_sealed(buf: &Bytes, base: u64, timestamp_ms: i64, count: u32, total: usize) -> Frame {
    let body = &buf[FRAME_HEADER_LEN..total];
    let mut at = BODY_HEADER_LEN;
    if body.len() < at + 2 {
        return Frame::Corrupt("sealed batch without key id");
    }
    let id_len = u16::from_le_bytes([body[at], body[at + 1]]) as usize;
    at += 2;
    if body.len() < at + id_len + NONCE_LEN + TAG_LEN {
        return Frame::Corrupt("sealed batch too short");
    }
    let Ok(key_id) = std::str::from_utf8(&body[at..at + id_len]) else {
        return Frame::Corrupt("sealed batch key id is not UTF-8");
    };
    at += id_len;
    let nonce: [u8; NONCE_LEN] = body[at..at + NONCE_LEN].try_into().expect("12 bytes");
    at += NONCE_LEN;
    let ciphertext = buf.slice(FRAME_HEADER_LEN + at..total);
    if count as usize > (ciphertext.len() - TAG_LEN) / RECORD_HEADER_LEN {
        return Frame::Corrupt("record count exceeds body");
    }
    Frame::Batch {
        batch: Batch {
            base,
            timestamp_ms,
            count,
            records: Vec::new(),
            sealed: Some(Sealed {
                key_id: key_id.to_owned(),
                nonce,
                ciphertext,
            }),
        },
        len: total,
    }
}

/// Parses `count` records from `buf[at..end]`, which they must fill exactly.
fn parse_records(
    buf: &Bytes,
    mut at: usize,
    end: usize,
    count: usize,
) -> Result<Vec<DecodedRecord>, &'static str> {
    if count > (end - at) / RECORD_HEADER_LEN {
        return Err("record count exceeds body");
    }
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        if at + RECORD_HEADER_LEN > end {
            return Err("record header past body");
        }
        let key_len = u16::from_le_bytes([buf[at], buf[at + 1]]) as usize;
        let data_len = u32_at(buf, at + 2) as usize;
        let key_at = at + RECORD_HEADER_LEN;
        let data_at = key_at + key_len;
        let rec_end = data_at.saturating_add(data_len);
        if rec_end > end {
            return Err("record past body");
        }
        records.push(DecodedRecord {
            partition_key: buf.slice(key_at..data_at),
            data: buf.slice(data_at..rec_end),
        });
        at = rec_end;
    }
    if at != end {
        return Err("trailing bytes in body");
    }
    Ok(records)
}

/// The segment header for a segment starting at `base`.
pub fn encode_header(base: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..].copy_from_slice(&base.to_le_bytes());
    h
}

/// The base position in a segment header, if valid.
pub fn decode_header(buf: &[u8]) -> Option<u64> {
    (buf.len() >= SEGMENT_HEADER_LEN as usize && &buf[..8] == SEGMENT_MAGIC).then(|| u64_at(buf, 8))
}

/// One sparse index entry: the batch starting at `position` begins at byte `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Position of the batch's first record.
    pub position: u64,
    /// Byte offset of the batch frame in the segment file.
    pub offset: u64,
    /// The batch's arrival time.
    pub timestamp_ms: i64,
}

/// What a sealed segment's index file records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedIndex {
    /// Sparse index entries.
    pub entries: Vec<IndexEntry>,
    /// Position after the segment's last record.
    pub end_position: u64,
    /// Segment file length in bytes.
    pub len: u64,
}

/// Encodes an index file.
pub fn encode_index(index: &SealedIndex) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + index.entries.len() * 24);
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&(index.entries.len() as u32).to_le_bytes());
    for e in &index.entries {
        out.extend_from_slice(&e.position.to_le_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.timestamp_ms.to_le_bytes());
    }
    out.extend_from_slice(&index.end_position.to_le_bytes());
    out.extend_from_slice(&index.len.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes an index file; `None` if it is damaged in any way.
pub fn decode_index(buf: &[u8]) -> Option<SealedIndex> {
    if buf.len() < 8 + 4 + 16 + 4 || &buf[..8] != INDEX_MAGIC {
        return None;
    }
    let (content, crc) = buf.split_at(buf.len() - 4);
    if crc32fast::hash(content) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let count = u32_at(content, 8) as usize;
    if content.len() != 12 + count.checked_mul(24)? + 16 {
        return None;
    }
    let entries = (0..count)
        .map(|i| {
            let at = 12 + i * 24;
            IndexEntry {
                position: u64_at(content, at),
                offset: u64_at(content, at + 8),
                timestamp_ms: u64_at(content, at + 16) as i64,
            }
        })
        .collect();
    let tail = 12 + count * 24;
    Some(SealedIndex {
        entries,
        end_position: u64_at(content, tail),
        len: u64_at(content, tail + 8),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Bytes, usize) {
        let mut out = Vec::new();
        let n = encode_batch(
            7,
            1_700_000_000_000,
            [
                (&b"k1"[..], &b"hello"[..]),
                (&b""[..], &b""[..]),
                (&b"k3"[..], &[0u8, 255][..]),
            ],
            &mut out,
        );
        (Bytes::from(out), n)
    }

    #[test]
    fn batch_round_trips() {
        let (buf, n) = sample();
        let Frame::Batch { batch, len } = decode_frame(&buf) else {
            panic!("not a batch")
        };
        assert_eq!(len, n);
        assert_eq!(batch.base, 7);
        assert_eq!(batch.timestamp_ms, 1_700_000_000_000);
        assert_eq!(batch.records.len(), 3);
        assert_eq!(&batch.records[0].data[..], b"hello");
        assert_eq!(&batch.records[2].data[..], &[0, 255]);
    }

    #[test]
    fn every_truncation_is_incomplete_and_every_bit_flip_is_caught() {
        let (buf, n) = sample();
        for cut in 0..n {
            assert!(
                matches!(decode_frame(&buf.slice(..cut)), Frame::Incomplete { .. }),
                "cut at {cut}"
            );
        }
        for i in 0..n {
            for bit in 0..8 {
                let mut v = buf.to_vec();
                v[i] ^= 1 << bit;
                let flipped = decode_frame(&Bytes::from(v));
                assert!(
                    !matches!(flipped, Frame::Batch { .. }),
                    "flip byte {i} bit {bit} went unnoticed"
                );
            }
        }
    }

    fn cipher(byte: u8) -> Aes256Gcm {
        use aes_gcm::KeyInit;
        Aes256Gcm::new_from_slice(&[byte; 32]).expect("32-byte key")
    }

    fn sealed_sample() -> (Bytes, usize) {
        let mut out = Vec::new();
        let n = encode_sealed_batch(
            7,
            1_700_000_000_000,
            [(&b"k1"[..], &b"top secret"[..]), (&b"k2"[..], &b""[..])],
            "alias/orders",
            &cipher(1),
            [9; NONCE_LEN],
            &mut out,
        );
        (Bytes::from(out), n)
    }

    #[test]
    fn sealed_batch_round_trips_with_its_key_only() {
        let (buf, n) = sealed_sample();
        assert!(
            !buf.windows(10).any(|w| w == b"top secret"),
            "plaintext in a sealed frame"
        );
        let Frame::Batch { batch, len } = decode_frame(&buf) else {
            panic!("not a batch")
        };
        assert_eq!((len, batch.base, batch.count), (n, 7, 2));
        assert!(batch.records.is_empty());
        assert_eq!(batch.sealed.as_ref().unwrap().key_id, "alias/orders");
        // Re-encoding what was decoded gives the same bytes.
        let mut again = Vec::new();
        let s = batch.sealed.as_ref().unwrap();
        encode_sealed_frame(batch.base, batch.timestamp_ms, batch.count, s, &mut again);
        assert_eq!(&again[..], &buf[..]);
        assert_eq!(batch.clone().open(&cipher(2)), Err(OpenFailed));
        let records = batch.open(&cipher(1)).expect("opens with its key");
        assert_eq!(&records[0].data[..], b"top secret");
        assert_eq!(&records[1].partition_key[..], b"k2");
    }

    #[test]
    fn a_sealed_batch_moved_to_another_position_does_not_open() {
        let (buf, _) = sealed_sample();
        let Frame::Batch { batch, .. } = decode_frame(&buf) else {
            panic!("not a batch")
        };
        let moved = Batch { base: 8, ..batch };
        assert_eq!(moved.open(&cipher(1)), Err(OpenFailed));
    }

    #[test]
    fn index_round_trips_and_detects_damage() {
        let idx = SealedIndex {
            entries: vec![IndexEntry {
                position: 1,
                offset: 16,
                timestamp_ms: 5,
            }],
            end_position: 9,
            len: 1000,
        };
        let enc = encode_index(&idx);
        assert_eq!(decode_index(&enc), Some(idx));
        let mut bad = enc.clone();
        bad[13] ^= 1;
        assert_eq!(decode_index(&bad), None);
        assert_eq!(decode_index(&enc[..enc.len() - 1]), None);
    }
}
