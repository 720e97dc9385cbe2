//! SCTP packets (RFC 9260): the common header and the raw chunks after it.
//!
//! The 12-byte common header holds the ports, the verification tag and a CRC32c checksum
//! over the whole packet (with the checksum field taken as zero), stored least significant
//! byte first (RFC 9260, appendix A). No pseudo-header: SCTP does not cover the IP addresses.
//! [`Packet::check_len`] makes sure the header is there; after that no accessor or setter
//! panics. Chunks are not interpreted.

use crate::checksum::{crc32c, crc32c_update};
use crate::error::{Layer, ParseError};
use crate::field::{be16, be32, set_be16, set_be32};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const VERIFICATION_TAG: usize = 4;
    pub const CHECKSUM: usize = 8;
}

/// The length of the common header.
pub const HEADER_LEN: usize = 12;

/// A view of an SCTP packet.
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

    /// Makes sure no accessor or setter will panic: the common header is there.
    pub fn check_len(&self) -> Result<(), ParseError> {
        ParseError::need(Layer::Sctp, HEADER_LEN, self.buffer.as_ref().len())
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

    /// The verification tag.
    #[inline(always)]
    pub fn verification_tag(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VERIFICATION_TAG)
    }

    /// The checksum: the CRC32c value the field holds (least significant byte first).
    #[inline(always)]
    pub fn checksum(&self) -> u32 {
        let data = self.buffer.as_ref();
        u32::from_le_bytes([
            data[field::CHECKSUM],
            data[field::CHECKSUM + 1],
            data[field::CHECKSUM + 2],
            data[field::CHECKSUM + 3],
        ])
    }

    /// The CRC32c of the packet with the checksum field taken as zero.
    pub fn compute_checksum(&self) -> u32 {
        let data = self.buffer.as_ref();
        let crc = crc32c_update(!0, &data[..field::CHECKSUM]);
        let crc = crc32c_update(crc, &[0; 4]);
        !crc32c_update(crc, &data[HEADER_LEN..])
    }

    /// Whether the checksum is right.
    pub fn verify_checksum(&self) -> bool {
        self.checksum() == self.compute_checksum()
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The chunks: what follows the common header.
    #[inline(always)]
    pub fn chunks(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
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

    /// Sets the verification tag.
    #[inline(always)]
    pub fn set_verification_tag(&mut self, value: u32) {
        set_be32(self.buffer.as_mut(), field::VERIFICATION_TAG, value);
    }

    /// Sets the checksum (stored least significant byte first).
    #[inline(always)]
    pub fn set_checksum(&mut self, value: u32) {
        let data = self.buffer.as_mut();
        data[field::CHECKSUM..field::CHECKSUM + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// Computes the checksum and stores it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let crc = crc32c(self.buffer.as_ref());
        self.set_checksum(crc);
    }

    /// The chunks, writable.
    #[inline(always)]
    pub fn chunks_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// An SCTP packet, parsed and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Repr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Verification tag.
    pub verification_tag: u32,
    /// The chunks, raw.
    pub chunks: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Parses and validates `packet`: length and checksum.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Self, ParseError> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(ParseError::Checksum {
                layer: Layer::Sctp,
                offset: 0,
            });
        }
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            verification_tag: packet.verification_tag(),
            chunks: packet.chunks(),
        })
    }

    /// The length of the packet [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.chunks.len()
    }

    /// Writes the packet, with its checksum, into `packet`.
    ///
    /// # Panics
    /// If the buffer is not exactly [`buffer_len`](Self::buffer_len) long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_verification_tag(self.verification_tag);
        packet.chunks_mut().copy_from_slice(self.chunks);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // An INIT chunk from port 5000 to 38412 (verification tag 0, as INIT requires): initiate
    // tag 0x11223344, a_rwnd 65536, 10 outbound and 65535 inbound streams, initial TSN 1.
    // Checksum checked with tshark.
    const INIT: [u8; 32] = [
        0x13, 0x88, 0x96, 0x0c, 0x00, 0x00, 0x00, 0x00, 0xff, 0x3f, 0x4f, 0x9b, //
        0x01, 0x00, 0x00, 0x14, 0x11, 0x22, 0x33, 0x44, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0a, //
        0xff, 0xff, 0x00, 0x00, 0x00, 0x01,
    ];

    #[test]
    fn deconstruct() {
        let packet = Packet::new_checked(&INIT[..]).unwrap();
        assert_eq!(packet.src_port(), 5000);
        assert_eq!(packet.dst_port(), 38412);
        assert_eq!(packet.verification_tag(), 0);
        assert_eq!(packet.checksum(), 0x9b4f_3fff);
        assert!(packet.verify_checksum());
        assert_eq!(packet.chunks().len(), 20);
        assert_eq!(packet.chunks()[0], 1);
    }

    #[test]
    fn construct() {
        let mut bytes = INIT;
        bytes[..HEADER_LEN].fill(0xff);
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_src_port(5000);
        packet.set_dst_port(38412);
        packet.set_verification_tag(0);
        assert_eq!(packet.chunks_mut().len(), 20);
        packet.fill_checksum();
        assert_eq!(bytes, INIT);
    }

    #[test]
    fn repr_parse_and_emit() {
        let repr = Repr::parse(&Packet::new_unchecked(&INIT[..])).unwrap();
        assert_eq!(repr.src_port, 5000);
        assert_eq!(repr.chunks, &INIT[HEADER_LEN..]);
        let mut bytes = [0; 32];
        repr.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, INIT);
        let mut bad = INIT;
        bad[31] ^= 0x80;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&bad[..])),
            Err(ParseError::Checksum {
                layer: Layer::Sctp,
                offset: 0
            })
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        for len in 0..HEADER_LEN {
            assert!(Packet::new_checked(&INIT[..len]).is_err());
            assert!(Repr::parse(&Packet::new_unchecked(&INIT[..len])).is_err());
        }
        // Past the header, a cut changes the checksum.
        for len in HEADER_LEN..INIT.len() {
            assert!(Repr::parse(&Packet::new_unchecked(&INIT[..len])).is_err());
        }
    }

    proptest! {
        #[test]
        fn repr_round_trip(ports in any::<(u16, u16)>(), tag in any::<u32>(),
                           chunks in proptest::collection::vec(any::<u8>(), 0..100)) {
            let repr = Repr {
                src_port: ports.0,
                dst_port: ports.1,
                verification_tag: tag,
                chunks: &chunks,
            };
            let mut bytes = vec![0; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut bytes[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_unchecked(&bytes[..])), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = packet.chunks();
                let _ = Repr::parse(&packet);
            }
        }
    }
}
