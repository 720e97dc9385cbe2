//! Virtual devices: software ports created at run time (`rte_vdev_init`).

use std::ffi::CString;

use crate::eal::Eal;
use crate::error::{Errno, Error};
use crate::port::PortId;

/// A software poll-mode driver and its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vdev<'a> {
    /// `net_ring`: packets sent on tx queue *i* come back on rx queue *i* (in-memory rings
    /// of 1024 slots). Counts packets, not bytes. No rte_flow. The device name is part of
    /// its ring names, which limits the instance to 9 bytes (`ENAMETOOLONG`).
    Ring,
    /// `net_null`: rx returns packets of 64 bytes allocated from the rx pool, tx frees what
    /// it gets. No rte_flow.
    Null,
    /// `net_af_packet`: a Linux interface through `AF_PACKET` memory-mapped rings (needs
    /// `CAP_NET_RAW` and an existing interface). No rte_flow.
    AfPacket {
        /// The Linux interface.
        iface: &'a str,
        /// Rx/tx queue pairs (one socket each).
        queue_pairs: u16,
    },
    /// `net_tap`: creates a Linux TAP interface (needs `/dev/net/tun`). Its rte_flow
    /// translates rules to TC flower filters, so creating rules needs the kernel's
    /// `sch_multiq` and `cls_flower`; validation is parsing only.
    Tap {
        /// Name of the TAP interface to create.
        iface: &'a str,
    },
}

impl Vdev<'_> {
    /// The driver name, which is also the device name's prefix.
    pub fn driver(&self) -> &'static str {
        match self {
            Vdev::Ring => "net_ring",
            Vdev::Null => "net_null",
            Vdev::AfPacket { .. } => "net_af_packet",
            Vdev::Tap { .. } => "net_tap",
        }
    }

    /// Creates the device `<driver><instance>` (e.g. `net_ring0`) and returns its port.
    ///
    /// `instance` distinguishes devices of one driver: ASCII letters, digits and `_`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bad instance or interface name; [`Error::Vdev`] when
    /// the driver refuses (`EEXIST` for a name in use; EAL's log says more).
    pub fn create(&self, eal: &Eal, instance: &str) -> Result<PortId, Error> {
        let name = format!("{}{instance}", self.driver());
        let instance_ok = !instance.is_empty()
            && instance
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !instance_ok || name.len() >= dpdk_sys::RTE_DEV_NAME_MAX_LEN as usize {
            return Err(Error::InvalidArgument {
                what: "vdev instance",
                reason: format!(
                    "{instance:?}: use ASCII letters, digits and '_', for a name shorter than {} \
                     bytes",
                    dpdk_sys::RTE_DEV_NAME_MAX_LEN
                ),
            });
        }
        let args = match self {
            Vdev::Ring | Vdev::Null => String::new(),
            Vdev::AfPacket { iface, queue_pairs } => {
                check_iface(iface)?;
                format!("iface={iface},qpairs={queue_pairs}")
            }
            Vdev::Tap { iface } => {
                check_iface(iface)?;
                format!("iface={iface}")
            }
        };
        let c_name = CString::new(name.as_str()).expect("checked: no NUL in the name");
        let c_args = CString::new(args.as_str()).expect("checked: no NUL in the arguments");
        Errno::clear();
        // SAFETY: both are valid C strings for the duration of the call (DPDK copies them);
        // the EAL is running.
        let ret = unsafe { dpdk_sys::rte_vdev_init(c_name.as_ptr(), c_args.as_ptr()) };
        if ret != 0 {
            // The bus returns -errno for its own checks (EEXIST, EINVAL), but a driver's
            // probe often returns -1 and leaves the reason, if any, in rte_errno.
            let errno = if ret == -1 {
                Some(Errno::last()).filter(|e| e.code() != 0)
            } else {
                Some(Errno::from_ret(ret))
            };
            return Err(Error::Vdev { name, args, errno });
        }
        PortId::by_name(eal, &name)
    }
}

/// A Linux interface name that cannot smuggle in other device arguments.
fn check_iface(iface: &str) -> Result<(), Error> {
    // IFNAMSIZ is 16 with the NUL.
    let ok = (1..16).contains(&iface.len())
        && iface
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: "interface name",
            reason: format!(
                "{iface:?}: 1 to 15 ASCII letters, digits, '_', '-' or '.' (',' and '=' would \
                 be read as more device arguments)"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_cannot_carry_extra_arguments() {
        assert!(check_iface("veth-a.1").is_ok());
        for bad in [
            "",
            "a,qpairs=8",
            "x=y",
            "sixteen_chars_ab",
            "with space",
            "ü",
        ] {
            let err = check_iface(bad).expect_err(bad);
            assert!(
                err.to_string().starts_with("invalid interface name: "),
                "{err}"
            );
        }
    }
}
