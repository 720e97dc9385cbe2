//! `ring_forward` benchmark (see shared/design/BENCHMARKS.md): the cost of this crate's
//! burst path. One net_ring port, one core, io forwarding (rx burst -> tx burst on the same
//! queue, packets untouched) with 32 packets circulating, against DPDK's own `dpdk-testpmd
//! --forward-mode=io` on the same vdev in the same run (interleaved, median of 5). Both
//! forward on lcore 1.
//!
//! net_ring moves pointers through an in-memory ring, so this measures the per-burst
//! overhead of the two programs (the shim calls, the `Vec<Mbuf>` handling), not a NIC.
//!
//! Run: `cargo bench -p palisade-dpdk --bench ring_forward` (`-- --quick`: 3 rounds of 1 s).
//! Needs `dpdk-testpmd` (Debian package `dpdk-dev`) for the peer; without it only our
//! figure is printed. Results: a table on stdout and JSON lines in
//! `target/bench/ring_forward.jsonl`.

use std::io::Write as _;
use std::time::{Duration, Instant};

use palisade_dpdk::{Eal, Mbuf, Mempool, MempoolConfig, Port, PortConfig, Vdev};

#[path = "support/peer.rs"]
mod peer;
use peer::{cpu, median, testpmd, testpmd_version};

/// Packets per burst, and packets circulating (testpmd's `--tx-first` sends one burst).
const BURST: usize = 32;

/// Forwards for `duration` on `port`; returns packets per second.
fn forward(port: &mut Port, burst: &mut Vec<Mbuf>, duration: Duration) -> f64 {
    let start = Instant::now();
    let mut packets = 0u64;
    loop {
        // Read the clock once per 1024 bursts: it costs more than a burst.
        for _ in 0..1024 {
            packets += port.rx_burst(0, burst) as u64;
            port.tx_burst(0, burst);
            burst.clear();
        }
        let elapsed = start.elapsed();
        if elapsed >= duration {
            return packets as f64 / elapsed.as_secs_f64();
        }
    }
}

/// One testpmd run on its own EAL (lcore 0 reports, lcore 1 forwards); the median of its
/// per-second Rx-pps samples after the first (which includes start-up).
fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, seconds) = if quick { (3, 1) } else { (5, 2) };

    // Lcore 0 (this thread, pinned to CPU 0) forwards; testpmd forwards on its lcore 1.
    let eal = Eal::init(Eal::SOFTWARE_ONLY.iter().chain(&["-l", "1"])).expect("EAL");
    let pool = Mempool::create(eal, "bench", &MempoolConfig::default()).expect("pool");
    let id = Vdev::Ring.create(eal, "bench").expect("net_ring vdev");
    let mut port = Port::configure(id, &PortConfig::new(pool)).expect("configure");
    port.start().expect("start");

    // Correctness first: what goes around comes back intact.
    let mut burst: Vec<Mbuf> = (0..BURST)
        .map(|i| {
            let mut m = pool.alloc().expect("mbuf");
            m.append(&[i as u8; 64]).expect("room");
            m
        })
        .collect();
    assert_eq!(port.tx_burst(0, &mut burst), BURST);
    assert_eq!(port.rx_burst(0, &mut burst), BURST);
    for (i, m) in burst.iter().enumerate() {
        assert_eq!(m.data(), [i as u8; 64], "packet {i} came back changed");
    }
    assert_eq!(port.tx_burst(0, &mut burst), BURST, "the packets circulate");
    forward(&mut port, &mut burst, Duration::from_millis(200));
    assert_eq!(pool.in_use() as usize, BURST, "no packet lost or leaked");

    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    let mut peer_error = None;
    for round in 0..rounds {
        ours.push(forward(&mut port, &mut burst, Duration::from_secs(seconds)));
        if peer_error.is_none() {
            match testpmd(seconds) {
                Ok(pps) => peer.push(pps),
                Err(e) => peer_error = Some(e),
            }
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }
    let ours = median(ours);
    let peer = (!peer.is_empty()).then(|| median(peer));

    println!(
        "\nring_forward: net_ring io-forward, burst {BURST}, one core, median of {rounds} x {seconds} s"
    );
    println!("cpu: {}; DPDK {}", cpu(), testpmd_version());
    println!("{:<34} {:>10}", "forwarder", "Mpps");
    println!(
        "{:<34} {:>10.1}",
        "palisade-dpdk (Port rx/tx_burst)",
        ours / 1e6
    );
    match (peer, &peer_error) {
        (Some(p), _) => {
            println!("{:<34} {:>10.1}", "dpdk-testpmd --forward-mode=io", p / 1e6);
            println!("ratio palisade-dpdk / testpmd: {:.2}", ours / p);
        }
        (None, Some(e)) => println!("dpdk-testpmd: not measured: {e}"),
        (None, None) => {}
    }

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("ring_forward.jsonl"))
        .expect("ring_forward.jsonl");
    let peer_json = peer.map_or("null".to_owned(), |p| format!("{p:.0}"));
    writeln!(
        out,
        r#"{{"bench":"ring_forward","burst":{BURST},"rounds":{rounds},"seconds":{seconds},"ours_pps":{ours:.0},"testpmd_pps":{peer_json},"dpdk":"{}","cpu":"{}"}}"#,
        testpmd_version(),
        cpu()
    )
    .expect("write results");
}
