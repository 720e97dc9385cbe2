//! The vRouter agent: the vRouter under a fleet manager.
//!
//! The agent enrolls with a one-time token (a fresh key; the manager signs its CSR), then
//! holds one mutually authenticated gRPC stream to the manager. Every program that arrives
//! (whole, or as a delta from the one running) is verified against its content hash,
//! planned for the hardware profile, compiled, stored in the state directory and switched
//! in atomically — the dataplane moves to it at its next burst — and then acknowledged with
//! its generation, hash and rule placement. A program that does not verify, plan or compile,
//! or that redirects or mirrors to a port this device does not have, is acknowledged as
//! refused and the previous one keeps running.
//!
//! The agent keeps enforcing whatever happens to the manager: at start it restores the last
//! program from its state directory before its ports move a frame (with none stored, it
//! drops everything until the first program arrives); when the stream breaks it reconnects
//! with backoff and is brought up to date; it renews its certificate before it expires.
//!
//! [`start`] runs an agent inside the caller's tokio runtime on ports it is given (the
//! dataplane gets its own thread); `vrouter agent` is its command line, and the fleet
//! manager's demo runs several in one process.
//!
//! * [`forward`] — the forwarding loop shared with `vrouter run`;
//! * [`state`] — the state directory;
//! * [`flows`] — session records on their way to the manager.

pub mod flows;
pub mod forward;
mod snmp;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use palisade_api::WireError;
use palisade_api::delta::receive;
use palisade_api::pb::control::v1::control_client::ControlClient;
use palisade_api::pb::control::v1::{
    AckRequest, Credentials, DeviceStatus, EnrollRequest, FlowReport, Place, Placement,
    ProgramUpdate, RenewRequest, RuleCounters, RulePlacement, SubscribeRequest, ack_request,
};
use palisade_dataplane::pipeline::{Compiled, Pipeline, PipelineConfig, ProgramSlot};
use palisade_hw_profiles::Profile;
use palisade_offload::{PlanOptions, ProgramPlan, Reason, RulePlace, plan_program};
use palisade_pki::{DeviceKey, client_config, identify_pem};
use palisade_ports::Port;
use palisade_program::{Action, DeviceProgram, FORMAT_VERSION, ProgramParts};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing::{error, info, warn};

use crate::forward::{Forwarder, Topology};
use crate::state::{State, StoredCredentials};

/// Largest program update the agent accepts.
const MAX_UPDATE: usize = 256 << 20;
/// Most per-rule placements an acknowledgement lists (the counts are always complete).
const MAX_RULE_PLACEMENTS: usize = 1000;
/// Most per-rule counters a status report lists.
const MAX_RULE_COUNTERS: usize = 1000;
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What an agent needs to know.
#[derive(Clone)]
pub struct Settings {
    /// The fleet manager's gRPC address, `https://HOST:PORT`.
    pub manager: String,
    /// The fleet CA certificate file (used to enroll; afterwards the state directory holds it).
    pub ca: PathBuf,
    /// The one-time bootstrap token, needed only to enroll.
    pub token: Option<String>,
    /// The device's name.
    pub name: String,
    /// The state directory.
    pub state: PathBuf,
    /// The hardware profile.
    pub profile: Arc<Profile>,
    /// Time between status reports.
    pub status_every: Duration,
    /// IPFIX collectors that get every session record too (besides the manager).
    pub ipfix_export: Vec<SocketAddr>,
}

/// Most session records waiting for the manager (the oldest are dropped beyond).
const FLOW_QUEUE: usize = 200_000;
/// Records per `ReportFlows` call.
const FLOW_BATCH: usize = 5_000;
/// How often queued records are sent.
const FLOW_REPORT_EVERY: Duration = Duration::from_millis(500);

/// The program a device runs before it ever got one: no endpoints, everything dropped.
fn nothing_yet(device: &str) -> Result<DeviceProgram> {
    Ok(DeviceProgram::new(ProgramParts {
        format: FORMAT_VERSION,
        device: device.to_string(),
        generation: 0,
        endpoints: Vec::new(),
        address_sets: Vec::new(),
        tiers: Vec::new(),
        foreign: Action::Deny,
    })?)
}

