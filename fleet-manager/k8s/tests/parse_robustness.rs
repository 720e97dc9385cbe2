//! Property: `parse_documents` returns (an error or policies) and never panics, whatever the
//! text: arbitrary strings, random trees spelled with the schema's own field names (to get
//! deep into the decoder), and valid manifests with random edits.

use palisade_k8s::parse_documents;
use proptest::prelude::*;
use serde_json::{Map, Value};

const FIELDS: [&str; 40] = [
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "labels",
    "spec",
    "podSelector",
    "namespaceSelector",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "ingress",
    "egress",
    "from",
    "to",
    "ports",
    "port",
    "endPort",
    "protocol",
    "ipBlock",
    "cidr",
    "except",
    "policyTypes",
    "priority",
    "subject",
    "namespaces",
    "pods",
    "nodes",
    "networks",
    "action",
    "portNumber",
    "namedPort",
    "portRange",
    "start",
    "end",
    "items",
    "domainNames",
];
const WORDS: [&str; 22] = [
    "NetworkPolicy",
    "AdminNetworkPolicy",
    "BaselineAdminNetworkPolicy",
    "List",
    "networking.k8s.io/v1",
    "policy.networking.k8s.io/v1alpha1",
    "v1",
    "default",
    "TCP",
    "UDP",
    "SCTP",
    "Ingress",
    "Egress",
    "Allow",
    "Deny",
    "Pass",
    "In",
    "NotIn",
    "Exists",
    "10.0.0.0/8",
    "::/0",
    "web",
];

fn tree() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(65535),
            Just(65536),
            Just(-1),
            any::<i64>()
        ]
        .prop_map(Value::from),
        (0..WORDS.len()).prop_map(|w| Value::from(WORDS[w])),
        "[a-z0-9./-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(
                ((0..FIELDS.len()).prop_map(|f| FIELDS[f].to_string()), inner),
                0..6
            )
            .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A tree that starts like a policy, so the decoder gets past `apiVersion` and `kind`.
fn document() -> impl Strategy<Value = Value> {
    (0..4usize, tree(), tree()).prop_map(|(k, metadata, spec)| {
        let (api, kind) = [
            ("networking.k8s.io/v1", "NetworkPolicy"),
            ("policy.networking.k8s.io/v1alpha1", "AdminNetworkPolicy"),
            (
                "policy.networking.k8s.io/v1alpha1",
                "BaselineAdminNetworkPolicy",
            ),
            ("v1", "List"),
        ][k];
        let mut doc = Map::new();
        doc.insert("apiVersion".into(), api.into());
        doc.insert("kind".into(), kind.into());
        doc.insert("metadata".into(), metadata);
        doc.insert(if kind == "List" { "items" } else { "spec" }.into(), spec);
        Value::Object(doc)
    })
}

const VALID: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a, namespace: b}
spec:
  podSelector: {matchExpressions: [{key: app, operator: In, values: [x]}]}
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}, {namespaceSelector: {}, podSelector: {}}]
    ports: [{port: 80, endPort: 90}, {protocol: UDP, port: dns}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: x}
spec:
  priority: 5
  subject: {pods: {namespaceSelector: {}, podSelector: {}}}
  egress: [{action: Pass, to: [{networks: [1.2.3.0/24]}, {nodes: {}}], ports: [{portRange: {start: 1, end: 9}}]}]
";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = parse_documents(&text, "fuzz");
    }

    #[test]
    fn schema_shaped_trees_never_panic(doc in document(), as_yaml in any::<bool>()) {
        let text = if as_yaml {
            serde_saphyr::to_string(&doc).unwrap_or_default()
        } else {
            doc.to_string()
        };
        let _ = parse_documents(&text, "fuzz");
    }

    #[test]
    fn edited_manifests_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), 0..3u8, any::<char>()), 1..6)) {
        let mut text: Vec<char> = VALID.chars().collect();
        for (at, op, c) in edits {
            let i = at.index(text.len() + 1);
            match op {
                0 => text.insert(i, c),
                1 if i < text.len() => { text.remove(i); }
                _ if i < text.len() => text[i] = c,
                _ => {}
            }
        }
        let text: String = text.into_iter().collect();
        let _ = parse_documents(&text, "fuzz");
    }
}

#[test]
fn the_valid_seed_parses() {
    assert_eq!(parse_documents(VALID, "seed").unwrap().len(), 2);
}
