//! Flow telemetry in the manager: records from devices (the Control service's
//! `ReportFlows`) and from IPFIX / NetFlow v9 exporters are enriched with the endpoints and
//! tags of both ends as of the record's time, then appended to the flow store; queries and
//! what-if replays read it back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use std::sync::{Arc, RwLock};

use palisade_flows::enrich::{End, View};
use palisade_flows::{Enricher, FlowRecord, FlowStore, StoreError};
use palisade_inventory::{AddressOwner, InventoryIndex};
use palisade_program::{Decision, DeviceProgram, Direction, Packet};

use crate::fleet::{Fleet, now_ms};

/// Counters of what came in.
#[derive(Debug, Default)]
pub struct TelemetryStats {
    /// Records stored.
    pub records: AtomicU64,
    /// Records refused (malformed) or lost (the store failed).
    pub refused: AtomicU64,
    /// IPFIX / NetFlow datagrams received.
    pub datagrams: AtomicU64,
    /// Datagrams dropped as malformed.
    pub malformed: AtomicU64,
}

/// The manager's telemetry: the store, the enricher, counters.
pub struct Telemetry {
    /// Where flows go.
    pub store: Arc<dyn FlowStore>,
    enricher: Arc<RwLock<Enricher>>,
    /// Counters.
    pub stats: TelemetryStats,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Every address of the fleet's endpoints with its endpoint and effective tags.
pub fn view_of(fleet: &Fleet) -> View {
    let index = fleet.index();
    let tags = palisade_intent::endpoint_tags(fleet.intent().committed(), index)
        .unwrap_or_else(|_| vec![Vec::new(); index.endpoints().len()]);
    let mut view = View::default();
    for (id, e) in index.endpoints().iter().enumerate() {
        let end = Arc::new(End {
            endpoint: e.name.as_str().into(),
            tags: tags.get(id).cloned().unwrap_or_default().into(),
        });
        for a in &e.addresses {
            view.insert(*a, Arc::clone(&end));
        }
    }
    view
}

impl Telemetry {
    /// Telemetry over `store`, tagging with the fleet's current view.
    pub fn new(store: Arc<dyn FlowStore>, fleet: &Fleet) -> Self {
        let mut enricher = Enricher::new();
        enricher.update(0, view_of(fleet));
        Self {
            store,
            enricher: Arc::new(RwLock::new(enricher)),
            stats: TelemetryStats::default(),
        }
    }

    /// A commit took effect: records made from now on get its tags.
    pub fn refresh(&self, fleet: &Fleet) {
        let view = view_of(fleet);
        self.enricher
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .update(now_ms(), view);
    }

    /// Enriches and stores records; resolves when they are durable.
    pub async fn ingest(&self, records: Vec<FlowRecord>) -> Result<usize, StoreError> {
        Ok(self.ingest_returning(records).await?.0)
    }

