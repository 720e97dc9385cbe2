//! Broken profiles are refused, and the error says where, which field, and what was
//! expected. Each case edits a shipped profile in one place.

use palisade_hw_profiles::{
    ProfileError, builtin, builtins, check_unique, load_dir, load_file, load_str,
};

const SMALL: &str = include_str!("../profiles/sim-small.yaml");
const LARGE: &str = include_str!("../profiles/sim-large.yaml");
const E810: &str = include_str!("../profiles/e810.yaml");
const CX6: &str = include_str!("../profiles/connectx-6-dx.yaml");
const PENSANDO: &str = include_str!("../profiles/pensando-dsc.yaml");

const SMALL_CAPACITY: &str =
    r#"capacity: {value: 256, source: "hw-profiles/SCHEMA.md, Simulated profiles: sim-small"}"#;

/// Replaces exactly one occurrence of `from`.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "`{from}` must occur once");
    text.replacen(from, to, 1)
}

/// Loads `text`, expects a refusal mentioning `expected`, returns the error.
fn refused(text: &str, expected: &str) -> ProfileError {
    match load_str(text, "case.yaml") {
        Ok(p) => panic!("`{}` was accepted; expected: {expected}", p.name()),
        Err(e) => {
            assert!(e.mentions(expected), "expected `{expected}` in:\n{e}");
            assert!(!e.problems.is_empty());
            e
        }
    }
}

fn line_of(text: &str, needle: &str) -> u64 {
    text.lines().position(|l| l.contains(needle)).unwrap() as u64 + 1
}

#[test]
fn missing_source_names_the_field_and_the_line() {
    let text = edit(SMALL, SMALL_CAPACITY, "capacity: {value: 256}");
    let e = refused(&text, "has no `source` or `estimate`");
    let p = &e.problems[0];
    assert_eq!(p.path, "offload.engines[0].capacity");
    assert_eq!(p.line, Some(line_of(&text, "capacity: {value: 256}")));
    assert!(p.column.is_some());
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("case.yaml:{}:", p.line.unwrap())),
        "{shown}"
    );
    assert!(
        shown.contains("offload.engines[0].capacity: has no `source`"),
        "{shown}"
    );
}

#[test]
fn source_and_estimate_together_are_refused() {
    let text = edit(
        SMALL,
        SMALL_CAPACITY,
        r#"capacity: {value: 256, source: "a", estimate: "b"}"#,
    );
    refused(&text, "has both `source` and `estimate`");
}

#[test]
fn empty_source_is_refused() {
    let text = edit(
        SMALL,
        SMALL_CAPACITY,
        r#"capacity: {value: 256, source: "  "}"#,
    );
    refused(&text, "`source` is empty");
}

#[test]
fn bare_number_is_refused_with_the_fact_form() {
    let text = edit(SMALL, SMALL_CAPACITY, "capacity: 256");
    let e = refused(&text, "every value is a fact");
    assert_eq!(e.problems[0].line, Some(line_of(&text, "capacity: 256")));
}

#[test]
fn unknown_field_is_refused_where_it_is() {
    let text = edit(
        SMALL,
        "      api: {value: sync",
        "      colour: blue\n      api: {value: sync",
    );
    let e = refused(&text, "unknown field `colour`");
    assert_eq!(e.problems[0].line, Some(line_of(&text, "colour: blue")));
}

#[test]
fn unknown_match_kind_is_refused() {
    let text = edit(
        SMALL,
        r#"flags: &none {value: none,"#,
        r#"flags: &none {value: wildcard,"#,
    );
    refused(
        &text,
        "unknown variant `wildcard`, expected one of none, exact, prefix, any-mask",
    );
}

#[test]
fn missing_match_field_is_refused() {
    let text = edit(SMALL, "          next_header: *exact\n", "");
    refused(&text, "missing field `next_header`");
}

#[test]
fn zero_capacity_is_refused() {
    let text = edit(SMALL, "capacity: {value: 256,", "capacity: {value: 0,");
    refused(
        &text,
        "is 0: an rte_flow engine must hold at least one rule",
    );
}

