//! A checked profile and the questions the offload planner asks it.

use crate::fact::{Fact, FactRef};
use crate::model::{
    Action, Api, DeviceKind, Engine, GroupLimits, Identity, MatchField, MatchKind, Offload, PciId,
    PortRangeStrategy, RteFlowApis,
};

/// One device's offload capabilities, every value with its provenance.
///
/// Only the loader builds a `Profile` ([`crate::load_str`], [`crate::load_file`],
/// [`crate::builtin`]), so every instance has passed its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    name: String,
    kind: DeviceKind,
    summary: String,
    origin: String,
    identity: Identity,
    rte_flow: RteFlowApis,
    offload: Option<Offload>,
}

impl Profile {
    pub(crate) fn new(
        name: String,
        kind: DeviceKind,
        summary: String,
        origin: String,
        identity: Identity,
        rte_flow: RteFlowApis,
        offload: Option<Offload>,
    ) -> Self {
        Profile {
            name,
            kind,
            summary,
            origin,
            identity,
            rte_flow,
            offload,
        }
    }

    /// The profile's name (`connectx-6-dx`, `sim-small`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Real device or simulated NIC.
    pub fn kind(&self) -> DeviceKind {
        self.kind
    }

    /// One sentence about the device.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// Where the profile was loaded from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Vendor, model, PCI IDs, PMD and DPDK release.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Which rte_flow APIs the PMD implements.
    pub fn rte_flow(&self) -> &RteFlowApis {
        &self.rte_flow
    }

    /// What the hardware can hold; `None` for a software-only profile.
    pub fn offload(&self) -> Option<&Offload> {
        self.offload.as_ref()
    }

    /// True when no rule can be offloaded: everything stays in the software classifier.
    pub fn is_software_only(&self) -> bool {
        self.offload.is_none()
    }

    /// True when the PMD binds to this PCI function. `subsystem_device` only matters for
    /// profiles that list one (cnxk tells CN9K from CN10K by it).
    pub fn matches_pci(&self, vendor: u16, device: u16, subsystem_device: Option<u16>) -> bool {
        self.identity.pci_ids.value().iter().any(|id: &PciId| {
            id.vendor == vendor
                && id.device == device
                && id
                    .subsystem_device
                    .is_none_or(|sub| subsystem_device == Some(sub))
        })
    }

    /// The classification engines (empty for a software-only profile).
    pub fn engines(&self) -> &[Engine] {
        self.offload.as_ref().map_or(&[], |o| o.engines.as_slice())
    }

    /// The engine with this name.
    pub fn engine(&self, name: &str) -> Option<&Engine> {
        self.engines().iter().find(|e| e.name == name)
    }

    /// The engines programmed through one API.
    pub fn engines_for(&self, api: Api) -> impl Iterator<Item = &Engine> {
        self.engines().iter().filter(move |e| e.api.get() == api)
    }

    /// The best match kind any engine offers for the field (`None` for software-only).
    pub fn match_kind(&self, field: MatchField) -> MatchKind {
        self.engines()
            .iter()
            .map(|e| e.match_kind(field))
            .max()
            .unwrap_or(MatchKind::None)
    }

    /// True when some engine can match `item.field` at least as precisely as `kind`.
    pub fn supports(&self, field: MatchField, kind: MatchKind) -> bool {
        self.match_kind(field).covers(kind)
    }

    /// True when some engine supports the action.
    pub fn supports_action(&self, action: Action) -> bool {
        self.engines().iter().any(|e| e.supports_action(action))
    }

    /// How the planner expands L4 port ranges (`None` for software-only).
    pub fn port_range_strategy(&self) -> Option<PortRangeStrategy> {
        self.offload.as_ref().map(|o| o.port_ranges.get())
    }

    /// Number of usable groups, `0..max_groups()` (0 for software-only).
    pub fn max_groups(&self) -> u32 {
        self.offload.as_ref().map_or(0, |o| o.groups.count.get())
    }

    /// Whether rules can jump between groups.
    pub fn supports_jump(&self) -> bool {
        self.offload.as_ref().is_some_and(|o| o.groups.jump.get())
    }

    /// The limits of one group, `None` when the group does not exist.
    pub fn group_limits(&self, group: u32) -> Option<&GroupLimits> {
        self.offload.as_ref().and_then(|o| o.groups.limits(group))
    }

    /// Priority levels usable in a group (0 when the group does not exist).
    pub fn priorities(&self, group: u32) -> u32 {
        self.group_limits(group).map_or(0, |l| l.priorities.get())
    }

