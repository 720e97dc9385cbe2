//! The canonical text of objects.
//!
//! One form per object, so printing is stable and diffs show only real changes: keys are
//! always written, modifiers come in a fixed order (`match`, `log`, `audit`, `mirror`,
//! `redirect`), each tag and tag type gets its own line, and the default tier is left out.
//! Blocks (`policy`, `application-policy-set`, `project`) are set off by blank lines and
//! indented by two spaces per level. Printing never drops what an object holds: an object
//! that breaks the language's rules (ports on `icmp`, an invalid name) prints as text that
//! [`parse`](super::parse) rejects with the matching error.

use std::fmt::Write as _;

use palisade_program::{PortRange, TierKind};

use crate::objects::{
    AddressGroup, ApplicationPolicySet, EndpointSpec, FirewallPolicy, FirewallRule, Object, Scope,
    Service, ServiceGroup, ServiceSpec,
};

/// Prints objects in order; consecutive objects of one project share one `project` block.
pub(super) fn print(objects: &[Object]) -> String {
    let mut top = Writer::default();
    let mut rest = objects;
    while let Some(first) = rest.first() {
        match first.scope() {
            Scope::Global => {
                top.item(first, 0);
                rest = &rest[1..];
            }
            Scope::Project(project) => {
                let len = rest
                    .iter()
                    .take_while(|o| o.scope().project() == Some(project.as_str()))
                    .count();
                let (members, tail) = rest.split_at(len);
                let mut inner = Writer::default();
                for object in members {
                    inner.item(object, 1);
                }
                top.block(format!("project {project} {{\n{}}}\n", inner.out));
                rest = tail;
            }
        }
    }
    top.out
}

/// Appends items, with a blank line on each side of a block.
#[derive(Default)]
struct Writer {
    out: String,
    last_was_block: Option<bool>,
}

impl Writer {
    fn push(&mut self, text: &str, is_block: bool) {
        if self.last_was_block.is_some_and(|last| last || is_block) {
            self.out.push('\n');
        }
        self.out.push_str(text);
        self.last_was_block = Some(is_block);
    }

    fn block(&mut self, text: String) {
        self.push(&text, true);
    }

    fn item(&mut self, object: &Object, depth: usize) {
        let indent = "  ".repeat(depth);
        let line = |text: String| format!("{indent}{text}\n");
        match object {
            Object::TagType(t) => self.push(&line(format!("tag-type {}", t.name)), false),
            Object::Tag(t) => self.push(&line(format!("tag {}={}", t.kind, t.value)), false),
            Object::AddressGroup(g) => self.push(&line(address_group(g)), false),
            Object::ServiceGroup(g) => self.push(&line(service_group(g)), false),
            Object::FirewallPolicy(p) => self.block(policy(p, &indent)),
            Object::ApplicationPolicySet(s) => self.block(set(s, &indent)),
        }
    }
}

fn address_group(g: &AddressGroup) -> String {
    let mut out = format!("address-group {}", g.name);
    if !g.prefixes.is_empty() {
        out.push_str(" =");
        for p in &g.prefixes {
            let _ = write!(out, " {p}");
        }
    }
    if let Some(label) = &g.label {
        let _ = write!(out, " label {label}");
    }
    out
}

fn service_group(g: &ServiceGroup) -> String {
    let mut out = format!("service-group {} =", g.name);
    for s in &g.services {
        let _ = write!(out, " {}", service(s));
    }
    out
}

fn policy(p: &FirewallPolicy, indent: &str) -> String {
    let mut out = format!("{indent}policy {}", p.name);
    if p.tier != TierKind::Application {
        let _ = write!(out, " tier {}", p.tier);
    }
    if !p.sequence.is_empty() {
        let _ = write!(out, " seq {}", p.sequence);
    }
    out.push_str(" {\n");
    for r in &p.rules {
        let _ = writeln!(out, "{indent}  {}", rule(r));
    }
    let _ = writeln!(out, "{indent}}}");
    out
}

fn set(s: &ApplicationPolicySet, indent: &str) -> String {
    let mut out = format!("{indent}application-policy-set {}", s.name);
    match &s.application {
        Some(tag) => {
            let _ = write!(out, " for {tag}");
        }
        None => out.push_str(" global"),
    }
    out.push_str(" {\n");
    for e in &s.policies {
        let _ = writeln!(out, "{indent}  {}", keyed(&e.sequence, &e.policy));
    }
    let _ = writeln!(out, "{indent}}}");
    out
}

fn keyed(key: &str, text: &str) -> String {
    if key.is_empty() {
        text.to_string()
    } else {
        format!("{key}: {text}")
    }
}

/// One rule line.
pub(super) fn rule(r: &FirewallRule) -> String {
    let service = match &r.service {
        ServiceSpec::Inline(s) => service(s),
        ServiceSpec::Group(g) => format!("services:{g}"),
    };
    let mut out = format!(
        "{} {} {} {} on {service}",
        r.action.keyword(),
        endpoint(&r.endpoint_1),
        r.direction,
        endpoint(&r.endpoint_2),
    );
    if !r.match_tags.is_empty() {
        let _ = write!(out, " match {}", r.match_tags.join(","));
    }
    if r.log {
        out.push_str(" log");
    }
    if r.audit {
        out.push_str(" audit");
    }
    if let Some(m) = &r.mirror {
        let _ = write!(out, " mirror {m}");
    }
    if let Some(l7) = &r.redirect {
        let _ = write!(out, " redirect {l7}");
    }
    keyed(&r.sequence, &out)
}

fn endpoint(e: &EndpointSpec) -> String {
    match e {
        EndpointSpec::Any => "any".to_string(),
        EndpointSpec::Tags(tags) => tags
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("&"),
        EndpointSpec::AddressGroup(g) => format!("group:{g}"),
        EndpointSpec::Subnet(p) => p.to_string(),
        EndpointSpec::Network(n) => format!("network:{n}"),
    }
}

fn service(s: &Service) -> String {
    let mut out = s
        .protocol
        .map_or_else(|| "any".to_string(), |p| p.to_string());
    if !s.dst_ports.is_empty() {
        let _ = write!(out, "/{}", ports(&s.dst_ports));
    }
    if !s.src_ports.is_empty() {
        let _ = write!(out, " from {}", ports(&s.src_ports));
    }
    out
}

fn ports(ranges: &[PortRange]) -> String {
    ranges
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
