//! The checks an API server makes on a policy beyond its structure: name and label syntax,
//! selector operators, port numbers and ranges, `endPort`, `except` inside `cidr`, priorities,
//! list sizes and the CRDs' cross-field rules. They run on typed values, so a policy built in
//! code is held to the same rules as a parsed one.

use super::tree::{FieldError, Path, field_error};
use super::{
    AdminEgressPeer, AdminEgressRule, AdminIngressPeer, AdminIngressRule, AdminPort, AdminSubject,
    BASELINE_POLICY_NAME, K8sPolicy, LabelSelector, Labels, NamespacedPods, NetworkPolicy,
    NetworkPolicyPeer, NetworkPolicyPort, ObjectMeta, PortRef, SelectorOperator,
};

type Result = std::result::Result<(), FieldError>;

/// The CRDs' limit on rules per direction, peers per rule and ports per rule.
const MAX_ITEMS: usize = 100;
/// The CRDs' limit on CIDRs in one `networks` peer.
const MAX_NETWORKS: usize = 25;
/// The CRDs' limit on a rule name's length.
const MAX_RULE_NAME: usize = 100;

pub(crate) fn policy(policy: &K8sPolicy) -> Result {
    let root = Path::Root;
    match policy {
        K8sPolicy::NetworkPolicy(np) => network_policy(np, &root),
        K8sPolicy::AdminNetworkPolicy(anp) => {
            metadata(&anp.metadata, &root.field("metadata"), false)?;
            let spec = root.field("spec");
            if anp.spec.priority > 1000 {
                return Err(field_error(
                    &spec.field("priority"),
                    format!("{} is out of range: expected 0 to 1000", anp.spec.priority),
                ));
            }
            subject(&anp.spec.subject, &spec.field("subject"))?;
            ingress_rules(&anp.spec.ingress, &spec.field("ingress"))?;
            egress_rules(&anp.spec.egress, &spec.field("egress"))
        }
        K8sPolicy::BaselineAdminNetworkPolicy(banp) => {
            metadata(&banp.metadata, &root.field("metadata"), false)?;
            if banp.metadata.name != BASELINE_POLICY_NAME {
                return Err(field_error(
                    &root.field("metadata").field("name"),
                    format!(
                        "`{}`: a BaselineAdminNetworkPolicy must be named `{BASELINE_POLICY_NAME}` (there is one per cluster)",
                        banp.metadata.name
                    ),
                ));
            }
            let spec = root.field("spec");
            subject(&banp.spec.subject, &spec.field("subject"))?;
            ingress_rules(&banp.spec.ingress, &spec.field("ingress"))?;
            egress_rules(&banp.spec.egress, &spec.field("egress"))
        }
    }
}

fn metadata(meta: &ObjectMeta, path: &Path<'_>, namespaced: bool) -> Result {
    object_name(&meta.name, &path.field("name"))?;
    if namespaced && let Some(ns) = &meta.namespace {
        dns_label(ns, &path.field("namespace"))?;
    }
    labels(&meta.labels, &path.field("labels"))
}

fn network_policy(np: &NetworkPolicy, root: &Path<'_>) -> Result {
    metadata(&np.metadata, &root.field("metadata"), true)?;
    let spec = root.field("spec");
    selector(&np.spec.pod_selector, &spec.field("podSelector"))?;
    if let Some(types) = &np.spec.policy_types
        && types.len() > 2
    {
        return Err(field_error(
            &spec.field("policyTypes"),
            format!("{} entries: at most 2 (Ingress, Egress)", types.len()),
        ));
    }
    let ingress = spec.field("ingress");
    for (i, rule) in np.spec.ingress.iter().enumerate() {
        let p = ingress.index(i);
        np_peers(&rule.from, &p.field("from"))?;
        np_ports(&rule.ports, &p.field("ports"))?;
    }
    let egress = spec.field("egress");
    for (i, rule) in np.spec.egress.iter().enumerate() {
        let p = egress.index(i);
        np_peers(&rule.to, &p.field("to"))?;
        np_ports(&rule.ports, &p.field("ports"))?;
    }
    Ok(())
}

