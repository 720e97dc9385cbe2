//! What the embedder tells the agent: a [`MibSource`] that returns a [`MibSnapshot`] of
//! typed values. The agent maps them onto SNMPv2-MIB, IF-MIB and PALISADE-MIB.

use std::time::Instant;

use crate::Oid;

/// Where the agent reads the values it serves.
///
/// The agent calls [`snapshot`](MibSource::snapshot) once per request it answers (a
/// GETBULK of fifty rows sees one snapshot), from an async task: it should be cheap and
/// must not block, e.g. read atomics or clone a structure kept up to date elsewhere.
/// A panic in it is answered with `genErr`.
///
/// Closures are sources:
///
/// ```
/// use palisade_snmp::{MibSnapshot, MibSource, SystemGroup};
///
/// let source = || MibSnapshot::new(SystemGroup {
///     name: "dpu-7".into(),
///     ..SystemGroup::default()
/// });
/// assert_eq!(source.snapshot().system.name, "dpu-7");
/// ```
pub trait MibSource: Send + Sync + 'static {
    /// The values to serve now.
    fn snapshot(&self) -> MibSnapshot;
}

impl<F> MibSource for F
where
    F: Fn() -> MibSnapshot + Send + Sync + 'static,
{
    fn snapshot(&self) -> MibSnapshot {
        self()
    }
}

/// The values the agent serves, as of one moment.
///
/// Each group the embedder leaves at `None` answers `noSuchObject`: a vRouter agent fills
/// [`device`](Self::device), the fleet manager [`fleet`](Self::fleet).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MibSnapshot {
    /// SNMPv2-MIB `system`, always served.
    pub system: SystemGroup,
    /// IF-MIB `ifNumber`, `ifTable` and `ifXTable`, one row per interface.
    pub interfaces: Option<Vec<Interface>>,
    /// PALISADE-MIB `palisadeDevice`.
    pub device: Option<DeviceGroup>,
    /// PALISADE-MIB `palisadeFleet`.
    pub fleet: Option<FleetGroup>,
}

impl MibSnapshot {
    /// A snapshot with only the system group.
    pub fn new(system: SystemGroup) -> Self {
        MibSnapshot {
            system,
            ..MibSnapshot::default()
        }
    }
}

/// SNMPv2-MIB `system` (RFC 3418). `sysUpTime` is the agent's: the time since
/// [`serve`](crate::serve) started it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemGroup {
    /// `sysDescr`: the product and its version, for a person to read.
    pub descr: String,
    /// `sysObjectID`: [`oids::PALISADE_VROUTER`](crate::oids::PALISADE_VROUTER) or
    /// [`oids::PALISADE_FLEET_MANAGER`](crate::oids::PALISADE_FLEET_MANAGER).
    pub object_id: Oid,
    /// `sysContact`: who to call about this node.
    pub contact: String,
    /// `sysName`: the node's name.
    pub name: String,
    /// `sysLocation`: where the node is.
    pub location: String,
    /// `sysServices`: the sum of 2^(L-1) over the OSI layers L the node serves; only
    /// the low seven bits are served.
    pub services: u8,
}

impl Default for SystemGroup {
    /// A vRouter agent with empty strings, serving layers 3 and 4 (`sysServices` 12).
    fn default() -> Self {
        SystemGroup {
            descr: String::new(),
            object_id: crate::oids::PALISADE_VROUTER,
            contact: String::new(),
            name: String::new(),
            location: String::new(),
            services: 0b000_1100,
        }
    }
}

/// One interface: a row of `ifTable` and of `ifXTable` (RFC 2863).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// `ifIndex`, in 1..=2147483647 and stable while the agent runs. Rows outside that
    /// range, and all but the first of rows sharing an index, are not served.
    pub index: u32,
    /// `ifName`, e.g. "pf0vf3".
    pub name: String,
    /// `ifDescr`: the interface's hardware and software, for a person to read.
    pub descr: String,
    /// `ifAlias`: the name an operator gave the interface.
    pub alias: String,
    /// `ifType`, an IANAifType: 6 (`ethernetCsmacd`) by default.
    pub if_type: u32,
    /// `ifMtu`, in octets.
    pub mtu: u32,
    /// The speed in bits per second: `ifSpeed` (capped at 4294967295) and `ifHighSpeed`
    /// (in Mb/s).
    pub speed_bps: u64,
    /// `ifPhysAddress`; `None` for an interface without one.
    pub mac: Option<[u8; 6]>,
    /// `ifAdminStatus`: up(1) or down(2).
    pub admin_up: bool,
    /// `ifOperStatus`: up(1) or down(2).
    pub oper_up: bool,
    /// When the interface last changed state, for `ifLastChange`; `None`, or an instant
    /// before the agent started, is served as 0.
    pub last_change: Option<Instant>,
    /// The traffic counters.
    pub counters: InterfaceCounters,
}

