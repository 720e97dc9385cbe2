//! `fleet-manager demo`: the whole system in one process, no root, no packages.
//!
//! A fleet manager on its embedded store, two simulated DPUs (`vrouter` agents with
//! in-memory ports) enrolled with one-time tokens over mutual TLS, the three-tier sample
//! intent applied through the API, and test traffic: TCP connections between the sample's
//! workloads (and from outside) sent through the agents' ports. A connection counts as
//! allowed when its SYN reaches the far side and the SYN-ACK comes back; every verdict is
//! compared with the manager's `explain`. The manager keeps serving until Ctrl-C so the CLI
//! and the REST API can be pointed at it; then everything is stopped and, unless `--data`
//! was given, the data directory is removed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use palisade_api::pb::orchestrator::v1 as pb;
use palisade_ports::{MemoryPort, Port, memory_pair};
use palisade_server::fleet::FleetConfig;
use palisade_server::serve::{SERVER_CERT_VALIDITY, ServeConfig, start};
use palisade_wire::{PacketBuilder, parse_frame, tcp};
use serde::Serialize;

use crate::Output;
use crate::client::{Client, Connection, connect, refused};

const TAGS: &str = include_str!("../../../examples/three-tier/policies/tags.pal");
const ADMIN: &str = include_str!("../../../examples/three-tier/policies/admin.pal");
const SHOP: &str = include_str!("../../../examples/three-tier/policies/shop.pal");
const INVENTORY: &str = include_str!("../../../examples/three-tier/inventory.yaml");

/// Arguments of `fleet-manager demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Keep the manager's data here (default: a temporary directory removed at exit).
    #[arg(long)]
    data: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long, default_value = "127.0.0.1:7443")]
    grpc_listen: SocketAddr,
    /// REST listen address.
    #[arg(long, default_value = "127.0.0.1:7480")]
    http_listen: SocketAddr,
    /// Stop after this many seconds (default: at Ctrl-C).
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds between rounds of test traffic.
    #[arg(long, default_value_t = 5.0)]
    every: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

/// One test connection.
struct Probe {
    from: &'static str,
    src: Ipv4Addr,
    to: &'static str,
    dst: Ipv4Addr,
    port: u16,
}

const fn probe(
    from: &'static str,
    src: [u8; 4],
    to: &'static str,
    dst: [u8; 4],
    port: u16,
) -> Probe {
    Probe {
        from,
        src: Ipv4Addr::new(src[0], src[1], src[2], src[3]),
        to,
        dst: Ipv4Addr::new(dst[0], dst[1], dst[2], dst[3]),
        port,
    }
}

const PROBES: [Probe; 8] = [
    probe(
        "shop/web-prod",
        [10, 1, 0, 10],
        "shop/app-prod",
        [10, 1, 1, 10],
        8080,
    ),
    probe(
        "shop/web-prod",
        [10, 1, 0, 10],
        "shop/app-dev",
        [10, 1, 1, 11],
        8080,
    ),
    probe(
        "shop/web-dev",
        [10, 1, 0, 11],
        "shop/app-dev",
        [10, 1, 1, 11],
        8080,
    ),
    probe(
        "shop/app-prod",
        [10, 1, 1, 10],
        "shop/db-prod",
        [10, 1, 2, 10],
        5432,
    ),
    probe(
        "shop/web-prod",
        [10, 1, 0, 10],
        "shop/db-prod",
        [10, 1, 2, 10],
        5432,
    ),
    probe(
        "internet",
        [203, 0, 113, 5],
        "shop/web-prod",
        [10, 1, 0, 10],
        443,
    ),
    probe(
        "quarantine",
        [192, 0, 2, 7],
        "shop/web-dev",
        [10, 1, 0, 11],
        443,
    ),
    probe(
        "shop/web-prod",
        [10, 1, 0, 10],
        "shop/app-prod",
        [10, 1, 1, 10],
        22,
    ),
];

