//! From a document tree to typed policies: structure, types, required and unknown fields, and
//! enumerated values. Checks that span fields or concern string syntax live in `validate`,
//! which runs on the typed result so that policies built in code get the same checks.

use std::collections::BTreeMap;

use palisade_program::Prefix;

use super::tree::{FieldError, Node, Path, field_error};
use super::{
    ADMIN_POLICY_API_VERSION, AdminAction, AdminEgressPeer, AdminEgressRule, AdminIngressPeer,
    AdminIngressRule, AdminNetworkPolicy, AdminNetworkPolicySpec, AdminPort, AdminSubject,
    BaselineAction, BaselineAdminNetworkPolicy, BaselineAdminNetworkPolicySpec, IpBlock, K8sPolicy,
    LabelSelector, LabelSelectorRequirement, Labels, NETWORK_POLICY_API_VERSION, NamespacedPods,
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec, ObjectMeta, PolicyType, PortProtocol, PortRef,
    SelectorOperator, validate,
};

type Result<T> = std::result::Result<T, FieldError>;

/// A problem with one document, naming the object when its kind and name could be read.
#[derive(Debug)]
pub(crate) struct DocError {
    pub(crate) object: Option<String>,
    pub(crate) path: String,
    pub(crate) problem: String,
}

/// Reads the documents of `text`: JSON when it starts with `{`, YAML otherwise. Empty YAML
/// documents are skipped.
///
/// YAML is read with YAML 1.2 booleans (only `true`/`false`): `y`, `yes`, `on` are strings.
/// Kubernetes' client-side YAML 1.1 reading would turn an unquoted label value `y` into a
/// boolean that the API server then refuses, but upstream policy tools decode into typed
/// fields and read it as the string, and that is what such manifests mean.
pub(crate) fn split_documents(text: &str) -> std::result::Result<Vec<Node>, String> {
    if text.trim_start().starts_with('{') {
        let mut out = Vec::new();
        for doc in serde_json::Deserializer::from_str(text).into_iter::<Node>() {
            out.push(doc.map_err(|e| format!("invalid JSON: {e}"))?);
        }
        return Ok(out);
    }
    let options = serde_saphyr::options! { with_snippet: false, strict_booleans: true };
    serde_saphyr::from_multiple_with_options::<Node>(text, options)
        .map_err(|e| format!("invalid YAML: {e}"))
}

/// Decodes and validates one document; a list yields its items.
pub(crate) fn document(node: &Node) -> std::result::Result<Vec<K8sPolicy>, DocError> {
    let root = Path::Root;
    object_or_list(node, &root, None)
}

