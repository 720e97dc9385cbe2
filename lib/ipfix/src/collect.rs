//! The collector: IPFIX (RFC 7011) and NetFlow v9 (RFC 3954) datagrams in, flow records
//! out, no I/O.
//!
//! # Robustness
//!
//! Every length in the input is checked against the bytes that are actually there before
//! it is used, so no input makes the decoder panic, read out of bounds or allocate more than
//! a small multiple of the datagram's size. A datagram whose framing is wrong (header, set
//! lengths, template records, variable-length fields) is refused with a [`DecodeError`] that
//! names the byte offset, set id and template id; its records are dropped, while templates
//! learned from sets before the faulty one are kept (as a collector that processes sets in
//! order would). Content that is merely unusable is skipped and counted in
//! [`CollectorStats`] instead: data sets of unknown templates, options records, fields of
//! unknown Information Elements or of unexpected sizes, records without addresses.
//!
//! The template cache is bounded: [`CollectorConfig::max_templates_per_exporter`] per
//! exporter address (the least recently refreshed template makes room), at most
//! [`CollectorConfig::max_exporters`] exporters (one whose templates all expired makes
//! room), [`MAX_TEMPLATE_FIELDS`] fields per template, and templates not refreshed within
//! [`CollectorConfig::template_lifetime`] expire (RFC 7011 section 8.4: over UDP a collector
//! cannot know a template is gone).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use foldhash::fast::RandomState;
use palisade_flow::{FlowRecord, RecordKind, Verdict};

use crate::ie::{
    PALISADE_PEN, REVERSE_PEN, VARIABLE_LENGTH, end_reason_of_code, end_reason_of_flow_end_reason,
    firewall_event, forwarding_status_dropped, iana, kind_of_firewall_event, palisade,
};
use crate::template::{FieldSpec, min_record_len};

/// The most fields a template may have; longer templates are refused (and counted).
pub const MAX_TEMPLATE_FIELDS: usize = 512;

const IPFIX: u16 = 10;
const NETFLOW_V9: u16 = 9;
const IPFIX_HEADER_LEN: usize = 16;
const V9_HEADER_LEN: usize = 20;
/// Seconds from the NTP epoch (1900) to the Unix epoch.
const NTP_UNIX_OFFSET: i64 = 2_208_988_800;

/// Limits of a [`Collector`]'s template cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectorConfig {
    /// Templates kept per exporter address (all observation domains together).
    pub max_templates_per_exporter: usize,
    /// Exporter addresses with templates. A further address takes the place of the one
    /// refreshed longest ago if all that one's templates expired; otherwise its templates
    /// are refused.
    pub max_exporters: usize,
    /// How long a template lives without being refreshed. `None`: forever.
    pub template_lifetime: Option<Duration>,
}

impl Default for CollectorConfig {
    /// 256 templates per exporter, 1024 exporters, a 30-minute template lifetime.
    fn default() -> Self {
        CollectorConfig {
            max_templates_per_exporter: 256,
            max_exporters: 1024,
            template_lifetime: Some(Duration::from_secs(30 * 60)),
        }
    }
}

/// What a [`Collector`] has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CollectorStats {
    /// Datagrams given to [`Collector::decode`].
    pub datagrams: u64,
    /// Flow records decoded.
    pub records: u64,
    /// Datagrams refused with a [`DecodeError`].
    pub malformed: u64,
    /// Data sets dropped because their template is unknown (never seen, withdrawn,
    /// expired, evicted or refused).
    pub unknown_template_sets: u64,
    /// Template records learned or refreshed (data and options templates).
    pub templates: u64,
    /// Templates withdrawn by their exporter.
    pub template_withdrawals: u64,
    /// Templates dropped to make room for another of the same exporter.
    pub templates_evicted: u64,
    /// Templates expired for want of a refresh.
    pub templates_expired: u64,
    /// Templates refused: too many fields, or too many exporters.
    pub templates_refused: u64,
    /// Options data records read (and not turned into flow records).
    pub options_records: u64,
    /// Data records skipped because they lack a source or destination address.
    pub incomplete_records: u64,
    /// Sets with a reserved set id, skipped.
    pub reserved_sets: u64,
}

/// Why a datagram was refused. Offsets count bytes from the start of the datagram.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The datagram is shorter than a header.
    #[error("datagram of {len} bytes is shorter than the {need}-byte {what}")]
    Truncated {
        /// What was expected.
        what: &'static str,
        /// The bytes it needs.
        need: usize,
        /// The datagram's length.
        len: usize,
    },
    /// Neither NetFlow v9 nor IPFIX.
    #[error("version {version} at offset 0: expected 9 (NetFlow v9) or 10 (IPFIX)")]
    Version {
        /// The version field.
        version: u16,
    },
    /// The IPFIX header's length is not the datagram's.
    #[error(
        "IPFIX message length {declared} at offset 2 does not match the datagram's {actual} bytes"
    )]
    MessageLength {
        /// The header's length field.
        declared: u16,
        /// The datagram's length.
        actual: usize,
    },
    /// A set header's length is impossible.
    #[error("set {set_id} at offset {offset}: length {length} is outside 4..={remaining}")]
    SetLength {
        /// Where the set starts.
        offset: usize,
        /// Its set id.
        set_id: u16,
        /// Its length field.
        length: u16,
        /// The bytes left in the datagram from the set's start.
        remaining: usize,
    },
    /// Bytes after the last set that cannot hold a set header.
    #[error("{len} trailing bytes at offset {offset} are shorter than a set header")]
    Trailing {
        /// Where they start.
        offset: usize,
        /// How many there are.
        len: usize,
    },
    /// A template record that cannot be read.
    #[error("template {template_id} at offset {offset} in set {set_id}: {reason}")]
    Template {
        /// Where the template record starts.
        offset: usize,
        /// The set that holds it.
        set_id: u16,
        /// Its template id.
        template_id: u16,
        /// What is wrong.
        reason: &'static str,
    },
    /// A data record that cannot be read.
    #[error("record at offset {offset} in data set {set_id} (template {set_id}): {reason}")]
    Record {
        /// Where the record starts.
        offset: usize,
        /// The data set (and template) id.
        set_id: u16,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Where a field's value goes in a record's [`Fields`], decided once per template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// Not read: unknown, unusable, or a later occurrence of a role already taken.
    Skip,
    Src,
    Dst,
    /// An unsigned integer kept as is; [`Template::value`] converts it.
    Unsigned(Slot),
    /// Every forwardingStatus field counts (any one saying dropped makes the record denied).
    ForwardingStatus,
    Device,
    Rule,
}

/// The integer values of a record, by index into [`Fields::values`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Protocol,
    SrcPort,
    DstPort,
    Bytes,
    Packets,
    RevBytes,
    RevPackets,
    TotalBytes,
    TotalPackets,
    RevTotalBytes,
    RevTotalPackets,
    /// In the unit of [`Template::start_unit`].
    Start,
    /// In the unit of [`Template::end_unit`].
    End,
    StartUptime,
    EndUptime,
    DurationMs,
    SystemInit,
    FirewallEvent,
    FlowEndReason,
    Generation,
    PalisadeEndReason,
}

const SLOTS: usize = Slot::PalisadeEndReason as usize + 1;

/// How a template encodes a flow's start or end time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimeUnit {
    Millis,
    Secs,
    Ntp,
    /// Microseconds before the message's export time.
    DeltaMicros,
}

impl TimeUnit {
    fn to_ms(self, n: u64, context: &Context) -> i64 {
        match self {
            TimeUnit::Millis => clamp_i64(n),
            TimeUnit::Secs => clamp_i64(n).saturating_mul(1000),
            TimeUnit::Ntp => ntp_ms(n),
            TimeUnit::DeltaMicros => context.export_ms.saturating_sub(clamp_i64(n / 1000)),
        }
    }
}

