//! The hardware-in-the-loop harness: a topology of network namespaces on one machine, a
//! fleet manager, one `vrouter agent` per host owning its workloads' links (AF_PACKET), the
//! scenario's intent committed through the CLI, and real traffic — TCP with `nc`, UDP with
//! `nc -u`, ICMP with `ping` — checked against the scenario's expectations.
//!
//! Topology, for a scenario whose inventory places workloads on devices:
//!
//! ```text
//!  netns pw<id>-<k>          root netns                      netns pf<id>
//!  [workload k: eth0] ==veth== h<id>w<k>b  (agent of k's device)  h<id>f<k>a ==veth== [br0]
//! ```
//!
//! Each workload is a namespace with one interface holding its inventory address; the
//! agent of its device joins the workload's veth to a fabric veth (a bump in the wire);
//! every fabric veth ends on one bridge in the fabric namespace, so all workloads share
//! one L2 segment and only the agents stand between them. Neighbour and bridge forwarding
//! entries are static and
//! IPv6 is off on every test interface, so the only frames on the wire are the test's: a
//! denied connection is checked to deliver no packet at all (the responder's TCP, UDP or
//! ICMP receive counters do not move). Everything the harness creates is removed when it ends; nothing
//! outside its namespaces gets an address.
//!
//! A scenario file (YAML; paths relative to it):
//!
//! ```yaml
//! name: three-tier
//! inventory: ../../../examples/three-tier/inventory.yaml
//! intent: [../../../examples/three-tier/policies, extra.pal]
//! expect:
//!   - {from: shop/web-prod, to: shop/app-prod, tcp: 8080, allow: true}
//!   - {from: shop/web-prod, to: shop/app-dev, icmp: true, allow: false}
//!   - {from: shop/web-dev, to: shop/app-dev, udp: 5353, allow: true}
//! ```
//!
//! The same scenarios can target real hardware: see `hil-tests/README.md`.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use palisade_inventory::Inventory;
use serde::Deserialize;

/// A scenario file.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// The inventory (devices, projects, workloads with addresses and devices).
    pub inventory: PathBuf,
    /// Policy files or directories (rule language, YAML, JSON).
    pub intent: Vec<PathBuf>,
    /// L7 services (names `redirect` rules use): each device gets a port per service, and
    /// the harness runs an inspection service on it that sends every frame back.
    #[serde(default)]
    pub services: Vec<String>,
    /// What must be allowed and denied.
    pub expect: Vec<Expect>,
    /// Where the file is (paths are relative to it).
    #[serde(skip)]
    pub dir: PathBuf,
}

/// One expectation: a connection from one workload to another.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Initiator, `project/workload`.
    pub from: String,
    /// Responder, `project/workload`.
    pub to: String,
    /// A TCP connection to this port.
    #[serde(default)]
    pub tcp: Option<u16>,
    /// A UDP datagram to this port.
    #[serde(default)]
    pub udp: Option<u16>,
    /// An ICMP echo.
    #[serde(default)]
    pub icmp: Option<bool>,
    /// Whether it must get through (with its reply).
    pub allow: bool,
    /// The L7 service it must pass through.
    #[serde(default)]
    pub via: Option<String>,
}

impl Expect {
    /// A TCP connection from `from` to `to`'s `port` that must (or must not) pass.
    pub fn tcp(from: &str, to: &str, port: u16, allow: bool) -> Expect {
        Expect {
            from: from.into(),
            to: to.into(),
            tcp: Some(port),
            udp: None,
            icmp: None,
            allow,
            via: None,
        }
    }

    /// `tcp/8080`, `udp/53` or `icmp`.
    pub fn service(&self) -> String {
        match (self.tcp, self.udp) {
            (Some(p), _) => format!("tcp/{p}"),
            (None, Some(p)) => format!("udp/{p}"),
            _ => "icmp".into(),
        }
    }
}

impl Scenario {
    /// Reads a scenario file.
    pub fn load(path: &Path) -> Result<Scenario> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut s: Scenario = serde_saphyr::from_str(&text).map_err(|e| {
            anyhow!(
                "{}: {}",
                path.display(),
                e.render_with_formatter(&serde_saphyr::UserMessageFormatter)
            )
        })?;
        for e in &s.expect {
            let kinds = usize::from(e.tcp.is_some())
                + usize::from(e.udp.is_some())
                + usize::from(e.icmp == Some(true));
            if kinds != 1 {
                bail!(
                    "{}: expectation {} -> {}: give exactly one of tcp: PORT, udp: PORT, icmp: true",
                    path.display(),
                    e.from,
                    e.to
                );
            }
        }
        s.dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok(s)
    }
}

