//! The embedded store's block format: up to [`BLOCK_FLOWS`] flows in one redb value, laid out
//! so a query can answer from the bytes without building a [`Flow`] per record.
//!
//! ```text
//! version u8 (2) | count u32 | min_end i64 | max_end i64
//! | rows: count x ROW bytes, fixed width (offsets below)
//! | strings: n u32, (len u32, utf-8)*          devices, rules, endpoints, tags
//! | tag sets: m u32, (k u16, string id u32 * k)*
//! ```
//!
//! Little-endian throughout. A row names its device, rule and endpoints by string id and
//! each end's tags by tag-set id, so the few distinct values of a block are looked at once
//! per block, not once per record. [`Block::new_checked`] validates everything once (every
//! id in range, every code known); accessors never fail afterwards. Version 1 blocks
//! (row-by-row, variable width, written before this format) are still read: they are
//! decoded and re-encoded on the fly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use palisade_flow::{EndReason, FlowRecord, RecordKind, Verdict};

use crate::Flow;
use rustc_hash::FxHashMap;

/// Most flows per block.
pub(crate) const BLOCK_FLOWS: usize = 8192;

const VERSION: u8 = 2;
const VERSION_1: u8 = 1;

// Row layout.
const DEVICE: usize = 0;
const KIND: usize = 4;
const REASON: usize = 5;
const FAMILY: usize = 6;
const VERDICT: usize = 7;
const PROTOCOL: usize = 8;
const SRC_PORT: usize = 9;
const DST_PORT: usize = 11;
const SRC: usize = 13;
const DST: usize = 29;
const START: usize = 45;
const END: usize = 53;
const PACKETS: usize = 61;
const BYTES: usize = 69;
const REV_PACKETS: usize = 77;
const REV_BYTES: usize = 85;
const RULE: usize = 93;
const GENERATION: usize = 97;
const SRC_ENDPOINT: usize = 105;
const DST_ENDPOINT: usize = 109;
const SRC_TAGS: usize = 113;
const DST_TAGS: usize = 117;
/// Bytes per row.
pub(crate) const ROW: usize = 121;
/// Bytes before the rows.
const HEADER: usize = 21;

/// The header every version starts with: enough to skip a block a window does not need.
pub(crate) struct Header {
    /// Flows in the block.
    pub count: u32,
    /// Latest report time.
    pub max_end: i64,
}

impl Header {
    pub(crate) fn read(bytes: &[u8]) -> Result<Header, String> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.u8()?;
        if version != VERSION && version != VERSION_1 {
            return Err(format!(
                "block version {version}, expected {VERSION_1} or {VERSION}"
            ));
        }
        let count = r.u32()?;
        let _min = r.i64()?;
        let max_end = r.i64()?;
        Ok(Header { count, max_end })
    }
}

/// A block's strings: shared ones by identity first (collectors and the enricher hand out
/// one `Arc` per name, so a pointer answers most lookups), then by content.
#[derive(Default)]
struct Strings<'f> {
    by_pointer: FxHashMap<usize, u32>,
    index: FxHashMap<&'f str, u32>,
    list: Vec<&'f str>,
}

impl<'f> Strings<'f> {
    fn id(&mut self, s: &'f str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(s);
        self.index.insert(s, i);
        i
    }

    fn shared(&mut self, s: &'f Arc<str>) -> u32 {
        // The flows keep their strings alive while the block is encoded: a pointer is not
        // reused for another string meanwhile.
        let pointer = Arc::as_ptr(s).cast::<u8>() as usize;
        if let Some(&i) = self.by_pointer.get(&pointer) {
            return i;
        }
        let i = self.id(s);
        self.by_pointer.insert(pointer, i);
        i
    }
}

/// A block's tag sets: by identity first (the enricher shares one `Arc` per endpoint's
/// tags, so a pointer answers most lookups), then by content.
#[derive(Default)]
struct TagSets<'f> {
    by_pointer: FxHashMap<usize, u32>,
    by_value: FxHashMap<&'f [String], u32>,
    list: Vec<&'f [String]>,
}

