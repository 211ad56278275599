//! Enhanced fan-out end to end: consumer registration and SubscribeToShard
//! driven by the AWS SDK for Rust (on `http://` its event stream is a
//! chunked HTTP/1.1 response).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::event_stream::EventReceiver;
use aws_sdk_kinesis::types::error::SubscribeToShardEventStreamError;
use aws_sdk_kinesis::types::{
    ConsumerStatus, PutRecordsRequestEntry, Record, ShardIteratorType, StartingPosition,
    SubscribeToShardEvent, SubscribeToShardEventStream,
};
use aws_sdk_kinesis::Client;
use aws_smithy_types::DateTime;

use crate::common::*;

/// The only shard of a one-shard stream.
pub(crate) const SHARD0: &str = "shardId-000000000000";

/// An SDK event-stream receiver of SubscribeToShard.
pub(crate) type Events =
    EventReceiver<SubscribeToShardEventStream, SubscribeToShardEventStreamError>;

/// A broker config with fast status transitions, the polling limits off and
/// extra `[streams]` lines (the fan-out budget stays at its default).
fn fanout_config(streams_extra: &str) -> String {
    config(
        &format!("status_delay = \"50ms\"\n{streams_extra}"),
        "fsync = \"never\"",
        LIMITS_OFF,
    )
}

/// A broker for a fan-out scenario and an SDK client over the transport the Rust SDK picks:
/// HTTP/1.1 on `http://` (chunked event streams), or HTTP/2 on `https://` (ALPN `h2`,
/// trusting a throwaway test CA).
pub(crate) async fn fanout_broker(config: String, h2: bool) -> (TestBroker, Client) {
    if h2 {
        let pki = crate::tls::test_pki("riffle fan-out test CA");
        let broker = TestBroker::builder()
            .config_toml(config)
            .tls(pki.chain_pem.clone(), pki.key_pem.clone())
            .start()
            .await;
        let client = crate::tls::h2_client(&broker.tls_endpoint(), &pki.ca_pem);
        (broker, client)
    } else {
        let broker = TestBroker::builder().config_toml(config).start().await;
        let client = broker.client();
        (broker, client)
    }
}

/// Registers a consumer and waits (bounded) until it is ACTIVE; its ARN.
pub(crate) async fn register_active(client: &Client, stream: &str, name: &str) -> String {
    let out = client
        .register_stream_consumer()
        .stream_arn(stream_arn(stream))
        .consumer_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("RegisterStreamConsumer {name}: {e:?}"));
    let arn = out.consumer().expect("Consumer").consumer_arn().to_string();
    wait_consumer(client, &arn, ConsumerStatus::Active).await;
    arn
}

/// Polls DescribeStreamConsumer until the consumer has `status` (≤ 15 s).
async fn wait_consumer(client: &Client, arn: &str, status: ConsumerStatus) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = String::new();
    while Instant::now() < deadline {
        match client
            .describe_stream_consumer()
            .consumer_arn(arn)
            .send()
            .await
        {
            Ok(out) => {
                let got = out
                    .consumer_description()
                    .expect("ConsumerDescription")
                    .consumer_status()
                    .clone();
                if got == status {
                    return;
                }
                last = format!("{got:?}");
            }
            Err(e) => last = format!("{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("consumer {arn} not {status:?} within 15 s; last: {last}");
}

/// A StartingPosition.
pub(crate) fn position(kind: ShardIteratorType, seq: Option<&str>) -> StartingPosition {
    StartingPosition::builder()
        .r#type(kind)
        .set_sequence_number(seq.map(str::to_string))
        .build()
        .expect("StartingPosition")
}

/// Subscribes (the SDK has already consumed the `initial-response` event
/// when this returns).
pub(crate) async fn subscribe(
    client: &Client,
    consumer: &str,
    shard: &str,
    pos: StartingPosition,
) -> Events {
    client
        .subscribe_to_shard()
        .consumer_arn(consumer)
        .shard_id(shard)
        .starting_position(pos)
        .send()
        .await
        .unwrap_or_else(|e| panic!("SubscribeToShard {shard}: {e:?}"))
        .event_stream
}

/// The next SubscribeToShardEvent, or `None` when the stream has ended.
/// Panics on an error, an unknown event, or if nothing arrives within `limit`.
pub(crate) async fn next_event(rx: &mut Events, limit: Duration) -> Option<SubscribeToShardEvent> {
    match tokio::time::timeout(limit, rx.recv()).await {
        Err(_) => panic!("no event within {limit:?}"),
        Ok(Err(e)) => panic!("event stream failed: {e:?}"),
        Ok(Ok(None)) => None,
        Ok(Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(ev)))) => Some(ev),
        Ok(Ok(Some(other))) => panic!("unexpected event {other:?}"),
    }
}

