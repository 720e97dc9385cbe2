//! Errors: DPDK's error numbers with their names, and what this crate reports.

use std::ffi::CStr;
use std::fmt;

use crate::flow::FlowError;

/// An error number as DPDK reports it: a negative return value or `rte_errno`.
///
/// Displays as `ENOSYS: function not implemented`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(i32);

/// Errno names for the values DPDK's control path returns (Linux numbering).
const NAMES: &[(u32, &str)] = &[
    (dpdk_sys::EPERM, "EPERM"),
    (dpdk_sys::ENOENT, "ENOENT"),
    (dpdk_sys::ESRCH, "ESRCH"),
    (dpdk_sys::EINTR, "EINTR"),
    (dpdk_sys::EIO, "EIO"),
    (dpdk_sys::ENXIO, "ENXIO"),
    (dpdk_sys::E2BIG, "E2BIG"),
    (dpdk_sys::EBADF, "EBADF"),
    (dpdk_sys::EAGAIN, "EAGAIN"),
    (dpdk_sys::ENOMEM, "ENOMEM"),
    (dpdk_sys::EACCES, "EACCES"),
    (dpdk_sys::EFAULT, "EFAULT"),
    (dpdk_sys::EBUSY, "EBUSY"),
    (dpdk_sys::EEXIST, "EEXIST"),
    (dpdk_sys::ENODEV, "ENODEV"),
    (dpdk_sys::EINVAL, "EINVAL"),
    (dpdk_sys::ENFILE, "ENFILE"),
    (dpdk_sys::EMFILE, "EMFILE"),
    (dpdk_sys::ENOSPC, "ENOSPC"),
    (dpdk_sys::ERANGE, "ERANGE"),
    (dpdk_sys::ENAMETOOLONG, "ENAMETOOLONG"),
    (dpdk_sys::ENOSYS, "ENOSYS"),
    (dpdk_sys::ENOEXEC, "ENOEXEC"),
    (dpdk_sys::EPROTO, "EPROTO"),
    (dpdk_sys::EOVERFLOW, "EOVERFLOW"),
    (dpdk_sys::ENOBUFS, "ENOBUFS"),
    (dpdk_sys::ENOTSUP, "ENOTSUP"),
    (dpdk_sys::EALREADY, "EALREADY"),
    (dpdk_sys::ETIMEDOUT, "ETIMEDOUT"),
    (dpdk_sys::E_RTE_SECONDARY, "E_RTE_SECONDARY"),
    (dpdk_sys::E_RTE_NO_CONFIG, "E_RTE_NO_CONFIG"),
];

impl Errno {
    /// "Function not implemented": the driver has no such operation.
    pub const ENOSYS: Errno = Errno(dpdk_sys::ENOSYS as i32);
    /// "Operation not supported" (the same number as `EOPNOTSUPP` on Linux).
    pub const ENOTSUP: Errno = Errno(dpdk_sys::ENOTSUP as i32);
    /// "Invalid argument".
    pub const EINVAL: Errno = Errno(dpdk_sys::EINVAL as i32);
    /// "Cannot allocate memory".
    pub const ENOMEM: Errno = Errno(dpdk_sys::ENOMEM as i32);
    /// "File exists": a name (pool, device) already in use.
    pub const EEXIST: Errno = Errno(dpdk_sys::EEXIST as i32);

    /// The errno with this positive value.
    pub const fn new(code: i32) -> Errno {
        Errno(code)
    }

    /// The positive errno value.
    pub const fn code(self) -> i32 {
        self.0
    }

    /// The error of a DPDK call that returns `-errno` on failure.
    pub(crate) fn from_ret(ret: i32) -> Errno {
        Errno(ret.saturating_abs())
    }

    /// The calling thread's `rte_errno`, for calls that return NULL or -1 on failure.
    pub(crate) fn last() -> Errno {
        // SAFETY: reads a thread-local integer; no preconditions.
        Errno(unsafe { dpdk_sys::rte_errno() })
    }

    /// Sets the calling thread's `rte_errno` to 0, before a call that may fail without
    /// setting it.
    pub(crate) fn clear() {
        // SAFETY: writes a thread-local integer; no preconditions.
        unsafe { dpdk_sys::rte_errno_set(0) }
    }

