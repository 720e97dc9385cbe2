//! Small helpers over PEM, X.509 parsing, serial numbers and times, shared by the modules.

use std::time::SystemTime;

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;

use crate::PkiError;

/// The longest serial number RFC 5280 allows, in bytes.
const MAX_SERIAL_LEN: usize = 20;

fn label(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::Certificate => "CERTIFICATE",
        SectionKind::PublicKey => "PUBLIC KEY",
        SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
        SectionKind::PrivateKey => "PRIVATE KEY",
        SectionKind::EcPrivateKey => "EC PRIVATE KEY",
        SectionKind::Crl => "X509 CRL",
        SectionKind::Csr => "CERTIFICATE REQUEST",
        _ => "other",
    }
}

/// Decodes every PEM section of `pem`; `what` names the input in errors.
fn sections(pem: &str, what: &str) -> Result<Vec<(SectionKind, Vec<u8>)>, PkiError> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::InvalidPem {
            what: what.to_owned(),
            reason: format!("not valid PEM: {e}"),
        })
}

/// Returns the only section of one of `kinds` in `pem`.
fn one_section(
    pem: &str,
    kinds: &[SectionKind],
    what: &str,
) -> Result<(SectionKind, Vec<u8>), PkiError> {
    let all = sections(pem, what)?;
    let found: Vec<&'static str> = all.iter().map(|(kind, _)| label(*kind)).collect();
    let mut matching = all.into_iter().filter(|(kind, _)| kinds.contains(kind));
    let expected = label(kinds[0]);
    match (matching.next(), matching.next()) {
        (Some(section), None) => Ok(section),
        (None, _) if found.is_empty() => Err(PkiError::InvalidPem {
            what: what.to_owned(),
            reason: format!("expected a PEM {expected} block, found no PEM block at all"),
        }),
        (None, _) => Err(PkiError::InvalidPem {
            what: what.to_owned(),
            reason: format!(
                "expected a PEM {expected} block, found only {}",
                found.join(", ")
            ),
        }),
        (Some(_), Some(_)) => Err(PkiError::InvalidPem {
            what: what.to_owned(),
            reason: format!("expected exactly one PEM {expected} block, found several"),
        }),
    }
}

/// The DER of the only certificate in `pem`, checked to parse.
pub(crate) fn cert_from_pem(pem: &str, what: &str) -> Result<CertificateDer<'static>, PkiError> {
    let (_, der) = one_section(pem, &[SectionKind::Certificate], what)?;
    parse_cert(&der, what)?;
    Ok(CertificateDer::from(der))
}

/// The only private key in `pem`, in any of the encodings rustls loads.
pub(crate) fn key_from_pem(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    let kinds = [
        SectionKind::PrivateKey,
        SectionKind::EcPrivateKey,
        SectionKind::RsaPrivateKey,
    ];
    Ok(match one_section(pem, &kinds, what)? {
        (SectionKind::EcPrivateKey, der) => PrivateSec1KeyDer::from(der).into(),
        (SectionKind::RsaPrivateKey, der) => PrivatePkcs1KeyDer::from(der).into(),
        (_, der) => PrivatePkcs8KeyDer::from(der).into(),
    })
}

/// The only PKCS#8 ECDSA P-256 private key in `pem`, for signing with rcgen.
pub(crate) fn p256_key_from_pem(pem: &str, what: &str) -> Result<KeyPair, PkiError> {
    let (_, der) = one_section(pem, &[SectionKind::PrivateKey], what)?;
    KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(der), &PKCS_ECDSA_P256_SHA256)
        .map_err(|e| PkiError::InvalidKey {
            what: what.to_owned(),
            reason: format!("expected a PKCS#8 ECDSA P-256 private key: {e}"),
        })
}

/// The only certificate signing request in `pem`.
pub(crate) fn csr_from_pem(pem: &str) -> Result<Vec<u8>, PkiError> {
    one_section(pem, &[SectionKind::Csr], "certificate signing request")
        .map(|(_, der)| der)
        .map_err(|e| PkiError::InvalidCsr {
            reason: e.to_string(),
        })
}

/// Parses a DER certificate, refusing trailing bytes.
pub(crate) fn parse_cert<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, PkiError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(PkiError::InvalidCertificate {
            what: what.to_owned(),
            reason: "trailing bytes after the certificate".to_owned(),
        }),
        Err(e) => Err(PkiError::InvalidCertificate {
            what: what.to_owned(),
            reason: format!("not a valid X.509 certificate: {e}"),
        }),
    }
}

