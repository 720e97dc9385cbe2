//! A value together with where it comes from.
//!
//! Every number, flag and name in a profile is a [`Fact`]: the value, plus either a
//! `source` (the document, its version and section, that states it) or an `estimate`
//! (the reasoning behind a number no public source gives). The loader refuses a fact
//! that has neither, or both, so a bare number can never enter the planner.

use std::fmt;

/// Where a fact's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// A public document states it: name, version and section, briefly quoted.
    Source(String),
    /// No public document states it; the text is the reasoning behind the value.
    Estimate(String),
}

impl Provenance {
    /// True for an estimate, false for a sourced fact.
    pub fn is_estimate(&self) -> bool {
        matches!(self, Provenance::Estimate(_))
    }

    /// The source citation or the estimate's reasoning.
    pub fn text(&self) -> &str {
        match self {
            Provenance::Source(text) | Provenance::Estimate(text) => text,
        }
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provenance::Source(text) => write!(f, "source: {text}"),
            Provenance::Estimate(text) => write!(f, "estimate: {text}"),
        }
    }
}

/// A value with its provenance and an optional note (a condition or caveat under which
/// the value holds, such as a devarg or firmware setting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact<T> {
    value: T,
    provenance: Provenance,
    note: Option<String>,
}

impl<T> Fact<T> {
    pub(crate) fn new(value: T, provenance: Provenance, note: Option<String>) -> Self {
        Fact {
            value,
            provenance,
            note,
        }
    }

    /// The value.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// Where the value comes from.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// The condition or caveat attached to the value, if any.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// True when the value is an estimate rather than a sourced fact.
    pub fn is_estimate(&self) -> bool {
        self.provenance.is_estimate()
    }
}

impl<T: Copy> Fact<T> {
    /// The value, for `Copy` types.
    pub fn get(&self) -> T {
        self.value
    }
}

/// One fact of a profile, seen from outside: its path in the file, its value rendered as
/// text, and its provenance. See [`crate::Profile::facts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactRef<'a> {
    /// Dotted path of the fact in the profile, e.g. `offload.engines[0].capacity`.
    pub path: String,
    /// The value as text (numbers in decimal, lists comma-separated).
    pub value: String,
    /// True when the value is a number (or a list of numbers such as PCI IDs).
    pub numeric: bool,
    /// Where the value comes from.
    pub provenance: &'a Provenance,
    /// The fact's note, if any.
    pub note: Option<&'a str>,
}
