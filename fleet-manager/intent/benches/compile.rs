//! `compile` benchmark (see shared/design/BENCHMARKS.md): generated intent with 10k
//! workloads, 1k policies and 1k devices; one label change and one rule change compiled
//! incrementally, against a full recompile of the same input in the same run
//! (interleaved, median of 7). Correctness first: the incremental programs must equal the
//! full ones, and explain must agree with the programs on sampled connections.
//!
//! Run: `cargo bench -p palisade-intent --bench compile` (add `-- --quick` for a smaller
//! fleet). Results: a table on stdout and JSON lines in `target/bench/compile.jsonl`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_compiler::{Compilation, CompileOptions, Compiler, PolicyIr, compile_all};
use palisade_intent::*;
use palisade_inventory::{Device, Interface, Inventory, InventoryIndex, Project, Workload};
use palisade_program::{Packet, PortRange, Protocol, TierKind};

/// A deterministic generator (splitmix64): the same fleet every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Scale {
    devices: usize,
    workloads: usize,
    policies: usize,
    applications: usize,
}

const TIERS: [&str; 4] = ["web", "app", "db", "cache"];
const DEPLOYMENTS: [&str; 3] = ["prod", "stage", "dev"];

fn tag(kind: &str, value: &str) -> TagRef {
    TagRef::new(kind, value)
}

