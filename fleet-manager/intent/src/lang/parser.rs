//! Statements and blocks: what each line means in its place.
//!
//! The parser walks the lines once, keeping the open blocks (a `project`, and inside it or
//! at top level a `policy` or `application-policy-set` body). An error ends the reading of
//! its line only: the next line is read in the same block, so one run reports every
//! error. A block whose first line is broken is still opened (without an object) so its
//! rules are checked and its `}` closes it; a statement where only a rule or `}` may stand
//! means a missing `}` and closes the block before it is read.

use std::collections::HashMap;
use std::str::FromStr;

use palisade_program::{Prefix, TierKind};

use crate::objects::{
    AddressGroup, ApplicationPolicySet, FirewallPolicy, Object, PREDEFINED_TAG_TYPES, PolicyEntry,
    Scope, ServiceGroup, Tag, TagRef, TagType, is_valid_name,
};

use super::Document;
use super::cursor::{Cursor, Name, PResult, closest, did_you_mean, found};
use super::error::ParseError;
use super::lexer::{Line, Token, lex};
use super::rule::{self, net_error, starts_rule};
use super::span::{Span, Spanned};

/// The words that start a statement.
const STATEMENTS: [&str; 7] = [
    "tag-type",
    "tag",
    "address-group",
    "service-group",
    "policy",
    "application-policy-set",
    "project",
];

const TIERS: [&str; 3] = ["admin", "application", "baseline"];

/// Parses a whole document.
pub(super) fn parse(source: &str) -> Result<Document, Vec<ParseError>> {
    let lines = lex(source);
    let mut parser = Parser::default();
    let mut i = 0;
    while let Some(line) = lines.get(i) {
        i += 1;
        if !parser.line(line) {
            continue;
        }
        // A block whose first line lacks its `{`: it is open only if the next line reads as
        // its content, and a `{` alone on that line is the misplaced brace.
        match lines[i..].iter().find(|l| !l.tokens.is_empty()) {
            Some(next) if parser.opens_as_body(next) => {
                if next.is_only("{") {
                    i = next.end.line;
                }
            }
            _ => parser.body = None,
        }
    }
    parser.end();
    if parser.errors.is_empty() {
        Ok(Document {
            objects: parser.objects,
        })
    } else {
        parser.errors.sort_by_key(|e| e.span);
        Err(parser.errors)
    }
}

#[derive(Default)]
struct Parser {
    objects: Vec<Spanned<Object>>,
    errors: Vec<ParseError>,
    project: Option<Project>,
    body: Option<Body>,
}

/// An open `project` block.
struct Project {
    /// `None` when its first line is broken.
    name: Option<String>,
    /// The `project` word or its `{`, for "not closed".
    open: Span,
}

/// An open `policy` or `application-policy-set` block.
struct Body {
    /// The object with the rules or entries read so far, their keys still to be assigned;
    /// `None` when its first line is broken.
    object: Option<Spanned<Object>>,
    kind: BodyKind,
    /// The `{` or the line's first word, for "not closed".
    open: Span,
    /// The key of each rule or entry read (also when the object is `None`).
    keys: Vec<LineKey>,
}

impl Body {
    fn new(object: Option<Spanned<Object>>, kind: BodyKind, open: Span) -> Self {
        Self {
            object,
            kind,
            open,
            keys: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Policy,
    Set,
    /// The block of a line that starts with an unknown word: skipped up to its `}`.
    Unknown,
}

/// The key a rule or entry was written with, and where its line starts.
struct LineKey {
    key: Option<Name>,
    first: Span,
}

impl Body {
    /// "policy `web`", or "this policy" when the first line is broken.
    fn describe(&self) -> String {
        let noun = match self.kind {
            BodyKind::Policy => "policy",
            BodyKind::Set => "application policy set",
            BodyKind::Unknown => "block",
        };
        match self.object.as_ref().map(|o| o.value.key().name) {
            Some(name) => format!("{noun} `{name}`"),
            None => format!("this {noun}"),
        }
    }

    fn item_noun(&self) -> &'static str {
        match self.kind {
            BodyKind::Policy => "rule",
            BodyKind::Set => "entry",
            BodyKind::Unknown => "line",
        }
    }
}

impl Parser {
    /// Reads one line. True when it opened a block whose first line had no `{`.
    fn line(&mut self, line: &Line<'_>) -> bool {
        if line.tokens.is_empty() {
            false
        } else if self.body.is_some() {
            self.body_line(line)
        } else {
            self.statement(line)
        }
    }

