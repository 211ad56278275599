//! Web identity tokens (OIDC JWTs, such as Kubernetes projected service-account tokens),
//! validated offline against the issuer's signing keys (a JWKS document in a file: the
//! cluster's `/openid/v1/jwks`, mounted or copied there).
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
    /// The issuer's JWKS document.
    pub jwks_file: PathBuf,
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
    /// Loads the issuer's keys.
    pub fn open(config: WebIdentityConfig) -> Result<Validator, String> {
        let (stamp, set) = load(&config.jwks_file)?;
        Ok(Validator {
            config,
            keys: Mutex::new((stamp, Instant::now(), set)),
        })
    }

    /// The key set, re-read if the file changed (checked at most once a second).
    fn keys(&self) -> JwkSet {
        let mut k = self.keys.lock();
        if k.1.elapsed() > Duration::from_secs(1) {
            k.1 = Instant::now();
            let stamp = std::fs::metadata(&self.config.jwks_file)
                .and_then(|m| m.modified())
                .ok();
            if stamp != k.0 {
                match load(&self.config.jwks_file) {
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
