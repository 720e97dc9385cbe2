//! The tuple-space engine: first-match classification of keys (tag, source, destination,
//! ports, protocol) against prioritized rules, with single-rule insert and delete.
//!
//! Rules are grouped into **tables** by the *class* of their two prefix lengths (each length
//! rounded down to one of a few class boundaries, e.g. 0/16/32 for IPv4) and by whether their
//! protocol and destination port are exact. Inside a table, a hash map goes from the key's
//! fields masked to the table's lengths (plus tag and, where the table's shape says so,
//! protocol and destination port) to the table's rules with those bits, sorted by priority.
//! Firewall rules often share remote prefixes and differ by port: hashing an exact port
//! keeps their buckets small. Every rule sits in exactly one bucket: no
//! replication, so memory and build time are linear and an update touches one bucket.
//!
//! A lookup probes the tables in order of the best (lowest) priority they hold and stops as
//! soon as the next table cannot beat the match found so far; inside a bucket it stops at
//! the first rule that matches on every field (they are sorted), or at the first whose
//! priority is no better than the current match. Lower priority value = earlier rule =
//! wins.
//!
//! A list given to [`Engine::build_with`] that is short and IPv4 goes instead into a
//! bit-vector base (`bitvector`): no table probes at all, a few table loads and an AND of
//! bitmaps. The tuple-space tables then hold only the rules inserted after the build; a
//! lookup takes the base's answer as the match to beat.

use std::collections::HashMap;
use std::hash::Hash;

use crate::bitvector::BitVectors;

/// An address width the engine works on (IPv4 as `u32`, IPv6 as `u128`).
pub trait Addr: Copy + Eq + Hash + Ord + std::fmt::Debug + Default + Send + Sync + 'static {
    /// Bits in the address.
    const BITS: u8;
    /// Class boundaries for prefix lengths, ascending, starting at 0.
    const CLASSES: &'static [u8];
    /// The mask of a prefix of `len` bits.
    fn mask(len: u8) -> Self;
    /// Bitwise and.
    fn and(self, other: Self) -> Self;
    /// The address folded to 64 bits (exact for IPv4).
    fn word(self) -> u64;
    /// How many leading bits `self` and `other` share.
    fn common_prefix(self, other: Self) -> u32;
    /// Byte `i` of the address, 0 being the most significant.
    fn byte(self, i: usize) -> u8;
}

impl Addr for u32 {
    const BITS: u8 = 32;
    const CLASSES: &'static [u8] = &[0, 16, 32];

    fn mask(len: u8) -> Self {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len.min(32)))
        }
    }

    fn and(self, other: Self) -> Self {
        self & other
    }

    fn word(self) -> u64 {
        u64::from(self)
    }

    fn common_prefix(self, other: Self) -> u32 {
        (self ^ other).leading_zeros()
    }

    fn byte(self, i: usize) -> u8 {
        (self >> (24 - 8 * i)) as u8
    }
}

impl Addr for u128 {
    const BITS: u8 = 128;
    const CLASSES: &'static [u8] = &[0, 32, 48, 64, 128];

    fn mask(len: u8) -> Self {
        if len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(len.min(128)))
        }
    }

    fn and(self, other: Self) -> Self {
        self & other
    }

    fn word(self) -> u64 {
        (self as u64) ^ ((self >> 64) as u64).rotate_left(31)
    }

    fn common_prefix(self, other: Self) -> u32 {
        (self ^ other).leading_zeros()
    }

    fn byte(self, i: usize) -> u8 {
        (self >> (120 - 8 * i)) as u8
    }
}

/// A rule of the engine: a conjunction of one predicate per field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule<A: Addr> {
    /// Exact tag (the dataplane uses it for the direction; ClassBench rules use 0).
    pub tag: u8,
    /// Source prefix (address with host bits clear) and length.
    pub src: (A, u8),
    /// Destination prefix and length.
    pub dst: (A, u8),
    /// Source port range, inclusive.
    pub sport: (u16, u16),
    /// Destination port range, inclusive.
    pub dport: (u16, u16),
    /// Protocol value and mask: matches when `proto & mask == value & mask`.
    pub proto: (u8, u8),
    /// The local endpoints the rule applies to: an index into the endpoint sets given to
    /// [`Options::local_sets`], or [`ANY_LOCAL`].
    pub locals: u32,
}

