//! The loader reads untrusted text (profiles supplied by operators): whatever the input,
//! it answers with a profile or an error, never a panic.

use palisade_hw_profiles::load_str;
use proptest::prelude::*;

const SHIPPED: [&str; 3] = [
    include_str!("../profiles/connectx-6-dx.yaml"),
    include_str!("../profiles/e810.yaml"),
    include_str!("../profiles/sim-large.yaml"),
];

/// Text made of the characters YAML gives meaning to, so the parser goes deep.
fn yamlish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("\n".to_string()),
            Just("  ".to_string()),
            Just("- ".to_string()),
            Just(": ".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just(", ".to_string()),
            Just("&a ".to_string()),
            Just("*a".to_string()),
            Just("value".to_string()),
            Just("source".to_string()),
            Just("\"".to_string()),
            Just("0x1f".to_string()),
            Just("-1".to_string()),
            Just("18446744073709551616".to_string()),
            "[a-z_]{1,8}",
        ],
        0..64,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = load_str(&text, "fuzz.yaml");
    }

    #[test]
    fn yaml_shaped_text_never_panics(text in yamlish()) {
        let _ = load_str(&text, "fuzz.yaml");
    }

    #[test]
    fn damaged_profiles_never_panic(
        which in 0..SHIPPED.len(),
        cut in any::<prop::sample::Index>(),
        len in 0usize..40,
        insert in "[ -~\n]{0,12}",
    ) {
        let text = SHIPPED[which];
        let at = cut.index(text.len());
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let end = (at + len).min(text.len());
        let end = (end..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
        let damaged = format!("{}{}{}", &text[..at], insert, &text[end..]);
        if let Err(e) = load_str(&damaged, "damaged.yaml") {
            prop_assert!(!e.problems.is_empty());
            prop_assert!(e.to_string().starts_with("damaged.yaml"));
        }
    }
}
