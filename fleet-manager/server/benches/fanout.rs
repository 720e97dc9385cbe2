//! `fanout` benchmark (see shared/design/BENCHMARKS.md): one commit reaching 1,000
//! connected devices over mutual-TLS gRPC, against etcd 3.4 delivering the same bytes to
//! 1,000 watchers, in the same run (interleaved A B A B, medians over the rounds).
//!
//! # The model
//!
//! Four processes, so that each server's memory is its own:
//!
//! * this one runs the fleet manager (`serve::start` on a temporary data directory) and
//!   drives both sides: the orchestrator API for Palisade, one etcd client for etcd;
//! * a child (this binary again, `FANOUT_ROLE=devices`) plays the devices: each enrolls
//!   with its one-time token and a fresh ECDSA P-256 key, then holds its own TLS connection
//!   with its own client certificate, subscribes, rebuilds and verifies every update with
//!   `delta::receive`, and acks it;
//! * etcd (`/usr/bin/etcd`), with client TLS and client-certificate authentication;
//! * a child (`FANOUT_ROLE=watchers`) plays the same devices against etcd: each has its
//!   own client and connection, watches `/palisade/devices/<name>`, and acknowledges a
//!   value by writing its SHA-256 to `/palisade/acks/<name>`, the etcd equivalent of
//!   `Ack`.
//!
//! A Palisade round applies one global change that lands on every device: the fleet's
//! `blocklist` address group (256 prefixes, as a threat feed update would) is replaced, so
//! every device's program changes and each gets a delta of a few KB. An etcd round writes
//! to every device's key, in one transaction, the exact bytes of the update its device got
//! in the Palisade round just before (checked by SHA-256). Latencies are taken from the
//! start of the commit call (Apply, or the etcd Txn) to each device receiving its update
//! ("delivered") and to its acknowledgement returning ("acked": the manager has recorded
//! it); all clocks are the machine's realtime clock. Correctness comes first: every device's
//! acknowledged hash must equal the manager's desired hash (ListDevices) and the commit
//! must be enforced, and every watcher must have received exactly the bytes written.
//!
//! Memory per connection is each server's resident set growth from before its clients
//! connect to after they all acknowledged their first value, divided by their number.
//!
//! What keeps the comparison fair: both servers keep their state on the same disk with
//! their default durability (redb syncs every write; etcd syncs its log, batching concurrent
//! writes); both serve TLS 1.3 with client certificates from a CA of their own, and both
//! sides' clients are the same rustls client (`palisade_pki::channel`; the etcd client runs
//! over it); every device and every watcher has its own connection; both first hold and
//! deliver the same first values. etcd's per-request limits are raised (`--max-txn-ops`,
//! `--max-request-bytes`) so that one transaction, like one commit, carries every device's
//! value.
//!
//! Run: `cargo bench -p palisade-server --bench fanout`; `FANOUT_DEVICES` (default 1000)
//! and `FANOUT_ROUNDS` (default 5) make a quicker run. Results: a table on stdout, progress
//! on stderr, JSON lines in `target/bench/fanout.jsonl`.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail, ensure};
use common::{env_number, median};
use etcd_client::{Client as EtcdClient, EventType, Txn, TxnOp, WatchOptions};
use palisade_api::delta::{receive, update_for};
use palisade_api::pb::control::v1::control_client::ControlClient;
use palisade_api::pb::control::v1::{
    AckRequest, EnrollRequest, Placement, SubscribeRequest, ack_request,
};
use palisade_api::pb::orchestrator::v1 as pb;
use palisade_api::pb::orchestrator::v1::orchestrator_client::OrchestratorClient;
use palisade_pki::{Ca, DeviceKey, Role, Validity, channel, client_config};
use palisade_program::DeviceProgram;
use palisade_server::fleet::FleetConfig;
use palisade_server::serve::{Running, ServeConfig, start};
use prost::Message as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The etcd server this benchmark compares against (Debian's etcd-server).
const ETCD: &str = "/usr/bin/etcd";
/// Prefixes in the fleet-wide blocklist that every round replaces.
const BLOCKLIST_PREFIXES: usize = 256;
/// Connections and enrollments in flight at once while setting up.
const SETUP_CONCURRENCY: usize = 32;
/// How long one round may take before the run is declared broken.
const ROUND_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause before reading a resident set size, so in-flight work settles.
const SETTLE: Duration = Duration::from_secs(1);
/// File descriptors each process needs besides one per device connection.
const FD_MARGIN: u64 = 512;

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    match std::env::var("FANOUT_ROLE").as_deref() {
        Ok("devices") => runtime.block_on(devices::run()),
        Ok("watchers") => runtime.block_on(watchers::run()),
        Ok(other) => bail!("FANOUT_ROLE `{other}`: expected devices or watchers"),
        Err(_) => runtime.block_on(bench()),
    }
}

// ---------------------------------------------------------------------------------------
// Between the benchmark and its children: a plan as the first line on the child's stdin,
// then commands, one a line; reports as JSON lines on the child's stdout.

/// What the device child does.
#[derive(Serialize, Deserialize)]
struct DevicesPlan {
    url: String,
    ca_pem: String,
    /// Device names and their one-time enrollment tokens, in device order.
    devices: Vec<(String, String)>,
}

/// What the watcher child does.
#[derive(Serialize, Deserialize)]
struct WatchersPlan {
    endpoint: String,
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    names: Vec<String>,
    /// Watches start here, so each watcher first receives the value already stored (as a
    /// device first receives its current program).
    start_revision: i64,
}