    fn scope(&self) -> Scope {
        match &self.project {
            None => Scope::Global,
            Some(p) => Scope::Project(p.name.clone().unwrap_or_default()),
        }
    }

    fn push(&mut self, result: PResult<Vec<Spanned<Object>>>) {
        match result {
            Ok(objects) => self.objects.extend(objects),
            Err(e) => self.errors.push(e),
        }
    }

    /// Reads a line outside any body. True when it opened a block whose first line had no
    /// `{`: the caller decides from the next line whether the block really opened.
    fn statement(&mut self, line: &Line<'_>) -> bool {
        let mut cur = Cursor::new(line);
        let Some(first) = cur.next() else {
            return false;
        };
        match first.text {
            "}" => {
                if self.project.take().is_none() {
                    self.errors.push(
                        ParseError::new(first.span, "unexpected `}`: no block is open").with_help(
                            "a `}` closes the `project`, `policy` or \
                                `application-policy-set` block it belongs to",
                        ),
                    );
                }
                if let Err(e) = cur.finish("`}`") {
                    self.errors
                        .push(e.with_help("put each `}` on a line of its own"));
                }
            }
            "tag-type" => {
                let r = self.tag_types(first, &mut cur);
                self.push(r);
            }
            "tag" => {
                let r = self.tags(&mut cur);
                self.push(r);
            }
            "address-group" => {
                let r = self.address_group(&mut cur);
                self.push(r);
            }
            "service-group" => {
                let r = self.service_group(&mut cur);
                self.push(r);
            }
            "policy" | "application-policy-set" => return self.open_body(first, &mut cur, line),
            "project" => self.open_project(first, &mut cur, line),
            other => {
                let err = ParseError::new(
                    first.span,
                    format!(
                        "expected a statement (`tag-type`, `tag`, `address-group`, \
                         `service-group`, `policy`, `application-policy-set` or `project`), \
                         found `{other}`"
                    ),
                );
                let meant = closest(other, &STATEMENTS);
                let help = if starts_rule(first) {
                    Some("a rule goes inside a `policy NAME { ... }` block".to_string())
                } else if other == "{" {
                    Some("a `{` ends the line that opens a block, e.g. `policy NAME {`".to_string())
                } else {
                    meant.map(|m| format!("did you mean `{m}`?"))
                };
                self.errors.push(err.maybe_help(help));
                // Keep the block's lines inside it: read as what was meant, or skipped.
                if let Some(brace) = line.tokens.last().filter(|t| t.text == "{") {
                    let open = brace.span;
                    let kind = match meant {
                        Some("policy") => BodyKind::Policy,
                        Some("application-policy-set") => BodyKind::Set,
                        Some("project") if self.project.is_none() => {
                            self.project = Some(Project { name: None, open });
                            return false;
                        }
                        _ => BodyKind::Unknown,
                    };
                    self.body = Some(Body::new(None, kind, open));
                }
            }
        }
        false
    }

