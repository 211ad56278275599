"""The real AWS Kinesis Producer Library (the Java wrapper and the native `kinesis_producer`
daemon its jar carries) and the real Java KCL 3.x, against riffle's own producer and consumer
libraries (riffle-kpl, riffle-kcl, through the `riffle` CLI):

1. KPL -> riffle-kcl: records the KPL aggregated and put through the session broker's TLS
   listener (the daemon speaks HTTPS only) are read back with `riffle consume --format json`:
   exactly the records put, once each, per-key order kept, and really aggregated;
2. riffle-kpl -> Java KCL: `riffle produce` aggregates, the Java KCL sample app (test_java_kcl's)
   de-aggregates: same data, keys and (sequence, sub-sequence) numbers as `riffle consume`;
3. lease-table interop: the Java KCL consumes and checkpoints in its lease table (moto), stops
   gracefully; `riffle consume --group APP --lease-store dynamodb` resumes exactly after its
   checkpoints and advances them; and the reverse (the Java KCL resumes after riffle's).

The KPL producer is tests/compat/java-kpl (built by tests/compat/run.sh with Maven); the CLI
comes from $RIFFLE_CLI_BIN (default: <repo>/target/debug/riffle). Every process is stopped by
its PID and every wait is bounded.
"""

import base64
import json
import os
import shutil
import subprocess
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import ACCESS_KEY, REGION, SECRET_KEY, cli_binary, stop_by_pid
# The Java KCL sample app's fixtures and helpers, shared with test_java_kcl.py.
from test_java_kcl import (  # noqa: F401 - fixtures are used by name
    assert_graceful_exit, create_stream, dynamodb, java, kcl, last_seq_per_shard, leases, moto,
    wait_checkpoints)

KPL_DIR = Path(__file__).resolve().parent / "java-kpl"
KPL_JAR = KPL_DIR / "target" / "riffle-kpl-sample.jar"
KPL_RECORDS = int(os.environ.get("RIFFLE_KPL_RECORDS", "100000"))
KPL_TIMEOUT_S = 240.0
CONSUME_TIMEOUT_S = 120.0


def cli_env(extra=None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_REGION=REGION, AWS_CONFIG_FILE="/nonexistent/riffle-compat-config",
               AWS_SHARED_CREDENTIALS_FILE="/nonexistent/riffle-compat-credentials")
    env.update(extra or {})
    return env


