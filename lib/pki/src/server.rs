//! The fleet manager's TLS server configuration (see [`ServerTls`]).

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::x509::Purpose;
use crate::{PkiError, identify, x509};

/// The ALPN protocols the server offers, in order of preference.
pub const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The crypto provider every configuration of this crate uses, so that none depends on a
/// process-wide default.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn tls_error(what: &'static str) -> impl Fn(rustls::Error) -> PkiError {
    move |source| PkiError::Tls { what, source }
}

/// The fleet CA as a trust anchor.
pub(crate) struct TrustedCa {
    pub(crate) der: CertificateDer<'static>,
    pub(crate) roots: Arc<RootCertStore>,
}

impl TrustedCa {
    pub(crate) fn from_pem(ca_pem: &str) -> Result<TrustedCa, PkiError> {
        const WHAT: &str = "CA certificate";
        let der = x509::cert_from_pem(ca_pem, WHAT)?;
        x509::check_is_ca(&x509::parse_cert(&der, WHAT)?, WHAT)?;
        let mut roots = RootCertStore::empty();
        roots
            .add(der.clone())
            .map_err(|e| PkiError::InvalidCertificate {
                what: WHAT.to_owned(),
                reason: format!("not usable as a trust anchor: {e}"),
            })?;
        Ok(TrustedCa {
            der,
            roots: Arc::new(roots),
        })
    }

    /// Checks that `cert` was signed by this CA; `what` names it in the error.
    pub(crate) fn check_issued(&self, cert: &[u8], what: &str) -> Result<(), PkiError> {
        let ca = x509::parse_cert(&self.der, "CA certificate")?;
        if x509::issued_by(&x509::parse_cert(cert, what)?, &ca) {
            Ok(())
        } else {
            Err(PkiError::NotIssuedByCa {
                what: what.to_owned(),
            })
        }
    }

    /// Pairs a certificate and its key, checking that the certificate is this CA's and the key
    /// is the certificate's.
    pub(crate) fn certified_key(
        &self,
        provider: &CryptoProvider,
        cert_pem: &str,
        key_pem: &str,
        cert_what: &str,
        key_what: &str,
    ) -> Result<CertifiedKey, PkiError> {
        let cert = x509::cert_from_pem(cert_pem, cert_what)?;
        self.check_issued(&cert, cert_what)?;
        let key = provider
            .key_provider
            .load_private_key(x509::key_from_pem(key_pem, key_what)?)
            .map_err(|e| PkiError::InvalidKey {
                what: key_what.to_owned(),
                reason: e.to_string(),
            })?;
        let certified = CertifiedKey::new(vec![cert], key);
        certified.keys_match().map_err(|_| PkiError::KeyMismatch {
            key: key_what.to_owned(),
            cert: cert_what.to_owned(),
        })?;
        Ok(certified)
    }
}

/// The TLS side of the fleet manager's gRPC server: optional client certificates verified
/// against the fleet CA and its current CRL, and a server certificate that can be rotated in
/// place.
///
/// Client certificates are *optional* at the TLS layer, because a device enrolls before it has
/// one; the application decides per request what an anonymous peer may do (see [`ConnInfo`]).
/// A client that does present a certificate must pass every check or the handshake fails:
///
/// * it chains to the fleet CA and is valid now;
/// * it has the clientAuth extended key usage (the extension must be present: a leaf without
///   any extended key usage is refused, which plain WebPKI would accept);
/// * it is not revoked by the current CRL;
/// * it carries exactly one well-formed palisade identity (see [`identify`]).
///
/// [`ServerTls::set_crl`] and [`ServerTls::rotate`] affect handshakes that start after they
/// return; connections already established are not re-checked (close them if that matters, for
/// example after revoking a device). TLS session resumption is disabled, so that every new
/// connection is checked against the current CRL and validity period, not those of an earlier
/// session.
///
/// Cheap to clone: clones share the same state, so a [`ServerTls::set_crl`] or
/// [`ServerTls::rotate`] through any clone applies to all of them, and to every
/// [`ServerConfig`] already handed out by [`ServerTls::server_config`].
///
/// [`ConnInfo`]: crate::ConnInfo
#[derive(Clone)]
pub struct ServerTls {
    inner: Arc<Inner>,
}

