//! Who may do what: authentication (SigV4) and authorization (IAM-style policies).
//!
//! - [`sigv4`]: parsing and verifying AWS Signature Version 4 (header and query forms).
//! - [`keys`]: the credentials file — users, their keys and policies — reloaded on change.
//! - [`policy`]: policy documents and templates, evaluated as IAM does.
//!
//! The request pipeline calls [`Authenticator::authenticate`] on every API request before
//! its body is decoded, and [`authorize`] once the operation's resource is known. With
//! `auth.anonymous = true` every request is accepted as the anonymous principal, which may
//! do anything (the local quickstart); the broker says so in its log at start.

pub mod keys;
pub mod oidc;
pub mod policy;
pub mod session;
pub mod sigv4;
pub mod sts;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use parking_lot::RwLock;
use serde::Deserialize;

use crate::api::error::ApiError;
use keys::Keyring;
use policy::{Decision, PolicyRef, PolicySet};
use sigv4::SigError;

/// A role temporary credentials can be issued for (STS).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleEntry {
    /// The role's name (`arn:aws:iam::<account>:role/<name>`).
    pub name: String,
    /// What a session of the role may do.
    #[serde(default)]
    pub policies: Vec<PolicyRef>,
    /// Users (by name) allowed to call AssumeRole for it.
    #[serde(default)]
    pub trusted_users: Vec<String>,
    /// Kubernetes service accounts (`namespace/name`) whose tokens may be exchanged for it
    /// with AssumeRoleWithWebIdentity.
    #[serde(default)]
    pub service_accounts: Vec<String>,
}

/// Who made a request, once authenticated.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The access key id the request was signed with, if any.
    pub access_key: Option<String>,
    /// The principal's ARN (`arn:aws:iam::<account>:user/<name>`, an assumed-role ARN, or
    /// `anonymous`).
    pub arn: String,
    /// What it may do; `None` for the anonymous principal, which may do anything.
    pub policies: Option<Arc<PolicySet>>,
}

impl Principal {
    /// The principal of every request when authentication is off.
    pub fn anonymous(access_key: Option<String>) -> Principal {
        Principal {
            access_key,
            arn: "anonymous".into(),
            policies: None,
        }
    }
}

/// What authentication sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a str,
    /// The path.
    pub path: &'a str,
    /// The raw query string.
    pub query: &'a str,
    /// The authority (HTTP/2 `:authority`, else the `Host` header).
    pub authority: Option<&'a str>,
    /// The headers.
    pub headers: &'a HeaderMap,
}

/// Decides who a request comes from. The pipeline's one authentication seam.
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// Authenticates a request with these head and body.
    fn authenticate(&self, req: &RequestHead<'_>, body: &[u8]) -> Result<Principal, ApiError>;
}

/// Authentication off: any request, signed with any credentials or none, is accepted.
#[derive(Debug, Default)]
pub struct Anonymous;

impl Authenticator for Anonymous {
    fn authenticate(&self, req: &RequestHead<'_>, _: &[u8]) -> Result<Principal, ApiError> {
        let access_key = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("Credential=").nth(1))
            .and_then(|c| c.split('/').next())
            .map(str::to_owned);
        Ok(Principal::anonymous(access_key))
    }
}

/// The `[auth]` configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Accept every request without checking its signature (local development only).
    pub anonymous: bool,
    /// The credentials file (users, keys, policies, roles).
    pub credentials_file: Option<PathBuf>,
    /// A directory of more credentials files (every `*.toml` in it, hidden entries skipped),
    /// merged with `credentials_file`: where the operator's per-Consumer `riffle-access.toml`
    /// fragments are mounted. A key id or role name may appear in only one of them.
    pub credentials_dir: Option<PathBuf>,
    /// How often the credentials file is checked for changes.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// How far a request's signing time may be from the broker's clock.
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
    /// The key that seals temporary credentials (default: `<data_dir>/session.key`, created
    /// on first start). Brokers sharing it accept each other's temporary credentials.
    pub session_key_file: Option<PathBuf>,
    /// How long temporary credentials last when the caller does not say.
    #[serde(with = "humantime_serde")]
    pub session_duration: Duration,
    /// The longest temporary credentials may last.
    #[serde(with = "humantime_serde")]
    pub max_session_duration: Duration,
    /// Web identity tokens accepted by AssumeRoleWithWebIdentity (Kubernetes service
    /// accounts, or any OIDC issuer).
    pub web_identity: Option<oidc::WebIdentityConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            anonymous: false,
            credentials_file: None,
            credentials_dir: None,
            reload_interval: Duration::from_secs(5),
            clock_skew: Duration::from_secs(300),
            session_key_file: None,
            session_duration: Duration::from_secs(3600),
            max_session_duration: Duration::from_secs(12 * 3600),
            web_identity: None,
        }
    }
}

