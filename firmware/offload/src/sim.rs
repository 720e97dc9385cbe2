//! A simulated NIC that enforces a hardware profile: groups and jumps, priority levels,
//! per-field match kinds, actions per group, capacity and insertion rate. It refuses an
//! entry the profile's device would refuse, and it refuses to answer a lookup whose result
//! would depend on how the device breaks a tie (two entries of one priority matching with
//! different actions) — the planner must never rely on that.

use palisade_classifier::Key;
use palisade_hw_profiles::{Action, MatchField, MatchKind, Profile};
use thiserror::Error;

use crate::entry::{HwAction, HwEntry, Masked};

/// Why the simulated NIC refused something.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NicError {
    /// The profile has no rte_flow offload.
    #[error("{0} has no rte_flow offload in DPDK 22.11: every rule stays in software")]
    SoftwareOnly(String),
    /// An entry the device cannot hold.
    #[error("entry refused by {profile}: {problem}")]
    Refused {
        /// The profile.
        profile: String,
        /// What is wrong.
        problem: String,
    },
    /// The tables are full.
    #[error("{profile} is full: {capacity} entries")]
    Full {
        /// The profile.
        profile: String,
        /// Its capacity.
        capacity: u64,
    },
    /// A lookup hit two entries of one priority with different actions.
    #[error(
        "ambiguous lookup in group {group}: entries {a:?} and {b:?} tie at priority {priority}"
    )]
    Ambiguous {
        /// The group.
        group: u32,
        /// The priority.
        priority: u32,
        /// One action.
        a: HwAction,
        /// The other.
        b: HwAction,
    },
}

/// The simulated device.
pub struct SimNic {
    profile: Profile,
    groups: Vec<Vec<HwEntry>>,
    capacity: u64,
    used: u64,
    insertion_rate: u64,
}

fn kind_of_mask32(mask: u32) -> MatchKind {
    match mask {
        0 => MatchKind::None,
        u32::MAX => MatchKind::Exact,
        m if m.leading_ones() + m.trailing_zeros() == 32 => MatchKind::Prefix,
        _ => MatchKind::AnyMask,
    }
}

fn kind_of_mask16(mask: u16) -> MatchKind {
    match mask {
        0 => MatchKind::None,
        u16::MAX => MatchKind::Exact,
        m if m.leading_ones() + m.trailing_zeros() == 16 => MatchKind::Prefix,
        _ => MatchKind::AnyMask,
    }
}

impl SimNic {
    /// An empty device of `profile`.
    pub fn new(profile: &Profile) -> Result<Self, NicError> {
        if profile.is_software_only() {
            return Err(NicError::SoftwareOnly(profile.name().to_string()));
        }
        let engine = crate::plan::engine_for(profile)
            .ok_or_else(|| NicError::SoftwareOnly(profile.name().to_string()))?;
        Ok(Self {
            groups: vec![Vec::new(); profile.max_groups() as usize],
            capacity: engine.capacity.get(),
            insertion_rate: engine.insertion_rate.get().max(1),
            used: 0,
            profile: profile.clone(),
        })
    }

    /// Entries held.
    pub fn len(&self) -> u64 {
        self.used
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// How long inserting `n` entries takes at the profile's insertion rate, in seconds.
    pub fn insertion_seconds(&self, n: u64) -> f64 {
        n as f64 / self.insertion_rate as f64
    }

    fn refuse(&self, problem: String) -> NicError {
        NicError::Refused {
            profile: self.profile.name().to_string(),
            problem,
        }
    }

    fn check_field(&self, field: MatchField, needs: MatchKind) -> Result<(), NicError> {
        let engine = crate::plan::engine_for(&self.profile).expect("checked at construction");
        let has = engine.match_kind(field);
        if needs != MatchKind::None && !has.covers(needs) {
            return Err(self.refuse(format!(
                "{field} needs {needs} matching; the device offers {has}"
            )));
        }
        Ok(())
    }

    /// Inserts one entry, as rte_flow_create would.
    pub fn insert(&mut self, e: HwEntry) -> Result<(), NicError> {
        let groups = self.profile.max_groups();
        if e.group >= groups {
            return Err(self.refuse(format!(
                "group {} does not exist (the device has {groups})",
                e.group
            )));
        }
        let levels = self.profile.priorities(e.group);
        if e.priority >= levels {
            return Err(self.refuse(format!(
                "priority {} in group {} (the group has {levels} levels)",
                e.priority, e.group
            )));
        }
        let action = match e.action {
            HwAction::Mark(_) => Action::Mark,
            HwAction::Jump(target) => {
                if !self.profile.supports_jump() || target >= groups {
                    return Err(self.refuse(format!("jump to group {target} is not possible")));
                }
                Action::Jump
            }
        };
        if !self.profile.action_allowed_in_group(action, e.group) {
            return Err(self.refuse(format!(
                "action {action} is not allowed in group {}",
                e.group
            )));
        }
        let p = &e.pattern;
        self.check_field(
            MatchField::Ipv4Src,
            p.src
                .map_or(MatchKind::None, |m: Masked<u32>| kind_of_mask32(m.mask)),
        )?;
        self.check_field(
            MatchField::Ipv4Dst,
            p.dst.map_or(MatchKind::None, |m| kind_of_mask32(m.mask)),
        )?;
        if p.proto.is_some() {
            self.check_field(MatchField::Ipv4Proto, MatchKind::Exact)?;
        }
        if p.sport.is_some() || p.dport.is_some() {
            let (sf, df) = match p.proto {
                Some(6) => (MatchField::TcpSrcPort, MatchField::TcpDstPort),
                Some(17) => (MatchField::UdpSrcPort, MatchField::UdpDstPort),
                Some(132) => (MatchField::SctpSrcPort, MatchField::SctpDstPort),
                other => {
                    return Err(self.refuse(format!(
                        "L4 ports need a TCP, UDP or SCTP item; protocol is {other:?}"
                    )));
                }
            };
            self.check_field(
                sf,
                p.sport.map_or(MatchKind::None, |m| kind_of_mask16(m.mask)),
            )?;
            self.check_field(
                df,
                p.dport.map_or(MatchKind::None, |m| kind_of_mask16(m.mask)),
            )?;
        }
        if self.used >= self.capacity {
            return Err(NicError::Full {
                profile: self.profile.name().to_string(),
                capacity: self.capacity,
            });
        }
        self.groups[e.group as usize].push(e);
        self.used += 1;
        Ok(())
    }

    /// The device's answer for a packet: the mark of the entry it ends on, if any.
    pub fn lookup(&self, k: &Key<u32>) -> Result<Option<u32>, NicError> {
        let mut group = 0u32;
        // A jump chain longer than the number of groups is a loop.
        for _ in 0..=self.groups.len() {
            let mut best: Option<&HwEntry> = None;
            for e in &self.groups[group as usize] {
                if !e.pattern.matches(k) {
                    continue;
                }
                match best {
                    Some(b) if b.priority < e.priority => {}
                    Some(b) if b.priority == e.priority && b.action != e.action => {
                        return Err(NicError::Ambiguous {
                            group,
                            priority: e.priority,
                            a: b.action,
                            b: e.action,
                        });
                    }
                    Some(b) if b.priority == e.priority => {}
                    _ => best = Some(e),
                }
            }
            match best.map(|e| e.action) {
                None => return Ok(None),
                Some(HwAction::Mark(id)) => return Ok(Some(id)),
                Some(HwAction::Jump(next)) => group = next,
            }
        }
        Err(self.refuse("jump loop".into()))
    }
}
