"""KPL aggregation cross-checked with the `aws-kinesis-agg` library (PyPI), through the real
broker, both ways:

1. records riffle-kpl aggregated and wrote to the broker (the `produce` example) are read with
   boto3 and de-aggregated by `aws_kinesis_agg`: the same data and partition keys, in the
   order they were put, where each record's receipt says;
2. an aggregate built by `aws_kinesis_agg` is written to the broker, read back, and decoded by
   riffle-core's decoder (the `aggregate` example) into the same records; and riffle-core's
   encoder makes the same bytes from the same records.

Quirks of the Python library kept in mind (see ../shared/reference/kpl-kcl.md, 5.1): its
aggregate's partition key is the first record's and it sets no explicit hash key (the KPL uses
"a" and the first record's hash key), it wraps even a single record, and its de-aggregator
gives a record without an explicit hash key the table's first one when the table is not empty
— so explicit hash keys are compared only where they were set.

The Rust examples come from `cargo build --workspace --all-targets` (target/debug/examples).
"""

import json
import os
import random
import subprocess
from pathlib import Path

import pytest

from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import iter_deaggregate_records

from conftest import ACCESS_KEY, REGION, REPO, SECRET_KEY, wait_active

MAX_LOOPS = 200
EXAMPLES = Path(os.environ.get("RIFFLE_EXAMPLES_DIR", REPO / "target" / "debug" / "examples"))


def example(name: str) -> Path:
    path = EXAMPLES / name
    if not path.is_file():
        pytest.fail(f"{path} not found: build it with `cargo build --workspace --all-targets`")
    return path


def read_shard(kinesis, stream, shard_id):
    """Every record of a shard, from TRIM_HORIZON to its tip (bounded)."""
    it = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    out = []
    for _ in range(MAX_LOOPS):
        resp = kinesis.get_records(ShardIterator=it, Limit=10000)
        out += resp["Records"]
        it = resp.get("NextShardIterator")
        if not it or (not resp["Records"] and resp.get("MillisBehindLatest") == 0):
            return out
    raise AssertionError("GetRecords did not reach the tip")


def user_records(record):
    """(partition key, data, sub-sequence number or None, explicit hash key) per user record."""
    out = []
    for r in iter_deaggregate_records([record], data_format="Boto3"):
        k = r["kinesis"]
        if k.get("aggregated"):
            import base64

            out.append((k["partitionKey"], base64.b64decode(k["data"]), k["subSequenceNumber"], k.get("explicitHashKey")))
        else:
            out.append((k["partitionKey"], k["data"], None, None))
    return out


def test_kpl_aggregates_deaggregate_with_aws_kinesis_agg(broker, kinesis, stream_name):
    rng = random.Random(7)
    keys = ["user-1", "user-2", "ключ-3", "ユーザー4", "k" * 256] + [f"key-{i}" for i in range(20)]
    records = []
    for i in range(600):
        pk = rng.choice(keys)
        data = bytes([i % 256]) + f"record {i} ü".encode() + os.urandom(rng.randrange(0, 300))
        ehk = str(rng.randrange(2**128)) if i % 50 == 7 else ""
        records.append((pk, data, ehk))
    stdin = "".join(f"{pk}\t{data.hex()}\t{ehk}\n" for pk, data, ehk in records)
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_REGION=REGION, AWS_EC2_METADATA_DISABLED="true")
    p = subprocess.run(
        [str(example("produce")), "--endpoint", broker.endpoint_url, "--stream", stream_name,
         "--create", "3", "--hex", "--ordered"],
        input=stdin, capture_output=True, text=True, timeout=120, env=env,
    )
    assert p.returncode == 0, p.stderr + p.stdout
    receipts = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["line"] for r in receipts] == list(range(len(records)))
    assert all("error" not in r for r in receipts), receipts

    seen = {}  # (shard, sequence number, sub) -> (pk, data, ehk)
    aggregated = 0
    order = {}  # shard -> [(pk, data)] in the order a consumer reads them
    for shard in kinesis.list_shards(StreamName=stream_name)["Shards"]:
        sid = shard["ShardId"]
        for rec in read_shard(kinesis, stream_name, sid):
            for pk, data, sub, ehk in user_records(rec):
                aggregated += sub is not None
                seen[(sid, rec["SequenceNumber"], sub)] = (pk, data, ehk)
                order.setdefault(sid, []).append((pk, data))
    assert len(seen) == len(records), "every record once"
    assert aggregated > len(records) // 2, "records were aggregated"
    expected_order = {}
    for (pk, data, ehk), r in zip(records, receipts):
        key = (r["shard_id"], r["sequence_number"], r["sub_sequence_number"])
        assert key in seen, f"line {r['line']} is not where its receipt says: {key}"
        got_pk, got_data, got_ehk = seen[key]
        assert (got_pk, got_data) == (pk, data)
        if ehk and r["sub_sequence_number"] is not None:
            assert got_ehk == ehk
        expected_order.setdefault(r["shard_id"], []).append((pk, data))
    # Ordered mode: each shard holds its records in the order they were put.
    assert order == expected_order


def test_an_aws_kinesis_agg_aggregate_decodes_with_riffle_core(broker, kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    wait_active(kinesis, stream_name)
    rng = random.Random(11)
    records = []
    for i in range(200):
        pk = rng.choice(["a", "b", "ключ", f"k{i}"])
        ehk = str(rng.randrange(2**128)) if i % 3 == 0 else None
        records.append((pk, os.urandom(rng.randrange(0, 120)), ehk))
    agg = RecordAggregator()
    for pk, data, ehk in records:
        assert agg.add_user_record(pk, data, ehk) is None, "fits into one aggregate"
    agg_pk, agg_ehk, blob = agg.clear_and_get().get_contents()

    # Our encoder makes the same bytes from the same records.
    stdin = "".join(f"{pk}\t{data.hex()}\t{ehk or ''}\n" for pk, data, ehk in records)
    enc = subprocess.run([str(example("aggregate")), "encode"], input=stdin,
                         capture_output=True, text=True, timeout=60)
    assert enc.returncode == 0, enc.stderr
    assert bytes.fromhex(enc.stdout.strip()) == blob

    # Through the broker, then our decoder.
    put = {"StreamName": stream_name, "Data": blob, "PartitionKey": agg_pk}
    if agg_ehk:
        put["ExplicitHashKey"] = agg_ehk
    kinesis.put_record(**put)
    [rec] = read_shard(kinesis, stream_name, "shardId-000000000000")
    assert rec["Data"] == blob
    dec = subprocess.run([str(example("aggregate")), "decode"], input=rec["Data"].hex(),
                         capture_output=True, text=True, timeout=60)
    assert dec.returncode == 0, dec.stderr
    got = []
    for line in dec.stdout.splitlines():
        pk, ehk, data = line.split("\t")
        got.append((pk, bytes.fromhex(data), None if ehk == "-" else ehk))
    assert got == records

    # Anything else is not an aggregate.
    bad = bytearray(blob)
    bad[-1] ^= 1
    dec = subprocess.run([str(example("aggregate")), "decode"], input=bytes(bad).hex(),
                         capture_output=True, text=True, timeout=60)
    assert dec.returncode == 2
