//! Writing whole frames: [`PacketBuilder`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ethernet::{self, EtherType};
use crate::ip::IpProtocol;
use crate::{icmpv4, icmpv6, ipv4, ipv6, ipv6ext, ipv6frag, sctp, tcp, udp, vlan};

/// The protocol number [`PacketBuilder`] writes when no transport was given (RFC 3692's
/// "use for experimentation and testing").
const NO_TRANSPORT: IpProtocol = IpProtocol(253);

/// The largest IP payload: the IPv4 total length and IPv6 payload length are 16 bits.
const MAX_LENGTH: usize = u16::MAX as usize;

/// A frame to write: Ethernet, optional VLAN tags, IPv4 or IPv6 (with extension headers), and
/// a transport header with its payload, every checksum computed.
///
/// A plain description, built by chained calls and written by [`PacketBuilder::emit`] into a buffer the caller owns (no allocation), or cut into IP
/// fragments by [`PacketBuilder::emit_fragment`]. Every limit of the wire format is checked
/// before anything is written, so a bad description is a [`BuildError`], never a panic.
///
/// ```
/// use palisade_wire::{PacketBuilder, parse_frame, tcp, vlan};
///
/// let mut buf = [0; 128];
/// let len = PacketBuilder::ipv4([10, 0, 0, 1].into(), [10, 0, 0, 2].into())
///     .vlans(vlan::Tags::one(vlan::Tag::c_tag(100)))
///     .tcp(tcp::Repr { src_port: 40000, dst_port: 443, flags: tcp::Flags::SYN, ..Default::default() })
///     .emit(&mut buf)
///     .unwrap();
/// let parsed = parse_frame(&buf[..len]).unwrap();
/// assert_eq!(parsed.ip.unwrap().ports(), Some((40000, 443)));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PacketBuilder<'a> {
    src_mac: ethernet::Address,
    dst_mac: ethernet::Address,
    vlans: vlan::Tags,
    ip: Ip,
    ttl: u8,
    tos: u8,
    ident: u32,
    dont_frag: bool,
    extensions: &'a [(IpProtocol, &'a [u8])],
    transport: Transport<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Ip {
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

#[derive(Debug, Clone, Copy)]
enum Transport<'a> {
    Tcp(tcp::Repr<'a>),
    Udp(udp::Repr<'a>),
    Sctp(sctp::Repr<'a>),
    Icmpv4(icmpv4::Repr<'a>),
    Icmpv6(icmpv6::Repr<'a>),
    Raw(IpProtocol, &'a [u8]),
}

impl Transport<'_> {
    fn protocol(&self) -> IpProtocol {
        match self {
            Transport::Tcp(_) => IpProtocol::TCP,
            Transport::Udp(_) => IpProtocol::UDP,
            Transport::Sctp(_) => IpProtocol::SCTP,
            Transport::Icmpv4(_) => IpProtocol::ICMP,
            Transport::Icmpv6(_) => IpProtocol::ICMPV6,
            Transport::Raw(protocol, _) => *protocol,
        }
    }

    fn len(&self) -> usize {
        match self {
            Transport::Tcp(repr) => repr.buffer_len(),
            Transport::Udp(repr) => repr.buffer_len(),
            Transport::Sctp(repr) => repr.buffer_len(),
            Transport::Icmpv4(repr) => repr.buffer_len(),
            Transport::Icmpv6(repr) => repr.buffer_len(),
            Transport::Raw(_, payload) => payload.len(),
        }
    }

    /// Writes the transport header and payload into `buf`, exactly [`len`](Self::len) long.
    fn emit(&self, buf: &mut [u8], src: &IpAddr, dst: &IpAddr) {
        match self {
            Transport::Tcp(repr) => repr.emit(&mut tcp::Packet::new_unchecked(buf), src, dst),
            Transport::Udp(repr) => repr.emit(&mut udp::Packet::new_unchecked(buf), src, dst),
            Transport::Sctp(repr) => repr.emit(&mut sctp::Packet::new_unchecked(buf)),
            Transport::Icmpv4(repr) => repr.emit(&mut icmpv4::Packet::new_unchecked(buf)),
            Transport::Icmpv6(repr) => {
                repr.emit(&mut icmpv6::Packet::new_unchecked(buf), src, dst);
            }
            Transport::Raw(_, payload) => buf.copy_from_slice(payload),
        }
    }
}

/// Why a [`PacketBuilder`] could not write its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The buffer is too short.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes in the buffer.
        available: usize,
    },
    /// The IP payload does not fit the 16-bit length field.
    TooLong {
        /// The IP payload length (IPv4: with the 20-byte header).
        length: usize,
    },
    /// A header of one IP family on a packet of the other: ICMP over IPv6, ICMPv6 over IPv4,
    /// IPv6 extension headers on IPv4.
    FamilyMismatch {
        /// What did not fit.
        what: &'static str,
    },
    /// A VLAN tag whose id is above 4095 or priority above 7.
    BadVlanTag {
        /// The tag.
        tag: vlan::Tag,
    },
    /// An extension header the builder does not write (only hop-by-hop, routing and
    /// destination options; the fragment header comes from
    /// [`PacketBuilder::emit_fragment`]), or one longer than 2048 bytes.
    BadExtensionHeader {
        /// Its kind.
        kind: IpProtocol,
        /// Its data length.
        len: usize,
    },
    /// TCP options longer than 40 bytes.
    TcpOptionsTooLong {
        /// Their length.
        len: usize,
    },
    /// A fragment that does not fit its datagram: the offset must be a multiple of 8, the
    /// length non-zero and a multiple of 8 unless the fragment is the last, and the fragment
    /// within the transport bytes.
    BadFragment {
        /// Fragment offset.
        offset: usize,
        /// Fragment length.
        len: usize,
        /// The length of the datagram's transport bytes.
        transport_len: usize,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BuildError::BufferTooSmall { needed, available } => {
                write!(f, "buffer of {available} bytes, the frame needs {needed}")
            }
            BuildError::TooLong { length } => {
                write!(f, "IP payload of {length} bytes exceeds {MAX_LENGTH}")
            }
            BuildError::FamilyMismatch { what } => write!(f, "{what}"),
            BuildError::BadVlanTag { tag } => {
                write!(
                    f,
                    "VLAN tag {tag}: id must be at most 4095, priority at most 7"
                )
            }
            BuildError::BadExtensionHeader { kind, len } => write!(
                f,
                "IPv6 extension header {kind} with {len} bytes of data: only hop-by-hop, \
                 routing and destination options, at most 2046 bytes"
            ),
            BuildError::TcpOptionsTooLong { len } => {
                write!(f, "TCP options of {len} bytes exceed 40")
            }
            BuildError::BadFragment {
                offset,
                len,
                transport_len,
            } => write!(
                f,
                "fragment of {len} bytes at offset {offset} does not fit a datagram of \
                 {transport_len} transport bytes in 8-byte units"
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// The header lengths of a validated frame.
struct Layout {
    /// Ethernet and VLAN tags.
    l2_len: usize,
    /// The IP header with its extension headers (not the fragment header).
    l3_len: usize,
    /// Transport header and payload.
    transport_len: usize,
}

impl<'a> PacketBuilder<'a> {
    /// An IPv4 packet from `src` to `dst`: TTL 64, identification 0, don't-fragment clear,
    /// MAC addresses 02:00:00:00:00:01 -> 02:00:00:00:00:02, no VLAN tag, no transport
    /// (protocol 253, no payload).
    pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Self::new(Ip::V4 { src, dst })
    }

    /// An IPv6 packet from `src` to `dst`, with the same defaults as [`ipv4`](Self::ipv4)
    /// (hop limit 64).
    pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        Self::new(Ip::V6 { src, dst })
    }

    fn new(ip: Ip) -> Self {
        PacketBuilder {
            src_mac: ethernet::Address([0x02, 0, 0, 0, 0, 0x01]),
            dst_mac: ethernet::Address([0x02, 0, 0, 0, 0, 0x02]),
            vlans: vlan::Tags::NONE,
            ip,
            ttl: 64,
            tos: 0,
            ident: 0,
            dont_frag: false,
            extensions: &[],
            transport: Transport::Raw(NO_TRANSPORT, &[]),
        }
    }

    /// Sets the source and destination MAC address.
    pub fn macs(mut self, src: ethernet::Address, dst: ethernet::Address) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// Sets the VLAN tags, outermost first.
    pub fn vlans(mut self, tags: vlan::Tags) -> Self {
        self.vlans = tags;
        self
    }

    /// Sets the TTL (IPv4) or hop limit (IPv6).
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the type-of-service byte (IPv4) or traffic class (IPv6).
    pub fn tos(mut self, tos: u8) -> Self {
        self.tos = tos;
        self
    }

    /// Sets the identification written into IPv4 headers (its low 16 bits) and IPv6
    /// fragment headers.
    pub fn ident(mut self, ident: u32) -> Self {
        self.ident = ident;
        self
    }

    /// Sets the IPv4 don't-fragment flag of unfragmented packets (IPv6 has none).
    pub fn dont_fragment(mut self, dont_frag: bool) -> Self {
        self.dont_frag = dont_frag;
        self
    }

    /// Sets the IPv6 extension headers, in order, each as its kind (hop-by-hop, routing or
    /// destination options) and its data after the first two bytes, padded with zeros to a
    /// multiple of 8 (see [`ipv6ext::Repr`]). The order is not checked, so that tests can
    /// write wrong ones.
    pub fn extension_headers(mut self, headers: &'a [(IpProtocol, &'a [u8])]) -> Self {
        self.extensions = headers;
        self
    }

    /// Carries a TCP segment.
    pub fn tcp(mut self, repr: tcp::Repr<'a>) -> Self {
        self.transport = Transport::Tcp(repr);
        self
    }

    /// Carries a UDP datagram.
    pub fn udp(mut self, repr: udp::Repr<'a>) -> Self {
        self.transport = Transport::Udp(repr);
        self
    }

    /// Carries an SCTP packet.
    pub fn sctp(mut self, repr: sctp::Repr<'a>) -> Self {
        self.transport = Transport::Sctp(repr);
        self
    }

    /// Carries an ICMP message (IPv4 only).
    pub fn icmpv4(mut self, repr: icmpv4::Repr<'a>) -> Self {
        self.transport = Transport::Icmpv4(repr);
        self
    }

    /// Carries an ICMPv6 message (IPv6 only).
    pub fn icmpv6(mut self, repr: icmpv6::Repr<'a>) -> Self {
        self.transport = Transport::Icmpv6(repr);
        self
    }

    /// Carries `payload` as protocol `protocol`, written as it is.
    pub fn raw(mut self, protocol: IpProtocol, payload: &'a [u8]) -> Self {
        self.transport = Transport::Raw(protocol, payload);
        self
    }

    /// The length of the frame [`emit`](Self::emit) writes.
    pub fn frame_len(&self) -> usize {
        let layout = self.layout();
        layout.l2_len + layout.l3_len + layout.transport_len
    }

    /// The length of the transport header and payload: the bytes
    /// [`emit_fragment`](Self::emit_fragment) cuts into fragments.
    pub fn transport_len(&self) -> usize {
        self.transport.len()
    }

    /// Writes the frame at the start of `buf` and returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BuildError> {
        self.write(buf, None)
    }

    /// Writes one IP fragment of the frame at the start of `buf` and returns its length: the
    /// fragment carries transport bytes `offset..offset + len` (header included), with the
    /// more-fragments flag set unless it is the last. IPv4 fragments never carry
    /// don't-fragment; IPv6 fragments carry a fragment header after the extension headers.
    ///
    /// `buf` must hold the whole unfragmented frame (plus the 8-byte fragment header for
    /// IPv6): the transport is written whole, then the fragment's part moved into place.
    pub fn emit_fragment(
        &self,
        buf: &mut [u8],
        offset: usize,
        len: usize,
    ) -> Result<usize, BuildError> {
        self.write(buf, Some((offset, len)))
    }

    fn layout(&self) -> Layout {
        let l3_len = match self.ip {
            Ip::V4 { .. } => ipv4::HEADER_LEN,
            Ip::V6 { .. } => {
                ipv6::HEADER_LEN
                    + self
                        .extensions
                        .iter()
                        .map(|&(_, data)| extension_len(data))
                        .sum::<usize>()
            }
        };
        Layout {
            l2_len: ethernet::HEADER_LEN + vlan::HEADER_LEN * self.vlans.count(),
            l3_len,
            transport_len: self.transport.len(),
        }
    }

    /// Checks every limit of the wire format; the emitters below then cannot panic.
    fn validate(&self, layout: &Layout, fragment_header: usize) -> Result<(), BuildError> {
        if let Some(tag) = self
            .vlans
            .iter()
            .find(|t| t.vid > vlan::MAX_VID || t.pcp > 7)
        {
            return Err(BuildError::BadVlanTag { tag });
        }
        let is_v4 = matches!(self.ip, Ip::V4 { .. });
        match self.transport {
            Transport::Icmpv4(_) if !is_v4 => {
                return Err(BuildError::FamilyMismatch {
                    what: "ICMP over IPv6 (use ICMPv6)",
                });
            }
            Transport::Icmpv6(_) if is_v4 => {
                return Err(BuildError::FamilyMismatch {
                    what: "ICMPv6 over IPv4 (use ICMP)",
                });
            }
            Transport::Tcp(repr) if repr.options.len() > tcp::MAX_HEADER_LEN - tcp::HEADER_LEN => {
                return Err(BuildError::TcpOptionsTooLong {
                    len: repr.options.len(),
                });
            }
            _ => {}
        }
        if is_v4 && !self.extensions.is_empty() {
            return Err(BuildError::FamilyMismatch {
                what: "IPv6 extension headers on an IPv4 packet",
            });
        }
        for &(kind, data) in self.extensions {
            let writable = matches!(
                kind,
                IpProtocol::HOP_BY_HOP | IpProtocol::ROUTING | IpProtocol::DESTINATION_OPTIONS
            );
            if !writable || extension_len(data) > ipv6ext::MAX_HEADER_LEN {
                return Err(BuildError::BadExtensionHeader {
                    kind,
                    len: data.len(),
                });
            }
        }
        // IPv4 counts its header in the total length, IPv6 counts only what follows.
        let ip_len = match self.ip {
            Ip::V4 { .. } => layout.l3_len,
            Ip::V6 { .. } => layout.l3_len - ipv6::HEADER_LEN,
        } + fragment_header
            + layout.transport_len;
        if ip_len > MAX_LENGTH {
            return Err(BuildError::TooLong { length: ip_len });
        }
        Ok(())
    }

    fn write(&self, buf: &mut [u8], fragment: Option<(usize, usize)>) -> Result<usize, BuildError> {
        let layout = self.layout();
        let fragment_header = match (self.ip, fragment) {
            (Ip::V6 { .. }, Some(_)) => ipv6frag::HEADER_LEN,
            _ => 0,
        };
        self.validate(&layout, fragment_header)?;
        let transport_at = layout.l2_len + layout.l3_len + fragment_header;
        let needed = transport_at + layout.transport_len;
        if buf.len() < needed {
            return Err(BuildError::BufferTooSmall {
                needed,
                available: buf.len(),
            });
        }
        let (offset, carried) = match fragment {
            None => (0, layout.transport_len),
            Some((offset, len)) => {
                let end = offset.checked_add(len);
                let fits = end.is_some_and(|end| end <= layout.transport_len);
                let last = end == Some(layout.transport_len);
                if !fits || len == 0 || offset % 8 != 0 || (!last && len % 8 != 0) {
                    return Err(BuildError::BadFragment {
                        offset,
                        len,
                        transport_len: layout.transport_len,
                    });
                }
                (offset, len)
            }
        };
        let more_frags = offset + carried < layout.transport_len;

        let ip_ethertype = match self.ip {
            Ip::V4 { .. } => EtherType::IPV4,
            Ip::V6 { .. } => EtherType::IPV6,
        };
        self.write_l2(buf, ip_ethertype);

        let (src, dst) = match self.ip {
            Ip::V4 { src, dst } => (IpAddr::V4(src), IpAddr::V4(dst)),
            Ip::V6 { src, dst } => (IpAddr::V6(src), IpAddr::V6(dst)),
        };
        self.transport
            .emit(&mut buf[transport_at..needed], &src, &dst);
        if fragment.is_some() {
            buf.copy_within(
                transport_at + offset..transport_at + offset + carried,
                transport_at,
            );
        }

        let l3 = &mut buf[layout.l2_len..transport_at];
        let protocol = self.transport.protocol();
        match self.ip {
            Ip::V4 { src, dst } => {
                let repr = ipv4::Repr {
                    src_addr: src,
                    dst_addr: dst,
                    protocol,
                    ttl: self.ttl,
                    tos: self.tos,
                    ident: self.ident as u16,
                    dont_frag: self.dont_frag && fragment.is_none(),
                    more_frags,
                    frag_offset: offset as u16,
                    payload_len: carried,
                };
                repr.emit(&mut ipv4::Packet::new_unchecked(l3));
            }
            Ip::V6 { src, dst } => {
                let upper = if fragment.is_some() {
                    IpProtocol::FRAGMENT
                } else {
                    protocol
                };
                let first = self.extensions.first().map_or(upper, |&(kind, _)| kind);
                let repr = ipv6::Repr {
                    src_addr: src,
                    dst_addr: dst,
                    next_header: first,
                    hop_limit: self.ttl,
                    traffic_class: self.tos,
                    flow_label: 0,
                    payload_len: layout.l3_len - ipv6::HEADER_LEN + fragment_header + carried,
                };
                let (header, mut rest) = l3.split_at_mut(ipv6::HEADER_LEN);
                repr.emit(&mut ipv6::Packet::new_unchecked(header));
                for (i, &(_, data)) in self.extensions.iter().enumerate() {
                    let next = self.extensions.get(i + 1).map_or(upper, |&(kind, _)| kind);
                    let repr = ipv6ext::Repr {
                        next_header: next,
                        data,
                    };
                    let (header, tail) = rest.split_at_mut(repr.buffer_len());
                    repr.emit(&mut ipv6ext::Header::new_unchecked(header));
                    rest = tail;
                }
                if fragment.is_some() {
                    let repr = ipv6frag::Repr {
                        next_header: protocol,
                        frag_offset: offset as u16,
                        more_frags,
                        ident: self.ident,
                    };
                    repr.emit(&mut ipv6frag::Header::new_unchecked(rest));
                }
            }
        }
        Ok(transport_at + carried)
    }

    /// Writes Ethernet and the VLAN tags; `ip_ethertype` follows the last.
    fn write_l2(&self, buf: &mut [u8], ip_ethertype: EtherType) {
        let mut tags = self.vlans.iter().peekable();
        let first = tags.peek().map_or(ip_ethertype, |tag| tag.tpid);
        let repr = ethernet::Repr {
            src_addr: self.src_mac,
            dst_addr: self.dst_mac,
            ethertype: first,
        };
        repr.emit(&mut ethernet::Frame::new_unchecked(&mut *buf));
        let mut at = ethernet::HEADER_LEN;
        while let Some(tag) = tags.next() {
            let repr = vlan::Repr {
                pcp: tag.pcp,
                dei: tag.dei,
                vid: tag.vid,
                ethertype: tags.peek().map_or(ip_ethertype, |next| next.tpid),
            };
            repr.emit(&mut vlan::Packet::new_unchecked(&mut buf[at..]));
            at += vlan::HEADER_LEN;
        }
    }
}

/// The length of the extension header that carries `data`.
fn extension_len(data: &[u8]) -> usize {
    let repr = ipv6ext::Repr {
        next_header: IpProtocol::NO_NEXT_HEADER,
        data,
    };
    repr.buffer_len()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::testdata::{self, bytes};
    use crate::vlan::{Tag, Tags};
    use crate::{Fragment, L4, Parsed, parse_frame};

    fn v4() -> PacketBuilder<'static> {
        PacketBuilder::ipv4([10, 0, 0, 1].into(), [10, 0, 0, 2].into())
    }

    fn v6() -> PacketBuilder<'static> {
        PacketBuilder::ipv6(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        )
    }

    fn emit(builder: &PacketBuilder<'_>) -> Vec<u8> {
        let mut buf = vec![0; builder.frame_len()];
        let len = builder.emit(&mut buf).unwrap();
        assert_eq!(len, buf.len());
        buf
    }

    #[test]
    fn writes_the_known_frames() {
        let syn = v4().tcp(tcp::Repr {
            src_port: 49152,
            dst_port: 80,
            seq_number: 1,
            flags: tcp::Flags::SYN,
            window_len: 64240,
            options: &[0x02, 0x04, 0x05, 0xb4],
            ..Default::default()
        });
        assert_eq!(emit(&syn), bytes(testdata::IPV4_TCP_SYN));

        let udp = PacketBuilder::ipv4([192, 0, 2, 1].into(), [192, 0, 2, 53].into())
            .vlans(Tags::one(Tag {
                pcp: 3,
                ..Tag::c_tag(100)
            }))
            .udp(udp::Repr {
                src_port: 5353,
                dst_port: 53,
                payload: b"hello",
            });
        assert_eq!(emit(&udp), bytes(testdata::VLAN_IPV4_UDP));

        let router_alert: &[(IpProtocol, &[u8])] = &[(
            IpProtocol::HOP_BY_HOP,
            &[0x05, 0x02, 0x00, 0x00, 0x01, 0x00],
        )];
        let icmpv6 = v6()
            .vlans(Tags::two(Tag::s_tag(10), Tag::c_tag(20)))
            .extension_headers(router_alert)
            .icmpv6(icmpv6::Repr::echo_request(0x1234, 1, b"abcd"));
        assert_eq!(emit(&icmpv6), bytes(testdata::QINQ_IPV6_HBH_ICMPV6));

        let init = bytes(testdata::IPV4_SCTP_INIT);
        let sctp = v4().sctp(sctp::Repr {
            src_port: 5000,
            dst_port: 38412,
            verification_tag: 0,
            chunks: &init[46..],
        });
        assert_eq!(emit(&sctp), init);

        let echo = v4().icmpv4(icmpv4::Repr::echo_request(0x1234, 1, b"abcd"));
        assert_eq!(emit(&echo), bytes(testdata::IPV4_ICMP_ECHO));
    }

    #[test]
    fn header_fields_and_defaults() {
        let builder = v4()
            .macs(ethernet::Address([1; 6]), ethernet::Address::BROADCAST)
            .ttl(3)
            .tos(0xb8)
            .ident(0x1_2345)
            .dont_fragment(true);
        let frame = emit(&builder);
        let eth = ethernet::Frame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.src_addr(), ethernet::Address([1; 6]));
        assert_eq!(eth.dst_addr(), ethernet::Address::BROADCAST);
        let ip = ipv4::Repr::parse(&ipv4::Packet::new_unchecked(&frame[14..])).unwrap();
        assert_eq!((ip.ttl, ip.tos, ip.ident), (3, 0xb8, 0x2345));
        assert!(ip.dont_frag);
        assert_eq!(ip.protocol, NO_TRANSPORT);
        assert_eq!(ip.payload_len, 0);
        assert_eq!(builder.transport_len(), 0);

        let frame = emit(&v6().ttl(7).tos(0x20));
        let ip = ipv6::Repr::parse(&ipv6::Packet::new_unchecked(&frame[14..])).unwrap();
        assert_eq!((ip.hop_limit, ip.traffic_class), (7, 0x20));
    }

    #[test]
    fn errors() {
        let mut small = [0; 40];
        assert_eq!(v4().emit(&mut small), Ok(34));
        let err = v4()
            .raw(IpProtocol::UDP, &[0; 20])
            .emit(&mut small)
            .unwrap_err();
        assert_eq!(
            err,
            BuildError::BufferTooSmall {
                needed: 54,
                available: 40
            }
        );
        assert_eq!(err.to_string(), "buffer of 40 bytes, the frame needs 54");

        let mut buf = vec![0; 70_000];
        let big = vec![0; 65_535];
        assert_eq!(
            v4().raw(IpProtocol::UDP, &big[..65_516]).emit(&mut buf),
            Err(BuildError::TooLong { length: 65_536 })
        );
        assert!(
            v4().raw(IpProtocol::UDP, &big[..65_515])
                .emit(&mut buf)
                .is_ok()
        );
        assert!(v6().raw(IpProtocol::UDP, &big).emit(&mut buf).is_ok());
        // The fragment header counts too.
        assert_eq!(
            v6().raw(IpProtocol::UDP, &big)
                .emit_fragment(&mut buf, 0, 8),
            Err(BuildError::TooLong { length: 65_543 })
        );

        let echo = icmpv4::Repr::echo_request(1, 1, &[]);
        assert!(matches!(
            v6().icmpv4(echo).emit(&mut buf),
            Err(BuildError::FamilyMismatch { .. })
        ));
        let echo = icmpv6::Repr::echo_request(1, 1, &[]);
        assert!(matches!(
            v4().icmpv6(echo).emit(&mut buf),
            Err(BuildError::FamilyMismatch { .. })
        ));
        let hbh: &[(IpProtocol, &[u8])] = &[(IpProtocol::HOP_BY_HOP, &[])];
        assert_eq!(
            v4().extension_headers(hbh)
                .emit(&mut buf)
                .unwrap_err()
                .to_string(),
            "IPv6 extension headers on an IPv4 packet"
        );

        let bad = Tag::c_tag(4096);
        assert_eq!(
            v4().vlans(Tags::one(bad)).emit(&mut buf),
            Err(BuildError::BadVlanTag { tag: bad })
        );
        let bad = Tag {
            pcp: 8,
            ..Tag::c_tag(1)
        };
        assert_eq!(
            v4().vlans(Tags::two(Tag::s_tag(1), bad)).emit(&mut buf),
            Err(BuildError::BadVlanTag { tag: bad })
        );

        let fragment: &[(IpProtocol, &[u8])] = &[(IpProtocol::FRAGMENT, &[0; 6])];
        assert_eq!(
            v6().extension_headers(fragment).emit(&mut buf),
            Err(BuildError::BadExtensionHeader {
                kind: IpProtocol::FRAGMENT,
                len: 6
            })
        );
        let long: &[(IpProtocol, &[u8])] = &[(IpProtocol::ROUTING, &big[..2047])];
        assert!(matches!(
            v6().extension_headers(long).emit(&mut buf),
            Err(BuildError::BadExtensionHeader { len: 2047, .. })
        ));
        let longest: &[(IpProtocol, &[u8])] = &[(IpProtocol::ROUTING, &big[..2046])];
        assert!(v6().extension_headers(longest).emit(&mut buf).is_ok());

        let options = [1; 44];
        let tcp = tcp::Repr {
            options: &options,
            ..Default::default()
        };
        assert_eq!(
            v4().tcp(tcp).emit(&mut buf),
            Err(BuildError::TcpOptionsTooLong { len: 44 })
        );
        let tcp = tcp::Repr {
            options: &options[..40],
            ..Default::default()
        };
        assert!(v4().tcp(tcp).emit(&mut buf).is_ok());
    }

    #[test]
    fn fragment_errors() {
        let mut buf = [0; 200];
        let builder = v4().raw(IpProtocol::UDP, &[7; 100]);
        for (offset, len) in [(4, 8), (0, 12), (96, 8), (0, 0), (8, 200), (usize::MAX, 8)] {
            assert_eq!(
                builder.emit_fragment(&mut buf, offset, len),
                Err(BuildError::BadFragment {
                    offset,
                    len,
                    transport_len: 100
                }),
                "{offset} {len}"
            );
        }
        // The last fragment may have any length.
        assert_eq!(builder.emit_fragment(&mut buf, 96, 4), Ok(14 + 20 + 4));
        assert!(
            BuildError::BadFragment {
                offset: 4,
                len: 8,
                transport_len: 100
            }
            .to_string()
            .contains("at offset 4")
        );
    }

    /// Emits every fragment of `builder`'s datagram, `step` transport bytes each, and checks
    /// that they parse as fragments of it and carry its transport bytes in order.
    fn check_fragments(builder: &PacketBuilder<'_>, step: usize) {
        let whole = emit(builder);
        let parsed = parse_frame(&whole).unwrap().ip.unwrap();
        let transport = &whole[parsed.l4_offset..];
        let l4_header_len = parsed.payload_offset - parsed.l4_offset;
        let is_v6 = parsed.src.is_ipv6();
        let mut buf = vec![0; whole.len() + ipv6frag::HEADER_LEN];
        let mut carried: Vec<u8> = Vec::new();
        for offset in (0..transport.len()).step_by(step) {
            let len = step.min(transport.len() - offset);
            let frame_len = builder.emit_fragment(&mut buf, offset, len).unwrap();
            let frame = &buf[..frame_len];
            let result = parse_frame(frame);
            if offset == 0 && len < l4_header_len {
                assert!(result.is_err(), "a tiny first fragment must not parse");
                carried.extend(&frame[frame_len - len..]);
                continue;
            }
            let ip = result.unwrap().ip.unwrap();
            let more = offset + len < transport.len();
            // A "fragment" that is the whole datagram is no fragment.
            let expected = (offset != 0 || more).then_some(Fragment {
                offset: offset as u16,
                more,
                ident: if is_v6 { 0xfeed_beef } else { 0xbeef },
            });
            assert_eq!(ip.fragment, expected);
            assert_eq!(ip.protocol, parsed.protocol);
            assert_eq!(ip.l4.is_some(), offset == 0 && parsed.l4.is_some());
            if offset == 0 {
                assert_eq!(ip.l4, parsed.l4);
            }
            carried.extend(&frame[ip.l4_offset..]);
        }
        assert_eq!(carried, transport);
    }

    #[test]
    fn fragments_carry_the_datagram() {
        let payload: Vec<u8> = (0..100).collect();
        let ext: &[(IpProtocol, &[u8])] = &[(IpProtocol::DESTINATION_OPTIONS, &[1, 2, 0, 0])];
        let udp = udp::Repr {
            src_port: 1,
            dst_port: 2,
            payload: &payload,
        };
        let tcp = tcp::Repr {
            src_port: 1,
            dst_port: 2,
            payload: &payload,
            ..Default::default()
        };
        for builder in [
            v4().udp(udp),
            v4().tcp(tcp).vlans(Tags::one(Tag::c_tag(5))),
            v6().udp(udp).extension_headers(ext),
            v6().tcp(tcp),
        ] {
            for step in [8, 16, 24, 64, 128] {
                check_fragments(&builder.ident(0xfeed_beef), step);
            }
        }
    }

    fn any_tags() -> impl Strategy<Value = Tags> {
        let tag = (0..=vlan::MAX_VID, 0..=7u8, any::<bool>()).prop_map(|(vid, pcp, dei)| Tag {
            tpid: EtherType::VLAN,
            pcp,
            dei,
            vid,
        });
        prop_oneof![
            Just(Tags::NONE),
            tag.clone().prop_map(Tags::one),
            (tag.clone(), tag).prop_map(|(outer, inner)| Tags::two(
                Tag {
                    tpid: EtherType::QINQ,
                    ..outer
                },
                inner
            )),
        ]
    }

    /// A transport to put in a builder; the payload is separate, so that it can be borrowed.
    #[derive(Debug, Clone)]
    enum Case {
        Tcp {
            ports: (u16, u16),
            numbers: (u32, u32),
            flags: u16,
            window: u16,
            options: Vec<u8>,
        },
        Udp {
            ports: (u16, u16),
        },
        Sctp {
            ports: (u16, u16),
            tag: u32,
        },
        Icmp {
            msg_type: u8,
            code: u8,
            rest: u32,
        },
        Raw {
            protocol: u8,
        },
    }

    fn any_case() -> impl Strategy<Value = Case> {
        prop_oneof![
            (
                any::<(u16, u16)>(),
                any::<(u32, u32)>(),
                0..0x200u16,
                any::<u16>(),
                proptest::collection::vec(any::<[u8; 4]>(), 0..=10),
            )
                .prop_map(|(ports, numbers, flags, window, words)| Case::Tcp {
                    ports,
                    numbers,
                    flags,
                    window,
                    options: words.concat(),
                }),
            any::<(u16, u16)>().prop_map(|ports| Case::Udp { ports }),
            any::<((u16, u16), u32)>().prop_map(|(ports, tag)| Case::Sctp { ports, tag }),
            any::<(u8, u8, u32)>().prop_map(|(msg_type, code, rest)| Case::Icmp {
                msg_type,
                code,
                rest
            }),
            prop::sample::select(vec![50u8, 59, 253, 254])
                .prop_map(|protocol| Case::Raw { protocol }),
        ]
    }

    fn any_extensions() -> impl Strategy<Value = Vec<(IpProtocol, Vec<u8>)>> {
        let kind = prop::sample::select(vec![IpProtocol::ROUTING, IpProtocol::DESTINATION_OPTIONS]);
        (
            any::<bool>(),
            proptest::collection::vec((kind, 0..30usize), 0..3),
        )
            .prop_map(|(hop_by_hop, rest)| {
                let mut headers: Vec<(IpProtocol, Vec<u8>)> = rest
                    .into_iter()
                    .map(|(kind, len)| (kind, vec![0; len]))
                    .collect();
                if hop_by_hop {
                    headers.insert(0, (IpProtocol::HOP_BY_HOP, vec![0; 6]));
                }
                headers
            })
    }

    /// Puts `case` with `payload` into `builder` and returns it with the transport header
    /// parse_frame should find.
    fn with_case<'a>(
        builder: PacketBuilder<'a>,
        case: &'a Case,
        payload: &'a [u8],
        is_v6: bool,
    ) -> (PacketBuilder<'a>, Option<L4>) {
        match case {
            Case::Tcp {
                ports,
                numbers,
                flags,
                window,
                options,
            } => {
                let repr = tcp::Repr {
                    src_port: ports.0,
                    dst_port: ports.1,
                    seq_number: numbers.0,
                    ack_number: numbers.1,
                    flags: tcp::Flags(*flags),
                    window_len: *window,
                    urgent_at: 0,
                    options,
                    payload,
                };
                let l4 = L4::Tcp {
                    src_port: ports.0,
                    dst_port: ports.1,
                    flags: tcp::Flags(*flags),
                    seq_number: numbers.0,
                    ack_number: numbers.1,
                };
                (builder.tcp(repr), Some(l4))
            }
            Case::Udp { ports } => {
                let repr = udp::Repr {
                    src_port: ports.0,
                    dst_port: ports.1,
                    payload,
                };
                let l4 = L4::Udp {
                    src_port: ports.0,
                    dst_port: ports.1,
                };
                (builder.udp(repr), Some(l4))
            }
            Case::Sctp { ports, tag } => {
                let repr = sctp::Repr {
                    src_port: ports.0,
                    dst_port: ports.1,
                    verification_tag: *tag,
                    chunks: payload,
                };
                let l4 = L4::Sctp {
                    src_port: ports.0,
                    dst_port: ports.1,
                    verification_tag: *tag,
                };
                (builder.sctp(repr), Some(l4))
            }
            Case::Icmp {
                msg_type,
                code,
                rest,
            } if is_v6 => {
                let msg_type = icmpv6::Message(*msg_type);
                let repr = icmpv6::Repr {
                    msg_type,
                    code: *code,
                    rest_of_header: *rest,
                    data: payload,
                };
                let l4 = L4::Icmpv6 {
                    msg_type,
                    code: *code,
                    echo_ident: msg_type.is_echo().then_some((rest >> 16) as u16),
                };
                (builder.icmpv6(repr), Some(l4))
            }
            Case::Icmp {
                msg_type,
                code,
                rest,
            } => {
                let msg_type = icmpv4::Message(*msg_type);
                let repr = icmpv4::Repr {
                    msg_type,
                    code: *code,
                    rest_of_header: *rest,
                    data: payload,
                };
                let l4 = L4::Icmpv4 {
                    msg_type,
                    code: *code,
                    echo_ident: msg_type.is_echo().then_some((rest >> 16) as u16),
                };
                (builder.icmpv4(repr), Some(l4))
            }
            Case::Raw { protocol } => (builder.raw(IpProtocol(*protocol), payload), None),
        }
    }

    /// The transport bytes of `parsed` validate with each protocol's `Repr::parse`, which
    /// checks the checksum.
    fn check_checksums(frame: &[u8], parsed: &Parsed) {
        let ip = parsed.ip.unwrap();
        let l3 = &frame[parsed.l3_offset..];
        if !ip.src.is_ipv6() {
            ipv4::Repr::parse(&ipv4::Packet::new_unchecked(l3)).unwrap();
        }
        let segment = &frame[ip.l4_offset..parsed.l3_offset + ip.total_len];
        let (src, dst) = (&ip.src, &ip.dst);
        match ip.l4 {
            Some(L4::Tcp { .. }) => {
                tcp::Repr::parse(&tcp::Packet::new_unchecked(segment), src, dst).unwrap();
            }
            Some(L4::Udp { .. }) => {
                udp::Repr::parse(&udp::Packet::new_unchecked(segment), src, dst).unwrap();
            }
            Some(L4::Sctp { .. }) => {
                sctp::Repr::parse(&sctp::Packet::new_unchecked(segment)).unwrap();
            }
            Some(L4::Icmpv4 { .. }) => {
                icmpv4::Repr::parse(&icmpv4::Packet::new_unchecked(segment)).unwrap();
            }
            Some(L4::Icmpv6 { .. }) => {
                icmpv6::Repr::parse(&icmpv6::Packet::new_unchecked(segment), src, dst).unwrap();
            }
            None => {}
        }
    }

    proptest! {
        #[test]
        fn builder_then_parse_frame_round_trip(
            is_v6 in any::<bool>(),
            addrs in any::<([u8; 16], [u8; 16])>(),
            tags in any_tags(),
            (ttl, tos, ident) in any::<(u8, u8, u32)>(),
            case in any_case(),
            extensions in any_extensions(),
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            step in 1..20usize,
        ) {
            let headers: Vec<(IpProtocol, &[u8])> =
                extensions.iter().map(|(kind, data)| (*kind, &data[..])).collect();
            let (builder, src, dst) = if is_v6 {
                let (src, dst) = (Ipv6Addr::from(addrs.0), Ipv6Addr::from(addrs.1));
                let builder = PacketBuilder::ipv6(src, dst).extension_headers(&headers);
                (builder, IpAddr::V6(src), IpAddr::V6(dst))
            } else {
                let (s, d) = (&addrs.0[..4], &addrs.1[..4]);
                let src = Ipv4Addr::new(s[0], s[1], s[2], s[3]);
                let dst = Ipv4Addr::new(d[0], d[1], d[2], d[3]);
                (PacketBuilder::ipv4(src, dst), IpAddr::V4(src), IpAddr::V4(dst))
            };
            let builder = builder.vlans(tags).ttl(ttl).tos(tos).ident(ident);
            let (builder, l4) = with_case(builder, &case, &payload, is_v6);

            let frame = emit(&builder);
            let parsed = parse_frame(&frame).unwrap();
            prop_assert_eq!(parsed.vlans, tags);
            let l2_len = 14 + 4 * tags.count();
            prop_assert_eq!(parsed.l3_offset, l2_len);
            let ip = parsed.ip.unwrap();
            prop_assert_eq!((ip.src, ip.dst), (src, dst));
            prop_assert_eq!(ip.ttl, ttl);
            prop_assert_eq!(ip.total_len, frame.len() - l2_len);
            prop_assert_eq!(ip.fragment, None);
            prop_assert_eq!(ip.l4, l4);
            prop_assert_eq!(ip.payload_offset, frame.len() - payload.len());
            prop_assert_eq!(ip.l4_offset + builder.transport_len(), frame.len());
            check_checksums(&frame, &parsed);

            check_fragments(&builder.ident(0xfeed_beef), step * 8);
        }
    }
}
