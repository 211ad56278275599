//! The DynamoDB lease store, with the Java KCL's table schema.
//!
//! One item per shard, keyed by `leaseKey` (S, HASH). The attributes this store reads and
//! writes are exactly the Java KCL's (`DynamoDBLeaseSerializer`):
//!
//! | attribute | type | |
//! |---|---|---|
//! | `leaseKey` | S | shard id |
//! | `leaseOwner` | S | worker id; absent when unowned |
//! | `leaseCounter` | N | fencing counter |
//! | `checkpoint` | S | sequence number, or `TRIM_HORIZON` `LATEST` `AT_TIMESTAMP` `SHARD_END` |
//! | `checkpointSubSequenceNumber` | N | user record index inside an aggregate |
//! | `ownerSwitchesSinceCheckpoint` | N | |
//! | `parentShardId` | SS | absent when the shard has no parents |
//! | `childShardIds` | SS | written at shard end |
//! | `startingHashKey`, `endingHashKey` | S | decimal hash range |
//!
//! Every write but lease creation is an `UpdateItem` with a `ConditionExpression` on
//! `leaseCounter` (and `leaseOwner`), touching only the attributes above: attributes this
//! store does not know (3.x's `throughputKBps`, `checkpointOwner`, `entityType`, the
//! `pendingCheckpoint*` pair, …) are left as they are, so a Java KCL can share the table. Two
//! exceptions follow the Java KCL: a take removes `checkpointOwner` (a taken lease is not in a
//! graceful handoff any more), a checkpoint removes the `pendingCheckpoint*` attributes, and a
//! renewal fails while `checkpointOwner` is set (a 3.x leader is handing the lease over).
//! Items whose `entityType` is set to something other than `LEASE` (3.5's single-table
//! format) are not leases and are skipped by [`list`](LeaseStore::list).
//!
//! [`initialize`](LeaseStore::initialize) creates the table if it is missing:
//! `PAY_PER_REQUEST`, with the `LeaseOwnerToLeaseKeyIndex` global secondary index (HASH
//! `leaseOwner`, RANGE `leaseKey`, `KEYS_ONLY`) declared at creation, and waits until the
//! table and index are `ACTIVE`. On an existing table without the index it tries to add it
//! with `UpdateTable`, as KCL 3.x does, and carries on (with a warning) if that fails.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CreateGlobalSecondaryIndexAction,
    GlobalSecondaryIndex, GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;
use riffle_core::{HashKey, HashKeyRange};

use super::{after_write, Lease, LeaseStore};
use crate::checkpoint::Checkpoint;
use crate::error::LeaseStoreError;

/// The 3.x index for finding a worker's leases.
pub const LEASE_OWNER_INDEX: &str = "LeaseOwnerToLeaseKeyIndex";

/// How long [`LeaseStore::initialize`] waits for the table to become `ACTIVE`.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

mod attr {
    pub(super) const KEY: &str = "leaseKey";
    pub(super) const OWNER: &str = "leaseOwner";
    pub(super) const COUNTER: &str = "leaseCounter";
    pub(super) const CHECKPOINT: &str = "checkpoint";
    pub(super) const SUB_SEQUENCE: &str = "checkpointSubSequenceNumber";
    pub(super) const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
    pub(super) const PARENTS: &str = "parentShardId";
    pub(super) const CHILDREN: &str = "childShardIds";
    pub(super) const STARTING_HASH_KEY: &str = "startingHashKey";
    pub(super) const ENDING_HASH_KEY: &str = "endingHashKey";
    pub(super) const ENTITY_TYPE: &str = "entityType";
}

