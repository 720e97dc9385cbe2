//! The device program and its validation.
//!
//! A [`DeviceProgram`] can only be obtained through [`DeviceProgram::new`] (or deserialization,
//! which goes through it), so holding one means every index is in range, every list is in
//! canonical order and the content hash is computed.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::net::{PortRange, PrefixSet, Protocol};

/// The version of the program encoding this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The evaluation tiers, in evaluation order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TierKind {
    /// Security administrators' rules (Kubernetes AdminNetworkPolicy); falls through by default.
    Admin,
    /// Application owners' rules (Kubernetes NetworkPolicy); denies by default once a policy
    /// applies to the endpoint, falls through otherwise.
    Application,
    /// Global defaults (Kubernetes BaselineAdminNetworkPolicy); allows by default.
    Baseline,
}

impl TierKind {
    /// All tiers in evaluation order.
    pub const ALL: [TierKind; 3] = [TierKind::Admin, TierKind::Application, TierKind::Baseline];

    /// Lower-case name.
    pub fn name(&self) -> &'static str {
        match self {
            TierKind::Admin => "admin",
            TierKind::Application => "application",
            TierKind::Baseline => "baseline",
        }
    }
}

impl fmt::Display for TierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which way a connection goes, seen from the local endpoint.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// The remote side initiates the connection to the local endpoint.
    Ingress,
    /// The local endpoint initiates the connection to the remote side.
    Egress,
}

impl Direction {
    /// Lower-case name.
    pub fn name(&self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a rule or a tier default does with a connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Allow the connection; evaluation ends.
    Allow,
    /// Deny the connection; evaluation ends.
    Deny,
    /// Leave the decision to the next tier.
    NextTier,
}

impl Action {
    /// Lower-case name.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::NextTier => "next-tier",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A workload interface the device enforces for.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Stable name (`project/workload/interface`, or `namespace/pod` for Kubernetes).
    pub name: String,
    /// The interface's addresses, sorted and unique.
    pub addresses: Vec<IpAddr>,
}

/// A named set of remote addresses that rules refer to by index.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressSet {
    /// Unique name within the program, for people reading it.
    pub name: String,
    /// The addresses.
    pub prefixes: PrefixSet,
}

/// One rule of a tier.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Stable id, unique in the program, that maps back to the intent that produced the rule
    /// (e.g. `application/shop/three-tier/0010` or `np/prod/allow-db/ingress/0`).
    pub id: String,
    /// Whether the rule judges connections into or out of its endpoints.
    pub direction: Direction,
    /// Indices of the local endpoints the rule applies to: sorted, unique, not empty.
    pub endpoints: Vec<u32>,
    /// Index of the address set the remote side must be in; `None` for any address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<u32>,
    /// Protocol to match; `None` for any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Initiator's ports (canonical); empty for any. Only with TCP, UDP or SCTP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub src_ports: Vec<PortRange>,
    /// Responder's ports (canonical); empty for any. Only with TCP, UDP or SCTP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dst_ports: Vec<PortRange>,
    /// What a match does.
    pub action: Action,
    /// Log every connection the rule decides.
    #[serde(default, skip_serializing_if = "is_false")]
    pub log: bool,
    /// Only on deny rules: log "would deny" and forward the connection anyway.
    #[serde(default, skip_serializing_if = "is_false")]
    pub audit: bool,
    /// Copy the connection's packets to this named mirror destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
    /// Only on allow rules: hand the connection to this named L7 firewall service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What a tier does for one endpoint when none of its rules matched.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierDefaults {
    /// Default for connections into the endpoint.
    pub ingress: Action,
    /// Default for connections out of the endpoint.
    pub egress: Action,
}

impl TierDefaults {
    /// The same default both ways.
    pub fn both(action: Action) -> Self {
        Self {
            ingress: action,
            egress: action,
        }
    }

