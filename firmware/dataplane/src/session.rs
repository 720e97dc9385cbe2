//! The session table: one two-way entry per connection, created by its first packet.
//!
//! A session is found from either direction (its key is canonical: the lower endpoint
//! first), remembers the verdict the first packet got (so later packets skip the
//! classifier), tracks TCP state, ages out after a per-protocol idle timeout, and reports
//! its life as [`SessionRecord`]s (start, periodic, end) to a [`RecordSink`]. The table has a
//! maximum size; when it is full, a new connection either evicts the least recently seen of
//! a small sample of sessions or is refused, as configured. Time is a number of nanoseconds
//! handed in by the caller (no clock in here).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use palisade_program::Protocol;

/// A connection's 5-tuple as one packet carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Protocol.
    pub protocol: Protocol,
    /// Source port (the ICMP echo identifier for echo messages, 0 otherwise).
    pub src_port: u16,
    /// Destination port (likewise).
    pub dst_port: u16,
}

impl FlowKey {
    /// The same connection seen from the other end.
    pub fn reversed(&self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            protocol: self.protocol,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }
}

/// Which way a packet goes within its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// From the initiator to the responder.
    Forward,
    /// From the responder back to the initiator.
    Reply,
}

impl Way {
    fn index(self) -> usize {
        match self {
            Way::Forward => 0,
            Way::Reply => 1,
        }
    }
}

/// TCP connection state, as far as a firewall needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    /// The initiator's SYN was seen.
    SynSent,
    /// The responder answered SYN-ACK.
    SynReceived,
    /// The handshake completed (or the connection was picked up mid-stream).
    Established,
    /// One side sent FIN.
    Closing,
    /// Both sides sent FIN.
    TimeWait,
    /// A RST was seen.
    Closed,
}

/// TCP flag bits as in the header.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// Idle timeouts in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// A TCP connection whose handshake has not completed.
    pub tcp_handshake: u64,
    /// An established TCP connection.
    pub tcp_established: u64,
    /// A TCP connection after a FIN.
    pub tcp_closing: u64,
    /// A TCP connection after a RST.
    pub tcp_closed: u64,
    /// UDP.
    pub udp: u64,
    /// ICMP and ICMPv6.
    pub icmp: u64,
    /// Any other protocol.
    pub other: u64,
    /// A denied connection (kept so its packets are dropped without classifying again).
    pub denied: u64,
}

const SECOND: u64 = 1_000_000_000;

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp_handshake: 30 * SECOND,
            tcp_established: 3600 * SECOND,
            tcp_closing: 30 * SECOND,
            tcp_closed: 10 * SECOND,
            udp: 60 * SECOND,
            icmp: 30 * SECOND,
            other: 60 * SECOND,
            denied: 10 * SECOND,
        }
    }
}

/// What to do with a new connection when the table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Evict the least recently seen of a sample of sessions.
    EvictOldest,
    /// Refuse the new connection (its packet is dropped).
    Refuse,
}

/// Session table settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Most sessions at once.
    pub max_sessions: usize,
    /// Idle timeouts.
    pub timeouts: Timeouts,
    /// Accept a TCP connection first seen mid-stream (no SYN) as established, like
    /// conntrack's loose mode; otherwise such packets start no session and are dropped.
    pub tcp_loose_pickup: bool,
    /// Emit a periodic record for a live session this often (nanoseconds), if set.
    pub export_interval: Option<u64>,
    /// What to do when full.
    pub when_full: WhenFull,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_sessions: 1 << 20,
            timeouts: Timeouts::default(),
            tcp_loose_pickup: true,
            export_interval: Some(60 * SECOND),
            when_full: WhenFull::EvictOldest,
        }
    }
}

/// The verdict a session carries: what the first packet decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionVerdict {
    /// Whether the connection is allowed.
    pub allowed: bool,
    /// The id of the deciding rule (of either side), if a rule decided.
    pub rule: Option<Arc<str>>,
    /// The deciding rule's position in its program (for counters), if a rule decided.
    pub rule_index: Option<u32>,
    /// The program generation that decided.
    pub generation: u64,
    /// Named L7 service to redirect to.
    pub redirect: Option<Arc<str>>,
    /// Named mirror destination.
    pub mirror: Option<Arc<str>>,
    /// Log the connection.
    pub log: bool,
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Idle longer than its timeout.
    Idle,
    /// TCP FIN from both sides (then idle in time-wait).
    Fin,
    /// TCP RST.
    Reset,
    /// Evicted to make room.
    Evicted,
    /// A new program denies it.
    PolicyChange,
    /// The table was flushed.
    Flushed,
}

