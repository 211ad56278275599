//! The segment codec on damaged or hostile files: `decode_frame`, `decode_index`,
//! `decode_header` and `frame_len` must never panic, and whatever they accept must be exactly
//! what the encoder would have written.
//!
//! The first byte picks a mode:
//! - 0: the rest is decoded as is, by every decoder.
//! - 1: the rest is a batch *body*; the harness frames it with a correct length and CRC, so
//!   the record parsing after the checksum is reached.
//! - 2: the rest follows the index magic; the harness appends a correct CRC.
//! - otherwise: as 0.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use riffle_broker::storage::segment::{
    decode_frame, decode_header, decode_index, encode_batch, encode_header, encode_index,
    frame_len, Frame, BODY_HEADER_LEN, FRAME_HEADER_LEN, INDEX_MAGIC, MAX_BODY_LEN,
};

fn check_frame(buf: &[u8]) {
    let bytes = Bytes::copy_from_slice(buf);
    match decode_frame(&bytes) {
        Frame::Batch { batch, len } => {
            assert_eq!(frame_len(buf), Some(len));
            assert!(len <= buf.len());
            let mut again = Vec::new();
            let n = encode_batch(
                batch.base,
                batch.timestamp_ms,
                batch
                    .records
                    .iter()
                    .map(|r| (&r.partition_key[..], &r.data[..])),
                &mut again,
            );
            assert_eq!(n, len);
            assert_eq!(&again[..], &buf[..len], "accepted a non-canonical frame");
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
