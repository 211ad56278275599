//! End-to-end tests of the operator against a real kube-apiserver and etcd (built from Go
//! modules by `tests/k8s/build.sh` and cached), the real kubectl, the real operator binary
//! and a real broker (`TestBroker`). No pods run (there is no kubelet): a Stream names the
//! local broker as its endpoint, and the broker workload is checked by reading back the
//! objects the operator wrote.

#[path = "operator/chart.rs"]
mod chart;
#[path = "operator/cluster.rs"]
mod cluster;
#[path = "operator/dashboard.rs"]
mod dashboard;
#[path = "operator/identity.rs"]
mod identity;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_types::Blob;
use cluster::Cluster;
use riffle_tests::TestBroker;
use serde_json::Value;
use tokio::process::{Child, Command};

fn operator_binary() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let bin = root.join("target").join(profile).join("riffle-operator");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace` first",
        bin.display()
    );
    bin
}

/// Applies `crds/riffle.dev.yaml` with kubectl and waits until each CRD is Established.
async fn install_crds(cluster: &Cluster) {
    cluster
        .kubectl_ok(&[
            "apply",
            "--server-side",
            "-f",
            crds_path().to_str().unwrap(),
        ])
        .await;
    for crd in [
        "streams.riffle.dev",
        "consumers.riffle.dev",
        "rifflebrokers.riffle.dev",
    ] {
        cluster
            .kubectl_ok(&[
                "wait",
                "--for=condition=Established",
                &format!("crd/{crd}"),
                "--timeout=60s",
            ])
            .await;
    }
}

fn crds_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds/riffle.dev.yaml")
}

struct Operator {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Operator {
    /// `riffle-operator run` against the cluster, as `identity`, with `kubeconfig` (the
    /// chart's least-privilege ServiceAccount).
    fn start(kubeconfig: &std::path::Path, identity: &str) -> Operator {
        let args = [
            "run",
            "--metrics-listen",
            "127.0.0.1:0",
            "--lease-namespace",
            "default",
            "--identity",
            identity,
            "--lease-seconds",
            "6",
        ];
        Operator::spawn(&args, Some(kubeconfig), identity)
    }

    /// The operator binary with `args`, logging tagged with `tag`.
    fn spawn(args: &[&str], kubeconfig: Option<&std::path::Path>, tag: &str) -> Operator {
        let mut cmd = Command::new(operator_binary());
        cmd.args(args)
            .env("AWS_ACCESS_KEY_ID", "AKIDRIFFLETEST")
            .env("AWS_SECRET_ACCESS_KEY", "riffle-test-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info,kube=warn,aws=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(k) = kubeconfig {
            cmd.env("KUBECONFIG", k);
        }
        let mut child = cmd.spawn().expect("start riffle-operator");
        let log = cluster::forward(&mut child, tag);
        Operator { child, log }
    }

    /// Waits (at most 30 s) until it logs its metrics address.
    async fn wait_metrics_addr(&self) -> std::net::SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.logged("serving metrics") {
            assert!(
                Instant::now() < deadline,
                "the operator never served metrics"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.metrics_addr()
    }

    /// The address of its /metrics server, from its log.
    fn metrics_addr(&self) -> std::net::SocketAddr {
        let lines = self.log.lock().unwrap();
        let line = lines
            .iter()
            .find(|l| l.contains("serving metrics"))
            .expect("serving metrics logged");
        line.split("addr=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    fn logged(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    async fn terminate(mut self) {
        let pid = self.child.id().expect("running");
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        let _ = self.child.start_kill();
    }
}

async fn get(cluster: &Cluster, what: &str) -> Value {
    serde_json::from_str(&cluster.kubectl_ok(&["get", what, "-o", "json"]).await).unwrap()
}

fn condition(obj: &Value, type_: &str) -> Option<String> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

/// Polls `what` until `pred` holds, for at most `limit`.
async fn until(
    cluster: &Cluster,
    what: &str,
    limit: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (found, out, _) = cluster.kubectl(&["get", what, "-o", "json"]).await;
        let v: Value = if found {
            serde_json::from_str(&out).unwrap()
        } else {
            Value::Null
        };
        if found && pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not get there within {limit:?}: {:#}",
            v["status"]
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Ids of the open shards of `stream` on the broker.
async fn open_shard_ids(broker: &TestBroker, stream: &str) -> Vec<String> {
    let out = broker
        .client()
        .list_shards()
        .stream_name(stream)
        .shard_filter(
            aws_sdk_kinesis::types::ShardFilter::builder()
                .r#type(aws_sdk_kinesis::types::ShardFilterType::AtLatest)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    out.shards()
        .iter()
        .map(|s| s.shard_id().to_string())
        .collect()
}

async fn open_shards(broker: &TestBroker, stream: &str) -> usize {
    open_shard_ids(broker, stream).await.len()
}

fn shards(v: &Value) -> i64 {
    v["status"]["openShards"].as_i64().unwrap_or(-1)
}

const SERVICE_MONITOR_CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
";

const BROKER_CONFIG: &str = r#"
region = "us-east-1"
account_id = "000000000000"
[streams]
status_delay = "50ms"
[storage]
fsync = "never"
[control_plane]
enabled = false
[limits]
write_bytes_per_second = "off"
write_records_per_second = "off"
read_bytes_per_second = "off"
get_records_per_second = "off"
[limits.streams.hot]
write_records_per_second = 100
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_end_to_end() {
    let t0 = Instant::now();
    let cluster = Cluster::start().await;
    eprintln!("e2e: cluster ready after {:?}", t0.elapsed());
    let broker = TestBroker::builder()
        .config_toml(BROKER_CONFIG)
        .start()
        .await;
    let endpoint = broker.endpoint();

    // CRDs applied with the real kubectl.
    install_crds(&cluster).await;

    // The Prometheus operator's ServiceMonitor CRD (a minimal stand-in: only its presence
    // matters), so the operator renders the broker's ServiceMonitor.
    cluster.apply(SERVICE_MONITOR_CRD).await;
    cluster
        .kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "crd/servicemonitors.monitoring.coreos.com",
            "--timeout=60s",
        ])
        .await;

    // The chart, rendered by the real helm and applied: ServiceAccount, least-privilege
    // RBAC, Deployment (no kubelet runs it), the RiffleBroker. The operators below run as
    // the chart's ServiceAccount, so every call they make must be allowed by its ClusterRole.
    let rendered = chart::helm_template("default", &["broker.storage.size=5Gi"], &[]);
    cluster.apply(&rendered).await;
    let token = cluster
        .kubectl_ok(&["create", "token", "rel-riffle", "--duration=1h"])
        .await;
    let kubeconfig = cluster.kubeconfig_for_token(token.trim());
    let (can, _, _) = cluster
        .kubectl(&[
            "auth",
            "can-i",
            "delete",
            "statefulsets",
            "--as=system:serviceaccount:default:rel-riffle",
        ])
        .await;
    assert!(
        !can,
        "the operator's ServiceAccount may not delete StatefulSets"
    );

    // Two operators: exactly one leads.
    let op1 = Operator::start(&kubeconfig, "op-1");
    let lease = until(
        &cluster,
        "lease/riffle-operator",
        Duration::from_secs(60),
        |v| v["spec"]["holderIdentity"] == "op-1",
    )
    .await;
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 6);
    let op2 = Operator::start(&kubeconfig, "op-2");

    // kubectl apply of a Stream makes it appear on the broker; kubectl wait returns.
    cluster
        .apply(&format!(
            r#"apiVersion: riffle.dev/v1alpha1
kind: Stream
metadata: {{name: orders}}
spec:
  shardCount: 2
  retentionHours: 48
  tags: {{team: payments}}
  deletionPolicy: Delete
  endpoint: {{url: "{endpoint}"}}
  autoscaling: {{enabled: false, maxReshardsPer24h: 3, reserveForScaleUp: 1}}
"#
        ))
        .await;
    cluster
        .kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            "stream/orders",
            "--timeout=60s",
        ])
        .await;
    assert_eq!(open_shards(&broker, "orders").await, 2);
    let summary = broker
        .client()
        .describe_stream_summary()
        .stream_name("orders")
        .send()
        .await
        .unwrap();
    assert_eq!(
        summary
            .stream_description_summary()
            .unwrap()
            .retention_period_hours(),
        48
    );
    let tags = broker
        .client()
        .list_tags_for_stream()
        .stream_name("orders")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags()[0].key(), "team");
    let s = get(&cluster, "stream/orders").await;
    assert_eq!(s["metadata"]["finalizers"][0], "riffle.dev/cleanup");
    assert_eq!(
        s["status"]["streamArn"],
        "arn:aws:kinesis:us-east-1:000000000000:stream/orders"
    );
    assert_eq!(
        s["status"]["observedGeneration"],
        s["metadata"]["generation"]
    );
    let cols = cluster.kubectl_ok(&["get", "stream", "orders"]).await;
    assert!(
        cols.contains("SHARDS") && cols.contains("TARGET") && cols.contains("READY"),
        "{cols}"
    );
    assert!(op1.logged("leading"), "op-1 leads");
    assert!(
        !op2.logged("leading"),
        "op-2 must not lead while op-1 holds the lease"
    );

    // Editing the shard count reshards (within ×2/÷2).
    cluster
        .kubectl_ok(&[
            "patch",
            "stream",
            "orders",
            "--type=merge",
            "-p",
            r#"{"spec":{"shardCount":3}}"#,
        ])
        .await;
    let s = until(&cluster, "stream/orders", Duration::from_secs(60), |v| {
        shards(v) == 3 && condition(v, "Resharding").as_deref() == Some("False")
    })
    .await;
    assert_eq!(open_shards(&broker, "orders").await, 3);
    assert_eq!(s["status"]["reshardHistory"].as_array().unwrap().len(), 1);
    assert_eq!(s["status"]["reshardBudgetRemaining"], 2);

    // kubectl scale through /scale is clamped to double per step, and the budget stops it.
    cluster
        .kubectl_ok(&["scale", "stream/orders", "--replicas=50"])
        .await;
    let s = until(&cluster, "stream/orders", Duration::from_secs(60), |v| {
        condition(v, "ReshardBudgetExhausted").as_deref() == Some("True") && shards(v) == 12
    })
    .await;
    assert!(
        s["status"]["scaleClamp"]
            .as_str()
            .unwrap()
            .contains("requested 50"),
        "{}",
        s["status"]
    );
    assert!(s["status"]["nextReshardAllowedAt"].is_string());
    let counts: Vec<i64> = s["status"]["reshardHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["toShards"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [3, 6, 12], "each step at most doubles");
    assert_eq!(open_shards(&broker, "orders").await, 12);
    let scale: Value = serde_json::from_str(
        &cluster
            .kubectl_ok(&[
                "get",
                "--raw",
                "/apis/riffle.dev/v1alpha1/namespaces/default/streams/orders/scale",
            ])
            .await,
    )
    .unwrap();
    assert_eq!(
        (
            scale["spec"]["replicas"].as_i64(),
            scale["status"]["replicas"].as_i64()
        ),
        (Some(50), Some(12))
    );
    let events = cluster
        .kubectl_ok(&["get", "events.events.k8s.io", "-o", "json"])
        .await;
    for reason in [
        "Created",
        "ScaleUp",
        "ScaleClamped",
        "ReshardBudgetExhausted",
    ] {
        assert!(
            events.contains(&format!("\"reason\": \"{reason}\"")),
            "no {reason} event"
        );
    }

    // The broker workload (the chart's RiffleBroker), rendered by the operator and applied;
    // read back.
    cluster
        .apply("apiVersion: riffle.dev/v1alpha1\nkind: Stream\nmetadata: {name: clicks}\nspec: {shardCount: 1, brokerRef: riffle, shardLimits: {writeRecordsPerSecond: 500}}\n")
        .await;
    let sts = until(
        &cluster,
        "statefulset/riffle",
        Duration::from_secs(30),
        |v| v["spec"]["replicas"] == 1,
    )
    .await;
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "5Gi"
    );
    assert_eq!(
        sts["metadata"]["ownerReferences"][0]["kind"],
        "RiffleBroker"
    );
    let sm = until(
        &cluster,
        "servicemonitor/riffle",
        Duration::from_secs(30),
        |v| v["spec"]["jobLabel"].is_string(),
    )
    .await;
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "admin");
    get(&cluster, "service/riffle-headless").await;
    get(&cluster, "poddisruptionbudget/riffle").await;
    let cm = until(
        &cluster,
        "configmap/riffle-config",
        Duration::from_secs(30),
        |v| {
            v["data"]["riffle.toml"]
                .as_str()
                .is_some_and(|t| t.contains("[limits.streams.clicks]"))
        },
    )
    .await;
    assert!(cm["data"]["riffle.toml"]
        .as_str()
        .unwrap()
        .contains("write_records_per_second = 500"));
    assert!(cm["data"]["riffle.toml"]
        .as_str()
        .unwrap()
        .contains("credentials_dir = \"/etc/riffle/access\""));
    // The broker's generated credentials: the operator's key, mounted where the config says.
    let access = get(&cluster, "secret/riffle-access").await;
    for key in [
        "operator.toml",
        "OPERATOR_ACCESS_KEY_ID",
        "OPERATOR_SECRET_ACCESS_KEY",
    ] {
        assert!(
            access["data"][key].is_string(),
            "the access Secret has no {key}"
        );
    }
    assert!(sts["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["secret"]["secretName"] == "riffle-access"));
    let svc = get(&cluster, "service/riffle").await;
    assert_eq!(svc["spec"]["ports"][0]["port"], 4567);
    let rb = until(
        &cluster,
        "rifflebroker/riffle",
        Duration::from_secs(30),
        |v| v["status"]["endpoint"].is_string(),
    )
    .await;
    assert_eq!(
        condition(&rb, "Ready").as_deref(),
        Some("False"),
        "no kubelet, so no pod is ready"
    );
    cluster.kubectl_ok(&["delete", "stream", "clicks"]).await;

    // An enhanced fan-out Consumer: registered on the broker, its ARN in status, and a
    // credentials Secret scoped (by policy) to the stream; deleting it deregisters it.
    cluster
        .apply(
            "apiVersion: riffle.dev/v1alpha1\nkind: Consumer\nmetadata: {name: billing}\n\
             spec: {streamRef: orders, kind: EnhancedFanOut}\n",
        )
        .await;
    cluster
        .kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            "consumer/billing",
            "--timeout=60s",
        ])
        .await;
    let c = get(&cluster, "consumer/billing").await;
    let consumer_arn = c["status"]["consumerArn"].as_str().unwrap().to_string();
    assert!(
        consumer_arn.contains(":stream/orders/consumer/billing:"),
        "{consumer_arn}"
    );
    let listed = broker
        .client()
        .list_stream_consumers()
        .stream_arn(riffle_tests::stream_arn("orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.consumers()[0].consumer_arn(), consumer_arn);
    let secret = get(&cluster, "secret/billing-riffle-credentials").await;
    for key in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "RIFFLE_CONSUMER_ARN",
        "policy.json",
    ] {
        assert!(secret["data"][key].is_string(), "the Secret has no {key}");
    }
    assert_eq!(secret["metadata"]["ownerReferences"][0]["kind"], "Consumer");
    cluster
        .kubectl_ok(&["delete", "consumer", "billing", "--timeout=60s"])
        .await;
    let listed = broker
        .client()
        .list_stream_consumers()
        .stream_arn(riffle_tests::stream_arn("orders"))
        .send()
        .await
        .unwrap();
    assert!(
        listed
            .consumers()
            .iter()
            .all(|c| c.consumer_status() != &aws_sdk_kinesis::types::ConsumerStatus::Active),
        "deregistered: {listed:?}"
    );

    // Leadership moves when the leader stops, and the new leader reads the reshard ledger
    // from status: it sees the exhausted budget of `orders` (still asking for 50 shards)
    // and does not spend more of it.
    op1.terminate().await;
    until(
        &cluster,
        "lease/riffle-operator",
        Duration::from_secs(30),
        |v| v["spec"]["holderIdentity"] == "op-2",
    )
    .await;
    let metrics = op2.metrics_addr();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = riffle_tests::http::request(metrics, "GET", "/metrics", &[], b"")
            .await
            .map(|r| r.body_text())
            .unwrap_or_default();
        if text.contains(
            r#"riffle_operator_reshard_budget_remaining{namespace="default",stream="orders"} 0"#,
        ) {
            assert!(
                text.contains(
                    r#"riffle_operator_stream_open_shards{namespace="default",stream="orders"} 12"#
                ),
                "{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "op-2 never reported the ledger of orders:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        open_shards(&broker, "orders").await,
        12,
        "the budget survived the leader change"
    );
    let s = get(&cluster, "stream/orders").await;
    assert_eq!(
        s["status"]["reshardHistory"].as_array().unwrap().len(),
        3,
        "{}",
        s["status"]
    );
    assert_eq!(
        condition(&s, "ReshardBudgetExhausted").as_deref(),
        Some("True")
    );

    // Deleting with deletionPolicy: Delete removes the stream, then the finalizer.
    cluster
        .kubectl_ok(&["delete", "stream", "orders", "--timeout=60s"])
        .await;
    let (found, _, _) = cluster.kubectl(&["get", "stream", "orders"]).await;
    assert!(!found, "the object is gone once its finalizer is removed");
    let gone = broker
        .client()
        .describe_stream_summary()
        .stream_name("orders")
        .send()
        .await;
    assert!(gone.is_err(), "the stream was deleted on the broker");

    // Sustained load above capacity: the autoscaler scales up step by step within the
    // budget, then down after the load stops and the cooldown passes.
    let metrics_url = format!("{}/metrics", broker.admin_url());
    cluster
        .apply(&format!(
            r#"apiVersion: riffle.dev/v1alpha1
kind: Stream
metadata: {{name: hot}}
spec:
  shardCount: 1
  deletionPolicy: Delete
  shardLimits: {{writeRecordsPerSecond: 100}}
  endpoint: {{url: "{endpoint}", metricsUrl: "{metrics_url}"}}
  autoscaling:
    enabled: true
    minShards: 1
    maxShards: 8
    targetUtilizationPercent: 70
    window: 4s
    scaleUpCooldown: 5s
    scaleDownCooldown: 8s
    maxReshardsPer24h: 10
    reserveForScaleUp: 2
    approval: Manual
"#
        ))
        .await;
    cluster
        .kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            "stream/hot",
            "--timeout=60s",
        ])
        .await;
    let client = broker.client();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            // 300 records/s (3× one shard's 100/s) for at most 120 s.
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut n = 0u64;
            while Instant::now() < deadline && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                let entries = (0..30)
                    .map(|_| {
                        n += 1;
                        aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                            .partition_key(format!("k{n}"))
                            .data(Blob::new(vec![7u8; 100]))
                            .build()
                            .unwrap()
                    })
                    .collect::<Vec<_>>();
                let _ = client
                    .put_records()
                    .stream_name("hot")
                    .set_records(Some(entries))
                    .send()
                    .await;
            }
        })
    };
    // Manual approval: the first decision is only proposed, until the annotation names it.
    let s = until(&cluster, "stream/hot", Duration::from_secs(60), |v| {
        v["status"]["pendingProposal"]["id"].is_string()
    })
    .await;
    let proposal = s["status"]["pendingProposal"].clone();
    assert_eq!(
        (
            proposal["fromShards"].as_i64(),
            proposal["toShards"].as_i64()
        ),
        (Some(1), Some(2)),
        "{proposal}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        open_shards(&broker, "hot").await,
        1,
        "nothing happens before approval"
    );
    let id = proposal["id"].as_str().unwrap();
    cluster
        .kubectl_ok(&[
            "annotate",
            "stream",
            "hot",
            &format!("riffle.dev/approve-reshard={id}"),
        ])
        .await;
    let s = until(&cluster, "stream/hot", Duration::from_secs(30), |v| {
        shards(v) == 2
    })
    .await;
    assert!(s["status"]["pendingProposal"].is_null(), "{}", s["status"]);
    cluster
        .kubectl_ok(&[
            "patch",
            "stream",
            "hot",
            "--type=merge",
            "-p",
            r#"{"spec":{"autoscaling":{"approval":"Auto"}}}"#,
        ])
        .await;

    // Step by step up to 5 shards (300 records/s against 100 per shard at a 70% target);
    // then a decision with the load it saw (the first full window after the last step).
    let s = until(&cluster, "stream/hot", Duration::from_secs(110), |v| {
        shards(v) >= 5 && v["status"]["lastDecision"]["load"].is_object()
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.await;
    let ups: Vec<(i64, i64)> = s["status"]["reshardHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["fromShards"].as_i64().unwrap(),
                r["toShards"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(ups.len() >= 2, "step by step: {ups:?}");
    for (from, to) in &ups {
        assert!(
            to > from && *to <= 2 * from,
            "a step is at most double: {ups:?}"
        );
    }
    assert_eq!(
        s["status"]["lastDecision"]["load"]["windowSeconds"]
            .as_u64()
            .map(|w| w >= 4),
        Some(true),
        "{}",
        s["status"]
    );
    let s = until(&cluster, "stream/hot", Duration::from_secs(90), |v| {
        shards(v) < 5
    })
    .await;
    let last = s["status"]["reshardHistory"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        last["toShards"].as_i64() < last["fromShards"].as_i64(),
        "scaled down: {last}"
    );
    assert!(
        s["status"]["reshardBudgetRemaining"].as_i64().unwrap() >= 2,
        "the reserve is kept: {}",
        s["status"]
    );
    assert!(op2.logged("leading"), "op-2 took over");
    cluster
        .kubectl_ok(&["delete", "stream", "hot", "--timeout=60s"])
        .await;
    op2.terminate().await;
    eprintln!("e2e: done after {:?}", t0.elapsed());
}
