//! `riffle produce` and `riffle consume`: data through the real binary and the real broker.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

use crate::common::{assert_one_line_error, riffle, Run, TestBroker};

/// `n` distinct lines of varying length, some with spaces, quotes and non-ASCII text.
fn lines(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| match i % 4 {
            0 => format!(
                "{{\"id\":{i},\"user\":\"u{}\",\"note\":\"caf\u{e9} \\\"{i}\\\"\"}}",
                i % 97
            ),
            1 => format!("line {i:07} {}", "x".repeat(i % 60)),
            2 => format!("{i}\t\u{1f6b2} bike unlocked"),
            _ => format!("plain-{i}"),
        })
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

/// The produce summary (the JSON line it prints when piped).
fn summary(r: &Run) -> serde_json::Value {
    r.json_lines()
        .pop()
        .unwrap_or_else(|| panic!("no summary: {r:?}"))
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn round_trip(aggregate: bool) {
    let broker = TestBroker::start().await;
    let ep = broker.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let input = lines(200_000);
    let file = dir.path().join("in.txt");
    write_lines(&file, &input);
    riffle(&ep, &["stream", "create", "rt", "--shards", "4"])
        .await
        .ok();

    // A debug build on a loaded machine may put only a few thousand unaggregated records a
    // second, and the file is read faster than that: records wait in the producer's buffer
    // longer than the default 30 s TTL (which counts from `put`, as the KPL's does). This
    // test is about the round trip, not the TTL (tests/tests/kpl covers expiry).
    let mut args = vec![
        "produce",
        "rt",
        file.to_str().unwrap(),
        "--key",
        "k{line}",
        "--record-ttl",
        "10m",
    ];
    if !aggregate {
        args.push("--no-aggregate");
    }
    let p = riffle(&ep, &args).await;
    p.ok();
    let s = summary(&p);
    assert_eq!(s["records"], 200_000, "{s}");
    assert_eq!(s["failed"], 0, "{s}");

    // Back, identical: every line exactly once.
    let c = riffle(&ep, &["consume", "rt"]).await;
    let got: Vec<String> = c.ok().lines().map(str::to_owned).collect();
    assert_eq!(got.len(), input.len(), "as many lines as were produced");
    assert!(sorted(got) == sorted(input.clone()), "the same lines");

    // Aggregated or not, as asked: 200,000 user records in far fewer Kinesis records when
    // aggregated, one each when not.
    let client = broker.client();
    let mut kinesis_records = 0usize;
    for shard in client
        .list_shards()
        .stream_name("rt")
        .send()
        .await
        .unwrap()
        .shards()
    {
        let mut it = client
            .get_shard_iterator()
            .stream_name("rt")
            .shard_id(shard.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(i) = it {
            let page = client.get_records().shard_iterator(i).send().await.unwrap();
            kinesis_records += page.records().len();
            if page.records().is_empty() && page.millis_behind_latest() == Some(0) {
                break;
            }
            it = page.next_shard_iterator;
        }
    }
    if aggregate {
        assert!(
            kinesis_records < 20_000,
            "aggregated: {kinesis_records} Kinesis records for 200,000 lines"
        );
    } else {
        assert_eq!(kinesis_records, 200_000);
    }

    // JSON output: shard, sequence and sub-sequence numbers, key, arrival time.
    let j = riffle(&ep, &["consume", "rt", "--format", "json", "--count", "5"]).await;
    let recs = j.json_lines();
    assert_eq!(recs.len(), 5, "--count 5: {}", j.stdout);
    for r in &recs {
        assert!(r["shard"].as_str().unwrap().starts_with("shardId-"), "{r}");
        assert!(r["sequence_number"].as_str().unwrap().len() >= 20, "{r}");
        assert!(r["partition_key"].as_str().unwrap().starts_with('k'), "{r}");
        assert!(r["arrival"].as_str().unwrap().ends_with('Z'), "{r}");
        let line: usize = r["partition_key"].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(r["data"], input[line - 1], "the data of line {line}");
        assert!(r["sub_sequence_number"].is_u64(), "{r}");
    }
    if aggregate {
        assert!(
            recs.iter().any(|r| r["sub_sequence_number"] != 0),
            "aggregated records have sub-sequence numbers: {recs:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_thousand_lines_round_trip_aggregated() {
    round_trip(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_thousand_lines_round_trip_unaggregated() {
    round_trip(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_json_fields_positions_shards_and_failed_records() {
    let broker = TestBroker::start().await;
    let ep = broker.endpoint();
    let dir = tempfile::tempdir().unwrap();
    riffle(&ep, &["stream", "create", "j", "--shards", "2"])
        .await
        .ok();
    let file = dir.path().join("in.jsonl");
    write_lines(
        &file,
        &[
            r#"{"user":{"id":"alice"},"n":1}"#.to_owned(),
            r#"{"user":{"id":"bob"},"n":2}"#.to_owned(),
            r#"{"n":3}"#.to_owned(),
            "not json".to_owned(),
            r#"{"user":{"id":"alice"},"n":5}"#.to_owned(),
        ],
    );
    let failed = dir.path().join("failed.jsonl");
    let p = riffle(
        &ep,
        &[
            "produce",
            "j",
            file.to_str().unwrap(),
            "--key-field",
            "user.id",
            "--failed",
            failed.to_str().unwrap(),
        ],
    )
    .await;
    // Two lines without the field: exit 5, one error line, the records in the file.
    assert_eq!(p.code, 5, "{p:?}");
    assert_eq!(p.stderr.lines().count(), 1, "{}", p.stderr);
    assert!(p.stderr.contains("2 records were not put"), "{}", p.stderr);
    let s = summary(&p);
    assert_eq!(
        (s["records"].clone(), s["failed"].clone()),
        (3.into(), 2.into())
    );
    let failures: Vec<serde_json::Value> = std::fs::read_to_string(&failed)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0]["line"], 3);
    assert_eq!(failures[0]["data"], r#"{"n":3}"#);
    assert!(failures[0]["error"]
        .as_str()
        .unwrap()
        .contains("no field \"user.id\""));
    assert_eq!(failures[1]["line"], 4);

    let all = riffle(&ep, &["consume", "j", "--format", "json"])
        .await
        .json_lines();
    assert_eq!(all.len(), 3);
    let alice: Vec<&serde_json::Value> = all
        .iter()
        .filter(|r| r["partition_key"] == "alice")
        .collect();
    assert_eq!(alice.len(), 2, "{all:?}");
    assert_eq!(alice[0]["shard"], alice[1]["shard"], "one key, one shard");
    assert!(
        alice[0]["data"].as_str().unwrap().contains("\"n\":1")
            && alice[1]["data"].as_str().unwrap().contains("\"n\":5"),
        "in order within the key: {alice:?}"
    );

    // --shard reads one shard; --from <sequence> starts at a record.
    let shard = alice[0]["shard"].as_str().unwrap();
    let one = riffle(&ep, &["consume", "j", "--shard", shard, "--format", "json"])
        .await
        .json_lines();
    assert!(
        one.iter().all(|r| r["shard"] == shard) && one.len() >= 2,
        "{one:?}"
    );
    let seq = alice[0]["sequence_number"].as_str().unwrap();
    let after = riffle(&ep, &["consume", "j", "--from", seq, "--format", "json"])
        .await
        .json_lines();
    assert!(
        after
            .iter()
            .all(|r| r["sequence_number"].as_str().unwrap() >= seq)
            && after.iter().all(|r| r["shard"] == shard),
        "{after:?}"
    );
    assert!(
        after.iter().any(|r| r["data"] == alice[0]["data"]),
        "{after:?}"
    );
    assert!(
        after.iter().any(|r| r["data"] == alice[1]["data"]),
        "{after:?}"
    );
    // A time in the future is Kinesis's InvalidArgumentException, passed on in one line.
    let later = riffle(&ep, &["consume", "j", "--from", "2999-01-01T00:00:00Z"]).await;
    assert_one_line_error(&later, 1, "InvalidArgumentException");
    // From a time before everything: all of it.
    let since = riffle(&ep, &["consume", "j", "--from", "2020-01-01T00:00:00Z"]).await;
    assert_eq!(since.ok().lines().count(), 3);
    // Through an enhanced fan-out consumer (registered on the way): the same records.
    let fan = riffle(
        &ep,
        &["consume", "j", "--fan-out", "cli-efo", "--format", "json"],
    )
    .await
    .json_lines();
    let mut a: Vec<String> = all.iter().map(|r| r["data"].to_string()).collect();
    let mut b: Vec<String> = fan.iter().map(|r| r["data"].to_string()).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "fan-out reads what polling reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_consume_errors_are_one_line() {
    let broker = TestBroker::start().await;
    let ep = broker.endpoint();
    let r = riffle(&ep, &["consume", "nope"]).await;
    assert_one_line_error(&r, 3, "ResourceNotFoundException");
    let r = riffle(&ep, &["produce", "nope", "/dev/null"]).await;
    assert_one_line_error(&r, 3, "ResourceNotFoundException");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let down = format!("http://{closed}");
    let r = riffle(&down, &["produce", "s", "/dev/null"]).await;
    assert_one_line_error(&r, 4, "cannot reach");
    let r = riffle(&down, &["consume", "s"]).await;
    assert_one_line_error(&r, 4, "cannot reach");
    let r = riffle(&ep, &["consume", "s", "--from", "yesterday"]).await;
    assert_one_line_error(&r, 2, "--from \"yesterday\"");
    let r = riffle(&ep, &["produce", "s", "--key", "{bad}"]).await;
    assert_one_line_error(&r, 2, "unknown placeholder");
    let r = riffle(&ep, &["consume", "s", "--count", "lots"]).await;
    assert_one_line_error(&r, 2, "invalid value 'lots'");
    broker.create_stream("s", 1).await;
    let r = riffle(&ep, &["produce", "s", "/no/such/file"]).await;
    assert_one_line_error(&r, 1, "cannot read /no/such/file");
}

/// A `riffle` process whose stdout lines are collected as they come.
struct Worker {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

fn spawn_consumer(ep: &str, args: &[&str]) -> Worker {
    spawn_consumer_env(ep, args, &[])
}

fn spawn_consumer_env(ep: &str, args: &[&str], env: &[(&str, &str)]) -> Worker {
    let mut cmd = tokio::process::Command::new(riffle_tests::cli_binary());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.arg("--endpoint")
        .arg(ep)
        .args(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn riffle");
    let stdout = child.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    tokio::spawn(async move {
        let mut r = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(l)) = r.next_line().await {
            sink.lock().unwrap().push(l);
        }
    });
    Worker { child, lines }
}

/// SIGTERM, then a clean exit (status 0) within 30 s.
async fn terminate(w: &mut Worker) {
    let pid = w.child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(30), w.child.wait())
        .await
        .expect("exits within 30 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

fn data_of(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["shard"].as_str().unwrap().to_owned(),
                v["data"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_three_shares_the_shards_and_survives_losing_one() {
    let broker = TestBroker::start().await;
    let ep = broker.endpoint();
    let dir = tempfile::tempdir().unwrap();
    riffle(&ep, &["stream", "create", "g", "--shards", "6"])
        .await
        .ok();
    let leases = format!("sqlite:{}", dir.path().join("leases.db").display());
    let args = [
        "consume",
        "g",
        "--group",
        "billing",
        "--lease-store",
        &leases,
        "--format",
        "json",
    ];
    let mut workers: Vec<Worker> = (0..3).map(|_| spawn_consumer(&ep, &args)).collect();
    // Let the three balance the six leases before data flows.
    tokio::time::sleep(Duration::from_secs(8)).await;

    let n = 30_000usize;
    let input: Vec<String> = (1..=n).map(|i| format!("event-{i}")).collect();
    let file = dir.path().join("in.txt");
    write_lines(&file, &input);
    let ep2 = ep.clone();
    let file2 = file.clone();
    let producer = tokio::spawn(async move {
        riffle(
            &ep2,
            &[
                "produce",
                "g",
                file2.to_str().unwrap(),
                "--key",
                "{line}",
                "--rate",
                "3000",
            ],
        )
        .await
    });
    // A third of the way in, one worker is killed (no chance to hand over).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before: Vec<Vec<(String, String)>> = workers
        .iter()
        .map(|w| data_of(&w.lines.lock().unwrap()))
        .collect();
    for (i, got) in before.iter().enumerate() {
        assert!(
            !got.is_empty(),
            "worker {i} printed records before the kill"
        );
    }
    let shards_before: Vec<HashSet<&String>> = before
        .iter()
        .map(|g| g.iter().map(|(s, _)| s).collect())
        .collect();
    let all_shards: HashSet<&String> = shards_before.iter().flatten().copied().collect();
    assert_eq!(
        all_shards.len(),
        6,
        "all six shards read: {shards_before:?}"
    );
    assert!(
        shards_before.iter().all(|s| s.len() < 6),
        "the shards are split between the workers: {shards_before:?}"
    );
    workers[0].child.start_kill().unwrap();
    workers[0].child.wait().await.unwrap();

    let p = producer.await.unwrap();
    p.ok();
    assert_eq!(summary(&p)["records"], n);

    // The two survivors take the dead one's shards after its leases expire and finish.
    let want: HashSet<&String> = input.iter().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let seen: HashSet<String> = workers
            .iter()
            .flat_map(|w| data_of(&w.lines.lock().unwrap()))
            .map(|(_, d)| d)
            .collect();
        let missing = want.iter().filter(|l| !seen.contains(**l)).count();
        if missing == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} lines never printed by any worker"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Records printed after the kill come from the survivors only (at least once: the
    // dead worker's unfinished batch is read again).
    let mut per_line: HashMap<String, usize> = HashMap::new();
    for w in &workers {
        for (_, d) in data_of(&w.lines.lock().unwrap()) {
            *per_line.entry(d).or_default() += 1;
        }
    }
    let dupes = per_line.values().filter(|&&c| c > 1).count();
    eprintln!("{dupes} lines printed twice (the killed worker's uncheckpointed batch)");
    // The survivors stop on SIGTERM, handing their leases back, and exit 0.
    for w in workers.iter_mut().skip(1) {
        terminate(w).await;
    }
    // A new member of the group starts from the checkpoints: nothing new to print.
    let again = spawn_consumer(&ep, &args);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reread = again.lines.lock().unwrap().len();
    assert!(
        reread < n / 10,
        "a restarted group resumes at its checkpoints ({reread} lines re-read)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_under_a_running_produce_loses_nothing() {
    let broker = TestBroker::start().await;
    let ep = broker.endpoint();
    let dir = tempfile::tempdir().unwrap();
    riffle(&ep, &["stream", "create", "rs", "--shards", "2"])
        .await
        .ok();
    let n = 20_000usize;
    let input: Vec<String> = (1..=n).map(|i| format!("r{i}")).collect();
    let file = dir.path().join("in.txt");
    write_lines(&file, &input);
    let ep2 = ep.clone();
    let file2 = file.clone();
    let producer = tokio::spawn(async move {
        riffle(
            &ep2,
            &[
                "produce",
                "rs",
                file2.to_str().unwrap(),
                "--key",
                "{line}",
                "--rate",
                "2000",
            ],
        )
        .await
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = riffle(&ep, &["stream", "reshard", "rs", "--shards", "4"]).await;
    r.ok();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = riffle(&ep, &["stream", "reshard", "rs", "--shards", "3"]).await;
    r.ok();
    let p = producer.await.unwrap();
    p.ok();
    assert_eq!(summary(&p)["records"], n);
    assert_eq!(summary(&p)["failed"], 0);

    // Read back through every generation of shards, parents first.
    let c = riffle(&ep, &["consume", "rs", "--format", "json"]).await;
    let recs = c.json_lines();
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    let mut shards = HashSet::new();
    for r in &recs {
        *count
            .entry(r["data"].as_str().unwrap().to_owned())
            .or_default() += 1;
        shards.insert(r["shard"].as_str().unwrap().to_owned());
    }
    let lost: Vec<&String> = input.iter().filter(|l| !count.contains_key(*l)).collect();
    assert!(
        lost.is_empty(),
        "{} lines lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        shards.len() > 2,
        "records in parent and child shards: {shards:?}"
    );
    let dupes = count.values().filter(|&&c| c > 1).count();
    assert_eq!(
        dupes, 0,
        "nothing is printed twice (re-sent aggregates are dropped)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_can_keep_its_leases_in_dynamodb() {
    let broker = TestBroker::start().await;
    let moto = riffle_tests::moto::MotoServer::start().await;
    let ep = broker.endpoint();
    riffle(&ep, &["stream", "create", "d", "--shards", "2"])
        .await
        .ok();
    let dir = tempfile::tempdir().unwrap();
    let input: Vec<String> = (1..=500).map(|i| format!("d{i}")).collect();
    let file = dir.path().join("in.txt");
    write_lines(&file, &input);
    riffle(&ep, &["produce", "d", file.to_str().unwrap()])
        .await
        .ok();

    let moto_ep = moto.endpoint();
    let mut w = spawn_consumer_env(
        &ep,
        &[
            "consume",
            "d",
            "--group",
            "ddb-group",
            "--lease-store",
            "dynamodb",
        ],
        &[("AWS_ENDPOINT_URL_DYNAMODB", &moto_ep)],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while w.lines.lock().unwrap().len() < input.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 500 lines printed",
            w.lines.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(sorted(w.lines.lock().unwrap().clone()), sorted(input));
    terminate(&mut w).await;

    // The lease table, named after the group, in the Java KCL's schema: one lease per
    // shard, released, checkpointed at a sequence number.
    let items = moto
        .dynamodb_client()
        .scan()
        .table_name("ddb-group")
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    assert_eq!(items.len(), 2, "{items:?}");
    for item in &items {
        let key = item["leaseKey"].as_s().unwrap();
        assert!(key.starts_with("shardId-"), "{item:?}");
        let checkpoint = item["checkpoint"].as_s().unwrap();
        assert!(
            checkpoint.bytes().all(|b| b.is_ascii_digit()),
            "checkpointed at a sequence number: {item:?}"
        );
        assert!(
            !item.contains_key("leaseOwner"),
            "released on SIGTERM: {item:?}"
        );
    }
}
