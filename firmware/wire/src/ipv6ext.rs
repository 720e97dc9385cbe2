//! IPv6 extension headers of the common shape (RFC 8200, section 4): hop-by-hop options,
//! routing, destination options.
//!
//! Each starts with a next-header byte and a length byte counting 8-byte units beyond the
//! first 8, so a parser can skip one without understanding it, which is all the fast path
//! does. [`Header::check_len`] makes sure the buffer covers the length the header claims;
//! after that no accessor or setter panics, until [`Header::set_header_len`] changes it.
//!
//! The view does not know which kind of header it holds (the previous header's next-header
//! field says), so its errors name [`Layer::Ipv6Extension`]. The fragment header and the
//! authentication header have other shapes: see [`ipv6frag`](crate::ipv6frag) and
//! [`ah`](crate::ah).

use crate::error::{Layer, ParseError};
use crate::ip::IpProtocol;

mod field {
    pub const NEXT_HEADER: usize = 0;
    pub const LENGTH: usize = 1;
    pub const DATA: usize = 2;
}

/// The shortest header: 8 bytes.
pub const MIN_HEADER_LEN: usize = 8;

/// The longest header: 2048 bytes.
pub const MAX_HEADER_LEN: usize = 8 * 256;

/// A view of an IPv6 extension header of the common shape.
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

    /// Makes sure no accessor or setter will panic: the buffer covers the header length.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        ParseError::need(Layer::Ipv6Extension, MIN_HEADER_LEN, len)?;
        ParseError::need(Layer::Ipv6Extension, self.header_len(), len)
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The next header: another extension header or the upper-layer protocol.
    #[inline(always)]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NEXT_HEADER])
    }

    /// The header length in bytes (8 to 2048).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        (usize::from(self.buffer.as_ref()[field::LENGTH]) + 1) * 8
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Header<&'a T> {
    /// What the header holds after its first two bytes: options, or the routing type,
    /// segments left and type-specific data.
    #[inline(always)]
    pub fn data(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::DATA..self.header_len()]
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

    /// Sets the header length in bytes (a multiple of 8, 8 to 2048). This can undo what
    /// [`check_len`](Self::check_len) checked.
    #[inline(always)]
    pub fn set_header_len(&mut self, value: usize) {
        self.buffer.as_mut()[field::LENGTH] = (value / 8).saturating_sub(1) as u8;
    }

    /// The data after the first two bytes, writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::DATA..end]
    }
}

/// An extension header of the common shape, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr<'a> {
    /// The next header.
    pub next_header: IpProtocol,
    /// Everything after the first two bytes (options, or routing type, segments left and
    /// type-specific data).
    pub data: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Parses the header (checking its length first, so any view will do).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(header: &Header<&'a T>) -> Result<Self, ParseError> {
        header.check_len()?;
        Ok(Repr {
            next_header: header.next_header(),
            data: header.data(),
        })
    }

    /// The length of the header [`emit`](Self::emit) writes: 2 + `data`, rounded up to a
    /// multiple of 8.
    pub const fn buffer_len(&self) -> usize {
        (field::DATA + self.data.len()).next_multiple_of(8)
    }

    /// Writes the header into `header`, padding `data` with zero bytes (Pad1 options, which
    /// also leave routing data intact) to a multiple of 8.
    ///
    /// # Panics
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len), or that is more than
    /// [`MAX_HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut Header<T>) {
        let len = self.buffer_len();
        assert!(
            len <= MAX_HEADER_LEN,
            "IPv6 extension header longer than 2048 bytes"
        );
        header.set_next_header(self.next_header);
        header.set_header_len(len);
        let data = header.data_mut();
        data[..self.data.len()].copy_from_slice(self.data);
        data[self.data.len()..].fill(0);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // A hop-by-hop header before TCP holding a router alert option (type 5, length 2,
    // value 0) and a PadN of length 0; then 4 bytes of what follows.
    const HOP_BY_HOP: [u8; 12] = [
        0x06, 0x00, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00, 0xaa, 0xbb, 0xcc, 0xdd,
    ];

    // A routing header, type 4 (segment routing) with one segment and segments left 0,
    // before UDP: 24 bytes.
    fn routing() -> Vec<u8> {
        let mut bytes = vec![0x11, 0x02, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00];
        bytes.extend([0x20, 0x01, 0x0d, 0xb8].iter().chain(&[0; 12]));
        bytes
    }

    #[test]
    fn deconstruct() {
        let header = Header::new_checked(&HOP_BY_HOP[..]).unwrap();
        assert_eq!(header.next_header(), IpProtocol::TCP);
        assert_eq!(header.header_len(), 8);
        assert_eq!(header.data(), [0x05, 0x02, 0x00, 0x00, 0x01, 0x00]);
        assert_eq!(header.payload(), [0xaa, 0xbb, 0xcc, 0xdd]);

        let bytes = routing();
        let header = Header::new_checked(&bytes[..]).unwrap();
        assert_eq!(header.next_header(), IpProtocol::UDP);
        assert_eq!(header.header_len(), 24);
        assert_eq!(header.data()[..2], [0x04, 0x00]);
        assert!(header.payload().is_empty());
    }

    #[test]
    fn construct() {
        let mut bytes = [0xff; 12];
        let mut header = Header::new_unchecked(&mut bytes[..]);
        header.set_next_header(IpProtocol::TCP);
        header.set_header_len(8);
        header.data_mut().copy_from_slice(&HOP_BY_HOP[2..8]);
        bytes[8..].copy_from_slice(&HOP_BY_HOP[8..]);
        assert_eq!(bytes, HOP_BY_HOP);
    }

    #[test]
    fn repr_parse_and_emit() {
        let repr = Repr::parse(&Header::new_unchecked(&HOP_BY_HOP[..])).unwrap();
        assert_eq!(repr.next_header, IpProtocol::TCP);
        assert_eq!(repr.buffer_len(), 8);
        let mut bytes = [0xff; 8];
        repr.emit(&mut Header::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, HOP_BY_HOP[..8]);

        // Short data is padded with Pad1 options.
        let short = Repr {
            next_header: IpProtocol::UDP,
            data: &[0x01, 0x01],
        };
        assert_eq!(short.buffer_len(), 8);
        let mut bytes = [0xff; 8];
        short.emit(&mut Header::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, [0x11, 0x00, 0x01, 0x01, 0, 0, 0, 0]);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = routing();
        for len in 0..bytes.len() {
            let err = Header::new_checked(&bytes[..len]).unwrap_err();
            let needed = if len < 8 { 8 } else { 24 };
            assert_eq!(
                err,
                ParseError::Truncated {
                    layer: Layer::Ipv6Extension,
                    offset: 0,
                    needed,
                    available: len
                }
            );
            assert!(Repr::parse(&Header::new_unchecked(&bytes[..len])).is_err());
        }
    }

    proptest! {
        #[test]
        fn repr_round_trip(
            next in any::<u8>(),
            units in 0..=255usize,
            fill in any::<u8>(),
        ) {
            let data = vec![fill; units * 8 + 6];
            let repr = Repr { next_header: IpProtocol(next), data: &data };
            let mut bytes = vec![0; repr.buffer_len()];
            repr.emit(&mut Header::new_unchecked(&mut bytes[..]));
            prop_assert_eq!(Repr::parse(&Header::new_unchecked(&bytes[..])), Ok(repr));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(header) = Header::new_checked(&bytes[..]) {
                let _ = (header.data(), header.payload());
                let _ = Repr::parse(&header);
            }
        }
    }
}
