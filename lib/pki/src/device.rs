//! The device side of enrollment (see [`DeviceKey`]).

use std::fmt;

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair};

use crate::ca::{generate_key, identity_san, signing};
use crate::identity::{Identity, validate_name};
use crate::{PkiError, x509};

/// A device's ECDSA P-256 private key, which never leaves the device.
///
/// A device generates its key once, stores [`DeviceKey::key_pem`] where only it can read it,
/// and sends [`DeviceKey::csr_pem`] to the fleet manager over a TLS connection without a client
/// certificate. The manager signs it with [`Ca::sign_device_csr`](crate::Ca::sign_device_csr)
/// under the name *it* decides, and the device then connects with the returned certificate and
/// this key.
pub struct DeviceKey {
    key: KeyPair,
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKey").finish_non_exhaustive()
    }
}

impl DeviceKey {
    /// Generates a new key.
    pub fn generate() -> Result<DeviceKey, PkiError> {
        Ok(DeviceKey {
            key: generate_key()?,
        })
    }

    /// Loads a key saved with [`DeviceKey::key_pem`]: a PKCS#8 ECDSA P-256 key in PEM.
    pub fn from_pem(key_pem: &str) -> Result<DeviceKey, PkiError> {
        Ok(DeviceKey {
            key: x509::p256_key_from_pem(key_pem, "device key")?,
        })
    }

    /// The key in PKCS#8 PEM, to store on the device. Keep it secret.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A certificate signing request for this key, signed by it, asking for the name `device`
    /// (CN and `urn:palisade:device:<device>` URI). The CA decides the name in the certificate
    /// regardless; asking for it makes the request self-describing.
    pub fn csr_pem(&self, device: &str) -> Result<String, PkiError> {
        validate_name(device)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, device);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![identity_san(&Identity::Device(device.to_owned()))?];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let csr = params
            .serialize_request(&self.key)
            .map_err(signing("sign the certificate signing request"))?;
        csr.pem()
            .map_err(signing("encode the certificate signing request"))
    }
}
