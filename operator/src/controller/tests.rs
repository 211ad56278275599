//! Controller tests against kube-rs's mocked API server (tower-test): the exact requests a
//! reconcile pass makes, in order, for the paths that need no Kinesis endpoint (finalizer
//! creation, pause, deletion with `Retain`, configuration and endpoint errors with their
//! status, event and backoff), and, with a real `riffle-broker` process as the Kinesis
//! endpoint (the binary `cargo build --workspace` makes), creation, a shard-count update
//! (reshard) and deletion with `deletionPolicy: Delete`.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use jiff::Timestamp;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

use super::*;

/// A frozen clock.
#[derive(Debug)]
struct Frozen(Timestamp);

impl Clock for Frozen {
    fn now(&self) -> Timestamp {
        self.0
    }
}

const NOW: &str = "2026-11-30T12:00:00Z";

/// One request the operator made.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    query: String,
    body: Value,
}

impl Call {
    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

/// A mocked API server: answers every request from `respond` and records it. Returns the
/// context and a task yielding the calls once every client clone is dropped.
fn mocked(
    respond: impl Fn(&Call) -> (StatusCode, Value) + Send + 'static,
) -> (Arc<Context>, tokio::task::JoinHandle<Vec<Call>>) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls = tokio::spawn(async move {
        let mut calls = Vec::new();
        // Bounded: no reconcile pass here makes more than a handful of calls.
        for _ in 0..50 {
            let Some((req, send)) = handle.next_request().await else {
                break;
            };
            let (parts, body) = req.into_parts();
            let bytes = http_body_util::BodyExt::collect(body)
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let call = Call {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or_default().to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (status, reply) = respond(&call);
            calls.push(call);
            send.send_response(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
        calls
    });
    let client = Client::new(svc, "default");
    let ctx = Context::new(
        client,
        Arc::new(Metrics::default()),
        None,
        Arc::new(Frozen(NOW.parse().unwrap())),
        Some("test".into()),
    );
    (Arc::new(ctx), calls)
}

/// Drops the context (closing the mock) and returns the calls made.
async fn finish(ctx: Arc<Context>, calls: tokio::task::JoinHandle<Vec<Call>>) -> Vec<Call> {
    drop(ctx);
    tokio::time::timeout(Duration::from_secs(10), calls)
        .await
        .expect("the mock closes")
        .unwrap()
}

fn stream(spec: Value, meta: Value) -> Stream {
    let mut metadata = json!({
        "name": "orders", "namespace": "default", "uid": "u-1",
        "resourceVersion": "7", "generation": 3
    });
    metadata
        .as_object_mut()
        .unwrap()
        .extend(meta.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "apiVersion": "riffle.dev/v1alpha1", "kind": "Stream",
        "metadata": metadata, "spec": spec,
    }))
    .unwrap()
}

fn not_found(kind: &str, name: &str) -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
               "reason": "NotFound", "message": format!("{kind} \"{name}\" not found")}),
    )
}

/// Answers PATCHes of the stream with the stream and echoes created events.
fn answer_with(s: &Stream) -> impl Fn(&Call) -> (StatusCode, Value) + Send + 'static {
    let obj = serde_json::to_value(s).unwrap();
    move |c: &Call| {
        if c.method == "PATCH" && c.path.starts_with(STREAMS) {
            (StatusCode::OK, obj.clone())
        } else if c.is("POST", EVENTS) {
            (StatusCode::CREATED, c.body.clone())
        } else if c.is(
            "GET",
            "/apis/riffle.dev/v1alpha1/namespaces/default/rifflebrokers/nope",
        ) {
            not_found("rifflebrokers", "nope")
        } else {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"unexpected": c.path}),
            )
        }
    }
}

const STREAMS: &str = "/apis/riffle.dev/v1alpha1/namespaces/default/streams/orders";
const STATUS: &str = "/apis/riffle.dev/v1alpha1/namespaces/default/streams/orders/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

