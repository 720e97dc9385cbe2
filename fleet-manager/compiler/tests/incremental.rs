//! Incremental compilation must give exactly what a full compilation gives, and must report
//! every device whose program changed.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use palisade_compiler::{
    CompileOptions, Compiler, DefaultOverride, IrRule, PolicyIr, RemoteSet, compile_all,
};
use palisade_inventory::{Device, Interface, Inventory, InventoryIndex, Project, Workload};
use palisade_program::{Action, Direction, PortRange, Prefix, PrefixSet, Protocol, TierKind};
use proptest::prelude::*;

/// A workload in the symbolic model: which device it is on and its address octet.
#[derive(Clone, Debug)]
struct SymWorkload {
    present: bool,
    device: usize,
    octet: u8,
}

#[derive(Clone, Debug)]
struct SymRule {
    id: u32,
    tier: TierKind,
    direction: Direction,
    local: BTreeSet<usize>,
    remote: Option<BTreeSet<usize>>,
    port: Option<u16>,
    action: Action,
}

#[derive(Clone, Debug)]
struct State {
    devices: usize,
    workloads: Vec<SymWorkload>,
    rules: Vec<SymRule>,
    isolated: BTreeSet<usize>,
}

fn ip(octet: u8, w: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, w as u8, octet))
}

impl State {
    fn inventory(&self) -> Arc<InventoryIndex> {
        let inv = Inventory {
            devices: (0..self.devices)
                .map(|d| Device {
                    name: format!("dev-{d}"),
                    address: None,
                    labels: Default::default(),
                })
                .collect(),
            projects: vec![Project {
                name: "p".into(),
                tags: vec![],
                labels: Default::default(),
                networks: vec![],
            }],
            workloads: self
                .workloads
                .iter()
                .enumerate()
                .filter(|(_, w)| w.present)
                .map(|(i, w)| Workload {
                    name: format!("w{i:02}"),
                    project: "p".into(),
                    tags: vec![],
                    labels: Default::default(),
                    interfaces: vec![Interface {
                        name: "eth0".into(),
                        network: None,
                        addresses: vec![ip(w.octet, i)],
                        device: format!("dev-{}", w.device),
                        tags: vec![],
                        ports: vec![],
                    }],
                })
                .collect(),
        };
        Arc::new(inv.index().unwrap())
    }

    fn ir(&self, index: &InventoryIndex) -> Arc<PolicyIr> {
        let id_of = |w: usize| index.endpoint_by_name(&format!("p/w{w:02}/eth0"));
        let rules = self
            .rules
            .iter()
            .map(|r| {
                let mut local: Vec<u32> = r.local.iter().filter_map(|&w| id_of(w)).collect();
                local.sort();
                let mut rule =
                    IrRule::new(format!("r{}", r.id), r.tier, r.direction, local, r.action);
                rule.remote = r.remote.as_ref().map(|set| {
                    Arc::new(RemoteSet {
                        name: format!("set-{}", r.id),
                        prefixes: PrefixSet::from_prefixes(
                            set.iter()
                                .filter(|&&w| self.workloads[w].present)
                                .map(|&w| Prefix::host(ip(self.workloads[w].octet, w))),
                        ),
                    })
                });
                if let Some(p) = r.port {
                    rule.protocol = Some(Protocol::TCP);
                    rule.dst_ports = vec![PortRange::single(p)];
                }
                rule
            })
            .collect();
        let defaults = self
            .isolated
            .iter()
            .filter_map(|&w| id_of(w))
            .map(|endpoint| DefaultOverride {
                tier: TierKind::Application,
                endpoint,
                direction: Direction::Ingress,
                action: Action::Deny,
            })
            .collect();
        Arc::new(PolicyIr { rules, defaults })
    }
}

#[derive(Clone, Debug)]
enum Change {
    RetargetRemote(usize, BTreeSet<usize>),
    AddLocal(usize, usize),
    DropLocal(usize, usize),
    SetPort(usize, Option<u16>),
    MoveRule(usize, usize),
    RemoveRule(usize),
    NewAddress(usize, u8),
    MoveWorkload(usize, usize),
    ToggleWorkload(usize),
    ToggleIsolation(usize),
}

fn apply(state: &mut State, change: &Change) {
    let n_rules = state.rules.len();
    let n_w = state.workloads.len();
    match change {
        Change::RetargetRemote(r, set) if n_rules > 0 => {
            state.rules[r % n_rules].remote = Some(set.clone());
        }
        Change::AddLocal(r, w) if n_rules > 0 => {
            state.rules[r % n_rules].local.insert(w % n_w);
        }
        Change::DropLocal(r, w) if n_rules > 0 => {
            state.rules[r % n_rules].local.remove(&(w % n_w));
        }
        Change::SetPort(r, p) if n_rules > 0 => state.rules[r % n_rules].port = *p,
        Change::MoveRule(from, to) if n_rules > 0 => {
            let rule = state.rules.remove(from % n_rules);
            state.rules.insert(to % n_rules, rule);
        }
        Change::RemoveRule(r) if n_rules > 0 => {
            state.rules.remove(r % n_rules);
        }
        Change::NewAddress(w, octet) => state.workloads[w % n_w].octet = *octet,
        Change::MoveWorkload(w, d) => state.workloads[w % n_w].device = d % state.devices,
        Change::ToggleWorkload(w) => {
            let w = &mut state.workloads[w % n_w];
            w.present = !w.present;
        }
        Change::ToggleIsolation(w) => {
            let w = w % n_w;
            if !state.isolated.remove(&w) {
                state.isolated.insert(w);
            }
        }
        _ => {}
    }
}

