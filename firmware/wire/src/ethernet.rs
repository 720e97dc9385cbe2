//! Ethernet II frames: destination and source MAC address, EtherType.
//!
//! [`Frame`] is a view over the 14-byte header and what follows; [`Frame::new_checked`]
//! makes sure the header is there, after which no accessor or setter panics. The EtherType
//! is read as it stands: 802.1Q tags are the business of [`vlan`](crate::vlan). Values below
//! 0x0600 (802.3 length fields) are carried through as any other EtherType.

use std::fmt;

use crate::error::{Layer, ParseError};
use crate::field::{be16, set_be16};

/// An EtherType. A plain number with named constants for the values this crate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4 (0x0800).
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP (0x0806).
    pub const ARP: EtherType = EtherType(0x0806);
    /// 802.1Q customer VLAN tag (0x8100).
    pub const VLAN: EtherType = EtherType(0x8100);
    /// IPv6 (0x86dd).
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// 802.1ad service VLAN tag, the outer tag of QinQ (0x88a8).
    pub const QINQ: EtherType = EtherType(0x88a8);
    /// LLDP (0x88cc).
    pub const LLDP: EtherType = EtherType(0x88cc);
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EtherType::IPV4 => f.write_str("ipv4"),
            EtherType::ARP => f.write_str("arp"),
            EtherType::VLAN => f.write_str("802.1q"),
            EtherType::IPV6 => f.write_str("ipv6"),
            EtherType::QINQ => f.write_str("802.1ad"),
            EtherType::LLDP => f.write_str("lldp"),
            EtherType(other) => write!(f, "{other:#06x}"),
        }
    }
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Address(pub [u8; 6]);

impl Address {
    /// The broadcast address ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: Address = Address([0xff; 6]);

    /// Whether the group bit (multicast, broadcast) is set.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

mod field {
    pub const DESTINATION: usize = 0;
    pub const SOURCE: usize = 6;
    pub const ETHERTYPE: usize = 12;
}

/// The length of the Ethernet II header.
pub const HEADER_LEN: usize = 14;

/// A view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without checking it: accessors panic if it is shorter than
    /// [`HEADER_LEN`].
    pub const fn new_unchecked(buffer: T) -> Self {
        Frame { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Makes sure no accessor or setter will panic: the buffer holds the whole header.
    pub fn check_len(&self) -> Result<(), ParseError> {
        ParseError::need(Layer::Ethernet, HEADER_LEN, self.buffer.as_ref().len())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The destination address.
    #[inline(always)]
    pub fn dst_addr(&self) -> Address {
        let data = self.buffer.as_ref();
        let mut addr = [0; 6];
        addr.copy_from_slice(&data[field::DESTINATION..field::DESTINATION + 6]);
        Address(addr)
    }

    /// The source address.
    #[inline(always)]
    pub fn src_addr(&self) -> Address {
        let data = self.buffer.as_ref();
        let mut addr = [0; 6];
        addr.copy_from_slice(&data[field::SOURCE..field::SOURCE + 6]);
        Address(addr)
    }

    /// The EtherType, as it stands (a VLAN TPID if the frame is tagged).
    #[inline(always)]
    pub fn ethertype(&self) -> EtherType {
        EtherType(be16(self.buffer.as_ref(), field::ETHERTYPE))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Frame<&'a T> {
    /// What follows the header.
    #[inline(always)]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination address.
    #[inline(always)]
    pub fn set_dst_addr(&mut self, value: Address) {
        let data = self.buffer.as_mut();
        data[field::DESTINATION..field::DESTINATION + 6].copy_from_slice(&value.0);
    }

    /// Sets the source address.
    #[inline(always)]
    pub fn set_src_addr(&mut self, value: Address) {
        let data = self.buffer.as_mut();
        data[field::SOURCE..field::SOURCE + 6].copy_from_slice(&value.0);
    }

    /// Sets the EtherType.
    #[inline(always)]
    pub fn set_ethertype(&mut self, value: EtherType) {
        set_be16(self.buffer.as_mut(), field::ETHERTYPE, value.0);
    }

    /// What follows the header, writable.
    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// The Ethernet II header, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source MAC address.
    pub src_addr: Address,
    /// Destination MAC address.
    pub dst_addr: Address,
    /// EtherType.
    pub ethertype: EtherType,
}

impl Repr {
    /// Parses the header of `frame` (checking its length first, so any view will do).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &Frame<&T>) -> Result<Repr, ParseError> {
        frame.check_len()?;
        Ok(Repr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// The length of the header [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `frame`.
    ///
    /// # Panics
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ARP request from 52:54:00:12:34:56 for 10.0.2.2, broadcast, padded to 60 bytes.
    const ARP_FRAME: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, //
        0x0a, 0x00, 0x02, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x02, 0x02, //
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn deconstruct() {
        let frame = Frame::new_checked(&ARP_FRAME[..]).unwrap();
        assert_eq!(frame.dst_addr(), Address::BROADCAST);
        assert!(frame.dst_addr().is_multicast());
        assert_eq!(frame.src_addr().to_string(), "52:54:00:12:34:56");
        assert!(!frame.src_addr().is_multicast());
        assert_eq!(frame.ethertype(), EtherType::ARP);
        assert_eq!(frame.payload().len(), 46);
        assert_eq!(frame.payload()[..2], [0x00, 0x01]);
    }

    #[test]
    fn construct() {
        let mut bytes = ARP_FRAME;
        bytes[..HEADER_LEN].fill(0);
        let mut frame = Frame::new_checked(&mut bytes[..]).unwrap();
        frame.set_dst_addr(Address::BROADCAST);
        frame.set_src_addr(Address([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        frame.set_ethertype(EtherType::ARP);
        assert_eq!(frame.payload_mut().len(), 46);
        assert_eq!(frame.into_inner(), &ARP_FRAME[..]);
    }

    #[test]
    fn repr_round_trip() {
        let repr = Repr::parse(&Frame::new_unchecked(&ARP_FRAME[..])).unwrap();
        assert_eq!(repr.ethertype, EtherType::ARP);
        let mut bytes = [0; HEADER_LEN];
        repr.emit(&mut Frame::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, ARP_FRAME[..HEADER_LEN]);
        assert_eq!(repr.buffer_len(), HEADER_LEN);
    }

    #[test]
    fn every_truncation_is_an_error() {
        for len in 0..HEADER_LEN {
            let err = Frame::new_checked(&ARP_FRAME[..len]).unwrap_err();
            assert_eq!(
                err,
                ParseError::Truncated {
                    layer: Layer::Ethernet,
                    offset: 0,
                    needed: HEADER_LEN,
                    available: len
                }
            );
            assert!(Repr::parse(&Frame::new_unchecked(&ARP_FRAME[..len])).is_err());
        }
        assert!(Frame::new_checked(&ARP_FRAME[..HEADER_LEN]).is_ok());
    }

    #[test]
    fn ethertype_names() {
        assert_eq!(EtherType::IPV6.to_string(), "ipv6");
        assert_eq!(EtherType(0x0042).to_string(), "0x0042");
    }
}
