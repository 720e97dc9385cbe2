//! DPDK ports behind the [`Port`] trait: frames are copied between mbufs and the
//! pipeline's byte buffers.

use std::sync::OnceLock;

use anyhow::{Result, anyhow, bail};
use palisade_dpdk::{Eal, Mbuf, Mempool, MempoolConfig, PortConfig, Vdev};
use palisade_ports::{Port, PortError, PortStats};

/// The EAL arguments of the vRouter when it runs on software vdevs: no hugepages, no PCI,
/// one lcore.
const EAL_ARGS: &[&str] = &[
    "--no-huge",
    "--no-shconf",
    "--no-pci",
    "-m",
    "512",
    "--no-telemetry",
    "-l",
    "0",
];

fn eal() -> Result<&'static Eal> {
    Eal::get_or_init(EAL_ARGS.iter()).map_err(|e| anyhow!("starting DPDK's EAL: {e}"))
}

fn pool(eal: &'static Eal) -> Result<Mempool> {
    static POOL: OnceLock<Mempool> = OnceLock::new();
    if let Some(p) = POOL.get() {
        return Ok(*p);
    }
    let p = Mempool::create(eal, "vrouter", &MempoolConfig::default())
        .map_err(|e| anyhow!("mbuf pool: {e}"))?;
    Ok(*POOL.get_or_init(|| p))
}

/// A started DPDK port.
pub struct DpdkPort {
    name: String,
    port: palisade_dpdk::Port,
    pool: Mempool,
    rx: Vec<Mbuf>,
    tx: Vec<Mbuf>,
    stats: PortStats,
}

impl DpdkPort {
    /// Creates and starts the vdev `device`: `net_ring`, `net_null`, `net_af_packet:IFACE`
    /// or `net_tap:IFACE`; the port's `name` is the vdev instance.
    pub fn open(name: &str, device: &str) -> Result<Self> {
        let eal = eal()?;
        let (driver, arg) = device
            .split_once(':')
            .map_or((device, None), |(d, a)| (d, Some(a)));
        let vdev = match (driver, arg) {
            ("net_ring", None) => Vdev::Ring,
            ("net_null", None) => Vdev::Null,
            ("net_af_packet", Some(iface)) => Vdev::AfPacket {
                iface,
                queue_pairs: 1,
            },
            ("net_tap", Some(iface)) => Vdev::Tap { iface },
            _ => bail!(
                "port {name}: `{device}` is not net_ring, net_null, net_af_packet:IFACE or net_tap:IFACE"
            ),
        };
        let id = vdev
            .create(eal, name)
            .map_err(|e| anyhow!("port {name}: {e}"))?;
        let pool = pool(eal)?;
        let mut port = palisade_dpdk::Port::configure(id, &PortConfig::new(pool))
            .map_err(|e| anyhow!("port {name}: {e}"))?;
        port.start().map_err(|e| anyhow!("port {name}: {e}"))?;
        Ok(Self {
            name: name.to_string(),
            port,
            pool,
            rx: Vec::with_capacity(palisade_dpdk::Port::BURST),
            tx: Vec::with_capacity(palisade_dpdk::Port::BURST),
            stats: PortStats::default(),
        })
    }

    /// The DPDK port (for rte_flow).
    pub fn ethdev(&mut self) -> &mut palisade_dpdk::Port {
        &mut self.port
    }
}

impl Port for DpdkPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn recv(
        &mut self,
        max: usize,
        out: &mut Vec<Vec<u8>>,
        spare: &mut Vec<Vec<u8>>,
    ) -> Result<usize, PortError> {
        self.rx.clear();
        self.port.rx_burst(0, &mut self.rx);
        let n = self.rx.len().min(max);
        for m in self.rx.drain(..).take(n) {
            let mut buf = spare.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(m.data());
            self.stats.rx_frames += 1;
            self.stats.rx_bytes += buf.len() as u64;
            out.push(buf);
        }
        self.rx.clear();
        Ok(n)
    }

    fn send(
        &mut self,
        frames: &mut Vec<Vec<u8>>,
        spare: &mut Vec<Vec<u8>>,
    ) -> Result<usize, PortError> {
        self.tx.clear();
        for frame in frames.drain(..) {
            let mbuf = self
                .pool
                .alloc()
                .and_then(|mut m| m.append(&frame).ok().map(|()| m));
            match mbuf {
                Some(m) => self.tx.push(m),
                None => self.stats.tx_dropped += 1,
            }
            spare.push(frame);
        }
        let offered = self.tx.len();
        let sent = self.port.tx_burst(0, &mut self.tx);
        self.stats.tx_frames += sent as u64;
        self.stats.tx_dropped += (offered - sent) as u64;
        self.tx.clear();
        Ok(sent)
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}
