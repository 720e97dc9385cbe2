//! Palisade's security intent (see `shared/design/POLICY.md`): typed, scoped, inherited tags;
//! address and service groups; firewall rules and policies in three tiers; application
//! policy sets; drafts with commit and revert; lowering to the compiler's
//! [`PolicyIr`](palisade_compiler::PolicyIr); and `explain`, which answers "what happens to
//! this connection, and why" straight from the intent.
//!
//! * [`objects`] — the objects as users write them, with their YAML/JSON forms ([`yaml`]);
//! * [`lang`] — the plain-English rule language;
//! * [`IntentSet`] — a collection of objects, name resolution and validation;
//! * [`IntentStore`] — drafts, commit, revert and diffs per scope;
//! * [`lower()`] — intent + inventory -> lowered rules for the compiler;
//! * [`explain()`] — one connection's verdict and path, from intent.
//!
//! Pure: no I/O, no clocks.

pub mod explain;
pub mod lang;
pub mod lower;
pub mod objects;
mod resolve;
mod set;
mod store;
pub mod yaml;

pub use explain::{Explainer, Explanation, Query, RuleStep, SideExplanation, Step, explain};
pub use lower::{LowerError, Lowered, Lowerer, lower, rule_ref};
pub use objects::*;
pub use resolve::{AttachmentError, endpoint_tags};
pub use set::{IntentSet, Origin, Reference, ValidationError};
pub use store::{
    Applied, AppliedChange, ChangeKind, CommitOutcome, DiffEntry, DraftSnapshot, IntentStore,
    Outcome, ScopeSnapshot, Snapshot, StoreError,
};
