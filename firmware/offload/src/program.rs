//! Planning a whole device program: each direction's IPv4 rows are planned on their own
//! (hardware cannot match the direction) within a share of the device's capacity
//! proportional to its rows, and every program rule is reported as in hardware, in
//! software, or split (some of its rows in each).

use palisade_classifier::{Entry, Rule, direction_tag, flatten};
use palisade_hw_profiles::Profile;
use palisade_program::{DeviceProgram, Direction, TierKind};

use crate::plan::{Place, Plan, PlanError, PlanOptions, plan};

/// Where a program rule runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RulePlace {
    /// Every row in hardware.
    Hardware {
        /// Hardware entries.
        entries: u32,
    },
    /// Some rows in hardware, the rest in software.
    Split {
        /// Rows in hardware.
        hardware_rows: u32,
        /// Rows in software.
        software_rows: u32,
        /// Why the first software row stayed there.
        reason: String,
    },
    /// Every row in software.
    Software {
        /// Why (for the first row).
        reason: String,
    },
}

/// One program rule's placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulePlacement {
    /// Its tier.
    pub tier: TierKind,
    /// Its id.
    pub id: String,
    /// Where it runs.
    pub place: RulePlace,
}

/// A device program's plan.
#[derive(Clone, Debug)]
pub struct ProgramPlan {
    /// Egress rows (the workload-facing port's receive side), ids = row numbers.
    pub egress: Plan,
    /// Ingress rows (the fabric-facing port's receive side), ids = row numbers.
    pub ingress: Plan,
    /// The rows planned, per direction, as given to the planner.
    pub egress_rows: Vec<(Rule<u32>, u32, u32)>,
    /// Likewise for ingress.
    pub ingress_rows: Vec<(Rule<u32>, u32, u32)>,
    /// Per program rule, in program order.
    pub rules: Vec<RulePlacement>,
}

#[derive(Default, Clone)]
struct Tally {
    hw_rows: u32,
    sw_rows: u32,
    entries: u32,
    reason: Option<String>,
}

/// Plans a program for a profile.
pub fn plan_program(
    program: &DeviceProgram,
    profile: &Profile,
    options: PlanOptions,
) -> Result<ProgramPlan, PlanError> {
    let flat = flatten(program);
    let mut rows = [Vec::new(), Vec::new()];
    let mut row_entry = [Vec::new(), Vec::new()];
    for (rule, priority, entry) in &flat.v4 {
        let side = usize::from(rule.tag == direction_tag(Direction::Egress));
        let id = rows[side].len() as u32;
        rows[side].push((*rule, *priority, id));
        row_entry[side].push(*entry);
    }
    let [ingress_rows, egress_rows] = rows;
    // Both directions live in one device: ingress gets a share of its capacity in
    // proportion to its rows, egress whatever ingress left (no entry lost to rounding or to
    // a share ingress did not fill).
    let capacity = crate::plan::engine_for(profile).map_or(0, |e| e.capacity.get());
    let capacity = options.max_entries.map_or(capacity, |m| m.min(capacity));
    let total = (ingress_rows.len() + egress_rows.len()).max(1) as u64;
    let with = |max: u64| PlanOptions {
        max_entries: Some(max),
        ..options
    };
    let ingress = plan(
        &ingress_rows,
        profile,
        with(capacity * ingress_rows.len() as u64 / total),
    )?;
    let used: u64 = ingress
        .placements
        .iter()
        .map(|p| match p.place {
            Place::Hardware { entries, .. } => u64::from(entries),
            Place::Software(_) => 0,
        })
        .sum();
    let egress = plan(&egress_rows, profile, with(capacity.saturating_sub(used)))?;
    let mut tallies = vec![Tally::default(); flat.entries.len()];
    for (p, entries) in [(&ingress, &row_entry[0]), (&egress, &row_entry[1])] {
        for placement in &p.placements {
            let t = &mut tallies[entries[placement.id as usize] as usize];
            match &placement.place {
                Place::Hardware { entries, .. } => {
                    t.hw_rows += 1;
                    t.entries += entries;
                }
                Place::Software(reason) => {
                    t.sw_rows += 1;
                    t.reason.get_or_insert_with(|| reason.to_string());
                }
            }
        }
    }
    for (_, _, entry) in &flat.v6 {
        let t = &mut tallies[*entry as usize];
        t.sw_rows += 1;
        t.reason
            .get_or_insert_with(|| "IPv6 rows stay in software".into());
    }
    let mut rules = Vec::new();
    for (entry, t) in flat.entries.iter().zip(tallies) {
        let Entry::Rule { tier, rule } = *entry else {
            continue;
        };
        let tier = &program.tiers()[tier as usize];
        let place = match (t.hw_rows, t.sw_rows) {
            (0, 0) => RulePlace::Software {
                reason: "the rule has no IPv4 or IPv6 row on this device".into(),
            },
            (_, 0) => RulePlace::Hardware { entries: t.entries },
            (0, _) => RulePlace::Software {
                reason: t.reason.unwrap_or_default(),
            },
            (hw, sw) => RulePlace::Split {
                hardware_rows: hw,
                software_rows: sw,
                reason: t.reason.unwrap_or_default(),
            },
        };
        rules.push(RulePlacement {
            tier: tier.kind,
            id: tier.rules[rule as usize].id.clone(),
            place,
        });
    }
    Ok(ProgramPlan {
        egress,
        ingress,
        egress_rows,
        ingress_rows,
        rules,
    })
}
