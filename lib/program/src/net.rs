//! Small network value types whose invariants hold by construction.
//!
//! * [`Prefix`]: an IPv4 or IPv6 prefix that never has host bits set.
//! * [`PrefixSet`]: a canonical set of addresses (sorted, disjoint, with sibling prefixes
//!   merged), so two equal sets always have the same representation — the device program's
//!   content hash relies on that.
//! * [`PortRange`]: an inclusive range of transport ports with `lo <= hi`.
//! * [`Protocol`]: an IP protocol number with the usual names.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Why a network value could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NetError {
    /// The text is not an IP address.
    #[error("`{0}` is not an IP address")]
    BadAddress(String),
    /// The prefix length is not a number or is too long for the address family.
    #[error("`{text}`: prefix length must be a number from 0 to {max}")]
    BadPrefixLength {
        /// The whole text that was parsed.
        text: String,
        /// The longest length of the family.
        max: u8,
    },
    /// The address has bits set beyond the prefix length.
    #[error("`{text}` has host bits set; did you mean `{suggestion}`?")]
    HostBits {
        /// The whole text that was parsed.
        text: String,
        /// The same prefix with its host bits cleared.
        suggestion: String,
    },
    /// A port is not a number from 0 to 65535.
    #[error("`{0}` is not a port number (0-65535)")]
    BadPort(String),
    /// A port range whose low end is above its high end.
    #[error("port range `{lo}-{hi}` is empty: the first port must not be above the last")]
    EmptyPortRange {
        /// The first port.
        lo: u16,
        /// The last port.
        hi: u16,
    },
    /// A protocol that is neither a known name nor a number from 0 to 255.
    #[error("`{0}` is not a protocol: use tcp, udp, sctp, icmp, icmpv6 or a number 0-255")]
    BadProtocol(String),
}

/// An IP prefix (`10.0.0.0/8`, `2001:db8::/32`) whose address has no host bits set.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

fn family_width(addr: &IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn to_bits(addr: &IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(*a)),
        IpAddr::V6(a) => u128::from(*a),
    }
}

fn from_bits(v4: bool, bits: u128) -> IpAddr {
    if v4 {
        // Only the low 32 bits are ever set for an IPv4 value.
        IpAddr::V4(Ipv4Addr::from(bits as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(bits))
    }
}

/// Mask of the host bits of a prefix of `len` in a family of `width` bits.
fn host_mask(width: u8, len: u8) -> u128 {
    let host = u32::from(width - len);
    if host == 0 {
        0
    } else if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    }
}

