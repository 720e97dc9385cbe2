//! `fleet-manager serve`: the fleet manager server on its embedded store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use palisade_program::Action;
use palisade_server::fleet::FleetConfig;
use palisade_server::serve::{ServeConfig, TelemetryConfig, start};
use tracing::info;

use crate::{Foreign, Output};

/// Arguments of `fleet-manager serve`.
#[derive(clap::Args)]
pub struct Args {
    /// Data directory: the embedded store, the fleet CA, the admin token.
    #[arg(long, env = "PALISADE_DATA")]
    data: PathBuf,
    /// gRPC listen address (devices and orchestrators; mutual TLS for devices).
    #[arg(long, default_value = "127.0.0.1:7443")]
    grpc_listen: SocketAddr,
    /// REST listen address (the orchestrator API as JSON, OpenAPI at /openapi.json; TLS).
    #[arg(long, default_value = "127.0.0.1:7480")]
    http_listen: SocketAddr,
    /// Serve no REST API.
    #[arg(long)]
    no_http: bool,
    /// Extra DNS names or addresses for the server certificate (repeatable), for devices
    /// that reach the manager by another name than its listen address.
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// Seconds a device has to acknowledge a commit before the commit counts as failed.
    #[arg(long, default_value_t = 60.0)]
    ack_timeout: f64,
    /// Hours a device certificate is valid (devices renew at two thirds of it; at least
    /// ten seconds).
    #[arg(long, default_value_t = 24.0)]
    cert_hours: f64,
    /// Hours the server's own certificate is valid; it is replaced at half of it without a
    /// restart (at least ten seconds).
    #[arg(long, default_value_t = 168.0)]
    server_cert_hours: f64,
    /// Verdict devices give traffic touching none of their local endpoints.
    #[arg(long, value_enum, default_value_t = Foreign::Allow)]
    foreign: Foreign,
    /// How long flow records are kept in the embedded flow store (`flows.redb` in the data
    /// directory): 90s, 15m, 2h, 7d, 1w.
    #[arg(long, default_value = "7d", value_parser = palisade_flows::query::parse_duration)]
    flow_retention: Duration,
    /// Collect IPFIX (RFC 7011) and NetFlow v9 on this UDP address, e.g. `0.0.0.0:4739`:
    /// records from vRouters' `--ipfix-export` or any third-party exporter are enriched
    /// with tags and stored like the devices' own reports.
    #[arg(long, value_name = "ADDR:PORT")]
    ipfix_listen: Option<SocketAddr>,
    /// Keep flows in ClickHouse instead of the embedded store: its HTTP interface, e.g.
    /// `http://127.0.0.1:8123` (user and password from PALISADE_CLICKHOUSE_USER and
    /// PALISADE_CLICKHOUSE_PASSWORD). Tables are created if missing.
    #[arg(long, value_name = "URL")]
    clickhouse: Option<String>,
    /// The ClickHouse database of the flows table.
    #[arg(long, default_value = "palisade", requires = "clickhouse")]
    clickhouse_database: String,
    /// Spread flows over a ClickHouse cluster (as named in the servers' `remote_servers`)
    /// through a Distributed table; give its shards with --clickhouse-shard.
    #[arg(long, value_name = "NAME", requires = "clickhouse_shards")]
    clickhouse_cluster: Option<String>,
    /// A shard of --clickhouse-cluster as `URL#DATABASE` (repeatable, in the cluster's
    /// order): each holds a MergeTree table of its part of the flows.
    #[arg(
        long = "clickhouse-shard",
        value_name = "URL#DATABASE",
        requires = "clickhouse_cluster"
    )]
    clickhouse_shards: Vec<String>,
    /// Serve SNMP on this UDP address (e.g. `0.0.0.0:161`): the fleet's devices and their
    /// state (PALISADE-MIB), device-lost notifications; credentials from --snmp-config.
    #[arg(long, value_name = "ADDR:PORT")]
    snmp_listen: Option<SocketAddr>,
    /// SNMP configuration (YAML): communities, v3 users (SHA/AES), views, trap sinks, and
    /// the listen address unless --snmp-listen gives it. See `lib/snmp/examples/snmp.yaml`.
    #[arg(long, value_name = "FILE")]
    snmp_config: Option<PathBuf>,
    /// Output format of the start-up report.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