    /// The default for one direction.
    pub fn get(&self, direction: Direction) -> Action {
        match direction {
            Direction::Ingress => self.ingress,
            Direction::Egress => self.egress,
        }
    }
}

/// One tier: ordered rules (first match decides) and a default per endpoint.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Which tier.
    pub kind: TierKind,
    /// Rules in evaluation order.
    pub rules: Vec<Rule>,
    /// One entry per endpoint of the program, in endpoint order.
    pub defaults: Vec<TierDefaults>,
}

/// The plain, unvalidated shape of a device program: what the compiler fills in and what the
/// encoding carries. Turn it into a [`DeviceProgram`] with [`DeviceProgram::new`].
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramParts {
    /// Encoding version, [`FORMAT_VERSION`].
    pub format: u32,
    /// The device this program is for.
    pub device: String,
    /// Monotonic generation number assigned by the fleet manager.
    pub generation: u64,
    /// Local endpoints, sorted by name.
    pub endpoints: Vec<Endpoint>,
    /// Address sets referenced by rules.
    pub address_sets: Vec<AddressSet>,
    /// Tiers in evaluation order (each kind at most once).
    pub tiers: Vec<Tier>,
    /// The verdict for packets that neither come from nor go to a local endpoint.
    pub foreign: Action,
}

/// Why a program was refused. Each variant names the part of the program at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProgramError {
    /// The program was written by an encoder this version does not know.
    #[error("program format {found} is not supported (this build reads format {FORMAT_VERSION})")]
    Format {
        /// The format in the program.
        found: u32,
    },
    /// A problem with the program as a whole.
    #[error("program: {0}")]
    Program(String),
    /// A problem with one endpoint.
    #[error("endpoint `{endpoint}`: {problem}")]
    Endpoint {
        /// The endpoint's name.
        endpoint: String,
        /// What is wrong.
        problem: String,
    },
    /// A problem with one address set.
    #[error("address set `{set}`: {problem}")]
    AddressSet {
        /// The set's name.
        set: String,
        /// What is wrong.
        problem: String,
    },
    /// A problem with one tier.
    #[error("tier {tier}: {problem}")]
    Tier {
        /// The tier.
        tier: TierKind,
        /// What is wrong.
        problem: String,
    },
    /// A problem with one rule.
    #[error("tier {tier}, rule `{rule}`: {problem}")]
    Rule {
        /// The tier holding the rule.
        tier: TierKind,
        /// The rule's id.
        rule: String,
        /// What is wrong.
        problem: String,
    },
    /// The encoded program's recorded hash does not match its content.
    #[error(
        "content hash mismatch: the program says {recorded} but its content hashes to {computed}"
    )]
    HashMismatch {
        /// The hash written in the encoding.
        recorded: String,
        /// The hash of the content.
        computed: String,
    },
}

/// SHA-256 of a program's canonical encoding (generation excluded), shown as `sha256:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for ContentHash {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| {
            format!("`{s}` is not a content hash: expected `sha256:<64 hex digits>`")
        })?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "`{s}` is not a content hash: expected 64 hex digits after `sha256:`"
            ));
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(ContentHash(out))
    }
}

impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A validated device program with its content hash.
///
/// Its serialized form is [`ProgramParts`] plus a `hash` field; deserializing checks the
/// content and, when the `hash` field is present, that it matches.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DeviceProgram {
    parts: ProgramParts,
    hash: ContentHash,
}

impl DeviceProgram {
    /// Validates `parts` and computes the content hash.
    pub fn new(parts: ProgramParts) -> Result<Self, ProgramError> {
        validate(&parts)?;
        let hash = content_hash(&parts);
        Ok(Self { parts, hash })
    }