impl Prefix {
    /// A prefix; fails if `len` is too long for the family or `addr` has host bits set.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, NetError> {
        let width = family_width(&addr);
        if len > width {
            return Err(NetError::BadPrefixLength {
                text: format!("{addr}/{len}"),
                max: width,
            });
        }
        let p = Self::truncating(addr, len);
        if p.addr != addr {
            return Err(NetError::HostBits {
                text: format!("{addr}/{len}"),
                suggestion: p.to_string(),
            });
        }
        Ok(p)
    }

    /// The prefix of `len` bits containing `addr` (host bits cleared). `len` is clamped to the
    /// family's width.
    pub fn truncating(addr: IpAddr, len: u8) -> Self {
        let width = family_width(&addr);
        let len = len.min(width);
        let bits = to_bits(&addr) & !host_mask(width, len);
        Self {
            addr: from_bits(addr.is_ipv4(), bits),
            len,
        }
    }

    /// The prefix holding exactly one address.
    pub fn host(addr: IpAddr) -> Self {
        Self {
            addr,
            len: family_width(&addr),
        }
    }

    /// Every IPv4 address (`0.0.0.0/0`).
    pub const ANY_V4: Prefix = Prefix {
        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        len: 0,
    };

    /// Every IPv6 address (`::/0`).
    pub const ANY_V6: Prefix = Prefix {
        addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        len: 0,
    };

    /// Parses `addr/len` where host bits are cleared instead of refused (Kubernetes accepts
    /// such CIDRs). A bare address is a host prefix.
    pub fn parse_truncating(text: &str) -> Result<Self, NetError> {
        let (addr, len) = split_prefix(text)?;
        Ok(Self::truncating(addr, len))
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    #[allow(clippy::len_without_is_empty)] // a prefix length, not the size of a container
    pub fn len(&self) -> u8 {
        self.len
    }

    /// True for `/0`, the prefix of every address of its family.
    pub fn is_everything(&self) -> bool {
        self.len == 0
    }

    /// True for an IPv4 prefix.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether `ip` lies inside the prefix (always false across families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let width = family_width(&ip);
        to_bits(&ip) & !host_mask(width, self.len) == to_bits(&self.addr)
    }

    /// Whether every address of `other` lies inside `self`.
    pub fn covers(&self, other: &Prefix) -> bool {
        self.len <= other.len && self.contains(other.addr)
    }

    /// Whether the two prefixes share at least one address.
    pub fn overlaps(&self, other: &Prefix) -> bool {
        self.covers(other) || other.covers(self)
    }

    /// The first address.
    pub fn first(&self) -> IpAddr {
        self.addr
    }

    /// The last address.
    pub fn last(&self) -> IpAddr {
        let width = family_width(&self.addr);
        from_bits(
            self.addr.is_ipv4(),
            to_bits(&self.addr) | host_mask(width, self.len),
        )
    }

    /// The two halves of the prefix, or `None` for a host prefix.
    pub fn halves(&self) -> Option<(Prefix, Prefix)> {
        let width = family_width(&self.addr);
        if self.len == width {
            return None;
        }
        let len = self.len + 1;
        let low = Prefix {
            addr: self.addr,
            len,
        };
        let high_bit = 1u128 << (width - len);
        let high = Prefix {
            addr: from_bits(self.addr.is_ipv4(), to_bits(&self.addr) | high_bit),
            len,
        };
        Some((low, high))
    }

    /// The enclosing prefix one bit shorter, or `None` for `/0`.
    fn parent(&self) -> Option<Prefix> {
        (self.len > 0).then(|| Prefix::truncating(self.addr, self.len - 1))
    }

    /// `self` minus every prefix of `holes`, as disjoint prefixes in address order.
    pub fn subtract(&self, holes: &[Prefix]) -> Vec<Prefix> {
        let mut out = Vec::new();
        self.subtract_into(holes, &mut out);
        out
    }

    fn subtract_into(&self, holes: &[Prefix], out: &mut Vec<Prefix>) {
        if holes.iter().any(|h| h.covers(self)) {
            return;
        }
        if !holes.iter().any(|h| self.covers(h)) {
            out.push(*self);
            return;
        }
        if let Some((low, high)) = self.halves() {
            low.subtract_into(holes, out);
            high.subtract_into(holes, out);
        }
    }
}

fn split_prefix(text: &str) -> Result<(IpAddr, u8), NetError> {
    let (addr_text, len_text) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let addr: IpAddr = addr_text
        .trim()
        .parse()
        .map_err(|_| NetError::BadAddress(addr_text.to_string()))?;
    let width = family_width(&addr);
    let len = match len_text {
        None => width,
        Some(l) => match l.trim().parse::<u8>() {
            Ok(n) if n <= width => n,
            _ => {
                return Err(NetError::BadPrefixLength {
                    text: text.to_string(),
                    max: width,
                });
            }
        },
    };
    Ok((addr, len))
}

impl FromStr for Prefix {
    type Err = NetError;

