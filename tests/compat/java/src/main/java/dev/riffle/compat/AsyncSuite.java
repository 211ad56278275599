package dev.riffle.compat;

import static dev.riffle.compat.Runner.await;
import static dev.riffle.compat.Runner.check;
import static dev.riffle.compat.Runner.eq;
import static dev.riffle.compat.Runner.expectError;
import static dev.riffle.compat.Runner.near;

import java.math.BigInteger;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import software.amazon.awssdk.core.SdkBytes;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClient;
import software.amazon.awssdk.services.kinesis.model.*;
import software.amazon.awssdk.services.kinesis.model.Record;

/** Every operation the broker implements, through KinesisAsyncClient (Netty, HTTP/2). */
final class AsyncSuite {
    static final String ACCOUNT = "000000000000";
    static final BigInteger MAX_HASH = BigInteger.TWO.pow(128).subtract(BigInteger.ONE);
    static final BigInteger MID_HASH = BigInteger.TWO.pow(127);
    static final String SHARD0 = "shardId-000000000000";
    static final String SHARD1 = "shardId-000000000001";
    static final String SHARD2 = "shardId-000000000002";
    static final String SHARD3 = "shardId-000000000003";

    final Runner r;
    final Clients clients;
    final KinesisAsyncClient k;
    final String a; // two shards: data plane, tags, retention, monitoring, consumers, scaling
    final String b; // one shard: split, merge, stream mode
    String arnA;
    String arnB;
    Instant beforePuts;
    /** Shard 0 of stream a: the records put there, in order (sequence number, key, data). */
    final List<String[]> shard0 = new ArrayList<>();
    final Map<String, byte[]> dataBySeq = new HashMap<>();
    String consumerArn;

    AsyncSuite(Runner r, Clients clients) {
        this.r = r;
        this.clients = clients;
        this.k = clients.async(clients.opts.secretKey);
        this.a = clients.opts.prefix + "-a";
        this.b = clients.opts.prefix + "-b";
    }

    static String arn(String stream) {
        return "arn:aws:kinesis:us-east-1:" + ACCOUNT + ":stream/" + stream;
    }

