//! The orchestrator-facing gRPC service: inventory, policy objects, drafts and commits,
//! explain, status, watch, enrollment tokens and revocation.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use palisade_api::pb::orchestrator::v1 as pb;
use palisade_api::pb::orchestrator::v1::orchestrator_server::Orchestrator;
use palisade_intent::{Object, ObjectKey, ObjectKind, lang, yaml};
use palisade_k8s::K8sPolicy;
use palisade_program::{Packet, Protocol};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::convert::*;
use crate::fleet::{CommitRecord, Effects, Fleet, FleetError, Role, parse_scope, scope_text};
use crate::hub::HubEvent;
use crate::service::{Core, status_of};

/// The Orchestrator service.
pub struct OrchestratorService {
    core: Arc<Core>,
}

impl OrchestratorService {
    /// The service over the shared core.
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// Runs an inventory change and answers with its commit.
    async fn inventory_change(
        &self,
        f: impl FnOnce(&mut Fleet) -> Result<(CommitRecord, Effects), FleetError> + Send + 'static,
    ) -> Result<Response<pb::Change>, Status> {
        let core = Arc::clone(&self.core);
        let (commit, effects) = self.core.with_fleet(f).await?.map_err(|e| status_of(&e))?;
        core.apply_effects(effects);
        let fleet = core.fleet.lock().expect("fleet lock");
        Ok(Response::new(pb::Change {
            commit: Some(core.commit_pb(&fleet, &commit)),
            ..pb::Change::default()
        }))
    }
}

/// The Kubernetes kind `text` names (`NetworkPolicy`, `netpol`, `anp`, `banp`, any case).
pub fn kubernetes_kind(text: &str) -> Option<&'static str> {
    let k = text.to_ascii_lowercase().replace(['-', '_', ' '], "");
    match k.as_str() {
        "networkpolicy" | "netpol" => Some("NetworkPolicy"),
        "adminnetworkpolicy" | "anp" => Some("AdminNetworkPolicy"),
        "baselineadminnetworkpolicy" | "banp" => Some("BaselineAdminNetworkPolicy"),
        _ => None,
    }
}

/// The scope a Kubernetes policy shows in: its namespace's project, or global.
fn kubernetes_scope(policy: &K8sPolicy) -> String {
    match policy {
        K8sPolicy::NetworkPolicy(p) => format!("project/{}", p.namespace()),
        _ => "global".into(),
    }
}

/// Parses an object kind as users write it.
pub fn parse_kind(text: &str) -> Result<ObjectKind, Status> {
    let k = text.to_ascii_lowercase().replace(['-', '_', ' '], "");
    Ok(match k.as_str() {
        "tagtype" => ObjectKind::TagType,
        "tag" => ObjectKind::Tag,
        "addressgroup" => ObjectKind::AddressGroup,
        "servicegroup" => ObjectKind::ServiceGroup,
        "firewallpolicy" | "policy" => ObjectKind::FirewallPolicy,
        "applicationpolicyset" | "aps" => ObjectKind::ApplicationPolicySet,
        _ => {
            return Err(Status::invalid_argument(format!(
                "kind `{text}`: expected TagType, Tag, AddressGroup, ServiceGroup, FirewallPolicy, ApplicationPolicySet, NetworkPolicy, AdminNetworkPolicy or BaselineAdminNetworkPolicy"
            )));
        }
    })
}

fn kind_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::TagType => "TagType",
        ObjectKind::Tag => "Tag",
        ObjectKind::AddressGroup => "AddressGroup",
        ObjectKind::ServiceGroup => "ServiceGroup",
        ObjectKind::FirewallPolicy => "FirewallPolicy",
        ObjectKind::ApplicationPolicySet => "ApplicationPolicySet",
    }
}

/// Parses policy documents into intent objects and Kubernetes policies (documents with
/// Kubernetes API versions); every problem of every document is reported.
pub fn parse_documents(
    documents: &[pb::Document],
) -> Result<(Vec<Object>, Vec<K8sPolicy>), Status> {
    let mut objects = Vec::new();
    let mut kubernetes = Vec::new();
    let mut errors = Vec::new();
    for (i, doc) in documents.iter().enumerate() {
        let name = if doc.name.is_empty() {
            format!("document {}", i + 1)
        } else {
            doc.name.clone()
        };
        let format = match doc.format.as_str() {
            "" => {
                let lower = name.to_ascii_lowercase();
                if lower.ends_with(".pal") {
                    "pal"
                } else if lower.ends_with(".json") {
                    "json"
                } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
                    "yaml"
                } else if doc.content.trim_start().starts_with('{') {
                    "json"
                } else if doc.content.lines().any(|l| l.starts_with("kind:")) {
                    "yaml"
                } else {
                    "pal"
                }
            }
            f @ ("pal" | "yaml" | "json") => f,
            other => {
                errors.push(format!(
                    "{name}: format `{other}`: expected pal, yaml or json"
                ));
                continue;
            }
        };
        if format != "pal" && yaml::is_kubernetes(&doc.content) {
            match palisade_k8s::parse_documents(&doc.content, &name) {
                Ok(policies) => kubernetes.extend(policies),
                Err(e) => errors.push(e.to_string()),
            }
            continue;
        }
        match format {
            "pal" => match lang::parse(&doc.content) {
                Ok(d) => objects.extend(d.into_objects()),
                Err(es) => errors.extend(es.iter().map(|e| e.render(&name, &doc.content))),
            },
            _ => match yaml::parse_objects(&name, &doc.content) {
                Ok(os) => objects.extend(os.into_iter().map(|(o, _)| o)),
                Err(es) => errors.extend(es.iter().map(|e| e.to_string())),
            },
        }
    }
    if errors.is_empty() {
        Ok((objects, kubernetes))
    } else {
        Err(Status::invalid_argument(errors.join("\n")))
    }
}