    /// The canonical encoding of the content (generation excluded): the bytes the hash covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        crate::canonical::encode(&self.parts)
    }

    /// The content hash.
    pub fn hash(&self) -> ContentHash {
        self.hash
    }

    /// The program's parts.
    pub fn parts(&self) -> &ProgramParts {
        &self.parts
    }

    /// Gives the parts back, e.g. to edit and revalidate.
    pub fn into_parts(self) -> ProgramParts {
        self.parts
    }

    /// The device the program is for.
    pub fn device(&self) -> &str {
        &self.parts.device
    }

    /// Generation number.
    pub fn generation(&self) -> u64 {
        self.parts.generation
    }

    /// The same program at another generation (the hash does not change).
    pub fn with_generation(mut self, generation: u64) -> Self {
        self.parts.generation = generation;
        self
    }

    /// Local endpoints, sorted by name.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.parts.endpoints
    }

    /// Address sets.
    pub fn address_sets(&self) -> &[AddressSet] {
        &self.parts.address_sets
    }

    /// Tiers in evaluation order.
    pub fn tiers(&self) -> &[Tier] {
        &self.parts.tiers
    }

    /// Verdict for traffic of no local endpoint.
    pub fn foreign(&self) -> Action {
        self.parts.foreign
    }

    /// The index of the endpoint with this name.
    pub fn endpoint_index(&self, name: &str) -> Option<u32> {
        self.parts
            .endpoints
            .binary_search_by(|e| e.name.as_str().cmp(name))
            .ok()
            .map(|i| i as u32)
    }

    /// Number of rules over all tiers.
    pub fn rule_count(&self) -> usize {
        self.parts.tiers.iter().map(|t| t.rules.len()).sum()
    }

    /// Looks a rule up by id.
    pub fn rule(&self, id: &str) -> Option<(TierKind, &Rule)> {
        self.parts
            .tiers
            .iter()
            .flat_map(|t| t.rules.iter().map(move |r| (t.kind, r)))
            .find(|(_, r)| r.id == id)
    }
}

fn content_hash(parts: &ProgramParts) -> ContentHash {
    let digest = Sha256::digest(crate::canonical::encode(parts));
    let mut out = [0u8; 32];
    out.copy_from_slice(&digest);
    ContentHash(out)
}

fn validate(p: &ProgramParts) -> Result<(), ProgramError> {
    if p.format != FORMAT_VERSION {
        return Err(ProgramError::Format { found: p.format });
    }
    if p.device.is_empty() {
        return Err(ProgramError::Program("the device name is empty".into()));
    }
    if p.foreign == Action::NextTier {
        return Err(ProgramError::Program(
            "`foreign` must be allow or deny: there is no tier after the program".into(),
        ));
    }
    let mut owner: HashMap<IpAddr, &str> = HashMap::new();
    for (i, e) in p.endpoints.iter().enumerate() {
        let bad = |problem: String| ProgramError::Endpoint {
            endpoint: e.name.clone(),
            problem,
        };
        if e.name.is_empty() {
            return Err(bad("the name is empty".into()));
        }
        if i > 0 && p.endpoints[i - 1].name >= e.name {
            return Err(bad(format!(
                "endpoints must be sorted by name with no duplicates (follows `{}`)",
                p.endpoints[i - 1].name
            )));
        }
        if !e.addresses.windows(2).all(|w| w[0] < w[1]) {
            return Err(bad("addresses must be sorted with no duplicates".into()));
        }
        for a in &e.addresses {
            if let Some(other) = owner.insert(*a, &e.name) {
                return Err(bad(format!(
                    "address {a} also belongs to endpoint `{other}`"
                )));
            }
        }
    }
    let mut set_names = BTreeSet::new();
    for s in &p.address_sets {
        if !set_names.insert(s.name.as_str()) {
            return Err(ProgramError::AddressSet {
                set: s.name.clone(),
                problem: "the name is used twice".into(),
            });
        }
    }
    let n_endpoints = p.endpoints.len();
    let n_sets = p.address_sets.len();
    let mut rule_ids = BTreeSet::new();
    for (ti, tier) in p.tiers.iter().enumerate() {
        if ti > 0 && p.tiers[ti - 1].kind >= tier.kind {
            return Err(ProgramError::Tier {
                tier: tier.kind,
                problem: "tiers must appear once each, in the order admin, application, baseline"
                    .into(),
            });
        }
        if tier.defaults.len() != n_endpoints {
            return Err(ProgramError::Tier {
                tier: tier.kind,
                problem: format!(
                    "has {} defaults but the program has {n_endpoints} endpoints",
                    tier.defaults.len()
                ),
            });
        }
        for rule in &tier.rules {
            validate_rule(tier.kind, rule, n_endpoints, n_sets)?;
            if !rule_ids.insert(rule.id.as_str()) {
                return Err(ProgramError::Rule {
                    tier: tier.kind,
                    rule: rule.id.clone(),
                    problem: "the id is used by another rule".into(),
                });
            }
        }
    }
    Ok(())
}

