//! Regressions of the adversarial review ("broker hardening"), each through the socket:
//! stalled and trickling clients, records as large as the stream allows, retention that
//! was raised, checkpoints of a recreated stream, memory amplification by a request body,
//! SIGTERM with open subscriptions, and one decoding rule for JSON and CBOR.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::operation::get_shard_iterator::GetShardIteratorError;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use riffle_tests::http::{self, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;
use crate::fanout::{position, register_active, subscribe, SHARD0};

const JSON: &str = "application/x-amz-json-1.1";
const CBOR: &str = "application/x-amz-cbor-1.1";
const MIB: usize = 1024 * 1024;

/// A broker config with the per-shard limits off and `http` lines for `[http]`.
fn http_config(http: &str) -> String {
    format!(
        "{}\n[http]\n{http}\n",
        config("status_delay = \"50ms\"", "fsync = \"never\"", LIMITS_OFF)
    )
}

/// Sends one signed API request with a hand-written body.
async fn call(broker: &TestBroker, content_type: &str, op: &str, body: &[u8]) -> Response {
    let target = format!("Kinesis_20131202.{op}");
    let host = broker.api_addr().to_string();
    let (date, auth) = sigv4::sign(&host, content_type, &target, body);
    let headers = [
        ("Content-Type", content_type),
        ("X-Amz-Target", target.as_str()),
        ("X-Amz-Date", date.as_str()),
        ("Authorization", auth.as_str()),
    ];
    // A 16 MB body through a debug build on a busy machine may need well over 10 s.
    let limit = Duration::from_secs(120);
    http::request_within(broker.api_addr(), "POST", "/", &headers, body, limit)
        .await
        .unwrap_or_else(|e| panic!("{op}: {e}"))
}

/// `__type` and message of an error answer, JSON or CBOR.
fn error_of(resp: &Response) -> (String, Option<String>) {
    let v: serde_json::Value = if resp
        .header("Content-Type")
        .is_some_and(|c| c.contains("cbor"))
    {
        cbor_to_json(&resp.body)
    } else {
        serde_json::from_slice(&resp.body)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {}", resp.body_text()))
    };
    let kind = v["__type"].as_str().expect("__type").to_string();
    let msg = v
        .get("message")
        .or_else(|| v.get("Message"))
        .and_then(|m| m.as_str())
        .map(str::to_string);
    (kind, msg)
}

/// The broker's peak resident memory (VmHWM), bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

async fn metric(broker: &TestBroker, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(&parse_metrics(&broker.metrics_text().await), name, labels).unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------
// 1. Stalled and trickling clients.

/// The head of a PutRecords request that promises a 16 MiB body.
fn stalled_head(addr: &str, chunked: bool) -> String {
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {}", 16 * MIB)
    };
    format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {JSON}\r\n\
         X-Amz-Target: Kinesis_20131202.PutRecords\r\n{framing}\r\n\r\n"
    )
}

