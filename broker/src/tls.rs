//! TLS for the API listener: rustls with ALPN `h2` and `http/1.1`, a serving certificate that
//! is reloaded when its files change, and optional client-certificate verification.
//!
//! The AWS SDK for Rust speaks HTTP/2 when ALPN picks `h2` and HTTP/1.1 otherwise; the Java
//! SDK v2 and JavaScript v3 SDKs use HTTP/2. After the handshake the connection is served by
//! the same pipeline as the plaintext listener.
//!
//! Reloading: [`watch`] rereads the certificate and key files every `reload_interval` and,
//! when their contents changed and they form a valid pair, new handshakes use the new
//! certificate; connections already open keep theirs. A pair that does not load (half
//! written, key not matching) is logged and the previous certificate stays in use, so a
//! rotation by cert-manager or a renewed Kubernetes Secret needs no restart and cannot take
//! the listener down.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

fn invalid(what: &str, path: &Path, e: &dyn std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{what} {}: {e}", path.display()),
    )
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The file contents a certificate was loaded from, to notice a change.
type Loaded = (Vec<u8>, Vec<u8>);

/// The serving certificate, swapped in place when its files change.
#[derive(Debug)]
pub struct CertStore {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// What `current` was loaded from, and the last contents that failed (logged once).
    seen: Mutex<(Loaded, Option<Loaded>)>,
}

impl CertStore {
    /// Loads the pair, or says which file is wrong and why.
    pub fn open(cert_file: &Path, key_file: &Path) -> io::Result<CertStore> {
        let provider = provider();
        let bytes = read_pair(cert_file, key_file)?;
        let key = load(&bytes, cert_file, key_file, &provider)?;
        Ok(CertStore {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            provider,
            current: RwLock::new(Arc::new(key)),
            seen: Mutex::new((bytes, None)),
        })
    }

    /// Rereads the files; `Ok(true)` if a new certificate is now served, `Ok(false)` if
    /// nothing changed, an error (and the old certificate kept) if the new pair is invalid.
    pub fn reload(&self) -> io::Result<bool> {
        let bytes = read_pair(&self.cert_file, &self.key_file)?;
        {
            let seen = self.seen.lock();
            if seen.0 == bytes || seen.1.as_ref() == Some(&bytes) {
                return Ok(false);
            }
        }
        match load(&bytes, &self.cert_file, &self.key_file, &self.provider) {
            Ok(key) => {
                *self.current.write() = Arc::new(key);
                *self.seen.lock() = (bytes, None);
                Ok(true)
            }
            Err(e) => {
                self.seen.lock().1 = Some(bytes);
                Err(e)
            }
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read()))
    }
}

fn read_pair(cert_file: &Path, key_file: &Path) -> io::Result<Loaded> {
    let cert = std::fs::read(cert_file).map_err(|e| invalid("cannot read", cert_file, &e))?;
    let key = std::fs::read(key_file).map_err(|e| invalid("cannot read", key_file, &e))?;
    Ok((cert, key))
}

fn load(
    (cert, key): &Loaded,
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> io::Result<CertifiedKey> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("bad certificate in", cert_file, &e))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in", cert_file, &"empty"));
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| invalid("cannot read private key from", key_file, &e))?;
    CertifiedKey::from_der(certs, key, provider)
        .map_err(|e| invalid("certificate and key do not match:", cert_file, &e))
}

/// The listener's TLS setup: the acceptor, and the certificate store [`watch`] reloads.
pub struct Tls {
    /// Accepts connections with the current certificate.
    pub acceptor: TlsAcceptor,
    /// The serving certificate.
    pub certs: Arc<CertStore>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("certs", &self.certs)
            .finish_non_exhaustive()
    }
}

/// Builds the acceptor from PEM files. With `client_ca_file`, every client must present a
/// certificate chained to one of the CAs in it (mutual TLS), on top of SigV4.
pub fn acceptor(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
) -> io::Result<Tls> {
    let certs = Arc::new(CertStore::open(cert_file, key_file)?);
    let provider = Arc::clone(&certs.provider);
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS setup for", cert_file, &e))?;
    let builder = match client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| invalid("cannot read client CAs from", ca, &e))?
            {
                let c = c.map_err(|e| invalid("bad certificate in", ca, &e))?;
                roots
                    .add(c)
                    .map_err(|e| invalid("unusable client CA in", ca, &e))?;
            }
            if roots.is_empty() {
                return Err(invalid("no certificate in", ca, &"empty"));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid("client verification with", ca, &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::clone(&certs) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        certs,
    })
}

/// Reloads `certs` every `every` until `stop` (see the module docs).
pub async fn watch(certs: Arc<CertStore>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let c = Arc::clone(&certs);
        match tokio::task::spawn_blocking(move || c.reload()).await {
            Ok(Ok(true)) => {
                tracing::info!(cert = %certs.cert_file.display(), "TLS certificate reloaded")
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "TLS certificate not reloaded; the previous one stays in use")
            }
            Err(e) => tracing::warn!(error = %e, "TLS reload task failed"),
        }
    }
}
