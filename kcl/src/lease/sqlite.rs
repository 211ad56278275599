//! The local lease store: one SQLite file, shared by worker processes on one host.
//!
//! The file is opened in WAL mode with `synchronous = FULL` (a committed checkpoint survives a
//! crash or power loss) and a `busy_timeout`, so several processes can use it at once: SQLite
//! serialises writers with its file lock, and every fenced write is one `UPDATE … WHERE
//! lease_counter = ? AND lease_owner = ?`, atomic on its own. One file can hold the leases of
//! several applications (the `application` column).
//!
//! ```text
//! kcl_leases(application, lease_key, lease_owner, lease_counter, checkpoint,
//!            checkpoint_sub_sequence, owner_switches_since_checkpoint,
//!            parent_shard_ids (JSON array), child_shard_ids (JSON array),
//!            starting_hash_key, ending_hash_key)      PRIMARY KEY (application, lease_key)
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use riffle_core::{HashKey, HashKeyRange};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{after_write, Lease, LeaseStore};
use crate::checkpoint::Checkpoint;
use crate::error::LeaseStoreError;

/// How long a write waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kcl_leases (
    application TEXT NOT NULL,
    lease_key TEXT NOT NULL,
    lease_owner TEXT,
    lease_counter INTEGER NOT NULL,
    checkpoint TEXT NOT NULL,
    checkpoint_sub_sequence INTEGER NOT NULL,
    owner_switches_since_checkpoint INTEGER NOT NULL,
    parent_shard_ids TEXT NOT NULL,
    child_shard_ids TEXT NOT NULL,
    starting_hash_key TEXT,
    ending_hash_key TEXT,
    PRIMARY KEY (application, lease_key)
)";

const COLUMNS: &str =
    "lease_key, lease_owner, lease_counter, checkpoint, checkpoint_sub_sequence, \
     owner_switches_since_checkpoint, parent_shard_ids, child_shard_ids, starting_hash_key, \
     ending_hash_key";

/// Leases in a SQLite file (see the module docs).
#[derive(Debug, Clone)]
pub struct SqliteLeaseStore {
    conn: Arc<Mutex<Connection>>,
    application: String,
    path: PathBuf,
}