fn render(objects: &[Object], format: &str) -> Result<String, Status> {
    match format {
        "" | "yaml" => Ok(yaml::to_yaml(objects)),
        "pal" => Ok(lang::print(objects)),
        "json" => Ok(objects
            .iter()
            .map(|o| serde_json::to_string(o).expect("objects serialize"))
            .collect::<Vec<_>>()
            .join("\n")),
        other => Err(Status::invalid_argument(format!(
            "format `{other}`: expected yaml, json or pal"
        ))),
    }
}

/// Most records a what-if replay reads.
const WHAT_IF_RECORDS: usize = 200_000;

/// The window `[since, until)`; `until` 0 is now.
fn window(since_ms: i64, until_ms: i64) -> Result<(i64, i64), Status> {
    let to = if until_ms == 0 {
        crate::fleet::now_ms() + 1
    } else {
        until_ms
    };
    if since_ms >= to {
        return Err(Status::invalid_argument(format!(
            "the window is empty: since {since_ms} is not before until {to}"
        )));
    }
    Ok((since_ms, to))
}

/// A flow query from its message.
fn flow_query(req: &pb::FlowQuery) -> Result<palisade_flows::Query, Status> {
    let (from_ms, to_ms) = window(req.since_ms, req.until_ms)?;
    Ok(palisade_flows::Query {
        from_ms,
        to_ms,
        filter: palisade_flows::Filter::parse(&req.r#where).map_err(Status::invalid_argument)?,
        group_by: palisade_flows::query::parse_group_by(&req.group_by)
            .map_err(Status::invalid_argument)?,
        order: match req.order.as_str() {
            "" => palisade_flows::OrderBy::Bytes,
            o => o
                .parse()
                .map_err(|e: String| Status::invalid_argument(format!("order: {e}")))?,
        },
        limit: req.limit as usize,
    })
}

/// A stored flow as a message.
fn flow_pb(f: &palisade_flows::Flow) -> palisade_api::pb::flow::v1::Flow {
    palisade_api::pb::flow::v1::Flow {
        record: Some(palisade_api::flows::to_pb(&f.record)),
        src_endpoint: f.src_endpoint.to_string(),
        dst_endpoint: f.dst_endpoint.to_string(),
        src_tags: f.src_tags.to_vec(),
        dst_tags: f.dst_tags.to_vec(),
    }
}

/// Replays recorded sessions against `programs`: each distinct session (5-tuple) once, its
/// recorded verdict denied if any device denied it.
pub fn what_if_changes(
    index: &palisade_inventory::InventoryIndex,
    programs: &std::collections::BTreeMap<String, Arc<palisade_program::DeviceProgram>>,
    flows: Vec<palisade_flows::Flow>,
) -> pb::WhatIfResponse {
    use palisade_flows::Verdict;
    let mut sessions: std::collections::BTreeMap<_, palisade_flows::Flow> = Default::default();
    for f in flows {
        let r = &f.record;
        let key = (r.src, r.dst, r.protocol, r.src_port, r.dst_port);
        let denied = r.verdict == Verdict::Denied;
        sessions
            .entry(key)
            .and_modify(|kept| {
                if denied {
                    kept.record.verdict = Verdict::Denied;
                }
            })
            .or_insert(f);
    }
    let mut changes = Vec::new();
    for f in sessions.values() {
        let packet = crate::telemetry::packet_of(&f.record);
        let sides = crate::telemetry::judge(index, programs, &packet);
        if sides.is_empty() {
            continue;
        }
        let allowed = sides.iter().all(|s| s.allowed);
        let recorded = f.record.verdict == Verdict::Allowed;
        if allowed != recorded {
            changes.push(pb::WhatIfChange {
                flow: Some(flow_pb(f)),
                recorded: f.record.verdict.to_string(),
                draft: if allowed { "allowed" } else { "denied" }.into(),
                decided_by: sides
                    .iter()
                    .map(|s| {
                        format!(
                            "{} ({} of {}): {}",
                            s.device, s.direction, s.endpoint, s.decided_by
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
    }
    pb::WhatIfResponse {
        sessions: sessions.len() as u64,
        changes,
    }
}

/// A Kubernetes policy as a manifest: YAML (default) or JSON.
fn render_kubernetes(policy: &K8sPolicy, format: &str) -> Result<String, Status> {
    match format {
        "" | "yaml" => serde_saphyr::to_string(policy)
            .map_err(|e| Status::internal(format!("{}: {e}", policy.display_name()))),
        "json" => Ok(serde_json::to_string(policy).expect("policies serialize")),
        other => Err(Status::invalid_argument(format!(
            "format `{other}`: a Kubernetes policy is shown as yaml or json"
        ))),
    }
}

fn object_key(kind: &str, scope: &str, name: &str) -> Result<ObjectKey, Status> {
    Ok(ObjectKey {
        kind: parse_kind(kind)?,
        scope: parse_scope(scope).map_err(|e| status_of(&e))?,
        name: name.to_string(),
    })
}

fn diff_pb(
    scope: &palisade_intent::Scope,
    revision: u64,
    entries: &[palisade_intent::DiffEntry],
) -> pb::DiffResponse {
    pb::DiffResponse {
        scope: scope_text(scope),
        revision,
        entries: entries
            .iter()
            .map(|e| pb::DiffEntry {
                kind: kind_name(e.key.kind).into(),
                name: e.key.name.clone(),
                change: match e.change {
                    palisade_intent::ChangeKind::Created => "created",
                    palisade_intent::ChangeKind::Updated => "updated",
                    palisade_intent::ChangeKind::Deleted => "deleted",
                }
                .into(),
                before: e
                    .before
                    .as_ref()
                    .map(|o| yaml::to_yaml(std::slice::from_ref(o)))
                    .unwrap_or_default(),
                after: e
                    .after
                    .as_ref()
                    .map(|o| yaml::to_yaml(std::slice::from_ref(o)))
                    .unwrap_or_default(),
            })
            .collect(),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl Orchestrator for OrchestratorService {
    async fn get_inventory(
        &self,
        request: Request<pb::GetInventoryRequest>,
    ) -> Result<Response<pb::Inventory>, Status> {
        self.core.caller(&request)?;
        let fleet = self.core.fleet.lock().expect("fleet lock");
        Ok(Response::new(inventory_to_pb(fleet.inventory())))
    }

    async fn apply_inventory(
        &self,
        request: Request<pb::Inventory>,
    ) -> Result<Response<pb::Change>, Status> {
        self.core.admin(&request)?;
        let inv = request.into_inner();
        let at =
            |what: &str, i: usize, e: String| Status::invalid_argument(format!("{what}[{i}]: {e}"));
        let mut devices = Vec::new();
        for (i, d) in inv.devices.iter().enumerate() {
            let device = device_from_pb(d).map_err(|e| at("devices", i, e))?;
            crate::fleet::check_name(&device.name).map_err(|e| at("devices", i, e.to_string()))?;
            devices.push(device);
        }
        let projects = inv
            .projects
            .iter()
            .enumerate()
            .map(|(i, p)| project_from_pb(p).map_err(|e| at("projects", i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let workloads = inv
            .workloads
            .iter()
            .enumerate()
            .map(|(i, w)| workload_from_pb(w).map_err(|e| at("workloads", i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        self.inventory_change(move |f| f.apply_inventory(devices, projects, workloads))
            .await
    }

    async fn put_device(
        &self,
        request: Request<pb::Device>,
    ) -> Result<Response<pb::Change>, Status> {
        self.core.admin(&request)?;
        let device = device_from_pb(request.get_ref()).map_err(Status::invalid_argument)?;
        crate::fleet::check_name(&device.name).map_err(|e| status_of(&e))?;
        self.inventory_change(move |f| f.put_device(device)).await
    }

    async fn delete_device(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::Change>, Status> {
        self.core.admin(&request)?;
        let name = request.into_inner().name;
        self.inventory_change(move |f| f.delete_device(&name)).await
    }

    async fn put_project(
        &self,
        request: Request<pb::Project>,
    ) -> Result<Response<pb::Change>, Status> {
        self.core.admin(&request)?;
        let project = project_from_pb(request.get_ref()).map_err(Status::invalid_argument)?;
        self.inventory_change(move |f| f.put_project(project)).await
    }

    async fn delete_project(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::Change>, Status> {
        self.core.admin(&request)?;
        let name = request.into_inner().name;
        self.inventory_change(move |f| f.delete_project(&name))
            .await
    }

    async fn put_workload(
        &self,
        request: Request<pb::Workload>,
    ) -> Result<Response<pb::Change>, Status> {
        self.core.admin(&request)?;
        let workload = workload_from_pb(request.get_ref()).map_err(Status::invalid_argument)?;
        self.inventory_change(move |f| f.put_workload(workload))
            .await
    }

    async fn delete_workload(
        &self,
        request: Request<pb::DeleteWorkloadRequest>,
    ) -> Result<Response<pb::Change>, Status> {
        self.core.admin(&request)?;
        let req = request.into_inner();
        self.inventory_change(move |f| f.delete_workload(&req.project, &req.name))
            .await
    }

    async fn apply(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        let caller = self.core.admin(&request)?;
        let req = request.into_inner();
        let (objects, policies) = parse_documents(&req.documents)?;
        let dry_run = req.dry_run;
        let core = Arc::clone(&self.core);
        let applying = self
            .core
            .with_fleet(move |f| f.apply(objects, policies, dry_run))
            .await?
            .map_err(|e| status_of(&e))?;
        core.apply_effects(applying.effects);
        let (applied, commit) = (applying.objects, applying.commit);
        if let Some(c) = &commit {
            info!(user = %caller.name, generation = c.generation, "applied and committed");
        }
        let fleet = core.fleet.lock().expect("fleet lock");
        Ok(Response::new(pb::ApplyResponse {
            changes: applied
                .iter()
                .map(|a| pb::ObjectChange {
                    kind: kind_name(a.key.kind).into(),
                    scope: scope_text(&a.key.scope),
                    name: a.key.name.clone(),
                    change: match a.change {
                        palisade_intent::AppliedChange::Created => "created",
                        palisade_intent::AppliedChange::Updated => "updated",
                        palisade_intent::AppliedChange::Unchanged => "unchanged",
                    }
                    .into(),
                    drafted: a.drafted,
                })
                .chain(applying.kubernetes.iter().map(|k| pb::ObjectChange {
                    kind: k.kind.into(),
                    scope: match k.namespace.as_str() {
                        "" => "global".into(),
                        ns => format!("project/{ns}"),
                    },
                    name: k.name.clone(),
                    change: k.change.into(),
                    drafted: false,
                }))
                .collect(),
            commits: commit.iter().map(|c| core.commit_pb(&fleet, c)).collect(),
        }))
    }

    async fn get_objects(
        &self,
        request: Request<pb::GetObjectsRequest>,
    ) -> Result<Response<pb::GetObjectsResponse>, Status> {
        self.core.caller(&request)?;
        let req = request.into_inner();
        let k8s_kind = kubernetes_kind(&req.kind);
        let kind = match req.kind.as_str() {
            "" => None,
            _ if k8s_kind.is_some() => None,
            k => Some(parse_kind(k)?),
        };
        let scope = match req.scope.as_str() {
            "" => None,
            s => Some(parse_scope(s).map_err(|e| status_of(&e))?),
        };
        let fleet = self.core.fleet.lock().expect("fleet lock");
        let intent = fleet.intent();
        let view = match (&scope, req.drafts) {
            (Some(s), true) => intent.draft_view(s),
            (None, true) => {
                return Err(Status::invalid_argument("drafts: say which scope"));
            }
            _ => intent.committed().clone(),
        };
        let mut objects = Vec::new();
        for o in view.objects() {
            if k8s_kind.is_some() {
                break;
            }
            let key = o.key();
            if kind.is_some_and(|k| k != key.kind)
                || scope.as_ref().is_some_and(|s| *s != key.scope)
                || (!req.name.is_empty() && req.name != key.name)
            {
                continue;
            }
            objects.push(pb::StoredObject {
                kind: kind_name(key.kind).into(),
                scope: scope_text(&key.scope),
                name: key.name.clone(),
                content: render(std::slice::from_ref(o), &req.format)?,
            });
        }
        // Kubernetes policies have no drafts: a draft view shows none.
        if kind.is_none() && !req.drafts {
            let scope = scope.as_ref().map(scope_text);
            for p in fleet.kubernetes().values() {
                if k8s_kind.is_some_and(|k| k != p.kind())
                    || scope.as_ref().is_some_and(|s| *s != kubernetes_scope(p))
                    || (!req.name.is_empty() && req.name != p.metadata().name)
                {
                    continue;
                }
                objects.push(pb::StoredObject {
                    kind: p.kind().into(),
                    scope: kubernetes_scope(p),
                    name: p.metadata().name.clone(),
                    content: render_kubernetes(p, &req.format)?,
                });
            }
        }
        if objects.is_empty() && !req.name.is_empty() {
            return Err(Status::not_found(format!("no object named `{}`", req.name)));
        }
        Ok(Response::new(pb::GetObjectsResponse { objects }))
    }

    async fn delete_object(
        &self,
        request: Request<pb::DeleteObjectRequest>,
    ) -> Result<Response<pb::Change>, Status> {
        self.core.admin(&request)?;
        let req = request.into_inner();
        if let Some(kind) = kubernetes_kind(&req.kind) {
            let namespace = match (kind, parse_scope(&req.scope).map_err(|e| status_of(&e))?) {
                ("NetworkPolicy", palisade_intent::Scope::Project(ns)) => ns,
                ("NetworkPolicy", palisade_intent::Scope::Global) => {
                    return Err(Status::invalid_argument(
                        "a NetworkPolicy lives in a namespace: give scope project/NAMESPACE",
                    ));
                }
                (_, palisade_intent::Scope::Global) => String::new(),
                (kind, palisade_intent::Scope::Project(_)) => {
                    return Err(Status::invalid_argument(format!(
                        "an {kind} is cluster-scoped: give scope global"
                    )));
                }
            };
            let name = req.name.clone();
            return self
                .inventory_change(move |f| f.delete_kubernetes(kind, &namespace, &name))
                .await;
        }
        let key = object_key(&req.kind, &req.scope, &req.name)?;
        let scope = key.scope.clone();
        let core = Arc::clone(&self.core);
        let (commit, effects) = self
            .core
            .with_fleet(move |f| f.delete_object(&key))
            .await?
            .map_err(|e| status_of(&e))?;
        core.apply_effects(effects);
        let fleet = core.fleet.lock().expect("fleet lock");
        Ok(Response::new(match commit {
            Some(c) => pb::Change {
                commit: Some(core.commit_pb(&fleet, &c)),
                ..pb::Change::default()
            },
            None => pb::Change {
                drafted: true,
                revision: fleet.intent().revision(&scope),
                scope: scope_text(&scope),
                ..pb::Change::default()
            },
        }))
    }

    async fn set_drafting(
        &self,
        request: Request<pb::SetDraftingRequest>,
    ) -> Result<Response<pb::Change>, Status> {
        self.core.admin(&request)?;
        let req = request.into_inner();
        let scope = parse_scope(&req.scope).map_err(|e| status_of(&e))?;
        let s = scope.clone();
        let revision = self
            .core
            .with_fleet(move |f| {
                f.set_drafting(s.clone(), req.enabled)
                    .map(|()| f.intent().revision(&s))
            })
            .await?
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(pb::Change {
            drafted: req.enabled,
            scope: scope_text(&scope),
            revision,
            commit: None,
        }))
    }

    async fn diff(
        &self,
        request: Request<pb::ScopeRequest>,
    ) -> Result<Response<pb::DiffResponse>, Status> {
        self.core.caller(&request)?;
        let scope = parse_scope(&request.get_ref().scope).map_err(|e| status_of(&e))?;
        let fleet = self.core.fleet.lock().expect("fleet lock");
        let (revision, entries) = fleet.diff(&scope);
        Ok(Response::new(diff_pb(&scope, revision, &entries)))
    }

    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::Change>, Status> {
        let caller = self.core.admin(&request)?;
        let req = request.into_inner();
        let scope = parse_scope(&req.scope).map_err(|e| status_of(&e))?;
        let core = Arc::clone(&self.core);
        let (commit, effects) = self
            .core
            .with_fleet(move |f| f.commit(&scope, req.expected_revision))
            .await?
            .map_err(|e| status_of(&e))?;
        info!(user = %caller.name, generation = commit.generation, scope = %commit.scope, "committed");
        core.apply_effects(effects);
        let fleet = core.fleet.lock().expect("fleet lock");
        Ok(Response::new(pb::Change {
            commit: Some(core.commit_pb(&fleet, &commit)),
            ..pb::Change::default()
        }))
    }

    async fn revert(
        &self,
        request: Request<pb::ScopeRequest>,
    ) -> Result<Response<pb::DiffResponse>, Status> {
        self.core.admin(&request)?;
        let scope = parse_scope(&request.get_ref().scope).map_err(|e| status_of(&e))?;
        let s = scope.clone();
        let (revision, entries) = self
            .core
            .with_fleet(move |f| f.revert(&s).map(|d| (f.intent().revision(&s), d)))
            .await?
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(diff_pb(&scope, revision, &entries)))
    }

    async fn explain(
        &self,
        request: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::ExplainResponse>, Status> {
        self.core.caller(&request)?;
        let req = request.into_inner();
        let fleet = self.core.fleet.lock().expect("fleet lock");
        explain(&fleet, &req).map(Response::new)
    }

    async fn query_flows(
        &self,
        request: Request<pb::FlowQuery>,
    ) -> Result<Response<pb::FlowQueryResponse>, Status> {
        self.core.caller(&request)?;
        let req = request.into_inner();
        let query = flow_query(&req)?;
        let store = &self.core.telemetry.store;
        let unavailable = |e: palisade_flows::StoreError| Status::unavailable(e.to_string());
        if req.list {
            let limit = match req.limit {
                0 => 1000,
                n => n as usize,
            };
            let flows = store.flows(&query, limit).await.map_err(unavailable)?;
            return Ok(Response::new(pb::FlowQueryResponse {
                keys: Vec::new(),
                rows: Vec::new(),
                flows: flows.iter().map(flow_pb).collect(),
            }));
        }
        if req.never_hit {
            let by_rule = palisade_flows::Query {
                group_by: vec![palisade_flows::Field::Rule],
                limit: 0,
                ..query.clone()
            };
            let hit: std::collections::BTreeSet<String> = store
                .aggregate(&by_rule)
                .await
                .map_err(unavailable)?
                .into_iter()
                .filter_map(|r| r.key.into_iter().next())
                .collect();
            let all: std::collections::BTreeSet<String> = {
                let fleet = self.core.fleet.lock().expect("fleet lock");
                fleet
                    .programs()
                    .values()
                    .flat_map(|p| p.tiers().iter().flat_map(|t| t.rules.iter()))
                    .map(|r| r.id.clone())
                    .collect()
            };
            let mut rows: Vec<pb::FlowRow> = all
                .difference(&hit)
                .map(|id| pb::FlowRow {
                    key: vec![id.clone()],
                    ..pb::FlowRow::default()
                })
                .collect();
            if query.limit > 0 {
                rows.truncate(query.limit);
            }
            return Ok(Response::new(pb::FlowQueryResponse {
                keys: vec!["rule".into()],
                rows,
                flows: Vec::new(),
            }));
        }
        let rows = store.aggregate(&query).await.map_err(unavailable)?;
        Ok(Response::new(pb::FlowQueryResponse {
            keys: query.group_by.iter().map(|k| k.to_string()).collect(),
            rows: rows
                .into_iter()
                .map(|r| pb::FlowRow {
                    key: r.key,
                    sessions: r.sessions,
                    packets: r.packets,
                    bytes: r.bytes,
                    records: r.records,
                })
                .collect(),
            flows: Vec::new(),
        }))
    }

    async fn what_if(
        &self,
        request: Request<pb::WhatIfRequest>,
    ) -> Result<Response<pb::WhatIfResponse>, Status> {
        self.core.caller(&request)?;
        let req = request.into_inner();
        let scope = parse_scope(&req.scope).map_err(|e| status_of(&e))?;
        let (from_ms, to_ms) = window(req.since_ms, req.until_ms)?;
        let query = palisade_flows::Query {
            from_ms,
            to_ms,
            ..palisade_flows::Query::default()
        };
        let flows = self
            .core
            .telemetry
            .store
            .flows(&query, WHAT_IF_RECORDS)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let s = scope.clone();
        let (index, programs) = self
            .core
            .with_fleet(move |f| {
                f.draft_programs(&s)
                    .map(|programs| (Arc::clone(f.index()), programs))
            })
            .await?
            .map_err(|e| match e {
                FleetError::Intent(palisade_intent::StoreError::NothingToCommit(_)) => {
                    Status::failed_precondition(format!(
                        "{}: no drafts to try (apply changes with drafting on first)",
                        scope_text(&scope)
                    ))
                }
                e => status_of(&e),
            })?;
        Ok(Response::new(what_if_changes(&index, &programs, flows)))
    }

    async fn list_commits(
        &self,
        request: Request<pb::ListCommitsRequest>,
    ) -> Result<Response<pb::ListCommitsResponse>, Status> {
        self.core.caller(&request)?;
        let limit = match request.get_ref().limit {
            0 => 20,
            n => n as usize,
        };
        let fleet = self.core.fleet.lock().expect("fleet lock");
        Ok(Response::new(pb::ListCommitsResponse {
            commits: fleet
                .commits(limit)
                .into_iter()
                .map(|c| self.core.commit_pb(&fleet, c))
                .collect(),
        }))
    }

    async fn get_commit(
        &self,
        request: Request<pb::GetCommitRequest>,
    ) -> Result<Response<pb::CommitStatus>, Status> {
        self.core.caller(&request)?;
        let generation = request.get_ref().generation;
        let fleet = self.core.fleet.lock().expect("fleet lock");
        let commit = fleet
            .commit_record(generation)
            .ok_or_else(|| Status::not_found(format!("no commit has generation {generation}")))?;
        Ok(Response::new(self.core.commit_pb(&fleet, commit)))
    }

    async fn list_devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        self.core.caller(&request)?;
        let fleet = self.core.fleet.lock().expect("fleet lock");
        Ok(Response::new(pb::ListDevicesResponse {
            devices: fleet
                .device_names()
                .iter()
                .map(|d| device_state(&self.core, &fleet, d))
                .collect(),
        }))
    }

    type WatchStream = EventStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.core.caller(&request)?;
        let mut events = self.core.hub.events();
        let core = Arc::clone(&self.core);
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    e = events.recv() => e,
                    _ = tx.closed() => break,
                };
                let message = match event {
                    Ok(HubEvent::Commit(generation)) => {
                        let fleet = core.fleet.lock().expect("fleet lock");
                        fleet.commit_record(generation).map(|c| pb::Event {
                            event: Some(pb::event::Event::Commit(core.commit_pb(&fleet, c))),
                        })
                    }
                    Ok(HubEvent::Device(name)) => {
                        let fleet = core.fleet.lock().expect("fleet lock");
                        Some(pb::Event {
                            event: Some(pb::event::Event::Device(device_state(
                                &core, &fleet, &name,
                            ))),
                        })
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "the watcher fell {n} events behind; watch again and list to resynchronise"
                            ))))
                            .await;
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                if let Some(m) = message
                    && tx.send(Ok(m)).await.is_err()
                {
                    break;
                }
            }
        });
        Ok(Response::new(
            Box::pin(ReceiverStream::new(rx)) as EventStream
        ))
    }

    async fn create_enrollment_token(
        &self,
        request: Request<pb::CreateEnrollmentTokenRequest>,
    ) -> Result<Response<pb::EnrollmentToken>, Status> {
        let caller = self.core.admin(&request)?;
        let req = request.into_inner();
        let validity = Duration::from_secs(match req.valid_seconds {
            0 => 3600,
            s => u64::from(s),
        });
        let device = req.device.clone();
        let core = Arc::clone(&self.core);
        let (token, expires, effects) = self
            .core
            .with_fleet(move |f| f.create_token(&req.device, validity))
            .await?
            .map_err(|e| status_of(&e))?;
        core.apply_effects(effects);
        info!(user = %caller.name, device = %device, "enrollment token created");
        Ok(Response::new(pb::EnrollmentToken {
            device,
            token,
            expires_at_unix: expires,
        }))
    }

    async fn revoke_device(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::RevokeDeviceResponse>, Status> {
        let caller = self.core.admin(&request)?;
        let name = request.into_inner().name;
        let core = Arc::clone(&self.core);
        let device = name.clone();
        let (serials, effects) = self
            .core
            .with_fleet(move |f| f.revoke(&device))
            .await?
            .map_err(|e| status_of(&e))?;
        core.apply_effects(effects);
        info!(user = %caller.name, device = %name, certificates = serials.len(), "device revoked");
        Ok(Response::new(pb::RevokeDeviceResponse { serials }))
    }

    async fn create_api_token(
        &self,
        request: Request<pb::CreateApiTokenRequest>,
    ) -> Result<Response<pb::ApiToken>, Status> {
        let caller = self.core.admin(&request)?;
        let req = request.into_inner();
        let role = match req.role.as_str() {
            "admin" => Role::Admin,
            "read-only" | "readonly" | "" => Role::ReadOnly,
            other => {
                return Err(Status::invalid_argument(format!(
                    "role `{other}`: expected admin or read-only"
                )));
            }
        };
        let name = req.name.clone();
        let token = self
            .core
            .with_fleet(move |f| f.create_user_token(&req.name, role))
            .await?
            .map_err(|e| status_of(&e))?;
        info!(user = %caller.name, new_user = %name, ?role, "API token created");
        Ok(Response::new(pb::ApiToken { name, token }))
    }
}

/// A device's state message.
pub fn device_state(core: &Core, fleet: &Fleet, name: &str) -> pb::DeviceState {
    let record = fleet.device(name);
    let desired = fleet.program(name);
    let status = core.hub.status(name);
    let placement = record.and_then(|r| r.acked.as_ref()).map(|a| &a.placement);
    pb::DeviceState {
        name: name.to_string(),
        enrolled: record.is_some_and(|r| !r.certificates.is_empty()),
        connected: core.hub.connected(name),
        revoked: record.is_some_and(|r| r.revoked),
        desired_generation: desired.map_or(0, |p| p.generation()),
        desired_hash: desired.map(|p| p.hash().0.to_vec()).unwrap_or_default(),
        acked_generation: record
            .and_then(|r| r.acked.as_ref())
            .map_or(0, |a| a.generation),
        acked_hash: record
            .and_then(|r| r.acked.as_ref())
            .and_then(|a| a.hash.parse::<palisade_program::ContentHash>().ok())
            .map(|h| h.0.to_vec())
            .unwrap_or_default(),
        last_error: record
            .and_then(|r| r.failed.as_ref())
            .filter(|f| {
                record
                    .and_then(|r| r.acked.as_ref())
                    .is_none_or(|a| a.generation < f.generation)
            })
            .map(|f| f.error.clone())
            .unwrap_or_default(),
        last_seen_unix_ms: core.hub.last_seen_ms(name),
        certificate_not_after_unix: record
            .and_then(|r| r.certificates.iter().map(|c| c.not_after_unix).max())
            .unwrap_or(0),
        profile: record.map(|r| r.profile.clone()).unwrap_or_default(),
        hardware_rules: placement.map_or(0, |p| p.hardware),
        split_rules: placement.map_or(0, |p| p.split),
        software_rules: placement.map_or(0, |p| p.software),
        sessions: status.map_or(0, |s| s.sessions),
    }
}

/// Explains a connection from committed intent, and what each device's program does with
/// it, with where the deciding rule runs (as the device last reported).
pub fn explain(fleet: &Fleet, req: &pb::ExplainRequest) -> Result<pb::ExplainResponse, Status> {
    let index = fleet.index();
    let address = |reference: &str, what: &str| {
        index
            .resolve(reference)
            .map_err(|e| Status::invalid_argument(format!("{what}: {e}")))?
            .address(index)
            .ok_or_else(|| {
                Status::invalid_argument(format!("{what}: `{reference}` has no address"))
            })
    };
    let src = address(&req.from, "from")?;
    let dst = address(&req.to, "to")?;
    let protocol: Protocol = match req.protocol.as_str() {
        "" => Protocol::TCP,
        p => p
            .parse()
            .map_err(|e| Status::invalid_argument(format!("protocol: {e}")))?,
    };
    let dst_port =
        u16::try_from(req.port).map_err(|_| Status::invalid_argument("port: above 65535"))?;
    let src_port = match req.src_port {
        0 => 49152,
        p => u16::try_from(p).map_err(|_| Status::invalid_argument("src_port: above 65535"))?,
    };
    let query = palisade_intent::Query {
        src,
        dst,
        protocol,
        src_port,
        dst_port,
    };
    let set = fleet.intent().committed();
    let kubernetes = fleet.kubernetes();
    // From intent: our model or Kubernetes', when only one is in use; the devices' view
    // always.
    let (intent_allowed, intent_text, intent_json) = if kubernetes.is_empty() {
        let e = palisade_intent::explain(set, index, &query)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let text = palisade_intent::explain::render(set, &e);
        (
            Some(e.allowed),
            text,
            serde_json::to_value(&e).unwrap_or_default(),
        )
    } else if set.is_empty() {
        let policies: Vec<K8sPolicy> = kubernetes.values().cloned().collect();
        let e = palisade_k8s::explain(&policies, index, src, dst, protocol, dst_port);
        let text: String = e
            .to_string()
            .lines()
            .skip(1)
            .map(|l| format!("{l}\n"))
            .collect();
        (
            Some(e.allowed),
            text,
            serde_json::to_value(&e).unwrap_or_default(),
        )
    } else {
        (
            None,
            "(intent-level explanation covers one model at a time; Palisade intent and Kubernetes policies are both in force, so only the devices' view is shown)\n".into(),
            serde_json::Value::Null,
        )
    };
    let packet = Packet {
        src,
        dst,
        protocol,
        src_port,
        dst_port,
    };
    let mut text = intent_text;
    let mut devices = Vec::new();
    let mut device_allowed = true;
    for side in crate::telemetry::judge(index, fleet.programs(), &packet) {
        let decided_by = match &side.rule {
            Some(rule) => {
                let program_generation = fleet.program(&side.device).map_or(0, |p| p.generation());
                let place = fleet
                    .device(&side.device)
                    .and_then(|d| d.acked.as_ref())
                    .filter(|a| a.generation >= program_generation)
                    .and_then(|a| a.placement.rules.get(rule).cloned())
                    .unwrap_or_else(|| "placement not reported yet".into());
                format!("{} ({place})", side.decided_by)
            }
            None => side.decided_by.clone(),
        };
        device_allowed &= side.allowed;
        text.push_str(&format!(
            "  device {} ({} of {}): {} by {decided_by}\n",
            side.device,
            side.direction,
            side.endpoint,
            if side.allowed { "allows" } else { "denies" }
        ));
        devices.push(serde_json::json!({"device": side.device, "endpoint": side.endpoint, "direction": side.direction, "allowed": side.allowed, "decided_by": decided_by}));
    }
    // Intent and programs agree (property-tested); the programs decide when only they speak.
    let allowed = intent_allowed.unwrap_or(device_allowed);
    let header = format!(
        "{protocol} {src} -> {dst}{}: {}\n",
        if protocol.has_ports() {
            format!(":{dst_port}")
        } else {
            String::new()
        },
        if allowed { "ALLOWED" } else { "DENIED" }
    );
    let json = serde_json::json!({"allowed": allowed, "intent": intent_json, "devices": devices});
    Ok(pb::ExplainResponse {
        allowed,
        text: header + &text,
        json: json.to_string(),
    })
}
