//! The embedded flow store: one redb file, no server. Each append is one transaction
//! (durable when it returns) holding blocks of flows ([`crate::block`]: fixed-width rows
//! naming their strings and tag sets by number); blocks are keyed by their earliest report
//! time, and carry their latest, so a query reads only the blocks that overlap its window
//! and retention drops whole blocks. Aggregations run on the block bytes, on every core.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::block::{BLOCK_FLOWS, Block, Bytes, Header, Scratch, Source, encode_rows_into};
use crate::query::{Aggregator, Query, Row};
use crate::scan::Partial;
use crate::{BoxFuture, Enricher, Flow, FlowRecord, FlowStore, StoreError};

/// Blocks by (earliest `end_ms`, sequence number).
const BLOCKS: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("flow_blocks");

/// Most threads one aggregation uses.
const MAX_THREADS: usize = 8;

/// The embedded store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    next: Arc<AtomicU64>,
    /// Block buffers of committed appends, for the next ones to encode into.
    spare: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// Most block buffers kept for reuse (two appends' worth of 131k records).
const SPARE_BUFFERS: usize = 32;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn corrupt(key: (i64, u64), problem: String) -> StoreError {
    StoreError::Corrupt {
        at: format!("block {key:?}"),
        problem,
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| backend(format!("{}: {e}", path.display())))?;
        let tx = db.begin_write().map_err(backend)?;
        let next = {
            let table = tx.open_table(BLOCKS).map_err(backend)?;
            let mut next = 0;
            for entry in table.iter().map_err(backend)? {
                let (k, _) = entry.map_err(backend)?;
                next = next.max(k.value().1 + 1);
            }
            next
        };
        tx.commit().map_err(backend)?;
        Ok(Self {
            db: Arc::new(db),
            next: Arc::new(AtomicU64::new(next)),
            spare: Arc::default(),
        })
    }

    fn append_blocking(&self, flows: &[Flow]) -> Result<(), StoreError> {
        // Encoded before the write transaction begins: one append's encoding overlaps
        // another's commit (redb runs one write transaction at a time, and a commit spends
        // most of its time waiting for the disk).
        self.commit_blocks(self.encode_blocks(flows, Source::from))
    }

    /// Enriches and encodes in one pass: rows straight from the records and the ends in
    /// the enricher's view (no `Flow`, no reference counting per record).
    fn append_records_blocking(
        &self,
        records: &[FlowRecord],
        enricher: &RwLock<Enricher>,
    ) -> Result<(), StoreError> {
        let blocks = {
            let enricher = enricher.read().unwrap_or_else(|e| e.into_inner());
            self.encode_blocks(records, |record| {
                let (src, dst) = enricher.ends(record);
                Source {
                    record,
                    src_endpoint: &src.endpoint,
                    dst_endpoint: &dst.endpoint,
                    src_tags: &src.tags,
                    dst_tags: &dst.tags,
                }
            })
        };
        self.commit_blocks(blocks)
    }

    /// Encodes `items` as blocks of up to [`BLOCK_FLOWS`] rows, into spare buffers.
    fn encode_blocks<'f, T>(
        &self,
        items: &'f [T],
        source: impl Fn(&'f T) -> Source<'f>,
    ) -> Vec<(i64, Vec<u8>)> {
        let mut sources: Vec<Source<'f>> = Vec::with_capacity(BLOCK_FLOWS.min(items.len()));
        let mut scratch = Scratch::default();
        items
            .chunks(BLOCK_FLOWS)
            .map(|chunk| {
                sources.clear();
                sources.extend(chunk.iter().map(&source));
                encode_rows_into(&sources, self.spare_buffer(), &mut scratch)
            })
            .collect()
    }

    /// A buffer to encode a block into: a committed block's, or a new one.
    fn spare_buffer(&self) -> Vec<u8> {
        self.spare
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    /// Stores encoded blocks in one transaction; their buffers are kept for reuse.
    fn commit_blocks(&self, blocks: Vec<(i64, Vec<u8>)>) -> Result<(), StoreError> {
        if blocks.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(backend)?;
        {
            let mut table = tx.open_table(BLOCKS).map_err(backend)?;
            for (min, bytes) in &blocks {
                let seq = self.next.fetch_add(1, Ordering::Relaxed);
                table
                    .insert((*min, seq), bytes.as_slice())
                    .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)?;
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        for (_, bytes) in blocks {
            if spare.len() >= SPARE_BUFFERS {
                break;
            }
            spare.push(bytes);
        }
        Ok(())
    }

    /// Calls `visit` with each block overlapping the window (the raw value; the visitor
    /// checks it), in key order, until it says stop.
    fn blocks(
        &self,
        query: &Query,
        mut visit: impl FnMut(
            (i64, u64),
            redb::AccessGuard<'static, &'static [u8]>,
        ) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = match tx.open_table(BLOCKS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(backend(e)),
        };
        for entry in table.range(..(query.to_ms, 0)).map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            let key = key.value();
            let header = Header::read(value.value()).map_err(|problem| corrupt(key, problem))?;
            if header.max_end < query.from_ms {
                continue;
            }
            if !visit(key, value)? {
                break;
            }
        }
        Ok(())
    }

    /// Calls `visit` with every selected flow, block by block, until it says stop.
    fn scan(&self, query: &Query, mut visit: impl FnMut(Flow) -> bool) -> Result<(), StoreError> {
        self.blocks(query, |key, value| {
            let bytes = Bytes::of(value.value()).map_err(|p| corrupt(key, p))?;
            let block = Block::new_checked(bytes.as_slice()).map_err(|p| corrupt(key, p))?;
            Ok(crate::scan::flows(query, &block, &mut visit))
        })
    }

    /// Totals per group, the blocks shared out among threads.
    fn aggregate_blocking(&self, query: &Query) -> Result<Vec<Row>, StoreError> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_THREADS);
        let (tx, rx) = mpsc::sync_channel::<((i64, u64), redb::AccessGuard<'static, &'static [u8]>)>(
            2 * threads,
        );
        let rx = Mutex::new(rx);
        let mut total = Aggregator::new(&query.group_by);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| -> Result<Partial<'_>, StoreError> {
                        let mut partial = Partial::new(query);
                        loop {
                            let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                            let Ok((key, value)) = next else {
                                return Ok(partial);
                            };
                            let bytes = Bytes::of(value.value()).map_err(|p| corrupt(key, p))?;
                            let block = Block::new_checked(bytes.as_slice())
                                .map_err(|p| corrupt(key, p))?;
                            partial.add(&block);
                        }
                    })
                })
                .collect();
            let read = self.blocks(query, |key, value| {
                // A worker that failed has stopped receiving: stop reading.
                Ok(tx.send((key, value)).is_ok())
            });
            drop(tx);
            let mut result = read;
            for w in workers {
                match w.join() {
                    Ok(Ok(partial)) => partial.finish(&mut total),
                    Ok(Err(e)) => result = result.and(Err(e)),
                    Err(_) => result = result.and(Err(backend("an aggregation thread panicked"))),
                }
            }
            result
        })?;
        Ok(total.finish(query))
    }

    fn expire_blocking(&self, before_ms: i64) -> Result<u64, StoreError> {
        let tx = self.db.begin_write().map_err(backend)?;
        let mut gone = 0;
        {
            let mut table = tx.open_table(BLOCKS).map_err(backend)?;
            let mut old = Vec::new();
            for entry in table.range(..(before_ms, 0)).map_err(backend)? {
                let (key, value) = entry.map_err(backend)?;
                if let Ok(h) = Header::read(value.value())
                    && h.max_end < before_ms
                {
                    old.push((key.value(), u64::from(h.count)));
                }
            }
            for (key, count) in old {
                table.remove(key).map_err(backend)?;
                gone += count;
            }
        }
        tx.commit().map_err(backend)?;
        Ok(gone)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(backend)?
}

