//! The agent's configuration: where it listens, who may read what, where traps go.
//!
//! Read from YAML ([`SnmpConfig::from_yaml`], [`SnmpConfig::from_file`]) or as part of
//! a larger serde document (`SnmpConfig` implements `Deserialize`); either way it is
//! validated once, into a value [`serve`](crate::serve) can use as is.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::oid::{Oid, OidError};

/// USM (RFC 3414, section 11.2) and net-snmp refuse shorter passphrases.
const MIN_PASSPHRASE: usize = 8;
/// `SnmpAdminString (SIZE (1..32))`, the USM user name.
const MAX_USER_NAME: usize = 32;

/// A validated agent configuration.
///
/// The YAML form:
///
/// ```yaml
#[doc = include_str!("../examples/snmp.yaml")]
/// ```
#[derive(Clone, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct SnmpConfig {
    pub(crate) listen: SocketAddr,
    pub(crate) views: BTreeMap<String, ViewConfig>,
    pub(crate) communities: Vec<CommunityConfig>,
    pub(crate) users: Vec<UserConfig>,
    pub(crate) trap_sinks: Vec<TrapSinkConfig>,
    pub(crate) engine_state_file: Option<PathBuf>,
}

impl SnmpConfig {
    /// Parses and validates a YAML configuration.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| {
            ConfigError::Syntax(e.render_with_formatter(&serde_saphyr::UserMessageFormatter))
        })?;
        raw.validate()
    }

    /// Reads, parses and validates a YAML configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    /// The UDP address the agent listens on.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// Listens on `addr` instead, e.g. from a command-line flag; port 0 picks a free
    /// port, which [`SnmpHandle::local_addr`](crate::SnmpHandle::local_addr) reports.
    pub fn set_listen(&mut self, addr: SocketAddr) {
        self.listen = addr;
    }
}

impl fmt::Debug for SnmpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnmpConfig")
            .field("listen", &self.listen)
            .field("views", &self.views)
            .field("communities", &self.communities)
            .field("users", &self.users)
            .field("trap_sinks", &self.trap_sinks)
            .field("engine_state_file", &self.engine_state_file)
            .finish()
    }
}

/// A view: the OID subtrees it includes, less those it excludes (the longest matching
/// subtree decides, RFC 3415).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ViewConfig {
    pub(crate) include: Vec<Oid>,
    pub(crate) exclude: Vec<Oid>,
}

/// An SNMPv2c community and the view it reads.
#[derive(Clone)]
pub(crate) struct CommunityConfig {
    pub(crate) name: Secret,
    pub(crate) view: String,
}

impl fmt::Debug for CommunityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommunityConfig")
            .field("name", &self.name)
            .field("view", &self.view)
            .finish()
    }
}

/// An SNMPv3 USM user and the view it reads. Requests must be authenticated, and
/// encrypted when the user has a privacy passphrase.
#[derive(Debug, Clone)]
pub(crate) struct UserConfig {
    pub(crate) name: String,
    pub(crate) auth: (AuthProtocol, Secret),
    pub(crate) privacy: Option<(PrivProtocol, Secret)>,
    pub(crate) view: String,
}

/// Where traps go and how they are sent.
#[derive(Debug, Clone)]
pub(crate) struct TrapSinkConfig {
    /// "ip:port" or "host:port".
    pub(crate) address: String,
    pub(crate) security: SinkSecurity,
}

#[derive(Debug, Clone)]
pub(crate) enum SinkSecurity {
    /// SNMPv2c with this community.
    Community(Secret),
    /// SNMPv3 as this configured user, at its security level.
    User(String),
}

/// A string kept out of `Debug` output: communities and passphrases.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Secret(pub(crate) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// USM authentication protocols. MD5 is left out on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AuthProtocol {
    /// HMAC-SHA-96 (RFC 3414): net-snmp's `-a SHA`.
    #[serde(alias = "sha1")]
    Sha,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// USM privacy protocols. DES is left out on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PrivProtocol {
    /// AES-128-CFB (RFC 3826): net-snmp's `-x AES`.
    #[serde(alias = "aes")]
    Aes128,
    /// AES-192 with Blumenthal key extension: net-snmp's `-x AES192`.
    Aes192,
    /// AES-256 with Blumenthal key extension: net-snmp's `-x AES256`.
    Aes256,
    /// AES-192 with Reeder ("Cisco") key extension: net-snmp's `-x AES192C`.
    Aes192c,
    /// AES-256 with Reeder ("Cisco") key extension: net-snmp's `-x AES256C`.
    Aes256c,
}

