//! The fleet CA, held by the fleet manager (see [`Ca`]).

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PublicKeyData, RevokedCertParams, SanType, SerialNumber,
    SubjectPublicKeyInfo,
};
use rustls_pki_types::{CertificateDer, DnsName};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::identity::{Identity, Role, validate_name};
use crate::validity::{Validity, offset};
use crate::{PkiError, x509};

/// The file, in the directory given to [`Ca::load_or_create`], that holds the CA certificate.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The file, in the directory given to [`Ca::load_or_create`], that holds the CA private key.
pub const CA_KEY_FILE: &str = "ca.key";
/// The common name of a CA created by this crate.
pub const CA_COMMON_NAME: &str = "Palisade fleet CA";
/// How long a CA created by this crate is valid: ten years.
pub const CA_VALIDITY: Duration = Duration::from_secs(3653 * 24 * 60 * 60);

/// The length of the serial numbers this CA gives, in bytes.
const SERIAL_LEN: usize = 16;

/// A certificate issued by the [`Ca`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCert {
    /// The certificate in PEM.
    pub pem: String,
    /// The certificate in DER.
    pub der: Vec<u8>,
    /// Its serial number in lowercase hex (what [`Revoked::serial`] takes).
    pub serial: String,
    /// When it expires (to the second).
    pub not_after: SystemTime,
}

/// A certificate issued by the [`Ca`] together with the private key generated for it.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    /// The certificate.
    pub cert: IssuedCert,
    /// Its private key, PKCS#8 in PEM. Keep it secret.
    pub key_pem: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("cert", &self.cert)
            .field("key_pem", &"<secret>")
            .finish()
    }
}

/// A revoked certificate, for [`Ca::crl`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revoked {
    /// The certificate's serial number in hex, as in [`IssuedCert::serial`] or
    /// [`PeerIdentity::serial`](crate::PeerIdentity::serial).
    pub serial: String,
    /// When it was revoked.
    pub at: SystemTime,
}

