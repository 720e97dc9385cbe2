//! The client side: a rustls configuration that trusts only the fleet CA (see
//! [`client_config`]), and gRPC channels over it (see [`channel`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::server::{TrustedCa, provider, tls_error};
use crate::x509::Purpose;
use crate::{PkiError, identify, x509};

/// How long [`channel`] and [`lazy_channel`] wait for the TCP connection and the TLS handshake
/// together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A rustls client configuration that trusts only the fleet CA (`ca_pem`), offers ALPN `h2`,
/// and presents `identity` (certificate PEM, key PEM) if given. A device that has not enrolled
/// yet passes `None` and connects anonymously.
///
/// Refuses an identity whose certificate was not issued by the CA, is not a client certificate
/// with a palisade identity, or whose key is not the certificate's, rather than letting the
/// server refuse it later with a less helpful alert.
///
/// ```no_run
/// # async fn f(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<(), palisade_pki::PkiError> {
/// let config = palisade_pki::client_config(ca_pem, Some((cert_pem, key_pem)))?;
/// let channel = palisade_pki::channel("https://manager.example:7443", config).await?;
/// # Ok(())
/// # }
/// ```
pub fn client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Arc<ClientConfig>, PkiError> {
    let ca = TrustedCa::from_pem(ca_pem)?;
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(tls_error("client configuration"))?
        .with_root_certificates(ca.roots.clone());
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => {
            let (cert_what, key_what) = ("client certificate", "client key");
            ca.certified_key(&provider, cert_pem, key_pem, cert_what, key_what)?;
            let cert = x509::cert_from_pem(cert_pem, cert_what)?;
            if !x509::has_purpose(&x509::parse_cert(&cert, cert_what)?, Purpose::ClientAuth) {
                return Err(PkiError::InvalidCertificate {
                    what: cert_what.to_owned(),
                    reason: "it lacks the clientAuth extended key usage (issue it with \
                             Ca::sign_device_csr or Ca::issue_user)"
                        .to_owned(),
                });
            }
            identify(&cert)?;
            let key = x509::key_from_pem(key_pem, key_what)?;
            builder
                .with_client_auth_cert(vec![cert], key)
                .map_err(tls_error("client configuration"))?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Connects a gRPC channel to `url` (`https://host[:port]`, port 443 by default) over TLS with
/// `config`, verifying the server certificate for `host`.
///
/// Fails if the server cannot be reached, or the handshake does not complete, within
/// [`CONNECT_TIMEOUT`]. The channel reconnects by itself if the connection later drops.
///
/// With TLS 1.3 a client finishes its side of the handshake before the server has checked its
/// certificate, so a refused client certificate shows up as an error on the first request
/// (naming the server's alert, e.g. `CertificateRevoked`), not here.
pub async fn channel(url: &str, config: Arc<ClientConfig>) -> Result<Channel, PkiError> {
    let (endpoint, connector) = prepare(url, config)?;
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| PkiError::Connect {
            url: url.to_owned(),
            reason: with_causes(&e),
        })
}

/// Like [`channel`], but connects on the first request instead of now, so it fails only for a
/// malformed `url`.
pub fn lazy_channel(url: &str, config: Arc<ClientConfig>) -> Result<Channel, PkiError> {
    let (endpoint, connector) = prepare(url, config)?;
    Ok(endpoint.connect_with_connector_lazy(connector))
}

fn prepare(url: &str, config: Arc<ClientConfig>) -> Result<(Endpoint, Connector), PkiError> {
    let invalid = |reason: &str| PkiError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|_| invalid("not a valid URL; expected https://host[:port]"))?;
    let uri = endpoint.uri();
    if uri.scheme_str() != Some("https") {
        return Err(invalid("the scheme must be https"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid("a gRPC endpoint URL has no path or query"));
    }
    let host = uri.host().ok_or_else(|| invalid("it has no host"))?;
    let port = uri.port_u16().unwrap_or(443);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let server_name = ServerName::try_from(bare.to_owned())
        .map_err(|_| invalid("the host is neither an IP address nor a DNS name"))?;
    let connector = Connector {
        config,
        server_name,
        target: format!("{host}:{port}"),
    };
    // The connector does TLS itself. tonic, when some crate of the build enables its own TLS,
    // refuses an `https` endpoint without its TLS configuration, so the endpoint is named
    // by its `http` form (only the `:scheme` of requests shows it).
    let authority = uri.authority().ok_or_else(|| invalid("it has no host"))?;
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|_| invalid("not a valid URL; expected https://host[:port]"))?;
    Ok((endpoint, connector))
}

/// Dials the one server a channel talks to: TCP, then TLS, within [`CONNECT_TIMEOUT`].
#[derive(Clone)]
struct Connector {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    target: String,
}

type Connection = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl Connector {
    async fn connect(self) -> io::Result<Connection> {
        let connect = async {
            let tcp = TcpStream::connect(&self.target).await?;
            let _ = tcp.set_nodelay(true);
            let connector = TlsConnector::from(self.config.clone());
            let tls = connector.connect(self.server_name.clone(), tcp).await?;
            Ok(TokioIo::new(tls))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no TLS connection to {} within {CONNECT_TIMEOUT:?}",
                    self.target
                ),
            )),
        }
    }
}

impl tower::Service<Uri> for Connector {
    type Response = Connection;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Connection>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect())
    }
}

/// An error's message followed by those of its causes.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}
