//! Palisade's software packet classifier.
//!
//! [`Engine`] is a tuple-space classifier with priority pruning: linear memory and build
//! time, single-rule insert and delete, first match by priority. It classifies ClassBench
//! 5-tuple rule lists ([`classbench`]) and device programs ([`ProgramClassifier`]).

pub mod classbench;
mod engine;
mod program;

pub use engine::{ANY_LOCAL, Addr, Engine, Key, Match, Options, Rule, UpdateError};
pub use program::{
    Decided, Entry, Flattened, Judgement, ProgramClassifier, Side, direction_tag, flatten,
};
