//! Lowering: intent + inventory -> [`PolicyIr`].
//!
//! * **Tiers and order.** Admin- and baseline-tier policies apply to every endpoint (a
//!   project's own policies only to that project's endpoints), ordered by sequence key, then
//!   scope, then name. Application-tier policies apply through application policy sets: a set
//!   binds the endpoints carrying its `application` tag (a project's set only within the
//!   project); the sets that bind an endpoint run in (scope, name) order, then the global set.
//!   Rules run in sequence-key order within their policy.
//! * **Defaults.** An endpoint bound by a set with at least one policy (the global set binds
//!   everybody) is denied by default in the application tier, both ways.
//! * **Directions.** `A > B` is an egress rule for endpoints in A towards B's addresses and
//!   an ingress rule for endpoints in B from A's addresses; `<` swaps; `<>` is both.
//! * **Endpoints.** A tag endpoint selects interfaces whose effective tags include all of
//!   them. As a remote side it is their addresses. An address group is its prefixes plus the
//!   addresses of interfaces labelled with its label; a subnet is itself; a network is its
//!   subnets plus its interfaces' addresses. As a local side, an address-based endpoint
//!   selects the interfaces that have an address in it (or are on the network / carry the
//!   label).
//! * **match_tags.** Local endpoints are grouped by their tags of the listed types (missing
//!   one: the rule does not apply to it); each group's remote side keeps only addresses of
//!   interfaces carrying the same tags.
//! * **Services.** A service group becomes one rule per service, in order.
//!
//! [`mod@crate::explain`] states the same semantics per connection; property tests check that
//! the two agree.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use palisade_compiler::{DefaultOverride, IrRule, PolicyIr, RemoteSet};
use palisade_inventory::{EndpointId, InventoryIndex};
use palisade_program::{Action, Direction, Prefix, PrefixSet, TierKind};
use thiserror::Error;

use crate::explain::Evaluator;
use crate::objects::*;
use crate::resolve::{AttachmentError, TagId, Tags};
use crate::set::{IntentSet, ValidationError};

/// Why intent could not be lowered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LowerError {
    /// The intent itself is invalid.
    #[error("{}", join(.0))]
    Invalid(Vec<ValidationError>),
    /// The inventory attaches tags the intent does not define.
    #[error("{}", join(.0))]
    Attachments(Vec<AttachmentError>),
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The lowered policy and what a user should know about it.
#[derive(Clone, Debug, Default)]
pub struct Lowered {
    /// Rules and defaults for the compiler.
    pub ir: PolicyIr,
    /// How many policy units were lowered afresh (the others came from a [`Lowerer`]'s cache).
    pub relowered: usize,
    /// Things that are legal but probably not meant (e.g. two sets binding one application).
    pub warnings: Vec<String>,
}

/// The identity of a rule in intent terms, the prefix of every lowered rule id it produces:
/// `admin/<policy>/<seq>`, `application/<set>/<policy>/<seq>`, `baseline/<policy>/<seq>`,
/// where a project-scoped name is written `project:name`.
pub fn rule_ref(tier: TierKind, set: Option<&ObjectKey>, policy: &ObjectKey, seq: &str) -> String {
    match set {
        Some(s) => format!("{tier}/{}/{}/{seq}", scoped(s), scoped(policy)),
        None => format!("{tier}/{}/{seq}", scoped(policy)),
    }
}

/// `name` or `project:name`.
pub fn scoped(key: &ObjectKey) -> String {
    match &key.scope {
        Scope::Global => key.name.clone(),
        Scope::Project(p) => format!("{p}:{}", key.name),
    }
}

/// The admin or baseline policies in evaluation order.
pub fn tier_policies(set: &IntentSet, tier: TierKind) -> Vec<&FirewallPolicy> {
    let mut policies: Vec<&FirewallPolicy> = set
        .objects()
        .filter_map(|o| match o {
            Object::FirewallPolicy(p) if p.tier == tier => Some(p),
            _ => None,
        })
        .collect();
    policies
        .sort_by(|a, b| (&a.sequence, &a.scope, &a.name).cmp(&(&b.sequence, &b.scope, &b.name)));
    policies
}

