//! Policies + inventory -> the compiler's [`PolicyIr`].
//!
//! Selectors are resolved to endpoints and address sets here, so every lowered rule means the
//! same for each of its local endpoints:
//!
//! * AdminNetworkPolicies become admin-tier rules, by priority then name, rules in order;
//!   `Pass` becomes `next-tier`.
//! * NetworkPolicies become application-tier allow rules (by namespace, name, then rule), and
//!   each pod a policy selects for a direction gets a deny default in that tier and
//!   direction: the union semantics, since any allow rule then lets a connection through.
//! * The BaselineAdminNetworkPolicy becomes baseline-tier rules; the tier allows by default.
//!
//! A policy rule becomes one lowered rule per protocol of its numeric ports, plus one per
//! (protocol, port) its named ports resolve to: on the local pod for ingress, on the remote
//! pods for egress (the remote side then narrows to the pods that resolve that way). A rule
//! that splits gets an id suffix: `np/prod/db/ingress/0#tcp`, `...#named-tcp-5432`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use palisade_compiler::{DefaultOverride, IrRule, PolicyIr, RemoteSet};
use palisade_inventory::{EndpointId, InventoryIndex};
use palisade_program::{Action, Direction, PortRange, Prefix, PrefixSet, Protocol, TierKind};

use crate::K8sError;
use crate::manifest::{
    AdminAction, AdminEgressPeer, AdminEgressRule, AdminIngressPeer, AdminIngressRule, AdminPort,
    AdminSubject, BaselineAction, K8sPolicy, LabelSelector, NAMESPACE_NAME_LABEL, NamespacedPods,
    NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, PortRef,
};
use crate::order;

/// Longest remote-set name; longer descriptions are cut (the content still tells sets apart).
const MAX_SET_NAME: usize = 120;

/// Lowers `policies` against the cluster in `index`. Fails if a policy breaks a rule the API
/// server enforces or two policies share an identity.
pub fn lower(policies: &[K8sPolicy], index: &InventoryIndex) -> Result<PolicyIr, K8sError> {
    let order = order::checked(policies)?;
    let mut l = Lowering {
        index,
        sets: HashMap::new(),
        ir: PolicyIr::default(),
    };
    for anp in &order.admin {
        let local = l.subject(&anp.spec.subject);
        let rules = (&anp.spec.ingress[..], &anp.spec.egress[..]);
        l.admin_rules(
            &format!("anp/{}", anp.metadata.name),
            TierKind::Admin,
            &local,
            rules,
            admin_action,
        );
    }
    let mut isolated = BTreeSet::new();
    for np in &order.network {
        l.network_policy(np, &mut isolated);
    }
    l.ir.defaults = isolated
        .into_iter()
        .map(|(endpoint, direction)| DefaultOverride {
            tier: TierKind::Application,
            endpoint,
            direction,
            action: Action::Deny,
        })
        .collect();
    if let Some(banp) = order.baseline {
        let local = l.subject(&banp.spec.subject);
        let rules = (&banp.spec.ingress[..], &banp.spec.egress[..]);
        l.admin_rules(
            &format!("banp/{}", banp.metadata.name),
            TierKind::Baseline,
            &local,
            rules,
            baseline_action,
        );
    }
    Ok(l.ir)
}

fn admin_action(action: AdminAction) -> Action {
    match action {
        AdminAction::Allow => Action::Allow,
        AdminAction::Deny => Action::Deny,
        AdminAction::Pass => Action::NextTier,
    }
}

fn baseline_action(action: BaselineAction) -> Action {
    match action {
        BaselineAction::Allow => Action::Allow,
        BaselineAction::Deny => Action::Deny,
    }
}

/// What the remote side of a rule may be.
enum Peers {
    /// Any address (a NetworkPolicy rule with no `from`/`to`).
    Any,
    /// These addresses.
    Set { name: String, prefixes: PrefixSet },
}

impl Peers {
    fn contains(&self, ip: IpAddr) -> bool {
        match self {
            Peers::Any => true,
            Peers::Set { prefixes, .. } => prefixes.contains(ip),
        }
    }
}

