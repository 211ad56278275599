//! Shard iterators: opaque, tamper-evident, expiring tokens naming a place in a shard.
//!
//! Layout before base64 (standard alphabet, padded):
//!
//! ```text
//! version u8 (=1) | issued ms i64 BE | stream created ms i64 BE | shard index u32 BE
//! | position u64 BE | stream name length u8 | stream name | HMAC-SHA256 (first 16 bytes)
//! ```
//!
//! The MAC covers everything before it, keyed by a per-data-directory secret, so a forged
//! or altered iterator is rejected and iterators survive a broker restart.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long an iterator stays valid.
pub const ITERATOR_TTL_MS: i64 = 300_000;
const VERSION: u8 = 1;
const MAC_LEN: usize = 16;

/// What a shard iterator names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardIterator {
    /// When it was issued, ms since the epoch.
    pub issued_ms: i64,
    /// The stream's creation time, to tell a re-created stream of the same name apart.
    pub stream_created_ms: i64,
    /// The stream's name.
    pub stream: String,
    /// The shard's index.
    pub shard: u32,
    /// The log position of the next record to read.
    pub position: u64,
}

/// Signs and verifies iterators.
#[derive(Clone)]
pub struct IteratorCodec {
    key: [u8; 32],
}

impl std::fmt::Debug for IteratorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IteratorCodec")
    }
}

impl IteratorCodec {
    /// A codec with the given secret key.
    pub fn new(key: [u8; 32]) -> IteratorCodec {
        IteratorCodec { key }
    }

    fn mac(&self, bytes: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(bytes);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// Signs an opaque pagination token (URL-safe base64 of payload and MAC), so a client
    /// can neither forge nor alter one.
    pub fn sign_token(&self, payload: &[u8]) -> String {
        let mut buf = payload.to_vec();
        let mac = self.mac(payload);
        buf.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(buf)
    }

    /// The payload of a token made by [`IteratorCodec::sign_token`], if it verifies.
    pub fn verify_token(&self, token: &str) -> Option<Vec<u8>> {
        if token.len() > 4096 {
            return None;
        }
        let buf = URL_SAFE_NO_PAD.decode(token).ok()?;
        if buf.len() < MAC_LEN {
            return None;
        }
        let (payload, mac) = buf.split_at(buf.len() - MAC_LEN);
        let want = self.mac(payload);
        (want.iter().zip(mac).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0).then(|| payload.to_vec())
    }

    /// Encodes and signs an iterator.
    pub fn encode(&self, it: &ShardIterator) -> String {
        let name = it.stream.as_bytes();
        let mut buf = Vec::with_capacity(30 + name.len() + MAC_LEN);
        buf.push(VERSION);
        buf.extend_from_slice(&it.issued_ms.to_be_bytes());
        buf.extend_from_slice(&it.stream_created_ms.to_be_bytes());
        buf.extend_from_slice(&it.shard.to_be_bytes());
        buf.extend_from_slice(&it.position.to_be_bytes());
        buf.push(name.len() as u8);
        buf.extend_from_slice(name);
        let mac = self.mac(&buf);
        buf.extend_from_slice(&mac);
        STANDARD.encode(buf)
    }

    /// Decodes an iterator, `None` if it is malformed or its MAC does not verify.
    pub fn decode(&self, s: &str) -> Option<ShardIterator> {
        if s.len() > 512 {
            return None;
        }
        let buf = STANDARD.decode(s).ok()?;
        if buf.len() < 30 + MAC_LEN || buf[0] != VERSION {
            return None;
        }
        let (body, mac) = buf.split_at(buf.len() - MAC_LEN);
        let want = self.mac(body);
        // Constant-time comparison.
        if want.iter().zip(mac).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
            return None;
        }
        let name_len = body[29] as usize;
        if body.len() != 30 + name_len {
            return None;
        }
        Some(ShardIterator {
            issued_ms: i64::from_be_bytes(body[1..9].try_into().ok()?),
            stream_created_ms: i64::from_be_bytes(body[9..17].try_into().ok()?),
            shard: u32::from_be_bytes(body[17..21].try_into().ok()?),
            position: u64::from_be_bytes(body[21..29].try_into().ok()?),
            stream: String::from_utf8(body[30..].to_vec()).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ShardIterator {
        ShardIterator {
            issued_ms: 1_700_000_000_000,
            stream_created_ms: 1_600_000_000_000,
            stream: "orders".into(),
            shard: 3,
            position: 42,
        }
    }

    #[test]
    fn tokens_verify_and_reject_tampering() {
        let c = IteratorCodec::new([7; 32]);
        let t = c.sign_token(b"payload");
        assert_eq!(c.verify_token(&t).as_deref(), Some(&b"payload"[..]));
        let mut bad = t.into_bytes();
        bad[0] = if bad[0] == b'A' { b'B' } else { b'A' };
        assert_eq!(c.verify_token(std::str::from_utf8(&bad).unwrap()), None);
        assert_eq!(
            IteratorCodec::new([8; 32]).verify_token(&c.sign_token(b"x")),
            None
        );
    }

    #[test]
    fn round_trips() {
        let c = IteratorCodec::new([7; 32]);
        assert_eq!(c.decode(&c.encode(&sample())), Some(sample()));
    }

    #[test]
    fn any_altered_byte_or_other_key_is_rejected() {
        let c = IteratorCodec::new([7; 32]);
        let raw = STANDARD.decode(c.encode(&sample())).unwrap();
        for i in 0..raw.len() {
            let mut b = raw.clone();
            b[i] ^= 0x01;
            assert_eq!(c.decode(&STANDARD.encode(&b)), None, "byte {i}");
        }
        assert_eq!(
            IteratorCodec::new([8; 32]).decode(&c.encode(&sample())),
            None
        );
        assert_eq!(c.decode("not base64!"), None);
        assert_eq!(c.decode(""), None);
    }
}
