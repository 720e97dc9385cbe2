//! `fleet-manager policy ...`: check, compile, explain, fmt.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use palisade_compiler::{CompileOptions, PolicyIr, compile_all};
use palisade_intent::{IntentSet, lang, lower, yaml};
use palisade_inventory::InventoryIndex;
use palisade_program::{Action, Decision, DeviceProgram, Direction, Packet, Protocol};
use serde_json::json;

use crate::load::{Loaded, load_inventory, load_policies};
use crate::{Foreign, Form, Output};

fn fail_with(errors: &[String]) -> ExitCode {
    for e in errors {
        eprintln!("{e}");
    }
    eprintln!(
        "{} error{} found",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    ExitCode::from(1)
}

/// Inventory plus validated policies, or every error found in the policies.
type Inputs = std::result::Result<(InventoryIndex, Loaded, IntentSet), Vec<String>>;

fn load_inputs(inventory: &Path, policies: &[PathBuf]) -> Result<Inputs> {
    let index = load_inventory(inventory)?;
    Ok(load_valid(policies)?.map(|(loaded, set)| (index, loaded, set)))
}

/// Loads policies and returns the validated intent, or every error.
fn load_valid(paths: &[PathBuf]) -> Result<std::result::Result<(Loaded, IntentSet), Vec<String>>> {
    let loaded = load_policies(paths)?;
    if !loaded.errors.is_empty() {
        return Ok(Err(loaded.errors));
    }
    let set = match loaded.intent() {
        Ok(set) => set,
        Err(errors) => return Ok(Err(errors)),
    };
    let errors: Vec<String> = set.validate().iter().map(|e| e.to_string()).collect();
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    Ok(Ok((loaded, set)))
}

/// `policy check`.
pub fn check(paths: &[PathBuf], output: Output) -> Result<ExitCode> {
    let result = load_valid(paths)?;
    match (result, output) {
        (Ok((loaded, set)), Output::Text) => {
            println!(
                "ok: {} file{}, {} intent object{}, {} Kubernetes polic{}",
                loaded.files,
                if loaded.files == 1 { "" } else { "s" },
                set.len(),
                if set.len() == 1 { "" } else { "s" },
                loaded.k8s.len(),
                if loaded.k8s.len() == 1 { "y" } else { "ies" }
            );
            Ok(ExitCode::SUCCESS)
        }
        (Ok((loaded, set)), Output::Json) => {
            println!(
                "{}",
                json!({"ok": true, "files": loaded.files, "objects": set.len(), "kubernetes_policies": loaded.k8s.len()})
            );
            Ok(ExitCode::SUCCESS)
        }
        (Err(errors), Output::Text) => Ok(fail_with(&errors)),
        (Err(errors), Output::Json) => {
            println!("{}", json!({"ok": false, "errors": errors}));
            Ok(ExitCode::from(1))
        }
    }
}

/// Lowers both models against the inventory into one IR: ours first within each tier, then
/// Kubernetes'.
fn lower_all(
    loaded: &Loaded,
    set: &IntentSet,
    index: &InventoryIndex,
) -> Result<(PolicyIr, Vec<String>)> {
    let mut ir = PolicyIr::default();
    let mut warnings = Vec::new();
    if !set.is_empty() {
        let lowered = lower(set, index).map_err(|e| anyhow!("{e}"))?;
        ir = lowered.ir;
        warnings = lowered.warnings;
    }
    if !loaded.k8s.is_empty() {
        ir.extend(palisade_k8s::lower(&loaded.k8s, index).map_err(|e| anyhow!("{e}"))?);
    }
    Ok((ir, warnings))
}

/// `policy compile`.
pub fn compile(
    inventory: &Path,
    policies: &[PathBuf],
    out: &Path,
    generation: u64,
    foreign: Foreign,
    output: Output,
) -> Result<ExitCode> {
    let (index, loaded, set) = match load_inputs(inventory, policies)? {
        Ok(v) => v,
        Err(errors) => return Ok(fail_with(&errors)),
    };
    let (ir, warnings) = lower_all(&loaded, &set, &index)?;
    let options = CompileOptions {
        foreign: match foreign {
            Foreign::Allow => Action::Allow,
            Foreign::Deny => Action::Deny,
        },
    };
    let compiled = compile_all(Arc::new(index), Arc::new(ir), generation, options)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut devices = Vec::new();
    for (name, program) in &compiled.programs {
        let file = format!("{name}.json");
        let path = out.join(&file);
        let text = serde_json::to_string_pretty(program.as_ref())?;
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        devices.push(json!({
            "device": name,
            "file": file,
            "generation": program.generation(),
            "hash": program.hash().to_string(),
            "endpoints": program.endpoints().len(),
            "rules": program.rule_count(),
            "address_sets": program.address_sets().len(),
        }));
    }
    let summary = json!({"generation": generation, "devices": devices, "warnings": warnings});
    let path = out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    match output {
        Output::Json => println!("{summary}"),
        Output::Text => {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{:<24} {:>9} {:>7} {:>6}  hash",
                "device", "endpoints", "rules", "sets"
            );
            for program in compiled.programs.values() {
                println!(
                    "{:<24} {:>9} {:>7} {:>6}  {}",
                    program.device(),
                    program.endpoints().len(),
                    program.rule_count(),
                    program.address_sets().len(),
                    short(&program.hash().to_string())
                );
            }
            println!(
                "wrote {} program{} (generation {generation}) and summary.json to {}",
                compiled.programs.len(),
                if compiled.programs.len() == 1 {
                    ""
                } else {
                    "s"
                },
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(19)]
}

fn address_of(index: &InventoryIndex, reference: &str) -> Result<IpAddr> {
    index
        .resolve(reference)
        .map_err(|e| anyhow!("{e}"))?
        .address(index)
        .ok_or_else(|| anyhow!("{reference}: the endpoint has no address"))
}

/// What one device does with one side of the connection.
struct DeviceView {
    device: String,
    endpoint: String,
    direction: Direction,
    allowed: bool,
    decided_by: String,
}

fn device_views(
    programs: &std::collections::BTreeMap<String, Arc<DeviceProgram>>,
    index: &InventoryIndex,
    packet: &Packet,
) -> Vec<DeviceView> {
    let mut views = Vec::new();
    for (ip, direction) in [
        (packet.src, Direction::Egress),
        (packet.dst, Direction::Ingress),
    ] {
        let Some(palisade_inventory::AddressOwner::Endpoint(e)) = index.owner_of(ip) else {
            continue;
        };
        let info = index.endpoint(e);
        let device = &index.inventory().devices[info.device].name;
        let program = &programs[device];
        let Some(local) = program.endpoint_index(&info.name) else {
            continue;
        };
        let v = program.evaluate_side(local, direction, packet);
        let decided_by = match v.decision {
            Decision::Rule { rule, .. } => format!("rule {} (software)", rule.id),
            Decision::TierDefault { tier, action } => format!("{tier} tier default ({action})"),
            Decision::EndOfTiers => "end of tiers (allow)".into(),
        };
        views.push(DeviceView {
            device: device.clone(),
            endpoint: info.name.clone(),
            direction,
            allowed: v.allowed,
            decided_by,
        });
    }
    views
}

/// `policy explain`.
#[allow(clippy::too_many_arguments)]
pub fn explain(
    inventory: &Path,
    policies: &[PathBuf],
    from: &str,
    to: &str,
    protocol: &str,
    src_port: u16,
    port: u16,
    output: Output,
) -> Result<ExitCode> {
    let (index, loaded, set) = match load_inputs(inventory, policies)? {
        Ok(v) => v,
        Err(errors) => return Ok(fail_with(&errors)),
    };
    let protocol: Protocol = protocol.parse().map_err(|e| anyhow!("--protocol: {e}"))?;
    let src = address_of(&index, from)?;
    let dst = address_of(&index, to)?;
    let packet = Packet {
        src,
        dst,
        protocol,
        src_port,
        dst_port: port,
    };
    let (ir, _) = lower_all(&loaded, &set, &index)?;
    let compiled = compile_all(
        Arc::new(index.clone()),
        Arc::new(ir),
        1,
        CompileOptions::default(),
    )?;
    let views = device_views(&compiled.programs, &index, &packet);
    let device_allowed = views.iter().all(|v| v.allowed);

    // From intent: our model or Kubernetes', when only one is in use.
    let mut text = String::new();
    let mut intent_json = serde_json::Value::Null;
    let mut intent_allowed = None;
    let conn = format!(
        "{protocol} {src}{} -> {dst}{}",
        if protocol.has_ports() {
            format!(":{src_port}")
        } else {
            String::new()
        },
        if protocol.has_ports() {
            format!(":{port}")
        } else {
            String::new()
        },
    );
    if loaded.k8s.is_empty() {
        let q = palisade_intent::Query {
            src,
            dst,
            protocol,
            src_port,
            dst_port: port,
        };
        let e = palisade_intent::explain(&set, &index, &q).map_err(|e| anyhow!("{e}"))?;
        intent_allowed = Some(e.allowed);
        text.push_str(&palisade_intent::explain::render(&set, &e));
        intent_json = serde_json::to_value(&e)?;
    } else if set.is_empty() {
        let e = palisade_k8s::explain(&loaded.k8s, &index, src, dst, protocol, port);
        intent_allowed = Some(e.allowed);
        for line in e.to_string().lines().skip(1) {
            writeln!(text, "{line}").unwrap();
        }
        intent_json = serde_json::to_value(&e)?;
    } else {
        writeln!(
            text,
            "(intent-level explanation covers one model at a time; this input mixes Palisade intent and Kubernetes policies, so only the devices' view is shown)"
        )
        .unwrap();
    }
    if let Some(a) = intent_allowed
        && a != device_allowed
    {
        bail!(
            "internal error: intent says {a} but the compiled programs say {device_allowed}; please report this with your input"
        );
    }
    match output {
        Output::Json => {
            let devices: Vec<_> = views
                .iter()
                .map(|v| {
                    json!({"device": v.device, "endpoint": v.endpoint, "direction": v.direction,
                           "allowed": v.allowed, "decided_by": v.decided_by})
                })
                .collect();
            println!(
                "{}",
                json!({"connection": conn, "allowed": device_allowed, "intent": intent_json, "devices": devices})
            );
        }
        Output::Text => {
            println!(
                "{conn}: {}",
                if device_allowed { "ALLOWED" } else { "DENIED" }
            );
            print!("{text}");
            for v in &views {
                println!(
                    "  device {} ({} of {}): {} by {}",
                    v.device,
                    v.direction,
                    v.endpoint,
                    if v.allowed { "allows" } else { "denies" },
                    v.decided_by
                );
            }
            if views.is_empty() {
                println!("  no device enforces for either end");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `policy fmt`.
pub fn fmt(paths: &[PathBuf], to: Form) -> Result<ExitCode> {
    let loaded = load_policies(paths)?;
    if !loaded.errors.is_empty() {
        return Ok(fail_with(&loaded.errors));
    }
    if !loaded.k8s.is_empty() {
        bail!("fmt works on Palisade intent; Kubernetes manifests are left as they are");
    }
    let objects: Vec<_> = loaded.objects.into_iter().map(|(o, _)| o).collect();
    match to {
        Form::Pal => print!("{}", lang::print(&objects)),
        Form::Yaml => print!("{}", yaml::to_yaml(&objects)),
        Form::Json => {
            for o in &objects {
                println!("{}", serde_json::to_string(o)?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
