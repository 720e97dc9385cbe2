//! Our exporter against a real collector: nfcapd (nfdump 1.7) receives our IPFIX over UDP
//! and nfdump must show exactly the sessions we sent, counters of both directions and times
//! included.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use palisade_flow::{EndReason, FlowRecord, RecordKind, Verdict};
use palisade_ipfix::{Exporter, ExporterConfig, MIN_MTU};

/// Kills the collector if the test fails before stopping it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The sessions: IPv4 and IPv6, TCP, UDP and ICMP, every record kind, both verdicts.
fn sessions(now_ms: i64) -> Vec<FlowRecord> {
    let record = |i: i64, src: &str, dst: &str, protocol, ports: (u16, u16)| FlowRecord {
        device: "dpu-1".into(),
        kind: RecordKind::End,
        end_reason: Some(EndReason::Fin),
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        protocol,
        src_port: ports.0,
        dst_port: ports.1,
        start_ms: now_ms - 60_000 + i * 1_111,
        end_ms: now_ms - 1_000 + i * 7,
        packets: 10 + i as u64,
        bytes: 1_000 + 100 * i as u64,
        rev_packets: 8 + i as u64,
        rev_bytes: 5_000 + 1_000 * i as u64,
        verdict: Verdict::Allowed,
        rule: "web/allow-https".into(),
        generation: 42,
    };
    let mut records = vec![
        record(0, "10.0.0.1", "10.0.0.2", 6, (40000, 443)),
        record(1, "10.0.0.3", "192.0.2.53", 17, (5353, 53)),
        record(2, "2001:db8::1", "2001:db8::2", 6, (40001, 443)),
        record(3, "2001:db8::3", "2001:db8:1::53", 17, (5354, 53)),
        record(4, "10.0.0.4", "10.0.0.5", 1, (0, 0)),
        record(5, "2001:db8::5", "2001:db8::6", 58, (0, 0)),
    ];
    records[1].kind = RecordKind::Start;
    records[1].end_reason = None;
    records[2].kind = RecordKind::Update;
    records[2].end_reason = None;
    records[3].verdict = Verdict::Denied;
    records[3].rev_packets = 0;
    records[3].rev_bytes = 0;
    records[4].end_reason = None;
    // Enough further sessions to need several messages.
    for i in 6..60 {
        let src = format!("10.1.{}.{}", i / 200, i % 200 + 1);
        records.push(record(i, &src, "10.2.0.1", 6, (30000 + i as u16, 8080)));
    }
    records
}

/// What nfdump shows of a session: 5-tuple, counters both ways, first and last seen (ms).
type Shown = (IpAddr, IpAddr, u8, u16, u16, u64, u64, u64, u64, i64, i64);

fn shown(r: &FlowRecord) -> Shown {
    (
        r.src,
        r.dst,
        r.protocol,
        r.src_port,
        r.dst_port,
        r.packets,
        r.bytes,
        r.rev_packets,
        r.rev_bytes,
        r.start_ms,
        r.end_ms,
    )
}

