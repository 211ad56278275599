//! SigV4 authorization as an attacker sends it: the `Authorization` header, the query
//! string and the `X-Amz-Date` go to the parsers, and whatever parses is verified against a
//! request. Nothing may panic, and a verification can only succeed with the right secret.
#![no_main]

use libfuzzer_sys::fuzz_target;
use riffle_broker::auth::sigv4::{self, Request};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let header = parts.next().unwrap_or_default();
    let date = parts.next();
    let query = parts.next().unwrap_or_default();
    let _ = sigv4::amz_date_seconds(date.unwrap_or_default());
    let headers = [("host", "h"), ("x-amz-date", date.unwrap_or_default())];
    let req = Request {
        method: "POST",
        path: "/",
        query,
        authority: Some("h"),
        headers: &headers,
        body: data,
    };
    for parsed in [sigv4::parse_header(header, date), sigv4::parse_query(query).and_then(|q| q.ok_or(sigv4::SigError::Missing))] {
        if let Ok(auth) = parsed {
            let _ = sigv4::check_time(&auth, 1_700_000_000, 300);
            let _ = sigv4::canonical_request(&req, &auth, "e3b0");
            // A forged signature never verifies (mutation cannot find an HMAC-SHA256).
            assert!(sigv4::verify(&req, &auth, "secret").is_err());
        }
    }
});
