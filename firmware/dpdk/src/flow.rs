//! rte_flow: rules that the NIC matches and acts on before software sees the packet.
//!
//! A rule is [`Attributes`] (direction, group, priority), a [`Pattern`] (a stack of protocol
//! headers, outermost first, each matching any header of its kind or a spec under a mask)
//! and [`Actions`] (drop, deliver to a queue, jump to a group, mark, count). The builders
//! own their data and produce DPDK's arrays only for the duration of a call, so a rule can
//! be validated on one port and created on several.
//!
//! ```no_run
//! use std::net::Ipv4Addr;
//! use palisade_dpdk::flow::{Actions, Attributes, Ipv4, Item, Match, Pattern, Tcp};
//! # fn f(port: &mut palisade_dpdk::Port) -> Result<(), palisade_dpdk::flow::FlowError> {
//! // tcp to 10.0.0.0/8 port 22: drop and count.
//! let pattern = Pattern::new()
//!     .eth(Item::Any)
//!     .ipv4(
//!         Match::new(Ipv4 { dst: Ipv4Addr::new(10, 0, 0, 0), ..Ipv4::default() })
//!             .mask(Ipv4 { dst: Ipv4Addr::new(255, 0, 0, 0), ..Ipv4::default() }),
//!     )
//!     .tcp(Match::new(Tcp { dst_port: 22, ..Tcp::default() }).mask(Tcp { dst_port: 0xffff, ..Tcp::default() }));
//! let actions = Actions::new().count().drop();
//! match port.create_flow(&Attributes::ingress(), &pattern, &actions) {
//!     Ok(_rule) => {}
//!     // The NIC cannot hold it: classify in software instead.
//!     Err(e) if e.is_unsupported() => {}
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```
//!
//! Rules live in the [`Port`] that created them and are addressed by [`FlowId`]: a handle
//! can never outlive its rule (flush and drop forget them all), so no call can pass DPDK a
//! destroyed rule.

use std::ffi::{CStr, c_void};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ptr::NonNull;

use dpdk_sys::{rte_flow_action_type as action_type, rte_flow_item_type as item_type};

use crate::error::Errno;
use crate::port::{MacAddr, Port};

/// Direction, group and priority of a rule (`rte_flow_attr`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Group (table) the rule lives in; group 0 sees every packet first.
    pub group: u32,
    /// Priority within the group; 0 is the highest.
    pub priority: u32,
    /// Applies to received packets.
    pub ingress: bool,
    /// Applies to sent packets.
    pub egress: bool,
    /// Applies in the embedded switch (transfer domain).
    pub transfer: bool,
}

impl Attributes {
    /// Ingress, group 0, priority 0.
    pub fn ingress() -> Attributes {
        Attributes {
            ingress: true,
            ..Attributes::default()
        }
    }

    fn raw(&self) -> dpdk_sys::rte_flow_attr {
        let mut attr = dpdk_sys::rte_flow_attr {
            group: self.group,
            priority: self.priority,
            ..Default::default()
        };
        attr.set_ingress(self.ingress.into());
        attr.set_egress(self.egress.into());
        attr.set_transfer(self.transfer.into());
        attr
    }
}

/// Ethernet header fields (`rte_flow_item_eth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Eth {
    /// Destination MAC.
    pub dst: MacAddr,
    /// Source MAC.
    pub src: MacAddr,
    /// EtherType (or TPID when VLAN-tagged).
    pub ether_type: u16,
    /// The packet has at least one VLAN tag.
    pub has_vlan: bool,
}

/// 802.1Q tag fields (`rte_flow_item_vlan`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vlan {
    /// Tag control information: priority (3 bits), DEI (1), VLAN id (12).
    pub tci: u16,
    /// EtherType of the payload.
    pub inner_type: u16,
    /// Another VLAN tag follows.
    pub has_more_vlan: bool,
}

/// IPv4 header fields (`rte_flow_item_ipv4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4 {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol of the payload (6 = TCP, 17 = UDP, ...).
    pub protocol: u8,
    /// Type of service (DSCP and ECN).
    pub tos: u8,
    /// Time to live.
    pub ttl: u8,
    /// Flags (3 bits) and fragment offset (13).
    pub fragment_offset: u16,
}

impl Default for Ipv4 {
    /// All zero: as a mask, matches anything.
    fn default() -> Self {
        Ipv4 {
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            protocol: 0,
            tos: 0,
            ttl: 0,
            fragment_offset: 0,
        }
    }
}

/// IPv6 header fields (`rte_flow_item_ipv6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6 {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Next header (6 = TCP, 17 = UDP, 58 = ICMPv6, ...).
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Version (4 bits), traffic class (8), flow label (20).
    pub vtc_flow: u32,
}

impl Default for Ipv6 {
    /// All zero: as a mask, matches anything.
    fn default() -> Self {
        Ipv6 {
            src: Ipv6Addr::UNSPECIFIED,
            dst: Ipv6Addr::UNSPECIFIED,
            next_header: 0,
            hop_limit: 0,
            vtc_flow: 0,
        }
    }
}

/// TCP header fields (`rte_flow_item_tcp`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tcp {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Flags (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, ...).
    pub flags: u8,
}

/// UDP header fields (`rte_flow_item_udp`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Udp {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

/// SCTP header fields (`rte_flow_item_sctp`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sctp {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Verification tag.
    pub tag: u32,
}

/// ICMP header fields (`rte_flow_item_icmp`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Icmp {
    /// Type.
    pub icmp_type: u8,
    /// Code.
    pub code: u8,
}

/// A header matched by value: `spec` under `mask` (the driver's default mask for the item
/// when none is given), or, with `last`, every value from `spec` to `last` under the mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<T> {
    spec: T,
    mask: Option<T>,
    last: Option<T>,
}

