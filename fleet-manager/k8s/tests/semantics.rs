//! The pitfalls of the upstream semantics, each as a small case: every probe is answered
//! through the compiled path (lower, compile, reference interpreter on both nodes) and must
//! equal the expected verdict, and `explain` must agree.

use palisade_k8s::case::{Case, CompiledCase, Verdict, check_case};
use palisade_k8s::{Decision, Evaluator, parse_documents};
use palisade_program::{Action, Protocol, TierKind};

/// prod (team=a): web (80 `http`, 8080 `web`), db (5432 `db`, UDP 53 `dns`);
/// dev (team=b): client, web (9090 `web`, UDP 9090 `web`); nodes n1 (role=worker), n2.
const CLUSTER: &str = r#"{
  "namespaces": [
    {"name": "prod", "labels": {"kubernetes.io/metadata.name": "prod", "team": "a"}},
    {"name": "dev", "labels": {"kubernetes.io/metadata.name": "dev", "team": "b"}}],
  "nodes": [{"name": "n1", "ip": "10.0.0.1", "labels": {"role": "worker"}},
            {"name": "n2", "ip": "10.0.0.2"}],
  "pods": [
    {"namespace": "prod", "name": "web", "node": "n1", "ip": "10.1.0.10", "labels": {"app": "web"},
     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "web", "port": 8080, "protocol": "TCP"}]},
    {"namespace": "prod", "name": "db", "node": "n2", "ip": "10.1.0.11", "labels": {"app": "db"},
     "ports": [{"name": "db", "port": 5432, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]},
    {"namespace": "dev", "name": "client", "node": "n1", "ip": "10.2.0.10", "labels": {"app": "client"}},
    {"namespace": "dev", "name": "web", "node": "n2", "ip": "10.2.0.11", "labels": {"app": "web"},
     "ports": [{"name": "web", "port": 9090, "protocol": "TCP"}, {"name": "web", "port": 9090, "protocol": "UDP"}]}],
  "external": ["192.0.2.10", "192.0.2.200"]
}"#;

type P<'a> = (&'a str, &'a str, &'a str, u16, &'a str);

fn case(policies: &[&str], probes: &[P<'_>]) -> Case {
    let probes: Vec<String> = probes
        .iter()
        .map(|(src, dst, proto, port, expect)| {
            format!(r#"{{"src":"{src}","dst":"{dst}","port":{port},"protocol":"{proto}","expect":"{expect}"}}"#)
        })
        .collect();
    let json = format!(
        r#"{{"id":"unit","source":{{"repo":"-","path":"-","rev":"-","license":"-"}},"tags":[],
            "cluster":{CLUSTER},"policies":{},"probes":[{}]}}"#,
        serde_json::to_string(policies).unwrap(),
        probes.join(",")
    );
    Case::from_json(&json, "unit").unwrap_or_else(|e| panic!("{e}"))
}

/// Checks every probe through the compiled path and explain.
fn check(policies: &[&str], probes: &[P<'_>]) {
    let case = case(policies, probes);
    let report = check_case(&case);
    assert!(report.is_pass(), "{report}");
    let compiled = CompiledCase::new(&case).unwrap();
    let evaluator = Evaluator::new(compiled.policies(), compiled.index());
    for probe in &case.probes {
        let src = compiled.address(&probe.src).unwrap();
        let dst = compiled.address(&probe.dst).unwrap();
        let explained = evaluator.explain(src, dst, probe.protocol.protocol(), probe.port);
        assert_eq!(
            Verdict::from_allowed(explained.allowed),
            compiled.verdict(probe).unwrap(),
            "{probe:?}: {explained}"
        );
    }
}

fn np(name: &str, namespace: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}"
    )
}

fn anp(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n{spec}"
    )
}

fn banp(spec: &str) -> String {
    format!(
        "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata: {{name: default}}\nspec:\n{spec}"
    )
}

#[test]
fn no_policy_allows_everything() {
    check(
        &[],
        &[
            ("dev/client", "prod/db", "TCP", 1, "allow"),
            ("192.0.2.10", "prod/db", "SCTP", 9, "allow"),
        ],
    );
}

