//! Real processes for control-plane tests: a `fleet-manager serve` on a temp data directory
//! and free loopback port, `vrouter agent`s, and the CLI pointed at them.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The `fleet-manager` binary under test.
pub fn fleet_manager() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fleet-manager"))
}

/// The `vrouter` binary beside it. `cargo test --workspace` builds it; a binary older than
/// the sources it is built from fails the test instead of testing stale code.
pub fn vrouter() -> PathBuf {
    palisade_hil::binaries().unwrap_or_else(|e| panic!("{e}")).1
}

/// The repository's examples.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// A child process killed when dropped, with its standard error in a file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{} ignored SIGTERM",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running fleet manager.
pub struct Manager {
    pub proc: Proc,
    pub data: PathBuf,
    pub url: String,
    pub port: u16,
    pub ca: PathBuf,
    pub token_file: PathBuf,
}

impl Manager {
    /// Starts `fleet-manager serve` on `data`, on `port` (0: any free one).
    pub fn start(data: &Path, port: u16, extra: &[&str]) -> Manager {
        std::fs::create_dir_all(data).unwrap();
        let log = data.with_extension(format!("serve-{port}.log"));
        let mut child = Command::new(fleet_manager())
            .args(["serve", "--data"])
            .arg(data)
            .args(["--grpc-listen", &format!("127.0.0.1:{port}"), "--no-http"])
            .args(["--output", "json"])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let proc = Proc { child, log };
        assert!(
            !line.is_empty(),
            "the manager did not start:\n{}",
            proc.log()
        );
        let report: serde_json::Value = serde_json::from_str(&line).unwrap();
        let url = report["grpc"].as_str().unwrap().to_string();
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        Manager {
            proc,
            data: data.to_path_buf(),
            url,
            port,
            ca: PathBuf::from(report["ca"].as_str().unwrap()),
            token_file: PathBuf::from(report["admin_token_file"].as_str().unwrap()),
        }
    }

    /// Runs a client command against this manager.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(fleet_manager())
            .args(args)
            .arg("--server")
            .arg(&self.url)
            .arg("--ca")
            .arg(&self.ca)
            .arg("--token-file")
            .arg(&self.token_file)
            .env_remove("PALISADE_SERVER")
            .env_remove("PALISADE_CA")
            .env_remove("PALISADE_TOKEN_FILE")
            .env_remove("PALISADE_TOKEN")
            .output()
            .unwrap()
    }

    /// Runs a client command that must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "fleet-manager {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Like [`Manager::ok`] with `--output json`, parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.extend(["--output", "json"]);
        serde_json::from_str(self.ok(&args).trim()).unwrap()
    }

    /// A one-time token for `device`.
    pub fn token(&self, device: &str) -> String {
        self.ok(&["token", "create", "--device", device])
            .trim()
            .to_string()
    }

    /// Devices by name.
    pub fn devices(&self) -> Vec<serde_json::Value> {
        self.json(&["devices"])["devices"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// One device's state.
    pub fn device(&self, name: &str) -> serde_json::Value {
        self.devices()
            .into_iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no device {name}"))
    }
}

/// Starts `vrouter agent` for `name` with state in `state`.
pub fn agent(m: &Manager, name: &str, state: &Path, token: Option<&str>) -> Proc {
    agent_to(&m.url, &m.ca, name, state, token, &[])
}

/// Starts `vrouter agent` against any manager URL and CA.
pub fn agent_to(
    url: &str,
    ca: &Path,
    name: &str,
    state: &Path,
    token: Option<&str>,
    extra: &[&str],
) -> Proc {
    let log = state.with_extension(format!(
        "agent-{}.log",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let mut cmd = Command::new(vrouter());
    cmd.args(["agent", "--manager", url, "--ca"])
        .arg(ca)
        .args(["--name", name, "--state"])
        .arg(state)
        .args(["--status-every", "1"])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    Proc {
        child: cmd.spawn().unwrap(),
        log,
    }
}

/// Polls `f` until it holds; fails with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub use palisade_hil::base64;

/// A hash from proto3 JSON, as `sha256:<hex>`.
pub fn hash_of(v: &serde_json::Value) -> String {
    let bytes = base64(v.as_str().unwrap_or(""));
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Whether every named device is connected and has acked what the manager wants it to run.
pub fn in_sync(m: &Manager, names: &[&str]) -> bool {
    let devices = m.devices();
    names.iter().all(|n| {
        devices.iter().any(|d| {
            d["name"] == *n
                && d["connected"] == true
                && d["desiredHash"].is_string()
                && d["desiredHash"] == d["ackedHash"]
        })
    })
}

/// The program a device stored in its state directory: (generation, hash).
pub fn stored_program(state: &Path) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(state.join("program.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some((v["generation"].as_u64()?, v["hash"].as_str()?.to_string()))
}

/// A proto3 JSON uint64 (a string) or a plain number; 0 when absent.
pub fn u64_of(v: &serde_json::Value) -> u64 {
    match v {
        serde_json::Value::String(s) => s.parse().unwrap_or_else(|_| panic!("not a number: {s}")),
        serde_json::Value::Number(n) => n.as_u64().unwrap(),
        serde_json::Value::Null => 0,
        other => panic!("not a number: {other}"),
    }
}
