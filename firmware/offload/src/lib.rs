//! Offload: which firewall rules a NIC's rte_flow tables can hold, and how.
//!
//! * [`plan()`] — (ordered rules, hardware profile) -> hardware entries + software remainder,
//!   with the reason for every rule left in software;
//! * [`plan_program`] — the same for a whole device program, direction by direction, with
//!   each program rule reported as in hardware, in software or split;
//! * [`SimNic`] — a simulated NIC enforcing a profile (groups, priorities, match kinds,
//!   capacity, insertion rate), the backend CI can run;
//! * [`Offloaded`] — hardware and software together: for every packet the same first match
//!   as the software classifier alone (property-tested for every profile).

mod entry;
mod plan;
mod program;
mod sim;

pub use entry::{HwAction, HwEntry, Masked, Pattern, port_blocks};
pub use plan::{Place, Placement, Plan, PlanError, PlanOptions, Reason, engine_for, overlap, plan};
pub use program::{ProgramPlan, RulePlace, RulePlacement, plan_program};
pub use sim::{NicError, SimNic};

use palisade_classifier::{Engine, Key, Rule, UpdateError};

/// A rule set split between a (simulated) NIC and the software classifier.
pub struct Offloaded {
    nic: Option<SimNic>,
    software: Engine<u32>,
    plan: Plan,
}

/// Why an offload could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    /// Planning failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The device refused an entry the planner produced (a planner bug: the plan must fit).
    #[error(transparent)]
    Nic(#[from] NicError),
    /// The software remainder did not build.
    #[error(transparent)]
    Software(#[from] UpdateError),
}

impl Offloaded {
    /// Plans `rules` for `profile`, installs the hardware part on a simulated NIC and builds
    /// the software remainder.
    pub fn new(
        rules: &[(Rule<u32>, u32, u32)],
        profile: &palisade_hw_profiles::Profile,
        options: PlanOptions,
    ) -> Result<Self, OffloadError> {
        let plan = plan(rules, profile, options)?;
        let nic = if plan.entries.is_empty() {
            None
        } else {
            let mut nic = SimNic::new(profile)?;
            for e in &plan.entries {
                nic.insert(*e)?;
            }
            Some(nic)
        };
        let in_software: std::collections::HashSet<u32> = plan.software_ids().collect();
        let software = Engine::build(
            rules
                .iter()
                .filter(|(_, _, id)| in_software.contains(id))
                .copied(),
        )?;
        Ok(Self {
            nic,
            software,
            plan,
        })
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The simulated NIC, when anything was offloaded.
    pub fn nic(&self) -> Option<&SimNic> {
        self.nic.as_ref()
    }

    /// The first matching rule's id: the better of the hardware's mark and the software
    /// remainder's match.
    pub fn lookup(&self, key: &Key<u32>) -> Result<Option<u32>, NicError> {
        let hw = match &self.nic {
            Some(nic) => nic.lookup(key)?,
            None => None,
        };
        let hw = hw.map(|id| (self.plan.priorities[&id], id));
        let sw = self.software.lookup(key).map(|m| (m.priority, m.id));
        Ok(match (hw, sw) {
            (Some(h), Some(s)) => Some(h.min(s).1),
            (h, s) => h.or(s).map(|(_, id)| id),
        })
    }
}