fn object_or_list(
    node: &Node,
    path: &Path<'_>,
    inherited: Option<(&str, &str)>,
) -> std::result::Result<Vec<K8sPolicy>, DocError> {
    let plain = |e: FieldError| DocError {
        object: None,
        path: e.path,
        problem: e.problem,
    };
    let Node::Map(entries) = node else {
        return Err(plain(field_error(
            path,
            format!(
                "expected a mapping with `apiVersion` and `kind`, found {}",
                node.describe()
            ),
        )));
    };
    let lookup = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .filter(|v| **v != Node::Null)
    };
    let api_path = path.field("apiVersion");
    let kind_path = path.field("kind");
    let read = |key: &str, p: &Path<'_>, default: Option<&str>| -> Result<String> {
        match (lookup(key), default) {
            (Some(v), _) => string(v, p),
            (None, Some(d)) => Ok(d.to_string()),
            (None, None) => Err(field_error(p, "required")),
        }
    };
    let api_version = read("apiVersion", &api_path, inherited.map(|i| i.0)).map_err(plain)?;
    let kind = read("kind", &kind_path, inherited.map(|i| i.1)).map_err(plain)?;
    let expected_api = match kind.as_str() {
        "NetworkPolicy" | "NetworkPolicyList" => NETWORK_POLICY_API_VERSION,
        "AdminNetworkPolicy"
        | "BaselineAdminNetworkPolicy"
        | "AdminNetworkPolicyList"
        | "BaselineAdminNetworkPolicyList" => ADMIN_POLICY_API_VERSION,
        "List" => "v1",
        other => {
            return Err(plain(field_error(
                &kind_path,
                format!(
                    "unsupported kind `{other}`: expected NetworkPolicy, AdminNetworkPolicy or BaselineAdminNetworkPolicy (or a List of them)"
                ),
            )));
        }
    };
    if api_version != expected_api {
        return Err(plain(field_error(
            &api_path,
            format!("`{api_version}` is not supported for {kind}: expected `{expected_api}`"),
        )));
    }
    if let Some(item_kind) = kind.strip_suffix("List") {
        let item_defaults = (!item_kind.is_empty()).then_some((expected_api, item_kind));
        let fields =
            object(node, path, &["apiVersion", "kind", "metadata", "items"]).map_err(plain)?;
        let items_path = path.field("items");
        let mut out = Vec::new();
        for (i, item) in fields
            .list("items", &items_path)
            .map_err(plain)?
            .iter()
            .enumerate()
        {
            let p = items_path.index(i);
            let policies = object_or_list(item, &p, item_defaults)?;
            if item_defaults.is_some_and(|(_, k)| policies.iter().any(|x| x.kind() != k)) {
                return Err(plain(field_error(
                    &p,
                    format!("a {kind} holds only {item_kind} objects"),
                )));
            }
            out.extend(policies);
        }
        return Ok(out);
    }
    let object_name = describe_object(&kind, lookup("metadata"));
    let with_object = |e: FieldError| DocError {
        object: Some(object_name.clone()),
        path: e.path,
        problem: e.problem,
    };
    let policy = match kind.as_str() {
        "NetworkPolicy" => network_policy(node, path).map(K8sPolicy::NetworkPolicy),
        "AdminNetworkPolicy" => admin_policy(node, path).map(K8sPolicy::AdminNetworkPolicy),
        _ => baseline_policy(node, path).map(K8sPolicy::BaselineAdminNetworkPolicy),
    }
    .map_err(with_object)?;
    validate::policy(&policy)
        .map_err(|e| {
            // Validation paths are relative to the object; prefix the list position, if any.
            let prefix = path.to_string();
            FieldError {
                path: match (prefix.is_empty(), e.path.is_empty()) {
                    (true, _) => e.path,
                    (false, true) => prefix,
                    (false, false) => format!("{prefix}.{}", e.path),
                },
                problem: e.problem,
            }
        })
        .map_err(with_object)?;
    Ok(vec![policy])
}

/// `NetworkPolicy ns/name` from whatever metadata could be read, for messages.
fn describe_object(kind: &str, metadata: Option<&Node>) -> String {
    let field = |key: &str| match metadata {
        Some(Node::Map(entries)) => entries.iter().find_map(|(k, v)| match v {
            Node::Str(s) if k == key => Some(s.as_str()),
            _ => None,
        }),
        _ => None,
    };
    match (field("name"), field("namespace")) {
        (Some(name), Some(ns)) if kind == "NetworkPolicy" => format!("{kind} {ns}/{name}"),
        (Some(name), None) if kind == "NetworkPolicy" => {
            format!("{kind} {}/{name}", super::DEFAULT_NAMESPACE)
        }
        (Some(name), _) => format!("{kind} {name}"),
        (None, _) => kind.to_string(),
    }
}

/// The fields of a mapping whose keys were all checked against a schema.
struct Fields<'n> {
    entries: &'n [(String, Node)],
}

/// The mapping at `path`, refusing keys outside `known` (null counts as `{}`, as for Go
/// structs).
fn object<'n>(node: &'n Node, path: &Path<'_>, known: &[&str]) -> Result<Fields<'n>> {
    let entries: &[(String, Node)] = match node {
        Node::Map(entries) => entries,
        Node::Null => &[],
        other => {
            return Err(field_error(
                path,
                format!("expected a mapping, found {}", other.describe()),
            ));
        }
    };
    for (key, _) in entries {
        if !known.contains(&key.as_str()) {
            return Err(field_error(
                &path.field(key),
                format!("unknown field; expected one of: {}", known.join(", ")),
            ));
        }
    }
    Ok(Fields { entries })
}

