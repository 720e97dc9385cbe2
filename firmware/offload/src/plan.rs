//! The offload planner: (ordered rules, hardware profile) -> hardware entries + software
//! remainder, and why each rule landed where it did.
//!
//! Hardware classification is an accelerator, never a second opinion: an offloaded rule
//! becomes entries that MARK matching packets with the rule's id; software takes the best of
//! the hardware's answer and its own remainder's, so the result is the software-only first
//! match for every packet (see [`crate::Offloaded`]). That holds for any subset of rules in
//! hardware, provided the hardware's own answer is the first match *among the offloaded
//! rules*. So the planner
//!
//! * expands each rule into entries the device can match (CIDR or masked addresses, exact
//!   protocol, port ranges split into masked blocks or single values as the profile says),
//!   or leaves it in software with the reason;
//! * gives every offloaded rule a priority level above that of every earlier offloaded rule
//!   it overlaps (rules that cannot both match one packet may share a level), so the device
//!   never breaks a tie; a rule that would need a level the group lacks stays in software;
//! * puts the rules in a non-root group behind one jump when the root group has fewer
//!   levels (mlx5: 4 in group 0, 21844 beyond);
//! * stops at the engine's capacity.
//!
//! Rules must share one tag (hardware cannot match the dataplane's direction tag): plan each
//! direction separately. IPv6 rules stay in software (the planner covers IPv4 tables).

use std::collections::HashMap;

use palisade_classifier::Rule;
use palisade_hw_profiles::{
    Action, Api, Engine, MatchField, MatchKind, PortRangeStrategy, Profile,
};
use thiserror::Error;

use crate::entry::{HwAction, HwEntry, Masked, Pattern, port_blocks};

/// Why a rule stays in software.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The device has no rte_flow offload.
    SoftwareOnlyDevice,
    /// No engine of the device can MARK packets.
    NoMarkAction,
    /// A field the rule constrains needs a match kind the engine lacks.
    FieldUnsupported {
        /// The field.
        field: MatchField,
        /// What the rule needs.
        needs: MatchKind,
        /// What the engine offers.
        has: MatchKind,
    },
    /// Ports constrained without an exact TCP, UDP or SCTP protocol.
    PortsWithoutProtocol,
    /// A masked (not exact, not wildcard) protocol.
    ProtocolMask,
    /// The rule applies to a set of local endpoints, which no NIC field matches.
    LocalEndpointSet,
    /// Per-value port expansion beyond the limit.
    RangeTooWide {
        /// Entries the expansion needs.
        entries: u64,
        /// The limit.
        limit: u64,
    },
    /// The rule needs a priority level beyond the group's.
    PriorityLevelsExhausted {
        /// Levels in the group.
        levels: u32,
    },
    /// The engine is full.
    CapacityExhausted {
        /// Its capacity.
        capacity: u64,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::SoftwareOnlyDevice => f.write_str("the device has no rte_flow offload"),
            Reason::NoMarkAction => f.write_str("no engine can MARK packets"),
            Reason::FieldUnsupported { field, needs, has } => {
                write!(f, "{field} needs {needs} matching; the engine offers {has}")
            }
            Reason::PortsWithoutProtocol => {
                f.write_str("ports without an exact TCP/UDP/SCTP protocol")
            }
            Reason::ProtocolMask => f.write_str("masked protocol"),
            Reason::LocalEndpointSet => f.write_str(
                "restricted to a local-endpoint set (give the NIC address-expanded rows)",
            ),
            Reason::RangeTooWide { entries, limit } => {
                write!(
                    f,
                    "port ranges expand to {entries} exact entries (limit {limit})"
                )
            }
            Reason::PriorityLevelsExhausted { levels } => {
                write!(f, "overlaps earlier offloaded rules {levels} levels deep")
            }
            Reason::CapacityExhausted { capacity } => {
                write!(f, "hardware full ({capacity} entries)")
            }
        }
    }
}

/// Where one rule runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// In hardware.
    Hardware {
        /// Entries it expanded to.
        entries: u32,
        /// Its group.
        group: u32,
        /// Its priority level.
        level: u32,
    },
    /// In software, and why.
    Software(Reason),
}

