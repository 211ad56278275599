//! Running the `riffle` binary.

use std::process::Stdio;
use std::time::Duration;

pub(crate) use riffle_tests::TestBroker;

/// What one run of `riffle` did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// The stdout JSON lines.
    pub(crate) fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub(crate) fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "riffle failed: {self:?}");
        &self.stdout
    }
}

/// Runs `riffle ARGS` against `endpoint` (output piped, so JSON by default), ≤ 120 s.
pub(crate) async fn riffle(endpoint: &str, args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(riffle_tests::cli_binary());
    cmd.arg("--endpoint").arg(endpoint).args(args);
    run(cmd).await
}

/// Runs `riffle ARGS` against `endpoint` with these extra environment variables.
pub(crate) async fn riffle_env(endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(riffle_tests::cli_binary());
    cmd.arg("--endpoint").arg(endpoint).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd).await
}

/// Runs a prepared command with no AWS configuration from the environment (but what the
/// caller set on it).
pub(crate) async fn run(mut cmd: tokio::process::Command) -> Run {
    let set: Vec<String> = cmd
        .as_std()
        .get_envs()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    for k in [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_KINESIS",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ] {
        if !set.iter().any(|s| s == k) {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("riffle finished within 120 s")
        .expect("run riffle");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Asserts an error run: the exit code and exactly one stderr line containing `needle`.
#[track_caller]
pub(crate) fn assert_one_line_error(r: &Run, code: i32, needle: &str) {
    assert_eq!(r.code, code, "exit code: {r:?}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line: {:?}", r.stderr);
    assert!(lines[0].contains(needle), "{:?} lacks {needle:?}", lines[0]);
}