impl FlowStore for EmbeddedStore {
    fn append(&self, flows: Vec<Flow>) -> BoxFuture<'_, Result<(), StoreError>> {
        let store = self.clone();
        Box::pin(blocking(move || store.append_blocking(&flows)))
    }

    fn append_records(
        &self,
        records: Vec<FlowRecord>,
        enricher: Arc<RwLock<Enricher>>,
    ) -> BoxFuture<'_, Result<(usize, Vec<FlowRecord>), StoreError>> {
        let store = self.clone();
        Box::pin(blocking(move || {
            store.append_records_blocking(&records, &enricher)?;
            Ok((records.len(), records))
        }))
    }

    fn aggregate<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Row>, StoreError>> {
        let store = self.clone();
        let query = query.clone();
        Box::pin(blocking(move || store.aggregate_blocking(&query)))
    }

    fn flows<'a>(
        &'a self,
        query: &'a Query,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Flow>, StoreError>> {
        let store = self.clone();
        let query = query.clone();
        Box::pin(blocking(move || {
            // Blocks are not in report order throughout (late records): keep the oldest
            // `limit` seen so far, trimming whenever twice as many have piled up.
            let mut out = Vec::new();
            let trim = |out: &mut Vec<Flow>| {
                out.sort_by_key(|f| f.record.end_ms);
                if limit > 0 {
                    out.truncate(limit);
                }
            };
            store.scan(&query, |f| {
                out.push(f);
                if limit > 0 && out.len() >= 2 * limit {
                    trim(&mut out);
                }
                true
            })?;
            trim(&mut out);
            Ok(out)
        }))
    }

    fn expire(&self, before_ms: i64) -> BoxFuture<'_, Result<u64, StoreError>> {
        let store = self.clone();
        Box::pin(blocking(move || store.expire_blocking(before_ms)))
    }
}
