//! The control plane with real processes: `fleet-manager serve`, `vrouter agent`s, the CLI.
//!
//! * the README's walk-through: two agents enroll, intent in the rule language is applied
//!   and committed, the commit becomes "enforced", and each device's acknowledged hash is
//!   the hash of the program it stored;
//! * faults: the manager killed right after a commit and restarted, a device killed and
//!   restarted during a commit (it enforces its stored program before it reconnects), the
//!   manager restarted with devices connected — everything converges, nothing is lost;
//! * a stalled device (SIGSTOP) holds up no other device, and `watch` reports the commit
//!   going from pending to enforced when it wakes up;
//! * the server's certificate replaced without a restart (seen by `openssl s_client`);
//! * device certificates renewed before they expire, without losing the stream's program;
//! * racing commits in one scope: one wins, the other gets a conflict;
//! * `grpc.health.v1` and server reflection (v1 and v1alpha) on the gRPC port.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;

const CONVERGE: Duration = Duration::from_secs(60);

fn three_tier(m: &Manager, policies: &[&str]) {
    let ex = examples().join("three-tier");
    let mut args = vec!["apply".to_string()];
    for p in policies {
        args.push("-f".into());
        args.push(ex.join("policies").join(p).display().to_string());
    }
    args.push("-f".into());
    args.push(ex.join("inventory.yaml").display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    m.ok(&args);
}

fn commit_state(m: &Manager, generation: u64) -> serde_json::Value {
    let status = m.json(&["status", &generation.to_string()]);
    status["commits"][0].clone()
}

#[test]
fn readme_flow_two_agents_enforce_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manager::start(&dir.path().join("data"), 0, &[]);
    assert!(m.ca.exists() && m.token_file.exists());

    let mut agents = Vec::new();
    for name in ["dpu-1", "dpu-2"] {
        let token = m.token(name);
        assert!(token.starts_with("plt_"), "{token}");
        agents.push(agent(&m, name, &dir.path().join(name), Some(&token)));
    }
    wait_until(CONVERGE, "both devices to enroll and connect", || {
        let d = m.devices();
        d.iter()
            .filter(|d| d["enrolled"] == true && d["connected"] == true)
            .count()
            == 2
    });

    // Global objects (tags, the admin tier) are committed as they are applied; the shop's
    // project drafts until it is committed.
    m.ok(&["drafting", "--scope", "project/shop", "on"]);
    three_tier(&m, &["tags.pal", "admin.pal"]);
    let shop = examples().join("three-tier/policies/shop.pal");
    let applied = m.json(&["apply", "-f", shop.to_str().unwrap()]);
    assert!(
        applied["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["drafted"] == true),
        "{applied}"
    );
    let diff = m.json(&["diff", "--scope", "project/shop"]);
    assert_eq!(diff["entries"].as_array().unwrap().len(), 2, "{diff}");
    let revision = u64_of(&diff["revision"]).to_string();

    let commit = m.json(&[
        "commit",
        "--scope",
        "project/shop",
        "--revision",
        &revision,
        "--wait",
        "60",
    ]);
    assert_eq!(commit["state"], "COMMIT_STATE_ENFORCED", "{commit}");
    let generation = u64_of(&commit["generation"]);
    let targets = commit["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2, "{commit}");

    // `status` shows the commit enforced and, per device, the acknowledged generation and
    // hash — which are those of the program each agent stored and runs.
    let status = commit_state(&m, generation);
    assert_eq!(status["state"], "COMMIT_STATE_ENFORCED");
    for name in ["dpu-1", "dpu-2"] {
        let target = targets.iter().find(|t| t["device"] == name).unwrap();
        assert_eq!(target["state"], "TARGET_STATE_ACKED", "{target}");
        let device = m.device(name);
        assert_eq!(
            device["ackedGeneration"].as_str(),
            Some(&*generation.to_string())
        );
        assert_eq!(device["ackedHash"], target["hash"]);
        let (stored_generation, stored_hash) = stored_program(&dir.path().join(name)).unwrap();
        assert_eq!(stored_generation, generation);
        assert_eq!(stored_hash, hash_of(&target["hash"]));
        assert!(
            device["hardwareRules"].as_u64().unwrap_or(0) > 0,
            "placement reported: {device}"
        );
    }
    // The two devices hold different workloads, so different programs.
    assert_ne!(targets[0]["hash"], targets[1]["hash"]);

    let text = m.ok(&["status", &generation.to_string()]);
    assert!(text.contains("enforced"), "{text}");
    let text = m.ok(&["devices"]);
    assert_eq!(text.matches("in sync").count(), 2, "{text}");
    drop(agents);
}

/// Rewrites the shop policy's app port, so every device's program changes.
fn shop_with_port(dir: &Path, port: u16) -> String {
    let text = std::fs::read_to_string(examples().join("three-tier/policies/shop.pal")).unwrap();
    let changed = text.replace("tcp/8080", &format!("tcp/{port}"));
    assert_ne!(text, changed);
    let path = dir.join(format!("shop-{port}.pal"));
    std::fs::write(&path, changed).unwrap();
    path.display().to_string()
}

fn last_commit(applied: &serde_json::Value) -> u64 {
    applied["commits"]
        .as_array()
        .and_then(|c| c.last())
        .map(|c| u64_of(&c["generation"]))
        .unwrap_or_else(|| panic!("no commit in {applied}"))
}

#[test]
fn faults_converge_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut m = Manager::start(&data, 0, &["--ack-timeout", "120"]);
    let (s1, s2) = (dir.path().join("dpu-1"), dir.path().join("dpu-2"));
    let _a1 = agent(&m, "dpu-1", &s1, Some(&m.token("dpu-1")));
    let mut a2 = agent(&m, "dpu-2", &s2, Some(&m.token("dpu-2")));
    three_tier(&m, &["tags.pal", "admin.pal", "shop.pal"]);
    wait_until(CONVERGE, "the first programs", || {
        in_sync(&m, &["dpu-1", "dpu-2"])
    });

    // 1. The manager is killed right after a commit, before the devices could all ack.
    let applied = m.json(&["apply", "-f", &shop_with_port(dir.path(), 8081)]);
    let g1 = last_commit(&applied);
    m.proc.kill();
    let port = m.port;
    m = Manager::start(&data, port, &["--ack-timeout", "120"]);
    wait_until(
        CONVERGE,
        "commit 1 to be enforced after the restart",
        || commit_state(&m, g1)["state"] == "COMMIT_STATE_ENFORCED",
    );
    wait_until(CONVERGE, "devices in sync", || {
        in_sync(&m, &["dpu-1", "dpu-2"])
    });
    assert_eq!(stored_program(&s1).unwrap().0, g1);

    // 2. A device is killed; a commit goes out while it is down; it restarts, enforces its
    //    stored program at once, and catches up.
    a2.kill();
    let before = stored_program(&s2).unwrap();
    wait_until(CONVERGE, "the manager to see dpu-2 gone", || {
        m.device("dpu-2")["connected"] != true
    });
    let applied = m.json(&["apply", "-f", &shop_with_port(dir.path(), 8082)]);
    let g2 = last_commit(&applied);
    let pending = commit_state(&m, g2);
    assert_eq!(pending["state"], "COMMIT_STATE_PENDING", "{pending}");
    wait_until(CONVERGE, "dpu-1 to ack commit 2", || {
        u64_of(&m.device("dpu-1")["ackedGeneration"]) == g2
    });
    let a2 = agent(&m, "dpu-2", &s2, None);
    wait_until(CONVERGE, "commit 2 to be enforced", || {
        commit_state(&m, g2)["state"] == "COMMIT_STATE_ENFORCED"
    });
    let log = a2.log();
    let restored = log
        .find("enforcing the program stored in the state directory")
        .unwrap_or_else(|| panic!("no restore in:\n{log}"));
    let connected = log.find("connected to the fleet manager").unwrap();
    assert!(restored < connected, "restored after connecting:\n{log}");
    assert!(log.contains(&format!("generation={}", before.0)), "{log}");
    assert_eq!(stored_program(&s2).unwrap().0, g2);

    // 3. The manager restarts (gracefully) with devices connected; they reconnect and the
    //    next commit reaches them. The history survived.
    let status = m.proc.terminate();
    assert!(status.success(), "{status}");
    m = Manager::start(&data, port, &["--ack-timeout", "120"]);
    wait_until(CONVERGE, "devices to reconnect", || {
        in_sync(&m, &["dpu-1", "dpu-2"])
    });
    let applied = m.json(&["apply", "-f", &shop_with_port(dir.path(), 8083)]);
    let g3 = last_commit(&applied);
    wait_until(CONVERGE, "commit 3 to be enforced", || {
        commit_state(&m, g3)["state"] == "COMMIT_STATE_ENFORCED"
    });
    for g in [g1, g2] {
        assert_eq!(commit_state(&m, g)["state"], "COMMIT_STATE_ENFORCED");
    }
    assert_eq!(stored_program(&s1).unwrap().0, g3);
    assert_eq!(stored_program(&s2).unwrap().0, g3);
}

#[test]
fn racing_commits_in_one_scope_one_wins_one_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manager::start(&dir.path().join("data"), 0, &[]);
    m.ok(&["drafting", "--scope", "global", "on"]);
    let ex = examples().join("three-tier/policies");
    m.ok(&["apply", "-f", ex.join("tags.pal").to_str().unwrap()]);
    let revision = u64_of(&m.json(&["diff", "--scope", "global"])["revision"]).to_string();
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let args = [
                "commit",
                "--scope",
                "global",
                "--revision",
                &revision,
                "--server",
                &m.url,
                "--ca",
                m.ca.to_str().unwrap(),
                "--token-file",
                m.token_file.to_str().unwrap(),
            ]
            .map(String::from);
            std::thread::spawn(move || {
                std::process::Command::new(fleet_manager())
                    .args(args)
                    .output()
                    .unwrap()
            })
        })
        .collect();
    let outputs: Vec<_> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    let wins = outputs.iter().filter(|o| o.status.success()).count();
    assert_eq!(wins, 1, "{outputs:?}");
    let loser = outputs.iter().find(|o| !o.status.success()).unwrap();
    let err = String::from_utf8_lossy(&loser.stderr);
    assert!(err.contains("conflict"), "{err}");
    assert!(err.contains("revision"), "{err}");
}

