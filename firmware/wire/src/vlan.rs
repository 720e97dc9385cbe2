//! IEEE 802.1Q VLAN tags, single or stacked (802.1ad QinQ).
//!
//! A tag is announced by a TPID where an EtherType would be (0x8100, or 0x88a8 for an
//! 802.1ad service tag) and is followed by four bytes, which [`Packet`] views: the tag
//! control information (priority, drop-eligible bit, 12-bit VLAN id) and the EtherType of
//! what follows. [`Tag`] is one parsed tag with its TPID, [`Tags`] the (at most two) tags of
//! a frame, outermost first.

use std::fmt;

use crate::error::{Layer, ParseError};
use crate::ethernet::EtherType;
use crate::field::{be16, set_be16};

mod field {
    pub const TCI: usize = 0;
    pub const ETHERTYPE: usize = 2;
}

/// The length of a tag after its TPID.
pub const HEADER_LEN: usize = 4;

/// The largest VLAN id.
pub const MAX_VID: u16 = 0x0fff;

/// A view of the four bytes that follow a VLAN TPID.
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

    /// Makes sure no accessor or setter will panic: the buffer holds the whole tag.
    pub fn check_len(&self) -> Result<(), ParseError> {
        ParseError::need(Layer::Vlan, HEADER_LEN, self.buffer.as_ref().len())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole tag control information field.
    #[inline(always)]
    pub fn tci(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TCI)
    }

    /// The priority code point (0..=7).
    #[inline(always)]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// The drop-eligible indicator.
    #[inline(always)]
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// The VLAN id (0..=4095).
    #[inline(always)]
    pub fn vid(&self) -> u16 {
        self.tci() & MAX_VID
    }

    /// The EtherType of what follows the tag (another TPID if tags are stacked).
    #[inline(always)]
    pub fn ethertype(&self) -> EtherType {
        EtherType(be16(self.buffer.as_ref(), field::ETHERTYPE))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// What follows the tag.
    #[inline(always)]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the whole tag control information field.
    #[inline(always)]
    pub fn set_tci(&mut self, value: u16) {
        set_be16(self.buffer.as_mut(), field::TCI, value);
    }

    /// Sets the priority code point (the low 3 bits of `value`).
    #[inline(always)]
    pub fn set_pcp(&mut self, value: u8) {
        let tci = self.tci() & 0x1fff | u16::from(value & 0x07) << 13;
        self.set_tci(tci);
    }

    /// Sets the drop-eligible indicator.
    #[inline(always)]
    pub fn set_dei(&mut self, value: bool) {
        let tci = self.tci() & !0x1000 | u16::from(value) << 12;
        self.set_tci(tci);
    }

    /// Sets the VLAN id (the low 12 bits of `value`).
    #[inline(always)]
    pub fn set_vid(&mut self, value: u16) {
        let tci = self.tci() & !MAX_VID | value & MAX_VID;
        self.set_tci(tci);
    }

    /// Sets the EtherType of what follows.
    #[inline(always)]
    pub fn set_ethertype(&mut self, value: EtherType) {
        set_be16(self.buffer.as_mut(), field::ETHERTYPE, value.0);
    }

    /// What follows the tag, writable.
    #[inline(always)]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// A VLAN tag, parsed: the four bytes after the TPID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Priority code point (0..=7).
    pub pcp: u8,
    /// Drop-eligible indicator.
    pub dei: bool,
    /// VLAN id (0..=4095).
    pub vid: u16,
    /// The EtherType of what follows.
    pub ethertype: EtherType,
}

impl Repr {
    /// Parses the tag (checking its length first, so any view will do).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr, ParseError> {
        packet.check_len()?;
        Ok(Repr {
            pcp: packet.pcp(),
            dei: packet.dei(),
            vid: packet.vid(),
            ethertype: packet.ethertype(),
        })
    }

    /// The length of the tag [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the tag into `packet`; `pcp` and `vid` are cut to their 3 and 12 bits.
    ///
    /// # Panics
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_tci(
            u16::from(self.pcp & 0x07) << 13 | u16::from(self.dei) << 12 | self.vid & MAX_VID,
        );
        packet.set_ethertype(self.ethertype);
    }
}

/// One tag of a frame, with the TPID that announced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag {
    /// The TPID: [`EtherType::VLAN`] or, for an outer service tag, [`EtherType::QINQ`].
    pub tpid: EtherType,
    /// Priority code point (0..=7).
    pub pcp: u8,
    /// Drop-eligible indicator.
    pub dei: bool,
    /// VLAN id (0..=4095).
    pub vid: u16,
}

impl Tag {
    /// An 802.1Q customer tag (TPID 0x8100) with priority 0.
    pub const fn c_tag(vid: u16) -> Tag {
        Tag {
            tpid: EtherType::VLAN,
            pcp: 0,
            dei: false,
            vid,
        }
    }

