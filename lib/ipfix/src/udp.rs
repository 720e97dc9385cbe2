//! Sending an [`Exporter`]'s messages over UDP, the usual IPFIX transport (RFC 7011
//! section 10.3).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use palisade_flow::FlowRecord;

use crate::Exporter;

/// An [`Exporter`] and the collectors it sends every message to.
///
/// Every collector receives the same stream, so the sequence numbers are right for each.
#[derive(Debug)]
pub struct UdpExporter {
    exporter: Exporter,
    collectors: Vec<SocketAddr>,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
}

impl UdpExporter {
    /// Binds an ephemeral UDP socket for each address family among `collectors`.
    pub fn new(exporter: Exporter, collectors: Vec<SocketAddr>) -> io::Result<Self> {
        let bind = |wanted: bool, any: SocketAddr| -> io::Result<Option<UdpSocket>> {
            wanted.then(|| UdpSocket::bind(any)).transpose()
        };
        let v4 = bind(
            collectors.iter().any(SocketAddr::is_ipv4),
            (Ipv4Addr::UNSPECIFIED, 0).into(),
        )?;
        let v6 = bind(
            collectors.iter().any(SocketAddr::is_ipv6),
            (Ipv6Addr::UNSPECIFIED, 0).into(),
        )?;
        Ok(UdpExporter {
            exporter,
            collectors,
            v4,
            v6,
        })
    }

    /// The encoder (for its sequence number and configuration).
    pub fn exporter(&self) -> &Exporter {
        &self.exporter
    }

    /// The collectors.
    pub fn collectors(&self) -> &[SocketAddr] {
        &self.collectors
    }

    /// Encodes `records` at `now_ms` and sends the messages to every collector; returns how
    /// many messages each collector was sent. A failed send does not stop the others: the
    /// first error is returned once all were tried.
    pub fn send(&mut self, records: &[FlowRecord], now_ms: i64) -> io::Result<usize> {
        let messages = self.exporter.encode(records, now_ms);
        let mut first_error = None;
        for message in &messages {
            for collector in &self.collectors {
                let socket = if collector.is_ipv4() {
                    &self.v4
                } else {
                    &self.v6
                };
                let socket = socket.as_ref().expect("bound for every family in use");
                if let Err(e) = socket.send_to(message, collector) {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(messages.len()),
        }
    }
}
