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
    /// Output format of the start-up report.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

/// Runs the server until Ctrl-C or SIGTERM.
pub fn run(args: &Args) -> Result<ExitCode> {
    crate::logging();
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
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
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
                })
            ),
            Output::Text => {
                println!("fleet manager running (data in {})", args.data.display());
                println!("  gRPC (devices, orchestrators): {grpc}");
                if let Some(r) = &rest {
                    println!("  REST:                          {r}  (OpenAPI: {r}/openapi.json)");
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
