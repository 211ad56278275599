//! AWS Signature Version 4, verified server-side.
//!
//! Written here rather than borrowed from a client signer: a verifier must take the
//! client's `SignedHeaders` list verbatim, including the `:authority` pseudo-header that
//! the JavaScript SDK v3 signs over HTTP/2 (which `http::HeaderName` cannot hold), and a
//! `host` that HTTP/2 requests do not send as a header at all.
//!
//! ```text
//! canonical request = METHOD \n canonical URI \n canonical query \n
//!                     canonical headers (name:trimmed value \n, in SignedHeaders order) \n
//!                     SignedHeaders \n hex(SHA-256(body))
//! string to sign    = AWS4-HMAC-SHA256 \n X-Amz-Date \n date/region/service/aws4_request \n
//!                     hex(SHA-256(canonical request))
//! signing key       = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")
//! signature         = hex(HMAC(signing key, string to sign))
//! ```
//!
//! Both header authentication (`Authorization: AWS4-HMAC-SHA256 Credential=…,
//! SignedHeaders=…, Signature=…`) and query authentication (`X-Amz-Algorithm`,
//! `X-Amz-Credential`, … in the query string) are accepted. The parsers here see untrusted
//! bytes and have a fuzz target.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The only algorithm SigV4 defines.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a request's signature was not accepted (mapped to Kinesis errors in `auth.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigError {
    /// No Authorization header and no query authentication.
    Missing,
    /// The Authorization header (or query) lacks parts or is malformed; AWS's message.
    Incomplete(String),
    /// The signature does not match.
    Mismatch,
    /// The request time is outside the allowed skew: AWS's message.
    Skewed(String),
}

/// The parts of a SigV4 authorization, from the header or the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The access key id.
    pub access_key: String,
    /// `YYYYMMDD` of the credential scope.
    pub date: String,
    /// Region of the credential scope.
    pub region: String,
    /// Service of the credential scope (`kinesis`, `sts`).
    pub service: String,
    /// Lower-case signed header names, in the order given.
    pub signed_headers: Vec<String>,
    /// The signature, 32 bytes.
    pub signature: [u8; 32],
    /// `X-Amz-Date` (`YYYYMMDD'T'HHMMSS'Z'`).
    pub amz_date: String,
    /// Seconds a presigned request stays valid (query authentication only).
    pub expires: Option<u64>,
    /// Whether it came from the query string.
    pub from_query: bool,
}

/// What the verifier needs of a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method, e.g. `POST`.
    pub method: &'a str,
    /// The path as sent, e.g. `/`.
    pub path: &'a str,
    /// The raw query string (without `?`), possibly empty.
    pub query: &'a str,
    /// The request authority (`host:port`): the `Host` header, or HTTP/2's `:authority`.
    pub authority: Option<&'a str>,
    /// Header values by lower-case name, in arrival order (repeated names repeat).
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.header_values(name).next()
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibble(b[2 * i])? << 4) | nibble(b[2 * i + 1])?;
    }
    Some(out)
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// Whether two byte strings are equal, in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The SigV4 signing key for a secret and a credential scope.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// `Credential=AKID/date/region/service/aws4_request` into its parts.
fn parse_credential(c: &str) -> Option<(String, String, String, String)> {
    let mut parts = c.rsplitn(5, '/');
    let term = parts.next()?;
    let service = parts.next()?;
    let region = parts.next()?;
    let date = parts.next()?;
    let key = parts.next()?;
    (term == "aws4_request"
        && !key.is_empty()
        && date.len() == 8
        && date.bytes().all(|b| b.is_ascii_digit()))
    .then(|| (key.into(), date.into(), region.into(), service.into()))
}

fn valid_amz_date(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[9..15].iter().all(u8::is_ascii_digit)
}

/// Parses an `Authorization` header (with the request's `X-Amz-Date`), in AWS's error
/// words when parts are missing.
pub fn parse_header(value: &str, amz_date: Option<&str>) -> Result<Authorization, SigError> {
    let value = value.trim();
    let Some(rest) = value.strip_prefix(ALGORITHM) else {
        let alg = value.split_whitespace().next().unwrap_or_default();
        return Err(SigError::Incomplete(format!(
            "Unsupported AWS 'algorithm': '{alg}'"
        )));
    };
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some((k, v)) = part.split_once('=') {
            match k.trim() {
                "Credential" => credential = Some(v.trim()),
                "SignedHeaders" => signed = Some(v.trim()),
                "Signature" => signature = Some(v.trim()),
                _ => {}
            }
        }
    }
    let mut missing = Vec::new();
    if credential.is_none() {
        missing.push("Authorization header requires 'Credential' parameter.");
    }
    if signature.is_none() {
        missing.push("Authorization header requires 'Signature' parameter.");
    }
    if signed.is_none() {
        missing.push("Authorization header requires 'SignedHeaders' parameter.");
    }
    if amz_date.is_none() {
        missing.push(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        );
    }
    if !missing.is_empty() {
        return Err(SigError::Incomplete(format!(
            "{} Authorization={value}",
            missing.join(" ")
        )));
    }
    let credential = credential.expect("checked");
    let (access_key, date, region, service) = parse_credential(credential).ok_or_else(|| {
        SigError::Incomplete(format!(
            "Credential should be scoped to a valid region. Credential={credential}"
        ))
    })?;
    let signature = unhex32(signature.expect("checked")).ok_or(SigError::Mismatch)?;
    let amz_date = amz_date.expect("checked").to_owned();
    if !valid_amz_date(&amz_date) {
        return Err(SigError::Incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"
        )));
    }
    Ok(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers: signed
            .expect("checked")
            .split(';')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect(),
        signature,
        amz_date,
        expires: None,
        from_query: false,
    })
}