    static StreamDescriptionSummary waitActive(KinesisAsyncClient k, String name) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        while (true) {
            StreamDescriptionSummary s = await(k.describeStreamSummary(b -> b.streamName(name)))
                    .streamDescriptionSummary();
            if (s.streamStatus() == StreamStatus.ACTIVE) {
                return s;
            }
            check(System.nanoTime() < deadline, name + " not ACTIVE after 30 s: " + s.streamStatus());
            Runner.sleep(50);
        }
    }

    StreamDescriptionSummary summary(String name) throws Exception {
        return await(k.describeStreamSummary(x -> x.streamName(name))).streamDescriptionSummary();
    }

    List<Record> readAll(String stream, String shard, ShardIteratorType type, String seq,
            Instant at, int expect) throws Exception {
        String it = await(k.getShardIterator(x -> x.streamName(stream).shardId(shard)
                .shardIteratorType(type).startingSequenceNumber(seq).timestamp(at))).shardIterator();
        List<Record> got = new ArrayList<>();
        for (int i = 0; i < 50 && got.size() < expect && it != null; i++) {
            final String cur = it;
            GetRecordsResponse resp = await(k.getRecords(x -> x.shardIterator(cur)));
            got.addAll(resp.records());
            it = resp.nextShardIterator();
        }
        return got;
    }

    void run() {
        r.run("create_stream", () -> {
            beforePuts = Instant.now().minusSeconds(1);
            await(k.createStream(x -> x.streamName(a).shardCount(2)));
            await(k.createStream(x -> x.streamName(b).shardCount(1)));
            StreamDescriptionSummary s = waitActive(k, a);
            eq(arn(a), s.streamARN(), "StreamARN");
            waitActive(k, b);
            arnA = s.streamARN();
            arnB = arn(b);
            expectError(ResourceInUseException.class, "ResourceInUseException",
                    "Stream " + a + " under account " + ACCOUNT + " already exists.",
                    () -> await(k.createStream(x -> x.streamName(a).shardCount(1))));
        });

        r.run("describe_stream", () -> {
            StreamDescription d = await(k.describeStream(x -> x.streamName(a))).streamDescription();
            eq(a, d.streamName(), "StreamName");
            eq(arn(a), d.streamARN(), "StreamARN");
            eq(StreamStatus.ACTIVE, d.streamStatus(), "StreamStatus");
            eq(24, d.retentionPeriodHours(), "RetentionPeriodHours");
            eq(StreamMode.PROVISIONED, d.streamModeDetails().streamMode(), "StreamMode");
            eq(EncryptionType.NONE, d.encryptionType(), "EncryptionType");
            eq(false, d.hasMoreShards(), "HasMoreShards");
            near(d.streamCreationTimestamp(), Duration.ofMinutes(2), "StreamCreationTimestamp");
            eq(List.of(SHARD0, SHARD1), d.shards().stream().map(Shard::shardId).toList(), "shard ids");
            BigInteger next = BigInteger.ZERO;
            for (Shard sh : d.shards()) {
                eq(next, new BigInteger(sh.hashKeyRange().startingHashKey()), sh.shardId() + " start");
                next = new BigInteger(sh.hashKeyRange().endingHashKey()).add(BigInteger.ONE);
                check(!sh.sequenceNumberRange().startingSequenceNumber().isEmpty(), "starting seq");
                eq(null, sh.sequenceNumberRange().endingSequenceNumber(), "open shard's ending seq");
                eq(null, sh.parentShardId(), "ParentShardId");
            }
            eq(MAX_HASH.add(BigInteger.ONE), next, "hash ranges cover the key space");
        });

        r.run("describe_stream_summary", () -> {
            StreamDescriptionSummary s = summary(a);
            eq(2, s.openShardCount(), "OpenShardCount");
            eq(0, s.consumerCount(), "ConsumerCount");
            eq(24, s.retentionPeriodHours(), "RetentionPeriodHours");
            eq(StreamMode.PROVISIONED, s.streamModeDetails().streamMode(), "StreamMode");
            near(s.streamCreationTimestamp(), Duration.ofMinutes(2), "StreamCreationTimestamp");
        });

        r.run("list_streams_pagination", () -> {
            Set<String> names = new HashSet<>();
            Map<String, StreamSummary> summaries = new HashMap<>();
            String token = null;
            int pages = 0;
            do {
                final String t = token;
                ListStreamsResponse resp = await(k.listStreams(x -> x.limit(1).nextToken(t)));
                check(resp.streamNames().size() <= 1, "Limit 1 returned " + resp.streamNames());
                names.addAll(resp.streamNames());
                resp.streamSummaries().forEach(s -> summaries.put(s.streamName(), s));
                token = resp.hasMoreStreams() ? resp.nextToken() : null;
                check(!resp.hasMoreStreams() || token != null, "HasMoreStreams without NextToken");
                pages++;
            } while (token != null && pages < 1000);
            check(names.contains(a) && names.contains(b), "ListStreams lacks " + a + "/" + b);
            check(pages >= 2, "Limit 1 must page: " + pages + " pages");
            StreamSummary sa = summaries.get(a);
            check(sa != null, "StreamSummaries lacks " + a);
            eq(arn(a), sa.streamARN(), "StreamSummaries StreamARN");
            eq(StreamStatus.ACTIVE, sa.streamStatus(), "StreamSummaries StreamStatus");
            near(sa.streamCreationTimestamp(), Duration.ofMinutes(2), "StreamSummaries creation time");
        });

        r.run("list_shards_pagination", () -> {
            ListShardsResponse p1 = await(k.listShards(x -> x.streamName(a).maxResults(1)));
            eq(List.of(SHARD0), p1.shards().stream().map(Shard::shardId).toList(), "first page");
            check(p1.nextToken() != null, "first page has no NextToken");
            ListShardsResponse p2 = await(k.listShards(x -> x.nextToken(p1.nextToken()).maxResults(1)));
            eq(List.of(SHARD1), p2.shards().stream().map(Shard::shardId).toList(), "second page");
            if (p2.nextToken() != null) {
                ListShardsResponse p3 = await(k.listShards(x -> x.nextToken(p2.nextToken())));
                eq(List.of(), p3.shards(), "third page");
            }
            ListShardsResponse byArn = await(k.listShards(x -> x.streamARN(arn(a))
                    .shardFilter(f -> f.type(ShardFilterType.AT_TRIM_HORIZON))));
            eq(2, byArn.shards().size(), "ListShards by StreamARN with AT_TRIM_HORIZON");
            expectError(InvalidArgumentException.class, "InvalidArgumentException",
                    "NextToken and StreamName cannot be provided together.",
                    () -> await(k.listShards(x -> x.streamName(a).nextToken(p1.nextToken()))));
        });

        r.run("put_record", () -> {
            String prev = null;
            for (int i = 0; i < 3; i++) {
                byte[] data = ("java-put-" + i).getBytes();
                final String ordering = prev;
                PutRecordResponse resp = await(k.putRecord(x -> x.streamName(a).partitionKey("pk-" + ordering)
                        .explicitHashKey("0").data(SdkBytes.fromByteArray(data))
                        .sequenceNumberForOrdering(ordering)));
                eq(SHARD0, resp.shardId(), "ShardId for ExplicitHashKey 0");
                check(resp.sequenceNumber() != null && resp.sequenceNumber().matches("\\d{20,}"),
                        "SequenceNumber " + resp.sequenceNumber());
                if (prev != null) {
                    check(new BigInteger(resp.sequenceNumber()).compareTo(new BigInteger(prev)) > 0,
                            "sequence numbers increase");
                }
                // AWS leaves EncryptionType out for an unencrypted stream; NONE is also valid.
                check(resp.encryptionType() == null || resp.encryptionType() == EncryptionType.NONE,
                        "EncryptionType " + resp.encryptionType());
                shard0.add(new String[] {resp.sequenceNumber(), "pk-" + ordering});
                dataBySeq.put(resp.sequenceNumber(), data);
                prev = resp.sequenceNumber();
            }
            PutRecordResponse hi = await(k.putRecord(x -> x.streamName(a).partitionKey("hi")
                    .explicitHashKey(MID_HASH.toString()).data(SdkBytes.fromUtf8String("high"))));
            eq(SHARD1, hi.shardId(), "ShardId for ExplicitHashKey 2^127");
        });

        r.run("put_records", () -> {
            List<PutRecordsRequestEntry> entries = new ArrayList<>();
            List<byte[]> datas = new ArrayList<>();
            for (int i = 0; i < 10; i++) {
                byte[] data;
                if (i == 0) {
                    data = new byte[256];
                    for (int j = 0; j < 256; j++) {
                        data[j] = (byte) j; // every byte value: blobs must round-trip exactly
                    }
                } else {
                    data = ("batch-" + i).getBytes();
                }
                datas.add(data);
                PutRecordsRequestEntry.Builder e = PutRecordsRequestEntry.builder()
                        .partitionKey("batch-" + i).data(SdkBytes.fromByteArray(data));
                e.explicitHashKey(i % 2 == 0 ? "1" : MAX_HASH.toString());
                entries.add(e.build());
            }
            PutRecordsResponse resp = await(k.putRecords(x -> x.streamName(a).records(entries)));
            eq(0, resp.failedRecordCount(), "FailedRecordCount");
            eq(10, resp.records().size(), "one result per record");
            for (int i = 0; i < 10; i++) {
                PutRecordsResultEntry e = resp.records().get(i);
                eq(null, e.errorCode(), "ErrorCode of record " + i);
                eq(i % 2 == 0 ? SHARD0 : SHARD1, e.shardId(), "ShardId of record " + i);
                check(e.sequenceNumber() != null, "SequenceNumber of record " + i);
                if (i % 2 == 0) {
                    shard0.add(new String[] {e.sequenceNumber(), "batch-" + i});
                    dataBySeq.put(e.sequenceNumber(), datas.get(i));
                }
            }
            expectError(ResourceNotFoundException.class, "ResourceNotFoundException",
                    "Stream " + a + "-missing under account " + ACCOUNT + " not found.",
                    () -> await(k.putRecords(x -> x.streamName(a + "-missing").records(entries))));
        });

        r.run("get_records", () -> {
            String it = await(k.getShardIterator(x -> x.streamName(a).shardId(SHARD0)
                    .shardIteratorType(ShardIteratorType.TRIM_HORIZON))).shardIterator();
            final String first = it;
            GetRecordsResponse r1 = await(k.getRecords(x -> x.shardIterator(first).limit(2)));
            eq(2, r1.records().size(), "Limit 2");
            check(r1.nextShardIterator() != null, "NextShardIterator");
            check(r1.millisBehindLatest() != null && r1.millisBehindLatest() >= 0, "MillisBehindLatest");
            List<Record> got = new ArrayList<>(r1.records());
            it = r1.nextShardIterator();
            for (int i = 0; i < 20 && got.size() < shard0.size(); i++) {
                final String cur = it;
                GetRecordsResponse resp = await(k.getRecords(x -> x.shardIterator(cur)));
                got.addAll(resp.records());
                it = resp.nextShardIterator();
            }
            eq(shard0.stream().map(s -> s[0]).toList(), got.stream().map(Record::sequenceNumber).toList(),
                    "sequence numbers in order");
            for (int i = 0; i < got.size(); i++) {
                Record rec = got.get(i);
                eq(shard0.get(i)[1], rec.partitionKey(), "PartitionKey");
                check(java.util.Arrays.equals(dataBySeq.get(rec.sequenceNumber()), rec.data().asByteArray()),
                        "Data of " + rec.sequenceNumber() + " differs");
                near(rec.approximateArrivalTimestamp(), Duration.ofMinutes(2), "ApproximateArrivalTimestamp");
                check(!rec.approximateArrivalTimestamp().isBefore(beforePuts), "arrival before the puts");
            }
            expectError(InvalidArgumentException.class, "InvalidArgumentException", null,
                    () -> await(k.getRecords(x -> x.shardIterator("AAAAnot-an-iterator"))));
        });

        r.run("get_shard_iterator_types", () -> {
            String s1 = shard0.get(1)[0];
            List<String> all = shard0.stream().map(s -> s[0]).toList();
            eq(all, readAll(a, SHARD0, ShardIteratorType.TRIM_HORIZON, null, null, all.size()).stream()
                    .map(Record::sequenceNumber).toList(), "TRIM_HORIZON");
            eq(all.subList(1, all.size()), readAll(a, SHARD0, ShardIteratorType.AT_SEQUENCE_NUMBER, s1, null,
                    all.size() - 1).stream().map(Record::sequenceNumber).toList(), "AT_SEQUENCE_NUMBER");
            eq(all.subList(2, all.size()), readAll(a, SHARD0, ShardIteratorType.AFTER_SEQUENCE_NUMBER, s1,
                    null, all.size() - 2).stream().map(Record::sequenceNumber).toList(), "AFTER_SEQUENCE_NUMBER");
            eq(all, readAll(a, SHARD0, ShardIteratorType.AT_TIMESTAMP, null, beforePuts, all.size()).stream()
                    .map(Record::sequenceNumber).toList(), "AT_TIMESTAMP before the first put");
            String latest = await(k.getShardIterator(x -> x.streamName(a).shardId(SHARD0)
                    .shardIteratorType(ShardIteratorType.LATEST))).shardIterator();
            GetRecordsResponse empty = await(k.getRecords(x -> x.shardIterator(latest)));
            eq(0, empty.records().size(), "LATEST before a new put");
            PutRecordResponse p = await(k.putRecord(x -> x.streamName(a).partitionKey("late")
                    .explicitHashKey("0").data(SdkBytes.fromUtf8String("late"))));
            String next = empty.nextShardIterator();
            List<Record> got = new ArrayList<>();
            for (int i = 0; i < 10 && got.isEmpty() && next != null; i++) {
                final String cur = next;
                GetRecordsResponse resp = await(k.getRecords(x -> x.shardIterator(cur)));
                got.addAll(resp.records());
                next = resp.nextShardIterator();
            }
            eq(List.of(p.sequenceNumber()), got.stream().map(Record::sequenceNumber).toList(),
                    "LATEST sees only the record put after it");
            shard0.add(new String[] {p.sequenceNumber(), "late"});
            dataBySeq.put(p.sequenceNumber(), "late".getBytes());
            expectError(InvalidArgumentException.class, "InvalidArgumentException",
                    "StartingSequenceNumber 123 used in GetShardIterator on shard " + SHARD0 + " in stream " + a
                            + " under account " + ACCOUNT + " is invalid.",
                    () -> await(k.getShardIterator(x -> x.streamName(a).shardId(SHARD0)
                            .shardIteratorType(ShardIteratorType.AT_SEQUENCE_NUMBER).startingSequenceNumber("123"))));
        });

        r.run("partition_key_hashing", () -> {
            // Without ExplicitHashKey the shard is the one whose range holds MD5(UTF-8 key) as a
            // 128-bit number: what the KPL and the KCL predict. Multi-byte keys go through
            // CBOR/JSON text strings.
            List<Shard> shards = await(k.listShards(x -> x.streamName(a))).shards();
            String[] keys = {"alpha", "beta", "gamma", "ключ", "鍵-キー", "🔑-key", "x".repeat(256)};
            for (String key : keys) {
                BigInteger h = new BigInteger(1, java.security.MessageDigest.getInstance("MD5")
                        .digest(key.getBytes(java.nio.charset.StandardCharsets.UTF_8)));
                String want = shards.stream().filter(sh -> new BigInteger(sh.hashKeyRange().startingHashKey())
                        .compareTo(h) <= 0 && new BigInteger(sh.hashKeyRange().endingHashKey()).compareTo(h) >= 0)
                        .findFirst().orElseThrow().shardId();
                PutRecordResponse p = await(k.putRecord(x -> x.streamName(a).partitionKey(key)
                        .data(SdkBytes.fromUtf8String("hash"))));
                eq(want, p.shardId(), "ShardId of key " + key);
                if (want.equals(SHARD0)) {
                    shard0.add(new String[] {p.sequenceNumber(), key});
                    dataBySeq.put(p.sequenceNumber(), "hash".getBytes());
                }
            }
            // Read back by StreamARN instead of StreamName.
            String it = await(k.getShardIterator(x -> x.streamARN(arn(a)).shardId(SHARD0)
                    .shardIteratorType(ShardIteratorType.TRIM_HORIZON))).shardIterator();
            List<Record> got = new ArrayList<>();
            for (int i = 0; i < 20 && got.size() < shard0.size() && it != null; i++) {
                final String cur = it;
                GetRecordsResponse resp = await(k.getRecords(x -> x.shardIterator(cur).streamARN(arn(a))));
                got.addAll(resp.records());
                it = resp.nextShardIterator();
            }
            List<String> wantKeys = shard0.stream().map(x -> x[1]).toList();
            eq(wantKeys, got.stream().map(Record::partitionKey).limit(wantKeys.size()).toList(),
                    "partition keys read back by StreamARN");
        });

        r.run("concurrent_puts_large_get", () -> {
            // 100 PutRecord calls in flight at once (Netty multiplexes them on one HTTP/2
            // connection), 48 KiB each, then one GetRecords answer of about 4.7 MiB: HTTP/2
            // stream concurrency and flow control with a large body.
            List<java.util.concurrent.CompletableFuture<PutRecordResponse>> fs = new ArrayList<>();
            byte[] payload = new byte[48 * 1024];
            for (int i = 0; i < 100; i++) {
                java.util.Arrays.fill(payload, (byte) i);
                final SdkBytes data = SdkBytes.fromByteArray(payload.clone());
                fs.add(k.putRecord(x -> x.streamName(b).partitionKey("c").data(data)));
            }
            Set<String> seqSet = new HashSet<>();
            for (var f : fs) {
                seqSet.add(await(f).sequenceNumber());
            }
            eq(100, seqSet.size(), "distinct sequence numbers");
            String it = await(k.getShardIterator(x -> x.streamName(b).shardId(SHARD0)
                    .shardIteratorType(ShardIteratorType.TRIM_HORIZON))).shardIterator();
            List<Record> got = new ArrayList<>();
            for (int i = 0; i < 20 && got.size() < 100 && it != null; i++) {
                final String cur = it;
                GetRecordsResponse resp = await(k.getRecords(x -> x.shardIterator(cur)));
                got.addAll(resp.records());
                it = resp.nextShardIterator();
            }
            eq(seqSet, got.stream().map(Record::sequenceNumber).collect(Collectors.toSet()), "records read");
            for (Record rec : got) {
                check(rec.data().asByteArray().length == 48 * 1024, "record size");
            }
        });

        r.run("split_shard", () -> {
            await(k.putRecord(x -> x.streamName(b).partitionKey("before-split")
                    .data(SdkBytes.fromUtf8String("before-split"))));
            await(k.splitShard(x -> x.streamName(b).shardToSplit(SHARD0)
                    .newStartingHashKey(MID_HASH.toString())));
            waitActive(k, b);
            List<Shard> shards = await(k.listShards(x -> x.streamName(b))).shards();
            eq(List.of(SHARD0, SHARD1, SHARD2), shards.stream().map(Shard::shardId).toList(), "shards after split");
            check(shards.get(0).sequenceNumberRange().endingSequenceNumber() != null, "parent is closed");
            for (Shard child : shards.subList(1, 3)) {
                eq(SHARD0, child.parentShardId(), child.shardId() + " ParentShardId");
            }
            eq(MID_HASH.subtract(BigInteger.ONE).toString(), shards.get(1).hashKeyRange().endingHashKey(),
                    "lower child's end");
            eq(MID_HASH.toString(), shards.get(2).hashKeyRange().startingHashKey(), "upper child's start");
        });

        r.run("get_records_child_shards", () -> {
            String it = await(k.getShardIterator(x -> x.streamName(b).shardId(SHARD0)
                    .shardIteratorType(ShardIteratorType.TRIM_HORIZON))).shardIterator();
            List<Record> got = new ArrayList<>();
            GetRecordsResponse last = null;
            for (int i = 0; i < 20 && it != null; i++) {
                final String cur = it;
                last = await(k.getRecords(x -> x.shardIterator(cur)));
                got.addAll(last.records());
                it = last.nextShardIterator();
            }
            eq(null, it, "NextShardIterator at the end of a closed shard");
            eq(101, got.size(), "records of the closed shard");
            eq(List.of(SHARD1, SHARD2), last.childShards().stream().map(ChildShard::shardId).sorted().toList(),
                    "ChildShards");
            for (ChildShard c : last.childShards()) {
                eq(List.of(SHARD0), c.parentShards(), c.shardId() + " ParentShards");
            }
        });

        r.run("merge_shards", () -> {
            await(k.mergeShards(x -> x.streamName(b).shardToMerge(SHARD1).adjacentShardToMerge(SHARD2)));
            waitActive(k, b);
            List<Shard> open = await(k.listShards(x -> x.streamName(b)
                    .shardFilter(f -> f.type(ShardFilterType.AT_LATEST)))).shards();
            eq(List.of(SHARD3), open.stream().map(Shard::shardId).toList(), "open shards after merge");
            eq(SHARD1, open.get(0).parentShardId(), "ParentShardId");
            eq(SHARD2, open.get(0).adjacentParentShardId(), "AdjacentParentShardId");
            eq("0", open.get(0).hashKeyRange().startingHashKey(), "merged start");
            eq(MAX_HASH.toString(), open.get(0).hashKeyRange().endingHashKey(), "merged end");
            expectError(ResourceNotFoundException.class, "ResourceNotFoundException", null,
                    () -> await(k.mergeShards(x -> x.streamName(b).shardToMerge(SHARD3)
                            .adjacentShardToMerge("shardId-000000000099"))));
        });

        r.run("update_shard_count", () -> {
            UpdateShardCountResponse u = await(k.updateShardCount(x -> x.streamName(a).targetShardCount(4)
                    .scalingType(ScalingType.UNIFORM_SCALING)));
            eq(2, u.currentShardCount(), "CurrentShardCount");
            eq(4, u.targetShardCount(), "TargetShardCount");
            eq(a, u.streamName(), "StreamName");
            StreamDescriptionSummary s = waitActive(k, a);
            eq(4, s.openShardCount(), "OpenShardCount after UpdateShardCount");
            List<Shard> open = await(k.listShards(x -> x.streamName(a)
                    .shardFilter(f -> f.type(ShardFilterType.AT_LATEST)))).shards();
            eq(4, open.size(), "open shards");
            // DescribeStream pages through shards with Limit and ExclusiveStartShardId.
            StreamDescription p1 = await(k.describeStream(x -> x.streamName(a).limit(2))).streamDescription();
            eq(2, p1.shards().size(), "DescribeStream Limit 2");
            eq(true, p1.hasMoreShards(), "HasMoreShards");
            String lastId = p1.shards().get(1).shardId();
            StreamDescription p2 = await(k.describeStream(x -> x.streamName(a)
                    .exclusiveStartShardId(lastId))).streamDescription();
            eq(false, p2.hasMoreShards(), "HasMoreShards on the last page");
            List<String> ids = new ArrayList<>(p1.shards().stream().map(Shard::shardId).toList());
            ids.addAll(p2.shards().stream().map(Shard::shardId).toList());
            eq(6, ids.size(), "2 closed + 4 open shards across the pages: " + ids);
            eq(6, new HashSet<>(ids).size(), "no shard twice");
        });

        r.run("retention", () -> {
            await(k.increaseStreamRetentionPeriod(x -> x.streamName(a).retentionPeriodHours(48)));
            eq(48, waitActive(k, a).retentionPeriodHours(), "after increase");
            expectError(InvalidArgumentException.class, "InvalidArgumentException",
                    "Requested retention period (24 hours) for stream " + a
                            + " can not be shorter than existing retention period (48 hours). Use DecreaseRetentionPeriod API.",
                    () -> await(k.increaseStreamRetentionPeriod(x -> x.streamName(a).retentionPeriodHours(24))));
            await(k.decreaseStreamRetentionPeriod(x -> x.streamARN(arn(a)).retentionPeriodHours(24)));
            eq(24, waitActive(k, a).retentionPeriodHours(), "after decrease");
            expectError(InvalidArgumentException.class, "InvalidArgumentException",
                    "Requested retention period (48 hours) for stream " + a
                            + " can not be longer than existing retention period (24 hours). Use IncreaseRetentionPeriod API.",
                    () -> await(k.decreaseStreamRetentionPeriod(x -> x.streamName(a).retentionPeriodHours(48))));
        });

        r.run("stream_tags", () -> {
            await(k.addTagsToStream(x -> x.streamName(a).tags(Map.of("env", "test", "team", "riffle"))));
            ListTagsForStreamResponse l = await(k.listTagsForStream(x -> x.streamName(a)));
            eq(Map.of("env", "test", "team", "riffle"),
                    l.tags().stream().collect(Collectors.toMap(Tag::key, Tag::value)), "tags");
            eq(false, l.hasMoreTags(), "HasMoreTags");
            ListTagsForStreamResponse l1 = await(k.listTagsForStream(x -> x.streamName(a).limit(1)));
            eq(List.of("env"), l1.tags().stream().map(Tag::key).toList(), "first tag by key");
            eq(true, l1.hasMoreTags(), "HasMoreTags with Limit 1");
            await(k.removeTagsFromStream(x -> x.streamName(a).tagKeys("env")));
            eq(List.of("team"), await(k.listTagsForStream(x -> x.streamName(a))).tags().stream()
                    .map(Tag::key).toList(), "tags after RemoveTagsFromStream");
        });

        r.run("resource_tags", () -> {
            await(k.tagResource(x -> x.resourceARN(arn(a)).tags(Map.of("owner", "java"))));
            Map<String, String> tags = await(k.listTagsForResource(x -> x.resourceARN(arn(a)))).tags().stream()
                    .collect(Collectors.toMap(Tag::key, Tag::value));
            eq(Map.of("owner", "java", "team", "riffle"), tags, "ListTagsForResource");
            await(k.untagResource(x -> x.resourceARN(arn(a)).tagKeys("owner")));
            eq(List.of("team"), await(k.listTagsForResource(x -> x.resourceARN(arn(a)))).tags().stream()
                    .map(Tag::key).toList(), "after UntagResource");
        });

        r.run("enhanced_monitoring", () -> {
            EnableEnhancedMonitoringResponse e = await(k.enableEnhancedMonitoring(x -> x.streamName(a)
                    .shardLevelMetrics(MetricsName.INCOMING_BYTES, MetricsName.OUTGOING_RECORDS)));
            eq(List.of(), e.currentShardLevelMetrics(), "CurrentShardLevelMetrics");
            eq(Set.of(MetricsName.INCOMING_BYTES, MetricsName.OUTGOING_RECORDS),
                    Set.copyOf(e.desiredShardLevelMetrics()), "DesiredShardLevelMetrics");
            StreamDescriptionSummary s = waitActive(k, a);
            eq(Set.of(MetricsName.INCOMING_BYTES, MetricsName.OUTGOING_RECORDS),
                    Set.copyOf(s.enhancedMonitoring().get(0).shardLevelMetrics()), "summary's metrics");
            DisableEnhancedMonitoringResponse d = await(k.disableEnhancedMonitoring(x -> x.streamName(a)
                    .shardLevelMetrics(MetricsName.INCOMING_BYTES)));
            eq(List.of(MetricsName.OUTGOING_RECORDS), d.desiredShardLevelMetrics(), "after disable");
            waitActive(k, a);
        });

        r.run("encryption", () -> {
            await(k.startStreamEncryption(x -> x.streamName(a).encryptionType(EncryptionType.KMS)
                    .keyId("alias/aws/kinesis")));
            StreamDescriptionSummary s = waitActive(k, a);
            eq(EncryptionType.KMS, s.encryptionType(), "EncryptionType");
            eq("alias/aws/kinesis", s.keyId(), "KeyId");
            PutRecordResponse p = await(k.putRecord(x -> x.streamName(a).partitionKey("enc")
                    .data(SdkBytes.fromUtf8String("enc"))));
            eq(EncryptionType.KMS, p.encryptionType(), "PutRecord EncryptionType");
            await(k.stopStreamEncryption(x -> x.streamName(a).encryptionType(EncryptionType.KMS)
                    .keyId("alias/aws/kinesis")));
            eq(EncryptionType.NONE, waitActive(k, a).encryptionType(), "after StopStreamEncryption");
        });

        r.run("stream_mode_and_warm_throughput", () -> {
            await(k.updateStreamMode(x -> x.streamARN(arn(b))
                    .streamModeDetails(m -> m.streamMode(StreamMode.ON_DEMAND))));
            eq(StreamMode.ON_DEMAND, waitActive(k, b).streamModeDetails().streamMode(), "StreamMode");
            UpdateStreamWarmThroughputResponse w = await(k.updateStreamWarmThroughput(x -> x.streamName(b)
                    .warmThroughputMiBps(10)));
            eq(arn(b), w.streamARN(), "StreamARN");
            eq(10, w.warmThroughput().targetMiBps(), "TargetMiBps");
            expectError(InvalidArgumentException.class, "InvalidArgumentException", null,
                    () -> await(k.updateStreamWarmThroughput(x -> x.streamName(a).warmThroughputMiBps(10))));
        });

        r.run("max_record_size", () -> {
            await(k.updateMaxRecordSize(x -> x.streamARN(arn(a)).maxRecordSizeInKiB(2048)));
            eq(2048, waitActive(k, a).maxRecordSizeInKiB(), "MaxRecordSizeInKiB");
            byte[] big = new byte[1536 * 1024];
            PutRecordResponse p = await(k.putRecord(x -> x.streamName(a).partitionKey("big")
                    .data(SdkBytes.fromByteArray(big))));
            check(p.sequenceNumber() != null, "a 1.5 MiB record is accepted");
        });

        r.run("account", () -> {
            DescribeLimitsResponse l = await(k.describeLimits(x -> {}));
            check(l.shardLimit() != null && l.shardLimit() > 0, "ShardLimit " + l.shardLimit());
            check(l.openShardCount() != null && l.openShardCount() >= 5, "OpenShardCount " + l.openShardCount());
            check(l.onDemandStreamCount() != null && l.onDemandStreamCount() >= 1, "OnDemandStreamCount");
            check(l.onDemandStreamCountLimit() != null && l.onDemandStreamCountLimit() > 0, "OnDemandStreamCountLimit");
            await(k.updateAccountSettings(x -> x.minimumThroughputBillingCommitment(
                    c -> c.status(MinimumThroughputBillingCommitmentInputStatus.DISABLED))));
            DescribeAccountSettingsResponse s = await(k.describeAccountSettings(x -> {}));
            check(s.minimumThroughputBillingCommitment() != null, "MinimumThroughputBillingCommitment");
            eq(MinimumThroughputBillingCommitmentOutputStatus.DISABLED,
                    s.minimumThroughputBillingCommitment().status(), "commitment status");
        });

        r.run("consumers", () -> {
            Consumer c = await(k.registerStreamConsumer(x -> x.streamARN(arn(a)).consumerName("java-c1")))
                    .consumer();
            eq("java-c1", c.consumerName(), "ConsumerName");
            check(c.consumerARN().startsWith(arn(a) + "/consumer/java-c1:"), "ConsumerARN " + c.consumerARN());
            near(c.consumerCreationTimestamp(), Duration.ofMinutes(2), "ConsumerCreationTimestamp");
            consumerArn = c.consumerARN();
            ConsumerDescription d = null;
            for (int i = 0; i < 300; i++) {
                d = await(k.describeStreamConsumer(x -> x.consumerARN(consumerArn))).consumerDescription();
                if (d.consumerStatus() == ConsumerStatus.ACTIVE) {
                    break;
                }
                Runner.sleep(50);
            }
            eq(ConsumerStatus.ACTIVE, d.consumerStatus(), "ConsumerStatus");
            eq(arn(a), d.streamARN(), "StreamARN");
            ConsumerDescription byName = await(k.describeStreamConsumer(x -> x.streamARN(arn(a))
                    .consumerName("java-c1"))).consumerDescription();
            eq(consumerArn, byName.consumerARN(), "by StreamARN + ConsumerName");
            List<Consumer> listed = await(k.listStreamConsumers(x -> x.streamARN(arn(a)))).consumers();
            eq(List.of(consumerArn), listed.stream().map(Consumer::consumerARN).toList(), "ListStreamConsumers");
            eq(1, summary(a).consumerCount(), "ConsumerCount");
            expectError(ResourceInUseException.class, "ResourceInUseException",
                    "Consumer java-c1 under stream " + a + " already exists for account " + ACCOUNT + ".",
                    () -> await(k.registerStreamConsumer(x -> x.streamARN(arn(a)).consumerName("java-c1"))));
            await(k.deregisterStreamConsumer(x -> x.consumerARN(consumerArn)));
            boolean gone = false;
            for (int i = 0; i < 300 && !gone; i++) {
                try {
                    ConsumerDescription cd = await(k.describeStreamConsumer(x -> x.consumerARN(consumerArn)))
                            .consumerDescription();
                    eq(ConsumerStatus.DELETING, cd.consumerStatus(), "status after Deregister");
                    Runner.sleep(50);
                } catch (ResourceNotFoundException e) {
                    gone = true;
                }
            }
            check(gone, "consumer still described after DeregisterStreamConsumer");
        });

        r.run("errors", () -> {
            String missing = clients.opts.prefix + "-missing";
            expectError(ResourceNotFoundException.class, "ResourceNotFoundException",
                    "Stream " + missing + " under account " + ACCOUNT + " not found.",
                    () -> await(k.describeStream(x -> x.streamName(missing))));
            expectError(ResourceNotFoundException.class, "ResourceNotFoundException",
                    "Stream " + missing + " under account " + ACCOUNT + " not found.",
                    () -> await(k.putRecord(x -> x.streamName(missing).partitionKey("k")
                            .data(SdkBytes.fromUtf8String("x")))));
            expectError(ResourceNotFoundException.class, "ResourceNotFoundException", null,
                    () -> await(k.getShardIterator(x -> x.streamName(a).shardId("shardId-000000000099")
                            .shardIteratorType(ShardIteratorType.TRIM_HORIZON))));
            expectError(InvalidArgumentException.class, "InvalidArgumentException", null,
                    () -> await(k.putRecord(x -> x.streamName(a).partitionKey("k")
                            .explicitHashKey(MAX_HASH.add(BigInteger.ONE).toString())
                            .data(SdkBytes.fromUtf8String("x")))));
            // The SDK does not check lengths itself: the broker's ValidationException arrives.
            String pk = "p".repeat(257);
            expectError(ValidationException.class, "ValidationException",
                    "1 validation error detected: Value '" + pk + "' at 'partitionKey' failed to satisfy "
                            + "constraint: Member must have length less than or equal to 256",
                    () -> await(k.putRecord(x -> x.streamName(a).partitionKey(pk)
                            .data(SdkBytes.fromUtf8String("x")))));
        });

        r.run("delete_stream", () -> {
            await(k.deleteStream(x -> x.streamName(a)));
            await(k.deleteStream(x -> x.streamARN(arn(b)).enforceConsumerDeletion(true)));
            for (String name : List.of(a, b)) {
                boolean gone = false;
                for (int i = 0; i < 600 && !gone; i++) {
                    try {
                        StreamStatus st = summary(name).streamStatus();
                        eq(StreamStatus.DELETING, st, name + " status after DeleteStream");
                        Runner.sleep(50);
                    } catch (ResourceNotFoundException e) {
                        eq("Stream " + name + " under account " + ACCOUNT + " not found.",
                                e.awsErrorDetails().errorMessage(), "message");
                        gone = true;
                    }
                }
                check(gone, name + " still described 30 s after DeleteStream");
            }
        });

        Wire.verify(r, clients, clients.opts.expectContentType, !"h1".equals(clients.opts.protocol));
        k.close();
    }
}