fn assert_status_patch(c: &Call) {
    assert!(c.is("PATCH", STATUS), "{c:?}");
    assert!(
        c.query.contains("fieldManager=riffle-operator") && c.query.contains("force=true"),
        "server-side apply, forced: {}",
        c.query
    );
    assert_eq!(c.body["apiVersion"], "riffle.dev/v1alpha1");
    assert_eq!(c.body["kind"], "Stream");
}

#[tokio::test]
async fn a_delete_policy_stream_first_gets_its_finalizer() {
    let s = stream(
        json!({"shardCount": 2, "deletionPolicy": "Delete"}),
        json!({}),
    );
    let (ctx, calls) = mocked(answer_with(&s));
    let action = reconcile_stream(Arc::new(s), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    let calls = finish(ctx, calls).await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert!(calls[0].is("PATCH", STREAMS));
    assert_eq!(
        calls[0].body,
        json!({"metadata": {"finalizers": [FINALIZER], "resourceVersion": "7"}}),
        "a merge patch guarded by the resourceVersion read"
    );
}

#[tokio::test]
async fn a_paused_stream_only_reports_that_it_is_paused() {
    let s = stream(
        json!({"shardCount": 2}),
        json!({"annotations": {PAUSE_ANNOTATION: "true"}}),
    );
    let (ctx, calls) = mocked(answer_with(&s));
    let action = reconcile_stream(Arc::new(s), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    let calls = finish(ctx, calls).await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_status_patch(&calls[0]);
    let status = &calls[0].body["status"];
    assert_eq!(condition(status, COND_PAUSED)["status"], "True");
    assert_eq!(condition(status, COND_PAUSED)["lastTransitionTime"], NOW);
}

#[tokio::test]
async fn deleting_a_retained_stream_only_removes_the_finalizer() {
    let s = stream(
        json!({"shardCount": 2, "deletionPolicy": "Retain",
               "endpoint": {"url": "http://127.0.0.1:1"}}),
        json!({"finalizers": [FINALIZER, "example.com/other"],
               "deletionTimestamp": "2026-11-30T11:59:00Z"}),
    );
    let (ctx, calls) = mocked(answer_with(&s));
    let action = reconcile_stream(Arc::new(s), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    let calls = finish(ctx, calls).await;
    assert_eq!(calls.len(), 1, "no Kinesis call, one patch: {calls:#?}");
    assert!(calls[0].is("PATCH", STREAMS));
    assert_eq!(
        calls[0].body,
        json!({"metadata": {"finalizers": ["example.com/other"], "resourceVersion": "7"}}),
        "only our finalizer goes"
    );
}

#[tokio::test]
async fn a_missing_broker_is_reported_in_status_and_an_event_and_backs_off() {
    let s = stream(json!({"shardCount": 2, "brokerRef": "nope"}), json!({}));
    let (ctx, calls) = mocked(answer_with(&s));
    let obj = Arc::new(s);
    let err = reconcile_stream(obj.clone(), ctx.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Config {
                reason: "BrokerNotFound",
                ..
            }
        ),
        "{err}"
    );
    // Per-object exponential backoff, reset by a success.
    let delays: Vec<Action> = (0..4)
        .map(|_| error_policy(obj.clone(), &err, ctx.clone()))
        .collect();
    assert_eq!(
        delays,
        [1, 2, 4, 8].map(|s| Action::requeue(Duration::from_secs(s)))
    );
    ctx.succeeded(&key_of(obj.as_ref()));
    assert_eq!(
        error_policy(obj.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );
    let calls = finish(ctx, calls).await;
    let seq: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.method.as_str(), c.path.as_str()))
        .collect();
    assert_eq!(
        seq,
        [
            (
                "GET",
                "/apis/riffle.dev/v1alpha1/namespaces/default/rifflebrokers/nope"
            ),
            ("PATCH", STATUS),
            ("POST", EVENTS),
        ]
    );
    assert_status_patch(&calls[1]);
    let status = &calls[1].body["status"];
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(condition(status, COND_READY)["status"], "False");
    assert_eq!(condition(status, COND_READY)["reason"], "BrokerNotFound");
    assert_eq!(condition(status, COND_DEGRADED)["status"], "True");
    let event = &calls[2].body;
    assert_eq!(event["reason"], "BrokerNotFound");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["name"], "orders");
    assert_eq!(event["reportingController"], MANAGER);
}

