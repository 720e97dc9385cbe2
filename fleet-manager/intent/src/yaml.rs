//! The YAML/JSON form of intent objects: one object per YAML document, tagged by `kind`
//! (`TagType`, `Tag`, `AddressGroup`, `ServiceGroup`, `FirewallPolicy`,
//! `ApplicationPolicySet`). Errors carry the line and column in the file.

use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::objects::*;

/// A document that is not a valid intent object.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{file}:{line}{}: {message}", .column.map(|c| format!(":{c}")).unwrap_or_default())]
pub struct YamlError {
    /// The file.
    pub file: String,
    /// 1-based line in the file (the document's first line when unknown).
    pub line: u32,
    /// 1-based column, when known.
    pub column: Option<u32>,
    /// What is wrong.
    pub message: String,
}

/// One YAML document of a stream: its first line in the file (1-based) and its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Document<'a> {
    /// Line of the file where the document's text starts.
    pub first_line: u32,
    /// The text.
    pub text: &'a str,
}

/// Splits a YAML stream at its document markers (`---` or `...` at the start of a line,
/// which YAML forbids inside content). Empty documents are dropped.
pub fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1u32;
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker = |m: &str| {
            bare == m
                || bare
                    .strip_prefix(m)
                    .is_some_and(|rest| rest.starts_with([' ', '\t']))
        };
        if is_marker("---") || is_marker("...") {
            docs.push(Document {
                first_line: start_line,
                text: &text[start..offset],
            });
            // Content may follow `--- ` on the marker line itself; keep it on its line.
            let after = if is_marker("---") && bare.len() > 3 {
                offset + 4
            } else {
                offset + line.len()
            };
            start = after.min(offset + line.len());
            start_line = i as u32 + 1 + u32::from(start == offset + line.len());
        }
        offset += line.len();
    }
    docs.push(Document {
        first_line: start_line,
        text: &text[start..],
    });
    docs.retain(|d| {
        d.text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

/// The value of a top-level `kind:` key written at the start of a line, with the line's
/// byte range, if the document has one.
pub fn top_level_key<'a>(doc: &'a str, key: &str) -> Option<(&'a str, std::ops::Range<usize>)> {
    let mut offset = 0;
    for line in doc.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            let value = rest.split('#').next().unwrap_or("").trim();
            let value = value.trim_matches(|c| c == '"' || c == '\'');
            return Some((
                value,
                offset..offset + line.trim_end_matches(['\n', '\r']).len(),
            ));
        }
        offset += line.len();
    }
    None
}

fn located(file: &str, doc: &Document<'_>, err: &serde_saphyr::Error) -> YamlError {
    let message = err.to_string();
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_string();
    match err.location() {
        Some(loc) if loc.line() > 0 => YamlError {
            file: file.to_string(),
            line: doc.first_line + loc.line() as u32 - 1,
            column: Some(loc.column() as u32),
            message,
        },
        _ => YamlError {
            file: file.to_string(),
            line: doc.first_line,
            column: None,
            message,
        },
    }
}

fn typed<T: DeserializeOwned>(
    file: &str,
    doc: &Document<'_>,
    text: &str,
    wrap: fn(T) -> Object,
) -> Result<Object, YamlError> {
    serde_saphyr::from_str::<T>(text)
        .map(wrap)
        .map_err(|e| located(file, doc, &e))
}

/// Parses one document into an object. With `kind:` at the start of a line (the usual
/// layout) errors point at the offending line and column; otherwise at the document.
pub fn parse_document(file: &str, doc: &Document<'_>) -> Result<Object, YamlError> {
    let Some((kind, range)) = top_level_key(doc.text, "kind") else {
        return serde_saphyr::from_str::<Object>(doc.text).map_err(|e| {
            let mut err = located(file, doc, &e);
            if !doc.text.contains("kind") {
                err.message = "the document has no `kind` (one of TagType, Tag, AddressGroup, ServiceGroup, FirewallPolicy, ApplicationPolicySet)".into();
            }
            err
        });
    };
    // Blank the `kind` line so the concrete type sees only its own fields, on the same lines.
    let mut text = doc.text.to_string();
    text.replace_range(range.clone(), &" ".repeat(range.len()));
    match kind {
        "TagType" => typed(file, doc, &text, Object::TagType),
        "Tag" => typed(file, doc, &text, Object::Tag),
        "AddressGroup" => typed(file, doc, &text, Object::AddressGroup),
        "ServiceGroup" => typed(file, doc, &text, Object::ServiceGroup),
        "FirewallPolicy" => typed(file, doc, &text, Object::FirewallPolicy),
        "ApplicationPolicySet" => typed(file, doc, &text, Object::ApplicationPolicySet),
        other => Err(YamlError {
            file: file.to_string(),
            line: doc.first_line + doc.text[..range.start].matches('\n').count() as u32,
            column: Some(7),
            message: format!(
                "unknown kind `{other}`: expected TagType, Tag, AddressGroup, ServiceGroup, FirewallPolicy or ApplicationPolicySet"
            ),
        }),
    }
}

