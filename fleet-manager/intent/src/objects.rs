//! The intent objects of POLICY.md, as users write them.
//!
//! Every object lives in a [`Scope`] (global or one project) and has a name unique among the
//! objects of its kind in that scope. These types carry only what a user wrote; references
//! between objects (tags, groups, policies) are resolved and checked by
//! [`crate::IntentSet`]. The YAML/JSON forms (serde) are the API representation; the
//! plain-English form is in [`crate::lang`].

use std::fmt;
use std::str::FromStr;

use palisade_program::{PortRange, Prefix, Protocol, TierKind};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where an object lives: the global scope or one project.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub enum Scope {
    /// Visible to every project.
    #[default]
    Global,
    /// Visible inside one project.
    Project(String),
}

impl Scope {
    /// The project name, if project-scoped.
    pub fn project(&self) -> Option<&str> {
        match self {
            Scope::Global => None,
            Scope::Project(p) => Some(p),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Project(p) => write!(f, "project {p}"),
        }
    }
}

/// The predefined tag types. `label` is the only repeatable one.
pub const PREDEFINED_TAG_TYPES: [&str; 5] = ["application", "tier", "deployment", "site", "label"];

/// Whether a name is acceptable for an object, tag type, tag value or sequence key:
/// letters, digits, `.`, `_`, `-`, starting with a letter or digit.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A reference to a tag: `[global:]type=value`. Without `global:` it names the tag of the
/// referring object's project if that project defines it, else the global one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct TagRef {
    /// Forces the global tag (`global:tier=web`).
    pub global: bool,
    /// The tag type.
    pub kind: String,
    /// The value.
    pub value: String,
}

impl TagRef {
    /// A reference without `global:`.
    pub fn new(kind: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            global: false,
            kind: kind.into(),
            value: value.into(),
        }
    }
}

impl FromStr for TagRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (global, rest) = match text.strip_prefix("global:") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let Some((kind, value)) = rest.split_once('=') else {
            return Err(format!("`{text}` is not a tag: expected `type=value`"));
        };
        if !is_valid_name(kind) {
            return Err(format!(
                "`{text}`: the tag type `{kind}` must be letters, digits, `.`, `_` or `-`"
            ));
        }
        if !is_valid_name(value) {
            return Err(format!(
                "`{text}`: the tag value `{value}` must be letters, digits, `.`, `_` or `-`"
            ));
        }
        Ok(Self {
            global,
            kind: kind.to_string(),
            value: value.to_string(),
        })
    }
}

impl fmt::Display for TagRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.global {
            f.write_str("global:")?;
        }
        write!(f, "{}={}", self.kind, self.value)
    }
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_via_str!(TagRef);

/// One side of a firewall rule.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum EndpointSpec {
    /// Every address.
    Any,
    /// Endpoints carrying all these tags (ANDed; not empty).
    Tags(Vec<TagRef>),
    /// The addresses of an address group.
    AddressGroup(String),
    /// A subnet.
    Subnet(Prefix),
    /// The subnets and interfaces of a network of the policy's project.
    Network(String),
}

/// Which side may open a connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum RuleDirection {
    /// `>`: endpoint 1 initiates to endpoint 2.
    Forward,
    /// `<`: endpoint 2 initiates to endpoint 1.
    Backward,
    /// `<>`: either initiates.
    Both,
}

impl RuleDirection {
    /// The symbol: `>`, `<` or `<>`.
    pub fn symbol(&self) -> &'static str {
        match self {
            RuleDirection::Forward => ">",
            RuleDirection::Backward => "<",
            RuleDirection::Both => "<>",
        }
    }
}

impl FromStr for RuleDirection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            ">" => Ok(RuleDirection::Forward),
            "<" => Ok(RuleDirection::Backward),
            "<>" => Ok(RuleDirection::Both),
            _ => Err(format!("`{s}` is not a direction: use `>`, `<` or `<>`")),
        }
    }
}

impl fmt::Display for RuleDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

serde_via_str!(RuleDirection);

