//! Client commands: talk to a running fleet manager over its gRPC API (TLS, bearer token).
//!
//! Where the server is and how to authenticate come from flags or the environment
//! (`fleet-manager serve` prints the `export` line): `--server`/`PALISADE_SERVER`,
//! `--ca`/`PALISADE_CA`, `--token-file`/`PALISADE_TOKEN_FILE` or `--token`/`PALISADE_TOKEN`.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use palisade_api::pb::orchestrator::v1 as pb;
use palisade_api::pb::orchestrator::v1::orchestrator_client::OrchestratorClient;
use palisade_inventory::Inventory;
use palisade_program::ContentHash;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::Output;

/// Where the server is and who is calling.
#[derive(clap::Args, Clone, Debug)]
pub struct Connection {
    /// The fleet manager's gRPC address.
    #[arg(
        long,
        env = "PALISADE_SERVER",
        default_value = "https://127.0.0.1:7443"
    )]
    pub server: String,
    /// The fleet CA certificate (`ca.pem` in the server's data directory).
    #[arg(long, env = "PALISADE_CA")]
    pub ca: Option<PathBuf>,
    /// A file holding an API token (`admin.token` in the server's data directory).
    #[arg(long, env = "PALISADE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// An API token.
    #[arg(long, env = "PALISADE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Adds the bearer token to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// An orchestrator API client.
pub type Client = OrchestratorClient<InterceptedService<Channel, Bearer>>;

/// Connects to the server.
pub async fn connect(c: &Connection) -> Result<Client> {
    let ca = c.ca.as_ref().ok_or_else(|| {
        anyhow!("give the fleet CA with --ca FILE or PALISADE_CA (`fleet-manager serve` prints it)")
    })?;
    let ca_pem =
        std::fs::read_to_string(ca).with_context(|| format!("reading the CA {}", ca.display()))?;
    let token = match (&c.token, &c.token_file) {
        (Some(t), _) => t.trim().to_string(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the token file {}", f.display()))?
            .trim()
            .to_string(),
        (None, None) => bail!(
            "give an API token with --token-file FILE (PALISADE_TOKEN_FILE) or --token (PALISADE_TOKEN)"
        ),
    };
    let header: MetadataValue<_> = format!("Bearer {token}")
        .parse()
        .map_err(|_| anyhow!("the API token holds characters a header cannot carry"))?;
    let tls =
        palisade_pki::client_config(&ca_pem, None).map_err(|e| anyhow!("{}: {e}", ca.display()))?;
    let channel = palisade_pki::channel(&c.server, tls)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    Ok(
        OrchestratorClient::with_interceptor(channel, Bearer(header))
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(16 << 20),
    )
}

/// A refusal from the server, for people.
pub fn refused(status: Status) -> anyhow::Error {
    let what = match status.code() {
        tonic::Code::Aborted => "conflict",
        tonic::Code::Unauthenticated => "not authenticated",
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::NotFound => "not found",
        tonic::Code::InvalidArgument => "invalid",
        tonic::Code::FailedPrecondition => "refused",
        tonic::Code::Unavailable => "server unavailable",
        _ => "server error",
    };
    let mut message = status.message().to_string();
    let mut source = std::error::Error::source(&status);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    anyhow!("{what}: {message}")
}

/// Runs a client command on a fresh runtime.
pub fn block_on<F: std::future::Future<Output = Result<ExitCode>>>(f: F) -> Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f)
}

pub fn print_json<T: serde::Serialize>(value: &T) {
    out!(
        "{}",
        serde_json::to_string(value).expect("API messages serialize")
    );
}

/// A hash from the wire, as people read it.
pub fn hash_text(bytes: &[u8]) -> String {
    match <[u8; 32]>::try_from(bytes) {
        Ok(h) => ContentHash(h).to_string(),
        Err(_) if bytes.is_empty() => "-".into(),
        Err(_) => "(malformed)".into(),
    }
}

fn short_hash(bytes: &[u8]) -> String {
    let h = hash_text(bytes);
    match h.strip_prefix("sha256:") {
        Some(hex) => format!("sha256:{}", &hex[..12]),
        None => h,
    }
}

fn commit_state(s: i32) -> &'static str {
    match pb::CommitState::try_from(s) {
        Ok(pb::CommitState::Enforced) => "enforced",
        Ok(pb::CommitState::Failed) => "failed",
        Ok(pb::CommitState::Pending) => "pending",
        _ => "unknown",
    }
}

