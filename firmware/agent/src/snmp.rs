//! What the agent answers over SNMP: its system group, one IF-MIB row per port, and
//! PALISADE-MIB's device group (generation, sessions, rules in hardware and software,
//! hardware table use, whether the manager is connected).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use palisade_snmp::{
    DeviceGroup, Interface, InterfaceCounters, MibSnapshot, MibSource, SystemGroup, oids,
};

use crate::Engine;

/// The agent's MIB.
pub(crate) struct AgentMib {
    engine: Arc<Engine>,
}

impl AgentMib {
    pub(crate) fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

impl MibSource for AgentMib {
    fn snapshot(&self) -> MibSnapshot {
        let e = &self.engine;
        let counters = e.counters();
        let applied = e.applied();
        let placement = e.placement();
        let (used, capacity) = *e.table.lock().unwrap_or_else(|p| p.into_inner());
        let interfaces = counters
            .ports
            .iter()
            .enumerate()
            .map(|(i, (name, s))| Interface {
                index: i as u32 + 1,
                name: name.clone(),
                descr: format!("palisade port {name}"),
                alias: String::new(),
                // ethernetCsmacd(6)
                if_type: 6,
                mtu: 1500,
                speed_bps: 0,
                mac: None,
                admin_up: true,
                oper_up: true,
                last_change: None,
                counters: InterfaceCounters {
                    in_octets: s.rx_bytes,
                    in_ucast_pkts: s.rx_frames,
                    in_discards: 0,
                    in_errors: 0,
                    out_octets: s.tx_bytes,
                    out_ucast_pkts: s.tx_frames,
                    out_discards: s.tx_dropped,
                    out_errors: 0,
                },
            })
            .collect();
        MibSnapshot {
            system: SystemGroup {
                descr: format!(
                    "Palisade vRouter {} (hw-profile {})",
                    env!("CARGO_PKG_VERSION"),
                    e.profile.name()
                ),
                object_id: oids::PALISADE_VROUTER,
                contact: String::new(),
                name: e.name.clone(),
                location: String::new(),
                // Layers 2 (datalink) and 3 (internet): 2 + 4.
                services: 6,
            },
            interfaces: Some(interfaces),
            device: Some(DeviceGroup {
                generation: applied.as_ref().map_or(0, |p| p.generation()),
                program_hash: applied.as_ref().map(|p| p.hash().0),
                sessions_active: counters.sessions,
                sessions_created: counters.created,
                sessions_denied: counters.denied,
                rules_hardware: u64::from(placement.hardware),
                rules_software: u64::from(placement.software + placement.split),
                hw_table_used: used,
                hw_table_capacity: capacity,
                manager_connected: e.connected.load(Ordering::Relaxed),
            }),
            fleet: None,
        }
    }
}
