//! The Kubernetes controllers: Stream, Consumer and RiffleBroker.
//!
//! Each `reconcile_*` function is one pass over one object: pause annotation, finalizer
//! (for `deletionPolicy: Delete` and enhanced fan-out consumers), the work (through
//! [`crate::stream`], [`crate::kinesis`] or [`crate::render`] + server-side apply), events,
//! then the whole status written with server-side apply and `observedGeneration`. Errors
//! are retried with per-object exponential backoff ([`error_policy`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::ByteString;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{predicates, watcher, Predicate, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::conditions;
use crate::crd::{
    Consumer, ConsumerKind, ConsumerStatus, DeletionPolicy, RiffleBroker, RiffleBrokerStatus,
    Stream, COND_DEGRADED, COND_PAUSED, COND_READY, FINALIZER, PAUSE_ANNOTATION, STREAM_LABEL,
};
use crate::kinesis::{self, EndpointConfig, Kinesis, KinesisError};
use crate::load::{self, HttpClient, LoadWindow};
use crate::metrics::{Metrics, StreamLabels};
use crate::plan::Action as KAction;
use crate::render::{self, StreamLimits};
use crate::stream::{self, Note};

/// Field manager of every server-side apply.
pub const MANAGER: &str = "riffle-operator";

/// Longest backoff after repeated failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Wall time, injected so tests can pause it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The endpoint used by Streams that name neither `brokerRef` nor `endpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultEndpoint {
    /// Kinesis API URL.
    pub url: String,
    /// Signing region.
    pub region: String,
    /// Metrics URL, if any.
    pub metrics_url: Option<String>,
}

/// Errors of a reconcile pass.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A Kinesis call failed.
    #[error(transparent)]
    Kinesis(#[from] KinesisError),
    /// The object cannot be reconciled as written (missing broker, secret, stream…).
    #[error("{reason}: {message}")]
    Config {
        /// CamelCase reason.
        reason: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    /// The `error` label of the failure metric.
    pub fn kind(&self) -> String {
        match self {
            Error::Kube(_) => "KubeApi".into(),
            Error::Kinesis(e) => e.code.clone(),
            Error::Config { reason, .. } => (*reason).into(),
        }
    }
}

/// Shared state of the controllers.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Publishes events.
    pub recorder: Recorder,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Client for scraping broker metrics.
    pub http: HttpClient,
    /// Load samples per Stream object.
    pub loads: Mutex<HashMap<String, LoadWindow>>,
    /// Kinesis clients per endpoint.
    pub kinesis: tokio::sync::Mutex<HashMap<EndpointConfig, Kinesis>>,
    /// The fallback endpoint.
    pub default_endpoint: Option<DefaultEndpoint>,
    /// Consecutive failures per object, for backoff.
    pub failures: Mutex<HashMap<String, u32>>,
    /// Wall clock.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("default_endpoint", &self.default_endpoint)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context for `client`.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        default_endpoint: Option<DefaultEndpoint>,
        clock: Arc<dyn Clock>,
        instance: Option<String>,
    ) -> Context {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance,
            },
        );
        Context {
            client,
            recorder,
            metrics,
            http: load::http_client(),
            loads: Mutex::default(),
            kinesis: tokio::sync::Mutex::default(),
            default_endpoint,
            failures: Mutex::default(),
            clock,
        }
    }

    async fn kinesis_for(&self, cfg: &EndpointConfig) -> Kinesis {
        let mut clients = self.kinesis.lock().await;
        if let Some(k) = clients.get(cfg) {
            return k.clone();
        }
        let k = Kinesis::connect(cfg).await;
        clients.insert(cfg.clone(), k.clone());
        k
    }

    async fn publish<K: Resource<DynamicType = ()>>(&self, obj: &K, note: &Note) {
        let ev = Event {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason.clone(),
            note: Some(truncate(&note.message, 1000)),
            action: note.action.clone(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            warn!(error = %e, reason = %note.reason, "could not publish an event");
        }
    }

    fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn key_of<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

/// Requeue after `min(1 s × 2^(n-1), 5 min)` for the n-th consecutive failure of an object.
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    (Duration::from_secs(1) * 2u32.pow(exp)).min(MAX_BACKOFF)
}

