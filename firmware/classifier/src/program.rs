//! A device program compiled for the fast path: the same verdicts as the reference
//! interpreter (`DeviceProgram::evaluate`), from one tuple-space lookup per tier decision.
//!
//! Each program rule becomes engine entries — one per (local address, remote prefix, port
//! range pair) — tagged with the direction, so an egress entry is `src = local address,
//! dst = remote prefix` and an ingress one the other way round. Entries take priorities in
//! program order: tier by tier, rule by rule; after a tier's rules come its per-endpoint
//! defaults (allow or deny), as entries matching any remote. A side is judged by looking up
//! the best entry; a `next-tier` rule restarts the lookup at the next tier's first
//! priority. No entry at all means every tier passed: allowed.

use std::collections::HashMap;
use std::net::IpAddr;

use palisade_program::{Action, DeviceProgram, Direction, Packet, PortRange, Prefix, TierKind};

use crate::engine::{Addr, Engine, Key, Rule, UpdateError};

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

impl<A: Addr> Family<A> {
    /// The engine (row number as id) and each row's entry.
    fn build(self) -> Result<(Engine<A>, Vec<u32>), UpdateError> {
        let entries = self.rules.iter().map(|(_, _, e)| *e).collect();
        let engine = Engine::build(
            self.rules
                .into_iter()
                .enumerate()
                .map(|(row, (r, p, _))| (r, p, row as u32)),
        )?;
        Ok((engine, entries))
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        direction: Direction,
        local: (A, u8),
        remote: (A, u8),
        sport: (u16, u16),
        dport: (u16, u16),
        proto: (u8, u8),
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
            },
            priority,
            id,
        ));
    }
}

/// Flattens a program into engine rows: one per (rule, local address, remote prefix, port
/// range pair), plus each tier's non-fall-through defaults after its rules.
pub fn flatten(program: &DeviceProgram) -> Flattened {
    let mut v4 = Family::<u32> { rules: Vec::new() };
    let mut v6 = Family::<u128> { rules: Vec::new() };
    let mut entries = Vec::new();
    let mut tier_start = Vec::new();
    let mut priority = 0u32;
    let endpoints = program.endpoints();
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
            for &e in &rule.endpoints {
                for local in &endpoints[e as usize].addresses {
                    let host = Prefix::host(*local);
                    for r in &remote {
                        for &sp in &sports {
                            for &dp in &dports {
                                match (
                                    v4_prefix(&host),
                                    v4_prefix(r),
                                    v6_prefix(&host),
                                    v6_prefix(r),
                                ) {
                                    (Some(l), Some(r), _, _) => {
                                        v4.push(rule.direction, l, r, sp, dp, proto, priority, id)
                                    }
                                    (_, _, Some(l), Some(r)) => {
                                        v6.push(rule.direction, l, r, sp, dp, proto, priority, id)
                                    }
                                    _ => {}
                                }
                            }
                        }
                    }
                }
            }
            priority += 1;
        }
        // The tier's defaults for each endpoint and direction, after its rules.
        for (e, defaults) in tier.defaults.iter().enumerate() {
            for direction in [Direction::Ingress, Direction::Egress] {
                let action = defaults.get(direction);
                if action == Action::NextTier {
                    continue;
                }
                let id = entries.len() as u32;
                entries.push(Entry::Default {
                    tier: ti as u16,
                    action,
                });
                for local in &endpoints[e].addresses {
                    let host = Prefix::host(*local);
                    if let Some(l) = v4_prefix(&host) {
                        v4.push(
                            direction,
                            l,
                            (0, 0),
                            (0, u16::MAX),
                            (0, u16::MAX),
                            (0, 0),
                            priority,
                            id,
                        );
                    }
                    if let Some(l) = v6_prefix(&host) {
                        v6.push(
                            direction,
                            l,
                            (0, 0),
                            (0, u16::MAX),
                            (0, u16::MAX),
                            (0, 0),
                            priority,
                            id,
                        );
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
    }
}

impl ProgramClassifier {
    /// Compiles a program for classification.
    pub fn new(program: DeviceProgram) -> Result<Self, UpdateError> {
        let flat = flatten(&program);
        let endpoints = program.endpoints();
        let local = endpoints
            .iter()
            .enumerate()
            .flat_map(|(i, e)| e.addresses.iter().map(move |a| (*a, i as u32)))
            .collect();
        let (v4, v4_entries) = Family { rules: flat.v4 }.build()?;
        let (v6, v6_entries) = Family { rules: flat.v6 }.build()?;
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
            let Some(entry) = self.lookup(direction, local, remote, packet, floor) else {
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
