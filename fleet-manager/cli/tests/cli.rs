//! The `fleet-manager` binary, driven as users drive it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use palisade_program::DeviceProgram;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fleet-manager"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example() -> PathBuf {
    root().join("examples/three-tier")
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// The shared netpol corpus, or `None` (with a loud message) where `../shared` is absent.
fn corpus() -> Option<PathBuf> {
    let dir = root().join("../shared/data/netpol/dev");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "!!! SKIPPED: {} is missing; the netpol corpus tests did not run",
            dir.display()
        );
        None
    }
}

#[test]
fn check_accepts_the_example() {
    let (code, out, err) = run(bin()
        .args(["policy", "check"])
        .arg(example().join("policies")));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "ok: 3 files, 12 intent objects, 0 Kubernetes policies"
    );
}

#[test]
fn check_reports_syntax_errors_with_a_caret_and_references_across_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.pal"),
        "tag tier=web\npolicy p {\n  0010: allow tier=web tier=app on tcp/8080\n}\n",
    )
    .unwrap();
    let (code, _, err) = run(bin().args(["policy", "check"]).arg(dir.path()));
    assert_eq!(code, 1);
    assert!(err.contains("bad.pal:3:24"), "{err}");
    assert!(err.contains("^^^^^^^^"), "{err}");
    assert!(err.contains("expected a direction"), "{err}");

    std::fs::write(
        dir.path().join("bad.pal"),
        "policy p {\n  0010: allow tier=web > tier=ap on tcp/8080\n}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("tags.pal"), "tag tier=web tier=app\n").unwrap();
    let (code, _, err) = run(bin()
        .args(["policy", "check", "--output", "text"])
        .arg(dir.path()));
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.pal:1: policy `p`, rule 0010, endpoint_2: tag `tier=ap` is not defined globally; did you mean `tier=app`?"),
        "{err}"
    );
    let (code, out, _) = run(bin()
        .args(["policy", "check", "--output", "json"])
        .arg(dir.path()));
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
}

#[test]
fn compile_writes_valid_deterministic_programs() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for d in &dirs {
        let (code, out, err) = run(bin()
            .args(["policy", "compile", "--inventory"])
            .arg(example().join("inventory.yaml"))
            .arg("--policies")
            .arg(example().join("policies"))
            .arg("--out")
            .arg(d.path())
            .args(["--generation", "7"]));
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("wrote 2 programs (generation 7)"), "{out}");
    }
    for device in ["dpu-1", "dpu-2"] {
        let file = format!("{device}.json");
        let a = std::fs::read(dirs[0].path().join(&file)).unwrap();
        let b = std::fs::read(dirs[1].path().join(&file)).unwrap();
        assert_eq!(a, b, "same intent, same bytes");
        let program: DeviceProgram = serde_json::from_slice(&a).unwrap();
        assert_eq!(program.device(), device);
        assert_eq!(program.generation(), 7);
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dirs[0].path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["devices"].as_array().unwrap().len(), 2);
    let program: DeviceProgram =
        serde_json::from_slice(&std::fs::read(dirs[0].path().join("dpu-2.json")).unwrap()).unwrap();
    assert_eq!(summary["devices"][1]["hash"], program.hash().to_string());
}

