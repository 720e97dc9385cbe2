//! The IPv6 fragment header (RFC 8200, section 4.5).
//!
//! Eight bytes: next header, reserved, fragment offset (in 8-byte units) with the M (more
//! fragments) flag, identification. A fragment with a non-zero offset carries no upper-layer
//! header, only bytes from the middle of the datagram. A header with offset 0 and M clear is
//! an "atomic fragment" (RFC 6946): a whole packet that happens to carry the header.
//! [`Header::check_len`] makes sure the 8 bytes are there; after that no accessor or setter
//! panics.

use crate::error::{Layer, ParseError};
use crate::field::{be16, be32, set_be16, set_be32};
use crate::ip::IpProtocol;

mod field {
    pub const NEXT_HEADER: usize = 0;
    pub const RESERVED: usize = 1;
    pub const OFFSET_M: usize = 2;
    pub const IDENT: usize = 4;
}

/// The length of the header.
pub const HEADER_LEN: usize = 8;

const OFFSET_MASK: u16 = 0xfff8;
const MORE_FRAGS: u16 = 0x0001;

/// A view of an IPv6 fragment header.
#[derive(Debug, Clone)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps `buffer` without checking it: accessors panic if it is shorter than
    /// [`HEADER_LEN`].
    pub const fn new_unchecked(buffer: T) -> Self {
        Header { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let header = Self::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    /// Makes sure no accessor or setter will panic: the buffer holds the whole header.
    pub fn check_len(&self) -> Result<(), ParseError> {
        ParseError::need(Layer::Ipv6Fragment, HEADER_LEN, self.buffer.as_ref().len())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The next header: what the datagram carries after its unfragmentable part.
    #[inline(always)]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NEXT_HEADER])
    }

    /// The fragment offset in bytes (a multiple of 8).
    #[inline(always)]
    pub fn frag_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), field::OFFSET_M) & OFFSET_MASK
    }

    /// The M flag: more fragments follow.
    #[inline(always)]
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), field::OFFSET_M) & MORE_FRAGS != 0
    }

    /// The identification, shared by the fragments of one datagram.
    #[inline(always)]
    pub fn ident(&self) -> u32 {
        be32(self.buffer.as_ref(), field::IDENT)
    }

    /// Whether this is a real fragment rather than an atomic one: more fragments follow or
    /// it does not start the datagram.
    #[inline(always)]
    pub fn is_fragment(&self) -> bool {
        be16(self.buffer.as_ref(), field::OFFSET_M) & (OFFSET_MASK | MORE_FRAGS) != 0
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Header<&'a T> {
    /// What follows the header.
    #[inline(always)]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Sets the next header.
    #[inline(always)]
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::NEXT_HEADER] = value.0;
    }

    /// Sets the fragment offset in bytes (a multiple of 8; the low 3 bits are dropped).
    #[inline(always)]
    pub fn set_frag_offset(&mut self, value: u16) {
        let data = self.buffer.as_mut();
        let raw = be16(data, field::OFFSET_M) & !OFFSET_MASK | value & OFFSET_MASK;
        set_be16(data, field::OFFSET_M, raw);
    }

    /// Sets the M flag.
    #[inline(always)]
    pub fn set_more_frags(&mut self, value: bool) {
        let data = self.buffer.as_mut();
        let raw = be16(data, field::OFFSET_M) & !MORE_FRAGS | u16::from(value);
        set_be16(data, field::OFFSET_M, raw);
    }

    /// Sets the identification.
    #[inline(always)]
    pub fn set_ident(&mut self, value: u32) {
        set_be32(self.buffer.as_mut(), field::IDENT, value);
    }
}

/// A fragment header, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The next header.
    pub next_header: IpProtocol,
    /// Fragment offset in bytes, a multiple of 8.
    pub frag_offset: u16,
    /// More fragments follow.
    pub more_frags: bool,
    /// Identification.
    pub ident: u32,
}

impl Repr {
    /// Parses the header (checking its length first, so any view will do).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(header: &Header<&T>) -> Result<Repr, ParseError> {
        header.check_len()?;
        Ok(Repr {
            next_header: header.next_header(),
            frag_offset: header.frag_offset(),
            more_frags: header.more_frags(),
            ident: header.ident(),
        })
    }

    /// The length of the header [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `header`, reserved bits zero.
    ///
    /// # Panics
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut Header<T>) {
        header.set_next_header(self.next_header);
        header.buffer.as_mut()[field::RESERVED] = 0;
        set_be16(header.buffer.as_mut(), field::OFFSET_M, 0);
        header.set_frag_offset(self.frag_offset);
        header.set_more_frags(self.more_frags);
        header.set_ident(self.ident);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // Next header UDP, offset 1232 with M set, identification 0xdeadbeef.
    const FRAGMENT: [u8; 8] = [0x11, 0x00, 0x04, 0xd1, 0xde, 0xad, 0xbe, 0xef];

    #[test]
    fn deconstruct() {
        let header = Header::new_checked(&FRAGMENT[..]).unwrap();
        assert_eq!(header.next_header(), IpProtocol::UDP);
        assert_eq!(header.frag_offset(), 1232);
        assert!(header.more_frags());
        assert!(header.is_fragment());
        assert_eq!(header.ident(), 0xdead_beef);
        assert!(header.payload().is_empty());
        let atomic = [0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01];
        assert!(!Header::new_unchecked(&atomic[..]).is_fragment());
    }

    #[test]
    fn construct() {
        let mut bytes = [0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0];
        let mut header = Header::new_checked(&mut bytes[..]).unwrap();
        header.set_next_header(IpProtocol::UDP);
        header.set_frag_offset(1232);
        header.set_more_frags(false);
        header.set_more_frags(true);
        header.set_ident(0xdead_beef);
        assert_eq!(header.frag_offset(), 1232);
        // The two reserved bits below the offset are left alone.
        assert_eq!(bytes, [0x11, 0x00, 0x04, 0xd7, 0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn every_truncation_is_an_error() {
        for len in 0..HEADER_LEN {
            assert!(Header::new_checked(&FRAGMENT[..len]).is_err());
            assert!(Repr::parse(&Header::new_unchecked(&FRAGMENT[..len])).is_err());
        }
    }

    proptest! {
        #[test]
        fn repr_round_trip(next in any::<u8>(), units in 0..8192u16, more in any::<bool>(),
                           ident in any::<u32>()) {
            let repr = Repr {
                next_header: IpProtocol(next),
                frag_offset: units * 8,
                more_frags: more,
                ident,
            };
            let mut bytes = [0xff; HEADER_LEN];
            repr.emit(&mut Header::new_unchecked(&mut bytes[..]));
            prop_assert_eq!(Repr::parse(&Header::new_unchecked(&bytes[..])), Ok(repr));
            prop_assert_eq!(repr.buffer_len(), HEADER_LEN);
        }
    }
}
