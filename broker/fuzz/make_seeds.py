#!/usr/bin/env python3
"""Regenerates the generated seed files under seeds/. The other seeds (hand-written JSON
bodies, inputs saved from fuzzing runs) are committed as they are.

Run from anywhere: python3 broker/fuzz/make_seeds.py
"""
import base64, hashlib, hmac, os, struct, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = bytes([0x5A] * 32)  # shard_iterator.rs KEY


def put(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- shard_iterator: mode byte, then payload -------------------------------------------
def it_body(issued, created, shard, pos, name):
    n = name.encode()
    return struct.pack(">BqqIQB", 1, issued, created, shard, pos, len(n)) + n


def signed(body):
    return base64.b64encode(body + hmac.new(KEY, body, hashlib.sha256).digest()[:16])


put("shard_iterator", "valid_token", b"\x00" + signed(it_body(1700000000000, 1600000000000, 3, 42, "orders")))
put("shard_iterator", "garbage_token", b"\x00" + b"AAAA" * 12 + b"not base64!")
put("shard_iterator", "body_ok", b"\x01" + it_body(1, 2, 0, 0, "s"))
put("shard_iterator", "body_bad_len", b"\x01" + it_body(-1, 0, 2**32 - 1, 2**64 - 1, "s.t-u_v")[:-2])
put("shard_iterator", "body_bad_utf8", b"\x01" + struct.pack(">BqqIQB", 1, 0, 0, 0, 0, 2) + b"\xff\xfe")
put("shard_iterator", "structured", b"\x02" + bytes(range(64)))

# --- segment: mode byte, then payload --------------------------------------------------
def body(base, ts, recs):
    out = struct.pack("<QqI", base, ts, len(recs))
    for k, d in recs:
        out += struct.pack("<HI", len(k), len(d)) + k + d
    return out


def frame(b):
    return struct.pack("<II", len(b), zlib.crc32(b)) + b


recs = [(b"k1", b"hello"), (b"", b""), (b"k3", b"\x00\xff")]
b = body(7, 1700000000000, recs)
put("segment", "frame", b"\x00" + frame(b) + frame(body(10, 1700000000001, [(b"a", b"b")])))
put("segment", "frame_torn", b"\x00" + frame(b)[:-3])
put("segment", "segment_header", b"\x00" + b"RIFFLSG1" + struct.pack("<Q", 7) + frame(b))
idx = b"RIFFLIX1" + struct.pack("<I", 1) + struct.pack("<QQq", 7, 16, 1700000000000) + struct.pack("<QQ", 10, 4096)
put("segment", "index", b"\x00" + idx + struct.pack("<I", zlib.crc32(idx)))
put("segment", "body", b"\x01" + b)
put("segment", "body_bad_count", b"\x01" + struct.pack("<QqI", 0, 0, 3) + struct.pack("<HI", 1, 0xFFFFFFFF) + b"k")
put("segment", "index_body", b"\x02" + idx[8:])
# A sealed body (count with the top bit, key id, nonce, forged ciphertext and tag) and an
# authentic sealed batch's plaintext (mode 3: count, then the records section).
put("segment", "sealed_body", b"\x01" + struct.pack("<QqIH", 7, 1700000000000, 0x80000002, 12)
    + b"alias/orders" + bytes(12) + bytes(range(48)))
put("segment", "sealed_plain", b"\x03" + struct.pack("<I", 3) + body(7, 0, recs)[20:])

# --- segment_roundtrip: arbitrary-derived, any bytes work -------------------------------
put("segment_roundtrip", "small", bytes([2, 3, 0, 1, 2, 1, 9, 9, 1, 7, 0, 0, 0, 0, 0, 0, 0, 1]) + b"partitionkeydata" * 4)
put("segment_roundtrip", "ramp", bytes(range(256)))
put("segment_roundtrip", "empty_batch", bytes(48))

# --- core_ids: one string per file ------------------------------------------------------
for name, s in {
    "seq_first": "200000000000000000000000000000000000001",
    "seq_start": "200000000000000000000000000000000000000",
    "seq_max": "200000000039614081257132168796771975167",
    "seq_foreign": "49590338271490256608559692538361571095921575989136588898",
    "shard_full": "shardId-000000000001",
    "shard_short": "foo-bar-2147483647",
    "hash_max": "340282366920938463463374607431768211455",
    "hash_over": "340282366920938463463374607431768211456",
    "stream_arn": "arn:aws:kinesis:us-east-1:000000000000:stream/my.stream_1",
    "consumer_arn": "arn:aws-cn:kinesis:cn-north-1:123456789012:stream/s/consumer/c-1:1700000000",
}.items():
    put("core_ids", name, s.encode())


# --- json_request / cbor_request: operation byte (index in Operation::ALL), then body ----
REGISTER, DESCRIBE_CONSUMER, SUBSCRIBE = 31, 32, 35
PUT_RECORD, PUT_RECORDS, GET_SHARD_ITERATOR, LIST_SHARDS = 24, 25, 26, 5
ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/s"
put("json_request", "register_consumer", bytes([REGISTER]) + ('{"StreamARN":"%s","ConsumerName":"c","Tags":{"a":"b"}}' % ARN).encode())
put("json_request", "subscribe_to_shard", bytes([SUBSCRIBE]) + ('{"ConsumerARN":"%s/consumer/c:1700000000","ShardId":"shardId-000000000000","StartingPosition":{"Type":"AT_TIMESTAMP","Timestamp":1700000000.123}}' % ARN).encode())


def cb_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for ai, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | ai]) + struct.pack(fmt, n)


