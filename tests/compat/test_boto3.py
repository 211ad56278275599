"""boto3 against the real broker: the calls an application makes, checked the way AWS answers."""

import base64
import datetime as dt
import hashlib
import json
import time
import urllib.error
import urllib.request

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, ACCOUNT, REGION, SECRET_KEY, wait_active

MAX_HASH = 2**128 - 1
MAX_LOOPS = 50  # upper bound on any GetRecords loop


# ---------------------------------------------------------------- helpers


def create(kinesis, name, shards):
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )


def all_shards(kinesis, name):
    shards, token = [], None
    for _ in range(MAX_LOOPS):
        resp = (
            kinesis.list_shards(NextToken=token)
            if token
            else kinesis.list_shards(StreamName=name)
        )
        shards += resp["Shards"]
        token = resp.get("NextToken")
        if not token:
            return shards
    raise AssertionError("ListShards kept returning NextToken")


def open_shards(shards):
    return [s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]


def md5_hash_key(pk: str) -> int:
    return int(hashlib.md5(pk.encode("utf-8")).hexdigest(), 16)


def shard_for(shards, hash_key: int) -> str:
    """The open shard whose HashKeyRange contains hash_key."""
    hits = [
        s["ShardId"]
        for s in open_shards(shards)
        if int(s["HashKeyRange"]["StartingHashKey"])
        <= hash_key
        <= int(s["HashKeyRange"]["EndingHashKey"])
    ]
    assert len(hits) == 1, f"hash key {hash_key} is in {hits}"
    return hits[0]


def read_until_caught_up(kinesis, iterator, expect=None):
    """GetRecords until no records come back and MillisBehindLatest is 0 (or the shard
    ends); bounded. Returns (records, last response)."""
    records, resp = [], None
    for _ in range(MAX_LOOPS):
        resp = kinesis.get_records(ShardIterator=iterator)
        records += resp["Records"]
        iterator = resp.get("NextShardIterator")
        if iterator is None:
            return records, resp
        if expect is not None and len(records) >= expect and not resp["Records"]:
            return records, resp
        if expect is None and not resp["Records"] and resp.get("MillisBehindLatest") == 0:
            return records, resp
    raise AssertionError(f"still reading after {MAX_LOOPS} GetRecords calls ({len(records)} records)")


def read_to_end(kinesis, iterator):
    """GetRecords on a closed shard until NextShardIterator is absent; bounded."""
    records, responses = [], []
    for _ in range(MAX_LOOPS):
        resp = kinesis.get_records(ShardIterator=iterator)
        responses.append(resp)
        records += resp["Records"]
        iterator = resp.get("NextShardIterator")
        if iterator is None:
            return records, resp, responses
    raise AssertionError(f"closed shard not ended after {MAX_LOOPS} GetRecords calls")


def trim_horizon(kinesis, name, shard_id):
    return kinesis.get_shard_iterator(
        StreamName=name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]


def client_error(excinfo):
    err = excinfo.value.response
    return (
        err["Error"]["Code"],
        err["ResponseMetadata"]["HTTPStatusCode"],
        err["Error"].get("Message"),
    )


# ---------------------------------------------------------------- control plane


