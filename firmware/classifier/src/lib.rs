//! Palisade's software packet classifier.
//!
//! [`Engine`] classifies first match by priority, with single-rule insert and delete. A built
//! IPv4 list of up to 4,096 rules becomes a bit-vector base (a bitmap of rules per class of
//! each field, ANDed at lookup); longer lists, IPv6 and the rules inserted after the build go
//! to tuple-space tables with priority pruning (linear memory and build time). It classifies
//! ClassBench 5-tuple rule lists ([`classbench`]) and device programs
//! ([`ProgramClassifier`]).

mod bitvector;
pub mod classbench;
mod engine;
mod program;

pub use engine::{ANY_LOCAL, Addr, Engine, Key, Match, Options, Rule, UpdateError};
pub use program::{
    Decided, Entry, Flattened, Judgement, ProgramClassifier, Side, direction_tag, flatten,
};
