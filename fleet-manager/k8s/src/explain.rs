//! A direct evaluator of the semantics in the crate documentation: it reads the policies and
//! the inventory for one connection at a time, with no lowering, no address sets and no
//! device programs. It says what decided each side, and it is the oracle the compiled path
//! ([`crate::lower`] + compiler + device programs) is tested against.

use std::fmt;
use std::net::IpAddr;

use palisade_inventory::{AddressOwner, EndpointId, InventoryIndex};
use palisade_program::{Action, Direction, Protocol, TierKind};
use serde::Serialize;

use crate::manifest::{
    AdminAction, AdminEgressPeer, AdminEgressRule, AdminIngressPeer, AdminIngressRule, AdminPort,
    AdminSubject, BaselineAction, K8sPolicy, LabelSelector, NAMESPACE_NAME_LABEL, NamespacedPods,
    NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, PortRef,
};
use crate::order::PolicyOrder;

/// The verdict on one new connection, with what decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Whether the connection is allowed: both judged sides allow it.
    pub allowed: bool,
    /// The source's egress, when the source is a pod.
    pub egress: Option<SideExplanation>,
    /// The destination's ingress, when the destination is a pod.
    pub ingress: Option<SideExplanation>,
}

/// The judgement of one side: a pod and a direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SideExplanation {
    /// The pod's endpoint (`namespace/pod/interface`).
    pub endpoint: String,
    /// Egress for the source, ingress for the destination.
    pub direction: Direction,
    /// Whether this side lets the connection through.
    pub allowed: bool,
    /// What decided.
    pub decision: Decision,
    /// AdminNetworkPolicy `Pass` rules that matched on the way.
    pub passed: Vec<RuleRef>,
}

/// What decided a side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Decision {
    /// A rule allowed or denied.
    Rule {
        /// Its tier.
        tier: TierKind,
        /// The rule.
        rule: RuleRef,
        /// Allow or deny.
        action: Action,
    },
    /// NetworkPolicies isolate the pod in this direction and none of their rules allows the
    /// connection.
    Isolated {
        /// The isolating policies (`NetworkPolicy ns/name`).
        policies: Vec<String>,
    },
    /// No policy decided: allowed.
    Default,
}