/// Counters the dataplane thread publishes for status reports.
#[derive(Default, Clone)]
struct Counters {
    sessions: u64,
    packets: u64,
    dropped: u64,
    rules: Vec<RuleCounters>,
    /// Sessions created, and created denied, since start.
    created: u64,
    denied: u64,
    /// Each port's counters.
    ports: Vec<(String, palisade_ports::PortStats)>,
}

/// What the control side shares with the dataplane thread.
struct Engine {
    name: String,
    profile: Arc<Profile>,
    slot: Arc<ProgramSlot>,
    /// The program applied (None while running the drop-everything placeholder).
    applied: Mutex<Option<Arc<DeviceProgram>>>,
    placement: Mutex<Placement>,
    /// Hardware table entries used by the applied program, and the engine's capacity.
    table: Mutex<(u64, u64)>,
    /// The L7 services and mirror destinations this device has a port for.
    services: std::collections::BTreeSet<String>,
    mirrors: std::collections::BTreeSet<String>,
    /// Where SNMP notifications go, once an SNMP agent runs.
    traps: Mutex<Option<tokio::sync::mpsc::UnboundedSender<palisade_snmp::Notification>>>,
    /// Whether the manager's program stream is up.
    connected: AtomicBool,
    counters: Mutex<Counters>,
    /// Session records waiting for the manager.
    flows: Arc<flows::FlowQueue>,
    /// Session records waiting for the IPFIX exporter, if there is one.
    ipfix: Option<Arc<flows::FlowQueue>>,
    stop: AtomicBool,
}

impl Engine {
    fn placement(&self) -> Placement {
        self.placement
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sends an SNMP notification, if an SNMP agent runs.
    fn trap(&self, notification: palisade_snmp::Notification) {
        if let Some(tx) = self
            .traps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = tx.send(notification);
        }
    }