impl<T> Match<T> {
    /// Match `spec` under the item's default mask.
    pub fn new(spec: T) -> Match<T> {
        Match {
            spec,
            mask: None,
            last: None,
        }
    }

    /// Compare only the bits set in `mask`.
    pub fn mask(self, mask: T) -> Match<T> {
        Match {
            mask: Some(mask),
            ..self
        }
    }

    /// Match the range from the spec to `last` (inclusive), field by field.
    pub fn last(self, last: T) -> Match<T> {
        Match {
            last: Some(last),
            ..self
        }
    }
}

/// One header of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<T> {
    /// Any header of this kind (no spec).
    Any,
    /// Headers with these values.
    Match(Match<T>),
}

impl<T> From<Match<T>> for Item<T> {
    fn from(m: Match<T>) -> Item<T> {
        Item::Match(m)
    }
}

/// The C form of one spec, mask or last.
#[derive(Clone, Copy)]
enum RawSpec {
    Eth(dpdk_sys::rte_flow_item_eth),
    Vlan(dpdk_sys::rte_flow_item_vlan),
    Ipv4(dpdk_sys::rte_flow_item_ipv4),
    Ipv6(dpdk_sys::rte_flow_item_ipv6),
    Tcp(dpdk_sys::rte_flow_item_tcp),
    Udp(dpdk_sys::rte_flow_item_udp),
    Sctp(dpdk_sys::rte_flow_item_sctp),
    Icmp(dpdk_sys::rte_flow_item_icmp),
}

impl RawSpec {
    fn as_ptr(&self) -> *const c_void {
        match self {
            RawSpec::Eth(s) => std::ptr::from_ref(s).cast(),
            RawSpec::Vlan(s) => std::ptr::from_ref(s).cast(),
            RawSpec::Ipv4(s) => std::ptr::from_ref(s).cast(),
            RawSpec::Ipv6(s) => std::ptr::from_ref(s).cast(),
            RawSpec::Tcp(s) => std::ptr::from_ref(s).cast(),
            RawSpec::Udp(s) => std::ptr::from_ref(s).cast(),
            RawSpec::Sctp(s) => std::ptr::from_ref(s).cast(),
            RawSpec::Icmp(s) => std::ptr::from_ref(s).cast(),
        }
    }
}

/// A header type that a pattern item can match.
trait Header: Copy {
    const KIND: item_type::Type;
    const NAME: &'static str;
    fn raw(&self) -> RawSpec;
}

impl Header for Eth {
    const KIND: item_type::Type = item_type::RTE_FLOW_ITEM_TYPE_ETH;
    const NAME: &'static str = "eth";
    fn raw(&self) -> RawSpec {
        let mut item = dpdk_sys::rte_flow_item_eth {
            __bindgen_anon_1: dpdk_sys::rte_flow_item_eth__bindgen_ty_1 {
                hdr: dpdk_sys::rte_ether_hdr {
                    dst_addr: dpdk_sys::rte_ether_addr {
                        addr_bytes: self.dst.0,
                    },
                    src_addr: dpdk_sys::rte_ether_addr {
                        addr_bytes: self.src.0,
                    },
                    ether_type: self.ether_type.to_be(),
                },
            },
            _bindgen_align: [],
            _bitfield_1: Default::default(),
        };
        item.set_has_vlan(self.has_vlan.into());
        RawSpec::Eth(item)
    }
}

impl Header for Vlan {
    const KIND: item_type::Type = item_type::RTE_FLOW_ITEM_TYPE_VLAN;
    const NAME: &'static str = "vlan";
    fn raw(&self) -> RawSpec {
        let mut item = dpdk_sys::rte_flow_item_vlan {
            __bindgen_anon_1: dpdk_sys::rte_flow_item_vlan__bindgen_ty_1 {
                hdr: dpdk_sys::rte_vlan_hdr {
                    vlan_tci: self.tci.to_be(),
                    eth_proto: self.inner_type.to_be(),
                },
            },
            _bindgen_align: [],
            _bitfield_1: Default::default(),
        };
        item.set_has_more_vlan(self.has_more_vlan.into());
        RawSpec::Vlan(item)
    }
}

impl Header for Ipv4 {
    const KIND: item_type::Type = item_type::RTE_FLOW_ITEM_TYPE_IPV4;
    const NAME: &'static str = "ipv4";
    fn raw(&self) -> RawSpec {
        RawSpec::Ipv4(dpdk_sys::rte_flow_item_ipv4 {
            hdr: dpdk_sys::rte_ipv4_hdr {
                type_of_service: self.tos,
                fragment_offset: self.fragment_offset.to_be(),
                time_to_live: self.ttl,
                next_proto_id: self.protocol,
                src_addr: u32::from(self.src).to_be(),
                dst_addr: u32::from(self.dst).to_be(),
                ..Default::default()
            },
        })
    }
}

impl Header for Ipv6 {
    const KIND: item_type::Type = item_type::RTE_FLOW_ITEM_TYPE_IPV6;
    const NAME: &'static str = "ipv6";
    fn raw(&self) -> RawSpec {
        RawSpec::Ipv6(dpdk_sys::rte_flow_item_ipv6 {
            hdr: dpdk_sys::rte_ipv6_hdr {
                vtc_flow: self.vtc_flow.to_be(),
                proto: self.next_header,
                hop_limits: self.hop_limit,
                src_addr: self.src.octets(),
                dst_addr: self.dst.octets(),
                ..Default::default()
            },
            ..Default::default()
        })
    }
}

