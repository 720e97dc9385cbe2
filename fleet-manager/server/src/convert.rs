//! Between API messages and the fleet's own types. Every field an orchestrator can get
//! wrong is checked here, and the error names it (`workload shop/web-1: interfaces[0].
//! addresses[1]: ...`).

use std::collections::BTreeMap;

use palisade_api::pb::control::v1 as control;
use palisade_api::pb::orchestrator::v1 as pb;
use palisade_inventory::{Device, Interface, NamedPort, Network, Project, Workload};
use palisade_program::{Prefix, Protocol};

use crate::fleet::{CommitStatus, PlacementSummary, State};

fn labels(map: &std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn labels_pb(map: &BTreeMap<String, String>) -> std::collections::HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A device from its message.
pub fn device_from_pb(d: &pb::Device) -> Result<Device, String> {
    let address = match d.address.as_str() {
        "" => None,
        a => Some(
            a.parse()
                .map_err(|_| format!("device {}: address `{a}` is not an IP address", d.name))?,
        ),
    };
    Ok(Device {
        name: d.name.clone(),
        address,
        labels: labels(&d.labels),
    })
}

/// A device's message.
pub fn device_to_pb(d: &Device) -> pb::Device {
    pb::Device {
        name: d.name.clone(),
        address: d.address.map(|a| a.to_string()).unwrap_or_default(),
        labels: labels_pb(&d.labels),
    }
}

/// A project from its message.
pub fn project_from_pb(p: &pb::Project) -> Result<Project, String> {
    let networks = p
        .networks
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let subnets = n
                .subnets
                .iter()
                .enumerate()
                .map(|(j, s)| {
                    s.parse::<Prefix>()
                        .map_err(|e| format!("project {}: networks[{i}].subnets[{j}]: {e}", p.name))
                })
                .collect::<Result<_, _>>()?;
            Ok(Network {
                name: n.name.clone(),
                tags: n.tags.clone(),
                subnets,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Project {
        name: p.name.clone(),
        tags: p.tags.clone(),
        labels: labels(&p.labels),
        networks,
    })
}

/// A project's message.
pub fn project_to_pb(p: &Project) -> pb::Project {
    pb::Project {
        name: p.name.clone(),
        tags: p.tags.clone(),
        labels: labels_pb(&p.labels),
        networks: p
            .networks
            .iter()
            .map(|n| pb::Network {
                name: n.name.clone(),
                tags: n.tags.clone(),
                subnets: n.subnets.iter().map(|s| s.to_string()).collect(),
            })
            .collect(),
    }
}

/// A workload from its message.
pub fn workload_from_pb(w: &pb::Workload) -> Result<Workload, String> {
    let at = |i: usize, what: String| {
        format!("workload {}/{}: interfaces[{i}].{what}", w.project, w.name)
    };
    let interfaces = w
        .interfaces
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let addresses = f
                .addresses
                .iter()
                .enumerate()
                .map(|(j, a)| {
                    a.parse()
                        .map_err(|_| at(i, format!("addresses[{j}]: `{a}` is not an IP address")))
                })
                .collect::<Result<_, _>>()?;
            let ports = f
                .ports
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    let port = u16::try_from(p.port)
                        .map_err(|_| at(i, format!("ports[{j}]: {} is above 65535", p.port)))?;
                    let protocol = match p.protocol.as_str() {
                        "" => Protocol::TCP,
                        text => text
                            .parse()
                            .map_err(|e| at(i, format!("ports[{j}].protocol: {e}")))?,
                    };
                    Ok(NamedPort {
                        name: (!p.name.is_empty()).then(|| p.name.clone()),
                        port,
                        protocol,
                    })
                })
                .collect::<Result<_, String>>()?;
            Ok(Interface {
                name: if f.name.is_empty() {
                    "eth0".into()
                } else {
                    f.name.clone()
                },
                network: (!f.network.is_empty()).then(|| f.network.clone()),
                addresses,
                device: f.device.clone(),
                tags: f.tags.clone(),
                ports,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Workload {
        name: w.name.clone(),
        project: w.project.clone(),
        tags: w.tags.clone(),
        labels: labels(&w.labels),
        interfaces,
    })
}

/// A workload's message.
pub fn workload_to_pb(w: &Workload) -> pb::Workload {
    pb::Workload {
        name: w.name.clone(),
        project: w.project.clone(),
        tags: w.tags.clone(),
        labels: labels_pb(&w.labels),
        interfaces: w
            .interfaces
            .iter()
            .map(|f| pb::Interface {
                name: f.name.clone(),
                network: f.network.clone().unwrap_or_default(),
                addresses: f.addresses.iter().map(|a| a.to_string()).collect(),
                device: f.device.clone(),
                tags: f.tags.clone(),
                ports: f
                    .ports
                    .iter()
                    .map(|p| pb::NamedPort {
                        name: p.name.clone().unwrap_or_default(),
                        port: u32::from(p.port),
                        protocol: p.protocol.to_string(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// A commit's status message.
pub fn commit_to_pb(s: &CommitStatus) -> pb::CommitStatus {
    pb::CommitStatus {
        generation: s.commit.generation,
        scope: s.commit.scope.clone(),
        committed_at_unix_ms: s.commit.at_ms,
        state: match s.state {
            State::Pending => pb::CommitState::Pending,
            State::Enforced => pb::CommitState::Enforced,
            State::Failed => pb::CommitState::Failed,
        } as i32,
        targets: s
            .targets
            .iter()
            .map(|(t, state, reason)| pb::DeviceTarget {
                device: t.device.clone(),
                generation: t.generation,
                hash: t
                    .hash
                    .parse::<palisade_program::ContentHash>()
                    .map(|h| h.0.to_vec())
                    .unwrap_or_default(),
                state: match state {
                    State::Pending => pb::TargetState::Pending,
                    State::Enforced => pb::TargetState::Acked,
                    State::Failed => pb::TargetState::Failed,
                } as i32,
                reason: reason.clone(),
            })
            .collect(),
        summary: s.commit.summary.clone(),
    }
}

/// A placement report from a device.
pub fn placement_from_pb(p: &control::Placement) -> PlacementSummary {
    PlacementSummary {
        hardware: p.hardware,
        split: p.split,
        software: p.software,
        rules: p
            .rules
            .iter()
            .map(|r| {
                let place = match control::Place::try_from(r.place) {
                    Ok(control::Place::Hardware) => "hardware",
                    Ok(control::Place::Split) => "split",
                    _ => "software",
                };
                (r.rule_id.clone(), place.to_string())
            })
            .collect(),
    }
}

/// A whole inventory as its message.
pub fn inventory_to_pb(inv: &palisade_inventory::Inventory) -> pb::Inventory {
    pb::Inventory {
        devices: inv.devices.iter().map(device_to_pb).collect(),
        projects: inv.projects.iter().map(project_to_pb).collect(),
        workloads: inv.workloads.iter().map(workload_to_pb).collect(),
    }
}
