use super::*;

fn parse(text: &str) -> Vec<K8sPolicy> {
    parse_documents(text, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn one<const N: usize>(text: &str) -> [K8sPolicy; N] {
    parse(text)
        .try_into()
        .unwrap_or_else(|v: Vec<K8sPolicy>| panic!("expected {N} policies, got {}", v.len()))
}

fn error(text: &str) -> String {
    match parse_documents(text, "policies.yaml") {
        Ok(p) => panic!("expected an error, parsed {p:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_error(text: &str, expected: &str) {
    let message = error(text);
    assert_eq!(message, expected);
}

const NP: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: allow-db\n  namespace: prod\n";

#[test]
fn a_full_network_policy_parses_with_defaults_left_open() {
    let text = format!(
        "{NP}spec:
  podSelector: {{matchLabels: {{app: db}}}}
  ingress:
  - from:
    - namespaceSelector: {{matchLabels: {{team: a}}}}
      podSelector: {{}}
    - ipBlock: {{cidr: 10.0.0.1/8, except: [10.1.0.0/16]}}
    ports:
    - port: 5432
    - {{protocol: UDP, port: dns}}
    - {{protocol: SCTP, port: 80, endPort: 90}}
  egress: []
"
    );
    let [K8sPolicy::NetworkPolicy(np)] = one(&text) else {
        panic!("expected one NetworkPolicy")
    };
    assert_eq!(np.namespace(), "prod");
    assert!(np.spec.policy_types.is_none());
    assert!(np.spec.applies_to(Direction::Ingress));
    assert!(
        !np.spec.applies_to(Direction::Egress),
        "`egress: []` adds no Egress"
    );
    let rule = &np.spec.ingress[0];
    assert_eq!(
        rule.from[0],
        NetworkPolicyPeer::Pods {
            namespace_selector: Some(LabelSelector::with_labels([("team", "a")])),
            pod_selector: Some(LabelSelector::default()),
        }
    );
    let NetworkPolicyPeer::IpBlock(block) = &rule.from[1] else {
        panic!("expected an ipBlock")
    };
    assert_eq!(
        block.cidr.to_string(),
        "10.0.0.0/8",
        "host bits are cleared"
    );
    assert!(block.contains("10.2.0.1".parse().unwrap()));
    assert!(!block.contains("10.1.0.1".parse().unwrap()));
    assert_eq!(rule.ports[0].protocol, None);
    assert_eq!(rule.ports[0].protocol(), PortProtocol::Tcp);
    assert_eq!(rule.ports[1].port, Some(PortRef::Name("dns".into())));
    assert_eq!(rule.ports[2].end_port, Some(90));
}

#[test]
fn policy_types_default_to_ingress_plus_egress_when_egress_has_rules() {
    let with_egress = format!("{NP}spec:\n  egress:\n  - {{}}\n");
    let [K8sPolicy::NetworkPolicy(np)] = one(&with_egress) else {
        panic!()
    };
    assert!(np.spec.applies_to(Direction::Ingress) && np.spec.applies_to(Direction::Egress));
    let explicit = format!("{NP}spec:\n  policyTypes: [Egress]\n  ingress:\n  - {{}}\n");
    let [K8sPolicy::NetworkPolicy(np)] = one(&explicit) else {
        panic!()
    };
    assert!(!np.spec.applies_to(Direction::Ingress) && np.spec.applies_to(Direction::Egress));
}

#[test]
fn admin_and_baseline_policies_parse() {
    let text = "
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: cluster-control}
spec:
  priority: 34
  subject: {namespaces: {}}
  ingress:
  - name: allow-monitoring
    action: Pass
    from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]
  egress:
  - action: Deny
    to: [{networks: [192.0.2.0/24]}, {nodes: {matchExpressions: [{key: role, operator: Exists}]}}]
    ports: [{portNumber: {port: 53, protocol: UDP}}, {portRange: {start: 1, end: 1024}}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: x}}}}
  egress:
  - {action: Allow, to: [{pods: {namespaceSelector: {}, podSelector: {}}}], ports: [{namedPort: web}]}
";
    let [
        K8sPolicy::AdminNetworkPolicy(anp),
        K8sPolicy::BaselineAdminNetworkPolicy(banp),
    ] = one(text)
    else {
        panic!("expected ANP then BANP")
    };
    assert_eq!(anp.spec.priority, 34);
    assert_eq!(anp.spec.ingress[0].action, AdminAction::Pass);
    assert_eq!(anp.spec.ingress[0].ports, None);
    assert_eq!(
        anp.spec.egress[0].ports.as_deref().unwrap()[1],
        AdminPort::PortRange {
            protocol: PortProtocol::Tcp,
            start: 1,
            end: 1024
        }
    );
    assert_eq!(
        banp.spec.egress[0].ports.as_deref().unwrap()[0],
        AdminPort::NamedPort("web".into())
    );
}

