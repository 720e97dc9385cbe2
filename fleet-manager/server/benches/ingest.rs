//! `ingest` benchmark (see shared/design/BENCHMARKS.md): IPFIX session records at full
//! speed into the fleet manager's collector, against nfcapd (nfdump) ingesting the same
//! stream, in the same run (interleaved A B A B, medians); the same with the manager's
//! store in ClickHouse when `clickhouse-server` is installed; then the latency of the top
//! tag pairs query over many stored records.
//!
//! # The model
//!
//! The records are sessions between 240 workloads (4 applications x 3 tiers x 20) of an
//! inventory the manager knows, so each record is enriched with both ends' tags before it
//! is stored. They are encoded once (our exporter, 1,400-byte messages) and the same
//! datagrams are sent, as fast as one thread can, over loopback to each collector: the
//! fleet manager (`serve::start` in this process, `--ipfix-listen`, embedded store) and
//! `nfcapd` (its own process, writing its files). A side's time runs from the first
//! datagram to the last record it stored (ours: the store's count; nfcapd: its socket
//! drained); records/s is what it stored over that time, and what it lost is reported.
//! Before the rounds, a smaller stream checks that both store every record sent (ours with
//! the tags of both ends, nfcapd per `nfdump`).
//!
//! The query figure: `INGEST_QUERY_RECORDS` (default 10M) enriched flows appended to a
//! fresh embedded store (and to ClickHouse), then totals grouped by
//! `src.application,src.tier,dst.application,dst.tier`, the top 10 by bytes, median of 3.
//!
//! Run: `cargo bench -p palisade-server --bench ingest`; `INGEST_RECORDS` (default 1M),
//! `INGEST_ROUNDS` (default 5) and `INGEST_QUERY_RECORDS` make it shorter;
//! `INGEST_CLICKHOUSE=0` leaves ClickHouse out (for profiling our side). Results: a
//! table on stdout, progress on stderr, JSON lines in `target/bench/ingest.jsonl`.

#[path = "../../flows-clickhouse/tests/server/mod.rs"]
#[allow(dead_code)]
mod clickhouse_server;
mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail, ensure};
use common::{env_number, median};
use palisade_flow::{FlowRecord, RecordKind, Verdict};
use palisade_flows::query::parse_group_by;
use palisade_flows::{EmbeddedStore, Flow, FlowStore, Query};
use palisade_intent::lang;
use palisade_inventory::Inventory;
use palisade_ipfix::{Exporter, ExporterConfig};
use palisade_server::fleet::FleetConfig;
use palisade_server::serve::{Running, ServeConfig, TelemetryConfig, start};

const APPS: [&str; 4] = ["shop", "billing", "crm", "hr"];
const TIERS: [&str; 3] = ["web", "app", "db"];
const PER: usize = 20;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Workload `k`'s address.
fn address(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 50, (k / 200) as u8, (k % 200) as u8 + 10)
}

fn workloads() -> usize {
    APPS.len() * TIERS.len() * PER
}

/// The intent (tags) and inventory the manager enriches with.
fn intent_and_inventory() -> (String, String) {
    let mut pal = String::new();
    for a in APPS {
        pal.push_str(&format!("tag application={a}\n"));
    }
    for t in TIERS {
        pal.push_str(&format!("tag tier={t}\n"));
    }
    let mut inv = String::from("devices: [{name: dpu-1}]\nprojects: [{name: lab}]\nworkloads:\n");
    for k in 0..workloads() {
        let (a, t) = (APPS[k % APPS.len()], TIERS[(k / APPS.len()) % TIERS.len()]);
        inv.push_str(&format!(
            "  - {{name: w{k}, project: lab, tags: [application={a}, tier={t}], interfaces: [{{addresses: [{}], device: dpu-1}}]}}\n",
            address(k)
        ));
    }
    (pal, inv)
}

/// `n` session records among the workloads, ending around `at_ms`.
fn records(n: usize, at_ms: i64) -> Vec<FlowRecord> {
    let w = workloads();
    (0..n)
        .map(|i| {
            let (s, d) = (i % w, (i * 7 + 3) % w);
            FlowRecord {
                device: "dpu-1".into(),
                kind: RecordKind::End,
                end_reason: None,
                src: IpAddr::V4(address(s)),
                dst: IpAddr::V4(address(d)),
                protocol: 6,
                src_port: 1024 + (i % 60000) as u16,
                dst_port: [443, 8080, 5432][i % 3],
                start_ms: at_ms - 1_000,
                end_ms: at_ms - (i % 500) as i64,
                packets: 10 + (i % 7) as u64,
                bytes: 1_500 + (i % 900) as u64,
                rev_packets: 8,
                rev_bytes: 9_000,
                verdict: if i % 11 == 0 {
                    Verdict::Denied
                } else {
                    Verdict::Allowed
                },
                rule: format!("lab/policy/{:04}", i % 40).into(),
                generation: 3,
            }
        })
        .collect()
}

