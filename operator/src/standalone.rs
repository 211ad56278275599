//! Standalone mode: the same Stream reconcile step ([`crate::stream`]) and autoscaler,
//! driven from Stream manifests in a directory instead of the Kubernetes API, against one
//! Kinesis endpoint. For users without Kubernetes.
//!
//! Every `*.yaml` / `*.yml` / `*.json` file in the directory is read (multi-document YAML
//! is fine; documents of other kinds are skipped). Each Stream's status, reshard ledger
//! included, is kept in `<state dir>/<stream>.json`, so the budget survives restarts. A
//! manifest removed from the directory deletes its stream when its last known
//! `deletionPolicy` was `Delete`, and only forgets it otherwise. Events become log lines.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::crd::{DeletionPolicy, Stream, StreamStatus};
use crate::kinesis::{EndpointConfig, Kinesis};
use crate::load::{self, LoadWindow};
use crate::metrics::{Metrics, StreamLabels};
use crate::plan::Action;
use crate::stream;

/// Standalone settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The manifests directory.
    pub manifests: PathBuf,
    /// Where statuses are kept (default `<manifests>/.riffle-state`).
    pub state_dir: PathBuf,
    /// The endpoint of Streams that name none.
    pub endpoint: EndpointConfig,
    /// Metrics URL of that endpoint.
    pub metrics_url: Option<String>,
    /// How often the directory is read again.
    pub rescan: Duration,
    /// Stop after the first pass over every Stream.
    pub once: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Saved {
    stream_name: String,
    deletion_policy: DeletionPolicy,
    status: StreamStatus,
}

/// Reads every Stream manifest in `dir`.
pub fn read_manifests(dir: &Path) -> anyhow::Result<Vec<Stream>> {
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
        })
        .collect();
    paths.sort();
    for p in paths {
        let text = std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
        let docs: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&text).with_context(|| format!("parse {}", p.display()))?;
        for doc in docs {
            if doc.get("kind").and_then(|k| k.as_str()) != Some("Stream") {
                continue;
            }
            let s: Stream = serde_json::from_value(doc)
                .with_context(|| format!("a Stream in {}", p.display()))?;
            out.push(s);
        }
    }
    Ok(out)
}

fn state_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

fn load_saved(dir: &Path) -> BTreeMap<String, Saved> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match std::fs::read(&p).map(|b| serde_json::from_slice::<Saved>(&b)) {
            Ok(Ok(s)) => {
                out.insert(s.stream_name.clone(), s);
            }
            _ => warn!(path = %p.display(), "unreadable state file, ignored"),
        }
    }
    out
}

fn save(dir: &Path, saved: &Saved) -> anyhow::Result<()> {
    let path = state_path(dir, &saved.stream_name);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(saved)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// Runs until cancelled (or after one pass with `once`).
pub async fn run(
    opts: Options,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("create {}", opts.state_dir.display()))?;
    let http = load::http_client();
    let loads: Mutex<HashMap<String, LoadWindow>> = Mutex::default();
    let mut clients: HashMap<EndpointConfig, Kinesis> = HashMap::new();
    let mut due: HashMap<String, Timestamp> = HashMap::new();
    loop {
        let streams = match read_manifests(&opts.manifests) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "cannot read the manifests");
                Vec::new()
            }
        };
        let mut saved = load_saved(&opts.state_dir);
        let now = Timestamp::now();
        let mut next = now + jiff::SignedDuration::try_from(opts.rescan)?;
        for mut s in streams {
            let name = s.stream_name();
            let prev = saved.remove(&name);
            if due.get(&name).is_some_and(|t| *t > now) && !opts.once {
                next = next.min(due[&name]);
                continue;
            }
            let (endpoint, metrics_url) = match &s.spec.endpoint {
                Some(e) => (
                    EndpointConfig {
                        url: e.url.clone(),
                        region: e
                            .region
                            .clone()
                            .unwrap_or_else(|| opts.endpoint.region.clone()),
                        credentials: None,
                    },
                    e.metrics_url.clone(),
                ),
                None => (opts.endpoint.clone(), opts.metrics_url.clone()),
            };
            if s.spec.broker_ref.is_some() {
                warn!(stream = %name, "brokerRef needs Kubernetes; using the standalone endpoint");
            }
            if !clients.contains_key(&endpoint) {
                clients.insert(endpoint.clone(), Kinesis::connect(&endpoint).await);
            }
            let kinesis = &clients[&endpoint];
            s.status = prev.map(|p| p.status);
            s.metadata.generation = Some(1);
            let deps = stream::Deps {
                kinesis,
                endpoint_url: &endpoint.url,
                metrics_url: metrics_url.as_deref(),
                http: &http,
                loads: &loads,
                metrics: &metrics,
                labels: StreamLabels {
                    namespace: "standalone".into(),
                    stream: name.clone(),
                },
            };
            let outcome = stream::reconcile(&s, &format!("standalone/{name}"), &deps, now).await;
            for n in &outcome.notes {
                if n.warning {
                    warn!(stream = %name, reason = %n.reason, "{}", n.message);
                } else {
                    info!(stream = %name, reason = %n.reason, "{}", n.message);
                }
            }
            save(
                &opts.state_dir,
                &Saved {
                    stream_name: name.clone(),
                    deletion_policy: s.spec.deletion_policy,
                    status: outcome.status,
                },
            )?;
            let at = now + jiff::SignedDuration::try_from(outcome.requeue)?;
            due.insert(name, at);
            next = next.min(at);
        }
        // Streams whose manifest is gone.
        for (name, gone) in saved {
            if gone.deletion_policy == DeletionPolicy::Delete {
                let kinesis = clients
                    .entry(opts.endpoint.clone())
                    .or_insert(Kinesis::connect(&opts.endpoint).await);
                match kinesis.execute(&name, "", &Action::DeleteStream).await {
                    Ok(()) => {
                        info!(stream = %name, "manifest removed: stream deleted (deletionPolicy: Delete)")
                    }
                    Err(e) => {
                        warn!(stream = %name, error = %e, "could not delete the stream");
                        continue;
                    }
                }
            } else {
                info!(stream = %name, "manifest removed: stream retained (deletionPolicy: Retain)");
            }
            let _ = std::fs::remove_file(state_path(&opts.state_dir, &name));
            due.remove(&name);
        }
        if opts.once {
            return Ok(());
        }
        let wait = next
            .duration_since(Timestamp::now())
            .unsigned_abs()
            .clamp(Duration::from_millis(200), opts.rescan);
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_read_from_multi_document_files() {
        let dir = tempfile_dir();
        std::fs::write(
            dir.join("streams.yaml"),
            "apiVersion: riffle.dev/v1alpha1\nkind: Stream\nmetadata:\n  name: a\nspec:\n  shardCount: 2\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n---\n\
             apiVersion: riffle.dev/v1alpha1\nkind: Stream\nmetadata:\n  name: b\nspec:\n  shardCount: 1\n  streamName: bee\n",
        )
        .unwrap();
        std::fs::write(dir.join("notes.txt"), "not a manifest").unwrap();
        let s = read_manifests(&dir).unwrap();
        let names: Vec<_> = s.iter().map(|s| s.stream_name()).collect();
        assert_eq!(names, ["a", "bee"]);
        std::fs::write(
            dir.join("bad.yaml"),
            "kind: Stream\nspec: {shardCount: nope}\n",
        )
        .unwrap();
        assert!(read_manifests(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("riffle-standalone-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
