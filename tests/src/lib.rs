//! End-to-end test harness for the Riffle broker (and [`MotoServer`], a real
//! DynamoDB-compatible server for the consumer library's lease tables).
//!
//! The harness starts the real `riffle-broker` binary as a child process on
//! loopback ports chosen by the OS, waits for its readiness line, and hands out
//! an [`aws_sdk_kinesis::Client`] pointed at it.
//!
//! # Locating the binary
//!
//! The broker binary is looked up, in order:
//!
//! 1. the `RIFFLE_BROKER_BIN` environment variable, if set;
//! 2. `<workspace>/target/<profile>/riffle-broker`, where `<workspace>` is the
//!    parent of this crate's manifest directory and `<profile>` is `debug` or
//!    `release` (following how this crate itself was compiled). A
//!    `CARGO_TARGET_DIR` set at compile time of this crate is honoured.
//!
//! The harness never builds the broker itself: build it before running the
//! tests, e.g.
//!
//! ```text
//! cargo build -p riffle-broker      # or: cargo build (all workspace binaries)
//! cargo test -p riffle-tests
//! ```
//!
//! Note that `cargo test` alone does *not* produce
//! `target/debug/riffle-broker`: cargo builds a package's plain binaries only
//! for that same package's integration tests, and this crate is a different
//! package. `cargo build` (or `cargo build --workspace`) at the workspace root
//! does build every binary, so CI should run `cargo build` before
//! `cargo test`. A missing binary makes [`TestBrokerBuilder::start`] panic
//! with a message saying so.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() {
//! use riffle_tests::TestBroker;
//! let broker = TestBroker::start().await;
//! broker.create_stream("orders", 2).await;
//! let client = broker.client();
//! client
//!     .put_record()
//!     .stream_name("orders")
//!     .partition_key("k")
//!     .data(aws_smithy_types::Blob::new(b"hello".to_vec()))
//!     .send()
//!     .await
//!     .unwrap();
//! # }
//! ```

pub mod moto;
pub use moto::MotoServer;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::types::StreamStatus;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// AWS account id the broker is configured with by the default test config.
pub const ACCOUNT_ID: &str = "000000000000";

/// AWS region the broker is configured with by the default test config.
pub const REGION: &str = "us-east-1";

/// How long the harness waits for the readiness line on stdout.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`TestBroker::wait_active`] polls before giving up.
pub const ACTIVE_TIMEOUT: Duration = Duration::from_secs(15);

/// The configuration used by [`TestBroker::start`] and by a builder that was
/// given no config: fast status transitions (50 ms), no fsync, and every
/// throughput limit and control-plane call rate switched off so that only tests
/// that ask for limits see throttling.
pub const DEFAULT_CONFIG: &str = r#"
region = "us-east-1"
account_id = "000000000000"

[streams]
status_delay = "50ms"

[storage]
fsync = "never"

[control_plane]
enabled = false

# A test key under the id of AWS's managed key, for StartStreamEncryption.
[encryption.keys]
"alias/aws/kinesis" = "6b696e657369732d746573742d6b65792d6e6f742d612d7265616c2d6b657921"

[limits]
write_bytes_per_second = "off"
write_records_per_second = "off"
read_bytes_per_second = "off"
get_records_per_second = "off"
get_shard_iterator_per_second = "off"
"#;

/// The ARN the broker gives a stream of the default test account and region.
pub fn stream_arn(name: &str) -> String {
    format!("arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/{name}")
}

/// Compares two decimal sequence numbers as unbounded non-negative integers:
/// first by length (after stripping leading zeros), then lexicographically.
pub fn cmp_seq(a: &str, b: &str) -> std::cmp::Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Path of the broker binary, per the lookup rules in the crate docs.
///
/// # Panics
///
/// Panics with instructions if the binary does not exist.
pub fn broker_binary() -> PathBuf {
    workspace_binary("riffle-broker", "RIFFLE_BROKER_BIN")
}

/// Path of the `riffle` command-line tool: `$RIFFLE_CLI_BIN`, else the workspace's
/// `target/<profile>/riffle` (built by `cargo build`, like the broker).
///
/// # Panics
///
/// Panics with instructions if the binary does not exist.
pub fn cli_binary() -> PathBuf {
    workspace_binary("riffle", "RIFFLE_CLI_BIN")
}