/// A user as requests are checked against it.
struct Identity {
    name: String,
    arn: String,
    secret: String,
    policies: Arc<PolicySet>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("arn", &self.arn)
            .finish_non_exhaustive()
    }
}

/// A role as sessions of it are checked.
#[derive(Debug)]
pub(crate) struct Role {
    pub(crate) policies: Arc<PolicySet>,
    pub(crate) trusted_users: Vec<String>,
    pub(crate) service_accounts: Vec<String>,
}

/// The credentials in force: compiled from one reading of the credentials file.
#[derive(Debug, Default)]
pub(crate) struct Credentials {
    by_key: std::collections::HashMap<String, Identity>,
    pub(crate) roles: std::collections::HashMap<String, Role>,
}

/// SigV4 verification against the credentials file, and the temporary credentials sealed
/// with the session key.
#[derive(Debug)]
pub struct SigV4 {
    file: Option<PathBuf>,
    dir: Option<PathBuf>,
    pub(crate) region: String,
    pub(crate) account: String,
    skew: i64,
    current: RwLock<Arc<Credentials>>,
    loaded: RwLock<Vec<(PathBuf, Option<SystemTime>)>>,
    pub(crate) sealer: session::Sealer,
    /// The broker's clock: temporary credentials are issued and expire by it.
    pub(crate) clock: crate::clock::Clock,
}

/// Why a signed request was not accepted, before it is put in a protocol's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    Missing,
    Incomplete(String),
    UnknownKey,
    ExpiredToken,
    Mismatch,
    Skewed(String),
    Scope(String),
}

/// A verified signature: who signed, and the user name for long-lived keys.
#[derive(Debug)]
pub(crate) struct Signed {
    pub(crate) principal: Principal,
    pub(crate) user: Option<String>,
}

fn compile(ring: &Keyring, region: &str, account: &str) -> Result<Credentials, String> {
    let mut by_key = std::collections::HashMap::new();
    for (key, user) in &ring.users {
        let policies = PolicySet::compile(&user.policies, region, account)
            .map_err(|e| format!("user {}: {e}", user.name))?;
        by_key.insert(
            key.clone(),
            Identity {
                name: user.name.clone(),
                arn: format!("arn:aws:iam::{account}:user/{}", user.name),
                secret: user.secret.clone(),
                policies: Arc::new(policies),
            },
        );
    }
    let mut roles = std::collections::HashMap::new();
    for (name, r) in &ring.roles {
        let policies = PolicySet::compile(&r.policies, region, account)
            .map_err(|e| format!("role {name}: {e}"))?;
        roles.insert(
            name.clone(),
            Role {
                policies: Arc::new(policies),
                trusted_users: r.trusted_users.clone(),
                service_accounts: r.service_accounts.clone(),
            },
        );
    }
    Ok(Credentials { by_key, roles })
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The credentials files: `file`, then every `*.toml` of `dir` by name.
fn credential_paths(file: Option<&std::path::Path>, dir: Option<&std::path::Path>) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = file.map(|f| f.to_owned()).into_iter().collect();
    if let Some(dir) = dir {
        let mut more: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| {
                        let name = e.file_name();
                        let name = name.to_string_lossy();
                        !name.starts_with('.') && name.ends_with(".toml")
                    })
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        more.sort();
        paths.extend(more);
    }
    paths
}

/// What a change check compares: each credentials file and its modification time.
fn stamps(paths: &[PathBuf]) -> Vec<(PathBuf, Option<SystemTime>)> {
    paths.iter().map(|p| (p.clone(), modified(p))).collect()
}

/// An authentication failure as Kinesis answers it: HTTP 400, JSON or CBOR `__type`.
fn auth_error(kind: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Wire {
        kind,
        message: Some(message.into()),
        capital: false,
        status: http::StatusCode::BAD_REQUEST,
    }
}

pub(crate) const BAD_SIGNATURE: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

