//! `pipeline` benchmark (shared/design/BENCHMARKS.md): the whole dataplane on one core —
//! rx burst -> parse -> session lookup -> classify on a miss -> act -> tx burst — on a
//! net_ring port, with a 10,000-rule device program and 1,000,000 live sessions, against
//! `dpdk-testpmd --forward-mode=io` (the "do nothing" limit) on the same vdev in the same
//! run (interleaved, median of 5).
//!
//! Traffic: frames of established sessions circulate through the ring; in every burst a
//! tenth get a fresh source port, so they open new sessions (classification, session
//! creation and, the table being full, eviction). Correctness first: sampled verdicts must
//! equal the reference interpreter's. Also measured: flow setups per second (every packet a
//! new connection) and the compiled classifier alone (rows, memory, build time,
//! first-packet judgements per second).
//!
//! Then the same pipeline over `net_af_packet` ports on the two ends of a veth pair (frames
//! forwarded end to end, as testpmd's paired topology does), against testpmd io-forwarding
//! over `net_af_packet` ports on a second veth pair (so that neither side's sockets see the
//! other's frames), 32 frames started on each port by both: there the kernel's AF_PACKET
//! I/O is the "do nothing" limit. Needs root for the veth pairs; says so and goes on
//! without when it cannot make them. Our side runs on lcore 1, the lcore testpmd forwards
//! on (lcore 0 also takes the machine's interrupts; one quick run there was ~20% slower).
//!
//! Run: `cargo bench -p vrouter --features dpdk --bench pipeline` (`-- --quick`: smaller).
//! Results: a table on stdout and JSON lines in `target/bench/pipeline.jsonl`.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_dataplane::pipeline::{
    Compiled, Disposition, Outcome, Pipeline, PipelineConfig, ProgramSlot,
};
use palisade_dataplane::session::{NullSink, SessionConfig};
use palisade_dpdk::{Eal, Mbuf, Mempool, MempoolConfig, Port, PortConfig, Vdev};
use palisade_program::*;
use palisade_wire::{PacketBuilder, tcp};

#[path = "../../dpdk/benches/support/peer.rs"]
mod peer;
use peer::{cpu, median, testpmd, testpmd_mode, testpmd_on, testpmd_version};

const BURST: usize = 32;
const CIRCULATING: usize = 512;
const ENDPOINTS: u32 = 64;

/// splitmix64: the same program and traffic every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn local(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0001 + (i << 8))
}

fn remote(r: &mut Rng) -> Ipv4Addr {
    Ipv4Addr::from(0xac10_0000 | (r.next() as u32 & 0x000f_ffff))
}

/// 10,000 rules: egress from subsets of 64 local endpoints to remote sets, on ports
/// 1000-1999; all traffic of the benchmark goes to port 443, allowed by the last rule
/// (every packet's classification walks past the others).
fn program(rules: usize) -> DeviceProgram {
    let mut rng = Rng(42);
    let sets = 256;
    let address_sets = (0..sets)
        .map(|s| AddressSet {
            name: format!("set{s}"),
            prefixes: PrefixSet::from_prefixes(
                (0..8).map(|_| Prefix::truncating(IpAddr::V4(remote(&mut rng)), 24)),
            ),
        })
        .collect();
    let mut list: Vec<Rule> = (0..rules - 1)
        .map(|j| Rule {
            id: format!("r{j}"),
            direction: if j % 2 == 0 {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            endpoints: (0..ENDPOINTS)
                .filter(|e| (e + j as u32).is_multiple_of(4))
                .collect(),
            remote: Some((j % sets) as u32),
            protocol: Some(Protocol::TCP),
            src_ports: vec![],
            dst_ports: vec![PortRange::single(1000 + (j % 1000) as u16)],
            action: if j % 3 == 0 {
                Action::Deny
            } else {
                Action::Allow
            },
            log: false,
            audit: false,
            mirror: None,
            redirect: None,
        })
        .collect();
    list.push(Rule {
        id: "https-out".into(),
        direction: Direction::Egress,
        endpoints: (0..ENDPOINTS).collect(),
        remote: None,
        protocol: Some(Protocol::TCP),
        src_ports: vec![],
        dst_ports: vec![PortRange::single(443)],
        action: Action::Allow,
        log: false,
        audit: false,
        mirror: None,
        redirect: None,
    });
    DeviceProgram::new(ProgramParts {
        format: FORMAT_VERSION,
        device: "bench".into(),
        generation: 1,
        endpoints: (0..ENDPOINTS)
            .map(|i| Endpoint {
                name: format!("p/w{i:02}/eth0"),
                addresses: vec![IpAddr::V4(local(i))],
            })
            .collect(),
        address_sets,
        tiers: vec![Tier {
            kind: TierKind::Application,
            rules: list,
            defaults: vec![TierDefaults::both(Action::Deny); ENDPOINTS as usize],
        }],
        foreign: Action::Deny,
    })
    .unwrap()
}

fn frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let mut buf = vec![0u8; 128];
    let n = PacketBuilder::ipv4(src, dst)
        .tcp(tcp::Repr {
            src_port: sport,
            dst_port: dport,
            flags: tcp::Flags::ACK,
            ..Default::default()
        })
        .emit(&mut buf)
        .unwrap();
    buf.truncate(n);
    buf
}

