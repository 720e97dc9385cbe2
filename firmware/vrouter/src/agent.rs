//! `vrouter agent`: the command line of the vRouter agent ([`palisade_agent`]).
//!
//! Flags win over the configuration file, whose keys are the flags' names:
//!
//! ```yaml
//! manager: https://10.0.0.1:7443
//! ca: /etc/palisade/ca.pem        # paths are relative to the file
//! token_file: /etc/palisade/token # or `token: plt_...`; only needed to enroll
//! name: dpu-1
//! state: /var/lib/palisade
//! profile: sim-large              # a built-in hw-profile or a profile file
//! ports: af_packet:veth-web/eth1  # or `memory` (the default), or `dpdk:veth-web/eth1`
//! status_every: 10                # seconds between status reports
//! services: {ids: veth-ids}       # `redirect ids` rules hand connections to this port
//! mirrors: {tap: veth-tap}        # `mirror tap` rules copy frames to this port
//! snmp_config: snmp.yaml          # SNMP: communities, v3 users, views, trap sinks
//! snmp_listen: 0.0.0.0:161        # (or the `listen` of snmp.yaml)
//! ipfix_export: [10.0.0.5:4739]   # IPFIX collectors that get every session record too
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use palisade_agent::{Settings, Wiring};
use palisade_hw_profiles::Profile;
use palisade_ports::{AfPacketPort, memory_pair};
use serde::Deserialize;

/// Arguments of `vrouter agent`.
#[derive(clap::Args, Default)]
pub struct Args {
    /// Configuration file (YAML or JSON) with any of the flags below; flags win.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The fleet manager's gRPC address, `https://HOST:PORT`.
    #[arg(long)]
    manager: Option<String>,
    /// The fleet CA certificate (`ca.pem` in the manager's data directory).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// One-time bootstrap token (`fleet-manager token create --device NAME`); needed only to
    /// enroll.
    #[arg(long, conflicts_with = "token_file")]
    token: Option<String>,
    /// A file holding the bootstrap token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// This device's name, as in the manager's inventory.
    #[arg(long)]
    name: Option<String>,
    /// State directory: key, certificate, last applied program.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Hardware profile: a built-in name or a profile file [default: sim-large].
    #[arg(long)]
    profile: Option<String>,
    /// Ports: `memory` (an in-memory link, the default),
    /// `af_packet:WORKLOAD_IF/FABRIC_IF[,WORKLOAD_IF/FABRIC_IF...]` (one link per pair), or
    /// `dpdk:WORKLOAD_IF/FABRIC_IF[,...]`: the same links through DPDK's net_af_packet
    /// poll-mode driver (a vrouter built with `--features dpdk`).
    #[arg(long)]
    ports: Option<String>,
    /// Seconds between status reports to the manager [default: 10].
    #[arg(long)]
    status_every: Option<f64>,
    /// An L7 service as `NAME=IFACE` (repeatable): connections a `redirect NAME` rule allows
    /// go out of IFACE, and what comes back is forwarded by destination MAC.
    #[arg(long = "service", value_name = "NAME=IFACE")]
    services: Vec<String>,
    /// A mirror destination as `NAME=IFACE` (repeatable), for `mirror NAME` rules.
    #[arg(long = "mirror", value_name = "NAME=IFACE")]
    mirrors: Vec<String>,
    /// Serve SNMP on this UDP address (e.g. `0.0.0.0:161`); communities, v3 users, views
    /// and trap sinks come from --snmp-config.
    #[arg(long, value_name = "ADDR:PORT")]
    snmp_listen: Option<std::net::SocketAddr>,
    /// SNMP configuration (YAML): communities, v3 users (SHA/AES), views, trap sinks, and
    /// the listen address unless --snmp-listen gives it. See `lib/snmp/examples/snmp.yaml`.
    #[arg(long, value_name = "FILE")]
    snmp_config: Option<PathBuf>,
    /// Also export every session record as IPFIX (RFC 7011, UDP) to this collector
    /// (repeatable): nfcapd, another vendor's, or `fleet-manager serve --ipfix-listen`.
    #[arg(long = "ipfix-export", value_name = "ADDR:PORT")]
    ipfix_export: Vec<std::net::SocketAddr>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    manager: Option<String>,
    ca: Option<PathBuf>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    name: Option<String>,
    state: Option<PathBuf>,
    profile: Option<String>,
    ports: Option<String>,
    status_every: Option<f64>,
    #[serde(default)]
    services: HashMap<String, String>,
    #[serde(default)]
    mirrors: HashMap<String, String>,
    snmp_listen: Option<std::net::SocketAddr>,
    snmp_config: Option<PathBuf>,
    #[serde(default)]
    ipfix_export: Vec<std::net::SocketAddr>,
}