#[test]
fn zero_insertion_rate_is_refused() {
    let text = edit(
        SMALL,
        "insertion_rate: {value: 10000,",
        "insertion_rate: {value: 0,",
    );
    refused(&text, "expected the sustained rules per second");
}

#[test]
fn template_api_on_a_pmd_without_it_is_refused() {
    let text = edit(
        E810,
        "  template: {value: false,",
        "  template: {value: true,",
    );
    let e = refused(&text, "only mlx5 implements it, not `ice`");
    assert!(e.mentions("no engine uses the template API"));
    let claim = e
        .problems
        .iter()
        .find(|p| p.path == "rte_flow.template")
        .unwrap();
    assert_eq!(
        claim.line,
        Some(line_of(&text, "  template: {value: true,"))
    );
}

#[test]
fn engine_on_an_api_the_pmd_lacks_is_refused() {
    let text = edit(
        CX6,
        "  template: {value: true,",
        "  template: {value: false,",
    );
    let e = refused(&text, "is `template`, but rte_flow.template is false");
    assert_eq!(e.problems[0].path, "offload.engines[1].api");
}

#[test]
fn rte_flow_on_a_pmd_without_it_is_refused() {
    let text = edit(
        PENSANDO,
        "  sync:\n    value: false",
        "  sync:\n    value: true",
    );
    let e = refused(
        &text,
        "the `ionic` PMD of DPDK 22.11 has no rte_flow support",
    );
    assert!(e.mentions("offload"));
}

fn small_offload() -> &'static str {
    &SMALL[SMALL.find("offload:").unwrap()..]
}

#[test]
fn software_only_profile_listing_match_kinds_is_refused() {
    let offload = small_offload()
        .replace("*small-no", "{value: false, source: s}")
        .replace("*small", "{value: true, source: s}");
    let case = format!("{PENSANDO}\n{offload}");
    let e = refused(&case, "software-only profile");
    assert!(e.mentions("lists hardware match kinds"));
    assert!(e.mentions("offload.engines[0].matches.ipv4.src"));
}

#[test]
fn software_only_profile_with_an_empty_offload_is_refused() {
    let offload = small_offload()
        .replace("*small-no", "{value: false, source: s}")
        .replace("*small", "{value: true, source: s}")
        .replace("*exact", "{value: none, source: s}")
        .replace("*prefix", "{value: none, source: s}")
        .replace("&exact {value: exact,", "{value: none,")
        .replace("&prefix {value: prefix,", "{value: none,");
    let case = format!("{PENSANDO}\n{offload}");
    let e = load_str(&case, "case.yaml").unwrap_err();
    assert!(e.mentions("software-only"), "{e}");
}

#[test]
fn offloading_profile_without_offload_section_is_refused() {
    let text = &SMALL[..SMALL.find("offload:").unwrap()];
    refused(text, "is missing: a profile whose PMD has an rte_flow API");
}

#[test]
fn duplicate_engine_names_are_refused() {
    let engine = &SMALL[SMALL.find("    - name: table").unwrap()..];
    let text = format!("{SMALL}{engine}");
    refused(&text, "`table` is used by an earlier engine");
}

#[test]
fn duplicate_pci_ids_are_refused() {
    let text = edit(
        CX6,
        "      - {vendor: 0x15b3, device: 0x101e, function: vf}",
        "      - {vendor: 0x15b3, device: 0x101d, function: pf}",
    );
    refused(&text, "lists 15b3:101d twice");
}

#[test]
fn hardware_without_pci_ids_is_refused() {
    let text = edit(SMALL, "kind: simulated", "kind: hardware");
    refused(&text, "a hardware profile names the PCI IDs");
}

#[test]
fn native_port_ranges_on_hardware_are_refused() {
    let text = edit(E810, "    value: prefix-mask\n", "    value: native\n");
    refused(
        &text,
        "no hardware PMD of DPDK 22.11 accepts `last` on L4 ports",
    );
}

#[test]
fn prefix_mask_without_maskable_ports_is_refused() {
    let text = edit(
        SMALL,
        "port_ranges: {value: per-value,",
        "port_ranges: {value: prefix-mask,",
    );
    refused(&text, "expected `per-value`");
}

