//! The ClickHouse store on a real server (started by each test, see `server/`): it answers
//! every query as the in-memory `Aggregator` does, keeps what it was given across a reopen,
//! on one table or through a Distributed table over two shards, expires exactly the older
//! flows, and stores any text as it was.

mod server;

use std::net::IpAddr;

use palisade_flow::EndReason;
use palisade_flows::query::{Condition, Field, Filter, Operand, parse_group_by};
use palisade_flows::{
    Aggregator, Flow, FlowRecord, FlowStore, OrderBy, Query, RecordKind, Row, Verdict,
};
use palisade_flows_clickhouse::{ClickHouseStore, Config, Layout};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use server::Server;

const DAY: i64 = 86_400_000;

/// A small deterministic mixer: varied values without a random number crate.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn pick<'a>(list: &[&'a str], r: u64) -> &'a str {
    list[(r % list.len() as u64) as usize]
}

/// Addresses of both families, with the shapes whose text is easy to get wrong.
fn address(r: u64) -> IpAddr {
    let tricky = [
        "::",
        "::1",
        "::1.2.3.4",
        "::ffff:10.1.0.1",
        "::0:0:5",
        "1::",
        "2001:db8::1:0:0:1",
        "2001:db8:0:1:1:1:1:1",
        "fe80::1:0:0:0:0",
        "0.0.0.0",
        "255.255.255.255",
    ];
    match r % 10 {
        0 => tricky[(r / 10 % tricky.len() as u64) as usize]
            .parse()
            .unwrap(),
        1..=5 => IpAddr::from([10, (r >> 8) as u8 % 3, (r >> 16) as u8 % 4, (r >> 24) as u8]),
        _ => {
            let low = (r >> 8) % 300;
            IpAddr::from([
                0x2001,
                0xdb8,
                ((r >> 20) % 3) as u16,
                0,
                0,
                0,
                (low >> 8) as u16,
                low as u16,
            ])
        }
    }
}

/// Flow `i`: three records per session, end times over about three days.
fn flow(i: u64) -> Flow {
    let s = mix(i / 3);
    let r = mix(i);
    let start_ms = (s % (3 * DAY as u64)) as i64;
    let tags = [
        "tier=web",
        "tier=app",
        "tier=db",
        "application=shop",
        "application=pay",
        "env=prod",
        "tier=",
        "bare",
        "team=o'neil\\ops",
    ];
    let pick_tags = |bits: u64| {
        let mut t: Vec<String> = tags
            .iter()
            .enumerate()
            .filter(|(k, _)| (bits >> k) & 1 == 1 && (bits >> (k + 9)) & 1 == 1)
            .map(|(_, t)| t.to_string())
            .collect();
        t.sort();
        t
    };
    let huge = r.is_multiple_of(53);
    Flow {
        record: FlowRecord {
            device: pick(&["dpu-1", "dpu-2", "10.0.0.9", "dpu-'3'"], s).into(),
            kind: [RecordKind::Start, RecordKind::Update, RecordKind::End][(i % 3) as usize],
            end_reason: (i % 3 == 2).then_some(
                [EndReason::Idle, EndReason::Fin, EndReason::PolicyChange][(r % 3) as usize],
            ),
            src: address(s >> 3),
            dst: address(s >> 5),
            protocol: [6, 17, 1, 58, 132, 47, 0, 255][(s >> 7) as usize % 8],
            src_port: 40000 + (s >> 11) as u16 % 7,
            dst_port: [8080, 5432, 22, 0][(s >> 13) as usize % 4],
            start_ms,
            end_ms: start_ms + (i % 3) as i64 * 1000 + (r % 500) as i64,
            packets: if huge { u64::MAX - r % 7 } else { r % 13 },
            bytes: if huge { u64::MAX / 2 } else { 100 * (r % 17) },
            rev_packets: r % 3,
            rev_bytes: 60 * (r % 5),
            verdict: if s.is_multiple_of(5) {
                Verdict::Denied
            } else {
                Verdict::Allowed
            },
            rule: pick(&["", "shop/0020", "admin/0010", "o'brien\\rule"], s >> 17).into(),
            generation: if s.is_multiple_of(41) {
                u64::MAX
            } else {
                s % 4
            },
        },
        src_endpoint: pick(&["shop/web/eth0", "", "db/pg/eth1", "noslash"], s >> 19).into(),
        dst_endpoint: pick(&["shop/app/eth0", "", "pay/api/eth0"], s >> 23).into(),
        src_tags: pick_tags(s >> 27).into(),
        dst_tags: pick_tags(s >> 45).into(),
    }
}

