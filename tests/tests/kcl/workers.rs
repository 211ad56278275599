//! Four `kcl-worker` processes on a 16-shard stream: even sharing, `kill -9` failover,
//! graceful handoff, and at-least-once delivery with duplicates only after checkpoints.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use riffle_kcl::{DynamoDbLeaseStore, ExtendedSequenceNumber, LeaseStore, SequenceNumber};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::*;

const FAILOVER: Duration = Duration::from_secs(3);
const SHARDS: usize = 16;
const WORKERS: usize = 4;

struct Worker {
    id: String,
    child: Child,
}

async fn spawn_worker(endpoint: &str, store: &str, mode: &str, id: &str, out: &Path) -> Worker {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kcl-worker"))
        .args([
            "--endpoint",
            endpoint,
            "--stream",
            "sixteen",
            "--app",
            "four-workers",
            "--worker-id",
            id,
            "--store",
            store,
            "--mode",
            mode,
            "--out",
        ])
        .arg(out)
        .args([
            "--failover-ms",
            &FAILOVER.as_millis().to_string(),
            "--taker-ms",
            "250",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn kcl-worker");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("worker ready within 30 s")
        .unwrap()
        .unwrap_or_default();
    assert!(line.starts_with("kcl-worker ready"), "{line}");
    Worker {
        id: id.to_owned(),
        child,
    }
}

/// Lease owners per worker.
async fn owners(store: &Arc<dyn LeaseStore>) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in store.list().await.unwrap_or_default() {
        m.entry(l.owner.unwrap_or_else(|| "<none>".into()))
            .or_default()
            .push(l.key);
    }
    m
}

/// Polls the lease table every 50 ms until `pred` holds; the time it took.
async fn wait_owners(
    store: &Arc<dyn LeaseStore>,
    what: &str,
    limit: Duration,
    pred: impl Fn(&BTreeMap<String, Vec<String>>) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let o = owners(store).await;
        if pred(&o) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{what} not reached within {limit:?}: {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Debug)]
struct Session {
    worker: String,
    shard: String,
    start: Option<ExtendedSequenceNumber>,
    t: u64,
}

fn position(cp: &str) -> Option<ExtendedSequenceNumber> {
    let (seq, sub) = cp.split_once('/')?;
    Some(ExtendedSequenceNumber {
        sequence: SequenceNumber::new(seq)?,
        sub_sequence: sub.parse().ok()?,
    })
}

/// Reads every worker's log and checks delivery: every record at least once; every session
/// starts at the last checkpoint written before it; every record of a session is after the
/// session's start (so duplicates come only from after the last checkpoint).
fn check_delivery(files: &[PathBuf], produced: &[String]) -> (usize, usize) {
    let mut sessions: Vec<Session> = Vec::new();
    let mut current: HashMap<(String, String), usize> = HashMap::new();
    let mut checkpoints: Vec<(String, u64, ExtendedSequenceNumber)> = Vec::new();
    let mut processed: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    for f in files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue; // a line torn by kill -9
            };
            let w = v["w"].as_str().unwrap().to_owned();
            let shard = v["shard"].as_str().unwrap().to_owned();
            let t = v["t"].as_u64().unwrap();
            match v["ev"].as_str().unwrap() {
                "init" => {
                    current.insert((w.clone(), shard.clone()), sessions.len());
                    sessions.push(Session {
                        worker: w,
                        shard,
                        start: position(v["cp"].as_str().unwrap()),
                        t,
                    });
                }
                "rec" => {
                    let s = &sessions[current[&(w, shard.clone())]];
                    let pos = ExtendedSequenceNumber {
                        sequence: SequenceNumber::new(v["seq"].as_str().unwrap()).unwrap(),
                        sub_sequence: v["sub"].as_u64().unwrap(),
                    };
                    if let Some(start) = &s.start {
                        assert!(
                            pos > *start,
                            "{} re-processed {pos} at or before its start checkpoint {start} on {shard}",
                            s.worker
                        );
                    }
                    *processed
                        .entry(v["data"].as_str().unwrap().to_owned())
                        .or_default() += 1;
                    total += 1;
                }
                "cp" => {
                    if let Some(p) = position(v["cp"].as_str().unwrap()) {
                        checkpoints.push((shard, t, p));
                    }
                }
                _ => {}
            }
        }
    }
    for s in &sessions {
        let last_before = checkpoints
            .iter()
            .filter(|(shard, t, _)| *shard == s.shard && *t < s.t)
            .map(|(_, _, p)| p)
            .max();
        if let Some(last) = last_before {
            let start = s.start.as_ref().unwrap_or_else(|| {
                panic!(
                    "{} started {} from a sentinel after checkpoint {last}",
                    s.worker, s.shard
                )
            });
            assert!(
                start >= last,
                "{} started {} at {start}, before the checkpoint {last} written earlier",
                s.worker,
                s.shard
            );
        }
    }
    let missing: Vec<&String> = produced
        .iter()
        .filter(|d| !processed.contains_key(*d))
        .collect();
    assert!(
        missing.is_empty(),
        "{} records never processed: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    (total, total - processed.len())
}

