//! Flow queries: a time window, a filter (`--where`), grouping keys (`--group-by`), an
//! order and a limit; and the in-memory evaluation every store can use (the embedded store
//! does; ClickHouse translates the same query to SQL and is tested against this one).
//!
//! Filter syntax: conditions joined by `and`, each `FIELD=VALUE` or `FIELD!=VALUE`:
//!
//! ```text
//! verdict=denied and dst.tier=db and port=5432
//! src=10.1.0.0/16 and rule!=shop/0020
//! ```
//!
//! Fields: `device`, `verdict` (allowed/denied), `rule` (empty for a tier default),
//! `generation`, `proto` (`tcp`, `udp`, `icmp`, ... or a number), `port` (the responder's),
//! `sport`, `src` / `dst` / `addr` (either end; an address or a prefix), `src.endpoint` /
//! `dst.endpoint` (`project/workload/interface`), `src.project` / `dst.project`,
//! `src.TYPE` / `dst.TYPE` (the end's tag of that type: `src.tier=web`), `tag` (either
//! end carries the tag: `tag=tier=db`). Group-by keys are the same names but `addr` and
//! `tag`, comma-separated: `src.application,src.tier,dst.application,dst.tier`.

use std::fmt;
use std::net::IpAddr;

use palisade_flow::Verdict;
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use serde::{Deserialize, Serialize};

use crate::Flow;

/// A field of a flow, as filters and groups name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Field {
    /// The reporting device.
    Device,
    /// Allowed or denied.
    Verdict,
    /// The deciding rule's id.
    Rule,
    /// The deciding program generation.
    Generation,
    /// The IP protocol.
    Protocol,
    /// The responder's port.
    DstPort,
    /// The initiator's port.
    SrcPort,
    /// The initiator's address.
    Src,
    /// The responder's address.
    Dst,
    /// Either address (filters only).
    Addr,
    /// The initiator's endpoint.
    SrcEndpoint,
    /// The responder's endpoint.
    DstEndpoint,
    /// The initiator's project.
    SrcProject,
    /// The responder's project.
    DstProject,
    /// The initiator's tag of a type.
    SrcTag(String),
    /// The responder's tag of a type.
    DstTag(String),
    /// A tag either end carries (filters only; the value is `type=value`).
    Tag,
}

impl Field {
    /// Parses a field name.
    pub fn parse(name: &str) -> Result<Field, String> {
        Ok(match name {
            "device" => Field::Device,
            "verdict" => Field::Verdict,
            "rule" => Field::Rule,
            "generation" => Field::Generation,
            "proto" | "protocol" => Field::Protocol,
            "port" | "dport" | "dst.port" => Field::DstPort,
            "sport" | "src.port" => Field::SrcPort,
            "src" => Field::Src,
            "dst" => Field::Dst,
            "addr" => Field::Addr,
            "src.endpoint" => Field::SrcEndpoint,
            "dst.endpoint" => Field::DstEndpoint,
            "src.project" => Field::SrcProject,
            "dst.project" => Field::DstProject,
            "tag" => Field::Tag,
            other => match other.split_once('.') {
                Some(("src", kind)) if valid_kind(kind) => Field::SrcTag(kind.to_string()),
                Some(("dst", kind)) if valid_kind(kind) => Field::DstTag(kind.to_string()),
                _ => {
                    return Err(format!(
                        "unknown field `{other}`: expected device, verdict, rule, generation, proto, port, sport, src, dst, addr, src.endpoint, dst.endpoint, src.project, dst.project, src.TYPE, dst.TYPE or tag"
                    ));
                }
            },
        })
    }

    /// Whether the field can group rows.
    pub fn groups(&self) -> bool {
        !matches!(self, Field::Addr | Field::Tag)
    }

