//! Drafts, commit and revert per scope.
//!
//! Edits to a scope with drafting enabled are kept as drafts (created / updated / deleted
//! objects) that reach no device. [`IntentStore::commit`] applies one scope's drafts
//! atomically — all of them or none — after validating the resulting whole, and bumps the
//! generation; [`IntentStore::revert`] discards them. In a scope without drafting, every edit
//! is validated and committed on its own. Each scope has a revision that every change bumps,
//! so a caller can commit "what I reviewed" and get a conflict if someone changed the drafts
//! since. An object that something still refers to cannot be deleted.
//!
//! The store is a value: persistence and locking belong to the server around it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::objects::{Object, ObjectKey, ObjectKind, Scope};
use crate::set::{IntentSet, ValidationError};

/// Why an edit, commit or revert was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    /// The resulting intent would be invalid.
    #[error("the change is refused:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ValidationError>),
    /// The object is still referenced.
    #[error("cannot delete {key}: still referenced by {}", describe(.by))]
    Referenced {
        /// The object to delete.
        key: ObjectKey,
        /// Who refers to it, and from which field.
        by: Vec<(ObjectKey, String)>,
    },
    /// The object does not exist.
    #[error("{0} does not exist")]
    NotFound(ObjectKey),
    /// The scope changed since the caller looked.
    #[error(
        "conflict: {scope} is at revision {actual}, not {expected}; someone else changed or committed it — review the diff again"
    )]
    Conflict {
        /// The scope.
        scope: Scope,
        /// The revision the caller expected.
        expected: u64,
        /// The current revision.
        actual: u64,
    },
    /// Commit of a scope without drafts.
    #[error("{0} has no drafts to commit")]
    NothingToCommit(Scope),
}

fn describe(by: &[(ObjectKey, String)]) -> String {
    by.iter()
        .map(|(k, f)| format!("{k} ({f})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What an edit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied and committed at this generation (the scope has no drafting).
    Committed {
        /// The new generation.
        generation: u64,
    },
    /// Recorded as a draft of its scope.
    Drafted,
}

/// Kind of change in a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// The object is new.
    Created,
    /// The object exists and changes.
    Updated,
    /// The object goes away.
    Deleted,
}

/// One entry of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffEntry {
    /// The object.
    pub key: ObjectKey,
    /// What happens to it.
    pub change: ChangeKind,
    /// Committed state, if any.
    pub before: Option<Object>,
    /// Draft state, if any.
    pub after: Option<Object>,
}

/// What [`IntentStore::apply`] did to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The object.
    pub key: ObjectKey,
    /// Created, updated or unchanged.
    pub change: AppliedChange,
    /// Whether the change is a draft (its scope has drafting on).
    pub drafted: bool,
}

/// The change [`IntentStore::apply`] made to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppliedChange {
    /// It did not exist.
    Created,
    /// It existed and differed.
    Updated,
    /// It existed as given.
    Unchanged,
}

/// The result of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The new generation.
    pub generation: u64,
    /// What the commit changed.
    pub diff: Vec<DiffEntry>,
}

/// A whole [`IntentStore`] as plain data, for persistence: [`IntentStore::snapshot`] and
/// [`IntentStore::restore`] round-trip it exactly (object origins aside).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The committed generation.
    pub generation: u64,
    /// The committed objects.
    pub committed: Vec<Object>,
    /// Every scope with drafts, drafting on, or a revision.
    pub scopes: Vec<ScopeSnapshot>,
}

/// One scope's drafting state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeSnapshot {
    /// The project; `None` for the global scope.
    pub project: Option<String>,
    /// Whether edits become drafts.
    pub drafting: bool,
    /// The scope's revision.
    pub revision: u64,
    /// Drafts: the object as drafted, or `None` for a drafted deletion.
    pub drafts: Vec<DraftSnapshot>,
}

/// One draft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftSnapshot {
    /// The object's kind.
    pub kind: ObjectKind,
    /// Its name.
    pub name: String,
    /// Its drafted state; `None` = deleted.
    pub object: Option<Object>,
}

fn scope_of(project: &Option<String>) -> Scope {
    match project {
        None => Scope::Global,
        Some(p) => Scope::Project(p.clone()),
    }
}

/// Committed intent plus per-scope drafts.
#[derive(Debug, Clone, Default)]
pub struct IntentStore {
    committed: IntentSet,
    /// Per scope: object -> its draft (`None` = deleted).
    drafts: BTreeMap<Scope, BTreeMap<ObjectKey, Option<Object>>>,
    drafting: BTreeSet<Scope>,
    generation: u64,
    revisions: BTreeMap<Scope, u64>,
}

impl IntentStore {
    /// An empty store at generation 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose committed state is `set` (validated) at `generation`.
    pub fn with_committed(set: IntentSet, generation: u64) -> Result<Self, StoreError> {
        let errors = set.validate();
        if !errors.is_empty() {
            return Err(StoreError::Invalid(errors));
        }
        Ok(Self {
            committed: set,
            generation,
            ..Self::default()
        })
    }

