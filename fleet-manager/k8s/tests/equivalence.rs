//! Property: for random small clusters, random NetworkPolicies, AdminNetworkPolicies and a
//! BaselineAdminNetworkPolicy (built as Rust values), and random connections, `explain` and
//! the compiled path (lower -> compile_all -> reference interpreter on each end's node)
//! agree on the verdict and on what decided each side.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use palisade_compiler::{CompileOptions, compile_all};
use palisade_inventory::{
    AddressOwner, Device, Interface, Inventory, NamedPort, Project, Workload,
};
use palisade_k8s::manifest::Labels;
use palisade_k8s::*;
use palisade_program::{
    Decision as ProgramDecision, Direction, Packet, Prefix, Protocol, TierKind,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

const KEYS: [&str; 3] = ["app", "tier", "env"];
const VALUES: [&str; 2] = ["a", "b"];
const PORT_NAMES: [&str; 3] = ["web", "dns", "db"];
const PORTS: [u16; 5] = [53, 80, 81, 5432, 8080];
/// Probe ports: the pool, the ports just above each, and one no policy names.
const PROBE_PORTS: [u16; 9] = [53, 54, 80, 81, 82, 5432, 5433, 8080, 9999];
const PROTOCOLS: [PortProtocol; 3] = [PortProtocol::Tcp, PortProtocol::Udp, PortProtocol::Sctp];
const NAMESPACES: usize = 3;
const EXTERNAL: [&str; 3] = ["192.0.2.10", "192.0.2.200", "10.1.0.99"];
const CIDRS: [&str; 6] = [
    "10.1.0.0/24",
    "10.1.0.8/29",
    "192.0.2.0/24",
    "0.0.0.0/0",
    "172.18.0.0/16",
    "10.1.0.12/30",
];

fn labels_between(min: usize, max: usize) -> impl Strategy<Value = Labels> {
    proptest::collection::btree_map(
        (0..KEYS.len()).prop_map(|k| KEYS[k].to_string()),
        (0..VALUES.len()).prop_map(|v| VALUES[v].to_string()),
        min..max,
    )
}

fn labels() -> impl Strategy<Value = Labels> {
    labels_between(1, 4)
}

fn selector() -> impl Strategy<Value = LabelSelector> {
    let requirement = (
        0..KEYS.len(),
        0..4usize,
        proptest::collection::vec(0..VALUES.len(), 1..3),
    )
        .prop_map(|(k, op, values)| {
            let (operator, values) = match op {
                0 => (SelectorOperator::In, values),
                1 => (SelectorOperator::NotIn, values),
                2 => (SelectorOperator::Exists, vec![]),
                _ => (SelectorOperator::DoesNotExist, vec![]),
            };
            LabelSelectorRequirement {
                key: KEYS[k].into(),
                operator,
                values: values.into_iter().map(|v| VALUES[v].to_string()).collect(),
            }
        });
    let ns_name = (0..NAMESPACES + 1).prop_map(|n| (NAMESPACE_NAME.to_string(), format!("ns{n}")));
    // Small selectors, so that they often select something.
    (
        labels_between(0, 2),
        proptest::option::weighted(0.15, ns_name),
        proptest::collection::vec(requirement, 0..2),
    )
        .prop_map(|(mut match_labels, name, match_expressions)| {
            match_labels.extend(name);
            LabelSelector {
                match_labels,
                match_expressions,
            }
        })
}

const NAMESPACE_NAME: &str = palisade_k8s::manifest::NAMESPACE_NAME_LABEL;

fn ip_block() -> impl Strategy<Value = IpBlock> {
    (0..CIDRS.len(), any::<bool>(), any::<bool>()).prop_map(|(c, with_except, high)| {
        let cidr: Prefix = CIDRS[c].parse().unwrap();
        let except = match (with_except, cidr.halves()) {
            (true, Some((lo, hi))) => vec![if high { hi } else { lo }],
            _ => vec![],
        };
        IpBlock { cidr, except }
    })
}

fn np_peer() -> impl Strategy<Value = NetworkPolicyPeer> {
    prop_oneof![
        (
            proptest::option::of(selector()),
            proptest::option::of(selector())
        )
            .prop_map(|(n, p)| {
                match (n, p) {
                    (None, None) => NetworkPolicyPeer::Pods {
                        namespace_selector: None,
                        pod_selector: Some(LabelSelector::default()),
                    },
                    (n, p) => NetworkPolicyPeer::Pods {
                        namespace_selector: n,
                        pod_selector: p,
                    },
                }
            }),
        ip_block().prop_map(NetworkPolicyPeer::IpBlock),
    ]
}

fn np_port() -> impl Strategy<Value = NetworkPolicyPort> {
    (
        proptest::option::of(0..PROTOCOLS.len()),
        0..5usize,
        0..PORTS.len(),
        0..PORT_NAMES.len(),
        0..PORTS.len(),
    )
        .prop_map(|(proto, kind, port, name, end)| {
            let protocol = proto.map(|p| PROTOCOLS[p]);
            let (port, end_port) = match kind {
                0 => (None, None),
                1 => (Some(PortRef::Number(PORTS[port])), None),
                2 => (
                    Some(PortRef::Number(PORTS[port])),
                    Some(PORTS[port].max(PORTS[end])),
                ),
                _ => (Some(PortRef::Name(PORT_NAMES[name].into())), None),
            };
            NetworkPolicyPort {
                protocol,
                port,
                end_port,
            }
        })
}

fn network_policy(i: usize) -> impl Strategy<Value = K8sPolicy> {
    let rule = || {
        (
            proptest::collection::vec(np_peer(), 0..3),
            proptest::collection::vec(np_port(), 0..3),
        )
    };
    (
        0..NAMESPACES + 1,
        selector(),
        proptest::collection::vec(rule(), 0..3),
        proptest::collection::vec(rule(), 0..3),
        0..4usize,
    )
        .prop_map(move |(ns, pod_selector, ingress, egress, types)| {
            K8sPolicy::NetworkPolicy(NetworkPolicy {
                metadata: ObjectMeta {
                    name: format!("np{i}"),
                    namespace: Some(format!("ns{ns}")),
                    labels: Labels::new(),
                },
                spec: NetworkPolicySpec {
                    pod_selector,
                    ingress: ingress
                        .into_iter()
                        .map(|(from, ports)| NetworkPolicyIngressRule { from, ports })
                        .collect(),
                    egress: egress
                        .into_iter()
                        .map(|(to, ports)| NetworkPolicyEgressRule { to, ports })
                        .collect(),
                    policy_types: match types {
                        0 => None,
                        1 => Some(vec![PolicyType::Ingress]),
                        2 => Some(vec![PolicyType::Egress]),
                        _ => Some(vec![PolicyType::Ingress, PolicyType::Egress]),
                    },
                },
            })
        })
}

fn namespaced() -> impl Strategy<Value = NamespacedPods> {
    (selector(), selector()).prop_map(|(namespace_selector, pod_selector)| NamespacedPods {
        namespace_selector,
        pod_selector,
    })
}

fn subject() -> impl Strategy<Value = AdminSubject> {
    prop_oneof![
        selector().prop_map(AdminSubject::Namespaces),
        namespaced().prop_map(AdminSubject::Pods),
    ]
}

fn admin_ports() -> impl Strategy<Value = Option<Vec<AdminPort>>> {
    let port = (
        0..3usize,
        0..PROTOCOLS.len(),
        0..PORTS.len(),
        0..PORT_NAMES.len(),
        0..PORTS.len(),
    )
        .prop_map(|(kind, proto, port, name, end)| match kind {
            0 => AdminPort::PortNumber {
                protocol: PROTOCOLS[proto],
                port: PORTS[port],
            },
            1 => AdminPort::NamedPort(PORT_NAMES[name].into()),
            _ => AdminPort::PortRange {
                protocol: PROTOCOLS[proto],
                start: PORTS[port],
                end: PORTS[port].max(PORTS[end]),
            },
        });
    proptest::option::of(proptest::collection::vec(port, 1..3))
}

fn ingress_peer() -> impl Strategy<Value = AdminIngressPeer> {
    prop_oneof![
        selector().prop_map(AdminIngressPeer::Namespaces),
        namespaced().prop_map(AdminIngressPeer::Pods),
    ]
}

fn egress_peer() -> impl Strategy<Value = AdminEgressPeer> {
    prop_oneof![
        selector().prop_map(AdminEgressPeer::Namespaces),
        namespaced().prop_map(AdminEgressPeer::Pods),
        selector().prop_map(AdminEgressPeer::Nodes),
        proptest::collection::vec(
            (0..CIDRS.len()).prop_map(|c| CIDRS[c].parse::<Prefix>().unwrap()),
            1..3
        )
        .prop_map(AdminEgressPeer::Networks),
    ]
}

/// The CRD forbids named ports in rules with networks or nodes peers.
fn without_named_ports(
    to: &[AdminEgressPeer],
    ports: Option<Vec<AdminPort>>,
) -> Option<Vec<AdminPort>> {
    if !to
        .iter()
        .any(|p| matches!(p, AdminEgressPeer::Networks(_) | AdminEgressPeer::Nodes(_)))
    {
        return ports;
    }
    let kept: Vec<AdminPort> = ports?
        .into_iter()
        .filter(|p| !matches!(p, AdminPort::NamedPort(_)))
        .collect();
    (!kept.is_empty()).then_some(kept)
}

fn admin_rules<A: Clone + std::fmt::Debug + 'static>(
    action: impl Strategy<Value = A> + Clone + 'static,
) -> impl Strategy<Value = (Vec<AdminIngressRule<A>>, Vec<AdminEgressRule<A>>)> {
    let ingress = (
        action.clone(),
        proptest::collection::vec(ingress_peer(), 1..3),
        admin_ports(),
    )
        .prop_map(|(action, from, ports)| AdminIngressRule {
            name: String::new(),
            action,
            from,
            ports,
        });
    let egress = (
        action,
        proptest::collection::vec(egress_peer(), 1..3),
        admin_ports(),
    )
        .prop_map(|(action, to, ports)| AdminEgressRule {
            name: String::new(),
            action,
            ports: without_named_ports(&to, ports),
            to,
        });
    (
        proptest::collection::vec(ingress, 0..3),
        proptest::collection::vec(egress, 0..3),
    )
}