#[tokio::test]
async fn an_unreachable_endpoint_degrades_the_stream() {
    // Nothing listens on port 1: the Kinesis call fails at the transport.
    let s = stream(
        json!({"shardCount": 2, "endpoint": {"url": "http://127.0.0.1:1"}}),
        json!({}),
    );
    let (ctx, calls) = mocked(answer_with(&s));
    let err = reconcile_stream(Arc::new(s), ctx.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Kinesis(_)), "{err}");
    let text = ctx.metrics.encode();
    assert!(
        text.contains("riffle_operator_reconcile_failures_total{controller=\"stream\""),
        "{text}"
    );
    let calls = finish(ctx, calls).await;
    let status_patch = calls
        .iter()
        .find(|c| c.is("PATCH", STATUS))
        .expect("a status patch");
    assert_status_patch(status_patch);
    let status = &status_patch.body["status"];
    assert_eq!(condition(status, COND_DEGRADED)["status"], "True");
    assert_eq!(condition(status, COND_READY)["status"], "False");
    assert!(
        calls
            .iter()
            .any(|c| c.is("POST", EVENTS) && c.body["type"] == "Warning"),
        "a Warning event: {calls:#?}"
    );
    assert!(
        calls
            .iter()
            .all(|c| c.is("PATCH", STATUS) || c.is("POST", EVENTS)),
        "{calls:#?}"
    );
}

#[test]
fn a_consumers_access_fragment_is_a_user_and_a_role_scoped_by_its_policy() {
    let policy = consumer_policy("arn:aws:kinesis:us-east-1:000000000000:stream/orders", None);
    let text = consumer_access_toml(
        "consumer-team-billing",
        "RFLAAAA",
        "s3cr\"et",
        &policy,
        Some(("team", "billing-sa")),
    );
    let doc: toml::Value = toml::from_str(&text).expect("valid TOML");
    let user = &doc["users"][0];
    assert_eq!(user["name"].as_str(), Some("consumer-team-billing"));
    assert_eq!(user["access_key_id"].as_str(), Some("RFLAAAA"));
    assert_eq!(user["secret_access_key"].as_str(), Some("s3cr\"et"));
    let document: Value =
        serde_json::from_str(user["policies"][0]["document"].as_str().unwrap()).unwrap();
    assert_eq!(document, policy);
    let role = &doc["roles"][0];
    assert_eq!(role["name"].as_str(), Some("consumer-team-billing"));
    assert_eq!(
        role["service_accounts"][0].as_str(),
        Some("team/billing-sa")
    );
    assert_eq!(role["policies"], user["policies"]);
    // Without a service account: the user only.
    let text = consumer_access_toml("u", "K", "S", &policy, None);
    let doc: toml::Value = toml::from_str(&text).unwrap();
    assert!(doc.get("roles").is_none());
}

#[test]
fn principal_names_fit_iam_and_stay_distinct() {
    assert_eq!(
        consumer_principal_name("team", "billing"),
        "consumer-team-billing"
    );
    let long = "x".repeat(80);
    let a = consumer_principal_name("team", &long);
    let b = consumer_principal_name("team", &format!("{long}y"));
    assert_eq!(a.len(), 64);
    assert_ne!(a, b);
}

// ---------------------------------------------------------------------------------------
// With a real broker as the Kinesis endpoint
// ---------------------------------------------------------------------------------------

