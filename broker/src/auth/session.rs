//! Temporary credentials, sealed into their session token.
//!
//! The broker keeps no table of sessions: the session token a client receives from STS is
//! the session itself — access key id, secret, role, session name and expiry — sealed with
//! AES-256-GCM under the broker's session key. A request signed with temporary credentials
//! carries the token (`X-Amz-Security-Token`); opening it proves the broker issued it and
//! gives the secret to verify the signature with. Tampered tokens do not open; tokens of
//! another broker (another key) do not open; expired ones open and are refused as expired.
//!
//! ```text
//! token = base64url( nonce (12 bytes) | AES-256-GCM(key, nonce, JSON payload, aad = "riffle-session-1") )
//! ```

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

const AAD: &[u8] = b"riffle-session-1";

/// What a session token holds.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The temporary access key id (`ASIA…`).
    #[serde(rename = "k")]
    pub access_key: String,
    /// The temporary secret.
    #[serde(rename = "s")]
    pub secret: String,
    /// The role's name.
    #[serde(rename = "r")]
    pub role: String,
    /// The session name.
    #[serde(rename = "n")]
    pub session: String,
    /// Expiry, seconds since the epoch.
    #[serde(rename = "e")]
    pub expires: i64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("access_key", &self.access_key)
            .field("role", &self.role)
            .field("session", &self.session)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Seals and opens session tokens.
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

/// Random text from an alphabet.
pub fn random_text(alphabet: &[u8], len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| alphabet[*b as usize % alphabet.len()] as char)
        .collect()
}

const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

impl Sealer {
    /// A sealer with this 32-byte key.
    pub fn new(key: [u8; 32]) -> Sealer {
        Sealer {
            cipher: Aes256Gcm::new(&key.into()),
        }
    }

    /// The key in `path` (32 bytes), created with random bytes and mode 0600 if missing.
    pub fn from_file(path: &Path) -> std::io::Result<Sealer> {
        match std::fs::read(path) {
            Ok(b) if b.len() == 32 => Ok(Sealer::new(b.try_into().expect("32 bytes"))),
            Ok(_) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} must hold exactly 32 bytes", path.display()),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut key);
                write_private(path, &key)?;
                Ok(Sealer::new(key))
            }
            Err(e) => Err(e),
        }
    }

    /// New temporary credentials for a session of `role` until `expires`.
    pub fn issue(&self, role: &str, session: &str, expires: i64) -> (Session, String) {
        let s = Session {
            access_key: format!("ASIA{}", random_text(UPPER_DIGITS, 16)),
            secret: random_text(SECRET_CHARS, 40),
            role: role.to_owned(),
            session: session.to_owned(),
            expires,
        };
        let token = self.seal(&s);
        (s, token)
    }

    fn seal(&self, s: &Session) -> String {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let plain = serde_json::to_vec(s).expect("a session serializes");
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: AAD,
                },
            )
            .expect("AES-GCM encryption does not fail for small messages");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The session a token holds, if this broker sealed it (expired or not).
    pub fn open(&self, token: &str) -> Option<Session> {
        if token.len() > 4096 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        if raw.len() < 12 + 16 {
            return None;
        }
        let (nonce, sealed) = raw.split_at(12);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: AAD,
                },
            )
            .ok()?;
        serde_json::from_slice(&plain).ok()
    }
}

/// Writes a secret file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_open_only_untouched_and_under_their_key() {
        let s = Sealer::new([3; 32]);
        let (session, token) = s.issue("producer", "pod-1", 1_700_000_000);
        assert!(session.access_key.starts_with("ASIA") && session.access_key.len() == 20);
        assert_eq!(session.secret.len(), 40);
        assert_eq!(s.open(&token), Some(session.clone()));
        assert_eq!(Sealer::new([4; 32]).open(&token), None);
        let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(s.open(&URL_SAFE_NO_PAD.encode(raw)), None);
        assert_eq!(s.open("garbage"), None);
        // Two sessions never share keys.
        let (other, _) = s.issue("producer", "pod-1", 1_700_000_000);
        assert_ne!(other.access_key, session.access_key);
        assert!(!format!("{session:?}").contains(&session.secret));
    }
}