def riffle_consume(broker, stream, *extra, env=None, timeout=CONSUME_TIMEOUT_S) -> list:
    """`riffle consume STREAM --format json` until caught up: its records, in output order."""
    p = subprocess.run(
        [str(cli_binary()), "consume", stream, "--endpoint", broker.endpoint_url,
         "--region", REGION, "--format", "json", "--output", "json", *extra],
        env=env or cli_env(), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"riffle consume exited {p.returncode}; stderr:\n{p.stderr[-4000:]}"
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def record_data(r: dict) -> bytes:
    if "data_base64" in r:
        return base64.b64decode(r["data_base64"])
    return r["data"].encode()


def kpl_data(i: int) -> bytes:
    """The data KplPut.java puts as record i."""
    s = f"kpl-record-{i:08d}-"
    return (s + "x" * (100 - len(s))).encode()


def agg_records(kinesis, stream) -> dict:
    """{(shard, seq, sub): (pk, data)} for every user record of the stream, read with boto3
    GetRecords and de-aggregated by aws_kinesis_agg (sub is 0 for a non-aggregated record)."""
    from test_kpl_aggregation import read_shard, user_records

    out = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        sid = shard["ShardId"]
        for rec in read_shard(kinesis, stream, sid):
            for pk, data, sub, _ in user_records(rec):
                out[(sid, rec["SequenceNumber"], sub or 0)] = (pk, data)
    return out


def run_kpl(java, broker, stream, count, keys, out: Path):
    host, port = broker.tls.rsplit(":", 1)
    log = out.with_suffix(".log")
    args = [java, "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-jar", str(KPL_JAR),
            f"host={host}", f"port={port}", f"stream={stream}", f"count={count}",
            f"keys={keys}", f"out={out}", f"access_key={ACCESS_KEY}",
            f"secret_key={SECRET_KEY}", f"region={REGION}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    started = time.monotonic()
    with open(log, "wb") as logf:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, env=env)
    try:
        proc.wait(timeout=KPL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    finally:
        stop_by_pid(proc)
    elapsed = time.monotonic() - started
    text = out.read_text() if out.exists() else ""
    tail = log.read_text(errors="replace")[-4000:]
    assert proc.returncode == 0, (f"KPL producer exited {proc.returncode} after {elapsed:.0f}s; "
                                  f"results tail:\n{text[-2000:]}\nlog tail:\n{tail}")
    lines = text.splitlines()
    assert lines and lines[-1].startswith("DONE "), lines[-3:]
    done = dict(w.split("=") for w in lines[-1].split()[1:])
    results = {}
    for line in lines[:-1]:
        i, shard, seq, attempts = line.split()
        results[int(i)] = (shard, seq, int(attempts))
    return results, int(done["put_ms"]), elapsed


@pytest.fixture(scope="module")
def kpl_java():
    java = shutil.which("java")
    assert java, "java (17+) is required for the KPL compatibility tests (not found on PATH)"
    assert KPL_JAR.is_file(), (f"{KPL_JAR} is missing: tests/compat/run.sh builds it "
                               f"(mvn -q -B package in {KPL_DIR})")
    return java


def test_kpl_to_riffle_kcl(broker, kinesis, kpl_java, tmp_path, stream_name):
    """The KPL daemon aggregates KPL_RECORDS 100-byte records over 200 keys into a 4-shard
    stream (HTTPS, SigV4); `riffle consume` de-aggregates exactly those records, once each,
    in (sequence, sub-sequence) order per shard, with the shard and sequence number each KPL
    future reported and the sub-sequence numbers aws_kinesis_agg reads."""
    create_stream(kinesis, stream_name, 4)
    n, keys = KPL_RECORDS, 200
    results, put_ms, elapsed = run_kpl(kpl_java, broker, stream_name, n, keys,
                                       tmp_path / "kpl.txt")
    print(f"\nKPL: {n} records in {put_ms} ms ({n / max(put_ms, 1) * 1000:.0f} records/s; "
          f"JVM+daemon {elapsed:.1f}s)")
    assert len(results) == n

    records = riffle_consume(broker, stream_name)
    by_index = defaultdict(list)
    for r in records:
        data = record_data(r)
        assert data.startswith(b"kpl-record-"), r
        by_index[int(data[11:19])].append(r)
    missing = [i for i in range(n) if i not in by_index]
    assert not missing, f"{len(missing)} records never read, e.g. {missing[:5]}"
    dups = {i: rs for i, rs in by_index.items() if len(rs) > 1}
    assert not dups, f"{len(dups)} records read more than once, e.g. {list(dups.items())[:2]}"
    assert len(records) == n, f"{len(records)} records read, {n} put"
    for i, (r,) in by_index.items():
        assert record_data(r) == kpl_data(i), r
        assert r["partition_key"] == f"pk-{i % keys}", r
        shard, seq, _ = results[i]
        # The KPL's future reports the aggregate's shard and sequence number.
        assert (r["shard"], r["sequence_number"]) == (shard, seq), (i, r, results[i])

    # The same records, read with boto3 and de-aggregated by aws_kinesis_agg (AWS's Python
    # de-aggregator): riffle-kcl de-aggregates them identically, (seq, sub) included.
    reference = agg_records(kinesis, stream_name)
    assert len(reference) == n
    mine = {(r["shard"], r["sequence_number"], r["sub_sequence_number"]):
            (r["partition_key"], record_data(r)) for r in records}
    assert mine == reference

    # Per key: read in the order the stream holds them, (seq, sub) increasing. That is not
    # always put order: the KPL daemon itself sometimes places a key's later record before an
    # earlier one, inside an aggregate and across aggregates (its futures' sequence numbers and
    # aws_kinesis_agg, above, say the same), so the daemon's inversions are only counted.
    per_key, per_shard = defaultdict(list), defaultdict(list)
    for r in records:
        per_key[r["partition_key"]].append(r)
        per_shard[r["shard"]].append((int(r["sequence_number"]), r["sub_sequence_number"]))
    for shard, pos in per_shard.items():
        assert pos == sorted(pos), f"{shard} not read in (seq, sub) order"
    inversions = 0
    for key, rs in per_key.items():
        pos = [(int(r["sequence_number"]), r["sub_sequence_number"]) for r in rs]
        assert pos == sorted(pos), f"{key}: not read in (seq, sub) order: {pos[:10]}"
        idx = [int(record_data(r)[11:19]) for r in rs]
        inversions += sum(1 for a, b in zip(idx, idx[1:]) if a > b)
    print(f"KPL: {inversions} adjacent per-key put-order inversions made by the daemon")

    # Really aggregated: many user records per Kinesis record, sub-sequence numbers > 0.
    kinesis_records = {(r["shard"], r["sequence_number"]) for r in records}
    print(f"KPL: {len(kinesis_records)} Kinesis records for {n} user records")
    assert len(kinesis_records) * 10 < n, len(kinesis_records)
    assert max(r["sub_sequence_number"] for r in records) > 0
    # Within an aggregate the sub-sequence numbers are 0..k-1, each once.
    subs = defaultdict(list)
    for r in records:
        subs[(r["shard"], r["sequence_number"])].append(r["sub_sequence_number"])
    for k, s in subs.items():
        assert sorted(s) == list(range(len(s))), (k, sorted(s)[:10])


def riffle_produce(broker, stream, lines: list, *extra):
    """`riffle produce STREAM --key-field k` (aggregation on, its default) of `lines`."""
    p = subprocess.run(
        [str(cli_binary()), "produce", stream, "--endpoint", broker.endpoint_url,
         "--region", REGION, "--key-field", "k", "--no-progress", "--output", "json", *extra],
        env=cli_env(), input="".join(line + "\n" for line in lines), capture_output=True,
        text=True, timeout=CONSUME_TIMEOUT_S)
    assert p.returncode == 0, f"riffle produce exited {p.returncode}; stderr:\n{p.stderr[-4000:]}"
    return p


def json_lines(tag: str, keys: int, count: int) -> list:
    return [json.dumps({"k": f"key-{i % keys:02d}", "i": i, "tag": tag, "pad": "p" * 60},
                       separators=(",", ":")) for i in range(count)]


def by_position(records) -> dict:
    """riffle consume's records as {(shard, seq, sub): (pk, data)}, each position once."""
    out = {}
    for r in records:
        k = (r["shard"], r["sequence_number"], r["sub_sequence_number"])
        assert k not in out, f"position {k} printed twice"
        out[k] = (r["partition_key"], record_data(r))
    return out


def kcl_by_position(records) -> dict:
    out = {}
    for e in records:
        k = (e["shard"], e["seq"], e["sub"])
        assert k not in out, f"the Java KCL processed {k} twice"
        out[k] = (e["pk"], base64.b64decode(e["data"]))
    return out


def test_riffle_kpl_to_java_kcl(broker, kinesis, kcl, stream_name):
    """riffle-kpl aggregates (`riffle produce`), the Java KCL 3.5.1 de-aggregates: every user
    record with the data, partition key and (sequence, sub-sequence) numbers that riffle-kcl
    (`riffle consume --format json`) reports for it."""
    create_stream(kinesis, stream_name, 2)
    lines = json_lines("to-kcl", 30, 3000)
    riffle_produce(broker, stream_name, lines)
    mine = by_position(riffle_consume(broker, stream_name))
    assert sorted(d for _, d in mine.values()) == sorted(line.encode() for line in lines)
    # Aggregated: far fewer Kinesis records than user records, sub-sequence numbers > 0.
    assert len({(s, q) for s, q, _ in mine}) * 10 < len(lines)
    assert max(sub for _, _, sub in mine) > 0

    app = f"kpl-to-kcl-{uuid.uuid4().hex[:8]}"
    run = kcl(stream_name, app, "polling")
    run.wait_for(f"all {len(lines)} records",
                 lambda ls: sum(1 for e in ls if e["event"] == "record") >= len(lines))
    theirs = kcl_by_position(run.records())
    assert theirs == mine
    for (shard, seq, sub), (pk, data) in theirs.items():
        assert json.loads(data)["k"] == pk
    code = run.stop()
    assert_graceful_exit(run, code)


class GroupWorker:
    """`riffle consume STREAM --group APP --lease-store dynamodb --format json` (a riffle-kcl
    worker on the Java KCL's lease table in moto), printing to a file; stopped by its PID."""

    def __init__(self, broker, moto, stream, app, out: Path):
        self.out = out
        self.err = out.with_suffix(".stderr")
        env = cli_env({"AWS_ENDPOINT_URL_DYNAMODB": moto})
        with open(out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen(
                [str(cli_binary()), "consume", stream, "--endpoint", broker.endpoint_url,
                 "--region", REGION, "--format", "json", "--output", "json",
                 "--group", app, "--lease-store", "dynamodb", "--follow"],
                env=env, stdin=subprocess.DEVNULL, stdout=o, stderr=e)

    def records(self) -> list:
        text = self.out.read_text() if self.out.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    def wait_count(self, n: int, timeout=CONSUME_TIMEOUT_S) -> list:
        deadline = time.monotonic() + timeout
        while True:
            rs = self.records()
            if len(rs) >= n:
                return rs
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"riffle consume --group: {len(rs)} of {n} records "
                            f"(exit {self.proc.returncode}); stderr:\n"
                            + self.err.read_text(errors="replace")[-4000:])
            time.sleep(0.25)

    def stop(self) -> int:
        stop_by_pid(self.proc)
        return self.proc.returncode


def lease_positions(dynamodb, app) -> dict:
    return {s: (l["checkpoint"], int(l.get("checkpointSubSequenceNumber", "0")))
            for s, l in leases(dynamodb, app).items()}


def wait_lease_positions(dynamodb, app, expected: dict, timeout=30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = lease_positions(dynamodb, app)
        if all(got.get(s) == p for s, p in expected.items()):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"lease checkpoints {got}, expected {expected}")
        time.sleep(0.25)


def last_positions(positions) -> dict:
    """{shard: (seq, sub)} of the greatest position per shard."""
    last = {}
    for shard, seq, sub in positions:
        if shard not in last or (int(seq), sub) > (int(last[shard][0]), last[shard][1]):
            last[shard] = (seq, sub)
    return last


def test_lease_table_interop(broker, kinesis, moto, dynamodb, kcl, stream_name, tmp_path):
    """The Java KCL 3.5.1 and a riffle-kcl worker (`riffle consume --group`) take turns on one
    lease table (moto), both on aggregated records (riffle-kpl): each resumes exactly after the
    other's checkpoints, (sequence, sub-sequence) numbers included (the Java KCL's inside an
    aggregate), and advances them."""
    create_stream(kinesis, stream_name, 3)
    app = f"lease-interop-{uuid.uuid4().hex[:8]}"

    def produce_batch(tag, count):
        before = set(by_position(riffle_consume(broker, stream_name)))
        riffle_produce(broker, stream_name, json_lines(tag, 24, count))
        now = by_position(riffle_consume(broker, stream_name))
        batch = {k: v for k, v in now.items() if k not in before}
        assert len(batch) == count
        return batch

    # 1. The Java KCL processes the first LIMIT records of each shard of batch A (the rest
    #    unprocessed), checkpointing at the last one, and is stopped gracefully. The cut falls
    #    inside an aggregate: the checkpoint carries a sub-sequence number, and the aggregate's
    #    later user records are not yet processed.
    a = produce_batch("a", 1200)
    assert len({s for s, _, _ in a}) == 3
    limit = 150
    run1 = kcl(stream_name, app, "polling", worker="java-worker", name="java1",
               extra=[f"limit={limit}"])
    run1.wait_for(f"{limit} records of each shard", lambda ls: len(
        [e for e in ls if e["event"] == "record"]) >= 3 * limit)
    time.sleep(1)
    code = run1.stop()
    assert_graceful_exit(run1, code)
    done = kcl_by_position(run1.records())
    order = sorted(a, key=lambda k: (k[0], int(k[1]), k[2]))
    expected_done = {}
    for shard in {s for s, _, _ in a}:
        expected_done.update({k: a[k] for k in [k for k in order if k[0] == shard][:limit]})
    assert done == expected_done
    java_cp = wait_lease_positions(dynamodb, app, last_positions(done), timeout=10)
    mid = [s for s, (q, sub) in java_cp.items() if any(
        k[0] == s and k[1] == q and k[2] > sub for k in a)]
    assert mid, f"no checkpoint inside an aggregate: {java_cp}"
    rest_of_a = {k: v for k, v in a.items() if k not in done}

    # 2. Batch B; the riffle-kcl worker takes the Java KCL's leases and resumes after them.
    b = produce_batch("b", 900)
    worker = GroupWorker(broker, moto, stream_name, app, tmp_path / "riffle-group.jsonl")
    got = worker.wait_count(len(rest_of_a) + len(b))
    time.sleep(2)  # anything re-delivered late would show up now
    got = by_position(worker.records())
    again = [k for k in got
             if (int(k[1]), k[2]) <= (int(java_cp[k[0]][0]), java_cp[k[0]][1])]
    assert again == [], f"re-delivered at or before the Java KCL's checkpoint: {again[:5]}"
    assert got == {**rest_of_a, **b}
    riffle_cp = wait_lease_positions(dynamodb, app, last_positions(b))
    for shard, (seq, sub) in riffle_cp.items():
        assert (int(seq), sub) > (int(java_cp[shard][0]), java_cp[shard][1]), shard
    owners = {l.get("leaseOwner") for l in leases(dynamodb, app).values()}
    assert len(owners) == 1 and not owners & {None, "java-worker"}, owners  # riffle-kcl's now
    worker.stop()
    assert worker.proc.returncode == 0, worker.err.read_text(errors="replace")[-4000:]
    wait_lease_positions(dynamodb, app, last_positions(b), timeout=5)

    # 3. The reverse: batch C, and the Java KCL resumes after riffle-kcl's checkpoints.
    c = produce_batch("c", 600)
    run2 = kcl(stream_name, app, "polling", worker="java-worker-2", name="java2")
    run2.wait_records({(s, q) for s, q, _ in c})
    resumed = {e["shard"]: (e["checkpoint"], e["checkpoint_sub"])
               for e in run2.lines() if e["event"] == "initialize"}
    assert resumed == riffle_cp, resumed
    theirs = kcl_by_position(run2.records())
    assert theirs == c
    owners = {l.get("leaseOwner") for l in leases(dynamodb, app).values()}
    assert owners == {"java-worker-2"}, owners
    code = run2.stop()
    assert_graceful_exit(run2, code)
    wait_lease_positions(dynamodb, app, last_positions(c), timeout=10)