/// Whether this process may build namespaces.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

/// Runs a command that must succeed.
fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn in_ns(ns: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    sh(&all)
}

/// The newest of the source files a binary was built from, as cargo's dep-info file beside
/// it (`<bin>.d`) lists them: exactly the binary's own sources, whatever else changes in
/// the workspace.
fn newest_source(dep_info: &Path) -> Result<SystemTime> {
    // Cargo writes `<bin>.d` when it builds the binary as such (`cargo build`); a binary
    // only built for a test run has none, and was just built.
    let Ok(text) = std::fs::read_to_string(dep_info) else {
        return Ok(SystemTime::UNIX_EPOCH);
    };
    let line = text.lines().next().unwrap_or_default();
    let deps = line.split_once(": ").map_or("", |(_, d)| d);
    let mut newest = SystemTime::UNIX_EPOCH;
    // Paths are separated by spaces; a space inside a path is escaped as `\ `.
    let mut path = String::new();
    let mut chars = deps.chars().peekable();
    loop {
        match chars.next() {
            Some('\\') if chars.peek() == Some(&' ') => {
                path.push(' ');
                chars.next();
            }
            Some(' ') | None => {
                if !path.is_empty()
                    && let Ok(m) = std::fs::metadata(&path).and_then(|m| m.modified())
                {
                    newest = newest.max(m);
                }
                path.clear();
                if chars.peek().is_none() {
                    return Ok(newest);
                }
            }
            Some(c) => path.push(c),
        }
    }
}

/// The `fleet-manager` and `vrouter` binaries of this build (`cargo test --workspace`
/// builds both), refused when older than their sources.
pub fn binaries() -> Result<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("no target directory above {}", exe.display()))?;
    let mut out = Vec::new();
    for name in ["fleet-manager", "vrouter"] {
        let bin = dir.join(name);
        let built = std::fs::metadata(&bin)
            .and_then(|m| m.modified())
            .map_err(|_| {
                anyhow!(
                    "{} is missing: build it with `cargo build -p {name}` (scripts/test.sh does)",
                    bin.display()
                )
            })?;
        let newest = newest_source(&dir.join(format!("{name}.d")))?;
        if built < newest {
            bail!(
                "{} is older than its sources: rebuild it with `cargo build -p {name}`",
                bin.display()
            );
        }
        out.push(bin);
    }
    Ok((out.remove(0), out.remove(0)))
}

/// How the agents own their links.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Driver {
    /// The vRouter's own AF_PACKET ports (`--ports af_packet:...`).
    #[default]
    AfPacket,
    /// DPDK's `net_af_packet` poll-mode driver (`--ports dpdk:...`; a vrouter built with
    /// `--features dpdk`).
    Dpdk,
}

/// A workload's place in the topology.
#[derive(Clone, Debug)]
pub struct Host {
    /// `project/workload`.
    pub name: String,
    /// Its namespace.
    pub ns: String,
    /// Its address.
    pub ip: IpAddr,
    /// The device that enforces its policy.
    pub device: String,
}

