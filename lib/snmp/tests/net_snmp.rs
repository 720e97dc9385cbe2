//! The agent against real managers: net-snmp's snmpget, snmpwalk, snmpbulkwalk,
//! snmpbulkget and snmpset (Debian package `snmp`), and snmptrapd for traps (package
//! `snmptrapd`). A test whose tool is missing prints a line beginning `!!! SKIPPED:`
//! and passes.
//!
//! Every tool runs with numeric output (`-On`), no MIBs (`-m ""`), none of the
//! machine's configuration, and short timeouts (`-t 1 -r 1`: one retry, for loaded
//! CI machines).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use palisade_snmp::{
    DeviceGroup, DeviceState, FleetDevice, FleetGroup, Interface, InterfaceCounters, MibSnapshot,
    MibSource, Notification, SnmpConfig, SnmpHandle, SystemGroup, oids, serve,
};

/// net-snmp's arguments for SNMPv3 as `user`, authenticating with `auth` (protocol,
/// passphrase), and encrypting with AES-128 when a privacy passphrase is given.
fn v3(
    user: &'static str,
    auth: [&'static str; 2],
    privacy: Option<&'static str>,
) -> Vec<&'static str> {
    let mut args = vec!["-v3", "-u", user, "-a", auth[0], "-A", auth[1]];
    match privacy {
        Some(passphrase) => args.extend(["-l", "authPriv", "-x", "AES", "-X", passphrase]),
        None => args.extend(["-l", "authNoPriv"]),
    }
    args
}

fn admin() -> Vec<&'static str> {
    v3("admin", ["SHA", "admin-auth-1"], Some("admin-priv-1"))
}

fn monitor() -> Vec<&'static str> {
    v3("monitor", ["SHA-256", "monitor-auth-1"], None)
}

const PUBLIC: &[&str] = &["-v2c", "-c", "public"];
const SYSONLY: &[&str] = &["-v2c", "-c", "sysonly"];

const SYS_NAME: &str = ".1.3.6.1.2.1.1.5.0";
const IF_NUMBER: &str = ".1.3.6.1.2.1.2.1.0";
const IF_DESCR: &str = ".1.3.6.1.2.1.2.2.1.2";
const IF_HC_IN_OCTETS_1: &str = ".1.3.6.1.2.1.31.1.1.1.6.1";
const PALISADE: &str = ".1.3.6.1.4.1.32473.1";
const DEVICE_GENERATION: &str = ".1.3.6.1.4.1.32473.1.1.1.1.0";
const SESSIONS_CREATED: &str = ".1.3.6.1.4.1.32473.1.1.1.4.0";
const FLEET_DEVICES: &str = ".1.3.6.1.4.1.32473.1.1.2.1.0";

fn config_yaml(trap_sinks: &str) -> String {
    format!(
        "listen: 127.0.0.1:0
views:
  all: {{ include: [1.3.6.1] }}
  system: {{ include: [1.3.6.1.2.1.1] }}
  no-fleet: {{ include: [1.3.6.1], exclude: [1.3.6.1.4.1.32473.1.1.2] }}
communities:
  - {{ name: public, view: all }}
  - {{ name: sysonly, view: system }}
users:
  - name: admin
    auth: {{ protocol: sha, passphrase: admin-auth-1 }}
    privacy: {{ protocol: aes128, passphrase: admin-priv-1 }}
    view: all
  - name: monitor
    auth: {{ protocol: sha256, passphrase: monitor-auth-1 }}
    view: no-fleet
{trap_sinks}"
    )
}

/// A vRouter agent and a fleet manager in one: every group filled, and its counters
/// move at each snapshot.
#[derive(Default)]
struct Fake {
    polls: AtomicU64,
    bare: bool,
}