    /// The symbolic name (`"ENOSYS"`), when it is one DPDK commonly returns.
    pub fn name(self) -> Option<&'static str> {
        NAMES
            .iter()
            .find(|(code, _)| i32::try_from(*code) == Ok(self.0))
            .map(|(_, name)| *name)
    }

    /// DPDK's description (`rte_strerror`), which covers its own error numbers too.
    pub fn description(self) -> String {
        // SAFETY: rte_strerror accepts any value and returns a NUL-terminated string, static
        // or in a per-thread buffer that stays valid until this thread's next call; it is
        // copied before that can happen.
        let text = unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(self.0)) };
        let mut text = text.to_string_lossy().into_owned();
        // "Function not implemented" reads better mid-sentence as "function not implemented".
        if let Some(first) = text.get(..1) {
            let lower = first.to_ascii_lowercase();
            text.replace_range(..1, &lower);
        }
        text
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}: {}", self.description()),
            None => write!(f, "errno {}: {}", self.0, self.description()),
        }
    }
}

/// Everything that can go wrong in this crate outside rte_flow (see [`FlowError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `Eal::init` was called after the EAL was started (or had failed to start).
    #[error(
        "the EAL was already initialised in this process; DPDK allows one rte_eal_init per process"
    )]
    AlreadyInitialized,
    /// `rte_eal_init` failed; DPDK's log on stderr names the argument or resource.
    #[error("rte_eal_init failed ({0}); the EAL log above says why")]
    EalInit(Errno),
    /// An argument this crate checks before handing it to DPDK.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// What is wrong with it and what is accepted.
        reason: String,
    },
    /// `rte_pktmbuf_pool_create` failed.
    #[error("rte_pktmbuf_pool_create(\"{name}\") failed ({errno})")]
    Mempool {
        /// The pool's name.
        name: String,
        /// Why.
        errno: Errno,
    },
    /// `rte_vdev_init` failed.
    #[error(
        "rte_vdev_init(\"{name}\", \"{args}\") failed ({}); the EAL log above may say more",
        or_unknown(errno)
    )]
    Vdev {
        /// The device name.
        name: String,
        /// The device arguments.
        args: String,
        /// Why, when the driver said: many probe functions return -1 and set `rte_errno`,
        /// or set nothing at all.
        errno: Option<Errno>,
    },
    /// No ethdev port has this name.
    #[error("no ethdev port is named \"{0}\"")]
    NoSuchPort(String),
    /// Another [`Port`](crate::Port) value of this process already drives this port.
    #[error("port {0} is already driven by another Port in this process")]
    PortInUse(u16),
    /// An ethdev call failed.
    #[error("port {port}: {call} failed ({errno})")]
    Port {
        /// The port id.
        port: u16,
        /// The DPDK function that failed.
        call: &'static str,
        /// Why.
        errno: Errno,
    },
    /// An rte_flow call failed.
    #[error(transparent)]
    Flow(#[from] FlowError),
}

fn or_unknown(errno: &Option<Errno>) -> String {
    errno.map_or_else(
        || "the driver gave no error number".to_owned(),
        |e| e.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_errno_and_describes_it_in_lowercase() {
        assert_eq!(
            Errno::ENOSYS.to_string(),
            "ENOSYS: function not implemented"
        );
        assert_eq!(
            Errno::ENOTSUP.to_string(),
            "ENOTSUP: operation not supported"
        );
        assert_eq!(Errno::new(-1).name(), None);
        assert!(Errno::new(4242).to_string().starts_with("errno 4242: "));
    }

    #[test]
    fn negative_returns_become_positive_errnos() {
        assert_eq!(Errno::from_ret(-38), Errno::ENOSYS);
        assert_eq!(Errno::from_ret(i32::MIN).code(), i32::MAX);
    }

    #[test]
    fn dpdk_specific_errnos_have_names() {
        let secondary = Errno::new(dpdk_sys::E_RTE_SECONDARY as i32);
        assert_eq!(secondary.name(), Some("E_RTE_SECONDARY"));
        assert_eq!(secondary.description(), "invalid call in secondary process");
    }
}
