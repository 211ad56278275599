//! The CLI with authentication on: static keys from the environment, and a web identity
//! exchanged through the broker's STS endpoint by the standard AWS credential chain.

use riffle_tests::oidc::{Issuer, AUDIENCE, ISSUER};

use crate::common::*;

const CREDENTIALS: &str = r#"
[[users]]
name = "ops"
access_key_id = "AKIDOPS"
secret_access_key = "ops-secret"
policies = ["administrator"]

[[users]]
name = "writer"
access_key_id = "AKIDWRITER"
secret_access_key = "writer-secret"
policies = [{ template = "producer", streams = ["orders"] }]

[[roles]]
name = "checkout"
policies = [{ template = "producer", streams = ["orders"] }]
service_accounts = ["team/checkout"]
"#;

async fn broker(issuer: &Issuer, dir: &std::path::Path) -> TestBroker {
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, &issuer.jwks).unwrap();
    TestBroker::builder()
        .config_toml(format!(
            "{}\n[auth.web_identity]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\njwks_file = {:?}\n",
            riffle_tests::DEFAULT_CONFIG,
            jwks.display().to_string()
        ))
        .credentials(CREDENTIALS)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_keys_and_web_identity() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::new("k");
    let broker = broker(&issuer, dir.path()).await;
    let ep = broker.endpoint();
    let ops = [
        ("AWS_ACCESS_KEY_ID", "AKIDOPS"),
        ("AWS_SECRET_ACCESS_KEY", "ops-secret"),
    ];
    riffle_env(&ep, &["stream", "create", "orders"], &ops)
        .await
        .ok();
    riffle_env(&ep, &["stream", "create", "payroll"], &ops)
        .await
        .ok();
    // Without keys: placeholder credentials the broker does not know.
    let r = riffle(&ep, &["stream", "list"]).await;
    assert_one_line_error(&r, 1, "UnrecognizedClientException");
    // A producer key may describe its stream but not delete it.
    let writer = [
        ("AWS_ACCESS_KEY_ID", "AKIDWRITER"),
        ("AWS_SECRET_ACCESS_KEY", "writer-secret"),
    ];
    riffle_env(&ep, &["stream", "describe", "orders"], &writer)
        .await
        .ok();
    let r = riffle_env(&ep, &["stream", "delete", "orders"], &writer).await;
    assert_one_line_error(&r, 1, "AccessDeniedException");
    assert!(r.stderr.contains("user/writer"), "{}", r.stderr);
    // A pod's projected token through AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE.
    let token = dir.path().join("token");
    std::fs::write(&token, issuer.token("team", "checkout", AUDIENCE, 600)).unwrap();
    let token = token.display().to_string();
    let pod = [
        ("AWS_ROLE_ARN", "arn:aws:iam::000000000000:role/checkout"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.as_str()),
        ("AWS_ROLE_SESSION_NAME", "pod-7"),
        ("AWS_ENDPOINT_URL_STS", ep.as_str()),
        ("AWS_REGION", "us-east-1"),
    ];
    riffle_env(&ep, &["stream", "describe", "orders"], &pod)
        .await
        .ok();
    let r = riffle_env(&ep, &["stream", "delete", "orders"], &pod).await;
    assert_one_line_error(&r, 1, "AccessDeniedException");
    assert!(
        r.stderr.contains("assumed-role/checkout/pod-7"),
        "{}",
        r.stderr
    );
    let r = riffle_env(&ep, &["stream", "describe", "payroll"], &pod).await;
    assert_one_line_error(&r, 1, "AccessDeniedException");
    // A token for a service account the role does not trust: the exchange's refusal shows.
    std::fs::write(&token, issuer.token("team", "intruder", AUDIENCE, 600)).unwrap();
    let r = riffle_env(&ep, &["stream", "describe", "orders"], &pod).await;
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
}