impl Header for Tcp {
    const KIND: item_type::Type = item_type::RTE_FLOW_ITEM_TYPE_TCP;
    const NAME: &'static str = "tcp";
    fn raw(&self) -> RawSpec {
        RawSpec::Tcp(dpdk_sys::rte_flow_item_tcp {
            hdr: dpdk_sys::rte_tcp_hdr {
                src_port: self.src_port.to_be(),
                dst_port: self.dst_port.to_be(),
                tcp_flags: self.flags,
                ..Default::default()
            },
        })
    }
}

impl Header for Udp {
    const KIND: item_type::Type = item_type::RTE_FLOW_ITEM_TYPE_UDP;
    const NAME: &'static str = "udp";
    fn raw(&self) -> RawSpec {
        RawSpec::Udp(dpdk_sys::rte_flow_item_udp {
            hdr: dpdk_sys::rte_udp_hdr {
                src_port: self.src_port.to_be(),
                dst_port: self.dst_port.to_be(),
                ..Default::default()
            },
        })
    }
}

impl Header for Sctp {
    const KIND: item_type::Type = item_type::RTE_FLOW_ITEM_TYPE_SCTP;
    const NAME: &'static str = "sctp";
    fn raw(&self) -> RawSpec {
        RawSpec::Sctp(dpdk_sys::rte_flow_item_sctp {
            hdr: dpdk_sys::rte_sctp_hdr {
                src_port: self.src_port.to_be(),
                dst_port: self.dst_port.to_be(),
                tag: self.tag.to_be(),
                ..Default::default()
            },
        })
    }
}

impl Header for Icmp {
    const KIND: item_type::Type = item_type::RTE_FLOW_ITEM_TYPE_ICMP;
    const NAME: &'static str = "icmp";
    fn raw(&self) -> RawSpec {
        RawSpec::Icmp(dpdk_sys::rte_flow_item_icmp {
            hdr: dpdk_sys::rte_icmp_hdr {
                icmp_type: self.icmp_type,
                icmp_code: self.code,
                ..Default::default()
            },
        })
    }
}

#[derive(Clone, Copy)]
struct RawItem {
    kind: item_type::Type,
    name: &'static str,
    spec: Option<RawSpec>,
    mask: Option<RawSpec>,
    last: Option<RawSpec>,
}

/// The headers a rule matches, outermost first (`rte_flow_item[]`; the END item is added
/// when the rule is used).
#[derive(Clone, Default)]
pub struct Pattern {
    items: Vec<RawItem>,
}

impl Pattern {
    /// An empty pattern (matches every packet).
    pub fn new() -> Pattern {
        Pattern::default()
    }

    /// Adds an Ethernet header.
    pub fn eth(self, item: impl Into<Item<Eth>>) -> Pattern {
        self.push(item.into())
    }

    /// Adds an 802.1Q tag.
    pub fn vlan(self, item: impl Into<Item<Vlan>>) -> Pattern {
        self.push(item.into())
    }

    /// Adds an IPv4 header.
    pub fn ipv4(self, item: impl Into<Item<Ipv4>>) -> Pattern {
        self.push(item.into())
    }

    /// Adds an IPv6 header.
    pub fn ipv6(self, item: impl Into<Item<Ipv6>>) -> Pattern {
        self.push(item.into())
    }

    /// Adds a TCP header.
    pub fn tcp(self, item: impl Into<Item<Tcp>>) -> Pattern {
        self.push(item.into())
    }

    /// Adds a UDP header.
    pub fn udp(self, item: impl Into<Item<Udp>>) -> Pattern {
        self.push(item.into())
    }

    /// Adds an SCTP header.
    pub fn sctp(self, item: impl Into<Item<Sctp>>) -> Pattern {
        self.push(item.into())
    }

    /// Adds an ICMP header.
    pub fn icmp(self, item: impl Into<Item<Icmp>>) -> Pattern {
        self.push(item.into())
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the pattern has no header.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn push<H: Header>(mut self, item: Item<H>) -> Pattern {
        let (spec, mask, last) = match item {
            Item::Any => (None, None, None),
            Item::Match(m) => (
                Some(m.spec.raw()),
                m.mask.as_ref().map(H::raw),
                m.last.as_ref().map(H::raw),
            ),
        };
        self.items.push(RawItem {
            kind: H::KIND,
            name: H::NAME,
            spec,
            mask,
            last,
        });
        self
    }

    /// DPDK's array, END-terminated, pointing into `self`.
    fn raw(&self) -> Vec<dpdk_sys::rte_flow_item> {
        let ptr = |s: &Option<RawSpec>| s.as_ref().map_or(std::ptr::null(), RawSpec::as_ptr);
        self.items
            .iter()
            .map(|i| dpdk_sys::rte_flow_item {
                type_: i.kind,
                spec: ptr(&i.spec),
                last: ptr(&i.last),
                mask: ptr(&i.mask),
            })
            .chain(std::iter::once(dpdk_sys::rte_flow_item {
                type_: item_type::RTE_FLOW_ITEM_TYPE_END,
                spec: std::ptr::null(),
                last: std::ptr::null(),
                mask: std::ptr::null(),
            }))
            .collect()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.items.iter().map(|i| i.name))
            .finish()
    }
}

#[derive(Clone, Copy)]
enum RawAction {
    Drop,
    Queue(dpdk_sys::rte_flow_action_queue),
    Jump(dpdk_sys::rte_flow_action_jump),
    Mark(dpdk_sys::rte_flow_action_mark),
    Count(dpdk_sys::rte_flow_action_count),
}

