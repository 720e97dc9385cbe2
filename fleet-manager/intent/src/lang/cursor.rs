//! Reading the words of one line, and the wording shared by every error.

use crate::objects::is_valid_name;

use super::error::ParseError;
use super::lexer::{Line, Token};
use super::span::{Span, Spanned};

/// The result of parsing one piece of a line.
pub(super) type PResult<T> = Result<T, ParseError>;

/// What a valid name is made of, for messages.
pub(super) const NAME_RULE: &str =
    "letters, digits, `.`, `_` or `-`, starting with a letter or digit";

/// A reading position in one line.
pub(super) struct Cursor<'l, 'a> {
    tokens: &'l [Token<'a>],
    pos: usize,
    end: Span,
}

impl<'l, 'a> Cursor<'l, 'a> {
    /// A cursor at the first word of `line`.
    pub fn new(line: &'l Line<'a>) -> Self {
        Self {
            tokens: &line.tokens,
            pos: 0,
            end: line.end,
        }
    }

    /// The next word, without moving.
    pub fn peek(&self) -> Option<&'l Token<'a>> {
        self.tokens.get(self.pos)
    }

    /// The next word after that, without moving.
    pub fn peek_second(&self) -> Option<&'l Token<'a>> {
        self.tokens.get(self.pos + 1)
    }

    /// Moves past the next word and returns it.
    pub fn next(&mut self) -> Option<&'l Token<'a>> {
        let t = self.tokens.get(self.pos);
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    /// Moves past the next word if it is `text`.
    pub fn eat(&mut self, text: &str) -> Option<&'l Token<'a>> {
        match self.peek() {
            Some(t) if t.text == text => self.next(),
            _ => None,
        }
    }

    /// Where a word that is not there would be: `tok`'s span, or the end of the line.
    pub fn span_of(&self, tok: Option<&Token<'_>>) -> Span {
        tok.map_or(self.end, |t| t.span)
    }

    /// The next word, or an error "expected {what}, found the end of the line".
    pub fn expect(&mut self, what: &str) -> PResult<&'l Token<'a>> {
        self.next().ok_or_else(|| {
            ParseError::new(
                self.end,
                format!("expected {what}, found the end of the line"),
            )
        })
    }

    /// The next word as a valid name; `what` names it in messages ("a policy name").
    pub fn expect_name(&mut self, what: &str) -> PResult<Name> {
        let tok = self.expect(what)?;
        name(tok.text, tok.span, what)
    }

    /// An error if any word is left; `after` says what the line was ("the policy's `{`").
    pub fn finish(&mut self, after: &str) -> PResult<()> {
        match self.next() {
            None => Ok(()),
            Some(t) => Err(ParseError::new(
                t.span,
                format!("unexpected `{}` after {after}", t.text),
            )),
        }
    }
}

/// A name with its place.
pub(super) type Name = Spanned<String>;

/// `text` as a valid name (see [`is_valid_name`]), or an error at `span`.
pub(super) fn name(text: &str, span: Span, what: &str) -> PResult<Name> {
    if is_valid_name(text) {
        return Ok(Name {
            value: text.to_string(),
            span,
        });
    }
    let err = if matches!(text, "{" | "}") {
        ParseError::new(span, format!("expected {what}, found `{text}`"))
    } else if text.is_empty() {
        ParseError::new(span, format!("expected {what}, found nothing"))
    } else {
        ParseError::new(span, format!("`{text}` is not a valid name"))
            .with_help(format!("names are made of {NAME_RULE}"))
    };
    Err(err)
}

/// "`word`" or "the end of the line", for "expected X, found Y".
pub(super) fn found(tok: Option<&Token<'_>>) -> String {
    tok.map_or_else(
        || "the end of the line".to_string(),
        |t| format!("`{}`", t.text),
    )
}

/// `text` split at `sep`, with the byte range of each piece.
pub(super) fn pieces(text: &str, sep: char) -> impl Iterator<Item = (&str, usize, usize)> {
    let mut start = 0;
    text.split(sep).map(move |piece| {
        let begin = start;
        start += piece.len() + sep.len_utf8();
        (piece, begin, begin + piece.len())
    })
}

/// The candidate closest to `word` if it is close enough to be a likely typo.
pub(super) fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .filter(|c| **c != word)
        .map(|c| (edit_distance(&lower, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "did you mean `x`?" for the candidate closest to `word`.
pub(super) fn did_you_mean(word: &str, candidates: &[&str]) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// Edit distance in characters counting a swap of neighbours as one edit (optimal string
/// alignment), capped for long inputs: typos are short.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().take(64).collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keywords_only() {
        let kw = ["allow", "deny", "next-tier"];
        assert_eq!(closest("alow", &kw), Some("allow"));
        assert_eq!(closest("DENY", &kw), Some("deny"));
        assert_eq!(closest("nexttier", &kw), Some("next-tier"));
        assert_eq!(closest("zzz", &kw), None);
        assert_eq!(closest("deny", &kw), None);
        assert_eq!(closest("tpc", &["tcp", "udp"]), Some("tcp"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
    }

    #[test]
    fn pieces_carry_byte_ranges() {
        let got: Vec<_> = pieces("80,,\u{e9}", ',').collect();
        assert_eq!(got, vec![("80", 0, 2), ("", 3, 3), ("\u{e9}", 4, 6)]);
    }
}
