package dev.riffle.compat.kcl;

import java.io.IOException;
import java.net.URI;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.http.Protocol;
import software.amazon.awssdk.http.nio.netty.Http2Configuration;
import software.amazon.awssdk.http.nio.netty.NettyNioAsyncHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.cloudwatch.CloudWatchAsyncClient;
import software.amazon.awssdk.services.dynamodb.DynamoDbAsyncClient;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClient;
import software.amazon.kinesis.common.ConfigsBuilder;
import software.amazon.kinesis.common.InitialPositionInStream;
import software.amazon.kinesis.common.InitialPositionInStreamExtended;
import software.amazon.kinesis.coordinator.Scheduler;
import software.amazon.kinesis.leases.LeaseManagementConfig;
import software.amazon.kinesis.metrics.MetricsLevel;
import software.amazon.kinesis.metrics.NullMetricsFactory;
import software.amazon.kinesis.processor.SingleStreamTracker;
import software.amazon.kinesis.retrieval.RetrievalConfig;
import software.amazon.kinesis.retrieval.polling.PollingConfig;

/**
 * A KCL 3.x consumer application as a user writes one, pointed at riffle-broker (Kinesis)
 * and a DynamoDB-compatible server (leases), with short timers so tests run fast.
 *
 * <p>Arguments are {@code key=value}: {@code kinesis=URL dynamodb=URL stream=NAME app=NAME
 * out=FILE [retrieval=fanout|polling] [worker=ID] [limit=N] [access_key=..] [secret_key=..]
 * [region=us-east-1]}.
 *
 * <p>SIGTERM runs the KCL's graceful shutdown (every processor checkpoints in
 * {@code shutdownRequested}), then writes {@code {"event":"shutdown_complete"}} to the output.
 */
public final class SampleApp {

    private SampleApp() {}

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>();
        for (String a : argv) {
            int eq = a.indexOf('=');
            if (eq <= 0) {
                throw new IllegalArgumentException("argument is not key=value: " + a);
            }
            args.put(a.substring(0, eq), a.substring(eq + 1));
        }
        String kinesisUrl = required(args, "kinesis");
        String dynamoUrl = required(args, "dynamodb");
        String stream = required(args, "stream");
        String app = required(args, "app");
        String out = required(args, "out");
        String retrieval = args.getOrDefault("retrieval", "fanout");
        long limit = Long.parseLong(args.getOrDefault("limit", String.valueOf(Long.MAX_VALUE)));
        String worker = args.getOrDefault("worker", "worker-" + ProcessHandle.current().pid());
        Region region = Region.of(args.getOrDefault("region", "us-east-1"));
        StaticCredentialsProvider credentials = StaticCredentialsProvider.create(AwsBasicCredentials.create(
                args.getOrDefault("access_key", "AKIDRIFFLECOMPAT"),
                args.getOrDefault("secret_key", "riffle-compat-secret")));

        // The Kinesis client exactly as KinesisClientUtil builds it, but with HTTP/2 over
        // cleartext (prior knowledge) since the endpoint is http://: SubscribeToShard needs HTTP/2.
        KinesisAsyncClient kinesis = KinesisAsyncClient.builder()
                .endpointOverride(URI.create(kinesisUrl))
                .region(region)
                .credentialsProvider(credentials)
                .httpClientBuilder(NettyNioAsyncHttpClient.builder()
                        .maxConcurrency(Integer.MAX_VALUE)
                        .http2Configuration(Http2Configuration.builder()
                                .initialWindowSize(512 * 1024)
                                .healthCheckPingPeriod(Duration.ofSeconds(60))
                                .build())
                        .protocol(Protocol.HTTP2))
                .build();
        DynamoDbAsyncClient dynamo = DynamoDbAsyncClient.builder()
                .endpointOverride(URI.create(dynamoUrl))
                .region(region)
                .credentialsProvider(credentials)
                .build();
        // Never called with metrics off; pointed at the DynamoDB server so nothing leaves the host.
        CloudWatchAsyncClient cloudWatch = CloudWatchAsyncClient.builder()
                .endpointOverride(URI.create(dynamoUrl))
                .region(region)
                .credentialsProvider(credentials)
                .build();

        JsonLinesOutput output = new JsonLinesOutput(out);
        SingleStreamTracker tracker = new SingleStreamTracker(
                stream, InitialPositionInStreamExtended.newInitialPosition(InitialPositionInStream.TRIM_HORIZON));
        ConfigsBuilder configs = new ConfigsBuilder(
                tracker, app, kinesis, dynamo, cloudWatch, worker, () -> new JsonLinesRecordProcessor(output, limit));

        LeaseManagementConfig leases = configs.leaseManagementConfig()
                .failoverTimeMillis(3000L)
                .shardSyncIntervalMillis(2000L)
                .leaseAssignmentIntervalMillis(1000L)
                .listShardsCacheAllowedAgeInSeconds(1L)
                // The 3.x leader (lease assignment) holds a DynamoDB lock: 120 s by default, so a
                // restarted application would wait two minutes for a leader.
                .dynamoDbLockBasedLeaderLeaseDurationInMillis(6000L)
                .dynamoDbLockBasedLeaderHeartbeatPeriodInMillis(2000L);
        leases.workerUtilizationAwareAssignmentConfig()
                .inMemoryWorkerMetricsCaptureFrequencyMillis(1000L)
                .workerMetricsReporterFreqInMillis(2000L);

        RetrievalConfig retrievalConfig = configs.retrievalConfig();
        if (retrieval.equals("polling")) {
            retrievalConfig.retrievalSpecificConfig(new PollingConfig(stream, kinesis)
                    .idleTimeBetweenReadsInMillis(PollingConfig.MIN_IDLE_MILLIS_BETWEEN_READS)
                    .maxRecords(1000));
        } else if (!retrieval.equals("fanout")) {
            throw new IllegalArgumentException("retrieval must be fanout or polling, not " + retrieval);
        }
        // fanout: the KCL's default retrieval (FanOutConfig), untouched.

        Scheduler scheduler = new Scheduler(
                configs.checkpointConfig(),
                configs.coordinatorConfig()
                        .parentShardPollIntervalMillis(500L)
                        .shardConsumerDispatchPollIntervalMillis(200L)
                        .schedulerInitializationBackoffTimeMillis(500L),
                leases,
                configs.lifecycleConfig(),
                configs.metricsConfig().metricsLevel(MetricsLevel.NONE).metricsFactory(new NullMetricsFactory()),
                configs.processorConfig(),
                retrievalConfig);

        CountDownLatch stopped = new CountDownLatch(1);
        Thread hook = new Thread(() -> {
            output.event("shutdown_started", null);
            try {
                boolean done = scheduler.startGracefulShutdown().get(30, TimeUnit.SECONDS);
                output.event("shutdown_complete", "{\"graceful\":" + done + "}");
            } catch (Exception e) {
                output.event("shutdown_failed", "{\"error\":" + JsonLinesOutput.quote(e.toString()) + "}");
            }
            try {
                stopped.await(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            output.close();
        }, "riffle-kcl-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);

        output.event("started", "{\"worker\":" + JsonLinesOutput.quote(worker) + ",\"retrieval\":"
                + JsonLinesOutput.quote(retrieval) + "}");
        try {
            scheduler.run();
        } finally {
            output.event("scheduler_returned", null);
            stopped.countDown();
        }
    }

    private static String required(Map<String, String> args, String key) throws IOException {
        String v = args.get(key);
        if (v == null || v.isEmpty()) {
            throw new IllegalArgumentException("missing argument " + key + "=...");
        }
        return v;
    }
}
