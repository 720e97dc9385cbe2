//! A device program decoded from arbitrary bytes: it must be refused with an error or accepted
//! as a valid program — never panic — and an accepted program must re-encode to the same
//! content and judge packets without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_program::{DeviceProgram, Packet, Protocol};

fuzz_target!(|data: &[u8]| {
    let Ok(program) = serde_json::from_slice::<DeviceProgram>(data) else {
        return;
    };
    let again: DeviceProgram =
        serde_json::from_str(&serde_json::to_string(&program).expect("serializes"))
            .expect("a program's own encoding decodes");
    assert_eq!(again.hash(), program.hash());
    let addresses: Vec<_> = program
        .endpoints()
        .iter()
        .flat_map(|e| e.addresses.iter().copied())
        .chain(["192.0.2.1".parse().unwrap()])
        .collect();
    for (i, &src) in addresses.iter().enumerate() {
        let dst = addresses[(i + 1) % addresses.len()];
        for protocol in [Protocol::TCP, Protocol::UDP, Protocol::ICMP] {
            let _ = program.evaluate(&Packet {
                src,
                dst,
                protocol,
                src_port: data.len() as u16,
                dst_port: 80,
            });
        }
    }
});
