//! `lang::parse` on arbitrary UTF-8: it must never panic, every error must have a place,
//! and a text it accepts must print to a text that parses to the same objects.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_intent::lang;

fuzz_target!(|source: &str| {
    match lang::parse(source) {
        Ok(doc) => {
            let objects = doc.into_objects();
            let printed = lang::print(&objects);
            let reparsed = lang::parse(&printed).map(lang::Document::into_objects);
            assert_eq!(reparsed, Ok(objects), "printed:\n{printed}");
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(e.span.line >= 1 && e.span.column >= 1 && e.span.len >= 1);
                let _ = e.render("fuzz.pal", source);
            }
        }
    }
    let _ = lang::parse_rule(source);
});