#[test]
fn json_streams_and_lists_are_read() {
    let json = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "a", "namespace": "x", "annotations": {"k": "v"}, "uid": "1"},
         "spec": {"podSelector": {}}}]}
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicyList", "items": [
         {"metadata": {"name": "b"}, "spec": {}}]}"#;
    let policies = parse(json);
    let names: Vec<String> = policies.iter().map(K8sPolicy::display_name).collect();
    assert_eq!(names, ["NetworkPolicy x/a", "NetworkPolicy default/b"]);
}

#[test]
fn serialization_round_trips() {
    let text = format!(
        "{NP}spec:\n  podSelector: {{matchExpressions: [{{key: a, operator: NotIn, values: [x]}}]}}\n  ingress:\n  - from: [{{ipBlock: {{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}}}, {{podSelector: {{}}}}]\n    ports: [{{port: web}}, {{protocol: UDP}}]\n  policyTypes: [Ingress, Egress]\n"
    );
    let policies = parse(&text);
    let json = serde_json::to_string(&policies[0]).unwrap();
    assert_eq!(parse(&json), policies);
    let via_serde: K8sPolicy = serde_json::from_str(&json).unwrap();
    assert_eq!(via_serde, policies[0]);
}

#[test]
fn selectors_follow_kubernetes_operators() {
    let sel = |op: SelectorOperator, values: &[&str]| LabelSelector {
        match_labels: Labels::new(),
        match_expressions: vec![LabelSelectorRequirement {
            key: "tier".into(),
            operator: op,
            values: values.iter().map(|v| v.to_string()).collect(),
        }],
    };
    let web: Labels = [("tier".to_string(), "web".to_string())].into();
    let none = Labels::new();
    assert!(sel(SelectorOperator::In, &["web", "db"]).matches(&web));
    assert!(!sel(SelectorOperator::In, &["web"]).matches(&none));
    assert!(sel(SelectorOperator::NotIn, &["db"]).matches(&web));
    assert!(
        sel(SelectorOperator::NotIn, &["web"]).matches(&none),
        "absent satisfies NotIn"
    );
    assert!(sel(SelectorOperator::Exists, &[]).matches(&web));
    assert!(sel(SelectorOperator::DoesNotExist, &[]).matches(&none));
    assert!(LabelSelector::default().matches(&none));
}

