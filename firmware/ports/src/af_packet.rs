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
        // Protocol 0: the socket receives nothing until `bind` names the interface and
        // the protocol. Opened with ETH_P_ALL it would queue frames of every interface in
        // between, and the port would forward them.
        // SAFETY: plain system call with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
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
        set_option(&fd, libc::PACKET_AUXDATA, &1 as &libc::c_int).map_err(|source| PortError {
            port: ifname.to_string(),
            what: "PACKET_AUXDATA",
            source,
        })?;
        Ok(Self {
            name: ifname.to_string(),
            fd,
            stats: PortStats::default(),
        })
    }
}

/// What the kernel says of a frame beside its bytes (`PACKET_AUXDATA`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Aux {
    /// The transport checksum is not computed yet (`TP_STATUS_CSUMNOTREADY`).
    checksum_not_ready: bool,
    /// The VLAN tag the interface took off the frame: (TPID, TCI).
    vlan: Option<(u16, u16)>,
}

/// Reads the `PACKET_AUXDATA` message of a `recvmsg`.
fn auxdata(msg: &libc::msghdr) -> Aux {
    // SAFETY: `msg` was filled by `recvmsg`; the CMSG macros walk its control buffer within
    // `msg_controllen`, and the data of a SOL_PACKET/PACKET_AUXDATA message is a
    // `tpacket_auxdata`, read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_PACKET && (*cmsg).cmsg_type == libc::PACKET_AUXDATA {
                let aux = libc::CMSG_DATA(cmsg)
                    .cast::<libc::tpacket_auxdata>()
                    .read_unaligned();
                let vlan = (aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
                    let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        0x8100
                    };
                    (tpid, aux.tp_vlan_tci)
                });
                return Aux {
                    checksum_not_ready: aux.tp_status & libc::TP_STATUS_CSUMNOTREADY != 0,
                    vlan,
                };
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    Aux::default()
}

/// Puts back a VLAN tag the receiving interface took off (VLAN offload): after the two MAC
/// addresses, the TPID and the TCI. A frame too short to hold MAC addresses is left alone.
pub fn insert_vlan_tag(frame: &mut Vec<u8>, tpid: u16, tci: u16) {
    if frame.len() < 12 {
        return;
    }
    let [t0, t1] = tpid.to_be_bytes();
    let [c0, c1] = tci.to_be_bytes();
    frame.splice(12..12, [t0, t1, c0, c1]);
}

/// Computes a TCP or UDP checksum the sender left undone. Frames that are not unfragmented
/// TCP or UDP over IP, or that are cut short, are left as they are.
pub fn complete_checksum(frame: &mut [u8]) {
    let Ok(parsed) = palisade_wire::parse_frame(frame) else {
        return;
    };
    let Some(ip) = parsed.ip else { return };
    if ip.fragment.is_some() {
        return;
    }
    let field = match ip.protocol {
        palisade_wire::IpProtocol::TCP => 16,
        palisade_wire::IpProtocol::UDP => 6,
        _ => return,
    };
    let end = parsed.l3_offset + ip.total_len;
    if end > frame.len() || ip.l4_offset + field + 2 > end {
        return;
    }
    frame[ip.l4_offset + field..ip.l4_offset + field + 2].fill(0);
    let segment = &frame[ip.l4_offset..end];
    let sum = palisade_wire::checksum::combine(&[
        palisade_wire::checksum::pseudo_header(&ip.src, &ip.dst, ip.protocol, segment.len() as u32),
        palisade_wire::checksum::data(segment),
    ]);
    let mut value = !sum;
    if value == 0 && ip.protocol == palisade_wire::IpProtocol::UDP {
        value = 0xffff;
    }
    frame[ip.l4_offset + field..ip.l4_offset + field + 2].copy_from_slice(&value.to_be_bytes());
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
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast::<libc::c_void>(),
                iov_len: buf.len(),
            };
            // Room for one `tpacket_auxdata` control message (u64s keep it aligned).
            let mut control = [0u64; 8];
            // SAFETY: an all-zero `msghdr` is a valid value of the plain C struct.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &raw mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast::<libc::c_void>();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            // SAFETY: `msg` points at `iov` (a live buffer of `buf.len()` writable bytes) and
            // at `control`, both alive for the call.
            let n = unsafe {
                libc::recvmsg(
                    self.fd.as_raw_fd(),
                    &raw mut msg,
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                )
            };
            let aux = if n >= 0 {
                auxdata(&msg)
            } else {
                Aux::default()
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
            if let Some((tpid, tci)) = aux.vlan {
                // A bump in the wire forwards the frame as it was on the wire.
                insert_vlan_tag(&mut buf, tpid, tci);
            }
            if aux.checksum_not_ready {
                // The sender left the TCP/UDP checksum to "the hardware" (a veth, a local
                // socket): complete it, or whoever gets the frame next drops it.
                complete_checksum(&mut buf);
            }
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

#[cfg(test)]
mod checksum_tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use palisade_wire::{PacketBuilder, tcp, udp};

    use super::complete_checksum;

    fn built(v6: bool, is_udp: bool) -> Vec<u8> {
        let mut buf = vec![0u8; 256];
        let builder = if v6 {
            PacketBuilder::ipv6(
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
                Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
            )
        } else {
            PacketBuilder::ipv4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2))
        };
        let builder = if is_udp {
            builder.udp(udp::Repr {
                src_port: 5353,
                dst_port: 53,
                payload: b"palisade",
            })
        } else {
            builder.tcp(tcp::Repr {
                src_port: 40000,
                dst_port: 8080,
                flags: tcp::Flags::SYN,
                payload: b"palisade",
                ..Default::default()
            })
        };
        let n = builder.emit(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn a_checksum_left_to_the_hardware_is_completed() {
        for v6 in [false, true] {
            for is_udp in [false, true] {
                let good = built(v6, is_udp);
                let parsed = palisade_wire::parse_frame(&good).unwrap().ip.unwrap();
                let field = parsed.l4_offset + if is_udp { 6 } else { 16 };
                let mut partial = good.clone();
                // What a sender with checksum offload leaves: some partial sum.
                partial[field..field + 2].copy_from_slice(&[0x12, 0x34]);
                complete_checksum(&mut partial);
                assert_eq!(partial, good, "v6 {v6} udp {is_udp}");
            }
        }
    }

    #[test]
    fn other_frames_are_left_alone() {
        let mut short = built(false, false);
        short.truncate(30);
        let before = short.clone();
        complete_checksum(&mut short);
        assert_eq!(short, before);
        let mut garbage = vec![0xffu8; 60];
        complete_checksum(&mut garbage);
        assert_eq!(garbage, vec![0xffu8; 60]);
    }
}