    /// [`Telemetry::ingest`], handing back the records' buffer where the store did not
    /// consume it ([`FlowStore::append_records`]).
    pub async fn ingest_returning(
        &self,
        records: Vec<FlowRecord>,
    ) -> Result<(usize, Vec<FlowRecord>), StoreError> {
        // Enrichment is CPU work: the store does it off the async workers.
        let n = records.len();
        match self
            .store
            .append_records(records, Arc::clone(&self.enricher))
            .await
        {
            Ok((n, buffer)) => {
                self.stats.records.fetch_add(n as u64, Ordering::Relaxed);
                Ok((n, buffer))
            }
            Err(e) => {
                self.stats.refused.fetch_add(n as u64, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

/// How one device judges its end of a connection.
#[derive(Clone, Debug)]
pub struct SideVerdict {
    /// The device.
    pub device: String,
    /// The endpoint it judges for.
    pub endpoint: String,
    /// Egress (the initiator's end) or ingress (the responder's).
    pub direction: Direction,
    /// Whether it allows.
    pub allowed: bool,
    /// The deciding rule's id, if a rule decided.
    pub rule: Option<String>,
    /// What decided, in words: `rule shop/0020`, `application tier default (deny)`.
    pub decided_by: String,
}

/// Each device's verdict on its end(s) of `packet`, from `programs` (missing programs and
/// ends that are not endpoints have no say).
pub fn judge(
    index: &InventoryIndex,
    programs: &BTreeMap<String, Arc<DeviceProgram>>,
    packet: &Packet,
) -> Vec<SideVerdict> {
    let mut out = Vec::new();
    for (ip, direction) in [
        (packet.src, Direction::Egress),
        (packet.dst, Direction::Ingress),
    ] {
        let Some(AddressOwner::Endpoint(id)) = index.owner_of(ip) else {
            continue;
        };
        let info = index.endpoint(id);
        let device = &index.inventory().devices[info.device].name;
        let Some(program) = programs.get(device) else {
            continue;
        };
        let Some(local) = program.endpoint_index(&info.name) else {
            continue;
        };
        let v = program.evaluate_side(local, direction, packet);
        let (rule, decided_by) = match v.decision {
            Decision::Rule { rule, .. } => (Some(rule.id.to_string()), format!("rule {}", rule.id)),
            Decision::TierDefault { tier, action } => {
                (None, format!("{tier} tier default ({action})"))
            }
            Decision::EndOfTiers => (None, "end of tiers (allow)".into()),
        };
        out.push(SideVerdict {
            device: device.clone(),
            endpoint: info.name.clone(),
            direction,
            allowed: v.allowed,
            rule,
            decided_by,
        });
    }
    out
}

/// The packet a flow's first packet was.
pub fn packet_of(r: &FlowRecord) -> Packet {
    Packet {
        src: r.src,
        dst: r.dst,
        protocol: palisade_program::Protocol(r.protocol),
        src_port: r.src_port,
        dst_port: r.dst_port,
    }
}

/// Receive buffer asked of the kernel for the IPFIX socket: bursts from many exporters wait
/// there while a batch is stored.
const IPFIX_RECV_BUFFER: usize = 8 << 20;
/// Records stored per batch.
const INGEST_BATCH: usize = 8192;
/// Most records stored in one transaction.
const INGEST_COALESCE: usize = 16 * INGEST_BATCH;
/// Batches being stored at once.
const INGEST_IN_FLIGHT: usize = 2;
/// Longest a record waits for its batch.
const INGEST_LINGER: std::time::Duration = std::time::Duration::from_millis(100);

/// Binds the IPFIX / NetFlow v9 collector's UDP socket (blocking, with a short read
/// timeout so its thread notices shutdown).
pub fn bind_ipfix(addr: std::net::SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(IPFIX_RECV_BUFFER);
    socket.bind(&addr.into())?;
    let socket: std::net::UdpSocket = socket.into();
    socket.set_read_timeout(Some(INGEST_LINGER))?;
    Ok(socket)
}

/// The IPFIX / NetFlow v9 collector: a thread of its own receives and decodes every
/// datagram (templates per exporter), so storing never delays reading the socket; malformed
/// datagrams are dropped with a counter and a log line (at most one a minute); records go
/// to the store in batches. Resolves when `shutdown` fires and the last batch is stored.
pub async fn collect_ipfix(
    telemetry: Arc<Telemetry>,
    socket: std::net::UdpSocket,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use tracing::warn;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<FlowRecord>>(64);
    // Stored batches go back to the receiving thread, which fills them again.
    let (recycle, recycled) = std::sync::mpsc::sync_channel::<Vec<FlowRecord>>(INGEST_IN_FLIGHT);
    let receiver = {
        let telemetry = Arc::clone(&telemetry);
        std::thread::Builder::new()
            .name("ipfix-collector".into())
            .spawn(move || receive_ipfix(&telemetry, &socket, &shutdown, &tx, &recycled))
    };
    if let Err(e) = receiver {
        warn!("could not start the IPFIX collector's thread: {e}");
        return;
    }
    // Up to INGEST_IN_FLIGHT batches are stored at once: one is enriched and encoded while
    // another is committed (whose time is mostly the disk's).
    let mut in_flight = tokio::task::JoinSet::new();
    while let Some(mut batch) = rx.recv().await {
        // Under load, batches pile up while others are stored: store them together (one
        // transaction, one sync to disk, for up to INGEST_COALESCE records).
        while batch.len() < INGEST_COALESCE {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        while in_flight.len() >= INGEST_IN_FLIGHT {
            in_flight.join_next().await;
        }
        let telemetry = Arc::clone(&telemetry);
        let recycle = recycle.clone();
        in_flight.spawn(async move {
            match telemetry.ingest_returning(batch).await {
                // A full return channel: the receiver has buffers enough. A store that
                // consumed the records hands back an empty buffer: not worth returning.
                Ok((_, buffer)) if buffer.capacity() > 0 => drop(recycle.try_send(buffer)),
                Ok(_) => {}
                Err(e) => warn!("IPFIX records lost: {e}"),
            }
        });
    }
    while in_flight.join_next().await.is_some() {}
}

fn receive_ipfix(
    telemetry: &Telemetry,
    socket: &std::net::UdpSocket,
    shutdown: &tokio::sync::watch::Receiver<bool>,
    tx: &tokio::sync::mpsc::Sender<Vec<FlowRecord>>,
    recycled: &std::sync::mpsc::Receiver<Vec<FlowRecord>>,
) {
    use std::time::Instant;
    use tracing::warn;
    let mut collector = palisade_ipfix::Collector::default();
    let mut bufs = vec![0u8; RECEIVE_BURST * MAX_DATAGRAM];
    let mut headers =
        nix::sys::socket::MultiHeaders::<nix::sys::socket::SockaddrStorage>::preallocate(
            RECEIVE_BURST,
            None,
        );
    let mut got: Vec<(usize, Option<std::net::SocketAddr>)> = Vec::with_capacity(RECEIVE_BURST);
    let mut pending: Vec<FlowRecord> = Vec::with_capacity(INGEST_BATCH);
    let mut oldest = Instant::now();
    let mut last_warning: Option<Instant> = None;
    // While datagrams keep coming they are read in bursts without waiting (one recvmmsg
    // call for up to RECEIVE_BURST); once the socket is empty the pending records are handed
    // on at once (no waiting for a full batch when there is nothing more to read) and the
    // next read waits for one datagram, up to INGEST_LINGER (the socket's read timeout).
    let mut idle = false;
    while !*shutdown.borrow() {
        got.clear();
        let read = if idle {
            socket
                .recv_from(&mut bufs[..MAX_DATAGRAM])
                .map(|(n, from)| got.push((n, Some(from))))
        } else {
            receive_burst(socket, &mut headers, &mut bufs, &mut got)
        };
        idle = false;
        match read {
            Ok(()) => {
                for (&(n, from), buf) in got.iter().zip(bufs.chunks(MAX_DATAGRAM)) {
                    telemetry.stats.datagrams.fetch_add(1, Ordering::Relaxed);
                    // Datagrams come from IP sockets: the kernel always says from where.
                    let Some(from) = from else { continue };
                    let was_empty = pending.is_empty();
                    match collector.decode_into(from, &buf[..n], now_ms(), &mut pending) {
                        Ok(_) => {
                            if was_empty && !pending.is_empty() {
                                oldest = Instant::now();
                            }
                        }
                        Err(e) => {
                            telemetry.stats.malformed.fetch_add(1, Ordering::Relaxed);
                            if last_warning.is_none_or(|t| t.elapsed().as_secs() >= 60) {
                                warn!(%from, "malformed IPFIX/NetFlow datagram dropped: {e} (further ones are counted, logged once a minute)");
                                last_warning = Some(Instant::now());
                            }
                        }
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                idle = true;
            }
            Err(e) => {
                warn!("IPFIX socket: {e}");
                std::thread::sleep(INGEST_LINGER);
            }
        }
        // A full batch; or, with nothing more to read, what is pending (the next read may
        // wait: holding records back then would only delay them; batches that pile up
        // behind the store are stored together anyway); or records that have waited long
        // enough.
        if pending.len() >= INGEST_BATCH
            || (!pending.is_empty() && (idle || oldest.elapsed() >= INGEST_LINGER))
        {
            // A stored batch's buffer emptied here (the records' names were shared out by
            // this thread's decoder: releasing them here keeps their counts on this core),
            // or one sized for a whole batch: no regrowing (and copying) as it fills.
            let next = match recycled.try_recv() {
                Ok(mut buffer) => {
                    buffer.clear();
                    buffer
                }
                Err(_) => Vec::with_capacity(INGEST_BATCH),
            };
            let batch = std::mem::replace(&mut pending, next);
            if let Err(e) = tx.try_send(batch) {
                let n = match &e {
                    tokio::sync::mpsc::error::TrySendError::Full(b)
                    | tokio::sync::mpsc::error::TrySendError::Closed(b) => b.len(),
                };
                telemetry
                    .stats
                    .refused
                    .fetch_add(n as u64, Ordering::Relaxed);
                if last_warning.is_none_or(|t| t.elapsed().as_secs() >= 60) {
                    warn!(
                        records = n,
                        "the flow store is behind: IPFIX records dropped"
                    );
                    last_warning = Some(Instant::now());
                }
            }
        }
    }
    if !pending.is_empty() {
        let _ = tx.blocking_send(pending);
    }
}

/// Largest UDP payload, so that no datagram is cut.
const MAX_DATAGRAM: usize = 65_536;
/// Datagrams read by one system call while the socket has them.
const RECEIVE_BURST: usize = 32;

/// Reads the datagrams waiting on `socket`, up to [`RECEIVE_BURST`], without waiting
/// (`WouldBlock` when there are none): datagram `i` lands in `bufs`' `i`-th
/// [`MAX_DATAGRAM`]-byte slot, its length and sender in `got[i]`.
fn receive_burst(
    socket: &std::net::UdpSocket,
    headers: &mut nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
    bufs: &mut [u8],
    got: &mut Vec<(usize, Option<std::net::SocketAddr>)>,
) -> std::io::Result<()> {
    use nix::sys::socket::{MsgFlags, recvmmsg};
    use std::os::fd::AsRawFd as _;
    // On the stack: a burst costs no allocation.
    let mut slots = bufs.chunks_mut(MAX_DATAGRAM);
    let mut slices: [[std::io::IoSliceMut<'_>; 1]; RECEIVE_BURST] =
        std::array::from_fn(|_| [std::io::IoSliceMut::new(slots.next().unwrap_or_default())]);
    let results = recvmmsg(
        socket.as_raw_fd(),
        headers,
        slices.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )
    .map_err(std::io::Error::from)?;
    for message in results {
        let from = message
            .address
            .and_then(|a: nix::sys::socket::SockaddrStorage| {
                a.as_sockaddr_in()
                    .map(|a| std::net::SocketAddr::V4((*a).into()))
                    .or_else(|| {
                        a.as_sockaddr_in6()
                            .map(|a| std::net::SocketAddr::V6((*a).into()))
                    })
            });
        got.push((message.bytes, from));
    }
    Ok(())
}
