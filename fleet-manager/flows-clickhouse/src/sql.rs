//! A [`Query`] in SQL: the same selection, keys, totals, order and limit the in-memory
//! [`Aggregator`](palisade_flows::Aggregator) computes, evaluated by ClickHouse.
//!
//! Values from the query that are text (devices, rules, endpoints, tags) are never written
//! into the SQL: they are `?` placeholders bound by the client, which escapes them. What is
//! written is this module's own text, numbers, hex of addresses, and identifiers checked by
//! [`Config`](crate::Config).
//!
//! Two things need care to give the very same answers:
//!
//! * Totals saturate at `u64::MAX` in Rust, while ClickHouse sums wrap. Each counter is
//!   summed as its high and low 32-bit halves (no overflow below 2^31 records a group), and
//!   the total is rebuilt and saturated in SQL, before ordering.
//! * Keys are the text `Field::value` shows. Addresses are formatted by
//!   `IPv6NumToString` (an IPv4 address is stored mapped, `::ffff:a.b.c.d`, and shown
//!   without the prefix), which agrees with Rust's `Display` except for IPv4-compatible
//!   addresses (`::a.b.c.d`, deprecated by RFC 4291), which Rust shows in hex
//!   (`::102:304`): those are formatted apart.

use std::fmt::Write as _;
use std::net::IpAddr;

use palisade_flow::Verdict;
use palisade_flows::query::{Cidr, Condition, Field, Operand};
use palisade_flows::{OrderBy, Query};

/// SQL text with `?` placeholders and the values bound to them, in order.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) binds: Vec<String>,
}

impl Sql {
    fn push(&mut self, text: &str) {
        debug_assert!(!text.contains('?'), "a literal `?` in SQL: {text}");
        self.text.push_str(text);
    }

    fn bind(&mut self, value: &str) {
        self.text.push('?');
        self.binds.push(value.to_string());
    }
}

/// The columns of the flows table, in the order of [`crate::rows::FlowRow`].
pub(crate) const COLUMNS: &str = "device, kind, end_reason, src_family, src, dst_family, dst, \
    protocol, src_port, dst_port, start_ms, end_ms, packets, bytes, rev_packets, rev_bytes, \
    verdict, rule, generation, src_endpoint, dst_endpoint, src_tags, dst_tags";

/// The MergeTree table. Partitions are days of `end_ms` (retention drops whole ones); the
/// primary key is the report time, which every query bounds.
pub(crate) fn create_merge_tree(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} ({}) ENGINE = MergeTree() \
         PARTITION BY intDiv(end_ms, {DAY_MS}) ORDER BY (end_ms, device)",
        column_types()
    )
}

/// The Distributed table over the shards' MergeTree tables. Rows of one session go to
/// one shard.
pub(crate) fn create_distributed(
    table: &str,
    cluster: &str,
    remote_database: &str,
    remote_table: &str,
) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} ({}) ENGINE = Distributed({cluster}, '{remote_database}', \
         {remote_table}, cityHash64(device, src, dst, protocol, src_port, dst_port, start_ms))",
        column_types()
    )
}

/// Partition width: a day of `end_ms`.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// The Enum8 codes are the positions in `rows.rs`'s `KINDS`, `REASONS` and `VERDICTS`.
fn column_types() -> &'static str {
    "device String, \
     kind Enum8('start' = 0, 'update' = 1, 'end' = 2), \
     end_reason Enum8('none' = 0, 'idle' = 1, 'fin' = 2, 'reset' = 3, 'evicted' = 4, \
       'policy-change' = 5, 'flushed' = 6), \
     src_family UInt8, src FixedString(16), dst_family UInt8, dst FixedString(16), \
     protocol UInt8, src_port UInt16, dst_port UInt16, start_ms Int64, end_ms Int64, \
     packets UInt64, bytes UInt64, rev_packets UInt64, rev_bytes UInt64, \
     verdict Enum8('allowed' = 0, 'denied' = 1), rule String, generation UInt64, \
     src_endpoint String, dst_endpoint String, src_tags Array(String), dst_tags Array(String)"
}

