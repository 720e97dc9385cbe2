//! Flow records on the wire: [`palisade_flow::FlowRecord`] to and from its message, refusing
//! malformed input with the field named.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use palisade_flow::{EndReason, FlowRecord, RecordKind, Verdict};

use crate::pb::flow::v1 as pb;

fn address(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The message of a record.
pub fn to_pb(r: &FlowRecord) -> pb::FlowRecord {
    pb::FlowRecord {
        kind: match r.kind {
            RecordKind::Start => pb::RecordKind::Start,
            RecordKind::Update => pb::RecordKind::Update,
            RecordKind::End => pb::RecordKind::End,
        } as i32,
        end_reason: match r.end_reason {
            None => pb::EndReason::Unspecified,
            Some(EndReason::Idle) => pb::EndReason::Idle,
            Some(EndReason::Fin) => pb::EndReason::Fin,
            Some(EndReason::Reset) => pb::EndReason::Reset,
            Some(EndReason::Evicted) => pb::EndReason::Evicted,
            Some(EndReason::PolicyChange) => pb::EndReason::PolicyChange,
            Some(EndReason::Flushed) => pb::EndReason::Flushed,
        } as i32,
        src: address(r.src),
        dst: address(r.dst),
        protocol: u32::from(r.protocol),
        src_port: u32::from(r.src_port),
        dst_port: u32::from(r.dst_port),
        start_ms: r.start_ms,
        end_ms: r.end_ms,
        packets: r.packets,
        bytes: r.bytes,
        rev_packets: r.rev_packets,
        rev_bytes: r.rev_bytes,
        denied: r.verdict == Verdict::Denied,
        rule: r.rule.to_string(),
        generation: r.generation,
        device: r.device.to_string(),
    }
}

fn ip(bytes: &[u8], field: &str) -> Result<IpAddr, String> {
    match bytes.len() {
        4 => Ok(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(bytes).expect("4 bytes"),
        ))),
        16 => Ok(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).expect("16 bytes"),
        ))),
        n => Err(format!("{field}: {n} bytes, expected 4 or 16")),
    }
}

/// A record from its message; `device` replaces what the message says (the manager knows
/// who called; one shared name for a whole report). Errors name the field.
pub fn from_pb(m: &pb::FlowRecord, device: &Arc<str>) -> Result<FlowRecord, String> {
    let kind = match pb::RecordKind::try_from(m.kind) {
        Ok(pb::RecordKind::Start) => RecordKind::Start,
        Ok(pb::RecordKind::Update) => RecordKind::Update,
        Ok(pb::RecordKind::End) => RecordKind::End,
        _ => return Err(format!("kind: {} is not start, update or end", m.kind)),
    };
    let end_reason = match pb::EndReason::try_from(m.end_reason) {
        Ok(pb::EndReason::Unspecified) => None,
        Ok(pb::EndReason::Idle) => Some(EndReason::Idle),
        Ok(pb::EndReason::Fin) => Some(EndReason::Fin),
        Ok(pb::EndReason::Reset) => Some(EndReason::Reset),
        Ok(pb::EndReason::Evicted) => Some(EndReason::Evicted),
        Ok(pb::EndReason::PolicyChange) => Some(EndReason::PolicyChange),
        Ok(pb::EndReason::Flushed) => Some(EndReason::Flushed),
        Err(_) => return Err(format!("end_reason: unknown value {}", m.end_reason)),
    };
    let narrow = |v: u32, max: u32, field: &str| -> Result<u32, String> {
        if v > max {
            Err(format!("{field}: {v} is above {max}"))
        } else {
            Ok(v)
        }
    };
    if m.end_ms < m.start_ms {
        return Err(format!(
            "end_ms: {} is before start_ms {}",
            m.end_ms, m.start_ms
        ));
    }
    if m.rule.len() > 1024 {
        return Err(format!("rule: {} bytes, at most 1024", m.rule.len()));
    }
    Ok(FlowRecord {
        device: Arc::clone(device),
        kind,
        end_reason,
        src: ip(&m.src, "src")?,
        dst: ip(&m.dst, "dst")?,
        protocol: narrow(m.protocol, 255, "protocol")? as u8,
        src_port: narrow(m.src_port, 65535, "src_port")? as u16,
        dst_port: narrow(m.dst_port, 65535, "dst_port")? as u16,
        start_ms: m.start_ms,
        end_ms: m.end_ms,
        packets: m.packets,
        bytes: m.bytes,
        rev_packets: m.rev_packets,
        rev_bytes: m.rev_bytes,
        verdict: if m.denied {
            Verdict::Denied
        } else {
            Verdict::Allowed
        },
        rule: m.rule.as_str().into(),
        generation: m.generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_fields_are_named() {
        let r = FlowRecord {
            device: "dpu-1".into(),
            kind: RecordKind::End,
            end_reason: Some(EndReason::Fin),
            src: "10.0.0.1".parse().unwrap(),
            dst: "2001:db8::1".parse().unwrap(),
            protocol: 6,
            src_port: 40000,
            dst_port: 443,
            start_ms: 10,
            end_ms: 20,
            packets: 1,
            bytes: 2,
            rev_packets: 3,
            rev_bytes: 4,
            verdict: Verdict::Denied,
            rule: "admin/0010".into(),
            generation: 9,
        };
        let m = to_pb(&r);
        assert_eq!(from_pb(&m, &"dpu-1".into()).unwrap(), r);
        let mut forged = r.clone();
        forged.device = "dpu-2".into();
        assert_eq!(
            from_pb(&m, &"dpu-2".into()).unwrap(),
            forged,
            "the caller decides"
        );
        for (mutate, says) in [
            (
                Box::new(|m: &mut pb::FlowRecord| m.src = vec![1, 2, 3]) as Box<dyn Fn(&mut _)>,
                "src: 3 bytes",
            ),
            (
                Box::new(|m: &mut pb::FlowRecord| m.dst_port = 70000),
                "dst_port: 70000",
            ),
            (Box::new(|m: &mut pb::FlowRecord| m.kind = 9), "kind: 9"),
            (
                Box::new(|m: &mut pb::FlowRecord| m.end_ms = 1),
                "end_ms: 1 is before",
            ),
        ] {
            let mut bad = m.clone();
            mutate(&mut bad);
            let e = from_pb(&bad, &"d".into()).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }
}
