//! The segment codec on damaged or hostile files: `decode_frame`, `decode_index`,
//! `decode_header` and `frame_len` must never panic, and whatever they accept must be exactly
//! what the encoder would have written.
//!
//! The first byte picks a mode:
//! - 0: the rest is decoded as is, by every decoder.
//! - 1: the rest is a batch *body*; the harness frames it with a correct length and CRC, so
//!   the record parsing after the checksum is reached.
//! - 2: the rest follows the index magic; the harness appends a correct CRC.
//! - 3: the rest (after a 4-byte record count) is the plaintext of a sealed batch, sealed
//!   with a fixed key: opening authentic ciphertext of hostile plaintext must parse it or
//!   refuse it, and whatever it accepts re-encodes to that plaintext. A sealed frame from
//!   modes 0 and 1 must open with no key but its own (the fuzzer cannot forge a tag).
//! - otherwise: as 0.
#![no_main]

use aes_gcm::{Aes256Gcm, KeyInit};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use riffle_broker::storage::segment::{
    decode_frame, decode_header, decode_index, encode_batch, encode_header, encode_index,
    encode_sealed_frame, frame_len, seal, Batch, Frame, BODY_HEADER_LEN, FRAME_HEADER_LEN,
    INDEX_MAGIC, MAX_BODY_LEN, SEALED_FLAG,
};

fn cipher() -> Aes256Gcm {
    Aes256Gcm::new_from_slice(&[7; 32]).expect("32-byte key")
}

/// Opens an authentic sealed batch of arbitrary plaintext.
fn check_open(count: u32, plain: &[u8]) {
    let sealed = seal(1, 2, count, "k", &cipher(), [3; 12], plain);
    let batch = Batch {
        base: 1,
        timestamp_ms: 2,
        count,
        records: Vec::new(),
        sealed: Some(sealed),
    };
    if let Ok(records) = batch.open(&cipher()) {
        assert_eq!(records.len(), count as usize);
        let mut again = Vec::new();
        encode_batch(
            1,
            2,
            records.iter().map(|r| (&r.partition_key[..], &r.data[..])),
            &mut again,
        );
        assert_eq!(&again[FRAME_HEADER_LEN + BODY_HEADER_LEN..], plain);
    }
}

fn check_frame(buf: &[u8]) {
    let bytes = Bytes::copy_from_slice(buf);
    match decode_frame(&bytes) {
        Frame::Batch { batch, len } => {
            assert_eq!(frame_len(buf), Some(len));
            assert!(len <= buf.len());
            let mut again = Vec::new();
            let n = match &batch.sealed {
                Some(sealed) => {
                    assert!(batch.records.is_empty());
                    encode_sealed_frame(batch.base, batch.timestamp_ms, batch.count, sealed, &mut again)
                }
                None => {
                    assert_eq!(batch.records.len(), batch.count as usize);
                    encode_batch(
                        batch.base,
                        batch.timestamp_ms,
                        batch
                            .records
                            .iter()
                            .map(|r| (&r.partition_key[..], &r.data[..])),
                        &mut again,
                    )
                }
            };
            assert_eq!(n, len);
            assert_eq!(&again[..], &buf[..len], "accepted a non-canonical frame");
            if batch.sealed.is_some() {
                assert!(batch.open(&cipher()).is_err(), "opened a forged sealed batch");
            }
        }
        Frame::Incomplete { needed: None } => assert!(buf.len() < FRAME_HEADER_LEN),
        Frame::Incomplete { needed: Some(n) } => {
            assert_eq!(frame_len(buf), Some(n));
            assert!(n > buf.len());
            assert!(
                n - FRAME_HEADER_LEN >= BODY_HEADER_LEN && n - FRAME_HEADER_LEN <= MAX_BODY_LEN
            );
        }
        Frame::Corrupt(why) => assert!(!why.is_empty()),
    }
}

fn check_index(buf: &[u8]) {
    if let Some(idx) = decode_index(buf) {
        assert_eq!(encode_index(&idx), buf, "accepted a non-canonical index");
    }
}

fn check_header(buf: &[u8]) {
    if let Some(base) = decode_header(buf) {
        assert_eq!(&encode_header(base)[..], &buf[..16]);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        1 => {
            let mut framed = Vec::with_capacity(FRAME_HEADER_LEN + rest.len());
            framed.extend_from_slice(&(rest.len() as u32).to_le_bytes());
            framed.extend_from_slice(&crc32fast::hash(rest).to_le_bytes());
            framed.extend_from_slice(rest);
            check_frame(&framed);
        }
        3 if rest.len() >= 4 => {
            let count = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) & !SEALED_FLAG;
            check_open(count, &rest[4..]);
        }
        2 => {
            let mut index = INDEX_MAGIC.to_vec();
            index.extend_from_slice(rest);
            let crc = crc32fast::hash(&index);
            index.extend_from_slice(&crc.to_le_bytes());
            check_index(&index);
        }
        _ => {
            check_frame(rest);
            check_index(rest);
            check_header(rest);
        }
    }
});