/// What one subscription delivered.
#[derive(Debug, Default)]
pub(crate) struct Received {
    pub(crate) records: Vec<Record>,
    pub(crate) events: Vec<SubscribeToShardEvent>,
    /// The stream ended (the SDK's receiver returned `None`).
    pub(crate) ended: bool,
}

impl Received {
    pub(crate) fn last_continuation(&self) -> Option<&str> {
        self.events.last().map(|e| e.continuation_sequence_number())
    }
}

/// Receives until at least `want` records arrived (or, with `want` = None,
/// until the stream ends). Bounded by `limit` overall and 10,000 events.
pub(crate) async fn collect(rx: &mut Events, want: Option<usize>, limit: Duration) -> Received {
    let deadline = Instant::now() + limit;
    let mut out = Received::default();
    for _ in 0..10_000 {
        if want.is_some_and(|n| out.records.len() >= n) {
            return out;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "after {limit:?}: {} records in {} events (wanted {want:?})",
            out.records.len(),
            out.events.len()
        );
        let got = tokio::time::timeout(left, rx.recv()).await;
        match got {
            Err(_) => panic!(
                "after {limit:?}: {} records in {} events (wanted {want:?}, stream still open)",
                out.records.len(),
                out.events.len()
            ),
            Ok(Err(e)) => panic!("event stream failed: {e:?}"),
            Ok(Ok(None)) => {
                out.ended = true;
                assert!(
                    want.is_none_or(|n| out.records.len() >= n),
                    "stream ended after {} records (wanted {want:?})",
                    out.records.len()
                );
                return out;
            }
            Ok(Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(ev)))) => {
                out.records.extend(ev.records().iter().cloned());
                out.events.push(ev);
            }
            Ok(Ok(Some(other))) => panic!("unexpected event {other:?}"),
        }
    }
    panic!("more than 10,000 events");
}

fn data_of(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.data().as_ref().to_vec()).expect("utf-8 data"))
        .collect()
}

fn seqs_of(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.sequence_number().to_string())
        .collect()
}