    fn counters(&self) -> Counters {
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn applied(&self) -> Option<Arc<DeviceProgram>> {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn dataplane(mut forwarder: Forwarder, engine: Arc<Engine>) {
    let started = Instant::now();
    let epoch_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let queues = std::iter::once(&engine.flows)
        .chain(engine.ipfix.as_ref())
        .cloned()
        .collect();
    let mut sink = flows::FlowSink::new(queues, &engine.name, epoch_ms);
    let mut last_publish = started;
    let mut last_error: Option<Instant> = None;
    while !engine.stop.load(Ordering::Relaxed) {
        let busy = match forwarder.poll_with(started.elapsed().as_nanos() as u64, &mut sink) {
            Ok(b) => b,
            Err(e) => {
                if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    error!("port error: {e:#}");
                    last_error = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(10));
                false
            }
        };
        if last_publish.elapsed() >= Duration::from_millis(500) {
            let mut c = counters(forwarder.pipeline());
            c.ports = forwarder.port_stats();
            *engine.counters.lock().unwrap_or_else(|e| e.into_inner()) = c;
            last_publish = Instant::now();
        }
        if !busy {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

fn counters(pipeline: &Pipeline) -> Counters {
    let c = pipeline.counters();
    let mut rules: Vec<RuleCounters> = pipeline
        .rule_counters()
        .into_iter()
        .filter(|(_, r)| r.connections > 0)
        .map(|(id, r)| RuleCounters {
            rule_id: id.to_string(),
            connections: r.connections,
            packets: r.packets,
            bytes: r.bytes,
        })
        .collect();
    rules.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.rule_id.cmp(&b.rule_id)));
    rules.truncate(MAX_RULE_COUNTERS);
    let sessions = pipeline.sessions().counters();
    Counters {
        sessions: pipeline.sessions().len() as u64,
        packets: c.frames,
        dropped: c.dropped.values().sum(),
        rules,
        created: sessions.created,
        denied: sessions.denied,
        ports: Vec::new(),
    }
}

/// Hardware table entries a plan uses, and the capacity of the engine it uses (0 when it
/// uses none).
fn table_use(plan: &ProgramPlan, profile: &Profile) -> (u64, u64) {
    let used = (plan.egress.entries.len() + plan.ingress.entries.len()) as u64;
    let capacity = [&plan.egress.engine, &plan.ingress.engine]
        .into_iter()
        .flatten()
        .next()
        .and_then(|name| profile.engines().iter().find(|e| &e.name == name))
        .map_or(0, |e| e.capacity.get());
    (used, capacity)
}

/// Whether the plan left a rule in software because the hardware table had no room for it:
/// the table is full for this program even when its count is a little short of the
/// capacity (each direction gets a share of it, rounded down, and a rule that does not fit
/// whole leaves its share's last entries unused).
fn table_full(plan: &ProgramPlan) -> bool {
    [&plan.egress, &plan.ingress]
        .into_iter()
        .flat_map(|p| &p.placements)
        .any(|p| {
            matches!(
                p.place,
                palisade_offload::Place::Software(Reason::CapacityExhausted { .. })
            )
        })
}

/// The acknowledgement's placement of a plan.
fn placement(plan: &ProgramPlan, profile: &str) -> Placement {
    let mut p = Placement {
        profile: profile.to_string(),
        ..Placement::default()
    };
    for r in &plan.rules {
        let (place, reason) = match &r.place {
            RulePlace::Hardware { .. } => {
                p.hardware += 1;
                (Place::Hardware, None)
            }
            RulePlace::Split { reason, .. } => {
                p.split += 1;
                (Place::Split, Some(reason))
            }
            RulePlace::Software { reason } => {
                p.software += 1;
                (Place::Software, Some(reason))
            }
        };
        if p.rules.len() < MAX_RULE_PLACEMENTS {
            p.rules.push(RulePlacement {
                rule_id: r.id.clone(),
                place: place as i32,
                reason: reason.cloned().unwrap_or_default(),
            });
        }
    }
    p
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Why a round with the manager ended.
enum Failure {
    /// Worth retrying (manager away, stream broken).
    Retry(anyhow::Error),
    /// Retrying cannot help; the operator must act.
    Fatal(anyhow::Error),
}

fn retry(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Retry(e.into())
}

/// Whether a refusal from the manager is final.
fn is_final(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::PermissionDenied | Code::Unauthenticated | Code::InvalidArgument
    )
}

fn status_error(what: &str, status: &Status) -> anyhow::Error {
    let mut message = status.message().to_string();
    if message.is_empty() {
        message = format!("{:?}", status.code());
    }
    // Transport errors hide the cause (e.g. the server's TLS alert) in the source chain.
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    anyhow!("{what}: {message}")
}

struct Agent {
    config: Settings,
    state: State,
    engine: Arc<Engine>,
}

impl Agent {
    /// Credentials to connect with: stored ones, or new ones from enrolling.
    async fn credentials(&self) -> Result<StoredCredentials, Failure> {
        if let Some(c) = self.state.credentials().map_err(Failure::Fatal)? {
            let id = identify_pem(&c.cert_pem)
                .map_err(|e| Failure::Fatal(anyhow!("the stored certificate: {e}")))?;
            if id.identity != palisade_pki::Identity::Device(self.config.name.clone()) {
                return Err(Failure::Fatal(anyhow!(
                    "the state directory {} holds the credentials of {}, not of device `{}`; \
                     use another --state",
                    self.state.dir().display(),
                    id.identity,
                    self.config.name
                )));
            }
            if id.not_after > SystemTime::now() {
                return Ok(c);
            }
            if self.config.token.is_none() {
                return Err(Failure::Fatal(anyhow!(
                    "the device certificate expired; create a new token with \
                     `fleet-manager token create --device {}` and start with --token",
                    self.config.name
                )));
            }
            info!("the device certificate expired; enrolling again with the token");
        }
        self.enroll().await
    }

    async fn enroll(&self) -> Result<StoredCredentials, Failure> {
        let Some(token) = &self.config.token else {
            return Err(Failure::Fatal(anyhow!(
                "device `{}` is not enrolled: give --token (create one with \
                 `fleet-manager token create --device {}`)",
                self.config.name,
                self.config.name
            )));
        };
        let ca_pem = std::fs::read_to_string(&self.config.ca)
            .with_context(|| format!("reading the CA certificate {}", self.config.ca.display()))
            .map_err(Failure::Fatal)?;
        let tls = client_config(&ca_pem, None)
            .map_err(|e| Failure::Fatal(anyhow!("{}: {e}", self.config.ca.display())))?;
        let channel = palisade_pki::channel(&self.config.manager, tls)
            .await
            .map_err(retry)?;
        let key = DeviceKey::generate().map_err(|e| Failure::Fatal(e.into()))?;
        let csr_pem = key
            .csr_pem(&self.config.name)
            .map_err(|e| Failure::Fatal(e.into()))?;
        let response = ControlClient::new(channel)
            .enroll(EnrollRequest {
                device: self.config.name.clone(),
                token: token.clone(),
                csr_pem,
            })
            .await;
        let creds = match response {
            Ok(r) => r.into_inner(),
            Err(s) if is_final(&s) => {
                return Err(Failure::Fatal(status_error(
                    "the manager refused to enroll this device",
                    &s,
                )));
            }
            Err(s) => return Err(Failure::Retry(status_error("enrolling", &s))),
        };
        let stored = self.store(&key, creds).map_err(Failure::Fatal)?;
        info!(device = %self.config.name, "enrolled");
        Ok(stored)
    }

    fn store(&self, key: &DeviceKey, creds: Credentials) -> Result<StoredCredentials> {
        let stored = StoredCredentials {
            key_pem: key.key_pem(),
            cert_pem: creds.certificate_pem,
            ca_pem: creds.ca_pem,
            renew_after_unix: creds.renew_after_unix,
        };
        self.state.save_credentials(&stored, creds.not_after_unix)?;
        Ok(stored)
    }

    /// One connected round: subscribe, apply what comes, report, renew. Returns when the
    /// certificate was renewed (reconnect with it) or fails.
    async fn connected(&self, creds: &StoredCredentials, up: &mut bool) -> Result<(), Failure> {
        let tls = client_config(&creds.ca_pem, Some((&creds.cert_pem, &creds.key_pem)))
            .map_err(|e| Failure::Fatal(anyhow!("the stored credentials: {e}")))?;
        let channel = palisade_pki::channel(&self.config.manager, tls)
            .await
            .map_err(retry)?;
        let mut client = client(channel);
        let applied = self.engine.applied();
        let request = SubscribeRequest {
            applied_generation: applied.as_ref().map_or(0, |p| p.generation()),
            applied_hash: applied
                .as_ref()
                .map(|p| p.hash().0.to_vec())
                .unwrap_or_default(),
            profile: self.engine.profile.name().to_string(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
        };
        let mut stream = match client.subscribe(request).await {
            Ok(r) => r.into_inner(),
            Err(s) => return Err(Failure::Retry(status_error("subscribing", &s))),
        };
        info!(manager = %self.config.manager, "connected to the fleet manager");
        *up = true;
        self.engine.connected.store(true, Ordering::Relaxed);
        // Say again what runs here: an acknowledgement lost with a manager that died before
        // recording it would otherwise leave its commit pending for ever.
        if let Some(p) = &applied {
            let placement = self.engine.placement();
            client
                .ack(AckRequest {
                    generation: p.generation(),
                    hash: p.hash().0.to_vec(),
                    result: Some(ack_request::Result::Applied(placement)),
                })
                .await
                .map_err(|s| Failure::Retry(status_error("acknowledging", &s)))?;
        }
        let renew_in = Duration::from_secs((creds.renew_after_unix - now_unix()).max(0) as u64);
        let renew_at = tokio::time::Instant::now() + renew_in;
        let mut status = tokio::time::interval(self.config.status_every);
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut flows = tokio::time::interval(FLOW_REPORT_EVERY);
        flows.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = stream.message() => match message {
                    Ok(Some(update)) => self.apply(&mut client, update).await?,
                    Ok(None) => return Err(retry(anyhow!("the manager closed the program stream"))),
                    Err(s) => return Err(Failure::Retry(status_error("the program stream broke", &s))),
                },
                _ = status.tick() => {
                    if let Err(s) = client.report_status(self.status()).await {
                        warn!("status report failed: {}", status_error("reporting status", &s));
                    }
                }
                _ = flows.tick() => self.report_flows(&mut client).await,
                () = tokio::time::sleep_until(renew_at) => {
                    return self.renew(&mut client).await;
                }
            }
        }
    }

    async fn renew(&self, client: &mut ControlClient<Channel>) -> Result<(), Failure> {
        let key = DeviceKey::generate().map_err(|e| Failure::Fatal(e.into()))?;
        let csr_pem = key
            .csr_pem(&self.config.name)
            .map_err(|e| Failure::Fatal(e.into()))?;
        match client.renew(RenewRequest { csr_pem }).await {
            Ok(r) => {
                let stored = self.store(&key, r.into_inner()).map_err(Failure::Fatal)?;
                info!(
                    renew_after_unix = stored.renew_after_unix,
                    "certificate renewed; reconnecting with it"
                );
                Ok(())
            }
            Err(s) => Err(Failure::Retry(status_error("renewing the certificate", &s))),
        }
    }

    /// Sends the queued session records; what the manager does not acknowledge goes back
    /// to the queue for the next round.
    async fn report_flows(&self, client: &mut ControlClient<Channel>) {
        loop {
            let batch = self.engine.flows.take(FLOW_BATCH);
            if batch.is_empty() {
                return;
            }
            let full = batch.len() == FLOW_BATCH;
            let report = FlowReport {
                records: batch.iter().map(palisade_api::flows::to_pb).collect(),
            };
            if let Err(s) = client.report_flows(report).await {
                if s.code() == tonic::Code::InvalidArgument {
                    // The manager refuses these records as they are: sending them again
                    // would block every later record behind them.
                    self.engine
                        .flows
                        .dropped
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    warn!(
                        records = batch.len(),
                        "flow records refused by the manager, dropped: {}",
                        status_error("reporting flows", &s)
                    );
                    continue;
                }
                warn!(
                    records = batch.len(),
                    "flow report failed (kept for the next one): {}",
                    status_error("reporting flows", &s)
                );
                self.engine.flows.put_back(batch);
                return;
            }
            if !full {
                return;
            }
        }
    }

    fn status(&self) -> DeviceStatus {
        let applied = self.engine.applied();
        let c = self.engine.counters();
        DeviceStatus {
            generation: applied.as_ref().map_or(0, |p| p.generation()),
            hash: applied
                .as_ref()
                .map(|p| p.hash().0.to_vec())
                .unwrap_or_default(),
            placement: Some(self.engine.placement()),
            sessions: c.sessions,
            packets: c.packets,
            dropped: c.dropped,
            rules: c.rules,
        }
    }

    /// Verifies, plans, compiles, stores, installs and acknowledges one update.
    async fn apply(
        &self,
        client: &mut ControlClient<Channel>,
        update: ProgramUpdate,
    ) -> Result<(), Failure> {
        let generation = update.generation;
        let hash = update.hash.clone();
        let current = self.engine.applied();
        let engine = Arc::clone(&self.engine);
        let started = Instant::now();
        let prepared = tokio::task::spawn_blocking(move || prepare(&engine, &update, current))
            .await
            .map_err(|e| Failure::Fatal(anyhow!("the apply task failed: {e}")))?;
        let result = match prepared {
            Ok(Prepared {
                program,
                compiled,
                placement,
                table,
                table_full,
            }) => {
                self.state.save_program(&program).map_err(Failure::Fatal)?;
                *self.engine.table.lock().unwrap_or_else(|e| e.into_inner()) = table;
                if table_full {
                    self.engine
                        .trap(palisade_snmp::Notification::HardwareTableFull {
                            device: self.engine.name.clone(),
                            used: table.0,
                            capacity: table.1,
                        });
                }
                let program = Arc::new(program);
                self.engine.slot.install(compiled);
                *self
                    .engine
                    .applied
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&program));
                *self
                    .engine
                    .placement
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = placement.clone();
                info!(
                    generation,
                    hash = %program.hash(),
                    rules = program.rule_count(),
                    hardware = placement.hardware,
                    split = placement.split,
                    software = placement.software,
                    ms = started.elapsed().as_millis() as u64,
                    "program applied"
                );
                ack_request::Result::Applied(placement)
            }
            Err(Refusal::WrongBase(e)) => {
                // The manager's idea of what runs here is stale: subscribe again, saying.
                return Err(retry(anyhow!("{e}; subscribing again")));
            }
            Err(Refusal::Bad(e)) => {
                warn!(
                    generation,
                    "program refused, the previous one keeps running: {e:#}"
                );
                self.engine.trap(palisade_snmp::Notification::ApplyFailed {
                    device: self.engine.name.clone(),
                    generation,
                    reason: format!("{e:#}"),
                });
                ack_request::Result::Error(format!("{e:#}"))
            }
        };
        client
            .ack(AckRequest {
                generation,
                hash,
                result: Some(result),
            })
            .await
            .map_err(|s| Failure::Retry(status_error("acknowledging", &s)))?;
        Ok(())
    }
}