/// What reading a field does, and the time unit of a time field; [`Action::Skip`] when the
/// element is unknown or its length unusable. Decided once when the template is learned.
fn field_action(spec: &FieldSpec) -> (Action, Option<TimeUnit>) {
    use Action::{Device, Dst, ForwardingStatus, Rule, Skip, Src, Unsigned as U};
    let plain = |slot| (U(slot), None);
    let time = |slot, unit| (U(slot), Some(unit));
    let (action, unit) = match (spec.enterprise, spec.id) {
        (0, iana::SOURCE_IPV4_ADDRESS | iana::SOURCE_IPV6_ADDRESS) => (Src, None),
        (0, iana::DESTINATION_IPV4_ADDRESS | iana::DESTINATION_IPV6_ADDRESS) => (Dst, None),
        (0, iana::PROTOCOL_IDENTIFIER) => plain(Slot::Protocol),
        (0, iana::SOURCE_TRANSPORT_PORT | iana::UDP_SOURCE_PORT | iana::TCP_SOURCE_PORT) => {
            plain(Slot::SrcPort)
        }
        (
            0,
            iana::DESTINATION_TRANSPORT_PORT
            | iana::UDP_DESTINATION_PORT
            | iana::TCP_DESTINATION_PORT,
        ) => plain(Slot::DstPort),
        (0, iana::OCTET_DELTA_COUNT | iana::INITIATOR_OCTETS) => plain(Slot::Bytes),
        (0, iana::PACKET_DELTA_COUNT | iana::INITIATOR_PACKETS) => plain(Slot::Packets),
        (0, iana::RESPONDER_OCTETS) | (REVERSE_PEN, iana::OCTET_DELTA_COUNT) => {
            plain(Slot::RevBytes)
        }
        (0, iana::RESPONDER_PACKETS) | (REVERSE_PEN, iana::PACKET_DELTA_COUNT) => {
            plain(Slot::RevPackets)
        }
        (0, iana::OCTET_TOTAL_COUNT) => plain(Slot::TotalBytes),
        (0, iana::PACKET_TOTAL_COUNT) => plain(Slot::TotalPackets),
        (REVERSE_PEN, iana::OCTET_TOTAL_COUNT) => plain(Slot::RevTotalBytes),
        (REVERSE_PEN, iana::PACKET_TOTAL_COUNT) => plain(Slot::RevTotalPackets),
        (0, iana::FLOW_START_MILLISECONDS) => time(Slot::Start, TimeUnit::Millis),
        (0, iana::FLOW_END_MILLISECONDS) => time(Slot::End, TimeUnit::Millis),
        (0, iana::FLOW_START_SECONDS) => time(Slot::Start, TimeUnit::Secs),
        (0, iana::FLOW_END_SECONDS) => time(Slot::End, TimeUnit::Secs),
        (0, iana::FLOW_START_MICROSECONDS | iana::FLOW_START_NANOSECONDS) => {
            time(Slot::Start, TimeUnit::Ntp)
        }
        (0, iana::FLOW_END_MICROSECONDS | iana::FLOW_END_NANOSECONDS) => {
            time(Slot::End, TimeUnit::Ntp)
        }
        (0, iana::FLOW_START_DELTA_MICROSECONDS) => time(Slot::Start, TimeUnit::DeltaMicros),
        (0, iana::FLOW_END_DELTA_MICROSECONDS) => time(Slot::End, TimeUnit::DeltaMicros),
        (0, iana::FLOW_START_SYS_UP_TIME) => plain(Slot::StartUptime),
        (0, iana::FLOW_END_SYS_UP_TIME) => plain(Slot::EndUptime),
        (0, iana::FLOW_DURATION_MILLISECONDS) => plain(Slot::DurationMs),
        (0, iana::SYSTEM_INIT_TIME_MILLISECONDS) => plain(Slot::SystemInit),
        (0, iana::FIREWALL_EVENT) => plain(Slot::FirewallEvent),
        (0, iana::FORWARDING_STATUS) => (ForwardingStatus, None),
        (0, iana::FLOW_END_REASON) => plain(Slot::FlowEndReason),
        (PALISADE_PEN, palisade::RULE_ID) => (Rule, None),
        (PALISADE_PEN, palisade::GENERATION) => plain(Slot::Generation),
        (PALISADE_PEN, palisade::DEVICE) => (Device, None),
        (PALISADE_PEN, palisade::END_REASON) => plain(Slot::PalisadeEndReason),
        _ => (Skip, None),
    };
    let usable = match (action, unit) {
        (Skip | Rule | Device, _) => true,
        (Src | Dst, _) => matches!(spec.length, 4 | 16),
        (_, Some(TimeUnit::Ntp)) => spec.length == 8,
        _ => (1..=8).contains(&spec.length),
    };
    if usable { (action, unit) } else { (Skip, None) }
}

/// A field at a constant offset from the start of its record.
#[derive(Clone, Copy, Debug)]
struct Fixed {
    start: usize,
    end: usize,
    action: Action,
}

/// The fixed-length fields before a template's first variable-length one: they sit at the
/// same offsets in every record. Grouped by how they are read, so that reading them takes
/// a few uniform loops rather than a dispatch per field; skipped fields are left out.
#[derive(Debug, Default)]
struct Prefix {
    /// The bytes the fields take.
    len: usize,
    /// Unsigned integers of 1, 2, 4 and 8 bytes: (offset, [`Slot`] index).
    u8s: Vec<(usize, usize)>,
    u16s: Vec<(usize, usize)>,
    u32s: Vec<(usize, usize)>,
    u64s: Vec<(usize, usize)>,
    /// The rest (addresses, integers of other widths, fixed-length names), read one by one.
    other: Vec<Fixed>,
}

impl Prefix {
    fn push(&mut self, length: u16, action: Action) {
        let start = self.len;
        self.len += usize::from(length);
        let (list, slot) = match (action, length) {
            (Action::Skip, _) => return,
            (Action::Unsigned(slot), 1) => (&mut self.u8s, slot),
            (Action::Unsigned(slot), 2) => (&mut self.u16s, slot),
            (Action::Unsigned(slot), 4) => (&mut self.u32s, slot),
            (Action::Unsigned(slot), 8) => (&mut self.u64s, slot),
            _ => {
                self.other.push(Fixed {
                    start,
                    end: self.len,
                    action,
                });
                return;
            }
        };
        list.push((start, slot as usize));
    }

    /// Reads the fields of one record, whose first [`Prefix::len`] bytes are `bytes`.
    fn read<'a>(&self, bytes: &'a [u8], fields: &mut Fields<'a>) {
        fn at<const N: usize>(bytes: &[u8], start: usize) -> Option<[u8; N]> {
            bytes.get(start..)?.first_chunk().copied()
        }
        for &(start, slot) in &self.u8s {
            if let (Some([b]), Some(v)) = (at(bytes, start), fields.values.get_mut(slot)) {
                *v = u64::from(b);
            }
        }
        for &(start, slot) in &self.u16s {
            if let (Some(b), Some(v)) = (at(bytes, start), fields.values.get_mut(slot)) {
                *v = u64::from(u16::from_be_bytes(b));
            }
        }
        for &(start, slot) in &self.u32s {
            if let (Some(b), Some(v)) = (at(bytes, start), fields.values.get_mut(slot)) {
                *v = u64::from(u32::from_be_bytes(b));
            }
        }
        for &(start, slot) in &self.u64s {
            if let (Some(b), Some(v)) = (at(bytes, start), fields.values.get_mut(slot)) {
                *v = u64::from_be_bytes(b);
            }
        }
        for f in &self.other {
            if let Some(b) = bytes.get(f.start..f.end) {
                fields.read(f.action, b);
            }
        }
    }
}

/// A learned template, compiled into a plan for reading its records.
///
/// Every record of a template has the same fields, so which field supplies a role (the
/// first usable one, module doc) is settled here once: later occurrences become
/// [`Action::Skip`], and a record's values need no "already set?" checks.
#[derive(Debug)]
struct Template {
    /// The fixed-length fields before the first variable-length one.
    prefix: Prefix,
    /// The fields from the first variable-length one on: length ([`VARIABLE_LENGTH`] for
    /// variable) and action.
    rest: Vec<(u16, Action)>,
    /// The slots some field supplies, one bit per [`Slot`].
    present: u32,
    start_unit: TimeUnit,
    end_unit: TimeUnit,
    /// Options templates describe metadata, not flows.
    options: bool,
    /// The shortest record (variable-length fields count one byte); never zero.
    min_len: usize,
}

impl Template {
    fn new(fields: &[FieldSpec], options: bool, min_len: usize) -> Template {
        let mut template = Template {
            prefix: Prefix::default(),
            rest: Vec::new(),
            present: 0,
            start_unit: TimeUnit::Millis,
            end_unit: TimeUnit::Millis,
            options,
            min_len,
        };
        // Roles taken so far: the slots' bits, then addresses and names.
        const SRC: u64 = 1 << SLOTS;
        const DST: u64 = SRC << 1;
        const DEVICE: u64 = SRC << 2;
        const RULE: u64 = SRC << 3;
        let mut taken = 0u64;
        for spec in fields {
            let (mut action, unit) = field_action(spec);
            let bit = match action {
                Action::Skip | Action::ForwardingStatus => 0,
                Action::Src => SRC,
                Action::Dst => DST,
                Action::Device => DEVICE,
                Action::Rule => RULE,
                Action::Unsigned(slot) => 1 << slot as u32,
            };
            if taken & bit != 0 {
                action = Action::Skip;
            } else {
                taken |= bit;
                match (action, unit) {
                    (Action::Unsigned(Slot::Start), Some(unit)) => template.start_unit = unit,
                    (Action::Unsigned(Slot::End), Some(unit)) => template.end_unit = unit,
                    _ => {}
                }
            }
            if spec.length == VARIABLE_LENGTH || !template.rest.is_empty() {
                template.rest.push((spec.length, action));
                continue;
            }
            template.prefix.push(spec.length, action);
        }
        template.present = (taken & ((1 << SLOTS) - 1)) as u32;
        template
    }

