//! net_null ports on a real EAL: rx always delivers full bursts of 64-byte packets from the
//! port's pool, tx frees what it gets, and the port's counters agree with what we saw.

#[path = "common/eal.rs"]
mod common;
#[path = "common/frames.rs"]
mod frames;

use palisade_dpdk::{Mempool, MempoolConfig, Port, PortConfig, Vdev};

#[test]
fn null_port_counts_what_it_receives_and_sends() {
    let eal = common::eal();
    let config = MempoolConfig {
        capacity: 1023,
        cache_size: 0,
        ..MempoolConfig::default()
    };
    let pool = Mempool::create(eal, "null_pool", &config).expect("pool");
    let id = Vdev::Null.create(eal, "0").expect("net_null vdev");
    let mut port = Port::configure(id, &PortConfig::new(pool).queues(2, 2)).expect("configure");
    assert_eq!(port.info().expect("info").driver, "net_null");
    port.start().expect("start");

    let mut rx = Vec::with_capacity(Port::BURST);
    let mut received = 0;
    for round in 0..10u16 {
        let queue = round % 2;
        assert_eq!(
            port.rx_burst(queue, &mut rx),
            Port::BURST,
            "always a full burst"
        );
        assert!(rx.iter().all(|m| m.len() == 64));
        received += rx.len();
        // Send them back out on the other queue, rewritten as real frames.
        for (i, m) in rx.iter_mut().enumerate() {
            m.trim_back(64).expect("empty it");
            m.append(&frames::udp_frame(i as u32, 60)).expect("room");
        }
        assert_eq!(port.tx_burst(1 - queue, &mut rx), Port::BURST);
        assert!(rx.is_empty());
    }
    assert_eq!(pool.in_use(), 0, "tx freed every mbuf");

    // A Vec without spare capacity grows by one burst.
    let mut unsized_rx = Vec::new();
    assert_eq!(port.rx_burst(0, &mut unsized_rx), Port::BURST);
    received += unsized_rx.len();
    drop(unsized_rx);

    let stats = port.stats().expect("stats");
    assert_eq!(stats.rx_packets, received as u64);
    assert_eq!(stats.tx_packets, 10 * Port::BURST as u64);
    println!("net_null stats: {stats:?}");
}
