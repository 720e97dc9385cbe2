//! The agent's state directory: its key and certificate, the fleet CA, and the last program
//! it applied — what lets it enforce across its own restarts with no manager in sight.
//!
//! | file | what |
//! |---|---|
//! | `device.key` | the device's private key (mode 0600) |
//! | `device.pem` | its certificate |
//! | `ca.pem` | the fleet CA, as the manager sent it at enrollment |
//! | `renewal.json` | when to renew (`renew_after_unix`, `not_after_unix`) |
//! | `program.json` | the last program applied (its content hash is checked on load) |
//!
//! Every file is replaced atomically (written beside, synced, renamed), so a crash leaves
//! either the old or the new version, never half of one.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use palisade_program::DeviceProgram;
use serde::{Deserialize, Serialize};

/// The state directory.
pub struct State {
    dir: PathBuf,
}

/// What the agent holds to talk to its manager.
#[derive(Clone)]
pub struct StoredCredentials {
    /// The private key, PEM.
    pub key_pem: String,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The fleet CA, PEM.
    pub ca_pem: String,
    /// When to renew, seconds since the epoch.
    pub renew_after_unix: i64,
}

#[derive(Serialize, Deserialize)]
struct Renewal {
    renew_after_unix: i64,
    not_after_unix: i64,
}

const KEY: &str = "device.key";
const CERT: &str = "device.pem";
const CA: &str = "ca.pem";
const RENEWAL: &str = "renewal.json";
const PROGRAM: &str = "program.json";

impl State {
    /// Opens (creating) the state directory.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the state directory {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("restricting {}", dir.display()))?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read(&self, name: &str) -> Result<Option<String>> {
        let path = self.dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Replaces `name` atomically; `secret` files are readable by the owner only.
    fn write(&self, name: &str, content: &[u8], secret: bool) -> Result<()> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(if secret { 0o600 } else { 0o644 });
        }
        let _ = secret;
        let mut f = options
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(content)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The stored credentials, if the device enrolled.
    pub fn credentials(&self) -> Result<Option<StoredCredentials>> {
        let (Some(key_pem), Some(cert_pem), Some(ca_pem)) =
            (self.read(KEY)?, self.read(CERT)?, self.read(CA)?)
        else {
            return Ok(None);
        };
        let renew_after_unix = match self.read(RENEWAL)? {
            Some(text) => {
                serde_json::from_str::<Renewal>(&text)
                    .with_context(|| {
                        format!("{}: not a renewal record", self.dir.join(RENEWAL).display())
                    })?
                    .renew_after_unix
            }
            // Unknown: renew at once.
            None => 0,
        };
        Ok(Some(StoredCredentials {
            key_pem,
            cert_pem,
            ca_pem,
            renew_after_unix,
        }))
    }

    /// Stores new credentials (the key first: a certificate is useless without it).
    pub fn save_credentials(&self, c: &StoredCredentials, not_after_unix: i64) -> Result<()> {
        self.write(KEY, c.key_pem.as_bytes(), true)?;
        self.write(CERT, c.cert_pem.as_bytes(), false)?;
        self.write(CA, c.ca_pem.as_bytes(), false)?;
        let renewal = Renewal {
            renew_after_unix: c.renew_after_unix,
            not_after_unix,
        };
        self.write(
            RENEWAL,
            serde_json::to_string(&renewal)
                .expect("a renewal record serializes")
                .as_bytes(),
            false,
        )
    }

    /// The last program applied. A file that does not load (corrupted, or from another
    /// device) is an error the caller decides about.
    pub fn program(&self) -> Result<Option<DeviceProgram>> {
        let Some(text) = self.read(PROGRAM)? else {
            return Ok(None);
        };
        let program: DeviceProgram = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a valid device program",
                self.dir.join(PROGRAM).display()
            )
        })?;
        Ok(Some(program))
    }

    /// Stores the program about to be applied.
    pub fn save_program(&self, program: &DeviceProgram) -> Result<()> {
        let text = serde_json::to_vec(program).context("serializing the program")?;
        self.write(PROGRAM, &text, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_and_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("s")).unwrap();
        assert!(state.credentials().unwrap().is_none());
        let c = StoredCredentials {
            key_pem: "k".into(),
            cert_pem: "c".into(),
            ca_pem: "a".into(),
            renew_after_unix: 42,
        };
        state.save_credentials(&c, 99).unwrap();
        let back = state.credentials().unwrap().unwrap();
        assert_eq!(
            (
                back.key_pem.as_str(),
                back.cert_pem.as_str(),
                back.ca_pem.as_str()
            ),
            ("k", "c", "a")
        );
        assert_eq!(back.renew_after_unix, 42);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(state.dir().join(KEY))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_corrupted_program_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        std::fs::write(dir.path().join(PROGRAM), "{\"format\": 1, \"dev").unwrap();
        let e = state.program().unwrap_err();
        assert!(format!("{e:#}").contains("program.json"), "{e:#}");
    }
}
