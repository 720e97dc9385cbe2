//! `explain`: the verdict for one connection, with its path, computed straight from intent.
//!
//! This is the second statement of the semantics in [`mod@crate::lower`]: it never builds rule
//! lists or address sets, it asks per connection "is the initiator in endpoint 1? is the
//! responder in endpoint 2? do their tags match?". Property tests check that it agrees with
//! the compiled device programs run by the reference interpreter.

use std::net::IpAddr;

use palisade_inventory::{AddressOwner, EndpointId, InventoryIndex};
use palisade_program::{Direction, Protocol, TierKind};
use serde::Serialize;

use crate::lower::{
    LowerError, policy_sets, rule_ref, rule_services, scoped, set_policies, sorted_rules,
    tier_policies,
};
use std::fmt::Write as _;

use crate::objects::*;
use crate::resolve::{TagId, Tags};
use crate::set::IntentSet;

/// The connection to explain: `src` initiates to `dst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    /// Initiator's address.
    pub src: IpAddr,
    /// Responder's address.
    pub dst: IpAddr,
    /// Protocol.
    pub protocol: Protocol,
    /// Initiator's port.
    pub src_port: u16,
    /// Responder's port.
    pub dst_port: u16,
}

/// The verdict for a connection and how each side reached it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Whether the connection is allowed end to end.
    pub allowed: bool,
    /// The initiator.
    pub src: End,
    /// The responder.
    pub dst: End,
    /// The judged sides: the initiator's egress (if it is a workload), then the responder's
    /// ingress (if it is one).
    pub sides: Vec<SideExplanation>,
}

/// One end of the connection as the inventory knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct End {
    /// The address.
    pub address: IpAddr,
    /// The workload interface owning it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The device enforcing for it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Its effective tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// How one side was decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SideExplanation {
    /// The workload interface.
    pub endpoint: String,
    /// Its device.
    pub device: String,
    /// Egress for the initiator, ingress for the responder.
    pub direction: Direction,
    /// Whether this side lets the connection through.
    pub allowed: bool,
    /// What decided.
    pub decision: Step,
    /// `next-tier` rules that matched on the way.
    pub passed: Vec<RuleStep>,
}

/// What decided a side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Step {
    /// A rule matched.
    Rule(RuleStep),
    /// No rule of the tier matched; its default applied.
    Default {
        /// The tier.
        tier: TierKind,
        /// Whether the default allows.
        allowed: bool,
        /// Why this default.
        reason: String,
    },
    /// Every tier passed the connection on.
    EndOfTiers,
}

/// A rule that matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleStep {
    /// Tier.
    pub tier: TierKind,
    /// The rule's identity; every device-program rule it compiles to has an id starting with
    /// this followed by `/`.
    pub rule_ref: String,
    /// The application policy set that applied the policy (application tier).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_set: Option<String>,
    /// The policy.
    pub policy: String,
    /// The rule's sequence key.
    pub sequence: String,
    /// The rule's action.
    pub action: RuleAction,
    /// Whether it is an audit rule (deny logged, connection forwarded).
    pub audit: bool,
    /// The tags that made the ends match (selectors and `match_tags`).
    pub matched_tags: Vec<String>,
}

/// Explains a connection against intent and inventory.
pub fn explain(
    set: &IntentSet,
    index: &InventoryIndex,
    query: &Query,
) -> Result<Explanation, LowerError> {
    Ok(Explainer::new(set, index)?.explain(query))
}

/// Explains many connections against the same intent and inventory, validating and
/// resolving tags once.
pub struct Explainer<'a> {
    set: &'a IntentSet,
    index: &'a InventoryIndex,
    tags: Tags,
}

impl<'a> Explainer<'a> {
    /// Validates the intent and resolves the inventory's tags.
    pub fn new(set: &'a IntentSet, index: &'a InventoryIndex) -> Result<Self, LowerError> {
        let errors = set.validate();
        if !errors.is_empty() {
            return Err(LowerError::Invalid(errors));
        }
        let tags = Tags::new(set, index).map_err(LowerError::Attachments)?;
        Ok(Self { set, index, tags })
    }

