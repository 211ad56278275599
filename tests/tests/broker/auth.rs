//! Authentication and authorization through the socket: SigV4 from the AWS SDK for Rust
//! (HTTP/1.1, and HTTP/2 over TLS where no `host` header is sent), hand-signed requests for
//! every failure Kinesis clients can meet, the four policy templates, and reloading the
//! credentials file.

use std::time::Duration;

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use riffle_tests::http::{self, Response};
use riffle_tests::{client_with_keys, TEST_ACCESS_KEY, TEST_SECRET_KEY};

use crate::common::*;

const JSON: &str = "application/x-amz-json-1.1";

/// Users for each of the four templates, the last three scoped to `orders*`, plus the
/// harness's own key as administrator.
fn credentials() -> String {
    format!(
        r#"
[[users]]
name = "harness"
access_key_id = "{TEST_ACCESS_KEY}"
secret_access_key = "{TEST_SECRET_KEY}"
policies = ["administrator"]

[[users]]
name = "resharder"
access_key_id = "AKIDRESHARDER"
secret_access_key = "reshard-secret"
policies = [{{ template = "resharding", streams = ["orders*"] }}]

[[users]]
name = "producer"
access_key_id = "AKIDPRODUCER"
secret_access_key = "producer-secret"
policies = [{{ template = "producer", streams = ["orders*"] }}]

[[users]]
name = "consumer"
access_key_id = "AKIDCONSUMER"
secret_access_key = "consumer-secret"
policies = [{{ template = "consumer", streams = ["orders*"] }}]

[[users]]
name = "denied"
access_key_id = "AKIDDENIED"
secret_access_key = "denied-secret"
policies = [{{ document = '{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"kinesis:*","Resource":"*"}},{{"Effect":"Deny","Action":"kinesis:Delete*","Resource":"*"}}]}}' }}]
"#
    )
}

async fn authed_broker() -> TestBroker {
    TestBroker::builder()
        .credentials(credentials())
        .start()
        .await
}

/// Sends a hand-made request with `headers` (Host and Content-Length are added).
async fn raw(broker: &TestBroker, headers: &[(&str, &str)], body: &[u8]) -> Response {
    http::request(broker.api_addr(), "POST", "/", headers, body)
        .await
        .expect("raw request")
}

/// A correctly signed ListStreams by the harness key, with its signing headers.
fn signed(broker: &TestBroker, body: &[u8]) -> (String, String) {
    sigv4::sign(
        &broker.api_addr().to_string(),
        JSON,
        "Kinesis_20131202.ListStreams",
        body,
    )
}