impl<'f> TagSets<'f> {
    fn id(&mut self, set: &'f Arc<[String]>) -> u32 {
        let pointer = Arc::as_ptr(set).cast::<u8>() as usize;
        if let Some(&i) = self.by_pointer.get(&pointer) {
            return i;
        }
        let i = match self.by_value.get(&set[..]) {
            Some(&i) => i,
            None => {
                let i = self.list.len() as u32;
                self.list.push(&set[..]);
                self.by_value.insert(&set[..], i);
                i
            }
        };
        // The flows keep their sets alive while the block is encoded: a pointer is not
        // reused for another set meanwhile.
        self.by_pointer.insert(pointer, i);
        i
    }
}

/// What one row is made of: a record and both ends (borrowed from a [`Flow`], or from the
/// enricher's view when records are encoded straight from a collector).
#[derive(Clone, Copy)]
pub(crate) struct Source<'f> {
    pub record: &'f FlowRecord,
    pub src_endpoint: &'f Arc<str>,
    pub dst_endpoint: &'f Arc<str>,
    pub src_tags: &'f Arc<[String]>,
    pub dst_tags: &'f Arc<[String]>,
}

impl<'f> From<&'f Flow> for Source<'f> {
    fn from(f: &'f Flow) -> Self {
        Source {
            record: &f.record,
            src_endpoint: &f.src_endpoint,
            dst_endpoint: &f.dst_endpoint,
            src_tags: &f.src_tags,
            dst_tags: &f.dst_tags,
        }
    }
}

/// Encodes flows as one block; (earliest end_ms, bytes).
pub(crate) fn encode(flows: &[Flow]) -> (i64, Vec<u8>) {
    encode_rows(flows.len(), flows.iter().map(Source::from))
}

/// Encodes `count` rows as one block; (earliest end_ms, bytes).
pub(crate) fn encode_rows<'f>(
    count: usize,
    rows: impl Iterator<Item = Source<'f>>,
) -> (i64, Vec<u8>) {
    let mut strings = Strings::default();
    let mut tag_sets = TagSets::default();
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    let mut out = vec![0; HEADER + count * ROW];
    let mut written = 0;
    for (f, row) in rows.zip(out[HEADER..].chunks_exact_mut(ROW)) {
        let r = f.record;
        min = min.min(r.end_ms);
        max = max.max(r.end_ms);
        written += 1;
        put(row, DEVICE, &strings.shared(&r.device).to_le_bytes());
        row[KIND] = kind_code(r.kind);
        row[REASON] = reason_code(r.end_reason);
        row[FAMILY] = u8::from(r.src.is_ipv6()) | (u8::from(r.dst.is_ipv6()) << 1);
        row[VERDICT] = u8::from(r.verdict == Verdict::Denied);
        row[PROTOCOL] = r.protocol;
        put(row, SRC_PORT, &r.src_port.to_le_bytes());
        put(row, DST_PORT, &r.dst_port.to_le_bytes());
        put_ip(row, SRC, r.src);
        put_ip(row, DST, r.dst);
        put(row, START, &r.start_ms.to_le_bytes());
        put(row, END, &r.end_ms.to_le_bytes());
        put(row, PACKETS, &r.packets.to_le_bytes());
        put(row, BYTES, &r.bytes.to_le_bytes());
        put(row, REV_PACKETS, &r.rev_packets.to_le_bytes());
        put(row, REV_BYTES, &r.rev_bytes.to_le_bytes());
        put(row, RULE, &strings.shared(&r.rule).to_le_bytes());
        put(row, GENERATION, &r.generation.to_le_bytes());
        put(
            row,
            SRC_ENDPOINT,
            &strings.shared(f.src_endpoint).to_le_bytes(),
        );
        put(
            row,
            DST_ENDPOINT,
            &strings.shared(f.dst_endpoint).to_le_bytes(),
        );
        put(row, SRC_TAGS, &tag_sets.id(f.src_tags).to_le_bytes());
        put(row, DST_TAGS, &tag_sets.id(f.dst_tags).to_le_bytes());
    }
    // An iterator shorter than it said: the block holds what came.
    out.truncate(HEADER + written * ROW);
    if written == 0 {
        (min, max) = (0, 0);
    }
    out[0] = VERSION;
    put(&mut out, 1, &(written as u32).to_le_bytes());
    put(&mut out, 5, &min.to_le_bytes());
    put(&mut out, 13, &max.to_le_bytes());
    // Tag sets name their tags by string id too.
    let sets: Vec<Vec<u32>> = tag_sets
        .list
        .iter()
        .map(|set| {
            set.iter()
                .take(u16::MAX as usize)
                .map(|t| strings.id(t))
                .collect()
        })
        .collect();
    out.extend((strings.list.len() as u32).to_le_bytes());
    for s in &strings.list {
        out.extend((s.len() as u32).to_le_bytes());
        out.extend(s.as_bytes());
    }
    out.extend((sets.len() as u32).to_le_bytes());
    for set in &sets {
        out.extend((set.len() as u16).to_le_bytes());
        for id in set {
            out.extend(id.to_le_bytes());
        }
    }
    (min, out)
}

