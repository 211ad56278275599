//! Encryption at rest: the key ring, and each stream's keys.
//!
//! StartStreamEncryption names a key id (as Kinesis names a KMS key: an alias such as
//! `alias/orders`, a key id, or either as an ARN). The key ring maps ids to 256-bit master
//! keys, read from `[encryption] key_file` (a file, or a mounted Kubernetes Secret, reread
//! when it changes) and `[encryption.keys]`. Each stream seals its batches with its own key,
//! derived from the master key by HKDF-SHA256 over the stream's unique id and name, so two
//! streams under one master key never share a data key, and a stream recreated under an old
//! name cannot read its predecessor's data. Batches are AES-256-GCM with a random 96-bit
//! nonce each ([`crate::storage::segment`] has the format).
//!
//! What is not encrypted: partition keys and data are; sequence numbers, arrival times and
//! record counts (what recovery and indexing need) are not, nor the metadata file (stream
//! names, tags, settings).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;
use hmac::{Hmac, Mac};
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use sha2::Sha256;

use crate::storage::{Keys, SealError};

/// A key as configured: 64 hex digits or the base64 of 32 bytes. Never printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct KeyMaterial(String);

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial(<redacted>)")
    }
}

/// The `[encryption]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionConfig {
    /// A TOML file with a `[keys]` table (key id → key), reread when it changes.
    pub key_file: Option<PathBuf>,
    /// Keys given in the configuration itself (key id → key), for development and tests.
    pub keys: BTreeMap<String, KeyMaterial>,
    /// How often `key_file` is checked for changes.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        EncryptionConfig {
            key_file: None,
            keys: BTreeMap::new(),
            reload_interval: Duration::from_secs(10),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    keys: BTreeMap<String, KeyMaterial>,
}

/// The canonical form of a key id: an ARN's resource part (`alias/x`, or the id after
/// `key/`), anything else as given.
pub fn canonical_key_id(id: &str) -> &str {
    let resource = match id.strip_prefix("arn:") {
        Some(rest) => rest.splitn(5, ':').nth(4).unwrap_or(id),
        None => id,
    };
    resource.strip_prefix("key/").unwrap_or(resource)
}

fn decode_key(id: &str, m: &KeyMaterial) -> Result<[u8; 32], String> {
    let s = m.0.trim();
    let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex digits"))
            .collect()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|_| format!("key {id}: neither 64 hex digits nor base64"))?
    };
    bytes
        .try_into()
        .map_err(|_| format!("key {id}: not 32 bytes (AES-256 needs a 256-bit key)"))
}

fn compile(
    inline: &BTreeMap<String, KeyMaterial>,
    file: Option<&Path>,
) -> Result<HashMap<String, [u8; 32]>, String> {
    let mut keys = HashMap::new();
    let mut add = |id: &str, m: &KeyMaterial| -> Result<(), String> {
        keys.insert(canonical_key_id(id).to_owned(), decode_key(id, m)?);
        Ok(())
    };
    for (id, m) in inline {
        add(id, m)?;
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("encryption.key_file {}: {e}", path.display()))?;
        // The parser's message may quote the offending line, which could hold a key.
        let parsed: KeyFile = toml::from_str(&text).map_err(|e| {
            let at = e
                .span()
                .map(|s| format!(" (at byte {})", s.start))
                .unwrap_or_default();
            format!("encryption.key_file {} is not valid{at}", path.display())
        })?;
        for (id, m) in &parsed.keys {
            add(id, m)?;
        }
    }
    Ok(keys)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The broker's master keys by canonical id.
pub struct KeyRing {
    inline: BTreeMap<String, KeyMaterial>,
    file: Option<PathBuf>,
    keys: RwLock<Arc<HashMap<String, [u8; 32]>>>,
    loaded: Mutex<Option<SystemTime>>,
    /// Bumped on every change, so derived keys are derived again.
    generation: AtomicU64,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<String> = self.keys.read().keys().cloned().collect();
        ids.sort();
        f.debug_struct("KeyRing")
            .field("ids", &ids)
            .field("file", &self.file)
            .finish()
    }
}

