//! The exporter: flow records in, IPFIX messages out (RFC 7011), no I/O.
//!
//! Each message starts with the 16-byte header (version 10, length, export time, sequence
//! number, observation domain), then optionally one Template Set with all four templates,
//! then Data Sets. Records keep their input order: a new Data Set opens whenever the
//! template changes from one record to the next. A message never exceeds the configured MTU;
//! strings are truncated (at a character boundary) to [`Exporter::max_string_len`] bytes so
//! that any record fits in one message.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use palisade_flow::{FlowRecord, RecordKind};

use crate::ie::{
    PALISADE_PEN, REVERSE_PEN, end_reason_code, firewall_event_of, flow_end_reason_of,
    forwarding_status_of, iana, palisade,
};
use crate::template::{self, FieldSpec};

/// The default largest message: fits a 1500-byte Ethernet MTU with IPv6 and UDP headers and
/// room for tunnels.
pub const DEFAULT_MTU: usize = 1400;

/// The smallest MTU the exporter accepts: the Template Set (396 bytes with the message
/// header) must fit in one message, with room for records of modest strings.
pub const MIN_MTU: usize = 512;

/// The largest IPFIX message (the header's length field is 16 bits).
pub const MAX_MTU: usize = 65535;

const VERSION: u16 = 10;
const HEADER_LEN: usize = 16;
const SET_HEADER_LEN: usize = 4;
const TEMPLATE_SET_ID: u16 = 2;
/// The most bytes a record's fixed-length fields and string length prefixes take (an IPv6
/// end record with two three-byte length prefixes).
const MAX_FIXED_RECORD_LEN: usize = 97 + 2 * 3;

/// How an [`Exporter`] numbers and frames its messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExporterConfig {
    /// The Observation Domain ID in every message header.
    pub observation_domain: u32,
    /// The largest message in bytes, IPFIX header included (IP and UDP headers excluded).
    pub mtu: usize,
    /// Re-send the templates in every n-th message (counting from the last one that
    /// carried them). `None`: no message-count refresh.
    pub template_every_messages: Option<NonZeroU32>,
    /// Re-send the templates in the first message at least this long after the last one
    /// that carried them. `None`: no time-based refresh.
    pub template_interval: Option<Duration>,
}

impl Default for ExporterConfig {
    /// Domain 0, a 1400-byte MTU, templates every 20 messages and at least every minute.
    fn default() -> Self {
        ExporterConfig {
            observation_domain: 0,
            mtu: DEFAULT_MTU,
            template_every_messages: NonZeroU32::new(20),
            template_interval: Some(Duration::from_secs(60)),
        }
    }
}

/// A configuration the exporter cannot work with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The MTU is outside [`MIN_MTU`]..=[`MAX_MTU`].
    #[error("mtu {mtu} is outside {MIN_MTU}..={MAX_MTU} bytes")]
    Mtu {
        /// The configured MTU.
        mtu: usize,
    },
}

/// When the templates were last sent.
#[derive(Clone, Copy, Debug)]
struct TemplatesSent {
    message: u64,
    at_ms: i64,
}

/// Encodes flow records into IPFIX messages for one Observation Domain.
///
/// Pure: it takes records and the current time and returns datagram payloads; the caller
/// sends them (see [`UdpExporter`](crate::UdpExporter)).
#[derive(Debug)]
pub struct Exporter {
    config: ExporterConfig,
    templates: [(u16, Vec<FieldSpec>); 4],
    template_set: Vec<u8>,
    max_string: usize,
    /// Data records sent before the next message (RFC 7011's sequence number).
    sequence: u32,
    /// Messages produced so far.
    messages: u64,
    templates_sent: Option<TemplatesSent>,
}

/// A message being filled.
struct Message {
    buf: Vec<u8>,
    /// Whether it carries the Template Set.
    templates: bool,
    records: u32,
    /// The open Data Set: its offset and template id.
    open_set: Option<(usize, u16)>,
}

