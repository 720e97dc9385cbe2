//! Where the fleet manager keeps its state: a few named tables of JSON records, written in
//! atomic batches.
//!
//! The [`StateStore`] trait is all the server needs: read everything at start, then write
//! batches that land entirely or not at all. [`RedbStore`] is the embedded default — one
//! file, transactional, crash-safe, no server to run. A distributed implementation (etcd)
//! fits the same trait: tables become key prefixes and a batch one transaction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// The tables of the fleet manager's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Table {
    /// Counters and single records: generation, intent snapshot, inventory.
    Meta,
    /// Devices: enrollment, certificates, acknowledgements.
    Devices,
    /// Commits by generation.
    Commits,
    /// Desired program per device: generation and content hash.
    Programs,
    /// One-time enrollment tokens by hash.
    Tokens,
    /// API tokens by hash.
    Users,
    /// Revoked certificate serials.
    Revoked,
    /// Kubernetes policies by `KIND/NAMESPACE/NAME`.
    Kubernetes,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 8] = [
        Table::Meta,
        Table::Devices,
        Table::Commits,
        Table::Programs,
        Table::Tokens,
        Table::Users,
        Table::Revoked,
        Table::Kubernetes,
    ];

    /// The table's name in the store.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Devices => "devices",
            Table::Commits => "commits",
            Table::Programs => "programs",
            Table::Tokens => "tokens",
            Table::Users => "users",
            Table::Revoked => "revoked",
            Table::Kubernetes => "kubernetes",
        }
    }
}

/// Why the store failed. Nothing of a failed batch was written.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The backend failed (I/O, corruption, lock held by another process).
    #[error("state store {path}: {message}")]
    Backend {
        /// The store's location.
        path: String,
        /// The backend's message.
        message: String,
    },
    /// A record could not be encoded or decoded.
    #[error("state store: {table} record `{key}`: {message}")]
    Record {
        /// The table.
        table: &'static str,
        /// The record's key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Everything in the store: table -> key -> JSON record.
pub type Contents = BTreeMap<Table, BTreeMap<String, Vec<u8>>>;

/// An atomic set of writes.
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<(Table, String, Option<Vec<u8>>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `value` as JSON under `key`.
    pub fn put(&mut self, table: Table, key: impl Into<String>, value: &impl Serialize) {
        let bytes = serde_json::to_vec(value).expect("records serialize");
        self.ops.push((table, key.into(), Some(bytes)));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, table: Table, key: impl Into<String>) {
        self.ops.push((table, key.into(), None));
    }

    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Adds another batch's writes after this one's.
    pub fn extend(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }
}

/// Persistence for the fleet manager.
pub trait StateStore: Send + Sync + 'static {
    /// Every record.
    fn load(&self) -> Result<Contents, StoreError>;
    /// Applies a batch atomically and durably.
    fn write(&self, batch: Batch) -> Result<(), StoreError>;
}

/// Decodes one JSON record.
pub fn decode<T: DeserializeOwned>(table: Table, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Record {
        table: table.name(),
        key: key.to_string(),
        message: e.to_string(),
    })
}

/// The embedded store: one redb file.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

type Def = TableDefinition<'static, &'static str, &'static [u8]>;

fn def(table: Table) -> Def {
    TableDefinition::new(table.name())
}

impl RedbStore {
    /// Opens (or creates) the store file. Fails if another process holds it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let err = |e: &dyn std::fmt::Display| StoreError::Backend {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let db = Database::create(path).map_err(|e| err(&e))?;
        let txn = db.begin_write().map_err(|e| err(&e))?;
        for table in Table::ALL {
            txn.open_table(def(table)).map_err(|e| err(&e))?;
        }
        txn.commit().map_err(|e| err(&e))?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Backend {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }
}

impl StateStore for RedbStore {
    fn load(&self) -> Result<Contents, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let mut out = Contents::new();
        for table in Table::ALL {
            let t = txn.open_table(def(table)).map_err(|e| self.err(e))?;
            let rows = out.entry(table).or_default();
            for row in t.iter().map_err(|e| self.err(e))? {
                let (k, v) = row.map_err(|e| self.err(e))?;
                rows.insert(k.value().to_string(), v.value().to_vec());
            }
        }
        Ok(out)
    }

    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        for (table, key, value) in &batch.ops {
            let mut t = txn.open_table(def(*table)).map_err(|e| self.err(e))?;
            match value {
                Some(v) => {
                    t.insert(key.as_str(), v.as_slice())
                        .map_err(|e| self.err(e))?;
                }
                None => {
                    t.remove(key.as_str()).map_err(|e| self.err(e))?;
                }
            }
        }
        txn.commit().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_land_whole_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let store = RedbStore::open(&path).unwrap();
            let mut b = Batch::new();
            b.put(Table::Meta, "generation", &7u64);
            b.put(Table::Devices, "dpu-1", &"record");
            store.write(b).unwrap();
            let mut b = Batch::new();
            b.delete(Table::Devices, "dpu-1");
            b.put(Table::Devices, "dpu-2", &"other");
            store.write(b).unwrap();
        }
        let store = RedbStore::open(&path).unwrap();
        let all = store.load().unwrap();
        let generation: u64 =
            decode(Table::Meta, "generation", &all[&Table::Meta]["generation"]).unwrap();
        assert_eq!(generation, 7);
        assert_eq!(all[&Table::Devices].keys().collect::<Vec<_>>(), ["dpu-2"]);
        assert!(all[&Table::Commits].is_empty());
    }

    #[test]
    fn a_second_process_is_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let _first = RedbStore::open(&path).unwrap();
        let err = RedbStore::open(&path).err().expect("locked").to_string();
        assert!(err.contains("state.redb"), "{err}");
    }

    #[test]
    fn a_garbage_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        std::fs::write(&path, b"not a database at all, just some bytes").unwrap();
        assert!(RedbStore::open(&path).is_err());
    }
}