impl RawAction {
    fn name(&self) -> &'static str {
        match self {
            RawAction::Drop => "drop",
            RawAction::Queue(_) => "queue",
            RawAction::Jump(_) => "jump",
            RawAction::Mark(_) => "mark",
            RawAction::Count(_) => "count",
        }
    }

    fn raw(&self) -> dpdk_sys::rte_flow_action {
        let (type_, conf): (action_type::Type, *const c_void) = match self {
            RawAction::Drop => (action_type::RTE_FLOW_ACTION_TYPE_DROP, std::ptr::null()),
            RawAction::Queue(c) => (
                action_type::RTE_FLOW_ACTION_TYPE_QUEUE,
                std::ptr::from_ref(c).cast(),
            ),
            RawAction::Jump(c) => (
                action_type::RTE_FLOW_ACTION_TYPE_JUMP,
                std::ptr::from_ref(c).cast(),
            ),
            RawAction::Mark(c) => (
                action_type::RTE_FLOW_ACTION_TYPE_MARK,
                std::ptr::from_ref(c).cast(),
            ),
            RawAction::Count(c) => (
                action_type::RTE_FLOW_ACTION_TYPE_COUNT,
                std::ptr::from_ref(c).cast(),
            ),
        };
        dpdk_sys::rte_flow_action { type_, conf }
    }
}

/// What a rule does to matching packets, in order (`rte_flow_action[]`; the END action is
/// added when the rule is used).
#[derive(Clone, Default)]
pub struct Actions {
    actions: Vec<RawAction>,
}

impl Actions {
    /// No action yet.
    pub fn new() -> Actions {
        Actions::default()
    }

    /// Drop the packet.
    pub fn drop(self) -> Actions {
        self.push(RawAction::Drop)
    }

    /// Deliver the packet to rx queue `index`.
    pub fn queue(self, index: u16) -> Actions {
        self.push(RawAction::Queue(dpdk_sys::rte_flow_action_queue { index }))
    }

    /// Continue matching in group `group`.
    pub fn jump(self, group: u32) -> Actions {
        self.push(RawAction::Jump(dpdk_sys::rte_flow_action_jump { group }))
    }

    /// Tag the packet with `id` (the received mbuf carries it as its flow mark).
    pub fn mark(self, id: u32) -> Actions {
        self.push(RawAction::Mark(dpdk_sys::rte_flow_action_mark { id }))
    }

    /// Count hits and bytes (read with [`Port::query_flow_count`]).
    pub fn count(self) -> Actions {
        self.push(RawAction::Count(dpdk_sys::rte_flow_action_count { id: 0 }))
    }

    /// Number of actions.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// Whether there is no action.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    fn push(mut self, action: RawAction) -> Actions {
        self.actions.push(action);
        self
    }

    /// DPDK's array, END-terminated, pointing into `self`.
    fn raw(&self) -> Vec<dpdk_sys::rte_flow_action> {
        self.actions
            .iter()
            .map(RawAction::raw)
            .chain(std::iter::once(dpdk_sys::rte_flow_action {
                type_: action_type::RTE_FLOW_ACTION_TYPE_END,
                conf: std::ptr::null(),
            }))
            .collect()
    }
}

impl fmt::Debug for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.actions.iter().map(RawAction::name))
            .finish()
    }
}

/// A rule created on a [`Port`]; valid until destroyed or flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(u64);

/// Counters of a rule with a count action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCount {
    /// Packets that hit the rule, if the driver counts them.
    pub hits: Option<u64>,
    /// Bytes of those packets, if the driver counts them.
    pub bytes: Option<u64>,
}

/// What an rte_flow error is about (`rte_flow_error_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlowErrorKind {
    /// No particular object.
    Unspecified,
    /// The flow rule handle.
    Handle,
    /// The group attribute.
    AttrGroup,
    /// The priority attribute.
    AttrPriority,
    /// The ingress attribute.
    AttrIngress,
    /// The egress attribute.
    AttrEgress,
    /// The transfer attribute.
    AttrTransfer,
    /// The attributes as a whole.
    Attr,
    /// The number of pattern items.
    ItemNum,
    /// An item's spec.
    ItemSpec,
    /// An item's last.
    ItemLast,
    /// An item's mask.
    ItemMask,
    /// A pattern item.
    Item,
    /// The number of actions.
    ActionNum,
    /// An action's configuration.
    ActionConf,
    /// An action.
    Action,
    /// The current device state.
    State,
    /// A kind this crate does not know (a later DPDK).
    Other(u32),
}

impl FlowErrorKind {
    fn from_raw(kind: dpdk_sys::rte_flow_error_type::Type) -> FlowErrorKind {
        use dpdk_sys::rte_flow_error_type as t;
        match kind {
            t::RTE_FLOW_ERROR_TYPE_NONE | t::RTE_FLOW_ERROR_TYPE_UNSPECIFIED => {
                FlowErrorKind::Unspecified
            }
            t::RTE_FLOW_ERROR_TYPE_HANDLE => FlowErrorKind::Handle,
            t::RTE_FLOW_ERROR_TYPE_ATTR_GROUP => FlowErrorKind::AttrGroup,
            t::RTE_FLOW_ERROR_TYPE_ATTR_PRIORITY => FlowErrorKind::AttrPriority,
            t::RTE_FLOW_ERROR_TYPE_ATTR_INGRESS => FlowErrorKind::AttrIngress,
            t::RTE_FLOW_ERROR_TYPE_ATTR_EGRESS => FlowErrorKind::AttrEgress,
            t::RTE_FLOW_ERROR_TYPE_ATTR_TRANSFER => FlowErrorKind::AttrTransfer,
            t::RTE_FLOW_ERROR_TYPE_ATTR => FlowErrorKind::Attr,
            t::RTE_FLOW_ERROR_TYPE_ITEM_NUM => FlowErrorKind::ItemNum,
            t::RTE_FLOW_ERROR_TYPE_ITEM_SPEC => FlowErrorKind::ItemSpec,
            t::RTE_FLOW_ERROR_TYPE_ITEM_LAST => FlowErrorKind::ItemLast,
            t::RTE_FLOW_ERROR_TYPE_ITEM_MASK => FlowErrorKind::ItemMask,
            t::RTE_FLOW_ERROR_TYPE_ITEM => FlowErrorKind::Item,
            t::RTE_FLOW_ERROR_TYPE_ACTION_NUM => FlowErrorKind::ActionNum,
            t::RTE_FLOW_ERROR_TYPE_ACTION_CONF => FlowErrorKind::ActionConf,
            t::RTE_FLOW_ERROR_TYPE_ACTION => FlowErrorKind::Action,
            t::RTE_FLOW_ERROR_TYPE_STATE => FlowErrorKind::State,
            other => FlowErrorKind::Other(other),
        }
    }
}