/// What a record reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// The session began.
    Start,
    /// The session is alive (periodic update).
    Update,
    /// The session ended.
    End(EndReason),
}

/// A report about one session, for exporters (IPFIX, gRPC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// Start, update or end.
    pub kind: RecordKind,
    /// The 5-tuple as the initiator sent it.
    pub key: FlowKey,
    /// Packets initiator -> responder and back, since the session began.
    pub packets: [u64; 2],
    /// Bytes likewise.
    pub bytes: [u64; 2],
    /// Packets since the previous record of this session, both ways.
    pub delta_packets: [u64; 2],
    /// Bytes since the previous record, both ways.
    pub delta_bytes: [u64; 2],
    /// The verdict.
    pub verdict: SessionVerdict,
    /// When the session began (ns).
    pub started: u64,
    /// When it was last seen (ns).
    pub last_seen: u64,
}

/// Where session records go.
pub trait RecordSink {
    /// Takes one record.
    fn emit(&mut self, record: SessionRecord);
}

/// Drops every record.
pub struct NullSink;

impl RecordSink for NullSink {
    fn emit(&mut self, _: SessionRecord) {}
}

impl RecordSink for Vec<SessionRecord> {
    fn emit(&mut self, record: SessionRecord) {
        self.push(record);
    }
}

/// One connection.
#[derive(Clone, Debug)]
pub struct Session {
    /// The 5-tuple as the initiator sent it.
    pub key: FlowKey,
    /// The verdict.
    pub verdict: SessionVerdict,
    /// TCP state (`None` for other protocols).
    pub tcp: Option<TcpState>,
    /// When it began (ns).
    pub started: u64,
    /// When it was last seen (ns).
    pub last_seen: u64,
    /// Packets both ways.
    pub packets: [u64; 2],
    /// Bytes both ways.
    pub bytes: [u64; 2],
    exported_packets: [u64; 2],
    exported_bytes: [u64; 2],
    last_export: u64,
}

/// Counters of the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// Sessions created.
    pub created: u64,
    /// Sessions created with a deny verdict.
    pub denied: u64,
    /// Sessions ended by idle timeout (including TCP close timeouts).
    pub expired: u64,
    /// Sessions evicted to make room.
    pub evicted: u64,
    /// New connections refused because the table was full.
    pub refused: u64,
    /// Sessions ended because a new program denies them.
    pub revoked: u64,
}

/// Why a session could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The table is full and configured to refuse.
    #[error("the session table is full ({0} sessions)")]
    Full(usize),
    /// A TCP packet without SYN and loose pick-up is off.
    #[error("TCP packet without SYN opens no session (strict mode)")]
    NoSyn,
}

/// The direction-independent key: the lower (address, port) end first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct CanonKey {
    lo: (u128, u16),
    hi: (u128, u16),
    protocol: u8,
    v6: bool,
}

fn bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn canon(k: &FlowKey) -> CanonKey {
    let a = (bits(k.src), k.src_port);
    let b = (bits(k.dst), k.dst_port);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    CanonKey {
        lo,
        hi,
        protocol: k.protocol.0,
        v6: k.src.is_ipv6(),
    }
}

/// How many sessions an eviction looks at to pick the least recently seen.
const EVICTION_SAMPLE: usize = 8;

/// The table.
pub struct SessionTable {
    config: SessionConfig,
    index: HashMap<CanonKey, u32, rustc_hash::FxBuildHasher>,
    slots: Vec<Option<Session>>,
    free: Vec<u32>,
    /// Where the next expiry scan and eviction sample start.
    hand: usize,
    counters: SessionCounters,
}

impl SessionTable {
    /// An empty table.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            config,
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            hand: 0,
            counters: SessionCounters::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when there is no session.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Counters.
    pub fn counters(&self) -> SessionCounters {
        self.counters
    }

