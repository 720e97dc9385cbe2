//! The accept loop: TCP connections in, verified TLS connections out (see [`incoming`]).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::{PeerIdentity, ServerTls, identify};

/// At most this many handshakes are in progress at once; past it, new connections wait in the
/// listen backlog.
pub const MAX_PENDING_HANDSHAKES: usize = 1024;

/// Established connections waiting for the server to take them.
const QUEUE: usize = 64;

/// How long to pause after `accept` fails (for example when out of file descriptors), so the
/// loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What the server knows about the peer of a connection.
///
/// tonic inserts it into the extensions of every request on the connection:
/// `request.extensions().get::<ConnInfo>()`. (tonic's own `Request::remote_addr` does not see
/// it; use `remote_addr` here.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    /// The peer's TCP address.
    pub remote_addr: Option<SocketAddr>,
    /// The identity of the client certificate, verified by the handshake, or `None` if the
    /// client presented none.
    pub peer: Option<PeerIdentity>,
}

/// A server-side TLS connection whose handshake succeeded.
#[derive(Debug)]
pub struct TlsConn {
    stream: TlsStream<TcpStream>,
    info: ConnInfo,
}

impl TlsConn {
    /// Who is on the other end.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    /// The ALPN protocol agreed in the handshake, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.stream.get_ref().1.alpn_protocol()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

/// The stream of verified TLS connections accepted on `listener`, for
/// `tonic::transport::Server::serve_with_incoming`.
///
/// Every handshake runs in its own task and must finish within `handshake_timeout`, so a slow
/// or silent client delays nobody else; at most [`MAX_PENDING_HANDSHAKES`] run at once. A
/// handshake that fails or times out is logged with `tracing::warn!` (the peer's address and
/// rustls's reason) and dropped. The stream never ends on its own and never yields an error;
/// its item is a `Result` because that is what tonic takes.
///
/// The accept loop starts when the stream is first polled (so this can be called outside a
/// Tokio runtime, but must be polled inside one) and stops when the stream is dropped.
///
/// Each connection carries a [`ConnInfo`], which tonic copies into the extensions of every
/// request on it:
///
/// ```no_run
/// # fn handler(request: tonic::Request<()>) -> Result<(), tonic::Status> {
/// use palisade_pki::{ConnInfo, Identity};
/// let info = request.extensions().get::<ConnInfo>();
/// match info.and_then(|info| info.peer.as_ref()).map(|peer| &peer.identity) {
///     Some(Identity::Device(name)) => { /* a device, verified by the handshake */ }
///     Some(Identity::User { name, role }) => { /* an orchestrator user */ }
///     None => return Err(tonic::Status::unauthenticated("a client certificate is required")),
/// }
/// # Ok(())
/// # }
/// ```
pub fn incoming(listener: TcpListener, tls: ServerTls, handshake_timeout: Duration) -> Incoming {
    let (tx, rx) = mpsc::channel(QUEUE);
    Incoming {
        rx,
        start: Some(AcceptLoop {
            listener,
            acceptor: TlsAcceptor::from(tls.server_config()),
            handshake_timeout,
            tx,
        }),
    }
}

/// The stream returned by [`incoming`].
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<TlsConn>,
    start: Option<AcceptLoop>,
}

impl Stream for Incoming {
    type Item = Result<TlsConn, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(accept_loop) = self.start.take() {
            tokio::spawn(accept_loop.run());
        }
        self.rx.poll_recv(cx).map(|conn| conn.map(Ok))
    }
}

struct AcceptLoop {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    tx: mpsc::Sender<TlsConn>,
}

impl std::fmt::Debug for AcceptLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptLoop")
            .field("listener", &self.listener)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl AcceptLoop {
    async fn run(self) {
        let AcceptLoop {
            listener,
            acceptor,
            handshake_timeout,
            tx,
        } = self;
        let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
        loop {
            let permit = tokio::select! {
                () = tx.closed() => return,
                permit = pending.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let accepted = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, addr) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a TCP connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let conn = handshake(&acceptor, tcp, addr, handshake_timeout).await;
                drop(permit);
                if let Some(conn) = conn {
                    // An error means the server stopped; the connection is dropped with it.
                    let _ = tx.send(conn).await;
                }
            });
        }
    }
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
    timeout: Duration,
) -> Option<TlsConn> {
    // gRPC messages are small and latency-bound.
    let _ = tcp.set_nodelay(true);
    let stream = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::warn!(peer = %addr, %error, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::warn!(peer = %addr, ?timeout, "TLS handshake timed out");
            return None;
        }
    };
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first());
    // The verifier has already identified the certificate; this cannot fail for a connection
    // it let through, but a connection without an identity must never pass as anonymous.
    let peer = match leaf.map(|cert| identify(cert)).transpose() {
        Ok(peer) => peer,
        Err(error) => {
            tracing::warn!(peer = %addr, %error, "client certificate has no usable identity");
            return None;
        }
    };
    tracing::debug!(
        peer = %addr,
        identity = %peer.as_ref().map_or("anonymous".to_owned(), |p| p.identity.uri()),
        "TLS handshake succeeded"
    );
    Some(TlsConn {
        stream,
        info: ConnInfo {
            remote_addr: Some(addr),
            peer,
        },
    })
}
