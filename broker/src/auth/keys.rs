//! The credentials file: users, their access keys and what they may do.
//!
//! ```toml
//! [[users]]
//! name = "admin"                                   # arn:aws:iam::<account>:user/admin
//! access_key_id = "AKIARIFFLEADMIN000001"
//! secret_access_key = "…"                          # or secret_access_key_file = "/run/secrets/admin"
//! policies = ["administrator"]                     # built-in templates, see policy.rs
//! ```
//!
//! SigV4 signs with the secret itself, so the broker must know it: the file is read at
//! start and re-read when it changes (`auth.reload_interval`), secrets stay in memory only,
//! and no secret is ever logged, counted in a metric or echoed in an error. Keep the file
//! `0600` (or give each secret its own file from a Kubernetes Secret).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::policy::PolicyRef;

/// One user of the credentials file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// The user's name (its ARN is `arn:aws:iam::<account>:user/<name>`).
    pub name: String,
    /// The access key id clients sign with.
    pub access_key_id: String,
    /// The secret access key.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// A file holding the secret access key (its whitespace trimmed).
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// What the user may do.
    #[serde(default)]
    pub policies: Vec<PolicyRef>,
}

/// The file's shape.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsFile {
    /// Users with long-lived keys.
    #[serde(default)]
    pub users: Vec<UserEntry>,
    /// Roles that temporary credentials are issued for.
    #[serde(default)]
    pub roles: Vec<super::RoleEntry>,
}

/// A user as the verifier needs it.
#[derive(Clone)]
pub struct User {
    /// The user's name.
    pub name: String,
    /// Its secret access key.
    pub secret: String,
    /// What it may do.
    pub policies: Vec<PolicyRef>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Every known access key, from one reading of the file.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    /// Users by access key id.
    pub users: HashMap<String, User>,
    /// Roles by name.
    pub roles: HashMap<String, super::RoleEntry>,
}

/// Why the credentials file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// It could not be read.
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not valid.
    #[error("invalid credentials file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why (never containing a secret).
        reason: String,
    },
}

impl Keyring {
    /// Reads and checks several credentials files and merges them: a key id or role name
    /// declared in two of them is an error.
    pub fn load_all(paths: &[PathBuf]) -> Result<Keyring, KeysError> {
        let mut all = Keyring::default();
        for path in paths {
            let one = Keyring::load(path)?;
            let invalid = |reason: String| KeysError::Invalid {
                path: path.clone(),
                reason,
            };
            for (id, user) in one.users {
                let name = user.name.clone();
                if all.users.insert(id, user).is_some() {
                    return Err(invalid(format!(
                        "access key id of user {name} is also in another credentials file"
                    )));
                }
            }
            for (name, role) in one.roles {
                if all.roles.insert(name.clone(), role).is_some() {
                    return Err(invalid(format!(
                        "role {name} is also declared in another credentials file"
                    )));
                }
            }
        }
        Ok(all)
    }

    /// Reads and checks the credentials file.
    pub fn load(path: &Path) -> Result<Keyring, KeysError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |reason: String| KeysError::Invalid {
            path: path.to_owned(),
            reason,
        };
        // toml's message quotes the offending line, which may hold a secret: keep only
        // where it is.
        let file: CredentialsFile = toml::from_str(&text).map_err(|e| {
            invalid(match e.span() {
                Some(span) => {
                    let line = text[..span.start].matches('\n').count() + 1;
                    format!("not valid at line {line}")
                }
                None => "not valid TOML for the credentials schema".into(),
            })
        })?;
        let mut users = HashMap::new();
        for u in file.users {
            let secret = match (&u.secret_access_key, &u.secret_access_key_file) {
                (Some(s), None) => s.clone(),
                (None, Some(f)) => std::fs::read_to_string(f)
                    .map_err(|e| {
                        invalid(format!("user {}: cannot read {}: {e}", u.name, f.display()))
                    })?
                    .trim()
                    .to_owned(),
                _ => {
                    return Err(invalid(format!(
                        "user {} needs exactly one of secret_access_key and secret_access_key_file",
                        u.name
                    )))
                }
            };
            if !(1..=128).contains(&u.access_key_id.len())
                || !u.access_key_id.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(invalid(format!(
                    "user {}: access_key_id must be 1 to 128 letters and digits",
                    u.name
                )));
            }
            if u.access_key_id.starts_with("ASIA") {
                return Err(invalid(format!(
                    "user {}: access key ids starting with ASIA are reserved for temporary credentials",
                    u.name
                )));
            }
            if secret.is_empty() {
                return Err(invalid(format!("user {}: empty secret", u.name)));
            }
            for p in &u.policies {
                p.check()
                    .map_err(|e| invalid(format!("user {}: {e}", u.name)))?;
            }
            let dup = users.insert(
                u.access_key_id.clone(),
                User {
                    name: u.name.clone(),
                    secret,
                    policies: u.policies,
                },
            );
            if dup.is_some() {
                return Err(invalid(format!(
                    "access key id of user {} is used twice",
                    u.name
                )));
            }
        }
        let mut roles = HashMap::new();
        for r in file.roles {
            for p in &r.policies {
                p.check()
                    .map_err(|e| invalid(format!("role {}: {e}", r.name)))?;
            }
            if roles.insert(r.name.clone(), r.clone()).is_some() {
                return Err(invalid(format!("role {} is declared twice", r.name)));
            }
        }
        Ok(Keyring { users, roles })
    }
}
