//! net_ring ports on a real EAL: real frames sent on a tx queue come back on the matching
//! rx queue, byte for byte; a full ring hands unsent mbufs back; counters, link, MAC,
//! promiscuous mode, and the exclusive ownership of a port.

#[path = "common/eal.rs"]
mod common;
#[path = "common/frames.rs"]
mod frames;

use palisade_dpdk::{Error, Mbuf, Mempool, MempoolConfig, Port, PortConfig, Vdev};

fn pool(name: &str) -> Mempool {
    let config = MempoolConfig {
        capacity: 4095,
        cache_size: 0,
        ..MempoolConfig::default()
    };
    Mempool::create(common::eal(), name, &config).expect("pool")
}

fn frames_in(pool: Mempool, seqs: std::ops::Range<u32>) -> Vec<Mbuf> {
    seqs.map(|seq| {
        let mut m = pool.alloc().expect("mbuf");
        m.append(&frames::udp_frame(seq, 18 + seq as usize))
            .expect("room");
        m
    })
    .collect()
}

#[test]
fn a_burst_of_frames_loops_back_on_the_same_queue() {
    let eal = common::eal();
    let pool = pool("ring_loop");
    let id = Vdev::Ring.create(eal, "loop").expect("net_ring vdev");
    let mut port = Port::configure(id, &PortConfig::new(pool).queues(2, 2)).expect("configure");
    port.start().expect("start");
    assert!(port.is_started());

    let mut burst = frames_in(pool, 0..32);
    assert_eq!(port.tx_burst(0, &mut burst), 32);
    assert!(burst.is_empty(), "the driver took them all");

    let mut rx = Vec::with_capacity(64);
    assert_eq!(
        port.rx_burst(1, &mut rx),
        0,
        "queue 1 did not send anything"
    );
    assert_eq!(port.rx_burst(0, &mut rx), 32);
    for (seq, m) in rx.iter().enumerate() {
        assert_eq!(m.data(), frames::udp_frame(seq as u32, 18 + seq).as_slice());
    }
    rx.clear();

    let mut burst = frames_in(pool, 100..104);
    assert_eq!(port.tx_burst(1, &mut burst), 4);
    assert_eq!(port.rx_burst(0, &mut rx), 0);
    assert_eq!(port.rx_burst(1, &mut rx), 4);
    assert_eq!(&rx[3].data()[42..46], &103u32.to_be_bytes());
    rx.clear();

    let stats = port.stats().expect("stats");
    assert_eq!((stats.rx_packets, stats.tx_packets), (36, 36));
    assert_eq!(stats.rx_bytes, 0, "net_ring does not count bytes");
    port.reset_stats().expect("reset");
    assert_eq!(port.stats().expect("stats").rx_packets, 0);
    assert_eq!(pool.in_use(), 0, "every mbuf went back to the pool");

    port.stop().expect("stop");
    let mut burst = frames_in(pool, 0..2);
    assert_eq!(
        port.tx_burst(0, &mut burst),
        0,
        "a stopped port takes nothing"
    );
    assert_eq!(burst.len(), 2);
}

#[test]
fn a_full_ring_hands_back_what_it_did_not_take() {
    let eal = common::eal();
    let pool = pool("ring_full");
    let id = Vdev::Ring.create(eal, "full").expect("net_ring vdev");
    let mut port = Port::configure(id, &PortConfig::new(pool)).expect("configure");
    port.start().expect("start");

    let (mut sent, mut offered, mut refused) = (0, 0, None);
    for round in 0..64u32 {
        let mut burst = frames_in(pool, round * 32..round * 32 + 32);
        offered += burst.len();
        sent += port.tx_burst(0, &mut burst);
        if !burst.is_empty() {
            // The unsent ones are ours, in order, still intact.
            let first_unsent = u32::try_from(sent).expect("small");
            assert_eq!(&burst[0].data()[42..46], &first_unsent.to_be_bytes());
            refused = Some(burst.len());
            break;
        }
    }
    let refused = refused.expect("the ring fills up before 2048 frames");
    assert_eq!(sent + refused, offered);
    println!("net_ring took {sent} frames before its ring was full");

    let mut rx = Vec::with_capacity(sent);
    let mut received = 0;
    while port.rx_burst(0, &mut rx) > 0 {
        received = rx.len();
    }
    assert_eq!(received, sent);
    assert_eq!(
        &rx[sent - 1].data()[42..46],
        &(sent as u32 - 1).to_be_bytes()
    );
}

#[test]
fn port_facts_link_mac_and_promiscuous_mode() {
    let eal = common::eal();
    let pool = pool("ring_facts");
    let id = Vdev::Ring.create(eal, "facts").expect("net_ring vdev");
    let mut port = Port::configure(id, &PortConfig::new(pool)).expect("configure");
    let info = port.info().expect("info");
    assert_eq!(info.name, "net_ringfacts");
    assert_eq!(info.driver, "net_ring");
    assert!(info.max_rx_queues >= 1);
    port.start().expect("start");
    let link = port.link().expect("link");
    assert!(link.up, "{link:?}");
    assert_eq!(link.speed_mbps, 10_000);
    let mac = port.mac_addr().expect("mac");
    println!("net_ring MAC {mac}, link {link:?}");

    port.set_promiscuous(true).expect("promiscuous on");
    assert!(port.is_promiscuous().expect("get"));
    port.set_promiscuous(false).expect("promiscuous off");
    assert!(!port.is_promiscuous().expect("get"));
}

#[test]
fn a_port_has_one_owner_and_checked_queue_counts() {
    let eal = common::eal();
    let pool = pool("ring_owner");
    let id = Vdev::Ring.create(eal, "owner").expect("net_ring vdev");

    let err = Port::configure(id, &PortConfig::new(pool).queues(1000, 1)).expect_err("too many");
    assert!(
        err.to_string().starts_with(
            "invalid rx queue count: 1000 for net_ringowner (net_ring), which takes 1 to"
        ),
        "{err}"
    );
    let port = Port::configure(id, &PortConfig::new(pool)).expect("configure");
    let err = Port::configure(id, &PortConfig::new(pool)).expect_err("owned");
    assert!(matches!(err, Error::PortInUse(p) if p == id.get()), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "port {} is already driven by another Port in this process",
            id.get()
        )
    );

    // Dropping the Port closes the vdev: its id no longer names a port.
    drop(port);
    assert!(palisade_dpdk::PortId::new(eal, id.get()).is_none());
    let err = Vdev::Ring
        .create(eal, "owner")
        .expect_err("the vdev name stays taken");
    assert!(err.to_string().contains("EEXIST"), "{err}");

    // net_ring's probe returns -1; the reason is in rte_errno.
    let err = Vdev::Ring
        .create(eal, "too_long_a_name")
        .expect_err("ring names are short");
    assert_eq!(
        err.to_string(),
        "rte_vdev_init(\"net_ringtoo_long_a_name\", \"\") failed (ENAMETOOLONG: file name too \
         long); the EAL log above may say more"
    );
    let err = Vdev::Ring
        .create(eal, "bad-name")
        .expect_err("checked before DPDK");
    assert!(
        err.to_string().starts_with("invalid vdev instance: "),
        "{err}"
    );
}

#[test]
#[should_panic(expected = "rx queue 1 of port")]
fn bursts_on_a_queue_that_does_not_exist_panic() {
    let eal = common::eal();
    let pool = pool("ring_badq");
    let id = Vdev::Ring.create(eal, "badq").expect("net_ring vdev");
    let mut port = Port::configure(id, &PortConfig::new(pool)).expect("configure");
    port.rx_burst(1, &mut Vec::new());
}
