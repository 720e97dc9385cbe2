//! Queries answered on the embedded store's block bytes. A block names its few distinct
//! devices, rules, endpoints and tag sets once; a filter condition or grouping key on them
//! is worked out once per distinct value per block, so each record costs a few loads and
//! compares, no allocation. What this answers must equal [`crate::query`]'s in-memory
//! evaluation (`Query::selects`, [`Aggregator`]) on the same flows: property-tested below.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use palisade_flow::Verdict;

use crate::Flow;
use crate::block::{Block, FlowCache, RowRef};
use crate::query::{
    Aggregator, Cidr, Condition, Field, Operand, Query, project, protocol_name, tag_value,
};
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};

/// A string column of a row.
#[derive(Clone, Copy)]
enum Column {
    Device,
    Rule,
    SrcEndpoint,
    DstEndpoint,
}

impl Column {
    fn of(field: &Field) -> Option<(Column, bool)> {
        Some(match field {
            Field::Device => (Column::Device, false),
            Field::Rule => (Column::Rule, false),
            Field::SrcEndpoint => (Column::SrcEndpoint, false),
            Field::DstEndpoint => (Column::DstEndpoint, false),
            Field::SrcProject => (Column::SrcEndpoint, true),
            Field::DstProject => (Column::DstEndpoint, true),
            _ => return None,
        })
    }

    fn get(self, row: RowRef<'_>) -> u32 {
        match self {
            Column::Device => row.device(),
            Column::Rule => row.rule(),
            Column::SrcEndpoint => row.src_endpoint(),
            Column::DstEndpoint => row.dst_endpoint(),
        }
    }
}

/// One condition, worked out for one block.
enum Test<'q> {
    Verdict(Verdict),
    Generation(u64),
    DstPort(u64),
    SrcPort(u64),
    Protocol(u64),
    Src(Cidr),
    Dst(Cidr),
    Addr(Cidr),
    /// A string column against the block's strings (`hit[string id]`).
    Strings(Column, Vec<bool>),
    /// A tag set column (`hit[set id]`); both: either end.
    Sets {
        src: bool,
        dst: bool,
        hit: Vec<bool>,
    },
    /// Anything else, on the flow itself (the query's own evaluation).
    Flow(&'q Condition),
}

/// A query's window and filter, worked out for one block.
pub(crate) struct Selector<'q> {
    from_ms: i64,
    to_ms: i64,
    tests: Vec<(Test<'q>, bool)>,
}

impl<'q> Selector<'q> {
    pub(crate) fn new(query: &'q Query, block: &Block<'_>) -> Self {
        let tests = query
            .filter
            .conditions
            .iter()
            .map(|c| Self::test(c, block))
            .collect();
        Self {
            from_ms: query.from_ms,
            to_ms: query.to_ms,
            tests,
        }
    }

    fn test(c: &'q Condition, block: &Block<'_>) -> (Test<'q>, bool) {
        let sets = |f: &dyn Fn(&[&str]) -> bool| -> Vec<bool> {
            (0..block.set_count() as u32)
                .map(|i| f(&block.tags(i)))
                .collect()
        };
        let test = match (&c.field, &c.value) {
            (Field::Verdict, Operand::Verdict(v)) => Test::Verdict(*v),
            (Field::Generation, Operand::Number(n)) => Test::Generation(*n),
            (Field::DstPort, Operand::Number(n)) => Test::DstPort(*n),
            (Field::SrcPort, Operand::Number(n)) => Test::SrcPort(*n),
            (Field::Protocol, Operand::Number(n)) => Test::Protocol(*n),
            (Field::Src, Operand::Cidr(c)) => Test::Src(*c),
            (Field::Dst, Operand::Cidr(c)) => Test::Dst(*c),
            (Field::Addr, Operand::Cidr(c)) => Test::Addr(*c),
            (Field::Tag, Operand::Text(t)) => Test::Sets {
                src: true,
                dst: true,
                hit: sets(&|tags| tags.contains(&t.as_str())),
            },
            (Field::SrcTag(kind) | Field::DstTag(kind), Operand::Text(t)) => Test::Sets {
                src: matches!(c.field, Field::SrcTag(_)),
                dst: matches!(c.field, Field::DstTag(_)),
                hit: sets(&|tags| tag_value(tags, kind) == *t),
            },
            (field, Operand::Text(t)) => match Column::of(field) {
                Some((column, in_project)) => Test::Strings(
                    column,
                    block
                        .strings
                        .iter()
                        .map(|s| if in_project { project(s) } else { s } == t)
                        .collect(),
                ),
                None => return (Test::Flow(c), false),
            },
            _ => return (Test::Flow(c), false),
        };
        (test, c.negated)
    }

