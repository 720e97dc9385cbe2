//! End-to-end tests: a real tonic server (the standard gRPC health service) behind
//! [`palisade_pki::incoming`] on 127.0.0.1, and real clients, over real TLS handshakes.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use palisade_pki::{
    Ca, ConnInfo, DeviceKey, Identity, Issued, IssuedCert, PeerIdentity, PkiError, Revoked, Role,
    ServerTls, Validity, channel, client_config, incoming, lazy_channel,
};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A running fleet-manager stand-in.
struct Server {
    addr: SocketAddr,
    tls: ServerTls,
    /// The [`ConnInfo`] of every request, in order.
    seen: Arc<Mutex<Vec<Option<ConnInfo>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    fn last_seen(&self) -> ConnInfo {
        let seen = self.seen.lock().unwrap();
        seen.last()
            .cloned()
            .flatten()
            .expect("a request with ConnInfo")
    }
}

async fn start(ca: &Ca, server: &Issued, handshake_timeout: Duration) -> Server {
    let tls = ServerTls::new(ca.cert_pem(), &server.cert.pem, &server.key_pem, None).unwrap();
    start_with(tls, handshake_timeout).await
}

async fn start_with(tls: ServerTls, handshake_timeout: Duration) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let health = InterceptedService::new(health, move |request: tonic::Request<()>| {
        let info = request.extensions().get::<ConnInfo>().cloned();
        record.lock().unwrap().push(info);
        Ok(request)
    });
    let connections = incoming(listener, tls.clone(), handshake_timeout);
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(connections)
            .await
            .unwrap();
    });
    Server {
        addr,
        tls,
        seen,
        task,
    }
}

/// A CA and a server certificate for `localhost`.
fn pki() -> (Ca, Issued) {
    let ca = Ca::generate().unwrap();
    let server = ca
        .issue_server(
            &["localhost".into(), "127.0.0.1".into()],
            Validity::for_duration(DAY),
        )
        .unwrap();
    (ca, server)
}

/// Enrolls a device the way the fleet does: the key stays here, the CA signs the CSR.
fn enroll(ca: &Ca, name: &str, validity: Validity) -> (IssuedCert, String) {
    let key = DeviceKey::generate().unwrap();
    let cert = ca
        .sign_device_csr(&key.csr_pem(name).unwrap(), name, validity)
        .unwrap();
    (cert, key.key_pem())
}

fn device_config(ca: &Ca, cert: &IssuedCert, key_pem: &str) -> Arc<ClientConfig> {
    client_config(ca.cert_pem(), Some((&cert.pem, key_pem))).unwrap()
}

/// A client configuration built with rustls directly, skipping the checks of
/// [`client_config`], to present certificates the server must refuse.
fn raw_config(
    trusted_ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(trusted_ca_pem.as_bytes()).unwrap())
        .unwrap();
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![cert], key)
            .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// The HTTP/2 client preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// A TLS handshake to the server as `server_name`, followed by the HTTP/2 preface, waiting for
/// the server's first HTTP/2 frame: with TLS 1.3 that is when a client learns whether the
/// server accepted its certificate. Returns the server's certificate.
async fn handshake(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> io::Result<CertificateDer<'static>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let mut tls = TlsConnector::from(config).connect(name, tcp).await?;
    tls.write_all(H2_PREFACE).await?;
    tls.flush().await?;
    let mut frame_header = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut frame_header))
        .await
        .expect("the server answers within 5 s")?;
    assert_eq!(frame_header[3], 4, "the server's first frame is SETTINGS");
    Ok(tls.get_ref().1.peer_certificates().unwrap()[0].clone())
}

fn assert_refused(result: io::Result<CertificateDer<'static>>, alert: &str) {
    let err = result.expect_err("the server must refuse the handshake");
    let text = err.to_string();
    assert!(
        text.contains(&format!("received fatal alert: {alert}")),
        "expected alert {alert}, got {text:?}"
    );
}

async fn health_check(channel: Channel) -> Result<(), tonic::Status> {
    let request = HealthCheckRequest {
        service: String::new(),
    };
    HealthClient::new(channel).check(request).await.map(|_| ())
}

