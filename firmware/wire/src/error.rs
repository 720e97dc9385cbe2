//! What was wrong with a packet, and where: [`ParseError`].

use std::fmt;

/// The header a [`ParseError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layer {
    /// The Ethernet II header.
    Ethernet,
    /// An 802.1Q (or 802.1ad) tag.
    Vlan,
    /// The IPv4 header.
    Ipv4,
    /// The fixed IPv6 header.
    Ipv6,
    /// An IPv6 hop-by-hop options header.
    Ipv6HopByHop,
    /// An IPv6 routing header.
    Ipv6Routing,
    /// An IPv6 fragment header.
    Ipv6Fragment,
    /// An IPv6 destination options header.
    Ipv6DestinationOptions,
    /// An IPv6 extension header of the options/routing shape, kind unknown to the view.
    Ipv6Extension,
    /// An IPsec authentication header.
    Ah,
    /// The TCP header.
    Tcp,
    /// The UDP header.
    Udp,
    /// The SCTP common header.
    Sctp,
    /// The ICMP header.
    Icmpv4,
    /// The ICMPv6 header.
    Icmpv6,
}

impl Layer {
    /// The name of the layer's length field, for messages.
    fn length_field(self) -> &'static str {
        match self {
            Layer::Ipv4 => "total length",
            Layer::Ipv6 | Layer::Ah => "payload length",
            _ => "length",
        }
    }

    fn expected_version(self) -> u8 {
        match self {
            Layer::Ipv6 => 6,
            _ => 4,
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ethernet => "ethernet header",
            Layer::Vlan => "802.1Q tag",
            Layer::Ipv4 => "ipv4 header",
            Layer::Ipv6 => "ipv6 header",
            Layer::Ipv6HopByHop => "ipv6 hop-by-hop options header",
            Layer::Ipv6Routing => "ipv6 routing header",
            Layer::Ipv6Fragment => "ipv6 fragment header",
            Layer::Ipv6DestinationOptions => "ipv6 destination options header",
            Layer::Ipv6Extension => "ipv6 extension header",
            Layer::Ah => "authentication header",
            Layer::Tcp => "tcp header",
            Layer::Udp => "udp header",
            Layer::Sctp => "sctp common header",
            Layer::Icmpv4 => "icmp header",
            Layer::Icmpv6 => "icmpv6 header",
        })
    }
}

/// Why a packet could not be parsed, and where.
///
/// Every view's `check_len`, every `Repr::parse` and [`parse_frame`](crate::parse_frame)
/// report one: the header it concerns ([`Layer`]), the offset at which that header starts
/// and the values that disagree. A view reports offsets relative to its own buffer (so 0),
/// `parse_frame` relative to the start of the frame. `Display` reads like
/// `ipv4 header: total length 20 < header length 24 at offset 14`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseError {
    /// The bytes end before the header does: `needed` bytes from `offset` on, `available`
    /// there (for a header whose length field says how long it is, `needed` is that length).
    Truncated {
        /// The header.
        layer: Layer,
        /// Where the header starts.
        offset: usize,
        /// How many bytes the header needs.
        needed: usize,
        /// How many bytes there are from `offset` on (within the enclosing packet).
        available: usize,
    },
    /// An IP header whose version field disagrees with the EtherType that announced it.
    Version {
        /// The header.
        layer: Layer,
        /// Where the header starts.
        offset: usize,
        /// The version field.
        version: u8,
    },
    /// A header-length field below the header's minimum (IPv4 IHL < 5, TCP data offset < 5,
    /// authentication header payload length < 1).
    HeaderLen {
        /// The header.
        layer: Layer,
        /// Where the header starts.
        offset: usize,
        /// The header length the field gives, in bytes.
        header_len: usize,
        /// The smallest valid header length, in bytes.
        min: usize,
    },
    /// A length field smaller than the header it must cover (IPv4 total length, UDP length).
    LengthBelowHeader {
        /// The header.
        layer: Layer,
        /// Where the header starts.
        offset: usize,
        /// The length field.
        length: usize,
        /// The header length.
        header_len: usize,
    },
    /// A length field that claims more bytes than there are (IPv4 total length, IPv6
    /// payload length, UDP length).
    LengthBeyondBuffer {
        /// The header.
        layer: Layer,
        /// Where the header starts.
        offset: usize,
        /// The length field.
        length: usize,
        /// How many bytes there are for what the field counts.
        available: usize,
    },
    /// A VLAN TPID where no tag may be: a third tag, or an 802.1ad tag inside another tag.
    UnexpectedVlanTag {
        /// Where the TPID field is.
        offset: usize,
        /// The TPID.
        tpid: u16,
    },
    /// An IPv6 extension header chain longer than the parser walks.
    TooManyExtensionHeaders {
        /// Where the first extension header past the limit starts.
        offset: usize,
        /// How many extension headers the parser walks.
        limit: usize,
    },
    /// A hop-by-hop options header anywhere but directly after the IPv6 header (RFC 8200,
    /// section 4.3).
    HopByHopNotFirst {
        /// Where the misplaced header starts.
        offset: usize,
    },
    /// A second IPv6 fragment header in one packet.
    RepeatedFragmentHeader {
        /// Where the second fragment header starts.
        offset: usize,
    },
    /// A checksum that does not match the bytes (reported by `Repr::parse` only:
    /// [`parse_frame`](crate::parse_frame) leaves checksums to the NIC).
    Checksum {
        /// The header.
        layer: Layer,
        /// Where the header starts.
        offset: usize,
    },
}

