//! The shipped profiles: they load, they say what the research found, and every number in
//! them carries a source or an estimate.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use palisade_hw_profiles::{
    Action, Api, DeviceKind, MatchField, MatchKind, PortRangeStrategy, Profile, builtin,
    builtin_names, builtins, load_dir, load_file,
};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

fn profiles_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles"))
}

fn get(name: &str) -> Profile {
    builtin(name).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_shipped_profile_loads() {
    let all = builtins().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.len(), builtin_names().len());
    for p in &all {
        assert!(!p.facts().is_empty(), "{}", p.name());
    }
}

#[test]
fn shipped_files_are_the_builtins() {
    let from_disk = load_dir(profiles_dir()).unwrap_or_else(|e| panic!("{e}"));
    let mut names: Vec<_> = from_disk.iter().map(|p| p.name().to_string()).collect();
    let mut shipped: Vec<_> = builtin_names().iter().map(|n| n.to_string()).collect();
    names.sort();
    shipped.sort();
    assert_eq!(
        names, shipped,
        "every file in profiles/ is shipped, and only those"
    );
    for p in from_disk {
        let embedded = get(p.name());
        assert_eq!(p.facts(), embedded.facts());
    }
    let one = load_file(profiles_dir().join("e810.yaml")).unwrap();
    assert_eq!(one.name(), "e810");
}

#[test]
fn mlx5_profiles() {
    for name in ["connectx-6-dx", "bluefield-2", "bluefield-3"] {
        let p = get(name);
        assert_eq!(p.identity().pmd.value(), "mlx5");
        assert!(p.rte_flow().sync.get() && p.rte_flow().template.get());
        assert_eq!(p.max_groups(), 65531);
        assert!(p.supports_jump());
        assert_eq!(p.priorities(0), 4);
        assert_eq!(p.priorities(1), 21844);
        assert_eq!(p.priorities(70000), 0);
        assert!(!p.action_allowed_in_group(Action::Conntrack, 0));
        assert!(p.action_allowed_in_group(Action::Conntrack, 1));
        assert_eq!(p.port_range_strategy(), Some(PortRangeStrategy::PrefixMask));
        assert_eq!(p.match_kind(MatchField::Ipv4Src), MatchKind::AnyMask);
        assert_eq!(p.match_kind(MatchField::TcpFlags), MatchKind::AnyMask);
        assert_eq!(p.match_kind(MatchField::SctpDstPort), MatchKind::None);
        assert_eq!(p.conntrack_capacity(), 32 * 1024 * 1024);
        let hws = p.engine("hws").unwrap();
        assert_eq!(hws.api.get(), Api::Template);
        assert!(hws.forbids_combination(&[MatchField::Ipv6Src, MatchField::TcpDstPort]));
        assert!(!hws.forbids_combination(&[MatchField::Ipv4Src, MatchField::TcpDstPort]));
        assert!(!hws.supports_action(Action::PortId));
        assert!(p.engine("sws").unwrap().supports_action(Action::Sample));
        assert_eq!(p.capacity(Api::Sync), 1_000_000);
        assert!(p.matches_pci(0x15b3, 0x101e, None), "generic ConnectX VF");
    }
    assert!(get("connectx-6-dx").matches_pci(0x15b3, 0x101d, None));
    assert!(get("bluefield-2").matches_pci(0x15b3, 0xa2d6, None));
    assert!(get("bluefield-3").matches_pci(0x15b3, 0xa2dc, None));
    assert!(!get("bluefield-3").matches_pci(0x15b3, 0xa2d6, None));
}

#[test]
fn e810_profile() {
    let p = get("e810");
    assert_eq!(p.max_groups(), 1);
    assert!(!p.supports_jump());
    assert_eq!(p.priorities(0), 2);
    assert_eq!(p.priorities(1), 0);
    let switch = p.engine("switch").unwrap();
    let fdir = p.engine("fdir").unwrap();
    assert_eq!(
        switch.port_range_strategy(),
        Some(PortRangeStrategy::PrefixMask)
    );
    assert_eq!(
        fdir.port_range_strategy(),
        Some(PortRangeStrategy::PerValue)
    );
    assert_eq!(fdir.capacity.get(), 14848);
    assert!(fdir.uniform_field_set.as_ref().unwrap().get());
    assert!(switch.max_mask_layouts.is_some());
    assert!(fdir.supports_action(Action::Count) && !switch.supports_action(Action::Count));
    assert_eq!(p.capacity(Api::Sync), 16384 + 14848);
    assert_eq!(p.capacity(Api::Template), 0);
    assert_eq!(p.match_kind(MatchField::SctpSrcPort), MatchKind::Exact);
    assert_eq!(p.match_kind(MatchField::IcmpType), MatchKind::None);
    assert_eq!(p.conntrack_capacity(), 0);
}

#[test]
fn cn10k_profile() {
    let p = get("cn10k");
    assert_eq!(p.max_groups(), 1);
    assert_eq!(p.priorities(0), 32);
    let npc = p.engine("npc").unwrap();
    assert_eq!(npc.capacity.get(), 8192);
    assert_eq!(
        npc.devargs.as_ref().unwrap().value(),
        &["flow_max_priority=32"]
    );
    assert_eq!(p.match_kind(MatchField::Ipv4Dst), MatchKind::AnyMask);
    assert_eq!(p.match_kind(MatchField::Ipv6Dst), MatchKind::None);
    assert_eq!(p.port_range_strategy(), Some(PortRangeStrategy::PrefixMask));
    assert!(p.supports_action(Action::Meter) && !p.supports_action(Action::Age));
    assert!(p.matches_pci(0x177d, 0xa063, Some(0xb900)));
    assert!(
        !p.matches_pci(0x177d, 0xa063, Some(0xb200)),
        "CN9K subsystem"
    );
}

