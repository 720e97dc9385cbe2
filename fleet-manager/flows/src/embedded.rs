//! The embedded flow store: one redb file, no server. Each append is one transaction
//! (durable when it returns) holding one block of flows in a compact binary form with its
//! own string table; blocks are keyed by their earliest report time, and carry their
//! latest, so a query reads only the blocks that overlap its window and retention drops
//! whole blocks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use palisade_flow::{EndReason, FlowRecord, RecordKind, Verdict};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::query::{Aggregator, Query, Row};
use crate::{BoxFuture, Flow, FlowStore, StoreError};

/// Blocks by (earliest `end_ms`, sequence number).
const BLOCKS: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("flow_blocks");

/// Most flows per block.
const BLOCK_FLOWS: usize = 8192;

const VERSION: u8 = 1;

/// The embedded store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    next: Arc<AtomicU64>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
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
        })
    }

    fn append_blocking(&self, flows: &[Flow]) -> Result<(), StoreError> {
        if flows.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(backend)?;
        {
            let mut table = tx.open_table(BLOCKS).map_err(backend)?;
            for chunk in flows.chunks(BLOCK_FLOWS) {
                let (min, bytes) = encode(chunk);
                let seq = self.next.fetch_add(1, Ordering::Relaxed);
                table
                    .insert((min, seq), bytes.as_slice())
                    .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)
    }

    /// Calls `visit` with every flow of every block overlapping the window.
    fn scan(&self, query: &Query, mut visit: impl FnMut(Flow) -> bool) -> Result<(), StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = match tx.open_table(BLOCKS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(backend(e)),
        };
        for entry in table.range(..(query.to_ms, 0)).map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            let bytes = value.value();
            let at = || format!("block {:?}", key.value());
            let header =
                Header::read(bytes).map_err(|problem| StoreError::Corrupt { at: at(), problem })?;
            if header.max_end < query.from_ms {
                continue;
            }
            let flows =
                decode(bytes).map_err(|problem| StoreError::Corrupt { at: at(), problem })?;
            for flow in flows {
                if query.selects(&flow) && !visit(flow) {
                    return Ok(());
                }
            }
        }
        Ok(())
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
    fn append<'a>(&'a self, flows: &'a [Flow]) -> BoxFuture<'a, Result<(), StoreError>> {
        let store = self.clone();
        let flows = flows.to_vec();
        Box::pin(blocking(move || store.append_blocking(&flows)))
    }

    fn aggregate<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Row>, StoreError>> {
        let store = self.clone();
        let query = query.clone();
        Box::pin(blocking(move || {
            let mut agg = Aggregator::new(&query.group_by);
            store.scan(&query, |f| {
                agg.add(&f);
                true
            })?;
            Ok(agg.finish(&query))
        }))
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

// ---- the block format ----
//
// version u8 | count u32 | min_end i64 | max_end i64 | strings: n u32, (len u32, utf-8)*
// | flows: count x (device u32, kind u8, end_reason u8, src ip, dst ip, protocol u8,
//   src_port u16, dst_port u16, start i64, end i64, packets u64, bytes u64, rev_packets
//   u64, rev_bytes u64, verdict u8, rule u32, generation u64, src_endpoint u32,
//   dst_endpoint u32, src tags (n u16, u32*), dst tags (n u16, u32*))
// ip: 4 + 4 bytes or 6 + 16 bytes. Little-endian throughout.

struct Header {
    count: u32,
    max_end: i64,
}

impl Header {
    fn read(bytes: &[u8]) -> Result<Header, String> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.u8()?;
        if version != VERSION {
            return Err(format!("block version {version}, expected {VERSION}"));
        }
        let count = r.u32()?;
        let _min = r.i64()?;
        let max_end = r.i64()?;
        Ok(Header { count, max_end })
    }
}

struct Strings {
    index: crate::hash::FastMap<String, u32>,
    list: Vec<String>,
}

impl Strings {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

fn kind_code(k: RecordKind) -> u8 {
    match k {
        RecordKind::Start => 0,
        RecordKind::Update => 1,
        RecordKind::End => 2,
    }
}

fn reason_code(r: Option<EndReason>) -> u8 {
    match r {
        None => 0,
        Some(EndReason::Idle) => 1,
        Some(EndReason::Fin) => 2,
        Some(EndReason::Reset) => 3,
        Some(EndReason::Evicted) => 4,
        Some(EndReason::PolicyChange) => 5,
        Some(EndReason::Flushed) => 6,
    }
}

fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend(a.octets());
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend(a.octets());
        }
    }
}

