//! Every query of the Grafana dashboard (charts/riffle/files/dashboard.json) evaluated by a
//! real Prometheus (Debian's package) scraping a real broker under load and the operator
//! in standalone mode (which also shows standalone mode driving a broker: it creates the
//! stream from a manifest file and autoscales it).

use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::{
    ConsumerStatus, PutRecordsRequestEntry, ShardIteratorType, StartingPosition,
    SubscribeToShardEventStream,
};
use aws_smithy_types::Blob;
use riffle_tests::TestBroker;
use serde_json::Value;
use tokio::process::Command;

use crate::chart::{root, tools};
use crate::Operator;

const BROKER_CONFIG: &str = r#"
region = "us-east-1"
account_id = "000000000000"
[streams]
status_delay = "50ms"
[storage]
fsync = "never"
[control_plane]
enabled = false
[limits.streams.dash]
write_records_per_second = 50
get_records_per_second = 5
"#;

const STREAM: &str = "apiVersion: riffle.dev/v1alpha1
kind: Stream
metadata: {name: dash}
spec:
  shardCount: 1
  shardLimits: {writeRecordsPerSecond: 50}
  autoscaling:
    enabled: true
    minShards: 1
    maxShards: 2
    window: 3s
    scaleUpCooldown: 3s
    scaleDownCooldown: 1h
";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// RFC 3986 percent-encoding of a form value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every `expr` of every panel, with Grafana's variables replaced.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = root().join("charts/riffle/files/dashboard.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "20s")
                .replace("$stream", ".*");
            out.push((p["title"].as_str().unwrap().to_string(), expr));
        }
    }
    out
}

