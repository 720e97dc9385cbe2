//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in the PKI, enrollment and TLS plumbing.
///
/// Each message names the input that was wrong (a file, a name, a PEM argument) and what was
/// expected instead, so it can be shown to an operator as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A device or user name does not follow the naming rules.
    #[error(
        "invalid name {name:?}: {reason} (expected 1-63 characters of a-z, 0-9, '.', '_', '-', \
         starting with a letter or digit)"
    )]
    InvalidName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A role is not one of the known roles.
    #[error("unknown role {0:?} (expected \"admin\" or \"read-only\")")]
    InvalidRole(String),

    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// One of the two CA files exists and the other does not.
    #[error(
        "{} exists but {} does not: restore the missing file, or remove both to create a new CA \
         (every certificate issued by the old CA stops working)",
        present.display(),
        missing.display()
    )]
    CaFileMissing {
        /// The file that exists.
        present: PathBuf,
        /// The file that does not.
        missing: PathBuf,
    },

    /// A PEM argument or file could not be decoded, or does not hold what was expected.
    #[error("{what}: {reason}")]
    InvalidPem {
        /// Which input (for example `"CA certificate (ca.pem)"`).
        what: String,
        /// What was wrong with it.
        reason: String,
    },

    /// A certificate could not be parsed or is not of the expected kind.
    #[error("{what}: {reason}")]
    InvalidCertificate {
        /// Which certificate.
        what: String,
        /// What was wrong with it.
        reason: String,
    },

    /// A private key could not be parsed or is not of the expected kind.
    #[error("{what}: {reason}")]
    InvalidKey {
        /// Which key.
        what: String,
        /// What was wrong with it.
        reason: String,
    },

    /// A private key does not belong to the certificate it was given with.
    #[error("the private key in {key} does not match the public key of {cert}")]
    KeyMismatch {
        /// Which key.
        key: String,
        /// Which certificate.
        cert: String,
    },

    /// A certificate was not signed by the fleet CA.
    #[error("{what} was not issued by this fleet CA")]
    NotIssuedByCa {
        /// Which certificate.
        what: String,
    },

    /// A certificate signing request could not be parsed, or its self-signature does not verify.
    #[error("certificate signing request refused: {reason}")]
    InvalidCsr {
        /// What was wrong with it.
        reason: String,
    },

    /// A server certificate was requested without any host.
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoHosts,

    /// A host for a server certificate is neither an IP address nor a valid DNS name.
    #[error("invalid host {host:?}: expected an IP address or a DNS name")]
    InvalidHost {
        /// The host as given.
        host: String,
    },

    /// A validity period is empty or outside what X.509 can encode.
    #[error("invalid validity period: {reason}")]
    InvalidValidity {
        /// What was wrong with it.
        reason: String,
    },

    /// A certificate serial number is not a hex string of at most 20 bytes.
    #[error("invalid serial number {serial:?}: {reason}")]
    InvalidSerial {
        /// The serial as given.
        serial: String,
        /// What was wrong with it.
        reason: &'static str,
    },

    /// A certificate revocation list could not be parsed, was not signed by the fleet CA, or
    /// would replace a newer one.
    #[error("certificate revocation list refused: {reason}")]
    InvalidCrl {
        /// What was wrong with it.
        reason: String,
    },

    /// A certificate carries no `urn:palisade:` identity.
    #[error(
        "the certificate carries no palisade identity (a URI SAN urn:palisade:device:<name> or \
         urn:palisade:user:<name>:<role>)"
    )]
    NoIdentity,

    /// A certificate carries more than one `urn:palisade:` identity.
    #[error("the certificate carries more than one palisade identity: {}", uris.join(", "))]
    MultipleIdentities {
        /// The identities found.
        uris: Vec<String>,
    },

    /// A `urn:palisade:` identity is malformed or of an unknown kind.
    #[error(
        "unrecognised palisade identity {uri:?}: {reason} (expected urn:palisade:device:<name> \
         or urn:palisade:user:<name>:<role>)"
    )]
    UnknownIdentity {
        /// The URI as found.
        uri: String,
        /// What was wrong with it.
        reason: String,
    },

    /// Generating a key or signing a certificate, CSR or CRL failed.
    #[error("could not {operation}: {reason}")]
    Signing {
        /// What was being done.
        operation: &'static str,
        /// What the signing library said.
        reason: String,
    },

    /// rustls refused a configuration.
    #[error("could not build the TLS {what}: {source}")]
    Tls {
        /// Which configuration.
        what: &'static str,
        /// What rustls said.
        source: rustls::Error,
    },

    /// A URL to connect to is not of the form `https://host[:port]`.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What was wrong with it.
        reason: String,
    },

    /// Connecting a gRPC channel failed.
    #[error("could not connect to {url}: {reason}")]
    Connect {
        /// Where.
        url: String,
        /// What the transport said, with its causes.
        reason: String,
    },
}