/// A rule's placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The rule's id.
    pub id: u32,
    /// Where it runs.
    pub place: Place,
}

/// Planning options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// Most exact entries one rule may expand to on per-value devices.
    pub per_value_limit: u64,
    /// Cap on hardware entries below the engine's capacity (e.g. to share the device).
    pub max_entries: Option<u64>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            per_value_limit: 16,
            max_entries: None,
        }
    }
}

/// The planner's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The profile.
    pub profile: String,
    /// The engine used, if any.
    pub engine: Option<String>,
    /// Entries for the device, jump first.
    pub entries: Vec<HwEntry>,
    /// One placement per rule, in rule order.
    pub placements: Vec<Placement>,
    /// Priority of every rule by id (to rank hardware answers against software ones).
    pub priorities: HashMap<u32, u32>,
    /// Levels used in the rules' group.
    pub levels_used: u32,
}

impl Plan {
    /// Ids of the rules in hardware.
    pub fn hardware_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.placements
            .iter()
            .filter(|p| matches!(p.place, Place::Hardware { .. }))
            .map(|p| p.id)
    }

    /// Ids of the rules in software.
    pub fn software_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.placements
            .iter()
            .filter(|p| matches!(p.place, Place::Software(_)))
            .map(|p| p.id)
    }
}

/// Why planning could not start.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    /// Rules with different tags.
    #[error("rules carry different tags ({0} and {1}): plan each direction separately")]
    MixedTags(u8, u8),
}

/// The engine the planner programs: the largest synchronous-API engine that can MARK.
pub fn engine_for(profile: &Profile) -> Option<&Engine> {
    profile
        .engines_for(Api::Sync)
        .filter(|e| e.supports_action(Action::Mark))
        .max_by_key(|e| e.capacity.get())
}

fn prefix_kind(len: u8) -> MatchKind {
    match len {
        0 => MatchKind::None,
        32 => MatchKind::Exact,
        _ => MatchKind::Prefix,
    }
}

fn port_kind(blocks: &[Masked<u16>]) -> MatchKind {
    blocks
        .iter()
        .map(|b| match b.mask {
            0 => MatchKind::None,
            u16::MAX => MatchKind::Exact,
            _ => MatchKind::Prefix,
        })
        .max()
        .unwrap_or(MatchKind::None)
}