    /// An 802.1ad service tag (TPID 0x88a8) with priority 0.
    pub const fn s_tag(vid: u16) -> Tag {
        Tag {
            tpid: EtherType::QINQ,
            pcp: 0,
            dei: false,
            vid,
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} vid {} pcp {}", self.tpid, self.vid, self.pcp)?;
        if self.dei {
            f.write_str(" dei")?;
        }
        Ok(())
    }
}

/// The VLAN tags of a frame, outermost first: none, one, or two (QinQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tags {
    tags: [Option<Tag>; 2],
}

impl Tags {
    /// No tag.
    pub const NONE: Tags = Tags { tags: [None, None] };

    /// One tag.
    pub const fn one(tag: Tag) -> Tags {
        Tags {
            tags: [Some(tag), None],
        }
    }

    /// Two tags, QinQ.
    pub const fn two(outer: Tag, inner: Tag) -> Tags {
        Tags {
            tags: [Some(outer), Some(inner)],
        }
    }

    /// The outermost tag.
    pub const fn outer(&self) -> Option<Tag> {
        self.tags[0]
    }

    /// The inner tag of a QinQ frame.
    pub const fn inner(&self) -> Option<Tag> {
        self.tags[1]
    }

    /// The tag closest to the IP header, which names the VLAN the packet is in: the inner
    /// tag if there are two.
    pub const fn innermost(&self) -> Option<Tag> {
        match self.tags {
            [_, Some(inner)] => Some(inner),
            [outer, None] => outer,
        }
    }

    /// How many tags there are.
    pub fn count(&self) -> usize {
        self.iter().count()
    }

    /// The tags, outermost first.
    pub fn iter(&self) -> impl Iterator<Item = Tag> + '_ {
        self.tags.iter().map_while(|tag| *tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // TCI: pcp 5, dei 1, vid 0x123; then IPv4.
    const TAG: [u8; 4] = [0xb1, 0x23, 0x08, 0x00];

    #[test]
    fn deconstruct() {
        let packet = Packet::new_checked(&TAG[..]).unwrap();
        assert_eq!(packet.tci(), 0xb123);
        assert_eq!(packet.pcp(), 5);
        assert!(packet.dei());
        assert_eq!(packet.vid(), 0x123);
        assert_eq!(packet.ethertype(), EtherType::IPV4);
        assert!(packet.payload().is_empty());
    }

    #[test]
    fn construct_field_by_field() {
        let mut bytes = [0xff; 6];
        let mut packet = Packet::new_checked(&mut bytes[..]).unwrap();
        packet.set_tci(0);
        packet.set_pcp(5);
        packet.set_dei(true);
        packet.set_vid(0xf123);
        packet.set_ethertype(EtherType::IPV4);
        assert_eq!(packet.vid(), 0x123);
        packet.payload_mut().fill(0xaa);
        assert_eq!(
            packet.into_inner()[..],
            [0xb1, 0x23, 0x08, 0x00, 0xaa, 0xaa]
        );
        let mut packet = Packet::new_unchecked([0xff; 4]);
        packet.set_dei(false);
        packet.set_pcp(0);
        assert_eq!(packet.tci(), 0x0fff);
    }

    #[test]
    fn repr_round_trip() {
        let repr = Repr::parse(&Packet::new_unchecked(&TAG[..])).unwrap();
        assert_eq!(
            repr,
            Repr {
                pcp: 5,
                dei: true,
                vid: 0x123,
                ethertype: EtherType::IPV4
            }
        );
        let mut bytes = [0; HEADER_LEN];
        repr.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, TAG);
        assert_eq!(repr.buffer_len(), 4);
    }

    #[test]
    fn every_truncation_is_an_error() {
        for len in 0..HEADER_LEN {
            assert!(Packet::new_checked(&TAG[..len]).is_err());
            assert!(Repr::parse(&Packet::new_unchecked(&TAG[..len])).is_err());
        }
    }

    #[test]
    fn tags_in_order() {
        assert_eq!(Tags::NONE.count(), 0);
        assert_eq!(Tags::NONE.innermost(), None);
        assert_eq!(Tags::default(), Tags::NONE);
        let one = Tags::one(Tag::s_tag(100));
        assert_eq!((one.count(), one.inner()), (1, None));
        assert_eq!(one.innermost(), Some(Tag::s_tag(100)));
        let tags = Tags::two(Tag::s_tag(100), Tag::c_tag(200));
        assert_eq!(tags.outer().map(|t| t.vid), Some(100));
        assert_eq!(tags.inner().map(|t| t.vid), Some(200));
        assert_eq!(tags.innermost().map(|t| t.vid), Some(200));
        assert_eq!(tags.iter().map(|t| t.vid).collect::<Vec<_>>(), [100, 200]);
        assert_eq!(tags.count(), 2);
        assert_eq!(Tag::s_tag(7).to_string(), "802.1ad vid 7 pcp 0");
        let dei = Tag {
            dei: true,
            ..Tag::c_tag(1)
        };
        assert_eq!(dei.to_string(), "802.1q vid 1 pcp 0 dei");
    }
}