/// The error policy of every controller: log, count, back off per object.
pub fn error_policy<K>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let key = key_of(obj.as_ref());
    let n = {
        let mut f = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.entry(key.clone()).or_default();
        *n += 1;
        *n
    };
    let delay = backoff(n);
    warn!(object = %key, error = %err, failures = n, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn is_paused<K: Resource>(obj: &K) -> bool {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(PAUSE_ANNOTATION))
        .is_some_and(|v| v == "true")
}

async fn patch_status<K, S>(api: &Api<K>, obj: &K, status: &S) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Adds or removes [`FINALIZER`], guarded by the resourceVersion read.
async fn set_finalizer<K>(api: &Api<K>, obj: &K, present: bool) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut finalizers: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| f.as_str() != FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(FINALIZER.into());
    }
    let patch = json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}
    });
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Where a Stream lives: its endpoint and metrics URL.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The endpoint.
    pub endpoint: EndpointConfig,
    /// The metrics URL.
    pub metrics_url: Option<String>,
}

async fn secret_credentials(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<(String, String), Error> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?
        .ok_or_else(|| Error::Config {
            reason: "SecretNotFound",
            message: format!("credentials Secret {name} does not exist"),
        })?;
    let data = secret.data.unwrap_or_default();
    let get = |k: &str| {
        data.get(k)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .ok_or_else(|| Error::Config {
                reason: "SecretInvalid",
                message: format!("Secret {name} has no {k}"),
            })
    };
    Ok((get("AWS_ACCESS_KEY_ID")?, get("AWS_SECRET_ACCESS_KEY")?))
}

/// Resolves a Stream's endpoint: `endpoint`, else `brokerRef`, else the default.
pub async fn resolve(ctx: &Context, s: &Stream) -> Result<Resolved, Error> {
    let ns = s.namespace().unwrap_or_default();
    if let Some(e) = &s.spec.endpoint {
        let credentials = match &e.credentials_secret {
            Some(name) => Some(secret_credentials(&ctx.client, &ns, name).await?),
            None => None,
        };
        return Ok(Resolved {
            endpoint: EndpointConfig {
                url: e.url.clone(),
                region: e.region.clone().unwrap_or_else(|| "us-east-1".into()),
                credentials,
            },
            metrics_url: e.metrics_url.clone(),
        });
    }
    if let Some(name) = &s.spec.broker_ref {
        let b = Api::<RiffleBroker>::namespaced(ctx.client.clone(), &ns)
            .get_opt(name)
            .await?
            .ok_or_else(|| Error::Config {
                reason: "BrokerNotFound",
                message: format!("RiffleBroker {name} does not exist in namespace {ns}"),
            })?;
        // The operator's own key on this broker, once the broker's access Secret exists.
        let credentials = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
            .get_opt(&render::access_secret_name(&b))
            .await?
            .and_then(|s| s.data)
            .and_then(|d| {
                let get = |k: &str| d.get(k).map(|v| String::from_utf8_lossy(&v.0).into_owned());
                Some((
                    get("OPERATOR_ACCESS_KEY_ID")?,
                    get("OPERATOR_SECRET_ACCESS_KEY")?,
                ))
            });
        return Ok(Resolved {
            endpoint: EndpointConfig {
                url: render::endpoint_url(&b),
                region: render::region(&b),
                credentials,
            },
            metrics_url: Some(render::metrics_url(&b)),
        });
    }
    match &ctx.default_endpoint {
        Some(d) => Ok(Resolved {
            endpoint: EndpointConfig {
                url: d.url.clone(),
                region: d.region.clone(),
                credentials: None,
            },
            metrics_url: d.metrics_url.clone(),
        }),
        None => Err(Error::Config {
            reason: "NoEndpoint",
            message: "the Stream names neither brokerRef nor endpoint, and the operator has no \
                      --default-endpoint"
                .into(),
        }),
    }
}

fn stream_labels(s: &Stream) -> StreamLabels {
    StreamLabels {
        namespace: s.namespace().unwrap_or_default(),
        stream: s.stream_name(),
    }
}

// ---------------------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------------------

/// Reconciles one Stream.
pub async fn reconcile_stream(obj: Arc<Stream>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = Instant::now();
    let res = reconcile_stream_inner(&obj, &ctx).await;
    ctx.metrics.reconciled(
        "stream",
        start.elapsed(),
        res.as_ref().err().map(|e| e.kind()).as_deref(),
    );
    if res.is_ok() {
        ctx.succeeded(&key_of(obj.as_ref()));
    }
    res
}

