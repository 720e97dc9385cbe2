//! Names, roles and the identities certificates carry (see [`Identity`]).

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use x509_parser::extensions::GeneralName;

use crate::PkiError;
use crate::x509;

/// The longest device or user name, in bytes (it is also a DNS label's limit).
pub const MAX_NAME_LEN: usize = 63;

const URN_PREFIX: &str = "urn:palisade:";

/// Checks that `name` is a valid device or user name: 1 to [`MAX_NAME_LEN`] characters of
/// `[a-z0-9._-]`, starting with a letter or digit.
///
/// ```
/// assert!(palisade_pki::validate_name("dpu-rack4.2").is_ok());
/// assert!(palisade_pki::validate_name("Dpu").is_err());
/// assert!(palisade_pki::validate_name("-dpu").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<(), PkiError> {
    let refuse = |reason| {
        Err(PkiError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    let Some(first) = name.bytes().next() else {
        return refuse("it is empty");
    };
    if name.len() > MAX_NAME_LEN {
        return refuse("it is longer than 63 characters");
    }
    if !first.is_ascii_lowercase() && !first.is_ascii_digit() {
        return refuse("it does not start with a letter or digit");
    }
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b);
    if !name.bytes().all(allowed) {
        return refuse("it contains a character outside a-z, 0-9, '.', '_', '-'");
    }
    Ok(())
}

/// What an orchestrator user or tool may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// May read and change intent and the fleet.
    Admin,
    /// May only read.
    ReadOnly,
}

impl Role {
    /// The role as it appears in an identity URI: `admin` or `read-only`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ReadOnly => "read-only",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "read-only" => Ok(Role::ReadOnly),
            _ => Err(PkiError::InvalidRole(s.to_owned())),
        }
    }
}

/// Who a certificate belongs to.
///
/// Every certificate the fleet CA issues to a client carries exactly one identity, as a URI in
/// its subject alternative names:
///
/// * a device: `urn:palisade:device:<name>`;
/// * an orchestrator user or tool: `urn:palisade:user:<name>:<role>`, `<role>` being `admin`
///   or `read-only`.
///
/// Names follow [`validate_name`]. The URI, not the subject common name, is what authorisation
/// looks at: [`identify`] reads it back from a certificate the TLS layer has verified.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A device (DPU firmware or host shim), by its name.
    Device(String),
    /// An orchestrator user or tool, by its name, with its role.
    User {
        /// The user's name.
        name: String,
        /// What the user may do.
        role: Role,
    },
}

impl Identity {
    /// The identity as the URI carried in certificates, e.g. `urn:palisade:device:dpu-1`.
    pub fn uri(&self) -> String {
        match self {
            Identity::Device(name) => format!("{URN_PREFIX}device:{name}"),
            Identity::User { name, role } => format!("{URN_PREFIX}user:{name}:{role}"),
        }
    }

