//! The differential test corpus in `shared/data/netpol/` (its README gives the format): a
//! cluster, the policies in force, and probes with the upstream verdicts.
//!
//! [`eval_case`] answers every probe through the compiled path, as the fleet would: the
//! policies are lowered, compiled into one device program per node, and each probe is
//! judged by the reference interpreter on the source's node (egress) and on the
//! destination's node (ingress). It never sees the expected verdicts: [`Case`] keeps them
//! apart, behind [`Case::expectations`], which only [`check_case`] reads.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use palisade_compiler::{CompileError, CompileOptions, compile_all};
use palisade_inventory::{
    AddressOwner, Device, Interface, Inventory, InventoryError, InventoryIndex, NamedPort, Project,
    Workload,
};
use palisade_program::{DeviceProgram, Direction, Packet};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::manifest::{K8sPolicy, Labels, PortProtocol, parse_documents};
use crate::{K8sError, lower};

/// The interface name every pod gets in the inventory built from a case.
pub const POD_INTERFACE: &str = "eth0";
/// The source port of probe connections (policies only match destination ports).
pub const PROBE_SOURCE_PORT: u16 = 49152;

/// Why a case could not be read or evaluated.
#[derive(Debug, Error)]
pub enum CaseError {
    /// The case file could not be read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The case is not valid JSON of the corpus format.
    #[error("{origin}: not a corpus case: {message}")]
    Format {
        /// The file or the case id.
        origin: String,
        /// What serde_json said.
        message: String,
    },
    /// The cluster does not make a consistent inventory.
    #[error("case {case}: cluster: {error}")]
    Inventory {
        /// The case id.
        case: String,
        /// The inconsistency.
        error: InventoryError,
    },
    /// A policy could not be parsed or lowered.
    #[error("case {case}: {error}")]
    Policy {
        /// The case id.
        case: String,
        /// The problem (boxed: it is large and rare).
        error: Box<K8sError>,
    },
    /// Compilation failed (a bug: lowering produced inconsistent rules).
    #[error("case {case}: compilation failed: {error}")]
    Compile {
        /// The case id.
        case: String,
        /// The compiler's error.
        error: CompileError,
    },
    /// A probe names a pod or address the cluster does not have.
    #[error("case {case}: probe end `{end}` is neither a pod (`namespace/name`) nor an address")]
    UnknownEnd {
        /// The case id.
        case: String,
        /// The reference.
        end: String,
    },
}

/// Where a case's data came from upstream.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSource {
    /// `owner/name`.
    pub repo: String,
    /// The upstream files and test.
    pub path: String,
    /// The upstream revision.
    pub rev: String,
    /// The upstream licence.
    pub license: String,
}

/// A cluster: namespaces, nodes, pods and external addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Every namespace that holds a pod.
    pub namespaces: Vec<ClusterNamespace>,
    /// The nodes.
    pub nodes: Vec<ClusterNode>,
    /// The pods.
    pub pods: Vec<ClusterPod>,
    /// Addresses outside the cluster that probes use.
    #[serde(default)]
    pub external: Vec<IpAddr>,
}

/// A namespace.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterNamespace {
    /// Name.
    pub name: String,
    /// Labels (`kubernetes.io/metadata.name` included).
    #[serde(default)]
    pub labels: Labels,
}

/// A node.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterNode {
    /// Name.
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
    /// Labels (for AdminNetworkPolicy `nodes` peers).
    #[serde(default)]
    pub labels: Labels,
}

/// A pod.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterPod {
    /// Its namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The node it runs on.
    pub node: String,
    /// Its address.
    pub ip: IpAddr,
    /// Labels.
    #[serde(default)]
    pub labels: Labels,
    /// Declared container ports.
    #[serde(default)]
    pub ports: Vec<ClusterPort>,
}

/// A declared container port.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterPort {
    /// Its name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Number.
    pub port: u16,
    /// Protocol.
    pub protocol: PortProtocol,
}

/// One new connection to judge.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// `namespace/pod` or an address.
    pub src: String,
    /// `namespace/pod` or an address.
    pub dst: String,
    /// Destination port.
    pub port: u16,
    /// Protocol.
    pub protocol: PortProtocol,
}

