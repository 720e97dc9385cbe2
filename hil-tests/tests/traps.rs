//! The agents' own SNMP notifications, received by net-snmp's `snmptrapd` (root only):
//! an agent on the small simulated NIC (`sim-small`, 256 entries) sends
//! palisadeHardwareTableFull, naming itself with the table's use and capacity, when the
//! manager hands it a program with more rules than the table holds — and not for one that
//! fits; an agent handed a program it cannot apply (a `redirect` to an L7 service it has no
//! port for) sends palisadeApplyFailed with the generation and why, and keeps enforcing
//! the generation it had.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use palisade_hil::{
    Expect, Lab, LabOptions, SNMP_COMMUNITY, Scenario, Trap, TrapSink, have, is_root, wait_until,
};

const PALISADE: &str = ".1.3.6.1.4.1.32473.1";
const APPLY_FAILED: &str = ".1.3.6.1.4.1.32473.1.0.1";
const HARDWARE_TABLE_FULL: &str = ".1.3.6.1.4.1.32473.1.0.2";

/// The varbind of notification object `object` (`palisadeNotificationObjects.object.0`).
fn notif(object: u32) -> String {
    format!("{PALISADE}.1.3.{object}.0")
}

/// The notifications `oid` that `sink` got from `device`, in order.
fn traps_from(sink: &TrapSink, oid: &str, device: &str) -> Vec<Trap> {
    sink.traps()
        .into_iter()
        .filter(|t| t.oid == oid && t.vars.get(&notif(1)).map(String::as_str) == Some(device))
        .collect()
}

