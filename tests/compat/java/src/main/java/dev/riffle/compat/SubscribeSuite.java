package dev.riffle.compat;

import static dev.riffle.compat.Runner.await;
import static dev.riffle.compat.Runner.check;
import static dev.riffle.compat.Runner.eq;
import static dev.riffle.compat.Runner.expectError;
import static dev.riffle.compat.Runner.near;

import java.math.BigInteger;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.reactivestreams.Subscriber;
import org.reactivestreams.Subscription;
import software.amazon.awssdk.core.SdkBytes;
import software.amazon.awssdk.core.async.SdkPublisher;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClient;
import software.amazon.awssdk.services.kinesis.model.*;
import software.amazon.awssdk.services.kinesis.model.Record;

/** Enhanced fan-out: SubscribeToShard over HTTP/2 with KinesisAsyncClient. */
final class SubscribeSuite {
    static final Duration EVENT_TIMEOUT = Duration.ofSeconds(20);
    static final Object DONE = new Object();

    record Failed(Throwable error) {}

    /** A handler that queues what the SDK delivers, so the test thread waits with timeouts. */
    static final class Sub implements SubscribeToShardResponseHandler {
        final BlockingQueue<Object> queue = new LinkedBlockingQueue<>();
        volatile Subscription subscription;
        volatile SubscribeToShardResponse response;
        volatile boolean cancelled;
        CompletableFuture<Void> future;
        /** An item taken off the queue and handed back (see pushBack). */
        Object head;

        @Override
        public void responseReceived(SubscribeToShardResponse r) {
            response = r;
        }

        @Override
        public void onEventStream(SdkPublisher<SubscribeToShardEventStream> publisher) {
            publisher.subscribe(new Subscriber<SubscribeToShardEventStream>() {
                @Override
                public void onSubscribe(Subscription s) {
                    subscription = s;
                    s.request(1);
                }

                @Override
                public void onNext(SubscribeToShardEventStream e) {
                    queue.add(e);
                    if (!cancelled) {
                        subscription.request(1);
                    }
                }

                @Override
                public void onError(Throwable t) {
                    queue.add(new Failed(t));
                }

                @Override
                public void onComplete() {
                    queue.add(DONE);
                }
            });
        }

        @Override
        public void exceptionOccurred(Throwable t) {
            queue.add(new Failed(t));
        }

        @Override
        public void complete() {}

        /** The next SubscribeToShardEvent, DONE at the end; fails on an error or a timeout. */
        Object next(long deadlineNanos) throws InterruptedException {
            Object o = head;
            head = null;
            if (o == null) {
                long left = deadlineNanos - System.nanoTime();
                o = queue.poll(Math.max(left, 0), TimeUnit.NANOSECONDS);
            }
            check(o != null, "no event within " + EVENT_TIMEOUT);
            if (o instanceof Failed f) {
                throw new AssertionError("the event stream failed: " + Runner.describe(f.error()), f.error());
            }
            return o;
        }

        void cancel() {
            cancelled = true;
            Subscription s = subscription;
            if (s != null) {
                s.cancel();
            }
        }
    }

    final Runner r;
    final Clients clients;
    final KinesisAsyncClient k;
    final String stream;
    String streamArn;
    String consumerArn;
    final List<String> seqs = new ArrayList<>();
    final List<String> seqs2 = new ArrayList<>();
    String continuation;
    Sub second;

    SubscribeSuite(Runner r, Clients clients) {
        this.r = r;
        this.clients = clients;
        this.k = clients.async(clients.opts.secretKey);
        this.stream = clients.opts.prefix + "-efo";
    }

    Sub subscribe(StartingPosition pos) {
        return subscribeTo(AsyncSuite.SHARD0, pos);
    }

    Sub subscribeTo(String shard, StartingPosition pos) {
        Sub h = new Sub();
        h.future = k.subscribeToShard(x -> x.consumerARN(consumerArn).shardId(shard)
                .startingPosition(pos), h);
        return h;
    }