/// What a probe found.
#[derive(Serialize, Clone)]
struct Outcome {
    from: String,
    to: String,
    port: u16,
    /// The SYN reached the responder and the SYN-ACK came back.
    allowed: bool,
    /// What `explain` says from intent.
    expected: bool,
    /// The first line of the explanation.
    why: String,
}

/// The far ends of the agents' ports, and which device holds which address: a tiny
/// fabric that carries frames between the simulated DPUs.
struct Fabric {
    workload: HashMap<String, MemoryPort>,
    uplink: HashMap<String, MemoryPort>,
    home: HashMap<IpAddr, String>,
}

/// A frame's (src, dst, sport, dport, flags).
type Seen = (IpAddr, IpAddr, u16, u16, u16);

fn frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: tcp::Flags) -> Vec<u8> {
    let mut buf = vec![0u8; 128];
    let n = PacketBuilder::ipv4(src, dst)
        .tcp(tcp::Repr {
            src_port: sport,
            dst_port: dport,
            flags,
            seq_number: 1,
            ack_number: u32::from(flags.0 & tcp::Flags::ACK.0 != 0),
            window_len: 64240,
            ..Default::default()
        })
        .emit(&mut buf)
        .expect("a TCP segment fits in 128 bytes");
    buf.truncate(n);
    buf
}

fn key(f: &[u8]) -> Option<Seen> {
    let p = parse_frame(f).ok()?;
    let ip = p.ip?;
    let (sport, dport) = ip.ports()?;
    let flags = match ip.l4 {
        Some(palisade_wire::L4::Tcp { flags, .. }) => flags.0,
        _ => 0,
    };
    Some((ip.src, ip.dst, sport, dport, flags))
}

impl Fabric {
    /// Sends a frame from `src`: out of its workload port if a device holds it, else into
    /// the fabric side of the device that holds `dst`.
    fn inject(&mut self, src: IpAddr, dst: IpAddr, frame: Vec<u8>) {
        let mut spare = Vec::new();
        let port = match (self.home.get(&src), self.home.get(&dst)) {
            (Some(d), _) => self.workload.get_mut(d),
            (None, Some(d)) => self.uplink.get_mut(d),
            (None, None) => None,
        };
        if let Some(p) = port {
            let _ = p.send(&mut vec![frame], &mut spare);
        }
    }

