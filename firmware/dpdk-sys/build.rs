//! Finds the system DPDK with pkg-config, generates bindings for the part of its API that
//! Palisade uses (bindgen over `csrc/wrapper.h`) and compiles `csrc/shim.c`, which gives
//! DPDK's static inline fast-path functions real symbols.

use std::collections::HashSet;
use std::env;
use std::path::PathBuf;
use std::process::{Command, exit};
use std::sync::Mutex;

use bindgen::callbacks::{ItemInfo, ItemKind, ParseCallbacks};

/// The DPDK series the bindings and the shim are written and tested against.
const DPDK_SERIES: (&str, &str) = ("22.11", "22.12");

/// Debian 12 packages that provide what this build needs.
const DEBIAN_PACKAGES: &str = "libdpdk-dev dpdk libclang-dev pkg-config";

/// Prefix of the shim's C symbols; the Rust bindings drop it.
const SHIM_PREFIX: &str = "palisade_";

/// The DPDK functions (real symbols) that the bindings expose.
const FUNCTIONS: &[&str] = &[
    // EAL
    "rte_eal_init",
    "rte_eal_cleanup",
    "rte_lcore_count",
    "rte_socket_id",
    "rte_strerror",
    // virtual devices
    "rte_vdev_init",
    "rte_vdev_uninit",
    // mempool and mbufs
    "rte_pktmbuf_pool_create",
    "rte_pktmbuf_free_bulk",
    "rte_mempool_avail_count",
    "rte_mempool_in_use_count",
    // ethdev
    "rte_eth_dev_count_avail",
    "rte_eth_dev_is_valid_port",
    "rte_eth_dev_get_port_by_name",
    "rte_eth_dev_get_name_by_port",
    "rte_eth_dev_socket_id",
    "rte_eth_dev_info_get",
    "rte_eth_dev_configure",
    "rte_eth_dev_adjust_nb_rx_tx_desc",
    "rte_eth_rx_queue_setup",
    "rte_eth_tx_queue_setup",
    "rte_eth_dev_start",
    "rte_eth_dev_stop",
    "rte_eth_dev_close",
    "rte_eth_stats_get",
    "rte_eth_stats_reset",
    "rte_eth_link_get_nowait",
    "rte_eth_macaddr_get",
    "rte_eth_promiscuous_enable",
    "rte_eth_promiscuous_disable",
    "rte_eth_promiscuous_get",
    // rte_flow
    "rte_flow_validate",
    "rte_flow_create",
    "rte_flow_destroy",
    "rte_flow_query",
    "rte_flow_flush",
    "rte_flow_isolate",
];

/// Types that are only needed by name or through functions above, plus the rte_flow item
/// and action configurations (which no function signature mentions).
const TYPES: &[&str] = &[
    "rte_flow_item_(eth|vlan|ipv4|ipv6|tcp|udp|sctp|icmp)",
    "rte_flow_action_(queue|jump|mark|count)",
    "rte_flow_query_count",
    "rte_flow_item_type",
    "rte_flow_action_type",
    "rte_flow_error_type",
];

/// Constants: errno values, the rte_errno extensions, and sizes the safe layer checks.
const VARS: &[&str] = &[
    "E[A-Z0-9]+",
    "E_RTE_[A-Z_]+",
    "RTE_MAX_ETHPORTS",
    "RTE_MAX_LCORE",
    "RTE_ETH_NAME_MAX_LEN",
    "RTE_DEV_NAME_MAX_LEN",
    "RTE_MEMPOOL_CACHE_MAX_SIZE",
    "RTE_MBUF_DEFAULT_BUF_SIZE",
    "RTE_PKTMBUF_HEADROOM",
    "RTE_ETHER_ADDR_LEN",
    "SOCKET_ID_ANY",
    "LCORE_ID_ANY",
];

/// Structures whose fields Rust never reads: pointers to them suffice, and opaque keeps
/// hundreds of lines of unions and bitfields out of the bindings.
const OPAQUE: &[&str] = &["rte_mbuf", "rte_mempool", "rte_flow"];