    /// The field's value in a flow, as text (what groups show).
    pub fn value(&self, flow: &Flow) -> String {
        let r = &flow.record;
        match self {
            Field::Device => r.device.to_string(),
            Field::Verdict => r.verdict.to_string(),
            Field::Rule => r.rule.to_string(),
            Field::Generation => r.generation.to_string(),
            Field::Protocol => protocol_name(r.protocol),
            Field::DstPort => r.dst_port.to_string(),
            Field::SrcPort => r.src_port.to_string(),
            Field::Src => r.src.to_string(),
            Field::Dst => r.dst.to_string(),
            Field::SrcEndpoint => flow.src_endpoint.to_string(),
            Field::DstEndpoint => flow.dst_endpoint.to_string(),
            Field::SrcProject => project(&flow.src_endpoint).to_string(),
            Field::DstProject => project(&flow.dst_endpoint).to_string(),
            Field::SrcTag(kind) => tag_value(&flow.src_tags, kind),
            Field::DstTag(kind) => tag_value(&flow.dst_tags, kind),
            Field::Addr | Field::Tag => String::new(),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Device => f.write_str("device"),
            Field::Verdict => f.write_str("verdict"),
            Field::Rule => f.write_str("rule"),
            Field::Generation => f.write_str("generation"),
            Field::Protocol => f.write_str("proto"),
            Field::DstPort => f.write_str("port"),
            Field::SrcPort => f.write_str("sport"),
            Field::Src => f.write_str("src"),
            Field::Dst => f.write_str("dst"),
            Field::Addr => f.write_str("addr"),
            Field::SrcEndpoint => f.write_str("src.endpoint"),
            Field::DstEndpoint => f.write_str("dst.endpoint"),
            Field::SrcProject => f.write_str("src.project"),
            Field::DstProject => f.write_str("dst.project"),
            Field::SrcTag(k) => write!(f, "src.{k}"),
            Field::DstTag(k) => write!(f, "dst.{k}"),
            Field::Tag => f.write_str("tag"),
        }
    }
}

fn valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The project of `project/workload/interface` (empty for no endpoint).
pub(crate) fn project(endpoint: &str) -> &str {
    endpoint.split('/').next().unwrap_or_default()
}

/// The value of the first tag of `kind` (`tier` in `tier=web`), or "".
pub(crate) fn tag_value<S: AsRef<str>>(tags: &[S], kind: &str) -> String {
    tags.iter()
        .find_map(|t| {
            t.as_ref()
                .split_once('=')
                .filter(|(k, _)| *k == kind)
                .map(|(_, v)| v.to_string())
        })
        .unwrap_or_default()
}

/// Parses a duration as operators write it: `90s`, `15m`, `2h`, `7d`, `1w` (or a number of
/// seconds).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = number.parse().map_err(|_| {
        format!("duration `{text}`: expected a number and a unit, like 15m, 2h or 7d")
    })?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        u => {
            return Err(format!(
                "duration `{text}`: unit `{u}` is not s, m, h, d or w"
            ));
        }
    };
    n.checked_mul(seconds)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("duration `{text}` is too long"))
}

/// An IP protocol's name, or its number.
pub fn protocol_name(number: u8) -> String {
    match number {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

/// A protocol name or number.
pub fn protocol_number(text: &str) -> Result<u8, String> {
    Ok(match text {
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        "icmpv6" => 58,
        "sctp" => 132,
        n => n.parse().map_err(|_| {
            format!("protocol `{n}`: expected tcp, udp, icmp, icmpv6, sctp or 0-255")
        })?,
    })
}

/// An address or a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cidr {
    /// The network address.
    pub address: IpAddr,
    /// The prefix length.
    pub len: u8,
}

impl Cidr {
    /// Parses `10.0.0.1` or `10.0.0.0/8`.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (a, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let address: IpAddr = a
            .parse()
            .map_err(|_| format!("`{text}` is not an address or prefix"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("`{text}`: prefix length must be 0-{max}"))?,
        };
        Ok(Cidr { address, len })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.len))
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.len))
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// What a condition compares with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operand {
    /// Text (device, rule, endpoint, project, tag value or `type=value`).
    Text(String),
    /// A number (generation, ports, protocol).
    Number(u64),
    /// A verdict.
    Verdict(Verdict),
    /// An address or prefix.
    Cidr(Cidr),
}

/// One `FIELD=VALUE` or `FIELD!=VALUE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// The field.
    pub field: Field,
    /// `!=` rather than `=`.
    pub negated: bool,
    /// The value.
    pub value: Operand,
}

