package dev.riffle.compat;

import static dev.riffle.compat.Runner.check;
import static dev.riffle.compat.Runner.eq;
import static dev.riffle.compat.Runner.expectError;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import software.amazon.awssdk.core.SdkBytes;
import software.amazon.awssdk.services.kinesis.KinesisClient;
import software.amazon.awssdk.services.kinesis.model.*;
import software.amazon.awssdk.services.kinesis.model.Record;

/** The blocking KinesisClient over HTTP/1.1 (Apache or URLConnection): the control plane. */
final class SyncSuite {
    final Runner r;
    final Clients clients;
    final KinesisClient k;
    final String s;

    SyncSuite(Runner r, Clients clients) {
        this.r = r;
        this.clients = clients;
        this.k = clients.sync(clients.opts.secretKey);
        this.s = clients.opts.prefix + "-sync";
    }

    StreamDescriptionSummary waitActive() {
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        while (true) {
            StreamDescriptionSummary d = k.describeStreamSummary(x -> x.streamName(s)).streamDescriptionSummary();
            if (d.streamStatus() == StreamStatus.ACTIVE) {
                return d;
            }
            check(System.nanoTime() < deadline, s + " not ACTIVE after 30 s");
            Runner.sleep(50);
        }
    }

    void run() {
        String arn = AsyncSuite.arn(s);
        r.run("sync_create_describe", () -> {
            k.createStream(x -> x.streamName(s).shardCount(2));
            StreamDescriptionSummary d = waitActive();
            eq(arn, d.streamARN(), "StreamARN");
            eq(2, d.openShardCount(), "OpenShardCount");
            StreamDescription full = k.describeStream(x -> x.streamName(s)).streamDescription();
            eq(2, full.shards().size(), "shards");
            check(k.listStreams(x -> x.limit(1000)).streamNames().contains(s), "ListStreams lacks " + s);
            eq(2, k.listShards(x -> x.streamName(s)).shards().size(), "ListShards");
        });
        r.run("sync_put_get", () -> {
            PutRecordResponse p = k.putRecord(x -> x.streamName(s).partitionKey("k").explicitHashKey("0")
                    .data(SdkBytes.fromUtf8String("sync-0")));
            eq(AsyncSuite.SHARD0, p.shardId(), "ShardId");
            PutRecordsResponse ps = k.putRecords(x -> x.streamName(s).records(
                    PutRecordsRequestEntry.builder().partitionKey("k").explicitHashKey("0")
                            .data(SdkBytes.fromUtf8String("sync-1")).build(),
                    PutRecordsRequestEntry.builder().partitionKey("k").explicitHashKey("0")
                            .data(SdkBytes.fromUtf8String("sync-2")).build()));
            eq(0, ps.failedRecordCount(), "FailedRecordCount");
            String it = k.getShardIterator(x -> x.streamName(s).shardId(AsyncSuite.SHARD0)
                    .shardIteratorType(ShardIteratorType.AT_SEQUENCE_NUMBER)
                    .startingSequenceNumber(p.sequenceNumber())).shardIterator();
            GetRecordsResponse g = k.getRecords(x -> x.shardIterator(it));
            eq(List.of("sync-0", "sync-1", "sync-2"),
                    g.records().stream().map(rec -> rec.data().asUtf8String()).toList(), "records");
            eq(List.of(p.sequenceNumber(), ps.records().get(0).sequenceNumber(), ps.records().get(1).sequenceNumber()),
                    g.records().stream().map(Record::sequenceNumber).toList(), "sequence numbers");
        });
        r.run("sync_control_plane", () -> {
            k.addTagsToStream(x -> x.streamName(s).tags(Map.of("client", "java-sync")));
            eq(Map.of("client", "java-sync"), k.listTagsForResource(x -> x.resourceARN(arn)).tags().stream()
                    .collect(Collectors.toMap(Tag::key, Tag::value)), "tags");
            k.increaseStreamRetentionPeriod(x -> x.streamName(s).retentionPeriodHours(36));
            eq(36, waitActive().retentionPeriodHours(), "retention");
            k.updateShardCount(x -> x.streamName(s).targetShardCount(1).scalingType(ScalingType.UNIFORM_SCALING));
            eq(1, waitActive().openShardCount(), "OpenShardCount after UpdateShardCount");
            Consumer c = k.registerStreamConsumer(x -> x.streamARN(arn).consumerName("sync-c")).consumer();
            eq(List.of(c.consumerARN()), k.listStreamConsumers(x -> x.streamARN(arn)).consumers().stream()
                    .map(Consumer::consumerARN).toList(), "ListStreamConsumers");
            k.deregisterStreamConsumer(x -> x.consumerARN(c.consumerARN()));
        });
        r.run("sync_errors", () -> {
            expectError(ResourceNotFoundException.class, "ResourceNotFoundException",
                    "Stream " + s + "-missing under account " + AsyncSuite.ACCOUNT + " not found.",
                    () -> k.describeStreamSummary(x -> x.streamName(s + "-missing")));
            expectError(InvalidArgumentException.class, "InvalidArgumentException",
                    "Requested retention period (24 hours) for stream " + s
                            + " can not be shorter than existing retention period (36 hours). Use DecreaseRetentionPeriod API.",
                    () -> k.increaseStreamRetentionPeriod(x -> x.streamName(s).retentionPeriodHours(24)));
            expectError(ResourceInUseException.class, "ResourceInUseException",
                    "Stream " + s + " under account " + AsyncSuite.ACCOUNT + " already exists.",
                    () -> k.createStream(x -> x.streamName(s).shardCount(1)));
        });
        r.run("sync_delete", () -> {
            k.deleteStream(x -> x.streamName(s).enforceConsumerDeletion(true));
            boolean gone = false;
            for (int i = 0; i < 600 && !gone; i++) {
                try {
                    k.describeStreamSummary(x -> x.streamName(s));
                    Runner.sleep(50);
                } catch (ResourceNotFoundException e) {
                    gone = true;
                }
            }
            check(gone, s + " still described 30 s after DeleteStream");
        });
        Wire.verify(r, clients, clients.opts.expectContentType, false);
        k.close();
    }
}
