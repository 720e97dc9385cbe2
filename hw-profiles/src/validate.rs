//! From the file form ([`crate::raw`]) to a checked [`Profile`], collecting every problem
//! with its line, column and field path.

use std::collections::HashSet;

use serde_saphyr::Location;

use crate::dpdk;
use crate::error::{Problem, ProfileError};
use crate::fact::{Fact, Provenance};
use crate::model::{
    Action, ActionTable, Api, Conntrack, DeviceKind, Engine, GroupLimits, Groups, Identity,
    Incompatible, MatchKind, MatchTable, Offload, PciId, PortRangeStrategy, RteFlowApis,
};
use crate::profile::Profile;
use crate::raw::{F, RawEngine, RawGroupLimits, RawOffload, RawProfile};

struct Checker {
    problems: Vec<Problem>,
}

fn position(loc: &Location) -> (Option<u64>, Option<u64>) {
    if loc.line() == 0 {
        (None, None)
    } else {
        (Some(loc.line()), Some(loc.column()))
    }
}

impl Checker {
    fn report(&mut self, loc: &Location, path: &str, message: impl Into<String>) {
        let (line, column) = position(loc);
        self.problems.push(Problem {
            line,
            column,
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn text(&mut self, loc: &Location, path: &str, what: &str, text: Option<String>) -> String {
        match text {
            Some(t) if t.trim().is_empty() => {
                self.report(loc, path, format!("`{what}` is empty"));
                t
            }
            Some(t) => t,
            None => String::new(),
        }
    }

    /// Checks a fact's provenance and returns the public fact. A fact with a bad
    /// provenance still yields a value, so that the other checks can run; the problem is
    /// recorded and the profile as a whole is refused.
    fn fact<T>(&mut self, path: &str, raw: F<T>) -> Fact<T> {
        let loc = raw.referenced;
        let raw = raw.value;
        let source = self.text(&loc, path, "source", raw.source);
        let estimate = self.text(&loc, path, "estimate", raw.estimate);
        if raw.note.as_ref().is_some_and(|n| n.trim().is_empty()) {
            self.report(&loc, path, "`note` is empty");
        }
        let note = raw.note;
        let provenance = match (source.is_empty(), estimate.is_empty()) {
            (false, true) => Provenance::Source(source),
            (true, false) => Provenance::Estimate(estimate),
            (false, false) => {
                self.report(
                    &loc,
                    path,
                    "has both `source` and `estimate`: a value is either documented or estimated",
                );
                Provenance::Source(source)
            }
            (true, true) => {
                self.report(
                    &loc,
                    path,
                    "has no `source` or `estimate`: name the document (and version/section) that \
                     states the value, or give the reasoning behind the estimate",
                );
                Provenance::Source(String::new())
            }
        };
        Fact::new(raw.value, provenance, note)
    }
}

fn is_kebab(name: &str) -> bool {
    !name.is_empty()
        && name.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Checks a parsed profile. `expected_name`, when given, is the file stem the profile's
/// `name` must equal.
pub(crate) fn validate(
    raw: RawProfile,
    origin: &str,
    expected_name: Option<&str>,
) -> Result<Profile, ProfileError> {
    let mut c = Checker {
        problems: Vec::new(),
    };

    let name_loc = raw.name.referenced;
    let name = raw.name.value;
    if !is_kebab(&name) {
        c.report(
            &name_loc,
            "name",
            format!("`{name}` is not a profile name: expected lowercase words joined by `-`"),
        );
    }
    if let Some(expected) = expected_name.filter(|e| *e != name) {
        c.report(
            &name_loc,
            "name",
            format!("`{name}` does not match the file name: expected `{expected}`"),
        );
    }
    if raw.summary.trim().is_empty() {
        c.report(
            &name_loc,
            "summary",
            "is empty: say what the device is in a sentence",
        );
    }

    let kind = raw.kind;
    let identity = check_identity(&mut c, raw.identity, kind);
    let sync_loc = raw.rte_flow.sync.referenced;
    let template_loc = raw.rte_flow.template.referenced;
    let rte_flow = RteFlowApis {
        sync: c.fact("rte_flow.sync", raw.rte_flow.sync),
        template: c.fact("rte_flow.template", raw.rte_flow.template),
    };
    if kind == DeviceKind::Hardware {
        let pmd = identity.pmd.value().as_str();
        if rte_flow.sync.get() && !dpdk::SYNC_API_PMDS.contains(&pmd) {
            c.report(
                &sync_loc,
                "rte_flow.sync",
                format!(
                    "claims the synchronous rte_flow API, but the `{pmd}` PMD of DPDK {} has no \
                     rte_flow support",
                    dpdk::RELEASE
                ),
            );
        }
        if rte_flow.template.get() && !dpdk::TEMPLATE_API_PMDS.contains(&pmd) {
            c.report(
                &template_loc,
                "rte_flow.template",
                format!(
                    "claims the template/async rte_flow API, but in DPDK {} only {} implements \
                     it, not `{pmd}`",
                    dpdk::RELEASE,
                    dpdk::TEMPLATE_API_PMDS.join(", ")
                ),
            );
        }
    }

    let offload = match raw.offload {
        None => {
            if !rte_flow.none() {
                c.report(
                    &name_loc,
                    "offload",
                    "is missing: a profile whose PMD has an rte_flow API must describe what the \
                     hardware can hold",
                );
            }
            None
        }
        Some(section) => {
            let loc = section.referenced;
            let offload = check_offload(&mut c, section.value, kind, &rte_flow);
            if rte_flow.none() {
                let hardware_kinds: Vec<String> = offload
                    .engines
                    .iter()
                    .enumerate()
                    .flat_map(|(i, e)| {
                        crate::model::MatchField::ALL
                            .into_iter()
                            .filter(|f| e.match_kind(*f) != MatchKind::None)
                            .map(move |f| format!("offload.engines[{i}].matches.{f}"))
                    })
                    .collect();
                if hardware_kinds.is_empty() {
                    c.report(
                        &loc,
                        "offload",
                        "is present, but the profile is software-only (rte_flow.sync and \
                         rte_flow.template are false): remove the section",
                    );
                } else {
                    c.report(
                        &loc,
                        "offload",
                        format!(
                            "software-only profile (rte_flow.sync and rte_flow.template are \
                             false) lists hardware match kinds: {}",
                            hardware_kinds.join(", ")
                        ),
                    );
                }
            }
            Some(offload)
        }
    };

    if c.problems.is_empty() {
        Ok(Profile::new(
            name,
            kind,
            raw.summary,
            origin.to_string(),
            identity,
            rte_flow,
            offload,
        ))
    } else {
        c.problems
            .sort_by_key(|p| (p.line.unwrap_or(u64::MAX), p.column.unwrap_or(0)));
        Err(ProfileError {
            origin: origin.to_string(),
            problems: c.problems,
        })
    }
}

fn check_identity(c: &mut Checker, raw: crate::raw::RawIdentity, kind: DeviceKind) -> Identity {
    let pci_loc = raw.pci_ids.referenced;
    let dpdk_loc = raw.dpdk.referenced;
    let identity = Identity {
        vendor: c.fact("identity.vendor", raw.vendor),
        model: c.fact("identity.model", raw.model),
        pci_ids: {
            let f = c.fact("identity.pci_ids", raw.pci_ids);
            let ids = f
                .value()
                .iter()
                .map(|p| PciId {
                    vendor: p.vendor,
                    device: p.device,
                    subsystem_device: p.subsystem_device,
                    function: p.function,
                })
                .collect();
            Fact::new(ids, f.provenance().clone(), f.note().map(str::to_string))
        },
        pmd: c.fact("identity.pmd", raw.pmd),
        dpdk: c.fact("identity.dpdk", raw.dpdk),
    };
    for (label, value) in [
        ("identity.vendor", identity.vendor.value()),
        ("identity.model", identity.model.value()),
        ("identity.pmd", identity.pmd.value()),
    ] {
        if value.trim().is_empty() {
            c.report(&pci_loc, label, "is empty");
        }
    }
    let mut seen = HashSet::new();
    for id in identity.pci_ids.value() {
        if !seen.insert(*id) {
            c.report(&pci_loc, "identity.pci_ids", format!("lists {id} twice"));
        }
    }
    if kind == DeviceKind::Hardware && identity.pci_ids.value().is_empty() {
        c.report(
            &pci_loc,
            "identity.pci_ids",
            "is empty: a hardware profile names the PCI IDs its PMD binds to",
        );
    }
    if identity.dpdk.value() != dpdk::RELEASE {
        c.report(
            &dpdk_loc,
            "identity.dpdk",
            format!(
                "is `{}`: expected `{}`, the only DPDK release whose rte_flow facts this loader \
                 can check",
                identity.dpdk.value(),
                dpdk::RELEASE
            ),
        );
    }
    identity
}

fn check_limits(c: &mut Checker, path: &str, raw: RawGroupLimits) -> GroupLimits {
    let loc = raw.priorities.referenced;
    let limits = GroupLimits {
        priorities: c.fact(&format!("{path}.priorities"), raw.priorities),
        unsupported_actions: raw
            .unsupported_actions
            .map(|f| c.fact(&format!("{path}.unsupported_actions"), f)),
    };
    if limits.priorities.get() == 0 {
        c.report(
            &loc,
            &format!("{path}.priorities"),
            "is 0: a group that takes rules has at least one priority level",
        );
    }
    limits
}

fn check_offload(
    c: &mut Checker,
    raw: RawOffload,
    kind: DeviceKind,
    apis: &RteFlowApis,
) -> Offload {
    let count_loc = raw.groups.count.referenced;
    let jump_loc = raw.groups.jump.referenced;
    let ports_loc = raw.port_ranges.referenced;
    let ct_loc = raw.conntrack.capacity.referenced;

    let groups = Groups {
        count: c.fact("offload.groups.count", raw.groups.count),
        jump: c.fact("offload.groups.jump", raw.groups.jump),
        root: check_limits(c, "offload.groups.root", raw.groups.root),
        non_root: raw
            .groups
            .non_root
            .map(|limits| check_limits(c, "offload.groups.non_root", limits)),
    };
    let count = groups.count.get();
    if count == 0 {
        c.report(
            &count_loc,
            "offload.groups.count",
            "is 0: every device has the root group",
        );
    }
    match (count > 1, groups.non_root.is_some()) {
        (true, false) => c.report(
            &count_loc,
            "offload.groups.non_root",
            format!("is missing: the device has {count} groups, so say what groups 1 and up allow"),
        ),
        (false, true) => c.report(
            &count_loc,
            "offload.groups.non_root",
            "is present, but offload.groups.count is 1: there is no group but the root",
        ),
        _ => {}
    }
    if groups.jump.get() && count < 2 {
        c.report(
            &jump_loc,
            "offload.groups.jump",
            "is true, but there is only one group to jump to",
        );
    }

    let port_ranges = c.fact("offload.port_ranges", raw.port_ranges);
    let conntrack = Conntrack {
        capacity: c.fact("offload.conntrack.capacity", raw.conntrack.capacity),
    };

    let mut engines = Vec::new();
    let mut names = HashSet::new();
    for (i, spanned) in raw.engines.into_iter().enumerate() {
        let loc = spanned.referenced;
        let engine = check_engine(c, i, spanned.value, apis);
        if !names.insert(engine.name.clone()) {
            c.report(
                &loc,
                &format!("offload.engines[{i}].name"),
                format!(
                    "`{}` is used by an earlier engine: engine names must be unique",
                    engine.name
                ),
            );
        }
        engines.push(engine);
    }
    if engines.is_empty() && !apis.none() {
        c.report(
            &count_loc,
            "offload.engines",
            "is empty: describe at least one engine the rules can land in",
        );
    }
    for (api, claimed) in [
        (Api::Sync, apis.sync.get()),
        (Api::Template, apis.template.get()),
    ] {
        if claimed && !engines.iter().any(|e| e.api.get() == api) {
            c.report(
                &count_loc,
                "offload.engines",
                format!("no engine uses the {api} API that rte_flow.{api} claims"),
            );
        }
    }

    // Port ranges: `last` on L4 ports is refused by every hardware PMD of 22.11, and a
    // masked expansion needs an engine whose port fields take masks.
    let best_ports = engines
        .iter()
        .map(Engine::port_match_kind)
        .max()
        .unwrap_or(MatchKind::None);
    match port_ranges.get() {
        PortRangeStrategy::Native if kind == DeviceKind::Hardware => c.report(
            &ports_loc,
            "offload.port_ranges",
            format!(
                "is `native`, but no hardware PMD of DPDK {} accepts `last` on L4 ports: \
                 expected `prefix-mask` or `per-value`",
                dpdk::RELEASE
            ),
        ),
        PortRangeStrategy::PrefixMask if best_ports < MatchKind::Prefix => c.report(
            &ports_loc,
            "offload.port_ranges",
            format!(
                "is `prefix-mask`, but no engine matches TCP/UDP ports better than `{best_ports}`: \
                 expected `per-value`"
            ),
        ),
        PortRangeStrategy::PerValue | PortRangeStrategy::Native
            if best_ports < MatchKind::Exact =>
        {
            c.report(
                &ports_loc,
                "offload.port_ranges",
                "names a strategy, but no engine can match TCP/UDP ports at all",
            )
        }
        _ => {}
    }

    let any_action = |a: Action| engines.iter().any(|e| e.supports_action(a));
    if any_action(Action::Jump) != groups.jump.get() {
        c.report(
            &jump_loc,
            "offload.groups.jump",
            format!(
                "is {}, but {} engine supports the `jump` action: the two must agree",
                groups.jump.get(),
                if any_action(Action::Jump) { "an" } else { "no" }
            ),
        );
    }
    let ct_capacity = conntrack.capacity.get();
    if any_action(Action::Conntrack) != (ct_capacity > 0) {
        c.report(
            &ct_loc,
            "offload.conntrack.capacity",
            if ct_capacity > 0 {
                format!("is {ct_capacity}, but no engine supports the `conntrack` action")
            } else {
                "is 0, but an engine supports the `conntrack` action: give its capacity".to_string()
            },
        );
    }
    for (path, limits) in [
        ("offload.groups.root", Some(&groups.root)),
        ("offload.groups.non_root", groups.non_root.as_ref()),
    ] {
        let Some(refused) = limits.and_then(|l| l.unsupported_actions.as_ref()) else {
            continue;
        };
        for action in refused.value() {
            if !any_action(*action) {
                c.report(
                    &count_loc,
                    &format!("{path}.unsupported_actions"),
                    format!(
                        "lists `{action}`, which no engine supports anywhere: list only actions \
                         the group refuses although the engines support them"
                    ),
                );
            }
        }
    }

    Offload {
        groups,
        port_ranges,
        conntrack,
        engines,
    }
}

fn check_engine(c: &mut Checker, i: usize, raw: RawEngine, apis: &RteFlowApis) -> Engine {
    let base = format!("offload.engines[{i}]");
    let name_loc = raw.name.referenced;
    let cap_loc = raw.capacity.referenced;
    let rate_loc = raw.insertion_rate.referenced;
    let api_loc = raw.api.referenced;
    let name = raw.name.value;
    if !is_kebab(&name) {
        c.report(
            &name_loc,
            &format!("{base}.name"),
            format!("`{name}` is not an engine name: expected lowercase words joined by `-`"),
        );
    }
    if raw.summary.trim().is_empty() {
        c.report(&name_loc, &format!("{base}.summary"), "is empty");
    }
    let kinds = raw
        .matches
        .into_fields()
        .into_iter()
        .map(|(field, f)| c.fact(&format!("{base}.matches.{field}"), f))
        .collect();
    let supported = raw
        .actions
        .into_actions()
        .into_iter()
        .map(|(action, f)| c.fact(&format!("{base}.actions.{action}"), f))
        .collect();
    let engine = Engine {
        name,
        summary: raw.summary,
        api: c.fact(&format!("{base}.api"), raw.api),
        capacity: c.fact(&format!("{base}.capacity"), raw.capacity),
        insertion_rate: c.fact(&format!("{base}.insertion_rate"), raw.insertion_rate),
        devargs: raw.devargs.map(|f| c.fact(&format!("{base}.devargs"), f)),
        matches: MatchTable { kinds },
        actions: ActionTable { supported },
        uniform_field_set: raw
            .uniform_field_set
            .map(|f| c.fact(&format!("{base}.uniform_field_set"), f)),
        max_mask_layouts: raw
            .max_mask_layouts
            .map(|f| c.fact(&format!("{base}.max_mask_layouts"), f)),
        incompatible: raw.incompatible.map(|f| {
            let f = c.fact(&format!("{base}.incompatible"), f);
            let list = f
                .value()
                .iter()
                .map(|r| Incompatible {
                    fields: r.fields.clone(),
                    with: r.with.clone(),
                })
                .collect();
            Fact::new(list, f.provenance().clone(), f.note().map(str::to_string))
        }),
    };
    if engine.capacity.get() == 0 {
        c.report(
            &cap_loc,
            &format!("{base}.capacity"),
            "is 0: an rte_flow engine must hold at least one rule (describe a device without \
             hardware tables as software-only instead)",
        );
    }
    if engine.insertion_rate.get() == 0 {
        c.report(
            &rate_loc,
            &format!("{base}.insertion_rate"),
            "is 0: expected the sustained rules per second the engine accepts",
        );
    }
    if engine
        .max_mask_layouts
        .as_ref()
        .is_some_and(|f| f.get() == 0)
    {
        c.report(
            &cap_loc,
            &format!("{base}.max_mask_layouts"),
            "is 0: an engine that holds rules holds at least one mask layout",
        );
    }
    if let Some(devargs) = &engine.devargs {
        for arg in devargs.value() {
            if !arg.contains('=') {
                c.report(
                    &cap_loc,
                    &format!("{base}.devargs"),
                    format!("`{arg}` is not a devarg: expected `key=value`"),
                );
            }
        }
    }
    let api = engine.api.get();
    let offered = match api {
        Api::Sync => apis.sync.get(),
        Api::Template => apis.template.get(),
    };
    if !offered {
        c.report(
            &api_loc,
            &format!("{base}.api"),
            format!("is `{api}`, but rte_flow.{api} is false"),
        );
    }
    engine
}

/// Turns a serde-saphyr error into a problem: the message without its position suffix,
/// and the position as line and column.
pub(crate) fn syntax_problem(err: &serde_saphyr::Error) -> Problem {
    let message = err.to_string();
    let message = message
        .rsplit_once(" at line ")
        .map(|(m, _)| m.to_string())
        .unwrap_or(message);
    let message = explain(&message);
    let (line, column) = err
        .location()
        .as_ref()
        .map(position)
        .unwrap_or((None, None));
    Problem {
        line,
        column,
        path: String::new(),
        message,
    }
}

/// Rewords the serde messages a profile author most often meets.
fn explain(message: &str) -> String {
    if message == "expected mapping start" {
        return "expected a mapping here: sections are mappings, and every value is a fact \
                written `{value: ..., source: \"...\"}` or `{value: ..., estimate: \"...\"}`"
            .to_string();
    }
    if message.contains("unexpected end of input") {
        return "the file is empty: expected a profile mapping (name, kind, summary, identity, \
                rte_flow, offload)"
            .to_string();
    }
    message.to_string()
}