/// A program ready to switch to: verified, planned and compiled.
struct Prepared {
    program: DeviceProgram,
    compiled: Compiled,
    placement: Placement,
    /// Hardware table entries used, and the capacity.
    table: (u64, u64),
    /// Whether rules stayed in software for want of room in the hardware table.
    table_full: bool,
}

enum Refusal {
    WrongBase(WireError),
    Bad(anyhow::Error),
}

fn prepare(
    engine: &Engine,
    update: &ProgramUpdate,
    current: Option<Arc<DeviceProgram>>,
) -> Result<Prepared, Refusal> {
    let program = match receive(update, current.as_deref()) {
        Ok(p) => p,
        Err(e @ WireError::WrongBase { .. }) => return Err(Refusal::WrongBase(e)),
        Err(e) => return Err(Refusal::Bad(anyhow!("the update does not verify: {e}"))),
    };
    if program.device() != engine.name {
        return Err(Refusal::Bad(anyhow!(
            "the program is for device `{}`, this is `{}`",
            program.device(),
            engine.name
        )));
    }
    // A redirect or mirror this device has no port for would drop or lose those packets
    // while the commit reads "enforced": refuse the program, so the operator hears of it.
    for rule in program.tiers().iter().flat_map(|t| &t.rules) {
        for (what, name, known, flag) in [
            (
                "redirects to the L7 service",
                &rule.redirect,
                &engine.services,
                "--service",
            ),
            ("mirrors to", &rule.mirror, &engine.mirrors, "--mirror"),
        ] {
            if let Some(name) = name.as_ref().filter(|n| !known.contains(*n)) {
                return Err(Refusal::Bad(anyhow!(
                    "rule {} {what} `{name}`, which this device has no port for ({flag} {name}=IFACE)",
                    rule.id
                )));
            }
        }
    }
    let plan = plan_program(&program, &engine.profile, PlanOptions::default())
        .map_err(|e| Refusal::Bad(anyhow!("offload planning failed: {e}")))?;
    let placement = placement(&plan, engine.profile.name());
    let table = table_use(&plan, &engine.profile);
    let compiled = Compiled::new(program.clone())
        .map_err(|e| Refusal::Bad(anyhow!("the program does not compile: {e}")))?;
    Ok(Prepared {
        program,
        compiled,
        placement,
        table,
        table_full: table_full(&plan),
    })
}