/// Offset of the TCP source port in our frames (Ethernet + 20-byte IPv4 header).
const SPORT: usize = 14 + 20;

/// Frames forwarded for `duration` along `routes` ((from, to) port indices, taken in
/// turn): `[(0, 0)]` circulates through one net_ring port (what goes out comes back in),
/// `[(0, 1), (1, 0)]` between the two ends of a veth pair (testpmd's paired topology):
/// packets/s forwarded.
fn run(
    ports: &mut [Port],
    routes: &[(usize, usize)],
    pipeline: &mut Pipeline,
    burst: &mut Vec<Mbuf>,
    duration: Duration,
    fresh: &mut u16,
) -> f64 {
    let start = Instant::now();
    let mut packets = 0u64;
    let mut outcomes = Vec::with_capacity(BURST);
    while start.elapsed() < duration {
        for _ in 0..256 {
            for &route in routes {
                packets += step(ports, route, pipeline, burst, &mut outcomes, start, fresh);
            }
        }
    }
    packets as f64 / start.elapsed().as_secs_f64()
}

/// One burst received on `ports[from]` through the pipeline (a tenth of its frames given a
/// fresh source port: new connections), the forwarded frames sent out of `ports[to]`: how
/// many.
fn step(
    ports: &mut [Port],
    (from, to): (usize, usize),
    pipeline: &mut Pipeline,
    burst: &mut Vec<Mbuf>,
    outcomes: &mut Vec<Outcome>,
    started: Instant,
    fresh: &mut u16,
) -> u64 {
    if ports[from].rx_burst(0, burst) == 0 {
        return 0;
    }
    for m in burst.iter_mut().step_by(10) {
        *fresh = fresh.wrapping_add(1).max(1024);
        m.data_mut()[SPORT..SPORT + 2].copy_from_slice(&fresh.to_be_bytes());
    }
    outcomes.clear();
    pipeline.process(
        burst,
        started.elapsed().as_nanos() as u64,
        outcomes,
        &mut NullSink,
    );
    let mut forward = outcomes
        .iter()
        .map(|o| o.disposition == Disposition::Forward);
    burst.retain(|_| forward.next().unwrap_or(false));
    let n = burst.len() as u64;
    ports[to].tx_burst(0, burst);
    burst.clear();
    n
}

/// A veth pair, up, deleted when dropped.
struct Veth([String; 2]);