/// Percent-decodes a query component (`+` stays `+`, as SigV4 canonicalizes).
fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but SigV4's unreserved characters.
fn pct_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query's `(name, value)` pairs, decoded.
fn query_pairs(query: &str) -> Option<Vec<(String, String)>> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((pct_decode(k)?, pct_decode(v)?))
        })
        .collect()
}

/// One decoded query parameter.
pub fn query_value(query: &str, name: &str) -> Option<String> {
    query_pairs(query)?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Parses query authentication, if the query carries it.
pub fn parse_query(query: &str) -> Result<Option<Authorization>, SigError> {
    let Some(pairs) = query_pairs(query) else {
        return Ok(None);
    };
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some(alg) = get("X-Amz-Algorithm") else {
        return Ok(None);
    };
    if alg != ALGORITHM {
        return Err(SigError::Incomplete(format!(
            "Unsupported AWS 'algorithm': '{alg}'"
        )));
    }
    let mut missing = Vec::new();
    for k in [
        "X-Amz-Credential",
        "X-Amz-Signature",
        "X-Amz-SignedHeaders",
        "X-Amz-Date",
    ] {
        if get(k).is_none() {
            missing.push(format!("AWS query-string parameters must include '{k}'."));
        }
    }
    if !missing.is_empty() {
        return Err(SigError::Incomplete(format!(
            "{} Re-examine the query-string parameters.",
            missing.join(" ")
        )));
    }
    let credential = get("X-Amz-Credential").expect("checked");
    let (access_key, date, region, service) = parse_credential(credential).ok_or_else(|| {
        SigError::Incomplete(format!(
            "Credential should be scoped to a valid region. Credential={credential}"
        ))
    })?;
    let amz_date = get("X-Amz-Date").expect("checked").to_owned();
    if !valid_amz_date(&amz_date) {
        return Err(SigError::Incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"
        )));
    }
    let expires = match get("X-Amz-Expires") {
        Some(e) => Some(e.parse().map_err(|_| {
            SigError::Incomplete(format!("X-Amz-Expires must be a number; got '{e}'"))
        })?),
        None => None,
    };
    Ok(Some(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers: get("X-Amz-SignedHeaders")
            .expect("checked")
            .split(';')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect(),
        signature: unhex32(get("X-Amz-Signature").expect("checked")).ok_or(SigError::Mismatch)?,
        amz_date,
        expires,
        from_query: true,
    }))
}

/// The canonical URI: the path's segments normalized and encoded (each segment encoded
/// again, as SigV4 does for every service but S3).
fn canonical_uri(path: &str) -> String {
    let mut segs: Vec<String> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(pct_encode(
                &pct_decode(s).unwrap_or_else(|| s.to_owned()),
                false,
            )),
        }
    }
    let mut out = String::from("/");
    out.push_str(
        &segs
            .iter()
            .map(|s| pct_encode(s, false))
            .collect::<Vec<_>>()
            .join("/"),
    );
    if path.ends_with('/') && !segs.is_empty() {
        out.push('/');
    }
    out
}

/// The canonical query: pairs sorted, re-encoded; query authentication's signature left out.
fn canonical_query(query: &str) -> String {
    let mut pairs = query_pairs(query).unwrap_or_default();
    pairs.retain(|(k, _)| k != "X-Amz-Signature");
    let mut enc: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (pct_encode(k, false), pct_encode(v, false)))
        .collect();
    enc.sort();
    enc.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A header value as SigV4 canonicalizes it: trimmed, inner runs of spaces collapsed.
fn canonical_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical request for `auth`'s signed headers and the body's hash.
pub fn canonical_request(req: &Request<'_>, auth: &Authorization, payload_hash: &str) -> String {
    let mut headers = String::new();
    for name in &auth.signed_headers {
        let values: Vec<String> =
            if name == ":authority" || (name == "host" && req.header("host").is_none()) {
                req.authority.map(canonical_value).into_iter().collect()
            } else {
                req.header_values(name).map(canonical_value).collect()
            };
        headers.push_str(name);
        headers.push(':');
        headers.push_str(&values.join(","));
        headers.push('\n');
    }
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.path),
        canonical_query(req.query),
        headers,
        auth.signed_headers.join(";"),
        payload_hash
    )
}