#[test]
fn named_ports_resolve_on_the_destination_pod_for_ingress() {
    let p = np(
        "web",
        "prod",
        "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - ports: [{port: web}]\n",
    );
    check(
        &[&p],
        &[
            ("dev/client", "prod/web", "TCP", 8080, "allow"),
            ("dev/client", "prod/web", "TCP", 80, "deny"),
            ("dev/client", "prod/web", "UDP", 8080, "deny"),
            ("192.0.2.10", "prod/web", "TCP", 8080, "allow"),
        ],
    );
}

#[test]
fn named_ports_must_match_the_declared_protocol() {
    // `web` is declared TCP on prod/web: a UDP named port resolves to nothing there.
    let p = np(
        "web",
        "prod",
        "  podSelector: {}\n  ingress:\n  - ports: [{port: web, protocol: UDP}]\n",
    );
    check(
        &[&p],
        &[
            ("dev/client", "prod/web", "UDP", 8080, "deny"),
            ("dev/client", "prod/web", "TCP", 8080, "deny"),
        ],
    );
    // dev/web declares `web` for both TCP and UDP on 9090.
    let p = np(
        "web",
        "dev",
        "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - ports: [{port: web, protocol: UDP}]\n",
    );
    check(
        &[&p],
        &[
            ("prod/db", "dev/web", "UDP", 9090, "allow"),
            ("prod/db", "dev/web", "TCP", 9090, "deny"),
        ],
    );
}

#[test]
fn named_ports_resolve_on_the_remote_pod_for_egress() {
    let p = np(
        "client",
        "dev",
        "  podSelector: {matchLabels: {app: client}}\n  policyTypes: [Egress]\n  egress:\n  - ports: [{port: web}]\n",
    );
    check(
        &[&p],
        &[
            ("dev/client", "prod/web", "TCP", 8080, "allow"),
            ("dev/client", "prod/web", "TCP", 9090, "deny"),
            ("dev/client", "dev/web", "TCP", 9090, "allow"),
            ("dev/client", "dev/web", "TCP", 8080, "deny"),
            ("dev/client", "prod/db", "TCP", 8080, "deny"),
            // An address that is not a pod has no named ports.
            ("dev/client", "192.0.2.10", "TCP", 8080, "deny"),
            ("dev/client", "10.0.0.1", "TCP", 8080, "deny"),
        ],
    );
}

#[test]
fn end_port_is_inclusive_and_protocols_are_distinct() {
    let p = np(
        "db",
        "prod",
        "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - ports: [{port: 80, endPort: 90}, {protocol: SCTP, port: 100}]\n",
    );
    check(
        &[&p],
        &[
            ("dev/client", "prod/db", "TCP", 79, "deny"),
            ("dev/client", "prod/db", "TCP", 80, "allow"),
            ("dev/client", "prod/db", "TCP", 90, "allow"),
            ("dev/client", "prod/db", "TCP", 91, "deny"),
            ("dev/client", "prod/db", "UDP", 85, "deny"),
            ("dev/client", "prod/db", "SCTP", 100, "allow"),
            ("dev/client", "prod/db", "TCP", 100, "deny"),
            ("dev/client", "prod/db", "SCTP", 85, "deny"),
        ],
    );
    let all_udp = np(
        "db",
        "prod",
        "  podSelector: {}\n  ingress:\n  - ports: [{protocol: UDP}]\n",
    );
    check(
        &[&all_udp],
        &[
            ("dev/client", "prod/db", "UDP", 1, "allow"),
            ("dev/client", "prod/db", "TCP", 1, "deny"),
        ],
    );
}

#[test]
fn ip_block_except_and_pod_ips() {
    let p = np(
        "db",
        "prod",
        "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from: [{ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.128/25]}}, {ipBlock: {cidr: 10.2.0.0/16}}]\n",
    );
    check(
        &[&p],
        &[
            ("192.0.2.10", "prod/db", "TCP", 5432, "allow"),
            ("192.0.2.200", "prod/db", "TCP", 5432, "deny"),
            // ipBlock matches pods by address too.
            ("dev/client", "prod/db", "TCP", 5432, "allow"),
            ("prod/web", "prod/db", "TCP", 5432, "deny"),
        ],
    );
}

