//! Control-plane operations: stream lifecycle, description, listing, tags,
//! retention, monitoring, encryption, modes, limits and account settings.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_kinesis::operation::create_stream::CreateStreamError;
use aws_sdk_kinesis::operation::describe_stream::DescribeStreamError;
use aws_sdk_kinesis::operation::list_shards::ListShardsError;
use aws_sdk_kinesis::types::{
    EncryptionType, MetricsName, MinimumThroughputBillingCommitmentInput,
    MinimumThroughputBillingCommitmentInputStatus, MinimumThroughputBillingCommitmentOutputStatus,
    ScalingType, ShardFilter, ShardFilterType, ShardIteratorType, StreamMode, StreamModeDetails,
    StreamStatus,
};
use aws_smithy_types::DateTime;

use crate::common::*;

const HALF: u128 = 1u128 << 127;

fn mode(m: StreamMode) -> StreamModeDetails {
    StreamModeDetails::builder().stream_mode(m).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_stream_goes_creating_then_active_and_describes_two_shards() {
    // A slow status transition so CREATING is observable right after create.
    let broker = TestBroker::builder()
        .config_toml(config("status_delay = \"1s\"", "", LIMITS_OFF))
        .start()
        .await;
    let client = broker.client();
    client
        .create_stream()
        .stream_name("cp")
        .shard_count(2)
        .send()
        .await
        .expect("CreateStream");
    let summary = client
        .describe_stream_summary()
        .stream_name("cp")
        .send()
        .await
        .expect("DescribeStreamSummary");
    assert_eq!(
        summary
            .stream_description_summary()
            .unwrap()
            .stream_status(),
        &StreamStatus::Creating
    );
    broker.wait_active("cp").await;

    let desc = client
        .describe_stream()
        .stream_name("cp")
        .send()
        .await
        .expect("DescribeStream");
    let d = desc.stream_description().expect("StreamDescription");
    assert_eq!(d.stream_name(), "cp");
    assert_eq!(d.stream_arn(), stream_arn("cp"));
    assert_eq!(d.stream_status(), &StreamStatus::Active);
    assert_eq!(d.retention_period_hours(), 24);
    assert!(!d.has_more_shards());
    assert_eq!(
        d.stream_mode_details().map(|m| m.stream_mode().clone()),
        Some(StreamMode::Provisioned)
    );
    let shards = d.shards();
    assert_eq!(shards.len(), 2);
    assert_eq!(shards[0].shard_id(), "shardId-000000000000");
    assert_eq!(shards[1].shard_id(), "shardId-000000000001");
    let r0 = shards[0].hash_key_range().unwrap();
    let r1 = shards[1].hash_key_range().unwrap();
    assert_eq!(r0.starting_hash_key(), "0");
    assert_eq!(
        r0.ending_hash_key(),
        "170141183460469231731687303715884105727"
    );
    assert_eq!(
        r1.starting_hash_key(),
        "170141183460469231731687303715884105728"
    );
    assert_eq!(
        r1.ending_hash_key(),
        "340282366920938463463374607431768211455"
    );
    for s in shards {
        let range = s.sequence_number_range().expect("SequenceNumberRange");
        assert!(!range.starting_sequence_number().is_empty());
        assert!(
            range
                .starting_sequence_number()
                .chars()
                .all(|c| c.is_ascii_digit()),
            "StartingSequenceNumber must be decimal: {}",
            range.starting_sequence_number()
        );
        assert_eq!(range.ending_sequence_number(), None, "open shard");
        assert_eq!(s.parent_shard_id(), None);
        assert_eq!(s.adjacent_parent_shard_id(), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_stream_gets_four_shards() {
    let broker = TestBroker::start().await;
    let client = broker.client();
    client
        .create_stream()
        .stream_name("od")
        .stream_mode_details(mode(StreamMode::OnDemand))
        .send()
        .await
        .expect("CreateStream ON_DEMAND");
    broker.wait_active("od").await;
    let s = client
        .describe_stream_summary()
        .stream_name("od")
        .send()
        .await
        .unwrap();
    let s = s.stream_description_summary().unwrap();
    assert_eq!(s.open_shard_count(), 4);
    assert_eq!(
        s.stream_mode_details().map(|m| m.stream_mode().clone()),
        Some(StreamMode::OnDemand)
    );
    let shards = list_all_shards(&client, "od").await;
    assert_eq!(shards.len(), 4);
    assert_partitions_evenly(&open_shards(&shards));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_an_on_demand_stream_by_hand_is_a_validation_error() {
    let broker = TestBroker::start().await;
    let client = broker.client();
    client
        .create_stream()
        .stream_name("odr")
        .stream_mode_details(mode(StreamMode::OnDemand))
        .send()
        .await
        .unwrap();
    broker.wait_active("odr").await;
    let shards = list_all_shards(&client, "odr").await;
    let (a, b) = (shards[0].shard_id(), shards[1].shard_id());
    let want = |op: &str| {
        format!(
            "{op} is not supported for stream odr under account 000000000000 because it is in \
             ON_DEMAND mode. Switch the stream to PROVISIONED mode with UpdateStreamMode first."
        )
    };
    let (code, msg) = service_err(
        client
            .split_shard()
            .stream_name("odr")
            .shard_to_split(a)
            .new_starting_hash_key("1")
            .send()
            .await,
    );
    assert_eq!(
        (code.as_str(), msg),
        ("ValidationException", want("SplitShard"))
    );
    let (code, msg) = service_err(
        client
            .merge_shards()
            .stream_name("odr")
            .shard_to_merge(a)
            .adjacent_shard_to_merge(b)
            .send()
            .await,
    );
    assert_eq!(
        (code.as_str(), msg),
        ("ValidationException", want("MergeShards"))
    );
    let (code, msg) = service_err(
        client
            .update_shard_count()
            .stream_name("odr")
            .target_shard_count(8)
            .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
            .send()
            .await,
    );
    assert_eq!(
        (code.as_str(), msg),
        ("ValidationException", want("UpdateShardCount"))
    );
    assert_eq!(
        list_all_shards(&client, "odr").await.len(),
        4,
        "nothing changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_stream_paginates_shards() {
    let broker = TestBroker::start().await;
    broker.create_stream("pg", 5).await;
    let client = broker.client();
    let mut seen = Vec::new();
    let mut start: Option<String> = None;
    for page in 0..3 {
        let mut req = client.describe_stream().stream_name("pg").limit(2);
        if let Some(s) = &start {
            req = req.exclusive_start_shard_id(s);
        }
        let out = req.send().await.expect("DescribeStream page");
        let d = out.stream_description().unwrap();
        let ids: Vec<String> = d
            .shards()
            .iter()
            .map(|s| s.shard_id().to_string())
            .collect();
        let expect_len = if page < 2 { 2 } else { 1 };
        assert_eq!(ids.len(), expect_len, "page {page}: {ids:?}");
        assert_eq!(
            d.has_more_shards(),
            page < 2,
            "HasMoreShards on page {page}"
        );
        start = ids.last().cloned();
        seen.extend(ids);
    }
    let expected: Vec<String> = (0..5).map(|i| format!("shardId-{i:012}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_stream_summary_reports_defaults() {
    let broker = TestBroker::start().await;
    broker.create_stream("sum", 3).await;
    let out = broker
        .client()
        .describe_stream_summary()
        .stream_name("sum")
        .send()
        .await
        .unwrap();
    let s = out.stream_description_summary().unwrap();
    assert_eq!(s.stream_name(), "sum");
    assert_eq!(s.stream_arn(), stream_arn("sum"));
    assert_eq!(s.stream_status(), &StreamStatus::Active);
    assert_eq!(s.open_shard_count(), 3);
    assert_eq!(s.retention_period_hours(), 24);
    assert_eq!(
        s.stream_mode_details().map(|m| m.stream_mode().clone()),
        Some(StreamMode::Provisioned)
    );
    assert_eq!(s.consumer_count(), Some(0));
    assert_eq!(s.encryption_type(), Some(&EncryptionType::None));
    assert_eq!(s.key_id(), None);
    let created = s.stream_creation_timestamp().secs();
    let now = DateTime::from(std::time::SystemTime::now()).secs();
    assert!(
        (now - created).abs() < 120,
        "creation timestamp {created} not near now {now}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_streams_paginates() {
    let broker = TestBroker::start().await;
    for name in ["ls-a", "ls-b", "ls-c"] {
        broker.create_stream(name, 1).await;
    }
    let client = broker.client();
    let first = client.list_streams().limit(2).send().await.unwrap();
    assert_eq!(first.stream_names(), ["ls-a", "ls-b"]);
    assert!(first.has_more_streams());
    let token = first.next_token().expect("NextToken when more streams");
    let summaries = first.stream_summaries();
    assert_eq!(summaries.len(), 2);
    assert_eq!(summaries[0].stream_name(), "ls-a");
    assert_eq!(summaries[0].stream_arn(), stream_arn("ls-a"));
    assert_eq!(summaries[0].stream_status(), &StreamStatus::Active);
    assert_eq!(
        summaries[0]
            .stream_mode_details()
            .map(|m| m.stream_mode().clone()),
        Some(StreamMode::Provisioned)
    );
    assert!(summaries[0].stream_creation_timestamp().is_some());

    let by_name = client
        .list_streams()
        .limit(2)
        .exclusive_start_stream_name("ls-b")
        .send()
        .await
        .unwrap();
    assert_eq!(by_name.stream_names(), ["ls-c"]);
    assert!(!by_name.has_more_streams());

    let by_token = client
        .list_streams()
        .next_token(token)
        .send()
        .await
        .unwrap();
    assert_eq!(by_token.stream_names(), ["ls-c"]);
    assert!(!by_token.has_more_streams());
    assert_eq!(by_token.stream_summaries().len(), 1);

    let all = client.list_streams().send().await.unwrap();
    assert_eq!(all.stream_names(), ["ls-a", "ls-b", "ls-c"]);
    assert!(!all.has_more_streams());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shards_paginates_with_next_token() {
    let broker = TestBroker::start().await;
    broker.create_stream("lsh", 5).await;
    let client = broker.client();
    let first = client
        .list_shards()
        .stream_name("lsh")
        .max_results(2)
        .send()
        .await
        .unwrap();
    assert_eq!(first.shards().len(), 2);
    let token = first.next_token().expect("NextToken").to_string();

    // NextToken together with StreamName is rejected.
    let res = client
        .list_shards()
        .stream_name("lsh")
        .next_token(&token)
        .send()
        .await;
    let err = res.expect_err("NextToken + StreamName must fail");
    assert!(
        matches!(
            err.as_service_error(),
            Some(ListShardsError::InvalidArgumentException(_))
        ),
        "expected InvalidArgumentException, got {err:?}"
    );
    {
        use aws_sdk_kinesis::error::ProvideErrorMetadata;
        assert_eq!(
            err.message(),
            Some("NextToken and StreamName cannot be provided together.")
        );
    }

    // A forged or altered token is rejected, never trusted: this one claims to have been
    // issued at i64::MIN (an unsigned token would overflow the expiry arithmetic).
    let forged = "eyJzdHJlYW0iOiJsc2giLCJhZnRlciI6bnVsbCwiaXNzdWVkX21zIjotOTIyMzM3MjAzNjg1NDc3NTgwOCwiZmlsdGVyIjpudWxsfQ";
    let mut altered = token.clone().into_bytes();
    altered[3] = if altered[3] == b'A' { b'B' } else { b'A' };
    for bad in [forged.to_string(), String::from_utf8(altered).unwrap()] {
        let err = client
            .list_shards()
            .next_token(bad)
            .send()
            .await
            .expect_err("forged token");
        assert!(
            matches!(
                err.as_service_error(),
                Some(ListShardsError::InvalidArgumentException(_))
            ),
            "expected InvalidArgumentException, got {err:?}"
        );
    }

    let mut ids: Vec<String> = first.shards().iter().map(|s| s.shard_id().into()).collect();
    let mut token = Some(token);
    let mut pages = 1;
    while let Some(t) = token.take() {
        pages += 1;
        assert!(pages <= 5, "too many pages");
        let out = client
            .list_shards()
            .next_token(t)
            .max_results(2)
            .send()
            .await
            .unwrap();
        ids.extend(out.shards().iter().map(|s| s.shard_id().to_string()));
        token = out.next_token().map(str::to_string);
    }
    let expected: Vec<String> = (0..5).map(|i| format!("shardId-{i:012}")).collect();
    assert_eq!(ids, expected);
    assert_eq!(pages, 3);

    // Without MaxResults everything comes in one page.
    let all = client
        .list_shards()
        .stream_name("lsh")
        .send()
        .await
        .unwrap();
    assert_eq!(all.shards().len(), 5);
    assert_eq!(all.next_token(), None);
}

fn ids_of(out: &aws_sdk_kinesis::operation::list_shards::ListShardsOutput) -> BTreeSet<String> {
    out.shards()
        .iter()
        .map(|s| s.shard_id().to_string())
        .collect()
}

fn set(ids: &[u32]) -> BTreeSet<String> {
    ids.iter().map(|i| format!("shardId-{i:012}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shards_filters() {
    let broker = TestBroker::start().await;
    broker.create_stream("flt", 2).await;
    let client = broker.client();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_split = DateTime::from(std::time::SystemTime::now());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Split shard 0 into 2 and 3.
    client
        .split_shard()
        .stream_name("flt")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key((HALF / 2).to_string())
        .send()
        .await
        .expect("SplitShard");
    broker.wait_active("flt").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_split = DateTime::from(std::time::SystemTime::now());

    let list = |f: ShardFilter| {
        let client = client.clone();
        async move {
            client
                .list_shards()
                .stream_name("flt")
                .shard_filter(f)
                .send()
                .await
                .unwrap_or_else(|e| panic!("ListShards with filter: {e:?}"))
        }
    };
    let f = |t: ShardFilterType| ShardFilter::builder().r#type(t);

    let latest = list(f(ShardFilterType::AtLatest).build().unwrap()).await;
    assert_eq!(ids_of(&latest), set(&[1, 2, 3]), "AT_LATEST: open shards");

    let after = list(
        f(ShardFilterType::AfterShardId)
            .shard_id("shardId-000000000001")
            .build()
            .unwrap(),
    )
    .await;
    assert_eq!(ids_of(&after), set(&[2, 3]), "AFTER_SHARD_ID");

    let at_trim = list(f(ShardFilterType::AtTrimHorizon).build().unwrap()).await;
    assert_eq!(ids_of(&at_trim), set(&[0, 1]), "AT_TRIM_HORIZON");

    let from_trim = list(f(ShardFilterType::FromTrimHorizon).build().unwrap()).await;
    assert_eq!(ids_of(&from_trim), set(&[0, 1, 2, 3]), "FROM_TRIM_HORIZON");

    let at_ts_before = list(
        f(ShardFilterType::AtTimestamp)
            .timestamp(before_split)
            .build()
            .unwrap(),
    )
    .await;
    assert_eq!(
        ids_of(&at_ts_before),
        set(&[0, 1]),
        "AT_TIMESTAMP before split"
    );
    let at_ts_after = list(
        f(ShardFilterType::AtTimestamp)
            .timestamp(after_split)
            .build()
            .unwrap(),
    )
    .await;
    assert_eq!(
        ids_of(&at_ts_after),
        set(&[1, 2, 3]),
        "AT_TIMESTAMP after split"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_stream_then_not_found() {
    let broker = TestBroker::start().await;
    broker.create_stream("del", 1).await;
    let client = broker.client();
    client
        .delete_stream()
        .stream_name("del")
        .send()
        .await
        .expect("DeleteStream");
    let c = client.clone();
    eventually(Duration::from_secs(10), "stream deleted", move || {
        let c = c.clone();
        async move {
            match c.describe_stream().stream_name("del").send().await {
                Ok(out) => {
                    assert_eq!(
                        out.stream_description().unwrap().stream_status(),
                        &StreamStatus::Deleting
                    );
                    false
                }
                Err(e) => {
                    assert!(
                        matches!(
                            e.as_service_error(),
                            Some(DescribeStreamError::ResourceNotFoundException(_))
                        ),
                        "unexpected error: {e:?}"
                    );
                    true
                }
            }
        }
    })
    .await;
    let msg = assert_code(
        client.describe_stream().stream_name("del").send().await,
        "ResourceNotFoundException",
    );
    assert_eq!(msg, "Stream del under account 000000000000 not found.");
    assert_code(
        client
            .describe_stream_summary()
            .stream_name("del")
            .send()
            .await,
        "ResourceNotFoundException",
    );
    let names = client.list_streams().send().await.unwrap();
    assert!(names.stream_names().is_empty());
    // The name can be reused.
    broker.create_stream("del", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_existing_stream_is_resource_in_use() {
    let broker = TestBroker::start().await;
    broker.create_stream("dup", 1).await;
    let err = broker
        .client()
        .create_stream()
        .stream_name("dup")
        .shard_count(1)
        .send()
        .await
        .expect_err("duplicate create");
    assert!(
        matches!(
            err.as_service_error(),
            Some(CreateStreamError::ResourceInUseException(_))
        ),
        "got {err:?}"
    );
    use aws_sdk_kinesis::error::ProvideErrorMetadata;
    assert_eq!(
        err.message(),
        Some("Stream dup under account 000000000000 already exists.")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_period_changes_and_bounds() {
    let broker = TestBroker::start().await;
    broker.create_stream("ret", 1).await;
    let client = broker.client();
    let hours = || async {
        broker.wait_active("ret").await;
        client
            .describe_stream_summary()
            .stream_name("ret")
            .send()
            .await
            .unwrap()
            .stream_description_summary()
            .unwrap()
            .retention_period_hours()
    };
    assert_eq!(hours().await, 24);
    client
        .increase_stream_retention_period()
        .stream_name("ret")
        .retention_period_hours(48)
        .send()
        .await
        .expect("increase to 48");
    assert_eq!(hours().await, 48);

    // Increase to a lower value.
    let msg = assert_code(
        client
            .increase_stream_retention_period()
            .stream_name("ret")
            .retention_period_hours(36)
            .send()
            .await,
        "InvalidArgumentException",
    );
    assert_eq!(
        msg,
        "Requested retention period (36 hours) for stream ret can not be shorter than \
         existing retention period (48 hours). Use DecreaseRetentionPeriod API."
    );
    // Decrease to a higher value.
    let msg = assert_code(
        client
            .decrease_stream_retention_period()
            .stream_name("ret")
            .retention_period_hours(72)
            .send()
            .await,
        "InvalidArgumentException",
    );
    assert_eq!(
        msg,
        "Requested retention period (72 hours) for stream ret can not be longer than \
         existing retention period (48 hours). Use IncreaseRetentionPeriod API."
    );
    // Below the minimum.
    let msg = assert_code(
        client
            .decrease_stream_retention_period()
            .stream_name("ret")
            .retention_period_hours(23)
            .send()
            .await,
        "InvalidArgumentException",
    );
    assert_eq!(
        msg,
        "Minimum allowed retention period is 24 hours. Requested retention period \
         (23 hours) is too short."
    );
    // Above the maximum.
    let msg = assert_code(
        client
            .increase_stream_retention_period()
            .stream_name("ret")
            .retention_period_hours(8761)
            .send()
            .await,
        "InvalidArgumentException",
    );
    assert_eq!(
        msg,
        "Maximum allowed retention period is 8760 hours. Requested retention period \
         (8761 hours) is too long."
    );
    assert_eq!(hours().await, 48, "failed calls change nothing");

    client
        .increase_stream_retention_period()
        .stream_name("ret")
        .retention_period_hours(8760)
        .send()
        .await
        .expect("increase to the maximum");
    assert_eq!(hours().await, 8760);
    client
        .decrease_stream_retention_period()
        .stream_name("ret")
        .retention_period_hours(24)
        .send()
        .await
        .expect("decrease to the minimum");
    assert_eq!(hours().await, 24);
    assert_code(
        client
            .increase_stream_retention_period()
            .stream_name("nope")
            .retention_period_hours(48)
            .send()
            .await,
        "ResourceNotFoundException",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_tags_add_list_paginate_remove_and_limit() {
    let broker = TestBroker::start().await;
    broker.create_stream("tg", 1).await;
    let client = broker.client();
    client
        .add_tags_to_stream()
        .stream_name("tg")
        .tags("env", "test")
        .tags("app", "riffle")
        .tags("team", "streams")
        .send()
        .await
        .expect("AddTagsToStream");

    let page1 = client
        .list_tags_for_stream()
        .stream_name("tg")
        .limit(2)
        .send()
        .await
        .unwrap();
    let keys1: Vec<&str> = page1.tags().iter().map(|t| t.key()).collect();
    assert_eq!(keys1, ["app", "env"], "tags come sorted by key");
    assert_eq!(page1.tags()[0].value(), Some("riffle"));
    assert!(page1.has_more_tags());
    let page2 = client
        .list_tags_for_stream()
        .stream_name("tg")
        .limit(2)
        .exclusive_start_tag_key("env")
        .send()
        .await
        .unwrap();
    let keys2: Vec<&str> = page2.tags().iter().map(|t| t.key()).collect();
    assert_eq!(keys2, ["team"]);
    assert!(!page2.has_more_tags());

    // Overwrite a value.
    client
        .add_tags_to_stream()
        .stream_name("tg")
        .tags("env", "prod")
        .send()
        .await
        .unwrap();
    client
        .remove_tags_from_stream()
        .stream_name("tg")
        .tag_keys("team")
        .send()
        .await
        .expect("RemoveTagsFromStream");
    let all = client
        .list_tags_for_stream()
        .stream_name("tg")
        .send()
        .await
        .unwrap();
    let pairs: Vec<(&str, Option<&str>)> =
        all.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(pairs, [("app", Some("riffle")), ("env", Some("prod"))]);
    assert!(!all.has_more_tags());

    // Fill up to 50 tags in batches of 10.
    for batch in 0..5 {
        let mut req = client.add_tags_to_stream().stream_name("tg");
        for i in 0..10 {
            let n = batch * 10 + i;
            if n < 48 {
                req = req.tags(format!("k{n:02}"), format!("v{n}"));
            }
        }
        req.send().await.expect("AddTagsToStream up to 50");
    }
    let mut count = 0;
    let mut start: Option<String> = None;
    for _ in 0..20 {
        let mut req = client.list_tags_for_stream().stream_name("tg").limit(10);
        if let Some(s) = &start {
            req = req.exclusive_start_tag_key(s);
        }
        let out = req.send().await.unwrap();
        count += out.tags().len();
        start = out.tags().last().map(|t| t.key().to_string());
        if !out.has_more_tags() {
            break;
        }
    }
    assert_eq!(count, 50);
    // The 51st tag is refused; overwriting an existing one is fine.
    let (code, msg) = service_err(
        client
            .add_tags_to_stream()
            .stream_name("tg")
            .tags("one-too-many", "x")
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException", "51 tags: {msg}");
    assert_eq!(
        msg,
        "Failed to add tags to stream tg under account 000000000000 because a given stream \
         cannot have more than 50 tags associated with it."
    );
    client
        .add_tags_to_stream()
        .stream_name("tg")
        .tags("k00", "changed")
        .send()
        .await
        .expect("overwrite at 50 tags");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_characters_are_the_ones_aws_accepts() {
    let broker = TestBroker::start().await;
    broker.create_stream("tc", 1).await;
    let client = broker.client();
    // Unicode letters and numbers, separators, and _ . : / = + - @ — in keys and values.
    client
        .add_tags_to_stream()
        .stream_name("tc")
        .tags("\u{ff}", "caf\u{e9} \u{661}")
        .tags(" ", "a b")
        .tags("a_b.c:d/e=f+g-h@i", "\u{3000}")
        .send()
        .await
        .expect("AWS's tag characters are accepted");
    let tags = client
        .list_tags_for_stream()
        .stream_name("tc")
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags().len(), 3);
    for bad in ["100%", "tab\t", "semi;colon", "<x>"] {
        let (code, msg) = service_err(
            client
                .add_tags_to_stream()
                .stream_name("tc")
                .tags(bad, "v")
                .send()
                .await,
        );
        assert_eq!(code, "InvalidArgumentException", "{bad:?}: {msg}");
        assert_eq!(
            msg,
            "Some tags contain invalid characters. Valid characters: Unicode letters, digits, \
             white space, _ . : / = + - @.",
            "{bad:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_tags_by_stream_arn() {
    let broker = TestBroker::start().await;
    broker.create_stream("rt", 1).await;
    let client = broker.client();
    let arn = stream_arn("rt");
    client
        .tag_resource()
        .resource_arn(&arn)
        .tags("a", "1")
        .tags("b", "2")
        .send()
        .await
        .expect("TagResource");
    let tags = client
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .expect("ListTagsForResource");
    let mut pairs: Vec<(String, Option<String>)> = tags
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().map(str::to_string)))
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            ("a".to_string(), Some("1".to_string())),
            ("b".to_string(), Some("2".to_string()))
        ]
    );
    // Same tags visible through the stream API.
    let by_stream = client
        .list_tags_for_stream()
        .stream_name("rt")
        .send()
        .await
        .unwrap();
    assert_eq!(by_stream.tags().len(), 2);
    client
        .untag_resource()
        .resource_arn(&arn)
        .tag_keys("a")
        .send()
        .await
        .expect("UntagResource");
    let tags = client
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = tags.tags().iter().map(|t| t.key()).collect();
    assert_eq!(keys, ["b"]);
    assert_code(
        client
            .list_tags_for_resource()
            .resource_arn(stream_arn("missing"))
            .send()
            .await,
        "ResourceNotFoundException",
    );
}

fn metric_set(m: &[MetricsName]) -> BTreeSet<String> {
    m.iter().map(|x| x.as_str().to_string()).collect()
}

const ALL_SEVEN: [&str; 7] = [
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enhanced_monitoring_enable_disable() {
    let broker = TestBroker::start().await;
    broker.create_stream("mon", 1).await;
    let client = broker.client();
    let out = client
        .enable_enhanced_monitoring()
        .stream_name("mon")
        .shard_level_metrics(MetricsName::IncomingBytes)
        .send()
        .await
        .expect("EnableEnhancedMonitoring");
    assert_eq!(out.stream_name(), Some("mon"));
    assert_eq!(out.stream_arn(), Some(stream_arn("mon").as_str()));
    assert!(metric_set(out.current_shard_level_metrics()).is_empty());
    assert_eq!(
        metric_set(out.desired_shard_level_metrics()),
        BTreeSet::from(["IncomingBytes".to_string()])
    );
    broker.wait_active("mon").await;

    let out = client
        .enable_enhanced_monitoring()
        .stream_name("mon")
        .shard_level_metrics(MetricsName::All)
        .send()
        .await
        .expect("enable ALL");
    assert_eq!(
        metric_set(out.current_shard_level_metrics()),
        BTreeSet::from(["IncomingBytes".to_string()])
    );
    let all: BTreeSet<String> = ALL_SEVEN.iter().map(|s| s.to_string()).collect();
    assert_eq!(metric_set(out.desired_shard_level_metrics()), all);
    broker.wait_active("mon").await;

    let desc = client
        .describe_stream_summary()
        .stream_name("mon")
        .send()
        .await
        .unwrap();
    let em = desc
        .stream_description_summary()
        .unwrap()
        .enhanced_monitoring();
    let reported: BTreeSet<String> = em
        .iter()
        .flat_map(|e| metric_set(e.shard_level_metrics()))
        .collect();
    assert_eq!(reported, all);

    let out = client
        .disable_enhanced_monitoring()
        .stream_name("mon")
        .shard_level_metrics(MetricsName::OutgoingBytes)
        .send()
        .await
        .expect("DisableEnhancedMonitoring");
    assert_eq!(metric_set(out.current_shard_level_metrics()), all);
    let mut six = all.clone();
    six.remove("OutgoingBytes");
    assert_eq!(metric_set(out.desired_shard_level_metrics()), six);
    broker.wait_active("mon").await;

    let out = client
        .disable_enhanced_monitoring()
        .stream_name("mon")
        .shard_level_metrics(MetricsName::All)
        .send()
        .await
        .expect("disable ALL");
    assert_eq!(metric_set(out.current_shard_level_metrics()), six);
    assert!(metric_set(out.desired_shard_level_metrics()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_encryption_start_stop() {
    let broker = TestBroker::start().await;
    broker.create_stream("enc", 1).await;
    let client = broker.client();
    let summary = || async {
        client
            .describe_stream_summary()
            .stream_name("enc")
            .send()
            .await
            .unwrap()
            .stream_description_summary()
            .cloned()
            .unwrap()
    };
    client
        .start_stream_encryption()
        .stream_name("enc")
        .encryption_type(EncryptionType::Kms)
        .key_id("alias/aws/kinesis")
        .send()
        .await
        .expect("StartStreamEncryption");
    broker.wait_active("enc").await;
    let s = summary().await;
    assert_eq!(s.encryption_type(), Some(&EncryptionType::Kms));
    assert_eq!(s.key_id(), Some("alias/aws/kinesis"));

    // Records written while encrypted say so.
    let put = client
        .put_record()
        .stream_name("enc")
        .partition_key("k")
        .data(blob(b"secret".to_vec()))
        .send()
        .await
        .expect("PutRecord");
    assert_eq!(put.encryption_type(), Some(&EncryptionType::Kms));
    let read = read_shard(&client, "enc", "shardId-000000000000").await;
    assert_eq!(read.records.len(), 1);
    assert_eq!(
        read.records[0].encryption_type(),
        Some(&EncryptionType::Kms)
    );

    client
        .stop_stream_encryption()
        .stream_name("enc")
        .encryption_type(EncryptionType::Kms)
        .key_id("alias/aws/kinesis")
        .send()
        .await
        .expect("StopStreamEncryption");
    broker.wait_active("enc").await;
    let s = summary().await;
    assert_eq!(s.encryption_type(), Some(&EncryptionType::None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_stream_mode_to_on_demand_and_back() {
    let broker = TestBroker::start().await;
    broker.create_stream("mode", 2).await;
    let client = broker.client();
    let arn = stream_arn("mode");
    client
        .update_stream_mode()
        .stream_arn(&arn)
        .stream_mode_details(mode(StreamMode::OnDemand))
        .send()
        .await
        .expect("UpdateStreamMode ON_DEMAND");
    broker.wait_active("mode").await;
    let s = client
        .describe_stream_summary()
        .stream_name("mode")
        .send()
        .await
        .unwrap();
    assert_eq!(
        s.stream_description_summary()
            .unwrap()
            .stream_mode_details()
            .map(|m| m.stream_mode().clone()),
        Some(StreamMode::OnDemand)
    );
    client
        .update_stream_mode()
        .stream_arn(&arn)
        .stream_mode_details(mode(StreamMode::Provisioned))
        .send()
        .await
        .expect("UpdateStreamMode PROVISIONED");
    broker.wait_active("mode").await;
    let summaries = client.list_streams().send().await.unwrap();
    assert_eq!(
        summaries.stream_summaries()[0]
            .stream_mode_details()
            .map(|m| m.stream_mode().clone()),
        Some(StreamMode::Provisioned)
    );
    assert_code(
        client
            .update_stream_mode()
            .stream_arn(stream_arn("missing"))
            .stream_mode_details(mode(StreamMode::OnDemand))
            .send()
            .await,
        "ResourceNotFoundException",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_limits_counts_open_shards() {
    let broker = TestBroker::builder()
        .config_toml(config(
            "status_delay = \"50ms\"\nshard_limit = 20",
            "",
            LIMITS_OFF,
        ))
        .start()
        .await;
    let client = broker.client();
    let l = client
        .describe_limits()
        .send()
        .await
        .expect("DescribeLimits");
    assert_eq!(l.shard_limit(), 20);
    assert_eq!(l.open_shard_count(), 0);
    broker.create_stream("lim-a", 3).await;
    broker.create_stream("lim-b", 2).await;
    let l = client.describe_limits().send().await.unwrap();
    assert_eq!(l.shard_limit(), 20);
    assert_eq!(l.open_shard_count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_settings_describe_and_update() {
    let broker = TestBroker::start().await;
    let client = broker.client();
    let before = client
        .describe_account_settings()
        .send()
        .await
        .expect("DescribeAccountSettings");
    if let Some(c) = before.minimum_throughput_billing_commitment() {
        assert_eq!(
            c.status(),
            &MinimumThroughputBillingCommitmentOutputStatus::Disabled
        );
    }
    let out = client
        .update_account_settings()
        .minimum_throughput_billing_commitment(
            MinimumThroughputBillingCommitmentInput::builder()
                .status(MinimumThroughputBillingCommitmentInputStatus::Enabled)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("UpdateAccountSettings");
    let c = out
        .minimum_throughput_billing_commitment()
        .expect("commitment in output");
    assert_eq!(
        c.status(),
        &MinimumThroughputBillingCommitmentOutputStatus::Enabled
    );
    assert!(c.started_at().is_some());
    let after = client.describe_account_settings().send().await.unwrap();
    assert_eq!(
        after
            .minimum_throughput_billing_commitment()
            .map(|c| c.status().clone()),
        Some(MinimumThroughputBillingCommitmentOutputStatus::Enabled)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_max_record_size_allows_two_mib_records() {
    let broker = TestBroker::start().await;
    broker.create_stream("big", 1).await;
    let client = broker.client();
    let two_mib = vec![0xabu8; 2 * 1024 * 1024];
    let (code, _) = service_err(
        client
            .put_record()
            .stream_name("big")
            .partition_key("k")
            .data(blob(two_mib.clone()))
            .send()
            .await,
    );
    assert_eq!(
        code, "ValidationException",
        "2 MiB before raising the limit"
    );
    client
        .update_max_record_size()
        .stream_arn(stream_arn("big"))
        .max_record_size_in_kib(2048)
        .send()
        .await
        .expect("UpdateMaxRecordSize");
    broker.wait_active("big").await;
    let s = client
        .describe_stream_summary()
        .stream_name("big")
        .send()
        .await
        .unwrap();
    assert_eq!(
        s.stream_description_summary()
            .unwrap()
            .max_record_size_in_kib(),
        Some(2048)
    );
    client
        .put_record()
        .stream_name("big")
        .partition_key("k")
        .data(blob(two_mib.clone()))
        .send()
        .await
        .expect("2 MiB record accepted after UpdateMaxRecordSize");
    let read = read_shard(&client, "big", "shardId-000000000000").await;
    assert_eq!(read.records.len(), 1);
    assert!(read.records[0].data().as_ref() == two_mib.as_slice());
    // Out of range values are refused.
    let (code, _) = service_err(
        client
            .update_max_record_size()
            .stream_arn(stream_arn("big"))
            .max_record_size_in_kib(20_000)
            .send()
            .await,
    );
    assert!(
        code == "ValidationException" || code == "InvalidArgumentException",
        "got {code}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_stream_warm_throughput_on_demand() {
    let broker = TestBroker::start().await;
    let client = broker.client();
    client
        .update_account_settings()
        .minimum_throughput_billing_commitment(
            MinimumThroughputBillingCommitmentInput::builder()
                .status(MinimumThroughputBillingCommitmentInputStatus::Enabled)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("UpdateAccountSettings");
    client
        .create_stream()
        .stream_name("warm")
        .stream_mode_details(mode(StreamMode::OnDemand))
        .send()
        .await
        .unwrap();
    broker.wait_active("warm").await;
    let out = client
        .update_stream_warm_throughput()
        .stream_name("warm")
        .warm_throughput_mibps(100)
        .send()
        .await
        .expect("UpdateStreamWarmThroughput");
    assert_eq!(out.stream_name(), Some("warm"));
    assert_eq!(out.stream_arn(), Some(stream_arn("warm").as_str()));
    assert_eq!(
        out.warm_throughput().and_then(|w| w.target_mibps()),
        Some(100)
    );
    broker.wait_active("warm").await;
    let s = client
        .describe_stream_summary()
        .stream_name("warm")
        .send()
        .await
        .unwrap();
    assert_eq!(
        s.stream_description_summary()
            .unwrap()
            .warm_throughput()
            .and_then(|w| w.target_mibps()),
        Some(100)
    );
}

/// Every stream operation addressed by StreamARN instead of StreamName.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_operation_accepts_stream_arn() {
    let broker = TestBroker::start().await;
    broker.create_stream("byarn", 2).await;
    let client = broker.client();
    let arn = stream_arn("byarn");

    let d = client
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(d.stream_description().unwrap().stream_name(), "byarn");
    let s = client
        .describe_stream_summary()
        .stream_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        s.stream_description_summary().unwrap().open_shard_count(),
        2
    );
    let ls = client.list_shards().stream_arn(&arn).send().await.unwrap();
    assert_eq!(ls.shards().len(), 2);

    let put = client
        .put_record()
        .stream_arn(&arn)
        .partition_key("pk")
        .data(blob(b"one".to_vec()))
        .send()
        .await
        .unwrap();
    let batch = client
        .put_records()
        .stream_arn(&arn)
        .records(
            aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                .partition_key("pk")
                .data(blob(b"two".to_vec()))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(batch.failed_record_count(), Some(0));
    let it = client
        .get_shard_iterator()
        .stream_arn(&arn)
        .shard_id(put.shard_id())
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap();
    let recs = client
        .get_records()
        .stream_arn(&arn)
        .shard_iterator(it.shard_iterator().unwrap())
        .send()
        .await
        .unwrap();
    let data: Vec<&[u8]> = recs.records().iter().map(|r| r.data().as_ref()).collect();
    assert_eq!(data, [b"one".as_slice(), b"two".as_slice()]);

    client
        .add_tags_to_stream()
        .stream_arn(&arn)
        .tags("k", "v")
        .send()
        .await
        .unwrap();
    let tags = client
        .list_tags_for_stream()
        .stream_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags().len(), 1);
    client
        .remove_tags_from_stream()
        .stream_arn(&arn)
        .tag_keys("k")
        .send()
        .await
        .unwrap();

    client
        .increase_stream_retention_period()
        .stream_arn(&arn)
        .retention_period_hours(48)
        .send()
        .await
        .unwrap();
    broker.wait_active("byarn").await;
    client
        .decrease_stream_retention_period()
        .stream_arn(&arn)
        .retention_period_hours(24)
        .send()
        .await
        .unwrap();
    broker.wait_active("byarn").await;
    client
        .enable_enhanced_monitoring()
        .stream_arn(&arn)
        .shard_level_metrics(MetricsName::IncomingRecords)
        .send()
        .await
        .unwrap();
    broker.wait_active("byarn").await;
    client
        .disable_enhanced_monitoring()
        .stream_arn(&arn)
        .shard_level_metrics(MetricsName::IncomingRecords)
        .send()
        .await
        .unwrap();
    broker.wait_active("byarn").await;
    client
        .start_stream_encryption()
        .stream_arn(&arn)
        .encryption_type(EncryptionType::Kms)
        .key_id("alias/aws/kinesis")
        .send()
        .await
        .unwrap();
    broker.wait_active("byarn").await;
    client
        .stop_stream_encryption()
        .stream_arn(&arn)
        .encryption_type(EncryptionType::Kms)
        .key_id("alias/aws/kinesis")
        .send()
        .await
        .unwrap();
    broker.wait_active("byarn").await;

    client
        .split_shard()
        .stream_arn(&arn)
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key((HALF / 2).to_string())
        .send()
        .await
        .expect("SplitShard by ARN");
    broker.wait_active("byarn").await;
    client
        .merge_shards()
        .stream_arn(&arn)
        .shard_to_merge("shardId-000000000002")
        .adjacent_shard_to_merge("shardId-000000000003")
        .send()
        .await
        .expect("MergeShards by ARN");
    broker.wait_active("byarn").await;
    let u = client
        .update_shard_count()
        .stream_arn(&arn)
        .target_shard_count(4)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .expect("UpdateShardCount by ARN");
    assert_eq!(u.current_shard_count(), Some(2));
    assert_eq!(u.target_shard_count(), Some(4));
    broker.wait_active("byarn").await;

    assert_code(
        client
            .describe_stream()
            .stream_arn(stream_arn("other"))
            .send()
            .await,
        "ResourceNotFoundException",
    );
    client
        .delete_stream()
        .stream_arn(&arn)
        .send()
        .await
        .expect("DeleteStream by ARN");
    let c = client.clone();
    eventually(Duration::from_secs(10), "deleted", move || {
        let c = c.clone();
        async move {
            c.describe_stream_summary()
                .stream_name("byarn")
                .send()
                .await
                .is_err()
        }
    })
    .await;
}
