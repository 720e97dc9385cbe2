//! The EAL every test of one binary shares (DPDK allows one per process).

use palisade_dpdk::Eal;

/// The software-only EAL on one lcore (no hugepages, no PCI, no shared config).
pub fn eal() -> &'static Eal {
    Eal::get_or_init(Eal::SOFTWARE_ONLY.iter().chain(&["-l", "0"]))
        .expect("the EAL starts without hugepages (see its log above)")
}
