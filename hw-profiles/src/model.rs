//! The vocabulary of a profile: match fields and kinds, actions, APIs, and the validated
//! sections of a profile. Values here have passed the loader's checks.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::fact::Fact;

/// How precisely a NIC can match one header field.
///
/// The kinds are ordered: each one can express everything the previous ones can
/// (`AnyMask` ⊇ `Prefix` ⊇ `Exact` ⊇ `None`), so "supports at least `Prefix`" is
/// `kind >= MatchKind::Prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchKind {
    /// The field cannot be matched (the rule must not constrain it).
    None,
    /// Full-field equality only (mask all ones, or the field left open).
    Exact,
    /// CIDR-style masks: leading ones then zeros.
    Prefix,
    /// Arbitrary bitmasks.
    AnyMask,
}

impl MatchKind {
    /// The name used in profile files.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKind::None => "none",
            MatchKind::Exact => "exact",
            MatchKind::Prefix => "prefix",
            MatchKind::AnyMask => "any-mask",
        }
    }

    /// True when a field with this kind can express a match that needs `needed`.
    pub fn covers(self, needed: MatchKind) -> bool {
        self >= needed
    }
}

impl fmt::Display for MatchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An rte_flow pattern item the profile describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Item {
    /// `RTE_FLOW_ITEM_TYPE_ETH`.
    Eth,
    /// `RTE_FLOW_ITEM_TYPE_VLAN`.
    Vlan,
    /// `RTE_FLOW_ITEM_TYPE_IPV4`.
    Ipv4,
    /// `RTE_FLOW_ITEM_TYPE_IPV6`.
    Ipv6,
    /// `RTE_FLOW_ITEM_TYPE_TCP`.
    Tcp,
    /// `RTE_FLOW_ITEM_TYPE_UDP`.
    Udp,
    /// `RTE_FLOW_ITEM_TYPE_SCTP`.
    Sctp,
    /// `RTE_FLOW_ITEM_TYPE_ICMP`.
    Icmp,
    /// `RTE_FLOW_ITEM_TYPE_ICMP6`.
    Icmp6,
}

impl Item {
    /// Every item, in file order.
    pub const ALL: [Item; 9] = [
        Item::Eth,
        Item::Vlan,
        Item::Ipv4,
        Item::Ipv6,
        Item::Tcp,
        Item::Udp,
        Item::Sctp,
        Item::Icmp,
        Item::Icmp6,
    ];

    /// The key used in profile files.
    pub fn as_str(self) -> &'static str {
        match self {
            Item::Eth => "eth",
            Item::Vlan => "vlan",
            Item::Ipv4 => "ipv4",
            Item::Ipv6 => "ipv6",
            Item::Tcp => "tcp",
            Item::Udp => "udp",
            Item::Sctp => "sctp",
            Item::Icmp => "icmp",
            Item::Icmp6 => "icmp6",
        }
    }

    /// The fields of this item a profile describes.
    pub fn fields(self) -> impl Iterator<Item = MatchField> {
        MatchField::ALL
            .into_iter()
            .filter(move |f| f.item() == self)
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! match_fields {
    ($($variant:ident => $item:ident, $field:literal, $path:literal, $doc:literal;)*) => {
        /// One header field of one pattern item, written `item.field` in profile files
        /// (`ipv4.src`, `tcp.dst_port`, ...).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        pub enum MatchField {
            $(
                #[doc = $doc]
                #[serde(rename = $path)]
                $variant,
            )*
        }

        impl MatchField {
            /// Every field, in file order.
            pub const ALL: [MatchField; [$(MatchField::$variant),*].len()] =
                [$(MatchField::$variant),*];

            /// The pattern item the field belongs to.
            pub fn item(self) -> Item {
                match self {
                    $(MatchField::$variant => Item::$item,)*
                }
            }

            /// The field's key inside its item (`src`, `dst_port`, ...).
            pub fn name(self) -> &'static str {
                match self {
                    $(MatchField::$variant => $field,)*
                }
            }

            /// The `item.field` form.
            pub fn path(self) -> &'static str {
                match self {
                    $(MatchField::$variant => $path,)*
                }
            }
        }
    };
}

