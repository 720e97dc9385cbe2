//! The engine against an obviously correct linear scan, on random rules (IPv4 and IPv6),
//! random keys and random sequences of inserts and deletes.

use palisade_classifier::{ANY_LOCAL, Addr, Engine, Key, Options, Rule};
use proptest::prelude::*;

fn linear<A: Addr>(
    rules: &[(Rule<A>, u32, u32)],
    sets: &[Vec<u32>],
    k: &Key<A>,
    floor: u32,
) -> Option<u32> {
    rules
        .iter()
        .filter(|(r, p, _)| {
            *p >= floor
                && r.tag == k.tag
                && k.src.and(A::mask(r.src.1)) == r.src.0
                && k.dst.and(A::mask(r.dst.1)) == r.dst.0
                && r.sport.0 <= k.sport
                && k.sport <= r.sport.1
                && r.dport.0 <= k.dport
                && k.dport <= r.dport.1
                && k.proto & r.proto.1 == r.proto.0 & r.proto.1
                && (r.locals == ANY_LOCAL || sets[r.locals as usize].contains(&k.local))
        })
        .min_by_key(|(_, p, id)| (*p, *id))
        .map(|(_, _, id)| *id)
}

/// Addresses from a small space so that rules and keys collide often.
fn addr4() -> impl Strategy<Value = u32> {
    (0u32..4, 0u32..4, 0u32..4).prop_map(|(a, b, c)| 0x0a00_0000 | a << 16 | b << 8 | c)
}

fn rule4() -> impl Strategy<Value = Rule<u32>> {
    (
        0u8..2,
        addr4(),
        prop_oneof![
            Just(0u8),
            Just(8),
            Just(16),
            Just(20),
            Just(24),
            Just(30),
            Just(32)
        ],
        addr4(),
        prop_oneof![Just(0u8), Just(16), Just(23), Just(24), Just(32)],
        prop_oneof![Just((0u16, 65535u16)), Just((80, 80)), Just((1000, 2000))],
        prop_oneof![
            Just((0u16, 65535u16)),
            Just((53, 53)),
            Just((80, 80)),
            Just((0, 1023))
        ],
        prop_oneof![
            Just((0u8, 0u8)),
            Just((6, 0xff)),
            Just((17, 0xff)),
            Just((4, 0xfc))
        ],
    )
        .prop_map(|(tag, s, sl, d, dl, sport, dport, proto)| Rule {
            tag,
            src: (s & u32::mask(sl), sl),
            dst: (d & u32::mask(dl), dl),
            sport,
            dport,
            proto: (proto.0 & proto.1, proto.1),
            locals: ANY_LOCAL,
        })
}

fn key4() -> impl Strategy<Value = Key<u32>> {
    (
        0u8..2,
        addr4(),
        addr4(),
        prop_oneof![Just(80u16), Just(1500), Just(3000)],
        prop_oneof![Just(53u16), Just(80), Just(2000)],
        prop_oneof![Just(6u8), Just(17), Just(5), Just(1)],
    )
        .prop_map(|(tag, src, dst, sport, dport, proto)| Key {
            tag,
            src,
            dst,
            sport,
            dport,
            proto,
            local: 0,
        })
}

/// A rule's local-endpoint set: one of three, or any.
fn pick(l: u32) -> u32 {
    if l < 3 { l } else { ANY_LOCAL }
}

