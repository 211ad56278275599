//! Resource-based policies through the socket: Put/Get/DeleteResourcePolicy on streams and
//! consumers, evaluated with identity policies as IAM does within one account (an Allow in
//! either grants, an explicit Deny in either wins), applied to a role's sessions when the
//! policy names the role, kept across a restart, and the errors for bad input.

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use riffle_tests::oidc::{Issuer, AUDIENCE, ISSUER};
use riffle_tests::{client_with_keys, TEST_ACCESS_KEY, TEST_SECRET_KEY};

use crate::common::*;
use crate::sts::{exchange, xml_value};

const OUTSIDER: &str = "arn:aws:iam::000000000000:user/outsider";
const PRODUCER: &str = "arn:aws:iam::000000000000:user/producer";
const ROLE: &str = "arn:aws:iam::000000000000:role/bare";

async fn policy_broker(issuer: &Issuer, dir: &std::path::Path) -> TestBroker {
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, &issuer.jwks).unwrap();
    TestBroker::builder()
        .config_toml(format!(
            "{}\n[auth.web_identity]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\njwks_file = {:?}\n",
            config("status_delay = \"50ms\"", "fsync = \"never\"", LIMITS_OFF),
            jwks.display().to_string()
        ))
        .data_dir(dir.join("data"))
        .credentials(format!(
            r#"
[[users]]
name = "harness"
access_key_id = "{TEST_ACCESS_KEY}"
secret_access_key = "{TEST_SECRET_KEY}"
policies = ["administrator"]

[[users]]
name = "outsider"
access_key_id = "AKIDOUTSIDER"
secret_access_key = "outsider-secret"
policies = []

[[users]]
name = "producer"
access_key_id = "AKIDPRODUCER"
secret_access_key = "producer-secret"
policies = ["producer"]

[[roles]]
name = "bare"
policies = []
service_accounts = ["team/bare"]
"#
        ))
        .start()
        .await
}

fn put(
    c: &aws_sdk_kinesis::Client,
    data: &str,
) -> impl std::future::Future<Output = Result<(), String>> {
    let f = c
        .put_record()
        .stream_name("orders")
        .partition_key("k")
        .data(blob(data))
        .send();
    async move {
        f.await.map(|_| ()).map_err(|e| {
            format!(
                "{}: {}",
                e.code().unwrap_or("?"),
                e.message().unwrap_or_default()
            )
        })
    }
}