    /// Explains one connection.
    pub fn explain(&self, query: &Query) -> Explanation {
        let ev = Evaluator::new(self.set, self.index, &self.tags);
        let src_ep = ev.endpoint_at(query.src);
        let dst_ep = ev.endpoint_at(query.dst);
        let mut sides = Vec::new();
        if let Some(e) = src_ep {
            sides.push(ev.side(e, Direction::Egress, query, dst_ep));
        }
        if let Some(e) = dst_ep {
            sides.push(ev.side(e, Direction::Ingress, query, src_ep));
        }
        Explanation {
            allowed: sides.iter().all(|s| s.allowed),
            src: ev.end(query.src, src_ep),
            dst: ev.end(query.dst, dst_ep),
            sides,
        }
    }
}

/// Per-connection membership and rule matching over one intent + inventory.
pub(crate) struct Evaluator<'a> {
    set: &'a IntentSet,
    index: &'a InventoryIndex,
    tags: &'a Tags,
}

/// A policy that applies to an endpoint in one tier, with the set that applied it.
struct Applied<'a> {
    policy: &'a FirewallPolicy,
    key: ObjectKey,
    set: Option<ObjectKey>,
}

impl<'a> Evaluator<'a> {
    pub(crate) fn new(set: &'a IntentSet, index: &'a InventoryIndex, tags: &'a Tags) -> Self {
        Self { set, index, tags }
    }

    /// Whether endpoint `e` is inside `spec` (as written in `scope`).
    pub(crate) fn contains(&self, scope: &Scope, spec: &EndpointSpec, e: EndpointId) -> bool {
        self.local_in(scope, spec, e, &mut Vec::new())
    }

    /// Whether endpoint `e` carries `tag` (as written in `scope`).
    pub(crate) fn carries(&self, scope: &Scope, tag: &TagRef, e: EndpointId) -> bool {
        self.tag_id(scope, tag).is_some_and(|t| self.tags.has(e, t))
    }

    fn endpoint_at(&self, ip: IpAddr) -> Option<EndpointId> {
        match self.index.owner_of(ip) {
            Some(AddressOwner::Endpoint(e)) => Some(e),
            _ => None,
        }
    }