fn target_state(s: i32) -> &'static str {
    match pb::TargetState::try_from(s) {
        Ok(pb::TargetState::Acked) => "acked",
        Ok(pb::TargetState::Failed) => "failed",
        Ok(pb::TargetState::Pending) => "pending",
        _ => "unknown",
    }
}

fn print_commit(c: &pb::CommitStatus, devices: &[pb::DeviceState]) {
    out!(
        "commit {} ({}): {} — {}",
        c.generation,
        c.scope,
        commit_state(c.state),
        c.summary
    );
    for t in &c.targets {
        let acked = devices.iter().find(|d| d.name == t.device);
        out!(
            "  {:<20} {:<8} wants gen {} {}; acked gen {} {}{}",
            t.device,
            target_state(t.state),
            t.generation,
            short_hash(&t.hash),
            acked.map_or(0, |d| d.acked_generation),
            acked.map_or("-".into(), |d| short_hash(&d.acked_hash)),
            if t.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", t.reason)
            }
        );
    }
}

/// `fleet-manager token create --device NAME`.
pub async fn token_create(
    c: &Connection,
    device: &str,
    valid: u32,
    output: Output,
) -> Result<ExitCode> {
    let token = connect(c)
        .await?
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            device: device.to_string(),
            valid_seconds: valid,
        })
        .await
        .map_err(refused)?
        .into_inner();
    match output {
        Output::Json => print_json(&token),
        Output::Text => out!("{}", token.token),
    }
    Ok(ExitCode::SUCCESS)
}

/// `fleet-manager user token NAME --role ROLE`.
pub async fn user_token(
    c: &Connection,
    name: &str,
    role: &str,
    output: Output,
) -> Result<ExitCode> {
    let token = connect(c)
        .await?
        .create_api_token(pb::CreateApiTokenRequest {
            name: name.to_string(),
            role: role.to_string(),
        })
        .await
        .map_err(refused)?
        .into_inner();
    match output {
        Output::Json => print_json(&token),
        Output::Text => out!("{}", token.token),
    }
    Ok(ExitCode::SUCCESS)
}

/// A file read for `apply`.
enum Input {
    Inventory(String, Inventory),
    Document(pb::Document),
}

fn is_inventory(text: &str) -> bool {
    use palisade_intent::yaml;
    let docs = yaml::split_documents(text);
    let keys = ["devices", "projects", "workloads"];
    let yaml_inventory = !docs.is_empty()
        && docs
            .iter()
            .all(|d| yaml::top_level_key(d.text, "kind").is_none())
        && docs.iter().any(|d| {
            keys.iter()
                .any(|k| yaml::top_level_key(d.text, k).is_some())
        });
    let json_inventory = text.trim_start().starts_with('{')
        && serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
            .is_ok_and(|m| !m.contains_key("kind") && keys.iter().any(|k| m.contains_key(*k)));
    yaml_inventory || json_inventory
}

fn read_inputs(files: &[PathBuf]) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    let mut paths = Vec::new();
    for f in files {
        if f == Path::new("-") {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading standard input")?;
            out.push(("stdin".to_string(), text));
        } else {
            paths.push(f.clone());
        }
    }
    for file in crate::load::policy_files(&paths)? {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {name}"))?;
        out.push((name, text));
    }
    out.into_iter()
        .map(|(name, content)| {
            if !name.ends_with(".pal") && is_inventory(&content) {
                let inventory: Inventory = serde_saphyr::from_str(&content).map_err(|e| {
                    anyhow!(
                        "{name}: {}",
                        e.render_with_formatter(&serde_saphyr::UserMessageFormatter)
                    )
                })?;
                Ok(Input::Inventory(name, inventory))
            } else {
                Ok(Input::Document(pb::Document {
                    name,
                    content,
                    format: String::new(),
                }))
            }
        })
        .collect()
}

