//! Every datagram an SNMP agent of ours receives goes through async-snmp's message decoder
//! (community and v3 messages, BER, PDUs, varbinds) before any of our code: whatever the
//! bytes, it must return an error, never panic or run away with memory — with the bounded
//! interoperability defaults the agent uses and with the strict configuration.
#![no_main]

use async_snmp::compatibility::DecodeConfig;
use async_snmp::message::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    let _ = Message::decode(bytes.clone(), DecodeConfig::default());
    let _ = Message::decode(bytes, DecodeConfig::STRICT);
});