/// Encodes flows; (earliest end_ms, bytes).
fn encode(flows: &[Flow]) -> (i64, Vec<u8>) {
    let mut strings = Strings {
        index: Default::default(),
        list: Vec::new(),
    };
    let min = flows.iter().map(|f| f.record.end_ms).min().unwrap_or(0);
    let max = flows.iter().map(|f| f.record.end_ms).max().unwrap_or(0);
    let mut body = Vec::with_capacity(flows.len() * 120);
    for f in flows {
        let r = &f.record;
        body.extend(strings.id(&r.device).to_le_bytes());
        body.push(kind_code(r.kind));
        body.push(reason_code(r.end_reason));
        put_ip(&mut body, r.src);
        put_ip(&mut body, r.dst);
        body.push(r.protocol);
        body.extend(r.src_port.to_le_bytes());
        body.extend(r.dst_port.to_le_bytes());
        for v in [r.start_ms, r.end_ms] {
            body.extend(v.to_le_bytes());
        }
        for v in [r.packets, r.bytes, r.rev_packets, r.rev_bytes] {
            body.extend(v.to_le_bytes());
        }
        body.push(u8::from(r.verdict == Verdict::Denied));
        body.extend(strings.id(&r.rule).to_le_bytes());
        body.extend(r.generation.to_le_bytes());
        body.extend(strings.id(&f.src_endpoint).to_le_bytes());
        body.extend(strings.id(&f.dst_endpoint).to_le_bytes());
        for tags in [&f.src_tags, &f.dst_tags] {
            let n = tags.len().min(u16::MAX as usize);
            body.extend((n as u16).to_le_bytes());
            for t in &tags[..n] {
                body.extend(strings.id(t).to_le_bytes());
            }
        }
    }
    let mut out = Vec::with_capacity(body.len() + 64);
    out.push(VERSION);
    out.extend((flows.len() as u32).to_le_bytes());
    out.extend(min.to_le_bytes());
    out.extend(max.to_le_bytes());
    out.extend((strings.list.len() as u32).to_le_bytes());
    for s in &strings.list {
        out.extend((s.len() as u32).to_le_bytes());
        out.extend(s.as_bytes());
    }
    out.extend(body);
    (min, out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| format!("cut short at byte {} (wanted {n} more)", self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(self.u64()? as i64)
    }
    fn ip(&mut self) -> Result<IpAddr, String> {
        match self.u8()? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(self.take(4)?).expect("4 bytes"),
            ))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(self.take(16)?).expect("16 bytes"),
            ))),
            f => Err(format!("address family {f} at byte {}", self.at - 1)),
        }
    }
}