/// `SELECT key, sessions, packets, bytes, records` per group, ordered and limited.
pub(crate) fn aggregate(query: &Query, table: &str) -> Sql {
    let mut sql = Sql::default();
    sql.push("SELECT ");
    if query.group_by.is_empty() {
        sql.push("emptyArrayString()");
    } else {
        sql.push("[");
        for (i, field) in query.group_by.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push("(");
            text(field, &mut sql);
            sql.push(&format!(") AS k{i}"));
        }
        sql.push("]");
    }
    sql.push(
        " AS key, uniqExact(device, src_family, src, dst_family, dst, protocol, src_port, \
         dst_port, start_ms) AS n_sessions, ",
    );
    sql.push(&saturated_sum("packets", "rev_packets", "n_packets"));
    sql.push(", ");
    sql.push(&saturated_sum("bytes", "rev_bytes", "n_bytes"));
    sql.push(&format!(", count() AS n_records FROM {table}"));
    where_clause(query, &mut sql);
    if !query.group_by.is_empty() {
        let keys: Vec<String> = query
            .group_by
            .iter()
            .enumerate()
            .map(|(i, field)| group_column(field).map_or_else(|| format!("k{i}"), str::to_string))
            .collect();
        sql.push(&format!(" GROUP BY {}", keys.join(", ")));
    }
    // Without keys, no selected flow still makes one row of zeros: the in-memory answer
    // has no row then.
    sql.push(" HAVING n_records > 0 ORDER BY ");
    sql.push(match query.order {
        OrderBy::Bytes => "n_bytes DESC, n_packets DESC, n_sessions DESC",
        OrderBy::Packets => "n_packets DESC, n_bytes DESC, n_sessions DESC",
        OrderBy::Sessions => "n_sessions DESC, n_bytes DESC, n_packets DESC",
    });
    for i in 0..query.group_by.len() {
        sql.push(&format!(", k{i}"));
    }
    if query.limit > 0 {
        sql.push(&format!(" LIMIT {}", query.limit));
    }
    sql
}

/// What to group by for a key whose text is a one-to-one function of columns: grouping
/// by the columns and formatting only each group's text is cheaper than formatting every
/// row (`None`: group by the text).
fn group_column(field: &Field) -> Option<&'static str> {
    Some(match field {
        Field::Device => "device",
        Field::Verdict => "verdict",
        Field::Rule => "rule",
        Field::Generation => "generation",
        Field::Protocol => "protocol",
        Field::DstPort => "dst_port",
        Field::SrcPort => "src_port",
        Field::Src => "src_family, src",
        Field::Dst => "dst_family, dst",
        Field::SrcEndpoint => "src_endpoint",
        Field::DstEndpoint => "dst_endpoint",
        _ => return None,
    })
}

/// `SELECT` every column of the selected flows, oldest first.
pub(crate) fn flows(query: &Query, table: &str, limit: usize) -> Sql {
    let mut sql = Sql::default();
    sql.push(&format!("SELECT {COLUMNS} FROM {table}"));
    where_clause(query, &mut sql);
    sql.push(" ORDER BY end_ms");
    if limit > 0 {
        sql.push(&format!(" LIMIT {limit}"));
    }
    sql
}

/// `min(a + b summed, u64::MAX)` without overflowing: halves summed apart, then joined.
fn saturated_sum(a: &str, b: &str, alias: &str) -> String {
    const LOW: &str = "4294967295";
    format!(
        "if((sum(bitShiftRight({a}, 32) + bitShiftRight({b}, 32)) \
         + bitShiftRight((sum(bitAnd({a}, {LOW}) + bitAnd({b}, {LOW})) AS {alias}_low), 32) \
         AS {alias}_high) > {LOW}, 18446744073709551615, \
         bitShiftLeft({alias}_high, 32) + bitAnd({alias}_low, {LOW})) AS {alias}"
    )
}