fn generate(scale: &Scale) -> (Inventory, Vec<Object>) {
    let mut rng = Rng(0x5eed);
    let projects = scale.applications;
    let inventory = Inventory {
        devices: (0..scale.devices)
            .map(|d| Device {
                name: format!("dpu-{d:04}"),
                address: None,
                labels: Default::default(),
            })
            .collect(),
        projects: (0..projects)
            .map(|p| Project {
                name: format!("proj-{p:03}"),
                tags: vec![format!("application=app-{p:03}")],
                labels: Default::default(),
                networks: vec![],
            })
            .collect(),
        workloads: (0..scale.workloads)
            .map(|w| {
                let mut tags = vec![
                    format!("tier={}", TIERS[rng.below(TIERS.len())]),
                    format!("deployment={}", DEPLOYMENTS[rng.below(DEPLOYMENTS.len())]),
                ];
                if rng.below(10) == 0 {
                    tags.push("label=pci".into());
                }
                Workload {
                    name: format!("vm-{w:05}"),
                    project: format!("proj-{:03}", w % projects),
                    tags,
                    labels: Default::default(),
                    interfaces: vec![Interface {
                        name: "eth0".into(),
                        network: None,
                        addresses: vec![std::net::IpAddr::V4(std::net::Ipv4Addr::from(
                            0x0a00_0000 + w as u32,
                        ))],
                        device: format!("dpu-{:04}", (w * 7919) % scale.devices),
                        tags: vec![],
                        ports: vec![],
                    }],
                }
            })
            .collect(),
    };
    let mut objects = Vec::new();
    for p in 0..projects {
        objects.push(Object::Tag(Tag {
            scope: Scope::Global,
            kind: "application".into(),
            value: format!("app-{p:03}"),
        }));
    }
    for t in TIERS {
        objects.push(Object::Tag(Tag {
            scope: Scope::Global,
            kind: "tier".into(),
            value: t.into(),
        }));
    }
    for d in DEPLOYMENTS {
        objects.push(Object::Tag(Tag {
            scope: Scope::Global,
            kind: "deployment".into(),
            value: d.into(),
        }));
    }
    objects.push(Object::Tag(Tag {
        scope: Scope::Global,
        kind: "label".into(),
        value: "pci".into(),
    }));
    objects.push(Object::AddressGroup(AddressGroup {
        name: "quarantine".into(),
        scope: Scope::Global,
        prefixes: vec![
            "192.0.2.0/24".parse().unwrap(),
            "10.0.1.0/28".parse().unwrap(),
        ],
        label: None,
    }));
    let rule = |seq: usize,
                action,
                a: EndpointSpec,
                b: EndpointSpec,
                port: u16,
                match_tags: Vec<String>| {
        FirewallRule {
            sequence: format!("{seq:04}"),
            action,
            endpoint_1: a,
            direction: RuleDirection::Forward,
            endpoint_2: b,
            service: ServiceSpec::Inline(Service {
                protocol: Some(Protocol::TCP),
                src_ports: vec![],
                dst_ports: vec![PortRange::single(port)],
            }),
            match_tags,
            log: false,
            audit: false,
            mirror: None,
            redirect: None,
        }
    };
    let admin = scale.policies / 20;
    let baseline = scale.policies / 50;
    let application = scale.policies - admin - baseline;
    for i in 0..admin {
        objects.push(Object::FirewallPolicy(FirewallPolicy {
            name: format!("admin-{i:03}"),
            scope: Scope::Global,
            tier: TierKind::Admin,
            sequence: format!("{i:04}"),
            rules: vec![
                rule(
                    10,
                    RuleAction::Deny,
                    EndpointSpec::Any,
                    EndpointSpec::AddressGroup("quarantine".into()),
                    1000 + i as u16,
                    vec![],
                ),
                rule(
                    20,
                    RuleAction::NextTier,
                    EndpointSpec::Tags(vec![tag("label", "pci")]),
                    EndpointSpec::Tags(vec![tag("tier", "db")]),
                    5432,
                    vec![],
                ),
            ],
        }));
    }
    for i in 0..baseline {
        objects.push(Object::FirewallPolicy(FirewallPolicy {
            name: format!("baseline-{i:03}"),
            scope: Scope::Global,
            tier: TierKind::Baseline,
            sequence: format!("{i:04}"),
            rules: vec![rule(
                10,
                RuleAction::Deny,
                EndpointSpec::Any,
                EndpointSpec::Any,
                23 + i as u16,
                vec![],
            )],
        }));
    }
    let mut per_app: Vec<Vec<String>> = vec![Vec::new(); projects];
    for i in 0..application {
        let t = |k: usize| EndpointSpec::Tags(vec![tag("tier", TIERS[k % TIERS.len()])]);
        let name = format!("app-policy-{i:04}");
        let port = 8000 + (i % 100) as u16;
        objects.push(Object::FirewallPolicy(FirewallPolicy {
            name: name.clone(),
            scope: Scope::Global,
            tier: TierKind::Application,
            sequence: String::new(),
            rules: vec![
                rule(
                    10,
                    RuleAction::Allow,
                    t(i),
                    t(i + 1),
                    port,
                    vec!["application".into(), "deployment".into()],
                ),
                rule(
                    20,
                    RuleAction::Allow,
                    t(i + 1),
                    t(i + 2),
                    port + 1,
                    vec!["deployment".into()],
                ),
                rule(
                    30,
                    RuleAction::Deny,
                    EndpointSpec::Any,
                    t(i + 2),
                    port + 2,
                    vec![],
                ),
            ],
        }));
        per_app[i % projects].push(name);
    }
    for (p, names) in per_app.into_iter().enumerate() {
        objects.push(Object::ApplicationPolicySet(ApplicationPolicySet {
            name: format!("set-{p:03}"),
            scope: Scope::Global,
            application: Some(tag("application", &format!("app-{p:03}"))),
            policies: names
                .into_iter()
                .enumerate()
                .map(|(k, policy)| PolicyEntry {
                    sequence: format!("{k:04}"),
                    policy,
                })
                .collect(),
        }));
    }
    (inventory, objects)
}

fn lower_all(set: &IntentSet, index: &InventoryIndex) -> Arc<PolicyIr> {
    Arc::new(lower(set, index).expect("generated intent lowers").ir)
}

fn full(set: &IntentSet, index: &Arc<InventoryIndex>) -> Compilation {
    compile_all(
        Arc::clone(index),
        lower_all(set, index),
        2,
        CompileOptions::default(),
    )
    .unwrap()
}