    /// Whether the query selects `row`.
    pub(crate) fn selects(
        &self,
        block: &Block<'_>,
        row: RowRef<'_>,
        cache: &mut FlowCache,
    ) -> bool {
        let end = row.end_ms();
        if end < self.from_ms || end >= self.to_ms {
            return false;
        }
        self.tests.iter().all(|(test, negated)| {
            let hit = match test {
                Test::Verdict(v) => row.verdict() == *v,
                Test::Generation(n) => row.generation() == *n,
                Test::DstPort(n) => u64::from(row.dst_port()) == *n,
                Test::SrcPort(n) => u64::from(row.src_port()) == *n,
                Test::Protocol(n) => u64::from(row.protocol()) == *n,
                Test::Src(c) => c.contains(row.src()),
                Test::Dst(c) => c.contains(row.dst()),
                Test::Addr(c) => c.contains(row.src()) || c.contains(row.dst()),
                Test::Strings(column, hit) => hit[column.get(row) as usize],
                Test::Sets { src, dst, hit } => {
                    (*src && hit[row.src_tags() as usize]) || (*dst && hit[row.dst_tags() as usize])
                }
                Test::Flow(c) => return c.matches(&block.flow(row, cache)),
            };
            hit != *negated
        })
    }
}

/// Values of one grouping key, numbered as they are met.
#[derive(Default)]
struct Names {
    index: FxHashMap<String, u64>,
    list: Vec<String>,
}

impl Names {
    fn id(&mut self, value: &str) -> u64 {
        if let Some(&i) = self.index.get(value) {
            return i;
        }
        let i = self.list.len() as u64;
        self.list.push(value.to_string());
        self.index.insert(value.to_string(), i);
        i
    }
}

/// How one grouping key is read from a row; strings and tag sets through the block's
/// table of value numbers.
enum Key {
    Strings(Column, Vec<u64>),
    Constant(u64),
    Sets { src: bool, ids: Vec<u64> },
    Verdict,
    Protocol,
    DstPort,
    SrcPort,
    Generation,
    Src,
    Dst,
}

/// One group's totals so far.
#[derive(Default)]
struct Totals {
    packets: u64,
    bytes: u64,
    records: u64,
    sessions: FxHashSet<u64>,
}

/// Totals per group of the rows of the blocks added (one per thread; merged at the end).
pub(crate) struct Partial<'q> {
    query: &'q Query,
    names: Vec<Names>,
    addresses: FxHashMap<IpAddr, u64>,
    address_list: Vec<IpAddr>,
    groups: FxHashMap<Box<[u64]>, Totals>,
}

impl<'q> Partial<'q> {
    pub(crate) fn new(query: &'q Query) -> Self {
        Self {
            query,
            names: query.group_by.iter().map(|_| Names::default()).collect(),
            addresses: FxHashMap::default(),
            address_list: Vec::new(),
            groups: FxHashMap::default(),
        }
    }

