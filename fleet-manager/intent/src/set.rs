//! A set of intent objects, the name resolution between them, and their validation.
//!
//! Names resolve from the referring object's scope: a project-scoped object sees its
//! project's objects first, then global ones; a global object sees only global ones;
//! `global:` on a tag reference forces the global tag.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use palisade_program::TierKind;
use thiserror::Error;

use crate::objects::*;

/// Where an object came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// File name (or another description of the source).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<u32>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}", self.file, l),
            None => f.write_str(&self.file),
        }
    }
}

/// A problem with an intent object, naming the object, the field and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct ValidationError {
    /// The object at fault.
    pub object: ObjectKey,
    /// Where in the object (`rule 0010, endpoint_1`), empty for the object as a whole.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
    /// Where the object was defined, when known.
    pub origin: Option<Origin>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(o) = &self.origin {
            write!(f, "{o}: ")?;
        }
        write!(f, "{}", self.object)?;
        if !self.field.is_empty() {
            write!(f, ", {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A collection of intent objects keyed by identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntentSet {
    objects: BTreeMap<ObjectKey, Object>,
    origins: BTreeMap<ObjectKey, Origin>,
}

/// A reference from one object to another, with the field that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The field (`rule 0010, endpoint_2`).
    pub field: String,
    /// What it resolves to, if it does.
    pub target: Option<ObjectKey>,
    /// What was written, for messages.
    pub written: String,
    /// The kind looked for.
    pub kind: ObjectKind,
}

