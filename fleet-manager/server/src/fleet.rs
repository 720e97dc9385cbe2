//! The fleet manager's state machine: intent, inventory, the programs they compile to,
//! commits and what each device acknowledged, enrollment tokens and API users.
//!
//! Every change follows one pattern: compute the next state on copies, write it to the
//! [`StateStore`] in one batch, and only then make it current. A refused change (invalid
//! intent, a program that does not compile, a store that cannot write) leaves everything as
//! it was. The state machine does no network I/O; what the outside world must learn — new
//! programs for devices, commit and device status changes — comes back as [`Effects`].
//!
//! Commit status is computed, never stored: a target device is *acked* once it acknowledged
//! a generation at least the commit's, *failed* if it refused one (with its reason) or did
//! not answer within the acknowledgement timeout, *pending* otherwise. A commit is
//! *enforced* when every target acked, *failed* when any failed, *pending* otherwise — so a
//! device that acks late turns a failed commit into an enforced one, as it should.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade_compiler::{CompileOptions, Compiler};
use palisade_intent::{
    Applied, DiffEntry, IntentStore, Lowerer, Object, ObjectKey, Outcome, Scope, Snapshot,
};
use palisade_inventory::{Device, Inventory, InventoryIndex, Project, Workload};
use palisade_k8s::K8sPolicy;
use palisade_program::{Action, ContentHash, DeviceProgram};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::store::{Batch, Contents, StateStore, StoreError, Table, decode};

/// How the fleet behaves.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// The verdict for traffic touching no local endpoint of a device.
    pub foreign: Action,
    /// How long a target device has to acknowledge a commit before it counts as failed.
    pub ack_timeout: Duration,
    /// Lifetime of device certificates.
    pub certificate_validity: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            foreign: Action::Allow,
            ack_timeout: Duration::from_secs(60),
            certificate_validity: Duration::from_secs(24 * 3600),
        }
    }
}

/// Signs device certificates: the fleet's CA, seen from the state machine.
pub trait Authority: Send + Sync {
    /// A certificate for `device` from its signing request.
    fn sign_device(
        &self,
        csr_pem: &str,
        device: &str,
        validity: Duration,
    ) -> Result<SignedCertificate, String>;
    /// The CA certificate, PEM.
    fn ca_pem(&self) -> String;
}

/// A certificate the authority issued.
#[derive(Clone, Debug)]
pub struct SignedCertificate {
    /// PEM.
    pub pem: String,
    /// Serial, lowercase hex.
    pub serial: String,
    /// Expiry, seconds since the epoch.
    pub not_after_unix: i64,
}

/// Why a request was refused. Nothing changed.
#[derive(Debug, Error)]
pub enum FleetError {
    /// The intent change is refused (invalid, referenced, conflict, ...).
    #[error("{0}")]
    Intent(#[from] palisade_intent::StoreError),
    /// The inventory change is refused.
    #[error("inventory: {0}")]
    Inventory(String),
    /// The intent does not lower or compile against the inventory.
    #[error("{0}")]
    Compile(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// Enrollment or renewal refused.
    #[error("{0}")]
    Denied(String),
    /// The state could not be saved.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// API roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reads and writes.
    Admin,
    /// Reads only.
    ReadOnly,
}

/// An API user behind a bearer token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Who.
    pub name: String,
    /// What they may do.
    pub role: Role,
}

/// A device as the manager knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Name.
    pub name: String,
    /// Certificates issued to it.
    pub certificates: Vec<CertificateRecord>,
    /// Whether it was revoked (it can no longer connect or enroll).
    pub revoked: bool,
    /// Its last successful acknowledgement.
    pub acked: Option<AckRecord>,
    /// Its last refusal.
    pub failed: Option<FailureRecord>,
    /// Its hardware profile, as it last reported.
    pub profile: String,
}

/// One issued certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRecord {
    /// Serial, lowercase hex.
    pub serial: String,
    /// Expiry, seconds since the epoch.
    pub not_after_unix: i64,
}

/// Where a program's rules run on a device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementSummary {
    /// Rules entirely in hardware.
    pub hardware: u32,
    /// Rules split between hardware and software.
    pub split: u32,
    /// Rules in software only.
    pub software: u32,
    /// Rule id -> "hardware", "split" or "software".
    pub rules: BTreeMap<String, String>,
}

/// A successful acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRecord {
    /// Generation applied.
    pub generation: u64,
    /// Content hash applied.
    pub hash: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Where the rules run.
    pub placement: PlacementSummary,
}

/// A refusal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// Generation refused.
    pub generation: u64,
    /// Its content hash.
    pub hash: String,
    /// The device's reason.
    pub error: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

/// A commit: what changed and which devices got a new program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    /// The generation it created (its id).
    pub generation: u64,
    /// `global`, `project/<name>`, `inventory` or `system`.
    pub scope: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// What changed, in words.
    pub summary: String,
    /// Devices whose program changed.
    pub targets: Vec<TargetRecord>,
}

/// A device's new program in a commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    /// The device.
    pub device: String,
    /// Its program's generation.
    pub generation: u64,
    /// Its program's content hash.
    pub hash: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ProgramRecord {
    generation: u64,
    hash: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct TokenRecord {
    device: String,
    expires_ms: i64,
    used_at_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RevokedRecord {
    device: String,
    at_ms: i64,
}

/// The state of a commit or of one of its targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for devices.
    Pending,
    /// Every target applied it (for a target: it applied it).
    Enforced,
    /// A target refused it or did not answer in time.
    Failed,
}

/// A commit with its computed status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CommitStatus {
    /// The record.
    pub commit: CommitRecord,
    /// Overall state.
    pub state: State,
    /// Per target: state and reason.
    pub targets: Vec<(TargetRecord, State, String)>,
}