impl<'n> Fields<'n> {
    /// The value of `key`; `None` when absent or null (Go's JSON decoding treats both alike).
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .filter(|v| **v != Node::Null)
    }

    fn required(&self, key: &str, path: &Path<'_>) -> Result<&'n Node> {
        self.get(key).ok_or_else(|| field_error(path, "required"))
    }

    /// The list at `key` (absent: empty).
    fn list(&self, key: &str, path: &Path<'_>) -> Result<&'n [Node]> {
        match self.get(key) {
            None => Ok(&[]),
            Some(node) => list(node, path),
        }
    }

    /// Decodes each element of the list at `key`.
    fn each<T>(
        &self,
        key: &str,
        path: &Path<'_>,
        mut decode: impl FnMut(&'n Node, &Path<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let items = self.list(key, path)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(decode(item, &path.index(i))?);
        }
        Ok(out)
    }
}

fn list<'n>(node: &'n Node, path: &Path<'_>) -> Result<&'n [Node]> {
    match node {
        Node::Seq(items) => Ok(items),
        other => Err(field_error(
            path,
            format!("expected a list, found {}", other.describe()),
        )),
    }
}

fn string(node: &Node, path: &Path<'_>) -> Result<String> {
    match node {
        Node::Str(s) => Ok(s.clone()),
        other => Err(field_error(
            path,
            format!("expected a string, found {}", other.describe()),
        )),
    }
}

fn integer(node: &Node, path: &Path<'_>, lo: i128, hi: i128) -> Result<i128> {
    match node {
        Node::Int(i) if (lo..=hi).contains(i) => Ok(*i),
        Node::Int(i) => Err(field_error(
            path,
            format!("{i} is out of range: expected a number from {lo} to {hi}"),
        )),
        other => Err(field_error(
            path,
            format!("expected a number, found {}", other.describe()),
        )),
    }
}

fn port_number(node: &Node, path: &Path<'_>) -> Result<u16> {
    // The range makes the conversion infallible; `unwrap_or` keeps the code panic-free.
    integer(node, path, 1, 65535).map(|i| u16::try_from(i).unwrap_or(u16::MAX))
}

fn string_map(node: &Node, path: &Path<'_>) -> Result<Labels> {
    let entries: &[(String, Node)] = match node {
        Node::Map(entries) => entries,
        Node::Null => &[],
        other => {
            return Err(field_error(
                path,
                format!("expected a mapping of strings, found {}", other.describe()),
            ));
        }
    };
    let mut out = BTreeMap::new();
    for (k, v) in entries {
        out.insert(k.clone(), string(v, &path.entry(k))?);
    }
    Ok(out)
}

fn one_of<T: Copy>(node: &Node, path: &Path<'_>, choices: &[(&str, T)]) -> Result<T> {
    let text = string(node, path)?;
    choices
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            field_error(
                path,
                format!(
                    "`{text}` is not supported: expected one of {}",
                    names.join(", ")
                ),
            )
        })
}

fn protocol(node: &Node, path: &Path<'_>) -> Result<PortProtocol> {
    one_of(
        node,
        path,
        &[
            ("TCP", PortProtocol::Tcp),
            ("UDP", PortProtocol::Udp),
            ("SCTP", PortProtocol::Sctp),
        ],
    )
}

/// A CIDR as Kubernetes accepts it: `addr/len`, host bits allowed (and cleared).
fn cidr(node: &Node, path: &Path<'_>) -> Result<Prefix> {
    let text = string(node, path)?;
    if !text.contains('/') {
        return Err(field_error(
            path,
            format!("`{text}` is not a CIDR: expected `address/length`, e.g. `10.0.0.0/8`"),
        ));
    }
    Prefix::parse_truncating(&text).map_err(|e| field_error(path, format!("{e}")))
}

