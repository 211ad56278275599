"""Fixtures for the wire-compatibility suite: a real riffle-broker process, a boto3
Kinesis client pointed at it, and a helper that runs the AWS CLI (v1) against it.

The broker binary comes from $RIFFLE_BROKER_BIN (default: <repo>/target/debug/riffle-broker),
the `riffle` CLI (for the tests that run it) from $RIFFLE_CLI_BIN (default:
<repo>/target/debug/riffle).
Every broker started here is stopped by its PID: SIGTERM, then SIGKILL after 10 s.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = "000000000000"
ACCESS_KEY = "AKIDRIFFLECOMPAT"
SECRET_KEY = "riffle-compat-secret"
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
CLI_TIMEOUT_S = 60.0

# Authentication is on: every client of the suite signs with a key the broker knows, so
# each test also proves that client's SigV4 signatures verify.
CREDENTIALS_TOML = """\
[[users]]
name = "compat"
access_key_id = "AKIDRIFFLECOMPAT"
secret_access_key = "riffle-compat-secret"
policies = ["administrator"]

[[users]]
name = "js"
access_key_id = "AKIDRIFFLEJS"
secret_access_key = "riffle-js-secret"
policies = ["administrator"]

[[users]]
name = "nobody"
access_key_id = "AKIDRIFFLENOBODY"
secret_access_key = "riffle-nobody-secret"
policies = []

[[roles]]
name = "producer-sts"
policies = [{ template = "producer", streams = ["sts-*"] }]
service_accounts = ["team/checkout"]
trusted_users = ["compat"]
"""

# The test OIDC issuer whose tokens AssumeRoleWithWebIdentity accepts (see test_sts.py).
OIDC_ISSUER = "https://kubernetes.default.svc.cluster.local"
OIDC_AUDIENCE = "riffle"


def _issuer_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


ISSUER_KEY = _issuer_key()


def issuer_jwks() -> str:
    import base64

    numbers = ISSUER_KEY.public_key().public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()

    return json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
                                 "kid": "compat", "x": b64(numbers.x), "y": b64(numbers.y)}]})


def web_identity_token(namespace: str, name: str, audience: str = OIDC_AUDIENCE,
                       lifetime: int = 600) -> str:
    """A Kubernetes-shaped service-account token signed by the test issuer."""
    import jwt

    now = int(time.time())
    claims = {"iss": OIDC_ISSUER, "sub": f"system:serviceaccount:{namespace}:{name}",
              "aud": [audience], "iat": now - 10, "nbf": now - 10, "exp": now + lifetime}
    return jwt.encode(claims, ISSUER_KEY, algorithm="ES256", headers={"kid": "compat"})

CONFIG_TOML = """\
[streams]
status_delay = "50ms"

[control_plane]
enabled = false

# A test key under the id of AWS's managed key, for StartStreamEncryption (test_java_sdk.py).
[encryption.keys]
"alias/aws/kinesis" = "6b696e657369732d746573742d6b65792d6e6f742d612d7265616c2d6b657921"

[limits]
write_bytes_per_second = "off"
write_records_per_second = "off"
read_bytes_per_second = "off"
get_records_per_second = "off"
get_shard_iterator_per_second = "off"

# One stream with a low write limit, for throttling as clients see it (test_java_sdk.py).
[limits.streams.java-sdk-throttled]
write_bytes_per_second = "off"
write_records_per_second = 10
read_bytes_per_second = "off"
get_records_per_second = "off"
get_shard_iterator_per_second = "off"
"""


@dataclass
class BrokerInfo:
    pid: int
    api: str  # host:port
    admin: str  # host:port
    endpoint_url: str
    data_dir: Path
    stderr_path: Path
    tls: str | None = None  # host:port of the TLS listener ([tls] in the config)
    tls_endpoint_url: str | None = None  # https://127.0.0.1:PORT
    ca_file: Path | None = None  # PEM of the listener's self-signed certificate


def write_self_signed_cert(cert_path: Path, key_path: Path) -> None:
    """A self-signed P-256 certificate for 127.0.0.1 and localhost (its own trust anchor)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "riffle compat test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


def broker_binary() -> Path:
    path = Path(os.environ.get("RIFFLE_BROKER_BIN", REPO / "target" / "debug" / "riffle-broker"))
    if not path.is_file():
        pytest.fail(
            f"broker binary {path} not found: build it with `cargo build -p riffle-broker` "
            "or set RIFFLE_BROKER_BIN"
        )
    return path


def cli_binary() -> Path:
    """The `riffle` CLI: $RIFFLE_CLI_BIN (default: <repo>/target/debug/riffle)."""
    path = Path(os.environ.get("RIFFLE_CLI_BIN", REPO / "target" / "debug" / "riffle"))
    if not path.is_file():
        pytest.fail(
            f"CLI binary {path} not found: build it with `cargo build -p riffle-cli` "
            "or set RIFFLE_CLI_BIN"
        )
    return path


def parse_ready_line(line: str):
    """`riffle-broker ready api=HOST:PORT admin=HOST:PORT [tls=HOST:PORT]` -> (api, admin),
    else None (ready_tls reads the optional third address)."""
    parts = line.strip().split()
    if len(parts) not in (4, 5) or parts[:2] != ["riffle-broker", "ready"]:
        return None
    if not parts[2].startswith("api=") or not parts[3].startswith("admin="):
        return None
    if len(parts) == 5 and not parts[4].startswith("tls="):
        return None
    return parts[2][len("api="):], parts[3][len("admin="):]