/// What the outside world must learn after a change.
#[derive(Debug, Default)]
pub struct Effects {
    /// New desired programs, to push.
    pub programs: Vec<Arc<DeviceProgram>>,
    /// Commits whose status may have changed.
    pub commits: Vec<u64>,
    /// Devices whose state changed.
    pub devices: Vec<String>,
    /// The set of revoked serials changed: regenerate the CRL.
    pub revocations: bool,
    /// Devices whose connections must be closed (revoked).
    pub disconnect: Vec<String>,
}

/// One device acknowledgement, as [`Fleet::ack_many`] takes them.
#[derive(Clone, Debug)]
pub struct Ack {
    /// The device.
    pub device: String,
    /// The generation it applied or refused.
    pub generation: u64,
    /// The program's content hash.
    pub hash: ContentHash,
    /// Where the rules run, or why it refused the program.
    pub result: Result<PlacementSummary, String>,
    /// Its hardware profile, when it says.
    pub profile: Option<String>,
}

/// What [`Fleet::apply`] did.
#[derive(Debug)]
pub struct Applying {
    /// Each intent object.
    pub objects: Vec<Applied>,
    /// Each Kubernetes policy.
    pub kubernetes: Vec<KubernetesChange>,
    /// The commit made, if anything changed outside drafting scopes.
    pub commit: Option<CommitRecord>,
    /// What the outside world must learn.
    pub effects: Effects,
}

/// Lowers committed intent and Kubernetes policies into one IR: ours first within each
/// tier, then Kubernetes'.
fn lower_all(
    lowerer: &mut Lowerer,
    intent: &IntentStore,
    kubernetes: &Kubernetes,
    index: &Arc<InventoryIndex>,
) -> Result<palisade_compiler::PolicyIr, FleetError> {
    let mut ir = lowerer
        .lower(intent.committed(), Arc::clone(index))
        .map_err(|e| FleetError::Compile(e.to_string()))?
        .ir;
    if !kubernetes.is_empty() {
        let policies: Vec<K8sPolicy> = kubernetes.values().cloned().collect();
        ir.extend(
            palisade_k8s::lower(&policies, index)
                .map_err(|e| FleetError::Compile(e.to_string()))?,
        );
    }
    Ok(ir)
}

/// Current time in ms since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The hex SHA-256 of a secret, which is how tokens are stored.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random secret: `prefix` + 32 random bytes in hex.
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS has a random number generator");
    format!("{prefix}{}", hex(&bytes))
}

/// A scope as written in the API: `global` or `project/<name>`.
pub fn parse_scope(text: &str) -> Result<Scope, FleetError> {
    match text {
        "" | "global" => Ok(Scope::Global),
        _ => match text.strip_prefix("project/") {
            Some(p) if !p.is_empty() && !p.contains('/') => Ok(Scope::Project(p.to_string())),
            _ => Err(FleetError::Invalid(format!(
                "scope `{text}`: expected `global` or `project/<name>`"
            ))),
        },
    }
}

/// A scope as written in the API.
pub fn scope_text(scope: &Scope) -> String {
    match scope {
        Scope::Global => "global".into(),
        Scope::Project(p) => format!("project/{p}"),
    }
}

/// The fleet.
pub struct Fleet {
    store: Arc<dyn StateStore>,
    config: FleetConfig,
    generation: u64,
    intent: IntentStore,
    inventory: Inventory,
    index: Arc<InventoryIndex>,
    lowerer: Lowerer,
    compiler: Compiler,
    programs: BTreeMap<String, Arc<DeviceProgram>>,
    commits: BTreeMap<u64, CommitRecord>,
    devices: BTreeMap<String, DeviceRecord>,
    tokens: BTreeMap<String, TokenRecord>,
    users: BTreeMap<String, UserRecord>,
    revoked: BTreeMap<String, RevokedRecord>,
    kubernetes: Kubernetes,
}

/// Kubernetes policies as applied, by [`kubernetes_key`]. They have no drafts: like
/// `kubectl apply`, applying one commits it.
pub type Kubernetes = BTreeMap<String, K8sPolicy>;

/// A Kubernetes policy's key: `NetworkPolicy/NAMESPACE/NAME`, or `KIND//NAME` for the
/// cluster-scoped admin policies.
pub fn kubernetes_key(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind}/{namespace}/{name}")
}

/// The key of a policy (see [`kubernetes_key`]).
pub fn key_of(policy: &K8sPolicy) -> String {
    match policy {
        K8sPolicy::NetworkPolicy(p) => {
            kubernetes_key(policy.kind(), p.namespace(), &p.metadata.name)
        }
        other => kubernetes_key(other.kind(), "", &other.metadata().name),
    }
}

/// What applying one Kubernetes policy did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesChange {
    /// The policy's kind.
    pub kind: &'static str,
    /// Its namespace (empty for cluster-scoped policies).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `created`, `updated` or `unchanged`.
    pub change: &'static str,
}

const GENERATION: &str = "generation";
const INTENT: &str = "intent";
const INVENTORY: &str = "inventory";

fn commit_key(generation: u64) -> String {
    format!("{generation:020}")
}

fn rows(contents: &Contents, table: Table) -> impl Iterator<Item = (&String, &[u8])> {
    contents
        .get(&table)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k, v.as_slice()))
}

