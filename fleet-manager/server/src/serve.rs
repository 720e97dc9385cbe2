//! Starting the fleet manager: the data directory, the CA and the server certificate, the
//! admin credentials, and the listeners.
//!
//! Everything lives under the data directory: `state.redb` (the embedded store), `ca.pem`
//! and `ca.key` (the fleet CA, created on first start), and `admin.token` (the first admin
//! API token, created on first start, mode 0600). The server certificate is issued afresh
//! at every start for the names it listens on and is rotated by a background task long
//! before it expires, without a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_api::pb::control::v1::control_server::ControlServer;
use palisade_api::pb::orchestrator::v1::orchestrator_server::OrchestratorServer;
use palisade_pki::{Ca, ServerTls, Validity, incoming};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::control::ControlService;
use crate::fleet::{Fleet, FleetConfig, Role, now_ms};
use crate::hub::{Hub, HubEvent};
use crate::orchestrator::OrchestratorService;
use crate::service::Core;
use crate::store::RedbStore;

/// The admin token file in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The store file in the data directory.
pub const STATE_FILE: &str = "state.redb";

/// Largest request a device may send (acks, status reports, CSRs).
const MAX_CONTROL_MESSAGE: usize = 1 << 20;
/// Largest request an orchestrator may send (policy documents).
const MAX_ORCHESTRATOR_MESSAGE: usize = 16 << 20;
/// Largest program update sent to a device.
const MAX_PROGRAM_MESSAGE: usize = 256 << 20;
/// How long a shutdown waits for open calls.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Default lifetime of the server certificate; it is rotated at half of it.
pub const SERVER_CERT_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// How to run.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The data directory.
    pub data: PathBuf,
    /// gRPC listen address (devices and orchestrators).
    pub grpc_listen: SocketAddr,
    /// REST listen address, if any.
    pub http_listen: Option<SocketAddr>,
    /// Extra names (DNS or IP) for the server certificate, besides localhost and the
    /// listen addresses.
    pub hosts: Vec<String>,
    /// Fleet behaviour.
    pub fleet: FleetConfig,
    /// Lifetime of the server certificate (rotated at half of it, without a restart);
    /// [`SERVER_CERT_VALIDITY`] by default.
    pub server_cert_validity: Duration,
    /// Flow telemetry.
    pub telemetry: TelemetryConfig,
    /// SNMP (the fleet's MIB, device-lost notifications), if any.
    pub snmp: Option<palisade_snmp::SnmpConfig>,
}

/// Where flows go and how long they stay.
#[derive(Clone)]
pub struct TelemetryConfig {
    /// The flow store; `None`: the embedded one, `flows.redb` in the data directory.
    pub store: Option<Arc<dyn palisade_flows::FlowStore>>,
    /// Flows older than this are dropped (checked every minute).
    pub retention: Duration,
    /// Where the IPFIX / NetFlow v9 collector listens (UDP), if anywhere.
    pub ipfix_listen: Option<SocketAddr>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            store: None,
            retention: Duration::from_secs(7 * 24 * 3600),
            ipfix_listen: None,
        }
    }
}