impl MibSource for Fake {
    fn snapshot(&self) -> MibSnapshot {
        let n = self.polls.fetch_add(1, Ordering::SeqCst);
        let system = SystemGroup {
            descr: "Palisade test agent".into(),
            object_id: oids::PALISADE_VROUTER,
            contact: "ops@example.net".into(),
            name: "dpu-test".into(),
            location: "rack 7".into(),
            services: 12,
        };
        if self.bare {
            return MibSnapshot::new(system);
        }
        let interface = |index: u32, name: &str| Interface {
            index,
            name: name.into(),
            descr: format!("{name} test port"),
            alias: format!("uplink {index}"),
            speed_bps: 100_000_000_000,
            mac: Some([0x02, 0, 0, 0, 0, index as u8]),
            counters: InterfaceCounters {
                in_octets: 5_000_000_000 + 1000 * n + u64::from(index),
                in_ucast_pkts: 7 * n,
                out_octets: 3 * n,
                ..InterfaceCounters::default()
            },
            ..Interface::default()
        };
        let device = |index: u32, state| FleetDevice {
            index,
            name: format!("dpu-{index}"),
            state,
            acked_generation: 42,
            desired_generation: 43,
            last_seen: Some(Instant::now()),
        };
        MibSnapshot {
            system,
            interfaces: Some(vec![
                interface(10, "vf0"),
                interface(1, "pf0"),
                interface(2, "pf1"),
            ]),
            device: Some(DeviceGroup {
                generation: 42,
                program_hash: Some([0xab; 32]),
                sessions_active: 1234,
                sessions_created: 10_000_000_000 + n,
                sessions_denied: 77,
                rules_hardware: 100,
                rules_software: 5,
                hw_table_used: 4000,
                hw_table_capacity: 4096,
                manager_connected: true,
            }),
            fleet: Some(FleetGroup {
                generation: 43,
                devices: vec![
                    device(1, DeviceState::InSync),
                    device(2, DeviceState::Behind),
                    device(3, DeviceState::NeverConnected),
                ],
            }),
        }
    }
}

/// An agent on a free loopback port, on a runtime of its own: the test thread runs the
/// net-snmp tools while the runtime answers them.
struct Agent {
    handle: Option<SnmpHandle>,
    runtime: tokio::runtime::Runtime,
    address: String,
    /// Holds net-snmp's configuration and persistent state: none of the machine's.
    home: tempfile::TempDir,
}

