//! The fleet manager's flow store on ClickHouse: a [`FlowStore`] whose queries run in the
//! database, for fleets whose telemetry outgrows the embedded store.
//!
//! # Model
//!
//! Flows are rows of a MergeTree table (one per server, [`Layout::Single`]), or of MergeTree
//! tables on shards under a Distributed table that inserts and queries go through
//! ([`Layout::Sharded`]). Tables are created when missing. Rows are partitioned by day of
//! their report time (`end_ms`) and sorted by it, so a query's time window reads only its
//! part of the table. Addresses are 16 bytes (IPv4 mapped into IPv6) with their family, so a
//! prefix is a range of bytes; tags are arrays of `type=value`.
//!
//! A [`Query`] becomes one `SELECT`: the window, the filter, the grouping keys (the same
//! text as `Field::value`), sessions (`uniqExact` over the session's identity), totals,
//! order and limit all run in ClickHouse, and the answers are those of the in-memory
//! [`Aggregator`](palisade_flows::Aggregator) (the tests check it on a real server). Text from
//! the query is bound, never spliced into the SQL.
//!
//! ```no_run
//! # async fn top_talkers() -> Result<(), palisade_flows::StoreError> {
//! use palisade_flows::query::{Filter, parse_group_by};
//! use palisade_flows::{FlowStore, Query};
//! use palisade_flows_clickhouse::{ClickHouseStore, Config};
//!
//! let store = ClickHouseStore::open(&Config::new("http://127.0.0.1:8123")).await?;
//! let denied = Query {
//!     from_ms: 0,
//!     to_ms: i64::MAX,
//!     filter: Filter::parse("verdict=denied").expect("a filter"),
//!     group_by: parse_group_by("src.tier,dst.tier").expect("keys"),
//!     limit: 10,
//!     ..Query::default()
//! };
//! for row in store.aggregate(&denied).await? {
//!     println!("{:?}: {} bytes in {} sessions", row.key, row.bytes, row.sessions);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Durability
//!
//! [`FlowStore::append`] is one `INSERT` (RowBinary over HTTP) and returns once the server
//! answered it: the rows are then written into new parts on disk and visible to queries.
//! Through a Distributed table the insert is synchronous (`insert_distributed_sync`): it
//! returns once every shard has written its rows. ClickHouse does not `fsync` inserted
//! parts by default, so what survives a server crash may not survive a power loss;
//! an insert is atomic only per block of `max_insert_block_size` rows (default 1,048,576)
//! and per partition (day).
//!
//! # Retention
//!
//! [`FlowStore::expire`] counts what it removes first, then drops the day partitions that
//! hold only older flows (instant) and deletes older flows from a partition that also holds
//! newer ones with an `ALTER TABLE ... DELETE` mutation, whose end it waits for. On a
//! sharded layout it does so on each shard's table (a Distributed table takes neither).
//!
//! # ClickHouse versions
//!
//! It works with 18.16 (Debian 12's package) and later. The client's schema check is off:
//! it asks for `RowBinaryWithNamesAndTypes` and settings 18.16 does not know (rows are
//! plain `RowBinary` in the column order, checked by the tests on a real server).
//! Compression is off: 18.16 never compresses its answers for this client (it would take
//! LZ4-compressed inserts). The SQL uses what 18.16 has (`uniqExact`, `arrayFirst`,
//! `IPv6NumToString`, mutations, ...) and no `IPv6` type (newer) or `LowCardinality`
//! (experimental in 18.16).

mod config;
mod rows;
mod sql;

use std::time::Duration;

use clickhouse::{Client, Compression, Row};
use palisade_flows::{BoxFuture, Flow, FlowStore, Query, Row as Totals, StoreError};
use serde::Deserialize;

pub use config::{Config, Layout, Shard};
use rows::{FlowRow, TotalsRow};
use sql::{DAY_MS, Sql};

/// How long [`FlowStore::expire`] waits for a delete mutation to finish.
const MUTATION_TIMEOUT: Duration = Duration::from_secs(600);

/// A flow store on ClickHouse.
#[derive(Clone)]
pub struct ClickHouseStore {
    /// The server inserts and queries go to, in the flows table's database.
    client: Client,
    url: String,
    /// The flows table's name (in the client's database).
    name: String,
    /// `database.table`.
    table: String,
    /// The MergeTree tables that hold the rows (one, or one per shard).
    locals: Vec<Local>,
}

/// A MergeTree table.
#[derive(Clone)]
struct Local {
    client: Client,
    url: String,
    database: String,
    table: String,
}

impl Local {
    fn qualified(&self) -> String {
        format!("{}.{}", self.database, self.table)
    }

