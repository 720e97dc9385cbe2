//! The vRouter dataplane, shared by the DPU firmware and the host-shim's software fallback:
//! sessions, the burst pipeline with atomic program switches, and ports.
//!
//! The dataplane knows device programs and packets, never tags, gRPC or storage.

pub mod pipeline;
pub mod session;
