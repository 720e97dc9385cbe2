//! The fleet manager server.
//!
//! * [`fleet`] — the state machine: intent, inventory, compiled programs, commits and their
//!   status, devices, enrollment tokens, API users. No network I/O.
//! * [`store`] — persistence behind a trait; redb embedded by default.

pub mod fleet;
pub mod store;
