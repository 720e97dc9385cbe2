//! Every scenario under `hil-tests/scenarios/` on network namespaces with real traffic
//! (root only; CI runs as root): allowed connections get through with their replies,
//! denied ones deliver not a single packet. Twice: with the agents' own AF_PACKET ports,
//! and with DPDK's net_af_packet poll-mode driver (`--features dpdk`).

use std::path::Path;

use palisade_hil::{Driver, Lab, Scenario, is_root};

fn scenarios() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path().join("scenario.yaml"))
        .filter(|p| p.exists())
        .collect();
    out.sort();
    out
}

#[test]
fn scenarios_enforce_their_expectations_on_real_traffic() {
    run_all(Driver::AfPacket);
}

#[cfg(feature = "dpdk")]
#[test]
fn scenarios_enforce_their_expectations_through_dpdk_ports() {
    run_all(Driver::Dpdk);
}

#[cfg(not(feature = "dpdk"))]
#[test]
fn scenarios_enforce_their_expectations_through_dpdk_ports() {
    eprintln!(
        "!!! SKIPPED: built without `--features dpdk`; the DPDK variant of the scenarios did not run"
    );
}

fn run_all(driver: Driver) {
    if !is_root() {
        eprintln!("!!! SKIPPED: not root; the namespace scenarios ({driver:?}) did not run");
        return;
    }
    for tool in ["nc", "ping"] {
        assert!(
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap()
                .status
                .success(),
            "`{tool}` is missing: install netcat-openbsd and iputils-ping (scripts/test.sh does)"
        );
    }
    let files = scenarios();
    assert!(!files.is_empty());
    for file in files {
        let scenario = Scenario::load(&file).unwrap();
        let work = tempfile::tempdir().unwrap();
        let lab = Lab::start_with(&scenario, work.path(), driver).unwrap();
        let mut failures = Vec::new();
        for e in &scenario.expect {
            let (passed, packets) = lab.check(e).unwrap();
            let ok = if e.allow {
                passed
            } else {
                !passed && packets == 0
            };
            println!(
                "{driver:?} {:<12} {:<16} -> {:<16} {:<9} expect {:<5} got {:<5} ({packets} packets at the responder){}",
                scenario.name,
                e.from,
                e.to,
                e.service(),
                if e.allow { "allow" } else { "deny" },
                if passed { "allow" } else { "deny" },
                if ok { "" } else { "  <-- FAILED" }
            );
            if !ok {
                failures.push(format!("{} -> {} {}", e.from, e.to, e.service()));
            }
        }
        assert!(
            failures.is_empty(),
            "{} ({driver:?}): {failures:?}\n{}",
            scenario.name,
            lab.logs()
        );
    }
}