/// A binary of this workspace: `$env` if set, else `<target>/<profile>/<name>`.
fn workspace_binary(name: &str, env: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{env} points at {}, which is not a file",
            p.display()
        );
        return p;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .parent()
        .expect("riffle-tests lives inside the workspace");
    let target = option_env!("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let bin = target.join(profile).join(name);
    assert!(
        bin.is_file(),
        "the binary {} is missing: run `cargo build` at the workspace root \
         (which builds all binaries; `cargo test` alone does not) before the tests, or set {env}",
        bin.display()
    );
    bin
}

/// Polls DescribeStreamSummary with `client` (its own keys, for brokers with authentication
/// on) until the stream is ACTIVE.
///
/// # Panics
///
/// Panics if it is not ACTIVE within [`ACTIVE_TIMEOUT`].
pub async fn wait_active_with(client: &aws_sdk_kinesis::Client, name: &str) {
    let deadline = Instant::now() + ACTIVE_TIMEOUT;
    let mut last = None;
    while Instant::now() < deadline {
        match client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
        {
            Ok(out) => {
                let status = out
                    .stream_description_summary()
                    .map(|s| s.stream_status().clone());
                if status == Some(StreamStatus::Active) {
                    return;
                }
                last = Some(format!("{status:?}"));
            }
            Err(e) => last = Some(format!("{e:?}")),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("stream {name} not ACTIVE after {ACTIVE_TIMEOUT:?}; last: {last:?}");
}

/// Builder for a [`TestBroker`]; obtain it with [`TestBroker::builder`].
#[derive(Debug, Default)]
pub struct TestBrokerBuilder {
    config_toml: Option<String>,
    credentials: Option<String>,
    test_clock: bool,
    data_dir: Option<PathBuf>,
    tls: Option<(String, String)>,
    tls_client_ca: Option<String>,
}

impl TestBrokerBuilder {
    /// Also serves the API over TLS: the PEM certificate chain (leaf first)
    /// and private key are written next to the config, and a `[tls]` table
    /// listening on `127.0.0.1:0` is appended to the config. The port is
    /// read from the ready line; see [`TestBroker::tls_endpoint`].
    pub fn tls(mut self, cert_chain_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        self.tls = Some((cert_chain_pem.into(), key_pem.into()));
        self
    }

    /// With [`tls`](Self::tls): clients of the TLS port must present a certificate chained
    /// to one of the CAs in this PEM (`[tls] client_ca_file`).
    pub fn tls_client_ca(mut self, ca_pem: impl Into<String>) -> Self {
        self.tls_client_ca = Some(ca_pem.into());
        self
    }

    /// Turns authentication on with this credentials file (TOML, see the broker's
    /// `auth/keys.rs`). Without it, a config that has no `[auth]` table gets
    /// `anonymous = true`, so tests that are not about authentication need no keys.
    pub fn credentials(mut self, toml: impl Into<String>) -> Self {
        self.credentials = Some(toml.into());
        self
    }

    /// Uses `toml` as the whole config file instead of [`DEFAULT_CONFIG`].
    pub fn config_toml(mut self, toml: impl Into<String>) -> Self {
        self.config_toml = Some(toml.into());
        self
    }

    /// Passes `--test-clock`, enabling [`TestBroker::advance_clock`].
    pub fn test_clock(mut self, on: bool) -> Self {
        self.test_clock = on;
        self
    }

    /// Uses an existing data directory instead of a fresh temporary one. The
    /// directory is not removed when the broker is dropped.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Starts the broker and waits until it prints its readiness line.
    ///
    /// # Panics
    ///
    /// Panics if the binary is missing, fails to start, exits early, or is
    /// not ready within [`READY_TIMEOUT`].
    pub async fn start(self) -> TestBroker {
        let scratch = tempfile::Builder::new()
            .prefix("riffle-test-")
            .tempdir()
            .expect("create temp dir");
        let config_path = scratch.path().join("riffle.toml");
        let mut config = self
            .config_toml
            .unwrap_or_else(|| DEFAULT_CONFIG.to_string());
        if let Some(creds) = &self.credentials {
            let path = scratch.path().join("credentials.toml");
            std::fs::write(&path, creds).expect("write credentials");
            config.push_str(&format!(
                "\n[auth]\ncredentials_file = {:?}\nreload_interval = \"200ms\"\n",
                path.display().to_string()
            ));
        } else if !config.contains("[auth]") {
            config.push_str("\n[auth]\nanonymous = true\n");
        }
        if let Some((cert, key)) = &self.tls {
            let cert_path = scratch.path().join("tls.crt");
            let key_path = scratch.path().join("tls.key");
            std::fs::write(&cert_path, cert).expect("write TLS certificate");
            std::fs::write(&key_path, key).expect("write TLS key");
            // Reread every 200 ms, so a test can rotate the files (see `tls_files`).
            config.push_str(&format!(
                "\n[tls]\nlisten = \"127.0.0.1:0\"\ncert_file = {:?}\nkey_file = {:?}\nreload_interval = \"200ms\"\n",
                cert_path.display().to_string(),
                key_path.display().to_string()
            ));
            if let Some(ca) = &self.tls_client_ca {
                let ca_path = scratch.path().join("client-ca.crt");
                std::fs::write(&ca_path, ca).expect("write client CA");
                config.push_str(&format!(
                    "client_ca_file = {:?}\n",
                    ca_path.display().to_string()
                ));
            }
        }
        std::fs::write(&config_path, config).expect("write config");
        let data_dir = match self.data_dir {
            Some(d) => d,
            None => {
                let d = scratch.path().join("data");
                std::fs::create_dir_all(&d).expect("create data dir");
                d
            }
        };
        let mut broker = TestBroker {
            binary: broker_binary(),
            config_path,
            data_dir,
            test_clock: self.test_clock,
            _scratch: scratch,
            proc: None,
            generation: 0,
            last_ports: None,
        };
        broker.spawn(None).await;
        broker
    }
}

/// A running process of the broker plus its addresses.
#[derive(Debug)]
struct Running {
    child: Child,
    pid: u32,
    api: SocketAddr,
    admin: SocketAddr,
    tls: Option<SocketAddr>,
    client: aws_sdk_kinesis::Client,
    /// Every stderr line so far.
    stderr: Arc<std::sync::Mutex<String>>,
}

/// A `riffle-broker` child process owned by a test.
///
/// Dropping it kills the process (SIGKILL by PID) and removes the temporary
/// directory holding its config and, unless one was given, its data.
#[derive(Debug)]
pub struct TestBroker {
    binary: PathBuf,
    config_path: PathBuf,
    data_dir: PathBuf,
    test_clock: bool,
    _scratch: TempDir,
    proc: Option<Running>,
    generation: u32,
    /// API and admin addresses of the last process started.
    last_ports: Option<(SocketAddr, SocketAddr)>,
}

impl TestBroker {
    /// A builder with the default config, no test clock and a fresh data dir.
    pub fn builder() -> TestBrokerBuilder {
        TestBrokerBuilder::default()
    }

    /// Starts a broker with [`DEFAULT_CONFIG`] and a fresh data dir.
    pub async fn start() -> TestBroker {
        Self::builder().start().await
    }

    /// Starts the process, on `ports` (API, admin) if given, else on ports the OS picks.
    async fn spawn(&mut self, ports: Option<(SocketAddr, SocketAddr)>) {
        assert!(self.proc.is_none(), "broker is already running");
        self.generation += 1;
        let tag = format!("broker#{}", self.generation);
        let (api, admin) = match ports {
            Some((api, admin)) => (api.to_string(), admin.to_string()),
            None => ("127.0.0.1:0".to_string(), "127.0.0.1:0".to_string()),
        };
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--config")
            .arg(&self.config_path)
            .arg("--listen")
            .arg(api)
            .arg("--admin-listen")
            .arg(admin)
            .arg("--data-dir")
            .arg(&self.data_dir);
        if self.test_clock {
            cmd.arg("--test-clock");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.binary.display()));
        let pid = child.id().expect("child has a pid");

        // Forward stderr to the test's stderr for the life of the process.
        let stderr = child.stderr.take().expect("piped stderr");
        let stderr_tag = tag.clone();
        let captured = Arc::new(std::sync::Mutex::new(String::new()));
        let sink = Arc::clone(&captured);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{stderr_tag} stderr] {line}");
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });

        // Read stdout until the readiness line, then keep draining it.
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready_rx) = oneshot::channel::<String>();
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("riffle-broker ready ") {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(line.clone());
                    }
                }
                eprintln!("[{tag} stdout] {line}");
            }
        });

        let line = match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => {
                let status = child.wait().await;
                panic!("broker exited before becoming ready: {status:?}");
            }
            Err(_) => {
                let _ = child.start_kill();
                panic!("broker did not print its ready line within {READY_TIMEOUT:?}");
            }
        };
        let (api, admin) =
            parse_ready_line(&line).unwrap_or_else(|| panic!("malformed ready line: {line:?}"));
        let tls = parse_ready_tls(&line);
        let client = make_client(&format!("http://{api}"));
        self.proc = Some(Running {
            child,
            pid,
            api,
            admin,
            tls,
            client,
            stderr: captured,
        });
        self.last_ports = Some((api, admin));
    }

    /// Everything the running broker process wrote to stderr so far (its log).
    pub fn stderr_text(&self) -> String {
        self.running()
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn running(&self) -> &Running {
        self.proc.as_ref().expect("broker is not running")
    }

    /// A Kinesis client for this broker: static test credentials, region
    /// `us-east-1`, retries disabled (so throttling is observable) and a
    /// 30 s operation timeout. After [`restart`](Self::restart), call this
    /// again: the new process listens on new ports.
    pub fn client(&self) -> aws_sdk_kinesis::Client {
        self.running().client.clone()
    }

    /// Kinesis API endpoint URL, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.running().api)
    }

    /// Kinesis API socket address.
    pub fn api_addr(&self) -> SocketAddr {
        self.running().api
    }

    /// TLS API endpoint URL, e.g. `https://127.0.0.1:41236`, if the broker
    /// was started with [`TestBrokerBuilder::tls`].
    ///
    /// # Panics
    ///
    /// Panics if the ready line named no TLS listener.
    pub fn tls_endpoint(&self) -> String {
        format!("https://{}", self.tls_addr())
    }

    /// TLS API socket address (see [`tls_endpoint`](Self::tls_endpoint)).
    ///
    /// # Panics
    ///
    /// Panics if the ready line named no TLS listener.
    pub fn tls_addr(&self) -> SocketAddr {
        self.running()
            .tls
            .expect("the broker has no TLS listener (use TestBrokerBuilder::tls)")
    }

    /// Admin endpoint base URL, e.g. `http://127.0.0.1:41235`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.running().admin)
    }

    /// Admin socket address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.running().admin
    }

    /// PID of the running broker process.
    pub fn pid(&self) -> u32 {
        self.running().pid
    }

    /// The credentials file given to [`TestBrokerBuilder::credentials`] (rewrite it to test
    /// reloading; the broker checks it every 200 ms).
    pub fn credentials_file(&self) -> PathBuf {
        self._scratch.path().join("credentials.toml")
    }

    /// The TLS certificate chain and key files given to [`TestBrokerBuilder::tls`] (rewrite
    /// them to test reloading; the broker rereads them every 200 ms).
    pub fn tls_files(&self) -> (PathBuf, PathBuf) {
        (
            self._scratch.path().join("tls.crt"),
            self._scratch.path().join("tls.key"),
        )
    }

    /// The data directory (kept across [`restart`](Self::restart)).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Advances the broker's clock (requires the builder's `test_clock(true)`).
    /// Only whole seconds are sent.
    ///
    /// # Panics
    ///
    /// Panics unless the admin endpoint answers 200.
    pub async fn advance_clock(&self, by: Duration) {
        let body = format!("{{\"seconds\": {}}}", by.as_secs());
        let resp = http::request(
            self.admin_addr(),
            "POST",
            "/test/clock/advance",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await
        .expect("advance clock request");
        assert_eq!(
            resp.status,
            200,
            "POST /test/clock/advance answered {}: {}",
            resp.status,
            resp.body_text()
        );
    }

    /// `GET /metrics` on the admin listener, as text.
    ///
    /// # Panics
    ///
    /// Panics unless the admin endpoint answers 200.
    pub async fn metrics_text(&self) -> String {
        let resp = self.admin_get("/metrics").await;
        assert_eq!(resp.status, 200, "GET /metrics: {}", resp.body_text());
        resp.body_text()
    }

    /// `GET path` on the admin listener.
    ///
    /// # Panics
    ///
    /// Panics if the request cannot be made.
    pub async fn admin_get(&self, path: &str) -> http::Response {
        http::request(self.admin_addr(), "GET", path, &[], b"")
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Creates a provisioned stream with `shards` shards and waits until it is
    /// ACTIVE.
    ///
    /// # Panics
    ///
    /// Panics if creation fails or the stream does not become ACTIVE.
    pub async fn create_stream(&self, name: &str, shards: i32) {
        self.client()
            .create_stream()
            .stream_name(name)
            .shard_count(shards)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateStream {name}: {e:?}"));
        self.wait_active(name).await;
    }

    /// Polls DescribeStreamSummary until the stream is ACTIVE.
    ///
    /// # Panics
    ///
    /// Panics if it is not ACTIVE within [`ACTIVE_TIMEOUT`].
    pub async fn wait_active(&self, name: &str) {
        wait_active_with(&self.client(), name).await;
    }

    /// Sends SIGKILL to the broker process and reaps it.
    ///
    /// # Panics
    ///
    /// Panics if the broker is not running.
    pub async fn kill9(&mut self) {
        let mut running = self.proc.take().expect("broker is not running");
        let _ = running.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), running.child.wait()).await;
    }

    /// Sends SIGTERM and waits (up to 30 s) for the process to exit,
    /// returning its exit status.
    ///
    /// # Panics
    ///
    /// Panics if the broker is not running, or does not exit within 30 s (it
    /// is then killed).
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut running = self.proc.take().expect("broker is not running");
        let ok = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(running.pid.to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "could not send SIGTERM to {}", running.pid);
        match tokio::time::timeout(Duration::from_secs(30), running.child.wait()).await {
            Ok(status) => status.expect("wait for broker"),
            Err(_) => {
                let _ = running.child.start_kill();
                panic!("broker did not exit within 30 s of SIGTERM");
            }
        }
    }

    /// Starts the broker again with the same config and data dir, on new
    /// ports. If it is still running it is first stopped with SIGTERM.
    pub async fn restart(&mut self) {
        if self.proc.is_some() {
            let _ = self.terminate().await;
        }
        self.spawn(None).await;
    }

    /// Starts the broker again with the same config and data dir on the *same* API and
    /// admin ports as the last process, so clients holding the old endpoint (a producer
    /// or consumer under test) reconnect to it. If it is still running it is first stopped
    /// with SIGTERM. Binding retries for up to 10 s while the old sockets linger.
    ///
    /// # Panics
    ///
    /// Panics if the broker was never started, or cannot bind the ports again.
    pub async fn restart_on_same_ports(&mut self) {
        if self.proc.is_some() {
            let _ = self.terminate().await;
        }
        let ports = self.last_ports.expect("the broker was started before");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let free = std::net::TcpListener::bind(ports.0).is_ok()
                && std::net::TcpListener::bind(ports.1).is_ok();
            if free || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.spawn(Some(ports)).await;
    }

    /// Suspends the broker process (SIGSTOP by PID): it accepts connections into the
    /// kernel's backlog but answers nothing, like a hung server, until
    /// [`resume`](Self::resume).
    ///
    /// # Panics
    ///
    /// Panics if the broker is not running or the signal cannot be sent.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a broker suspended by [`pause`](Self::pause) (SIGCONT by PID).
    ///
    /// # Panics
    ///
    /// Panics if the broker is not running or the signal cannot be sent.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.pid();
        let ok = std::process::Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "could not send {sig} to {pid}");
    }

    /// Whether the harness believes the process is running.
    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(running) = self.proc.as_mut() {
            let _ = running.child.start_kill();
            let _ = running.child.try_wait();
        }
    }
}