/// The ports to run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortsSpec {
    /// One in-memory link.
    Memory,
    /// AF_PACKET links: (workload-facing, fabric-facing) interface pairs.
    AfPacket(Vec<(String, String)>),
    /// The same links through DPDK's `net_af_packet` vdevs.
    Dpdk(Vec<(String, String)>),
}

impl std::str::FromStr for PortsSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let usage = "expected `memory`, `af_packet:WORKLOAD_IF/FABRIC_IF[,WORKLOAD_IF/FABRIC_IF...]` or `dpdk:WORKLOAD_IF/FABRIC_IF[,...]`";
        if s == "memory" {
            return Ok(Self::Memory);
        }
        let (dpdk, list) = match (s.strip_prefix("af_packet:"), s.strip_prefix("dpdk:")) {
            (Some(list), _) => (false, list),
            (_, Some(list)) => (true, list),
            _ => bail!("ports `{s}`: {usage}"),
        };
        let mut pairs = Vec::new();
        for pair in list.split(',') {
            let Some((w, f)) = pair.split_once('/') else {
                bail!("ports `{s}`: `{pair}` is not a WORKLOAD_IF/FABRIC_IF pair; {usage}");
            };
            if w.is_empty() || f.is_empty() || w == f {
                bail!("ports `{s}`: `{pair}` needs two different interface names");
            }
            pairs.push((w.to_string(), f.to_string()));
        }
        Ok(if dpdk {
            Self::Dpdk(pairs)
        } else {
            Self::AfPacket(pairs)
        })
    }
}

/// The agent's settings, flags and file merged.
pub struct Config {
    manager: String,
    ca: PathBuf,
    token: Option<String>,
    name: String,
    state: PathBuf,
    profile: String,
    ports: PortsSpec,
    status_every: Duration,
    services: HashMap<String, String>,
    mirrors: HashMap<String, String>,
    snmp: Option<palisade_snmp::SnmpConfig>,
    ipfix_export: Vec<std::net::SocketAddr>,
}

/// `NAME=IFACE` pairs from flags over those of the file (a flag replaces the file's entry
/// of the same name).
fn named(
    flags: &[String],
    file: HashMap<String, String>,
    what: &str,
) -> Result<HashMap<String, String>> {
    let mut out = file;
    for f in flags {
        let Some((name, iface)) = f.split_once('=') else {
            bail!("--{what} `{f}`: expected NAME=IFACE");
        };
        if name.is_empty() || iface.is_empty() {
            bail!("--{what} `{f}`: expected NAME=IFACE");
        }
        out.insert(name.to_string(), iface.to_string());
    }
    Ok(out)
}

