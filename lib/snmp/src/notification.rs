//! The notifications of PALISADE-MIB, as the varbinds a trap carries.

use async_snmp::{Oid, Value, VarBind};

use crate::layout::palisade;

/// A notification of PALISADE-MIB, sent with [`SnmpHandle::send_trap`](crate::SnmpHandle::send_trap).
///
/// Each is sent as an SNMPv2 trap whose varbinds follow `sysUpTime.0` and
/// `snmpTrapOID.0`: the notification's objects, each with instance `.0`. Text longer
/// than a DisplayString's 255 octets is cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// `palisadeApplyFailed`: a device failed to apply a generation and keeps enforcing
    /// the previous one.
    ApplyFailed {
        /// `palisadeNotifDevice`: the device's name.
        device: String,
        /// `palisadeNotifGeneration`: the generation it failed to apply.
        generation: u64,
        /// `palisadeNotifReason`: why, for a person to read.
        reason: String,
    },
    /// `palisadeHardwareTableFull`: a device's hardware flow table is full.
    HardwareTableFull {
        /// `palisadeNotifDevice`: the device's name.
        device: String,
        /// `palisadeNotifTableUsed`: entries in use.
        used: u64,
        /// `palisadeNotifTableCapacity`: entries the table holds.
        capacity: u64,
    },
    /// `palisadeDeviceLost`: the fleet manager lost its connection to a device.
    DeviceLost {
        /// `palisadeNotifDevice`: the device's name.
        device: String,
    },
}

impl Notification {
    /// The notification's OID (the value of `snmpTrapOID.0`) and its varbinds.
    pub(crate) fn to_varbinds(&self) -> (Oid, Vec<VarBind>) {
        let var = |object: &[u32], value: Value| {
            VarBind::new(Oid::new(object.iter().copied().chain([0])), value)
        };
        let text = |s: &str| crate::tree::display_string(s);
        let gauge = crate::tree::gauge;
        match self {
            Notification::ApplyFailed {
                device,
                generation,
                reason,
            } => (
                Oid::from_slice(palisade::APPLY_FAILED),
                vec![
                    var(palisade::NOTIF_DEVICE, text(device)),
                    var(palisade::NOTIF_GENERATION, Value::Counter64(*generation)),
                    var(palisade::NOTIF_REASON, text(reason)),
                ],
            ),
            Notification::HardwareTableFull {
                device,
                used,
                capacity,
            } => (
                Oid::from_slice(palisade::HARDWARE_TABLE_FULL),
                vec![
                    var(palisade::NOTIF_DEVICE, text(device)),
                    var(palisade::NOTIF_TABLE_USED, gauge(*used)),
                    var(palisade::NOTIF_TABLE_CAPACITY, gauge(*capacity)),
                ],
            ),
            Notification::DeviceLost { device } => (
                Oid::from_slice(palisade::DEVICE_LOST),
                vec![var(palisade::NOTIF_DEVICE, text(device))],
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varbinds_name_the_objects_with_instance_zero() {
        let (oid, varbinds) = Notification::ApplyFailed {
            device: "dpu-7".into(),
            generation: 9,
            reason: "table full".into(),
        }
        .to_varbinds();
        assert_eq!(oid.to_string(), "1.3.6.1.4.1.32473.1.0.1");
        let names: Vec<String> = varbinds.iter().map(|v| v.oid.to_string()).collect();
        assert_eq!(
            names,
            [
                "1.3.6.1.4.1.32473.1.1.3.1.0",
                "1.3.6.1.4.1.32473.1.1.3.2.0",
                "1.3.6.1.4.1.32473.1.1.3.3.0"
            ]
        );
        assert_eq!(varbinds[1].value, Value::Counter64(9));

        let (oid, varbinds) = Notification::HardwareTableFull {
            device: "d".into(),
            used: 1 << 40,
            capacity: 4096,
        }
        .to_varbinds();
        assert_eq!(oid.to_string(), "1.3.6.1.4.1.32473.1.0.2");
        assert_eq!(varbinds[1].value, Value::Gauge32(u32::MAX));
        assert_eq!(varbinds[2].value, Value::Gauge32(4096));
    }
}