async fn grpc(url: &str, config: Arc<ClientConfig>) -> Result<(), String> {
    let channel = channel(url, config).await.map_err(|e| e.to_string())?;
    health_check(channel).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn device_enrolled_from_a_csr_is_identified_in_requests() {
    let (ca, server_cert) = pki();
    let server = start(&ca, &server_cert, HANDSHAKE_TIMEOUT).await;
    let (cert, key) = enroll(&ca, "dpu-7", Validity::for_duration(DAY));

    grpc(&server.url(), device_config(&ca, &cert, &key))
        .await
        .unwrap();

    let info = server.last_seen();
    assert_eq!(
        info.peer,
        Some(PeerIdentity {
            identity: Identity::Device("dpu-7".into()),
            serial: cert.serial.clone(),
            not_after: cert.not_after,
        })
    );
    assert!(info.remote_addr.unwrap().ip().is_loopback());
}

#[tokio::test]
async fn user_is_identified_with_its_role() {
    let (ca, server_cert) = pki();
    let server = start(&ca, &server_cert, HANDSHAKE_TIMEOUT).await;
    let alice = ca
        .issue_user("alice", Role::ReadOnly, Validity::for_duration(DAY))
        .unwrap();
    let config = client_config(ca.cert_pem(), Some((&alice.cert.pem, &alice.key_pem))).unwrap();
    grpc(&server.url(), config).await.unwrap();
    assert_eq!(
        server.last_seen().peer.unwrap().identity,
        Identity::User {
            name: "alice".into(),
            role: Role::ReadOnly
        }
    );
}

#[tokio::test]
async fn client_without_certificate_connects_anonymously() {
    let (ca, server_cert) = pki();
    let server = start(&ca, &server_cert, HANDSHAKE_TIMEOUT).await;
    let config = client_config(ca.cert_pem(), None).unwrap();
    grpc(&server.url(), config).await.unwrap();
    let info = server.last_seen();
    assert_eq!(info.peer, None);
    assert!(info.remote_addr.is_some());
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let (ca, server_cert) = pki();
    let server = start(&ca, &server_cert, HANDSHAKE_TIMEOUT).await;
    let rogue = Ca::generate().unwrap();
    let (cert, key) = enroll(&rogue, "dpu-1", Validity::for_duration(DAY));

    // client_config itself refuses to present it...
    let err = client_config(ca.cert_pem(), Some((&cert.pem, &key))).unwrap_err();
    assert!(matches!(err, PkiError::NotIssuedByCa { .. }), "{err}");
    // ...and a client that presents it anyway is refused by the server, over gRPC too.
    let config = raw_config(ca.cert_pem(), &cert.pem, &key, rustls::DEFAULT_VERSIONS);
    assert_refused(
        handshake(server.addr, "localhost", config.clone()).await,
        "UnknownCA",
    );
    let err = grpc(&server.url(), config).await.unwrap_err();
    assert!(err.contains("UnknownCA"), "{err}");
    assert!(server.seen.lock().unwrap().is_empty());

    // An impostor that copies the fleet CA's name but not its key is refused too.
    let impostor =
        rcgen::Issuer::from_ca_cert_pem(ca.cert_pem(), rcgen::KeyPair::generate().unwrap())
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "urn:palisade:device:dpu-1".try_into().unwrap(),
    )];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let forged = params.signed_by(&key, &impostor).unwrap();
    let config = raw_config(
        ca.cert_pem(),
        &forged.pem(),
        &key.serialize_pem(),
        rustls::DEFAULT_VERSIONS,
    );
    assert_refused(
        handshake(server.addr, "localhost", config).await,
        "DecryptError",
    );
    assert!(server.seen.lock().unwrap().is_empty());

    // The failed handshakes did not stop the server.
    let (cert, key) = enroll(&ca, "dpu-1", Validity::for_duration(DAY));
    grpc(&server.url(), device_config(&ca, &cert, &key))
        .await
        .unwrap();
}