    /// The store as data.
    pub fn snapshot(&self) -> Snapshot {
        let scopes: BTreeSet<&Scope> = self
            .drafts
            .keys()
            .chain(self.drafting.iter())
            .chain(self.revisions.keys())
            .collect();
        Snapshot {
            generation: self.generation,
            committed: self.committed.objects().cloned().collect(),
            scopes: scopes
                .into_iter()
                .map(|scope| ScopeSnapshot {
                    project: scope.project().map(str::to_string),
                    drafting: self.drafting.contains(scope),
                    revision: self.revision(scope),
                    drafts: self
                        .drafts
                        .get(scope)
                        .into_iter()
                        .flatten()
                        .map(|(key, object)| DraftSnapshot {
                            kind: key.kind,
                            name: key.name.clone(),
                            object: object.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// A store from its snapshot. The committed objects are validated again; drafts are
    /// restored as they were (they are validated when committed).
    pub fn restore(snapshot: Snapshot) -> Result<Self, StoreError> {
        let set = IntentSet::from_objects(snapshot.committed.into_iter().map(|o| (o, None)))
            .map_err(StoreError::Invalid)?;
        let mut store = Self::with_committed(set, snapshot.generation)?;
        for s in snapshot.scopes {
            let scope = scope_of(&s.project);
            if s.drafting {
                store.drafting.insert(scope.clone());
            }
            if s.revision > 0 {
                store.revisions.insert(scope.clone(), s.revision);
            }
            if !s.drafts.is_empty() {
                let drafts = s
                    .drafts
                    .into_iter()
                    .map(|d| {
                        let key = ObjectKey {
                            kind: d.kind,
                            scope: scope.clone(),
                            name: d.name,
                        };
                        (key, d.object)
                    })
                    .collect();
                store.drafts.insert(scope, drafts);
            }
        }
        Ok(store)
    }

    /// Turns drafting on or off for a scope. Turning it off keeps existing drafts until they
    /// are committed or reverted.
    pub fn set_drafting(&mut self, scope: Scope, enabled: bool) {
        if enabled {
            self.drafting.insert(scope);
        } else {
            self.drafting.remove(&scope);
        }
    }

    /// Whether edits in `scope` become drafts.
    pub fn drafting(&self, scope: &Scope) -> bool {
        self.drafting.contains(scope)
    }

    /// The generation of the committed state.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The scope's revision: bumped by every edit and commit in the scope.
    pub fn revision(&self, scope: &Scope) -> u64 {
        self.revisions.get(scope).copied().unwrap_or(0)
    }

    /// The committed intent.
    pub fn committed(&self) -> &IntentSet {
        &self.committed
    }

    /// Scopes with pending drafts.
    pub fn scopes_with_drafts(&self) -> Vec<Scope> {
        self.drafts
            .iter()
            .filter(|(_, d)| !d.is_empty())
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// The committed intent with `scope`'s drafts applied.
    pub fn draft_view(&self, scope: &Scope) -> IntentSet {
        let mut view = self.committed.clone();
        if let Some(drafts) = self.drafts.get(scope) {
            for (key, draft) in drafts {
                match draft {
                    Some(o) => view.insert(o.clone(), None),
                    None => {
                        view.remove(key);
                    }
                }
            }
        }
        view
    }

    fn bump(&mut self, scope: &Scope) {
        *self.revisions.entry(scope.clone()).or_insert(0) += 1;
    }

    /// Creates or replaces an object.
    pub fn put(&mut self, object: Object) -> Result<Outcome, StoreError> {
        let key = object.key();
        let scope = key.scope.clone();
        if self.drafting(&scope) {
            self.drafts
                .entry(scope.clone())
                .or_default()
                .insert(key, Some(object));
            self.bump(&scope);
            return Ok(Outcome::Drafted);
        }
        let mut next = self.committed.clone();
        next.insert(object, None);
        self.commit_set(next, &scope)
    }

    /// Creates or replaces several objects at once, as `kubectl apply` does with a file:
    /// objects of scopes with drafting become drafts; all the others are validated together
    /// and committed as one generation — all of them or none. Returns what happened to each
    /// object, in order. Nothing changes on error.
    pub fn apply(&mut self, objects: Vec<Object>) -> Result<Vec<Applied>, StoreError> {
        let mut next = self.committed.clone();
        let mut drafts = self.drafts.clone();
        let mut out = Vec::with_capacity(objects.len());
        let mut committed_scopes = BTreeSet::new();
        let mut drafted_scopes = BTreeSet::new();
        for object in objects {
            let key = object.key();
            let scope = key.scope.clone();
            if self.drafting(&scope) {
                let current = drafts
                    .get(&scope)
                    .and_then(|d| d.get(&key).cloned())
                    .unwrap_or_else(|| self.committed.get(&key).cloned());
                let change = match &current {
                    None => AppliedChange::Created,
                    Some(c) if *c == object => AppliedChange::Unchanged,
                    Some(_) => AppliedChange::Updated,
                };
                if change != AppliedChange::Unchanged {
                    drafts
                        .entry(scope.clone())
                        .or_default()
                        .insert(key.clone(), Some(object));
                    drafted_scopes.insert(scope);
                }
                out.push(Applied {
                    key,
                    change,
                    drafted: true,
                });
            } else {
                let change = match next.get(&key) {
                    None => AppliedChange::Created,
                    Some(c) if *c == object => AppliedChange::Unchanged,
                    Some(_) => AppliedChange::Updated,
                };
                if change != AppliedChange::Unchanged {
                    next.insert(object, None);
                    committed_scopes.insert(scope);
                }
                out.push(Applied {
                    key,
                    change,
                    drafted: false,
                });
            }
        }
        if !committed_scopes.is_empty() {
            let errors = next.validate();
            if !errors.is_empty() {
                return Err(StoreError::Invalid(errors));
            }
            self.committed = next;
            self.generation += 1;
        }
        self.drafts = drafts;
        for scope in committed_scopes.iter().chain(drafted_scopes.iter()) {
            self.bump(scope);
        }
        Ok(out)
    }

    /// Deletes an object; refused while another object refers to it.
    pub fn delete(&mut self, key: &ObjectKey) -> Result<Outcome, StoreError> {
        let scope = key.scope.clone();
        let mut view = if self.drafting(&scope) {
            self.draft_view(&scope)
        } else {
            self.committed.clone()
        };
        if view.get(key).is_none() {
            return Err(StoreError::NotFound(key.clone()));
        }
        let by: Vec<(ObjectKey, String)> = view
            .referrers(key)
            .into_iter()
            .filter(|(k, _)| k != key)
            .collect();
        if !by.is_empty() {
            return Err(StoreError::Referenced {
                key: key.clone(),
                by,
            });
        }
        if self.drafting(&scope) {
            let in_committed = self.committed.get(key).is_some();
            let drafts = self.drafts.entry(scope.clone()).or_default();
            if in_committed {
                drafts.insert(key.clone(), None);
            } else {
                // Deleting an object that only exists as a draft just drops the draft.
                drafts.remove(key);
            }
            self.bump(&scope);
            return Ok(Outcome::Drafted);
        }
        view.remove(key);
        self.commit_set(view, &scope)
    }

    fn commit_set(&mut self, next: IntentSet, scope: &Scope) -> Result<Outcome, StoreError> {
        let errors = next.validate();
        if !errors.is_empty() {
            return Err(StoreError::Invalid(errors));
        }
        self.committed = next;
        self.generation += 1;
        self.bump(scope);
        Ok(Outcome::Committed {
            generation: self.generation,
        })
    }

    /// What committing `scope` would change.
    pub fn diff(&self, scope: &Scope) -> Vec<DiffEntry> {
        let Some(drafts) = self.drafts.get(scope) else {
            return Vec::new();
        };
        drafts
            .iter()
            .filter_map(|(key, after)| {
                let before = self.committed.get(key).cloned();
                let change = match (&before, after) {
                    (None, Some(_)) => ChangeKind::Created,
                    (Some(b), Some(a)) if b == a => return None,
                    (Some(_), Some(_)) => ChangeKind::Updated,
                    (Some(_), None) => ChangeKind::Deleted,
                    (None, None) => return None,
                };
                Some(DiffEntry {
                    key: key.clone(),
                    change,
                    before,
                    after: after.clone(),
                })
            })
            .collect()
    }

    /// Applies `scope`'s drafts atomically. With `expected_revision`, refuses if the scope
    /// changed since the caller read that revision.
    pub fn commit(
        &mut self,
        scope: &Scope,
        expected_revision: Option<u64>,
    ) -> Result<CommitOutcome, StoreError> {
        if let Some(expected) = expected_revision {
            let actual = self.revision(scope);
            if expected != actual {
                return Err(StoreError::Conflict {
                    scope: scope.clone(),
                    expected,
                    actual,
                });
            }
        }
        let diff = self.diff(scope);
        if diff.is_empty() {
            return Err(StoreError::NothingToCommit(scope.clone()));
        }
        let view = self.draft_view(scope);
        let errors = view.validate();
        if !errors.is_empty() {
            return Err(StoreError::Invalid(errors));
        }
        self.committed = view;
        self.drafts.remove(scope);
        self.generation += 1;
        self.bump(scope);
        Ok(CommitOutcome {
            generation: self.generation,
            diff,
        })
    }

    /// Discards `scope`'s drafts and returns what was discarded.
    pub fn revert(&mut self, scope: &Scope) -> Vec<DiffEntry> {
        let diff = self.diff(scope);
        if self.drafts.remove(scope).is_some() {
            self.bump(scope);
        }
        diff
    }
}