async fn query(prom: SocketAddr, expr: &str) -> Value {
    let body = format!("query={}", encode(expr));
    let resp = riffle_tests::http::request(
        prom,
        "POST",
        "/api/v1/query",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
    .await
    .expect("query Prometheus");
    let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    assert_eq!(v["status"], "success", "{expr}: {}", resp.body_text());
    v["data"]["result"].clone()
}

/// Has at least one sample that is a number (not NaN).
fn has_data(result: &Value) -> bool {
    result.as_array().is_some_and(|r| {
        r.iter().any(|s| {
            s["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| !v.is_nan())
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "{queries:?}");
    let t = tools();
    let broker = TestBroker::builder()
        .config_toml(BROKER_CONFIG)
        .start()
        .await;

    // The operator in standalone mode: the manifest directory, the broker, its metrics.
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(manifests.join("dash.yaml"), STREAM).unwrap();
    let metrics_url = format!("{}/metrics", broker.admin_url());
    let endpoint = broker.endpoint();
    let op = Operator::spawn(
        &[
            "standalone",
            "--manifests",
            manifests.to_str().unwrap(),
            "--endpoint",
            &endpoint,
            "--metrics-url",
            &metrics_url,
            "--rescan",
            "1s",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        None,
        "standalone",
    );
    let op_metrics = op.wait_metrics_addr().await;

    // A real Prometheus scraping both every second.
    let prom_port = free_port();
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         rule_files: [{:?}]\n\
         scrape_configs:\n\
         - job_name: riffle-broker\n  static_configs: [{{targets: ['{}']}}]\n\
         - job_name: riffle-operator\n  static_configs: [{{targets: ['{op_metrics}']}}]\n",
        root()
            .join("charts/riffle/files/alerts.yaml")
            .display()
            .to_string(),
        broker.admin_addr(),
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let mut prom = Command::new(&t.prometheus)
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start prometheus");
    let prom_log = crate::cluster::forward(&mut prom, "kube-prometheus");
    let prom_addr: SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = riffle_tests::http::request(prom_addr, "GET", "/-/ready", &[], b"").await;
        if ready.is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus not ready: {:?}",
            prom_log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Load: 100 records/s against 50 per shard (throttled; the autoscaler goes to 2 shards).
    let client = broker.client();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut n = 0u64;
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let entries = (0..10)
                    .map(|_| {
                        n += 1;
                        PutRecordsRequestEntry::builder()
                            .partition_key(format!("k{n}"))
                            .data(Blob::new(vec![1u8; 200]))
                            .build()
                            .unwrap()
                    })
                    .collect::<Vec<_>>();
                let _ = client
                    .put_records()
                    .stream_name("dash")
                    .set_records(Some(entries))
                    .send()
                    .await;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let open = loop {
        let open = crate::open_shard_ids(&broker, "dash").await;
        if open.len() == 2 {
            break open;
        }
        assert!(
            Instant::now() < deadline,
            "standalone mode did not scale dash to 2 shards: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // Readers: an enhanced fan-out subscription per open shard (propagation delay), and a
    // poller at 10 GetRecords/s on one shard against its 5/s (read throttling, iterator age).
    let arn = client
        .describe_stream_summary()
        .stream_name("dash")
        .send()
        .await
        .unwrap()
        .stream_description_summary()
        .unwrap()
        .stream_arn()
        .to_string();
    let consumer = client
        .register_stream_consumer()
        .stream_arn(&arn)
        .consumer_name("dash-board")
        .send()
        .await
        .unwrap()
        .consumer
        .unwrap()
        .consumer_arn
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = client
            .describe_stream_consumer()
            .consumer_arn(&consumer)
            .send()
            .await
            .unwrap();
        if d.consumer_description().unwrap().consumer_status() == &ConsumerStatus::Active {
            break;
        }
        assert!(Instant::now() < deadline, "consumer not ACTIVE");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut readers = Vec::new();
    for shard in &open {
        let (client, stop, consumer, shard) = (
            client.clone(),
            stop.clone(),
            consumer.clone(),
            shard.clone(),
        );
        readers.push(tokio::spawn(async move {
            let pos = StartingPosition::builder()
                .r#type(ShardIteratorType::Latest)
                .build()
                .unwrap();
            let Ok(out) = client
                .subscribe_to_shard()
                .consumer_arn(&consumer)
                .shard_id(&shard)
                .starting_position(pos)
                .send()
                .await
            else {
                return;
            };
            let mut rx = out.event_stream;
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
                    Ok(Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(_))))
                    | Err(_) => {}
                    _ => return,
                }
            }
        }));
    }
    let poller = {
        let (client, stop, shard) = (client.clone(), stop.clone(), open[0].clone());
        tokio::spawn(async move {
            let mut it = client
                .get_shard_iterator()
                .stream_name("dash")
                .shard_id(&shard)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .unwrap()
                .shard_iterator
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                // Few records per call, so the iterator stays behind the head (age > 0).
                if let Ok(out) = client
                    .get_records()
                    .shard_iterator(&it)
                    .limit(5)
                    .send()
                    .await
                {
                    match out.next_shard_iterator {
                        Some(next) => it = next,
                        None => return,
                    }
                }
            }
        })
    };

    // Every query returns a number (bounded wait: rates need a few scrapes).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut missing: Vec<&(String, String)>;
    loop {
        missing = Vec::new();
        for q in &queries {
            if !has_data(&query(prom_addr, &q.1).await) {
                missing.push(q);
            }
        }
        if missing.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    assert!(
        missing.is_empty(),
        "dashboard queries without data: {missing:#?}"
    );
    // The throttling was real, not only a zero rate.
    let throttled = query(prom_addr, "sum(riffle_write_throttled_records_total)").await;
    let read_throttled = query(prom_addr, "sum(riffle_read_throttled_requests_total)").await;
    for (what, r) in [("write", throttled), ("read", read_throttled)] {
        let v: f64 = r[0]["value"][1].as_str().unwrap().parse().unwrap();
        assert!(v > 0.0, "no {what} throttling happened");
    }
    // And the alert rules load in the real server.
    let rules = riffle_tests::http::request(prom_addr, "GET", "/api/v1/rules", &[], b"")
        .await
        .unwrap();
    assert!(
        rules.body_text().contains("RiffleReshardBudgetExhausted"),
        "{}",
        rules.body_text()
    );
    // The standalone operator kept its ledger on disk.
    let state = std::fs::read_to_string(manifests.join(".riffle-state/dash.json")).unwrap();
    assert!(state.contains("\"reshardHistory\""), "{state}");

    let _ = writer.await;
    let _ = poller.await;
    for r in readers {
        let _ = r.await;
    }
    op.terminate().await;
    let _ = prom.start_kill();
    let _ = prom.wait().await;
}