fn parse_ready_line(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let mut api = None;
    let mut admin = None;
    for word in line.split_whitespace() {
        if let Some(v) = word.strip_prefix("api=") {
            api = v.parse().ok();
        } else if let Some(v) = word.strip_prefix("admin=") {
            admin = v.parse().ok();
        }
    }
    Some((api?, admin?))
}

/// The `tls=HOST:PORT` word of the ready line, if any.
fn parse_ready_tls(line: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("tls="))
        .and_then(|v| v.parse().ok())
}

/// Builds a Kinesis client for `endpoint` with the harness's settings (see
/// [`TestBroker::client`]).
pub fn make_client(endpoint: &str) -> aws_sdk_kinesis::Client {
    client_with_keys(endpoint, TEST_ACCESS_KEY, TEST_SECRET_KEY, None)
}

/// The access key id [`make_client`] signs with.
pub const TEST_ACCESS_KEY: &str = "AKIDRIFFLETEST";
/// The secret [`make_client`] signs with.
pub const TEST_SECRET_KEY: &str = "riffle-test-secret";

/// A client like [`make_client`] signing with other credentials (and a session token).
pub fn client_with_keys(
    endpoint: &str,
    access_key: &str,
    secret: &str,
    session_token: Option<&str>,
) -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            access_key,
            secret,
            session_token.map(str::to_owned),
            None,
            "riffle-tests",
        ))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

