//! The file form of a profile, exactly as serde reads it. Nothing here is checked beyond
//! its shape (unknown keys and unknown enum values are refused); `validate` turns it into
//! the public model or says what is wrong and where.

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::model::{Action, Api, DeviceKind, Function, MatchField, MatchKind, PortRangeStrategy};

/// A fact as written: `{value: ..., source: ...}` or `{value: ..., estimate: ...}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFact<T> {
    pub value: T,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub estimate: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// A fact with the place it was written.
pub(crate) type F<T> = Spanned<RawFact<T>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProfile {
    pub name: Spanned<String>,
    pub kind: DeviceKind,
    pub summary: String,
    pub identity: RawIdentity,
    pub rte_flow: RawRteFlow,
    #[serde(default)]
    pub offload: Option<Spanned<RawOffload>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentity {
    pub vendor: F<String>,
    pub model: F<String>,
    pub pci_ids: F<Vec<RawPciId>>,
    pub pmd: F<String>,
    pub dpdk: F<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPciId {
    pub vendor: u16,
    pub device: u16,
    #[serde(default)]
    pub subsystem_device: Option<u16>,
    pub function: Function,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRteFlow {
    pub sync: F<bool>,
    pub template: F<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOffload {
    pub groups: RawGroups,
    pub port_ranges: F<PortRangeStrategy>,
    pub conntrack: RawConntrack,
    pub engines: Vec<Spanned<RawEngine>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroups {
    pub count: F<u32>,
    pub jump: F<bool>,
    pub root: RawGroupLimits,
    #[serde(default)]
    pub non_root: Option<RawGroupLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroupLimits {
    pub priorities: F<u32>,
    #[serde(default)]
    pub unsupported_actions: Option<F<Vec<Action>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConntrack {
    pub capacity: F<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEngine {
    pub name: Spanned<String>,
    pub summary: String,
    pub api: F<Api>,
    pub capacity: F<u64>,
    pub insertion_rate: F<u64>,
    #[serde(default)]
    pub devargs: Option<F<Vec<String>>>,
    pub matches: RawMatches,
    pub actions: RawActions,
    #[serde(default)]
    pub uniform_field_set: Option<F<bool>>,
    #[serde(default)]
    pub max_mask_layouts: Option<F<u32>>,
    #[serde(default)]
    pub incompatible: Option<F<Vec<RawIncompatible>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIncompatible {
    pub fields: Vec<MatchField>,
    pub with: Vec<MatchField>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatches {
    pub eth: RawEth,
    pub vlan: RawVlan,
    pub ipv4: RawIpv4,
    pub ipv6: RawIpv6,
    pub tcp: RawTcp,
    pub udp: RawPorts,
    pub sctp: RawPorts,
    pub icmp: RawIcmp,
    pub icmp6: RawIcmp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEth {
    #[serde(rename = "type")]
    pub ether_type: F<MatchKind>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVlan {
    pub id: F<MatchKind>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIpv4 {
    pub src: F<MatchKind>,
    pub dst: F<MatchKind>,
    pub proto: F<MatchKind>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIpv6 {
    pub src: F<MatchKind>,
    pub dst: F<MatchKind>,
    pub next_header: F<MatchKind>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTcp {
    pub src_port: F<MatchKind>,
    pub dst_port: F<MatchKind>,
    pub flags: F<MatchKind>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPorts {
    pub src_port: F<MatchKind>,
    pub dst_port: F<MatchKind>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIcmp {
    #[serde(rename = "type")]
    pub icmp_type: F<MatchKind>,
    pub code: F<MatchKind>,
}

impl RawMatches {
    /// The facts in [`MatchField::ALL`] order.
    pub fn into_fields(self) -> Vec<(MatchField, F<MatchKind>)> {
        vec![
            (MatchField::EthType, self.eth.ether_type),
            (MatchField::VlanId, self.vlan.id),
            (MatchField::Ipv4Src, self.ipv4.src),
            (MatchField::Ipv4Dst, self.ipv4.dst),
            (MatchField::Ipv4Proto, self.ipv4.proto),
            (MatchField::Ipv6Src, self.ipv6.src),
            (MatchField::Ipv6Dst, self.ipv6.dst),
            (MatchField::Ipv6NextHeader, self.ipv6.next_header),
            (MatchField::TcpSrcPort, self.tcp.src_port),
            (MatchField::TcpDstPort, self.tcp.dst_port),
            (MatchField::TcpFlags, self.tcp.flags),
            (MatchField::UdpSrcPort, self.udp.src_port),
            (MatchField::UdpDstPort, self.udp.dst_port),
            (MatchField::SctpSrcPort, self.sctp.src_port),
            (MatchField::SctpDstPort, self.sctp.dst_port),
            (MatchField::IcmpType, self.icmp.icmp_type),
            (MatchField::IcmpCode, self.icmp.code),
            (MatchField::Icmp6Type, self.icmp6.icmp_type),
            (MatchField::Icmp6Code, self.icmp6.code),
        ]
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawActions {
    pub drop: F<bool>,
    pub queue: F<bool>,
    pub rss: F<bool>,
    pub jump: F<bool>,
    pub mark: F<bool>,
    pub count: F<bool>,
    pub represented_port: F<bool>,
    pub port_id: F<bool>,
    pub sample: F<bool>,
    pub meter: F<bool>,
    pub conntrack: F<bool>,
    pub age: F<bool>,
}

impl RawActions {
    /// The facts in [`Action::ALL`] order.
    pub fn into_actions(self) -> Vec<(Action, F<bool>)> {
        vec![
            (Action::Drop, self.drop),
            (Action::Queue, self.queue),
            (Action::Rss, self.rss),
            (Action::Jump, self.jump),
            (Action::Mark, self.mark),
            (Action::Count, self.count),
            (Action::RepresentedPort, self.represented_port),
            (Action::PortId, self.port_id),
            (Action::Sample, self.sample),
            (Action::Meter, self.meter),
            (Action::Conntrack, self.conntrack),
            (Action::Age, self.age),
        ]
    }
}
