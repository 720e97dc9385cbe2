//! A throwaway `clickhouse-server` for one test: its own directory, free loopback ports, a
//! `default` user without a password, and a cluster of two shards on itself (one database
//! each); killed when dropped.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clickhouse::{Client, Compression};
use palisade_flows_clickhouse::Shard;

/// The cluster in the server's `remote_servers`.
pub const CLUSTER: &str = "palisade_two_shards";
/// Its shards' databases (each replica's `default_database`).
pub const SHARD_DATABASES: [&str; 2] = ["palisade_shard1", "palisade_shard2"];

/// A running server; killed on drop.
pub struct Server {
    child: Child,
    dir: tempfile::TempDir,
    http_port: u16,
}

/// Where the server binary is, if it is installed.
fn binary() -> Option<(PathBuf, Vec<&'static str>)> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    // Debian installs it under sbin, which a user's PATH may lack.
    dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from));
    for dir in &dirs {
        let server = dir.join("clickhouse-server");
        if server.is_file() {
            return Some((server, vec![]));
        }
    }
    dirs.iter()
        .map(|d| d.join("clickhouse"))
        .find(|p| p.is_file())
        .map(|p| (p, vec!["server"]))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn config(dir: &Path, http_port: u16, tcp_port: u16) -> String {
    let d = dir.display();
    let shards: String = SHARD_DATABASES
        .iter()
        .map(|db| {
            format!(
                "<shard><replica><host>127.0.0.1</host><port>{tcp_port}</port>\
                 <default_database>{db}</default_database></replica></shard>"
            )
        })
        .collect();
    format!(
        r#"<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>{d}/log/server.log</log>
    <errorlog>{d}/log/error.log</errorlog>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <remote_servers>
    <{CLUSTER}>{shards}</{CLUSTER}>
  </remote_servers>
</yandex>
"#
    )
}

const USERS: &str = r#"<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default></default></quotas>
</yandex>
"#;

impl Server {
    /// Starts a server and waits until it answers `SELECT 1` over HTTP; `None` (and a
    /// `!!! SKIPPED:` line) when ClickHouse is not installed.
    pub async fn start(test: &str) -> Option<Server> {
        let Some((binary, args)) = binary() else {
            // Straight to stderr, past the test harness's capture: a skip must be seen.
            let line = format!(
                "!!! SKIPPED: {test}: clickhouse-server is not installed \
                 (Debian: apt-get install clickhouse-server)\n"
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
            return None;
        };
        // A port taken between choosing and binding makes the server exit: try again.
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(&binary, &args).await {
                Ok(server) => return Some(server),
                Err(e) => last = e,
            }
        }
        panic!("{test}: clickhouse-server did not start: {last}");
    }

    async fn try_start(binary: &Path, args: &[&str]) -> Result<Server, String> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir_all(dir.path().join("log")).expect("log directory");
        let (http_port, tcp_port) = (free_port(), free_port());
        let config_path = dir.path().join("config.xml");
        std::fs::write(&config_path, config(dir.path(), http_port, tcp_port)).expect("config");
        std::fs::write(dir.path().join("users.xml"), USERS).expect("users.xml");
        let out = std::fs::File::create(dir.path().join("log/stdout")).expect("stdout file");
        let child = Command::new(binary)
            .args(args)
            .arg(format!("--config-file={}", config_path.display()))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("stdout file"))
            .stderr(out)
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let mut server = Server {
            child,
            dir,
            http_port,
        };
        let client = server.client();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("it exited ({status}): {}", server.logs()));
            }
            if let Ok(1u8) = client.query("SELECT 1").fetch_one().await {
                return Ok(server);
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!("no answer within 60 s: {}", server.logs()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn logs(&self) -> String {
        ["log/stdout", "log/error.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Its HTTP interface.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// A client for looking at tables directly.
    pub fn client(&self) -> Client {
        Client::default()
            .with_url(self.url())
            .with_compression(Compression::None)
            .with_validation(false)
    }

    /// The two shards of [`CLUSTER`].
    pub fn shards(&self) -> Vec<Shard> {
        SHARD_DATABASES
            .iter()
            .map(|db| Shard {
                url: self.url(),
                database: db.to_string(),
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
