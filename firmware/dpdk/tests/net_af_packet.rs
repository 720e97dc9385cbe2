//! net_af_packet on a real veth pair: frames sent by DPDK on one end arrive through the
//! kernel at a DPDK port on the other end. Needs root to create the pair; without it the
//! test says SKIPPED loudly.

#[path = "common/eal.rs"]
mod common;

use std::process::Command;

use palisade_dpdk::{Mbuf, Mempool, MempoolConfig, Port, PortConfig, Vdev};

/// An EtherType reserved for local experiments: the kernel stacks ignore it, so only our
/// frames carry it and nothing leaves the pair.
const ETHERTYPE: u16 = 0x88b5;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A veth pair that exists for the life of the value.
struct VethPair {
    a: String,
    b: String,
}

impl VethPair {
    fn create() -> Result<VethPair, String> {
        let pid = std::process::id();
        let pair = VethPair {
            a: format!("pdk{pid}a"),
            b: format!("pdk{pid}b"),
        };
        ip(&[
            "link", "add", &pair.a, "type", "veth", "peer", "name", &pair.b,
        ])?;
        for end in [&pair.a, &pair.b] {
            // No IPv6 link-local chatter (router solicitations, MLD) on the test wire.
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{end}/disable_ipv6"), "1");
            ip(&["link", "set", end, "up"])?;
        }
        Ok(pair)
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting one end deletes both.
        if let Err(e) = ip(&["link", "del", &self.a]) {
            eprintln!("cleanup: {e}");
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn frame(dst: [u8; 6], src: [u8; 6], seq: u32) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(b"palisade");
    f.extend_from_slice(&seq.to_be_bytes());
    f.resize(60, 0xa5);
    f
}

#[test]
fn frames_cross_a_veth_pair_between_two_af_packet_ports() {
    if !is_root() {
        eprintln!(
            "\n!!! SKIPPED net_af_packet test: creating a veth pair needs root (CI runs as \
             root; run `sudo cargo test -p palisade-dpdk --test net_af_packet`)\n"
        );
        return;
    }
    let veth = VethPair::create().expect("veth pair (iproute2)");
    let eal = common::eal();
    let config = MempoolConfig {
        capacity: 4095,
        cache_size: 0,
        ..MempoolConfig::default()
    };
    let pool = Mempool::create(eal, "af_packet", &config).expect("pool");
    let mut ports = [(&veth.a, "a"), (&veth.b, "b")].map(|(iface, instance)| {
        let id = Vdev::AfPacket {
            iface,
            queue_pairs: 1,
        }
        .create(eal, instance)
        .expect("net_af_packet vdev");
        let mut port = Port::configure(id, &PortConfig::new(pool)).expect("configure");
        port.start().expect("start");
        port
    });
    let [tx_port, rx_port] = &mut ports;
    assert_eq!(tx_port.info().expect("info").driver, "net_af_packet");
    let src = tx_port.mac_addr().expect("mac").0;
    let dst = rx_port.mac_addr().expect("mac").0;
    assert_ne!(src, [0; 6], "af_packet reports the interface's MAC");
    assert!(rx_port.link().expect("link").up);

    const N: u32 = 64;
    let mut burst: Vec<Mbuf> = (0..N)
        .map(|seq| {
            let mut m = pool.alloc().expect("mbuf");
            m.append(&frame(dst, src, seq)).expect("room");
            m
        })
        .collect();
    let mut sent = 0;
    for _ in 0..100 {
        sent += tx_port.tx_burst(0, &mut burst);
        if burst.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(sent, N as usize, "the af_packet tx ring took every frame");

    // The kernel delivers asynchronously: poll for a while.
    let mut seen = Vec::new();
    let mut rx = Vec::with_capacity(Port::BURST);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while seen.len() < N as usize && std::time::Instant::now() < deadline {
        if rx_port.rx_burst(0, &mut rx) == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        for m in rx.drain(..) {
            let data = m.data();
            if data.len() >= 26 && data[12..14] == ETHERTYPE.to_be_bytes() {
                assert_eq!(&data[..6], &dst);
                assert_eq!(&data[6..12], &src);
                assert_eq!(&data[14..22], b"palisade");
                let seq = u32::from_be_bytes(data[22..26].try_into().expect("4 bytes"));
                assert_eq!(data, frame(dst, src, seq).as_slice());
                seen.push(seq);
            }
        }
    }
    assert_eq!(seen, (0..N).collect::<Vec<_>>(), "every frame, in order");

    let tx_stats = tx_port.stats().expect("stats");
    let rx_stats = rx_port.stats().expect("stats");
    assert_eq!(tx_stats.tx_packets, u64::from(N));
    assert_eq!(tx_stats.tx_bytes, u64::from(N) * 60);
    assert!(rx_stats.rx_packets >= u64::from(N), "{rx_stats:?}");
    println!("af_packet over veth: tx {tx_stats:?}, rx {rx_stats:?}");
    drop(ports);
    assert_eq!(pool.in_use(), 0, "every mbuf went back to the pool");
}