match_fields! {
    EthType => Eth, "type", "eth.type", "Ethernet type (`eth.type`).";
    VlanId => Vlan, "id", "vlan.id", "VLAN identifier (the VID bits of the TCI, `vlan.id`).";
    Ipv4Src => Ipv4, "src", "ipv4.src", "IPv4 source address (`ipv4.src`).";
    Ipv4Dst => Ipv4, "dst", "ipv4.dst", "IPv4 destination address (`ipv4.dst`).";
    Ipv4Proto => Ipv4, "proto", "ipv4.proto", "IPv4 protocol (`ipv4.proto`).";
    Ipv6Src => Ipv6, "src", "ipv6.src", "IPv6 source address (`ipv6.src`).";
    Ipv6Dst => Ipv6, "dst", "ipv6.dst", "IPv6 destination address (`ipv6.dst`).";
    Ipv6NextHeader => Ipv6, "next_header", "ipv6.next_header", "IPv6 next header (`ipv6.next_header`).";
    TcpSrcPort => Tcp, "src_port", "tcp.src_port", "TCP source port (`tcp.src_port`).";
    TcpDstPort => Tcp, "dst_port", "tcp.dst_port", "TCP destination port (`tcp.dst_port`).";
    TcpFlags => Tcp, "flags", "tcp.flags", "TCP flags (`tcp.flags`).";
    UdpSrcPort => Udp, "src_port", "udp.src_port", "UDP source port (`udp.src_port`).";
    UdpDstPort => Udp, "dst_port", "udp.dst_port", "UDP destination port (`udp.dst_port`).";
    SctpSrcPort => Sctp, "src_port", "sctp.src_port", "SCTP source port (`sctp.src_port`).";
    SctpDstPort => Sctp, "dst_port", "sctp.dst_port", "SCTP destination port (`sctp.dst_port`).";
    IcmpType => Icmp, "type", "icmp.type", "ICMP type (`icmp.type`).";
    IcmpCode => Icmp, "code", "icmp.code", "ICMP code (`icmp.code`).";
    Icmp6Type => Icmp6, "type", "icmp6.type", "ICMPv6 type (`icmp6.type`).";
    Icmp6Code => Icmp6, "code", "icmp6.code", "ICMPv6 code (`icmp6.code`).";
}

impl MatchField {
    /// The L4 port fields, the ones port-range handling is about.
    pub const PORTS: [MatchField; 6] = [
        MatchField::TcpSrcPort,
        MatchField::TcpDstPort,
        MatchField::UdpSrcPort,
        MatchField::UdpDstPort,
        MatchField::SctpSrcPort,
        MatchField::SctpDstPort,
    ];

    /// Position in [`MatchField::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for MatchField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// The text is not an `item.field` name a profile knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown match field `{name}`: expected one of {}", MatchField::ALL.map(MatchField::path).join(", "))]
pub struct UnknownField {
    /// The text that was given.
    pub name: String,
}

impl FromStr for MatchField {
    type Err = UnknownField;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MatchField::ALL
            .into_iter()
            .find(|f| f.path() == s)
            .ok_or_else(|| UnknownField {
                name: s.to_string(),
            })
    }
}

macro_rules! actions {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// An rte_flow action the planner may use.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        pub enum Action {
            $(
                #[doc = $doc]
                #[serde(rename = $name)]
                $variant,
            )*
        }

        impl Action {
            /// Every action, in file order.
            pub const ALL: [Action; [$(Action::$variant),*].len()] = [$(Action::$variant),*];

            /// The key used in profile files.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)*
                }
            }
        }
    };
}

actions! {
    Drop => "drop", "`RTE_FLOW_ACTION_TYPE_DROP`.";
    Queue => "queue", "`RTE_FLOW_ACTION_TYPE_QUEUE`.";
    Rss => "rss", "`RTE_FLOW_ACTION_TYPE_RSS`.";
    Jump => "jump", "`RTE_FLOW_ACTION_TYPE_JUMP` (to another group).";
    Mark => "mark", "`RTE_FLOW_ACTION_TYPE_MARK`.";
    Count => "count", "`RTE_FLOW_ACTION_TYPE_COUNT`.";
    RepresentedPort => "represented_port", "`RTE_FLOW_ACTION_TYPE_REPRESENTED_PORT`.";
    PortId => "port_id", "`RTE_FLOW_ACTION_TYPE_PORT_ID` (deprecated form of the above).";
    Sample => "sample", "`RTE_FLOW_ACTION_TYPE_SAMPLE` (sampling and mirroring).";
    Meter => "meter", "`RTE_FLOW_ACTION_TYPE_METER` (or `METER_MARK` under the template API).";
    Conntrack => "conntrack", "`RTE_FLOW_ACTION_TYPE_CONNTRACK`.";
    Age => "age", "`RTE_FLOW_ACTION_TYPE_AGE`.";
}

