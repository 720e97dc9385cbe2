//! Planning device programs: per-rule placement per profile, and hardware + software ==
//! software on every direction's rows.

use std::net::IpAddr;

use palisade_classifier::{Engine, Key};
use palisade_hw_profiles::{builtin, builtins};
use palisade_offload::{Offloaded, PlanOptions, RulePlace, plan_program};
use palisade_program::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn rule(
    id: &str,
    direction: Direction,
    remote: Option<u32>,
    ports: Vec<PortRange>,
    action: Action,
) -> Rule {
    Rule {
        id: id.into(),
        direction,
        endpoints: vec![0, 1],
        remote,
        protocol: (!ports.is_empty()).then_some(Protocol::TCP),
        src_ports: vec![],
        dst_ports: ports,
        action,
        log: false,
        audit: false,
        mirror: None,
        redirect: None,
    }
}

fn program() -> DeviceProgram {
    DeviceProgram::new(ProgramParts {
        format: FORMAT_VERSION,
        device: "dpu".into(),
        generation: 1,
        endpoints: vec![
            Endpoint {
                name: "p/a/eth0".into(),
                addresses: vec![ip("10.0.0.1"), ip("2001:db8::1")],
            },
            Endpoint {
                name: "p/b/eth0".into(),
                addresses: vec![ip("10.0.0.2")],
            },
        ],
        address_sets: vec![AddressSet {
            name: "net".into(),
            prefixes: PrefixSet::from_prefixes([
                "10.1.0.0/16".parse().unwrap(),
                "192.0.2.0/24".parse().unwrap(),
            ]),
        }],
        tiers: vec![
            Tier {
                kind: TierKind::Admin,
                rules: vec![rule(
                    "admin/quarantine",
                    Direction::Egress,
                    Some(0),
                    vec![],
                    Action::Deny,
                )],
                defaults: vec![TierDefaults::both(Action::NextTier); 2],
            },
            Tier {
                kind: TierKind::Application,
                rules: vec![
                    rule(
                        "app/web",
                        Direction::Ingress,
                        None,
                        vec![PortRange::single(443)],
                        Action::Allow,
                    ),
                    rule(
                        "app/high",
                        Direction::Egress,
                        None,
                        vec![PortRange::new(1024, 65535).unwrap()],
                        Action::Allow,
                    ),
                ],
                defaults: vec![TierDefaults::both(Action::Deny); 2],
            },
        ],
        foreign: Action::Allow,
    })
    .unwrap()
}

#[test]
fn each_rule_is_reported_where_it_runs() {
    let place = |profile: &str| {
        plan_program(
            &program(),
            &builtin(profile).unwrap(),
            PlanOptions::default(),
        )
        .unwrap()
        .rules
        .into_iter()
        .map(|r| (r.id, r.place))
        .collect::<Vec<_>>()
    };
    let mlx = place("connectx-6-dx");
    // The quarantine set is IPv4 only: 2 local addresses x 2 prefixes, all in hardware.
    assert_eq!(mlx[0].1, RulePlace::Hardware { entries: 4 }, "{mlx:?}");
    // Endpoint a also has an IPv6 address: rows to `any` from it stay in software.
    let RulePlace::Split { reason, .. } = &mlx[1].1 else {
        panic!("{mlx:?}")
    };
    assert_eq!(reason, "IPv6 rows stay in software");
    let ipu = place("ipu-e2100");
    assert!(ipu.iter().all(|(_, p)| matches!(p, RulePlace::Software { reason } if reason == "the device has no rte_flow offload")), "{ipu:?}");
    let small = place("sim-small");
    // 1024-65535 expands to 64512 exact ports on a per-value device.
    let RulePlace::Software { reason } = &small[2].1 else {
        panic!("{small:?}")
    };
    assert!(reason.contains("64512 exact entries"), "{reason}");
}

#[test]
fn hardware_plus_software_equals_software_per_direction() {
    let program = program();
    let keys: Vec<Key<u32>> = [
        ("10.0.0.1", "10.1.2.3", 80),
        ("10.0.0.2", "192.0.2.7", 2000),
        ("10.0.0.1", "198.51.100.1", 5000),
        ("10.1.0.9", "10.0.0.2", 443),
        ("198.51.100.1", "10.0.0.1", 22),
    ]
    .iter()
    .flat_map(|(s, d, port)| {
        [0u8, 1].map(|tag| Key {
            tag,
            src: u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()),
            dst: u32::from(d.parse::<std::net::Ipv4Addr>().unwrap()),
            sport: 40000,
            dport: *port,
            proto: 6,
            local: 0,
        })
    })
    .collect();
    for profile in builtins().unwrap() {
        let plan = plan_program(&program, &profile, PlanOptions::default()).unwrap();
        for rows in [&plan.egress_rows, &plan.ingress_rows] {
            let software = Engine::build(rows.iter().copied()).unwrap();
            let both = Offloaded::new(rows, &profile, PlanOptions::default()).unwrap();
            for k in keys
                .iter()
                .filter(|k| rows.first().is_some_and(|(r, _, _)| r.tag == k.tag))
            {
                assert_eq!(
                    both.lookup(k).unwrap(),
                    software.lookup(k).map(|m| m.id),
                    "{}: {k:?}",
                    profile.name()
                );
            }
        }
    }
}

#[test]
fn both_directions_together_fill_the_table_to_its_capacity() {
    // 301 ingress and 300 egress rules of one exact entry each on a 256-entry device: the
    // proportional shares round to 128 + 127; egress takes what ingress left, so no entry
    // goes unused while rules wait in software.
    let rules = |direction: Direction, n: u16| -> Vec<Rule> {
        (0..n)
            .map(|i| Rule {
                endpoints: vec![1],
                ..rule(
                    &format!("app/{direction:?}/{i}"),
                    direction,
                    None,
                    vec![PortRange::single(1000 + i)],
                    Action::Allow,
                )
            })
            .collect()
    };
    let mut parts = program().parts().clone();
    parts.tiers = vec![Tier {
        kind: TierKind::Application,
        rules: [
            rules(Direction::Ingress, 301),
            rules(Direction::Egress, 300),
        ]
        .concat(),
        defaults: vec![TierDefaults::both(Action::Deny); 2],
    }];
    let program = DeviceProgram::new(parts).unwrap();
    let plan = plan_program(
        &program,
        &builtin("sim-small").unwrap(),
        PlanOptions::default(),
    )
    .unwrap();
    let mut hardware = 0;
    let mut software = 0;
    for r in &plan.rules {
        match &r.place {
            RulePlace::Hardware { entries } => hardware += entries,
            RulePlace::Software { .. } => software += 1,
            other => panic!("{}: {other:?}", r.id),
        }
    }
    assert_eq!(hardware, 256, "{software} rules in software");
    assert_eq!(software, 601 - 256);
}