/// A protocol with optional source and destination ports.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Protocol; `None` for any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Initiator's ports; empty for any. Only with tcp, udp or sctp.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub src_ports: Vec<PortRange>,
    /// Responder's ports; empty for any. Only with tcp, udp or sctp.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dst_ports: Vec<PortRange>,
}

impl Service {
    /// Any protocol, any port.
    pub fn any() -> Self {
        Self::default()
    }
}

/// What a rule matches on the wire: one service or a service group.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum ServiceSpec {
    /// A service written in the rule.
    Inline(Service),
    /// A named service group.
    Group(String),
}

/// A rule's action.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleAction {
    /// Let the connection through (POLICY.md's `pass`).
    Allow,
    /// Refuse the connection.
    Deny,
    /// Leave the decision to the next tier.
    NextTier,
}

impl RuleAction {
    /// The keyword.
    pub fn keyword(&self) -> &'static str {
        match self {
            RuleAction::Allow => "allow",
            RuleAction::Deny => "deny",
            RuleAction::NextTier => "next-tier",
        }
    }
}

/// A firewall rule.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "RawRule", into = "RawRule")]
pub struct FirewallRule {
    /// Orders the rule within its policy (compared as strings).
    pub sequence: String,
    /// What a match does.
    pub action: RuleAction,
    /// First endpoint.
    pub endpoint_1: EndpointSpec,
    /// Which side may initiate.
    pub direction: RuleDirection,
    /// Second endpoint.
    pub endpoint_2: EndpointSpec,
    /// Protocol and ports.
    pub service: ServiceSpec,
    /// Tag types both ends must carry with equal values.
    pub match_tags: Vec<String>,
    /// Log decided connections.
    pub log: bool,
    /// Deny rules only: log "would deny" and forward anyway.
    pub audit: bool,
    /// Mirror destination.
    pub mirror: Option<String>,
    /// Allow rules only: named L7 firewall service to hand connections to.
    pub redirect: Option<String>,
}

/// A firewall policy: rules ordered by sequence key.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallPolicy {
    /// Name, unique among the scope's policies.
    pub name: String,
    /// Scope.
    #[serde(
        default,
        rename = "project",
        with = "scope_field",
        skip_serializing_if = "is_global"
    )]
    pub scope: Scope,
    /// Tier. Application-tier policies apply through application policy sets; admin- and
    /// baseline-tier policies apply to every endpoint, ordered by sequence key then name.
    #[serde(default = "default_tier")]
    pub tier: TierKind,
    /// Orders admin- and baseline-tier policies.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sequence: String,
    /// The rules.
    #[serde(default)]
    pub rules: Vec<FirewallRule>,
}

fn default_tier() -> TierKind {
    TierKind::Application
}

/// A policy's place in an application policy set.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// Orders the policy within the set.
    pub sequence: String,
    /// The policy's name (resolved in the set's project, then globally).
    pub policy: String,
}

/// An application policy set: the ordered application-tier policies of one application.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationPolicySet {
    /// Name, unique among the scope's sets.
    pub name: String,
    /// Scope.
    #[serde(
        default,
        rename = "project",
        with = "scope_field",
        skip_serializing_if = "is_global"
    )]
    pub scope: Scope,
    /// The `application` tag it binds to; `None` for the global set, which applies to every
    /// endpoint after the endpoint's own set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<TagRef>,
    /// Policies in the set.
    #[serde(default)]
    pub policies: Vec<PolicyEntry>,
}

/// A named list of prefixes, optionally also selecting endpoints by a `label` tag.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressGroup {
    /// Name, unique among the scope's address groups.
    pub name: String,
    /// Scope.
    #[serde(
        default,
        rename = "project",
        with = "scope_field",
        skip_serializing_if = "is_global"
    )]
    pub scope: Scope,
    /// The prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<Prefix>,
    /// Endpoints carrying `label=<this>` are members too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// A named list of services.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceGroup {
    /// Name, unique among the scope's service groups.
    pub name: String,
    /// Scope.
    #[serde(
        default,
        rename = "project",
        with = "scope_field",
        skip_serializing_if = "is_global"
    )]
    pub scope: Scope,
    /// The services (not empty).
    pub services: Vec<Service>,
}