/// A rule's `locals` when it applies whatever the key's `local` is.
pub const ANY_LOCAL: u32 = u32::MAX;

/// What a lookup is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Key<A: Addr> {
    /// Tag.
    pub tag: u8,
    /// Source address.
    pub src: A,
    /// Destination address.
    pub dst: A,
    /// Source port (0 for protocols without ports).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Protocol.
    pub proto: u8,
    /// The local endpoint the key is about, for rules restricted to endpoint sets.
    pub local: u32,
}

/// A match: the rule's priority and the caller's id for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Match {
    /// Priority (lower wins).
    pub priority: u32,
    /// The caller's id.
    pub id: u32,
}

/// A compact rule as stored in a bucket: everything a match check needs, in one place.
#[derive(Clone, Copy, Debug, Default)]
struct Candidate<A: Addr> {
    src: A,
    dst: A,
    sport: (u16, u16),
    dport: (u16, u16),
    src_len: u8,
    dst_len: u8,
    proto: u8,
    proto_mask: u8,
    locals: u32,
    /// `priority << 32 | id`: one number orders candidates, ties on priority going to the
    /// lower id, so the answer never depends on table or bucket order.
    rank: u64,
}

#[inline(always)]
fn rank(priority: u32, id: u32) -> u64 {
    u64::from(priority) << 32 | u64::from(id)
}

impl<A: Addr> Candidate<A> {
    #[inline(always)]
    fn matches(&self, k: &Key<A>, locals: &[Vec<u64>]) -> bool {
        k.src.common_prefix(self.src) >= u32::from(self.src_len)
            && k.dst.common_prefix(self.dst) >= u32::from(self.dst_len)
            && self.dport.0 <= k.dport
            && k.dport <= self.dport.1
            && self.sport.0 <= k.sport
            && k.sport <= self.sport.1
            && k.proto & self.proto_mask == self.proto
            && (self.locals == ANY_LOCAL || {
                let set = &locals[self.locals as usize];
                set.get(k.local as usize / 64)
                    .is_some_and(|w| w & (1 << (k.local % 64)) != 0)
            })
    }
}

/// A bucket key: the masked addresses plus tag and, for tables where they are exact,
/// protocol and destination port (`tag << 24 | proto << 16 | dport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct BucketKey<A: Addr> {
    src: A,
    dst: A,
    extra: u32,
}

impl<A: Addr> BucketKey<A> {
    /// Fibonacci hashing of the key's fields: one multiply; tables take the top bits (the
    /// slot index) and a few more (the filter bit). Keys are packet headers, not chosen
    /// adversarially per table; a collision costs a probe, never a wrong answer.
    #[inline(always)]
    fn hash(&self) -> u64 {
        let x = self.src.word().rotate_left(32)
            ^ self.dst.word()
            ^ u64::from(self.extra).rotate_left(17);
        x.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// The shape of a table: class lengths and whether the protocol and the destination port
/// are part of the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Shape {
    src_len: u8,
    dst_len: u8,
    proto_exact: bool,
    dport_exact: bool,
}

/// One hash slot: the bucket key, the bucket's best candidate inline (most buckets hold one
/// rule, so a hit usually costs one cache line), and where the rest of the bucket is.
#[derive(Clone, Copy, Debug)]
struct Slot<A: Addr> {
    key: BucketKey<A>,
    /// Index into `Table::overflow` of the bucket's other candidates, or `NONE`.
    overflow: u32,
    first: Candidate<A>,
}

const NONE: u32 = u32::MAX;
const EMPTY: u64 = u64::MAX;

/// Bits of filter per slot of capacity: a probe first tests one bit picked by the hash, so
/// most probes of a table that does not hold the key stay in a small, cache-resident array.
const FILTER_BITS_PER_SLOT: usize = 4;

struct Table<A: Addr> {
    shape: Shape,
    src_mask: A,
    dst_mask: A,
    /// A lower bound of the ranks in the table (exact after a build; deletes leave it
    /// stale-low, which only costs pruning, never correctness).
    min_rank: u64,
    /// Open addressing with linear probing; an empty slot has `first.rank == EMPTY`.
    slots: Vec<Slot<A>>,
    /// One bit per hash value (modulo its length) of every occupied slot's key.
    filter: Vec<u64>,
    /// How many occupied slots set each filter bit (saturating: a bit whose count reached
    /// the maximum stays set for good, which is safe).
    filter_counts: Vec<u8>,
    /// Candidates beyond the first of each bucket, sorted by priority.
    overflow: Vec<Vec<Candidate<A>>>,
    free_overflow: Vec<u32>,
    buckets: usize,
    rules: usize,
}

impl<A: Addr> Table<A> {
    fn new(shape: Shape, capacity: usize) -> Self {
        let slots = capacity.next_power_of_two().max(8);
        let empty = Slot {
            key: BucketKey::default(),
            overflow: NONE,
            first: Candidate {
                rank: EMPTY,
                ..Candidate::default()
            },
        };
        Self {
            shape,
            src_mask: A::mask(shape.src_len),
            dst_mask: A::mask(shape.dst_len),
            min_rank: u64::MAX,
            slots: vec![empty; slots],
            filter: vec![0; (slots * FILTER_BITS_PER_SLOT).div_ceil(64)],
            filter_counts: vec![0; (slots * FILTER_BITS_PER_SLOT).div_ceil(64) * 64],
            overflow: Vec::new(),
            free_overflow: Vec::new(),
            buckets: 0,
            rules: 0,
        }
    }

