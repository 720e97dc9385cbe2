//! Splits source text into lines of words.
//!
//! The language is line-oriented: a statement or rule never spans two lines, so the lexer
//! hands the parser one line at a time. A word is a run of characters other than white
//! space, `{`, `}` and `#`; each brace is a word of its own, and `#` starts a comment that
//! runs to the end of the line. Everything else (`=`, `&`, `/`, `,`, `:`) stays inside words
//! and is split by the parser, which knows what each position expects.

use super::span::Span;

/// One word of a line.
#[derive(Clone, Copy, Debug)]
pub(super) struct Token<'a> {
    /// The word.
    pub text: &'a str,
    /// Where it is.
    pub span: Span,
}

impl Token<'_> {
    /// The span of `self.text[start..end]`, where `start` and `end` are byte offsets on
    /// character boundaries (as `find` and `split` give them). Never shorter than one.
    pub fn sub_span(&self, start: usize, end: usize) -> Span {
        let chars = |r: Option<&str>| r.map_or(0, |s| s.chars().count());
        Span {
            line: self.span.line,
            column: self.span.column + chars(self.text.get(..start)),
            len: chars(self.text.get(start..end)).max(1),
        }
    }

    /// The span of the part of the word after its first `skip` bytes.
    pub fn tail_span(&self, skip: usize) -> Span {
        self.sub_span(skip, self.text.len())
    }
}

/// The words of one line.
#[derive(Clone, Debug)]
pub(super) struct Line<'a> {
    /// The words, comments removed.
    pub tokens: Vec<Token<'a>>,
    /// Where an error about a missing word points: just after the last word.
    pub end: Span,
}

impl Line<'_> {
    /// True when the line is exactly one word `text` (comments aside).
    pub fn is_only(&self, text: &str) -> bool {
        matches!(self.tokens.as_slice(), [t] if t.text == text)
    }
}

/// The lines of `source`, as the parser numbers them and error rendering shows them.
pub(super) fn source_lines(source: &str) -> impl Iterator<Item = &str> {
    source.lines()
}

/// Splits `source` into lines of words.
pub(super) fn lex(source: &str) -> Vec<Line<'_>> {
    source_lines(source)
        .enumerate()
        .map(|(i, text)| lex_line(i + 1, text))
        .collect()
}

fn lex_line<'a>(line: usize, text: &'a str) -> Line<'a> {
    let mut tokens = Vec::new();
    // Byte offset and column of the word being read.
    let mut word: Option<(usize, usize)> = None;
    let mut column = 0;
    // Adds the word from `start` (byte, column) to `end` (byte, column), both exclusive ends.
    let push = |tokens: &mut Vec<Token<'a>>, (byte, col): (usize, usize), (end, end_col)| {
        if let Some(text) = text.get(byte..end) {
            tokens.push(Token {
                text,
                span: Span {
                    line,
                    column: col,
                    len: end_col - col,
                },
            });
        }
    };
    for (byte, c) in text.char_indices() {
        column += 1;
        let breaks = c.is_whitespace() || matches!(c, '{' | '}' | '#');
        if !breaks {
            word.get_or_insert((byte, column));
            continue;
        }
        if let Some(start) = word.take() {
            push(&mut tokens, start, (byte, column));
        }
        match c {
            '#' => break,
            '{' | '}' => push(&mut tokens, (byte, column), (byte + 1, column + 1)),
            _ => {}
        }
    }
    if let Some(start) = word.take() {
        push(&mut tokens, start, (text.len(), column + 1));
    }
    let end = tokens.last().map_or(
        Span {
            line,
            column: 1,
            len: 1,
        },
        |t| Span {
            line,
            column: t.span.column + t.span.len,
            len: 1,
        },
    );
    Line { tokens, end }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<(&str, usize, usize)> {
        lex(text)
            .into_iter()
            .flat_map(|l| l.tokens)
            .map(|t| (t.text, t.span.column, t.span.len))
            .collect()
    }

    #[test]
    fn splits_words_braces_and_comments() {
        assert_eq!(
            words("policy  web{ # a comment {"),
            vec![("policy", 1, 6), ("web", 9, 3), ("{", 12, 1)]
        );
        assert_eq!(words("}}"), vec![("}", 1, 1), ("}", 2, 1)]);
        assert_eq!(words("tcp/80#x"), vec![("tcp/80", 1, 6)]);
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(
            words("\u{e9}t\u{e9} x"),
            vec![("\u{e9}t\u{e9}", 1, 3), ("x", 5, 1)]
        );
        let line = &lex("a\tb")[0];
        assert_eq!(line.tokens[1].span.column, 3);
        assert_eq!(line.end.column, 4);
    }

    #[test]
    fn numbers_lines_from_one() {
        let lines = lex("a\r\n\nb");
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2].tokens[0].span.line, 3);
        assert!(lines[1].tokens.is_empty());
        assert_eq!(lines[1].end.column, 1);
    }

    #[test]
    fn sub_spans_count_characters() {
        let line = &lex("  \u{e9}=x&y=z")[0];
        let t = line.tokens[0];
        assert_eq!(
            t.sub_span(4, 7),
            Span {
                line: 1,
                column: 6,
                len: 3
            }
        );
        assert_eq!(t.tail_span(t.text.len()).len, 1);
    }
}
