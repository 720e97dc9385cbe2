//! ICMP messages (RFC 792).
//!
//! Every message starts with an 8-byte header: type, code, checksum and four bytes whose
//! meaning depends on the type (identifier and sequence number for echo, next-hop MTU for
//! "fragmentation needed", unused for most others). The checksum covers the whole message,
//! with no pseudo-header. [`Packet::check_len`] makes sure the 8 bytes are there; after that
//! no accessor or setter panics. The body (for errors, the offending packet's header) is
//! not interpreted.

use std::fmt;

use crate::checksum;
use crate::error::{Layer, ParseError};
use crate::field::{be16, be32, set_be16, set_be32};

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

/// An ICMP message type. A plain number with named constants for the common ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Message(pub u8);

impl Message {
    /// Echo reply (0).
    pub const ECHO_REPLY: Message = Message(0);
    /// Destination unreachable (3).
    pub const DST_UNREACHABLE: Message = Message(3);
    /// Redirect (5).
    pub const REDIRECT: Message = Message(5);
    /// Echo request (8).
    pub const ECHO_REQUEST: Message = Message(8);
    /// Router advertisement (9).
    pub const ROUTER_ADVERT: Message = Message(9);
    /// Router solicitation (10).
    pub const ROUTER_SOLICIT: Message = Message(10);
    /// Time exceeded (11).
    pub const TIME_EXCEEDED: Message = Message(11);
    /// Parameter problem (12).
    pub const PARAM_PROBLEM: Message = Message(12);
    /// Timestamp (13).
    pub const TIMESTAMP: Message = Message(13);
    /// Timestamp reply (14).
    pub const TIMESTAMP_REPLY: Message = Message(14);

    /// Whether the message is an echo request or reply, whose header carries an identifier.
    pub const fn is_echo(self) -> bool {
        matches!(self, Message::ECHO_REQUEST | Message::ECHO_REPLY)
    }

    /// Whether the message reports an error about another packet (which it quotes).
    pub const fn is_error(self) -> bool {
        matches!(
            self,
            Message::DST_UNREACHABLE
                | Message::REDIRECT
                | Message::TIME_EXCEEDED
                | Message::PARAM_PROBLEM
        )
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match *self {
            Message::ECHO_REPLY => "echo-reply",
            Message::DST_UNREACHABLE => "destination-unreachable",
            Message::REDIRECT => "redirect",
            Message::ECHO_REQUEST => "echo-request",
            Message::ROUTER_ADVERT => "router-advertisement",
            Message::ROUTER_SOLICIT => "router-solicitation",
            Message::TIME_EXCEEDED => "time-exceeded",
            Message::PARAM_PROBLEM => "parameter-problem",
            Message::TIMESTAMP => "timestamp",
            Message::TIMESTAMP_REPLY => "timestamp-reply",
            Message(other) => return write!(f, "type {other}"),
        })
    }
}

/// A view of an ICMP message.
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
        ParseError::need(Layer::Icmpv4, HEADER_LEN, self.buffer.as_ref().len())
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

    /// Whether the checksum over the whole buffer is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
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

    /// Computes the checksum over the whole buffer and stores it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.buffer.as_ref());
        self.set_checksum(!sum);
    }

    /// The body, writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// An ICMP message, parsed and validated. The type-specific header bytes stay raw in
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

    /// Parses and validates `packet`: length and checksum.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Self, ParseError> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(ParseError::Checksum {
                layer: Layer::Icmpv4,
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

    /// Writes the message, with its checksum, into `packet`.
    ///
    /// # Panics
    /// If the buffer is not exactly [`buffer_len`](Self::buffer_len) long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_msg_type(self.msg_type);
        packet.set_code(self.code);
        packet.set_rest_of_header(self.rest_of_header);
        packet.data_mut().copy_from_slice(self.data);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // An echo request, identifier 0x1234, sequence 1, body "abcd"; checksum checked with
    // tshark.
    const ECHO: [u8; 12] = [
        0x08, 0x00, 0x21, 0x04, 0x12, 0x34, 0x00, 0x01, b'a', b'b', b'c', b'd',
    ];

    #[test]
    fn deconstruct() {
        let packet = Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(packet.msg_type(), Message::ECHO_REQUEST);
        assert!(packet.msg_type().is_echo());
        assert!(!packet.msg_type().is_error());
        assert_eq!(packet.code(), 0);
        assert_eq!(packet.checksum(), 0x2104);
        assert_eq!(packet.rest_of_header(), 0x1234_0001);
        assert_eq!(packet.echo_ident(), 0x1234);
        assert_eq!(packet.echo_seq_no(), 1);
        assert_eq!(packet.data(), b"abcd");
        assert!(packet.verify_checksum());
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
        packet.fill_checksum();
        assert_eq!(bytes, ECHO);
    }

    #[test]
    fn repr_parse_and_emit() {
        let repr = Repr::echo_request(0x1234, 1, b"abcd");
        assert_eq!(Repr::parse(&Packet::new_unchecked(&ECHO[..])), Ok(repr));
        let mut bytes = [0; 12];
        repr.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, ECHO);
        let reply = Repr::echo_reply(0x1234, 1, b"abcd");
        assert_eq!(reply.msg_type, Message::ECHO_REPLY);
        assert_eq!(reply.rest_of_header, repr.rest_of_header);
        let mut bad = ECHO;
        bad[9] = b'x';
        assert!(Repr::parse(&Packet::new_unchecked(&bad[..])).is_err());
    }

    #[test]
    fn every_truncation_is_an_error() {
        for len in 0..ECHO.len() {
            assert!(Repr::parse(&Packet::new_unchecked(&ECHO[..len])).is_err());
            assert_eq!(Packet::new_checked(&ECHO[..len]).is_err(), len < HEADER_LEN);
        }
    }

    #[test]
    fn message_names() {
        assert_eq!(Message::TIME_EXCEEDED.to_string(), "time-exceeded");
        assert!(Message::TIME_EXCEEDED.is_error());
        assert_eq!(Message(42).to_string(), "type 42");
    }

    proptest! {
        #[test]
        fn repr_round_trip(msg_type in any::<u8>(), code in any::<u8>(), rest in any::<u32>(),
                           data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let repr = Repr { msg_type: Message(msg_type), code, rest_of_header: rest, data: &data };
            let mut bytes = vec![0; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut bytes[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_unchecked(&bytes[..])), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = packet.data();
                let _ = Repr::parse(&packet);
            }
        }
    }
}
