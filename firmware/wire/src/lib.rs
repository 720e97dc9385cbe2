//! Packet parsing for the Palisade dataplane: zero-copy views of the headers a stateless
//! L4 firewall reads, a fast frame parser, and a frame builder.
//!
//! # The model
//!
//! Three layers, each usable on its own:
//!
//! * **Views**, one module per protocol ([`ethernet`], [`vlan`], [`ipv4`], [`ipv6`],
//!   [`ipv6ext`], [`ipv6frag`], [`ah`], [`tcp`], [`udp`], [`sctp`], [`icmpv4`], [`icmpv6`]):
//!   a `Packet<T: AsRef<[u8]>>` (`Frame` for Ethernet, `Header` for IPv6 extension headers)
//!   wraps a buffer without copying it and reads or writes fields in place. `new_checked`
//!   validates the lengths once; the getters and setters then index without failing.
//! * **Reprs**: each module's `Repr` is the header as validated, high-level values.
//!   `Repr::parse` reads one from a view and checks what the view does not (version,
//!   checksum); `Repr::emit` writes one into a view, checksum included.
//! * **The fast path**: [`parse_frame`] goes from frame bytes to a [`Parsed`] summary (VLANs,
//!   addresses, final protocol, fragment information, ports or ICMP type, offsets) in one
//!   pass, and [`PacketBuilder`] goes the other way, writing whole frames (optionally as
//!   fragments) for tests, in-memory ports and traffic generators.
//!
//! [`checksum`] holds the internet checksum with its pseudo-header and CRC32c for SCTP.
//!
//! # The robustness contract
//!
//! The bytes come from the network, so from anyone:
//!
//! * [`parse_frame`] never panics, never reads out of bounds (the crate has no `unsafe`),
//!   never allocates, and does bounded work, for any input: at most two VLAN tags and
//!   [`MAX_EXTENSION_HEADERS`] IPv6 extension headers are walked, each header is looked at
//!   once, options are skipped by length. Anything it cannot vouch for is a [`ParseError`]
//!   saying which header, at which offset, and which values disagree.
//! * A view's accessors and setters never panic once `check_len` (or `new_checked`) has
//!   passed, until a setter rewrites a length field that the check relied on (each module
//!   lists which). A view made with `new_unchecked` promises nothing: use it on buffers you
//!   validated or are building.
//! * `Repr::parse` never panics, whatever view it is given: it checks the lengths itself.
//! * `Repr::emit` panics only if the buffer does not have the length `Repr::buffer_len()`
//!   asks for (at least that, or exactly that where a checksum covers the whole buffer) or
//!   the repr breaks a limit of the wire format; each documents which. [`PacketBuilder`]
//!   checks all of them first and returns a [`BuildError`] instead.

mod builder;
mod error;
mod field;
mod parse;
#[cfg(test)]
mod testdata;

pub mod ah;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod ipv6ext;
pub mod ipv6frag;
pub mod sctp;
pub mod tcp;
pub mod udp;
pub mod vlan;

pub use builder::{BuildError, PacketBuilder};
pub use error::{Layer, ParseError};
pub use ethernet::EtherType;
pub use ip::{IpProtocol, IpVersion};
pub use parse::{Fragment, IpInfo, L4, MAX_EXTENSION_HEADERS, Parsed, parse_frame};
