//! The embedded store's block format: up to [`BLOCK_FLOWS`] flows in one redb value, laid out
//! so a query can answer from the bytes without building a [`Flow`] per record.
//!
//! ```text
//! version u8 (2 wide, 3 compact) | count u32 | min_end i64 | max_end i64
//! | rows: count x row bytes, fixed width (offsets below; 121 wide, 56 compact)
//! | strings: n u32, (len u32, utf-8)*          devices, rules, endpoints, tags
//! | tag sets: m u32, (k u16, string id u32 * k)*
//! ```
//!
//! Little-endian throughout. A row names its device, rule and endpoints by string id and
//! each end's tags by tag-set id, so the few distinct values of a block are looked at once
//! per block, not once per record. [`Block::new_checked`] validates everything once (every
//! id in range, every code known); accessors never fail afterwards.
//!
//! A block is written compact when all of it fits: IPv4 addresses (4 bytes, no family
//! byte), the report time as an offset from the block's earliest (u32 ms) and the start as a
//! duration before it (u32 ms), counters and generation in u32, string and tag-set ids in
//! u16. Otherwise (IPv6, a counter past 4 G, a session longer than 49 days...) it is written
//! wide. The compact row is less than half the bytes, and bytes written are most of what
//! storing costs. Version 1 blocks (row-by-row, variable width, written before these) are
//! still read: they are decoded and re-encoded on the fly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use palisade_flow::{EndReason, FlowRecord, RecordKind, Verdict};

use crate::Flow;
use rustc_hash::FxHashMap;

/// Most flows per block.
pub(crate) const BLOCK_FLOWS: usize = 8192;

/// Wide rows.
const VERSION: u8 = 2;
/// Compact rows.
const COMPACT: u8 = 3;
const VERSION_1: u8 = 1;

// Wide row layout.
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

/// Compact row layout: IPv4 addresses, times relative to the block, u32 counters, u16 ids.
mod compact {
    pub(super) const DEVICE: usize = 0;
    pub(super) const KIND: usize = 2;
    pub(super) const REASON: usize = 3;
    pub(super) const VERDICT: usize = 4;
    pub(super) const PROTOCOL: usize = 5;
    pub(super) const SRC_PORT: usize = 6;
    pub(super) const DST_PORT: usize = 8;
    pub(super) const SRC: usize = 10;
    pub(super) const DST: usize = 14;
    /// `end_ms` minus the block's earliest.
    pub(super) const END: usize = 18;
    /// `end_ms` minus `start_ms`.
    pub(super) const DURATION: usize = 22;
    pub(super) const PACKETS: usize = 26;
    pub(super) const BYTES: usize = 30;
    pub(super) const REV_PACKETS: usize = 34;
    pub(super) const REV_BYTES: usize = 38;
    pub(super) const RULE: usize = 42;
    pub(super) const GENERATION: usize = 44;
    pub(super) const SRC_ENDPOINT: usize = 48;
    pub(super) const DST_ENDPOINT: usize = 50;
    pub(super) const SRC_TAGS: usize = 52;
    pub(super) const DST_TAGS: usize = 54;
    /// Bytes per row.
    pub(super) const ROW: usize = 56;
}

/// Which row layout a block has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    Wide,
    Compact,
}

