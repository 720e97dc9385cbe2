//! Kubernetes policy manifests: NetworkPolicy (`networking.k8s.io/v1`), AdminNetworkPolicy and
//! BaselineAdminNetworkPolicy (`policy.networking.k8s.io/v1alpha1`, network-policy-api
//! v0.1.8), as users write them.
//!
//! [`parse_documents`] reads multi-document YAML or a JSON stream and returns the policies it
//! holds (a `List` or typed list contributes its items). It refuses what an API server with
//! `kubectl apply --validate=strict` refuses: unknown or duplicate fields, unknown kinds or
//! API versions, and every value the server validates, with a message that names the source,
//! the document, the object and the field path. It never panics, whatever the input.
//!
//! Three deliberate differences follow the upstream policy tools, which decode manifests into
//! the API's Go types, and whose test manifests rely on them:
//!
//! * YAML is read with YAML 1.2 booleans: an unquoted `y`, `yes` or `on` is a string;
//! * an omitted `namespaceSelector` or `podSelector` in an admin policy's `pods` is `{}`;
//! * object names need not be DNS names: only empty names, `/`, whitespace and control
//!   characters are refused (the first would make rule ids ambiguous).
//!
//! AdminNetworkPolicy `domainNames` peers are refused: an address-matching firewall cannot
//! enforce them without resolving DNS.
//!
//! The types keep what was written where it matters for the meaning: an absent selector is
//! not an empty one, and omitted `policyTypes` or `protocol` stay omitted (the defaults are
//! applied by [`NetworkPolicySpec::applies_to`] and [`NetworkPolicyPort::protocol`]).
//! Values built in code rather than parsed can be checked with [`K8sPolicy::validate`];
//! [`crate::lower`] does so.
//!
//! The robustness contract: YAML input is parsed with serde-saphyr's default budget (nesting
//! depth, alias expansion and document size are bounded), JSON with serde_json's recursion
//! limit, and decoding and validation never index, unwrap or recurse beyond the document's
//! depth.

mod decode;
mod tree;
mod validate;

use std::collections::BTreeMap;

use palisade_program::{Direction, Prefix, Protocol};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::K8sError;

/// The API version of NetworkPolicy.
pub const NETWORK_POLICY_API_VERSION: &str = "networking.k8s.io/v1";
/// The API version of AdminNetworkPolicy and BaselineAdminNetworkPolicy.
pub const ADMIN_POLICY_API_VERSION: &str = "policy.networking.k8s.io/v1alpha1";
/// The label the API server puts on every namespace, holding the namespace's name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// The namespace of a NetworkPolicy whose manifest names none (kubectl's default context).
pub const DEFAULT_NAMESPACE: &str = "default";
/// The only name a BaselineAdminNetworkPolicy may have.
pub const BASELINE_POLICY_NAME: &str = "default";

/// Kubernetes labels (or a selector's `matchLabels`).
pub type Labels = BTreeMap<String, String>;

/// Any supported policy object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum K8sPolicy {
    /// A NetworkPolicy.
    NetworkPolicy(NetworkPolicy),
    /// An AdminNetworkPolicy.
    AdminNetworkPolicy(AdminNetworkPolicy),
    /// The BaselineAdminNetworkPolicy.
    BaselineAdminNetworkPolicy(BaselineAdminNetworkPolicy),
}

impl K8sPolicy {
    /// The object's kind, as in manifests.
    pub fn kind(&self) -> &'static str {
        match self {
            K8sPolicy::NetworkPolicy(_) => "NetworkPolicy",
            K8sPolicy::AdminNetworkPolicy(_) => "AdminNetworkPolicy",
            K8sPolicy::BaselineAdminNetworkPolicy(_) => "BaselineAdminNetworkPolicy",
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            K8sPolicy::NetworkPolicy(p) => &p.metadata,
            K8sPolicy::AdminNetworkPolicy(p) => &p.metadata,
            K8sPolicy::BaselineAdminNetworkPolicy(p) => &p.metadata,
        }
    }

    /// How messages name the object: `NetworkPolicy prod/allow-db`, `AdminNetworkPolicy x`.
    pub fn display_name(&self) -> String {
        match self {
            K8sPolicy::NetworkPolicy(p) => {
                format!("NetworkPolicy {}/{}", p.namespace(), p.metadata.name)
            }
            other => format!("{} {}", other.kind(), other.metadata().name),
        }
    }

    /// Checks everything the API server would check. Parsed policies always pass; values
    /// built in code may not.
    pub fn validate(&self) -> Result<(), K8sError> {
        validate::policy(self).map_err(|e| K8sError::Policy {
            object: self.display_name(),
            path: e.path,
            problem: e.problem,
        })
    }
}