/// A verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The connection is allowed.
    Allow,
    /// The connection is denied.
    Deny,
}

impl Verdict {
    /// `Allow` for true.
    pub fn from_allowed(allowed: bool) -> Self {
        if allowed {
            Verdict::Allow
        } else {
            Verdict::Deny
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        })
    }
}

/// One corpus case. The probes' expected verdicts are kept out of [`Case::probes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// Unique id, e.g. `npg/ipblockstest`.
    pub id: String,
    /// Upstream origin.
    pub source: CaseSource,
    /// Labels for slicing results (`contested` marks cases outside the score).
    pub tags: Vec<String>,
    /// The cluster.
    pub cluster: Cluster,
    /// One YAML document per entry.
    pub policies: Vec<String>,
    /// The connections to judge.
    pub probes: Vec<Probe>,
    expectations: Vec<Option<Verdict>>,
}

/// The file form of a case, expectations included.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    id: String,
    source: CaseSource,
    #[serde(default)]
    tags: Vec<String>,
    cluster: Cluster,
    #[serde(default)]
    policies: Vec<String>,
    probes: Vec<RawProbe>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    #[serde(flatten)]
    probe: Probe,
    /// Optional so that a case stripped of its answers can still be evaluated.
    #[serde(default)]
    expect: Option<Verdict>,
}