/// The application policy sets in evaluation order: bound sets by (scope, name), the global
/// set last.
pub fn policy_sets(set: &IntentSet) -> Vec<&ApplicationPolicySet> {
    let mut sets: Vec<&ApplicationPolicySet> = set
        .objects()
        .filter_map(|o| match o {
            Object::ApplicationPolicySet(s) => Some(s),
            _ => None,
        })
        .collect();
    sets.sort_by(|a, b| {
        (a.application.is_none(), &a.scope, &a.name).cmp(&(
            b.application.is_none(),
            &b.scope,
            &b.name,
        ))
    });
    sets
}

/// A set's policies in entry order, resolved (validation guarantees they resolve).
pub fn set_policies<'a>(
    set: &'a IntentSet,
    aps: &ApplicationPolicySet,
) -> Vec<(&'a FirewallPolicy, ObjectKey)> {
    let mut entries: Vec<&PolicyEntry> = aps.policies.iter().collect();
    entries.sort_by(|a, b| a.sequence.cmp(&b.sequence));
    entries
        .into_iter()
        .filter_map(|e| {
            let key = set.resolve(ObjectKind::FirewallPolicy, &aps.scope, &e.policy)?;
            match set.get(&key) {
                Some(Object::FirewallPolicy(p)) => Some((p, key)),
                _ => None,
            }
        })
        .collect()
}

/// A policy's rules in sequence order.
pub fn sorted_rules(policy: &FirewallPolicy) -> Vec<&FirewallRule> {
    let mut rules: Vec<&FirewallRule> = policy.rules.iter().collect();
    rules.sort_by(|a, b| a.sequence.cmp(&b.sequence));
    rules
}

/// The services a rule matches, in order.
pub fn rule_services<'a>(
    set: &'a IntentSet,
    scope: &Scope,
    rule: &'a FirewallRule,
) -> Vec<&'a Service> {
    match &rule.service {
        ServiceSpec::Inline(s) => vec![s],
        ServiceSpec::Group(g) => match set
            .resolve(ObjectKind::ServiceGroup, scope, g)
            .and_then(|k| set.get(&k))
        {
            Some(Object::ServiceGroup(g)) => g.services.iter().collect(),
            _ => Vec::new(),
        },
    }
}

/// The (direction, local side, remote side, suffix) expansions of a rule.
pub fn expansions(
    rule: &FirewallRule,
) -> Vec<(Direction, &EndpointSpec, &EndpointSpec, &'static str)> {
    let (a, b) = (&rule.endpoint_1, &rule.endpoint_2);
    let forward = [
        (Direction::Egress, a, b, "fwd-out"),
        (Direction::Ingress, b, a, "fwd-in"),
    ];
    let backward = [
        (Direction::Egress, b, a, "rev-out"),
        (Direction::Ingress, a, b, "rev-in"),
    ];
    match rule.direction {
        RuleDirection::Forward => forward.to_vec(),
        RuleDirection::Backward => backward.to_vec(),
        RuleDirection::Both => forward.into_iter().chain(backward).collect(),
    }
}

/// Lowers validated intent against an inventory.
pub fn lower(set: &IntentSet, index: &InventoryIndex) -> Result<Lowered, LowerError> {
    let tags = resolve(set, index)?;
    let (lowered, _) = lower_units(set, index, &tags, |_| None)?;
    Ok(lowered)
}

fn resolve(set: &IntentSet, index: &InventoryIndex) -> Result<Tags, LowerError> {
    let errors = set.validate();
    if !errors.is_empty() {
        return Err(LowerError::Invalid(errors));
    }
    Tags::new(set, index).map_err(LowerError::Attachments)
}

