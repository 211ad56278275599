package dev.riffle.compat.kpl;

import java.io.BufferedWriter;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import com.amazonaws.auth.AWSStaticCredentialsProvider;
import com.amazonaws.auth.BasicAWSCredentials;
import com.amazonaws.services.kinesis.producer.Attempt;
import com.amazonaws.services.kinesis.producer.KinesisProducer;
import com.amazonaws.services.kinesis.producer.KinesisProducerConfiguration;
import com.amazonaws.services.kinesis.producer.UserRecordFailedException;
import com.amazonaws.services.kinesis.producer.UserRecordResult;

/**
 * Puts {@code count} user records through the KPL (aggregation on, its default) and writes
 * one line per record to {@code out}: {@code INDEX SHARD SEQ ATTEMPTS} (the KPL's result carries
 * the aggregate's sequence number, not the sub-sequence number) for a success, or
 * {@code INDEX FAILED ERROR...} for a failure. Record {@code i} has partition key
 * {@code pk-(i % keys)} and data {@code kpl-record-<i, 8 digits>-} padded with {@code x} to
 * 100 bytes. The last line is {@code DONE ok=N failed=M put_ms=T}.
 *
 * <p>Arguments are {@code key=value}: {@code host= port= stream= count= keys= out=
 * [access_key=] [secret_key=] [region=us-east-1]}.
 */
public final class KplPut {

    private KplPut() {}

    static String data(int i) {
        StringBuilder b = new StringBuilder(String.format("kpl-record-%08d-", i));
        while (b.length() < 100) {
            b.append('x');
        }
        return b.toString();
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>();
        for (String a : argv) {
            int eq = a.indexOf('=');
            args.put(a.substring(0, eq), a.substring(eq + 1));
        }
        String stream = args.get("stream");
        int count = Integer.parseInt(args.get("count"));
        int keys = Integer.parseInt(args.get("keys"));
        long port = Long.parseLong(args.get("port"));

        KinesisProducerConfiguration config = new KinesisProducerConfiguration()
                .setKinesisEndpoint(args.getOrDefault("host", "127.0.0.1"))
                .setKinesisPort(port)
                // Metrics off; CloudWatch pointed at the broker too, so nothing leaves the host.
                .setCloudwatchEndpoint(args.getOrDefault("host", "127.0.0.1"))
                .setCloudwatchPort(port)
                // The KPL 0.15 daemon builds the stream's ARN from STS GetCallerIdentity: the
                // broker answers that too (same listener, SigV4).
                .setStsEndpoint(args.getOrDefault("host", "127.0.0.1"))
                .setStsPort(port)
                .setMetricsLevel("none")
                .setVerifyCertificate(false) // the broker's self-signed certificate
                .setRegion(args.getOrDefault("region", "us-east-1"))
                .setLogLevel("warning")
                .setRecordTtl(60000)
                .setRequestTimeout(10000)
                .setCredentialsProvider(new AWSStaticCredentialsProvider(new BasicAWSCredentials(
                        args.getOrDefault("access_key", "AKIDRIFFLECOMPAT"),
                        args.getOrDefault("secret_key", "riffle-compat-secret"))));
        // Aggregation is the KPL's default; say so explicitly, since the test depends on it.
        config.setAggregationEnabled(true);

        KinesisProducer producer = new KinesisProducer(config);
        List<Future<UserRecordResult>> futures = new ArrayList<>(count);
        // Until its shard map is loaded (ListShards), the daemon sends every record on its own,
        // unaggregated and ahead of the aggregates being built: record 0 goes first, alone, and
        // is waited for, then the daemon gets a moment to load the map.
        futures.add(producer.addUserRecord(stream, "pk-0",
                ByteBuffer.wrap(data(0).getBytes(StandardCharsets.US_ASCII))));
        producer.flushSync();
        futures.get(0).get(60, TimeUnit.SECONDS);
        Thread.sleep(1000);
        long start = System.nanoTime();
        for (int i = 1; i < count; i++) {
            // Back-pressure as the KPL's samples do: bound the records in flight.
            while (producer.getOutstandingRecordsCount() > 20000) {
                Thread.sleep(5);
            }
            futures.add(producer.addUserRecord(stream, "pk-" + (i % keys),
                    ByteBuffer.wrap(data(i).getBytes(StandardCharsets.US_ASCII))));
        }
        producer.flushSync();
        int ok = 0;
        int failed = 0;
        try (BufferedWriter out = Files.newBufferedWriter(Path.of(args.get("out")), StandardCharsets.UTF_8)) {
            for (int i = 0; i < count; i++) {
                try {
                    UserRecordResult r = futures.get(i).get(60, TimeUnit.SECONDS);
                    if (r.isSuccessful()) {
                        ok++;
                        out.write(i + " " + r.getShardId() + " " + r.getSequenceNumber() + " "
                                + r.getAttempts().size() + "\n");
                    } else {
                        failed++;
                        out.write(i + " FAILED " + describe(r.getAttempts()) + "\n");
                    }
                } catch (ExecutionException e) {
                    failed++;
                    String why = e.getCause() instanceof UserRecordFailedException u
                            ? describe(u.getResult().getAttempts()) : String.valueOf(e.getCause());
                    out.write(i + " FAILED " + why.replace('\n', ' ') + "\n");
                } catch (TimeoutException e) {
                    failed++;
                    out.write(i + " FAILED timeout\n");
                }
            }
            long putMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
            out.write("DONE ok=" + ok + " failed=" + failed + " put_ms=" + putMs + "\n");
        }
        producer.destroy();
        System.exit(failed == 0 ? 0 : 3);
    }

    private static String describe(List<Attempt> attempts) {
        StringBuilder b = new StringBuilder();
        for (Attempt a : attempts) {
            b.append('[').append(a.getErrorCode()).append(": ").append(a.getErrorMessage()).append("] ");
        }
        return b.toString().replace('\n', ' ');
    }
}
