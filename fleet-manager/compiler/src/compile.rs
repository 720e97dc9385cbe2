//! Lowered policy + inventory -> one device program per device, incrementally.
//!
//! A device's program holds exactly the rules whose local side includes one of its endpoints,
//! in the order of the lowered policy, with the local side narrowed to its endpoints and the
//! remote sides interned as address sets.
//!
//! Incremental compilation compares the new input with the previous one and rebuilds only
//! the programs of devices that can have changed:
//!
//! * devices that appeared, and devices whose endpoints appeared, vanished or changed address;
//! * for a rule added, removed or changed in anything but its local side: the devices of its
//!   local endpoints, before and after;
//! * for a rule whose local side alone changed: the devices of the endpoints that came or went;
//! * for rules that moved relative to the others: the devices of the moved rules;
//! * for defaults that changed: the devices of those endpoints.
//!
//! Every other device's subsequence of rules, endpoints and defaults is unchanged, so its
//! program is too. Tests check incremental results against full compiles.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use palisade_inventory::{EndpointId, InventoryIndex};
use palisade_program::{
    Action, AddressSet, DeviceProgram, Direction, Endpoint, FORMAT_VERSION, PrefixSet,
    ProgramError, ProgramParts, Rule, Tier, TierDefaults, TierKind,
};
use thiserror::Error;

use crate::ir::{IrRule, PolicyIr, RemoteSet, natural_default};

/// Why compilation failed. Front-ends validate their input, so this names a front-end bug
/// or an inconsistent input pair.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CompileError {
    /// A lowered rule refers to an endpoint the inventory does not have.
    #[error("rule `{rule}` refers to endpoint #{endpoint}, but the inventory has {count}")]
    UnknownEndpoint {
        /// The rule id.
        rule: String,
        /// The bad index.
        endpoint: EndpointId,
        /// How many endpoints there are.
        count: usize,
    },
    /// Two lowered rules share an id.
    #[error("two rules have the id `{0}`")]
    DuplicateRuleId(String),
    /// The program of a device did not validate.
    #[error("device {device}: {error}")]
    Program {
        /// The device.
        device: String,
        /// The validation error.
        error: ProgramError,
    },
}

/// Options that shape every program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// The verdict for packets that touch none of a device's endpoints.
    pub foreign: Action,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            foreign: Action::Allow,
        }
    }
}

/// The result of one compilation.
#[derive(Clone, Debug)]
pub struct Compilation {
    /// The current program of every device in the inventory, by device name.
    pub programs: BTreeMap<String, Arc<DeviceProgram>>,
    /// Devices whose program was rebuilt, sorted.
    pub recompiled: Vec<String>,
    /// Devices whose program content changed (or is new), sorted: these need a push.
    pub changed: Vec<String>,
    /// Devices that left the inventory, sorted.
    pub removed: Vec<String>,
}

struct Previous {
    index: Arc<InventoryIndex>,
    ir: Arc<PolicyIr>,
    defaults: Defaults,
    programs: BTreeMap<String, Arc<DeviceProgram>>,
}

/// Effective default overrides by (tier, endpoint, direction).
type Defaults = HashMap<(TierKind, EndpointId, Direction), Action>;

/// Compiles lowered policy into device programs, remembering the last input so the next
/// compilation only rebuilds what changed.
pub struct Compiler {
    options: CompileOptions,
    previous: Option<Previous>,
}

impl Compiler {
    /// A compiler with no history: the first compilation builds every program.
    pub fn new(options: CompileOptions) -> Self {
        Self {
            options,
            previous: None,
        }
    }

    /// Forgets history so the next compilation is a full one.
    pub fn reset(&mut self) {
        self.previous = None;
    }

