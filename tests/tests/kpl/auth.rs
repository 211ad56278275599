//! The producer against a broker with authentication on: a key scoped to one stream puts
//! there (signed requests verify, receipts are real), and records it may not write come
//! back at once as rejected with AWS's error code, not retried until `record_ttl`.

use std::time::{Duration, Instant};

use riffle_kpl::{Config, Producer, PutErrorKind};

use crate::support::*;

const CREDENTIALS: &str = r#"
[[users]]
name = "ops"
access_key_id = "AKIDKPLOPS"
secret_access_key = "kpl-ops-secret"
policies = ["administrator"]

[[users]]
name = "writer"
access_key_id = "AKIDKPLWRITER"
secret_access_key = "kpl-writer-secret"
policies = [{ template = "producer", streams = ["orders"] }]
"#;

async fn producer_as(broker: &TestBroker, key: &str, secret: &str) -> Producer {
    let client = riffle_tests::client_with_keys(&broker.endpoint(), key, secret, None);
    Producer::builder(Config {
        // Long enough that a retried rejection would show as a slow failure.
        record_ttl: Duration::from_secs(30),
        ..Config::default()
    })
    .client(client)
    .build()
    .await
    .expect("build producer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_key_puts_to_its_stream_and_is_refused_elsewhere_at_once() {
    let broker = TestBroker::builder().credentials(CREDENTIALS).start().await;
    let ops =
        riffle_tests::client_with_keys(&broker.endpoint(), "AKIDKPLOPS", "kpl-ops-secret", None);
    for name in ["orders", "payroll"] {
        ops.create_stream()
            .stream_name(name)
            .shard_count(2)
            .send()
            .await
            .expect("create as ops");
    }
    riffle_tests::wait_active_with(&ops, "orders").await;
    riffle_tests::wait_active_with(&ops, "payroll").await;

    let writer = producer_as(&broker, "AKIDKPLWRITER", "kpl-writer-secret").await;
    let mut handles = Vec::new();
    for id in 0..2_000u64 {
        let h = writer
            .put("orders", format!("k{}", id % 50), data(id, 100))
            .await
            .expect("accepted");
        handles.push((id, h));
    }
    let mut receipts = Vec::new();
    for (id, h) in handles {
        let r = within(Duration::from_secs(60), "an orders future", h)
            .await
            .unwrap_or_else(|e| panic!("record {id} failed: {e} ({:?})", e.attempts));
        receipts.push((id, r.shard_id().to_string()));
    }
    let read = read_stream(&ops, "orders").await;
    let c = counts(&read);
    assert_eq!(
        c.len(),
        2_000,
        "every record put by the scoped key is in the stream"
    );
    assert!(c.values().all(|n| *n == 1), "exactly once");
    for (id, shard) in &receipts {
        assert!(
            read.records
                .iter()
                .any(|s| id_of(&s.data) == *id && &s.shard_id == shard),
            "record {id} is on the shard its receipt names"
        );
    }

    // The same key on a stream outside its scope: refused, without waiting for the TTL.
    let started = Instant::now();
    let h = writer
        .put("payroll", "k", data(1, 100))
        .await
        .expect("accepted");
    let err = within(Duration::from_secs(20), "the payroll future", h)
        .await
        .expect_err("a producer scoped to orders may not write payroll");
    assert_eq!(
        err.kind,
        PutErrorKind::Rejected {
            code: "AccessDeniedException".into()
        },
        "{err} ({:?})",
        err.attempts
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "an access denial is not retried until record_ttl: took {:?}",
        started.elapsed()
    );
    assert_eq!(err.last_error_code(), Some("AccessDeniedException"));
    assert_eq!(err.into_record().partition_key, "k");
    writer.shutdown().await.expect("shutdown");

    // A key the broker does not know: every record comes back rejected, nothing is written.
    let stranger = producer_as(&broker, "AKIDNOBODY", "wrong").await;
    let h = stranger
        .put("orders", "k", data(9_999, 100))
        .await
        .expect("accepted");
    let err = within(Duration::from_secs(20), "the stranger's future", h)
        .await
        .expect_err("an unknown key may not write");
    assert_eq!(
        err.kind,
        PutErrorKind::Rejected {
            code: "UnrecognizedClientException".into()
        },
        "{err} ({:?})",
        err.attempts
    );
    stranger.shutdown().await.expect("shutdown");
    assert_eq!(counts(&read_stream(&ops, "orders").await).len(), 2_000);
}