    #[inline(always)]
    fn bucket_key(&self, k: &Key<A>) -> BucketKey<A> {
        BucketKey {
            src: k.src.and(self.src_mask),
            dst: k.dst.and(self.dst_mask),
            extra: u32::from(k.tag) << 24
                | if self.shape.proto_exact {
                    u32::from(k.proto) << 16
                } else {
                    0
                }
                | if self.shape.dport_exact {
                    u32::from(k.dport)
                } else {
                    0
                },
        }
    }

    /// The home slot of a hash: its top bits.
    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        (hash >> (64 - self.slots.len().trailing_zeros())) as usize
    }

    /// The filter bit of a hash: its top bits, a few more than the slot index uses.
    #[inline(always)]
    fn filter_index(&self, hash: u64) -> usize {
        (hash >> (64 - (self.filter.len() * 64).trailing_zeros())) as usize
    }

    #[inline(always)]
    fn filter_bit(&self, hash: u64) -> (usize, u64) {
        let b = self.filter_index(hash);
        (b / 64, 1u64 << (b % 64))
    }

    fn filter_add(&mut self, hash: u64) {
        let b = self.filter_index(hash);
        self.filter_counts[b] = self.filter_counts[b].saturating_add(1);
        self.filter[b / 64] |= 1 << (b % 64);
    }

    fn filter_remove(&mut self, hash: u64) {
        let b = self.filter_index(hash);
        match self.filter_counts[b] {
            u8::MAX => {}
            1 => {
                self.filter_counts[b] = 0;
                self.filter[b / 64] &= !(1 << (b % 64));
            }
            n => self.filter_counts[b] = n.saturating_sub(1),
        }
    }