    /// Parses an identity URI, validating the name and role in it.
    ///
    /// ```
    /// use palisade_pki::{Identity, Role};
    /// assert_eq!(
    ///     Identity::from_uri("urn:palisade:user:ci:read-only").unwrap(),
    ///     Identity::User { name: "ci".into(), role: Role::ReadOnly },
    /// );
    /// assert!(Identity::from_uri("urn:palisade:device:").is_err());
    /// ```
    pub fn from_uri(uri: &str) -> Result<Identity, PkiError> {
        let unknown = |reason: String| PkiError::UnknownIdentity {
            uri: uri.to_owned(),
            reason,
        };
        let rest = uri
            .strip_prefix(URN_PREFIX)
            .ok_or_else(|| unknown(format!("it does not start with {URN_PREFIX:?}")))?;
        let (kind, rest) = rest
            .split_once(':')
            .ok_or_else(|| unknown("it has no kind".to_owned()))?;
        match kind {
            "device" => {
                validate_name(rest).map_err(|e| unknown(e.to_string()))?;
                Ok(Identity::Device(rest.to_owned()))
            }
            "user" => {
                let (name, role) = rest
                    .split_once(':')
                    .ok_or_else(|| unknown("a user identity needs a role".to_owned()))?;
                validate_name(name).map_err(|e| unknown(e.to_string()))?;
                let role = role.parse().map_err(|e: PkiError| unknown(e.to_string()))?;
                Ok(Identity::User {
                    name: name.to_owned(),
                    role,
                })
            }
            _ => Err(unknown(format!(
                "unknown kind {kind:?} (expected \"device\" or \"user\")"
            ))),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// The identity of a verified peer certificate, with what is needed to revoke or renew it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    /// Who the certificate belongs to.
    pub identity: Identity,
    /// The certificate's serial number, in lowercase hex without leading zeros (the form
    /// [`Revoked::serial`](crate::Revoked::serial) takes).
    pub serial: String,
    /// When the certificate expires.
    pub not_after: SystemTime,
}

/// Reads the palisade identity of a DER certificate.
///
/// This does *not* verify the certificate: call it on certificates the TLS layer has verified
/// (the [`ServerTls`](crate::ServerTls) verifier does, and [`ConnInfo`](crate::ConnInfo) carries
/// the result). It refuses certificates with no `urn:palisade:` URI, with more than one, or with
/// one that is malformed or of an unknown kind. Other URIs are ignored.
pub fn identify(cert_der: &[u8]) -> Result<PeerIdentity, PkiError> {
    let cert = x509::parse_cert(cert_der, "peer certificate")?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::InvalidCertificate {
            what: "peer certificate".to_owned(),
            reason: format!("bad subject alternative names: {e}"),
        })?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|san| san.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .filter(|uri| {
            uri.get(..URN_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(URN_PREFIX))
        })
        .collect();
    let uri = match uris.as_slice() {
        [] => return Err(PkiError::NoIdentity),
        [uri] => uri,
        _ => {
            return Err(PkiError::MultipleIdentities {
                uris: uris.iter().map(|u| (*u).to_owned()).collect(),
            });
        }
    };
    Ok(PeerIdentity {
        identity: Identity::from_uri(uri)?,
        serial: x509::serial_hex(cert.raw_serial()),
        not_after: x509::system_time(cert.validity().not_after),
    })
}

/// Like [`identify`], for a PEM certificate (the first one in `cert_pem`).
///
/// A device reads its own stored certificate with it, to know its expiry across restarts.
pub fn identify_pem(cert_pem: &str) -> Result<PeerIdentity, PkiError> {
    identify(&x509::cert_from_pem(cert_pem, "certificate")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "0", "dpu-1", "rack4.dpu_2", &"x".repeat(63)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        let cases = [
            ("", "empty"),
            (&"x".repeat(64), "longer"),
            ("-a", "start"),
            (".a", "start"),
            ("_a", "start"),
            ("Abc", "start"),
            ("aBc", "character"),
            ("a b", "character"),
            ("a:b", "character"),
            ("a/b", "character"),
            ("dpü", "character"),
        ];
        for (bad, why) in cases {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn roles() {
        for role in [Role::Admin, Role::ReadOnly] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        for bad in ["", "Admin", "readonly", "read_only", "root"] {
            assert!(bad.parse::<Role>().is_err(), "{bad}");
        }
    }

    #[test]
    fn uris_round_trip() {
        let ids = [
            Identity::Device("dpu-1".into()),
            Identity::User {
                name: "alice".into(),
                role: Role::Admin,
            },
            Identity::User {
                name: "ci.bot".into(),
                role: Role::ReadOnly,
            },
        ];
        for id in ids {
            assert_eq!(Identity::from_uri(&id.uri()).unwrap(), id);
        }
    }

    #[test]
    fn bad_uris() {
        let cases = [
            ("urn:palisade:", "no kind"),
            ("urn:palisade:device", "no kind"),
            ("urn:palisade:device:", "empty"),
            ("urn:palisade:device:Dpu", "start"),
            ("urn:palisade:device:a:b", "character"),
            ("urn:palisade:user:alice", "needs a role"),
            ("urn:palisade:user:alice:root", "unknown role"),
            ("urn:palisade:user::admin", "empty"),
            ("urn:palisade:user:alice:admin:x", "unknown role"),
            ("urn:palisade:gizmo:x", "unknown kind"),
            ("URN:PALISADE:device:x", "does not start"),
            ("urn:other:device:x", "does not start"),
        ];
        for (uri, why) in cases {
            let err = Identity::from_uri(uri).unwrap_err().to_string();
            assert!(err.contains(why), "{uri:?}: {err}");
        }
    }
}
