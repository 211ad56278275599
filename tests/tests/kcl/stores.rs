//! The lease stores against real backends: the conformance suite on DynamoDB (moto_server),
//! and Java KCL table compatibility.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeyType, ProjectionType};
use riffle_kcl::lease::conformance;
use riffle_kcl::{Checkpoint, DynamoDbLeaseStore, LeaseStore, SequenceNumber};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_store_passes_the_conformance_suite() {
    let moto = MotoServer::start().await;
    let store = DynamoDbLeaseStore::new(moto.dynamodb_client(), "conformance-app");
    store.initialize().await.unwrap();
    // A second initialize finds the table and does nothing.
    store.initialize().await.unwrap();
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_has_the_java_kcl_schema_and_java_items_are_shared() {
    let moto = MotoServer::start().await;
    let ddb = moto.dynamodb_client();
    let store = DynamoDbLeaseStore::new(ddb.clone(), "java-app");
    store.initialize().await.unwrap();

    // Schema: leaseKey HASH, PAY_PER_REQUEST, LeaseOwnerToLeaseKeyIndex (leaseOwner HASH,
    // leaseKey RANGE, KEYS_ONLY) declared at creation.
    let t = ddb
        .describe_table()
        .table_name("java-app")
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let keys: Vec<(String, KeyType)> = t
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name().to_owned(), k.key_type().clone()))
        .collect();
    assert_eq!(keys, vec![("leaseKey".to_owned(), KeyType::Hash)]);
    let gsi = &t.global_secondary_indexes()[0];
    assert_eq!(gsi.index_name(), Some("LeaseOwnerToLeaseKeyIndex"));
    let gkeys: Vec<(String, KeyType)> = gsi
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name().to_owned(), k.key_type().clone()))
        .collect();
    assert_eq!(
        gkeys,
        vec![
            ("leaseOwner".to_owned(), KeyType::Hash),
            ("leaseKey".to_owned(), KeyType::Range)
        ]
    );
    assert_eq!(
        gsi.projection().and_then(|p| p.projection_type()),
        Some(&ProjectionType::KeysOnly)
    );

    // An item as the Java KCL 3.x writes it, with attributes kcl does not use.
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: &str| AttributeValue::N(v.to_owned());
    let item: HashMap<String, AttributeValue> = [
        ("leaseKey", s("shardId-000000000007")),
        ("leaseOwner", s("java-worker-1")),
        ("leaseCounter", n("17")),
        (
            "checkpoint",
            s("49590338271490256608559692538361571095921575989136588898"),
        ),
        ("checkpointSubSequenceNumber", n("2")),
        ("ownerSwitchesSinceCheckpoint", n("3")),
        (
            "parentShardId",
            AttributeValue::Ss(vec!["shardId-000000000003".into()]),
        ),
        ("startingHashKey", s("0")),
        (
            "endingHashKey",
            s("170141183460469231731687303715884105727"),
        ),
        ("throughputKBps", n("12.5")),
        (
            "pendingCheckpoint",
            s("49590338271490256608559692538361571095921575989136588899"),
        ),
        ("pendingCheckpointSubSequenceNumber", n("0")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    ddb.put_item()
        .table_name("java-app")
        .set_item(Some(item))
        .send()
        .await
        .unwrap();

    let lease = store.get("shardId-000000000007").await.unwrap().unwrap();
    assert_eq!(lease.owner.as_deref(), Some("java-worker-1"));
    assert_eq!(lease.counter, 17);
    assert_eq!(
        lease.checkpoint,
        Checkpoint::at(
            SequenceNumber::new("49590338271490256608559692538361571095921575989136588898")
                .unwrap(),
            2
        )
    );
    assert_eq!(lease.parent_shard_ids, vec!["shardId-000000000003"]);
    assert_eq!(store.list().await.unwrap(), vec![lease.clone()]);

    // kcl takes it over (as after the Java worker expired) and checkpoints.
    let taken = store.take(&lease, "rust-worker").await.unwrap();
    let cp = Checkpoint::at(
        SequenceNumber::new("49590338271490256608559692538361571095921575989136588999").unwrap(),
        0,
    );
    store.checkpoint(&taken, &cp).await.unwrap();
    store
        .set_child_shards("shardId-000000000007", &["shardId-000000000009".to_owned()])
        .await
        .unwrap();

    // What a Java KCL reads back: its attribute names and types, unknown ones kept.
    let raw = ddb
        .get_item()
        .table_name("java-app")
        .key("leaseKey", s("shardId-000000000007"))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(raw["leaseOwner"], s("rust-worker"));
    assert_eq!(raw["leaseCounter"], n("19"));
    assert_eq!(
        raw["checkpoint"],
        s("49590338271490256608559692538361571095921575989136588999")
    );
    assert_eq!(raw["checkpointSubSequenceNumber"], n("0"));
    assert_eq!(raw["ownerSwitchesSinceCheckpoint"], n("0"));
    assert_eq!(
        raw["childShardIds"],
        AttributeValue::Ss(vec!["shardId-000000000009".into()])
    );
    assert_eq!(
        raw["parentShardId"],
        AttributeValue::Ss(vec!["shardId-000000000003".into()])
    );
    assert_eq!(
        raw["throughputKBps"],
        n("12.5"),
        "unknown attributes are kept"
    );
    assert!(
        !raw.contains_key("pendingCheckpoint"),
        "a checkpoint clears the pending checkpoint, as the Java KCL's does"
    );

    // And a lease kcl creates reads like one the Java KCL creates.
    let fresh = riffle_kcl::Lease::new(
        "shardId-000000000010",
        vec![],
        None,
        Checkpoint::TrimHorizon,
    );
    assert!(store.create_if_not_exists(&fresh).await.unwrap());
    let raw = ddb
        .get_item()
        .table_name("java-app")
        .key("leaseKey", s("shardId-000000000010"))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let mut names: Vec<&str> = raw.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "checkpoint",
            "checkpointSubSequenceNumber",
            "leaseCounter",
            "leaseKey",
            "ownerSwitchesSinceCheckpoint"
        ]
    );
    assert_eq!(raw["checkpoint"], s("TRIM_HORIZON"));

    // Items of 3.5's other entity types are not leases.
    ddb.put_item()
        .table_name("java-app")
        .item("leaseKey", s("worker-metrics-1"))
        .item("entityType", s("WORKER_METRIC_STATS"))
        .send()
        .await
        .unwrap();
    assert_eq!(store.list().await.unwrap().len(), 2);
}
