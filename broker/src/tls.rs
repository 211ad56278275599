//! TLS for the API listener: rustls with ALPN `h2` and `http/1.1`.
//!
//! The AWS SDK for Rust speaks HTTP/2 when ALPN picks `h2` and HTTP/1.1 otherwise; the Java
//! SDK v2 and JavaScript v3 SDKs use HTTP/2. After the handshake the connection is served by
//! the same pipeline as the plaintext listener.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Builds the acceptor from PEM files.
pub fn acceptor(cert_file: &Path, key_file: &Path) -> io::Result<TlsAcceptor> {
    let invalid = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} {}: {e}", path.display()),
        )
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| invalid("cannot read certificates from", cert_file, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("bad certificate in", cert_file, &e))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in", cert_file, &"empty"));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| invalid("cannot read private key from", key_file, &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS setup for", cert_file, &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid("certificate and key do not match:", cert_file, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