#[test]
fn jump_must_agree_with_the_engines() {
    let text = edit(
        LARGE,
        "    jump: *large\n    root:",
        "    jump: {value: false, source: s}\n    root:",
    );
    refused(&text, "the two must agree");
}

#[test]
fn conntrack_capacity_must_agree_with_the_engines() {
    let text = edit(
        LARGE,
        "capacity: {value: 1048576, source: \"hw-profiles/SCHEMA.md, Simulated profiles: sim-large\"}\n  engines",
        "capacity: {value: 0, source: s}\n  engines",
    );
    refused(&text, "an engine supports the `conntrack` action");
}

#[test]
fn group_layout_must_be_consistent() {
    let text = edit(
        SMALL,
        "  port_ranges:",
        "    non_root:\n      priorities: {value: 2, source: s}\n  port_ranges:",
    );
    refused(&text, "there is no group but the root");
    let text = edit(SMALL, "    count: {value: 1,", "    count: {value: 4,");
    refused(&text, "say what groups 1 and up allow");
    let text = edit(
        SMALL,
        "      priorities: {value: 2,",
        "      priorities: {value: 0,",
    );
    refused(
        &text,
        "is 0: a group that takes rules has at least one priority level",
    );
}

#[test]
fn refusing_an_action_no_engine_has_is_refused() {
    let text = edit(
        SMALL,
        "      priorities: {value: 2, source: \"hw-profiles/SCHEMA.md, Simulated profiles: sim-small\"}",
        "      priorities: {value: 2, source: s}\n      unsupported_actions: {value: [sample], source: s}",
    );
    refused(&text, "lists `sample`, which no engine supports anywhere");
}

#[test]
fn other_dpdk_releases_are_refused() {
    let text = edit(
        E810,
        r#"dpdk: {value: "22.11","#,
        r#"dpdk: {value: "23.11","#,
    );
    refused(&text, "expected `22.11`");
}

#[test]
fn bad_names_are_refused() {
    let text = edit(SMALL, "name: sim-small", "name: Sim_Small");
    refused(&text, "is not a profile name");
    let text = edit(SMALL, "    - name: table", "    - name: Table 1");
    refused(&text, "is not an engine name");
}

#[test]
fn file_name_must_match_the_profile_name() {
    let dir = std::env::temp_dir().join(format!("hwp-name-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sim-tiny.yaml");
    std::fs::write(&path, SMALL).unwrap();
    let e = load_file(&path).unwrap_err();
    assert!(
        e.mentions("does not match the file name: expected `sim-tiny`"),
        "{e}"
    );
    assert!(e.origin.ends_with("sim-tiny.yaml"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn duplicate_profile_names_are_refused() {
    let dir = std::env::temp_dir().join(format!("hwp-dup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("sim-small.yaml"), SMALL).unwrap();
    assert_eq!(load_dir(&dir).unwrap().len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();

    let mut profiles = builtins().unwrap();
    profiles.push(builtin("sim-small").unwrap());
    let e = check_unique(&profiles).unwrap_err();
    assert!(e.mentions("profile names must be unique"), "{e}");
}

#[test]
fn unreadable_and_empty_inputs_are_refused() {
    let e = load_file("/nonexistent/e810.yaml").unwrap_err();
    assert!(e.mentions("cannot read the file"), "{e}");
    refused("", "the file is empty");
    refused("name: a\nname: b\n", "duplicate mapping key");
    refused("- 1\n", "expected");
    let e = builtin("e820").unwrap_err();
    assert!(e.mentions("no shipped profile is called `e820`"), "{e}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = edit(SMALL, SMALL_CAPACITY, "capacity: {value: 0}");
    let text = edit(
        &text,
        "insertion_rate: {value: 10000,",
        "insertion_rate: {value: 0,",
    );
    let e = refused(&text, "has no `source`");
    assert!(e.mentions("must hold at least one rule"));
    assert!(e.mentions("sustained rules per second"));
    assert_eq!(e.problems.len(), 3, "{e}");
    assert_eq!(e.to_string().lines().count(), 3);
}