impl Layout {
    fn row(self) -> usize {
        match self {
            Layout::Wide => ROW,
            Layout::Compact => compact::ROW,
        }
    }
}

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
        if !matches!(version, VERSION_1 | VERSION | COMPACT) {
            return Err(format!(
                "block version {version}, expected {VERSION_1}, {VERSION} or {COMPACT}"
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
    let sources: Vec<Source<'_>> = flows.iter().map(Source::from).collect();
    encode_rows(&sources)
}

/// A row's string and tag-set ids.
struct Ids {
    device: u32,
    rule: u32,
    src_endpoint: u32,
    dst_endpoint: u32,
    src_tags: u32,
    dst_tags: u32,
}

/// Encodes rows as one block, compact when they all fit; (earliest end_ms, bytes).
pub(crate) fn encode_rows(rows: &[Source<'_>]) -> (i64, Vec<u8>) {
    encode_rows_into(rows, Vec::new(), &mut Scratch::default())
}

/// What encoding a block needs besides its rows and its bytes, kept from block to block
/// (fresh buffers of this size cost the kernel's page zeroing on every block).
#[derive(Default)]
pub(crate) struct Scratch {
    ids: Vec<Ids>,
}

/// [`encode_rows`] into `out` (a buffer to reuse: its contents are replaced) with `scratch`.
pub(crate) fn encode_rows_into(
    rows: &[Source<'_>],
    mut out: Vec<u8>,
    scratch: &mut Scratch,
) -> (i64, Vec<u8>) {
    let mut strings = Strings::default();
    let mut tag_sets = TagSets::default();
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    let mut fits = true;
    let ids = &mut scratch.ids;
    ids.clear();
    ids.extend(rows.iter().map(|f| {
        let r = f.record;
        min = min.min(r.end_ms);
        max = max.max(r.end_ms);
        fits &= r.src.is_ipv4()
            && r.dst.is_ipv4()
            && r.end_ms
                .checked_sub(r.start_ms)
                .is_some_and(|d| u32::try_from(d).is_ok())
            && [r.packets, r.bytes, r.rev_packets, r.rev_bytes, r.generation]
                .iter()
                .all(|&n| u32::try_from(n).is_ok());
        Ids {
            device: strings.shared(&r.device),
            rule: strings.shared(&r.rule),
            src_endpoint: strings.shared(f.src_endpoint),
            dst_endpoint: strings.shared(f.dst_endpoint),
            src_tags: tag_sets.id(f.src_tags),
            dst_tags: tag_sets.id(f.dst_tags),
        }
    }));
    if rows.is_empty() {
        (min, max) = (0, 0);
    }
    let layout = if fits
        && u32::try_from(max.abs_diff(min)).is_ok()
        && strings.list.len() <= 1 << 16
        && tag_sets.list.len() <= 1 << 16
    {
        Layout::Compact
    } else {
        Layout::Wide
    };
    let width = layout.row();
    out.clear();
    out.resize(HEADER + rows.len() * width, 0);
    out[0] = match layout {
        Layout::Wide => VERSION,
        Layout::Compact => COMPACT,
    };
    put(&mut out, 1, &(rows.len() as u32).to_le_bytes());
    put(&mut out, 5, &min.to_le_bytes());
    put(&mut out, 13, &max.to_le_bytes());
    let body = out[HEADER..].chunks_exact_mut(width);
    for ((f, ids), row) in rows.iter().zip(ids.iter()).zip(body) {
        let r = f.record;
        match layout {
            Layout::Wide => {
                put(row, DEVICE, &ids.device.to_le_bytes());
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
                put(row, RULE, &ids.rule.to_le_bytes());
                put(row, GENERATION, &r.generation.to_le_bytes());
                put(row, SRC_ENDPOINT, &ids.src_endpoint.to_le_bytes());
                put(row, DST_ENDPOINT, &ids.dst_endpoint.to_le_bytes());
                put(row, SRC_TAGS, &ids.src_tags.to_le_bytes());
                put(row, DST_TAGS, &ids.dst_tags.to_le_bytes());
            }
            Layout::Compact => {
                use compact as c;
                // Every value was checked to fit above: the casts keep them whole.
                put(row, c::DEVICE, &(ids.device as u16).to_le_bytes());
                row[c::KIND] = kind_code(r.kind);
                row[c::REASON] = reason_code(r.end_reason);
                row[c::VERDICT] = u8::from(r.verdict == Verdict::Denied);
                row[c::PROTOCOL] = r.protocol;
                put(row, c::SRC_PORT, &r.src_port.to_le_bytes());
                put(row, c::DST_PORT, &r.dst_port.to_le_bytes());
                put_ip(row, c::SRC, r.src);
                put_ip(row, c::DST, r.dst);
                let end = r.end_ms.abs_diff(min) as u32;
                let duration = r.end_ms.abs_diff(r.start_ms) as u32;
                put(row, c::END, &end.to_le_bytes());
                put(row, c::DURATION, &duration.to_le_bytes());
                put(row, c::PACKETS, &(r.packets as u32).to_le_bytes());
                put(row, c::BYTES, &(r.bytes as u32).to_le_bytes());
                put(row, c::REV_PACKETS, &(r.rev_packets as u32).to_le_bytes());
                put(row, c::REV_BYTES, &(r.rev_bytes as u32).to_le_bytes());
                put(row, c::RULE, &(ids.rule as u16).to_le_bytes());
                put(row, c::GENERATION, &(r.generation as u32).to_le_bytes());
                put(
                    row,
                    c::SRC_ENDPOINT,
                    &(ids.src_endpoint as u16).to_le_bytes(),
                );
                put(
                    row,
                    c::DST_ENDPOINT,
                    &(ids.dst_endpoint as u16).to_le_bytes(),
                );
                put(row, c::SRC_TAGS, &(ids.src_tags as u16).to_le_bytes());
                put(row, c::DST_TAGS, &(ids.dst_tags as u16).to_le_bytes());
            }
        }
    }
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
    layout: Layout,
    /// The earliest report time (compact rows count from it).
    min_end: i64,
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
    /// Checks a (version 2 or 3) block through and through.
    pub(crate) fn new_checked(bytes: &'a [u8]) -> Result<Block<'a>, String> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.u8()?;
        let layout = match version {
            VERSION => Layout::Wide,
            COMPACT => Layout::Compact,
            _ => {
                return Err(format!(
                    "block version {version}, expected {VERSION} or {COMPACT}"
                ));
            }
        };
        let width = layout.row();
        let count = r.u32()? as usize;
        let (min_end, _max_end) = (r.i64()?, r.i64()?);
        let rows = count
            .checked_mul(width)
            .and_then(|len| r.take(len).ok())
            .ok_or_else(|| {
                format!(
                    "{count} flows of {width} bytes do not fit in {} bytes",
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
        for (i, row) in rows.chunks_exact(width).enumerate() {
            let bad = |what: &str| format!("flow {i}: {what}");
            let row = RowRef {
                bytes: row,
                layout,
                min_end,
            };
            for id in [
                row.device(),
                row.rule(),
                row.src_endpoint(),
                row.dst_endpoint(),
            ] {
                if id as usize >= n {
                    return Err(bad(&format!("string {id} of {n}")));
                }
            }
            for id in [row.src_tags(), row.dst_tags()] {
                if id as usize >= m {
                    return Err(bad(&format!("tag set {id} of {m}")));
                }
            }
            let (kind, reason, verdict) = match layout {
                Layout::Wide => (row.bytes[KIND], row.bytes[REASON], row.bytes[VERDICT]),
                Layout::Compact => (
                    row.bytes[compact::KIND],
                    row.bytes[compact::REASON],
                    row.bytes[compact::VERDICT],
                ),
            };
            if kind_of(kind).is_none() {
                return Err(bad(&format!("record kind {kind}")));
            }
            if reason_of(reason).is_none() {
                return Err(bad(&format!("end reason {reason}")));
            }
            if row.families() > 3 || verdict > 1 {
                return Err(bad(&format!(
                    "address families {} / verdict {verdict}",
                    row.families()
                )));
            }
        }
        Ok(Block {
            strings,
            sets,
            set_ids,
            rows,
            layout,
            min_end,
        })
    }

    /// The rows.
    pub(crate) fn rows(&self) -> impl ExactSizeIterator<Item = RowRef<'a>> + use<'a> {
        let (layout, min_end) = (self.layout, self.min_end);
        self.rows
            .chunks_exact(layout.row())
            .map(move |bytes| RowRef {
                bytes,
                layout,
                min_end,
            })
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

fn v4_at(row: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(row[at], row[at + 1], row[at + 2], row[at + 3])
}

fn u16_at(row: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([row[at], row[at + 1]])
}

/// One row of a checked block.
#[derive(Clone, Copy)]
pub(crate) struct RowRef<'a> {
    bytes: &'a [u8],
    layout: Layout,
    min_end: i64,
}

/// Reads a field that is `$wide` wide and `$compact` compact, as the wide type.
macro_rules! field {
    ($row:expr, $at:ident, u32, u16) => {
        match $row.layout {
            Layout::Wide => u32_at($row.bytes, $at),
            Layout::Compact => u32::from(u16_at($row.bytes, compact::$at)),
        }
    };
    ($row:expr, $at:ident, u64, u32) => {
        match $row.layout {
            Layout::Wide => u64_at($row.bytes, $at),
            Layout::Compact => u64::from(u32_at($row.bytes, compact::$at)),
        }
    };
    ($row:expr, $at:ident, u16, u16) => {
        match $row.layout {
            Layout::Wide => u16_at($row.bytes, $at),
            Layout::Compact => u16_at($row.bytes, compact::$at),
        }
    };
    ($row:expr, $at:ident, u8, u8) => {
        match $row.layout {
            Layout::Wide => $row.bytes[$at],
            Layout::Compact => $row.bytes[compact::$at],
        }
    };
}

impl<'a> RowRef<'a> {
    pub(crate) fn device(self) -> u32 {
        field!(self, DEVICE, u32, u16)
    }
    pub(crate) fn kind(self) -> RecordKind {
        kind_of(field!(self, KIND, u8, u8)).unwrap_or(RecordKind::End)
    }
    pub(crate) fn end_reason(self) -> Option<EndReason> {
        reason_of(field!(self, REASON, u8, u8)).flatten()
    }
    pub(crate) fn protocol(self) -> u8 {
        field!(self, PROTOCOL, u8, u8)
    }
    pub(crate) fn src_port(self) -> u16 {
        field!(self, SRC_PORT, u16, u16)
    }
    pub(crate) fn dst_port(self) -> u16 {
        field!(self, DST_PORT, u16, u16)
    }
    fn ip(self, wide: usize, narrow: usize, v6: bool) -> IpAddr {
        match self.layout {
            Layout::Wide if v6 => {
                let mut b = [0u8; 16];
                b.copy_from_slice(&self.bytes[wide..wide + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            }
            Layout::Wide => IpAddr::V4(v4_at(self.bytes, wide)),
            Layout::Compact => IpAddr::V4(v4_at(self.bytes, narrow)),
        }
    }
    pub(crate) fn src(self) -> IpAddr {
        self.ip(SRC, compact::SRC, self.families() & 1 != 0)
    }
    pub(crate) fn dst(self) -> IpAddr {
        self.ip(DST, compact::DST, self.families() & 2 != 0)
    }
    /// Both addresses as the wide layout stores them (16 bytes each, IPv4 zero-padded):
    /// what identifies a session, whichever layout its rows are in.
    pub(crate) fn addresses(self) -> [u8; 32] {
        let mut a = [0u8; 32];
        match self.layout {
            Layout::Wide => a.copy_from_slice(&self.bytes[SRC..DST + 16]),
            Layout::Compact => {
                a[..4].copy_from_slice(&self.bytes[compact::SRC..compact::SRC + 4]);
                a[16..20].copy_from_slice(&self.bytes[compact::DST..compact::DST + 4]);
            }
        }
        a
    }
    pub(crate) fn families(self) -> u8 {
        match self.layout {
            Layout::Wide => self.bytes[FAMILY],
            Layout::Compact => 0,
        }
    }
    pub(crate) fn start_ms(self) -> i64 {
        match self.layout {
            Layout::Wide => u64_at(self.bytes, START) as i64,
            Layout::Compact => self
                .end_ms()
                .wrapping_sub(i64::from(u32_at(self.bytes, compact::DURATION))),
        }
    }
    pub(crate) fn end_ms(self) -> i64 {
        match self.layout {
            Layout::Wide => u64_at(self.bytes, END) as i64,
            Layout::Compact => self
                .min_end
                .wrapping_add(i64::from(u32_at(self.bytes, compact::END))),
        }
    }
    pub(crate) fn packets(self) -> u64 {
        field!(self, PACKETS, u64, u32)
    }
    pub(crate) fn bytes(self) -> u64 {
        field!(self, BYTES, u64, u32)
    }
    pub(crate) fn rev_packets(self) -> u64 {
        field!(self, REV_PACKETS, u64, u32)
    }
    pub(crate) fn rev_bytes(self) -> u64 {
        field!(self, REV_BYTES, u64, u32)
    }
    pub(crate) fn verdict(self) -> Verdict {
        if field!(self, VERDICT, u8, u8) == 1 {
            Verdict::Denied
        } else {
            Verdict::Allowed
        }
    }
    pub(crate) fn rule(self) -> u32 {
        field!(self, RULE, u32, u16)
    }
    pub(crate) fn generation(self) -> u64 {
        field!(self, GENERATION, u64, u32)
    }
    pub(crate) fn src_endpoint(self) -> u32 {
        field!(self, SRC_ENDPOINT, u32, u16)
    }
    pub(crate) fn dst_endpoint(self) -> u32 {
        field!(self, DST_ENDPOINT, u32, u16)
    }
    pub(crate) fn src_tags(self) -> u32 {
        field!(self, SRC_TAGS, u32, u16)
    }
    pub(crate) fn dst_tags(self) -> u32 {
        field!(self, DST_TAGS, u32, u16)
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

    /// A counter that fits a compact row 49 times in 50.
    fn counter() -> impl Strategy<Value = u64> {
        prop_oneof![49 => 0..=u64::from(u32::MAX), 1 => any::<u64>()]
    }

    pub(crate) fn arb_flow() -> impl Strategy<Value = Flow> {
        (
            (
                prop::sample::select(vec!["dpu-1", "dpu-2", "10.0.0.9"]),
                0u8..3,
                any::<[u8; 4]>(),
                any::<[u8; 16]>(),
                // Mostly IPv4 and small counters, so that blocks are often compact.
                prop::bool::weighted(0.05),
                any::<u8>(),
                any::<(u16, u16)>(),
                0i64..100_000,
                0i64..10_000,
            ),
            (
                (counter(), counter(), counter(), counter()),
                any::<bool>(),
                prop::sample::select(vec!["", "shop/0020", "admin/0010"]),
                counter(),
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

    #[test]
    fn compact_rows_hold_values_to_their_limits_and_wider_ones_go_wide() {
        use proptest::strategy::ValueTree;
        let runner = &mut proptest::test_runner::TestRunner::deterministic();
        let mut base = arb_flow().new_tree(runner).unwrap().current();
        base.record.src = "10.0.0.1".parse().unwrap();
        base.record.dst = "10.0.0.2".parse().unwrap();
        let with = |change: &dyn Fn(&mut FlowRecord)| {
            let mut f = base.clone();
            f.record.packets = 1;
            f.record.bytes = 1;
            f.record.rev_packets = 1;
            f.record.rev_bytes = 1;
            f.record.generation = 1;
            change(&mut f.record);
            f
        };
        let edge = vec![
            with(&|r| {
                r.bytes = u64::from(u32::MAX);
                r.generation = u64::from(u32::MAX);
                r.start_ms = r.end_ms - i64::from(u32::MAX);
            }),
            with(&|r| {
                r.end_ms += i64::from(u32::MAX);
                r.start_ms = r.end_ms;
            }),
        ];
        let (_, bytes) = encode(&edge);
        assert_eq!(bytes[0], COMPACT);
        assert_eq!(decode(&bytes).unwrap(), edge);
        let wide_row = |f: Flow| {
            let flows = vec![with(&|_| {}), f];
            let (_, bytes) = encode(&flows);
            assert_eq!(decode(&bytes).unwrap(), flows);
            bytes[0]
        };
        assert_eq!(wide_row(with(&|r| r.rev_packets = 1 << 32)), VERSION);
        assert_eq!(wide_row(with(&|r| r.generation = 1 << 32)), VERSION);
        assert_eq!(wide_row(with(&|r| r.start_ms = r.end_ms + 1)), VERSION);
        assert_eq!(
            wide_row(with(&|r| r.start_ms = r.end_ms - (1 << 32))),
            VERSION
        );
        assert_eq!(
            wide_row(with(&|r| {
                r.end_ms += 1 << 32;
                r.start_ms = r.end_ms;
            })),
            VERSION
        );
        assert_eq!(wide_row(with(&|r| r.dst = "::1".parse().unwrap())), VERSION);
        // Less than half the bytes per row.
        let many: Vec<Flow> = (0..100).map(|_| with(&|_| {})).collect();
        let mut wide = many.clone();
        wide[0].record.packets = u64::MAX;
        assert!(2 * encode(&many).1.len() < encode(&wide).1.len());
    }

    proptest! {
        #[test]
        fn blocks_round_trip(flows in prop::collection::vec(arb_flow(), 0..40)) {
            let (_, bytes) = encode(&flows);
            prop_assert_eq!(&decode(&bytes).unwrap(), &flows);
            // Compact exactly when every flow fits (these blocks have few strings).
            let fits = |f: &Flow| {
                let r = &f.record;
                r.src.is_ipv4() && r.dst.is_ipv4()
                    && [r.packets, r.bytes, r.rev_packets, r.rev_bytes, r.generation]
                        .iter()
                        .all(|&n| n <= u64::from(u32::MAX))
            };
            let compact = flows.iter().all(fits);
            prop_assert_eq!(bytes[0], if compact { COMPACT } else { VERSION });

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