/// A rule of a policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    /// The policy (`AdminNetworkPolicy x`, `NetworkPolicy ns/name`, ...).
    pub policy: String,
    /// The rule's id, as [`crate::lower`] names it before any split
    /// (`anp/x/ingress/0`, `np/ns/name/egress/2`, `banp/default/egress/1`).
    pub id: String,
    /// The rule's name (AdminNetworkPolicy rules only; may be empty).
    pub name: String,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", if self.allowed { "allow" } else { "deny" })?;
        for side in [&self.egress, &self.ingress].into_iter().flatten() {
            write!(
                f,
                "  {} {}: {} by ",
                side.endpoint,
                side.direction,
                if side.allowed { "allow" } else { "deny" }
            )?;
            match &side.decision {
                Decision::Rule { tier, rule, .. } => {
                    write!(f, "{tier} tier, {} rule {}", rule.policy, rule.id)?;
                    if !rule.name.is_empty() {
                        write!(f, " ({})", rule.name)?;
                    }
                }
                Decision::Isolated { policies } => write!(
                    f,
                    "isolation: selected by {} and no rule allows",
                    policies.join(", ")
                )?,
                Decision::Default => f.write_str("default (no policy decided)")?,
            }
            for pass in &side.passed {
                write!(f, "; passed by {} rule {}", pass.policy, pass.id)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Evaluates connections against a fixed set of policies and inventory (sorting the policies
/// once).
pub struct Evaluator<'a> {
    index: &'a InventoryIndex,
    order: PolicyOrder<'a>,
}

/// The remote end of a side.
#[derive(Clone, Copy)]
enum Remote {
    Pod(EndpointId),
    Node(usize),
    Other,
}

impl<'a> Evaluator<'a> {
    /// An evaluator for `policies` (assumed valid, as [`crate::lower`] requires) on the
    /// cluster in `index`.
    pub fn new(policies: &'a [K8sPolicy], index: &'a InventoryIndex) -> Self {
        Self {
            index,
            order: PolicyOrder::new(policies),
        }
    }

    /// Judges a new connection from `src` to `dst` on `protocol`/`port` (the destination
    /// port; ignored by rules for protocols without ports).
    pub fn explain(&self, src: IpAddr, dst: IpAddr, protocol: Protocol, port: u16) -> Explanation {
        let egress = match self.remote(src) {
            Remote::Pod(e) => Some(self.side(e, Direction::Egress, dst, protocol, port)),
            _ => None,
        };
        let ingress = match self.remote(dst) {
            Remote::Pod(e) => Some(self.side(e, Direction::Ingress, src, protocol, port)),
            _ => None,
        };
        let allowed = [&egress, &ingress].into_iter().flatten().all(|s| s.allowed);
        Explanation {
            allowed,
            egress,
            ingress,
        }
    }

    fn remote(&self, ip: IpAddr) -> Remote {
        match self.index.owner_of(ip) {
            Some(AddressOwner::Endpoint(e)) => Remote::Pod(e),
            Some(AddressOwner::Device(d)) => Remote::Node(d),
            None => Remote::Other,
        }
    }

    fn side(
        &self,
        pod: EndpointId,
        direction: Direction,
        remote_ip: IpAddr,
        protocol: Protocol,
        port: u16,
    ) -> SideExplanation {
        let remote = self.remote(remote_ip);
        // Named ports are looked up on the destination: the local pod for ingress.
        let destination = match (direction, remote) {
            (Direction::Ingress, _) => Some(pod),
            (Direction::Egress, Remote::Pod(r)) => Some(r),
            (Direction::Egress, _) => None,
        };
        let conn = Conn {
            remote_ip,
            remote,
            destination,
            protocol,
            port,
        };
        let mut passed = Vec::new();
        let side = |allowed: bool, decision: Decision, passed: Vec<RuleRef>| SideExplanation {
            endpoint: self.index.endpoint(pod).name.clone(),
            direction,
            allowed,
            decision,
            passed,
        };
        'admin: for anp in &self.order.admin {
            if !self.subject_selects(&anp.spec.subject, pod) {
                continue;
            }
            let name = &anp.metadata.name;
            let matched = self.first_match(&anp.spec.ingress, &anp.spec.egress, direction, &conn);
            let Some((i, rule_name, action)) = matched else {
                continue;
            };
            let rule = RuleRef {
                policy: format!("AdminNetworkPolicy {name}"),
                id: format!("anp/{name}/{direction}/{i}"),
                name: rule_name.to_string(),
            };
            let action = match action {
                AdminAction::Pass => {
                    passed.push(rule);
                    break 'admin;
                }
                AdminAction::Allow => Action::Allow,
                AdminAction::Deny => Action::Deny,
            };
            let decision = Decision::Rule {
                tier: TierKind::Admin,
                rule,
                action,
            };
            return side(action == Action::Allow, decision, passed);
        }
        let mut isolating = Vec::new();
        for np in &self.order.network {
            if !np.spec.applies_to(direction) || !self.np_selects(np, pod) {
                continue;
            }
            isolating.push(format!(
                "NetworkPolicy {}/{}",
                np.namespace(),
                np.metadata.name
            ));
            for (i, (peers, ports)) in np.spec.rules(direction).enumerate() {
                if self.np_peers_match(peers, np.namespace(), &conn)
                    && self.np_ports_match(ports, &conn)
                {
                    let rule = RuleRef {
                        policy: format!("NetworkPolicy {}/{}", np.namespace(), np.metadata.name),
                        id: format!("np/{}/{}/{direction}/{i}", np.namespace(), np.metadata.name),
                        name: String::new(),
                    };
                    let decision = Decision::Rule {
                        tier: TierKind::Application,
                        rule,
                        action: Action::Allow,
                    };
                    return side(true, decision, passed);
                }
            }
        }
        if !isolating.is_empty() {
            return side(
                false,
                Decision::Isolated {
                    policies: isolating,
                },
                passed,
            );
        }
        if let Some(banp) = self.order.baseline
            && self.subject_selects(&banp.spec.subject, pod)
        {
            let name = &banp.metadata.name;
            let matched = self.first_match(&banp.spec.ingress, &banp.spec.egress, direction, &conn);
            if let Some((i, rule_name, action)) = matched {
                let action = match action {
                    BaselineAction::Allow => Action::Allow,
                    BaselineAction::Deny => Action::Deny,
                };
                let decision = Decision::Rule {
                    tier: TierKind::Baseline,
                    rule: RuleRef {
                        policy: format!("BaselineAdminNetworkPolicy {name}"),
                        id: format!("banp/{name}/{direction}/{i}"),
                        name: rule_name.to_string(),
                    },
                    action,
                };
                return side(action == Action::Allow, decision, passed);
            }
        }
        side(true, Decision::Default, passed)
    }

    /// The first rule of an (Baseline)AdminNetworkPolicy that matches, in the direction
    /// judged: its index, name and action.
    fn first_match<'r, A: Copy>(
        &self,
        ingress: &'r [AdminIngressRule<A>],
        egress: &'r [AdminEgressRule<A>],
        direction: Direction,
        conn: &Conn,
    ) -> Option<(usize, &'r str, A)> {
        match direction {
            Direction::Ingress => ingress.iter().enumerate().find_map(|(i, r)| {
                (self.ingress_peers_match(&r.from, conn)
                    && self.admin_ports_match(r.ports.as_deref(), conn))
                .then_some((i, r.name.as_str(), r.action))
            }),
            Direction::Egress => egress.iter().enumerate().find_map(|(i, r)| {
                (self.egress_peers_match(&r.to, conn)
                    && self.admin_ports_match(r.ports.as_deref(), conn))
                .then_some((i, r.name.as_str(), r.action))
            }),
        }
    }

    fn namespace_selected(&self, pod: EndpointId, sel: &LabelSelector) -> bool {
        let ns = self.index.project_of(pod);
        sel.matches_lookup(|key| {
            if key == NAMESPACE_NAME_LABEL {
                Some(ns.name.as_str())
            } else {
                ns.labels.get(key).map(String::as_str)
            }
        })
    }

    fn pod_selected(&self, pod: EndpointId, sel: &LabelSelector) -> bool {
        sel.matches(&self.index.workload_of(pod).labels)
    }

    fn namespaced_selects(&self, sel: &NamespacedPods, pod: EndpointId) -> bool {
        self.namespace_selected(pod, &sel.namespace_selector)
            && self.pod_selected(pod, &sel.pod_selector)
    }

    fn subject_selects(&self, subject: &AdminSubject, pod: EndpointId) -> bool {
        match subject {
            AdminSubject::Namespaces(sel) => self.namespace_selected(pod, sel),
            AdminSubject::Pods(sel) => self.namespaced_selects(sel, pod),
        }
    }

    fn np_selects(&self, np: &NetworkPolicy, pod: EndpointId) -> bool {
        self.index.project_of(pod).name == np.namespace()
            && self.pod_selected(pod, &np.spec.pod_selector)
    }

    fn np_peers_match(&self, peers: &[NetworkPolicyPeer], namespace: &str, conn: &Conn) -> bool {
        peers.is_empty()
            || peers.iter().any(|peer| match peer {
                NetworkPolicyPeer::IpBlock(block) => block.contains(conn.remote_ip),
                NetworkPolicyPeer::Pods {
                    namespace_selector,
                    pod_selector,
                } => {
                    let Remote::Pod(r) = conn.remote else {
                        return false;
                    };
                    let namespace_ok = match namespace_selector {
                        Some(sel) => self.namespace_selected(r, sel),
                        None => self.index.project_of(r).name == namespace,
                    };
                    namespace_ok
                        && pod_selector
                            .as_ref()
                            .is_none_or(|sel| self.pod_selected(r, sel))
                }
            })
    }

    fn np_ports_match(&self, ports: &[NetworkPolicyPort], conn: &Conn) -> bool {
        ports.is_empty()
            || ports.iter().any(|p| {
                let protocol = p.protocol().protocol();
                protocol == conn.protocol
                    && match &p.port {
                        None => true,
                        Some(PortRef::Number(n)) => match p.end_port {
                            Some(end) => *n <= conn.port && conn.port <= end,
                            None => *n == conn.port,
                        },
                        Some(PortRef::Name(name)) => self.declares(conn, name, Some(protocol)),
                    }
            })
    }

    /// Whether the destination pod declares `name` (with `protocol`, if given) as the
    /// connection's protocol and port.
    fn declares(&self, conn: &Conn, name: &str, protocol: Option<Protocol>) -> bool {
        let Some(pod) = conn.destination else {
            return false;
        };
        self.index.interface_of(pod).ports.iter().any(|d| {
            d.name.as_deref() == Some(name)
                && d.protocol.has_ports()
                && protocol.is_none_or(|p| p == d.protocol)
                && d.protocol == conn.protocol
                && d.port == conn.port
        })
    }

    fn ingress_peers_match(&self, peers: &[AdminIngressPeer], conn: &Conn) -> bool {
        let Remote::Pod(r) = conn.remote else {
            return false;
        };
        peers.iter().any(|peer| match peer {
            AdminIngressPeer::Namespaces(sel) => self.namespace_selected(r, sel),
            AdminIngressPeer::Pods(sel) => self.namespaced_selects(sel, r),
        })
    }

    fn egress_peers_match(&self, peers: &[AdminEgressPeer], conn: &Conn) -> bool {
        peers.iter().any(|peer| match (peer, conn.remote) {
            (AdminEgressPeer::Namespaces(sel), Remote::Pod(r)) => self.namespace_selected(r, sel),
            (AdminEgressPeer::Pods(sel), Remote::Pod(r)) => self.namespaced_selects(sel, r),
            (AdminEgressPeer::Nodes(sel), Remote::Node(d)) => {
                sel.matches(&self.index.inventory().devices[d].labels)
            }
            (AdminEgressPeer::Networks(nets), _) => nets.iter().any(|n| n.contains(conn.remote_ip)),
            _ => false,
        })
    }

    fn admin_ports_match(&self, ports: Option<&[AdminPort]>, conn: &Conn) -> bool {
        let Some(ports) = ports else {
            return true;
        };
        ports.iter().any(|p| match p {
            AdminPort::PortNumber { protocol, port } => {
                protocol.protocol() == conn.protocol && *port == conn.port
            }
            AdminPort::PortRange {
                protocol,
                start,
                end,
            } => protocol.protocol() == conn.protocol && *start <= conn.port && conn.port <= *end,
            AdminPort::NamedPort(name) => self.declares(conn, name, None),
        })
    }
}

/// One connection as seen from the side being judged.
struct Conn {
    remote_ip: IpAddr,
    remote: Remote,
    /// The pod whose declared ports named ports resolve against.
    destination: Option<EndpointId>,
    protocol: Protocol,
    port: u16,
}

/// Judges one new connection; see [`Evaluator`] to judge many against the same policies.
pub fn explain(
    policies: &[K8sPolicy],
    index: &InventoryIndex,
    src: IpAddr,
    dst: IpAddr,
    protocol: Protocol,
    port: u16,
) -> Explanation {
    Evaluator::new(policies, index).explain(src, dst, protocol, port)
}
