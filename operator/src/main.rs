//! `riffle-operator`: the Kubernetes operator (`run`), the same controller without
//! Kubernetes (`standalone`), and the CRD generator (`crdgen`). See the crate docs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use riffle_operator::controller::{self, Context, DefaultEndpoint, SystemClock};
use riffle_operator::kinesis::EndpointConfig;
use riffle_operator::leader::Elector;
use riffle_operator::metrics::Metrics;
use riffle_operator::{crd, standalone};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

#[derive(Parser, Debug)]
#[command(
    name = "riffle-operator",
    version,
    about = "Riffle streams as Kubernetes resources"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controllers against the cluster (in-cluster config, or KUBECONFIG).
    Run(RunArgs),
    /// Drive Stream manifests in a directory against one Kinesis endpoint, without Kubernetes.
    Standalone(StandaloneArgs),
    /// Print the CRDs (crds/riffle.dev.yaml).
    Crdgen,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Serve /metrics, /healthz and /readyz here.
    #[arg(
        long,
        env = "RIFFLE_OPERATOR_METRICS_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    metrics_listen: SocketAddr,
    /// Endpoint for Streams that name neither brokerRef nor endpoint.
    #[arg(long, env = "RIFFLE_DEFAULT_ENDPOINT")]
    default_endpoint: Option<String>,
    /// Signing region of the default endpoint.
    #[arg(long, env = "RIFFLE_DEFAULT_REGION", default_value = "us-east-1")]
    default_region: String,
    /// Metrics URL of the default endpoint.
    #[arg(long, env = "RIFFLE_DEFAULT_METRICS_URL")]
    default_metrics_url: Option<String>,
    /// Disable leader election (only with a single replica).
    #[arg(long)]
    no_leader_election: bool,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "riffle-operator")]
    lease_name: String,
    /// This replica's identity (defaults to the pod name, or the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Lease duration in seconds.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
}

#[derive(clap::Args, Debug)]
struct StandaloneArgs {
    /// Directory of Stream manifests.
    #[arg(long)]
    manifests: PathBuf,
    /// Kinesis endpoint URL.
    #[arg(long)]
    endpoint: String,
    /// Signing region.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// The endpoint's Prometheus metrics URL (needed for autoscaling).
    #[arg(long)]
    metrics_url: Option<String>,
    /// Where statuses (and reshard ledgers) are kept (default <manifests>/.riffle-state).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Re-read the manifests this often.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    rescan: Duration,
    /// One pass over every Stream, then exit.
    #[arg(long)]
    once: bool,
    /// Serve the operator's /metrics here.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
}

fn main() {
    let cli = Cli::parse();
    // Both rustls back ends are linked (kube asks for ring, the AWS SDK for aws-lc-rs), so
    // rustls cannot pick one itself; kube's client config needs a process default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Command::Crdgen = cli.command {
        print!("{}", crd::crds_yaml());
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn,aws=warn,hyper=warn".into()),
        )
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = rt.block_on(async {
        let result = match cli.command {
            Command::Run(a) => run(a).await,
            Command::Standalone(a) => run_standalone(a).await,
            Command::Crdgen => Ok(()),
        };
        match result {
            Ok(()) => 0,
            Err(e) => {
                error!("{e:#}");
                1
            }
        }
    });
    std::process::exit(code);
}

/// Cancels `token` on SIGTERM or SIGINT.
fn on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        info!("shutting down");
        token.cancel();
    });
}

async fn run(a: RunArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    on_signal(shutdown.clone());
    let metrics = Arc::new(Metrics::default());
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes config (in-cluster or KUBECONFIG)")?;
    controller::check_crds(&client).await?;
    serve_metrics(a.metrics_listen, metrics.clone(), shutdown.clone()).await?;
    let identity = a.identity.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| format!("riffle-operator-{}", std::process::id()))
    });
    let default_endpoint = a.default_endpoint.clone().map(|url| DefaultEndpoint {
        url,
        region: a.default_region.clone(),
        metrics_url: a.default_metrics_url.clone(),
    });
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        default_endpoint,
        Arc::new(SystemClock),
        Some(identity.clone()),
    ));
    if a.no_leader_election {
        metrics.leader.set(1);
        controller::run(ctx, shutdown).await;
        return Ok(());
    }
    let elector = Elector {
        api: kube::Api::namespaced(client, &a.lease_namespace),
        name: a.lease_name.clone(),
        identity: identity.clone(),
        duration: Duration::from_secs(a.lease_seconds),
        renew: Duration::from_secs((a.lease_seconds / 3).max(1)),
    };
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let campaign = tokio::spawn(elector.run(tx, shutdown.clone()));
    info!(%identity, lease = %a.lease_name, "waiting for leadership");
    loop {
        if *rx.borrow() {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            changed = rx.changed() => if changed.is_err() { return Ok(()) },
        }
    }
    info!(%identity, "leading: starting the controllers");
    metrics.leader.set(1);
    let controllers = shutdown.child_token();
    let lost = {
        let controllers = controllers.clone();
        async move {
            while rx.changed().await.is_ok() {
                if !*rx.borrow() {
                    controllers.cancel();
                    return true;
                }
            }
            false
        }
    };
    let (lost, ()) = tokio::join!(lost, controller::run(ctx, controllers));
    metrics.leader.set(0);
    shutdown.cancel();
    let _ = campaign.await;
    if lost {
        anyhow::bail!("leadership lost: exiting so that only the leader acts");
    }
    Ok(())
}

async fn run_standalone(a: StandaloneArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    on_signal(shutdown.clone());
    let metrics = Arc::new(Metrics::default());
    if let Some(listen) = a.metrics_listen {
        serve_metrics(listen, metrics.clone(), shutdown.clone()).await?;
    }
    let state_dir = a
        .state_dir
        .unwrap_or_else(|| a.manifests.join(".riffle-state"));
    standalone::run(
        standalone::Options {
            manifests: a.manifests,
            state_dir,
            endpoint: EndpointConfig {
                url: a.endpoint,
                region: a.region,
                credentials: None,
            },
            metrics_url: a.metrics_url,
            rescan: a.rescan,
            once: a.once,
        },
        metrics,
        shutdown,
    )
    .await
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listen` until `shutdown`.
async fn serve_metrics(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use http_body_util::Full;
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    info!(addr = %listener.local_addr()?, "serving metrics");
    tokio::spawn(async move {
        loop {
            let (sock, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move {
                        let (status, ctype, body) = match req.uri().path() {
                            "/metrics" => (
                                200,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                metrics.encode(),
                            ),
                            "/healthz" | "/readyz" => (200, "text/plain", "ok\n".to_string()),
                            _ => (404, "text/plain", "not found\n".to_string()),
                        };
                        let resp = hyper::Response::builder()
                            .status(status)
                            .header("content-type", ctype)
                            .body(Full::new(bytes::Bytes::from(body)))
                            .expect("valid response");
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    Ok(())
}
