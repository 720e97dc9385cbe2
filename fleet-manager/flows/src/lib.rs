//! The fleet manager's flow telemetry: records enriched with the endpoints and tags of
//! both ends ([`Flow`]), the [`FlowStore`] trait with the embedded default
//! ([`EmbeddedStore`], one redb file, crash-safe, with retention), queries ([`Query`]:
//! filters, grouping by tag pairs, top talkers) and the [`Enricher`] that attaches tags as
//! they were when the record was made.

mod block;
mod embedded;
pub mod enrich;
pub mod query;
mod scan;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

pub use embedded::EmbeddedStore;
pub use enrich::Enricher;
pub use palisade_flow::{EndReason, FlowRecord, RecordKind, Verdict};
pub use query::{Aggregator, Field, Filter, OrderBy, Query, Row};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A flow record with what the fleet manager knows of its ends. The ends' endpoint and tags
/// are shared (`Arc`): every record of an endpoint points at the enricher's one copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// The record as reported.
    pub record: FlowRecord,
    /// The initiator's endpoint (`project/workload/interface`), or "" when unknown.
    pub src_endpoint: Arc<str>,
    /// The responder's endpoint, or "".
    pub dst_endpoint: Arc<str>,
    /// The initiator's effective tags (`type=value`, sorted) when the record was made.
    pub src_tags: Arc<[String]>,
    /// The responder's.
    pub dst_tags: Arc<[String]>,
}

/// Why a store refused or failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The backend failed (I/O, the database, the server).
    #[error("flow store: {0}")]
    Backend(String),
    /// Stored data does not decode.
    #[error("flow store: corrupt data at {at}: {problem}")]
    Corrupt {
        /// Where.
        at: String,
        /// What is wrong.
        problem: String,
    },
}

/// A boxed future (stores are used behind `Arc<dyn FlowStore>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where flows are kept.
pub trait FlowStore: Send + Sync {
    /// Adds flows; resolves once they are durable (what the manager acknowledges to
    /// devices only then).
    fn append(&self, flows: Vec<Flow>) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Enriches records with `enricher` and adds them, in one pass where the store can (the
    /// embedded store encodes its rows straight from the records and the enricher's ends,
    /// with no [`Flow`] per record); resolves once they are durable, with how many were
    /// stored and, where the store did not consume it, the records' buffer (a collector
    /// fills it again: no new allocation, and the records' names are released on the
    /// collector's thread, the one that shares them). The default makes the flows and
    /// [`FlowStore::append`]s them. Enrichment runs off the async workers.
    fn append_records(
        &self,
        records: Vec<FlowRecord>,
        enricher: Arc<RwLock<Enricher>>,
    ) -> BoxFuture<'_, Result<(usize, Vec<FlowRecord>), StoreError>> {
        Box::pin(async move {
            let flows: Vec<Flow> = tokio::task::spawn_blocking(move || {
                let enricher = enricher.read().unwrap_or_else(|e| e.into_inner());
                records.into_iter().map(|r| enricher.enrich(r)).collect()
            })
            .await
            .map_err(|e| StoreError::Backend(format!("enrichment task: {e}")))?;
            let n = flows.len();
            self.append(flows).await?;
            Ok((n, Vec::new()))
        })
    }

    /// Totals per group of the flows the query selects, ordered and limited.
    fn aggregate<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Row>, StoreError>>;

    /// The flows the query selects (its grouping ignored), oldest first, at most `limit`
    /// (0: all).
    fn flows<'a>(
        &'a self,
        query: &'a Query,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Flow>, StoreError>>;

    /// Forgets flows reported before `before_ms`; how many records went. A store may keep
    /// some older flows a while longer where they share storage with newer ones (the
    /// embedded store drops whole blocks; ClickHouse removes exactly the older rows).
    fn expire(&self, before_ms: i64) -> BoxFuture<'_, Result<u64, StoreError>>;
}
