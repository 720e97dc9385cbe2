//! A program update decoded from arbitrary bytes, as a device receives it: it must be
//! refused with an error or rebuilt into a valid program whose hash is the update's —
//! never panic — whether the device runs nothing or a base program.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use palisade_api::delta::receive;
use palisade_api::pb::control::v1::ProgramUpdate;
use palisade_program::*;
use prost::Message;

fn base() -> &'static DeviceProgram {
    static BASE: OnceLock<DeviceProgram> = OnceLock::new();
    BASE.get_or_init(|| {
        DeviceProgram::new(ProgramParts {
            format: FORMAT_VERSION,
            device: "dpu-1".into(),
            generation: 1,
            endpoints: vec![Endpoint {
                name: "p/w/eth0".into(),
                addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))],
            }],
            address_sets: vec![AddressSet {
                name: "s".into(),
                prefixes: PrefixSet::from_prefixes([Prefix::ANY_V4]),
            }],
            tiers: vec![Tier {
                kind: TierKind::Application,
                rules: vec![],
                defaults: vec![TierDefaults::both(Action::Deny)],
            }],
            foreign: Action::Allow,
        })
        .expect("valid base")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(update) = ProgramUpdate::decode(data) else {
        return;
    };
    for current in [None, Some(base())] {
        if let Ok(program) = receive(&update, current) {
            assert_eq!(program.hash().0.as_slice(), update.hash.as_slice());
            assert_eq!(program.generation(), update.generation);
        }
    }
});
