//! `vrouter run`: the dataplane on real ports, with a device program and a hardware profile.
//!
//! How frames move between the ports is [`palisade_agent::forward`]'s business.
//!
//! Configuration (YAML or JSON; paths relative to the file):
//!
//! ```yaml
//! program: dpu-1.json          # a device program (fleet-manager policy compile)
//! profile: sim-large           # a built-in hw-profile name, or a profile file
//! ports:
//!   - {name: web, af_packet: veth-web}
//!   - {name: fabric, af_packet: eth1}
//!   - {name: ids, af_packet: veth-ids}
//!   - {name: ring0, dpdk: "net_ring0"}       # with the `dpdk` feature
//! links: [[web, fabric]]
//! services: {ids: ids}         # redirect target name -> port
//! mirrors: {tap: ids}          # mirror destination name -> port
//! sessions: {max: 1000000}
//! non_ip: forward              # or drop
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use palisade_dataplane::pipeline::{Compiled, NonIp, Pipeline, PipelineConfig, ProgramSlot};
use palisade_dataplane::session::SessionConfig;
use palisade_hw_profiles::Profile;
use palisade_offload::{PlanOptions, ProgramPlan, RulePlace, plan_program};
use palisade_ports::{AfPacketPort, Port};
use palisade_program::DeviceProgram;
use serde::Deserialize;

use palisade_agent::forward::{Forwarder, Topology};