impl Condition {
    /// Parses one condition.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let (name, negated, value) = if let Some((n, v)) = text.split_once("!=") {
            (n, true, v)
        } else if let Some((n, v)) = text.split_once('=') {
            (n, false, v)
        } else {
            return Err(format!("`{text}`: expected FIELD=VALUE or FIELD!=VALUE"));
        };
        let (name, value) = (name.trim(), value.trim());
        let field = Field::parse(name)?;
        let number = |what: &str, max: u64| -> Result<Operand, String> {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= max)
                .map(Operand::Number)
                .ok_or_else(|| format!("{name}: `{value}` is not a {what}"))
        };
        let value = match &field {
            Field::Verdict => Operand::Verdict(value.parse().map_err(|e| format!("{name}: {e}"))?),
            Field::Generation => number("generation", u64::MAX)?,
            Field::DstPort | Field::SrcPort => number("port (0-65535)", 65535)?,
            Field::Protocol => Operand::Number(u64::from(
                protocol_number(value).map_err(|e| format!("{name}: {e}"))?,
            )),
            Field::Src | Field::Dst | Field::Addr => {
                Operand::Cidr(Cidr::parse(value).map_err(|e| format!("{name}: {e}"))?)
            }
            Field::Tag if !value.contains('=') => {
                return Err(format!("tag: `{value}` is not a tag: expected type=value"));
            }
            _ => Operand::Text(value.to_string()),
        };
        Ok(Condition {
            field,
            negated,
            value,
        })
    }

    /// Whether a flow satisfies the condition.
    pub fn matches(&self, flow: &Flow) -> bool {
        let r = &flow.record;
        let hit = match (&self.field, &self.value) {
            (Field::Verdict, Operand::Verdict(v)) => r.verdict == *v,
            (Field::Generation, Operand::Number(n)) => r.generation == *n,
            (Field::DstPort, Operand::Number(n)) => u64::from(r.dst_port) == *n,
            (Field::SrcPort, Operand::Number(n)) => u64::from(r.src_port) == *n,
            (Field::Protocol, Operand::Number(n)) => u64::from(r.protocol) == *n,
            (Field::Src, Operand::Cidr(c)) => c.contains(r.src),
            (Field::Dst, Operand::Cidr(c)) => c.contains(r.dst),
            (Field::Addr, Operand::Cidr(c)) => c.contains(r.src) || c.contains(r.dst),
            (Field::Tag, Operand::Text(t)) => {
                flow.src_tags.iter().any(|x| x == t) || flow.dst_tags.iter().any(|x| x == t)
            }
            (field, Operand::Text(t)) => field.value(flow) == *t,
            _ => false,
        };
        hit != self.negated
    }
}

/// Conditions that must all hold (`a=1 and b=2`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// The conditions.
    pub conditions: Vec<Condition>,
}

impl Filter {
    /// Parses `COND and COND ...` (empty: everything).
    pub fn parse(text: &str) -> Result<Filter, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Filter::default());
        }
        let mut conditions = Vec::new();
        for part in split_and(text) {
            conditions.push(Condition::parse(part).map_err(|e| format!("--where: {e}"))?);
        }
        Ok(Filter { conditions })
    }

    /// Whether a flow satisfies every condition.
    pub fn matches(&self, flow: &Flow) -> bool {
        self.conditions.iter().all(|c| c.matches(flow))
    }
}

/// Splits on the word `and` (any case) or `&&`.
fn split_and(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        let lower = rest.to_ascii_lowercase();
        let cut = [" and ", "&&"]
            .iter()
            .filter_map(|sep| lower.find(sep).map(|i| (i, sep.len())))
            .min();
        match cut {
            Some((i, len)) => {
                parts.push(rest[..i].trim());
                rest = &rest[i + len..];
            }
            None => {
                parts.push(rest.trim());
                return parts;
            }
        }
    }
}

/// Parses `--group-by KEY,KEY...`.
pub fn parse_group_by(text: &str) -> Result<Vec<Field>, String> {
    let mut keys = Vec::new();
    for name in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let field = Field::parse(name).map_err(|e| format!("--group-by: {e}"))?;
        if !field.groups() {
            return Err(format!(
                "--group-by: `{name}` is for filters only (it names either end)"
            ));
        }
        keys.push(field);
    }
    Ok(keys)
}