def test_create_and_describe(kinesis, stream_name):
    create(kinesis, stream_name, 2)
    arn = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream_name}"

    d = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]
    assert d["StreamName"] == stream_name
    assert d["StreamARN"] == arn
    assert d["StreamStatus"] == "ACTIVE"
    assert d["HasMoreShards"] is False
    assert d["RetentionPeriodHours"] == 24
    assert isinstance(d["StreamCreationTimestamp"], dt.datetime)
    assert d["EncryptionType"] == "NONE"
    assert d["EnhancedMonitoring"] == [{"ShardLevelMetrics": []}]
    assert d["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    shards = d["Shards"]
    assert [s["ShardId"] for s in shards] == ["shardId-000000000000", "shardId-000000000001"]
    half = 2**127
    assert shards[0]["HashKeyRange"] == {
        "StartingHashKey": "0",
        "EndingHashKey": str(half - 1),
    }
    assert shards[1]["HashKeyRange"] == {
        "StartingHashKey": str(half),
        "EndingHashKey": str(MAX_HASH),
    }
    for s in shards:
        assert "ParentShardId" not in s
        assert int(s["SequenceNumberRange"]["StartingSequenceNumber"]) >= 0
        assert "EndingSequenceNumber" not in s["SequenceNumberRange"]

    summ = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
    assert summ["StreamName"] == stream_name
    assert summ["StreamARN"] == arn
    assert summ["StreamStatus"] == "ACTIVE"
    assert summ["OpenShardCount"] == 2
    assert summ["RetentionPeriodHours"] == 24
    assert summ["ConsumerCount"] == 0
    assert summ["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert summ["EncryptionType"] == "NONE"

    # DescribeStreamSummary by ARN names the same stream.
    by_arn = kinesis.describe_stream_summary(StreamARN=arn)["StreamDescriptionSummary"]
    assert by_arn["StreamName"] == stream_name

    listed = kinesis.list_streams()
    assert stream_name in listed["StreamNames"]
    assert listed["HasMoreStreams"] is False
    summaries = {s["StreamName"]: s for s in listed["StreamSummaries"]}
    assert summaries[stream_name]["StreamARN"] == arn
    assert summaries[stream_name]["StreamStatus"] == "ACTIVE"
    assert summaries[stream_name]["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}

    ls = kinesis.list_shards(StreamName=stream_name)
    assert [s["ShardId"] for s in ls["Shards"]] == [s["ShardId"] for s in shards]
    assert [s["HashKeyRange"] for s in ls["Shards"]] == [s["HashKeyRange"] for s in shards]
    assert "NextToken" not in ls

    # Paging ListShards one shard at a time.
    page = kinesis.list_shards(StreamName=stream_name, MaxResults=1)
    assert [s["ShardId"] for s in page["Shards"]] == ["shardId-000000000000"]
    page2 = kinesis.list_shards(NextToken=page["NextToken"], MaxResults=1)
    assert [s["ShardId"] for s in page2["Shards"]] == ["shardId-000000000001"]

    # Paging ListStreams one name at a time reaches this stream.
    names, kwargs = [], {"Limit": 1}
    for _ in range(MAX_LOOPS):
        page = kinesis.list_streams(**kwargs)
        assert len(page["StreamNames"]) <= 1
        names += page["StreamNames"]
        if not page["HasMoreStreams"]:
            break
        kwargs = {"Limit": 1, "NextToken": page["NextToken"]}
    assert stream_name in names

    kinesis.delete_stream(StreamName=stream_name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            kinesis.describe_stream_summary(StreamName=stream_name)
        except ClientError as e:
            assert e.response["Error"]["Code"] == "ResourceNotFoundException"
            break
        time.sleep(0.05)
    else:
        raise AssertionError("stream still there 30 s after DeleteStream")


def test_tags(kinesis, stream_name):
    create(kinesis, stream_name, 1)
    kinesis.add_tags_to_stream(StreamName=stream_name, Tags={"env": "test", "team": "riffle"})
    resp = kinesis.list_tags_for_stream(StreamName=stream_name)
    assert sorted((t["Key"], t["Value"]) for t in resp["Tags"]) == [
        ("env", "test"),
        ("team", "riffle"),
    ]
    assert resp["HasMoreTags"] is False

    # Overwriting a value keeps one tag per key.
    kinesis.add_tags_to_stream(StreamName=stream_name, Tags={"env": "prod"})
    resp = kinesis.list_tags_for_stream(StreamName=stream_name)
    assert sorted((t["Key"], t["Value"]) for t in resp["Tags"]) == [
        ("env", "prod"),
        ("team", "riffle"),
    ]

    kinesis.remove_tags_from_stream(StreamName=stream_name, TagKeys=["env"])
    resp = kinesis.list_tags_for_stream(StreamName=stream_name)
    assert resp["Tags"] == [{"Key": "team", "Value": "riffle"}]
    assert resp["HasMoreTags"] is False


def test_retention(kinesis, stream_name):
    create(kinesis, stream_name, 1)
    kinesis.increase_stream_retention_period(StreamName=stream_name, RetentionPeriodHours=48)
    s = wait_active(kinesis, stream_name)
    assert s["RetentionPeriodHours"] == 48
    kinesis.decrease_stream_retention_period(StreamName=stream_name, RetentionPeriodHours=24)
    s = wait_active(kinesis, stream_name)
    assert s["RetentionPeriodHours"] == 24
    d = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]
    assert d["RetentionPeriodHours"] == 24


# ---------------------------------------------------------------- data plane


def test_put_record_routes_by_md5(kinesis, stream_name):
    create(kinesis, stream_name, 2)
    shards = all_shards(kinesis, stream_name)
    seen = set()
    for i in range(40):
        pk = f"pk-{i}"
        resp = kinesis.put_record(StreamName=stream_name, PartitionKey=pk, Data=f"v{i}".encode())
        assert resp["ShardId"] == shard_for(shards, md5_hash_key(pk)), pk
        assert int(resp["SequenceNumber"]) > 0
        assert resp.get("EncryptionType", "NONE") == "NONE"
        seen.add(resp["ShardId"])
    assert seen == {"shardId-000000000000", "shardId-000000000001"}

    # ExplicitHashKey overrides the partition key's hash.
    resp = kinesis.put_record(
        StreamName=stream_name, PartitionKey="pk-0", Data=b"x", ExplicitHashKey=str(MAX_HASH)
    )
    assert resp["ShardId"] == "shardId-000000000001"
    resp = kinesis.put_record(
        StreamName=stream_name, PartitionKey="pk-0", Data=b"x", ExplicitHashKey="0"
    )
    assert resp["ShardId"] == "shardId-000000000000"


def test_put_records_500_and_read_back_in_order(kinesis, stream_name):
    create(kinesis, stream_name, 2)
    shards = all_shards(kinesis, stream_name)
    entries = [
        {
            "PartitionKey": f"key-{i % 37}",
            "Data": f"record-{i}".encode() + b"\x00\xff" + bytes([i % 256]),
        }
        for i in range(500)
    ]
    resp = kinesis.put_records(StreamName=stream_name, Records=entries)
    assert resp["FailedRecordCount"] == 0
    assert len(resp["Records"]) == 500

    expected = {s["ShardId"]: [] for s in shards}
    for entry, result in zip(entries, resp["Records"]):
        assert "ErrorCode" not in result, result
        assert result["ShardId"] == shard_for(shards, md5_hash_key(entry["PartitionKey"]))
        expected[result["ShardId"]].append(
            (result["SequenceNumber"], entry["PartitionKey"], entry["Data"])
        )

    for shard_id, want in expected.items():
        # Sequence numbers grow within a shard in request order.
        seqs = [int(s) for s, _, _ in want]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        got, _ = read_until_caught_up(
            kinesis, trim_horizon(kinesis, stream_name, shard_id), expect=len(want)
        )
        assert [(r["SequenceNumber"], r["PartitionKey"], r["Data"]) for r in got] == want
        for r in got:
            assert isinstance(r["ApproximateArrivalTimestamp"], dt.datetime)


def test_binary_data_is_byte_exact(kinesis, stream_name):
    create(kinesis, stream_name, 1)
    payloads = [b"\x00\xff", bytes(range(256)), b"\x00", b"\xff" * 1000, "é ✓".encode()]
    for p in payloads:
        kinesis.put_record(StreamName=stream_name, PartitionKey="k", Data=p)
    got, _ = read_until_caught_up(
        kinesis, trim_horizon(kinesis, stream_name, "shardId-000000000000"), expect=len(payloads)
    )
    assert [r["Data"] for r in got] == payloads


def test_iterator_types(kinesis, stream_name):
    create(kinesis, stream_name, 1)
    shard = "shardId-000000000000"
    first = [kinesis.put_record(StreamName=stream_name, PartitionKey="k", Data=d)
             for d in (b"a0", b"a1", b"a2")]

    # AFTER_SEQUENCE_NUMBER and AT_SEQUENCE_NUMBER.
    it = kinesis.get_shard_iterator(
        StreamName=stream_name, ShardId=shard, ShardIteratorType="AFTER_SEQUENCE_NUMBER",
        StartingSequenceNumber=first[0]["SequenceNumber"],
    )["ShardIterator"]
    got, _ = read_until_caught_up(kinesis, it, expect=2)
    assert [r["Data"] for r in got] == [b"a1", b"a2"]
    it = kinesis.get_shard_iterator(
        StreamName=stream_name, ShardId=shard, ShardIteratorType="AT_SEQUENCE_NUMBER",
        StartingSequenceNumber=first[1]["SequenceNumber"],
    )["ShardIterator"]
    got, _ = read_until_caught_up(kinesis, it, expect=2)
    assert [r["Data"] for r in got] == [b"a1", b"a2"]

    # LATEST sees only what comes after it.
    latest = kinesis.get_shard_iterator(
        StreamName=stream_name, ShardId=shard, ShardIteratorType="LATEST"
    )["ShardIterator"]

    # AT_TIMESTAMP with a datetime: gaps over a second either side, so the result does not
    # depend on whether the timestamp travels with second or millisecond precision.
    time.sleep(1.2)
    ts = dt.datetime.now(dt.timezone.utc)
    time.sleep(1.2)
    kinesis.put_record(StreamName=stream_name, PartitionKey="k", Data=b"b0")
    kinesis.put_record(StreamName=stream_name, PartitionKey="k", Data=b"b1")

    it = kinesis.get_shard_iterator(
        StreamName=stream_name, ShardId=shard, ShardIteratorType="AT_TIMESTAMP", Timestamp=ts
    )["ShardIterator"]
    got, _ = read_until_caught_up(kinesis, it, expect=2)
    assert [r["Data"] for r in got] == [b"b0", b"b1"]
    for r in got:
        assert r["ApproximateArrivalTimestamp"] >= ts - dt.timedelta(seconds=1)

    got, _ = read_until_caught_up(kinesis, latest, expect=2)
    assert [r["Data"] for r in got] == [b"b0", b"b1"]

    # A timestamp in the future is refused, as AWS does.
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    with pytest.raises(ClientError) as e:
        kinesis.get_shard_iterator(
            StreamName=stream_name, ShardId=shard, ShardIteratorType="AT_TIMESTAMP",
            Timestamp=future,
        )
    code, status, message = client_error(e)
    assert (code, status) == ("InvalidArgumentException", 400)
    assert message.startswith(
        "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis."
    ), message

    # GetRecords Limit.
    it = trim_horizon(kinesis, stream_name, shard)
    resp = kinesis.get_records(ShardIterator=it, Limit=2)
    assert [r["Data"] for r in resp["Records"]] == [b"a0", b"a1"]
    resp = kinesis.get_records(ShardIterator=resp["NextShardIterator"], Limit=2)
    assert [r["Data"] for r in resp["Records"]] == [b"a2", b"b0"]


def test_split_and_merge(kinesis, stream_name):
    create(kinesis, stream_name, 1)
    parent = "shardId-000000000000"
    before = [f"before-{i}".encode() for i in range(5)]
    for d in before:
        kinesis.put_record(StreamName=stream_name, PartitionKey=d.decode(), Data=d)

    kinesis.split_shard(
        StreamName=stream_name, ShardToSplit=parent, NewStartingHashKey=str(2**127)
    )
    wait_active(kinesis, stream_name)
    shards = {s["ShardId"]: s for s in all_shards(kinesis, stream_name)}
    assert set(shards) == {parent, "shardId-000000000001", "shardId-000000000002"}
    assert "EndingSequenceNumber" in shards[parent]["SequenceNumberRange"]
    left, right = shards["shardId-000000000001"], shards["shardId-000000000002"]
    assert left["ParentShardId"] == parent and right["ParentShardId"] == parent
    assert left["HashKeyRange"] == {"StartingHashKey": "0", "EndingHashKey": str(2**127 - 1)}
    assert right["HashKeyRange"] == {"StartingHashKey": str(2**127), "EndingHashKey": str(MAX_HASH)}
    assert kinesis.describe_stream_summary(StreamName=stream_name)[
        "StreamDescriptionSummary"]["OpenShardCount"] == 2

    # New writes go to the children.
    after = {}
    for i in range(10):
        pk = f"after-{i}"
        r = kinesis.put_record(StreamName=stream_name, PartitionKey=pk, Data=pk.encode())
        assert r["ShardId"] == shard_for(list(shards.values()), md5_hash_key(pk))
        after.setdefault(r["ShardId"], []).append(pk.encode())

    # The closed parent reads to its end: all its records, then no NextShardIterator and
    # the children listed in ChildShards.
    records, last, _ = read_to_end(kinesis, trim_horizon(kinesis, stream_name, parent))
    assert [r["Data"] for r in records] == before
    assert "NextShardIterator" not in last
    children = sorted(last["ChildShards"], key=lambda c: c["ShardId"])
    assert [c["ShardId"] for c in children] == ["shardId-000000000001", "shardId-000000000002"]
    for c in children:
        assert c["ParentShards"] == [parent]
        assert c["HashKeyRange"] == shards[c["ShardId"]]["HashKeyRange"]

    for child, want in after.items():
        got, _ = read_until_caught_up(kinesis, trim_horizon(kinesis, stream_name, child),
                                      expect=len(want))
        assert [r["Data"] for r in got] == want

    # Merge the two children back into one.
    kinesis.merge_shards(
        StreamName=stream_name,
        ShardToMerge="shardId-000000000001",
        AdjacentShardToMerge="shardId-000000000002",
    )
    wait_active(kinesis, stream_name)
    shards = {s["ShardId"]: s for s in all_shards(kinesis, stream_name)}
    assert set(shards) == {parent, "shardId-000000000001", "shardId-000000000002",
                           "shardId-000000000003"}
    merged = shards["shardId-000000000003"]
    assert merged["ParentShardId"] == "shardId-000000000001"
    assert merged["AdjacentParentShardId"] == "shardId-000000000002"
    assert merged["HashKeyRange"] == {"StartingHashKey": "0", "EndingHashKey": str(MAX_HASH)}
    assert [s["ShardId"] for s in open_shards(list(shards.values()))] == ["shardId-000000000003"]

    r = kinesis.put_record(StreamName=stream_name, PartitionKey="merged", Data=b"m")
    assert r["ShardId"] == "shardId-000000000003"

    for child, want in (("shardId-000000000001", after.get("shardId-000000000001", [])),
                        ("shardId-000000000002", after.get("shardId-000000000002", []))):
        records, last, _ = read_to_end(kinesis, trim_horizon(kinesis, stream_name, child))
        assert [r["Data"] for r in records] == want
        assert "NextShardIterator" not in last
        assert len(last["ChildShards"]) == 1
        c = last["ChildShards"][0]
        assert c["ShardId"] == "shardId-000000000003"
        assert sorted(c["ParentShards"]) == ["shardId-000000000001", "shardId-000000000002"]
        assert c["HashKeyRange"] == merged["HashKeyRange"]

    got, _ = read_until_caught_up(
        kinesis, trim_horizon(kinesis, stream_name, "shardId-000000000003"), expect=1
    )
    assert [r["Data"] for r in got] == [b"m"]


def test_update_shard_count(kinesis, stream_name):
    create(kinesis, stream_name, 2)
    resp = kinesis.update_shard_count(
        StreamName=stream_name, TargetShardCount=4, ScalingType="UNIFORM_SCALING"
    )
    assert resp["StreamName"] == stream_name
    assert resp["CurrentShardCount"] == 2
    assert resp["TargetShardCount"] == 4
    assert resp["StreamARN"] == f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream_name}"
    summary = wait_active(kinesis, stream_name)
    assert summary["OpenShardCount"] == 4

    opened = sorted(
        open_shards(all_shards(kinesis, stream_name)),
        key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]),
    )
    assert len(opened) == 4
    # The open shards cover the whole hash key space, without gaps or overlaps.
    assert opened[0]["HashKeyRange"]["StartingHashKey"] == "0"
    assert opened[-1]["HashKeyRange"]["EndingHashKey"] == str(MAX_HASH)
    for a, b in zip(opened, opened[1:]):
        assert int(a["HashKeyRange"]["EndingHashKey"]) + 1 == int(b["HashKeyRange"]["StartingHashKey"])
    for i in range(20):
        pk = f"k{i}"
        r = kinesis.put_record(StreamName=stream_name, PartitionKey=pk, Data=b"x")
        assert r["ShardId"] == shard_for(opened, md5_hash_key(pk))