    /// Parses `addr/len` (refusing host bits) or a bare address (a host prefix).
    fn from_str(text: &str) -> Result<Self, NetError> {
        let (addr, len) = split_prefix(text)?;
        Prefix::new(addr, len).map_err(|e| match e {
            NetError::HostBits { suggestion, .. } => NetError::HostBits {
                text: text.to_string(),
                suggestion,
            },
            other => other,
        })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A set of IP addresses held as canonical prefixes: sorted, disjoint, and with sibling
/// prefixes merged, so equal sets compare and hash equal. Immutable and shared: clones are
/// cheap, so one set can sit in many device programs.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct PrefixSet(Arc<[Prefix]>);

impl PrefixSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The canonical set of the union of `prefixes`.
    pub fn from_prefixes(prefixes: impl IntoIterator<Item = Prefix>) -> Self {
        let mut all: Vec<Prefix> = prefixes.into_iter().collect();
        all.sort_unstable_by_key(|a| (a.addr, a.len));
        let mut out: Vec<Prefix> = Vec::with_capacity(all.len());
        for p in all {
            if out.last().is_some_and(|last| last.covers(&p)) {
                continue;
            }
            out.push(p);
            // Merge siblings bottom-up: after a merge the parent may pair with its own sibling.
            while out.len() >= 2 {
                let b = out[out.len() - 1];
                let a = out[out.len() - 2];
                match (a.parent(), b.parent()) {
                    (Some(pa), Some(pb)) if a.len == b.len && pa == pb && a != b => {
                        out.truncate(out.len() - 2);
                        out.push(pa);
                    }
                    _ => break,
                }
            }
        }
        Self(out.into())
    }

    /// The canonical prefixes, in address order.
    pub fn prefixes(&self) -> &[Prefix] {
        &self.0
    }

    /// True when the set holds no address.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is in the set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        // Canonical prefixes are disjoint and sorted by first address, so only the last one
        // starting at or before `ip` can hold it.
        let after = self.0.partition_point(|p| p.addr <= ip);
        after > 0 && self.0[after - 1].contains(ip)
    }

    /// The set of `prefixes` if they are already in canonical form (one canonicalization,
    /// where [`PrefixSet::is_canonical`] then [`PrefixSet::from_prefixes`] take two).
    pub fn from_canonical(prefixes: &[Prefix]) -> Option<Self> {
        let set = Self::from_prefixes(prefixes.iter().copied());
        (*set.0 == *prefixes).then_some(set)
    }

    /// Whether the vector is already in canonical form.
    pub fn is_canonical(prefixes: &[Prefix]) -> bool {
        *Self::from_prefixes(prefixes.iter().copied()).0 == *prefixes
    }

    /// The union of two sets.
    pub fn union(&self, other: &PrefixSet) -> PrefixSet {
        Self::from_prefixes(self.0.iter().chain(other.0.iter()).copied())
    }

    /// `self` minus `other`.
    pub fn difference(&self, other: &PrefixSet) -> PrefixSet {
        Self::from_prefixes(self.0.iter().flat_map(|p| p.subtract(&other.0)))
    }
}

impl Serialize for PrefixSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for PrefixSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let prefixes = Vec::<Prefix>::deserialize(d)?;
        Ok(Self::from_prefixes(prefixes))
    }
}

/// An inclusive range of transport-layer ports with `lo <= hi`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PortRange {
    lo: u16,
    hi: u16,
}

impl PortRange {
    /// Every port, 0 to 65535.
    pub const ALL: PortRange = PortRange {
        lo: 0,
        hi: u16::MAX,
    };

    /// The range `lo..=hi`; fails when `lo > hi`.
    pub fn new(lo: u16, hi: u16) -> Result<Self, NetError> {
        if lo > hi {
            return Err(NetError::EmptyPortRange { lo, hi });
        }
        Ok(Self { lo, hi })
    }

    /// The range holding one port.
    pub fn single(port: u16) -> Self {
        Self { lo: port, hi: port }
    }

    /// First port.
    pub fn lo(&self) -> u16 {
        self.lo
    }

    /// Last port.
    pub fn hi(&self) -> u16 {
        self.hi
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }

