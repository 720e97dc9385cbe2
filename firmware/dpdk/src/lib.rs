//! A safe layer over the system DPDK (22.11, through [`dpdk_sys`]): the one place in
//! Palisade where packets meet poll-mode drivers.
//!
//! # Model
//!
//! * [`Eal`] — DPDK's runtime. Started once per process ([`Eal::init`]; a second start is an
//!   error, as DPDK cannot do it) and never stopped. Everything else is created from an
//!   `&Eal`, so nothing reaches DPDK before it runs. Test binaries share one through
//!   [`Eal::get_or_init`].
//! * [`Mempool`] — a pool of packet buffers; pools live until the process exits, because
//!   drivers and in-flight packets may refer to them at any time.
//! * [`Mbuf`] — one packet, owned: dropping it frees it, [`Port::tx_burst`] hands it to the
//!   driver. Its bytes are a `&[u8]` / `&mut [u8]`.
//! * [`Port`] — one configured ethdev port, owned exclusively by one value (a second
//!   [`Port::configure`] of the same port fails), so its queues are never used from two
//!   threads at once. Ports come from probed devices ([`PortId::by_name`]) or from
//!   [`Vdev`]s: `net_ring`, `net_null`, `net_af_packet`, `net_tap`.
//! * [`flow`] — rte_flow rules on a port: typed patterns and actions, validate, create,
//!   destroy, query, flush, isolate. Errors carry DPDK's type, message and the part of the
//!   rule they blame; [`FlowError::is_unsupported`] is the "do it in software" signal.
//!
//! The fast path (burst I/O, mbuf alloc/free) calls DPDK's inline functions through
//! `dpdk-sys`'s shim and allocates nothing per packet: bursts fill and drain caller-owned
//! `Vec<Mbuf>`s.
//!
//! ```no_run
//! use palisade_dpdk::{Eal, Mempool, MempoolConfig, Port, PortConfig, Vdev};
//!
//! # fn main() -> Result<(), palisade_dpdk::Error> {
//! let eal = Eal::init(Eal::SOFTWARE_ONLY.iter().chain(&["-l", "0"]))?;
//! let pool = Mempool::create(eal, "pkts", &MempoolConfig::default())?;
//! let mut port = Port::configure(Vdev::Ring.create(eal, "0")?, &PortConfig::new(pool))?;
//! port.start()?;
//! let mut burst = Vec::with_capacity(Port::BURST);
//! loop {
//!     port.rx_burst(0, &mut burst);
//!     port.tx_burst(0, &mut burst);
//!     burst.clear(); // frees what the driver did not take
//! }
//! # }
//! ```

mod eal;
mod error;
pub mod flow;
mod mbuf;
mod mempool;
mod port;
mod vdev;

pub use eal::Eal;
pub use error::{Errno, Error};
pub use flow::FlowError;
pub use mbuf::Mbuf;
pub use mempool::{Mempool, MempoolConfig};
pub use port::{Link, MacAddr, Port, PortConfig, PortId, PortInfo, PortStats};
pub use vdev::Vdev;