/// Leases in a DynamoDB table (see the module docs).
#[derive(Debug, Clone)]
pub struct DynamoDbLeaseStore {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

impl DynamoDbLeaseStore {
    /// A store on `table` (the Java KCL names it after the application).
    pub fn new(client: Client, table: impl Into<String>) -> DynamoDbLeaseStore {
        DynamoDbLeaseStore {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    async fn create_table(&self) -> Result<(), LeaseStoreError> {
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| LeaseStoreError::backend("initialize", e))
        };
        let def = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| LeaseStoreError::backend("initialize", e))
        };
        let res = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key(attr::KEY, KeyType::Hash)?)
            .attribute_definitions(def(attr::KEY)?)
            .attribute_definitions(def(attr::OWNER)?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(LEASE_OWNER_INDEX)
                    .key_schema(key(attr::OWNER, KeyType::Hash)?)
                    .key_schema(key(attr::KEY, KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::KeysOnly)
                            .build(),
                    )
                    .build()
                    .map_err(|e| LeaseStoreError::backend("initialize", e))?,
            )
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            // Another worker created it first.
            Err(e) if e.code() == Some("ResourceInUseException") => Ok(()),
            Err(e) => Err(classify("initialize", "", e)),
        }
    }

    async fn add_owner_index(&self) {
        let res = async {
            let key = |name: &str, kind| {
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build()
            };
            let def = |name: &str| {
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
            };
            let action = CreateGlobalSecondaryIndexAction::builder()
                .index_name(LEASE_OWNER_INDEX)
                .key_schema(key(attr::OWNER, KeyType::Hash)?)
                .key_schema(key(attr::KEY, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::KeysOnly)
                        .build(),
                )
                .build()?;
            self.client
                .update_table()
                .table_name(&self.table)
                .attribute_definitions(def(attr::KEY)?)
                .attribute_definitions(def(attr::OWNER)?)
                .global_secondary_index_updates(
                    GlobalSecondaryIndexUpdate::builder().create(action).build(),
                )
                .send()
                .await
                .map_err(|e| Box::new(e) as crate::BoxError)?;
            Ok::<_, crate::BoxError>(())
        }
        .await;
        if let Err(e) = res {
            tracing::warn!(table = %self.table, error = %e, "could not add {LEASE_OWNER_INDEX}");
        }
    }

    /// Waits until the table (and its indexes) are ACTIVE; whether the owner index exists.
    async fn wait_active(&self) -> Result<bool, LeaseStoreError> {
        let deadline = tokio::time::Instant::now() + ACTIVE_TIMEOUT;
        loop {
            let out = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| classify("initialize", "", e))?;
            let table = out.table();
            let active = table.and_then(|t| t.table_status()) == Some(&TableStatus::Active);
            let indexes = table.map(|t| t.global_secondary_indexes()).unwrap_or(&[]);
            let indexes_active = indexes
                .iter()
                .all(|i| i.index_status().is_none_or(|s| *s == IndexStatus::Active));
            if active && indexes_active {
                return Ok(indexes
                    .iter()
                    .any(|i| i.index_name() == Some(LEASE_OWNER_INDEX)));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(LeaseStoreError::backend(
                    "initialize",
                    format!("table {} not ACTIVE after {ACTIVE_TIMEOUT:?}", self.table),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn key(key: &str) -> (String, AttributeValue) {
        (attr::KEY.to_owned(), AttributeValue::S(key.to_owned()))
    }

    /// A fenced UpdateItem: `update` and `condition` may use `:counter` (held), `:next`
    /// (counter + 1) and `:owner` (held owner), plus `values`.
    async fn fenced(
        &self,
        operation: &'static str,
        lease: &Lease,
        update: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<(), LeaseStoreError> {
        let (k, v) = Self::key(&lease.key);
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(k, v)
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_values(":counter", n(lease.counter))
            .expression_attribute_values(":next", n(lease.counter + 1));
        if let Some(owner) = &lease.owner {
            req = req.expression_attribute_values(":owner", AttributeValue::S(owner.clone()));
        }
        for (name, value) in values {
            req = req.expression_attribute_values(name, value);
        }
        req.send()
            .await
            .map(drop)
            .map_err(|e| classify(operation, &lease.key, e))
    }
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Maps an SDK error: a failed condition is a [`LeaseStoreError::Conflict`], throttling is
/// [`LeaseStoreError::Throttled`], anything else a backend failure.
fn classify<E, R>(operation: &'static str, key: &str, e: SdkError<E, R>) -> LeaseStoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match e.code() {
        Some("ConditionalCheckFailedException") => LeaseStoreError::Conflict {
            key: key.to_owned(),
        },
        Some(
            "ProvisionedThroughputExceededException"
            | "RequestLimitExceeded"
            | "ThrottlingException"
            | "LimitExceededException",
        ) => LeaseStoreError::Throttled { operation },
        _ => LeaseStoreError::backend(operation, e),
    }
}

/// The item `create_if_not_exists` writes.
fn to_item(lease: &Lease) -> Item {
    let mut item = Item::new();
    item.insert(attr::KEY.into(), AttributeValue::S(lease.key.clone()));
    if let Some(owner) = &lease.owner {
        item.insert(attr::OWNER.into(), AttributeValue::S(owner.clone()));
    }
    item.insert(attr::COUNTER.into(), n(lease.counter));
    let (cp, sub) = lease.checkpoint.to_parts();
    item.insert(attr::CHECKPOINT.into(), AttributeValue::S(cp.to_owned()));
    item.insert(attr::SUB_SEQUENCE.into(), n(sub));
    item.insert(
        attr::OWNER_SWITCHES.into(),
        n(lease.owner_switches_since_checkpoint),
    );
    if !lease.parent_shard_ids.is_empty() {
        item.insert(
            attr::PARENTS.into(),
            AttributeValue::Ss(lease.parent_shard_ids.clone()),
        );
    }
    if !lease.child_shard_ids.is_empty() {
        item.insert(
            attr::CHILDREN.into(),
            AttributeValue::Ss(lease.child_shard_ids.clone()),
        );
    }
    if let Some(range) = lease.hash_range {
        item.insert(
            attr::STARTING_HASH_KEY.into(),
            AttributeValue::S(range.start.to_string()),
        );
        item.insert(
            attr::ENDING_HASH_KEY.into(),
            AttributeValue::S(range.end.to_string()),
        );
    }
    item
}

/// Whether an item is a lease (not one of 3.5's other entity types).
fn is_lease(item: &Item) -> bool {
    match item.get(attr::ENTITY_TYPE) {
        None => true,
        Some(AttributeValue::S(t)) => t == "LEASE",
        Some(_) => false,
    }
}

/// Reads a lease item.
fn from_item(item: &Item) -> Result<Lease, LeaseStoreError> {
    let key = match item.get(attr::KEY) {
        Some(AttributeValue::S(k)) => k.clone(),
        _ => {
            return Err(LeaseStoreError::Corrupt {
                key: String::new(),
                reason: "no leaseKey".into(),
            })
        }
    };
    let corrupt = |reason: String| LeaseStoreError::Corrupt {
        key: key.clone(),
        reason,
    };
    let s = |name: &str| -> Result<Option<&String>, LeaseStoreError> {
        match item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v)),
            Some(other) => Err(corrupt(format!("{name} is not S: {other:?}"))),
        }
    };
    let num = |name: &str| -> Result<Option<u64>, LeaseStoreError> {
        match item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse()
                .map(Some)
                .map_err(|_| corrupt(format!("{name} is not a whole number: {v}"))),
            Some(other) => Err(corrupt(format!("{name} is not N: {other:?}"))),
        }
    };
    let ss = |name: &str| -> Result<Vec<String>, LeaseStoreError> {
        match item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(Vec::new()),
            Some(AttributeValue::Ss(v)) => {
                let mut v = v.clone();
                v.sort();
                Ok(v)
            }
            // Some writers store a single parent as S.
            Some(AttributeValue::S(v)) => Ok(vec![v.clone()]),
            Some(other) => Err(corrupt(format!("{name} is not SS: {other:?}"))),
        }
    };
    let counter = num(attr::COUNTER)?.ok_or_else(|| corrupt("no leaseCounter".into()))?;
    let checkpoint = match s(attr::CHECKPOINT)? {
        Some(cp) => Checkpoint::from_parts(cp, num(attr::SUB_SEQUENCE)?.unwrap_or(0))
            .map_err(|e| corrupt(e.to_string()))?,
        None => return Err(corrupt("no checkpoint".into())),
    };
    let hash_key = |name: &str| -> Result<Option<HashKey>, LeaseStoreError> {
        s(name)?
            .map(|v| v.parse().map_err(|e| corrupt(format!("{name}: {e}"))))
            .transpose()
    };
    let hash_range = match (
        hash_key(attr::STARTING_HASH_KEY)?,
        hash_key(attr::ENDING_HASH_KEY)?,
    ) {
        (Some(a), Some(b)) => {
            Some(HashKeyRange::new(a, b).ok_or_else(|| corrupt("empty hash range".into()))?)
        }
        _ => None,
    };
    Ok(Lease {
        owner: s(attr::OWNER)?.cloned(),
        counter,
        checkpoint,
        owner_switches_since_checkpoint: num(attr::OWNER_SWITCHES)?.unwrap_or(0),
        parent_shard_ids: ss(attr::PARENTS)?,
        child_shard_ids: ss(attr::CHILDREN)?,
        hash_range,
        key,
    })
}