/// The command that makes the device child connect (after enrollment, so the manager's
/// memory can be read in between).
const CONNECT: &str = "connect";

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Report {
    /// Every device enrolled.
    Enrolled { keys_s: f64, enroll_s: f64 },
    /// A device received a value and acknowledged it.
    Delivered(Delivery),
    /// A device gave up.
    Failed { device: usize, error: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Delivery {
    device: usize,
    /// Program generation (Palisade) or modification revision (etcd).
    version: u64,
    recv_ns: u64,
    ack_ns: u64,
    /// Size and SHA-256 of what arrived: the encoded update, or the etcd value.
    bytes: usize,
    sha256: String,
}

/// Writes reports to stdout from one thread, whichever task makes them.
#[derive(Clone)]
struct Reporter(std::sync::mpsc::Sender<Report>);

impl Reporter {
    fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Report>();
        std::thread::spawn(move || {
            let mut out = std::io::stdout().lock();
            for report in rx {
                let line = serde_json::to_string(&report).expect("reports serialize");
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
        });
        Reporter(tx)
    }

    fn send(&self, report: Report) {
        // The writer ends only when stdout is gone, and then nobody listens.
        let _ = self.0.send(report);
    }
}

/// Reads the plan, then hands the rest of stdin to the caller.
async fn read_plan<T: for<'de> Deserialize<'de>>()
-> Result<(T, tokio::io::Lines<BufReader<tokio::io::Stdin>>)> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let line = lines
        .next_line()
        .await?
        .context("stdin closed before the plan")?;
    Ok((
        serde_json::from_str(&line).context("parsing the plan")?,
        lines,
    ))
}

/// A child process of this benchmark and its reports.
struct Child {
    process: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    reports: mpsc::UnboundedReceiver<Result<Report>>,
}

impl Child {
    async fn spawn(role: &str, plan: &impl Serialize) -> Result<Child> {
        let exe = std::env::current_exe().context("locating this benchmark's binary")?;
        let mut process = tokio::process::Command::new(exe)
            .env("FANOUT_ROLE", role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the {role} child"))?;
        let mut stdin = process.stdin.take().expect("piped stdin");
        let stdout = process.stdout.take().expect("piped stdout");
        let (tx, reports) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            loop {
                let report = match lines.next_line().await {
                    Ok(Some(line)) => serde_json::from_str::<Report>(&line)
                        .with_context(|| format!("a report that does not parse: {line}")),
                    Ok(None) => Err(anyhow::anyhow!("the child closed its output")),
                    Err(e) => Err(e.into()),
                };
                let last = report.is_err();
                if tx.send(report).is_err() || last {
                    break;
                }
            }
        });
        let mut line = serde_json::to_string(plan)?;
        line.push('\n');
        stdin.write_all(line.as_bytes()).await?;
        Ok(Child {
            process,
            stdin,
            reports,
        })
    }

    fn pid(&self) -> u32 {
        self.process.id().expect("the child runs")
    }

    async fn command(&mut self, command: &str) -> Result<()> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .context("writing to the child")
    }

    async fn next(&mut self, deadline: Instant) -> Result<Report> {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.reports.recv()).await {
            Ok(Some(report)) => report,
            Ok(None) => bail!("the child's output ended"),
            Err(_) => bail!("timed out waiting for the child"),
        }
    }

    /// One delivery of `version` or later from each of `n` devices, indexed by device.
    async fn deliveries(&mut self, n: usize, version: u64) -> Result<Vec<Delivery>> {
        let deadline = Instant::now() + ROUND_TIMEOUT;
        let mut got: Vec<Option<Delivery>> = vec![None; n];
        let mut missing = n;
        while missing > 0 {
            match self.next(deadline).await.with_context(|| {
                format!("{missing} of {n} devices have not acknowledged version {version}")
            })? {
                Report::Delivered(d) if d.version >= version => {
                    let slot = got.get_mut(d.device).context("a device out of range")?;
                    if slot.is_none() {
                        missing -= 1;
                    }
                    *slot = Some(d);
                }
                Report::Delivered(_) => {}
                Report::Failed { device, error } => bail!("device {device} failed: {error}"),
                other => bail!("unexpected report {other:?}"),
            }
        }
        Ok(got.into_iter().map(|d| d.expect("all arrived")).collect())
    }
}

/// Runs `make(i)` for every `i` in `0..n`, at most `limit` at once; results in order.
async fn bounded<T, F, Fut>(n: usize, limit: usize, make: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limit));
    let mut set = JoinSet::new();
    for i in 0..n {
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let fut = make(i);
        set.spawn(async move {
            let out = fut.await;
            drop(permit);
            (i, out)
        });
    }
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, result) = joined?;
        out[i] = Some(result.with_context(|| format!("item {i}"))?);
    }
    Ok(out
        .into_iter()
        .map(|t| t.expect("every task ran"))
        .collect())
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos() as u64
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

// ---------------------------------------------------------------------------------------
// The device child.

mod devices {
    use super::*;