impl ParseError {
    /// The header the error is about.
    pub fn layer(&self) -> Layer {
        match *self {
            ParseError::Truncated { layer, .. }
            | ParseError::Version { layer, .. }
            | ParseError::HeaderLen { layer, .. }
            | ParseError::LengthBelowHeader { layer, .. }
            | ParseError::LengthBeyondBuffer { layer, .. }
            | ParseError::Checksum { layer, .. } => layer,
            ParseError::UnexpectedVlanTag { .. } => Layer::Vlan,
            ParseError::TooManyExtensionHeaders { .. } => Layer::Ipv6,
            ParseError::HopByHopNotFirst { .. } => Layer::Ipv6HopByHop,
            ParseError::RepeatedFragmentHeader { .. } => Layer::Ipv6Fragment,
        }
    }

    /// Where the offending header (or field, for [`ParseError::UnexpectedVlanTag`]) starts.
    pub fn offset(&self) -> usize {
        match *self {
            ParseError::Truncated { offset, .. }
            | ParseError::Version { offset, .. }
            | ParseError::HeaderLen { offset, .. }
            | ParseError::LengthBelowHeader { offset, .. }
            | ParseError::LengthBeyondBuffer { offset, .. }
            | ParseError::UnexpectedVlanTag { offset, .. }
            | ParseError::TooManyExtensionHeaders { offset, .. }
            | ParseError::HopByHopNotFirst { offset }
            | ParseError::RepeatedFragmentHeader { offset }
            | ParseError::Checksum { offset, .. } => offset,
        }
    }

    /// `Ok` if `available` bytes hold the `needed` ones, [`ParseError::Truncated`] at offset
    /// 0 if not: the length check every view starts with.
    #[inline(always)]
    pub(crate) fn need(layer: Layer, needed: usize, available: usize) -> Result<(), ParseError> {
        if available < needed {
            return Err(ParseError::Truncated {
                layer,
                offset: 0,
                needed,
                available,
            });
        }
        Ok(())
    }

    /// The same error with its offset moved `base` bytes further: a view reports offsets
    /// relative to its own buffer, the frame parser relative to the frame.
    pub(crate) fn shifted(mut self, base: usize) -> Self {
        match &mut self {
            ParseError::Truncated { offset, .. }
            | ParseError::Version { offset, .. }
            | ParseError::HeaderLen { offset, .. }
            | ParseError::LengthBelowHeader { offset, .. }
            | ParseError::LengthBeyondBuffer { offset, .. }
            | ParseError::UnexpectedVlanTag { offset, .. }
            | ParseError::TooManyExtensionHeaders { offset, .. }
            | ParseError::HopByHopNotFirst { offset }
            | ParseError::RepeatedFragmentHeader { offset }
            | ParseError::Checksum { offset, .. } => *offset = offset.saturating_add(base),
        }
        self
    }