fn arb_set(n: usize) -> impl Strategy<Value = BTreeSet<usize>> {
    proptest::collection::btree_set(0..n, 0..4)
}

fn arb_state() -> impl Strategy<Value = State> {
    let workloads = proptest::collection::vec(
        (any::<bool>(), 0usize..4, 1u8..250).prop_map(|(p, device, octet)| SymWorkload {
            present: p || octet % 3 != 0,
            device,
            octet,
        }),
        6..12,
    );
    let rule = (
        prop_oneof![
            Just(TierKind::Admin),
            Just(TierKind::Application),
            Just(TierKind::Baseline)
        ],
        prop_oneof![Just(Direction::Ingress), Just(Direction::Egress)],
        arb_set(6),
        proptest::option::of(arb_set(6)),
        proptest::option::of(prop_oneof![Just(80u16), Just(443), Just(8080)]),
        prop_oneof![
            Just(Action::Allow),
            Just(Action::Deny),
            Just(Action::NextTier)
        ],
    );
    (
        workloads,
        proptest::collection::vec(rule, 0..10),
        arb_set(6),
    )
        .prop_map(|(workloads, rules, isolated)| State {
            devices: 4,
            workloads,
            rules: rules
                .into_iter()
                .enumerate()
                .map(
                    |(i, (tier, direction, local, remote, port, action))| SymRule {
                        id: i as u32,
                        tier,
                        direction,
                        local,
                        remote,
                        port,
                        action,
                    },
                )
                .collect(),
            isolated,
        })
}

fn arb_change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (0usize..10, arb_set(6)).prop_map(|(r, s)| Change::RetargetRemote(r, s)),
        (0usize..10, 0usize..12).prop_map(|(r, w)| Change::AddLocal(r, w)),
        (0usize..10, 0usize..12).prop_map(|(r, w)| Change::DropLocal(r, w)),
        (0usize..10, proptest::option::of(1u16..100)).prop_map(|(r, p)| Change::SetPort(r, p)),
        (0usize..10, 0usize..10).prop_map(|(a, b)| Change::MoveRule(a, b)),
        (0usize..10).prop_map(Change::RemoveRule),
        (0usize..12, 1u8..250).prop_map(|(w, o)| Change::NewAddress(w, o)),
        (0usize..12, 0usize..4).prop_map(|(w, d)| Change::MoveWorkload(w, d)),
        (0usize..12).prop_map(Change::ToggleWorkload),
        (0usize..12).prop_map(Change::ToggleIsolation),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn incremental_equals_full(
        state in arb_state(),
        changes in proptest::collection::vec(arb_change(), 1..4),
    ) {
        let options = CompileOptions::default();
        let mut compiler = Compiler::new(options);
        let index = state.inventory();
        let first = compiler.compile(Arc::clone(&index), state.ir(&index), 1).unwrap();

        let mut next = state.clone();
        for c in &changes {
            apply(&mut next, c);
        }
        let index2 = next.inventory();
        let ir2 = next.ir(&index2);
        let incremental = compiler.compile(Arc::clone(&index2), Arc::clone(&ir2), 2).unwrap();
        let full = compile_all(index2, ir2, 2, options).unwrap();

        prop_assert_eq!(incremental.programs.len(), full.programs.len());
        for (device, program) in &full.programs {
            let inc = &incremental.programs[device];
            prop_assert_eq!(inc.hash(), program.hash(), "device {}", device);
            prop_assert_eq!(inc.parts().tiers.clone(), program.parts().tiers.clone());
            let before = first.programs[device].hash();
            let reported = incremental.changed.contains(device);
            prop_assert_eq!(reported, before != program.hash(), "device {} change report", device);
            prop_assert!(!reported || incremental.recompiled.contains(device));
            if !reported {
                prop_assert_eq!(inc.generation(), 1, "an unchanged program keeps its generation");
            } else {
                prop_assert_eq!(inc.generation(), 2);
            }
        }
    }
}

#[test]
fn unchanged_input_recompiles_nothing() {
    let state = State {
        devices: 2,
        workloads: (0..4)
            .map(|i| SymWorkload {
                present: true,
                device: i % 2,
                octet: 10,
            })
            .collect(),
        rules: vec![SymRule {
            id: 0,
            tier: TierKind::Application,
            direction: Direction::Ingress,
            local: [0, 1].into(),
            remote: Some([2].into()),
            port: Some(80),
            action: Action::Allow,
        }],
        isolated: [0].into(),
    };
    let mut compiler = Compiler::new(CompileOptions::default());
    let index = state.inventory();
    let first = compiler
        .compile(Arc::clone(&index), state.ir(&index), 1)
        .unwrap();
    assert_eq!(first.recompiled, ["dev-0", "dev-1"]);
    assert_eq!(first.changed, ["dev-0", "dev-1"]);
    let second = compiler
        .compile(Arc::clone(&index), state.ir(&index), 2)
        .unwrap();
    assert!(second.recompiled.is_empty());
    assert!(second.changed.is_empty());

    // A local-side change on dev-1's endpoint only touches dev-1.
    let mut next = state.clone();
    next.rules[0].local.remove(&1);
    let third = compiler
        .compile(Arc::clone(&index), next.ir(&index), 3)
        .unwrap();
    assert_eq!(third.recompiled, ["dev-1"]);
    assert_eq!(third.changed, ["dev-1"]);
    assert_eq!(third.programs["dev-1"].rule_count(), 0);
    assert_eq!(third.programs["dev-0"].generation(), 1);
}
