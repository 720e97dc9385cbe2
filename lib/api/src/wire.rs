//! The device program as a protobuf message, both ways.
//!
//! Encoding cannot fail. Decoding checks every field the message type cannot: address
//! lengths, prefix lengths, enum values, port and protocol ranges, canonical prefix sets —
//! and then the program's own validation ([`DeviceProgram::new`]). Errors name the field by
//! its path in the message, e.g. `tiers[1].rules[4].dst_ports[0]`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use palisade_program::{
    Action, AddressSet, DeviceProgram, Direction, Endpoint, PortRange, Prefix, PrefixSet,
    ProgramError, ProgramParts, Protocol, Rule, Tier, TierDefaults, TierKind,
};
use thiserror::Error;

use crate::pb::program::v1 as pb;

/// Why a message could not become a program.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// A field of the message is malformed.
    #[error("{path}: {problem}")]
    Field {
        /// Where, e.g. `endpoints[2].addresses[0]`.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The fields are well-formed but the program they make is not valid.
    #[error("invalid program: {0}")]
    Program(#[from] ProgramError),
    /// The rebuilt program is not the one the manager said it sent.
    #[error("content hash mismatch: the update says {expected} but the program hashes to {actual}")]
    HashMismatch {
        /// The hash in the update.
        expected: String,
        /// The hash of what was rebuilt.
        actual: String,
    },
    /// A delta for a base the device does not run.
    #[error("the delta applies to {base} but this device runs {current}")]
    WrongBase {
        /// The delta's base.
        base: String,
        /// What the device runs (`nothing` if it runs none).
        current: String,
    },
}

pub(crate) fn field(path: impl Into<String>, problem: impl Into<String>) -> WireError {
    WireError::Field {
        path: path.into(),
        problem: problem.into(),
    }
}

/// The message form of a program.
pub fn program_to_pb(program: &DeviceProgram) -> pb::Program {
    let p = program.parts();
    pb::Program {
        format: p.format,
        device: p.device.clone(),
        generation: p.generation,
        endpoints: p.endpoints.iter().map(endpoint_to_pb).collect(),
        address_sets: p.address_sets.iter().map(set_to_pb).collect(),
        tiers: p.tiers.iter().map(tier_to_pb).collect(),
        foreign: action_to_pb(p.foreign) as i32,
    }
}

/// The program a message describes, validated.
pub fn program_from_pb(msg: &pb::Program) -> Result<DeviceProgram, WireError> {
    Ok(DeviceProgram::new(parts_from_pb(msg)?)?)
}

/// The unvalidated parts a message describes (fields checked, program not yet validated).
pub fn parts_from_pb(msg: &pb::Program) -> Result<ProgramParts, WireError> {
    Ok(ProgramParts {
        format: msg.format,
        device: msg.device.clone(),
        generation: msg.generation,
        endpoints: endpoints_from_pb(&msg.endpoints, "endpoints")?,
        address_sets: msg
            .address_sets
            .iter()
            .enumerate()
            .map(|(i, s)| set_from_pb(s, &format!("address_sets[{i}]")))
            .collect::<Result<_, _>>()?,
        tiers: msg
            .tiers
            .iter()
            .enumerate()
            .map(|(i, t)| tier_from_pb(t, &format!("tiers[{i}]")))
            .collect::<Result<_, _>>()?,
        foreign: action_from_pb(msg.foreign, "foreign")?,
    })
}

pub(crate) fn endpoint_to_pb(e: &Endpoint) -> pb::Endpoint {
    pb::Endpoint {
        name: e.name.clone(),
        addresses: e.addresses.iter().map(addr_bytes).collect(),
    }
}

pub(crate) fn endpoints_from_pb(
    list: &[pb::Endpoint],
    path: &str,
) -> Result<Vec<Endpoint>, WireError> {
    list.iter()
        .enumerate()
        .map(|(i, e)| {
            Ok(Endpoint {
                name: e.name.clone(),
                addresses: e
                    .addresses
                    .iter()
                    .enumerate()
                    .map(|(j, a)| addr_from(a, || format!("{path}[{i}].addresses[{j}]")))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

pub(crate) fn set_to_pb(s: &AddressSet) -> pb::AddressSet {
    let prefixes = s.prefixes.prefixes();
    let v4 = prefixes.iter().filter(|p| p.is_ipv4()).count();
    let mut ipv4 = Vec::with_capacity(5 * v4);
    let mut ipv6 = Vec::with_capacity(17 * (prefixes.len() - v4));
    for p in prefixes {
        match p.addr() {
            IpAddr::V4(a) => {
                ipv4.extend_from_slice(&a.octets());
                ipv4.push(p.len());
            }
            IpAddr::V6(a) => {
                ipv6.extend_from_slice(&a.octets());
                ipv6.push(p.len());
            }
        }
    }
    pb::AddressSet {
        name: s.name.clone(),
        ipv4,
        ipv6,
    }
}

/// Unpacks one family's prefixes (`N` address bytes and a length byte each).
fn unpack<const N: usize>(
    bytes: &[u8],
    out: &mut Vec<Prefix>,
    path: &str,
    list: &str,
) -> Result<(), WireError> {
    if !bytes.len().is_multiple_of(N + 1) {
        return Err(field(
            format!("{path}.{list}"),
            format!(
                "{} bytes is not a whole number of {}-byte prefixes",
                bytes.len(),
                N + 1
            ),
        ));
    }
    for (i, record) in bytes.chunks_exact(N + 1).enumerate() {
        let addr = addr_from(&record[..N], || format!("{path}.{list}[{i}]"))?;
        let prefix = Prefix::new(addr, record[N])
            .map_err(|e| field(format!("{path}.{list}[{i}]"), e.to_string()))?;
        out.push(prefix);
    }
    Ok(())
}

pub(crate) fn set_from_pb(s: &pb::AddressSet, path: &str) -> Result<AddressSet, WireError> {
    let mut prefixes = Vec::with_capacity(s.ipv4.len() / 5 + s.ipv6.len() / 17);
    unpack::<4>(&s.ipv4, &mut prefixes, path, "ipv4")?;
    unpack::<16>(&s.ipv6, &mut prefixes, path, "ipv6")?;
    let Some(prefixes) = PrefixSet::from_canonical(&prefixes) else {
        return Err(field(
            path,
            "the prefixes are not canonical (they must be sorted, disjoint, with sibling prefixes merged)",
        ));
    };
    Ok(AddressSet {
        name: s.name.clone(),
        prefixes,
    })
}

pub(crate) fn tier_to_pb(t: &Tier) -> pb::Tier {
    pb::Tier {
        kind: match t.kind {
            TierKind::Admin => pb::TierKind::Admin,
            TierKind::Application => pb::TierKind::Application,
            TierKind::Baseline => pb::TierKind::Baseline,
        } as i32,
        rules: t.rules.iter().map(rule_to_pb).collect(),
        defaults: t
            .defaults
            .iter()
            .map(|d| pb::TierDefaults {
                ingress: action_to_pb(d.ingress) as i32,
                egress: action_to_pb(d.egress) as i32,
            })
            .collect(),
    }
}

pub(crate) fn tier_from_pb(t: &pb::Tier, path: &str) -> Result<Tier, WireError> {
    let kind = match pb::TierKind::try_from(t.kind) {
        Ok(pb::TierKind::Admin) => TierKind::Admin,
        Ok(pb::TierKind::Application) => TierKind::Application,
        Ok(pb::TierKind::Baseline) => TierKind::Baseline,
        _ => {
            return Err(field(
                format!("{path}.kind"),
                format!(
                    "{} is not a tier kind (1 admin, 2 application, 3 baseline)",
                    t.kind
                ),
            ));
        }
    };
    Ok(Tier {
        kind,
        rules: t
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| rule_from_pb(r, &|| format!("{path}.rules[{i}]")))
            .collect::<Result<_, _>>()?,
        defaults: t
            .defaults
            .iter()
            .enumerate()
            .map(|(i, d)| {
                Ok(TierDefaults {
                    ingress: action_at(d.ingress, || format!("{path}.defaults[{i}].ingress"))?,
                    egress: action_at(d.egress, || format!("{path}.defaults[{i}].egress"))?,
                })
            })
            .collect::<Result<_, WireError>>()?,
    })
}

fn rule_to_pb(r: &Rule) -> pb::Rule {
    let ports = |list: &[PortRange]| {
        list.iter()
            .map(|p| pb::PortRange {
                lo: u32::from(p.lo()),
                hi: u32::from(p.hi()),
            })
            .collect()
    };
    pb::Rule {
        id: r.id.clone(),
        direction: match r.direction {
            Direction::Ingress => pb::Direction::Ingress,
            Direction::Egress => pb::Direction::Egress,
        } as i32,
        endpoints: r.endpoints.clone(),
        remote: r.remote,
        protocol: r.protocol.map(|p| u32::from(p.0)),
        src_ports: ports(&r.src_ports),
        dst_ports: ports(&r.dst_ports),
        action: action_to_pb(r.action) as i32,
        log: r.log,
        audit: r.audit,
        mirror: r.mirror.clone(),
        redirect: r.redirect.clone(),
    }
}

/// A rule; `path` gives its path for error messages (formatted only then).
fn rule_from_pb(r: &pb::Rule, path: &dyn Fn() -> String) -> Result<Rule, WireError> {
    let ports = |list: &[pb::PortRange], name: &str| {
        list.iter()
            .enumerate()
            .map(|(i, p)| {
                let at = || format!("{}.{name}[{i}]", path());
                let lo = u16::try_from(p.lo)
                    .map_err(|_| field(at(), format!("port {} is above 65535", p.lo)))?;
                let hi = u16::try_from(p.hi)
                    .map_err(|_| field(at(), format!("port {} is above 65535", p.hi)))?;
                PortRange::new(lo, hi).map_err(|e| field(at(), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let direction = match pb::Direction::try_from(r.direction) {
        Ok(pb::Direction::Ingress) => Direction::Ingress,
        Ok(pb::Direction::Egress) => Direction::Egress,
        _ => {
            return Err(field(
                format!("{}.direction", path()),
                format!("{} is not a direction (1 ingress, 2 egress)", r.direction),
            ));
        }
    };
    let protocol = r
        .protocol
        .map(|p| {
            u8::try_from(p).map(Protocol).map_err(|_| {
                field(
                    format!("{}.protocol", path()),
                    format!("{p} is not an IP protocol number (0-255)"),
                )
            })
        })
        .transpose()?;
    Ok(Rule {
        id: r.id.clone(),
        direction,
        endpoints: r.endpoints.clone(),
        remote: r.remote,
        protocol,
        src_ports: ports(&r.src_ports, "src_ports")?,
        dst_ports: ports(&r.dst_ports, "dst_ports")?,
        action: action_at(r.action, || format!("{}.action", path()))?,
        log: r.log,
        audit: r.audit,
        mirror: r.mirror.clone(),
        redirect: r.redirect.clone(),
    })
}

pub(crate) fn action_to_pb(a: Action) -> pb::Action {
    match a {
        Action::Allow => pb::Action::Allow,
        Action::Deny => pb::Action::Deny,
        Action::NextTier => pb::Action::NextTier,
    }
}

pub(crate) fn action_from_pb(value: i32, path: &str) -> Result<Action, WireError> {
    action_at(value, || path.to_string())
}

/// Like [`action_from_pb`], with the path made only for an error.
fn action_at(value: i32, path: impl FnOnce() -> String) -> Result<Action, WireError> {
    match pb::Action::try_from(value) {
        Ok(pb::Action::Allow) => Ok(Action::Allow),
        Ok(pb::Action::Deny) => Ok(Action::Deny),
        Ok(pb::Action::NextTier) => Ok(Action::NextTier),
        _ => Err(field(
            path(),
            format!("{value} is not an action (1 allow, 2 deny, 3 next-tier)"),
        )),
    }
}

fn addr_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn addr_from(bytes: &[u8], path: impl FnOnce() -> String) -> Result<IpAddr, WireError> {
    if let Ok(b) = <[u8; 4]>::try_from(bytes) {
        Ok(IpAddr::V4(Ipv4Addr::from(b)))
    } else if let Ok(b) = <[u8; 16]>::try_from(bytes) {
        Ok(IpAddr::V6(Ipv6Addr::from(b)))
    } else {
        Err(field(
            path(),
            format!(
                "an address is 4 bytes (IPv4) or 16 bytes (IPv6), not {}",
                bytes.len()
            ),
        ))
    }
}
