//! Web identity tokens (OIDC JWTs, such as Kubernetes projected service-account tokens),
//! validated offline against the issuer's signing keys: a JWKS document in a file (the
//! cluster's `/openid/v1/jwks`, mounted or copied there), or fetched from a URL (the API
//! server's `/openid/v1/jwks` itself, or any issuer's `jwks_uri`) and refreshed on a timer.
//!
//! A token is accepted when its signature verifies with the key its `kid` names (RS256 or
//! ES256), its `iss` is the configured issuer, its `aud` includes a configured audience, and
//! it has not expired (`exp`, `nbf`, with a small leeway). The JWKS file is re-read when it
//! changes, so keys rotate without a restart.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde::Deserialize;

/// The `[auth.web_identity]` configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebIdentityConfig {
    /// The expected `iss` claim (the cluster's service-account issuer).
    pub issuer: String,
    /// Accepted `aud` values (the audience the projected token was requested for).
    pub audiences: Vec<String>,
    /// The issuer's JWKS document, reread when it changes.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Where to fetch the issuer's JWKS document instead (`http://` or `https://`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// PEM roots for an `https` `jwks_url` (default: `/etc/ssl/certs/ca-certificates.crt`);
    /// in a pod, `/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`.
    #[serde(default)]
    pub jwks_ca_file: Option<PathBuf>,
    /// A bearer token sent with the fetch, reread each time (in a pod, its own
    /// service-account token, which the API server's `system:service-account-issuer-discovery`
    /// role lets read the JWKS).
    #[serde(default)]
    pub jwks_token_file: Option<PathBuf>,
    /// How often `jwks_url` is fetched again (after a failure: every 5 s until it succeeds).
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh_interval: Duration,
}

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(60)
}

impl WebIdentityConfig {
    /// Tokens of `issuer` for one of `audiences`, checked against the JWKS file `jwks`.
    pub fn with_jwks_file(issuer: &str, audiences: &[&str], jwks: PathBuf) -> WebIdentityConfig {
        WebIdentityConfig {
            issuer: issuer.to_owned(),
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            jwks_file: Some(jwks),
            jwks_url: None,
            jwks_ca_file: None,
            jwks_token_file: None,
            jwks_refresh_interval: default_jwks_refresh(),
        }
    }
}

/// What a validated token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub`: for Kubernetes, `system:serviceaccount:<namespace>:<name>`.
    pub subject: String,
    /// The audience that matched.
    pub audience: String,
    /// `exp`, seconds since the epoch.
    pub expires: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not a JWT we can check, or its signature, issuer or audience is wrong.
    Invalid(String),
    /// It has expired.
    Expired,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    aud: Audience,
    exp: i64,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Validates web identity tokens.
#[derive(Debug)]
pub struct Validator {
    config: WebIdentityConfig,
    keys: Mutex<(Option<SystemTime>, Instant, JwkSet)>,
}

fn load(path: &std::path::Path) -> Result<(Option<SystemTime>, JwkSet), String> {
    let stamp = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read JWKS file {}: {e}", path.display()))?;
    let set: JwkSet = serde_json::from_str(&text)
        .map_err(|e| format!("JWKS file {} is not a JWK set: {e}", path.display()))?;
    Ok((stamp, set))
}