/// A deliberately tiny HTTP/1.1 client over a raw [`tokio::net::TcpStream`],
/// used for the admin endpoints and for wire-level tests where nothing may be
/// validated client-side. Every request is sent with `Connection: close`.
pub mod http {
    use super::*;

    /// A parsed HTTP response.
    #[derive(Debug, Clone)]
    pub struct Response {
        /// Status code.
        pub status: u16,
        /// Headers in order received; names as sent by the server.
        pub headers: Vec<(String, String)>,
        /// Body, de-chunked if needed.
        pub body: Vec<u8>,
    }

    impl Response {
        /// First header with this name (case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        /// The body as (lossy) UTF-8.
        pub fn body_text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
    }

    /// Sends one request and reads the whole response (10 s timeout).
    /// `Host`, `Content-Length` and `Connection: close` are added.
    pub async fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        request_within(addr, method, path, headers, body, Duration::from_secs(10)).await
    }

    /// [`request`] with its own time limit (large bodies through a debug build on a busy
    /// machine may need more than 10 s).
    pub async fn request_within(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        limit: Duration,
    ) -> std::io::Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ));
        let mut raw = head.into_bytes();
        raw.extend_from_slice(body);
        send_raw_within(addr, &raw, limit).await
    }

    /// Writes `raw` bytes as-is and parses what comes back (10 s timeout).
    pub async fn send_raw(addr: SocketAddr, raw: &[u8]) -> std::io::Result<Response> {
        send_raw_within(addr, raw, Duration::from_secs(10)).await
    }

    /// [`send_raw`] with its own time limit.
    pub async fn send_raw_within(
        addr: SocketAddr,
        raw: &[u8],
        limit: Duration,
    ) -> std::io::Result<Response> {
        let fut = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await?;
            stream.write_all(raw).await?;
            stream.flush().await?;
            let mut buf = Vec::new();
            // Read until the server closes, or until a complete response with
            // Content-Length has arrived.
            let mut chunk = [0u8; 8192];
            loop {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(resp) = try_parse(&buf, false) {
                    return Ok(resp);
                }
            }
            try_parse(&buf, true).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "unparseable HTTP response: {:?}",
                        String::from_utf8_lossy(&buf)
                    ),
                )
            })
        };
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "HTTP timeout"))?
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    /// Parses a response; `eof` says the connection is closed, so a body
    /// without framing ends here.
    fn try_parse(buf: &[u8], eof: bool) -> Option<Response> {
        let head_end = find(buf, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&buf[..head_end]).ok()?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next()?;
        let status: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .collect();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let rest = &buf[head_end + 4..];
        let body = if get("transfer-encoding")
            .map(|v| v.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false)
        {
            dechunk(rest)?
        } else if let Some(len) = get("content-length") {
            let len: usize = len.parse().ok()?;
            if rest.len() < len {
                return None;
            }
            rest[..len].to_vec()
        } else if eof {
            rest.to_vec()
        } else {
            return None;
        };
        Some(Response {
            status,
            headers,
            body,
        })
    }

    fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let line_end = find(data, b"\r\n")?;
            let size_str = std::str::from_utf8(&data[..line_end]).ok()?;
            let size_str = size_str.split(';').next()?.trim();
            let size = usize::from_str_radix(size_str, 16).ok()?;
            data = &data[line_end + 2..];
            if size == 0 {
                return Some(out);
            }
            if data.len() < size + 2 {
                return None;
            }
            out.extend_from_slice(&data[..size]);
            data = &data[size + 2..];
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn seq_compare_is_numeric() {
        use std::cmp::Ordering::*;
        assert_eq!(cmp_seq("9", "10"), Less);
        assert_eq!(cmp_seq("100", "99"), Greater);
        assert_eq!(cmp_seq("0042", "42"), Equal);
        assert_eq!(
            cmp_seq(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588899"
            ),
            Less
        );
    }

    #[test]
    fn ready_line_parses() {
        let (api, admin) =
            parse_ready_line("riffle-broker ready api=127.0.0.1:4567 admin=127.0.0.1:4568")
                .unwrap();
        assert_eq!(api.port(), 4567);
        assert_eq!(admin.port(), 4568);
        assert!(parse_ready_line("riffle-broker ready api=x").is_none());
        let with_tls = "riffle-broker ready api=127.0.0.1:1 admin=127.0.0.1:2 tls=127.0.0.1:4569";
        assert_eq!(parse_ready_tls(with_tls).map(|a| a.port()), Some(4569));
        assert!(parse_ready_line(with_tls).is_some());
        assert!(parse_ready_tls("riffle-broker ready api=127.0.0.1:1 admin=x").is_none());
    }
}