    /// The value of a slot in a record of this template, if the template has a field for it.
    fn value(&self, fields: &Fields<'_>, slot: Slot) -> Option<u64> {
        (self.present & (1 << slot as u32) != 0).then(|| fields.values[slot as usize])
    }
}

/// A cached template and when it was last (re)defined.
#[derive(Debug)]
struct Cached {
    template: Arc<Template>,
    refreshed_ms: i64,
}

/// A template's identity within one exporter address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct TemplateKey {
    version: u16,
    domain: u32,
    id: u16,
}

/// What is known of one exporter address.
#[derive(Debug, Default)]
struct ExporterState {
    templates: HashMap<TemplateKey, Cached, RandomState>,
    /// When a template of this exporter was last learned or refreshed.
    last_refresh_ms: i64,
    /// systemInitTimeMilliseconds per IPFIX observation domain, from options records.
    system_init_ms: HashMap<u32, i64, RandomState>,
}

/// The header fields the records of one datagram are read against.
#[derive(Clone, Copy, Debug)]
struct Context {
    version: u16,
    domain: u32,
    export_ms: i64,
    /// NetFlow v9: the header's sysUptime, taken at the export time.
    v9_uptime_ms: u32,
}

/// Decodes IPFIX and NetFlow v9 datagrams from any number of exporters.
#[derive(Debug, Default)]
pub struct Collector {
    config: CollectorConfig,
    /// Looked up once per data set. Like every map here keyed by what the network sends,
    /// hashed with foldhash seeded per map (exporters cannot aim collisions at it), which
    /// costs a fraction of SipHash.
    exporters: HashMap<SocketAddr, ExporterState, RandomState>,
    stats: CollectorStats,
    names: Names,
}

/// Most distinct device and rule names kept for sharing; more and the list starts over.
const MAX_NAMES: usize = 16_384;

/// Slots of [`Names::recent`].
const RECENT_NAMES: usize = 512;

/// Device and rule names as records carry them, each decoded once and shared by every
/// record that names it (an exporter repeats the same few in every record).
///
/// Looked up twice per record: first in `recent`, a small direct-mapped cache indexed by a
/// cheap hash of the name's last bytes, then in the maps, hashed with foldhash (seeded per
/// map, so exporters cannot aim collisions at it) rather than SipHash. The cache's hash is
/// not seeded: names that collide there only cost the map lookup.
#[derive(Debug)]
struct Names {
    /// Names that are valid UTF-8 (so that the name's bytes are the key).
    recent: Vec<Option<Arc<str>>>,
    by_bytes: HashMap<Vec<u8>, Arc<str>, RandomState>,
    by_exporter: HashMap<IpAddr, Arc<str>, RandomState>,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            recent: vec![None; RECENT_NAMES],
            by_bytes: HashMap::default(),
            by_exporter: HashMap::default(),
        }
    }
}

impl Names {
    fn of(&mut self, bytes: &[u8]) -> Arc<str> {
        // Head and tail words: names that differ anywhere in their first or last 8 bytes
        // land in different sets (most do: "policy/0017", "policy/0018").
        let word = |w: Option<&[u8; 8]>| w.map_or(0, |w| u64::from_le_bytes(*w));
        let (head, tail) = match (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
            (Some(h), t) => (word(Some(h)), word(t)),
            _ => (bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b)), 0),
        };
        let hash =
            (head.rotate_left(29) ^ tail ^ bytes.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // Two ways per set.
        let set = (hash >> 40) as usize % (RECENT_NAMES / 2) * 2;
        for way in set..set + 2 {
            if let Some(Some(name)) = self.recent.get(way)
                && same_bytes(name.as_bytes(), bytes)
            {
                return Arc::clone(name);
            }
        }
        let name = match self.by_bytes.get(bytes) {
            Some(name) => Arc::clone(name),
            None => {
                if self.by_bytes.len() >= MAX_NAMES {
                    self.by_bytes.clear();
                }
                let name: Arc<str> = String::from_utf8_lossy(bytes).into();
                self.by_bytes.insert(bytes.to_vec(), Arc::clone(&name));
                name
            }
        };
        if name.as_bytes() == bytes {
            // The empty way, else the first (whose name moves to the second).
            let way = match self.recent.get(set) {
                Some(None) => set,
                _ if matches!(self.recent.get(set + 1), Some(None)) => set + 1,
                _ => {
                    self.recent.swap(set, set + 1);
                    set
                }
            };
            if let Some(recent) = self.recent.get_mut(way) {
                *recent = Some(Arc::clone(&name));
            }
        }
        name
    }

    fn of_exporter(&mut self, ip: IpAddr) -> Arc<str> {
        if let Some(name) = self.by_exporter.get(&ip) {
            return Arc::clone(name);
        }
        if self.by_exporter.len() >= MAX_NAMES {
            self.by_exporter.clear();
        }
        let name: Arc<str> = ip.to_string().into();
        self.by_exporter.insert(ip, Arc::clone(&name));
        name
    }
}

