//! `fleet-manager demo`: the quick start works as the README says — a manager, two
//! simulated DPUs, the sample intent, traffic whose every verdict agrees with `explain` —
//! and it cleans up after itself when stopped.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn demo(extra: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_fleet-manager"))
        .args([
            "demo",
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(["--output", "json", "--every", "0.3"])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn check_round(round: &serde_json::Value) {
    let probes = round["probes"].as_array().unwrap();
    assert_eq!(probes.len(), 8, "{round}");
    assert_eq!(
        round["agree"], 8,
        "every verdict agrees with explain: {round}"
    );
    let allowed = probes.iter().filter(|p| p["allowed"] == true).count();
    assert!(
        allowed > 0 && allowed < probes.len(),
        "both verdicts occur: {round}"
    );
    for d in round["devices"].as_array().unwrap() {
        assert!(d["generation"].as_u64().unwrap() > 0, "{d}");
    }
}

#[test]
fn the_demo_enforces_the_sample_and_agrees_with_explain() {
    let mut child = demo(&["--duration", "1.5"]);
    let lines: Vec<serde_json::Value> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert!(child.wait().unwrap().success());
    let start = &lines[0];
    assert!(
        start["grpc"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:")
    );
    assert_eq!(start["devices"].as_array().unwrap().len(), 2, "{start}");
    assert!(lines.len() >= 3, "several rounds: {lines:?}");
    for round in &lines[1..] {
        check_round(round);
    }
    let data = PathBuf::from(start["ca"].as_str().unwrap());
    assert!(
        !data.parent().unwrap().exists(),
        "the temporary data directory is removed"
    );
}

#[test]
fn the_demo_stops_cleanly_on_sigterm() {
    let mut child = demo(&[]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let start: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    check_round(&first);
    let data = PathBuf::from(start["ca"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(data.exists());
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the demo ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(!data.exists(), "{} is left behind", data.display());
}
