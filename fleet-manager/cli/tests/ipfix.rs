//! The fleet manager's IPFIX / NetFlow v9 collector with a third-party exporter:
//! softflowd replays a capture into `fleet-manager serve --ipfix-listen`, and the flows
//! appear in `flows query` enriched with the inventory's endpoints; a malformed datagram is
//! dropped with a log line and changes nothing.

mod support;

#[path = "../../../lib/ipfix/tests/common/pcap.rs"]
mod pcap;

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::*;

const INVENTORY: &str = "\
devices: [{name: dpu-1}]
projects: [{name: lab}]
workloads:
  - {name: client-1, project: lab, interfaces: [{addresses: [10.1.0.1], device: dpu-1}]}
  - {name: server-1, project: lab, interfaces: [{addresses: [10.2.0.1], device: dpu-1}]}
";

fn softflowd() -> Option<std::path::PathBuf> {
    ["/usr/sbin/softflowd", "/usr/bin/softflowd"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn listed(m: &Manager, filter: &str) -> Vec<serde_json::Value> {
    m.json(&[
        "flows", "query", "--since", "1h", "--where", filter, "--list",
    ])["flows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn softflowd_records_land_in_the_flow_store_enriched() {
    let Some(softflowd) = softflowd() else {
        eprintln!("!!! SKIPPED: softflowd is not installed (apt-get install softflowd)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let m = Manager::start(
        &dir.path().join("data"),
        0,
        &["--ipfix-listen", &format!("127.0.0.1:{port}")],
    );
    let inventory = dir.path().join("inventory.yaml");
    std::fs::write(&inventory, INVENTORY).unwrap();
    m.ok(&["apply", "-f", inventory.to_str().unwrap()]);

    // A malformed datagram first: dropped and logged; the collector goes on.
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sender
        .send_to(b"\x00\x0a\x00\x05garbage", ("127.0.0.1", port))
        .unwrap();

    // Records are tagged as of their own time: the capture starts after the inventory's
    // commit (its last packet is 2.5 s later; the query waits for that to be the past).
    std::thread::sleep(Duration::from_millis(100));
    let capture = dir.path().join("capture.pcap");
    let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    pcap::write_pcap(&capture, start, &pcap::capture());
    let status = Command::new(&softflowd)
        .args(["-d", "-r"])
        .arg(&capture)
        .args([
            "-n",
            &format!("127.0.0.1:{port}"),
            "-v",
            "10",
            "-b",
            "-c",
            "none",
        ])
        .arg("-p")
        .arg(dir.path().join("softflowd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    // The capture's TCP session, with its reverse counters, from the exporter's address,
    // with the inventory's endpoints attached.
    let tcp = "src=10.1.0.1 and dst=10.2.0.1 and port=443";
    wait_until(
        Duration::from_secs(15),
        "the capture's three sessions",
        || listed(&m, "device=127.0.0.1").len() == 3,
    );
    let flows = listed(&m, tcp);
    assert_eq!(flows.len(), 1, "{flows:#?}");
    let f = &flows[0];
    assert_eq!(f["srcEndpoint"], "lab/client-1/eth0", "{f}");
    assert_eq!(f["dstEndpoint"], "lab/server-1/eth0", "{f}");
    let r = &f["record"];
    assert_eq!(r["device"], "127.0.0.1", "{f}");
    assert_eq!(r["packets"], "3", "{f}");
    assert_eq!(r["revPackets"], "2", "{f}");
    // 3 + 2 TCP segments: 40 bytes of headers each, 120 + 1400 of payload.
    assert_eq!(
        r["bytes"].as_str().unwrap().parse::<u64>().unwrap()
            + r["revBytes"].as_str().unwrap().parse::<u64>().unwrap(),
        5 * 40 + 120 + 1400,
        "{f}"
    );
    assert!(
        m.proc
            .log()
            .contains("malformed IPFIX/NetFlow datagram dropped"),
        "{}",
        m.proc.log()
    );
}