/// Expands a rule into patterns the engine can match, or says why not.
fn expand(
    rule: &Rule<u32>,
    engine: &Engine,
    strategy: PortRangeStrategy,
    limit: u64,
) -> Result<Vec<Pattern>, Reason> {
    let need = |field: MatchField, needs: MatchKind| {
        let has = engine.match_kind(field);
        if needs == MatchKind::None || has.covers(needs) {
            Ok(())
        } else {
            Err(Reason::FieldUnsupported { field, needs, has })
        }
    };
    if rule.locals != palisade_classifier::ANY_LOCAL {
        return Err(Reason::LocalEndpointSet);
    }
    need(MatchField::Ipv4Src, prefix_kind(rule.src.1))?;
    need(MatchField::Ipv4Dst, prefix_kind(rule.dst.1))?;
    let proto = match rule.proto.1 {
        0 => None,
        u8::MAX => {
            need(MatchField::Ipv4Proto, MatchKind::Exact)?;
            Some(rule.proto.0)
        }
        _ => return Err(Reason::ProtocolMask),
    };
    let any_port = |r: (u16, u16)| r == (0, u16::MAX);
    let ports_constrained = !any_port(rule.sport) || !any_port(rule.dport);
    let (sf, df) = match proto {
        Some(6) => (MatchField::TcpSrcPort, MatchField::TcpDstPort),
        Some(17) => (MatchField::UdpSrcPort, MatchField::UdpDstPort),
        Some(132) => (MatchField::SctpSrcPort, MatchField::SctpDstPort),
        _ if ports_constrained => return Err(Reason::PortsWithoutProtocol),
        _ => (MatchField::TcpSrcPort, MatchField::TcpDstPort),
    };
    let blocks = |r: (u16, u16)| -> Vec<Option<Masked<u16>>> {
        if any_port(r) {
            return vec![None];
        }
        match strategy {
            PortRangeStrategy::PerValue => (r.0..=r.1)
                .map(|v| {
                    Some(Masked {
                        value: v,
                        mask: u16::MAX,
                    })
                })
                .collect(),
            PortRangeStrategy::PrefixMask | PortRangeStrategy::Native => {
                port_blocks(r.0, r.1).into_iter().map(Some).collect()
            }
        }
    };
    let count = |r: (u16, u16)| -> u64 {
        if any_port(r) {
            1
        } else if strategy == PortRangeStrategy::PerValue {
            u64::from(r.1 - r.0) + 1
        } else {
            port_blocks(r.0, r.1).len() as u64
        }
    };
    let total = count(rule.sport) * count(rule.dport);
    if strategy == PortRangeStrategy::PerValue && total > limit {
        return Err(Reason::RangeTooWide {
            entries: total,
            limit,
        });
    }
    let sports = blocks(rule.sport);
    let dports = blocks(rule.dport);
    let flat = |v: &[Option<Masked<u16>>]| v.iter().flatten().copied().collect::<Vec<_>>();
    need(sf, port_kind(&flat(&sports)))?;
    need(df, port_kind(&flat(&dports)))?;
    let mask32 = |(a, len): (u32, u8)| {
        (len > 0).then(|| Masked {
            value: a,
            mask: u32::MAX << (32 - u32::from(len)),
        })
    };
    let mut out = Vec::with_capacity(total as usize);
    for sp in &sports {
        for dp in &dports {
            out.push(Pattern {
                src: mask32(rule.src),
                dst: mask32(rule.dst),
                proto,
                sport: *sp,
                dport: *dp,
            });
        }
    }
    Ok(out)
}

fn prefixes_overlap(a: (u32, u8), b: (u32, u8)) -> bool {
    let len = a.1.min(b.1);
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    a.0 & mask == b.0 & mask
}

/// Whether some packet matches both rules.
pub fn overlap(a: &Rule<u32>, b: &Rule<u32>) -> bool {
    let ranges = |x: (u16, u16), y: (u16, u16)| x.0 <= y.1 && y.0 <= x.1;
    let common = a.proto.1 & b.proto.1;
    a.tag == b.tag
        && prefixes_overlap(a.src, b.src)
        && prefixes_overlap(a.dst, b.dst)
        && ranges(a.sport, b.sport)
        && ranges(a.dport, b.dport)
        && a.proto.0 & common == b.proto.0 & common
}

/// Rules grouped by level, so "the highest level overlapping this rule" can scan from the
/// top level down and stop at the first overlap.
#[derive(Default)]
struct ByLevel(Vec<Vec<Rule<u32>>>);

impl ByLevel {
    /// The highest level above `floor` holding a rule that overlaps `r`.
    fn max_overlapping(&self, r: &Rule<u32>, floor: Option<u32>) -> Option<u32> {
        let start = floor.map_or(0, |f| f as usize + 1);
        (start..self.0.len())
            .rev()
            .find(|&l| self.0[l].iter().any(|q| overlap(q, r)))
            .map(|l| l as u32)
    }

    fn add(&mut self, r: Rule<u32>, level: u32) {
        let l = level as usize;
        if self.0.len() <= l {
            self.0.resize_with(l + 1, Vec::new);
        }
        self.0[l].push(r);
    }
}

/// Offloaded rules indexed for "the highest level among those overlapping this one".
/// Typical queries stop early: a wide rule overlaps something near the top level at once,
/// a narrow one only looks at its destination's /16 and the wide rules.
#[derive(Default)]
struct Levels {
    /// Rules with a destination of /16 or longer, by the top 16 bits of it.
    by_dst: HashMap<u16, ByLevel>,
    /// Rules with a shorter destination.
    wide: ByLevel,
    /// Every rule.
    all: ByLevel,
}