    fn tag_types(
        &self,
        first: &Token<'_>,
        cur: &mut Cursor<'_, '_>,
    ) -> PResult<Vec<Spanned<Object>>> {
        if self.project.is_some() {
            return Err(
                ParseError::new(first.span, "a tag type can't be defined in a project")
                    .with_help("tag types are global: move this line outside the `project` block"),
            );
        }
        let mut out = Vec::new();
        while let Some(tok) = cur.next() {
            let n = super::cursor::name(tok.text, tok.span, "a tag type name")?;
            if PREDEFINED_TAG_TYPES.contains(&n.value.as_str()) {
                return Err(ParseError::new(
                    tok.span,
                    format!("`{}` is a predefined tag type", n.value),
                )
                .with_help(
                    "the predefined types application, tier, deployment, site \
                        and label need no `tag-type`",
                ));
            }
            out.push(Spanned {
                value: Object::TagType(TagType { name: n.value }),
                span: n.span,
            });
        }
        if out.is_empty() {
            return Err(ParseError::new(
                cur.span_of(None),
                "expected a tag type name after `tag-type`, found the end of the line",
            ));
        }
        Ok(out)
    }

    fn tags(&self, cur: &mut Cursor<'_, '_>) -> PResult<Vec<Spanned<Object>>> {
        let mut out = Vec::new();
        while let Some(tok) = cur.next() {
            let tag = TagRef::from_str(tok.text).map_err(|m| {
                let err = ParseError::new(tok.span, m);
                if cur.peek().is_some_and(|t| t.text.starts_with('=')) || tok.text.ends_with('=') {
                    err.with_help("write a tag without spaces around `=`: `tier=web`")
                } else {
                    err
                }
            })?;
            if tag.global {
                let help = match self.scope() {
                    Scope::Global => format!(
                        "a tag defined here is global already: write `{}={}`",
                        tag.kind, tag.value
                    ),
                    Scope::Project(_) => "a tag belongs to the scope it is defined in: \
                        define global tags outside any `project` block"
                        .to_string(),
                };
                return Err(ParseError::new(
                    tok.sub_span(0, 7),
                    "`global:` can't be used in a tag definition",
                )
                .with_help(help));
            }
            out.push(Spanned {
                value: Object::Tag(Tag {
                    scope: self.scope(),
                    kind: tag.kind,
                    value: tag.value,
                }),
                span: tok.span,
            });
        }
        if out.is_empty() {
            return Err(ParseError::new(
                cur.span_of(None),
                "expected a tag (`TYPE=VALUE`) after `tag`, found the end of the line",
            ));
        }
        Ok(out)
    }

    fn address_group(&self, cur: &mut Cursor<'_, '_>) -> PResult<Vec<Spanned<Object>>> {
        let name = cur.expect_name("an address group name")?;
        let mut group = AddressGroup {
            name: name.value,
            scope: self.scope(),
            prefixes: Vec::new(),
            label: None,
        };
        if cur.eat("=").is_some() {
            while let Some(tok) = cur.peek() {
                if tok.text == "label" {
                    break;
                }
                cur.next();
                group
                    .prefixes
                    .push(Prefix::from_str(tok.text).map_err(|e| net_error(tok.span, &e))?);
            }
            if group.prefixes.is_empty() {
                let tok = cur.peek();
                return Err(ParseError::new(
                    cur.span_of(tok),
                    format!("expected a prefix after `=`, found {}", found(tok)),
                )
                .with_help(
                    "list prefixes separated by spaces: \
                     `address-group NAME = 10.0.0.0/8 192.0.2.0/24`",
                ));
            }
        }
        if cur.eat("label").is_some() {
            group.label = Some(cur.expect_name("a label value after `label`")?.value);
        }
        if let Some(tok) = cur.next() {
            let help = if tok.text.parse::<Prefix>().is_ok() && group.prefixes.is_empty() {
                format!(
                    "prefixes follow `=`: `address-group {} = {}`",
                    group.name, tok.text
                )
            } else if tok.text.starts_with("label=") {
                "write `label VALUE`".to_string()
            } else {
                "an address group is `address-group NAME [= PREFIX ...] [label VALUE]`".to_string()
            };
            let expected = if group.prefixes.is_empty() && group.label.is_none() {
                "`=` or `label`"
            } else if group.label.is_none() {
                "a prefix or `label`"
            } else {
                "the end of the line"
            };
            return Err(ParseError::new(
                tok.span,
                format!("expected {expected}, found `{}`", tok.text),
            )
            .with_help(help));
        }
        Ok(vec![Spanned {
            value: Object::AddressGroup(group),
            span: name.span,
        }])
    }