    /// The same error about `layer`: an extension-header view does not know which kind of
    /// extension header it was given, the frame parser does.
    pub(crate) fn relabeled(mut self, to: Layer) -> Self {
        match &mut self {
            ParseError::Truncated { layer, .. }
            | ParseError::HeaderLen { layer, .. }
            | ParseError::LengthBelowHeader { layer, .. }
            | ParseError::LengthBeyondBuffer { layer, .. }
            | ParseError::Version { layer, .. }
            | ParseError::Checksum { layer, .. } => *layer = to,
            ParseError::UnexpectedVlanTag { .. }
            | ParseError::TooManyExtensionHeaders { .. }
            | ParseError::HopByHopNotFirst { .. }
            | ParseError::RepeatedFragmentHeader { .. } => {}
        }
        self
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ParseError::Truncated {
                layer,
                offset,
                needed,
                available,
            } => write!(
                f,
                "{layer}: needs {needed} bytes, {available} available at offset {offset}"
            ),
            ParseError::Version {
                layer,
                offset,
                version,
            } => write!(
                f,
                "{layer}: version {version}, expected {} at offset {offset}",
                layer.expected_version()
            ),
            ParseError::HeaderLen {
                layer,
                offset,
                header_len,
                min,
            } => write!(
                f,
                "{layer}: header length {header_len} < minimum {min} at offset {offset}"
            ),
            ParseError::LengthBelowHeader {
                layer,
                offset,
                length,
                header_len,
            } => write!(
                f,
                "{layer}: {} {length} < header length {header_len} at offset {offset}",
                layer.length_field()
            ),
            ParseError::LengthBeyondBuffer {
                layer,
                offset,
                length,
                available,
            } => write!(
                f,
                "{layer}: {} {length} > {available} bytes available at offset {offset}",
                layer.length_field()
            ),
            ParseError::UnexpectedVlanTag { offset, tpid } => write!(
                f,
                "802.1Q tag: unexpected TPID {tpid:#06x} at offset {offset} \
                 (at most two tags, the inner one 0x8100)"
            ),
            ParseError::TooManyExtensionHeaders { offset, limit } => write!(
                f,
                "ipv6 header: more than {limit} extension headers, the next at offset {offset}"
            ),
            ParseError::HopByHopNotFirst { offset } => write!(
                f,
                "ipv6 hop-by-hop options header: not directly after the ipv6 header \
                 at offset {offset}"
            ),
            ParseError::RepeatedFragmentHeader { offset } => write!(
                f,
                "ipv6 fragment header: second fragment header at offset {offset}"
            ),
            ParseError::Checksum { layer, offset } => {
                write!(f, "{layer}: bad checksum at offset {offset}")
            }
        }
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_says_what_and_where() {
        let err = ParseError::LengthBelowHeader {
            layer: Layer::Ipv4,
            offset: 0,
            length: 20,
            header_len: 24,
        }
        .shifted(14);
        assert_eq!(
            err.to_string(),
            "ipv4 header: total length 20 < header length 24 at offset 14"
        );
        assert_eq!(err.offset(), 14);
        assert_eq!(err.layer(), Layer::Ipv4);
    }

    #[test]
    fn relabel_keeps_the_rest() {
        let err = ParseError::Truncated {
            layer: Layer::Ipv6Extension,
            offset: 0,
            needed: 16,
            available: 8,
        };
        assert_eq!(
            err.relabeled(Layer::Ipv6Routing).shifted(54).to_string(),
            "ipv6 routing header: needs 16 bytes, 8 available at offset 54"
        );
        let vlan = ParseError::UnexpectedVlanTag {
            offset: 16,
            tpid: 0x88a8,
        };
        assert_eq!(vlan.relabeled(Layer::Tcp), vlan);
        assert_eq!(vlan.layer(), Layer::Vlan);
        assert!(vlan.to_string().contains("0x88a8 at offset 16"));
    }

    #[test]
    fn shifting_saturates() {
        let err = ParseError::HopByHopNotFirst { offset: usize::MAX };
        assert_eq!(err.shifted(1).offset(), usize::MAX);
    }
}