impl SigV4 {
    /// Loads the credentials file and the session key (`<data_dir>/session.key` unless
    /// configured).
    pub fn open(
        config: &AuthConfig,
        region: &str,
        account: &str,
        data_dir: &std::path::Path,
        clock: crate::clock::Clock,
    ) -> Result<SigV4, String> {
        if config.credentials_file.is_none() && config.credentials_dir.is_none() {
            return Err("auth.credentials_file is not set".into());
        }
        let paths = credential_paths(
            config.credentials_file.as_deref(),
            config.credentials_dir.as_deref(),
        );
        let key_file = config
            .session_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("session.key"));
        let sealer = session::Sealer::from_file(&key_file)
            .map_err(|e| format!("session key {}: {e}", key_file.display()))?;
        let stamp = stamps(&paths);
        let ring = Keyring::load_all(&paths).map_err(|e| e.to_string())?;
        let creds = compile(&ring, region, account)?;
        Ok(SigV4 {
            file: config.credentials_file.clone(),
            dir: config.credentials_dir.clone(),
            region: region.to_owned(),
            account: account.to_owned(),
            skew: config.clock_skew.as_secs() as i64,
            current: RwLock::new(Arc::new(creds)),
            loaded: RwLock::new(stamp),
            sealer,
            clock,
        })
    }

    /// The credentials in force.
    pub(crate) fn credentials(&self) -> Arc<Credentials> {
        self.current.read().clone()
    }

    /// Users known now.
    pub fn user_count(&self) -> usize {
        self.current.read().by_key.len()
    }

    /// Re-reads the credentials file if it changed; a file that fails to load keeps the
    /// previous credentials in force (and says why, without any secret).
    pub fn reload_if_changed(&self) {
        let paths = credential_paths(self.file.as_deref(), self.dir.as_deref());
        let stamp = stamps(&paths);
        if stamp == *self.loaded.read() {
            return;
        }
        match Keyring::load_all(&paths)
            .map_err(|e| e.to_string())
            .and_then(|r| compile(&r, &self.region, &self.account))
        {
            Ok(c) => {
                let users = c.by_key.len();
                *self.current.write() = Arc::new(c);
                *self.loaded.write() = stamp;
                tracing::info!(users, files = paths.len(), "credentials reloaded");
            }
            Err(e) => {
                *self.loaded.write() = stamp;
                tracing::error!(error = %e, "credentials file not reloaded; the previous credentials stay in force");
            }
        }
    }

    /// Reloads on change every `every` until `stop` is cancelled.
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => self.reload_if_changed(),
                _ = stop.cancelled() => return,
            }
        }
    }
}

pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl SigV4 {
    /// Verifies a request signed for `service`: long-lived keys from the credentials file,
    /// or temporary credentials whose session token this broker sealed.
    pub(crate) fn verify_signed(
        &self,
        req: &RequestHead<'_>,
        body: &[u8],
        service: &str,
    ) -> Result<Signed, Failure> {
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
            .collect();
        let sreq = sigv4::Request {
            method: req.method,
            path: req.path,
            query: req.query,
            authority: req.authority,
            headers: &headers,
            body,
        };
        let amz_date = sreq.header("x-amz-date").map(str::to_owned).or_else(|| {
            // The `Date` header stands in when there is no X-Amz-Date.
            let d = httpdate::parse_http_date(sreq.header("date")?).ok()?;
            let secs = d.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs() as i64;
            Some(sigv4::format_amz_date(secs))
        });
        let parsed = match sreq.header("authorization") {
            Some(h) => sigv4::parse_header(h, amz_date.as_deref()).map(Some),
            None => sigv4::parse_query(req.query),
        };
        let auth = match parsed {
            Ok(Some(a)) => a,
            Ok(None) | Err(SigError::Missing) => return Err(Failure::Missing),
            Err(SigError::Incomplete(m)) => return Err(Failure::Incomplete(m)),
            Err(SigError::Mismatch) => return Err(Failure::Mismatch),
            Err(SigError::Skewed(m)) => return Err(Failure::Skewed(m)),
        };
        if auth.service != service {
            return Err(Failure::Scope(format!(
                "Credential should be scoped to correct service: '{service}'. "
            )));
        }
        if auth.region != self.region {
            return Err(Failure::Scope(format!(
                "Credential should be scoped to a valid region, not '{}'. ",
                auth.region
            )));
        }
        let creds = self.credentials();
        let now = now_secs();
        let token = sreq
            .header("x-amz-security-token")
            .map(str::to_owned)
            .or_else(|| sigv4::query_value(req.query, "X-Amz-Security-Token"));
        let (secret, signed) = if let Some(identity) = creds.by_key.get(&auth.access_key) {
            (
                identity.secret.clone(),
                Signed {
                    principal: Principal {
                        access_key: Some(auth.access_key.clone()),
                        arn: identity.arn.clone(),
                        policies: Some(identity.policies.clone()),
                    },
                    user: Some(identity.name.clone()),
                },
            )
        } else if auth.access_key.starts_with("ASIA") {
            let session = token
                .as_deref()
                .and_then(|t| self.sealer.open(t))
                .filter(|s| s.access_key == auth.access_key)
                .ok_or(Failure::UnknownKey)?;
            let role = creds.roles.get(&session.role).ok_or(Failure::UnknownKey)?;
            if session.expires <= self.clock.now_ms() / 1000 {
                return Err(Failure::ExpiredToken);
            }
            (
                session.secret.clone(),
                Signed {
                    principal: Principal {
                        access_key: Some(auth.access_key.clone()),
                        arn: format!(
                            "arn:aws:sts::{}:assumed-role/{}/{}",
                            self.account, session.role, session.session
                        ),
                        policies: Some(role.policies.clone()),
                    },
                    user: None,
                },
            )
        } else {
            return Err(Failure::UnknownKey);
        };
        sigv4::check_time(&auth, now, self.skew)
            .and_then(|()| sigv4::verify(&sreq, &auth, &secret))
            .map_err(|e| match e {
                SigError::Skewed(m) => Failure::Skewed(m),
                SigError::Incomplete(m) => Failure::Incomplete(m),
                _ => Failure::Mismatch,
            })?;
        Ok(signed)
    }
}

