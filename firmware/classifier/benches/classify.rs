//! `classify` benchmark (shared/design/BENCHMARKS.md): the engine against DPDK's rte_acl on
//! the ClassBench sets, in the same run.
//!
//! For each set: first the engine's answer for every trace packet must equal `.expected`;
//! then 5 interleaved rounds (engine, rte_acl, engine, ...) of raw classification (no
//! caching between packets; the engine classifies the parsed trace in memory, rte_acl runs
//! in `dpdk-test-acl` with its own in-memory trace) and the median of each is compared. Also
//! reported: build time (file parsing included, as in the rte_acl baseline), run-time
//! memory, and single-rule insert/delete time (rte_acl has no incremental update: it must
//! rebuild, so its "update" is its build).
//!
//! rte_acl's best algorithm on this CPU is found once per set by trying avx512x16, avx2,
//! sse and scalar. Its build time is the wall time of a build-only run minus that of a
//! one-rule run (EAL start-up, trace reading); its memory is the run-time footprint from
//! its own build log.
//!
//! Run: `cargo bench -p palisade-classifier --bench classify [-- SET...]` (default: the nine
//! sets). Results: a table on stdout, JSON lines in `target/bench/classify.jsonl`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use palisade_classifier::classbench::{parse_expected, parse_rules, parse_trace};
use palisade_classifier::{Engine, Key, Match, Rule};

const ROUNDS: usize = 5;
const ALGS: [&str; 4] = ["avx512x16", "avx2", "sse", "scalar"];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Set {
    name: String,
    rules_path: PathBuf,
    trace_path: PathBuf,
    rules: Vec<Rule<u32>>,
    trace: Vec<Key<u32>>,
}