impl Levels {
    fn max_overlapping(&self, r: &Rule<u32>) -> Option<u32> {
        if r.dst.1 < 16 {
            return self.all.max_overlapping(r, None);
        }
        let narrow = self
            .by_dst
            .get(&((r.dst.0 >> 16) as u16))
            .and_then(|b| b.max_overlapping(r, None));
        narrow.max(self.wide.max_overlapping(r, narrow))
    }

    fn add(&mut self, r: Rule<u32>, level: u32) {
        if r.dst.1 >= 16 {
            self.by_dst
                .entry((r.dst.0 >> 16) as u16)
                .or_default()
                .add(r, level);
        } else {
            self.wide.add(r, level);
        }
        self.all.add(r, level);
    }
}

/// Plans `rules` (rule, priority, id — lower priority wins) for `profile`.
pub fn plan(
    rules: &[(Rule<u32>, u32, u32)],
    profile: &Profile,
    options: PlanOptions,
) -> Result<Plan, PlanError> {
    if let Some(((a, _, _), (b, _, _))) = rules
        .first()
        .zip(rules.iter().find(|(r, _, _)| r.tag != rules[0].0.tag))
    {
        return Err(PlanError::MixedTags(a.tag, b.tag));
    }
    let mut order: Vec<&(Rule<u32>, u32, u32)> = rules.iter().collect();
    order.sort_by_key(|(_, p, id)| (*p, *id));
    let priorities = rules.iter().map(|(_, p, id)| (*id, *p)).collect();
    let mut out = Plan {
        profile: profile.name().to_string(),
        engine: None,
        entries: Vec::new(),
        placements: Vec::with_capacity(rules.len()),
        priorities,
        levels_used: 0,
    };
    let everything_soft = |out: &mut Plan, reason: Reason| {
        out.placements = order
            .iter()
            .map(|(_, _, id)| Placement {
                id: *id,
                place: Place::Software(reason.clone()),
            })
            .collect();
    };
    if profile.is_software_only() {
        everything_soft(&mut out, Reason::SoftwareOnlyDevice);
        return Ok(out);
    }
    let Some(engine) = engine_for(profile) else {
        everything_soft(&mut out, Reason::NoMarkAction);
        return Ok(out);
    };
    out.engine = Some(engine.name.clone());
    let strategy = engine
        .port_range_strategy()
        .or(profile.port_range_strategy())
        .unwrap_or(PortRangeStrategy::PerValue);
    // The rules' group: behind a jump when that buys priority levels.
    let use_jump = profile.supports_jump()
        && profile.max_groups() > 1
        && profile.priorities(1) > profile.priorities(0)
        && profile.action_allowed_in_group(Action::Jump, 0)
        && profile.action_allowed_in_group(Action::Mark, 1);
    let group = u32::from(use_jump);
    let levels = profile.priorities(group);
    let capacity = options
        .max_entries
        .map_or(engine.capacity.get(), |m| m.min(engine.capacity.get()));
    let mut used = 0u64;
    if use_jump {
        out.entries.push(HwEntry {
            group: 0,
            priority: 0,
            pattern: Pattern::default(),
            action: HwAction::Jump(1),
        });
        used += 1;
    }
    let mut index = Levels::default();
    for (rule, _, id) in order {
        let place = match expand(rule, engine, strategy, options.per_value_limit) {
            Err(reason) => Place::Software(reason),
            Ok(patterns) => {
                let level = index.max_overlapping(rule).map_or(0, |l| l + 1);
                if level >= levels {
                    Place::Software(Reason::PriorityLevelsExhausted { levels })
                } else if used + patterns.len() as u64 > capacity {
                    Place::Software(Reason::CapacityExhausted { capacity })
                } else {
                    used += patterns.len() as u64;
                    out.levels_used = out.levels_used.max(level + 1);
                    index.add(*rule, level);
                    let n = patterns.len() as u32;
                    out.entries
                        .extend(patterns.into_iter().map(|pattern| HwEntry {
                            group,
                            priority: level,
                            pattern,
                            action: HwAction::Mark(*id),
                        }));
                    Place::Hardware {
                        entries: n,
                        group,
                        level,
                    }
                }
            }
        };
        out.placements.push(Placement { id: *id, place });
    }
    Ok(out)
}
