package dev.riffle.compat.kcl;

import java.nio.ByteBuffer;
import java.util.Base64;

import software.amazon.kinesis.exceptions.InvalidStateException;
import software.amazon.kinesis.exceptions.ShutdownException;
import software.amazon.kinesis.exceptions.ThrottlingException;
import software.amazon.kinesis.lifecycle.events.InitializationInput;
import software.amazon.kinesis.lifecycle.events.LeaseLostInput;
import software.amazon.kinesis.lifecycle.events.ProcessRecordsInput;
import software.amazon.kinesis.lifecycle.events.ShardEndedInput;
import software.amazon.kinesis.lifecycle.events.ShutdownRequestedInput;
import software.amazon.kinesis.processor.RecordProcessorCheckpointer;
import software.amazon.kinesis.processor.ShardRecordProcessor;
import software.amazon.kinesis.retrieval.KinesisClientRecord;
import software.amazon.kinesis.retrieval.kpl.ExtendedSequenceNumber;

/**
 * Writes every record it is given as a JSON line ({@code event=record}: shard, sequence and
 * sub-sequence number, partition key, base64 data), then checkpoints the batch. Lifecycle
 * calls are written as lines too ({@code initialize} with the checkpoint the KCL resumes
 * from, {@code checkpoint}, {@code shard_ended}, {@code lease_lost}, {@code shutdown_requested}).
 *
 * <p>With a {@code limit}, only the shard's first {@code limit} records are processed (the rest
 * are dropped unwritten and uncheckpointed), and a graceful shutdown checkpoints at the last
 * processed record, (sequence, sub-sequence) number, which can be inside an aggregate.
 */
final class JsonLinesRecordProcessor implements ShardRecordProcessor {

    private final JsonLinesOutput output;
    private final long limit;
    private String shardId;
    private long processed;
    private String lastSeq;
    private long lastSub;

    JsonLinesRecordProcessor(JsonLinesOutput output) {
        this(output, Long.MAX_VALUE);
    }

    JsonLinesRecordProcessor(JsonLinesOutput output, long limit) {
        this.output = output;
        this.limit = limit;
    }

    @Override
    public void initialize(InitializationInput input) {
        shardId = input.shardId();
        ExtendedSequenceNumber at = input.extendedSequenceNumber();
        output.event("initialize", "{\"shard\":" + JsonLinesOutput.quote(shardId)
                + ",\"checkpoint\":" + JsonLinesOutput.quote(at == null ? null : at.sequenceNumber())
                + ",\"checkpoint_sub\":" + (at == null ? 0 : at.subSequenceNumber()) + "}");
    }

    @Override
    public void processRecords(ProcessRecordsInput input) {
        String last = null;
        long lastSub = 0;
        for (KinesisClientRecord r : input.records()) {
            if (processed >= limit) {
                break;
            }
            processed++;
            ByteBuffer data = r.data().asReadOnlyBuffer();
            byte[] bytes = new byte[data.remaining()];
            data.get(bytes);
            output.event("record", "{\"shard\":" + JsonLinesOutput.quote(shardId)
                    + ",\"seq\":" + JsonLinesOutput.quote(r.sequenceNumber())
                    + ",\"sub\":" + r.subSequenceNumber()
                    + ",\"pk\":" + JsonLinesOutput.quote(r.partitionKey())
                    + ",\"data\":" + JsonLinesOutput.quote(Base64.getEncoder().encodeToString(bytes))
                    + ",\"millis_behind\":" + input.millisBehindLatest() + "}");
            last = r.sequenceNumber();
            lastSub = r.subSequenceNumber();
        }
        if (last != null) {
            lastSeq = last;
            this.lastSub = lastSub;
            if (limit == Long.MAX_VALUE) {
                checkpoint(input.checkpointer(), "batch", last, lastSub);
            } else {
                checkpointAt(input.checkpointer(), "batch", last, lastSub);
            }
        }
    }

    @Override
    public void leaseLost(LeaseLostInput input) {
        output.event("lease_lost", "{\"shard\":" + JsonLinesOutput.quote(shardId) + "}");
    }

    @Override
    public void shardEnded(ShardEndedInput input) {
        output.event("shard_ended", "{\"shard\":" + JsonLinesOutput.quote(shardId) + "}");
        checkpoint(input.checkpointer(), "shard_end", null, 0);
    }

    @Override
    public void shutdownRequested(ShutdownRequestedInput input) {
        output.event("shutdown_requested", "{\"shard\":" + JsonLinesOutput.quote(shardId) + "}");
        if (limit != Long.MAX_VALUE && lastSeq != null) {
            checkpointAt(input.checkpointer(), "shutdown", lastSeq, lastSub);
        } else {
            checkpoint(input.checkpointer(), "shutdown", null, 0);
        }
    }

    /** Checkpoints exactly at (seq, sub). */
    private void checkpointAt(RecordProcessorCheckpointer checkpointer, String why, String seq, long sub) {
        String fields = "{\"shard\":" + JsonLinesOutput.quote(shardId) + ",\"why\":" + JsonLinesOutput.quote(why)
                + ",\"seq\":" + JsonLinesOutput.quote(seq) + ",\"sub\":" + sub;
        try {
            checkpointer.checkpoint(seq, sub);
            output.event("checkpoint", fields + "}");
        } catch (ShutdownException | InvalidStateException | ThrottlingException e) {
            output.event("checkpoint_failed", fields + ",\"error\":" + JsonLinesOutput.quote(e.toString()) + "}");
        }
    }

    private void checkpoint(RecordProcessorCheckpointer checkpointer, String why, String seq, long sub) {
        String fields = "{\"shard\":" + JsonLinesOutput.quote(shardId) + ",\"why\":" + JsonLinesOutput.quote(why)
                + ",\"seq\":" + JsonLinesOutput.quote(seq) + ",\"sub\":" + sub;
        try {
            checkpointer.checkpoint();
            output.event("checkpoint", fields + "}");
        } catch (ShutdownException | InvalidStateException | ThrottlingException e) {
            output.event("checkpoint_failed", fields + ",\"error\":" + JsonLinesOutput.quote(e.toString()) + "}");
        }
    }
}