/// Namespaces and links, removed on drop.
pub struct Topology {
    /// Workloads by `project/workload`.
    pub hosts: BTreeMap<String, Host>,
    /// Per device, its `--ports` value.
    pub ports: BTreeMap<String, String>,
    /// Per device, its services: (name, the agent's interface, the service's interface).
    pub services: BTreeMap<String, Vec<(String, String, String)>>,
    /// How the agents own their links.
    pub driver: Driver,
    namespaces: Vec<String>,
    links: Vec<String>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for l in &self.links {
            let _ = Command::new("ip").args(["link", "del", l]).output();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Topology {
    /// Builds the namespaces, veths and bridge for `inventory`'s workloads; the agents' links
    /// go through `driver`.
    pub fn build(inventory: &Inventory, services: &[String], driver: Driver) -> Result<Topology> {
        let scheme = match driver {
            Driver::AfPacket => "af_packet",
            Driver::Dpdk => "dpdk",
        };
        // Unique per topology: several may be up at once in one test process.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10;
        let id = format!("{:03}{n}", std::process::id() % 1000);
        let mut t = Topology {
            hosts: BTreeMap::new(),
            ports: BTreeMap::new(),
            services: BTreeMap::new(),
            driver,
            namespaces: Vec::new(),
            links: Vec::new(),
        };
        let fabric = format!("pf{id}");
        sh(&["ip", "netns", "add", &fabric])?;
        t.namespaces.push(fabric.clone());
        // IPv6 off before any interface comes up: a bridge with a link-local address
        // solicits routers for seconds, and those frames would reach the workloads.
        for key in ["all", "default"] {
            in_ns(
                &fabric,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
                ],
            )?;
        }
        in_ns(&fabric, &["ip", "link", "add", "br0", "type", "bridge"])?;
        in_ns(&fabric, &["ip", "link", "set", "br0", "up"])?;
        let mut macs = BTreeMap::new();
        for (k, w) in inventory.workloads.iter().enumerate() {
            let [iface] = w.interfaces.as_slice() else {
                bail!(
                    "workload {}/{}: the harness gives each workload one interface",
                    w.project,
                    w.name
                );
            };
            let Some(&ip) = iface.addresses.first() else {
                bail!("workload {}/{} has no address", w.project, w.name);
            };
            let name = format!("{}/{}", w.project, w.name);
            let ns = format!("pw{id}-{k}");
            sh(&["ip", "netns", "add", &ns])?;
            for key in ["all", "default"] {
                in_ns(
                    &ns,
                    &[
                        "sysctl",
                        "-qw",
                        &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
                    ],
                )?;
            }
            t.namespaces.push(ns.clone());
            let (wa, wb) = (format!("h{id}w{k}a"), format!("h{id}w{k}b"));
            let (fa, fb) = (format!("h{id}f{k}a"), format!("h{id}f{k}b"));
            sh(&[
                "ip", "link", "add", &wa, "type", "veth", "peer", "name", &wb,
            ])?;
            t.links.push(wb.clone());
            sh(&[
                "ip", "link", "add", &fa, "type", "veth", "peer", "name", &fb,
            ])?;
            t.links.push(fa.clone());
            let mac = format!(
                "02:50:{:02x}:00:{:02x}:{:02x}",
                k / 256,
                (k / 16) % 16,
                k % 256
            );
            sh(&["ip", "link", "set", &wa, "netns", &ns])?;
            in_ns(&ns, &["ip", "link", "set", &wa, "name", "eth0"])?;
            // A veth made in the root namespace keeps its own IPv6 setting when moved: off
            // here too, or it solicits routers that reach the other workloads.
            in_ns(&ns, &["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"])?;
            in_ns(&ns, &["ip", "link", "set", "eth0", "address", &mac])?;
            if driver == Driver::Dpdk {
                // DPDK 22.11's net_af_packet forwards what a veth hands it as it is, and a
                // veth's TCP and UDP checksums are left to "the hardware" (CHECKSUM_PARTIAL):
                // the receiver would drop them. The agent's own AF_PACKET ports complete them
                // (PACKET_AUXDATA); here the workloads compute their own.
                in_ns(&ns, &["ethtool", "-K", "eth0", "tx", "off"])?;
            }
            in_ns(
                &ns,
                &["ip", "addr", "add", &format!("{ip}/8"), "dev", "eth0"],
            )?;
            in_ns(&ns, &["ip", "link", "set", "eth0", "up"])?;
            in_ns(&ns, &["ip", "link", "set", "lo", "up"])?;
            sh(&["ip", "link", "set", &fb, "netns", &fabric])?;
            in_ns(
                &fabric,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{fb}.disable_ipv6=1"),
                ],
            )?;
            in_ns(&fabric, &["ip", "link", "set", &fb, "master", "br0"])?;
            in_ns(&fabric, &["ip", "link", "set", &fb, "up"])?;
            // Static forwarding entries too: the bridge never floods a frame to every
            // device (a device with several links would see it once per link).
            in_ns(
                &fabric,
                &[
                    "bridge", "fdb", "replace", &mac, "dev", &fb, "master", "static",
                ],
            )?;
            for l in [&wb, &fa] {
                sh(&[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{l}.disable_ipv6=1"),
                ])?;
                sh(&["ip", "link", "set", l, "up"])?;
            }
            t.ports
                .entry(iface.device.clone())
                .and_modify(|p| p.push_str(&format!(",{wb}/{fa}")))
                .or_insert(format!("{scheme}:{wb}/{fa}"));
            macs.insert(ip, mac);
            t.hosts.insert(
                name.clone(),
                Host {
                    name,
                    ns,
                    ip,
                    device: iface.device.clone(),
                },
            );
        }
        let devices: Vec<String> = t.ports.keys().cloned().collect();
        for (d, device) in devices.iter().enumerate() {
            for (j, service) in services.iter().enumerate() {
                let (a, b) = (format!("h{id}s{d}x{j}a"), format!("h{id}s{d}x{j}b"));
                sh(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b])?;
                t.links.push(a.clone());
                for l in [&a, &b] {
                    sh(&[
                        "sysctl",
                        "-qw",
                        &format!("net.ipv6.conf.{l}.disable_ipv6=1"),
                    ])?;
                    sh(&["ip", "link", "set", l, "up"])?;
                }
                t.services
                    .entry(device.clone())
                    .or_default()
                    .push((service.clone(), a, b));
            }
        }
        // Static neighbours: no ARP, so every frame on the wire is the test's.
        for h in t.hosts.values() {
            for (ip, mac) in &macs {
                if *ip != h.ip {
                    in_ns(
                        &h.ns,
                        &[
                            "ip",
                            "neigh",
                            "replace",
                            &ip.to_string(),
                            "lladdr",
                            mac,
                            "dev",
                            "eth0",
                            "nud",
                            "permanent",
                        ],
                    )?;
                }
            }
        }
        Ok(t)
    }
}

