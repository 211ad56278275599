package dev.riffle.compat;

import static dev.riffle.compat.Runner.await;
import static dev.riffle.compat.Runner.check;
import static dev.riffle.compat.Runner.eq;

import software.amazon.awssdk.awscore.exception.AwsServiceException;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClient;
import software.amazon.awssdk.services.kinesis.KinesisClient;
import software.amazon.awssdk.services.kinesis.model.AccessDeniedException;
import software.amazon.awssdk.services.kinesis.model.KinesisException;

/** Signatures the broker must refuse: a wrong secret, an unknown key; over HTTP/2 and HTTP/1.1. */
final class AuthSuite {
    static final String BAD_SIGNATURE = "The request signature we calculated does not match the signature you"
            + " provided. Check your AWS Secret Access Key and signing method. Consult the service documentation"
            + " for details.";
    static final String UNKNOWN_KEY = "The security token included in the request is invalid.";

    final Runner r;
    final Clients clients;

    AuthSuite(Runner r, Clients clients) {
        this.r = r;
        this.clients = clients;
    }

    static KinesisException refused(Runner.Call call, String code, String message) throws Exception {
        try {
            Object ok = call.call();
            throw new AssertionError("the broker accepted the request: " + ok);
        } catch (Exception e) {
            Throwable c = Runner.unwrap(e);
            check(c instanceof KinesisException, "expected KinesisException, got " + Runner.describe(c));
            KinesisException k = (KinesisException) c;
            eq(code, k.awsErrorDetails().errorCode(), "error code");
            eq(400, k.statusCode(), "HTTP status");
            eq(message, k.awsErrorDetails().errorMessage(), "error message");
            check(!k.retryable(), "an authentication failure must not be retryable");
            return k;
        }
    }

    void run() {
        String wrong = clients.opts.wrongSecretKey;
        r.run("default_clients_from_environment", () -> {
            // An application that names nothing in code: KinesisAsyncClient.create() and
            // KinesisClient.create() take the endpoint (AWS_ENDPOINT_URL_KINESIS), region and
            // keys from the environment, and their default HTTP clients (Netty over HTTP/1.1 on
            // http://, Apache).
            check(System.getenv("AWS_ENDPOINT_URL_KINESIS") != null, "AWS_ENDPOINT_URL_KINESIS is not set");
            try (KinesisAsyncClient a = KinesisAsyncClient.create(); KinesisClient s = KinesisClient.create()) {
                String name = clients.opts.prefix + "-env";
                await(a.createStream(x -> x.streamName(name).shardCount(1)));
                AsyncSuite.waitActive(a, name);
                eq(java.util.List.of(), s.listShards(x -> x.streamName(name)).shards().stream()
                        .filter(sh -> sh.sequenceNumberRange().endingSequenceNumber() != null).toList(),
                        "closed shards");
                check(s.listStreams(x -> x.limit(1000)).streamNames().contains(name), "ListStreams lacks " + name);
                s.deleteStream(x -> x.streamName(name));
            }
        });
        r.run("auth_control_ok_h2", () -> {
            KinesisAsyncClient good = clients.async(clients.opts.secretKey);
            check(await(good.listStreams(x -> {})).streamNames() != null, "ListStreams");
            good.close();
        });
        r.run("auth_wrong_secret_h2", () -> {
            KinesisAsyncClient bad = clients.async(wrong);
            try {
                refused(() -> await(bad.listStreams(x -> {})), "InvalidSignatureException", BAD_SIGNATURE);
                refused(() -> await(bad.putRecord(x -> x.streamName("anything").partitionKey("k")
                        .data(software.amazon.awssdk.core.SdkBytes.fromUtf8String("x")))),
                        "InvalidSignatureException", BAD_SIGNATURE);
            } finally {
                bad.close();
            }
        });
        r.run("auth_wrong_secret_http1", () -> {
            KinesisClient bad = clients.sync(wrong);
            try {
                refused(() -> bad.listStreams(x -> {}), "InvalidSignatureException", BAD_SIGNATURE);
            } finally {
                bad.close();
            }
        });
        r.run("auth_access_denied_h2", () -> {
            // A known key whose user has no policy: signed correctly, then refused by policy.
            Options o = clients.opts;
            String saved = o.accessKey;
            o.accessKey = o.nobodyAccessKey;
            KinesisAsyncClient nobody = clients.async(o.nobodySecretKey);
            o.accessKey = saved;
            String stream = o.prefix + "-denied";
            try {
                Runner.expectError(AccessDeniedException.class, "AccessDeniedException",
                        "User: arn:aws:iam::000000000000:user/nobody is not authorized to perform: "
                                + "kinesis:DescribeStreamSummary on resource: " + AsyncSuite.arn(stream)
                                + " because no identity-based policy allows the kinesis:DescribeStreamSummary action",
                        () -> await(nobody.describeStreamSummary(x -> x.streamName(stream))));
            } finally {
                nobody.close();
            }
        });
        r.run("auth_unknown_key_h2", () -> {
            Options o = clients.opts;
            String saved = o.accessKey;
            o.accessKey = o.unknownAccessKey;
            KinesisAsyncClient bad = clients.async(o.secretKey);
            o.accessKey = saved;
            try {
                refused(() -> await(bad.listStreams(x -> {})), "UnrecognizedClientException", UNKNOWN_KEY);
            } finally {
                bad.close();
            }
        });
    }
}