/// Puts `data` one by one with PutRecord; their sequence numbers.
pub(crate) async fn put_each(client: &Client, stream: &str, data: &[String]) -> Vec<String> {
    let mut seqs = Vec::with_capacity(data.len());
    for (i, d) in data.iter().enumerate() {
        let out = client
            .put_record()
            .stream_name(stream)
            .partition_key(format!("pk-{}", i % 7))
            .data(blob(d.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutRecord {d}: {e:?}"));
        seqs.push(out.sequence_number().to_string());
    }
    seqs
}

/// Every event has a continuation number and no child shards (the shard is open).
#[track_caller]
fn assert_open_events(events: &[SubscribeToShardEvent]) {
    for ev in events {
        assert!(
            !ev.continuation_sequence_number().is_empty(),
            "an event of an open shard must carry ContinuationSequenceNumber: {ev:?}"
        );
        assert!(
            ev.child_shards().is_empty(),
            "ChildShards on an open shard: {ev:?}"
        );
        assert!(ev.millis_behind_latest() >= 0, "{ev:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_register_describe_list_deregister_and_errors() {
    // A long status delay so that CREATING is observable.
    let broker = TestBroker::builder()
        .config_toml(config(
            "status_delay = \"1s\"",
            "fsync = \"never\"",
            LIMITS_OFF,
        ))
        .start()
        .await;
    broker.create_stream("fo", 1).await;
    let client = broker.client();
    let sarn = stream_arn("fo");

    let reg = client
        .register_stream_consumer()
        .stream_arn(&sarn)
        .consumer_name("app-1")
        .send()
        .await
        .expect("RegisterStreamConsumer");
    let c = reg.consumer().expect("Consumer");
    assert_eq!(c.consumer_name(), "app-1");
    assert_eq!(c.consumer_status(), &ConsumerStatus::Creating);
    let arn = c.consumer_arn().to_string();
    assert!(
        arn.starts_with(&format!("{sarn}/consumer/app-1:")),
        "consumer ARN {arn}"
    );
    let created_secs = arn.rsplit(':').next().unwrap();
    assert!(
        created_secs.parse::<u64>().is_ok(),
        "the ARN ends in the creation epoch seconds: {arn}"
    );

    // Subscribing while CREATING is refused.
    let res = client
        .subscribe_to_shard()
        .consumer_arn(&arn)
        .shard_id(SHARD0)
        .starting_position(position(ShardIteratorType::Latest, None))
        .send()
        .await;
    assert_code(res, "ResourceInUseException");

    // Duplicate name → ResourceInUseException.
    let res = client
        .register_stream_consumer()
        .stream_arn(&sarn)
        .consumer_name("app-1")
        .send()
        .await;
    let msg = assert_code(res, "ResourceInUseException");
    assert!(msg.contains("app-1"), "message {msg:?}");

    // Describe by ARN and by stream ARN + name agree; ACTIVE after the delay.
    wait_consumer(&client, &arn, ConsumerStatus::Active).await;
    let by_name = client
        .describe_stream_consumer()
        .stream_arn(&sarn)
        .consumer_name("app-1")
        .send()
        .await
        .expect("DescribeStreamConsumer by name");
    let d = by_name.consumer_description().expect("ConsumerDescription");
    assert_eq!(d.consumer_arn(), arn);
    assert_eq!(d.stream_arn(), sarn);
    assert_eq!(d.consumer_status(), &ConsumerStatus::Active);
    let now = DateTime::from(std::time::SystemTime::now()).secs();
    let created = d.consumer_creation_timestamp().secs();
    assert!(
        (now - created).abs() < 120,
        "creation timestamp {created} vs now {now}"
    );

    // Fill up to the default limit of 20 consumers, then one more fails.
    for i in 2..=20 {
        client
            .register_stream_consumer()
            .stream_arn(&sarn)
            .consumer_name(format!("app-{i}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("register consumer {i}: {e:?}"));
    }
    let res = client
        .register_stream_consumer()
        .stream_arn(&sarn)
        .consumer_name("app-21")
        .send()
        .await;
    assert_code(res, "LimitExceededException");

    // List, paginated by 7: every consumer exactly once.
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let out = client
            .list_stream_consumers()
            .stream_arn(&sarn)
            .max_results(7)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("ListStreamConsumers");
        assert!(out.consumers().len() <= 7);
        names.extend(
            out.consumers()
                .iter()
                .map(|c| c.consumer_name().to_string()),
        );
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert!(token.is_none(), "pagination did not end");
    let unique: HashSet<&String> = names.iter().collect();
    assert_eq!(names.len(), 20, "{names:?}");
    assert_eq!(unique.len(), 20, "{names:?}");

    // Deregister by ARN: gone after the delay; then a 21st fits.
    client
        .deregister_stream_consumer()
        .consumer_arn(&arn)
        .send()
        .await
        .expect("DeregisterStreamConsumer");
    let gone_by = Instant::now() + Duration::from_secs(15);
    loop {
        let res = client
            .describe_stream_consumer()
            .consumer_arn(&arn)
            .send()
            .await;
        match res {
            Ok(out) => assert_eq!(
                out.consumer_description().unwrap().consumer_status(),
                &ConsumerStatus::Deleting
            ),
            Err(e) => {
                assert_code::<(), _, _>(Err(e), "ResourceNotFoundException");
                break;
            }
        }
        assert!(Instant::now() < gone_by, "consumer not gone within 15 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .register_stream_consumer()
        .stream_arn(&sarn)
        .consumer_name("app-21")
        .send()
        .await
        .expect("a 21st consumer fits after one was deregistered");

    // Deregister by stream ARN + name.
    client
        .deregister_stream_consumer()
        .stream_arn(&sarn)
        .consumer_name("app-2")
        .send()
        .await
        .expect("DeregisterStreamConsumer by name");

    // Unknown consumers.
    let unknown = format!("{sarn}/consumer/nobody:1700000000");
    let res = client
        .describe_stream_consumer()
        .consumer_arn(&unknown)
        .send()
        .await;
    assert_code(res, "ResourceNotFoundException");
    let res = client
        .deregister_stream_consumer()
        .consumer_arn(&unknown)
        .send()
        .await;
    assert_code(res, "ResourceNotFoundException");
    let res = client
        .subscribe_to_shard()
        .consumer_arn(&unknown)
        .shard_id(SHARD0)
        .starting_position(position(ShardIteratorType::Latest, None))
        .send()
        .await;
    assert_code(res, "ResourceNotFoundException");
    let res = client
        .describe_stream_consumer()
        .stream_arn(&sarn)
        .consumer_name("nobody")
        .send()
        .await;
    assert_code(res, "ResourceNotFoundException");
    // A consumer of a stream that does not exist.
    let res = client
        .register_stream_consumer()
        .stream_arn(stream_arn("no-such-stream"))
        .consumer_name("x")
        .send()
        .await;
    assert_code(res, "ResourceNotFoundException");

    // A real consumer on a shard that does not exist.
    let arn3 = client
        .describe_stream_consumer()
        .stream_arn(&sarn)
        .consumer_name("app-3")
        .send()
        .await
        .unwrap()
        .consumer_description()
        .unwrap()
        .consumer_arn()
        .to_string();
    let res = client
        .subscribe_to_shard()
        .consumer_arn(&arn3)
        .shard_id("shardId-000000000042")
        .starting_position(position(ShardIteratorType::Latest, None))
        .send()
        .await;
    assert_code(res, "ResourceNotFoundException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_produced_after_subscribing_arrive_in_order_and_are_counted() {
    records_produced_after_subscribing_arrive_in_order_and_are_counted_over(false).await;
}

/// The same over HTTP/2 (TLS with ALPN h2), as the Rust SDK subscribes on https://.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_produced_after_subscribing_arrive_in_order_and_are_counted_over_http2() {
    records_produced_after_subscribing_arrive_in_order_and_are_counted_over(true).await;
}

async fn records_produced_after_subscribing_arrive_in_order_and_are_counted_over(h2: bool) {
    let (broker, client) =
        fanout_broker(fanout_config("subscription_heartbeat = \"1s\""), h2).await;
    broker.create_stream("push", 1).await;
    let arn = register_active(&client, "push", "reader").await;

    let mut rx = subscribe(
        &client,
        &arn,
        SHARD0,
        position(ShardIteratorType::Latest, None),
    )
    .await;

    // 60 records one by one, then 40 in two PutRecords calls.
    let data: Vec<String> = (0..100).map(|i| format!("rec-{i:03}")).collect();
    let mut seqs = put_each(&client, "push", &data[..60]).await;
    for chunk in data[60..].chunks(20) {
        let out = client
            .put_records()
            .stream_name("push")
            .set_records(Some(
                chunk
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        PutRecordsRequestEntry::builder()
                            .partition_key(format!("k{i}"))
                            .data(blob(d.clone()))
                            .build()
                            .unwrap()
                    })
                    .collect(),
            ))
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(out.failed_record_count(), Some(0));
        seqs.extend(
            out.records()
                .iter()
                .map(|r| r.sequence_number().unwrap().to_string()),
        );
    }

    let got = collect(&mut rx, Some(100), Duration::from_secs(20)).await;
    assert_eq!(data_of(&got.records), data, "records in production order");
    assert_eq!(
        seqs_of(&got.records),
        seqs,
        "the acknowledged sequence numbers"
    );
    assert_strictly_increasing(&got.records);
    assert_open_events(&got.events);
    let last = got.last_continuation().unwrap();
    assert!(
        cmp_seq(last, seqs.last().unwrap()).is_ge(),
        "continuation {last} must not stand before the last record {}",
        seqs.last().unwrap()
    );
    for r in &got.records {
        assert!(r.approximate_arrival_timestamp().is_some());
        assert!(r.partition_key().is_some_and(|k| !k.is_empty()));
    }

    // Nothing more arrives but (empty) heartbeat events, within 2.5 s.
    let ev = next_event(&mut rx, Duration::from_millis(2500))
        .await
        .expect("the subscription is still open");
    assert!(ev.records().is_empty(), "unexpected extra records: {ev:?}");
    assert!(!ev.continuation_sequence_number().is_empty());
    assert_eq!(ev.millis_behind_latest(), 0);

    // /metrics counts the pushed records for this consumer and shard.
    let samples = parse_metrics(&broker.metrics_text().await);
    let want = [
        ("stream", "push"),
        ("consumer", "reader"),
        ("shard", SHARD0),
    ];
    let pushed = metric_sum(&samples, "riffle_subscribe_records_total", &want)
        .expect("riffle_subscribe_records_total for the consumer and shard");
    assert_eq!(pushed, 100.0, "riffle_subscribe_records_total");
    let subs = metric_sum(&samples, "riffle_subscriptions_total", &want)
        .expect("riffle_subscriptions_total");
    assert_eq!(subs, 1.0, "riffle_subscriptions_total");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribing_from_the_continuation_loses_and_duplicates_nothing() {
    resubscribing_from_the_continuation_loses_and_duplicates_nothing_over(false).await;
}

/// The same over HTTP/2 (TLS with ALPN h2), as the Rust SDK subscribes on https://.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribing_from_the_continuation_loses_and_duplicates_nothing_over_http2() {
    resubscribing_from_the_continuation_loses_and_duplicates_nothing_over(true).await;
}

async fn resubscribing_from_the_continuation_loses_and_duplicates_nothing_over(h2: bool) {
    let (broker, client) = fanout_broker(
        fanout_config("subscription_lifetime = \"2s\"\nsubscription_heartbeat = \"500ms\""),
        h2,
    )
    .await;
    broker.create_stream("resub", 1).await;
    let arn = register_active(&client, "resub", "ckpt").await;

    // A producer writes 250 records, one every ~15 ms, across several
    // subscriptions (each lives 2 s).
    let data: Vec<String> = (0..250).map(|i| format!("r{i:04}")).collect();
    let producer = {
        let (client, data) = (client.clone(), data.clone());
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for d in &data {
                seqs.extend(put_each(&client, "resub", std::slice::from_ref(d)).await);
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            seqs
        })
    };
    // Let some records exist before the first subscription.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut all: Vec<Record> = Vec::new();
    let mut pos = position(ShardIteratorType::TrimHorizon, None);
    let mut subscriptions = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while all.len() < data.len() {
        assert!(subscriptions < 30, "too many subscriptions");
        assert!(
            Instant::now() < deadline,
            "{} records after 60 s",
            all.len()
        );
        subscriptions += 1;
        let mut rx = subscribe(&client, &arn, SHARD0, pos).await;
        let got = collect(&mut rx, None, Duration::from_secs(10)).await;
        assert!(got.ended, "a subscription ends after its lifetime");
        assert_open_events(&got.events);
        let cont = got
            .last_continuation()
            .expect("a 2 s subscription with 500 ms heartbeats sends events")
            .to_string();
        all.extend(got.records);
        pos = position(ShardIteratorType::AfterSequenceNumber, Some(&cont));
    }
    let seqs = tokio::time::timeout(Duration::from_secs(30), producer)
        .await
        .expect("producer finished")
        .expect("producer ok");
    assert!(subscriptions >= 2, "the data must span subscriptions");
    assert_eq!(
        data_of(&all),
        data,
        "exactly the produced records, in order"
    );
    assert_eq!(seqs_of(&all), seqs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_ends_the_subscription_with_child_shards_after_the_last_record() {
    a_split_ends_the_subscription_with_child_shards_after_the_last_record_over(false).await;
}

/// The same over HTTP/2 (TLS with ALPN h2), as the Rust SDK subscribes on https://.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_ends_the_subscription_with_child_shards_after_the_last_record_over_http2() {
    a_split_ends_the_subscription_with_child_shards_after_the_last_record_over(true).await;
}

async fn a_split_ends_the_subscription_with_child_shards_after_the_last_record_over(h2: bool) {
    let (broker, client) =
        fanout_broker(fanout_config("subscription_heartbeat = \"1s\""), h2).await;
    broker.create_stream("split", 1).await;
    let arn = register_active(&client, "split", "watcher").await;

    let before: Vec<String> = (0..20).map(|i| format!("before-{i:02}")).collect();
    let seqs = put_each(&client, "split", &before).await;
    let mut rx = subscribe(
        &client,
        &arn,
        SHARD0,
        position(ShardIteratorType::TrimHorizon, None),
    )
    .await;
    let first = collect(&mut rx, Some(20), Duration::from_secs(10)).await;
    assert_eq!(data_of(&first.records), before);

    let more: Vec<String> = (0..5).map(|i| format!("late-{i}")).collect();
    let more_seqs = put_each(&client, "split", &more).await;
    client
        .split_shard()
        .stream_name("split")
        .shard_to_split(SHARD0)
        .new_starting_hash_key((1u128 << 127).to_string())
        .send()
        .await
        .expect("SplitShard");
    broker.wait_active("split").await;

    let rest = collect(&mut rx, None, Duration::from_secs(15)).await;
    assert!(
        rest.ended,
        "the subscription ends at the end of the closed shard"
    );
    let mut records = first.records.clone();
    records.extend(rest.records.iter().cloned());
    let mut want = before.clone();
    want.extend(more.iter().cloned());
    assert_eq!(data_of(&records), want, "every record of the parent, once");
    let mut want_seqs = seqs.clone();
    want_seqs.extend(more_seqs.iter().cloned());
    assert_eq!(seqs_of(&records), want_seqs);

    let last = rest.events.last().expect("a final event");
    assert_eq!(
        last.continuation_sequence_number(),
        "",
        "the last event of a closed shard has no ContinuationSequenceNumber"
    );
    let mut children: Vec<String> = last
        .child_shards()
        .iter()
        .map(|c| c.shard_id().to_string())
        .collect();
    children.sort();
    assert_eq!(
        children,
        ["shardId-000000000001", "shardId-000000000002"],
        "ChildShards"
    );
    for c in last.child_shards() {
        assert_eq!(c.parent_shards(), [SHARD0]);
    }
    for ev in &rest.events[..rest.events.len() - 1] {
        assert!(!ev.continuation_sequence_number().is_empty());
        assert!(ev.child_shards().is_empty());
    }
    // On the wire the member is absent, not empty: a raw subscription to the
    // closed parent at its last record ends at once with that record and
    // ChildShards.
    let last_seq = more_seqs.last().unwrap();
    let events = raw_subscribe(&broker, &arn, SHARD0, "AT_SEQUENCE_NUMBER", last_seq).await;
    let (kind, final_event) = events.last().expect("events").clone();
    assert_eq!(kind, "SubscribeToShardEvent", "{events:?}");
    assert!(
        final_event.get("ContinuationSequenceNumber").is_none(),
        "the last event of a closed shard has no ContinuationSequenceNumber: {final_event}"
    );
    assert_eq!(final_event["ChildShards"].as_array().map(Vec::len), Some(2));
    let raw_seqs: Vec<&str> = events
        .iter()
        .flat_map(|(_, e)| e["Records"].as_array().into_iter().flatten())
        .map(|r| r["SequenceNumber"].as_str().unwrap())
        .collect();
    assert_eq!(raw_seqs, [last_seq.as_str()]);

    // The last record pushed is the parent's last record.
    let shards = list_all_shards(&client, "split").await;
    let parent = shards.iter().find(|s| s.shard_id() == SHARD0).unwrap();
    let ending = parent
        .sequence_number_range()
        .and_then(|r| r.ending_sequence_number())
        .expect("the parent is closed");
    assert_eq!(ending, more_seqs.last().unwrap());

    // Records written after the split reach a child's subscription.
    let after = vec!["after-split".to_string()];
    let after_seq = put_each(&client, "split", &after).await;
    let key = hash_key("pk-0");
    let child = shard_for(&shards, key);
    let mut rx = subscribe(
        &client,
        &arn,
        &child,
        position(ShardIteratorType::TrimHorizon, None),
    )
    .await;
    let got = collect(&mut rx, Some(1), Duration::from_secs(10)).await;
    assert_eq!(data_of(&got.records), after);
    assert_eq!(seqs_of(&got.records), after_seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_each_get_everything_at_full_rate() {
    two_consumers_each_get_everything_at_full_rate_over(false).await;
}

/// The same over HTTP/2 (TLS with ALPN h2), as the Rust SDK subscribes on https://.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_each_get_everything_at_full_rate_over_http2() {
    two_consumers_each_get_everything_at_full_rate_over(true).await;
}

async fn two_consumers_each_get_everything_at_full_rate_over(h2: bool) {
    // Polling limits off, subscriber budget at its 2 MiB/s default.
    let (broker, client) =
        fanout_broker(fanout_config("subscription_heartbeat = \"1s\""), h2).await;
    broker.create_stream("wide", 1).await;
    let a = register_active(&client, "wide", "a").await;
    let b = register_active(&client, "wide", "b").await;
    let rx_a = subscribe(
        &client,
        &a,
        SHARD0,
        position(ShardIteratorType::Latest, None),
    )
    .await;
    let rx_b = subscribe(
        &client,
        &b,
        SHARD0,
        position(ShardIteratorType::Latest, None),
    )
    .await;

    // 4 MiB quickly: 4 PutRecords calls of 16 × 64 KiB.
    const N: usize = 64;
    const SIZE: usize = 64 * 1024;
    let payload = |i: usize| {
        let mut v = vec![(i % 251) as u8; SIZE];
        v[..8].copy_from_slice(&(i as u64).to_be_bytes());
        v
    };
    let started = Instant::now();
    for batch in 0..4 {
        let out = client
            .put_records()
            .stream_name("wide")
            .set_records(Some(
                (0..16)
                    .map(|j| {
                        let i = batch * 16 + j;
                        PutRecordsRequestEntry::builder()
                            .partition_key(format!("p{i}"))
                            .data(blob(payload(i)))
                            .build()
                            .unwrap()
                    })
                    .collect(),
            ))
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(out.failed_record_count(), Some(0));
    }
    let produced = started.elapsed();

    // Both consumers read concurrently; each must have all 4 MiB within a
    // bound: at 2 MiB/s per consumer that takes about 2 s.
    const LIMIT: Duration = Duration::from_secs(12);
    let read = |mut rx: Events| async move {
        let got = collect(&mut rx, Some(N), LIMIT).await;
        (got, started.elapsed())
    };
    let ((got_a, t_a), (got_b, t_b)) = tokio::join!(read(rx_a), read(rx_b));
    eprintln!("produced 4 MiB in {produced:?}; consumer a done after {t_a:?}, b after {t_b:?}");
    for (name, got) in [("a", &got_a), ("b", &got_b)] {
        assert_eq!(got.records.len(), N, "consumer {name} record count");
        for (i, r) in got.records.iter().enumerate() {
            assert_eq!(
                r.data().as_ref(),
                payload(i).as_slice(),
                "consumer {name} record {i}"
            );
        }
        assert_strictly_increasing(&got.records);
    }
    assert!(t_a < LIMIT && t_b < LIMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_subscription_within_5s_is_refused_then_takes_over() {
    let broker = TestBroker::builder()
        .config_toml(fanout_config("subscription_heartbeat = \"1s\""))
        .start()
        .await;
    broker.create_stream("take", 1).await;
    let client = broker.client();
    let arn = register_active(&client, "take", "solo").await;

    let first_at = Instant::now();
    let mut first = subscribe(
        &client,
        &arn,
        SHARD0,
        position(ShardIteratorType::Latest, None),
    )
    .await;
    let res = client
        .subscribe_to_shard()
        .consumer_arn(&arn)
        .shard_id(SHARD0)
        .starting_position(position(ShardIteratorType::Latest, None))
        .send()
        .await;
    let msg = assert_code(res, "ResourceInUseException");
    assert!(!msg.is_empty());

    // The refused attempt did not disturb the first subscription.
    let seq = put_each(&client, "take", &["one".to_string()]).await;
    let got = collect(&mut first, Some(1), Duration::from_secs(10)).await;
    assert_eq!(seqs_of(&got.records), seq);

    // After 5 s, a new subscription takes over and the old one ends.
    let wait = Duration::from_millis(5300).saturating_sub(first_at.elapsed());
    tokio::time::sleep(wait).await;
    let mut second = subscribe(
        &client,
        &arn,
        SHARD0,
        position(ShardIteratorType::Latest, None),
    )
    .await;
    let old = collect(&mut first, None, Duration::from_secs(10)).await;
    assert!(old.ended, "the replaced subscription ends");
    assert!(old.records.is_empty(), "{:?}", old.records);

    let seq = put_each(&client, "take", &["two".to_string()]).await;
    let got = collect(&mut second, Some(1), Duration::from_secs(10)).await;
    assert_eq!(seqs_of(&got.records), seq);

    // Other consumers and other shards are independent slots.
    let other = register_active(&client, "take", "other").await;
    let _rx = subscribe(
        &client,
        &other,
        SHARD0,
        position(ShardIteratorType::Latest, None),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ends_after_its_lifetime_and_idles_with_heartbeats() {
    let broker = TestBroker::builder()
        .config_toml(fanout_config(
            "subscription_lifetime = \"3s\"\nsubscription_heartbeat = \"500ms\"",
        ))
        .start()
        .await;
    broker.create_stream("life", 1).await;
    let client = broker.client();
    let arn = register_active(&client, "life", "short").await;

    let started = Instant::now();
    let mut rx = subscribe(
        &client,
        &arn,
        SHARD0,
        position(ShardIteratorType::Latest, None),
    )
    .await;
    let got = collect(&mut rx, None, Duration::from_secs(15)).await;
    let lasted = started.elapsed();
    assert!(got.ended);
    assert!(
        lasted >= Duration::from_millis(2500) && lasted < Duration::from_secs(10),
        "a 3 s subscription lasted {lasted:?}"
    );
    assert!(got.records.is_empty());
    assert!(
        got.events.len() >= 3,
        "an idle 3 s subscription with 500 ms heartbeats sent {} events",
        got.events.len()
    );
    assert_open_events(&got.events);
    // An ended subscription frees the slot at once.
    let _again = subscribe(
        &client,
        &arn,
        SHARD0,
        position(ShardIteratorType::Latest, None),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_starting_position_starts_where_it_should() {
    let broker = TestBroker::builder()
        .config_toml(fanout_config("subscription_heartbeat = \"1s\""))
        .start()
        .await;
    broker.create_stream("pos", 1).await;
    let client = broker.client();

    let early: Vec<String> = (0..10).map(|i| format!("e{i}")).collect();
    let late: Vec<String> = (0..10).map(|i| format!("l{i}")).collect();
    let mut seqs = put_each(&client, "pos", &early).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    seqs.extend(put_each(&client, "pos", &late).await);
    let all: Vec<String> = early.iter().chain(late.iter()).cloned().collect();
    // The arrival time of the first late record, as GetRecords reports it.
    let polled = read_shard(&client, "pos", SHARD0).await;
    assert_eq!(data_of(&polled.records), all);
    let t_late = *polled.records[10]
        .approximate_arrival_timestamp()
        .expect("ApproximateArrivalTimestamp");
    let t_early_last = *polled.records[9].approximate_arrival_timestamp().unwrap();
    assert!(t_early_last < t_late, "{t_early_last:?} < {t_late:?}");

    let cases: Vec<(&str, StartingPosition, Vec<String>)> = vec![
        (
            "trim",
            position(ShardIteratorType::TrimHorizon, None),
            all.clone(),
        ),
        (
            "at-seq",
            position(ShardIteratorType::AtSequenceNumber, Some(&seqs[5])),
            all[5..].to_vec(),
        ),
        (
            "after-seq",
            position(ShardIteratorType::AfterSequenceNumber, Some(&seqs[5])),
            all[6..].to_vec(),
        ),
        (
            "at-ts",
            StartingPosition::builder()
                .r#type(ShardIteratorType::AtTimestamp)
                .timestamp(t_late)
                .build()
                .unwrap(),
            late.clone(),
        ),
    ];
    for (name, pos, want) in cases {
        let arn = register_active(&client, "pos", name).await;
        let mut rx = subscribe(&client, &arn, SHARD0, pos).await;
        let got = collect(&mut rx, Some(want.len()), Duration::from_secs(10)).await;
        assert_eq!(data_of(&got.records), want, "starting position {name}");
        assert_open_events(&got.events);
    }

    // LATEST: nothing that exists, only what comes next.
    let arn = register_active(&client, "pos", "latest").await;
    let mut rx = subscribe(
        &client,
        &arn,
        SHARD0,
        position(ShardIteratorType::Latest, None),
    )
    .await;
    let next = vec!["next".to_string()];
    let next_seq = put_each(&client, "pos", &next).await;
    let got = collect(&mut rx, Some(1), Duration::from_secs(10)).await;
    assert_eq!(data_of(&got.records), next, "LATEST");
    assert_eq!(seqs_of(&got.records), next_seq);

    // A sequence number position without the number is rejected.
    let arn = register_active(&client, "pos", "bad").await;
    let res = client
        .subscribe_to_shard()
        .consumer_arn(&arn)
        .shard_id(SHARD0)
        .starting_position(position(ShardIteratorType::AtSequenceNumber, None))
        .send()
        .await;
    assert_code(res, "InvalidArgumentException");
}

/// A SubscribeToShard over hand-written HTTP/1.1 that is expected to end by
/// itself (10 s bound): the `(:event-type, JSON payload)` of every event
/// frame after `initial-response`.
async fn raw_subscribe(
    broker: &TestBroker,
    consumer: &str,
    shard: &str,
    kind: &str,
    seq: &str,
) -> Vec<(String, serde_json::Value)> {
    let body = serde_json::json!({
        "ConsumerARN": consumer,
        "ShardId": shard,
        "StartingPosition": {"Type": kind, "SequenceNumber": seq},
    })
    .to_string();
    let resp = riffle_tests::http::request(
        broker.api_addr(),
        "POST",
        "/",
        &[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "Kinesis_20131202.SubscribeToShard"),
        ],
        body.as_bytes(),
    )
    .await
    .expect("raw SubscribeToShard");
    assert_eq!(resp.status, 200, "{}", resp.body_text());
    assert_eq!(
        resp.header("content-type"),
        Some("application/vnd.amazon.eventstream")
    );
    let mut out = Vec::new();
    let mut rest = resp.body.as_slice();
    for _ in 0..10_000 {
        if rest.is_empty() {
            break;
        }
        assert!(rest.len() >= 16, "truncated frame");
        let total = u32::from_be_bytes(rest[0..4].try_into().unwrap()) as usize;
        let headers_len = u32::from_be_bytes(rest[4..8].try_into().unwrap()) as usize;
        assert!(
            total >= 16 + headers_len && total <= rest.len(),
            "bad frame"
        );
        let headers = &rest[12..12 + headers_len];
        let payload = &rest[12 + headers_len..total - 4];
        let event_type = frame_header(headers, ":event-type").expect(":event-type");
        let json: serde_json::Value = serde_json::from_slice(payload).expect("JSON payload");
        out.push((event_type, json));
        rest = &rest[total..];
    }
    assert_eq!(
        out.first().map(|(k, _)| k.as_str()),
        Some("initial-response")
    );
    out.remove(0);
    out
}

/// A string header of an event-stream frame's header block.
fn frame_header(mut block: &[u8], want: &str) -> Option<String> {
    while !block.is_empty() {
        let name_len = block[0] as usize;
        let name = std::str::from_utf8(&block[1..1 + name_len]).ok()?;
        let kind = block[1 + name_len];
        block = &block[2 + name_len..];
        // Only string headers (type 7) are sent by the broker.
        assert_eq!(kind, 7, "header {name} has type {kind}");
        let len = u16::from_be_bytes([block[0], block[1]]) as usize;
        let value = std::str::from_utf8(&block[2..2 + len]).ok()?;
        if name == want {
            return Some(value.to_string());
        }
        block = &block[2 + len..];
    }
    None
}

/// A consumer's tags go through the same checks and 50-tag limit as a stream's, and are
/// kept apart from the stream's own tags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_tags_by_resource_arn_follow_the_stream_rules() {
    let (broker, client) = fanout_broker(fanout_config(""), false).await;
    broker.create_stream("ctags", 1).await;
    let arn = register_active(&client, "ctags", "tagged").await;
    client
        .tag_resource()
        .resource_arn(&arn)
        .tags("team", "search")
        .send()
        .await
        .expect("tag consumer");
    let listed = client
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    let tags: Vec<(String, String)> = listed
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(tags, vec![("team".to_string(), "search".to_string())]);
    let stream_tags = client
        .list_tags_for_resource()
        .resource_arn(stream_arn("ctags"))
        .send()
        .await
        .unwrap();
    assert!(
        stream_tags.tags().is_empty(),
        "consumer tags must not land on the stream"
    );

    let mut too_many = client.tag_resource().resource_arn(&arn);
    for i in 0..50 {
        too_many = too_many.tags(format!("k{i:02}"), "v");
    }
    let err = too_many.send().await.expect_err("51 tags on a consumer");
    assert_eq!(
        aws_sdk_kinesis::error::ProvideErrorMetadata::code(&err),
        Some("InvalidArgumentException"),
        "{err:?}"
    );
    let err = client
        .tag_resource()
        .resource_arn(&arn)
        .tags("x".repeat(129), "v")
        .send()
        .await
        .expect_err("a 129-character key");
    let code = aws_sdk_kinesis::error::ProvideErrorMetadata::code(&err)
        .unwrap_or_default()
        .to_string();
    assert!(
        code == "ValidationException" || code == "InvalidArgumentException",
        "{err:?}"
    );

    client
        .untag_resource()
        .resource_arn(&arn)
        .tag_keys("team")
        .send()
        .await
        .expect("untag consumer");
    let listed = client
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    assert!(listed.tags().is_empty());
}