fn where_clause(query: &Query, sql: &mut Sql) {
    sql.push(&format!(
        " WHERE end_ms >= {} AND end_ms < {}",
        query.from_ms, query.to_ms
    ));
    for condition in &query.filter.conditions {
        sql.push(" AND ");
        self::condition(condition, sql);
    }
}

/// Mirrors `Condition::matches`, including its pairs of field and operand that never hold.
fn condition(c: &Condition, sql: &mut Sql) {
    sql.push(if c.negated { "NOT (" } else { "(" });
    match (&c.field, &c.value) {
        (Field::Verdict, Operand::Verdict(v)) => sql.push(match v {
            Verdict::Allowed => "verdict = 'allowed'",
            Verdict::Denied => "verdict = 'denied'",
        }),
        (Field::Generation, Operand::Number(n)) => sql.push(&format!("generation = {n}")),
        (Field::DstPort, Operand::Number(n)) => sql.push(&format!("dst_port = {n}")),
        (Field::SrcPort, Operand::Number(n)) => sql.push(&format!("src_port = {n}")),
        (Field::Protocol, Operand::Number(n)) => sql.push(&format!("protocol = {n}")),
        (Field::Src, Operand::Cidr(c)) => sql.push(&prefix("src", c)),
        (Field::Dst, Operand::Cidr(c)) => sql.push(&prefix("dst", c)),
        (Field::Addr, Operand::Cidr(c)) => {
            sql.push(&format!("{} OR {}", prefix("src", c), prefix("dst", c)));
        }
        (Field::Tag, Operand::Text(t)) => {
            sql.push("has(src_tags, ");
            sql.bind(t);
            sql.push(") OR has(dst_tags, ");
            sql.bind(t);
            sql.push(")");
        }
        (field, Operand::Text(t)) => {
            text(field, sql);
            sql.push(" = ");
            sql.bind(t);
        }
        _ => sql.push("0"),
    }
    sql.push(")");
}

/// Addresses are kept as 16 bytes (IPv4 mapped into IPv6) and a family, so a prefix is a
/// range of bytes within one family.
fn prefix(column: &str, cidr: &Cidr) -> String {
    let (family, first, last) = match cidr.address {
        IpAddr::V4(a) => {
            let len = u32::from(cidr.len.min(32));
            let host = u32::MAX.checked_shr(len).unwrap_or(0);
            let net = u32::from(a) & !host;
            (
                4,
                address_bytes(IpAddr::from(net.to_be_bytes())),
                address_bytes(IpAddr::from((net | host).to_be_bytes())),
            )
        }
        IpAddr::V6(a) => {
            let len = u32::from(cidr.len.min(128));
            let host = u128::MAX.checked_shr(len).unwrap_or(0);
            let net = u128::from(a) & !host;
            (6, net.to_be_bytes(), (net | host).to_be_bytes())
        }
    };
    format!(
        "{column}_family = {family} AND {column} >= unhex('{}') AND {column} <= unhex('{}')",
        hex(&first),
        hex(&last)
    )
}

/// How an address is stored: IPv6 as is, IPv4 mapped (`::ffff:a.b.c.d`).
pub(crate) fn address_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The field as text, exactly as `Field::value` gives it.
fn text(field: &Field, sql: &mut Sql) {
    match field {
        Field::Device => sql.push("device"),
        Field::Verdict => sql.push("toString(verdict)"),
        Field::Rule => sql.push("rule"),
        Field::Generation => sql.push("toString(generation)"),
        Field::Protocol => sql.push(
            "multiIf(protocol = 1, 'icmp', protocol = 6, 'tcp', protocol = 17, 'udp', \
             protocol = 58, 'icmpv6', protocol = 132, 'sctp', toString(protocol))",
        ),
        Field::DstPort => sql.push("toString(dst_port)"),
        Field::SrcPort => sql.push("toString(src_port)"),
        Field::Src => sql.push(&address_text("src")),
        Field::Dst => sql.push(&address_text("dst")),
        Field::SrcEndpoint => sql.push("src_endpoint"),
        Field::DstEndpoint => sql.push("dst_endpoint"),
        Field::SrcProject => sql.push("arrayElement(splitByChar('/', src_endpoint), 1)"),
        Field::DstProject => sql.push("arrayElement(splitByChar('/', dst_endpoint), 1)"),
        Field::SrcTag(kind) => tag_value("src_tags", kind, sql),
        Field::DstTag(kind) => tag_value("dst_tags", kind, sql),
        Field::Addr | Field::Tag => sql.push("''"),
    }
}