    fn service_group(&self, cur: &mut Cursor<'_, '_>) -> PResult<Vec<Spanned<Object>>> {
        let name = cur.expect_name("a service group name")?;
        let eq = cur.next();
        if eq.is_none_or(|t| t.text != "=") {
            return Err(ParseError::new(
                cur.span_of(eq),
                format!("expected `=` after the group's name, found {}", found(eq)),
            )
            .with_help(
                "a service group is `service-group NAME = SERVICE ...`, e.g. \
                    `service-group web = tcp/80,443 udp/53`",
            ));
        }
        let mut services = Vec::new();
        while let Some(tok) = cur.next() {
            if tok.text.starts_with("services:") {
                return Err(ParseError::new(
                    tok.span,
                    "a service group can't hold another service group",
                )
                .with_help("list the other group's services here instead"));
            }
            services.push(rule::service(tok, cur)?);
        }
        if services.is_empty() {
            return Err(ParseError::new(
                cur.span_of(None),
                "expected a service after `=`, found the end of the line",
            )
            .with_help("e.g. `service-group web = tcp/80,443 udp/53`"));
        }
        Ok(vec![Spanned {
            value: Object::ServiceGroup(ServiceGroup {
                name: name.value,
                scope: self.scope(),
                services,
            }),
            span: name.span,
        }])
    }

    /// Reads a `policy` or `application-policy-set` first line and opens its body. True
    /// when the line has no `{`.
    fn open_body(&mut self, first: &Token<'_>, cur: &mut Cursor<'_, '_>, line: &Line<'_>) -> bool {
        let kind = if first.text == "policy" {
            BodyKind::Policy
        } else {
            BodyKind::Set
        };
        let brace = line.tokens.iter().find(|t| t.text == "{");
        let open = brace.map_or(first.span, |t| t.span);
        let header = if kind == BodyKind::Policy {
            self.policy_header(cur)
        } else {
            self.set_header(cur)
        };
        match header.and_then(|object| Ok((object, block_end(cur)?))) {
            Ok((object, Closed::Yes)) => self.objects.push(object),
            Ok((object, Closed::No)) => self.body = Some(Body::new(Some(object), kind, open)),
            Err(e) => {
                self.errors.push(e);
                let closed_inline =
                    brace.is_some() && line.tokens.last().is_some_and(|t| t.text == "}");
                if !closed_inline {
                    self.body = Some(Body::new(None, kind, open));
                    return brace.is_none();
                }
            }
        }
        false
    }

    /// Whether `line`, after a block's first line that lacked its `{`, reads as the block's
    /// content, so the block is taken as open.
    fn opens_as_body(&self, line: &Line<'_>) -> bool {
        let Some(body) = &self.body else {
            return false;
        };
        let Some(first) = line.tokens.first() else {
            return false;
        };
        line.is_only("{")
            || match body.kind {
                BodyKind::Policy => starts_rule(first),
                BodyKind::Unknown => false,
                BodyKind::Set => {
                    first.text.ends_with(':')
                        || (line.tokens.len() == 1
                            && is_valid_name(first.text)
                            && !STATEMENTS.contains(&first.text))
                }
            }
    }

