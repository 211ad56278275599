// The AWS SDK for JavaScript v3 against a running riffle-broker.
//
// Starts nothing itself: the broker's endpoint comes from RIFFLE_ENDPOINT
// (e.g. http://127.0.0.1:4567). On http:// the Kinesis client speaks HTTP/2
// with prior knowledge (h2c) through NodeHttp2Handler, for SubscribeToShard
// and every other operation.
//
//   RIFFLE_ENDPOINT=http://127.0.0.1:4567 node --test tests/compat/js/kinesis.test.mjs

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

import {
  CreateStreamCommand,
  DescribeStreamConsumerCommand,
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  KinesisClient,
  PutRecordCommand,
  PutRecordsCommand,
  RegisterStreamConsumerCommand,
  SubscribeToShardCommand,
} from "@aws-sdk/client-kinesis";

const endpoint = process.env.RIFFLE_ENDPOINT;
if (!endpoint) {
  throw new Error("RIFFLE_ENDPOINT is not set (e.g. http://127.0.0.1:4567)");
}

const SHARD0 = "shardId-000000000000";
const POLL_LIMIT_MS = 30_000;
const EVENT_LIMIT_MS = 20_000;

const client = new KinesisClient({
  endpoint,
  region: "us-east-1",
  credentials: { accessKeyId: "AKIDRIFFLEJS", secretAccessKey: "riffle-js-secret" },
  maxAttempts: 1,
});

after(() => client.destroy());

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const text = (bytes) => Buffer.from(bytes).toString("utf8");
const uniqueName = (base) => `${base}-${Date.now()}-${randomBytes(3).toString("hex")}`;

/** Polls `probe` until it returns a truthy value; bounded by POLL_LIMIT_MS. */
async function until(what, probe) {
  const deadline = Date.now() + POLL_LIMIT_MS;
  let last;
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    last = await probe();
    if (last) return last;
    await sleep(50);
  }
  assert.fail(`timed out waiting for ${what}`);
}

async function createStream(name, shards) {
  await client.send(new CreateStreamCommand({ StreamName: name, ShardCount: shards }));
  return until(`stream ${name} ACTIVE`, async () => {
    const out = await client.send(new DescribeStreamSummaryCommand({ StreamName: name }));
    const s = out.StreamDescriptionSummary;
    return s.StreamStatus === "ACTIVE" ? s : null;
  });
}

async function registerActiveConsumer(streamArn, name) {
  const reg = await client.send(
    new RegisterStreamConsumerCommand({ StreamARN: streamArn, ConsumerName: name }),
  );
  const arn = reg.Consumer.ConsumerARN;
  assert.ok(arn.startsWith(`${streamArn}/consumer/${name}:`), arn);
  await until(`consumer ${name} ACTIVE`, async () => {
    const out = await client.send(new DescribeStreamConsumerCommand({ ConsumerARN: arn }));
    return out.ConsumerDescription.ConsumerStatus === "ACTIVE";
  });
  return arn;
}

test("the client uses the HTTP/2 handler", () => {
  assert.equal(client.config.requestHandler.constructor.name, "NodeHttp2Handler");
});

test("SubscribeToShard over HTTP/2 delivers records put after subscribing, in order", { timeout: 90_000 }, async () => {
  const name = uniqueName("js-fanout");
  const summary = await createStream(name, 1);
  const consumerArn = await registerActiveConsumer(summary.StreamARN, "js-reader");

  const abort = new AbortController();
  const sub = await client.send(
    new SubscribeToShardCommand({
      ConsumerARN: consumerArn,
      ShardId: SHARD0,
      StartingPosition: { Type: "LATEST" },
    }),
    { abortSignal: abort.signal },
  );
  const events = sub.EventStream[Symbol.asyncIterator]();

  const want = Array.from({ length: 30 }, (_, i) => `js-${String(i).padStart(3, "0")}`);
  const seqs = [];
  for (const [i, data] of want.entries()) {
    const out = await client.send(
      new PutRecordCommand({
        StreamName: name,
        PartitionKey: `pk-${i % 5}`,
        Data: Buffer.from(data),
      }),
    );
    assert.equal(out.ShardId, SHARD0);
    seqs.push(out.SequenceNumber);
  }

  const got = [];
  let lastContinuation;
  const deadline = Date.now() + EVENT_LIMIT_MS;
  try {
    for (let n = 0; n < 1000 && got.length < want.length; n++) {
      const left = deadline - Date.now();
      assert.ok(left > 0, `only ${got.length} of ${want.length} records within ${EVENT_LIMIT_MS} ms`);
      let timer;
      const next = await Promise.race([
        events.next(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no event within ${left} ms`)), left);
        }),
      ]).finally(() => clearTimeout(timer));
      assert.ok(!next.done, `the event stream ended after ${got.length} records`);
      const ev = next.value.SubscribeToShardEvent;
      if (!ev) continue; // e.g. an initial-response surfaced as an unknown member
      assert.ok(ev.ContinuationSequenceNumber, "open-shard events carry a continuation");
      assert.ok(ev.MillisBehindLatest >= 0);
      lastContinuation = ev.ContinuationSequenceNumber;
      got.push(...ev.Records);
    }
  } finally {
    abort.abort();
    await events.return?.().catch(() => {});
  }

  assert.deepEqual(got.map((r) => text(r.Data)), want, "records in production order");
  assert.deepEqual(got.map((r) => r.SequenceNumber), seqs, "acknowledged sequence numbers");
  for (const r of got) {
    assert.ok(r.ApproximateArrivalTimestamp instanceof Date);
    assert.ok(Math.abs(r.ApproximateArrivalTimestamp.getTime() - Date.now()) < 120_000);
  }
  assert.ok(lastContinuation);
});

test("PutRecords and GetRecords round trip", { timeout: 60_000 }, async () => {
  const name = uniqueName("js-batch");
  await createStream(name, 1);
  const payloads = [
    Buffer.from("hello"),
    Buffer.from(Array.from({ length: 256 }, (_, i) => i)), // every byte value
    Buffer.alloc(0),
    randomBytes(10_000),
  ];
  const put = await client.send(
    new PutRecordsCommand({
      StreamName: name,
      Records: payloads.map((Data, i) => ({ Data, PartitionKey: `key-${i}` })),
    }),
  );
  assert.equal(put.FailedRecordCount ?? 0, 0);
  assert.equal(put.Records.length, payloads.length);
  for (const r of put.Records) {
    assert.equal(r.ShardId, SHARD0);
    assert.match(r.SequenceNumber, /^\d+$/);
  }

  const it = await client.send(
    new GetShardIteratorCommand({
      StreamName: name,
      ShardId: SHARD0,
      ShardIteratorType: "TRIM_HORIZON",
    }),
  );
  const got = await client.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator }));
  assert.equal(got.Records.length, payloads.length);
  got.Records.forEach((r, i) => {
    assert.deepEqual(Buffer.from(r.Data), payloads[i], `record ${i} data`);
    assert.equal(r.PartitionKey, `key-${i}`);
    assert.equal(r.SequenceNumber, put.Records[i].SequenceNumber);
  });
  assert.ok(got.NextShardIterator);
  assert.equal(got.MillisBehindLatest, 0);
});