impl KeyRing {
    /// Loads the configured keys; an unreadable file or a malformed key is an error
    /// (naming the key id, never the key).
    pub fn open(config: &EncryptionConfig) -> Result<KeyRing, String> {
        let keys = compile(&config.keys, config.key_file.as_deref())?;
        Ok(KeyRing {
            inline: config.keys.clone(),
            loaded: Mutex::new(config.key_file.as_deref().and_then(modified)),
            file: config.key_file.clone(),
            keys: RwLock::new(Arc::new(keys)),
            generation: AtomicU64::new(0),
        })
    }

    /// Whether a key of this id (in any of its forms) is in the ring.
    pub fn contains(&self, key_id: &str) -> bool {
        self.keys.read().contains_key(canonical_key_id(key_id))
    }

    /// Key ids in the ring.
    pub fn len(&self) -> usize {
        self.keys.read().len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn master(&self, key_id: &str) -> Option<[u8; 32]> {
        self.keys.read().get(key_id).copied()
    }

    /// Rereads the key file if it changed. A file that fails to load keeps the previous
    /// keys (and says why, without any key).
    pub fn reload_if_changed(&self) {
        let Some(path) = &self.file else { return };
        let stamp = modified(path);
        if stamp == *self.loaded.lock() {
            return;
        }
        *self.loaded.lock() = stamp;
        match compile(&self.inline, Some(path)) {
            Ok(keys) => {
                let n = keys.len();
                *self.keys.write() = Arc::new(keys);
                self.generation.fetch_add(1, Ordering::AcqRel);
                tracing::info!(keys = n, file = %path.display(), "encryption keys reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "encryption keys not reloaded; the previous keys stay in use")
            }
        }
    }

    /// Rereads the key file on change every `every` until `stop` is cancelled.
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        if self.file.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => self.reload_if_changed(),
                _ = stop.cancelled() => return,
            }
        }
    }
}

/// HKDF-SHA256 (RFC 5869) with one output block: the stream's 256-bit data key.
fn derive(master: &[u8; 32], info: &[u8]) -> [u8; 32] {
    let mut extract = <Hmac<Sha256> as Mac>::new_from_slice(b"riffle stream encryption v1")
        .expect("any key length");
    extract.update(master);
    let prk = extract.finalize().into_bytes();
    let mut expand = <Hmac<Sha256> as Mac>::new_from_slice(&prk).expect("any key length");
    expand.update(info);
    expand.update(&[1]);
    expand.finalize().into_bytes().into()
}

/// One stream's keys: the key id it seals new batches under (none while encryption is
/// off) and its derived ciphers.
pub struct StreamKeys {
    ring: Arc<KeyRing>,
    /// What the derivation binds the key to: the stream's unique id and name.
    info: String,
    current: RwLock<Option<String>>,
    ciphers: Mutex<(u64, HashMap<String, Arc<Aes256Gcm>>)>,
}

impl fmt::Debug for StreamKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamKeys")
            .field("stream", &self.info)
            .field("current", &*self.current.read())
            .finish()
    }
}

impl StreamKeys {
    /// The keys of the stream `name` with unique id `uid`, sealing under `current`.
    pub fn new(ring: Arc<KeyRing>, uid: u64, name: &str, current: Option<&str>) -> StreamKeys {
        StreamKeys {
            ring,
            info: format!("{uid}/{name}"),
            current: RwLock::new(current.map(|k| canonical_key_id(k).to_owned())),
            ciphers: Mutex::new((0, HashMap::new())),
        }
    }

    /// Seal new batches under `key_id` (StartStreamEncryption), or write them in the clear
    /// (`None`, StopStreamEncryption).
    pub fn set_current(&self, key_id: Option<&str>) {
        *self.current.write() = key_id.map(|k| canonical_key_id(k).to_owned());
    }

    /// Fails when new records could not be sealed: encryption is on and its key is not in
    /// the ring.
    pub fn check_sealing(&self) -> Result<(), SealError> {
        match &*self.current.read() {
            Some(id) if !self.ring.contains(id) => {
                Err(SealError::MissingKey { key_id: id.clone() })
            }
            _ => Ok(()),
        }
    }

