//! Real Ethernet/IPv4/UDP frames for the port tests (loopback addresses: they never leave
//! the process).

/// A UDP datagram from 127.0.0.1:4000 to 127.0.0.2:5000 whose payload starts with `seq`,
/// `payload_len` bytes in all (at least 4), with a valid IPv4 header checksum.
pub fn udp_frame(seq: u32, payload_len: usize) -> Vec<u8> {
    assert!(payload_len >= 4);
    let mut f = Vec::with_capacity(14 + 20 + 8 + payload_len);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // dst MAC
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // src MAC
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = u16::try_from(20 + 8 + payload_len).expect("fits");
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = 64; // ttl
    ip[9] = 17; // udp
    ip[12..16].copy_from_slice(&[127, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[127, 0, 0, 2]);
    let sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    let checksum = !u16::try_from((folded & 0xffff) + (folded >> 16)).expect("folded");
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&4000u16.to_be_bytes());
    f.extend_from_slice(&5000u16.to_be_bytes());
    f.extend_from_slice(&(total - 20).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend((4..payload_len).map(|i| i as u8));
    f
}