    fn keys(&mut self, block: &Block<'_>) -> Vec<Key> {
        let mut keys = Vec::with_capacity(self.query.group_by.len());
        for (field, names) in self.query.group_by.iter().zip(&mut self.names) {
            keys.push(match field {
                Field::SrcTag(kind) | Field::DstTag(kind) => {
                    let ids = (0..block.set_count() as u32)
                        .map(|i| names.id(&tag_value(&block.tags(i), kind)))
                        .collect();
                    Key::Sets {
                        src: matches!(field, Field::SrcTag(_)),
                        ids,
                    }
                }
                Field::Verdict => Key::Verdict,
                Field::Protocol => Key::Protocol,
                Field::DstPort => Key::DstPort,
                Field::SrcPort => Key::SrcPort,
                Field::Generation => Key::Generation,
                Field::Src => Key::Src,
                Field::Dst => Key::Dst,
                field => match Column::of(field) {
                    Some((column, in_project)) => Key::Strings(
                        column,
                        block
                            .strings
                            .iter()
                            .map(|s| names.id(if in_project { project(s) } else { s }))
                            .collect(),
                    ),
                    // Not a grouping field (`addr`, `tag`): one empty value, as `Field::value`.
                    None => Key::Constant(names.id("")),
                },
            });
        }
        keys
    }

    fn address(&mut self, ip: IpAddr) -> u64 {
        if let Some(&i) = self.addresses.get(&ip) {
            return i;
        }
        let i = self.address_list.len() as u64;
        self.address_list.push(ip);
        self.addresses.insert(ip, i);
        i
    }

    /// Adds the rows of `block` the query selects.
    pub(crate) fn add(&mut self, block: &Block<'_>) {
        let selector = Selector::new(self.query, block);
        let keys = self.keys(block);
        // A session is its device (by name: blocks number strings apart), 5-tuple and start.
        let devices: Vec<u64> = block
            .strings
            .iter()
            .map(|s| {
                let mut h = FxHasher::default();
                s.hash(&mut h);
                h.finish()
            })
            .collect();
        let mut key = vec![0u64; keys.len()];
        let mut cache = FlowCache::new(block);
        for row in block.rows() {
            if !selector.selects(block, row, &mut cache) {
                continue;
            }
            for (slot, k) in key.iter_mut().zip(&keys) {
                *slot = match k {
                    Key::Strings(column, ids) => ids[column.get(row) as usize],
                    Key::Constant(id) => *id,
                    Key::Sets { src, ids } => {
                        ids[if *src { row.src_tags() } else { row.dst_tags() } as usize]
                    }
                    Key::Verdict => u64::from(row.verdict() == Verdict::Denied),
                    Key::Protocol => u64::from(row.protocol()),
                    Key::DstPort => u64::from(row.dst_port()),
                    Key::SrcPort => u64::from(row.src_port()),
                    Key::Generation => row.generation(),
                    Key::Src => self.address(row.src()),
                    Key::Dst => self.address(row.dst()),
                };
            }
            let totals = match self.groups.get_mut(&key[..]) {
                Some(t) => t,
                None => self.groups.entry(key.clone().into()).or_default(),
            };
            totals.packets = totals
                .packets
                .saturating_add(row.packets().saturating_add(row.rev_packets()));
            totals.bytes = totals
                .bytes
                .saturating_add(row.bytes().saturating_add(row.rev_bytes()));
            totals.records += 1;
            let mut h = FxHasher::default();
            h.write_u64(devices[row.device() as usize]);
            h.write(&row.addresses());
            h.write_u8(row.families());
            h.write_u8(row.protocol());
            h.write_u16(row.src_port());
            h.write_u16(row.dst_port());
            h.write_u64(row.start_ms() as u64);
            totals.sessions.insert(h.finish());
        }
    }

    /// Adds the totals into `into`, with the keys' values as text.
    pub(crate) fn finish(self, into: &mut Aggregator) {
        for (key, totals) in self.groups {
            let text = key
                .iter()
                .zip(&self.query.group_by)
                .zip(&self.names)
                .map(|((v, field), names)| match field {
                    Field::Verdict => if *v == 1 {
                        Verdict::Denied
                    } else {
                        Verdict::Allowed
                    }
                    .to_string(),
                    Field::Protocol => protocol_name(*v as u8),
                    Field::DstPort | Field::SrcPort | Field::Generation => v.to_string(),
                    Field::Src | Field::Dst => self.address_list[*v as usize].to_string(),
                    _ => names.list[*v as usize].clone(),
                })
                .collect();
            into.merge(
                text,
                totals.packets,
                totals.bytes,
                totals.records,
                totals.sessions,
            );
        }
    }
}

