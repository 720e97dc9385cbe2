//! `vrouter`: Palisade's vRouter.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod agent;
mod classify;
#[cfg(feature = "dpdk")]
mod dpdk_port;
#[cfg(feature = "dpdk")]
mod flow_offload;
mod run;

/// Palisade vRouter: enforces device programs on a host's or DPU's ports.
#[derive(Parser)]
#[command(name = "vrouter", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify a ClassBench trace against a ClassBench rule list (first match wins).
    Classify(classify::Args),
    /// Run the dataplane on configured ports with a device program and a hardware profile.
    Run(run::Args),
    /// Run under a fleet manager: enroll, receive programs over mTLS, enforce them, report.
    Agent(Box<agent::Args>),
}

/// Logs to standard error; `RUST_LOG` filters (default `info`).
fn logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Classify(args) => classify::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Agent(args) => agent::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