/// One policy as applied in its tier: admin and baseline policies on their own, application
/// policies through one application policy set. The lowering cache works per unit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct UnitKey {
    tier: TierKind,
    set: Option<ObjectKey>,
    policy: ObjectKey,
}

type Units = HashMap<UnitKey, Vec<IrRule>>;

/// Lowers every unit in evaluation order, taking a unit's rules from `cached` when it has
/// them, and computes the application tier's defaults and the warnings.
fn lower_units(
    set: &IntentSet,
    index: &InventoryIndex,
    tags: &Tags,
    mut cached: impl FnMut(&UnitKey) -> Option<Vec<IrRule>>,
) -> Result<(Lowered, Units), LowerError> {
    let mut cx = Ctx::new(set, index, tags);
    let mut out = Lowered::default();
    let mut units = Units::new();
    let mut emit = |cx: &mut Ctx<'_>,
                    unit: UnitKey,
                    policy: &FirewallPolicy,
                    filter: &[EndpointId],
                    out: &mut Lowered|
     -> Result<(), LowerError> {
        let rules = match cached(&unit) {
            Some(rules) => rules,
            None => {
                out.relowered += 1;
                cx.lower_policy(policy, &unit.policy, unit.set.as_ref(), unit.tier, filter)?
            }
        };
        out.ir.rules.extend(rules.iter().cloned());
        units.insert(unit, rules);
        Ok(())
    };

    for tier in [TierKind::Admin, TierKind::Baseline] {
        for policy in tier_policies(set, tier) {
            let unit = UnitKey {
                tier,
                set: None,
                policy: Object::FirewallPolicy(policy.clone()).key(),
            };
            let filter = cx.scope_filter(&policy.scope);
            emit(&mut cx, unit, policy, &filter, &mut out)?;
        }
    }

    let mut bound_by: HashMap<TagId, Vec<ObjectKey>> = HashMap::new();
    let mut isolated = vec![false; index.endpoints().len()];
    for aps in policy_sets(set) {
        let aps_key = Object::ApplicationPolicySet(aps.clone()).key();
        let bound: Vec<EndpointId> = match &aps.application {
            None => cx.all.clone(),
            Some(app) => {
                let Some(tag) = set.resolve_tag(&aps.scope, app).and_then(|k| tags.id(&k)) else {
                    continue;
                };
                bound_by.entry(tag).or_default().push(aps_key.clone());
                intersect(&cx.posting(tag), &cx.scope_filter(&aps.scope))
            }
        };
        if !aps.policies.is_empty() {
            for &e in &bound {
                isolated[e as usize] = true;
            }
        }
        for (policy, key) in set_policies(set, aps) {
            let unit = UnitKey {
                tier: TierKind::Application,
                set: Some(aps_key.clone()),
                policy: key,
            };
            emit(&mut cx, unit, policy, &bound, &mut out)?;
        }
    }
    for (tag, sets) in &bound_by {
        if sets.len() > 1 {
            out.warnings.push(format!(
                "application `{}` is bound by {} application policy sets ({}); their policies run in that order",
                tags.display(*tag),
                sets.len(),
                sets.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    out.warnings.sort();
    for (e, iso) in isolated.iter().enumerate() {
        if *iso {
            for direction in [Direction::Ingress, Direction::Egress] {
                out.ir.defaults.push(DefaultOverride {
                    tier: TierKind::Application,
                    endpoint: e as EndpointId,
                    direction,
                    action: Action::Deny,
                });
            }
        }
    }
    Ok((out, units))
}

/// Lowers repeatedly, re-lowering only the policies a change can affect.
///
/// After the first run it keeps the intent, inventory, resolved tags and each unit's rules.
/// The next run re-lowers a unit when its policy or set changed, when an address or service
/// group it names changed, or when an endpoint whose tags, addresses or network changed is
/// (before or after the change) inside one of its rule endpoints or bound by its set — or
/// the unit has `match_tags` rules over `any`. Anything broader (tags defined or removed,
/// endpoints added, removed or renamed, projects or networks edited) re-lowers everything.
/// Tests check that the result always equals [`lower`]'s.
#[derive(Default)]
pub struct Lowerer {
    previous: Option<PreviousLowering>,
}

struct PreviousLowering {
    set: IntentSet,
    index: Arc<InventoryIndex>,
    tags: Tags,
    units: Units,
}

impl Lowerer {
    /// A lowerer with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lowers `set` against `index`, reusing what the previous run lowered where nothing it
    /// depends on changed.
    pub fn lower(
        &mut self,
        set: &IntentSet,
        index: Arc<InventoryIndex>,
    ) -> Result<Lowered, LowerError> {
        let tags = resolve(set, &index)?;
        let reuse = self
            .previous
            .as_ref()
            .and_then(|prev| Changes::between(prev, set, &index, &tags));
        let (lowered, units) = match (&self.previous, reuse) {
            (Some(prev), Some(changes)) => lower_units(set, &index, &tags, |unit| {
                let rules = prev.units.get(unit)?;
                (!changes.affects(unit, prev, set, &index, &tags)).then(|| rules.clone())
            })?,
            _ => lower_units(set, &index, &tags, |_| None)?,
        };
        self.previous = Some(PreviousLowering {
            set: set.clone(),
            index,
            tags,
            units,
        });
        Ok(lowered)
    }
}

/// What changed between the previous run and this one, when the change is narrow enough for
/// per-unit reuse.
struct Changes {
    objects: BTreeSet<ObjectKey>,
    /// Names of changed address and service groups (any scope).
    groups: BTreeSet<(ObjectKind, String)>,
    endpoints: Vec<EndpointId>,
}

impl Changes {
    fn between(
        prev: &PreviousLowering,
        set: &IntentSet,
        index: &InventoryIndex,
        tags: &Tags,
    ) -> Option<Self> {
        if prev.tags.keys() != tags.keys()
            || prev.index.inventory().projects != index.inventory().projects
            || prev.index.endpoints().len() != index.endpoints().len()
        {
            return None;
        }
        let mut endpoints = Vec::new();
        for (i, (old, new)) in prev
            .index
            .endpoints()
            .iter()
            .zip(index.endpoints())
            .enumerate()
        {
            if old.name != new.name {
                return None;
            }
            let e = i as EndpointId;
            if old.addresses != new.addresses
                || old.network != new.network
                || prev.tags.of(e) != tags.of(e)
            {
                endpoints.push(e);
            }
        }
        let mut objects = BTreeSet::new();
        let old: Vec<(ObjectKey, &Object)> = prev.set.objects().map(|o| (o.key(), o)).collect();
        let new: Vec<(ObjectKey, &Object)> = set.objects().map(|o| (o.key(), o)).collect();
        let old_map: HashMap<&ObjectKey, &Object> = old.iter().map(|(k, o)| (k, *o)).collect();
        let new_map: HashMap<&ObjectKey, &Object> = new.iter().map(|(k, o)| (k, *o)).collect();
        for (k, o) in &new {
            if old_map.get(k) != Some(o) {
                objects.insert(k.clone());
            }
        }
        for (k, _) in &old {
            if !new_map.contains_key(k) {
                objects.insert(k.clone());
            }
        }
        let groups = objects
            .iter()
            .filter(|k| matches!(k.kind, ObjectKind::AddressGroup | ObjectKind::ServiceGroup))
            .map(|k| (k.kind, k.name.clone()))
            .collect();
        Some(Self {
            objects,
            groups,
            endpoints,
        })
    }

    fn affects(
        &self,
        unit: &UnitKey,
        prev: &PreviousLowering,
        set: &IntentSet,
        index: &InventoryIndex,
        tags: &Tags,
    ) -> bool {
        if self.objects.contains(&unit.policy)
            || unit.set.as_ref().is_some_and(|s| self.objects.contains(s))
        {
            return true;
        }
        let Some(Object::FirewallPolicy(policy)) = set.get(&unit.policy) else {
            return true;
        };
        if !self.groups.is_empty()
            && set
                .references(&Object::FirewallPolicy(policy.clone()))
                .iter()
                .any(|r| self.groups.contains(&(r.kind, r.written.clone())))
        {
            return true;
        }
        if self.endpoints.is_empty() {
            return false;
        }
        let before = Evaluator::new(&prev.set, &prev.index, &prev.tags);
        let after = Evaluator::new(set, index, tags);
        let application = unit.set.as_ref().and_then(|k| match set.get(k) {
            Some(Object::ApplicationPolicySet(s)) => {
                s.application.as_ref().map(|a| (s.scope.clone(), a.clone()))
            }
            _ => None,
        });
        self.endpoints.iter().any(|&e| {
            let bound = application.as_ref().is_some_and(|(scope, app)| {
                before.carries(scope, app, e) || after.carries(scope, app, e)
            });
            bound
                || policy.rules.iter().any(|rule| {
                    [&rule.endpoint_1, &rule.endpoint_2]
                        .into_iter()
                        .any(|spec| match spec {
                            EndpointSpec::Any => !rule.match_tags.is_empty(),
                            _ => {
                                before.contains(&policy.scope, spec, e)
                                    || after.contains(&policy.scope, spec, e)
                            }
                        })
                })
        })
    }
}

struct Ctx<'a> {
    set: &'a IntentSet,
    index: &'a InventoryIndex,
    tags: &'a Tags,
    postings: Vec<Vec<EndpointId>>,
    all: Vec<EndpointId>,
    by_project: HashMap<&'a str, Vec<EndpointId>>,
    /// Every endpoint address, sorted, for range look-ups.
    addresses: Vec<(IpAddr, EndpointId)>,
    local_cache: HashMap<(Scope, EndpointSpec), Arc<Vec<EndpointId>>>,
    remote_cache: HashMap<(Scope, EndpointSpec), Option<Arc<RemoteSet>>>,
    /// Remote sets narrowed to the peers carrying given `match_tags` values.
    matched_cache: HashMap<(Scope, EndpointSpec, Vec<TagId>), Arc<RemoteSet>>,
}

fn intersect(a: &[EndpointId], b: &[EndpointId]) -> Vec<EndpointId> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn spec_name(spec: &EndpointSpec) -> String {
    match spec {
        EndpointSpec::Any => "any".into(),
        EndpointSpec::Tags(t) => t
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join("&"),
        EndpointSpec::AddressGroup(g) => format!("group:{g}"),
        EndpointSpec::Subnet(p) => p.to_string(),
        EndpointSpec::Network(n) => format!("network:{n}"),
    }
}

impl<'a> Ctx<'a> {
    fn new(set: &'a IntentSet, index: &'a InventoryIndex, tags: &'a Tags) -> Self {
        let mut postings = vec![Vec::new(); tags.keys().len()];
        for id in 0..index.endpoints().len() as EndpointId {
            for &t in tags.of(id) {
                postings[t as usize].push(id);
            }
        }
        let mut by_project: HashMap<&str, Vec<EndpointId>> = HashMap::new();
        let mut addresses = Vec::new();
        for (id, e) in index.endpoints().iter().enumerate() {
            let id = id as EndpointId;
            by_project
                .entry(index.inventory().projects[e.project].name.as_str())
                .or_default()
                .push(id);
            addresses.extend(e.addresses.iter().map(|a| (*a, id)));
        }
        addresses.sort_unstable();
        Self {
            set,
            index,
            postings,
            all: (0..index.endpoints().len() as EndpointId).collect(),
            by_project,
            addresses,
            tags,
            local_cache: HashMap::new(),
            remote_cache: HashMap::new(),
            matched_cache: HashMap::new(),
        }
    }

    fn posting(&self, tag: TagId) -> Vec<EndpointId> {
        self.postings[tag as usize].clone()
    }

    fn scope_filter(&self, scope: &Scope) -> Vec<EndpointId> {
        match scope {
            Scope::Global => self.all.clone(),
            Scope::Project(p) => self.by_project.get(p.as_str()).cloned().unwrap_or_default(),
        }
    }

    /// Endpoints with an address inside `prefix`.
    fn in_prefix(&self, prefix: &Prefix, out: &mut Vec<EndpointId>) {
        let start = self.addresses.partition_point(|(a, _)| *a < prefix.first());
        out.extend(
            self.addresses[start..]
                .iter()
                .take_while(|(a, _)| *a <= prefix.last())
                .map(|(_, e)| *e),
        );
    }

    fn tag_ids(&self, scope: &Scope, tags: &[TagRef]) -> Option<Vec<TagId>> {
        tags.iter()
            .map(|t| {
                self.set
                    .resolve_tag(scope, t)
                    .and_then(|k| self.tags.id(&k))
            })
            .collect()
    }

    fn with_tags(&self, ids: &[TagId]) -> Vec<EndpointId> {
        let mut lists: Vec<&Vec<EndpointId>> =
            ids.iter().map(|&t| &self.postings[t as usize]).collect();
        lists.sort_by_key(|l| l.len());
        let Some((first, rest)) = lists.split_first() else {
            return self.all.clone();
        };
        rest.iter()
            .fold((*first).clone(), |acc, l| intersect(&acc, l))
    }

    fn address_group(&self, scope: &Scope, name: &str) -> Option<&'a AddressGroup> {
        let key = self.set.resolve(ObjectKind::AddressGroup, scope, name)?;
        match self.set.get(&key) {
            Some(Object::AddressGroup(g)) => Some(g),
            _ => None,
        }
    }

    fn label_members(&self, group: &AddressGroup) -> Vec<EndpointId> {
        let Some(label) = &group.label else {
            return Vec::new();
        };
        self.tag_ids(&group.scope, &[TagRef::new("label", label.clone())])
            .map(|ids| self.with_tags(&ids))
            .unwrap_or_default()
    }

    fn network(&self, scope: &Scope, name: &str) -> Option<(usize, usize)> {
        let project = self.index.project_by_name(scope.project()?)?;
        let net = self.index.inventory().projects[project]
            .networks
            .iter()
            .position(|n| n.name == name)?;
        Some((project, net))
    }

    /// Endpoints attached to a project's network.
    fn attached(&self, project: usize, net: usize) -> Vec<EndpointId> {
        self.by_project
            .get(self.index.inventory().projects[project].name.as_str())
            .into_iter()
            .flatten()
            .copied()
            .filter(|&e| self.index.endpoint(e).network == Some(net))
            .collect()
    }

    fn network_error(
        policy: &ObjectKey,
        rule: &FirewallRule,
        spec: &EndpointSpec,
        scope: &Scope,
    ) -> LowerError {
        let field = if *spec == rule.endpoint_1 {
            "endpoint_1"
        } else {
            "endpoint_2"
        };
        let name = match spec {
            EndpointSpec::Network(n) => n.as_str(),
            _ => "",
        };
        LowerError::Invalid(vec![ValidationError {
            object: policy.clone(),
            field: format!("rule {}, {field}", rule.sequence),
            message: format!(
                "network `{name}` is not in project `{}` of the inventory",
                scope.project().unwrap_or("")
            ),
            origin: None,
        }])
    }

    /// Endpoints a spec selects as the local side (before scoping), or `None` for an unknown
    /// network.
    fn select_local(&mut self, scope: &Scope, spec: &EndpointSpec) -> Option<Arc<Vec<EndpointId>>> {
        let key = (scope.clone(), spec.clone());
        if let Some(hit) = self.local_cache.get(&key) {
            return Some(Arc::clone(hit));
        }
        let mut out = match spec {
            EndpointSpec::Any => self.all.clone(),
            EndpointSpec::Tags(t) => self
                .tag_ids(scope, t)
                .map(|ids| self.with_tags(&ids))
                .unwrap_or_default(),
            EndpointSpec::AddressGroup(g) => {
                let mut out = Vec::new();
                if let Some(group) = self.address_group(scope, g) {
                    for p in &group.prefixes {
                        self.in_prefix(p, &mut out);
                    }
                    out.extend(self.label_members(group));
                }
                out
            }
            EndpointSpec::Subnet(p) => {
                let mut out = Vec::new();
                self.in_prefix(p, &mut out);
                out
            }
            EndpointSpec::Network(n) => {
                let (project, net) = self.network(scope, n)?;
                let mut out = self.attached(project, net);
                for p in &self.index.inventory().projects[project].networks[net].subnets {
                    self.in_prefix(p, &mut out);
                }
                out
            }
        };
        out.sort_unstable();
        out.dedup();
        let out = Arc::new(out);
        self.local_cache.insert(key, Arc::clone(&out));
        Some(out)
    }

    /// The prefixes a spec stands for as the remote side; `None` inside for any address.
    fn remote_prefixes(&mut self, scope: &Scope, spec: &EndpointSpec) -> Option<Option<PrefixSet>> {
        Some(match spec {
            EndpointSpec::Any => None,
            EndpointSpec::Tags(t) => {
                let members = self
                    .tag_ids(scope, t)
                    .map(|ids| self.with_tags(&ids))
                    .unwrap_or_default();
                Some(self.addresses_of(&members))
            }
            EndpointSpec::AddressGroup(g) => {
                let group = self.address_group(scope, g);
                let labelled = group.map(|g| self.label_members(g)).unwrap_or_default();
                let mut set = self.addresses_of(&labelled);
                if let Some(group) = group {
                    set = set.union(&PrefixSet::from_prefixes(group.prefixes.iter().copied()));
                }
                Some(set)
            }
            EndpointSpec::Subnet(p) => Some(PrefixSet::from_prefixes([*p])),
            EndpointSpec::Network(n) => {
                let (project, net) = self.network(scope, n)?;
                let attached = self.attached(project, net);
                let subnets = &self.index.inventory().projects[project].networks[net].subnets;
                Some(
                    self.addresses_of(&attached)
                        .union(&PrefixSet::from_prefixes(subnets.iter().copied())),
                )
            }
        })
    }

    fn remote_set(&mut self, scope: &Scope, spec: &EndpointSpec) -> Option<Option<Arc<RemoteSet>>> {
        let key = (scope.clone(), spec.clone());
        if let Some(hit) = self.remote_cache.get(&key) {
            return Some(hit.clone());
        }
        let set = self.remote_prefixes(scope, spec)?.map(|prefixes| {
            Arc::new(RemoteSet {
                name: spec_name(spec),
                prefixes,
            })
        });
        self.remote_cache.insert(key, set.clone());
        Some(set)
    }

    fn addresses_of(&self, endpoints: &[EndpointId]) -> PrefixSet {
        PrefixSet::from_prefixes(endpoints.iter().flat_map(|&e| {
            self.index
                .endpoint(e)
                .addresses
                .iter()
                .map(|a| Prefix::host(*a))
        }))
    }

    fn lower_policy(
        &mut self,
        policy: &FirewallPolicy,
        key: &ObjectKey,
        aps: Option<&ObjectKey>,
        tier: TierKind,
        filter: &[EndpointId],
    ) -> Result<Vec<IrRule>, LowerError> {
        let mut out = Vec::new();
        let scope = &policy.scope;
        for rule in sorted_rules(policy) {
            let base = rule_ref(tier, aps, key, &rule.sequence);
            let services = rule_services(self.set, scope, rule);
            for (direction, local_spec, remote_spec, suffix) in expansions(rule) {
                let local = self
                    .select_local(scope, local_spec)
                    .ok_or_else(|| Self::network_error(key, rule, local_spec, scope))?;
                let local = intersect(&local, filter);
                if local.is_empty() {
                    continue;
                }
                let remote = self
                    .remote_set(scope, remote_spec)
                    .ok_or_else(|| Self::network_error(key, rule, remote_spec, scope))?;
                let groups = self.match_groups(scope, rule, local, remote_spec, remote);
                for (group_suffix, local, remote) in groups {
                    for (si, service) in services.iter().enumerate() {
                        let mut id = format!("{base}/{suffix}");
                        if services.len() > 1 {
                            id.push_str(&format!("/s{si}"));
                        }
                        id.push_str(&group_suffix);
                        let mut ir = IrRule::new(
                            id,
                            tier,
                            direction,
                            local.clone(),
                            match rule.action {
                                RuleAction::Allow => Action::Allow,
                                RuleAction::Deny => Action::Deny,
                                RuleAction::NextTier => Action::NextTier,
                            },
                        );
                        ir.remote = remote.clone();
                        ir.protocol = service.protocol;
                        ir.src_ports = palisade_program::PortRange::canonicalize(
                            service.src_ports.iter().copied(),
                        );
                        ir.dst_ports = palisade_program::PortRange::canonicalize(
                            service.dst_ports.iter().copied(),
                        );
                        ir.log = rule.log;
                        ir.audit = rule.audit;
                        ir.mirror = rule.mirror.clone();
                        ir.redirect = rule.redirect.clone();
                        if !ir.is_void() {
                            out.push(ir);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Splits a rule's local side by its `match_tags` values and narrows the remote side of
    /// each group. Without `match_tags`: one group, unchanged.
    #[allow(clippy::type_complexity)]
    fn match_groups(
        &mut self,
        scope: &Scope,
        rule: &FirewallRule,
        local: Vec<EndpointId>,
        remote_spec: &EndpointSpec,
        remote: Option<Arc<RemoteSet>>,
    ) -> Vec<(String, Vec<EndpointId>, Option<Arc<RemoteSet>>)> {
        if rule.match_tags.is_empty() {
            return vec![(String::new(), local, remote)];
        }
        let mut groups: BTreeMap<Vec<TagId>, Vec<EndpointId>> = BTreeMap::new();
        for e in local {
            let values: Option<Vec<TagId>> = rule
                .match_tags
                .iter()
                .map(|k| self.tags.value(e, k))
                .collect();
            if let Some(v) = values {
                groups.entry(v).or_default().push(e);
            }
        }
        groups
            .into_iter()
            .map(|(values, members)| {
                let label: Vec<String> = values.iter().map(|&t| self.tags.display(t)).collect();
                let suffix = format!("#{}", label.join(","));
                let key = (scope.clone(), remote_spec.clone(), values);
                if let Some(set) = self.matched_cache.get(&key) {
                    return (suffix, members, Some(Arc::clone(set)));
                }
                let peers = self.with_tags(&key.2);
                let peers = match remote_spec {
                    EndpointSpec::Tags(t) => {
                        let candidates = self
                            .tag_ids(scope, t)
                            .map(|ids| self.with_tags(&ids))
                            .unwrap_or_default();
                        intersect(&peers, &candidates)
                    }
                    _ => peers,
                };
                let addresses: Vec<Prefix> = peers
                    .iter()
                    .flat_map(|&e| self.index.endpoint(e).addresses.iter())
                    .filter(|a| remote.as_ref().is_none_or(|r| r.prefixes.contains(**a)))
                    .map(|a| Prefix::host(*a))
                    .collect();
                let set = Arc::new(RemoteSet {
                    name: format!("{}{suffix}", spec_name(remote_spec)),
                    prefixes: PrefixSet::from_prefixes(addresses),
                });
                self.matched_cache.insert(key, Arc::clone(&set));
                (suffix, members, Some(set))
            })
            .collect()
    }
}
