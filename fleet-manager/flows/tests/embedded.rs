//! The embedded store on a real redb file: what is appended is found again by window and
//! filter (the same answers as evaluating the query over the flows in memory), survives a
//! reopen, and retention drops whole old blocks.

use palisade_flows::query::{Filter, parse_group_by};
use palisade_flows::{
    Aggregator, EmbeddedStore, Flow, FlowRecord, FlowStore, Query, RecordKind, Verdict,
};

fn flow(i: u64, end_ms: i64) -> Flow {
    let tiers = ["web", "app", "db"];
    Flow {
        record: FlowRecord {
            device: format!("dpu-{}", i % 2 + 1).into(),
            kind: [RecordKind::Start, RecordKind::Update, RecordKind::End][(i % 3) as usize],
            end_reason: None,
            src: format!("10.1.0.{}", i % 7).parse().unwrap(),
            dst: format!("10.1.1.{}", i % 5).parse().unwrap(),
            protocol: if i.is_multiple_of(4) { 17 } else { 6 },
            src_port: 40000 + (i % 11) as u16,
            dst_port: [8080, 5432, 22][(i % 3) as usize],
            start_ms: end_ms - 10,
            end_ms,
            packets: i % 13,
            bytes: 100 * (i % 13),
            rev_packets: i % 3,
            rev_bytes: 60 * (i % 3),
            verdict: if i.is_multiple_of(5) {
                Verdict::Denied
            } else {
                Verdict::Allowed
            },
            rule: if i.is_multiple_of(5) {
                "".into()
            } else {
                "shop/0020".into()
            },
            generation: i / 100,
        },
        src_endpoint: format!("shop/w{}/eth0", i % 7).into(),
        dst_endpoint: format!("shop/a{}/eth0", i % 5).into(),
        src_tags: [format!("tier={}", tiers[(i % 3) as usize])].into(),
        dst_tags: [format!("tier={}", tiers[(i % 2 + 1) as usize])].into(),
    }
}

fn in_memory(flows: &[Flow], q: &Query) -> Vec<palisade_flows::Row> {
    let mut agg = Aggregator::new(&q.group_by);
    for f in flows.iter().filter(|f| q.selects(f)) {
        agg.add(f);
    }
    agg.finish(q)
}

#[tokio::test]
async fn appended_flows_answer_queries_survive_reopen_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.redb");
    let all: Vec<Flow> = (0..3000).map(|i| flow(i, 1_000 + i as i64)).collect();
    {
        let store = EmbeddedStore::open(&path).unwrap();
        // Several appends (blocks), one larger than a block.
        store.append(all[..100].to_vec()).await.unwrap();
        store.append(all[100..200].to_vec()).await.unwrap();
        store.append(all[200..].to_vec()).await.unwrap();
    }
    let store = EmbeddedStore::open(&path).unwrap();
    let queries = [
        ("", "", 0, 10_000),
        ("verdict=denied", "dst.tier", 0, 10_000),
        (
            "dst.tier=db and port=8080",
            "src.tier,dst.tier",
            1_500,
            2_500,
        ),
        ("src=10.1.0.0/30", "device,rule", 0, 1_200),
        ("proto=udp", "src,dst", 3_000, 3_500),
        ("tag=tier=app", "generation", 2_000, 4_000),
    ];
    for (filter, group, from, to) in queries {
        let q = Query {
            from_ms: from,
            to_ms: to,
            filter: Filter::parse(filter).unwrap(),
            group_by: parse_group_by(group).unwrap(),
            limit: 5,
            ..Query::default()
        };
        let got = store.aggregate(&q).await.unwrap();
        assert_eq!(got, in_memory(&all, &q), "{filter} / {group}");
        let listed = store.flows(&q, 0).await.unwrap();
        let expected: Vec<&Flow> = all.iter().filter(|f| q.selects(f)).collect();
        assert_eq!(listed.len(), expected.len(), "{filter}");
        assert!(
            listed
                .windows(2)
                .all(|w| w[0].record.end_ms <= w[1].record.end_ms)
        );
    }
    let everything = Query {
        from_ms: 0,
        to_ms: i64::MAX,
        ..Query::default()
    };
    assert_eq!(store.aggregate(&everything).await.unwrap()[0].records, 3000);
    // Retention: the first two blocks (end_ms < 1200) go; the big one holds later flows.
    let gone = store.expire(1_200).await.unwrap();
    assert_eq!(gone, 200);
    assert_eq!(store.aggregate(&everything).await.unwrap()[0].records, 2800);
    assert_eq!(store.expire(1_200).await.unwrap(), 0);
}

