//! Shard iterators: `iterator::IteratorCodec::decode` on client-supplied strings.
//!
//! The first byte picks a mode:
//! - 0: the rest, as lossy UTF-8, is decoded as is (what a client can send).
//! - 1: the rest is a raw iterator body that the harness signs with the codec's key (HMAC-SHA256,
//!   first 16 bytes, per the layout in `iterator.rs`), so the parsing after the MAC check is
//!   reached too. Whatever decodes must re-encode to the very same string.
//! - otherwise: a structured `ShardIterator` built from the rest; `decode(encode(x)) == x`,
//!   and another key rejects it.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use riffle_broker::iterator::{IteratorCodec, ShardIterator};
use sha2::Sha256;

const KEY: [u8; 32] = [0x5a; 32];
const OTHER_KEY: [u8; 32] = [0xa5; 32];
const NAME_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&KEY).unwrap();
    mac.update(body);
    let full = mac.finalize().into_bytes();
    let mut buf = body.to_vec();
    buf.extend_from_slice(&full[..16]);
    STANDARD.encode(buf)
}

fn structured(u: &mut Unstructured<'_>) -> arbitrary::Result<ShardIterator> {
    let len = u.int_in_range(0..=128usize)?;
    let mut stream = String::with_capacity(len);
    for _ in 0..len {
        stream.push(*u.choose(NAME_CHARS)? as char);
    }
    Ok(ShardIterator {
        issued_ms: i64::arbitrary(u)?,
        stream_created_ms: i64::arbitrary(u)?,
        stream,
        shard: u32::arbitrary(u)?,
        position: u64::arbitrary(u)?,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let codec = IteratorCodec::new(KEY);
    match mode {
        0 => {
            let s = String::from_utf8_lossy(rest);
            if let Some(it) = codec.decode(&s) {
                // Only reachable by forging the MAC; if it happens, it must be canonical.
                assert_eq!(codec.encode(&it), s);
            }
        }
        1 => {
            let s = sign(rest);
            let decoded = codec.decode(&s);
            let well_formed = s.len() <= 512
                && rest.len() >= 30
                && rest[0] == 1
                && rest.len() == 30 + usize::from(rest[29])
                && std::str::from_utf8(&rest[30..]).is_ok();
            assert_eq!(decoded.is_some(), well_formed, "body {rest:?}");
            if let Some(it) = decoded {
                assert_eq!(codec.encode(&it), s);
            }
            assert_eq!(IteratorCodec::new(OTHER_KEY).decode(&s), None);
        }
        _ => {
            let mut u = Unstructured::new(rest);
            let Ok(it) = structured(&mut u) else {
                return;
            };
            let s = codec.encode(&it);
            assert!(s.len() <= 512, "iterator too long: {}", s.len());
            assert_eq!(codec.decode(&s), Some(it));
            assert_eq!(IteratorCodec::new(OTHER_KEY).decode(&s), None);
        }
    }
});