/// A test OIDC issuer: an ECDSA P-256 key, its JWKS document, and web identity tokens
/// signed with it (shaped like Kubernetes projected service-account tokens).
/// The broker's STS endpoint as an SDK's web-identity credential provider calls it.
pub mod sts {
    use std::net::SocketAddr;

    /// The text of `<tag>` in an XML answer.
    pub fn xml_value(xml: &str, tag: &str) -> Option<String> {
        let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
        let end = xml[start..].find(&format!("</{tag}>"))? + start;
        Some(xml[start..end].to_string())
    }

    /// POSTs an unsigned AssumeRoleWithWebIdentity for `role` with `token` (and `extra`
    /// form fields, `&`-prefixed) to the API listener at `addr`; status and body.
    pub async fn assume_role_with_web_identity(
        addr: SocketAddr,
        token: &str,
        role: &str,
        extra: &str,
    ) -> (u16, String) {
        let body = format!(
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={}&RoleSessionName=pod-1&WebIdentityToken={token}{extra}",
            role.replace(':', "%3A").replace('/', "%2F")
        );
        let r = crate::http::request(
            addr,
            "POST",
            "/",
            &[(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            body.as_bytes(),
        )
        .await
        .expect("STS request");
        (r.status, r.body_text())
    }
}

pub mod oidc {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    /// The issuer the tests' tokens name.
    pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
    /// The audience the tests' tokens are for.
    pub const AUDIENCE: &str = "riffle";

    /// A signing key and its public JWKS.
    pub struct Issuer {
        key_pem: String,
        /// The JWKS document (`{"keys": [...]}`) for the broker.
        pub jwks: String,
        /// The key id.
        pub kid: String,
    }

    impl std::fmt::Debug for Issuer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Issuer").field("kid", &self.kid).finish()
        }
    }

