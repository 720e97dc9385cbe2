//! Validity periods of issued certificates.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

use crate::PkiError;

/// How far back [`Validity::for_duration`] starts a certificate's validity, so that a peer
/// whose clock is slightly behind the CA's accepts it at once.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// 1950-01-01T00:00:00Z, the earliest time X.509 encodes.
const EARLIEST_SECS: i64 = -631_152_000;
/// 9999-12-31T23:59:59Z, the latest time X.509 encodes.
const LATEST_SECS: i64 = 253_402_300_799;

/// When an issued certificate is valid: from `not_before` to `not_after`, both inclusive, at
/// one-second precision (finer parts are dropped when the certificate is written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    not_before: SystemTime,
    not_after: SystemTime,
}

impl Validity {
    /// Valid from [`CLOCK_SKEW`] ago until `duration` from now (capped at the end of year
    /// 9999, the latest time a certificate can name).
    pub fn for_duration(duration: Duration) -> Validity {
        let now = SystemTime::now();
        let latest = from_secs(LATEST_SECS);
        let not_after = now.checked_add(duration).map_or(latest, |t| t.min(latest));
        Validity {
            not_before: now - CLOCK_SKEW,
            not_after,
        }
    }

    /// Valid from `not_before` to `not_after`, which may both lie in the past or the future
    /// (tests use this for expired and not-yet-valid certificates).
    ///
    /// Refuses an empty period and times a certificate cannot encode (before 1950 or after
    /// 9999).
    pub fn between(not_before: SystemTime, not_after: SystemTime) -> Result<Validity, PkiError> {
        let (start, end) = (secs(not_before), secs(not_after));
        for (name, t) in [("not_before", start), ("not_after", end)] {
            if !(EARLIEST_SECS..=LATEST_SECS).contains(&t) {
                return Err(PkiError::InvalidValidity {
                    reason: format!("{name} is outside 1950-01-01 to 9999-12-31"),
                });
            }
        }
        if end <= start {
            return Err(PkiError::InvalidValidity {
                reason: "not_after is not at least one second after not_before".to_owned(),
            });
        }
        Ok(Validity {
            not_before,
            not_after,
        })
    }

    /// The start of the period.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// The end of the period.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Both ends as rcgen wants them.
    pub(crate) fn to_offset(self) -> Result<(OffsetDateTime, OffsetDateTime), PkiError> {
        Ok((offset(self.not_before)?, offset(self.not_after)?))
    }
}

/// Whole seconds since the Unix epoch, rounded down, saturating.
fn secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let before = e.duration();
            let whole = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            // -0.5 s is second -1, not second 0.
            -whole - i64::from(before.subsec_nanos() > 0)
        }
    }
}

/// The time `secs` seconds after (or before) the Unix epoch.
pub(crate) fn from_secs(secs: i64) -> SystemTime {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// A time as rcgen wants it, at one-second precision.
pub(crate) fn offset(t: SystemTime) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(secs(t)).map_err(|e| PkiError::InvalidValidity {
        reason: format!("time out of range: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_duration_starts_in_the_past() {
        let v = Validity::for_duration(Duration::from_secs(3600));
        let now = SystemTime::now();
        assert!(v.not_before() <= now - CLOCK_SKEW + Duration::from_secs(1));
        assert!(v.not_after() > now);
        let forever = Validity::for_duration(Duration::MAX);
        assert_eq!(forever.not_after(), from_secs(LATEST_SECS));
        assert!(forever.to_offset().is_ok());
    }

    #[test]
    fn between_refuses_empty_and_unencodable_periods() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert!(Validity::between(t, t + Duration::from_secs(1)).is_ok());
        let cases = [
            (t, t, "at least one second"),
            (t, t + Duration::from_millis(999), "at least one second"),
            (t + Duration::from_secs(10), t, "at least one second"),
            (from_secs(EARLIEST_SECS - 1), t, "not_before is outside"),
            (t, from_secs(LATEST_SECS + 1), "not_after is outside"),
        ];
        for (a, b, why) in cases {
            let err = Validity::between(a, b).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
        let old = Validity::between(from_secs(EARLIEST_SECS), from_secs(0)).unwrap();
        assert!(old.to_offset().is_ok());
    }

    #[test]
    fn seconds_round_down() {
        assert_eq!(secs(UNIX_EPOCH + Duration::from_millis(1500)), 1);
        assert_eq!(secs(UNIX_EPOCH - Duration::from_millis(500)), -1);
        assert_eq!(secs(UNIX_EPOCH - Duration::from_secs(2)), -2);
    }
}
