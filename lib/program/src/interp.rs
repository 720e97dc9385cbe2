//! The reference interpreter: the meaning of a device program, written to be obviously right
//! rather than fast. Every faster implementation (the software classifier, the offload plan)
//! is tested against it.
//!
//! A packet is the first packet of a new connection: `src` initiates, `dst` responds. The
//! device judges each side it owns: the source's egress if the source is a local endpoint,
//! the destination's ingress if the destination is. Within one side the tiers run in order;
//! in a tier the first matching rule decides (`next-tier` moves on), and without a match the
//! tier's default for that endpoint and direction applies. Falling through the last tier
//! allows. The connection passes only if every judged side allows it; a packet that touches
//! no local endpoint gets the program's `foreign` verdict.

use std::net::IpAddr;

use crate::net::Protocol;
use crate::program::{Action, DeviceProgram, Direction, Rule, TierKind};

/// The first packet of a connection, as the interpreter sees it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Packet {
    /// Initiator's address.
    pub src: IpAddr,
    /// Responder's address.
    pub dst: IpAddr,
    /// IP protocol.
    pub protocol: Protocol,
    /// Initiator's port (ignored for protocols without ports).
    pub src_port: u16,
    /// Responder's port (ignored for protocols without ports).
    pub dst_port: u16,
}

/// What decided one side of a connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Decision<'p> {
    /// A rule with action allow or deny matched.
    Rule {
        /// The rule's tier.
        tier: TierKind,
        /// The rule.
        rule: &'p Rule,
    },
    /// No rule of the tier matched and its default allowed or denied.
    TierDefault {
        /// The tier.
        tier: TierKind,
        /// The default that applied (allow or deny).
        action: Action,
    },
    /// Every tier passed the connection on; the end of the program allows it.
    EndOfTiers,
}

/// The judgement of one side (one endpoint, one direction).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SideVerdict<'p> {
    /// Index of the local endpoint.
    pub endpoint: u32,
    /// Ingress for the destination, egress for the source.
    pub direction: Direction,
    /// Whether this side lets the connection through (an audited deny does).
    pub allowed: bool,
    /// What decided.
    pub decision: Decision<'p>,
    /// `next-tier` rules that matched on the way, in order.
    pub passed: Vec<(TierKind, &'p Rule)>,
}

impl SideVerdict<'_> {
    /// The deciding rule, if a rule decided.
    pub fn rule(&self) -> Option<&Rule> {
        match self.decision {
            Decision::Rule { rule, .. } => Some(rule),
            _ => None,
        }
    }
}

/// The judgement of a connection on one device.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Verdict<'p> {
    /// Whether the device lets the connection through.
    pub allowed: bool,
    /// The judged sides: the source's egress first, then the destination's ingress. Empty for
    /// foreign traffic.
    pub sides: Vec<SideVerdict<'p>>,
}

impl DeviceProgram {
    /// The local endpoint owning `ip`, if any.
    pub fn endpoint_of(&self, ip: IpAddr) -> Option<u32> {
        self.endpoints()
            .iter()
            .position(|e| e.addresses.contains(&ip))
            .map(|i| i as u32)
    }

    /// Judges the first packet of a connection.
    pub fn evaluate(&self, packet: &Packet) -> Verdict<'_> {
        let mut sides = Vec::new();
        if let Some(src) = self.endpoint_of(packet.src) {
            sides.push(self.evaluate_side(src, Direction::Egress, packet));
        }
        if let Some(dst) = self.endpoint_of(packet.dst) {
            sides.push(self.evaluate_side(dst, Direction::Ingress, packet));
        }
        let allowed = if sides.is_empty() {
            self.foreign() == Action::Allow
        } else {
            sides.iter().all(|s| s.allowed)
        };
        Verdict { allowed, sides }
    }

    /// Judges one side: `endpoint` is the local end, `direction` says whether it initiated.
    pub fn evaluate_side(
        &self,
        endpoint: u32,
        direction: Direction,
        packet: &Packet,
    ) -> SideVerdict<'_> {
        let remote = match direction {
            Direction::Egress => packet.dst,
            Direction::Ingress => packet.src,
        };
        let mut passed = Vec::new();
        'tiers: for tier in self.tiers() {
            for rule in &tier.rules {
                if !self.rule_matches(rule, endpoint, direction, remote, packet) {
                    continue;
                }
                if rule.action == Action::NextTier {
                    passed.push((tier.kind, rule));
                    continue 'tiers;
                }
                return SideVerdict {
                    endpoint,
                    direction,
                    allowed: rule.action == Action::Allow || rule.audit,
                    decision: Decision::Rule {
                        tier: tier.kind,
                        rule,
                    },
                    passed,
                };
            }
            let default = tier.defaults[endpoint as usize].get(direction);
            if default != Action::NextTier {
                return SideVerdict {
                    endpoint,
                    direction,
                    allowed: default == Action::Allow,
                    decision: Decision::TierDefault {
                        tier: tier.kind,
                        action: default,
                    },
                    passed,
                };
            }
        }
        SideVerdict {
            endpoint,
            direction,
            allowed: true,
            decision: Decision::EndOfTiers,
            passed,
        }
    }

    fn rule_matches(
        &self,
        rule: &Rule,
        endpoint: u32,
        direction: Direction,
        remote: IpAddr,
        packet: &Packet,
    ) -> bool {
        if rule.direction != direction || !rule.endpoints.contains(&endpoint) {
            return false;
        }
        if let Some(set) = rule.remote
            && !self.address_sets()[set as usize].prefixes.contains(remote)
        {
            return false;
        }
        if rule.protocol.is_some_and(|p| p != packet.protocol) {
            return false;
        }
        let port_ok = |ranges: &[crate::PortRange], port: u16| {
            ranges.is_empty() || ranges.iter().any(|r| r.contains(port))
        };
        port_ok(&rule.src_ports, packet.src_port) && port_ok(&rule.dst_ports, packet.dst_port)
    }
}