struct Inner {
    ca: TrustedCa,
    provider: Arc<CryptoProvider>,
    verifier: Arc<ClientVerifier>,
    resolver: Arc<CertResolver>,
    config: Arc<ServerConfig>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("crl_number", &self.inner.verifier.crl_number())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Builds the server side from the fleet CA's certificate, the server's certificate and key
    /// (all PEM), and optionally the CA's current CRL (DER).
    ///
    /// Refuses a CA certificate that is not a CA, a server certificate not issued by it or
    /// without the serverAuth extended key usage, a key that is not the certificate's, and a
    /// CRL that does not parse or was not signed by the CA.
    pub fn new(
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
        crl_der: Option<&[u8]>,
    ) -> Result<ServerTls, PkiError> {
        let ca = TrustedCa::from_pem(ca_pem)?;
        let provider = provider();
        let crl = crl_der.map(|der| check_crl(&ca, der)).transpose()?;
        let verifier = Arc::new(ClientVerifier::new(&ca, &provider, crl)?);
        let resolver = Arc::new(CertResolver {
            current: RwLock::new(Arc::new(server_key(&ca, &provider, cert_pem, key_pem)?)),
        });
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(tls_error("server configuration"))?
            .with_client_cert_verifier(verifier.clone())
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
        // Resumption would let a client skip certificate verification, and so revocation and
        // expiry, for as long as its ticket lives.
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(ServerTls {
            inner: Arc::new(Inner {
                ca,
                provider,
                verifier,
                resolver,
                config: Arc::new(config),
            }),
        })
    }

    /// The rustls server configuration: ALPN `h2` and `http/1.1`, TLS 1.2 and 1.3, optional
    /// client certificates. Always the same configuration; what it verifies and presents
    /// follows [`ServerTls::set_crl`] and [`ServerTls::rotate`].
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.inner.config.clone()
    }

    /// Makes handshakes from now on check client certificates against `crl_der`, a CRL from
    /// [`Ca::crl`](crate::Ca::crl).
    ///
    /// Refuses, leaving the current CRL in place, a CRL that does not parse, that was not
    /// signed by the fleet CA, that has no CRL number, or whose number is lower than the
    /// installed one (which would bring revoked certificates back). Installing a CRL with the
    /// same number again is allowed.
    ///
    /// A CRL past its next-update time still applies: a stale list of revoked certificates is
    /// better than none, and refusing every device because the manager did not publish a CRL
    /// in time would be worse.
    pub fn set_crl(&self, crl_der: &[u8]) -> Result<(), PkiError> {
        let crl = check_crl(&self.inner.ca, crl_der)?;
        self.inner
            .verifier
            .install(&self.inner.ca, &self.inner.provider, crl)
    }

    /// Makes handshakes from now on present `cert_pem` with `key_pem` as the server
    /// certificate. Refuses, leaving the current certificate in place, a certificate not issued
    /// by the fleet CA or without serverAuth, and a key that is not the certificate's.
    pub fn rotate(&self, cert_pem: &str, key_pem: &str) -> Result<(), PkiError> {
        let key = server_key(&self.inner.ca, &self.inner.provider, cert_pem, key_pem)?;
        *self
            .inner
            .resolver
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        Ok(())
    }

    /// The number of the CRL in force, if any.
    pub fn crl_number(&self) -> Option<u64> {
        self.inner.verifier.crl_number()
    }
}

fn server_key(
    ca: &TrustedCa,
    provider: &CryptoProvider,
    cert_pem: &str,
    key_pem: &str,
) -> Result<CertifiedKey, PkiError> {
    const WHAT: &str = "server certificate";
    let key = ca.certified_key(provider, cert_pem, key_pem, WHAT, "server key")?;
    let cert = x509::parse_cert(key.end_entity_cert().map_err(tls_error(WHAT))?, WHAT)?;
    if !x509::has_purpose(&cert, Purpose::ServerAuth) {
        return Err(PkiError::InvalidCertificate {
            what: WHAT.to_owned(),
            reason: "it lacks the serverAuth extended key usage (issue it with \
                     Ca::issue_server)"
                .to_owned(),
        });
    }
    Ok(key)
}

/// A CRL checked to be the fleet CA's, with its number.
struct CheckedCrl {
    der: CertificateRevocationListDer<'static>,
    number: u64,
}

