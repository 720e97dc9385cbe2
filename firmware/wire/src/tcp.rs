//! TCP segments (RFC 9293): ports, sequence numbers, flags, options, checksum.
//!
//! [`Packet`] views one segment: its buffer is the IP payload, no more (the checksum covers
//! all of it). [`Packet::check_len`] makes sure the fixed header is there, the data offset
//! is at least 5 and the buffer covers the header with its options; after that no accessor
//! or setter panics, until [`Packet::set_header_len`] changes what was checked. Options are
//! skipped by length, never interpreted.

use std::fmt;
use std::net::IpAddr;
use std::ops::{BitOr, BitOrAssign};

use crate::checksum;
use crate::error::{Layer, ParseError};
use crate::field::{be16, be32, set_be16, set_be32};
use crate::ip::IpProtocol;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ_NUMBER: usize = 4;
    pub const ACK_NUMBER: usize = 8;
    pub const OFFSET_FLAGS: usize = 12;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// The length of a header without options.
pub const HEADER_LEN: usize = 20;

/// The largest header, with 40 bytes of options.
pub const MAX_HEADER_LEN: usize = 60;

/// TCP flags: the low 9 bits of the data offset and flags word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u16);

impl Flags {
    /// No more data from sender.
    pub const FIN: Flags = Flags(0x001);
    /// Synchronize sequence numbers.
    pub const SYN: Flags = Flags(0x002);
    /// Reset the connection.
    pub const RST: Flags = Flags(0x004);
    /// Push function.
    pub const PSH: Flags = Flags(0x008);
    /// Acknowledgment field significant.
    pub const ACK: Flags = Flags(0x010);
    /// Urgent pointer field significant.
    pub const URG: Flags = Flags(0x020);
    /// ECN echo.
    pub const ECE: Flags = Flags(0x040);
    /// Congestion window reduced.
    pub const CWR: Flags = Flags(0x080);
    /// Accurate ECN (formerly the ECN nonce sum, NS).
    pub const AE: Flags = Flags(0x100);

    const ALL: u16 = 0x1ff;
    const NAMES: [(Flags, &'static str); 9] = [
        (Flags::FIN, "FIN"),
        (Flags::SYN, "SYN"),
        (Flags::RST, "RST"),
        (Flags::PSH, "PSH"),
        (Flags::ACK, "ACK"),
        (Flags::URG, "URG"),
        (Flags::ECE, "ECE"),
        (Flags::CWR, "CWR"),
        (Flags::AE, "AE"),
    ];

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set.
    pub const fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for Flags {
    /// The set flags joined by `|`, like `SYN|ACK`; `-` for none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut names = Flags::NAMES
            .iter()
            .filter(|(flag, _)| self.contains(*flag))
            .map(|(_, name)| name);
        if let Some(first) = names.next() {
            f.write_str(first)?;
        }
        for name in names {
            write!(f, "|{name}")?;
        }
        Ok(())
    }
}

/// A view of a TCP segment.
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