#[test]
fn policy_types_default_from_the_egress_rules() {
    // No policyTypes, egress rules: isolated both ways, and ingress has no rules.
    let both = np(
        "db",
        "prod",
        "  podSelector: {matchLabels: {app: db}}\n  egress:\n  - to: [{ipBlock: {cidr: 192.0.2.0/24}}]\n",
    );
    check(
        &[&both],
        &[
            ("prod/db", "192.0.2.10", "TCP", 1, "allow"),
            ("prod/db", "dev/client", "TCP", 1, "deny"),
            ("dev/client", "prod/db", "TCP", 5432, "deny"),
        ],
    );
    // An empty egress list adds nothing: ingress only.
    let ingress = np(
        "db",
        "prod",
        "  podSelector: {matchLabels: {app: db}}\n  egress: []\n",
    );
    check(
        &[&ingress],
        &[
            ("prod/db", "dev/client", "TCP", 1, "allow"),
            ("dev/client", "prod/db", "TCP", 1, "deny"),
        ],
    );
    // Explicit Egress only: ingress rules are ignored and ingress stays open.
    let egress = np(
        "db",
        "prod",
        "  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Egress]\n  ingress:\n  - from: [{podSelector: {}}]\n",
    );
    check(
        &[&egress],
        &[
            ("dev/client", "prod/db", "TCP", 1, "allow"),
            ("prod/db", "dev/client", "TCP", 1, "deny"),
        ],
    );
}

#[test]
fn peers_in_one_item_are_and_in_two_items_or() {
    let and = np(
        "db",
        "prod",
        "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: web}}}]\n",
    );
    check(
        &[&and],
        &[
            ("dev/web", "prod/db", "TCP", 1, "allow"),
            ("dev/client", "prod/db", "TCP", 1, "deny"),
            ("prod/web", "prod/db", "TCP", 1, "deny"),
        ],
    );
    let or = np(
        "db",
        "prod",
        "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {team: b}}}, {podSelector: {matchLabels: {app: web}}}]\n",
    );
    check(
        &[&or],
        &[
            ("dev/web", "prod/db", "TCP", 1, "allow"),
            ("dev/client", "prod/db", "TCP", 1, "allow"),
            ("prod/web", "prod/db", "TCP", 1, "allow"),
            ("192.0.2.10", "prod/db", "TCP", 1, "deny"),
        ],
    );
}

#[test]
fn pod_selector_alone_means_the_policy_namespace_and_empty_selectors_select_all() {
    let own = np(
        "db",
        "prod",
        "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: web}}}]\n",
    );
    check(
        &[&own],
        &[
            ("prod/web", "prod/db", "TCP", 1, "allow"),
            ("dev/web", "prod/db", "TCP", 1, "deny"),
        ],
    );
    let all_pods_here = np(
        "db",
        "prod",
        "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from: [{podSelector: {}}]\n",
    );
    check(
        &[&all_pods_here],
        &[
            ("prod/web", "prod/db", "TCP", 1, "allow"),
            ("dev/client", "prod/db", "TCP", 1, "deny"),
        ],
    );
    let all_namespaces = np(
        "db",
        "prod",
        "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from: [{namespaceSelector: {}}]\n",
    );
    check(
        &[&all_namespaces],
        &[
            ("dev/client", "prod/db", "TCP", 1, "allow"),
            ("192.0.2.10", "prod/db", "TCP", 1, "deny"),
            ("10.0.0.1", "prod/db", "TCP", 1, "deny"),
        ],
    );
    // kubernetes.io/metadata.name is always there to select by.
    let by_name = np(
        "db",
        "prod",
        "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from: [{namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [prod]}]}}]\n",
    );
    check(
        &[&by_name],
        &[
            ("dev/client", "prod/db", "TCP", 1, "allow"),
            ("prod/web", "prod/db", "TCP", 1, "deny"),
        ],
    );
}

#[test]
fn empty_from_allows_everything_and_deny_all_denies_everything() {
    let open = np(
        "db",
        "prod",
        "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - ports: [{port: 5432}]\n",
    );
    check(
        &[&open],
        &[
            ("192.0.2.10", "prod/db", "TCP", 5432, "allow"),
            ("10.0.0.2", "prod/db", "TCP", 5432, "allow"),
            ("dev/client", "prod/db", "TCP", 5433, "deny"),
        ],
    );
    let deny_all = np(
        "deny-all",
        "prod",
        "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n",
    );
    check(
        &[&deny_all],
        &[
            ("dev/client", "prod/db", "TCP", 5432, "deny"),
            ("prod/web", "prod/db", "TCP", 5432, "deny"),
            ("prod/web", "dev/client", "TCP", 1, "deny"),
            ("dev/client", "dev/web", "TCP", 1, "allow"),
        ],
    );
    // Union: another policy's rule opens what deny-all closed.
    let allow_web = np(
        "allow-web",
        "prod",
        "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: web}}}]\n",
    );
    let web_out = np(
        "web-out",
        "prod",
        "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{podSelector: {}}]\n",
    );
    check(
        &[&deny_all, &allow_web, &web_out],
        &[
            ("prod/web", "prod/db", "TCP", 5432, "allow"),
            ("dev/client", "prod/db", "TCP", 5432, "deny"),
            ("prod/web", "dev/client", "TCP", 1, "deny"),
        ],
    );
}