    List<String> put(String tag, int n) throws Exception {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            final int j = i;
            out.add(await(k.putRecord(x -> x.streamName(stream).partitionKey("pk-" + (j % 4))
                    .data(SdkBytes.fromUtf8String(tag + "-" + j)))).sequenceNumber());
        }
        return out;
    }

    /** Reads events until `want` records came; returns the last event. */
    SubscribeToShardEvent collect(Sub h, List<String> want, String tag) throws Exception {
        long deadline = System.nanoTime() + EVENT_TIMEOUT.toNanos();
        List<Record> got = new ArrayList<>();
        SubscribeToShardEvent last = null;
        for (int events = 0; got.size() < want.size() && events < 500; events++) {
            Object o = h.next(deadline);
            check(o != DONE, "the stream ended after " + got.size() + " of " + want.size() + " records");
            check(o instanceof SubscribeToShardEvent, "unexpected event " + o);
            last = (SubscribeToShardEvent) o;
            check(last.continuationSequenceNumber() != null, "ContinuationSequenceNumber is missing");
            check(last.millisBehindLatest() != null && last.millisBehindLatest() >= 0, "MillisBehindLatest");
            got.addAll(last.records());
        }
        eq(want, got.stream().map(Record::sequenceNumber).toList(), "sequence numbers, in order");
        for (int i = 0; i < got.size(); i++) {
            eq(tag + "-" + i, got.get(i).data().asUtf8String(), "Data");
            eq("pk-" + (i % 4), got.get(i).partitionKey(), "PartitionKey");
            near(got.get(i).approximateArrivalTimestamp(), Duration.ofMinutes(2), "ApproximateArrivalTimestamp");
        }
        return last;
    }

    /** Reads events until the records `want` came: data "tag-i", in order. */
    void collectKeys(Sub h, List<String> want, String tag) throws Exception {
        long deadline = System.nanoTime() + EVENT_TIMEOUT.toNanos();
        List<Record> got = new ArrayList<>();
        for (int events = 0; got.size() < want.size() && events < 500; events++) {
            Object o = h.next(deadline);
            check(o != DONE, tag + ": the stream ended after " + got.size() + " records");
            got.addAll(((SubscribeToShardEvent) o).records());
        }
        eq(want, got.stream().map(Record::sequenceNumber).toList(), tag + " sequence numbers");
        for (int i = 0; i < got.size(); i++) {
            eq(tag + "-" + i, got.get(i).data().asUtf8String(), tag + " Data");
        }
    }

    void run() {
        r.run("subscribe_setup", () -> {
            await(k.createStream(x -> x.streamName(stream).shardCount(1)));
            streamArn = AsyncSuite.waitActive(k, stream).streamARN();
            consumerArn = await(k.registerStreamConsumer(x -> x.streamARN(streamArn).consumerName("java-efo")))
                    .consumer().consumerARN();
            ConsumerStatus st = null;
            for (int i = 0; i < 300 && st != ConsumerStatus.ACTIVE; i++) {
                st = await(k.describeStreamConsumer(x -> x.consumerARN(consumerArn))).consumerDescription()
                        .consumerStatus();
                if (st != ConsumerStatus.ACTIVE) {
                    Runner.sleep(50);
                }
            }
            eq(ConsumerStatus.ACTIVE, st, "ConsumerStatus");
        });

        r.run("subscribe_records_in_order", () -> {
            seqs.addAll(put("first", 20));
            Sub h = subscribe(StartingPosition.builder().type(ShardIteratorType.TRIM_HORIZON).build());
            try {
                SubscribeToShardEvent last = collect(h, seqs, "first");
                check(h.response != null, "initial response not delivered");
                continuation = last.continuationSequenceNumber();
                check(new BigInteger(continuation).compareTo(new BigInteger(seqs.get(seqs.size() - 1))) >= 0,
                        "ContinuationSequenceNumber " + continuation + " before the last record");
                // A second subscription of the consumer to the shard within 5 s is refused.
                expectError(ResourceInUseException.class, "ResourceInUseException", null,
                        () -> await(k.subscribeToShard(x -> x.consumerARN(consumerArn).shardId(AsyncSuite.SHARD0)
                                .startingPosition(p -> p.type(ShardIteratorType.LATEST)), new Sub())));
            } finally {
                h.cancel();
            }
            // Cancelling ends the call: the future completes (normally or exceptionally).
            try {
                h.future.get(10, TimeUnit.SECONDS);
            } catch (java.util.concurrent.ExecutionException | java.util.concurrent.CancellationException e) {
                // ended, as wanted
            } catch (java.util.concurrent.TimeoutException e) {
                throw new AssertionError("the cancelled subscription's future did not complete in 10 s");
            }
        });

        r.run("subscribe_resume_after_sequence_number", () -> {
            check(continuation != null, "no continuation from the first subscription");
            seqs2.addAll(put("second", 10));
            StartingPosition pos = StartingPosition.builder().type(ShardIteratorType.AFTER_SEQUENCE_NUMBER)
                    .sequenceNumber(continuation).build();
            // The cancelled subscription holds the slot until the broker sees the stream reset;
            // AWS refuses a new one within 5 s of the last, so retry (bounded) on ResourceInUse.
            long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
            Sub h;
            while (true) {
                h = subscribe(pos);
                Object first = h.queue.poll(EVENT_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
                check(first != null, "no event within " + EVENT_TIMEOUT);
                if (first instanceof Failed f && Runner.unwrap(f.error()) instanceof ResourceInUseException
                        && System.nanoTime() < deadline) {
                    Runner.sleep(500);
                    continue;
                }
                h.head = first; // collect() reads it first
                break;
            }
            second = h;
            collect(h, seqs2, "second");
        });

        r.run("subscribe_child_shards_after_split", () -> {
            check(second != null, "no open subscription");
            Sub h = second;
            try {
                await(k.splitShard(x -> x.streamName(stream).shardToSplit(AsyncSuite.SHARD0)
                        .newStartingHashKey(AsyncSuite.MID_HASH.toString())));
                long deadline = System.nanoTime() + EVENT_TIMEOUT.toNanos();
                SubscribeToShardEvent withChildren = null;
                for (int i = 0; i < 500 && withChildren == null; i++) {
                    Object o = h.next(deadline);
                    check(o != DONE, "the stream ended without ChildShards");
                    SubscribeToShardEvent e = (SubscribeToShardEvent) o;
                    eq(List.of(), e.records(), "records after the split");
                    if (e.hasChildShards() && !e.childShards().isEmpty()) {
                        withChildren = e;
                    }
                }
                check(withChildren != null, "no ChildShards event");
                eq(List.of(AsyncSuite.SHARD1, AsyncSuite.SHARD2),
                        withChildren.childShards().stream().map(ChildShard::shardId).sorted().toList(), "ChildShards");
                for (ChildShard c : withChildren.childShards()) {
                    eq(List.of(AsyncSuite.SHARD0), c.parentShards(), c.shardId() + " ParentShards");
                    check(c.hashKeyRange() != null, c.shardId() + " HashKeyRange");
                }
                // After the ChildShards event the stream ends.
                Object end = h.next(System.nanoTime() + EVENT_TIMEOUT.toNanos());
                check(end == DONE, "expected the end of the stream after ChildShards, got " + end);
                h.future.get(10, TimeUnit.SECONDS);
            } finally {
                h.cancel();
            }
        });

        r.run("subscribe_children_concurrently", () -> {
            // What the KCL does after a split: subscribe to both children at once, on the
            // client's one HTTP/2 connection. One from LATEST, one from AT_TIMESTAMP.
            java.time.Instant before = java.time.Instant.now().minusMillis(500);
            Sub latest = subscribeTo(AsyncSuite.SHARD1, StartingPosition.builder()
                    .type(ShardIteratorType.LATEST).build());
            Sub atTime = subscribeTo(AsyncSuite.SHARD2, StartingPosition.builder()
                    .type(ShardIteratorType.AT_TIMESTAMP).timestamp(before).build());
            try {
                long deadline = System.nanoTime() + EVENT_TIMEOUT.toNanos();
                // LATEST starts where the shard ends when the subscription starts: wait for it.
                while (latest.response == null && latest.queue.isEmpty() && System.nanoTime() < deadline) {
                    Runner.sleep(20);
                }
                check(latest.response != null, "no initial response for the LATEST subscription");
                List<String> low = new ArrayList<>();
                List<String> high = new ArrayList<>();
                for (int i = 0; i < 6; i++) {
                    final int j = i;
                    PutRecordResponse p = await(k.putRecord(x -> x.streamName(stream).partitionKey("pk-" + (j % 4))
                            .explicitHashKey(j % 2 == 0 ? "7" : AsyncSuite.MAX_HASH.toString())
                            .data(SdkBytes.fromUtf8String((j % 2 == 0 ? "low" : "high") + "-" + (j / 2)))));
                    (j % 2 == 0 ? low : high).add(p.sequenceNumber());
                    eq(j % 2 == 0 ? AsyncSuite.SHARD1 : AsyncSuite.SHARD2, p.shardId(), "ShardId");
                }
                collectKeys(latest, low, "low");
                collectKeys(atTime, high, "high");
            } finally {
                latest.cancel();
                atTime.cancel();
            }
        });

        r.run("subscribe_errors", () -> {
            Sub h = subscribeTo("shardId-000000000099", StartingPosition.builder()
                    .type(ShardIteratorType.LATEST).build());
            Object o = h.queue.poll(EVENT_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            check(o instanceof Failed, "expected a failure, got " + o);
            Throwable t = Runner.unwrap(((Failed) o).error());
            check(t instanceof ResourceNotFoundException, "expected ResourceNotFoundException, got "
                    + Runner.describe(t));
            expectError(ResourceNotFoundException.class, "ResourceNotFoundException", null,
                    () -> await(h.future));
        });

        r.run("subscribe_cleanup", () -> {
            await(k.deleteStream(x -> x.streamName(stream).enforceConsumerDeletion(true)));
        });

        Wire.verify(r, clients, clients.opts.expectContentType, true);
        k.close();
    }
}
