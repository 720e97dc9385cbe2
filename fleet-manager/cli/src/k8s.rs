//! `fleet-manager k8s ...`: evaluate and test Kubernetes network-policy cases.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use palisade_k8s::case::{Case, check_case, eval_case};

/// `k8s eval CASE.json`: one JSON object per probe, in probe order. Reads no expectation.
pub fn eval(path: &Path) -> Result<ExitCode> {
    let case = Case::load(path).map_err(|e| anyhow!("{e}"))?;
    let results = eval_case(&case).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let mut out = String::with_capacity(results.len() * 96);
    for r in &results {
        out.push_str(&serde_json::to_string(r)?);
        out.push('\n');
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `k8s test DIR`: every case against its expectations; a line per failing probe, then
/// `N passed, M failed` (probes of scored cases; contested cases are reported apart).
pub fn test(dir: &Path) -> Result<ExitCode> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| p.extension().and_then(|e| e.to_str()) == Some("json"));
    files.sort();
    if files.is_empty() {
        return Err(anyhow!("{}: no case files (*.json)", dir.display()));
    }
    let (mut passed, mut failed, mut broken) = (0usize, 0usize, 0usize);
    let (mut contested_cases, mut contested_agree, mut contested_probes) = (0usize, 0usize, 0usize);
    for file in &files {
        let case = match Case::load(file) {
            Ok(c) => c,
            Err(e) => {
                println!("FAIL {}: {e}", file.display());
                broken += 1;
                continue;
            }
        };
        let report = check_case(&case);
        if report.contested {
            contested_cases += 1;
            contested_agree += report.passed;
            contested_probes += report.probes;
            println!(
                "contested {}: {}/{} probes agree with upstream (not scored)",
                report.id, report.passed, report.probes
            );
            continue;
        }
        if let Some(e) = &report.error {
            println!("FAIL {}: {e}", report.id);
            broken += 1;
            failed += report.probes;
            continue;
        }
        passed += report.passed;
        failed += report.failures.len();
        for f in &report.failures {
            let p = &f.probe;
            println!(
                "FAIL {} probe {}: {} -> {} {}/{}: expected {}, got {}",
                report.id,
                f.index,
                p.src,
                p.dst,
                p.protocol.name(),
                p.port,
                f.expected,
                f.got
            );
        }
    }
    println!(
        "{} cases ({} scored, {} contested: {}/{} probes agree), {} could not be evaluated",
        files.len(),
        files.len() - contested_cases,
        contested_cases,
        contested_agree,
        contested_probes,
        broken
    );
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 && broken == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