    /// The slot holding `key`, if any.
    #[inline(always)]
    fn find(&self, key: &BucketKey<A>, hash: u64) -> Option<usize> {
        let (word, bit) = self.filter_bit(hash);
        if self.filter[word] & bit == 0 {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash);
        loop {
            let slot = &self.slots[i];
            if slot.first.rank == EMPTY {
                return None;
            }
            if slot.key == *key {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The bucket's candidates in priority order.
    #[inline(always)]
    fn candidates(&self, slot: usize) -> (&Candidate<A>, &[Candidate<A>]) {
        let s = &self.slots[slot];
        let rest: &[Candidate<A>] = if s.overflow == NONE {
            &[]
        } else {
            &self.overflow[s.overflow as usize]
        };
        (&s.first, rest)
    }

    fn grow(&mut self) {
        let old = std::mem::take(&mut self.slots);
        let mut bigger = Table::<A>::new(self.shape, old.len() * 2);
        for slot in old.into_iter().filter(|s| s.first.rank != EMPTY) {
            let mask = bigger.slots.len() - 1;
            let mut i = bigger.home(slot.key.hash());
            while bigger.slots[i].first.rank != EMPTY {
                i = (i + 1) & mask;
            }
            bigger.slots[i] = slot;
        }
        self.slots = bigger.slots;
        self.filter = bigger.filter;
        self.filter_counts = bigger.filter_counts;
        for i in 0..self.slots.len() {
            if self.slots[i].first.rank != EMPTY {
                self.filter_add(self.slots[i].key.hash());
            }
        }
    }

    /// Adds a candidate to its bucket, keeping the bucket sorted.
    fn add(&mut self, key: BucketKey<A>, cand: Candidate<A>) {
        if (self.buckets + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let hash = key.hash();
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash);
        loop {
            if self.slots[i].first.rank == EMPTY {
                self.slots[i] = Slot {
                    key,
                    overflow: NONE,
                    first: cand,
                };
                self.filter_add(hash);
                self.buckets += 1;
                break;
            }
            if self.slots[i].key == key {
                let order = |c: &Candidate<A>| c.rank;
                let slot = self.slots[i];
                let (goes_first, spill) = if order(&cand) < order(&slot.first) {
                    (cand, slot.first)
                } else {
                    (slot.first, cand)
                };
                let list = if slot.overflow == NONE {
                    let idx = match self.free_overflow.pop() {
                        Some(idx) => idx,
                        None => {
                            self.overflow.push(Vec::new());
                            (self.overflow.len() - 1) as u32
                        }
                    };
                    self.slots[i].overflow = idx;
                    idx
                } else {
                    slot.overflow
                };
                let rest = &mut self.overflow[list as usize];
                let pos = rest.partition_point(|c| order(c) < order(&spill));
                rest.insert(pos, spill);
                self.slots[i].first = goes_first;
                break;
            }
            i = (i + 1) & mask;
        }
        self.min_rank = self.min_rank.min(cand.rank);
        self.rules += 1;
    }

    /// Removes candidate `id` from bucket `key`; true if it was there.
    fn remove(&mut self, key: &BucketKey<A>, id: u32) -> bool {
        let Some(i) = self.find(key, key.hash()) else {
            return false;
        };
        let slot = self.slots[i];
        if slot.first.rank as u32 == id {
            if slot.overflow == NONE {
                self.delete_slot(i);
            } else {
                let rest = &mut self.overflow[slot.overflow as usize];
                self.slots[i].first = rest.remove(0);
                if rest.is_empty() {
                    self.free_overflow.push(slot.overflow);
                    self.slots[i].overflow = NONE;
                }
            }
        } else {
            if slot.overflow == NONE {
                return false;
            }
            let rest = &mut self.overflow[slot.overflow as usize];
            let Some(pos) = rest.iter().position(|c| c.rank as u32 == id) else {
                return false;
            };
            rest.remove(pos);
            if rest.is_empty() {
                self.free_overflow.push(slot.overflow);
                self.slots[i].overflow = NONE;
            }
        }
        self.rules -= 1;
        true
    }

    /// Empties slot `i` with backward-shift deletion (no tombstones). Moved slots keep their
    /// filter bits: a bit depends on the key's hash, not on where the slot sits.
    fn delete_slot(&mut self, mut i: usize) {
        let mask = self.slots.len() - 1;
        let removed_hash = self.slots[i].key.hash();
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            if self.slots[j].first.rank == EMPTY {
                break;
            }
            let home = self.home(self.slots[j].key.hash());
            // Move j back to i if its home is not in (i, j] cyclically.
            let in_between = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !in_between {
                self.slots[i] = self.slots[j];
                i = j;
            }
        }
        self.slots[i].first.rank = EMPTY;
        self.slots[i].overflow = NONE;
        self.buckets -= 1;
        self.filter_remove(removed_hash);
    }
}

/// Where a rule lives, for deletes.
#[derive(Clone, Copy, Debug)]
struct Place<A: Addr> {
    table: u32,
    key: BucketKey<A>,
}

/// Why an update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// An insert reused an id that is present.
    #[error("a rule with id {0} is already present")]
    DuplicateId(u32),
    /// A delete named an id that is absent.
    #[error("no rule has id {0}")]
    UnknownId(u32),
    /// A rule's prefix length is beyond the address width or has host bits set.
    #[error("rule {id}: {problem}")]
    BadRule {
        /// The rule's id.
        id: u32,
        /// What is wrong.
        problem: String,
    },
}

/// The classifier over addresses of type `A`: a bit-vector base for what
/// [`Engine::build_with`] was given, when that is a short IPv4 list, and tuple-space tables
/// for everything else.
pub struct Engine<A: Addr> {
    /// The rules given to the build, when they were few enough (see `bitvector`).
    base: Option<BitVectors<A>>,
    /// Ids of the base's live rules, and their rule numbers in the base.
    base_ids: HashMap<u32, u32>,
    tables: Vec<Table<A>>,
    /// Table indices by ascending `min_rank`.
    order: Vec<usize>,
    by_shape: HashMap<Shape, usize>,
    places: HashMap<u32, Place<A>>,
    /// Local-endpoint sets, as bitmaps, that rules refer to by index.
    locals: Vec<Vec<u64>>,
    /// Whether exact destination ports are part of bucket keys.
    key_dport: bool,
}

/// How an engine is built.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Sets of local endpoints (ids) that rules can be restricted to: `Rule::locals`
    /// indexes this list. More can be added with [`Engine::add_locals`].
    pub local_sets: Vec<Vec<u32>>,
    /// Put exact destination ports in the bucket keys (tables split by whether a rule's
    /// port is exact). Pays off when many rules share address prefixes and differ by port,
    /// as a device program's do once local addresses become endpoint sets; on rule sets
    /// whose addresses already spread the rules (ClassBench) the extra tables cost more
    /// probes than they save.
    pub key_dport: bool,
}

