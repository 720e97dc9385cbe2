//! The fast path: from the bytes of an Ethernet frame to what a firewall decides on, in
//! one pass ([`parse_frame`], whose documentation says what it decides and promises).

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

/// Parses an Ethernet frame down to the transport header and returns what a firewall decides
/// on, in one pass.
///
/// It walks Ethernet, up to two VLAN tags, IPv4 or IPv6 (skipping IPv4 options and up to
/// [`MAX_EXTENSION_HEADERS`] IPv6 extension headers: hop-by-hop, routing, fragment,
/// destination options, authentication) and the transport header (TCP, UDP, SCTP, ICMP,
/// ICMPv6), using the views of this crate, each checked once. It does not allocate, does
/// bounded work whatever the bytes say, and for any input returns a [`Parsed`] or a
/// [`ParseError`] naming the header and its offset; it never panics.
///
/// What it decides, so that the pipeline does not have to:
///
/// * A frame whose EtherType (after the tags) is neither IPv4 nor IPv6 is not an error:
///   [`Parsed::ip`] is `None` and policy decides.
/// * A fragment with a non-zero offset has no transport header: [`IpInfo::l4`] is `None` and
///   [`IpInfo::protocol`] is what the datagram carries. A first fragment must hold the whole
///   transport header (RFC 1858, RFC 7112); if it does not, that is an error.
/// * IPv6: the hop-by-hop header must come first, at most one fragment header may appear,
///   ESP and "no next header" end the walk ([`IpInfo::protocol`] says which), and headers
///   this parser does not skip (mobility, HIP, shim6) end it too, as the protocol.
/// * Checksums are not verified: the NIC does it on receive (the `Repr::parse` functions of
///   each protocol module verify them where software must).
/// * Lengths are taken from the headers, not the frame: Ethernet padding after a short
///   packet is ignored, and a length field that claims more than the frame holds is an error.
pub fn parse_frame(frame: &[u8]) -> Result<Parsed, ParseError> {
    let ethernet = ethernet::Frame::new_checked(frame)?;
    let mut ethertype = ethernet.ethertype();
    let mut offset = ethernet::HEADER_LEN;
    // The tags go into a plain array first, cheaper on the fast path than a `Tags` per tag.
    let mut tags = [None; 2];
    let mut count = 0;
    while ethertype == EtherType::VLAN || ethertype == EtherType::QINQ {
        if count == tags.len() || (count == 1 && ethertype != EtherType::VLAN) {
            return Err(ParseError::UnexpectedVlanTag {
                offset: offset - 2,
                tpid: ethertype.0,
            });
        }
        let packet =
            vlan::Packet::new_checked(rest(frame, offset)).map_err(|e| e.shifted(offset))?;
        tags[count] = Some(vlan::Tag {
            tpid: ethertype,
            pcp: packet.pcp(),
            dei: packet.dei(),
            vid: packet.vid(),
        });
        count += 1;
        ethertype = packet.ethertype();
        offset += vlan::HEADER_LEN;
    }
    let vlans = match tags {
        [Some(outer), Some(inner)] => vlan::Tags::two(outer, inner),
        [Some(outer), None] => vlan::Tags::one(outer),
        _ => vlan::Tags::NONE,
    };
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

#[inline(always)]
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
    let l4_offset = at + packet.header_len();
    let mut info = IpInfo {
        src: IpAddr::V4(packet.src_addr()),
        dst: IpAddr::V4(packet.dst_addr()),
        protocol: packet.protocol(),
        ttl: packet.ttl(),
        total_len: usize::from(packet.total_len()),
        fragment,
        l4_offset,
        l4: None,
        payload_offset: l4_offset,
    };
    if packet.frag_offset() == 0 {
        parse_l4(&mut info, IpVersion::V4, packet.payload())?;
    }
    Ok(info)
}

