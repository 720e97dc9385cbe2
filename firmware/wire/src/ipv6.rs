//! The fixed IPv6 header (RFC 8200).
//!
//! [`Packet::check_len`] makes sure the 40-byte header is there and the buffer covers the
//! payload length; after that no accessor or setter panics, until
//! [`Packet::set_payload_len`] changes what was checked. [`Packet::payload`] stops at the
//! payload length, so Ethernet padding is not payload. Jumbograms (payload length 0 with a
//! jumbo payload option) do not fit an Ethernet frame and are read as an empty payload.
//!
//! The payload starts with the extension headers, if any: see
//! [`ipv6ext`](crate::ipv6ext), [`ipv6frag`](crate::ipv6frag) and [`ah`](crate::ah).

use std::net::Ipv6Addr;

use crate::error::{Layer, ParseError};
use crate::field::{be16, be32, ipv6_addr, set_be16, set_be32};
use crate::ip::IpProtocol;

mod field {
    pub const VER_TC_FLOW: usize = 0;
    pub const LENGTH: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: usize = 8;
    pub const DST_ADDR: usize = 24;
}

/// The length of the fixed header.
pub const HEADER_LEN: usize = 40;

const FLOW_LABEL_MASK: u32 = 0x000f_ffff;

/// A view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it: accessors may panic unless
    /// [`check_len`](Self::check_len) would pass.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Makes sure no accessor or setter will panic: the fixed header is there and the buffer
    /// covers the payload length. The version is not checked: [`Repr::parse`] does that.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        ParseError::need(Layer::Ipv6, HEADER_LEN, len)?;
        let payload_len = usize::from(self.payload_len());
        if payload_len > len - HEADER_LEN {
            return Err(ParseError::LengthBeyondBuffer {
                layer: Layer::Ipv6,
                offset: 0,
                length: payload_len,
                available: len - HEADER_LEN,
            });
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (6 for IPv6).
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    /// The traffic class (DSCP and ECN).
    #[inline(always)]
    pub fn traffic_class(&self) -> u8 {
        (be16(self.buffer.as_ref(), field::VER_TC_FLOW) >> 4) as u8
    }

    /// The flow label (20 bits).
    #[inline(always)]
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VER_TC_FLOW) & FLOW_LABEL_MASK
    }

    /// The payload length: what follows the fixed header, extension headers included.
    #[inline(always)]
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The next header: the first extension header or the upper-layer protocol.
    #[inline(always)]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NEXT_HEADER])
    }

    /// The hop limit.
    #[inline(always)]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// The source address.
    #[inline(always)]
    pub fn src_addr(&self) -> Ipv6Addr {
        ipv6_addr(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// The destination address.
    #[inline(always)]
    pub fn dst_addr(&self) -> Ipv6Addr {
        ipv6_addr(self.buffer.as_ref(), field::DST_ADDR)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload: the payload-length bytes after the fixed header.
    #[inline(always)]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version field (the low 4 bits of `value`).
    #[inline(always)]
    pub fn set_version(&mut self, value: u8) {
        let data = self.buffer.as_mut();
        data[field::VER_TC_FLOW] = data[field::VER_TC_FLOW] & 0x0f | value << 4;
    }

    /// Sets the traffic class.
    #[inline(always)]
    pub fn set_traffic_class(&mut self, value: u8) {
        let data = self.buffer.as_mut();
        let raw = be16(data, field::VER_TC_FLOW) & 0xf00f | u16::from(value) << 4;
        set_be16(data, field::VER_TC_FLOW, raw);
    }

    /// Sets the flow label (the low 20 bits of `value`).
    #[inline(always)]
    pub fn set_flow_label(&mut self, value: u32) {
        let data = self.buffer.as_mut();
        let raw = be32(data, field::VER_TC_FLOW) & !FLOW_LABEL_MASK | value & FLOW_LABEL_MASK;
        set_be32(data, field::VER_TC_FLOW, raw);
    }

    /// Sets the payload length. This can undo what [`check_len`](Self::check_len) checked.
    #[inline(always)]
    pub fn set_payload_len(&mut self, value: u16) {
        set_be16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the next header.
    #[inline(always)]
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::NEXT_HEADER] = value.0;
    }

    /// Sets the hop limit.
    #[inline(always)]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Sets the source address.
    #[inline(always)]
    pub fn set_src_addr(&mut self, value: Ipv6Addr) {
        let data = self.buffer.as_mut();
        data[field::SRC_ADDR..field::SRC_ADDR + 16].copy_from_slice(&value.octets());
    }

    /// Sets the destination address.
    #[inline(always)]
    pub fn set_dst_addr(&mut self, value: Ipv6Addr) {
        let data = self.buffer.as_mut();
        data[field::DST_ADDR..field::DST_ADDR + 16].copy_from_slice(&value.octets());
    }

    /// The payload, writable.
    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The fixed IPv6 header, parsed and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// The next header: first extension header or upper-layer protocol.
    pub next_header: IpProtocol,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
    /// Payload length, extension headers included.
    pub payload_len: usize,
}

impl Repr {
    /// Parses and validates the header of `packet`: lengths and version 6.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr, ParseError> {
        packet.check_len()?;
        if packet.version() != 6 {
            return Err(ParseError::Version {
                layer: Layer::Ipv6,
                offset: 0,
                version: packet.version(),
            });
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
            payload_len: usize::from(packet.payload_len()),
        })
    }

    /// The length of the header [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `packet`; the flow label is cut to 20 bits.
    ///
    /// # Panics
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len), or `payload_len` does
    /// not fit in 16 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let payload_len =
            u16::try_from(self.payload_len).expect("IPv6 payload length must fit in 16 bits");
        set_be32(packet.buffer.as_mut(), field::VER_TC_FLOW, 0);
        packet.set_version(6);
        packet.set_traffic_class(self.traffic_class);
        packet.set_flow_label(self.flow_label);
        packet.set_payload_len(payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // fe80::1 -> ff02::1, traffic class 0xb8, flow label 0x12345, hop limit 255, no next
    // header, 4 bytes of payload and 2 bytes of padding.
    const PACKET: [u8; 46] = [
        0x6b, 0x81, 0x23, 0x45, 0x00, 0x04, 0x3b, 0xff, //
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, //
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, //
        0xde, 0xad, 0xbe, 0xef, 0x00, 0x00,
    ];

    fn repr() -> Repr {
        Repr {
            src_addr: "fe80::1".parse().unwrap(),
            dst_addr: "ff02::1".parse().unwrap(),
            next_header: IpProtocol::NO_NEXT_HEADER,
            hop_limit: 255,
            traffic_class: 0xb8,
            flow_label: 0x12345,
            payload_len: 4,
        }
    }

    #[test]
    fn deconstruct() {
        let packet = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(packet.version(), 6);
        assert_eq!(packet.traffic_class(), 0xb8);
        assert_eq!(packet.flow_label(), 0x12345);
        assert_eq!(packet.payload_len(), 4);
        assert_eq!(packet.next_header(), IpProtocol::NO_NEXT_HEADER);
        assert_eq!(packet.hop_limit(), 255);
        assert_eq!(packet.src_addr(), repr().src_addr);
        assert_eq!(packet.dst_addr(), repr().dst_addr);
        assert_eq!(packet.payload(), [0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0xff; 46];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_version(6);
        packet.set_traffic_class(0xb8);
        packet.set_flow_label(0x12345);
        packet.set_payload_len(4);
        packet.set_next_header(IpProtocol::NO_NEXT_HEADER);
        packet.set_hop_limit(255);
        packet.set_src_addr(repr().src_addr);
        packet.set_dst_addr(repr().dst_addr);
        packet
            .payload_mut()
            .copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        bytes[44..].fill(0);
        assert_eq!(bytes, PACKET);
    }

    #[test]
    fn repr_parse_and_emit() {
        assert_eq!(Repr::parse(&Packet::new_unchecked(&PACKET[..])), Ok(repr()));
        let mut bytes = [0xff; HEADER_LEN];
        repr().emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, PACKET[..HEADER_LEN]);
        let mut bytes = PACKET;
        bytes[0] = 0x4b;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&bytes[..])),
            Err(ParseError::Version {
                layer: Layer::Ipv6,
                offset: 0,
                version: 4
            })
        );
    }

    #[test]
    fn payload_length_beyond_buffer() {
        assert_eq!(
            Packet::new_checked(&PACKET[..43]).unwrap_err().to_string(),
            "ipv6 header: payload length 4 > 3 bytes available at offset 0"
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        for len in 0..HEADER_LEN + 4 {
            assert!(Packet::new_checked(&PACKET[..len]).is_err(), "length {len}");
            assert!(Repr::parse(&Packet::new_unchecked(&PACKET[..len])).is_err());
        }
    }

    fn any_repr() -> impl Strategy<Value = Repr> {
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<(u8, u8, u8)>(),
            0..=FLOW_LABEL_MASK,
            0..=usize::from(u16::MAX),
        )
            .prop_map(|(src, dst, (next, hop_limit, tc), flow_label, len)| Repr {
                src_addr: src.into(),
                dst_addr: dst.into(),
                next_header: IpProtocol(next),
                hop_limit,
                traffic_class: tc,
                flow_label,
                payload_len: len,
            })
    }

    proptest! {
        #[test]
        fn repr_round_trip(repr in any_repr()) {
            let mut bytes = vec![0; HEADER_LEN + repr.payload_len];
            repr.emit(&mut Packet::new_unchecked(&mut bytes[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_unchecked(&bytes[..])), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = packet.payload();
                let _ = Repr::parse(&packet);
            }
        }
    }
}
