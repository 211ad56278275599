"""The AWS SDK for Go v2 against the broker: the `go test` package in tests/compat/go.

The package is compiled once per session (`go test -c`) and each Go test runs as its own
pytest test against the session's broker (plaintext: HTTP/1.1, and h2c with Go's
http.Protocols) or, for SECOND_BROKER_TESTS, against a second broker with a `[tls]` listener
and a throw-away CA (the SDK negotiates h2 by ALPN; AWS_CA_BUNDLE trusts the CA) whose
subscriptions end after SUBSCRIPTION_LIFETIME.

Go is required (tests/compat/run.sh downloads the modules and compiles the package): if it
is missing the tests fail; they are never skipped. Modules and the build cache live outside
the repository, in $RIFFLE_GO_CACHE (default ~/.cache/riffle-go: mod/ and build/).
"""

import datetime
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import (
    CONFIG_TOML,
    CREDENTIALS_TOML,
    READY_TIMEOUT_S,
    _read_ready_line,
    broker_binary,
    stop_by_pid,
)

GO_DIR = Path(__file__).resolve().parent / "go"
BUILD_TIMEOUT_S = 900
RUN_TIMEOUT_S = 120

# Every Go test, and which broker it runs against (test_go_test_list keeps this complete).
PLAIN_TESTS = [
    "TestCreateStreamWaiter",
    "TestPutRecordGetRecords",
    "TestPutRecordsExplicitHashKey",
    "TestPagination",
    "TestSubscribeToShard",
    "TestSubscribeToShardH2C",
    "TestResourceNotFound",
    "TestWrongSecretKey",
    "TestReshardChildShards",
    "TestStreamARNAndTimestamp",
]
# These run against a second broker with a `[tls]` listener and a short subscription lifetime.
SECOND_BROKER_TESTS = ["TestTLSHTTP2", "TestSubscriptionLifetime"]
SUBSCRIPTION_LIFETIME = "6s"


def go_env() -> dict:
    """The environment for `go`: the persistent caches, go.mod and go.sum as checked in."""
    cache = Path(os.environ.get("RIFFLE_GO_CACHE", Path.home() / ".cache" / "riffle-go"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        GOMODCACHE=str(cache / "mod"),
        GOCACHE=str(cache / "build"),
        GOFLAGS="-mod=readonly -modcacherw",
        GOTOOLCHAIN="local",
    )
    return env


@pytest.fixture(scope="session")
def go_test_binary(tmp_path_factory):
    go = shutil.which("go")
    assert go, "go is required for the Go SDK compatibility tests (not found on PATH)"
    out = tmp_path_factory.mktemp("go-sdk") / "gosdk.test"
    p = subprocess.run(
        [go, "test", "-c", "-o", str(out), "."],
        cwd=GO_DIR, env=go_env(), capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 0 and out.is_file(), (
        f"`go test -c` failed ({p.returncode}):\n{(p.stdout + p.stderr)[-8000:]}"
    )
    return out


def run_go_test(binary: Path, name: str, tmp_path: Path, **extra_env: str) -> None:
    """Runs one Go test; passes only if the binary exits 0 and reports that test passed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        # Keep the user's ~/.aws and instance metadata out of LoadDefaultConfig.
        AWS_CONFIG_FILE=str(tmp_path / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        **extra_env,
    )
    p = subprocess.run(
        [str(binary), "-test.run", f"^{name}$", "-test.v", "-test.count", "1",
         "-test.timeout", "90s", "-test.parallel", "4"],
        cwd=GO_DIR, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"{name} failed ({p.returncode}):\n{out[-8000:]}"
    assert re.search(rf"^--- PASS: {name} ", p.stdout, re.M), out[-8000:]


@pytest.mark.parametrize("name", PLAIN_TESTS)
def test_go_sdk(go_test_binary, broker, name, tmp_path):
    run_go_test(go_test_binary, name, tmp_path, RIFFLE_ENDPOINT=broker.endpoint_url)


def test_go_sdk_test_list(go_test_binary):
    """Every Go test in the package is run by one of the tests here, and nothing else."""
    p = subprocess.run(
        [str(go_test_binary), "-test.list", "."], capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert sorted(p.stdout.split()) == sorted(PLAIN_TESTS + SECOND_BROKER_TESTS)


# ---------------------------------------------------------------- TLS


def write_test_ca(directory: Path):
    """A throw-away CA and a leaf for 127.0.0.1 signed by it: (ca.pem, leaf.pem, leaf.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "riffle compat test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "tls.crt", directory / "tls.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def parse_tls_ready_line(line: str):
    """`riffle-broker ready api=HOST:PORT admin=.. tls=HOST:PORT` -> (api, tls), else None."""
    parts = line.strip().split()
    if len(parts) != 5 or parts[:2] != ["riffle-broker", "ready"] or \
            not parts[2].startswith("api=") or not parts[4].startswith("tls="):
        return None
    return parts[2][len("api="):], parts[4][len("tls="):]


@pytest.fixture(scope="module")
def second_broker():
    """A second broker, all on 127.0.0.1, with a `[tls]` listener (a throw-away CA) and
    subscriptions that end after SUBSCRIPTION_LIFETIME: the Go tests' environment for it."""
    binary = broker_binary()
    with tempfile.TemporaryDirectory(prefix="riffle-compat-go-tls-") as tmp:
        tmp = Path(tmp)
        (tmp / "data").mkdir()
        ca, cert, key = write_test_ca(tmp)
        credentials = tmp / "credentials.toml"
        credentials.write_text(CREDENTIALS_TOML)
        config = tmp / "riffle.toml"
        streams = '[streams]\n'
        assert CONFIG_TOML.startswith(streams)
        config.write_text(
            CONFIG_TOML.replace(
                streams, f'{streams}subscription_lifetime = "{SUBSCRIPTION_LIFETIME}"\n', 1)
            + f'\n[auth]\ncredentials_file = "{credentials}"\n'
            + f'\n[tls]\nlisten = "127.0.0.1:0"\ncert_file = "{cert}"\nkey_file = "{key}"\n'
        )
        stderr_path = tmp / "broker.stderr"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                [str(binary), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                 "--data-dir", str(tmp / "data"), "--config", str(config)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True,
            )
        try:
            line = _read_ready_line(proc, READY_TIMEOUT_S)
            addrs = parse_tls_ready_line(line) if line else None
            if addrs is None:
                pytest.fail(
                    f"second broker's first stdout line was not a ready line with tls= (got "
                    f"{line!r}, exit status {proc.poll()}); stderr tail:\n"
                    + stderr_path.read_text(errors="replace")[-4000:]
                )
            api, tls = addrs
            yield {
                "RIFFLE_ENDPOINT": f"http://{api}",
                "RIFFLE_TLS_ENDPOINT": f"https://{tls}",
                "AWS_CA_BUNDLE": str(ca),
                "RIFFLE_SUBSCRIPTION_LIFETIME": SUBSCRIPTION_LIFETIME,
            }
        finally:
            stop_by_pid(proc)
            if proc.stdout:
                proc.stdout.close()
        assert proc.returncode == 0, (
            f"second broker exited with {proc.returncode} after SIGTERM; stderr tail:\n"
            + stderr_path.read_text(errors="replace")[-4000:]
        )


@pytest.mark.parametrize("name", SECOND_BROKER_TESTS)
def test_go_sdk_second_broker(go_test_binary, second_broker, name, tmp_path):
    run_go_test(go_test_binary, name, tmp_path, **second_broker)