fn validate_rule(
    tier: TierKind,
    rule: &Rule,
    n_endpoints: usize,
    n_sets: usize,
) -> Result<(), ProgramError> {
    let bad = |problem: &str| ProgramError::Rule {
        tier,
        rule: rule.id.clone(),
        problem: problem.to_string(),
    };
    if rule.id.is_empty() {
        return Err(bad("the id is empty"));
    }
    if rule.endpoints.is_empty() {
        return Err(bad("applies to no endpoint"));
    }
    if !rule.endpoints.windows(2).all(|w| w[0] < w[1]) {
        return Err(bad("endpoint indices must be sorted with no duplicates"));
    }
    if rule.endpoints.iter().any(|&e| e as usize >= n_endpoints) {
        return Err(bad("refers to an endpoint index beyond the endpoint list"));
    }
    if rule.remote.is_some_and(|r| r as usize >= n_sets) {
        return Err(bad(
            "refers to an address set index beyond the address set list",
        ));
    }
    let has_ports = !rule.src_ports.is_empty() || !rule.dst_ports.is_empty();
    if has_ports && !rule.protocol.is_some_and(|p| p.has_ports()) {
        return Err(bad("ports are only allowed with tcp, udp or sctp"));
    }
    for ports in [&rule.src_ports, &rule.dst_ports] {
        if !PortRange::is_canonical(ports) {
            return Err(bad("port ranges must be sorted, disjoint and not adjacent"));
        }
    }
    if rule.audit && rule.action != Action::Deny {
        return Err(bad("`audit` only applies to deny rules"));
    }
    if rule.redirect.is_some() && rule.action != Action::Allow {
        return Err(bad("`redirect` only applies to allow rules"));
    }
    Ok(())
}

#[derive(Serialize)]
struct Encoded<'a> {
    #[serde(flatten)]
    parts: &'a ProgramParts,
    hash: ContentHash,
}

impl Serialize for DeviceProgram {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Encoded {
            parts: &self.parts,
            hash: self.hash,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for DeviceProgram {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Mirrors `ProgramParts` plus the optional recorded hash.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Decoded {
            format: u32,
            device: String,
            generation: u64,
            endpoints: Vec<Endpoint>,
            address_sets: Vec<AddressSet>,
            tiers: Vec<Tier>,
            foreign: Action,
            #[serde(default)]
            hash: Option<ContentHash>,
        }
        let raw = Decoded::deserialize(d)?;
        let program = DeviceProgram::new(ProgramParts {
            format: raw.format,
            device: raw.device,
            generation: raw.generation,
            endpoints: raw.endpoints,
            address_sets: raw.address_sets,
            tiers: raw.tiers,
            foreign: raw.foreign,
        })
        .map_err(serde::de::Error::custom)?;
        if let Some(recorded) = raw.hash
            && recorded != program.hash
        {
            return Err(serde::de::Error::custom(ProgramError::HashMismatch {
                recorded: recorded.to_string(),
                computed: program.hash.to_string(),
            }));
        }
        Ok(program)
    }
}
