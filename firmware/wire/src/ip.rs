//! Numbers shared by IPv4 and IPv6: protocol (next header) numbers and the IP version.

use std::fmt;

/// An IP protocol number: the IPv4 protocol field, the IPv6 next-header field.
///
/// A plain number with named constants for the values this crate knows; every other value is
/// as valid and carried through unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// IPv6 hop-by-hop options (0).
    pub const HOP_BY_HOP: IpProtocol = IpProtocol(0);
    /// ICMP (1).
    pub const ICMP: IpProtocol = IpProtocol(1);
    /// TCP (6).
    pub const TCP: IpProtocol = IpProtocol(6);
    /// UDP (17).
    pub const UDP: IpProtocol = IpProtocol(17);
    /// IPv6 routing header (43).
    pub const ROUTING: IpProtocol = IpProtocol(43);
    /// IPv6 fragment header (44).
    pub const FRAGMENT: IpProtocol = IpProtocol(44);
    /// IPsec encapsulating security payload (50).
    pub const ESP: IpProtocol = IpProtocol(50);
    /// IPsec authentication header (51).
    pub const AH: IpProtocol = IpProtocol(51);
    /// ICMPv6 (58).
    pub const ICMPV6: IpProtocol = IpProtocol(58);
    /// IPv6 "no next header" (59).
    pub const NO_NEXT_HEADER: IpProtocol = IpProtocol(59);
    /// IPv6 destination options (60).
    pub const DESTINATION_OPTIONS: IpProtocol = IpProtocol(60);
    /// SCTP (132).
    pub const SCTP: IpProtocol = IpProtocol(132);
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            IpProtocol::HOP_BY_HOP => "hop-by-hop",
            IpProtocol::ICMP => "icmp",
            IpProtocol::TCP => "tcp",
            IpProtocol::UDP => "udp",
            IpProtocol::ROUTING => "ipv6-route",
            IpProtocol::FRAGMENT => "ipv6-frag",
            IpProtocol::ESP => "esp",
            IpProtocol::AH => "ah",
            IpProtocol::ICMPV6 => "icmpv6",
            IpProtocol::NO_NEXT_HEADER => "ipv6-nonxt",
            IpProtocol::DESTINATION_OPTIONS => "ipv6-opts",
            IpProtocol::SCTP => "sctp",
            IpProtocol(other) => return write!(f, "{other}"),
        };
        f.write_str(name)
    }
}

impl From<u8> for IpProtocol {
    fn from(value: u8) -> Self {
        IpProtocol(value)
    }
}

impl From<IpProtocol> for u8 {
    fn from(value: IpProtocol) -> Self {
        value.0
    }
}

/// The IP version of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(IpProtocol::TCP.to_string(), "tcp");
        assert_eq!(IpProtocol(253).to_string(), "253");
        assert_eq!(u8::from(IpProtocol::from(132)), 132);
        assert_eq!(IpProtocol::from(132), IpProtocol::SCTP);
    }
}