async fn reconcile_stream_inner(s: &Stream, ctx: &Context) -> Result<Action, Error> {
    let ns = s.namespace().unwrap_or_default();
    let api: Api<Stream> = Api::namespaced(ctx.client.clone(), &ns);
    let now = ctx.clock.now();
    let has_finalizer = s.finalizers().iter().any(|f| f == FINALIZER);
    if s.metadata.deletion_timestamp.is_some() {
        if has_finalizer {
            return cleanup_stream(s, ctx, &api).await;
        }
        return Ok(Action::await_change());
    }
    if is_paused(s) {
        patch_status(&api, s, &stream::paused(s, now)).await?;
        return Ok(Action::await_change());
    }
    match (s.spec.deletion_policy, has_finalizer) {
        (DeletionPolicy::Delete, false) => {
            set_finalizer(&api, s, true).await?;
            return Ok(Action::await_change());
        }
        (DeletionPolicy::Retain, true) => set_finalizer(&api, s, false).await?,
        _ => {}
    }
    let resolved = match resolve(ctx, s).await {
        Ok(r) => r,
        Err(e) => {
            if let Error::Config { reason, message } = &e {
                let mut status = s.status.clone().unwrap_or_default();
                status.observed_generation = s.metadata.generation;
                let g = s.metadata.generation;
                conditions::set(
                    &mut status.conditions,
                    COND_READY,
                    false,
                    reason,
                    message.clone(),
                    g,
                    now,
                );
                conditions::set(
                    &mut status.conditions,
                    COND_DEGRADED,
                    true,
                    reason,
                    message.clone(),
                    g,
                    now,
                );
                conditions::set(
                    &mut status.conditions,
                    COND_PAUSED,
                    false,
                    "Reconciling",
                    "",
                    g,
                    now,
                );
                patch_status(&api, s, &status).await?;
                ctx.publish(
                    s,
                    &Note {
                        warning: true,
                        reason: (*reason).into(),
                        action: "Resolve".into(),
                        message: message.clone(),
                    },
                )
                .await;
            }
            return Err(e);
        }
    };
    let kinesis = ctx.kinesis_for(&resolved.endpoint).await;
    let deps = stream::Deps {
        kinesis: &kinesis,
        endpoint_url: &resolved.endpoint.url,
        metrics_url: resolved.metrics_url.as_deref(),
        http: &ctx.http,
        loads: &ctx.loads,
        metrics: &ctx.metrics,
        labels: stream_labels(s),
    };
    let outcome = stream::reconcile(s, &key_of(s), &deps, now).await;
    for note in &outcome.notes {
        info!(stream = %s.stream_name(), reason = %note.reason, "{}", note.message);
        ctx.publish(s, note).await;
    }
    patch_status(&api, s, &outcome.status).await?;
    match outcome.error {
        Some(e) => Err(e.into()),
        None => Ok(Action::requeue(outcome.requeue)),
    }
}

async fn cleanup_stream(s: &Stream, ctx: &Context, api: &Api<Stream>) -> Result<Action, Error> {
    if s.spec.deletion_policy == DeletionPolicy::Delete {
        let resolved = resolve(ctx, s).await?;
        let kinesis = ctx.kinesis_for(&resolved.endpoint).await;
        let name = s.stream_name();
        match kinesis.observe(&name).await? {
            Some(o) if o.phase == crate::plan::Phase::Deleting => {
                return Ok(Action::requeue(stream::FAST_REQUEUE));
            }
            Some(_) => {
                kinesis.execute(&name, "", &KAction::DeleteStream).await?;
                ctx.publish(
                    s,
                    &Note {
                        warning: false,
                        reason: "Deleting".into(),
                        action: "DeleteStream".into(),
                        message: format!("deleting stream {name} (deletionPolicy: Delete)"),
                    },
                )
                .await;
                return Ok(Action::requeue(stream::FAST_REQUEUE));
            }
            None => {}
        }
    }
    ctx.metrics.forget_stream(&stream_labels(s));
    ctx.loads
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key_of(s));
    set_finalizer(api, s, false).await?;
    Ok(Action::await_change())
}

// ---------------------------------------------------------------------------------------
// Consumer
// ---------------------------------------------------------------------------------------