fn client(channel: Channel) -> ControlClient<Channel> {
    ControlClient::new(channel)
        .max_decoding_message_size(MAX_UPDATE)
        .max_encoding_message_size(16 << 20)
}

async fn control(agent: Agent) -> Result<()> {
    let mut backoff = Duration::from_millis(250);
    loop {
        let creds = match agent.credentials().await {
            Ok(c) => Some(c),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry(e)) => {
                warn!("{e:#}; retrying in {:.1} s", backoff.as_secs_f64());
                None
            }
        };
        if let Some(creds) = creds {
            let mut up = false;
            let started = Instant::now();
            let result = agent.connected(&creds, &mut up).await;
            agent.engine.connected.store(false, Ordering::Relaxed);
            match result {
                Ok(()) => {
                    backoff = Duration::from_millis(250);
                    continue;
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(e)) => {
                    if up && started.elapsed() > Duration::from_secs(10) {
                        backoff = Duration::from_millis(250);
                    }
                    warn!(
                        "{e:#}; still enforcing generation {}; retrying in {:.1} s",
                        agent.engine.applied().map_or(0, |p| p.generation()),
                        backoff.as_secs_f64()
                    );
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Sends queued session records to the IPFIX collectors every [`FLOW_REPORT_EVERY`] (UDP:
/// what a collector misses is gone; a send error is logged at most once a minute).
async fn export_ipfix(
    mut exporter: palisade_ipfix::UdpExporter,
    queue: Arc<flows::FlowQueue>,
    engine: Arc<Engine>,
) {
    let mut last_error: Option<Instant> = None;
    let mut tick = tokio::time::interval(FLOW_REPORT_EVERY);
    while !engine.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        loop {
            let batch = queue.take(FLOW_BATCH);
            if batch.is_empty() {
                break;
            }
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            if let Err(e) = exporter.send(&batch, now)
                && last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(60))
            {
                warn!("IPFIX export: {e}");
                last_error = Some(Instant::now());
            }
        }
    }
}

/// The ports an agent runs on and how frames move between them.
#[derive(Default)]
pub struct Wiring {
    /// The ports.
    pub ports: Vec<Box<dyn Port>>,
    /// Pairs of port names: a frame received on one goes out of the other when allowed.
    pub links: Vec<[String; 2]>,
    /// L7 services (a `redirect` rule's name) -> the port it is reached through; frames
    /// the service sends back are forwarded by destination MAC.
    pub services: std::collections::HashMap<String, String>,
    /// Mirror destinations (a `mirror` rule's name) -> port.
    pub mirrors: std::collections::HashMap<String, String>,
}

/// A running agent.
pub struct Running {
    engine: Arc<Engine>,
    dataplane: Option<std::thread::JoinHandle<()>>,
    control: tokio::task::JoinHandle<Result<()>>,
    snmp: Option<palisade_snmp::SnmpHandle>,
}

/// What an agent enforces and what its dataplane counted, for people and tests.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The applied program's generation (0: none yet, everything dropped).
    pub generation: u64,
    /// Its content hash.
    pub hash: Option<palisade_program::ContentHash>,
    /// Rules in hardware, split, in software.
    pub placement: (u32, u32, u32),
    /// Live sessions.
    pub sessions: u64,
    /// Frames seen.
    pub packets: u64,
    /// Frames dropped.
    pub dropped: u64,
}

impl Running {
    /// The device's name.
    pub fn name(&self) -> &str {
        &self.engine.name
    }

    /// What it enforces now and its counters (refreshed twice a second).
    pub fn snapshot(&self) -> Snapshot {
        let applied = self.engine.applied();
        let placement = self.engine.placement();
        let c = self.engine.counters();
        Snapshot {
            generation: applied.as_ref().map_or(0, |p| p.generation()),
            hash: applied.as_ref().map(|p| p.hash()),
            placement: (placement.hardware, placement.split, placement.software),
            sessions: c.sessions,
            packets: c.packets,
            dropped: c.dropped,
        }
    }

    /// Waits until the agent gives up (an error retrying cannot fix, e.g. a refused
    /// token); it never ends otherwise.
    pub async fn finished(&mut self) -> Result<()> {
        match (&mut self.control).await {
            Ok(result) => result,
            Err(e) => Err(anyhow!("the agent's task failed: {e}")),
        }
    }

    /// Serves SNMP (SNMPv2-MIB, IF-MIB for the agent's ports, PALISADE-MIB's device group)
    /// as `config` says, and sends its notifications (apply failed, hardware table full) to
    /// the configured sinks. Fails when the address cannot be bound.
    pub async fn serve_snmp(&mut self, config: palisade_snmp::SnmpConfig) -> Result<SocketAddr> {
        let source = Arc::new(snmp::AgentMib::new(Arc::clone(&self.engine)));
        let handle = palisade_snmp::serve(config, source)
            .await
            .context("starting the SNMP agent")?;
        let addr = handle.local_addr();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        *self.engine.traps.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        let handle = Arc::new(handle);
        let sender = Arc::clone(&handle);
        tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                let report = sender.send_trap(&n).await;
                if !report.all_sent() {
                    warn!("SNMP notification not delivered to every sink: {report:?}");
                }
            }
        });
        info!(%addr, "SNMP agent listening");
        self.snmp = Arc::into_inner(handle);
        Ok(addr)
    }

    /// Stops the control task and the dataplane.
    pub fn stop(mut self) {
        self.control.abort();
        self.engine.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.dataplane.take() {
            let _ = t.join();
        }
    }
}

