//! `fleet-manager`: Palisade's fleet manager command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod k8s;
mod load;
mod policy;

/// Palisade fleet manager: compile security intent into device programs and explain verdicts.
#[derive(Parser)]
#[command(name = "fleet-manager", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate, compile and explain policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Kubernetes network-policy tools.
    #[command(subcommand)]
    K8s(K8sCommand),
}

/// Output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    /// For scripts.
    Json,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Check policy files (.pal rule files, YAML/JSON objects, Kubernetes manifests): syntax,
    /// references across all given files, and the rules of the policy model.
    Check {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Compile intent against an inventory into one device program per device.
    Compile {
        /// Inventory file (YAML or JSON).
        #[arg(long)]
        inventory: PathBuf,
        /// Policy files or directories.
        #[arg(long, required = true, num_args = 1..)]
        policies: Vec<PathBuf>,
        /// Directory to write `<device>.json` programs and `summary.json` into.
        #[arg(long)]
        out: PathBuf,
        /// Generation number to stamp on the programs.
        #[arg(long, default_value_t = 1)]
        generation: u64,
        /// Verdict for traffic of no local endpoint.
        #[arg(long, value_enum, default_value_t = Foreign::Allow)]
        foreign: Foreign,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Explain the verdict for one connection, from intent, and show what each device does.
    Explain {
        /// Inventory file (YAML or JSON).
        #[arg(long)]
        inventory: PathBuf,
        /// Policy files or directories.
        #[arg(long, required = true, num_args = 1..)]
        policies: Vec<PathBuf>,
        /// Initiator: project/workload[/interface] or an IP address.
        #[arg(long)]
        from: String,
        /// Responder: project/workload[/interface] or an IP address.
        #[arg(long)]
        to: String,
        /// Protocol: tcp, udp, sctp, icmp, icmpv6 or a number.
        #[arg(long, default_value = "tcp")]
        protocol: String,
        /// Responder's port.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Initiator's port.
        #[arg(long, default_value_t = 49152)]
        src_port: u16,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Print policy files in the canonical form of the rule language (or as YAML/JSON).
    Fmt {
        /// Files or directories (our objects only).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Target form.
        #[arg(long, value_enum, default_value_t = Form::Pal)]
        to: Form,
    },
}

/// Verdict for foreign traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Foreign {
    /// Forward it.
    Allow,
    /// Drop it.
    Deny,
}

/// A written form of intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Form {
    /// The plain-English rule language.
    Pal,
    /// YAML documents.
    Yaml,
    /// JSON, one object per line.
    Json,
}

#[derive(Subcommand)]
enum K8sCommand {
    /// Answer every probe of a network-policy case by compiling its policies for every node
    /// and running the device programs (source egress AND destination ingress). Prints one
    /// JSON object per probe.
    Eval {
        /// The case file (shared/data/netpol format).
        case: PathBuf,
    },
    /// Run every case in a directory against its expectations.
    Test {
        /// Directory of case files.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(PolicyCommand::Check { paths, output }) => policy::check(&paths, output),
        Command::Policy(PolicyCommand::Compile {
            inventory,
            policies,
            out,
            generation,
            foreign,
            output,
        }) => policy::compile(&inventory, &policies, &out, generation, foreign, output),
        Command::Policy(PolicyCommand::Explain {
            inventory,
            policies,
            from,
            to,
            protocol,
            port,
            src_port,
            output,
        }) => policy::explain(
            &inventory, &policies, &from, &to, &protocol, src_port, port, output,
        ),
        Command::Policy(PolicyCommand::Fmt { paths, to }) => policy::fmt(&paths, to),
        Command::K8s(K8sCommand::Eval { case }) => k8s::eval(&case),
        Command::K8s(K8sCommand::Test { dir }) => k8s::test(&dir),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
