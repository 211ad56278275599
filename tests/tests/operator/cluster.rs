//! A real etcd + kube-apiserver on 127.0.0.1, built by `tests/k8s/build.sh` (cached under
//! `~/.cache/riffle-k8s/`), with a kubeconfig for the real kubectl and the operator.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Directory holding kube-apiserver, kubectl and etcd (built on first use).
pub(crate) fn binaries() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s/build.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/k8s/build.sh");
    assert!(out.status.success(), "tests/k8s/build.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Forwards a child's output to the test's stderr, tagged, and keeps the lines.
pub(crate) fn forward(
    child: &mut Child,
    tag: &str,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    for out in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tag = tag.to_string();
        let lines = lines.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(out).lines();
            while let Ok(Some(l)) = r.next_line().await {
                if std::env::var_os("RIFFLE_E2E_VERBOSE").is_some() || !tag.starts_with("kube") {
                    eprintln!("[{tag}] {l}");
                }
                lines.lock().unwrap().push(l);
            }
        });
    }
    lines
}

/// etcd + kube-apiserver, killed on drop.
pub(crate) struct Cluster {
    bin: PathBuf,
    dir: TempDir,
    etcd: Child,
    apiserver: Child,
    /// Path of the admin kubeconfig.
    pub(crate) kubeconfig: PathBuf,
    /// The API server's URL.
    pub(crate) url: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("kubeconfig", &self.kubeconfig)
            .finish()
    }
}

impl Cluster {
    /// Starts etcd and kube-apiserver and waits for `/readyz`.
    pub(crate) async fn start() -> Cluster {
        let bin = binaries();
        let dir = tempfile::Builder::new()
            .prefix("riffle-k8s-")
            .tempdir()
            .unwrap();
        let (client, peer, secure) = (free_port(), free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut etcd = Command::new(bin.join("etcd"))
            .args(["--name", "e2e", "--data-dir"])
            .arg(dir.path().join("etcd"))
            .args([
                "--listen-client-urls",
                &etcd_url,
                "--advertise-client-urls",
                &etcd_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("e2e={peer_url}")])
            .args(["--log-level", "warn", "--unsafe-no-fsync"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start etcd");
        forward(&mut etcd, "kube-etcd");
        let key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.path().join("sa.key"), key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("sa.pub"), key.public_key_pem()).unwrap();
        let token = "riffle-e2e-admin-token";
        std::fs::write(
            dir.path().join("tokens.csv"),
            format!("{token},admin,admin,system:masters\n"),
        )
        .unwrap();
        let mut apiserver = Command::new(bin.join("kube-apiserver"))
            .args(["--etcd-servers", &etcd_url, "--bind-address", "127.0.0.1"])
            .args(["--secure-port", &secure.to_string()])
            .arg(format!("--cert-dir={}", dir.path().join("certs").display()))
            .arg(format!(
                "--token-auth-file={}",
                dir.path().join("tokens.csv").display()
            ))
            .arg(format!(
                "--service-account-key-file={}",
                dir.path().join("sa.pub").display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                dir.path().join("sa.key").display()
            ))
            .args(["--service-account-issuer", "https://kubernetes.default.svc"])
            .args([
                "--authorization-mode",
                "RBAC",
                "--service-cluster-ip-range",
                "10.0.0.0/24",
            ])
            .args(["--advertise-address", "127.0.0.1", "--v", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start kube-apiserver");
        forward(&mut apiserver, "kube-apiserver");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: https://127.0.0.1:{secure}\n    insecure-skip-tls-verify: true\n\
                 users:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: admin\n    namespace: default\n\
                 current-context: e2e\n"
            ),
        )
        .unwrap();
        let cluster = Cluster {
            bin,
            dir,
            etcd,
            apiserver,
            kubeconfig,
            url: format!("https://127.0.0.1:{secure}"),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = cluster.kubectl(&["get", "--raw", "/readyz"]).await;
            if out.0 && out.1.trim() == "ok" {
                // The default namespace is created by a bootstrap controller shortly after.
                if cluster.kubectl(&["get", "namespace", "default"]).await.0 {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver not ready: {}",
                out.2
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        cluster
    }

    /// The API server's self-signed serving certificate (and the CA it generated for it),
    /// as PEM: what a client trusts to reach it over TLS.
    pub(crate) fn serving_cert(&self) -> PathBuf {
        self.dir.path().join("certs").join("apiserver.crt")
    }

    /// A file holding the admin bearer token.
    pub(crate) fn admin_token_file(&self) -> PathBuf {
        let path = self.dir.path().join("admin.token");
        std::fs::write(&path, "riffle-e2e-admin-token\n").unwrap();
        path
    }

    /// A kubeconfig for the same server that authenticates with `token` (a ServiceAccount
    /// token from `kubectl create token`).
    pub(crate) fn kubeconfig_for_token(&self, token: &str) -> PathBuf {
        let admin = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let path = self.dir.path().join(format!("kubeconfig-{}", free_port()));
        let user = admin
            .lines()
            .find(|l| l.trim_start().starts_with("token: "))
            .expect("admin token line")
            .to_string();
        let indent = &user[..user.len() - user.trim_start().len()];
        std::fs::write(
            &path,
            admin.replace(&user, &format!("{indent}token: {token}")),
        )
        .unwrap();
        path
    }

    /// Runs the real kubectl: (success, stdout, stderr).
    pub(crate) async fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .await
            .expect("run kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// kubectl that must succeed; its stdout.
    pub(crate) async fn kubectl_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args).await;
        assert!(ok, "kubectl {args:?} failed: {err}{out}");
        out
    }

    /// Applies YAML with kubectl (server-side).
    pub(crate) async fn apply(&self, yaml: &str) -> String {
        let path = self.dir.path().join(format!("apply-{}.yaml", free_port()));
        std::fs::write(&path, yaml).unwrap();
        self.kubectl_ok(&["apply", "--server-side", "-f", path.to_str().unwrap()])
            .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.apiserver.start_kill();
        let _ = self.etcd.start_kill();
    }
}
