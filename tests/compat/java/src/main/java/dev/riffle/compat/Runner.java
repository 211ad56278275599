package dev.riffle.compat;

import java.io.PrintStream;
import java.time.Duration;
import java.time.Instant;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import software.amazon.awssdk.awscore.exception.AwsServiceException;

/**
 * Runs named cases and prints one machine-readable line per case:
 * {@code RESULT {"case":"...","ok":true|false,"ms":N,"detail":"..."}}, then the closing line
 * {@code N passed, M failed}. The pytest side (test_java_sdk.py) asserts on each case.
 */
final class Runner {
    interface Body {
        void run() throws Exception;
    }

    static final Duration CALL_TIMEOUT = Duration.ofSeconds(30);

    private final PrintStream out = System.out;
    int passed;
    int failed;

    void run(String name, Body body) {
        long t0 = System.nanoTime();
        String detail = "";
        boolean ok;
        try {
            body.run();
            ok = true;
        } catch (Throwable t) {
            ok = false;
            detail = describe(t);
        }
        long ms = (System.nanoTime() - t0) / 1_000_000;
        if (ok) {
            passed++;
        } else {
            failed++;
        }
        out.println("RESULT {\"case\":" + json(name) + ",\"ok\":" + ok + ",\"ms\":" + ms
                + ",\"detail\":" + json(detail) + "}");
        out.flush();
    }

    void finish() {
        out.println(passed + " passed, " + failed + " failed");
        out.flush();
    }

    static String describe(Throwable t) {
        Throwable c = unwrap(t);
        StringBuilder sb = new StringBuilder(c.getClass().getName());
        if (c instanceof AwsServiceException e && e.awsErrorDetails() != null) {
            sb.append(" [errorCode=").append(e.awsErrorDetails().errorCode())
                    .append(", status=").append(e.statusCode())
                    .append(", message=").append(e.awsErrorDetails().errorMessage()).append(']');
        } else {
            sb.append(": ").append(c.getMessage());
        }
        StackTraceElement[] st = c.getStackTrace();
        for (int i = 0; i < Math.min(st.length, 12); i++) {
            if (st[i].getClassName().startsWith("dev.riffle")) {
                sb.append(" at ").append(st[i]);
                break;
            }
        }
        if (c.getCause() != null && c.getCause() != c) {
            sb.append(" caused by ").append(c.getCause());
        }
        return sb.toString();
    }

    static Throwable unwrap(Throwable t) {
        while ((t instanceof CompletionException || t instanceof ExecutionException)
                && t.getCause() != null) {
            t = t.getCause();
        }
        return t;
    }

    static String json(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            switch (ch) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                default -> {
                    if (ch < 0x20) {
                        sb.append(String.format("\\u%04x", (int) ch));
                    } else {
                        sb.append(ch);
                    }
                }
            }
        }
        return sb.append('"').toString();
    }

    // ---- assertions -------------------------------------------------------------------

    static void check(boolean cond, String what) {
        if (!cond) {
            throw new AssertionError(what);
        }
    }

    static void eq(Object expected, Object actual, String what) {
        if (!Objects.equals(expected, actual)) {
            throw new AssertionError(what + ": expected <" + expected + "> but was <" + actual + ">");
        }
    }

    static void near(Instant t, Duration tolerance, String what) {
        check(t != null, what + " is missing");
        Duration d = Duration.between(t, Instant.now()).abs();
        check(d.compareTo(tolerance) <= 0, what + " " + t + " is " + d + " away from now");
    }

    /** Waits for an async call (bounded) and rethrows the SDK's own exception. */
    static <T> T await(CompletableFuture<T> f) throws Exception {
        try {
            return f.get(CALL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            Throwable c = unwrap(e);
            if (c instanceof Exception ex) {
                throw ex;
            }
            throw e;
        } catch (TimeoutException e) {
            f.cancel(true);
            throw new AssertionError("call did not complete within " + CALL_TIMEOUT);
        }
    }

    interface Call {
        Object call() throws Exception;
    }

    /** The call must fail with `type` (the SDK's modelled exception), AWS's code and message. */
    static <E extends AwsServiceException> E expectError(Class<E> type, String code, String message,
            Call call) throws Exception {
        Object result;
        try {
            result = call.call();
        } catch (Exception e) {
            Throwable c = unwrap(e);
            if (!type.isInstance(c)) {
                throw new AssertionError("expected " + type.getSimpleName() + " but got " + describe(c), c);
            }
            E err = type.cast(c);
            eq(400, err.statusCode(), "HTTP status");
            eq(code, err.awsErrorDetails().errorCode(), "error code");
            if (message != null) {
                eq(message, err.awsErrorDetails().errorMessage(), "error message");
            }
            check(err.requestId() != null && !err.requestId().isEmpty(), "request id is missing");
            return err;
        }
        throw new AssertionError("expected " + type.getSimpleName() + " but the call returned " + result);
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted");
        }
    }
}
