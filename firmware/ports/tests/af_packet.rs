//! AF_PACKET ports on a real veth pair (needs root: CI runs as root; elsewhere the test says
//! loudly that it skipped).

use std::process::Command;
use std::time::{Duration, Instant};

use palisade_ports::{AfPacketPort, Port};

struct Veth(String);

impl Veth {
    fn create(a: &str, b: &str) -> Option<Veth> {
        let ok = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ok(&["link", "add", a, "type", "veth", "peer", "name", b]) {
            return None;
        }
        let veth = Veth(a.to_string());
        for dev in [a, b] {
            if !ok(&["link", "set", dev, "up"]) {
                return None;
            }
        }
        Some(veth)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

fn frame(tag: u8) -> Vec<u8> {
    // Broadcast, a locally administered source, the local-experimental EtherType 0x88b5.
    let mut f = vec![0xff; 6];
    f.extend([0x02, 0, 0, 0, 0, tag]);
    f.extend([0x88, 0xb5]);
    f.extend(std::iter::repeat_n(tag, 46));
    f
}

#[test]
fn frames_cross_a_veth_pair() {
    // Creating interfaces and raw sockets needs root.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !root {
        eprintln!("!!! SKIPPED: not root; the AF_PACKET veth test did not run");
        return;
    }
    let (a, b) = (
        format!("plt{}a", std::process::id() % 10000),
        format!("plt{}b", std::process::id() % 10000),
    );
    let Some(_veth) = Veth::create(&a, &b) else {
        panic!("could not create veth pair {a}/{b}");
    };
    let mut pa = AfPacketPort::open(&a).unwrap();
    let mut pb = AfPacketPort::open(&b).unwrap();
    let mut spare = Vec::new();
    let mut out = vec![frame(1), frame(2), frame(3)];
    assert_eq!(pa.send(&mut out, &mut spare).unwrap(), 3);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        pb.recv(64, &mut got, &mut spare).unwrap();
        got.retain(|f: &Vec<u8>| f.len() >= 14 && f[12..14] == [0x88, 0xb5]);
        if got.len() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(got, vec![frame(1), frame(2), frame(3)]);
    assert_eq!(pa.stats().tx_frames, 3);
    // Our own transmissions are not looped back to us.
    let mut echo = Vec::new();
    pa.recv(64, &mut echo, &mut spare).unwrap();
    assert!(
        !echo
            .iter()
            .any(|f| f.len() >= 14 && f[12..14] == [0x88, 0xb5]),
        "own frames looped back"
    );
}

#[test]
fn a_missing_interface_is_a_clear_error() {
    let err = AfPacketPort::open("no-such-if0").err().unwrap();
    assert!(
        err.to_string()
            .starts_with("port no-such-if0: no such interface"),
        "{err}"
    );
}

/// A VLAN-tagged frame reaches AF_PACKET readers with its tag moved into the packet's
/// metadata (the kernel untags every received frame before the taps see it); the port puts
/// it back, so a bump in the wire forwards what was on the wire.
#[test]
fn vlan_tags_the_kernel_took_off_are_put_back() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !root {
        eprintln!("!!! SKIPPED: not root; the AF_PACKET VLAN test did not run");
        return;
    }
    let (a, b) = (
        format!("plv{}a", std::process::id() % 10000),
        format!("plv{}b", std::process::id() % 10000),
    );
    let Some(_veth) = Veth::create(&a, &b) else {
        panic!("could not create veth pair {a}/{b}");
    };
    let mut pa = AfPacketPort::open(&a).unwrap();
    let mut pb = AfPacketPort::open(&b).unwrap();
    let mut spare = Vec::new();
    // VLAN 7 with priority 5 (TCI 0xa007), and a QinQ outer tag (TPID 0x88a8, VLAN 100).
    let mut tagged = frame(9);
    tagged.splice(12..12, [0x81, 0x00, 0xa0, 0x07]);
    let mut qinq = frame(10);
    qinq.splice(12..12, [0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x07]);
    let mut out = vec![tagged.clone(), qinq.clone(), frame(11)];
    assert_eq!(pa.send(&mut out, &mut spare).unwrap(), 3);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        pb.recv(64, &mut got, &mut spare).unwrap();
        got.retain(|f: &Vec<u8>| f.len() >= 14 && f[6..11] == [0x02, 0, 0, 0, 0]);
        if got.len() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(got, vec![tagged, qinq, frame(11)]);
}