impl<A: Addr> Default for Engine<A> {
    fn default() -> Self {
        Self::new()
    }
}

fn class_of<A: Addr>(len: u8) -> u8 {
    A::CLASSES
        .iter()
        .copied()
        .take_while(|&c| c <= len)
        .last()
        .unwrap_or(0)
}

impl<A: Addr> Engine<A> {
    /// An empty engine.
    pub fn new() -> Self {
        Self {
            base: None,
            base_ids: HashMap::new(),
            tables: Vec::new(),
            order: Vec::new(),
            by_shape: HashMap::new(),
            places: HashMap::new(),
            locals: Vec::new(),
            key_dport: false,
        }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.places.len() + self.base_ids.len()
    }

    /// True when there is no rule.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of tables (tuples) in use, not counting the bit-vector base.
    pub fn tables(&self) -> usize {
        self.tables.len()
    }

    fn check(&self, rule: &Rule<A>, priority: u32, id: u32) -> Result<(), UpdateError> {
        if rank(priority, id) == EMPTY {
            return Err(UpdateError::BadRule {
                id,
                problem: "priority and id u32::MAX together are reserved".into(),
            });
        }
        if rule.locals != ANY_LOCAL && rule.locals as usize >= self.locals.len() {
            return Err(UpdateError::BadRule {
                id,
                problem: format!(
                    "local-endpoint set {} does not exist ({} given)",
                    rule.locals,
                    self.locals.len()
                ),
            });
        }
        for (name, (addr, len)) in [("source", rule.src), ("destination", rule.dst)] {
            if len > A::BITS {
                return Err(UpdateError::BadRule {
                    id,
                    problem: format!("{name} prefix length {len} is over {}", A::BITS),
                });
            }
            if addr.and(A::mask(len)) != addr {
                return Err(UpdateError::BadRule {
                    id,
                    problem: format!("{name} prefix has host bits set beyond /{len}"),
                });
            }
        }
        for (name, (lo, hi)) in [("source", rule.sport), ("destination", rule.dport)] {
            if lo > hi {
                return Err(UpdateError::BadRule {
                    id,
                    problem: format!("{name} port range {lo}-{hi} is empty"),
                });
            }
        }
        Ok(())
    }

    fn shape_of(&self, rule: &Rule<A>) -> Shape {
        Shape {
            src_len: class_of::<A>(rule.src.1),
            dst_len: class_of::<A>(rule.dst.1),
            proto_exact: rule.proto.1 == u8::MAX,
            dport_exact: self.key_dport && rule.dport.0 == rule.dport.1,
        }
    }

