//! `decode` benchmark: the collector's cost per record on the stream Palisade's own
//! exporter produces (the fleet manager's collector thread does nothing else).
//!
//! 200,000 IPv4 end records like the `ingest` benchmark's (device "dpu-1", 40 rule ids,
//! 240 workload addresses) are encoded once, 1,000 records per `encode` call, into
//! 1,400-byte messages. One iteration decodes every message into one reused buffer, cleared
//! every 8,192 records, as the collector thread does. Before timing, the decoded records are
//! checked against the originals.
//!
//! Run: `cargo bench -p palisade-ipfix --bench decode`; ns per record is the reported time
//! divided by 200,000 (criterion also prints the throughput in records/s).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palisade_flow::{FlowRecord, RecordKind, Verdict};
use palisade_ipfix::{Collector, Exporter, ExporterConfig};

const RECORDS: usize = 200_000;
const NOW: i64 = 1_700_000_000_000;
const WORKLOADS: usize = 240;
const CLEAR_EVERY: usize = 8_192;

fn address(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 50, (k / 200) as u8, (k % 200) as u8 + 10)
}

fn records(n: usize) -> Vec<FlowRecord> {
    (0..n)
        .map(|i| {
            let (s, d) = (i % WORKLOADS, (i * 7 + 3) % WORKLOADS);
            FlowRecord {
                device: "dpu-1".into(),
                kind: RecordKind::End,
                end_reason: None,
                src: IpAddr::V4(address(s)),
                dst: IpAddr::V4(address(d)),
                protocol: 6,
                src_port: 1024 + (i % 60000) as u16,
                dst_port: [443, 8080, 5432][i % 3],
                start_ms: NOW - 1_000,
                end_ms: NOW - (i % 500) as i64,
                packets: 10 + (i % 7) as u64,
                bytes: 1_500 + (i % 900) as u64,
                rev_packets: 8,
                rev_bytes: 9_000,
                verdict: if i % 11 == 0 {
                    Verdict::Denied
                } else {
                    Verdict::Allowed
                },
                rule: format!("lab/policy/{:04}", i % 40).into(),
                generation: 3,
            }
        })
        .collect()
}

fn decode_all(
    collector: &mut Collector,
    from: SocketAddr,
    messages: &[Vec<u8>],
    out: &mut Vec<FlowRecord>,
) -> usize {
    let mut total = 0;
    for m in messages {
        if out.len() >= CLEAR_EVERY {
            out.clear();
        }
        total += collector
            .decode_into(from, m, NOW, out)
            .expect("our own messages decode");
    }
    total
}

fn decode(c: &mut Criterion) {
    let records = records(RECORDS);
    let mut exporter = Exporter::new(ExporterConfig::default()).expect("default config");
    let messages: Vec<Vec<u8>> = records
        .chunks(1_000)
        .flat_map(|chunk| exporter.encode(chunk, NOW))
        .collect();
    let from: SocketAddr = "192.0.2.1:4739".parse().expect("an address");

    let mut collector = Collector::default();
    let mut decoded = Vec::with_capacity(RECORDS);
    for m in &messages {
        collector
            .decode_into(from, m, NOW, &mut decoded)
            .expect("our own messages decode");
    }
    assert!(
        decoded == records,
        "the collector must give back the records"
    );

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(20);
    group.bench_function("own_exporter_v4_200k", |b| {
        let mut out = Vec::with_capacity(CLEAR_EVERY + 64);
        b.iter(|| black_box(decode_all(&mut collector, from, &messages, &mut out)));
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