/// Arguments of `vrouter run`.
#[derive(clap::Args)]
pub struct Args {
    /// The run configuration (YAML or JSON).
    #[arg(long)]
    config: PathBuf,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long)]
    duration: Option<f64>,
    /// Print counters as JSON every this many seconds (and once at exit).
    #[arg(long)]
    stats_every: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortSpec {
    name: String,
    /// `workload` (its received frames are egress traffic of local endpoints) or `fabric`
    /// (ingress): which direction's hardware entries a DPDK port gets.
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    af_packet: Option<String>,
    #[serde(default)]
    dpdk: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Role {
    Workload,
    Fabric,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SessionSpec {
    #[serde(default)]
    max: Option<usize>,
    #[serde(default)]
    tcp_loose_pickup: Option<bool>,
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
enum NonIpSpec {
    #[default]
    Forward,
    Drop,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunConfig {
    program: PathBuf,
    #[serde(default = "default_profile")]
    profile: String,
    ports: Vec<PortSpec>,
    #[serde(default)]
    links: Vec<[String; 2]>,
    #[serde(default)]
    services: HashMap<String, String>,
    #[serde(default)]
    mirrors: HashMap<String, String>,
    #[serde(default)]
    sessions: SessionSpec,
    #[serde(default)]
    non_ip: NonIpSpec,
}

fn default_profile() -> String {
    "sim-large".into()
}

pub(crate) fn load_profile(spec: &str, base: &Path) -> Result<Profile> {
    if palisade_hw_profiles::builtin_names().contains(&spec) {
        return palisade_hw_profiles::builtin(spec).map_err(|e| anyhow!("{e}"));
    }
    palisade_hw_profiles::load_file(base.join(spec)).map_err(|e| {
        anyhow!(
            "profile `{spec}`: not a built-in ({}) and not a readable profile file: {e}",
            palisade_hw_profiles::builtin_names().join(", ")
        )
    })
}

/// Loads a device program file.
pub fn load_program(path: &Path) -> Result<DeviceProgram> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a valid device program", path.display()))
}

fn open_port(spec: &PortSpec, plan: &ProgramPlan) -> Result<Box<dyn Port>> {
    match (&spec.af_packet, &spec.dpdk) {
        (Some(iface), None) => Ok(Box::new(AfPacketPort::open(iface)?)),
        (None, Some(device)) => open_dpdk(spec, device, plan),
        _ => bail!(
            "port {}: give exactly one of `af_packet: IFACE` or `dpdk: DEVICE`",
            spec.name
        ),
    }
}

/// Opens a DPDK port and installs its direction's hardware entries, falling back to
/// software (with the driver's reason) when the PMD refuses them.
#[cfg(feature = "dpdk")]
fn open_dpdk(spec: &PortSpec, device: &str, plan: &ProgramPlan) -> Result<Box<dyn Port>> {
    let mut port = crate::dpdk_port::DpdkPort::open(&spec.name, device)?;
    let entries = match spec.role {
        Some(Role::Workload) => &plan.egress.entries,
        Some(Role::Fabric) => &plan.ingress.entries,
        None => return Ok(Box::new(port)),
    };
    if !entries.is_empty() {
        match crate::flow_offload::install(port.ethdev(), entries) {
            Ok(n) => println!("vrouter: port {}: {n} rte_flow rules installed", spec.name),
            Err(e) => println!(
                "vrouter: port {}: rte_flow refused the offload ({e}); its rules run in software",
                spec.name
            ),
        }
    }
    Ok(Box::new(port))
}

#[cfg(not(feature = "dpdk"))]
fn open_dpdk(spec: &PortSpec, _: &str, _: &ProgramPlan) -> Result<Box<dyn Port>> {
    let _ = spec.role;
    bail!(
        "port {}: this vrouter was built without DPDK (build with `--features dpdk`)",
        spec.name
    )
}

fn topology(config: &RunConfig) -> Result<Topology> {
    let names: Vec<&str> = config.ports.iter().map(|p| p.name.as_str()).collect();
    Topology::new(&names, &config.links, &config.services, &config.mirrors)
}

/// Runs the command.
pub fn run(args: &Args) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let config: RunConfig = serde_saphyr::from_str(&text).map_err(|e| {
        anyhow!(
            "{}: {}",
            args.config.display(),
            e.render_with_formatter(&serde_saphyr::UserMessageFormatter)
        )
    })?;
    let base = args.config.parent().unwrap_or(Path::new("."));
    let program = load_program(&base.join(&config.program))?;
    let profile = load_profile(&config.profile, base)?;
    let topology = topology(&config)?;
    let plan = plan_program(&program, &profile, PlanOptions::default())?;
    let (mut hw, mut split, mut sw) = (0, 0, 0);
    for r in &plan.rules {
        match r.place {
            RulePlace::Hardware { .. } => hw += 1,
            RulePlace::Split { .. } => split += 1,
            RulePlace::Software { .. } => sw += 1,
        }
    }
    println!(
        "vrouter: device {} generation {} ({}), {} rules: {hw} in hardware, {split} split, {sw} in software on {}",
        program.device(),
        program.generation(),
        program.hash(),
        plan.rules.len(),
        profile.name()
    );
    let ports: Vec<Box<dyn Port>> = config
        .ports
        .iter()
        .map(|p| open_port(p, &plan))
        .collect::<Result<_>>()?;
    let slot = Arc::new(ProgramSlot::new(Compiled::new(program)?));
    let defaults = SessionConfig::default();
    let pipeline_config = PipelineConfig {
        sessions: SessionConfig {
            max_sessions: config.sessions.max.unwrap_or(defaults.max_sessions),
            tcp_loose_pickup: config
                .sessions
                .tcp_loose_pickup
                .unwrap_or(defaults.tcp_loose_pickup),
            ..defaults
        },
        non_ip: match config.non_ip {
            NonIpSpec::Forward => NonIp::Forward,
            NonIpSpec::Drop => NonIp::Drop,
        },
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::new(pipeline_config, slot);
    println!(
        "vrouter: running on {}",
        ports
            .iter()
            .map(|p| p.name().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut forwarder = Forwarder::new(ports, topology, pipeline);
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + Duration::from_secs_f64(d));
    let mut last_stats = started;
    loop {
        let busy = forwarder.poll(started.elapsed().as_nanos() as u64)?;
        if let Some(every) = args.stats_every
            && last_stats.elapsed().as_secs_f64() >= every
        {
            println!("{}", forwarder.stats_json());
            last_stats = Instant::now();
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if !busy {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    println!("{}", forwarder.stats_json());
    Ok(ExitCode::SUCCESS)
}
