//! Palisade's plain-English policy language: the text form of the intent objects.
//!
//! Security admins write intent as text, one statement or rule per line:
//!
//! ```text
//! tag-type owner
//! tag application=shop tier=web tier=app
//! address-group quarantine = 10.9.0.0/16 192.0.2.0/24
//! service-group web = tcp/80,443 udp/53
//!
//! policy quarantine tier admin seq 0100 {
//!   deny any > group:quarantine on any log
//! }
//!
//! project shop {
//!   policy three-tier {
//!     0010: allow any > tier=web on tcp/443
//!     0020: allow tier=web > tier=app on tcp/8080 match application
//!   }
//!   application-policy-set shop for application=shop {
//!     three-tier
//!   }
//! }
//! ```
//!
//! # The model
//!
//! * Statements outside a `project NAME { ... }` block define global objects; inside one,
//!   objects of that project ([`Scope::Project`](crate::Scope::Project)).
//! * `tag-type NAME ...` defines custom tag types (global only); `tag TYPE=VALUE ...`
//!   defines tags; `address-group NAME [= PREFIX ...] [label VALUE]` and
//!   `service-group NAME = SERVICE ...` define groups.
//! * `policy NAME [tier admin|application|baseline] [seq KEY] { RULE ... }` is a
//!   [`FirewallPolicy`](crate::FirewallPolicy); each rule line reads
//!   `[KEY:] ACTION ENDPOINT DIRECTION ENDPOINT on SERVICE [MODIFIER ...]`, with actions
//!   `allow`, `deny` and `next-tier`, directions `>`, `<` and `<>`, and modifiers
//!   `match TYPE,...`, `log`, `audit`, `mirror NAME` and `redirect NAME`.
//! * `application-policy-set NAME (for application=VALUE | global) { [KEY:] POLICY ... }`
//!   orders policies for one application, or for all of them.
//! * Keys order rules and entries (compared as strings). When no rule of a block has one,
//!   they are numbered `0010`, `0020`, ... in order; a block can't mix keyed and unkeyed
//!   lines, nor repeat a key.
//! * `#` starts a comment.
//!
//! The full grammar, with every error message, is in `docs/policy-language.md`.
//!
//! # What the parser checks
//!
//! Only what one line (or one block) shows: word shapes, names, prefixes (no host bits),
//! ports, protocols, keywords, keys, ports only on tcp/udp/sctp, `audit` only on `deny`,
//! `redirect` only on `allow`, no `label` in `match`. Whether a referenced tag, group or
//! policy exists, and duplicates across files, are checked where all objects meet.
//!
//! # Robustness
//!
//! [`parse`] accepts any text: it never panics, and reports every error of the input
//! (reading resumes at the next line after an error) with its place and a hint.
//! [`print()`] writes the canonical form, and `parse(print(objects))` gives the objects back.

mod cursor;
mod error;
mod lexer;
mod parser;
mod printer;
mod rule;
mod span;
#[cfg(test)]
mod tests;

pub use error::ParseError;
pub use span::{Span, Spanned};

use crate::objects::{FirewallRule, Object};

use cursor::Cursor;

/// A parsed source text.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Document {
    /// The objects, in source order, each spanning its name (a tag: its `TYPE=VALUE`).
    pub objects: Vec<Spanned<Object>>,
}

impl Document {
    /// The objects without their places.
    pub fn into_objects(self) -> Vec<Object> {
        self.objects.into_iter().map(|o| o.value).collect()
    }
}

/// Parses a source text into its objects, or every error it holds (in source order).
///
/// ```
/// use palisade_intent::lang;
///
/// let doc = lang::parse("policy web {\n  allow any > tier=web on tcp/443\n}\n").unwrap();
/// assert_eq!(
///     lang::print(&doc.into_objects()),
///     "policy web {\n  0010: allow any > tier=web on tcp/443\n}\n",
/// );
/// ```
pub fn parse(source: &str) -> Result<Document, Vec<ParseError>> {
    parser::parse(source)
}

/// The canonical text of `objects`, in order; consecutive objects of one project are
/// wrapped in one `project` block. Parsing it gives `objects` back.
pub fn print(objects: &[Object]) -> String {
    printer::print(objects)
}

/// Parses one rule line (`[KEY:] ACTION ENDPOINT DIRECTION ENDPOINT on SERVICE ...`), as the
/// CLI and APIs take it. Without a key, the rule's `sequence` is empty. Comments and blank
/// lines around the rule are allowed; a second rule is an error.
///
/// ```
/// use palisade_intent::{RuleAction, lang};
///
/// let rule = lang::parse_rule("0010: deny any > group:quarantine on any log").unwrap();
/// assert_eq!(rule.action, RuleAction::Deny);
/// assert_eq!(lang::print_rule(&rule), "0010: deny any > group:quarantine on any log");
/// ```
pub fn parse_rule(text: &str) -> Result<FirewallRule, ParseError> {
    let lines = lexer::lex(text);
    let mut lines = lines.iter().filter(|l| !l.tokens.is_empty());
    let Some(line) = lines.next() else {
        let start = Span {
            line: 1,
            column: 1,
            len: 1,
        };
        return Err(ParseError::new(start, "expected a rule, found nothing"));
    };
    if let Some(extra) = lines.next() {
        return Err(ParseError::new(
            extra.tokens.first().map_or(extra.end, |t| t.span),
            "expected one rule, found a second line",
        ));
    }
    let mut cur = Cursor::new(line);
    rule::rule(&mut cur).map(|(_, rule)| rule)
}

/// The text of one rule, as a rule line of [`print()`] without its indentation.
pub fn print_rule(rule: &FirewallRule) -> String {
    printer::rule(rule)
}
