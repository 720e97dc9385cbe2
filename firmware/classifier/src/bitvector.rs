//! The base of an engine built from a small rule list: a bit-vector classifier.
//!
//! The built rules are numbered in priority order. Every field of a key falls into one of a
//! few equivalence classes, and each class has a **bitmap** of the rules whose predicate on
//! that field it satisfies; a key's first match is the lowest bit set in the AND of its
//! classes' bitmaps. The fields are: tag and protocol together (a table per tag, indexed by
//! protocol), source and destination port (the elementary intervals between rule range
//! ends, found in two table steps), and every byte of both addresses (a
//! 256-entry table each: a prefix matches exactly when each of its bytes matches the
//! corresponding part of the prefix). A lookup is a few table loads, no hashing and no
//! data-dependent branch until the AND, which stops at the first non-zero chunk.
//!
//! Bitmaps are stored in chunks of 512 rules (a cache line), and each has a summary word
//! (bit `w` set when its word `w`, rules `64w..64w+63`, is not all zero), so the AND first
//! combines the summaries and then only visits the words that every field has bits in, in
//! rule order: a word of each field at a time until a flagged word has no common bit, then
//! a whole chunk at a time (acl-like lists of specific rules match in the first flagged
//! word; firewall-like lists of wide rules flag many words in vain, where one straight-line
//! AND per chunk beats a branch per word). Identical bitmaps are stored once.
//!
//! The base is static: a delete clears the rule's bit in every tag-and-protocol bitmap (the
//! summaries may stay set, which only costs a look at a word), and inserts go to the
//! engine's tuple-space tables. Memory is (classes) × (rules / 8) bytes, so the engine only
//! builds a base for lists of up to [`MAX_RULES`] rules.

use std::collections::HashMap;

use crate::engine::{ANY_LOCAL, Addr, Key, Rule};

/// The largest rule list that gets a bit-vector base. At ClassBench's 10k rules the AND
/// visits enough chunks that the tuple space is as fast (acl1, ipc1) or faster (fw1).
pub(crate) const MAX_RULES: usize = 4 * 1024;

// A summary word has a bit per 64-rule word.
const _: () = assert!(MAX_RULES <= 64 * 64);

/// The largest address, in bytes, for which a base is built: a byte is a field, and the
/// AND over 32 address bytes of IPv6 costs more than the tuple space saves.
pub(crate) const MAX_ADDR_BYTES: usize = 4;

/// Fields of a key: tag and protocol, two ports, and the address bytes.
const FIELDS: usize = 3 + 2 * MAX_ADDR_BYTES;

/// Elementary intervals of a 16-bit field (ranges split at every rule's range ends), found
/// in two steps of a table: the value's high byte picks a block of 256 entries and the
/// interval the block starts in, the low byte an entry of the block, which says how many
/// intervals further the value is. Blocks with the same pattern (all those with no range
/// end inside, for one) are stored once.
#[derive(Debug, Default)]
struct Intervals {
    /// Per high byte: the block's index << 16 | the interval at the block's start.
    top: Vec<u32>,
    blocks: Vec<u8>,
    /// Per interval, its bitmap's number.
    bitmaps: Vec<u32>,
}

impl Intervals {
    /// Builds the lookup from the intervals' starts (ascending, the first 0).
    fn new(starts: &[u16], bitmaps: Vec<u32>) -> Self {
        let mut top = Vec::with_capacity(256);
        let mut blocks: Vec<u8> = Vec::new();
        let mut patterns: HashMap<[u8; 256], u32> = HashMap::new();
        let mut interval = 0;
        for hi in 0..256usize {
            let mut base = None;
            let mut pattern = [0u8; 256];
            for (lo, entry) in pattern.iter_mut().enumerate() {
                let value = (hi << 8 | lo) as u16;
                while interval + 1 < starts.len() && starts[interval + 1] <= value {
                    interval += 1;
                }
                // At most 256 intervals meet a block: the offsets fit a byte.
                *entry = (interval - *base.get_or_insert(interval)) as u8;
            }
            let base = base.unwrap_or(interval);
            let block = *patterns.entry(pattern).or_insert_with(|| {
                blocks.extend_from_slice(&pattern);
                (blocks.len() / 256 - 1) as u32
            });
            top.push(block << 16 | base as u32);
        }
        Self {
            top,
            blocks,
            bitmaps,
        }
    }

    fn memory_bytes(&self) -> usize {
        self.top.capacity() * 4 + self.blocks.capacity() + self.bitmaps.capacity() * 4
    }