impl Action {
    /// Position in [`Action::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the planner turns an L4 port range into rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortRangeStrategy {
    /// One rule with `spec`..`last`. No hardware PMD of DPDK 22.11 accepts `last` on L4
    /// ports, so only simulated profiles may claim it.
    Native,
    /// Split the range into power-of-two aligned blocks, one masked rule each (at most
    /// 2·16 − 2 = 30 rules per range).
    PrefixMask,
    /// One exact rule per port in the range.
    PerValue,
}

impl PortRangeStrategy {
    /// The name used in profile files.
    pub fn as_str(self) -> &'static str {
        match self {
            PortRangeStrategy::Native => "native",
            PortRangeStrategy::PrefixMask => "prefix-mask",
            PortRangeStrategy::PerValue => "per-value",
        }
    }
}

impl fmt::Display for PortRangeStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rte_flow API an engine is programmed through.
///
/// In DPDK 22.11 the two are exclusive per port: mlx5 serves the template/async API only
/// with `dv_flow_en=2` and the synchronous API only without it. Engines that share an API
/// work side by side; engines of different APIs are alternatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Api {
    /// `rte_flow_create` and friends.
    Sync,
    /// `rte_flow_configure`, pattern/actions templates and `rte_flow_async_*`.
    Template,
}

impl Api {
    /// The name used in profile files.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Sync => "sync",
            Api::Template => "template",
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the profile describes a real device or one of Palisade's simulated NICs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// A real DPU/SmartNIC driven by a DPDK PMD.
    Hardware,
    /// A simulated NIC that enforces the profile in software (tests, demos).
    Simulated,
}

/// PCI function type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Function {
    /// Physical function.
    Pf,
    /// SR-IOV virtual function.
    Vf,
}

/// A PCI ID the PMD binds to for this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PciId {
    /// PCI vendor ID.
    pub vendor: u16,
    /// PCI device ID.
    pub device: u16,
    /// Subsystem device ID, when the PMD tells models apart by it (cnxk).
    pub subsystem_device: Option<u16>,
    /// Physical or virtual function.
    pub function: Function,
}

impl fmt::Display for PciId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor, self.device)?;
        if let Some(sub) = self.subsystem_device {
            write!(f, " (subsystem {sub:04x})")?;
        }
        Ok(())
    }
}

/// Who made the device and which driver runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Vendor name.
    pub vendor: Fact<String>,
    /// Model or family name.
    pub model: Fact<String>,
    /// PCI IDs the PMD binds to (empty for simulated devices).
    pub pci_ids: Fact<Vec<PciId>>,
    /// DPDK PMD (`mlx5`, `ice`, `cnxk`, ...).
    pub pmd: Fact<String>,
    /// The DPDK release the facts hold for.
    pub dpdk: Fact<String>,
}

/// Which rte_flow APIs the PMD implements in the profile's DPDK release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RteFlowApis {
    /// The synchronous API (`rte_flow_create`).
    pub sync: Fact<bool>,
    /// The template/async API (`rte_flow_configure`, `rte_flow_async_create`).
    pub template: Fact<bool>,
}

impl RteFlowApis {
    /// True when the PMD has neither API: rules stay in software.
    pub fn none(&self) -> bool {
        !self.sync.get() && !self.template.get()
    }
}

/// Limits of one class of groups (the root group, or every other group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLimits {
    /// Number of priority levels usable in the group (`0..priorities`, 0 is highest).
    pub priorities: Fact<u32>,
    /// Actions the engines support in general but refuse in these groups.
    pub unsupported_actions: Option<Fact<Vec<Action>>>,
}

impl GroupLimits {
    /// True when the action is listed as refused in these groups.
    pub fn refuses(&self, action: Action) -> bool {
        self.unsupported_actions
            .as_ref()
            .is_some_and(|f| f.value().contains(&action))
    }
}

/// The group (table) layout rules can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Groups {
    /// Number of usable group IDs, `0..count` (1: only the root group).
    pub count: Fact<u32>,
    /// Whether a rule can jump from one group to another.
    pub jump: Fact<bool>,
    /// Group 0, where every packet starts.
    pub root: GroupLimits,
    /// Groups 1 and up; absent when `count` is 1.
    pub non_root: Option<GroupLimits>,
}

impl Groups {
    /// The limits that apply to a group ID, or `None` when it is out of range.
    pub fn limits(&self, group: u32) -> Option<&GroupLimits> {
        if group >= self.count.get() {
            None
        } else if group == 0 {
            Some(&self.root)
        } else {
            self.non_root.as_ref()
        }
    }
}

/// Hardware connection tracking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conntrack {
    /// Connections the device can track (0: no hardware conntrack).
    pub capacity: Fact<u64>,
}