/// A port item of either API, normalized.
enum PortSpec<'p> {
    /// A protocol with a port range (`None`: every port).
    Numeric(Protocol, Option<PortRange>),
    /// A container port name and, for NetworkPolicy, the protocol it must be declared with.
    Named(&'p str, Option<Protocol>),
}

fn np_ports(ports: &[NetworkPolicyPort]) -> Vec<PortSpec<'_>> {
    ports
        .iter()
        .filter_map(|p| {
            let protocol = p.protocol().protocol();
            Some(match &p.port {
                None => PortSpec::Numeric(protocol, None),
                Some(PortRef::Number(n)) => PortSpec::Numeric(
                    protocol,
                    // A range that ends below its start matches nothing (validation refuses it).
                    Some(PortRange::new(*n, p.end_port.unwrap_or(*n)).ok()?),
                ),
                Some(PortRef::Name(name)) => PortSpec::Named(name, Some(protocol)),
            })
        })
        .collect()
}

fn admin_ports(ports: &[AdminPort]) -> Vec<PortSpec<'_>> {
    ports
        .iter()
        .filter_map(|p| {
            Some(match p {
                AdminPort::PortNumber { protocol, port } => {
                    PortSpec::Numeric(protocol.protocol(), Some(PortRange::single(*port)))
                }
                AdminPort::PortRange {
                    protocol,
                    start,
                    end,
                } => PortSpec::Numeric(
                    protocol.protocol(),
                    Some(PortRange::new(*start, *end).ok()?),
                ),
                AdminPort::NamedPort(name) => PortSpec::Named(name, None),
            })
        })
        .collect()
}

struct Lowering<'a> {
    index: &'a InventoryIndex,
    /// Remote sets by content, so rules with the same remote side share one `Arc`.
    sets: HashMap<PrefixSet, Arc<RemoteSet>>,
    ir: PolicyIr,
}