    pub async fn run() -> Result<()> {
        let (plan, mut stdin) = read_plan::<DevicesPlan>().await?;
        let out = Reporter::start();
        let plan = Arc::new(plan);

        // Keys and CSRs on every core; enrollment through one anonymous connection (a
        // device enrolls once, so this is setup, not what is measured).
        let started = Instant::now();
        let names: Vec<String> = plan.devices.iter().map(|(n, _)| n.clone()).collect();
        let keys = generate_keys(names).await?;
        let keys_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let anonymous = channel(&plan.url, client_config(&plan.ca_pem, None)?).await?;
        let keys = Arc::new(keys);
        let certs = bounded(plan.devices.len(), SETUP_CONCURRENCY, |i| {
            let (plan, keys) = (Arc::clone(&plan), Arc::clone(&keys));
            let mut client = ControlClient::new(anonymous.clone());
            async move {
                let (device, token) = &plan.devices[i];
                let credentials = client
                    .enroll(EnrollRequest {
                        device: device.clone(),
                        token: token.clone(),
                        csr_pem: keys[i].1.clone(),
                    })
                    .await
                    .with_context(|| format!("enrolling {device}"))?;
                Ok(credentials.into_inner().certificate_pem)
            }
        })
        .await?;
        out.send(Report::Enrolled {
            keys_s,
            enroll_s: started.elapsed().as_secs_f64(),
        });

        let command = stdin.next_line().await?;
        ensure!(
            command.as_deref() == Some(CONNECT),
            "expected `{CONNECT}`, got {command:?}"
        );
        let certs = Arc::new(certs);
        bounded(plan.devices.len(), SETUP_CONCURRENCY, |i| {
            let (plan, keys, certs, out) = (
                Arc::clone(&plan),
                Arc::clone(&keys),
                Arc::clone(&certs),
                out.clone(),
            );
            async move {
                let config = client_config(&plan.ca_pem, Some((&certs[i], &keys[i].0)))?;
                // Its own connection: one TCP connection and TLS session per device.
                let channel = channel(&plan.url, config).await?;
                tokio::spawn(async move {
                    if let Err(e) = device(i, channel, &out).await {
                        out.send(Report::Failed {
                            device: i,
                            error: format!("{e:#}"),
                        });
                    }
                });
                Ok(())
            }
        })
        .await?;
        // Run until the benchmark closes stdin.
        while stdin.next_line().await?.is_some() {}
        Ok(())
    }

    /// (key PEM, CSR PEM) per device, generated on every core.
    async fn generate_keys(names: Vec<String>) -> Result<Vec<(String, String)>> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = names.len().div_ceil(cores).max(1);
        let mut tasks = Vec::new();
        for part in names.chunks(chunk) {
            let part = part.to_vec();
            tasks.push(tokio::task::spawn_blocking(move || {
                part.iter()
                    .map(|name| {
                        let key = DeviceKey::generate()?;
                        Ok((key.key_pem(), key.csr_pem(name)?))
                    })
                    .collect::<Result<Vec<_>>>()
            }));
        }
        let mut out = Vec::with_capacity(names.len());
        for t in tasks {
            out.extend(t.await??);
        }
        Ok(out)
    }

    /// One device: subscribe, then rebuild, verify and acknowledge every update.
    async fn device(index: usize, channel: Channel, out: &Reporter) -> Result<()> {
        let mut client = ControlClient::new(channel).max_decoding_message_size(256 << 20);
        let mut updates = client
            .subscribe(SubscribeRequest::default())
            .await?
            .into_inner();
        let mut current: Option<DeviceProgram> = None;
        while let Some(update) = updates.message().await? {
            let recv_ns = now_ns();
            let program = receive(&update, current.as_ref())
                .with_context(|| format!("generation {}", update.generation))?;
            client
                .ack(AckRequest {
                    generation: update.generation,
                    hash: update.hash.clone(),
                    result: Some(ack_request::Result::Applied(Placement {
                        software: program.rule_count() as u32,
                        ..Placement::default()
                    })),
                })
                .await?;
            let ack_ns = now_ns();
            let encoded = update.encode_to_vec();
            out.send(Report::Delivered(Delivery {
                device: index,
                version: update.generation,
                recv_ns,
                ack_ns,
                bytes: encoded.len(),
                sha256: sha256_hex(&encoded),
            }));
            current = Some(program);
        }
        bail!("the manager ended the stream")
    }
}

// ---------------------------------------------------------------------------------------
// The etcd watcher child.