/// The value of the first tag `KIND=...` of the list, or "".
fn tag_value(column: &str, kind: &str, sql: &mut Sql) {
    // A tag's type ends at its first '=': a "type" containing one matches no tag.
    if kind.contains('=') {
        sql.push("''");
        return;
    }
    let prefix = format!("{kind}=");
    sql.push("substring(arrayFirst(t -> startsWith(t, ");
    sql.bind(&prefix);
    sql.push(&format!("), {column}), {})", prefix.len() + 1));
}

fn address_text(column: &str) -> String {
    // IPv6NumToString shows `::a.b.c.d` for an IPv4-compatible address; with a first group
    // of 1 it shows `1::g6:g7`, which is Rust's text but for the leading 1.
    format!(
        "if({column}_family = 4, substring(IPv6NumToString({column}), 8), \
         if(substring({column}, 1, 12) = unhex('000000000000000000000000') \
         AND substring({column}, 13, 2) != unhex('0000'), \
         substring(IPv6NumToString(toFixedString(concat(unhex('0001'), \
         substring({column}, 3, 14)), 16)), 2), IPv6NumToString({column})))"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_flows::query::{Filter, parse_group_by};

    fn query(filter: &str, group: &str) -> Query {
        Query {
            from_ms: 10,
            to_ms: 20,
            filter: Filter::parse(filter).unwrap(),
            group_by: parse_group_by(group).unwrap(),
            limit: 3,
            ..Query::default()
        }
    }

    #[test]
    fn text_values_are_bound_not_written() {
        let q = query(
            "rule=x' OR 1=1 -- and src.tier=a?b and tag=t=? and device!=d",
            "src.tier,dst.project",
        );
        let sql = aggregate(&q, "flows");
        assert_eq!(
            sql.binds,
            ["tier=", "x' OR 1=1 --", "tier=", "a?b", "t=?", "t=?", "d"]
        );
        assert_eq!(sql.text.matches('?').count(), sql.binds.len());
        assert!(!sql.text.contains("OR 1=1"));
        assert!(
            sql.text.ends_with(
                "ORDER BY n_bytes DESC, n_packets DESC, n_sessions DESC, k0, k1 LIMIT 3"
            )
        );
    }

    #[test]
    fn prefixes_are_byte_ranges_within_a_family() {
        let c = Cidr::parse("10.1.2.3/16").unwrap();
        assert_eq!(
            prefix("src", &c),
            "src_family = 4 AND src >= unhex('00000000000000000000ffff0a010000') \
             AND src <= unhex('00000000000000000000ffff0a01ffff')"
        );
        let c = Cidr::parse("2001:db8::1/0").unwrap();
        assert_eq!(
            prefix("dst", &c),
            format!(
                "dst_family = 6 AND dst >= unhex('{}') AND dst <= unhex('{}')",
                "0".repeat(32),
                "f".repeat(32)
            )
        );
        let c = Cidr::parse("2001:db8::1").unwrap();
        assert!(prefix("dst", &c).ends_with(
            "dst >= unhex('20010db8000000000000000000000001') \
             AND dst <= unhex('20010db8000000000000000000000001')"
        ));
    }

    #[test]
    fn operands_that_never_match_become_false() {
        let c = Condition {
            field: Field::Device,
            negated: true,
            value: Operand::Number(3),
        };
        let mut sql = Sql::default();
        condition(&c, &mut sql);
        assert_eq!(sql.text, "NOT (0)");
        let mut sql = Sql::default();
        tag_value("src_tags", "a=b", &mut sql);
        assert_eq!(sql.text, "''");
    }
}
