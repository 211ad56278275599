package dev.riffle.compat;

import static dev.riffle.compat.Runner.await;
import static dev.riffle.compat.Runner.check;
import static dev.riffle.compat.Runner.eq;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.List;
import software.amazon.awssdk.core.SdkBytes;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClient;
import software.amazon.awssdk.services.kinesis.model.*;
import software.amazon.awssdk.services.kinesis.model.Record;

/**
 * Throttling as the SDK sees it, on the stream the session broker limits to 10 records/s per
 * shard (conftest.py: [limits.streams.java-sdk-throttled]).
 */
final class ThrottleSuite {
    static final String STREAM = "java-sdk-throttled";

    final Runner r;
    final Clients clients;
    final KinesisAsyncClient k;
    final List<String> accepted = new ArrayList<>();

    ThrottleSuite(Runner r, Clients clients) {
        this.r = r;
        this.clients = clients;
        this.k = clients.async(clients.opts.secretKey);
    }

    static String message() {
        return "Rate exceeded for shard " + AsyncSuite.SHARD0 + " in stream " + STREAM + " under account "
                + AsyncSuite.ACCOUNT + ".";
    }

    void run() {
        r.run("throttle_setup", () -> {
            await(k.createStream(x -> x.streamName(STREAM).shardCount(1)));
            AsyncSuite.waitActive(k, STREAM);
        });

        r.run("throttle_put_records_per_record", () -> {
            List<PutRecordsRequestEntry> entries = new ArrayList<>();
            for (int i = 0; i < 40; i++) {
                entries.add(PutRecordsRequestEntry.builder().partitionKey("k")
                        .data(SdkBytes.fromUtf8String("t-" + i)).build());
            }
            PutRecordsResponse resp = await(k.putRecords(x -> x.streamName(STREAM).records(entries)));
            eq(40, resp.records().size(), "one result per record");
            int failed = 0;
            BigInteger prev = BigInteger.valueOf(-1);
            for (int i = 0; i < 40; i++) {
                PutRecordsResultEntry e = resp.records().get(i);
                if (e.errorCode() != null) {
                    failed++;
                    eq("ProvisionedThroughputExceededException", e.errorCode(), "ErrorCode of record " + i);
                    eq(message(), e.errorMessage(), "ErrorMessage of record " + i);
                    eq(null, e.sequenceNumber(), "SequenceNumber of a failed record");
                } else {
                    check(e.sequenceNumber() != null, "SequenceNumber of record " + i);
                    eq(AsyncSuite.SHARD0, e.shardId(), "ShardId");
                    BigInteger seq = new BigInteger(e.sequenceNumber());
                    check(seq.compareTo(prev) > 0, "accepted records keep their order");
                    prev = seq;
                    accepted.add(e.sequenceNumber());
                }
            }
            eq(failed, resp.failedRecordCount(), "FailedRecordCount");
            check(failed > 0, "no record throttled at 10 records/s");
            check(!accepted.isEmpty(), "every record throttled");
            String it = await(k.getShardIterator(x -> x.streamName(STREAM).shardId(AsyncSuite.SHARD0)
                    .shardIteratorType(ShardIteratorType.TRIM_HORIZON))).shardIterator();
            List<Record> got = await(k.getRecords(x -> x.shardIterator(it))).records();
            eq(accepted, got.stream().map(Record::sequenceNumber).toList(), "only accepted records stored");
        });

        r.run("throttle_put_record_typed", () -> {
            ProvisionedThroughputExceededException err = null;
            for (int i = 0; i < 50 && err == null; i++) {
                try {
                    await(k.putRecord(x -> x.streamName(STREAM).partitionKey("k")
                            .data(SdkBytes.fromUtf8String("single"))));
                } catch (ProvisionedThroughputExceededException e) {
                    err = e;
                }
            }
            check(err != null, "50 PutRecord calls at once were never throttled");
            eq(400, err.statusCode(), "HTTP status");
            eq("ProvisionedThroughputExceededException", err.awsErrorDetails().errorCode(), "error code");
            eq(message(), err.awsErrorDetails().errorMessage(), "error message");
            // The SDK's retry strategies back off and retry on what they class as throttling.
            check(err.isThrottlingException(), "the SDK does not class it as throttling");
        });

        r.run("throttle_sdk_retries", () -> {
            // The SDK's standard retry strategy (here with up to 10 attempts) retries the
            // throttled call after a backoff, and it succeeds once the shard's budget refills.
            Recorder rec = new Recorder();
            try (KinesisAsyncClient retrying = KinesisAsyncClient.builder()
                    .endpointOverride(java.net.URI.create(clients.opts.endpoint))
                    .region(software.amazon.awssdk.regions.Region.US_EAST_1)
                    .credentialsProvider(clients.credentials(clients.opts.secretKey))
                    .httpClient(software.amazon.awssdk.http.nio.netty.NettyNioAsyncHttpClient.builder()
                            .protocol(software.amazon.awssdk.http.Protocol.HTTP2).build())
                    .overrideConfiguration(o -> o.addExecutionInterceptor(rec).retryStrategy(
                            software.amazon.awssdk.awscore.retry.AwsRetryStrategy.standardRetryStrategy()
                                    .toBuilder().maxAttempts(10).build()))
                    .build()) {
                // Connect first, so that the throttled call follows the spending at once.
                await(retrying.describeStreamSummary(x -> x.streamName(STREAM)));
                // Spend the budget (bounded), then one more call that must be retried. On a
                // loaded machine the shard may refill a token between the two, and the call
                // then succeeds at once: try again (bounded) until one is throttled first.
                List<Integer> statuses = List.of();
                for (int round = 0; round < 10; round++) {
                    for (int i = 0; i < 50; i++) {
                        try {
                            await(k.putRecord(x -> x.streamName(STREAM).partitionKey("k")
                                    .data(SdkBytes.fromUtf8String("spend"))));
                        } catch (ProvisionedThroughputExceededException e) {
                            break;
                        }
                    }
                    int mark = rec.exchanges().size();
                    PutRecordResponse p = await(retrying.putRecord(x -> x.streamName(STREAM).partitionKey("k")
                            .data(SdkBytes.fromUtf8String("retried"))));
                    check(p.sequenceNumber() != null, "SequenceNumber");
                    List<Recorder.Exchange> all = rec.exchanges();
                    statuses = all.subList(mark, all.size()).stream()
                            .filter(e -> "PutRecord".equals(e.operation()))
                            .map(Recorder.Exchange::status).toList();
                    if (!statuses.isEmpty() && statuses.get(0) == 400) {
                        break;
                    }
                }
                check(statuses.size() >= 2 && statuses.get(0) == 400 && statuses.get(statuses.size() - 1) == 200,
                        "expected throttled attempts then a success, got statuses " + statuses);
            }
        });

        r.run("throttle_cleanup", () -> await(k.deleteStream(x -> x.streamName(STREAM))));
        k.close();
    }
}
