use super::*;

const KEY: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn get_vanilla() -> (Vec<(&'static str, &'static str)>, &'static str) {
    (
        vec![("host", "example.amazonaws.com"), ("x-amz-date", "20150830T123600Z")],
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    )
}

/// The `get-vanilla` case of AWS's SigV4 test suite.
#[test]
fn aws_test_suite_get_vanilla() {
    let (headers, authz) = get_vanilla();
    let req = Request {
        method: "GET",
        path: "/",
        query: "",
        authority: Some("example.amazonaws.com"),
        headers: &headers,
        body: b"",
    };
    let auth = parse_header(authz, req.header("x-amz-date")).unwrap();
    assert_eq!(auth.access_key, KEY);
    assert_eq!(auth.region, "us-east-1");
    assert_eq!(auth.signed_headers, vec!["host", "x-amz-date"]);
    verify(&req, &auth, SECRET).unwrap();
    assert_eq!(
        sign(
            &req,
            KEY,
            SECRET,
            "20150830T123600Z",
            "us-east-1",
            "service",
            &["host", "x-amz-date"]
        ),
        authz
    );
    // Any change is a mismatch.
    assert_eq!(verify(&req, &auth, "wrong"), Err(SigError::Mismatch));
    let tampered = Request { body: b"x", ..req };
    assert_eq!(verify(&tampered, &auth, SECRET), Err(SigError::Mismatch));
    let other_header = [
        ("host", "example.amazonaws.com"),
        ("x-amz-date", "20150830T123601Z"),
    ];
    let moved = Request {
        headers: &other_header,
        ..req
    };
    assert_eq!(verify(&moved, &auth, SECRET), Err(SigError::Mismatch));
}

/// HTTP/2 requests carry no `host` header; a signed `host` or `:authority` is the authority.
#[test]
fn authority_stands_for_host_and_colon_authority() {
    let headers = [("x-amz-date", "20150830T123600Z")];
    let req = Request {
        method: "GET",
        path: "/",
        query: "",
        authority: Some("example.amazonaws.com"),
        headers: &headers,
        body: b"",
    };
    let (_, authz) = get_vanilla();
    let auth = parse_header(authz, req.header("x-amz-date")).unwrap();
    verify(&req, &auth, SECRET).unwrap();
    let signed = sign(
        &req,
        KEY,
        SECRET,
        "20150830T123600Z",
        "us-east-1",
        "kinesis",
        &[":authority", "x-amz-date"],
    );
    let auth = parse_header(&signed, req.header("x-amz-date")).unwrap();
    assert_eq!(auth.signed_headers[0], ":authority");
    verify(&req, &auth, SECRET).unwrap();
}

#[test]
fn payload_hash_header_must_match_the_body() {
    let body = b"{\"StreamName\":\"s\"}";
    let good = hex(&Sha256::digest(body));
    let headers = [
        ("x-amz-date", "20150830T123600Z"),
        ("x-amz-content-sha256", good.as_str()),
    ];
    let req = Request {
        method: "POST",
        path: "/",
        query: "",
        authority: Some("h"),
        headers: &headers,
        body,
    };
    let signed = sign(
        &req,
        KEY,
        SECRET,
        "20150830T123600Z",
        "us-east-1",
        "kinesis",
        &["host", "x-amz-content-sha256", "x-amz-date"],
    );
    let auth = parse_header(&signed, req.header("x-amz-date")).unwrap();
    verify(&req, &auth, SECRET).unwrap();
    let lying = [
        ("x-amz-date", "20150830T123600Z"),
        ("x-amz-content-sha256", "00"),
    ];
    let req = Request {
        headers: &lying,
        ..req
    };
    assert_eq!(verify(&req, &auth, SECRET), Err(SigError::Mismatch));
}

#[test]
fn missing_parts_are_named_as_aws_does() {
    match parse_header("AWS4-HMAC-SHA256 SignedHeaders=host", None) {
        Err(SigError::Incomplete(m)) => assert_eq!(
            m,
            "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=AWS4-HMAC-SHA256 SignedHeaders=host"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(parse_header("Basic abc", Some("20150830T123600Z")), Err(SigError::Incomplete(m)) if m.contains("'Basic'"))
    );
    assert!(matches!(
        parse_header("AWS4-HMAC-SHA256 Credential=AK/2015/us/kinesis/aws4_request, SignedHeaders=host, Signature=00", Some("20150830T123600Z")),
        Err(SigError::Incomplete(m)) if m.starts_with("Credential should be scoped")
    ));
}

#[test]
fn query_authentication_parses_and_verifies() {
    let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fkinesis%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host";
    let headers = [("host", "h")];
    let req = Request {
        method: "POST",
        path: "/",
        query: q,
        authority: Some("h"),
        headers: &headers,
        body: b"{}",
    };
    let placeholder = format!("{q}&X-Amz-Signature={}", "0".repeat(64));
    let mut auth = parse_query(&placeholder).unwrap().unwrap();
    // Sign it as a client would, then verify with the signature in the query.
    let canonical = canonical_request(&req, &auth, &hex(&Sha256::digest(req.body)));
    let key = signing_key(SECRET, "20150830", "us-east-1", "kinesis");
    let sig = hex(&hmac(&key, string_to_sign(&auth, &canonical).as_bytes()));
    let full = format!("{q}&X-Amz-Signature={sig}");
    auth = parse_query(&full).unwrap().unwrap();
    let req = Request {
        query: &full,
        ..req
    };
    verify(&req, &auth, SECRET).unwrap();
    assert_eq!(auth.expires, Some(300));
    let t = amz_date_seconds("20150830T123600Z").unwrap();
    assert!(check_time(&auth, t + 299, 300).is_ok());
    assert!(matches!(
        check_time(&auth, t + 301, 300),
        Err(SigError::Skewed(_))
    ));
    assert_eq!(parse_query("a=b").unwrap(), None);
}

#[test]
fn clock_skew_in_aws_words() {
    let (headers, authz) = get_vanilla();
    let auth = parse_header(
        authz,
        headers.iter().find(|h| h.0 == "x-amz-date").map(|h| h.1),
    )
    .unwrap();
    let t = amz_date_seconds("20150830T123600Z").unwrap();
    assert!(check_time(&auth, t + 299, 300).is_ok());
    assert_eq!(
        check_time(&auth, t + 600, 300),
        Err(SigError::Skewed(
            "Signature expired: 20150830T123600Z is now earlier than 20150830T124100Z (20150830T124600Z - 5 min.)".into()
        ))
    );
    assert_eq!(
        check_time(&auth, t - 600, 300),
        Err(SigError::Skewed(
            "Signature not yet current: 20150830T123600Z is still later than 20150830T123100Z (20150830T122600Z + 5 min.)".into()
        ))
    );
}

#[test]
fn dates_round_trip() {
    for s in [
        "19700101T000000Z",
        "20150830T123600Z",
        "20241231T235959Z",
        "20240229T120000Z",
    ] {
        assert_eq!(format_amz_date(amz_date_seconds(s).unwrap()), s);
    }
    assert_eq!(amz_date_seconds("20150830T123600Z"), Some(1_440_938_160));
    assert_eq!(amz_date_seconds("2015-08-30"), None);
}
