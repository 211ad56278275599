package dev.riffle.compat;

import java.io.InputStream;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.time.Duration;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.awscore.retry.AwsRetryStrategy;
import software.amazon.awssdk.core.client.config.ClientOverrideConfiguration;
import software.amazon.awssdk.http.Protocol;
import software.amazon.awssdk.http.ProtocolNegotiation;
import software.amazon.awssdk.http.SdkHttpClient;
import software.amazon.awssdk.http.TlsTrustManagersProvider;
import software.amazon.awssdk.http.apache.ApacheHttpClient;
import software.amazon.awssdk.http.nio.netty.NettyNioAsyncHttpClient;
import software.amazon.awssdk.http.urlconnection.UrlConnectionHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClient;
import software.amazon.awssdk.services.kinesis.KinesisClient;

/** Clients built the way an application builds them: endpoint override, static keys. */
final class Clients {
    final Options opts;
    final Recorder recorder = new Recorder();

    Clients(Options opts) {
        this.opts = opts;
    }

    StaticCredentialsProvider credentials(String secret) {
        return StaticCredentialsProvider.create(AwsBasicCredentials.create(opts.accessKey, secret));
    }

    ClientOverrideConfiguration override() {
        // No retries: an error must surface as the broker sent it, and a hang as a timeout.
        return ClientOverrideConfiguration.builder()
                .addExecutionInterceptor(recorder)
                .addMetricPublisher(recorder)
                .retryStrategy(AwsRetryStrategy.doNotRetry())
                .apiCallAttemptTimeout(Duration.ofSeconds(30))
                .build();
    }

    TlsTrustManagersProvider trust() {
        if (opts.caFile == null) {
            return null;
        }
        return () -> {
            try (InputStream in = Files.newInputStream(Path.of(opts.caFile))) {
                Certificate cert = CertificateFactory.getInstance("X.509").generateCertificate(in);
                KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
                ks.load(null, null);
                ks.setCertificateEntry("riffle-test-ca", cert);
                TrustManagerFactory tmf =
                        TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
                tmf.init(ks);
                TrustManager[] tms = tmf.getTrustManagers();
                return tms;
            } catch (Exception e) {
                throw new IllegalStateException("cannot load " + opts.caFile, e);
            }
        };
    }

    /**
     * KinesisAsyncClient on Netty. HTTP/2 (h2c with prior knowledge on http://, h2 on
     * https://) unless the options ask for HTTP/1.1, Netty's default.
     */
    KinesisAsyncClient async(String secret) {
        NettyNioAsyncHttpClient.Builder http = NettyNioAsyncHttpClient.builder()
                .protocol("h1".equals(opts.protocol) ? Protocol.HTTP1_1 : Protocol.HTTP2)
                .connectionTimeout(Duration.ofSeconds(10))
                .readTimeout(Duration.ofSeconds(30))
                .writeTimeout(Duration.ofSeconds(30));
        if (opts.alpn) {
            http.protocolNegotiation(ProtocolNegotiation.ALPN);
        }
        TlsTrustManagersProvider trust = trust();
        if (trust != null) {
            http.tlsTrustManagersProvider(trust);
        }
        return KinesisAsyncClient.builder()
                .endpointOverride(URI.create(opts.endpoint))
                .region(Region.US_EAST_1)
                .credentialsProvider(credentials(secret))
                .httpClient(http.build())
                .overrideConfiguration(override())
                .build();
    }

    /** KinesisClient (blocking), HTTP/1.1 through the Apache or the URLConnection client. */
    KinesisClient sync(String secret) {
        SdkHttpClient http;
        TlsTrustManagersProvider trust = trust();
        if ("urlconnection".equals(opts.httpClient)) {
            UrlConnectionHttpClient.Builder b = UrlConnectionHttpClient.builder()
                    .connectionTimeout(Duration.ofSeconds(10))
                    .socketTimeout(Duration.ofSeconds(30));
            if (trust != null) {
                b.tlsTrustManagersProvider(trust);
            }
            http = b.build();
        } else {
            ApacheHttpClient.Builder b = ApacheHttpClient.builder()
                    .connectionTimeout(Duration.ofSeconds(10))
                    .socketTimeout(Duration.ofSeconds(30));
            if (trust != null) {
                b.tlsTrustManagersProvider(trust);
            }
            http = b.build();
        }
        return KinesisClient.builder()
                .endpointOverride(URI.create(opts.endpoint))
                .region(Region.US_EAST_1)
                .credentialsProvider(credentials(secret))
                .httpClient(http)
                .overrideConfiguration(override())
                .build();
    }
}
