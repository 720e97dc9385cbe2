//! A device program compiled for the fast path: the same verdicts as the reference
//! interpreter (`DeviceProgram::evaluate`), from one tuple-space lookup per tier decision.
//!
//! Each program rule becomes engine entries — one per (remote prefix, port range pair) —
//! tagged with the direction and restricted to the rule's local endpoints (a set the engine
//! keeps as a bitmap), so an egress entry is `src = any, dst = remote prefix` and an
//! ingress one the other way round. Entries take priorities in program order: tier by
//! tier, rule by rule; after a tier's rules come its defaults (allow or deny, one entry per
//! action and direction, restricted to the endpoints having it), matching any remote. A
//! side is judged by looking up the best entry for the local endpoint; a `next-tier` rule
//! restarts the lookup at the next tier's first priority. No entry at all means every tier
//! passed: allowed.
//!
//! [`flatten`] gives the address-expanded form instead — one row per local address too —
//! for consumers without endpoint sets, such as a NIC's flow tables.

use std::collections::HashMap;
use std::net::IpAddr;

use palisade_program::{Action, DeviceProgram, Direction, Packet, PortRange, Prefix, TierKind};

use crate::engine::{ANY_LOCAL, Addr, Engine, Key, Options, Rule, UpdateError};

/// What a flattened row stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Rule `rule` of the program's tier number `tier`.
    Rule {
        /// Index of the tier in the program.
        tier: u16,
        /// Index of the rule in the tier.
        rule: u32,
    },
    /// The default of the program's tier number `tier` for one endpoint and direction.
    Default {
        /// Index of the tier in the program.
        tier: u16,
        /// Allow or deny.
        action: Action,
    },
}

/// A device program as flat engine rows: `(rule, priority, entry)` where `entry` indexes
/// [`Flattened::entries`]. Rows are tagged with the direction (1 egress, 0 ingress).
/// [`flatten`]'s rows name local addresses and apply to any local endpoint
/// ([`ANY_LOCAL`]).
#[derive(Clone, Debug, Default)]
pub struct Flattened {
    /// IPv4 rows.
    pub v4: Vec<(Rule<u32>, u32, u32)>,
    /// IPv6 rows.
    pub v6: Vec<(Rule<u128>, u32, u32)>,
    /// What each entry stands for.
    pub entries: Vec<Entry>,
    /// First priority of each tier, plus one past the last.
    pub tier_start: Vec<u32>,
    /// The local-endpoint sets rows are restricted to (`Rule::locals` indexes it); empty
    /// in the address-expanded form.
    pub local_sets: Vec<Vec<u32>>,
}

/// The row tag of a direction.
pub fn direction_tag(direction: Direction) -> u8 {
    tag(direction)
}

/// How a side was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decided {
    /// A rule with action allow or deny: (tier, rule index in the tier).
    Rule(TierKind, usize),
    /// A tier's default for the endpoint.
    Default(TierKind, Action),
    /// Every tier passed the connection on.
    EndOfTiers,
}

/// One judged side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Side {
    /// The local endpoint (index in the program).
    pub endpoint: u32,
    /// Egress for the source, ingress for the destination.
    pub direction: Direction,
    /// Whether the side lets the connection through (an audited deny does).
    pub allowed: bool,
    /// What decided.
    pub decided: Decided,
    /// `next-tier` rules that matched on the way: (tier, rule index).
    pub passed: Vec<(TierKind, usize)>,
}

/// A connection's judgement on this device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    /// Whether the device lets it through.
    pub allowed: bool,
    /// The source's egress side, then the destination's ingress side, for local ends.
    pub sides: Vec<Side>,
}

/// A device program ready for classification.
pub struct ProgramClassifier {
    program: DeviceProgram,
    v4: Engine<u32>,
    v6: Engine<u128>,
    /// The entry of each engine row.
    v4_entries: Vec<u32>,
    v6_entries: Vec<u32>,
    entries: Vec<Entry>,
    /// First priority of each tier index, plus one past the last.
    tier_start: Vec<u32>,
    local: HashMap<IpAddr, u32>,
}