    fn table_for(&mut self, shape: Shape, capacity: usize) -> usize {
        if let Some(&t) = self.by_shape.get(&shape) {
            return t;
        }
        let t = self.tables.len();
        self.tables.push(Table::new(shape, capacity));
        self.by_shape.insert(shape, t);
        self.order.push(t);
        t
    }

    fn candidate(rule: &Rule<A>, priority: u32, id: u32) -> Candidate<A> {
        Candidate {
            src: rule.src.0,
            src_len: rule.src.1,
            dst: rule.dst.0,
            dst_len: rule.dst.1,
            sport: rule.sport,
            dport: rule.dport,
            proto: rule.proto.0 & rule.proto.1,
            proto_mask: rule.proto.1,
            locals: rule.locals,
            rank: rank(priority, id),
        }
    }

    /// Adds a rule to its table; the table order is the caller's business.
    fn add(
        &mut self,
        rule: Rule<A>,
        priority: u32,
        id: u32,
        capacity: usize,
    ) -> Result<usize, UpdateError> {
        self.check(&rule, priority, id)?;
        if self.places.contains_key(&id) || self.base_ids.contains_key(&id) {
            return Err(UpdateError::DuplicateId(id));
        }
        let t = self.table_for(self.shape_of(&rule), capacity);
        let table = &mut self.tables[t];
        let key = table.bucket_key(&Key {
            tag: rule.tag,
            src: rule.src.0,
            dst: rule.dst.0,
            sport: 0,
            dport: rule.dport.0,
            proto: rule.proto.0,
            local: 0,
        });
        table.add(key, Self::candidate(&rule, priority, id));
        self.places.insert(
            id,
            Place {
                table: t as u32,
                key,
            },
        );
        Ok(t)
    }

    /// Builds an engine from `(rule, priority, id)` triples, sizing every table once.
    pub fn build(
        rules: impl IntoIterator<Item = (Rule<A>, u32, u32)>,
    ) -> Result<Self, UpdateError> {
        Self::build_with(&Options::default(), rules)
    }

    /// Adds a set of local endpoints (ids) rules can be restricted to; returns its index.
    pub fn add_locals(&mut self, endpoints: &[u32]) -> u32 {
        let mut bits = vec![0u64; endpoints.iter().max().map_or(0, |&m| m as usize / 64 + 1)];
        for &e in endpoints {
            bits[e as usize / 64] |= 1 << (e % 64);
        }
        self.locals.push(bits);
        (self.locals.len() - 1) as u32
    }

    /// An empty engine with options.
    pub fn with_options(options: &Options) -> Self {
        let mut engine = Self::new();
        engine.key_dport = options.key_dport;
        for set in &options.local_sets {
            engine.add_locals(set);
        }
        engine
    }

    /// Builds an engine with options from `(rule, priority, id)` triples.
    ///
    /// Up to 4,096 IPv4 rules go into a bit-vector base (see the crate documentation);
    /// longer lists and IPv6 into tuple-space tables.
    pub fn build_with(
        options: &Options,
        rules: impl IntoIterator<Item = (Rule<A>, u32, u32)>,
    ) -> Result<Self, UpdateError> {
        let rules: Vec<(Rule<A>, u32, u32)> = rules.into_iter().collect();
        let mut engine = Self::with_options(options);
        if BitVectors::<A>::fits(rules.len()) {
            let mut ranked = Vec::with_capacity(rules.len());
            engine.base_ids.reserve(rules.len());
            for (rule, priority, id) in rules {
                engine.check(&rule, priority, id)?;
                if engine.base_ids.insert(id, 0).is_some() {
                    return Err(UpdateError::DuplicateId(id));
                }
                ranked.push((rule, rank(priority, id)));
            }
            ranked.sort_unstable_by_key(|&(_, r)| r);
            for (i, (_, r)) in ranked.iter().enumerate() {
                engine.base_ids.insert(*r as u32, i as u32);
            }
            engine.base = Some(BitVectors::build(&ranked));
            return Ok(engine);
        }
        let mut per_shape: HashMap<Shape, usize> = HashMap::new();
        for (rule, _, _) in &rules {
            *per_shape.entry(engine.shape_of(rule)).or_default() += 1;
        }
        engine.places.reserve(rules.len());
        for (rule, priority, id) in rules {
            let capacity = per_shape[&engine.shape_of(&rule)] * 4 / 3 + 1;
            engine.add(rule, priority, id, capacity)?;
        }
        engine.sort_order();
        Ok(engine)
    }