fn check_crl(ca: &TrustedCa, der: &[u8]) -> Result<CheckedCrl, PkiError> {
    let refuse = |reason: String| PkiError::InvalidCrl { reason };
    let crl = match CertificateRevocationList::from_der(der) {
        Ok(([], crl)) => crl,
        Ok(_) => return Err(refuse("trailing bytes after the CRL".to_owned())),
        Err(e) => return Err(refuse(format!("not a valid X.509 CRL: {e}"))),
    };
    let ca_cert = x509::parse_cert(&ca.der, "CA certificate")?;
    if crl.issuer().as_raw() != ca_cert.subject().as_raw()
        || crl.verify_signature(ca_cert.public_key()).is_err()
    {
        return Err(refuse("it was not signed by this fleet CA".to_owned()));
    }
    let number = crl
        .crl_number()
        .ok_or_else(|| refuse("it has no CRL number".to_owned()))?
        .to_bytes_be();
    if number.len() > 8 {
        return Err(refuse("its CRL number does not fit in 64 bits".to_owned()));
    }
    let number = number.iter().fold(0u64, |n, b| n << 8 | u64::from(*b));
    Ok(CheckedCrl {
        der: CertificateRevocationListDer::from(der.to_vec()),
        number,
    })
}

/// Verifies client certificates with a WebPKI verifier that is replaced, behind a lock, when
/// the CRL changes, plus the checks WebPKI does not make.
struct ClientVerifier {
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
    current: RwLock<Current>,
}

struct Current {
    webpki: Arc<dyn ClientCertVerifier>,
    crl_number: Option<u64>,
}

impl fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientVerifier")
            .field("crl_number", &self.crl_number())
            .finish_non_exhaustive()
    }
}

impl ClientVerifier {
    fn new(
        ca: &TrustedCa,
        provider: &Arc<CryptoProvider>,
        crl: Option<CheckedCrl>,
    ) -> Result<ClientVerifier, PkiError> {
        let crl_number = crl.as_ref().map(|crl| crl.number);
        let webpki = webpki_verifier(ca, provider, crl)?;
        Ok(ClientVerifier {
            hints: webpki.root_hint_subjects().to_vec(),
            algorithms: provider.signature_verification_algorithms,
            current: RwLock::new(Current { webpki, crl_number }),
        })
    }

    fn install(
        &self,
        ca: &TrustedCa,
        provider: &Arc<CryptoProvider>,
        crl: CheckedCrl,
    ) -> Result<(), PkiError> {
        let number = crl.number;
        let webpki = webpki_verifier(ca, provider, Some(crl))?;
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(installed) = current.crl_number.filter(|installed| *installed > number) {
            return Err(PkiError::InvalidCrl {
                reason: format!(
                    "its CRL number {number} is lower than the installed CRL's, {installed}"
                ),
            });
        }
        *current = Current {
            webpki,
            crl_number: Some(number),
        };
        Ok(())
    }

    fn crl_number(&self) -> Option<u64> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .crl_number
    }
}

fn webpki_verifier(
    ca: &TrustedCa,
    provider: &Arc<CryptoProvider>,
    crl: Option<CheckedCrl>,
) -> Result<Arc<dyn ClientCertVerifier>, PkiError> {
    WebPkiClientVerifier::builder_with_provider(ca.roots.clone(), provider.clone())
        .with_crls(crl.map(|crl| crl.der))
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::InvalidCrl {
            reason: format!("rustls refused it: {e}"),
        })
}

/// The checks on a client certificate that WebPKI does not make.
fn check_client_cert(end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    let cert = x509::parse_cert(end_entity, "client certificate")
        .map_err(|_| CertificateError::BadEncoding)?;
    if !x509::has_purpose(&cert, Purpose::ClientAuth) {
        return Err(CertificateError::InvalidPurpose.into());
    }
    identify(end_entity).map_err(|e| CertificateError::Other(OtherError(Arc::new(Readable(e)))))?;
    Ok(())
}

/// An error whose `Debug` is its message: rustls shows `CertificateError::Other` with `Debug`,
/// and the handshake failure logged for an operator should read as a sentence.
struct Readable(PkiError);

impl fmt::Debug for Readable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for Readable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Readable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let webpki = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .webpki
            .clone();
        let verified = webpki.verify_client_cert(end_entity, intermediates, now)?;
        check_client_cert(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Presents the current server certificate, replaced behind a lock on rotation.
#[derive(Debug)]
struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

#[cfg(test)]
mod tests;