/// Parses nfdump's `-o json` time ("2023-11-14T22:13:20.123", printed in TZ=UTC).
fn json_time(v: &serde_json::Value) -> i64 {
    let text = v.as_str().expect("a time string");
    let format = time::format_description::parse(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]",
    )
    .unwrap();
    let t = time::PrimitiveDateTime::parse(text, &format)
        .unwrap_or_else(|e| panic!("time {text}: {e}"));
    (t.assume_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn from_json(flow: &serde_json::Value) -> Shown {
    let field = |name: &str| &flow[name];
    let number = |name: &str| {
        field(name)
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in {flow}"))
    };
    let address = |v4: &str, v6: &str| -> IpAddr {
        field(v4)
            .as_str()
            .or_else(|| field(v6).as_str())
            .unwrap_or_else(|| panic!("{v4}/{v6} in {flow}"))
            .parse()
            .unwrap()
    };
    (
        address("src4_addr", "src6_addr"),
        address("dst4_addr", "dst6_addr"),
        number("proto") as u8,
        // ICMP flows show type and code instead of ports.
        flow.get("src_port").map_or(0, |_| number("src_port")) as u16,
        match flow.get("dst_port") {
            Some(_) => number("dst_port") as u16,
            None => (number("icmp_type") << 8 | number("icmp_code")) as u16,
        },
        number("in_packets"),
        number("in_bytes"),
        flow.get("out_packets").map_or(0, |_| number("out_packets")),
        flow.get("out_bytes").map_or(0, |_| number("out_bytes")),
        json_time(field("first")),
        json_time(field("last")),
    )
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral port");
    socket.local_addr().expect("local address").port()
}

/// The bytes waiting in a UDP socket's receive queue on 127.0.0.1:`port` (Linux).
fn udp_backlog(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().find_map(|line| {
        let columns: Vec<&str> = line.split_whitespace().collect();
        if columns.get(1) != Some(&local.as_str()) {
            return None;
        }
        let (_, rx) = columns.get(4)?.split_once(':')?;
        u64::from_str_radix(rx, 16).ok()
    })
}

fn start_nfcapd(nfcapd: &Path, dir: &Path, port: u16) -> (Running, mpsc::Receiver<String>) {
    let mut child = Command::new(nfcapd)
        .args(["-w", dir.to_str().unwrap(), "-b", "127.0.0.1", "-t", "3600"])
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nfcapd");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut log = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("Startup") => break,
            Ok(line) => log.push(line),
            Err(e) => panic!("nfcapd did not start ({e}): {log:#?}"),
        }
    }
    (running, rx)
}

#[test]
fn nfcapd_stores_what_we_export() {
    let (Some(nfcapd), Some(nfdump)) = (common::tool("nfcapd"), common::tool("nfdump")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let (mut nfcapd, log) = start_nfcapd(&nfcapd, dir.path(), port);

    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let records = sessions(now_ms);
    let mut exporter = Exporter::new(ExporterConfig {
        observation_domain: 7,
        mtu: MIN_MTU,
        ..ExporterConfig::default()
    })
    .unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = 0;
    for batch in records.chunks(25) {
        for message in exporter.encode(batch, now_ms) {
            socket.send_to(&message, ("127.0.0.1", port)).unwrap();
            sent += 1;
        }
    }
    assert!(
        sent > 3,
        "the test should span several messages, sent {sent}"
    );

    // Let nfcapd read every datagram, then stop it: SIGTERM flushes and closes the file.
    let deadline = Instant::now() + Duration::from_secs(10);
    while udp_backlog(port).is_some_and(|b| b > 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let status = Command::new("kill")
        .args(["-TERM", &nfcapd.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = nfcapd.0.wait().unwrap();
    // Every line it wrote: the reader thread ends at the pipe's end, which may come after
    // the exit (lines taken only up to the exit lost the closing summary now and then).
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(line) = log.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        lines.push(line);
    }
    let log = lines;
    assert!(exit.success(), "nfcapd exited with {exit}: {log:#?}");

    let output = Command::new(nfdump)
        .env("TZ", "UTC")
        .args(["-R", dir.path().to_str().unwrap(), "-o", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "nfdump: {stdout} {output:?}");
    let flows: Vec<serde_json::Value> = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("nfdump json ({e}): {stdout}\nnfcapd: {log:#?}"));

    let expected: BTreeSet<Shown> = records.iter().map(shown).collect();
    let got: BTreeSet<Shown> = flows.iter().map(from_json).collect();
    assert_eq!(flows.len(), records.len(), "nfcapd: {log:#?}");
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:#?}\nextra {extra:#?}"
    );
    // nfcapd found our sequence numbers right and every message well formed.
    let summary = log
        .iter()
        .rev()
        .find(|l| l.contains("Sequence Errors:"))
        .unwrap_or_else(|| panic!("no summary from nfcapd: {log:#?}"));
    assert!(
        summary.contains("Sequence Errors: 0,") && summary.contains("Bad Packets: 0"),
        "{summary}"
    );
}
