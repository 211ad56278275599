//! Temporary credentials through the broker's STS endpoint: a web identity token exchanged
//! with AssumeRoleWithWebIdentity (unsigned, as every SDK sends it), scoped Kinesis calls
//! with the session credentials, expiry on the broker's clock, and the refusals.

use std::time::Duration;

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use riffle_tests::oidc::{Issuer, AUDIENCE, ISSUER};
use riffle_tests::{client_with_keys, TEST_ACCESS_KEY, TEST_SECRET_KEY};

use crate::common::*;

const ROLE_ARN: &str = "arn:aws:iam::000000000000:role/checkout-producer";

/// A broker with the harness key as administrator, a role for the `team/checkout` service
/// account, and the test issuer's keys.
async fn sts_broker(issuer: &Issuer) -> (TestBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, &issuer.jwks).unwrap();
    let config = format!(
        "{}\n[auth.web_identity]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\njwks_file = {:?}\n",
        config("status_delay = \"50ms\"", "fsync = \"never\"", LIMITS_OFF),
        jwks.display().to_string()
    );
    let broker = TestBroker::builder()
        .config_toml(config)
        .test_clock(true)
        .credentials(format!(
            r#"
[[users]]
name = "harness"
access_key_id = "{TEST_ACCESS_KEY}"
secret_access_key = "{TEST_SECRET_KEY}"
policies = ["administrator"]

[[roles]]
name = "checkout-producer"
policies = [{{ template = "producer", streams = ["orders*"] }}]
service_accounts = ["team/checkout"]
trusted_users = ["harness"]
"#
        ))
        .start()
        .await;
    (broker, dir)
}

pub(crate) use riffle_tests::sts::xml_value;

/// POSTs an unsigned AssumeRoleWithWebIdentity; status and body.
pub(crate) async fn exchange(
    broker: &TestBroker,
    token: &str,
    role: &str,
    extra: &str,
) -> (u16, String) {
    riffle_tests::sts::assume_role_with_web_identity(broker.api_addr(), token, role, extra).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_identity_becomes_scoped_temporary_credentials() {
    let issuer = Issuer::new("k1");
    let (broker, _jwks) = sts_broker(&issuer).await;
    broker.create_stream("orders", 1).await;
    broker.create_stream("payroll", 1).await;
    let token = issuer.token("team", "checkout", AUDIENCE, 600);
    let (status, xml) = exchange(&broker, &token, ROLE_ARN, "").await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(
        xml_value(&xml, "SubjectFromWebIdentityToken").as_deref(),
        Some("system:serviceaccount:team:checkout")
    );
    assert_eq!(
        xml_value(&xml, "Arn").as_deref(),
        Some("arn:aws:sts::000000000000:assumed-role/checkout-producer/pod-1")
    );
    let key = xml_value(&xml, "AccessKeyId").unwrap();
    let secret = xml_value(&xml, "SecretAccessKey").unwrap();
    let session = xml_value(&xml, "SessionToken").unwrap();
    assert!(key.starts_with("ASIA") && key.len() == 20, "{key}");
    assert!(xml_value(&xml, "Expiration").unwrap().ends_with('Z'));

    let client = client_with_keys(&broker.endpoint(), &key, &secret, Some(&session));
    client
        .put_record()
        .stream_name("orders")
        .partition_key("k")
        .data(blob("from a pod"))
        .send()
        .await
        .expect("the role may write to orders");
    let err = client
        .put_record()
        .stream_name("payroll")
        .partition_key("k")
        .data(blob("x"))
        .send()
        .await
        .expect_err("but not to payroll");
    assert_eq!(err.code(), Some("AccessDeniedException"));
    assert!(err
        .message()
        .unwrap()
        .starts_with("User: arn:aws:sts::000000000000:assumed-role/checkout-producer/pod-1 is not authorized to perform: kinesis:PutRecord"));
    let err = client
        .delete_stream()
        .stream_name("orders")
        .send()
        .await
        .expect_err("nor delete");
    assert_eq!(err.code(), Some("AccessDeniedException"));

    // A tampered session token is not one this broker issued.
    let mut forged = session.clone().into_bytes();
    let mid = forged.len() / 2;
    forged[mid] = if forged[mid] == b'A' { b'B' } else { b'A' };
    let err = client_with_keys(
        &broker.endpoint(),
        &key,
        &secret,
        Some(std::str::from_utf8(&forged).unwrap()),
    )
    .list_streams()
    .send()
    .await
    .expect_err("forged token");
    assert_eq!(err.code(), Some("UnrecognizedClientException"));

    // The credentials expire when they should: an hour by default, on the broker's clock.
    broker.advance_clock(Duration::from_secs(3601)).await;
    let err = client.list_streams().send().await.expect_err("expired");
    assert_eq!(err.code(), Some("ExpiredTokenException"));
    assert_eq!(
        err.message(),
        Some("The security token included in the request is expired")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_that_do_not_verify_or_are_not_trusted_are_refused() {
    let issuer = Issuer::new("k1");
    let (broker, _jwks) = sts_broker(&issuer).await;
    let code = |xml: &str| xml_value(xml, "Code").unwrap_or_default();
    // Signed by another key.
    let stranger = Issuer::new("k1");
    let (status, xml) = exchange(
        &broker,
        &stranger.token("team", "checkout", AUDIENCE, 600),
        ROLE_ARN,
        "",
    )
    .await;
    assert_eq!(
        (status, code(&xml).as_str()),
        (400, "InvalidIdentityToken"),
        "{xml}"
    );
    // For another audience.
    let (_, xml) = exchange(
        &broker,
        &issuer.token("team", "checkout", "sts.amazonaws.com", 600),
        ROLE_ARN,
        "",
    )
    .await;
    assert_eq!(code(&xml), "InvalidIdentityToken");
    // Expired.
    let (_, xml) = exchange(
        &broker,
        &issuer.token("team", "checkout", AUDIENCE, -120),
        ROLE_ARN,
        "",
    )
    .await;
    assert_eq!(code(&xml), "ExpiredTokenException");
    // A service account the role does not trust, and a role that does not exist.
    let (status, xml) = exchange(
        &broker,
        &issuer.token("team", "intruder", AUDIENCE, 600),
        ROLE_ARN,
        "",
    )
    .await;
    assert_eq!((status, code(&xml).as_str()), (403, "AccessDenied"));
    let (_, xml) = exchange(
        &broker,
        &issuer.token("team", "checkout", AUDIENCE, 600),
        "arn:aws:iam::000000000000:role/nope",
        "",
    )
    .await;
    assert_eq!(code(&xml), "AccessDenied");
    // A duration beyond the maximum.
    let (_, xml) = exchange(
        &broker,
        &issuer.token("team", "checkout", AUDIENCE, 600),
        ROLE_ARN,
        "&DurationSeconds=86400",
    )
    .await;
    assert_eq!(code(&xml), "ValidationError");
    // Not a JWT at all.
    let (_, xml) = exchange(&broker, "not-a-jwt", ROLE_ARN, "").await;
    assert_eq!(code(&xml), "InvalidIdentityToken");
}
