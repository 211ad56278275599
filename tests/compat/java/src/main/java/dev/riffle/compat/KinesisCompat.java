package dev.riffle.compat;

/**
 * The AWS SDK for Java v2 against riffle-broker. Suites: async (every operation through
 * KinesisAsyncClient on Netty/HTTP2), subscribe (SubscribeToShard), sync (KinesisClient over
 * HTTP/1.1), auth (refused signatures). See Options for the command line. Exit status 0 when
 * every case passed, 1 otherwise, 2 on a usage error.
 */
public final class KinesisCompat {
    public static void main(String[] args) {
        Options opts;
        try {
            opts = Options.parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println(e.getMessage());
            System.exit(2);
            return;
        }
        Runner r = new Runner();
        Clients clients = new Clients(opts);
        switch (opts.suite) {
            case "async" -> new AsyncSuite(r, clients).run();
            case "subscribe" -> new SubscribeSuite(r, clients).run();
            case "sync" -> new SyncSuite(r, clients).run();
            case "auth" -> new AuthSuite(r, clients).run();
            case "throttle" -> new ThrottleSuite(r, clients).run();
            default -> {
                System.err.println("unknown suite " + opts.suite);
                System.exit(2);
            }
        }
        r.finish();
        System.out.flush();
        // Netty's event loops are non-daemon threads: exit explicitly.
        System.exit(r.failed == 0 ? 0 : 1);
    }
}