/// A child process killed on drop, its standard error in a file.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// Its log.
    pub log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A scenario's running system.
pub struct Lab {
    /// The topology.
    pub topology: Topology,
    /// The inspection services.
    pub inspectors: Vec<Inspector>,
    /// The manager.
    pub manager: Proc,
    /// Agents by device.
    pub agents: BTreeMap<String, Proc>,
    fleet_manager: PathBuf,
    vrouter: PathBuf,
    work: PathBuf,
    port: u16,
    url: String,
    ca: PathBuf,
    token: PathBuf,
    /// SNMP: where the manager and each agent answer, and where their traps go.
    pub snmp: Snmp,
    manager_args: Vec<String>,
    agent_args: Vec<String>,
}

/// How a lab runs.
#[derive(Clone, Debug, Default)]
pub struct LabOptions {
    /// How the agents own their links.
    pub driver: Driver,
    /// Extra arguments of `fleet-manager serve` (a ClickHouse store, an IPFIX collector).
    pub manager_args: Vec<String>,
    /// Extra arguments of every `vrouter agent` (IPFIX export).
    pub agent_args: Vec<String>,
}

/// The lab's SNMP: one configuration for every agent and the manager (community
/// `palisade`, v3 user `admin` with SHA/AES), a port for each, one trap sink.
#[derive(Clone, Debug)]
pub struct Snmp {
    /// The configuration file.
    pub config: PathBuf,
    /// The manager's UDP port on 127.0.0.1.
    pub manager: u16,
    /// Each device agent's UDP port on 127.0.0.1.
    pub agents: BTreeMap<String, u16>,
    /// Where traps go (127.0.0.1; nothing listens unless a test starts `snmptrapd` there).
    pub traps: u16,
}

/// The v2c community of the lab's SNMP agents.
pub const SNMP_COMMUNITY: &str = "palisade";

/// A UDP port free on 127.0.0.1 right now.
pub fn free_udp_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Snmp {
    fn new<'a>(work: &Path, devices: impl Iterator<Item = &'a String>) -> Result<Snmp> {
        let traps = free_udp_port()?;
        let config = work.join("snmp.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:0\n\
                 views: {{all: {{include: [1.3.6.1]}}}}\n\
                 communities: [{{name: {SNMP_COMMUNITY}, view: all}}]\n\
                 users: [{{name: admin, auth: {{protocol: sha, passphrase: palisade-auth}}, \
                 privacy: {{protocol: aes128, passphrase: palisade-priv}}, view: all}}]\n\
                 trap_sinks: [{{address: \"127.0.0.1:{traps}\", community: {SNMP_COMMUNITY}}}]\n"
            ),
        )?;
        let mut agents = BTreeMap::new();
        for d in devices {
            agents.insert(d.clone(), free_udp_port()?);
        }
        Ok(Snmp {
            config,
            manager: free_udp_port()?,
            agents,
            traps,
        })
    }
}

/// Whether `tool` is on the `PATH`.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One notification a [`TrapSink`] received.
#[derive(Clone, Debug)]
pub struct Trap {
    /// The notification's OID (the value of `snmpTrapOID.0`), numeric with a leading dot.
    pub oid: String,
    /// Every varbind: numeric OID with a leading dot -> value, without its type (a
    /// string's quotes and escapes removed).
    pub vars: BTreeMap<String, String>,
}

