//! Where the store's tables live: one server, or a Distributed table over shards.

use palisade_flows::StoreError;

/// How to reach ClickHouse and which tables to use.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// The HTTP interface that inserts and queries go to (`http://127.0.0.1:8123`).
    pub url: String,
    /// The user (for every server of the layout).
    pub user: String,
    /// Its password.
    pub password: String,
    /// The database of the flows table; created if missing.
    pub database: String,
    /// The flows table: a MergeTree table (single server) or the Distributed table (sharded).
    pub table: String,
    /// One server, or shards.
    pub layout: Layout,
}

impl Config {
    /// One server at `url`, user `default` without a password, table `palisade.flows`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            user: "default".into(),
            password: String::new(),
            database: "palisade".into(),
            table: "flows".into(),
            layout: Layout::Single,
        }
    }

    /// Checks names before they are put in SQL (they are identifiers, not bound values).
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        identifier("database", &self.database)?;
        identifier("table", &self.table)?;
        if let Layout::Sharded { cluster, shards } = &self.layout {
            identifier("cluster", cluster)?;
            if shards.is_empty() {
                return Err(invalid(
                    "layout: a sharded layout needs at least one shard".into(),
                ));
            }
            for (i, shard) in shards.iter().enumerate() {
                identifier(&format!("shard {}: database", i + 1), &shard.database)?;
            }
        }
        Ok(())
    }

    /// The MergeTree table's name on every shard (sharded layout).
    pub(crate) fn local_table(&self) -> String {
        format!("{}_local", self.table)
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url)
            .field("user", &self.user)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<hidden>"
                },
            )
            .field("database", &self.database)
            .field("table", &self.table)
            .field("layout", &self.layout)
            .finish()
    }
}

/// Where the rows are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One MergeTree table, `database.table`, on the server at `url`.
    Single,
    /// A MergeTree table `TABLE_local` in each shard's database, and the Distributed table
    /// `database.table` over them on the server at `url`, which inserts (synchronous:
    /// `insert_distributed_sync`) and queries go through.
    ///
    /// The cluster must be in the servers' `remote_servers` configuration with the shards in
    /// this order (ClickHouse cannot define clusters in SQL). When the shards' databases have
    /// the same name, the Distributed table names it; otherwise it names none and each
    /// replica of the cluster must set its `<default_database>` (how several shards can live
    /// on one server, in different databases).
    Sharded {
        /// The cluster's name in `remote_servers`.
        cluster: String,
        /// The shards, in the cluster's order, for creating their tables and for retention
        /// (a Distributed table takes neither DDL nor mutations).
        shards: Vec<Shard>,
    },
}

/// One shard of a sharded layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Its HTTP interface.
    pub url: String,
    /// The database of its MergeTree table; created if missing.
    pub database: String,
}

fn invalid(problem: String) -> StoreError {
    StoreError::Backend(format!("clickhouse config: {problem}"))
}

/// Identifiers go into SQL as they are: letters, digits and `_`, not starting with a digit.
fn identifier(what: &str, name: &str) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} `{name}`: expected letters, digits and _ (not starting with a digit)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_they_reach_sql() {
        let mut c = Config::new("http://127.0.0.1:8123");
        assert!(c.validate().is_ok());
        c.password = "s3cret".into();
        assert!(!format!("{c:?}").contains("s3cret"));
        for bad in ["", "1flows", "flows`; DROP TABLE x", "a-b", "é"] {
            c.table = bad.into();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("table `"), "{bad}: {e}");
        }
        c.table = "flows".into();
        c.layout = Layout::Sharded {
            cluster: "two".into(),
            shards: vec![],
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("at least one shard")
        );
        c.layout = Layout::Sharded {
            cluster: "two".into(),
            shards: vec![Shard {
                url: "http://127.0.0.1:8123".into(),
                database: "s 1".into(),
            }],
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("shard 1: database `s 1`")
        );
    }
}