    /// The bitmap of the interval holding `x`.
    #[inline(always)]
    fn bitmap(&self, x: u16) -> u32 {
        let top = self.top[usize::from(x >> 8)];
        let block = (top >> 16) as usize * 256;
        let interval =
            (top & 0xffff) as usize + usize::from(self.blocks[block + usize::from(x & 0xff)]);
        self.bitmaps[interval]
    }
}

/// Words of a chunk: the AND goes a chunk (512 rules) at a time.
const CHUNK: usize = 8;

/// 512 rules' bits of one bitmap, aligned so that a chunk is one cache line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(align(64))]
struct Chunk([u64; CHUNK]);

/// Builds bitmaps and stores each distinct one once.
struct Interner {
    /// Chunks per bitmap.
    chunks: usize,
    /// Per bitmap: bit `w` set when word `w` is not all zero.
    summaries: Vec<u64>,
    store: Vec<Chunk>,
    seen: HashMap<Vec<Chunk>, u32>,
}

impl Interner {
    fn new(rules: usize) -> Self {
        Self {
            chunks: rules.div_ceil(64 * CHUNK).max(1),
            summaries: Vec::new(),
            store: Vec::new(),
            seen: HashMap::new(),
        }
    }

    fn empty(&self) -> Vec<Chunk> {
        vec![Chunk::default(); self.chunks]
    }

    /// The number of `bitmap`'s copy in the store.
    fn intern(&mut self, bitmap: &[Chunk]) -> u32 {
        if let Some(&id) = self.seen.get(bitmap) {
            return id;
        }
        let id = self.summaries.len() as u32;
        let summary = bitmap
            .iter()
            .flat_map(|c| c.0)
            .enumerate()
            .filter(|&(_, w)| w != 0)
            .fold(0u64, |s, (w, _)| s | 1 << w);
        self.summaries.push(summary);
        self.store.extend_from_slice(bitmap);
        self.seen.insert(bitmap.to_vec(), id);
        id
    }
}

fn set(bitmap: &mut [Chunk], rule: usize) {
    bitmap[rule / 512].0[rule / 64 % CHUNK] |= 1 << (rule % 64);
}

/// The bit-vector base: see the module documentation.
#[derive(Debug)]
pub(crate) struct BitVectors<A: Addr> {
    /// Chunks per bitmap.
    chunks: usize,
    /// Per bitmap: which of its words are not all zero (at most 64 words: see
    /// [`MAX_RULES`]).
    summaries: Vec<u64>,
    /// Every bitmap, concatenated: bitmap `b` is `chunks` chunks from `b * chunks`.
    store: Vec<Chunk>,
    /// Per tag, the start of its block of 256 protocol entries in `protocols` (0: the block
    /// of tags no rule has, all pointing at the empty bitmap).
    tags: Box<[u32; 256]>,
    /// Per tag block and protocol, the number of the bitmap.
    protocols: Vec<u32>,
    /// Every distinct tag-and-protocol bitmap, for deletes.
    protocol_bitmaps: Vec<u32>,
    sport: Intervals,
    dport: Intervals,
    /// Per address byte, source bytes then destination bytes, most significant first: the
    /// number of the bitmap of each byte value.
    bytes: Vec<[u32; 256]>,
    /// Per rule number: `priority << 32 | id`.
    ranks: Vec<u64>,
    /// Per rule number: its local-endpoint set, or [`ANY_LOCAL`].
    locals: Vec<u32>,
    _addr: std::marker::PhantomData<A>,
}

impl<A: Addr> BitVectors<A> {
    /// Whether a rule list of this size gets a base.
    pub(crate) fn fits(rules: usize) -> bool {
        usize::from(A::BITS / 8) <= MAX_ADDR_BYTES && (1..=MAX_RULES).contains(&rules)
    }

