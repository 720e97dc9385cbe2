//! Flow records: what a vRouter reports of each session (start, periodic update, end), what
//! the fleet manager's collectors decode (IPFIX from vRouters or third-party exporters,
//! NetFlow v9, the gRPC stream), and what flow stores keep once enriched with the tags of
//! both ends.
//!
//! Counters are deltas: each record carries the packets and bytes since the previous record
//! of the same session, in both directions (initiator to responder, and back), so summing
//! the records of a time window gives that window's traffic.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What a record reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordKind {
    /// The session began.
    Start,
    /// The session is alive (periodic update).
    Update,
    /// The session ended.
    End,
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndReason {
    /// Idle longer than its timeout.
    Idle,
    /// Closed by FIN.
    Fin,
    /// Reset.
    Reset,
    /// Evicted to make room.
    Evicted,
    /// A new program denies it.
    PolicyChange,
    /// The table was flushed, or the exporter stopped.
    Flushed,
}

/// The verdict of the session's first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Allowed.
    Allowed,
    /// Denied.
    Denied,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
        })
    }
}

impl FromStr for Verdict {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "allowed" | "allow" => Ok(Verdict::Allowed),
            "denied" | "deny" => Ok(Verdict::Denied),
            other => Err(format!("verdict `{other}`: expected allowed or denied")),
        }
    }
}

/// One report about one session. The device and rule names are shared (`Arc<str>`): a
/// device reports thousands of records a second naming the same few strings, and collectors
/// hand out one copy of each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// The reporting device (a vRouter's name; for third-party exporters, their address).
    pub device: Arc<str>,
    /// Start, update or end.
    pub kind: RecordKind,
    /// Why it ended (end records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
    /// The initiator's address.
    pub src: IpAddr,
    /// The responder's address.
    pub dst: IpAddr,
    /// The IP protocol number.
    pub protocol: u8,
    /// The initiator's port (the ICMP echo identifier for echo messages, 0 otherwise).
    pub src_port: u16,
    /// The responder's port (likewise).
    pub dst_port: u16,
    /// When the session began (ms since the Unix epoch).
    pub start_ms: i64,
    /// When it was last seen, as of this record (ms since the Unix epoch).
    pub end_ms: i64,
    /// Packets initiator -> responder since the previous record of this session.
    pub packets: u64,
    /// Bytes initiator -> responder since the previous record.
    pub bytes: u64,
    /// Packets responder -> initiator since the previous record.
    pub rev_packets: u64,
    /// Bytes responder -> initiator since the previous record.
    pub rev_bytes: u64,
    /// The verdict.
    pub verdict: Verdict,
    /// The id of the deciding rule; empty when no rule decided (a tier default).
    pub rule: Arc<str>,
    /// The program generation that decided (0 when unknown: third-party exporters).
    pub generation: u64,
}

impl FlowRecord {
    /// Packets both ways.
    pub fn total_packets(&self) -> u64 {
        self.packets.saturating_add(self.rev_packets)
    }

    /// Bytes both ways.
    pub fn total_bytes(&self) -> u64 {
        self.bytes.saturating_add(self.rev_bytes)
    }

    /// Whether the record is the first of its session (counts a session once).
    pub fn opens_session(&self) -> bool {
        self.kind == RecordKind::Start
    }
}
