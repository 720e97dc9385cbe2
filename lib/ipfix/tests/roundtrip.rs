//! Exporter and collector agree: what one encodes the other decodes to the same records,
//! in messages that respect the MTU, numbering and template refresh; and the collector
//! survives any bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;

use palisade_flow::{EndReason, FlowRecord, RecordKind, Verdict};
use palisade_ipfix::{Collector, Exporter, ExporterConfig, MIN_MTU};
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000_000;

fn from() -> SocketAddr {
    "192.0.2.1:4739".parse().unwrap()
}

fn addresses() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        any::<(Ipv4Addr, Ipv4Addr)>().prop_map(|(s, d)| (s.into(), d.into())),
        any::<(Ipv6Addr, Ipv6Addr)>().prop_map(|(s, d)| (s.into(), d.into())),
    ]
}

fn kind_and_reason() -> impl Strategy<Value = (RecordKind, Option<EndReason>)> {
    let reason = prop_oneof![
        Just(EndReason::Idle),
        Just(EndReason::Fin),
        Just(EndReason::Reset),
        Just(EndReason::Evicted),
        Just(EndReason::PolicyChange),
        Just(EndReason::Flushed),
    ];
    prop_oneof![
        Just((RecordKind::Start, None)),
        Just((RecordKind::Update, None)),
        proptest::option::of(reason).prop_map(|r| (RecordKind::End, r)),
    ]
}

/// Names short and long: the long ones need the three-byte length prefix.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![4 => "\\PC{0,12}", 1 => "[a-z/-]{250,300}"]
}

fn record() -> impl Strategy<Value = FlowRecord> {
    (
        (
            name(),
            kind_and_reason(),
            addresses(),
            any::<(u8, u16, u16)>(),
        ),
        (0..=i64::MAX, 0..=i64::MAX, any::<[u64; 4]>()),
        (any::<bool>(), name(), any::<u64>()),
    )
        .prop_map(
            |(
                (device, (kind, end_reason), (src, dst), (protocol, src_port, dst_port)),
                (start_ms, end_ms, [packets, bytes, rev_packets, rev_bytes]),
                (denied, rule, generation),
            )| FlowRecord {
                device: device.into(),
                kind,
                end_reason,
                src,
                dst,
                protocol,
                src_port,
                dst_port,
                start_ms,
                end_ms,
                packets,
                bytes,
                rev_packets,
                rev_bytes,
                verdict: if denied {
                    Verdict::Denied
                } else {
                    Verdict::Allowed
                },
                rule: rule.into(),
                generation,
            },
        )
}

fn be16(m: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([m[at], m[at + 1]])
}

fn be32(m: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]])
}

fn cut(s: &mut std::sync::Arc<str>, max: usize) {
    if s.len() > max {
        let end = (0..=max)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        *s = s[..end].into();
    }
}

/// Whether a message carries the Template Set (always right after the header).
fn has_templates(m: &[u8]) -> bool {
    m.len() > 16 && be16(m, 16) == 2
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encode_then_decode_gives_back_the_records(
        records in proptest::collection::vec(record(), 0..80),
        mtu in MIN_MTU..1500usize,
        every in proptest::option::of(1..6u32),
        domain in any::<u32>(),
        batches in 1..4usize,
    ) {
        let config = ExporterConfig {
            observation_domain: domain,
            mtu,
            template_every_messages: every.and_then(NonZeroU32::new),
            template_interval: None,
        };
        let mut exporter = Exporter::new(config).unwrap();
        let mut collector = Collector::default();
        let mut messages = Vec::new();
        let mut decoded = Vec::new();
        // Several calls continue one stream: numbering and refresh carry over.
        let chunk = records.len().div_ceil(batches).max(1);
        for batch in records.chunks(chunk) {
            let out = exporter.encode(batch, NOW);
            prop_assert!(!out.is_empty());
            messages.extend(out);
        }

        let mut sequence = 0u32;
        let mut last_templates: Option<usize> = None;
        let mut previous_template_only = false;
        for (i, m) in messages.iter().enumerate() {
            prop_assert!(m.len() <= mtu, "message {i}: {} > {mtu}", m.len());
            prop_assert_eq!(be16(m, 0), 10);
            prop_assert_eq!(usize::from(be16(m, 2)), m.len());
            prop_assert_eq!(be32(m, 4), (NOW / 1000) as u32);
            prop_assert_eq!(be32(m, 8), sequence, "message {}", i);
            prop_assert_eq!(be32(m, 12), domain);
            let templates = has_templates(m);
            let due = match (last_templates, every) {
                (None, _) => true,
                (Some(last), Some(n)) => i - last >= n as usize,
                (Some(_), None) => false,
            };
            if templates {
                prop_assert!(due, "message {i}: templates before they are due");
                last_templates = Some(i);
            } else {
                // The one allowed delay: right after a message of templates only.
                prop_assert!(!due || previous_template_only, "message {i}: templates missed");
            }
            let got = collector.decode(from(), m, NOW).unwrap();
            previous_template_only = templates && got.is_empty();
            sequence = sequence.wrapping_add(got.len() as u32);
            decoded.extend(got);
        }
        // Names longer than the MTU allows arrive cut at a character boundary.
        let max = exporter.max_string_len();
        let expected: Vec<_> = records
            .into_iter()
            .map(|mut r| {
                cut(&mut r.device, max);
                cut(&mut r.rule, max);
                r
            })
            .collect();
        prop_assert_eq!(decoded, expected);
        prop_assert_eq!(exporter.sequence(), sequence);
        prop_assert_eq!(collector.stats().unknown_template_sets, 0);
    }

    #[test]
    fn the_collector_survives_arbitrary_bytes(
        version in prop_oneof![Just(9u16), Just(10u16), any::<u16>()],
        fix_length in any::<bool>(),
        mut bytes in proptest::collection::vec(any::<u8>(), 0..1500),
    ) {
        if bytes.len() >= 4 {
            bytes[..2].copy_from_slice(&version.to_be_bytes());
            if fix_length {
                let len = bytes.len() as u16;
                bytes[2..4].copy_from_slice(&len.to_be_bytes());
            }
        }
        let mut collector = Collector::default();
        let _ = collector.decode(from(), &bytes, NOW);
        prop_assert_eq!(collector.stats().datagrams, 1);
    }

    #[test]
    fn the_collector_survives_mutated_messages(
        records in proptest::collection::vec(record(), 1..20),
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut exporter = Exporter::new(ExporterConfig::default()).unwrap();
        let mut collector = Collector::default();
        let mut samples = exporter.encode(&records, NOW);
        samples.push(netflow_v9_sample());
        for original in &samples {
            // The original first, so that the mutants meet known templates.
            let _ = collector.decode(from(), original, NOW);
            let mut m = original.clone();
            for (at, value) in &mutations {
                let i = at.index(m.len());
                m[i] = *value;
            }
            if let Some(cut) = cut {
                m.truncate(cut.index(m.len() + 1));
            }
            let _ = collector.decode(from(), &m, NOW);
            let mut m = original.clone();
            if m.len() >= 4 {
                // Keep the header consistent so that the mutation reaches the sets.
                let i = 4 + mutations[0].0.index(m.len() - 4);
                m[i] = mutations[0].1;
            }
            let _ = collector.decode(from(), &m, NOW);
        }
    }
}