fn load(dir: &Path, name: &str) -> Set {
    let rules_path = dir.join(format!("{name}.rules"));
    let trace_path = dir.join(format!("{name}.trace"));
    let rules = parse_rules(&std::fs::read_to_string(&rules_path).unwrap()).unwrap();
    let trace = parse_trace(&std::fs::read_to_string(&trace_path).unwrap()).unwrap();
    let expected =
        parse_expected(&std::fs::read_to_string(dir.join(format!("{name}.expected"))).unwrap())
            .unwrap();
    let engine = build(&rules);
    let mut out = vec![None; trace.len()];
    engine.lookup_batch(&trace, &mut out);
    let wrong = out
        .iter()
        .zip(&expected)
        .filter(|(got, want)| got.map(|m: Match| m.id) != **want)
        .count();
    assert_eq!(
        wrong, 0,
        "{name}: {wrong} packets disagree with rte_acl's oracle"
    );
    Set {
        name: name.to_string(),
        rules_path,
        trace_path,
        rules,
        trace,
    }
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

/// Lookups per second over enough passes to run about half a second.
fn engine_rate(engine: &Engine<u32>, trace: &[Key<u32>]) -> f64 {
    let mut out = vec![None; trace.len()];
    let mut passes = 0usize;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(500) {
        engine.lookup_batch(trace, &mut out);
        passes += 1;
    }
    (passes * trace.len()) as f64 / started.elapsed().as_secs_f64()
}

/// Build time with parsing, as the rte_acl baseline counts it.
fn engine_build_seconds(set: &Set) -> f64 {
    let started = Instant::now();
    let rules = parse_rules(&std::fs::read_to_string(&set.rules_path).unwrap()).unwrap();
    let engine = build(&rules);
    let t = started.elapsed().as_secs_f64();
    assert_eq!(engine.len(), rules.len());
    t
}

/// Median insert and delete time of one rule, over a sample of the set's rules, in µs, and
/// the worst.
fn engine_updates(set: &Set) -> (f64, f64, f64, f64) {
    let mut engine = build(&set.rules);
    let step = (set.rules.len() / 500).max(1);
    let (mut del, mut ins) = (Vec::new(), Vec::new());
    for i in (0..set.rules.len()).step_by(step) {
        let t = Instant::now();
        engine.remove(i as u32).unwrap();
        del.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        engine.insert(set.rules[i], i as u32, i as u32).unwrap();
        ins.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    (
        median(ins.clone()),
        max(&ins),
        median(del.clone()),
        max(&del),
    )
}

fn test_acl(
    set: &Set,
    rules_path: &Path,
    rulenum: usize,
    alg: &str,
    iter: usize,
    tracenum: usize,
) -> Option<(f64, Option<u64>, f64)> {
    let started = Instant::now();
    let out = Command::new("dpdk-test-acl")
        .args([
            "--no-huge",
            "--no-shconf",
            "--no-pci",
            "-m",
            "2048",
            "-l",
            "0",
        ])
        .args(["--log-level=lib.acl:debug", "--"])
        .arg(format!("--rulesf={}", rules_path.display()))
        .arg(format!("--tracef={}", set.trace_path.display()))
        .arg(format!("--rulenum={rulenum}"))
        .arg(format!("--tracenum={tracenum}"))
        .arg(format!("--iter={iter}"))
        .args(["--verbose=0", "--bldcat=1", "--runcat=1"])
        .arg(format!("--alg={alg}"))
        .output()
        .ok()?;
    let wall = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return None;
    }
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let rate = text
        .lines()
        .filter_map(|l| l.split("cycles/pkt, ").nth(1))
        .filter_map(|r| r.split(' ').next()?.parse::<f64>().ok())
        .next_back()
        .unwrap_or(0.0);
    let memory = text
        .lines()
        .find_map(|l| l.strip_prefix("total: ")?.split(' ').next()?.parse().ok());
    Some((rate, memory, wall))
}

struct Acl {
    alg: &'static str,
    rates: Vec<f64>,
    memory: u64,
    build_seconds: f64,
}

fn acl_setup(set: &Set, scratch: &Path) -> Option<Acl> {
    // Best algorithm: one short run each.
    let (alg, rate, memory) = ALGS
        .iter()
        .filter_map(|alg| {
            let (rate, memory, _) = test_acl(
                set,
                &set.rules_path,
                set.rules.len(),
                alg,
                5,
                set.trace.len(),
            )?;
            Some((*alg, rate, memory?))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    // Build time: build-only runs (one iteration over one packet) of the full set and of its
    // first rule, median of three each, subtracted.
    let one_rule = scratch.join(format!("{}.one.rules", set.name));
    let first = std::fs::read_to_string(&set.rules_path)
        .ok()?
        .lines()
        .next()?
        .to_string()
        + "\n";
    std::fs::write(&one_rule, first).ok()?;
    let wall = |path: &Path, n: usize| {
        median(
            (0..3)
                .filter_map(|_| test_acl(set, path, n, alg, 1, 1).map(|r| r.2))
                .collect(),
        )
    };
    let build_seconds = (wall(&set.rules_path, set.rules.len()) - wall(&one_rule, 1)).max(0.0);
    Some(Acl {
        alg,
        rates: vec![rate],
        memory,
        build_seconds,
    })
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/classbench");
    if !dir.is_dir() {
        eprintln!("!!! SKIPPED: {} is missing", dir.display());
        return;
    }
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
    let have_acl = Command::new("dpdk-test-acl").arg("--help").output().is_ok();
    if !have_acl {
        eprintln!(
            "!!! dpdk-test-acl not found (Debian package `dpdk`): rte_acl columns will be empty"
        );
    }
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&target).unwrap();
    let mut jsonl = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(target.join("classify.jsonl"))
        .unwrap();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name\t: ").map(str::to_string))
        .unwrap_or_default();
    let avx512 = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .contains("avx512f");
    println!(
        "classify: {cpu} (avx512: {avx512}); peer: rte_acl in dpdk-test-acl (DPDK 22.11), same run"
    );
    println!(
        "{:<10} {:>7} {:>9} {:>9} {:>7} {:>9} {:>9} {:>7} {:>9} {:>9} {:>7} {:>14}",
        "set",
        "rules",
        "Mpps",
        "acl Mpps",
        "ratio",
        "build ms",
        "acl ms",
        "ratio",
        "mem MB",
        "acl MB",
        "ratio",
        "ins/del µs"
    );
    for name in &names {
        let set = load(&dir, name);
        let engine = build(&set.rules);
        let mut acl = if have_acl {
            acl_setup(&set, &target)
        } else {
            None
        };
        let mut ours = Vec::new();
        for round in 0..ROUNDS {
            ours.push(engine_rate(&engine, &set.trace));
            if let Some(a) = acl.as_mut()
                && round > 0
                && let Some((rate, _, _)) = test_acl(
                    &set,
                    &set.rules_path,
                    set.rules.len(),
                    a.alg,
                    20,
                    set.trace.len(),
                )
            {
                a.rates.push(rate);
            }
        }
        let rate = median(ours);
        let build_s = median((0..ROUNDS).map(|_| engine_build_seconds(&set)).collect());
        let memory = engine.memory_bytes();
        let (ins, ins_max, del, del_max) = engine_updates(&set);
        let (acl_rate, acl_build, acl_mem, alg) = match &acl {
            Some(a) => (
                median(a.rates.clone()),
                a.build_seconds,
                a.memory as f64,
                a.alg,
            ),
            None => (f64::NAN, f64::NAN, f64::NAN, "-"),
        };
        println!(
            "{:<10} {:>7} {:>9.2} {:>9.2} {:>7.2} {:>9.2} {:>9.1} {:>7.3} {:>9.2} {:>9.2} {:>7.3} {:>6.2}/{:<6.2}",
            name,
            set.rules.len(),
            rate / 1e6,
            acl_rate / 1e6,
            rate / acl_rate,
            build_s * 1e3,
            acl_build * 1e3,
            build_s / acl_build,
            memory as f64 / 1e6,
            acl_mem / 1e6,
            memory as f64 / acl_mem,
            ins,
            del
        );
        writeln!(
            jsonl,
            "{{\"bench\":\"classify\",\"set\":\"{name}\",\"rules\":{},\"lookups_per_s\":{rate:.0},\"rte_acl_lookups_per_s\":{acl_rate:.0},\"rte_acl_alg\":\"{alg}\",\"ratio_lookups\":{:.4},\"build_s\":{build_s:.6},\"rte_acl_build_s\":{acl_build:.6},\"ratio_build\":{:.5},\"memory_bytes\":{memory},\"rte_acl_memory_bytes\":{acl_mem:.0},\"ratio_memory\":{:.5},\"insert_us_median\":{ins:.3},\"insert_us_max\":{ins_max:.3},\"delete_us_median\":{del:.3},\"delete_us_max\":{del_max:.3},\"rounds\":{ROUNDS},\"cpu\":\"{cpu}\",\"avx512\":{avx512}}}",
            set.rules.len(),
            rate / acl_rate,
            build_s / acl_build,
            memory as f64 / acl_mem
        )
        .unwrap();
    }
}
