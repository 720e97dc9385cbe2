//! IPv4 headers (RFC 791): options, fragments, header checksum.
//!
//! [`Packet::check_len`] makes sure the header length field is at least 20, the total length
//! at least the header length, and the buffer at least the total length; after that no
//! accessor or setter panics, until [`Packet::set_header_len`] or [`Packet::set_total_len`]
//! changes what was checked. [`Packet::payload`] stops at the total length, so Ethernet
//! padding after a short packet is not payload.
//!
//! A fragment with a non-zero offset carries no transport header, only bytes from the middle
//! of the datagram: see [`Packet::is_fragment`] and [`Packet::frag_offset`].

use std::net::Ipv4Addr;

use crate::checksum;
use crate::error::{Layer, ParseError};
use crate::field::{be16, ipv4_addr, set_be16};
use crate::ip::IpProtocol;

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC_ADDR: usize = 12;
    pub const DST_ADDR: usize = 16;
}

/// The length of a header without options.
pub const HEADER_LEN: usize = 20;

/// The largest header, with 40 bytes of options.
pub const MAX_HEADER_LEN: usize = 60;

const DONT_FRAG: u16 = 0x4000;
const MORE_FRAGS: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
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

    /// Makes sure no accessor or setter will panic: the fixed header is there, the header
    /// length is at least 20, the total length covers the header and the buffer covers the
    /// total length. The version is not checked: [`Repr::parse`] does that.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let data = self.buffer.as_ref();
        ParseError::need(Layer::Ipv4, HEADER_LEN, data.len())?;
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(ParseError::HeaderLen {
                layer: Layer::Ipv4,
                offset: 0,
                header_len,
                min: HEADER_LEN,
            });
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(ParseError::LengthBelowHeader {
                layer: Layer::Ipv4,
                offset: 0,
                length: total_len,
                header_len,
            });
        }
        if total_len > data.len() {
            return Err(ParseError::LengthBeyondBuffer {
                layer: Layer::Ipv4,
                offset: 0,
                length: total_len,
                available: data.len(),
            });
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (4 for IPv4).
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes, options included (the IHL field times 4).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The type-of-service byte: DSCP in the high 6 bits, ECN in the low 2.
    #[inline(always)]
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// The total length field: header and payload.
    #[inline(always)]
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The identification field, shared by the fragments of one datagram.
    #[inline(always)]
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    /// The don't-fragment flag.
    #[inline(always)]
    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF) & DONT_FRAG != 0
    }

    /// The more-fragments flag.
    #[inline(always)]
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF) & MORE_FRAGS != 0
    }

    /// The fragment offset in bytes (the field times 8).
    #[inline(always)]
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// Whether the packet is a fragment: more fragments follow or it does not start the
    /// datagram.
    #[inline(always)]
    pub fn is_fragment(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF) & (MORE_FRAGS | OFFSET_MASK) != 0
    }

    /// The time to live.
    #[inline(always)]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The protocol of the payload.
    #[inline(always)]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// The header checksum field.
    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The source address.
    #[inline(always)]
    pub fn src_addr(&self) -> Ipv4Addr {
        ipv4_addr(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// The destination address.
    #[inline(always)]
    pub fn dst_addr(&self) -> Ipv4Addr {
        ipv4_addr(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// Whether the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(&self.buffer.as_ref()[..self.header_len()]) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The options: the header past its first 20 bytes.
    #[inline(always)]
    pub fn options(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The payload: from the end of the header to the total length.
    #[inline(always)]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version field (the low 4 bits of `value`).
    #[inline(always)]
    pub fn set_version(&mut self, value: u8) {
        let data = self.buffer.as_mut();
        data[field::VER_IHL] = data[field::VER_IHL] & 0x0f | value << 4;
    }

    /// Sets the header length in bytes (a multiple of 4, at most 60). This can undo what
    /// [`check_len`](Self::check_len) checked.
    #[inline(always)]
    pub fn set_header_len(&mut self, value: usize) {
        let data = self.buffer.as_mut();
        data[field::VER_IHL] = data[field::VER_IHL] & 0xf0 | (value / 4) as u8 & 0x0f;
    }

    /// Sets the type-of-service byte.
    #[inline(always)]
    pub fn set_tos(&mut self, value: u8) {
        self.buffer.as_mut()[field::TOS] = value;
    }

    /// Sets the total length field. This can undo what [`check_len`](Self::check_len)
    /// checked.
    #[inline(always)]
    pub fn set_total_len(&mut self, value: u16) {
        set_be16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the identification field.
    #[inline(always)]
    pub fn set_ident(&mut self, value: u16) {
        set_be16(self.buffer.as_mut(), field::IDENT, value);
    }

    fn set_flag(&mut self, flag: u16, value: bool) {
        let data = self.buffer.as_mut();
        let raw = be16(data, field::FLG_OFF) & !flag | if value { flag } else { 0 };
        set_be16(data, field::FLG_OFF, raw);
    }

    /// Sets the don't-fragment flag.
    #[inline(always)]
    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flag(DONT_FRAG, value);
    }

    /// Sets the more-fragments flag.
    #[inline(always)]
    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flag(MORE_FRAGS, value);
    }

    /// Sets the fragment offset in bytes (a multiple of 8; the low 3 bits are dropped).
    #[inline(always)]
    pub fn set_frag_offset(&mut self, value: u16) {
        let data = self.buffer.as_mut();
        let raw = be16(data, field::FLG_OFF) & !OFFSET_MASK | value >> 3;
        set_be16(data, field::FLG_OFF, raw);
    }

    /// Sets the time to live.
    #[inline(always)]
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Sets the protocol.
    #[inline(always)]
    pub fn set_protocol(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = value.0;
    }

    /// Sets the header checksum field.
    #[inline(always)]
    pub fn set_checksum(&mut self, value: u16) {
        set_be16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the source address.
    #[inline(always)]
    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        let data = self.buffer.as_mut();
        data[field::SRC_ADDR..field::SRC_ADDR + 4].copy_from_slice(&value.octets());
    }

    /// Sets the destination address.
    #[inline(always)]
    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        let data = self.buffer.as_mut();
        data[field::DST_ADDR..field::DST_ADDR + 4].copy_from_slice(&value.octets());
    }

    /// Computes the header checksum and stores it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header_len = self.header_len();
        let sum = checksum::data(&self.buffer.as_ref()[..header_len]);
        self.set_checksum(!sum);
    }

    /// The options, writable.
    #[inline(always)]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..header_len]
    }

    /// The payload, writable.
    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// An IPv4 header, parsed and validated. Options are skipped by [`parse`](Self::parse) and
/// never written by [`emit`](Self::emit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: IpProtocol,
    /// Time to live.
    pub ttl: u8,
    /// Type-of-service byte (DSCP and ECN).
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't-fragment flag.
    pub dont_frag: bool,
    /// More-fragments flag.
    pub more_frags: bool,
    /// Fragment offset in bytes, a multiple of 8.
    pub frag_offset: u16,
    /// Payload length: the total length less the header.
    pub payload_len: usize,
}