impl Authenticator for SigV4 {
    fn authenticate(&self, req: &RequestHead<'_>, body: &[u8]) -> Result<Principal, ApiError> {
        self.verify_signed(req, body, "kinesis")
            .map(|s| s.principal)
            .map_err(|f| match f {
                Failure::Missing => auth_error(
                    "MissingAuthenticationTokenException",
                    "Missing Authentication Token",
                ),
                Failure::Incomplete(m) => auth_error("IncompleteSignatureException", m),
                Failure::UnknownKey => auth_error(
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid.",
                ),
                Failure::ExpiredToken => auth_error(
                    "ExpiredTokenException",
                    "The security token included in the request is expired",
                ),
                Failure::Mismatch => auth_error("InvalidSignatureException", BAD_SIGNATURE),
                Failure::Skewed(m) | Failure::Scope(m) => {
                    auth_error("InvalidSignatureException", m)
                }
            })
    }
}

/// Whether `principal` may perform `operation` (`PutRecord`) on `resource` (an ARN), with
/// AWS's AccessDeniedException when it may not. `resource_policy` is the resource-based
/// policy of that stream or consumer, if it has one; it is evaluated together with the
/// principal's identity policies as IAM does within one account: an explicit Deny in
/// either wins, then an Allow in either grants, and otherwise the request is denied. A
/// resource policy naming a role also applies to that role's sessions.
pub fn authorize(
    principal: &Principal,
    operation: &str,
    resource: &str,
    resource_policy: Option<&PolicySet>,
) -> Result<(), ApiError> {
    let Some(policies) = &principal.policies else {
        return Ok(());
    };
    let action = format!("kinesis:{operation}");
    let identity = policies.evaluate(&principal.arn, &action, resource);
    let by_resource = resource_policy.map_or(Decision::ImplicitDeny, |rp| {
        let own = rp.evaluate(&principal.arn, &action, resource);
        match (own, role_of_session(&principal.arn)) {
            (Decision::ImplicitDeny, Some(role)) => rp.evaluate(&role, &action, resource),
            (d, _) => d,
        }
    });
    let why = match (identity, by_resource) {
        (Decision::ExplicitDeny, _) => {
            "with an explicit deny in an identity-based policy".to_owned()
        }
        (_, Decision::ExplicitDeny) => {
            "with an explicit deny in a resource-based policy".to_owned()
        }
        (Decision::Allow, _) | (_, Decision::Allow) => return Ok(()),
        _ => format!("because no identity-based policy allows the {action} action"),
    };
    Err(auth_error(
        "AccessDeniedException",
        format!(
            "User: {} is not authorized to perform: {action} on resource: {resource} {why}",
            principal.arn
        ),
    ))
}

/// The role ARN of an assumed-role session ARN
/// (`arn:aws:sts::<account>:assumed-role/<role>/<session>`).
fn role_of_session(arn: &str) -> Option<String> {
    let rest = arn.strip_prefix("arn:aws:sts::")?;
    let (account, rest) = rest.split_once(":assumed-role/")?;
    let (role, _session) = rest.split_once('/')?;
    Some(format!("arn:aws:iam::{account}:role/{role}"))
}