/// What rows are ordered by (descending).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderBy {
    /// Bytes both ways.
    #[default]
    Bytes,
    /// Packets both ways.
    Packets,
    /// Sessions.
    Sessions,
}

impl std::str::FromStr for OrderBy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bytes" => Ok(OrderBy::Bytes),
            "packets" => Ok(OrderBy::Packets),
            "sessions" => Ok(OrderBy::Sessions),
            o => Err(format!("order `{o}`: expected bytes, packets or sessions")),
        }
    }
}

/// A flow query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// Records reported at or after this time (ms since the epoch; their `end_ms`).
    pub from_ms: i64,
    /// Records reported before this time.
    pub to_ms: i64,
    /// Which records count.
    pub filter: Filter,
    /// Grouping keys; none: one row for everything.
    pub group_by: Vec<Field>,
    /// Row order (descending).
    pub order: OrderBy,
    /// At most this many rows (0: all).
    pub limit: usize,
}

impl Query {
    /// Whether a flow is in the window and passes the filter.
    pub fn selects(&self, flow: &Flow) -> bool {
        flow.record.end_ms >= self.from_ms
            && flow.record.end_ms < self.to_ms
            && self.filter.matches(flow)
    }
}

/// One group's totals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The group's key values, in `group_by` order.
    pub key: Vec<String>,
    /// Distinct sessions.
    pub sessions: u64,
    /// Packets both ways.
    pub packets: u64,
    /// Bytes both ways.
    pub bytes: u64,
    /// Records.
    pub records: u64,
}

/// A session's identity: device, 5-tuple and start.
fn session_id(flow: &Flow) -> u64 {
    use std::hash::{Hash, Hasher};
    let r = &flow.record;
    let mut h = FxHasher::default();
    (
        &r.device, r.src, r.dst, r.protocol, r.src_port, r.dst_port, r.start_ms,
    )
        .hash(&mut h);
    h.finish()
}

/// Sums flows into groups.
#[derive(Debug)]
pub struct Aggregator {
    keys: Vec<Field>,
    groups: FxHashMap<Vec<String>, (Row, FxHashSet<u64>)>,
}

impl Aggregator {
    /// Groups by `keys`.
    pub fn new(keys: &[Field]) -> Self {
        Self {
            keys: keys.to_vec(),
            groups: Default::default(),
        }
    }

    /// Adds one (selected) flow.
    pub fn add(&mut self, flow: &Flow) {
        let key: Vec<String> = self.keys.iter().map(|k| k.value(flow)).collect();
        let (row, sessions) = self.group(key);
        row.packets = row.packets.saturating_add(flow.record.total_packets());
        row.bytes = row.bytes.saturating_add(flow.record.total_bytes());
        row.records += 1;
        sessions.insert(session_id(flow));
    }

    /// The group of `key`, made empty if new.
    fn group(&mut self, key: Vec<String>) -> &mut (Row, FxHashSet<u64>) {
        self.groups.entry(key).or_insert_with_key(|key| {
            let row = Row {
                key: key.clone(),
                sessions: 0,
                packets: 0,
                bytes: 0,
                records: 0,
            };
            (row, Default::default())
        })
    }

    /// Adds a group's totals worked out elsewhere (session ids must come from one
    /// function throughout an aggregation).
    pub(crate) fn merge(
        &mut self,
        key: Vec<String>,
        packets: u64,
        bytes: u64,
        records: u64,
        sessions: FxHashSet<u64>,
    ) {
        let (row, all) = self.group(key);
        row.packets = row.packets.saturating_add(packets);
        row.bytes = row.bytes.saturating_add(bytes);
        row.records += records;
        if all.is_empty() {
            *all = sessions;
        } else {
            all.extend(sessions);
        }
    }

    /// The rows, ordered and limited as `query` says.
    pub fn finish(self, query: &Query) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .groups
            .into_values()
            .map(|(mut row, sessions)| {
                row.sessions = sessions.len() as u64;
                row
            })
            .collect();
        sort_rows(&mut rows, query.order);
        if query.limit > 0 {
            rows.truncate(query.limit);
        }
        rows
    }
}

