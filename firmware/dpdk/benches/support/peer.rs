//! Shared by the DPDK benchmarks: the `dpdk-testpmd` io-forward peer on one `net_ring`
//! port (or on other vdevs), and the machine description printed with results.

#![allow(dead_code)] // each benchmark uses its own subset

use std::process::Command;

use palisade_dpdk::Eal;

/// `dpdk-testpmd` io-forwarding on one net_ring port for `seconds`: its median Rx-pps.
pub fn testpmd(seconds: u64) -> Result<f64, String> {
    testpmd_mode("io", seconds)
}

/// `dpdk-testpmd` in forwarding mode `mode` (io, macswap, csum, ...) on one net_ring port
/// for `seconds`: its median Rx-pps.
pub fn testpmd_mode(mode: &str, seconds: u64) -> Result<f64, String> {
    testpmd_on(mode, &["net_ring0"], "loop", seconds)
}

/// `dpdk-testpmd` in forwarding mode `mode` on the vdevs given (`--vdev` values) with that
/// `--port-topology`, started with a burst on every port (`--tx-first`), for `seconds`: the
/// median over its one-second periods of the Rx-pps summed over the ports (the first
/// period, which starts empty, left out).
pub fn testpmd_on(mode: &str, vdevs: &[&str], topology: &str, seconds: u64) -> Result<f64, String> {
    let out = Command::new("timeout")
        .args(["-s", "INT", &(seconds + 2).to_string(), "dpdk-testpmd"])
        .args(Eal::SOFTWARE_ONLY)
        .args(["-l", "0,1"])
        .args(vdevs.iter().map(|v| format!("--vdev={v}")))
        .arg("--")
        .arg(format!("--forward-mode={mode}"))
        .arg(format!("--port-topology={topology}"))
        .arg("--tx-first")
        .args([
            "--nb-cores=1",
            "--total-num-mbufs=16384",
            "--stats-period=1",
        ])
        .output()
        .map_err(|e| format!("cannot run dpdk-testpmd: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let per_port: Vec<f64> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Rx-pps:"))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    let mut samples: Vec<f64> = per_port
        .chunks_exact(vdevs.len().max(1))
        .map(|period| period.iter().sum())
        .collect();
    if samples.len() < 2 {
        return Err(format!(
            "dpdk-testpmd printed {} Rx-pps samples (exit {:?}); stderr:\n{}",
            samples.len(),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    samples.remove(0);
    Ok(median(samples))
}

/// The median.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The DPDK version (from pkg-config).
pub fn testpmd_version() -> String {
    Command::new("pkg-config")
        .args(["--modversion", "libdpdk"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The CPU model and its SIMD extensions.
pub fn cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU", str::trim)
        .to_owned();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags"))
        .unwrap_or_default();
    let simd: Vec<&str> = ["sse4_2", "avx2", "avx512f"]
        .into_iter()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .collect();
    format!("{model} ({})", simd.join(" "))
}
