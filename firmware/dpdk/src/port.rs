//! Ethernet ports: configuration, burst I/O, counters and link state.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char};
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::eal::Eal;
use crate::error::{Errno, Error};
use crate::mbuf::Mbuf;
use crate::mempool::Mempool;

const MAX_PORTS: usize = dpdk_sys::RTE_MAX_ETHPORTS as usize;

/// Which ports a [`Port`] value drives, so that no two can use one port's queues.
static CLAIMED: [AtomicBool; MAX_PORTS] = [const { AtomicBool::new(false) }; MAX_PORTS];

/// The id of an ethdev port that exists (a probed device or a created vdev).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(u16);

impl PortId {
    /// The port with this ethdev name (a vdev's name, e.g. `net_ring0`, or a PCI address).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchPort`] when no port has this name.
    pub fn by_name(_eal: &Eal, name: &str) -> Result<PortId, Error> {
        let c_name = CString::new(name).map_err(|_| Error::NoSuchPort(name.to_owned()))?;
        let mut id = 0u16;
        // SAFETY: c_name is a valid C string and `id` a valid out-pointer for the call.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c_name.as_ptr(), &mut id) };
        if ret != 0 {
            return Err(Error::NoSuchPort(name.to_owned()));
        }
        Ok(PortId(id))
    }

    /// The port with this numeric id, if it exists.
    pub fn new(_eal: &Eal, id: u16) -> Option<PortId> {
        // SAFETY: any id may be asked about once the EAL runs.
        let valid = unsafe { dpdk_sys::rte_eth_dev_is_valid_port(id) } == 1;
        valid.then_some(PortId(id))
    }

    /// The numeric id.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// How to configure a port: queues and the pool its rx queues fill.
#[derive(Debug, Clone, Copy)]
pub struct PortConfig {
    /// Pool the driver takes rx buffers from.
    pub mempool: Mempool,
    /// Number of rx queues (at least 1).
    pub rx_queues: u16,
    /// Number of tx queues (at least 1).
    pub tx_queues: u16,
    /// Descriptors per rx queue, adjusted to the driver's limits.
    pub rx_descriptors: u16,
    /// Descriptors per tx queue, adjusted to the driver's limits.
    pub tx_descriptors: u16,
}

impl PortConfig {
    /// One rx and one tx queue of 1024 descriptors each.
    pub fn new(mempool: Mempool) -> PortConfig {
        PortConfig {
            mempool,
            rx_queues: 1,
            tx_queues: 1,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
        }
    }

    /// The same with `rx` rx queues and `tx` tx queues.
    pub fn queues(self, rx: u16, tx: u16) -> PortConfig {
        PortConfig {
            rx_queues: rx,
            tx_queues: tx,
            ..self
        }
    }
}

/// What a port is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// The ethdev name (`net_ring0`, a PCI address...).
    pub name: String,
    /// The driver (`net_ring`, `net_af_packet`, `mlx5_pci`...).
    pub driver: String,
    /// Most rx queues the driver allows.
    pub max_rx_queues: u16,
    /// Most tx queues the driver allows.
    pub max_tx_queues: u16,
}

/// A port's basic counters (`rte_eth_stats`). Which ones a driver fills is its choice:
/// net_ring counts packets but not bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets dropped by the hardware because the rx queues were full.
    pub rx_missed: u64,
    /// Erroneous received packets.
    pub rx_errors: u64,
    /// Failed transmissions.
    pub tx_errors: u64,
    /// Receives that failed for lack of mbufs.
    pub rx_no_mbuf: u64,
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Whether the link is up.
    pub up: bool,
    /// Speed in Mb/s (0 when unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
    /// Speed negotiated automatically.
    pub autoneg: bool,
}

/// A configured ethdev port that this value drives exclusively: burst I/O, start/stop,
/// counters, and its rte_flow rules (see the [`flow`](crate::flow) module).
///
/// Dropping it stops the port, destroys its flow rules and closes it (for a vdev, closing
/// releases the port id).
///
/// Burst calls take `&mut self`: DPDK's queues are not thread-safe, and one owner per port
/// makes that a compile-time fact.
#[derive(Debug)]
pub struct Port {
    id: u16,
    rx_queues: u16,
    tx_queues: u16,
    started: bool,
    pub(crate) flows: HashMap<crate::flow::FlowId, NonNull<dpdk_sys::rte_flow>>,
    pub(crate) next_flow: u64,
}

// SAFETY: a Port owns its port id exclusively (CLAIMED); ethdev control and burst calls may
// come from any thread as long as one thread at a time uses a queue, which `&mut self`
// guarantees. The flow handles are only passed back to rte_flow for this port.
unsafe impl Send for Port {}