/// The fleet certificate authority: its certificate and signing key.
///
/// One self-signed ECDSA P-256 CA issues every certificate of the fleet: the manager's server
/// certificate ([`Ca::issue_server`]), device certificates from CSRs, so that device keys never
/// leave the devices ([`Ca::sign_device_csr`]), and orchestrator user certificates
/// ([`Ca::issue_user`]). It also signs the CRL that [`ServerTls`](crate::ServerTls) enforces
/// ([`Ca::crl`]). There are no intermediates: every leaf is signed by the CA key directly, and
/// the CA certificate forbids further CAs below it (path length 0). Serial numbers are 16
/// random bytes.
///
/// The key never leaves this value: there is no accessor for it, and [`Ca::load_or_create`]
/// writes it only to its own file, readable by its owner only.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads the CA from `dir` ([`CA_CERT_FILE`] and [`CA_KEY_FILE`]), or creates a new one
    /// there if neither file exists. Returns the CA and whether it was created.
    ///
    /// A new CA is named `O=Palisade, OU=fleet <random id>, CN=Palisade fleet CA` (the random
    /// part keeps two fleets' CAs apart) and valid for [`CA_VALIDITY`]; its certificate is written with mode 0644 and its
    /// key with mode 0600 (on Unix), `dir` being created if needed. Loading checks that both
    /// files parse, that the certificate is a CA and that the key is the certificate's, and says
    /// which file is wrong otherwise. If only one of the files exists this refuses to guess and
    /// returns [`PkiError::CaFileMissing`].
    pub fn load_or_create(dir: &Path) -> Result<(Ca, bool), PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let exists = |path: &Path| {
            path.try_exists().map_err(|source| PkiError::Io {
                path: path.to_owned(),
                source,
            })
        };
        match (exists(&cert_path)?, exists(&key_path)?) {
            (true, true) => Ok((Ca::load(&cert_path, &key_path)?, false)),
            (false, false) => {
                let (ca, key_pem) = Ca::generate_with_key()?;
                fs::create_dir_all(dir).map_err(|source| PkiError::Io {
                    path: dir.to_owned(),
                    source,
                })?;
                // The key goes first: a crash in between leaves a key without a certificate,
                // which the next start reports rather than silently replaces.
                write_file(&key_path, key_pem.as_bytes(), 0o600)?;
                write_file(&cert_path, ca.cert_pem.as_bytes(), 0o644)?;
                Ok((ca, true))
            }
            (true, false) => Err(PkiError::CaFileMissing {
                present: cert_path,
                missing: key_path,
            }),
            (false, true) => Err(PkiError::CaFileMissing {
                present: key_path,
                missing: cert_path,
            }),
        }
    }

    /// Creates a new CA held in memory only (for tests and tools; the fleet manager uses
    /// [`Ca::load_or_create`]).
    pub fn generate() -> Result<Ca, PkiError> {
        Ok(Ca::generate_with_key()?.0)
    }

    fn generate_with_key() -> Result<(Ca, String), PkiError> {
        let key = generate_key()?;
        let serial = random_serial()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Palisade");
        // Two fleets' CAs must not share a name: a verifier looks its trust anchor up by name,
        // and a CRL names its issuer only by name.
        let fleet_id = x509::serial_hex(serial.as_ref());
        dn.push(
            DnType::OrganizationalUnitName,
            format!("fleet {}", &fleet_id[..8]),
        );
        dn.push(DnType::CommonName, CA_COMMON_NAME);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(serial);
        (params.not_before, params.not_after) = Validity::for_duration(CA_VALIDITY).to_offset()?;
        let cert = params.self_signed(&key).map_err(signing("sign the CA"))?;
        let key_pem = key.serialize_pem();
        let ca = Ca::from_parts(cert.der().clone(), key, "new CA certificate")?;
        Ok((ca, key_pem))
    }

    fn load(cert_path: &Path, key_path: &Path) -> Result<Ca, PkiError> {
        let read = |path: &Path| {
            fs::read_to_string(path).map_err(|source| PkiError::Io {
                path: path.to_owned(),
                source,
            })
        };
        warn_if_key_readable_by_others(key_path);
        Ca::from_pem_named(
            &read(cert_path)?,
            &read(key_path)?,
            &format!("CA certificate {}", cert_path.display()),
            &format!("CA key {}", key_path.display()),
        )
    }

    /// Builds the CA from its certificate and PKCS#8 ECDSA P-256 key, both in PEM, checking that
    /// the certificate is a CA and the key is its key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        Ca::from_pem_named(cert_pem, key_pem, "CA certificate", "CA key")
    }

    fn from_pem_named(
        cert_pem: &str,
        key_pem: &str,
        cert_what: &str,
        key_what: &str,
    ) -> Result<Ca, PkiError> {
        let cert_der = x509::cert_from_pem(cert_pem, cert_what)?;
        let key = x509::p256_key_from_pem(key_pem, key_what)?;
        let cert = x509::parse_cert(&cert_der, cert_what)?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(PkiError::KeyMismatch {
                key: key_what.to_owned(),
                cert: cert_what.to_owned(),
            });
        }
        Ca::from_parts(cert_der, key, cert_what)
    }

    fn from_parts(
        cert_der: CertificateDer<'static>,
        key: KeyPair,
        what: &str,
    ) -> Result<Ca, PkiError> {
        x509::check_is_ca(&x509::parse_cert(&cert_der, what)?, what)?;
        let issuer =
            Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| PkiError::InvalidCertificate {
                what: what.to_owned(),
                reason: format!("cannot sign with it: {e}"),
            })?;
        let cert_pem = pem_encode("CERTIFICATE", &cert_der);
        Ok(Ca {
            issuer,
            cert_der,
            cert_pem,
        })
    }

    /// The CA certificate in PEM: what devices and tools trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Issues the fleet manager's server certificate, with a new key, for `hosts`: each an IP
    /// address (becoming an IP SAN) or a DNS name (a DNS SAN). Duplicates are dropped.
    pub fn issue_server(&self, hosts: &[String], validity: Validity) -> Result<Issued, PkiError> {
        let mut sans = Vec::new();
        for host in hosts {
            let san = if let Ok(ip) = host.parse::<IpAddr>() {
                SanType::IpAddress(ip)
            } else {
                let invalid = || PkiError::InvalidHost { host: host.clone() };
                DnsName::try_from(host.as_str()).map_err(|_| invalid())?;
                SanType::DnsName(host.as_str().try_into().map_err(|_| invalid())?)
            };
            if !sans.contains(&san) {
                sans.push(san);
            }
        }
        if sans.is_empty() {
            return Err(PkiError::NoHosts);
        }
        let params = leaf_params(
            "Palisade fleet manager",
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
            validity,
        )?;
        self.issue_with_new_key(&params)
    }

    /// Signs a device's certificate signing request for the device named `device`.
    ///
    /// The CSR's self-signature is verified first, so a request whose contents were altered, or
    /// that carries a public key it was not signed with, is refused. Only its public key is used,
    /// and it must be ECDSA P-256: the subject, names and extensions it asks for are ignored, and
    /// the certificate gets CN `device`, the URI `urn:palisade:device:<device>` and the
    /// clientAuth extended key usage.
    pub fn sign_device_csr(
        &self,
        csr_pem: &str,
        device: &str,
        validity: Validity,
    ) -> Result<IssuedCert, PkiError> {
        validate_name(device)?;
        let der = x509::csr_from_pem(csr_pem)?;
        let refuse = |reason: String| PkiError::InvalidCsr { reason };
        let csr = match X509CertificationRequest::from_der(&der) {
            Ok(([], csr)) => csr,
            Ok(_) => return Err(refuse("trailing bytes after the request".to_owned())),
            Err(e) => return Err(refuse(format!("not a valid PKCS#10 request: {e}"))),
        };
        csr.verify_signature().map_err(|_| {
            refuse(
                "its signature does not verify with the public key it carries (it was altered \
                 or forged)"
                    .to_owned(),
            )
        })?;
        let public_key =
            SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
                .ok()
                .filter(|key| key.algorithm() == &PKCS_ECDSA_P256_SHA256)
                .ok_or_else(|| refuse("its public key is not an ECDSA P-256 key".to_owned()))?;
        let params = leaf_params(
            device,
            vec![identity_san(&Identity::Device(device.to_owned()))?],
            ExtendedKeyUsagePurpose::ClientAuth,
            validity,
        )?;
        let cert = params
            .signed_by(&public_key, &self.issuer)
            .map_err(signing("sign the device certificate"))?;
        issued_cert(cert.der())
    }

    /// Issues an orchestrator user's (or tool's) certificate, with a new key: CN `name`, the URI
    /// `urn:palisade:user:<name>:<role>` and the clientAuth extended key usage.
    pub fn issue_user(
        &self,
        name: &str,
        role: Role,
        validity: Validity,
    ) -> Result<Issued, PkiError> {
        validate_name(name)?;
        let identity = Identity::User {
            name: name.to_owned(),
            role,
        };
        let params = leaf_params(
            name,
            vec![identity_san(&identity)?],
            ExtendedKeyUsagePurpose::ClientAuth,
            validity,
        )?;
        self.issue_with_new_key(&params)
    }

    /// Signs a certificate revocation list (DER) naming `revoked`, numbered `crl_number`, valid
    /// from now and promising the next one within `next_update`.
    ///
    /// CRL numbers must increase from one CRL to the next: [`ServerTls::set_crl`] refuses to
    /// replace a CRL with a lower-numbered one.
    ///
    /// [`ServerTls::set_crl`]: crate::ServerTls::set_crl
    pub fn crl(
        &self,
        revoked: &[Revoked],
        crl_number: u64,
        next_update: Duration,
    ) -> Result<Vec<u8>, PkiError> {
        if next_update < Duration::from_secs(1) {
            return Err(PkiError::InvalidValidity {
                reason: "a CRL's next update must be at least one second away".to_owned(),
            });
        }
        let now = SystemTime::now();
        let next = now
            .checked_add(next_update)
            .ok_or_else(|| PkiError::InvalidValidity {
                reason: "a CRL's next update is too far away".to_owned(),
            })?;
        let revoked_certs = revoked
            .iter()
            .map(|r| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&x509::parse_serial(&r.serial)?),
                    revocation_time: offset(r.at)?,
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let params = CertificateRevocationListParams {
            this_update: offset(now)?,
            next_update: offset(next)?,
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.issuer)
            .map_err(signing("sign the CRL"))?;
        Ok(crl.der().to_vec())
    }

    /// The CA as rcgen's signer, for tests that need certificates this API would not issue.
    #[cfg(test)]
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    fn issue_with_new_key(&self, params: &CertificateParams) -> Result<Issued, PkiError> {
        let key = generate_key()?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(signing("sign the certificate"))?;
        Ok(Issued {
            cert: issued_cert(cert.der())?,
            key_pem: key.serialize_pem(),
        })
    }
}

