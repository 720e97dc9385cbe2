//! `parse_documents` on arbitrary UTF-8: it must return a result, never panic, overflow the
//! stack or run away with memory.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(policies) = palisade_k8s::parse_documents(text, "fuzz") {
        // What parses must also pass validation (parsing validates), and serialize.
        for policy in &policies {
            assert!(policy.validate().is_ok(), "{policy:?}");
        }
    }
});
