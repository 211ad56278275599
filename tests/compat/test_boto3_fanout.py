"""Enhanced fan-out with boto3: SubscribeToShard as a chunked HTTP/1.1 event stream.

botocore consumes the `initial-response` event itself; the EventStream then yields
SubscribeToShardEvent dicts.
"""

import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, REGION, SECRET_KEY, wait_active

SHARD0 = "shardId-000000000000"
EVENT_DEADLINE_S = 20.0
MAX_EVENTS = 200


@pytest.fixture
def fanout_client(broker):
    """A client whose socket read timeout bounds every wait for an event."""
    return boto3.client(
        "kinesis",
        endpoint_url=broker.endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=10,
                      read_timeout=15),
    )


def register_active(kinesis, stream_arn, name):
    arn = kinesis.register_stream_consumer(StreamARN=stream_arn, ConsumerName=name)[
        "Consumer"]["ConsumerARN"]
    assert arn.startswith(f"{stream_arn}/consumer/{name}:"), arn
    for _ in range(300):
        d = kinesis.describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"]
        if d["ConsumerStatus"] == "ACTIVE":
            return arn
        time.sleep(0.05)
    raise AssertionError(f"consumer {name} not ACTIVE")


def test_boto3_subscribe_to_shard(fanout_client, stream_name):
    kinesis = fanout_client
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    summary = wait_active(kinesis, stream_name)
    consumer = register_active(kinesis, summary["StreamARN"], "py-reader")

    resp = kinesis.subscribe_to_shard(
        ConsumerARN=consumer, ShardId=SHARD0, StartingPosition={"Type": "LATEST"}
    )
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["ResponseMetadata"]["HTTPHeaders"].get("content-type") == \
        "application/vnd.amazon.eventstream"
    assert resp["ResponseMetadata"]["HTTPHeaders"].get("transfer-encoding") == "chunked"
    stream = resp["EventStream"]
    try:
        # An immediate second subscription of the same consumer to the shard is refused.
        with pytest.raises(ClientError) as err:
            kinesis.subscribe_to_shard(
                ConsumerARN=consumer, ShardId=SHARD0, StartingPosition={"Type": "LATEST"}
            )
        assert err.value.response["Error"]["Code"] == "ResourceInUseException"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

        want = [f"py-{i:03d}".encode() for i in range(25)]
        seqs = [
            kinesis.put_record(StreamName=stream_name, PartitionKey=f"k{i % 3}", Data=d)[
                "SequenceNumber"]
            for i, d in enumerate(want)
        ]

        got, events = [], 0
        deadline = time.monotonic() + EVENT_DEADLINE_S
        for event in stream:
            events += 1
            assert "SubscribeToShardEvent" in event, event
            ev = event["SubscribeToShardEvent"]
            assert ev["ContinuationSequenceNumber"], ev
            assert ev["MillisBehindLatest"] >= 0
            got += ev["Records"]
            if len(got) >= len(want):
                break
            assert events < MAX_EVENTS and time.monotonic() < deadline, (
                f"{len(got)} of {len(want)} records after {events} events"
            )
        assert [r["Data"] for r in got] == want
        assert [r["SequenceNumber"] for r in got] == seqs
        for r in got:
            # botocore parses the JSON epoch seconds into a datetime.
            assert abs(r["ApproximateArrivalTimestamp"].timestamp() - time.time()) < 120
    finally:
        stream.close()
