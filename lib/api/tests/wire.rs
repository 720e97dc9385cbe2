//! Programs survive the wire, deltas rebuild their target exactly, and malformed or
//! tampered updates are refused with the field at fault.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use palisade_api::delta::{apply_delta, delta_between, receive, update_for};
use palisade_api::pb::control::v1::{ProgramUpdate, program_update::Body};
use palisade_api::wire::{program_from_pb, program_to_pb};
use palisade_api::{WireError, pb};
use palisade_program::*;
use proptest::prelude::*;
use prost::Message;

fn prefix_pool() -> Vec<Prefix> {
    let v4 =
        |a: u8, b: u8, len: u8| Prefix::truncating(IpAddr::V4(Ipv4Addr::new(10, a, b, 0)), len);
    vec![
        v4(1, 0, 16),
        v4(1, 2, 24),
        v4(2, 0, 24),
        v4(3, 4, 32),
        Prefix::truncating(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0)),
            64,
        ),
        Prefix::ANY_V4,
    ]
}

#[derive(Clone, Debug)]
struct GenRule {
    direction: bool,
    endpoint_mask: u8,
    remote: Option<u8>,
    tcp_port: Option<u16>,
    action: u8,
    log: bool,
}

/// A tier: present or not, its rules, per-endpoint (ingress, egress) default actions.
type GenTier = (bool, Vec<GenRule>, Vec<(u8, u8)>);

#[derive(Clone, Debug)]
struct GenProgram {
    endpoints: usize,
    sets: Vec<Vec<usize>>,
    tiers: Vec<GenTier>,
    foreign_deny: bool,
}

fn gen_program() -> impl Strategy<Value = GenProgram> {
    let rule = (
        any::<bool>(),
        1u8..16,
        proptest::option::of(0u8..4),
        proptest::option::of(prop_oneof![Just(22u16), Just(80), Just(443)]),
        0u8..3,
        any::<bool>(),
    )
        .prop_map(
            |(direction, endpoint_mask, remote, tcp_port, action, log)| GenRule {
                direction,
                endpoint_mask,
                remote,
                tcp_port,
                action,
                log,
            },
        );
    (
        1usize..5,
        proptest::collection::vec(proptest::collection::vec(0usize..6, 0..4), 0..4),
        proptest::collection::vec(
            (
                any::<bool>(),
                proptest::collection::vec(rule, 0..5),
                proptest::collection::vec((0u8..3, 0u8..3), 4),
            ),
            3,
        ),
        any::<bool>(),
    )
        .prop_map(|(endpoints, sets, tiers, foreign_deny)| GenProgram {
            endpoints,
            sets,
            tiers,
            foreign_deny,
        })
}

fn action(n: u8) -> Action {
    [Action::Allow, Action::Deny, Action::NextTier][n as usize % 3]
}