#[test]
fn admin_priorities_pass_and_baseline() {
    let deny = anp(
        "deny-dev",
        "  priority: 20\n  subject: {namespaces: {matchLabels: {team: a}}}\n  ingress:\n  - {action: Deny, from: [{namespaces: {matchLabels: {team: b}}}]}\n",
    );
    let allow_first = anp(
        "allow-client",
        "  priority: 10\n  subject: {namespaces: {}}\n  ingress:\n  - {action: Allow, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}}], ports: [{portNumber: {port: 5432, protocol: TCP}}]}\n",
    );
    let pass_web = anp(
        "pass-web",
        "  priority: 5\n  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: db}}}}\n  ingress:\n  - {action: Pass, from: [{pods: {namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: web}}}}]}\n",
    );
    let baseline = banp(
        "  subject: {namespaces: {}}\n  ingress:\n  - {action: Deny, from: [{namespaces: {matchLabels: {team: b}}}], ports: [{portRange: {start: 1, end: 1000}}]}\n",
    );
    check(
        &[&deny, &allow_first, &pass_web, &baseline],
        &[
            // priority 10 allows before priority 20 denies
            ("dev/client", "prod/db", "TCP", 5432, "allow"),
            ("dev/client", "prod/db", "TCP", 5433, "deny"),
            // Pass at priority 5 skips the deny; no NetworkPolicy; the baseline decides
            ("dev/web", "prod/db", "TCP", 999, "deny"),
            ("dev/web", "prod/db", "TCP", 1001, "allow"),
            // not passed for prod/web: the deny applies
            ("dev/web", "prod/web", "TCP", 1001, "deny"),
        ],
    );
    // With a NetworkPolicy isolating the destination, Pass hands the decision to it.
    let np_db = np(
        "db",
        "prod",
        "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - ports: [{port: 5432}]\n",
    );
    check(
        &[&deny, &pass_web, &baseline, &np_db],
        &[
            ("dev/web", "prod/db", "TCP", 5432, "allow"),
            ("dev/web", "prod/db", "TCP", 999, "deny"),
            ("dev/web", "prod/db", "TCP", 1001, "deny"),
        ],
    );
}

#[test]
fn admin_egress_to_nodes_and_networks() {
    let p = anp(
        "egress",
        "  priority: 1\n  subject: {namespaces: {matchLabels: {team: b}}}\n  egress:\n  - {action: Deny, to: [{nodes: {matchLabels: {role: worker}}}]}\n  - {action: Allow, to: [{networks: [192.0.2.0/25]}]}\n  - {action: Deny, to: [{networks: [0.0.0.0/0]}], ports: [{portNumber: {protocol: UDP, port: 53}}]}\n  - {action: Allow, to: [{pods: {namespaceSelector: {}, podSelector: {}}}], ports: [{namedPort: dns}]}\n",
    );
    check(
        &[&p],
        &[
            ("dev/client", "10.0.0.1", "TCP", 22, "deny"),
            ("dev/client", "10.0.0.2", "TCP", 22, "allow"),
            ("dev/client", "192.0.2.10", "UDP", 53, "allow"),
            ("dev/client", "192.0.2.200", "UDP", 53, "deny"),
            // networks match pod addresses too
            ("dev/client", "prod/db", "UDP", 53, "deny"),
            ("dev/client", "prod/db", "TCP", 53, "allow"),
            ("prod/web", "10.0.0.1", "TCP", 22, "allow"),
        ],
    );
}

