//! Checksums: the internet checksum (RFC 1071) with the TCP/UDP/ICMPv6 pseudo-header, and
//! CRC32c (Castagnoli, RFC 3309) for SCTP.
//!
//! The internet-checksum functions return a one's-complement sum *folded to 16 bits but not
//! complemented*, so partial sums can be [`combine`]d: a header verifies when the combined sum
//! of everything it covers (checksum field included) is `0xffff`, and the value to store is
//! `!combine(..)` computed with the field zeroed.

use std::net::IpAddr;

use crate::ip::IpProtocol;

/// The one's-complement sum of `data` as big-endian 16-bit words, folded to 16 bits; an odd
/// trailing byte counts as its word's high byte.
pub fn data(data: &[u8]) -> u16 {
    // Summing 64-bit words with end-around carry is the same one's-complement sum as summing
    // 16-bit words (2^16 = 1 modulo 2^16 - 1), with a quarter of the additions.
    let mut sum: u64 = 0;
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        let (total, carry) = sum.overflowing_add(u64::from_be_bytes(bytes));
        sum = total + u64::from(carry);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut bytes = [0; 8];
        bytes[..rest.len()].copy_from_slice(rest);
        let (total, carry) = sum.overflowing_add(u64::from_be_bytes(bytes));
        sum = total + u64::from(carry);
    }
    fold(sum)
}

/// The one's-complement sum of partial sums.
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&sum| u64::from(sum)).sum())
}

/// The partial sum of the pseudo-header that TCP, UDP and ICMPv6 checksums cover: source and
/// destination address, protocol, and `length`, the upper-layer packet length.
///
/// One function serves both families because the IPv4 (RFC 9293) and IPv6 (RFC 8200, section
/// 8.1) pseudo-headers hold the same words in different places, which a one's-complement sum
/// does not see. (Addresses of different families give a sum that matches no packet.)
pub fn pseudo_header(src: &IpAddr, dst: &IpAddr, protocol: IpProtocol, length: u32) -> u16 {
    let addr = |addr: &IpAddr| match addr {
        IpAddr::V4(v4) => u64::from(data(&v4.octets())),
        IpAddr::V6(v6) => u64::from(data(&v6.octets())),
    };
    fold(
        addr(src)
            + addr(dst)
            + u64::from(protocol.0)
            + u64::from(length >> 16)
            + u64::from(length & 0xffff),
    )
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// CRC32c (Castagnoli polynomial, reflected, as SCTP and iSCSI use it) of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    !crc32c_update(!0, data)
}

/// Feeds `data` into a running CRC32c register (start with `!0`, complement at the end).
pub(crate) fn crc32c_update(mut crc: u32, data: &[u8]) -> u32 {
    for &byte in data {
        crc = CRC32C_TABLE[usize::from(crc as u8 ^ byte)] ^ (crc >> 8);
    }
    crc
}

/// The reflected Castagnoli polynomial 0x1EDC6F41.
const CRC32C_POLY: u32 = 0x82f6_3b78;

/// CRC32c of each byte value, computed at compile time.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ CRC32C_POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071, section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&bytes), 0xddf2);
        assert_eq!(!data(&bytes), 0x220d);
        // Any split at an even offset combines to the same sum.
        for split in (0..=bytes.len()).step_by(2) {
            let (a, b) = bytes.split_at(split);
            assert_eq!(combine(&[data(a), data(b)]), 0xddf2);
        }
    }

    #[test]
    fn odd_lengths_pad_the_last_byte() {
        assert_eq!(data(&[]), 0);
        assert_eq!(data(&[0xab]), 0xab00);
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        // 0xffff + 0x0001 wraps around to 0x0001.
        assert_eq!(data(&[0xff, 0xff, 0x00, 0x01]), 0x0001);
    }

    /// The straightforward 16-bit definition the fast version must agree with.
    fn reference(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in bytes.chunks(2) {
            sum += u32::from(pair[0]) << 8 | u32::from(pair.get(1).copied().unwrap_or(0));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn matches_the_16_bit_definition() {
        let bytes: Vec<u8> = (0..1031u32).map(|i| (i * 151 + 7) as u8).collect();
        for len in 0..bytes.len() {
            assert_eq!(
                data(&bytes[..len]),
                reference(&bytes[..len]),
                "length {len}"
            );
        }
        let ones = [0xff; 100];
        assert_eq!(data(&ones), reference(&ones));
    }

    #[test]
    fn ipv4_header_known_value() {
        // A well-known IPv4 header (192.168.0.1 -> 192.168.0.199, UDP) whose checksum is b861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(data(&header), 0xffff);
        let mut zeroed = header;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(!data(&zeroed), 0xb861);
    }

    #[test]
    fn pseudo_header_words() {
        let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let dst = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        // 0a00 + 0001 + 0a00 + 0002 + 0006 + 0014
        assert_eq!(
            pseudo_header(&src, &dst, IpProtocol::TCP, 20),
            0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 0x0006 + 0x0014
        );
        let src = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
        let dst = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2));
        // fe80 + 0001 + fe80 + 0002 + 0011, and a 32-bit length counts as its two 16-bit
        // halves 0001 + 0002: 1fd17, folded fd18.
        assert_eq!(
            pseudo_header(&src, &dst, IpProtocol::UDP, 0x0001_0002),
            0xfd18
        );
    }

    #[test]
    fn crc32c_known_values() {
        // The standard check value.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        // RFC 3720, appendix B.4.
        assert_eq!(crc32c(&[0; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xff; 32]), 0x62a8_ab43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46dd_794e);
        let descending: Vec<u8> = (0..32).rev().collect();
        assert_eq!(crc32c(&descending), 0x113f_db5c);
        assert_eq!(crc32c(&[]), 0);
    }

    #[test]
    fn crc32c_runs_in_pieces() {
        let bytes = b"The quick brown fox jumps over the lazy dog";
        let (a, b) = bytes.split_at(17);
        assert_eq!(!crc32c_update(crc32c_update(!0, a), b), crc32c(bytes));
    }
}
