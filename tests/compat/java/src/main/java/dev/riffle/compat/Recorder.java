package dev.riffle.compat;

import java.util.ArrayList;
import java.util.List;
import software.amazon.awssdk.core.interceptor.Context;
import software.amazon.awssdk.core.interceptor.ExecutionAttributes;
import software.amazon.awssdk.core.interceptor.ExecutionInterceptor;
import software.amazon.awssdk.core.interceptor.SdkExecutionAttribute;
import software.amazon.awssdk.core.metrics.CoreMetric;
import software.amazon.awssdk.http.Http2Metric;
import software.amazon.awssdk.http.HttpMetric;
import software.amazon.awssdk.metrics.MetricCollection;
import software.amazon.awssdk.metrics.MetricPublisher;

/**
 * What went over the wire, seen from inside the SDK: the Content-Type of every request as it
 * was transmitted and of every response, and, from the SDK's own metrics, whether the call
 * went over HTTP/2 (the Netty client reports stream window sizes only for HTTP/2 streams).
 */
final class Recorder implements ExecutionInterceptor, MetricPublisher {
    record Exchange(String operation, String requestType, String responseType, int status,
            String authorization) {}

    record Call(String operation, String httpClient, boolean http2) {}

    private final List<Exchange> exchanges = new ArrayList<>();
    private final List<Call> calls = new ArrayList<>();

    @Override
    public void afterTransmission(Context.AfterTransmission ctx, ExecutionAttributes attrs) {
        String op = attrs.getAttribute(SdkExecutionAttribute.OPERATION_NAME);
        String reqType = ctx.httpRequest().firstMatchingHeader("Content-Type").orElse(null);
        String auth = ctx.httpRequest().firstMatchingHeader("Authorization").orElse("");
        String respType = ctx.httpResponse().firstMatchingHeader("Content-Type").orElse(null);
        synchronized (this) {
            exchanges.add(new Exchange(op, reqType, respType, ctx.httpResponse().statusCode(),
                    auth.startsWith("AWS4-HMAC-SHA256 ") ? "sigv4" : auth.isEmpty() ? "none" : "other"));
        }
    }

    @Override
    public void publish(MetricCollection metrics) {
        String op = metrics.metricValues(CoreMetric.OPERATION_NAME).stream().findFirst().orElse("?");
        List<String> clients = new ArrayList<>();
        boolean[] h2 = {false};
        walk(metrics, clients, h2);
        synchronized (this) {
            calls.add(new Call(op, clients.isEmpty() ? null : clients.get(0), h2[0]));
        }
    }

    private static void walk(MetricCollection m, List<String> clients, boolean[] h2) {
        clients.addAll(m.metricValues(HttpMetric.HTTP_CLIENT_NAME));
        if (!m.metricValues(Http2Metric.LOCAL_STREAM_WINDOW_SIZE_IN_BYTES).isEmpty()) {
            h2[0] = true;
        }
        for (MetricCollection child : m.children()) {
            walk(child, clients, h2);
        }
    }

    @Override
    public void close() {}

    synchronized List<Exchange> exchanges() {
        return new ArrayList<>(exchanges);
    }

    synchronized List<Call> calls() {
        return new ArrayList<>(calls);
    }
}
