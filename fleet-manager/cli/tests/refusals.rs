//! Bad credentials and bad input against a real `fleet-manager serve`: refused with a clear
//! error, logged, and nothing changes.
//!
//! TLS-level refusals of client certificates (another CA, expired, revoked, no clientAuth)
//! are tested in-process against the same verifier in `lib/pki/tests/tls.rs`; here they are
//! seen from the processes: the agent, the CLI and a device client with a forged
//! certificate.

mod support;

use std::time::{Duration, SystemTime};

use palisade_api::pb::control::v1::control_client::ControlClient;
use palisade_api::pb::control::v1::{
    AckRequest, DeviceStatus, EnrollRequest, Placement, RuleCounters, SubscribeRequest, ack_request,
};
use palisade_api::pb::orchestrator::v1::ListDevicesRequest;
use palisade_api::pb::orchestrator::v1::orchestrator_client::OrchestratorClient;
use palisade_pki::{Ca, DeviceKey, Validity, client_config};
use support::*;
use tonic::Code;
use tonic::transport::Channel;

const CONVERGE: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn connected(m: &Manager, name: &str) -> bool {
    m.devices()
        .iter()
        .any(|d| d["name"] == name && d["connected"] == true)
}

/// A channel with the device credentials in an agent's state directory.
async fn device_channel(m: &Manager, state: &std::path::Path) -> Channel {
    let read = |f: &str| std::fs::read_to_string(state.join(f)).unwrap();
    let tls = client_config(
        &read("ca.pem"),
        Some((&read("device.pem"), &read("device.key"))),
    )
    .unwrap();
    palisade_pki::channel(&m.url, tls).await.unwrap()
}

async fn anonymous_channel(m: &Manager) -> Channel {
    let ca = std::fs::read_to_string(&m.ca).unwrap();
    palisade_pki::channel(&m.url, client_config(&ca, None).unwrap())
        .await
        .unwrap()
}

#[test]
fn enrollment_tokens_are_one_time_and_bound_to_their_device() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manager::start(&dir.path().join("data"), 0, &[]);
    let t1 = m.token("dpu-1");
    let _a = agent(&m, "dpu-1", &dir.path().join("a"), Some(&t1));
    wait_until(CONVERGE, "dpu-1 to connect", || connected(&m, "dpu-1"));

    let refused = |name: &str, state: &str, token: &str, expect: &str| {
        let mut p = agent(&m, name, &dir.path().join(state), Some(token));
        let status = p.wait_exit(Duration::from_secs(30));
        assert_eq!(status.code(), Some(2), "{}", p.log());
        let log = p.log();
        assert!(log.contains(expect), "expected `{expect}` in:\n{log}");
        assert!(!dir.path().join(state).join("device.pem").exists());
    };
    refused("dpu-1", "b", &t1, "already used");
    refused(
        "dpu-1",
        "c",
        &format!("plt_{}", "0".repeat(64)),
        "unknown token",
    );
    let t3 = m.token("dpu-3");
    refused("dpu-4", "d", &t3, "not for device `dpu-4`");

    // The refusals spent nothing: dpu-3's token still enrolls dpu-3.
    let _e = agent(&m, "dpu-3", &dir.path().join("e"), Some(&t3));
    wait_until(CONVERGE, "dpu-3 to connect", || connected(&m, "dpu-3"));
    assert!(m.devices().iter().all(|d| d["name"] != "dpu-4"));
    assert!(
        m.proc.log().matches("enrollment refused").count() >= 3,
        "{}",
        m.proc.log()
    );
}

