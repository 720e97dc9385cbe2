//! The fast path: [`parse_frame`] takes the bytes of an Ethernet frame and returns, in one
//! pass, what a firewall decides on.
//!
//! It walks Ethernet, up to two VLAN tags, IPv4 or IPv6 (skipping IPv4 options and up to
//! [`MAX_EXTENSION_HEADERS`] IPv6 extension headers: hop-by-hop, routing, fragment,
//! destination options, authentication) and the transport header (TCP, UDP, SCTP, ICMP,
//! ICMPv6), using the views of this crate, each checked once. It does not allocate, does
//! bounded work whatever the bytes say, and for any input returns a [`Parsed`] or a
//! [`ParseError`] naming the header and its offset; it never panics.
//!
//! What it decides, so that the pipeline does not have to:
//!
//! * A frame whose EtherType (after the tags) is neither IPv4 nor IPv6 is not an error:
//!   [`Parsed::ip`] is `None` and policy decides.
//! * A fragment with a non-zero offset has no transport header: [`IpInfo::l4`] is `None` and
//!   [`IpInfo::protocol`] is what the datagram carries. A first fragment must hold the whole
//!   transport header (RFC 1858, RFC 7112); if it does not, that is an error.
//! * IPv6: the hop-by-hop header must come first, at most one fragment header may appear,
//!   ESP and "no next header" end the walk ([`IpInfo::protocol`] says which), and headers
//!   this parser does not skip (mobility, HIP, shim6) end it too, as the protocol.
//! * Checksums are not verified: the NIC does it on receive (the `Repr::parse` functions of
//!   each protocol module verify them where software must).
//! * Lengths are taken from the headers, not the frame: Ethernet padding after a short
//!   packet is ignored, and a length field that claims more than the frame holds is an error.

use std::net::IpAddr;

use crate::error::{Layer, ParseError};
use crate::ethernet::{self, EtherType};
use crate::ip::{IpProtocol, IpVersion};
use crate::{ah, icmpv4, icmpv6, ipv4, ipv6, ipv6ext, ipv6frag, sctp, tcp, udp, vlan};

/// How many IPv6 extension headers [`parse_frame`] walks before it gives up with
/// [`ParseError::TooManyExtensionHeaders`]. Real traffic rarely carries more than two or
/// three (RFC 7045 leaves the limit to the middlebox).
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// What [`parse_frame`] found in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// The VLAN tags, outermost first.
    pub vlans: vlan::Tags,
    /// The EtherType after the tags.
    pub ethertype: EtherType,
    /// Where the network-layer header starts (after Ethernet and the tags).
    pub l3_offset: usize,
    /// The IP layer, or `None` for any other EtherType (ARP, LLDP, ...).
    pub ip: Option<IpInfo>,
}

/// The IP layer of a parsed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpInfo {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The protocol of what follows the IP header and its extension headers (for IPv6, the
    /// last next-header value of the chain).
    pub protocol: IpProtocol,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// The packet length the header gives: IPv4 total length, or 40 + IPv6 payload length.
    pub total_len: usize,
    /// Fragment information if the packet is a fragment (an IPv6 atomic fragment is not).
    pub fragment: Option<Fragment>,
    /// Where the transport header starts (after options and extension headers); for a
    /// non-first fragment, where the fragment's data starts.
    pub l4_offset: usize,
    /// The transport header, when there is one this parser reads.
    pub l4: Option<L4>,
    /// Where the transport payload starts: after the transport header, or `l4_offset` when
    /// there is none.
    pub payload_offset: usize,
}

impl IpInfo {
    /// IPv4 or IPv6.
    pub fn version(&self) -> IpVersion {
        match self.src {
            IpAddr::V4(_) => IpVersion::V4,
            IpAddr::V6(_) => IpVersion::V6,
        }
    }

    /// Whether the packet is a fragment.
    pub fn is_fragment(&self) -> bool {
        self.fragment.is_some()
    }

    /// Source and destination port, for TCP, UDP and SCTP.
    pub fn ports(&self) -> Option<(u16, u16)> {
        self.l4.and_then(|l4| l4.ports())
    }
}

/// Where a fragment sits in its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// Offset of the fragment's data in the datagram, in bytes.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
    /// The datagram's identification (16 bits for IPv4, 32 for IPv6).
    pub ident: u32,
}

impl Fragment {
    /// Whether this is the first fragment, the one with the transport header.
    pub fn is_first(&self) -> bool {
        self.offset == 0
    }
}

/// The transport header fields a firewall matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L4 {
    /// TCP.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Flags.
        flags: tcp::Flags,
        /// Sequence number.
        seq_number: u32,
        /// Acknowledgment number.
        ack_number: u32,
    },
    /// UDP.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// SCTP.
    Sctp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Verification tag.
        verification_tag: u32,
    },
    /// ICMP (over IPv4).
    Icmpv4 {
        /// Message type.
        msg_type: icmpv4::Message,
        /// Code.
        code: u8,
        /// The identifier of an echo request or reply.
        echo_ident: Option<u16>,
    },
    /// ICMPv6 (over IPv6).
    Icmpv6 {
        /// Message type.
        msg_type: icmpv6::Message,
        /// Code.
        code: u8,
        /// The identifier of an echo request or reply.
        echo_ident: Option<u16>,
    },
}

