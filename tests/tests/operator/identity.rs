//! Consumer identities end to end: the operator gives a Consumer a user and a role scoped to
//! its stream (its Secret's `riffle-access.toml`), the broker loads that fragment from its
//! credentials directory (where a Secret volume would put it), and a service-account token
//! that the real kube-apiserver issued (TokenRequest, the cluster's own signing key, checked
//! against the JWKS the broker fetches from that API server's `/openid/v1/jwks` over TLS)
//! becomes temporary credentials for that role.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_smithy_types::Blob;
use base64::Engine;
use riffle_tests::sts::{assume_role_with_web_identity, xml_value};
use riffle_tests::{client_with_keys, TestBroker, TEST_ACCESS_KEY, TEST_SECRET_KEY};

use crate::cluster::Cluster;
use crate::{get, install_crds, Operator};

/// The service-account issuer the e2e kube-apiserver is started with.
const ISSUER: &str = "https://kubernetes.default.svc";

fn secret_value(secret: &serde_json::Value, key: &str) -> String {
    let b64 = secret["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("the Secret has no {key}"));
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumers_role_is_assumed_with_a_token_the_api_server_issued() {
    let cluster = Cluster::start().await;
    install_crds(&cluster).await;
    cluster
        .kubectl_ok(&["create", "serviceaccount", "billing-sa"])
        .await;
    cluster
        .kubectl_ok(&["create", "serviceaccount", "intruder"])
        .await;

    // The broker trusts the cluster's issuer with the cluster's own keys, fetched from the
    // API server (TLS to its serving certificate, a bearer token), and loads every fragment
    // of its credentials directory.
    let dir = tempfile::tempdir().unwrap();
    let access = dir.path().join("access");
    std::fs::create_dir(&access).unwrap();
    std::fs::write(
        dir.path().join("credentials.toml"),
        format!(
            "[[users]]\nname = \"harness\"\naccess_key_id = \"{TEST_ACCESS_KEY}\"\n\
             secret_access_key = \"{TEST_SECRET_KEY}\"\npolicies = [\"administrator\"]\n"
        ),
    )
    .unwrap();
    let config = format!(
        "{}\n[auth]\ncredentials_file = {:?}\ncredentials_dir = {:?}\nreload_interval = \"200ms\"\n\n\
         [auth.web_identity]\nissuer = \"{ISSUER}\"\naudiences = [\"riffle\"]\n\
         jwks_url = \"{}/openid/v1/jwks\"\njwks_ca_file = {:?}\njwks_token_file = {:?}\n",
        riffle_tests::DEFAULT_CONFIG,
        dir.path().join("credentials.toml").display().to_string(),
        access.display().to_string(),
        cluster.url,
        cluster.serving_cert().display().to_string(),
        cluster.admin_token_file().display().to_string(),
    );
    let broker = TestBroker::builder().config_toml(config).start().await;
    broker.create_stream("payroll", 1).await;
    let endpoint = broker.endpoint();

    // The operator (as the cluster admin; the chart's RBAC is the main e2e test's concern)
    // creates the stream and writes the Consumer's Secret.
    let operator = Operator::start(&cluster.kubeconfig, "op-identity");
    cluster
        .apply(&format!(
            "apiVersion: riffle.dev/v1alpha1\nkind: Stream\nmetadata: {{name: orders}}\n\
             spec: {{shardCount: 1, endpoint: {{url: \"{endpoint}\"}}}}\n---\n\
             apiVersion: riffle.dev/v1alpha1\nkind: Consumer\nmetadata: {{name: billing}}\n\
             spec: {{streamRef: orders, kind: Polling, serviceAccount: billing-sa}}\n"
        ))
        .await;
    cluster
        .kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            "consumer/billing",
            "--timeout=90s",
        ])
        .await;
    let consumer = get(&cluster, "consumer/billing").await;
    let role_arn = "arn:aws:iam::000000000000:role/consumer-default-billing";
    assert_eq!(consumer["status"]["roleArn"], role_arn);
    let secret = get(&cluster, "secret/billing-riffle-credentials").await;
    assert_eq!(secret_value(&secret, "AWS_ROLE_ARN"), role_arn);
    // What a Secret volume of the broker pod would hold.
    std::fs::write(
        access.join("billing.toml"),
        secret_value(&secret, "riffle-access.toml"),
    )
    .unwrap();

    let admin = broker.client();
    admin
        .put_record()
        .stream_name("orders")
        .partition_key("k")
        .data(Blob::new("for billing"))
        .send()
        .await
        .expect("the administrator writes");

    // The Consumer's static keys: read its stream, nothing else.
    let keys = client_with_keys(
        &endpoint,
        &secret_value(&secret, "AWS_ACCESS_KEY_ID"),
        &secret_value(&secret, "AWS_SECRET_ACCESS_KEY"),
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match keys.list_shards().stream_name("orders").send().await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the broker never accepted the Consumer's keys: {e:?}"),
        }
    }
    let err = keys
        .describe_stream_summary()
        .stream_name("payroll")
        .send()
        .await
        .expect_err("another stream");
    assert_eq!(err.code(), Some("AccessDeniedException"));

    // A token the API server issued for the Consumer's service account (TokenRequest).
    let token = cluster
        .kubectl_ok(&[
            "create",
            "token",
            "billing-sa",
            "--audience",
            "riffle",
            "--duration",
            "10m",
        ])
        .await;
    let token = token.trim();
    let (status, xml) = assume_role_with_web_identity(broker.api_addr(), token, role_arn, "").await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(
        xml_value(&xml, "SubjectFromWebIdentityToken").as_deref(),
        Some("system:serviceaccount:default:billing-sa")
    );
    let session = client_with_keys(
        &endpoint,
        &xml_value(&xml, "AccessKeyId").unwrap(),
        &xml_value(&xml, "SecretAccessKey").unwrap(),
        Some(&xml_value(&xml, "SessionToken").unwrap()),
    );
    let it = session
        .get_shard_iterator()
        .stream_name("orders")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("the role reads its stream")
        .shard_iterator()
        .unwrap()
        .to_owned();
    let read = session
        .get_records()
        .shard_iterator(it)
        .send()
        .await
        .expect("GetRecords");
    assert_eq!(read.records()[0].data().as_ref(), b"for billing");
    let err = session
        .put_record()
        .stream_name("orders")
        .partition_key("k")
        .data(Blob::new("x"))
        .send()
        .await
        .expect_err("a consumer role does not write");
    assert_eq!(err.code(), Some("AccessDeniedException"));
    assert!(
        err.message().unwrap().starts_with(
            "User: arn:aws:sts::000000000000:assumed-role/consumer-default-billing/pod-1 is not authorized to perform: kinesis:PutRecord"
        ),
        "{err:?}"
    );

    // Another service account's real token may not assume the role; nor may a token for
    // another audience.
    let other = cluster
        .kubectl_ok(&["create", "token", "intruder", "--audience", "riffle"])
        .await;
    let (status, xml) =
        assume_role_with_web_identity(broker.api_addr(), other.trim(), role_arn, "").await;
    assert_eq!(status, 403, "{xml}");
    assert_eq!(xml_value(&xml, "Code").as_deref(), Some("AccessDenied"));
    let wrong_audience = cluster
        .kubectl_ok(&["create", "token", "billing-sa", "--audience", "elsewhere"])
        .await;
    let (status, xml) =
        assume_role_with_web_identity(broker.api_addr(), wrong_audience.trim(), role_arn, "").await;
    assert_eq!(status, 400, "{xml}");
    assert_eq!(
        xml_value(&xml, "Code").as_deref(),
        Some("InvalidIdentityToken")
    );
    operator.terminate().await;
}