    fn end(&self, address: IpAddr, e: Option<EndpointId>) -> End {
        End {
            address,
            endpoint: e.map(|e| self.index.endpoint(e).name.clone()),
            device: e.map(|e| self.device_name(e)),
            tags: e
                .map(|e| {
                    self.tags
                        .of(e)
                        .iter()
                        .map(|&t| self.tags.display(t))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn device_name(&self, e: EndpointId) -> String {
        self.index.inventory().devices[self.index.endpoint(e).device]
            .name
            .clone()
    }

    fn project_of(&self, e: EndpointId) -> &str {
        &self.index.project_of(e).name
    }

    fn scope_covers(&self, scope: &Scope, e: EndpointId) -> bool {
        match scope {
            Scope::Global => true,
            Scope::Project(p) => p == self.project_of(e),
        }
    }

    fn tag_id(&self, scope: &Scope, tag: &TagRef) -> Option<TagId> {
        self.set
            .resolve_tag(scope, tag)
            .and_then(|k| self.tags.id(&k))
    }

    /// The application policy sets binding `e`, in order, and whether any has a policy.
    fn binding_sets(&self, e: EndpointId) -> Vec<&'a ApplicationPolicySet> {
        policy_sets(self.set)
            .into_iter()
            .filter(|aps| match &aps.application {
                None => true,
                Some(app) => {
                    self.scope_covers(&aps.scope, e)
                        && self
                            .tag_id(&aps.scope, app)
                            .is_some_and(|t| self.tags.has(e, t))
                }
            })
            .collect()
    }

    fn applied(&self, tier: TierKind, e: EndpointId) -> Vec<Applied<'a>> {
        match tier {
            TierKind::Admin | TierKind::Baseline => tier_policies(self.set, tier)
                .into_iter()
                .filter(|p| self.scope_covers(&p.scope, e))
                .map(|p| Applied {
                    key: Object::FirewallPolicy(p.clone()).key(),
                    policy: p,
                    set: None,
                })
                .collect(),
            TierKind::Application => self
                .binding_sets(e)
                .into_iter()
                .flat_map(|aps| {
                    let aps_key = Object::ApplicationPolicySet(aps.clone()).key();
                    set_policies(self.set, aps)
                        .into_iter()
                        .map(move |(policy, key)| Applied {
                            policy,
                            key,
                            set: Some(aps_key.clone()),
                        })
                })
                .collect(),
        }
    }

    fn side(
        &self,
        e: EndpointId,
        direction: Direction,
        q: &Query,
        remote_ep: Option<EndpointId>,
    ) -> SideExplanation {
        let remote_ip = match direction {
            Direction::Egress => q.dst,
            Direction::Ingress => q.src,
        };
        let mut passed = Vec::new();
        let mut decision = Step::EndOfTiers;
        'tiers: for tier in TierKind::ALL {
            for applied in self.applied(tier, e) {
                for rule in sorted_rules(applied.policy) {
                    let Some(matched_tags) = self.rule_matches(
                        applied.policy,
                        rule,
                        e,
                        direction,
                        remote_ip,
                        remote_ep,
                        q,
                    ) else {
                        continue;
                    };
                    let step = RuleStep {
                        tier,
                        rule_ref: rule_ref(
                            tier,
                            applied.set.as_ref(),
                            &applied.key,
                            &rule.sequence,
                        ),
                        policy_set: applied.set.as_ref().map(scoped),
                        policy: scoped(&applied.key),
                        sequence: rule.sequence.clone(),
                        action: rule.action,
                        audit: rule.audit,
                        matched_tags,
                    };
                    if rule.action == RuleAction::NextTier {
                        passed.push(step);
                        continue 'tiers;
                    }
                    decision = Step::Rule(step);
                    break 'tiers;
                }
            }
            if tier == TierKind::Application {
                let bound: Vec<String> = self
                    .binding_sets(e)
                    .into_iter()
                    .filter(|s| !s.policies.is_empty())
                    .map(|s| Object::ApplicationPolicySet(s.clone()).key().to_string())
                    .collect();
                if !bound.is_empty() {
                    decision = Step::Default {
                        tier,
                        allowed: false,
                        reason: format!(
                            "no rule matched and {} applies to the endpoint: implicit deny",
                            bound.join(", ")
                        ),
                    };
                    break;
                }
            }
            if tier == TierKind::Baseline {
                decision = Step::Default {
                    tier,
                    allowed: true,
                    reason: "no rule matched in any tier: the baseline allows".into(),
                };
            }
        }
        let allowed = match &decision {
            Step::Rule(r) => r.action == RuleAction::Allow || r.audit,
            Step::Default { allowed, .. } => *allowed,
            Step::EndOfTiers => true,
        };
        SideExplanation {
            endpoint: self.index.endpoint(e).name.clone(),
            device: self.device_name(e),
            direction,
            allowed,
            decision,
            passed,
        }
    }

    /// Whether the rule matches the connection on this side; `Some(tags that matched)`.
    #[allow(clippy::too_many_arguments)]
    fn rule_matches(
        &self,
        policy: &FirewallPolicy,
        rule: &FirewallRule,
        local: EndpointId,
        direction: Direction,
        remote_ip: IpAddr,
        remote_ep: Option<EndpointId>,
        q: &Query,
    ) -> Option<Vec<String>> {
        let scope = &policy.scope;
        let services = rule_services(self.set, scope, rule);
        let service_ok = services.iter().any(|s| {
            s.protocol.is_none_or(|p| p == q.protocol)
                && (s.src_ports.is_empty() || s.src_ports.iter().any(|r| r.contains(q.src_port)))
                && (s.dst_ports.is_empty() || s.dst_ports.iter().any(|r| r.contains(q.dst_port)))
        });
        if !service_ok {
            return None;
        }
        // Which rule endpoint the initiator must be in, per allowed orientation.
        let orientations: &[(bool, bool)] = match rule.direction {
            // (initiator is endpoint_1, responder is endpoint_2) = true
            RuleDirection::Forward => &[(true, true)],
            RuleDirection::Backward => &[(false, false)],
            RuleDirection::Both => &[(true, true), (false, false)],
        };
        for &(initiator_is_1, _) in orientations {
            let (initiator_spec, responder_spec) = if initiator_is_1 {
                (&rule.endpoint_1, &rule.endpoint_2)
            } else {
                (&rule.endpoint_2, &rule.endpoint_1)
            };
            let (local_spec, remote_spec) = match direction {
                Direction::Egress => (initiator_spec, responder_spec),
                Direction::Ingress => (responder_spec, initiator_spec),
            };
            let mut matched = Vec::new();
            if !self.local_in(scope, local_spec, local, &mut matched)
                || !self.remote_in(scope, remote_spec, remote_ip, remote_ep, &mut matched)
            {
                continue;
            }
            if !rule.match_tags.is_empty() {
                let Some(remote) = remote_ep else { continue };
                let same = rule.match_tags.iter().all(|kind| {
                    let a = self.tags.value(local, kind);
                    a.is_some() && a == self.tags.value(remote, kind)
                });
                if !same {
                    continue;
                }
                for kind in &rule.match_tags {
                    if let Some(t) = self.tags.value(local, kind) {
                        matched.push(format!("match {}", self.tags.display(t)));
                    }
                }
            }
            return Some(matched);
        }
        None
    }

    fn has_tags(
        &self,
        scope: &Scope,
        tags: &[TagRef],
        e: EndpointId,
        matched: &mut Vec<String>,
    ) -> bool {
        for t in tags {
            match self.tag_id(scope, t) {
                Some(id) if self.tags.has(e, id) => matched.push(self.tags.display(id)),
                _ => return false,
            }
        }
        true
    }

    fn group(&self, scope: &Scope, name: &str) -> Option<&'a AddressGroup> {
        match self
            .set
            .get(&self.set.resolve(ObjectKind::AddressGroup, scope, name)?)
        {
            Some(Object::AddressGroup(g)) => Some(g),
            _ => None,
        }
    }