fn main() {
    let dpdk = match pkg_config::Config::new()
        .range_version(DPDK_SERIES.0..DPDK_SERIES.1)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => fail(&format!(
            "DPDK {} was not found through pkg-config (libdpdk.pc): {e}",
            DPDK_SERIES.0
        )),
    };
    // rte_vdev_init lives in the vdev bus driver, which libdpdk.pc lists only for static
    // linking (Libs.private).
    println!("cargo:rustc-link-lib=dylib=rte_bus_vdev");

    let cflags = dpdk_cflags(&dpdk);
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    for file in ["csrc/wrapper.h", "csrc/shim.h", "csrc/shim.c"] {
        println!("cargo:rerun-if-changed={file}");
    }
    cc::Build::new()
        .file("csrc/shim.c")
        .flags(&cflags)
        .warnings_into_errors(true)
        .compile("palisade_dpdk_shim");

    let mut builder = bindgen::Builder::default()
        .header("csrc/wrapper.h")
        .clang_args(&cflags)
        .rust_edition(bindgen::RustEdition::Edition2024)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .parse_callbacks(Box::new(ShimNames::default()))
        .allowlist_file("(.*/)?csrc/shim\\.h")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .constified_enum_module("rte_flow_(item|action|error)_type")
        .derive_default(true)
        .generate_comments(true)
        .layout_tests(true)
        .sort_semantically(true)
        .merge_extern_blocks(true);
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for t in TYPES {
        builder = builder.allowlist_type(t);
    }
    for v in VARS {
        builder = builder.allowlist_var(v);
    }
    for o in OPAQUE {
        builder = builder.opaque_type(o);
    }
    // bindgen loads libclang at run time and panics when it is missing.
    let bindings =
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || builder.generate())) {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => fail(&format!("bindgen could not read the DPDK headers: {e}")),
            Err(_) => fail("bindgen could not load libclang (see the panic above)"),
        };
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs to OUT_DIR");
}

/// The flags DPDK's headers must be compiled with: include paths, defines, and the rest of
/// `pkg-config --cflags libdpdk` (`-include rte_config.h`, the `-march` DPDK was built for),
/// which the pkg-config crate does not return.
fn dpdk_cflags(dpdk: &pkg_config::Library) -> Vec<String> {
    let mut flags: Vec<String> = dpdk
        .include_paths
        .iter()
        .map(|p| format!("-I{}", p.display()))
        .collect();
    for (name, value) in &dpdk.defines {
        flags.push(match value {
            Some(v) => format!("-D{name}={v}"),
            None => format!("-D{name}"),
        });
    }
    let pkg_config = env::var_os("PKG_CONFIG").unwrap_or_else(|| "pkg-config".into());
    let output = Command::new(&pkg_config)
        .args(["--cflags-only-other", "libdpdk"])
        .output();
    match output {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            flags.extend(text.split_whitespace().map(str::to_owned));
        }
        Ok(o) => fail(&format!(
            "`pkg-config --cflags-only-other libdpdk` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => fail(&format!("cannot run {}: {e}", pkg_config.to_string_lossy())),
    }
    flags
}

/// Stops the build with a message that says what to install.
fn fail(why: &str) -> ! {
    eprintln!(
        "\nerror: dpdk-sys: {why}\n\
         dpdk-sys builds against the system's DPDK {series}. On Debian 12 install it with:\n\
         \n    apt-get install {DEBIAN_PACKAGES}\n",
        series = DPDK_SERIES.0
    );
    exit(1);
}

/// Gives each shim function its DPDK name in Rust while linking to the shim's symbol.
#[derive(Debug, Default)]
struct ShimNames {
    renamed: Mutex<HashSet<String>>,
}

impl ParseCallbacks for ShimNames {
    fn generated_name_override(&self, item: ItemInfo<'_>) -> Option<String> {
        let dpdk_name = match item.kind {
            ItemKind::Function => item.name.strip_prefix(SHIM_PREFIX)?,
            _ => return None,
        };
        self.renamed
            .lock()
            .expect("bindgen callbacks never panic while holding the lock")
            .insert(dpdk_name.to_owned());
        Some(dpdk_name.to_owned())
    }

    fn generated_link_name_override(&self, item: ItemInfo<'_>) -> Option<String> {
        let renamed = self
            .renamed
            .lock()
            .expect("bindgen callbacks never panic while holding the lock");
        (matches!(item.kind, ItemKind::Function) && renamed.contains(item.name))
            .then(|| format!("{SHIM_PREFIX}{}", item.name))
    }
}