/// A lowerer and a compiler that have seen the base input, ready for an incremental run.
fn primed(set: &IntentSet, index: &Arc<InventoryIndex>) -> (Lowerer, Compiler) {
    let mut lowerer = Lowerer::new();
    let mut compiler = Compiler::new(CompileOptions::default());
    let ir = lowerer.lower(set, Arc::clone(index)).unwrap().ir;
    compiler
        .compile(Arc::clone(index), Arc::new(ir), 1)
        .unwrap();
    (lowerer, compiler)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick {
        Scale {
            devices: 100,
            workloads: 1_000,
            policies: 100,
            applications: 10,
        }
    } else {
        Scale {
            devices: 1_000,
            workloads: 10_000,
            policies: 1_000,
            applications: 100,
        }
    };
    let (inventory, objects) = generate(&scale);
    let set = IntentSet::from_objects(objects.into_iter().map(|o| (o, None))).unwrap();
    let index = Arc::new(inventory.clone().index().unwrap());

    // The two changes: one workload's tier label, one rule's port.
    let mut relabelled = inventory.clone();
    relabelled.workloads[42].tags[0] = "tier=cache".into();
    let relabelled = Arc::new(relabelled.index().unwrap());
    let mut rule_changed = set.clone();
    let key = ObjectKey {
        kind: ObjectKind::FirewallPolicy,
        scope: Scope::Global,
        name: "app-policy-0007".into(),
    };
    let Some(Object::FirewallPolicy(mut p)) = rule_changed.get(&key).cloned() else {
        unreachable!("generated above")
    };
    p.rules[0].service = ServiceSpec::Inline(Service {
        protocol: Some(Protocol::TCP),
        src_ports: vec![],
        dst_ports: vec![PortRange::single(9443)],
    });
    rule_changed.insert(Object::FirewallPolicy(p), None);

    // Correctness first.
    let base = full(&set, &index);
    for (name, set2, index2) in [
        ("label change", &set, &relabelled),
        ("rule change", &rule_changed, &index),
    ] {
        let (mut lowerer, mut compiler) = primed(&set, &index);
        let lowered = lowerer.lower(set2, Arc::clone(index2)).unwrap();
        let relowered = lowered.relowered;
        assert_eq!(
            lowered.ir,
            *lower_all(set2, index2),
            "{name}: incremental lowering"
        );
        let inc = compiler
            .compile(Arc::clone(index2), Arc::new(lowered.ir), 2)
            .unwrap();
        let reference = full(set2, index2);
        for (device, program) in &reference.programs {
            assert_eq!(
                inc.programs[device].hash(),
                program.hash(),
                "{name}: {device} differs"
            );
        }
        let changed_in_fact = reference
            .programs
            .iter()
            .filter(|(d, p)| base.programs[*d].hash() != p.hash())
            .count();
        assert_eq!(inc.changed.len(), changed_in_fact, "{name}: change report");
        println!(
            "check  {name}: incremental == full on all {} devices; {relowered} policy units re-lowered, {} devices recompiled, {} changed",
            reference.programs.len(),
            inc.recompiled.len(),
            inc.changed.len()
        );
    }
    let mut rng = Rng(7);
    let n = index.endpoints().len();
    let explainer = Explainer::new(&set, &index).unwrap();
    for _ in 0..200 {
        let (a, b) = (rng.below(n) as u32, rng.below(n) as u32);
        let (src, dst) = (
            index.endpoint(a).addresses[0],
            index.endpoint(b).addresses[0],
        );
        let port = 8000 + rng.below(103) as u16;
        let q = Query {
            src,
            dst,
            protocol: Protocol::TCP,
            src_port: 40000,
            dst_port: port,
        };
        let e = explainer.explain(&q);
        let packet = Packet {
            src,
            dst,
            protocol: Protocol::TCP,
            src_port: 40000,
            dst_port: port,
        };
        let compiled = [
            (a, palisade_program::Direction::Egress),
            (b, palisade_program::Direction::Ingress),
        ]
        .iter()
        .all(|&(ep, dir)| {
            let device = &index.inventory().devices[index.endpoint(ep).device].name;
            let program = &base.programs[device];
            let local = program.endpoint_index(&index.endpoint(ep).name).unwrap();
            program.evaluate_side(local, dir, &packet).allowed
        });
        assert_eq!(
            e.allowed, compiled,
            "explain and programs disagree on {q:?}"
        );
    }
    println!("check  explain == compiled programs on 200 sampled connections");

    // Measurements: A = full recompile, B = incremental, interleaved.
    let rounds = 7;
    let mut results = Vec::new();
    for (name, set2, index2) in [
        ("label change", &set, &relabelled),
        ("rule change", &rule_changed, &index),
    ] {
        let (mut full_times, mut inc_times, mut lower_times) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = Instant::now();
            let reference = full(set2, index2);
            full_times.push(t.elapsed());
            drop(reference);

            let (mut lowerer, mut compiler) = primed(&set, &index);
            let t = Instant::now();
            let ir = Arc::new(lowerer.lower(set2, Arc::clone(index2)).unwrap().ir);
            lower_times.push(t.elapsed());
            let inc = compiler.compile(Arc::clone(index2), ir, 2).unwrap();
            inc_times.push(t.elapsed());
            drop(inc);
        }
        let (f, i, l) = (median(full_times), median(inc_times), median(lower_times));
        results.push((name, f, i, l));
    }

    let programs: Vec<_> = base.programs.values().collect();
    let rules: usize = programs.iter().map(|p| p.rule_count()).sum();
    let prefixes: usize = programs
        .iter()
        .flat_map(|p| p.address_sets().iter().map(|s| s.prefixes.prefixes().len()))
        .sum();
    let bytes: usize = programs.iter().map(|p| p.canonical_bytes().len()).sum();
    // The naive expansion: every rule as (local address, remote prefix) pairs, per device.
    let naive: usize = programs
        .iter()
        .map(|p| {
            p.tiers()
                .iter()
                .flat_map(|t| &t.rules)
                .map(|r| {
                    let locals: usize = r
                        .endpoints
                        .iter()
                        .map(|&e| p.endpoints()[e as usize].addresses.len())
                        .sum();
                    let remotes = r.remote.map_or(1, |s| {
                        p.address_sets()[s as usize].prefixes.prefixes().len()
                    });
                    locals * remotes
                })
                .sum::<usize>()
        })
        .sum();

    let mut table = String::new();
    writeln!(
        table,
        "\ncompile: {} devices, {} workloads, {} policies ({} rules in programs)",
        scale.devices, scale.workloads, scale.policies, rules
    )
    .unwrap();
    writeln!(
        table,
        "{:<14} {:>12} {:>14} {:>12} {:>10}",
        "change", "full (ms)", "incremental", "of which lower", "inc/full"
    )
    .unwrap();
    for (name, f, i, l) in &results {
        writeln!(
            table,
            "{:<14} {:>12.1} {:>14.1} {:>14.1} {:>10.3}",
            name,
            f.as_secs_f64() * 1e3,
            i.as_secs_f64() * 1e3,
            l.as_secs_f64() * 1e3,
            i.as_secs_f64() / f.as_secs_f64()
        )
        .unwrap();
    }
    writeln!(
        table,
        "program size: {rules} rules + {prefixes} set prefixes ({:.1} MB encoded) vs naive cross-product {naive} entries ({:.1}x larger)",
        bytes as f64 / 1e6,
        naive as f64 / (rules + prefixes) as f64
    )
    .unwrap();
    print!("{table}");

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("compile.jsonl"))
        .unwrap();
    for (name, f, i, l) in &results {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "bench": "compile", "change": name, "devices": scale.devices,
                "workloads": scale.workloads, "policies": scale.policies,
                "full_ms": f.as_secs_f64() * 1e3, "incremental_ms": i.as_secs_f64() * 1e3,
                "lower_ms": l.as_secs_f64() * 1e3,
                "ratio_incremental_to_full": i.as_secs_f64() / f.as_secs_f64(),
                "program_rules": rules, "program_prefixes": prefixes, "program_bytes": bytes,
                "naive_entries": naive, "rounds": rounds,
            })
        )
        .unwrap();
    }
}