fn allow(principal: &str, actions: &[&str], resource: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "grant",
            "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": actions.iter().map(|a| format!("kinesis:{a}")).collect::<Vec<_>>(),
            "Resource": resource,
        }]
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_policies_grant_deny_persist_and_reach_role_sessions() {
    let issuer = Issuer::new("rp");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let mut broker = policy_broker(&issuer, dir.path()).await;
    let ep = broker.endpoint();
    broker.create_stream("orders", 1).await;
    let admin = broker.client();
    let orders = stream_arn("orders");
    let outsider = client_with_keys(&ep, "AKIDOUTSIDER", "outsider-secret", None);
    let producer = client_with_keys(&ep, "AKIDPRODUCER", "producer-secret", None);

    // No policy yet: Get answers "{}", Delete is ResourceNotFound.
    let got = admin
        .get_resource_policy()
        .resource_arn(&orders)
        .send()
        .await
        .expect("get without a policy");
    assert_eq!(got.policy(), "{}");
    let err = admin
        .delete_resource_policy()
        .resource_arn(&orders)
        .send()
        .await
        .expect_err("nothing to delete");
    assert_eq!(err.code(), Some("ResourceNotFoundException"));
    assert_eq!(
        err.message(),
        Some(format!("No resource policy found for resource ARN {orders}.").as_str())
    );

    // A user without identity policies is denied, until the stream's policy grants it.
    let denied = put(&outsider, "before")
        .await
        .expect_err("no policy allows it");
    assert!(
        denied.starts_with("AccessDeniedException: User: arn:aws:iam::000000000000:user/outsider is not authorized to perform: kinesis:PutRecord"),
        "{denied}"
    );
    let doc = allow(OUTSIDER, &["PutRecord", "ListShards"], &orders);
    admin
        .put_resource_policy()
        .resource_arn(&orders)
        .policy(&doc)
        .send()
        .await
        .expect("put the stream's policy");
    let got = admin
        .get_resource_policy()
        .resource_arn(&orders)
        .send()
        .await
        .unwrap();
    assert_eq!(got.policy(), doc, "the document comes back as it was put");
    put(&outsider, "granted")
        .await
        .expect("the resource policy grants PutRecord");
    outsider
        .list_shards()
        .stream_name("orders")
        .send()
        .await
        .expect("and ListShards");
    let err = outsider
        .get_shard_iterator()
        .stream_name("orders")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect_err("but nothing it does not name");
    assert_eq!(err.code(), Some("AccessDeniedException"));
    // Only who may PutResourcePolicy may change it.
    let err = producer
        .put_resource_policy()
        .resource_arn(&orders)
        .policy(&doc)
        .send()
        .await
        .expect_err("the producer template has no PutResourcePolicy");
    assert_eq!(err.code(), Some("AccessDeniedException"));

    // An explicit Deny in the resource policy beats the producer's identity Allow.
    let deny = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": OUTSIDER}, "Action": "kinesis:PutRecord", "Resource": orders},
            {"Effect": "Deny", "Principal": {"AWS": PRODUCER}, "Action": "kinesis:Put*", "Resource": orders},
            {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": ["kinesis:PutRecord"], "Resource": orders}
        ]
    })
    .to_string();
    put(&producer, "allowed by identity")
        .await
        .expect("before the deny");
    admin
        .put_resource_policy()
        .resource_arn(&orders)
        .policy(&deny)
        .send()
        .await
        .expect("replace the policy");
    let err = put(&producer, "denied")
        .await
        .expect_err("explicit deny wins");
    assert_eq!(
        err,
        format!("AccessDeniedException: User: {PRODUCER} is not authorized to perform: kinesis:PutRecord on resource: {orders} with an explicit deny in a resource-based policy")
    );
    put(&outsider, "still granted")
        .await
        .expect("the outsider is still allowed");

    // A role's session is covered by a statement naming the role.
    let token = issuer.token("team", "bare", AUDIENCE, 600);
    let (status, xml) = exchange(&broker, &token, ROLE, "").await;
    assert_eq!(status, 200, "{xml}");
    let session = client_with_keys(
        &ep,
        &xml_value(&xml, "AccessKeyId").unwrap(),
        &xml_value(&xml, "SecretAccessKey").unwrap(),
        Some(&xml_value(&xml, "SessionToken").unwrap()),
    );
    put(&session, "from the role")
        .await
        .expect("the policy names the role");
    let err = session
        .describe_stream_summary()
        .stream_name("orders")
        .send()
        .await
        .expect_err("the role has no other grant");
    assert_eq!(err.code(), Some("AccessDeniedException"));

    // A consumer has its own policy, on its own ARN.
    let consumer = admin
        .register_stream_consumer()
        .stream_arn(&orders)
        .consumer_name("app")
        .send()
        .await
        .unwrap()
        .consumer
        .unwrap()
        .consumer_arn;
    let describe =
        |c: &aws_sdk_kinesis::Client| c.describe_stream_consumer().consumer_arn(&consumer).send();
    assert_eq!(
        describe(&outsider).await.expect_err("not granted").code(),
        Some("AccessDeniedException")
    );
    admin
        .put_resource_policy()
        .resource_arn(&consumer)
        .policy(allow(OUTSIDER, &["DescribeStreamConsumer"], &consumer))
        .send()
        .await
        .expect("put the consumer's policy");
    describe(&outsider)
        .await
        .expect("the consumer's policy grants it");

    // Both policies survive a restart.
    broker.restart().await;
    let ep = broker.endpoint();
    let admin = broker.client();
    let outsider = client_with_keys(&ep, "AKIDOUTSIDER", "outsider-secret", None);
    let got = admin
        .get_resource_policy()
        .resource_arn(&orders)
        .send()
        .await
        .unwrap();
    assert_eq!(got.policy(), deny);
    put(&outsider, "after restart")
        .await
        .expect("still granted after a restart");
    outsider
        .describe_stream_consumer()
        .consumer_arn(&consumer)
        .send()
        .await
        .expect("the consumer's policy too");

    // Deleted: the grant is gone.
    admin
        .delete_resource_policy()
        .resource_arn(&orders)
        .send()
        .await
        .expect("delete");
    assert_eq!(
        admin
            .get_resource_policy()
            .resource_arn(&orders)
            .send()
            .await
            .unwrap()
            .policy(),
        "{}"
    );
    put(&outsider, "after delete")
        .await
        .expect_err("no grant any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_resource_policies_get_kinesis_errors() {
    let issuer = Issuer::new("rp2");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let broker = policy_broker(&issuer, dir.path()).await;
    broker.create_stream("orders", 1).await;
    let admin = broker.client();
    let orders = stream_arn("orders");
    let attempt = |arn: String, policy: String| {
        let f = admin
            .put_resource_policy()
            .resource_arn(arn)
            .policy(policy)
            .send();
        async move {
            let e = f.await.expect_err("refused");
            (
                e.code().unwrap_or_default().to_owned(),
                e.message().unwrap_or_default().to_owned(),
            )
        }
    };
    let (code, msg) = attempt(orders.clone(), "{not json".into()).await;
    assert_eq!(code, "InvalidArgumentException");
    assert!(
        msg.starts_with("Invalid resource policy: the policy is not valid JSON"),
        "{msg}"
    );
    let no_principal = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kinesis:*","Resource":"*"}]}"#;
    let (code, msg) = attempt(orders.clone(), no_principal.into()).await;
    assert_eq!(code, "InvalidArgumentException");
    assert!(msg.contains("must name a Principal"), "{msg}");
    let (code, msg) = attempt(orders.clone(), "x".repeat(20 * 1024 + 1)).await;
    assert_eq!(code, "InvalidArgumentException", "{msg}");
    let (code, _) = attempt(
        stream_arn("missing"),
        allow(OUTSIDER, &["PutRecord"], &orders),
    )
    .await;
    assert_eq!(code, "ResourceNotFoundException");
    let (code, _) = attempt(
        "not-an-arn".into(),
        allow(OUTSIDER, &["PutRecord"], &orders),
    )
    .await;
    assert_eq!(code, "InvalidArgumentException");
    // Nothing was attached by any of them.
    assert_eq!(
        admin
            .get_resource_policy()
            .resource_arn(&orders)
            .send()
            .await
            .unwrap()
            .policy(),
        "{}"
    );
}
