"""The AWS SDK for Java v2 (2.57.8) against the session's broker, unchanged.

tests/compat/java/ is a Maven project (the SDK via its BOM) whose program
dev.riffle.compat.KinesisCompat runs one suite of named cases against an endpoint and prints a
`RESULT {...}` line per case. Each configuration below is one JVM run (cached for the session);
each of its cases is one pytest test here, so a broker defect fails (or xfails) exactly the case
that hits it.

- async: every operation the broker implements through KinesisAsyncClient on Netty with
  Protocol.HTTP2: h2c with prior knowledge on http://, h2 on the TLS listener (ALPN, and the
  SDK's default ASSUME_PROTOCOL); CBOR on (the SDK's default) and off (the system property
  aws.cborEnabled=false, and the CBOR_ENABLED=false environment variable). An execution
  interceptor records every request's and response's Content-Type (wire_content_type), and the
  SDK's own metrics show each call went over HTTP/2 (wire_http2: the Netty client reports
  HTTP/2 stream window sizes only for HTTP/2 streams).
- subscribe: SubscribeToShard over HTTP/2: order, resumption at the
  ContinuationSequenceNumber (AFTER_SEQUENCE_NUMBER), ChildShards after a split.
- sync: KinesisClient (blocking) on the Apache client over http:// and the URLConnection
  client over https://, both HTTP/1.1.
- auth: a wrong secret and an unknown key are refused with the Kinesis error codes, as the
  SDK's typed KinesisException, over HTTP/2 and HTTP/1.1; a user without a policy gets
  AccessDeniedException. Its JVM also has AWS_ENDPOINT_URL_KINESIS, AWS_REGION and the keys in
  its environment, and KinesisAsyncClient.create() / KinesisClient.create() (nothing named in
  code) work against the broker.
- throttle: on the stream conftest.py limits to 10 records/s, PutRecords' per-record
  ErrorCode/ErrorMessage and PutRecord's ProvisionedThroughputExceededException, which the SDK
  classes as throttling: its standard retry strategy backs off and the retried call succeeds.

The build (`mvn -o package`, offline: tests/compat/run.sh downloads the dependencies into
$RIFFLE_MAVEN_REPO, default ~/.cache/riffle-maven, and builds) runs at most once per session,
and not at all when target/ is newer than every source file. Java 17 and Maven are
required; if either is missing the tests fail, they are never skipped.
"""

import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import ACCESS_KEY, SECRET_KEY

JAVA_DIR = Path(__file__).resolve().parent / "java"
MAVEN_REPO = Path(os.environ.get("RIFFLE_MAVEN_REPO", Path.home() / ".cache" / "riffle-maven"))
BUILD_TIMEOUT_S = 600
RUN_TIMEOUT_S = 240
MAIN_CLASS = "dev.riffle.compat.KinesisCompat"
CBOR = "application/x-amz-cbor-1.1"
JSON = "application/x-amz-json-1.1"
# C1 only and the serial collector: the runs are short, so JVM start-up dominates.
JVM_FLAGS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx512m"]

ASYNC_CASES = [
    "create_stream", "describe_stream", "describe_stream_summary", "list_streams_pagination",
    "list_shards_pagination", "put_record", "put_records", "get_records",
    "get_shard_iterator_types", "partition_key_hashing", "concurrent_puts_large_get", "split_shard", "get_records_child_shards", "merge_shards",
    "update_shard_count", "retention", "stream_tags", "resource_tags", "enhanced_monitoring",
    "encryption", "stream_mode_and_warm_throughput", "max_record_size", "account", "consumers",
    "errors", "delete_stream", "wire_content_type", "wire_http2",
]
SUBSCRIBE_CASES = [
    "subscribe_setup", "subscribe_records_in_order", "subscribe_resume_after_sequence_number",
    "subscribe_child_shards_after_split", "subscribe_children_concurrently", "subscribe_errors",
    "subscribe_cleanup", "wire_content_type", "wire_http2",
]
SYNC_CASES = [
    "sync_create_describe", "sync_put_get", "sync_control_plane", "sync_errors", "sync_delete",
    "wire_content_type", "wire_http1",
]
AUTH_CASES = [
    "default_clients_from_environment", "auth_control_ok_h2", "auth_wrong_secret_h2", "auth_wrong_secret_http1",
    "auth_access_denied_h2", "auth_unknown_key_h2",
]
THROTTLE_CASES = [
    "throttle_setup", "throttle_put_records_per_record", "throttle_put_record_typed",
    "throttle_sdk_retries",
    "throttle_cleanup",
]
CASES = {"async": ASYNC_CASES, "subscribe": SUBSCRIBE_CASES, "sync": SYNC_CASES,
         "auth": AUTH_CASES, "throttle": THROTTLE_CASES}