#[tokio::test]
async fn expired_and_not_yet_valid_certificates_are_refused() {
    let (ca, server_cert) = pki();
    let server = start(&ca, &server_cert, HANDSHAKE_TIMEOUT).await;
    let now = SystemTime::now();
    let expired = Validity::between(now - 2 * DAY, now - DAY).unwrap();
    let future = Validity::between(now + DAY, now + 2 * DAY).unwrap();
    for validity in [expired, future] {
        let (cert, key) = enroll(&ca, "dpu-1", validity);
        let config = device_config(&ca, &cert, &key);
        // rustls reports both as "certificate_expired", RFC 8446's alert for "not currently
        // valid".
        assert_refused(
            handshake(server.addr, "localhost", config.clone()).await,
            "CertificateExpired",
        );
        let err = grpc(&server.url(), config).await.unwrap_err();
        assert!(err.contains("CertificateExpired"), "{err}");
    }
    assert!(server.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn revocation_applies_to_new_connections_without_restart() {
    let (ca, server_cert) = pki();
    let server = start(&ca, &server_cert, HANDSHAKE_TIMEOUT).await;
    let (bad_cert, bad_key) = enroll(&ca, "dpu-bad", Validity::for_duration(DAY));
    let (good_cert, good_key) = enroll(&ca, "dpu-good", Validity::for_duration(DAY));
    // One configuration per device, reused across connections as a device would: its session
    // cache must not let the revoked device resume its way back in.
    let bad = device_config(&ca, &bad_cert, &bad_key);
    let good = device_config(&ca, &good_cert, &good_key);

    let open = channel(&server.url(), bad.clone()).await.unwrap();
    health_check(open.clone()).await.unwrap();
    handshake(server.addr, "localhost", bad.clone())
        .await
        .unwrap();

    let crl = ca
        .crl(
            &[Revoked {
                serial: bad_cert.serial.clone(),
                at: SystemTime::now(),
            }],
            1,
            DAY,
        )
        .unwrap();
    server.tls.set_crl(&crl).unwrap();
    assert_eq!(server.tls.crl_number(), Some(1));

    assert_refused(
        handshake(server.addr, "localhost", bad.clone()).await,
        "CertificateRevoked",
    );
    let err = grpc(&server.url(), bad).await.unwrap_err();
    assert!(err.contains("CertificateRevoked"), "{err}");
    grpc(&server.url(), good).await.unwrap();
    assert_eq!(
        server.last_seen().peer.unwrap().identity,
        Identity::Device("dpu-good".into())
    );
    // A connection established before the revocation is not re-checked: the application
    // closes those itself.
    health_check(open).await.unwrap();
}

#[tokio::test]
async fn tls12_clients_are_verified_too() {
    let (ca, server_cert) = pki();
    let server = start(&ca, &server_cert, HANDSHAKE_TIMEOUT).await;
    let tls12 = &[&rustls::version::TLS12];
    let (cert, key) = enroll(&ca, "dpu-old", Validity::for_duration(DAY));
    let config = raw_config(ca.cert_pem(), &cert.pem, &key, tls12);
    handshake(server.addr, "localhost", config.clone())
        .await
        .unwrap();
    grpc(&server.url(), config).await.unwrap();
    assert_eq!(
        server.last_seen().peer.unwrap().identity,
        Identity::Device("dpu-old".into())
    );

    let now = SystemTime::now();
    let expired = Validity::between(now - 2 * DAY, now - DAY).unwrap();
    let (cert, key) = enroll(&ca, "dpu-old", expired);
    let config = raw_config(ca.cert_pem(), &cert.pem, &key, tls12);
    assert_refused(
        handshake(server.addr, "localhost", config).await,
        "CertificateExpired",
    );
}

#[tokio::test]
async fn client_certificate_without_client_auth_is_refused() {
    let (ca, server_cert) = pki();
    let server = start(&ca, &server_cert, HANDSHAKE_TIMEOUT).await;
    // A certificate of this CA, but a server one: it has no clientAuth and no identity.
    let other_server = ca
        .issue_server(&["elsewhere".into()], Validity::for_duration(DAY))
        .unwrap();
    let config = raw_config(
        ca.cert_pem(),
        &other_server.cert.pem,
        &other_server.key_pem,
        rustls::DEFAULT_VERSIONS,
    );
    assert_refused(
        handshake(server.addr, "localhost", config).await,
        "UnsupportedCertificate",
    );
}

#[tokio::test]
async fn rotated_server_certificate_is_presented_to_new_connections() {
    let (ca, server_cert) = pki();
    let server = start(&ca, &server_cert, HANDSHAKE_TIMEOUT).await;
    let anonymous = client_config(ca.cert_pem(), None).unwrap();
    let presented = handshake(server.addr, "localhost", anonymous.clone())
        .await
        .unwrap();
    assert_eq!(presented.as_ref(), server_cert.cert.der.as_slice());

    // The new certificate names another host, so the rotation is visible in name checks too.
    let next = ca
        .issue_server(&["manager.example".into()], Validity::for_duration(DAY))
        .unwrap();
    // A bad rotation changes nothing.
    assert!(
        server
            .tls
            .rotate(&next.cert.pem, &server_cert.key_pem)
            .is_err()
    );
    let presented = handshake(server.addr, "localhost", anonymous.clone())
        .await
        .unwrap();
    assert_eq!(presented.as_ref(), server_cert.cert.der.as_slice());

    server.tls.rotate(&next.cert.pem, &next.key_pem).unwrap();
    let presented = handshake(server.addr, "manager.example", anonymous.clone())
        .await
        .unwrap();
    assert_eq!(presented.as_ref(), next.cert.der.as_slice());
    let err = handshake(server.addr, "localhost", anonymous)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("certificate not valid for name"),
        "{err}"
    );
}

#[tokio::test]
async fn silent_client_does_not_block_others() {
    let (ca, server_cert) = pki();
    let timeout = Duration::from_millis(1500);
    let server = start(&ca, &server_cert, timeout).await;
    // Connections that never send a ClientHello.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }

    let started = Instant::now();
    let (cert, key) = enroll(&ca, "dpu-1", Validity::for_duration(DAY));
    grpc(&server.url(), device_config(&ca, &cert, &key))
        .await
        .unwrap();
    assert!(
        started.elapsed() < timeout,
        "a real client waited {:?} behind silent ones",
        started.elapsed()
    );

    // The silent connections are closed once the handshake timeout passes.
    for mut conn in silent {
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(timeout * 3, conn.read(&mut buf))
            .await
            .expect("the server closes a silent connection after the handshake timeout");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    // And the server still serves.
    grpc(&server.url(), client_config(ca.cert_pem(), None).unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn lazy_channel_connects_on_first_request() {
    let (ca, server_cert) = pki();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("https://127.0.0.1:{port}");
    let config = client_config(ca.cert_pem(), None).unwrap();

    // Nothing listens yet: the eager channel fails, the lazy one is created anyway.
    let err = channel(&url, config.clone()).await.unwrap_err();
    assert!(
        matches!(err, PkiError::Connect { .. }) && err.to_string().contains(&url),
        "{err}"
    );
    let lazy = lazy_channel(&url, config).unwrap();

    let tls = ServerTls::new(
        ca.cert_pem(),
        &server_cert.cert.pem,
        &server_cert.key_pem,
        None,
    )
    .unwrap();
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(incoming(listener, tls, HANDSHAKE_TIMEOUT)),
    );
    health_check(lazy).await.unwrap();
    server.abort();
}

#[tokio::test]
async fn bad_urls_are_refused_before_connecting() {
    let (ca, _) = pki();
    let config = client_config(ca.cert_pem(), None).unwrap();
    for (url, why) in [
        ("http://localhost:1", "scheme must be https"),
        ("localhost:1", "scheme must be https"),
        ("https://localhost:1/api", "no path"),
        ("https://localhost:1/?q=1", "no path or query"),
        ("https://", "not a valid URL"),
        ("", "not a valid URL"),
    ] {
        let err = lazy_channel(url, config.clone()).unwrap_err();
        assert!(
            matches!(err, PkiError::InvalidUrl { .. }) && err.to_string().contains(why),
            "{url:?}: {err}"
        );
        assert!(channel(url, config.clone()).await.is_err());
    }
}
