//! The Environment Abstraction Layer: started once per process, never stopped.

use std::ffi::{CString, c_char, c_int};
use std::sync::Mutex;

use crate::error::{Errno, Error};

/// Proof that DPDK's EAL is running in this process.
///
/// Every other type of this crate is created from an `&Eal`, so nothing can touch DPDK before
/// `rte_eal_init` succeeded. The EAL is never cleaned up: DPDK allows one `rte_eal_init` per
/// process, and ports, pools and mbufs may refer to its memory until the process exits.
#[derive(Debug)]
pub struct Eal {
    _private: (),
}

/// Where the one EAL start of this process stands.
#[derive(Debug, Clone, Copy)]
enum State {
    NotStarted,
    Running,
    Failed(Errno),
}

static STATE: Mutex<State> = Mutex::new(State::NotStarted);
static EAL: Eal = Eal { _private: () };

impl Eal {
    /// EAL arguments for a machine without hugepages, PCI devices or multi-process use: the
    /// software ports (net_ring, net_null, net_af_packet, net_tap) then work on any Linux
    /// host. `--in-memory` is not used because DPDK 22.11 rejects it with `--no-huge`;
    /// `--no-telemetry` avoids leaving a socket in the shared runtime directory. Add `-l`
    /// (cores) and `--vdev` as needed.
    pub const SOFTWARE_ONLY: &'static [&'static str] = &[
        "--no-huge",
        "--no-shconf",
        "--no-pci",
        "-m",
        "512",
        "--no-telemetry",
    ];

    /// Starts the EAL with `args` (EAL options, without a program name; anything after
    /// `--` is ignored).
    ///
    /// The calling thread becomes the main lcore and is pinned to its CPU.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyInitialized`] on any call after the first, whether the first
    /// succeeded or not (DPDK cannot be initialised twice); [`Error::EalInit`] when DPDK
    /// rejects the arguments or cannot get its resources; [`Error::InvalidArgument`] for an
    /// argument with a NUL byte.
    pub fn init<I, S>(args: I) -> Result<&'static Eal, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
        match *state {
            State::NotStarted => Self::start(&mut state, args),
            State::Running | State::Failed(_) => Err(Error::AlreadyInitialized),
        }
    }

    /// The process-wide EAL: starts it with `args` on the first call, and returns the
    /// running one afterwards (later `args` are ignored). Meant for test binaries whose
    /// tests share one EAL.
    ///
    /// # Errors
    ///
    /// As [`Eal::init`] for the call that starts it; later calls repeat the first failure.
    pub fn get_or_init<I, S>(args: I) -> Result<&'static Eal, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
        match *state {
            State::NotStarted => Self::start(&mut state, args),
            State::Running => Ok(&EAL),
            State::Failed(errno) => Err(Error::EalInit(errno)),
        }
    }

    /// The running EAL, if this process started one.
    pub fn get() -> Option<&'static Eal> {
        let state = STATE.lock().unwrap_or_else(|e| e.into_inner());
        matches!(*state, State::Running).then_some(&EAL)
    }

    fn start<I, S>(state: &mut State, args: I) -> Result<&'static Eal, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let program = std::env::args()
            .next()
            .unwrap_or_else(|| "palisade".to_owned());
        let mut argv = Vec::new();
        for arg in std::iter::once(program).chain(args.into_iter().map(|a| a.as_ref().to_owned())) {
            let arg = CString::new(arg).map_err(|e| Error::InvalidArgument {
                what: "EAL argument",
                reason: format!("{:?} contains a NUL byte", e.into_vec()),
            })?;
            // rte_eal_init reorders argv and may keep pointers into it: the strings live as
            // long as the process, like the EAL.
            argv.push(arg.into_raw());
        }
        let argc = c_int::try_from(argv.len()).map_err(|_| Error::InvalidArgument {
            what: "EAL arguments",
            reason: "too many".to_owned(),
        })?;
        let argv: &'static mut [*mut c_char] = argv.leak();
        // SAFETY: argv holds argc valid NUL-terminated strings that are never freed, in an
        // array that is never freed; STATE's lock guarantees this is the only rte_eal_init
        // call of the process.
        let ret = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            let errno = Errno::last();
            *state = State::Failed(errno);
            return Err(Error::EalInit(errno));
        }
        *state = State::Running;
        Ok(&EAL)
    }

    /// The calling thread's lcore id, or `None` for a thread that the EAL did not create
    /// (such threads use the mempools without a per-core cache).
    pub fn lcore_id(&self) -> Option<u32> {
        // SAFETY: reads a thread-local set by the EAL, which is running.
        let id = unsafe { dpdk_sys::rte_lcore_id() };
        (id != dpdk_sys::LCORE_ID_ANY).then_some(id)
    }

    /// The NUMA socket of the calling thread's CPU.
    pub fn socket_id(&self) -> u32 {
        // SAFETY: no preconditions once the EAL is running.
        unsafe { dpdk_sys::rte_socket_id() }
    }

    /// How many lcores the EAL was given (`-l`/`-c`).
    pub fn lcore_count(&self) -> u32 {
        // SAFETY: no preconditions once the EAL is running.
        unsafe { dpdk_sys::rte_lcore_count() }
    }
}