fn put(row: &mut [u8], at: usize, bytes: &[u8]) {
    row[at..at + bytes.len()].copy_from_slice(bytes);
}

fn put_ip(row: &mut [u8], at: usize, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => put(row, at, &a.octets()),
        IpAddr::V6(a) => put(row, at, &a.octets()),
    }
}

fn kind_code(k: RecordKind) -> u8 {
    match k {
        RecordKind::Start => 0,
        RecordKind::Update => 1,
        RecordKind::End => 2,
    }
}

fn kind_of(code: u8) -> Option<RecordKind> {
    Some(match code {
        0 => RecordKind::Start,
        1 => RecordKind::Update,
        2 => RecordKind::End,
        _ => return None,
    })
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

fn reason_of(code: u8) -> Option<Option<EndReason>> {
    Some(match code {
        0 => None,
        1 => Some(EndReason::Idle),
        2 => Some(EndReason::Fin),
        3 => Some(EndReason::Reset),
        4 => Some(EndReason::Evicted),
        5 => Some(EndReason::PolicyChange),
        6 => Some(EndReason::Flushed),
        _ => return None,
    })
}

/// A validated block: its strings, tag sets and rows.
pub(crate) struct Block<'a> {
    /// The block's strings.
    pub strings: Vec<&'a str>,
    /// Tag sets as string ids: `set_ids[sets[i].0..sets[i].1]`.
    sets: Vec<(usize, usize)>,
    set_ids: Vec<u32>,
    rows: &'a [u8],
}

/// A block as stored (borrowing the value) or re-encoded from version 1.
pub(crate) enum Bytes<'a> {
    Stored(&'a [u8]),
    Converted(Vec<u8>),
}

impl Bytes<'_> {
    /// Version 1 blocks are converted; current ones borrowed.
    pub(crate) fn of(bytes: &[u8]) -> Result<Bytes<'_>, String> {
        if bytes.first() == Some(&VERSION_1) {
            Ok(Bytes::Converted(encode(&decode_v1(bytes)?).1))
        } else {
            Ok(Bytes::Stored(bytes))
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Stored(b) => b,
            Bytes::Converted(b) => b,
        }
    }
}

impl<'a> Block<'a> {
    /// Checks a (version 2) block through and through.
    pub(crate) fn new_checked(bytes: &'a [u8]) -> Result<Block<'a>, String> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.u8()?;
        if version != VERSION {
            return Err(format!("block version {version}, expected {VERSION}"));
        }
        let count = r.u32()? as usize;
        let _times = (r.i64()?, r.i64()?);
        let rows = count
            .checked_mul(ROW)
            .and_then(|len| r.take(len).ok())
            .ok_or_else(|| {
                format!(
                    "{count} flows of {ROW} bytes do not fit in {} bytes",
                    bytes.len()
                )
            })?;
        let n = r.u32()? as usize;
        // Every string takes at least its 4-byte length: no allocation beyond the input.
        if n > bytes.len() / 4 {
            return Err(format!("{n} strings in {} bytes", bytes.len()));
        }
        let mut strings = Vec::with_capacity(n);
        for i in 0..n {
            let len = r.u32()? as usize;
            let s = std::str::from_utf8(r.take(len)?).map_err(|e| format!("string {i}: {e}"))?;
            strings.push(s);
        }
        let m = r.u32()? as usize;
        if m > bytes.len() / 2 {
            return Err(format!("{m} tag sets in {} bytes", bytes.len()));
        }
        let mut sets = Vec::with_capacity(m);
        let mut set_ids = Vec::new();
        for i in 0..m {
            let k = r.u16()? as usize;
            let start = set_ids.len();
            for _ in 0..k {
                let id = r.u32()?;
                if id as usize >= n {
                    return Err(format!("tag set {i} names string {id} of {n}"));
                }
                set_ids.push(id);
            }
            sets.push((start, set_ids.len()));
        }
        if r.at != bytes.len() {
            return Err(format!("{} bytes after the tag sets", bytes.len() - r.at));
        }
        for (i, row) in rows.chunks_exact(ROW).enumerate() {
            let bad = |what: &str| format!("flow {i}: {what}");
            for at in [DEVICE, RULE, SRC_ENDPOINT, DST_ENDPOINT] {
                if u32_at(row, at) as usize >= n {
                    return Err(bad(&format!("string {} of {n}", u32_at(row, at))));
                }
            }
            for at in [SRC_TAGS, DST_TAGS] {
                if u32_at(row, at) as usize >= m {
                    return Err(bad(&format!("tag set {} of {m}", u32_at(row, at))));
                }
            }
            if kind_of(row[KIND]).is_none() {
                return Err(bad(&format!("record kind {}", row[KIND])));
            }
            if reason_of(row[REASON]).is_none() {
                return Err(bad(&format!("end reason {}", row[REASON])));
            }
            if row[FAMILY] > 3 || row[VERDICT] > 1 {
                return Err(bad(&format!(
                    "address families {} / verdict {}",
                    row[FAMILY], row[VERDICT]
                )));
            }
        }
        Ok(Block {
            strings,
            sets,
            set_ids,
            rows,
        })
    }