/// `a == b`, comparing names of up to 16 bytes (what records usually carry) with a few
/// word compares rather than a call to `memcmp`.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() > 16 {
        return a == b;
    }
    fn ends<const N: usize>(s: &[u8]) -> Option<(&[u8; N], &[u8; N])> {
        Some((s.first_chunk()?, s.last_chunk()?))
    }
    // Two overlapping words cover every byte of a slice of N to 2N bytes.
    if let (Some(x), Some(y)) = (ends::<8>(a), ends::<8>(b)) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (ends::<4>(a), ends::<4>(b)) {
        return x == y;
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

impl Collector {
    /// A collector with these limits.
    pub fn new(config: CollectorConfig) -> Self {
        Collector {
            config,
            exporters: HashMap::default(),
            stats: CollectorStats::default(),
            names: Names::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &CollectorStats {
        &self.stats
    }

    /// The templates cached for all exporters.
    pub fn template_count(&self) -> usize {
        self.exporters.values().map(|e| e.templates.len()).sum()
    }

    /// Decodes one datagram received from `exporter` at `now_ms` (ms since the Unix epoch,
    /// used for template lifetimes): learns its templates and returns its flow records.
    ///
    /// Records of third-party exporters get the exporter's IP address as device unless
    /// they carry Palisade's device element, the verdict `Allowed` unless firewallEvent
    /// says denied or forwardingStatus says dropped, kind from firewallEvent (`End` without
    /// one), an empty rule and generation 0 unless they carry Palisade's elements.
    pub fn decode(
        &mut self,
        exporter: SocketAddr,
        datagram: &[u8],
        now_ms: i64,
    ) -> Result<Vec<FlowRecord>, DecodeError> {
        let mut records = Vec::new();
        self.decode_into(exporter, datagram, now_ms, &mut records)?;
        Ok(records)
    }

    /// [`Collector::decode`], appending the datagram's records to `records` (a collector
    /// reusing one buffer for many datagrams); returns how many it appended. A malformed
    /// datagram appends nothing.
    pub fn decode_into(
        &mut self,
        exporter: SocketAddr,
        datagram: &[u8],
        now_ms: i64,
        records: &mut Vec<FlowRecord>,
    ) -> Result<usize, DecodeError> {
        self.stats.datagrams += 1;
        let before = records.len();
        match self.decode_sets(exporter, datagram, now_ms, records) {
            Ok(()) => {
                let n = records.len() - before;
                self.stats.records += n as u64;
                Ok(n)
            }
            Err(e) => {
                records.truncate(before);
                self.stats.malformed += 1;
                Err(e)
            }
        }
    }

    fn decode_sets(
        &mut self,
        exporter: SocketAddr,
        datagram: &[u8],
        now_ms: i64,
        records: &mut Vec<FlowRecord>,
    ) -> Result<(), DecodeError> {
        let len = datagram.len();
        let version = be16(datagram, 0).ok_or(DecodeError::Truncated {
            what: "version field",
            need: 2,
            len,
        })?;
        let (context, sets_start) = match version {
            IPFIX => {
                if len < IPFIX_HEADER_LEN {
                    return Err(DecodeError::Truncated {
                        what: "IPFIX message header",
                        need: IPFIX_HEADER_LEN,
                        len,
                    });
                }
                let declared = be16(datagram, 2).unwrap_or(0);
                if usize::from(declared) != len {
                    return Err(DecodeError::MessageLength {
                        declared,
                        actual: len,
                    });
                }
                let context = Context {
                    version,
                    domain: be32(datagram, 12).unwrap_or(0),
                    export_ms: i64::from(be32(datagram, 4).unwrap_or(0)) * 1000,
                    v9_uptime_ms: 0,
                };
                (context, IPFIX_HEADER_LEN)
            }
            NETFLOW_V9 => {
                if len < V9_HEADER_LEN {
                    return Err(DecodeError::Truncated {
                        what: "NetFlow v9 packet header",
                        need: V9_HEADER_LEN,
                        len,
                    });
                }
                let context = Context {
                    version,
                    domain: be32(datagram, 16).unwrap_or(0),
                    export_ms: i64::from(be32(datagram, 8).unwrap_or(0)) * 1000,
                    v9_uptime_ms: be32(datagram, 4).unwrap_or(0),
                };
                (context, V9_HEADER_LEN)
            }
            version => return Err(DecodeError::Version { version }),
        };

        let mut offset = sets_start;
        while offset < len {
            let remaining = len - offset;
            let (Some(set_id), Some(length)) = (be16(datagram, offset), be16(datagram, offset + 2))
            else {
                return Err(DecodeError::Trailing {
                    offset,
                    len: remaining,
                });
            };
            if length < 4 || usize::from(length) > remaining {
                return Err(DecodeError::SetLength {
                    offset,
                    set_id,
                    length,
                    remaining,
                });
            }
            let body = offset + 4..offset + usize::from(length);
            let set = Set {
                datagram,
                body,
                set_id,
            };
            match (version, set_id) {
                (IPFIX, 2) | (NETFLOW_V9, 0) => {
                    self.templates(exporter, &context, &set, false, now_ms)?
                }
                (IPFIX, 3) | (NETFLOW_V9, 1) => {
                    self.templates(exporter, &context, &set, true, now_ms)?
                }
                (_, 256..) => self.data(exporter, &context, &set, now_ms, records)?,
                _ => self.stats.reserved_sets += 1,
            }
            offset += usize::from(length);
        }
        Ok(())
    }

    /// Reads a Template Set or Options Template Set (IPFIX), or a template or options
    /// template FlowSet (NetFlow v9).
    fn templates(
        &mut self,
        exporter: SocketAddr,
        context: &Context,
        set: &Set<'_>,
        options: bool,
        now_ms: i64,
    ) -> Result<(), DecodeError> {
        let data = set.datagram;
        let end = set.body.end;
        let mut pos = set.body.start;
        // Fewer bytes than a template record header, or only zeros, are padding.
        while end - pos >= 4 && data[pos..end].iter().any(|&b| b != 0) {
            let start = pos;
            let template_id = be16(data, pos).unwrap_or(0);
            let field_count = be16(data, pos + 2).unwrap_or(0);
            pos += 4;
            let error = |reason| DecodeError::Template {
                offset: start,
                set_id: set.set_id,
                template_id,
                reason,
            };
            let key = TemplateKey {
                version: context.version,
                domain: context.domain,
                id: template_id,
            };
            if context.version == IPFIX && field_count == 0 {
                if template_id == set.set_id {
                    self.withdraw_all(exporter, context, options);
                } else if template_id >= 256 {
                    self.withdraw(exporter, key);
                } else {
                    return Err(error("template ids below 256 are reserved"));
                }
                continue;
            }
            if template_id < 256 {
                return Err(error("template ids below 256 are reserved"));
            }
            // The number of field specifiers (scope fields included).
            let count = if !options {
                usize::from(field_count)
            } else if context.version == IPFIX {
                // The scope field count only says how many leading fields are scopes.
                if end - pos < 2 {
                    return Err(error("the scope field count runs past the end of the set"));
                }
                pos += 2;
                usize::from(field_count)
            } else {
                // NetFlow v9 gives the scope and option lengths in bytes.
                let scope_bytes = usize::from(field_count);
                let Some(option_bytes) = be16(data, pos).filter(|_| end - pos >= 2) else {
                    return Err(error("the option length runs past the end of the set"));
                };
                pos += 2;
                let option_bytes = usize::from(option_bytes);
                if scope_bytes % 4 != 0 || option_bytes % 4 != 0 {
                    return Err(error("scope and option lengths must be multiples of 4"));
                }
                (scope_bytes + option_bytes) / 4
            };
            let mut fields = Vec::with_capacity(count.min((end - pos) / 4));
            for _ in 0..count {
                if end - pos < 4 {
                    return Err(error("field specifiers run past the end of the set"));
                }
                let raw_id = be16(data, pos).unwrap_or(0);
                let length = be16(data, pos + 2).unwrap_or(0);
                pos += 4;
                let spec = if context.version == IPFIX && raw_id & 0x8000 != 0 {
                    if end - pos < 4 {
                        return Err(error("an enterprise number runs past the end of the set"));
                    }
                    let enterprise = be32(data, pos).unwrap_or(0);
                    pos += 4;
                    FieldSpec {
                        id: raw_id & 0x7fff,
                        enterprise,
                        length,
                    }
                } else {
                    FieldSpec {
                        id: raw_id,
                        enterprise: 0,
                        length,
                    }
                };
                fields.push(spec);
            }
            if count == 0 {
                // A NetFlow v9 template without fields: nothing to learn.
                continue;
            }
            let min_len = min_record_len(&fields);
            if min_len == 0 {
                return Err(error("its records would be empty"));
            }
            if count > MAX_TEMPLATE_FIELDS {
                self.stats.templates_refused += 1;
                continue;
            }
            self.learn(
                exporter,
                key,
                Template::new(&fields, options, min_len),
                now_ms,
            );
        }
        Ok(())
    }

    fn learn(&mut self, exporter: SocketAddr, key: TemplateKey, template: Template, now_ms: i64) {
        if !self.exporters.contains_key(&exporter)
            && self.exporters.len() >= self.config.max_exporters
            && !self.forget_stalest_exporter(now_ms)
        {
            self.stats.templates_refused += 1;
            return;
        }
        let state = self.exporters.entry(exporter).or_default();
        state.last_refresh_ms = state.last_refresh_ms.max(now_ms);
        if !state.templates.contains_key(&key)
            && state.templates.len() >= self.config.max_templates_per_exporter
        {
            let oldest = state
                .templates
                .iter()
                .min_by_key(|(_, c)| c.refreshed_ms)
                .map(|(k, _)| *k);
            match oldest {
                Some(oldest) => {
                    state.templates.remove(&oldest);
                    self.stats.templates_evicted += 1;
                }
                None => {
                    // A cap of zero templates.
                    self.stats.templates_refused += 1;
                    self.forget_if_empty(exporter);
                    return;
                }
            }
        }
        state.templates.insert(
            key,
            Cached {
                template: Arc::new(template),
                refreshed_ms: now_ms,
            },
        );
        self.stats.templates += 1;
    }

    /// Makes room for a new exporter by dropping the one refreshed longest ago, if all its
    /// templates have expired (an exporter that restarted on another port, say). Returns
    /// whether it did.
    fn forget_stalest_exporter(&mut self, now_ms: i64) -> bool {
        let Some(lifetime) = self.config.template_lifetime else {
            return false;
        };
        let stalest = self
            .exporters
            .iter()
            .min_by_key(|(_, s)| s.last_refresh_ms)
            .map(|(address, s)| (*address, s.last_refresh_ms, s.templates.len()));
        match stalest {
            Some((address, refreshed_ms, templates)) if expired(refreshed_ms, now_ms, lifetime) => {
                self.exporters.remove(&address);
                self.stats.templates_expired += templates as u64;
                true
            }
            _ => false,
        }
    }

    fn withdraw(&mut self, exporter: SocketAddr, key: TemplateKey) {
        if let Some(state) = self.exporters.get_mut(&exporter)
            && state.templates.remove(&key).is_some()
        {
            self.stats.template_withdrawals += 1;
        }
        self.forget_if_empty(exporter);
    }

    /// Withdraws all data (or all options) templates of the datagram's domain.
    fn withdraw_all(&mut self, exporter: SocketAddr, context: &Context, options: bool) {
        if let Some(state) = self.exporters.get_mut(&exporter) {
            let before = state.templates.len();
            state.templates.retain(|k, c| {
                k.version != context.version
                    || k.domain != context.domain
                    || c.template.options != options
            });
            self.stats.template_withdrawals += (before - state.templates.len()) as u64;
        }
        self.forget_if_empty(exporter);
    }

    fn forget_if_empty(&mut self, exporter: SocketAddr) {
        if self
            .exporters
            .get(&exporter)
            .is_some_and(|s| s.templates.is_empty())
        {
            self.exporters.remove(&exporter);
        }
    }

    /// The live template of a data set, expiring it if it outlived its lifetime.
    fn template(
        &mut self,
        exporter: SocketAddr,
        key: TemplateKey,
        now_ms: i64,
    ) -> Option<Arc<Template>> {
        let state = self.exporters.get_mut(&exporter)?;
        let cached = state.templates.get(&key)?;
        let lifetime = self.config.template_lifetime;
        if lifetime.is_some_and(|l| expired(cached.refreshed_ms, now_ms, l)) {
            state.templates.remove(&key);
            self.stats.templates_expired += 1;
            self.forget_if_empty(exporter);
            return None;
        }
        Some(cached.template.clone())
    }

    /// Reads a Data Set (or data FlowSet).
    fn data(
        &mut self,
        exporter: SocketAddr,
        context: &Context,
        set: &Set<'_>,
        now_ms: i64,
        records: &mut Vec<FlowRecord>,
    ) -> Result<(), DecodeError> {
        let key = TemplateKey {
            version: context.version,
            domain: context.domain,
            id: set.set_id,
        };
        let Some(template) = self.template(exporter, key, now_ms) else {
            self.stats.unknown_template_sets += 1;
            return Ok(());
        };
        let data = set.datagram;
        let end = set.body.end;
        let mut pos = set.body.start;
        // Every record of the template has the same fields, so each record overwrites all
        // that the one before it left here; only `dropped` accumulates.
        let mut fields = Fields::default();
        // Fewer bytes than the shortest record are padding.
        while end - pos >= template.min_len {
            let start = pos;
            fields.dropped = false;
            // The loop's condition guarantees the prefix: min_len counts it.
            template
                .prefix
                .read(&data[pos..pos + template.prefix.len], &mut fields);
            pos += template.prefix.len;
            for &(length, action) in &template.rest {
                let field_len = if length == VARIABLE_LENGTH {
                    let error = |reason| DecodeError::Record {
                        offset: start,
                        set_id: set.set_id,
                        reason,
                    };
                    let Some(&first) = data[pos..end].first() else {
                        return Err(error("a variable-length field's length runs past the set"));
                    };
                    pos += 1;
                    if first < 255 {
                        usize::from(first)
                    } else {
                        let long = be16(data, pos)
                            .filter(|_| pos + 2 <= end)
                            .ok_or(error("a variable-length field's length runs past the set"))?;
                        pos += 2;
                        usize::from(long)
                    }
                } else {
                    usize::from(length)
                };
                if end - pos < field_len {
                    return Err(DecodeError::Record {
                        offset: start,
                        set_id: set.set_id,
                        reason: "a field runs past the end of the set",
                    });
                }
                fields.read(action, &data[pos..pos + field_len]);
                pos += field_len;
            }
            if template.options {
                self.stats.options_records += 1;
                if let Some(init) = template.value(&fields, Slot::SystemInit) {
                    self.remember_system_init(exporter, context.domain, clamp_i64(init));
                }
                continue;
            }
            match (fields.src, fields.dst) {
                (Some(src), Some(dst)) => {
                    records.push(self.record(exporter, context, &template, &fields, src, dst));
                }
                _ => self.stats.incomplete_records += 1,
            }
        }
        Ok(())
    }

    fn remember_system_init(&mut self, exporter: SocketAddr, domain: u32, init_ms: i64) {
        let cap = self.config.max_templates_per_exporter;
        if let Some(state) = self.exporters.get_mut(&exporter)
            && (state.system_init_ms.len() < cap || state.system_init_ms.contains_key(&domain))
        {
            state.system_init_ms.insert(domain, init_ms);
        }
    }

    /// Turns a data record's fields, and its addresses, into a flow record.
    fn record(
        &mut self,
        exporter: SocketAddr,
        context: &Context,
        template: &Template,
        v: &Fields<'_>,
        src: IpAddr,
        dst: IpAddr,
    ) -> FlowRecord {
        let value = |slot| template.value(v, slot);
        let system_init_ms = value(Slot::SystemInit).map(clamp_i64);
        // The epoch of sysUpTime-relative times: boot time from the NetFlow v9 header, or
        // IPFIX's systemInitTimeMilliseconds (from the record or an options record).
        // Looked up only for records that have such times.
        let uptime_base = || {
            if context.version == NETFLOW_V9 {
                Some(context.export_ms - i64::from(context.v9_uptime_ms))
            } else {
                system_init_ms.or_else(|| {
                    self.exporters
                        .get(&exporter)
                        .and_then(|s| s.system_init_ms.get(&context.domain).copied())
                })
            }
        };
        let from_uptime = |uptime: Option<u64>| -> Option<i64> {
            let t = uptime_base()?.saturating_add(clamp_i64(uptime?));
            Some(nearest_wrap(t, context.export_ms))
        };
        let start_ms = value(Slot::Start).map(|n| template.start_unit.to_ms(n, context));
        let end_ms = value(Slot::End).map(|n| template.end_unit.to_ms(n, context));
        let mut start = start_ms.or_else(|| from_uptime(value(Slot::StartUptime)));
        let mut end = end_ms.or_else(|| from_uptime(value(Slot::EndUptime)));
        if let Some(duration) = value(Slot::DurationMs).map(clamp_i64) {
            start = start.or(end.map(|e| e.saturating_sub(duration)));
            end = end.or(start.map(|s| s.saturating_add(duration)));
        }
        let (start_ms, end_ms) = match (start, end) {
            (Some(s), Some(e)) => (s, e),
            (Some(t), None) | (None, Some(t)) => (t, t),
            (None, None) => (context.export_ms, context.export_ms),
        };
        let firewall_event = value(Slot::FirewallEvent).map(|n| n as u8);
        let kind = firewall_event.map_or(RecordKind::End, kind_of_firewall_event);
        let denied = firewall_event == Some(firewall_event::DENIED) || v.dropped;
        let end_reason = if kind == RecordKind::End {
            value(Slot::PalisadeEndReason)
                .and_then(|n| end_reason_of_code(n as u8))
                .or_else(|| {
                    value(Slot::FlowEndReason).and_then(|n| end_reason_of_flow_end_reason(n as u8))
                })
        } else {
            None
        };
        let count = |delta, total| value(delta).or(value(total)).unwrap_or(0);
        FlowRecord {
            device: match v.device {
                Some(d) => self.names.of(d),
                None => self.names.of_exporter(exporter.ip()),
            },
            kind,
            end_reason,
            src,
            dst,
            protocol: value(Slot::Protocol).unwrap_or(0) as u8,
            src_port: value(Slot::SrcPort).unwrap_or(0) as u16,
            dst_port: value(Slot::DstPort).unwrap_or(0) as u16,
            start_ms,
            end_ms,
            packets: count(Slot::Packets, Slot::TotalPackets),
            bytes: count(Slot::Bytes, Slot::TotalBytes),
            rev_packets: count(Slot::RevPackets, Slot::RevTotalPackets),
            rev_bytes: count(Slot::RevBytes, Slot::RevTotalBytes),
            verdict: if denied {
                Verdict::Denied
            } else {
                Verdict::Allowed
            },
            rule: self.names.of(v.rule.unwrap_or_default()),
            generation: value(Slot::Generation).unwrap_or(0),
        }
    }
}

/// A set within a datagram.
struct Set<'a> {
    datagram: &'a [u8],
    /// The set's content, after its header.
    body: std::ops::Range<usize>,
    set_id: u16,
}

/// The fields of one data record, as its template's plan reads them.
#[derive(Default)]
struct Fields<'a> {
    /// By [`Slot`]; meaningful where the template's `present` says so.
    values: [u64; SLOTS],
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    dropped: bool,
    device: Option<&'a [u8]>,
    rule: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    /// Reads a field's bytes; [`field_action`] guaranteed their length suits the action.
    fn read(&mut self, action: Action, bytes: &'a [u8]) {
        match action {
            Action::Skip => {}
            Action::Src => self.src = Some(address(bytes)),
            Action::Dst => self.dst = Some(address(bytes)),
            Action::Unsigned(slot) => self.values[slot as usize] = unsigned(bytes),
            Action::ForwardingStatus => {
                self.dropped |= forwarding_status_dropped(unsigned(bytes), bytes.len());
            }
            Action::Device => self.device = Some(bytes),
            Action::Rule => self.rule = Some(bytes),
        }
    }
}

/// A big-endian unsigned integer of 1 to 8 bytes (reduced-size encoding, RFC 7011 6.2).
fn unsigned(bytes: &[u8]) -> u64 {
    match *bytes {
        [a] => u64::from(a),
        [a, b] => u64::from(u16::from_be_bytes([a, b])),
        [a, b, c, d] => u64::from(u32::from_be_bytes([a, b, c, d])),
        [a, b, c, d, e, f, g, h] => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
        _ => bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b)),
    }
}

