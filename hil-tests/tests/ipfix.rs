//! IPFIX from the vRouter agents to a third-party collector (root only): the agents run
//! with `--ipfix-export` to nfcapd (nfdump's collector) while real traffic crosses them;
//! nfdump must show exactly the sessions the manager's flow store got from the same agents
//! over gRPC (5-tuples and packet counts).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use palisade_hil::{Expect, Lab, LabOptions, Scenario, base64, is_root};

fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// (src, sport, dst, dport) -> total packets both ways, over every record.
type Sessions = BTreeMap<(String, u16, String, u16), u64>;

#[test]
fn nfdump_shows_the_sessions_the_vrouters_saw() {
    if !is_root() {
        eprintln!("!!! SKIPPED: not root; the IPFIX export scenario did not run");
        return;
    }
    let (Some(nfcapd), Some(nfdump)) = (tool("nfcapd"), tool("nfdump")) else {
        eprintln!("!!! SKIPPED: nfcapd/nfdump missing (apt-get install nfdump)");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let captures = work.path().join("nfcapd");
    std::fs::create_dir_all(&captures).unwrap();
    let port = palisade_hil::free_udp_port().unwrap();
    let mut collector = Command::new(nfcapd)
        .args([
            "-w",
            captures.to_str().unwrap(),
            "-b",
            "127.0.0.1",
            "-t",
            "3600",
        ])
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = collector.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .expect("nfcapd did not start")
        .contains("Startup")
    {}

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/three-tier");
    let scenario = Scenario::load(&dir.join("scenario.yaml")).unwrap();
    let lab = Lab::start_full(
        &scenario,
        work.path(),
        &LabOptions {
            agent_args: vec!["--ipfix-export".into(), format!("127.0.0.1:{port}")],
            ..LabOptions::default()
        },
    )
    .unwrap();
    for e in [
        Expect::tcp("shop/web-prod", "shop/app-prod", 8080, true),
        Expect::tcp("shop/web-dev", "shop/app-dev", 8080, true),
        Expect::tcp("shop/web-prod", "shop/app-dev", 8080, false),
    ] {
        assert_eq!(lab.check(&e).unwrap().0, e.allow, "{}", lab.logs());
    }
    // Both exports go every half second; give them time, then stop nfcapd (SIGTERM writes
    // its file).
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        Command::new("kill")
            .args(["-TERM", &collector.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    collector.wait().unwrap();

    let out = Command::new(nfdump)
        .env("TZ", "UTC")
        .args(["-R", captures.to_str().unwrap(), "-o", "json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let shown: Vec<serde_json::Value> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("nfdump json ({e}): {text}"));
    let mut from_nfdump = Sessions::new();
    for f in &shown {
        let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
        let n = |k: &str| f[k].as_u64().unwrap_or(0);
        if n("proto") != 6 {
            continue;
        }
        *from_nfdump
            .entry((
                s("src4_addr"),
                n("src_port") as u16,
                s("dst4_addr"),
                n("dst_port") as u16,
            ))
            .or_default() += n("in_packets") + n("out_packets");
    }

    let stored: serde_json::Value = serde_json::from_str(
        &lab.cli(&[
            "flows",
            "query",
            "--since",
            "10m",
            "--where",
            "proto=tcp",
            "--list",
            "--top",
            "10000",
            "--output",
            "json",
        ])
        .unwrap(),
    )
    .unwrap();
    let mut from_store = Sessions::new();
    let ip = |b64: &serde_json::Value| -> String {
        let bytes = base64(b64.as_str().unwrap_or_default());
        std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string()
    };
    for f in stored["flows"].as_array().unwrap() {
        let r = &f["record"];
        let n = |k: &str| {
            r[k].as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .or_else(|| r[k].as_u64())
                .unwrap_or(0)
        };
        *from_store
            .entry((
                ip(&r["src"]),
                n("srcPort") as u16,
                ip(&r["dst"]),
                n("dstPort") as u16,
            ))
            .or_default() += n("packets") + n("revPackets");
    }
    assert!(!from_store.is_empty());
    assert_eq!(
        from_nfdump, from_store,
        "nfdump (left) and the manager's store (right) disagree"
    );
    assert!(
        from_nfdump
            .keys()
            .any(|(src, _, dst, port)| src == "10.1.0.10" && dst == "10.1.1.11" && *port == 8080),
        "the denied session is exported too: {from_nfdump:#?}"
    );
}