#[test]
fn errors_name_source_document_object_and_field() {
    let second = format!(
        "{NP}spec: {{}}\n---\n{NP}spec:\n  ingress:\n  - ports:\n    - port: 80\n    - port: 80\n      endPort: 79\n"
    );
    assert_error(
        &second,
        "policies.yaml, document 2 (NetworkPolicy prod/allow-db): spec.ingress[0].ports[1].endPort: 79 is below port 80",
    );
    assert_error(
        &format!("{NP}spec:\n  ingress:\n  - ports: [{{port: http, endPort: 90}}]\n"),
        "policies.yaml, document 1 (NetworkPolicy prod/allow-db): spec.ingress[0].ports[0].endPort: may not be set when `port` is a named port (`http`)",
    );
    assert_error(
        &format!("{NP}spec:\n  egress:\n  - ports: [{{protocol: ICMP}}]\n"),
        "policies.yaml, document 1 (NetworkPolicy prod/allow-db): spec.egress[0].ports[0].protocol: `ICMP` is not supported: expected one of TCP, UDP, SCTP",
    );
    assert_error(
        &format!("{NP}spec:\n  podSelector: {{matchLabel: {{a: b}}}}\n"),
        "policies.yaml, document 1 (NetworkPolicy prod/allow-db): spec.podSelector.matchLabel: unknown field; expected one of: matchLabels, matchExpressions",
    );
    assert_error(
        &format!(
            "{NP}spec:\n  ingress:\n  - from: [{{ipBlock: {{cidr: 10.0.0.0/16, except: [10.0.0.0/8]}}}}]\n"
        ),
        "policies.yaml, document 1 (NetworkPolicy prod/allow-db): spec.ingress[0].from[0].ipBlock.except[0]: `10.0.0.0/8` must be a strict subset of cidr `10.0.0.0/16`",
    );
    assert_error(
        &format!("{NP}spec:\n  ingress:\n  - from: [{{ipBlock: {{cidr: 10.0.0.0}}}}]\n"),
        "policies.yaml, document 1 (NetworkPolicy prod/allow-db): spec.ingress[0].from[0].ipBlock.cidr: `10.0.0.0` is not a CIDR: expected `address/length`, e.g. `10.0.0.0/8`",
    );
    assert_error(
        &format!(
            "{NP}spec:\n  ingress:\n  - from: [{{ipBlock: {{cidr: 10.0.0.0/8}}, podSelector: {{}}}}]\n"
        ),
        "policies.yaml, document 1 (NetworkPolicy prod/allow-db): spec.ingress[0].from[0]: may not specify more than 1 peer type: `ipBlock` excludes `podSelector` and `namespaceSelector`",
    );
    assert_error(
        &format!("{NP}spec:\n  podSelector:\n    matchExpressions: [{{key: a, operator: In}}]\n"),
        "policies.yaml, document 1 (NetworkPolicy prod/allow-db): spec.podSelector.matchExpressions[0].values: must be specified when `operator` is `In` or `NotIn`",
    );
    assert_error(
        &format!(
            "{NP}spec:\n  podSelector:\n    matchExpressions: [{{key: a, operator: Exists, values: [x]}}]\n"
        ),
        "policies.yaml, document 1 (NetworkPolicy prod/allow-db): spec.podSelector.matchExpressions[0].values: may not be specified when `operator` is `Exists` or `DoesNotExist`",
    );
    assert_error(
        &format!("{NP}spec:\n  podSelector:\n    matchExpressions: [{{key: a, operator: Like}}]\n"),
        "policies.yaml, document 1 (NetworkPolicy prod/allow-db): spec.podSelector.matchExpressions[0].operator: `Like` is not supported: expected one of In, NotIn, Exists, DoesNotExist",
    );
    assert_error(
        &format!("{NP}spec:\n  ingress:\n  - ports: [{{port: 70000}}]\n"),
        "policies.yaml, document 1 (NetworkPolicy prod/allow-db): spec.ingress[0].ports[0].port: 70000 is out of range: expected a number from 1 to 65535",
    );
    assert_error(
        &format!("{NP}spec:\n  policyTypes: [Ingress, Sideways]\n"),
        "policies.yaml, document 1 (NetworkPolicy prod/allow-db): spec.policyTypes[1]: `Sideways` is not supported: expected one of Ingress, Egress",
    );
}

#[test]
fn admin_errors_name_the_field() {
    let anp = "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: x}\n";
    assert_error(
        &format!("{anp}spec: {{priority: 1001, subject: {{namespaces: {{}}}}}}\n"),
        "policies.yaml, document 1 (AdminNetworkPolicy x): spec.priority: 1001 is out of range: expected a number from 0 to 1000",
    );
    assert_error(
        &format!(
            "{anp}spec: {{priority: 1, subject: {{namespaces: {{}}, pods: {{namespaceSelector: {{}}, podSelector: {{}}}}}}}}\n"
        ),
        "policies.yaml, document 1 (AdminNetworkPolicy x): spec.subject: exactly one of namespaces, pods must be set",
    );
    assert_error(
        &format!(
            "{anp}spec:\n  priority: 1\n  subject: {{namespaces: {{}}}}\n  egress: [{{action: Deny, to: []}}]\n"
        ),
        "policies.yaml, document 1 (AdminNetworkPolicy x): spec.egress[0].to: needs at least 1 peers",
    );
    assert_error(
        &format!(
            "{anp}spec:\n  priority: 1\n  subject: {{namespaces: {{}}}}\n  ingress: [{{action: Drop, from: [{{namespaces: {{}}}}]}}]\n"
        ),
        "policies.yaml, document 1 (AdminNetworkPolicy x): spec.ingress[0].action: `Drop` is not supported: expected one of Allow, Deny, Pass",
    );
    assert_error(
        &format!(
            "{anp}spec:\n  priority: 1\n  subject: {{namespaces: {{}}}}\n  egress: [{{action: Deny, to: [{{networks: [10.0.0.0/8]}}], ports: [{{namedPort: web}}]}}]\n"
        ),
        "policies.yaml, document 1 (AdminNetworkPolicy x): spec.egress[0]: networks/nodes peers cannot be combined with named ports: networks and nodes have no named ports",
    );
    assert_error(
        &format!(
            "{anp}spec:\n  priority: 1\n  subject: {{namespaces: {{}}}}\n  egress: [{{action: Deny, to: [{{namespaces: {{}}}}], ports: [{{portRange: {{start: 90, end: 80}}}}]}}]\n"
        ),
        "policies.yaml, document 1 (AdminNetworkPolicy x): spec.egress[0].ports[0].portRange.end: 80 is below start 90",
    );
    assert_error(
        &format!(
            "{anp}spec:\n  priority: 1\n  subject: {{namespaces: {{}}}}\n  egress: [{{action: Deny, to: [{{namespaces: {{}}}}], ports: []}}]\n"
        ),
        "policies.yaml, document 1 (AdminNetworkPolicy x): spec.egress[0].ports: needs at least 1 ports",
    );
    assert_error(
        "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata: {name: other}\nspec: {subject: {namespaces: {}}}\n",
        "policies.yaml, document 1 (BaselineAdminNetworkPolicy other): metadata.name: `other`: a BaselineAdminNetworkPolicy must be named `default` (there is one per cluster)",
    );
    assert_error(
        "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata: {name: default}\nspec: {subject: {namespaces: {}}, ingress: [{action: Pass, from: [{namespaces: {}}]}]}\n",
        "policies.yaml, document 1 (BaselineAdminNetworkPolicy default): spec.ingress[0].action: `Pass` is not supported: expected one of Allow, Deny",
    );
}

