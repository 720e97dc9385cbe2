//! What the loader knows about DPDK 22.11 itself, to catch profiles that claim more than
//! the release offers. Taken from the 22.11.11 LTS sources (Debian bookworm's `dpdk`).

/// The only DPDK release whose facts the loader can check.
pub(crate) const RELEASE: &str = "22.11";

/// PMDs that register `struct rte_flow_ops` in DPDK 22.11 (`grep -l rte_flow_ops
/// drivers/net/*/*.c`). ionic and idpf are absent: they have no rte_flow at all.
pub(crate) const SYNC_API_PMDS: &[&str] = &[
    "bnxt", "bonding", "cnxk", "cxgbe", "dpaa2", "e1000", "enic", "failsafe", "hinic", "hns3",
    "i40e", "iavf", "ice", "igc", "ipn3ke", "ixgbe", "mlx4", "mlx5", "mvpp2", "nfp", "qede", "sfc",
    "tap", "txgbe",
];

/// PMDs that implement the template/async flow API in DPDK 22.11: only mlx5
/// (`drivers/net/mlx5/mlx5_flow_hw.c`; no other driver sets `async_create`).
pub(crate) const TEMPLATE_API_PMDS: &[&str] = &["mlx5"];