/// An etcd client over its own connection, with the same rustls mutual-TLS client stack
/// the devices use.
async fn etcd_connect(
    endpoint: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<EtcdClient> {
    let config = client_config(ca_pem, Some((cert_pem, key_pem)))?;
    let channel = channel(endpoint, config).await?;
    Ok(EtcdClient::from_channel(etcd_client::Channel::Tonic(channel), None).await?)
}

fn device_key(name: &str) -> String {
    format!("/palisade/devices/{name}")
}

fn ack_key(name: &str) -> String {
    format!("/palisade/acks/{name}")
}

mod watchers {
    use super::*;

    pub async fn run() -> Result<()> {
        let (plan, mut stdin) = read_plan::<WatchersPlan>().await?;
        let out = Reporter::start();
        let plan = Arc::new(plan);
        bounded(plan.names.len(), SETUP_CONCURRENCY, |i| {
            let (plan, out) = (Arc::clone(&plan), out.clone());
            async move {
                // Its own client: one TCP connection and TLS session per watcher.
                let client =
                    etcd_connect(&plan.endpoint, &plan.ca_pem, &plan.cert_pem, &plan.key_pem)
                        .await?;
                tokio::spawn(async move {
                    if let Err(e) = watcher(i, client, &plan, &out).await {
                        out.send(Report::Failed {
                            device: i,
                            error: format!("{e:#}"),
                        });
                    }
                });
                Ok(())
            }
        })
        .await?;
        while stdin.next_line().await?.is_some() {}
        Ok(())
    }

    /// One watcher: every value written to its key is acknowledged with its SHA-256.
    async fn watcher(
        index: usize,
        mut client: EtcdClient,
        plan: &WatchersPlan,
        out: &Reporter,
    ) -> Result<()> {
        let name = &plan.names[index];
        let options = WatchOptions::new().with_start_revision(plan.start_revision);
        let mut stream = client.watch(device_key(name), Some(options)).await?;
        while let Some(response) = stream.message().await? {
            ensure!(
                !response.canceled(),
                "etcd cancelled the watch: {}",
                response.cancel_reason()
            );
            for event in response.events() {
                if event.event_type() != EventType::Put {
                    continue;
                }
                let recv_ns = now_ns();
                let kv = event.kv().context("a put event without its key-value")?;
                let digest = Sha256::digest(kv.value());
                client.put(ack_key(name), digest.to_vec(), None).await?;
                let ack_ns = now_ns();
                out.send(Report::Delivered(Delivery {
                    device: index,
                    version: kv.mod_revision() as u64,
                    recv_ns,
                    ack_ns,
                    bytes: kv.value().len(),
                    sha256: sha256_hex(kv.value()),
                }));
            }
        }
        bail!("etcd ended the watch")
    }
}

// ---------------------------------------------------------------------------------------
// The benchmark.

/// `authorization: Bearer <admin token>` on every orchestrator call.
#[derive(Clone)]
struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Orchestrator = OrchestratorClient<InterceptedService<Channel, Bearer>>;

/// A deterministic generator (splitmix64): the same blocklists every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The blocklist of round `round`: distinct host addresses in 198.18.0.0/15.
fn blocklist(round: u64) -> String {
    let mut rng = Rng(0xb10c ^ round.wrapping_mul(0x1_0000_0001));
    let mut hosts = std::collections::BTreeSet::new();
    while hosts.len() < BLOCKLIST_PREFIXES {
        hosts.insert((198u32 << 24) | (18 << 16) | (rng.next() as u32 & 0x1_ffff));
    }
    hosts
        .into_iter()
        .map(|h| format!("{}/32", std::net::Ipv4Addr::from(h)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn document(name: &str, content: String) -> pb::Document {
    pb::Document {
        name: name.into(),
        content,
        format: "pal".into(),
    }
}

fn blocklist_document(round: u64) -> pb::Document {
    document(
        "blocklist.pal",
        format!("address-group blocklist = {}\n", blocklist(round)),
    )
}

const TAGS: &str = "tag application=fleet
tag tier=web tier=app tier=db
tag deployment=prod deployment=dev
";

const POLICIES: &str = "policy guard tier admin seq 0100 {
  0010: deny any <> group:blocklist on any log
}
project fleet {
  policy three-tier {
    0010: allow any > tier=web on tcp/443
    0020: allow tier=web > tier=app on tcp/8080 match deployment
    0030: allow tier=app > tier=db on tcp/5432 match deployment
  }
  application-policy-set fleet for application=fleet {
    0010: three-tier
  }
}
";

fn device_name(i: usize) -> String {
    format!("dev-{i:05}")
}

/// Device `i`'s one workload: a web, app or db tier, prod or dev.
fn workload(i: usize) -> pb::Workload {
    let tier = ["web", "app", "db"][i % 3];
    let deployment = ["prod", "dev"][(i / 3) % 2];
    pb::Workload {
        name: format!("w-{i:05}"),
        project: "fleet".into(),
        tags: vec![format!("tier={tier}"), format!("deployment={deployment}")],
        interfaces: vec![pb::Interface {
            addresses: vec![format!("10.{}.{}.10", i >> 8, i & 255)],
            device: device_name(i),
            ..pb::Interface::default()
        }],
        ..pb::Workload::default()
    }
}

/// What the environment gives the run.
struct Setting {
    devices: usize,
    rounds: usize,
    cpu: String,
    etcd_version: String,
}

fn setting() -> Result<Setting> {
    let devices = env_number("FANOUT_DEVICES", 1000)?;
    let rounds = env_number("FANOUT_ROUNDS", 5)?;
    ensure!(
        (1..=65536).contains(&devices),
        "FANOUT_DEVICES={devices}: expected 1 to 65536"
    );
    ensure!(rounds >= 1, "FANOUT_ROUNDS={rounds}: expected at least 1");
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX);
    let need = devices as u64 + FD_MARGIN;
    ensure!(
        soft >= need,
        "the open-file limit is {soft}, and {devices} devices need {need} per process: raise it \
         first (`ulimit -n {}`) or set FANOUT_DEVICES lower",
        need.next_power_of_two()
    );
    ensure!(
        Path::new(ETCD).exists(),
        "{ETCD} is missing: install Debian's etcd-server (`apt-get install etcd-server`)"
    );
    let version = std::process::Command::new(ETCD)
        .arg("--version")
        .output()
        .context("running etcd --version")?;
    let text = String::from_utf8_lossy(&version.stdout);
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map_or("?", str::trim)
            .to_string()
    };
    let etcd_version = format!("etcd {} ({})", field("etcd Version:"), field("Go Version:"));
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("unknown CPU", |m| m.trim_start_matches([' ', '\t', ':']));
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags"))
        .map(|f| f.split_whitespace().collect())
        .unwrap_or_default();
    // What TLS and hashing run on.
    let features: Vec<&str> = ["aes", "pclmulqdq", "avx2", "sha_ni", "adx", "bmi2"]
        .into_iter()
        .filter(|f| flags.contains(f))
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(Setting {
        devices,
        rounds,
        cpu: format!("{model}, {cores} cores, {}", features.join(" ")),
        etcd_version,
    })
}

/// The CPU time (user and system) a process has used so far, in ms.
fn cpu_ms(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name, in parentheses, may hold spaces: count fields after it, from the
    // third (state); utime and stime are the 14th and 15th, in USER_HZ (100 a second).
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("a /proc/PID/stat line")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .context("utime and stime in /proc/PID/stat")
    };
    Ok((ticks(11)? + ticks(12)?) as f64 * 10.0)
}

/// CPU time used by a server and by its clients.
#[derive(Clone, Copy)]
struct Cpu {
    server_ms: f64,
    clients_ms: f64,
}

impl Cpu {
    fn read(server: u32, clients: u32) -> Result<Cpu> {
        Ok(Cpu {
            server_ms: cpu_ms(server)?,
            clients_ms: cpu_ms(clients)?,
        })
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            server_ms: self.server_ms - before.server_ms,
            clients_ms: self.clients_ms - before.clients_ms,
        }
    }
}

