"""The real AWS Kinesis Client Library 3.x (Java) against the session's broker (h2c), and
against a broker of this module's own over TLS (https, ALPN h2).

A sample KCL application (tests/compat/java-kcl, built by tests/compat/run.sh with Maven)
consumes a stream of the broker, keeping its leases in a moto_server (a DynamoDB-compatible
server from PyPI) started here. Its record processor writes every record it processes, and
every lifecycle call, as JSON lines to a file; the tests produce with boto3, read that file
and the lease table (boto3 dynamodb against moto), and assert on them.

The application is a subprocess stopped by its PID: SIGTERM (the KCL's graceful shutdown,
which checkpoints), then SIGKILL after a grace period. Java, the built jar and moto_server
are required: if any is missing the test fails; it is never skipped.

Every fresh application waits a random 1-30 s before its first shard sync while its lease
table is empty (Scheduler.shouldInitiateLeaseSync, constants in the KCL, not configurable):
most of each test's time, and why their durations vary.
"""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest

from conftest import (ACCESS_KEY, CONFIG_TOML, CREDENTIALS_TOML, READY_TIMEOUT_S, REGION, REPO,
                      SECRET_KEY, _read_ready_line, broker_binary, stop_by_pid, wait_active)

KCL_DIR = Path(__file__).resolve().parent / "java-kcl"
KCL_JAR = KCL_DIR / "target" / "riffle-kcl-sample.jar"
MOTO_READY_TIMEOUT_S = 60.0
APP_STOP_GRACE_S = 45.0
# Each scenario's hard bound on waiting for the application to process what was produced.
PROCESS_TIMEOUT_S = 120.0


def _moto_binary() -> Path:
    if os.environ.get("RIFFLE_MOTO_SERVER"):
        return Path(os.environ["RIFFLE_MOTO_SERVER"])
    return REPO / ".venv" / "bin" / "moto_server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM by PID, SIGKILL after `grace` seconds; always reaps."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """A moto_server on a free 127.0.0.1 port for this module; its endpoint URL."""
    binary = _moto_binary()
    assert binary.is_file(), (
        f"{binary} is missing: tests/compat/run.sh installs it from requirements.txt "
        "(or set RIFFLE_MOTO_SERVER)"
    )
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    for _ in range(5):
        port = _free_port()
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [str(binary), "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + MOTO_READY_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            _stop(proc, 5)
            continue
        try:
            yield url
        finally:
            _stop(proc, 10)
        return
    pytest.fail(f"moto_server did not start; log:\n{log.read_text(errors='replace')[-4000:]}")


@pytest.fixture(scope="module")
def dynamodb(moto):
    return boto3.client(
        "dynamodb", endpoint_url=moto, region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
    )


@pytest.fixture(scope="module")
def java():
    java = shutil.which("java")
    assert java, "java (17+) is required for the KCL compatibility tests (not found on PATH)"
    assert KCL_JAR.is_file(), (
        f"{KCL_JAR} is missing: tests/compat/run.sh builds it "
        f"(mvn -q -B package in {KCL_DIR})"
    )
    return java


class TlsBroker:
    """A broker of this module's own with a `[tls]` listener (self-signed P-256 certificate
    for 127.0.0.1) and a PKCS#12 trust store holding that certificate, for the JVM."""

    def __init__(self, proc, endpoint_url, admin, cert, trust_store):
        self.proc = proc
        self.cert = cert
        self.endpoint_url = endpoint_url
        self.admin = admin
        self.trust_store = trust_store


def _self_signed(directory: Path):
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "riffle-compat-kcl")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory, java):
    tmp = tmp_path_factory.mktemp("tls-broker")
    cert, key = _self_signed(tmp)
    keytool = shutil.which("keytool") or str(Path(os.path.realpath(java)).parent / "keytool")
    trust_store = tmp / "trust.p12"
    subprocess.run([keytool, "-importcert", "-noprompt", "-alias", "riffle", "-file", str(cert),
                    "-keystore", str(trust_store), "-storetype", "PKCS12",
                    "-storepass", "changeit"], check=True, capture_output=True, timeout=60)
    (tmp / "credentials.toml").write_text(CREDENTIALS_TOML)
    (tmp / "data").mkdir()
    config = tmp / "riffle.toml"
    config.write_text(
        CONFIG_TOML
        + f'\n[auth]\ncredentials_file = "{tmp / "credentials.toml"}"\n'
        + f'\n[tls]\nlisten = "127.0.0.1:0"\ncert_file = "{cert}"\nkey_file = "{key}"\n'
    )
    stderr_path = tmp / "broker.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [str(broker_binary()), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
             "--data-dir", str(tmp / "data"), "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True,
        )
    try:
        line = _read_ready_line(proc, READY_TIMEOUT_S) or ""
        words = dict(w.split("=", 1) for w in line.split()[2:] if "=" in w)
        if not line.startswith("riffle-broker ready") or "tls" not in words:
            pytest.fail(f"TLS broker not ready: {line!r}; stderr:\n"
                        + stderr_path.read_text(errors="replace")[-4000:])
        yield TlsBroker(proc, f"https://{words['tls']}", words["admin"], cert, trust_store)
    finally:
        stop_by_pid(proc)
        if proc.stdout:
            proc.stdout.close()


