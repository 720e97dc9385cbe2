use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use rcgen::PKCS_ECDSA_P384_SHA384;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::*;
use crate::{DeviceKey, identify};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn parse(der: &[u8]) -> X509Certificate<'_> {
    x509::parse_cert(der, "test").unwrap()
}

fn ca_cert(ca: &Ca) -> X509Certificate<'_> {
    parse(ca.cert_der())
}

fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject_alternative_name()
        .unwrap()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .map(|n| match n {
                    GeneralName::DNSName(d) => format!("dns:{d}"),
                    GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
                    GeneralName::URI(u) => format!("uri:{u}"),
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn common_name(cert: &X509Certificate<'_>) -> String {
    let cn = cert.subject().iter_common_name().next().unwrap();
    cn.as_str().unwrap().to_owned()
}

fn err_text<T: fmt::Debug>(r: Result<T, PkiError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn new_ca_is_a_self_signed_ten_year_ca() {
    let ca = Ca::generate().unwrap();
    let cert = ca_cert(&ca);
    assert!(cert.is_ca());
    assert_eq!(
        cert.basic_constraints()
            .unwrap()
            .unwrap()
            .value
            .path_len_constraint,
        Some(0)
    );
    assert_eq!(common_name(&cert), CA_COMMON_NAME);
    let other = Ca::generate().unwrap();
    assert_ne!(
        cert.subject(),
        ca_cert(&other).subject(),
        "each CA has its own name"
    );
    assert!(x509::issued_by(&cert, &cert));
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    let lifetime = cert.validity().time_to_expiration().unwrap();
    assert!(lifetime.whole_days() > 3650 - 2 && lifetime.whole_days() <= 3653);
    assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert_eq!(
        x509::cert_from_pem(ca.cert_pem(), "x").unwrap().as_ref(),
        ca.cert_der()
    );
}

#[test]
fn server_certificate_names_its_hosts() {
    let ca = Ca::generate().unwrap();
    let hosts = ["manager.example", "10.0.0.1", "::1", "manager.example"].map(String::from);
    let issued = ca
        .issue_server(&hosts, Validity::for_duration(DAY))
        .unwrap();
    let cert = parse(&issued.cert.der);
    assert_eq!(
        sans(&cert),
        [
            "dns:manager.example",
            "ip:[10, 0, 0, 1]",
            "ip:[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]"
        ]
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    assert!(!cert.is_ca());
    assert!(x509::issued_by(&cert, &ca_cert(&ca)));
    // The key is the certificate's.
    let key = x509::p256_key_from_pem(&issued.key_pem, "key").unwrap();
    assert_eq!(
        cert.public_key().raw,
        key.subject_public_key_info().as_slice()
    );
    // A server certificate is no client identity.
    assert!(matches!(
        identify(&issued.cert.der),
        Err(PkiError::NoIdentity)
    ));
    assert!(!format!("{issued:?}").contains("PRIVATE"));
}

#[test]
fn server_certificate_refuses_bad_hosts() {
    let ca = Ca::generate().unwrap();
    let v = Validity::for_duration(DAY);
    assert!(matches!(ca.issue_server(&[], v), Err(PkiError::NoHosts)));
    for bad in [
        "",
        "has space",
        "[::1]",
        "a..b",
        "host:443",
        "-lead.example",
        "é.example",
    ] {
        let err = err_text(ca.issue_server(&[bad.to_owned()], v));
        assert!(err.contains("invalid host"), "{bad:?}: {err}");
    }
}

#[test]
fn device_certificate_takes_only_the_key_from_the_csr() {
    let ca = Ca::generate().unwrap();
    let key = DeviceKey::generate().unwrap();
    // The device asks for another name; the CA decides.
    let csr = key.csr_pem("evil-twin").unwrap();
    let not_after = SystemTime::now() + 30 * DAY;
    let validity = Validity::between(SystemTime::now() - DAY, not_after).unwrap();
    let issued = ca.sign_device_csr(&csr, "dpu-7", validity).unwrap();
    let cert = parse(&issued.der);
    assert_eq!(common_name(&cert), "dpu-7");
    assert_eq!(sans(&cert), ["uri:urn:palisade:device:dpu-7"]);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    assert!(x509::issued_by(&cert, &ca_cert(&ca)));
    let key_pair = x509::p256_key_from_pem(&key.key_pem(), "key").unwrap();
    assert_eq!(
        cert.public_key().raw,
        key_pair.subject_public_key_info().as_slice()
    );

    let peer = identify(&issued.der).unwrap();
    assert_eq!(peer.identity, Identity::Device("dpu-7".into()));
    assert_eq!(peer.serial, issued.serial);
    assert_eq!(peer.not_after, issued.not_after);
    let drift = not_after.duration_since(issued.not_after).unwrap();
    assert!(drift < Duration::from_secs(1), "{drift:?}");
    assert_eq!(issued.pem, pem_encode("CERTIFICATE", &issued.der));
}

#[test]
fn user_certificate_carries_name_and_role() {
    let ca = Ca::generate().unwrap();
    let v = Validity::for_duration(DAY);
    for role in [Role::Admin, Role::ReadOnly] {
        let issued = ca.issue_user("alice", role, v).unwrap();
        let peer = identify(&issued.cert.der).unwrap();
        assert_eq!(
            peer.identity,
            Identity::User {
                name: "alice".into(),
                role
            }
        );
        let cert = parse(&issued.cert.der);
        assert_eq!(common_name(&cert), "alice");
        assert!(
            cert.extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .client_auth
        );
    }
}

#[test]
fn invalid_names_are_refused_everywhere() {
    let ca = Ca::generate().unwrap();
    let key = DeviceKey::generate().unwrap();
    let csr = key.csr_pem("dpu-1").unwrap();
    let v = Validity::for_duration(DAY);
    for bad in ["", "DPU", "-x", "a b", "a:b", &"x".repeat(64)] {
        assert!(matches!(
            ca.sign_device_csr(&csr, bad, v),
            Err(PkiError::InvalidName { .. })
        ));
        assert!(matches!(
            ca.issue_user(bad, Role::Admin, v),
            Err(PkiError::InvalidName { .. })
        ));
        assert!(matches!(
            key.csr_pem(bad),
            Err(PkiError::InvalidName { .. })
        ));
    }
}

/// Replaces the first occurrence of `from` in `der` by `to` (same length).
fn splice(der: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = der
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern in DER");
    let mut out = der.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

#[test]
fn altered_and_forged_csrs_are_refused() {
    let ca = Ca::generate().unwrap();
    let v = Validity::for_duration(DAY);
    let key = DeviceKey::generate().unwrap();
    let csr_der = x509::csr_from_pem(&key.csr_pem("dpu-1").unwrap()).unwrap();
    let csr_pem = |der: &[u8]| pem_encode("CERTIFICATE REQUEST", der);
    assert!(ca.sign_device_csr(&csr_pem(&csr_der), "dpu-1", v).is_ok());

    // A flipped bit in the signature.
    let mut bad_sig = csr_der.clone();
    *bad_sig.last_mut().unwrap() ^= 1;
    // A changed subject under the same signature.
    let renamed = splice(&csr_der, b"dpu-1", b"dpu-2");
    // Someone else's public key under the device's signature.
    let own = x509::p256_key_from_pem(&key.key_pem(), "k").unwrap();
    let other = generate_key().unwrap();
    let swapped = splice(
        &csr_der,
        &own.subject_public_key_info(),
        &other.subject_public_key_info(),
    );
    for forged in [bad_sig, renamed, swapped] {
        let err = err_text(ca.sign_device_csr(&csr_pem(&forged), "dpu-1", v));
        assert!(err.contains("signature does not verify"), "{err}");
    }

    let mut trailing = csr_der.clone();
    trailing.push(0);
    let garbled = &csr_der[..csr_der.len() / 2];
    let cases: [(String, &str); 5] = [
        (csr_pem(&trailing), "trailing bytes"),
        (csr_pem(garbled), "not a valid PKCS#10"),
        (String::new(), "no PEM block"),
        (key.key_pem(), "found only PRIVATE KEY"),
        (csr_pem(&csr_der).repeat(2), "exactly one"),
    ];
    for (pem, why) in cases {
        let err = err_text(ca.sign_device_csr(&pem, "dpu-1", v));
        assert!(
            err.starts_with("certificate signing request refused"),
            "{err}"
        );
        assert!(err.contains(why), "{why}: {err}");
    }
}

#[test]
fn csr_with_a_non_p256_key_is_refused() {
    let ca = Ca::generate().unwrap();
    let p384 = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&p384)
        .unwrap()
        .pem()
        .unwrap();
    let err = err_text(ca.sign_device_csr(&csr, "dpu-1", Validity::for_duration(DAY)));
    assert!(err.contains("not an ECDSA P-256 key"), "{err}");
    assert!(DeviceKey::from_pem(&p384.serialize_pem()).is_err());
}

#[test]
fn device_key_round_trips_through_pem() {
    let key = DeviceKey::generate().unwrap();
    let again = DeviceKey::from_pem(&key.key_pem()).unwrap();
    assert_eq!(again.key_pem(), key.key_pem());
    assert_eq!(format!("{key:?}"), "DeviceKey { .. }");
    let err = err_text(DeviceKey::from_pem("nonsense"));
    assert!(err.contains("device key"), "{err}");
}

#[test]
fn serials_are_random_positive_and_sixteen_bytes() {
    let ca = Ca::generate().unwrap();
    let v = Validity::for_duration(DAY);
    let mut seen = HashSet::new();
    for _ in 0..32 {
        let issued = ca.issue_user("bob", Role::ReadOnly, v).unwrap();
        let serial = issued.cert.serial;
        assert_eq!(serial.len(), 32, "{serial}");
        assert!(
            serial
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert!(u8::from_str_radix(&serial[..2], 16).unwrap() < 0x80);
        assert_eq!(parse(&issued.cert.der).raw_serial().len(), 16);
        assert!(seen.insert(serial));
    }
}

fn with_sans(ca: &Ca, uris: &[&str]) -> Vec<u8> {
    let mut params = CertificateParams::default();
    params.subject_alt_names = uris
        .iter()
        .map(|u| SanType::URI((*u).try_into().unwrap()))
        .collect();
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let key = generate_key().unwrap();
    params.signed_by(&key, ca.issuer()).unwrap().der().to_vec()
}

#[test]
fn identify_refuses_missing_multiple_and_unknown_identities() {
    let ca = Ca::generate().unwrap();
    assert!(matches!(
        identify(&with_sans(&ca, &[])),
        Err(PkiError::NoIdentity)
    ));
    assert!(matches!(
        identify(&with_sans(&ca, &["https://example.com", "urn:other:x"])),
        Err(PkiError::NoIdentity)
    ));
    let two = with_sans(&ca, &["urn:palisade:device:a", "urn:palisade:device:b"]);
    let err = err_text(identify(&two));
    assert!(
        err.contains("more than one") && err.contains("device:b"),
        "{err}"
    );
    for (uri, why) in [
        ("urn:palisade:gizmo:a", "unknown kind"),
        ("urn:palisade:user:a:root", "unknown role"),
        ("urn:palisade:device:A", "start"),
        ("URN:Palisade:device:a", "does not start"),
    ] {
        let err = err_text(identify(&with_sans(&ca, &[uri])));
        assert!(err.contains(why), "{uri}: {err}");
    }
    let fine = with_sans(&ca, &["https://example.com", "urn:palisade:device:a"]);
    assert_eq!(
        identify(&fine).unwrap().identity,
        Identity::Device("a".into())
    );
    // Not a certificate at all.
    let err = err_text(identify(b"\x30\x03\x02\x01\x01"));
    assert!(err.contains("not a valid X.509 certificate"), "{err}");
    let mut trailing = fine.clone();
    trailing.push(0);
    assert!(err_text(identify(&trailing)).contains("trailing bytes"));
}

#[test]
fn crl_lists_revoked_serials_and_is_signed_by_the_ca() {
    let ca = Ca::generate().unwrap();
    let at = SystemTime::now() - Duration::from_secs(60);
    let revoked = [
        Revoked {
            serial: "7f00aa".into(),
            at,
        },
        Revoked {
            serial: "00FF".into(),
            at,
        },
    ];
    let der = ca.crl(&revoked, 7, DAY).unwrap();
    let (rest, crl) = CertificateRevocationList::from_der(&der).unwrap();
    assert!(rest.is_empty());
    crl.verify_signature(ca_cert(&ca).public_key()).unwrap();
    assert_eq!(crl.issuer().as_raw(), ca_cert(&ca).subject().as_raw());
    assert_eq!(crl.crl_number().unwrap().to_string(), "7");
    let serials: Vec<String> = crl
        .iter_revoked_certificates()
        .map(|r| x509::serial_hex(r.raw_serial()))
        .collect();
    assert_eq!(serials, ["7f00aa", "ff"]);
    let next = crl.next_update().unwrap().timestamp() - crl.last_update().timestamp();
    assert_eq!(next, DAY.as_secs() as i64);

    let bad = [Revoked {
        serial: "xyz".into(),
        at,
    }];
    assert!(err_text(ca.crl(&bad, 1, DAY)).contains("invalid serial number \"xyz\""));
    assert!(err_text(ca.crl(&[], 1, Duration::ZERO)).contains("at least one second"));
    assert!(ca.crl(&[], u64::MAX, DAY).is_ok());
}

#[test]
fn from_pem_checks_the_pair() {
    let ca = Ca::generate().unwrap();
    let (other, other_key) = Ca::generate_with_key().unwrap();
    let err = err_text(Ca::from_pem(ca.cert_pem(), &other_key));
    assert!(err.contains("does not match"), "{err}");
    let again = Ca::from_pem(other.cert_pem(), &other_key).unwrap();
    assert_eq!(again.cert_der(), other.cert_der());
    // A leaf with its own key is not a CA.
    let leaf = other
        .issue_server(&["x.example".into()], Validity::for_duration(DAY))
        .unwrap();
    let err = err_text(Ca::from_pem(&leaf.cert.pem, &leaf.key_pem));
    assert!(err.contains("not a CA certificate"), "{err}");
    assert!(!format!("{again:?}").contains("PRIVATE"));
}

mod files {
    use super::*;

    #[test]
    fn created_once_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = Ca::load_or_create(dir.path()).unwrap();
        assert!(created);
        let (second, created) = Ca::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(first.cert_der(), second.cert_der());
        assert_eq!(
            fs::read_to_string(dir.path().join(CA_CERT_FILE)).unwrap(),
            first.cert_pem()
        );
        // Both sign the same way: a certificate from one verifies under the other.
        let leaf = second
            .issue_user("x", Role::Admin, Validity::for_duration(DAY))
            .unwrap();
        assert!(x509::issued_by(&parse(&leaf.cert.der), &ca_cert(&first)));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
    }

    #[test]
    fn creates_missing_directories() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        assert!(Ca::load_or_create(&nested).unwrap().1);
        assert!(nested.join(CA_KEY_FILE).exists());
    }

    #[cfg(unix)]
    #[test]
    fn modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        Ca::load_or_create(dir.path()).unwrap();
        let mode = |f| {
            fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(CA_KEY_FILE), 0o600);
        assert_eq!(mode(CA_CERT_FILE), 0o644);
    }

    #[test]
    fn corrupted_key_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        Ca::load_or_create(dir.path()).unwrap();
        let key_path = dir.path().join(CA_KEY_FILE);
        let pem = fs::read_to_string(&key_path).unwrap();
        fs::write(&key_path, pem.replace('A', "B")).unwrap();
        let err = err_text(Ca::load_or_create(dir.path()));
        assert!(err.contains(&key_path.display().to_string()), "{err}");

        fs::write(&key_path, "").unwrap();
        let err = err_text(Ca::load_or_create(dir.path()));
        assert!(
            err.contains(&key_path.display().to_string()) && err.contains("no PEM"),
            "{err}"
        );
    }

    #[test]
    fn mismatched_key_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        Ca::load_or_create(dir.path()).unwrap();
        let (_, other_key) = Ca::generate_with_key().unwrap();
        let key_path = dir.path().join(CA_KEY_FILE);
        fs::write(&key_path, other_key).unwrap();
        let err = err_text(Ca::load_or_create(dir.path()));
        assert!(err.contains("does not match"), "{err}");
        assert!(err.contains(&key_path.display().to_string()), "{err}");
        assert!(
            err.contains(&dir.path().join(CA_CERT_FILE).display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn corrupted_certificate_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        Ca::load_or_create(dir.path()).unwrap();
        let cert_path = dir.path().join(CA_CERT_FILE);
        fs::write(
            &cert_path,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = err_text(Ca::load_or_create(dir.path()));
        assert!(err.contains(&cert_path.display().to_string()), "{err}");
        assert!(err.contains("not a valid X.509"), "{err}");
    }

    #[test]
    fn one_file_missing_is_refused_not_replaced() {
        for missing in [CA_KEY_FILE, CA_CERT_FILE] {
            let dir = tempfile::tempdir().unwrap();
            Ca::load_or_create(dir.path()).unwrap();
            let before = fs::read(dir.path().join(if missing == CA_KEY_FILE {
                CA_CERT_FILE
            } else {
                CA_KEY_FILE
            }))
            .unwrap();
            fs::remove_file(dir.path().join(missing)).unwrap();
            let err = Ca::load_or_create(dir.path()).unwrap_err();
            assert!(matches!(err, PkiError::CaFileMissing { .. }), "{err}");
            assert!(err.to_string().contains(missing), "{err}");
            assert!(!dir.path().join(missing).exists());
            let present: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
            assert_eq!(present.len(), 1);
            let after = fs::read(present[0].as_ref().unwrap().path()).unwrap();
            assert_eq!(before, after);
        }
    }
}
