//! A real DynamoDB-compatible server for tests: `moto_server` from PyPI, started on a free
//! loopback port and killed (by PID) on drop.
//!
//! `./test.sh` installs it into `<workspace>/.venv` (from `tests/compat/requirements.txt`)
//! before the Rust tests run. The binary is looked up at `$RIFFLE_MOTO_SERVER`, else
//! `<workspace>/.venv/bin/moto_server`. A missing binary fails the test with instructions:
//! these tests never pass by skipping.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use tokio::process::{Child, Command};

/// How long [`MotoServer::start`] waits for the server to answer.
pub const MOTO_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Path of the `moto_server` executable.
///
/// # Panics
///
/// Panics with instructions if it is missing.
pub fn moto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("RIFFLE_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("riffle-tests lives inside the workspace");
    let bin = workspace.join(".venv/bin/moto_server");
    assert!(
        bin.is_file(),
        "{} is missing. It is installed by ./test.sh; by hand: \
         python3 -m venv .venv && .venv/bin/pip install -r tests/compat/requirements.txt \
         (or set RIFFLE_MOTO_SERVER)",
        bin.display()
    );
    bin
}

/// A running `moto_server`.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    addr: SocketAddr,
}

impl MotoServer {
    /// Starts `moto_server -H 127.0.0.1 -p <free port>` and waits until it answers HTTP.
    ///
    /// # Panics
    ///
    /// Panics if the binary is missing, or the server does not answer within
    /// [`MOTO_READY_TIMEOUT`].
    pub async fn start() -> MotoServer {
        let bin = moto_binary();
        // Ask the OS for a free port, then hand it to moto (a small race, retried below).
        for _ in 0..5 {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
                l.local_addr().expect("local addr").port()
            };
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
            let deadline = Instant::now() + MOTO_READY_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    eprintln!("moto_server on port {port} exited early ({status}); retrying");
                    break;
                }
                let ok = crate::http::request(addr, "GET", "/moto-api/", &[], b"")
                    .await
                    .is_ok();
                if ok {
                    return MotoServer { child, addr };
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = child.start_kill();
        }
        panic!("moto_server did not answer within {MOTO_READY_TIMEOUT:?}");
    }

    /// The endpoint URL, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The PID of the server process.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// A DynamoDB client pointed at this server (dummy credentials, no retries).
    pub fn dynamodb_client(&self) -> aws_sdk_dynamodb::Client {
        dynamodb_client(&self.endpoint())
    }
}

/// A DynamoDB client for `endpoint` with dummy credentials.
pub fn dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(crate::REGION))
        .credentials_provider(Credentials::new("test", "test", None, None, "riffle-tests"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.try_wait();
    }
}
