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

[[roles]]
name = "reader"
policies = [{ template = "consumer", streams = ["orders"] }]
service_accounts = ["team/reader"]
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
    // riffle-kpl under the session: `produce` puts through the web-identity chain.
    let input = dir.path().join("lines.txt");
    std::fs::write(&input, "alpha\nbeta\ngamma\n").unwrap();
    let input = input.display().to_string();
    let r = riffle_env(&ep, &["produce", "orders", &input, "--key", "{line}"], &pod).await;
    r.ok();
    let r = riffle_env(&ep, &["produce", "payroll", &input], &pod).await;
    assert_ne!(r.code, 0, "the producer role may not write payroll: {r:?}");
    // riffle-kcl under another pod's session: a consumer group with its leases in SQLite.
    let reader_token = dir.path().join("reader-token");
    std::fs::write(&reader_token, issuer.token("team", "reader", AUDIENCE, 600)).unwrap();
    let reader_token = reader_token.display().to_string();
    let leases = format!("sqlite:{}", dir.path().join("leases.db").display());
    let reader = [
        ("AWS_ROLE_ARN", "arn:aws:iam::000000000000:role/reader"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", reader_token.as_str()),
        ("AWS_ROLE_SESSION_NAME", "reader-1"),
        ("AWS_ENDPOINT_URL_STS", ep.as_str()),
        ("AWS_REGION", "us-east-1"),
    ];
    let r = riffle_env(
        &ep,
        &[
            "consume",
            "orders",
            "--group",
            "readers",
            "--lease-store",
            &leases,
            "--count",
            "3",
        ],
        &reader,
    )
    .await;
    let mut got: Vec<&str> = r.ok().lines().collect();
    got.sort();
    assert_eq!(got, ["alpha", "beta", "gamma"], "{r:?}");
    // A token for a service account the role does not trust: the exchange's refusal shows.
    std::fs::write(&token, issuer.token("team", "intruder", AUDIENCE, 600)).unwrap();
    let r = riffle_env(&ep, &["stream", "describe", "orders"], &pod).await;
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
}

/// A new user's machine: no AWS configuration at all, and an instance metadata service
/// that answers 403 (as some networks do), against a local broker with authentication off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_broker_needs_no_credentials_even_where_imds_answers_403() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let broker = TestBroker::start().await;
    let imds = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let imds_addr = imds.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = imds.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(
                    b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
        }
    });
    let mut cmd = tokio::process::Command::new(riffle_tests::cli_binary());
    cmd.args([
        "--endpoint",
        &broker.endpoint(),
        "stream",
        "create",
        "fresh",
    ]);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let home = tempfile::tempdir().unwrap();
    cmd.env("HOME", home.path())
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://{imds_addr}"),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("riffle finished")
        .unwrap();
    server.abort();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    broker.wait_active("fresh").await;
}
