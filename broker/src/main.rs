//! `riffle-broker`: run a Kinesis-compatible broker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use riffle_broker::auth::{Anonymous, Authenticator, SigV4};
use riffle_broker::broker::Broker;
use riffle_broker::clock::Clock;
use riffle_broker::config::Config;
use riffle_broker::server::{self, App};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A self-hosted Amazon Kinesis Data Streams compatible broker.
///
/// Settings come from the config file (TOML), then environment variables, then flags.
/// Any AWS SDK or the AWS CLI works against it by changing only the endpoint URL.
#[derive(Debug, Parser)]
#[command(name = "riffle-broker", version)]
struct Args {
    /// TOML config file (see docs/configuration.md).
    #[arg(long, env = "RIFFLE_CONFIG")]
    config: Option<PathBuf>,
    /// Kinesis API address (HTTP/1.1 and h2c on one port) [default: 127.0.0.1:4567].
    #[arg(long, env = "RIFFLE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Admin address for /metrics, /healthz, /readyz [default: 127.0.0.1:9567].
    #[arg(long, env = "RIFFLE_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Data directory [default: ./riffle-data].
    #[arg(long, env = "RIFFLE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Region written into ARNs [default: us-east-1].
    #[arg(long, env = "RIFFLE_REGION")]
    region: Option<String>,
    /// 12-digit account id written into ARNs [default: 000000000000].
    #[arg(long, env = "RIFFLE_ACCOUNT_ID")]
    account_id: Option<String>,
    /// Accept every request without checking signatures (local development only: anyone who
    /// can reach the port can read, write and delete every stream).
    #[arg(long, env = "RIFFLE_ALLOW_ANONYMOUS")]
    allow_anonymous: bool,
    /// Let tests move the broker's clock forward (POST /test/clock/advance on the admin
    /// listener). Never use in production.
    #[arg(long)]
    test_clock: bool,
}

fn load_config(args: &Args) -> Result<Config, String> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path).map_err(|e| format!("{e}: {}", source_chain(&e)))?,
        None => Config::default(),
    };
    if let Some(a) = args.listen {
        config.listen = a;
    }
    if let Some(a) = args.admin_listen {
        config.admin_listen = a;
    }
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(r) = &args.region {
        config.region = r.clone();
    }
    if let Some(a) = &args.account_id {
        config.account_id = a.clone();
    }
    if args.allow_anonymous {
        config.auth.anonymous = true;
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("riffle-broker: invalid configuration: {e}");
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("riffle-broker: cannot start the runtime: {e}");
            return ExitCode::from(70);
        }
    };
    match runtime.block_on(run(config, args.test_clock)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("riffle-broker: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(config: Config, test_clock: bool) -> anyhow::Result<()> {
    let clock = if test_clock {
        Clock::adjustable()
    } else {
        Clock::system()
    };
    let api = TcpListener::bind(config.listen).await?;
    let admin = TcpListener::bind(config.admin_listen).await?;
    let tls = match &config.tls {
        Some(t) => Some((
            TcpListener::bind(t.listen).await?,
            riffle_broker::tls::acceptor(&t.cert_file, &t.key_file, t.client_ca_file.as_deref())?,
            t.reload_interval,
        )),
        None => None,
    };
    let stop = CancellationToken::new();
    let mut sts = None;
    let auth: Arc<dyn Authenticator> = if config.auth.anonymous {
        tracing::warn!(
            "AUTHENTICATION IS OFF (auth.anonymous): every request is accepted unchecked; \
             anyone who can reach {} can read, write and delete every stream",
            config.listen
        );
        Arc::new(Anonymous)
    } else {
        let sigv4 = Arc::new(
            SigV4::open(
                &config.auth,
                &config.region,
                &config.account_id,
                &config.data_dir,
                clock.clone(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        sts = Some(Arc::new(
            riffle_broker::auth::sts::Sts::new(sigv4.clone(), &config.auth)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ));
        if let Some(v) = sts.as_ref().and_then(|s| s.web_identity()) {
            if v.fetches() {
                // Keys before the first request, if the issuer answers; the watcher retries.
                v.fetch_and_watch(stop.clone()).await;
            }
        }
        tracing::info!(users = sigv4.user_count(), "SigV4 authentication on");
        tokio::spawn(
            sigv4
                .clone()
                .watch(config.auth.reload_interval, stop.clone()),
        );
        sigv4
    };
    let broker = Broker::open(config, clock).await?;
    let app = Arc::new(App {
        broker: broker.clone(),
        budget: riffle_broker::budget::Budget::new(broker.config.max_inflight_bytes),
        auth,
        sts,
        ready: AtomicBool::new(false),
    });
    let api_addr = api.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let api_task = tokio::spawn(server::serve(
        api,
        None,
        app.clone(),
        stop.clone(),
        server::handle,
    ));
    let admin_task = tokio::spawn(server::serve(
        admin,
        None,
        app.clone(),
        stop.clone(),
        server::handle_admin,
    ));
    let mut ready = format!("riffle-broker ready api={api_addr} admin={admin_addr}");
    let tls_task = match tls {
        Some((listener, tls, reload)) => {
            let addr = listener.local_addr()?;
            ready.push_str(&format!(" tls={addr}"));
            tokio::spawn(riffle_broker::tls::watch(tls.certs, reload, stop.clone()));
            Some(tokio::spawn(server::serve(
                listener,
                Some(tls.acceptor),
                app.clone(),
                stop.clone(),
                server::handle,
            )))
        }
        None => None,
    };
    app.ready.store(true, Ordering::Release);
    tracing::info!(api = %api_addr, admin = %admin_addr, data_dir = %broker.data_dir().display(), "serving");
    println!("{ready}");
    server::shutdown_signal().await;
    // Shutdown order: end subscriptions (their streams finish cleanly), stop accepting and
    // drain ordinary requests within the grace period, then seal the shards and exit.
    app.ready.store(false, Ordering::Release);
    broker.begin_shutdown();
    stop.cancel();
    let _ = api_task.await;
    let _ = admin_task.await;
    if let Some(t) = tls_task {
        let _ = t.await;
    }
    broker.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