    async fn create(&self) -> Result<(), StoreError> {
        execute(
            &self.client,
            &self.url,
            "creating the database",
            &format!("CREATE DATABASE IF NOT EXISTS {}", self.database),
        )
        .await?;
        execute(
            &self.client,
            &self.url,
            "creating the flows table",
            &sql::create_merge_tree(&self.qualified()),
        )
        .await
    }
}

fn client(config: &Config, url: &str) -> Client {
    Client::default()
        .with_url(url)
        .with_user(&config.user)
        .with_password(&config.password)
        .with_compression(Compression::None)
        .with_validation(false)
}

fn backend(url: &str, doing: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("clickhouse at {url}: {doing}: {e}"))
}

fn query(client: &Client, sql: &Sql) -> clickhouse::query::Query {
    sql.binds
        .iter()
        .fold(client.query(&sql.text), |q, value| q.bind(value.as_str()))
}

async fn execute(client: &Client, url: &str, doing: &str, sql: &str) -> Result<(), StoreError> {
    client
        .query(sql)
        .execute()
        .await
        .map_err(|e| backend(url, doing, e))
}

#[derive(Row, Deserialize)]
struct ClusterShard {
    shard_num: u32,
    default_database: String,
}

impl ClickHouseStore {
    /// Connects, and creates the databases and tables that are missing.
    pub async fn open(config: &Config) -> Result<Self, StoreError> {
        config.validate()?;
        let server = client(config, &config.url);
        let table = format!("{}.{}", config.database, config.table);
        // The shards' tables, and the Distributed table over them (a cluster that does
        // not match the configuration is refused before anything is created).
        let (locals, distributed) = match &config.layout {
            Layout::Single => (
                vec![Local {
                    client: server.clone(),
                    url: config.url.clone(),
                    database: config.database.clone(),
                    table: config.table.clone(),
                }],
                None,
            ),
            Layout::Sharded { cluster, shards } => {
                let remote_database = Self::check_cluster(&server, config, cluster, shards).await?;
                let locals = shards
                    .iter()
                    .map(|shard| Local {
                        client: client(config, &shard.url),
                        url: shard.url.clone(),
                        database: shard.database.clone(),
                        table: config.local_table(),
                    })
                    .collect();
                let ddl = sql::create_distributed(
                    &table,
                    cluster,
                    &remote_database,
                    &config.local_table(),
                );
                (locals, Some(ddl))
            }
        };
        for local in &locals {
            local.create().await?;
        }
        let client = match distributed {
            None => server,
            Some(ddl) => {
                execute(
                    &server,
                    &config.url,
                    "creating the database",
                    &format!("CREATE DATABASE IF NOT EXISTS {}", config.database),
                )
                .await?;
                execute(
                    &server,
                    &config.url,
                    "creating the Distributed flows table",
                    &ddl,
                )
                .await?;
                server.with_setting("insert_distributed_sync", "1")
            }
        }
        .with_database(&config.database);
        Ok(Self {
            client,
            url: config.url.clone(),
            name: config.table.clone(),
            table,
            locals,
        })
    }

    /// Checks the cluster the server knows against the configured shards; the database
    /// the Distributed table names ("" when each replica's `default_database` decides).
    async fn check_cluster(
        server: &Client,
        config: &Config,
        cluster: &str,
        shards: &[Shard],
    ) -> Result<String, StoreError> {
        let known: Vec<ClusterShard> = server
            .query(
                "SELECT shard_num, default_database FROM system.clusters \
                 WHERE cluster = ? AND replica_num = 1 ORDER BY shard_num",
            )
            .bind(cluster)
            .fetch_all()
            .await
            .map_err(|e| backend(&config.url, "reading system.clusters", e))?;
        if known.len() != shards.len() {
            return Err(StoreError::Backend(format!(
                "clickhouse at {}: cluster `{cluster}` has {} shards in remote_servers, the config lists {}",
                config.url,
                known.len(),
                shards.len()
            )));
        }
        let first = &shards[0].database;
        if shards.iter().all(|s| s.database == *first) {
            return Ok(first.clone());
        }
        for (shard, known) in shards.iter().zip(&known) {
            if shard.database != known.default_database {
                return Err(StoreError::Backend(format!(
                    "clickhouse at {}: shard {} of cluster `{cluster}`: the shards' databases differ, \
                     so each replica's <default_database> must name its shard's; it is `{}`, the \
                     config says `{}`",
                    config.url, known.shard_num, known.default_database, shard.database
                )));
            }
        }
        Ok(String::new())
    }

    async fn append_all(&self, flows: &[Flow]) -> Result<(), StoreError> {
        if flows.is_empty() {
            return Ok(());
        }
        let err = |e| backend(&self.url, "inserting flows", e);
        let mut insert = self
            .client
            .insert::<FlowRow<'_>>(&self.name)
            .await
            .map_err(err)?;
        for flow in flows {
            insert.write(&FlowRow::new(flow)).await.map_err(err)?;
        }
        insert.end().await.map_err(err)
    }