fn explain(from: &str, to: &str, port: &str) -> serde_json::Value {
    let (code, out, err) = run(bin()
        .args(["policy", "explain", "--inventory"])
        .arg(example().join("inventory.yaml"))
        .arg("--policies")
        .arg(example().join("policies"))
        .args([
            "--from", from, "--to", to, "--port", port, "--output", "json",
        ]));
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn explain_gives_the_verdict_and_the_path() {
    let v = explain("shop/web-prod", "shop/app-prod", "8080");
    assert_eq!(v["allowed"], true);
    assert_eq!(
        v["intent"]["sides"][0]["decision"]["rule_ref"],
        "application/shop:shop/shop:three-tier/0020"
    );
    assert_eq!(v["devices"][0]["device"], "dpu-1");
    let v = explain("shop/web-prod", "shop/app-dev", "8080");
    assert_eq!(
        v["allowed"], false,
        "match deployment keeps prod and dev apart"
    );
    let v = explain("192.0.2.7", "shop/web-prod", "443");
    assert_eq!(
        v["allowed"], false,
        "quarantine beats the application's allow"
    );
    assert_eq!(
        v["intent"]["sides"][0]["decision"]["rule_ref"],
        "admin/guard/0010"
    );

    let (code, out, _) = run(bin()
        .args(["policy", "explain", "--inventory"])
        .arg(example().join("inventory.yaml"))
        .arg("--policies")
        .arg(example().join("policies"))
        .args([
            "--from",
            "shop/web-prod",
            "--to",
            "shop/app-prod",
            "--port",
            "8080",
        ]));
    assert_eq!(code, 0);
    assert!(
        out.starts_with("tcp 10.1.0.10:49152 -> 10.1.1.10:8080: ALLOWED"),
        "{out}"
    );
    assert!(
        out.contains("0020: allow tier=web > tier=app on tcp/8080 match application,deployment"),
        "{out}"
    );

    let (code, _, err) = run(bin()
        .args(["policy", "explain", "--inventory"])
        .arg(example().join("inventory.yaml"))
        .arg("--policies")
        .arg(example().join("policies"))
        .args(["--from", "shop/nope", "--to", "shop/app-prod"]));
    assert_eq!(code, 2);
    assert!(err.contains("shop/nope: no such endpoint"), "{err}");
}

#[test]
fn fmt_prints_the_canonical_language_and_converts() {
    let (code, pal, err) = run(bin()
        .args(["policy", "fmt"])
        .arg(example().join("policies")));
    assert_eq!(code, 0, "{err}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("all.pal"), &pal).unwrap();
    let (code, again, _) = run(bin().args(["policy", "fmt"]).arg(dir.path()));
    assert_eq!(code, 0);
    assert_eq!(pal, again, "canonical form is a fixed point");
    let (code, yaml, _) = run(bin()
        .args(["policy", "fmt", "--to", "yaml"])
        .arg(dir.path()));
    assert_eq!(code, 0);
    std::fs::write(dir.path().join("all.pal"), "").unwrap();
    std::fs::write(dir.path().join("all.yaml"), yaml).unwrap();
    let (code, from_yaml, _) = run(bin().args(["policy", "fmt"]).arg(dir.path()));
    assert_eq!(code, 0);
    assert_eq!(pal, from_yaml, "YAML and the language say the same thing");
}

#[test]
fn compile_takes_kubernetes_manifests_too() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("np.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: shop}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, _, err) = run(bin()
        .args(["policy", "compile", "--inventory"])
        .arg(example().join("inventory.yaml"))
        .arg("--policies")
        .arg(example().join("policies"))
        .arg(dir.path())
        .arg("--out")
        .arg(out.path()));
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(bin()
        .args(["policy", "explain", "--inventory"])
        .arg(example().join("inventory.yaml"))
        .arg("--policies")
        .arg(dir.path())
        .args([
            "--from",
            "shop/web-prod",
            "--to",
            "shop/app-prod",
            "--port",
            "8080",
        ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("DENIED"), "{out}");
    assert!(
        out.contains("isolation: selected by NetworkPolicy shop/db"),
        "{out}"
    );
}

#[test]
fn k8s_eval_answers_every_probe_without_reading_expectations() {
    let Some(dir) = corpus() else { return };
    let case = dir.join("npapi__BaselineAdminNetworkPolicyGress__step-2.json");
    let (code, out, err) = run(bin().args(["k8s", "eval"]).arg(&case));
    assert_eq!(code, 0, "{err}");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&case).unwrap()).unwrap();
    let probes = json["probes"].as_array().unwrap().len();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), probes);
    for (line, probe) in lines.iter().zip(json["probes"].as_array().unwrap()) {
        assert_eq!(line["src"], probe["src"]);
        assert_eq!(line["verdict"], probe["expect"]);
        assert_eq!(line.as_object().unwrap().len(), 5);
    }
    // With the expectations gone, the answers are the same.
    for p in json["probes"].as_array_mut().unwrap() {
        p.as_object_mut().unwrap().remove("expect");
    }
    let tmp = tempfile::tempdir().unwrap();
    let stripped = tmp.path().join("case.json");
    std::fs::write(&stripped, json.to_string()).unwrap();
    let (code, again, err) = run(bin().args(["k8s", "eval"]).arg(&stripped));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, again);
}

#[test]
fn k8s_test_passes_the_whole_dev_corpus() {
    let Some(dir) = corpus() else { return };
    let (code, out, err) = run(bin().args(["k8s", "test"]).arg(&dir));
    assert_eq!(code, 0, "{out}{err}");
    let last = out.lines().last().unwrap();
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(passed > 300_000, "{last}");
}

#[test]
fn k8s_test_reports_a_wrong_expectation() {
    let Some(dir) = corpus() else { return };
    let case = dir.join("npapi__BaselineAdminNetworkPolicyGress__step-2.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&case).unwrap()).unwrap();
    json["probes"][1]["expect"] = "allow".into();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("case.json"), json.to_string()).unwrap();
    let (code, out, _) = run(bin().args(["k8s", "test"]).arg(tmp.path()));
    assert_eq!(code, 1);
    assert!(
        out.contains("FAIL npapi/BaselineAdminNetworkPolicyGress/step-2 probe 1"),
        "{out}"
    );
    assert!(out.contains("expected allow, got deny"), "{out}");
    assert!(out.trim_end().ends_with("passed, 1 failed"), "{out}");
}