    /// The rows.
    pub(crate) fn rows(&self) -> impl ExactSizeIterator<Item = RowRef<'a>> + use<'a> {
        self.rows.chunks_exact(ROW).map(RowRef)
    }

    /// Tag set `i`'s string ids.
    pub(crate) fn set(&self, i: u32) -> &[u32] {
        let (a, b) = self.sets[i as usize];
        &self.set_ids[a..b]
    }

    /// Tag set `i`'s tags.
    pub(crate) fn tags(&self, i: u32) -> Vec<&'a str> {
        self.set(i)
            .iter()
            .map(|s| self.strings[*s as usize])
            .collect()
    }

    /// How many tag sets.
    pub(crate) fn set_count(&self) -> usize {
        self.sets.len()
    }

    /// Row `row` as a flow (string ids were checked).
    pub(crate) fn flow(&self, row: RowRef<'_>, cache: &mut FlowCache) -> Flow {
        let r = row;
        Flow {
            record: FlowRecord {
                device: cache.string(self, r.device()),
                kind: r.kind(),
                end_reason: r.end_reason(),
                src: r.src(),
                dst: r.dst(),
                protocol: r.protocol(),
                src_port: r.src_port(),
                dst_port: r.dst_port(),
                start_ms: r.start_ms(),
                end_ms: r.end_ms(),
                packets: r.packets(),
                bytes: r.bytes(),
                rev_packets: r.rev_packets(),
                rev_bytes: r.rev_bytes(),
                verdict: r.verdict(),
                rule: cache.string(self, r.rule()),
                generation: r.generation(),
            },
            src_endpoint: cache.string(self, r.src_endpoint()),
            dst_endpoint: cache.string(self, r.dst_endpoint()),
            src_tags: cache.tags(self, r.src_tags()),
            dst_tags: cache.tags(self, r.dst_tags()),
        }
    }
}

/// The shared values of one block while its flows are built (one `Arc` per string and tag
/// set, as collectors and the enricher made them).
pub(crate) struct FlowCache {
    strings: Vec<Option<Arc<str>>>,
    sets: Vec<Option<Arc<[String]>>>,
}

impl FlowCache {
    /// An empty cache for `block` (and no other).
    pub(crate) fn new(block: &Block<'_>) -> Self {
        Self {
            strings: vec![None; block.strings.len()],
            sets: vec![None; block.set_count()],
        }
    }

    fn string(&mut self, block: &Block<'_>, id: u32) -> Arc<str> {
        Arc::clone(
            self.strings[id as usize].get_or_insert_with(|| block.strings[id as usize].into()),
        )
    }

    fn tags(&mut self, block: &Block<'_>, id: u32) -> Arc<[String]> {
        Arc::clone(self.sets[id as usize].get_or_insert_with(|| {
            block
                .set(id)
                .iter()
                .map(|s| block.strings[*s as usize].to_string())
                .collect()
        }))
    }
}

fn u32_at(row: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&row[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(row: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&row[at..at + 8]);
    u64::from_le_bytes(b)
}

fn u16_at(row: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([row[at], row[at + 1]])
}

/// One row of a checked block.
#[derive(Clone, Copy)]
pub(crate) struct RowRef<'a>(&'a [u8]);

