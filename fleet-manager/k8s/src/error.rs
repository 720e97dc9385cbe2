//! The crate's error type.

use thiserror::Error;

/// Why policies could not be read or lowered. Every variant names the input and the object
/// at fault, and the field path when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum K8sError {
    /// The text is not YAML or JSON.
    #[error("{origin}: {message}")]
    Syntax {
        /// The input's name as given to [`crate::parse_documents`].
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A document is not a valid policy.
    #[error("{origin}, document {document}{}: {}", object_suffix(.object), at(.path, .problem))]
    Invalid {
        /// The input's name as given to [`crate::parse_documents`].
        origin: String,
        /// The document's position, from 1, counting non-empty documents.
        document: usize,
        /// The object (`NetworkPolicy prod/allow-db`), when its kind could be read.
        object: Option<String>,
        /// The field, e.g. `spec.ingress[0].ports[1].endPort`; empty for the whole document.
        path: String,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// A policy value (built in code rather than parsed) breaks a rule the API server
    /// enforces.
    #[error("{object}: {}", at(.path, .problem))]
    Policy {
        /// The object, e.g. `AdminNetworkPolicy deny-all`.
        object: String,
        /// The field, e.g. `spec.priority`.
        path: String,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// Two policies have the same identity (kind, namespace and name).
    #[error("{object} is given twice: a cluster holds one object per kind, namespace and name")]
    Duplicate {
        /// The object, e.g. `NetworkPolicy prod/allow-db`.
        object: String,
    },
}

fn object_suffix(object: &Option<String>) -> String {
    object
        .as_ref()
        .map(|o| format!(" ({o})"))
        .unwrap_or_default()
}

fn at(path: &str, problem: &str) -> String {
    if path.is_empty() {
        problem.to_string()
    } else {
        format!("{path}: {problem}")
    }
}