/// Orders rows by the measure, descending, then by key (stable across stores).
pub fn sort_rows(rows: &mut [Row], order: OrderBy) {
    rows.sort_by(|a, b| {
        let measure = |r: &Row| match order {
            OrderBy::Bytes => (r.bytes, r.packets, r.sessions),
            OrderBy::Packets => (r.packets, r.bytes, r.sessions),
            OrderBy::Sessions => (r.sessions, r.bytes, r.packets),
        };
        measure(b).cmp(&measure(a)).then_with(|| a.key.cmp(&b.key))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_flow::{FlowRecord, RecordKind};

    fn flow(src: &str, dst: &str, port: u16, verdict: Verdict, tags: (&str, &str)) -> Flow {
        Flow {
            record: FlowRecord {
                device: "dpu-1".into(),
                kind: RecordKind::End,
                end_reason: None,
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                protocol: 6,
                src_port: 40000,
                dst_port: port,
                start_ms: 1000,
                end_ms: 2000,
                packets: 3,
                bytes: 300,
                rev_packets: 2,
                rev_bytes: 100,
                verdict,
                rule: "shop/0020".into(),
                generation: 7,
            },
            src_endpoint: "shop/web/eth0".into(),
            dst_endpoint: "shop/app/eth0".into(),
            src_tags: [tags.0.into(), "application=shop".into()].into(),
            dst_tags: [tags.1.into(), "application=shop".into()].into(),
        }
    }

    #[test]
    fn filters_parse_and_match() {
        let f = flow(
            "10.1.0.10",
            "10.1.1.10",
            8080,
            Verdict::Allowed,
            ("tier=web", "tier=app"),
        );
        for (text, expected) in [
            ("", true),
            ("verdict=allowed", true),
            ("verdict=denied", false),
            ("dst.tier=app and port=8080", true),
            ("dst.tier=app AND port=8081", false),
            ("src=10.1.0.0/24", true),
            ("dst=10.1.0.0/24", false),
            ("addr=10.1.1.10", true),
            ("tag=tier=web", true),
            ("tag=tier=db", false),
            ("rule!=shop/0020", false),
            ("proto=tcp && generation=7", true),
            ("src.project=shop", true),
            ("src.endpoint=shop/web/eth0", true),
            ("device!=dpu-2", true),
        ] {
            let filter = Filter::parse(text).unwrap();
            assert_eq!(filter.matches(&f), expected, "{text}");
        }
        for (bad, says) in [
            ("colour=red", "unknown field `colour`"),
            ("port=http", "port: `http` is not a port"),
            ("verdict=maybe", "verdict `maybe`"),
            ("src=10.0.0.0/33", "prefix length"),
            ("port", "expected FIELD=VALUE"),
            ("tag=web", "not a tag"),
        ] {
            let e = Filter::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(parse_group_by("src.tier,addr").is_err());
        assert_eq!(
            parse_group_by("src.application, dst.tier").unwrap(),
            [
                Field::SrcTag("application".into()),
                Field::DstTag("tier".into())
            ]
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_duration("7d").unwrap().as_secs(), 604_800);
        assert_eq!(parse_duration("30").unwrap().as_secs(), 30);
        assert!(parse_duration("1y").unwrap_err().contains("unit `y`"));
        assert!(
            parse_duration("h")
                .unwrap_err()
                .contains("expected a number")
        );
    }

    #[test]
    fn aggregation_counts_sessions_once_and_orders_rows() {
        let mut a = Aggregator::new(&parse_group_by("src.tier,dst.tier").unwrap());
        let web_app = flow(
            "10.1.0.10",
            "10.1.1.10",
            8080,
            Verdict::Allowed,
            ("tier=web", "tier=app"),
        );
        a.add(&web_app);
        a.add(&web_app); // two records of one session
        let mut other = flow(
            "10.1.0.11",
            "10.1.2.10",
            5432,
            Verdict::Denied,
            ("tier=web", "tier=db"),
        );
        other.record.bytes = 10_000;
        a.add(&other);
        let q = Query::default();
        let rows = a.finish(&q);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].key, ["web", "db"]);
        assert_eq!(rows[1].key, ["web", "app"]);
        assert_eq!(
            (rows[1].sessions, rows[1].records, rows[1].bytes),
            (1, 2, 800)
        );
    }
}