fn resolve(args: &Args) -> Result<Config> {
    let (file, base) = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let file: FileConfig = serde_saphyr::from_str(&text).map_err(|e| {
                anyhow!(
                    "{}: {}",
                    path.display(),
                    e.render_with_formatter(&serde_saphyr::UserMessageFormatter)
                )
            })?;
            (file, path.parent().unwrap_or(Path::new(".")).to_path_buf())
        }
        None => (FileConfig::default(), PathBuf::from(".")),
    };
    let rel = |p: Option<PathBuf>| p.map(|p| base.join(p));
    let missing = |what: &str| anyhow!("missing --{what} (or `{what}:` in the configuration file)");
    let manager = args
        .manager
        .clone()
        .or(file.manager)
        .ok_or_else(|| missing("manager"))?;
    if !manager.starts_with("https://") {
        bail!(
            "--manager `{manager}`: must be https://HOST:PORT (device traffic never goes over plaintext)"
        );
    }
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(read_token(f)?),
        (None, None) => match (file.token, rel(file.token_file)) {
            (Some(t), _) => Some(t),
            (None, Some(f)) => Some(read_token(&f)?),
            (None, None) => None,
        },
    };
    let ports = match args.ports.clone().or(file.ports) {
        Some(s) => s.parse()?,
        None => PortsSpec::Memory,
    };
    let snmp = match (
        args.snmp_config.clone().or(rel(file.snmp_config)),
        args.snmp_listen.or(file.snmp_listen),
    ) {
        (Some(path), listen) => {
            let mut c = palisade_snmp::SnmpConfig::from_file(&path)
                .map_err(|e| anyhow!("--snmp-config {}: {e}", path.display()))?;
            if let Some(addr) = listen {
                c.set_listen(addr);
            }
            Some(c)
        }
        (None, Some(_)) => bail!(
            "--snmp-listen needs --snmp-config FILE: its communities or v3 users say who may read what"
        ),
        (None, None) => None,
    };
    let status_every = args.status_every.or(file.status_every).unwrap_or(10.0);
    if !(status_every > 0.0 && status_every < 86_400.0) {
        bail!("--status-every {status_every}: give seconds between 0 and 86400");
    }
    Ok(Config {
        manager,
        ca: args
            .ca
            .clone()
            .or(rel(file.ca))
            .ok_or_else(|| missing("ca"))?,
        token,
        name: args
            .name
            .clone()
            .or(file.name)
            .ok_or_else(|| missing("name"))?,
        state: args
            .state
            .clone()
            .or(rel(file.state))
            .ok_or_else(|| missing("state"))?,
        profile: args
            .profile
            .clone()
            .or(file.profile)
            .unwrap_or_else(|| "sim-large".into()),
        ports,
        status_every: Duration::from_secs_f64(status_every),
        services: named(&args.services, file.services, "service")?,
        mirrors: named(&args.mirrors, file.mirrors, "mirror")?,
        snmp,
        ipfix_export: if args.ipfix_export.is_empty() {
            file.ipfix_export
        } else {
            args.ipfix_export.clone()
        },
    })
}

fn read_token(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?
        .trim()
        .to_string())
}

/// The ports of `spec`, plus one AF_PACKET port per service and mirror interface.
fn open_ports(
    spec: &PortsSpec,
    services: &HashMap<String, String>,
    mirrors: &HashMap<String, String>,
) -> Result<Wiring> {
    let mut wiring = Wiring::default();
    match spec {
        PortsSpec::Memory => {
            // The far ends are where a test or demo would inject traffic; unused here.
            let (workload, _) = memory_pair("workload", "workload-peer", 4096);
            let (fabric, _) = memory_pair("fabric", "fabric-peer", 4096);
            wiring.ports = vec![Box::new(workload), Box::new(fabric)];
            wiring.links = vec![["workload".into(), "fabric".into()]];
        }
        PortsSpec::AfPacket(pairs) => {
            for (w, f) in pairs {
                wiring.ports.push(Box::new(AfPacketPort::open(w)?));
                wiring.ports.push(Box::new(AfPacketPort::open(f)?));
                wiring.links.push([w.clone(), f.clone()]);
            }
        }
        PortsSpec::Dpdk(pairs) => open_dpdk(pairs, &mut wiring)?,
    }
    let mut extra: Vec<&String> = services.values().chain(mirrors.values()).collect();
    extra.sort();
    extra.dedup();
    for iface in extra {
        if wiring.ports.iter().any(|p| p.name() == iface) {
            bail!("`{iface}` is a link port; a service or mirror needs a port of its own");
        }
        wiring.ports.push(Box::new(AfPacketPort::open(iface)?));
    }
    wiring.services = services.clone();
    wiring.mirrors = mirrors.clone();
    Ok(wiring)
}

/// DPDK `net_af_packet` ports, one vdev per interface; each port is named after its
/// interface (DPDK's instance name: the interface with anything but letters, digits and `_`
/// as `_`).
#[cfg(feature = "dpdk")]
fn open_dpdk(pairs: &[(String, String)], wiring: &mut Wiring) -> Result<()> {
    let instance = |iface: &str| -> String {
        iface
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    };
    let mut seen = std::collections::HashSet::new();
    for (w, f) in pairs {
        let names = [instance(w), instance(f)];
        for (iface, name) in [w, f].into_iter().zip(&names) {
            if !seen.insert(name.clone()) {
                bail!("ports: `{iface}` maps to the DPDK instance `{name}` another port has");
            }
            let port = crate::dpdk_port::DpdkPort::open(name, &format!("net_af_packet:{iface}"))?;
            wiring.ports.push(Box::new(port));
        }
        wiring.links.push(names);
    }
    Ok(())
}

