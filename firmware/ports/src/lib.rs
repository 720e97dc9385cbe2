//! Packet ports for the vRouter: one [`Port`] trait and its implementations.
//!
//! * [`MemoryPort`] — an in-process pair of queues, for tests and the demo;
//! * [`AfPacketPort`] — a Linux raw socket bound to one interface (hosts, network-namespace
//!   tests; no DPDK needed);
//! * DPDK ports live in the `palisade-dpdk` crate and implement the same trait.
//!
//! Frames are plain byte buffers that the caller recycles: `recv` fills buffers it takes
//! from the caller's spare list, `send` drains a list. Ports never block.

mod af_packet;
mod memory;

pub use af_packet::AfPacketPort;
pub use memory::{MemoryPort, memory_pair};

use thiserror::Error;

/// A port error, naming the port.
#[derive(Debug, Error)]
#[error("port {port}: {what}: {source}")]
pub struct PortError {
    /// The port.
    pub port: String,
    /// What was being done.
    pub what: &'static str,
    /// The system error.
    #[source]
    pub source: std::io::Error,
}

/// Counters of a port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received.
    pub rx_frames: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames the port could not send (queue full, link down...).
    pub tx_dropped: u64,
}

/// A packet port.
pub trait Port: Send {
    /// The port's name (interface, vdev or memory name).
    fn name(&self) -> &str;

    /// Receives up to `max` frames without blocking, appending them to `out`; buffers come
    /// from `spare` when it has some. Returns how many were received.
    fn recv(
        &mut self,
        max: usize,
        out: &mut Vec<Vec<u8>>,
        spare: &mut Vec<Vec<u8>>,
    ) -> Result<usize, PortError>;

    /// Sends every frame of `frames` it can without blocking; sent (and dropped) buffers are
    /// moved to `spare`. Returns how many were sent.
    fn send(
        &mut self,
        frames: &mut Vec<Vec<u8>>,
        spare: &mut Vec<Vec<u8>>,
    ) -> Result<usize, PortError>;

    /// Counters.
    fn stats(&self) -> PortStats;
}