impl fmt::Display for FlowErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            FlowErrorKind::Unspecified => "unspecified",
            FlowErrorKind::Handle => "flow handle",
            FlowErrorKind::AttrGroup => "group attribute",
            FlowErrorKind::AttrPriority => "priority attribute",
            FlowErrorKind::AttrIngress => "ingress attribute",
            FlowErrorKind::AttrEgress => "egress attribute",
            FlowErrorKind::AttrTransfer => "transfer attribute",
            FlowErrorKind::Attr => "attributes",
            FlowErrorKind::ItemNum => "number of pattern items",
            FlowErrorKind::ItemSpec => "item spec",
            FlowErrorKind::ItemLast => "item last",
            FlowErrorKind::ItemMask => "item mask",
            FlowErrorKind::Item => "pattern item",
            FlowErrorKind::ActionNum => "number of actions",
            FlowErrorKind::ActionConf => "action configuration",
            FlowErrorKind::Action => "action",
            FlowErrorKind::State => "device state",
            FlowErrorKind::Other(n) => return write!(f, "error type {n}"),
        };
        f.write_str(text)
    }
}

/// Which part of the rule an error points at (from `rte_flow_error.cause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowCause {
    /// The attributes.
    Attributes,
    /// Pattern item `index` (0-based), of kind `name` (`"sctp"`).
    Item {
        /// Position in the pattern.
        index: usize,
        /// The item's kind.
        name: &'static str,
    },
    /// Action `index` (0-based), of kind `name` (`"queue"`).
    Action {
        /// Position in the actions.
        index: usize,
        /// The action's kind.
        name: &'static str,
    },
}

impl fmt::Display for FlowCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowCause::Attributes => f.write_str("attributes"),
            FlowCause::Item { index, name } => write!(f, "pattern item {index} ({name})"),
            FlowCause::Action { index, name } => write!(f, "action {index} ({name})"),
        }
    }
}

/// An rte_flow call failed: the errno, `rte_flow_error`'s type and message, and which part of
/// the rule it blames.
///
/// Displays as
/// `rte_flow: validate on port 0: Function not implemented (ENOSYS: function not implemented)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowError {
    op: &'static str,
    port: u16,
    errno: Errno,
    kind: FlowErrorKind,
    cause: Option<FlowCause>,
    message: String,
}

impl FlowError {
    /// The driver cannot do this rule or has no rte_flow at all (`ENOSYS`, `ENOTSUP`): the
    /// rule belongs in software.
    pub fn is_unsupported(&self) -> bool {
        self.errno == Errno::ENOSYS || self.errno == Errno::ENOTSUP
    }

    /// The error number.
    pub fn errno(&self) -> Errno {
        self.errno
    }

    /// What the error is about.
    pub fn kind(&self) -> FlowErrorKind {
        self.kind
    }

    /// The part of the rule it blames, when the driver said.
    pub fn cause(&self) -> Option<FlowCause> {
        self.cause
    }

    /// The driver's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The call that failed (`"validate"`, `"create"`, ...).
    pub fn operation(&self) -> &'static str {
        self.op
    }

    /// The port it failed on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rte_flow: {} on port {}: ", self.op, self.port)?;
        if self.message.is_empty() {
            f.write_str("no message")?;
        } else {
            f.write_str(&self.message)?;
        }
        match (self.kind, self.cause) {
            (FlowErrorKind::Unspecified, None) => {}
            (kind, None) => write!(f, " [{kind}]")?,
            (FlowErrorKind::Item | FlowErrorKind::Action | FlowErrorKind::Attr, Some(cause)) => {
                write!(f, " [{cause}]")?
            }
            (kind, Some(cause)) => write!(f, " [{kind} of {cause}]")?,
        }
        write!(f, " ({})", self.errno)
    }
}

impl std::error::Error for FlowError {}

/// A rule's C arrays, alive for the duration of one rte_flow call.
struct RawRule<'a> {
    attr: dpdk_sys::rte_flow_attr,
    items: Vec<dpdk_sys::rte_flow_item>,
    actions: Vec<dpdk_sys::rte_flow_action>,
    pattern: &'a Pattern,
    actions_src: &'a Actions,
}

impl<'a> RawRule<'a> {
    fn new(attr: &Attributes, pattern: &'a Pattern, actions: &'a Actions) -> RawRule<'a> {
        RawRule {
            attr: attr.raw(),
            items: pattern.raw(),
            actions: actions.raw(),
            pattern,
            actions_src: actions,
        }
    }

    /// Which part of this rule `cause` points at, if any.
    fn cause(&self, cause: *const c_void) -> Option<FlowCause> {
        if cause.is_null() {
            return None;
        }
        if cause == std::ptr::from_ref(&self.attr).cast() {
            return Some(FlowCause::Attributes);
        }
        for (index, (raw, item)) in self.items.iter().zip(&self.pattern.items).enumerate() {
            let points_here =
                [std::ptr::from_ref(raw).cast(), raw.spec, raw.mask, raw.last].contains(&cause);
            if points_here {
                return Some(FlowCause::Item {
                    index,
                    name: item.name,
                });
            }
        }
        for (index, (raw, action)) in self
            .actions
            .iter()
            .zip(&self.actions_src.actions)
            .enumerate()
        {
            if cause == std::ptr::from_ref(raw).cast() || (cause == raw.conf) {
                return Some(FlowCause::Action {
                    index,
                    name: action.name(),
                });
            }
        }
        None
    }
}

