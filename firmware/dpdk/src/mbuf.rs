//! Owned packet buffers.

use std::fmt;
use std::ptr::NonNull;

use crate::error::Error;

/// One packet in an `rte_mbuf`, owned: dropping it returns it (all its segments) to its
/// pool.
///
/// Mbufs come from [`Mempool::alloc`](crate::Mempool::alloc) or a port's
/// [`rx_burst`](crate::Port::rx_burst), and leave through
/// [`tx_burst`](crate::Port::tx_burst), which hands them to the driver. This crate never
/// clones or attaches mbufs, so an `Mbuf` is the only reference to its data and
/// [`data_mut`](Mbuf::data_mut) needs no check.
///
/// The data accessors cover the first segment, which is the whole packet whenever
/// [`is_contiguous`](Mbuf::is_contiguous) (always, for the software ports and the default
/// 2 KiB data room at the default MTU).
#[repr(transparent)]
pub struct Mbuf {
    raw: NonNull<dpdk_sys::rte_mbuf>,
}

// SAFETY: an Mbuf owns its buffer exclusively; freeing it from another thread is allowed
// (mempool frees are thread-safe, see `Mempool`).
unsafe impl Send for Mbuf {}
// SAFETY: `&Mbuf` only reads the buffer.
unsafe impl Sync for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    ///
    /// `raw` must be a valid packet mbuf that nothing else will use or free, whose pool
    /// lives as long as the process (pools of this crate do), and which no other mbuf
    /// shares data with (not a clone, not attached).
    pub unsafe fn from_raw(raw: NonNull<dpdk_sys::rte_mbuf>) -> Mbuf {
        Mbuf { raw }
    }

    /// Gives up ownership: the caller must free or transmit the mbuf.
    pub fn into_raw(self) -> NonNull<dpdk_sys::rte_mbuf> {
        let raw = self.raw;
        std::mem::forget(self);
        raw
    }

    /// The packet data of the first segment.
    pub fn data(&self) -> &[u8] {
        // SAFETY: the mbuf is valid; mtod/data_len describe initialised bytes of its buffer,
        // which nothing writes while `self` is borrowed (we own it exclusively).
        unsafe {
            let ptr = dpdk_sys::rte_pktmbuf_mtod(self.raw.as_ptr()).cast::<u8>();
            std::slice::from_raw_parts(ptr, self.len())
        }
    }

    /// The packet data of the first segment, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `data`, and `&mut self` makes this the only access.
        unsafe {
            let ptr = dpdk_sys::rte_pktmbuf_mtod(self.raw.as_ptr()).cast::<u8>();
            std::slice::from_raw_parts_mut(ptr, self.len())
        }
    }

    /// Bytes of data in the first segment (`data().len()`).
    pub fn len(&self) -> usize {
        usize::from(self.data_len())
    }

    /// Whether the first segment holds no data.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of data in all segments.
    pub fn pkt_len(&self) -> u32 {
        // SAFETY: the mbuf is valid.
        unsafe { dpdk_sys::rte_pktmbuf_pkt_len(self.raw.as_ptr()) }
    }

    /// Whether the packet is in one segment, so that [`data`](Mbuf::data) is all of it.
    pub fn is_contiguous(&self) -> bool {
        self.pkt_len() == u32::from(self.data_len())
    }

    /// Free bytes before the data.
    pub fn headroom(&self) -> usize {
        // SAFETY: the mbuf is valid.
        usize::from(unsafe { dpdk_sys::rte_pktmbuf_headroom(self.raw.as_ptr()) })
    }

    /// Free bytes after the data (in the last segment).
    pub fn tailroom(&self) -> usize {
        // SAFETY: the mbuf is valid.
        usize::from(unsafe { dpdk_sys::rte_pktmbuf_tailroom(self.raw.as_ptr()) })
    }

    /// Copies `bytes` after the data (`rte_pktmbuf_append`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the tailroom is too small; the mbuf is unchanged.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let len = length("append", bytes.len())?;
        // SAFETY: the mbuf is valid and exclusively ours; DPDK checks the tailroom.
        let dst = unsafe { dpdk_sys::rte_pktmbuf_append(self.raw.as_ptr(), len) };
        let dst = NonNull::new(dst.cast::<u8>()).ok_or_else(|| no_room("append", bytes.len()))?;
        // SAFETY: DPDK returned the start of `len` bytes of this mbuf's buffer, now part of
        // its data; `bytes` cannot overlap them (they were outside the data, and we own the
        // mbuf exclusively).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.as_ptr(), bytes.len()) };
        Ok(())
    }

    /// Copies `bytes` before the data (`rte_pktmbuf_prepend`), e.g. to add a header.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the headroom is too small; the mbuf is unchanged.
    pub fn prepend(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let len = length("prepend", bytes.len())?;
        // SAFETY: the mbuf is valid and exclusively ours; DPDK checks the headroom.
        let dst = unsafe { dpdk_sys::rte_pktmbuf_prepend(self.raw.as_ptr(), len) };
        let dst = NonNull::new(dst.cast::<u8>()).ok_or_else(|| no_room("prepend", bytes.len()))?;
        // SAFETY: as in `append`, for the `len` bytes now at the start of the data.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.as_ptr(), bytes.len()) };
        Ok(())
    }

    /// Removes `n` bytes from the start of the data (`rte_pktmbuf_adj`), e.g. to strip a
    /// header.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the first segment holds fewer than `n` bytes.
    pub fn trim_front(&mut self, n: usize) -> Result<(), Error> {
        let len = length("trim_front", n)?;
        // SAFETY: the mbuf is valid and exclusively ours; DPDK checks the data length.
        let ret = unsafe { dpdk_sys::rte_pktmbuf_adj(self.raw.as_ptr(), len) };
        if ret.is_null() {
            return Err(no_room("trim_front", n));
        }
        Ok(())
    }

    /// Removes `n` bytes from the end of the data (`rte_pktmbuf_trim`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the last segment holds fewer than `n` bytes.
    pub fn trim_back(&mut self, n: usize) -> Result<(), Error> {
        let len = length("trim_back", n)?;
        // SAFETY: the mbuf is valid and exclusively ours; DPDK checks the data length.
        let ret = unsafe { dpdk_sys::rte_pktmbuf_trim(self.raw.as_ptr(), len) };
        if ret != 0 {
            return Err(no_room("trim_back", n));
        }
        Ok(())
    }

    fn data_len(&self) -> u16 {
        // SAFETY: the mbuf is valid.
        unsafe { dpdk_sys::rte_pktmbuf_data_len(self.raw.as_ptr()) }
    }
}

/// `n` as the u16 that DPDK's length arguments take.
fn length(op: &'static str, n: usize) -> Result<u16, Error> {
    u16::try_from(n).map_err(|_| no_room(op, n))
}

fn no_room(op: &'static str, n: usize) -> Error {
    Error::InvalidArgument {
        what: "mbuf length",
        reason: format!("{op} of {n} bytes does not fit this mbuf's room or data"),
    }
}

/// The packet data of the first segment, so an mbuf burst can go wherever byte frames go.
impl AsRef<[u8]> for Mbuf {
    fn as_ref(&self) -> &[u8] {
        self.data()
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; it is freed once, here.
        unsafe { dpdk_sys::rte_pktmbuf_free(self.raw.as_ptr()) }
    }
}

impl fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbuf")
            .field("len", &self.len())
            .field("pkt_len", &self.pkt_len())
            .field("headroom", &self.headroom())
            .field("tailroom", &self.tailroom())
            .finish()
    }
}
