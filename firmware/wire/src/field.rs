//! Network-byte-order reads and writes at fixed offsets, shared by the views.
//!
//! Each helper indexes the slice, so it panics when the field lies outside it: the views call
//! them only at offsets their `check_len` proved to be inside the buffer.

use std::net::{Ipv4Addr, Ipv6Addr};

#[inline(always)]
pub(crate) fn be16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

#[inline(always)]
pub(crate) fn be32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

#[inline(always)]
pub(crate) fn set_be16(data: &mut [u8], at: usize, value: u16) {
    data[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

#[inline(always)]
pub(crate) fn set_be32(data: &mut [u8], at: usize, value: u32) {
    data[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

#[inline(always)]
pub(crate) fn ipv4_addr(data: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from(be32(data, at))
}

#[inline(always)]
pub(crate) fn ipv6_addr(data: &[u8], at: usize) -> Ipv6Addr {
    let mut octets = [0; 16];
    octets.copy_from_slice(&data[at..at + 16]);
    Ipv6Addr::from(octets)
}
