//! The compiled classifier gives the reference interpreter's verdict — decision by decision,
//! side by side — on random device programs and packets (IPv4 and IPv6).

use std::net::IpAddr;

use palisade_classifier::{Decided, ProgramClassifier};
use palisade_program::*;
use proptest::prelude::*;

const ADDRS: [&str; 6] = [
    "10.0.0.1",
    "10.0.0.2",
    "10.0.1.7",
    "192.0.2.9",
    "2001:db8::1",
    "2001:db8::2",
];

fn ip(i: usize) -> IpAddr {
    ADDRS[i % ADDRS.len()].parse().unwrap()
}

fn prefix() -> impl Strategy<Value = Prefix> {
    (
        0usize..ADDRS.len(),
        prop_oneof![
            Just(0u8),
            Just(8),
            Just(24),
            Just(31),
            Just(32),
            Just(64),
            Just(128)
        ],
    )
        .prop_map(|(a, l)| Prefix::truncating(ip(a), l))
}

fn ports() -> impl Strategy<Value = Vec<PortRange>> {
    prop_oneof![
        Just(vec![]),
        Just(vec![PortRange::single(80)]),
        Just(vec![
            PortRange::single(22),
            PortRange::new(8000, 8080).unwrap()
        ]),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::Allow),
        Just(Action::Deny),
        Just(Action::NextTier)
    ]
}

#[derive(Clone, Debug)]
struct GenRule {
    direction: Direction,
    endpoints: Vec<u32>,
    remote: Option<u32>,
    protocol: Option<Protocol>,
    src_ports: Vec<PortRange>,
    dst_ports: Vec<PortRange>,
    action: Action,
    audit: bool,
}

fn rule(n_endpoints: usize, n_sets: usize) -> impl Strategy<Value = GenRule> {
    (
        prop_oneof![Just(Direction::Ingress), Just(Direction::Egress)],
        proptest::collection::btree_set(0..n_endpoints as u32, 1..=n_endpoints),
        proptest::option::of(0..n_sets.max(1) as u32),
        prop_oneof![
            Just(None),
            Just(Some(Protocol::TCP)),
            Just(Some(Protocol::UDP)),
            Just(Some(Protocol::ICMP))
        ],
        ports(),
        ports(),
        action(),
        any::<bool>(),
    )
        .prop_map(
            move |(direction, endpoints, remote, protocol, sp, dp, action, audit)| {
                let ports_ok = protocol.is_some_and(|p| p.has_ports());
                GenRule {
                    direction,
                    endpoints: endpoints.into_iter().collect(),
                    remote: remote.filter(|_| n_sets > 0),
                    protocol,
                    src_ports: if ports_ok { sp } else { vec![] },
                    dst_ports: if ports_ok { dp } else { vec![] },
                    action,
                    audit: audit && action == Action::Deny,
                }
            },
        )
}

fn program() -> impl Strategy<Value = DeviceProgram> {
    (1usize..4, 0usize..3)
        .prop_flat_map(|(n_endpoints, n_sets)| {
            (
                Just(n_endpoints),
                proptest::collection::vec(proptest::collection::vec(prefix(), 1..4), n_sets),
                proptest::collection::vec(
                    (
                        any::<bool>(),
                        proptest::collection::vec(rule(n_endpoints, n_sets), 0..6),
                        proptest::collection::vec((action(), action()), n_endpoints),
                    ),
                    3,
                ),
                prop_oneof![Just(Action::Allow), Just(Action::Deny)],
            )
        })
        .prop_map(|(n_endpoints, sets, tiers, foreign)| {
            // Endpoints own disjoint addresses: endpoint i gets address i (and the IPv6 one for i = 0).
            let endpoints = (0..n_endpoints)
                .map(|i| {
                    let mut addresses = vec![ip(i)];
                    if i == 0 {
                        addresses.push(ip(4));
                    }
                    addresses.sort();
                    Endpoint {
                        name: format!("ep{i}"),
                        addresses,
                    }
                })
                .collect();
            let tiers = tiers
                .into_iter()
                .zip(TierKind::ALL)
                .filter(|((present, _, _), _)| *present)
                .map(|((_, rules, defaults), kind)| Tier {
                    kind,
                    rules: rules
                        .into_iter()
                        .enumerate()
                        .map(|(i, r)| Rule {
                            id: format!("{kind}-{i}"),
                            direction: r.direction,
                            endpoints: r.endpoints,
                            remote: r.remote,
                            protocol: r.protocol,
                            src_ports: r.src_ports,
                            dst_ports: r.dst_ports,
                            action: r.action,
                            log: false,
                            audit: r.audit,
                            mirror: None,
                            redirect: None,
                        })
                        .collect(),
                    defaults: defaults
                        .into_iter()
                        .map(|(i, e)| TierDefaults {
                            ingress: i,
                            egress: e,
                        })
                        .collect(),
                })
                .collect();
            DeviceProgram::new(ProgramParts {
                format: FORMAT_VERSION,
                device: "d".into(),
                generation: 1,
                endpoints,
                address_sets: sets
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| AddressSet {
                        name: format!("s{i}"),
                        prefixes: PrefixSet::from_prefixes(p),
                    })
                    .collect(),
                tiers,
                foreign,
            })
            .unwrap()
        })
}

fn packet() -> impl Strategy<Value = Packet> {
    (
        0usize..ADDRS.len(),
        0usize..ADDRS.len(),
        prop_oneof![
            Just(Protocol::TCP),
            Just(Protocol::UDP),
            Just(Protocol::ICMP),
            Just(Protocol(47))
        ],
        prop_oneof![Just(22u16), Just(80), Just(8001), Just(40000)],
        prop_oneof![Just(22u16), Just(80), Just(8001), Just(443)],
    )
        // A packet has one IP version: keep both ends in the source's family.
        .prop_filter("one address family", |(s, d, ..)| {
            ip(*s).is_ipv4() == ip(*d).is_ipv4()
        })
        .prop_map(|(s, d, protocol, src_port, dst_port)| Packet {
            src: ip(s),
            dst: ip(d),
            protocol,
            src_port,
            dst_port,
        })
}

fn rule_index(program: &DeviceProgram, tier: TierKind, rule: &Rule) -> usize {
    let t = program.tiers().iter().find(|t| t.kind == tier).unwrap();
    t.rules.iter().position(|r| r.id == rule.id).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn classifier_equals_reference_interpreter(program in program(), packets in proptest::collection::vec(packet(), 1..20)) {
        let classifier = ProgramClassifier::new(program.clone()).unwrap();
        for p in packets {
            let want = program.evaluate(&p);
            let got = classifier.judge(&p);
            prop_assert_eq!(got.allowed, want.allowed, "packet {:?}", p);
            prop_assert_eq!(got.sides.len(), want.sides.len());
            for (g, w) in got.sides.iter().zip(&want.sides) {
                prop_assert_eq!(g.endpoint, w.endpoint);
                prop_assert_eq!(g.direction, w.direction);
                prop_assert_eq!(g.allowed, w.allowed);
                let expected = match w.decision {
                    Decision::Rule { tier, rule } => Decided::Rule(tier, rule_index(&program, tier, rule)),
                    Decision::TierDefault { tier, action } => Decided::Default(tier, action),
                    Decision::EndOfTiers => Decided::EndOfTiers,
                };
                prop_assert_eq!(g.decided, expected, "packet {:?}", p);
                let passed: Vec<(TierKind, usize)> = w.passed.iter().map(|(t, r)| (*t, rule_index(&program, *t, r))).collect();
                prop_assert_eq!(&g.passed, &passed);
            }
        }
    }
}
