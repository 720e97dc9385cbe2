//! Arbitrary bytes as a datagram for the collector: it must return records or an error,
//! never panic, whatever the version.
//!
//! The first byte chooses the setting: the version field forced to NetFlow v9 or IPFIX (with
//! a consistent IPFIX length) or left as is, and whether the collector first learns
//! Palisade's templates (so that mutated data sets reach the record decoder) and a small
//! NetFlow v9 template.

#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use palisade_flow::{FlowRecord, RecordKind, Verdict};
use palisade_ipfix::{Collector, CollectorConfig, Exporter, ExporterConfig};

const NOW: i64 = 1_700_000_000_000;

/// An IPFIX message with Palisade's templates and one record.
fn ipfix_templates() -> &'static [u8] {
    static MESSAGE: OnceLock<Vec<u8>> = OnceLock::new();
    MESSAGE.get_or_init(|| {
        let record = FlowRecord {
            device: "dpu-1".into(),
            kind: RecordKind::Start,
            end_reason: None,
            src: Ipv4Addr::new(10, 0, 0, 1).into(),
            dst: Ipv4Addr::new(10, 0, 0, 2).into(),
            protocol: 6,
            src_port: 40000,
            dst_port: 443,
            start_ms: NOW,
            end_ms: NOW,
            packets: 1,
            bytes: 60,
            rev_packets: 0,
            rev_bytes: 0,
            verdict: Verdict::Allowed,
            rule: "r".into(),
            generation: 1,
        };
        let mut exporter = Exporter::new(ExporterConfig::default()).expect("default config");
        exporter.encode(&[record], NOW).remove(0)
    })
}

/// A NetFlow v9 packet with template 300: addresses, counters and sysUptime times.
fn v9_template() -> Vec<u8> {
    let mut m = Vec::new();
    for v in [9u16, 1] {
        m.extend_from_slice(&v.to_be_bytes());
    }
    for v in [10_000u32, 1_700_000_000, 1, 0] {
        m.extend_from_slice(&v.to_be_bytes());
    }
    for v in [0u16, 28, 300, 5, 8, 4, 12, 4, 1, 4, 21, 4, 22, 4] {
        m.extend_from_slice(&v.to_be_bytes());
    }
    m
}

fuzz_target!(|input: &[u8]| {
    let Some((&setting, bytes)) = input.split_first() else {
        return;
    };
    let mut datagram = bytes.to_vec();
    if datagram.len() >= 4 {
        match setting & 3 {
            0 => datagram[..2].copy_from_slice(&9u16.to_be_bytes()),
            1 => {
                let len = u16::try_from(datagram.len()).unwrap_or(u16::MAX);
                datagram[..2].copy_from_slice(&10u16.to_be_bytes());
                datagram[2..4].copy_from_slice(&len.to_be_bytes());
            }
            _ => {}
        }
    }
    let config = CollectorConfig {
        max_templates_per_exporter: 8,
        ..CollectorConfig::default()
    };
    let mut collector = Collector::new(config);
    let from = SocketAddr::from((Ipv4Addr::LOCALHOST, 4739));
    if setting & 4 != 0 {
        collector
            .decode(from, ipfix_templates(), NOW)
            .expect("our own message decodes");
        collector
            .decode(from, &v9_template(), NOW)
            .expect("the v9 template decodes");
    }
    let first = collector.decode(from, &datagram, NOW);
    // Twice: templates the datagram defined now meet its own data sets.
    let second = collector.decode(from, &datagram, NOW);
    if let (Ok(a), Ok(b)) = (&first, &second) {
        assert!(a.len() <= datagram.len() && b.len() <= datagram.len());
    }
});