/// Releases a port claim unless disarmed (when `configure` fails half-way).
struct Claim(u16);

impl Drop for Claim {
    fn drop(&mut self) {
        CLAIMED[usize::from(self.0)].store(false, Ordering::Release);
    }
}

impl Port {
    /// Packets [`rx_burst`](Port::rx_burst) makes room for when the Vec it is given is full.
    pub const BURST: usize = 32;

    /// Configures the port (`rte_eth_dev_configure`) and sets up its queues; it is stopped.
    ///
    /// # Errors
    ///
    /// [`Error::PortInUse`] when another `Port` drives it; [`Error::InvalidArgument`] for a
    /// queue count the driver cannot do; [`Error::Port`] when DPDK refuses.
    pub fn configure(id: PortId, config: &PortConfig) -> Result<Port, Error> {
        let port = id.get();
        // A PortId comes from DPDK, which never hands out ids >= RTE_MAX_ETHPORTS.
        let slot = CLAIMED
            .get(usize::from(port))
            .ok_or_else(|| Error::NoSuchPort(port.to_string()))?;
        if slot.swap(true, Ordering::AcqRel) {
            return Err(Error::PortInUse(port));
        }
        let claim = Claim(port);

        let info = port_info(port)?;
        for (what, asked, max) in [
            ("rx queue count", config.rx_queues, info.max_rx_queues),
            ("tx queue count", config.tx_queues, info.max_tx_queues),
        ] {
            if asked == 0 || asked > max {
                return Err(Error::InvalidArgument {
                    what,
                    reason: format!(
                        "{asked} for {} ({}), which takes 1 to {max}",
                        info.name, info.driver
                    ),
                });
            }
        }

        let conf = dpdk_sys::rte_eth_conf::default();
        // SAFETY: the port exists and is ours (claimed); conf is a valid zeroed config
        // (no offloads, no RSS, default MTU) that DPDK copies.
        let ret = unsafe {
            dpdk_sys::rte_eth_dev_configure(port, config.rx_queues, config.tx_queues, &conf)
        };
        check(port, "rte_eth_dev_configure", ret)?;

        let (mut rx_desc, mut tx_desc) = (config.rx_descriptors, config.tx_descriptors);
        // SAFETY: valid out-pointers; the port is configured.
        let ret =
            unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(port, &mut rx_desc, &mut tx_desc) };
        check(port, "rte_eth_dev_adjust_nb_rx_tx_desc", ret)?;