    fn policy_header(&self, cur: &mut Cursor<'_, '_>) -> PResult<Spanned<Object>> {
        let name = cur.expect_name("a policy name")?;
        let mut policy = FirewallPolicy {
            name: name.value,
            scope: self.scope(),
            tier: TierKind::Application,
            sequence: String::new(),
            rules: Vec::new(),
        };
        let (mut tier_seen, mut seq_seen) = (false, false);
        while let Some(tok) = cur.peek() {
            match tok.text {
                "{" => break,
                "tier" | "seq" => {
                    cur.next();
                    let seen = if tok.text == "tier" {
                        &mut tier_seen
                    } else {
                        &mut seq_seen
                    };
                    if *seen {
                        return Err(ParseError::new(
                            tok.span,
                            format!("`{}` is given twice", tok.text),
                        ));
                    }
                    *seen = true;
                    if tok.text == "tier" {
                        policy.tier = tier(cur)?;
                    } else {
                        policy.sequence = cur.expect_name("a sequence key after `seq`")?.value;
                    }
                }
                other => {
                    return Err(ParseError::new(
                        tok.span,
                        format!(
                            "expected `tier`, `seq` or `{{` after the policy name, found `{other}`"
                        ),
                    )
                    .maybe_help(did_you_mean(other, &["tier", "seq"])));
                }
            }
        }
        Ok(Spanned {
            value: Object::FirewallPolicy(policy),
            span: name.span,
        })
    }

    fn set_header(&self, cur: &mut Cursor<'_, '_>) -> PResult<Spanned<Object>> {
        let name = cur.expect_name("an application policy set name")?;
        let tok = cur.next();
        let application = match tok.map(|t| t.text) {
            Some("global") => None,
            Some("for") => {
                let tag_tok =
                    cur.expect("an `application` tag after `for` (e.g. `for application=shop`)")?;
                let tag =
                    TagRef::from_str(tag_tok.text).map_err(|m| ParseError::new(tag_tok.span, m))?;
                if tag.kind != "application" {
                    return Err(ParseError::new(
                        tag_tok.span,
                        format!("`for` takes an `application` tag, found `{}`", tag_tok.text),
                    )
                    .with_help(
                        "an application policy set binds to one application: \
                            `for application=NAME`, or `global` for every application",
                    ));
                }
                Some(tag)
            }
            _ => {
                return Err(ParseError::new(
                    cur.span_of(tok),
                    format!(
                        "expected `for application=NAME` or `global` after the set's name, \
                     found {}",
                        found(tok)
                    ),
                )
                .with_help(
                    "`for application=NAME` binds the set to one application; \
                        `global` applies it to every application",
                ));
            }
        };
        Ok(Spanned {
            value: Object::ApplicationPolicySet(ApplicationPolicySet {
                name: name.value,
                scope: self.scope(),
                application,
                policies: Vec::new(),
            }),
            span: name.span,
        })
    }

    fn open_project(&mut self, first: &Token<'_>, cur: &mut Cursor<'_, '_>, line: &Line<'_>) {
        if let Some(outer) = self.project.take() {
            let name = outer
                .name
                .map_or_else(|| "this project".to_string(), |n| format!("project `{n}`"));
            self.errors.push(
                ParseError::new(
                    first.span,
                    format!("{name} is not closed before the next `project`"),
                )
                .with_help(format!(
                    "projects don't nest: add a `}}` line to close \
                        {name} (line {}) before this line",
                    outer.open.line
                )),
            );
        }
        let brace = line.tokens.iter().find(|t| t.text == "{");
        let open = brace.map_or(first.span, |t| t.span);
        let header = cur
            .expect_name("a project name")
            .and_then(|n| Ok((n, block_end(cur)?)));
        match header {
            Ok((_, Closed::Yes)) => {}
            Ok((name, Closed::No)) => {
                self.project = Some(Project {
                    name: Some(name.value),
                    open,
                })
            }
            Err(e) => {
                self.errors.push(e);
                if !(brace.is_some() && line.tokens.last().is_some_and(|t| t.text == "}")) {
                    self.project = Some(Project { name: None, open });
                }
            }
        }
    }

