use std::time::{Duration, SystemTime};

use super::*;
use crate::{Ca, Issued, Revoked, Role, Validity, client_config};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

struct Fixture {
    ca: Ca,
    server: Issued,
}

fn fixture() -> Fixture {
    let ca = Ca::generate().unwrap();
    let server = ca
        .issue_server(&["localhost".into()], Validity::for_duration(DAY))
        .unwrap();
    Fixture { ca, server }
}

fn new_tls(f: &Fixture, crl: Option<&[u8]>) -> Result<ServerTls, PkiError> {
    ServerTls::new(f.ca.cert_pem(), &f.server.cert.pem, &f.server.key_pem, crl)
}

fn err_text<T: fmt::Debug>(r: Result<T, PkiError>) -> String {
    r.unwrap_err().to_string()
}

fn presented_serial(tls: &ServerTls) -> String {
    let key = tls.inner.resolver.current.read().unwrap().clone();
    crate::identify(key.end_entity_cert().unwrap())
        .map(|p| p.serial)
        .unwrap_or_else(|_| {
            let cert = x509::parse_cert(key.end_entity_cert().unwrap(), "x").unwrap();
            x509::serial_hex(cert.raw_serial())
        })
}

#[test]
fn builds_with_and_without_a_crl() {
    let f = fixture();
    let tls = new_tls(&f, None).unwrap();
    assert_eq!(tls.crl_number(), None);
    let config = tls.server_config();
    assert_eq!(
        config.alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    assert_eq!(config.send_tls13_tickets, 0);
    assert!(!config.session_storage.can_cache());
    assert!(Arc::ptr_eq(&config, &tls.clone().server_config()));

    let crl = f.ca.crl(&[], 3, DAY).unwrap();
    assert_eq!(new_tls(&f, Some(&crl)).unwrap().crl_number(), Some(3));
    assert!(format!("{tls:?}").starts_with("ServerTls"));
}

#[test]
fn refuses_bad_construction_inputs() {
    let f = fixture();
    let other = fixture();
    let user =
        f.ca.issue_user("alice", Role::Admin, Validity::for_duration(DAY))
            .unwrap();
    let ca_pem = f.ca.cert_pem();
    let (cert, key) = (f.server.cert.pem.as_str(), f.server.key_pem.as_str());
    let cases: [(&str, &str, &str, &str); 8] = [
        (
            "",
            cert,
            key,
            "CA certificate: expected a PEM CERTIFICATE block",
        ),
        (cert, cert, key, "CA certificate: not a CA certificate"),
        (
            ca_pem,
            key,
            cert,
            "server certificate: expected a PEM CERTIFICATE block, found only PRIVATE KEY",
        ),
        (
            ca_pem,
            cert,
            "",
            "server key: expected a PEM PRIVATE KEY block",
        ),
        (
            ca_pem,
            &other.server.cert.pem,
            &other.server.key_pem,
            "server certificate was not issued by this fleet CA",
        ),
        (
            ca_pem,
            cert,
            &other.server.key_pem,
            "the private key in server key does not match the public key of server certificate",
        ),
        (
            ca_pem,
            &user.cert.pem,
            &user.key_pem,
            "lacks the serverAuth extended key usage",
        ),
        (
            ca_pem,
            cert,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "server key",
        ),
    ];
    for (ca, cert, key, expected) in cases {
        let err = err_text(ServerTls::new(ca, cert, key, None));
        assert!(err.contains(expected), "expected {expected:?}, got {err:?}");
    }
}

#[test]
fn refuses_bad_crls_and_keeps_the_current_one() {
    let f = fixture();
    let other = fixture();
    let tls = new_tls(&f, Some(&f.ca.crl(&[], 5, DAY).unwrap())).unwrap();
    let good = f.ca.crl(&[], 6, DAY).unwrap();
    let mut trailing = good.clone();
    trailing.push(0);
    let mut bad_sig = good.clone();
    *bad_sig.last_mut().unwrap() ^= 1;
    let cases: [(Vec<u8>, &str); 6] = [
        (Vec::new(), "not a valid X.509 CRL"),
        (b"garbage".to_vec(), "not a valid X.509 CRL"),
        (trailing, "trailing bytes"),
        (bad_sig, "not signed by this fleet CA"),
        (
            other.ca.crl(&[], 9, DAY).unwrap(),
            "not signed by this fleet CA",
        ),
        (
            f.ca.crl(&[], 4, DAY).unwrap(),
            "CRL number 4 is lower than the installed CRL's, 5",
        ),
    ];
    for (crl, expected) in cases {
        let err = err_text(tls.set_crl(&crl));
        assert!(
            err.starts_with("certificate revocation list refused"),
            "{err}"
        );
        assert!(err.contains(expected), "expected {expected:?}, got {err:?}");
        assert_eq!(tls.crl_number(), Some(5));
    }
    // The same number again is fine (a re-published CRL), and so is a higher one.
    tls.set_crl(&f.ca.crl(&[], 5, DAY).unwrap()).unwrap();
    tls.set_crl(&good).unwrap();
    assert_eq!(tls.crl_number(), Some(6));
    // Construction checks CRLs the same way.
    let err = err_text(new_tls(&f, Some(&other.ca.crl(&[], 1, DAY).unwrap())));
    assert!(err.contains("not signed by this fleet CA"), "{err}");
}

#[test]
fn crl_revokes_by_serial_in_the_verifier() {
    let f = fixture();
    let tls = new_tls(&f, None).unwrap();
    let alice =
        f.ca.issue_user("alice", Role::Admin, Validity::for_duration(DAY))
            .unwrap();
    let cert = CertificateDer::from(alice.cert.der.clone());
    let now = UnixTime::now();
    assert!(
        tls.inner
            .verifier
            .verify_client_cert(&cert, &[], now)
            .is_ok()
    );
    let revoked = Revoked {
        serial: alice.cert.serial.clone(),
        at: SystemTime::now(),
    };
    tls.set_crl(&f.ca.crl(&[revoked], 1, DAY).unwrap()).unwrap();
    let err = tls
        .inner
        .verifier
        .verify_client_cert(&cert, &[], now)
        .unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::Revoked)
    );
}