fn metadata(node: Option<&Node>, path: &Path<'_>) -> Result<ObjectMeta> {
    let node = node.ok_or_else(|| field_error(path, "required"))?;
    let f = object(
        node,
        path,
        &[
            "name",
            "generateName",
            "namespace",
            "selfLink",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "labels",
            "annotations",
            "ownerReferences",
            "finalizers",
            "managedFields",
        ],
    )?;
    let name_path = path.field("name");
    let ns_path = path.field("namespace");
    let labels_path = path.field("labels");
    let annotations_path = path.field("annotations");
    if let Some(a) = f.get("annotations") {
        string_map(a, &annotations_path)?;
    }
    Ok(ObjectMeta {
        name: string(f.required("name", &name_path)?, &name_path)?,
        namespace: f
            .get("namespace")
            .map(|n| string(n, &ns_path))
            .transpose()?,
        labels: f
            .get("labels")
            .map(|l| string_map(l, &labels_path))
            .transpose()?
            .unwrap_or_default(),
    })
}

fn top<'n>(node: &'n Node, path: &Path<'_>) -> Result<Fields<'n>> {
    object(
        node,
        path,
        &["apiVersion", "kind", "metadata", "spec", "status"],
    )
}

fn network_policy(node: &Node, path: &Path<'_>) -> Result<NetworkPolicy> {
    let f = top(node, path)?;
    let spec_path = path.field("spec");
    Ok(NetworkPolicy {
        metadata: metadata(f.get("metadata"), &path.field("metadata"))?,
        spec: match f.get("spec") {
            Some(spec) => np_spec(spec, &spec_path)?,
            None => NetworkPolicySpec::default(),
        },
    })
}

fn np_spec(node: &Node, path: &Path<'_>) -> Result<NetworkPolicySpec> {
    let f = object(
        node,
        path,
        &["podSelector", "ingress", "egress", "policyTypes"],
    )?;
    let pod_path = path.field("podSelector");
    let types_path = path.field("policyTypes");
    Ok(NetworkPolicySpec {
        pod_selector: f
            .get("podSelector")
            .map(|s| selector(s, &pod_path))
            .transpose()?
            .unwrap_or_default(),
        ingress: f.each("ingress", &path.field("ingress"), |n, p| {
            let r = object(n, p, &["from", "ports"])?;
            Ok(NetworkPolicyIngressRule {
                from: r.each("from", &p.field("from"), np_peer)?,
                ports: r.each("ports", &p.field("ports"), np_port)?,
            })
        })?,
        egress: f.each("egress", &path.field("egress"), |n, p| {
            let r = object(n, p, &["to", "ports"])?;
            Ok(NetworkPolicyEgressRule {
                to: r.each("to", &p.field("to"), np_peer)?,
                ports: r.each("ports", &p.field("ports"), np_port)?,
            })
        })?,
        policy_types: match f.get("policyTypes") {
            None => None,
            Some(_) => Some(f.each("policyTypes", &types_path, |n, p| {
                one_of(
                    n,
                    p,
                    &[
                        ("Ingress", PolicyType::Ingress),
                        ("Egress", PolicyType::Egress),
                    ],
                )
            })?),
        },
    })
}

fn np_peer(node: &Node, path: &Path<'_>) -> Result<NetworkPolicyPeer> {
    let f = object(node, path, &["podSelector", "namespaceSelector", "ipBlock"])?;
    let pod_path = path.field("podSelector");
    let ns_path = path.field("namespaceSelector");
    let pod_selector = f
        .get("podSelector")
        .map(|s| selector(s, &pod_path))
        .transpose()?;
    let namespace_selector = f
        .get("namespaceSelector")
        .map(|s| selector(s, &ns_path))
        .transpose()?;
    match f.get("ipBlock") {
        Some(_) if pod_selector.is_some() || namespace_selector.is_some() => Err(field_error(
            path,
            "may not specify more than 1 peer type: `ipBlock` excludes `podSelector` and `namespaceSelector`",
        )),
        Some(block) => {
            let block_path = path.field("ipBlock");
            let b = object(block, &block_path, &["cidr", "except"])?;
            let cidr_path = block_path.field("cidr");
            Ok(NetworkPolicyPeer::IpBlock(IpBlock {
                cidr: cidr(b.required("cidr", &cidr_path)?, &cidr_path)?,
                except: b.each("except", &block_path.field("except"), cidr)?,
            }))
        }
        None if pod_selector.is_none() && namespace_selector.is_none() => Err(field_error(
            path,
            "must specify a peer: set `podSelector`, `namespaceSelector` or `ipBlock`",
        )),
        None => Ok(NetworkPolicyPeer::Pods {
            namespace_selector,
            pod_selector,
        }),
    }
}