#[test]
fn explain_says_what_decided() {
    let policies = [
        anp(
            "pass",
            "  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - {name: to-np, action: Pass, from: [{namespaces: {}}]}\n",
        ),
        np(
            "db",
            "prod",
            "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - ports: [{port: 5432}]\n",
        ),
    ];
    let text = policies.join("\n---\n");
    let parsed = parse_documents(&text, "inline").unwrap();
    let case = case(&[], &[]);
    let index = case.inventory().index().unwrap();
    let evaluator = Evaluator::new(&parsed, &index);
    let client = "10.2.0.10".parse().unwrap();
    let db = "10.1.0.11".parse().unwrap();
    let allowed = evaluator.explain(client, db, Protocol::TCP, 5432);
    assert!(allowed.allowed);
    assert_eq!(allowed.egress.as_ref().unwrap().decision, Decision::Default);
    let ingress = allowed.ingress.as_ref().unwrap();
    assert_eq!(ingress.endpoint, "prod/db/eth0");
    assert_eq!(ingress.passed[0].id, "anp/pass/ingress/0");
    assert_eq!(ingress.passed[0].name, "to-np");
    let Decision::Rule { tier, rule, action } = &ingress.decision else {
        panic!("{allowed}")
    };
    assert_eq!(
        (*tier, rule.id.as_str(), *action),
        (TierKind::Application, "np/prod/db/ingress/0", Action::Allow)
    );
    let denied = evaluator.explain(client, db, Protocol::TCP, 22);
    assert!(!denied.allowed);
    assert_eq!(
        denied.ingress.unwrap().decision,
        Decision::Isolated {
            policies: vec!["NetworkPolicy prod/db".into()]
        }
    );
    let text = evaluator.explain(client, db, Protocol::TCP, 22).to_string();
    assert!(text.starts_with("deny\n"), "{text}");
    assert!(
        text.contains("isolation: selected by NetworkPolicy prod/db"),
        "{text}"
    );
}

#[test]
fn lowered_rules_have_stable_split_ids_and_share_remote_sets() {
    let policies = [
        np(
            "db",
            "prod",
            "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {team: b}}}]\n    ports: [{port: 5432}, {protocol: UDP, port: 53}, {port: db}]\n  - from: [{namespaceSelector: {matchLabels: {team: b}}}]\n",
        ),
        np(
            "client",
            "dev",
            "  podSelector: {matchLabels: {app: client}}\n  policyTypes: [Egress]\n  egress:\n  - ports: [{port: web}]\n",
        ),
        anp(
            "a",
            "  priority: 3\n  subject: {namespaces: {}}\n  egress:\n  - {action: Pass, to: [{namespaces: {matchLabels: {team: b}}}]}\n",
        ),
    ];
    let parsed = parse_documents(&policies.join("\n---\n"), "inline").unwrap();
    let case = case(&[], &[]);
    let index = case.inventory().index().unwrap();
    let ir = palisade_k8s::lower(&parsed, &index).unwrap();
    let ids: Vec<&str> = ir.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "anp/a/egress/0",
            "np/dev/client/egress/0#named-tcp-8080",
            "np/dev/client/egress/0#named-tcp-9090",
            "np/prod/db/ingress/0#tcp",
            "np/prod/db/ingress/0#udp",
            "np/prod/db/ingress/0#named-tcp-5432",
            "np/prod/db/ingress/1",
        ]
    );
    assert_eq!(ir.rules[0].action, Action::NextTier);
    let same = |a: usize, b: usize| {
        std::sync::Arc::ptr_eq(
            ir.rules[a].remote.as_ref().unwrap(),
            ir.rules[b].remote.as_ref().unwrap(),
        )
    };
    assert!(same(0, 3) && same(3, 6), "one set for namespaces team=b");
    assert_eq!(ir.rules[3].remote.as_ref().unwrap().name, "ns(team=b)");
    assert_eq!(
        ir.rules[1].remote.as_ref().unwrap().name,
        "anywhere with named port tcp/8080"
    );
    // Isolation: prod/db ingress, dev/client egress.
    assert_eq!(ir.defaults.len(), 2);
    assert!(
        ir.defaults
            .iter()
            .all(|d| d.tier == TierKind::Application && d.action == Action::Deny)
    );
    // Duplicates are refused.
    let twice = [parsed[0].clone(), parsed[0].clone()];
    let err = palisade_k8s::lower(&twice, &index).unwrap_err().to_string();
    assert_eq!(
        err,
        "NetworkPolicy prod/db is given twice: a cluster holds one object per kind, namespace and name"
    );
}