    /// Reads a line inside a `policy` or `application-policy-set` body. True as for
    /// [`Parser::statement`].
    fn body_line(&mut self, line: &Line<'_>) -> bool {
        let Some(body) = self.body.as_mut() else {
            return false;
        };
        let mut cur = Cursor::new(line);
        let Some(first) = cur.peek() else {
            return false;
        };
        if first.text == "}" {
            cur.next();
            if let Err(e) = cur.finish("`}`") {
                self.errors
                    .push(e.with_help("put each `}` on a line of its own"));
            }
            self.close_body();
            return false;
        }
        let single = line.tokens.len() == 1;
        if STATEMENTS.contains(&first.text) && !(body.kind == BodyKind::Set && single) {
            let what = describe_item(body.kind);
            self.errors.push(
                ParseError::new(
                    first.span,
                    format!("expected {what} or `}}`, found `{}`", first.text),
                )
                .with_help(format!(
                    "{} (line {}) has no closing `}}`: add one before this line",
                    body.describe(),
                    body.open.line
                )),
            );
            self.body = None;
            return self.statement(line);
        }
        let first = first.span;
        let key = match (body.kind, body.object.as_mut().map(|o| &mut o.value)) {
            (BodyKind::Policy, object) => rule::rule(&mut cur).map(|(key, rule)| {
                if let Some(Object::FirewallPolicy(p)) = object {
                    p.rules.push(rule);
                }
                key
            }),
            (BodyKind::Set, object) => entry(&mut cur).map(|(key, policy)| {
                if let Some(Object::ApplicationPolicySet(s)) = object {
                    s.policies.push(PolicyEntry {
                        sequence: String::new(),
                        policy,
                    });
                }
                key
            }),
            (BodyKind::Unknown, _) => return false,
        };
        match key {
            Ok(key) => body.keys.push(LineKey { key, first }),
            Err(e) => self.errors.push(e),
        }
        false
    }

    /// Closes the open body: assigns keys, pushes the object.
    fn close_body(&mut self) {
        let Some(body) = self.body.take() else {
            return;
        };
        let keys = match assign_keys(&body) {
            Ok(keys) => keys,
            Err(errors) => {
                self.errors.extend(errors);
                return;
            }
        };
        let Some(mut object) = body.object else {
            return;
        };
        let sequences: Vec<&mut String> = match &mut object.value {
            Object::FirewallPolicy(p) => p.rules.iter_mut().map(|r| &mut r.sequence).collect(),
            Object::ApplicationPolicySet(s) => {
                s.policies.iter_mut().map(|e| &mut e.sequence).collect()
            }
            _ => Vec::new(),
        };
        for (sequence, key) in sequences.into_iter().zip(keys) {
            *sequence = key;
        }
        self.objects.push(object);
    }

    /// At the end of the source: every open block is unclosed.
    fn end(&mut self) {
        if let Some(body) = self.body.take() {
            let after = match body.kind {
                BodyKind::Policy => "its last rule",
                BodyKind::Set => "its last entry",
                BodyKind::Unknown => "its last line",
            };
            self.errors.push(
                ParseError::new(body.open, format!("{} is not closed", body.describe()))
                    .with_help(format!("add a line with `}}` after {after}")),
            );
        }
        if let Some(project) = self.project.take() {
            let name = project
                .name
                .map_or_else(|| "this project".to_string(), |n| format!("project `{n}`"));
            self.errors.push(
                ParseError::new(project.open, format!("{name} is not closed"))
                    .with_help("add a line with `}` after its last statement"),
            );
        }
    }
}

fn describe_item(kind: BodyKind) -> &'static str {
    match kind {
        BodyKind::Policy => "a rule",
        BodyKind::Set => "a policy name",
        BodyKind::Unknown => "a line",
    }
}

/// Whether a block's first line also closed it (`policy empty {}`).
enum Closed {
    Yes,
    No,
}