fn np_port(node: &Node, path: &Path<'_>) -> Result<NetworkPolicyPort> {
    let f = object(node, path, &["protocol", "port", "endPort"])?;
    let proto_path = path.field("protocol");
    let port_path = path.field("port");
    let end_path = path.field("endPort");
    Ok(NetworkPolicyPort {
        protocol: f
            .get("protocol")
            .map(|p| protocol(p, &proto_path))
            .transpose()?,
        port: match f.get("port") {
            None => None,
            Some(Node::Str(name)) => Some(PortRef::Name(name.clone())),
            Some(n @ Node::Int(_)) => Some(PortRef::Number(port_number(n, &port_path)?)),
            Some(other) => {
                return Err(field_error(
                    &port_path,
                    format!(
                        "expected a port number or a port name, found {}",
                        other.describe()
                    ),
                ));
            }
        },
        end_port: f
            .get("endPort")
            .map(|e| port_number(e, &end_path))
            .transpose()?,
    })
}

fn selector(node: &Node, path: &Path<'_>) -> Result<LabelSelector> {
    let f = object(node, path, &["matchLabels", "matchExpressions"])?;
    let labels_path = path.field("matchLabels");
    Ok(LabelSelector {
        match_labels: f
            .get("matchLabels")
            .map(|l| string_map(l, &labels_path))
            .transpose()?
            .unwrap_or_default(),
        match_expressions: f.each(
            "matchExpressions",
            &path.field("matchExpressions"),
            |n, p| {
                let r = object(n, p, &["key", "operator", "values"])?;
                let key_path = p.field("key");
                let op_path = p.field("operator");
                Ok(LabelSelectorRequirement {
                    key: string(r.required("key", &key_path)?, &key_path)?,
                    operator: one_of(
                        r.required("operator", &op_path)?,
                        &op_path,
                        &[
                            ("In", SelectorOperator::In),
                            ("NotIn", SelectorOperator::NotIn),
                            ("Exists", SelectorOperator::Exists),
                            ("DoesNotExist", SelectorOperator::DoesNotExist),
                        ],
                    )?,
                    values: r.each("values", &p.field("values"), string)?,
                })
            },
        )?,
    })
}

fn admin_policy(node: &Node, path: &Path<'_>) -> Result<AdminNetworkPolicy> {
    let f = top(node, path)?;
    let spec_path = path.field("spec");
    let s = object(
        f.required("spec", &spec_path)?,
        &spec_path,
        &["priority", "subject", "ingress", "egress"],
    )?;
    let prio_path = spec_path.field("priority");
    let subject_path = spec_path.field("subject");
    let action = |n: &Node, p: &Path<'_>| {
        one_of(
            n,
            p,
            &[
                ("Allow", AdminAction::Allow),
                ("Deny", AdminAction::Deny),
                ("Pass", AdminAction::Pass),
            ],
        )
    };
    Ok(AdminNetworkPolicy {
        metadata: metadata(f.get("metadata"), &path.field("metadata"))?,
        spec: AdminNetworkPolicySpec {
            priority: integer(s.required("priority", &prio_path)?, &prio_path, 0, 1000)?
                .try_into()
                .unwrap_or(u32::MAX),
            subject: subject(s.required("subject", &subject_path)?, &subject_path)?,
            ingress: s.each("ingress", &spec_path.field("ingress"), |n, p| {
                ingress_rule(n, p, action)
            })?,
            egress: s.each("egress", &spec_path.field("egress"), |n, p| {
                egress_rule(n, p, action)
            })?,
        },
    })
}

