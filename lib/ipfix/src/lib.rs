//! IPFIX export of Palisade flow records, and an IPFIX / NetFlow v9 decoder for collectors.
//!
//! * [`Exporter`] turns [`FlowRecord`](palisade_flow::FlowRecord)s into IPFIX messages
//!   (RFC 7011) no larger than a configured MTU; [`UdpExporter`] sends them to collectors.
//! * [`Collector`] turns IPFIX and NetFlow v9 (RFC 3954) datagrams, from Palisade devices or
//!   third-party exporters, back into flow records.
//!
//! Both are pure: bytes and records in, bytes and records out, the clock passed in. Sockets
//! live at the edge ([`UdpExporter`]; a collector service owns its own socket).
//!
//! # Messages
//!
//! Every message has one Observation Domain ([`ExporterConfig::observation_domain`]) and the
//! sequence number RFC 7011 asks for: the count of data records sent in earlier messages of
//! the domain, modulo 2^32. The templates go in the first message and again every
//! [`ExporterConfig::template_every_messages`] messages and after
//! [`ExporterConfig::template_interval`] (over UDP a collector may have missed them or
//! restarted). Records keep their order; a new Data Set starts whenever the template
//! changes.
//!
//! # Templates
//!
//! | id  | records |
//! |-----|---------|
//! | 256 | IPv4 start and update records, and ends without a reason |
//! | 257 | the same, IPv6 |
//! | 258 | IPv4 end records with a reason |
//! | 259 | the same, IPv6 |
//!
//! Fields, in record order (all integers big-endian):
//!
//! | Information Element | id | PEN | bytes | value |
//! |---|---|---|---|---|
//! | sourceIPv4Address / sourceIPv6Address | 8 / 27 | | 4 / 16 | the initiator |
//! | destinationIPv4Address / destinationIPv6Address | 12 / 28 | | 4 / 16 | the responder |
//! | protocolIdentifier | 4 | | 1 | |
//! | sourceTransportPort | 7 | | 2 | |
//! | destinationTransportPort | 11 | | 2 | |
//! | flowStartMilliseconds | 152 | | 8 | `start_ms` |
//! | flowEndMilliseconds | 153 | | 8 | `end_ms` |
//! | octetDeltaCount | 1 | | 8 | `bytes` (initiator to responder) |
//! | packetDeltaCount | 2 | | 8 | `packets` |
//! | reverseOctetDeltaCount | 1 | 29305 | 8 | `rev_bytes` (responder to initiator) |
//! | reversePacketDeltaCount | 2 | 29305 | 8 | `rev_packets` |
//! | firewallEvent | 233 | | 1 | see below |
//! | forwardingStatus | 89 | | 1 | 64 (forwarded) when allowed, 129 (dropped: ACL deny) when denied |
//! | flowEndReason | 136 | | 1 | end templates only: idle 1, fin/reset 3, policy change/flushed 4, evicted 5 |
//! | palisadeEndReason | 4 | 32473 | 1 | end templates only: the exact reason ([`ie::end_reason_code`]) |
//! | palisadeGeneration | 2 | 32473 | 8 | `generation` |
//! | palisadeDevice | 3 | 32473 | variable | `device` (UTF-8) |
//! | palisadeRuleId | 1 | 32473 | variable | `rule` (UTF-8) |
//!
//! firewallEvent carries the record kind: a start is `created` (1) when allowed and
//! `denied` (3) when denied, an update is `update` (5), an end is `deleted` (2). The verdict
//! of updates and ends travels in forwardingStatus.
//!
//! **Reverse counters.** The responder-to-initiator counters use RFC 5103's reverse
//! elements (enterprise bit set, PEN 29305, the forward element's number), not
//! initiatorOctets/responderOctets (231/232): nfdump 1.7 maps reverse octetDeltaCount and
//! packetDeltaCount to its "out" bytes and packets but ignores 231 and 232, and reverse
//! elements are what biflow exporters (softflowd `-b`, YAF) send. The collector reads both.
//!
//! **Palisade's elements** live under [`ie::PALISADE_PEN`], IANA's documentation PEN 32473
//! (RFC 5612) until Palisade registers its own: rule id 1, generation 2, device 3, end
//! reason 4. Collectors that do not know them skip them.
//!
//! # Decoding third-party records
//!
//! The collector reads the elements above and the usual alternatives: IPv4/IPv6
//! addresses, ports (7/11, and the TCP/UDP-specific 180–183), delta counters (1/2), else
//! totals (85/86), initiator/responder counters (231, 232, 298, 299), reverse elements,
//! times as seconds, milliseconds, NTP micro/nanoseconds, deltas before export time, or
//! sysUpTime-relative (NetFlow v9 header uptime; IPFIX systemInitTimeMilliseconds from the
//! record or an options record), and flowDurationMilliseconds. A record without Palisade's
//! elements gets the exporter's IP address as device, rule `""`, generation 0; its verdict
//! is `Denied` only if firewallEvent is 3 or forwardingStatus says dropped; its kind comes
//! from firewallEvent, `End` when there is none; its end reason from flowEndReason (an
//! active timeout gives none). A record with no time at all gets the message's export
//! time.
//!
//! # Example
//!
//! ```
//! use palisade_flow::{FlowRecord, RecordKind, Verdict};
//! use palisade_ipfix::{Collector, Exporter, ExporterConfig};
//!
//! let record = FlowRecord {
//!     device: "dpu-1".into(),
//!     kind: RecordKind::Start,
//!     end_reason: None,
//!     src: "10.0.0.1".parse().unwrap(),
//!     dst: "10.0.0.2".parse().unwrap(),
//!     protocol: 6,
//!     src_port: 40000,
//!     dst_port: 443,
//!     start_ms: 1_700_000_000_000,
//!     end_ms: 1_700_000_000_000,
//!     packets: 1,
//!     bytes: 60,
//!     rev_packets: 0,
//!     rev_bytes: 0,
//!     verdict: Verdict::Allowed,
//!     rule: "web/allow-https".into(),
//!     generation: 42,
//! };
//! let mut exporter = Exporter::new(ExporterConfig::default()).unwrap();
//! let messages = exporter.encode(std::slice::from_ref(&record), 1_700_000_001_000);
//!
//! let mut collector = Collector::default();
//! let from = "192.0.2.1:4739".parse().unwrap();
//! let decoded = collector.decode(from, &messages[0], 1_700_000_001_000).unwrap();
//! assert_eq!(decoded, [record]);
//! ```

mod collect;
mod export;
pub mod ie;
mod template;
mod udp;

pub use collect::{Collector, CollectorConfig, CollectorStats, DecodeError, MAX_TEMPLATE_FIELDS};
pub use export::{ConfigError, DEFAULT_MTU, Exporter, ExporterConfig, MAX_MTU, MIN_MTU};
pub use udp::UdpExporter;