#[tokio::test]
async fn a_limited_listing_is_the_oldest_flows_even_across_late_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("flows.redb")).unwrap();
    let early: Vec<Flow> = (0..100).map(|i| flow(i, 1_000 + i as i64)).collect();
    // Reported late: older than most of the first block, stored after it.
    let late: Vec<Flow> = (0..10).map(|i| flow(500 + i, 1_010 + i as i64)).collect();
    store.append(early.clone()).await.unwrap();
    store.append(late.clone()).await.unwrap();
    let q = Query {
        from_ms: 0,
        to_ms: i64::MAX,
        ..Query::default()
    };
    let oldest = store.flows(&q, 20).await.unwrap();
    let ends: Vec<i64> = oldest.iter().map(|f| f.record.end_ms).collect();
    assert_eq!(ends.len(), 20);
    assert_eq!(ends.iter().max(), Some(&1_014), "{ends:?}");
}

mod one_pass {
    //! Records enriched and encoded in one pass (`append_records`, what collectors use)
    //! are stored exactly as the same records enriched into flows and appended.

    use std::sync::{Arc, RwLock};

    use palisade_flows::enrich::{End, View};
    use palisade_flows::{EmbeddedStore, Enricher, Flow, FlowStore, Query};
    use proptest::prelude::*;

    use super::flow;

    /// Views in force from 0 and from `switch_ms`; `known` of the 7 source addresses are
    /// endpoints (the others get empty ends).
    fn enricher(switch_ms: i64, known: usize) -> Enricher {
        let mut e = Enricher::new();
        for (at, tier) in [(0, "web"), (switch_ms, "dev")] {
            let mut view = View::default();
            for k in 0..known {
                view.insert(
                    format!("10.1.0.{k}").parse().unwrap(),
                    Arc::new(End {
                        endpoint: format!("shop/w{k}/eth0").into(),
                        tags: [format!("tier={tier}"), format!("n={k}")].into(),
                    }),
                );
            }
            view.insert(
                "10.1.1.1".parse().unwrap(),
                Arc::new(End {
                    endpoint: "shop/db/eth0".into(),
                    tags: ["tier=db".to_string()].into(),
                }),
            );
            e.update(at, view);
        }
        e
    }

    /// Every block of a later append is encoded into the buffer of a committed one, whatever
    /// their sizes: longer and shorter blocks, other names, must read back as written.
    #[test]
    fn reused_block_buffers_hold_only_their_new_block() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("reuse.redb")).unwrap();
        let enricher = Arc::new(RwLock::new(enricher(0, 7)));
        let mut all = Vec::new();
        let mut next = 0u64;
        for (round, n) in [(0, 20_000), (1, 9_000), (2, 17_000), (3, 100), (4, 8_500)] {
            let records: Vec<_> = (0..n)
                .map(|_| {
                    let mut r = flow(next, 1_000 + next as i64).record;
                    r.device = format!("round-{round}-dpu-{}", next % 3).into();
                    next += 1;
                    r
                })
                .collect();
            all.extend(records.clone());
            let (stored, _) = rt
                .block_on(store.append_records(records, Arc::clone(&enricher)))
                .unwrap();
            assert_eq!(stored, n);
        }
        let everything = Query {
            from_ms: 0,
            to_ms: i64::MAX,
            ..Query::default()
        };
        let got = rt.block_on(store.flows(&everything, 0)).unwrap();
        let got: Vec<_> = got.into_iter().map(|f| f.record).collect();
        assert_eq!(got.len(), all.len());
        assert!(
            got == all,
            "the records read back differ from those appended"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn one_pass_stores_what_enrich_then_append_stores(
            n in 0usize..20_000,
            split in 0.0f64..1.0,
            switch_ms in 0i64..25_000,
            known in 0usize..8,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let (a, b) = (
                EmbeddedStore::open(&dir.path().join("a.redb")).unwrap(),
                EmbeddedStore::open(&dir.path().join("b.redb")).unwrap(),
            );
            let records: Vec<_> = (0..n as u64).map(|i| flow(i, 1_000 + i as i64).record).collect();
            let enricher = enricher(switch_ms, known);
            let flows: Vec<Flow> = records.iter().cloned().map(|r| enricher.enrich(r)).collect();
            let all = Query { from_ms: 0, to_ms: i64::MAX, ..Query::default() };
            // In two appends: the second encodes into the first one's block buffers.
            let mut first = records;
            let second = first.split_off((n as f64 * split) as usize);
            let enricher = Arc::new(RwLock::new(enricher));
            let (got, want) = rt.block_on(async {
                let mut stored = 0;
                for part in [first, second] {
                    let (k, _buffer) = a.append_records(part, Arc::clone(&enricher)).await.unwrap();
                    stored += k;
                }
                assert_eq!(stored, n);
                b.append(flows).await.unwrap();
                (a.flows(&all, 0).await.unwrap(), b.flows(&all, 0).await.unwrap())
            });
            prop_assert_eq!(got.len(), n);
            prop_assert_eq!(got, want);
        }
    }
}
