//! `parse_frame` ns/packet on the three shapes the fast path sees most: IPv4 TCP, IPv4 UDP
//! behind a VLAN tag, IPv6 TCP behind one extension header; each alone, then the mix.
//!
//! Run with `cargo bench -p palisade-wire --bench parse`. Before timing, every frame is
//! parsed once and checked, so the figures are never those of a wrong answer.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palisade_wire::{IpProtocol, L4, PacketBuilder, parse_frame, tcp, udp, vlan};

/// The frames, each with its name and the destination port parse_frame must find.
fn frames() -> Vec<(&'static str, Vec<u8>, u16)> {
    let payload = [0xab; 64];
    let v4_src = Ipv4Addr::new(10, 0, 0, 1);
    let v4_dst = Ipv4Addr::new(10, 0, 0, 2);
    let v6_src: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let v6_dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
    let tcp = tcp::Repr {
        src_port: 40000,
        dst_port: 443,
        seq_number: 1,
        ack_number: 1,
        flags: tcp::Flags::ACK | tcp::Flags::PSH,
        window_len: 512,
        options: &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
        payload: &payload,
        ..Default::default()
    };
    let udp = udp::Repr {
        src_port: 40001,
        dst_port: 53,
        payload: &payload,
    };
    let dest_opts: &[(IpProtocol, &[u8])] =
        &[(IpProtocol::DESTINATION_OPTIONS, &[1, 4, 0, 0, 0, 0])];
    let builders = [
        (
            "ipv4_tcp",
            PacketBuilder::ipv4(v4_src, v4_dst).tcp(tcp),
            443,
        ),
        (
            "vlan_ipv4_udp",
            PacketBuilder::ipv4(v4_src, v4_dst)
                .vlans(vlan::Tags::one(vlan::Tag::c_tag(100)))
                .udp(udp),
            53,
        ),
        (
            "ipv6_ext_tcp",
            PacketBuilder::ipv6(v6_src, v6_dst)
                .extension_headers(dest_opts)
                .tcp(tcp),
            443,
        ),
    ];
    builders
        .into_iter()
        .map(|(name, builder, port)| {
            let mut frame = vec![0; builder.frame_len()];
            builder.emit(&mut frame).expect("a valid frame");
            (name, frame, port)
        })
        .collect()
}

/// Parses `frame` and returns its destination port, so the work cannot be optimized away.
fn dst_port(frame: &[u8]) -> u16 {
    match parse_frame(frame) {
        Ok(parsed) => parsed
            .ip
            .and_then(|ip| ip.ports())
            .map_or(0, |(_, dst)| dst),
        Err(_) => 0,
    }
}

fn bench_parse(c: &mut Criterion) {
    let frames = frames();
    for (name, frame, port) in &frames {
        let parsed = parse_frame(frame).expect("the benchmark frames parse");
        let ip = parsed.ip.expect("an IP packet");
        assert!(
            matches!(ip.l4, Some(L4::Tcp { .. } | L4::Udp { .. })),
            "{name}"
        );
        assert_eq!(dst_port(frame), *port, "{name}");
    }

    let mut group = c.benchmark_group("parse_frame");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    for (name, frame, _) in &frames {
        group.bench_function(*name, |b| b.iter(|| dst_port(black_box(frame))));
    }
    // The mix: one of each per iteration, so the branch predictor cannot settle on one shape.
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.bench_function("mix", |b| {
        b.iter(|| {
            frames
                .iter()
                .map(|(_, frame, _)| u32::from(dst_port(black_box(frame))))
                .sum::<u32>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