/// Reconciles one Consumer.
pub async fn reconcile_consumer(obj: Arc<Consumer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = Instant::now();
    let res = reconcile_consumer_inner(&obj, &ctx).await;
    ctx.metrics.reconciled(
        "consumer",
        start.elapsed(),
        res.as_ref().err().map(|e| e.kind()).as_deref(),
    );
    if res.is_ok() {
        ctx.succeeded(&key_of(obj.as_ref()));
    }
    res
}

async fn reconcile_consumer_inner(c: &Consumer, ctx: &Context) -> Result<Action, Error> {
    let ns = c.namespace().unwrap_or_default();
    let api: Api<Consumer> = Api::namespaced(ctx.client.clone(), &ns);
    let now = ctx.clock.now();
    let g = c.metadata.generation;
    let has_finalizer = c.finalizers().iter().any(|f| f == FINALIZER);
    let fan_out = c.spec.kind == ConsumerKind::EnhancedFanOut;
    let stream = Api::<Stream>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&c.spec.stream_ref)
        .await?;
    if c.metadata.deletion_timestamp.is_some() {
        if has_finalizer {
            if let (Some(s), Some(arn)) = (
                &stream,
                c.status.as_ref().and_then(|st| st.stream_arn.clone()),
            ) {
                let resolved = resolve(ctx, s).await?;
                let kinesis = ctx.kinesis_for(&resolved.endpoint).await;
                kinesis.remove_consumer(&arn, &c.consumer_name()).await?;
            }
            set_finalizer(&api, c, false).await?;
        }
        return Ok(Action::await_change());
    }
    let mut status = c.status.clone().unwrap_or_default();
    status.observed_generation = g;
    if is_paused(c) {
        conditions::set(
            &mut status.conditions,
            COND_PAUSED,
            true,
            "Paused",
            "",
            g,
            now,
        );
        patch_status(&api, c, &status).await?;
        return Ok(Action::await_change());
    }
    conditions::set(
        &mut status.conditions,
        COND_PAUSED,
        false,
        "Reconciling",
        "",
        g,
        now,
    );
    if fan_out != has_finalizer {
        set_finalizer(&api, c, fan_out).await?;
        return Ok(Action::await_change());
    }
    let Some(s) = stream else {
        return consumer_waits(
            c,
            ctx,
            &api,
            status,
            "StreamNotFound",
            format!("Stream {} does not exist", c.spec.stream_ref),
            now,
        )
        .await;
    };
    let Some(stream_arn) = s.status.as_ref().and_then(|st| st.stream_arn.clone()) else {
        return consumer_waits(
            c,
            ctx,
            &api,
            status,
            "StreamNotReady",
            format!("Stream {} has no ARN yet", c.spec.stream_ref),
            now,
        )
        .await;
    };
    let resolved = resolve(ctx, &s).await?;
    status.stream_arn = Some(stream_arn.clone());
    let ready = if fan_out {
        let kinesis = ctx.kinesis_for(&resolved.endpoint).await;
        let (arn, state) = match kinesis
            .ensure_consumer(&stream_arn, &c.consumer_name())
            .await
        {
            Ok(x) => x,
            Err(e) => {
                conditions::set(
                    &mut status.conditions,
                    COND_DEGRADED,
                    true,
                    "KinesisError",
                    e.to_string(),
                    g,
                    now,
                );
                patch_status(&api, c, &status).await?;
                ctx.publish(
                    c,
                    &Note {
                        warning: true,
                        reason: "KinesisError".into(),
                        action: e.operation.into(),
                        message: e.to_string(),
                    },
                )
                .await;
                return Err(e.into());
            }
        };
        if status.consumer_arn.as_ref() != Some(&arn) {
            ctx.publish(
                c,
                &Note {
                    warning: false,
                    reason: "Registered".into(),
                    action: "RegisterStreamConsumer".into(),
                    message: format!("consumer {} registered on {stream_arn}", c.consumer_name()),
                },
            )
            .await;
        }
        status.consumer_arn = Some(arn);
        let active = kinesis::consumer_active(&state);
        status.consumer_status = Some(state);
        active
    } else {
        status.consumer_arn = None;
        status.consumer_status = None;
        true
    };
    let secret = consumer_secret(ctx, c, &s, &resolved, &mut status).await?;
    status.secret_name = Some(secret);
    conditions::set(
        &mut status.conditions,
        COND_DEGRADED,
        false,
        "Healthy",
        "",
        g,
        now,
    );
    if ready {
        conditions::set(
            &mut status.conditions,
            COND_READY,
            true,
            "Active",
            "credentials written",
            g,
            now,
        );
    } else {
        conditions::set(
            &mut status.conditions,
            COND_READY,
            false,
            "Registering",
            "the consumer is not ACTIVE yet",
            g,
            now,
        );
    }
    patch_status(&api, c, &status).await?;
    Ok(Action::requeue(if ready {
        stream::SLOW_REQUEUE
    } else {
        stream::FAST_REQUEUE
    }))
}

