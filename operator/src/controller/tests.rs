//! Controller tests against kube-rs's mocked API server (tower-test): the exact requests a
//! reconcile pass makes, in order, for the paths that need no Kinesis endpoint (finalizer
//! creation, pause, deletion with `Retain`, configuration and endpoint errors with their
//! status, event and backoff). Resharding and deletion through a Kinesis endpoint are shown
//! end to end against a real kube-apiserver and broker (`tests/tests/operator.rs`).

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
