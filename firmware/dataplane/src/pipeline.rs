//! The burst pipeline: parse -> session lookup -> classify on a miss -> act.
//!
//! A [`Pipeline`] judges bursts of frames. The device program lives in a [`ProgramSlot`]
//! that a control thread can replace at any time; the pipeline picks the current program
//! up only between bursts (one atomic load per burst), so every packet of a burst is judged
//! by one generation, never by a mix. Sessions remember the generation that judged them; a
//! packet of a session from an older generation is judged again by the current program, and
//! a session the new program denies ends.
//!
//! The pipeline does no I/O: it returns an [`Outcome`] per frame (forward, drop, redirect to
//! a named L7 service; mirror; log) and counts, and the port runner acts on it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use palisade_classifier::{Decided, Judgement, ProgramClassifier, UpdateError};
use palisade_program::{DeviceProgram, Packet, Protocol, TierKind};
use palisade_wire::{IpInfo, L4, parse_frame};

use crate::session::{
    FlowKey, RecordSink, SessionConfig, SessionError, SessionTable, SessionVerdict, Way,
};

/// A device program compiled for the fast path, with the ids of its rules.
pub struct Compiled {
    classifier: ProgramClassifier,
    /// Rule ids, flattened over tiers in program order.
    rule_ids: Vec<Arc<str>>,
    /// Offset of each tier's first rule in `rule_ids`.
    tier_offsets: HashMap<TierKind, usize>,
}

impl Compiled {
    /// Compiles a program.
    pub fn new(program: DeviceProgram) -> Result<Self, UpdateError> {
        let mut rule_ids = Vec::new();
        let mut tier_offsets = HashMap::new();
        for tier in program.tiers() {
            tier_offsets.insert(tier.kind, rule_ids.len());
            rule_ids.extend(tier.rules.iter().map(|r| Arc::<str>::from(r.id.as_str())));
        }
        Ok(Self {
            classifier: ProgramClassifier::new(program)?,
            rule_ids,
            tier_offsets,
        })
    }

    /// The program.
    pub fn program(&self) -> &DeviceProgram {
        self.classifier.program()
    }

    /// The program's generation.
    pub fn generation(&self) -> u64 {
        self.program().generation()
    }

    /// Rule ids in program order (the index of a rule's counters).
    pub fn rule_ids(&self) -> &[Arc<str>] {
        &self.rule_ids
    }

    fn rule_index(&self, tier: TierKind, rule: usize) -> usize {
        self.tier_offsets[&tier] + rule
    }
}

/// Where the current program lives; shared between the control plane and pipelines.
pub struct ProgramSlot {
    current: Mutex<Arc<Compiled>>,
    version: AtomicU64,
}

impl ProgramSlot {
    /// A slot holding `initial`.
    pub fn new(initial: Compiled) -> Self {
        Self {
            current: Mutex::new(Arc::new(initial)),
            version: AtomicU64::new(0),
        }
    }

    /// Replaces the program: pipelines switch at their next burst.
    pub fn install(&self, compiled: Compiled) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *current = Arc::new(compiled);
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The current program.
    pub fn load(&self) -> Arc<Compiled> {
        Arc::clone(&self.current.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

/// Why a frame is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The policy denies the connection.
    Denied,
    /// The frame does not parse.
    Malformed,
    /// A non-IP frame and the configuration drops those.
    NotIp,
    /// A fragment whose first fragment was not seen (or was denied).
    OrphanFragment,
    /// The session table is full and refuses new connections.
    TableFull,
    /// A TCP packet without SYN in strict mode.
    NoSyn,
    /// The session was allowed by an older program and the current one denies it.
    Revoked,
}

/// What to do with a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Send it on.
    Forward,
    /// Hand it to the named L7 firewall service.
    Redirect(Arc<str>),
    /// Drop it.
    Drop(DropReason),
}

/// The pipeline's answer for one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// What to do.
    pub disposition: Disposition,
    /// Also copy the frame to this mirror destination.
    pub mirror: Option<Arc<str>>,
    /// Log the connection's first packet.
    pub log: bool,
    /// The program generation that judged it (0 for frames judged without a program, such
    /// as malformed ones).
    pub generation: u64,
    /// Which way the frame goes in its session, when it belongs to one.
    pub way: Option<Way>,
}