class KclApp:
    """One run of the sample KCL application, writing JSON lines to `out`."""

    def __init__(self, java, broker, moto, stream, app, out: Path, retrieval, worker, extra=()):
        self.out = out
        self.log = out.with_suffix(".log")
        trust = []
        if getattr(broker, "trust_store", None):
            trust = [f"-Djavax.net.ssl.trustStore={broker.trust_store}",
                     "-Djavax.net.ssl.trustStorePassword=changeit",
                     "-Djavax.net.ssl.trustStoreType=PKCS12"]
        args = [
            java, "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", *trust,
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
            "-jar", str(KCL_JAR),
            f"kinesis={broker.endpoint_url}", f"dynamodb={moto}", f"stream={stream}",
            f"app={app}", f"out={out}", f"retrieval={retrieval}", f"worker={worker}",
            f"access_key={ACCESS_KEY}", f"secret_key={SECRET_KEY}", f"region={REGION}",
            *extra,  # more key=value arguments, e.g. limit=N (see SampleApp)
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env)

    def lines(self) -> list:
        if not self.out.exists():
            return []
        out = []
        for line in self.out.read_text().splitlines():
            if line.endswith("}"):
                out.append(json.loads(line))
        return out

    def records(self) -> list:
        return [e for e in self.lines() if e["event"] == "record"]

    def log_tail(self, n=6000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def wait_for(self, what: str, predicate, timeout=PROCESS_TIMEOUT_S):
        """Polls `predicate(lines)` until truthy; fails with the app's log otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            value = predicate(lines)
            if value:
                return value
            if self.proc.poll() is not None:
                pytest.fail(f"KCL app exited ({self.proc.returncode}) while waiting for {what}; "
                            f"log tail:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"KCL app: no {what} within {timeout:.0f}s; log tail:\n{self.log_tail()}")
            time.sleep(0.25)

    def wait_records(self, seqs: set, timeout=PROCESS_TIMEOUT_S):
        """Waits until every (shard, seq) in `seqs` has been processed."""
        def done(lines):
            got = {(e["shard"], e["seq"]) for e in lines if e["event"] == "record"}
            return seqs <= got
        self.wait_for(f"processing of all {len(seqs)} records", done, timeout)

    def stop(self):
        """Graceful stop (SIGTERM by PID); SIGKILL after APP_STOP_GRACE_S. Returns the exit code."""
        _stop(self.proc, APP_STOP_GRACE_S)
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def kcl(java, broker, moto, tmp_path):
    """Starts KCL app runs; every run is stopped by its PID when the test ends."""
    runs = []

    def start(stream, app, retrieval="fanout", worker=None, name=None, via=None, extra=()):
        out = tmp_path / f"{name or f'run{len(runs)}'}.jsonl"
        run = KclApp(java, via or broker, moto, stream, app, out, retrieval,
                     worker or f"worker-{uuid.uuid4().hex[:6]}", extra)
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.proc.poll() is None:
            _stop(run.proc, 5)


def create_stream(kinesis, name, shards):
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    wait_active(kinesis, name)


def produce(kinesis, stream, keys, rounds, tag):
    """PutRecords `rounds` records for each key; returns [(shard, seq, pk, data)] in put order."""
    out = []
    for r in range(rounds):
        entries = [{"PartitionKey": k, "Data": f"{tag}-{k}-{r}".encode()} for k in keys]
        resp = kinesis.put_records(StreamName=stream, Records=entries)
        assert resp.get("FailedRecordCount", 0) == 0, resp
        for e, res in zip(entries, resp["Records"]):
            out.append((res["ShardId"], res["SequenceNumber"], e["PartitionKey"], e["Data"]))
    return out


def assert_records_match(records: list, produced: list):
    """Every produced record was processed with its shard, seq, sub-seq 0, key and data."""
    by_seq = {}
    for e in records:
        by_seq.setdefault((e["shard"], e["seq"]), e)
    for shard, seq, pk, data in produced:
        e = by_seq.get((shard, seq))
        assert e is not None, f"record {shard}/{seq} ({pk}) never processed"
        assert e["pk"] == pk, e
        assert base64.b64decode(e["data"]) == data, e
        assert e["sub"] == 0, e


def leases(dynamodb, table) -> dict:
    items = []
    kwargs = {"TableName": table, "ConsistentRead": True}
    while True:
        resp = dynamodb.scan(**kwargs)
        items += resp["Items"]
        if "LastEvaluatedKey" not in resp:
            break
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
    plain = {}
    for it in items:
        if it.get("entityType", {}).get("S", "LEASE") != "LEASE":
            continue
        plain[it["leaseKey"]["S"]] = {k: next(iter(v.values())) for k, v in it.items()}
    return plain


def wait_checkpoints(dynamodb, table, expected: dict, timeout=30.0) -> dict:
    """Waits until the lease of each shard in `expected` has checkpoint == expected[shard]."""
    deadline = time.monotonic() + timeout
    while True:
        ls = leases(dynamodb, table)
        if all(ls.get(s, {}).get("checkpoint") == c for s, c in expected.items()):
            return ls
        if time.monotonic() > deadline:
            raise AssertionError(f"lease checkpoints not as expected {expected}: {ls}")
        time.sleep(0.25)


def subscribed_records(broker, stream) -> int:
    """The broker's count of records pushed by SubscribeToShard for `stream` (its /metrics)."""
    text = urllib.request.urlopen(f"http://{broker.admin}/metrics", timeout=10).read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith("riffle_subscribe_records_total{") and f'stream="{stream}"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def last_seq_per_shard(produced) -> dict:
    last = {}
    for shard, seq, _, _ in produced:
        if shard not in last or int(seq) > int(last[shard]):
            last[shard] = seq
    return last


def assert_graceful_exit(run: KclApp, code):
    lines = run.lines()
    events = [e["event"] for e in lines]
    assert "shutdown_complete" in events, f"exit {code}; events {events[-10:]}; log:\n{run.log_tail()}"
    done = next(e for e in lines if e["event"] == "shutdown_complete")
    assert done["graceful"] is True, done
    # A JVM ended by SIGTERM exits 143 after its shutdown hooks ran.
    assert code in (0, 143), f"exit {code}; log:\n{run.log_tail()}"


KEYS = [f"key-{i:02d}" for i in range(40)]


@pytest.mark.parametrize("retrieval", ["fanout", "polling"])
def test_kcl_consumes_four_shards(broker, kinesis, dynamodb, kcl, stream_name, retrieval):
    """Scenarios 1 and 2: a 4-shard stream, every record processed (before and while running),
    checkpoints in the lease table, the consumer registered for fan-out only."""
    create_stream(kinesis, stream_name, 4)
    app = f"kcl-{retrieval}-{uuid.uuid4().hex[:8]}"
    before = produce(kinesis, stream_name, KEYS, 3, "before")
    assert len({s for s, *_ in before}) == 4, "the keys should cover all 4 shards"

    run = kcl(stream_name, app, retrieval, worker="worker-one")
    run.wait_records({(s, q) for s, q, *_ in before})
    during = produce(kinesis, stream_name, KEYS, 2, "during")
    run.wait_records({(s, q) for s, q, *_ in during})

    records = run.records()
    assert_records_match(records, before + during)
    ls = wait_checkpoints(dynamodb, app, last_seq_per_shard(before + during))
    assert set(ls) == {f"shardId-00000000000{i}" for i in range(4)}, ls
    initialized = {e["shard"] for e in run.lines() if e["event"] == "initialize"}
    assert initialized == set(ls), initialized
    # The lease items as the KCL wrote them from the broker's shard list.
    shards = {s["ShardId"]: s for s in kinesis.list_shards(StreamName=stream_name)["Shards"]}
    for key, lease in ls.items():
        assert lease["leaseOwner"] == "worker-one", lease
        assert lease["checkpointSubSequenceNumber"] == "0", lease
        assert lease["startingHashKey"] == shards[key]["HashKeyRange"]["StartingHashKey"], lease
        assert lease["endingHashKey"] == shards[key]["HashKeyRange"]["EndingHashKey"], lease
        assert "parentShardId" not in lease, lease
    table = dynamodb.describe_table(TableName=app)["Table"]
    gsis = [g["IndexName"] for g in table.get("GlobalSecondaryIndexes", [])]
    assert gsis == ["LeaseOwnerToLeaseKeyIndex"], gsis
    owned = dynamodb.query(TableName=app, IndexName="LeaseOwnerToLeaseKeyIndex",
                           KeyConditionExpression="leaseOwner = :o",
                           ExpressionAttributeValues={":o": {"S": "worker-one"}})["Items"]
    assert sorted(i["leaseKey"]["S"] for i in owned) == sorted(ls), owned

    consumers = kinesis.list_stream_consumers(
        StreamARN=kinesis.describe_stream_summary(StreamName=stream_name)
        ["StreamDescriptionSummary"]["StreamARN"])["Consumers"]
    names = [c["ConsumerName"] for c in consumers]
    if retrieval == "fanout":
        assert names == [app], names  # the KCL registers a consumer named after the application
        # ... and the records reached it through SubscribeToShard (HTTP/2), not GetRecords.
        assert subscribed_records(broker, stream_name) >= len(before + during)
    else:
        assert names == [], names
        assert subscribed_records(broker, stream_name) == 0

    code = run.stop()
    assert_graceful_exit(run, code)


@pytest.mark.parametrize("retrieval", ["fanout", "polling"])
def test_kcl_split_shard_during_consumption(kinesis, dynamodb, kcl, stream_name, retrieval):
    """Scenario 3: SplitShard while the application consumes (the parent's end comes as
    SubscribeToShard's ChildShards with fan-out, GetRecords' with polling): every record processed,
    a key's parent-shard records all before any of its child-shard records, the parent ended
    with a SHARD_END checkpoint and leases for both children in the lease table."""
    create_stream(kinesis, stream_name, 2)
    app = f"kcl-split-{retrieval}-{uuid.uuid4().hex[:8]}"
    run = kcl(stream_name, app, retrieval)
    first = produce(kinesis, stream_name, KEYS, 3, "parent")
    run.wait_for("the first processed record", lambda lines: any(e["event"] == "record" for e in lines))

    parent = "shardId-000000000000"
    shard = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]["Shards"][0]
    assert shard["ShardId"] == parent
    lo = int(shard["HashKeyRange"]["StartingHashKey"])
    hi = int(shard["HashKeyRange"]["EndingHashKey"])
    kinesis.split_shard(StreamName=stream_name, ShardToSplit=parent,
                        NewStartingHashKey=str((lo + hi) // 2 + 1))
    wait_active(kinesis, stream_name)
    second = produce(kinesis, stream_name, KEYS, 3, "child")
    children = {"shardId-000000000002", "shardId-000000000003"}
    assert {s for s, *_ in second} >= children, "some second-batch keys should land on each child"

    run.wait_records({(s, q) for s, q, *_ in first + second})
    lines = run.lines()
    records = [e for e in lines if e["event"] == "record"]
    assert_records_match(records, first + second)

    # Per key, in processing order: every parent record before any child record.
    parent_keys = {pk for s, _, pk, _ in first if s == parent}
    for key in parent_keys:
        shards_in_order = [e["shard"] for e in records if e["pk"] == key]
        last_parent = max(i for i, s in enumerate(shards_in_order) if s == parent)
        first_child = min((i for i, s in enumerate(shards_in_order) if s in children),
                          default=len(shards_in_order))
        assert last_parent < first_child, (key, shards_in_order)
    # Within a shard, a key's records in sequence-number order.
    for key in KEYS:
        for s in {parent} | children:
            seqs = [int(e["seq"]) for e in records if e["pk"] == key and e["shard"] == s]
            first_seen = list(dict.fromkeys(seqs))
            assert first_seen == sorted(first_seen), (key, s, seqs)

    ended = [e for e in lines if e["event"] == "checkpoint" and e["why"] == "shard_end"]
    assert [e["shard"] for e in ended] == [parent], ended
    expected = last_seq_per_shard(first + second)
    expected.pop(parent)
    ls = wait_checkpoints(dynamodb, app, expected)
    assert children <= set(ls), ls
    for c in children:
        assert ls[c]["parentShardId"] == [parent], ls[c]
    # The parent's lease says SHARD_END, unless the KCL has already cleaned it up.
    if parent in ls:
        assert ls[parent]["checkpoint"] == "SHARD_END", ls[parent]
        assert sorted(ls[parent].get("childShardIds", [])) == sorted(children), ls[parent]

    code = run.stop()
    assert_graceful_exit(run, code)


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_kcl_restart_resumes_from_checkpoints(kinesis, dynamodb, kcl, stream_name, how):
    """Scenario 4: stop the application (graceful SIGTERM, or SIGKILL), produce more, start it
    again: it resumes from its checkpoints: nothing at or before a shard's checkpoint is
    delivered again, everything after it is."""
    create_stream(kinesis, stream_name, 2)
    app = f"kcl-restart-{uuid.uuid4().hex[:8]}"
    first = produce(kinesis, stream_name, KEYS, 3, "first")
    run1 = kcl(stream_name, app, "fanout", worker="worker-a", name="first")
    run1.wait_records({(s, q) for s, q, *_ in first})
    if how == "sigterm":
        code = run1.stop()
        assert_graceful_exit(run1, code)
        # Graceful shutdown checkpoints where processing stopped: the last record of each shard.
        checkpoints = {s: c for s, c in last_seq_per_shard(first).items()}
        wait_checkpoints(dynamodb, app, checkpoints, timeout=5)
    else:
        # Every batch is checkpointed after it is written: wait for the last checkpoint, then kill.
        wait_checkpoints(dynamodb, app, last_seq_per_shard(first))
        run1.kill()
        checkpoints = {s: l["checkpoint"] for s, l in leases(dynamodb, app).items()}

    second = produce(kinesis, stream_name, KEYS, 2, "second")
    run2 = kcl(stream_name, app, "fanout", worker="worker-b", name="second")
    run2.wait_records({(s, q) for s, q, *_ in second})
    records = run2.records()
    assert_records_match(records, second)
    again = [e for e in records if int(e["seq"]) <= int(checkpoints[e["shard"]])]
    assert again == [], f"re-delivered at or before the checkpoint: {again[:5]}"
    resumed = {e["shard"]: e["checkpoint"] for e in run2.lines() if e["event"] == "initialize"}
    assert resumed == checkpoints, resumed

    code = run2.stop()
    assert_graceful_exit(run2, code)


def test_kcl_fanout_over_tls(tls_broker, dynamodb, kcl, stream_name):
    """Fan-out as on AWS: https:// with HTTP/2 negotiated by ALPN (the broker's `[tls]`
    listener, a self-signed certificate in the JVM's trust store); every record processed and
    pushed by SubscribeToShard."""
    from botocore.config import Config

    kinesis = boto3.client(
        "kinesis", endpoint_url=tls_broker.endpoint_url, region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        verify=str(tls_broker.cert), config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    create_stream(kinesis, stream_name, 2)
    app = f"kcl-tls-{uuid.uuid4().hex[:8]}"
    produced = produce(kinesis, stream_name, KEYS, 2, "tls")
    run = kcl(stream_name, app, "fanout", via=tls_broker)
    run.wait_records({(s, q) for s, q, *_ in produced})
    assert_records_match(run.records(), produced)
    wait_checkpoints(dynamodb, app, last_seq_per_shard(produced))
    assert subscribed_records(tls_broker, stream_name) >= len(produced)
    code = run.stop()
    assert_graceful_exit(run, code)
