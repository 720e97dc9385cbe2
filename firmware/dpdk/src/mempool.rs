//! Packet mbuf pools.

use std::ffi::CString;
use std::ptr::NonNull;

use crate::eal::Eal;
use crate::error::{Errno, Error};
use crate::mbuf::Mbuf;

/// How to size a pktmbuf pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Number of mbufs. `2^k - 1` uses the underlying ring best.
    pub capacity: u32,
    /// Mbufs kept per lcore to avoid touching the shared ring; at most 512 and at most
    /// `capacity / 1.5`. Threads the EAL did not create bypass the cache.
    pub cache_size: u32,
    /// Bytes per mbuf for headroom plus packet data (DPDK's default is 2048 + 128).
    pub data_room: u16,
}

impl Default for MempoolConfig {
    /// 8191 mbufs of DPDK's default size (2,176 bytes: 128 headroom + 2,048 data), a cache
    /// of 256: about 19 MB.
    fn default() -> Self {
        MempoolConfig {
            capacity: 8191,
            cache_size: 256,
            data_room: dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
        }
    }
}

/// A pool of packet buffers (`rte_pktmbuf_pool_create`).
///
/// A `Mempool` is a copyable handle. Pools are never freed: ports' rx queues and every
/// [`Mbuf`] taken from a pool refer to it, possibly from other threads and from inside
/// drivers, for as long as the process runs. Create them once, at start-up.
#[derive(Debug, Clone, Copy)]
pub struct Mempool {
    raw: NonNull<dpdk_sys::rte_mempool>,
}

// SAFETY: the pool is never freed, and every operation used here (alloc, free, counts) is
// thread-safe: the default mempool ops are a multi-producer/multi-consumer ring, and the
// per-lcore caches are only used by the thread that owns that lcore id.
unsafe impl Send for Mempool {}
// SAFETY: as for Send; no method takes `&mut self`.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool named `name` (unique in the process, at most 25 bytes) on the calling
    /// thread's NUMA socket.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a name with a NUL byte; [`Error::Mempool`] when DPDK
    /// refuses (`EEXIST` for a name in use, `ENAMETOOLONG`, `ENOMEM` when the EAL's
    /// memory, `-m`, is exhausted, `EINVAL` for a bad cache size).
    pub fn create(eal: &Eal, name: &str, config: &MempoolConfig) -> Result<Mempool, Error> {
        let c_name = CString::new(name).map_err(|_| Error::InvalidArgument {
            what: "mempool name",
            reason: format!("{name:?} contains a NUL byte"),
        })?;
        let socket = i32::try_from(eal.socket_id()).unwrap_or(dpdk_sys::SOCKET_ID_ANY);
        // SAFETY: c_name is a valid C string for the duration of the call (DPDK copies it);
        // the EAL is running.
        let raw = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(
                c_name.as_ptr(),
                config.capacity,
                config.cache_size,
                0,
                config.data_room,
                socket,
            )
        };
        NonNull::new(raw)
            .map(|raw| Mempool { raw })
            .ok_or_else(|| Error::Mempool {
                name: name.to_owned(),
                errno: Errno::last(),
            })
    }

    /// One mbuf with empty data, or `None` when the pool is exhausted.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is valid for the life of the process.
        let raw = unsafe { dpdk_sys::rte_pktmbuf_alloc(self.raw.as_ptr()) };
        // SAFETY: a non-null result is a fresh mbuf that nothing else refers to.
        NonNull::new(raw).map(|raw| unsafe { Mbuf::from_raw(raw) })
    }

    /// Appends exactly `n` mbufs to `out`, or nothing (and returns `false`) when the pool has
    /// fewer than `n` free.
    #[must_use = "nothing was allocated when this returns false"]
    pub fn alloc_bulk(&self, n: usize, out: &mut Vec<Mbuf>) -> bool {
        let Ok(count) = u32::try_from(n) else {
            return false;
        };
        out.reserve(n);
        let spare = out.spare_capacity_mut();
        // Mbuf is a transparent NonNull<rte_mbuf>, so the spare slots can take the pointers.
        let slots = spare.as_mut_ptr().cast::<*mut dpdk_sys::rte_mbuf>();
        // SAFETY: the pool is valid; `slots` has room for n pointers (reserved above).
        let ret = unsafe { dpdk_sys::rte_pktmbuf_alloc_bulk(self.raw.as_ptr(), slots, count) };
        if ret != 0 {
            return false;
        }
        // SAFETY: on success DPDK wrote n non-null pointers to fresh mbufs into the first n
        // spare slots, and Mbuf has the layout of a pointer.
        unsafe { out.set_len(out.len() + n) };
        true
    }

    /// Mbufs currently free in the pool (including per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is valid; the count is a racy snapshot by design.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Mbufs currently taken from the pool.
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is valid; the count is a racy snapshot by design.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }

    /// The raw pool, for calls this crate does not wrap.
    pub fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.raw.as_ptr()
    }
}