#[test]
fn software_only_profiles() {
    for (name, pmd) in [("pensando-dsc", "ionic"), ("ipu-e2100", "idpf")] {
        let p = get(name);
        assert_eq!(p.identity().pmd.value(), pmd);
        assert!(p.is_software_only());
        assert!(p.rte_flow().none());
        assert!(p.engines().is_empty());
        assert_eq!(p.max_groups(), 0);
        assert_eq!(p.port_range_strategy(), None);
        assert_eq!(p.match_kind(MatchField::Ipv4Src), MatchKind::None);
        assert!(!p.supports_action(Action::Drop));
        assert_eq!(p.capacity(Api::Sync), 0);
    }
}

#[test]
fn simulated_profiles() {
    let small = get("sim-small");
    assert_eq!(small.kind(), DeviceKind::Simulated);
    assert_eq!(small.capacity(Api::Sync), 256);
    assert_eq!(small.priorities(0), 2);
    assert_eq!(
        small.port_range_strategy(),
        Some(PortRangeStrategy::PerValue)
    );
    for port in MatchField::PORTS {
        assert_eq!(small.match_kind(port), MatchKind::Exact, "{port}");
    }
    assert!(small.supports(MatchField::Ipv4Src, MatchKind::Prefix));
    assert!(!small.supports(MatchField::Ipv4Src, MatchKind::AnyMask));

    let large = get("sim-large");
    assert_eq!(large.max_groups(), 256);
    assert_eq!(large.priorities(255), 4096);
    assert_eq!(large.capacity(Api::Sync), 1 << 20);
    assert_eq!(
        large.port_range_strategy(),
        Some(PortRangeStrategy::PrefixMask)
    );
    assert!(Action::ALL.iter().all(|a| large.supports_action(*a)));
    assert!(
        large.estimates().is_empty(),
        "simulated values are design, not estimates"
    );
}

#[test]
fn estimates_are_the_ones_reported() {
    let estimated: BTreeMap<&str, Vec<String>> = builtin_names()
        .into_iter()
        .map(|n| {
            let p = get(n);
            let paths = p.estimates().into_iter().map(|f| f.path).collect();
            (n, paths)
        })
        .collect();
    assert_eq!(
        estimated["connectx-6-dx"],
        [
            "offload.engines[0].capacity",
            "offload.engines[1].capacity",
            "offload.engines[1].insertion_rate"
        ]
    );
    assert_eq!(
        estimated["e810"],
        [
            "offload.engines[0].capacity",
            "offload.engines[0].insertion_rate",
            "offload.engines[0].max_mask_layouts",
            "offload.engines[1].insertion_rate"
        ]
    );
    assert_eq!(estimated["cn10k"], ["offload.engines[0].insertion_rate"]);
    assert!(estimated["pensando-dsc"].is_empty());
}

/// A YAML document with no schema, to look at the shipped files independently of the
/// typed loader.
enum Node {
    Map(Vec<(String, Node)>),
    Seq(Vec<Node>),
    Number,
    Other,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Number)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Number)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Number)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Other)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Node>()? {
                    entries.push((k, v));
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// Collects the paths of numbers that are not the `value` of a mapping that also has a
/// `source` or an `estimate`; counts the ones that are.
fn unsourced_numbers(
    node: &Node,
    path: &str,
    in_fact: bool,
    sourced: &mut usize,
    bare: &mut Vec<String>,
) {
    match node {
        Node::Number if in_fact => *sourced += 1,
        Node::Number => bare.push(path.to_string()),
        Node::Other => {}
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                unsourced_numbers(item, &format!("{path}[{i}]"), in_fact, sourced, bare);
            }
        }
        Node::Map(entries) => {
            let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
            let is_fact =
                keys.contains(&"value") && (keys.contains(&"source") || keys.contains(&"estimate"));
            for (k, v) in entries {
                let child_in_fact = in_fact || (is_fact && k == "value");
                unsourced_numbers(v, &format!("{path}.{k}"), child_in_fact, sourced, bare);
            }
        }
    }
}

#[test]
fn every_number_in_every_shipped_file_has_a_source_or_an_estimate() {
    let mut total = 0;
    for name in builtin_names() {
        let text = std::fs::read_to_string(profiles_dir().join(format!("{name}.yaml"))).unwrap();
        let doc: Node = serde_saphyr::from_str(&text).unwrap();
        let mut sourced = 0;
        let mut bare = Vec::new();
        unsourced_numbers(&doc, name, false, &mut sourced, &mut bare);
        assert!(bare.is_empty(), "bare numbers in {name}: {bare:?}");
        total += sourced;
    }
    assert!(total > 50, "the walk saw the numbers ({total})");
}

#[test]
fn the_number_walk_catches_a_bare_number() {
    let doc: Node = serde_saphyr::from_str(
        "a: {value: 1, source: x}\nb: {value: [1, 2], estimate: y}\nc: 3\nd: {value: 4}\n",
    )
    .unwrap();
    let mut sourced = 0;
    let mut bare = Vec::new();
    unsourced_numbers(&doc, "doc", false, &mut sourced, &mut bare);
    assert_eq!(sourced, 3);
    assert_eq!(bare, ["doc.c", "doc.d.value"]);
}

#[test]
fn every_numeric_fact_of_the_typed_profiles_carries_provenance() {
    for p in builtins().unwrap() {
        for fact in p.facts().into_iter().filter(|f| f.numeric) {
            assert!(
                !fact.provenance.text().trim().is_empty(),
                "{}: {} has no provenance",
                p.name(),
                fact.path
            );
        }
    }
}
