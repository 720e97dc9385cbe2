//! Property: for random inventories, random intent and random connections, `explain` (from
//! intent) and the compiled device programs run by the reference interpreter give the same
//! verdict, decided by the same rule, on every side.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::World;
use palisade_intent::*;
use palisade_inventory::{Device, Interface, Inventory, Network, Project, Workload};
use palisade_program::{PortRange, Prefix, Protocol, TierKind};
use proptest::prelude::*;

const APPS: [&str; 2] = ["a1", "a2"];
const TIERS: [&str; 3] = ["web", "app", "db"];
const DEPLOYMENTS: [&str; 2] = ["prod", "dev"];
const LABELS: [&str; 2] = ["pci", "ops"];

#[derive(Clone, Debug)]
struct GenWorkload {
    project: usize,
    device: usize,
    tier: Option<usize>,
    deployment: Option<usize>,
    label: Option<usize>,
    on_network: bool,
    iface_tier: Option<usize>,
    app: Option<usize>,
}

#[derive(Clone, Debug)]
struct GenRule {
    action: u8,
    e1: GenEndpoint,
    direction: u8,
    e2: GenEndpoint,
    service: u8,
    match_tags: u8,
    audit: bool,
}

#[derive(Clone, Debug)]
enum GenEndpoint {
    Any,
    Tags(Vec<(u8, usize)>),
    Group,
    Subnet(u8),
    Network,
}

#[derive(Clone, Debug)]
struct GenPolicy {
    tier: u8,
    project: Option<usize>,
    rules: Vec<GenRule>,
}

#[derive(Clone, Debug)]
struct Gen {
    project_apps: Vec<Option<usize>>,
    workloads: Vec<GenWorkload>,
    project_tier_web: bool,
    policies: Vec<GenPolicy>,
    sets: Vec<(usize, Vec<usize>)>,
    global_set: Option<Vec<usize>>,
}

fn ip(w: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, w as u8, 5))
}

fn tag(kind: &str, value: &str) -> TagRef {
    TagRef::new(kind, value)
}