#[test]
fn certificates_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manager::start(&dir.path().join("data"), 0, &[]);
    let foreign = dir.path().join("foreign-ca.pem");
    std::fs::write(&foreign, Ca::generate().unwrap().cert_pem()).unwrap();

    // A client that trusts another CA does not talk to this manager.
    let out = std::process::Command::new(fleet_manager())
        .args(["devices", "--server", &m.url, "--ca"])
        .arg(&foreign)
        .arg("--token-file")
        .arg(&m.token_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UnknownIssuer"), "{err}");

    // Nor does an agent; its token is not spent by trying.
    let t1 = m.token("dpu-1");
    let mut lost = agent_to(
        &m.url,
        &foreign,
        "dpu-1",
        &dir.path().join("x"),
        Some(&t1),
        &[],
    );
    wait_until(
        Duration::from_secs(20),
        "the agent to report the CA problem",
        || lost.log().contains("UnknownIssuer"),
    );
    lost.kill();
    let s1 = dir.path().join("dpu-1");
    let _a1 = agent(&m, "dpu-1", &s1, Some(&t1));
    let t2 = m.token("dpu-2");
    let s2 = dir.path().join("dpu-2");
    let _a2 = agent(&m, "dpu-2", &s2, Some(&t2));
    wait_until(CONVERGE, "both devices to connect", || {
        connected(&m, "dpu-1") && connected(&m, "dpu-2")
    });

    let rt = runtime();
    // An expired certificate, even one the fleet CA signed, is refused.
    let ca = Ca::from_pem(
        &std::fs::read_to_string(m.data.join("ca.pem")).unwrap(),
        &std::fs::read_to_string(m.data.join("ca.key")).unwrap(),
    )
    .unwrap();
    let key = DeviceKey::generate().unwrap();
    let hour = Duration::from_secs(3600);
    let expired = ca
        .sign_device_csr(
            &key.csr_pem("dpu-1").unwrap(),
            "dpu-1",
            Validity::between(SystemTime::now() - 2 * hour, SystemTime::now() - hour).unwrap(),
        )
        .unwrap();
    let tls = client_config(ca.cert_pem(), Some((&expired.pem, &key.key_pem()))).unwrap();
    let result = rt.block_on(async {
        let channel = palisade_pki::channel(&m.url, tls).await?;
        ControlClient::new(channel)
            .subscribe(SubscribeRequest::default())
            .await
            .map(|_| ())
            .map_err(|s| palisade_pki::PkiError::Connect {
                url: String::new(),
                reason: format!("{s:?}"),
            })
    });
    // With TLS 1.3 the client may see only a closed stream; the manager says why.
    assert!(result.is_err());
    wait_until(
        Duration::from_secs(10),
        "the manager to log the refusal",
        || {
            let log = m.proc.log();
            log.lines()
                .any(|l| l.contains("TLS handshake failed") && l.contains("certificate expired"))
        },
    );

    // A device certificate does not open the orchestrator API.
    let status = rt
        .block_on(async {
            OrchestratorClient::new(device_channel(&m, &s2).await)
                .list_devices(ListDevicesRequest {})
                .await
        })
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("dpu-2"), "{status:?}");

    // A state directory belongs to one device.
    let mut wrong = agent(&m, "dpu-9", &s2, None);
    assert_eq!(wrong.wait_exit(Duration::from_secs(30)).code(), Some(2));
    let log = wrong.log();
    assert!(
        log.contains("`dpu-2`") && log.contains("use another --state"),
        "{log}"
    );

    // Revoked: the stream is cut, reconnection refused, and no new token for the name.
    let revoked = m.json(&["revoke", "--device", "dpu-1"]);
    assert!(
        !revoked["serials"].as_array().unwrap().is_empty(),
        "{revoked}"
    );
    wait_until(CONVERGE, "dpu-1 to be cut off", || {
        let d = m.device("dpu-1");
        d["revoked"] == true && d["connected"] != true
    });
    let status = rt
        .block_on(async {
            let mut c = ControlClient::new(device_channel(&m, &s1).await);
            c.subscribe(SubscribeRequest::default()).await.map(|_| ())
        })
        .unwrap_err();
    let text = format!("{status:?}");
    assert_ne!(status.code(), Code::Ok, "{text}");
    wait_until(
        Duration::from_secs(10),
        "the manager to log the refusal",
        || {
            m.proc
                .log()
                .lines()
                .any(|l| l.contains("TLS handshake failed") && l.contains("Revoked"))
        },
    );
    let out = m.cli(&["token", "create", "--device", "dpu-1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked"));
    // dpu-2 was not disturbed.
    assert!(connected(&m, "dpu-2"));
}