    /// Compiles `ir` against `index`. Rebuilt programs that changed get `generation`; others
    /// keep theirs.
    pub fn compile(
        &mut self,
        index: Arc<InventoryIndex>,
        ir: Arc<PolicyIr>,
        generation: u64,
    ) -> Result<Compilation, CompileError> {
        check_ir(&index, &ir)?;
        let plan = Plan::new(&index, &ir);
        let devices = &index.inventory().devices;
        let affected: BTreeSet<usize> = match &self.previous {
            None => (0..devices.len()).collect(),
            Some(prev) => affected_devices(prev, &index, &ir, &plan.defaults),
        };
        let mut programs = BTreeMap::new();
        let mut recompiled = Vec::new();
        let mut changed = Vec::new();
        for (di, device) in devices.iter().enumerate() {
            let old = self
                .previous
                .as_ref()
                .and_then(|p| p.programs.get(&device.name));
            let program = match old {
                Some(old) if !affected.contains(&di) => Arc::clone(old),
                _ => {
                    recompiled.push(device.name.clone());
                    let fresh = plan.build(&index, &ir, di, generation, self.options)?;
                    match old {
                        Some(old) if old.hash() == fresh.hash() => Arc::clone(old),
                        _ => {
                            changed.push(device.name.clone());
                            Arc::new(fresh)
                        }
                    }
                }
            };
            programs.insert(device.name.clone(), program);
        }
        let removed = self
            .previous
            .as_ref()
            .map(|p| {
                p.programs
                    .keys()
                    .filter(|name| !programs.contains_key(*name))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        recompiled.sort();
        changed.sort();
        self.previous = Some(Previous {
            index,
            ir,
            defaults: plan.defaults,
            programs: programs.clone(),
        });
        Ok(Compilation {
            programs,
            recompiled,
            changed,
            removed,
        })
    }
}

/// Compiles from scratch, without keeping history.
pub fn compile_all(
    index: Arc<InventoryIndex>,
    ir: Arc<PolicyIr>,
    generation: u64,
    options: CompileOptions,
) -> Result<Compilation, CompileError> {
    Compiler::new(options).compile(index, ir, generation)
}

fn check_ir(index: &InventoryIndex, ir: &PolicyIr) -> Result<(), CompileError> {
    let count = index.endpoints().len();
    let mut ids = BTreeSet::new();
    for rule in &ir.rules {
        if let Some(&bad) = rule.local.iter().find(|&&e| e as usize >= count) {
            return Err(CompileError::UnknownEndpoint {
                rule: rule.id.clone(),
                endpoint: bad,
                count,
            });
        }
        if !ids.insert(rule.id.as_str()) {
            return Err(CompileError::DuplicateRuleId(rule.id.clone()));
        }
    }
    if let Some(d) = ir.defaults.iter().find(|d| d.endpoint as usize >= count) {
        return Err(CompileError::UnknownEndpoint {
            rule: format!("default of tier {}", d.tier),
            endpoint: d.endpoint,
            count,
        });
    }
    Ok(())
}

/// Per-compilation look-ups shared by every device's build.
struct Plan {
    /// For each device, the indices of the rules that touch it, tiers in order and each
    /// tier's rules in their relative order.
    rules_by_device: Vec<Vec<usize>>,
    /// The effective overrides, deny winning.
    defaults: Defaults,
    /// Devices with at least one override per tier.
    default_tiers_by_device: Vec<BTreeSet<TierKind>>,
    /// Content fingerprint of every remote set of the input.
    fingerprints: HashMap<*const RemoteSet, u64>,
}

fn effective_defaults(ir: &PolicyIr) -> Defaults {
    let mut out = HashMap::new();
    for d in &ir.defaults {
        let entry = out
            .entry((d.tier, d.endpoint, d.direction))
            .or_insert(d.action);
        if d.action == Action::Deny {
            *entry = Action::Deny;
        }
    }
    out.retain(|(tier, _, _), action| *action != natural_default(*tier));
    out
}

fn tier_ordered(ir: &PolicyIr) -> Vec<usize> {
    let mut order: Vec<usize> = (0..ir.rules.len()).collect();
    order.sort_by_key(|&i| ir.rules[i].tier);
    order
}

impl Plan {
    fn new(index: &InventoryIndex, ir: &PolicyIr) -> Self {
        let n_devices = index.inventory().devices.len();
        let mut rules_by_device = vec![Vec::new(); n_devices];
        let mut last_pushed = vec![usize::MAX; n_devices];
        for ri in tier_ordered(ir) {
            let rule = &ir.rules[ri];
            if rule.is_void() {
                continue;
            }
            for &e in rule.local.iter() {
                let d = index.endpoint(e).device;
                if last_pushed[d] != ri {
                    last_pushed[d] = ri;
                    rules_by_device[d].push(ri);
                }
            }
        }
        let defaults = effective_defaults(ir);
        let mut default_tiers_by_device = vec![BTreeSet::new(); n_devices];
        for (tier, e, _) in defaults.keys() {
            default_tiers_by_device[index.endpoint(*e).device].insert(*tier);
        }
        let mut fingerprints = HashMap::new();
        for rule in &ir.rules {
            if let Some(set) = &rule.remote {
                fingerprints
                    .entry(Arc::as_ptr(set))
                    .or_insert_with(|| fingerprint(&set.prefixes));
            }
        }
        Self {
            rules_by_device,
            defaults,
            default_tiers_by_device,
            fingerprints,
        }
    }

    fn build(
        &self,
        index: &InventoryIndex,
        ir: &PolicyIr,
        device: usize,
        generation: u64,
        options: CompileOptions,
    ) -> Result<DeviceProgram, CompileError> {
        let local_ids = index.device_endpoints(device);
        let endpoints: Vec<Endpoint> = local_ids
            .iter()
            .map(|&e| {
                let info = index.endpoint(e);
                Endpoint {
                    name: info.name.clone(),
                    addresses: info.addresses.clone(),
                }
            })
            .collect();
        let mut sets = SetInterner::new(&self.fingerprints);
        let mut tiers: Vec<Tier> = Vec::new();
        for &ri in &self.rules_by_device[device] {
            let r = &ir.rules[ri];
            // Both lists are sorted; walk the shorter one (a device has few endpoints, a
            // rule may have thousands).
            let local: Vec<u32> = if r.local.len() <= local_ids.len() {
                r.local
                    .iter()
                    .filter_map(|e| local_ids.binary_search(e).ok().map(|i| i as u32))
                    .collect()
            } else {
                local_ids
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| r.local.binary_search(e).is_ok())
                    .map(|(i, _)| i as u32)
                    .collect()
            };
            let remote = r.remote.as_ref().map(|s| sets.intern(s));
            if tiers.last().is_none_or(|t| t.kind != r.tier) {
                tiers.push(self.tier_shell(r.tier, local_ids));
            }
            let tier = tiers.last_mut().expect("pushed above");
            tier.rules.push(Rule {
                id: r.id.clone(),
                direction: r.direction,
                endpoints: local,
                remote,
                protocol: r.protocol,
                src_ports: r.src_ports.clone(),
                dst_ports: r.dst_ports.clone(),
                action: r.action,
                log: r.log,
                audit: r.audit,
                mirror: r.mirror.clone(),
                redirect: r.redirect.clone(),
            });
        }
        for &kind in &self.default_tiers_by_device[device] {
            if !tiers.iter().any(|t| t.kind == kind) {
                tiers.push(self.tier_shell(kind, local_ids));
            }
        }
        tiers.sort_by_key(|t| t.kind);
        let name = index.inventory().devices[device].name.clone();
        DeviceProgram::new(ProgramParts {
            format: FORMAT_VERSION,
            device: name.clone(),
            generation,
            endpoints,
            address_sets: sets.sets,
            tiers,
            foreign: options.foreign,
        })
        .map_err(|error| CompileError::Program {
            device: name,
            error,
        })
    }

    fn tier_shell(&self, kind: TierKind, local_ids: &[EndpointId]) -> Tier {
        let natural = natural_default(kind);
        let get = |e: EndpointId, d: Direction| {
            self.defaults.get(&(kind, e, d)).copied().unwrap_or(natural)
        };
        Tier {
            kind,
            rules: Vec::new(),
            defaults: local_ids
                .iter()
                .map(|&e| TierDefaults {
                    ingress: get(e, Direction::Ingress),
                    egress: get(e, Direction::Egress),
                })
                .collect(),
        }
    }
}

/// A cheap fingerprint of a set's content (FNV-1a over its prefixes), computed once per
/// compilation so per-device interning never rehashes big sets.
fn fingerprint(set: &PrefixSet) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in set.prefixes() {
        let bits = match p.addr() {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        for word in [bits as u64, (bits >> 64) as u64, u64::from(p.len())] {
            h = (h ^ word).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Interns remote sets per device: one address set per distinct content, named after its
/// first user, in order of first use.
struct SetInterner<'a> {
    fingerprints: &'a HashMap<*const RemoteSet, u64>,
    sets: Vec<AddressSet>,
    by_ptr: HashMap<*const RemoteSet, u32>,
    by_content: HashMap<u64, Vec<u32>>,
    names: HashMap<String, u32>,
}

impl<'a> SetInterner<'a> {
    fn new(fingerprints: &'a HashMap<*const RemoteSet, u64>) -> Self {
        Self {
            fingerprints,
            sets: Vec::new(),
            by_ptr: HashMap::new(),
            by_content: HashMap::new(),
            names: HashMap::new(),
        }
    }

    fn intern(&mut self, set: &Arc<RemoteSet>) -> u32 {
        let ptr = Arc::as_ptr(set);
        if let Some(&i) = self.by_ptr.get(&ptr) {
            return i;
        }
        let fp = self
            .fingerprints
            .get(&ptr)
            .copied()
            .unwrap_or_else(|| fingerprint(&set.prefixes));
        let same = self.by_content.get(&fp).and_then(|candidates| {
            candidates
                .iter()
                .copied()
                .find(|&i| self.sets[i as usize].prefixes == set.prefixes)
        });
        let i = match same {
            Some(i) => i,
            None => {
                let i = self.sets.len() as u32;
                let count = self.names.entry(set.name.clone()).or_insert(0);
                *count += 1;
                let name = if *count == 1 {
                    set.name.clone()
                } else {
                    format!("{}~{}", set.name, count)
                };
                self.sets.push(AddressSet {
                    name,
                    prefixes: set.prefixes.clone(),
                });
                self.by_content.entry(fp).or_default().push(i);
                i
            }
        };
        self.by_ptr.insert(ptr, i);
        i
    }
}

/// Where each endpoint of the previous inventory went, by name.
struct Renumbering {
    old_to_new: Vec<Option<EndpointId>>,
    identity: bool,
}

impl Renumbering {
    fn new(old: &InventoryIndex, new: &InventoryIndex) -> Self {
        let old_to_new: Vec<Option<EndpointId>> = old
            .endpoints()
            .iter()
            .map(|e| new.endpoint_by_name(&e.name))
            .collect();
        let identity = old_to_new.len() == new.endpoints().len()
            && old_to_new
                .iter()
                .enumerate()
                .all(|(i, n)| *n == Some(i as EndpointId));
        Self {
            old_to_new,
            identity,
        }
    }

    /// True when every endpoint kept its id.
    fn is_identity(&self) -> bool {
        self.identity
    }

    fn map(&self, old: EndpointId) -> Option<EndpointId> {
        self.old_to_new[old as usize]
    }
}

/// Whether two rules differ only in their local side. Remote sets are compared once per pair
/// of `Arc`s: the same set is typically shared by many rules.
fn same_except_local(
    a: &IrRule,
    b: &IrRule,
    same_sets: &mut HashMap<(*const RemoteSet, *const RemoteSet), bool>,
) -> bool {
    a.tier == b.tier
        && a.direction == b.direction
        && a.protocol == b.protocol
        && a.src_ports == b.src_ports
        && a.dst_ports == b.dst_ports
        && a.action == b.action
        && a.log == b.log
        && a.audit == b.audit
        && a.mirror == b.mirror
        && a.redirect == b.redirect
        && match (&a.remote, &b.remote) {
            (None, None) => true,
            (Some(x), Some(y)) => {
                Arc::ptr_eq(x, y)
                    || *same_sets
                        .entry((Arc::as_ptr(x), Arc::as_ptr(y)))
                        .or_insert_with(|| x == y)
            }
            _ => false,
        }
}

fn affected_devices(
    prev: &Previous,
    index: &InventoryIndex,
    ir: &PolicyIr,
    new_defaults: &Defaults,
) -> BTreeSet<usize> {
    let old_index = &prev.index;
    let old_ir = &prev.ir;
    let renumber = Renumbering::new(old_index, index);
    let mut affected = BTreeSet::new();
    let new_device_of_old = |old_e: EndpointId| {
        let name = &old_index.inventory().devices[old_index.endpoint(old_e).device].name;
        index.device_by_name(name)
    };

    // Devices that are new, and devices whose endpoint list or addresses changed.
    let old_devices: HashMap<&str, usize> = old_index
        .inventory()
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.as_str(), i))
        .collect();
    for (di, d) in index.inventory().devices.iter().enumerate() {
        let Some(&odi) = old_devices.get(d.name.as_str()) else {
            affected.insert(di);
            continue;
        };
        let old_eps: Vec<(&str, &[IpAddr])> = old_index
            .device_endpoints(odi)
            .iter()
            .map(|&e| {
                let info = old_index.endpoint(e);
                (info.name.as_str(), info.addresses.as_slice())
            })
            .collect();
        let new_eps: Vec<(&str, &[IpAddr])> = index
            .device_endpoints(di)
            .iter()
            .map(|&e| {
                let info = index.endpoint(e);
                (info.name.as_str(), info.addresses.as_slice())
            })
            .collect();
        if old_eps != new_eps {
            affected.insert(di);
        }
    }

    let mark_old = |affected: &mut BTreeSet<usize>, old_e: EndpointId| {
        if let Some(d) = new_device_of_old(old_e) {
            affected.insert(d);
        }
    };
    let old_by_id: HashMap<&str, &IrRule> =
        old_ir.rules.iter().map(|r| (r.id.as_str(), r)).collect();
    let new_by_id: HashMap<&str, &IrRule> = ir.rules.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut same_sets = HashMap::new();

    for rule in &ir.rules {
        match old_by_id.get(rule.id.as_str()) {
            None => {
                for &e in rule.local.iter() {
                    affected.insert(index.endpoint(e).device);
                }
            }
            Some(old) if !same_except_local(old, rule, &mut same_sets) => {
                for &e in old.local.iter() {
                    mark_old(&mut affected, e);
                }
                for &e in rule.local.iter() {
                    affected.insert(index.endpoint(e).device);
                }
            }
            Some(old) if renumber.is_identity() && old.local == rule.local => {}
            Some(old) => {
                // Only the local side differs: the devices of endpoints that came or went.
                // Walk both sorted lists (old ids renumbered) side by side.
                let mut old_mapped: Vec<(Option<EndpointId>, EndpointId)> =
                    old.local.iter().map(|&e| (renumber.map(e), e)).collect();
                old_mapped.sort_unstable();
                let (mut i, mut j) = (0, 0);
                while i < old_mapped.len() || j < rule.local.len() {
                    let o = old_mapped.get(i);
                    let n = rule.local.get(j);
                    match (o, n) {
                        (Some(&(Some(a), _)), Some(&b)) if a == b => {
                            i += 1;
                            j += 1;
                        }
                        (Some(&(mapped, old_e)), Some(&b)) if mapped.is_none_or(|a| a < b) => {
                            mark_old(&mut affected, old_e);
                            i += 1;
                        }
                        (Some(&(_, old_e)), None) => {
                            mark_old(&mut affected, old_e);
                            i += 1;
                        }
                        (_, Some(&b)) => {
                            affected.insert(index.endpoint(b).device);
                            j += 1;
                        }
                        (None, None) => unreachable!("loop condition"),
                    }
                }
            }
        }
    }
    for old in &old_ir.rules {
        if !new_by_id.contains_key(old.id.as_str()) {
            for &e in old.local.iter() {
                mark_old(&mut affected, e);
            }
        }
    }

    // Rules that kept their id but moved relative to the others, per tier.
    let old_order: Vec<&str> = tier_ordered(old_ir)
        .into_iter()
        .map(|i| old_ir.rules[i].id.as_str())
        .filter(|id| new_by_id.contains_key(id))
        .collect();
    let new_pos: HashMap<&str, usize> = tier_ordered(ir)
        .into_iter()
        .enumerate()
        .map(|(pos, i)| (ir.rules[i].id.as_str(), pos))
        .collect();
    let positions: Vec<usize> = old_order.iter().map(|id| new_pos[id]).collect();
    let kept = longest_increasing(&positions);
    for (k, id) in old_order.iter().enumerate() {
        if !kept[k] {
            for &e in new_by_id[id].local.iter() {
                affected.insert(index.endpoint(e).device);
            }
            for &e in old_by_id[id].local.iter() {
                mark_old(&mut affected, e);
            }
        }
    }

    // Defaults.
    if renumber.is_identity() {
        for (key @ (_, e, _), action) in new_defaults {
            if prev.defaults.get(key) != Some(action) {
                affected.insert(index.endpoint(*e).device);
            }
        }
        for key @ (_, e, _) in prev.defaults.keys() {
            if !new_defaults.contains_key(key) {
                mark_old(&mut affected, *e);
            }
        }
    } else {
        let named = |defaults: &Defaults,
                     idx: &'_ InventoryIndex|
         -> BTreeSet<(TierKind, String, Direction, Action)> {
            defaults
                .iter()
                .map(|(&(t, e, d), &a)| (t, idx.endpoint(e).name.clone(), d, a))
                .collect()
        };
        let old_named = named(&prev.defaults, old_index);
        let new_named = named(new_defaults, index);
        for (_, name, _, _) in old_named.symmetric_difference(&new_named) {
            if let Some(e) = index.endpoint_by_name(name) {
                affected.insert(index.endpoint(e).device);
            }
            if let Some(e) = old_index.endpoint_by_name(name) {
                mark_old(&mut affected, e);
            }
        }
    }
    affected
}

/// Marks a longest strictly increasing subsequence of `values` (patience sorting).
fn longest_increasing(values: &[usize]) -> Vec<bool> {
    let mut tails: Vec<usize> = Vec::new(); // indices into values
    let mut parent: Vec<Option<usize>> = vec![None; values.len()];
    for (i, &v) in values.iter().enumerate() {
        let pos = tails.partition_point(|&t| values[t] < v);
        if pos > 0 {
            parent[i] = Some(tails[pos - 1]);
        }
        if pos == tails.len() {
            tails.push(i);
        } else {
            tails[pos] = i;
        }
    }
    let mut keep = vec![false; values.len()];
    let mut cur = tails.last().copied();
    while let Some(i) = cur {
        keep[i] = true;
        cur = parent[i];
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_increasing_keeps_the_unmoved() {
        assert_eq!(longest_increasing(&[0, 1, 2]), vec![true, true, true]);
        assert_eq!(longest_increasing(&[2, 0, 1]), vec![false, true, true]);
        assert_eq!(longest_increasing(&[]), Vec::<bool>::new());
    }
}