    /// Moves frames for `wait`: what leaves a device's fabric side goes to the fabric side
    /// of the device holding its destination (or to the outside world); what leaves a
    /// workload side has arrived. Returns what arrived.
    fn run(&mut self, wait: Duration) -> Vec<Seen> {
        let deadline = Instant::now() + wait;
        let mut arrived = Vec::new();
        let (mut rx, mut spare) = (Vec::new(), Vec::new());
        while Instant::now() < deadline {
            let mut forward: Vec<(String, Vec<u8>)> = Vec::new();
            for (device, port) in &mut self.uplink {
                rx.clear();
                let _ = port.recv(64, &mut rx, &mut spare);
                for f in rx.drain(..) {
                    let Some(k) = key(&f) else { continue };
                    match self.home.get(&k.1) {
                        Some(target) if target != device => forward.push((target.clone(), f)),
                        _ => arrived.push(k),
                    }
                }
            }
            for (target, f) in forward {
                if let Some(p) = self.uplink.get_mut(&target) {
                    let _ = p.send(&mut vec![f], &mut spare);
                }
            }
            for port in self.workload.values_mut() {
                rx.clear();
                let _ = port.recv(64, &mut rx, &mut spare);
                arrived.extend(rx.drain(..).filter_map(|f| key(&f)));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        arrived
    }

    /// One round of probes; source ports are fresh so each is a new connection.
    fn probe_all(&mut self, round: u16) -> Vec<bool> {
        let sport = |i: usize| 20000 + (round % 2000) * 16 + i as u16;
        for (i, p) in PROBES.iter().enumerate() {
            self.inject(
                p.src.into(),
                p.dst.into(),
                frame(p.src, p.dst, sport(i), p.port, tcp::Flags::SYN),
            );
        }
        let syns = self.run(Duration::from_millis(150));
        let reached: Vec<bool> = PROBES
            .iter()
            .enumerate()
            .map(|(i, p)| {
                syns.iter().any(|k| {
                    k.0 == IpAddr::from(p.src)
                        && k.1 == IpAddr::from(p.dst)
                        && k.2 == sport(i)
                        && k.3 == p.port
                })
            })
            .collect();
        for (i, p) in PROBES.iter().enumerate() {
            if reached[i] {
                let synack = tcp::Flags(tcp::Flags::SYN.0 | tcp::Flags::ACK.0);
                self.inject(
                    p.dst.into(),
                    p.src.into(),
                    frame(p.dst, p.src, p.port, sport(i), synack),
                );
            }
        }
        let replies = self.run(Duration::from_millis(150));
        PROBES
            .iter()
            .enumerate()
            .map(|(i, p)| {
                reached[i]
                    && replies.iter().any(|k| {
                        k.0 == IpAddr::from(p.dst)
                            && k.1 == IpAddr::from(p.src)
                            && k.2 == p.port
                            && k.3 == sport(i)
                    })
            })
            .collect()
    }
}

async fn explain(client: &mut Client, p: &Probe) -> Result<(bool, String)> {
    let r = client
        .explain(pb::ExplainRequest {
            from: p.src.to_string(),
            to: p.dst.to_string(),
            protocol: "tcp".into(),
            port: p.port.into(),
            src_port: 49152,
        })
        .await
        .map_err(refused)?
        .into_inner();
    // The side that decides: the first one denying, else the initiator's egress.
    let sides: Vec<&str> = r
        .text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("egress") || l.starts_with("ingress"))
        .collect();
    let why = sides
        .iter()
        .find(|l| !r.allowed && l.contains(": deny"))
        .or(sides.first())
        .copied()
        .unwrap_or_else(|| r.text.lines().next().unwrap_or_default())
        .to_string();
    Ok((r.allowed, why))
}

async fn wait_enforced(client: &mut Client, timeout: Duration) -> Result<pb::CommitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        let latest = client
            .list_commits(pb::ListCommitsRequest { limit: 1 })
            .await
            .map_err(refused)?
            .into_inner()
            .commits
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no commit"))?;
        if latest.state == pb::CommitState::Enforced as i32 {
            return Ok(latest);
        }
        if latest.state == pb::CommitState::Failed as i32 {
            bail!("commit {} failed: {:?}", latest.generation, latest.targets);
        }
        if Instant::now() >= deadline {
            bail!(
                "commit {} not enforced within {timeout:?}",
                latest.generation
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the demo.
pub fn run(args: &Args) -> Result<ExitCode> {
    crate::logging_quiet();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (data, temporary) = match &args.data {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("palisade-demo-{}", std::process::id())),
            true,
        ),
    };
    let result = runtime.block_on(demo(args, &data));
    if temporary {
        let _ = std::fs::remove_dir_all(&data);
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn demo(args: &Args, data: &std::path::Path) -> Result<ExitCode> {
    let running = start(ServeConfig {
        snmp: None,
        telemetry: Default::default(),
        data: data.to_path_buf(),
        grpc_listen: args.grpc_listen,
        http_listen: Some(args.http_listen),
        hosts: Vec::new(),
        server_cert_validity: SERVER_CERT_VALIDITY,
        fleet: FleetConfig::default(),
    })
    .await?;
    let url = format!("https://{}", running.grpc_addr);
    let rest = running.http_addr.map(|a| format!("https://{a}"));
    let connection = Connection {
        server: url.clone(),
        ca: Some(running.ca_file.clone()),
        token_file: Some(running.admin_token_file.clone()),
        token: None,
    };
    let mut client = connect(&connection).await?;

    // Two simulated DPUs, enrolled like real ones.
    let mut fabric = Fabric {
        workload: HashMap::new(),
        uplink: HashMap::new(),
        home: HashMap::new(),
    };
    let profile = Arc::new(palisade_hw_profiles::builtin("sim-large").map_err(|e| anyhow!("{e}"))?);
    let mut agents = Vec::new();
    for name in ["dpu-1", "dpu-2"] {
        let token = client
            .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
                device: name.into(),
                valid_seconds: 600,
            })
            .await
            .map_err(refused)?
            .into_inner()
            .token;
        let (w, w_far) = memory_pair("workload", "workload-far", 4096);
        let (f, f_far) = memory_pair("fabric", "fabric-far", 4096);
        fabric.workload.insert(name.into(), w_far);
        fabric.uplink.insert(name.into(), f_far);
        agents.push(palisade_agent::start(
            palisade_agent::Settings {
                manager: url.clone(),
                ca: running.ca_file.clone(),
                token: Some(token),
                name: name.into(),
                state: data.join("devices").join(name),
                profile: Arc::clone(&profile),
                status_every: Duration::from_secs(2),
                ipfix_export: Vec::new(),
            },
            palisade_agent::Wiring {
                ports: vec![Box::new(w) as Box<dyn Port>, Box::new(f)],
                links: vec![["workload".into(), "fabric".into()]],
                ..Default::default()
            },
        )?);
    }

    // The sample intent and inventory, through the API.
    let documents = [("tags.pal", TAGS), ("admin.pal", ADMIN), ("shop.pal", SHOP)]
        .iter()
        .map(|(name, content)| pb::Document {
            name: (*name).into(),
            content: (*content).into(),
            format: String::new(),
        })
        .collect();
    client
        .apply(pb::ApplyRequest {
            documents,
            dry_run: false,
        })
        .await
        .map_err(refused)?;
    let inventory: palisade_inventory::Inventory =
        serde_saphyr::from_str(INVENTORY).map_err(|e| anyhow!("the sample inventory: {e}"))?;
    for w in &inventory.workloads {
        for i in &w.interfaces {
            for a in &i.addresses {
                fabric.home.insert(*a, i.device.clone());
            }
        }
    }
    client
        .apply_inventory(palisade_server::convert::inventory_to_pb(&inventory))
        .await
        .map_err(refused)?;
    let commit = wait_enforced(&mut client, Duration::from_secs(30)).await?;

    let mut expected = Vec::new();
    for p in &PROBES {
        expected.push(explain(&mut client, p).await?);
    }
    let exports = format!(
        "export PALISADE_SERVER={url} PALISADE_CA={} PALISADE_TOKEN_FILE={}",
        running.ca_file.display(),
        running.admin_token_file.display()
    );
    match args.output {
        Output::Json => out!(
            "{}",
            serde_json::json!({
                "grpc": url, "rest": rest, "ca": running.ca_file,
                "admin_token_file": running.admin_token_file,
                "commit": commit.generation,
                "devices": commit.targets.iter().map(|t| serde_json::json!({
                    "device": t.device, "generation": t.generation,
                    "hash": crate::client::hash_text(&t.hash)})).collect::<Vec<_>>(),
            })
        ),
        Output::Text => {
            out!("Palisade demo: a fleet manager and two simulated DPUs with in-memory ports");
            out!("  fleet manager  {url}  (data in {})", data.display());
            if let Some(r) = &rest {
                out!("  REST           {r}/v1/...  (OpenAPI: {r}/openapi.json)");
            }
            out!(
                "  intent         examples/three-tier: tags, an admin quarantine and PCI tier, a shop deployed as prod and dev"
            );
            out!(
                "  enforced       commit {} on {}",
                commit.generation,
                commit
                    .targets
                    .iter()
                    .map(|t| format!(
                        "{} (gen {} {})",
                        t.device,
                        t.generation,
                        crate::client::hash_text(&t.hash)
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }

    let deadline = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    let every = Duration::from_secs_f64(args.every.max(0.2));
    let mut round: u16 = 0;
    let mut disagreements = 0usize;
    let stop = crate::serve::stopped();
    tokio::pin!(stop);
    loop {
        round = round.wrapping_add(1);
        let (observed, fabric_back) = tokio::task::spawn_blocking(move || {
            let observed = fabric.probe_all(round);
            (observed, fabric)
        })
        .await
        .context("the traffic task failed")?;
        fabric = fabric_back;
        let outcomes: Vec<Outcome> = PROBES
            .iter()
            .zip(&observed)
            .zip(&expected)
            .map(|((p, &allowed), (expected, why))| Outcome {
                from: format!("{} {}", p.from, p.src),
                to: format!("{} {}", p.to, p.dst),
                port: p.port,
                allowed,
                expected: *expected,
                why: why.clone(),
            })
            .collect();
        let agree = outcomes.iter().filter(|o| o.allowed == o.expected).count();
        disagreements += outcomes.len() - agree;
        match args.output {
            Output::Json => out!(
                "{}",
                serde_json::json!({"round": round, "agree": agree, "probes": outcomes,
                    "devices": agents.iter().map(|a| {
                        let s = a.snapshot();
                        serde_json::json!({"device": a.name(), "generation": s.generation,
                            "sessions": s.sessions, "packets": s.packets, "dropped": s.dropped})
                    }).collect::<Vec<_>>()})
            ),
            Output::Text if round == 1 => {
                out!("traffic: a SYN each way it may go, and the SYN-ACK back");
                for o in &outcomes {
                    out!(
                        "  {:<5} {:<26} -> {:<26} tcp/{:<4}  {}{}",
                        if o.allowed { "ALLOW" } else { "DENY" },
                        o.from,
                        o.to,
                        o.port,
                        o.why,
                        if o.allowed == o.expected {
                            ""
                        } else {
                            "   <-- DISAGREES with explain"
                        }
                    );
                }
                out!(
                    "  {agree} of {} verdicts agree with `explain`",
                    outcomes.len()
                );
                out!("try it (in another terminal):");
                out!("  {exports}");
                out!("  fleet-manager devices; fleet-manager status");
                out!("  fleet-manager explain --from shop/web-prod --to shop/app-dev --port 8080");
                out!(
                    "  fleet-manager flows query --group-by src.deployment,src.tier,dst.deployment,dst.tier,verdict"
                );
                out!("  fleet-manager flows query --where verdict=denied --list");
                if let Some(r) = &rest {
                    out!(
                        "  curl --cacert {} -H \"Authorization: Bearer $(cat {})\" {r}/v1/devices",
                        running.ca_file.display(),
                        running.admin_token_file.display()
                    );
                }
                out!("Ctrl-C stops everything and cleans up.");
            }
            Output::Text => {
                let snapshots: Vec<String> = agents
                    .iter()
                    .map(|a| {
                        let s = a.snapshot();
                        format!(
                            "{} gen {} sessions {} packets {} dropped {}",
                            a.name(),
                            s.generation,
                            s.sessions,
                            s.packets,
                            s.dropped
                        )
                    })
                    .collect();
                out!(
                    "round {round}: {} allowed, {} denied, {agree}/{} agree with explain; {}; {} flow records stored",
                    outcomes.iter().filter(|o| o.allowed).count(),
                    outcomes.iter().filter(|o| !o.allowed).count(),
                    outcomes.len(),
                    snapshots.join("; "),
                    running
                        .core
                        .telemetry
                        .stats
                        .records
                        .load(std::sync::atomic::Ordering::Relaxed)
                );
            }
        }
        let pause = match deadline {
            Some(d) if Instant::now() >= d => break,
            Some(d) => every.min(d.saturating_duration_since(Instant::now())),
            None => every,
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = &mut stop => break,
        }
    }
    for a in agents {
        a.stop();
    }
    running.shutdown().await;
    Ok(if disagreements == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