    impl Issuer {
        /// A fresh key, with key id `kid`.
        pub fn new(kid: &str) -> Issuer {
            let pair = rcgen::KeyPair::generate().expect("generate a P-256 key");
            let raw = pair.public_key_raw();
            assert_eq!(raw.len(), 65, "an uncompressed P-256 point");
            let jwks = serde_json::json!({ "keys": [{
                "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
            }]});
            Issuer {
                key_pem: pair.serialize_pem(),
                jwks: jwks.to_string(),
                kid: kid.to_owned(),
            }
        }

        /// A token for the service account `namespace/name`, valid `lifetime_secs` from now
        /// (negative: already expired), for `audience`.
        pub fn token(
            &self,
            namespace: &str,
            name: &str,
            audience: &str,
            lifetime_secs: i64,
        ) -> String {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_secs() as i64;
            let claims = serde_json::json!({
                "iss": ISSUER,
                "sub": format!("system:serviceaccount:{namespace}:{name}"),
                "aud": [audience],
                "iat": now - 10,
                "nbf": now - 10,
                "exp": now + lifetime_secs,
                "kubernetes.io": { "namespace": namespace, "serviceaccount": { "name": name } },
            });
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
            header.kid = Some(self.kid.clone());
            let key = jsonwebtoken::EncodingKey::from_ec_pem(self.key_pem.as_bytes())
                .expect("the key's PEM");
            jsonwebtoken::encode(&header, &claims, &key).expect("sign a token")
        }
    }
}