    /// Makes sure no accessor or setter will panic: the fixed header is there, the data
    /// offset is at least 5 and the buffer covers the header length.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        ParseError::need(Layer::Tcp, HEADER_LEN, len)?;
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(ParseError::HeaderLen {
                layer: Layer::Tcp,
                offset: 0,
                header_len,
                min: HEADER_LEN,
            });
        }
        ParseError::need(Layer::Tcp, header_len, len)
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

    /// The sequence number.
    #[inline(always)]
    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ_NUMBER)
    }

    /// The acknowledgment number.
    #[inline(always)]
    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK_NUMBER)
    }

    /// The header length in bytes, options included (the data offset field times 4).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::OFFSET_FLAGS] >> 4) * 4
    }

    /// The flags.
    #[inline(always)]
    pub fn flags(&self) -> Flags {
        Flags(be16(self.buffer.as_ref(), field::OFFSET_FLAGS) & Flags::ALL)
    }

    /// The window size.
    #[inline(always)]
    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW)
    }

    /// The checksum field.
    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The urgent pointer.
    #[inline(always)]
    pub fn urgent_at(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT)
    }

    /// Whether the checksum is right for a segment from `src` to `dst` (the whole buffer is
    /// the segment).
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        let data = self.buffer.as_ref();
        checksum::combine(&[
            checksum::pseudo_header(src, dst, IpProtocol::TCP, data.len() as u32),
            checksum::data(data),
        ]) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The options: the header past its first 20 bytes.
    #[inline(always)]
    pub fn options(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The payload: what follows the header.
    #[inline(always)]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..]
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

    /// Sets the sequence number.
    #[inline(always)]
    pub fn set_seq_number(&mut self, value: u32) {
        set_be32(self.buffer.as_mut(), field::SEQ_NUMBER, value);
    }

    /// Sets the acknowledgment number.
    #[inline(always)]
    pub fn set_ack_number(&mut self, value: u32) {
        set_be32(self.buffer.as_mut(), field::ACK_NUMBER, value);
    }

    /// Sets the header length in bytes (a multiple of 4, at most 60), keeping the flags.
    /// This can undo what [`check_len`](Self::check_len) checked.
    #[inline(always)]
    pub fn set_header_len(&mut self, value: usize) {
        let data = self.buffer.as_mut();
        data[field::OFFSET_FLAGS] = data[field::OFFSET_FLAGS] & 0x0f | ((value / 4) as u8) << 4;
    }

    /// Sets the flags (the low 9 bits of `value`), keeping the data offset and clearing the
    /// reserved bits.
    #[inline(always)]
    pub fn set_flags(&mut self, value: Flags) {
        let data = self.buffer.as_mut();
        let raw = be16(data, field::OFFSET_FLAGS) & 0xf000 | value.0 & Flags::ALL;
        set_be16(data, field::OFFSET_FLAGS, raw);
    }

    /// Sets the window size.
    #[inline(always)]
    pub fn set_window_len(&mut self, value: u16) {
        set_be16(self.buffer.as_mut(), field::WINDOW, value);
    }

    /// Sets the checksum field.
    #[inline(always)]
    pub fn set_checksum(&mut self, value: u16) {
        set_be16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the urgent pointer.
    #[inline(always)]
    pub fn set_urgent_at(&mut self, value: u16) {
        set_be16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// Computes the checksum of the segment from `src` to `dst` and stores it.
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let sum = checksum::combine(&[
            checksum::pseudo_header(src, dst, IpProtocol::TCP, data.len() as u32),
            checksum::data(data),
        ]);
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
        let header_len = self.header_len();
        &mut self.buffer.as_mut()[header_len..]
    }
}

/// A TCP segment, parsed and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Repr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number.
    pub ack_number: u32,
    /// Flags.
    pub flags: Flags,
    /// Window size.
    pub window_len: u16,
    /// Urgent pointer.
    pub urgent_at: u16,
    /// Options, raw; [`emit`](Self::emit) pads them with end-of-option-list bytes to a
    /// multiple of 4.
    pub options: &'a [u8],
    /// Payload.
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Parses and validates `packet`, a segment from `src` to `dst`: lengths and checksum.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&'a T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) -> Result<Self, ParseError> {
        packet.check_len()?;
        if !packet.verify_checksum(src, dst) {
            return Err(ParseError::Checksum {
                layer: Layer::Tcp,
                offset: 0,
            });
        }
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            urgent_at: packet.urgent_at(),
            options: packet.options(),
            payload: packet.payload(),
        })
    }

    /// The length of the header [`emit`](Self::emit) writes, options padded.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN + self.options.len().next_multiple_of(4)
    }

    /// The length of the segment [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Writes the segment from `src` to `dst`, with its checksum, into `packet`.
    ///
    /// # Panics
    /// If the buffer is not exactly [`buffer_len`](Self::buffer_len) long, or the options
    /// are longer than 40 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) {
        let header_len = self.header_len();
        assert!(
            header_len <= MAX_HEADER_LEN,
            "TCP options longer than 40 bytes"
        );
        assert_eq!(
            packet.buffer.as_ref().len(),
            self.buffer_len(),
            "TCP buffer length"
        );
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        set_be16(packet.buffer.as_mut(), field::OFFSET_FLAGS, 0);
        packet.set_header_len(header_len);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_urgent_at(self.urgent_at);
        let options = packet.options_mut();
        options[..self.options.len()].copy_from_slice(self.options);
        options[self.options.len()..].fill(0);
        packet.payload_mut().copy_from_slice(self.payload);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;

    fn src() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))
    }

    fn dst() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))
    }

    // A SYN from 10.0.0.1:49152 to 10.0.0.2:80, seq 1, window 64240, with an MSS 1460
    // option; checksum checked with tshark.
    const SYN: [u8; 24] = [
        0xc0, 0x00, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x60, 0x02, //
        0xfa, 0xf0, 0xc8, 0xe1, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
    ];

    const MSS: [u8; 4] = [0x02, 0x04, 0x05, 0xb4];

    fn syn() -> Repr<'static> {
        Repr {
            src_port: 49152,
            dst_port: 80,
            seq_number: 1,
            flags: Flags::SYN,
            window_len: 64240,
            options: &MSS,
            ..Repr::default()
        }
    }

    #[test]
    fn deconstruct() {
        let packet = Packet::new_checked(&SYN[..]).unwrap();
        assert_eq!(packet.src_port(), 49152);
        assert_eq!(packet.dst_port(), 80);
        assert_eq!(packet.seq_number(), 1);
        assert_eq!(packet.ack_number(), 0);
        assert_eq!(packet.header_len(), 24);
        assert_eq!(packet.flags(), Flags::SYN);
        assert_eq!(packet.window_len(), 64240);
        assert_eq!(packet.checksum(), 0xc8e1);
        assert_eq!(packet.urgent_at(), 0);
        assert_eq!(packet.options(), MSS);
        assert!(packet.payload().is_empty());
        assert!(packet.verify_checksum(&src(), &dst()));
        assert!(!packet.verify_checksum(&dst(), &dst()));
    }

    #[test]
    fn construct() {
        let mut bytes = [0xff; 24];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_src_port(49152);
        packet.set_dst_port(80);
        packet.set_seq_number(1);
        packet.set_ack_number(0);
        packet.set_header_len(24);
        packet.set_flags(Flags::SYN);
        packet.set_window_len(64240);
        packet.set_urgent_at(0);
        packet.options_mut().copy_from_slice(&MSS);
        assert!(packet.payload_mut().is_empty());
        packet.fill_checksum(&src(), &dst());
        assert_eq!(bytes, SYN);
    }

    #[test]
    fn repr_parse_and_emit() {
        let packet = Packet::new_unchecked(&SYN[..]);
        assert_eq!(Repr::parse(&packet, &src(), &dst()), Ok(syn()));
        assert_eq!(
            Repr::parse(&packet, &src(), &src()),
            Err(ParseError::Checksum {
                layer: Layer::Tcp,
                offset: 0
            })
        );
        let mut bytes = [0; 24];
        syn().emit(&mut Packet::new_unchecked(&mut bytes[..]), &src(), &dst());
        assert_eq!(bytes, SYN);
    }

    #[test]
    fn options_are_padded() {
        let repr = Repr {
            options: &[0x01, 0x01, 0x01, 0x01, 0x01],
            payload: b"hi",
            ..syn()
        };
        assert_eq!(repr.header_len(), 28);
        let mut bytes = vec![0xff; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut bytes[..]), &src(), &dst());
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.options(), [1, 1, 1, 1, 1, 0, 0, 0]);
        assert_eq!(packet.payload(), b"hi");
    }

    #[test]
    fn data_offset_below_five() {
        let mut bytes = SYN;
        bytes[12] = 0x40;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            ParseError::HeaderLen {
                layer: Layer::Tcp,
                offset: 0,
                header_len: 16,
                min: 20
            }
        );
        bytes[12] = 0xf0;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err().to_string(),
            "tcp header: needs 60 bytes, 24 available at offset 0"
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        for len in 0..SYN.len() {
            assert!(Packet::new_checked(&SYN[..len]).is_err(), "length {len}");
            let packet = Packet::new_unchecked(&SYN[..len]);
            assert!(Repr::parse(&packet, &src(), &dst()).is_err());
        }
    }

    #[test]
    fn flag_sets() {
        let synack = Flags::SYN | Flags::ACK;
        assert!(synack.contains(Flags::SYN));
        assert!(!synack.contains(Flags::SYN | Flags::FIN));
        assert!(synack.intersects(Flags::SYN | Flags::FIN));
        assert_eq!(synack.to_string(), "SYN|ACK");
        assert_eq!(Flags::default().to_string(), "-");
        let mut all = Flags::default();
        for (flag, _) in Flags::NAMES {
            all |= flag;
        }
        assert_eq!(all.0, Flags::ALL);
        assert_eq!(all.to_string(), "FIN|SYN|RST|PSH|ACK|URG|ECE|CWR|AE");
        // Reserved bits are not flags.
        let mut bytes = SYN;
        bytes[12] = 0x6e;
        assert_eq!(Packet::new_unchecked(&bytes[..]).flags(), Flags::SYN);
    }

    fn any_addrs() -> impl Strategy<Value = (IpAddr, IpAddr)> {
        prop_oneof![
            any::<([u8; 4], [u8; 4])>().prop_map(|(s, d)| (IpAddr::from(s), IpAddr::from(d))),
            any::<([u8; 16], [u8; 16])>().prop_map(|(s, d)| (IpAddr::from(s), IpAddr::from(d))),
        ]
    }

    proptest! {
        #[test]
        fn repr_round_trip(
            (src, dst) in any_addrs(),
            ports in any::<(u16, u16)>(),
            numbers in any::<(u32, u32, u16, u16)>(),
            flags in 0..=Flags::ALL,
            options in proptest::collection::vec(any::<u8>(), 0..=10).prop_map(|words| {
                words.into_iter().flat_map(|b| [b; 4]).collect::<Vec<u8>>()
            }),
            payload in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let repr = Repr {
                src_port: ports.0,
                dst_port: ports.1,
                seq_number: numbers.0,
                ack_number: numbers.1,
                flags: Flags(flags),
                window_len: numbers.2,
                urgent_at: numbers.3,
                options: &options,
                payload: &payload,
            };
            let mut bytes = vec![0; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut bytes[..]), &src, &dst);
            prop_assert_eq!(Repr::parse(&Packet::new_unchecked(&bytes[..]), &src, &dst), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = (packet.options(), packet.payload(), packet.flags());
                let _ = Repr::parse(&packet, &src(), &dst());
            }
        }
    }
}
