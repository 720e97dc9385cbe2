//! `vrouter run` as a real process: a bump in the wire between two veth pairs enforcing a
//! device program on frames injected through raw sockets (root only; CI runs as root), and
//! a DPDK port whose PMD has no rte_flow falling back to software.

use std::io::Read;
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palisade_ports::{AfPacketPort, Port};
use palisade_program::*;
use palisade_wire::{PacketBuilder, parse_frame, tcp};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// web (10.0.0.1) is local; it may open tcp/8080 to 10.0.0.2 and nothing else, and nobody
/// may open connections to it.
fn program() -> DeviceProgram {
    DeviceProgram::new(ProgramParts {
        format: FORMAT_VERSION,
        device: "dpu-t".into(),
        generation: 4,
        endpoints: vec![Endpoint {
            name: "p/web/eth0".into(),
            addresses: vec![ip("10.0.0.1")],
        }],
        address_sets: vec![AddressSet {
            name: "app".into(),
            prefixes: PrefixSet::from_prefixes([Prefix::host(ip("10.0.0.2"))]),
        }],
        tiers: vec![Tier {
            kind: TierKind::Application,
            rules: vec![Rule {
                id: "app/web-to-app".into(),
                direction: Direction::Egress,
                endpoints: vec![0],
                remote: Some(0),
                protocol: Some(Protocol::TCP),
                src_ports: vec![],
                dst_ports: vec![PortRange::single(8080)],
                action: Action::Allow,
                log: false,
                audit: false,
                mirror: None,
                redirect: None,
            }],
            defaults: vec![TierDefaults::both(Action::Deny)],
        }],
        foreign: Action::Deny,
    })
    .unwrap()
}

struct Links(Vec<String>);

impl Drop for Links {
    fn drop(&mut self) {
        for l in &self.0 {
            let _ = Command::new("ip").args(["link", "del", l]).status();
        }
    }
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

fn syn(src: &str, dst: &str, sport: u16, dport: u16, flags: tcp::Flags) -> Vec<u8> {
    let mut buf = vec![0u8; 128];
    let (IpAddr::V4(s), IpAddr::V4(d)) = (ip(src), ip(dst)) else {
        unreachable!()
    };
    let n = PacketBuilder::ipv4(s, d)
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

/// TCP (sport, dport) pairs of the test's frames seen on a port within `wait`.
fn seen(port: &mut AfPacketPort, wait: Duration) -> Vec<(u16, u16)> {
    let deadline = Instant::now() + wait;
    let (mut got, mut spare, mut out) = (Vec::new(), Vec::new(), Vec::new());
    while Instant::now() < deadline {
        port.recv(64, &mut got, &mut spare).unwrap();
        for f in got.drain(..) {
            if let Ok(p) = parse_frame(&f)
                && let Some(ip) = p.ip
                && let Some(ports) = ip.ports()
                && ip.src.to_string().starts_with("10.0.0.")
            {
                out.push(ports);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    out
}

#[test]
fn a_bump_in_the_wire_enforces_the_program() {
    if !is_root() {
        eprintln!("!!! SKIPPED: not root; the vrouter veth test did not run");
        return;
    }
    let id = std::process::id() % 10000;
    let names: Vec<String> = ["w", "f"].iter().map(|k| format!("vr{id}{k}")).collect();
    let _links = Links(names.iter().map(|n| format!("{n}a")).collect());
    for n in &names {
        let ok = |args: &[&str]| {
            assert!(
                Command::new("ip").args(args).status().unwrap().success(),
                "{args:?}"
            )
        };
        ok(&[
            "link",
            "add",
            &format!("{n}a"),
            "type",
            "veth",
            "peer",
            "name",
            &format!("{n}b"),
        ]);
        for end in ["a", "b"] {
            ok(&["link", "set", &format!("{n}{end}"), "up"]);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.json"),
        serde_json::to_string(&program()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("run.yaml"),
        format!(
            "program: p.json\nprofile: sim-small\nports:\n  - {{name: web, af_packet: {w}b}}\n  - {{name: fabric, af_packet: {f}b}}\nlinks: [[web, fabric]]\n",
            w = names[0],
            f = names[1]
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_vrouter"))
        .args(["run", "--config"])
        .arg(dir.path().join("run.yaml"))
        .args(["--duration", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut vrouter = Kill(child);
    let mut web = AfPacketPort::open(&format!("{}a", names[0])).unwrap();
    let mut fabric = AfPacketPort::open(&format!("{}a", names[1])).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut spare = Vec::new();
    web.send(
        &mut vec![
            syn("10.0.0.1", "10.0.0.2", 40000, 8080, tcp::Flags::SYN),
            syn("10.0.0.1", "10.0.0.2", 40001, 22, tcp::Flags::SYN),
        ],
        &mut spare,
    )
    .unwrap();
    assert_eq!(
        seen(&mut fabric, Duration::from_millis(700)),
        vec![(40000, 8080)],
        "only the allowed SYN crosses"
    );
    fabric
        .send(
            &mut vec![
                syn(
                    "10.0.0.2",
                    "10.0.0.1",
                    8080,
                    40000,
                    tcp::Flags::SYN | tcp::Flags::ACK,
                ),
                syn("10.0.0.2", "10.0.0.1", 50000, 80, tcp::Flags::SYN),
            ],
            &mut spare,
        )
        .unwrap();
    assert_eq!(
        seen(&mut web, Duration::from_millis(700)),
        vec![(8080, 40000)],
        "the reply passes, the new connection does not"
    );
    let _ = vrouter.0.kill();
    let mut out = String::new();
    vrouter
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.contains("vrouter: device dpu-t generation 4"), "{out}");
    assert!(out.contains("1 rules: 1 in hardware"), "{out}");
}

#[cfg(feature = "dpdk")]
#[test]
fn a_pmd_without_rte_flow_falls_back_to_software() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.json"),
        serde_json::to_string(&program()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("run.yaml"),
        "program: p.json\nprofile: connectx-6-dx\nports:\n  - {name: r0, dpdk: net_ring, role: workload}\n  - {name: n0, dpdk: net_null, role: fabric}\nlinks: [[r0, n0]]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vrouter"))
        .args(["run", "--config"])
        .arg(dir.path().join("run.yaml"))
        .args(["--duration", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("port r0: rte_flow refused the offload"),
        "{text}"
    );
    assert!(text.contains("ENOSYS"), "{text}");
    // net_null delivers all-zero frames (EtherType 0, not IP): passed on to the ring, whose
    // frames come back and go to the null port: traffic flowed through the pipeline.
    let stats: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert!(stats["frames"].as_u64().unwrap() > 0, "{text}");
    assert_eq!(stats["ports"][0]["port"], "r0");
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.json"),
        serde_json::to_string(&program()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("run.yaml"),
        "program: p.json\nports:\n  - {name: a, af_packet: lo}\nlinks: [[a, b]]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vrouter"))
        .args(["run", "--config"])
        .arg(dir.path().join("run.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("a link names port `b`, which is not in `ports`"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("run.yaml"),
        "program: missing.json\nports: []\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vrouter"))
        .args(["run", "--config"])
        .arg(dir.path().join("run.yaml"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));
}
