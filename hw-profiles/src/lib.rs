//! Hardware profiles of supported DPUs and SmartNICs.
//!
//! A profile is one YAML file per device (see `hw-profiles/SCHEMA.md`) saying what the
//! device's DPDK PMD can hold in hardware through rte_flow: which groups and priorities
//! exist, how precisely each header field can be matched (`none`, `exact`, `prefix`,
//! `any-mask`), how L4 port ranges must be expanded, which actions work, and how many
//! rules each classification engine holds. The offload planner reads profiles to decide
//! which firewall rules live in the NIC and how; the simulated NIC enforces them.
//!
//! Every value is a [`Fact`] carrying its provenance: a `source` (document, version,
//! section) or an `estimate` with its reasoning. The loader refuses anything else, and
//! also refuses profiles that contradict what DPDK 22.11 offers (the template API on a PMD
//! other than mlx5, rte_flow on ionic or idpf, native port ranges on hardware, ...).
//! Problems come back all at once, each with its line, column and field path.
//!
//! ```
//! use palisade_hw_profiles::{builtin, MatchField, MatchKind, PortRangeStrategy};
//!
//! let nic = builtin("e810").unwrap();
//! assert!(nic.supports(MatchField::Ipv4Src, MatchKind::Prefix));
//! assert_eq!(nic.port_range_strategy(), Some(PortRangeStrategy::PrefixMask));
//! assert_eq!(nic.max_groups(), 1);
//! assert!(builtin("pensando-dsc").unwrap().is_software_only());
//! ```

mod builtin;
mod dpdk;
mod error;
mod fact;
mod model;
mod profile;
mod raw;
mod validate;

use std::path::Path;

pub use builtin::{builtin, builtin_names, builtins};
pub use error::{Problem, ProfileError};
pub use fact::{Fact, FactRef, Provenance};
pub use model::{
    Action, ActionTable, Api, Conntrack, DeviceKind, Engine, Function, GroupLimits, Groups,
    Identity, Incompatible, Item, MatchField, MatchKind, MatchTable, Offload, PciId,
    PortRangeStrategy, RteFlowApis, UnknownField,
};
pub use profile::Profile;

fn parse(text: &str, origin: &str, expected_name: Option<&str>) -> Result<Profile, ProfileError> {
    let options = serde_saphyr::options! { with_snippet: false, strict_booleans: true };
    let raw: raw::RawProfile = serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| ProfileError::single(origin, validate::syntax_problem(&e)))?;
    validate::validate(raw, origin, expected_name)
}

/// Reads a profile from YAML text. `origin` names it in errors (a file name, or anything
/// that tells the reader where the text came from).
pub fn load_str(text: &str, origin: &str) -> Result<Profile, ProfileError> {
    parse(text, origin, None)
}

/// Reads a profile file. Its `name` must equal the file name without `.yaml`.
pub fn load_file(path: impl AsRef<Path>) -> Result<Profile, ProfileError> {
    let path = path.as_ref();
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ProfileError::single(
            &origin,
            Problem::unlocated("", format!("cannot read the file: {e}")),
        )
    })?;
    let stem = path.file_stem().and_then(|s| s.to_str());
    parse(&text, &origin, stem)
}

/// Reads every `*.yaml` profile in a directory, sorted by name, refusing duplicate names.
pub fn load_dir(dir: impl AsRef<Path>) -> Result<Vec<Profile>, ProfileError> {
    let dir = dir.as_ref();
    let origin = dir.display().to_string();
    let unreadable = |e: std::io::Error| {
        ProfileError::single(
            &origin,
            Problem::unlocated("", format!("cannot list the directory: {e}")),
        )
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if path.extension().is_some_and(|x| x == "yaml") {
            paths.push(path);
        }
    }
    paths.sort();
    let profiles = paths.iter().map(load_file).collect::<Result<Vec<_>, _>>()?;
    check_unique(&profiles)?;
    Ok(profiles)
}

/// Refuses a set of profiles in which two share a name.
pub fn check_unique(profiles: &[Profile]) -> Result<(), ProfileError> {
    for (i, p) in profiles.iter().enumerate() {
        if let Some(earlier) = profiles[..i].iter().find(|q| q.name() == p.name()) {
            return Err(ProfileError::single(
                p.origin(),
                Problem::unlocated(
                    "name",
                    format!(
                        "`{}` is also the name of {}: profile names must be unique",
                        p.name(),
                        earlier.origin()
                    ),
                ),
            ));
        }
    }
    Ok(())
}
