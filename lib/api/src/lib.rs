//! Palisade's wire API: the protobuf services the fleet manager serves, the device program
//! as it travels, and program deltas.
//!
//! * [`pb`] holds the generated messages, tonic clients and servers, and their proto3 JSON
//!   mapping (serde), which the REST mirror of the orchestrator API speaks.
//! * [`wire`] converts between [`palisade_program::DeviceProgram`] and its message, refusing
//!   malformed input with the path of the offending field.
//! * [`flows`] converts flow records to and from their message.
//! * [`delta`] expresses a program as changes from a base the device already runs, and
//!   turns a [`pb::control::v1::ProgramUpdate`] back into a verified program: the rebuilt
//!   program's content hash must equal the hash the manager sent, so a corrupted update is
//!   never applied.
//!
//! [`FILE_DESCRIPTOR_SET`] is what gRPC server reflection serves.

pub mod delta;
pub mod flows;
pub mod wire;

/// The encoded descriptors of every Palisade proto file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/palisade_descriptor.bin"));

/// Generated code: messages, clients, servers, JSON mapping.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    /// `palisade.program.v1`: the device program.
    pub mod program {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("palisade.program.v1");
            include!(concat!(env!("OUT_DIR"), "/palisade.program.v1.serde.rs"));
        }
    }
    /// `palisade.flow.v1`: flow records and stored flows.
    pub mod flow {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("palisade.flow.v1");
            include!(concat!(env!("OUT_DIR"), "/palisade.flow.v1.serde.rs"));
        }
    }
    /// `palisade.control.v1`: the device-facing service.
    pub mod control {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("palisade.control.v1");
            include!(concat!(env!("OUT_DIR"), "/palisade.control.v1.serde.rs"));
        }
    }
    /// `palisade.orchestrator.v1`: the orchestrator-facing service.
    pub mod orchestrator {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("palisade.orchestrator.v1");
            include!(concat!(
                env!("OUT_DIR"),
                "/palisade.orchestrator.v1.serde.rs"
            ));
        }
    }
}

pub use wire::WireError;
