//! The lowered policy: what every front-end (our intent language, Kubernetes policies)
//! produces and the compiler turns into device programs.
//!
//! Lowering has already resolved every selector: a rule's local side is a list of endpoints,
//! its remote side a set of addresses. Front-ends also split rules whose meaning depends on
//! the pair of ends (named ports, `match_tags`) into one lowered rule per group, so a lowered
//! rule means the same thing for each of its local endpoints.

use std::sync::Arc;

use palisade_inventory::EndpointId;
use palisade_program::{Action, Direction, PortRange, PrefixSet, Protocol, TierKind};

/// The remote side of a rule: named addresses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RemoteSet {
    /// A name for people reading device programs (`tier=app`, `group:quarantine`, ...).
    pub name: String,
    /// The addresses.
    pub prefixes: PrefixSet,
}

/// One lowered rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IrRule {
    /// Unique id that maps back to the intent (becomes the device program's rule id).
    pub id: String,
    /// The tier it belongs to.
    pub tier: TierKind,
    /// Into or out of the local endpoints.
    pub direction: Direction,
    /// Local endpoints it applies to: sorted, unique. Shared, since one selection often
    /// serves many rules and incremental runs reuse rules.
    pub local: Arc<[EndpointId]>,
    /// Remote addresses; `None` for any address. Share the `Arc` between rules with the same
    /// remote side: the compiler then interns it once per device.
    pub remote: Option<Arc<RemoteSet>>,
    /// Protocol; `None` for any.
    pub protocol: Option<Protocol>,
    /// Initiator's ports (canonical); empty for any.
    pub src_ports: Vec<PortRange>,
    /// Responder's ports (canonical); empty for any.
    pub dst_ports: Vec<PortRange>,
    /// What a match does.
    pub action: Action,
    /// Log decided connections.
    pub log: bool,
    /// Deny rules only: forward and log "would deny".
    pub audit: bool,
    /// Mirror destination.
    pub mirror: Option<String>,
    /// Allow rules only: named L7 service to redirect to.
    pub redirect: Option<String>,
}

impl IrRule {
    /// A rule with no ports, no remote restriction and no modifiers.
    pub fn new(
        id: impl Into<String>,
        tier: TierKind,
        direction: Direction,
        local: impl Into<Arc<[EndpointId]>>,
        action: Action,
    ) -> Self {
        Self {
            id: id.into(),
            tier,
            direction,
            local: local.into(),
            remote: None,
            protocol: None,
            src_ports: Vec::new(),
            dst_ports: Vec::new(),
            action,
            log: false,
            audit: false,
            mirror: None,
            redirect: None,
        }
    }

    /// True when no packet can match (an empty remote set).
    pub fn is_void(&self) -> bool {
        self.local.is_empty() || self.remote.as_ref().is_some_and(|r| r.prefixes.is_empty())
    }
}

/// A tier default that differs from the tier's natural one (see [`natural_default`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DefaultOverride {
    /// The tier.
    pub tier: TierKind,
    /// The endpoint.
    pub endpoint: EndpointId,
    /// The direction.
    pub direction: Direction,
    /// What happens when no rule of the tier matched.
    pub action: Action,
}

/// The default of a tier for an endpoint nothing says otherwise about: the admin and
/// application tiers fall through, the baseline tier allows.
pub fn natural_default(tier: TierKind) -> Action {
    match tier {
        TierKind::Admin | TierKind::Application => Action::NextTier,
        TierKind::Baseline => Action::Allow,
    }
}

/// The whole lowered policy of a fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyIr {
    /// Rules; within a tier, in evaluation order (tiers may interleave: the compiler keeps
    /// each tier's relative order).
    pub rules: Vec<IrRule>,
    /// Defaults that differ from the natural ones, e.g. the application tier's implicit deny
    /// for endpoints some policy applies to.
    pub defaults: Vec<DefaultOverride>,
}

impl PolicyIr {
    /// Appends another front-end's output: its rules go after ours within each tier, and its
    /// defaults are combined (a deny wins over a fall-through).
    pub fn extend(&mut self, other: PolicyIr) {
        self.rules.extend(other.rules);
        self.defaults.extend(other.defaults);
    }
}