const EGRESS: u8 = 1;
const INGRESS: u8 = 0;

fn tag(direction: Direction) -> u8 {
    match direction {
        Direction::Egress => EGRESS,
        Direction::Ingress => INGRESS,
    }
}

/// Port ranges as engine pairs; an empty list means any.
fn ranges(list: &[PortRange]) -> Vec<(u16, u16)> {
    if list.is_empty() {
        vec![(0, u16::MAX)]
    } else {
        list.iter().map(|r| (r.lo(), r.hi())).collect()
    }
}

fn v4_prefix(p: &Prefix) -> Option<(u32, u8)> {
    match p.addr() {
        IpAddr::V4(a) => Some((u32::from(a), p.len())),
        IpAddr::V6(_) => None,
    }
}

fn v6_prefix(p: &Prefix) -> Option<(u128, u8)> {
    match p.addr() {
        IpAddr::V6(a) => Some((u128::from(a), p.len())),
        IpAddr::V4(_) => None,
    }
}

/// Rows of one family, gathered before building its engine: (rule, priority, entry).
struct Family<A: Addr> {
    rules: Vec<(Rule<A>, u32, u32)>,
}

/// Builds a family's engine (row number as id) and gives each row's entry.
fn build_family<A: Addr>(
    rules: Vec<(Rule<A>, u32, u32)>,
    local_sets: &[Vec<u32>],
) -> Result<(Engine<A>, Vec<u32>), UpdateError> {
    let entries = rules.iter().map(|(_, _, e)| *e).collect();
    let options = Options {
        local_sets: local_sets.to_vec(),
        key_dport: true,
    };
    let engine = Engine::build_with(
        &options,
        rules
            .into_iter()
            .enumerate()
            .map(|(row, (r, p, _))| (r, p, row as u32)),
    )?;
    Ok((engine, entries))
}

/// Local-endpoint sets, deduplicated.
#[derive(Default)]
struct LocalSets {
    index: HashMap<Vec<u32>, u32>,
    sets: Vec<Vec<u32>>,
}

impl LocalSets {
    fn get(&mut self, endpoints: &[u32]) -> u32 {
        if let Some(&i) = self.index.get(endpoints) {
            return i;
        }
        let i = self.sets.len() as u32;
        self.sets.push(endpoints.to_vec());
        self.index.insert(endpoints.to_vec(), i);
        i
    }
}

impl<A: Addr> Family<A> {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        direction: Direction,
        local: (A, u8),
        remote: (A, u8),
        sport: (u16, u16),
        dport: (u16, u16),
        proto: (u8, u8),
        locals: u32,
        priority: u32,
        id: u32,
    ) {
        let (src, dst) = match direction {
            Direction::Egress => (local, remote),
            Direction::Ingress => (remote, local),
        };
        self.rules.push((
            Rule {
                tag: tag(direction),
                src,
                dst,
                sport,
                dport,
                proto,
                locals,
            },
            priority,
            id,
        ));
    }
}

/// Flattens a program into engine rows: one per (rule, local address, remote prefix, port
/// range pair), plus each tier's non-fall-through defaults after its rules.
pub fn flatten(program: &DeviceProgram) -> Flattened {
    flatten_with(program, false)
}