/// net-snmp's `snmptrapd` receiving the lab's traps (community [`SNMP_COMMUNITY`]) on
/// 127.0.0.1, one line of its log per notification; killed on drop.
pub struct TrapSink {
    child: Child,
    log: PathBuf,
}

impl TrapSink {
    /// Starts `snmptrapd` on 127.0.0.1:`port` with its files under `work`, and waits until
    /// it listens.
    pub fn start(port: u16, work: &Path) -> Result<TrapSink> {
        let env = work.join("snmptrapd");
        std::fs::create_dir_all(&env)?;
        let conf = env.join("snmptrapd.conf");
        std::fs::write(&conf, format!("authCommunity log {SNMP_COMMUNITY}\n"))?;
        let log = env.join("traps.log");
        let child = Command::new("snmptrapd")
            // No MIBs, numeric OIDs, foreground, one line per trap: its varbinds, tab-separated.
            .args(["-m", "", "-On", "-f", "-F", "%V\t%v\n", "-Lf"])
            .arg(&log)
            .args(["-C", "-n", "-c"])
            .arg(&conf)
            .arg(format!("udp:127.0.0.1:{port}"))
            .env("SNMPCONFPATH", &env)
            .env("SNMP_PERSISTENT_DIR", &env)
            .env("HOME", &env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting snmptrapd")?;
        let sink = TrapSink { child, log };
        // It logs its version once its socket is bound.
        if !wait_until(Duration::from_secs(10), || {
            sink.text().contains("NET-SNMP version")
        }) {
            bail!("snmptrapd did not start on port {port}:\n{}", sink.text());
        }
        Ok(sink)
    }

    /// Its log as it is now.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The notifications received so far, in order.
    pub fn traps(&self) -> Vec<Trap> {
        self.text()
            .lines()
            .filter_map(|line| {
                let vars: BTreeMap<String, String> =
                    line.split('\t').filter_map(trap_varbind).collect();
                let oid = vars.get(".1.3.6.1.6.3.1.1.4.1.0")?.clone();
                Some(Trap { oid, vars })
            })
            .collect()
    }
}

impl Drop for TrapSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One varbind as `snmptrapd -On` prints it, `OID = TYPE: VALUE`: the OID and the value
/// (a string without its quotes and escapes).
fn trap_varbind(text: &str) -> Option<(String, String)> {
    let (oid, value) = text.split_once(" = ")?;
    let value = value.split_once(": ").map_or(value, |(_, v)| v);
    let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(s) => s.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => value.to_string(),
    };
    Some((oid.to_string(), value))
}

/// Starts `fleet-manager serve` on `work/data`; its start-up report.
fn spawn_manager(
    bin: &Path,
    work: &Path,
    port: u16,
    snmp: &Snmp,
    extra: &[String],
) -> Result<(Proc, serde_json::Value)> {
    let log = work.join(format!(
        "manager-{}.log",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    ));
    let mut child = Command::new(bin)
        .args(["serve", "--data"])
        .arg(work.join("data"))
        .args(["--grpc-listen", &format!("127.0.0.1:{port}"), "--no-http"])
        .args(["--output", "json"])
        .arg("--snmp-config")
        .arg(&snmp.config)
        .args(["--snmp-listen", &format!("127.0.0.1:{}", snmp.manager)])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let manager = Proc { child, log };
    let report: serde_json::Value = serde_json::from_str(&line)
        .map_err(|_| anyhow!("the manager did not start:\n{}", manager.log()))?;
    Ok((manager, report))
}

impl Lab {
    /// Builds the topology, starts the manager and one agent per device, applies the
    /// scenario's intent and inventory and waits until the commit is enforced.
    pub fn start(scenario: &Scenario, work: &Path) -> Result<Lab> {
        Self::start_with(scenario, work, Driver::AfPacket)
    }

    /// [`Lab::start`] with the agents' links on `driver`.
    pub fn start_with(scenario: &Scenario, work: &Path, driver: Driver) -> Result<Lab> {
        Self::start_full(
            scenario,
            work,
            &LabOptions {
                driver,
                ..LabOptions::default()
            },
        )
    }

