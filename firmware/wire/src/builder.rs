//! Writing whole frames: Ethernet, optional VLAN tags, IPv4 or IPv6 (with extension
//! headers), and a transport header with its payload, every checksum computed.
//!
//! [`PacketBuilder`] is a plain description of a frame, built by chained calls and written by
//! [`PacketBuilder::emit`] into a buffer the caller owns (no allocation), or cut into IP
//! fragments by [`PacketBuilder::emit_fragment`]. Every limit of the wire format is checked
//! before anything is written, so a bad description is a [`BuildError`], never a panic.
//!
//! ```
//! use palisade_wire::{PacketBuilder, parse_frame, tcp, vlan};
//!
//! let mut buf = [0; 128];
//! let len = PacketBuilder::ipv4([10, 0, 0, 1].into(), [10, 0, 0, 2].into())
//!     .vlans(vlan::Tags::one(vlan::Tag::c_tag(100)))
//!     .tcp(tcp::Repr { src_port: 40000, dst_port: 443, flags: tcp::Flags::SYN, ..Default::default() })
//!     .emit(&mut buf)
//!     .unwrap();
//! let parsed = parse_frame(&buf[..len]).unwrap();
//! assert_eq!(parsed.ip.unwrap().ports(), Some((40000, 443)));
//! ```

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

/// A frame to write. See the [module documentation](self) for an example.
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