/// Starts an agent on its [`Wiring`], inside the current tokio runtime: it restores the program in its state directory (or drops everything until
/// the first program), starts the dataplane thread, then enrolls if it must and follows
/// the manager.
pub fn start(settings: Settings, wiring: Wiring) -> Result<Running> {
    let Wiring {
        ports,
        links,
        services,
        mirrors,
    } = wiring;
    let state = State::open(&settings.state)?;
    let profile = Arc::clone(&settings.profile);
    let stored = match state.program() {
        Ok(Some(p)) if p.device() == settings.name => Some(p),
        Ok(Some(p)) => bail!(
            "the state directory {} holds a program for device `{}`, not `{}`; use another --state",
            settings.state.display(),
            p.device(),
            settings.name
        ),
        Ok(None) => None,
        Err(e) => {
            warn!(
                "{e:#}; starting without it (dropping everything until the manager sends a program)"
            );
            None
        }
    };
    let mut table = (0, 0);
    let (initial, placement) = match &stored {
        Some(p) => match plan_program(p, &profile, PlanOptions::default()) {
            Ok(plan) => {
                table = table_use(&plan, &profile);
                (p.clone(), placement(&plan, profile.name()))
            }
            Err(e) => {
                warn!(
                    "offload planning of the stored program failed ({e}); its rules run in software"
                );
                (p.clone(), Placement::default())
            }
        },
        None => (nothing_yet(&settings.name)?, Placement::default()),
    };
    let slot = Arc::new(ProgramSlot::new(Compiled::new(initial)?));
    match &stored {
        Some(p) => info!(
            device = %settings.name,
            generation = p.generation(),
            hash = %p.hash(),
            "enforcing the program stored in the state directory"
        ),
        None => {
            info!(device = %settings.name, "no program yet: dropping all traffic until the manager sends one")
        }
    }
    let names: Vec<String> = ports.iter().map(|p| p.name().to_string()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let topology = Topology::new(&names, &links, &services, &mirrors)?;
    let pipeline = Pipeline::new(PipelineConfig::default(), Arc::clone(&slot));
    let forwarder = Forwarder::new(ports, topology, pipeline);
    let engine = Arc::new(Engine {
        name: settings.name.clone(),
        profile,
        slot,
        applied: Mutex::new(stored.map(Arc::new)),
        placement: Mutex::new(placement),
        table: Mutex::new(table),
        services: services.keys().cloned().collect(),
        mirrors: mirrors.keys().cloned().collect(),
        traps: Mutex::new(None),
        connected: AtomicBool::new(false),
        counters: Mutex::new(Counters::default()),
        flows: Arc::new(flows::FlowQueue::new(FLOW_QUEUE)),
        ipfix: (!settings.ipfix_export.is_empty())
            .then(|| Arc::new(flows::FlowQueue::new(FLOW_QUEUE))),
        stop: AtomicBool::new(false),
    });
    if let Some(queue) = &engine.ipfix {
        let exporter = palisade_ipfix::UdpExporter::new(
            palisade_ipfix::Exporter::new(palisade_ipfix::ExporterConfig::default())
                .map_err(|e| anyhow!("IPFIX exporter: {e}"))?,
            settings.ipfix_export.clone(),
        )
        .context("opening the IPFIX exporter's socket")?;
        tokio::spawn(export_ipfix(
            exporter,
            Arc::clone(queue),
            Arc::clone(&engine),
        ));
        info!(collectors = ?settings.ipfix_export, "exporting session records as IPFIX");
    }
    let dataplane = {
        let engine = Arc::clone(&engine);
        std::thread::Builder::new()
            .name(format!("dataplane-{}", settings.name))
            .spawn(move || dataplane(forwarder, engine))
            .context("starting the dataplane thread")?
    };
    info!(
        device = %settings.name,
        ports = %names.join(", "),
        profile = %engine.profile.name(),
        manager = %settings.manager,
        "vrouter agent started"
    );
    let agent = Agent {
        config: settings,
        state,
        engine: Arc::clone(&engine),
    };
    Ok(Running {
        engine,
        dataplane: Some(dataplane),
        control: tokio::spawn(control(agent)),
        snmp: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_program_drops_everything() {
        let p = nothing_yet("d").unwrap();
        assert_eq!(p.foreign(), Action::Deny);
        assert_eq!(p.rule_count(), 0);
    }
}