impl std::fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field("store", &self.store.as_ref().map(|_| "custom"))
            .field("retention", &self.retention)
            .field("ipfix_listen", &self.ipfix_listen)
            .finish()
    }
}

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum ServeError {
    /// A file or socket problem.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// Something else, already explained.
    #[error("{0}")]
    Other(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// A running server.
pub struct Running {
    /// Where gRPC listens.
    pub grpc_addr: SocketAddr,
    /// Where REST listens.
    pub http_addr: Option<SocketAddr>,
    /// The CA certificate file.
    pub ca_file: PathBuf,
    /// The admin token file.
    pub admin_token_file: PathBuf,
    /// Whether this start created the CA and the admin token.
    pub first_start: bool,
    /// The shared core (for tests and embedding).
    pub core: Arc<Core>,
    /// Where SNMP listens, if it does.
    pub snmp_addr: Option<SocketAddr>,
    /// Where the IPFIX collector listens, if it does.
    pub ipfix_addr: Option<SocketAddr>,
    snmp: Option<Arc<palisade_snmp::SnmpHandle>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops the listeners and waits for open calls to finish, for at most
    /// [`SHUTDOWN_GRACE`]: device streams never finish by themselves, so they are cut then
    /// (devices reconnect to the next manager).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // The trap task holds the other reference; dropping the last one stops the agent.
        drop(self.snmp);
        let aborts: Vec<_> = self.tasks.iter().map(|t| t.abort_handle()).collect();
        let all = async {
            for t in self.tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
            for a in aborts {
                a.abort();
            }
        }
    }

    /// Waits until a listener ends (it should not).
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn write_secret(path: &Path, text: &str) -> Result<(), ServeError> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut f = options
        .open(path)
        .map_err(io(format!("creating {}", path.display())))?;
    writeln!(f, "{text}").map_err(io(format!("writing {}", path.display())))
}

/// Starts the fleet manager.
pub async fn start(config: ServeConfig) -> Result<Running, ServeError> {
    std::fs::create_dir_all(&config.data).map_err(io(format!(
        "creating the data directory {}",
        config.data.display()
    )))?;
    let (ca, created) =
        Ca::load_or_create(&config.data).map_err(|e| ServeError::Other(e.to_string()))?;
    let ca = Arc::new(ca);
    let store = RedbStore::open(&config.data.join(STATE_FILE))
        .map_err(|e| ServeError::Other(e.to_string()))?;
    let fleet_config = config.fleet.clone();
    let mut fleet = tokio::task::spawn_blocking(move || Fleet::open(Arc::new(store), fleet_config))
        .await
        .map_err(|e| ServeError::Other(e.to_string()))?
        .map_err(|e| ServeError::Other(format!("loading the fleet state: {e}")))?;
    let admin_token_file = config.data.join(ADMIN_TOKEN_FILE);
    let mut first_start = created;
    if !fleet.has_users() {
        let token = fleet
            .create_user_token("admin", Role::Admin)
            .map_err(|e| ServeError::Other(e.to_string()))?;
        if admin_token_file.exists() {
            std::fs::remove_file(&admin_token_file)
                .map_err(io(format!("replacing {}", admin_token_file.display())))?;
        }
        write_secret(&admin_token_file, &token)?;
        first_start = true;
    }

    let grpc_listener = TcpListener::bind(config.grpc_listen)
        .await
        .map_err(io(format!("listening on {}", config.grpc_listen)))?;
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(io("reading the gRPC address"))?;
    let http_listener = match config.http_listen {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .map_err(io(format!("listening on {a}")))?,
        ),
        None => None,
    };
    let http_addr = match &http_listener {
        Some(l) => Some(l.local_addr().map_err(io("reading the REST address"))?),
        None => None,
    };

    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    for a in [Some(grpc_addr), http_addr].into_iter().flatten() {
        if !a.ip().is_unspecified() {
            hosts.push(a.ip().to_string());
        }
    }
    hosts.extend(config.hosts.iter().cloned());
    hosts.sort();
    hosts.dedup();
    let server_cert = ca
        .issue_server(&hosts, Validity::for_duration(config.server_cert_validity))
        .map_err(|e| ServeError::Other(e.to_string()))?;
    let tls = ServerTls::new(
        ca.cert_pem(),
        &server_cert.cert.pem,
        &server_cert.key_pem,
        None,
    )
    .map_err(|e| ServeError::Other(e.to_string()))?;

    let hub = Arc::new(Hub::new());
    for program in fleet.programs().values() {
        hub.publish(Arc::clone(program));
    }
    let store: Arc<dyn palisade_flows::FlowStore> = match &config.telemetry.store {
        Some(s) => Arc::clone(s),
        None => Arc::new(
            palisade_flows::EmbeddedStore::open(&config.data.join("flows.redb"))
                .map_err(|e| ServeError::Other(e.to_string()))?,
        ),
    };
    let telemetry = Arc::new(crate::telemetry::Telemetry::new(store, &fleet));
    let core = Arc::new(Core {
        telemetry,
        fleet: Mutex::new(fleet),
        hub,
        ca: Arc::clone(&ca),
        tls: tls.clone(),
        revoked: Default::default(),
    });
    core.refresh_crl();
    let snmp = match config.snmp.clone() {
        Some(c) => Some(
            crate::snmp::serve(Arc::clone(&core), c)
                .await
                .map_err(ServeError::Other)?,
        ),
        None => None,
    };

    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(serve_grpc(
        Arc::clone(&core),
        grpc_listener,
        tls.clone(),
        shutdown_rx.clone(),
    )));
    if let Some(listener) = http_listener {
        tasks.push(tokio::spawn(crate::rest::serve(
            Arc::clone(&core),
            listener,
            tls.clone(),
            MAX_ORCHESTRATOR_MESSAGE,
            shutdown_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(rotate_server_cert(
        Arc::clone(&ca),
        tls.clone(),
        hosts,
        config.server_cert_validity,
        shutdown_rx.clone(),
    )));
    let ipfix_addr = match config.telemetry.ipfix_listen {
        Some(addr) => {
            let socket = crate::telemetry::bind_ipfix(addr)
                .map_err(io(format!("listening for IPFIX on udp {addr}")))?;
            let bound = socket
                .local_addr()
                .map_err(io("reading the IPFIX address"))?;
            tasks.push(tokio::spawn(crate::telemetry::collect_ipfix(
                Arc::clone(&core.telemetry),
                socket,
                shutdown_rx.clone(),
            )));
            info!(addr = %bound, "IPFIX / NetFlow v9 collector listening");
            Some(bound)
        }
        None => None,
    };
    tasks.push(tokio::spawn(expire_flows(
        Arc::clone(&core),
        config.telemetry.retention,
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(watch_timeouts(Arc::clone(&core), shutdown_rx)));
    info!(%grpc_addr, http = ?http_addr, data = %config.data.display(), "fleet manager started");
    Ok(Running {
        grpc_addr,
        http_addr,
        ca_file: config.data.join(palisade_pki::CA_CERT_FILE),
        admin_token_file,
        first_start,
        core,
        snmp_addr: snmp.as_ref().map(|h| h.local_addr()),
        ipfix_addr,
        snmp,
        shutdown,
        tasks,
    })
}

/// Drops flows older than `retention`, every minute.
async fn expire_flows(core: Arc<Core>, retention: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        let before = crate::fleet::now_ms() - retention.as_millis() as i64;
        match core.telemetry.store.expire(before).await {
            Ok(0) => {}
            Ok(n) => info!(records = n, "flows past their retention dropped"),
            Err(e) => warn!("flow retention: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn serve_grpc(
    core: Arc<Core>,
    listener: TcpListener,
    tls: ServerTls,
    mut shutdown: watch::Receiver<bool>,
) {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ControlServer<ControlService>>().await;
    health
        .set_serving::<OrchestratorServer<OrchestratorService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(palisade_api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the descriptor sets are valid");
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(palisade_api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the descriptor sets are valid");
    let control = ControlServer::new(ControlService::new(Arc::clone(&core)))
        .max_decoding_message_size(MAX_CONTROL_MESSAGE)
        .max_encoding_message_size(MAX_PROGRAM_MESSAGE);
    let orchestrator = OrchestratorServer::new(OrchestratorService::new(Arc::clone(&core)))
        .max_decoding_message_size(MAX_ORCHESTRATOR_MESSAGE)
        .max_encoding_message_size(MAX_PROGRAM_MESSAGE);
    let result = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(control)
        .add_service(orchestrator)
        .serve_with_incoming_shutdown(
            incoming(listener, tls, Duration::from_secs(10)),
            async move {
                let _ = shutdown.wait_for(|s| *s).await;
            },
        )
        .await;
    if let Err(e) = result {
        warn!("the gRPC server stopped: {e}");
    }
}

async fn rotate_server_cert(
    ca: Arc<Ca>,
    tls: ServerTls,
    hosts: Vec<String>,
    validity: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(validity / 2) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        match ca
            .issue_server(&hosts, Validity::for_duration(validity))
            .and_then(|c| tls.rotate(&c.cert.pem, &c.key_pem).map(|()| c.cert.serial))
        {
            Ok(serial) => info!(%serial, "server certificate rotated"),
            Err(e) => warn!("could not rotate the server certificate: {e}"),
        }
    }
}

/// Tells watchers when pending commits time out (their status is computed, so nothing
/// else would announce it).
async fn watch_timeouts(core: Arc<Core>, mut shutdown: watch::Receiver<bool>) {
    let mut pending: Vec<u64> = Vec::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let now = now_ms();
        let still = {
            let fleet = core.fleet.lock().expect("fleet lock");
            fleet.pending_commits(now)
        };
        for g in pending.iter().filter(|g| !still.contains(g)) {
            core.hub.emit(HubEvent::Commit(*g));
        }
        pending = still;
    }
}
