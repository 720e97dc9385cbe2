//! A failed EAL start is final for the process, and says why. Single test: it must be the
//! process's only `rte_eal_init`.

use palisade_dpdk::{Eal, Errno, Error};

#[test]
fn a_rejected_argument_fails_the_start_for_good() {
    let err = Eal::init(["--no-huge", "--no-such-eal-option"]).expect_err("unknown option");
    let Error::EalInit(errno) = err else {
        panic!("expected EalInit, got {err}");
    };
    assert_eq!(errno, Errno::EINVAL);
    assert_eq!(
        err.to_string(),
        "rte_eal_init failed (EINVAL: invalid argument); the EAL log above says why"
    );

    assert!(Eal::get().is_none());
    let again = Eal::init(Eal::SOFTWARE_ONLY).expect_err("no second start");
    assert!(matches!(again, Error::AlreadyInitialized), "{again}");
    let shared = Eal::get_or_init(Eal::SOFTWARE_ONLY).expect_err("the first failure stays");
    assert!(
        matches!(shared, Error::EalInit(e) if e == Errno::EINVAL),
        "{shared}"
    );

    let nul = Eal::get_or_init(["bad\0arg"]);
    assert!(nul.is_err());
}