    /// Builds the base over `rules`, which must be valid (checked by the engine) and sorted
    /// by rank; rule number `i` is `rules[i]`.
    pub(crate) fn build(rules: &[(Rule<A>, u64)]) -> Self {
        let mut store = Interner::new(rules.len());
        let empty = store.empty();
        let zero = store.intern(&empty);

        // Tag and protocol.
        let mut tags = Box::new([0u32; 256]);
        let mut protocols = vec![zero; 256];
        let mut protocol_bitmaps = Vec::new();
        let mut seen_tags: Vec<u8> = rules.iter().map(|(r, _)| r.tag).collect();
        seen_tags.sort_unstable();
        seen_tags.dedup();
        for tag in seen_tags {
            let mut any = empty.clone();
            for (i, (r, _)) in rules.iter().enumerate() {
                if r.tag == tag && r.proto.1 == 0 {
                    set(&mut any, i);
                }
            }
            let mut per_proto = vec![any; 256];
            for (i, (r, _)) in rules.iter().enumerate() {
                if r.tag == tag && r.proto.1 != 0 {
                    for (p, bitmap) in per_proto.iter_mut().enumerate() {
                        if p as u8 & r.proto.1 == r.proto.0 & r.proto.1 {
                            set(bitmap, i);
                        }
                    }
                }
            }
            tags[usize::from(tag)] = protocols.len() as u32;
            for bitmap in &per_proto {
                let at = store.intern(bitmap);
                protocols.push(at);
                protocol_bitmaps.push(at);
            }
        }
        protocol_bitmaps.sort_unstable();
        protocol_bitmaps.dedup();

        // Ports.
        let sport = Self::intervals(&mut store, rules, |r| r.sport);
        let dport = Self::intervals(&mut store, rules, |r| r.dport);

        // Address bytes.
        let width = usize::from(A::BITS / 8);
        let mut bytes = Vec::with_capacity(2 * width);
        for side in 0..2 {
            for b in 0..width {
                let prefix = |r: &Rule<A>| if side == 0 { r.src } else { r.dst };
                let mut any = empty.clone();
                for (i, (r, _)) in rules.iter().enumerate() {
                    if byte_prefix(prefix(r), b).1 == 0 {
                        set(&mut any, i);
                    }
                }
                let mut per_value = vec![any; 256];
                for (i, (r, _)) in rules.iter().enumerate() {
                    let (value, len) = byte_prefix(prefix(r), b);
                    if len > 0 {
                        let first = usize::from(value);
                        let count = 1usize << (8 - len);
                        for bitmap in &mut per_value[first..first + count] {
                            set(bitmap, i);
                        }
                    }
                }
                let mut table = [zero; 256];
                for (slot, bitmap) in table.iter_mut().zip(&per_value) {
                    *slot = store.intern(bitmap);
                }
                bytes.push(table);
            }
        }

        let (mut summaries, mut store) = (store.summaries, store.store);
        summaries.shrink_to_fit();
        store.shrink_to_fit();
        Self {
            chunks: rules.len().div_ceil(64 * CHUNK).max(1),
            summaries,
            store,
            tags,
            protocols,
            protocol_bitmaps,
            sport,
            dport,
            bytes,
            ranks: rules.iter().map(|(_, rank)| *rank).collect(),
            locals: rules.iter().map(|(r, _)| r.locals).collect(),
            _addr: std::marker::PhantomData,
        }
    }

    /// The elementary intervals of a port field, swept once from 0 up.
    fn intervals(
        store: &mut Interner,
        rules: &[(Rule<A>, u64)],
        range: impl Fn(&Rule<A>) -> (u16, u16),
    ) -> Intervals {
        // (position, rule, starts): a rule enters its range at `lo` and leaves after `hi`.
        let mut events: Vec<(u32, usize, bool)> = Vec::with_capacity(2 * rules.len());
        for (i, (r, _)) in rules.iter().enumerate() {
            let (lo, hi) = range(r);
            events.push((u32::from(lo), i, true));
            events.push((u32::from(hi) + 1, i, false));
        }
        events.sort_unstable();
        let mut current = store.empty();
        let (mut starts, mut bitmaps) = (Vec::new(), Vec::new());
        let mut e = 0;
        let mut at = 0u32;
        while at <= u32::from(u16::MAX) {
            while e < events.len() && events[e].0 == at {
                let (_, i, starts) = events[e];
                if starts {
                    set(&mut current, i);
                } else {
                    current[i / 512].0[i / 64 % CHUNK] &= !(1 << (i % 64));
                }
                e += 1;
            }
            starts.push(at as u16);
            bitmaps.push(store.intern(&current));
            match events.get(e) {
                Some(&(next, _, _)) => at = next,
                None => break,
            }
        }
        Intervals::new(&starts, bitmaps)
    }

    /// Deletes rule number `rule`: no key matches it any more.
    pub(crate) fn remove(&mut self, rule: u32) {
        let rule = rule as usize;
        for &b in &self.protocol_bitmaps {
            self.store[b as usize * self.chunks + rule / 512].0[rule / 64 % CHUNK] &=
                !(1 << (rule % 64));
        }
    }