impl Outcome {
    fn drop(reason: DropReason, generation: u64) -> Self {
        Self {
            disposition: Disposition::Drop(reason),
            mirror: None,
            log: false,
            generation,
            way: None,
        }
    }
}

/// What the pipeline does with frames that are not IP (ARP, LLDP, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonIp {
    /// Forward them (a bump in the wire must let ARP through).
    Forward,
    /// Drop them.
    Drop,
}

/// Pipeline settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Session table settings.
    pub sessions: SessionConfig,
    /// Non-IP frames.
    pub non_ip: NonIp,
    /// Session slots aged per burst.
    pub expire_per_burst: usize,
    /// How long a first fragment's verdict is kept for its other fragments (ns).
    pub fragment_timeout: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            sessions: SessionConfig::default(),
            non_ip: NonIp::Forward,
            expire_per_burst: 64,
            fragment_timeout: 2_000_000_000,
        }
    }
}

/// Connection and packet counts of one rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleCounters {
    /// Connections the rule decided.
    pub connections: u64,
    /// Packets of those connections.
    pub packets: u64,
    /// Bytes of those connections.
    pub bytes: u64,
}

/// Pipeline counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PipelineCounters {
    /// Frames judged.
    pub frames: u64,
    /// Frames forwarded (including redirected).
    pub forwarded: u64,
    /// Frames dropped, by reason.
    pub dropped: HashMap<DropReason, u64>,
    /// Frames redirected to an L7 service.
    pub redirected: u64,
    /// Frames also mirrored.
    pub mirrored: u64,
    /// Sessions judged again after a program change.
    pub revalidated: u64,
    /// Program switches seen.
    pub switches: u64,
}

/// The verdict of a fragmented datagram, kept for its later fragments.
struct FragmentEntry {
    outcome: Outcome,
    session: Option<(u32, Way)>,
    seen: u64,
}

/// The burst pipeline of one core.
pub struct Pipeline {
    config: PipelineConfig,
    slot: Arc<ProgramSlot>,
    active: Arc<Compiled>,
    active_version: u64,
    sessions: SessionTable,
    fragments: HashMap<(IpAddr, IpAddr, u8, u32), FragmentEntry>,
    rules: Vec<RuleCounters>,
    /// Counters of rules of earlier generations, by id.
    retired: HashMap<Arc<str>, RuleCounters>,
    counters: PipelineCounters,
}

/// A packet's 5-tuple for sessions and classification: ports for TCP, UDP and SCTP; the
/// echo identifier on both sides for ICMP echo (so the reply finds the request's session).
fn flow_key(ip: &IpInfo) -> (FlowKey, u8) {
    let (src_port, dst_port, flags) = match ip.l4 {
        Some(L4::Tcp {
            src_port,
            dst_port,
            flags,
            ..
        }) => (src_port, dst_port, flags.0 as u8),
        Some(
            L4::Udp { src_port, dst_port }
            | L4::Sctp {
                src_port, dst_port, ..
            },
        ) => (src_port, dst_port, 0),
        Some(L4::Icmpv4 { echo_ident, .. } | L4::Icmpv6 { echo_ident, .. }) => {
            let id = echo_ident.unwrap_or(0);
            (id, id, 0)
        }
        None => (0, 0, 0),
    };
    (
        FlowKey {
            src: ip.src,
            dst: ip.dst,
            protocol: Protocol(ip.protocol.0),
            src_port,
            dst_port,
        },
        flags,
    )
}

impl Pipeline {
    /// A pipeline judging with the program in `slot`.
    pub fn new(config: PipelineConfig, slot: Arc<ProgramSlot>) -> Self {
        let active_version = slot.version();
        let active = slot.load();
        let rules = vec![RuleCounters::default(); active.rule_ids.len()];
        Self {
            sessions: SessionTable::new(config.sessions),
            config,
            slot,
            active,
            active_version,
            fragments: HashMap::new(),
            rules,
            retired: HashMap::new(),
            counters: PipelineCounters::default(),
        }
    }

    /// The session table.
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// Counters.
    pub fn counters(&self) -> &PipelineCounters {
        &self.counters
    }

    /// The program in use.
    pub fn program(&self) -> &Compiled {
        &self.active
    }