#[test]
fn kinds_versions_and_syntax_errors() {
    assert_error(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
        "policies.yaml, document 1: kind: unsupported kind `Pod`: expected NetworkPolicy, AdminNetworkPolicy or BaselineAdminNetworkPolicy (or a List of them)",
    );
    assert_error(
        "apiVersion: networking.k8s.io/v1beta1\nkind: NetworkPolicy\nmetadata: {name: x}\n",
        "policies.yaml, document 1: apiVersion: `networking.k8s.io/v1beta1` is not supported for NetworkPolicy: expected `networking.k8s.io/v1`",
    );
    assert_error(
        "- 1\n",
        "policies.yaml, document 1: expected a mapping with `apiVersion` and `kind`, found a list",
    );
    assert_error(
        &format!("{NP}spec: {{}}\nstatus: {{}}\nextra: 1\n"),
        "policies.yaml, document 1 (NetworkPolicy prod/allow-db): extra: unknown field; expected one of: apiVersion, kind, metadata, spec, status",
    );
    let syntax = error("a: [\n");
    assert!(
        syntax.starts_with("policies.yaml: invalid YAML:") && syntax.contains("line"),
        "{syntax}"
    );
    let dup = error(&format!("{NP}spec: {{}}\nspec: {{}}\n"));
    assert!(dup.contains("duplicate"), "{dup}");
    let json = error("{\"kind\": \"NetworkPolicy\",}");
    assert!(json.starts_with("policies.yaml: invalid JSON:"), "{json}");
    assert_error(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a/b}\n",
        "policies.yaml, document 1 (NetworkPolicy default/a/b): metadata.name: `a/b` is not a valid name: 1-253 characters, without `/`, spaces or control characters",
    );
    assert_error(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: Prod}\n",
        "policies.yaml, document 1 (NetworkPolicy Prod/x): metadata.namespace: `Prod` is not a valid namespace name: 1-63 lower-case letters, digits or `-`, starting and ending with a letter or digit",
    );
    assert_error(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, labels: {a: true}}\n",
        "policies.yaml, document 1 (NetworkPolicy default/x): metadata.labels[a]: expected a string, found the boolean true",
    );
    assert_error(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  metadata: {name: x}\n  spec: {ingress: [{ports: [{port: 0}]}]}\n",
        "policies.yaml, document 1 (NetworkPolicy default/x): items[0].spec.ingress[0].ports[0].port: 0 is out of range: expected a number from 1 to 65535",
    );
}

#[test]
fn yaml_1_1_booleans_are_strings_and_omitted_admin_selectors_are_empty() {
    let text = "
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: x}
spec:
  priority: 1
  subject: {pods: {podSelector: {matchLabels: {on: yes}}}}
  ingress: [{action: Allow, from: [{pods: {namespaceSelector: {matchExpressions: [{key: k, operator: In, values: [y, n]}]}}}]}]
";
    let [K8sPolicy::AdminNetworkPolicy(anp)] = one(text) else {
        panic!()
    };
    let AdminSubject::Pods(pods) = &anp.spec.subject else {
        panic!()
    };
    assert!(pods.namespace_selector.is_empty());
    assert_eq!(
        pods.pod_selector,
        LabelSelector::with_labels([("on", "yes")])
    );
    let AdminIngressPeer::Pods(peer) = &anp.spec.ingress[0].from[0] else {
        panic!()
    };
    assert_eq!(
        peer.namespace_selector.match_expressions[0].values,
        ["y", "n"]
    );
    assert!(peer.pod_selector.is_empty());
}

#[test]
fn empty_input_has_no_policies() {
    assert!(parse("").is_empty());
    assert!(parse("---\n# nothing\n---\n").is_empty());
}