/// Whether `cert` names `ca` as its issuer and carries a valid signature by `ca`'s key.
pub(crate) fn issued_by(cert: &X509Certificate<'_>, ca: &X509Certificate<'_>) -> bool {
    cert.issuer().as_raw() == ca.subject().as_raw()
        && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// The extended key usages this PKI issues.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Purpose {
    /// TLS client authentication (devices, users).
    ClientAuth,
    /// TLS server authentication (the fleet manager).
    ServerAuth,
}

/// Whether `cert` has an extended key usage extension naming `purpose`. A certificate without
/// the extension does not qualify, though RFC 5280 would allow it any use.
pub(crate) fn has_purpose(cert: &X509Certificate<'_>, purpose: Purpose) -> bool {
    cert.extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|eku| match purpose {
            Purpose::ClientAuth => eku.value.client_auth,
            Purpose::ServerAuth => eku.value.server_auth,
        })
}

/// Checks that a CA certificate is one: a basic constraints extension saying so.
pub(crate) fn check_is_ca(ca: &X509Certificate<'_>, what: &str) -> Result<(), PkiError> {
    if ca.is_ca() {
        Ok(())
    } else {
        Err(PkiError::InvalidCertificate {
            what: what.to_owned(),
            reason: "not a CA certificate (no basic constraints with cA set)".to_owned(),
        })
    }
}

/// A serial number in the crate's canonical form: lowercase hex of its value, without leading
/// zero bytes.
pub(crate) fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    let digits: String = raw[start..].iter().map(|b| format!("{b:02x}")).collect();
    if digits.is_empty() {
        "0".to_owned()
    } else {
        digits
    }
}

/// Parses a serial number given in hex (either case, leading zeros allowed) into its value's
/// big-endian bytes.
pub(crate) fn parse_serial(serial: &str) -> Result<Vec<u8>, PkiError> {
    let refuse = |reason| PkiError::InvalidSerial {
        serial: serial.to_owned(),
        reason,
    };
    if serial.is_empty() {
        return Err(refuse("it is empty"));
    }
    if !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refuse("it is not hexadecimal"));
    }
    let digits = serial.trim_start_matches('0');
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits.to_owned()
    };
    let bytes: Vec<u8> = padded
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let hex = std::str::from_utf8(pair).unwrap_or("00");
            u8::from_str_radix(hex, 16).unwrap_or(0)
        })
        .collect();
    if bytes.is_empty() {
        return Err(refuse("serial number zero is never issued"));
    }
    if bytes.len() > MAX_SERIAL_LEN {
        return Err(refuse("it is longer than 20 bytes"));
    }
    Ok(bytes)
}

/// Converts an X.509 time to a [`SystemTime`].
pub(crate) fn system_time(t: ASN1Time) -> SystemTime {
    crate::validity::from_secs(t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials() {
        assert_eq!(serial_hex(&[0x00, 0x8a, 0x01]), "8a01");
        assert_eq!(serial_hex(&[0x7f]), "7f");
        assert_eq!(serial_hex(&[0, 0]), "0");
        assert_eq!(parse_serial("8A01").unwrap(), vec![0x8a, 0x01]);
        assert_eq!(parse_serial("0008a01").unwrap(), vec![0x8a, 0x01]);
        assert_eq!(parse_serial("a01").unwrap(), vec![0x0a, 0x01]);
        assert_eq!(parse_serial(&"ab".repeat(20)).unwrap().len(), 20);
        for (bad, why) in [
            ("", "empty"),
            ("0x1f", "hexadecimal"),
            ("1f ", "hexadecimal"),
            ("zz", "hexadecimal"),
            ("000", "zero"),
            (&"ab".repeat(21), "longer"),
        ] {
            let err = parse_serial(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn pem_errors_say_what_was_found() {
        let err = cert_from_pem("", "CA certificate").unwrap_err().to_string();
        assert!(
            err.contains("CA certificate") && err.contains("no PEM block"),
            "{err}"
        );
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let err = cert_from_pem(key, "CA certificate")
            .unwrap_err()
            .to_string();
        assert!(err.contains("found only PRIVATE KEY"), "{err}");
        let err = cert_from_pem("-----BEGIN CERTIFICATE-----\n!!\n", "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid PEM"), "{err}");
        let junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = cert_from_pem(junk, "x").unwrap_err().to_string();
        assert!(err.contains("not a valid X.509 certificate"), "{err}");
        let err = cert_from_pem(&junk.repeat(2), "x").unwrap_err().to_string();
        assert!(err.contains("exactly one"), "{err}");
    }
}