    /// Whether `ranges` are canonical (what [`PortRange::canonicalize`] returns): sorted,
    /// disjoint and not adjacent. Allocates nothing.
    pub fn is_canonical(ranges: &[PortRange]) -> bool {
        ranges
            .windows(2)
            .all(|w| u32::from(w[0].hi) + 1 < u32::from(w[1].lo))
    }

    /// Sorts and merges overlapping or adjacent ranges: the canonical form of a port list.
    pub fn canonicalize(ranges: impl IntoIterator<Item = PortRange>) -> Vec<PortRange> {
        let mut all: Vec<PortRange> = ranges.into_iter().collect();
        all.sort_unstable();
        let mut out: Vec<PortRange> = Vec::with_capacity(all.len());
        for r in all {
            match out.last_mut() {
                Some(last) if u32::from(r.lo) <= u32::from(last.hi) + 1 => {
                    last.hi = last.hi.max(r.hi);
                }
                _ => out.push(r),
            }
        }
        out
    }
}

impl FromStr for PortRange {
    type Err = NetError;

    /// Parses `80` or `8000-8080`.
    fn from_str(text: &str) -> Result<Self, NetError> {
        let port = |t: &str| {
            t.trim()
                .parse::<u16>()
                .map_err(|_| NetError::BadPort(t.trim().to_string()))
        };
        match text.split_once('-') {
            Some((lo, hi)) => PortRange::new(port(lo)?, port(hi)?),
            None => Ok(PortRange::single(port(text)?)),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u16),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(PortRange::single(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// An IP protocol number (the IPv4 "protocol" / IPv6 "next header" of the transport).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Protocol(pub u8);

impl Protocol {
    /// ICMP.
    pub const ICMP: Protocol = Protocol(1);
    /// TCP.
    pub const TCP: Protocol = Protocol(6);
    /// UDP.
    pub const UDP: Protocol = Protocol(17);
    /// ICMP for IPv6.
    pub const ICMPV6: Protocol = Protocol(58);
    /// SCTP.
    pub const SCTP: Protocol = Protocol(132);

    /// Whether packets of this protocol carry source and destination ports.
    pub fn has_ports(&self) -> bool {
        matches!(*self, Self::TCP | Self::UDP | Self::SCTP)
    }

    /// The usual lower-case name, if it has one.
    pub fn name(&self) -> Option<&'static str> {
        Some(match *self {
            Self::ICMP => "icmp",
            Self::TCP => "tcp",
            Self::UDP => "udp",
            Self::ICMPV6 => "icmpv6",
            Self::SCTP => "sctp",
            _ => return None,
        })
    }
}

impl FromStr for Protocol {
    type Err = NetError;

    /// Parses a name (any case) or a number.
    fn from_str(text: &str) -> Result<Self, NetError> {
        let lower = text.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "icmp" => Self::ICMP,
            "tcp" => Self::TCP,
            "udp" => Self::UDP,
            "icmpv6" | "icmp6" | "ipv6-icmp" => Self::ICMPV6,
            "sctp" => Self::SCTP,
            _ => Protocol(
                lower
                    .parse::<u8>()
                    .map_err(|_| NetError::BadProtocol(text.to_string()))?,
            ),
        })
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.0),
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u8),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Protocol(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_refuses_host_bits_with_a_suggestion() {
        let err = "10.0.0.1/8".parse::<Prefix>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`10.0.0.1/8` has host bits set; did you mean `10.0.0.0/8`?"
        );
        assert_eq!(
            Prefix::parse_truncating("10.0.0.1/8").unwrap(),
            p("10.0.0.0/8")
        );
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
        assert!("10.0.0/8".parse::<Prefix>().is_err());
        assert_eq!(
            p("2001:db8::1"),
            Prefix::host("2001:db8::1".parse().unwrap())
        );
    }

