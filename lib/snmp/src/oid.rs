//! Object identifiers, and the OIDs this crate serves.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// The most sub-identifiers an SNMP OID may have (RFC 2578, section 3.5).
const MAX_ARCS: usize = 128;

/// An object identifier: a validated sequence of at least two sub-identifiers whose
/// first two follow X.660 (the first is 0, 1 or 2; under 0 and 1 the second is at most 39).
///
/// Parsed from dotted notation, with or without the leading dot net-snmp prints:
///
/// ```
/// use palisade_snmp::Oid;
///
/// let system: Oid = ".1.3.6.1.2.1.1".parse().unwrap();
/// assert_eq!(system.to_string(), "1.3.6.1.2.1.1");
/// assert!("1.3.six".parse::<Oid>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Oid(Cow<'static, [u32]>);

impl Oid {
    /// An OID from constant sub-identifiers, as the constants of [`oids`](crate::oids)
    /// are built. For data from outside, use [`Oid::from_arcs`] or `parse`.
    ///
    /// # Panics
    ///
    /// If `arcs` is no OID (see [`Oid`]): in a `const`, at compile time.
    pub const fn from_static(arcs: &'static [u32]) -> Self {
        assert!(
            arcs.len() >= 2 && arcs.len() <= MAX_ARCS,
            "an OID has 2 to 128 sub-identifiers"
        );
        assert!(
            arcs[0] == 2 || (arcs[0] < 2 && arcs[1] <= 39),
            "an OID starts with 0 or 1 and at most 39, or with 2"
        );
        Oid(Cow::Borrowed(arcs))
    }

    /// An OID from sub-identifiers, validated as [`Oid`] describes.
    pub fn from_arcs(arcs: impl Into<Vec<u32>>) -> Result<Self, OidError> {
        let arcs = arcs.into();
        validate(&arcs)?;
        Ok(Oid(Cow::Owned(arcs)))
    }

    /// The sub-identifiers.
    pub fn arcs(&self) -> &[u32] {
        &self.0
    }

    /// Whether `self` is `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &Oid) -> bool {
        self.0.starts_with(&prefix.0)
    }

    pub(crate) fn to_snmp(&self) -> async_snmp::Oid {
        async_snmp::Oid::from_slice(&self.0)
    }
}

fn validate(arcs: &[u32]) -> Result<(), OidError> {
    match arcs {
        [] | [_] => Err(OidError("needs at least two sub-identifiers".into())),
        [first, ..] if *first > 2 => Err(OidError(format!(
            "the first sub-identifier is {first}, must be 0, 1 or 2"
        ))),
        [first, second, ..] if *first < 2 && *second > 39 => Err(OidError(format!(
            "under {first} the second sub-identifier must be at most 39, not {second}"
        ))),
        _ if arcs.len() > MAX_ARCS => Err(OidError(format!(
            "has {} sub-identifiers, at most {MAX_ARCS} are allowed",
            arcs.len()
        ))),
        _ => Ok(()),
    }
}

impl FromStr for Oid {
    type Err = OidError;

    fn from_str(s: &str) -> Result<Self, OidError> {
        let dotted = s.strip_prefix('.').unwrap_or(s);
        let arcs = dotted
            .split('.')
            .map(|arc| {
                // `u32::from_str` takes a leading '+', which is no OID syntax.
                if arc.is_empty() || !arc.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(OidError(format!(
                        "{arc:?} is not a sub-identifier (digits between dots)"
                    )));
                }
                arc.parse::<u32>().map_err(|_| {
                    OidError(format!("sub-identifier {arc} is larger than 4294967295"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Oid::from_arcs(arcs)
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, arc) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{arc}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({self})")
    }
}

/// Why a string or a list of sub-identifiers is not an [`Oid`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OidError(String);

/// The OIDs this crate serves and sends: the roots of the groups (for views) and
/// the values of `sysObjectID` for Palisade's products.
///
/// The full layout of PALISADE-MIB is in `mibs/PALISADE-MIB.txt`.
pub mod oids {
    use super::Oid;

    /// `system` (SNMPv2-MIB): sysDescr, sysObjectID, sysUpTime, sysContact, sysName,
    /// sysLocation, sysServices.
    pub const SYSTEM: Oid = Oid::from_static(&[1, 3, 6, 1, 2, 1, 1]);
    /// `interfaces` (IF-MIB): ifNumber and ifTable.
    pub const INTERFACES: Oid = Oid::from_static(&[1, 3, 6, 1, 2, 1, 2]);
    /// `ifXTable` (IF-MIB): interface names, 64-bit counters, speed, alias.
    pub const IF_X_TABLE: Oid = Oid::from_static(&[1, 3, 6, 1, 2, 1, 31, 1, 1]);
    /// `palisadeMIB`, under the documentation enterprise number 32473 (RFC 5612).
    pub const PALISADE_MIB: Oid = Oid::from_static(&[1, 3, 6, 1, 4, 1, 32473, 1]);
    /// `palisadeDevice`: the objects of a vRouter agent.
    pub const PALISADE_DEVICE: Oid = Oid::from_static(&[1, 3, 6, 1, 4, 1, 32473, 1, 1, 1]);
    /// `palisadeFleet`: the objects of the fleet manager.
    pub const PALISADE_FLEET: Oid = Oid::from_static(&[1, 3, 6, 1, 4, 1, 32473, 1, 1, 2]);
    /// `palisadeVRouter`: the `sysObjectID` of a vRouter agent.
    pub const PALISADE_VROUTER: Oid = Oid::from_static(&[1, 3, 6, 1, 4, 1, 32473, 1, 3, 1]);
    /// `palisadeFleetManager`: the `sysObjectID` of the fleet manager.
    pub const PALISADE_FLEET_MANAGER: Oid = Oid::from_static(&[1, 3, 6, 1, 4, 1, 32473, 1, 3, 2]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_dotted_notation() {
        let oid: Oid = ".1.3.6.1.4.1.32473.1".parse().unwrap();
        assert_eq!(oid, oids::PALISADE_MIB);
        assert_eq!(oid.to_string(), "1.3.6.1.4.1.32473.1");
        assert_eq!(
            "2.999.4294967295".parse::<Oid>().unwrap().arcs()[2],
            u32::MAX
        );
    }

    #[test]
    fn rejects_what_is_no_oid() {
        for bad in [
            "",
            ".",
            "1",
            "1..3",
            "1.3.",
            "1.3.x",
            "1.+3",
            "1.-3",
            "3.1",
            "0.40",
            "1.4294967296",
        ] {
            assert!(bad.parse::<Oid>().is_err(), "{bad:?} parsed");
        }
        let long = vec!["1"; MAX_ARCS + 1].join(".");
        assert!(long.parse::<Oid>().is_err());
    }

    #[test]
    #[should_panic(expected = "an OID starts with")]
    fn static_oids_are_checked_too() {
        let _ = Oid::from_static(&[3, 1]);
    }

    #[test]
    fn constants_are_valid() {
        for oid in [
            oids::SYSTEM,
            oids::INTERFACES,
            oids::IF_X_TABLE,
            oids::PALISADE_MIB,
            oids::PALISADE_DEVICE,
            oids::PALISADE_FLEET,
            oids::PALISADE_VROUTER,
            oids::PALISADE_FLEET_MANAGER,
        ] {
            assert_eq!(Oid::from_arcs(oid.arcs().to_vec()), Ok(oid.clone()));
        }
        assert!(oids::PALISADE_DEVICE.starts_with(&oids::PALISADE_MIB));
    }
}
