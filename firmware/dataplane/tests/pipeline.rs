//! The pipeline on real frames: sessions make replies pass, denied connections drop,
//! actions and counters, fragments, bad frames, and program switches under traffic (no
//! burst judged by a mix of generations; live sessions judged again).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use palisade_dataplane::pipeline::*;
use palisade_dataplane::session::{EndReason, RecordKind, SessionRecord};
use palisade_program::*;
use palisade_wire::{PacketBuilder, icmpv4, tcp, udp};

const WEB: [u8; 4] = [10, 0, 0, 1];
const APP: [u8; 4] = [10, 0, 0, 2];
const OUT: [u8; 4] = [192, 0, 2, 9];

fn ip(a: [u8; 4]) -> std::net::IpAddr {
    Ipv4Addr::from(a).into()
}

fn rule(
    id: &str,
    direction: Direction,
    endpoints: Vec<u32>,
    remote: Option<u32>,
    port: Option<u16>,
    action: Action,
) -> Rule {
    Rule {
        id: id.into(),
        direction,
        endpoints,
        remote,
        protocol: port.map(|_| Protocol::TCP),
        src_ports: vec![],
        dst_ports: port.map(PortRange::single).into_iter().collect(),
        action,
        log: false,
        audit: false,
        mirror: None,
        redirect: None,
    }
}

/// web (endpoint 1) may open tcp/8080 to app (endpoint 0); both are isolated otherwise.
/// `app_port` changes between generations in the switch test.
fn program(generation: u64, app_port: u16) -> DeviceProgram {
    let mut to_app = rule(
        "app/web-to-app",
        Direction::Egress,
        vec![1],
        Some(0),
        Some(app_port),
        Action::Allow,
    );
    to_app.log = true;
    let from_web = rule(
        "app/app-from-web",
        Direction::Ingress,
        vec![0],
        Some(1),
        Some(app_port),
        Action::Allow,
    );
    let mut inspect = rule(
        "app/web-out-inspected",
        Direction::Egress,
        vec![1],
        Some(2),
        Some(443),
        Action::Allow,
    );
    inspect.redirect = Some("ids".into());
    inspect.mirror = Some("tap".into());
    DeviceProgram::new(ProgramParts {
        format: FORMAT_VERSION,
        device: "dpu-1".into(),
        generation,
        endpoints: vec![
            Endpoint {
                name: "shop/app/eth0".into(),
                addresses: vec![ip(APP)],
            },
            Endpoint {
                name: "shop/web/eth0".into(),
                addresses: vec![ip(WEB)],
            },
        ],
        address_sets: vec![
            AddressSet {
                name: "app".into(),
                prefixes: PrefixSet::from_prefixes([Prefix::host(ip(APP))]),
            },
            AddressSet {
                name: "web".into(),
                prefixes: PrefixSet::from_prefixes([Prefix::host(ip(WEB))]),
            },
            AddressSet {
                name: "out".into(),
                prefixes: PrefixSet::from_prefixes(["192.0.2.0/24".parse().unwrap()]),
            },
        ],
        tiers: vec![Tier {
            kind: TierKind::Application,
            rules: vec![to_app, from_web, inspect],
            defaults: vec![TierDefaults::both(Action::Deny); 2],
        }],
        foreign: Action::Deny,
    })
    .unwrap()
}

fn tcp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: tcp::Flags) -> Vec<u8> {
    let mut buf = vec![0u8; 128];
    let n = PacketBuilder::ipv4(src.into(), dst.into())
        .tcp(tcp::Repr {
            src_port: sport,
            dst_port: dport,
            flags,
            ..Default::default()
        })
        .emit(&mut buf)
        .unwrap();
    buf.truncate(n);
    buf
}

fn pipeline(program: DeviceProgram) -> (Pipeline, Arc<ProgramSlot>) {
    let slot = Arc::new(ProgramSlot::new(Compiled::new(program).unwrap()));
    (
        Pipeline::new(PipelineConfig::default(), Arc::clone(&slot)),
        slot,
    )
}

fn run(
    p: &mut Pipeline,
    frames: &[Vec<u8>],
    now: u64,
    records: &mut Vec<SessionRecord>,
) -> Vec<Outcome> {
    let mut out = Vec::new();
    p.process(frames, now, &mut out, records);
    out
}

