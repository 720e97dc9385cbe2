//! The Palisade fleet PKI: the certificate authority, device enrollment, peer identities and
//! the mutual-TLS plumbing that the fleet manager and the devices share.
//!
//! WIP.

mod ca;
mod device;
mod error;
mod identity;
mod validity;
mod x509;

pub use ca::{
    CA_CERT_FILE, CA_COMMON_NAME, CA_KEY_FILE, CA_VALIDITY, Ca, Issued, IssuedCert, Revoked,
};
pub use device::DeviceKey;
pub use error::PkiError;
pub use identity::{Identity, MAX_NAME_LEN, PeerIdentity, Role, identify, validate_name};
pub use validity::{CLOCK_SKEW, Validity};