    fn labelled(&self, group: &AddressGroup, e: EndpointId) -> bool {
        group.label.as_ref().is_some_and(|l| {
            self.tag_id(&group.scope, &TagRef::new("label", l.clone()))
                .is_some_and(|t| self.tags.has(e, t))
        })
    }

    fn on_network(
        &self,
        scope: &Scope,
        name: &str,
        ip: Option<IpAddr>,
        e: Option<EndpointId>,
    ) -> bool {
        let Some(project) = scope.project().and_then(|p| self.index.project_by_name(p)) else {
            return false;
        };
        let Some(net) = self.index.inventory().projects[project]
            .networks
            .iter()
            .position(|n| n.name == name)
        else {
            return false;
        };
        let attached = e.is_some_and(|e| {
            let info = self.index.endpoint(e);
            info.project == project && info.network == Some(net)
        });
        let subnets = &self.index.inventory().projects[project].networks[net].subnets;
        let addresses: Vec<IpAddr> = match (ip, e) {
            (Some(ip), _) => vec![ip],
            (None, Some(e)) => self.index.endpoint(e).addresses.clone(),
            (None, None) => Vec::new(),
        };
        attached
            || addresses
                .iter()
                .any(|a| subnets.iter().any(|s| s.contains(*a)))
    }

    fn local_in(
        &self,
        scope: &Scope,
        spec: &EndpointSpec,
        e: EndpointId,
        matched: &mut Vec<String>,
    ) -> bool {
        let addresses = &self.index.endpoint(e).addresses;
        match spec {
            EndpointSpec::Any => true,
            EndpointSpec::Tags(tags) => self.has_tags(scope, tags, e, matched),
            EndpointSpec::AddressGroup(g) => self.group(scope, g).is_some_and(|group| {
                self.labelled(group, e)
                    || addresses
                        .iter()
                        .any(|a| group.prefixes.iter().any(|p| p.contains(*a)))
            }),
            EndpointSpec::Subnet(p) => addresses.iter().any(|a| p.contains(*a)),
            EndpointSpec::Network(n) => self.on_network(scope, n, None, Some(e)),
        }
    }