def ready_tls(line: str):
    """The TLS listener's HOST:PORT from the ready line, or None."""
    parts = line.strip().split()
    return parts[4][len("tls="):] if len(parts) == 5 and parts[4].startswith("tls=") else None


def _read_ready_line(proc: subprocess.Popen, timeout: float):
    """The broker's first stdout line, or None if it does not come within `timeout`."""
    result = {}

    def reader():
        try:
            result["line"] = proc.stdout.readline()
        except Exception as e:  # noqa: BLE001 - reported below
            result["error"] = e

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    return result.get("line")


def stop_by_pid(proc: subprocess.Popen) -> None:
    """SIGTERM the process by its PID, SIGKILL after STOP_GRACE_S; always reaps it."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=STOP_GRACE_S)


@pytest.fixture(scope="session")
def broker():
    """A running broker (fresh temp data dir and config) for the whole session."""
    binary = broker_binary()
    with tempfile.TemporaryDirectory(prefix="riffle-compat-") as tmp:
        tmp = Path(tmp)
        data_dir = tmp / "data"
        data_dir.mkdir()
        config = tmp / "riffle.toml"
        credentials = tmp / "credentials.toml"
        credentials.write_text(CREDENTIALS_TOML)
        jwks = tmp / "jwks.json"
        jwks.write_text(issuer_jwks())
        # A TLS listener too (ALPN h2/http1.1) with a self-signed certificate: clients that
        # test https:// trust ca_file.
        cert_file, key_file = tmp / "tls.crt", tmp / "tls.key"
        write_self_signed_cert(cert_file, key_file)
        config.write_text(
            CONFIG_TOML
            + f'\n[tls]\nlisten = "127.0.0.1:0"\ncert_file = "{cert_file}"\n'
            + f'key_file = "{key_file}"\n'
            + f'\n[auth]\ncredentials_file = "{credentials}"\n'
            + f'\n[auth.web_identity]\nissuer = "{OIDC_ISSUER}"\n'
            + f'audiences = ["{OIDC_AUDIENCE}"]\njwks_file = "{jwks}"\n'
        )
        stderr_path = tmp / "broker.stderr"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                [
                    str(binary),
                    "--listen", "127.0.0.1:0",
                    "--admin-listen", "127.0.0.1:0",
                    "--data-dir", str(data_dir),
                    "--config", str(config),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        try:
            line = _read_ready_line(proc, READY_TIMEOUT_S)
            addrs = parse_ready_line(line) if line else None
            if addrs is None:
                log = stderr_path.read_text(errors="replace")[-4000:]
                pytest.fail(
                    "broker's first stdout line was not its ready line "
                    f"(waited up to {READY_TIMEOUT_S:.0f}s; got {line!r}, "
                    f"exit status {proc.poll()}); stderr tail:\n{log}"
                )
            api, admin = addrs
            tls = ready_tls(line)
            yield BrokerInfo(
                pid=proc.pid,
                api=api,
                admin=admin,
                endpoint_url=f"http://{api}",
                data_dir=data_dir,
                stderr_path=stderr_path,
                tls=tls,
                tls_endpoint_url=f"https://{tls}" if tls else None,
                ca_file=cert_file,
            )
        finally:
            stop_by_pid(proc)
            if proc.stdout:
                proc.stdout.close()
        # A clean SIGTERM shutdown exits 0; anything else is a broker bug worth seeing.
        assert proc.returncode == 0, (
            f"broker exited with {proc.returncode} after SIGTERM; stderr tail:\n"
            + stderr_path.read_text(errors="replace")[-4000:]
        )


@pytest.fixture(scope="session")
def kinesis(broker):
    """A boto3 Kinesis client for the broker: dummy credentials, no retries."""
    return boto3.client(
        "kinesis",
        endpoint_url=broker.endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=30,
        ),
    )


@pytest.fixture
def stream_name(request):
    """A stream name unique to this test."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    return f"{base}-{uuid.uuid4().hex[:8]}"


def wait_active(kinesis, name: str, timeout: float = 30.0) -> dict:
    """Polls DescribeStreamSummary until the stream is ACTIVE (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        s = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if s["StreamStatus"] == "ACTIVE":
            return s
        if time.monotonic() > deadline:
            raise AssertionError(f"stream {name} not ACTIVE after {timeout}s: {s['StreamStatus']}")
        time.sleep(0.05)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout) if self.stdout.strip() else None


@pytest.fixture(scope="session")
def aws_cli(broker, tmp_path_factory):
    """Runs `python -m awscli kinesis ARGS... --endpoint-url URL --output json`."""
    home = tmp_path_factory.mktemp("aws-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        # Keep the user's ~/.aws out of it.
        AWS_CONFIG_FILE=str(home / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
        AWS_MAX_ATTEMPTS="1",
        AWS_RETRY_MODE="standard",
        AWS_PAGER="",
    )

    def run(*args: str) -> CliResult:
        cmd = [
            sys.executable, "-m", "awscli", "kinesis", *args,
            "--endpoint-url", broker.endpoint_url,
            "--output", "json",
        ]
        p = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        return CliResult(p.returncode, p.stdout, p.stderr)

    return run