fn address(bytes: &[u8]) -> IpAddr {
    match <[u8; 4]>::try_from(bytes) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => {
            let mut v6 = [0; 16];
            let n = bytes.len().min(16);
            v6[..n].copy_from_slice(&bytes[..n]);
            IpAddr::V6(Ipv6Addr::from(v6))
        }
    }
}

/// Milliseconds since the Unix epoch of an NTP timestamp (RFC 7011 6.1.9/10).
fn ntp_ms(ntp: u64) -> i64 {
    let secs = (ntp >> 32) as i64 - NTP_UNIX_OFFSET;
    let frac_ms = ((ntp & 0xffff_ffff) * 1000) >> 32;
    secs * 1000 + frac_ms as i64
}

/// Whether something refreshed at `refreshed_ms` has outlived `lifetime` at `now_ms` (a
/// clock that stepped back expires nothing).
fn expired(refreshed_ms: i64, now_ms: i64, lifetime: Duration) -> bool {
    let age = now_ms.saturating_sub(refreshed_ms);
    age > 0 && age as u128 > lifetime.as_millis()
}

/// The time `t`, or `t` shifted by a multiple of 2^32 ms, that is nearest to `reference`.
///
/// sysUpTime-relative times are 32-bit milliseconds: they wrap every 49.7 days, and
/// exporters replaying captures (softflowd -r) send times from before their own start. A
/// flow time is always near its message's export time, which settles the ambiguity.
fn nearest_wrap(t: i64, reference: i64) -> i64 {
    const WRAP: i128 = 1 << 32;
    let k = (i128::from(reference) - i128::from(t) + WRAP / 2).div_euclid(WRAP);
    let shifted = i128::from(t) + k * WRAP;
    shifted.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let bytes = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_flow::EndReason;
    use proptest::prelude::*;

    const FROM: &str = "192.0.2.7:4739";
    const NOW: i64 = 1_700_000_000_000;
    const SECS: u32 = 1_700_000_000;

    fn from() -> SocketAddr {
        FROM.parse().unwrap()
    }

    fn ipfix(domain: u32, sets: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = sets.concat();
        let mut m = Vec::new();
        m.extend_from_slice(&10u16.to_be_bytes());
        m.extend_from_slice(&((16 + body.len()) as u16).to_be_bytes());
        m.extend_from_slice(&SECS.to_be_bytes());
        m.extend_from_slice(&0u32.to_be_bytes());
        m.extend_from_slice(&domain.to_be_bytes());
        m.extend_from_slice(&body);
        m
    }

    fn v9(uptime_ms: u32, source_id: u32, sets: &[Vec<u8>]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&9u16.to_be_bytes());
        m.extend_from_slice(&(sets.len() as u16).to_be_bytes());
        m.extend_from_slice(&uptime_ms.to_be_bytes());
        m.extend_from_slice(&SECS.to_be_bytes());
        m.extend_from_slice(&0u32.to_be_bytes());
        m.extend_from_slice(&source_id.to_be_bytes());
        m.extend_from_slice(&sets.concat());
        m
    }

    fn set(id: u16, body: &[u8]) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(&id.to_be_bytes());
        s.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes());
        s.extend_from_slice(body);
        s
    }

    /// A template record: (element id, length, enterprise number or 0).
    fn template(id: u16, fields: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&id.to_be_bytes());
        t.extend_from_slice(&(fields.len() as u16).to_be_bytes());
        for &(ie, len, pen) in fields {
            let raw = if pen == 0 { ie } else { ie | 0x8000 };
            t.extend_from_slice(&raw.to_be_bytes());
            t.extend_from_slice(&len.to_be_bytes());
            if pen != 0 {
                t.extend_from_slice(&pen.to_be_bytes());
            }
        }
        t
    }

    /// The fields of a minimal IPv4 flow: addresses, protocol, ports, 4-byte counters.
    const V4_FLOW: [(u16, u16, u32); 7] = [
        (iana::SOURCE_IPV4_ADDRESS, 4, 0),
        (iana::DESTINATION_IPV4_ADDRESS, 4, 0),
        (iana::PROTOCOL_IDENTIFIER, 1, 0),
        (iana::SOURCE_TRANSPORT_PORT, 2, 0),
        (iana::DESTINATION_TRANSPORT_PORT, 2, 0),
        (iana::OCTET_DELTA_COUNT, 4, 0),
        (iana::PACKET_DELTA_COUNT, 4, 0),
    ];

    fn v4_flow(src: [u8; 4], dst: [u8; 4], bytes: u32, packets: u32) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&src);
        r.extend_from_slice(&dst);
        r.push(17);
        r.extend_from_slice(&5353u16.to_be_bytes());
        r.extend_from_slice(&53u16.to_be_bytes());
        r.extend_from_slice(&bytes.to_be_bytes());
        r.extend_from_slice(&packets.to_be_bytes());
        r
    }

    fn third_party(src: [u8; 4], dst: [u8; 4], bytes: u64, packets: u64) -> FlowRecord {
        FlowRecord {
            device: "192.0.2.7".into(),
            kind: RecordKind::End,
            end_reason: None,
            src: IpAddr::from(src),
            dst: IpAddr::from(dst),
            protocol: 17,
            src_port: 5353,
            dst_port: 53,
            start_ms: NOW,
            end_ms: NOW,
            packets,
            bytes,
            rev_packets: 0,
            rev_bytes: 0,
            verdict: Verdict::Allowed,
            rule: "".into(),
            generation: 0,
        }
    }

    #[test]
    fn third_party_records_get_defaults() {
        let mut c = Collector::default();
        let msg = ipfix(
            1,
            &[
                set(2, &template(300, &V4_FLOW)),
                set(300, &v4_flow([10, 0, 0, 1], [10, 0, 0, 2], 100, 2)),
            ],
        );
        let records = c.decode(from(), &msg, NOW).unwrap();
        assert_eq!(records, [third_party([10, 0, 0, 1], [10, 0, 0, 2], 100, 2)]);
        assert_eq!(c.stats().records, 1);
        assert_eq!(c.stats().templates, 1);
    }

    #[test]
    fn decode_into_appends_and_a_malformed_datagram_appends_nothing() {
        let mut c = Collector::default();
        let good = ipfix(
            1,
            &[
                set(2, &template(300, &V4_FLOW)),
                set(300, &v4_flow([10, 0, 0, 1], [10, 0, 0, 2], 100, 2)),
            ],
        );
        let mut out = vec![third_party([1, 1, 1, 1], [2, 2, 2, 2], 1, 1)];
        assert_eq!(c.decode_into(from(), &good, NOW, &mut out), Ok(1));
        // A datagram whose first data set decodes and whose second set's length is wrong:
        // its records are dropped, what was there before stays.
        let mut bad = ipfix(
            1,
            &[
                set(300, &v4_flow([10, 0, 0, 3], [10, 0, 0, 4], 7, 1)),
                set(300, &v4_flow([10, 0, 0, 5], [10, 0, 0, 6], 8, 1)),
            ],
        );
        let second_set_length = 16 + (4 + 21) + 2;
        bad[second_set_length..second_set_length + 2].copy_from_slice(&200u16.to_be_bytes());
        assert!(c.decode_into(from(), &bad, NOW, &mut out).is_err());
        assert_eq!(
            out,
            [
                third_party([1, 1, 1, 1], [2, 2, 2, 2], 1, 1),
                third_party([10, 0, 0, 1], [10, 0, 0, 2], 100, 2)
            ]
        );
        assert_eq!(c.stats().records, 1);
        assert_eq!(c.stats().malformed, 1);
    }

    #[test]
    fn header_errors_say_what_and_where() {
        let mut c = Collector::default();
        let err = c.decode(from(), &[0], NOW).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::Truncated {
                need: 2,
                len: 1,
                ..
            }
        ));
        let err = c.decode(from(), &[0, 5, 0, 0], NOW).unwrap_err();
        assert_eq!(err, DecodeError::Version { version: 5 });
        assert!(err.to_string().contains("offset 0"), "{err}");
        let err = c.decode(from(), &ipfix(0, &[])[..12], NOW).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::Truncated {
                need: 16,
                len: 12,
                ..
            }
        ));
        let mut msg = ipfix(0, &[]);
        msg.push(0);
        let err = c.decode(from(), &msg, NOW).unwrap_err();
        assert_eq!(
            err,
            DecodeError::MessageLength {
                declared: 16,
                actual: 17
            }
        );
        let err = c.decode(from(), &v9(0, 0, &[])[..19], NOW).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::Truncated {
                need: 20,
                len: 19,
                ..
            }
        ));
        assert_eq!(c.stats().malformed, 5);
        assert_eq!(c.stats().datagrams, 5);
    }

    #[test]
    fn set_errors_name_the_set_and_offset() {
        let mut c = Collector::default();
        let mut bad = set(300, &[1, 2, 3, 4]);
        bad[3] = 3;
        let msg = ipfix(0, &[set(2, &template(300, &V4_FLOW)), bad]);
        let err = c.decode(from(), &msg, NOW).unwrap_err();
        assert_eq!(
            err,
            DecodeError::SetLength {
                offset: 16 + 4 + 4 + 7 * 4,
                set_id: 300,
                length: 3,
                remaining: 8
            }
        );
        let mut msg = v9(0, 0, &[set(0, &template(300, &V4_FLOW))]);
        msg.extend_from_slice(&[0, 1]);
        let err = c.decode(from(), &msg, NOW).unwrap_err();
        assert_eq!(err, DecodeError::Trailing { offset: 56, len: 2 });
        // The template before the faulty part was learned.
        assert_eq!(c.template_count(), 2);
    }

    #[test]
    fn unknown_template_sets_are_counted_and_dropped() {
        let mut c = Collector::default();
        let msg = ipfix(
            0,
            &[
                set(301, &[0; 21]),
                set(2, &template(300, &V4_FLOW)),
                set(300, &v4_flow([10, 0, 0, 1], [10, 0, 0, 2], 1, 1)),
            ],
        );
        assert_eq!(c.decode(from(), &msg, NOW).unwrap().len(), 1);
        assert_eq!(c.stats().unknown_template_sets, 1);
        // Same template id, another observation domain: unknown there.
        let msg = ipfix(1, &[set(300, &v4_flow([10, 0, 0, 1], [10, 0, 0, 2], 1, 1))]);
        assert_eq!(c.decode(from(), &msg, NOW).unwrap(), []);
        // And from another exporter.
        let other = "192.0.2.8:4739".parse().unwrap();
        let msg = ipfix(0, &[set(300, &v4_flow([10, 0, 0, 1], [10, 0, 0, 2], 1, 1))]);
        assert_eq!(c.decode(other, &msg, NOW).unwrap(), []);
        assert_eq!(c.stats().unknown_template_sets, 3);
        assert_eq!(c.stats().malformed, 0);
    }

    #[test]
    fn templates_are_withdrawn_one_by_one_or_all_at_once() {
        let mut c = Collector::default();
        let data = set(300, &v4_flow([10, 0, 0, 1], [10, 0, 0, 2], 1, 1));
        let learn = ipfix(
            0,
            &[set(
                2,
                &[template(300, &V4_FLOW), template(301, &V4_FLOW)].concat(),
            )],
        );
        c.decode(from(), &learn, NOW).unwrap();
        assert_eq!(c.template_count(), 2);
        c.decode(from(), &ipfix(0, &[set(2, &template(300, &[]))]), NOW)
            .unwrap();
        assert_eq!(
            c.decode(from(), &ipfix(0, std::slice::from_ref(&data)), NOW)
                .unwrap(),
            []
        );
        assert_eq!(c.template_count(), 1);
        c.decode(from(), &learn, NOW).unwrap();
        c.decode(from(), &ipfix(0, &[set(2, &template(2, &[]))]), NOW)
            .unwrap();
        assert_eq!(c.template_count(), 0);
        assert_eq!(c.stats().template_withdrawals, 3);
        assert_eq!(c.stats().unknown_template_sets, 1);
    }

    #[test]
    fn options_records_are_skipped_and_feed_the_uptime_epoch() {
        let mut c = Collector::default();
        // An options template: scope meteringProcessId, then systemInitTimeMilliseconds.
        let mut options = template(
            400,
            &[(143, 4, 0), (iana::SYSTEM_INIT_TIME_MILLISECONDS, 8, 0)],
        );
        options.splice(4..4, 1u16.to_be_bytes());
        let init = NOW - 3_600_000;
        let mut options_data = 7u32.to_be_bytes().to_vec();
        options_data.extend_from_slice(&(init as u64).to_be_bytes());
        let mut fields = V4_FLOW.to_vec();
        fields.push((iana::FLOW_START_SYS_UP_TIME, 4, 0));
        fields.push((iana::FLOW_END_SYS_UP_TIME, 4, 0));
        let mut record = v4_flow([10, 0, 0, 1], [10, 0, 0, 2], 1, 1);
        record.extend_from_slice(&1_000u32.to_be_bytes());
        record.extend_from_slice(&2_000u32.to_be_bytes());
        let msg = ipfix(
            0,
            &[
                set(3, &options),
                set(400, &options_data),
                set(2, &template(300, &fields)),
                set(300, &record),
            ],
        );
        let records = c.decode(from(), &msg, NOW).unwrap();
        assert_eq!(c.stats().options_records, 1);
        assert_eq!(
            (records[0].start_ms, records[0].end_ms),
            (init + 1_000, init + 2_000)
        );
    }

    #[test]
    fn uptime_times_wrap_to_the_export_time() {
        // softflowd replaying a capture sends uptimes from before its own start.
        let before_start = 0u32.wrapping_sub(5_000) as u64;
        assert_eq!(nearest_wrap(NOW + before_start as i64, NOW), NOW - 5_000);
        assert_eq!(nearest_wrap(NOW - 7, NOW), NOW - 7);
        for extreme in [i64::MIN, i64::MAX] {
            assert!(nearest_wrap(extreme, 0).abs() <= 1 << 31);
        }
    }

    #[test]
    fn variable_length_and_unknown_fields() {
        let mut c = Collector::default();
        let mut fields = V4_FLOW.to_vec();
        fields.push((999, VARIABLE_LENGTH, 0)); // unknown IANA, variable
        fields.push((7, 2, 12345)); // unknown enterprise
        fields.push((palisade::DEVICE, VARIABLE_LENGTH, PALISADE_PEN));
        fields.push((palisade::RULE_ID, VARIABLE_LENGTH, PALISADE_PEN));
        fields.push((iana::FORWARDING_STATUS, 4, 0));
        let mut record = v4_flow([10, 0, 0, 1], [10, 0, 0, 2], 1, 1);
        record.extend_from_slice(&[2, 0xaa, 0xbb]);
        record.extend_from_slice(&[0xcc, 0xdd]);
        record.extend_from_slice(&[255, 0, 3]);
        record.extend_from_slice(b"fw1");
        record.extend_from_slice(&[0]);
        record.extend_from_slice(&0x81u32.to_be_bytes());
        let msg = ipfix(0, &[set(2, &template(300, &fields)), set(300, &record)]);
        let records = c.decode(from(), &msg, NOW).unwrap();
        assert_eq!(&*records[0].device, "fw1");
        assert_eq!(&*records[0].rule, "");
        assert_eq!(records[0].verdict, Verdict::Denied);

        // A variable-length field that runs past its set.
        let mut short = v4_flow([10, 0, 0, 1], [10, 0, 0, 2], 1, 1);
        short.extend_from_slice(&[9, 1, 2]);
        let msg = ipfix(
            0,
            &[
                set(
                    2,
                    &template(
                        301,
                        &[V4_FLOW.as_slice(), &[(999, VARIABLE_LENGTH, 0)]].concat(),
                    ),
                ),
                set(301, &short),
            ],
        );
        let err = c.decode(from(), &msg, NOW).unwrap_err();
        let set_offset = 16 + 4 + 4 + 8 * 4;
        assert_eq!(
            err,
            DecodeError::Record {
                offset: set_offset + 4,
                set_id: 301,
                reason: "a field runs past the end of the set"
            }
        );
    }

    #[test]
    fn firewall_event_and_end_reason_of_third_parties() {
        let mut c = Collector::default();
        let mut fields = V4_FLOW.to_vec();
        fields.push((iana::FIREWALL_EVENT, 1, 0));
        fields.push((iana::FLOW_END_REASON, 1, 0));
        let with = |event: u8, reason: u8| {
            let mut r = v4_flow([10, 0, 0, 1], [10, 0, 0, 2], 1, 1);
            r.extend_from_slice(&[event, reason]);
            r
        };
        let msg = ipfix(
            0,
            &[
                set(2, &template(300, &fields)),
                set(
                    300,
                    &[with(3, 0), with(5, 2), with(2, 1), with(0, 2)].concat(),
                ),
            ],
        );
        let r = c.decode(from(), &msg, NOW).unwrap();
        let got: Vec<_> = r
            .iter()
            .map(|r| (r.kind, r.verdict, r.end_reason))
            .collect();
        assert_eq!(
            got,
            [
                (RecordKind::Start, Verdict::Denied, None),
                (RecordKind::Update, Verdict::Allowed, None),
                (RecordKind::End, Verdict::Allowed, Some(EndReason::Idle)),
                (RecordKind::End, Verdict::Allowed, None),
            ]
        );
    }

    #[test]
    fn netflow_v9_with_options_padding_and_uptime_times() {
        let mut c = Collector::default();
        let mut fields = V4_FLOW.to_vec();
        fields.push((iana::FLOW_END_SYS_UP_TIME, 4, 0));
        fields.push((iana::FLOW_START_SYS_UP_TIME, 4, 0));
        // Options template 257: one 4-byte scope field, one 4-byte option field.
        let mut options = Vec::new();
        for v in [257u16, 4, 4, 1, 4, 34, 4] {
            options.extend_from_slice(&v.to_be_bytes());
        }
        let mut record = v4_flow([10, 0, 0, 1], [10, 0, 0, 2], 300, 3);
        record.extend_from_slice(&9_000u32.to_be_bytes());
        record.extend_from_slice(&4_000u32.to_be_bytes());
        let mut data = [record.clone(), record].concat();
        data.extend_from_slice(&[0, 0]); // padding to a 4-byte boundary
        let msg = v9(
            10_000,
            5,
            &[
                set(0, &template(300, &fields)),
                set(1, &options),
                set(257, &[0, 0, 0, 1, 0, 0, 0, 100]),
                set(300, &data),
            ],
        );
        let records = c.decode(from(), &msg, NOW).unwrap();
        let mut expected = third_party([10, 0, 0, 1], [10, 0, 0, 2], 300, 3);
        (expected.start_ms, expected.end_ms) = (NOW - 6_000, NOW - 1_000);
        assert_eq!(records, [expected.clone(), expected]);
        assert_eq!(c.stats().options_records, 1);
        // A v9 template of an IPFIX domain with the same number is another template.
        let msg = ipfix(5, &[set(300, &v4_flow([10, 0, 0, 1], [10, 0, 0, 2], 1, 1))]);
        assert_eq!(c.decode(from(), &msg, NOW).unwrap(), []);
    }

    #[test]
    fn template_errors_name_the_template() {
        let mut c = Collector::default();
        let msg = ipfix(0, &[set(2, &template(17, &V4_FLOW))]);
        let err = c.decode(from(), &msg, NOW).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Template {
                offset: 20,
                set_id: 2,
                template_id: 17,
                reason: "template ids below 256 are reserved"
            }
        );
        let mut truncated = template(300, &V4_FLOW);
        truncated.truncate(truncated.len() - 2);
        let err = c
            .decode(from(), &ipfix(0, &[set(2, &truncated)]), NOW)
            .unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Template {
                    template_id: 300,
                    ..
                }
            ),
            "{err}"
        );
        let empty = template(300, &[(iana::PROTOCOL_IDENTIFIER, 0, 0)]);
        let err = c
            .decode(from(), &ipfix(0, &[set(2, &empty)]), NOW)
            .unwrap_err();
        assert!(err.to_string().contains("would be empty"), "{err}");
    }

    #[test]
    fn the_template_cache_is_bounded() {
        let mut c = Collector::new(CollectorConfig {
            max_templates_per_exporter: 2,
            max_exporters: 1,
            template_lifetime: Some(Duration::from_secs(60)),
        });
        for (i, id) in [300u16, 301, 302].into_iter().enumerate() {
            let msg = ipfix(0, &[set(2, &template(id, &V4_FLOW))]);
            c.decode(from(), &msg, NOW + i as i64).unwrap();
        }
        assert_eq!(c.template_count(), 2);
        assert_eq!(c.stats().templates_evicted, 1);
        // The least recently refreshed one (300) made room.
        let data = |id| ipfix(0, &[set(id, &v4_flow([10, 0, 0, 1], [10, 0, 0, 2], 1, 1))]);
        assert_eq!(c.decode(from(), &data(300), NOW).unwrap().len(), 0);
        assert_eq!(c.decode(from(), &data(302), NOW).unwrap().len(), 1);
        // A second exporter is refused.
        let other = "192.0.2.8:4739".parse().unwrap();
        c.decode(other, &ipfix(0, &[set(2, &template(300, &V4_FLOW))]), NOW)
            .unwrap();
        assert_eq!(c.stats().templates_refused, 1);
        // Templates expire after their lifetime.
        assert_eq!(c.decode(from(), &data(302), NOW + 61_000).unwrap().len(), 0);
        assert_eq!(c.stats().templates_expired, 1);
        // Then an exporter whose templates all expired makes room for another.
        c.decode(
            other,
            &ipfix(0, &[set(2, &template(300, &V4_FLOW))]),
            NOW + 61_000,
        )
        .unwrap();
        assert_eq!(c.stats().templates_refused, 1);
        assert_eq!(c.stats().templates_expired, 2);
        let back = ipfix(0, &[set(2, &template(300, &V4_FLOW))]);
        c.decode(from(), &back, NOW + 61_000).unwrap();
        assert_eq!(c.stats().templates_refused, 2);
        // Too many fields.
        let wide = vec![(iana::PROTOCOL_IDENTIFIER, 1, 0); MAX_TEMPLATE_FIELDS + 1];
        c.decode(other, &ipfix(0, &[set(2, &template(303, &wide))]), NOW)
            .unwrap();
        assert_eq!(c.stats().templates_refused, 3);
    }

    /// Fields a template may carry, with lengths that suit them and some that do not.
    fn arb_field() -> impl Strategy<Value = (u16, u16, u32)> {
        let ie = prop::sample::select(vec![
            (iana::SOURCE_IPV4_ADDRESS, 0),
            (iana::DESTINATION_IPV4_ADDRESS, 0),
            (iana::SOURCE_IPV6_ADDRESS, 0),
            (iana::PROTOCOL_IDENTIFIER, 0),
            (iana::SOURCE_TRANSPORT_PORT, 0),
            (iana::DESTINATION_TRANSPORT_PORT, 0),
            (iana::OCTET_DELTA_COUNT, 0),
            (iana::PACKET_TOTAL_COUNT, 0),
            (iana::FLOW_START_MILLISECONDS, 0),
            (iana::FLOW_END_SECONDS, 0),
            (iana::FLOW_END_DELTA_MICROSECONDS, 0),
            (iana::FLOW_START_SYS_UP_TIME, 0),
            (iana::SYSTEM_INIT_TIME_MILLISECONDS, 0),
            (iana::FLOW_DURATION_MILLISECONDS, 0),
            (iana::FORWARDING_STATUS, 0),
            (iana::FIREWALL_EVENT, 0),
            (iana::FLOW_END_REASON, 0),
            (iana::OCTET_DELTA_COUNT, REVERSE_PEN),
            (palisade::GENERATION, PALISADE_PEN),
            (palisade::DEVICE, PALISADE_PEN),
            (palisade::RULE_ID, PALISADE_PEN),
            (999, 0),
        ]);
        let len = prop::sample::select(vec![1u16, 2, 3, 4, 8, 16, VARIABLE_LENGTH]);
        (ie, len).prop_map(|((ie, pen), len)| (ie, len, pen))
    }

    /// One record of `fields`: fixed fields get `len` bytes from `bytes`, variable ones a
    /// one-byte length and up to 5 bytes.
    fn record_of(fields: &[(u16, u16, u32)], bytes: &[u8]) -> Vec<u8> {
        let mut next = bytes.iter().copied().cycle();
        let mut record = Vec::new();
        for &(_, len, _) in fields {
            let n = if len == VARIABLE_LENGTH {
                let n = next.next().unwrap_or(0) % 6;
                record.push(n);
                usize::from(n)
            } else {
                usize::from(len)
            };
            record.extend((0..n).map(|_| next.next().unwrap_or(0x5a)));
        }
        record
    }

    proptest! {
        /// Fixed fields before the first variable-length one are read at planned offsets,
        /// the rest one by one; pushing every field behind an empty variable-length one
        /// sends them all down the second path, and the records must not change.
        #[test]
        fn the_fixed_offset_plan_reads_what_field_by_field_reading_does(
            fields in prop::collection::vec(arb_field(), 1..14),
            bytes in prop::collection::vec(any::<u8>(), 1..64),
            count in 1usize..4,
        ) {
            let behind: Vec<_> = [(999, VARIABLE_LENGTH, 0)].into_iter().chain(fields.clone()).collect();
            let mut plain = Vec::new();
            let mut shifted = Vec::new();
            for i in 0..count {
                let mut varied = bytes.clone();
                varied.rotate_left(i % bytes.len());
                let record = record_of(&fields, &varied);
                plain.extend_from_slice(&record);
                shifted.push(0);
                shifted.extend_from_slice(&record);
            }
            let decode = |fields: &[(u16, u16, u32)], data: &[u8]| {
                let mut c = Collector::default();
                let msg = ipfix(7, &[set(2, &template(300, fields)), set(300, data)]);
                let out = c.decode(from(), &msg, NOW).map_err(|e| e.to_string());
                (out, c.stats().clone())
            };
            let (a, stats_a) = decode(&fields, &plain);
            let (b, stats_b) = decode(&behind, &shifted);
            // Both are whole records, so neither may fail.
            prop_assert!(a.is_ok(), "{:?}", a);
            prop_assert_eq!(a, b);
            prop_assert_eq!(stats_a, stats_b);
        }
    }

    #[test]
    fn the_first_field_of_a_role_wins_wherever_the_fields_sit() {
        // Source address twice and octets twice, once each side of a variable field.
        let fields = [
            (iana::SOURCE_IPV4_ADDRESS, 4, 0),
            (iana::OCTET_DELTA_COUNT, 4, 0),
            (999, VARIABLE_LENGTH, 0),
            (iana::SOURCE_IPV4_ADDRESS, 4, 0),
            (iana::OCTET_DELTA_COUNT, 8, 0),
            (iana::DESTINATION_IPV4_ADDRESS, 4, 0),
        ];
        let mut record = vec![10, 0, 0, 1];
        record.extend_from_slice(&7u32.to_be_bytes());
        record.push(0);
        record.extend_from_slice(&[10, 0, 0, 9]);
        record.extend_from_slice(&9u64.to_be_bytes());
        record.extend_from_slice(&[10, 0, 0, 2]);
        let mut c = Collector::default();
        let msg = ipfix(0, &[set(2, &template(300, &fields)), set(300, &record)]);
        let records = c.decode(from(), &msg, NOW).unwrap();
        assert_eq!(records[0].src, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(records[0].bytes, 7);
        assert_eq!(records[0].dst, IpAddr::from([10, 0, 0, 2]));
    }
}
