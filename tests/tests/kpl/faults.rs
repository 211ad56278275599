//! Faults: a throttling broker, a broker killed and restarted, a hung broker with the
//! buffer full (back-pressure, bounded memory), an endpoint that never answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use riffle_kpl::{Config, Producer, PutErrorKind, RateLimit, Record, TryPutError};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_broker_slows_the_producer_down_and_nothing_fails() {
    const N: u64 = 6000;
    let broker = TestBroker::builder()
        .config_toml(config_with_limits(
            "write_records_per_second = 1000\nwrite_bytes_per_second = \"off\"\n\
             read_bytes_per_second = \"off\"\nget_records_per_second = \"off\"",
        ))
        .start()
        .await;
    broker.create_stream("t", 1).await;
    let config = Config {
        // One Kinesis record per user record, and a client-side limit four times what the
        // shard takes: the broker has to throttle.
        aggregation_enabled: false,
        rate_limit: RateLimit::Percent(400),
        ..Config::default()
    };
    let mut registry = Registry::default();
    let producer = Producer::builder(config)
        .client(broker.client())
        .metrics(&mut registry)
        .build()
        .await
        .unwrap();
    let (tx, results) = resolver();
    for id in 0..N {
        let h = producer
            .put("t", format!("k{id}"), data(id, 10))
            .await
            .unwrap();
        tx.send((id, h)).await.unwrap();
    }
    drop(tx);
    let results = within(Duration::from_secs(120), "every future", results)
        .await
        .unwrap();
    let mut failed_attempts = 0;
    for (id, r) in &results {
        let r = r
            .as_ref()
            .unwrap_or_else(|e| panic!("record {id} failed: {e}"));
        for a in r.failed_attempts() {
            assert_eq!(a.error_code(), "ProvisionedThroughputExceededException");
            failed_attempts += 1;
        }
    }
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    let throttles = metric(
        &text,
        "kpl_errors_total{stream=\"t\",code=\"ProvisionedThroughputExceededException\"}",
    );
    assert!(throttles > 0.0, "the broker throttled");
    assert_eq!(throttles, failed_attempts as f64);
    // Backoff, not a retry storm: fewer failed attempts than records (a producer that
    // retried every 50 ms, as the KPL does, fails each waiting record dozens of times).
    assert!(
        failed_attempts < N,
        "{failed_attempts} throttled attempts for {N} records"
    );
    let c = counts(&read_stream(&broker.client(), "t").await);
    assert_eq!(c.len() as u64, N);
    assert!(c.values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_mid_run_leaves_no_future_hanging() {
    const N: u64 = 40_000;
    let mut broker = TestBroker::start().await;
    broker.create_stream("k", 4).await;
    let config = Config {
        request_timeout: Duration::from_secs(2),
        rate_limit: RateLimit::Off,
        ..Config::default()
    };
    let producer = producer(&broker, config).await;
    let accepted = Arc::new(AtomicU64::new(0));
    let (tx, results) = resolver();
    let feeder = {
        let producer = producer.clone();
        let accepted = accepted.clone();
        tokio::spawn(async move {
            for id in 0..N {
                let h = producer
                    .put("k", format!("key-{}", id % 997), data(id, 64))
                    .await
                    .unwrap();
                tx.send((id, h)).await.unwrap();
                accepted.store(id + 1, Ordering::Relaxed);
                if id % 500 == 0 {
                    // Spread the records over a few seconds, so some meet a dead broker.
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        })
    };
    within(Duration::from_secs(60), "the first third", async {
        while accepted.load(Ordering::Relaxed) < N / 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    broker.kill9().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.restart_on_same_ports().await;
    within(Duration::from_secs(120), "feeding", feeder)
        .await
        .unwrap();
    let results = within(Duration::from_secs(120), "every future", results)
        .await
        .unwrap();
    assert_eq!(results.len() as u64, N, "every future resolved");
    let mut ok = Vec::new();
    for (id, r) in results {
        match r {
            Ok(_) => ok.push(id),
            Err(e) => {
                // A failure hands the record back with its attempts.
                assert_eq!(id_of(&e.record.data), id);
                assert!(!e.attempts.is_empty(), "{e}");
                panic!("record {id} failed although the broker came back well within the ttl: {e} {:?}", e.attempts);
            }
        }
    }
    let c = counts(&read_stream(&broker.client(), "k").await);
    for id in ok {
        assert!(
            c.get(&id).copied().unwrap_or(0) >= 1,
            "record {id} was acknowledged but is missing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_fails_every_record_after_the_ttl() {
    let broker = TestBroker::start().await;
    broker.create_stream("u", 1).await;
    let config = Config {
        record_ttl: Duration::from_secs(2),
        request_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        ..Config::default()
    };
    let producer = producer(&broker, config).await;
    // Fetch the shard map, then take the broker away.
    producer
        .put("u", "warm", &b"up"[..])
        .await
        .unwrap()
        .await
        .unwrap();
    broker.pause();
    let mut handles = Vec::new();
    for id in 0..100 {
        handles.push((
            id,
            producer
                .put("u", format!("k{id}"), data(id, 8))
                .await
                .unwrap(),
        ));
    }
    for (id, h) in handles {
        let e = within(Duration::from_secs(30), "the failure", h)
            .await
            .unwrap_err();
        assert_eq!(e.kind, PutErrorKind::Expired);
        assert_eq!(id_of(&e.record.data), id);
        assert!(!e.attempts.is_empty());
        assert!(
            e.attempts.iter().all(|a| a.error_code() == "Timeout"),
            "{:?}",
            e.attempts
        );
    }
    broker.resume();
}

/// The child process of [`a_full_buffer_applies_back_pressure_and_bounds_memory`]: run
/// alone, so that its resident memory is the producer's.
const CHILD_ENV: &str = "RIFFLE_KPL_BACK_PRESSURE_CHILD";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_applies_back_pressure_and_bounds_memory() {
    let exe = std::env::current_exe().unwrap();
    let out = within(
        Duration::from_secs(240),
        "the child test",
        tokio::process::Command::new(exe)
            .args([
                "faults::back_pressure_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(text.contains("1 passed"), "the child test ran:\n{text}");
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_full_buffer_applies_back_pressure_and_bounds_memory in its own process"]
async fn back_pressure_child() {
    const MIB: usize = 1024 * 1024;
    const BUDGET: usize = 16 * MIB;
    const RECORD: usize = 64 * 1024;
    let broker = TestBroker::start().await;
    broker.create_stream("b", 1).await;
    let config = Config {
        max_buffered_bytes: BUDGET,
        max_concurrent_requests: 2,
        collection_max_size: 2 * MIB,
        request_timeout: Duration::from_secs(3),
        record_ttl: Duration::from_secs(120),
        rate_limit: RateLimit::Off,
        ..Config::default()
    };
    let per_request = 2 * MIB;
    let producer = producer(&broker, config).await;
    let warm = producer.put("b", "warm", data(u64::MAX, 8)).await.unwrap();
    warm.await.unwrap();
    let baseline = rss_bytes();

    // A hung broker: nothing is acknowledged, so the buffer fills.
    broker.pause();
    let mut handles = Vec::new();
    let mut id = 0u64;
    let full = loop {
        match producer.try_put("b", Record::new(format!("k{id}"), data(id, RECORD))) {
            Ok(h) => handles.push(h),
            Err(TryPutError::Full(r)) => break r,
            Err(e) => panic!("{e}"),
        }
        id += 1;
        assert!(id < 10_000, "the buffer never filled");
    };
    assert_eq!(id_of(&full.data), id, "try_put hands the record back");
    let accepted = handles.len();
    let cost = RECORD + format!("k{id}").len();
    assert!(
        accepted <= BUDGET / (RECORD + 2) && accepted >= BUDGET / cost - 1,
        "{accepted} accepted"
    );
    assert_eq!(producer.outstanding_records(), accepted);

    // `put` waits: a producer putting three times the budget more is held back.
    let more = 3 * accepted as u64;
    let progress = Arc::new(AtomicU64::new(0));
    let feeder = {
        let producer = producer.clone();
        let progress = progress.clone();
        let first = id;
        tokio::spawn(async move {
            let mut hs = Vec::new();
            for i in first..first + more {
                hs.push(
                    producer
                        .put("b", format!("k{i}"), data(i, RECORD))
                        .await
                        .unwrap(),
                );
                progress.fetch_add(1, Ordering::Relaxed);
            }
            hs
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        progress.load(Ordering::Relaxed),
        0,
        "put waits while the buffer is full"
    );
    let grown = rss_bytes().saturating_sub(baseline) as usize;
    let bound = BUDGET + 2 * per_request * 5 / 2 + 16 * MIB;
    println!(
        "rss grew by {} MiB with a {} MiB budget (bound {} MiB)",
        grown / MIB,
        BUDGET / MIB,
        bound / MIB
    );
    assert!(grown < bound, "rss grew by {grown} bytes, bound {bound}");

    // The broker answers again: everything is delivered.
    broker.resume();
    let later = within(Duration::from_secs(180), "the held-back puts", feeder)
        .await
        .unwrap();
    for h in handles.into_iter().chain(later) {
        within(Duration::from_secs(180), "every record", h)
            .await
            .unwrap();
    }
    let total = accepted as u64 + more;
    producer.shutdown().await.unwrap();
    let c = counts(&read_stream(&broker.client(), "b").await);
    for i in 0..total {
        assert!(c.contains_key(&i), "record {i} is missing");
    }
}
