//! A `vrouter agent` on AF_PACKET ports enforces what the fleet manager commits, on real
//! frames: nothing crosses before its first program (it fails closed while the manager is
//! away), then exactly what the committed intent allows (root only: veth pairs; CI runs as
//! root).

mod support;

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use palisade_ports::{AfPacketPort, Port};
use palisade_wire::{PacketBuilder, parse_frame, tcp};
use support::*;

struct Links(Vec<String>);

impl Drop for Links {
    fn drop(&mut self) {
        for l in &self.0 {
            let _ = Command::new("ip").args(["link", "del", l]).status();
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

fn syn(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    let (Ok(IpAddr::V4(s)), Ok(IpAddr::V4(d))) = (src.parse(), dst.parse()) else {
        unreachable!()
    };
    let mut buf = vec![0u8; 128];
    let n = PacketBuilder::ipv4(s, d)
        .tcp(tcp::Repr {
            src_port: sport,
            dst_port: dport,
            flags: tcp::Flags::SYN,
            ..Default::default()
        })
        .emit(&mut buf)
        .unwrap();
    buf.truncate(n);
    buf
}

/// Destination ports of the test's TCP frames (from 10.1.0.10) seen within `wait`.
fn seen(port: &mut AfPacketPort, wait: Duration) -> Vec<u16> {
    let deadline = Instant::now() + wait;
    let (mut got, mut spare, mut out) = (Vec::new(), Vec::new(), Vec::new());
    while Instant::now() < deadline {
        port.recv(64, &mut got, &mut spare).unwrap();
        for f in got.drain(..) {
            if let Ok(p) = parse_frame(&f)
                && let Some(ip) = p.ip
                && let Some((_, dport)) = ip.ports()
                && ip.src.to_string() == "10.1.0.10"
            {
                out.push(dport);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    out.sort_unstable();
    out
}

#[test]
fn an_agent_on_af_packet_ports_enforces_the_committed_intent() {
    if !is_root() {
        eprintln!("!!! SKIPPED: not root; the agent veth test did not run");
        return;
    }
    let id = std::process::id() % 10000;
    let names: Vec<String> = ["w", "f"].iter().map(|k| format!("ag{id}{k}")).collect();
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
    let data = dir.path().join("data");
    // The manager is down when the agent starts: it must fail closed until it has a program.
    let mut m = Manager::start(&data, 0, &[]);
    let token = m.token("dpu-1");
    m.proc.terminate();
    let ports = format!("af_packet:{}b/{}b", names[0], names[1]);
    let a = agent_to(
        &m.url,
        &m.ca,
        "dpu-1",
        &dir.path().join("dpu-1"),
        Some(&token),
        &["--ports", &ports],
    );
    let mut workload = AfPacketPort::open(&format!("{}a", names[0])).unwrap();
    let mut fabric = AfPacketPort::open(&format!("{}a", names[1])).unwrap();
    let mut spare = Vec::new();
    // web-prod (10.1.0.10, on dpu-1) to app-prod (10.1.1.10) and app-dev (10.1.1.11).
    let send = |workload: &mut AfPacketPort, spare: &mut Vec<Vec<u8>>| {
        workload
            .send(
                &mut vec![
                    syn("10.1.0.10", "10.1.1.10", 40000, 8080),
                    syn("10.1.0.10", "10.1.1.11", 40001, 8081),
                    syn("10.1.0.10", "10.1.1.10", 40002, 22),
                ],
                spare,
            )
            .unwrap();
    };
    wait_until(Duration::from_secs(30), "the agent to start", || {
        a.log().contains("no program yet")
    });
    send(&mut workload, &mut spare);
    assert_eq!(
        seen(&mut fabric, Duration::from_millis(700)),
        Vec::<u16>::new(),
        "nothing crosses before the first program:\n{}",
        a.log()
    );
    let port = m.port;
    m = Manager::start(&data, port, &[]);
    wait_until(
        Duration::from_secs(30),
        "the agent to enroll and connect",
        || {
            m.devices()
                .iter()
                .any(|d| d["name"] == "dpu-1" && d["connected"] == true)
        },
    );

    // Same deployment: allowed; across deployments (the 8081 probe goes to app-dev) and
    // to other ports: denied.
    let shop = std::fs::read_to_string(examples().join("three-tier/policies/shop.pal"))
        .unwrap()
        .replace(
            "allow tier=web > tier=app on tcp/8080 match application,deployment",
            "allow tier=web > tier=app on tcp/8080-8081 match application,deployment",
        );
    std::fs::write(dir.path().join("shop.pal"), shop).unwrap();
    let ex = examples().join("three-tier");
    m.ok(&[
        "apply",
        "-f",
        ex.join("policies/tags.pal").to_str().unwrap(),
        "-f",
        ex.join("policies/admin.pal").to_str().unwrap(),
        "-f",
        dir.path().join("shop.pal").to_str().unwrap(),
        "-f",
        ex.join("inventory.yaml").to_str().unwrap(),
    ]);
    wait_until(Duration::from_secs(30), "dpu-1 in sync", || {
        in_sync(&m, &["dpu-1"])
    });
    send(&mut workload, &mut spare);
    assert_eq!(
        seen(&mut fabric, Duration::from_millis(700)),
        vec![8080],
        "only web-prod -> app-prod:8080 crosses:\n{}",
        a.log()
    );
}