        // SAFETY: the port exists.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(port) };
        // SOCKET_ID_ANY (-1) travels as an unsigned int, as in DPDK's own applications.
        let socket = socket as u32;
        for queue in 0..config.rx_queues {
            // SAFETY: queue < the configured count; NULL rxconf selects the driver's
            // defaults; the mempool lives as long as the process.
            let ret = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    port,
                    queue,
                    rx_desc,
                    socket,
                    std::ptr::null(),
                    config.mempool.as_ptr(),
                )
            };
            check(port, "rte_eth_rx_queue_setup", ret)?;
        }
        for queue in 0..config.tx_queues {
            // SAFETY: queue < the configured count; NULL txconf selects the defaults.
            let ret = unsafe {
                dpdk_sys::rte_eth_tx_queue_setup(port, queue, tx_desc, socket, std::ptr::null())
            };
            check(port, "rte_eth_tx_queue_setup", ret)?;
        }

        std::mem::forget(claim);
        Ok(Port {
            id: port,
            rx_queues: config.rx_queues,
            tx_queues: config.tx_queues,
            started: false,
            flows: HashMap::new(),
            next_flow: 0,
        })
    }

    /// The port's id.
    pub fn id(&self) -> PortId {
        PortId(self.id)
    }

    /// Starts the port: its queues begin to receive and send.
    ///
    /// # Errors
    ///
    /// [`Error::Port`] when the driver cannot start (e.g. an af_packet interface is gone).
    pub fn start(&mut self) -> Result<(), Error> {
        // SAFETY: the port is configured and ours.
        let ret = unsafe { dpdk_sys::rte_eth_dev_start(self.id) };
        check(self.id, "rte_eth_dev_start", ret)?;
        self.started = true;
        Ok(())
    }

    /// Stops the port. Bursts on a stopped port move nothing (and do not call DPDK).
    ///
    /// # Errors
    ///
    /// [`Error::Port`] when the driver fails to stop.
    pub fn stop(&mut self) -> Result<(), Error> {
        // SAFETY: the port is configured and ours.
        let ret = unsafe { dpdk_sys::rte_eth_dev_stop(self.id) };
        check(self.id, "rte_eth_dev_stop", ret)?;
        self.started = false;
        Ok(())
    }

    /// Whether the port is started.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Receives packets from rx queue `queue`, appending them to `out`; returns how many.
    ///
    /// It receives at most `out`'s spare capacity (a full `out` first grows by
    /// [`Port::BURST`]); reuse one Vec per loop to keep the fast path free of allocation.
    ///
    /// # Panics
    ///
    /// When `queue` is not one of the configured rx queues (DPDK itself would not check).
    pub fn rx_burst(&mut self, queue: u16, out: &mut Vec<Mbuf>) -> usize {
        assert!(
            queue < self.rx_queues,
            "rx queue {queue} of port {} does not exist ({} configured)",
            self.id,
            self.rx_queues
        );
        if !self.started {
            // DPDK's stand-in burst function for a stopped port logs an error and a stack
            // trace on every call.
            return 0;
        }
        if out.len() == out.capacity() {
            out.reserve(Self::BURST);
        }
        let room = u16::try_from(out.capacity() - out.len()).unwrap_or(u16::MAX);
        // Mbuf is a transparent NonNull<rte_mbuf>: the spare slots can take the pointers.
        let slots = out
            .spare_capacity_mut()
            .as_mut_ptr()
            .cast::<*mut dpdk_sys::rte_mbuf>();
        // SAFETY: the queue exists and the port is started (checked above); `slots` has
        // room for `room` pointers.
        let n = unsafe { dpdk_sys::rte_eth_rx_burst(self.id, queue, slots, room) };
        let n = usize::from(n);
        // SAFETY: the driver wrote n valid, non-null mbuf pointers that it gives up, into
        // the first n spare slots.
        unsafe { out.set_len(out.len() + n) };
        n
    }

    /// Hands the packets of `pkts` to tx queue `queue`, front first; returns how many the
    /// driver took. Those leave `pkts`; the ones it did not take (queue full) stay in
    /// `pkts`, in order, to retry or drop.
    ///
    /// # Panics
    ///
    /// When `queue` is not one of the configured tx queues.
    pub fn tx_burst(&mut self, queue: u16, pkts: &mut Vec<Mbuf>) -> usize {
        assert!(
            queue < self.tx_queues,
            "tx queue {queue} of port {} does not exist ({} configured)",
            self.id,
            self.tx_queues
        );
        if !self.started {
            return 0;
        }
        let len = pkts.len();
        let count = u16::try_from(len).unwrap_or(u16::MAX);
        let base = pkts.as_mut_ptr();
        // SAFETY: the queue exists and the port is started; `base` points to `count` valid
        // mbufs (Mbuf is a transparent pointer).
        let sent = unsafe {
            dpdk_sys::rte_eth_tx_burst(
                self.id,
                queue,
                base.cast::<*mut dpdk_sys::rte_mbuf>(),
                count,
            )
        };
        let sent = usize::from(sent);
        // SAFETY: the driver now owns the first `sent` mbufs, so they must not be dropped
        // here: the unsent tail moves to the front (regions may overlap, hence `copy`) and
        // the length shrinks to cover exactly the mbufs we still own.
        unsafe {
            pkts.set_len(0);
            std::ptr::copy(base.add(sent), base, len - sent);
            pkts.set_len(len - sent);
        }
        sent
    }

    /// Name, driver and queue limits.
    ///
    /// # Errors
    ///
    /// [`Error::Port`] when the driver cannot tell.
    pub fn info(&self) -> Result<PortInfo, Error> {
        port_info(self.id)
    }

    /// The basic counters.
    ///
    /// # Errors
    ///
    /// [`Error::Port`] when the driver cannot tell.
    pub fn stats(&self) -> Result<PortStats, Error> {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: valid out-pointer; the port is ours.
        let ret = unsafe { dpdk_sys::rte_eth_stats_get(self.id, &mut s) };
        check(self.id, "rte_eth_stats_get", ret)?;
        Ok(PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_no_mbuf: s.rx_nombuf,
        })
    }

    /// Sets the basic counters to zero.
    ///
    /// # Errors
    ///
    /// [`Error::Port`] when the driver cannot.
    pub fn reset_stats(&mut self) -> Result<(), Error> {
        // SAFETY: the port is ours.
        let ret = unsafe { dpdk_sys::rte_eth_stats_reset(self.id) };
        check(self.id, "rte_eth_stats_reset", ret)
    }

    /// The link state, without waiting for negotiation.
    ///
    /// # Errors
    ///
    /// [`Error::Port`] when the driver cannot tell.
    pub fn link(&self) -> Result<Link, Error> {
        let mut link = dpdk_sys::rte_eth_link::default();
        // SAFETY: valid out-pointer; the port is ours.
        let ret = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.id, &mut link) };
        check(self.id, "rte_eth_link_get_nowait", ret)?;
        Ok(Link {
            up: link.link_status() != 0,
            speed_mbps: link.link_speed,
            full_duplex: link.link_duplex() != 0,
            autoneg: link.link_autoneg() != 0,
        })
    }

    /// The port's MAC address.
    ///
    /// # Errors
    ///
    /// [`Error::Port`] when the driver cannot tell.
    pub fn mac_addr(&self) -> Result<MacAddr, Error> {
        let mut addr = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid out-pointer; the port is ours.
        let ret = unsafe { dpdk_sys::rte_eth_macaddr_get(self.id, &mut addr) };
        check(self.id, "rte_eth_macaddr_get", ret)?;
        Ok(MacAddr(addr.addr_bytes))
    }

    /// Turns promiscuous mode on or off.
    ///
    /// # Errors
    ///
    /// [`Error::Port`] when the driver refuses (`ENOTSUP` if it has no such mode).
    pub fn set_promiscuous(&mut self, on: bool) -> Result<(), Error> {
        // SAFETY: the port is ours.
        let ret = unsafe {
            if on {
                dpdk_sys::rte_eth_promiscuous_enable(self.id)
            } else {
                dpdk_sys::rte_eth_promiscuous_disable(self.id)
            }
        };
        let call = if on {
            "rte_eth_promiscuous_enable"
        } else {
            "rte_eth_promiscuous_disable"
        };
        check(self.id, call, ret)
    }

    /// Whether promiscuous mode is on.
    ///
    /// # Errors
    ///
    /// [`Error::Port`] when the driver cannot tell.
    pub fn is_promiscuous(&self) -> Result<bool, Error> {
        // SAFETY: the port is ours.
        let ret = unsafe { dpdk_sys::rte_eth_promiscuous_get(self.id) };
        match ret {
            0 | 1 => Ok(ret == 1),
            _ => Err(Error::Port {
                port: self.id,
                call: "rte_eth_promiscuous_get",
                errno: Errno::last(),
            }),
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // Errors cannot be reported from here; a port that fails to stop or close is left
        // as DPDK leaves it, and the process goes on.
        if !self.flows.is_empty() {
            let _ = self.flush_flows();
        }
        if self.started {
            let _ = self.stop();
        }
        // SAFETY: the port is ours and stopped; nothing refers to it after this.
        unsafe { dpdk_sys::rte_eth_dev_close(self.id) };
        CLAIMED[usize::from(self.id)].store(false, Ordering::Release);
    }
}