/// Flattens a program; `by_endpoint` restricts rows to local-endpoint sets instead of
/// naming every local address, and groups a tier's defaults by action.
fn flatten_with(program: &DeviceProgram, by_endpoint: bool) -> Flattened {
    let mut v4 = Family::<u32> { rules: Vec::new() };
    let mut v6 = Family::<u128> { rules: Vec::new() };
    let mut sets = LocalSets::default();
    let mut entries = Vec::new();
    let mut tier_start = Vec::new();
    let mut priority = 0u32;
    let endpoints = program.endpoints();
    // The local side of a row: each local address, or any address of the endpoint set.
    let mut locals = |list: &[u32]| -> Vec<(Option<IpAddr>, u32)> {
        if by_endpoint {
            vec![(None, sets.get(list))]
        } else {
            list.iter()
                .flat_map(|&e| endpoints[e as usize].addresses.iter())
                .map(|a| (Some(*a), ANY_LOCAL))
                .collect()
        }
    };
    for (ti, tier) in program.tiers().iter().enumerate() {
        tier_start.push(priority);
        for (ri, rule) in tier.rules.iter().enumerate() {
            let id = entries.len() as u32;
            entries.push(Entry::Rule {
                tier: ti as u16,
                rule: ri as u32,
            });
            let proto = rule.protocol.map_or((0, 0), |p| (p.0, u8::MAX));
            let remote: Vec<Prefix> = match rule.remote {
                None => vec![Prefix::ANY_V4, Prefix::ANY_V6],
                Some(s) => program.address_sets()[s as usize]
                    .prefixes
                    .prefixes()
                    .to_vec(),
            };
            let sports = ranges(&rule.src_ports);
            let dports = ranges(&rule.dst_ports);
            if rule.endpoints.is_empty() {
                priority += 1;
                continue;
            }
            for (local, set) in locals(&rule.endpoints) {
                for r in &remote {
                    for &sp in &sports {
                        for &dp in &dports {
                            let (d, p) = (rule.direction, priority);
                            match (local, v4_prefix(r), v6_prefix(r)) {
                                (None | Some(IpAddr::V4(_)), Some(r), _) => {
                                    let l = local.and_then(|a| v4_prefix(&Prefix::host(a)));
                                    v4.push(d, l.unwrap_or((0, 0)), r, sp, dp, proto, set, p, id)
                                }
                                (None | Some(IpAddr::V6(_)), _, Some(r)) => {
                                    let l = local.and_then(|a| v6_prefix(&Prefix::host(a)));
                                    v6.push(d, l.unwrap_or((0, 0)), r, sp, dp, proto, set, p, id)
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
            priority += 1;
        }
        // The tier's defaults, after its rules: per endpoint and direction, or per action
        // and direction for the endpoints having it.
        for direction in [Direction::Ingress, Direction::Egress] {
            let mut groups: Vec<(Action, Vec<u32>)> = Vec::new();
            for (e, defaults) in tier.defaults.iter().enumerate() {
                let action = defaults.get(direction);
                if action == Action::NextTier {
                    continue;
                }
                match groups.iter_mut().find(|(a, _)| by_endpoint && *a == action) {
                    Some((_, list)) => list.push(e as u32),
                    None => groups.push((action, vec![e as u32])),
                }
            }
            for (action, list) in groups {
                let id = entries.len() as u32;
                entries.push(Entry::Default {
                    tier: ti as u16,
                    action,
                });
                let any = ((0, u16::MAX), (0, u16::MAX), (0, 0));
                for (local, set) in locals(&list) {
                    let (d, p) = (direction, priority);
                    if let Some(l) = local.map_or(Some((0, 0)), |a| v4_prefix(&Prefix::host(a))) {
                        v4.push(d, l, (0, 0), any.0, any.1, any.2, set, p, id);
                    }
                    if let Some(l) = local.map_or(Some((0, 0)), |a| v6_prefix(&Prefix::host(a))) {
                        v6.push(d, l, (0, 0), any.0, any.1, any.2, set, p, id);
                    }
                }
            }
        }
        priority += 1;
    }
    tier_start.push(priority);
    Flattened {
        v4: v4.rules,
        v6: v6.rules,
        entries,
        tier_start,
        local_sets: sets.sets,
    }
}

impl ProgramClassifier {
    /// Compiles a program for classification.
    pub fn new(program: DeviceProgram) -> Result<Self, UpdateError> {
        let flat = flatten_with(&program, true);
        let endpoints = program.endpoints();
        let local = endpoints
            .iter()
            .enumerate()
            .flat_map(|(i, e)| e.addresses.iter().map(move |a| (*a, i as u32)))
            .collect();
        let (v4, v4_entries) = build_family(flat.v4, &flat.local_sets)?;
        let (v6, v6_entries) = build_family(flat.v6, &flat.local_sets)?;
        Ok(Self {
            program,
            v4,
            v6,
            v4_entries,
            v6_entries,
            entries: flat.entries,
            tier_start: flat.tier_start,
            local,
        })
    }

    /// The program.
    pub fn program(&self) -> &DeviceProgram {
        &self.program
    }

    /// Engine rows (v4 + v6): the size of the compiled form.
    pub fn rows(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Approximate heap memory of the compiled form, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.v4.memory_bytes()
            + self.v6.memory_bytes()
            + (self.v4_entries.len() + self.v6_entries.len()) * 4
    }

    /// The entry of the best row at or after `floor`.
    fn lookup(
        &self,
        endpoint: u32,
        direction: Direction,
        local: IpAddr,
        remote: IpAddr,
        p: &Packet,
        floor: u32,
    ) -> Option<Entry> {
        let (src, dst) = match direction {
            Direction::Egress => (local, remote),
            Direction::Ingress => (remote, local),
        };
        let (sport, dport) = if p.protocol.has_ports() {
            (p.src_port, p.dst_port)
        } else {
            (0, 0)
        };
        let row = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let key = Key {
                    tag: tag(direction),
                    src: u32::from(s),
                    dst: u32::from(d),
                    sport,
                    dport,
                    proto: p.protocol.0,
                    local: endpoint,
                };
                self.v4
                    .lookup_from(&key, floor)
                    .map(|m| self.v4_entries[m.id as usize])
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let key = Key {
                    tag: tag(direction),
                    src: u128::from(s),
                    dst: u128::from(d),
                    sport,
                    dport,
                    proto: p.protocol.0,
                    local: endpoint,
                };
                self.v6
                    .lookup_from(&key, floor)
                    .map(|m| self.v6_entries[m.id as usize])
            }
            _ => None,
        }?;
        Some(self.entries[row as usize])
    }

    /// Judges one side: the local endpoint owning `local` in `direction`.
    pub fn judge_side(&self, endpoint: u32, direction: Direction, packet: &Packet) -> Side {
        let (local, remote) = match direction {
            Direction::Egress => (packet.src, packet.dst),
            Direction::Ingress => (packet.dst, packet.src),
        };
        let tiers = self.program.tiers();
        let mut passed = Vec::new();
        let mut floor = 0;
        loop {
            let Some(entry) = self.lookup(endpoint, direction, local, remote, packet, floor) else {
                return Side {
                    endpoint,
                    direction,
                    allowed: true,
                    decided: Decided::EndOfTiers,
                    passed,
                };
            };
            match entry {
                Entry::Rule { tier, rule } => {
                    let t = &tiers[tier as usize];
                    let r = &t.rules[rule as usize];
                    match r.action {
                        Action::NextTier => {
                            passed.push((t.kind, rule as usize));
                            floor = self.tier_start[tier as usize + 1];
                        }
                        action => {
                            return Side {
                                endpoint,
                                direction,
                                allowed: action == Action::Allow || r.audit,
                                decided: Decided::Rule(t.kind, rule as usize),
                                passed,
                            };
                        }
                    }
                }
                Entry::Default { tier, action } => {
                    return Side {
                        endpoint,
                        direction,
                        allowed: action == Action::Allow,
                        decided: Decided::Default(tiers[tier as usize].kind, action),
                        passed,
                    };
                }
            }
        }
    }

    /// Judges the first packet of a connection: the source's egress and the destination's
    /// ingress where they are local; the program's foreign verdict otherwise.
    pub fn judge(&self, packet: &Packet) -> Judgement {
        let mut sides = Vec::new();
        if let Some(&e) = self.local.get(&packet.src) {
            sides.push(self.judge_side(e, Direction::Egress, packet));
        }
        if let Some(&e) = self.local.get(&packet.dst) {
            sides.push(self.judge_side(e, Direction::Ingress, packet));
        }
        let allowed = if sides.is_empty() {
            self.program.foreign() == Action::Allow
        } else {
            sides.iter().all(|s| s.allowed)
        };
        Judgement { allowed, sides }
    }
}
