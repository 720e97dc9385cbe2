//! Pktmbuf pools and mbufs on a real EAL: allocation, bulk allocation, exhaustion, data
//! editing, and that dropping an Mbuf returns it to its pool.

#[path = "common/eal.rs"]
mod common;

use palisade_dpdk::{Errno, Error, Mbuf, Mempool, MempoolConfig};

/// A pool without per-lcore cache, so its counts are exact from any thread.
fn pool(name: &str, capacity: u32) -> Mempool {
    let config = MempoolConfig {
        capacity,
        cache_size: 0,
        ..MempoolConfig::default()
    };
    Mempool::create(common::eal(), name, &config).expect("pool")
}

#[test]
fn mbufs_return_to_their_pool_when_dropped() {
    let pool = pool("drop_returns", 63);
    assert_eq!((pool.available(), pool.in_use()), (63, 0));
    let one = pool.alloc().expect("an mbuf");
    assert_eq!((pool.available(), pool.in_use()), (62, 1));
    assert!(one.is_empty());
    assert_eq!(one.headroom(), 128, "RTE_PKTMBUF_HEADROOM");
    assert_eq!(one.tailroom(), 2048);
    drop(one);
    assert_eq!(pool.in_use(), 0);

    let mut all = Vec::new();
    assert!(pool.alloc_bulk(63, &mut all));
    assert_eq!(all.len(), 63);
    assert!(pool.alloc().is_none(), "the pool is exhausted");
    assert!(!pool.alloc_bulk(1, &mut all), "all or nothing");
    assert_eq!(all.len(), 63);
    all.truncate(10);
    assert_eq!(pool.in_use(), 10);
    assert!(!pool.alloc_bulk(54, &mut all));
    assert!(pool.alloc_bulk(53, &mut all));
    drop(all);
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn data_can_be_appended_prepended_edited_and_trimmed() {
    let pool = pool("edit", 15);
    let mut m = pool.alloc().expect("an mbuf");
    m.append(b"payload").expect("room");
    m.prepend(b"hdr:").expect("headroom");
    assert_eq!(m.data(), b"hdr:payload");
    assert_eq!((m.len(), m.pkt_len()), (11, 11));
    assert!(m.is_contiguous());
    m.data_mut()[0] = b'H';
    assert_eq!(m.data(), b"Hdr:payload");
    m.trim_front(4).expect("strip the header");
    m.trim_back(4).expect("strip the tail");
    assert_eq!(m.data(), b"pay");
    assert_eq!(m.headroom(), 128);

    // Too much: refused, and the mbuf is unchanged.
    let big = vec![0u8; m.tailroom() + 1];
    let err = m.append(&big).expect_err("no room");
    assert!(
        err.to_string()
            .contains("append of 2046 bytes does not fit"),
        "{err}"
    );
    assert!(m.prepend(&[0; 129]).is_err());
    assert!(m.trim_front(4).is_err());
    assert!(m.trim_back(70_000).is_err());
    assert_eq!(m.data(), b"pay");

    // Raw round trip.
    let raw = m.into_raw();
    assert_eq!(pool.in_use(), 1);
    // SAFETY: `raw` came from `into_raw` and nothing else holds it.
    let m = unsafe { Mbuf::from_raw(raw) };
    assert_eq!(m.data(), b"pay");
    drop(m);
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn pool_names_are_unique_per_process() {
    let _first = pool("unique_name", 7);
    let config = MempoolConfig {
        capacity: 7,
        cache_size: 0,
        ..MempoolConfig::default()
    };
    let err = Mempool::create(common::eal(), "unique_name", &config).expect_err("taken");
    assert!(
        matches!(&err, Error::Mempool { errno, .. } if *errno == Errno::EEXIST),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "rte_pktmbuf_pool_create(\"unique_name\") failed (EEXIST: file exists)"
    );
    let long = "a_name_longer_than_dpdk_allows";
    let err = Mempool::create(common::eal(), long, &config).expect_err("too long");
    assert!(err.to_string().contains("ENAMETOOLONG"), "{err}");
}

#[test]
fn mbufs_can_be_freed_on_another_thread() {
    let pool = pool("cross_thread", 31);
    let mut mbufs = Vec::new();
    assert!(pool.alloc_bulk(31, &mut mbufs));
    std::thread::spawn(move || drop(mbufs))
        .join()
        .expect("thread");
    assert_eq!(pool.in_use(), 0);
}