/// The `{` that ends a block's first line, optionally followed by `}`.
fn block_end(cur: &mut Cursor<'_, '_>) -> PResult<Closed> {
    let tok = cur.next();
    if tok.is_none_or(|t| t.text != "{") {
        return Err(ParseError::new(
            cur.span_of(tok),
            format!("expected `{{` at the end of the line, found {}", found(tok)),
        )
        .with_help(
            "a block opens with `{` at the end of its first line and closes with \
                `}` on a line of its own",
        ));
    }
    let closed = if cur.eat("}").is_some() {
        Closed::Yes
    } else {
        Closed::No
    };
    cur.finish("`{`").map_err(|e| {
        e.with_help("put each rule or entry on a line of its own, and `}` on its own line")
    })?;
    Ok(closed)
}

fn tier(cur: &mut Cursor<'_, '_>) -> PResult<TierKind> {
    let tok = cur.expect("a tier (`admin`, `application` or `baseline`) after `tier`")?;
    match tok.text {
        "admin" => Ok(TierKind::Admin),
        "application" => Ok(TierKind::Application),
        "baseline" => Ok(TierKind::Baseline),
        other => Err(ParseError::new(
            tok.span,
            format!("unknown tier `{other}`: use `admin`, `application` or `baseline`"),
        )
        .maybe_help(did_you_mean(other, &TIERS))),
    }
}

/// `[KEY:] POLICY` in an application policy set.
fn entry(cur: &mut Cursor<'_, '_>) -> PResult<(Option<Name>, String)> {
    let key = rule::key(cur)?;
    let what = if key.is_some() {
        "a policy name after the key"
    } else {
        "a policy name"
    };
    let policy = cur.expect_name(what)?;
    if let Some(tok) = cur.next() {
        let help = if rule::ACTIONS.contains(&policy.value.as_str()) {
            "rules go in a `policy` block; an application policy set lists policy names, \
                one per line"
        } else {
            "an application policy set lists one policy per line: `KEY: POLICY`"
        };
        return Err(ParseError::new(
            tok.span,
            format!("unexpected `{}` after the policy name", tok.text),
        )
        .with_help(help));
    }
    Ok((key, policy.value))
}

/// The keys of a body's items: as written, or `0010`, `0020`, ... when none is written.
fn assign_keys(body: &Body) -> Result<Vec<String>, Vec<ParseError>> {
    let items = &body.keys;
    if items.iter().all(|i| i.key.is_none()) {
        let width = ((items.len() * 10).to_string().len()).max(4);
        return Ok((1..=items.len())
            .map(|n| format!("{:0width$}", n * 10))
            .collect());
    }
    let noun = body.item_noun();
    let mut errors = Vec::new();
    let first_keyed = items.first().is_some_and(|i| i.key.is_some());
    if let Some(odd) = items.iter().find(|i| i.key.is_some() != first_keyed) {
        let help = format!(
            "give every {noun} of a block a key (`0010: ...`) or none (keys are then 0010, \
                0020, ...)"
        );
        let err = match &odd.key {
            None => ParseError::new(
                odd.first,
                format!(
                    "this {noun} has no key, but other {noun}s of {} do",
                    body.describe()
                ),
            ),
            Some(k) => ParseError::new(
                k.span,
                format!(
                    "this {noun} has a key, but the {noun} on line {} does not",
                    items.first().map_or(0, |i| i.first.line)
                ),
            ),
        };
        errors.push(err.with_help(help));
    }
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for key in items.iter().filter_map(|i| i.key.as_ref()) {
        if let Some(first) = seen.get(key.value.as_str()) {
            errors.push(
                ParseError::new(
                    key.span,
                    format!("duplicate key `{}` in {}", key.value, body.describe()),
                )
                .with_help(format!(
                    "`{}` is first used on line {}; keys order the {noun}s and must differ",
                    key.value, first.line
                )),
            );
        } else {
            seen.insert(&key.value, key.span);
        }
    }
    if errors.is_empty() {
        Ok(items
            .iter()
            .map(|i| i.key.as_ref().map(|k| k.value.clone()).unwrap_or_default())
            .collect())
    } else {
        Err(errors)
    }
}