/// A zeroed rte_flow_error for DPDK to fill.
fn blank_error() -> dpdk_sys::rte_flow_error {
    dpdk_sys::rte_flow_error {
        type_: dpdk_sys::rte_flow_error_type::RTE_FLOW_ERROR_TYPE_NONE,
        cause: std::ptr::null(),
        message: std::ptr::null(),
    }
}

impl Port {
    fn flow_error(
        &self,
        op: &'static str,
        errno: Errno,
        error: &dpdk_sys::rte_flow_error,
        rule: Option<&RawRule<'_>>,
    ) -> FlowError {
        let message = if error.message.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null message is a NUL-terminated string that DPDK keeps valid at
            // least until the next rte_flow call on this thread (static, or rte_strerror's
            // per-thread buffer); it is copied now.
            unsafe { CStr::from_ptr(error.message) }
                .to_string_lossy()
                .into_owned()
        };
        FlowError {
            op,
            port: self.id().get(),
            errno,
            kind: FlowErrorKind::from_raw(error.type_),
            cause: rule.and_then(|r| r.cause(error.cause)),
            message,
        }
    }

    /// Asks the driver whether it could create this rule now (`rte_flow_validate`).
    ///
    /// # Errors
    ///
    /// The driver's reason; [`FlowError::is_unsupported`] tells "belongs in software".
    pub fn validate_flow(
        &self,
        attr: &Attributes,
        pattern: &Pattern,
        actions: &Actions,
    ) -> Result<(), FlowError> {
        let rule = RawRule::new(attr, pattern, actions);
        let mut error = blank_error();
        // SAFETY: the arrays are END-terminated and point into `pattern`/`actions`, which
        // outlive the call; `error` is a valid out-pointer.
        let ret = unsafe {
            dpdk_sys::rte_flow_validate(
                self.id().get(),
                &rule.attr,
                rule.items.as_ptr(),
                rule.actions.as_ptr(),
                &mut error,
            )
        };
        if ret != 0 {
            return Err(self.flow_error("validate", Errno::from_ret(ret), &error, Some(&rule)));
        }
        Ok(())
    }

    /// Creates the rule in the NIC (`rte_flow_create`).
    ///
    /// # Errors
    ///
    /// The driver's reason; [`FlowError::is_unsupported`] tells "belongs in software".
    pub fn create_flow(
        &mut self,
        attr: &Attributes,
        pattern: &Pattern,
        actions: &Actions,
    ) -> Result<FlowId, FlowError> {
        let rule = RawRule::new(attr, pattern, actions);
        let mut error = blank_error();
        // SAFETY: as in validate_flow; DPDK copies what it keeps of the rule.
        let raw = unsafe {
            dpdk_sys::rte_flow_create(
                self.id().get(),
                &rule.attr,
                rule.items.as_ptr(),
                rule.actions.as_ptr(),
                &mut error,
            )
        };
        let Some(raw) = NonNull::new(raw) else {
            return Err(self.flow_error("create", Errno::last(), &error, Some(&rule)));
        };
        let id = FlowId(self.next_flow);
        self.next_flow += 1;
        self.flows.insert(id, raw);
        Ok(id)
    }

    /// Destroys a rule (`rte_flow_destroy`). On failure the rule stays.
    ///
    /// # Errors
    ///
    /// `ENOENT` for an id that is not a rule of this port; the driver's reason otherwise.
    pub fn destroy_flow(&mut self, id: FlowId) -> Result<(), FlowError> {
        let raw = self.flow_handle("destroy", id)?;
        let mut error = blank_error();
        // SAFETY: `raw` is a live rule of this port (it is in `flows`).
        let ret = unsafe { dpdk_sys::rte_flow_destroy(self.id().get(), raw.as_ptr(), &mut error) };
        if ret != 0 {
            return Err(self.flow_error("destroy", Errno::from_ret(ret), &error, None));
        }
        self.flows.remove(&id);
        Ok(())
    }

    /// Reads the counters of a rule created with [`Actions::count`] (`rte_flow_query`),
    /// and resets them when `reset`.
    ///
    /// # Errors
    ///
    /// `ENOENT` for an id that is not a rule of this port; the driver's reason otherwise.
    pub fn query_flow_count(&mut self, id: FlowId, reset: bool) -> Result<FlowCount, FlowError> {
        let raw = self.flow_handle("query", id)?;
        let conf = dpdk_sys::rte_flow_action_count { id: 0 };
        let action = dpdk_sys::rte_flow_action {
            type_: action_type::RTE_FLOW_ACTION_TYPE_COUNT,
            conf: std::ptr::from_ref(&conf).cast(),
        };
        let mut data = dpdk_sys::rte_flow_query_count::default();
        data.set_reset(reset.into());
        let mut error = blank_error();
        // SAFETY: `raw` is a live rule of this port; `action` describes a count action and
        // `data` is the rte_flow_query_count it fills; all outlive the call.
        let ret = unsafe {
            dpdk_sys::rte_flow_query(
                self.id().get(),
                raw.as_ptr(),
                &action,
                std::ptr::from_mut(&mut data).cast(),
                &mut error,
            )
        };
        if ret != 0 {
            return Err(self.flow_error("query", Errno::from_ret(ret), &error, None));
        }
        Ok(FlowCount {
            hits: (data.hits_set() != 0).then_some(data.hits),
            bytes: (data.bytes_set() != 0).then_some(data.bytes),
        })
    }

    /// Destroys every rule of the port (`rte_flow_flush`). All [`FlowId`]s of the port are
    /// forgotten even on failure, as DPDK then considers the handles destroyed.
    ///
    /// # Errors
    ///
    /// The driver's reason (`ENOSYS` for a driver without rte_flow).
    pub fn flush_flows(&mut self) -> Result<(), FlowError> {
        let mut error = blank_error();
        // SAFETY: `error` is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_flow_flush(self.id().get(), &mut error) };
        self.flows.clear();
        if ret != 0 {
            return Err(self.flow_error("flush", Errno::from_ret(ret), &error, None));
        }
        Ok(())
    }

    /// Isolated mode (`rte_flow_isolate`): when on, only packets that match a rule reach the
    /// port's queues and the rest stay with the kernel or other ports. Most drivers want the
    /// port stopped, some want it before the first configure.
    ///
    /// # Errors
    ///
    /// The driver's reason (`ENOSYS` for a driver without rte_flow).
    pub fn isolate(&mut self, on: bool) -> Result<(), FlowError> {
        let mut error = blank_error();
        // SAFETY: `error` is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_flow_isolate(self.id().get(), on.into(), &mut error) };
        if ret != 0 {
            return Err(self.flow_error("isolate", Errno::from_ret(ret), &error, None));
        }
        Ok(())
    }

    /// Number of rules this port holds.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    fn flow_handle(
        &self,
        op: &'static str,
        id: FlowId,
    ) -> Result<NonNull<dpdk_sys::rte_flow>, FlowError> {
        self.flows.get(&id).copied().ok_or_else(|| FlowError {
            op,
            port: self.id().get(),
            errno: Errno::new(dpdk_sys::ENOENT as i32),
            kind: FlowErrorKind::Handle,
            cause: None,
            message: format!("no flow rule {} on this port", id.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Eal, Mempool, MempoolConfig, PortConfig, Vdev};

    #[test]
    fn pattern_is_end_terminated_and_points_at_its_specs() {
        let pattern = Pattern::new()
            .eth(Item::Any)
            .ipv4(
                Match::new(Ipv4 {
                    dst: Ipv4Addr::new(10, 1, 2, 3),
                    protocol: 6,
                    ..Ipv4::default()
                })
                .mask(Ipv4 {
                    dst: Ipv4Addr::new(255, 255, 0, 0),
                    ..Ipv4::default()
                }),
            )
            .tcp(
                Match::new(Tcp {
                    dst_port: 1000,
                    ..Tcp::default()
                })
                .last(Tcp {
                    dst_port: 2000,
                    ..Tcp::default()
                }),
            );
        let raw = pattern.raw();
        assert_eq!(raw.len(), 4);
        assert_eq!(raw[0].type_, item_type::RTE_FLOW_ITEM_TYPE_ETH);
        assert!(raw[0].spec.is_null() && raw[0].mask.is_null() && raw[0].last.is_null());
        assert_eq!(raw[3].type_, item_type::RTE_FLOW_ITEM_TYPE_END);

        assert_eq!(raw[1].type_, item_type::RTE_FLOW_ITEM_TYPE_IPV4);
        assert!(raw[1].last.is_null());
        // SAFETY: an ipv4 item's spec and mask point at rte_flow_item_ipv4 values inside
        // `pattern`, which is alive.
        let (spec, mask) = unsafe {
            (
                &*raw[1].spec.cast::<dpdk_sys::rte_flow_item_ipv4>(),
                &*raw[1].mask.cast::<dpdk_sys::rte_flow_item_ipv4>(),
            )
        };
        // rte_ipv4_hdr is packed: copy fields out instead of referencing them.
        assert_eq!({ spec.hdr.dst_addr }.to_ne_bytes(), [10, 1, 2, 3]);
        assert_eq!({ spec.hdr.next_proto_id }, 6);
        assert_eq!({ mask.hdr.dst_addr }.to_ne_bytes(), [255, 255, 0, 0]);

        // SAFETY: a tcp item's spec and last point at rte_flow_item_tcp values in `pattern`.
        let (spec, last) = unsafe {
            (
                &*raw[2].spec.cast::<dpdk_sys::rte_flow_item_tcp>(),
                &*raw[2].last.cast::<dpdk_sys::rte_flow_item_tcp>(),
            )
        };
        assert_eq!(spec.hdr.dst_port.to_ne_bytes(), 1000u16.to_be_bytes());
        assert_eq!(last.hdr.dst_port.to_ne_bytes(), 2000u16.to_be_bytes());
        assert!(raw[2].mask.is_null());
        assert_eq!(format!("{pattern:?}"), r#"["eth", "ipv4", "tcp"]"#);
    }

    #[test]
    fn every_header_converts_to_network_order() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let RawSpec::Eth(eth) = Eth {
            dst: mac,
            ether_type: 0x0800,
            has_vlan: true,
            ..Eth::default()
        }
        .raw() else {
            panic!("eth")
        };
        // SAFETY: `hdr` is the variant that `raw` wrote.
        let hdr = unsafe { eth.__bindgen_anon_1.hdr };
        assert_eq!(hdr.dst_addr.addr_bytes, mac.0);
        assert_eq!(hdr.ether_type.to_ne_bytes(), [0x08, 0x00]);
        assert_eq!(eth.has_vlan(), 1);

        let RawSpec::Vlan(vlan) = Vlan {
            tci: 0x0064,
            inner_type: 0x86dd,
            has_more_vlan: false,
        }
        .raw() else {
            panic!("vlan")
        };
        // SAFETY: `hdr` is the variant that `raw` wrote.
        let hdr = unsafe { vlan.__bindgen_anon_1.hdr };
        assert_eq!(hdr.vlan_tci.to_ne_bytes(), [0x00, 0x64]);
        assert_eq!(hdr.eth_proto.to_ne_bytes(), [0x86, 0xdd]);

        let v6 = "2001:db8::1".parse().expect("address");
        let RawSpec::Ipv6(ipv6) = Ipv6 {
            dst: v6,
            next_header: 17,
            ..Ipv6::default()
        }
        .raw() else {
            panic!("ipv6")
        };
        assert_eq!(ipv6.hdr.dst_addr, v6.octets());
        assert_eq!(ipv6.hdr.proto, 17);

        let RawSpec::Udp(udp) = Udp {
            src_port: 53,
            dst_port: 0x1234,
        }
        .raw() else {
            panic!("udp")
        };
        assert_eq!(udp.hdr.dst_port.to_ne_bytes(), [0x12, 0x34]);
        assert_eq!(udp.hdr.src_port.to_ne_bytes(), [0, 53]);

        let RawSpec::Sctp(sctp) = Sctp {
            tag: 0x0102_0304,
            ..Sctp::default()
        }
        .raw() else {
            panic!("sctp")
        };
        assert_eq!(sctp.hdr.tag.to_ne_bytes(), [1, 2, 3, 4]);

        let RawSpec::Icmp(icmp) = Icmp {
            icmp_type: 8,
            code: 0,
        }
        .raw() else {
            panic!("icmp")
        };
        assert_eq!(icmp.hdr.icmp_type, 8);

        let RawSpec::Tcp(tcp) = Tcp {
            flags: 0x12,
            ..Tcp::default()
        }
        .raw() else {
            panic!("tcp")
        };
        assert_eq!(tcp.hdr.tcp_flags, 0x12);
    }

    #[test]
    fn actions_are_end_terminated() {
        let actions = Actions::new().mark(7).queue(3).jump(2).count().drop();
        let raw = actions.raw();
        let kinds: Vec<_> = raw.iter().map(|a| a.type_).collect();
        assert_eq!(
            kinds,
            [
                action_type::RTE_FLOW_ACTION_TYPE_MARK,
                action_type::RTE_FLOW_ACTION_TYPE_QUEUE,
                action_type::RTE_FLOW_ACTION_TYPE_JUMP,
                action_type::RTE_FLOW_ACTION_TYPE_COUNT,
                action_type::RTE_FLOW_ACTION_TYPE_DROP,
                action_type::RTE_FLOW_ACTION_TYPE_END,
            ]
        );
        // SAFETY: a queue action's conf points at the rte_flow_action_queue in `actions`.
        let queue = unsafe { &*raw[1].conf.cast::<dpdk_sys::rte_flow_action_queue>() };
        assert_eq!(queue.index, 3);
        assert!(raw[4].conf.is_null());
        assert_eq!(
            format!("{actions:?}"),
            r#"["mark", "queue", "jump", "count", "drop"]"#
        );
    }

    #[test]
    fn errors_name_the_part_of_the_rule_they_blame() {
        let pattern = Pattern::new().eth(Item::Any).sctp(Item::Any);
        let actions = Actions::new().queue(1);
        let rule = RawRule::new(&Attributes::ingress(), &pattern, &actions);
        assert_eq!(
            rule.cause(std::ptr::from_ref(&rule.items[1]).cast()),
            Some(FlowCause::Item {
                index: 1,
                name: "sctp"
            })
        );
        assert_eq!(
            rule.cause(rule.actions[0].conf),
            Some(FlowCause::Action {
                index: 0,
                name: "queue"
            })
        );
        assert_eq!(
            rule.cause(std::ptr::from_ref(&rule.attr).cast()),
            Some(FlowCause::Attributes)
        );
        assert_eq!(rule.cause(std::ptr::null()), None);

        let error = FlowError {
            op: "validate",
            port: 3,
            errno: Errno::ENOTSUP,
            kind: FlowErrorKind::Item,
            cause: Some(FlowCause::Item {
                index: 1,
                name: "sctp",
            }),
            message: "unsupported item".to_owned(),
        };
        assert!(error.is_unsupported());
        assert_eq!(
            error.to_string(),
            "rte_flow: validate on port 3: unsupported item [pattern item 1 (sctp)] \
             (ENOTSUP: operation not supported)"
        );
    }

    #[test]
    fn ids_that_are_not_rules_of_the_port_never_reach_dpdk() {
        // The only test of this binary that starts an EAL.
        let eal = Eal::get_or_init(Eal::SOFTWARE_ONLY.iter().chain(&["-l", "0"])).expect("EAL");
        let config = MempoolConfig {
            capacity: 255,
            cache_size: 0,
            ..MempoolConfig::default()
        };
        let pool = Mempool::create(eal, "unit_flow_ids", &config).expect("pool");
        let id = Vdev::Ring.create(eal, "unit").expect("vdev");
        let mut port = Port::configure(id, &PortConfig::new(pool)).expect("port");
        for err in [
            port.destroy_flow(FlowId(42)).expect_err("no such rule"),
            port.query_flow_count(FlowId(42), false)
                .expect_err("no such rule"),
        ] {
            assert_eq!(err.errno().name(), Some("ENOENT"));
            assert_eq!(err.kind(), FlowErrorKind::Handle);
            assert!(!err.is_unsupported());
            assert!(
                err.to_string().ends_with(
                    ": no flow rule 42 on this port [flow handle] (ENOENT: no such file or directory)"
                ),
                "{err}"
            );
        }
    }
}
