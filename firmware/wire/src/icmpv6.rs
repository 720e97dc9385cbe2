//! ICMPv6 messages (RFC 4443), neighbor discovery (RFC 4861) included.
//!
//! Every message this crate reads starts with an 8-byte header: type, code, checksum and four
//! bytes whose meaning depends on the type (identifier and sequence number for echo, MTU for
//! "packet too big", pointer for "parameter problem", reserved or flags for the others).
//! Unlike ICMP, the checksum also covers the IPv6 pseudo-header. [`Packet::check_len`] makes
//! sure the 8 bytes are there; after that no accessor or setter panics. The body is not
//! interpreted.

use std::fmt;
use std::net::IpAddr;

use crate::checksum;
use crate::error::{Layer, ParseError};
use crate::field::{be16, be32, set_be16, set_be32};
use crate::ip::IpProtocol;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ_NO: usize = 6;
}

/// The length of the header.
pub const HEADER_LEN: usize = 8;

/// An ICMPv6 message type. A plain number with named constants for the common ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Message(pub u8);

impl Message {
    /// Destination unreachable (1).
    pub const DST_UNREACHABLE: Message = Message(1);
    /// Packet too big (2).
    pub const PACKET_TOO_BIG: Message = Message(2);
    /// Time exceeded (3).
    pub const TIME_EXCEEDED: Message = Message(3);
    /// Parameter problem (4).
    pub const PARAM_PROBLEM: Message = Message(4);
    /// Echo request (128).
    pub const ECHO_REQUEST: Message = Message(128);
    /// Echo reply (129).
    pub const ECHO_REPLY: Message = Message(129);
    /// Multicast listener query (130).
    pub const MLD_QUERY: Message = Message(130);
    /// Router solicitation (133).
    pub const ROUTER_SOLICIT: Message = Message(133);
    /// Router advertisement (134).
    pub const ROUTER_ADVERT: Message = Message(134);
    /// Neighbor solicitation (135).
    pub const NEIGHBOR_SOLICIT: Message = Message(135);
    /// Neighbor advertisement (136).
    pub const NEIGHBOR_ADVERT: Message = Message(136);
    /// Redirect (137).
    pub const REDIRECT: Message = Message(137);

    /// Whether the message is an echo request or reply, whose header carries an identifier.
    pub const fn is_echo(self) -> bool {
        matches!(self, Message::ECHO_REQUEST | Message::ECHO_REPLY)
    }

    /// Whether the message reports an error about another packet (types 0 to 127).
    pub const fn is_error(self) -> bool {
        self.0 < 128
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match *self {
            Message::DST_UNREACHABLE => "destination-unreachable",
            Message::PACKET_TOO_BIG => "packet-too-big",
            Message::TIME_EXCEEDED => "time-exceeded",
            Message::PARAM_PROBLEM => "parameter-problem",
            Message::ECHO_REQUEST => "echo-request",
            Message::ECHO_REPLY => "echo-reply",
            Message::MLD_QUERY => "mld-query",
            Message::ROUTER_SOLICIT => "router-solicitation",
            Message::ROUTER_ADVERT => "router-advertisement",
            Message::NEIGHBOR_SOLICIT => "neighbor-solicitation",
            Message::NEIGHBOR_ADVERT => "neighbor-advertisement",
            Message::REDIRECT => "redirect",
            Message(other) => return write!(f, "type {other}"),
        })
    }
}

/// A view of an ICMPv6 message.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it: accessors panic if it is shorter than
    /// [`HEADER_LEN`].
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Makes sure no accessor or setter will panic: the 8-byte header is there.
    pub fn check_len(&self) -> Result<(), ParseError> {
        ParseError::need(Layer::Icmpv6, HEADER_LEN, self.buffer.as_ref().len())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The message type.
    #[inline(always)]
    pub fn msg_type(&self) -> Message {
        Message(self.buffer.as_ref()[field::TYPE])
    }

    /// The code.
    #[inline(always)]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The checksum field.
    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The last four header bytes, whose meaning depends on the type.
    #[inline(always)]
    pub fn rest_of_header(&self) -> u32 {
        be32(self.buffer.as_ref(), field::REST)
    }

    /// The echo identifier (meaningful for echo messages only).
    #[inline(always)]
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// The echo sequence number (meaningful for echo messages only).
    #[inline(always)]
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQ_NO)
    }

    /// Whether the checksum is right for a message from `src` to `dst` (the whole buffer is
    /// the message).
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        let data = self.buffer.as_ref();
        checksum::combine(&[
            checksum::pseudo_header(src, dst, IpProtocol::ICMPV6, data.len() as u32),
            checksum::data(data),
        ]) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The body: what follows the 8-byte header.
    #[inline(always)]
    pub fn data(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the message type.
    #[inline(always)]
    pub fn set_msg_type(&mut self, value: Message) {
        self.buffer.as_mut()[field::TYPE] = value.0;
    }

    /// Sets the code.
    #[inline(always)]
    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum field.
    #[inline(always)]
    pub fn set_checksum(&mut self, value: u16) {
        set_be16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the last four header bytes.
    #[inline(always)]
    pub fn set_rest_of_header(&mut self, value: u32) {
        set_be32(self.buffer.as_mut(), field::REST, value);
    }

    /// Sets the echo identifier.
    #[inline(always)]
    pub fn set_echo_ident(&mut self, value: u16) {
        set_be16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    /// Sets the echo sequence number.
    #[inline(always)]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        set_be16(self.buffer.as_mut(), field::ECHO_SEQ_NO, value);
    }

    /// Computes the checksum of the message from `src` to `dst` and stores it.
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let sum = checksum::combine(&[
            checksum::pseudo_header(src, dst, IpProtocol::ICMPV6, data.len() as u32),
            checksum::data(data),
        ]);
        self.set_checksum(!sum);
    }

    /// The body, writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// An ICMPv6 message, parsed and validated. The type-specific header bytes stay raw in
/// `rest_of_header`; [`Repr::echo_request`] and [`Repr::echo_reply`] build echo messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr<'a> {
    /// Message type.
    pub msg_type: Message,
    /// Code.
    pub code: u8,
    /// The last four header bytes (for echo: identifier, then sequence number).
    pub rest_of_header: u32,
    /// The body.
    pub data: &'a [u8],
}