#[test]
fn replies_of_allowed_connections_pass_and_denied_ones_drop() {
    let (mut p, _) = pipeline(program(1, 8080));
    let mut records = Vec::new();
    let syn = tcp_frame(WEB, APP, 40000, 8080, tcp::Flags::SYN);
    let syn_ack = tcp_frame(APP, WEB, 8080, 40000, tcp::Flags::SYN | tcp::Flags::ACK);
    let ack = tcp_frame(WEB, APP, 40000, 8080, tcp::Flags::ACK);
    let out = run(&mut p, &[syn, syn_ack, ack], 1, &mut records);
    assert!(
        out.iter().all(|o| o.disposition == Disposition::Forward),
        "{out:?}"
    );
    assert!(out[0].log, "the allowing rule logs the first packet");
    assert_eq!(out[1].way, Some(palisade_dataplane::session::Way::Reply));
    // app may not open connections to web, on any port.
    let out = run(
        &mut p,
        &[tcp_frame(APP, WEB, 50000, 8080, tcp::Flags::SYN)],
        2,
        &mut records,
    );
    assert_eq!(out[0].disposition, Disposition::Drop(DropReason::Denied));
    // ... and its further packets are dropped from the session without classifying again.
    let out = run(
        &mut p,
        &[tcp_frame(APP, WEB, 50000, 8080, tcp::Flags::SYN)],
        3,
        &mut records,
    );
    assert_eq!(out[0].disposition, Disposition::Drop(DropReason::Denied));
    assert_eq!(p.sessions().len(), 2);
    let counters = p.rule_counters();
    let hits = counters[&Arc::<str>::from("app/web-to-app")];
    assert_eq!((hits.connections, hits.packets), (1, 3));
    assert_eq!(
        records
            .iter()
            .filter(|r| r.kind == RecordKind::Start)
            .count(),
        2
    );
    assert_eq!(p.counters().dropped[&DropReason::Denied], 2);
}

