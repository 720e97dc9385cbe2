//! The fleet manager server.
//!
//! * [`fleet`] — the state machine: intent, inventory, compiled programs, commits and their
//!   status, devices, enrollment tokens, API users. No network I/O.
//! * [`store`] — persistence behind a trait; redb embedded by default.
//! * [`hub`] — distribution: each device's desired program, connections, events.
//! * [`convert`] — API messages to and from the fleet's types.
//! * [`service`], [`control`], [`orchestrator`] — the gRPC services over a shared core.
//! * [`rest`] — the REST mirror of the orchestrator API (JSON over the same TLS), and its
//!   OpenAPI document.
//! * [`serve`] — start-up: data directory, CA, certificates, listeners.

pub mod control;
pub mod convert;
pub mod fleet;
pub mod hub;
pub mod orchestrator;
pub mod rest;
pub mod serve;
pub mod service;
pub mod snmp;
pub mod store;
pub mod telemetry;