impl<'a> Repr<'a> {
    /// An echo request.
    pub const fn echo_request(ident: u16, seq_no: u16, data: &'a [u8]) -> Self {
        Repr {
            msg_type: Message::ECHO_REQUEST,
            code: 0,
            rest_of_header: (ident as u32) << 16 | seq_no as u32,
            data,
        }
    }

    /// An echo reply.
    pub const fn echo_reply(ident: u16, seq_no: u16, data: &'a [u8]) -> Self {
        Repr {
            msg_type: Message::ECHO_REPLY,
            ..Repr::echo_request(ident, seq_no, data)
        }
    }

    /// Parses and validates `packet`, a message from `src` to `dst`: length and checksum.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&'a T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) -> Result<Self, ParseError> {
        packet.check_len()?;
        if !packet.verify_checksum(src, dst) {
            return Err(ParseError::Checksum {
                layer: Layer::Icmpv6,
                offset: 0,
            });
        }
        Ok(Repr {
            msg_type: packet.msg_type(),
            code: packet.code(),
            rest_of_header: packet.rest_of_header(),
            data: packet.data(),
        })
    }

    /// The length of the message [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data.len()
    }

    /// Writes the message from `src` to `dst`, with its checksum, into `packet`.
    ///
    /// # Panics
    /// If the buffer is not exactly [`buffer_len`](Self::buffer_len) long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) {
        packet.set_msg_type(self.msg_type);
        packet.set_code(self.code);
        packet.set_rest_of_header(self.rest_of_header);
        packet.data_mut().copy_from_slice(self.data);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use proptest::prelude::*;

    use super::*;

    fn src() -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))
    }

    fn dst() -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2))
    }

    // An echo request from 2001:db8::1 to 2001:db8::2, identifier 0x1234, sequence 1, body
    // "abcd"; checksum checked with tshark.
    const ECHO: [u8; 12] = [
        0x80, 0x00, 0x4d, 0x48, 0x12, 0x34, 0x00, 0x01, b'a', b'b', b'c', b'd',
    ];

    #[test]
    fn deconstruct() {
        let packet = Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(packet.msg_type(), Message::ECHO_REQUEST);
        assert!(packet.msg_type().is_echo());
        assert!(!packet.msg_type().is_error());
        assert_eq!(packet.code(), 0);
        assert_eq!(packet.checksum(), 0x4d48);
        assert_eq!(packet.rest_of_header(), 0x1234_0001);
        assert_eq!(packet.echo_ident(), 0x1234);
        assert_eq!(packet.echo_seq_no(), 1);
        assert_eq!(packet.data(), b"abcd");
        assert!(packet.verify_checksum(&src(), &dst()));
        assert!(!packet.verify_checksum(&dst(), &dst()));
    }

    #[test]
    fn construct() {
        let mut bytes = [0xff; 12];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_msg_type(Message::ECHO_REQUEST);
        packet.set_code(0);
        packet.set_echo_ident(0x1234);
        packet.set_echo_seq_no(1);
        packet.data_mut().copy_from_slice(b"abcd");
        packet.fill_checksum(&src(), &dst());
        assert_eq!(bytes, ECHO);
    }

    #[test]
    fn repr_parse_and_emit() {
        let repr = Repr::echo_request(0x1234, 1, b"abcd");
        let packet = Packet::new_unchecked(&ECHO[..]);
        assert_eq!(Repr::parse(&packet, &src(), &dst()), Ok(repr));
        assert_eq!(
            Repr::parse(&packet, &dst(), &dst()),
            Err(ParseError::Checksum {
                layer: Layer::Icmpv6,
                offset: 0
            })
        );
        let mut bytes = [0; 12];
        repr.emit(&mut Packet::new_unchecked(&mut bytes[..]), &src(), &dst());
        assert_eq!(bytes, ECHO);
        assert_eq!(Repr::echo_reply(1, 2, b"").msg_type, Message::ECHO_REPLY);
    }

    #[test]
    fn every_truncation_is_an_error() {
        for len in 0..ECHO.len() {
            let packet = Packet::new_unchecked(&ECHO[..len]);
            assert!(Repr::parse(&packet, &src(), &dst()).is_err());
            assert_eq!(Packet::new_checked(&ECHO[..len]).is_err(), len < HEADER_LEN);
        }
    }

    #[test]
    fn message_names() {
        assert_eq!(
            Message::NEIGHBOR_SOLICIT.to_string(),
            "neighbor-solicitation"
        );
        assert!(Message::PACKET_TOO_BIG.is_error());
        assert_eq!(Message(200).to_string(), "type 200");
    }

    proptest! {
        #[test]
        fn repr_round_trip(msg_type in any::<u8>(), code in any::<u8>(), rest in any::<u32>(),
                           data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let repr = Repr { msg_type: Message(msg_type), code, rest_of_header: rest, data: &data };
            let mut bytes = vec![0; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut bytes[..]), &src(), &dst());
            let packet = Packet::new_unchecked(&bytes[..]);
            prop_assert_eq!(Repr::parse(&packet, &src(), &dst()), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = packet.data();
                let _ = Repr::parse(&packet, &src(), &dst());
            }
        }
    }
}