fn build(g: &GenProgram, generation: u64) -> DeviceProgram {
    let pool = prefix_pool();
    let endpoints: Vec<Endpoint> = (0..g.endpoints)
        .map(|i| Endpoint {
            name: format!("p/w{i}/eth0"),
            addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 168, 0, i as u8 + 1))],
        })
        .collect();
    let address_sets: Vec<AddressSet> = g
        .sets
        .iter()
        .enumerate()
        .map(|(i, members)| AddressSet {
            name: format!("set{i}"),
            prefixes: PrefixSet::from_prefixes(members.iter().map(|&m| pool[m])),
        })
        .collect();
    let kinds = [TierKind::Admin, TierKind::Application, TierKind::Baseline];
    let mut tiers = Vec::new();
    for (ti, (present, rules, defaults)) in g.tiers.iter().enumerate() {
        if !present {
            continue;
        }
        let rules = rules
            .iter()
            .enumerate()
            .map(|(ri, r)| {
                let mut eps: Vec<u32> = (0..g.endpoints as u32)
                    .filter(|e| r.endpoint_mask & (1 << e) != 0)
                    .collect();
                if eps.is_empty() {
                    eps.push(0);
                }
                let act = action(r.action);
                Rule {
                    id: format!("t{ti}/r{ri}"),
                    direction: if r.direction {
                        Direction::Egress
                    } else {
                        Direction::Ingress
                    },
                    endpoints: eps,
                    remote: r
                        .remote
                        .filter(|&s| (s as usize) < address_sets.len())
                        .map(u32::from),
                    protocol: r.tcp_port.map(|_| Protocol::TCP),
                    src_ports: vec![],
                    dst_ports: r.tcp_port.map(PortRange::single).into_iter().collect(),
                    action: act,
                    log: r.log,
                    audit: false,
                    mirror: None,
                    redirect: None,
                }
            })
            .collect();
        tiers.push(Tier {
            kind: kinds[ti],
            rules,
            defaults: (0..g.endpoints)
                .map(|e| TierDefaults {
                    ingress: action(defaults[e].0),
                    egress: action(defaults[e].1),
                })
                .collect(),
        });
    }
    DeviceProgram::new(ProgramParts {
        format: FORMAT_VERSION,
        device: "dpu-1".into(),
        generation,
        endpoints,
        address_sets,
        tiers,
        foreign: if g.foreign_deny {
            Action::Deny
        } else {
            Action::Allow
        },
    })
    .expect("generated programs are valid")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn programs_survive_encoding(g in gen_program(), generation in 1u64..1000) {
        let program = build(&g, generation);
        let bytes = program_to_pb(&program).encode_to_vec();
        let back = program_from_pb(&pb::program::v1::Program::decode(bytes.as_slice()).unwrap()).unwrap();
        prop_assert_eq!(back.hash(), program.hash());
        prop_assert_eq!(back.parts(), program.parts());
    }

    #[test]
    fn an_update_is_whichever_encodes_smaller(a in gen_program(), b in gen_program(), same in any::<bool>()) {
        let base = build(&a, 1);
        // Half the time the target is a small edit of the base, where deltas win.
        let target = if same { build(&a, 2) } else { build(&b, 2) };
        let update = update_for(&target, Some(&base));
        let delta = delta_between(&base, &target).encoded_len();
        let full = program_to_pb(&target).encoded_len();
        match update.body {
            Some(Body::Delta(_)) => prop_assert!(delta < full, "delta {} >= full {}", delta, full),
            Some(Body::Full(_)) => prop_assert!(delta >= full, "full {} > delta {}", full, delta),
            None => prop_assert!(false, "no body"),
        }
    }

    #[test]
    fn an_update_rebuilds_its_target_from_any_base(a in gen_program(), b in gen_program(), known_base in any::<bool>()) {
        let base = build(&a, 1);
        let target = build(&b, 2);
        let update = update_for(&target, known_base.then_some(&base));
        // Through real bytes, as on the wire.
        let update = ProgramUpdate::decode(update.encode_to_vec().as_slice()).unwrap();
        let got = receive(&update, Some(&base)).unwrap();
        prop_assert_eq!(got.parts(), target.parts());
        prop_assert_eq!(got.generation(), 2);
        // The delta on its own always rebuilds the target too.
        let parts = apply_delta(&base, &delta_between(&base, &target)).unwrap();
        prop_assert_eq!(DeviceProgram::new(ProgramParts { generation: 2, ..parts }).unwrap().hash(), target.hash());
    }
}

fn big_program(port: u16) -> DeviceProgram {
    let g = GenProgram {
        endpoints: 4,
        sets: (0..4).map(|i| vec![i, i + 1]).collect(),
        tiers: (0..3)
            .map(|t| {
                (
                    true,
                    (0..40)
                        .map(|r| GenRule {
                            direction: r % 2 == 0,
                            endpoint_mask: 15,
                            remote: Some((r % 4) as u8),
                            tcp_port: Some(if t == 1 && r == 7 {
                                port
                            } else {
                                1000 + r as u16
                            }),
                            action: 0,
                            log: false,
                        })
                        .collect(),
                    vec![(1, 1); 4],
                )
            })
            .collect(),
        foreign_deny: false,
    };
    build(&g, 1)
}

#[test]
fn a_one_rule_change_travels_as_a_small_delta() {
    let base = big_program(8080);
    let target = big_program(8443);
    let update = update_for(&target, Some(&base));
    let Some(Body::Delta(delta)) = &update.body else {
        panic!("expected a delta, got {:?}", update.body);
    };
    assert_eq!(delta.tiers.len(), 1, "only the changed tier travels");
    assert!(delta.endpoints.is_none() && delta.address_sets.is_empty());
    let full = program_to_pb(&target).encoded_len();
    assert!(
        update.encoded_len() * 2 < full,
        "delta {} bytes vs full {full}",
        update.encoded_len()
    );
    assert_eq!(receive(&update, Some(&base)).unwrap().hash(), target.hash());
}

