//! The consumer against a broker with authentication on: a key with the `consumer` template
//! for one stream reads it by polling and by fan-out (registering its consumer itself), and
//! the same key on another stream fails at start with AWS's AccessDeniedException.

use std::time::Duration;

use riffle_kcl::{RetrievalMode, Scheduler, SchedulerError};

use crate::common::*;

const CREDENTIALS: &str = r#"
[[users]]
name = "ops"
access_key_id = "AKIDKCLOPS"
secret_access_key = "kcl-ops-secret"
policies = ["administrator"]

[[users]]
name = "reader"
access_key_id = "AKIDKCLREADER"
secret_access_key = "kcl-reader-secret"
policies = [{ template = "consumer", streams = ["orders"] }]
"#;

async fn scoped_reader(mode: RetrievalMode) {
    let broker = TestBroker::builder().credentials(CREDENTIALS).start().await;
    let ep = broker.endpoint();
    let ops = riffle_tests::client_with_keys(&ep, "AKIDKCLOPS", "kcl-ops-secret", None);
    let reader = riffle_tests::client_with_keys(&ep, "AKIDKCLREADER", "kcl-reader-secret", None);
    for name in ["orders", "payroll"] {
        ops.create_stream()
            .stream_name(name)
            .shard_count(2)
            .send()
            .await
            .expect("create as ops");
    }
    for name in ["orders", "payroll"] {
        riffle_tests::wait_active_with(&ops, name).await;
    }
    let data = put_plain(&ops, "orders", "o", 300).await;

    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let s = Scheduler::builder(
        config("auth-app", "orders", mode),
        reader.clone(),
        sqlite_store(&dir, "auth-app"),
        Recorder::factory(&log),
    )
    .build()
    .unwrap();
    let stop = s.shutdown_handle();
    let run = tokio::spawn(s.run());
    log.wait_for_all(&data, Duration::from_secs(60)).await;
    stop.shutdown();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("scheduler stops")
        .expect("task")
        .expect("the scoped reader ran");

    // The same key on a stream outside its scope: the scheduler refuses to start, with the
    // broker's denial as the cause.
    let dir = tempfile::tempdir().unwrap();
    let s = Scheduler::builder(
        config("auth-app-2", "payroll", mode),
        reader,
        sqlite_store(&dir, "auth-app-2"),
        Recorder::factory(&Log::default()),
    )
    .build()
    .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), s.run())
        .await
        .expect("a denied scheduler returns")
        .expect_err("a reader scoped to orders may not read payroll");
    assert!(matches!(err, SchedulerError::Kinesis { .. }), "{err:?}");
    let mut chain = String::new();
    let mut cause: Option<&dyn std::error::Error> = Some(&err);
    while let Some(c) = cause {
        chain.push_str(&format!("{c:?} / "));
        cause = c.source();
    }
    assert!(chain.contains("AccessDeniedException"), "{chain}");
    assert!(chain.contains("user/reader"), "{chain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_consumer_key_reads_its_stream_by_polling_and_nothing_else() {
    scoped_reader(RetrievalMode::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_consumer_key_reads_its_stream_by_fan_out_and_nothing_else() {
    scoped_reader(RetrievalMode::FanOut).await;
}