/// The string to sign for a canonical request.
pub fn string_to_sign(auth: &Authorization, canonical: &str) -> String {
    format!(
        "{ALGORITHM}\n{}\n{}/{}/{}/aws4_request\n{}",
        auth.amz_date,
        auth.date,
        auth.region,
        auth.service,
        hex(&Sha256::digest(canonical.as_bytes()))
    )
}

/// Seconds since the epoch of an `X-Amz-Date`.
pub fn amz_date_seconds(d: &str) -> Option<i64> {
    if !valid_amz_date(d) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| d[r].parse::<i64>().ok();
    let (y, mo, da) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (h, mi, s) = (n(9..11)?, n(11..13)?, n(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

/// An `X-Amz-Date` for seconds since the epoch.
pub fn format_amz_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Checks the request time against `now` (seconds) with a `skew` window, in AWS's words.
pub fn check_time(auth: &Authorization, now: i64, skew: i64) -> Result<(), SigError> {
    let t = amz_date_seconds(&auth.amz_date).ok_or_else(|| {
        SigError::Incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{}'. See http://en.wikipedia.org/wiki/ISO_8601",
            auth.amz_date
        ))
    })?;
    if !auth.amz_date.starts_with(&auth.date) {
        return Err(SigError::Mismatch);
    }
    let minutes = skew / 60;
    if let Some(expires) = auth.expires {
        if now > t + expires as i64 {
            return Err(SigError::Skewed(format!(
                "Signature expired: {} is now earlier than {} ({} - {expires} sec.)",
                format_amz_date(t + expires as i64),
                format_amz_date(now),
                format_amz_date(now)
            )));
        }
    } else if t < now - skew {
        return Err(SigError::Skewed(format!(
            "Signature expired: {} is now earlier than {} ({} - {minutes} min.)",
            auth.amz_date,
            format_amz_date(now - skew),
            format_amz_date(now)
        )));
    }
    if t > now + skew {
        return Err(SigError::Skewed(format!(
            "Signature not yet current: {} is still later than {} ({} + {minutes} min.)",
            auth.amz_date,
            format_amz_date(now + skew),
            format_amz_date(now)
        )));
    }
    Ok(())
}

/// Verifies `auth` over `req` with the caller's `secret`. The body's hash is always computed;
/// an `x-amz-content-sha256` header must agree with it (or say `UNSIGNED-PAYLOAD` for query
/// authentication).
pub fn verify(req: &Request<'_>, auth: &Authorization, secret: &str) -> Result<(), SigError> {
    let body_hash = hex(&Sha256::digest(req.body));
    let payload_hash = match req.header("x-amz-content-sha256") {
        Some("UNSIGNED-PAYLOAD") if auth.from_query => "UNSIGNED-PAYLOAD".to_owned(),
        Some(h) if h.eq_ignore_ascii_case(&body_hash) => body_hash,
        Some(_) => return Err(SigError::Mismatch),
        None => body_hash,
    };
    let canonical = canonical_request(req, auth, &payload_hash);
    let key = signing_key(secret, &auth.date, &auth.region, &auth.service);
    let expected = hmac(&key, string_to_sign(auth, &canonical).as_bytes());
    if constant_time_eq(&expected, &auth.signature) {
        Ok(())
    } else {
        Err(SigError::Mismatch)
    }
}

/// Signs a request as a client would (for tests and the STS round trip): the
/// `Authorization` header value for `req` signed with these headers.
pub fn sign(
    req: &Request<'_>,
    access_key: &str,
    secret: &str,
    amz_date: &str,
    region: &str,
    service: &str,
    signed_headers: &[&str],
) -> String {
    let auth = Authorization {
        access_key: access_key.into(),
        date: amz_date[..8].into(),
        region: region.into(),
        service: service.into(),
        signed_headers: signed_headers.iter().map(|h| h.to_string()).collect(),
        signature: [0; 32],
        amz_date: amz_date.into(),
        expires: None,
        from_query: false,
    };
    let canonical = canonical_request(req, &auth, &hex(&Sha256::digest(req.body)));
    let key = signing_key(secret, &auth.date, region, service);
    let sig = hmac(&key, string_to_sign(&auth, &canonical).as_bytes());
    format!(
        "{ALGORITHM} Credential={access_key}/{}/{region}/{service}/aws4_request, SignedHeaders={}, Signature={}",
        &amz_date[..8],
        signed_headers.join(";"),
        hex(&sig)
    )
}

#[cfg(test)]
mod tests;
