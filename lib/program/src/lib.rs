//! The device program: the only contract between the Palisade fleet manager and the devices
//! (DPU firmware, host-shim) that enforce security intent.
//!
//! A device program is
//!
//! * **self-contained** — it names addresses, never tags: a device needs no look-ups;
//! * **deterministic** — the compiler emits everything in canonical order, so the same intent
//!   gives the same bytes and the same [`ContentHash`];
//! * **minimal** — it holds only the rules that concern the device's local [`Endpoint`]s;
//! * **versioned** — a monotonic generation number travels with it (outside the hash).
//!
//! Its model: local endpoints (workload interfaces and their addresses), named address sets,
//! and up to three [`Tier`]s (admin, application, baseline) of ordered [`Rule`]s over
//! (direction, local endpoints, remote address set, protocol, initiator ports, responder
//! ports) with an [`Action`] (allow, deny, next-tier) and modifiers (log, audit, mirror,
//! redirect), plus a default per tier, endpoint and direction.
//!
//! [`DeviceProgram::evaluate`] is the reference interpreter; its module documentation gives
//! the exact semantics.

mod canonical;
mod interp;
mod net;
mod program;

pub use interp::{Decision, Packet, SideVerdict, Verdict};
pub use net::{NetError, PortRange, Prefix, PrefixSet, Protocol};
pub use program::{
    Action, AddressSet, ContentHash, DeviceProgram, Direction, Endpoint, FORMAT_VERSION,
    ProgramError, ProgramParts, Rule, Tier, TierDefaults, TierKind,
};

#[cfg(test)]
mod tests;