def cb(v):
    """Minimal CBOR encoder: dict, list, str, bytes, int, float, bool, None, Tag."""
    if v is None:
        return b"\xf6"
    if v is True or v is False:
        return b"\xf5" if v else b"\xf4"
    if isinstance(v, Tag):
        return cb_head(6, v.tag) + cb(v.value)
    if isinstance(v, Indef):
        return b"\xbf" + b"".join(cb(k) + cb(x) for k, x in v.items.items()) + b"\xff"
    if isinstance(v, int):
        return cb_head(0, v) if v >= 0 else cb_head(1, -1 - v)
    if isinstance(v, float):
        return b"\xfb" + struct.pack(">d", v)
    if isinstance(v, bytes):
        return cb_head(2, len(v)) + v
    if isinstance(v, str):
        e = v.encode()
        return cb_head(3, len(e)) + e
    if isinstance(v, list):
        return cb_head(4, len(v)) + b"".join(cb(x) for x in v)
    if isinstance(v, dict):
        return cb_head(5, len(v)) + b"".join(cb(k) + cb(x) for k, x in v.items())
    raise TypeError(v)


class Tag:
    def __init__(self, tag, value):
        self.tag, self.value = tag, value


class Indef:
    def __init__(self, items):
        self.items = items


put("cbor_request", "put_record_java", bytes([PUT_RECORD]) + cb(Indef({"StreamName": "s", "Data": b"\x00\x01\xff", "PartitionKey": "k"})))
put("cbor_request", "put_records", bytes([PUT_RECORDS]) + cb({"StreamARN": ARN, "Records": [{"Data": b"hi", "PartitionKey": "a"}, {"Data": "aGk=", "PartitionKey": "b", "ExplicitHashKey": "1"}]}))
put("cbor_request", "get_shard_iterator_ts_millis", bytes([GET_SHARD_ITERATOR]) + cb({"StreamName": "s", "ShardId": "shardId-000000000000", "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": Tag(1, 1700000000123)}))
put("cbor_request", "list_shards_ts_float", bytes([LIST_SHARDS]) + cb({"StreamName": "s", "StreamCreationTimestamp": Tag(1, 1700000000.5), "ShardFilter": {"Type": "AT_LATEST"}, "MaxResults": 2**64 - 1, "Other": -2**64}))
put("cbor_request", "subscribe", bytes([SUBSCRIBE]) + cb({"ConsumerARN": ARN + "/consumer/c:1", "ShardId": "1", "StartingPosition": {"Type": "AT_TIMESTAMP", "Timestamp": 1700000000123}}))
put("cbor_request", "odd_items", bytes([DESCRIBE_CONSUMER]) + cb({"ConsumerName": Tag(99, "c"), "X": [None, True, 1.5, b"", Tag(1, "x")]}) )
put("cbor_request", "indefinite_strings", bytes([PUT_RECORD]) + b"\xa2" + cb("StreamName") + b"\x7f" + cb("a") + cb("b") + b"\xff" + cb("Data") + b"\x5f" + cb(b"\x01") + cb(b"\x02") + b"\xff")