#[inline(always)]
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
    let mut info = IpInfo {
        src: IpAddr::V6(packet.src_addr()),
        dst: IpAddr::V6(packet.dst_addr()),
        protocol: next,
        ttl: packet.hop_limit(),
        total_len: ipv6::HEADER_LEN + usize::from(packet.payload_len()),
        fragment,
        l4_offset,
        l4: None,
        payload_offset: l4_offset,
    };
    if !non_first_fragment {
        parse_l4(&mut info, IpVersion::V6, rest(payload, pos))?;
    }
    Ok(info)
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

/// Reads the transport header of `info.protocol` in `bytes` (the rest of the IP packet, from
/// `info.l4_offset` on) into `info.l4` and moves `info.payload_offset` past it. In a first
/// fragment, a UDP length field counts bytes of later fragments too, so it is not held
/// against `bytes`.
#[inline(always)]
fn parse_l4(info: &mut IpInfo, version: IpVersion, bytes: &[u8]) -> Result<(), ParseError> {
    let at = info.l4_offset;
    let shift = |e: ParseError| e.shifted(at);
    let (l4, header_len) = match (info.protocol, version) {
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
            if info.fragment.is_some() {
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
        _ => return Ok(()),
    };
    info.l4 = Some(l4);
    info.payload_offset = at + header_len;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;
    use crate::testdata::{self, bytes};
    use crate::{PacketBuilder, vlan::Tag};

    fn ip(parsed: &Parsed) -> IpInfo {
        parsed.ip.expect("an IP packet")
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// Ethernet + IPv6 header (2001:db8::1 -> 2001:db8::2) + `payload`, first next header
    /// `next`.
    fn ipv6_frame(next: IpProtocol, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
        let mut header = [0; ipv6::HEADER_LEN];
        let repr = ipv6::Repr {
            src_addr: v6("2001:db8::1"),
            dst_addr: v6("2001:db8::2"),
            next_header: next,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            payload_len: payload.len(),
        };
        repr.emit(&mut ipv6::Packet::new_unchecked(&mut header[..]));
        frame.extend(header);
        frame.extend(payload);
        frame
    }

    /// An 8-byte options-shaped extension header with next header `next`.
    fn ext(next: IpProtocol) -> [u8; 8] {
        [next.0, 0, 0x01, 0x04, 0, 0, 0, 0]
    }

    const TCP_HEADER: [u8; 20] = [
        0x30, 0x39, 0x01, 0xbb, 0, 0, 0, 7, 0, 0, 0, 9, 0x50, 0x12, 0xff, 0xff, 0, 0, 0, 0,
    ];

    #[test]
    fn ipv4_tcp_known_frame() {
        let frame = bytes(testdata::IPV4_TCP_SYN);
        let parsed = parse_frame(&frame).unwrap();
        assert_eq!(parsed.vlans, vlan::Tags::NONE);
        assert_eq!(parsed.ethertype, EtherType::IPV4);
        assert_eq!(parsed.l3_offset, 14);
        assert_eq!(
            ip(&parsed),
            IpInfo {
                src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                protocol: IpProtocol::TCP,
                ttl: 64,
                total_len: 44,
                fragment: None,
                l4_offset: 34,
                l4: Some(L4::Tcp {
                    src_port: 49152,
                    dst_port: 80,
                    flags: tcp::Flags::SYN,
                    seq_number: 1,
                    ack_number: 0,
                }),
                payload_offset: 58,
            }
        );
        assert_eq!(ip(&parsed).version(), IpVersion::V4);
        assert_eq!(ip(&parsed).ports(), Some((49152, 80)));
        assert!(!ip(&parsed).is_fragment());
    }

    #[test]
    fn vlan_ipv4_udp_known_frame() {
        let frame = bytes(testdata::VLAN_IPV4_UDP);
        let parsed = parse_frame(&frame).unwrap();
        let tag = Tag {
            pcp: 3,
            ..Tag::c_tag(100)
        };
        assert_eq!(parsed.vlans, vlan::Tags::one(tag));
        assert_eq!(parsed.l3_offset, 18);
        let ip = ip(&parsed);
        assert_eq!(ip.src, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(ip.protocol, IpProtocol::UDP);
        assert_eq!(ip.total_len, 33);
        assert_eq!(
            ip.l4,
            Some(L4::Udp {
                src_port: 5353,
                dst_port: 53
            })
        );
        assert_eq!((ip.l4_offset, ip.payload_offset), (38, 46));
        assert_eq!(&frame[ip.payload_offset..], b"hello");
    }

    #[test]
    fn qinq_ipv6_hop_by_hop_icmpv6_known_frame() {
        let frame = bytes(testdata::QINQ_IPV6_HBH_ICMPV6);
        let parsed = parse_frame(&frame).unwrap();
        assert_eq!(
            parsed.vlans,
            vlan::Tags::two(Tag::s_tag(10), Tag::c_tag(20))
        );
        assert_eq!(parsed.vlans.innermost().map(|t| t.vid), Some(20));
        assert_eq!(parsed.ethertype, EtherType::IPV6);
        assert_eq!(parsed.l3_offset, 22);
        let ip = ip(&parsed);
        assert_eq!(ip.version(), IpVersion::V6);
        assert_eq!(ip.src, IpAddr::V6(v6("2001:db8::1")));
        assert_eq!(ip.dst, IpAddr::V6(v6("2001:db8::2")));
        assert_eq!(ip.protocol, IpProtocol::ICMPV6);
        assert_eq!(ip.ttl, 64);
        assert_eq!(ip.total_len, 60);
        assert_eq!(
            ip.l4,
            Some(L4::Icmpv6 {
                msg_type: icmpv6::Message::ECHO_REQUEST,
                code: 0,
                echo_ident: Some(0x1234)
            })
        );
        assert_eq!(ip.ports(), None);
        assert_eq!((ip.l4_offset, ip.payload_offset), (70, 78));
    }

    #[test]
    fn sctp_and_icmp_known_frames() {
        let parsed = parse_frame(&bytes(testdata::IPV4_SCTP_INIT)).unwrap();
        assert_eq!(
            ip(&parsed).l4,
            Some(L4::Sctp {
                src_port: 5000,
                dst_port: 38412,
                verification_tag: 0
            })
        );
        assert_eq!(ip(&parsed).ports(), Some((5000, 38412)));
        assert_eq!(ip(&parsed).payload_offset, 46);

        let parsed = parse_frame(&bytes(testdata::IPV4_ICMP_ECHO)).unwrap();
        assert_eq!(
            ip(&parsed).l4,
            Some(L4::Icmpv4 {
                msg_type: icmpv4::Message::ECHO_REQUEST,
                code: 0,
                echo_ident: Some(0x1234)
            })
        );
        assert_eq!(ip(&parsed).payload_offset, 42);
    }

    #[test]
    fn icmp_errors_have_no_echo_ident() {
        let mut frame = bytes(testdata::IPV4_ICMP_ECHO);
        frame[34] = icmpv4::Message::DST_UNREACHABLE.0;
        frame[35] = 3;
        let parsed = parse_frame(&frame).unwrap();
        assert_eq!(
            ip(&parsed).l4,
            Some(L4::Icmpv4 {
                msg_type: icmpv4::Message::DST_UNREACHABLE,
                code: 3,
                echo_ident: None
            })
        );
    }

    #[test]
    fn ethernet_padding_is_not_packet() {
        let mut frame = bytes(testdata::IPV4_ICMP_ECHO);
        frame.resize(60, 0);
        let parsed = parse_frame(&frame).unwrap();
        assert_eq!(ip(&parsed).total_len, 32);
        assert_eq!(ip(&parsed).payload_offset, 42);
    }

    #[test]
    fn ipv4_options_are_skipped() {
        // The SYN frame with 8 bytes of options (NOP x3, EOL, then padding) in the header.
        let frame = bytes(testdata::IPV4_TCP_SYN);
        let mut with_options = frame[..34].to_vec();
        with_options.extend([1, 1, 1, 0, 0, 0, 0, 0]);
        with_options.extend(&frame[34..]);
        with_options[14] = 0x47;
        with_options[17] += 8;
        let parsed = parse_frame(&with_options).unwrap();
        assert_eq!(ip(&parsed).l4_offset, 42);
        assert_eq!(ip(&parsed).ports(), Some((49152, 80)));
        assert_eq!(ip(&parsed).total_len, 52);
    }

    #[test]
    fn non_ip_frames_are_not_errors() {
        for (ethertype, name) in [(0x0806, "arp"), (0x88cc, "lldp"), (0x0026, "802.3 length")] {
            let mut frame = bytes(testdata::IPV4_ICMP_ECHO);
            frame[12..14].copy_from_slice(&u16::to_be_bytes(ethertype));
            let parsed = parse_frame(&frame).unwrap();
            assert_eq!(parsed.ethertype, EtherType(ethertype), "{name}");
            assert_eq!(parsed.l3_offset, 14);
            assert_eq!(parsed.ip, None);
        }
        // A tagged ARP frame: the tag is read, the rest left to policy.
        let mut frame = bytes(testdata::VLAN_IPV4_UDP);
        frame[16..18].copy_from_slice(&[0x08, 0x06]);
        let parsed = parse_frame(&frame).unwrap();
        assert_eq!(parsed.vlans.count(), 1);
        assert_eq!(parsed.ethertype, EtherType::ARP);
        assert_eq!(parsed.l3_offset, 18);
        assert_eq!(parsed.ip, None);
        // The header alone is enough.
        assert!(parse_frame(&frame[..18]).is_ok());
    }

    #[test]
    fn vlan_tag_rules() {
        let frame = bytes(testdata::QINQ_IPV6_HBH_ICMPV6);
        // Outer 0x8100 then 0x8100 is fine too.
        let mut double_c = frame.clone();
        double_c[12..14].copy_from_slice(&[0x81, 0x00]);
        let parsed = parse_frame(&double_c).unwrap();
        assert_eq!(parsed.vlans.outer(), Some(Tag::c_tag(10)));
        // 0x88a8 inside a tag is not.
        let mut inner_s = frame.clone();
        inner_s[16..18].copy_from_slice(&[0x88, 0xa8]);
        assert_eq!(
            parse_frame(&inner_s),
            Err(ParseError::UnexpectedVlanTag {
                offset: 16,
                tpid: 0x88a8
            })
        );
        // Nor is a third tag.
        let mut third = frame.clone();
        third[20..22].copy_from_slice(&[0x81, 0x00]);
        let err = parse_frame(&third).unwrap_err();
        assert_eq!(
            err,
            ParseError::UnexpectedVlanTag {
                offset: 20,
                tpid: 0x8100
            }
        );
        assert_eq!(
            err.to_string(),
            "802.1Q tag: unexpected TPID 0x8100 at offset 20 (at most two tags, the inner one \
             0x8100)"
        );
        // A tag cut short.
        assert_eq!(
            parse_frame(&frame[..17]),
            Err(ParseError::Truncated {
                layer: Layer::Vlan,
                offset: 14,
                needed: 4,
                available: 3
            })
        );
    }

    #[test]
    fn ipv4_malformed_lengths() {
        let frame = bytes(testdata::IPV4_TCP_SYN);
        let mut ihl4 = frame.clone();
        ihl4[14] = 0x44;
        assert_eq!(
            parse_frame(&ihl4).unwrap_err().to_string(),
            "ipv4 header: header length 16 < minimum 20 at offset 14"
        );
        let mut short_total = frame.clone();
        short_total[14] = 0x46;
        short_total[17] = 20;
        assert_eq!(
            parse_frame(&short_total).unwrap_err().to_string(),
            "ipv4 header: total length 20 < header length 24 at offset 14"
        );
        let mut long_total = frame.clone();
        long_total[17] = 45;
        assert_eq!(
            parse_frame(&long_total),
            Err(ParseError::LengthBeyondBuffer {
                layer: Layer::Ipv4,
                offset: 14,
                length: 45,
                available: 44
            })
        );
        let mut version = frame.clone();
        version[14] = 0x65;
        assert_eq!(
            parse_frame(&version).unwrap_err().to_string(),
            "ipv4 header: version 6, expected 4 at offset 14"
        );
    }

    #[test]
    fn transport_malformed_lengths() {
        let frame = bytes(testdata::IPV4_TCP_SYN);
        let mut offset4 = frame.clone();
        offset4[46] = 0x40;
        assert_eq!(
            parse_frame(&offset4),
            Err(ParseError::HeaderLen {
                layer: Layer::Tcp,
                offset: 34,
                header_len: 16,
                min: 20
            })
        );
        let mut offset7 = frame.clone();
        offset7[46] = 0x70;
        assert_eq!(
            parse_frame(&offset7).unwrap_err().to_string(),
            "tcp header: needs 28 bytes, 24 available at offset 34"
        );

        let frame = bytes(testdata::VLAN_IPV4_UDP);
        let mut short = frame.clone();
        short[43] = 7;
        assert_eq!(
            parse_frame(&short).unwrap_err().to_string(),
            "udp header: length 7 < header length 8 at offset 38"
        );
        let mut long = frame.clone();
        long[43] = 14;
        assert_eq!(
            parse_frame(&long),
            Err(ParseError::LengthBeyondBuffer {
                layer: Layer::Udp,
                offset: 38,
                length: 14,
                available: 13
            })
        );
        // A UDP length short of the IP payload is allowed: the rest is trailer.
        let mut trailer = frame.clone();
        trailer[43] = 9;
        assert!(parse_frame(&trailer).is_ok());
    }

    #[test]
    fn ipv6_malformed_lengths() {
        let frame = ipv6_frame(IpProtocol::NO_NEXT_HEADER, &[0; 8]);
        assert_eq!(
            parse_frame(&frame[..60]).unwrap_err().to_string(),
            "ipv6 header: payload length 8 > 6 bytes available at offset 14"
        );
        let mut version = frame.clone();
        version[14] = 0x40;
        assert_eq!(
            parse_frame(&version),
            Err(ParseError::Version {
                layer: Layer::Ipv6,
                offset: 14,
                version: 4
            })
        );
    }

    #[test]
    fn ipv6_extension_chain_is_walked() {
        // Hop-by-hop, routing, destination options, AH (ICV 4 bytes), then TCP.
        let mut payload = Vec::new();
        payload.extend(ext(IpProtocol::ROUTING));
        payload.extend([IpProtocol::DESTINATION_OPTIONS.0, 1, 4, 0, 0, 0, 0, 0]);
        payload.extend([0; 8]);
        payload.extend(ext(IpProtocol::AH));
        payload.extend([
            IpProtocol::TCP.0,
            2,
            0,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            1,
            9,
            9,
            9,
            9,
        ]);
        payload.extend(TCP_HEADER);
        let frame = ipv6_frame(IpProtocol::HOP_BY_HOP, &payload);
        let ip = ip_of(&frame);
        assert_eq!(ip.protocol, IpProtocol::TCP);
        assert_eq!(ip.l4_offset, 14 + 40 + 8 + 16 + 8 + 16);
        assert_eq!(ip.payload_offset, ip.l4_offset + 20);
        assert_eq!(ip.payload_offset, frame.len());
        assert_eq!(ip.ports(), Some((12345, 443)));
        assert_eq!(
            ip.l4,
            Some(L4::Tcp {
                src_port: 12345,
                dst_port: 443,
                flags: tcp::Flags::SYN | tcp::Flags::ACK,
                seq_number: 7,
                ack_number: 9
            })
        );
    }

    #[test]
    fn ipv6_walk_stops_at_esp_no_next_header_and_unknown_headers() {
        for stop in [IpProtocol::ESP, IpProtocol::NO_NEXT_HEADER, IpProtocol(135)] {
            let mut payload = ext(stop).to_vec();
            payload.extend([0xee; 16]);
            let frame = ipv6_frame(IpProtocol::DESTINATION_OPTIONS, &payload);
            let ip = ip_of(&frame);
            assert_eq!(ip.protocol, stop);
            assert_eq!(ip.l4, None);
            assert_eq!(ip.l4_offset, 62);
            assert_eq!(ip.payload_offset, 62);
        }
        // ICMP (for IPv4) over IPv6 is not read as ICMP.
        let frame = ipv6_frame(IpProtocol::ICMP, &[8, 0, 0, 0, 0, 1, 0, 1]);
        let ip = ip_of(&frame);
        assert_eq!((ip.protocol, ip.l4), (IpProtocol::ICMP, None));
    }

    #[test]
    fn ipv6_extension_errors() {
        // A routing header claiming 24 bytes with 16 left in the payload.
        let mut payload = vec![IpProtocol::TCP.0, 2, 0, 0, 0, 0, 0, 0];
        payload.extend([0; 8]);
        let frame = ipv6_frame(IpProtocol::ROUTING, &payload);
        assert_eq!(
            parse_frame(&frame).unwrap_err().to_string(),
            "ipv6 routing header: needs 24 bytes, 16 available at offset 54"
        );
        // The chain must fit in the payload length, not just the frame.
        let mut frame = ipv6_frame(IpProtocol::DESTINATION_OPTIONS, &ext(IpProtocol::TCP));
        frame[19] = 4;
        assert_eq!(
            parse_frame(&frame),
            Err(ParseError::Truncated {
                layer: Layer::Ipv6DestinationOptions,
                offset: 54,
                needed: 8,
                available: 4
            })
        );
        // Hop-by-hop after another header.
        let mut payload = ext(IpProtocol::HOP_BY_HOP).to_vec();
        payload.extend(ext(IpProtocol::NO_NEXT_HEADER));
        let frame = ipv6_frame(IpProtocol::DESTINATION_OPTIONS, &payload);
        assert_eq!(
            parse_frame(&frame),
            Err(ParseError::HopByHopNotFirst { offset: 62 })
        );
        // Two fragment headers.
        let mut payload = vec![IpProtocol::FRAGMENT.0, 0, 0, 0, 0, 0, 0, 1];
        payload.extend([IpProtocol::TCP.0, 0, 0, 0, 0, 0, 0, 1]);
        let frame = ipv6_frame(IpProtocol::FRAGMENT, &payload);
        assert_eq!(
            parse_frame(&frame),
            Err(ParseError::RepeatedFragmentHeader { offset: 62 })
        );
        // AH with a payload length field of 0.
        let frame = ipv6_frame(IpProtocol::AH, &[6, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(
            parse_frame(&frame).unwrap_err().to_string(),
            "authentication header: header length 8 < minimum 12 at offset 54"
        );
        // A chain of nine destination options headers.
        let mut payload = Vec::new();
        for _ in 0..8 {
            payload.extend(ext(IpProtocol::DESTINATION_OPTIONS));
        }
        payload.extend(ext(IpProtocol::NO_NEXT_HEADER));
        let frame = ipv6_frame(IpProtocol::DESTINATION_OPTIONS, &payload);
        assert_eq!(
            parse_frame(&frame),
            Err(ParseError::TooManyExtensionHeaders {
                offset: 54 + 8 * 8,
                limit: MAX_EXTENSION_HEADERS
            })
        );
        // Eight are fine.
        let frame = ipv6_frame(IpProtocol::DESTINATION_OPTIONS, &payload[8..]);
        assert_eq!(
            ip(&parse_frame(&frame).unwrap()).protocol,
            IpProtocol::NO_NEXT_HEADER
        );
    }

    #[test]
    fn ipv4_fragments() {
        let frame = bytes(testdata::VLAN_IPV4_UDP);
        // First fragment: MF, offset 0. The UDP length (13) counts later fragments too, so
        // it may exceed what this fragment holds.
        let mut first = frame.clone();
        first[18 + 4..18 + 8].copy_from_slice(&[0xab, 0xcd, 0x20, 0x00]);
        first[43] = 200;
        let ip = ip_of(&first);
        assert_eq!(
            ip.fragment,
            Some(Fragment {
                offset: 0,
                more: true,
                ident: 0xabcd
            })
        );
        assert!(ip.fragment.unwrap().is_first());
        assert_eq!(ip.ports(), Some((5353, 53)));
        // Later fragment: offset 8, no transport header whatever the bytes look like.
        let mut later = frame.clone();
        later[18 + 6..18 + 8].copy_from_slice(&[0x00, 0x01]);
        let ip = ip_of(&later);
        assert_eq!(
            ip.fragment,
            Some(Fragment {
                offset: 8,
                more: false,
                ident: 0
            })
        );
        assert!(!ip.fragment.unwrap().is_first());
        assert_eq!(ip.protocol, IpProtocol::UDP);
        assert_eq!(ip.l4, None);
        assert_eq!((ip.l4_offset, ip.payload_offset), (38, 38));
        // A first fragment too short for the TCP header is an error (RFC 1858).
        let frame = bytes(testdata::IPV4_TCP_SYN);
        let mut tiny = frame[..34 + 8].to_vec();
        tiny[14 + 3] = 28;
        tiny[14 + 6] = 0x20;
        assert_eq!(
            parse_frame(&tiny),
            Err(ParseError::Truncated {
                layer: Layer::Tcp,
                offset: 34,
                needed: 20,
                available: 8
            })
        );
        // DF alone does not make a fragment.
        let mut df = frame.clone();
        df[14 + 6] = 0x40;
        assert_eq!(ip_of(&df).fragment, None);
    }

    fn ip_of(frame: &[u8]) -> IpInfo {
        ip(&parse_frame(frame).unwrap())
    }

    #[test]
    fn ipv6_fragments() {
        let mut first = vec![IpProtocol::UDP.0, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef];
        first.extend([0x14, 0xe9, 0x00, 0x35, 0x05, 0x00, 0, 0]);
        let ip = ip_of(&ipv6_frame(IpProtocol::FRAGMENT, &first));
        assert_eq!(
            ip.fragment,
            Some(Fragment {
                offset: 0,
                more: true,
                ident: 0xdead_beef
            })
        );
        assert_eq!(ip.protocol, IpProtocol::UDP);
        assert_eq!(ip.ports(), Some((5353, 53)));
        assert_eq!(ip.l4_offset, 62);

        let later = [
            IpProtocol::UDP.0,
            0,
            0x05,
            0x00,
            0xde,
            0xad,
            0xbe,
            0xef,
            1,
            2,
            3,
            4,
        ];
        let ip = ip_of(&ipv6_frame(IpProtocol::FRAGMENT, &later));
        assert_eq!(
            ip.fragment,
            Some(Fragment {
                offset: 1280,
                more: false,
                ident: 0xdead_beef
            })
        );
        assert_eq!((ip.protocol, ip.l4), (IpProtocol::UDP, None));
        assert_eq!((ip.l4_offset, ip.payload_offset), (62, 62));

        // An atomic fragment (offset 0, M clear) is a whole packet.
        let mut atomic = vec![IpProtocol::TCP.0, 0, 0, 0, 0, 0, 0, 5];
        atomic.extend(TCP_HEADER);
        let ip = ip_of(&ipv6_frame(IpProtocol::FRAGMENT, &atomic));
        assert_eq!(ip.fragment, None);
        assert_eq!(ip.ports(), Some((12345, 443)));

        // A non-first fragment stops the walk even if more headers seem to follow.
        let mut later = vec![IpProtocol::HOP_BY_HOP.0, 0, 0x00, 0x08, 0, 0, 0, 1];
        later.extend(ext(IpProtocol::HOP_BY_HOP));
        let ip = ip_of(&ipv6_frame(IpProtocol::FRAGMENT, &later));
        assert_eq!((ip.protocol, ip.l4), (IpProtocol::HOP_BY_HOP, None));
    }

    /// Valid frames of every shape the parser knows, built with the builder.
    fn valid_frames() -> Vec<Vec<u8>> {
        let payload = [0x5a; 33];
        let options = [1, 1, 1, 1];
        let v4 = PacketBuilder::ipv4([10, 1, 2, 3].into(), [10, 4, 5, 6].into());
        let v6 = PacketBuilder::ipv6(v6("2001:db8::a"), v6("2001:db8::b"));
        let hbh: &[(IpProtocol, &[u8])] = &[
            (IpProtocol::HOP_BY_HOP, &[1, 4, 0, 0, 0, 0]),
            (IpProtocol::ROUTING, &[4, 0, 0, 0, 0, 0, 0, 0]),
        ];
        let tcp = tcp::Repr {
            src_port: 1,
            dst_port: 2,
            options: &options,
            payload: &payload,
            ..Default::default()
        };
        let udp = udp::Repr {
            src_port: 3,
            dst_port: 4,
            payload: &payload,
        };
        let sctp = sctp::Repr {
            chunks: &payload,
            ..Default::default()
        };
        let builders = [
            v4.tcp(tcp),
            v4.udp(udp).vlans(vlan::Tags::one(Tag::c_tag(7))),
            v4.sctp(sctp),
            v4.icmpv4(icmpv4::Repr::echo_reply(9, 9, &payload)),
            v6.tcp(tcp).extension_headers(hbh),
            v6.udp(udp)
                .vlans(vlan::Tags::two(Tag::s_tag(1), Tag::c_tag(2))),
            v6.sctp(sctp),
            v6.icmpv6(icmpv6::Repr::echo_request(9, 9, &payload)),
            v6.raw(IpProtocol::NO_NEXT_HEADER, &payload),
        ];
        let mut frames = Vec::new();
        for builder in builders {
            let mut buf = vec![0; builder.frame_len() + 8];
            let len = builder.emit(&mut buf).unwrap();
            frames.push(buf[..len].to_vec());
            // And its first and last fragments.
            let cut = 24;
            let len = builder.emit_fragment(&mut buf, 0, cut).unwrap();
            frames.push(buf[..len].to_vec());
            let len = builder
                .emit_fragment(&mut buf, cut, builder.transport_len() - cut)
                .unwrap();
            frames.push(buf[..len].to_vec());
        }
        for known in [
            testdata::IPV4_TCP_SYN,
            testdata::VLAN_IPV4_UDP,
            testdata::QINQ_IPV6_HBH_ICMPV6,
            testdata::IPV4_SCTP_INIT,
            testdata::IPV4_ICMP_ECHO,
        ] {
            frames.push(bytes(known));
        }
        frames
    }

    #[test]
    fn every_truncation_is_an_error() {
        for frame in valid_frames() {
            let parsed = parse_frame(&frame).unwrap();
            assert!(parsed.ip.is_some());
            for len in 0..frame.len() {
                assert!(
                    parse_frame(&frame[..len]).is_err(),
                    "{len} bytes of {frame:02x?} parsed"
                );
            }
        }
    }

    /// What must hold of any successful parse: offsets in order and inside the frame.
    fn check_invariants(frame: &[u8], parsed: &Parsed) {
        assert!(parsed.l3_offset <= frame.len());
        assert_eq!(parsed.l3_offset, 14 + 4 * parsed.vlans.count());
        if let Some(ip) = parsed.ip {
            assert!(parsed.l3_offset + ip.total_len <= frame.len());
            assert!(parsed.l3_offset < ip.l4_offset);
            assert!(ip.l4_offset <= ip.payload_offset);
            assert!(ip.payload_offset <= parsed.l3_offset + ip.total_len);
            if ip.l4.is_none() {
                assert_eq!(ip.l4_offset, ip.payload_offset);
            }
            if ip.fragment.is_some_and(|f| !f.is_first()) {
                assert_eq!(ip.l4, None);
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(parsed) = parse_frame(&frame) {
                check_invariants(&frame, &parsed);
            }
        }

        /// Random bytes rarely get past the EtherType; damaged valid frames reach every
        /// header.
        #[test]
        fn damaged_frames_never_panic(
            which in any::<prop::sample::Index>(),
            damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let frames = valid_frames();
            let mut frame = frames[which.index(frames.len())].clone();
            for (at, value) in damage {
                let at = at.index(frame.len());
                frame[at] = value;
            }
            let len = cut.index(frame.len() + 1);
            for frame in [&frame[..], &frame[..len]] {
                match parse_frame(frame) {
                    Ok(parsed) => check_invariants(frame, &parsed),
                    Err(err) => prop_assert!(err.offset() <= frame.len()),
                }
            }
        }
    }
}
