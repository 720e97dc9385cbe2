//! The OID of every object the agent serves or sends. `mibs/PALISADE-MIB.txt` defines
//! the same layout for PALISADE-MIB; a test checks the two against net-snmp.

/// SNMPv2-MIB (RFC 3418) `system` scalars.
pub(crate) mod system {
    pub(crate) const DESCR: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 1];
    pub(crate) const OBJECT_ID: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 2];
    pub(crate) const UP_TIME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 3];
    pub(crate) const CONTACT: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 4];
    pub(crate) const NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 5];
    pub(crate) const LOCATION: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 6];
    pub(crate) const SERVICES: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 7];
}

/// IF-MIB (RFC 2863) `ifNumber`, and the columns of `ifEntry` served.
pub(crate) mod if_mib {
    pub(crate) const IF_NUMBER: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 1];
    pub(crate) const IF_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1];
    pub(crate) const IF_INDEX: u32 = 1;
    pub(crate) const IF_DESCR: u32 = 2;
    pub(crate) const IF_TYPE: u32 = 3;
    pub(crate) const IF_MTU: u32 = 4;
    pub(crate) const IF_SPEED: u32 = 5;
    pub(crate) const IF_PHYS_ADDRESS: u32 = 6;
    pub(crate) const IF_ADMIN_STATUS: u32 = 7;
    pub(crate) const IF_OPER_STATUS: u32 = 8;
    pub(crate) const IF_LAST_CHANGE: u32 = 9;
    pub(crate) const IF_IN_OCTETS: u32 = 10;
    pub(crate) const IF_IN_UCAST_PKTS: u32 = 11;
    pub(crate) const IF_IN_DISCARDS: u32 = 13;
    pub(crate) const IF_IN_ERRORS: u32 = 14;
    pub(crate) const IF_OUT_OCTETS: u32 = 16;
    pub(crate) const IF_OUT_UCAST_PKTS: u32 = 17;
    pub(crate) const IF_OUT_DISCARDS: u32 = 19;
    pub(crate) const IF_OUT_ERRORS: u32 = 20;

    /// `ifXEntry` and its columns served.
    pub(crate) const IF_X_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1];
    pub(crate) const IF_NAME: u32 = 1;
    pub(crate) const IF_HC_IN_OCTETS: u32 = 6;
    pub(crate) const IF_HC_IN_UCAST_PKTS: u32 = 7;
    pub(crate) const IF_HC_OUT_OCTETS: u32 = 10;
    pub(crate) const IF_HC_OUT_UCAST_PKTS: u32 = 11;
    pub(crate) const IF_HIGH_SPEED: u32 = 15;
    pub(crate) const IF_ALIAS: u32 = 18;
}