impl Fleet {
    /// Loads the fleet from its store and compiles every program. Programs whose content
    /// did not change keep their generation; any that did (a new compiler) get a new one,
    /// recorded as a `system` commit.
    pub fn open(store: Arc<dyn StateStore>, config: FleetConfig) -> Result<Self, FleetError> {
        let contents = store.load()?;
        let meta = |key: &str| {
            contents
                .get(&Table::Meta)
                .and_then(|m| m.get(key))
                .map(|v| v.as_slice())
        };
        let generation: u64 = match meta(GENERATION) {
            Some(v) => decode(Table::Meta, GENERATION, v)?,
            None => 0,
        };
        let intent = match meta(INTENT) {
            Some(v) => {
                let snapshot: Snapshot = decode(Table::Meta, INTENT, v)?;
                IntentStore::restore(snapshot)?
            }
            None => IntentStore::new(),
        };
        let inventory: Inventory = match meta(INVENTORY) {
            Some(v) => decode(Table::Meta, INVENTORY, v)?,
            None => Inventory::default(),
        };
        let index = Arc::new(
            inventory
                .clone()
                .index()
                .map_err(|e| FleetError::Inventory(e.to_string()))?,
        );
        let mut fleet = Self {
            store,
            compiler: Compiler::new(CompileOptions {
                foreign: config.foreign,
            }),
            config,
            generation,
            intent,
            inventory,
            index,
            lowerer: Lowerer::new(),
            programs: BTreeMap::new(),
            commits: BTreeMap::new(),
            devices: BTreeMap::new(),
            tokens: BTreeMap::new(),
            users: BTreeMap::new(),
            revoked: BTreeMap::new(),
            kubernetes: Kubernetes::new(),
        };
        for (k, v) in rows(&contents, Table::Kubernetes) {
            fleet
                .kubernetes
                .insert(k.clone(), decode(Table::Kubernetes, k, v)?);
        }
        for (k, v) in rows(&contents, Table::Commits) {
            let c: CommitRecord = decode(Table::Commits, k, v)?;
            fleet.commits.insert(c.generation, c);
        }
        for (k, v) in rows(&contents, Table::Devices) {
            fleet
                .devices
                .insert(k.clone(), decode(Table::Devices, k, v)?);
        }
        for (k, v) in rows(&contents, Table::Tokens) {
            fleet.tokens.insert(k.clone(), decode(Table::Tokens, k, v)?);
        }
        for (k, v) in rows(&contents, Table::Users) {
            fleet.users.insert(k.clone(), decode(Table::Users, k, v)?);
        }
        for (k, v) in rows(&contents, Table::Revoked) {
            fleet
                .revoked
                .insert(k.clone(), decode(Table::Revoked, k, v)?);
        }
        let mut stored: BTreeMap<String, ProgramRecord> = BTreeMap::new();
        for (k, v) in rows(&contents, Table::Programs) {
            stored.insert(k.clone(), decode(Table::Programs, k, v)?);
        }
        // Recompile; keep stored generations for unchanged content.
        let compiled = fleet.compile(
            &fleet.intent.clone(),
            &fleet.kubernetes.clone(),
            Arc::clone(&fleet.index),
            generation,
        )?;
        let mut changed = Vec::new();
        for (device, program) in compiled {
            let program = match stored.get(&device) {
                Some(rec) if rec.hash == program.hash().to_string() => {
                    Arc::new((*program).clone().with_generation(rec.generation))
                }
                _ => {
                    changed.push(device.clone());
                    program
                }
            };
            fleet.programs.insert(device, program);
        }
        if !changed.is_empty() && generation > 0 {
            // The compiler changed under stored state: push the new programs as a commit.
            let next = generation + 1;
            let mut batch = Batch::new();
            let mut targets = Vec::new();
            for device in &changed {
                let program = Arc::new((*fleet.programs[device]).clone().with_generation(next));
                targets.push(TargetRecord {
                    device: device.clone(),
                    generation: next,
                    hash: program.hash().to_string(),
                });
                batch.put(
                    Table::Programs,
                    device.clone(),
                    &ProgramRecord {
                        generation: next,
                        hash: program.hash().to_string(),
                    },
                );
                fleet.programs.insert(device.clone(), program);
            }
            let commit = CommitRecord {
                generation: next,
                scope: "system".into(),
                at_ms: now_ms(),
                summary: format!("{} programs rebuilt by a new compiler", changed.len()),
                targets,
            };
            batch.put(Table::Commits, commit_key(next), &commit);
            batch.put(Table::Meta, GENERATION, &next);
            fleet.store.write(batch)?;
            fleet.commits.insert(next, commit);
            fleet.generation = next;
        }
        Ok(fleet)
    }

    /// The configuration.
    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The intent store (committed state and drafts).
    pub fn intent(&self) -> &IntentStore {
        &self.intent
    }

    /// The Kubernetes policies in force.
    pub fn kubernetes(&self) -> &Kubernetes {
        &self.kubernetes
    }

    /// The inventory.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The inventory's index.
    pub fn index(&self) -> &Arc<InventoryIndex> {
        &self.index
    }

    /// The desired program of a device.
    pub fn program(&self, device: &str) -> Option<&Arc<DeviceProgram>> {
        self.programs.get(device)
    }

    /// Every desired program.
    pub fn programs(&self) -> &BTreeMap<String, Arc<DeviceProgram>> {
        &self.programs
    }

    /// A device's record.
    pub fn device(&self, name: &str) -> Option<&DeviceRecord> {
        self.devices.get(name)
    }

    /// Every device name the manager knows: in the inventory or enrolled.
    pub fn device_names(&self) -> BTreeSet<String> {
        self.inventory
            .devices
            .iter()
            .map(|d| d.name.clone())
            .chain(self.devices.keys().cloned())
            .collect()
    }

    /// Lowers and compiles intent and Kubernetes policies against an inventory index (ours
    /// first within each tier, then Kubernetes'); programs that changed get `generation`.
    fn compile(
        &mut self,
        intent: &IntentStore,
        kubernetes: &Kubernetes,
        index: Arc<InventoryIndex>,
        generation: u64,
    ) -> Result<BTreeMap<String, Arc<DeviceProgram>>, FleetError> {
        let result = (|| {
            let ir = lower_all(&mut self.lowerer, intent, kubernetes, &index)?;
            let compiled = self
                .compiler
                .compile(index, Arc::new(ir), generation)
                .map_err(|e| FleetError::Compile(e.to_string()))?;
            Ok(compiled.programs)
        })();
        if result.is_err() {
            // The caches now hold refused input: forget them.
            self.lowerer = Lowerer::new();
            self.compiler.reset();
        }
        result
    }