impl Gen {
    fn inventory(&self) -> Inventory {
        Inventory {
            devices: (0..3)
                .map(|d| Device {
                    name: format!("d{d}"),
                    address: None,
                    labels: Default::default(),
                })
                .collect(),
            projects: self
                .project_apps
                .iter()
                .enumerate()
                .map(|(p, app)| Project {
                    name: format!("p{p}"),
                    tags: app
                        .map(|a| format!("application={}", APPS[a]))
                        .into_iter()
                        .collect(),
                    labels: Default::default(),
                    networks: vec![Network {
                        name: "net".into(),
                        tags: if p == 0 {
                            vec!["tier=web".into()]
                        } else {
                            vec![]
                        },
                        subnets: vec![format!("10.0.{}.0/24", 200 + p).parse().unwrap()],
                    }],
                })
                .collect(),
            workloads: self
                .workloads
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let mut tags = Vec::new();
                    if let Some(t) = w.tier {
                        tags.push(format!("tier={}", TIERS[t]));
                    }
                    if let Some(d) = w.deployment {
                        tags.push(format!("deployment={}", DEPLOYMENTS[d]));
                    }
                    if let Some(l) = w.label {
                        tags.push(format!("label={}", LABELS[l]));
                    }
                    if let Some(a) = w.app {
                        tags.push(format!("application={}", APPS[a]));
                    }
                    Workload {
                        name: format!("w{i}"),
                        project: format!("p{}", w.project),
                        tags,
                        labels: Default::default(),
                        interfaces: vec![Interface {
                            name: "eth0".into(),
                            network: w.on_network.then(|| "net".to_string()),
                            addresses: vec![ip(i)],
                            device: format!("d{}", w.device),
                            tags: w
                                .iface_tier
                                .map(|t| format!("tier={}", TIERS[t]))
                                .into_iter()
                                .collect(),
                            ports: vec![],
                        }],
                    }
                })
                .collect(),
        }
    }

    fn endpoint(&self, e: &GenEndpoint, project: Option<usize>) -> EndpointSpec {
        match e {
            GenEndpoint::Any => EndpointSpec::Any,
            GenEndpoint::Tags(tags) => EndpointSpec::Tags(
                tags.iter()
                    .map(|(kind, v)| match kind % 4 {
                        0 => tag("tier", TIERS[v % 3]),
                        1 => tag("deployment", DEPLOYMENTS[v % 2]),
                        2 => tag("application", APPS[v % 2]),
                        _ => tag("label", LABELS[v % 2]),
                    })
                    .fold(Vec::<TagRef>::new(), |mut acc, t| {
                        // One value per non-label type (validation refuses two).
                        if t.kind == "label" || !acc.iter().any(|a| a.kind == t.kind) {
                            acc.push(t);
                        }
                        acc
                    }),
            ),
            GenEndpoint::Group => EndpointSpec::AddressGroup("grp".into()),
            GenEndpoint::Subnet(s) => {
                EndpointSpec::Subnet(Prefix::truncating(ip(*s as usize % 8), 29))
            }
            GenEndpoint::Network if project.is_some() => EndpointSpec::Network("net".into()),
            GenEndpoint::Network => EndpointSpec::Any,
        }
    }

    fn objects(&self) -> Vec<Object> {
        let mut out = Vec::new();
        let mut define = |scope: Scope, kind: &str, value: &str| {
            out.push(Object::Tag(Tag {
                scope,
                kind: kind.into(),
                value: value.into(),
            }));
        };
        for a in APPS {
            define(Scope::Global, "application", a);
        }
        for t in TIERS {
            define(Scope::Global, "tier", t);
        }
        for d in DEPLOYMENTS {
            define(Scope::Global, "deployment", d);
        }
        for l in LABELS {
            define(Scope::Global, "label", l);
        }
        if self.project_tier_web {
            define(Scope::Project("p1".into()), "tier", "web");
        }
        out.push(Object::AddressGroup(AddressGroup {
            name: "grp".into(),
            scope: Scope::Global,
            prefixes: vec![
                "10.0.3.0/24".parse().unwrap(),
                "192.0.2.0/25".parse().unwrap(),
            ],
            label: Some("pci".into()),
        }));
        out.push(Object::ServiceGroup(ServiceGroup {
            name: "sg".into(),
            scope: Scope::Global,
            services: vec![
                Service {
                    protocol: Some(Protocol::TCP),
                    src_ports: vec![],
                    dst_ports: vec![PortRange::single(80)],
                },
                Service {
                    protocol: Some(Protocol::UDP),
                    src_ports: vec![],
                    dst_ports: vec![],
                },
            ],
        }));
        for (pi, p) in self.policies.iter().enumerate() {
            let tier = match p.tier % 3 {
                0 => TierKind::Admin,
                1 => TierKind::Application,
                _ => TierKind::Baseline,
            };
            // Application-tier policies are global so every set can use them.
            let project = if tier == TierKind::Application {
                None
            } else {
                p.project
            };
            out.push(Object::FirewallPolicy(FirewallPolicy {
                name: format!("pol{pi}"),
                scope: project.map_or(Scope::Global, |p| Scope::Project(format!("p{p}"))),
                tier,
                sequence: format!("{:02}", (pi * 7) % 5),
                rules: p
                    .rules
                    .iter()
                    .enumerate()
                    .map(|(ri, r)| {
                        let action = match r.action % 3 {
                            0 => RuleAction::Allow,
                            1 => RuleAction::Deny,
                            _ => RuleAction::NextTier,
                        };
                        FirewallRule {
                            sequence: format!("{:04}", (ri * 37) % 100),
                            action,
                            endpoint_1: self.endpoint(&r.e1, project),
                            direction: match r.direction % 3 {
                                0 => RuleDirection::Forward,
                                1 => RuleDirection::Backward,
                                _ => RuleDirection::Both,
                            },
                            endpoint_2: self.endpoint(&r.e2, project),
                            service: match r.service % 6 {
                                0 => ServiceSpec::Inline(Service::any()),
                                1 => ServiceSpec::Inline(Service {
                                    protocol: Some(Protocol::TCP),
                                    src_ports: vec![],
                                    dst_ports: vec![PortRange::single(80)],
                                }),
                                2 => ServiceSpec::Inline(Service {
                                    protocol: Some(Protocol::TCP),
                                    src_ports: vec![],
                                    dst_ports: vec![PortRange::new(80, 443).unwrap()],
                                }),
                                3 => ServiceSpec::Inline(Service {
                                    protocol: Some(Protocol::ICMP),
                                    src_ports: vec![],
                                    dst_ports: vec![],
                                }),
                                4 => ServiceSpec::Inline(Service {
                                    protocol: Some(Protocol::TCP),
                                    src_ports: vec![PortRange::new(1024, 65535).unwrap()],
                                    dst_ports: vec![PortRange::single(443)],
                                }),
                                _ => ServiceSpec::Group("sg".into()),
                            },
                            match_tags: match r.match_tags % 4 {
                                0 => vec!["application".into()],
                                1 => vec!["deployment".into()],
                                _ => vec![],
                            },
                            log: false,
                            audit: r.audit && action == RuleAction::Deny,
                            mirror: None,
                            redirect: None,
                        }
                    })
                    .collect(),
            }));
        }
        let app_policies: Vec<usize> = self
            .policies
            .iter()
            .enumerate()
            .filter(|(_, p)| p.tier % 3 == 1)
            .map(|(i, _)| i)
            .collect();
        let entries = |picks: &[usize]| -> Vec<PolicyEntry> {
            let mut chosen: Vec<usize> = picks
                .iter()
                .filter(|_| !app_policies.is_empty())
                .map(|&k| app_policies[k % app_policies.len()])
                .collect();
            chosen.sort();
            chosen.dedup();
            chosen
                .into_iter()
                .enumerate()
                .map(|(i, p)| PolicyEntry {
                    sequence: format!("{:02}", (i * 3 + p) % 10 + i * 10),
                    policy: format!("pol{p}"),
                })
                .collect()
        };
        for (i, (app, picks)) in self.sets.iter().enumerate() {
            out.push(Object::ApplicationPolicySet(ApplicationPolicySet {
                name: format!("set{i}"),
                scope: Scope::Global,
                application: Some(tag("application", APPS[app % 2])),
                policies: entries(picks),
            }));
        }
        if let Some(picks) = &self.global_set {
            out.push(Object::ApplicationPolicySet(ApplicationPolicySet {
                name: "everyone".into(),
                scope: Scope::Global,
                application: None,
                policies: entries(picks),
            }));
        }
        out
    }
}