# ---------------------------------------------------------------- errors


def test_error_stream_not_found(kinesis):
    with pytest.raises(ClientError) as e:
        kinesis.describe_stream(StreamName="nope")
    assert client_error(e) == (
        "ResourceNotFoundException", 400, "Stream nope under account 000000000000 not found."
    )
    with pytest.raises(ClientError) as e:
        kinesis.put_record(StreamName="nope", PartitionKey="k", Data=b"x")
    assert client_error(e) == (
        "ResourceNotFoundException", 400, "Stream nope under account 000000000000 not found."
    )


def test_error_create_existing(kinesis, stream_name):
    create(kinesis, stream_name, 1)
    with pytest.raises(ClientError) as e:
        kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    assert client_error(e) == (
        "ResourceInUseException", 400,
        f"Stream {stream_name} under account 000000000000 already exists.",
    )


def test_error_validation(kinesis, stream_name):
    create(kinesis, stream_name, 1)
    pk = "p" * 257
    with pytest.raises(ClientError) as e:
        kinesis.put_record(StreamName=stream_name, PartitionKey=pk, Data=b"x")
    assert client_error(e) == (
        "ValidationException", 400,
        f"1 validation error detected: Value '{pk}' at 'partitionKey' failed to satisfy "
        "constraint: Member must have length less than or equal to 256",
    )

    records = [{"PartitionKey": "k", "Data": b"x"}] * 501
    with pytest.raises(ClientError) as e:
        kinesis.put_records(StreamName=stream_name, Records=records)
    code, status, message = client_error(e)
    assert (code, status) == ("ValidationException", 400)
    assert message.startswith("1 validation error detected: Value '")
    assert message.endswith(
        "' at 'records' failed to satisfy constraint: "
        "Member must have length less than or equal to 500"
    )