#[cfg(not(feature = "dpdk"))]
fn open_dpdk(_: &[(String, String)], _: &mut Wiring) -> Result<()> {
    bail!("ports `dpdk:...`: this vrouter was built without DPDK (build with `--features dpdk`)")
}

async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs the command.
pub fn run(args: &Args) -> Result<ExitCode> {
    crate::logging();
    let config = resolve(args)?;
    let settings = Settings {
        manager: config.manager,
        ca: config.ca,
        token: config.token,
        name: config.name,
        state: config.state,
        profile: Arc::new(load_profile(&config.profile)?),
        status_every: config.status_every,
        ipfix_export: config.ipfix_export.clone(),
    };
    let wiring = open_ports(&config.ports, &config.services, &config.mirrors)?;
    let snmp = config.snmp;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async {
        let mut agent = palisade_agent::start(settings, wiring)?;
        if let Some(snmp) = snmp {
            agent.serve_snmp(snmp).await?;
        }
        let result = tokio::select! {
            r = agent.finished() => r,
            () = stopped() => {
                tracing::info!("stopping");
                Ok(())
            }
        };
        agent.stop();
        result
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    result.map(|()| ExitCode::SUCCESS)
}

fn load_profile(spec: &str) -> Result<Profile> {
    crate::run::load_profile(spec, Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_flags_override_the_file_by_name() {
        let file: HashMap<String, String> = [
            ("ids".to_string(), "a".to_string()),
            ("waf".into(), "b".into()),
        ]
        .into();
        let got = named(&["ids=veth-ids".into()], file, "service").unwrap();
        assert_eq!(got["ids"], "veth-ids");
        assert_eq!(got["waf"], "b");
        for bad in ["ids", "=x", "ids="] {
            let e = named(&[bad.into()], HashMap::new(), "service").unwrap_err();
            assert!(e.to_string().contains("NAME=IFACE"), "{e}");
        }
    }

    #[test]
    fn ports_spec_parses_and_explains() {
        assert_eq!("memory".parse::<PortsSpec>().unwrap(), PortsSpec::Memory);
        assert_eq!(
            "af_packet:a/b,c/d".parse::<PortsSpec>().unwrap(),
            PortsSpec::AfPacket(vec![("a".into(), "b".into()), ("c".into(), "d".into())])
        );
        assert_eq!(
            "dpdk:a/b".parse::<PortsSpec>().unwrap(),
            PortsSpec::Dpdk(vec![("a".into(), "b".into())])
        );
        for bad in [
            "",
            "af_packet:a",
            "af_packet:a/a",
            "dpdk:x",
            "af_packet:/b",
            "tap:a/b",
        ] {
            let e = bad.parse::<PortsSpec>().unwrap_err().to_string();
            assert!(e.contains("ports"), "{bad}: {e}");
        }
    }

    #[test]
    fn flags_win_over_the_file_and_paths_are_relative_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.yaml");
        std::fs::write(
            &file,
            "manager: https://m:1\nca: ca.pem\nname: from-file\nstate: st\ntoken: t1\n",
        )
        .unwrap();
        let args = Args {
            config: Some(file),
            name: Some("from-flag".into()),
            ..Args::default()
        };
        let c = resolve(&args).unwrap();
        assert_eq!(c.name, "from-flag");
        assert_eq!(c.ca, dir.path().join("ca.pem"));
        assert_eq!(c.state, dir.path().join("st"));
        assert_eq!(c.token.as_deref(), Some("t1"));
        assert_eq!(c.ports, PortsSpec::Memory);
        assert_eq!(c.profile, "sim-large");
    }

    #[test]
    fn plaintext_managers_and_unknown_keys_are_refused() {
        let args = Args {
            manager: Some("http://m:1".into()),
            ca: Some("ca".into()),
            name: Some("n".into()),
            state: Some("s".into()),
            ..Args::default()
        };
        let e = resolve(&args).err().unwrap().to_string();
        assert!(e.contains("plaintext"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.yaml");
        std::fs::write(&file, "manager: https://m:1\nmanagr: x\n").unwrap();
        let e = resolve(&Args {
            config: Some(file),
            ..Args::default()
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("managr"), "{e}");
    }
}
