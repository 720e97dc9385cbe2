//! Our collector against a real exporter: softflowd reads a capture we write and exports
//! its flows as IPFIX (`-v 10`, and biflows with RFC 5103 reverse elements `-b`) and
//! NetFlow v9 (`-v 9`); the collector must decode exactly the capture's flows.

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use palisade_flow::{FlowRecord, RecordKind, Verdict};
use palisade_ipfix::Collector;

use common::pcap::{Packet, capture, write_pcap};

/// A flow as compared: 5-tuple, packets and bytes both ways, first and last packet (ms
/// after the capture's start).
type Flow = (
    Ipv4Addr,
    u16,
    Ipv4Addr,
    u16,
    u8,
    u64,
    u64,
    u64,
    u64,
    i64,
    i64,
);

/// The capture's flows: one per direction, or one per session with reverse counters. Both
/// directions of a session carry the session's first and last packet times, as softflowd
/// tracks sessions and exports each direction from the one entry.
fn expected(packets: &[Packet], bidirectional: bool) -> BTreeSet<Flow> {
    let mut flows: Vec<Flow> = Vec::new();
    for p in packets {
        let at = i64::from(p.at_ms);
        let (len, forward) = (p.ip_len() as u64, (p.src, p.dst));
        let found = flows.iter_mut().find_map(|f| {
            let key = ((f.0, f.1), (f.2, f.3));
            if key == forward {
                Some((f, true))
            } else if bidirectional && key == (forward.1, forward.0) {
                Some((f, false))
            } else {
                None
            }
        });
        match found {
            Some((f, true)) => {
                (f.5, f.6) = (f.5 + 1, f.6 + len);
                f.10 = at;
            }
            Some((f, false)) => {
                (f.7, f.8) = (f.7 + 1, f.8 + len);
                f.10 = at;
            }
            None => flows.push((
                p.src.0, p.src.1, p.dst.0, p.dst.1, p.protocol, 1, len, 0, 0, at, at,
            )),
        }
    }
    let session_times = |f: &Flow| {
        flows
            .iter()
            .filter(|g| {
                (g.0, g.1, g.2, g.3) == (f.0, f.1, f.2, f.3)
                    || (g.0, g.1, g.2, g.3) == (f.2, f.3, f.0, f.1)
            })
            .fold((f.9, f.10), |(first, last), g| {
                (first.min(g.9), last.max(g.10))
            })
    };
    flows
        .iter()
        .map(|f| {
            let (first, last) = session_times(f);
            (f.0, f.1, f.2, f.3, f.4, f.5, f.6, f.7, f.8, first, last)
        })
        .collect()
}

/// Runs softflowd over the capture with `args` and decodes what it sends.
fn softflowd(
    softflowd: &Path,
    pcap: &Path,
    dir: &Path,
    args: &[&str],
) -> (Vec<FlowRecord>, Collector) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let collector_address = socket.local_addr().unwrap();
    // -c none: without a control socket softflowd 1.1 reads the whole capture, exports
    // every flow and exits; with one it waits for control connections.
    let mut child = Command::new(softflowd)
        .args(["-d", "-r", pcap.to_str().unwrap()])
        .args(["-n", &collector_address.to_string()])
        .args([
            "-c",
            "none",
            "-p",
            dir.join("softflowd.pid").to_str().unwrap(),
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start softflowd");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!("softflowd {args:?} did not finish: {output:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "softflowd {args:?}: {output:?}");

    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut collector = Collector::default();
    let mut records = Vec::new();
    let mut buf = vec![0; 65536];
    while let Ok((n, from)) = socket.recv_from(&mut buf) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        match collector.decode(from, &buf[..n], now_ms) {
            Ok(decoded) => records.extend(decoded),
            Err(e) => panic!("softflowd {args:?} sent what we cannot decode: {e}"),
        }
    }
    assert!(
        collector.stats().datagrams > 0,
        "softflowd {args:?} sent nothing: {output:?}"
    );
    (records, collector)
}

/// Compares decoded records with the capture's flows, times within `slack_ms`.
fn check(
    args: &[&str],
    records: &[FlowRecord],
    start_ms: i64,
    flows: &BTreeSet<Flow>,
    slack_ms: i64,
) {
    for r in records {
        assert_eq!(&*r.device, "127.0.0.1", "{args:?}: {r:?}");
        assert_eq!(
            (r.kind, r.verdict),
            (RecordKind::End, Verdict::Allowed),
            "{args:?}"
        );
        assert_eq!((&*r.rule, r.generation), ("", 0), "{args:?}");
    }
    let got: BTreeSet<_> = records
        .iter()
        .map(|r| {
            let v4 = |a| match a {
                std::net::IpAddr::V4(a) => a,
                other => panic!("{args:?}: IPv6 {other} in an IPv4 capture"),
            };
            (
                (v4(r.src), r.src_port, v4(r.dst), r.dst_port, r.protocol),
                (r.packets, r.bytes, r.rev_packets, r.rev_bytes),
            )
        })
        .collect();
    let want: BTreeSet<_> = flows
        .iter()
        .map(|f| ((f.0, f.1, f.2, f.3, f.4), (f.5, f.6, f.7, f.8)))
        .collect();
    assert_eq!(got, want, "{args:?}");
    assert_eq!(records.len(), flows.len(), "{args:?}");
    for f in flows {
        let r = records
            .iter()
            .find(|r| (r.src, r.src_port, r.dst, r.dst_port) == (f.0.into(), f.1, f.2.into(), f.3))
            .unwrap();
        let (start, end) = (r.start_ms - start_ms, r.end_ms - start_ms);
        assert!(
            (start - f.9).abs() <= slack_ms && (end - f.10).abs() <= slack_ms,
            "{args:?}: times {start}..{end} ms after the capture's start, want {}..{}",
            f.9,
            f.10
        );
    }
}

#[test]
fn softflowd_exports_what_the_capture_holds() {
    let Some(softflowd_path) = common::tool("softflowd") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("capture.pcap");
    let packets = capture();
    // Recent times: sysUpTime-relative exports are read against the export time.
    let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() - Duration::from_secs(60);
    write_pcap(&pcap, start, &packets);
    let start_ms = start.as_millis() as i64;

    let one_way = expected(&packets, false);
    let biflows = expected(&packets, true);
    assert_eq!((one_way.len(), biflows.len()), (5, 3));

    // IPFIX: sysUpTime-relative times against systemInitTimeMilliseconds from an options
    // record, both with millisecond precision.
    let (records, collector) = softflowd(&softflowd_path, &pcap, dir.path(), &["-v", "10"]);
    check(&["-v", "10"], &records, start_ms, &one_way, 5);
    assert!(collector.stats().options_records > 0);
    assert_eq!(collector.stats().unknown_template_sets, 0);

    // IPFIX biflows: reverse counters as RFC 5103 reverse elements.
    let (records, _) = softflowd(&softflowd_path, &pcap, dir.path(), &["-v", "10", "-b"]);
    check(&["-v", "10", "-b"], &records, start_ms, &biflows, 5);

    // NetFlow v9: times against the header's sysUptime and whole-second export time.
    let (records, collector) = softflowd(&softflowd_path, &pcap, dir.path(), &["-v", "9"]);
    check(&["-v", "9"], &records, start_ms, &one_way, 1_100);
    assert_eq!(collector.stats().unknown_template_sets, 0);
}