#[test]
fn redirect_mirror_udp_icmp_and_non_ip() {
    let (mut p, _) = pipeline(program(1, 8080));
    let mut records = Vec::new();
    let out = run(
        &mut p,
        &[tcp_frame(WEB, OUT, 40001, 443, tcp::Flags::SYN)],
        1,
        &mut records,
    );
    assert_eq!(out[0].disposition, Disposition::Redirect("ids".into()));
    assert_eq!(out[0].mirror.as_deref(), Some("tap"));
    // UDP and ICMP from web are denied by the isolation default.
    let mut buf = vec![0u8; 128];
    let n = PacketBuilder::ipv4(WEB.into(), OUT.into())
        .udp(udp::Repr {
            src_port: 5000,
            dst_port: 53,
            payload: b"q",
        })
        .emit(&mut buf)
        .unwrap();
    let udp = buf[..n].to_vec();
    let n = PacketBuilder::ipv4(WEB.into(), OUT.into())
        .icmpv4(icmpv4::Repr::echo_request(7, 1, b"ping"))
        .emit(&mut buf)
        .unwrap();
    let ping = buf[..n].to_vec();
    // An ARP frame (EtherType 0x0806) and garbage.
    let mut arp = vec![0xff; 6];
    arp.extend([2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend([0u8; 28]);
    let out = run(&mut p, &[udp, ping, arp, vec![1, 2, 3]], 2, &mut records);
    assert_eq!(out[0].disposition, Disposition::Drop(DropReason::Denied));
    assert_eq!(out[1].disposition, Disposition::Drop(DropReason::Denied));
    assert_eq!(out[2].disposition, Disposition::Forward);
    assert_eq!(out[3].disposition, Disposition::Drop(DropReason::Malformed));
    assert_eq!(p.counters().redirected, 1);
    assert_eq!(p.counters().mirrored, 1);
}

#[test]
fn fragments_follow_their_first_fragment() {
    let (mut p, _) = pipeline(program(1, 8080));
    let mut records = Vec::new();
    let payload = [7u8; 100];
    let builder = PacketBuilder::ipv4(WEB.into(), APP.into())
        .ident(99)
        .tcp(tcp::Repr {
            src_port: 40002,
            dst_port: 8080,
            flags: tcp::Flags::ACK,
            payload: &payload,
            ..Default::default()
        });
    let mut buf = vec![0u8; 256];
    let frag = |buf: &mut Vec<u8>, offset, len| {
        let n = builder.emit_fragment(buf, offset, len).unwrap();
        buf[..n].to_vec()
    };
    let first = frag(&mut buf, 0, 64);
    let second = frag(&mut buf, 64, 56);
    let out = run(&mut p, &[first, second.clone()], 1, &mut records);
    assert_eq!(out[0].disposition, Disposition::Forward, "{out:?}");
    assert_eq!(out[1].disposition, Disposition::Forward);
    // A later fragment of an unseen datagram has no ports to judge: dropped.
    let orphan = PacketBuilder::ipv4(APP.into(), WEB.into())
        .ident(5)
        .tcp(tcp::Repr {
            src_port: 1,
            dst_port: 2,
            payload: &payload,
            ..Default::default()
        });
    let n = orphan.emit_fragment(&mut buf, 64, 56).unwrap();
    let out = run(&mut p, &[buf[..n].to_vec()], 2, &mut records);
    assert_eq!(
        out[0].disposition,
        Disposition::Drop(DropReason::OrphanFragment)
    );
}

#[test]
fn a_program_change_revokes_live_sessions() {
    let (mut p, slot) = pipeline(program(1, 8080));
    let mut records = Vec::new();
    let syn = tcp_frame(WEB, APP, 40000, 8080, tcp::Flags::SYN);
    assert_eq!(
        run(&mut p, &[syn], 1, &mut records)[0].disposition,
        Disposition::Forward
    );
    // Generation 2 moves the app to port 9090: the live 8080 connection is no longer allowed.
    slot.install(Compiled::new(program(2, 9090)).unwrap());
    let ack = tcp_frame(WEB, APP, 40000, 8080, tcp::Flags::ACK);
    let out = run(&mut p, &[ack], 2, &mut records);
    assert_eq!(out[0].disposition, Disposition::Drop(DropReason::Revoked));
    assert_eq!(out[0].generation, 2);
    assert!(
        records
            .iter()
            .any(|r| r.kind == RecordKind::End(EndReason::PolicyChange))
    );
    assert_eq!(p.counters().switches, 1);
    // Rule counters keep the old generation's hits.
    assert_eq!(
        p.rule_counters()[&Arc::<str>::from("app/web-to-app")].connections,
        1
    );
}

#[test]
fn no_burst_is_judged_by_a_mix_of_generations() {
    let (mut p, slot) = pipeline(program(1, 8080));
    let stop = Arc::new(AtomicBool::new(false));
    let switcher = {
        let slot = Arc::clone(&slot);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut generation = 1;
            while !stop.load(Ordering::Relaxed) {
                generation += 1;
                // Odd generations allow 8080, even ones 9090.
                let port = if generation % 2 == 1 { 8080 } else { 9090 };
                slot.install(Compiled::new(program(generation, port)).unwrap());
                std::thread::yield_now();
            }
            generation
        })
    };
    let mut records = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..2000u16 {
        // A burst of new connections to both ports (distinct source ports: new sessions).
        let frames: Vec<Vec<u8>> = (0..16u16)
            .map(|i| {
                let dport = if i % 2 == 0 { 8080 } else { 9090 };
                tcp_frame(WEB, APP, 1000 + round % 60 * 16 + i, dport, tcp::Flags::SYN)
            })
            .collect();
        let mut out = Vec::new();
        p.process(&frames, u64::from(round), &mut out, &mut records);
        let generation = out[0].generation;
        assert!(
            out.iter().all(|o| o.generation == generation),
            "round {round}: mixed generations"
        );
        seen.insert(generation);
        for (i, o) in out.iter().enumerate() {
            let allowed_port = if generation % 2 == 1 { 8080 } else { 9090 };
            let port = if i % 2 == 0 { 8080 } else { 9090 };
            let forwarded = o.disposition == Disposition::Forward;
            // Sessions reopened from an earlier round are judged again under this burst's
            // generation too, so every verdict follows this generation's program.
            assert_eq!(
                forwarded,
                port == allowed_port,
                "round {round} packet {i}: {o:?} under generation {generation}"
            );
            if !forwarded {
                assert!(
                    matches!(
                        o.disposition,
                        Disposition::Drop(DropReason::Denied | DropReason::Revoked)
                    ),
                    "{o:?}"
                );
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let last = switcher.join().unwrap();
    assert!(
        seen.len() > 1 && last > 2,
        "the program really changed during traffic ({} generations seen)",
        seen.len()
    );
}