/// Runs the server until Ctrl-C or SIGTERM.
pub fn run(args: &Args) -> Result<ExitCode> {
    crate::logging();
    let snmp = match (&args.snmp_config, args.snmp_listen) {
        (Some(path), listen) => {
            let mut c = palisade_snmp::SnmpConfig::from_file(path)
                .map_err(|e| anyhow::anyhow!("--snmp-config {}: {e}", path.display()))?;
            if let Some(addr) = listen {
                c.set_listen(addr);
            }
            Some(c)
        }
        (None, Some(_)) => anyhow::bail!(
            "--snmp-listen needs --snmp-config FILE: its communities or v3 users say who may read what"
        ),
        (None, None) => None,
    };
    let config = ServeConfig {
        data: args.data.clone(),
        grpc_listen: args.grpc_listen,
        http_listen: (!args.no_http).then_some(args.http_listen),
        hosts: args.hosts.clone(),
        server_cert_validity: Duration::from_secs_f64((args.server_cert_hours * 3600.0).max(10.0)),
        fleet: FleetConfig {
            foreign: match args.foreign {
                Foreign::Allow => Action::Allow,
                Foreign::Deny => Action::Deny,
            },
            ack_timeout: Duration::from_secs_f64(args.ack_timeout.max(0.1)),
            certificate_validity: Duration::from_secs_f64((args.cert_hours * 3600.0).max(10.0)),
        },
        telemetry: TelemetryConfig {
            store: None,
            retention: args.flow_retention,
            ipfix_listen: args.ipfix_listen,
        },
        snmp,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut config = config;
        if let Some(url) = &args.clickhouse {
            let store =
                palisade_flows_clickhouse::ClickHouseStore::open(&clickhouse_config(url, args)?)
                    .await
                    .with_context(|| format!("opening the ClickHouse flow store at {url}"))?;
            info!(%url, "flows go to ClickHouse");
            config.telemetry.store = Some(std::sync::Arc::new(store));
        }
        let running = start(config).await?;
        let grpc = format!("https://{}", running.grpc_addr);
        let rest = running.http_addr.map(|a| format!("https://{a}"));
        match args.output {
            Output::Json => println!(
                "{}",
                serde_json::json!({
                    "grpc": grpc,
                    "rest": rest,
                    "openapi": rest.as_ref().map(|r| format!("{r}/openapi.json")),
                    "ca": running.ca_file,
                    "admin_token_file": running.admin_token_file,
                    "first_start": running.first_start,
                    "snmp": running.snmp_addr,
                    "ipfix": running.ipfix_addr,
                })
            ),
            Output::Text => {
                println!("fleet manager running (data in {})", args.data.display());
                println!("  gRPC (devices, orchestrators): {grpc}");
                if let Some(r) = &rest {
                    println!("  REST:                          {r}  (OpenAPI: {r}/openapi.json)");
                }
                if let Some(a) = running.snmp_addr {
                    println!("  SNMP:                          udp {a}");
                }
                if let Some(a) = running.ipfix_addr {
                    println!("  IPFIX / NetFlow v9 collector:  udp {a}");
                }
                println!(
                    "  CA certificate:                {}",
                    running.ca_file.display()
                );
                println!(
                    "  admin API token:               {}{}",
                    running.admin_token_file.display(),
                    if running.first_start {
                        " (created now)"
                    } else {
                        ""
                    }
                );
                println!("for the CLI and the agents:");
                println!(
                    "  export PALISADE_SERVER={grpc} PALISADE_CA={} PALISADE_TOKEN_FILE={}",
                    running.ca_file.display(),
                    running.admin_token_file.display()
                );
            }
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        stopped().await;
        info!("stopping");
        running.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The ClickHouse store's configuration from the flags and the environment.
fn clickhouse_config(url: &str, args: &Args) -> Result<palisade_flows_clickhouse::Config> {
    use palisade_flows_clickhouse::{Config, Layout, Shard};
    let mut c = Config::new(url);
    c.database = args.clickhouse_database.clone();
    if let Ok(user) = std::env::var("PALISADE_CLICKHOUSE_USER") {
        c.user = user;
    }
    if let Ok(password) = std::env::var("PALISADE_CLICKHOUSE_PASSWORD") {
        c.password = password;
    }
    if let Some(cluster) = &args.clickhouse_cluster {
        let shards = args
            .clickhouse_shards
            .iter()
            .map(|s| {
                let (url, database) = s.split_once('#').ok_or_else(|| {
                    anyhow::anyhow!("--clickhouse-shard `{s}`: expected URL#DATABASE")
                })?;
                Ok(Shard {
                    url: url.to_string(),
                    database: database.to_string(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        c.layout = Layout::Sharded {
            cluster: cluster.clone(),
            shards,
        };
    }
    Ok(c)
}

/// Resolves at Ctrl-C or SIGTERM.
pub(crate) async fn stopped() {
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