impl L4 {
    /// Source and destination port, for TCP, UDP and SCTP.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match *self {
            L4::Tcp {
                src_port, dst_port, ..
            }
            | L4::Udp { src_port, dst_port }
            | L4::Sctp {
                src_port, dst_port, ..
            } => Some((src_port, dst_port)),
            L4::Icmpv4 { .. } | L4::Icmpv6 { .. } => None,
        }
    }
}

/// Parses an Ethernet frame down to the transport header. See the module documentation for
/// what it decides and what it promises.
pub fn parse_frame(frame: &[u8]) -> Result<Parsed, ParseError> {
    let ethernet = ethernet::Frame::new_checked(frame)?;
    let mut ethertype = ethernet.ethertype();
    let mut offset = ethernet::HEADER_LEN;
    let mut vlans = vlan::Tags::NONE;
    let mut tag_count = 0;
    while ethertype == EtherType::VLAN || ethertype == EtherType::QINQ {
        if tag_count == 2 || (tag_count == 1 && ethertype != EtherType::VLAN) {
            return Err(ParseError::UnexpectedVlanTag {
                offset: offset - 2,
                tpid: ethertype.0,
            });
        }
        let tag = vlan::Packet::new_checked(rest(frame, offset)).map_err(|e| e.shifted(offset))?;
        vlans.push(vlan::Tag {
            tpid: ethertype,
            pcp: tag.pcp(),
            dei: tag.dei(),
            vid: tag.vid(),
        });
        tag_count += 1;
        ethertype = tag.ethertype();
        offset += vlan::HEADER_LEN;
    }
    let ip = match ethertype {
        EtherType::IPV4 => Some(parse_ipv4(frame, offset)?),
        EtherType::IPV6 => Some(parse_ipv6(frame, offset)?),
        _ => None,
    };
    Ok(Parsed {
        vlans,
        ethertype,
        l3_offset: offset,
        ip,
    })
}

/// The bytes from `at` on, empty past the end: offsets come from checked lengths, but an
/// empty slice (and so a `Truncated` error) is the safe answer if one ever did not.
#[inline]
fn rest(bytes: &[u8], at: usize) -> &[u8] {
    bytes.get(at..).unwrap_or_default()
}

fn parse_ipv4(frame: &[u8], at: usize) -> Result<IpInfo, ParseError> {
    let packet = ipv4::Packet::new_checked(rest(frame, at)).map_err(|e| e.shifted(at))?;
    if packet.version() != 4 {
        return Err(ParseError::Version {
            layer: Layer::Ipv4,
            offset: at,
            version: packet.version(),
        });
    }
    let fragment = packet.is_fragment().then(|| Fragment {
        offset: packet.frag_offset(),
        more: packet.more_frags(),
        ident: u32::from(packet.ident()),
    });
    let protocol = packet.protocol();
    let l4_offset = at + packet.header_len();
    let (l4, l4_header_len) = if packet.frag_offset() == 0 {
        parse_l4(
            IpVersion::V4,
            protocol,
            packet.payload(),
            fragment.is_some(),
            l4_offset,
        )?
    } else {
        (None, 0)
    };
    Ok(IpInfo {
        src: IpAddr::V4(packet.src_addr()),
        dst: IpAddr::V4(packet.dst_addr()),
        protocol,
        ttl: packet.ttl(),
        total_len: usize::from(packet.total_len()),
        fragment,
        l4_offset,
        l4,
        payload_offset: l4_offset + l4_header_len,
    })
}