    /// [`Lab::start`] as `options` say.
    pub fn start_full(scenario: &Scenario, work: &Path, options: &LabOptions) -> Result<Lab> {
        let (driver, manager_args) = (options.driver, &options.manager_args);
        let (fleet_manager, vrouter) = binaries()?;
        let inventory_path = scenario.dir.join(&scenario.inventory);
        let text = std::fs::read_to_string(&inventory_path)
            .with_context(|| format!("reading {}", inventory_path.display()))?;
        let inventory: Inventory = serde_saphyr::from_str(&text)
            .map_err(|e| anyhow!("{}: {e}", inventory_path.display()))?;
        let topology = Topology::build(&inventory, &scenario.services, driver)?;
        let mut inspectors = Vec::new();
        for list in topology.services.values() {
            for (name, _, service_end) in list {
                inspectors.push(Inspector::start(name, service_end)?);
            }
        }
        let snmp = Snmp::new(work, topology.ports.keys())?;
        let (manager, report) = spawn_manager(&fleet_manager, work, 0, &snmp, manager_args)?;
        let field = |k: &str| report[k].as_str().unwrap_or_default().to_string();
        let url = field("grpc");
        let port = url.rsplit(':').next().unwrap_or("0").parse().unwrap_or(0);
        let mut lab = Lab {
            topology,
            inspectors,
            manager,
            agents: BTreeMap::new(),
            fleet_manager,
            vrouter,
            work: work.to_path_buf(),
            port,
            url,
            ca: PathBuf::from(field("ca")),
            token: PathBuf::from(field("admin_token_file")),
            snmp,
            manager_args: manager_args.to_vec(),
            agent_args: options.agent_args.clone(),
        };
        let devices: Vec<(String, String)> = lab
            .topology
            .ports
            .iter()
            .map(|(d, p)| (d.clone(), p.clone()))
            .collect();
        for (device, _) in devices {
            let token = lab.cli(&["token", "create", "--device", &device])?;
            lab.start_agent(&device, Some(token.trim()))?;
        }
        let mut apply = vec!["apply".to_string()];
        for p in &scenario.intent {
            apply.push("-f".into());
            apply.push(scenario.dir.join(p).display().to_string());
        }
        apply.push("-f".into());
        apply.push(inventory_path.display().to_string());
        let apply: Vec<&str> = apply.iter().map(String::as_str).collect();
        lab.cli(&apply)?;
        lab.wait_in_sync(Duration::from_secs(60))?;
        Ok(lab)
    }

    /// Starts (or restarts) the agent of `device`; without a token it must have enrolled.
    pub fn start_agent(&mut self, device: &str, token: Option<&str>) -> Result<()> {
        let ports = self
            .topology
            .ports
            .get(device)
            .ok_or_else(|| anyhow!("no device `{device}`"))?
            .clone();
        if let Some(mut old) = self.agents.remove(device) {
            let _ = old.child.kill();
            let _ = old.child.wait();
        }
        // DPDK 22.11's net_af_packet joins each socket to a PACKET_FANOUT group numbered
        // (pid ^ ifindex) & 0xffff; two agents in one network namespace (two simulated DPUs
        // on one machine) can draw the same number for different interfaces, and the second
        // gets EINVAL. A new process has a new pid: start it again (it enrolls only once its
        // ports are up, so the token is still good).
        for attempt in 1..=5 {
            let agent = self.spawn_agent(device, &ports, token)?;
            let ok = self.topology.driver != Driver::Dpdk
                || wait_until(Duration::from_secs(20), || {
                    agent.log().contains("vrouter agent started") || agent.log().contains("error:")
                }) && !agent.log().contains("could not set PACKET_FANOUT");
            self.agents.insert(device.to_string(), agent);
            if ok {
                break;
            }
            eprintln!(
                "agent {device}: DPDK fanout group collision (attempt {attempt}), starting it again"
            );
        }
        Ok(())
    }

