//! `parse_frame` on arbitrary bytes: it must return, never panic, and what it returns must
//! hold together (offsets in order and inside the frame, an error at an offset inside the
//! frame). The transport bytes it finds also go through the matching `Repr::parse`, which
//! must not panic either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_wire::{L4, icmpv4, icmpv6, parse_frame, sctp, tcp, udp};

fuzz_target!(|frame: &[u8]| {
    let parsed = match parse_frame(frame) {
        Ok(parsed) => parsed,
        Err(err) => {
            assert!(err.offset() <= frame.len(), "{err}");
            let _ = err.to_string();
            return;
        }
    };
    assert!(parsed.l3_offset <= frame.len());
    let Some(ip) = parsed.ip else {
        return;
    };
    let end = parsed.l3_offset + ip.total_len;
    assert!(end <= frame.len());
    assert!(parsed.l3_offset < ip.l4_offset);
    assert!(ip.l4_offset <= ip.payload_offset && ip.payload_offset <= end);
    if ip.fragment.is_some_and(|f| !f.is_first()) {
        assert!(ip.l4.is_none());
    }
    let segment = &frame[ip.l4_offset..end];
    let (src, dst) = (&ip.src, &ip.dst);
    match ip.l4 {
        Some(L4::Tcp { .. }) => {
            let _ = tcp::Repr::parse(&tcp::Packet::new_unchecked(segment), src, dst);
        }
        Some(L4::Udp { .. }) => {
            let _ = udp::Repr::parse(&udp::Packet::new_unchecked(segment), src, dst);
        }
        Some(L4::Sctp { .. }) => {
            let _ = sctp::Repr::parse(&sctp::Packet::new_unchecked(segment));
        }
        Some(L4::Icmpv4 { .. }) => {
            let _ = icmpv4::Repr::parse(&icmpv4::Packet::new_unchecked(segment));
        }
        Some(L4::Icmpv6 { .. }) => {
            let _ = icmpv6::Repr::parse(&icmpv6::Packet::new_unchecked(segment), src, dst);
        }
        None => assert_eq!(ip.l4_offset, ip.payload_offset),
    }
});