fn parse_ipv6(frame: &[u8], at: usize) -> Result<IpInfo, ParseError> {
    let packet = ipv6::Packet::new_checked(rest(frame, at)).map_err(|e| e.shifted(at))?;
    if packet.version() != 6 {
        return Err(ParseError::Version {
            layer: Layer::Ipv6,
            offset: at,
            version: packet.version(),
        });
    }
    // Walk the extension headers within the payload length.
    let payload = packet.payload();
    let base = at + ipv6::HEADER_LEN;
    let mut pos = 0;
    let mut next = packet.next_header();
    let mut count = 0;
    let mut fragment = None;
    let mut seen_fragment_header = false;
    let mut non_first_fragment = false;
    while let Some(layer) = extension_layer(next) {
        let here = base + pos;
        if count == MAX_EXTENSION_HEADERS {
            return Err(ParseError::TooManyExtensionHeaders {
                offset: here,
                limit: MAX_EXTENSION_HEADERS,
            });
        }
        count += 1;
        let bytes = rest(payload, pos);
        let shift = |e: ParseError| e.relabeled(layer).shifted(here);
        match next {
            IpProtocol::FRAGMENT => {
                if seen_fragment_header {
                    return Err(ParseError::RepeatedFragmentHeader { offset: here });
                }
                seen_fragment_header = true;
                let header = ipv6frag::Header::new_checked(bytes).map_err(shift)?;
                next = header.next_header();
                pos += ipv6frag::HEADER_LEN;
                if header.is_fragment() {
                    fragment = Some(Fragment {
                        offset: header.frag_offset(),
                        more: header.more_frags(),
                        ident: header.ident(),
                    });
                }
                if header.frag_offset() != 0 {
                    non_first_fragment = true;
                    break;
                }
            }
            IpProtocol::AH => {
                let header = ah::Header::new_checked(bytes).map_err(shift)?;
                next = header.next_header();
                pos += header.header_len();
            }
            _ => {
                if next == IpProtocol::HOP_BY_HOP && count != 1 {
                    return Err(ParseError::HopByHopNotFirst { offset: here });
                }
                let header = ipv6ext::Header::new_checked(bytes).map_err(shift)?;
                next = header.next_header();
                pos += header.header_len();
            }
        }
    }
    let l4_offset = base + pos;
    let (l4, l4_header_len) = if non_first_fragment {
        (None, 0)
    } else {
        parse_l4(
            IpVersion::V6,
            next,
            rest(payload, pos),
            fragment.is_some(),
            l4_offset,
        )?
    };
    Ok(IpInfo {
        src: IpAddr::V6(packet.src_addr()),
        dst: IpAddr::V6(packet.dst_addr()),
        protocol: next,
        ttl: packet.hop_limit(),
        total_len: ipv6::HEADER_LEN + usize::from(packet.payload_len()),
        fragment,
        l4_offset,
        l4,
        payload_offset: l4_offset + l4_header_len,
    })
}

/// The layer of an IPv6 extension header the walk skips, `None` for anything that ends it.
#[inline]
fn extension_layer(next: IpProtocol) -> Option<Layer> {
    match next {
        IpProtocol::HOP_BY_HOP => Some(Layer::Ipv6HopByHop),
        IpProtocol::ROUTING => Some(Layer::Ipv6Routing),
        IpProtocol::FRAGMENT => Some(Layer::Ipv6Fragment),
        IpProtocol::DESTINATION_OPTIONS => Some(Layer::Ipv6DestinationOptions),
        IpProtocol::AH => Some(Layer::Ah),
        _ => None,
    }
}

/// Reads the transport header in `bytes` (the rest of the IP packet, which starts at frame
/// offset `at`) and returns it with its length. In a first fragment (`partial`), a UDP
/// length field counts bytes of later fragments too, so it is not held against `bytes`.
fn parse_l4(
    version: IpVersion,
    protocol: IpProtocol,
    bytes: &[u8],
    partial: bool,
    at: usize,
) -> Result<(Option<L4>, usize), ParseError> {
    let shift = |e: ParseError| e.shifted(at);
    let found = match (protocol, version) {
        (IpProtocol::TCP, _) => {
            let packet = tcp::Packet::new_checked(bytes).map_err(shift)?;
            let l4 = L4::Tcp {
                src_port: packet.src_port(),
                dst_port: packet.dst_port(),
                flags: packet.flags(),
                seq_number: packet.seq_number(),
                ack_number: packet.ack_number(),
            };
            (l4, packet.header_len())
        }
        (IpProtocol::UDP, _) => {
            let packet = udp::Packet::new_unchecked(bytes);
            if partial {
                packet.check_header_len()
            } else {
                packet.check_len()
            }
            .map_err(shift)?;
            let l4 = L4::Udp {
                src_port: packet.src_port(),
                dst_port: packet.dst_port(),
            };
            (l4, udp::HEADER_LEN)
        }
        (IpProtocol::SCTP, _) => {
            let packet = sctp::Packet::new_checked(bytes).map_err(shift)?;
            let l4 = L4::Sctp {
                src_port: packet.src_port(),
                dst_port: packet.dst_port(),
                verification_tag: packet.verification_tag(),
            };
            (l4, sctp::HEADER_LEN)
        }
        (IpProtocol::ICMP, IpVersion::V4) => {
            let packet = icmpv4::Packet::new_checked(bytes).map_err(shift)?;
            let msg_type = packet.msg_type();
            let l4 = L4::Icmpv4 {
                msg_type,
                code: packet.code(),
                echo_ident: msg_type.is_echo().then(|| packet.echo_ident()),
            };
            (l4, icmpv4::HEADER_LEN)
        }
        (IpProtocol::ICMPV6, IpVersion::V6) => {
            let packet = icmpv6::Packet::new_checked(bytes).map_err(shift)?;
            let msg_type = packet.msg_type();
            let l4 = L4::Icmpv6 {
                msg_type,
                code: packet.code(),
                echo_ident: msg_type.is_echo().then(|| packet.echo_ident()),
            };
            (l4, icmpv6::HEADER_LEN)
        }
        _ => return Ok((None, 0)),
    };
    Ok((Some(found.0), found.1))
}