fn in_memory(flows: &[Flow], q: &Query) -> Vec<Row> {
    let mut agg = Aggregator::new(&q.group_by);
    for f in flows.iter().filter(|f| q.selects(f)) {
        agg.add(f);
    }
    agg.finish(q)
}

fn sorted(mut flows: Vec<Flow>) -> Vec<Flow> {
    flows.sort_by_cached_key(|f| format!("{f:?}"));
    flows
}

fn query(filter: &str, group: &str, order: OrderBy, limit: usize) -> Query {
    Query {
        from_ms: 0,
        to_ms: i64::MAX,
        filter: Filter::parse(filter).unwrap(),
        group_by: parse_group_by(group).unwrap(),
        order,
        limit,
    }
}

/// Queries over every kind of field, prefix, negation, grouping key, order and limit.
fn queries() -> Vec<Query> {
    let mut qs = vec![
        query("", "", OrderBy::Bytes, 0),
        query("verdict=denied", "dst.tier", OrderBy::Bytes, 0),
        query(
            "verdict!=denied and proto=tcp",
            "proto",
            OrderBy::Packets,
            0,
        ),
        query(
            "",
            "src.application,src.tier,dst.application,dst.tier",
            OrderBy::Bytes,
            0,
        ),
        query("", "src.tier,dst.tier", OrderBy::Sessions, 3),
        query("src=10.1.0.0/16", "src", OrderBy::Bytes, 0),
        query(
            "dst=10.0.0.0/8 and src!=10.2.0.0/15",
            "dst,src",
            OrderBy::Packets,
            10,
        ),
        query("addr=2001:db8:1::/48", "src,dst", OrderBy::Bytes, 0),
        query("src=2001:db8::/61", "src", OrderBy::Sessions, 0),
        query("dst=::/0", "dst", OrderBy::Bytes, 0),
        query("src=0.0.0.0/0", "device", OrderBy::Bytes, 0),
        query(
            "src=::1.2.3.4 and dst!=::ffff:10.1.0.1",
            "src",
            OrderBy::Bytes,
            0,
        ),
        query("addr=::ffff:10.1.0.1/128", "src,dst", OrderBy::Bytes, 0),
        query("addr=10.1.0.1", "src,dst", OrderBy::Bytes, 0),
        query(
            "tag=tier=db",
            "src.endpoint,dst.endpoint",
            OrderBy::Bytes,
            0,
        ),
        query(
            "tag!=env=prod and src.tier=",
            "src.env",
            OrderBy::Packets,
            0,
        ),
        query(
            "src.tier=web and dst.tier!=app",
            "rule,verdict",
            OrderBy::Bytes,
            0,
        ),
        query("rule=", "device,generation", OrderBy::Sessions, 0),
        query("rule!=shop/0020", "rule", OrderBy::Bytes, 0),
        query(
            "port=5432 and sport!=40003",
            "port,sport",
            OrderBy::Packets,
            5,
        ),
        query("proto=icmpv6", "src.project,dst.project", OrderBy::Bytes, 0),
        query("proto=47", "proto,src.team", OrderBy::Bytes, 0),
        query(
            "generation=18446744073709551615",
            "generation",
            OrderBy::Bytes,
            0,
        ),
        query(
            "src.project=shop and dst.project!=",
            "src.endpoint",
            OrderBy::Bytes,
            0,
        ),
        query("src.endpoint=noslash", "src.project", OrderBy::Bytes, 0),
        query("device=dpu-'3'", "src.team,dst.team", OrderBy::Bytes, 0),
        query("src.team=o'neil\\ops", "device", OrderBy::Bytes, 0),
        query("tag=team=o'neil\\ops", "rule", OrderBy::Bytes, 1),
        query("", "src.bare,dst.nothing", OrderBy::Bytes, 0),
        query(
            "",
            "device,verdict,rule,generation,proto,port,sport",
            OrderBy::Packets,
            20,
        ),
        query(
            "",
            "src.endpoint,dst.endpoint,src,dst",
            OrderBy::Sessions,
            50,
        ),
    ];
    // Windows: inside one day, across a partition boundary, empty.
    for (from, to) in [(0, DAY / 2), (DAY - 3_600_000, DAY + 3_600_000), (5, 5)] {
        let mut q = query("verdict=allowed", "src.tier", OrderBy::Bytes, 0);
        (q.from_ms, q.to_ms) = (from, to);
        qs.push(q);
    }
    // Operands no parser makes: text compared with the field's text, others never hold.
    let direct = |field: Field, negated: bool, value: Operand| {
        let mut q = query("", "proto", OrderBy::Bytes, 0);
        q.filter.conditions.push(Condition {
            field,
            negated,
            value,
        });
        q
    };
    qs.push(direct(Field::Protocol, false, Operand::Text("udp".into())));
    qs.push(direct(
        Field::Verdict,
        false,
        Operand::Text("denied".into()),
    ));
    qs.push(direct(Field::Src, true, Operand::Text("10.1.0.1".into())));
    qs.push(direct(Field::Generation, false, Operand::Text("2".into())));
    qs.push(direct(Field::Addr, false, Operand::Text(String::new())));
    qs.push(direct(Field::Device, false, Operand::Number(1)));
    qs.push(direct(Field::Device, true, Operand::Number(1)));
    qs.push(direct(Field::DstPort, false, Operand::Number(70_000)));
    qs.push(direct(
        Field::SrcTag("a=b".into()),
        false,
        Operand::Text(String::new()),
    ));
    qs
}

