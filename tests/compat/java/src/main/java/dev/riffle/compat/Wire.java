package dev.riffle.compat;

import static dev.riffle.compat.Runner.check;


import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/** Checks what the Recorder saw: the body format of every exchange, and the HTTP version. */
final class Wire {
    static final String EVENT_STREAM = "application/vnd.amazon.eventstream";
    static final String JSON = "application/x-amz-json-1.1";

    static void verify(Runner r, Clients clients, String expectType, boolean http2) {
        Recorder rec = clients.recorder;
        r.run("wire_content_type", () -> {
            List<Recorder.Exchange> ex = rec.exchanges();
            check(ex.size() >= 5, "only " + ex.size() + " exchanges recorded");
            Map<String, String> bad = new TreeMap<>();
            for (Recorder.Exchange e : ex) {
                // The SDK sends SubscribeToShard (its one event-stream operation) as JSON even
                // with CBOR on; the broker answers an error in the request's format.
                boolean sub = "SubscribeToShard".equals(e.operation());
                String wantRequest = sub ? JSON : expectType;
                if (!wantRequest.equals(e.requestType())) {
                    bad.put(e.operation() + " request", String.valueOf(e.requestType()));
                }
                String want = sub ? (e.status() == 200 ? EVENT_STREAM : JSON) : expectType;
                if (!want.equals(e.responseType())) {
                    bad.put(e.operation() + " response " + e.status(), String.valueOf(e.responseType()));
                }
                if (!"sigv4".equals(e.authorization())) {
                    bad.put(e.operation() + " authorization", e.authorization());
                }
            }
            check(bad.isEmpty(), "expected Content-Type " + expectType + " on " + ex.size()
                    + " exchanges; these differ: " + bad);
        });
        r.run(http2 ? "wire_http2" : "wire_http1", () -> {
            // The SDK publishes a call's metrics as the call ends, possibly just after its future.
            for (int i = 0; i < 60 && rec.calls().size() < rec.exchanges().size(); i++) {
                Runner.sleep(50);
            }
            List<Recorder.Call> calls = rec.calls();
            check(calls.size() >= rec.exchanges().size(), calls.size() + " calls published for "
                    + rec.exchanges().size() + " exchanges");
            Map<String, String> bad = new TreeMap<>();
            String wantClient = !"sync".equals(clients.opts.suite) ? "NettyNio"
                    : "urlconnection".equals(clients.opts.httpClient) ? "UrlConnection" : "Apache";
            for (Recorder.Call c : calls) {
                if (c.http2() != http2) {
                    bad.put(c.operation(), "http2=" + c.http2());
                }
                // The URLConnection client reports no HttpClientName metric.
                String gotClient = c.httpClient() == null && "UrlConnection".equals(wantClient)
                        ? wantClient : c.httpClient();
                if (!wantClient.equals(gotClient)) {
                    bad.put(c.operation() + " client", String.valueOf(c.httpClient()));
                }
            }
            check(bad.isEmpty(), "expected " + (http2 ? "HTTP/2" : "HTTP/1.1") + " via " + wantClient
                    + " on " + calls.size() + " calls; these differ: " + bad);
        });
    }
}