async fn wait_processed(files: &[PathBuf], produced: &[String], limit: Duration) {
    let start = Instant::now();
    loop {
        let mut seen = HashSet::new();
        for f in files {
            for line in std::fs::read_to_string(f).unwrap_or_default().lines() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                    if let Some(d) = v["data"].as_str() {
                        seen.insert(d.to_owned());
                    }
                }
            }
        }
        let missing = produced.iter().filter(|d| !seen.contains(*d)).count();
        if missing == 0 {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{missing} records not processed within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn four_workers(mode: &str, store_arg: &str, store: Arc<dyn LeaseStore>) {
    let broker = TestBroker::start().await;
    broker.create_stream("sixteen", SHARDS as i32).await;
    let client = broker.client();
    let dir = tempfile::tempdir().unwrap();
    let mut produced = put_plain(&client, "sixteen", "p0", 800).await;
    let (agg, _) = put_aggregates(&client, "sixteen", "a0", 32, 5).await;
    produced.extend(agg);

    let files: Vec<PathBuf> = (0..WORKERS)
        .map(|i| dir.path().join(format!("w{i}.jsonl")))
        .collect();
    let mut workers = Vec::new();
    for (i, f) in files.iter().enumerate() {
        workers.push(spawn_worker(&broker.endpoint(), store_arg, mode, &format!("w{i}"), f).await);
    }
    let ids: Vec<String> = workers.iter().map(|w| w.id.clone()).collect();
    // Even: four leases each.
    let settle = wait_owners(&store, "an even split", Duration::from_secs(60), |o| {
        ids.iter()
            .all(|w| o.get(w).map(Vec::len) == Some(SHARDS / WORKERS))
    })
    .await;
    eprintln!("[kcl] {mode}: 4 workers × 4 leases after {settle:?}");
    wait_processed(&files, &produced, Duration::from_secs(60)).await;

    // kill -9 one worker: its shards move to the others within 2 × failover time.
    let victim = workers.remove(0);
    let victim_leases = owners(&store).await[&victim.id].clone();
    let mut child = victim.child;
    child.start_kill().unwrap();
    let killed = Instant::now();
    child.wait().await.unwrap();
    produced.extend(put_plain(&client, "sixteen", "p1", 400).await);
    let vid = victim.id.clone();
    wait_owners(
        &store,
        "failover",
        2 * FAILOVER + Duration::from_secs(2),
        |o| {
            !o.contains_key(&vid)
                && victim_leases
                    .iter()
                    .all(|k| !o.get("<none>").is_some_and(|v| v.contains(k)))
        },
    )
    .await;
    let failover = killed.elapsed();
    eprintln!("[kcl] {mode}: kill -9 → leases moved after {failover:?}");
    assert!(failover < 2 * FAILOVER, "failover took {failover:?}");
    wait_owners(&store, "an even split of 3", Duration::from_secs(30), |o| {
        ids[1..]
            .iter()
            .all(|w| (5..=6).contains(&o.get(w).map_or(0, Vec::len)))
    })
    .await;
    wait_processed(&files, &produced, Duration::from_secs(60)).await;

    // Graceful shutdown of another: its leases are taken over in under 2 s.
    let leaving = workers.remove(0);
    let lid = leaving.id.clone();
    let pid = leaving.child.id().unwrap();
    let sigterm = Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let mut child = leaving.child;
    wait_owners(&store, "handoff", Duration::from_secs(10), |o| {
        !o.contains_key(&lid) && !o.contains_key("<none>")
    })
    .await;
    let handoff = sigterm.elapsed();
    eprintln!("[kcl] {mode}: SIGTERM → leases taken over after {handoff:?}");
    assert!(handoff < Duration::from_secs(2), "handoff took {handoff:?}");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("graceful exit")
        .unwrap();
    assert!(status.success(), "{status}");

    produced.extend(put_plain(&client, "sixteen", "p2", 400).await);
    wait_processed(&files, &produced, Duration::from_secs(60)).await;
    for w in &workers {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &w.child.id().unwrap().to_string()])
            .status();
    }
    for mut w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(30), w.child.wait()).await;
    }
    let (total, duplicates) = check_delivery(&files, &produced);
    eprintln!(
        "[kcl] {mode}: {} records produced, {total} deliveries, {duplicates} duplicates",
        produced.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_worker_processes_share_sixteen_shards_fail_over_and_hand_off_polling_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leases.db");
    let store: Arc<dyn LeaseStore> =
        Arc::new(riffle_kcl::SqliteLeaseStore::open(&path, "four-workers").unwrap());
    store.initialize().await.unwrap();
    four_workers("polling", &format!("sqlite:{}", path.display()), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_worker_processes_share_sixteen_shards_fail_over_and_hand_off_fan_out_dynamodb() {
    let moto = MotoServer::start().await;
    let store: Arc<dyn LeaseStore> = Arc::new(DynamoDbLeaseStore::new(
        moto.dynamodb_client(),
        "four-workers",
    ));
    store.initialize().await.unwrap();
    four_workers("fan_out", &format!("dynamodb:{}", moto.endpoint()), store).await;
}