impl Case {
    /// Reads a case file.
    pub fn load(path: &std::path::Path) -> Result<Self, CaseError> {
        let text = std::fs::read_to_string(path).map_err(|error| CaseError::Io {
            path: path.display().to_string(),
            error,
        })?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Parses a case; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self, CaseError> {
        let raw: RawCase = serde_json::from_str(text).map_err(|e| CaseError::Format {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let (probes, expectations) = raw.probes.into_iter().map(|p| (p.probe, p.expect)).unzip();
        Ok(Self {
            id: raw.id,
            source: raw.source,
            tags: raw.tags,
            cluster: raw.cluster,
            policies: raw.policies,
            probes,
            expectations,
        })
    }

    /// The upstream verdict of each probe, in probe order (`None` where the file has none).
    pub fn expectations(&self) -> &[Option<Verdict>] {
        &self.expectations
    }

    /// Whether upstream oracles disagree on this case (it is reported, not scored).
    pub fn is_contested(&self) -> bool {
        self.tags.iter().any(|t| t == "contested")
    }

    /// The cluster as an inventory: namespaces are projects, nodes are devices, pods are
    /// workloads with one interface [`POD_INTERFACE`] on their node.
    pub fn inventory(&self) -> Inventory {
        let labels = |l: &Labels| l.clone();
        Inventory {
            devices: self
                .cluster
                .nodes
                .iter()
                .map(|n| Device {
                    name: n.name.clone(),
                    address: Some(n.ip),
                    labels: labels(&n.labels),
                })
                .collect(),
            projects: self
                .cluster
                .namespaces
                .iter()
                .map(|ns| Project {
                    name: ns.name.clone(),
                    tags: Vec::new(),
                    labels: labels(&ns.labels),
                    networks: Vec::new(),
                })
                .collect(),
            workloads: self
                .cluster
                .pods
                .iter()
                .map(|p| Workload {
                    name: p.name.clone(),
                    project: p.namespace.clone(),
                    tags: Vec::new(),
                    labels: labels(&p.labels),
                    interfaces: vec![Interface {
                        name: POD_INTERFACE.to_string(),
                        network: None,
                        addresses: vec![p.ip],
                        device: p.node.clone(),
                        tags: Vec::new(),
                        ports: p
                            .ports
                            .iter()
                            .map(|port| NamedPort {
                                name: port.name.clone(),
                                port: port.port,
                                protocol: port.protocol.protocol(),
                            })
                            .collect(),
                    }],
                })
                .collect(),
        }
    }

    /// Parses the policies; each is named `<id> policies[i]` in errors.
    pub fn parse_policies(&self) -> Result<Vec<K8sPolicy>, K8sError> {
        let mut out = Vec::new();
        for (i, text) in self.policies.iter().enumerate() {
            out.extend(parse_documents(
                text,
                &format!("{} policies[{i}]", self.id),
            )?);
        }
        Ok(out)
    }
}

/// A probe's answer, serialized as
/// `{"src":"ns/pod","dst":"ns/pod or IP","port":80,"protocol":"TCP","verdict":"allow"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProbeResult<'a> {
    /// As in the probe.
    pub src: &'a str,
    /// As in the probe.
    pub dst: &'a str,
    /// As in the probe.
    pub port: u16,
    /// As in the probe.
    pub protocol: PortProtocol,
    /// The compiled path's verdict.
    pub verdict: Verdict,
}

/// One end of a probe, resolved once per case.
#[derive(Clone, Copy, Debug)]
struct End {
    ip: IpAddr,
    /// For a pod: its node's program and its endpoint index there.
    side: Option<(usize, u32)>,
}

/// A case compiled for evaluation: the inventory, the policies, one device program per node,
/// and the probes' ends resolved. Build it once and judge many probes.
pub struct CompiledCase {
    id: String,
    index: Arc<InventoryIndex>,
    policies: Vec<K8sPolicy>,
    programs: Vec<Arc<DeviceProgram>>,
    ends: HashMap<String, End>,
}

impl CompiledCase {
    /// Parses, lowers and compiles the case's policies and resolves its probes' ends.
    pub fn new(case: &Case) -> Result<Self, CaseError> {
        let index = case
            .inventory()
            .index()
            .map_err(|error| CaseError::Inventory {
                case: case.id.clone(),
                error,
            })?;
        let index = Arc::new(index);
        let policy_error = |error| CaseError::Policy {
            case: case.id.clone(),
            error: Box::new(error),
        };
        let policies = case.parse_policies().map_err(policy_error)?;
        let ir = lower(&policies, &index).map_err(policy_error)?;
        let compiled = compile_all(
            Arc::clone(&index),
            Arc::new(ir),
            1,
            CompileOptions::default(),
        )
        .map_err(|error| CaseError::Compile {
            case: case.id.clone(),
            error,
        })?;
        let mut program_of_device = HashMap::new();
        let mut programs = Vec::new();
        for (name, program) in compiled.programs {
            program_of_device.insert(name, programs.len());
            programs.push(program);
        }
        let mut ends = HashMap::new();
        for reference in case.probes.iter().flat_map(|p| [&p.src, &p.dst]) {
            if ends.contains_key(reference.as_str()) {
                continue;
            }
            let unknown = || CaseError::UnknownEnd {
                case: case.id.clone(),
                end: reference.clone(),
            };
            let (ip, endpoint) = match reference.parse::<IpAddr>() {
                Ok(ip) => match index.owner_of(ip) {
                    Some(AddressOwner::Endpoint(e)) => (ip, Some(e)),
                    _ => (ip, None),
                },
                Err(_) => {
                    let e = index
                        .endpoint_by_name(&format!("{reference}/{POD_INTERFACE}"))
                        .ok_or_else(unknown)?;
                    let ip = *index.endpoint(e).addresses.first().ok_or_else(unknown)?;
                    (ip, Some(e))
                }
            };
            let side = match endpoint {
                None => None,
                Some(e) => {
                    let info = index.endpoint(e);
                    let device = &index.inventory().devices[info.device].name;
                    let program = *program_of_device.get(device).ok_or_else(unknown)?;
                    let local = programs[program]
                        .endpoint_index(&info.name)
                        .ok_or_else(unknown)?;
                    Some((program, local))
                }
            };
            ends.insert(reference.clone(), End { ip, side });
        }
        Ok(Self {
            id: case.id.clone(),
            index,
            policies,
            programs,
            ends,
        })
    }

    /// The cluster's inventory index.
    pub fn index(&self) -> &InventoryIndex {
        &self.index
    }

    /// The parsed policies.
    pub fn policies(&self) -> &[K8sPolicy] {
        &self.policies
    }

    /// The address a probe end (`namespace/pod` or an address) stands for.
    pub fn address(&self, reference: &str) -> Option<IpAddr> {
        self.ends.get(reference).map(|e| e.ip)
    }

    /// Judges a probe: the source's egress on its node AND the destination's ingress on its
    /// node, each by the reference interpreter.
    pub fn verdict(&self, probe: &Probe) -> Result<Verdict, CaseError> {
        let end = |reference: &String| {
            self.ends
                .get(reference)
                .copied()
                .ok_or_else(|| CaseError::UnknownEnd {
                    case: self.id.clone(),
                    end: reference.clone(),
                })
        };
        let (src, dst) = (end(&probe.src)?, end(&probe.dst)?);
        let packet = Packet {
            src: src.ip,
            dst: dst.ip,
            protocol: probe.protocol.protocol(),
            src_port: PROBE_SOURCE_PORT,
            dst_port: probe.port,
        };
        let side = |end: End, direction: Direction| {
            end.side.is_none_or(|(program, endpoint)| {
                self.programs[program]
                    .evaluate_side(endpoint, direction, &packet)
                    .allowed
            })
        };
        Ok(Verdict::from_allowed(
            side(src, Direction::Egress) && side(dst, Direction::Ingress),
        ))
    }
}

/// Answers every probe of `case` through the compiled path.
pub fn eval_case(case: &Case) -> Result<Vec<ProbeResult<'_>>, CaseError> {
    let compiled = CompiledCase::new(case)?;
    case.probes
        .iter()
        .map(|p| {
            Ok(ProbeResult {
                src: &p.src,
                dst: &p.dst,
                port: p.port,
                protocol: p.protocol,
                verdict: compiled.verdict(p)?,
            })
        })
        .collect()
}

/// A probe whose answer differs from upstream's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeFailure {
    /// The probe's position in the case.
    pub index: usize,
    /// The probe.
    pub probe: Probe,
    /// Upstream's verdict.
    pub expected: Verdict,
    /// Ours.
    pub got: Verdict,
}