fn admin_policy(i: usize) -> impl Strategy<Value = K8sPolicy> {
    let action = prop_oneof![
        Just(AdminAction::Allow),
        Just(AdminAction::Deny),
        Just(AdminAction::Pass)
    ];
    (0u32..4, subject(), admin_rules(action)).prop_map(
        move |(priority, subject, (ingress, egress))| {
            K8sPolicy::AdminNetworkPolicy(AdminNetworkPolicy {
                metadata: ObjectMeta::named(format!("anp{i}")),
                spec: AdminNetworkPolicySpec {
                    priority,
                    subject,
                    ingress,
                    egress,
                },
            })
        },
    )
}

fn baseline_policy() -> impl Strategy<Value = K8sPolicy> {
    let action = prop_oneof![Just(BaselineAction::Allow), Just(BaselineAction::Deny)];
    (subject(), admin_rules(action)).prop_map(|(subject, (ingress, egress))| {
        K8sPolicy::BaselineAdminNetworkPolicy(BaselineAdminNetworkPolicy {
            metadata: ObjectMeta::named("default"),
            spec: BaselineAdminNetworkPolicySpec {
                subject,
                ingress,
                egress,
            },
        })
    })
}

fn policies() -> impl Strategy<Value = Vec<K8sPolicy>> {
    let nps = (0..4usize).prop_flat_map(|n| (0..n).map(network_policy).collect::<Vec<_>>());
    let anps = (0..3usize).prop_flat_map(|n| (0..n).map(admin_policy).collect::<Vec<_>>());
    (nps, anps, proptest::option::of(baseline_policy())).prop_map(|(mut all, anps, banp)| {
        all.extend(anps);
        all.extend(banp);
        all
    })
}