impl SqliteLeaseStore {
    /// Opens (or creates) the file at `path` and keeps the leases of `application` in it.
    pub fn open(
        path: impl AsRef<Path>,
        application: impl Into<String>,
    ) -> Result<SqliteLeaseStore, LeaseStoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open(&path).map_err(|e| LeaseStoreError::backend("open", e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| LeaseStoreError::backend("open", e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| LeaseStoreError::backend("open", e))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| LeaseStoreError::backend("open", e))?;
        Ok(SqliteLeaseStore {
            conn: Arc::new(Mutex::new(conn)),
            application: application.into(),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection on a blocking thread.
    async fn with<T, F>(&self, operation: &'static str, f: F) -> Result<T, LeaseStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &str) -> Result<T, LeaseStoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let app = self.application.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn, &app)
        })
        .await
        .map_err(|e| LeaseStoreError::backend(operation, e))?
    }

    /// A fenced update: the row must hold `lease`'s counter and owner; it becomes `next`.
    /// Writing every mutable column is correct because a matching counter means the row is
    /// exactly `lease` (only `child_shard_ids` is written outside the fence, and not here).
    async fn fenced(
        &self,
        operation: &'static str,
        lease: &Lease,
        next: Lease,
    ) -> Result<Lease, LeaseStoreError> {
        let held = lease.clone();
        self.with(operation, move |conn, app| {
            let (cp, sub) = next.checkpoint.to_parts();
            let changed = conn
                .execute(
                    "UPDATE kcl_leases SET lease_counter = ?5, lease_owner = ?6, checkpoint = ?7, \
                     checkpoint_sub_sequence = ?8, owner_switches_since_checkpoint = ?9 \
                     WHERE application = ?1 AND lease_key = ?2 \
                     AND lease_counter = ?3 AND lease_owner IS ?4",
                    params![
                        app,
                        held.key,
                        held.counter as i64,
                        held.owner,
                        next.counter as i64,
                        next.owner,
                        cp,
                        sub as i64,
                        next.owner_switches_since_checkpoint as i64,
                    ],
                )
                .map_err(|e| backend(operation, e))?;
            if changed == 1 {
                Ok(next)
            } else {
                Err(LeaseStoreError::Conflict { key: held.key })
            }
        })
        .await
    }
}

fn backend(operation: &'static str, e: rusqlite::Error) -> LeaseStoreError {
    match e {
        rusqlite::Error::SqliteFailure(ref f, _)
            if f.code == rusqlite::ErrorCode::DatabaseBusy
                || f.code == rusqlite::ErrorCode::DatabaseLocked =>
        {
            LeaseStoreError::Throttled { operation }
        }
        e => LeaseStoreError::backend(operation, e),
    }
}

fn ids_json(ids: &[String]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned())
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Result<Lease, LeaseStoreError>> {
    let key: String = row.get(0)?;
    let owner: Option<String> = row.get(1)?;
    let counter: i64 = row.get(2)?;
    let cp: String = row.get(3)?;
    let sub: i64 = row.get(4)?;
    let switches: i64 = row.get(5)?;
    let parents: String = row.get(6)?;
    let children: String = row.get(7)?;
    let start: Option<String> = row.get(8)?;
    let end: Option<String> = row.get(9)?;
    let corrupt = |reason: String| LeaseStoreError::Corrupt {
        key: key.clone(),
        reason,
    };
    Ok((|| {
        let checkpoint =
            Checkpoint::from_parts(&cp, sub as u64).map_err(|e| corrupt(e.to_string()))?;
        let parent_shard_ids: Vec<String> =
            serde_json::from_str(&parents).map_err(|e| corrupt(e.to_string()))?;
        let child_shard_ids: Vec<String> =
            serde_json::from_str(&children).map_err(|e| corrupt(e.to_string()))?;
        let hash_range = match (start, end) {
            (Some(s), Some(e)) => {
                let s: HashKey = s
                    .parse()
                    .map_err(|e| corrupt(format!("startingHashKey: {e}")))?;
                let e: HashKey = e
                    .parse()
                    .map_err(|e| corrupt(format!("endingHashKey: {e}")))?;
                Some(HashKeyRange::new(s, e).ok_or_else(|| corrupt("empty hash range".into()))?)
            }
            _ => None,
        };
        Ok(Lease {
            key: key.clone(),
            owner,
            counter: counter as u64,
            checkpoint,
            owner_switches_since_checkpoint: switches as u64,
            parent_shard_ids,
            child_shard_ids,
            hash_range,
        })
    })())
}

#[async_trait]
impl LeaseStore for SqliteLeaseStore {
    async fn initialize(&self) -> Result<(), LeaseStoreError> {
        self.with("initialize", |conn, _| {
            conn.execute_batch(SCHEMA)
                .map_err(|e| backend("initialize", e))
        })
        .await
    }

