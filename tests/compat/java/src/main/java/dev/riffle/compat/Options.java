package dev.riffle.compat;

/**
 * Command line: {@code KinesisCompat SUITE --endpoint URL --prefix NAME [--ca-file PEM]
 * [--alpn] [--protocol h2|h1] [--http-client apache|urlconnection] [--expect-content-type TYPE]}.
 * The access key comes from RIFFLE_ACCESS_KEY, the secret from RIFFLE_SECRET_KEY (kept off
 * the command line); for the auth suite a wrong secret from RIFFLE_WRONG_SECRET_KEY, an unknown
 * key id from RIFFLE_UNKNOWN_ACCESS_KEY, a user without policies from RIFFLE_NOBODY_*.
 */
final class Options {
    String suite;
    String endpoint;
    String prefix = "java";
    String caFile;
    boolean alpn;
    String httpClient = "apache";
    String expectContentType = "application/x-amz-cbor-1.1";
    String accessKey = env("RIFFLE_ACCESS_KEY");
    String secretKey = env("RIFFLE_SECRET_KEY");
    String wrongSecretKey = System.getenv("RIFFLE_WRONG_SECRET_KEY");
    String unknownAccessKey = System.getenv("RIFFLE_UNKNOWN_ACCESS_KEY");
    String nobodyAccessKey = System.getenv("RIFFLE_NOBODY_ACCESS_KEY");
    String nobodySecretKey = System.getenv("RIFFLE_NOBODY_SECRET_KEY");
    /** async suite: h2 (Protocol.HTTP2, the default here) or h1 (Netty's HTTP/1.1). */
    String protocol = "h2";

    static String env(String name) {
        String v = System.getenv(name);
        if (v == null || v.isEmpty()) {
            throw new IllegalArgumentException(name + " is not set");
        }
        return v;
    }

    static Options parse(String[] args) {
        Options o = new Options();
        if (args.length == 0) {
            throw new IllegalArgumentException("usage: KinesisCompat SUITE --endpoint URL ...");
        }
        o.suite = args[0];
        for (int i = 1; i < args.length; i++) {
            switch (args[i]) {
                case "--endpoint" -> o.endpoint = args[++i];
                case "--prefix" -> o.prefix = args[++i];
                case "--ca-file" -> o.caFile = args[++i];
                case "--alpn" -> o.alpn = true;
                case "--protocol" -> o.protocol = args[++i];
                case "--http-client" -> o.httpClient = args[++i];
                case "--expect-content-type" -> o.expectContentType = args[++i];
                default -> throw new IllegalArgumentException("unknown argument " + args[i]);
            }
        }
        if (o.endpoint == null) {
            throw new IllegalArgumentException("--endpoint is required");
        }
        return o;
    }
}