async fn assert_answers(store: &ClickHouseStore, all: &[Flow], q: &Query) {
    let got = store.aggregate(q).await.unwrap();
    assert_eq!(got, in_memory(all, q), "aggregate: {q:?}");
    let expected: Vec<Flow> = all.iter().filter(|f| q.selects(f)).cloned().collect();
    let listed = store.flows(q, 0).await.unwrap();
    assert!(
        listed
            .windows(2)
            .all(|w| w[0].record.end_ms <= w[1].record.end_ms),
        "oldest first: {q:?}"
    );
    assert_eq!(sorted(listed), sorted(expected.clone()), "flows: {q:?}");
    // A limit keeps the oldest.
    let limited = store.flows(q, 7).await.unwrap();
    let mut ends: Vec<i64> = expected.iter().map(|f| f.record.end_ms).collect();
    ends.sort_unstable();
    ends.truncate(7);
    let got: Vec<i64> = limited.iter().map(|f| f.record.end_ms).collect();
    assert_eq!(got, ends, "flows with a limit: {q:?}");
}

fn single(server: &Server, database: &str) -> Config {
    Config {
        database: database.into(),
        ..Config::new(server.url())
    }
}

fn sharded(server: &Server, database: &str) -> Config {
    Config {
        layout: Layout::Sharded {
            cluster: server::CLUSTER.into(),
            shards: server.shards(),
        },
        ..single(server, database)
    }
}

