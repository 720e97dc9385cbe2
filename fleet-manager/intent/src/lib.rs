//! Palisade's security intent (see `shared/design/POLICY.md`): typed, scoped, inherited tags;
//! address and service groups; firewall rules and policies in three tiers; application
//! policy sets; drafts with commit and revert; the plain-English rule language; lowering to
//! the compiler's [`PolicyIr`](palisade_compiler::PolicyIr); and `explain`, which answers
//! "what happens to this connection, and why" straight from the intent.
//!
//! Pure: no I/O, no clocks.

pub mod lang;
pub mod objects;

pub use objects::*;
