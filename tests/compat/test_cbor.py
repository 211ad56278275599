"""Raw CBOR (application/x-amz-cbor-1.1) requests, as the Java SDK sends them by default.

Requests are built with cbor2 and sent with urllib (SigV4-signed by botocore's signer).
Timestamps are CBOR tag 1 with an integer of epoch MILLISECONDS (the Java SDK's convention).
cbor2 would read tag 1 as seconds and build a datetime, so responses are decoded with a
semantic override that keeps tag 1 as a raw CBORTag.
"""

import base64
import time
import urllib.error
import urllib.request

import cbor2
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import ACCESS_KEY, ACCOUNT, REGION, SECRET_KEY

CBOR = "application/x-amz-cbor-1.1"
TARGET = "Kinesis_20131202."
SHARD0 = "shardId-000000000000"
MAX_LOOPS = 100  # bound on every polling loop


def decode(body: bytes):
    """CBOR -> Python, keeping tag 1 as CBORTag(1, value) instead of a datetime."""
    return cbor2.loads(body, semantic_decoders={1: lambda value, _immutable: cbor2.CBORTag(1, value)})


def post(broker, op: str, body: bytes, content_type: str = CBOR):
    """Signed POST of raw bytes; (status, headers, body bytes)."""
    url = broker.endpoint_url + "/"
    headers = {"Content-Type": content_type, "X-Amz-Target": TARGET + op}
    req = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "kinesis", REGION).add_auth(req)
    prepared = req.prepare()
    http_req = urllib.request.Request(
        url, data=body, headers=dict(prepared.headers.items()), method="POST"
    )
    try:
        with urllib.request.urlopen(http_req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


def call(broker, op: str, request: dict):
    """A CBOR call expected to succeed; the decoded response (None for an empty body)."""
    status, headers, body = post(broker, op, cbor2.dumps(request))
    assert status == 200, (op, status, body)
    assert headers.get("Content-Type", "").startswith(CBOR), (op, dict(headers))
    return decode(body) if body else None


def create_active(broker, name: str, shards: int = 1):
    assert call(broker, "CreateStream", {"StreamName": name, "ShardCount": shards}) in (None, {})
    for _ in range(MAX_LOOPS * 3):
        d = call(broker, "DescribeStreamSummary", {"StreamName": name})
        if d["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return d["StreamDescriptionSummary"]
        time.sleep(0.05)
    raise AssertionError(f"stream {name} not ACTIVE")


def assert_ms_timestamp(value, near_ms: int, slack_ms: int = 120_000):
    assert isinstance(value, cbor2.CBORTag), f"a timestamp is CBOR tag 1, got {value!r}"
    assert value.tag == 1, value
    assert isinstance(value.value, int) and not isinstance(value.value, bool), (
        f"tag 1 carries integer epoch milliseconds, got {value.value!r}"
    )
    assert abs(value.value - near_ms) < slack_ms, (
        f"{value.value} ms is not close to {near_ms} ms (seconds sent as milliseconds?)"
    )


def test_cbor_create_put_get_list(broker, stream_name):
    summary = create_active(broker, stream_name)
    assert summary["StreamName"] == stream_name
    assert_ms_timestamp(summary["StreamCreationTimestamp"], int(time.time() * 1000))

    # PutRecords: Data as CBOR byte strings, and once as text, which (as Jackson reads a
    # text string into a byte[]) holds the base64 of the bytes.
    first = [b"\x00\x01binary\xff", b"", bytes(range(256))]
    out = call(broker, "PutRecords", {
        "StreamName": stream_name,
        "Records": [{"Data": d, "PartitionKey": f"pk-{i}"} for i, d in enumerate(first)],
    })
    assert out.get("FailedRecordCount", 0) == 0, out
    assert len(out["Records"]) == 3
    seqs = [r["SequenceNumber"] for r in out["Records"]]
    assert all(r["ShardId"] == SHARD0 for r in out["Records"]), out

    out = call(broker, "PutRecord", {
        "StreamName": stream_name, "Data": b"single", "PartitionKey": "k",
    })
    seqs.append(out["SequenceNumber"])
    out = call(broker, "PutRecords", {
        "StreamName": stream_name,
        "Records": [{"Data": base64.b64encode(b"text-data").decode(), "PartitionKey": "pk-text"}],
    })
    assert out.get("FailedRecordCount", 0) == 0, out
    seqs.append(out["Records"][0]["SequenceNumber"])
    sent = first + [b"single", b"text-data"]

    # A record written later, so AT_TIMESTAMP has something to skip.
    time.sleep(1.2)
    boundary_ms = int(time.time() * 1000)
    time.sleep(0.05)
    out = call(broker, "PutRecord", {"StreamName": stream_name, "Data": b"late", "PartitionKey": "k"})
    late_seq = out["SequenceNumber"]

    # GetRecords from TRIM_HORIZON: Data comes back as byte strings, equal to what was sent.
    it = call(broker, "GetShardIterator", {
        "StreamName": stream_name, "ShardId": SHARD0, "ShardIteratorType": "TRIM_HORIZON",
    })["ShardIterator"]
    got = call(broker, "GetRecords", {"ShardIterator": it, "Limit": 100})
    records = got["Records"]
    assert [r["SequenceNumber"] for r in records] == seqs + [late_seq]
    for r, want in zip(records, sent + [b"late"]):
        assert isinstance(r["Data"], bytes), f"Data must be a CBOR byte string: {r['Data']!r}"
        assert r["Data"] == want
    now_ms = int(time.time() * 1000)
    for r in records:
        assert_ms_timestamp(r["ApproximateArrivalTimestamp"], now_ms)
    assert records[-1]["ApproximateArrivalTimestamp"].value >= boundary_ms
    assert records[-2]["ApproximateArrivalTimestamp"].value < boundary_ms
    assert got["MillisBehindLatest"] == 0
    assert isinstance(got["NextShardIterator"], str)

    # GetShardIterator AT_TIMESTAMP with tag 1 + integer milliseconds.
    it = call(broker, "GetShardIterator", {
        "StreamName": stream_name, "ShardId": SHARD0, "ShardIteratorType": "AT_TIMESTAMP",
        "Timestamp": cbor2.CBORTag(1, boundary_ms),
    })["ShardIterator"]
    got = call(broker, "GetRecords", {"ShardIterator": it})
    assert [r["SequenceNumber"] for r in got["Records"]] == [late_seq], got
    assert got["Records"][0]["Data"] == b"late"

    # ListShards.
    shards = call(broker, "ListShards", {"StreamName": stream_name})["Shards"]
    assert [s["ShardId"] for s in shards] == [SHARD0]
    hk = shards[0]["HashKeyRange"]
    assert (hk["StartingHashKey"], hk["EndingHashKey"]) == ("0", str(2**128 - 1))
    assert "EndingSequenceNumber" not in shards[0]["SequenceNumberRange"]


def test_cbor_error_is_a_cbor_map(broker):
    status, headers, body = post(broker, "DescribeStream", cbor2.dumps({"StreamName": "nope-cbor"}))
    assert status == 400, body
    assert headers.get("Content-Type", "").startswith(CBOR), dict(headers)
    assert headers.get("x-amzn-RequestId"), dict(headers)
    doc = decode(body)
    assert isinstance(doc, dict), body
    assert doc["__type"] == "ResourceNotFoundException", doc
    assert doc["message"] == f"Stream nope-cbor under account {ACCOUNT} not found.", doc


def test_cbor_malformed_body_is_a_serialization_exception(broker):
    # A map announcing 5 pairs, then a text string cut short.
    for bad in (b"\xa5\x6aStreamN", b"\xff\xff\xff", b"\x1f"):
        status, headers, body = post(broker, "DescribeStream", bad)
        assert status == 400, (bad, status, body)
        assert headers.get("Content-Type", "").startswith(CBOR), dict(headers)
        doc = decode(body)
        assert doc["__type"].split("#")[-1] == "SerializationException", (bad, doc)