#[test]
fn malformed_and_oversized_messages_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manager::start(&dir.path().join("data"), 0, &[]);
    let s1 = dir.path().join("dpu-1");
    let _a1 = agent(&m, "dpu-1", &s1, Some(&m.token("dpu-1")));
    let ex = examples().join("three-tier");
    m.ok(&[
        "apply",
        "-f",
        ex.join("policies").to_str().unwrap(),
        "-f",
        ex.join("inventory.yaml").to_str().unwrap(),
    ]);
    wait_until(CONVERGE, "dpu-1 in sync", || in_sync(&m, &["dpu-1"]));
    let before = m.device("dpu-1");
    let rt = runtime();

    rt.block_on(async {
        let mut c = ControlClient::new(device_channel(&m, &s1).await);
        let bad_hash = c
            .ack(AckRequest {
                generation: 1,
                hash: vec![1, 2, 3, 4, 5],
                result: Some(ack_request::Result::Applied(Placement::default())),
            })
            .await
            .unwrap_err();
        assert_eq!(bad_hash.code(), Code::InvalidArgument);
        assert!(bad_hash.message().contains("hash"), "{bad_hash:?}");
        let no_result = c
            .ack(AckRequest {
                generation: 1,
                hash: vec![0; 32],
                result: None,
            })
            .await
            .unwrap_err();
        assert_eq!(no_result.code(), Code::InvalidArgument);
        let bad_base = c
            .subscribe(SubscribeRequest {
                applied_hash: vec![9; 3],
                ..SubscribeRequest::default()
            })
            .await
            .unwrap_err();
        assert_eq!(bad_base.code(), Code::InvalidArgument);
        let huge = c
            .report_status(DeviceStatus {
                rules: vec![RuleCounters {
                    rule_id: "x".repeat(2 << 20),
                    ..RuleCounters::default()
                }],
                ..DeviceStatus::default()
            })
            .await
            .unwrap_err();
        assert!(
            matches!(huge.code(), Code::OutOfRange | Code::ResourceExhausted),
            "{huge:?}"
        );

        // A CSR that is not one is refused without spending the token.
        let t2 = m.token("dpu-2");
        let mut anon = ControlClient::new(anonymous_channel(&m).await);
        let garbage = anon
            .enroll(EnrollRequest {
                device: "dpu-2".into(),
                token: t2.clone(),
                csr_pem:
                    "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                        .into(),
            })
            .await
            .unwrap_err();
        assert_eq!(garbage.code(), Code::InvalidArgument, "{garbage:?}");
        let key = DeviceKey::generate().unwrap();
        anon.enroll(EnrollRequest {
            device: "dpu-2".into(),
            token: t2,
            csr_pem: key.csr_pem("dpu-2").unwrap(),
        })
        .await
        .expect("the token survived the refused request");
    });

    let log = m.proc.log();
    assert!(
        log.matches("malformed request refused").count() >= 3,
        "the refusals are logged:\n{log}"
    );

    // Broken policy text: refused with where, nothing stored.
    let objects = m.json(&["get"]);
    let broken = dir.path().join("broken.pal");
    std::fs::write(
        &broken,
        "policy p tier admin seq 1 {\n  0010: allow any > tier=web on tcp/99999\n}\n",
    )
    .unwrap();
    let out = m.cli(&["apply", "-f", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.pal") && err.contains("99999"), "{err}");
    assert_eq!(m.json(&["get"]), objects);

    // Read-only users read, and only read.
    let viewer = m.ok(&["user", "token", "viewer", "--role", "read-only"]);
    let token = dir.path().join("viewer.token");
    std::fs::write(&token, viewer.trim()).unwrap();
    let as_viewer = |args: &[&str]| {
        std::process::Command::new(fleet_manager())
            .args(args)
            .args(["--server", &m.url, "--ca"])
            .arg(&m.ca)
            .arg("--token-file")
            .arg(&token)
            .output()
            .unwrap()
    };
    assert!(as_viewer(&["devices"]).status.success());
    let out = as_viewer(&["apply", "-f", ex.join("policies").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));

    // None of it moved dpu-1.
    let after = m.device("dpu-1");
    for field in ["ackedGeneration", "ackedHash", "desiredHash", "revoked"] {
        assert_eq!(before[field], after[field], "{field}");
    }
    assert!(connected(&m, "dpu-1"));
}
