//! UDP datagrams (RFC 768).
//!
//! [`Packet`] views one datagram; its buffer is the IP payload. [`Packet::check_len`] makes
//! sure the 8-byte header is there and the length field covers the header and stays within
//! the buffer; after that no accessor or setter panics, until [`Packet::set_length`] changes
//! what was checked. [`Packet::payload`] stops at the length field.
//!
//! The checksum is optional over IPv4 (0 means none) and mandatory over IPv6 (RFC 8200,
//! section 8.1); a computed checksum of 0 is sent as 0xffff.

use std::net::IpAddr;

use crate::checksum;
use crate::error::{Layer, ParseError};
use crate::field::{be16, set_be16};
use crate::ip::IpProtocol;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// The length of the header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram.
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

    /// Makes sure no accessor or setter will panic: the header is there and the length field
    /// is between 8 and the buffer length.
    pub fn check_len(&self) -> Result<(), ParseError> {
        self.check_header_len()?;
        let len = self.buffer.as_ref().len();
        let length = usize::from(self.length());
        if length > len {
            return Err(ParseError::LengthBeyondBuffer {
                layer: Layer::Udp,
                offset: 0,
                length,
                available: len,
            });
        }
        Ok(())
    }

    /// Makes sure the header fields can be read: the buffer holds the 8-byte header and the
    /// length field is at least 8. Enough for the ports of a first fragment, whose buffer
    /// holds only the start of the datagram; [`payload`](Self::payload) may still panic.
    pub fn check_header_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        ParseError::need(Layer::Udp, HEADER_LEN, len)?;
        let length = usize::from(self.length());
        if length < HEADER_LEN {
            return Err(ParseError::LengthBelowHeader {
                layer: Layer::Udp,
                offset: 0,
                length,
                header_len: HEADER_LEN,
            });
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The source port.
    #[inline(always)]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// The destination port.
    #[inline(always)]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header and payload.
    #[inline(always)]
    pub fn length(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The checksum field.
    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Whether the checksum is right for a datagram from `src` to `dst`. A zero checksum
    /// over IPv4 means "none" and passes; over IPv6 it fails.
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        if self.checksum() == 0 {
            return src.is_ipv4();
        }
        let datagram = &self.buffer.as_ref()[..usize::from(self.length())];
        checksum::combine(&[
            checksum::pseudo_header(src, dst, IpProtocol::UDP, u32::from(self.length())),
            checksum::data(datagram),
        ]) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload: from the end of the header to the length field.
    #[inline(always)]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.length())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    #[inline(always)]
    pub fn set_src_port(&mut self, value: u16) {
        set_be16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    /// Sets the destination port.
    #[inline(always)]
    pub fn set_dst_port(&mut self, value: u16) {
        set_be16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    /// Sets the length field. This can undo what [`check_len`](Self::check_len) checked.
    #[inline(always)]
    pub fn set_length(&mut self, value: u16) {
        set_be16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the checksum field.
    #[inline(always)]
    pub fn set_checksum(&mut self, value: u16) {
        set_be16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Computes the checksum of the datagram from `src` to `dst` and stores it (0xffff for
    /// a computed 0).
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let length = self.length();
        let datagram = &self.buffer.as_ref()[..usize::from(length)];
        let sum = !checksum::combine(&[
            checksum::pseudo_header(src, dst, IpProtocol::UDP, u32::from(length)),
            checksum::data(datagram),
        ]);
        self.set_checksum(if sum == 0 { 0xffff } else { sum });
    }

    /// The payload, writable.
    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.length());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// A UDP datagram, parsed and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Repr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload.
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Parses and validates `packet`, a datagram from `src` to `dst`: lengths and checksum.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&'a T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) -> Result<Self, ParseError> {
        packet.check_len()?;
        if !packet.verify_checksum(src, dst) {
            return Err(ParseError::Checksum {
                layer: Layer::Udp,
                offset: 0,
            });
        }
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload: packet.payload(),
        })
    }

    /// The length of the datagram [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes the datagram from `src` to `dst`, with its checksum, into `packet`.
    ///
    /// # Panics
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len), or that does not fit
    /// the 16-bit length field.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) {
        let length = u16::try_from(self.buffer_len()).expect("UDP length must fit in 16 bits");
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_length(length);
        packet.payload_mut().copy_from_slice(self.payload);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    fn v4() -> (IpAddr, IpAddr) {
        (
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53)),
        )
    }

    fn v6() -> (IpAddr, IpAddr) {
        (
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 53)),
        )
    }

    // A DNS-looking datagram from 192.0.2.1:5353 to 192.0.2.53:53 with payload "hello",
    // followed by 3 bytes that are not part of it; checksum checked with tshark.
    const DATAGRAM: [u8; 16] = [
        0x14, 0xe9, 0x00, 0x35, 0x00, 0x0d, 0x22, 0xad, b'h', b'e', b'l', b'l', b'o', 0xaa, 0xbb,
        0xcc,
    ];

    #[test]
    fn deconstruct() {
        let (src, dst) = v4();
        let packet = Packet::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!(packet.src_port(), 5353);
        assert_eq!(packet.dst_port(), 53);
        assert_eq!(packet.length(), 13);
        assert_eq!(packet.checksum(), 0x22ad);
        assert_eq!(packet.payload(), b"hello");
        assert!(packet.verify_checksum(&src, &dst));
        assert!(!packet.verify_checksum(&dst, &dst));
    }

    #[test]
    fn construct() {
        let (src, dst) = v4();
        let mut bytes = DATAGRAM;
        bytes[..8].fill(0);
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_src_port(5353);
        packet.set_dst_port(53);
        packet.set_length(13);
        assert_eq!(packet.payload_mut(), b"hello");
        packet.fill_checksum(&src, &dst);
        assert_eq!(bytes, DATAGRAM);
    }

    #[test]
    fn repr_parse_and_emit() {
        let (src, dst) = v4();
        let repr = Repr {
            src_port: 5353,
            dst_port: 53,
            payload: b"hello",
        };
        let packet = Packet::new_unchecked(&DATAGRAM[..]);
        assert_eq!(Repr::parse(&packet, &src, &dst), Ok(repr));
        let mut bytes = [0; 13];
        repr.emit(&mut Packet::new_unchecked(&mut bytes[..]), &src, &dst);
        assert_eq!(bytes, DATAGRAM[..13]);
    }

    #[test]
    fn zero_checksum_means_none_over_ipv4_only() {
        let mut bytes = DATAGRAM;
        bytes[6..8].fill(0);
        let packet = Packet::new_unchecked(&bytes[..]);
        let (src, dst) = v4();
        assert!(Repr::parse(&packet, &src, &dst).is_ok());
        let (src, dst) = v6();
        assert_eq!(
            Repr::parse(&packet, &src, &dst),
            Err(ParseError::Checksum {
                layer: Layer::Udp,
                offset: 0
            })
        );
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Pick the source port that makes the sum come out as 0xffff (so its complement 0).
        let (src, dst) = v4();
        let mut bytes = [0u8; 8];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_dst_port(53);
        packet.set_length(8);
        packet.fill_checksum(&src, &dst);
        let port = packet.checksum();
        packet.set_src_port(port);
        packet.fill_checksum(&src, &dst);
        assert_eq!(packet.checksum(), 0xffff);
        assert!(packet.verify_checksum(&src, &dst));
    }

    #[test]
    fn malformed_lengths() {
        let mut bytes = DATAGRAM;
        bytes[5] = 7;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err().to_string(),
            "udp header: length 7 < header length 8 at offset 0"
        );
        bytes[5] = 17;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            ParseError::LengthBeyondBuffer {
                layer: Layer::Udp,
                offset: 0,
                length: 17,
                available: 16
            }
        );
        // The header alone still reads, as a first fragment's would.
        assert!(Packet::new_unchecked(&bytes[..]).check_header_len().is_ok());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let (src, dst) = v4();
        for len in 0..13 {
            assert!(
                Packet::new_checked(&DATAGRAM[..len]).is_err(),
                "length {len}"
            );
            let packet = Packet::new_unchecked(&DATAGRAM[..len]);
            assert!(Repr::parse(&packet, &src, &dst).is_err());
        }
    }

    proptest! {
        #[test]
        fn repr_round_trip(
            v6_addrs in any::<bool>(),
            ports in any::<(u16, u16)>(),
            payload in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let (src, dst) = if v6_addrs { v6() } else { v4() };
            let repr = Repr { src_port: ports.0, dst_port: ports.1, payload: &payload };
            let mut bytes = vec![0; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut bytes[..]), &src, &dst);
            prop_assert_eq!(Repr::parse(&Packet::new_unchecked(&bytes[..]), &src, &dst), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let (src, dst) = v6();
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = packet.payload();
                let _ = Repr::parse(&packet, &src, &dst);
            }
        }
    }
}
