//! The manager's IPFIX collector on a real UDP socket: datagrams read in bursts (many per
//! system call) all reach the store, each with its own sender's templates and records; a
//! malformed datagram among them is counted and dropped without losing its neighbours; the
//! same over IPv6 where the machine has it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use palisade_flow::{FlowRecord, RecordKind, Verdict};
use palisade_flows::{EmbeddedStore, FlowStore, Query};
use palisade_ipfix::{Exporter, ExporterConfig};
use palisade_server::fleet::{Fleet, FleetConfig};
use palisade_server::store::RedbStore;
use palisade_server::telemetry::{Telemetry, bind_ipfix, collect_ipfix};

const NOW: i64 = 1_700_000_000_000;

fn records(device: &str, n: usize) -> Vec<FlowRecord> {
    (0..n)
        .map(|i| FlowRecord {
            device: device.into(),
            kind: RecordKind::End,
            end_reason: None,
            src: IpAddr::V4(Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250) as u8)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 2, 0, 1)),
            protocol: 6,
            src_port: 1024 + i as u16,
            dst_port: 443,
            start_ms: NOW - 5_000,
            end_ms: NOW - (i % 100) as i64,
            packets: 1 + i as u64,
            bytes: 100 + i as u64,
            rev_packets: 2,
            rev_bytes: 300,
            verdict: if i % 5 == 0 {
                Verdict::Denied
            } else {
                Verdict::Allowed
            },
            rule: format!("test/{:02}", i % 7).into(),
            generation: 3,
        })
        .collect()
}

/// Waits until `done` holds, failing after 20 s with `what`.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts a collector on `listen`; sends each sender's records from its own socket bound to
/// `sender_ip`, a malformed datagram in the middle of the first sender's stream, at most
/// 64 datagrams ahead of what the collector has read (no loss to a full socket buffer);
/// checks that every record was stored with its device and counters.
fn burst_reaches_the_store(listen: SocketAddr, sender_ip: IpAddr) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = RedbStore::open(&dir.path().join("state.redb")).unwrap();
    let fleet = Fleet::open(Arc::new(state), FleetConfig::default()).unwrap();
    let store: Arc<dyn FlowStore> =
        Arc::new(EmbeddedStore::open(&dir.path().join("flows.redb")).unwrap());
    let telemetry = Arc::new(Telemetry::new(Arc::clone(&store), &fleet));
    let socket = bind_ipfix(listen).unwrap();
    let to = socket.local_addr().unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let collector = runtime.spawn(collect_ipfix(Arc::clone(&telemetry), socket, shutdown));

    let senders = ["dpu-a", "dpu-b"];
    let per_sender = 2_000;
    let mut messages: Vec<(usize, Vec<u8>)> = Vec::new();
    for (s, device) in senders.iter().enumerate() {
        let config = ExporterConfig {
            observation_domain: s as u32,
            mtu: 600,
            ..ExporterConfig::default()
        };
        let mut exporter = Exporter::new(config).unwrap();
        messages.extend(
            exporter
                .encode(&records(device, per_sender), NOW)
                .into_iter()
                .map(|m| (s, m)),
        );
    }
    // Interleave the senders, so that one burst holds datagrams of both.
    let (a, b): (Vec<_>, Vec<_>) = messages.into_iter().partition(|(s, _)| *s == 0);
    let mut order = Vec::new();
    let mut b = b.into_iter();
    for (i, m) in a.into_iter().enumerate() {
        order.push(m);
        order.extend(b.next());
        if i == 40 {
            order.push((0, b"\x00\x0a\x00\x05garbage".to_vec()));
        }
    }
    order.extend(b);
    assert!(
        order.len() > 4 * 32,
        "too few datagrams for several bursts: {}",
        order.len()
    );

    let sockets: Vec<UdpSocket> = senders
        .iter()
        .map(|_| UdpSocket::bind(SocketAddr::new(sender_ip, 0)).unwrap())
        .collect();
    let read = || telemetry.stats.datagrams.load(Ordering::Relaxed);
    for (sent, (s, m)) in order.iter().enumerate() {
        if sent as u64 >= read() + 64 {
            wait_for("the collector to read", || sent as u64 <= read() + 16);
        }
        sockets[*s].send_to(m, to).unwrap();
    }
    let total = (senders.len() * per_sender) as u64;
    wait_for("every record to be stored", || {
        telemetry.stats.records.load(Ordering::Relaxed) >= total
    });
    assert_eq!(read(), order.len() as u64);
    assert_eq!(telemetry.stats.malformed.load(Ordering::Relaxed), 1);
    assert_eq!(telemetry.stats.records.load(Ordering::Relaxed), total);

    let query = Query {
        from_ms: 0,
        to_ms: i64::MAX,
        ..Query::default()
    };
    let stored = runtime.block_on(store.flows(&query, 0)).unwrap();
    assert_eq!(stored.len() as u64, total);
    for device in senders {
        let mut mine: Vec<_> = stored
            .iter()
            .filter(|f| &*f.record.device == device)
            .map(|f| f.record.clone())
            .collect();
        mine.sort_by_key(|r| r.src_port);
        assert_eq!(mine, records(device, per_sender), "records of {device}");
    }

    stop.send(true).unwrap();
    runtime.block_on(collector).unwrap();
}

#[test]
fn bursts_of_datagrams_from_two_exporters_all_reach_the_store() {
    burst_reaches_the_store(
        "127.0.0.1:0".parse().unwrap(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    );
}

#[test]
fn the_collector_reads_ipv6_senders() {
    let loopback: SocketAddr = "[::1]:0".parse().unwrap();
    if UdpSocket::bind(loopback).is_err() {
        println!("!!! SKIPPED: this machine has no IPv6 loopback");
        return;
    }
    burst_reaches_the_store(loopback, loopback.ip());
}
