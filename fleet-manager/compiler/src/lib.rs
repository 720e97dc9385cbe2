//! The policy compiler's back end: lowered policy ([`PolicyIr`]) + inventory -> one
//! [`DeviceProgram`](palisade_program::DeviceProgram) per device.
//!
//! Front-ends (`palisade-intent` for our intent language, `palisade-k8s` for Kubernetes
//! policies) resolve selectors and lower intent into [`PolicyIr`]; this crate splits it per
//! device, interns address sets, fills tier defaults, and hashes each program. A
//! [`Compiler`] remembers its last input and rebuilds only the devices a change can affect,
//! and says which. Pure: no I/O, no clocks.

mod compile;
mod ir;

pub use compile::{Compilation, CompileError, CompileOptions, Compiler, compile_all};
pub use ir::{DefaultOverride, IrRule, PolicyIr, RemoteSet, natural_default};