/// A pod: namespace, node, labels, declared ports (name, port, protocol).
type Pod = (usize, usize, Labels, Vec<(usize, usize, usize)>);

fn cluster() -> impl Strategy<Value = (Vec<Labels>, Vec<Labels>, Vec<Pod>)> {
    let pod = (
        0..NAMESPACES,
        0..2usize,
        labels(),
        proptest::collection::vec(
            (0..PORT_NAMES.len(), 0..PORTS.len(), 0..PROTOCOLS.len()),
            0..4,
        ),
    );
    (
        proptest::collection::vec(labels(), NAMESPACES),
        proptest::collection::vec(labels(), 2),
        proptest::collection::vec(pod, 2..7),
    )
}

fn inventory(namespaces: &[Labels], nodes: &[Labels], pods: &[Pod]) -> Inventory {
    Inventory {
        devices: nodes
            .iter()
            .enumerate()
            .map(|(i, labels)| Device {
                name: format!("n{i}"),
                address: Some(format!("172.18.0.{}", i + 1).parse().unwrap()),
                labels: labels.clone(),
            })
            .collect(),
        projects: namespaces
            .iter()
            .enumerate()
            .map(|(i, labels)| Project {
                name: format!("ns{i}"),
                tags: vec![],
                // The name label is implied: leave it out to check that it is.
                labels: labels.clone(),
                networks: vec![],
            })
            .collect(),
        workloads: pods
            .iter()
            .enumerate()
            .map(|(i, (ns, node, labels, ports))| Workload {
                name: format!("pod{i}"),
                project: format!("ns{ns}"),
                tags: vec![],
                labels: labels.clone(),
                interfaces: vec![Interface {
                    name: "eth0".into(),
                    network: None,
                    addresses: vec![format!("10.1.0.{}", 10 + i).parse().unwrap()],
                    device: format!("n{node}"),
                    tags: vec![],
                    ports: ports
                        .iter()
                        .map(|&(name, port, proto)| NamedPort {
                            name: Some(PORT_NAMES[name].into()),
                            port: PORTS[port],
                            protocol: PROTOCOLS[proto].protocol(),
                        })
                        .collect(),
                }],
            })
            .collect(),
    }
}