    fn sort_order(&mut self) {
        let tables = &self.tables;
        self.order.sort_by_key(|&t| (tables[t].min_rank, t));
    }

    /// Inserts one rule: touches one bucket (kept sorted) and, if the rule improves its
    /// table's best priority, the table order.
    pub fn insert(&mut self, rule: Rule<A>, priority: u32, id: u32) -> Result<(), UpdateError> {
        let old_min = self
            .by_shape
            .get(&self.shape_of(&rule))
            .map_or(u64::MAX, |&t| self.tables[t].min_rank);
        let t = self.add(rule, priority, id, 8)?;
        let new = rank(priority, id);
        if new < old_min {
            self.order.retain(|&x| x != t);
            let tables = &self.tables;
            let pos = self
                .order
                .partition_point(|&x| (tables[x].min_rank, x) < (new, t));
            self.order.insert(pos, t);
        }
        Ok(())
    }

    /// Deletes one rule by id.
    pub fn remove(&mut self, id: u32) -> Result<(), UpdateError> {
        if let Some(rule) = self.base_ids.remove(&id)
            && let Some(base) = self.base.as_mut()
        {
            base.remove(rule);
            return Ok(());
        }
        let place = self.places.remove(&id).ok_or(UpdateError::UnknownId(id))?;
        let removed = self.tables[place.table as usize].remove(&place.key, id);
        debug_assert!(removed, "places and tables agree");
        Ok(())
    }

    /// The best match with priority at least `floor`, if any.
    #[inline]
    pub fn lookup_from(&self, key: &Key<A>, floor: u32) -> Option<Match> {
        let floor = u64::from(floor) << 32;
        let mut best = EMPTY;
        if let Some(base) = &self.base {
            let first = if floor == 0 {
                0
            } else {
                base.first_from(floor)
            };
            if let Some(r) = base.lookup(key, first, &self.locals) {
                best = r;
            }
        }
        for &t in &self.order {
            let table = &self.tables[t];
            if table.min_rank >= best {
                break;
            }
            let bk = table.bucket_key(key);
            let Some(slot) = table.find(&bk, bk.hash()) else {
                continue;
            };
            let (first, rest) = table.candidates(slot);
            for c in std::iter::once(first).chain(rest) {
                if c.rank >= best {
                    break;
                }
                if c.rank >= floor && c.matches(key, &self.locals) {
                    best = c.rank;
                    break;
                }
            }
        }
        (best != EMPTY).then_some(Match {
            priority: (best >> 32) as u32,
            id: best as u32,
        })
    }

    /// The best match, if any.
    #[inline]
    pub fn lookup(&self, key: &Key<A>) -> Option<Match> {
        self.lookup_from(key, 0)
    }

    /// Classifies a batch of keys.
    pub fn lookup_batch(&self, keys: &[Key<A>], out: &mut [Option<Match>]) {
        for (k, o) in keys.iter().zip(out.iter_mut()) {
            *o = self.lookup(k);
        }
    }

    /// Approximate heap memory in bytes (capacities of every table, filter and index).
    pub fn memory_bytes(&self) -> usize {
        let cand = std::mem::size_of::<Candidate<A>>();
        let tables: usize = self
            .tables
            .iter()
            .map(|t| {
                t.slots.capacity() * std::mem::size_of::<Slot<A>>()
                    + t.filter.capacity() * 8
                    + t.filter_counts.capacity()
                    + t.overflow
                        .iter()
                        .map(|o| o.capacity() * cand + 24)
                        .sum::<usize>()
            })
            .sum();
        let place_entry = std::mem::size_of::<(u32, Place<A>)>() + 1;
        let locals: usize = self.locals.iter().map(|b| b.capacity() * 8 + 24).sum();
        let base = self.base.as_ref().map_or(0, |b| {
            b.memory_bytes() + self.base_ids.capacity() * (std::mem::size_of::<(u32, u32)>() + 1)
        });
        tables + base + locals + self.places.capacity() * place_entry + self.order.capacity() * 8
    }
}