/// A tag definition: a tag must be defined before it is attached or referenced.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    /// Scope.
    #[serde(
        default,
        rename = "project",
        with = "scope_field",
        skip_serializing_if = "is_global"
    )]
    pub scope: Scope,
    /// The tag type (predefined or a defined custom type).
    #[serde(rename = "type")]
    pub kind: String,
    /// The value.
    pub value: String,
}

impl Tag {
    /// The tag's name, `type=value`.
    pub fn name(&self) -> String {
        format!("{}={}", self.kind, self.value)
    }
}

/// A custom tag type (always global).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagType {
    /// The type's name.
    pub name: String,
}

/// Any intent object. The YAML/JSON form is tagged by `kind`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Object {
    /// A custom tag type.
    TagType(TagType),
    /// A tag definition.
    Tag(Tag),
    /// An address group.
    AddressGroup(AddressGroup),
    /// A service group.
    ServiceGroup(ServiceGroup),
    /// A firewall policy.
    FirewallPolicy(FirewallPolicy),
    /// An application policy set.
    ApplicationPolicySet(ApplicationPolicySet),
}

/// The kinds of object, for keys and messages.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub enum ObjectKind {
    /// [`TagType`].
    TagType,
    /// [`Tag`].
    Tag,
    /// [`AddressGroup`].
    AddressGroup,
    /// [`ServiceGroup`].
    ServiceGroup,
    /// [`FirewallPolicy`].
    FirewallPolicy,
    /// [`ApplicationPolicySet`].
    ApplicationPolicySet,
}

impl ObjectKind {
    /// How users call it.
    pub fn noun(&self) -> &'static str {
        match self {
            ObjectKind::TagType => "tag type",
            ObjectKind::Tag => "tag",
            ObjectKind::AddressGroup => "address group",
            ObjectKind::ServiceGroup => "service group",
            ObjectKind::FirewallPolicy => "policy",
            ObjectKind::ApplicationPolicySet => "application policy set",
        }
    }
}

/// The identity of an object: kind, scope and name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ObjectKey {
    /// Kind.
    pub kind: ObjectKind,
    /// Scope.
    pub scope: Scope,
    /// Name (`type=value` for tags).
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Scope::Global => write!(f, "{} `{}`", self.kind.noun(), self.name),
            Scope::Project(p) => write!(f, "{} `{}/{}`", self.kind.noun(), p, self.name),
        }
    }
}

impl Object {
    /// The object's identity.
    pub fn key(&self) -> ObjectKey {
        let (kind, scope, name) = match self {
            Object::TagType(t) => (ObjectKind::TagType, Scope::Global, t.name.clone()),
            Object::Tag(t) => (ObjectKind::Tag, t.scope.clone(), t.name()),
            Object::AddressGroup(g) => (ObjectKind::AddressGroup, g.scope.clone(), g.name.clone()),
            Object::ServiceGroup(g) => (ObjectKind::ServiceGroup, g.scope.clone(), g.name.clone()),
            Object::FirewallPolicy(p) => {
                (ObjectKind::FirewallPolicy, p.scope.clone(), p.name.clone())
            }
            Object::ApplicationPolicySet(s) => (
                ObjectKind::ApplicationPolicySet,
                s.scope.clone(),
                s.name.clone(),
            ),
        };
        ObjectKey { kind, scope, name }
    }

    /// The object's scope.
    pub fn scope(&self) -> Scope {
        self.key().scope
    }
}

fn is_global(scope: &Scope) -> bool {
    *scope == Scope::Global
}