#[test]
fn tampered_or_misdirected_updates_are_refused() {
    let base = big_program(8080);
    let target = big_program(8443);
    // A wrong hash: refused, not applied.
    let mut update = update_for(&target, None);
    update.hash[0] ^= 1;
    assert!(matches!(
        receive(&update, None),
        Err(WireError::HashMismatch { .. })
    ));
    // A flipped rule inside a full program: the hash catches it.
    let mut update = update_for(&target, None);
    if let Some(Body::Full(p)) = &mut update.body {
        p.tiers[0].rules[0].action = pb::program::v1::Action::Deny as i32;
    }
    let err = receive(&update, None).unwrap_err();
    assert!(matches!(err, WireError::HashMismatch { .. }), "{err}");
    // A delta against a base the device does not run, or with no base at all.
    let delta = update_for(&target, Some(&base));
    let other = big_program(9000);
    let err = receive(&delta, Some(&other)).unwrap_err();
    assert!(
        err.to_string().starts_with("the delta applies to sha256:"),
        "{err}"
    );
    let err = receive(&delta, None).unwrap_err();
    assert!(
        err.to_string().ends_with("but this device runs nothing"),
        "{err}"
    );
    // No body, short hash.
    let err = receive(
        &ProgramUpdate {
            generation: 1,
            hash: vec![0; 32],
            body: None,
        },
        None,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "body: the update carries no program");
    let err = receive(
        &ProgramUpdate {
            generation: 1,
            hash: vec![0; 3],
            body: None,
        },
        None,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "hash: a content hash is 32 bytes, not 3");
}

#[test]
fn malformed_fields_are_named() {
    let program = big_program(80);
    let check = |edit: &dyn Fn(&mut pb::program::v1::Program), want: &str| {
        let mut msg = program_to_pb(&program);
        edit(&mut msg);
        let err = program_from_pb(&msg).unwrap_err().to_string();
        assert_eq!(err, want);
    };
    check(
        &|m| m.endpoints[2].addresses[0] = vec![1, 2, 3, 4, 5],
        "endpoints[2].addresses[0]: an address is 4 bytes (IPv4) or 16 bytes (IPv6), not 5",
    );
    check(
        &|m| m.address_sets[1].ipv4[4] = 40,
        "address_sets[1].ipv4[0]: `10.1.2.0/40`: prefix length must be a number from 0 to 32",
    );
    check(
        &|m| m.address_sets[1].ipv4.truncate(7),
        "address_sets[1].ipv4: 7 bytes is not a whole number of 5-byte prefixes",
    );
    check(
        &|m| {
            let v4 = &mut m.address_sets[1].ipv4;
            let first: Vec<u8> = v4.drain(..5).collect();
            v4.extend(first);
        },
        "address_sets[1]: the prefixes are not canonical (they must be sorted, disjoint, with sibling prefixes merged)",
    );
    check(
        &|m| m.tiers[1].rules[4].dst_ports[0].hi = 70000,
        "tiers[1].rules[4].dst_ports[0]: port 70000 is above 65535",
    );
    check(
        &|m| m.tiers[2].rules[0].direction = 7,
        "tiers[2].rules[0].direction: 7 is not a direction (1 ingress, 2 egress)",
    );
    check(
        &|m| m.tiers[0].kind = 0,
        "tiers[0].kind: 0 is not a tier kind (1 admin, 2 application, 3 baseline)",
    );
    check(
        &|m| m.tiers[0].rules[1].protocol = Some(256),
        "tiers[0].rules[1].protocol: 256 is not an IP protocol number (0-255)",
    );
    check(
        &|m| m.foreign = 3,
        "invalid program: program: `foreign` must be allow or deny: there is no tier after the program",
    );
    // Garbage bytes never decode into a program silently.
    assert!(pb::program::v1::Program::decode(&b"\xff\xff\xff"[..]).is_err());
}