fn baseline_policy(node: &Node, path: &Path<'_>) -> Result<BaselineAdminNetworkPolicy> {
    let f = top(node, path)?;
    let spec_path = path.field("spec");
    let s = object(
        f.required("spec", &spec_path)?,
        &spec_path,
        &["subject", "ingress", "egress"],
    )?;
    let subject_path = spec_path.field("subject");
    let action = |n: &Node, p: &Path<'_>| {
        one_of(
            n,
            p,
            &[
                ("Allow", BaselineAction::Allow),
                ("Deny", BaselineAction::Deny),
            ],
        )
    };
    Ok(BaselineAdminNetworkPolicy {
        metadata: metadata(f.get("metadata"), &path.field("metadata"))?,
        spec: BaselineAdminNetworkPolicySpec {
            subject: subject(s.required("subject", &subject_path)?, &subject_path)?,
            ingress: s.each("ingress", &spec_path.field("ingress"), |n, p| {
                ingress_rule(n, p, action)
            })?,
            egress: s.each("egress", &spec_path.field("egress"), |n, p| {
                egress_rule(n, p, action)
            })?,
        },
    })
}

/// The single field set among `choices` (the CRDs' `minProperties: 1, maxProperties: 1`).
fn exactly_one<'n>(
    node: &'n Node,
    path: &Path<'_>,
    choices: &[&'static str],
) -> Result<(&'static str, &'n Node)> {
    let f = object(node, path, choices)?;
    let set: Vec<(&'static str, &'n Node)> = choices
        .iter()
        .filter_map(|c| f.get(c).map(|n| (*c, n)))
        .collect();
    match set.as_slice() {
        [one] => Ok(*one),
        _ => Err(field_error(
            path,
            format!("exactly one of {} must be set", choices.join(", ")),
        )),
    }
}

fn subject(node: &Node, path: &Path<'_>) -> Result<AdminSubject> {
    match exactly_one(node, path, &["namespaces", "pods"])? {
        ("namespaces", n) => Ok(AdminSubject::Namespaces(selector(
            n,
            &path.field("namespaces"),
        )?)),
        (_, n) => Ok(AdminSubject::Pods(namespaced_pods(n, &path.field("pods"))?)),
    }
}

/// `{namespaceSelector, podSelector}`. The CRDs mark both required, but an omitted one is
/// read as `{}` (Go's zero value), as upstream tools that decode the API types do: their
/// test manifests rely on it and the meaning is unambiguous.
fn namespaced_pods(node: &Node, path: &Path<'_>) -> Result<NamespacedPods> {
    let f = object(node, path, &["namespaceSelector", "podSelector"])?;
    let ns_path = path.field("namespaceSelector");
    let pod_path = path.field("podSelector");
    let read = |key: &str, p: &Path<'_>| -> Result<LabelSelector> {
        Ok(f.get(key)
            .map(|n| selector(n, p))
            .transpose()?
            .unwrap_or_default())
    };
    Ok(NamespacedPods {
        namespace_selector: read("namespaceSelector", &ns_path)?,
        pod_selector: read("podSelector", &pod_path)?,
    })
}

fn rule_name(f: &Fields<'_>, path: &Path<'_>) -> Result<String> {
    let p = path.field("name");
    Ok(f.get("name")
        .map(|n| string(n, &p))
        .transpose()?
        .unwrap_or_default())
}

fn admin_ports(f: &Fields<'_>, path: &Path<'_>) -> Result<Option<Vec<AdminPort>>> {
    match f.get("ports") {
        None => Ok(None),
        Some(_) => f.each("ports", &path.field("ports"), admin_port).map(Some),
    }
}

/// The parts common to admin ingress and egress rules: name, action, the peers under
/// `peers_key` (required, decoded by `peer`) and ports.
type RuleParts<A, P> = (String, A, Vec<P>, Option<Vec<AdminPort>>);

