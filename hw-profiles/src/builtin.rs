//! The profiles shipped with Palisade, embedded at build time from `profiles/*.yaml`.

use crate::error::{Problem, ProfileError};
use crate::profile::Profile;

macro_rules! shipped {
    ($($name:literal),* $(,)?) => {
        const SHIPPED: &[(&str, &str)] = &[
            $(($name, include_str!(concat!("../profiles/", $name, ".yaml"))),)*
        ];
    };
}

shipped![
    "connectx-6-dx",
    "bluefield-2",
    "bluefield-3",
    "e810",
    "cn10k",
    "pensando-dsc",
    "ipu-e2100",
    "sim-small",
    "sim-large",
];

/// Names of the shipped profiles.
pub fn builtin_names() -> Vec<&'static str> {
    SHIPPED.iter().map(|(name, _)| *name).collect()
}

/// A shipped profile by name.
pub fn builtin(name: &str) -> Result<Profile, ProfileError> {
    let Some((name, text)) = SHIPPED.iter().find(|(n, _)| *n == name) else {
        return Err(ProfileError::single(
            &format!("builtin:{name}"),
            Problem::unlocated(
                "",
                format!(
                    "no shipped profile is called `{name}`: expected one of {}",
                    builtin_names().join(", ")
                ),
            ),
        ));
    };
    crate::parse(
        text,
        &format!("hw-profiles/profiles/{name}.yaml"),
        Some(name),
    )
}

/// Every shipped profile, in the order of [`builtin_names`].
pub fn builtins() -> Result<Vec<Profile>, ProfileError> {
    let profiles = SHIPPED
        .iter()
        .map(|(name, _)| builtin(name))
        .collect::<Result<Vec<_>, _>>()?;
    crate::check_unique(&profiles)?;
    Ok(profiles)
}
