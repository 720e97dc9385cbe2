//! The EAL starts once per process. This binary has a single test: it must be the first
//! and only `rte_eal_init` of its process.

use palisade_dpdk::{Eal, Error};

#[test]
fn the_eal_starts_once_and_refuses_a_second_start() {
    assert!(Eal::get().is_none(), "nothing started the EAL yet");
    let args = Eal::SOFTWARE_ONLY.iter().chain(&["-l", "0"]);
    let eal = Eal::init(args.clone()).expect("the EAL starts without hugepages");

    let again = Eal::init(args.clone()).expect_err("DPDK cannot start twice");
    assert!(matches!(again, Error::AlreadyInitialized), "{again}");
    assert!(again.to_string().contains("one rte_eal_init per process"));

    // The shared handle and `get` return the running EAL.
    assert!(std::ptr::eq(Eal::get_or_init(args).expect("running"), eal));
    assert!(std::ptr::eq(Eal::get().expect("running"), eal));

    // `-l 0`: one lcore, and the thread that started the EAL is it.
    assert_eq!(eal.lcore_count(), 1);
    assert_eq!(eal.lcore_id(), Some(0));
    let other = std::thread::spawn(|| Eal::get().expect("running").lcore_id());
    assert_eq!(other.join().expect("thread"), None, "not an EAL thread");
}
