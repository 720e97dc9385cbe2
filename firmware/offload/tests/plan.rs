//! What the planner decides, and what the simulated NIC refuses, profile by profile.

use palisade_classifier::Rule;
use palisade_hw_profiles::{MatchField, builtin};
use palisade_offload::*;

fn rule(dst: u32, dst_len: u8, dport: (u16, u16), proto: (u8, u8)) -> Rule<u32> {
    Rule {
        tag: 0,
        src: (0, 0),
        dst: (dst, dst_len),
        sport: (0, 65535),
        dport,
        proto,
        locals: palisade_classifier::ANY_LOCAL,
    }
}

fn places(rules: &[Rule<u32>], profile: &str) -> Vec<Place> {
    let rules: Vec<_> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (*r, i as u32, i as u32))
        .collect();
    plan(&rules, &builtin(profile).unwrap(), PlanOptions::default())
        .unwrap()
        .placements
        .into_iter()
        .map(|p| p.place)
        .collect()
}

const TCP: (u8, u8) = (6, 0xff);

#[test]
fn software_only_devices_offload_nothing() {
    for profile in ["pensando-dsc", "ipu-e2100"] {
        assert_eq!(
            places(&[rule(0x0a000001, 32, (80, 80), TCP)], profile),
            vec![Place::Software(Reason::SoftwareOnlyDevice)]
        );
    }
}

#[test]
fn mlx5_puts_rules_behind_a_jump_and_expands_ranges_to_masks() {
    let rules: Vec<_> = [rule(0x0a000001, 32, (1024, 65535), TCP)]
        .map(|r| (r, 0, 7))
        .to_vec();
    let p = plan(
        &rules,
        &builtin("connectx-6-dx").unwrap(),
        PlanOptions::default(),
    )
    .unwrap();
    assert_eq!(p.entries[0].action, HwAction::Jump(1));
    assert_eq!(p.entries[0].group, 0);
    assert_eq!(
        p.placements[0].place,
        Place::Hardware {
            entries: 6,
            group: 1,
            level: 0
        }
    );
    assert!(
        p.entries[1..]
            .iter()
            .all(|e| e.group == 1 && e.action == HwAction::Mark(7))
    );
}

#[test]
fn per_value_devices_leave_wide_ranges_in_software() {
    let p = places(
        &[
            rule(0x0a000001, 32, (80, 80), TCP),
            rule(0x0a000002, 32, (1024, 65535), TCP),
            rule(0x0a000003, 32, (8000, 8007), TCP),
        ],
        "sim-small",
    );
    assert_eq!(
        p[0],
        Place::Hardware {
            entries: 1,
            group: 0,
            level: 0
        }
    );
    assert_eq!(
        p[1],
        Place::Software(Reason::RangeTooWide {
            entries: 64512,
            limit: 16
        })
    );
    assert_eq!(
        p[2],
        Place::Hardware {
            entries: 8,
            group: 0,
            level: 0
        }
    );
}

#[test]
fn overlapping_rules_take_levels_until_the_group_runs_out() {
    // Three nested rules on one destination: each overlaps the ones before it.
    let rules = [
        rule(0x0a000001, 32, (80, 80), TCP),
        rule(0x0a000000, 24, (80, 80), TCP),
        rule(0, 0, (80, 80), TCP),
    ];
    let p = places(&rules, "sim-small");
    assert_eq!(
        p[0],
        Place::Hardware {
            entries: 1,
            group: 0,
            level: 0
        }
    );
    assert_eq!(
        p[1],
        Place::Hardware {
            entries: 1,
            group: 0,
            level: 1
        }
    );
    assert_eq!(
        p[2],
        Place::Software(Reason::PriorityLevelsExhausted { levels: 2 })
    );
    // Disjoint rules share a level.
    let disjoint: Vec<_> = (0..10)
        .map(|i| rule(0x0a000000 + i, 32, (80, 80), TCP))
        .collect();
    assert!(
        places(&disjoint, "e810")
            .iter()
            .all(|p| matches!(p, Place::Hardware { level: 0, .. }))
    );
}

#[test]
fn capacity_is_respected() {
    let many: Vec<_> = (0..300)
        .map(|i| rule(0x0a000000 + i, 32, (80, 80), TCP))
        .collect();
    let p = places(&many, "sim-small");
    let hw = p
        .iter()
        .filter(|p| matches!(p, Place::Hardware { .. }))
        .count();
    assert_eq!(hw, 256);
    assert_eq!(
        p[299],
        Place::Software(Reason::CapacityExhausted { capacity: 256 })
    );
}