/// A process's resident set in KiB and its open file descriptors.
fn usage(pid: u32) -> Result<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS in /proc/PID/status")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    Ok((rss, fds))
}

/// Growth per connection, in KiB.
fn per_connection(before: (u64, usize), after: (u64, usize), n: usize) -> (f64, usize) {
    (
        (after.0 as f64 - before.0 as f64) / n as f64,
        after.1.saturating_sub(before.1),
    )
}

/// TLS for etcd, as a careful operator would set it up: a CA of its own, a server
/// certificate for 127.0.0.1, and a client certificate (`--client-cert-auth`) that the
/// watchers and the writer present.
struct EtcdTls {
    dir: PathBuf,
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

impl EtcdTls {
    fn mint(dir: &Path) -> Result<EtcdTls> {
        let validity = || Validity::for_duration(Duration::from_secs(24 * 3600));
        let ca = Ca::generate()?;
        let server = ca.issue_server(&["127.0.0.1".into()], validity())?;
        let client = ca.issue_user("fanout", Role::Admin, validity())?;
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("ca.pem"), ca.cert_pem())?;
        std::fs::write(dir.join("server.pem"), &server.cert.pem)?;
        std::fs::write(dir.join("server.key"), &server.key_pem)?;
        Ok(EtcdTls {
            dir: dir.to_path_buf(),
            ca_pem: ca.cert_pem().to_string(),
            client_cert_pem: client.cert.pem,
            client_key_pem: client.key_pem,
        })
    }

    async fn connect(&self, endpoint: &str) -> Result<EtcdClient> {
        etcd_connect(
            endpoint,
            &self.ca_pem,
            &self.client_cert_pem,
            &self.client_key_pem,
        )
        .await
    }
}