    /// The session of a packet and which way the packet goes.
    pub fn find(&self, key: &FlowKey) -> Option<(u32, Way)> {
        let id = *self.index.get(&canon(key))?;
        let s = self.slots[id as usize].as_ref()?;
        let way = if s.key.src == key.src && s.key.src_port == key.src_port {
            Way::Forward
        } else {
            Way::Reply
        };
        Some((id, way))
    }

    /// A session by id.
    pub fn get(&self, id: u32) -> Option<&Session> {
        self.slots.get(id as usize).and_then(Option::as_ref)
    }

    /// Every live session.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Session)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i as u32, s)))
    }

    fn timeout(&self, s: &Session) -> u64 {
        let t = &self.config.timeouts;
        if !s.verdict.allowed {
            return t.denied;
        }
        match s.tcp {
            Some(TcpState::SynSent | TcpState::SynReceived) => t.tcp_handshake,
            Some(TcpState::Established) => t.tcp_established,
            Some(TcpState::Closing | TcpState::TimeWait) => t.tcp_closing,
            Some(TcpState::Closed) => t.tcp_closed,
            None => match s.key.protocol {
                Protocol::UDP => t.udp,
                Protocol::ICMP | Protocol::ICMPV6 => t.icmp,
                _ => t.other,
            },
        }
    }

    /// Opens a session for a connection's first packet (counted as a forward packet of
    /// `len` bytes with `flags` for TCP).
    pub fn open(
        &mut self,
        key: FlowKey,
        verdict: SessionVerdict,
        len: u64,
        flags: u8,
        now: u64,
        sink: &mut dyn RecordSink,
    ) -> Result<u32, SessionError> {
        let tcp = if key.protocol == Protocol::TCP {
            if flags & tcp_flags::SYN != 0 && flags & tcp_flags::ACK == 0 {
                Some(TcpState::SynSent)
            } else if self.config.tcp_loose_pickup {
                Some(TcpState::Established)
            } else {
                return Err(SessionError::NoSyn);
            }
        } else {
            None
        };
        if self.index.len() >= self.config.max_sessions {
            match self.config.when_full {
                WhenFull::Refuse => {
                    self.counters.refused += 1;
                    return Err(SessionError::Full(self.config.max_sessions));
                }
                WhenFull::EvictOldest => self.evict_one(sink),
            }
        }
        let session = Session {
            key,
            verdict,
            tcp,
            started: now,
            last_seen: now,
            packets: [1, 0],
            bytes: [len, 0],
            exported_packets: [0, 0],
            exported_bytes: [0, 0],
            last_export: now,
        };
        self.counters.created += 1;
        if !session.verdict.allowed {
            self.counters.denied += 1;
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        let record = Self::record(&session, RecordKind::Start);
        self.slots[id as usize] = Some(session);
        if let Some(old) = self.index.insert(canon(&key), id) {
            // A stale entry for the same connection: end it first (cannot normally happen,
            // since callers look a packet up before opening).
            self.slots[old as usize] = None;
            self.free.push(old);
        }
        Self::mark_exported(self.slots[id as usize].as_mut().expect("just set"), now);
        sink.emit(record);
        Ok(id)
    }

    fn record(s: &Session, kind: RecordKind) -> SessionRecord {
        let delta = |now: [u64; 2], then: [u64; 2]| [now[0] - then[0], now[1] - then[1]];
        SessionRecord {
            kind,
            key: s.key,
            packets: s.packets,
            bytes: s.bytes,
            delta_packets: delta(s.packets, s.exported_packets),
            delta_bytes: delta(s.bytes, s.exported_bytes),
            verdict: s.verdict.clone(),
            started: s.started,
            last_seen: s.last_seen,
        }
    }

    fn mark_exported(s: &mut Session, now: u64) {
        s.exported_packets = s.packets;
        s.exported_bytes = s.bytes;
        s.last_export = now;
    }

    /// Accounts a packet of a session and advances TCP state. Returns the state after.
    pub fn touch(&mut self, id: u32, way: Way, len: u64, flags: u8, now: u64) -> Option<TcpState> {
        let s = self.slots.get_mut(id as usize)?.as_mut()?;
        s.packets[way.index()] += 1;
        s.bytes[way.index()] += len;
        s.last_seen = now;
        if let Some(state) = s.tcp {
            let next = if flags & tcp_flags::RST != 0 {
                TcpState::Closed
            } else {
                match (state, way) {
                    (TcpState::SynSent, Way::Reply)
                        if flags & (tcp_flags::SYN | tcp_flags::ACK)
                            == tcp_flags::SYN | tcp_flags::ACK =>
                    {
                        TcpState::SynReceived
                    }
                    (TcpState::SynReceived, Way::Forward) if flags & tcp_flags::ACK != 0 => {
                        TcpState::Established
                    }
                    (TcpState::Established | TcpState::SynReceived, _)
                        if flags & tcp_flags::FIN != 0 =>
                    {
                        TcpState::Closing
                    }
                    (TcpState::Closing, _) if flags & tcp_flags::FIN != 0 => TcpState::TimeWait,
                    (other, _) => other,
                }
            };
            s.tcp = Some(next);
        }
        s.tcp
    }

    /// Replaces a live session's verdict (after a program change). A session that is no
    /// longer allowed ends with [`EndReason::PolicyChange`]; returns whether it lives on.
    pub fn revalidate(
        &mut self,
        id: u32,
        verdict: SessionVerdict,
        now: u64,
        sink: &mut dyn RecordSink,
    ) -> bool {
        let Some(s) = self.slots.get_mut(id as usize).and_then(Option::as_mut) else {
            return false;
        };
        let was_allowed = s.verdict.allowed;
        s.verdict = verdict;
        if was_allowed && !s.verdict.allowed {
            s.last_seen = now;
            self.counters.revoked += 1;
            self.end(id, EndReason::PolicyChange, sink);
            return false;
        }
        true
    }

    fn end(&mut self, id: u32, reason: EndReason, sink: &mut dyn RecordSink) {
        if let Some(s) = self.slots[id as usize].take() {
            self.index.remove(&canon(&s.key));
            self.free.push(id);
            sink.emit(Self::record(&s, RecordKind::End(reason)));
        }
    }

    fn evict_one(&mut self, sink: &mut dyn RecordSink) {
        let n = self.slots.len();
        let mut victim: Option<(u64, u32)> = None;
        let mut looked = 0;
        let mut i = self.hand;
        while looked < EVICTION_SAMPLE && n > 0 {
            i = (i + 1) % n;
            if let Some(s) = &self.slots[i] {
                looked += 1;
                if victim.is_none_or(|(seen, _)| s.last_seen < seen) {
                    victim = Some((s.last_seen, i as u32));
                }
            }
            if i == self.hand {
                break;
            }
        }
        self.hand = i;
        if let Some((_, id)) = victim {
            self.counters.evicted += 1;
            self.end(id, EndReason::Evicted, sink);
        }
    }

    /// Ages sessions: looks at up to `budget` slots from where the last call stopped, ends
    /// the idle ones and emits periodic records for live ones that are due. Call it often
    /// with a small budget (it is the fast path's housekeeping) or once with `usize::MAX`.
    pub fn expire(&mut self, now: u64, budget: usize, sink: &mut dyn RecordSink) -> usize {
        let n = self.slots.len();
        if n == 0 {
            return 0;
        }
        let mut ended = 0;
        for _ in 0..budget.min(n) {
            self.hand = (self.hand + 1) % n;
            let i = self.hand;
            let Some(s) = &self.slots[i] else { continue };
            let idle = now.saturating_sub(s.last_seen);
            if idle >= self.timeout(s) {
                let reason = match s.tcp {
                    Some(TcpState::TimeWait) => EndReason::Fin,
                    Some(TcpState::Closed) => EndReason::Reset,
                    _ => EndReason::Idle,
                };
                self.counters.expired += 1;
                self.end(i as u32, reason, sink);
                ended += 1;
            } else if let Some(every) = self.config.export_interval
                && now.saturating_sub(s.last_export) >= every
            {
                let s = self.slots[i].as_mut().expect("checked above");
                sink.emit(Self::record(s, RecordKind::Update));
                Self::mark_exported(s, now);
            }
        }
        ended
    }

    /// Ends every session.
    pub fn flush(&mut self, sink: &mut dyn RecordSink) {
        for i in 0..self.slots.len() {
            self.end(i as u32, EndReason::Flushed, sink);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sport: u16) -> FlowKey {
        FlowKey {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            protocol: Protocol::TCP,
            src_port: sport,
            dst_port: 80,
        }
    }

    fn allowed() -> SessionVerdict {
        SessionVerdict {
            allowed: true,
            rule: Some("r1".into()),
            rule_index: Some(0),
            generation: 1,
            redirect: None,
            mirror: None,
            log: false,
        }
    }

    #[test]
    fn a_tcp_connection_lives_and_ends_with_fin() {
        let mut t = SessionTable::new(SessionConfig::default());
        let mut sink = Vec::new();
        let id = t
            .open(key(1000), allowed(), 60, tcp_flags::SYN, 0, &mut sink)
            .unwrap();
        assert_eq!(t.get(id).unwrap().tcp, Some(TcpState::SynSent));
        let (found, way) = t.find(&key(1000).reversed()).unwrap();
        assert_eq!((found, way), (id, Way::Reply));
        assert_eq!(
            t.touch(id, Way::Reply, 60, tcp_flags::SYN | tcp_flags::ACK, 1),
            Some(TcpState::SynReceived)
        );
        assert_eq!(
            t.touch(id, Way::Forward, 52, tcp_flags::ACK, 2),
            Some(TcpState::Established)
        );
        assert_eq!(
            t.touch(id, Way::Forward, 500, tcp_flags::ACK, 3),
            Some(TcpState::Established)
        );
        assert_eq!(
            t.touch(id, Way::Forward, 52, tcp_flags::FIN | tcp_flags::ACK, 4),
            Some(TcpState::Closing)
        );
        assert_eq!(
            t.touch(id, Way::Reply, 52, tcp_flags::FIN | tcp_flags::ACK, 5),
            Some(TcpState::TimeWait)
        );
        let s = t.get(id).unwrap();
        assert_eq!(s.packets, [4, 2]);
        assert_eq!(s.bytes, [664, 112]);
        // Established timeout is an hour, closing 30 s: it ends after 30 s idle.
        assert_eq!(t.expire(5 + 29 * SECOND, usize::MAX, &mut sink), 0);
        assert_eq!(t.expire(5 + 30 * SECOND, usize::MAX, &mut sink), 1);
        assert!(t.is_empty());
        let end = sink.last().unwrap();
        assert_eq!(end.kind, RecordKind::End(EndReason::Fin));
        assert_eq!(end.packets, [4, 2]);
        assert_eq!(sink[0].kind, RecordKind::Start);
        assert_eq!(t.counters().expired, 1);
    }

    #[test]
    fn rst_closes_quickly_and_timeouts_follow_the_protocol() {
        let mut t = SessionTable::new(SessionConfig::default());
        let mut sink = NullSink;
        let id = t
            .open(key(1), allowed(), 60, tcp_flags::SYN, 0, &mut sink)
            .unwrap();
        t.touch(id, Way::Reply, 40, tcp_flags::RST, 1);
        assert_eq!(t.expire(1 + 10 * SECOND, usize::MAX, &mut sink), 1);

        let udp = FlowKey {
            protocol: Protocol::UDP,
            ..key(2)
        };
        t.open(udp, allowed(), 100, 0, 0, &mut sink).unwrap();
        assert_eq!(t.expire(59 * SECOND, usize::MAX, &mut sink), 0);
        assert_eq!(t.expire(60 * SECOND, usize::MAX, &mut sink), 1);

        let denied = SessionVerdict {
            allowed: false,
            ..allowed()
        };
        t.open(key(3), denied, 60, tcp_flags::SYN, 0, &mut sink)
            .unwrap();
        assert_eq!(t.counters().denied, 1);
        assert_eq!(t.expire(10 * SECOND, usize::MAX, &mut sink), 1);
    }

    #[test]
    fn strict_mode_refuses_mid_stream_tcp() {
        let mut t = SessionTable::new(SessionConfig {
            tcp_loose_pickup: false,
            ..SessionConfig::default()
        });
        assert_eq!(
            t.open(key(1), allowed(), 60, tcp_flags::ACK, 0, &mut NullSink),
            Err(SessionError::NoSyn)
        );
        let mut loose = SessionTable::new(SessionConfig::default());
        let id = loose
            .open(key(1), allowed(), 60, tcp_flags::ACK, 0, &mut NullSink)
            .unwrap();
        assert_eq!(loose.get(id).unwrap().tcp, Some(TcpState::Established));
    }

    #[test]
    fn a_full_table_evicts_the_oldest_or_refuses() {
        let config = SessionConfig {
            max_sessions: 4,
            ..SessionConfig::default()
        };
        let mut t = SessionTable::new(config);
        let mut sink = Vec::new();
        for i in 0..4 {
            t.open(
                key(i),
                allowed(),
                60,
                tcp_flags::SYN,
                u64::from(i) + 10,
                &mut sink,
            )
            .unwrap();
        }
        t.touch(
            t.find(&key(0)).unwrap().0,
            Way::Forward,
            1,
            tcp_flags::ACK,
            100,
        );
        t.open(key(9), allowed(), 60, tcp_flags::SYN, 101, &mut sink)
            .unwrap();
        assert_eq!(t.len(), 4);
        assert!(t.find(&key(1)).is_none(), "the least recently seen went");
        assert!(t.find(&key(0)).is_some());
        assert_eq!(t.counters().evicted, 1);
        assert_eq!(sink.last().unwrap().kind, RecordKind::Start);
        assert!(
            sink.iter()
                .any(|r| r.kind == RecordKind::End(EndReason::Evicted) && r.key == key(1))
        );

        let mut refusing = SessionTable::new(SessionConfig {
            when_full: WhenFull::Refuse,
            ..config
        });
        for i in 0..4 {
            refusing
                .open(key(i), allowed(), 60, tcp_flags::SYN, 0, &mut NullSink)
                .unwrap();
        }
        assert_eq!(
            refusing.open(key(9), allowed(), 60, tcp_flags::SYN, 0, &mut NullSink),
            Err(SessionError::Full(4))
        );
        assert_eq!(refusing.counters().refused, 1);
    }

    #[test]
    fn periodic_records_carry_deltas() {
        let config = SessionConfig {
            export_interval: Some(10),
            ..SessionConfig::default()
        };
        let mut t = SessionTable::new(config);
        let mut sink = Vec::new();
        let id = t
            .open(key(1), allowed(), 100, tcp_flags::ACK, 0, &mut sink)
            .unwrap();
        t.touch(id, Way::Forward, 100, tcp_flags::ACK, 5);
        t.touch(id, Way::Reply, 50, tcp_flags::ACK, 6);
        t.expire(10, usize::MAX, &mut sink);
        t.touch(id, Way::Reply, 50, tcp_flags::ACK, 15);
        t.expire(20, usize::MAX, &mut sink);
        let updates: Vec<&SessionRecord> = sink
            .iter()
            .filter(|r| r.kind == RecordKind::Update)
            .collect();
        assert_eq!(updates.len(), 2);
        assert_eq!(updates[0].delta_packets, [1, 1]);
        assert_eq!(updates[0].packets, [2, 1]);
        assert_eq!(updates[1].delta_packets, [0, 1]);
        assert_eq!(updates[1].delta_bytes, [0, 50]);
        assert_eq!(
            sink[0].delta_packets,
            [1, 0],
            "the start record counts the first packet"
        );
    }

    #[test]
    fn a_program_change_can_revoke_a_session() {
        let mut t = SessionTable::new(SessionConfig::default());
        let mut sink = Vec::new();
        let id = t
            .open(key(1), allowed(), 60, tcp_flags::SYN, 0, &mut sink)
            .unwrap();
        assert!(t.revalidate(
            id,
            SessionVerdict {
                generation: 2,
                ..allowed()
            },
            1,
            &mut sink
        ));
        assert_eq!(t.get(id).unwrap().verdict.generation, 2);
        assert!(!t.revalidate(
            id,
            SessionVerdict {
                allowed: false,
                generation: 3,
                ..allowed()
            },
            2,
            &mut sink
        ));
        assert!(t.find(&key(1)).is_none());
        assert_eq!(
            sink.last().unwrap().kind,
            RecordKind::End(EndReason::PolicyChange)
        );
        assert_eq!(t.counters().revoked, 1);
    }
}