/// `project: NAME` in YAML/JSON; absent means global.
mod scope_field {
    use super::Scope;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(scope: &Scope, s: S) -> Result<S::Ok, S::Error> {
        match scope {
            Scope::Global => s.serialize_none(),
            Scope::Project(p) => s.serialize_str(p),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Scope, D::Error> {
        Ok(match Option::<String>::deserialize(d)? {
            None => Scope::Global,
            Some(p) => Scope::Project(p),
        })
    }
}

/// The YAML/JSON shape of an endpoint: exactly one field set.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    any: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<TagRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subnet: Option<Prefix>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    network: Option<String>,
}

impl RawEndpoint {
    fn into_spec(self, field: &str) -> Result<EndpointSpec, String> {
        let mut found = Vec::new();
        if self.any {
            found.push(EndpointSpec::Any);
        }
        if !self.tags.is_empty() {
            found.push(EndpointSpec::Tags(self.tags));
        }
        if let Some(g) = self.address_group {
            found.push(EndpointSpec::AddressGroup(g));
        }
        if let Some(s) = self.subnet {
            found.push(EndpointSpec::Subnet(s));
        }
        if let Some(n) = self.network {
            found.push(EndpointSpec::Network(n));
        }
        match found.len() {
            1 => Ok(found.pop().expect("one element")),
            0 => Err(format!(
                "{field}: set one of `any: true`, `tags`, `address_group`, `subnet`, `network`"
            )),
            _ => Err(format!(
                "{field}: set only one of `any`, `tags`, `address_group`, `subnet`, `network`"
            )),
        }
    }

    fn from_spec(spec: EndpointSpec) -> Self {
        let mut raw = RawEndpoint::default();
        match spec {
            EndpointSpec::Any => raw.any = true,
            EndpointSpec::Tags(t) => raw.tags = t,
            EndpointSpec::AddressGroup(g) => raw.address_group = Some(g),
            EndpointSpec::Subnet(s) => raw.subnet = Some(s),
            EndpointSpec::Network(n) => raw.network = Some(n),
        }
        raw
    }
}

/// The YAML/JSON shape of a rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    sequence: String,
    action: RuleAction,
    endpoint_1: RawEndpoint,
    direction: RuleDirection,
    endpoint_2: RawEndpoint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service: Option<Service>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service_group: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    match_tags: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    log: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    audit: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mirror: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redirect: Option<String>,
}

impl TryFrom<RawRule> for FirewallRule {
    type Error = String;

    fn try_from(raw: RawRule) -> Result<Self, String> {
        let at = |field: &str| format!("rule `{}`, {field}", raw.sequence);
        let service = match (raw.service, raw.service_group) {
            (Some(s), None) => ServiceSpec::Inline(s),
            (None, Some(g)) => ServiceSpec::Group(g),
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{}: a rule has either a `service` or a `service_group`, not both",
                    at("service")
                ));
            }
            (None, None) => {
                return Err(format!(
                    "{}: set `service` (e.g. `{{protocol: tcp, dst_ports: [\"80\"]}}`, or `{{}}` for any) or `service_group`",
                    at("service")
                ));
            }
        };
        Ok(Self {
            endpoint_1: raw.endpoint_1.into_spec(&at("endpoint_1"))?,
            endpoint_2: raw.endpoint_2.into_spec(&at("endpoint_2"))?,
            sequence: raw.sequence,
            action: raw.action,
            direction: raw.direction,
            service,
            match_tags: raw.match_tags,
            log: raw.log,
            audit: raw.audit,
            mirror: raw.mirror,
            redirect: raw.redirect,
        })
    }
}

impl From<FirewallRule> for RawRule {
    fn from(rule: FirewallRule) -> Self {
        let (service, service_group) = match rule.service {
            ServiceSpec::Inline(s) => (Some(s), None),
            ServiceSpec::Group(g) => (None, Some(g)),
        };
        RawRule {
            sequence: rule.sequence,
            action: rule.action,
            endpoint_1: RawEndpoint::from_spec(rule.endpoint_1),
            direction: rule.direction,
            endpoint_2: RawEndpoint::from_spec(rule.endpoint_2),
            service,
            service_group,
            match_tags: rule.match_tags,
            log: rule.log,
            audit: rule.audit,
            mirror: rule.mirror,
            redirect: rule.redirect,
        }
    }
}
