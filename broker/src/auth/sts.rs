//! An STS-compatible endpoint on the API port: temporary credentials for roles.
//!
//! Requests are AWS Query (`POST /`, `application/x-www-form-urlencoded`, `Action=…&
//! Version=2011-06-15&…`) and answers are the XML AWS STS writes, so the standard SDK
//! credential chains work unchanged with `AWS_ENDPOINT_URL_STS` pointing here:
//!
//! - `AssumeRoleWithWebIdentity` (unsigned): a web identity token (a Kubernetes projected
//!   service-account token) for a role that trusts its subject (`service_accounts`);
//! - `AssumeRole` (SigV4, service `sts`): a user listed in the role's `trusted_users`;
//! - `GetCallerIdentity` (SigV4): who the caller is.
//!
//! The credentials are `ASIA…` keys with a session token that seals them (see
//! [`super::session`]); a session may do what its role's policies allow, until it expires.

use std::sync::Arc;

use http::StatusCode;

use super::oidc::{TokenError, Validator};
use super::{Failure, RequestHead, SigV4};

/// The STS endpoint.
#[derive(Debug)]
pub struct Sts {
    sigv4: Arc<SigV4>,
    web_identity: Option<Arc<Validator>>,
    default_secs: i64,
    max_secs: i64,
}

/// An STS answer: status and XML body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// `text/xml` body.
    pub body: String,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn error(status: StatusCode, code: &str, message: &str, rid: &str) -> Answer {
    let kind = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    Answer {
        status,
        body: format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{code}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{rid}</RequestId>\n</ErrorResponse>\n",
            escape(message)
        ),
    }
}

fn validation(path: &str, rid: &str) -> Answer {
    error(
        StatusCode::BAD_REQUEST,
        "ValidationError",
        &format!(
            "1 validation error detected: Value null at '{path}' failed to satisfy constraint: Member must not be null"
        ),
        rid,
    )
}

/// `[\w+=,.@-]{2,64}`.
fn valid_session_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

fn iso8601(secs: i64) -> String {
    let d = super::sigv4::format_amz_date(secs);
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &d[0..4],
        &d[4..6],
        &d[6..8],
        &d[9..11],
        &d[11..13],
        &d[13..15]
    )
}

/// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space here).
fn form(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

impl Sts {
    /// The endpoint over `sigv4`'s credentials.
    pub fn new(sigv4: Arc<SigV4>, config: &super::AuthConfig) -> Result<Sts, String> {
        let web_identity = match &config.web_identity {
            Some(c) => Some(Arc::new(Validator::open(c.clone())?)),
            None => None,
        };
        Ok(Sts {
            sigv4,
            web_identity,
            default_secs: config.session_duration.as_secs() as i64,
            max_secs: config.max_session_duration.as_secs() as i64,
        })
    }

    /// The web identity validator, if one is configured.
    pub fn web_identity(&self) -> Option<Arc<Validator>> {
        self.web_identity.clone()
    }

    /// Answers one STS request.
    pub fn handle(&self, head: &RequestHead<'_>, body: &[u8], rid: &str) -> Answer {
        let Some(params) = form(body) else {
            return error(
                StatusCode::BAD_REQUEST,
                "MalformedQueryString",
                "The request body is not a valid form.",
                rid,
            );
        };
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let action = get("Action").unwrap_or_default();
        if get("Version") != Some("2011-06-15") {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidAction",
                &format!(
                    "Could not find operation {action} for version {}",
                    get("Version").unwrap_or("NO_VERSION_SPECIFIED")
                ),
                rid,
            );
        }
        match action {
            "AssumeRoleWithWebIdentity" => self.assume_role_with_web_identity(&get, rid),
            "AssumeRole" | "GetCallerIdentity" => {
                let signed = match self.sigv4.verify_signed(head, body, "sts") {
                    Ok(s) => s,
                    Err(f) => return signature_error(f, rid),
                };
                if action == "AssumeRole" {
                    self.assume_role(&signed, &get, rid)
                } else {
                    self.caller_identity(&signed, rid)
                }
            }
            other => error(
                StatusCode::BAD_REQUEST,
                "InvalidAction",
                &format!("Could not find operation {other} for version 2011-06-15"),
                rid,
            ),
        }
    }

    fn duration(&self, requested: Option<&str>, rid: &str) -> Result<i64, Answer> {
        let secs = match requested {
            None => self.default_secs.min(self.max_secs),
            Some(d) => d.parse::<i64>().map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    "ValidationError",
                    &format!("Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must be a number"),
                    rid,
                )
            })?,
        };
        if secs < 900 {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                &format!("1 validation error detected: Value '{secs}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900"),
                rid,
            ));
        }
        if secs > self.max_secs {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
                rid,
            ));
        }
        Ok(secs)
    }

    /// The role named by a RoleArn of this account.
    fn role_name<'a>(&self, arn: &'a str) -> Option<&'a str> {
        arn.strip_prefix(&format!("arn:aws:iam::{}:role/", self.sigv4.account))
    }

    fn session_name<'a>(
        &self,
        get: &impl Fn(&str) -> Option<&'a str>,
        rid: &str,
    ) -> Result<&'a str, Answer> {
        let name = get("RoleSessionName").ok_or_else(|| validation("roleSessionName", rid))?;
        if !valid_session_name(name) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                &format!("1 validation error detected: Value '{name}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"),
                rid,
            ));
        }
        Ok(name)
    }

    fn assume_role_with_web_identity<'a>(
        &self,
        get: &impl Fn(&str) -> Option<&'a str>,
        rid: &str,
    ) -> Answer {
        let (Some(role_arn), Some(token)) = (get("RoleArn"), get("WebIdentityToken")) else {
            let missing = if get("RoleArn").is_none() {
                "roleArn"
            } else {
                "webIdentityToken"
            };
            return validation(missing, rid);
        };
        let session = match self.session_name(get, rid) {
            Ok(s) => s,
            Err(a) => return a,
        };
        let secs = match self.duration(get("DurationSeconds"), rid) {
            Ok(s) => s,
            Err(a) => return a,
        };
        let Some(validator) = &self.web_identity else {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidIdentityToken",
                "No OpenIDConnect provider is configured on this broker (auth.web_identity).",
                rid,
            );
        };
        let identity = match validator.validate(token) {
            Ok(i) => i,
            Err(TokenError::Expired) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "ExpiredTokenException",
                    "Token expired: the web identity token's expiration time has passed",
                    rid,
                )
            }
            Err(TokenError::Invalid(why)) => {
                tracing::debug!(why, "web identity token refused");
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidIdentityToken",
                    "The web identity token that was passed could not be validated. Get a new identity token from the identity provider and then retry the request.",
                    rid,
                );
            }
        };
        let creds = self.sigv4.credentials();
        let trusted = self.role_name(role_arn).and_then(|name| {
            let role = creds.roles.get(name)?;
            let account = identity
                .subject
                .strip_prefix("system:serviceaccount:")
                .map(|s| s.replacen(':', "/", 1));
            let ok = role
                .service_accounts
                .iter()
                .any(|sa| Some(sa.as_str()) == account.as_deref() || *sa == identity.subject);
            ok.then_some(name)
        });
        let Some(role) = trusted else {
            return error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Not authorized to perform sts:AssumeRoleWithWebIdentity",
                rid,
            );
        };
        let body = self.credentials_xml(role, session, secs);
        tracing::info!(role, subject = %identity.subject, "web identity exchanged");
        Answer {
            status: StatusCode::OK,
            body: format!(
                "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <AssumeRoleWithWebIdentityResult>\n    <SubjectFromWebIdentityToken>{}</SubjectFromWebIdentityToken>\n    <Audience>{}</Audience>\n{body}    <Provider>{}</Provider>\n  </AssumeRoleWithWebIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{rid}</RequestId>\n  </ResponseMetadata>\n</AssumeRoleWithWebIdentityResponse>\n",
                escape(&identity.subject),
                escape(&identity.audience),
                escape(&validator_issuer(validator)),
            ),
        }
    }

    fn assume_role<'a>(
        &self,
        signed: &super::Signed,
        get: &impl Fn(&str) -> Option<&'a str>,
        rid: &str,
    ) -> Answer {
        let Some(role_arn) = get("RoleArn") else {
            return validation("roleArn", rid);
        };
        let session = match self.session_name(get, rid) {
            Ok(s) => s,
            Err(a) => return a,
        };
        let secs = match self.duration(get("DurationSeconds"), rid) {
            Ok(s) => s,
            Err(a) => return a,
        };
        let creds = self.sigv4.credentials();
        let trusted = self.role_name(role_arn).filter(|name| {
            creds.roles.get(*name).is_some_and(|r| {
                signed
                    .user
                    .as_ref()
                    .is_some_and(|u| r.trusted_users.contains(u))
            })
        });
        let Some(role) = trusted else {
            return error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                &format!(
                    "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                    signed.principal.arn
                ),
                rid,
            );
        };
        let body = self.credentials_xml(role, session, secs);
        Answer {
            status: StatusCode::OK,
            body: format!(
                "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <AssumeRoleResult>\n{body}  </AssumeRoleResult>\n  <ResponseMetadata>\n    <RequestId>{rid}</RequestId>\n  </ResponseMetadata>\n</AssumeRoleResponse>\n"
            ),
        }
    }

    fn caller_identity(&self, signed: &super::Signed, rid: &str) -> Answer {
        let p = &signed.principal;
        Answer {
            status: StatusCode::OK,
            body: format!(
                "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <GetCallerIdentityResult>\n    <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{rid}</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n",
                escape(&p.arn),
                escape(p.access_key.as_deref().unwrap_or_default()),
                self.sigv4.account
            ),
        }
    }

    /// Issues a session of `role` and writes its `AssumedRoleUser` and `Credentials`.
    fn credentials_xml(&self, role: &str, session: &str, secs: i64) -> String {
        let expires = self.sigv4.clock.now_ms() / 1000 + secs;
        let (s, token) = self.sigv4.sealer.issue(role, session, expires);
        let account = &self.sigv4.account;
        format!(
            "    <AssumedRoleUser>\n      <Arn>arn:aws:sts::{account}:assumed-role/{role}/{}</Arn>\n      <AssumedRoleId>AROA{}:{}</AssumedRoleId>\n    </AssumedRoleUser>\n    <Credentials>\n      <AccessKeyId>{}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\n      <SessionToken>{token}</SessionToken>\n      <Expiration>{}</Expiration>\n    </Credentials>\n",
            escape(session),
            &s.access_key[4..],
            escape(session),
            s.access_key,
            s.secret,
            iso8601(expires),
        )
    }
}