fn arb_endpoint() -> impl Strategy<Value = GenEndpoint> {
    prop_oneof![
        2 => Just(GenEndpoint::Any),
        5 => proptest::collection::vec((0u8..4, 0usize..3), 1..3).prop_map(GenEndpoint::Tags),
        1 => Just(GenEndpoint::Group),
        1 => (0u8..8).prop_map(GenEndpoint::Subnet),
        1 => Just(GenEndpoint::Network),
    ]
}

fn arb_gen() -> impl Strategy<Value = Gen> {
    let workload = (
        0usize..2,
        0usize..3,
        proptest::option::of(0usize..3),
        proptest::option::of(0usize..2),
        proptest::option::of(0usize..2),
        any::<bool>(),
        proptest::option::weighted(0.2, 0usize..3),
        proptest::option::weighted(0.2, 0usize..2),
    )
        .prop_map(
            |(project, device, tier, deployment, label, on_network, iface_tier, app)| GenWorkload {
                project,
                device,
                tier,
                deployment,
                label,
                on_network,
                iface_tier,
                app,
            },
        );
    let rule = (
        0u8..3,
        arb_endpoint(),
        0u8..3,
        arb_endpoint(),
        0u8..6,
        0u8..4,
        any::<bool>(),
    )
        .prop_map(
            |(action, e1, direction, e2, service, match_tags, audit)| GenRule {
                action,
                e1,
                direction,
                e2,
                service,
                match_tags,
                audit,
            },
        );
    let policy = (
        0u8..3,
        proptest::option::of(0usize..2),
        proptest::collection::vec(rule, 0..4),
    )
        .prop_map(|(tier, project, rules)| GenPolicy {
            tier,
            project,
            rules,
        });
    (
        proptest::collection::vec(proptest::option::of(0usize..2), 2),
        proptest::collection::vec(workload, 2..8),
        any::<bool>(),
        proptest::collection::vec(policy, 1..5),
        proptest::collection::vec(
            (0usize..2, proptest::collection::vec(0usize..4, 0..3)),
            0..3,
        ),
        proptest::option::of(proptest::collection::vec(0usize..4, 0..2)),
    )
        .prop_map(
            |(project_apps, workloads, project_tier_web, policies, sets, global_set)| Gen {
                project_apps,
                workloads,
                project_tier_web,
                policies,
                sets,
                global_set,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn explain_agrees_with_compiled_programs(
        g in arb_gen(),
        probes in proptest::collection::vec((0usize..10, 0usize..10, 0u8..4, prop_oneof![Just(80u16), Just(443), Just(22)]), 1..12),
    ) {
        let set = IntentSet::from_objects(g.objects().into_iter().map(|o| (o, None))).unwrap();
        let errors = set.validate();
        prop_assert!(errors.is_empty(), "generator made invalid intent: {:#?}", errors);
        let index = g.inventory().index().unwrap();
        let world = World::new(set, index);
        let n = g.workloads.len();
        // Indices past the workloads are outside addresses: one in the group, one not.
        let address = |i: usize| match i {
            i if i < n => ip(i),
            i if i % 2 == 0 => "192.0.2.9".parse().unwrap(),
            _ => "198.51.100.1".parse().unwrap(),
        };
        for (s, d, proto, port) in probes {
            if s == d || (s >= n && d >= n) {
                continue;
            }
            let protocol = match proto {
                0 | 1 => Protocol::TCP,
                2 => Protocol::UDP,
                _ => Protocol::ICMP,
            };
            // `check` asserts agreement side by side and decision by decision.
            world.check(address(s), address(d), protocol, port);
        }
    }
}

#[derive(Clone, Debug)]
enum Edit {
    Tier(usize, Option<usize>),
    Deployment(usize, Option<usize>),
    Label(usize, Option<usize>),
    App(usize, Option<usize>),
    InterfaceTier(usize, Option<usize>),
    Network(usize),
    Device(usize, usize),
    RuleAction(usize, usize, u8),
    RuleService(usize, usize, u8),
    SetPicks(usize, Vec<usize>),
}

fn apply(g: &mut Gen, edit: &Edit) {
    let n = g.workloads.len();
    match edit {
        Edit::Tier(w, v) => g.workloads[w % n].tier = *v,
        Edit::Deployment(w, v) => g.workloads[w % n].deployment = *v,
        Edit::Label(w, v) => g.workloads[w % n].label = *v,
        Edit::App(w, v) => g.workloads[w % n].app = *v,
        Edit::InterfaceTier(w, v) => g.workloads[w % n].iface_tier = *v,
        Edit::Network(w) => g.workloads[w % n].on_network ^= true,
        Edit::Device(w, d) => g.workloads[w % n].device = d % 3,
        Edit::RuleAction(p, r, a) | Edit::RuleService(p, r, a) => {
            let p = p % g.policies.len();
            let rules = &mut g.policies[p].rules;
            if !rules.is_empty() {
                let len = rules.len();
                let rule = &mut rules[r % len];
                if matches!(edit, Edit::RuleAction(..)) {
                    rule.action = *a;
                } else {
                    rule.service = *a;
                }
            }
        }
        Edit::SetPicks(s, picks) => {
            if !g.sets.is_empty() {
                let len = g.sets.len();
                g.sets[s % len].1 = picks.clone();
            }
        }
    }
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    let v3 = proptest::option::of(0usize..3);
    let v2 = proptest::option::of(0usize..2);
    prop_oneof![
        (0usize..8, v3.clone()).prop_map(|(w, v)| Edit::Tier(w, v)),
        (0usize..8, v2.clone()).prop_map(|(w, v)| Edit::Deployment(w, v)),
        (0usize..8, v2.clone()).prop_map(|(w, v)| Edit::Label(w, v)),
        (0usize..8, v2).prop_map(|(w, v)| Edit::App(w, v)),
        (0usize..8, v3).prop_map(|(w, v)| Edit::InterfaceTier(w, v)),
        (0usize..8).prop_map(Edit::Network),
        (0usize..8, 0usize..3).prop_map(|(w, d)| Edit::Device(w, d)),
        (0usize..5, 0usize..4, 0u8..3).prop_map(|(p, r, a)| Edit::RuleAction(p, r, a)),
        (0usize..5, 0usize..4, 0u8..6).prop_map(|(p, r, s)| Edit::RuleService(p, r, s)),
        (0usize..3, proptest::collection::vec(0usize..4, 0..3))
            .prop_map(|(s, p)| Edit::SetPicks(s, p)),
    ]
}

fn intent_of(g: &Gen) -> IntentSet {
    IntentSet::from_objects(g.objects().into_iter().map(|o| (o, None))).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A `Lowerer` that reuses its previous run gives exactly what lowering from scratch gives.
    #[test]
    fn incremental_lowering_equals_full_lowering(
        g in arb_gen(),
        edits in proptest::collection::vec(arb_edit(), 1..4),
    ) {
        let mut lowerer = Lowerer::new();
        let index = std::sync::Arc::new(g.inventory().index().unwrap());
        let first = lowerer.lower(&intent_of(&g), index).unwrap();
        prop_assert_eq!(first.ir.clone(), lower(&intent_of(&g), &g.inventory().index().unwrap()).unwrap().ir);

        let mut next = g.clone();
        for e in &edits {
            apply(&mut next, e);
        }
        let set = intent_of(&next);
        let index = next.inventory().index().unwrap();
        let full = lower(&set, &index).unwrap();
        let incremental = lowerer.lower(&set, std::sync::Arc::new(index)).unwrap();
        prop_assert_eq!(&incremental.ir, &full.ir);
        prop_assert_eq!(&incremental.warnings, &full.warnings);
        prop_assert!(incremental.relowered <= full.relowered);
    }
}
