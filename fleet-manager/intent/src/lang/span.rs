//! Places in the source text.

use std::fmt;

/// A place in the source: 1-based line and column, both counted in characters (not bytes),
/// and the length of the marked text in characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct Span {
    /// Line number, from 1.
    pub line: usize,
    /// Column of the first marked character, from 1.
    pub column: usize,
    /// Number of marked characters (at least 1 in every span the parser makes).
    pub len: usize,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A value with the place it was written.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub span: Span,
}
