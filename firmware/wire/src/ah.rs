//! The IPsec authentication header (RFC 4302).
//!
//! Next header, payload length (in 4-byte units, minus 2), reserved, security parameters
//! index, sequence number, integrity check value. AH protects the packet but does not hide
//! it: what follows is the upper-layer header in clear, so the IPv6 parser skips AH like an
//! extension header. (ESP, by contrast, encrypts what follows; parsing stops there.)
//! [`Header::check_len`] makes sure the length field is at least 1 (12 bytes, no ICV) and
//! the buffer covers the length; after that no accessor or setter panics.

use crate::error::{Layer, ParseError};
use crate::field::{be32, set_be16, set_be32};
use crate::ip::IpProtocol;

mod field {
    pub const NEXT_HEADER: usize = 0;
    pub const LENGTH: usize = 1;
    pub const RESERVED: usize = 2;
    pub const SPI: usize = 4;
    pub const SEQ_NUMBER: usize = 8;
    pub const ICV: usize = 12;
}

/// The shortest header: 12 bytes, no integrity check value.
pub const MIN_HEADER_LEN: usize = 12;

/// The longest header: the length field is one byte.
pub const MAX_HEADER_LEN: usize = (255 + 2) * 4;

/// A view of an authentication header.
#[derive(Debug, Clone)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps `buffer` without checking it: accessors may panic unless
    /// [`check_len`](Self::check_len) would pass.
    pub const fn new_unchecked(buffer: T) -> Self {
        Header { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let header = Self::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    /// Makes sure no accessor or setter will panic: the fixed part is there, the length
    /// field is at least 1 and the buffer covers the length.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        ParseError::need(Layer::Ah, MIN_HEADER_LEN, len)?;
        let header_len = self.header_len();
        if header_len < MIN_HEADER_LEN {
            return Err(ParseError::HeaderLen {
                layer: Layer::Ah,
                offset: 0,
                header_len,
                min: MIN_HEADER_LEN,
            });
        }
        ParseError::need(Layer::Ah, header_len, len)
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The next header.
    #[inline(always)]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NEXT_HEADER])
    }

    /// The header length in bytes: (payload length field + 2) * 4.
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        (usize::from(self.buffer.as_ref()[field::LENGTH]) + 2) * 4
    }

    /// The security parameters index.
    #[inline(always)]
    pub fn spi(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SPI)
    }

    /// The sequence number.
    #[inline(always)]
    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ_NUMBER)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Header<&'a T> {
    /// The integrity check value.
    #[inline(always)]
    pub fn icv(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::ICV..self.header_len()]
    }

    /// What follows the header.
    #[inline(always)]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Sets the next header.
    #[inline(always)]
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::NEXT_HEADER] = value.0;
    }

    /// Sets the header length in bytes (a multiple of 4, 12 to 1028). This can undo what
    /// [`check_len`](Self::check_len) checked.
    #[inline(always)]
    pub fn set_header_len(&mut self, value: usize) {
        self.buffer.as_mut()[field::LENGTH] = (value / 4).saturating_sub(2) as u8;
    }

    /// Sets the security parameters index.
    #[inline(always)]
    pub fn set_spi(&mut self, value: u32) {
        set_be32(self.buffer.as_mut(), field::SPI, value);
    }

    /// Sets the sequence number.
    #[inline(always)]
    pub fn set_seq_number(&mut self, value: u32) {
        set_be32(self.buffer.as_mut(), field::SEQ_NUMBER, value);
    }

    /// The integrity check value, writable.
    #[inline(always)]
    pub fn icv_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::ICV..end]
    }
}

/// An authentication header, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr<'a> {
    /// The next header.
    pub next_header: IpProtocol,
    /// Security parameters index.
    pub spi: u32,
    /// Sequence number.
    pub seq_number: u32,
    /// Integrity check value (a multiple of 4 bytes).
    pub icv: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Parses the header (checking its length first, so any view will do).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(header: &Header<&'a T>) -> Result<Self, ParseError> {
        header.check_len()?;
        Ok(Repr {
            next_header: header.next_header(),
            spi: header.spi(),
            seq_number: header.seq_number(),
            icv: header.icv(),
        })
    }

    /// The length of the header [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN + self.icv.len()
    }

    /// Writes the header into `header`.
    ///
    /// # Panics
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len), or the ICV is not a
    /// multiple of 4 bytes or longer than the length field can say.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut Header<T>) {
        let len = self.buffer_len();
        assert!(
            len.is_multiple_of(4) && len <= MAX_HEADER_LEN,
            "AH integrity check value must be a multiple of 4 bytes, at most 1016"
        );
        header.set_next_header(self.next_header);
        header.set_header_len(len);
        set_be16(header.buffer.as_mut(), field::RESERVED, 0);
        header.set_spi(self.spi);
        header.set_seq_number(self.seq_number);
        header.icv_mut().copy_from_slice(self.icv);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // AH before TCP with a 12-byte ICV (HMAC-SHA1-96): length field 4, 24 bytes in all.
    fn known() -> Vec<u8> {
        let mut bytes = vec![
            0x06, 0x04, 0x00, 0x00, 0x00, 0x00, 0x10, 0x01, 0x00, 0x00, 0x00, 0x07,
        ];
        bytes.extend(1..=12);
        bytes.extend([0xaa, 0xbb]);
        bytes
    }

    #[test]
    fn deconstruct() {
        let bytes = known();
        let header = Header::new_checked(&bytes[..]).unwrap();
        assert_eq!(header.next_header(), IpProtocol::TCP);
        assert_eq!(header.header_len(), 24);
        assert_eq!(header.spi(), 0x1001);
        assert_eq!(header.seq_number(), 7);
        assert_eq!(header.icv(), (1..=12).collect::<Vec<u8>>());
        assert_eq!(header.payload(), [0xaa, 0xbb]);
    }

    #[test]
    fn construct() {
        let mut bytes = vec![0xff; 26];
        let mut header = Header::new_unchecked(&mut bytes[..]);
        header.set_next_header(IpProtocol::TCP);
        header.set_header_len(24);
        header.set_spi(0x1001);
        header.set_seq_number(7);
        header
            .icv_mut()
            .copy_from_slice(&(1..=12).collect::<Vec<u8>>());
        bytes[2..4].fill(0);
        bytes[24..].copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(bytes, known());
    }

    #[test]
    fn length_field_below_one() {
        let mut bytes = known();
        bytes[1] = 0;
        assert_eq!(
            Header::new_checked(&bytes[..]).unwrap_err(),
            ParseError::HeaderLen {
                layer: Layer::Ah,
                offset: 0,
                header_len: 8,
                min: 12
            }
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = known();
        for len in 0..24 {
            assert!(Header::new_checked(&bytes[..len]).is_err(), "length {len}");
            assert!(Repr::parse(&Header::new_unchecked(&bytes[..len])).is_err());
        }
    }

    proptest! {
        #[test]
        fn repr_round_trip(next in any::<u8>(), spi in any::<u32>(), seq in any::<u32>(),
                           words in 0..=254usize, fill in any::<u8>()) {
            let icv = vec![fill; words * 4];
            let repr = Repr { next_header: IpProtocol(next), spi, seq_number: seq, icv: &icv };
            let mut bytes = vec![0xff; repr.buffer_len()];
            repr.emit(&mut Header::new_unchecked(&mut bytes[..]));
            prop_assert_eq!(Repr::parse(&Header::new_unchecked(&bytes[..])), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(header) = Header::new_checked(&bytes[..]) {
                let _ = (header.icv(), header.payload());
                let _ = Repr::parse(&header);
            }
        }
    }
}