#[test]
fn verifier_requires_client_auth_and_an_identity() {
    let f = fixture();
    let tls = new_tls(&f, None).unwrap();
    let verify = |der: &[u8]| {
        tls.inner.verifier.verify_client_cert(
            &CertificateDer::from(der.to_vec()),
            &[],
            UnixTime::now(),
        )
    };
    // The server certificate chains to the CA but is no client.
    let err = verify(&f.server.cert.der).unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::InvalidPurpose)
                | rustls::Error::InvalidCertificate(CertificateError::InvalidPurposeContext { .. })
        ),
        "{err:?}"
    );
    // A clientAuth leaf without a palisade identity.
    let mut params = rcgen::CertificateParams::default();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = crate::ca::generate_key().unwrap();
    let issuer = f.ca.issuer();
    let anonymous = params.signed_by(&key, issuer).unwrap();
    let err = verify(anonymous.der()).unwrap_err();
    assert!(err.to_string().contains("no palisade identity"), "{err}");
    // A leaf with no extended key usage at all, which plain WebPKI would accept.
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "urn:palisade:device:x".try_into().unwrap(),
    )];
    let no_eku = params.signed_by(&key, issuer).unwrap();
    let err = verify(no_eku.der()).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::InvalidPurpose)
    );
}

#[test]
fn rotate_checks_before_replacing() {
    let f = fixture();
    let other = fixture();
    let tls = new_tls(&f, None).unwrap();
    let before = presented_serial(&tls);
    assert_eq!(before, f.server.cert.serial);
    for (cert, key) in [
        (&other.server.cert.pem, &other.server.key_pem),
        (&f.server.cert.pem, &other.server.key_pem),
    ] {
        assert!(tls.rotate(cert, key).is_err());
        assert_eq!(presented_serial(&tls), before);
    }
    let next =
        f.ca.issue_server(&["localhost".into()], Validity::for_duration(DAY))
            .unwrap();
    tls.clone().rotate(&next.cert.pem, &next.key_pem).unwrap();
    assert_eq!(presented_serial(&tls), next.cert.serial);
}

#[test]
fn client_config_checks_the_identity() {
    let f = fixture();
    let other = fixture();
    let v = Validity::for_duration(DAY);
    let alice = f.ca.issue_user("alice", Role::Admin, v).unwrap();
    let mallory = other.ca.issue_user("mallory", Role::Admin, v).unwrap();
    let ca = f.ca.cert_pem();
    let config = client_config(ca, Some((&alice.cert.pem, &alice.key_pem))).unwrap();
    assert_eq!(config.alpn_protocols, [b"h2".to_vec()]);
    assert!(config.client_auth_cert_resolver.has_certs());
    assert!(
        !client_config(ca, None)
            .unwrap()
            .client_auth_cert_resolver
            .has_certs()
    );
    let cases = [
        (
            ca,
            mallory.cert.pem.as_str(),
            mallory.key_pem.as_str(),
            "client certificate was not issued by this fleet CA",
        ),
        (ca, &alice.cert.pem, &mallory.key_pem, "does not match"),
        (
            ca,
            &alice.key_pem,
            &alice.cert.pem,
            "client certificate: expected a PEM CERTIFICATE block, found only PRIVATE KEY",
        ),
        (
            &alice.cert.pem,
            &alice.cert.pem,
            &alice.key_pem,
            "CA certificate: not a CA certificate",
        ),
        (
            ca,
            &f.server.cert.pem,
            &f.server.key_pem,
            "client certificate: it lacks the clientAuth extended key usage",
        ),
    ];
    for (ca, cert, key, expected) in cases {
        let err = err_text(client_config(ca, Some((cert, key))));
        assert!(err.contains(expected), "expected {expected:?}, got {err:?}");
    }
}

#[test]
fn verifier_tells_expired_from_not_yet_valid() {
    let f = fixture();
    let tls = new_tls(&f, None).unwrap();
    let now = SystemTime::now();
    let issue = |from, to| {
        let v = Validity::between(from, to).unwrap();
        let der = f.ca.issue_user("bob", Role::Admin, v).unwrap().cert.der;
        tls.inner
            .verifier
            .verify_client_cert(&CertificateDer::from(der), &[], UnixTime::now())
    };
    let expired = issue(now - 2 * DAY, now - DAY).unwrap_err();
    assert!(
        matches!(
            expired,
            rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
        ),
        "{expired:?}"
    );
    let early = issue(now + DAY, now + 2 * DAY).unwrap_err();
    assert!(
        matches!(
            early,
            rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext { .. })
        ),
        "{early:?}"
    );
}

#[test]
fn shared_types_are_thread_safe() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send + 'static>() {}
    send_sync::<Ca>();
    send_sync::<ServerTls>();
    send_sync::<crate::DeviceKey>();
    send_sync::<crate::ConnInfo>();
    send_sync::<PkiError>();
    send::<crate::TlsConn>();
    send::<crate::Incoming>();
}
