//! What the loader says when a profile is wrong.

use std::fmt;

/// One thing wrong with a profile: where, which field, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// Dotted path of the field (`offload.engines[1].capacity`); empty when the file
    /// could not be read as a profile at all.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl Problem {
    /// A problem with no position in a file (unreadable file, unknown name, ...).
    pub(crate) fn unlocated(path: &str, message: String) -> Self {
        Problem {
            line: None,
            column: None,
            path: path.to_string(),
            message,
        }
    }
}

/// A profile the loader refused, with every problem it found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ProfileError {
    /// The file (or the name given to [`crate::load_str`]) the profile came from.
    pub origin: String,
    /// The problems, in file order as far as the checks allow; never empty.
    pub problems: Vec<Problem>,
}

impl ProfileError {
    pub(crate) fn single(origin: &str, problem: Problem) -> Self {
        ProfileError {
            origin: origin.to_string(),
            problems: vec![problem],
        }
    }

    /// True when some problem's message contains `text` (handy in tests and tools).
    pub fn mentions(&self, text: &str) -> bool {
        self.problems
            .iter()
            .any(|p| p.message.contains(text) || p.path.contains(text))
    }
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.origin)?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
                if let Some(column) = p.column {
                    write!(f, ":{column}")?;
                }
            }
            if !p.path.is_empty() {
                write!(f, ": {}", p.path)?;
            }
            write!(f, ": {}", p.message)?;
        }
        Ok(())
    }
}