    /// The best rule matching `k` among rule numbers `first..`, as its rank.
    #[inline]
    pub(crate) fn lookup(&self, k: &Key<A>, first: usize, locals: &[Vec<u64>]) -> Option<u64> {
        let width = usize::from(A::BITS / 8);
        let mut at = [0u32; FIELDS];
        at[0] = self.protocols[self.tags[usize::from(k.tag)] as usize + usize::from(k.proto)];
        at[1] = self.sport.bitmap(k.sport);
        at[2] = self.dport.bitmap(k.dport);
        for b in 0..width {
            at[3 + b] = self.bytes[b][usize::from(k.src.byte(b))];
            at[3 + width + b] = self.bytes[width + b][usize::from(k.dst.byte(b))];
        }
        let fields = &at[..3 + 2 * width];
        let mut summary = fields
            .iter()
            .fold(!0u64, |acc, &b| acc & self.summaries[b as usize]);
        summary &= u64::MAX.checked_shl((first / 64) as u32).unwrap_or(0);
        // Word by word while the flagged words hold common bits (lists of specific rules:
        // the first flagged word usually matches); after a flagged word without any, a
        // chunk at a time (lists of wide rules flag many words whose fields' bits belong to
        // different rules: one straight-line AND of a chunk beats a branch per word).
        while summary != 0 {
            let w = summary.trailing_zeros() as usize;
            summary &= summary - 1;
            let (c, j) = (w / CHUNK, w % CHUNK);
            let hits = fields.iter().fold(!0u64, |acc, &b| {
                acc & self.store[b as usize * self.chunks + c].0[j]
            });
            if hits == 0 {
                break;
            }
            if let Some(rank) = self.first_hit(w, hits, first, k, locals) {
                return Some(rank);
            }
        }
        while summary != 0 {
            // A word with common bits is flagged, so the AND needs no look at the flags
            // (words seen word by word again give what they gave: nothing).
            let c = summary.trailing_zeros() as usize / CHUNK;
            summary &= !(0xffu64 << (c * CHUNK));
            let mut and = [!0u64; CHUNK];
            for &b in fields {
                let chunk = &self.store[b as usize * self.chunks + c].0;
                for (a, w) in and.iter_mut().zip(chunk) {
                    *a &= w;
                }
            }
            for (j, &hits) in and.iter().enumerate() {
                if hits != 0
                    && let Some(rank) = self.first_hit(c * CHUNK + j, hits, first, k, locals)
                {
                    return Some(rank);
                }
            }
        }
        None
    }

    /// The first rule of word `w` among `hits` (its rules every field matches), from rule
    /// `first` on, whose local endpoint set holds the key's: its rank.
    #[inline]
    fn first_hit(
        &self,
        w: usize,
        mut hits: u64,
        first: usize,
        k: &Key<A>,
        locals: &[Vec<u64>],
    ) -> Option<u64> {
        if first > w * 64 {
            hits &= u64::MAX.checked_shl((first - w * 64) as u32).unwrap_or(0);
        }
        while hits != 0 {
            let rule = w * 64 + hits.trailing_zeros() as usize;
            hits &= hits - 1;
            let set = self.locals[rule];
            if set == ANY_LOCAL
                || locals[set as usize]
                    .get(k.local as usize / 64)
                    .is_some_and(|w| w & (1 << (k.local % 64)) != 0)
            {
                return Some(self.ranks[rule]);
            }
        }
        None
    }

    /// The first rule number whose rank is at least `rank`.
    pub(crate) fn first_from(&self, rank: u64) -> usize {
        self.ranks.partition_point(|&r| r < rank)
    }

    /// Heap memory in bytes.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.summaries.capacity() * 8
            + self.store.capacity() * std::mem::size_of::<Chunk>()
            + 256 * 4
            + self.protocols.capacity() * 4
            + self.protocol_bitmaps.capacity() * 4
            + self.sport.memory_bytes()
            + self.dport.memory_bytes()
            + self.bytes.capacity() * 256 * 4
            + self.ranks.capacity() * 8
            + self.locals.capacity() * 4
    }
}

/// Byte `b` (0 = most significant) of a prefix: its value and how many of its leading bits
/// the prefix fixes (0 to 8).
fn byte_prefix<A: Addr>((addr, len): (A, u8), b: usize) -> (u8, u8) {
    let fixed = usize::from(len).saturating_sub(8 * b).min(8) as u8;
    (addr.byte(b), fixed)
}