impl<'a> RowRef<'a> {
    pub(crate) fn device(self) -> u32 {
        u32_at(self.0, DEVICE)
    }
    pub(crate) fn kind(self) -> RecordKind {
        kind_of(self.0[KIND]).unwrap_or(RecordKind::End)
    }
    pub(crate) fn end_reason(self) -> Option<EndReason> {
        reason_of(self.0[REASON]).flatten()
    }
    pub(crate) fn protocol(self) -> u8 {
        self.0[PROTOCOL]
    }
    pub(crate) fn src_port(self) -> u16 {
        u16_at(self.0, SRC_PORT)
    }
    pub(crate) fn dst_port(self) -> u16 {
        u16_at(self.0, DST_PORT)
    }
    fn ip(self, at: usize, v6: bool) -> IpAddr {
        let mut b = [0u8; 16];
        b.copy_from_slice(&self.0[at..at + 16]);
        if v6 {
            IpAddr::V6(Ipv6Addr::from(b))
        } else {
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        }
    }
    pub(crate) fn src(self) -> IpAddr {
        self.ip(SRC, self.0[FAMILY] & 1 != 0)
    }
    pub(crate) fn dst(self) -> IpAddr {
        self.ip(DST, self.0[FAMILY] & 2 != 0)
    }
    /// Both addresses and their families as they are stored (what identifies a session).
    pub(crate) fn addresses(self) -> &'a [u8] {
        &self.0[SRC..DST + 16]
    }
    pub(crate) fn families(self) -> u8 {
        self.0[FAMILY]
    }
    pub(crate) fn start_ms(self) -> i64 {
        u64_at(self.0, START) as i64
    }
    pub(crate) fn end_ms(self) -> i64 {
        u64_at(self.0, END) as i64
    }
    pub(crate) fn packets(self) -> u64 {
        u64_at(self.0, PACKETS)
    }
    pub(crate) fn bytes(self) -> u64 {
        u64_at(self.0, BYTES)
    }
    pub(crate) fn rev_packets(self) -> u64 {
        u64_at(self.0, REV_PACKETS)
    }
    pub(crate) fn rev_bytes(self) -> u64 {
        u64_at(self.0, REV_BYTES)
    }
    pub(crate) fn verdict(self) -> Verdict {
        if self.0[VERDICT] == 1 {
            Verdict::Denied
        } else {
            Verdict::Allowed
        }
    }
    pub(crate) fn rule(self) -> u32 {
        u32_at(self.0, RULE)
    }
    pub(crate) fn generation(self) -> u64 {
        u64_at(self.0, GENERATION)
    }
    pub(crate) fn src_endpoint(self) -> u32 {
        u32_at(self.0, SRC_ENDPOINT)
    }
    pub(crate) fn dst_endpoint(self) -> u32 {
        u32_at(self.0, DST_ENDPOINT)
    }
    pub(crate) fn src_tags(self) -> u32 {
        u32_at(self.0, SRC_TAGS)
    }
    pub(crate) fn dst_tags(self) -> u32 {
        u32_at(self.0, DST_TAGS)
    }
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
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32_at(self.take(4)?, 0))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64_at(self.take(8)?, 0))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(self.u64()? as i64)
    }
    fn ip(&mut self) -> Result<IpAddr, String> {
        match self.u8()? {
            4 => {
                let b = self.take(4)?;
                Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
            }
            6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(self.take(16)?);
                Ok(IpAddr::V6(Ipv6Addr::from(a)))
            }
            f => Err(format!("address family {f} at byte {}", self.at - 1)),
        }
    }
}