/// Parses every document of a YAML (or JSON) stream, returning every error.
pub fn parse_objects(file: &str, text: &str) -> Result<Vec<(Object, u32)>, Vec<YamlError>> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for doc in split_documents(text) {
        match parse_document(file, &doc) {
            Ok(o) => objects.push((o, doc.first_line)),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(errors)
    }
}

/// Writes objects as a YAML stream that [`parse_objects`] reads back.
pub fn to_yaml(objects: &[Object]) -> String {
    objects
        .iter()
        .map(|o| serde_saphyr::to_string(o).expect("intent objects always serialize"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Whether a YAML or JSON stream holds Kubernetes network-policy manifests (any document
/// whose `apiVersion` is `networking.k8s.io/...` or `policy.networking.k8s.io/...`).
pub fn is_kubernetes(text: &str) -> bool {
    split_documents(text).iter().any(|doc| {
        top_level_key(doc.text, "apiVersion").is_some_and(|(v, _)| {
            v.starts_with("networking.k8s.io/") || v.starts_with("policy.networking.k8s.io/")
        })
    }) || text.contains("\"networking.k8s.io/")
        || text.contains("\"policy.networking.k8s.io/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_streams_and_keeps_line_numbers() {
        let text = "# header\nkind: Tag\ntype: tier\nvalue: web\n---\nkind: TagType\nname: owner\n...\n---\n\n";
        let docs = split_documents(text);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].first_line, 1);
        assert_eq!(docs[1].first_line, 6);
        let objects = parse_objects("x.yaml", text).unwrap();
        assert_eq!(objects[1].1, 6);
        assert!(matches!(objects[1].0, Object::TagType(_)));
    }

    #[test]
    fn errors_point_at_the_field() {
        let text =
            "kind: Tag\ntype: tier\nvalue: web\n---\nkind: FirewallPolicy\nname: p\nrulez: []\n";
        let errs = parse_objects("p.yaml", text).unwrap_err();
        assert_eq!(errs.len(), 1);
        let e = &errs[0];
        assert_eq!(e.line, 7, "{e}");
        assert!(e.message.contains("unknown field `rulez`"), "{e}");
        assert!(e.to_string().starts_with("p.yaml:7:"), "{e}");

        let errs = parse_objects("p.yaml", "kind: Wall\nname: x\n").unwrap_err();
        assert!(errs[0].message.contains("unknown kind `Wall`"));
        let errs = parse_objects("p.yaml", "name: x\n").unwrap_err();
        assert!(errs[0].message.contains("no `kind`"), "{}", errs[0]);
    }

    #[test]
    fn yaml_round_trips() {
        let text = r#"
kind: FirewallPolicy
name: web
project: shop
tier: admin
sequence: "0100"
rules:
  - sequence: "0010"
    action: deny
    endpoint_1: {tags: [tier=web, global:site=paris]}
    direction: "<>"
    endpoint_2: {address_group: quarantine}
    service_group: web
    match_tags: [application]
    log: true
"#;
        let objects: Vec<Object> = parse_objects("a.yaml", text)
            .unwrap()
            .into_iter()
            .map(|(o, _)| o)
            .collect();
        let again: Vec<Object> = parse_objects("b.yaml", &to_yaml(&objects))
            .unwrap()
            .into_iter()
            .map(|(o, _)| o)
            .collect();
        assert_eq!(objects, again);
    }
}
