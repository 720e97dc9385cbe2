//! Helpers for the tests that drive real IPFIX peers (nfdump, softflowd).

pub mod pcap;

use std::path::PathBuf;

/// The path of `tool` on `PATH` (or in /usr/sbin, where Debian puts the daemons), or `None`
/// after printing the skip line CI looks for.
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        println!("!!! SKIPPED: `{name}` is not installed (apt-get install nfdump softflowd)");
    }
    found
}