impl Agent {
    fn start(yaml: &str, source: Fake) -> Agent {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = SnmpConfig::from_yaml(yaml).unwrap();
        let handle = runtime.block_on(serve(config, Arc::new(source))).unwrap();
        let address = format!("udp:{}", handle.local_addr());
        Agent {
            handle: Some(handle),
            runtime,
            address,
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn handle(&self) -> &SnmpHandle {
        self.handle.as_ref().unwrap()
    }

    /// Runs a net-snmp tool against the agent.
    fn tool(&self, tool: &str, security: &[&str], args: &[&str]) -> Output {
        let mut command = net_snmp_command(tool, self.home.path());
        command
            .args(security)
            .args(["-t", "1", "-r", "1"])
            .arg(&self.address)
            .args(args);
        command.output().unwrap()
    }

    /// Runs a tool that must succeed, and parses its varbinds.
    fn varbinds(&self, tool: &str, security: &[&str], args: &[&str]) -> Vec<(String, String)> {
        let out = self.tool(tool, security, args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{tool} {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse(&stdout)
    }

    fn get(&self, security: &[&str], oid: &str) -> String {
        let varbinds = self.varbinds("snmpget", security, &[oid]);
        assert_eq!(varbinds.len(), 1, "{varbinds:?}");
        assert_eq!(varbinds[0].0, oid);
        varbinds[0].1.clone()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.runtime.block_on(handle.shutdown());
        }
    }
}

/// A net-snmp tool with numeric output, no MIBs, and none of the machine's
/// configuration or persistent state.
fn net_snmp_command(tool: &str, home: &Path) -> Command {
    let mut command = Command::new(tool);
    command
        .env("SNMPCONFPATH", home)
        .env("SNMP_PERSISTENT_DIR", home)
        .env("HOME", home)
        .args(["-m", "", "-On"]);
    command
}

/// Whether the tools are installed; if not, says so and the test passes.
fn have(tools: &[&str]) -> bool {
    for tool in tools {
        if Command::new(tool).arg("-V").output().is_err() {
            println!(
                "!!! SKIPPED: {tool} not found (Debian packages: snmp, and snmptrapd for traps)"
            );
            return false;
        }
    }
    true
}

/// "OID = TYPE: value" lines; a line without " = " continues the previous value
/// (net-snmp breaks long hex strings).
fn parse(stdout: &str) -> Vec<(String, String)> {
    let mut varbinds: Vec<(String, String)> = Vec::new();
    for line in stdout.lines() {
        match line.split_once(" = ") {
            Some((oid, value)) if oid.starts_with('.') => {
                varbinds.push((oid.to_owned(), value.trim().to_owned()))
            }
            _ => {
                if let Some(last) = varbinds.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            }
        }
    }
    varbinds
}

fn arcs(oid: &str) -> Vec<u32> {
    oid.trim_start_matches('.')
        .split('.')
        .map(|a| a.parse().unwrap())
        .collect()
}

fn counter64(value: &str) -> u64 {
    value
        .strip_prefix("Counter64: ")
        .unwrap_or_else(|| panic!("not a Counter64: {value}"))
        .parse()
        .unwrap()
}

fn fails_with(out: &Output, expected: &[&str]) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        expected.iter().any(|e| text.contains(e)),
        "expected one of {expected:?}, got: {text}"
    );
}

#[test]
fn v2c_get_reads_the_system_group_and_counters_move() {
    if !have(&["snmpget"]) {
        return;
    }
    let agent = Agent::start(&config_yaml(""), Fake::default());
    assert_eq!(agent.get(PUBLIC, SYS_NAME), r#"STRING: "dpu-test""#);
    assert_eq!(
        agent.get(PUBLIC, ".1.3.6.1.2.1.1.2.0"),
        "OID: .1.3.6.1.4.1.32473.1.3.1"
    );
    assert_eq!(agent.get(PUBLIC, ".1.3.6.1.2.1.1.7.0"), "INTEGER: 12");
    assert!(
        agent
            .get(PUBLIC, ".1.3.6.1.2.1.1.3.0")
            .starts_with("Timeticks: ")
    );
    assert_eq!(agent.get(PUBLIC, IF_NUMBER), "INTEGER: 3");

    let first = counter64(&agent.get(PUBLIC, IF_HC_IN_OCTETS_1));
    let second = counter64(&agent.get(PUBLIC, IF_HC_IN_OCTETS_1));
    assert!(first > 1 << 32, "{first}");
    assert!(second > first, "{first} then {second}");
    // The 32-bit column serves the same counter modulo 2^32.
    let low = agent.get(PUBLIC, ".1.3.6.1.2.1.2.2.1.10.1");
    let low: u64 = low.strip_prefix("Counter32: ").unwrap().parse().unwrap();
    assert!(low < 1 << 32 && low > (second % (1 << 32)), "{low}");

    // Several varbinds in one request read one snapshot.
    let both = agent.varbinds("snmpget", PUBLIC, &[SESSIONS_CREATED, SESSIONS_CREATED]);
    assert_eq!(both[0].1, both[1].1);
}

#[test]
fn v2c_walk_of_the_whole_tree_is_ordered_and_ends() {
    if !have(&["snmpwalk"]) {
        return;
    }
    let agent = Agent::start(&config_yaml(""), Fake::default());
    let out = agent.tool("snmpwalk", PUBLIC, &[".1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let varbinds = parse(&String::from_utf8_lossy(&out.stdout));
    let (last, values) = varbinds.split_last().unwrap();
    assert!(
        last.1.contains("No more variables left in this MIB View"),
        "the walk did not end at the end of the MIB: {last:?}"
    );
    for pair in values.windows(2) {
        assert!(
            arcs(&pair[0].0) < arcs(&pair[1].0),
            "not increasing: {} then {}",
            pair[0].0,
            pair[1].0
        );
    }
    let value = |oid: &str| {
        values
            .iter()
            .find(|(o, _)| o == oid)
            .unwrap_or_else(|| panic!("{oid} not walked"))
            .1
            .clone()
    };
    let column = |prefix: &str| -> Vec<String> {
        values
            .iter()
            .filter(|(o, _)| o.starts_with(&format!("{prefix}.")))
            .map(|(o, v)| format!("{} {v}", &o[prefix.len() + 1..]))
            .collect()
    };
    assert_eq!(
        column(IF_DESCR),
        [
            r#"1 STRING: "pf0 test port""#,
            r#"2 STRING: "pf1 test port""#,
            r#"10 STRING: "vf0 test port""#
        ]
    );
    assert_eq!(
        column(".1.3.6.1.2.1.31.1.1.1.15"),
        [
            "1 Gauge32: 100000",
            "2 Gauge32: 100000",
            "10 Gauge32: 100000"
        ]
    );
    assert_eq!(value(".1.3.6.1.2.1.2.2.1.5.1"), "Gauge32: 4294967295");
    assert_eq!(
        value(".1.3.6.1.2.1.2.2.1.6.2"),
        "Hex-STRING: 02 00 00 00 00 02"
    );
    assert_eq!(
        value(".1.3.6.1.2.1.31.1.1.1.18.10"),
        r#"STRING: "uplink 10""#
    );
    assert_eq!(value(DEVICE_GENERATION), "Counter64: 42");
    assert!(value(".1.3.6.1.4.1.32473.1.1.1.2.0").starts_with("Hex-STRING: AB AB"));
    assert_eq!(value(".1.3.6.1.4.1.32473.1.1.1.3.0"), "Gauge32: 1234");
    assert_eq!(value(".1.3.6.1.4.1.32473.1.1.1.10.0"), "INTEGER: 1");
    assert_eq!(value(FLEET_DEVICES), "Gauge32: 3");
    assert_eq!(value(".1.3.6.1.4.1.32473.1.1.2.2.0"), "Gauge32: 1");
    assert_eq!(value(".1.3.6.1.4.1.32473.1.1.2.3.0"), "Gauge32: 2");
    assert_eq!(
        column(".1.3.6.1.4.1.32473.1.1.2.5.1.3"),
        ["1 INTEGER: 1", "2 INTEGER: 2", "3 INTEGER: 5"]
    );
    assert_eq!(
        column(".1.3.6.1.4.1.32473.1.1.2.5.1.2"),
        [
            r#"1 STRING: "dpu-1""#,
            r#"2 STRING: "dpu-2""#,
            r#"3 STRING: "dpu-3""#
        ]
    );
    // Notification objects are not readable.
    assert!(column(".1.3.6.1.4.1.32473.1.1.3").is_empty());
    // async-snmp's own groups follow ours: snmpEngine.
    assert!(
        values
            .iter()
            .any(|(o, _)| o.starts_with(".1.3.6.1.6.3.10.2.1."))
    );
}

#[test]
fn a_restricted_community_sees_only_its_view() {
    if !have(&["snmpwalk", "snmpget"]) {
        return;
    }
    let agent = Agent::start(&config_yaml(""), Fake::default());
    let varbinds = agent.varbinds("snmpwalk", SYSONLY, &[".1"]);
    let (last, values) = varbinds.split_last().unwrap();
    assert!(last.1.contains("No more variables left"), "{last:?}");
    let oids: Vec<&str> = values.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(
        oids,
        (1..=7)
            .map(|i| format!(".1.3.6.1.2.1.1.{i}.0"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        agent.get(SYSONLY, IF_NUMBER),
        "No Such Object available on this agent at this OID"
    );
    assert_eq!(agent.get(SYSONLY, SYS_NAME), r#"STRING: "dpu-test""#);
}

#[test]
fn bulk_walk_and_bulk_get_with_max_repetitions() {
    if !have(&["snmpbulkwalk", "snmpbulkget", "snmpwalk"]) {
        return;
    }
    let agent = Agent::start(&config_yaml(""), Fake::default());
    let walk = agent.varbinds("snmpwalk", PUBLIC, &[PALISADE]);
    for repetitions in ["-Cr1", "-Cr5", "-Cr50"] {
        let bulk = agent.varbinds("snmpbulkwalk", PUBLIC, &[repetitions, PALISADE]);
        let oids = |v: &[(String, String)]| v.iter().map(|(o, _)| o.clone()).collect::<Vec<_>>();
        assert_eq!(oids(&bulk), oids(&walk), "{repetitions}");
    }

    // One non-repeater (the next after sysContact.0), then three rows of ifDescr.
    let bulk = agent.varbinds(
        "snmpbulkget",
        PUBLIC,
        &["-Cn1", "-Cr3", ".1.3.6.1.2.1.1.4.0", IF_DESCR],
    );
    let oids: Vec<&str> = bulk.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(
        oids,
        [
            SYS_NAME,
            ".1.3.6.1.2.1.2.2.1.2.1",
            ".1.3.6.1.2.1.2.2.1.2.2",
            ".1.3.6.1.2.1.2.2.1.2.10"
        ]
    );
    // One GETBULK reads one snapshot, though the counter moves at each snapshot.
    let sessions_active = ".1.3.6.1.4.1.32473.1.1.1.3.0";
    let bulk = agent.varbinds(
        "snmpbulkget",
        PUBLIC,
        &["-Cn0", "-Cr2", sessions_active, sessions_active],
    );
    let oids: Vec<&str> = bulk.iter().map(|(o, _)| o.as_str()).collect();
    let denied = ".1.3.6.1.4.1.32473.1.1.1.5.0";
    assert_eq!(oids, [SESSIONS_CREATED, SESSIONS_CREATED, denied, denied]);
    assert_eq!(bulk[0].1, bulk[1].1);
    let again = agent.varbinds("snmpbulkget", PUBLIC, &["-Cn0", "-Cr1", sessions_active]);
    assert!(counter64(&again[0].1) > counter64(&bulk[0].1));
}

#[test]
fn v3_users_at_their_security_level_and_view() {
    if !have(&["snmpget", "snmpwalk", "snmpbulkwalk"]) {
        return;
    }
    let agent = Agent::start(&config_yaml(""), Fake::default());
    assert_eq!(agent.get(&admin(), SYS_NAME), r#"STRING: "dpu-test""#);
    assert!(counter64(&agent.get(&admin(), IF_HC_IN_OCTETS_1)) > 1 << 32);
    let walk = agent.varbinds("snmpbulkwalk", &admin(), &["-Cr10", PALISADE]);
    assert!(walk.iter().any(|(o, _)| o == FLEET_DEVICES), "{walk:?}");

    // authNoPriv user, whose view leaves out the fleet group.
    assert_eq!(agent.get(&monitor(), SYS_NAME), r#"STRING: "dpu-test""#);
    let walk = agent.varbinds("snmpwalk", &monitor(), &[PALISADE]);
    assert!(walk.iter().any(|(o, _)| o == DEVICE_GENERATION), "{walk:?}");
    assert!(
        !walk
            .iter()
            .any(|(o, _)| o.starts_with(".1.3.6.1.4.1.32473.1.1.2")),
        "{walk:?}"
    );
    assert_eq!(
        agent.get(&monitor(), FLEET_DEVICES),
        "No Such Object available on this agent at this OID"
    );

    // A user with a privacy passphrase must use it.
    let downgraded = v3("admin", ["SHA", "admin-auth-1"], None);
    let out = agent.tool("snmpget", &downgraded, &[SYS_NAME]);
    assert!(!out.status.success());
    fails_with(&out, &["authorizationError"]);
}

#[test]
fn wrong_credentials_read_nothing() {
    if !have(&["snmpget"]) {
        return;
    }
    let agent = Agent::start(&config_yaml(""), Fake::default());
    let out = agent.tool("snmpget", &["-v2c", "-c", "wrong"], &[SYS_NAME]);
    assert!(!out.status.success());
    fails_with(&out, &["Timeout"]);
    assert!(out.stdout.is_empty());
    // SNMPv1 is not served, whatever the community.
    let out = agent.tool("snmpget", &["-v1", "-c", "public"], &[SYS_NAME]);
    assert!(!out.status.success());

    let bad_auth = v3("admin", ["SHA", "not-the-pass"], Some("admin-priv-1"));
    let out = agent.tool("snmpget", &bad_auth, &[SYS_NAME]);
    assert!(!out.status.success());
    fails_with(&out, &["Authentication failure", "Timeout"]);
    assert!(agent.handle().stats().wrong_digests >= 1);

    let bad_priv = v3("admin", ["SHA", "admin-auth-1"], Some("not-the-pass"));
    let out = agent.tool("snmpget", &bad_priv, &[SYS_NAME]);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("dpu-test"));

    let unknown_user = v3("mallory", ["SHA", "whatever-1"], None);
    let out = agent.tool("snmpget", &unknown_user, &[SYS_NAME]);
    assert!(!out.status.success());
    fails_with(&out, &["Unknown user name", "Timeout"]);
    assert!(agent.handle().stats().unknown_users >= 1);
}

#[test]
fn set_is_refused() {
    if !have(&["snmpset"]) {
        return;
    }
    let agent = Agent::start(&config_yaml(""), Fake::default());
    let out = agent.tool("snmpset", PUBLIC, &[SYS_NAME, "s", "renamed"]);
    assert!(!out.status.success());
    fails_with(&out, &["notWritable"]);
    let out = agent.tool(
        "snmpset",
        SYSONLY,
        &[".1.3.6.1.2.1.31.1.1.1.18.1", "s", "x"],
    );
    assert!(!out.status.success());
    fails_with(&out, &["noAccess"]);
    let out = agent.tool("snmpset", &admin(), &[DEVICE_GENERATION, "u", "1"]);
    assert!(!out.status.success());
    fails_with(&out, &["notWritable"]);
    assert_eq!(agent.get(PUBLIC, SYS_NAME), r#"STRING: "dpu-test""#);
}

#[test]
fn groups_left_out_answer_no_such_object() {
    if !have(&["snmpget", "snmpwalk"]) {
        return;
    }
    let agent = Agent::start(
        &config_yaml(""),
        Fake {
            bare: true,
            ..Fake::default()
        },
    );
    let no_object = "No Such Object available on this agent at this OID";
    assert_eq!(agent.get(PUBLIC, DEVICE_GENERATION), no_object);
    assert_eq!(agent.get(PUBLIC, FLEET_DEVICES), no_object);
    assert_eq!(agent.get(PUBLIC, IF_NUMBER), no_object);
    assert_eq!(
        agent.get(PUBLIC, ".1.3.6.1.2.1.1.5.7"),
        "No Such Instance currently exists at this OID"
    );
    let walk = agent.varbinds("snmpwalk", PUBLIC, &[".1.3.6.1.2.1"]);
    assert_eq!(walk.len(), 7, "{walk:?}");
}

/// A valid SNMPv2c GetRequest for sysName.0 with community "public", request-id 0x01020304.
const GET_SYS_NAME: [u8; 43] = [
    0x30, 0x29, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0, 0x1c, 0x02,
    0x04, 0x01, 0x02, 0x03, 0x04, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x30, 0x0c, 0x06,
    0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x05, 0x00, 0x05, 0x00,
];

#[test]
fn malformed_messages_are_counted_and_the_agent_keeps_answering() {
    let agent = Agent::start(&config_yaml(""), Fake::default());
    let target: SocketAddr = agent.handle().local_addr();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();

    // The hand-made request is answered: what follows breaks a valid message.
    socket.send_to(&GET_SYS_NAME, target).unwrap();
    let mut buf = [0u8; 2048];
    let (len, _) = socket.recv_from(&mut buf).unwrap();
    assert!(buf[..len].windows(8).any(|w| w == b"dpu-test"));

    let mut malformed: Vec<Vec<u8>> = Vec::new();
    // Every truncation.
    malformed.extend((1..GET_SYS_NAME.len()).map(|n| GET_SYS_NAME[..n].to_vec()));
    // Lengths that lie: longer than the datagram, indefinite, absurd.
    for (at, byte) in [
        (1, 0x7f),
        (1, 0x80),
        (1, 0x84),
        (14, 0xff),
        (28, 0x50),
        (32, 0x7f),
    ] {
        let mut m = GET_SYS_NAME.to_vec();
        m[at] = byte;
        malformed.push(m);
    }
    malformed.push(vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02, 0x01, 0x01]);
    // Not BER at all, and nesting deeper than any message.
    malformed.push(b"GET / HTTP/1.1\r\n\r\n".to_vec());
    malformed.push([0x30, 0x80].repeat(500));
    let expected = malformed.len() as u32;
    for m in &malformed {
        socket.send_to(m, target).unwrap();
    }
    // Random datagrams, from a fixed seed: counted or not, none may stop the agent.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2000 {
        let mut datagram = Vec::new();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 200) as usize;
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            datagram.push(state as u8);
        }
        if datagram.first() == Some(&0x30) {
            datagram[0] = 0x31;
        }
        socket.send_to(&datagram, target).unwrap();
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    while agent.handle().stats().malformed < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = agent.handle().stats();
    assert!(
        stats.malformed >= expected,
        "{} malformed messages counted, {expected} sent: {stats:?}",
        stats.malformed
    );
    // None of them was answered...
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        socket.recv_from(&mut buf).is_err(),
        "a malformed message was answered"
    );
    // ...and the agent still answers.
    socket.send_to(&GET_SYS_NAME, target).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let (len, _) = socket.recv_from(&mut buf).unwrap();
    assert!(buf[..len].windows(8).any(|w| w == b"dpu-test"));
    if have(&["snmpget"]) {
        assert_eq!(agent.get(PUBLIC, SYS_NAME), r#"STRING: "dpu-test""#);
    }
}

/// A UDP port free a moment ago, for snmptrapd.
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// snmptrapd on a free port, logging to its stdout.
struct TrapReceiver {
    child: Child,
    lines: mpsc::Receiver<String>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TrapReceiver {
    fn start(conf: &str) -> TrapReceiver {
        Self::start_on(conf, free_port())
    }

    fn start_on(conf: &str, port: u16) -> TrapReceiver {
        let dir = tempfile::tempdir().unwrap();
        let conf_file = dir.path().join("snmptrapd.conf");
        std::fs::write(&conf_file, conf).unwrap();
        let mut child = net_snmp_command("snmptrapd", dir.path())
            .args(["-f", "-Lo", "-C", "-X", "-n", "-c"])
            .arg(&conf_file)
            .arg(format!("udp:127.0.0.1:{port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let receiver = TrapReceiver {
            child,
            lines,
            port,
            _dir: dir,
        };
        receiver.wait_for("NET-SNMP version");
        receiver
    }

    /// The output up to and including the first line containing `text`.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = String::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                    if line.contains(text) {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("snmptrapd never printed {text:?}; it printed:\n{seen}");
    }
}

impl Drop for TrapReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send(agent: &Agent, notification: &Notification) {
    let report = agent
        .runtime
        .block_on(agent.handle().send_trap(notification));
    assert!(report.all_sent(), "{report:?}");
    assert_eq!(report.sinks.len(), 1);
}

/// Sends palisadeDeviceLost, and finds it with its object in the receiver's log.
fn device_lost_is_received(agent: &Agent, receiver: &TrapReceiver) {
    send(
        agent,
        &Notification::DeviceLost {
            device: "dpu-9".into(),
        },
    );
    let log = receiver.wait_for(".1.3.6.1.4.1.32473.1.0.3");
    assert!(
        log.contains(r#".1.3.6.1.4.1.32473.1.1.3.1.0 = STRING: "dpu-9""#),
        "{log}"
    );
}

#[test]
fn v2c_traps_reach_snmptrapd() {
    if !have(&["snmptrapd"]) {
        return;
    }
    let receiver = TrapReceiver::start("authCommunity log traps\n");
    let sinks = format!(
        "trap_sinks:\n  - {{ address: \"127.0.0.1:{}\", community: traps }}\n",
        receiver.port
    );
    let agent = Agent::start(&config_yaml(&sinks), Fake::default());

    send(
        &agent,
        &Notification::ApplyFailed {
            device: "dpu-7".into(),
            generation: 9,
            reason: "hardware table full".into(),
        },
    );
    let log = receiver.wait_for(".1.3.6.1.4.1.32473.1.0.1");
    for expected in [
        ".1.3.6.1.6.3.1.1.4.1.0 = OID: .1.3.6.1.4.1.32473.1.0.1",
        r#".1.3.6.1.4.1.32473.1.1.3.1.0 = STRING: "dpu-7""#,
        ".1.3.6.1.4.1.32473.1.1.3.2.0 = Counter64: 9",
        r#".1.3.6.1.4.1.32473.1.1.3.3.0 = STRING: "hardware table full""#,
        ".1.3.6.1.2.1.1.3.0 = Timeticks: ",
    ] {
        assert!(log.contains(expected), "{expected:?} not in:\n{log}");
    }

    send(
        &agent,
        &Notification::HardwareTableFull {
            device: "dpu-7".into(),
            used: 4096,
            capacity: 4096,
        },
    );
    let log = receiver.wait_for(".1.3.6.1.4.1.32473.1.0.2");
    assert!(
        log.contains(".1.3.6.1.4.1.32473.1.1.3.4.0 = Gauge32: 4096"),
        "{log}"
    );
    assert!(
        log.contains(".1.3.6.1.4.1.32473.1.1.3.5.0 = Gauge32: 4096"),
        "{log}"
    );

    device_lost_is_received(&agent, &receiver);
}

#[test]
fn v3_traps_reach_snmptrapd() {
    if !have(&["snmptrapd"]) {
        return;
    }
    // The receiver must know the agent's engine ID, so the agent starts first, with a
    // sink port reserved for the receiver.
    let port = free_port();
    let sinks = format!("trap_sinks:\n  - {{ address: \"127.0.0.1:{port}\", user: admin }}\n");
    let agent = Agent::start(&config_yaml(&sinks), Fake::default());
    let engine_id: String = agent
        .handle()
        .engine_id()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let conf = format!(
        "createUser -e 0x{engine_id} admin SHA admin-auth-1 AES admin-priv-1\n\
         authUser log admin priv\n"
    );
    let receiver = TrapReceiver::start_on(&conf, port);
    device_lost_is_received(&agent, &receiver);
}