    #[test]
    fn prefix_containment_and_bounds() {
        let net = p("192.168.4.0/22");
        assert!(net.contains("192.168.7.255".parse().unwrap()));
        assert!(!net.contains("192.168.8.0".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        assert_eq!(net.last(), "192.168.7.255".parse::<IpAddr>().unwrap());
        assert!(Prefix::ANY_V4.covers(&net));
        assert!(!Prefix::ANY_V6.covers(&net));
    }

    #[test]
    fn subtract_punches_holes() {
        let parts = p("10.0.0.0/24").subtract(&[p("10.0.0.128/25"), p("10.0.0.5/32")]);
        let set = PrefixSet::from_prefixes(parts);
        assert!(set.contains("10.0.0.4".parse().unwrap()));
        assert!(!set.contains("10.0.0.5".parse().unwrap()));
        assert!(!set.contains("10.0.0.200".parse().unwrap()));
        assert!(p("10.0.0.0/24").subtract(&[p("10.0.0.0/8")]).is_empty());
    }

    #[test]
    fn prefix_set_merges_siblings() {
        let set =
            PrefixSet::from_prefixes([p("10.0.0.0/25"), p("10.0.0.128/25"), p("10.0.1.0/24")]);
        assert_eq!(set.prefixes(), &[p("10.0.0.0/23")]);
    }

    #[test]
    fn port_ranges_parse_and_merge() {
        assert_eq!("80".parse::<PortRange>().unwrap(), PortRange::single(80));
        assert!("90-80".parse::<PortRange>().is_err());
        assert!("70000".parse::<PortRange>().is_err());
        let merged = PortRange::canonicalize([
            PortRange::new(10, 20).unwrap(),
            PortRange::new(21, 30).unwrap(),
            PortRange::single(5),
        ]);
        assert_eq!(
            merged,
            vec![PortRange::single(5), PortRange::new(10, 30).unwrap()]
        );
    }

    #[test]
    fn protocols_by_name_and_number() {
        assert_eq!("TCP".parse::<Protocol>().unwrap(), Protocol::TCP);
        assert_eq!("47".parse::<Protocol>().unwrap(), Protocol(47));
        assert_eq!(Protocol(47).to_string(), "47");
        assert!("tcpp".parse::<Protocol>().is_err());
    }

    fn arb_v4_prefix() -> impl Strategy<Value = Prefix> {
        (any::<u32>(), 20u8..=32).prop_map(|(a, l)| {
            // Keep addresses in a small space so sets overlap often.
            Prefix::truncating(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (a & 0xfff))), l)
        })
    }

    proptest! {
        #[test]
        fn port_list_canonical_check_agrees_with_canonicalize(
            raw in proptest::collection::vec((0u16..40, 0u16..6), 0..6),
        ) {
            let ranges: Vec<PortRange> = raw
                .iter()
                .map(|&(lo, w)| PortRange::new(lo, lo + w).unwrap())
                .collect();
            prop_assert_eq!(
                PortRange::is_canonical(&ranges),
                PortRange::canonicalize(ranges.iter().copied()) == ranges
            );
            let canonical = PortRange::canonicalize(ranges.iter().copied());
            prop_assert!(PortRange::is_canonical(&canonical));
        }

        #[test]
        fn prefix_set_is_canonical_and_exact(
            prefixes in proptest::collection::vec(arb_v4_prefix(), 0..12),
            holes in proptest::collection::vec(arb_v4_prefix(), 0..4),
            probe in 0u32..0x1000,
        ) {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | probe));
            let set = PrefixSet::from_prefixes(prefixes.clone());
            prop_assert!(PrefixSet::is_canonical(set.prefixes()));
            prop_assert_eq!(set.contains(ip), prefixes.iter().any(|p| p.contains(ip)));
            let reversed = PrefixSet::from_prefixes(prefixes.iter().rev().copied());
            prop_assert_eq!(&set, &reversed);
            let diff = set.difference(&PrefixSet::from_prefixes(holes.clone()));
            prop_assert_eq!(
                diff.contains(ip),
                set.contains(ip) && !holes.iter().any(|h| h.contains(ip))
            );
        }
    }
}
