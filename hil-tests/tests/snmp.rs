//! SNMP on the lab's real agents and manager, read with net-snmp's tools (root only): the
//! manager's fleet group counts the devices in sync, each agent's PALISADE-MIB counters and
//! IF-MIB octets move with real traffic, its generation is the one it acknowledged, and a
//! device that goes away makes the manager send palisadeDeviceLost to `snmptrapd`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use palisade_hil::{Expect, Lab, SNMP_COMMUNITY, Scenario, TrapSink, have, is_root, wait_until};

const PALISADE: &str = ".1.3.6.1.4.1.32473.1";

/// Runs a net-snmp tool against 127.0.0.1:`port`; its standard output.
fn snmp(tool: &str, port: u16, v3: bool, oids: &[&str], env: &Path) -> String {
    let mut cmd = Command::new(tool);
    cmd.args(["-m", "", "-On", "-Oq", "-t", "1", "-r", "2"])
        .env("SNMPCONFPATH", env)
        .env("SNMP_PERSISTENT_DIR", env)
        .env("HOME", env);
    if v3 {
        cmd.args(["-v3", "-l", "authPriv", "-u", "admin", "-a", "SHA", "-A"])
            .args(["palisade-auth", "-x", "AES", "-X", "palisade-priv"]);
    } else {
        cmd.args(["-v2c", "-c", SNMP_COMMUNITY]);
    }
    cmd.arg(format!("udp:127.0.0.1:{port}")).args(oids);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{tool} {oids:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The value of one `OID VALUE` line.
fn value(text: &str, oid: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(oid)?.strip_prefix(' ').map(str::to_string))
}

fn number(text: &str, oid: &str) -> u64 {
    value(text, oid)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no number for {oid} in:\n{text}"))
}

#[test]
fn net_snmp_reads_agents_and_manager_and_gets_device_lost_traps() {
    if !is_root() {
        eprintln!("!!! SKIPPED: not root; the SNMP scenario did not run");
        return;
    }
    for tool in ["snmpget", "snmpbulkwalk", "snmptrapd"] {
        if !have(tool) {
            eprintln!(
                "!!! SKIPPED: `{tool}` is missing (Debian: snmp, snmptrapd; scripts/test.sh installs them)"
            );
            return;
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/three-tier");
    let scenario = Scenario::load(&dir.join("scenario.yaml")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("net-snmp");
    std::fs::create_dir_all(&env).unwrap();
    let mut lab = Lab::start(&scenario, work.path()).unwrap();
    let snmp_ports = lab.snmp.clone();

    // The manager: two devices, both in sync, both connected; the fleet table names them.
    let fleet = format!("{PALISADE}.1.2");
    let text = snmp(
        "snmpget",
        snmp_ports.manager,
        false,
        &[
            &format!("{fleet}.1.0"),
            &format!("{fleet}.2.0"),
            &format!("{fleet}.3.0"),
        ],
        &env,
    );
    assert_eq!(number(&text, &format!("{fleet}.1.0")), 2, "{text}");
    assert_eq!(number(&text, &format!("{fleet}.2.0")), 2, "{text}");
    assert_eq!(number(&text, &format!("{fleet}.3.0")), 2, "{text}");
    let table = snmp(
        "snmpbulkwalk",
        snmp_ports.manager,
        true,
        &[&format!("{fleet}.5")],
        &env,
    );
    assert!(
        table.contains("\"dpu-1\"") && table.contains("\"dpu-2\""),
        "{table}"
    );

    // An agent: its generation is what it acknowledged; its counters move with traffic.
    let port = snmp_ports.agents["dpu-1"];
    let device = format!("{PALISADE}.1.1");
    let created = format!("{device}.4.0");
    let generation = format!("{device}.1.0");
    let before = snmp("snmpget", port, true, &[&created, &generation], &env);
    let devices: serde_json::Value =
        serde_json::from_str(&lab.cli(&["devices", "--output", "json"]).unwrap()).unwrap();
    let acked = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "dpu-1")
        .and_then(|d| d["ackedGeneration"].as_str())
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert_eq!(number(&before, &generation), acked, "{before}");
    let in_octets = ".1.3.6.1.2.1.31.1.1.1.6";
    let octets_before: u64 = snmp("snmpbulkwalk", port, false, &[in_octets], &env)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    let (passed, _) = lab
        .check(&Expect::tcp("shop/web-prod", "shop/app-prod", 8080, true))
        .unwrap();
    assert!(passed, "{}", lab.logs());
    assert!(
        wait_until(Duration::from_secs(5), || {
            number(&snmp("snmpget", port, true, &[&created], &env), &created)
                > number(&before, &created)
        }),
        "sessionsCreated did not move"
    );
    let octets_after: u64 = snmp("snmpbulkwalk", port, false, &[in_octets], &env)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    assert!(
        octets_after > octets_before,
        "{octets_before} -> {octets_after}"
    );

    // A device goes away: the manager says so to the trap sink.
    let sink = TrapSink::start(snmp_ports.traps, work.path()).unwrap();
    lab.kill_agent("dpu-2");
    let device_lost = format!("{PALISADE}.0.3");
    let notif_device = format!("{PALISADE}.1.3.1.0");
    assert!(
        wait_until(Duration::from_secs(10), || {
            sink.traps().iter().any(|t| {
                t.oid == device_lost
                    && t.vars.get(&notif_device).map(String::as_str) == Some("dpu-2")
            })
        }),
        "no palisadeDeviceLost for dpu-2:\n{}\n{}",
        sink.text(),
        lab.logs()
    );
}
