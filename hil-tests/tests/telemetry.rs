//! Flow telemetry on real traffic (root only): the sessions the agents saw appear in the
//! manager's flow queries with the endpoints and tags of both ends, the verdict and the
//! deciding rule; totals group by tag pairs; and a draft is replayed against them.

use std::path::Path;
use std::time::Duration;

use palisade_hil::{Expect, Lab, LabOptions, Scenario, is_root, wait_until};

// The ClickHouse server guard of the store's own tests.
#[path = "../../fleet-manager/flows-clickhouse/tests/server/mod.rs"]
#[allow(dead_code)]
mod server;

fn json(lab: &Lab, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.extend(["--output", "json"]);
    let out = lab.cli(&args).unwrap();
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The flows of the last 10 minutes matching `filter`.
fn flows(lab: &Lab, filter: &str) -> Vec<serde_json::Value> {
    json(
        lab,
        &[
            "flows", "query", "--since", "10m", "--where", filter, "--list",
        ],
    )["flows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn sessions_appear_in_flow_queries_with_tags_rule_and_verdict() {
    if !is_root() {
        eprintln!("!!! SKIPPED: not root; the telemetry scenario did not run");
        return;
    }
    run(&[]);
}

/// The same with the manager's flows in a ClickHouse server the test starts.
#[test]
fn the_same_with_flows_in_clickhouse() {
    if !is_root() {
        eprintln!("!!! SKIPPED: not root; the telemetry scenario (ClickHouse) did not run");
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(server) = runtime.block_on(server::Server::start("hil telemetry")) else {
        return;
    };
    run(&["--clickhouse".into(), server.url()]);
    drop(server);
}

fn run(manager_args: &[String]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/three-tier");
    let scenario = Scenario::load(&dir.join("scenario.yaml")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let lab = Lab::start_full(
        &scenario,
        work.path(),
        &LabOptions {
            manager_args: manager_args.to_vec(),
            ..LabOptions::default()
        },
    )
    .unwrap();
    for e in [
        Expect::tcp("shop/web-prod", "shop/app-prod", 8080, true),
        Expect::tcp("shop/web-prod", "shop/app-dev", 8080, false),
    ] {
        let (passed, _) = lab.check(&e).unwrap();
        assert_eq!(passed, e.allow, "{} -> {}\n{}", e.from, e.to, lab.logs());
    }

    // The allowed session, reported by both devices (web-prod's egress on dpu-1, app-prod's
    // ingress on dpu-2), with both ends' tags and the shop's rule.
    let allowed =
        "src.endpoint=shop/web-prod/eth0 and dst.endpoint=shop/app-prod/eth0 and port=8080";
    assert!(
        wait_until(Duration::from_secs(15), || {
            let f = flows(&lab, allowed);
            ["dpu-1", "dpu-2"]
                .iter()
                .all(|d| f.iter().any(|x| x["record"]["device"] == *d))
        }),
        "{:#?}\n{}",
        flows(&lab, ""),
        lab.logs()
    );
    for f in flows(&lab, allowed) {
        let r = &f["record"];
        assert_eq!(r["denied"], serde_json::Value::Null, "{f}"); // false is omitted
        assert!(
            r["rule"].as_str().unwrap_or_default().contains("0020"),
            "decided by the shop's rule 0020: {f}"
        );
        let src = strings(&f["srcTags"]);
        let dst = strings(&f["dstTags"]);
        for t in ["application=shop", "deployment=prod", "tier=web"] {
            assert!(src.iter().any(|s| s == t), "{t} in {src:?}");
        }
        assert!(dst.iter().any(|s| s == "tier=app"), "{dst:?}");
        assert!(r["generation"].as_str().is_some(), "{f}");
    }

    // The denied one: no rule allowed it, recorded as denied.
    let denied = "dst.endpoint=shop/app-dev/eth0 and verdict=denied and port=8080";
    assert!(
        wait_until(Duration::from_secs(15), || !flows(&lab, denied).is_empty()),
        "{:#?}",
        flows(&lab, "")
    );

    // Totals by tag pair.
    let rows = json(
        &lab,
        &[
            "flows",
            "query",
            "--since",
            "10m",
            "--where",
            "port=8080",
            "--group-by",
            "src.deployment,dst.deployment,verdict",
        ],
    );
    let rows = rows["rows"].as_array().cloned().unwrap_or_default();
    let key = |r: &serde_json::Value| strings(&r["key"]);
    assert!(
        rows.iter().any(|r| key(r) == ["prod", "prod", "allowed"]),
        "{rows:#?}"
    );
    assert!(
        rows.iter().any(|r| key(r) == ["prod", "dev", "denied"]),
        "{rows:#?}"
    );
    let text = lab
        .cli(&[
            "flows",
            "query",
            "--since",
            "10m",
            "--group-by",
            "src.tier,dst.tier",
        ])
        .unwrap();
    assert!(text.contains("sessions") && text.contains("web"), "{text}");
    // Rules never hit: the shop's app -> db rule (no such traffic was sent) is; the rule
    // that allowed web -> app is not.
    let hit_rule = flows(&lab, allowed)[0]["record"]["rule"]
        .as_str()
        .unwrap()
        .to_string();
    let never = json(&lab, &["flows", "query", "--since", "10m", "--never-hit"]);
    let never: Vec<String> = never["rows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| strings(&r["key"]))
        .collect();
    assert!(!never.contains(&hit_rule), "{hit_rule} was hit: {never:#?}");
    assert!(
        never.iter().any(|r| r.contains("0030")),
        "the app -> db rule was never hit: {never:#?}"
    );

    // What-if: the shop's owners draft moving the app port; the recorded session would now
    // be denied.
    lab.cli(&["drafting", "--scope", "project/shop", "on"])
        .unwrap();
    let shop =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/three-tier/policies/shop.pal");
    let moved = work.path().join("shop-8081.pal");
    std::fs::write(
        &moved,
        std::fs::read_to_string(&shop)
            .unwrap()
            .replace("tcp/8080", "tcp/8081"),
    )
    .unwrap();
    lab.cli(&["apply", "-f", moved.to_str().unwrap()]).unwrap();
    let (status, out) = lab
        .cli_status(&[
            "flows",
            "what-if",
            "--draft",
            "project/shop",
            "--since",
            "10m",
            "--output",
            "json",
        ])
        .unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "exit 1: some verdicts would change\n{out}"
    );
    let whatif: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let changes = whatif["changes"].as_array().cloned().unwrap_or_default();
    assert!(
        changes.iter().any(|c| {
            c["flow"]["dstEndpoint"] == "shop/app-prod/eth0"
                && c["recorded"] == "allowed"
                && c["draft"] == "denied"
        }),
        "{whatif:#}"
    );
    // The denied session stays denied: not a change.
    assert!(
        !changes
            .iter()
            .any(|c| c["flow"]["dstEndpoint"] == "shop/app-dev/eth0"),
        "{whatif:#}"
    );

    // Records made while the manager is away are kept by the agents and arrive after it
    // returns: none is lost.
    let mut lab = lab;
    lab.kill_manager();
    let (passed, _) = lab
        .check(&Expect::tcp("shop/web-dev", "shop/app-dev", 8080, true))
        .unwrap();
    assert!(passed, "{}", lab.logs());
    lab.restart_manager().unwrap();
    let away = "src.endpoint=shop/web-dev/eth0 and dst.endpoint=shop/app-dev/eth0";
    assert!(
        wait_until(Duration::from_secs(30), || {
            let f = flows(&lab, away);
            ["dpu-1", "dpu-2"]
                .iter()
                .all(|d| f.iter().any(|x| x["record"]["device"] == *d))
        }),
        "records made while the manager was away: {:#?}\n{}",
        flows(&lab, away),
        lab.logs()
    );
}