/// Whether explain's account of a side is the compiled program's: the same rule (the
/// lowered id may carry a split suffix), the isolation default, or no decision.
fn same_decision(explained: &Decision, compiled: &ProgramDecision<'_>) -> bool {
    let same_rule =
        |id: &str, lowered: &str| lowered == id || lowered.starts_with(&format!("{id}#"));
    match (explained, compiled) {
        (Decision::Rule { rule, .. }, ProgramDecision::Rule { rule: r, .. }) => {
            same_rule(&rule.id, &r.id)
        }
        (
            Decision::Isolated { .. },
            ProgramDecision::TierDefault {
                tier: TierKind::Application,
                ..
            },
        ) => true,
        (Decision::Default, ProgramDecision::EndOfTiers)
        | (
            Decision::Default,
            ProgramDecision::TierDefault {
                tier: TierKind::Baseline,
                ..
            },
        ) => true,
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn explain_agrees_with_the_compiled_programs(
        (namespaces, nodes, pods) in cluster(),
        policies in policies(),
        probes in proptest::collection::vec((0..12usize, 0..12usize, 0..PROTOCOLS.len(), 0..PROBE_PORTS.len(), proptest::option::of(0..3usize)), 1..40),
    ) {
        let index = Arc::new(inventory(&namespaces, &nodes, &pods).index().unwrap());
        for p in &policies {
            prop_assert!(p.validate().is_ok(), "generator made an invalid policy: {:?}", p.validate());
        }
        let ir = lower(&policies, &index).unwrap();
        let compiled = compile_all(Arc::clone(&index), Arc::new(ir), 1, CompileOptions::default()).unwrap();
        let evaluator = Evaluator::new(&policies, &index);
        let mut ends: Vec<IpAddr> = (0..pods.len()).map(|i| format!("10.1.0.{}", 10 + i).parse().unwrap()).collect();
        ends.extend(["172.18.0.1", "172.18.0.2"].iter().chain(&EXTERNAL).map(|s| s.parse::<IpAddr>().unwrap()));
        for (s, d, proto, port, declared) in probes {
            let (src, dst) = (ends[s % ends.len()], ends[d % ends.len()]);
            if src == dst {
                continue;
            }
            let mut protocol: Protocol = PROTOCOLS[proto].protocol();
            let mut port = PROBE_PORTS[port];
            // Often aim at a port the destination declares, where named ports resolve (and
            // sometimes keep the protocol drawn, to cross the declared one).
            if let (Some(k), Some((_, _, _, ports))) = (declared, pods.get(d % ends.len()))
                && let Some(&(_, number, p)) = ports.get(k % ports.len().max(1))
            {
                port = PORTS[number];
                if k != 2 {
                    protocol = PROTOCOLS[p].protocol();
                }
            }
            let packet = Packet { src, dst, protocol, src_port: 40000, dst_port: port };
            let explained = evaluator.explain(src, dst, protocol, port);
            let mut allowed = true;
            for (ip, direction, side) in [(src, Direction::Egress, &explained.egress), (dst, Direction::Ingress, &explained.ingress)] {
                let Some(AddressOwner::Endpoint(e)) = index.owner_of(ip) else {
                    prop_assert!(side.is_none());
                    continue;
                };
                let info = index.endpoint(e);
                let program = &compiled.programs[&index.inventory().devices[info.device].name];
                let verdict = program.evaluate_side(program.endpoint_index(&info.name).unwrap(), direction, &packet);
                let side = side.as_ref().unwrap();
                prop_assert_eq!(side.allowed, verdict.allowed, "{} {:?} {}/{}: {}", info.name, direction, protocol, port, explained);
                prop_assert!(same_decision(&side.decision, &verdict.decision), "{} {:?}: explain {:?}, compiled {:?}", info.name, direction, side.decision, verdict.decision);
                let passed: Vec<&str> = verdict.passed.iter().map(|(_, r)| r.id.as_str()).collect();
                prop_assert_eq!(side.passed.len(), passed.len());
                for (x, c) in side.passed.iter().zip(&passed) {
                    let suffixed = format!("{}#", x.id);
                    prop_assert!(*c == x.id || c.starts_with(&suffixed), "passed {} vs {}", c, x.id);
                }
                allowed &= verdict.allowed;
            }
            prop_assert_eq!(explained.allowed, allowed);
        }
    }
}

#[test]
fn the_generators_cover_the_interesting_shapes() {
    // A deterministic spot check that the strategy reaches named ports, isolation and Pass.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = BTreeMap::new();
    for _ in 0..200 {
        let policies = policies().new_tree(&mut runner).unwrap().current();
        for p in &policies {
            let text = serde_json::to_string(p).unwrap();
            for (key, needle) in [
                ("named", "\"port\":\"web\""),
                ("pass", "\"Pass\""),
                ("ipBlock", "ipBlock"),
                ("nodes", "nodes"),
            ] {
                if text.contains(needle) {
                    *seen.entry(key).or_insert(0) += 1;
                }
            }
        }
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
}