/// The etcd server, stopped when dropped.
struct Etcd {
    process: std::process::Child,
    endpoint: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Etcd {
    /// Starts a one-member etcd in `dir` and connects a client to it once it answers.
    async fn start(
        dir: &Path,
        tls: &EtcdTls,
        max_request_bytes: usize,
    ) -> Result<(Etcd, EtcdClient)> {
        let endpoint = format!("https://127.0.0.1:{}", free_port()?);
        let peer = format!("http://127.0.0.1:{}", free_port()?);
        std::fs::create_dir_all(dir)?;
        let log_path = dir.join("etcd.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        // `--flag=value`: Go's flag parser takes no separate value for booleans.
        let arg = |name: &str, value: &dyn std::fmt::Display| format!("--{name}={value}");
        let args = [
            arg("name", &"default"),
            arg("data-dir", &dir.join("data").display()),
            arg("listen-client-urls", &endpoint),
            arg("advertise-client-urls", &endpoint),
            arg("listen-peer-urls", &peer),
            arg("initial-advertise-peer-urls", &peer),
            arg("initial-cluster", &format!("default={peer}")),
            arg("cert-file", &tls.dir.join("server.pem").display()),
            arg("key-file", &tls.dir.join("server.key").display()),
            arg("trusted-ca-file", &tls.dir.join("ca.pem").display()),
            arg("client-cert-auth", &true),
            // One transaction writes every device's key (the default allows 128 operations
            // and 1.5 MiB).
            arg("max-txn-ops", &(max_request_bytes / 64)),
            arg("max-request-bytes", &max_request_bytes),
            arg("enable-grpc-gateway", &false),
            arg("logger", &"zap"),
            arg("log-level", &"warn"),
        ];
        let process = std::process::Command::new(ETCD)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting etcd")?;
        let etcd = Etcd { process, endpoint };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = async {
                let mut client = tls.connect(&etcd.endpoint).await?;
                client.status().await?;
                Ok::<_, anyhow::Error>(client)
            };
            match attempt.await {
                Ok(client) => return Ok((etcd, client)),
                Err(e) if Instant::now() > deadline => {
                    bail!(
                        "etcd did not answer within 30 s ({e:#}); see {}",
                        log_path.display()
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn pid(&self) -> u32 {
        self.process.id()
    }
}

/// Writes every device's payload in one transaction; the revision it created.
async fn put_all(writer: &mut EtcdClient, names: &[String], payloads: &[Vec<u8>]) -> Result<u64> {
    let ops: Vec<TxnOp> = names
        .iter()
        .zip(payloads)
        .map(|(name, payload)| TxnOp::put(device_key(name), payload.clone(), None))
        .collect();
    let response = writer.txn(Txn::new().and_then(ops)).await?;
    ensure!(response.succeeded(), "the etcd transaction failed");
    let revision = response.header().context("a response header")?.revision();
    Ok(revision as u64)
}

/// Every etcd acknowledgement key holds the SHA-256 of its device's payload.
async fn check_etcd_acks(
    writer: &mut EtcdClient,
    names: &[String],
    payloads: &[Vec<u8>],
) -> Result<()> {
    let response = writer
        .get(
            "/palisade/acks/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await?;
    let acks: BTreeMap<&[u8], &[u8]> = response
        .kvs()
        .iter()
        .map(|kv| (kv.key(), kv.value()))
        .collect();
    for (name, payload) in names.iter().zip(payloads) {
        let ack = acks.get(ack_key(name).as_bytes()).copied();
        ensure!(
            ack == Some(Sha256::digest(payload).as_slice()),
            "etcd: the acknowledgement of {name} is not the hash of its payload"
        );
    }
    Ok(())
}

/// Every device got exactly `payloads[i]`, byte for byte.
fn check_payloads(system: &str, got: &[Delivery], payloads: &[Vec<u8>]) -> Result<()> {
    for (d, payload) in got.iter().zip(payloads) {
        ensure!(
            d.bytes == payload.len() && d.sha256 == sha256_hex(payload),
            "{system}: device {} received {} bytes ({}) where {} bytes ({}) were sent",
            d.device,
            d.bytes,
            d.sha256,
            payload.len(),
            sha256_hex(payload)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Palisade's side.

async fn start_palisade(dir: &Path) -> Result<(Running, Orchestrator, String, String)> {
    let running = start(ServeConfig {
        snmp: None,
        telemetry: Default::default(),
        data: dir.to_path_buf(),
        grpc_listen: "127.0.0.1:0".parse()?,
        http_listen: None,
        hosts: vec![],
        server_cert_validity: palisade_server::serve::SERVER_CERT_VALIDITY,
        fleet: FleetConfig::default(),
    })
    .await?;
    let ca_pem = std::fs::read_to_string(&running.ca_file)?;
    let token = std::fs::read_to_string(&running.admin_token_file)?;
    let url = format!("https://127.0.0.1:{}", running.grpc_addr.port());
    let channel = channel(&url, client_config(&ca_pem, None)?).await?;
    let bearer = Bearer(format!("Bearer {}", token.trim()).parse()?);
    let orchestrator = OrchestratorClient::with_interceptor(channel, bearer)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    Ok((running, orchestrator, url, ca_pem))
}

async fn apply(
    orchestrator: &mut Orchestrator,
    documents: Vec<pb::Document>,
) -> Result<pb::ApplyResponse> {
    Ok(orchestrator
        .apply(pb::ApplyRequest {
            documents,
            dry_run: false,
        })
        .await?
        .into_inner())
}

/// The fleet: tags and the blocklist, a project, `n` devices with a workload each (and an
/// enrollment token each), then the policies. Returns the names and tokens.
async fn populate(orchestrator: &mut Orchestrator, n: usize) -> Result<Vec<(String, String)>> {
    apply(
        orchestrator,
        vec![document("tags.pal", TAGS.into()), blocklist_document(0)],
    )
    .await?;
    orchestrator
        .put_project(pb::Project {
            name: "fleet".into(),
            tags: vec!["application=fleet".into()],
            ..pb::Project::default()
        })
        .await?;
    let tokens = bounded(n, 4, |i| {
        let mut orchestrator = orchestrator.clone();
        async move {
            let token = orchestrator
                .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
                    device: device_name(i),
                    valid_seconds: 24 * 3600,
                })
                .await?
                .into_inner()
                .token;
            orchestrator.put_workload(workload(i)).await?;
            Ok((device_name(i), token))
        }
    })
    .await?;
    let response = apply(
        orchestrator,
        vec![document("policies.pal", POLICIES.into())],
    )
    .await?;
    let targets = response.commits.first().map_or(0, |c| c.targets.len());
    ensure!(
        targets == n,
        "the policies gave {targets} of {n} devices a program"
    );
    Ok(tokens)
}

/// The programs the manager wants each device to run.
fn desired(running: &Running) -> BTreeMap<String, Arc<DeviceProgram>> {
    running
        .core
        .fleet
        .lock()
        .expect("fleet lock")
        .programs()
        .clone()
}

/// Every device is connected and acknowledged exactly its desired program (of `generation`,
/// if given), and that commit is enforced.
async fn check_fleet(
    orchestrator: &mut Orchestrator,
    names: &[String],
    generation: Option<u64>,
) -> Result<()> {
    let devices = orchestrator
        .list_devices(pb::ListDevicesRequest {})
        .await?
        .into_inner()
        .devices;
    let by_name: BTreeMap<&str, &pb::DeviceState> =
        devices.iter().map(|d| (d.name.as_str(), d)).collect();
    for name in names {
        let d = by_name
            .get(name.as_str())
            .with_context(|| format!("ListDevices lacks {name}"))?;
        ensure!(
            d.enrolled && d.connected,
            "{name} is not enrolled and connected"
        );
        ensure!(
            !d.desired_hash.is_empty() && d.acked_hash == d.desired_hash,
            "{name} acknowledged another program than its desired one"
        );
        if let Some(g) = generation {
            ensure!(
                d.desired_generation == g && d.acked_generation == g,
                "{name}: desired generation {}, acknowledged {}, expected {g}",
                d.desired_generation,
                d.acked_generation
            );
        }
    }
    if let Some(g) = generation {
        let commit = orchestrator
            .get_commit(pb::GetCommitRequest { generation: g })
            .await?
            .into_inner();
        ensure!(
            commit.state == pb::CommitState::Enforced as i32,
            "commit {g} is not enforced (state {})",
            commit.state
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Figures.

/// One system's round: latencies from the start of the commit call, in ms, sorted.
struct Sample {
    system: &'static str,
    round: usize,
    commit_ms: f64,
    delivered: Vec<f64>,
    acked: Vec<f64>,
    payload_bytes: f64,
    /// From the commit call to the last acknowledgement.
    cpu: Cpu,
}

impl Sample {
    fn new(
        system: &'static str,
        round: usize,
        t0: u64,
        commit_ns: u64,
        got: &[Delivery],
        cpu: Cpu,
    ) -> Self {
        let ms = |t: u64| t.saturating_sub(t0) as f64 / 1e6;
        let sorted = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v
        };
        Sample {
            system,
            round,
            commit_ms: commit_ns as f64 / 1e6,
            delivered: sorted(got.iter().map(|d| ms(d.recv_ns)).collect()),
            acked: sorted(got.iter().map(|d| ms(d.ack_ns)).collect()),
            payload_bytes: got.iter().map(|d| d.bytes as f64).sum::<f64>() / got.len() as f64,
            cpu,
        }
    }

    /// Each figure of the round: JSON key, table label, value.
    fn figures(&self) -> [(&'static str, &'static str, f64); 9] {
        [
            ("commit_call_ms", "commit call (ms)", self.commit_ms),
            (
                "delivered_p50_ms",
                "delivered p50 (ms)",
                quantile(&self.delivered, 0.50),
            ),
            (
                "delivered_p99_ms",
                "delivered p99 (ms)",
                quantile(&self.delivered, 0.99),
            ),
            (
                "all_delivered_ms",
                "all delivered (ms)",
                quantile(&self.delivered, 1.0),
            ),
            (
                "acked_p50_ms",
                "acked p50 (ms)",
                quantile(&self.acked, 0.50),
            ),
            (
                "acked_p99_ms",
                "acked p99 (ms)",
                quantile(&self.acked, 0.99),
            ),
            ("all_acked_ms", "all acked (ms)", quantile(&self.acked, 1.0)),
            (
                "server_cpu_ms",
                "server CPU per round (ms)",
                self.cpu.server_ms,
            ),
            (
                "clients_cpu_ms",
                "clients' CPU per round (ms)",
                self.cpu.clients_ms,
            ),
        ]
    }

    fn json(&self, devices: usize) -> serde_json::Value {
        let mut v = serde_json::json!({
            "bench": "fanout", "system": self.system, "round": self.round,
            "devices": devices, "payload_bytes_mean": self.payload_bytes,
        });
        for (key, _, x) in self.figures() {
            v[key] = x.into();
        }
        v
    }
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Memory and descriptors that connecting `n` clients added to a server and its clients.
struct Footprint {
    server_kib: f64,
    server_fds: usize,
    client_kib: f64,
}

impl Footprint {
    fn new(server: [(u64, usize); 2], client: (u64, usize), n: usize) -> Self {
        let (server_kib, server_fds) = per_connection(server[0], server[1], n);
        Footprint {
            server_kib,
            server_fds,
            client_kib: client.0 as f64 / n as f64,
        }
    }
}

fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench")
}

async fn bench() -> Result<()> {
    let setting = setting()?;
    let n = setting.devices;
    let dir = tempfile::tempdir()?;
    eprintln!(
        "fanout: {n} devices, {} rounds; {}; {}",
        setting.rounds, setting.cpu, setting.etcd_version
    );

    // Palisade: the manager and its fleet.
    let started = Instant::now();
    let (running, mut orchestrator, url, ca_pem) =
        start_palisade(&dir.path().join("palisade")).await?;
    let tokens = populate(&mut orchestrator, n).await?;
    let names: Vec<String> = tokens.iter().map(|(name, _)| name.clone()).collect();
    eprintln!(
        "fanout: fleet set up over the orchestrator API in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let first_programs = desired(&running);
    let first_payloads: Vec<Vec<u8>> = names
        .iter()
        .map(|name| update_for(&first_programs[name], None).encode_to_vec())
        .collect();

    // The devices enroll, then connect; the manager's memory is read in between.
    let mut devices = Child::spawn(
        "devices",
        &DevicesPlan {
            url,
            ca_pem,
            devices: tokens,
        },
    )
    .await?;
    match devices.next(Instant::now() + ROUND_TIMEOUT).await? {
        Report::Enrolled { keys_s, enroll_s } => {
            eprintln!("fanout: keys and CSRs in {keys_s:.1} s, {n} enrollments in {enroll_s:.1} s")
        }
        other => bail!("expected the devices to enroll, got {other:?}"),
    }
    tokio::time::sleep(SETTLE).await;
    let server_before = usage(std::process::id())?;
    let started = Instant::now();
    devices.command(CONNECT).await?;
    let first = devices.deliveries(n, 0).await?;
    eprintln!(
        "fanout: {n} devices connected over mutual TLS, subscribed and acknowledged their first program in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    check_payloads("palisade", &first, &first_payloads)?;
    check_fleet(&mut orchestrator, &names, None).await?;
    tokio::time::sleep(SETTLE).await;
    let palisade_memory = Footprint::new(
        [server_before, usage(std::process::id())?],
        usage(devices.pid())?,
        n,
    );

    // etcd: the same first values stored, then the watchers connect and receive them.
    let max_request = (first_payloads.iter().map(Vec::len).sum::<usize>() * 4).max(16 << 20);
    let tls = EtcdTls::mint(&dir.path().join("etcd-tls"))?;
    let (etcd, mut writer) = Etcd::start(&dir.path().join("etcd"), &tls, max_request).await?;
    let start_revision = put_all(&mut writer, &names, &first_payloads).await?;
    tokio::time::sleep(SETTLE).await;
    let etcd_before = usage(etcd.pid())?;
    let started = Instant::now();
    let mut watchers = Child::spawn(
        "watchers",
        &WatchersPlan {
            endpoint: etcd.endpoint.clone(),
            ca_pem: tls.ca_pem.clone(),
            cert_pem: tls.client_cert_pem.clone(),
            key_pem: tls.client_key_pem.clone(),
            names: names.clone(),
            start_revision: start_revision as i64,
        },
    )
    .await?;
    let first = watchers.deliveries(n, start_revision).await?;
    eprintln!(
        "fanout: {n} etcd watchers connected over mutual TLS, watching and acknowledged their first value in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    check_payloads("etcd", &first, &first_payloads)?;
    check_etcd_acks(&mut writer, &names, &first_payloads).await?;
    tokio::time::sleep(SETTLE).await;
    let etcd_memory = Footprint::new([etcd_before, usage(etcd.pid())?], usage(watchers.pid())?, n);

    // The rounds, interleaved: Palisade, etcd, Palisade, etcd, ...
    let mut samples = Vec::new();
    for round in 1..=setting.rounds {
        let before = desired(&running);
        let cpu = Cpu::read(std::process::id(), devices.pid())?;
        let t0 = now_ns();
        let response = apply(&mut orchestrator, vec![blocklist_document(round as u64)]).await?;
        let commit_ns = now_ns() - t0;
        let commit = response
            .commits
            .first()
            .context("the change made no commit")?;
        ensure!(
            commit.targets.len() == n,
            "round {round}: the change reached {} of {n} devices",
            commit.targets.len()
        );
        let got = devices.deliveries(n, commit.generation).await?;
        let cpu = Cpu::read(std::process::id(), devices.pid())?.since(cpu);
        let a = Sample::new("palisade", round, t0, commit_ns, &got, cpu);
        check_fleet(&mut orchestrator, &names, Some(commit.generation)).await?;
        let after = desired(&running);
        let payloads: Vec<Vec<u8>> = names
            .iter()
            .map(|name| update_for(&after[name], Some(&before[name])).encode_to_vec())
            .collect();
        check_payloads("palisade", &got, &payloads)?;

        let cpu = Cpu::read(etcd.pid(), watchers.pid())?;
        let t0 = now_ns();
        let revision = put_all(&mut writer, &names, &payloads).await?;
        let commit_ns = now_ns() - t0;
        let got = watchers.deliveries(n, revision).await?;
        let cpu = Cpu::read(etcd.pid(), watchers.pid())?.since(cpu);
        let b = Sample::new("etcd", round, t0, commit_ns, &got, cpu);
        check_payloads("etcd", &got, &payloads)?;
        check_etcd_acks(&mut writer, &names, &payloads).await?;
        eprintln!(
            "fanout: round {round}: all acked in {:.1} ms (palisade) vs {:.1} ms (etcd), {:.0} B per device",
            quantile(&a.acked, 1.0),
            quantile(&b.acked, 1.0),
            a.payload_bytes
        );
        samples.push(a);
        samples.push(b);
    }
    drop(devices);
    drop(watchers);
    drop(etcd);
    running.shutdown().await;

    let full_bytes = first_payloads.iter().map(Vec::len).sum::<usize>() as f64 / n as f64;
    report(
        &setting,
        &samples,
        full_bytes,
        [&palisade_memory, &etcd_memory],
    )
}

fn report(
    setting: &Setting,
    samples: &[Sample],
    full_bytes: f64,
    memory: [&Footprint; 2],
) -> Result<()> {
    let n = setting.devices;
    let of =
        |system: &str| -> Vec<&Sample> { samples.iter().filter(|s| s.system == system).collect() };
    let (palisade, etcd) = (of("palisade"), of("etcd"));
    let median_of =
        |of: &[&Sample], k: usize| median(of.iter().map(|s| s.figures()[k].2).collect());
    let payload = median(palisade.iter().map(|s| s.payload_bytes).collect());

    let mut table = String::new();
    let mut summary = serde_json::json!({
        "bench": "fanout", "summary": true, "devices": n, "rounds": setting.rounds,
        "cpu": setting.cpu, "peer": setting.etcd_version,
        "payload_bytes": payload, "full_program_bytes": full_bytes,
    });
    writeln!(
        table,
        "fanout: one commit to {n} connected devices; {} rounds interleaved (palisade, etcd, ...), medians over the rounds",
        setting.rounds
    )?;
    writeln!(table, "  CPU: {}", setting.cpu)?;
    writeln!(
        table,
        "  peer: {}, one transaction to every device's key; both sides TLS 1.3 with client certificates (ECDSA P-256), the same rustls client, one connection per device, on loopback",
        setting.etcd_version
    )?;
    writeln!(
        table,
        "  payload per device: {payload:.0} B update (a delta; the first, whole program: {full_bytes:.0} B); etcd carries the same bytes"
    )?;
    writeln!(
        table,
        "\n{:<30} {:>12} {:>12} {:>14}",
        "", "palisade", "etcd", "palisade/etcd"
    )?;
    for (k, (key, label, _)) in palisade[0].figures().into_iter().enumerate() {
        let (x, y) = (median_of(&palisade, k), median_of(&etcd, k));
        writeln!(table, "{label:<30} {x:>12.1} {y:>12.1} {:>14.2}", x / y)?;
        summary[format!("palisade_{key}")] = x.into();
        summary[format!("etcd_{key}")] = y.into();
        summary[format!("ratio_{key}")] = (x / y).into();
    }
    let [p, e] = memory;
    for (key, label, x, y) in [
        (
            "server_kib_per_connection",
            "server KiB per connection",
            p.server_kib,
            e.server_kib,
        ),
        (
            "client_kib_per_device",
            "client process KiB per device",
            p.client_kib,
            e.client_kib,
        ),
    ] {
        writeln!(table, "{label:<30} {x:>12.1} {y:>12.1} {:>14.2}", x / y)?;
        summary[format!("palisade_{key}")] = x.into();
        summary[format!("etcd_{key}")] = y.into();
    }
    writeln!(
        table,
        "{:<30} {:>12} {:>12}",
        "server fds added", p.server_fds, e.server_fds
    )?;
    summary["palisade_server_fds_added"] = p.server_fds.into();
    summary["etcd_server_fds_added"] = e.server_fds.into();
    writeln!(table, "\nper round, all acked (ms):")?;
    for (a, b) in palisade.iter().zip(&etcd) {
        writeln!(
            table,
            "  round {}: palisade {:>8.1}   etcd {:>8.1}",
            a.round,
            quantile(&a.acked, 1.0),
            quantile(&b.acked, 1.0)
        )?;
    }
    print!("{table}");

    let dir = bench_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.canonicalize()?.join("fanout.jsonl");
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    for s in samples {
        writeln!(out, "{}", s.json(n))?;
    }
    writeln!(out, "{summary}")?;
    eprintln!("fanout: results appended to {}", path.display());
    Ok(())
}
