//! The engine gives exactly rte_acl's first match (the `.expected` oracle) on every packet of
//! the shared ClassBench sets: 1k and 10k here, 100k in the benchmark. Also after deleting
//! and re-inserting rules one at a time.

use std::path::PathBuf;

use palisade_classifier::classbench::{parse_expected, parse_rules, parse_trace};
use palisade_classifier::{Engine, Key, Rule};

fn data_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/classbench");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "!!! SKIPPED: {} is missing; the ClassBench oracle tests did not run",
            dir.display()
        );
        None
    }
}

struct Set {
    rules: Vec<Rule<u32>>,
    trace: Vec<Key<u32>>,
    expected: Vec<Option<u32>>,
}

fn load(dir: &std::path::Path, stem: &str) -> Set {
    let read = |ext: &str| std::fs::read_to_string(dir.join(format!("{stem}.{ext}"))).unwrap();
    let set = Set {
        rules: parse_rules(&read("rules")).unwrap(),
        trace: parse_trace(&read("trace")).unwrap(),
        expected: parse_expected(&read("expected")).unwrap(),
    };
    assert_eq!(set.trace.len(), set.expected.len());
    set
}

fn build(rules: &[Rule<u32>]) -> Engine<u32> {
    Engine::build(
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| (*r, i as u32, i as u32)),
    )
    .unwrap()
}

fn check(engine: &Engine<u32>, set: &Set, name: &str) {
    let mut wrong = 0;
    for (i, (k, want)) in set.trace.iter().zip(&set.expected).enumerate() {
        let got = engine.lookup(k).map(|m| m.id);
        if got != *want {
            wrong += 1;
            if wrong <= 5 {
                eprintln!("{name}: packet {i} {k:?}: expected {want:?}, got {got:?}");
            }
        }
    }
    assert_eq!(wrong, 0, "{name}: {wrong} packets disagree with rte_acl");
}

#[test]
fn agrees_with_rte_acl_on_every_packet() {
    let Some(dir) = data_dir() else { return };
    for stem in [
        "acl1_1k",
        "fw1_1k",
        "ipc1_1k",
        "acl1_10k",
        "fw1_10k",
        "ipc1_10k",
        "probe/acl1_1k",
        "probe/fw1_1k",
        "probe/ipc1_1k",
    ] {
        let set = load(&dir, stem);
        let engine = build(&set.rules);
        check(&engine, &set, stem);
    }
}

#[test]
fn updates_keep_first_match_semantics() {
    let Some(dir) = data_dir() else { return };
    for stem in ["probe/fw1_1k", "probe/ipc1_1k"] {
        let set = load(&dir, stem);
        // Build without every third rule, then insert them one by one (interleaved
        // priorities), and delete + re-insert another slice: the answers must not change.
        let mut engine = Engine::build(
            set.rules
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 3 != 0)
                .map(|(i, r)| (*r, i as u32, i as u32)),
        )
        .unwrap();
        for (i, r) in set.rules.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
            engine.insert(*r, i as u32, i as u32).unwrap();
        }
        for i in (0..set.rules.len()).filter(|i| i % 5 == 1) {
            engine.remove(i as u32).unwrap();
        }
        for i in (0..set.rules.len()).filter(|i| i % 5 == 1) {
            engine.insert(set.rules[i], i as u32, i as u32).unwrap();
        }
        check(&engine, &set, stem);
    }
}