#[test]
fn unsupported_fields_and_protocol_masks_stay_in_software() {
    let masked = places(
        &[rule(0x0a000001, 32, (0, 65535), (4, 0xfc))],
        "connectx-6-dx",
    );
    assert_eq!(masked, vec![Place::Software(Reason::ProtocolMask)]);
    let per_endpoint = Rule {
        locals: 0,
        ..rule(0x0a000001, 32, (80, 80), (6, 0xff))
    };
    assert_eq!(
        places(&[per_endpoint], "connectx-6-dx"),
        vec![Place::Software(Reason::LocalEndpointSet)]
    );
    let portless = places(&[rule(0x0a000001, 32, (80, 80), (0, 0))], "connectx-6-dx");
    assert_eq!(
        portless,
        vec![Place::Software(Reason::PortsWithoutProtocol)]
    );
    // SCTP ports are not matchable on mlx5 in DPDK 22.11.
    let sctp = places(
        &[rule(0x0a000001, 32, (80, 80), (132, 0xff))],
        "connectx-6-dx",
    );
    assert!(
        matches!(
            &sctp[0],
            Place::Software(Reason::FieldUnsupported {
                field: MatchField::SctpDstPort,
                ..
            })
        ),
        "{sctp:?}"
    );
}

#[test]
fn the_simulated_nic_refuses_what_the_device_would() {
    let small = builtin("sim-small").unwrap();
    let mut nic = SimNic::new(&small).unwrap();
    let base = HwEntry {
        group: 0,
        priority: 0,
        pattern: Pattern::default(),
        action: HwAction::Mark(1),
    };
    let masked_port = HwEntry {
        pattern: Pattern {
            proto: Some(6),
            dport: Some(Masked {
                value: 1024,
                mask: 0xfc00,
            }),
            ..Pattern::default()
        },
        ..base
    };
    let err = nic.insert(masked_port).unwrap_err().to_string();
    assert!(
        err.contains("tcp.dst_port needs prefix matching; the device offers exact"),
        "{err}"
    );
    let err = nic
        .insert(HwEntry {
            priority: 2,
            ..base
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("priority 2 in group 0 (the group has 2 levels)"),
        "{err}"
    );
    let err = nic
        .insert(HwEntry { group: 1, ..base })
        .unwrap_err()
        .to_string();
    assert!(err.contains("group 1 does not exist"), "{err}");
    let err = nic
        .insert(HwEntry {
            action: HwAction::Jump(0),
            ..base
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("jump"), "{err}");
    let ports_without_l4 = HwEntry {
        pattern: Pattern {
            dport: Some(Masked {
                value: 80,
                mask: 0xffff,
            }),
            ..Pattern::default()
        },
        ..base
    };
    assert!(
        nic.insert(ports_without_l4)
            .unwrap_err()
            .to_string()
            .contains("need a TCP, UDP or SCTP item")
    );
    for i in 0..256 {
        nic.insert(HwEntry {
            action: HwAction::Mark(i),
            pattern: Pattern {
                dst: Some(Masked {
                    value: i,
                    mask: u32::MAX,
                }),
                ..Pattern::default()
            },
            ..base
        })
        .unwrap();
    }
    assert_eq!(
        nic.insert(base).unwrap_err().to_string(),
        "sim-small is full: 256 entries"
    );
    assert!(SimNic::new(&builtin("ipu-e2100").unwrap()).is_err());
}

#[test]
fn a_tie_is_reported_not_guessed() {
    let mut nic = SimNic::new(&builtin("sim-large").unwrap()).unwrap();
    let e = HwEntry {
        group: 0,
        priority: 3,
        pattern: Pattern::default(),
        action: HwAction::Mark(1),
    };
    nic.insert(e).unwrap();
    nic.insert(HwEntry {
        action: HwAction::Mark(2),
        ..e
    })
    .unwrap();
    let err = nic.lookup(&Default::default()).unwrap_err();
    assert!(
        matches!(err, NicError::Ambiguous { priority: 3, .. }),
        "{err}"
    );
}

#[test]
fn mixed_tags_are_refused() {
    let a = rule(1, 32, (0, 65535), (0, 0));
    let b = Rule { tag: 1, ..a };
    let err = plan(
        &[(a, 0, 0), (b, 1, 1)],
        &builtin("sim-large").unwrap(),
        PlanOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "rules carry different tags (0 and 1): plan each direction separately"
    );
}