    async fn totals(&self, q: &Query) -> Result<Vec<Totals>, StoreError> {
        let rows: Vec<TotalsRow> = query(&self.client, &sql::aggregate(q, &self.table))
            .fetch_all()
            .await
            .map_err(|e| backend(&self.url, "aggregating flows", e))?;
        Ok(rows
            .into_iter()
            .map(|r| Totals {
                key: r.key,
                sessions: r.sessions,
                packets: r.packets,
                bytes: r.bytes,
                records: r.records,
            })
            .collect())
    }

    async fn select(&self, q: &Query, limit: usize) -> Result<Vec<Flow>, StoreError> {
        let err = |e| backend(&self.url, "selecting flows", e);
        let mut cursor = query(&self.client, &sql::flows(q, &self.table, limit))
            .fetch::<FlowRow<'_>>()
            .map_err(err)?;
        let mut flows = Vec::new();
        while let Some(row) = cursor.next().await.map_err(err)? {
            flows.push(row.into_flow(&self.table)?);
        }
        Ok(flows)
    }

    async fn expire_all(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut gone = 0;
        for local in &self.locals {
            gone += expire_local(local, before_ms).await?;
        }
        Ok(gone)
    }
}

#[derive(Row, Deserialize)]
struct PartitionAge {
    partition: i64,
    old: u64,
}

/// Removes a MergeTree table's flows reported before `before_ms`; how many.
async fn expire_local(local: &Local, before_ms: i64) -> Result<u64, StoreError> {
    let table = local.qualified();
    // Partitions are `intDiv(end_ms, DAY_MS)`, monotonic: older rows are in these.
    let partitions: Vec<PartitionAge> = local
        .client
        .query(&format!(
            "SELECT intDiv(end_ms, {DAY_MS}) AS partition, countIf(end_ms < {before_ms}) AS old \
             FROM {table} WHERE intDiv(end_ms, {DAY_MS}) <= {} GROUP BY partition HAVING old > 0",
            before_ms / DAY_MS
        ))
        .fetch_all()
        .await
        .map_err(|e| backend(&local.url, "counting old flows", e))?;
    let mut mixed = false;
    for p in &partitions {
        // intDiv truncates toward zero: partition 0 spans (-DAY, DAY), a negative one
        // ((p-1)*DAY, p*DAY], a positive one [p*DAY, (p+1)*DAY).
        let newest_possible = if p.partition >= 0 {
            p.partition
                .checked_add(1)
                .and_then(|n| n.checked_mul(DAY_MS))
                .map(|n| n - 1)
        } else {
            p.partition.checked_mul(DAY_MS)
        };
        if newest_possible.is_some_and(|n| n < before_ms) {
            execute(
                &local.client,
                &local.url,
                "dropping an old partition",
                &format!("ALTER TABLE {table} DROP PARTITION {}", p.partition),
            )
            .await?;
        } else {
            mixed = true;
        }
    }
    if mixed {
        execute(
            &local.client,
            &local.url,
            "deleting old flows",
            &format!("ALTER TABLE {table} DELETE WHERE end_ms < {before_ms}"),
        )
        .await?;
        wait_for_mutations(local).await?;
    }
    Ok(partitions.iter().map(|p| p.old).sum())
}

/// Mutations run in the background (18.16 has no `mutations_sync`): waits until the
/// table has none left to do.
async fn wait_for_mutations(local: &Local) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    loop {
        let pending: u64 = local
            .client
            .query(
                "SELECT count() FROM system.mutations \
                 WHERE database = ? AND table = ? AND is_done = 0",
            )
            .bind(local.database.as_str())
            .bind(local.table.as_str())
            .fetch_one()
            .await
            .map_err(|e| backend(&local.url, "waiting for the delete mutation", e))?;
        if pending == 0 {
            return Ok(());
        }
        if started.elapsed() > MUTATION_TIMEOUT {
            return Err(backend(
                &local.url,
                "deleting old flows",
                format!(
                    "{pending} mutations of {} still running after {MUTATION_TIMEOUT:?} (see system.mutations)",
                    local.qualified()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl FlowStore for ClickHouseStore {
    fn append(&self, flows: Vec<Flow>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.append_all(&flows).await })
    }

    fn aggregate<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Totals>, StoreError>> {
        Box::pin(self.totals(query))
    }

    fn flows<'a>(
        &'a self,
        query: &'a Query,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Flow>, StoreError>> {
        Box::pin(self.select(query, limit))
    }

    fn expire(&self, before_ms: i64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.expire_all(before_ms))
    }
}
