//! Kubernetes network policies with upstream semantics, lowered into Palisade's three tiers.
//!
//! # The model
//!
//! A cluster is read from the inventory: namespaces are projects (with their labels;
//! `kubernetes.io/metadata.name` is always implied), pods are workloads (their labels; each
//! interface is an endpoint whose declared ports are the pod's container ports, enforced by
//! the interface's device, the pod's node), and nodes are devices (address and labels).
//!
//! One side of a connection is judged for a pod end: the source's egress and the
//! destination's ingress, each on its own, and the connection passes only if both allow it.
//! Ends that are not pods (external addresses, node addresses) have no side. A side runs
//! through the tiers in order:
//!
//! 1. **Admin tier** — [`AdminNetworkPolicy`]s whose subject selects the pod, by priority (then
//!    name), rules in order; the first matching rule allows, denies, or passes (skips the rest
//!    of the tier).
//! 2. **Application tier** — [`NetworkPolicy`]s, with union semantics: if any policy selects the
//!    pod for this direction, the pod is isolated and only what some rule of such a policy
//!    allows passes; otherwise the tier has no say.
//! 3. **Baseline tier** — the [`BaselineAdminNetworkPolicy`]: first matching rule allows or
//!    denies; if none matches, the connection is allowed.
//!
//! [`lower`] turns policies and the inventory into the compiler's
//! [`PolicyIr`](palisade_compiler::PolicyIr); [`explain`] evaluates the same semantics straight
//! from the policies and is the oracle the compiled path is tested against; [`case`] runs the
//! differential corpus in `shared/data/netpol/`.
//!
//! Pure: no I/O (apart from [`case::Case::load`]), no clocks.

pub mod case;
mod error;
mod explain;
mod lower;
pub mod manifest;
mod order;

pub use error::K8sError;
pub use explain::{Decision, Evaluator, Explanation, RuleRef, SideExplanation, explain};
pub use lower::lower;
pub use manifest::{
    AdminAction, AdminEgressPeer, AdminEgressRule, AdminIngressPeer, AdminIngressRule,
    AdminNetworkPolicy, AdminNetworkPolicySpec, AdminPort, AdminSubject, BaselineAction,
    BaselineAdminNetworkPolicy, BaselineAdminNetworkPolicySpec, IpBlock, K8sPolicy, LabelSelector,
    LabelSelectorRequirement, NamespacedPods, NetworkPolicy, NetworkPolicyEgressRule,
    NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec, ObjectMeta,
    PolicyType, PortProtocol, PortRef, SelectorOperator, parse_documents,
};