    /// True when some engine supports the action and the group does not refuse it.
    pub fn action_allowed_in_group(&self, action: Action, group: u32) -> bool {
        self.supports_action(action)
            && self
                .group_limits(group)
                .is_some_and(|limits| !limits.refuses(action))
    }

    /// Rules the engines of one API hold together (engines of the same API work side by
    /// side; the two APIs are alternatives).
    pub fn capacity(&self, api: Api) -> u64 {
        self.engines_for(api).map(|e| e.capacity.get()).sum()
    }

    /// Connections the hardware can track (0: none).
    pub fn conntrack_capacity(&self) -> u64 {
        self.offload
            .as_ref()
            .map_or(0, |o| o.conntrack.capacity.get())
    }

    /// Every fact of the profile with its path, in file order.
    pub fn facts(&self) -> Vec<FactRef<'_>> {
        let mut out = Facts(Vec::new());
        let id = &self.identity;
        out.add("identity.vendor", &id.vendor, false);
        out.add("identity.model", &id.model, false);
        out.add_text(
            "identity.pci_ids",
            join(id.pci_ids.value()),
            &id.pci_ids,
            true,
        );
        out.add("identity.pmd", &id.pmd, false);
        out.add("identity.dpdk", &id.dpdk, false);
        out.add("rte_flow.sync", &self.rte_flow.sync, false);
        out.add("rte_flow.template", &self.rte_flow.template, false);
        let Some(o) = &self.offload else {
            return out.0;
        };
        out.add("offload.groups.count", &o.groups.count, true);
        out.add("offload.groups.jump", &o.groups.jump, false);
        for (path, limits) in [
            ("offload.groups.root", Some(&o.groups.root)),
            ("offload.groups.non_root", o.groups.non_root.as_ref()),
        ] {
            let Some(limits) = limits else { continue };
            out.add(format!("{path}.priorities"), &limits.priorities, true);
            if let Some(refused) = &limits.unsupported_actions {
                let text = join(refused.value());
                out.add_text(format!("{path}.unsupported_actions"), text, refused, false);
            }
        }
        out.add("offload.port_ranges", &o.port_ranges, false);
        out.add("offload.conntrack.capacity", &o.conntrack.capacity, true);
        for (i, e) in o.engines.iter().enumerate() {
            let base = format!("offload.engines[{i}]");
            out.add(format!("{base}.api"), &e.api, false);
            out.add(format!("{base}.capacity"), &e.capacity, true);
            out.add(format!("{base}.insertion_rate"), &e.insertion_rate, true);
            if let Some(d) = &e.devargs {
                out.add_text(format!("{base}.devargs"), d.value().join(", "), d, false);
            }
            for field in MatchField::ALL {
                out.add(
                    format!("{base}.matches.{field}"),
                    e.matches.fact(field),
                    false,
                );
            }
            for action in Action::ALL {
                out.add(
                    format!("{base}.actions.{action}"),
                    e.actions.fact(action),
                    false,
                );
            }
            if let Some(f) = &e.uniform_field_set {
                out.add(format!("{base}.uniform_field_set"), f, false);
            }
            if let Some(f) = &e.max_mask_layouts {
                out.add(format!("{base}.max_mask_layouts"), f, true);
            }
            if let Some(f) = &e.incompatible {
                let text = f
                    .value()
                    .iter()
                    .map(|r| format!("[{}] with [{}]", join(&r.fields), join(&r.with)))
                    .collect::<Vec<_>>()
                    .join("; ");
                out.add_text(format!("{base}.incompatible"), text, f, false);
            }
        }
        out.0
    }

    /// The facts that are estimates rather than sourced.
    pub fn estimates(&self) -> Vec<FactRef<'_>> {
        self.facts()
            .into_iter()
            .filter(|f| f.provenance.is_estimate())
            .collect()
    }
}

/// Collects [`FactRef`]s for [`Profile::facts`].
struct Facts<'a>(Vec<FactRef<'a>>);

impl<'a> Facts<'a> {
    fn add<T: ToString>(&mut self, path: impl Into<String>, fact: &'a Fact<T>, numeric: bool) {
        self.add_text(path, fact.value().to_string(), fact, numeric);
    }

    fn add_text<T>(
        &mut self,
        path: impl Into<String>,
        value: String,
        fact: &'a Fact<T>,
        numeric: bool,
    ) {
        self.0.push(FactRef {
            path: path.into(),
            value,
            numeric,
            provenance: fact.provenance(),
            note: fact.note(),
        });
    }
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