impl<'de> Deserialize<'de> for K8sPolicy {
    /// Decodes one policy object with the same checks as [`parse_documents`] (a list is
    /// refused: it holds several).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let node = tree::Node::deserialize(d)?;
        let mut policies = decode::document(&node).map_err(|e| {
            serde::de::Error::custom(match e.path.is_empty() {
                true => e.problem,
                false => format!("{}: {}", e.path, e.problem),
            })
        })?;
        match (policies.pop(), policies.is_empty()) {
            (Some(policy), true) => Ok(policy),
            _ => Err(serde::de::Error::custom(
                "expected one policy object, found a list of them",
            )),
        }
    }
}

/// The metadata Palisade uses; everything else an object's metadata may hold (annotations,
/// uid, managedFields, ...) is accepted and ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ObjectMeta {
    /// The object's name.
    pub name: String,
    /// The namespace (NetworkPolicy only; ignored on cluster-scoped objects, as the API
    /// server does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The object's own labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
}

impl ObjectMeta {
    /// Metadata with just a name.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// A label selector. The empty selector selects everything; an *absent* selector is
/// represented by `Option::None` where the API distinguishes the two.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must be present with these values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: Labels,
    /// Further requirements, all of which must hold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

impl LabelSelector {
    /// A selector requiring exactly these labels.
    pub fn with_labels<K: Into<String>, V: Into<String>>(
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            match_labels: labels
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            match_expressions: Vec::new(),
        }
    }