async fn consumer_waits(
    c: &Consumer,
    ctx: &Context,
    api: &Api<Consumer>,
    mut status: ConsumerStatus,
    reason: &'static str,
    message: String,
    now: Timestamp,
) -> Result<Action, Error> {
    let g = c.metadata.generation;
    conditions::set(
        &mut status.conditions,
        COND_READY,
        false,
        reason,
        message.clone(),
        g,
        now,
    );
    patch_status(api, c, &status).await?;
    ctx.publish(
        c,
        &Note {
            warning: true,
            reason: reason.into(),
            action: "Resolve".into(),
            message,
        },
    )
    .await;
    Ok(Action::requeue(Duration::from_secs(5)))
}

/// Label on a Consumer Secret naming the RiffleBroker its stream lives on.
pub const BROKER_LABEL: &str = "riffle.dev/broker";

/// The IAM-style policy a consumer's credentials and role are scoped to: read its stream,
/// and (enhanced fan-out) subscribe as its registered consumer.
pub fn consumer_policy(stream_arn: &str, consumer_arn: Option<&str>) -> serde_json::Value {
    let mut statements = vec![json!({
        "Sid": "ReadStream",
        "Effect": "Allow",
        "Action": ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:ListShards",
                   "kinesis:GetShardIterator", "kinesis:GetRecords"],
        "Resource": stream_arn,
    })];
    if let Some(arn) = consumer_arn {
        statements.push(json!({
            "Sid": "FanOut",
            "Effect": "Allow",
            "Action": ["kinesis:DescribeStreamConsumer", "kinesis:SubscribeToShard"],
            "Resource": arn,
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The IAM name of a consumer's user and role: `consumer-<namespace>-<name>`, cut to IAM's
/// 64 characters with a hash of the whole so two long names never collide.
pub fn consumer_principal_name(namespace: &str, name: &str) -> String {
    let full = format!("consumer-{namespace}-{name}");
    if full.len() <= 64 {
        return full;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(full.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let mut cut = 55;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{hash}", &full[..cut])
}

/// The account of an ARN (`arn:aws:kinesis:<region>:<account>:…`).
fn arn_account(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// What a consumer's access adds to the broker's credentials file (`riffle-access.toml` in
/// its Secret): a user with the Secret's static keys and, when a service account is given,
/// a role it may assume by web identity; both scoped by `policy`. The broker loads it from
/// `auth.credentials_dir`, where the fragments are mounted (docs/operator.md).
pub fn consumer_access_toml(
    principal: &str,
    access_key: &str,
    secret_key: &str,
    policy: &serde_json::Value,
    service_account: Option<(&str, &str)>,
) -> String {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let policies = format!("[{{ document = {} }}]", q(&policy.to_string()));
    let mut out = format!(
        "[[users]]\nname = {}\naccess_key_id = {}\nsecret_access_key = {}\npolicies = {policies}\n",
        q(principal),
        q(access_key),
        q(secret_key)
    );
    if let Some((ns, sa)) = service_account {
        out.push_str(&format!(
            "\n[[roles]]\nname = {}\npolicies = {policies}\nservice_accounts = [{}]\n",
            q(principal),
            q(&format!("{ns}/{sa}"))
        ));
    }
    out
}

fn random_key(len: usize, alphabet: &[u8]) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// The key pair stored under `id_key` and `secret_key` in the Secret `name`, or a new one
/// (an access key id of `prefix` and random base32, a 40-character secret) when it has none.
async fn stored_or_new_keys(
    api: &Api<Secret>,
    name: &str,
    (id_key, secret_key): (&str, &str),
    prefix: &str,
) -> Result<(String, String), Error> {
    let existing = api
        .get_opt(name)
        .await?
        .and_then(|s| s.data)
        .unwrap_or_default();
    let keep = |k: &str| {
        existing
            .get(k)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
    };
    let id = keep(id_key).unwrap_or_else(|| {
        format!(
            "{prefix}{}",
            random_key(20 - prefix.len(), b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        )
    });
    let secret = keep(secret_key).unwrap_or_else(|| {
        random_key(
            40,
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        )
    });
    Ok((id, secret))
}

async fn consumer_secret(
    ctx: &Context,
    c: &Consumer,
    s: &Stream,
    resolved: &Resolved,
    status: &mut ConsumerStatus,
) -> Result<String, Error> {
    let ns = c.namespace().unwrap_or_default();
    let name = c.secret_name();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let (access_key, secret_key) = stored_or_new_keys(
        &api,
        &name,
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        "RFL",
    )
    .await?;
    let stream_arn = status.stream_arn.clone().unwrap_or_default();
    let policy = consumer_policy(&stream_arn, status.consumer_arn.as_deref());
    let principal = consumer_principal_name(&ns, &c.name_any());
    let service_account = c.spec.service_account.as_deref();
    let role_arn = service_account.and_then(|_| {
        Some(format!(
            "arn:aws:iam::{}:role/{principal}",
            arn_account(&stream_arn)?
        ))
    });
    let access = consumer_access_toml(
        &principal,
        &access_key,
        &secret_key,
        &policy,
        service_account.map(|sa| (ns.as_str(), sa)),
    );
    let mut data = BTreeMap::from([
        ("AWS_ACCESS_KEY_ID".to_string(), access_key),
        ("AWS_SECRET_ACCESS_KEY".to_string(), secret_key),
        ("AWS_REGION".to_string(), resolved.endpoint.region.clone()),
        (
            "AWS_ENDPOINT_URL_KINESIS".to_string(),
            resolved.endpoint.url.clone(),
        ),
        ("RIFFLE_STREAM_NAME".to_string(), s.stream_name()),
        ("RIFFLE_STREAM_ARN".to_string(), stream_arn.clone()),
        ("policy.json".to_string(), policy.to_string()),
        ("riffle-access.toml".to_string(), access),
    ]);
    if let Some(arn) = &role_arn {
        data.insert("AWS_ROLE_ARN".into(), arn.clone());
    }
    status.role_arn = role_arn;
    if let Some(arn) = &status.consumer_arn {
        data.insert("RIFFLE_CONSUMER_NAME".into(), c.consumer_name());
        data.insert("RIFFLE_CONSUMER_ARN".into(), arn.clone());
    }
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns),
            labels: Some({
                let mut labels = BTreeMap::from([
                    ("riffle.dev/consumer".to_string(), c.name_any()),
                    (STREAM_LABEL.to_string(), c.spec.stream_ref.clone()),
                    (
                        "app.kubernetes.io/managed-by".to_string(),
                        MANAGER.to_string(),
                    ),
                ]);
                if let Some(b) = &s.spec.broker_ref {
                    labels.insert(BROKER_LABEL.to_string(), b.clone());
                }
                labels
            }),
            owner_references: c.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        ..opaque(data)
    };
    apply(&api, &name, &secret).await?;
    Ok(name)
}

/// An Opaque Secret holding `data` (metadata left to the caller).
fn opaque(data: BTreeMap<String, String>) -> Secret {
    Secret {
        type_: Some("Opaque".into()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    }
}

async fn apply<K>(api: &Api<K>, name: &str, obj: &K) -> Result<(), kube::Error>
where
    K: Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// RiffleBroker
// ---------------------------------------------------------------------------------------

/// Reconciles one RiffleBroker: render, apply, report.
pub async fn reconcile_broker(obj: Arc<RiffleBroker>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = Instant::now();
    let res = reconcile_broker_inner(&obj, &ctx).await;
    ctx.metrics.reconciled(
        "broker",
        start.elapsed(),
        res.as_ref().err().map(|e| e.kind()).as_deref(),
    );
    if res.is_ok() {
        ctx.succeeded(&key_of(obj.as_ref()));
    }
    res
}

async fn reconcile_broker_inner(b: &RiffleBroker, ctx: &Context) -> Result<Action, Error> {
    let ns = b.namespace().unwrap_or_default();
    let api: Api<RiffleBroker> = Api::namespaced(ctx.client.clone(), &ns);
    let now = ctx.clock.now();
    let g = b.metadata.generation;
    if b.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let mut status: RiffleBrokerStatus = b.status.clone().unwrap_or_default();
    status.observed_generation = g;
    if is_paused(b) {
        conditions::set(
            &mut status.conditions,
            COND_PAUSED,
            true,
            "Paused",
            "",
            g,
            now,
        );
        patch_status(&api, b, &status).await?;
        return Ok(Action::await_change());
    }
    conditions::set(
        &mut status.conditions,
        COND_PAUSED,
        false,
        "Reconciling",
        "",
        g,
        now,
    );
    let on_broker: Vec<Stream> = Api::<Stream>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|s| {
            s.spec.broker_ref.as_deref() == Some(&b.name_any())
                && s.metadata.deletion_timestamp.is_none()
        })
        .collect();
    let mut streams: Vec<StreamLimits> = on_broker
        .iter()
        .map(|s| StreamLimits {
            stream: s.stream_name(),
            limits: s.spec.shard_limits.clone(),
        })
        .collect();
    streams.sort_by(|a, b| a.stream.cmp(&b.stream));
    let monitor = service_monitor_available(&ctx.client).await;
    let m = render::render(b, &streams, monitor);
    let c = &ctx.client;
    let stream_objects: Vec<String> = on_broker.iter().map(|s| s.name_any()).collect();
    broker_access(ctx, b, &stream_objects).await?;
    apply(
        &Api::<ConfigMap>::namespaced(c.clone(), &ns),
        &m.config_map.name_any(),
        &m.config_map,
    )
    .await?;
    apply(
        &Api::<Service>::namespaced(c.clone(), &ns),
        &m.headless.name_any(),
        &m.headless,
    )
    .await?;
    apply(
        &Api::<Service>::namespaced(c.clone(), &ns),
        &m.client.name_any(),
        &m.client,
    )
    .await?;
    apply(
        &Api::<StatefulSet>::namespaced(c.clone(), &ns),
        &m.statefulset.name_any(),
        &m.statefulset,
    )
    .await?;
    apply(
        &Api::<PodDisruptionBudget>::namespaced(c.clone(), &ns),
        &m.pdb.name_any(),
        &m.pdb,
    )
    .await?;
    if let Some(sm) = &m.service_monitor {
        let ar = ApiResource {
            group: "monitoring.coreos.com".into(),
            version: "v1".into(),
            api_version: "monitoring.coreos.com/v1".into(),
            kind: "ServiceMonitor".into(),
            plural: "servicemonitors".into(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(c.clone(), &ns, &ar);
        api.patch(
            &b.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(sm),
        )
        .await?;
    }
    let ready = Api::<StatefulSet>::namespaced(c.clone(), &ns)
        .get_opt(&b.name_any())
        .await?
        .and_then(|s| s.status)
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    status.ready_replicas = Some(ready);
    status.endpoint = Some(render::endpoint_url(b));
    status.metrics_url = Some(render::metrics_url(b));
    status.service_monitor = m.service_monitor.is_some();
    if ready >= b.spec.replicas {
        conditions::set(
            &mut status.conditions,
            COND_READY,
            true,
            "PodsReady",
            format!("{ready} pods ready"),
            g,
            now,
        );
    } else {
        conditions::set(
            &mut status.conditions,
            COND_READY,
            false,
            "PodsNotReady",
            format!("{ready} of {} pods ready", b.spec.replicas),
            g,
            now,
        );
    }
    conditions::set(
        &mut status.conditions,
        COND_DEGRADED,
        false,
        "Applied",
        "every object applied",
        g,
        now,
    );
    patch_status(&api, b, &status).await?;
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// Writes the broker's access Secret: the operator's administrator key (generated once) and
/// the `riffle-access.toml` of every Consumer of a stream on this broker, which the broker
/// pod reads from its `auth.credentials_dir`.
async fn broker_access(ctx: &Context, b: &RiffleBroker, streams: &[String]) -> Result<(), Error> {
    let ns = b.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let name = render::access_secret_name(b);
    let (access_key, secret_key) = stored_or_new_keys(
        &secrets,
        &name,
        ("OPERATOR_ACCESS_KEY_ID", "OPERATOR_SECRET_ACCESS_KEY"),
        "RFLOP",
    )
    .await?;
    // Consumers (same namespace: a Stream's brokerRef resolves in its own) of this broker's
    // Stream objects, with the fragment their Secret carries.
    let mut consumers = Vec::new();
    for c in Api::<Consumer>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await?
        .items
    {
        if c.metadata.deletion_timestamp.is_some() || !streams.contains(&c.spec.stream_ref) {
            continue;
        }
        let fragment = secrets
            .get_opt(&c.secret_name())
            .await?
            .and_then(|s| s.data)
            .and_then(|d| d.get("riffle-access.toml").cloned())
            .map(|v| String::from_utf8_lossy(&v.0).into_owned());
        if let Some(f) = fragment {
            consumers.push((c.name_any(), f));
        }
    }
    let data = render::access_secret_data((&access_key, &secret_key), &consumers);
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                MANAGER.to_string(),
            )])),
            owner_references: b.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        ..opaque(data)
    };
    apply(&secrets, &name, &secret).await?;
    Ok(())
}

async fn service_monitor_available(client: &Client) -> bool {
    client
        .list_api_group_resources("monitoring.coreos.com/v1")
        .await
        .map(|l| l.resources.iter().any(|r| r.name == "servicemonitors"))
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------

/// Checks that the CRDs are installed: lists Streams once, with a clear error if not.
pub async fn check_crds(client: &Client) -> anyhow::Result<()> {
    for (kind, res) in [
        (
            "streams.riffle.dev",
            Api::<Stream>::all(client.clone())
                .list(&ListParams::default().limit(1))
                .await
                .map(|_| ()),
        ),
        (
            "consumers.riffle.dev",
            Api::<Consumer>::all(client.clone())
                .list(&ListParams::default().limit(1))
                .await
                .map(|_| ()),
        ),
        (
            "rifflebrokers.riffle.dev",
            Api::<RiffleBroker>::all(client.clone())
                .list(&ListParams::default().limit(1))
                .await
                .map(|_| ()),
        ),
    ] {
        res.map_err(|e| anyhow::anyhow!("cannot list {kind} ({e}): install the CRDs with `kubectl apply --server-side -f crds/`"))?;
    }
    Ok(())
}

/// Runs the three controllers until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let streams: Api<Stream> = Api::all(client.clone());
    // Own status writes change neither generation, annotations nor finalizers, so they do
    // not trigger a pass; the requeue in each Action paces the stream's own loop.
    let (reader, writer) = kube::runtime::reflector::store();
    let stream_events = watcher(streams.clone(), watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation
                .combine(predicates::annotations)
                .combine(predicates::finalizers),
            Default::default(),
        );
    let stream_ctl = Controller::for_stream(stream_events, reader)
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(reconcile_stream, error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));

    let consumer_ctl = Controller::new(
        Api::<Consumer>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .owns(
        Api::<Secret>::all(client.clone()),
        watcher::Config::default().labels("app.kubernetes.io/managed-by=riffle-operator"),
    )
    .graceful_shutdown_on(shutdown.clone().cancelled_owned())
    .run(reconcile_consumer, error_policy, ctx.clone())
    .for_each(|_| futures::future::ready(()));

    let managed = watcher::Config::default().labels("app.kubernetes.io/managed-by=riffle-operator");
    let broker_ctl = Controller::new(
        Api::<RiffleBroker>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .owns(Api::<StatefulSet>::all(client.clone()), managed.clone())
    .owns(Api::<Service>::all(client.clone()), managed.clone())
    .owns(Api::<ConfigMap>::all(client.clone()), managed)
    // A Consumer Secret of a stream on a RiffleBroker: the broker's access Secret follows.
    .watches(
        Api::<Secret>::all(client.clone()),
        watcher::Config::default().labels(BROKER_LABEL),
        |s: Secret| {
            let ns = s.namespace();
            s.labels().get(BROKER_LABEL).map(|b| {
                let r = kube::runtime::reflector::ObjectRef::<RiffleBroker>::new(b);
                match ns {
                    Some(ns) => r.within(&ns),
                    None => r,
                }
            })
        },
    )
    .watches(streams, watcher::Config::default(), |s: Stream| {
        let ns = s.namespace();
        s.spec.broker_ref.map(|b| {
            let r = kube::runtime::reflector::ObjectRef::<RiffleBroker>::new(&b);
            match ns {
                Some(ns) => r.within(&ns),
                None => r,
            }
        })
    })
    .graceful_shutdown_on(shutdown.cancelled_owned())
    .run(reconcile_broker, error_policy, ctx)
    .for_each(|_| futures::future::ready(()));

    tokio::join!(stream_ctl, consumer_ctl, broker_ctl);
}

#[cfg(test)]
mod tests;