fn validator_issuer(v: &Validator) -> String {
    v.issuer().to_owned()
}

/// A signature failure in STS's words (awsQuery codes and statuses).
fn signature_error(f: Failure, rid: &str) -> Answer {
    match f {
        Failure::Missing => error(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
            rid,
        ),
        Failure::Incomplete(m) => error(StatusCode::BAD_REQUEST, "IncompleteSignature", &m, rid),
        Failure::UnknownKey => error(
            StatusCode::FORBIDDEN,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
            rid,
        ),
        Failure::ExpiredToken => error(
            StatusCode::BAD_REQUEST,
            "ExpiredToken",
            "The security token included in the request is expired",
            rid,
        ),
        Failure::Mismatch => error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            super::BAD_SIGNATURE,
            rid,
        ),
        Failure::Skewed(m) | Failure::Scope(m) => {
            error(StatusCode::FORBIDDEN, "SignatureDoesNotMatch", &m, rid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_names() {
        assert_eq!(
            form(b"Action=AssumeRole&RoleSessionName=a+b%2Fc").unwrap(),
            vec![
                ("Action".to_string(), "AssumeRole".to_string()),
                ("RoleSessionName".to_string(), "a b/c".to_string())
            ]
        );
        assert!(valid_session_name("pod-1@ns"));
        assert!(!valid_session_name("x"));
        assert!(!valid_session_name("has space"));
        assert_eq!(iso8601(1_440_938_160), "2015-08-30T12:36:00Z");
        assert_eq!(escape("<a&'b'>"), "&lt;a&amp;&apos;b&apos;&gt;");
    }
}