    fn cipher(&self, key_id: &str) -> Result<Arc<Aes256Gcm>, SealError> {
        let generation = self.ring.generation.load(Ordering::Acquire);
        let mut cache = self.ciphers.lock();
        if cache.0 != generation {
            *cache = (generation, HashMap::new());
        }
        if let Some(c) = cache.1.get(key_id) {
            return Ok(c.clone());
        }
        let master = self
            .ring
            .master(key_id)
            .ok_or_else(|| SealError::MissingKey {
                key_id: key_id.to_owned(),
            })?;
        let key = derive(&master, self.info.as_bytes());
        let cipher = Arc::new(Aes256Gcm::new_from_slice(&key).expect("32-byte key"));
        cache.1.insert(key_id.to_owned(), cipher.clone());
        Ok(cipher)
    }
}

impl Keys for StreamKeys {
    fn sealing(&self) -> Result<Option<(String, Arc<Aes256Gcm>)>, SealError> {
        let current = self.current.read().clone();
        match current {
            None => Ok(None),
            Some(id) => {
                let cipher = self.cipher(&id)?;
                Ok(Some((id, cipher)))
            }
        }
    }

    fn opening(&self, key_id: &str) -> Result<Arc<Aes256Gcm>, SealError> {
        self.cipher(key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[(&str, &str)]) -> Arc<KeyRing> {
        let config = EncryptionConfig {
            keys: keys
                .iter()
                .map(|(k, v)| (k.to_string(), KeyMaterial(v.to_string())))
                .collect(),
            ..EncryptionConfig::default()
        };
        Arc::new(KeyRing::open(&config).expect("valid keys"))
    }

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn key_ids_are_matched_in_every_form() {
        assert_eq!(
            canonical_key_id("arn:aws:kms:us-east-1:123456789012:alias/orders"),
            "alias/orders"
        );
        assert_eq!(
            canonical_key_id("arn:aws:kms:us-east-1:123456789012:key/1234abcd"),
            "1234abcd"
        );
        assert_eq!(canonical_key_id("alias/orders"), "alias/orders");
        let r = ring(&[("arn:aws:kms:us-east-1:1:alias/orders", HEX)]);
        assert!(r.contains("alias/orders"));
        assert!(!r.contains("alias/other"));
    }

    #[test]
    fn keys_are_hex_or_base64_of_32_bytes_and_errors_never_show_them() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(ring(&[("a", HEX), ("b", &b64)]).len(), 2);
        for bad in ["00ff", "not a key at all!", &HEX[..62]] {
            let config = EncryptionConfig {
                keys: [("k".to_string(), KeyMaterial(bad.to_string()))].into(),
                ..EncryptionConfig::default()
            };
            let err = KeyRing::open(&config).unwrap_err();
            assert!(err.starts_with("key k:"), "{err}");
            assert!(!err.contains(bad), "{err}");
        }
        assert!(!format!("{:?}", KeyMaterial(HEX.into())).contains(HEX));
    }

    #[test]
    fn each_stream_gets_its_own_key() {
        let r = ring(&[("alias/a", HEX)]);
        let one = StreamKeys::new(r.clone(), 1, "s", Some("alias/a"));
        let two = StreamKeys::new(r.clone(), 2, "s", Some("alias/a"));
        let mut frame = Vec::new();
        let (id, cipher) = one.sealing().unwrap().unwrap();
        crate::storage::segment::encode_sealed_batch(
            0,
            0,
            [(&b"k"[..], &b"v"[..])],
            &id,
            &cipher,
            [0; 12],
            &mut frame,
        );
        let crate::storage::segment::Frame::Batch { batch, .. } =
            crate::storage::segment::decode_frame(&bytes::Bytes::from(frame))
        else {
            panic!("a batch")
        };
        assert!(batch.clone().open(&two.opening(&id).unwrap()).is_err());
        assert_eq!(batch.open(&one.opening(&id).unwrap()).unwrap().len(), 1);
        assert_eq!(
            StreamKeys::new(r, 3, "s", Some("alias/missing")).check_sealing(),
            Err(SealError::MissingKey {
                key_id: "alias/missing".into()
            })
        );
    }
}