/// How a case fared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseReport {
    /// The case id.
    pub id: String,
    /// Whether the case is contested (reported, not scored).
    pub contested: bool,
    /// Number of probes.
    pub probes: usize,
    /// Probes answered as upstream does.
    pub passed: usize,
    /// The others.
    pub failures: Vec<ProbeFailure>,
    /// Why the case could not be evaluated at all (then no probe passed).
    pub error: Option<String>,
}

impl CaseReport {
    /// True when every probe passed.
    pub fn is_pass(&self) -> bool {
        self.error.is_none() && self.failures.is_empty()
    }
}

impl fmt::Display for CaseReport {
    /// One summary line, then up to ten failing probes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = if self.is_pass() { "ok" } else { "FAIL" };
        let contested = if self.contested { " (contested)" } else { "" };
        write!(
            f,
            "{status} {}{contested}: {}/{} probes",
            self.id, self.passed, self.probes
        )?;
        if let Some(e) = &self.error {
            write!(f, "\n  error: {e}")?;
        }
        for fail in self.failures.iter().take(10) {
            let p = &fail.probe;
            write!(
                f,
                "\n  {} -> {} {}/{}: expected {}, got {}",
                p.src,
                p.dst,
                p.protocol.name(),
                p.port,
                fail.expected,
                fail.got
            )?;
        }
        if self.failures.len() > 10 {
            write!(f, "\n  ... and {} more", self.failures.len() - 10)?;
        }
        Ok(())
    }
}

/// Evaluates `case` and compares every answer with upstream's.
pub fn check_case(case: &Case) -> CaseReport {
    let mut report = CaseReport {
        id: case.id.clone(),
        contested: case.is_contested(),
        probes: case.probes.len(),
        passed: 0,
        failures: Vec::new(),
        error: None,
    };
    let compiled = match CompiledCase::new(case) {
        Ok(c) => c,
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    for (index, (probe, &expected)) in case.probes.iter().zip(case.expectations()).enumerate() {
        let Some(expected) = expected else {
            report.error = Some(format!(
                "probe {index} has no `expect`: nothing to test against"
            ));
            report.passed = 0;
            report.failures.clear();
            return report;
        };
        match compiled.verdict(probe) {
            Ok(got) if got == expected => report.passed += 1,
            Ok(got) => report.failures.push(ProbeFailure {
                index,
                probe: probe.clone(),
                expected,
                got,
            }),
            Err(e) => {
                report.error = Some(e.to_string());
                report.passed = 0;
                report.failures.clear();
                return report;
            }
        }
    }
    report
}
