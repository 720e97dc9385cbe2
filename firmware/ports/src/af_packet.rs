//! A Linux AF_PACKET raw socket bound to one interface.
//!
//! The socket is non-blocking, receives every frame of the interface (promiscuous, all
//! EtherTypes) but not the frames it sends itself, and sends frames out as they are.
//! Interfaces that hand the kernel offloaded frames (GSO super-frames, partial checksums —
//! veth does by default) must have those offloads turned off (`ethtool -K IF tso off gso
//! off gro off tx off`): a raw socket sees frames as the driver has them.

// The raw-socket API is C: every call below is FFI, each with its SAFETY argument.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::{Port, PortError, PortStats};

/// Largest frame received (jumbo-sized; larger ones are truncated and dropped).
const MAX_FRAME: usize = 9216;

/// `PACKET_IGNORE_OUTGOING` (Linux 4.20): do not loop our own transmissions back to us.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// A raw-socket port on a Linux interface.
pub struct AfPacketPort {
    name: String,
    fd: OwnedFd,
    stats: PortStats,
}

fn os_error(port: &str, what: &'static str) -> PortError {
    PortError {
        port: port.to_string(),
        what,
        source: io::Error::last_os_error(),
    }
}

impl AfPacketPort {
    /// Opens a raw socket on interface `ifname` (needs CAP_NET_RAW).
    pub fn open(ifname: &str) -> Result<Self, PortError> {
        let c_name = CString::new(ifname).map_err(|_| PortError {
            port: ifname.to_string(),
            what: "interface name",
            source: io::Error::new(io::ErrorKind::InvalidInput, "contains a NUL byte"),
        })?;
        // SAFETY: `c_name` is a valid NUL-terminated string for the duration of the call.
        let ifindex = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if ifindex == 0 {
            return Err(os_error(ifname, "no such interface"));
        }
        let protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain system call with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::c_int::from(protocol),
            )
        };
        if raw < 0 {
            return Err(os_error(ifname, "socket(AF_PACKET)"));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero `sockaddr_ll` is a valid value of the plain C struct.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: `addr` is a valid sockaddr_ll and the length given is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(os_error(ifname, "bind"));
        }
        // SAFETY: an all-zero `packet_mreq` is a valid value of the plain C struct.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = ifindex as i32;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        set_option(&fd, libc::PACKET_ADD_MEMBERSHIP, &mreq).map_err(|source| PortError {
            port: ifname.to_string(),
            what: "promiscuous mode",
            source,
        })?;
        set_option(&fd, PACKET_IGNORE_OUTGOING, &1 as &libc::c_int).map_err(|source| {
            PortError {
                port: ifname.to_string(),
                what: "PACKET_IGNORE_OUTGOING (needs Linux 4.20)",
                source,
            }
        })?;
        Ok(Self {
            name: ifname.to_string(),
            fd,
            stats: PortStats::default(),
        })
    }
}

fn set_option<T>(fd: &OwnedFd, option: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` and the length given is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            option,
            (value as *const T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Port for AfPacketPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn recv(
        &mut self,
        max: usize,
        out: &mut Vec<Vec<u8>>,
        spare: &mut Vec<Vec<u8>>,
    ) -> Result<usize, PortError> {
        let mut received = 0;
        while received < max {
            let mut buf = spare.pop().unwrap_or_default();
            buf.resize(MAX_FRAME, 0);
            // SAFETY: `buf` is a live buffer of `buf.len()` writable bytes.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                spare.push(buf);
                let err = io::Error::last_os_error();
                return match err.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(received),
                    _ => Err(PortError {
                        port: self.name.clone(),
                        what: "recv",
                        source: err,
                    }),
                };
            }
            let n = n as usize;
            if n > MAX_FRAME {
                // Truncated: a frame larger than any we handle (offloads left on?).
                spare.push(buf);
                continue;
            }
            buf.truncate(n);
            self.stats.rx_frames += 1;
            self.stats.rx_bytes += n as u64;
            out.push(buf);
            received += 1;
        }
        Ok(received)
    }

    fn send(
        &mut self,
        frames: &mut Vec<Vec<u8>>,
        spare: &mut Vec<Vec<u8>>,
    ) -> Result<usize, PortError> {
        let mut sent = 0;
        for frame in frames.drain(..) {
            // SAFETY: `frame` is a live buffer of `frame.len()` readable bytes.
            let n = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast::<libc::c_void>(),
                    frame.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n == frame.len() as isize {
                sent += 1;
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += frame.len() as u64;
            } else {
                self.stats.tx_dropped += 1;
            }
            spare.push(frame);
        }
        Ok(sent)
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}
