//! A YAML or JSON document as a plain tree, and the field paths that errors point at.
//!
//! Documents are first read into a [`Node`] tree (order kept, duplicate keys refused) and only
//! then given a type by the decoder, so every error can name the exact field it is about,
//! which serde's derived decoders cannot do.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// One value of a document.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    /// Wide enough for every integer YAML or JSON can spell without losing the sign.
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in document order; unique.
    Map(Vec<(String, Node)>),
}

impl Node {
    /// How the value reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Node::Null => "null".into(),
            Node::Bool(b) => format!("the boolean {b}"),
            Node::Int(i) => format!("the number {i}"),
            Node::Float(f) => format!("the number {f}"),
            Node::Str(s) => format!("the string {s:?}"),
            Node::Seq(_) => "a list".into(),
            Node::Map(_) => "a mapping".into(),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Node, E> {
        Ok(Node::Int(i.into()))
    }

    fn visit_u64<E>(self, i: u64) -> Result<Node, E> {
        Ok(Node::Int(i.into()))
    }

    fn visit_i128<E>(self, i: i128) -> Result<Node, E> {
        Ok(Node::Int(i))
    }

    fn visit_u128<E: de::Error>(self, i: u128) -> Result<Node, E> {
        i128::try_from(i)
            .map(Node::Int)
            .map_err(|_| E::custom(format!("the number {i} is too large")))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Node, E> {
        Ok(Node::Float(f))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node, E> {
        Ok(Node::Str(s.to_string()))
    }

    fn visit_string<E>(self, s: String) -> Result<Node, E> {
        Ok(Node::Str(s))
    }

    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Node, E> {
        String::from_utf8(b.to_vec())
            .map(Node::Str)
            .map_err(|_| E::custom("binary data where text was expected"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            // kubectl's strict field validation refuses duplicate fields; JSON parsers would
            // silently keep the last one.
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate field `{key}`")));
            }
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// Where a value sits in its document, e.g. `spec.ingress[0].ports[1].endPort`. Built on the
/// stack while decoding and only rendered when there is an error to report.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
    /// A key of a free-form map (labels), shown as `parent[key]` since keys may hold dots.
    Entry(&'a Path<'a>, &'a str),
}

impl<'a> Path<'a> {
    pub(crate) fn field(&'a self, name: &'a str) -> Path<'a> {
        Path::Field(self, name)
    }

    pub(crate) fn index(&'a self, i: usize) -> Path<'a> {
        Path::Index(self, i)
    }

    pub(crate) fn entry(&'a self, key: &'a str) -> Path<'a> {
        Path::Entry(self, key)
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Field(Path::Root, name) => f.write_str(name),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
            Path::Entry(parent, key) => write!(f, "{parent}[{key}]"),
        }
    }
}

/// A problem with one field of a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldError {
    /// The rendered path; empty for the whole document.
    pub(crate) path: String,
    /// What is wrong and what was expected.
    pub(crate) problem: String,
}

/// A [`FieldError`] at `path`.
pub(crate) fn field_error(path: &Path<'_>, problem: impl Into<String>) -> FieldError {
    FieldError {
        path: path.to_string(),
        problem: problem.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_kubectl() {
        let root = Path::Root;
        let spec = root.field("spec");
        let ingress = spec.field("ingress");
        let rule = ingress.index(0);
        let sel = rule.field("matchLabels");
        let key = sel.entry("app.kubernetes.io/name");
        assert_eq!(
            key.to_string(),
            "spec.ingress[0].matchLabels[app.kubernetes.io/name]"
        );
        assert_eq!(Path::Root.to_string(), "");
    }

    #[test]
    fn duplicate_keys_are_refused_in_json() {
        let err = serde_json::from_str::<Node>(r#"{"a": 1, "a": 2}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate field `a`"), "{err}");
    }
}