fn encode(records: &[FlowRecord]) -> Result<Vec<Vec<u8>>> {
    let mut exporter = Exporter::new(ExporterConfig::default())?;
    let mut out = Vec::new();
    for chunk in records.chunks(1_000) {
        out.extend(exporter.encode(chunk, now_ms()));
    }
    Ok(out)
}

fn blast(datagrams: &[Vec<u8>], port: u16) -> Result<Instant> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let started = Instant::now();
    for d in datagrams {
        socket.send_to(d, ("127.0.0.1", port))?;
    }
    Ok(started)
}

/// Bytes waiting in the receive queue of a loopback UDP socket.
fn udp_backlog(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().find_map(|line| {
        let columns: Vec<&str> = line.split_whitespace().collect();
        if columns.get(1) != Some(&local.as_str()) {
            return None;
        }
        let (_, rx) = columns.get(4)?.split_once(':')?;
        u64::from_str_radix(rx, 16).ok()
    })
}

fn free_udp_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One side's run: records stored, seconds.
#[derive(Clone, Copy, Debug)]
struct Run {
    stored: u64,
    seconds: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.stored as f64 / self.seconds
    }
}

/// The fleet manager with its collector.
struct Manager {
    running: Running,
    port: u16,
    _dir: tempfile::TempDir,
}

async fn manager(store: Option<Arc<dyn FlowStore>>) -> Result<Manager> {
    let dir = tempfile::tempdir()?;
    let port = free_udp_port()?;
    let running = start(ServeConfig {
        data: dir.path().to_path_buf(),
        grpc_listen: "127.0.0.1:0".parse()?,
        http_listen: None,
        hosts: vec![],
        server_cert_validity: palisade_server::serve::SERVER_CERT_VALIDITY,
        fleet: FleetConfig::default(),
        telemetry: TelemetryConfig {
            store,
            ipfix_listen: Some(format!("127.0.0.1:{port}").parse()?),
            ..TelemetryConfig::default()
        },
        snmp: None,
    })
    .await?;
    let (pal, inv) = intent_and_inventory();
    let objects = lang::parse(&pal)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .into_objects();
    let inventory: Inventory = serde_saphyr::from_str(&inv)?;
    let core = Arc::clone(&running.core);
    let effects = running
        .core
        .with_fleet(move |f| -> Result<_, palisade_server::fleet::FleetError> {
            let a = f.apply(objects, vec![], false)?;
            let (_, b) =
                f.apply_inventory(inventory.devices, inventory.projects, inventory.workloads)?;
            Ok((a.effects, b))
        })
        .await
        .map_err(|s| anyhow::anyhow!("{s}"))??;
    core.apply_effects(effects.0);
    core.apply_effects(effects.1);
    Ok(Manager {
        running,
        port,
        _dir: dir,
    })
}

impl Manager {
    fn datagrams(&self) -> u64 {
        self.running
            .core
            .telemetry
            .stats
            .datagrams
            .load(Ordering::Relaxed)
    }

    fn stored(&self) -> u64 {
        self.running
            .core
            .telemetry
            .stats
            .records
            .load(Ordering::Relaxed)
    }