/// The numbers an agent's SNMP answers for `oids` (SNMPv2c), in order.
fn snmp_numbers(port: u16, env: &Path, oids: &[&str]) -> Vec<u64> {
    let out = Command::new("snmpget")
        .args(["-m", "", "-On", "-Oqv", "-t", "1", "-r", "2", "-v2c", "-c"])
        .arg(SNMP_COMMUNITY)
        .arg(format!("udp:127.0.0.1:{port}"))
        .args(oids)
        .env("SNMPCONFPATH", env)
        .env("SNMP_PERSISTENT_DIR", env)
        .env("HOME", env)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let values: Vec<u64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(
        values.len(),
        oids.len(),
        "snmpget {oids:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    values
}

/// The agent's palisadeDeviceHwTableUsed and palisadeDeviceHwTableCapacity.
fn table_use(port: u16, env: &Path) -> (u64, u64) {
    let (used, capacity) = (format!("{PALISADE}.1.1.8.0"), format!("{PALISADE}.1.1.9.0"));
    let values = snmp_numbers(port, env, &[&used, &capacity]);
    (values[0], values[1])
}

/// An admin policy of `rules` rules, web -> app on one distinct TCP port each: on each
/// device one hardware entry per direction and rule, none overlapping another.
fn bulk_policy(rules: u16) -> String {
    let mut text = String::from("policy bulk tier admin seq 0300 {\n");
    for i in 1..=rules {
        text.push_str(&format!(
            "  {i:04}: allow tier=web > tier=app on tcp/{}\n",
            20_000 + i
        ));
    }
    text.push_str("}\n");
    text
}

/// A three-tier lab whose agents run with `agent_args`, and a trap sink where their
/// notifications go; `None` (after saying so loudly) where it cannot run.
struct Setup {
    sink: TrapSink,
    lab: Lab,
    /// net-snmp's files for `snmpget`.
    env: PathBuf,
    work: tempfile::TempDir,
}

fn setup(agent_args: &[&str]) -> Option<Setup> {
    if !is_root() {
        eprintln!("!!! SKIPPED: not root; the trap scenario did not run");
        return None;
    }
    for tool in ["snmpget", "snmptrapd"] {
        if !have(tool) {
            eprintln!(
                "!!! SKIPPED: `{tool}` is missing (Debian: snmp, snmptrapd; scripts/test.sh installs them)"
            );
            return None;
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/three-tier");
    let scenario = Scenario::load(&dir.join("scenario.yaml")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let env = work.path().join("net-snmp");
    std::fs::create_dir_all(&env).unwrap();
    let lab = Lab::start_full(
        &scenario,
        work.path(),
        &LabOptions {
            agent_args: agent_args.iter().map(|a| a.to_string()).collect(),
            ..LabOptions::default()
        },
    )
    .unwrap();
    let sink = TrapSink::start(lab.snmp.traps, work.path()).unwrap();
    Some(Setup {
        sink,
        lab,
        env,
        work,
    })
}

#[test]
fn an_agent_whose_hardware_table_fills_sends_hardware_table_full() {
    let Some(Setup {
        sink,
        lab,
        env,
        work,
    }) = setup(&["--profile", "sim-small"])
    else {
        return;
    };
    let port = lab.snmp.agents["dpu-1"];
    let bulk = work.path().join("bulk.pal");
    let full = || traps_from(&sink, HARDWARE_TABLE_FULL, "dpu-1");

    // A program that fits: the table has room, and no notification says otherwise.
    std::fs::write(&bulk, bulk_policy(16)).unwrap();
    lab.apply(&[&bulk]).unwrap();
    let (used, capacity) = table_use(port, &env);
    assert_eq!(capacity, 256, "sim-small's table");
    assert!(used > 0 && used < capacity, "{used} of {capacity} entries");
    assert!(
        full().is_empty(),
        "palisadeHardwareTableFull for a program that fits ({used} of {capacity}):\n{}",
        sink.text()
    );

    // One with more rules than the table holds: the table fills and the device says so,
    // with its use and capacity as its MIB has them. Each direction gets a share of the
    // capacity in proportion to its rows, rounded down, and fills it with one-entry rules:
    // together they hold the capacity or one entry less.
    std::fs::write(&bulk, bulk_policy(400)).unwrap();
    lab.apply(&[&bulk]).unwrap();
    let (used, capacity) = table_use(port, &env);
    assert!(used + 1 >= capacity, "{used} of {capacity} entries");
    assert!(
        wait_until(Duration::from_secs(10), || !full().is_empty()),
        "no palisadeHardwareTableFull from dpu-1 ({used} of {capacity} entries):\n{}\n{}",
        sink.text(),
        lab.logs()
    );
    // Exactly one: the program that fitted sent none before it (one agent's traps leave
    // in order, over loopback).
    let traps = full();
    assert_eq!(traps.len(), 1, "{traps:?}");
    let number = |object| -> u64 {
        traps[0].vars[&notif(object)]
            .parse()
            .unwrap_or_else(|_| panic!("{traps:?}"))
    };
    assert_eq!(
        (number(4), number(5)),
        (used, 256),
        "palisadeNotifTableUsed, palisadeNotifTableCapacity: {traps:?}"
    );
}

/// dpu-1's acknowledged and desired generations, as the manager has them.
fn generations(lab: &Lab) -> (u64, u64) {
    let devices: serde_json::Value =
        serde_json::from_str(&lab.cli(&["devices", "--output", "json"]).unwrap()).unwrap();
    let device = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "dpu-1")
        .unwrap()
        .clone();
    let number = |field: &str| device[field].as_str().unwrap_or("0").parse().unwrap();
    (number("ackedGeneration"), number("desiredGeneration"))
}

#[test]
fn an_agent_that_refuses_a_program_sends_apply_failed_and_keeps_the_previous_one() {
    let Some(Setup {
        sink,
        lab,
        env,
        work,
    }) = setup(&[])
    else {
        return;
    };
    let port = lab.snmp.agents["dpu-1"];
    let generation_oid = format!("{PALISADE}.1.1.1.0");
    let (enforced, desired) = generations(&lab);
    assert_eq!(enforced, desired);

    // A rule that hands connections to an L7 service these devices have no port for: the
    // manager compiles it (it cannot know how devices are wired), the devices refuse it.
    let inspect = work.path().join("inspect.pal");
    std::fs::write(
        &inspect,
        "policy inspect tier admin seq 0300 {\n  0010: allow tier=web > tier=app on tcp/9000 redirect ids\n}\n",
    )
    .unwrap();
    lab.cli(&["apply", "-f", &inspect.display().to_string()])
        .unwrap();
    let failed = || traps_from(&sink, APPLY_FAILED, "dpu-1");
    assert!(
        wait_until(Duration::from_secs(30), || !failed().is_empty()),
        "no palisadeApplyFailed from dpu-1:\n{}\n{}",
        sink.text(),
        lab.logs()
    );
    let traps = failed();
    let (acked, desired) = generations(&lab);
    assert!(desired > enforced, "{enforced} -> {desired}");
    assert_eq!(
        traps[0].vars[&notif(2)],
        desired.to_string(),
        "palisadeNotifGeneration: {traps:?}"
    );
    let reason = &traps[0].vars[&notif(3)];
    assert!(
        reason.contains("`ids`") && reason.contains("--service"),
        "palisadeNotifReason: {reason}"
    );

    // It keeps enforcing the generation it had: it says so, the manager has it
    // acknowledged, and traffic that program allows still passes.
    assert_eq!(acked, enforced);
    assert_eq!(snmp_numbers(port, &env, &[&generation_oid]), [enforced]);
    for e in [
        Expect::tcp("shop/web-prod", "shop/app-prod", 8080, true),
        Expect::tcp("shop/web-prod", "shop/app-dev", 8080, false),
    ] {
        let (passed, _) = lab.check(&e).unwrap();
        assert_eq!(passed, e.allow, "{e:?}\n{}", lab.logs());
    }
}