#[derive(Clone, Debug)]
enum Op {
    Insert(Rule<u32>, u32),
    Remove(usize),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn engine_equals_linear_scan(
        // Local-endpoint sets with ids across two bitmap words; rules pick one or none.
        sets in proptest::collection::vec(proptest::collection::vec(0u32..70, 0..6), 3),
        rules in proptest::collection::vec((rule4(), 0u32..50, 0u32..5), 0..40),
        ops in proptest::collection::vec(prop_oneof![
            (rule4(), 0u32..50, 0u32..5).prop_map(|(r, p, l)| Op::Insert(Rule { locals: pick(l), ..r }, p)),
            (0usize..40).prop_map(Op::Remove),
        ], 0..20),
        keys in proptest::collection::vec((key4(), 0u32..30, 0u32..70), 1..30),
        key_dport in any::<bool>(),
    ) {
        let mut live: Vec<(Rule<u32>, u32, u32)> = rules
            .iter()
            .enumerate()
            .map(|(i, (r, p, l))| (Rule { locals: pick(*l), ..*r }, *p, i as u32))
            .collect();
        let options = Options { local_sets: sets.clone(), key_dport };
        let mut engine = Engine::build_with(&options, live.clone()).unwrap();
        let mut next_id = live.len() as u32;
        for op in ops {
            match op {
                Op::Insert(r, p) => {
                    engine.insert(r, p, next_id).unwrap();
                    live.push((r, p, next_id));
                    next_id += 1;
                }
                Op::Remove(i) if !live.is_empty() => {
                    let (_, _, id) = live.remove(i % live.len());
                    engine.remove(id).unwrap();
                }
                Op::Remove(_) => {}
            }
        }
        prop_assert_eq!(engine.len(), live.len());
        for (k, floor, local) in keys {
            let k = Key { local, ..k };
            prop_assert_eq!(engine.lookup_from(&k, floor).map(|m| m.id), linear(&live, &sets, &k, floor), "key {:?} floor {}", k, floor);
        }
    }

    #[test]
    fn ipv6_engine_equals_linear_scan(
        rules in proptest::collection::vec((0u128..8, 0u8..=128, 0u128..8, 0u8..=128, 0u32..20), 0..30),
        keys in proptest::collection::vec((0u128..8, 0u128..8), 1..20),
    ) {
        let base: u128 = 0x2001_0db8 << 96;
        let rules: Vec<(Rule<u128>, u32, u32)> = rules
            .into_iter()
            .enumerate()
            .map(|(i, (s, sl, d, dl, p))| {
                let s = (base | s << 60) & u128::mask(sl);
                let d = (base | d << 60) & u128::mask(dl);
                (Rule { tag: 0, src: (s, sl), dst: (d, dl), sport: (0, 65535), dport: (0, 65535), proto: (0, 0), locals: ANY_LOCAL }, p, i as u32)
            })
            .collect();
        let engine = Engine::build(rules.clone()).unwrap();
        for (s, d) in keys {
            let k = Key { tag: 0, src: base | s << 60, dst: base | d << 60, sport: 1, dport: 2, proto: 6, local: 0 };
            prop_assert_eq!(engine.lookup(&k).map(|m| m.id), linear(&rules, &[], &k, 0));
        }
    }
}