/// Reads what the server sends on `s` until it closes the connection (≤ `limit`).
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(all),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// Opens an HTTP/2 (prior knowledge) connection and starts `n` PutRecords requests that
/// send their headers and never their bodies.
async fn stalled_h2_streams(
    addr: std::net::SocketAddr,
    n: usize,
) -> (
    Vec<(h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>)>,
    tokio::task::JoinHandle<()>,
) {
    let tcp = TcpStream::connect(addr).await.expect("connect h2");
    let (mut client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut streams = Vec::new();
    for _ in 0..n {
        client = client.ready().await.expect("h2 ready");
        let req = ::http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/"))
            .header("content-type", JSON)
            .header("x-amz-target", "Kinesis_20131202.PutRecords")
            .header("content-length", (16 * MIB).to_string())
            .body(())
            .unwrap();
        let (resp, send) = client.send_request(req, false).expect("h2 request");
        streams.push((resp, send));
    }
    (streams, driver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_trickling_clients_do_not_freeze_the_api() {
    let broker = TestBroker::builder()
        .config_toml(http_config(
            "body_idle_timeout = \"3s\"\nbody_timeout = \"8s\"\nidle_timeout = \"30s\"",
        ))
        .start()
        .await;
    broker.create_stream("s", 1).await;
    let client = broker.client();
    let addr = broker.api_addr();
    let host = addr.to_string();

    // 32 HTTP/1.1 requests that send their headers and then nothing (16 with a 16 MiB
    // Content-Length, 16 chunked), and 16 HTTP/2 streams of the same on one connection.
    let mut stalled = Vec::new();
    for i in 0..32 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(stalled_head(&host, i % 2 == 1).as_bytes())
            .await
            .unwrap();
        stalled.push(s);
    }
    let (h2_streams, h2_driver) = stalled_h2_streams(addr, 16).await;
    // 1,000 more connections: half idle (nothing sent), half trickling a body a byte at
    // a time.
    let mut idle = Vec::new();
    let mut trickling = Vec::new();
    for i in 0..1000 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        if i % 2 == 0 {
            idle.push(s);
        } else {
            s.write_all(stalled_head(&host, false).as_bytes())
                .await
                .unwrap();
            s.write_all(b"{").await.unwrap();
            trickling.push(s);
        }
    }
    let trickle = tokio::spawn(async move {
        // A byte every second on every trickling connection, for at most 20 s.
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut alive = 0;
            for s in trickling.iter_mut() {
                if s.write_all(b" ").await.is_ok() {
                    alive += 1;
                }
            }
            if alive == 0 {
                break;
            }
        }
        trickling
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // What the hostile connections hold of the memory budget: what they sent, no more.
    let held = metric(&broker, "riffle_inflight_bytes", &[]).await;
    assert!(
        held < (4 * MIB) as f64,
        "stalled requests must not hold reservations for bodies they never sent: {held} bytes held"
    );

    // An ordinary client keeps its latency.
    let mut latencies = Vec::new();
    for i in 0..40 {
        let t = Instant::now();
        let put = client
            .put_record()
            .stream_name("s")
            .partition_key(format!("k{i}"))
            .data(blob(format!("record {i}")))
            .send();
        tokio::time::timeout(Duration::from_secs(10), put)
            .await
            .expect("an ordinary PutRecord is answered while hostile clients are connected")
            .expect("PutRecord");
        latencies.push(t.elapsed());
    }
    let t = Instant::now();
    let read = read_shard(&client, "s", SHARD0).await;
    latencies.push(t.elapsed());
    assert_eq!(read.records.len(), 40);
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let max = *latencies.last().unwrap();
    eprintln!("ordinary client with 1,048 hostile connections open: p50 {p50:?}, max {max:?}");
    assert!(
        max < Duration::from_secs(2),
        "ordinary requests stay fast (p50 {p50:?}, max {max:?})"
    );

    // The stalled requests are timed out and answered 408, and their connections closed.
    for (i, s) in stalled.iter_mut().enumerate() {
        let got = read_until_closed(s, Duration::from_secs(15))
            .await
            .unwrap_or_else(|| panic!("stalled connection {i} was not closed"));
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 408"),
            "stalled request {i}: {text:?}"
        );
    }
    for (i, (resp, _send)) in h2_streams.into_iter().enumerate() {
        let r = tokio::time::timeout(Duration::from_secs(15), resp)
            .await
            .unwrap_or_else(|_| panic!("stalled h2 stream {i} was not answered"))
            .expect("h2 response");
        assert_eq!(r.status(), 408, "stalled h2 stream {i}");
    }
    h2_driver.abort();
    // The trickling ones run into the body deadline.
    let mut trickling = trickle.await.unwrap();
    for (i, s) in trickling.iter_mut().enumerate().step_by(50) {
        let got = read_until_closed(s, Duration::from_secs(15))
            .await
            .unwrap_or_else(|| panic!("trickling connection {i} was not closed"));
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408"));
    }
    drop(trickling);
    drop(idle);
    let idle_cut = metric(
        &broker,
        "riffle_requests_abandoned_total",
        &[("reason", "body_idle")],
    )
    .await;
    let deadline_cut = metric(
        &broker,
        "riffle_requests_abandoned_total",
        &[("reason", "body_deadline")],
    )
    .await;
    // The 48 stalled requests go idle; the 500 trickling ones run into the body deadline,
    // unless the machine is so loaded that a trickle round takes longer than the idle
    // timeout, when some are cut for idleness instead. Either way every one is abandoned,
    // and the deadline does cut the ones that keep trickling.
    assert!(idle_cut >= 48.0, "abandoned for idleness: {idle_cut}");
    assert!(
        idle_cut + deadline_cut >= 548.0,
        "every hostile request abandoned: {idle_cut} idle + {deadline_cut} at the deadline"
    );
    assert!(
        deadline_cut >= 100.0,
        "abandoned at the deadline: {deadline_cut}"
    );
    eventually(
        Duration::from_secs(10),
        "the budget is released",
        || async { metric(&broker, "riffle_inflight_bytes", &[]).await == 0.0 },
    )
    .await;
    assert!(
        peak_rss(broker.pid()) < 300 * MIB as u64,
        "peak RSS {} MiB",
        peak_rss(broker.pid()) / MIB as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_http2_streams_are_bounded() {
    let broker = TestBroker::builder()
        .config_toml(http_config(
            "idle_timeout = \"1s\"\nh2_max_concurrent_streams = 8\nmax_connections = 50",
        ))
        .start()
        .await;
    let addr = broker.api_addr();
    // A connection that never sends a byte, and a keep-alive connection after a response.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(
        format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {JSON}\r\n\
             X-Amz-Target: Kinesis_20131202.ListStreams\r\nContent-Length: 2\r\n\r\n{{}}"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let got = read_until_closed(&mut kept, Duration::from_secs(10))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(10))
            .await
            .is_some(),
        "a connection that never sends is closed"
    );
    // One HTTP/2 connection gets at most 8 streams at once: the 9th waits for a slot.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    // Let the server's SETTINGS arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut open = Vec::new();
    for _ in 0..8 {
        let req = ::http::Request::post(format!("http://{addr}/"))
            .header("content-type", JSON)
            .header("x-amz-target", "Kinesis_20131202.ListStreams")
            .body(())
            .unwrap();
        open.push(client.send_request(req, false).unwrap());
        client = client.ready().await.unwrap();
    }
    assert_eq!(
        client.current_max_send_streams(),
        8,
        "the server advertises its stream limit"
    );
    driver.abort();
    // Beyond max_connections, new connections are closed at once.
    let mut many = Vec::new();
    for _ in 0..60 {
        many.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rejected = metric(&broker, "riffle_connections_rejected_total", &[]).await;
    assert!(rejected >= 10.0, "rejected {rejected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_subscription_is_not_an_idle_connection() {
    // Heartbeats every 3 s, idle connections closed after 1 s: the subscription's
    // connection must stay open anyway.
    let cfg = format!(
        "{}\n[http]\nidle_timeout = \"1s\"\n",
        config(
            "status_delay = \"50ms\"\nsubscription_heartbeat = \"3s\"",
            "fsync = \"never\"",
            LIMITS_OFF
        )
    );
    let broker = TestBroker::builder().config_toml(cfg).start().await;
    broker.create_stream("live", 1).await;
    let client = broker.client();
    let consumer = register_active(&client, "live", "c").await;
    let mut events = subscribe(
        &client,
        &consumer,
        SHARD0,
        position(ShardIteratorType::Latest, None),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    client
        .put_record()
        .stream_name("live")
        .partition_key("k")
        .data(blob("still here"))
        .send()
        .await
        .unwrap();
    let got = crate::fanout::collect(&mut events, Some(1), Duration::from_secs(10)).await;
    assert_eq!(got.records[0].data().as_ref(), b"still here");
    assert!(!got.ended);
}

// ---------------------------------------------------------------------------------------
// 2. Records as large as the stream allows, under the default limits.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_record_is_admitted_on_an_idle_shard_and_the_rate_still_holds() {
    // Kinesis's default per-shard limits (1 MiB/s, 1,000 records/s).
    let broker = TestBroker::builder()
        .config_toml(config("status_delay = \"50ms\"", "fsync = \"never\"", ""))
        .start()
        .await;
    broker.create_stream("big", 1).await;
    let client = broker.client();
    let key = "k".repeat(256);
    let put = |data: Vec<u8>| {
        client
            .put_record()
            .stream_name("big")
            .partition_key(key.clone())
            .data(blob(data))
            .send()
    };
    // Data plus partition key of a maximal record exceed one second of rate.
    put(vec![1u8; MIB])
        .await
        .expect("a 1 MiB record with a 256-byte key is admitted");
    // The shard borrowed from the next second: another large write is throttled.
    let err = put(vec![2u8; 512 * 1024])
        .await
        .expect_err("the sustained rate still holds");
    assert!(
        format!("{err:?}").contains("ProvisionedThroughputExceeded"),
        "{err:?}"
    );
    // PutRecords with a maximal record, once the bucket has refilled.
    let entry = PutRecordsRequestEntry::builder()
        .partition_key(key.clone())
        .data(blob(vec![3u8; MIB]))
        .build()
        .unwrap();
    let mut accepted = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let out = client
            .put_records()
            .stream_name("big")
            .records(entry.clone())
            .send()
            .await
            .expect("PutRecords");
        if out.failed_record_count() == Some(0) {
            accepted = true;
            break;
        }
    }
    assert!(
        accepted,
        "a maximal record in PutRecords is admitted within 10 s"
    );
    // After UpdateMaxRecordSize, a 2 MiB record (two seconds of rate) is admitted too.
    client
        .update_max_record_size()
        .stream_arn(stream_arn("big"))
        .max_record_size_in_kib(2048)
        .send()
        .await
        .expect("UpdateMaxRecordSize");
    let mut accepted = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if put(vec![4u8; 2 * MIB]).await.is_ok() {
            accepted = true;
            break;
        }
    }
    assert!(accepted, "a 2 MiB record is admitted within 10 s");
    // Read them back under the 2 MiB/s read limit, backing off when throttled.
    let mut it = client
        .get_shard_iterator()
        .stream_name("big")
        .shard_id(SHARD0)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let mut sizes = Vec::new();
    for _ in 0..40 {
        if sizes.len() == 3 {
            break;
        }
        match client.get_records().shard_iterator(it.clone()).send().await {
            Ok(out) => {
                sizes.extend(out.records().iter().map(|r| r.data().as_ref().len()));
                it = out.next_shard_iterator().unwrap().to_string();
            }
            Err(e) => {
                assert!(
                    format!("{e:?}").contains("ProvisionedThroughputExceeded"),
                    "{e:?}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    assert_eq!(sizes, vec![MIB, MIB, 2 * MIB]);
}

// ---------------------------------------------------------------------------------------
// 3. Expired records stay expired when retention is raised.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_retention_does_not_bring_expired_records_back() {
    let mut broker = TestBroker::builder()
        .config_toml(config(
            "status_delay = \"50ms\"",
            "fsync = \"never\"\nretention_check_interval = \"1h\"",
            LIMITS_OFF,
        ))
        .test_clock(true)
        .start()
        .await;
    broker.create_stream("r", 1).await;
    let client = broker.client();
    let arrived = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
    for i in 0..5 {
        client
            .put_record()
            .stream_name("r")
            .partition_key("k")
            .data(blob(format!("old {i}")))
            .send()
            .await
            .unwrap();
    }
    broker.advance_clock(Duration::from_secs(25 * 3600)).await;
    assert!(read_shard(&client, "r", SHARD0).await.records.is_empty());
    client
        .increase_stream_retention_period()
        .stream_name("r")
        .retention_period_hours(48)
        .send()
        .await
        .expect("IncreaseStreamRetentionPeriod");
    client
        .put_record()
        .stream_name("r")
        .partition_key("k")
        .data(blob("new"))
        .send()
        .await
        .unwrap();
    check_only_new(&client, arrived).await;
    // Subscribers see the same.
    let consumer = register_active(&client, "r", "c").await;
    let mut events = subscribe(
        &client,
        &consumer,
        SHARD0,
        position(ShardIteratorType::TrimHorizon, None),
    )
    .await;
    let got = crate::fanout::collect(&mut events, Some(1), Duration::from_secs(10)).await;
    assert_eq!(
        texts(&got.records),
        vec!["new"],
        "SubscribeToShard TRIM_HORIZON"
    );
    drop(events);
    // And the watermark survives a restart.
    broker.restart().await;
    let client = broker.client();
    check_only_new(&client, arrived).await;
}

fn texts(recs: &[aws_sdk_kinesis::types::Record]) -> Vec<String> {
    recs.iter()
        .map(|r| String::from_utf8_lossy(r.data().as_ref()).into_owned())
        .collect()
}

/// Only the record written after the retention change is readable, by TRIM_HORIZON and by
/// AT_TIMESTAMP of the expired records' arrival.
async fn check_only_new(client: &aws_sdk_kinesis::Client, arrived: aws_smithy_types::DateTime) {
    let trim = read_shard(client, "r", SHARD0).await;
    assert_eq!(texts(&trim.records), vec!["new"], "TRIM_HORIZON");
    let it = client
        .get_shard_iterator()
        .stream_name("r")
        .shard_id(SHARD0)
        .shard_iterator_type(ShardIteratorType::AtTimestamp)
        .timestamp(arrived)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let at = read_from(client, it).await;
    assert_eq!(texts(&at.records), vec!["new"], "AT_TIMESTAMP");
}

// ---------------------------------------------------------------------------------------
// 4. Sequence numbers name the stream incarnation.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_of_a_recreated_stream_is_refused() {
    let broker = TestBroker::start().await;
    let client = broker.client();
    broker.create_stream("again", 1).await;
    let old = client
        .put_record()
        .stream_name("again")
        .partition_key("k")
        .data(blob("old"))
        .send()
        .await
        .unwrap()
        .sequence_number;
    assert_eq!(old.len(), 56, "AWS's 56-digit layout: {old}");
    client
        .delete_stream()
        .stream_name("again")
        .send()
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the stream is gone", || async {
        client
            .describe_stream_summary()
            .stream_name("again")
            .send()
            .await
            .is_err()
    })
    .await;
    // Give the new incarnation a later creation time in every case.
    tokio::time::sleep(Duration::from_millis(5)).await;
    broker.create_stream("again", 1).await;
    let new = client
        .put_record()
        .stream_name("again")
        .partition_key("k")
        .data(blob("new"))
        .send()
        .await
        .unwrap()
        .sequence_number;
    assert_ne!(old, new);
    let at = |kind: ShardIteratorType, seq: String| {
        client
            .get_shard_iterator()
            .stream_name("again")
            .shard_id(SHARD0)
            .shard_iterator_type(kind)
            .starting_sequence_number(seq)
            .send()
    };
    for kind in [
        ShardIteratorType::AfterSequenceNumber,
        ShardIteratorType::AtSequenceNumber,
    ] {
        let err = at(kind.clone(), old.clone())
            .await
            .expect_err("a number of the deleted stream");
        let msg = assert_code(Err::<(), _>(err), "InvalidArgumentException");
        assert_eq!(
            msg,
            format!(
                "StartingSequenceNumber {old} used in GetShardIterator on shard {SHARD0} in stream again under account {} is invalid because it did not come from this stream.",
                riffle_tests::ACCOUNT_ID
            )
        );
    }
    // A number of a record not written yet is refused the same way.
    // (Ten records on: the low digits of the number carry the record's position.)
    let future = {
        let tail: u128 = new[26..].parse().unwrap();
        format!("{}{:030}", &new[..26], tail + 10)
    };
    let res = at(ShardIteratorType::AtSequenceNumber, future).await;
    assert!(
        matches!(
            res.as_ref().map_err(|e| e.as_service_error()),
            Err(Some(GetShardIteratorError::InvalidArgumentException(_)))
        ),
        "{res:?}"
    );
    // The new stream's own numbers work, and its first record is not skipped.
    let it = at(ShardIteratorType::AtSequenceNumber, new.clone())
        .await
        .expect("own number")
        .shard_iterator
        .unwrap();
    let read = read_from(&client, it).await;
    assert_eq!(read.records.len(), 1);
    assert_eq!(read.records[0].data().as_ref(), b"new");
    // SubscribeToShard refuses the old number too.
    let consumer = register_active(&client, "again", "c").await;
    let sub = client
        .subscribe_to_shard()
        .consumer_arn(consumer)
        .shard_id(SHARD0)
        .starting_position(position(ShardIteratorType::AfterSequenceNumber, Some(&old)))
        .send()
        .await;
    assert_code(sub.map(|_| ()), "InvalidArgumentException");
}

// ---------------------------------------------------------------------------------------
// 5. Memory per request is bounded by its reservation, whatever the body holds.

/// A CBOR array header of `n` items.
fn cbor_array(n: u32) -> Vec<u8> {
    let mut v = vec![0x9a];
    v.extend_from_slice(&n.to_be_bytes());
    v
}

/// A CBOR text string.
fn cbor_text(s: &str) -> Vec<u8> {
    assert!(s.len() < 24);
    let mut v = vec![0x60 + s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

/// A minimal CBOR → JSON reader for the broker's error answers (maps of text).
fn cbor_to_json(b: &[u8]) -> serde_json::Value {
    fn item(b: &[u8], at: &mut usize) -> serde_json::Value {
        let head = b[*at];
        *at += 1;
        let (major, info) = (head >> 5, head & 31);
        let len = |at: &mut usize| -> usize {
            match info {
                0..=23 => info as usize,
                24 => {
                    *at += 1;
                    b[*at - 1] as usize
                }
                25 => {
                    *at += 2;
                    u16::from_be_bytes([b[*at - 2], b[*at - 1]]) as usize
                }
                26 => {
                    *at += 4;
                    u32::from_be_bytes(b[*at - 4..*at].try_into().unwrap()) as usize
                }
                _ => panic!("unexpected CBOR length {info}"),
            }
        };
        match major {
            0 => serde_json::json!(len(at)),
            3 => {
                let n = len(at);
                *at += n;
                serde_json::json!(String::from_utf8_lossy(&b[*at - n..*at]))
            }
            5 => {
                let n = len(at);
                let mut m = serde_json::Map::new();
                for _ in 0..n {
                    let k = item(b, at);
                    let v = item(b, at);
                    m.insert(k.as_str().unwrap().to_string(), v);
                }
                serde_json::Value::Object(m)
            }
            _ => panic!("unexpected CBOR major type {major}"),
        }
    }
    item(b, &mut 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_memory_is_bounded_by_its_reservation() {
    let broker = TestBroker::start().await;
    broker.create_stream("m", 1).await;
    let pid = broker.pid();
    let base = peak_rss(pid);

    // 16.5 MB of empty PutRecords entries: a ValidationException of bounded size.
    let n = 5_500_000;
    let mut body = String::with_capacity(3 * n + 64);
    body.push_str("{\"StreamName\":\"m\",\"Records\":[");
    for i in 0..n {
        if i > 0 {
            body.push(',');
        }
        body.push_str("{}");
    }
    body.push_str("]}");
    let resp = call(&broker, JSON, "PutRecords", body.as_bytes()).await;
    assert_eq!(resp.status, 400);
    let (kind, msg) = error_of(&resp);
    assert_eq!(kind, "ValidationException");
    let msg = msg.unwrap();
    assert!(msg.len() < 64 * 1024, "message of {} bytes", msg.len());
    assert!(
        msg.contains("at 'records' failed to satisfy constraint: Member must have length less than or equal to 500"),
        "{}",
        &msg[..300.min(msg.len())]
    );
    drop(body);

    // 16 MB of empty CBOR maps.
    let n = 16_000_000u32;
    let mut cbor = vec![0xa2];
    cbor.extend(cbor_text("StreamName"));
    cbor.extend(cbor_text("m"));
    cbor.extend(cbor_text("Records"));
    cbor.extend(cbor_array(n));
    cbor.resize(cbor.len() + n as usize, 0xa0);
    let resp = call(&broker, CBOR, "PutRecords", &cbor).await;
    assert_eq!(resp.status, 400);
    assert_eq!(error_of(&resp).0, "ValidationException");
    drop(cbor);

    // A tag map of over a million entries (13 MB).
    let mut body = String::from("{\"StreamName\":\"m\",\"Tags\":{");
    for i in 0..1_200_000 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!("\"{i:x}\":\"\""));
    }
    body.push_str("}}");
    let resp = call(&broker, JSON, "AddTagsToStream", body.as_bytes()).await;
    assert_eq!(resp.status, 400);
    let (kind, msg) = error_of(&resp);
    assert_eq!(kind, "ValidationException");
    assert!(msg.unwrap().len() < 64 * 1024);
    drop(body);

    let peak = peak_rss(pid);
    eprintln!(
        "peak RSS {} MiB (start {} MiB) after 16 MB bodies of empty items",
        peak / MIB as u64,
        base / MIB as u64
    );
    assert!(
        peak < base + 100 * MIB as u64,
        "a 16 MB body may cost a small multiple of 16 MB, not gigabytes: peak {} MiB",
        peak / MIB as u64
    );

    // Many large bodies at once: the 256 MiB budget bounds the process.
    let mut calls = Vec::new();
    let data = "QUFB".repeat(3_900_000); // 15.6 MB of base64 (an 11 MiB record)
    let big = format!("{{\"StreamName\":\"m\",\"PartitionKey\":\"k\",\"Data\":\"{data}\"}}");
    drop(data);
    let big = std::sync::Arc::new(big);
    let broker = std::sync::Arc::new(broker);
    for _ in 0..24 {
        let (broker, big) = (broker.clone(), big.clone());
        calls.push(tokio::spawn(async move {
            // Written by hand: these wait for the budget longer than the harness allows.
            let mut s = TcpStream::connect(broker.api_addr()).await.unwrap();
            let head = format!(
                "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: {JSON}\r\n\
                 X-Amz-Target: Kinesis_20131202.PutRecord\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                broker.api_addr(),
                big.len()
            );
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(big.as_bytes()).await.unwrap();
            let got = read_until_closed(&mut s, Duration::from_secs(120))
                .await
                .expect("an answer within 120 s");
            let text = String::from_utf8_lossy(&got[..12.min(got.len())]).into_owned();
            text[9..12].parse::<u16>().unwrap_or(0)
        }));
    }
    for c in calls {
        let status = c.await.unwrap();
        assert!(status == 400 || status == 503, "status {status}");
    }
    let peak = peak_rss(pid);
    eprintln!(
        "peak RSS {} MiB after 24 concurrent 16 MiB bodies",
        peak / MIB as u64
    );
    assert!(
        peak < base + 256 * MIB as u64 + 100 * MIB as u64,
        "24 × 16 MiB at once stay within the budget: peak {} MiB",
        peak / MIB as u64
    );
}

// ---------------------------------------------------------------------------------------
// 6. SIGTERM ends subscriptions first.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_subscriptions_cleanly_and_exits_before_the_grace_period() {
    let cfg = format!(
        "shutdown_grace = \"30s\"\n{}",
        config("status_delay = \"50ms\"", "fsync = \"never\"", LIMITS_OFF)
    );
    let mut broker = TestBroker::builder().config_toml(cfg).start().await;
    broker.create_stream("t", 1).await;
    let client = broker.client();
    let consumer = register_active(&client, "t", "c").await;
    let mut events = subscribe(
        &client,
        &consumer,
        SHARD0,
        position(ShardIteratorType::Latest, None),
    )
    .await;
    let ended = tokio::spawn(async move {
        let started = Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_secs(40), events.recv()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => return Ok(started.elapsed()),
                Ok(Err(e)) => return Err(format!("{e:?}")),
                Err(_) => return Err("no end within 40 s".into()),
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let status = broker.terminate().await;
    let took = t.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        took < Duration::from_secs(10),
        "shutdown took {took:?} with a 30 s grace period"
    );
    let end = ended.await.unwrap();
    assert!(
        end.is_ok(),
        "the subscriber sees its stream end cleanly: {end:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 7. One decoding rule for JSON and CBOR.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_cbor_follow_one_rule() {
    let broker = TestBroker::start().await;
    // A member given twice.
    let json = br#"{"StreamName":"a","StreamName":"b","ShardCount":1}"#;
    let mut cbor = vec![0xa3];
    cbor.extend(cbor_text("StreamName"));
    cbor.extend(cbor_text("a"));
    cbor.extend(cbor_text("StreamName"));
    cbor.extend(cbor_text("b"));
    cbor.extend(cbor_text("ShardCount"));
    cbor.push(0x01);
    let j = call(&broker, JSON, "CreateStream", json).await;
    let c = call(&broker, CBOR, "CreateStream", &cbor).await;
    assert_eq!((j.status, c.status), (400, 400));
    let want = (
        "SerializationException".to_string(),
        Some("Duplicate field 'StreamName'".to_string()),
    );
    assert_eq!(error_of(&j), want);
    assert_eq!(error_of(&c), want);
    // An integer beyond i64, and beyond 64 bits.
    for (json, cbor_int) in [
        (
            &br#"{"StreamName":"x","ShardCount":10000000000000000000}"#[..],
            vec![0x1b, 0x8a, 0xc7, 0x23, 0x04, 0x89, 0xe8, 0x00, 0x00],
        ),
        (
            &br#"{"StreamName":"x","ShardCount":-10000000000000000000}"#[..],
            vec![0x3b, 0x8a, 0xc7, 0x23, 0x04, 0x89, 0xe7, 0xff, 0xff],
        ),
    ] {
        let mut cbor = vec![0xa2];
        cbor.extend(cbor_text("StreamName"));
        cbor.extend(cbor_text("x"));
        cbor.extend(cbor_text("ShardCount"));
        cbor.extend(cbor_int);
        let j = call(&broker, JSON, "CreateStream", json).await;
        let c = call(&broker, CBOR, "CreateStream", &cbor).await;
        assert_eq!(error_of(&j), error_of(&c));
        let (kind, msg) = error_of(&j);
        assert_eq!(kind, "SerializationException");
        assert!(
            msg.as_deref().is_some_and(|m| m.starts_with(
                "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an Integer"
            )),
            "{msg:?}"
        );
    }
    // Members Kinesis models as Integer, of the wrong type: AWS names the Integer.
    for (op, json, want) in [
        (
            "CreateStream",
            &br#"{"StreamName":"x","ShardCount":"3"}"#[..],
            "class java.lang.String can not be converted to an Integer",
        ),
        (
            "CreateStream",
            br#"{"StreamName":"x","ShardCount":true}"#,
            "class java.lang.Boolean can not be converted to an Integer",
        ),
        (
            "GetRecords",
            br#"{"ShardIterator":"abc","Limit":"10"}"#,
            "class java.lang.String can not be converted to an Integer",
        ),
        (
            "IncreaseStreamRetentionPeriod",
            br#"{"StreamName":"x","RetentionPeriodHours":"48"}"#,
            "class java.lang.String can not be converted to an Integer",
        ),
        (
            "ListStreams",
            br#"{"Limit":"5"}"#,
            "class java.lang.String can not be converted to an Integer",
        ),
        (
            "UpdateShardCount",
            br#"{"StreamName":"x","TargetShardCount":"2","ScalingType":"UNIFORM_SCALING"}"#,
            "class java.lang.String can not be converted to an Integer",
        ),
    ] {
        let r = call(&broker, JSON, op, json).await;
        assert_eq!(
            error_of(&r),
            ("SerializationException".to_string(), Some(want.to_string())),
            "{op} {}",
            String::from_utf8_lossy(json)
        );
    }
    let mut cbor = vec![0xa2];
    cbor.extend(cbor_text("StreamName"));
    cbor.extend(cbor_text("x"));
    cbor.extend(cbor_text("ShardCount"));
    cbor.extend(cbor_text("3"));
    let c = call(&broker, CBOR, "CreateStream", &cbor).await;
    assert_eq!(
        error_of(&c),
        (
            "SerializationException".to_string(),
            Some("class java.lang.String can not be converted to an Integer".to_string())
        )
    );
    // Invalid UTF-8 in a member the operation does not know.
    let mut body = br#"{"StreamName":"x","Other":""#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#""}"#);
    let resp = call(&broker, JSON, "DescribeStreamSummary", &body).await;
    assert_eq!(
        error_of(&resp),
        ("SerializationException".to_string(), None)
    );
}