fn np_peers(peers: &[NetworkPolicyPeer], path: &Path<'_>) -> Result {
    for (i, peer) in peers.iter().enumerate() {
        let p = path.index(i);
        match peer {
            NetworkPolicyPeer::Pods {
                namespace_selector: None,
                pod_selector: None,
            } => {
                return Err(field_error(
                    &p,
                    "must specify a peer: set `podSelector`, `namespaceSelector` or `ipBlock`",
                ));
            }
            NetworkPolicyPeer::Pods {
                namespace_selector,
                pod_selector,
            } => {
                if let Some(s) = namespace_selector {
                    selector(s, &p.field("namespaceSelector"))?;
                }
                if let Some(s) = pod_selector {
                    selector(s, &p.field("podSelector"))?;
                }
            }
            NetworkPolicyPeer::IpBlock(block) => {
                let block_path = p.field("ipBlock");
                let except = block_path.field("except");
                for (j, e) in block.except.iter().enumerate() {
                    if !(block.cidr.covers(e) && e.len() > block.cidr.len()) {
                        return Err(field_error(
                            &except.index(j),
                            format!("`{e}` must be a strict subset of cidr `{}`", block.cidr),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

fn np_ports(ports: &[NetworkPolicyPort], path: &Path<'_>) -> Result {
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        let port_path = p.field("port");
        let end_path = p.field("endPort");
        match (&port.port, port.end_port) {
            (Some(PortRef::Number(0)), _) => {
                return Err(field_error(
                    &port_path,
                    "0 is out of range: expected a number from 1 to 65535",
                ));
            }
            (Some(PortRef::Name(name)), end) => {
                port_name(name, &port_path)?;
                if end.is_some() {
                    return Err(field_error(
                        &end_path,
                        format!("may not be set when `port` is a named port (`{name}`)"),
                    ));
                }
            }
            (None, Some(_)) => {
                return Err(field_error(
                    &end_path,
                    "may not be set without a numeric `port`",
                ));
            }
            (Some(PortRef::Number(start)), Some(end)) if end < *start => {
                return Err(field_error(
                    &end_path,
                    format!("{end} is below port {start}"),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn subject(subject: &AdminSubject, path: &Path<'_>) -> Result {
    match subject {
        AdminSubject::Namespaces(s) => selector(s, &path.field("namespaces")),
        AdminSubject::Pods(pods) => namespaced_pods(pods, &path.field("pods")),
    }
}

fn namespaced_pods(pods: &NamespacedPods, path: &Path<'_>) -> Result {
    selector(&pods.namespace_selector, &path.field("namespaceSelector"))?;
    selector(&pods.pod_selector, &path.field("podSelector"))
}

fn count(len: usize, min: usize, max: usize, what: &str, path: &Path<'_>) -> Result {
    if len < min {
        return Err(field_error(path, format!("needs at least {min} {what}")));
    }
    if len > max {
        return Err(field_error(
            path,
            format!("{len} {what}: at most {max} are allowed"),
        ));
    }
    Ok(())
}

fn rule_name(name: &str, path: &Path<'_>) -> Result {
    if name.chars().count() > MAX_RULE_NAME {
        return Err(field_error(
            &path.field("name"),
            format!(
                "is {} characters long: at most {MAX_RULE_NAME}",
                name.chars().count()
            ),
        ));
    }
    Ok(())
}

fn ingress_rules<A>(rules: &[AdminIngressRule<A>], path: &Path<'_>) -> Result {
    count(rules.len(), 0, MAX_ITEMS, "rules", path)?;
    for (i, rule) in rules.iter().enumerate() {
        let p = path.index(i);
        rule_name(&rule.name, &p)?;
        let from = p.field("from");
        count(rule.from.len(), 1, MAX_ITEMS, "peers", &from)?;
        for (j, peer) in rule.from.iter().enumerate() {
            let q = from.index(j);
            match peer {
                AdminIngressPeer::Namespaces(s) => selector(s, &q.field("namespaces"))?,
                AdminIngressPeer::Pods(pods) => namespaced_pods(pods, &q.field("pods"))?,
            }
        }
        admin_ports(rule.ports.as_deref(), &p.field("ports"))?;
    }
    Ok(())
}

fn egress_rules<A>(rules: &[AdminEgressRule<A>], path: &Path<'_>) -> Result {
    count(rules.len(), 0, MAX_ITEMS, "rules", path)?;
    for (i, rule) in rules.iter().enumerate() {
        let p = path.index(i);
        rule_name(&rule.name, &p)?;
        let to = p.field("to");
        count(rule.to.len(), 1, MAX_ITEMS, "peers", &to)?;
        for (j, peer) in rule.to.iter().enumerate() {
            let q = to.index(j);
            match peer {
                AdminEgressPeer::Namespaces(s) => selector(s, &q.field("namespaces"))?,
                AdminEgressPeer::Pods(pods) => namespaced_pods(pods, &q.field("pods"))?,
                AdminEgressPeer::Nodes(s) => selector(s, &q.field("nodes"))?,
                AdminEgressPeer::Networks(nets) => {
                    count(nets.len(), 1, MAX_NETWORKS, "CIDRs", &q.field("networks"))?
                }
            }
        }
        let ports = rule.ports.as_deref();
        admin_ports(ports, &p.field("ports"))?;
        let named = ports
            .unwrap_or_default()
            .iter()
            .any(|port| matches!(port, AdminPort::NamedPort(_)));
        let addresses = rule.to.iter().any(|peer| {
            matches!(
                peer,
                AdminEgressPeer::Networks(_) | AdminEgressPeer::Nodes(_)
            )
        });
        if named && addresses {
            return Err(field_error(
                &p,
                "networks/nodes peers cannot be combined with named ports: networks and nodes have no named ports",
            ));
        }
    }
    Ok(())
}

fn admin_ports(ports: Option<&[AdminPort]>, path: &Path<'_>) -> Result {
    let Some(ports) = ports else {
        return Ok(());
    };
    count(ports.len(), 1, MAX_ITEMS, "ports", path)?;
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        match port {
            AdminPort::PortNumber { port: 0, .. } => {
                return Err(field_error(
                    &p.field("portNumber").field("port"),
                    "0 is out of range: expected a number from 1 to 65535",
                ));
            }
            AdminPort::NamedPort(name) => port_name(name, &p.field("namedPort"))?,
            AdminPort::PortRange { start, end, .. } => {
                let range = p.field("portRange");
                if *start == 0 {
                    return Err(field_error(
                        &range.field("start"),
                        "0 is out of range: expected a number from 1 to 65535",
                    ));
                }
                if end < start {
                    return Err(field_error(
                        &range.field("end"),
                        format!("{end} is below start {start}"),
                    ));
                }
            }
            AdminPort::PortNumber { .. } => {}
        }
    }
    Ok(())
}

fn selector(sel: &LabelSelector, path: &Path<'_>) -> Result {
    labels(&sel.match_labels, &path.field("matchLabels"))?;
    let exprs = path.field("matchExpressions");
    for (i, req) in sel.match_expressions.iter().enumerate() {
        let p = exprs.index(i);
        qualified_name(&req.key, &p.field("key"))?;
        let values = p.field("values");
        match req.operator {
            SelectorOperator::In | SelectorOperator::NotIn if req.values.is_empty() => {
                return Err(field_error(
                    &values,
                    "must be specified when `operator` is `In` or `NotIn`",
                ));
            }
            SelectorOperator::Exists | SelectorOperator::DoesNotExist if !req.values.is_empty() => {
                return Err(field_error(
                    &values,
                    "may not be specified when `operator` is `Exists` or `DoesNotExist`",
                ));
            }
            _ => {}
        }
        for (j, v) in req.values.iter().enumerate() {
            label_value(v, &values.index(j))?;
        }
    }
    Ok(())
}

fn labels(labels: &Labels, path: &Path<'_>) -> Result {
    for (k, v) in labels {
        let p = path.entry(k);
        qualified_name(k, &p)?;
        label_value(v, &p)?;
    }
    Ok(())
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`
fn is_label_word(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63
/// characters.
fn qualified_name(key: &str, path: &Path<'_>) -> Result {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns_subdomain(prefix)
    {
        return Err(field_error(
            path,
            format!(
                "`{key}`: the prefix `{prefix}` must be a DNS subdomain (lower-case letters, digits, `-`, `.`)"
            ),
        ));
    }
    if name.len() > 63 || !is_label_word(name) {
        return Err(field_error(
            path,
            format!(
                "`{key}` is not a valid label key: the name part must be 1-63 characters of letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit"
            ),
        ));
    }
    Ok(())
}

fn label_value(value: &str, path: &Path<'_>) -> Result {
    if !value.is_empty() && (value.len() > 63 || !is_label_word(value)) {
        return Err(field_error(
            path,
            format!(
                "`{value}` is not a valid label value: at most 63 characters of letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit"
            ),
        ));
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A DNS-1123 subdomain: dot-separated parts of lower-case letters, digits and `-`, each
/// starting and ending with a letter or digit, 253 characters at most.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b.first().is_some_and(u8::is_ascii_alphanumeric)
                && b.last().is_some_and(u8::is_ascii_alphanumeric)
        })
}

fn dns_label(s: &str, path: &Path<'_>) -> Result {
    if !is_dns_label(s) {
        return Err(field_error(
            path,
            format!(
                "`{s}` is not a valid namespace name: 1-63 lower-case letters, digits or `-`, starting and ending with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// An object name. The API server wants a DNS subdomain; upstream policy tools accept any
/// name and their test manifests use `_`, so only what would break rule ids and messages is
/// refused: empty names, `/`, whitespace and control characters, more than 253 characters.
fn object_name(s: &str, path: &Path<'_>) -> Result {
    if s.is_empty()
        || s.len() > 253
        || s.chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control())
    {
        return Err(field_error(
            path,
            format!(
                "`{s}` is not a valid name: 1-253 characters, without `/`, spaces or control characters"
            ),
        ));
    }
    Ok(())
}

/// A container port name: 1-15 lower-case letters, digits and `-`, with at least one letter,
/// no `-` at either end and no `--`.
fn port_name(name: &str, path: &Path<'_>) -> Result {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 15
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(u8::is_ascii_lowercase)
        && b.first() != Some(&b'-')
        && b.last() != Some(&b'-')
        && !name.contains("--");
    if !ok {
        return Err(field_error(
            path,
            format!(
                "`{name}` is not a valid port name: 1-15 lower-case letters, digits and `-`, with at least one letter and no leading, trailing or double `-`"
            ),
        ));
    }
    Ok(())
}
