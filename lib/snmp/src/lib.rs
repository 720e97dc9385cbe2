//! Palisade's SNMP agent, embedded by the vRouter agent and the fleet manager.
//!
//! # The model
//!
//! The embedder knows its state; this crate knows SNMP. They meet at one trait:
//! a [`MibSource`] returns a [`MibSnapshot`] of plain typed values (the system group, a
//! list of interfaces with 64-bit counters, the device or the fleet state), and the agent
//! lays each snapshot out as the instances of three MIBs:
//!
//! | MIB | subtree | from |
//! |---|---|---|
//! | SNMPv2-MIB `system` | 1.3.6.1.2.1.1 | [`SystemGroup`]; `sysUpTime` is the agent's |
//! | IF-MIB `ifNumber`, `ifTable`, `ifXTable` | 1.3.6.1.2.1.2, 1.3.6.1.2.1.31.1.1 | [`Interface`] |
//! | PALISADE-MIB `palisadeDevice` | 1.3.6.1.4.1.32473.1.1.1 | [`DeviceGroup`] (vRouter agent) |
//! | PALISADE-MIB `palisadeFleet` | 1.3.6.1.4.1.32473.1.1.2 | [`FleetGroup`] (fleet manager) |
//!
//! A group the snapshot leaves out answers `noSuchObject`. PALISADE-MIB itself, in SMIv2,
//! is `mibs/PALISADE-MIB.txt` in this crate: give it to the managers. It lives under the
//! documentation enterprise number 32473 (RFC 5612).
//!
//! Each request reads one snapshot, taken when the agent first needs it: a GETBULK
//! answer is consistent, and counters move between requests.
//!
//! Who may read what is the [`SnmpConfig`]: SNMPv2c communities and SNMPv3 users, each
//! bound to a view (included and excluded OID subtrees, RFC 3415). The agent is
//! read-only. [`SnmpHandle::send_trap`] sends a [`Notification`] of PALISADE-MIB to the
//! configured trap sinks, as an SNMPv2c or SNMPv3 trap.
//!
//! Under it is async-snmp's agent (UDP, BER, USM, VACM); none of its types appear in
//! this crate's API.
//!
//! # Robustness
//!
//! Requests come from the network. Malformed or truncated messages and unknown
//! communities are dropped without an answer; a failed SNMPv3 authentication gets only
//! the USM report RFC 3414 prescribes. They are counted ([`SnmpHandle::stats`]) and
//! logged: a summary at most every 10 s (target `palisade_snmp`), and async-snmp logs
//! each (target `async_snmp`, malformed ones at warn level). None stops the agent; a
//! panicking [`MibSource`] is answered with `genErr`.
//!
//! # Configuration
//!
//! ```yaml
#![doc = include_str!("../examples/snmp.yaml")]
//! ```
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use palisade_snmp::{oids, serve, MibSnapshot, Notification, SnmpConfig, SystemGroup};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = SnmpConfig::from_yaml(
//!     "listen: 127.0.0.1:1161
//! views: { all: { include: [1.3.6.1] } }
//! communities: [{ name: public, view: all }]
//! trap_sinks: [{ address: '127.0.0.1:1162', community: public }]",
//! )?;
//! let source = Arc::new(|| MibSnapshot::new(SystemGroup {
//!     descr: "Palisade vRouter agent".into(),
//!     object_id: oids::PALISADE_VROUTER,
//!     name: "dpu-7".into(),
//!     ..SystemGroup::default()
//! }));
//! let agent = serve(config, source).await?;
//! println!("SNMP on {}", agent.local_addr());
//! agent
//!     .send_trap(&Notification::DeviceLost { device: "dpu-9".into() })
//!     .await;
//! agent.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod agent;
mod config;
mod layout;
mod notification;
mod oid;
mod snapshot;
mod tree;

pub use agent::{SinkReport, SnmpError, SnmpHandle, SnmpStats, TrapReport, serve};
pub use config::{ConfigError, SnmpConfig};
pub use notification::Notification;
pub use oid::{Oid, OidError, oids};
pub use snapshot::{
    DeviceGroup, DeviceState, FleetDevice, FleetGroup, Interface, InterfaceCounters, MibSnapshot,
    MibSource, SystemGroup,
};