    fn spawn_agent(&self, device: &str, ports: &str, token: Option<&str>) -> Result<Proc> {
        let log = self.work.join(format!(
            "agent-{device}-{}.log",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let mut cmd = Command::new(&self.vrouter);
        cmd.args(["agent", "--manager", &self.url, "--ca"])
            .arg(&self.ca)
            .args(["--name", device, "--state"])
            .arg(self.work.join(format!("state-{device}")))
            .args(["--ports", ports, "--status-every", "1"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        cmd.args(&self.agent_args);
        if let Some(port) = self.snmp.agents.get(device) {
            cmd.arg("--snmp-config")
                .arg(&self.snmp.config)
                .args(["--snmp-listen", &format!("127.0.0.1:{port}")]);
        }
        for (name, agent_end, _) in self.topology.services.get(device).into_iter().flatten() {
            cmd.args(["--service", &format!("{name}={agent_end}")]);
        }
        Ok(Proc {
            child: cmd.spawn()?,
            log,
        })
    }

    /// Kills the agent of `device` (SIGKILL).
    pub fn kill_agent(&mut self, device: &str) {
        if let Some(mut a) = self.agents.remove(device) {
            let _ = a.child.kill();
            let _ = a.child.wait();
        }
    }

    /// Kills the manager (SIGKILL).
    pub fn kill_manager(&mut self) {
        let _ = self.manager.child.kill();
        let _ = self.manager.child.wait();
    }

    /// Starts the manager again on its port and data.
    pub fn restart_manager(&mut self) -> Result<()> {
        self.kill_manager();
        let (manager, _) = spawn_manager(
            &self.fleet_manager,
            &self.work,
            self.port,
            &self.snmp,
            &self.manager_args,
        )?;
        self.manager = manager;
        Ok(())
    }

    /// Applies files with `fleet-manager apply` and waits until the commit is enforced.
    pub fn apply(&self, files: &[&Path]) -> Result<()> {
        let mut args = vec!["apply".to_string()];
        for f in files {
            args.push("-f".into());
            args.push(f.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cli(&args)?;
        self.wait_in_sync(Duration::from_secs(60))
    }

    /// Waits until every device acknowledged the program the manager wants it to run
    /// (an inventory file makes one commit per object, so "the latest commit" is not
    /// enough).
    pub fn wait_in_sync(&self, timeout: Duration) -> Result<()> {
        let in_sync = || -> bool {
            let Ok(out) = self.cli(&["devices", "--output", "json"]) else {
                return false;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&out) else {
                return false;
            };
            let devices = v["devices"].as_array().cloned().unwrap_or_default();
            !devices.is_empty()
                && devices.iter().all(|d| {
                    d["connected"] == true
                        && d["desiredHash"].is_string()
                        && d["desiredHash"] == d["ackedHash"]
                })
        };
        if wait_until(timeout, in_sync) {
            Ok(())
        } else {
            bail!(
                "the devices did not get in sync within {timeout:?}\n{}",
                self.logs()
            )
        }
    }

    /// Runs a client command; its exit status and standard output (for commands whose
    /// exit code answers, like `explain` or `flows what-if`).
    pub fn cli_status(&self, args: &[&str]) -> Result<(std::process::ExitStatus, String)> {
        let out = self.cli_output(args)?;
        Ok((
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }

    fn cli_output(&self, args: &[&str]) -> Result<std::process::Output> {
        Ok(Command::new(&self.fleet_manager)
            .args(args)
            .args(["--server", &self.url, "--ca"])
            .arg(&self.ca)
            .arg("--token-file")
            .arg(&self.token)
            .output()?)
    }

    /// Runs a client command that must succeed; its standard output.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = self.cli_output(args)?;
        if !out.status.success() {
            bail!(
                "fleet-manager {args:?}: {}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every process's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = format!("--- manager\n{}", self.manager.log());
        for (d, a) in &self.agents {
            out.push_str(&format!("--- agent {d}\n{}", a.log()));
        }
        out
    }

    fn host(&self, name: &str) -> Result<&Host> {
        self.topology
            .hosts
            .get(name)
            .ok_or_else(|| anyhow!("no workload `{name}` in the inventory"))
    }

    /// Runs one expectation's traffic: whether it got through (with its reply) and how
    /// many packets the responder received meanwhile.
    pub fn check(&self, e: &Expect) -> Result<(bool, u64)> {
        let seen_before = self.inspected(e.via.as_deref());
        let (passed, packets) = self.traffic(e)?;
        if e.via.is_some() && passed && self.inspected(e.via.as_deref()) == seen_before {
            // It got through without the service it must pass.
            return Ok((false, packets));
        }
        Ok((passed, packets))
    }

    /// Frames the inspection services named `via` have seen.
    fn inspected(&self, via: Option<&str>) -> u64 {
        self.inspectors
            .iter()
            .filter(|i| Some(i.name.as_str()) == via)
            .map(Inspector::frames)
            .sum()
    }

    fn traffic(&self, e: &Expect) -> Result<(bool, u64)> {
        let (from, to) = (self.host(&e.from)?, self.host(&e.to)?);
        let dst = to.ip.to_string();
        if let Some(port) = e.tcp {
            let port = port.to_string();
            let _listener = spawn_in(&to.ns, &["nc", "-l", "-k", &port])?;
            std::thread::sleep(Duration::from_millis(200));
            let before = received(&to.ns, "Tcp", &["InSegs"])?;
            let ok = status_in(&from.ns, &["nc", "-z", "-w", "1", &dst, &port])?;
            return Ok((ok, received(&to.ns, "Tcp", &["InSegs"])? - before));
        }
        if let Some(port) = e.udp {
            let counters = ["InDatagrams", "NoPorts", "InErrors"];
            let port = port.to_string();
            let mut listener = spawn_in(&to.ns, &["nc", "-u", "-l", &port])?;
            std::thread::sleep(Duration::from_millis(200));
            let before = received(&to.ns, "Udp", &counters)?;
            let mut client = Command::new("ip")
                .args([
                    "netns", "exec", &from.ns, "nc", "-u", "-w", "1", &dst, &port,
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            {
                use std::io::Write as _;
                let mut stdin = client.stdin.take().expect("piped");
                stdin.write_all(b"palisade\n")?;
            }
            let _ = client.wait();
            std::thread::sleep(Duration::from_millis(200));
            let _ = listener.child.kill();
            let out = listener.child.wait_with_output_lossy();
            let got = out.contains("palisade");
            return Ok((got, received(&to.ns, "Udp", &counters)? - before));
        }
        let before = received(&to.ns, "Icmp", &["InMsgs"])?;
        let passed = status_in(&from.ns, &["ping", "-c", "1", "-W", "1", &dst])?;
        Ok((passed, received(&to.ns, "Icmp", &["InMsgs"])? - before))
    }
}

/// A listener in a namespace, killed on drop, its output captured.
pub struct Listener {
    child: Child,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

trait Lossy {
    fn wait_with_output_lossy(&mut self) -> String;
}

impl Lossy for Child {
    fn wait_with_output_lossy(&mut self) -> String {
        use std::io::Read as _;
        let _ = self.wait();
        let mut s = String::new();
        if let Some(out) = self.stdout.as_mut() {
            let _ = out.read_to_string(&mut s);
        }
        s
    }
}

fn spawn_in(ns: &str, args: &[&str]) -> Result<Listener> {
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {args:?} in {ns}"))?;
    Ok(Listener { child })
}

fn status_in(ns: &str, args: &[&str]) -> Result<bool> {
    Ok(Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {args:?} in {ns}"))?
        .success())
}

/// What a namespace's IPv4 stack received of one protocol (`Tcp`, `Udp`, `Icmp`): the sum
/// of the named counters of `/proc/net/snmp`. Only the test's own protocol counts, so
/// nothing else on the wire can be mistaken for a leak.
pub fn received(ns: &str, protocol: &str, counters: &[&str]) -> Result<u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/snmp"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("{protocol}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        bail!("no {protocol} counters in {ns}'s /proc/net/snmp");
    };
    let mut total = 0;
    for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
        if counters.contains(&name) {
            total += value
                .parse::<u64>()
                .with_context(|| format!("{protocol} {name} in {ns}"))?;
        }
    }
    Ok(total)
}

/// Waits until `f` holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// An inspection service: sends back every frame it gets on its interface, counting them
/// (a stand-in for an L7 firewall that passes what it inspects).
pub struct Inspector {
    /// The service name.
    pub name: String,
    frames: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Inspector {
    fn start(name: &str, iface: &str) -> Result<Inspector> {
        use palisade_ports::Port as _;
        use std::sync::atomic::Ordering;
        let mut port = palisade_ports::AfPacketPort::open(iface)?;
        let frames = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (frames, stop) = (std::sync::Arc::clone(&frames), std::sync::Arc::clone(&stop));
            std::thread::spawn(move || {
                let (mut rx, mut spare) = (Vec::new(), Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    rx.clear();
                    match port.recv(32, &mut rx, &mut spare) {
                        Ok(0) | Err(_) => std::thread::sleep(Duration::from_micros(200)),
                        Ok(n) => {
                            frames.fetch_add(n as u64, Ordering::Relaxed);
                            let _ = port.send(&mut rx, &mut spare);
                        }
                    }
                }
            })
        };
        Ok(Inspector {
            name: name.to_string(),
            frames,
            stop,
            thread: Some(thread),
        })
    }

    /// Frames seen so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Inspector {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Bytes from proto3 JSON's base64.
pub fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => panic!("not base64: {text}"),
        }
    };
    let digits: Vec<u32> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let mut acc = 0u32;
        for (i, d) in chunk.iter().enumerate() {
            acc |= d << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}
