//! Hardware + software == software alone, for every shipped profile: on random rule sets
//! and on the shared ClassBench probe sets. The simulated NIC refuses ties, so a plan that
//! relied on how a device breaks them would fail here too.

use palisade_classifier::classbench::{parse_rules, parse_trace};
use palisade_classifier::{ANY_LOCAL, Engine, Key, Rule};
use palisade_hw_profiles::builtins;
use palisade_offload::{Offloaded, PlanOptions};
use proptest::prelude::*;

fn rules_of(list: &[Rule<u32>]) -> Vec<(Rule<u32>, u32, u32)> {
    list.iter()
        .enumerate()
        .map(|(i, r)| (*r, i as u32, i as u32))
        .collect()
}

fn check(rules: &[(Rule<u32>, u32, u32)], keys: &[Key<u32>], what: &str) {
    let software = Engine::build(rules.iter().copied()).unwrap();
    for profile in builtins().unwrap() {
        let off = Offloaded::new(rules, &profile, PlanOptions::default())
            .unwrap_or_else(|e| panic!("{what} on {}: {e}", profile.name()));
        for k in keys {
            let want = software.lookup(k).map(|m| m.id);
            let got = off
                .lookup(k)
                .unwrap_or_else(|e| panic!("{what} on {}: {e}", profile.name()));
            assert_eq!(got, want, "{what} on {}: key {k:?}", profile.name());
        }
    }
}

fn addr() -> impl Strategy<Value = u32> {
    (0u32..4, 0u32..4).prop_map(|(a, b)| 0x0a00_0000 | a << 8 | b)
}

fn rule() -> impl Strategy<Value = Rule<u32>> {
    (
        addr(),
        prop_oneof![Just(0u8), Just(16), Just(24), Just(30), Just(32)],
        addr(),
        prop_oneof![Just(0u8), Just(24), Just(31), Just(32)],
        prop_oneof![
            Just((0u16, 65535u16)),
            Just((80, 80)),
            Just((1000, 1003)),
            Just((1024, 65535))
        ],
        prop_oneof![Just((0u16, 65535u16)), Just((53, 53)), Just((0, 1023))],
        prop_oneof![
            Just((0u8, 0u8)),
            Just((6, 0xff)),
            Just((17, 0xff)),
            Just((1, 0xff)),
            Just((4, 0xfc))
        ],
    )
        .prop_map(|(s, sl, d, dl, sport, dport, proto)| {
            let m = |l: u8| {
                if l == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(l))
                }
            };
            Rule {
                tag: 0,
                src: (s & m(sl), sl),
                dst: (d & m(dl), dl),
                sport,
                dport,
                proto: (proto.0 & proto.1, proto.1),
                locals: ANY_LOCAL,
            }
        })
}

fn key() -> impl Strategy<Value = Key<u32>> {
    (
        addr(),
        addr(),
        prop_oneof![Just(80u16), Just(1001), Just(3000), Just(0)],
        prop_oneof![Just(53u16), Just(80), Just(2000), Just(0)],
        prop_oneof![Just(6u8), Just(17), Just(1), Just(5)],
    )
        .prop_map(|(src, dst, sport, dport, proto)| Key {
            tag: 0,
            src,
            dst,
            sport,
            dport,
            proto,
            local: 0,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn hardware_plus_software_equals_software(rules in proptest::collection::vec(rule(), 0..60), keys in proptest::collection::vec(key(), 1..40)) {
        check(&rules_of(&rules), &keys, "random rules");
    }
}

#[test]
fn hardware_plus_software_equals_software_on_classbench() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/classbench/probe");
    if !dir.is_dir() {
        eprintln!(
            "!!! SKIPPED: {} is missing; the ClassBench offload check did not run",
            dir.display()
        );
        return;
    }
    for set in ["acl1_1k", "fw1_1k", "ipc1_1k"] {
        let rules =
            parse_rules(&std::fs::read_to_string(dir.join(format!("{set}.rules"))).unwrap())
                .unwrap();
        let trace =
            parse_trace(&std::fs::read_to_string(dir.join(format!("{set}.trace"))).unwrap())
                .unwrap();
        // Every other probe keeps the debug-mode run short; the benchmark uses all.
        let keys: Vec<Key<u32>> = trace.into_iter().step_by(4).collect();
        check(&rules_of(&rules), &keys, set);
    }
}