    /// Sends `datagrams` of `expected` records; waits until the count stops moving.
    async fn run(&self, datagrams: &[Vec<u8>], expected: u64) -> Result<Run> {
        let before = self.stored();
        let datagrams_before = self.datagrams();
        let started = blast(datagrams, self.port)?;
        let mut last = (before, Instant::now());
        let mut received = (datagrams_before, Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let now = self.stored();
            if now != last.0 {
                last = (now, Instant::now());
            }
            let d = self.datagrams();
            if d != received.0 {
                received = (d, Instant::now());
            }
            if now - before >= expected || last.1.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        eprintln!(
            "  palisade: last datagram read after {:.3} s, last record stored after {:.3} s",
            (received.1 - started).as_secs_f64(),
            (last.1 - started).as_secs_f64()
        );
        Ok(Run {
            stored: last.0 - before,
            seconds: (last.1 - started).as_secs_f64(),
        })
    }
}

/// nfcapd on a fresh directory; the run; the number of flows nfdump reads back.
fn nfcapd_run(datagrams: &[Vec<u8>], expected: u64) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let port = free_udp_port()?;
    let mut child = Command::new("/usr/bin/nfcapd")
        .args([
            "-w",
            dir.path().to_str().context("utf-8 path")?,
            "-b",
            "127.0.0.1",
        ])
        .args(["-t", "3600", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting nfcapd")?;
    let stderr = child.stderr.take().context("nfcapd's stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("Startup") => break,
            Some(_) => {}
            None => bail!("nfcapd did not start"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let started = blast(datagrams, port)?;
    let sent = started.elapsed().as_secs_f64();
    // Done when its socket is drained and stays so.
    let mut drained = None;
    loop {
        std::thread::sleep(Duration::from_millis(5));
        match udp_backlog(port) {
            Some(0) | None => {
                let at = *drained.get_or_insert_with(Instant::now);
                if at.elapsed() > Duration::from_millis(300) {
                    break;
                }
            }
            Some(_) => drained = None,
        }
    }
    let seconds = (drained.context("drained")? - started).as_secs_f64();
    eprintln!("  nfcapd: the sender took {sent:.3} s, the socket was drained after {seconds:.3} s");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    child.wait()?;
    let out = Command::new("/usr/bin/nfdump")
        .args([
            "-R",
            dir.path().to_str().context("utf-8 path")?,
            "-q",
            "-o",
            "csv",
        ])
        .output()?;
    let stored = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(char::is_numeric))
        .count() as u64;
    ensure!(stored <= expected, "nfdump read {stored} of {expected}");
    Ok(Run { stored, seconds })
}

fn cpu() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("unknown CPU", |m| m.trim_start_matches([' ', '\t', ':']));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model}, {cores} cores")
}

fn nfdump_version() -> String {
    Command::new("/usr/bin/nfdump")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Enriched flows for the query figure (tags as the manager attaches them: one shared copy
/// per workload).
fn query_flows(n: usize, at_ms: i64) -> Vec<Flow> {
    let w = workloads();
    let ends: Vec<(Arc<str>, Arc<[String]>)> = (0..w)
        .map(|k| {
            (
                format!("lab/w{k}/eth0").into(),
                [
                    format!("application={}", APPS[k % APPS.len()]),
                    format!("tier={}", TIERS[(k / APPS.len()) % TIERS.len()]),
                ]
                .into(),
            )
        })
        .collect();
    records(n, at_ms)
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let (s, d) = (&ends[i % w], &ends[(i * 7 + 3) % w]);
            Flow {
                record: r,
                src_endpoint: Arc::clone(&s.0),
                dst_endpoint: Arc::clone(&d.0),
                src_tags: Arc::clone(&s.1),
                dst_tags: Arc::clone(&d.1),
            }
        })
        .collect()
}

/// Single-thread cost per record of each stage on our side (decode, enrich, store),
/// printed so a change can be traced to the stage it moved.
async fn stage_costs(records: &[FlowRecord], datagrams: &[Vec<u8>]) -> Result<[f64; 3]> {
    let from: std::net::SocketAddr = "127.0.0.1:4739".parse()?;
    // Timed: into one buffer emptied every batch, as the collector's thread reuses the
    // buffers the store hands back (fresh ones would time the kernel's page faults).
    let mut collector = palisade_ipfix::Collector::default();
    let mut pending = Vec::with_capacity(8192);
    let t = Instant::now();
    for d in datagrams {
        collector.decode_into(from, d, now_ms(), &mut pending)?;
        if pending.len() >= 8192 {
            pending.clear();
        }
    }
    let decode = t.elapsed().as_secs_f64();
    drop(pending);
    let mut decoded = Vec::with_capacity(records.len());
    let mut collector = palisade_ipfix::Collector::default();
    for d in datagrams {
        collector.decode_into(from, d, now_ms(), &mut decoded)?;
    }
    let n_records = records.len();
    ensure!(
        decoded.len() == n_records,
        "decoded {} of {n_records}",
        decoded.len()
    );
    let mut view = palisade_flows::enrich::View::default();
    for k in 0..workloads() {
        view.insert(
            IpAddr::V4(address(k)),
            Arc::new(palisade_flows::enrich::End {
                endpoint: format!("lab/w{k}/eth0").into(),
                tags: [
                    format!("application={}", APPS[k % APPS.len()]),
                    format!("tier={}", TIERS[(k / APPS.len()) % TIERS.len()]),
                ]
                .into(),
            }),
        );
    }
    let mut enricher = palisade_flows::Enricher::new();
    enricher.update(0, view);
    let enricher = Arc::new(std::sync::RwLock::new(enricher));
    let dir = tempfile::tempdir()?;
    let store = EmbeddedStore::open(&dir.path().join("stages.redb"))?;
    let mut records = decoded;
    let t = Instant::now();
    let mut cpu = 0.0;
    while !records.is_empty() {
        // From the end: only the batch is moved (splitting off the rest from the front
        // moved every remaining record each time, and counted it as the store's cost).
        let batch = records.split_off(records.len().saturating_sub(131_072));
        let c = thread_cpu_seconds();
        store.append_records(batch, Arc::clone(&enricher)).await?;
        cpu += thread_cpu_seconds() - c;
    }
    let store_s = t.elapsed().as_secs_f64();
    let n = n_records as f64;
    Ok([decode / n, store_s / n, cpu / n].map(|s| s * 1e9))
}

/// CPU time of the process so far (all threads), seconds.
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

async fn query_figure(store: &dyn FlowStore, n: usize, name: &str) -> Result<(f64, f64)> {
    let at = now_ms();
    let started = Instant::now();
    for chunk in (0..n).step_by(100_000) {
        let flows = query_flows((n - chunk).min(100_000), at);
        store.append(flows).await?;
    }
    let load = started.elapsed().as_secs_f64();
    let q = Query {
        from_ms: 0,
        to_ms: i64::MAX,
        group_by: parse_group_by("src.application,src.tier,dst.application,dst.tier")
            .map_err(anyhow::Error::msg)?,
        limit: 10,
        ..Query::default()
    };
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let rows = store.aggregate(&q).await?;
        times.push(t.elapsed().as_secs_f64());
        let total: u64 = store
            .aggregate(&Query {
                group_by: vec![],
                ..q.clone()
            })
            .await?
            .first()
            .map_or(0, |r| r.records);
        ensure!(total == n as u64, "{name}: {total} records stored of {n}");
        ensure!(!rows.is_empty(), "{name}: no rows");
    }
    Ok((load, median(times)))
}