fn decode(bytes: &[u8]) -> Result<Vec<Flow>, String> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u8()?;
    if version != VERSION {
        return Err(format!("block version {version}, expected {VERSION}"));
    }
    let count = r.u32()? as usize;
    let _ = (r.i64()?, r.i64()?);
    let n = r.u32()? as usize;
    // Every string takes at least its 4-byte length: no allocation beyond the input.
    if n > bytes.len() / 4 || count > bytes.len() / 60 {
        return Err(format!(
            "{n} strings / {count} flows in {} bytes",
            bytes.len()
        ));
    }
    let mut strings = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.u32()? as usize;
        let s = std::str::from_utf8(r.take(len)?).map_err(|e| format!("string: {e}"))?;
        strings.push(s.to_string());
    }
    let string = |i: u32| -> Result<String, String> {
        strings
            .get(i as usize)
            .cloned()
            .ok_or_else(|| format!("string {i} of {}", strings.len()))
    };
    let mut flows = Vec::with_capacity(count);
    for _ in 0..count {
        let device = string(r.u32()?)?;
        let kind = match r.u8()? {
            0 => RecordKind::Start,
            1 => RecordKind::Update,
            2 => RecordKind::End,
            k => return Err(format!("record kind {k}")),
        };
        let end_reason = match r.u8()? {
            0 => None,
            1 => Some(EndReason::Idle),
            2 => Some(EndReason::Fin),
            3 => Some(EndReason::Reset),
            4 => Some(EndReason::Evicted),
            5 => Some(EndReason::PolicyChange),
            6 => Some(EndReason::Flushed),
            k => return Err(format!("end reason {k}")),
        };
        let (src, dst) = (r.ip()?, r.ip()?);
        let protocol = r.u8()?;
        let (src_port, dst_port) = (r.u16()?, r.u16()?);
        let (start_ms, end_ms) = (r.i64()?, r.i64()?);
        let (packets, bytes, rev_packets, rev_bytes) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let verdict = match r.u8()? {
            0 => Verdict::Allowed,
            1 => Verdict::Denied,
            v => return Err(format!("verdict {v}")),
        };
        let rule = string(r.u32()?)?;
        let generation = r.u64()?;
        let src_endpoint = string(r.u32()?)?;
        let dst_endpoint = string(r.u32()?)?;
        let mut tags = [Vec::new(), Vec::new()];
        for side in &mut tags {
            let n = r.u16()?;
            for _ in 0..n {
                side.push(string(r.u32()?)?);
            }
        }
        let [src_tags, dst_tags] = tags;
        flows.push(Flow {
            record: FlowRecord {
                device,
                kind,
                end_reason,
                src,
                dst,
                protocol,
                src_port,
                dst_port,
                start_ms,
                end_ms,
                packets,
                bytes,
                rev_packets,
                rev_bytes,
                verdict,
                rule,
                generation,
            },
            src_endpoint,
            dst_endpoint,
            src_tags,
            dst_tags,
        });
    }
    if r.at != bytes.len() {
        return Err(format!("{} bytes after the last flow", bytes.len() - r.at));
    }
    Ok(flows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arb_flow() -> impl Strategy<Value = Flow> {
        (
            (
                prop::sample::select(vec!["dpu-1", "dpu-2", "10.0.0.9"]),
                0u8..3,
                any::<[u8; 4]>(),
                any::<[u8; 16]>(),
                any::<bool>(),
                any::<u8>(),
                any::<(u16, u16)>(),
                0i64..100_000,
                0i64..10_000,
            ),
            (
                any::<(u64, u64, u64, u64)>(),
                any::<bool>(),
                prop::sample::select(vec!["", "shop/0020", "admin/0010"]),
                any::<u64>(),
                prop::sample::select(vec!["", "shop/web/eth0", "shop/app/eth0"]),
                prop::collection::vec(
                    prop::sample::select(vec!["tier=web", "tier=app", "application=shop"]),
                    0..3,
                ),
            ),
        )
            .prop_map(
                |(
                    (device, kind, v4, v6, six, protocol, (sp, dp), start, len),
                    ((p, b, rp, rb), denied, rule, generation, ep, tags),
                )| {
                    let (src, dst) = if six {
                        (IpAddr::from(v6), IpAddr::from([v6[15]; 16]))
                    } else {
                        (IpAddr::from(v4), IpAddr::from([v4[0], 1, 2, 3]))
                    };
                    Flow {
                        record: FlowRecord {
                            device: device.into(),
                            kind: [RecordKind::Start, RecordKind::Update, RecordKind::End]
                                [kind as usize],
                            end_reason: (kind == 2).then_some(EndReason::Fin),
                            src,
                            dst,
                            protocol,
                            src_port: sp,
                            dst_port: dp,
                            start_ms: start,
                            end_ms: start + len,
                            packets: p,
                            bytes: b,
                            rev_packets: rp,
                            rev_bytes: rb,
                            verdict: if denied {
                                Verdict::Denied
                            } else {
                                Verdict::Allowed
                            },
                            rule: rule.into(),
                            generation,
                        },
                        src_endpoint: ep.into(),
                        dst_endpoint: String::new(),
                        src_tags: tags.iter().map(|t| t.to_string()).collect(),
                        dst_tags: tags.iter().rev().map(|t| t.to_string()).collect(),
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn blocks_round_trip(flows in prop::collection::vec(arb_flow(), 0..40)) {
            let (_, bytes) = encode(&flows);
            prop_assert_eq!(decode(&bytes).unwrap(), flows);
        }

        #[test]
        fn corrupt_blocks_are_errors_not_panics(
            flows in prop::collection::vec(arb_flow(), 1..5),
            cut in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
        ) {
            let (_, mut bytes) = encode(&flows);
            let short = &bytes[..cut.index(bytes.len())];
            prop_assert!(decode(short).is_err());
            let i = flip.0.index(bytes.len());
            bytes[i] ^= flip.1 | 1;
            let _ = decode(&bytes);
        }
    }
}
