//! Captures for the tests: a few TCP and UDP flows as Ethernet/IPv4 packets, written as a
//! classic pcap file that softflowd replays. Shared with the fleet manager's end-to-end
//! collector test.
#![allow(dead_code)]

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// TCP's protocol number.
pub const TCP: u8 = 6;
/// UDP's protocol number.
pub const UDP: u8 = 17;

/// One packet of the capture.
pub struct Packet {
    /// Milliseconds after the capture's start.
    pub at_ms: u32,
    /// Source address and port.
    pub src: (Ipv4Addr, u16),
    /// Destination address and port.
    pub dst: (Ipv4Addr, u16),
    /// IP protocol.
    pub protocol: u8,
    /// Payload bytes.
    pub payload: usize,
}

impl Packet {
    /// The IPv4 total length, what NetFlow counts as bytes.
    pub fn ip_len(&self) -> usize {
        20 + if self.protocol == TCP { 20 } else { 8 } + self.payload
    }

    /// The Ethernet frame.
    pub fn frame(&self) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(self.ip_len() as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0x40, 0, 64, self.protocol, 0, 0]);
        ip.extend_from_slice(&self.src.0.octets());
        ip.extend_from_slice(&self.dst.0.octets());
        let checksum = internet_checksum(&ip);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&self.src.1.to_be_bytes());
        f.extend_from_slice(&self.dst.1.to_be_bytes());
        if self.protocol == TCP {
            // seq, ack, data offset 5, flags PSH|ACK, window, checksum, urgent
            f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        } else {
            f.extend_from_slice(&((8 + self.payload) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
        }
        f.resize(f.len() + self.payload, b'x');
        f
    }
}

fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A classic pcap file (microsecond timestamps, Ethernet link type).
pub fn write_pcap(path: &Path, start: Duration, packets: &[Packet]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for p in packets {
        let at = start + Duration::from_millis(u64::from(p.at_ms));
        let frame = p.frame();
        out.extend_from_slice(&(at.as_secs() as u32).to_le_bytes());
        out.extend_from_slice(&at.subsec_micros().to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&out))
        .expect("write the capture");
}

/// Three flows: a TCP session with traffic both ways, a UDP query and answer, one-way UDP.
/// Clients (10.1/16) sort below servers (10.2/16): softflowd's biflows put the lower
/// address first, so they start with the client as ours do.
pub fn capture() -> Vec<Packet> {
    let client = |last: u8, port| (Ipv4Addr::new(10, 1, 0, last), port);
    let server = |last: u8, port| (Ipv4Addr::new(10, 2, 0, last), port);
    let p = |at_ms, src, dst, protocol, payload| Packet {
        at_ms,
        src,
        dst,
        protocol,
        payload,
    };
    let (c1, s1) = (client(1, 40000), server(1, 443));
    let (c2, s2) = (client(2, 5353), server(2, 53));
    let (c3, s3) = (client(3, 1000), server(3, 2000));
    vec![
        p(0, c1, s1, TCP, 0),
        p(250, s1, c1, TCP, 0),
        p(500, c1, s1, TCP, 120),
        p(750, c2, s2, UDP, 30),
        p(1000, s1, c1, TCP, 1400),
        p(1100, s2, c2, UDP, 90),
        p(1500, c3, s3, UDP, 10),
        p(1750, c1, s1, TCP, 0),
        p(2000, c3, s3, UDP, 20),
        p(2500, c3, s3, UDP, 30),
    ]
}