impl IntentSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Collects objects, refusing duplicates; does not check references (see
    /// [`IntentSet::validate`]).
    pub fn from_objects(
        objects: impl IntoIterator<Item = (Object, Option<Origin>)>,
    ) -> Result<Self, Vec<ValidationError>> {
        let mut set = Self::new();
        let mut errors = Vec::new();
        for (object, origin) in objects {
            let key = object.key();
            if set.objects.contains_key(&key) {
                let first = set
                    .origins
                    .get(&key)
                    .map(|o| format!(" (first defined at {o})"))
                    .unwrap_or_default();
                errors.push(ValidationError {
                    object: key,
                    field: String::new(),
                    message: format!("is defined twice{first}"),
                    origin,
                });
                continue;
            }
            set.insert(object, origin);
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    /// Adds or replaces an object.
    pub fn insert(&mut self, object: Object, origin: Option<Origin>) {
        let key = object.key();
        match origin {
            Some(o) => {
                self.origins.insert(key.clone(), o);
            }
            None => {
                self.origins.remove(&key);
            }
        }
        self.objects.insert(key, object);
    }

    /// Removes an object, returning it.
    pub fn remove(&mut self, key: &ObjectKey) -> Option<Object> {
        self.origins.remove(key);
        self.objects.remove(key)
    }

    /// Looks an object up.
    pub fn get(&self, key: &ObjectKey) -> Option<&Object> {
        self.objects.get(key)
    }

    /// Where an object was defined.
    pub fn origin(&self, key: &ObjectKey) -> Option<&Origin> {
        self.origins.get(key)
    }

    /// All objects in key order.
    pub fn objects(&self) -> impl Iterator<Item = &Object> {
        self.objects.values()
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// True when there are no objects.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Objects of one scope.
    pub fn in_scope<'a>(&'a self, scope: &'a Scope) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects
            .iter()
            .filter(move |(k, _)| &k.scope == scope)
            .map(|(_, o)| o)
    }

    /// Resolves a name of `kind` as seen from `from`.
    pub fn resolve(&self, kind: ObjectKind, from: &Scope, name: &str) -> Option<ObjectKey> {
        let local = ObjectKey {
            kind,
            scope: from.clone(),
            name: name.to_string(),
        };
        if self.objects.contains_key(&local) {
            return Some(local);
        }
        let global = ObjectKey {
            kind,
            scope: Scope::Global,
            name: name.to_string(),
        };
        self.objects.contains_key(&global).then_some(global)
    }

    /// Resolves a tag reference as seen from `from`.
    pub fn resolve_tag(&self, from: &Scope, tag: &TagRef) -> Option<ObjectKey> {
        let name = format!("{}={}", tag.kind, tag.value);
        if tag.global {
            self.resolve(ObjectKind::Tag, &Scope::Global, &name)
        } else {
            self.resolve(ObjectKind::Tag, from, &name)
        }
    }

    /// Whether `name` is a tag type: predefined or defined by a [`TagType`].
    pub fn is_tag_type(&self, name: &str) -> bool {
        PREDEFINED_TAG_TYPES.contains(&name)
            || self.objects.contains_key(&ObjectKey {
                kind: ObjectKind::TagType,
                scope: Scope::Global,
                name: name.to_string(),
            })
    }

    /// Every reference an object makes, resolved against this set.
    pub fn references(&self, object: &Object) -> Vec<Reference> {
        let scope = object.scope();
        let mut out = Vec::new();
        let tag = |field: String, t: &TagRef, out: &mut Vec<Reference>| {
            out.push(Reference {
                field,
                target: self.resolve_tag(&scope, t),
                written: t.to_string(),
                kind: ObjectKind::Tag,
            });
        };
        match object {
            Object::TagType(_) => {}
            Object::Tag(t) => {
                if !PREDEFINED_TAG_TYPES.contains(&t.kind.as_str()) {
                    out.push(Reference {
                        field: "type".into(),
                        target: self.resolve(ObjectKind::TagType, &Scope::Global, &t.kind),
                        written: t.kind.clone(),
                        kind: ObjectKind::TagType,
                    });
                }
            }
            Object::AddressGroup(g) => {
                if let Some(label) = &g.label {
                    tag(
                        "label".into(),
                        &TagRef::new("label", label.clone()),
                        &mut out,
                    );
                }
            }
            Object::ServiceGroup(_) => {}
            Object::FirewallPolicy(p) => {
                for rule in &p.rules {
                    for (name, ep) in [
                        ("endpoint_1", &rule.endpoint_1),
                        ("endpoint_2", &rule.endpoint_2),
                    ] {
                        let field = format!("rule {}, {name}", rule.sequence);
                        match ep {
                            EndpointSpec::Tags(tags) => {
                                for t in tags {
                                    tag(field.clone(), t, &mut out);
                                }
                            }
                            EndpointSpec::AddressGroup(g) => out.push(Reference {
                                field,
                                target: self.resolve(ObjectKind::AddressGroup, &scope, g),
                                written: g.clone(),
                                kind: ObjectKind::AddressGroup,
                            }),
                            EndpointSpec::Any
                            | EndpointSpec::Subnet(_)
                            | EndpointSpec::Network(_) => {}
                        }
                    }
                    if let ServiceSpec::Group(g) = &rule.service {
                        out.push(Reference {
                            field: format!("rule {}, service_group", rule.sequence),
                            target: self.resolve(ObjectKind::ServiceGroup, &scope, g),
                            written: g.clone(),
                            kind: ObjectKind::ServiceGroup,
                        });
                    }
                }
            }
            Object::ApplicationPolicySet(s) => {
                if let Some(app) = &s.application {
                    tag("application".into(), app, &mut out);
                }
                for entry in &s.policies {
                    out.push(Reference {
                        field: format!("entry {}", entry.sequence),
                        target: self.resolve(ObjectKind::FirewallPolicy, &scope, &entry.policy),
                        written: entry.policy.clone(),
                        kind: ObjectKind::FirewallPolicy,
                    });
                }
            }
        }
        out
    }

    /// Objects that refer to `key`, with the referring field.
    pub fn referrers(&self, key: &ObjectKey) -> Vec<(ObjectKey, String)> {
        self.objects
            .values()
            .flat_map(|o| {
                self.references(o)
                    .into_iter()
                    .filter(|r| r.target.as_ref() == Some(key))
                    .map(move |r| (o.key(), r.field))
            })
            .collect()
    }

    /// Checks the whole set: names, references, and the rules of POLICY.md. Returns every
    /// problem found, in object order.
    pub fn validate(&self) -> Vec<ValidationError> {
        let mut errors = Vec::new();
        let mut global_sets = Vec::new();
        for (key, object) in &self.objects {
            let mut report = |field: String, message: String| {
                errors.push(ValidationError {
                    object: key.clone(),
                    field,
                    message,
                    origin: self.origins.get(key).cloned(),
                });
            };
            self.validate_object(object, &mut report);
            for r in self.references(object) {
                if r.target.is_none() {
                    report(r.field.clone(), self.dangling_message(object, &r));
                }
            }
            if let Object::ApplicationPolicySet(s) = object
                && s.application.is_none()
            {
                global_sets.push(key.clone());
            }
        }
        if global_sets.len() > 1 {
            let names: Vec<String> = global_sets.iter().map(|k| k.to_string()).collect();
            for key in &global_sets[1..] {
                errors.push(ValidationError {
                    object: key.clone(),
                    field: String::new(),
                    message: format!(
                        "only one global application policy set may exist; found {}",
                        names.join(", ")
                    ),
                    origin: self.origins.get(key).cloned(),
                });
            }
        }
        errors
    }

    fn dangling_message(&self, object: &Object, r: &Reference) -> String {
        let scope = object.scope();
        let where_ = match &scope {
            Scope::Global => "globally".to_string(),
            Scope::Project(p) => format!("in project `{p}` or globally"),
        };
        let candidates: Vec<String> = self
            .objects
            .keys()
            .filter(|k| k.kind == r.kind && (k.scope == Scope::Global || k.scope == scope))
            .map(|k| k.name.clone())
            .collect();
        let wanted = r.written.trim_start_matches("global:");
        let hint = closest(wanted, &candidates)
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default();
        let define = match r.kind {
            ObjectKind::Tag => format!("; define it with `tag {wanted}`"),
            ObjectKind::TagType => format!("; define it with `tag-type {wanted}`"),
            _ => String::new(),
        };
        let define = if hint.is_empty() {
            define
        } else {
            String::new()
        };
        format!(
            "{} `{}` is not defined {where_}{hint}{define}",
            r.kind.noun(),
            r.written
        )
    }

    fn validate_object(&self, object: &Object, report: &mut dyn FnMut(String, String)) {
        match object {
            Object::TagType(t) => {
                if !is_valid_name(&t.name) {
                    report("name".into(), invalid_name(&t.name));
                }
                if PREDEFINED_TAG_TYPES.contains(&t.name.as_str()) {
                    report(
                        "name".into(),
                        format!("`{}` is a predefined tag type", t.name),
                    );
                }
            }
            Object::Tag(t) => {
                if !is_valid_name(&t.kind) {
                    report("type".into(), invalid_name(&t.kind));
                }
                if !is_valid_name(&t.value) {
                    report("value".into(), invalid_name(&t.value));
                }
            }
            Object::AddressGroup(g) => {
                check_name(&g.name, report);
                check_scope(&g.scope, report);
                if g.prefixes.is_empty() && g.label.is_none() {
                    report(
                        "prefixes".into(),
                        "an address group needs prefixes, a label, or both".into(),
                    );
                }
            }
            Object::ServiceGroup(g) => {
                check_name(&g.name, report);
                check_scope(&g.scope, report);
                if g.services.is_empty() {
                    report(
                        "services".into(),
                        "a service group needs at least one service".into(),
                    );
                }
                for (i, s) in g.services.iter().enumerate() {
                    check_service(s, &format!("services[{i}]"), report);
                }
            }
            Object::FirewallPolicy(p) => {
                check_name(&p.name, report);
                check_scope(&p.scope, report);
                if !p.sequence.is_empty() && !is_valid_name(&p.sequence) {
                    report("sequence".into(), invalid_name(&p.sequence));
                }
                let mut seen = BTreeSet::new();
                for rule in &p.rules {
                    let at = |f: &str| format!("rule {}, {f}", rule.sequence);
                    if !is_valid_name(&rule.sequence) {
                        report(at("sequence"), invalid_name(&rule.sequence));
                    }
                    if !seen.insert(rule.sequence.as_str()) {
                        report(
                            at("sequence"),
                            "another rule of the policy has the same sequence key".into(),
                        );
                    }
                    if let ServiceSpec::Inline(s) = &rule.service {
                        check_service(s, &at("service"), report);
                    }
                    for t in &rule.match_tags {
                        if t == "label" {
                            report(
                                at("match_tags"),
                                "`label` cannot be matched: it is the only repeatable tag type"
                                    .into(),
                            );
                        } else if !self.is_tag_type(t) {
                            report(
                                at("match_tags"),
                                format!("`{t}` is not a tag type; define it with `tag-type {t}`"),
                            );
                        }
                    }
                    if rule.audit && rule.action != RuleAction::Deny {
                        report(at("audit"), "`audit` only applies to deny rules".into());
                    }
                    if rule.redirect.is_some() && rule.action != RuleAction::Allow {
                        report(
                            at("redirect"),
                            "`redirect` only applies to allow rules".into(),
                        );
                    }
                    for (name, v) in [("mirror", &rule.mirror), ("redirect", &rule.redirect)] {
                        if let Some(v) = v
                            && !is_valid_name(v)
                        {
                            report(at(name), invalid_name(v));
                        }
                    }
                    for (name, ep) in [
                        ("endpoint_1", &rule.endpoint_1),
                        ("endpoint_2", &rule.endpoint_2),
                    ] {
                        match ep {
                            EndpointSpec::Tags(tags) => {
                                if tags.is_empty() {
                                    report(
                                        at(name),
                                        "a tag endpoint needs at least one tag".into(),
                                    );
                                }
                                let mut kinds = BTreeSet::new();
                                for t in tags {
                                    if t.kind != "label" && !kinds.insert(t.kind.as_str()) {
                                        report(
                                            at(name),
                                            format!(
                                                "two `{}` tags can never both match: an endpoint has one `{}`",
                                                t.kind, t.kind
                                            ),
                                        );
                                    }
                                }
                            }
                            EndpointSpec::Network(n) if p.scope == Scope::Global => report(
                                at(name),
                                format!(
                                    "`network:{n}` needs a project: networks belong to projects, so use it in a project's policy"
                                ),
                            ),
                            _ => {}
                        }
                    }
                }
            }
            Object::ApplicationPolicySet(s) => {
                check_name(&s.name, report);
                check_scope(&s.scope, report);
                if s.application.is_none() && s.scope != Scope::Global {
                    report(
                        "application".into(),
                        "a set without an application tag is the global set and must be in the global scope; name the application it is for".into(),
                    );
                }
                if let Some(app) = &s.application
                    && app.kind != "application"
                {
                    report(
                        "application".into(),
                        format!("`{app}` is not an `application` tag"),
                    );
                }
                let mut seen = BTreeSet::new();
                for entry in &s.policies {
                    if !is_valid_name(&entry.sequence) {
                        report(
                            format!("entry {}", entry.sequence),
                            invalid_name(&entry.sequence),
                        );
                    }
                    if !seen.insert(entry.sequence.as_str()) {
                        report(
                            format!("entry {}", entry.sequence),
                            "another entry of the set has the same sequence key".into(),
                        );
                    }
                    let target = self.resolve(ObjectKind::FirewallPolicy, &s.scope, &entry.policy);
                    if let Some(Object::FirewallPolicy(p)) = target.and_then(|k| self.get(&k))
                        && p.tier != TierKind::Application
                    {
                        report(
                            format!("entry {}", entry.sequence),
                            format!(
                                "policy `{}` is in the {} tier; only application-tier policies go in application policy sets",
                                entry.policy, p.tier
                            ),
                        );
                    }
                }
            }
        }
    }
}

fn invalid_name(name: &str) -> String {
    format!(
        "`{name}` is not a valid name: use letters, digits, `.`, `_` and `-`, starting with a letter or digit"
    )
}

fn check_name(name: &str, report: &mut dyn FnMut(String, String)) {
    if !is_valid_name(name) {
        report("name".into(), invalid_name(name));
    }
}

fn check_scope(scope: &Scope, report: &mut dyn FnMut(String, String)) {
    if let Scope::Project(p) = scope
        && !is_valid_name(p)
    {
        report("project".into(), invalid_name(p));
    }
}

fn check_service(s: &Service, field: &str, report: &mut dyn FnMut(String, String)) {
    let has_ports = !s.src_ports.is_empty() || !s.dst_ports.is_empty();
    if has_ports && !s.protocol.is_some_and(|p| p.has_ports()) {
        report(
            field.to_string(),
            "ports are only allowed with tcp, udp or sctp".into(),
        );
    }
}

/// The candidate closest to `wanted` by edit distance, if close enough to be a typo.
fn closest<'a>(wanted: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(wanted, c), c))
        .filter(|(d, c)| *d > 0 && *d <= 2.max(c.len() / 4))
        .min()
        .map(|(_, c)| c.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_finds_typos() {
        assert_eq!(edit_distance("tier=wbe", "tier=web"), 2);
        let c = vec!["tier=web".to_string(), "tier=app".to_string()];
        assert_eq!(closest("tier=wbe", &c), Some("tier=web"));
        assert_eq!(closest("site=paris", &c), None);
    }
}