impl Repr {
    /// Parses and validates the header of `packet`: lengths, version 4, header checksum.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr, ParseError> {
        packet.check_len()?;
        if packet.version() != 4 {
            return Err(ParseError::Version {
                layer: Layer::Ipv4,
                offset: 0,
                version: packet.version(),
            });
        }
        if !packet.verify_checksum() {
            return Err(ParseError::Checksum {
                layer: Layer::Ipv4,
                offset: 0,
            });
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            ttl: packet.ttl(),
            tos: packet.tos(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
        })
    }

    /// The length of the header [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header, with its checksum, into `packet`; the payload is the caller's.
    ///
    /// # Panics
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len), or the total length
    /// (20 + `payload_len`) does not fit in 16 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let total_len = u16::try_from(HEADER_LEN + self.payload_len)
            .expect("IPv4 total length must fit in 16 bits");
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN);
        packet.set_tos(self.tos);
        packet.set_total_len(total_len);
        packet.set_ident(self.ident);
        set_be16(packet.buffer.as_mut(), field::FLG_OFF, 0);
        packet.set_dont_frag(self.dont_frag);
        packet.set_more_frags(self.more_frags);
        packet.set_frag_offset(self.frag_offset);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // A well-known header: 192.168.0.1 -> 192.168.0.199, UDP, DF, TTL 64, checksum b861,
    // followed by 95 bytes of payload.
    fn classic() -> Vec<u8> {
        let mut bytes = vec![
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        bytes.extend((0..95).map(|i| i as u8));
        bytes
    }

    // 10.0.0.1 -> 10.0.0.2, ICMP, with a 4-byte options field (NOP, NOP, NOP, EOL), a
    // fragment (MF, offset 1480, id 0x1234), TTL 1, checksum computed by hand, 4 bytes of
    // payload and 2 bytes of Ethernet padding after the total length.
    const WITH_OPTIONS: [u8; 30] = [
        0x46, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x20, 0xb9, 0x01, 0x01, 0x6f, 0xf1, 0x0a, 0x00, //
        0x00, 0x01, 0x0a, 0x00, 0x00, 0x02, 0x01, 0x01, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef, //
        0x00, 0x00,
    ];

    #[test]
    fn deconstruct_classic() {
        let bytes = classic();
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 20);
        assert_eq!(packet.tos(), 0);
        assert_eq!(packet.total_len(), 115);
        assert_eq!(packet.ident(), 0);
        assert!(packet.dont_frag());
        assert!(!packet.more_frags());
        assert_eq!(packet.frag_offset(), 0);
        assert!(!packet.is_fragment());
        assert_eq!(packet.ttl(), 64);
        assert_eq!(packet.protocol(), IpProtocol::UDP);
        assert_eq!(packet.checksum(), 0xb861);
        assert_eq!(packet.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(packet.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(packet.verify_checksum());
        assert!(packet.options().is_empty());
        assert_eq!(packet.payload().len(), 95);
    }

    #[test]
    fn deconstruct_options_and_fragment() {
        let packet = Packet::new_checked(&WITH_OPTIONS[..]).unwrap();
        assert_eq!(packet.header_len(), 24);
        assert_eq!(packet.options(), [0x01, 0x01, 0x01, 0x00]);
        assert_eq!(packet.total_len(), 28);
        assert_eq!(packet.ident(), 0x1234);
        assert!(packet.more_frags());
        assert!(!packet.dont_frag());
        assert_eq!(packet.frag_offset(), 1480);
        assert!(packet.is_fragment());
        assert_eq!(packet.ttl(), 1);
        assert_eq!(packet.protocol(), IpProtocol::ICMP);
        assert!(packet.verify_checksum());
        // The payload stops at the total length: the padding is not in it.
        assert_eq!(packet.payload(), [0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn construct() {
        let mut bytes = classic();
        bytes[..HEADER_LEN].fill(0xff);
        // The reserved flag has no setter.
        bytes[6] = 0x1f;
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_version(4);
        packet.set_header_len(20);
        packet.set_tos(0);
        packet.set_total_len(115);
        packet.set_ident(0);
        packet.set_more_frags(false);
        packet.set_frag_offset(0);
        packet.set_dont_frag(true);
        packet.set_ttl(64);
        packet.set_protocol(IpProtocol::UDP);
        packet.set_src_addr(Ipv4Addr::new(192, 168, 0, 1));
        packet.set_dst_addr(Ipv4Addr::new(192, 168, 0, 199));
        packet.fill_checksum();
        assert_eq!(packet.checksum(), 0xb861);
        assert_eq!(packet.payload_mut().len(), 95);
        assert!(packet.options_mut().is_empty());
        assert_eq!(bytes, classic());
    }

    #[test]
    fn repr_parse_and_emit() {
        let bytes = classic();
        let repr = Repr::parse(&Packet::new_unchecked(&bytes[..])).unwrap();
        assert_eq!(
            repr,
            Repr {
                src_addr: Ipv4Addr::new(192, 168, 0, 1),
                dst_addr: Ipv4Addr::new(192, 168, 0, 199),
                protocol: IpProtocol::UDP,
                ttl: 64,
                tos: 0,
                ident: 0,
                dont_frag: true,
                more_frags: false,
                frag_offset: 0,
                payload_len: 95,
            }
        );
        let mut out = vec![0xaa; bytes.len()];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out[..HEADER_LEN], bytes[..HEADER_LEN]);
    }

    #[test]
    fn repr_parse_rejects_bad_version_and_checksum() {
        let mut bytes = classic();
        bytes[11] ^= 1;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&bytes[..])),
            Err(ParseError::Checksum {
                layer: Layer::Ipv4,
                offset: 0
            })
        );
        let mut bytes = classic();
        bytes[0] = 0x65;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&bytes[..])),
            Err(ParseError::Version {
                layer: Layer::Ipv4,
                offset: 0,
                version: 6
            })
        );
    }

    #[test]
    fn malformed_lengths() {
        // IHL 4: a header shorter than the fixed part.
        let mut bytes = classic();
        bytes[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            ParseError::HeaderLen {
                layer: Layer::Ipv4,
                offset: 0,
                header_len: 16,
                min: 20
            }
        );
        // Total length 20 with a 24-byte header.
        let mut bytes = WITH_OPTIONS;
        bytes[3] = 20;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err().to_string(),
            "ipv4 header: total length 20 < header length 24 at offset 0"
        );
        // Total length beyond the buffer.
        let bytes = classic();
        assert_eq!(
            Packet::new_checked(&bytes[..100]).unwrap_err(),
            ParseError::LengthBeyondBuffer {
                layer: Layer::Ipv4,
                offset: 0,
                length: 115,
                available: 100
            }
        );
        // IHL 15 with only 20 bytes.
        let mut bytes = [0; 20];
        bytes[0] = 0x4f;
        bytes[3] = 20;
        assert!(Packet::new_checked(&bytes[..]).is_err());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = classic();
        for len in 0..bytes.len() {
            assert!(Packet::new_checked(&bytes[..len]).is_err(), "length {len}");
            assert!(Repr::parse(&Packet::new_unchecked(&bytes[..len])).is_err());
        }
    }

    fn any_repr() -> impl Strategy<Value = Repr> {
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<(u8, u8, u8, u16)>(),
            any::<(bool, bool)>(),
            0..=OFFSET_MASK,
            0..=(usize::from(u16::MAX) - HEADER_LEN),
        )
            .prop_map(
                |(src, dst, (protocol, ttl, tos, ident), (dont_frag, more_frags), off, len)| Repr {
                    src_addr: src.into(),
                    dst_addr: dst.into(),
                    protocol: IpProtocol(protocol),
                    ttl,
                    tos,
                    ident,
                    dont_frag,
                    more_frags,
                    frag_offset: off << 3,
                    payload_len: len,
                },
            )
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
                let _ = (packet.options(), packet.payload(), packet.verify_checksum());
                let _ = Repr::parse(&packet);
            }
        }
    }
}