/// `Ok` for a zero (or positive) return, the port error for `-errno`.
pub(crate) fn check(port: u16, call: &'static str, ret: i32) -> Result<(), Error> {
    if ret < 0 {
        return Err(Error::Port {
            port,
            call,
            errno: Errno::from_ret(ret),
        });
    }
    Ok(())
}

fn port_info(port: u16) -> Result<PortInfo, Error> {
    let mut info = dpdk_sys::rte_eth_dev_info::default();
    // SAFETY: valid out-pointer; the port exists.
    let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(port, &mut info) };
    check(port, "rte_eth_dev_info_get", ret)?;
    let driver = if info.driver_name.is_null() {
        String::new()
    } else {
        // SAFETY: a non-null driver_name is the driver's static NUL-terminated name.
        unsafe { CStr::from_ptr(info.driver_name) }
            .to_string_lossy()
            .into_owned()
    };
    let mut name: [c_char; dpdk_sys::RTE_ETH_NAME_MAX_LEN as usize] =
        [0; dpdk_sys::RTE_ETH_NAME_MAX_LEN as usize];
    // SAFETY: `name` has RTE_ETH_NAME_MAX_LEN bytes, the most DPDK writes.
    let ret = unsafe { dpdk_sys::rte_eth_dev_get_name_by_port(port, name.as_mut_ptr()) };
    check(port, "rte_eth_dev_get_name_by_port", ret)?;
    // SAFETY: on success DPDK wrote a NUL-terminated name into the buffer.
    let name = unsafe { CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Ok(PortInfo {
        name,
        driver,
        max_rx_queues: info.max_rx_queues,
        max_tx_queues: info.max_tx_queues,
    })
}