impl Exporter {
    /// An exporter with this configuration.
    pub fn new(config: ExporterConfig) -> Result<Self, ConfigError> {
        if !(MIN_MTU..=MAX_MTU).contains(&config.mtu) {
            return Err(ConfigError::Mtu { mtu: config.mtu });
        }
        let templates = template::all();
        let template_set = encode_template_set(&templates);
        let max_string = (config.mtu - HEADER_LEN - SET_HEADER_LEN - MAX_FIXED_RECORD_LEN) / 2;
        Ok(Exporter {
            config,
            templates,
            template_set,
            max_string: max_string.min(usize::from(u16::MAX)),
            sequence: 0,
            messages: 0,
            templates_sent: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ExporterConfig {
        &self.config
    }

    /// The sequence number of the next message: data records sent so far, modulo 2^32.
    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    /// The longest device name or rule id, in bytes, that is exported whole; longer ones
    /// are truncated so that every record fits in one message.
    pub fn max_string_len(&self) -> usize {
        self.max_string
    }

    /// Encodes `records`, in order, into as many messages as they need; `now_ms` (ms since
    /// the Unix epoch) is the export time and drives the template refresh. No records, no
    /// messages.
    ///
    /// The end reason is exported for end records only. An IPv4 address in a record whose
    /// other address is IPv6 is exported IPv4-mapped. Times before the epoch are exported
    /// as the epoch.
    pub fn encode(&mut self, records: &[FlowRecord], now_ms: i64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut message: Option<Message> = None;
        let mut record = Vec::with_capacity(256);
        for r in records {
            let (template_id, fields) = self.template_for(r);
            record.clear();
            put_record(&mut record, fields, r, self.max_string);
            loop {
                let m = match &mut message {
                    Some(m) => m,
                    None => message.insert(self.start(now_ms, true)),
                };
                if m.try_push(template_id, &record, self.config.mtu) {
                    break;
                }
                // The record goes in the next message. A message that holds only templates
                // still goes out (the collector needs them first), and the next one leaves
                // them out: `max_string` makes every record fit in a message of its own.
                let full = message.take().expect("message is open");
                assert!(
                    full.records > 0 || full.templates,
                    "a {}-byte record does not fit in an empty message",
                    record.len()
                );
                let templates_only = full.records == 0;
                out.push(self.finish(full));
                if templates_only {
                    message = Some(self.start(now_ms, false));
                }
            }
        }
        if let Some(m) = message {
            out.push(self.finish(m));
        }
        out
    }

    fn template_for(&self, r: &FlowRecord) -> (u16, &[FieldSpec]) {
        let v6 = r.src.is_ipv6() || r.dst.is_ipv6();
        let end = r.kind == RecordKind::End && r.end_reason.is_some();
        let index = usize::from(v6) + 2 * usize::from(end);
        let (id, fields) = &self.templates[index];
        (*id, fields)
    }

    fn templates_due(&self, now_ms: i64) -> bool {
        let Some(sent) = self.templates_sent else {
            return true;
        };
        let by_count = self
            .config
            .template_every_messages
            .is_some_and(|n| self.messages - sent.message >= u64::from(n.get()));
        let by_time = self.config.template_interval.is_some_and(|t| {
            let elapsed = now_ms.saturating_sub(sent.at_ms);
            elapsed >= 0 && elapsed as u128 >= t.as_millis()
        });
        by_count || by_time
    }

    fn start(&mut self, now_ms: i64, allow_templates: bool) -> Message {
        let mut buf = Vec::with_capacity(self.config.mtu);
        buf.extend_from_slice(&VERSION.to_be_bytes());
        buf.extend_from_slice(&0u16.to_be_bytes());
        let export_secs = u32::try_from(now_ms.max(0) / 1000).unwrap_or(u32::MAX);
        buf.extend_from_slice(&export_secs.to_be_bytes());
        buf.extend_from_slice(&self.sequence.to_be_bytes());
        buf.extend_from_slice(&self.config.observation_domain.to_be_bytes());
        let templates = allow_templates && self.templates_due(now_ms);
        if templates {
            buf.extend_from_slice(&self.template_set);
            self.templates_sent = Some(TemplatesSent {
                message: self.messages,
                at_ms: now_ms,
            });
        }
        Message {
            buf,
            templates,
            records: 0,
            open_set: None,
        }
    }

    fn finish(&mut self, mut m: Message) -> Vec<u8> {
        m.close_set();
        let len = u16::try_from(m.buf.len()).expect("messages never exceed the MTU");
        m.buf[2..4].copy_from_slice(&len.to_be_bytes());
        self.sequence = self.sequence.wrapping_add(m.records);
        self.messages += 1;
        m.buf
    }
}

impl Message {
    /// Appends a record if it fits in `mtu`, opening a Data Set for its template if needed.
    fn try_push(&mut self, template_id: u16, record: &[u8], mtu: usize) -> bool {
        let same_set = matches!(self.open_set, Some((_, id)) if id == template_id);
        let needed = record.len() + if same_set { 0 } else { SET_HEADER_LEN };
        if self.buf.len() + needed > mtu {
            return false;
        }
        if !same_set {
            self.close_set();
            self.open_set = Some((self.buf.len(), template_id));
            self.buf.extend_from_slice(&template_id.to_be_bytes());
            self.buf.extend_from_slice(&0u16.to_be_bytes());
        }
        self.buf.extend_from_slice(record);
        self.records += 1;
        true
    }

    fn close_set(&mut self) {
        if let Some((start, _)) = self.open_set.take() {
            let len = u16::try_from(self.buf.len() - start).expect("sets never exceed the MTU");
            self.buf[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
        }
    }
}

/// The Template Set with all templates.
fn encode_template_set(templates: &[(u16, Vec<FieldSpec>)]) -> Vec<u8> {
    let mut set = Vec::new();
    set.extend_from_slice(&TEMPLATE_SET_ID.to_be_bytes());
    set.extend_from_slice(&0u16.to_be_bytes());
    for (id, fields) in templates {
        set.extend_from_slice(&id.to_be_bytes());
        let count = u16::try_from(fields.len()).expect("templates are small");
        set.extend_from_slice(&count.to_be_bytes());
        for f in fields {
            if f.enterprise == 0 {
                set.extend_from_slice(&f.id.to_be_bytes());
                set.extend_from_slice(&f.length.to_be_bytes());
            } else {
                set.extend_from_slice(&(f.id | 0x8000).to_be_bytes());
                set.extend_from_slice(&f.length.to_be_bytes());
                set.extend_from_slice(&f.enterprise.to_be_bytes());
            }
        }
    }
    let len = u16::try_from(set.len()).expect("templates are small");
    set[2..4].copy_from_slice(&len.to_be_bytes());
    set
}

/// Appends a record's fields in template order.
fn put_record(buf: &mut Vec<u8>, fields: &[FieldSpec], r: &FlowRecord, max_string: usize) {
    let millis = |ms: i64| u64::try_from(ms).unwrap_or(0);
    for f in fields {
        match (f.enterprise, f.id) {
            (0, iana::SOURCE_IPV4_ADDRESS | iana::SOURCE_IPV6_ADDRESS) => {
                put_address(buf, r.src, f)
            }
            (0, iana::DESTINATION_IPV4_ADDRESS | iana::DESTINATION_IPV6_ADDRESS) => {
                put_address(buf, r.dst, f)
            }
            (0, iana::PROTOCOL_IDENTIFIER) => buf.push(r.protocol),
            (0, iana::SOURCE_TRANSPORT_PORT) => buf.extend_from_slice(&r.src_port.to_be_bytes()),
            (0, iana::DESTINATION_TRANSPORT_PORT) => {
                buf.extend_from_slice(&r.dst_port.to_be_bytes())
            }
            (0, iana::FLOW_START_MILLISECONDS) => {
                buf.extend_from_slice(&millis(r.start_ms).to_be_bytes())
            }
            (0, iana::FLOW_END_MILLISECONDS) => {
                buf.extend_from_slice(&millis(r.end_ms).to_be_bytes())
            }
            (0, iana::OCTET_DELTA_COUNT) => buf.extend_from_slice(&r.bytes.to_be_bytes()),
            (0, iana::PACKET_DELTA_COUNT) => buf.extend_from_slice(&r.packets.to_be_bytes()),
            (REVERSE_PEN, iana::OCTET_DELTA_COUNT) => {
                buf.extend_from_slice(&r.rev_bytes.to_be_bytes())
            }
            (REVERSE_PEN, iana::PACKET_DELTA_COUNT) => {
                buf.extend_from_slice(&r.rev_packets.to_be_bytes())
            }
            (0, iana::FIREWALL_EVENT) => buf.push(firewall_event_of(r.kind, r.verdict)),
            (0, iana::FORWARDING_STATUS) => buf.push(forwarding_status_of(r.verdict)),
            (0, iana::FLOW_END_REASON) => {
                buf.push(r.end_reason.map_or(0, flow_end_reason_of));
            }
            (PALISADE_PEN, palisade::END_REASON) => {
                buf.push(r.end_reason.map_or(0, end_reason_code));
            }
            (PALISADE_PEN, palisade::GENERATION) => {
                buf.extend_from_slice(&r.generation.to_be_bytes())
            }
            (PALISADE_PEN, palisade::DEVICE) => put_string(buf, &r.device, max_string),
            (PALISADE_PEN, palisade::RULE_ID) => put_string(buf, &r.rule, max_string),
            _ => unreachable!("field {f:?} is not in an exported template"),
        }
    }
}

fn put_address(buf: &mut Vec<u8>, addr: IpAddr, f: &FieldSpec) {
    match (addr, f.length) {
        (IpAddr::V4(a), 4) => buf.extend_from_slice(&a.octets()),
        (IpAddr::V4(a), _) => buf.extend_from_slice(&a.to_ipv6_mapped().octets()),
        (IpAddr::V6(a), _) => buf.extend_from_slice(&a.octets()),
    }
}

/// A variable-length string (RFC 7011 section 7): one length byte below 255, else 255 and
/// a two-byte length.
fn put_string(buf: &mut Vec<u8>, s: &str, max: usize) {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let bytes = &s.as_bytes()[..end];
    if bytes.len() < 255 {
        buf.push(bytes.len() as u8);
    } else {
        buf.push(255);
        buf.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    }
    buf.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ie::VARIABLE_LENGTH;

    #[test]
    fn template_set_has_the_documented_size() {
        let e = Exporter::new(ExporterConfig::default()).unwrap();
        assert_eq!(e.template_set.len(), 380);
        assert!(HEADER_LEN + e.template_set.len() <= MIN_MTU);
    }

    #[test]
    fn the_largest_fixed_record_is_accounted_for() {
        let fields = template::fields(true, true);
        let fixed: usize = fields
            .iter()
            .filter(|f| f.length != VARIABLE_LENGTH)
            .map(|f| usize::from(f.length))
            .sum();
        let strings = fields
            .iter()
            .filter(|f| f.length == VARIABLE_LENGTH)
            .count();
        assert_eq!(fixed + 3 * strings, MAX_FIXED_RECORD_LEN);
    }

    #[test]
    fn mtu_out_of_range_is_refused() {
        for mtu in [0, MIN_MTU - 1, MAX_MTU + 1] {
            let config = ExporterConfig {
                mtu,
                ..ExporterConfig::default()
            };
            assert_eq!(Exporter::new(config).unwrap_err(), ConfigError::Mtu { mtu });
        }
    }

    #[test]
    fn long_strings_are_cut_at_a_character_boundary() {
        let mut buf = Vec::new();
        put_string(&mut buf, "ééé", 3);
        assert_eq!(buf, [2, 0xc3, 0xa9]);
        buf.clear();
        put_string(&mut buf, &"x".repeat(300), 1000);
        assert_eq!(&buf[..3], &[255, 1, 44]);
        assert_eq!(buf.len(), 303);
    }
}
