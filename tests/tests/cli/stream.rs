//! `riffle stream …`, `riffle top`, completions, man pages, and every error path.

use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_from_creation_to_deletion() {
    let broker = TestBroker::start().await;
    let ep = broker.endpoint();
    riffle(
        &ep,
        &[
            "stream", "create", "orders", "--shards", "2", "--tag", "team=pay",
        ],
    )
    .await
    .ok();
    let list = riffle(&ep, &["stream", "list"]).await;
    let rows = list.json_lines();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["stream"], "orders");
    assert_eq!(rows[0]["status"], "ACTIVE");
    assert_eq!(rows[0]["open_shards"], 2);

    let d = riffle(&ep, &["stream", "describe", "orders"])
        .await
        .json_lines();
    let shards = d[0]["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    assert!(shards
        .iter()
        .all(|s| s["share_percent"] == 50.0 && s["state"] == "open"));

    // Reshard 2 -> 5: UpdateShardCount at most doubles, so two steps (2 -> 4 -> 5).
    let r = riffle(&ep, &["stream", "reshard", "orders", "--shards", "5"]).await;
    let steps: Vec<_> = r
        .json_lines()
        .into_iter()
        .filter(|l| l.get("step").is_some())
        .map(|l| (l["from"].as_u64().unwrap(), l["to"].as_u64().unwrap()))
        .collect();
    assert_eq!(steps, vec![(2, 4), (4, 5)], "{}", r.stdout);
    let d = riffle(&ep, &["stream", "describe", "orders"])
        .await
        .json_lines();
    assert_eq!(d[0]["open_shards"], 5);

    // Split the first open shard in the middle, then merge its children back.
    let open: Vec<String> = d[0]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "open")
        .map(|s| s["shard"].as_str().unwrap().to_owned())
        .collect();
    riffle(&ep, &["stream", "split", "orders", &open[0]])
        .await
        .ok();
    let d = riffle(&ep, &["stream", "describe", "orders"])
        .await
        .json_lines();
    let children: Vec<String> = d[0]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["parent"] == open[0].as_str())
        .map(|s| s["shard"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(children.len(), 2);
    riffle(
        &ep,
        &["stream", "merge", "orders", &children[0], &children[1]],
    )
    .await
    .ok();
    let d = riffle(&ep, &["stream", "describe", "orders"])
        .await
        .json_lines();
    assert_eq!(d[0]["open_shards"], 5);

    riffle(&ep, &["stream", "retention", "orders", "--hours", "48"])
        .await
        .ok();
    let d = riffle(&ep, &["stream", "describe", "orders"])
        .await
        .json_lines();
    assert_eq!(d[0]["retention_hours"], 48);

    let tags = riffle(
        &ep,
        &[
            "stream", "tag", "orders", "--add", "env=dev", "--remove", "team",
        ],
    )
    .await
    .json_lines();
    assert_eq!(
        tags,
        vec![serde_json::json!({"key": "env", "value": "dev"})]
    );

    riffle(&ep, &["stream", "delete", "orders"]).await.ok();
    let list = riffle(&ep, &["stream", "list"]).await;
    assert!(list.json_lines().is_empty(), "{}", list.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_and_exit_codes_are_distinct() {
    let broker = TestBroker::start().await;
    let ep = broker.endpoint();
    let r = riffle(&ep, &["stream", "describe", "nope"]).await;
    assert_one_line_error(&r, 3, "ResourceNotFoundException");
    assert!(
        r.stderr.contains("riffle stream list"),
        "a hint: {}",
        r.stderr
    );
    let r = riffle(&ep, &["stream", "create", "bad name!"]).await;
    assert_one_line_error(&r, 1, "ValidationException");
    let r = riffle(&ep, &["stream", "reshard", "nope", "--shards", "2"]).await;
    assert_one_line_error(&r, 3, "ResourceNotFoundException");
    // A broker that is not there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let r = riffle(&format!("http://{closed}"), &["stream", "list"]).await;
    assert_one_line_error(&r, 4, "cannot reach");
    // A bad flag: clap's usage error in one line (exit 2).
    let r = riffle(&ep, &["stream", "create", "x", "--shards", "many"]).await;
    assert_one_line_error(&r, 2, "invalid value 'many' for '--shards <SHARDS>'");
    let r = riffle(&ep, &["stream", "list", "--bogus"]).await;
    assert_one_line_error(&r, 2, "unexpected argument '--bogus'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_reports_per_shard_rates_from_the_metrics_endpoint() {
    let broker = TestBroker::start().await;
    broker.create_stream("hot", 2).await;
    let client = broker.client();
    let metrics = format!("{}/metrics", broker.admin_url());
    let load = tokio::spawn(async move {
        for i in 0..400 {
            let _ = client
                .put_record()
                .stream_name("hot")
                .partition_key(format!("k{i}"))
                .data(aws_smithy_types::Blob::new(vec![0u8; 1000]))
                .send()
                .await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let r = riffle(
        &broker.endpoint(),
        &[
            "top",
            "hot",
            "--metrics",
            &metrics,
            "--interval",
            "1s",
            "--iterations",
            "1",
        ],
    )
    .await;
    load.abort();
    let rows = r.json_lines();
    assert_eq!(rows.len(), 2, "{}", r.stdout);
    let total: f64 = rows
        .iter()
        .map(|r| r["in_records_per_s"].as_f64().unwrap())
        .sum();
    assert!(total > 0.0, "records are flowing: {rows:?}");
    assert!(rows.iter().all(|r| r["stream"] == "hot"));
    let r = riffle(&broker.endpoint(), &["top", "nope", "--metrics", &metrics]).await;
    assert_one_line_error(&r, 3, "ResourceNotFoundException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_man_pages() {
    let r = riffle("http://127.0.0.1:1", &["completions", "bash"]).await;
    assert!(r.ok().contains("riffle"), "a bash completion script");
    let dir = tempfile::tempdir().unwrap();
    riffle(
        "http://127.0.0.1:1",
        &["man", "--dir", dir.path().to_str().unwrap()],
    )
    .await
    .ok();
    let pages: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(pages.contains(&"riffle.1".to_string()), "{pages:?}");
    assert!(
        pages.iter().any(|p| p.starts_with("riffle-stream")),
        "{pages:?}"
    );
}