fn owner_required(lease: &Lease) -> Result<(), LeaseStoreError> {
    match lease.owner {
        Some(_) => Ok(()),
        None => Err(LeaseStoreError::Conflict {
            key: lease.key.clone(),
        }),
    }
}

#[async_trait]
impl LeaseStore for DynamoDbLeaseStore {
    async fn initialize(&self) -> Result<(), LeaseStoreError> {
        let exists = match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e) if e.code() == Some("ResourceNotFoundException") => false,
            Err(e) => return Err(classify("initialize", "", e)),
        };
        if !exists {
            tracing::info!(table = %self.table, "creating lease table");
            self.create_table().await?;
        }
        if !self.wait_active().await? {
            self.add_owner_index().await;
            self.wait_active().await?;
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Lease>, LeaseStoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("list", "", e))?;
            for item in page.items() {
                if !is_lease(item) {
                    continue;
                }
                match from_item(item) {
                    Ok(lease) => out.push(lease),
                    Err(e) => {
                        tracing::warn!(table = %self.table, error = %e, "skipping lease item")
                    }
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn get(&self, key: &str) -> Result<Option<Lease>, LeaseStoreError> {
        let (k, v) = Self::key(key);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(k, v)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("get", key, e))?;
        out.item().map(from_item).transpose()
    }

    async fn create_if_not_exists(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(lease)))
            .condition_expression("attribute_not_exists(leaseKey)")
            .send()
            .await
            .map_err(|e| classify("create", &lease.key, e))
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn renew(&self, lease: &Lease) -> Result<Lease, LeaseStoreError> {
        owner_required(lease)?;
        self.fenced(
            "renew",
            lease,
            "SET leaseCounter = :next",
            "leaseCounter = :counter AND leaseOwner = :owner \
             AND attribute_not_exists(checkpointOwner)",
            vec![],
        )
        .await?;
        Ok(after_write(lease))
    }

    async fn take(&self, lease: &Lease, owner: &str) -> Result<Lease, LeaseStoreError> {
        let mut next = after_write(lease);
        if !lease.is_owned_by(owner) {
            next.owner_switches_since_checkpoint += 1;
        }
        next.owner = Some(owner.to_owned());
        let condition = if lease.owner.is_some() {
            "leaseCounter = :counter AND leaseOwner = :owner"
        } else {
            "leaseCounter = :counter AND attribute_not_exists(leaseOwner)"
        };
        self.fenced(
            "take",
            lease,
            "SET leaseCounter = :next, leaseOwner = :new_owner, \
             ownerSwitchesSinceCheckpoint = :switches REMOVE checkpointOwner",
            condition,
            vec![
                (":new_owner", AttributeValue::S(owner.to_owned())),
                (":switches", n(next.owner_switches_since_checkpoint)),
            ],
        )
        .await?;
        Ok(next)
    }

    async fn release(&self, lease: &Lease) -> Result<Lease, LeaseStoreError> {
        owner_required(lease)?;
        self.fenced(
            "release",
            lease,
            "SET leaseCounter = :next REMOVE leaseOwner, checkpointOwner",
            "leaseCounter = :counter AND leaseOwner = :owner",
            vec![],
        )
        .await?;
        let mut next = after_write(lease);
        next.owner = None;
        Ok(next)
    }

    async fn checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
    ) -> Result<Lease, LeaseStoreError> {
        owner_required(lease)?;
        let (cp, sub) = checkpoint.to_parts();
        self.fenced(
            "checkpoint",
            lease,
            "SET leaseCounter = :next, checkpoint = :checkpoint, \
             checkpointSubSequenceNumber = :sub, ownerSwitchesSinceCheckpoint = :zero \
             REMOVE pendingCheckpoint, pendingCheckpointSubSequenceNumber, pendingCheckpointState",
            "leaseCounter = :counter AND leaseOwner = :owner",
            vec![
                (":checkpoint", AttributeValue::S(cp.to_owned())),
                (":sub", n(sub)),
                (":zero", n(0)),
            ],
        )
        .await?;
        let mut next = after_write(lease);
        next.checkpoint = checkpoint.clone();
        next.owner_switches_since_checkpoint = 0;
        Ok(next)
    }

    async fn set_child_shards(
        &self,
        key: &str,
        children: &[String],
    ) -> Result<(), LeaseStoreError> {
        let (k, v) = Self::key(key);
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(k, v)
            .condition_expression("attribute_exists(leaseKey)");
        let req = if children.is_empty() {
            req.update_expression("REMOVE childShardIds")
        } else {
            req.update_expression("SET childShardIds = :children")
                .expression_attribute_values(":children", AttributeValue::Ss(children.to_vec()))
        };
        req.send()
            .await
            .map(drop)
            .map_err(|e| classify("set_child_shards", key, e))
    }

    async fn delete(&self, key: &str) -> Result<(), LeaseStoreError> {
        let (k, v) = Self::key(key);
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(k, v)
            .send()
            .await
            .map(drop)
            .map_err(|e| classify("delete", key, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_items_read_and_unknown_entities_are_skipped() {
        let mut item = Item::new();
        item.insert(
            "leaseKey".into(),
            AttributeValue::S("shardId-000000000003".into()),
        );
        item.insert("leaseOwner".into(), AttributeValue::S("java-worker".into()));
        item.insert("leaseCounter".into(), AttributeValue::N("42".into()));
        item.insert(
            "checkpoint".into(),
            AttributeValue::S("49590338271490256608559692538361571095921575989136588898".into()),
        );
        item.insert(
            "checkpointSubSequenceNumber".into(),
            AttributeValue::N("3".into()),
        );
        item.insert(
            "ownerSwitchesSinceCheckpoint".into(),
            AttributeValue::N("1".into()),
        );
        item.insert(
            "parentShardId".into(),
            AttributeValue::Ss(vec!["shardId-000000000001".into()]),
        );
        item.insert("startingHashKey".into(), AttributeValue::S("0".into()));
        item.insert("endingHashKey".into(), AttributeValue::S("99".into()));
        item.insert("throughputKBps".into(), AttributeValue::N("12.5".into()));
        let lease = from_item(&item).unwrap();
        assert_eq!(lease.key, "shardId-000000000003");
        assert_eq!(lease.owner.as_deref(), Some("java-worker"));
        assert_eq!(lease.counter, 42);
        assert_eq!(lease.checkpoint.to_parts().1, 3);
        assert_eq!(lease.parent_shard_ids, vec!["shardId-000000000001"]);
        assert_eq!(lease.hash_range, HashKeyRange::new(HashKey(0), HashKey(99)));
        // Round trip through the creation item keeps every attribute we own.
        let back = to_item(&lease);
        for name in [
            "leaseKey",
            "leaseOwner",
            "leaseCounter",
            "checkpoint",
            "checkpointSubSequenceNumber",
            "ownerSwitchesSinceCheckpoint",
            "parentShardId",
            "startingHashKey",
            "endingHashKey",
        ] {
            assert_eq!(back.get(name), item.get(name), "{name}");
        }
        assert!(is_lease(&item));
        item.insert(
            "entityType".into(),
            AttributeValue::S("WORKER_METRIC_STATS".into()),
        );
        assert!(!is_lease(&item));
    }
}