fn error_of(resp: &Response) -> (u16, String, String) {
    let v: serde_json::Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", resp.body_text()));
    (
        resp.status,
        v["__type"].as_str().unwrap_or_default().to_string(),
        v["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_requests_are_verified_and_bad_credentials_get_kinesis_errors() {
    let broker = authed_broker().await;
    let ep = broker.endpoint();
    broker.create_stream("orders", 1).await;
    // The harness client signs with a known key.
    broker
        .client()
        .list_streams()
        .send()
        .await
        .expect("a valid signature");
    // A wrong secret.
    let err = client_with_keys(&ep, TEST_ACCESS_KEY, "not-the-secret", None)
        .list_streams()
        .send()
        .await
        .expect_err("wrong secret");
    assert_eq!(err.code(), Some("InvalidSignatureException"), "{err:?}");
    assert!(err
        .message()
        .unwrap()
        .starts_with("The request signature we calculated does not match"));
    // An unknown access key.
    let err = client_with_keys(&ep, "AKIDNOBODY", "x", None)
        .list_streams()
        .send()
        .await
        .expect_err("unknown key");
    assert_eq!(err.code(), Some("UnrecognizedClientException"));
    assert_eq!(
        err.message(),
        Some("The security token included in the request is invalid.")
    );
    // No secret appears in what the broker answers.
    assert!(!format!("{err:?}").contains("riffle-test-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_without_a_host_header_verify() {
    let pki = crate::tls::test_pki("riffle auth test CA");
    let broker = TestBroker::builder()
        .credentials(credentials())
        .tls(pki.chain_pem.clone(), pki.key_pem.clone())
        .start()
        .await;
    let client = crate::tls::h2_client(&broker.tls_endpoint(), &pki.ca_pem);
    client
        .create_stream()
        .stream_name("orders")
        .shard_count(1)
        .send()
        .await
        .expect("a request over HTTP/2 (host signed, :authority sent) verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signature_failure_gets_its_kinesis_error() {
    let broker = authed_broker().await;
    let body = b"{}";
    let target = ("X-Amz-Target", "Kinesis_20131202.ListStreams");
    let ct = ("Content-Type", JSON);
    // No Authorization at all.
    let r = raw(&broker, &[ct, target], body).await;
    assert_eq!(
        error_of(&r),
        (
            400,
            "MissingAuthenticationTokenException".into(),
            "Missing Authentication Token".into()
        )
    );
    // A malformed Authorization names what is missing.
    let (date, _) = signed(&broker, body);
    let r = raw(
        &broker,
        &[
            ct,
            target,
            ("X-Amz-Date", &date),
            ("Authorization", "AWS4-HMAC-SHA256 SignedHeaders=host"),
        ],
        body,
    )
    .await;
    let (status, kind, msg) = error_of(&r);
    assert_eq!(
        (status, kind.as_str()),
        (400, "IncompleteSignatureException")
    );
    assert!(msg.contains("requires 'Credential' parameter"), "{msg}");
    assert!(msg.contains("requires 'Signature' parameter"), "{msg}");
    // A tampered body.
    let (date, auth) = signed(&broker, body);
    let r = raw(
        &broker,
        &[ct, target, ("X-Amz-Date", &date), ("Authorization", &auth)],
        br#"{"Limit":1}"#,
    )
    .await;
    assert_eq!(error_of(&r).1, "InvalidSignatureException");
    // The genuine request passes.
    let r = raw(
        &broker,
        &[ct, target, ("X-Amz-Date", &date), ("Authorization", &auth)],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    // A replay ten minutes later is outside the ±5 min window (the broker's clock moves).
    let stale_date = {
        // Ten minutes before now.
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 600;
        let t = aws_smithy_types::DateTime::from_secs(secs as i64)
            .fmt(aws_smithy_types::date_time::Format::DateTime)
            .unwrap();
        t.replace(['-', ':'], "")
    };
    let r = raw(
        &broker,
        &[
            ct,
            target,
            ("X-Amz-Date", &stale_date),
            ("Authorization", &auth.replace(&date[..8], &stale_date[..8])),
        ],
        body,
    )
    .await;
    let (_, kind, msg) = error_of(&r);
    assert_eq!(kind, "InvalidSignatureException");
    assert!(
        msg.starts_with("Signature expired: ") && msg.ends_with(" - 5 min.)"),
        "{msg}"
    );
    // A payload hash that does not match the body.
    let r = raw(
        &broker,
        &[
            ct,
            target,
            ("X-Amz-Date", &date),
            ("Authorization", &auth),
            (
                "X-Amz-Content-Sha256",
                "0000000000000000000000000000000000000000000000000000000000000000",
            ),
        ],
        body,
    )
    .await;
    assert_eq!(error_of(&r).1, "InvalidSignatureException");
    // A CBOR caller gets its error in CBOR.
    let r = raw(
        &broker,
        &[("Content-Type", "application/x-amz-cbor-1.1"), target],
        &[0xa0],
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("Content-Type"), Some("application/x-amz-cbor-1.1"));
    assert_eq!(
        r.header("x-amzn-ErrorType"),
        Some("MissingAuthenticationTokenException")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_templates_allow_exactly_their_actions() {
    let broker = authed_broker().await;
    let ep = broker.endpoint();
    broker.create_stream("orders", 1).await;
    broker.create_stream("other", 1).await;
    let admin = broker.client();
    let producer = client_with_keys(&ep, "AKIDPRODUCER", "producer-secret", None);
    let consumer = client_with_keys(&ep, "AKIDCONSUMER", "consumer-secret", None);
    let resharder = client_with_keys(&ep, "AKIDRESHARDER", "reshard-secret", None);
    let put = |c: &aws_sdk_kinesis::Client, stream: &str| {
        c.put_record()
            .stream_name(stream)
            .partition_key("k")
            .data(blob("x"))
            .send()
    };
    // Producer: writes and describes its streams only.
    put(&producer, "orders")
        .await
        .expect("producer puts to orders");
    producer
        .list_shards()
        .stream_name("orders")
        .send()
        .await
        .expect("producer lists shards");
    let err = put(&producer, "other").await.expect_err("not its stream");
    assert_eq!(err.code(), Some("AccessDeniedException"));
    assert_eq!(
        err.message().unwrap(),
        format!(
            "User: arn:aws:iam::000000000000:user/producer is not authorized to perform: kinesis:PutRecord on resource: {} because no identity-based policy allows the kinesis:PutRecord action",
            stream_arn("other")
        )
    );
    let err = producer
        .get_shard_iterator()
        .stream_name("orders")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect_err("a producer does not read");
    assert_eq!(err.code(), Some("AccessDeniedException"));
    // Consumer: reads (GetRecords is checked against the iterator's stream).
    let read = read_shard(&consumer, "orders", "shardId-000000000000").await;
    assert_eq!(read.records.len(), 1);
    let err = put(&consumer, "orders")
        .await
        .expect_err("a consumer does not write");
    assert_eq!(err.code(), Some("AccessDeniedException"));
    let reg = consumer
        .register_stream_consumer()
        .stream_arn(stream_arn("orders"))
        .consumer_name("app")
        .send()
        .await
        .expect("a consumer registers itself");
    assert!(reg.consumer().is_some());
    // Resharder: splits and scales, nothing else.
    resharder
        .update_shard_count()
        .stream_name("orders")
        .target_shard_count(2)
        .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
        .send()
        .await
        .expect("resharder scales orders");
    let err = resharder
        .delete_stream()
        .stream_name("orders")
        .send()
        .await
        .expect_err("resharder does not delete");
    assert_eq!(err.code(), Some("AccessDeniedException"));
    let err = put(&resharder, "orders")
        .await
        .expect_err("resharder does not write");
    assert_eq!(err.code(), Some("AccessDeniedException"));
    // Everyone may list streams; the administrator may do anything.
    for c in [&producer, &consumer, &resharder] {
        c.list_streams().send().await.expect("account reads");
    }
    // An explicit deny wins over an allow in the same document.
    let denied = client_with_keys(&ep, "AKIDDENIED", "denied-secret", None);
    put(&denied, "other").await.expect("allowed by kinesis:*");
    let err = denied
        .delete_stream()
        .stream_name("other")
        .send()
        .await
        .expect_err("denied");
    assert!(err
        .message()
        .unwrap()
        .ends_with("with an explicit deny in an identity-based policy"));
    admin
        .delete_stream()
        .stream_name("other")
        .send()
        .await
        .expect("the administrator deletes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_reloaded_when_the_file_changes() {
    let broker = authed_broker().await;
    let ep = broker.endpoint();
    let newcomer = client_with_keys(&ep, "AKIDNEWCOMER", "new-secret", None);
    let err = newcomer
        .list_streams()
        .send()
        .await
        .expect_err("unknown yet");
    assert_eq!(err.code(), Some("UnrecognizedClientException"));
    let mut creds = credentials().replace("AKIDPRODUCER", "AKIDRETIRED");
    creds.push_str(
        "\n[[users]]\nname = \"newcomer\"\naccess_key_id = \"AKIDNEWCOMER\"\nsecret_access_key = \"new-secret\"\npolicies = [\"administrator\"]\n",
    );
    // A different size and a later modification time.
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(broker.credentials_file(), creds).unwrap();
    eventually(Duration::from_secs(10), "the new key works", || async {
        newcomer.list_streams().send().await.is_ok()
    })
    .await;
    let err = client_with_keys(&ep, "AKIDPRODUCER", "producer-secret", None)
        .list_streams()
        .send()
        .await
        .expect_err("a removed key");
    assert_eq!(err.code(), Some("UnrecognizedClientException"));
    // A broken file keeps the credentials in force.
    std::fs::write(broker.credentials_file(), "[[users]]\nname = 3\n").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    newcomer
        .list_streams()
        .send()
        .await
        .expect("still in force");
}