/// Rules over the whole port space (ranges ending anywhere, so also inside and at the edges
/// of the bit-vector base's 256-port blocks), any prefix length, any protocol mask.
fn wide_rule4() -> impl Strategy<Value = Rule<u32>> {
    (
        0u8..2,
        addr4(),
        0u8..=32,
        addr4(),
        0u8..=32,
        (any::<u16>(), any::<u16>()),
        (any::<u16>(), any::<u16>()),
        (any::<u8>(), prop_oneof![Just(0u8), Just(0xff), any::<u8>()]),
    )
        .prop_map(|(tag, s, sl, d, dl, sp, dp, proto)| Rule {
            tag,
            src: (s & u32::mask(sl), sl),
            dst: (d & u32::mask(dl), dl),
            sport: (sp.0.min(sp.1), sp.0.max(sp.1)),
            dport: (dp.0.min(dp.1), dp.0.max(dp.1)),
            proto: (proto.0 & proto.1, proto.1),
            locals: ANY_LOCAL,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The bit-vector base (built lists of IPv4 rules), alone and with tuple-space inserts
    /// next to it, deletes in both, single and batch lookups, against the linear scan. Keys
    /// are rule corners and their neighbours, where ranges and prefixes end.
    #[test]
    fn base_equals_linear_scan(
        rules in proptest::collection::vec((wide_rule4(), 0u32..1000), 1..700),
        removes in proptest::collection::vec(any::<prop::sample::Index>(), 0..30),
        inserts in proptest::collection::vec((wide_rule4(), 0u32..1000), 0..10),
        picks in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..64, 0u8..3, 0u32..1000), 1..60),
    ) {
        let mut live: Vec<(Rule<u32>, u32, u32)> = rules
            .iter()
            .enumerate()
            .map(|(i, (r, p))| (*r, *p, i as u32))
            .collect();
        let mut engine = Engine::build(live.clone()).unwrap();
        for at in removes {
            if live.is_empty() {
                break;
            }
            let (_, _, id) = live.remove(at.index(live.len()));
            engine.remove(id).unwrap();
        }
        for (id, (r, p)) in (rules.len() as u32..).zip(inserts) {
            engine.insert(r, p, id).unwrap();
            live.push((r, p, id));
        }
        prop_assert_eq!(engine.len(), live.len());
        let keys: Vec<Key<u32>> = picks
            .iter()
            .map(|(at, corner, nudge, _)| {
                let (r, _) = rules[at.index(rules.len())];
                let end = |lo: u32, hi: u32, bit: u8| {
                    let v = if corner >> bit & 1 == 0 { lo } else { hi };
                    match nudge {
                        0 => v,
                        1 => v.wrapping_sub(1),
                        _ => v.wrapping_add(1),
                    }
                };
                let span = |len: u8| if len == 0 { u32::MAX } else { !u32::mask(len) };
                Key {
                    tag: r.tag,
                    src: end(r.src.0, r.src.0 | span(r.src.1), 0),
                    dst: end(r.dst.0, r.dst.0 | span(r.dst.1), 1),
                    sport: end(r.sport.0.into(), r.sport.1.into(), 2) as u16,
                    dport: end(r.dport.0.into(), r.dport.1.into(), 3) as u16,
                    proto: if corner >> 4 & 1 == 0 { r.proto.0 } else { r.proto.0 ^ 1 },
                    local: 0,
                }
            })
            .collect();
        let mut batch = vec![None; keys.len()];
        engine.lookup_batch(&keys, &mut batch);
        for ((k, (_, _, _, floor)), got) in keys.iter().zip(&picks).zip(&batch) {
            let want = linear(&live, &[], k, 0);
            prop_assert_eq!(engine.lookup(k).map(|m| m.id), want, "key {:?}", k);
            prop_assert_eq!(got.map(|m| m.id), want, "batch, key {:?}", k);
            prop_assert_eq!(engine.lookup_from(k, *floor).map(|m| m.id), linear(&live, &[], k, *floor), "key {:?} floor {}", k, floor);
        }
    }
}

#[test]
fn bad_updates_are_refused() {
    let rule = Rule::<u32> {
        tag: 0,
        src: (0x0a000001, 8),
        dst: (0, 0),
        sport: (0, 65535),
        dport: (0, 65535),
        proto: (0, 0),
        locals: ANY_LOCAL,
    };
    let mut e = Engine::new();
    assert!(
        e.insert(rule, 1, 1)
            .unwrap_err()
            .to_string()
            .contains("host bits")
    );
    let ok = Rule {
        src: (0x0a000000, 8),
        ..rule
    };
    e.insert(ok, 1, 1).unwrap();
    assert_eq!(
        e.insert(ok, 2, 1).unwrap_err().to_string(),
        "a rule with id 1 is already present"
    );
    assert_eq!(e.remove(9).unwrap_err().to_string(), "no rule has id 9");
    let unknown_set = Rule { locals: 0, ..ok };
    assert!(
        e.insert(unknown_set, 4, 4)
            .unwrap_err()
            .to_string()
            .contains("local-endpoint set 0 does not exist")
    );
    let backwards = Rule {
        sport: (10, 5),
        ..ok
    };
    assert!(
        e.insert(backwards, 3, 3)
            .unwrap_err()
            .to_string()
            .contains("is empty")
    );
}