impl AuthProtocol {
    pub(crate) fn to_snmp(self) -> async_snmp::AuthProtocol {
        match self {
            AuthProtocol::Sha => async_snmp::AuthProtocol::Sha1,
            AuthProtocol::Sha224 => async_snmp::AuthProtocol::Sha224,
            AuthProtocol::Sha256 => async_snmp::AuthProtocol::Sha256,
            AuthProtocol::Sha384 => async_snmp::AuthProtocol::Sha384,
            AuthProtocol::Sha512 => async_snmp::AuthProtocol::Sha512,
        }
    }
}

impl PrivProtocol {
    pub(crate) fn to_snmp(self) -> async_snmp::PrivProtocol {
        match self {
            PrivProtocol::Aes128 => async_snmp::PrivProtocol::Aes128,
            PrivProtocol::Aes192 => async_snmp::PrivProtocol::Aes192Blumenthal,
            PrivProtocol::Aes256 => async_snmp::PrivProtocol::Aes256Blumenthal,
            PrivProtocol::Aes192c => async_snmp::PrivProtocol::Aes192Reeder,
            PrivProtocol::Aes256c => async_snmp::PrivProtocol::Aes256Reeder,
        }
    }
}

/// Why a configuration was refused. Each names the field at fault, e.g.
/// `users[0].auth.passphrase`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not YAML, or not of the expected shape: an unknown or missing field, a wrong type.
    #[error("{0}")]
    Syntax(String),
    /// A community or user names a view that is not defined.
    #[error("{field}: unknown view {view:?}; defined views: {}", known.join(", "))]
    UnknownView {
        /// The field naming the view.
        field: String,
        /// The view it names.
        view: String,
        /// The views defined.
        known: Vec<String>,
    },
    /// A passphrase shorter than USM allows.
    #[error("{field}: the passphrase is {len} bytes long, USM requires at least {MIN_PASSPHRASE}")]
    ShortPassphrase {
        /// The passphrase's field.
        field: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A string that is no OID.
    #[error("{field}: {value:?} is not an OID: {reason}")]
    BadOid {
        /// The field.
        field: String,
        /// The string.
        value: String,
        /// Why.
        reason: OidError,
    },
    /// Any other invalid value.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: String,
    #[serde(default)]
    views: BTreeMap<String, RawView>,
    #[serde(default)]
    communities: Vec<RawCommunity>,
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    trap_sinks: Vec<RawTrapSink>,
    #[serde(default)]
    engine_state_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawView {
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommunity {
    name: String,
    view: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    auth: RawAuth,
    #[serde(default)]
    privacy: Option<RawPrivacy>,
    view: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    protocol: AuthProtocol,
    passphrase: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrivacy {
    protocol: PrivProtocol,
    passphrase: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrapSink {
    address: String,
    #[serde(default)]
    community: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

impl TryFrom<RawConfig> for SnmpConfig {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        raw.validate()
    }
}

impl RawConfig {
    fn validate(self) -> Result<SnmpConfig, ConfigError> {
        let listen = self.listen.parse::<SocketAddr>().map_err(|_| {
            invalid(
                "listen",
                format!("{:?} is not an ip:port address", self.listen),
            )
        })?;
        let views = validate_views(self.views)?;
        let communities = validate_communities(self.communities, &views)?;
        let users = validate_users(self.users, &views)?;
        let trap_sinks = validate_trap_sinks(self.trap_sinks, &users)?;
        Ok(SnmpConfig {
            listen,
            views,
            communities,
            users,
            trap_sinks,
            engine_state_file: self.engine_state_file,
        })
    }
}

fn validate_views(
    raw: BTreeMap<String, RawView>,
) -> Result<BTreeMap<String, ViewConfig>, ConfigError> {
    let mut views = BTreeMap::new();
    for (name, view) in raw {
        let field = format!("views.{name}");
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(invalid(
                field,
                "a view name is letters, digits, '_', '.' and '-'",
            ));
        }
        let oids = |kind: &str, list: &[String]| {
            list.iter()
                .enumerate()
                .map(|(i, s)| {
                    s.parse::<Oid>().map_err(|reason| ConfigError::BadOid {
                        field: format!("{field}.{kind}[{i}]"),
                        value: s.clone(),
                        reason,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let include = oids("include", &view.include)?;
        let exclude = oids("exclude", &view.exclude)?;
        if include.is_empty() {
            return Err(invalid(
                format!("{field}.include"),
                "a view must include at least one subtree",
            ));
        }
        views.insert(name, ViewConfig { include, exclude });
    }
    Ok(views)
}

/// `view`, if `views` defines it.
fn check_view(
    field: String,
    view: String,
    views: &BTreeMap<String, ViewConfig>,
) -> Result<String, ConfigError> {
    if views.contains_key(&view) {
        Ok(view)
    } else {
        Err(ConfigError::UnknownView {
            field,
            view,
            known: views.keys().cloned().collect(),
        })
    }
}

fn validate_communities(
    raw: Vec<RawCommunity>,
    views: &BTreeMap<String, ViewConfig>,
) -> Result<Vec<CommunityConfig>, ConfigError> {
    let mut communities = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, c) in raw.into_iter().enumerate() {
        let field = format!("communities[{i}]");
        if c.name.is_empty() {
            return Err(invalid(
                format!("{field}.name"),
                "a community cannot be empty",
            ));
        }
        if !seen.insert(c.name.clone()) {
            return Err(invalid(
                format!("{field}.name"),
                "this community is listed twice",
            ));
        }
        communities.push(CommunityConfig {
            view: check_view(format!("{field}.view"), c.view, views)?,
            name: Secret(c.name),
        });
    }
    Ok(communities)
}

fn validate_users(
    raw: Vec<RawUser>,
    views: &BTreeMap<String, ViewConfig>,
) -> Result<Vec<UserConfig>, ConfigError> {
    let passphrase = |field: String, p: String| {
        if p.len() < MIN_PASSPHRASE {
            Err(ConfigError::ShortPassphrase {
                field,
                len: p.len(),
            })
        } else {
            Ok(Secret(p))
        }
    };
    let mut users: Vec<UserConfig> = Vec::new();
    for (i, u) in raw.into_iter().enumerate() {
        let field = format!("users[{i}]");
        if u.name.is_empty() || u.name.len() > MAX_USER_NAME {
            return Err(invalid(
                format!("{field}.name"),
                format!("a user name is 1 to {MAX_USER_NAME} bytes long"),
            ));
        }
        if users.iter().any(|known| known.name == u.name) {
            return Err(invalid(
                format!("{field}.name"),
                format!("user {:?} is listed twice", u.name),
            ));
        }
        let auth = (
            u.auth.protocol,
            passphrase(format!("{field}.auth.passphrase"), u.auth.passphrase)?,
        );
        let privacy = match u.privacy {
            Some(p) => Some((
                p.protocol,
                passphrase(format!("{field}.privacy.passphrase"), p.passphrase)?,
            )),
            None => None,
        };
        users.push(UserConfig {
            view: check_view(format!("{field}.view"), u.view, views)?,
            name: u.name,
            auth,
            privacy,
        });
    }
    Ok(users)
}

fn validate_trap_sinks(
    raw: Vec<RawTrapSink>,
    users: &[UserConfig],
) -> Result<Vec<TrapSinkConfig>, ConfigError> {
    let mut trap_sinks = Vec::new();
    for (i, s) in raw.into_iter().enumerate() {
        let field = format!("trap_sinks[{i}]");
        check_sink_address(&s.address)
            .map_err(|reason| invalid(format!("{field}.address"), reason))?;
        let security = match (s.community, s.user) {
            (Some(community), None) if !community.is_empty() => {
                SinkSecurity::Community(Secret(community))
            }
            (Some(_), None) => {
                return Err(invalid(
                    format!("{field}.community"),
                    "a community cannot be empty",
                ));
            }
            (None, Some(user)) if users.iter().any(|u| u.name == user) => SinkSecurity::User(user),
            (None, Some(user)) => {
                return Err(invalid(
                    format!("{field}.user"),
                    format!("{user:?} is not one of the users"),
                ));
            }
            _ => {
                return Err(invalid(
                    field,
                    "give either a community (SNMPv2c) or a user (SNMPv3)",
                ));
            }
        };
        trap_sinks.push(TrapSinkConfig {
            address: s.address,
            security,
        });
    }
    Ok(trap_sinks)
}

/// "ip:port", "[ipv6]:port" or "host:port", with a port other than 0.
fn check_sink_address(address: &str) -> Result<(), String> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return if addr.port() == 0 {
            Err("the port cannot be 0".into())
        } else {
            Ok(())
        };
    }
    let shape = || format!("{address:?} is not ip:port or host:port");
    let (host, port) = address.rsplit_once(':').ok_or_else(shape)?;
    let hostname = |h: &str| {
        !h.is_empty()
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    match port.parse::<u16>() {
        Ok(p) if p != 0 && hostname(host) => Ok(()),
        _ => Err(shape()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen: 127.0.0.1:1161
views:
  all:
    include: [1.3.6.1]
  system-only:
    include: ["1.3.6.1.2.1.1"]
    exclude: [.1.3.6.1.2.1.1.4]
communities:
  - { name: public, view: system-only }
users:
  - name: nms
    auth: { protocol: sha, passphrase: authpass1 }
    privacy: { protocol: aes, passphrase: privpass1 }
    view: all
  - name: auth-only
    auth: { protocol: sha256, passphrase: authpass2 }
    view: all
trap_sinks:
  - { address: "127.0.0.1:162", community: traps }
  - { address: "nms.example:162", user: nms }
"#;

    fn err(yaml: &str) -> String {
        SnmpConfig::from_yaml(yaml).unwrap_err().to_string()
    }

    fn edit(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "{from}");
        GOOD.replacen(from, to, 1)
    }

    #[test]
    fn a_good_configuration() {
        let config = SnmpConfig::from_yaml(GOOD).unwrap();
        assert_eq!(config.listen().to_string(), "127.0.0.1:1161");
        assert_eq!(config.views["all"].include[0].to_string(), "1.3.6.1");
        assert_eq!(
            config.views["system-only"].exclude[0].to_string(),
            "1.3.6.1.2.1.1.4"
        );
        assert_eq!(
            config.users[0].privacy.as_ref().unwrap().0,
            PrivProtocol::Aes128
        );
        assert!(config.users[1].privacy.is_none());
        assert!(matches!(config.trap_sinks[1].security, SinkSecurity::User(ref u) if u == "nms"));
    }

    #[test]
    fn the_example_file_is_valid() {
        let config = SnmpConfig::from_yaml(include_str!("../examples/snmp.yaml")).unwrap();
        assert!(!config.communities.is_empty() && !config.users.is_empty());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let debug = format!("{:?}", SnmpConfig::from_yaml(GOOD).unwrap());
        for secret in ["authpass1", "privpass1", "public", "traps"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let e = err(&edit("view: system-only }", "view: sys }"));
        assert_eq!(
            e,
            r#"communities[0].view: unknown view "sys"; defined views: all, system-only"#
        );
        let e = err(&edit("passphrase: privpass1", "passphrase: short"));
        assert_eq!(
            e,
            "users[0].privacy.passphrase: the passphrase is 5 bytes long, USM requires at least 8"
        );
        let e = err(&edit("exclude: [.1.3.6.1.2.1.1.4]", "exclude: [1.3.6.x]"));
        assert!(
            e.starts_with(r#"views.system-only.exclude[0]: "1.3.6.x" is not an OID"#),
            "{e}"
        );
        let e = err(&edit("include: [1.3.6.1]", "include: [9.1]"));
        assert!(e.starts_with("views.all.include[0]:"), "{e}");
        let e = err(&edit("listen: 127.0.0.1:1161", "listen: localhost"));
        assert!(e.starts_with("listen:"), "{e}");
        let e = err(&edit("user: nms", "user: nobody"));
        assert_eq!(e, r#"trap_sinks[1].user: "nobody" is not one of the users"#);
        let e = err(&edit("community: traps", "community: traps, user: nms"));
        assert!(e.starts_with("trap_sinks[0]: give either"), "{e}");
        let e = err(&edit("\"127.0.0.1:162\"", "\"127.0.0.1\""));
        assert!(e.starts_with("trap_sinks[0].address:"), "{e}");
        let e = err(&edit("name: auth-only", "name: nms"));
        assert!(e.starts_with("users[1].name:"), "{e}");
        let e = err(&edit("  all:\n", "  \"a b\":\n"));
        assert!(e.starts_with("views.a b:"), "{e}");
        let e = err(&edit("include: [1.3.6.1]", "exclude: [1.3.6.1]"));
        assert!(e.starts_with("views.all.include:"), "{e}");
    }

    #[test]
    fn shape_errors_name_the_field_too() {
        let e = err(&edit(
            "view: all\n  - name: auth-only",
            "veiw: all\n  - name: auth-only",
        ));
        assert!(e.contains("veiw"), "{e}");
        let e = err(&edit("protocol: aes", "protocol: des"));
        assert!(e.contains("des"), "{e}");
        let e = err(&edit("protocol: sha,", "protocol: md5,"));
        assert!(e.contains("md5"), "{e}");
        assert!(err("views: {}").contains("listen"));
    }

    #[test]
    fn embeds_in_a_larger_document() {
        #[derive(Deserialize)]
        struct Outer {
            snmp: SnmpConfig,
        }
        let nested = format!("snmp:\n{}", GOOD.replace('\n', "\n  "));
        let outer: Outer = serde_saphyr::from_str(&nested).unwrap();
        assert_eq!(outer.snmp.users.len(), 2);
        let bad = nested.replace("passphrase: authpass1", "passphrase: x");
        let e = serde_saphyr::from_str::<Outer>(&bad)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("users[0].auth.passphrase"), "{e}");
    }

    #[test]
    fn sink_addresses() {
        for good in [
            "127.0.0.1:162",
            "[::1]:162",
            "nms.example.com:1162",
            "nms:162",
        ] {
            assert_eq!(check_sink_address(good), Ok(()), "{good}");
        }
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            ":162",
            "nms:",
            "nms:x",
            "n ms:162",
            "a..b:162",
        ] {
            assert!(check_sink_address(bad).is_err(), "{bad}");
        }
    }
}