#[test]
fn devices_renew_their_certificates_before_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    // 12-second certificates: renewed after 8.
    let m = Manager::start(&dir.path().join("data"), 0, &["--cert-hours", "0.00333"]);
    let state = dir.path().join("dpu-1");
    let a = agent(&m, "dpu-1", &state, Some(&m.token("dpu-1")));
    three_tier(&m, &["tags.pal", "admin.pal", "shop.pal"]);
    wait_until(CONVERGE, "dpu-1 in sync", || in_sync(&m, &["dpu-1"]));
    let first = std::fs::read_to_string(state.join("device.pem")).unwrap();
    let first_expiry = u64_of(&m.device("dpu-1")["certificateNotAfterUnix"]);
    wait_until(Duration::from_secs(30), "a renewal", || {
        a.log().contains("certificate renewed")
    });
    let second = std::fs::read_to_string(state.join("device.pem")).unwrap();
    assert_ne!(first, second);
    // Past the first certificate's expiry the device is still connected and in sync.
    wait_until(
        Duration::from_secs(30),
        "the first certificate to expire",
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                > first_expiry + 1
        },
    );
    assert!(in_sync(&m, &["dpu-1"]), "{:?}", m.devices());
    let applied = m.json(&["apply", "-f", &shop_with_port(dir.path(), 9090)]);
    let g = last_commit(&applied);
    // (dpu-2 of the inventory never runs here: the commit waits on it, dpu-1 acks.)
    wait_until(CONVERGE, "the commit after renewal", || {
        u64_of(&m.device("dpu-1")["ackedGeneration"]) == g
    });
}