    /// Makes `intent` and `inventory` current as one commit: compiles, records the commit
    /// with the devices whose program changed, persists, swaps. `extra` lands in the same
    /// batch.
    fn commit_state(
        &mut self,
        intent: IntentStore,
        inventory: Inventory,
        kubernetes: Kubernetes,
        scope: String,
        summary: String,
        extra: Batch,
    ) -> Result<(CommitRecord, Effects), FleetError> {
        let index = Arc::new(
            inventory
                .clone()
                .index()
                .map_err(|e| FleetError::Inventory(e.to_string()))?,
        );
        let next = self.generation + 1;
        let programs = self.compile(&intent, &kubernetes, Arc::clone(&index), next)?;
        let mut batch = Batch::new();
        let mut targets = Vec::new();
        let mut pushed = Vec::new();
        for (device, program) in &programs {
            let old = self.programs.get(device);
            if old.is_some_and(|o| o.hash() == program.hash()) {
                continue;
            }
            let program = if program.generation() == next {
                Arc::clone(program)
            } else {
                Arc::new((**program).clone().with_generation(next))
            };
            targets.push(TargetRecord {
                device: device.clone(),
                generation: next,
                hash: program.hash().to_string(),
            });
            batch.put(
                Table::Programs,
                device.clone(),
                &ProgramRecord {
                    generation: next,
                    hash: program.hash().to_string(),
                },
            );
            pushed.push(program);
        }
        for device in self.programs.keys() {
            if !programs.contains_key(device) {
                batch.delete(Table::Programs, device.clone());
            }
        }
        let commit = CommitRecord {
            generation: next,
            scope,
            at_ms: now_ms(),
            summary,
            targets,
        };
        batch.put(Table::Commits, commit_key(next), &commit);
        batch.put(Table::Meta, GENERATION, &next);
        batch.put(Table::Meta, INTENT, &intent.snapshot());
        batch.put(Table::Meta, INVENTORY, &inventory);
        for (key, policy) in &kubernetes {
            if self.kubernetes.get(key) != Some(policy) {
                batch.put(Table::Kubernetes, key.clone(), policy);
            }
        }
        for key in self.kubernetes.keys() {
            if !kubernetes.contains_key(key) {
                batch.delete(Table::Kubernetes, key.clone());
            }
        }
        batch.extend(extra);
        if let Err(e) = self.store.write(batch) {
            self.lowerer = Lowerer::new();
            self.compiler.reset();
            return Err(e.into());
        }
        // Current from here on.
        let mut merged = programs;
        for p in &pushed {
            merged.insert(p.device().to_string(), Arc::clone(p));
        }
        for (device, program) in merged.iter_mut() {
            if let Some(old) = self.programs.get(device)
                && old.hash() == program.hash()
            {
                *program = Arc::clone(old);
            }
        }
        self.programs = merged;
        self.generation = next;
        self.intent = intent;
        self.inventory = inventory;
        self.kubernetes = kubernetes;
        self.index = index;
        self.commits.insert(next, commit.clone());
        let effects = Effects {
            devices: pushed.iter().map(|p| p.device().to_string()).collect(),
            programs: pushed,
            commits: vec![next],
            ..Effects::default()
        };
        Ok((commit, effects))
    }

    /// Persists an intent change that made no commit (drafts, drafting flags).
    fn save_intent(&mut self, intent: IntentStore) -> Result<(), FleetError> {
        let mut batch = Batch::new();
        batch.put(Table::Meta, INTENT, &intent.snapshot());
        self.store.write(batch)?;
        self.intent = intent;
        Ok(())
    }

    /// Creates or replaces intent objects (see [`IntentStore::apply`]) and Kubernetes
    /// policies. Objects in scopes without drafting and every Kubernetes policy are
    /// committed together as one generation.
    pub fn apply(
        &mut self,
        objects: Vec<Object>,
        policies: Vec<K8sPolicy>,
        dry_run: bool,
    ) -> Result<Applying, FleetError> {
        let mut intent = self.intent.clone();
        let before = intent.generation();
        let applied = if objects.is_empty() {
            Vec::new()
        } else {
            intent.apply(objects)?
        };
        let mut kubernetes = self.kubernetes.clone();
        let mut changes = Vec::new();
        let mut seen = BTreeSet::new();
        for policy in policies {
            let key = key_of(&policy);
            if !seen.insert(key.clone()) {
                return Err(FleetError::Invalid(format!(
                    "{} is given twice",
                    policy.display_name()
                )));
            }
            let change = match kubernetes.get(&key) {
                None => "created",
                Some(old) if *old == policy => "unchanged",
                Some(_) => "updated",
            };
            changes.push(KubernetesChange {
                kind: policy.kind(),
                namespace: match &policy {
                    K8sPolicy::NetworkPolicy(p) => p.namespace().to_string(),
                    _ => String::new(),
                },
                name: policy.metadata().name.clone(),
                change,
            });
            kubernetes.insert(key, policy);
        }
        let intent_changed = intent.generation() != before;
        let kubernetes_changed = kubernetes != self.kubernetes;
        if dry_run {
            // Compile too, so a dry run finds what a real one would.
            if intent_changed || kubernetes_changed {
                let ir = lower_all(&mut Lowerer::new(), &intent, &kubernetes, &self.index)?;
                Compiler::new(CompileOptions {
                    foreign: self.config.foreign,
                })
                .compile(Arc::clone(&self.index), Arc::new(ir), 0)
                .map_err(|e| FleetError::Compile(e.to_string()))?;
            }
            return Ok(Applying {
                objects: applied,
                kubernetes: changes,
                commit: None,
                effects: Effects::default(),
            });
        }
        if !intent_changed && !kubernetes_changed {
            if applied.iter().any(|a| a.drafted) {
                self.save_intent(intent)?;
            }
            return Ok(Applying {
                objects: applied,
                kubernetes: changes,
                commit: None,
                effects: Effects::default(),
            });
        }
        let mut scopes: BTreeSet<String> = applied
            .iter()
            .filter(|a| !a.drafted)
            .map(|a| scope_text(&a.key.scope))
            .collect();
        if kubernetes_changed {
            scopes.insert("kubernetes".into());
        }
        let changed = applied
            .iter()
            .filter(|a| !a.drafted && a.change != palisade_intent::AppliedChange::Unchanged)
            .count()
            + changes.iter().filter(|c| c.change != "unchanged").count();
        let summary = format!("apply: {changed} objects created or updated");
        let inventory = self.inventory.clone();
        let scope = scopes.into_iter().collect::<Vec<_>>().join(",");
        let (commit, effects) =
            self.commit_state(intent, inventory, kubernetes, scope, summary, Batch::new())?;
        Ok(Applying {
            objects: applied,
            kubernetes: changes,
            commit: Some(commit),
            effects,
        })
    }

