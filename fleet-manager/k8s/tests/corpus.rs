//! The differential corpus in `shared/data/netpol/dev/` (a sibling of the workspace): every
//! non-contested case must pass every probe through the compiled path, and `explain` must
//! agree with the compiled path on every probe of every case. Contested cases are run and
//! reported, not counted.

use std::path::PathBuf;
use std::time::Instant;

use palisade_k8s::Evaluator;
use palisade_k8s::case::{Case, CompiledCase, Verdict, check_case};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/netpol/dev")
}

fn cases() -> Option<Vec<Case>> {
    let dir = corpus_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "\n!!!!!!!! SKIPPED: the netpol corpus is not at {} !!!!!!!!\n",
            dir.display()
        );
        return None;
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    Some(
        paths
            .iter()
            .map(|p| Case::load(p).unwrap_or_else(|e| panic!("{e}")))
            .collect(),
    )
}

#[test]
fn corpus_cases_pass_and_explain_agrees() {
    let Some(cases) = cases() else {
        return;
    };
    let start = Instant::now();
    let (mut scored_cases, mut scored_probes, mut passed_probes) = (0, 0, 0);
    let mut failing = Vec::new();
    let mut contested = Vec::new();
    let mut disagreements = Vec::new();
    for case in &cases {
        let report = check_case(case);
        if report.contested {
            contested.push(report);
        } else {
            scored_cases += 1;
            scored_probes += report.probes;
            passed_probes += report.passed;
            if !report.is_pass() {
                failing.push(report);
            }
        }
        // The oracle: explain, straight from policies and inventory, against the compiled
        // path, on every probe (contested cases included: both sides use our semantics).
        let Ok(compiled) = CompiledCase::new(case) else {
            continue;
        };
        let evaluator = Evaluator::new(compiled.policies(), compiled.index());
        for probe in &case.probes {
            let (Some(src), Some(dst)) =
                (compiled.address(&probe.src), compiled.address(&probe.dst))
            else {
                disagreements.push(format!("{}: unresolved probe {probe:?}", case.id));
                continue;
            };
            let explained = evaluator.explain(src, dst, probe.protocol.protocol(), probe.port);
            let compiled_verdict = compiled.verdict(probe).expect("resolved ends");
            if Verdict::from_allowed(explained.allowed) != compiled_verdict {
                disagreements.push(format!(
                    "{}: {} -> {} {}/{}: compiled {compiled_verdict}, explain {explained}",
                    case.id,
                    probe.src,
                    probe.dst,
                    probe.protocol.name(),
                    probe.port
                ));
            }
        }
    }
    let contested_probes: usize = contested.iter().map(|r| r.probes).sum();
    let contested_passed: usize = contested.iter().map(|r| r.passed).sum();
    println!(
        "netpol corpus: {}/{scored_cases} cases and {passed_probes}/{scored_probes} probes pass; \
         {} contested cases ({contested_passed}/{contested_probes} probes agree with upstream); {:.1?}",
        scored_cases - failing.len(),
        contested.len(),
        start.elapsed()
    );
    for report in &contested {
        println!("contested: {report}");
    }
    for report in &failing {
        println!("{report}");
    }
    for d in disagreements.iter().take(20) {
        println!("explain disagrees: {d}");
    }
    assert!(failing.is_empty(), "{} scored cases fail", failing.len());
    assert!(
        disagreements.is_empty(),
        "{} probes: explain disagrees with the compiled path",
        disagreements.len()
    );
}