    /// Counters of every rule seen, by id (current and earlier generations).
    pub fn rule_counters(&self) -> HashMap<Arc<str>, RuleCounters> {
        let mut all = self.retired.clone();
        for (id, c) in self.active.rule_ids.iter().zip(&self.rules) {
            let e = all.entry(Arc::clone(id)).or_default();
            e.connections += c.connections;
            e.packets += c.packets;
            e.bytes += c.bytes;
        }
        all
    }

    fn switch_if_needed(&mut self) {
        let version = self.slot.version();
        if version == self.active_version {
            return;
        }
        let next = self.slot.load();
        for (id, c) in self.active.rule_ids.iter().zip(&self.rules) {
            let e = self.retired.entry(Arc::clone(id)).or_default();
            e.connections += c.connections;
            e.packets += c.packets;
            e.bytes += c.bytes;
        }
        self.rules = vec![RuleCounters::default(); next.rule_ids.len()];
        self.active = next;
        self.active_version = version;
        self.counters.switches += 1;
    }

    /// The verdict of a connection's first packet under the active program, and the index
    /// of the deciding rule (for counters).
    fn verdict(&self, key: &FlowKey) -> (SessionVerdict, Option<usize>) {
        let packet = Packet {
            src: key.src,
            dst: key.dst,
            protocol: key.protocol,
            src_port: key.src_port,
            dst_port: key.dst_port,
        };
        let judgement: Judgement = self.active.classifier.judge(&packet);
        let program = self.active.program();
        let rule_of = |side: &palisade_classifier::Side| match side.decided {
            Decided::Rule(tier, i) => Some((tier, i)),
            _ => None,
        };
        // The side that decides: a denying side if any, else the first side.
        let deciding = judgement
            .sides
            .iter()
            .find(|s| !s.allowed)
            .or(judgement.sides.first());
        let rule = deciding.and_then(rule_of);
        let mut verdict = SessionVerdict {
            allowed: judgement.allowed,
            rule: rule
                .map(|(t, i)| Arc::clone(&self.active.rule_ids[self.active.rule_index(t, i)])),
            rule_index: rule.map(|(t, i)| self.active.rule_index(t, i) as u32),
            generation: program.generation(),
            redirect: None,
            mirror: None,
            log: false,
        };
        if judgement.allowed {
            for side in &judgement.sides {
                if let Some((tier, i)) = rule_of(side) {
                    let r = &program
                        .tiers()
                        .iter()
                        .find(|t| t.kind == tier)
                        .expect("judged tier")
                        .rules[i];
                    verdict.log |= r.log || r.audit;
                    if let Some(to) = &r.redirect {
                        verdict
                            .redirect
                            .get_or_insert_with(|| Arc::from(to.as_str()));
                    }
                    if let Some(to) = &r.mirror {
                        verdict.mirror.get_or_insert_with(|| Arc::from(to.as_str()));
                    }
                }
            }
        } else if let Some((tier, i)) = rule {
            let r = &program
                .tiers()
                .iter()
                .find(|t| t.kind == tier)
                .expect("judged tier")
                .rules[i];
            verdict.log = r.log;
        }
        (verdict, rule.map(|(t, i)| self.active.rule_index(t, i)))
    }

    fn outcome(&self, verdict: &SessionVerdict, way: Way) -> Outcome {
        let disposition = match (&verdict.allowed, &verdict.redirect) {
            (false, _) => Disposition::Drop(DropReason::Denied),
            (true, Some(to)) => Disposition::Redirect(Arc::clone(to)),
            (true, None) => Disposition::Forward,
        };
        Outcome {
            disposition,
            mirror: verdict.mirror.clone().filter(|_| verdict.allowed),
            log: verdict.log,
            generation: self.active.generation(),
            way: Some(way),
        }
    }

    fn count_rule(&mut self, index: Option<usize>, new_connection: bool, len: u64) {
        if let Some(c) = index.and_then(|i| self.rules.get_mut(i)) {
            c.connections += u64::from(new_connection);
            c.packets += 1;
            c.bytes += len;
        }
    }

    /// The rule index of a session's verdict under the active program.
    fn index_of(&self, verdict: &SessionVerdict) -> Option<usize> {
        verdict
            .rule_index
            .filter(|_| verdict.generation == self.active.generation())
            .map(|i| i as usize)
    }