impl Veth {
    fn create(a: &str, b: &str) -> Result<Veth, String> {
        let ip = |args: &[&str]| -> Result<(), String> {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("ip: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        let _ = ip(&["link", "del", a]);
        ip(&["link", "add", a, "type", "veth", "peer", "name", b])?;
        let veth = Veth([a.to_owned(), b.to_owned()]);
        for end in [a, b] {
            // No IPv6 router solicitations or DAD among the measured frames.
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{end}/disable_ipv6"), "1");
            ip(&["link", "set", end, "up"])?;
        }
        Ok(veth)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0[0]])
            .output();
    }
}

/// The same pipeline and traffic over net_af_packet ports on a veth pair, against testpmd
/// io-forwarding over net_af_packet ports on another veth pair (so that neither side's
/// sockets see the other's frames), 32 frames started on each port by both: rounds of
/// (ours, testpmd) in packets/s.
fn af_packet_rounds(
    eal: &Eal,
    pool: &Mempool,
    pipeline: &mut Pipeline,
    frames: &[Vec<u8>],
    rounds: usize,
    seconds: u64,
    fresh: &mut u16,
) -> Result<(Vec<f64>, Vec<f64>), String> {
    let id = std::process::id() % 10_000;
    let ours = Veth::create(&format!("pbo{id}a"), &format!("pbo{id}b"))?;
    let theirs = Veth::create(&format!("pbt{id}a"), &format!("pbt{id}b"))?;
    let mut ports = Vec::new();
    for (end, instance) in ours.0.iter().zip(["pa", "pb"]) {
        let vdev = Vdev::AfPacket {
            iface: end,
            queue_pairs: 1,
        };
        let id = vdev.create(eal, instance).map_err(|e| e.to_string())?;
        let mut port = Port::configure(id, &PortConfig::new(*pool)).map_err(|e| e.to_string())?;
        port.start().map_err(|e| e.to_string())?;
        ports.push(port);
    }
    let mut ports: [Port; 2] = ports.try_into().map_err(|_| "two ports".to_owned())?;
    let mut burst: Vec<Mbuf> = Vec::with_capacity(BURST);
    for (port, frames) in ports.iter_mut().zip(frames.chunks(BURST)) {
        for f in frames {
            let mut m = pool.alloc().ok_or("no mbuf")?;
            m.append(f).map_err(|e| e.to_string())?;
            burst.push(m);
        }
        port.tx_burst(0, &mut burst);
        burst.clear();
    }
    run(
        &mut ports,
        &[(0, 1), (1, 0)],
        pipeline,
        &mut burst,
        Duration::from_millis(300),
        fresh,
    );
    let vdevs: Vec<String> = theirs
        .0
        .iter()
        .enumerate()
        .map(|(k, end)| format!("net_af_packet{k},iface={end}"))
        .collect();
    let vdevs: Vec<&str> = vdevs.iter().map(String::as_str).collect();
    let (mut us, mut them) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        us.push(run(
            &mut ports,
            &[(0, 1), (1, 0)],
            pipeline,
            &mut burst,
            Duration::from_secs(seconds),
            fresh,
        ));
        them.push(testpmd_on("io", &vdevs, "paired", seconds)?);
        eprintln!("af_packet round {}/{rounds} done", round + 1);
    }
    Ok((us, them))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, seconds, sessions, rules) = if quick {
        (3, 1, 100_000, 1000)
    } else {
        (5, 2, 1_000_000, 10_000)
    };
    let program = program(rules);
    // The compiled classifier on its own: size, build time, first-packet judgements/s.
    let classifier_line = {
        let t = Instant::now();
        let pc = palisade_classifier::ProgramClassifier::new(program.clone()).unwrap();
        let build = t.elapsed();
        let mut rng = Rng(99);
        let packets: Vec<Packet> = (0..200_000u32)
            .map(|k| Packet {
                src: IpAddr::V4(local(k % ENDPOINTS)),
                dst: IpAddr::V4(remote(&mut rng)),
                protocol: Protocol::TCP,
                src_port: 30000,
                dst_port: if k % 2 == 0 {
                    443
                } else {
                    1000 + (rng.next() % 1000) as u16
                },
            })
            .collect();
        let t = Instant::now();
        let allowed = packets.iter().filter(|p| pc.judge(p).allowed).count();
        let rate = packets.len() as f64 / t.elapsed().as_secs_f64();
        format!(
            "classifier: {} rows, {:.1} MB, built in {:.0} ms; {:.2} M judgements/s ({} of {} allowed)",
            pc.rows(),
            pc.memory_bytes() as f64 / 1e6,
            build.as_secs_f64() * 1e3,
            rate / 1e6,
            allowed,
            packets.len()
        )
    };

    // Correctness first: sampled verdicts equal the reference interpreter's.
    let compiled = Compiled::new(program.clone()).unwrap();
    let mut rng = Rng(7);
    let mut check = Pipeline::new(
        PipelineConfig::default(),
        Arc::new(ProgramSlot::new(Compiled::new(program.clone()).unwrap())),
    );
    for k in 0..5000u32 {
        let (src, dst) = (local(k % ENDPOINTS), remote(&mut rng));
        let dport = if k % 2 == 0 {
            443
        } else {
            1000 + (rng.next() % 1000) as u16
        };
        let f = frame(src, dst, 30000 + (k % 30000) as u16, dport);
        let mut out = Vec::new();
        check.process(&[f], 0, &mut out, &mut NullSink);
        let want = program.evaluate(&Packet {
            src: src.into(),
            dst: dst.into(),
            protocol: Protocol::TCP,
            src_port: 30000 + (k % 30000) as u16,
            dst_port: dport,
        });
        assert_eq!(
            out[0].disposition == Disposition::Forward,
            want.allowed,
            "packet {k}"
        );
    }
    drop(compiled);

    let config = PipelineConfig {
        sessions: SessionConfig {
            max_sessions: sessions,
            ..SessionConfig::default()
        },
        ..PipelineConfig::default()
    };
    let slot = Arc::new(ProgramSlot::new(Compiled::new(program).unwrap()));
    let mut pipeline = Pipeline::new(config, Arc::clone(&slot));

    // Flow setups per second: every frame a new connection, until the table is full.
    let setup_frames: Vec<Vec<u8>> = (0..sessions as u32)
        .map(|k| {
            frame(
                local(k % ENDPOINTS),
                Ipv4Addr::from(0xac10_0000 | (k >> 6)),
                1024 + (k % 60000) as u16,
                443,
            )
        })
        .collect();
    let started = Instant::now();
    let mut out = Vec::with_capacity(BURST);
    for chunk in setup_frames.chunks(BURST) {
        out.clear();
        pipeline.process(
            chunk,
            started.elapsed().as_nanos() as u64,
            &mut out,
            &mut NullSink,
        );
    }
    let setups = sessions as f64 / started.elapsed().as_secs_f64();
    assert_eq!(
        pipeline.sessions().len(),
        sessions,
        "every setup frame opened a session"
    );

    let eal = Eal::init(Eal::SOFTWARE_ONLY.iter().chain(&["-l", "1"])).expect("EAL");
    let pool = Mempool::create(
        eal,
        "bench",
        &MempoolConfig {
            capacity: 4095,
            ..MempoolConfig::default()
        },
    )
    .expect("pool");
    let id = Vdev::Ring.create(eal, "pipe").expect("net_ring vdev");
    let mut port = Port::configure(id, &PortConfig::new(pool)).expect("configure");
    port.start().expect("start");
    // Frames of established sessions circulate.
    let mut burst: Vec<Mbuf> = Vec::with_capacity(BURST);
    for frames in setup_frames.chunks(BURST).take(CIRCULATING / BURST) {
        for f in frames {
            let mut m = pool.alloc().expect("mbuf");
            m.append(f).expect("room");
            burst.push(m);
        }
        assert_eq!(port.tx_burst(0, &mut burst), frames.len());
        burst.clear();
    }
    // Frames of other established sessions for the net_af_packet variant.
    let pair_frames = setup_frames[CIRCULATING..CIRCULATING + 2 * BURST].to_vec();
    drop(setup_frames);

    let mut fresh = 1024u16;
    run(
        std::slice::from_mut(&mut port),
        &[(0, 0)],
        &mut pipeline,
        &mut burst,
        Duration::from_millis(300),
        &mut fresh,
    );
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    let mut peer_error = None;
    for round in 0..rounds {
        ours.push(run(
            std::slice::from_mut(&mut port),
            &[(0, 0)],
            &mut pipeline,
            &mut burst,
            Duration::from_secs(seconds),
            &mut fresh,
        ));
        if peer_error.is_none() {
            match testpmd(seconds) {
                Ok(pps) => peer.push(pps),
                Err(e) => peer_error = Some(e),
            }
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }
    let ours = median(ours);
    let peer = (!peer.is_empty()).then(|| median(peer));
    let c = pipeline.sessions().counters();
    println!(
        "\npipeline: net_ring, one core, {rules} rules, {sessions} sessions, 1 in 10 packets a new connection; median of {rounds} x {seconds} s"
    );
    println!("cpu: {}; DPDK {}", cpu(), testpmd_version());
    println!("{:<34} {:>10}", "", "Mpps");
    println!("{:<34} {:>10.2}", "palisade pipeline", ours / 1e6);
    match (peer, &peer_error) {
        (Some(p), _) => {
            println!("{:<34} {:>10.2}", "dpdk-testpmd --forward-mode=io", p / 1e6);
            println!("ratio pipeline / testpmd: {:.3}", ours / p);
        }
        (None, Some(e)) => println!("dpdk-testpmd: not measured: {e}"),
        (None, None) => {}
    }
    // Context: testpmd modes that touch every packet (net_ring io-forward only moves pointers).
    for mode in ["macswap", "csum"] {
        if let Ok(pps) = testpmd_mode(mode, seconds) {
            println!(
                "{:<34} {:>10.2}  (ratio {:.3})",
                format!("dpdk-testpmd --forward-mode={mode}"),
                pps / 1e6,
                ours / pps
            );
        }
    }
    // The same over net_af_packet (root: veth pairs); the kernel's AF_PACKET I/O is then the
    // "do nothing" limit.
    let pair = af_packet_rounds(
        eal,
        &pool,
        &mut pipeline,
        &pair_frames,
        rounds,
        seconds,
        &mut fresh,
    );
    let pair = match pair {
        Ok((us, them)) => {
            let (us, them) = (median(us), median(them));
            println!(
                "\nnet_af_packet on a veth pair (both ends ports, frames forwarded end to end, 32 \
                 started on each; testpmd on its own pair):"
            );
            println!("{:<34} {:>10.3}", "palisade pipeline", us / 1e6);
            println!(
                "{:<34} {:>10.3}",
                "dpdk-testpmd --forward-mode=io",
                them / 1e6
            );
            println!("ratio pipeline / testpmd: {:.3}", us / them);
            Some((us, them))
        }
        Err(e) => {
            println!("net_af_packet: not measured: {e}");
            None
        }
    };
    println!(
        "flow setups: {:.0}/s; sessions created {}, evicted {}",
        setups, c.created, c.evicted
    );
    println!("{classifier_line}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("pipeline.jsonl"))
        .unwrap();
    writeln!(
        f,
        "{{\"bench\":\"pipeline\",\"rules\":{rules},\"sessions\":{sessions},\"pps\":{ours:.0},\"testpmd_pps\":{},\"ratio\":{},\"af_packet_pps\":{},\"af_packet_testpmd_pps\":{},\"flow_setups_per_s\":{setups:.0},\"rounds\":{rounds},\"cpu\":\"{}\"}}",
        peer.map_or("null".into(), |p| format!("{p:.0}")),
        peer.map_or("null".into(), |p| format!("{:.4}", ours / p)),
        pair.map_or("null".into(), |(us, _)| format!("{us:.0}")),
        pair.map_or("null".into(), |(_, them)| format!("{them:.0}")),
        cpu()
    )
    .unwrap();
}