/// Decodes a version 1 block (row by row: device u32, kind u8, end_reason u8, src ip, dst
/// ip, protocol u8, src_port u16, dst_port u16, start i64, end i64, packets, bytes,
/// rev_packets, rev_bytes u64, verdict u8, rule u32, generation u64, src_endpoint u32,
/// dst_endpoint u32, src tags (n u16, u32*), dst tags (n u16, u32*); ip: 4 + 4 bytes or
/// 6 + 16 bytes).
fn decode_v1(bytes: &[u8]) -> Result<Vec<Flow>, String> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u8()?;
    if version != VERSION_1 {
        return Err(format!("block version {version}, expected {VERSION_1}"));
    }
    let count = r.u32()? as usize;
    let _ = (r.i64()?, r.i64()?);
    let n = r.u32()? as usize;
    if n > bytes.len() / 4 || count > bytes.len() / 60 {
        return Err(format!(
            "{n} strings / {count} flows in {} bytes",
            bytes.len()
        ));
    }
    let mut strings: Vec<Arc<str>> = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.u32()? as usize;
        let s = std::str::from_utf8(r.take(len)?).map_err(|e| format!("string: {e}"))?;
        strings.push(s.into());
    }
    let string = |i: u32| -> Result<Arc<str>, String> {
        strings
            .get(i as usize)
            .cloned()
            .ok_or_else(|| format!("string {i} of {}", strings.len()))
    };
    let mut flows = Vec::with_capacity(count);
    for _ in 0..count {
        let device = string(r.u32()?)?;
        let kind = kind_of(r.u8()?).ok_or("record kind")?;
        let end_reason = reason_of(r.u8()?).ok_or("end reason")?;
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
                side.push(string(r.u32()?)?.to_string());
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
            src_tags: src_tags.into(),
            dst_tags: dst_tags.into(),
        });
    }
    if r.at != bytes.len() {
        return Err(format!("{} bytes after the last flow", bytes.len() - r.at));
    }
    Ok(flows)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// All of a block's flows.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<Flow>, String> {
        let bytes = Bytes::of(bytes)?;
        let block = Block::new_checked(bytes.as_slice())?;
        let mut cache = FlowCache::new(&block);
        Ok(block.rows().map(|r| block.flow(r, &mut cache)).collect())
    }

    /// A version 1 block, as the previous format wrote it.
    fn encode_v1(flows: &[Flow]) -> Vec<u8> {
        let mut list: Vec<String> = Vec::new();
        let mut id = |s: &str| -> u32 {
            match list.iter().position(|x| x == s) {
                Some(i) => i as u32,
                None => {
                    list.push(s.to_string());
                    list.len() as u32 - 1
                }
            }
        };
        let ip = |out: &mut Vec<u8>, a: IpAddr| match a {
            IpAddr::V4(a) => {
                out.push(4);
                out.extend(a.octets());
            }
            IpAddr::V6(a) => {
                out.push(6);
                out.extend(a.octets());
            }
        };
        let mut body = Vec::new();
        for f in flows {
            let r = &f.record;
            body.extend(id(&r.device).to_le_bytes());
            body.push(kind_code(r.kind));
            body.push(reason_code(r.end_reason));
            ip(&mut body, r.src);
            ip(&mut body, r.dst);
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
            body.extend(id(&r.rule).to_le_bytes());
            body.extend(r.generation.to_le_bytes());
            body.extend(id(&f.src_endpoint).to_le_bytes());
            body.extend(id(&f.dst_endpoint).to_le_bytes());
            for tags in [&f.src_tags, &f.dst_tags] {
                body.extend((tags.len() as u16).to_le_bytes());
                for t in tags.iter() {
                    body.extend(id(t).to_le_bytes());
                }
            }
        }
        let min = flows.iter().map(|f| f.record.end_ms).min().unwrap_or(0);
        let max = flows.iter().map(|f| f.record.end_ms).max().unwrap_or(0);
        let mut out = vec![VERSION_1];
        out.extend((flows.len() as u32).to_le_bytes());
        out.extend(min.to_le_bytes());
        out.extend(max.to_le_bytes());
        out.extend((list.len() as u32).to_le_bytes());
        for s in &list {
            out.extend((s.len() as u32).to_le_bytes());
            out.extend(s.as_bytes());
        }
        out.extend(body);
        out
    }

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
                        dst_endpoint: "".into(),
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
            prop_assert_eq!(&decode(&bytes).unwrap(), &flows);
            // What the previous format wrote reads back the same.
            prop_assert_eq!(decode(&encode_v1(&flows)).unwrap(), flows);
        }

        #[test]
        fn corrupt_blocks_are_errors_not_panics(
            flows in prop::collection::vec(arb_flow(), 1..5),
            cut in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
            old in any::<bool>(),
        ) {
            let mut bytes = if old { encode_v1(&flows) } else { encode(&flows).1 };
            let short = &bytes[..cut.index(bytes.len())];
            prop_assert!(decode(short).is_err());
            let i = flip.0.index(bytes.len());
            bytes[i] ^= flip.1 | 1;
            let _ = decode(&bytes);
        }
    }
}