/// A NetFlow v9 packet: a template flowset (id 0) and a data flowset of two records.
fn netflow_v9_sample() -> Vec<u8> {
    let mut m = Vec::new();
    for v in [9u16, 2] {
        m.extend_from_slice(&v.to_be_bytes());
    }
    for v in [10_000u32, 1_700_000_000, 1, 0] {
        m.extend_from_slice(&v.to_be_bytes());
    }
    let template = [0u16, 28, 300, 5, 8, 4, 12, 4, 1, 4, 21, 4, 22, 4];
    for v in template {
        m.extend_from_slice(&v.to_be_bytes());
    }
    m.extend_from_slice(&300u16.to_be_bytes());
    m.extend_from_slice(&44u16.to_be_bytes());
    for _ in 0..2 {
        m.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        for v in [100u32, 9_000, 4_000] {
            m.extend_from_slice(&v.to_be_bytes());
        }
    }
    m
}

#[test]
fn the_netflow_v9_sample_decodes() {
    let mut collector = Collector::default();
    let records = collector.decode(from(), &netflow_v9_sample(), NOW).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].bytes, 100);
    assert_eq!(records[0].start_ms, NOW - 6_000);
}

#[test]
fn templates_are_resent_after_the_interval() {
    let config = ExporterConfig {
        template_every_messages: None,
        template_interval: Some(std::time::Duration::from_secs(60)),
        ..ExporterConfig::default()
    };
    let mut exporter = Exporter::new(config).unwrap();
    let record = FlowRecord {
        device: "dpu-1".into(),
        kind: RecordKind::Update,
        end_reason: None,
        src: Ipv4Addr::new(10, 0, 0, 1).into(),
        dst: Ipv4Addr::new(10, 0, 0, 2).into(),
        protocol: 17,
        src_port: 1,
        dst_port: 2,
        start_ms: NOW,
        end_ms: NOW,
        packets: 1,
        bytes: 1,
        rev_packets: 0,
        rev_bytes: 0,
        verdict: Verdict::Allowed,
        rule: "".into(),
        generation: 1,
    };
    let templates_at = |exporter: &mut Exporter, at: i64| {
        let messages = exporter.encode(std::slice::from_ref(&record), at);
        assert_eq!(messages.len(), 1);
        has_templates(&messages[0])
    };
    assert!(templates_at(&mut exporter, NOW));
    assert!(!templates_at(&mut exporter, NOW + 59_999));
    assert!(templates_at(&mut exporter, NOW + 60_000));
    assert!(!templates_at(&mut exporter, NOW + 60_001));
    // A clock that steps back does not trigger a refresh.
    assert!(!templates_at(&mut exporter, NOW));
    assert_eq!(exporter.sequence(), 5);
}

#[test]
fn many_records_split_across_messages_at_the_mtu() {
    let mut exporter = Exporter::new(ExporterConfig::default()).unwrap();
    let record = |i: u16| FlowRecord {
        device: "dpu-1".into(),
        kind: RecordKind::End,
        end_reason: Some(EndReason::Fin),
        src: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(),
        dst: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).into(),
        protocol: 6,
        src_port: 40000 + i,
        dst_port: 443,
        start_ms: NOW,
        end_ms: NOW + 5,
        packets: 3,
        bytes: 180,
        rev_packets: 2,
        rev_bytes: 120,
        verdict: Verdict::Allowed,
        rule: "web/allow-https".into(),
        generation: 9,
    };
    let records: Vec<_> = (0..100).map(record).collect();
    let messages = exporter.encode(&records, NOW);
    // 119 bytes per record: 8 in the first message (after 380 bytes of templates), then
    // 11 per 1400-byte message.
    assert_eq!(messages.len(), 10);
    assert_eq!(messages[0].len(), 16 + 380 + 4 + 8 * 119);
    assert_eq!(messages[1].len(), 16 + 4 + 11 * 119);
    assert!(messages.iter().all(|m| m.len() <= 1400));
    let mut collector = Collector::default();
    let decoded: Vec<_> = messages
        .iter()
        .flat_map(|m| collector.decode(from(), m, NOW).unwrap())
        .collect();
    assert_eq!(decoded, records);
}