/// Two sets of fields one rule must not match together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatible {
    /// Matching any of these ...
    pub fields: Vec<MatchField>,
    /// ... excludes matching any of these in the same rule.
    pub with: Vec<MatchField>,
}

impl Incompatible {
    /// True when a rule matching `used` fields violates this restriction.
    pub fn violated_by(&self, used: &[MatchField]) -> bool {
        self.fields.iter().any(|f| used.contains(f)) && self.with.iter().any(|f| used.contains(f))
    }
}

/// Match kind per field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchTable {
    pub(crate) kinds: Vec<Fact<MatchKind>>,
}

impl MatchTable {
    /// The fact for one field.
    pub fn fact(&self, field: MatchField) -> &Fact<MatchKind> {
        &self.kinds[field.index()]
    }

    /// The match kind for one field.
    pub fn kind(&self, field: MatchField) -> MatchKind {
        self.fact(field).get()
    }
}

/// Action support.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionTable {
    pub(crate) supported: Vec<Fact<bool>>,
}

impl ActionTable {
    /// The fact for one action.
    pub fn fact(&self, action: Action) -> &Fact<bool> {
        &self.supported[action.index()]
    }

    /// Whether the action is supported.
    pub fn supports(&self, action: Action) -> bool {
        self.fact(action).get()
    }
}

/// One hardware classification engine of the device (a table a rule can land in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    /// Short name, unique in the profile (`sws`, `hws`, `switch`, `fdir`, `npc`).
    pub name: String,
    /// What the engine is, in a sentence.
    pub summary: String,
    /// The rte_flow API that programs it.
    pub api: Fact<Api>,
    /// Rules the engine holds.
    pub capacity: Fact<u64>,
    /// Sustained rule insertions per second.
    pub insertion_rate: Fact<u64>,
    /// Device arguments the facts assume (`key=value`).
    pub devargs: Option<Fact<Vec<String>>>,
    /// Match kind per field.
    pub matches: MatchTable,
    /// Action support.
    pub actions: ActionTable,
    /// When true, all rules of one packet type must match the same set of fields (one
    /// input set per flow type, as E810 Flow Director requires).
    pub uniform_field_set: Option<Fact<bool>>,
    /// How many distinct mask layouts the engine can hold at once (each layout costs a
    /// hardware resource such as an E810 switch recipe).
    pub max_mask_layouts: Option<Fact<u32>>,
    /// Field combinations one rule must not use together.
    pub incompatible: Option<Fact<Vec<Incompatible>>>,
}

impl Engine {
    /// The match kind for one field.
    pub fn match_kind(&self, field: MatchField) -> MatchKind {
        self.matches.kind(field)
    }

    /// True when the engine can match the field at least as precisely as `kind`.
    pub fn supports(&self, field: MatchField, kind: MatchKind) -> bool {
        self.match_kind(field).covers(kind)
    }

    /// Whether the engine supports the action.
    pub fn supports_action(&self, action: Action) -> bool {
        self.actions.supports(action)
    }

    /// The weakest kind the engine offers over the TCP and UDP port fields.
    pub fn port_match_kind(&self) -> MatchKind {
        [
            MatchField::TcpSrcPort,
            MatchField::TcpDstPort,
            MatchField::UdpSrcPort,
            MatchField::UdpDstPort,
        ]
        .into_iter()
        .map(|f| self.match_kind(f))
        .min()
        .unwrap_or(MatchKind::None)
    }

    /// The port-range expansion this engine needs: prefix-mask when its TCP/UDP ports take
    /// masks, per-value when they are exact only, `None` when ports cannot be matched.
    pub fn port_range_strategy(&self) -> Option<PortRangeStrategy> {
        match self.port_match_kind() {
            MatchKind::None => None,
            MatchKind::Exact => Some(PortRangeStrategy::PerValue),
            MatchKind::Prefix | MatchKind::AnyMask => Some(PortRangeStrategy::PrefixMask),
        }
    }

    /// True when a rule matching `used` fields breaks one of the engine's restrictions.
    pub fn forbids_combination(&self, used: &[MatchField]) -> bool {
        self.incompatible
            .as_ref()
            .is_some_and(|f| f.value().iter().any(|i| i.violated_by(used)))
    }
}

/// What the device can hold in hardware. Absent for software-only profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offload {
    /// Group layout and priorities.
    pub groups: Groups,
    /// How the planner expands L4 port ranges.
    pub port_ranges: Fact<PortRangeStrategy>,
    /// Hardware connection tracking.
    pub conntrack: Conntrack,
    /// The classification engines.
    pub engines: Vec<Engine>,
}
