//! The real rte_flow backend: an offload plan's entries as rte_flow rules on a DPDK port.
//! Any refusal (a PMD without rte_flow, an unsupported item or action, a full table) undoes
//! what was installed and reports why: the rules then run in software, which gives the same
//! verdicts.

use std::net::Ipv4Addr;

use palisade_dpdk::FlowError;
use palisade_dpdk::flow::{Actions, Attributes, Ipv4, Item, Match, Pattern, Sctp, Tcp, Udp};
use palisade_offload::{HwAction, HwEntry, Masked};

/// An entry in rte_flow terms.
pub fn translate(e: &HwEntry) -> (Attributes, Pattern, Actions) {
    let attr = Attributes {
        group: e.group,
        priority: e.priority,
        ..Attributes::ingress()
    };
    let p = &e.pattern;
    let addr = |m: Option<Masked<u32>>| {
        m.map_or((Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED), |m| {
            (m.value.into(), m.mask.into())
        })
    };
    let (src, src_mask) = addr(p.src);
    let (dst, dst_mask) = addr(p.dst);
    let mut pattern = Pattern::new().eth(Item::Any);
    if p.src.is_some() || p.dst.is_some() || p.proto.is_some() {
        pattern = pattern.ipv4(
            Match::new(Ipv4 {
                src,
                dst,
                protocol: p.proto.unwrap_or(0),
                ..Ipv4::default()
            })
            .mask(Ipv4 {
                src: src_mask,
                dst: dst_mask,
                protocol: if p.proto.is_some() { u8::MAX } else { 0 },
                ..Ipv4::default()
            }),
        );
    } else {
        pattern = pattern.ipv4(Item::Any);
    }
    let port = |m: Option<Masked<u16>>| m.map_or((0, 0), |m| (m.value, m.mask));
    let ((sp, spm), (dp, dpm)) = (port(p.sport), port(p.dport));
    if p.sport.is_some() || p.dport.is_some() {
        pattern = match p.proto {
            Some(6) => pattern.tcp(
                Match::new(Tcp {
                    src_port: sp,
                    dst_port: dp,
                    flags: 0,
                })
                .mask(Tcp {
                    src_port: spm,
                    dst_port: dpm,
                    flags: 0,
                }),
            ),
            Some(17) => pattern.udp(
                Match::new(Udp {
                    src_port: sp,
                    dst_port: dp,
                })
                .mask(Udp {
                    src_port: spm,
                    dst_port: dpm,
                }),
            ),
            _ => pattern.sctp(
                Match::new(Sctp {
                    src_port: sp,
                    dst_port: dp,
                    tag: 0,
                })
                .mask(Sctp {
                    src_port: spm,
                    dst_port: dpm,
                    tag: 0,
                }),
            ),
        };
    }
    let actions = match e.action {
        HwAction::Mark(id) => Actions::new().mark(id).queue(0),
        HwAction::Jump(group) => Actions::new().jump(group),
    };
    (attr, pattern, actions)
}

/// Installs `entries` on `port`; on the first refusal removes what it installed and returns
/// the driver's reason.
pub fn install(port: &mut palisade_dpdk::Port, entries: &[HwEntry]) -> Result<usize, FlowError> {
    for e in entries {
        let (attr, pattern, actions) = translate(e);
        if let Err(err) = port.create_flow(&attr, &pattern, &actions) {
            // Best effort: a port without rte_flow cannot flush either, and has nothing to.
            let _ = port.flush_flows();
            return Err(err);
        }
    }
    Ok(entries.len())
}
