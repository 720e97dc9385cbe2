//! Kubernetes policies through the fleet manager, with real processes: NetworkPolicy and
//! AdminNetworkPolicy manifests applied with `fleet-manager apply` are committed at once (as
//! `kubectl apply` would), compiled together with the inventory, enforced by the agents,
//! listed by `get`, explained with Kubernetes semantics, kept across a restart, deleted with
//! `delete`; a broken manifest is refused with its file and field and changes nothing.

mod support;

use std::time::Duration;

use support::*;

const CONVERGE: Duration = Duration::from_secs(60);

fn example(name: &str) -> String {
    examples()
        .join("kubernetes")
        .join(name)
        .display()
        .to_string()
}

/// `explain` as JSON (it exits 1 for a denied connection, like `grep` for no match).
fn explain(m: &Manager, from: &str, to: &str, port: &str) -> serde_json::Value {
    let out = m.cli(&[
        "explain", "--from", from, "--to", to, "--port", port, "--output", "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.success(), v["allowed"] == true, "{v}");
    v
}

fn listed(m: &Manager, kind: &str) -> Vec<String> {
    m.json(&["get", kind])["objects"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|o| {
            format!(
                "{} {} {}",
                o["kind"].as_str().unwrap(),
                o["scope"].as_str().unwrap(),
                o["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn kubernetes_policies_are_applied_enforced_kept_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut m = Manager::start(&data, 0, &[]);
    let (s1, s2) = (dir.path().join("node-1"), dir.path().join("node-2"));
    let _a1 = agent(&m, "node-1", &s1, Some(&m.token("node-1")));
    let _a2 = agent(&m, "node-2", &s2, Some(&m.token("node-2")));

    let applied = m.json(&[
        "apply",
        "-f",
        &example("policies/namespace-isolation.yaml"),
        "-f",
        &example("policies/platform-admin.yaml"),
        "-f",
        &example("inventory.yaml"),
    ]);
    let changes: Vec<String> = applied["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {} {} {}", c["kind"], c["scope"], c["name"], c["change"]))
        .collect();
    for expected in [
        r#""NetworkPolicy" "project/shop" "same-namespace-only" "created""#,
        r#""NetworkPolicy" "project/billing" "same-namespace-only" "created""#,
        r#""AdminNetworkPolicy" "global" "metrics-scraping" "created""#,
    ] {
        assert!(changes.iter().any(|c| c == expected), "{changes:#?}");
    }
    wait_until(CONVERGE, "both nodes in sync", || {
        in_sync(&m, &["node-1", "node-2"])
    });

    // Kubernetes semantics, from the manager's explain and from each device's program.
    let e = explain(&m, "billing/ledger", "shop/api", "8080");
    assert_eq!(e["allowed"], false, "{e}");
    let text = String::from_utf8(
        m.cli(&[
            "explain",
            "--from",
            "billing/ledger",
            "--to",
            "shop/api",
            "--port",
            "8080",
        ])
        .stdout,
    )
    .unwrap();
    assert!(
        text.contains("selected by NetworkPolicy shop/same-namespace-only")
            && text.contains("device node-2 (ingress of shop/api/eth0): denies"),
        "{text}"
    );
    assert_eq!(explain(&m, "shop/web", "shop/api", "8080")["allowed"], true);
    let e = explain(&m, "monitoring/prometheus", "billing/ledger", "9100");
    assert_eq!(e["allowed"], true, "{e}");
    assert!(e.to_string().contains("metrics-scraping"), "{e}");
    assert_eq!(
        explain(&m, "monitoring/prometheus", "billing/ledger", "8080")["allowed"],
        false
    );

    // `get` lists them, as manifests.
    assert_eq!(
        listed(&m, "networkpolicy"),
        [
            "NetworkPolicy project/billing same-namespace-only",
            "NetworkPolicy project/shop same-namespace-only"
        ]
    );
    let anp = m.ok(&["get", "anp", "metrics-scraping"]);
    assert!(
        anp.contains("kind: AdminNetworkPolicy") && anp.contains("priority: 10"),
        "{anp}"
    );

    // A broken manifest: refused with the file and the field, nothing changes.
    let generation = u64_of(&m.json(&["status", "--limit", "1"])["commits"][0]["generation"]);
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        std::fs::read_to_string(example("policies/pod-isolation.yaml"))
            .unwrap()
            .replace("policyTypes: [Ingress]", "policyTypes: [Sideways]"),
    )
    .unwrap();
    let out = m.cli(&["apply", "-f", broken.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("broken.yaml")
            && stderr.contains("policyTypes")
            && stderr.contains("Sideways"),
        "{stderr}"
    );
    assert_eq!(listed(&m, "networkpolicy").len(), 2);
    assert_eq!(
        u64_of(&m.json(&["status", "--limit", "1"])["commits"][0]["generation"]),
        generation
    );

    // A restart keeps them, and compiles to the same programs: no new commit.
    assert!(m.proc.terminate().success());
    let port = m.port;
    m = Manager::start(&data, port, &[]);
    assert_eq!(listed(&m, "networkpolicy").len(), 2);
    assert_eq!(listed(&m, "adminnetworkpolicy").len(), 1);
    assert_eq!(
        u64_of(&m.json(&["status", "--limit", "1"])["commits"][0]["generation"]),
        generation
    );
    wait_until(CONVERGE, "both nodes back in sync", || {
        in_sync(&m, &["node-1", "node-2"])
    });

    // Deleting billing's isolation opens billing again; shop stays isolated.
    m.ok(&[
        "delete",
        "networkpolicy",
        "same-namespace-only",
        "--scope",
        "project/billing",
    ]);
    assert_eq!(
        explain(&m, "shop/web", "billing/ledger", "8080")["allowed"],
        true
    );
    assert_eq!(
        explain(&m, "billing/ledger", "shop/api", "8080")["allowed"],
        false
    );
    let out = m.cli(&[
        "delete",
        "networkpolicy",
        "same-namespace-only",
        "--scope",
        "global",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("give scope project/NAMESPACE"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(CONVERGE, "both nodes in sync after the delete", || {
        in_sync(&m, &["node-1", "node-2"])
    });
}
