"""The AWS CLI (v1) against the real broker.

CLI v1 sends `--data` text as the record's bytes and prints blobs base64-encoded, so the
Data read back by `get-records` is the base64 of what was passed to `put-record`.
"""

import base64
import time

from conftest import ACCOUNT, REGION


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.json()


def wait_active_cli(aws_cli, name, timeout=30.0):
    """Polls describe-stream-summary (`wait stream-exists` polls every 10 s); bounded."""
    deadline = time.monotonic() + timeout
    while True:
        s = ok(aws_cli("describe-stream-summary", "--stream-name", name))
        status = s["StreamDescriptionSummary"]["StreamStatus"]
        if status == "ACTIVE":
            return s["StreamDescriptionSummary"]
        assert time.monotonic() < deadline, f"{name} still {status} after {timeout}s"
        time.sleep(0.1)


def test_cli_stream_lifecycle(aws_cli, stream_name):
    assert ok(aws_cli("create-stream", "--stream-name", stream_name, "--shard-count", "1")) is None
    summary = wait_active_cli(aws_cli, stream_name)
    assert summary["OpenShardCount"] == 1
    assert summary["StreamARN"] == f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream_name}"

    payloads = ["hello world", "second record"]
    puts = []
    for p in payloads:
        r = ok(aws_cli("put-record", "--stream-name", stream_name,
                       "--partition-key", "pk-1", "--data", p))
        assert r["ShardId"] == "shardId-000000000000"
        assert int(r["SequenceNumber"]) > 0
        puts.append(r)

    it = ok(aws_cli("get-shard-iterator", "--stream-name", stream_name,
                    "--shard-id", "shardId-000000000000",
                    "--shard-iterator-type", "TRIM_HORIZON"))["ShardIterator"]
    records = []
    for _ in range(10):
        resp = ok(aws_cli("get-records", "--shard-iterator", it))
        records += resp["Records"]
        it = resp.get("NextShardIterator")
        if len(records) >= len(payloads) or it is None:
            break
    assert [r["Data"] for r in records] == [
        base64.b64encode(p.encode()).decode() for p in payloads
    ]
    assert [r["SequenceNumber"] for r in records] == [p["SequenceNumber"] for p in puts]
    assert all(r["PartitionKey"] == "pk-1" for r in records)

    listed = ok(aws_cli("list-streams"))
    assert stream_name in listed["StreamNames"]

    desc = ok(aws_cli("describe-stream", "--stream-name", stream_name))["StreamDescription"]
    assert desc["StreamName"] == stream_name
    assert desc["StreamStatus"] == "ACTIVE"
    assert [s["ShardId"] for s in desc["Shards"]] == ["shardId-000000000000"]
    assert desc["Shards"][0]["HashKeyRange"] == {
        "StartingHashKey": "0", "EndingHashKey": str(2**128 - 1)
    }

    assert ok(aws_cli("delete-stream", "--stream-name", stream_name)) is None
    deadline = time.monotonic() + 30
    while True:
        r = aws_cli("describe-stream-summary", "--stream-name", stream_name)
        if r.returncode != 0:
            assert "ResourceNotFoundException" in r.stderr, r.stderr
            break
        assert time.monotonic() < deadline, "stream still there 30 s after delete-stream"
        time.sleep(0.1)
    assert stream_name not in ok(aws_cli("list-streams"))["StreamNames"]


def test_cli_missing_stream(aws_cli):
    r = aws_cli("describe-stream", "--stream-name", "nope")
    assert r.returncode != 0
    assert "ResourceNotFoundException" in r.stderr, r.stderr
    assert "Stream nope under account 000000000000 not found." in r.stderr, r.stderr