/// Random queries over the values the flows hold.
fn arb_query() -> impl Strategy<Value = Query> {
    let condition = (
        prop::sample::select(vec![
            "device=dpu-1",
            "device=dpu-'3'",
            "verdict=denied",
            "rule=",
            "rule=o'brien\\rule",
            "generation=1",
            "proto=udp",
            "proto=255",
            "port=8080",
            "sport=40002",
            "src=10.1.0.0/16",
            "dst=10.0.2.0/23",
            "addr=10.2.3.0/24",
            "src=2001:db8:2::/47",
            "dst=2001:db8::100/120",
            "addr=::/1",
            "src.endpoint=db/pg/eth1",
            "dst.endpoint=",
            "src.project=shop",
            "dst.project=pay",
            "src.tier=web",
            "dst.tier=",
            "src.application=pay",
            "dst.team=o'neil\\ops",
            "tag=tier=db",
            "tag=tier=",
        ]),
        any::<bool>(),
    )
        .prop_map(|(text, negated)| {
            let mut c = Condition::parse(text).unwrap();
            c.negated = negated;
            c
        });
    let keys = prop::sample::subsequence(
        vec![
            "device",
            "verdict",
            "rule",
            "generation",
            "proto",
            "port",
            "sport",
            "src",
            "dst",
            "src.endpoint",
            "dst.endpoint",
            "src.project",
            "dst.project",
            "src.tier",
            "dst.tier",
            "src.application",
            "dst.env",
        ],
        0..4,
    );
    (
        prop::collection::vec(condition, 0..4),
        keys,
        prop::sample::select(vec![OrderBy::Bytes, OrderBy::Packets, OrderBy::Sessions]),
        0usize..12,
        (0..4 * DAY, 0..2 * DAY),
    )
        .prop_map(|(conditions, keys, order, limit, (from, len))| Query {
            from_ms: from,
            to_ms: from + len,
            filter: Filter { conditions },
            group_by: parse_group_by(&keys.join(",")).unwrap(),
            order,
            limit,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_equal_the_in_memory_evaluation() {
    let Some(server) = Server::start("answers_equal_the_in_memory_evaluation").await else {
        return;
    };
    let all: Vec<Flow> = (0..3000).map(flow).collect();
    let store = ClickHouseStore::open(&single(&server, "palisade"))
        .await
        .unwrap();
    for chunk in all.chunks(1000) {
        store.append(chunk.to_vec()).await.unwrap();
    }
    store.append(Vec::new()).await.unwrap();
    for q in queries() {
        assert_answers(&store, &all, &q).await;
    }
    // Random queries (each also checks flows()).
    let handle = tokio::runtime::Handle::current();
    let (all, store) = (&all, &store);
    tokio::task::block_in_place(|| {
        let mut runner = TestRunner::new(ProptestConfig {
            cases: 48,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        runner
            .run(&arb_query(), |q| {
                handle.block_on(assert_answers(store, all, &q));
                Ok(())
            })
            .unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopens_shards_and_expires() {
    let Some(server) = Server::start("reopens_shards_and_expires").await else {
        return;
    };
    // Five days of flows: retention drops days 0 and 1 and deletes half of day 2.
    let all: Vec<Flow> = (0..2000)
        .map(|i| {
            let mut f = flow(i);
            f.record.end_ms = i as i64 * (5 * DAY / 2000);
            f.record.start_ms = f.record.end_ms - 10;
            f
        })
        .collect();
    let everything = query("", "", OrderBy::Bytes, 0);
    let by_tiers = query("verdict=allowed", "src.tier,dst.tier", OrderBy::Sessions, 4);
    let cut = 2 * DAY + DAY / 2;
    let kept: Vec<Flow> = all
        .iter()
        .filter(|f| f.record.end_ms >= cut)
        .cloned()
        .collect();

    for (name, config) in [
        ("single", single(&server, "palisade")),
        ("sharded", sharded(&server, "palisade_dist")),
    ] {
        {
            let store = ClickHouseStore::open(&config).await.unwrap();
            store.append(all[..700].to_vec()).await.unwrap();
            store.append(all[700..].to_vec()).await.unwrap();
        }
        let store = ClickHouseStore::open(&config).await.unwrap();
        for q in [&everything, &by_tiers] {
            assert_answers(&store, &all, q).await;
        }
        assert_eq!(
            store.expire(cut).await.unwrap(),
            (all.len() - kept.len()) as u64,
            "{name}"
        );
        for q in [&everything, &by_tiers] {
            assert_answers(&store, &kept, q).await;
        }
        assert_eq!(store.expire(cut).await.unwrap(), 0, "{name}");
        assert_eq!(store.expire(i64::MIN).await.unwrap(), 0, "{name}");
    }

    // Days 0 and 1 went as partitions; day 2 lost its older half to one delete mutation.
    let client = server.client();
    let partitions: Vec<String> = client
        .query(
            "SELECT DISTINCT partition FROM system.parts \
             WHERE database = 'palisade' AND table = 'flows' AND active ORDER BY partition",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(partitions, ["2", "3", "4"]);
    let mutations: u64 = client
        .query("SELECT count() FROM system.mutations WHERE database = 'palisade'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(mutations, 1);

    // The Distributed table spread the rows over both shards' tables.
    let mut total = 0;
    for db in server::SHARD_DATABASES {
        let n: u64 = client
            .query(&format!("SELECT count() FROM {db}.flows_local"))
            .fetch_one()
            .await
            .unwrap();
        assert!(n > 0, "{db} holds no rows");
        total += n;
    }
    assert_eq!(total, kept.len() as u64);

    // The sharded store answers the property queries too.
    let store = ClickHouseStore::open(&sharded(&server, "palisade_dist"))
        .await
        .unwrap();
    store.expire(i64::MAX).await.unwrap();
    let all: Vec<Flow> = (0..1500).map(flow).collect();
    store.append(all.clone()).await.unwrap();
    for q in queries().iter().step_by(3) {
        assert_answers(&store, &all, q).await;
    }

    // A cluster that does not match the configuration is refused with what is wrong.
    let mut wrong = sharded(&server, "palisade_dist");
    if let Layout::Sharded { shards, .. } = &mut wrong.layout {
        shards.pop();
    }
    let e = ClickHouseStore::open(&wrong)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("has 2 shards in remote_servers, the config lists 1"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_text_round_trips_and_matches_only_itself() {
    let Some(server) = Server::start("any_text_round_trips_and_matches_only_itself").await else {
        return;
    };
    let texts = [
        "plain",
        "it's",
        "back\\slash",
        "\\'",
        "'); DROP TABLE palisade.flows; --",
        "quest?on ?? ?fields",
        "tab\tnew\nline\rcr",
        "nul\0byte",
        "double \"quote\" and `tick`",
        "ünïcödé ✓ 🚀",
        "%s {x:String} $1",
        "",
    ];
    let all: Vec<Flow> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut f = flow(i as u64);
            f.record.device = format!("d-{t}").into();
            f.record.rule = (*t).into();
            f.src_endpoint = format!("{t}/w/eth0").into();
            f.dst_endpoint = (*t).into();
            f.src_tags = [format!("kind={t}"), format!("x={t}=y")].into();
            f.dst_tags = [t.to_string()].into();
            f
        })
        .collect();
    let store = ClickHouseStore::open(&single(&server, "palisade"))
        .await
        .unwrap();
    store.append(all.clone()).await.unwrap();
    let everything = query("", "", OrderBy::Bytes, 0);
    assert_eq!(
        sorted(store.flows(&everything, 0).await.unwrap()),
        sorted(all.clone())
    );
    let groups = query(
        "",
        "device,rule,src.endpoint,src.project,dst.endpoint,src.kind,src.x",
        OrderBy::Bytes,
        0,
    );
    assert_answers(&store, &all, &groups).await;
    for t in texts {
        for (field, value) in [
            (Field::Rule, t.to_string()),
            (Field::Device, format!("d-{t}")),
            (Field::SrcProject, t.to_string()),
            (Field::DstEndpoint, t.to_string()),
            (Field::SrcTag("kind".into()), t.to_string()),
            (Field::SrcTag("x".into()), format!("{t}=y")),
            // A tag type ends at the first '=': this one names no tag.
            (Field::SrcTag(format!("x={t}")), "y".to_string()),
            (Field::Tag, t.to_string()),
            (Field::Tag, format!("kind={t}")),
        ] {
            for negated in [false, true] {
                let mut q = groups.clone();
                q.filter.conditions.push(Condition {
                    field: field.clone(),
                    negated,
                    value: Operand::Text(value.clone()),
                });
                assert_answers(&store, &all, &q).await;
            }
        }
    }
    // Nothing was dropped or rewritten by any of it.
    assert_eq!(
        store.aggregate(&everything).await.unwrap()[0].records,
        texts.len() as u64
    );
}
