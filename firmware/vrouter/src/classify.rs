//! `vrouter classify`: ClassBench rules and traces through the classifier.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use palisade_classifier::classbench::{parse_rules, parse_trace};
use palisade_classifier::{Engine, Match};

/// Arguments of `vrouter classify`.
#[derive(clap::Args)]
pub struct Args {
    /// ClassBench rule list (first line = highest priority).
    #[arg(long)]
    rules: PathBuf,
    /// ClassBench trace: `src dst sport dport proto` per line.
    #[arg(long)]
    trace: PathBuf,
    /// Write the 0-based index of the first matching rule (-1 for none), one per trace line.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print build time, lookups per second (in-process, file reading excluded) and memory.
    #[arg(long)]
    bench: bool,
    /// Passes over the trace when measuring lookups.
    #[arg(long, default_value_t = 10)]
    passes: usize,
}

/// Runs the command.
pub fn run(args: &Args) -> Result<ExitCode> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let rules_text = read(&args.rules)?;
    let trace_text = read(&args.trace)?;
    let rules = parse_rules(&rules_text).with_context(|| args.rules.display().to_string())?;
    let trace = parse_trace(&trace_text).with_context(|| args.trace.display().to_string())?;

    let started = Instant::now();
    let engine = Engine::build(
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| (*r, i as u32, i as u32)),
    )?;
    let build = started.elapsed();

    let mut results: Vec<Option<Match>> = vec![None; trace.len()];
    engine.lookup_batch(&trace, &mut results);
    if let Some(out) = &args.out {
        let mut text = String::with_capacity(trace.len() * 6);
        for r in &results {
            match r {
                Some(m) => writeln!(text, "{}", m.id),
                None => writeln!(text, "-1"),
            }
            .expect("writing to a String");
        }
        std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    }
    if args.bench {
        let passes = args.passes.max(1);
        let started = Instant::now();
        for _ in 0..passes {
            engine.lookup_batch(&trace, &mut results);
        }
        let elapsed = started.elapsed();
        let lookups = (passes * trace.len()) as f64 / elapsed.as_secs_f64();
        println!(
            "rules={} tables={} build_ms={:.3} lookups_per_s={:.0} memory_bytes={}",
            rules.len(),
            engine.tables(),
            build.as_secs_f64() * 1e3,
            lookups,
            engine.memory_bytes()
        );
    }
    Ok(ExitCode::SUCCESS)
}