#[test]
fn health_and_reflection_answer_on_the_grpc_port() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::{v1, v1alpha};

    let dir = tempfile::tempdir().unwrap();
    let m = Manager::start(&dir.path().join("data"), 0, &[]);
    let ca = std::fs::read_to_string(&m.ca).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tls = palisade_pki::client_config(&ca, None).unwrap();
        let channel = palisade_pki::channel(&m.url, tls).await.unwrap();
        for service in ["palisade.control.v1.Control", "palisade.orchestrator.v1.Orchestrator"] {
            let r = HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.status, ServingStatus::Serving as i32, "{service}");
        }
        let unknown = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);

        let request = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        };
        let mut stream = v1::server_reflection_client::ServerReflectionClient::new(channel.clone())
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            stream.message().await.unwrap().unwrap().message_response
        else {
            panic!("not a service list");
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        for expected in [
            "palisade.control.v1.Control",
            "palisade.orchestrator.v1.Orchestrator",
            "grpc.health.v1.Health",
        ] {
            assert!(names.contains(&expected), "{names:?}");
        }

        let request = v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                    "palisade.orchestrator.v1.Orchestrator".into(),
                ),
            ),
        };
        let mut stream =
            v1alpha::server_reflection_client::ServerReflectionClient::new(channel)
                .server_reflection_info(tokio_stream::iter([request]))
                .await
                .unwrap()
                .into_inner();
        let response = stream.message().await.unwrap().unwrap().message_response;
        assert!(
            matches!(
                response,
                Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref f))
                    if !f.file_descriptor_proto.is_empty()
            ),
            "{response:?}"
        );
    });
}

