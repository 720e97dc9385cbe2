//! `fleet-manager`: Palisade's fleet manager command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// `println!` for command output: a reader that went away (`| head`) ends the command
/// quietly, as SIGPIPE would, instead of a panic.
macro_rules! out {
    () => { $crate::write_out(format_args!("")) };
    ($($t:tt)*) => { $crate::write_out(format_args!($($t)*)) };
}

mod client;
mod demo;
mod flows;
mod k8s;
mod load;
mod policy;
mod serve;

use client::Connection;

/// Palisade fleet manager: the server, its client commands, and offline policy tools.
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
    /// Run the fleet manager server (embedded store; no other server needed).
    Serve(serve::Args),
    /// The whole system in one process: a fleet manager, two simulated DPUs, the sample
    /// intent and test traffic (no root, nothing to install).
    Demo(demo::Args),
    /// Enrollment tokens for devices.
    #[command(subcommand)]
    Token(TokenCommand),
    /// API users.
    #[command(subcommand)]
    User(UserCommand),
    /// Send inventory (devices, projects, workloads) and policy files to the server.
    Apply {
        /// Files or directories (`-` for standard input): .pal, YAML or JSON policy objects,
        /// or inventory files.
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
        /// Validate only.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        connection: Connection,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Delete a policy object (a draft in a drafting scope) or a Kubernetes policy.
    Delete {
        /// Kind: tag-type, tag, address-group, service-group, policy, aps, networkpolicy,
        /// adminnetworkpolicy, baselineadminnetworkpolicy.
        kind: String,
        /// Name.
        name: String,
        /// Scope: global or project/NAME (a NetworkPolicy's namespace is its project).
        #[arg(long, default_value = "global")]
        scope: String,
        #[command(flatten)]
        connection: Connection,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show policy objects (or `get inventory`).
    Get {
        /// Kind: tag-type, tag, address-group, service-group, policy, aps, networkpolicy,
        /// adminnetworkpolicy, baselineadminnetworkpolicy, or `inventory`.
        kind: Option<String>,
        /// Name.
        name: Option<String>,
        /// Scope: global or project/NAME.
        #[arg(long)]
        scope: Option<String>,
        /// Show drafts instead of committed objects.
        #[arg(long)]
        drafts: bool,
        /// Object format: yaml, json or pal.
        #[arg(long, default_value = "yaml")]
        format: String,
        #[command(flatten)]
        connection: Connection,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// What a scope's drafts would change.
    Diff {
        /// Scope: global or project/NAME.
        #[arg(long, default_value = "global")]
        scope: String,
        #[command(flatten)]
        connection: Connection,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Commit a scope's drafts: compile and send every affected device its program.
    Commit {
        /// Scope: global or project/NAME.
        #[arg(long, default_value = "global")]
        scope: String,
        /// Refuse with a conflict unless the scope is still at this revision (from `diff`).
        #[arg(long)]
        revision: Option<u64>,
        /// Wait up to this many seconds for the commit to be enforced (exit 1 if it fails,
        /// 3 if still pending).
        #[arg(long)]
        wait: Option<f64>,
        #[command(flatten)]
        connection: Connection,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Discard a scope's drafts.
    Revert {
        /// Scope: global or project/NAME.
        #[arg(long, default_value = "global")]
        scope: String,
        #[command(flatten)]
        connection: Connection,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Turn drafting on or off for a scope.
    Drafting {
        /// Scope: global or project/NAME.
        #[arg(long, default_value = "global")]
        scope: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Commits: enforced, pending or failed, and per device the acknowledged generation and
    /// hash.
    Status {
        /// One commit (its generation); the latest commits otherwise.
        generation: Option<u64>,
        /// How many commits.
        #[arg(long, default_value_t = 10)]
        limit: u32,
        /// Wait up to this many seconds for the (latest) commit to leave `pending`.
        #[arg(long)]
        wait: Option<f64>,
        #[command(flatten)]
        connection: Connection,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Devices: enrollment, connection, desired and acknowledged programs, placement.
    Devices {
        #[command(flatten)]
        connection: Connection,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Revoke a device: its certificates are refused from now on.
    Revoke {
        /// The device.
        #[arg(long)]
        device: String,
        #[command(flatten)]
        connection: Connection,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Explain the verdict for one connection under the server's committed intent.
    Explain {
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
        #[command(flatten)]
        connection: Connection,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Flow telemetry: totals by tag pairs, rules, devices; top talkers; the flows
    /// themselves; what a draft would change of recorded traffic.
    #[command(subcommand)]
    Flows(FlowsCommand),
    /// Print commit and device events as they happen (JSON lines).
    Watch {
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Subcommand)]
enum FlowsCommand {
    /// Totals per group (or `--list` the flows) over a time window.
    Query {
        #[command(flatten)]
        query: flows::QueryArgs,
        #[command(flatten)]
        connection: Connection,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Replays recorded sessions against a scope's drafts: which would change verdict
    /// (exit 1 when any would).
    WhatIf {
        /// The scope whose drafts to try: global or project/NAME.
        #[arg(long)]
        draft: String,
        /// Sessions recorded in the last DURATION: 90s, 15m, 2h, 7d.
        #[arg(long, default_value = "1h", value_parser = palisade_flows::query::parse_duration)]
        since: std::time::Duration,
        #[command(flatten)]
        connection: Connection,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// A one-time enrollment token for a device (printed alone, for scripts).
    Create {
        /// The device's name.
        #[arg(long)]
        device: String,
        /// Seconds the token is valid.
        #[arg(long, default_value_t = 3600)]
        valid: u32,
        #[command(flatten)]
        connection: Connection,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// An API bearer token for a user (admin only).
    Token {
        /// The user's name.
        name: String,
        /// admin or read-only.
        #[arg(long, default_value = "read-only", value_parser = ["admin", "read-only"])]
        role: String,
        #[command(flatten)]
        connection: Connection,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
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

/// Writes one line of output; exits when standard output is closed.
fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .is_err()
    {
        std::process::exit(0);
    }
}

/// Logs warnings and errors only (unless `RUST_LOG` says otherwise), for commands whose
/// own output tells the story.
fn logging_quiet() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
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
    use client::block_on;
    let result = match cli.command {
        Command::Serve(args) => serve::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Token(TokenCommand::Create {
            device,
            valid,
            connection,
            output,
        }) => block_on(client::token_create(&connection, &device, valid, output)),
        Command::User(UserCommand::Token {
            name,
            role,
            connection,
            output,
        }) => block_on(client::user_token(&connection, &name, &role, output)),
        Command::Apply {
            files,
            dry_run,
            connection,
            output,
        } => block_on(client::apply(&connection, &files, dry_run, output)),
        Command::Get {
            kind,
            name,
            scope,
            drafts,
            format,
            connection,
            output,
        } => block_on(client::get(
            &connection,
            kind.as_deref(),
            name.as_deref(),
            scope.as_deref(),
            drafts,
            &format,
            output,
        )),
        Command::Delete {
            kind,
            name,
            scope,
            connection,
            output,
        } => block_on(client::delete(&connection, &kind, &name, &scope, output)),
        Command::Diff {
            scope,
            connection,
            output,
        } => block_on(client::diff(&connection, &scope, output)),
        Command::Commit {
            scope,
            revision,
            wait,
            connection,
            output,
        } => block_on(client::commit(&connection, &scope, revision, wait, output)),
        Command::Revert {
            scope,
            connection,
            output,
        } => block_on(client::revert(&connection, &scope, output)),
        Command::Drafting {
            scope,
            state,
            connection,
        } => block_on(client::drafting(&connection, &scope, state == "on")),
        Command::Status {
            generation,
            limit,
            wait,
            connection,
            output,
        } => block_on(client::status(&connection, generation, limit, wait, output)),
        Command::Devices { connection, output } => block_on(client::devices(&connection, output)),
        Command::Revoke {
            device,
            connection,
            output,
        } => block_on(client::revoke(&connection, &device, output)),
        Command::Explain {
            from,
            to,
            protocol,
            port,
            src_port,
            connection,
            output,
        } => block_on(client::explain(
            &connection,
            palisade_api::pb::orchestrator::v1::ExplainRequest {
                from,
                to,
                protocol,
                port: port.into(),
                src_port: src_port.into(),
            },
            output,
        )),
        Command::Watch { connection } => block_on(client::watch(&connection)),
        Command::Flows(FlowsCommand::Query {
            query,
            connection,
            output,
        }) => block_on(flows::query(&connection, &query, output)),
        Command::Flows(FlowsCommand::WhatIf {
            draft,
            since,
            connection,
            output,
        }) => block_on(flows::what_if(&connection, &draft, since, output)),
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
