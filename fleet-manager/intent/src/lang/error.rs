//! Parse errors and their rustc-style rendering.

use std::fmt::Write as _;

use super::lexer::source_lines;
use super::span::Span;

/// Something wrong at one place of the source, with what to do about it.
///
/// `Display` gives `line:column: message`; [`ParseError::render`] gives the full report with
/// the source line and a caret under the offending text.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{span}: {message}")]
pub struct ParseError {
    /// The offending text.
    pub span: Span,
    /// What is wrong, naming the offending text.
    pub message: String,
    /// How to fix it, when there is more to say than the message.
    pub help: Option<String>,
}

impl ParseError {
    pub(super) fn new(span: Span, message: impl Into<String>) -> Self {
        Self {
            span,
            message: message.into(),
            help: None,
        }
    }

    pub(super) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub(super) fn maybe_help(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    /// The report as rustc prints one, for the file named `file` whose text is `source`:
    ///
    /// ```text
    /// error: expected a direction (`>`, `<` or `<>`), found `tier=app`
    ///  --> shop.pal:4:26
    ///   |
    /// 4 |     0010: allow tier=web tier=app on tcp/8080
    ///   |                          ^^^^^^^^
    ///   = help: a rule reads `ENDPOINT > ENDPOINT`: put a direction between the endpoints
    /// ```
    ///
    /// Tabs before the caret are kept so the caret lines up in a terminal. A span outside
    /// `source` renders without the source line.
    pub fn render(&self, file: &str, source: &str) -> String {
        let Span { line, column, len } = self.span;
        let number = line.to_string();
        let pad = " ".repeat(number.len());
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "error: {}", self.message);
        let _ = writeln!(out, "{pad}--> {file}:{line}:{column}");
        let text = line
            .checked_sub(1)
            .and_then(|i| source_lines(source).nth(i));
        if let Some(text) = text {
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{number} | {text}");
            let mut indent: String = text
                .chars()
                .take(column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            while indent.chars().count() < column.saturating_sub(1) {
                indent.push(' ');
            }
            let _ = writeln!(out, "{pad} | {indent}{}", "^".repeat(len.max(1)));
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "{pad} = help: {help}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_rustc() {
        let source = "a\nb\n\tx  yy\n";
        let err = ParseError::new(
            Span {
                line: 3,
                column: 5,
                len: 2,
            },
            "bad `yy`",
        )
        .with_help("fix it");
        assert_eq!(
            err.render("f.pal", source),
            "error: bad `yy`\n --> f.pal:3:5\n  |\n3 | \tx  yy\n  | \t   ^^\n  = help: fix it\n"
        );
        assert_eq!(err.to_string(), "3:5: bad `yy`");
    }

    #[test]
    fn renders_past_the_end_of_a_line_and_outside_the_source() {
        let err = ParseError::new(
            Span {
                line: 12,
                column: 3,
                len: 1,
            },
            "m",
        );
        assert_eq!(err.render("f", "x"), "error: m\n  --> f:12:3\n");
        let err = ParseError::new(
            Span {
                line: 1,
                column: 3,
                len: 1,
            },
            "m",
        );
        assert_eq!(
            err.render("f", "x"),
            "error: m\n --> f:1:3\n  |\n1 | x\n  |   ^\n"
        );
    }
}