    /// Deletes a Kubernetes policy (committed at once).
    pub fn delete_kubernetes(
        &mut self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(CommitRecord, Effects), FleetError> {
        let key = kubernetes_key(kind, namespace, name);
        let mut kubernetes = self.kubernetes.clone();
        if kubernetes.remove(&key).is_none() {
            return Err(FleetError::NotFound(match namespace {
                "" => format!("{kind} `{name}` does not exist"),
                ns => format!("{kind} `{ns}/{name}` does not exist"),
            }));
        }
        let intent = self.intent.clone();
        let inventory = self.inventory.clone();
        self.commit_state(
            intent,
            inventory,
            kubernetes,
            "kubernetes".into(),
            format!("deleted {key}"),
            Batch::new(),
        )
    }

    /// Deletes an intent object (a draft in a drafting scope).
    pub fn delete_object(
        &mut self,
        key: &ObjectKey,
    ) -> Result<(Option<CommitRecord>, Effects), FleetError> {
        let mut intent = self.intent.clone();
        match intent.delete(key)? {
            Outcome::Drafted => {
                self.save_intent(intent)?;
                Ok((None, Effects::default()))
            }
            Outcome::Committed { .. } => {
                let inventory = self.inventory.clone();
                let (c, e) = self.commit_state(
                    intent,
                    inventory,
                    self.kubernetes.clone(),
                    scope_text(&key.scope),
                    format!("deleted {key}"),
                    Batch::new(),
                )?;
                Ok((Some(c), e))
            }
        }
    }

    /// Turns drafting on or off for a scope.
    pub fn set_drafting(&mut self, scope: Scope, enabled: bool) -> Result<(), FleetError> {
        let mut intent = self.intent.clone();
        intent.set_drafting(scope, enabled);
        self.save_intent(intent)
    }

    /// What committing `scope` would change, and the revision to commit it at.
    pub fn diff(&self, scope: &Scope) -> (u64, Vec<DiffEntry>) {
        (self.intent.revision(scope), self.intent.diff(scope))
    }

    /// Commits a scope's drafts.
    pub fn commit(
        &mut self,
        scope: &Scope,
        expected_revision: Option<u64>,
    ) -> Result<(CommitRecord, Effects), FleetError> {
        let mut intent = self.intent.clone();
        let outcome = intent.commit(scope, expected_revision)?;
        let summary = format!("commit of {} drafts", outcome.diff.len());
        let inventory = self.inventory.clone();
        self.commit_state(
            intent,
            inventory,
            self.kubernetes.clone(),
            scope_text(scope),
            summary,
            Batch::new(),
        )
    }

    /// The programs every device would run if `scope`'s drafts were committed; nothing
    /// changes. Refused when the scope has no drafts or they do not compile.
    pub fn draft_programs(
        &self,
        scope: &Scope,
    ) -> Result<BTreeMap<String, Arc<DeviceProgram>>, FleetError> {
        let mut intent = self.intent.clone();
        intent.commit(scope, None)?;
        let ir = lower_all(&mut Lowerer::new(), &intent, &self.kubernetes, &self.index)?;
        let compiled = Compiler::new(CompileOptions {
            foreign: self.config.foreign,
        })
        .compile(Arc::clone(&self.index), Arc::new(ir), self.generation + 1)
        .map_err(|e| FleetError::Compile(e.to_string()))?;
        Ok(compiled.programs)
    }

    /// Discards a scope's drafts.
    pub fn revert(&mut self, scope: &Scope) -> Result<Vec<DiffEntry>, FleetError> {
        let mut intent = self.intent.clone();
        let diff = intent.revert(scope);
        self.save_intent(intent)?;
        Ok(diff)
    }

    fn change_inventory(
        &mut self,
        summary: String,
        edit: impl FnOnce(&mut Inventory) -> Result<(), FleetError>,
    ) -> Result<(CommitRecord, Effects), FleetError> {
        let mut inventory = self.inventory.clone();
        edit(&mut inventory)?;
        let intent = self.intent.clone();
        self.commit_state(
            intent,
            inventory,
            self.kubernetes.clone(),
            "inventory".into(),
            summary,
            Batch::new(),
        )
    }

    /// Creates or replaces a device.
    pub fn put_device(&mut self, device: Device) -> Result<(CommitRecord, Effects), FleetError> {
        let summary = format!("device {} put", device.name);
        self.upsert(summary, vec![device], vec![], vec![])
    }

    /// Creates or replaces devices, projects and workloads in one commit (a whole inventory
    /// file at once); nothing else is removed.
    pub fn apply_inventory(
        &mut self,
        devices: Vec<Device>,
        projects: Vec<Project>,
        workloads: Vec<Workload>,
    ) -> Result<(CommitRecord, Effects), FleetError> {
        let summary = format!(
            "inventory applied: {} devices, {} projects, {} workloads",
            devices.len(),
            projects.len(),
            workloads.len()
        );
        self.upsert(summary, devices, projects, workloads)
    }

    /// Creates or replaces devices (by name), projects (by name) and workloads (by project
    /// and name) in one commit.
    fn upsert(
        &mut self,
        summary: String,
        devices: Vec<Device>,
        projects: Vec<Project>,
        workloads: Vec<Workload>,
    ) -> Result<(CommitRecord, Effects), FleetError> {
        fn put<T>(list: &mut Vec<T>, item: T, same: impl Fn(&T, &T) -> bool) {
            match list.iter_mut().find(|x| same(x, &item)) {
                Some(x) => *x = item,
                None => list.push(item),
            }
        }
        self.change_inventory(summary, |inv| {
            for d in devices {
                put(&mut inv.devices, d, |a, b| a.name == b.name);
            }
            for p in projects {
                put(&mut inv.projects, p, |a, b| a.name == b.name);
            }
            for w in workloads {
                put(&mut inv.workloads, w, |a, b| {
                    a.project == b.project && a.name == b.name
                });
            }
            Ok(())
        })
    }

    /// Deletes a device that no interface is placed on.
    pub fn delete_device(&mut self, name: &str) -> Result<(CommitRecord, Effects), FleetError> {
        self.change_inventory(format!("device {name} deleted"), |inv| {
            let before = inv.devices.len();
            inv.devices.retain(|d| d.name != name);
            if inv.devices.len() == before {
                return Err(FleetError::NotFound(format!(
                    "device `{name}` does not exist"
                )));
            }
            Ok(())
        })
    }

    /// Creates or replaces a project.
    pub fn put_project(&mut self, project: Project) -> Result<(CommitRecord, Effects), FleetError> {
        let summary = format!("project {} put", project.name);
        self.upsert(summary, vec![], vec![project], vec![])
    }

    /// Deletes a project that has no workloads.
    pub fn delete_project(&mut self, name: &str) -> Result<(CommitRecord, Effects), FleetError> {
        self.change_inventory(format!("project {name} deleted"), |inv| {
            let before = inv.projects.len();
            inv.projects.retain(|p| p.name != name);
            if inv.projects.len() == before {
                return Err(FleetError::NotFound(format!(
                    "project `{name}` does not exist"
                )));
            }
            Ok(())
        })
    }

    /// Creates or replaces a workload (with its interfaces, tags and placement).
    pub fn put_workload(
        &mut self,
        workload: Workload,
    ) -> Result<(CommitRecord, Effects), FleetError> {
        let summary = format!("workload {}/{} put", workload.project, workload.name);
        self.upsert(summary, vec![], vec![], vec![workload])
    }

    /// Deletes a workload.
    pub fn delete_workload(
        &mut self,
        project: &str,
        name: &str,
    ) -> Result<(CommitRecord, Effects), FleetError> {
        self.change_inventory(format!("workload {project}/{name} deleted"), |inv| {
            let before = inv.workloads.len();
            inv.workloads
                .retain(|w| !(w.name == name && w.project == project));
            if inv.workloads.len() == before {
                return Err(FleetError::NotFound(format!(
                    "workload `{project}/{name}` does not exist"
                )));
            }
            Ok(())
        })
    }

    /// A one-time enrollment token for `device`, valid for `validity`. A device the
    /// inventory does not know yet is added to it (with no interfaces).
    pub fn create_token(
        &mut self,
        device: &str,
        validity: Duration,
    ) -> Result<(String, i64, Effects), FleetError> {
        check_name(device)?;
        if self.devices.get(device).is_some_and(|d| d.revoked) {
            return Err(FleetError::Denied(format!(
                "device `{device}` was revoked; delete it and add it again under a new name"
            )));
        }
        let token = new_secret("plt_");
        let expires_ms = now_ms() + validity.as_millis() as i64;
        let record = TokenRecord {
            device: device.to_string(),
            expires_ms,
            used_at_ms: None,
        };
        let mut extra = Batch::new();
        extra.put(Table::Tokens, token_hash(&token), &record);
        let effects = if self.inventory.devices.iter().any(|d| d.name == device) {
            self.store.write(extra)?;
            Effects::default()
        } else {
            let mut inventory = self.inventory.clone();
            inventory.devices.push(Device {
                name: device.to_string(),
                address: None,
                labels: Default::default(),
            });
            let intent = self.intent.clone();
            self.commit_state(
                intent,
                inventory,
                self.kubernetes.clone(),
                "inventory".into(),
                format!("device {device} added for enrollment"),
                extra,
            )?
            .1
        };
        self.tokens.insert(token_hash(&token), record);
        Ok((token, expires_ms / 1000, effects))
    }

    /// Enrolls a device: checks and spends its one-time token, signs its certificate.
    pub fn enroll(
        &mut self,
        device: &str,
        token: &str,
        csr_pem: &str,
        authority: &dyn Authority,
    ) -> Result<(SignedCertificate, Effects), FleetError> {
        let key = token_hash(token);
        let denied = |why: String| Err(FleetError::Denied(why));
        let Some(record) = self.tokens.get(&key) else {
            return denied("enrollment refused: unknown token".into());
        };
        if record.device != device {
            return denied(format!(
                "enrollment refused: the token is not for device `{device}`"
            ));
        }
        if let Some(at) = record.used_at_ms {
            return denied(format!(
                "enrollment refused: the token was already used ({} s ago); create a new one",
                (now_ms() - at) / 1000
            ));
        }
        if record.expires_ms < now_ms() {
            return denied("enrollment refused: the token expired; create a new one".into());
        }
        if self.devices.get(device).is_some_and(|d| d.revoked) {
            return denied(format!("enrollment refused: device `{device}` is revoked"));
        }
        let cert = authority
            .sign_device(csr_pem, device, self.config.certificate_validity)
            .map_err(|e| FleetError::Invalid(format!("enrollment refused: {e}")))?;
        let mut used = record.clone();
        used.used_at_ms = Some(now_ms());
        let mut dev = self
            .devices
            .get(device)
            .cloned()
            .unwrap_or_else(|| DeviceRecord {
                name: device.to_string(),
                ..DeviceRecord::default()
            });
        dev.certificates.push(CertificateRecord {
            serial: cert.serial.clone(),
            not_after_unix: cert.not_after_unix,
        });
        let mut batch = Batch::new();
        batch.put(Table::Tokens, key.clone(), &used);
        batch.put(Table::Devices, device.to_string(), &dev);
        self.store.write(batch)?;
        self.tokens.insert(key, used);
        self.devices.insert(device.to_string(), dev);
        Ok((
            cert,
            Effects {
                devices: vec![device.to_string()],
                ..Effects::default()
            },
        ))
    }

    /// Renews an enrolled device's certificate.
    pub fn renew(
        &mut self,
        device: &str,
        csr_pem: &str,
        authority: &dyn Authority,
    ) -> Result<SignedCertificate, FleetError> {
        let Some(mut dev) = self.devices.get(device).cloned() else {
            return Err(FleetError::Denied(format!(
                "renewal refused: device `{device}` is not enrolled"
            )));
        };
        if dev.revoked {
            return Err(FleetError::Denied(format!(
                "renewal refused: device `{device}` is revoked"
            )));
        }
        let cert = authority
            .sign_device(csr_pem, device, self.config.certificate_validity)
            .map_err(|e| FleetError::Invalid(format!("renewal refused: {e}")))?;
        dev.certificates.push(CertificateRecord {
            serial: cert.serial.clone(),
            not_after_unix: cert.not_after_unix,
        });
        // Keep the list short: expired certificates need no record.
        let now = now_ms() / 1000;
        dev.certificates.retain(|c| c.not_after_unix > now);
        let mut batch = Batch::new();
        batch.put(Table::Devices, device.to_string(), &dev);
        self.store.write(batch)?;
        self.devices.insert(device.to_string(), dev);
        Ok(cert)
    }

    /// Revokes a device: every certificate it holds goes on the revocation list and it can
    /// neither connect nor enroll again under that name.
    pub fn revoke(&mut self, device: &str) -> Result<(Vec<String>, Effects), FleetError> {
        let Some(mut dev) = self.devices.get(device).cloned() else {
            return Err(FleetError::NotFound(format!(
                "device `{device}` has never enrolled"
            )));
        };
        dev.revoked = true;
        let at_ms = now_ms();
        let mut batch = Batch::new();
        let mut serials = Vec::new();
        for c in &dev.certificates {
            serials.push(c.serial.clone());
            batch.put(
                Table::Revoked,
                c.serial.clone(),
                &RevokedRecord {
                    device: device.to_string(),
                    at_ms,
                },
            );
        }
        batch.put(Table::Devices, device.to_string(), &dev);
        self.store.write(batch)?;
        for s in &serials {
            self.revoked.insert(
                s.clone(),
                RevokedRecord {
                    device: device.to_string(),
                    at_ms,
                },
            );
        }
        self.devices.insert(device.to_string(), dev);
        Ok((
            serials,
            Effects {
                devices: vec![device.to_string()],
                revocations: true,
                disconnect: vec![device.to_string()],
                ..Effects::default()
            },
        ))
    }

    /// Revoked serials with when they were revoked (ms since the epoch).
    pub fn revoked(&self) -> impl Iterator<Item = (&str, i64)> {
        self.revoked.iter().map(|(s, r)| (s.as_str(), r.at_ms))
    }

    /// Names of revoked devices.
    pub fn revoked_devices(&self) -> impl Iterator<Item = &str> {
        self.devices
            .values()
            .filter(|d| d.revoked)
            .map(|d| d.name.as_str())
    }

    /// Whether a certificate serial is revoked.
    pub fn is_revoked(&self, serial: &str) -> bool {
        self.revoked.contains_key(serial)
    }

    /// Records a device's acknowledgement.
    pub fn ack(
        &mut self,
        device: &str,
        generation: u64,
        hash: ContentHash,
        result: Result<PlacementSummary, String>,
        profile: Option<String>,
    ) -> Result<Effects, FleetError> {
        let (mut results, effects) = self.ack_many(vec![Ack {
            device: device.to_string(),
            generation,
            hash,
            result,
            profile,
        }])?;
        results.pop().expect("one result per acknowledgement")?;
        Ok(effects)
    }

    /// Records many acknowledgements in one store transaction (acknowledgements arrive in
    /// bursts after a commit; one durable write each would serialize them on the disk).
    /// Each gets its own result; the store failing fails them all and changes nothing.
    pub fn ack_many(
        &mut self,
        acks: Vec<Ack>,
    ) -> Result<(Vec<Result<(), FleetError>>, Effects), FleetError> {
        let at_ms = now_ms();
        let mut results = Vec::with_capacity(acks.len());
        let mut updated: BTreeMap<String, DeviceRecord> = BTreeMap::new();
        let mut since: BTreeMap<String, u64> = BTreeMap::new();
        for ack in acks {
            let Some(mut dev) = updated
                .get(&ack.device)
                .or_else(|| self.devices.get(&ack.device))
                .cloned()
            else {
                results.push(Err(FleetError::Denied(format!(
                    "device `{}` is not enrolled",
                    ack.device
                ))));
                continue;
            };
            since
                .entry(ack.device.clone())
                .or_insert_with(|| dev.acked.as_ref().map_or(0, |a| a.generation));
            match ack.result {
                Ok(placement) => {
                    dev.acked = Some(AckRecord {
                        generation: ack.generation,
                        hash: ack.hash.to_string(),
                        at_ms,
                        placement,
                    });
                }
                Err(error) => {
                    dev.failed = Some(FailureRecord {
                        generation: ack.generation,
                        hash: ack.hash.to_string(),
                        error,
                        at_ms,
                    });
                }
            }
            if let Some(p) = ack.profile {
                dev.profile = p;
            }
            updated.insert(ack.device, dev);
            results.push(Ok(()));
        }
        if updated.is_empty() {
            return Ok((results, Effects::default()));
        }
        let mut batch = Batch::new();
        for (name, dev) in &updated {
            batch.put(Table::Devices, name.clone(), dev);
        }
        self.store.write(batch)?;
        // Only commits a device had not acknowledged yet can change state; a commit gives
        // its targets its own generation, so older commits need no look.
        let oldest = since.values().copied().min().unwrap_or(0);
        let mut commits = BTreeSet::new();
        for c in self
            .commits
            .range(oldest.saturating_add(1)..)
            .map(|(_, c)| c)
        {
            if c.targets
                .iter()
                .any(|t| since.get(&t.device).is_some_and(|&g| t.generation > g))
            {
                commits.insert(c.generation);
            }
        }
        let devices = updated.keys().cloned().collect();
        self.devices.extend(updated);
        Ok((
            results,
            Effects {
                commits: commits.into_iter().collect(),
                devices,
                ..Effects::default()
            },
        ))
    }

    /// Records the hardware profile a device reports.
    pub fn set_profile(&mut self, device: &str, profile: &str) -> Result<(), FleetError> {
        let Some(mut dev) = self.devices.get(device).cloned() else {
            return Err(FleetError::Denied(format!(
                "device `{device}` is not enrolled"
            )));
        };
        if dev.profile == profile {
            return Ok(());
        }
        dev.profile = profile.to_string();
        let mut batch = Batch::new();
        batch.put(Table::Devices, device.to_string(), &dev);
        self.store.write(batch)?;
        self.devices.insert(device.to_string(), dev);
        Ok(())
    }

    /// A new API token for a user; returns the token (shown once).
    pub fn create_user_token(&mut self, name: &str, role: Role) -> Result<String, FleetError> {
        check_name(name)?;
        let token = new_secret("pla_");
        let record = UserRecord {
            name: name.to_string(),
            role,
        };
        let mut batch = Batch::new();
        batch.put(Table::Users, token_hash(&token), &record);
        self.store.write(batch)?;
        self.users.insert(token_hash(&token), record);
        Ok(token)
    }

    /// The user behind an API token.
    pub fn user_for_token(&self, token: &str) -> Option<&UserRecord> {
        self.users.get(&token_hash(token))
    }

    /// Whether any API user exists.
    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// Commits, most recent first.
    pub fn commits(&self, limit: usize) -> Vec<&CommitRecord> {
        self.commits.values().rev().take(limit).collect()
    }

    /// One commit.
    pub fn commit_record(&self, generation: u64) -> Option<&CommitRecord> {
        self.commits.get(&generation)
    }

    /// The status of a commit at `now_ms`.
    pub fn commit_status(
        &self,
        commit: &CommitRecord,
        now_ms: i64,
        connected: &dyn Fn(&str) -> bool,
    ) -> CommitStatus {
        let overdue = now_ms - commit.at_ms > self.config.ack_timeout.as_millis() as i64;
        let targets: Vec<(TargetRecord, State, String)> = commit
            .targets
            .iter()
            .map(|t| {
                let (state, reason) = self.target_state(t, overdue, connected(&t.device));
                (t.clone(), state, reason)
            })
            .collect();
        let state = if targets.iter().any(|(_, s, _)| *s == State::Failed) {
            State::Failed
        } else if targets.iter().all(|(_, s, _)| *s == State::Enforced) {
            State::Enforced
        } else {
            State::Pending
        };
        CommitStatus {
            commit: commit.clone(),
            state,
            targets,
        }
    }

    fn target_state(&self, t: &TargetRecord, overdue: bool, connected: bool) -> (State, String) {
        let Some(dev) = self.devices.get(&t.device) else {
            if !self.inventory.devices.iter().any(|d| d.name == t.device) {
                return (State::Failed, "the device left the inventory".into());
            }
            return if overdue {
                (
                    State::Failed,
                    format!(
                        "no acknowledgement within {} s: the device never enrolled",
                        self.config.ack_timeout.as_secs()
                    ),
                )
            } else {
                (State::Pending, "waiting for the device to enroll".into())
            };
        };
        if let Some(a) = &dev.acked
            && a.generation >= t.generation
        {
            return (
                State::Enforced,
                format!("applied generation {}", a.generation),
            );
        }
        if dev.revoked {
            return (State::Failed, "the device was revoked".into());
        }
        if let Some(f) = &dev.failed
            && f.generation >= t.generation
        {
            return (
                State::Failed,
                format!(
                    "the device refused generation {}: {}",
                    f.generation, f.error
                ),
            );
        }
        if overdue {
            let why = if connected {
                "connected but silent"
            } else {
                "offline"
            };
            return (
                State::Failed,
                format!(
                    "no acknowledgement within {} s (the device is {why})",
                    self.config.ack_timeout.as_secs()
                ),
            );
        }
        let why = if connected {
            "applying"
        } else {
            "offline; waiting for it to reconnect"
        };
        (State::Pending, format!("waiting for the device ({why})"))
    }

    /// Generations of commits that are still pending (for the timeout ticker).
    pub fn pending_commits(&self, now_ms: i64) -> Vec<u64> {
        self.commits
            .values()
            .rev()
            .take(200)
            .filter(|c| self.commit_status(c, now_ms, &|_| false).state == State::Pending)
            .map(|c| c.generation)
            .collect()
    }
}

/// Device and user names: 1-63 of `[a-z0-9._-]`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), FleetError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(FleetError::Invalid(format!(
            "name `{name}`: use 1-63 lowercase letters, digits, `.`, `_` or `-`, starting with a letter or digit"
        )))
    }
}