def test_error_invalid_argument(kinesis, stream_name):
    create(kinesis, stream_name, 1)
    bad = "340282366920938463463374607431768211456"  # 2**128
    with pytest.raises(ClientError) as e:
        kinesis.put_record(StreamName=stream_name, PartitionKey="k", Data=b"x", ExplicitHashKey=bad)
    assert client_error(e) == (
        "InvalidArgumentException", 400,
        "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. "
        f"Specified value was {bad}",
    )

    # A real iterator with one byte changed, and one made up outright.
    real = trim_horizon(kinesis, stream_name, "shardId-000000000000")
    raw = bytearray(base64.b64decode(real))
    raw[len(raw) // 2] ^= 0x01
    forged = base64.b64encode(bytes(raw)).decode()
    made_up = base64.b64encode(b"riffle-forged-iterator-" * 4).decode()
    for it in (forged, made_up):
        with pytest.raises(ClientError) as e:
            kinesis.get_records(ShardIterator=it)
        code, status, message = client_error(e)
        assert (code, status) == ("InvalidArgumentException", 400), it
        assert "ShardIterator" in message, message

    # The untouched iterator still works.
    assert kinesis.get_records(ShardIterator=real)["Records"] == []


# ---------------------------------------------------------------- raw HTTP


def _signed_post(broker, target, body: bytes):
    url = broker.endpoint_url + "/"
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": target,
    }
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


def _assert_common_headers(headers):
    assert headers.get("x-amzn-RequestId"), dict(headers)
    assert headers.get("Date"), dict(headers)
    # Date is an HTTP date.
    from email.utils import parsedate_to_datetime
    parsedate_to_datetime(headers["Date"])


def test_raw_unknown_operation(broker):
    status, headers, body = _signed_post(broker, "Kinesis_20131202.NoSuchOperation", b"{}")
    assert status == 400
    _assert_common_headers(headers)
    doc = json.loads(body)
    assert doc["__type"] == "UnknownOperationException"


def test_raw_malformed_json(broker):
    status, headers, body = _signed_post(broker, "Kinesis_20131202.ListStreams", b'{"Limit": ')
    assert status == 400
    _assert_common_headers(headers)
    doc = json.loads(body)
    assert doc["__type"] == "SerializationException"


def test_raw_success_headers(broker):
    status, headers, body = _signed_post(broker, "Kinesis_20131202.ListStreams", b"{}")
    assert status == 200
    _assert_common_headers(headers)
    assert headers.get("Content-Type", "").startswith("application/x-amz-json-1.1")
    doc = json.loads(body)
    assert isinstance(doc["StreamNames"], list)