@dataclass(frozen=True)
class JavaConfig:
    suite: str
    tls: bool = False
    alpn: bool = False  # ProtocolNegotiation.ALPN instead of the default ASSUME_PROTOCOL
    content_type: str = CBOR
    jvm_props: tuple = ()
    env: tuple = ()  # (name, value) pairs
    http_client: str = "apache"  # sync suite: apache | urlconnection
    protocol: str = "h2"  # async suite: h2 (Protocol.HTTP2) | h1 (Netty's default HTTP/1.1)
    # Also give the JVM the endpoint, region and keys as AWS's environment variables.
    aws_env: bool = False


CONFIGS = {
    "h2c-cbor": JavaConfig("async"),
    "h2c-json-sysprop": JavaConfig("async", content_type=JSON,
                                   jvm_props=("-Daws.cborEnabled=false",)),
    "tls-alpn-cbor": JavaConfig("async", tls=True, alpn=True),
    "tls-json-env": JavaConfig("async", tls=True, content_type=JSON,
                               env=(("CBOR_ENABLED", "false"),)),
    # KinesisAsyncClient as built without .protocol(HTTP2): Netty over HTTP/1.1.
    "h1-netty-cbor": JavaConfig("async", protocol="h1"),
    "subscribe-h2c-cbor": JavaConfig("subscribe"),
    "subscribe-tls-alpn-cbor": JavaConfig("subscribe", tls=True, alpn=True),
    "sync-apache-http-cbor": JavaConfig("sync"),
    "sync-urlconnection-https-json": JavaConfig("sync", tls=True, content_type=JSON,
                                                jvm_props=("-Daws.cborEnabled=false",),
                                                http_client="urlconnection"),
    "auth-cbor": JavaConfig("auth", aws_env=True),
    # Uses the one stream conftest.py limits to 10 records/s: only one configuration may.
    "throttle-h2c-cbor": JavaConfig("throttle"),
}

# (configuration, case) -> the broker defect that fails it (see /work/wt/DEFECTS-java-sdk.md).
XFAIL: dict = {}


@dataclass
class JavaRun:
    returncode: int | None  # None: killed at RUN_TIMEOUT_S
    stdout: str
    stderr: str
    seconds: float
    cases: dict = field(default_factory=dict)

    def tail(self) -> str:
        return (self.stdout[-6000:] + "\n--- stderr ---\n" + self.stderr[-4000:])


def _build_is_current(classpath_file: Path) -> bool:
    """True if target/ was built after the last change to pom.xml or any source file..."""
    if not classpath_file.is_file():
        return False
    sources = [JAVA_DIR / "pom.xml", *(JAVA_DIR / "src").rglob("*")]
    newest = max(f.stat().st_mtime for f in sources if f.is_file())
    if classpath_file.stat().st_mtime < newest:
        return False
    # ... and against a Maven repository that still holds every jar it names.
    jars = classpath_file.read_text().strip().split(os.pathsep)
    return all(jar.startswith(str(MAVEN_REPO)) and Path(jar).is_file() for jar in jars)