/// The flows of `block` the query selects, in row order.
pub(crate) fn flows(query: &Query, block: &Block<'_>, mut visit: impl FnMut(Flow) -> bool) -> bool {
    let selector = Selector::new(query, block);
    let mut cache = FlowCache::new(block);
    for row in block.rows() {
        if selector.selects(block, row, &mut cache) && !visit(block.flow(row, &mut cache)) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{encode, tests::arb_flow};
    use crate::query::{Filter, parse_group_by};
    use proptest::prelude::*;

    fn arb_query() -> impl Strategy<Value = Query> {
        let conditions = prop::sample::select(vec![
            "verdict=denied",
            "verdict!=allowed",
            "device=dpu-1",
            "device!=dpu-2",
            "rule=shop/0020",
            "rule=",
            "src.endpoint=shop/web/eth0",
            "dst.endpoint=",
            "src.project=shop",
            "dst.project!=shop",
            "src.tier=web",
            "dst.tier!=app",
            "src.application=",
            "tag=tier=app",
            "tag!=application=shop",
            "proto=6",
            "port=80",
            "sport!=443",
            "src=10.0.0.0/8",
            "dst=0.0.0.0/1",
            "addr=::/1",
            "generation=7",
        ]);
        let groups = prop::sample::select(vec![
            "",
            "src.tier,dst.tier",
            "src.application,src.tier,dst.application,dst.tier",
            "device,rule",
            "verdict,proto",
            "src,dst",
            "port,sport,generation",
            "src.project,dst.endpoint,src.endpoint,dst.project,device",
        ]);
        (
            prop::collection::vec(conditions, 0..3),
            groups,
            0i64..60_000,
            0i64..120_000,
        )
            .prop_map(|(conditions, groups, from, len)| Query {
                from_ms: from,
                to_ms: from + len,
                filter: Filter::parse(&conditions.join(" and ")).unwrap(),
                group_by: parse_group_by(groups).unwrap(),
                ..Query::default()
            })
    }

    fn rows(query: &Query, blocks: &[Vec<Flow>]) -> (Vec<crate::Row>, Vec<crate::Row>) {
        let mut reference = Aggregator::new(&query.group_by);
        let mut fast = Aggregator::new(&query.group_by);
        let mut partial = Partial::new(query);
        for flows in blocks {
            for f in flows.iter().filter(|f| query.selects(f)) {
                reference.add(f);
            }
            let (_, bytes) = encode(flows);
            partial.add(&Block::new_checked(&bytes).unwrap());
        }
        partial.finish(&mut fast);
        (reference.finish(query), fast.finish(query))
    }

    proptest! {
        #[test]
        fn block_answers_equal_the_in_memory_evaluation(
            blocks in prop::collection::vec(prop::collection::vec(arb_flow(), 0..30), 1..4),
            query in arb_query(),
        ) {
            let (reference, fast) = rows(&query, &blocks);
            prop_assert_eq!(reference, fast);
            let mut listed = Vec::new();
            for flows in &blocks {
                let (_, bytes) = encode(flows);
                flows_of(&query, &bytes, &mut listed);
            }
            let expected: Vec<Flow> =
                blocks.iter().flatten().filter(|f| query.selects(f)).cloned().collect();
            prop_assert_eq!(listed, expected);
        }
    }

    fn flows_of(query: &Query, bytes: &[u8], out: &mut Vec<Flow>) {
        let block = Block::new_checked(bytes).unwrap();
        flows(query, &block, |f| {
            out.push(f);
            true
        });
    }
}