/// PALISADE-MIB, under `palisadeMIB` = 1.3.6.1.4.1.32473.1.
pub(crate) mod palisade {
    pub(crate) const DEVICE_GENERATION: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 1, 1];
    pub(crate) const DEVICE_PROGRAM_HASH: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 1, 2];
    pub(crate) const DEVICE_SESSIONS_ACTIVE: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 1, 3];
    pub(crate) const DEVICE_SESSIONS_CREATED: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 1, 4];
    pub(crate) const DEVICE_SESSIONS_DENIED: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 1, 5];
    pub(crate) const DEVICE_RULES_HARDWARE: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 1, 6];
    pub(crate) const DEVICE_RULES_SOFTWARE: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 1, 7];
    pub(crate) const DEVICE_HW_TABLE_USED: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 1, 8];
    pub(crate) const DEVICE_HW_TABLE_CAPACITY: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 1, 9];
    pub(crate) const DEVICE_MANAGER_CONNECTED: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 1, 10];

    pub(crate) const FLEET_DEVICES: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 2, 1];
    pub(crate) const FLEET_DEVICES_IN_SYNC: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 2, 2];
    pub(crate) const FLEET_DEVICES_CONNECTED: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 2, 3];
    pub(crate) const FLEET_GENERATION: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 2, 4];
    /// `palisadeFleetDeviceEntry` and its columns.
    pub(crate) const FLEET_DEVICE_ENTRY: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 2, 5, 1];
    pub(crate) const FLEET_DEVICE_NAME: u32 = 2;
    pub(crate) const FLEET_DEVICE_STATE: u32 = 3;
    pub(crate) const FLEET_DEVICE_ACKED_GENERATION: u32 = 4;
    pub(crate) const FLEET_DEVICE_DESIRED_GENERATION: u32 = 5;
    pub(crate) const FLEET_DEVICE_LAST_SEEN: u32 = 6;

    pub(crate) const NOTIF_DEVICE: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 3, 1];
    pub(crate) const NOTIF_GENERATION: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 3, 2];
    pub(crate) const NOTIF_REASON: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 3, 3];
    pub(crate) const NOTIF_TABLE_USED: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 3, 4];
    pub(crate) const NOTIF_TABLE_CAPACITY: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 1, 3, 5];

    pub(crate) const APPLY_FAILED: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 0, 1];
    pub(crate) const HARDWARE_TABLE_FULL: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 0, 2];
    pub(crate) const DEVICE_LOST: &[u32] = &[1, 3, 6, 1, 4, 1, 32473, 1, 0, 3];

    /// The name PALISADE-MIB gives each object above, for the test that checks the MIB
    /// file against this layout.
    #[cfg(test)]
    pub(crate) fn names() -> Vec<(&'static str, Vec<u32>)> {
        let column = |entry: &[u32], column: u32| [entry, &[column]].concat();
        vec![
            ("palisadeDeviceGeneration", DEVICE_GENERATION.to_vec()),
            ("palisadeDeviceProgramHash", DEVICE_PROGRAM_HASH.to_vec()),
            (
                "palisadeDeviceSessionsActive",
                DEVICE_SESSIONS_ACTIVE.to_vec(),
            ),
            (
                "palisadeDeviceSessionsCreated",
                DEVICE_SESSIONS_CREATED.to_vec(),
            ),
            (
                "palisadeDeviceSessionsDenied",
                DEVICE_SESSIONS_DENIED.to_vec(),
            ),
            (
                "palisadeDeviceRulesHardware",
                DEVICE_RULES_HARDWARE.to_vec(),
            ),
            (
                "palisadeDeviceRulesSoftware",
                DEVICE_RULES_SOFTWARE.to_vec(),
            ),
            ("palisadeDeviceHwTableUsed", DEVICE_HW_TABLE_USED.to_vec()),
            (
                "palisadeDeviceHwTableCapacity",
                DEVICE_HW_TABLE_CAPACITY.to_vec(),
            ),
            (
                "palisadeDeviceManagerConnected",
                DEVICE_MANAGER_CONNECTED.to_vec(),
            ),
            ("palisadeFleetDevices", FLEET_DEVICES.to_vec()),
            ("palisadeFleetDevicesInSync", FLEET_DEVICES_IN_SYNC.to_vec()),
            (
                "palisadeFleetDevicesConnected",
                FLEET_DEVICES_CONNECTED.to_vec(),
            ),
            ("palisadeFleetGeneration", FLEET_GENERATION.to_vec()),
            ("palisadeFleetDeviceEntry", FLEET_DEVICE_ENTRY.to_vec()),
            (
                "palisadeFleetDeviceName",
                column(FLEET_DEVICE_ENTRY, FLEET_DEVICE_NAME),
            ),
            (
                "palisadeFleetDeviceState",
                column(FLEET_DEVICE_ENTRY, FLEET_DEVICE_STATE),
            ),
            (
                "palisadeFleetDeviceAckedGeneration",
                column(FLEET_DEVICE_ENTRY, FLEET_DEVICE_ACKED_GENERATION),
            ),
            (
                "palisadeFleetDeviceDesiredGeneration",
                column(FLEET_DEVICE_ENTRY, FLEET_DEVICE_DESIRED_GENERATION),
            ),
            (
                "palisadeFleetDeviceLastSeen",
                column(FLEET_DEVICE_ENTRY, FLEET_DEVICE_LAST_SEEN),
            ),
            ("palisadeNotifDevice", NOTIF_DEVICE.to_vec()),
            ("palisadeNotifGeneration", NOTIF_GENERATION.to_vec()),
            ("palisadeNotifReason", NOTIF_REASON.to_vec()),
            ("palisadeNotifTableUsed", NOTIF_TABLE_USED.to_vec()),
            ("palisadeNotifTableCapacity", NOTIF_TABLE_CAPACITY.to_vec()),
            ("palisadeApplyFailed", APPLY_FAILED.to_vec()),
            ("palisadeHardwareTableFull", HARDWARE_TABLE_FULL.to_vec()),
            ("palisadeDeviceLost", DEVICE_LOST.to_vec()),
            ("palisadeMIB", crate::oids::PALISADE_MIB.arcs().to_vec()),
            (
                "palisadeDevice",
                crate::oids::PALISADE_DEVICE.arcs().to_vec(),
            ),
            ("palisadeFleet", crate::oids::PALISADE_FLEET.arcs().to_vec()),
            (
                "palisadeVRouter",
                crate::oids::PALISADE_VROUTER.arcs().to_vec(),
            ),
            (
                "palisadeFleetManager",
                crate::oids::PALISADE_FLEET_MANAGER.arcs().to_vec(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    //! The MIB file against the layout, through net-snmp's MIB parser.

    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn crate_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// `snmptranslate` with only the given MIB directories and PALISADE-MIB loaded, and
    /// no configuration file that could load others. `None` when net-snmp is missing.
    /// Its persistent directory is private and made beforehand: on a fresh machine
    /// net-snmp otherwise creates `/var/lib/snmp/cert_indexes` and says so on stderr,
    /// which the tests read as a complaint about the MIB.
    fn snmptranslate(mib_dirs: &[PathBuf], args: &[&str]) -> Option<(bool, String, String)> {
        let conf = tempfile::tempdir().unwrap();
        let persistent = conf.path().join("persistent");
        std::fs::create_dir_all(persistent.join("cert_indexes")).unwrap();
        let path = std::env::join_paths(mib_dirs).unwrap();
        let output = match Command::new("snmptranslate")
            .env("SNMPCONFPATH", conf.path())
            .env("SNMP_PERSISTENT_DIR", &persistent)
            .env("HOME", conf.path())
            .arg("-M")
            .arg(&path)
            .args(["-m", "PALISADE-MIB"])
            .args(args)
            .output()
        {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("running snmptranslate: {e}"),
        };
        Some((
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }

    /// Debian's net-snmp comes without the IETF MIBs PALISADE-MIB imports from; the
    /// tests bring stand-ins that define what it uses. Where the real modules are
    /// installed (snmp-mibs-downloader), the test runs against them too.
    fn mib_paths() -> Vec<Vec<PathBuf>> {
        let ours = crate_dir().join("mibs");
        let mut paths = vec![vec![ours.clone(), crate_dir().join("tests/smi-stubs")]];
        let ietf = Path::new("/usr/share/snmp/mibs/ietf");
        if ietf.join("SNMPv2-SMI").exists() {
            paths.push(vec![
                ours,
                ietf.to_path_buf(),
                PathBuf::from("/usr/share/snmp/mibs/iana"),
            ]);
        }
        paths
    }

    fn assert_clean(stderr: &str) {
        assert!(
            stderr.trim().is_empty(),
            "net-snmp complained about PALISADE-MIB:\n{stderr}"
        );
    }

    #[test]
    fn mib_file_loads_and_matches_the_layout() {
        for dirs in mib_paths() {
            let Some((ok, tree, stderr)) = snmptranslate(&dirs, &["-Tp", "-IR", "palisadeMIB"])
            else {
                println!("!!! SKIPPED: snmptranslate not found (Debian package `snmp`)");
                return;
            };
            assert!(ok, "snmptranslate -Tp failed:\n{stderr}");
            assert_clean(&stderr);
            assert!(tree.contains("palisadeFleetDeviceEntry(1)"), "{tree}");

            let names = super::palisade::names();
            let qualified: Vec<String> = names
                .iter()
                .map(|(name, _)| format!("PALISADE-MIB::{name}"))
                .collect();
            let mut args = vec!["-On"];
            args.extend(qualified.iter().map(String::as_str));
            let (ok, out, stderr) = snmptranslate(&dirs, &args).unwrap();
            assert!(ok, "snmptranslate -On failed:\n{stderr}");
            assert_clean(&stderr);
            let translated: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
            assert_eq!(translated.len(), names.len(), "{out}");
            for ((name, arcs), line) in names.iter().zip(translated) {
                let expected: String = arcs.iter().map(|arc| format!(".{arc}")).collect();
                assert_eq!(line.trim(), expected, "{name}");
            }
        }
    }

    #[test]
    fn mib_file_names_the_notifications_objects_and_syntax() {
        let dirs = &mib_paths()[0];
        let Some((ok, out, stderr)) =
            snmptranslate(dirs, &["-Td", "PALISADE-MIB::palisadeApplyFailed"])
        else {
            println!("!!! SKIPPED: snmptranslate not found (Debian package `snmp`)");
            return;
        };
        assert!(ok, "{stderr}");
        assert_clean(&stderr);
        for object in [
            "palisadeNotifDevice",
            "palisadeNotifGeneration",
            "palisadeNotifReason",
        ] {
            assert!(out.contains(object), "{out}");
        }
        let (ok, out, stderr) =
            snmptranslate(dirs, &["-Td", "PALISADE-MIB::palisadeFleetDeviceState"]).unwrap();
        assert!(ok, "{stderr}");
        assert!(
            out.contains("inSync(1)") && out.contains("neverConnected(5)"),
            "{out}"
        );
    }
}