    /// True for `{}`, which selects everything.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_lookup(|key| labels.get(key).map(String::as_str))
    }

    /// Whether an object whose labels `get` looks up is selected (lets callers add implied
    /// labels such as [`NAMESPACE_NAME_LABEL`] without copying the map).
    pub fn matches_lookup<'l>(&self, get: impl Fn(&str) -> Option<&'l str>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| get(k) == Some(v.as_str()))
            && self.match_expressions.iter().all(|r| {
                let value = get(&r.key);
                match r.operator {
                    SelectorOperator::In => value.is_some_and(|v| r.values.iter().any(|x| x == v)),
                    // As in Kubernetes, a missing label satisfies `NotIn`.
                    SelectorOperator::NotIn => {
                        value.is_none_or(|v| !r.values.iter().any(|x| x == v))
                    }
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }
}

/// One `matchExpressions` entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// How the label relates to `values`.
    pub operator: SelectorOperator,
    /// Values for `In` and `NotIn` (at least one); empty for `Exists` and `DoesNotExist`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A label selector operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum SelectorOperator {
    /// The label is present with one of the values.
    In,
    /// The label is absent or has none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// A transport protocol a Kubernetes port names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum PortProtocol {
    /// TCP, the default wherever a protocol is omitted.
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

impl PortProtocol {
    /// The IP protocol.
    pub fn protocol(&self) -> Protocol {
        match self {
            PortProtocol::Tcp => Protocol::TCP,
            PortProtocol::Udp => Protocol::UDP,
            PortProtocol::Sctp => Protocol::SCTP,
        }
    }

    /// The Kubernetes spelling: `TCP`, `UDP`, `SCTP`.
    pub fn name(&self) -> &'static str {
        match self {
            PortProtocol::Tcp => "TCP",
            PortProtocol::Udp => "UDP",
            PortProtocol::Sctp => "SCTP",
        }
    }

    /// Parses the Kubernetes spelling (case-sensitive, as the API server is).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "TCP" => Some(PortProtocol::Tcp),
            "UDP" => Some(PortProtocol::Udp),
            "SCTP" => Some(PortProtocol::Sctp),
            _ => None,
        }
    }

    /// The Kubernetes protocol of an IP protocol, if it is one of the three.
    pub fn from_protocol(protocol: Protocol) -> Option<Self> {
        match protocol {
            Protocol::TCP => Some(PortProtocol::Tcp),
            Protocol::UDP => Some(PortProtocol::Udp),
            Protocol::SCTP => Some(PortProtocol::Sctp),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for PortProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{name}` is not a protocol: expected TCP, UDP or SCTP"
            ))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// NetworkPolicy
// ---------------------------------------------------------------------------------------------

/// A NetworkPolicy: namespaced, selects pods of its namespace and lists what they may accept
/// and open (union semantics across policies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// The policy.
    pub spec: NetworkPolicySpec,
}

impl NetworkPolicy {
    /// The namespace, [`DEFAULT_NAMESPACE`] when the manifest names none.
    pub fn namespace(&self) -> &str {
        self.metadata
            .namespace
            .as_deref()
            .unwrap_or(DEFAULT_NAMESPACE)
    }
}

/// The spec of a NetworkPolicy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// The pods of the policy's namespace it applies to (`{}`: all of them).
    pub pod_selector: LabelSelector,
    /// Connections the selected pods may accept.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<NetworkPolicyIngressRule>,
    /// Connections the selected pods may open.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<NetworkPolicyEgressRule>,
    /// The directions the policy isolates, as written; see [`Self::applies_to`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_types: Option<Vec<PolicyType>>,
}

impl NetworkPolicySpec {
    /// Whether the policy isolates its pods in `direction`. With `policyTypes` omitted the
    /// API server defaults it to `[Ingress]`, plus `Egress` when `egress` has rules.
    pub fn applies_to(&self, direction: Direction) -> bool {
        let wanted = match direction {
            Direction::Ingress => PolicyType::Ingress,
            Direction::Egress => PolicyType::Egress,
        };
        match &self.policy_types {
            Some(types) => types.contains(&wanted),
            None => match direction {
                Direction::Ingress => true,
                Direction::Egress => !self.egress.is_empty(),
            },
        }
    }

    /// The rules of one direction as (peers, ports) pairs: `from`/`to` and `ports`.
    pub fn rules(
        &self,
        direction: Direction,
    ) -> impl Iterator<Item = (&[NetworkPolicyPeer], &[NetworkPolicyPort])> {
        let (ingress, egress) = match direction {
            Direction::Ingress => (&self.ingress[..], &[][..]),
            Direction::Egress => (&[][..], &self.egress[..]),
        };
        ingress
            .iter()
            .map(|r| (r.from.as_slice(), r.ports.as_slice()))
            .chain(egress.iter().map(|r| (r.to.as_slice(), r.ports.as_slice())))
    }
}

/// A direction a NetworkPolicy can isolate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum PolicyType {
    /// Incoming connections.
    Ingress,
    /// Outgoing connections.
    Egress,
}

/// An ingress rule: connections from any of `from` (empty: from anywhere) to any of `ports`
/// (empty: any protocol and port).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NetworkPolicyIngressRule {
    /// Allowed sources.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<NetworkPolicyPeer>,
    /// Allowed destination ports on the selected pod.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NetworkPolicyPort>,
}

/// An egress rule: connections to any of `to` (empty: anywhere) on any of `ports` (empty: any
/// protocol and port).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NetworkPolicyEgressRule {
    /// Allowed destinations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<NetworkPolicyPeer>,
    /// Allowed destination ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NetworkPolicyPort>,
}

/// One `from`/`to` entry of a NetworkPolicy rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkPolicyPeer {
    /// Pods: with only `pod_selector`, in the policy's namespace; with only
    /// `namespace_selector`, every pod of the selected namespaces; with both, the selected
    /// pods of the selected namespaces (AND). At least one is set.
    Pods {
        /// Selects namespaces; `None` means the policy's own namespace.
        namespace_selector: Option<LabelSelector>,
        /// Selects pods; `None` means every pod.
        pod_selector: Option<LabelSelector>,
    },
    /// Addresses: the CIDR minus the exceptions, matched by IP (pod IPs included).
    IpBlock(IpBlock),
}

impl Serialize for NetworkPolicyPeer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        match self {
            NetworkPolicyPeer::Pods {
                namespace_selector,
                pod_selector,
            } => {
                if let Some(sel) = namespace_selector {
                    map.serialize_entry("namespaceSelector", sel)?;
                }
                if let Some(sel) = pod_selector {
                    map.serialize_entry("podSelector", sel)?;
                }
            }
            NetworkPolicyPeer::IpBlock(block) => map.serialize_entry("ipBlock", block)?,
        }
        map.end()
    }
}

/// A CIDR minus exceptions (each strictly inside it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IpBlock {
    /// The block (host bits cleared, as Kubernetes matches it).
    pub cidr: Prefix,
    /// Parts of the block that are not included.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<Prefix>,
}

impl IpBlock {
    /// Whether `ip` is in the block and in none of its exceptions.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        self.cidr.contains(ip) && !self.except.iter().any(|e| e.contains(ip))
    }
}

/// One `ports` entry of a NetworkPolicy rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicyPort {
    /// The protocol as written; see [`Self::protocol`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<PortProtocol>,
    /// A port number or a named port of the destination pod; `None` for every port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<PortRef>,
    /// With a numeric `port`: the last port of the inclusive range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_port: Option<u16>,
}

impl NetworkPolicyPort {
    /// The protocol, TCP when omitted.
    pub fn protocol(&self) -> PortProtocol {
        self.protocol.unwrap_or(PortProtocol::Tcp)
    }
}

/// A port by number or by the name a pod declares for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum PortRef {
    /// A port number.
    Number(u16),
    /// A container port name, resolved on the destination pod.
    Name(String),
}

// ---------------------------------------------------------------------------------------------
// AdminNetworkPolicy and BaselineAdminNetworkPolicy
// ---------------------------------------------------------------------------------------------

/// An AdminNetworkPolicy: cluster-scoped, ordered by priority, evaluated before any
/// NetworkPolicy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminNetworkPolicy {
    /// Name and labels.
    pub metadata: ObjectMeta,
    /// The policy.
    pub spec: AdminNetworkPolicySpec,
}

/// The spec of an AdminNetworkPolicy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AdminNetworkPolicySpec {
    /// 0 to 1000; lower values are evaluated first (ties: by name, deterministically).
    pub priority: u32,
    /// The pods the policy applies to.
    pub subject: AdminSubject,
    /// Rules for incoming connections, first match wins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<AdminIngressRule<AdminAction>>,
    /// Rules for outgoing connections, first match wins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<AdminEgressRule<AdminAction>>,
}

/// The BaselineAdminNetworkPolicy (named `default`, one per cluster): evaluated after
/// NetworkPolicies, for connections nothing else decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaselineAdminNetworkPolicy {
    /// Name (always `default`) and labels.
    pub metadata: ObjectMeta,
    /// The policy.
    pub spec: BaselineAdminNetworkPolicySpec,
}

/// The spec of a BaselineAdminNetworkPolicy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BaselineAdminNetworkPolicySpec {
    /// The pods the policy applies to.
    pub subject: AdminSubject,
    /// Rules for incoming connections, first match wins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<AdminIngressRule<BaselineAction>>,
    /// Rules for outgoing connections, first match wins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<AdminEgressRule<BaselineAction>>,
}

/// The pods an (Baseline)AdminNetworkPolicy applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AdminSubject {
    /// Every pod of the selected namespaces.
    Namespaces(LabelSelector),
    /// The selected pods of the selected namespaces.
    Pods(NamespacedPods),
}

/// Pods selected by namespace AND pod labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedPods {
    /// Selects namespaces (`{}`: all).
    pub namespace_selector: LabelSelector,
    /// Selects pods in them (`{}`: all).
    pub pod_selector: LabelSelector,
}

/// What an AdminNetworkPolicy rule does with a connection it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum AdminAction {
    /// Allow, whatever NetworkPolicies and the baseline say.
    Allow,
    /// Deny, whatever NetworkPolicies and the baseline say.
    Deny,
    /// Skip the remaining AdminNetworkPolicy rules: NetworkPolicies (then the baseline) decide.
    Pass,
}

/// What a BaselineAdminNetworkPolicy rule does with a connection it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum BaselineAction {
    /// Allow.
    Allow,
    /// Deny.
    Deny,
}

/// An (Baseline)AdminNetworkPolicy ingress rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AdminIngressRule<A> {
    /// An optional name (at most 100 characters), for people.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What a match does.
    pub action: A,
    /// Sources (at least one).
    pub from: Vec<AdminIngressPeer>,
    /// Destination ports on the subject pod; `None` for every protocol and port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<AdminPort>>,
}

/// An (Baseline)AdminNetworkPolicy egress rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AdminEgressRule<A> {
    /// An optional name (at most 100 characters), for people.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What a match does.
    pub action: A,
    /// Destinations (at least one).
    pub to: Vec<AdminEgressPeer>,
    /// Destination ports; `None` for every protocol and port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<AdminPort>>,
}

/// A source of an admin ingress rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AdminIngressPeer {
    /// Every pod of the selected namespaces.
    Namespaces(LabelSelector),
    /// The selected pods of the selected namespaces.
    Pods(NamespacedPods),
}

/// A destination of an admin egress rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AdminEgressPeer {
    /// Every pod of the selected namespaces.
    Namespaces(LabelSelector),
    /// The selected pods of the selected namespaces.
    Pods(NamespacedPods),
    /// The addresses of the selected nodes.
    Nodes(LabelSelector),
    /// Addresses by CIDR (1 to 25), pods' and nodes' included.
    Networks(Vec<Prefix>),
}

/// A port of an admin rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AdminPort {
    /// One port of one protocol.
    PortNumber {
        /// The protocol (TCP when omitted in the manifest).
        protocol: PortProtocol,
        /// The port.
        port: u16,
    },
    /// A container port name, resolved on the destination pod (its protocol is the one the
    /// pod declares).
    NamedPort(String),
    /// An inclusive range of ports of one protocol.
    PortRange {
        /// The protocol (TCP when omitted in the manifest).
        protocol: PortProtocol,
        /// First port.
        start: u16,
        /// Last port.
        end: u16,
    },
}

macro_rules! serialize_as_manifest {
    ($t:ty, $api:expr, $kind:expr) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut st = s.serialize_struct($kind, 4)?;
                st.serialize_field("apiVersion", $api)?;
                st.serialize_field("kind", $kind)?;
                st.serialize_field("metadata", &self.metadata)?;
                st.serialize_field("spec", &self.spec)?;
                st.end()
            }
        }
    };
}

serialize_as_manifest!(NetworkPolicy, NETWORK_POLICY_API_VERSION, "NetworkPolicy");
serialize_as_manifest!(
    AdminNetworkPolicy,
    ADMIN_POLICY_API_VERSION,
    "AdminNetworkPolicy"
);
serialize_as_manifest!(
    BaselineAdminNetworkPolicy,
    ADMIN_POLICY_API_VERSION,
    "BaselineAdminNetworkPolicy"
);

/// Parses every policy in `text`: multi-document YAML, or JSON (one object or a stream of
/// objects) when the first non-blank character is `{`. `source` names the input in errors
/// (a file name, `stdin`, ...). Documents are numbered from 1, counting non-empty ones.
pub fn parse_documents(text: &str, source: &str) -> Result<Vec<K8sPolicy>, K8sError> {
    let documents = decode::split_documents(text).map_err(|message| K8sError::Syntax {
        origin: source.to_string(),
        message,
    })?;
    let mut out = Vec::new();
    for (i, node) in documents.iter().enumerate() {
        let policies = decode::document(node).map_err(|e| K8sError::Invalid {
            origin: source.to_string(),
            document: i + 1,
            object: e.object,
            path: e.path,
            problem: e.problem,
        })?;
        out.extend(policies);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