    fn remote_in(
        &self,
        scope: &Scope,
        spec: &EndpointSpec,
        ip: IpAddr,
        e: Option<EndpointId>,
        matched: &mut Vec<String>,
    ) -> bool {
        match spec {
            EndpointSpec::Any => true,
            EndpointSpec::Tags(tags) => e.is_some_and(|e| self.has_tags(scope, tags, e, matched)),
            EndpointSpec::AddressGroup(g) => self.group(scope, g).is_some_and(|group| {
                group.prefixes.iter().any(|p| p.contains(ip))
                    || e.is_some_and(|e| self.labelled(group, e))
            }),
            EndpointSpec::Subnet(p) => p.contains(ip),
            EndpointSpec::Network(n) => self.on_network(scope, n, Some(ip), e),
        }
    }
}

/// The explanation for people, one line per end and per judged side (with the rule as
/// written in the rule language), as `policy explain` and the server's Explain print it.
pub fn render(set: &IntentSet, e: &Explanation) -> String {
    let mut text = String::new();
    let out = &mut text;
    for (label, end) in [("from", &e.src), ("to", &e.dst)] {
        match &end.endpoint {
            Some(ep) => writeln!(
                out,
                "  {label:<4} {ep} on {} [{}]",
                end.device.as_deref().unwrap_or("?"),
                end.tags.join(" ")
            ),
            None => writeln!(out, "  {label:<4} {} (not a workload)", end.address),
        }
        .unwrap();
    }
    for side in &e.sides {
        let verdict = if side.allowed { "allow" } else { "deny" };
        match &side.decision {
            Step::Rule(r) => {
                writeln!(
                    out,
                    "  {:<7} of {}: {verdict} by {} tier, {}policy {}, rule {}",
                    side.direction.name(),
                    side.endpoint,
                    r.tier,
                    r.policy_set
                        .as_ref()
                        .map(|s| format!("set {s}, "))
                        .unwrap_or_default(),
                    r.policy,
                    r.sequence
                )
                .unwrap();
                if let Some(rule) = find_rule(set, r) {
                    writeln!(out, "          {}", crate::lang::print_rule(rule)).unwrap();
                }
                if !r.matched_tags.is_empty() {
                    writeln!(out, "          matched: {}", r.matched_tags.join(", ")).unwrap();
                }
                if r.audit {
                    writeln!(out, "          audit: would deny, forwarded and logged").unwrap();
                }
            }
            Step::Default { tier, reason, .. } => writeln!(
                out,
                "  {:<7} of {}: {verdict} by the {tier} tier default: {reason}",
                side.direction.name(),
                side.endpoint
            )
            .unwrap(),
            Step::EndOfTiers => writeln!(
                out,
                "  {:<7} of {}: allow: no tier decided",
                side.direction.name(),
                side.endpoint
            )
            .unwrap(),
        }
        for p in &side.passed {
            writeln!(
                out,
                "          passed on by {} ({} tier, next-tier)",
                p.rule_ref, p.tier
            )
            .unwrap();
        }
    }
    text
}

fn find_rule<'a>(set: &'a IntentSet, step: &RuleStep) -> Option<&'a FirewallRule> {
    set.objects().find_map(|o| match o {
        Object::FirewallPolicy(p) if crate::lower::scoped(&o.key()) == step.policy => {
            p.rules.iter().find(|r| r.sequence == step.sequence)
        }
        _ => None,
    })
}