/// `fleet-manager apply -f FILE...`: inventory files become device, project and workload
/// updates; policy files (rule language, YAML, JSON) are applied together.
pub async fn apply(
    c: &Connection,
    files: &[PathBuf],
    dry_run: bool,
    output: Output,
) -> Result<ExitCode> {
    let inputs = read_inputs(files)?;
    if inputs.is_empty() {
        bail!("no policy or inventory files in {files:?}");
    }
    let mut client = connect(c).await?;
    let mut commits: Vec<pb::CommitStatus> = Vec::new();
    let mut changes: Vec<pb::ObjectChange> = Vec::new();
    let (mut documents, mut inventories) = (Vec::new(), Vec::new());
    for input in inputs {
        match input {
            Input::Document(d) => documents.push(d),
            Input::Inventory(name, inventory) => {
                // Shape and references within the file; the server checks the rest.
                inventory
                    .clone()
                    .index()
                    .map_err(|e| anyhow!("{name}: {e}"))?;
                inventories.push((name, inventory));
            }
        }
    }
    // Policy first: inventory refers to the tags it defines.
    if !documents.is_empty() {
        let r = client
            .apply(pb::ApplyRequest { documents, dry_run })
            .await
            .map_err(refused)?
            .into_inner();
        changes.extend(r.changes);
        commits.extend(r.commits);
    }
    for (name, inventory) in inventories {
        if dry_run {
            continue;
        }
        let change = client
            .apply_inventory(palisade_server::convert::inventory_to_pb(&inventory))
            .await
            .map_err(|s| refused(s).context(name.clone()))?
            .into_inner();
        changes.push(pb::ObjectChange {
            kind: "Inventory".into(),
            scope: "inventory".into(),
            name: format!(
                "{name} ({} devices, {} projects, {} workloads)",
                inventory.devices.len(),
                inventory.projects.len(),
                inventory.workloads.len()
            ),
            change: "applied".into(),
            drafted: false,
        });
        commits.extend(change.commit);
    }
    match output {
        Output::Json => print_json(&pb::ApplyResponse {
            changes,
            commits: commits.clone(),
        }),
        Output::Text => {
            for ch in &changes {
                out!(
                    "{} {}/{} {}{}",
                    ch.kind,
                    ch.scope,
                    ch.name,
                    ch.change,
                    if ch.drafted {
                        " (draft: commit to enforce)"
                    } else {
                        ""
                    }
                );
            }
            if dry_run {
                out!("dry run: nothing was changed");
            }
            if let Some(last) = commits.last() {
                out!(
                    "committed as generation {} ({} devices' programs changed); `fleet-manager status {}` shows its state",
                    last.generation,
                    last.targets.len(),
                    last.generation
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `fleet-manager get [KIND] [NAME]`.
pub async fn get(
    c: &Connection,
    kind: Option<&str>,
    name: Option<&str>,
    scope: Option<&str>,
    drafts: bool,
    format: &str,
    output: Output,
) -> Result<ExitCode> {
    let mut client = connect(c).await?;
    if kind.is_some_and(|k| k.eq_ignore_ascii_case("inventory")) {
        let inv = client
            .get_inventory(pb::GetInventoryRequest {})
            .await
            .map_err(refused)?
            .into_inner();
        match output {
            Output::Json => print_json(&inv),
            Output::Text => out!(
                "{}",
                serde_json::to_string_pretty(&inv).expect("API messages serialize")
            ),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let r = client
        .get_objects(pb::GetObjectsRequest {
            kind: kind.unwrap_or_default().to_string(),
            scope: scope.unwrap_or_default().to_string(),
            name: name.unwrap_or_default().to_string(),
            drafts,
            format: format.to_string(),
        })
        .await
        .map_err(refused)?
        .into_inner();
    match output {
        Output::Json => print_json(&r),
        Output::Text => {
            if r.objects.is_empty() {
                eprintln!("no objects match");
            }
            for (i, o) in r.objects.iter().enumerate() {
                if format == "yaml" && i > 0 {
                    out!("---");
                }
                out!("{}", o.content.trim_end_matches('\n'));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `fleet-manager diff`.
pub async fn diff(c: &Connection, scope: &str, output: Output) -> Result<ExitCode> {
    let r = connect(c)
        .await?
        .diff(pb::ScopeRequest {
            scope: scope.to_string(),
        })
        .await
        .map_err(refused)?
        .into_inner();
    print_diff(&r, output, "draft");
    Ok(ExitCode::SUCCESS)
}

fn print_diff(r: &pb::DiffResponse, output: Output, what: &str) {
    match output {
        Output::Json => print_json(r),
        Output::Text => {
            if r.entries.is_empty() {
                out!(
                    "scope {}: no {what} changes (revision {})",
                    r.scope,
                    r.revision
                );
            }
            for e in &r.entries {
                out!("{} {} {}", e.change, e.kind, e.name);
                for line in e.before.lines() {
                    out!("  - {line}");
                }
                for line in e.after.lines() {
                    out!("  + {line}");
                }
            }
            if !r.entries.is_empty() {
                out!(
                    "scope {} at revision {}: `fleet-manager commit --scope {} --revision {}` commits exactly this",
                    r.scope,
                    r.revision,
                    r.scope,
                    r.revision
                );
            }
        }
    }
}

/// `fleet-manager revert`.
pub async fn revert(c: &Connection, scope: &str, output: Output) -> Result<ExitCode> {
    let r = connect(c)
        .await?
        .revert(pb::ScopeRequest {
            scope: scope.to_string(),
        })
        .await
        .map_err(refused)?
        .into_inner();
    print_diff(&r, output, "discarded");
    Ok(ExitCode::SUCCESS)
}

/// `fleet-manager delete KIND NAME [--scope S]`.
pub async fn delete(
    c: &Connection,
    kind: &str,
    name: &str,
    scope: &str,
    output: Output,
) -> Result<ExitCode> {
    let mut client = connect(c).await?;
    let change = client
        .delete_object(pb::DeleteObjectRequest {
            kind: kind.to_string(),
            scope: scope.to_string(),
            name: name.to_string(),
        })
        .await
        .map_err(refused)?
        .into_inner();
    match output {
        Output::Json => print_json(&change),
        Output::Text => match &change.commit {
            Some(commit) => {
                out!("{kind} {scope}/{name} deleted");
                print_commit(commit, &[]);
            }
            None => out!(
                "{kind} {scope}/{name} deleted in the draft of {} (revision {}): commit to enforce",
                change.scope,
                change.revision
            ),
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// `fleet-manager drafting --scope S on|off`.
pub async fn drafting(c: &Connection, scope: &str, enabled: bool) -> Result<ExitCode> {
    connect(c)
        .await?
        .set_drafting(pb::SetDraftingRequest {
            scope: scope.to_string(),
            enabled,
        })
        .await
        .map_err(refused)?;
    out!(
        "scope {scope}: drafting {}",
        if enabled {
            "on (changes wait for `fleet-manager commit`)"
        } else {
            "off (changes are committed at once)"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Polls a commit until it is no longer pending or `timeout` passes.
async fn wait_commit(
    client: &mut Client,
    generation: u64,
    timeout: Duration,
) -> Result<pb::CommitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        let c = client
            .get_commit(pb::GetCommitRequest { generation })
            .await
            .map_err(refused)?
            .into_inner();
        if c.state != pb::CommitState::Pending as i32 || Instant::now() >= deadline {
            return Ok(c);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn devices_of(client: &mut Client) -> Result<Vec<pb::DeviceState>> {
    Ok(client
        .list_devices(pb::ListDevicesRequest {})
        .await
        .map_err(refused)?
        .into_inner()
        .devices)
}

/// `fleet-manager commit`.
pub async fn commit(
    c: &Connection,
    scope: &str,
    revision: Option<u64>,
    wait: Option<f64>,
    output: Output,
) -> Result<ExitCode> {
    let mut client = connect(c).await?;
    let change = client
        .commit(pb::CommitRequest {
            scope: scope.to_string(),
            expected_revision: revision,
        })
        .await
        .map_err(refused)?
        .into_inner();
    let mut status = change
        .commit
        .ok_or_else(|| anyhow!("the server answered without the commit"))?;
    if let Some(secs) = wait {
        status = wait_commit(
            &mut client,
            status.generation,
            Duration::from_secs_f64(secs),
        )
        .await?;
    }
    let devices = devices_of(&mut client).await?;
    match output {
        Output::Json => print_json(&status),
        Output::Text => print_commit(&status, &devices),
    }
    Ok(exit_for(&status, wait.is_some()))
}

fn exit_for(status: &pb::CommitStatus, waited: bool) -> ExitCode {
    match pb::CommitState::try_from(status.state) {
        Ok(pb::CommitState::Failed) => ExitCode::from(1),
        Ok(pb::CommitState::Pending) if waited => ExitCode::from(3),
        _ => ExitCode::SUCCESS,
    }
}

/// `fleet-manager status [GENERATION]`: commits and, per device, what it acknowledged.
pub async fn status(
    c: &Connection,
    generation: Option<u64>,
    limit: u32,
    wait: Option<f64>,
    output: Output,
) -> Result<ExitCode> {
    let mut client = connect(c).await?;
    let commits = match generation {
        Some(g) => vec![match wait {
            Some(secs) => wait_commit(&mut client, g, Duration::from_secs_f64(secs)).await?,
            None => client
                .get_commit(pb::GetCommitRequest { generation: g })
                .await
                .map_err(refused)?
                .into_inner(),
        }],
        None => {
            let mut list = client
                .list_commits(pb::ListCommitsRequest { limit })
                .await
                .map_err(refused)?
                .into_inner()
                .commits;
            if let (Some(secs), Some(first)) = (wait, list.first()) {
                list[0] = wait_commit(&mut client, first.generation, Duration::from_secs_f64(secs))
                    .await?;
            }
            list
        }
    };
    let devices = devices_of(&mut client).await?;
    match output {
        Output::Json => print_json(&serde_json::json!({
            "commits": commits,
            "devices": devices,
        })),
        Output::Text => {
            if commits.is_empty() {
                out!("no commits yet");
            }
            for c in &commits {
                print_commit(c, &devices);
            }
        }
    }
    Ok(match commits.first() {
        Some(c) if generation.is_some() || wait.is_some() => exit_for(c, wait.is_some()),
        _ => ExitCode::SUCCESS,
    })
}

/// `fleet-manager devices`.
pub async fn devices(c: &Connection, output: Output) -> Result<ExitCode> {
    let mut client = connect(c).await?;
    let devices = devices_of(&mut client).await?;
    match output {
        Output::Json => print_json(&pb::ListDevicesResponse { devices }),
        Output::Text => {
            out!(
                "{:<20} {:<12} {:<9} {:<28} {:<28} {:<10} placement (hw/split/sw)",
                "DEVICE",
                "STATE",
                "CONNECTED",
                "DESIRED",
                "ACKED",
                "PROFILE"
            );
            for d in &devices {
                let state = if d.revoked {
                    "revoked"
                } else if !d.enrolled {
                    "not enrolled"
                } else if !d.last_error.is_empty() {
                    "refused"
                } else if d.acked_hash == d.desired_hash {
                    "in sync"
                } else {
                    "behind"
                };
                out!(
                    "{:<20} {:<12} {:<9} {:<28} {:<28} {:<10} {}/{}/{}",
                    d.name,
                    state,
                    if d.connected { "yes" } else { "no" },
                    format!("{} {}", d.desired_generation, short_hash(&d.desired_hash)),
                    format!("{} {}", d.acked_generation, short_hash(&d.acked_hash)),
                    if d.profile.is_empty() {
                        "-"
                    } else {
                        &d.profile
                    },
                    d.hardware_rules,
                    d.split_rules,
                    d.software_rules
                );
                if !d.last_error.is_empty() {
                    out!("    last refusal: {}", d.last_error);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `fleet-manager revoke --device NAME`.
pub async fn revoke(c: &Connection, device: &str, output: Output) -> Result<ExitCode> {
    let r = connect(c)
        .await?
        .revoke_device(pb::DeleteRequest {
            name: device.to_string(),
        })
        .await
        .map_err(refused)?
        .into_inner();
    match output {
        Output::Json => print_json(&r),
        Output::Text => out!(
            "device {device} revoked: {} certificate(s) on the revocation list; its connections are closed",
            r.serials.len()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `fleet-manager explain` against the server's committed state.
pub async fn explain(
    c: &Connection,
    request: pb::ExplainRequest,
    output: Output,
) -> Result<ExitCode> {
    let r = connect(c)
        .await?
        .explain(request)
        .await
        .map_err(refused)?
        .into_inner();
    match output {
        Output::Json => out!("{}", r.json),
        Output::Text => out!("{}", r.text.trim_end_matches('\n')),
    }
    Ok(if r.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `fleet-manager watch`: commit and device events as JSON lines.
pub async fn watch(c: &Connection) -> Result<ExitCode> {
    let mut stream = connect(c)
        .await?
        .watch(pb::WatchRequest {})
        .await
        .map_err(refused)?
        .into_inner();
    while let Some(event) = stream.message().await.map_err(refused)? {
        print_json(&event);
    }
    Ok(ExitCode::SUCCESS)
}