/// The parameters every leaf certificate shares.
fn leaf_params(
    common_name: &str,
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
    validity: Validity,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    (params.not_before, params.not_after) = validity.to_offset()?;
    Ok(params)
}

pub(crate) fn identity_san(identity: &Identity) -> Result<SanType, PkiError> {
    let uri = identity.uri();
    let uri = uri
        .as_str()
        .try_into()
        .map_err(|e| PkiError::UnknownIdentity {
            uri: uri.clone(),
            reason: format!("{e}"),
        })?;
    Ok(SanType::URI(uri))
}

fn issued_cert(der: &[u8]) -> Result<IssuedCert, PkiError> {
    let cert = x509::parse_cert(der, "issued certificate")?;
    Ok(IssuedCert {
        pem: pem_encode("CERTIFICATE", der),
        der: der.to_vec(),
        serial: x509::serial_hex(cert.raw_serial()),
        not_after: x509::system_time(cert.validity().not_after),
    })
}

/// A new ECDSA P-256 key.
pub(crate) fn generate_key() -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(signing("generate an ECDSA P-256 key"))
}

pub(crate) fn signing(operation: &'static str) -> impl Fn(rcgen::Error) -> PkiError {
    move |e| PkiError::Signing {
        operation,
        reason: e.to_string(),
    }
}

/// 16 random bytes, positive and with a non-zero first byte so that every serial is exactly
/// 16 bytes (32 hex digits) long.
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; SERIAL_LEN];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| PkiError::Signing {
            operation: "draw a random serial number",
            reason: "the system random number generator failed".to_owned(),
        })?;
    bytes[0] = (bytes[0] & 0x7f).max(1);
    Ok(SerialNumber::from_slice(&bytes))
}

pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut file = options.open(&tmp).map_err(io)?;
    #[cfg(unix)]
    {
        // The mode given to open is reduced by the umask, and not applied at all if a stale
        // temporary file already existed: set it explicitly.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

fn warn_if_key_readable_by_others(key_path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(key_path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %key_path.display(),
                    mode = format_args!("{mode:o}"),
                    "the CA key is readable by other users; run chmod 600 on it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = key_path;
}

#[cfg(test)]
mod tests;
