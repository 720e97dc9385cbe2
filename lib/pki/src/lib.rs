//! The Palisade fleet PKI: the certificate authority, device enrollment, peer identities and
//! the mutual-TLS plumbing that the fleet manager and the devices share.
//!
//! # The model
//!
//! The fleet manager holds one self-signed ECDSA P-256 [`Ca`]. Everything in the fleet trusts
//! that CA and nothing else, and every certificate it issues names exactly one subject:
//!
//! | who | certificate | identity (URI SAN) | key usage |
//! |---|---|---|---|
//! | the manager | [`Ca::issue_server`], for the DNS names and IPs it is reached at | none | serverAuth |
//! | a device | [`Ca::sign_device_csr`], from the device's CSR | `urn:palisade:device:<name>` | clientAuth |
//! | a user or tool | [`Ca::issue_user`] | `urn:palisade:user:<name>:<role>` | clientAuth |
//!
//! **Enrollment.** A device generates a [`DeviceKey`] that never leaves it, connects to the
//! manager *without* a client certificate (the server allows that) and sends
//! [`DeviceKey::csr_pem`]. The manager decides whether and under which name to admit it and
//! signs the CSR; only the CSR's public key is used, after its self-signature is verified. From
//! then on the device connects with its certificate.
//!
//! **Authentication.** [`ServerTls`] verifies any client certificate in the handshake (chain to
//! the CA, validity, clientAuth, the current CRL, one well-formed identity) and [`incoming`]
//! hands tonic connections that carry the result as a [`ConnInfo`]; handlers read it from the
//! request extensions and decide what an anonymous or identified peer may do.
//!
//! **Revocation and rotation.** [`Ca::crl`] signs a CRL; [`ServerTls::set_crl`] makes new
//! handshakes enforce it and [`ServerTls::rotate`] replaces the server certificate, both
//! without restarting the server.
//!
//! **Clients.** [`client_config`] trusts only the fleet CA and optionally presents an identity;
//! [`channel`] dials a tonic [`Channel`](tonic::transport::Channel) over it.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_pki::{Ca, DeviceKey, Identity, Validity, identify};
//!
//! # fn main() -> Result<(), palisade_pki::PkiError> {
//! let ca = Ca::generate()?;
//! // On the device:
//! let key = DeviceKey::generate()?;
//! let csr = key.csr_pem("dpu-7")?;
//! // On the manager, which chooses the name:
//! let day = Duration::from_secs(24 * 60 * 60);
//! let cert = ca.sign_device_csr(&csr, "dpu-7", Validity::for_duration(30 * day))?;
//! assert_eq!(identify(&cert.der)?.identity, Identity::Device("dpu-7".into()));
//! # Ok(())
//! # }
//! ```
//!
//! Every configuration installs the *ring* crypto provider explicitly, so no process-wide
//! rustls default is needed. All keys are ECDSA P-256.

mod accept;
mod ca;
mod client;
mod device;
mod error;
mod identity;
mod server;
mod validity;
mod x509;

pub use accept::{ConnInfo, Incoming, MAX_PENDING_HANDSHAKES, TlsConn, incoming};
pub use ca::{
    CA_CERT_FILE, CA_COMMON_NAME, CA_KEY_FILE, CA_VALIDITY, Ca, Issued, IssuedCert, Revoked,
};
pub use client::{CONNECT_TIMEOUT, channel, client_config, lazy_channel};
pub use device::DeviceKey;
pub use error::PkiError;
pub use identity::{
    Identity, MAX_NAME_LEN, PeerIdentity, Role, identify, identify_pem, validate_name,
};
pub use server::{SERVER_ALPN, ServerTls};
pub use validity::{CLOCK_SKEW, Validity};