#[test]
fn a_stalled_device_holds_up_nobody_and_watch_reports_it() {
    use std::io::BufRead as _;

    let dir = tempfile::tempdir().unwrap();
    let m = Manager::start(&dir.path().join("data"), 0, &[]);
    let _a1 = agent(
        &m,
        "dpu-1",
        &dir.path().join("dpu-1"),
        Some(&m.token("dpu-1")),
    );
    let a2 = agent(
        &m,
        "dpu-2",
        &dir.path().join("dpu-2"),
        Some(&m.token("dpu-2")),
    );
    three_tier(&m, &["tags.pal", "admin.pal", "shop.pal"]);
    wait_until(CONVERGE, "the first programs", || {
        in_sync(&m, &["dpu-1", "dpu-2"])
    });

    let mut watch = std::process::Command::new(fleet_manager())
        .args(["watch", "--server", &m.url, "--ca"])
        .arg(&m.ca)
        .arg("--token-file")
        .arg(&m.token_file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (events_tx, events) = std::sync::mpsc::channel::<serde_json::Value>();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if events_tx
                .send(serde_json::from_str(&line).unwrap())
                .is_err()
            {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));

    let pid = a2.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let applied = m.json(&["apply", "-f", &shop_with_port(dir.path(), 8181)]);
    let g = last_commit(&applied);
    wait_until(CONVERGE, "dpu-1 to ack while dpu-2 sleeps", || {
        u64_of(&m.device("dpu-1")["ackedGeneration"]) == g
    });
    let state = commit_state(&m, g);
    assert_eq!(state["state"], "COMMIT_STATE_PENDING", "{state}");
    assert!(
        std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_until(CONVERGE, "the commit to be enforced", || {
        commit_state(&m, g)["state"] == "COMMIT_STATE_ENFORCED"
    });

    // The watch saw the commit pending, then enforced.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(&"COMMIT_STATE_ENFORCED".to_string()) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let event = events
            .recv_timeout(left)
            .expect("a commit event from watch");
        if u64_of(&event["commit"]["generation"]) == g {
            seen.push(event["commit"]["state"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        seen.first().map(String::as_str),
        Some("COMMIT_STATE_PENDING"),
        "{seen:?}"
    );
    let _ = watch.kill();
    let _ = watch.wait();
}

/// The serial of the certificate the server presents, as `openssl s_client` sees it after
/// verifying it against the fleet CA.
fn presented_serial(m: &Manager) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{} -servername localhost -CAfile {} \
             -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -serial",
            m.port,
            m.ca.display()
        ))
        .output()
        .unwrap();
    let serial = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(serial.starts_with("serial="), "openssl: {serial:?} {out:?}");
    serial
}

#[test]
fn the_server_certificate_rotates_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // 12-second server certificates: replaced every 6.
    let m = Manager::start(
        &dir.path().join("data"),
        0,
        &["--server-cert-hours", "0.00333"],
    );
    let _a = agent(
        &m,
        "dpu-1",
        &dir.path().join("dpu-1"),
        Some(&m.token("dpu-1")),
    );
    wait_until(CONVERGE, "dpu-1 in sync", || in_sync(&m, &["dpu-1"]));
    let first = presented_serial(&m);
    wait_until(Duration::from_secs(30), "a rotation", || {
        m.proc.log().contains("server certificate rotated")
    });
    let second = presented_serial(&m);
    assert_ne!(first, second, "new connections get the new certificate");
    // Connections made before keep working, new ones verify.
    assert!(in_sync(&m, &["dpu-1"]));
    let g = last_commit(
        &m.json(&[
            "apply",
            "-f",
            examples()
                .join("three-tier/policies/tags.pal")
                .to_str()
                .unwrap(),
        ]),
    );
    assert!(g > 0);
}