fn admin_rule<A, P>(
    node: &Node,
    path: &Path<'_>,
    peers_key: &str,
    action: impl Fn(&Node, &Path<'_>) -> Result<A>,
    peer: impl FnMut(&Node, &Path<'_>) -> Result<P>,
) -> Result<RuleParts<A, P>> {
    let f = object(node, path, &["name", "action", peers_key, "ports"])?;
    let action_path = path.field("action");
    let peers_path = path.field(peers_key);
    f.required(peers_key, &peers_path)?;
    Ok((
        rule_name(&f, path)?,
        action(f.required("action", &action_path)?, &action_path)?,
        f.each(peers_key, &peers_path, peer)?,
        admin_ports(&f, path)?,
    ))
}

fn ingress_rule<A>(
    node: &Node,
    path: &Path<'_>,
    action: impl Fn(&Node, &Path<'_>) -> Result<A>,
) -> Result<AdminIngressRule<A>> {
    let (name, action, from, ports) = admin_rule(node, path, "from", action, |n, p| {
        match exactly_one(n, p, &["namespaces", "pods"])? {
            ("namespaces", s) => Ok(AdminIngressPeer::Namespaces(selector(
                s,
                &p.field("namespaces"),
            )?)),
            (_, s) => Ok(AdminIngressPeer::Pods(namespaced_pods(
                s,
                &p.field("pods"),
            )?)),
        }
    })?;
    Ok(AdminIngressRule {
        name,
        action,
        from,
        ports,
    })
}

fn egress_rule<A>(
    node: &Node,
    path: &Path<'_>,
    action: impl Fn(&Node, &Path<'_>) -> Result<A>,
) -> Result<AdminEgressRule<A>> {
    let (name, action, to, ports) = admin_rule(
        node,
        path,
        "to",
        action,
        |n, p| match exactly_one(
            n,
            p,
            &["namespaces", "pods", "nodes", "networks", "domainNames"],
        )? {
            ("namespaces", s) => Ok(AdminEgressPeer::Namespaces(selector(
                s,
                &p.field("namespaces"),
            )?)),
            ("pods", s) => Ok(AdminEgressPeer::Pods(namespaced_pods(s, &p.field("pods"))?)),
            ("nodes", s) => Ok(AdminEgressPeer::Nodes(selector(s, &p.field("nodes"))?)),
            ("networks", s) => {
                let q = p.field("networks");
                list(s, &q)?
                    .iter()
                    .enumerate()
                    .map(|(i, c)| cidr(c, &q.index(i)))
                    .collect::<Result<Vec<_>>>()
                    .map(AdminEgressPeer::Networks)
            }
            _ => Err(field_error(
                &p.field("domainNames"),
                "domain-name peers are not supported: a firewall that matches addresses cannot enforce them without resolving DNS",
            )),
        },
    )?;
    Ok(AdminEgressRule {
        name,
        action,
        to,
        ports,
    })
}

fn admin_port(node: &Node, path: &Path<'_>) -> Result<AdminPort> {
    let proto = |f: &Fields<'_>, p: &Path<'_>| -> Result<PortProtocol> {
        let q = p.field("protocol");
        Ok(f.get("protocol")
            .map(|n| protocol(n, &q))
            .transpose()?
            .unwrap_or(PortProtocol::Tcp))
    };
    match exactly_one(node, path, &["portNumber", "namedPort", "portRange"])? {
        ("portNumber", n) => {
            let p = path.field("portNumber");
            let f = object(n, &p, &["protocol", "port"])?;
            let port_path = p.field("port");
            Ok(AdminPort::PortNumber {
                protocol: proto(&f, &p)?,
                port: port_number(f.required("port", &port_path)?, &port_path)?,
            })
        }
        ("namedPort", n) => Ok(AdminPort::NamedPort(string(n, &path.field("namedPort"))?)),
        (_, n) => {
            let p = path.field("portRange");
            let f = object(n, &p, &["protocol", "start", "end"])?;
            let start_path = p.field("start");
            let end_path = p.field("end");
            Ok(AdminPort::PortRange {
                protocol: proto(&f, &p)?,
                start: port_number(f.required("start", &start_path)?, &start_path)?,
                end: port_number(f.required("end", &end_path)?, &end_path)?,
            })
        }
    }
}
