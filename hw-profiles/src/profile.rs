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
    pub fn facts<'a>(&'a self) -> Vec<FactRef<'a>> {
        let mut out: Vec<FactRef<'_>> = Vec::new();
        let mut push = |path: String, value: String, numeric: bool, fact: FactView<'a>| {
            out.push(FactRef {
                path,
                value,
                numeric,
                provenance: fact.0,
                note: fact.1,
            });
        };
        let id = &self.identity;
        push(
            "identity.vendor".into(),
            id.vendor.value().clone(),
            false,
            view(&id.vendor),
        );
        push(
            "identity.model".into(),
            id.model.value().clone(),
            false,
            view(&id.model),
        );
        push(
            "identity.pci_ids".into(),
            id.pci_ids
                .value()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            true,
            view(&id.pci_ids),
        );
        push(
            "identity.pmd".into(),
            id.pmd.value().clone(),
            false,
            view(&id.pmd),
        );
        push(
            "identity.dpdk".into(),
            id.dpdk.value().clone(),
            false,
            view(&id.dpdk),
        );
        push(
            "rte_flow.sync".into(),
            self.rte_flow.sync.get().to_string(),
            false,
            view(&self.rte_flow.sync),
        );
        push(
            "rte_flow.template".into(),
            self.rte_flow.template.get().to_string(),
            false,
            view(&self.rte_flow.template),
        );
        let Some(o) = &self.offload else {
            return out;
        };
        push(
            "offload.groups.count".into(),
            o.groups.count.get().to_string(),
            true,
            view(&o.groups.count),
        );
        push(
            "offload.groups.jump".into(),
            o.groups.jump.get().to_string(),
            false,
            view(&o.groups.jump),
        );
        for (path, limits) in [
            ("offload.groups.root", Some(&o.groups.root)),
            ("offload.groups.non_root", o.groups.non_root.as_ref()),
        ] {
            let Some(limits) = limits else { continue };
            push(
                format!("{path}.priorities"),
                limits.priorities.get().to_string(),
                true,
                view(&limits.priorities),
            );
            if let Some(refused) = &limits.unsupported_actions {
                push(
                    format!("{path}.unsupported_actions"),
                    join(refused.value()),
                    false,
                    view(refused),
                );
            }
        }
        push(
            "offload.port_ranges".into(),
            o.port_ranges.get().to_string(),
            false,
            view(&o.port_ranges),
        );
        push(
            "offload.conntrack.capacity".into(),
            o.conntrack.capacity.get().to_string(),
            true,
            view(&o.conntrack.capacity),
        );
        for (i, e) in o.engines.iter().enumerate() {
            let base = format!("offload.engines[{i}]");
            push(
                format!("{base}.api"),
                e.api.get().to_string(),
                false,
                view(&e.api),
            );
            push(
                format!("{base}.capacity"),
                e.capacity.get().to_string(),
                true,
                view(&e.capacity),
            );
            push(
                format!("{base}.insertion_rate"),
                e.insertion_rate.get().to_string(),
                true,
                view(&e.insertion_rate),
            );
            if let Some(d) = &e.devargs {
                push(
                    format!("{base}.devargs"),
                    d.value().join(", "),
                    false,
                    view(d),
                );
            }
            for field in MatchField::ALL {
                let f = e.matches.fact(field);
                push(
                    format!("{base}.matches.{field}"),
                    f.get().to_string(),
                    false,
                    view(f),
                );
            }
            for action in Action::ALL {
                let f = e.actions.fact(action);
                push(
                    format!("{base}.actions.{action}"),
                    f.get().to_string(),
                    false,
                    view(f),
                );
            }
            if let Some(f) = &e.uniform_field_set {
                push(
                    format!("{base}.uniform_field_set"),
                    f.get().to_string(),
                    false,
                    view(f),
                );
            }
            if let Some(f) = &e.max_mask_layouts {
                push(
                    format!("{base}.max_mask_layouts"),
                    f.get().to_string(),
                    true,
                    view(f),
                );
            }
            if let Some(f) = &e.incompatible {
                let text = f
                    .value()
                    .iter()
                    .map(|r| format!("[{}] with [{}]", join(&r.fields), join(&r.with)))
                    .collect::<Vec<_>>()
                    .join("; ");
                push(format!("{base}.incompatible"), text, false, view(f));
            }
        }
        out
    }

    /// The facts that are estimates rather than sourced.
    pub fn estimates(&self) -> Vec<FactRef<'_>> {
        self.facts()
            .into_iter()
            .filter(|f| f.provenance.is_estimate())
            .collect()
    }
}

type FactView<'a> = (&'a crate::fact::Provenance, Option<&'a str>);

fn view<T>(fact: &Fact<T>) -> FactView<'_> {
    (fact.provenance(), fact.note())
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
