//! Bindings to DPDK 22.11.