/// A `riffle-broker` process: anonymous, fast status transitions, no limits.
struct Broker {
    child: tokio::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn broker() -> Broker {
    use tokio::io::AsyncBufReadExt;
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        })
        .join("riffle-broker");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace` first",
        bin.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("riffle.toml");
    std::fs::write(
        &config,
        "[streams]\nstatus_delay = \"50ms\"\n[storage]\nfsync = \"never\"\n\
         [control_plane]\nenabled = false\n[auth]\nanonymous = true\n",
    )
    .unwrap();
    let mut child = tokio::process::Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start riffle-broker");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the broker gets ready")
        .unwrap()
        .expect("a ready line");
    let api = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("api="))
        .unwrap_or_else(|| panic!("not a ready line: {line}"))
        .to_owned();
    Broker {
        child,
        url: format!("http://{api}"),
        _dir: dir,
    }
}

/// The mock's answers for a Stream on `url`: the Stream for its PATCHes, events echoed,
/// and the credentials Secret `keys`.
fn answer_on_broker(s: &Stream) -> impl Fn(&Call) -> (StatusCode, Value) + Send + 'static {
    let base = answer_with(s);
    move |c: &Call| {
        if c.is("GET", "/api/v1/namespaces/default/secrets/keys") {
            (
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": "keys", "namespace": "default"},
                       "data": {"AWS_ACCESS_KEY_ID": "QUtJRFRFU1Q=",
                                "AWS_SECRET_ACCESS_KEY": "c2VjcmV0"}}),
            )
        } else {
            base(c)
        }
    }
}

fn on(url: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["endpoint"] = json!({"url": url, "credentialsSecret": "keys"});
    spec
}

async fn kinesis(url: &str) -> aws_sdk_kinesis::Client {
    let conf = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .build();
    aws_sdk_kinesis::Client::from_conf(conf)
}

/// Polls DescribeStreamSummary until `done` holds (at most 10 s).
async fn wait_summary(
    k: &aws_sdk_kinesis::Client,
    name: &str,
    done: impl Fn(Option<&aws_sdk_kinesis::types::StreamDescriptionSummary>) -> bool,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = k.describe_stream_summary().stream_name(name).send().await;
        let summary = out
            .as_ref()
            .ok()
            .and_then(|o| o.stream_description_summary());
        if done(summary) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never: {out:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates `name` with `shards` shards on the broker and waits until it is ACTIVE.
async fn create_active(k: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    k.create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
    wait_active(k, name).await;
}

async fn wait_active(k: &aws_sdk_kinesis::Client, name: &str) {
    wait_summary(k, name, |d| {
        d.is_some_and(|d| d.stream_status() == &aws_sdk_kinesis::types::StreamStatus::Active)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_stream_is_created_on_the_endpoint_and_becomes_ready() {
    let b = broker().await;
    let s = stream(
        on(&b.url, json!({"shardCount": 3, "retentionHours": 48})),
        json!({}),
    );
    let (ctx, calls) = mocked(answer_on_broker(&s));
    reconcile_stream(Arc::new(s.clone()), ctx.clone())
        .await
        .expect("first pass");
    let k = kinesis(&b.url).await;
    wait_active(&k, "orders").await;
    // The next pass sees it ACTIVE and converges the rest of the spec (retention).
    reconcile_stream(Arc::new(s), ctx.clone())
        .await
        .expect("second pass");
    wait_summary(&k, "orders", |d| {
        d.is_some_and(|d| d.open_shard_count() == 3 && d.retention_period_hours() == 48)
    })
    .await;
    let calls = finish(ctx, calls).await;
    assert!(
        calls[0].is("GET", "/api/v1/namespaces/default/secrets/keys"),
        "{calls:#?}"
    );
    let created = calls
        .iter()
        .find(|c| c.is("POST", EVENTS) && c.body["reason"] == "Created")
        .unwrap_or_else(|| panic!("a Created event: {calls:#?}"));
    assert_eq!(created.body["action"], "CreateStream");
    assert_eq!(created.body["type"], "Normal");
    let statuses: Vec<&Call> = calls.iter().filter(|c| c.is("PATCH", STATUS)).collect();
    assert_eq!(statuses.len(), 2, "one status patch per pass: {calls:#?}");
    for c in &statuses {
        assert_status_patch(c);
        assert_eq!(c.body["status"]["observedGeneration"], 3);
    }
    let last = &statuses[1].body["status"];
    assert!(
        last["streamArn"]
            .as_str()
            .is_some_and(|a| a.ends_with(":stream/orders")),
        "{last}"
    );
    assert_eq!(last["openShards"], 3, "{last}");
    assert!(
        calls
            .iter()
            .all(|c| c.is("GET", "/api/v1/namespaces/default/secrets/keys")
                || c.is("PATCH", STATUS)
                || c.is("POST", EVENTS)),
        "nothing else is written: {calls:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_count_edit_reshards_and_is_recorded_in_the_ledger() {
    let b = broker().await;
    let k = kinesis(&b.url).await;
    create_active(&k, "orders", 2).await;
    let s = stream(on(&b.url, json!({"shardCount": 4})), json!({}));
    let (ctx, calls) = mocked(answer_on_broker(&s));
    reconcile_stream(Arc::new(s), ctx.clone())
        .await
        .expect("a pass");
    wait_summary(&k, "orders", |d| {
        d.is_some_and(|d| d.open_shard_count() == 4)
    })
    .await;
    let calls = finish(ctx, calls).await;
    let status = &calls
        .iter()
        .rfind(|c| c.is("PATCH", STATUS))
        .unwrap_or_else(|| panic!("a status patch: {calls:#?}"))
        .body["status"];
    let history = status["reshardHistory"].as_array().expect("a ledger");
    assert_eq!(history.len(), 1, "{status}");
    assert_eq!(history[0]["operation"], "UpdateShardCount", "{status}");
    assert_eq!(history[0]["fromShards"], 2, "{status}");
    assert_eq!(history[0]["toShards"], 4, "{status}");
    assert_eq!(
        condition(status, crate::crd::COND_RESHARDING)["status"],
        "True",
        "{status}"
    );
    assert!(
        calls.iter().any(|c| c.is("POST", EVENTS)
            && c.body["action"] == "UpdateShardCount"
            && c.body["type"] == "Normal"),
        "an event for the reshard: {calls:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_delete_policy_stream_deletes_it_then_drops_the_finalizer() {
    let b = broker().await;
    let k = kinesis(&b.url).await;
    create_active(&k, "orders", 1).await;
    let s = stream(
        on(&b.url, json!({"shardCount": 1, "deletionPolicy": "Delete"})),
        json!({"finalizers": [FINALIZER], "deletionTimestamp": "2026-11-30T11:59:00Z"}),
    );
    let (ctx, calls) = mocked(answer_on_broker(&s));
    // First pass: DeleteStream, and the finalizer stays while the stream is going.
    let action = reconcile_stream(Arc::new(s.clone()), ctx.clone())
        .await
        .unwrap();
    assert_ne!(action, Action::await_change());
    wait_summary(&k, "orders", |d| d.is_none()).await;
    // Once it is gone, the finalizer goes.
    let action = reconcile_stream(Arc::new(s), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    let calls = finish(ctx, calls).await;
    let deleting = calls
        .iter()
        .position(|c| c.is("POST", EVENTS) && c.body["reason"] == "Deleting")
        .unwrap_or_else(|| panic!("a Deleting event: {calls:#?}"));
    assert_eq!(calls[deleting].body["action"], "DeleteStream");
    let patches: Vec<&Call> = calls.iter().filter(|c| c.is("PATCH", STREAMS)).collect();
    assert_eq!(
        patches.len(),
        1,
        "one finalizer patch, after the deletion: {calls:#?}"
    );
    assert_eq!(
        patches[0].body,
        json!({"metadata": {"finalizers": [], "resourceVersion": "7"}})
    );
    let at = calls.iter().position(|c| c.is("PATCH", STREAMS)).unwrap();
    assert!(at > deleting, "{calls:#?}");
}

#[tokio::test]
async fn a_brokers_access_secret_gathers_the_operator_key_and_its_consumers_fragments() {
    let b: RiffleBroker = serde_json::from_value(json!({
        "apiVersion": "riffle.dev/v1alpha1", "kind": "RiffleBroker",
        "metadata": {"name": "riffle", "namespace": "default", "uid": "b-1", "generation": 1},
        "spec": {"image": "riffle/broker:0.1.0", "replicas": 1, "storage": {"size": "1Gi"}},
    }))
    .unwrap();
    let broker_obj = serde_json::to_value(&b).unwrap();
    let fragment = "[[users]]\nname = \"consumer-default-billing\"\n";
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let consumer_secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "billing-riffle-credentials", "namespace": "default"},
        "data": {"riffle-access.toml": b64(fragment)},
    });
    let (ctx, calls) = mocked(move |c: &Call| {
        let list = |items: Value| (StatusCode::OK, json!({"metadata": {}, "items": items}));
        match (c.method.as_str(), c.path.as_str()) {
            ("GET", "/apis/riffle.dev/v1alpha1/namespaces/default/streams") => list(json!([
                {"apiVersion": "riffle.dev/v1alpha1", "kind": "Stream",
                 "metadata": {"name": "clicks", "namespace": "default"},
                 "spec": {"shardCount": 1, "brokerRef": "riffle"}},
                {"apiVersion": "riffle.dev/v1alpha1", "kind": "Stream",
                 "metadata": {"name": "elsewhere", "namespace": "default"},
                 "spec": {"shardCount": 1, "endpoint": {"url": "http://x"}}},
            ])),
            ("GET", "/apis/riffle.dev/v1alpha1/namespaces/default/consumers") => list(json!([
                {"apiVersion": "riffle.dev/v1alpha1", "kind": "Consumer",
                 "metadata": {"name": "billing", "namespace": "default"},
                 "spec": {"streamRef": "clicks", "kind": "Polling"}},
                {"apiVersion": "riffle.dev/v1alpha1", "kind": "Consumer",
                 "metadata": {"name": "other", "namespace": "default"},
                 "spec": {"streamRef": "elsewhere", "kind": "Polling"}},
            ])),
            ("GET", "/api/v1/namespaces/default/secrets/billing-riffle-credentials") => {
                (StatusCode::OK, consumer_secret.clone())
            }
            ("PATCH", p) if p.contains("/rifflebrokers/") => (StatusCode::OK, broker_obj.clone()),
            ("PATCH", _) => (StatusCode::OK, c.body.clone()),
            ("GET", p) if p.ends_with("/secrets/riffle-access") => {
                not_found("secrets", "riffle-access")
            }
            ("GET", p) if p.ends_with("/statefulsets/riffle") => {
                not_found("statefulsets", "riffle")
            }
            _ => not_found("resource", &c.path),
        }
    });
    reconcile_broker(Arc::new(b), ctx.clone()).await.unwrap();
    let calls = finish(ctx, calls).await;
    let access = calls
        .iter()
        .find(|c| c.is("PATCH", "/api/v1/namespaces/default/secrets/riffle-access"))
        .unwrap_or_else(|| panic!("the access Secret is applied: {calls:#?}"));
    assert!(
        access.query.contains("fieldManager=riffle-operator"),
        "{}",
        access.query
    );
    let data = access.body["data"].as_object().unwrap();
    let text = |k: &str| {
        use base64::Engine;
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(data[k].as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(text("consumer-billing.toml"), fragment);
    assert!(
        !data.contains_key("consumer-other.toml"),
        "not a consumer of this broker"
    );
    let operator = text("operator.toml");
    assert!(
        operator.contains(&text("OPERATOR_ACCESS_KEY_ID")),
        "{operator}"
    );
    assert!(operator.contains("\"administrator\""), "{operator}");
    assert_eq!(
        access.body["metadata"]["ownerReferences"][0]["kind"],
        "RiffleBroker"
    );
    // The StatefulSet mounts it where the rendered config says.
    let sts = calls
        .iter()
        .find(|c| {
            c.is(
                "PATCH",
                "/apis/apps/v1/namespaces/default/statefulsets/riffle",
            )
        })
        .expect("the StatefulSet is applied");
    let volumes = sts.body["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    assert!(
        volumes
            .iter()
            .any(|v| v["secret"]["secretName"] == "riffle-access"),
        "{volumes:?}"
    );
}
