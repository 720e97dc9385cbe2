//! The canonical binary encoding of a program's content, which the content hash covers.
//!
//! Every field is written in declaration order; integers are little-endian; a string is its
//! byte length (u32) then its UTF-8 bytes; a list is its length (u32) then its items; an
//! optional value is a byte 0 (absent) or 1 followed by the value; an address is 4 or 6 (the
//! family) followed by 4 or 16 bytes; a prefix is an address then its length byte; enums are
//! one byte each. The generation is not part of it. Since every list of a validated program
//! is in canonical order, equal content always encodes to equal bytes.

use std::net::IpAddr;

use crate::net::{PortRange, Prefix, Protocol};
use crate::program::{Action, Direction, ProgramParts, TierKind};

const MAGIC: &[u8; 4] = b"PLSD";

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).expect("program lists are far below 4G entries"));
    }

    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }

    fn addr(&mut self, a: &IpAddr) {
        match a {
            IpAddr::V4(v4) => {
                self.u8(4);
                self.0.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                self.u8(6);
                self.0.extend_from_slice(&v6.octets());
            }
        }
    }

    fn prefix(&mut self, p: &Prefix) {
        self.addr(&p.addr());
        self.u8(p.len());
    }

    fn ports(&mut self, ports: &[PortRange]) {
        self.len(ports.len());
        for r in ports {
            self.u16(r.lo());
            self.u16(r.hi());
        }
    }

    fn action(&mut self, a: Action) {
        self.u8(match a {
            Action::Allow => 0,
            Action::Deny => 1,
            Action::NextTier => 2,
        });
    }
}

fn tier_code(kind: TierKind) -> u8 {
    match kind {
        TierKind::Admin => 0,
        TierKind::Application => 1,
        TierKind::Baseline => 2,
    }
}

/// Encodes the content of `parts` (all but the generation).
pub(crate) fn encode(parts: &ProgramParts) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(4096));
    w.0.extend_from_slice(MAGIC);
    w.u32(parts.format);
    w.str(&parts.device);
    w.len(parts.endpoints.len());
    for e in &parts.endpoints {
        w.str(&e.name);
        w.len(e.addresses.len());
        for a in &e.addresses {
            w.addr(a);
        }
    }
    w.len(parts.address_sets.len());
    for s in &parts.address_sets {
        w.str(&s.name);
        w.len(s.prefixes.prefixes().len());
        for p in s.prefixes.prefixes() {
            w.prefix(p);
        }
    }
    w.len(parts.tiers.len());
    for t in &parts.tiers {
        w.u8(tier_code(t.kind));
        w.len(t.rules.len());
        for r in &t.rules {
            w.str(&r.id);
            w.u8(match r.direction {
                Direction::Ingress => 0,
                Direction::Egress => 1,
            });
            w.len(r.endpoints.len());
            for e in &r.endpoints {
                w.u32(*e);
            }
            match r.remote {
                None => w.u8(0),
                Some(s) => {
                    w.u8(1);
                    w.u32(s);
                }
            }
            match r.protocol {
                None => w.u8(0),
                Some(Protocol(p)) => {
                    w.u8(1);
                    w.u8(p);
                }
            }
            w.ports(&r.src_ports);
            w.ports(&r.dst_ports);
            w.action(r.action);
            w.u8(u8::from(r.log));
            w.u8(u8::from(r.audit));
            w.opt_str(r.mirror.as_deref());
            w.opt_str(r.redirect.as_deref());
        }
        w.len(t.defaults.len());
        for d in &t.defaults {
            w.action(d.ingress);
            w.action(d.egress);
        }
    }
    w.action(parts.foreign);
    w.0
}