@pytest.fixture(scope="session")
def java_classpath():
    """Builds tests/compat/java (offline) unless run.sh just did, returns (java, classpath)."""
    java, mvn = shutil.which("java"), shutil.which("mvn")
    assert java, "java (17+) is required for the Java SDK compatibility tests (not on PATH)"
    assert mvn, "mvn is required for the Java SDK compatibility tests (not on PATH)"
    classpath_file = JAVA_DIR / "target" / "classpath.txt"
    if not _build_is_current(classpath_file):
        p = subprocess.run(
            [mvn, "-q", "-B", "-o", f"-Dmaven.repo.local={MAVEN_REPO}", "package"],
            cwd=JAVA_DIR, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        assert p.returncode == 0, (
            f"mvn -o package failed ({p.returncode}); tests/compat/run.sh downloads the "
            f"dependencies into {MAVEN_REPO}:\n{(p.stdout + p.stderr)[-6000:]}"
        )
    deps = classpath_file.read_text().strip()
    assert "kinesis-2.57.8.jar" in deps and "netty-nio-client-2.57.8.jar" in deps, deps
    return java, f"{JAVA_DIR / 'target' / 'classes'}{os.pathsep}{deps}"


@pytest.fixture(scope="session")
def java_results(broker, java_classpath):
    """config name -> JavaRun, each configuration run once per session."""
    java, classpath = java_classpath
    runs: dict = {}

    def get(name: str) -> JavaRun:
        if name in runs:
            return runs[name]
        cfg = CONFIGS[name]
        if cfg.tls:
            assert broker.tls_endpoint_url, "the session broker has no TLS listener"
        endpoint = broker.tls_endpoint_url if cfg.tls else broker.endpoint_url
        # Nothing from the caller's AWS or CBOR settings leaks into the run.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("AWS_") and k != "CBOR_ENABLED"}
        env.update(RIFFLE_ACCESS_KEY=ACCESS_KEY, RIFFLE_SECRET_KEY=SECRET_KEY,
                   RIFFLE_WRONG_SECRET_KEY=SECRET_KEY + "-wrong",
                   RIFFLE_UNKNOWN_ACCESS_KEY="AKIDRIFFLEUNKNOWN0000",
                   # conftest's user "nobody": a known key without any policy.
                   RIFFLE_NOBODY_ACCESS_KEY="AKIDRIFFLENOBODY",
                   RIFFLE_NOBODY_SECRET_KEY="riffle-nobody-secret")
        env.update(dict(cfg.env))
        if cfg.aws_env:
            env.update(AWS_ENDPOINT_URL_KINESIS=endpoint, AWS_REGION="us-east-1",
                       AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                       # Keep the user's ~/.aws and the instance metadata service out of it.
                       AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                       AWS_EC2_METADATA_DISABLED="true")
        cmd = [java, *JVM_FLAGS, *cfg.jvm_props, "-cp", classpath, MAIN_CLASS, cfg.suite,
               "--endpoint", endpoint, "--prefix", f"java-{name}-{uuid.uuid4().hex[:6]}",
               "--expect-content-type", cfg.content_type, "--http-client", cfg.http_client,
               "--protocol", cfg.protocol]
        if cfg.tls:
            cmd += ["--ca-file", str(broker.ca_file)]
        if cfg.alpn:
            cmd += ["--alpn"]
        t0 = time.monotonic()
        try:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True,
                               timeout=RUN_TIMEOUT_S, stdin=subprocess.DEVNULL)
            run = JavaRun(p.returncode, p.stdout, p.stderr, time.monotonic() - t0)
        except subprocess.TimeoutExpired as e:
            # subprocess.run has killed the JVM. Keep what it printed: the cases that ran
            # report, the others fail as "did not run", and the run is not repeated.
            def text(b):
                return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
            run = JavaRun(None, text(e.stdout), text(e.stderr) + f"\nkilled after {RUN_TIMEOUT_S}s",
                          time.monotonic() - t0)
        for line in run.stdout.splitlines():
            if line.startswith("RESULT "):
                r = json.loads(line[len("RESULT "):])
                run.cases[r["case"]] = r
        runs[name] = run
        return run

    yield get
    if runs:
        total = sum(r.seconds for r in runs.values())
        print(f"\nJava SDK runs: {total:.1f}s in all; "
              + ", ".join(f"{n} {r.seconds:.1f}s" for n, r in runs.items()))


def _cases(cfg: JavaConfig) -> list:
    cases = CASES[cfg.suite]
    if cfg.suite == "async" and cfg.protocol == "h1":
        cases = [("wire_http1" if c == "wire_http2" else c) for c in cases]
    return cases


def _params():
    out = []
    for name, cfg in CONFIGS.items():
        for case in _cases(cfg):
            reason = XFAIL.get((name, case))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            out.append(pytest.param(name, case, marks=marks, id=f"{name}-{case}"))
    return out


@pytest.mark.parametrize("config,case", _params())
def test_java_sdk(java_results, config, case):
    run = java_results(config)
    result = run.cases.get(case)
    assert result is not None, (
        f"case {case} did not run (exit status {run.returncode}):\n{run.tail()}")
    assert result["ok"], f"{case}: {result['detail']}"


@pytest.mark.parametrize("config", list(CONFIGS))
def test_java_sdk_run_complete(java_results, config):
    """The JVM ran exactly the cases listed here and its exit status agrees with them."""
    run = java_results(config)
    want = _cases(CONFIGS[config])
    assert list(run.cases) == want, (
        f"cases run differ from the list in test_java_sdk.py:\n{run.tail()}")
    failed = [c for c, r in run.cases.items() if not r["ok"]]
    assert run.returncode == (1 if failed else 0), run.tail()
    closing = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert closing == f"{len(want) - len(failed)} passed, {len(failed)} failed", run.tail()
