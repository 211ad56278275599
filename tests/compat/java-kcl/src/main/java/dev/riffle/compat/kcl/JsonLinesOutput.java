package dev.riffle.compat.kcl;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * The application's output: one JSON object a line, appended to a file and flushed after
 * every write, so a test reading the file sees each line as soon as it is written. Lines
 * from all record processors are serialised here, so the file's order is processing order.
 */
final class JsonLinesOutput {

    private final BufferedWriter writer;
    private boolean closed;

    JsonLinesOutput(String path) throws IOException {
        this.writer = Files.newBufferedWriter(Path.of(path), StandardCharsets.UTF_8,
                StandardOpenOption.CREATE, StandardOpenOption.APPEND);
    }

    /** Writes {@code {"event":NAME, ...fields}}; {@code fieldsJson} is null or a JSON object. */
    synchronized void event(String name, String fieldsJson) {
        StringBuilder line = new StringBuilder("{\"event\":").append(quote(name))
                .append(",\"ts_ms\":").append(System.currentTimeMillis());
        if (fieldsJson != null && fieldsJson.length() > 2) {
            line.append(',').append(fieldsJson, 1, fieldsJson.length() - 1);
        }
        line.append('}');
        writeLine(line.toString());
    }

    synchronized void writeLine(String line) {
        if (closed) {
            return;
        }
        try {
            writer.write(line);
            writer.write('\n');
            writer.flush();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            writer.close();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static String quote(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder b = new StringBuilder(s.length() + 2).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.append('"').toString();
    }
}