    fn judge_ip(&mut self, ip: &IpInfo, len: u64, now: u64, sink: &mut dyn RecordSink) -> Outcome {
        let generation = self.active.generation();
        // Later fragments carry no ports: they follow their first fragment.
        if let Some(frag) = ip.fragment.filter(|f| !f.is_first()) {
            let key = (ip.src, ip.dst, ip.protocol.0, frag.ident);
            return match self.fragments.get_mut(&key) {
                Some(entry) => {
                    entry.seen = now;
                    if let Some((id, way)) = entry.session {
                        self.sessions.touch(id, way, len, 0, now);
                    }
                    entry.outcome.clone()
                }
                None => Outcome::drop(DropReason::OrphanFragment, generation),
            };
        }
        let (key, flags) = flow_key(ip);
        match self.sessions.find(&key) {
            Some((id, way)) => {
                let session = self.sessions.get(id).expect("found");
                let mut verdict = session.verdict.clone();
                if verdict.generation != generation {
                    let initiator = session.key;
                    let (fresh, _) = self.verdict(&initiator);
                    self.counters.revalidated += 1;
                    if !self.sessions.revalidate(id, fresh.clone(), now, sink) {
                        return Outcome::drop(DropReason::Revoked, generation);
                    }
                    verdict = fresh;
                }
                self.sessions.touch(id, way, len, flags, now);
                let index = self.index_of(&verdict);
                self.count_rule(index, false, len);
                let mut outcome = self.outcome(&verdict, way);
                outcome.log = false;
                if let Some(frag) = ip.fragment {
                    self.fragments.insert(
                        (ip.src, ip.dst, ip.protocol.0, frag.ident),
                        FragmentEntry {
                            outcome: outcome.clone(),
                            session: Some((id, way)),
                            seen: now,
                        },
                    );
                }
                outcome
            }
            None => {
                let (verdict, index) = self.verdict(&key);
                let outcome = self.outcome(&verdict, Way::Forward);
                let session = match self.sessions.open(key, verdict, len, flags, now, sink) {
                    Ok(id) => Some((id, Way::Forward)),
                    Err(SessionError::Full(_)) => {
                        return Outcome::drop(DropReason::TableFull, generation);
                    }
                    Err(SessionError::NoSyn) => {
                        return Outcome::drop(DropReason::NoSyn, generation);
                    }
                };
                self.count_rule(index, true, len);
                if let Some(frag) = ip.fragment {
                    self.fragments.insert(
                        (ip.src, ip.dst, ip.protocol.0, frag.ident),
                        FragmentEntry {
                            outcome: Outcome {
                                log: false,
                                ..outcome.clone()
                            },
                            session,
                            seen: now,
                        },
                    );
                }
                outcome
            }
        }
    }

    /// Judges a burst of frames at time `now` (ns), appending one outcome per frame to `out`.
    pub fn process<F: AsRef<[u8]>>(
        &mut self,
        frames: &[F],
        now: u64,
        out: &mut Vec<Outcome>,
        sink: &mut dyn RecordSink,
    ) {
        self.switch_if_needed();
        for frame in frames {
            let bytes = frame.as_ref();
            let outcome = match parse_frame(bytes) {
                Err(_) => Outcome::drop(DropReason::Malformed, 0),
                Ok(parsed) => match parsed.ip {
                    None => match self.config.non_ip {
                        NonIp::Forward => Outcome {
                            disposition: Disposition::Forward,
                            mirror: None,
                            log: false,
                            generation: 0,
                            way: None,
                        },
                        NonIp::Drop => Outcome::drop(DropReason::NotIp, 0),
                    },
                    Some(ip) => self.judge_ip(&ip, bytes.len() as u64, now, sink),
                },
            };
            self.counters.frames += 1;
            match &outcome.disposition {
                Disposition::Forward => self.counters.forwarded += 1,
                Disposition::Redirect(_) => {
                    self.counters.forwarded += 1;
                    self.counters.redirected += 1;
                }
                Disposition::Drop(reason) => {
                    *self.counters.dropped.entry(*reason).or_default() += 1
                }
            }
            if outcome.mirror.is_some() {
                self.counters.mirrored += 1;
            }
            out.push(outcome);
        }
        self.sessions
            .expire(now, self.config.expire_per_burst, sink);
        let timeout = self.config.fragment_timeout;
        if !self.fragments.is_empty() {
            self.fragments
                .retain(|_, e| now.saturating_sub(e.seen) < timeout);
        }
    }
}