impl Lowering<'_> {
    /// The rules of an (Baseline)AdminNetworkPolicy, ingress then egress, ids
    /// `<prefix>/<direction>/<i>`.
    fn admin_rules<A: Copy>(
        &mut self,
        prefix: &str,
        tier: TierKind,
        local: &[EndpointId],
        (ingress, egress): (&[AdminIngressRule<A>], &[AdminEgressRule<A>]),
        action: fn(A) -> Action,
    ) {
        for (i, rule) in ingress.iter().enumerate() {
            let peers = self.ingress_peers(&rule.from);
            let ports = rule.ports.as_deref().map(admin_ports);
            let id = format!("{prefix}/ingress/{i}");
            self.emit(
                id,
                tier,
                Direction::Ingress,
                action(rule.action),
                local,
                &peers,
                ports.as_deref(),
            );
        }
        for (i, rule) in egress.iter().enumerate() {
            let peers = self.egress_peers(&rule.to);
            let ports = rule.ports.as_deref().map(admin_ports);
            let id = format!("{prefix}/egress/{i}");
            self.emit(
                id,
                tier,
                Direction::Egress,
                action(rule.action),
                local,
                &peers,
                ports.as_deref(),
            );
        }
    }

    fn network_policy(
        &mut self,
        np: &NetworkPolicy,
        isolated: &mut BTreeSet<(EndpointId, Direction)>,
    ) {
        let namespace = np.namespace();
        let local = self.pods(|l, e| {
            l.namespace_name(e) == namespace
                && np.spec.pod_selector.matches(&l.index.workload_of(e).labels)
        });
        for direction in [Direction::Ingress, Direction::Egress] {
            // Rules of a direction the policy does not isolate are ignored, as upstream.
            if !np.spec.applies_to(direction) {
                continue;
            }
            isolated.extend(local.iter().map(|&e| (e, direction)));
            for (i, (peers, ports)) in np.spec.rules(direction).enumerate() {
                let peers = if peers.is_empty() {
                    Peers::Any
                } else {
                    self.np_peers(peers, namespace)
                };
                let ports = (!ports.is_empty()).then(|| np_ports(ports));
                self.emit(
                    format!("np/{namespace}/{}/{direction}/{i}", np.metadata.name),
                    TierKind::Application,
                    direction,
                    Action::Allow,
                    &local,
                    &peers,
                    ports.as_deref(),
                );
            }
        }
    }

    fn namespace_name(&self, e: EndpointId) -> &str {
        &self.index.project_of(e).name
    }

    /// Whether the namespace of `e` matches `sel` (its name label is always implied).
    fn namespace_matches(&self, e: EndpointId, sel: &LabelSelector) -> bool {
        let project = self.index.project_of(e);
        sel.matches_lookup(|key| match key {
            NAMESPACE_NAME_LABEL => Some(project.name.as_str()),
            _ => project.labels.get(key).map(String::as_str),
        })
    }

    fn pods(&self, keep: impl Fn(&Self, EndpointId) -> bool) -> Vec<EndpointId> {
        (0..self.index.endpoints().len() as EndpointId)
            .filter(|&e| keep(self, e))
            .collect()
    }

    fn namespaced_pods(&self, sel: &NamespacedPods) -> Vec<EndpointId> {
        self.pods(|l, e| {
            l.namespace_matches(e, &sel.namespace_selector)
                && sel.pod_selector.matches(&l.index.workload_of(e).labels)
        })
    }

    fn subject(&self, subject: &AdminSubject) -> Vec<EndpointId> {
        match subject {
            AdminSubject::Namespaces(sel) => self.pods(|l, e| l.namespace_matches(e, sel)),
            AdminSubject::Pods(pods) => self.namespaced_pods(pods),
        }
    }

    fn host_prefixes(&self, pods: &[EndpointId]) -> Vec<Prefix> {
        pods.iter()
            .flat_map(|&e| {
                self.index
                    .endpoint(e)
                    .addresses
                    .iter()
                    .map(|&a| Prefix::host(a))
            })
            .collect()
    }

    fn np_peers(&self, peers: &[NetworkPolicyPeer], namespace: &str) -> Peers {
        let mut prefixes = Vec::new();
        let mut names = Vec::new();
        for peer in peers {
            match peer {
                NetworkPolicyPeer::Pods {
                    namespace_selector,
                    pod_selector,
                } => {
                    let pods = self.pods(|l, e| {
                        let in_namespace = match namespace_selector {
                            Some(sel) => l.namespace_matches(e, sel),
                            None => l.namespace_name(e) == namespace,
                        };
                        in_namespace
                            && pod_selector
                                .as_ref()
                                .is_none_or(|sel| sel.matches(&l.index.workload_of(e).labels))
                    });
                    prefixes.extend(self.host_prefixes(&pods));
                    let ns = match namespace_selector {
                        Some(sel) => format!("ns({})", describe_selector(sel)),
                        None => namespace.to_string(),
                    };
                    names.push(match pod_selector {
                        Some(sel) => format!("pods({}) in {ns}", describe_selector(sel)),
                        None => format!("pods in {ns}"),
                    });
                }
                NetworkPolicyPeer::IpBlock(block) => {
                    prefixes.extend(block.cidr.subtract(&block.except));
                    let mut name = block.cidr.to_string();
                    for e in &block.except {
                        name.push_str(&format!(" -{e}"));
                    }
                    names.push(name);
                }
            }
        }
        peer_set(names, prefixes)
    }

    fn ingress_peers(&self, peers: &[AdminIngressPeer]) -> Peers {
        let mut prefixes = Vec::new();
        let mut names = Vec::new();
        for peer in peers {
            let pods = match peer {
                AdminIngressPeer::Namespaces(sel) => {
                    names.push(format!("ns({})", describe_selector(sel)));
                    self.pods(|l, e| l.namespace_matches(e, sel))
                }
                AdminIngressPeer::Pods(sel) => {
                    names.push(describe_namespaced(sel));
                    self.namespaced_pods(sel)
                }
            };
            prefixes.extend(self.host_prefixes(&pods));
        }
        peer_set(names, prefixes)
    }

    fn egress_peers(&self, peers: &[AdminEgressPeer]) -> Peers {
        let mut prefixes = Vec::new();
        let mut names = Vec::new();
        for peer in peers {
            match peer {
                AdminEgressPeer::Namespaces(sel) => {
                    names.push(format!("ns({})", describe_selector(sel)));
                    let pods = self.pods(|l, e| l.namespace_matches(e, sel));
                    prefixes.extend(self.host_prefixes(&pods));
                }
                AdminEgressPeer::Pods(sel) => {
                    names.push(describe_namespaced(sel));
                    prefixes.extend(self.host_prefixes(&self.namespaced_pods(sel)));
                }
                AdminEgressPeer::Nodes(sel) => {
                    names.push(format!("nodes({})", describe_selector(sel)));
                    prefixes.extend(
                        self.index
                            .inventory()
                            .devices
                            .iter()
                            .filter(|d| sel.matches(&d.labels))
                            .filter_map(|d| d.address.map(Prefix::host)),
                    );
                }
                AdminEgressPeer::Networks(nets) => {
                    names.push(
                        nets.iter()
                            .map(Prefix::to_string)
                            .collect::<Vec<_>>()
                            .join(","),
                    );
                    prefixes.extend(nets.iter().copied());
                }
            }
        }
        peer_set(names, prefixes)
    }

    fn remote(&mut self, peers: &Peers) -> Option<Arc<RemoteSet>> {
        match peers {
            Peers::Any => None,
            Peers::Set { name, prefixes } => Some(self.intern(name, prefixes.clone())),
        }
    }

    fn intern(&mut self, name: &str, prefixes: PrefixSet) -> Arc<RemoteSet> {
        Arc::clone(self.sets.entry(prefixes.clone()).or_insert_with(|| {
            Arc::new(RemoteSet {
                name: name.to_string(),
                prefixes,
            })
        }))
    }

    /// Lowers one policy rule; see the module documentation for how it splits.
    // Every argument is one aspect of the rule; bundling them would only rename them.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        id: String,
        tier: TierKind,
        direction: Direction,
        action: Action,
        local: &[EndpointId],
        peers: &Peers,
        ports: Option<&[PortSpec<'_>]>,
    ) {
        if local.is_empty() || matches!(peers, Peers::Set { prefixes, .. } if prefixes.is_empty()) {
            return;
        }
        let rule = |suffix: String,
                    local: Vec<EndpointId>,
                    remote: Option<Arc<RemoteSet>>,
                    protocol: Option<Protocol>,
                    dst_ports: Vec<PortRange>| {
            (
                suffix,
                IrRule {
                    remote,
                    protocol,
                    dst_ports,
                    ..IrRule::new(String::new(), tier, direction, local, action)
                },
            )
        };
        let remote = self.remote(peers);
        let mut parts = Vec::new();
        let Some(ports) = ports else {
            parts.push(rule(
                String::new(),
                local.to_vec(),
                remote,
                None,
                Vec::new(),
            ));
            return self.push(id, parts);
        };
        // Numeric ports, one rule per protocol; `None` collects "every port".
        let mut numeric: BTreeMap<Protocol, Option<Vec<PortRange>>> = BTreeMap::new();
        let mut named = Vec::new();
        for spec in ports {
            match spec {
                PortSpec::Numeric(protocol, range) => {
                    let entry = numeric.entry(*protocol).or_insert_with(|| Some(Vec::new()));
                    match (entry.as_mut(), range) {
                        (Some(ranges), Some(r)) => ranges.push(*r),
                        _ => *entry = None,
                    }
                }
                PortSpec::Named(name, protocol) => named.push((*name, *protocol)),
            }
        }
        for (protocol, ranges) in numeric {
            parts.push(rule(
                protocol.to_string(),
                local.to_vec(),
                remote.clone(),
                Some(protocol),
                ranges.map(PortRange::canonicalize).unwrap_or_default(),
            ));
        }
        if !named.is_empty() {
            match direction {
                // Resolved on the local pod: split the local side.
                Direction::Ingress => {
                    let mut groups: BTreeMap<(Protocol, u16), Vec<EndpointId>> = BTreeMap::new();
                    for &e in local {
                        for key in self.resolve(e, &named) {
                            groups.entry(key).or_default().push(e);
                        }
                    }
                    for ((protocol, port), pods) in groups {
                        parts.push(rule(
                            format!("named-{protocol}-{port}"),
                            pods,
                            remote.clone(),
                            Some(protocol),
                            vec![PortRange::single(port)],
                        ));
                    }
                }
                // Resolved on the remote pod: split the remote side; addresses that are not
                // pods never match a named port.
                Direction::Egress => {
                    let mut groups: BTreeMap<(Protocol, u16), Vec<Prefix>> = BTreeMap::new();
                    for e in 0..self.index.endpoints().len() as EndpointId {
                        let addresses: Vec<Prefix> = self
                            .index
                            .endpoint(e)
                            .addresses
                            .iter()
                            .filter(|&&a| peers.contains(a))
                            .map(|&a| Prefix::host(a))
                            .collect();
                        if addresses.is_empty() {
                            continue;
                        }
                        for key in self.resolve(e, &named) {
                            groups.entry(key).or_default().extend(&addresses);
                        }
                    }
                    let base = match peers {
                        Peers::Any => "anywhere",
                        Peers::Set { name, .. } => name,
                    };
                    for ((protocol, port), addresses) in groups {
                        let remote = self.intern(
                            &format!("{base} with named port {protocol}/{port}"),
                            PrefixSet::from_prefixes(addresses),
                        );
                        parts.push(rule(
                            format!("named-{protocol}-{port}"),
                            local.to_vec(),
                            Some(remote),
                            Some(protocol),
                            vec![PortRange::single(port)],
                        ));
                    }
                }
            }
        }
        self.push(id, parts);
    }

    fn push(&mut self, id: String, parts: Vec<(String, IrRule)>) {
        let single = parts.len() == 1;
        for (suffix, mut rule) in parts {
            rule.id = if single {
                id.clone()
            } else {
                format!("{id}#{suffix}")
            };
            self.ir.rules.push(rule);
        }
    }

    /// The (protocol, port)s `named` resolves to on the ports endpoint `e` declares: the name
    /// must match, and the protocol too when one is given.
    fn resolve(
        &self,
        e: EndpointId,
        named: &[(&str, Option<Protocol>)],
    ) -> BTreeSet<(Protocol, u16)> {
        self.index
            .interface_of(e)
            .ports
            .iter()
            .filter(|d| d.protocol.has_ports())
            .filter(|d| {
                named.iter().any(|(name, protocol)| {
                    d.name.as_deref() == Some(*name) && protocol.is_none_or(|p| p == d.protocol)
                })
            })
            .map(|d| (d.protocol, d.port))
            .collect()
    }
}

fn peer_set(names: Vec<String>, prefixes: Vec<Prefix>) -> Peers {
    let mut name = names.join(" | ");
    if name.chars().count() > MAX_SET_NAME {
        name = name.chars().take(MAX_SET_NAME).collect::<String>() + "…";
    }
    Peers::Set {
        name,
        prefixes: PrefixSet::from_prefixes(prefixes),
    }
}

/// `app=web,tier in (a,b),!legacy`; `*` for the empty selector.
fn describe_selector(sel: &LabelSelector) -> String {
    use crate::manifest::SelectorOperator::*;
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for r in &sel.match_expressions {
        parts.push(match r.operator {
            In => format!("{} in ({})", r.key, r.values.join(",")),
            NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
            Exists => r.key.clone(),
            DoesNotExist => format!("!{}", r.key),
        });
    }
    if parts.is_empty() {
        "*".into()
    } else {
        parts.join(",")
    }
}

fn describe_namespaced(sel: &NamespacedPods) -> String {
    format!(
        "pods({}) in ns({})",
        describe_selector(&sel.pod_selector),
        describe_selector(&sel.namespace_selector)
    )
}
