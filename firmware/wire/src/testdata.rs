//! Known-good frames shared by the tests. Each was written by hand and read back with tshark,
//! which found every field as described and every checksum correct. MAC addresses are
//! 02:00:00:00:00:01 -> 02:00:00:00:00:02, the [`PacketBuilder`](crate::PacketBuilder)
//! defaults; IPv4 headers have TTL 64, identification 0 and no flags.

/// 10.0.0.1:49152 -> 10.0.0.2:80 TCP SYN, seq 1, window 64240, MSS 1460 option.
pub(crate) const IPV4_TCP_SYN: &str = "020000000002020000000001080045000\
    02c00000000400666ca0a0000010a000002c000005000000001000000006002faf0c8e10000020405b4";

/// VLAN 100 (priority 3), 192.0.2.1:5353 -> 192.0.2.53:53 UDP, payload "hello".
pub(crate) const VLAN_IPV4_UDP: &str = "0200000000020200000000018100606408004500002100000000\
    4011f695c0000201c000023514e90035000d22ad68656c6c6f";

/// QinQ (802.1ad VLAN 10, 802.1Q VLAN 20), 2001:db8::1 -> 2001:db8::2, hop limit 64, a
/// hop-by-hop header with a router alert, ICMPv6 echo request id 0x1234 seq 1 "abcd".
pub(crate) const QINQ_IPV6_HBH_ICMPV6: &str = "02000000000202000000000188a8000a8100001486dd\
    600000000014004020010db800000000000000000000000120010db8000000000000000000000002\
    3a0005020000010080004d481234000161626364";

/// 10.0.0.1:5000 -> 10.0.0.2:38412 SCTP INIT, initiate tag 0x11223344.
pub(crate) const IPV4_SCTP_INIT: &str = "020000000002020000000001080045000034000000004084\
    66440a0000010a0000021388960c00000000ff3f4f9b010000141122334400010000000affff00000001";

/// 10.0.0.1 -> 10.0.0.2 ICMP echo request id 0x1234 seq 1 "abcd".
pub(crate) const IPV4_ICMP_ECHO: &str =
    "02000000000202000000000108004500002000000000400166db0a0000010a000002080021041234000161626364";

/// Decodes a hex string (whitespace ignored).
pub(crate) fn bytes(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => panic!("not a hex digit: {}", b as char),
        })
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits
        .chunks(2)
        .map(|pair| pair[0] << 4 | pair[1])
        .collect()
}