#[tokio::main]
async fn main() -> Result<()> {
    let n = env_number("INGEST_RECORDS", 1_000_000)?;
    let rounds = env_number("INGEST_ROUNDS", 5)?.max(1);
    let q = env_number("INGEST_QUERY_RECORDS", 10_000_000)?;
    ensure!(
        Path::new("/usr/bin/nfcapd").exists(),
        "/usr/bin/nfcapd is missing: install Debian's nfdump"
    );
    let cpu = cpu();
    let version = nfdump_version();
    eprintln!("ingest: {n} records x {rounds} rounds; {cpu}; {version}");
    let ours = manager(None).await?;
    // Records are tagged as of their own time: make them after the inventory's commit.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let all = records(n, now_ms());
    let datagrams = encode(&all)?;
    eprintln!("{} datagrams", datagrams.len());
    let stages = stage_costs(&all, &datagrams).await?;
    eprintln!(
        "stage costs: decode {:.0} ns/record (one thread); enrich + store {:.0} ns/record, of which CPU {:.0}",
        stages[0], stages[1], stages[2]
    );
    if std::env::var("INGEST_STAGES_ONLY").is_ok_and(|v| v == "1") {
        return Ok(());
    }

    // Correctness first, on a stream the receivers cannot fall behind on.
    let check = records(20_000, now_ms());
    let check_datagrams = encode(&check)?;
    let paced = |d: &[Vec<u8>], port: u16| -> Result<()> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        for (i, m) in d.iter().enumerate() {
            socket.send_to(m, ("127.0.0.1", port))?;
            if i % 20 == 19 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    };
    paced(&check_datagrams, ours.port)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while ours.stored() < check.len() as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(
        ours.stored() == check.len() as u64,
        "the manager stored {} of {}",
        ours.stored(),
        check.len()
    );
    let sample = ours
        .running
        .core
        .telemetry
        .store
        .flows(
            &Query {
                from_ms: 0,
                to_ms: i64::MAX,
                ..Query::default()
            },
            100,
        )
        .await?;
    ensure!(
        sample
            .iter()
            .all(|f| f.src_tags.len() == 2 && f.dst_tags.len() == 2),
        "records were not enriched with both ends' tags"
    );
    let nf = nfcapd_run(&check_datagrams, check.len() as u64)?;
    eprintln!(
        "correctness: the manager stored {} of {} with tags; nfcapd {} (unpaced)",
        ours.stored(),
        check.len(),
        nf.stored
    );

    let mut results: Vec<(String, Vec<Run>)> = vec![
        ("palisade (embedded)".into(), Vec::new()),
        ("nfcapd".into(), Vec::new()),
    ];
    for r in 0..rounds {
        let a = ours.run(&datagrams, n as u64).await?;
        let b = nfcapd_run(&datagrams, n as u64)?;
        eprintln!(
            "round {}: palisade {:.0}/s ({} stored), nfcapd {:.0}/s ({} stored)",
            r + 1,
            a.rate(),
            a.stored,
            b.rate(),
            b.stored
        );
        results[0].1.push(a);
        results[1].1.push(b);
    }
    ours.running.shutdown().await;

    // ClickHouse, when installed.
    let ch = if std::env::var("INGEST_CLICKHOUSE").is_ok_and(|v| v == "0") {
        eprintln!("INGEST_CLICKHOUSE=0: ClickHouse left out");
        None
    } else {
        clickhouse_server::Server::start("ingest bench").await
    };
    let mut ch_query = None;
    if let Some(server) = &ch {
        let store = palisade_flows_clickhouse::ClickHouseStore::open(
            &palisade_flows_clickhouse::Config::new(server.url()),
        )
        .await?;
        let m = manager(Some(Arc::new(store))).await?;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let datagrams = encode(&records(n, now_ms()))?;
        let mut runs = Vec::new();
        for r in 0..rounds.min(3) {
            let a = m.run(&datagrams, n as u64).await?;
            eprintln!(
                "round {}: palisade (ClickHouse) {:.0}/s ({} stored)",
                r + 1,
                a.rate(),
                a.stored
            );
            runs.push(a);
        }
        results.push(("palisade (ClickHouse)".into(), runs));
        m.running.shutdown().await;
        let mut cfg = palisade_flows_clickhouse::Config::new(server.url());
        cfg.database = "query".into();
        let store = palisade_flows_clickhouse::ClickHouseStore::open(&cfg).await?;
        ch_query = Some(query_figure(&store, q, "ClickHouse").await?);
    }

    let dir = tempfile::tempdir()?;
    let embedded = EmbeddedStore::open(&dir.path().join("query.redb"))?;
    let embedded_query = query_figure(&embedded, q, "embedded").await?;

    let nf_rate = median(results[1].1.iter().map(Run::rate).collect());
    let mut table = String::new();
    table.push_str(&format!(
        "ingest: {n} IPFIX records at full speed over loopback, {rounds} rounds (median); {cpu}; {version}\n"
    ));
    table.push_str(&format!(
        "{:<24} {:>12} {:>10} {:>12}\n",
        "receiver", "records/s", "stored %", "vs nfcapd"
    ));
    let mut json = Vec::new();
    for (name, runs) in &results {
        let rate = median(runs.iter().map(Run::rate).collect());
        let stored = median(runs.iter().map(|r| r.stored as f64).collect());
        table.push_str(&format!(
            "{:<24} {:>12.0} {:>9.1}% {:>11.2}x\n",
            name,
            rate,
            100.0 * stored / n as f64,
            rate / nf_rate
        ));
        json.push(
            serde_json::json!({"bench": "ingest", "receiver": name, "records": n,
            "rounds": runs.len(), "records_per_s": rate, "stored_fraction": stored / n as f64,
            "ratio_to_nfcapd": rate / nf_rate, "cpu": cpu, "peer": version}),
        );
    }
    table.push_str(&format!(
        "top tag pairs over {q} records: embedded {:.2} s (load {:.1} s)",
        embedded_query.1, embedded_query.0
    ));
    if let Some((load, t)) = ch_query {
        table.push_str(&format!("; ClickHouse {t:.2} s (load {load:.1} s)"));
    }
    table.push('\n');
    json.push(
        serde_json::json!({"bench": "ingest", "query": "top tag pairs", "records": q,
        "embedded_s": embedded_query.1, "clickhouse_s": ch_query.map(|c| c.1)}),
    );
    print!("{table}");
    std::fs::create_dir_all("target/bench")?;
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("target/bench/ingest.jsonl")?;
    for j in json {
        writeln!(out, "{j}")?;
    }
    drop(ch);
    Ok(())
}