impl Default for Interface {
    fn default() -> Self {
        Interface {
            index: 0,
            name: String::new(),
            descr: String::new(),
            alias: String::new(),
            if_type: 6,
            mtu: 1500,
            speed_bps: 0,
            mac: None,
            admin_up: true,
            oper_up: true,
            last_change: None,
            counters: InterfaceCounters::default(),
        }
    }
}

/// The 64-bit traffic counters of an interface. IF-MIB's 32-bit columns (`ifInOctets`,
/// ...) serve them modulo 2^32, the `ifHC*` columns in full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    /// Octets received: `ifInOctets`, `ifHCInOctets`.
    pub in_octets: u64,
    /// Unicast packets received: `ifInUcastPkts`, `ifHCInUcastPkts`.
    pub in_ucast_pkts: u64,
    /// Received packets dropped without an error: `ifInDiscards`.
    pub in_discards: u64,
    /// Received packets with errors: `ifInErrors`.
    pub in_errors: u64,
    /// Octets sent: `ifOutOctets`, `ifHCOutOctets`.
    pub out_octets: u64,
    /// Unicast packets sent: `ifOutUcastPkts`, `ifHCOutUcastPkts`.
    pub out_ucast_pkts: u64,
    /// Packets to send dropped without an error: `ifOutDiscards`.
    pub out_discards: u64,
    /// Packets that could not be sent because of errors: `ifOutErrors`.
    pub out_errors: u64,
}

/// PALISADE-MIB `palisadeDevice`: the state of one vRouter agent. Gauges above
/// 4294967295 are served as 4294967295.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceGroup {
    /// `palisadeDeviceGeneration`: the generation of the program enforced (0: none).
    pub generation: u64,
    /// `palisadeDeviceProgramHash`: the SHA-256 content hash of that program.
    pub program_hash: Option<[u8; 32]>,
    /// `palisadeDeviceSessionsActive`.
    pub sessions_active: u64,
    /// `palisadeDeviceSessionsCreated`, a counter.
    pub sessions_created: u64,
    /// `palisadeDeviceSessionsDenied`, a counter.
    pub sessions_denied: u64,
    /// `palisadeDeviceRulesHardware`: rules offloaded to the hardware flow table.
    pub rules_hardware: u64,
    /// `palisadeDeviceRulesSoftware`: rules evaluated in software.
    pub rules_software: u64,
    /// `palisadeDeviceHwTableUsed`: entries in use in the hardware flow table.
    pub hw_table_used: u64,
    /// `palisadeDeviceHwTableCapacity`: entries the hardware flow table holds.
    pub hw_table_capacity: u64,
    /// `palisadeDeviceManagerConnected`.
    pub manager_connected: bool,
}

/// PALISADE-MIB `palisadeFleet`: the fleet as the fleet manager sees it.
///
/// `palisadeFleetDevices`, `...InSync` and `...Connected` are counted from
/// [`devices`](Self::devices), so they always agree with the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetGroup {
    /// `palisadeFleetGeneration`: the generation of the latest committed intent.
    pub generation: u64,
    /// `palisadeFleetDeviceTable`, one row per device.
    pub devices: Vec<FleetDevice>,
}

/// A row of `palisadeFleetDeviceTable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetDevice {
    /// `palisadeFleetDeviceIndex`, at least 1 and kept for as long as the device is in
    /// the inventory. A row with index 0, and all but the first of rows sharing an
    /// index, are not served.
    pub index: u32,
    /// `palisadeFleetDeviceName`.
    pub name: String,
    /// `palisadeFleetDeviceState`.
    pub state: DeviceState,
    /// `palisadeFleetDeviceAckedGeneration`.
    pub acked_generation: u64,
    /// `palisadeFleetDeviceDesiredGeneration`.
    pub desired_generation: u64,
    /// When the fleet manager last heard from the device, for
    /// `palisadeFleetDeviceLastSeen`; `None`, or an instant before the agent started,
    /// is served as 0.
    pub last_seen: Option<Instant>,
}

/// `palisadeFleetDeviceState`: where a device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceState {
    /// inSync(1): connected and enforcing the desired generation.
    InSync,
    /// behind(2): connected, the desired generation not yet acked.
    Behind,
    /// failed(3): connected, and it failed to apply the desired generation.
    Failed,
    /// disconnected(4): was connected, is not any more.
    Disconnected,
    /// neverConnected(5): in the inventory, never connected.
    NeverConnected,
}

impl DeviceState {
    /// The value PALISADE-MIB gives the state.
    pub fn mib_value(self) -> i32 {
        match self {
            DeviceState::InSync => 1,
            DeviceState::Behind => 2,
            DeviceState::Failed => 3,
            DeviceState::Disconnected => 4,
            DeviceState::NeverConnected => 5,
        }
    }

    /// Whether the device is connected to the fleet manager: in sync, behind or failed.
    pub fn is_connected(self) -> bool {
        matches!(
            self,
            DeviceState::InSync | DeviceState::Behind | DeviceState::Failed
        )
    }
}