impl Validator {
    /// Loads the issuer's keys from `jwks_file`; with `jwks_url` it starts with none, and
    /// [`Validator::watch`] fetches them.
    pub fn open(config: WebIdentityConfig) -> Result<Validator, String> {
        let (stamp, set) = match (&config.jwks_file, &config.jwks_url) {
            (Some(file), None) => load(file)?,
            (None, Some(url)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!(
                        "auth.web_identity.jwks_url {url:?} is not an http(s) URL"
                    ));
                }
                (None, JwkSet { keys: Vec::new() })
            }
            _ => {
                return Err("auth.web_identity needs exactly one of jwks_file and jwks_url".into())
            }
        };
        Ok(Validator {
            config,
            keys: Mutex::new((stamp, Instant::now(), set)),
        })
    }

    /// Whether the keys come from `jwks_url`.
    pub fn fetches(&self) -> bool {
        self.config.jwks_url.is_some()
    }

    /// Fetches `jwks_url` once and uses its keys; the number of keys.
    pub async fn fetch(&self) -> Result<usize, String> {
        let url = self.config.jwks_url.as_deref().ok_or("no jwks_url")?;
        let token = match &self.config.jwks_token_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| format!("jwks_token_file {}: {e}", f.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        let body = tokio::time::timeout(
            Duration::from_secs(10),
            fetch::get(url, self.config.jwks_ca_file.as_deref(), token.as_deref()),
        )
        .await
        .map_err(|_| format!("fetching {url} took more than 10 s"))??;
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|e| format!("{url} did not answer a JWK set: {e}"))?;
        let n = set.keys.len();
        self.keys.lock().2 = set;
        Ok(n)
    }

    /// Fetches `jwks_url` once now (before the broker serves), then keeps it fresh with
    /// [`Validator::watch`]; the outcome of this first fetch is logged.
    pub async fn fetch_and_watch(
        self: std::sync::Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let first = self.fetch().await;
        match &first {
            Ok(n) => tracing::info!(keys = n, "web identity JWKS fetched"),
            Err(e) => tracing::error!(error = %e, "web identity JWKS not fetched yet"),
        }
        tokio::spawn(self.clone().watch(self.retry_after(first.is_ok()), stop));
    }

    fn retry_after(&self, ok: bool) -> Duration {
        if ok {
            self.config.jwks_refresh_interval
        } else {
            Duration::from_secs(5).min(self.config.jwks_refresh_interval)
        }
    }

    /// After `first_wait`, fetches `jwks_url` every `jwks_refresh_interval` (every 5 s while
    /// it fails) until `stop`; the keys in use stay until a fetch succeeds.
    pub async fn watch(
        self: std::sync::Arc<Self>,
        first_wait: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut wait = first_wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
            wait = match self.fetch().await {
                Ok(n) => {
                    tracing::debug!(keys = n, "JWKS fetched");
                    self.retry_after(true)
                }
                Err(e) => {
                    tracing::error!(error = %e, "JWKS not fetched; the keys in use stay");
                    self.retry_after(false)
                }
            };
        }
    }

    /// The key set, re-read if the file changed (checked at most once a second).
    fn keys(&self) -> JwkSet {
        let mut k = self.keys.lock();
        let Some(file) = self.config.jwks_file.clone() else {
            return k.2.clone();
        };
        if k.1.elapsed() > Duration::from_secs(1) {
            k.1 = Instant::now();
            let stamp = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
            if stamp != k.0 {
                match load(&file) {
                    Ok((s, set)) => {
                        k.0 = s;
                        k.2 = set;
                    }
                    Err(e) => tracing::error!(error = %e, "JWKS not reloaded"),
                }
            }
        }
        k.2.clone()
    }

    /// The issuer tokens must come from.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Validates `token`.
    pub fn validate(&self, token: &str) -> Result<Identity, TokenError> {
        let invalid = |m: &str| TokenError::Invalid(m.to_owned());
        if token.len() > 16 * 1024 {
            return Err(invalid("token too large"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("not a JWT"))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(invalid("unsupported signing algorithm"));
        }
        let set = self.keys();
        let jwk = match &header.kid {
            Some(kid) => set.find(kid),
            None if set.keys.len() == 1 => set.keys.first(),
            None => None,
        }
        .ok_or_else(|| invalid("no key of the issuer signed it"))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|_| invalid("unusable issuer key"))?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.config.issuer]);
        v.set_audience(&self.config.audiences);
        v.leeway = 30;
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind::*;
            match e.kind() {
                ExpiredSignature => TokenError::Expired,
                InvalidIssuer => invalid("wrong issuer"),
                InvalidAudience => invalid("wrong audience"),
                ImmatureSignature => invalid("not valid yet"),
                _ => invalid("signature or claims do not verify"),
            }
        })?;
        let auds = match data.claims.aud {
            Audience::One(a) => vec![a],
            Audience::Many(a) => a,
        };
        let audience = auds
            .into_iter()
            .find(|a| self.config.audiences.contains(a))
            .ok_or_else(|| invalid("wrong audience"))?;
        Ok(Identity {
            subject: data.claims.sub,
            audience,
            expires: data.claims.exp,
        })
    }
}

/// A minimal HTTP/1.1 GET for the JWKS: one request per connection, TLS by rustls with the
/// given roots, the body capped at 1 MiB.
mod fetch {
    use std::path::Path;
    use std::sync::Arc;

    use http_body_util::{BodyExt, Empty, Limited};
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    const MAX_BODY: usize = 1024 * 1024;
    const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

    pub(super) async fn get(
        url: &str,
        ca: Option<&Path>,
        token: Option<&str>,
    ) -> Result<Vec<u8>, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .ok_or_else(|| format!("{url} has no host"))?
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
        let mut req = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(
                http::header::HOST,
                uri.authority().map_or(host.as_str(), |a| a.as_str()),
            )
            .header(
                http::header::ACCEPT,
                "application/json, application/jwk-set+json",
            );
        if let Some(t) = token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = if https {
            let roots_file = ca.unwrap_or(Path::new(SYSTEM_ROOTS));
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(roots_file)
                .map_err(|e| format!("jwks_ca_file {}: {e}", roots_file.display()))?
            {
                let c = c.map_err(|e| format!("jwks_ca_file {}: {e}", roots_file.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("jwks_ca_file {}: {e}", roots_file.display()))?;
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                .map_err(|e| format!("{host}: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS to {host}:{port}: {e}"))?;
            send(TokioIo::new(tls), req).await?
        } else {
            send(TokioIo::new(tcp), req).await?
        };
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading {url}: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        Ok(body.to_vec())
    }

    async fn send<T>(
        io: T,
        req: http::Request<Empty<bytes::Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, String>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(|e| e.to_string())
    }
}
