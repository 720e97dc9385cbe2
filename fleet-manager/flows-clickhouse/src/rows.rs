//! Flows as table rows (RowBinary, in the column order of [`crate::sql::COLUMNS`]) and back.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use clickhouse::Row;
use palisade_flow::{EndReason, FlowRecord, RecordKind, Verdict};
use palisade_flows::{Flow, StoreError};
use serde::{Deserialize, Serialize};

use crate::sql::address_bytes;

/// A flow as a row: borrowed from a [`Flow`] to insert it, owned when selected.
#[derive(Row, Serialize, Deserialize)]
pub(crate) struct FlowRow<'a> {
    device: Cow<'a, str>,
    kind: i8,
    end_reason: i8,
    src_family: u8,
    src: [u8; 16],
    dst_family: u8,
    dst: [u8; 16],
    protocol: u8,
    src_port: u16,
    dst_port: u16,
    start_ms: i64,
    end_ms: i64,
    packets: u64,
    bytes: u64,
    rev_packets: u64,
    rev_bytes: u64,
    verdict: i8,
    rule: Cow<'a, str>,
    generation: u64,
    src_endpoint: Cow<'a, str>,
    dst_endpoint: Cow<'a, str>,
    src_tags: Cow<'a, [String]>,
    dst_tags: Cow<'a, [String]>,
}

/// One group's totals as selected by [`crate::sql::aggregate`].
#[derive(Row, Deserialize)]
pub(crate) struct TotalsRow {
    pub(crate) key: Vec<String>,
    pub(crate) sessions: u64,
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
    pub(crate) records: u64,
}

const KINDS: [RecordKind; 3] = [RecordKind::Start, RecordKind::Update, RecordKind::End];
const REASONS: [Option<EndReason>; 7] = [
    None,
    Some(EndReason::Idle),
    Some(EndReason::Fin),
    Some(EndReason::Reset),
    Some(EndReason::Evicted),
    Some(EndReason::PolicyChange),
    Some(EndReason::Flushed),
];
const VERDICTS: [Verdict; 2] = [Verdict::Allowed, Verdict::Denied];

/// The code of a value in its Enum8 (its index in the list above).
fn code<T: PartialEq>(list: &[T], value: &T) -> i8 {
    list.iter().position(|v| v == value).unwrap_or_default() as i8
}

fn decode<T: Copy>(list: &[T], code: i8, what: &str, at: &str) -> Result<T, StoreError> {
    usize::try_from(code)
        .ok()
        .and_then(|i| list.get(i))
        .copied()
        .ok_or_else(|| StoreError::Corrupt {
            at: at.to_string(),
            problem: format!("{what} code {code}"),
        })
}

fn family(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 4 } else { 6 }
}

fn address(family: u8, bytes: [u8; 16], what: &str, at: &str) -> Result<IpAddr, StoreError> {
    match family {
        4 => Ok(IpAddr::V4(Ipv4Addr::new(
            bytes[12], bytes[13], bytes[14], bytes[15],
        ))),
        6 => Ok(IpAddr::V6(Ipv6Addr::from(bytes))),
        f => Err(StoreError::Corrupt {
            at: at.to_string(),
            problem: format!("{what} address family {f}"),
        }),
    }
}

impl<'a> FlowRow<'a> {
    pub(crate) fn new(flow: &'a Flow) -> Self {
        let r = &flow.record;
        Self {
            device: Cow::Borrowed(&r.device),
            kind: code(&KINDS, &r.kind),
            end_reason: code(&REASONS, &r.end_reason),
            src_family: family(r.src),
            src: address_bytes(r.src),
            dst_family: family(r.dst),
            dst: address_bytes(r.dst),
            protocol: r.protocol,
            src_port: r.src_port,
            dst_port: r.dst_port,
            start_ms: r.start_ms,
            end_ms: r.end_ms,
            packets: r.packets,
            bytes: r.bytes,
            rev_packets: r.rev_packets,
            rev_bytes: r.rev_bytes,
            verdict: code(&VERDICTS, &r.verdict),
            rule: Cow::Borrowed(&r.rule),
            generation: r.generation,
            src_endpoint: Cow::Borrowed(&flow.src_endpoint),
            dst_endpoint: Cow::Borrowed(&flow.dst_endpoint),
            src_tags: Cow::Borrowed(&flow.src_tags),
            dst_tags: Cow::Borrowed(&flow.dst_tags),
        }
    }

    /// The flow, or what does not decode (`at` names the table).
    pub(crate) fn into_flow(self, at: &str) -> Result<Flow, StoreError> {
        Ok(Flow {
            record: FlowRecord {
                kind: decode(&KINDS, self.kind, "record kind", at)?,
                end_reason: decode(&REASONS, self.end_reason, "end reason", at)?,
                src: address(self.src_family, self.src, "src", at)?,
                dst: address(self.dst_family, self.dst, "dst", at)?,
                verdict: decode(&VERDICTS, self.verdict, "verdict", at)?,
                device: self.device.into(),
                protocol: self.protocol,
                src_port: self.src_port,
                dst_port: self.dst_port,
                start_ms: self.start_ms,
                end_ms: self.end_ms,
                packets: self.packets,
                bytes: self.bytes,
                rev_packets: self.rev_packets,
                rev_bytes: self.rev_bytes,
                rule: self.rule.into(),
                generation: self.generation,
            },
            src_endpoint: self.src_endpoint.into_owned().into(),
            dst_endpoint: self.dst_endpoint.into_owned().into(),
            src_tags: self.src_tags.into_owned().into(),
            dst_tags: self.dst_tags.into_owned().into(),
        })
    }
}