    async fn list(&self) -> Result<Vec<Lease>, LeaseStoreError> {
        self.with("list", |conn, app| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM kcl_leases WHERE application = ?1 ORDER BY lease_key"
                ))
                .map_err(|e| backend("list", e))?;
            let rows = stmt
                .query_map(params![app], from_row)
                .map_err(|e| backend("list", e))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.map_err(|e| backend("list", e))??);
            }
            Ok(out)
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<Lease>, LeaseStoreError> {
        let key = key.to_owned();
        self.with("get", move |conn, app| {
            conn.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM kcl_leases WHERE application = ?1 AND lease_key = ?2"
                ),
                params![app, key],
                from_row,
            )
            .optional()
            .map_err(|e| backend("get", e))?
            .transpose()
        })
        .await
    }

    async fn create_if_not_exists(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
        let lease = lease.clone();
        self.with("create", move |conn, app| {
            let (cp, sub) = lease.checkpoint.to_parts();
            let changed = conn
                .execute(
                    &format!(
                        "INSERT OR IGNORE INTO kcl_leases (application, {COLUMNS}) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                    ),
                    params![
                        app,
                        lease.key,
                        lease.owner,
                        lease.counter as i64,
                        cp,
                        sub as i64,
                        lease.owner_switches_since_checkpoint as i64,
                        ids_json(&lease.parent_shard_ids),
                        ids_json(&lease.child_shard_ids),
                        lease.hash_range.map(|r| r.start.to_string()),
                        lease.hash_range.map(|r| r.end.to_string()),
                    ],
                )
                .map_err(|e| backend("create", e))?;
            Ok(changed == 1)
        })
        .await
    }

    async fn renew(&self, lease: &Lease) -> Result<Lease, LeaseStoreError> {
        if lease.owner.is_none() {
            return Err(LeaseStoreError::Conflict {
                key: lease.key.clone(),
            });
        }
        self.fenced("renew", lease, after_write(lease)).await
    }

    async fn take(&self, lease: &Lease, owner: &str) -> Result<Lease, LeaseStoreError> {
        let mut next = after_write(lease);
        if !lease.is_owned_by(owner) {
            next.owner_switches_since_checkpoint += 1;
        }
        next.owner = Some(owner.to_owned());
        self.fenced("take", lease, next).await
    }

    async fn release(&self, lease: &Lease) -> Result<Lease, LeaseStoreError> {
        if lease.owner.is_none() {
            return Err(LeaseStoreError::Conflict {
                key: lease.key.clone(),
            });
        }
        let mut next = after_write(lease);
        next.owner = None;
        self.fenced("release", lease, next).await
    }

    async fn checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
    ) -> Result<Lease, LeaseStoreError> {
        if lease.owner.is_none() {
            return Err(LeaseStoreError::Conflict {
                key: lease.key.clone(),
            });
        }
        let mut next = after_write(lease);
        next.checkpoint = checkpoint.clone();
        next.owner_switches_since_checkpoint = 0;
        self.fenced("checkpoint", lease, next).await
    }

    async fn set_child_shards(
        &self,
        key: &str,
        children: &[String],
    ) -> Result<(), LeaseStoreError> {
        let key = key.to_owned();
        let json = ids_json(children);
        self.with("set_child_shards", move |conn, app| {
            let changed = conn
                .execute(
                    "UPDATE kcl_leases SET child_shard_ids = ?3 \
                     WHERE application = ?1 AND lease_key = ?2",
                    params![app, key, json],
                )
                .map_err(|e| backend("set_child_shards", e))?;
            if changed == 1 {
                Ok(())
            } else {
                Err(LeaseStoreError::Conflict { key })
            }
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), LeaseStoreError> {
        let key = key.to_owned();
        self.with("delete", move |conn, app| {
            conn.execute(
                "DELETE FROM kcl_leases WHERE application = ?1 AND lease_key = ?2",
                params![app, key],
            )
            .map(drop)
            .map_err(|e| backend("delete", e))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteLeaseStore::open(dir.path().join("leases.db"), "app").unwrap();
        store.initialize().await.unwrap();
        crate::lease::conformance::run_all(&store).await;
    }

    #[tokio::test]
    async fn two_handles_on_one_file_share_the_fence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.db");
        let a = SqliteLeaseStore::open(&path, "app").unwrap();
        let b = SqliteLeaseStore::open(&path, "app").unwrap();
        a.initialize().await.unwrap();
        b.initialize().await.unwrap();
        let lease = Lease::new(
            "shardId-000000000000",
            vec![],
            None,
            Checkpoint::TrimHorizon,
        );
        assert!(a.create_if_not_exists(&lease).await.unwrap());
        assert!(!b.create_if_not_exists(&lease).await.unwrap());
        let seen = b.get(&lease.key).await.unwrap().unwrap();
        let taken_a = a.take(&seen, "worker-a").await.unwrap();
        assert!(b.take(&seen, "worker-b").await.unwrap_err().is_conflict());
        assert_eq!(
            b.get(&lease.key).await.unwrap().unwrap().owner.as_deref(),
            Some("worker-a")
        );
        a.renew(&taken_a).await.unwrap();
        // Another application in the same file is independent.
        let other = SqliteLeaseStore::open(&path, "other-app").unwrap();
        assert!(other.list().await.unwrap().is_empty());
    }
}
