//! `offload` benchmark (shared/design/BENCHMARKS.md): for each hardware profile, on the
//! ClassBench sets and on a generated device program, the share of rules placed in hardware,
//! the entries they expand to, the priority levels used and the plan time — after checking
//! that hardware + software gives the software-only answer on sampled packets.
//!
//! Run: `cargo bench -p palisade-offload --bench offload [-- SET...]`. Results: a table on
//! stdout and JSON lines in `target/bench/offload.jsonl`.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use palisade_classifier::classbench::{parse_rules, parse_trace};
use palisade_classifier::{Engine, Key, Rule as Row};
use palisade_hw_profiles::builtins;
use palisade_offload::{Offloaded, PlanOptions, RulePlace, plan, plan_program};
use palisade_program::{
    Action, AddressSet, DeviceProgram, Direction, Endpoint, FORMAT_VERSION, PortRange, Prefix,
    PrefixSet, ProgramParts, Protocol, Rule, Tier, TierDefaults, TierKind,
};

/// Packets checked per set and profile (the simulated NIC scans its entries linearly).
const CHECKED: usize = 2000;

fn generated_program(endpoints: usize, rules: usize) -> DeviceProgram {
    // Deterministic: endpoint i is 10.<i/256>.<i%256>.1; rule j lets endpoints of one
    // "tier" reach one remote set on one port, the way compiled tag intent looks.
    let ip = |a: u32| IpAddr::V4(std::net::Ipv4Addr::from(a));
    let sets = 32;
    let address_sets =
        (0..sets)
            .map(|s| AddressSet {
                name: format!("set{s}"),
                prefixes: PrefixSet::from_prefixes((0..8u32).map(|k| {
                    Prefix::host(ip(0x0a00_0001 + ((s * 8 + k) % (endpoints as u32)) * 256))
                })),
            })
            .collect();
    let tier_rules = (0..rules)
        .map(|j| Rule {
            id: format!("application/r{j}"),
            direction: if j % 2 == 0 {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            endpoints: (0..endpoints as u32)
                .filter(|e| (*e as usize + j).is_multiple_of(8))
                .collect(),
            remote: Some((j % sets as usize) as u32),
            protocol: Some(if j % 5 == 0 {
                Protocol::UDP
            } else {
                Protocol::TCP
            }),
            src_ports: vec![],
            dst_ports: vec![if j % 7 == 0 {
                PortRange::new(8000, 8099).unwrap()
            } else {
                PortRange::single(1000 + (j % 500) as u16)
            }],
            action: if j % 11 == 0 {
                Action::Deny
            } else {
                Action::Allow
            },
            log: false,
            audit: false,
            mirror: None,
            redirect: None,
        })
        .collect();
    DeviceProgram::new(ProgramParts {
        format: FORMAT_VERSION,
        device: "generated".into(),
        generation: 1,
        endpoints: (0..endpoints)
            .map(|i| Endpoint {
                name: format!("p/w{i:04}/eth0"),
                addresses: vec![ip(0x0a00_0001 + (i as u32) * 256)],
            })
            .collect(),
        address_sets,
        tiers: vec![Tier {
            kind: TierKind::Application,
            rules: tier_rules,
            defaults: vec![TierDefaults::both(Action::Deny); endpoints],
        }],
        foreign: Action::Allow,
    })
    .unwrap()
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/classbench");
    let mut names: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if names.is_empty() {
        names = ["acl1", "fw1", "ipc1"]
            .iter()
            .flat_map(|f| ["1k", "10k", "100k"].map(|s| format!("{f}_{s}")))
            .collect();
    }
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&target).unwrap();
    let mut jsonl = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(target.join("offload.jsonl"))
        .unwrap();
    let profiles = builtins().unwrap();
    println!(
        "{:<10} {:<14} {:>7} {:>8} {:>9} {:>7} {:>9}",
        "set", "profile", "rules", "in hw %", "entries", "levels", "plan ms"
    );
    for name in &names {
        if !dir.is_dir() {
            eprintln!("!!! SKIPPED ClassBench sets: {} is missing", dir.display());
            break;
        }
        let rules =
            parse_rules(&std::fs::read_to_string(dir.join(format!("{name}.rules"))).unwrap())
                .unwrap();
        let trace =
            parse_trace(&std::fs::read_to_string(dir.join(format!("{name}.trace"))).unwrap())
                .unwrap();
        let rows: Vec<(Row<u32>, u32, u32)> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (*r, i as u32, i as u32))
            .collect();
        let software = Engine::build(rows.iter().copied()).unwrap();
        let sample: Vec<&Key<u32>> = trace
            .iter()
            .step_by((trace.len() / CHECKED).max(1))
            .collect();
        for profile in &profiles {
            let started = Instant::now();
            let p = plan(&rows, profile, PlanOptions::default()).unwrap();
            let plan_ms = started.elapsed().as_secs_f64() * 1e3;
            let both = Offloaded::new(&rows, profile, PlanOptions::default()).unwrap();
            for k in &sample {
                assert_eq!(
                    both.lookup(k).unwrap(),
                    software.lookup(k).map(|m| m.id),
                    "{name} on {}",
                    profile.name()
                );
            }
            let hw = p.hardware_ids().count();
            let share = 100.0 * hw as f64 / rows.len() as f64;
            println!(
                "{:<10} {:<14} {:>7} {:>8.1} {:>9} {:>7} {:>9.1}",
                name,
                profile.name(),
                rows.len(),
                share,
                p.entries.len(),
                p.levels_used,
                plan_ms
            );
            writeln!(
                jsonl,
                "{}",
                format_args!(
                    "{{\"bench\":\"offload\",\"set\":\"{name}\",\"profile\":\"{}\",\"rules\":{},\"in_hardware\":{hw},\"entries\":{},\"levels\":{},\"plan_ms\":{plan_ms:.3},\"checked_packets\":{}}}",
                    profile.name(),
                    rows.len(),
                    p.entries.len(),
                    p.levels_used,
                    sample.len()
                )
            )
            .unwrap();
        }
    }
    let program = generated_program(128, 400);
    for profile in &profiles {
        let started = Instant::now();
        let p = plan_program(&program, profile, PlanOptions::default()).unwrap();
        let plan_ms = started.elapsed().as_secs_f64() * 1e3;
        let (mut hw, mut split) = (0, 0);
        for r in &p.rules {
            match r.place {
                RulePlace::Hardware { .. } => hw += 1,
                RulePlace::Split { .. } => split += 1,
                RulePlace::Software { .. } => {}
            }
        }
        let entries = p.egress.entries.len() + p.ingress.entries.len();
        println!(
            "{:<10} {:<14} {:>7} {:>8.1} {:>9} {:>7} {:>9.1}  ({} split)",
            "program",
            profile.name(),
            p.rules.len(),
            100.0 * hw as f64 / p.rules.len() as f64,
            entries,
            p.egress.levels_used.max(p.ingress.levels_used),
            plan_ms,
            split
        );
        writeln!(
            jsonl,
            "{{\"bench\":\"offload\",\"set\":\"generated-program\",\"profile\":\"{}\",\"rules\":{},\"in_hardware\":{hw},\"split\":{split},\"entries\":{entries},\"rows\":{},\"plan_ms\":{plan_ms:.3}}}",
            profile.name(),
            p.rules.len(),
            p.egress_rows.len() + p.ingress_rows.len()
        )
        .unwrap();
    }
}
